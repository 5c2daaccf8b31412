//! Security through the real binary: the first start's admin token, tokens
//! made and revoked with the CLI and the API, the audit log a real session
//! leaves (and `tracseq-ml audit verify` over it, intact and tampered
//! with), artifacts sealed on disk and refused once damaged, and secrets
//! (tokens, the key-encryption key) kept out of the log, `/health`,
//! `/metrics` and the audit log.

mod common;

use common::{Api, Server};
use serde_json::json;
use sqlx::{Connection, Executor, Row};
use std::process::{Command, Stdio};

fn cli(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tracseq-ml"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run tracseq-ml")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_leaves_a_verifiable_audit_log_and_no_secret_in_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let data = dir.path().join("data");
    let server = Server::start_logging(
        &data,
        &[("RUST_LOG", "debug,hyper=info,h2=info,sqlx=info")],
        log.into(),
    )
    .await;

    // The first start's token: in <data_dir>/admin.token, owner-only.
    let admin = server.token.clone().unwrap();
    assert!(admin.starts_with("tsq_") && admin.len() == 68, "{admin}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A predictor token from the API, one from the CLI.
    let (status, made) = server
        .post_json(
            "/tokens",
            &json!({"name": "lims", "role": "predictor", "expires": "30d"}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let lims = made["token"].as_str().unwrap().to_string();
    let out = cli(
        &data,
        &["token", "create", "--name", "ana", "--role", "scientist"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ana = text(&out.stdout).trim().to_string();
    assert!(ana.starts_with("tsq_"), "the CLI prints only the secret");
    let listing = cli(&data, &["token", "list"]);
    assert!(text(&listing.stdout).contains("ana"));

    // The scientist works; the predictor may not; a made-up token is unknown.
    let scientist = Api::with_token(server.base.clone(), &ana);
    let ds = scientist.upload_lab(60, 1).await;
    assert_eq!(ds["owner"]["name"], "ana", "{ds}");

    // The data set is sealed on disk under the first start's key, and
    // comes back in the clear only through the platform.
    let csv_path = format!("artifacts/datasets/{}/data.csv", ds["id"].as_str().unwrap());
    let sealed = std::fs::read(data.join(&csv_path)).unwrap();
    assert!(sealed.starts_with(b"TSQENC"), "sealed at rest");
    let download = format!("{}/{}", server.base, csv_path);
    let csv = scientist.http.get(&download).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    let csv = csv.bytes().await.unwrap();
    assert!(csv.starts_with(b"sample_"), "{:?}", &csv[..20]);
    assert!(
        !sealed.windows(24).any(|w| w == &csv[..24]),
        "no plaintext on disk"
    );
    // A byte changed on disk: refused with an answer that names it.
    let mut damaged = sealed.clone();
    damaged[sealed.len() / 2] ^= 0x04;
    std::fs::write(data.join(&csv_path), &damaged).unwrap();
    let refused = scientist.http.get(&download).send().await.unwrap();
    assert_eq!(refused.status(), 500);
    let problem = refused.text().await.unwrap();
    assert!(
        problem.contains(&csv_path["artifacts/".len()..]),
        "{problem}"
    );
    std::fs::write(data.join(&csv_path), &sealed).unwrap();
    let kek_hex: Vec<String> = std::fs::read_to_string(data.join("keys/kek"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .filter(|k| k.len() == 64)
        .collect();
    assert_eq!(kek_hex.len(), 1, "the first start made one key");
    let predictor = Api::with_token(server.base.clone(), &lims);
    let (status, refused) = predictor.get("/datasets").await;
    assert_eq!(status, 403, "{refused}");
    let forged = format!("tsq_{}", "ab".repeat(32));
    let (status, _) = Api::with_token(server.base.clone(), &forged)
        .get("/datasets")
        .await;
    assert_eq!(status, 401);

    // Revoked with the CLI: refused once the api's token cache lapses.
    let out = cli(&data, &["token", "revoke", "ana"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let (status, _) = scientist.get("/datasets").await;
    assert_eq!(status, 401, "a revoked token is refused");

    let health = server
        .http
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    let health = health.text().await.unwrap();
    let metrics = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("tracseq_audit_failures_total 0"),
        "{metrics}"
    );

    // Who did what, newest first.
    let audit = server.get_ok("/audit?limit=1000").await;
    let entries = audit.as_array().unwrap();
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {audit}"))
    };
    let upload = find("datasets.create");
    assert_eq!(upload["actor"]["name"], "ana");
    assert_eq!(upload["targets"][0], ds["id"]);
    assert!(upload["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(entries
        .iter()
        .any(|e| e["status"] == 403 && e["actor"]["name"] == "lims"));
    assert!(entries.iter().any(|e| e["status"] == 401));
    assert!(entries.iter().any(
        |e| e["action"] == "tokens.revoke" && e["client"].as_str().unwrap().starts_with("cli:")
    ));
    server.stop();

    // No secret anywhere it could leak.
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("admin.token"),
        "the first start says where the token is"
    );
    assert!(log.contains("keys/kek"), "and where the key is");
    for (what, secret) in [
        ("admin", &admin),
        ("lims", &lims),
        ("ana", &ana),
        ("forged", &forged),
        ("key-encryption key", &kek_hex[0]),
    ] {
        assert!(
            !log.contains(secret.as_str()),
            "the {what} token is in the server log"
        );
        assert!(!health.contains(secret.as_str()) && !metrics.contains(secret.as_str()));
        assert!(
            !audit.to_string().contains(secret.as_str()),
            "{what} in the audit log"
        );
    }

    // The chain verifies; an edit made behind the platform's back is found.
    let out = cli(&data, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("audit log verified"));
    let url = format!("sqlite://{}", data.join("state.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let err = db
        .execute("UPDATE audit_log SET actor_name = 'x' WHERE seq = 2")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let body: String = sqlx::query("SELECT body FROM audit_log WHERE seq = 3")
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0);
    // Someone with the file drops the trigger and rewrites entry 3.
    db.execute("DROP TRIGGER audit_log_no_update")
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET body = ? WHERE seq = 3")
        .bind(body.replacen("\"status\":", "\"status\":1", 1))
        .execute(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    let out = cli(&data, &["audit", "verify"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("broken at entry 3"),
        "{}",
        text(&out.stderr)
    );
}

/// Service URLs carry passwords. A distributed api refused on an unmigrated
/// schema, then running on the migrated one at `RUST_LOG=debug`, prints the
/// database password in no log line, error, `/health` or `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_password_reaches_no_output() {
    let pg = std::env::var("TRACSEQ_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut url = reqwest::Url::parse(&pg).unwrap();
    let reachable = std::net::TcpStream::connect((
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432),
    ))
    .is_ok();
    if !reachable {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is not running"
        );
        eprintln!("skipped: no PostgreSQL");
        return;
    }
    // The test server trusts local connections, so any password connects.
    const PASSWORD: &str = "PgS3cretPw-7f3a91";
    url.set_password(Some(PASSWORD)).unwrap();
    let amqp = std::env::var("TRACSEQ_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let schema = format!("leak_{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let (_, kek) = tracseq_backends::encryption::keys::generate_key_line().unwrap();
    let port = common::free_port();
    let command = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tracseq-ml"));
        cmd.args(args)
            .current_dir(dir.path())
            .env("DATABASE_URL", url.as_str())
            .env("TRACSEQ_DISTRIBUTED_DATABASE_SCHEMA", &schema)
            .env("AMQP_URL", &amqp)
            .env("TRACSEQ_DISTRIBUTED_AMQP_PREFIX", &schema)
            .env("ARTIFACT_URL", dir.path().join("artifacts"))
            .env("TRACSEQ_KEK", kek.split_whitespace().next().unwrap())
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null());
        cmd
    };
    let mut outputs = String::new();
    let api = ["api", "--port", &port.to_string()];

    let refused = command(&api).output().unwrap();
    assert!(!refused.status.success(), "an unmigrated schema is refused");
    outputs += &text(&refused.stdout);
    outputs += &text(&refused.stderr);
    let migrated = command(&["migrate"]).output().unwrap();
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    outputs += &text(&migrated.stderr);
    let made = command(&["token", "create", "--name", "ops", "--role", "admin"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let token = text(&made.stdout).trim().to_string();
    outputs += &text(&made.stderr);

    let log_path = dir.path().join("api.log");
    let mut child = command(&api)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let client = Api::with_token(format!("http://127.0.0.1:{port}"), &token);
    client
        .wait_healthy(std::time::Duration::from_secs(30))
        .await;
    let health = client
        .http
        .get(format!("{}/health", client.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metrics = client
        .http
        .get(format!("{}/metrics", client.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("tracseq_"), "{metrics}");
    let (status, _) = client.get("/experiments/not-an-id").await;
    assert_eq!(status, 400);
    let _ = child.kill();
    let _ = child.wait();
    outputs += &std::fs::read_to_string(&log_path).unwrap();
    outputs += &health;
    outputs += &metrics;

    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&pg).await.unwrap();
    db.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
        .await
        .unwrap();
    assert!(outputs.contains("DEBUG"), "the log was at debug level");
    assert!(
        !outputs.contains(PASSWORD),
        "the database password was printed"
    );
}
