use super::*;
use std::sync::Arc;
use tracseq_backends::MemoryStateStore;
use tracseq_core::fixtures::model_version;
use tracseq_core::fixtures::t0;
use tracseq_core::ids::TokenId;
use tracseq_core::registry::{Effect, Gate, Goal, Stage};

fn actor(name: &str) -> Actor {
    Actor {
        id: TokenId::new(),
        name: name.into(),
    }
}

/// A memory store with versions 1..=aucs.len() of "sq", each with its AUC.
async fn store(aucs: &[f64]) -> Arc<MemoryStateStore> {
    let store = Arc::new(MemoryStateStore::new());
    for (i, auc) in aucs.iter().enumerate() {
        let version = i as u32 + 1;
        store
            .register_model_version(model_version("sq", version, *auc), t0())
            .await
            .unwrap();
    }
    store
}

fn ask(version: u32, stage: Stage, gates: Vec<Gate>) -> NewPromotion {
    NewPromotion {
        model: "sq".into(),
        version,
        stage,
        archive_previous: true,
        gates,
        reason: "best of the run".into(),
    }
}

/// Requests production for `version` and has another identity approve it.
pub(crate) async fn to_production(s: &dyn StateStore, r: &dyn RegistryStore, version: u32) {
    let ask = ask(version, Stage::Production, vec![]);
    let p = request_promotion(s, r, ask, &actor("sci"), t0())
        .await
        .unwrap();
    let approve = Decision::Approve { reason: None };
    decide(s, r, p.id, approve, &actor("appr"), t0())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_staging_request_is_applied_at_once_and_recorded_in_the_history() {
    let s = store(&[0.8]).await;
    let sci = actor("sci");
    let p = request_promotion(&*s, &*s, ask(1, Stage::Staging, vec![]), &sci, t0())
        .await
        .unwrap();
    assert_eq!(p.state, PromotionState::Approved);
    assert_eq!(
        s.model_slots("sq").await.unwrap().stage_of(1),
        Some(Stage::Staging)
    );
    let history = s.model_history("sq", 0, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0].change,
        Effect::StageChanged {
            version: 1,
            from: Stage::None,
            to: Stage::Staging
        }
    );
    assert_eq!(history[0].requested_by, Some(sci));
    assert_eq!(history[0].approved_by, None);
    assert_eq!(history[0].promotion_id, Some(p.id));
}

#[tokio::test]
async fn production_waits_for_a_second_identity_then_archives_the_old_version() {
    let s = store(&[0.8, 0.9]).await;
    to_production(&*s, &*s, 1).await;
    let sci = actor("sci");
    let p = request_promotion(&*s, &*s, ask(2, Stage::Production, vec![]), &sci, t0())
        .await
        .unwrap();
    assert_eq!(p.state, PromotionState::Pending);
    assert_eq!(s.model_slots("sq").await.unwrap().production(), Some(1));

    let err = decide(
        &*s,
        &*s,
        p.id,
        Decision::Approve { reason: None },
        &sci,
        t0(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");

    let approver = actor("approver");
    let done = decide(
        &*s,
        &*s,
        p.id,
        Decision::Approve {
            reason: Some("ok".into()),
        },
        &approver,
        t0(),
    )
    .await
    .unwrap();
    assert_eq!(done.state, PromotionState::Approved);
    assert_eq!(done.replaced, Some(1));
    let slots = s.model_slots("sq").await.unwrap();
    assert_eq!(slots.production(), Some(2));
    assert_eq!(slots.stage_of(1), Some(Stage::Archived));
    let history = s.model_history("sq", 0, 10).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.approved_by, Some(approver));
    assert_eq!(last.requested_by, Some(sci));
}

#[tokio::test]
async fn of_two_concurrent_production_requests_exactly_one_is_applied() {
    let s = store(&[0.8, 0.85, 0.9]).await;
    to_production(&*s, &*s, 1).await;
    let a = request_promotion(
        &*s,
        &*s,
        ask(2, Stage::Production, vec![]),
        &actor("a"),
        t0(),
    )
    .await
    .unwrap();
    let b = request_promotion(
        &*s,
        &*s,
        ask(3, Stage::Production, vec![]),
        &actor("b"),
        t0(),
    )
    .await
    .unwrap();
    let approver = actor("approver");
    let approve = |id| {
        decide(
            &*s,
            &*s,
            id,
            Decision::Approve { reason: None },
            &approver,
            t0(),
        )
    };
    let (ra, rb) = tokio::join!(approve(a.id), approve(b.id));
    let outcomes = [ra, rb];
    let won: Vec<_> = outcomes.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    let lost = outcomes.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(
        matches!(lost, Error::Conflict(m) if m.contains("request the promotion again")),
        "{lost}"
    );
    let slots = s.model_slots("sq").await.unwrap();
    assert_eq!(
        slots
            .stages
            .values()
            .filter(|st| **st == Stage::Production)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_gate_is_checked_against_the_production_version() {
    let s = store(&[0.9, 0.85]).await;
    to_production(&*s, &*s, 1).await;
    let better = vec![Gate::BetterThanProduction {
        metric: "auc".into(),
        goal: Goal::Higher,
    }];
    let err = request_promotion(
        &*s,
        &*s,
        ask(2, Stage::Production, better),
        &actor("sci"),
        t0(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("production version 1's 0.9")),
        "{err}"
    );
    let threshold = vec![Gate::Threshold {
        metric: "auc".into(),
        value: 0.8,
        goal: Goal::Higher,
    }];
    assert!(request_promotion(
        &*s,
        &*s,
        ask(2, Stage::Production, threshold),
        &actor("sci"),
        t0()
    )
    .await
    .is_ok());
}

#[tokio::test]
async fn a_rejection_needs_a_reason_and_changes_no_stage() {
    let s = store(&[0.8]).await;
    let p = request_promotion(
        &*s,
        &*s,
        ask(1, Stage::Production, vec![]),
        &actor("sci"),
        t0(),
    )
    .await
    .unwrap();
    let err = decide(
        &*s,
        &*s,
        p.id,
        Decision::Reject { reason: " ".into() },
        &actor("a"),
        t0(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)));
    let done = decide(
        &*s,
        &*s,
        p.id,
        Decision::Reject {
            reason: "folds disagree".into(),
        },
        &actor("a"),
        t0(),
    )
    .await
    .unwrap();
    assert_eq!(done.state, PromotionState::Rejected);
    assert_eq!(
        s.model_slots("sq").await.unwrap().stage_of(1),
        Some(Stage::None)
    );
    assert!(s.model_history("sq", 0, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_models_versions_and_requests_are_not_found() {
    let s = store(&[0.8]).await;
    let mut wrong = ask(1, Stage::Staging, vec![]);
    wrong.model = "nope".into();
    assert!(matches!(
        request_promotion(&*s, &*s, wrong, &actor("a"), t0()).await,
        Err(Error::NotFound(_))
    ));
    let err = request_promotion(&*s, &*s, ask(7, Stage::Staging, vec![]), &actor("a"), t0())
        .await
        .unwrap_err();
    assert_eq!(err, Error::NotFound("model 'sq' has no version 7".into()));
    assert!(matches!(
        decide(
            &*s,
            &*s,
            PromotionId::new(),
            Decision::Cancel { by_admin: true },
            &actor("a"),
            t0()
        )
        .await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn aliases_move_and_are_deleted_with_history() {
    let s = store(&[0.8, 0.9]).await;
    let by = actor("sci");
    set_alias(&*s, "sq", "champion", Some(1), &by, None, t0())
        .await
        .unwrap();
    let slots = set_alias(&*s, "sq", "champion", Some(2), &by, None, t0())
        .await
        .unwrap();
    assert_eq!(slots.aliases["champion"], 2);
    assert_eq!(s.model_slots("sq").await.unwrap().aliases["champion"], 2);
    let err = set_alias(&*s, "sq", "v3", Some(2), &by, None, t0())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)));
    set_alias(&*s, "sq", "champion", None, &by, None, t0())
        .await
        .unwrap();
    let err = set_alias(&*s, "sq", "champion", None, &by, None, t0())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)));
    assert_eq!(s.model_history("sq", 0, 10).await.unwrap().len(), 3);
}
