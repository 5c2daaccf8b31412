//! Every backend against its port's suite: the embedded ones here, the
//! distributed ones (which need their servers) in their own modules.

#[cfg(feature = "amqp")]
mod amqp;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "s3")]
mod s3;

use crate::testing::{
    alert_store_suite, artifact_store_suite, audit_entry, job_queue_suite, prediction_log_suite,
    registry_store_suite, security_store_suite, state_store_suite,
};
use crate::*;
use std::sync::Arc;

#[tokio::test]
async fn memory_state_store_conforms() {
    state_store_suite(Arc::new(MemoryStateStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_state_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    state_store_suite(Arc::new(store)).await;
}

#[tokio::test]
async fn memory_security_store_conforms() {
    security_store_suite(Arc::new(MemorySecurityStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_security_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    security_store_suite(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_registry_store_conforms() {
    let store = Arc::new(MemoryStateStore::new());
    registry_store_suite(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_registry_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStateStore::open(&dir.path().join("state.db"))
            .await
            .unwrap(),
    );
    registry_store_suite(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_prediction_log_conforms() {
    prediction_log_suite(Arc::new(MemoryStateStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_prediction_log_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    prediction_log_suite(Arc::new(store)).await;
}

#[tokio::test]
async fn memory_alert_store_conforms() {
    alert_store_suite(Arc::new(MemoryStateStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_alert_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    alert_store_suite(Arc::new(store)).await;
}

#[tokio::test]
async fn sqlite_refuses_to_change_or_delete_audit_rows() {
    use tracseq_core::ports::SecurityStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    store
        .append_audit(audit_entry("datasets.create", None, &["d"], 0))
        .await
        .unwrap();
    // Straight at the file, as an operator with sqlite3 would.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for sql in ["UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(store.audit_chain(0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_refuses_to_change_or_delete_model_history() {
    use tracseq_core::ports::{HistoryEntry, RegistryStore, RegistryWrite, StateStore};
    use tracseq_core::registry::{Effect, Stage};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStateStore::open(&path).await.unwrap();
    store
        .register_model_version(crate::testing::model_version("m", 1), crate::testing::t0())
        .await
        .unwrap();
    let mut slots = store.model_slots("m").await.unwrap();
    slots.stages.insert(1, Stage::Staging);
    let entry = HistoryEntry {
        seq: 0,
        model: "m".into(),
        at: crate::testing::t0(),
        change: Effect::StageChanged {
            version: 1,
            from: Stage::None,
            to: Stage::Staging,
        },
        requested_by: None,
        approved_by: None,
        promotion_id: None,
        deployment_id: None,
        reason: None,
    };
    let write = RegistryWrite {
        slots,
        history: vec![entry],
        promotion: None,
    };
    assert!(store.commit_registry(write).await.unwrap());
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for sql in [
        "UPDATE model_history SET at = 0",
        "DELETE FROM model_history",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(store.model_history("m", 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let exp = crate::testing::new_experiment("persist");
    {
        let store = SqliteStateStore::open(&path).await.unwrap();
        use tracseq_core::ports::StateStore;
        store.insert_experiment(&exp).await.unwrap();
    }
    let store = SqliteStateStore::open(&path).await.unwrap();
    use tracseq_core::ports::StateStore;
    assert_eq!(store.get_experiment(exp.id).await.unwrap(), exp);
}

#[tokio::test]
async fn memory_queue_conforms() {
    job_queue_suite(&MemoryQueue::new(), "cpu").await;
}

#[tokio::test]
async fn memory_queue_close_ends_subscriptions() {
    use tracseq_core::ports::JobQueue;
    let q = MemoryQueue::new();
    let mut sub = q.subscribe("cpu", 1).await.unwrap();
    let waiter = tokio::spawn(async move { sub.next().await.unwrap().is_none() });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    q.close();
    assert!(waiter.await.unwrap());
}

#[tokio::test]
async fn memory_artifacts_conform() {
    artifact_store_suite(&ObjectArtifactStore::in_memory(), "t").await;
}

#[tokio::test]
async fn local_directory_artifacts_conform() {
    let dir = tempfile::tempdir().unwrap();
    artifact_store_suite(&ObjectArtifactStore::local(dir.path()).unwrap(), "t").await;
}

#[tokio::test]
async fn sealed_memory_artifacts_conform() {
    let mem: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::memory::InMemory::new());
    let sealed = ObjectArtifactStore::new(mem.clone())
        .with_encryption(crate::testing::sealed_with(&[&crate::testing::new_key()]));
    artifact_store_suite(&sealed, "t").await;
    crate::testing::encryption_suite(
        |e| ObjectArtifactStore::new(mem.clone()).with_encryption(e),
        "e",
    )
    .await;
}

#[tokio::test]
async fn sealed_local_directory_artifacts_conform() {
    let dir = tempfile::tempdir().unwrap();
    let open = |e| {
        ObjectArtifactStore::local(dir.path())
            .unwrap()
            .with_encryption(e)
    };
    artifact_store_suite(
        &open(crate::testing::sealed_with(&[&crate::testing::new_key()])),
        "t",
    )
    .await;
    crate::testing::encryption_suite(open, "e").await;
}

#[tokio::test]
async fn a_local_store_never_names_its_directory_in_an_error() {
    use tracseq_core::ports::{ArtifactPath, ArtifactStore};
    let dir = tempfile::tempdir().unwrap();
    let store = ObjectArtifactStore::local(dir.path()).unwrap();
    let root = dir.path().display().to_string();
    let missing = ArtifactPath::parse("models/m/1/model.json").unwrap();
    for err in [
        store.get(&missing).await.unwrap_err(),
        store.head(&missing).await.unwrap_err(),
        store.get_stream(&missing).await.err().unwrap(),
    ] {
        assert!(matches!(err, tracseq_core::Error::NotFound(_)), "{err}");
        assert!(!err.to_string().contains(&root), "{err}");
    }
    // A segment no file system takes is refused before the store is asked.
    let long = format!("datasets/{}", "0".repeat(256));
    assert!(ArtifactPath::parse(&long).is_err());
}
