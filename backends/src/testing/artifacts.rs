//! The `ArtifactStore` conformance suite.

use bytes::Bytes;
use tracseq_core::ports::{ArtifactPath, ArtifactStore};
use tracseq_core::Error;

/// `prefix` isolates this run's keys (buckets are shared between tests).
pub async fn artifact_store_suite(s: &dyn ArtifactStore, prefix: &str) {
    let p = |rest: &str| ArtifactPath::parse(&format!("{prefix}/{rest}")).unwrap();
    let body = Bytes::from_static(b"hello artifacts");
    let meta = s
        .put(&p("models/m/1/model.json"), body.clone())
        .await
        .unwrap();
    assert_eq!(meta.size, body.len() as u64);
    let digest = tracseq_core::digest::sha256_hex(&body);
    assert_eq!(meta.sha256.as_deref(), Some(digest.as_str()));
    assert_eq!(s.get(&p("models/m/1/model.json")).await.unwrap(), body);
    let head = s.head(&p("models/m/1/model.json")).await.unwrap();
    assert_eq!(
        (head.size, head.sha256.clone()),
        (meta.size, meta.sha256.clone())
    );

    // Overwrite replaces content and digest.
    let meta2 = s
        .put(&p("models/m/1/model.json"), Bytes::from_static(b"v2"))
        .await
        .unwrap();
    assert_ne!(meta2.sha256, meta.sha256);
    assert_eq!(
        s.get(&p("models/m/1/model.json")).await.unwrap(),
        Bytes::from_static(b"v2")
    );

    // Empty and larger objects.
    s.put(&p("empty"), Bytes::new()).await.unwrap();
    assert_eq!(s.get(&p("empty")).await.unwrap().len(), 0);
    let big = Bytes::from(vec![7u8; 3 * 1024 * 1024]);
    s.put(&p("datasets/d/data.csv"), big.clone()).await.unwrap();
    assert_eq!(s.get(&p("datasets/d/data.csv")).await.unwrap(), big);

    // Listing by prefix: sorted, digests included, digest sidecars hidden.
    let listed = s.list(Some(&p("models"))).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].path, format!("{prefix}/models/m/1/model.json"));
    assert_eq!(listed[0].sha256, meta2.sha256);
    let all = s
        .list(Some(&ArtifactPath::parse(prefix).unwrap()))
        .await
        .unwrap();
    let paths: Vec<_> = all.iter().map(|m| m.path.clone()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert_eq!(paths.len(), 3);
    assert!(paths.iter().all(|p| !p.ends_with(".sha256")));

    // Missing objects are NotFound; delete is idempotent.
    assert!(matches!(s.get(&p("nope")).await, Err(Error::NotFound(_))));
    assert!(matches!(s.head(&p("nope")).await, Err(Error::NotFound(_))));
    s.delete(&p("empty")).await.unwrap();
    s.delete(&p("empty")).await.unwrap();
    assert!(matches!(s.get(&p("empty")).await, Err(Error::NotFound(_))));
}
