//! Against a real S3 server: `ops/test.sh` starts one and exports
//! `TRACSEQ_TEST_S3_ENDPOINT` (plus bucket and keys).

use crate::object_artifacts::{sha256_hex, S3Options};
use crate::testing::artifact_store_suite;
use crate::ObjectArtifactStore;
use bytes::Bytes;
use tracseq_core::ports::{ArtifactPath, ArtifactStore};
use tracseq_core::Error;

fn options() -> Option<S3Options> {
    let Ok(endpoint) = std::env::var("TRACSEQ_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TRACSEQ_TEST_S3_ENDPOINT is not set: run the tests through ops/test.sh, which starts an S3 server"
        );
        eprintln!("skipped: no S3 server (TRACSEQ_TEST_S3_ENDPOINT unset); ops/test.sh starts one");
        return None;
    };
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let bucket = var("TRACSEQ_TEST_S3_BUCKET", "tracseq-test");
    Some(S3Options {
        url: format!("s3://{bucket}/t-{}", uuid::Uuid::new_v4().simple()),
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        access_key_id: Some(var("TRACSEQ_TEST_S3_ACCESS_KEY", "tracseq")),
        secret_access_key: Some(var("TRACSEQ_TEST_S3_SECRET_KEY", "tracseq-secret")),
    })
}

#[tokio::test]
async fn s3_artifacts_conform() {
    let Some(opts) = options() else { return };
    artifact_store_suite(&ObjectArtifactStore::s3(&opts).unwrap(), "suite").await;
}

#[tokio::test]
async fn sealed_s3_artifacts_conform() {
    let Some(opts) = options() else { return };
    let open = |e| ObjectArtifactStore::s3(&opts).unwrap().with_encryption(e);
    let key = crate::testing::new_key();
    artifact_store_suite(&open(crate::testing::sealed_with(&[&key])), "suite").await;
    crate::testing::encryption_suite(open, "enc").await;
}

#[tokio::test]
async fn s3_multipart_upload_of_a_large_artifact() {
    let Some(opts) = options() else { return };
    let body: Vec<u8> = (0..(20 * 1024 * 1024u32))
        .map(|i| (i % 251) as u8)
        .collect();
    // Plain and sealed: a sealed payload is uploaded in parts the same way.
    let key = crate::testing::new_key();
    for (name, encryption) in [
        ("plain", crate::encryption::Encryption::off()),
        ("sealed", crate::testing::sealed_with(&[&key])),
    ] {
        let store = ObjectArtifactStore::s3(&opts)
            .unwrap()
            .with_encryption(encryption);
        let path = ArtifactPath::parse(&format!("models/big-{name}/1/model.json")).unwrap();
        let meta = store.put(&path, Bytes::from(body.clone())).await.unwrap();
        assert_eq!(meta.size, body.len() as u64);
        assert_eq!(meta.sha256.as_deref(), Some(sha256_hex(&body).as_str()));
        assert_eq!(store.get(&path).await.unwrap(), body);
        assert_eq!(store.head(&path).await.unwrap().sha256, meta.sha256);
    }
}

/// A private s3s-fs on its own port and directory, so the test can stop
/// and restart it without touching the shared one.
struct OwnServer {
    child: std::process::Child,
}

impl OwnServer {
    fn start(bin: &std::path::Path, dir: &std::path::Path, port: u16, o: &S3Options) -> OwnServer {
        let child = std::process::Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                o.access_key_id.as_deref().unwrap_or_default(),
            ])
            .args([
                "--secret-key",
                o.secret_access_key.as_deref().unwrap_or_default(),
            ])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        OwnServer { child }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn s3_outage_makes_an_upload_wait_and_retry_not_vanish() {
    let Some(shared) = options() else { return };
    let bin = std::env::var_os("TRACSEQ_TEST_S3_BIN")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::Path::new(&h).join(".cache/tracseq-ml/bin/s3s-fs"))
        })
        .filter(|p| p.exists());
    let Some(bin) = bin else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no s3s-fs binary (ops/s3-server.sh installs it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("outage")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = S3Options {
        url: "s3://outage/t".into(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..shared
    };
    let server = OwnServer::start(&bin, dir.path(), port, &opts);
    let store = std::sync::Arc::new(ObjectArtifactStore::s3(&opts).unwrap());
    let before = ArtifactPath::parse("models/m/1/model.json").unwrap();
    store
        .put(&before, Bytes::from_static(b"before"))
        .await
        .unwrap();

    drop(server); // S3 goes away...
    let during = ArtifactPath::parse("models/m/2/model.json").unwrap();
    let (s, p) = (store.clone(), during.clone());
    let upload =
        tokio::spawn(async move { s.put(&p, Bytes::from_static(b"during the outage")).await });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !upload.is_finished(),
        "the upload waits and retries while S3 is down"
    );

    let _server = OwnServer::start(&bin, dir.path(), port, &opts); // ...and comes back.
    let meta = upload
        .await
        .unwrap()
        .expect("the upload completes once S3 is back");
    assert_eq!(meta.size, 17);
    assert_eq!(
        store.get(&during).await.unwrap(),
        Bytes::from_static(b"during the outage")
    );
    assert_eq!(
        store.get(&before).await.unwrap(),
        Bytes::from_static(b"before")
    );
}

#[test]
fn bad_urls_are_rejected() {
    for url in ["http://x", "s3://"] {
        let bad = S3Options {
            url: url.into(),
            ..Default::default()
        };
        assert!(
            matches!(ObjectArtifactStore::s3(&bad), Err(Error::Invalid(_))),
            "{url}"
        );
    }
}
