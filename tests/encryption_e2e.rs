//! Encryption at rest through the real binary: `tracseq-ml keys migrate`
//! seals a store written in plain text, `keys rotate` re-wraps it under a
//! new key without rewriting a payload, `keys status --verify` reads every
//! artifact back, no command prints a key it did not just make, and a
//! distributed role without a key refuses to start.

use bytes::Bytes;
use std::path::Path;
use std::process::{Command, Stdio};
use tracseq_backends::encryption::keys::Keyring;
use tracseq_backends::encryption::Encryption;
use tracseq_backends::ObjectArtifactStore;
use tracseq_core::ports::{ArtifactPath, ArtifactStore};

fn cli(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tracseq-ml"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("ARTIFACT_URL")
        .env_remove("TRACSEQ_KEK")
        .stdin(Stdio::null())
        .output()
        .expect("run tracseq-ml");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The hex keys of a key file, in order.
fn key_hexes(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_plain_store_is_migrated_rotated_and_verified_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let plain = ObjectArtifactStore::local(&data.join("artifacts")).unwrap();
    let objects = [
        ("datasets/d1/data.csv", b"sample_id,rin\nS-1,8.1\n".to_vec()),
        (
            "models/quality/1/model.json",
            b"{\"weights\":[0.25]}".to_vec(),
        ),
        (
            "experiments/e1/trials/0/result.json",
            b"{\"score\":0.91}".to_vec(),
        ),
    ];
    for (p, body) in &objects {
        let path = ArtifactPath::parse(p).unwrap();
        plain.put(&path, Bytes::from(body.clone())).await.unwrap();
    }
    let mut outputs = String::new();

    let (ok, out, err) = cli(data, &["keys", "status"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("plain text  3 artifacts"), "{out}");
    outputs += &(out + &err);

    let (ok, out, err) = cli(data, &["keys", "migrate"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("sealed 3 artifacts"), "{out}");
    outputs += &(out + &err);
    let on_disk = std::fs::read(data.join("artifacts/datasets/d1/data.csv")).unwrap();
    assert!(
        !on_disk.windows(9).any(|w| w == b"sample_id"),
        "sealed on disk"
    );
    assert!(data.join("artifacts/datasets/d1/data.csv.key").exists());
    assert!(!data.join("artifacts/datasets/d1/data.csv.sha256").exists());

    let key_file = data.join("keys/kek");
    let first = key_hexes(&key_file);
    assert_eq!(first.len(), 1);
    let first_id = Keyring::from_text(&first[0]).unwrap().ids()[0].to_string();

    let (ok, out, err) = cli(data, &["keys", "rotate"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("re-wrapped 3 artifacts"), "{out}");
    outputs += &(out + &err);
    let keys = key_hexes(&key_file);
    assert_eq!(keys.len(), 2, "the new key first, the old one kept");
    assert_eq!(keys[1], first[0]);
    assert_eq!(
        std::fs::read(data.join("artifacts/datasets/d1/data.csv")).unwrap(),
        on_disk,
        "a rotation does not rewrite payloads"
    );

    let (ok, out, err) = cli(data, &["keys", "status", "--verify"]);
    assert!(ok, "{out}{err}");
    let new_id = Keyring::from_text(&keys[0]).unwrap().ids()[0].to_string();
    assert!(
        out.contains(&format!("{new_id}  (active, held)  3 artifacts")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{first_id}  (held)  0 artifacts")),
        "{out}"
    );
    assert!(out.contains("plain text  0 artifacts"), "{out}");
    assert!(out.contains("authenticated"), "{out}");
    outputs += &(out + &err);

    // The new key alone opens everything: the old one can be retired.
    let only_new = ObjectArtifactStore::local(&data.join("artifacts"))
        .unwrap()
        .with_encryption(Encryption::with_keyring(
            Keyring::from_text(&keys[0]).unwrap(),
        ));
    for (p, body) in &objects {
        let path = ArtifactPath::parse(p).unwrap();
        assert_eq!(
            only_new.get(&path).await.unwrap(),
            Bytes::from(body.clone())
        );
    }

    // A damaged artifact makes --verify fail, naming it.
    let model = data.join("artifacts/models/quality/1/model.json");
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&model, bytes).unwrap();
    let (ok, out, err) = cli(data, &["keys", "status", "--verify"]);
    assert!(!ok);
    assert!(out.contains("models/quality/1/model.json"), "{out}");
    outputs += &(out + &err);

    // Key files: private, never overwritten.
    let other = data.join("other.kek");
    let (ok, _, err) = cli(
        data,
        &["keys", "generate", "--out", other.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    outputs += &err;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&other).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (ok, _, err) = cli(
        data,
        &["keys", "generate", "--out", other.to_str().unwrap()],
    );
    assert!(!ok && err.contains("never overwritten"), "{err}");

    for key in keys.iter().chain(key_hexes(&other).iter()) {
        assert!(!outputs.contains(key.as_str()), "a key was printed");
    }

    // Both changes are on the record, and the chain holds.
    let (ok, out, err) = cli(data, &["audit", "verify"]);
    assert!(ok, "{out}{err}");
    let url = format!("sqlite://{}", data.join("state.db").display());
    let bodies: Vec<String> = {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query_scalar("SELECT body FROM audit_log ORDER BY seq")
            .fetch_all(&mut db)
            .await
            .unwrap()
    };
    let all = bodies.join("\n");
    assert!(
        all.contains("keys.migrate") && all.contains("keys.rotate"),
        "{all}"
    );
}

#[test]
fn a_distributed_role_without_a_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tracseq-ml"))
        .arg("scheduler")
        .env("DATABASE_URL", "postgres://tracseq@127.0.0.1:1/none")
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("ARTIFACT_URL", dir.path().join("artifacts"))
        .env_remove("TRACSEQ_KEK")
        .env_remove("TRACSEQ_ENCRYPTION_KEY_FILE")
        .env_remove("TRACSEQ_ENCRYPTION_DISABLED")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("encryption.key_file") && err.contains("TRACSEQ_KEK"),
        "{err}"
    );
    assert!(
        !dir.path()
            .join("artifacts")
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false),
        "nothing was written"
    );
}
