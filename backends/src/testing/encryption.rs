//! The encryption-at-rest suite, run against every object store behind
//! [`ObjectArtifactStore`] (memory, a local directory, a real S3 server):
//! what reaches the store is sealed, every read authenticates it, and
//! rotation, migration and plain-text stores behave the same everywhere.

use crate::encryption::keys::{generate_key_line, Keyring};
use crate::encryption::Encryption;
use crate::ObjectArtifactStore;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::PutPayload;
use tracseq_core::ports::{ArtifactPath, ArtifactStore};
use tracseq_core::Error;

/// A new key's line (for a keyring's text).
pub fn new_key() -> String {
    generate_key_line().unwrap().1.to_string()
}

/// Encryption with these keys (the first wraps).
pub fn sealed_with(keys: &[&str]) -> Encryption {
    Encryption::with_keyring(Keyring::from_text(&keys.join("\n")).unwrap())
}

async fn raw(s: &ObjectArtifactStore, key: &str) -> Bytes {
    s.store
        .get(&ObjectPath::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

async fn raw_put(s: &ObjectArtifactStore, key: &str, bytes: Vec<u8>) {
    s.store
        .put(&ObjectPath::from(key), PutPayload::from(bytes))
        .await
        .unwrap();
}

async fn exists(s: &ObjectArtifactStore, key: &str) -> bool {
    s.store.head(&ObjectPath::from(key)).await.is_ok()
}

/// Reads through the stream, as a download does.
async fn streamed(s: &ObjectArtifactStore, p: &ArtifactPath) -> Result<Vec<u8>, Error> {
    let mut stream = s.get_stream(p).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// A refusal that names the artifact and does not serve it.
fn assert_refused(r: Result<Vec<u8>, Error>, path: &ArtifactPath, what: &str) {
    match r {
        Ok(_) => panic!("{what}: served"),
        Err(e) => assert!(e.to_string().contains(path.as_str()), "{what}: {e}"),
    }
}

/// `make(encryption)` gives a store over the same objects each time;
/// `prefix` isolates this run's keys.
pub async fn encryption_suite(make: impl Fn(Encryption) -> ObjectArtifactStore, prefix: &str) {
    let p = |rest: &str| ArtifactPath::parse(&format!("{prefix}/{rest}")).unwrap();
    let (k1, k2) = (new_key(), new_key());
    let s1 = make(sealed_with(&[&k1]));
    let csv = b"sample_id,concentration_ng_ul,rin\nS-0001,12.5,8.1\n".repeat(5_000);
    let data = p("datasets/d/data.csv");

    // What reaches the store is sealed, and nothing of it is in the clear.
    let meta = s1.put(&data, Bytes::from(csv.clone())).await.unwrap();
    assert_eq!(meta.size, csv.len() as u64);
    let stored = raw(&s1, data.as_str()).await;
    assert!(
        !stored.windows(9).any(|w| w == b"sample_id"),
        "plaintext at rest"
    );
    assert!(exists(&s1, &data.key_record_key()).await);
    assert!(
        !exists(&s1, &data.digest_key()).await,
        "no plain digest of sealed content"
    );
    let record = raw(&s1, &data.key_record_key()).await;
    assert!(!String::from_utf8_lossy(&record).contains(meta.sha256.as_deref().unwrap()));

    // Every read gives the plaintext back, with its size and digest; a
    // stream authenticates small objects whole, large ones by segment.
    let segmented = make(sealed_with(&[&k1])).with_verify_whole(0);
    assert_eq!(s1.get(&data).await.unwrap(), csv);
    assert_eq!(streamed(&s1, &data).await.unwrap(), csv);
    assert_eq!(streamed(&segmented, &data).await.unwrap(), csv);
    let head = s1.head(&data).await.unwrap();
    assert_eq!(
        (head.size, head.sha256.clone()),
        (meta.size, meta.sha256.clone())
    );
    let listed = s1.list(Some(&p("datasets"))).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].size, listed[0].sha256.clone()),
        (meta.size, meta.sha256.clone())
    );

    // A flipped byte, a cut, a missing record: refused, naming the object.
    let mut flipped = stored.to_vec();
    flipped[stored.len() / 2] ^= 0x20;
    raw_put(&s1, data.as_str(), flipped).await;
    assert_refused(
        s1.get(&data).await.map(|b| b.to_vec()),
        &data,
        "flipped byte",
    );
    assert_refused(streamed(&s1, &data).await, &data, "flipped byte, streamed");
    assert_refused(
        streamed(&segmented, &data).await,
        &data,
        "flipped byte, by segment",
    );
    raw_put(&s1, data.as_str(), stored[..stored.len() - 100].to_vec()).await;
    assert_refused(s1.get(&data).await.map(|b| b.to_vec()), &data, "truncated");
    assert!(
        s1.get_stream(&data).await.is_err(),
        "a truncated object is refused up front"
    );
    assert!(
        segmented.get_stream(&data).await.is_err(),
        "also when streamed by segment"
    );
    raw_put(&s1, data.as_str(), stored.to_vec()).await;
    assert_eq!(s1.get(&data).await.unwrap(), csv, "restored");

    // Another key: refused, naming the object and the key it needs.
    let wrong = make(sealed_with(&[&k2]));
    let err = wrong.get(&data).await.unwrap_err().to_string();
    assert!(err.contains(data.as_str()), "{err}");
    assert!(
        err.contains(&Keyring::from_text(&k1).unwrap().ids()[0].to_string()),
        "{err}"
    );
    // No key at all (encryption disabled): refused, not served as it is.
    assert!(make(Encryption::off()).get(&data).await.is_err());

    // Plain text written before encryption keeps reading, unless required.
    let plain = make(Encryption::off());
    let old = p("models/old/1/model.json");
    plain
        .put(&old, Bytes::from_static(b"{\"old\":true}"))
        .await
        .unwrap();
    assert_eq!(
        s1.get(&old).await.unwrap(),
        Bytes::from_static(b"{\"old\":true}")
    );
    assert_eq!(streamed(&s1, &old).await.unwrap(), b"{\"old\":true}");
    let strict = make(Encryption {
        require: true,
        ..sealed_with(&[&k1])
    });
    assert_refused(
        strict.get(&old).await.map(|b| b.to_vec()),
        &old,
        "plain under require",
    );
    assert_refused(
        streamed(&strict, &old).await,
        &old,
        "plain under require, streamed",
    );
    // A sealed payload whose record was deleted is not served as plain text.
    let gone = p("models/gone/1/model.json");
    s1.put(&gone, Bytes::from_static(b"secret weights"))
        .await
        .unwrap();
    plain
        .store
        .delete(&ObjectPath::from(gone.key_record_key()))
        .await
        .unwrap();
    assert_refused(
        s1.get(&gone).await.map(|b| b.to_vec()),
        &gone,
        "record deleted",
    );
    assert_refused(
        streamed(&s1, &gone).await,
        &gone,
        "record deleted, streamed",
    );
    s1.delete(&gone).await.unwrap();

    // Migration seals the plain ones after checking their digests.
    let bad = p("models/bad/1/model.json");
    plain
        .put(&bad, Bytes::from_static(b"original"))
        .await
        .unwrap();
    raw_put(&plain, bad.as_str(), b"changed on disk".to_vec()).await;
    let report = s1.seal_plaintext().await.unwrap();
    // Other suites' objects may share the store: only ours count.
    let mine = format!("'{prefix}/");
    let ours = |v: &[String]| v.iter().filter(|m| m.contains(&mine)).count();
    assert_eq!(ours(&report.problems), 1, "{report:?}");
    assert!(report.problems.iter().any(|m| m.contains(bad.as_str())));
    assert!(exists(&s1, &old.key_record_key()).await);
    assert!(!exists(&s1, &old.digest_key()).await);
    assert_eq!(
        strict.get(&old).await.unwrap(),
        Bytes::from_static(b"{\"old\":true}")
    );
    assert!(
        !exists(&s1, &bad.key_record_key()).await,
        "a mismatch is left alone"
    );
    plain.delete(&bad).await.unwrap();

    // Rotation: a new key first, data keys re-wrapped, payloads untouched;
    // the old key is then no longer needed.
    let rotated = make(sealed_with(&[&k2, &k1]));
    let before = raw(&s1, data.as_str()).await;
    let report = rotated.rewrap_all().await.unwrap();
    assert_eq!(ours(&report.problems), 0, "{report:?}");
    assert!(report.changed >= 2, "{report:?}");
    assert_eq!(
        raw(&s1, data.as_str()).await,
        before,
        "payloads are not rewritten"
    );
    let only_new = make(sealed_with(&[&k2]));
    assert_eq!(only_new.get(&data).await.unwrap(), csv);
    assert_eq!(
        only_new.get(&old).await.unwrap(),
        Bytes::from_static(b"{\"old\":true}")
    );
    let again = rotated.rewrap_all().await.unwrap();
    assert_eq!(again.changed, 0, "a second rotation has nothing to do");
    let status = only_new.key_report(true).await.unwrap();
    let new_id = Keyring::from_text(&k2).unwrap().ids()[0].to_string();
    assert!(
        status.sealed_by_key.get(&new_id).copied().unwrap_or(0) >= 2,
        "{status:?}"
    );
    assert_eq!(ours(&status.problems), 0, "{status:?}");

    // Overwritten in plain text (encryption turned off), it reads as such.
    plain
        .put(&data, Bytes::from_static(b"plain again"))
        .await
        .unwrap();
    assert!(!exists(&s1, &data.key_record_key()).await);
    assert_eq!(
        only_new.get(&data).await.unwrap(),
        Bytes::from_static(b"plain again")
    );
    for path in [&data, &old] {
        only_new.delete(path).await.unwrap();
        assert!(!exists(&s1, &path.key_record_key()).await);
    }
}
