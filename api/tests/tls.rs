//! HTTPS end to end: `api.tls_cert` / `api.tls_key` with a certificate the
//! test makes, the real listener (`tracseq_api::serve`), and an HTTP client
//! that trusts only that certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tracseq_api::ApiState;
use tracseq_backends::MemorySecurityStore;
use tracseq_core::config::ApiConfig;
use tracseq_core::lifecycle::RetryPolicy;
use tracseq_core::ports::SecurityStore;
use tracseq_core::security::token::{issue, TokenRequest};
use tracseq_core::security::Role;
use tracseq_core::Error;

struct Pem {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    cert_pem: String,
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM.
fn certificate() -> Pem {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate a certificate");
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let cert_pem = made.cert.pem();
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    Pem {
        _dir: dir,
        cert,
        key,
        cert_pem,
    }
}

/// Serves an in-memory platform over TLS: its address, an admin token, and
/// the sender that stops it.
async fn serve_tls(pem: &Pem) -> (SocketAddr, String, tokio::sync::oneshot::Sender<()>) {
    let security: Arc<dyn SecurityStore> = Arc::new(MemorySecurityStore::new());
    let issued = issue(
        TokenRequest {
            name: "tls-admin".into(),
            role: Role::Admin,
            expires_in: None,
            created_by: "test".into(),
        },
        chrono::Utc::now(),
    )
    .unwrap();
    security.insert_token(&issued.record).await.unwrap();
    let api = ApiConfig {
        tls_cert: Some(pem.cert.clone()),
        tls_key: Some(pem.key.clone()),
        ..ApiConfig::default()
    };
    let ctx = ApiState::new(
        tracseq_backends::platform::in_memory(RetryPolicy::default()),
        security,
        api,
        Default::default(),
        Default::default(),
        Default::default(),
        Arc::new(tokio::sync::Notify::new()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound) = tokio::sync::oneshot::channel();
    tokio::spawn(tracseq_api::serve(
        ctx,
        "127.0.0.1:0".parse().unwrap(),
        async move {
            let _ = stopped.await;
        },
        bound_tx,
    ));
    let addr = bound.await.expect("the listener is up");
    (addr, issued.secret.expose().to_string(), stop)
}

fn trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn with_a_certificate_the_api_answers_https_and_refuses_plain_http() {
    let pem = certificate();
    let (addr, token, stop) = serve_tls(&pem).await;
    let https = format!("https://localhost:{}", addr.port());
    let client = trusting(&pem.cert_pem);

    let health = client.get(format!("{https}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let who = client
        .get(format!("{https}/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(who.status(), 200);
    let who: serde_json::Value = who.json().await.unwrap();
    assert_eq!(who["name"], "tls-admin", "{who}");
    let anonymous = client.get(format!("{https}/whoami")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // Plain HTTP on the same port gets no HTTP answer at all.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/health", addr.port()))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must not be served: {plain:?}");
    // Nor does a client that does not trust the certificate get through.
    let other = trusting(&certificate().cert_pem)
        .get(format!("{https}/health"))
        .send()
        .await;
    assert!(
        other.is_err(),
        "an untrusted certificate must fail: {other:?}"
    );
    let _ = stop.send(());
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused_naming_the_settings() {
    let (a, b) = (certificate(), certificate());
    let err = tracseq_api::tls_acceptor(&a.cert, &b.key)
        .err()
        .expect("mismatched key");
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("api.tls_key"), "{err}");

    let missing = a.cert.with_file_name("missing.pem");
    let err = tracseq_api::tls_acceptor(&missing, &a.key)
        .err()
        .expect("missing cert");
    assert!(err.to_string().contains("api.tls_cert"), "{err}");
}
