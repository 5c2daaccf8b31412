//! Artifacts at rest: every data set, trial result and model the platform
//! stores is sealed with AES-256-GCM before it reaches the local directory
//! or the bucket, so a copied directory, a leaked bucket or a backup tape
//! holds nothing readable without the key-encryption key.
//!
//! Envelope encryption ([`envelope`]): a random data key per object, wrapped
//! by a key-encryption key ([`keys`]) and stored beside the object as
//! `<path>.key` with the key's id. Rotation re-wraps those records and never
//! rewrites a payload ([`maintenance`]). Objects written before encryption
//! (no `.key` record) keep reading unless `encryption.require` is set;
//! `tracseq-ml keys migrate` seals them.
//!
//! Where the keys come from, in order: `encryption.key_file`, then
//! `TRACSEQ_KEK`, then (embedded mode only) `<data_dir>/keys/kek`, created
//! with a fresh key on first start. A distributed role refuses to start
//! with none of these unless `encryption.disabled` says plain text is
//! intended.

pub mod envelope;
pub mod keys;
pub mod maintenance;

use keys::{Keyring, KEK_ENV};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracseq_core::config::EncryptionConfig;
use tracseq_core::{Error, Result};

/// Where the embedded default key is kept, under the data directory.
pub const EMBEDDED_KEY_FILE: &str = "keys/kek";

/// How an artifact store treats what it writes and reads.
#[derive(Clone, Debug, Default)]
pub struct Encryption {
    /// The keys; `None` writes plain text (and cannot read sealed objects).
    pub keyring: Option<Arc<Keyring>>,
    /// Refuse objects stored without encryption.
    pub require: bool,
}

impl Encryption {
    /// Plain text: for tests of the store itself and for `encryption.disabled`.
    pub fn off() -> Self {
        Encryption::default()
    }

    pub fn with_keyring(keyring: Keyring) -> Self {
        Encryption {
            keyring: Some(Arc::new(keyring)),
            require: false,
        }
    }

    /// The encryption a process runs with. `embedded_dir` is the data
    /// directory in embedded mode (where a first start creates the key), and
    /// `None` for distributed roles, which must be given a key.
    pub fn from_config(cfg: &EncryptionConfig, embedded_dir: Option<&Path>) -> Result<Self> {
        let env = std::env::var(KEK_ENV).ok().filter(|v| !v.trim().is_empty());
        if cfg.disabled {
            if env.is_some() {
                return Err(Error::Invalid(format!(
                    "config key 'encryption.disabled' is set but {KEK_ENV} holds a key; drop one of them"
                )));
            }
            tracing::warn!("encryption.disabled: artifacts are stored in plain text");
            return Ok(Encryption::off());
        }
        let keyring = match (&cfg.key_file, env, embedded_dir) {
            (Some(_), Some(_), _) => {
                return Err(Error::Invalid(format!(
                    "config key 'encryption.key_file' and {KEK_ENV} are both set; keep one of them"
                )))
            }
            (Some(file), None, _) => Keyring::from_file(file)?,
            (None, Some(text), _) => Keyring::from_text(&text)?,
            (None, None, Some(dir)) => Keyring::from_file(&ensure_embedded_key(dir)?)?,
            (None, None, None) => {
                return Err(Error::Invalid(format!(
                    "artifacts are encrypted at rest and no key-encryption key is configured: set \
                     config key 'encryption.key_file' (or TRACSEQ_ENCRYPTION_KEY_FILE) to a file \
                     `tracseq-ml keys generate --out FILE` wrote, or put the key in {KEK_ENV}; set \
                     'encryption.disabled' to store artifacts in plain text instead"
                )))
            }
        };
        tracing::info!(
            keys = %keyring.source(),
            active = %keyring.ids()[0],
            require = cfg.require,
            "artifacts are encrypted at rest"
        );
        Ok(Encryption {
            keyring: Some(Arc::new(keyring)),
            require: cfg.require,
        })
    }
}

/// The embedded key file, created with a new key when missing.
pub fn ensure_embedded_key(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(EMBEDDED_KEY_FILE);
    if !path.exists() {
        let (id, line) = keys::generate_key_line()?;
        keys::write_key_file(&path, &keys::key_file_text(&[&line]))?;
        tracing::info!(key = %id, file = %path.display(), "created the key-encryption key");
    }
    Ok(path)
}
