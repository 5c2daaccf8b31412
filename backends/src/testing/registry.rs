//! The `RegistryStore` conformance suite: stages, aliases, history and
//! tags here, promotions in [`super::promotions`] and deployments in
//! [`super::deployments`].
//!
//! The writes are computed the way the platform computes them, with
//! [`tracseq_core::registry::apply`] and the promotion state machine, so a
//! store is checked on the records it will really be given. Every check
//! works on its own model names, so the checks share one store.

use super::promotions::new_promotion;
use super::t0;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use tracseq_core::ids::{DeploymentId, PromotionId, TokenId};
use tracseq_core::lifecycle::promotion;
use tracseq_core::ports::{
    HistoryEntry, ModelTags, PromotionWrite, RegistryStore, RegistryWrite, StateStore,
};
use tracseq_core::registry::{apply, Change, ModelSlots, Stage};
use tracseq_core::security::Actor;
use tracseq_core::types::NewModelVersion;
use tracseq_core::Error;

/// Runs every check against one fresh store, seen through both ports:
/// `state` registers the model versions `registry` works on.
pub async fn registry_store_suite(state: Arc<dyn StateStore>, registry: Arc<dyn RegistryStore>) {
    let (s, r) = (state.as_ref(), registry.as_ref());
    the_slots_of_an_unknown_model_are_not_found(r).await;
    a_new_version_is_at_stage_none_and_its_model_at_revision_zero(s, r).await;
    a_commit_moves_stages_and_aliases_appends_history_and_bumps_the_revision(s, r).await;
    a_commit_from_a_stale_revision_writes_nothing(s, r).await;
    two_commits_from_one_revision_have_exactly_one_winner(s, registry.clone()).await;
    a_slot_naming_a_version_the_model_lacks_is_invalid_and_writes_nothing(s, r).await;
    a_version_registered_after_a_commit_is_in_the_slots_at_stage_none(s, r).await;
    history_pages_oldest_first_after_a_sequence_number(s, r).await;
    tags_are_replaced_per_model_and_per_version(s, r).await;
    a_version_registered_with_tags_has_them_and_a_refused_one_leaves_none(s, r).await;
    super::promotions::promotion_checks(s, r).await;
    super::deployments::deployment_checks(s, r).await;
}

pub(super) fn actor(name: &str) -> Actor {
    Actor {
        id: TokenId::new(),
        name: name.into(),
    }
}

pub(super) fn at(seconds: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(seconds)
}

/// Version `version` of model `name`, ready to register.
pub fn model_version(name: &str, version: u32) -> NewModelVersion {
    tracseq_core::fixtures::model_version(name, version, 0.8)
}

/// Registers `versions` of model `name`.
pub(super) async fn register(s: &dyn StateStore, name: &str, versions: &[u32]) {
    for &version in versions {
        s.register_model_version(model_version(name, version), t0())
            .await
            .unwrap();
    }
}

/// What is recorded alongside a change.
#[derive(Clone, Default)]
pub(super) struct Why {
    pub requested_by: Option<Actor>,
    pub approved_by: Option<Actor>,
    pub promotion_id: Option<PromotionId>,
    pub deployment_id: Option<DeploymentId>,
}

/// `changes` applied to `read`, as the write that stores them.
pub(super) fn change(
    read: &ModelSlots,
    changes: Vec<Change>,
    when: DateTime<Utc>,
    why: Why,
) -> RegistryWrite {
    let mut slots = read.clone();
    let mut history = Vec::new();
    for c in changes {
        for effect in apply(&mut slots, c).unwrap() {
            history.push(HistoryEntry {
                seq: 0,
                model: read.name.clone(),
                at: when,
                change: effect,
                requested_by: why.requested_by.clone(),
                approved_by: why.approved_by.clone(),
                promotion_id: why.promotion_id,
                deployment_id: why.deployment_id,
                reason: Some("conformance".into()),
            });
        }
    }
    RegistryWrite {
        slots,
        history,
        promotion: None,
    }
}

pub(super) fn set_stage(version: u32, stage: Stage) -> Change {
    Change::SetStage {
        version,
        stage,
        archive_previous: true,
        expect_production: None,
    }
}

pub(super) fn set_alias(alias: &str, version: u32) -> Change {
    Change::SetAlias {
        alias: alias.into(),
        version,
    }
}

/// The whole history of `name`.
pub(super) async fn history(r: &dyn RegistryStore, name: &str) -> Vec<HistoryEntry> {
    r.model_history(name, 0, 1000).await.unwrap()
}

/// `write`'s history as stored after `last_seq`.
fn numbered(write: &RegistryWrite, last_seq: u64) -> Vec<HistoryEntry> {
    write
        .history
        .iter()
        .zip(last_seq + 1..)
        .map(|(h, seq)| HistoryEntry { seq, ..h.clone() })
        .collect()
}

pub(super) fn assert_not_found(err: Error, name: &str) {
    assert!(
        matches!(&err, Error::NotFound(m) if m.contains(name)),
        "expected NotFound naming {name}: {err:?}"
    );
}

async fn the_slots_of_an_unknown_model_are_not_found(r: &dyn RegistryStore) {
    let name = "no-such-model";
    assert_not_found(r.model_slots(name).await.unwrap_err(), name);
    assert_not_found(r.tags(name).await.unwrap_err(), name);
    assert!(r.all_slots().await.unwrap().iter().all(|s| s.name != name));
    assert!(history(r, name).await.is_empty());
    // A write for it is refused and leaves no trace.
    let write = RegistryWrite {
        slots: ModelSlots {
            name: name.into(),
            ..ModelSlots::default()
        },
        history: vec![],
        promotion: None,
    };
    assert_not_found(r.commit_registry(write).await.unwrap_err(), name);
    assert_not_found(r.model_slots(name).await.unwrap_err(), name);
    let promotion = PromotionId::new();
    assert_not_found(
        r.get_promotion(promotion).await.unwrap_err(),
        &promotion.to_string(),
    );
}

async fn a_new_version_is_at_stage_none_and_its_model_at_revision_zero(
    s: &dyn StateStore,
    r: &dyn RegistryStore,
) {
    register(s, "fresh", &[1, 2]).await;
    let slots = r.model_slots("fresh").await.unwrap();
    assert_eq!(
        slots,
        ModelSlots {
            name: "fresh".into(),
            revision: 0,
            stages: BTreeMap::from([(1, Stage::None), (2, Stage::None)]),
            aliases: BTreeMap::new(),
        }
    );
    let all = r.all_slots().await.unwrap();
    assert_eq!(all.iter().find(|s| s.name == "fresh"), Some(&slots));
    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "by name: {names:?}");
    assert_eq!(r.tags("fresh").await.unwrap(), ModelTags::default());
    // The version record reads back as registered.
    assert_eq!(
        s.get_model_version("fresh", Some(2)).await.unwrap().version,
        2
    );
}

async fn a_commit_moves_stages_and_aliases_appends_history_and_bumps_the_revision(
    s: &dyn StateStore,
    r: &dyn RegistryStore,
) {
    let name = "committed";
    register(s, name, &[1, 2]).await;
    let mut expected_history = Vec::new();
    let steps = [
        vec![set_stage(1, Stage::Staging), set_alias("champion", 1)],
        vec![set_stage(2, Stage::Production)],
        // 2 is archived as 1 replaces it: two history rows from one change.
        vec![set_stage(1, Stage::Production)],
        vec![Change::DeleteAlias {
            alias: "champion".into(),
        }],
    ];
    for (i, changes) in steps.into_iter().enumerate() {
        let read = r.model_slots(name).await.unwrap();
        assert_eq!(read.revision, i as u64);
        let write = change(&read, changes, at(i as i64), Why::default());
        expected_history.extend(numbered(&write, expected_history.len() as u64));
        assert!(r.commit_registry(write.clone()).await.unwrap());
        let stored = r.model_slots(name).await.unwrap();
        assert_eq!(
            stored,
            ModelSlots {
                revision: read.revision + 1,
                ..write.slots
            }
        );
    }
    let stored = r.model_slots(name).await.unwrap();
    assert_eq!(stored.stages[&1], Stage::Production);
    assert_eq!(stored.stages[&2], Stage::Archived);
    assert!(stored.aliases.is_empty(), "the deleted alias is gone");
    let h = history(r, name).await;
    assert_eq!(h, expected_history);
    assert_eq!(
        h.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<u64>>()
    );
}

async fn a_commit_from_a_stale_revision_writes_nothing(s: &dyn StateStore, r: &dyn RegistryStore) {
    let name = "stale";
    register(s, name, &[1, 2]).await;
    let first = r.model_slots(name).await.unwrap();
    let scientist = actor("scientist");
    // Two losers: one from revision 0 (before the model's first change),
    // one from revision 1 (after it), each with a new promotion request.
    for (loser_revision, winner) in [
        (0, set_stage(1, Stage::Staging)),
        (1, set_alias("champion", 1)),
    ] {
        let read = r.model_slots(name).await.unwrap();
        let stale = if loser_revision == 0 {
            first.clone()
        } else {
            read.clone()
        };
        assert!(r
            .commit_registry(change(&read, vec![winner], at(1), Why::default()))
            .await
            .unwrap());
        let after = r.model_slots(name).await.unwrap();
        let history_before = history(r, name).await;

        let (p, _) = promotion::request(
            new_promotion(name, 2, Stage::Staging),
            scientist.clone(),
            Stage::None,
            Ok(()),
            None,
            at(2),
        )
        .unwrap();
        let mut write = change(
            &stale,
            vec![set_stage(2, Stage::Staging), set_alias("challenger", 2)],
            at(2),
            Why::default(),
        );
        write.promotion = Some(PromotionWrite::Insert(p.clone()));
        assert!(
            !r.commit_registry(write).await.unwrap(),
            "revision {loser_revision} is stale"
        );
        assert_eq!(r.model_slots(name).await.unwrap(), after);
        assert_eq!(history(r, name).await, history_before);
        assert!(matches!(
            r.get_promotion(p.id).await,
            Err(Error::NotFound(_))
        ));
    }
}

async fn two_commits_from_one_revision_have_exactly_one_winner(
    s: &dyn StateStore,
    r: Arc<dyn RegistryStore>,
) {
    let name = "raced";
    register(s, name, &[1, 2, 3]).await;
    // Round 0 races the model's first change, the others later ones.
    for round in 0..4u64 {
        let read = r.model_slots(name).await.unwrap();
        assert_eq!(read.revision, round);
        let a = change(
            &read,
            vec![set_alias(&format!("first{round}"), 1)],
            at(1),
            Why::default(),
        );
        let b = change(
            &read,
            vec![set_stage(2 + (round as u32 % 2), Stage::Production)],
            at(1),
            Why::default(),
        );
        let (ra, rb) = (r.clone(), r.clone());
        let (wa, wb) = (a.clone(), b.clone());
        let (x, y) = tokio::join!(ra.commit_registry(wa), rb.commit_registry(wb));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(
            x ^ y,
            "exactly one of two commits from revision {round} wins"
        );
        let winner = if x { a } else { b };
        assert_eq!(
            r.model_slots(name).await.unwrap(),
            ModelSlots {
                revision: round + 1,
                ..winner.slots
            }
        );
    }
    let h = history(r.as_ref(), name).await;
    assert_eq!(
        h.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=h.len() as u64).collect::<Vec<_>>(),
        "only winners wrote history, numbered densely"
    );
}

async fn a_slot_naming_a_version_the_model_lacks_is_invalid_and_writes_nothing(
    s: &dyn StateStore,
    r: &dyn RegistryStore,
) {
    let name = "invalid";
    register(s, name, &[1, 2]).await;
    let read = r.model_slots(name).await.unwrap();
    assert!(r
        .commit_registry(change(
            &read,
            vec![set_stage(1, Stage::Staging)],
            at(1),
            Why::default()
        ))
        .await
        .unwrap());
    let read = r.model_slots(name).await.unwrap();
    let history_before = history(r, name).await;
    let (p, _) = promotion::request(
        new_promotion(name, 2, Stage::Staging),
        actor("scientist"),
        Stage::None,
        Ok(()),
        None,
        at(2),
    )
    .unwrap();
    let valid = change(
        &read,
        vec![set_stage(2, Stage::Staging)],
        at(2),
        Why::default(),
    );
    let mut unknown_stage = valid.clone();
    unknown_stage.slots.stages.insert(9, Stage::Staging);
    let mut unknown_alias = valid.clone();
    unknown_alias.slots.aliases.insert("champion".into(), 9);
    let mut two_in_production = valid.clone();
    two_in_production.slots.stages =
        BTreeMap::from([(1, Stage::Production), (2, Stage::Production)]);
    for (what, mut write) in [
        ("a stage of version 9", unknown_stage),
        ("an alias on version 9", unknown_alias),
        ("two production versions", two_in_production),
    ] {
        write.promotion = Some(PromotionWrite::Insert(p.clone()));
        match r.commit_registry(write).await {
            Err(Error::Invalid(m)) => assert!(m.contains(name), "{what}: {m}"),
            other => panic!("{what}: expected Invalid, got {other:?}"),
        }
        assert_eq!(r.model_slots(name).await.unwrap(), read, "{what}");
        assert_eq!(history(r, name).await, history_before, "{what}");
        assert!(
            matches!(r.get_promotion(p.id).await, Err(Error::NotFound(_))),
            "{what}"
        );
    }
    // The same write without the bad slot goes through.
    assert!(r.commit_registry(valid).await.unwrap());
}

async fn a_version_registered_after_a_commit_is_in_the_slots_at_stage_none(
    s: &dyn StateStore,
    r: &dyn RegistryStore,
) {
    let name = "late";
    register(s, name, &[1]).await;
    let read = r.model_slots(name).await.unwrap();
    let write = change(
        &read,
        vec![set_stage(1, Stage::Production), set_alias("champion", 1)],
        at(1),
        Why::default(),
    );
    assert!(r.commit_registry(write).await.unwrap());
    register(s, name, &[2]).await;
    let read = r.model_slots(name).await.unwrap();
    assert_eq!(read.revision, 1);
    assert_eq!(
        read.stages,
        BTreeMap::from([(1, Stage::Production), (2, Stage::None)])
    );
    assert_eq!(read.aliases, BTreeMap::from([("champion".to_string(), 1)]));
    // And a change computed from those slots moves it.
    let write = change(
        &read,
        vec![set_stage(2, Stage::Production)],
        at(2),
        Why::default(),
    );
    assert!(r.commit_registry(write).await.unwrap());
    let stored = r.model_slots(name).await.unwrap();
    assert_eq!(
        stored.stages,
        BTreeMap::from([(1, Stage::Archived), (2, Stage::Production)])
    );
}

async fn history_pages_oldest_first_after_a_sequence_number(
    s: &dyn StateStore,
    r: &dyn RegistryStore,
) {
    let name = "paged";
    register(s, name, &[1, 2, 3]).await;
    for (i, changes) in [
        vec![set_stage(1, Stage::Staging), set_stage(2, Stage::Staging)],
        vec![set_alias("champion", 1), set_alias("challenger", 2)],
        vec![set_stage(3, Stage::Archived)],
    ]
    .into_iter()
    .enumerate()
    {
        let read = r.model_slots(name).await.unwrap();
        let write = change(&read, changes, at(i as i64), Why::default());
        assert!(r.commit_registry(write).await.unwrap());
    }
    let seqs = |h: Vec<HistoryEntry>| h.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(r.model_history(name, 0, 2).await.unwrap()), vec![1, 2]);
    assert_eq!(seqs(r.model_history(name, 2, 2).await.unwrap()), vec![3, 4]);
    assert_eq!(seqs(r.model_history(name, 4, 10).await.unwrap()), vec![5]);
    assert!(r.model_history(name, 5, 10).await.unwrap().is_empty());
    assert!(r.model_history(name, 0, 0).await.unwrap().is_empty());
    assert!(r
        .model_history(name, u64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    let all = history(r, name).await;
    assert!(all.iter().all(|e| e.model == name));
    assert_eq!(all[4].at, at(2));
}

async fn tags_are_replaced_per_model_and_per_version(s: &dyn StateStore, r: &dyn RegistryStore) {
    let name = "tagged";
    register(s, name, &[1, 2]).await;
    let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    r.set_tags(name, None, tags(&[("team", "qc"), ("lab", "north")]))
        .await
        .unwrap();
    r.set_tags(name, Some(1), tags(&[("dataset", "november")]))
        .await
        .unwrap();
    assert_eq!(
        r.tags(name).await.unwrap(),
        ModelTags {
            model: tags(&[("team", "qc"), ("lab", "north")]),
            versions: BTreeMap::from([(1, tags(&[("dataset", "november")]))]),
        }
    );
    // Setting replaces the whole set; an empty set leaves no tags.
    r.set_tags(name, None, tags(&[("owner", "sequencing")]))
        .await
        .unwrap();
    r.set_tags(name, Some(1), BTreeMap::new()).await.unwrap();
    r.set_tags(name, Some(2), tags(&[("note", "café ✓")]))
        .await
        .unwrap();
    assert_eq!(
        r.tags(name).await.unwrap(),
        ModelTags {
            model: tags(&[("owner", "sequencing")]),
            versions: BTreeMap::from([(2, tags(&[("note", "café ✓")]))]),
        }
    );
    assert_not_found(
        r.set_tags(name, Some(9), tags(&[("a", "b")]))
            .await
            .unwrap_err(),
        name,
    );
    assert_not_found(
        r.set_tags("no-such-model", None, tags(&[("a", "b")]))
            .await
            .unwrap_err(),
        "no-such-model",
    );
    // Tags are not a registry change: the revision stays.
    assert_eq!(r.model_slots(name).await.unwrap().revision, 0);
}

/// A version's first tags travel with its registration: stored with it,
/// and not at all when the registration is refused (its number is taken).
async fn a_version_registered_with_tags_has_them_and_a_refused_one_leaves_none(
    s: &dyn StateStore,
    r: &dyn RegistryStore,
) {
    let name = "registered-with-tags";
    let mut new = model_version(name, 1);
    new.tags = BTreeMap::from([("origin".to_string(), "core facility".to_string())]);
    new.description = Some("fitted outside".into());
    new.lineage.feature_set_version = Some("lab@2".into());
    let v = s.register_model_version(new.clone(), t0()).await.unwrap();
    assert_eq!(v.description.as_deref(), Some("fitted outside"));
    assert_eq!(
        s.get_model_version(name, Some(1)).await.unwrap().lineage,
        v.lineage
    );
    assert_eq!(
        r.tags(name).await.unwrap().versions[&1]["origin"],
        "core facility"
    );
    let mut taken = new;
    taken.tags = BTreeMap::from([("origin".to_string(), "elsewhere".to_string())]);
    assert!(s.register_model_version(taken, t0()).await.is_err());
    assert_eq!(
        r.tags(name).await.unwrap().versions[&1]["origin"],
        "core facility"
    );
}
