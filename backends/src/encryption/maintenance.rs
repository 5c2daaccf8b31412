//! What `tracseq-ml keys status|rotate|migrate` do to a store: count the
//! artifacts under each key, re-wrap data keys under the active key, and
//! seal artifacts written before encryption.
//!
//! Each walks the whole store and goes on past a bad artifact, so one
//! damaged object does not hide the state of the rest; every problem is
//! reported with the artifact it concerns. Each is safe to run again: a
//! rotation or migration that stopped half way is finished by the next run.
//!
//! They run beside a live platform. A record is only replaced after
//! checking, just before the write, that neither it nor its payload changed
//! since it was read; an artifact that is being rewritten is skipped and
//! reported, for the next run.

use super::envelope::{self, HEADER};
use crate::error::{object_error, Classify};
use crate::ObjectArtifactStore;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, PutPayload};
use std::collections::{BTreeMap, HashSet};
use tracseq_core::ports::{ArtifactPath, ArtifactStore, DIGEST_SUFFIX, KEY_SUFFIX};
use tracseq_core::{Error, Result};

/// One artifact of the store, and whether it has a key record.
struct Entry {
    path: ArtifactPath,
    sealed: bool,
    digest: bool,
}

/// What `keys status` prints.
#[derive(Debug, Default, serde::Serialize)]
pub struct KeyReport {
    /// Sealed artifacts by the id of the key their data key is wrapped under.
    pub sealed_by_key: BTreeMap<String, u64>,
    /// Artifacts stored without encryption.
    pub plaintext: u64,
    /// Artifacts that could not be checked or failed the check, with why.
    pub problems: Vec<String>,
}

/// What `keys rotate` and `keys migrate` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ChangeReport {
    /// Artifacts changed (re-wrapped, or sealed).
    pub changed: u64,
    /// Artifacts that were already as wanted.
    pub unchanged: u64,
    /// Artifacts left as they were, with why.
    pub problems: Vec<String>,
}

impl ObjectArtifactStore {
    /// Every artifact in the store (sidecars are not artifacts).
    async fn inventory(&self) -> Result<Vec<Entry>> {
        let keys: Vec<String> = self
            .store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .classify()?;
        let all: HashSet<&str> = keys.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for key in &keys {
            if ArtifactPath::is_sidecar(key) {
                continue;
            }
            // Something in the bucket the platform did not write.
            let Ok(path) = ArtifactPath::parse(key) else {
                continue;
            };
            out.push(Entry {
                sealed: all.contains(format!("{key}{KEY_SUFFIX}").as_str()),
                digest: all.contains(format!("{key}{DIGEST_SUFFIX}").as_str()),
                path,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn keyring(&self) -> Result<&super::keys::Keyring> {
        self.encryption.keyring.as_deref().ok_or_else(|| {
            Error::Invalid("encryption is disabled: there is no key to work with".into())
        })
    }

    /// The first bytes of an artifact's payload.
    async fn payload_header(&self, path: &ArtifactPath) -> Result<Bytes> {
        let opts = GetOptions {
            range: Some(GetRange::Bounded(0..HEADER as u64)),
            ..Default::default()
        };
        self.store
            .get_opts(&ObjectPath::from(path.as_str()), opts)
            .await
            .classify()?
            .bytes()
            .await
            .classify()
    }

    /// Counts the artifacts under each key and in plain text. With
    /// `verify`, also reads every artifact whole, which authenticates every
    /// byte.
    pub async fn key_report(&self, verify: bool) -> Result<KeyReport> {
        let mut report = KeyReport::default();
        for e in self.inventory().await? {
            if e.sealed {
                let record = self.read_optional(&e.path.key_record_key()).await?;
                let id = record
                    .as_deref()
                    .map(|r| envelope::record_key_id(&e.path, r))
                    .transpose();
                match id {
                    Ok(Some(id)) => *report.sealed_by_key.entry(id.to_string()).or_default() += 1,
                    Ok(None) => continue, // deleted since it was listed
                    Err(err) => {
                        report.problems.push(err.to_string());
                        continue;
                    }
                }
            } else {
                report.plaintext += 1;
            }
            if verify {
                if let Err(err) = self.get(&e.path).await {
                    if !matches!(err, Error::NotFound(_)) {
                        report.problems.push(err.to_string());
                    }
                }
            }
        }
        Ok(report)
    }

    /// Re-wraps every data key not under the active key with it. Payloads
    /// are not touched.
    pub async fn rewrap_all(&self) -> Result<ChangeReport> {
        let keyring = self.keyring()?;
        let active = keyring.active();
        let mut report = ChangeReport::default();
        for e in self.inventory().await?.into_iter().filter(|e| e.sealed) {
            match self.rewrap_one(&e.path, keyring, &active).await {
                Ok(true) => report.changed += 1,
                Ok(false) => report.unchanged += 1,
                Err(err) => report.problems.push(err.to_string()),
            }
        }
        Ok(report)
    }

    async fn rewrap_one(
        &self,
        path: &ArtifactPath,
        keyring: &super::keys::Keyring,
        active: &super::keys::Kek,
    ) -> Result<bool> {
        let key = path.key_record_key();
        let Some(record) = self.read_optional(&key).await? else {
            return Ok(false); // deleted since it was listed
        };
        let Some(rewrapped) = envelope::rewrap(keyring, active, path, &record)? else {
            return Ok(false);
        };
        // The record must belong to the payload that is there...
        let opened = envelope::open_record(keyring, path, &record)?;
        opened.check_header(&self.payload_header(path).await?)?;
        // ...and still be the one read, right before it is replaced.
        if self.read_optional(&key).await?.as_deref() != Some(&record[..]) {
            return Err(changed_meanwhile(path));
        }
        self.store
            .put(&ObjectPath::from(key), PutPayload::from(rewrapped))
            .await
            .classify()?;
        if opened
            .check_header(&self.payload_header(path).await?)
            .is_err()
        {
            return Err(Error::Conflict(format!(
                "artifact '{path}' was rewritten while its key was rotated: check it with \
                 `tracseq-ml keys status --verify`"
            )));
        }
        Ok(true)
    }

    /// Seals every artifact stored in plain text, after checking it against
    /// its recorded digest (an artifact that fails is left as it is).
    pub async fn seal_plaintext(&self) -> Result<ChangeReport> {
        self.keyring()?;
        let mut report = ChangeReport::default();
        for e in self.inventory().await? {
            if e.sealed {
                report.unchanged += 1;
                continue;
            }
            match self.seal_one(&e).await {
                Ok(()) => report.changed += 1,
                Err(Error::NotFound(_)) => {}
                Err(err) => report.problems.push(err.to_string()),
            }
        }
        Ok(report)
    }

    async fn seal_one(&self, e: &Entry) -> Result<()> {
        let path = &e.path;
        let object = self
            .store
            .get(&ObjectPath::from(path.as_str()))
            .await
            .classify()?;
        let version = (object.meta.e_tag.clone(), object.meta.last_modified);
        let bytes = object.bytes().await.classify()?;
        if bytes.starts_with(envelope::MAGIC) {
            return Err(envelope::tampered(
                path.as_str(),
                "is encrypted but its key record is missing",
            ));
        }
        if e.digest {
            let recorded = self.read_optional(&path.digest_key()).await?;
            let recorded = recorded.map(|b| String::from_utf8_lossy(&b).trim().to_string());
            if let Some(recorded) = recorded {
                if recorded != crate::object_artifacts::sha256_hex(&bytes) {
                    return Err(Error::Internal(format!(
                        "artifact '{path}' does not match its recorded SHA-256; left unsealed"
                    )));
                }
            }
        }
        let now = self
            .store
            .head(&ObjectPath::from(path.as_str()))
            .await
            .map_err(object_error)?;
        if (now.e_tag, now.last_modified) != version {
            return Err(changed_meanwhile(path));
        }
        self.put(path, bytes).await?;
        Ok(())
    }
}

fn changed_meanwhile(path: &ArtifactPath) -> Error {
    Error::Conflict(format!(
        "artifact '{path}' changed while it was read; it is left for the next run"
    ))
}
