//! The promotion half of the `RegistryStore` suite: a request stored with
//! the registry change it carries, decided only from the state it was read
//! in, and the listings. Requests are made and decided by
//! [`tracseq_core::lifecycle::promotion`], as the api makes and decides them.

use super::registry::{actor, assert_not_found, at, change, history, register, set_alias, Why};
use tracseq_core::ids::PromotionId;
use tracseq_core::lifecycle::promotion::{self, NewPromotion, Promotion, PromotionState};
use tracseq_core::ports::{PromotionFilter, PromotionWrite, RegistryStore, StateStore};
use tracseq_core::registry::{Change, Stage};
use tracseq_core::Error;

pub(super) async fn promotion_checks(s: &dyn StateStore, r: &dyn RegistryStore) {
    a_promotion_is_inserted_then_decided_only_from_its_expected_state(s, r).await;
    promotions_list_newest_first_filtered_and_limited(s, r).await;
}

pub(super) fn new_promotion(model: &str, version: u32, stage: Stage) -> NewPromotion {
    NewPromotion {
        model: model.into(),
        version,
        stage,
        archive_previous: true,
        gates: vec![],
        reason: "best cross-validated rmse".into(),
    }
}

/// The registry change an approval's effects carry.
fn applied(effects: Vec<promotion::Effect>) -> Change {
    effects
        .into_iter()
        .find_map(|e| match e {
            promotion::Effect::Apply(c) => Some(c),
            _ => None,
        })
        .expect("an approval applies a change")
}

async fn a_promotion_is_inserted_then_decided_only_from_its_expected_state(
    s: &dyn StateStore,
    r: &dyn RegistryStore,
) {
    let name = "promoted";
    register(s, name, &[1, 2]).await;
    let (scientist, approver) = (actor("scientist"), actor("approver"));

    // Staging needs no approval: approved and applied in one write.
    let read = r.model_slots(name).await.unwrap();
    let (p1, effects) = promotion::request(
        new_promotion(name, 1, Stage::Staging),
        scientist.clone(),
        Stage::None,
        Ok(()),
        read.production(),
        at(1),
    )
    .unwrap();
    let why = Why {
        requested_by: Some(scientist.clone()),
        approved_by: Some(scientist.clone()),
        promotion_id: Some(p1.id),
        ..Why::default()
    };
    let mut write = change(&read, vec![applied(effects)], at(1), why);
    write.promotion = Some(PromotionWrite::Insert(p1.clone()));
    assert!(r.commit_registry(write).await.unwrap());
    assert_eq!(r.get_promotion(p1.id).await.unwrap(), p1);
    assert_eq!(p1.state, PromotionState::Approved);

    // Production waits for another identity: the request alone is a write.
    let read = r.model_slots(name).await.unwrap();
    let (p2, effects) = promotion::request(
        new_promotion(name, 2, Stage::Production),
        scientist.clone(),
        Stage::None,
        Ok(()),
        read.production(),
        at(2),
    )
    .unwrap();
    assert_eq!(effects, vec![promotion::Effect::AwaitApproval]);
    let mut write = change(&read, vec![], at(2), Why::default());
    write.promotion = Some(PromotionWrite::Insert(p2.clone()));
    assert!(r.commit_registry(write).await.unwrap());
    assert_eq!(
        r.get_promotion(p2.id).await.unwrap().state,
        PromotionState::Pending
    );

    // The same id again is a conflict, and nothing of that write lands.
    let read = r.model_slots(name).await.unwrap();
    let mut again = change(&read, vec![set_alias("dup", 1)], at(2), Why::default());
    again.promotion = Some(PromotionWrite::Insert(p2.clone()));
    assert!(matches!(
        r.commit_registry(again).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(r.model_slots(name).await.unwrap(), read);

    // The approver decides against what is stored now.
    let stored = r.get_promotion(p2.id).await.unwrap();
    let mut approved = stored.clone();
    let effects = promotion::on_event(
        &mut approved,
        promotion::Event::Approve {
            by: approver.clone(),
            reason: Some("checked the folds".into()),
            gates: Ok(()),
            production: read.production(),
        },
        at(3),
    )
    .unwrap();
    let why = Why {
        requested_by: Some(scientist.clone()),
        approved_by: Some(approver.clone()),
        promotion_id: Some(p2.id),
        ..Why::default()
    };
    let mut write = change(&read, vec![applied(effects)], at(3), why);
    write.promotion = Some(PromotionWrite::Update {
        promotion: approved.clone(),
        expected: PromotionState::Pending,
    });
    assert!(r.commit_registry(write).await.unwrap());
    assert_eq!(r.get_promotion(p2.id).await.unwrap(), approved);
    let decided = r.model_slots(name).await.unwrap();
    assert_eq!(decided.production(), Some(2));
    let last = history(r, name).await.pop().unwrap();
    assert_eq!(
        (last.promotion_id, last.approved_by.as_ref()),
        (Some(p2.id), Some(&approver))
    );

    // A racing rejection read it pending: refused at the current revision,
    // and nothing of it is written.
    let history_before = history(r, name).await;
    let mut rejected = stored;
    promotion::on_event(
        &mut rejected,
        promotion::Event::Reject {
            by: approver.clone(),
            reason: "folds disagree".into(),
        },
        at(4),
    )
    .unwrap();
    let mut write = change(
        &decided,
        vec![set_alias("rejected", 1)],
        at(4),
        Why::default(),
    );
    write.promotion = Some(PromotionWrite::Update {
        promotion: rejected,
        expected: PromotionState::Pending,
    });
    assert!(!r.commit_registry(write).await.unwrap());
    assert_eq!(r.model_slots(name).await.unwrap(), decided);
    assert_eq!(r.get_promotion(p2.id).await.unwrap(), approved);
    assert_eq!(history(r, name).await, history_before);

    // Deciding a request that does not exist is NotFound, writing nothing.
    let ghost = Promotion {
        id: PromotionId::new(),
        ..approved
    };
    let mut write = change(&decided, vec![], at(5), Why::default());
    write.promotion = Some(PromotionWrite::Update {
        promotion: ghost.clone(),
        expected: PromotionState::Pending,
    });
    assert_not_found(
        r.commit_registry(write).await.unwrap_err(),
        &ghost.id.to_string(),
    );
    assert_eq!(r.model_slots(name).await.unwrap(), decided);
}

async fn promotions_list_newest_first_filtered_and_limited(
    s: &dyn StateStore,
    r: &dyn RegistryStore,
) {
    let name = "listed";
    register(s, name, &[1, 2, 3]).await;
    let scientist = actor("scientist");
    let mut ids = Vec::new();
    // Requested at 1 s, 2 s, 3 s and 3 s again (the later id sorts first).
    for (version, seconds, stage) in [
        (1, 1, Stage::Staging),
        (2, 2, Stage::Production),
        (3, 3, Stage::Production),
        (3, 3, Stage::Staging),
    ] {
        let read = r.model_slots(name).await.unwrap();
        let (p, _) = promotion::request(
            new_promotion(name, version, stage),
            scientist.clone(),
            Stage::None,
            Ok(()),
            None,
            at(seconds),
        )
        .unwrap();
        let mut write = change(&read, vec![], at(seconds), Why::default());
        write.promotion = Some(PromotionWrite::Insert(p.clone()));
        assert!(r.commit_registry(write).await.unwrap());
        ids.push(p.id);
    }
    let list = |model: Option<&str>, state, limit| PromotionFilter {
        model: model.map(str::to_string),
        state,
        limit,
    };
    let listed = |ps: Vec<Promotion>| ps.into_iter().map(|p| p.id).collect::<Vec<_>>();
    // The two at 3 s: the greater id first.
    let (a, b) = (ids[2].max(ids[3]), ids[2].min(ids[3]));
    let newest_first = vec![a, b, ids[1], ids[0]];
    let all = r
        .list_promotions(&list(Some(name), None, None))
        .await
        .unwrap();
    assert_eq!(listed(all), newest_first);
    let two = r
        .list_promotions(&list(Some(name), None, Some(2)))
        .await
        .unwrap();
    assert_eq!(listed(two), &newest_first[..2]);
    let pending = r
        .list_promotions(&list(Some(name), Some(PromotionState::Pending), None))
        .await
        .unwrap();
    assert_eq!(listed(pending), vec![ids[2], ids[1]]);
    // Across models: only the state asked for, newest first.
    let approved = r
        .list_promotions(&list(None, Some(PromotionState::Approved), None))
        .await
        .unwrap();
    assert!(approved.iter().all(|p| p.state == PromotionState::Approved));
    assert!(approved.iter().any(|p| p.id == ids[0]));
    assert!(approved
        .windows(2)
        .all(|w| (w[0].requested_at, w[0].id) >= (w[1].requested_at, w[1].id)));
    let none = r
        .list_promotions(&list(Some("no-such-model"), None, None))
        .await
        .unwrap();
    assert!(none.is_empty());
}
