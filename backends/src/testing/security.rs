//! The `SecurityStore` conformance suite: tokens and the audit log.

use super::t0;
use chrono::Duration;
use std::sync::Arc;
use tracseq_core::ports::SecurityStore;
use tracseq_core::security::audit::{verify, AuditFilter, ChainHead, NewAuditEntry, Outcome};
use tracseq_core::security::token::{hash_secret, issue, TokenRequest};
use tracseq_core::security::{Actor, Role};
use tracseq_core::{Error, TokenId};

/// Runs every check against a fresh, empty store.
pub async fn security_store_suite(store: Arc<dyn SecurityStore>) {
    tokens_are_found_by_hash_and_names_are_unique_while_active(store.as_ref()).await;
    revoking_is_idempotent_and_unknown_tokens_are_not_found(store.as_ref()).await;
    appended_entries_form_a_chain_that_reads_back_unchanged(store.as_ref()).await;
    concurrent_appends_keep_the_chain_dense(store.clone()).await;
    audit_queries_filter_and_page_newest_first(store.as_ref()).await;
}

fn request(name: &str, role: Role) -> TokenRequest {
    TokenRequest {
        name: name.into(),
        role,
        expires_in: Some(Duration::days(30)),
        created_by: "cli".into(),
    }
}

pub fn audit_entry(action: &str, actor: Option<Actor>, targets: &[&str], n: i64) -> NewAuditEntry {
    NewAuditEntry {
        // Sub-millisecond times, which the SQL stores must keep exactly
        // (the hash covers them).
        at: t0() + Duration::milliseconds(n) + Duration::nanoseconds(123_456),
        actor,
        action: action.into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        outcome: Outcome::Ok,
        status: 201,
        request_id: format!("req-{n}"),
        client: Some("127.0.0.1:40000".into()),
        detail: None,
    }
}

async fn tokens_are_found_by_hash_and_names_are_unique_while_active(s: &dyn SecurityStore) {
    let a = issue(request("lims", Role::Predictor), t0()).unwrap();
    s.insert_token(&a.record).await.unwrap();
    let found = s
        .token_by_hash(&hash_secret(a.secret.expose()))
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&a.record));
    assert_eq!(
        s.token_by_hash(&hash_secret("tsq_other")).await.unwrap(),
        None
    );

    let again = issue(request("lims", Role::Admin), t0()).unwrap();
    let err = s.insert_token(&again.record).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("lims")),
        "{err:?}"
    );
    let b = issue(request("ops", Role::Admin), t0() + Duration::seconds(1)).unwrap();
    s.insert_token(&b.record).await.unwrap();
    let names: Vec<String> = s
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["lims", "ops"]);

    // Once revoked, the name is free again; the old record stays.
    s.revoke_token(a.record.id, t0()).await.unwrap();
    s.insert_token(&again.record).await.unwrap();
    assert_eq!(s.list_tokens().await.unwrap().len(), 3);
    s.revoke_token(again.record.id, t0()).await.unwrap();
    s.revoke_token(b.record.id, t0()).await.unwrap();
}

async fn revoking_is_idempotent_and_unknown_tokens_are_not_found(s: &dyn SecurityStore) {
    let t = issue(request("temp", Role::Viewer), t0()).unwrap();
    s.insert_token(&t.record).await.unwrap();
    let first = s.revoke_token(t.record.id, t0()).await.unwrap();
    assert_eq!(first.revoked_at, Some(t0()));
    let second = s
        .revoke_token(t.record.id, t0() + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(second.revoked_at, Some(t0()), "the first revocation stands");
    let stored = s.token_by_hash(&t.record.hash).await.unwrap().unwrap();
    assert_eq!(stored.revoked_at, Some(t0()));
    assert!(matches!(
        s.revoke_token(TokenId::new(), t0()).await,
        Err(Error::NotFound(_))
    ));
}

async fn appended_entries_form_a_chain_that_reads_back_unchanged(s: &dyn SecurityStore) {
    let mut appended = Vec::new();
    for n in 0..3 {
        appended.push(
            s.append_audit(audit_entry("datasets.create", None, &["d1"], n))
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        appended.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let chain = s.audit_chain(0, 100).await.unwrap();
    assert_eq!(chain, appended, "entries read back exactly as sealed");
    verify(&mut ChainHead::default(), &chain).unwrap();
    assert_eq!(s.audit_chain(2, 100).await.unwrap(), appended[2..]);
    assert_eq!(s.audit_chain(0, 2).await.unwrap(), appended[..2]);
}

async fn concurrent_appends_keep_the_chain_dense(s: Arc<dyn SecurityStore>) {
    let before = s.audit_chain(0, 1000).await.unwrap().len();
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let s = s.clone();
            tokio::spawn(async move {
                s.append_audit(audit_entry("experiments.ask", None, &["e"], 100 + n))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let chain = s.audit_chain(0, 1000).await.unwrap();
    assert_eq!(chain.len(), before + 16);
    verify(&mut ChainHead::default(), &chain).unwrap();
}

async fn audit_queries_filter_and_page_newest_first(s: &dyn SecurityStore) {
    let alice = Actor {
        id: TokenId::new(),
        name: "alice".into(),
    };
    let bob = Actor {
        id: TokenId::new(),
        name: "bob".into(),
    };
    let base = 10_000;
    let mut mine = Vec::new();
    for (n, (actor, action, targets)) in [
        (&alice, "tokens.create", vec!["t_1"]),
        (&bob, "experiments.create", vec!["exp-a", "ds-a"]),
        (&alice, "experiments.cancel", vec!["exp-a"]),
        (&bob, "datasets.create", vec!["tx1"]),
    ]
    .into_iter()
    .enumerate()
    {
        mine.push(
            s.append_audit(audit_entry(
                action,
                Some(actor.clone()),
                &targets,
                base + n as i64,
            ))
            .await
            .unwrap(),
        );
    }
    let seqs = |entries: Vec<tracseq_core::security::audit::AuditEntry>| -> Vec<u64> {
        entries.into_iter().map(|e| e.seq).collect()
    };
    let q = |f: AuditFilter| async move {
        seqs(
            s.list_audit(&AuditFilter { limit: 100, ..f })
                .await
                .unwrap(),
        )
    };
    let s_of = |i: usize| mine[i].seq;

    assert_eq!(
        q(AuditFilter {
            actor: Some("alice".into()),
            ..Default::default()
        })
        .await,
        [s_of(2), s_of(0)]
    );
    assert_eq!(
        q(AuditFilter {
            actor: Some(bob.id.to_string()),
            ..Default::default()
        })
        .await,
        [s_of(3), s_of(1)]
    );
    assert_eq!(
        q(AuditFilter {
            target: Some("exp-a".into()),
            ..Default::default()
        })
        .await,
        [s_of(2), s_of(1)]
    );
    // `_` and `%` are literal in a target, not LIKE wildcards.
    assert_eq!(
        q(AuditFilter {
            target: Some("t_1".into()),
            ..Default::default()
        })
        .await,
        [s_of(0)]
    );
    assert_eq!(
        q(AuditFilter {
            target: Some("t%".into()),
            ..Default::default()
        })
        .await,
        Vec::<u64>::new()
    );
    assert_eq!(
        q(AuditFilter {
            action: Some("datasets.create".into()),
            actor: Some("bob".into()),
            ..Default::default()
        })
        .await,
        [s_of(3)]
    );
    assert_eq!(
        q(AuditFilter {
            since: Some(mine[2].entry.at),
            ..Default::default()
        })
        .await,
        [s_of(3), s_of(2)]
    );
    // Paging: newest first, then below the last seen.
    let page1 = s
        .list_audit(&AuditFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(seqs(page1.clone()), [s_of(3), s_of(2)]);
    let page2 = q(AuditFilter {
        before_seq: Some(page1[1].seq),
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(page2[..2], [s_of(1), s_of(0)]);
}
