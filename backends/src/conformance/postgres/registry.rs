//! The PostgreSQL registry store: the shared suite, writers racing from
//! two pools, the database's own rules (append-only history, one
//! production version) and which process role may write what.

use super::{apply_role_grants, connect_as, is_permission_denied};
use crate::postgres::testing::TestSchema;
use crate::testing::{model_version, registry_store_suite, t0};
use sqlx::Executor;
use std::sync::Arc;
use tokio::sync::Barrier;
use tracseq_core::ports::{HistoryEntry, RegistryStore, RegistryWrite, StateStore};
use tracseq_core::registry::{apply, Change, Effect, Stage};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_registry_store_conforms() {
    let schema = schema_or_skip!();
    let store = Arc::new(schema.store(8).await);
    registry_store_suite(store.clone(), store).await;
}

/// Two pools stand for two api replicas; many writers from one revision of
/// one model, round after round: one wins each round, history stays dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_commits_across_two_stores_have_one_winner() {
    let schema = schema_or_skip!();
    let a = Arc::new(schema.store(6).await);
    let b = Arc::new(schema.store(6).await);
    for v in 1..=3 {
        a.register_model_version(model_version("raced", v), t0())
            .await
            .unwrap();
    }
    for round in 0..6u64 {
        let read = a.model_slots("raced").await.unwrap();
        assert_eq!(read.revision, round);
        let barrier = Arc::new(Barrier::new(8));
        let mut handles = Vec::new();
        for i in 0..8u32 {
            let s: Arc<dyn RegistryStore> = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (barrier, mut slots) = (barrier.clone(), read.clone());
            handles.push(tokio::spawn(async move {
                let change = Change::SetAlias {
                    alias: format!("round{round}-racer{i}"),
                    version: 1 + i % 3,
                };
                let history = apply(&mut slots, change)
                    .unwrap()
                    .into_iter()
                    .map(|effect| HistoryEntry {
                        seq: 0,
                        model: "raced".into(),
                        at: t0(),
                        change: effect,
                        requested_by: None,
                        approved_by: None,
                        promotion_id: None,
                        deployment_id: None,
                        reason: None,
                    })
                    .collect();
                barrier.wait().await;
                let write = RegistryWrite {
                    slots: slots.clone(),
                    history,
                    promotion: None,
                };
                (s.commit_registry(write).await.unwrap(), slots)
            }));
        }
        let mut winners = Vec::new();
        for h in handles {
            let (won, slots) = h.await.unwrap();
            if won {
                winners.push(slots);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one commit wins");
        let stored = b.model_slots("raced").await.unwrap();
        assert_eq!(stored.revision, round + 1);
        assert_eq!(stored.aliases, winners[0].aliases);
    }
    let seqs: Vec<u64> = a
        .model_history("raced", 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|h| h.seq)
        .collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<u64>>());
}

#[tokio::test]
async fn postgres_refuses_to_change_or_delete_model_history() {
    let schema = schema_or_skip!();
    let store = schema.store(2).await;
    store
        .register_model_version(model_version("m", 1), t0())
        .await
        .unwrap();
    let mut slots = store.model_slots("m").await.unwrap();
    slots.stages.insert(1, Stage::Staging);
    let entry = HistoryEntry {
        seq: 0,
        model: "m".into(),
        at: t0(),
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
    let mut admin = schema.admin().await;
    for sql in [
        "UPDATE model_history SET at = 0",
        "DELETE FROM model_history",
        "TRUNCATE model_history",
    ] {
        let sql = format!("SET search_path TO {}; {sql}", schema.name());
        let err = admin.execute(sql.as_str()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // And the database, not only the platform, keeps one production version.
    let sql = format!(
        "SET search_path TO {}; INSERT INTO model_versions (name, version, created_at, body, stage) \
         VALUES ('m', 2, 0, '{{}}', 'production'), ('m', 3, 0, '{{}}', 'production')",
        schema.name()
    );
    let err = admin.execute(sql.as_str()).await.unwrap_err();
    assert!(
        err.to_string().contains("model_versions_one_production"),
        "{err}"
    );
    assert_eq!(store.model_history("m", 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn only_the_api_and_scheduler_roles_write_the_registry_records() {
    let schema = schema_or_skip!();
    let _migrated = schema.store(1).await;
    apply_role_grants(&schema).await;

    let registry_writes = [
        "INSERT INTO promotions (id, model, state, requested_at, body) \
         VALUES (gen_random_uuid(), 'm', 'pending', 0, '{}')",
        "UPDATE promotions SET state = 'approved' WHERE false",
        "INSERT INTO deployments (id, model, target, state, created_at, revision, body) \
         VALUES (gen_random_uuid(), 'm', 'platform', 'pending', 0, 0, '{}')",
        "UPDATE deployments SET state = 'live' WHERE false",
        "INSERT INTO model_slots (name, revision, aliases) VALUES ('m', 1, '{}') \
         ON CONFLICT (name) DO NOTHING",
        "UPDATE model_slots SET revision = revision WHERE false",
        "INSERT INTO model_tags (name, version, body) VALUES ('m', -1, '{}') \
         ON CONFLICT (name, version) DO UPDATE SET body = EXCLUDED.body",
        "INSERT INTO model_history (model, seq, at, body) VALUES ('m', 1, 0, '{}') \
         ON CONFLICT DO NOTHING",
    ];
    let mut worker = connect_as(&schema, "tracseq_worker").await;
    let worker_denied = registry_writes.iter().copied().chain([
        "SELECT count(*) FROM promotions",
        "SELECT count(*) FROM deployments",
        "SELECT count(*) FROM model_slots",
        "SELECT count(*) FROM model_history",
        "SELECT count(*) FROM model_tags",
        // A stage the worker could write would skip the approval.
        "UPDATE model_versions SET stage = 'production' WHERE false",
        "INSERT INTO model_versions (name, version, created_at, body, stage) \
         VALUES ('w', 1, 0, '{}', 'production')",
    ]);
    for sql in worker_denied {
        let err = worker.execute(sql).await.expect_err(sql);
        assert!(is_permission_denied(&err), "{sql}: {err}");
    }
    // It still registers what it trains (at stage none) and reads versions.
    worker
        .execute(
            "INSERT INTO model_versions (name, version, job_id, created_at, body) \
             VALUES ('w', 1, NULL, 0, '{}') ON CONFLICT DO NOTHING",
        )
        .await
        .expect("the worker registers a model version");
    let stage: String = sqlx::query_scalar("SELECT stage FROM model_versions WHERE name = 'w'")
        .fetch_one(&mut worker)
        .await
        .unwrap();
    assert_eq!(stage, "none");

    for role in ["tracseq_api", "tracseq_scheduler"] {
        let mut conn = connect_as(&schema, role).await;
        for sql in registry_writes {
            conn.execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{role}: {sql}: {e}"));
        }
        conn.execute("UPDATE model_versions SET stage = stage WHERE false")
            .await
            .unwrap_or_else(|e| panic!("{role} moves stages: {e}"));
        for sql in [
            "UPDATE model_history SET at = 0 WHERE false",
            "DELETE FROM model_history WHERE false",
            "DELETE FROM deployments WHERE false",
            "DELETE FROM promotions WHERE false",
        ] {
            let err = conn.execute(sql).await.expect_err(sql);
            assert!(is_permission_denied(&err), "{role}: {sql}: {err}");
        }
    }
}
