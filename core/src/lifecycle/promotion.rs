//! The promotion state machine: a request to move a model version to a
//! stage, and its approval, rejection or withdrawal, as pure functions.
//!
//! ```text
//! request ──stage needs no approval──> approved (applied at once)
//!    └──production──> pending ──Approve (another identity, gates hold)──> approved
//!                        ├──Reject (with a reason)──> rejected
//!                        └──Cancel (the requester or an admin)──> cancelled
//! ```
//!
//! Approval is where the "two identities" rule lives: the token that asked
//! can never be the one that approves. Gates are checked when the request
//! is made and again when it is approved (the production version they
//! compare against may have changed in between); a failing gate refuses
//! the approval and leaves the request pending, so an approver can reject it
//! with a reason or try again later. A request into production remembers
//! the production version it was made against; if another promotion lands
//! first, approving it is refused as stale (the approver would be replacing
//! a version nobody compared it with), which is how of two concurrent
//! promotions exactly one wins. An approval returns the registry
//! [`Change`] to store with it, pinned to the production version the gates
//! were checked against: if another promotion lands first, the store's
//! compare-and-set refuses this one instead of applying a decision nobody
//! made (see [`crate::registry`]).

use crate::ids::PromotionId;
use crate::registry::{Change, Gate, Stage};
use crate::security::Actor;
use crate::types::str_enum;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionState {
    /// Waiting for an approver.
    Pending,
    /// Approved and applied to the registry (for a stage that needs no
    /// approval: applied when requested).
    Approved,
    Rejected,
    /// Withdrawn before anyone decided.
    Cancelled,
}
str_enum!(PromotionState {
    Pending => "pending", Approved => "approved", Rejected => "rejected", Cancelled => "cancelled",
});

/// A request to move one version of a model to a stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub id: PromotionId,
    pub model: String,
    pub version: u32,
    pub stage: Stage,
    /// Into production: whether the version replaced goes to archived
    /// (true) or back to staging.
    pub archive_previous: bool,
    pub gates: Vec<Gate>,
    /// Why the requester asks (required: it is what an approver reads).
    pub reason: String,
    pub requested_by: Actor,
    pub requested_at: DateTime<Utc>,
    pub state: PromotionState,
    pub decided_by: Option<Actor>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// The version in production when the request was made: what the
    /// requester compared against and what the approver is asked to
    /// replace. If production moves before the approval, the request is
    /// stale and must be made again.
    #[serde(default)]
    pub against: Option<u32>,
    /// The production version this one replaced when it was applied.
    pub replaced: Option<u32>,
}

/// What a requester asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct NewPromotion {
    pub model: String,
    pub version: u32,
    pub stage: Stage,
    pub archive_previous: bool,
    pub gates: Vec<Gate>,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An approver approves. `gates` is the outcome of
    /// [`crate::registry::check_gates`] now, and `production` the version
    /// in production it was checked against.
    Approve {
        by: Actor,
        reason: Option<String>,
        gates: Result<(), String>,
        production: Option<u32>,
    },
    Reject {
        by: Actor,
        reason: String,
    },
    /// Withdrawn; `by_admin` lets an admin clear a request that is not theirs.
    Cancel {
        by: Actor,
        by_admin: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Store this registry change in the same write as the promotion.
    Apply(Change),
    /// The request waits for an approver (tell them).
    AwaitApproval,
    /// The request reached a final state.
    Finished(PromotionState),
}

/// Why a request or an event does not apply; nothing changes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("promotion request is {state}, cannot {action}")]
    WrongState {
        state: PromotionState,
        action: &'static str,
    },
    #[error("a promotion cannot be approved by the token that requested it ({0}); another identity with the approver role must approve")]
    SelfApproval(String),
    #[error("only the requester ({0}) or an admin can cancel this promotion request")]
    NotRequester(String),
    #[error("{0}")]
    GateFailed(String),
    #[error("{field} must not be empty: say why")]
    NoReason { field: &'static str },
    #[error("version {version} is already in {stage}")]
    AlreadyThere { version: u32, stage: Stage },
    #[error("the production version changed from {} to {} since this request was made; request the promotion again", show(*against), show(*now))]
    Stale {
        against: Option<u32>,
        now: Option<u32>,
    },
}

fn show(v: Option<u32>) -> String {
    v.map_or_else(|| "none".to_string(), |v| format!("version {v}"))
}

/// Longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 2000;

/// Creates the request `new` by `by` at `now`. `current` is the version's
/// stage now, `gates` the outcome of checking its gates now and
/// `production` the version in production they were checked against. A
/// stage that needs no approval is approved and applied at once (the
/// requester decided it); production waits for an approver.
pub fn request(
    new: NewPromotion,
    by: Actor,
    current: Stage,
    gates: Result<(), String>,
    production: Option<u32>,
    now: DateTime<Utc>,
) -> Result<(Promotion, Vec<Effect>), Rejection> {
    if new.reason.trim().is_empty() {
        return Err(Rejection::NoReason { field: "reason" });
    }
    if current == new.stage {
        return Err(Rejection::AlreadyThere {
            version: new.version,
            stage: new.stage,
        });
    }
    gates.map_err(Rejection::GateFailed)?;
    let mut promotion = Promotion {
        id: PromotionId::new(),
        model: new.model,
        version: new.version,
        stage: new.stage,
        archive_previous: new.archive_previous,
        gates: new.gates,
        reason: new.reason,
        requested_by: by.clone(),
        requested_at: now,
        state: PromotionState::Pending,
        decided_by: None,
        decision_reason: None,
        decided_at: None,
        against: production,
        replaced: None,
    };
    if promotion.stage.needs_approval() {
        return Ok((promotion, vec![Effect::AwaitApproval]));
    }
    let reason = format!("{} needs no approval", promotion.stage);
    let effects = approve(&mut promotion, by, Some(reason), production, now);
    Ok((promotion, effects))
}

/// Applies `event` to `p` at time `now`. On `Err` the request is unchanged.
pub fn on_event(
    p: &mut Promotion,
    event: Event,
    now: DateTime<Utc>,
) -> Result<Vec<Effect>, Rejection> {
    match event {
        Event::Approve {
            by,
            reason,
            gates,
            production,
        } => {
            require_pending(p, "be approved")?;
            if by.id == p.requested_by.id {
                return Err(Rejection::SelfApproval(p.requested_by.name.clone()));
            }
            if p.stage == Stage::Production && production != p.against {
                return Err(Rejection::Stale {
                    against: p.against,
                    now: production,
                });
            }
            gates.map_err(Rejection::GateFailed)?;
            Ok(approve(p, by, reason, production, now))
        }
        Event::Reject { by, reason } => {
            require_pending(p, "be rejected")?;
            if reason.trim().is_empty() {
                return Err(Rejection::NoReason { field: "reason" });
            }
            Ok(decide(p, PromotionState::Rejected, by, Some(reason), now))
        }
        Event::Cancel { by, by_admin } => {
            require_pending(p, "be cancelled")?;
            if by.id != p.requested_by.id && !by_admin {
                return Err(Rejection::NotRequester(p.requested_by.name.clone()));
            }
            Ok(decide(p, PromotionState::Cancelled, by, None, now))
        }
    }
}

fn approve(
    p: &mut Promotion,
    by: Actor,
    reason: Option<String>,
    production: Option<u32>,
    now: DateTime<Utc>,
) -> Vec<Effect> {
    // Into production the change is pinned to the production version it
    // was decided against; lower stages do not depend on it.
    let pinned = p.stage == Stage::Production;
    let change = Change::SetStage {
        version: p.version,
        stage: p.stage,
        archive_previous: p.archive_previous,
        expect_production: pinned.then_some(production),
    };
    if p.stage == Stage::Production {
        p.replaced = production.filter(|v| *v != p.version);
    }
    let mut effects = vec![Effect::Apply(change)];
    effects.extend(decide(p, PromotionState::Approved, by, reason, now));
    effects
}

fn decide(
    p: &mut Promotion,
    state: PromotionState,
    by: Actor,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Vec<Effect> {
    p.state = state;
    p.decided_by = Some(by);
    p.decision_reason = reason;
    p.decided_at = Some(now);
    vec![Effect::Finished(state)]
}

fn require_pending(p: &Promotion, action: &'static str) -> Result<(), Rejection> {
    if p.state == PromotionState::Pending {
        Ok(())
    } else {
        Err(Rejection::WrongState {
            state: p.state,
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TokenId;
    use crate::registry::{apply, ModelSlots};
    use chrono::TimeZone;
    use Stage::{Production, Staging};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 4, 9, 0, 0).unwrap()
    }

    fn actor(name: &str) -> Actor {
        Actor {
            id: TokenId::new(),
            name: name.into(),
        }
    }

    fn ask(version: u32, stage: Stage) -> NewPromotion {
        NewPromotion {
            model: "sample-quality".into(),
            version,
            stage,
            archive_previous: true,
            gates: vec![],
            reason: "best AUC of the November run".into(),
        }
    }

    fn pending(requester: &Actor) -> Promotion {
        let (p, effects) = request(
            ask(2, Production),
            requester.clone(),
            Staging,
            Ok(()),
            Some(1),
            t0(),
        )
        .unwrap();
        assert_eq!(effects, vec![Effect::AwaitApproval]);
        p
    }

    fn approval(by: &Actor, production: Option<u32>) -> Event {
        Event::Approve {
            by: by.clone(),
            reason: Some("checked the CV folds".into()),
            gates: Ok(()),
            production,
        }
    }

    #[test]
    fn a_promotion_to_production_waits_for_an_approver() {
        let scientist = actor("scientist");
        let p = pending(&scientist);
        assert_eq!(p.state, PromotionState::Pending);
        assert_eq!(p.requested_by, scientist);
        assert!(p.decided_by.is_none() && p.decided_at.is_none());
    }

    #[test]
    fn a_lower_stage_is_applied_when_requested_without_an_approver() {
        let scientist = actor("scientist");
        let (p, effects) = request(
            ask(2, Staging),
            scientist.clone(),
            Stage::None,
            Ok(()),
            Some(1),
            t0(),
        )
        .unwrap();
        assert_eq!(p.state, PromotionState::Approved);
        assert_eq!(p.decided_by, Some(scientist));
        assert_eq!(
            p.decision_reason.as_deref(),
            Some("staging needs no approval")
        );
        assert_eq!(p.replaced, None, "staging replaces nothing");
        assert_eq!(
            effects,
            vec![
                Effect::Apply(Change::SetStage {
                    version: 2,
                    stage: Staging,
                    archive_previous: true,
                    expect_production: None,
                }),
                Effect::Finished(PromotionState::Approved),
            ]
        );
    }

    #[test]
    fn another_identity_approves_and_the_registry_change_comes_with_it() {
        let (scientist, approver) = (actor("scientist"), actor("approver"));
        let mut p = pending(&scientist);
        let later = t0() + chrono::Duration::minutes(5);
        let effects = on_event(&mut p, approval(&approver, Some(1)), later).unwrap();
        assert_eq!(p.state, PromotionState::Approved);
        assert_eq!(p.decided_by, Some(approver));
        assert_eq!(p.decided_at, Some(later));
        assert_eq!(p.replaced, Some(1));
        assert_eq!(
            effects,
            vec![
                Effect::Apply(Change::SetStage {
                    version: 2,
                    stage: Production,
                    archive_previous: true,
                    expect_production: Some(Some(1)),
                }),
                Effect::Finished(PromotionState::Approved),
            ]
        );
    }

    #[test]
    fn the_requester_cannot_approve_their_own_request() {
        let scientist = actor("scientist");
        let mut p = pending(&scientist);
        let before = p.clone();
        let err = on_event(&mut p, approval(&scientist, Some(1)), t0()).unwrap_err();
        assert_eq!(err, Rejection::SelfApproval("scientist".into()));
        assert!(err.to_string().contains("another identity"));
        assert_eq!(p, before);
    }

    #[test]
    fn the_same_name_on_another_token_is_another_identity() {
        // Identity is the token, not its label: names are not unique.
        let mut p = pending(&actor("alex"));
        assert!(on_event(&mut p, approval(&actor("alex"), Some(1)), t0()).is_ok());
    }

    #[test]
    fn a_failing_gate_refuses_the_approval_and_the_request_stays_pending() {
        let mut p = pending(&actor("scientist"));
        let before = p.clone();
        let event = Event::Approve {
            by: actor("approver"),
            reason: None,
            gates: Err("gate failed: auc 0.7 is not at least 0.8".into()),
            production: Some(1),
        };
        let err = on_event(&mut p, event, t0()).unwrap_err();
        assert_eq!(err.to_string(), "gate failed: auc 0.7 is not at least 0.8");
        assert_eq!(p, before);
    }

    #[test]
    fn a_failing_gate_refuses_the_request_itself() {
        let err = request(
            ask(2, Production),
            actor("scientist"),
            Staging,
            Err("gate failed: rmse 0.5 is not at most 0.4".into()),
            None,
            t0(),
        )
        .unwrap_err();
        assert!(matches!(err, Rejection::GateFailed(_)));
    }

    #[test]
    fn a_request_needs_a_reason_and_a_change() {
        let mut blank = ask(2, Production);
        blank.reason = "  ".into();
        let err = request(blank, actor("s"), Staging, Ok(()), None, t0()).unwrap_err();
        assert_eq!(err, Rejection::NoReason { field: "reason" });
        let err = request(
            ask(2, Production),
            actor("s"),
            Production,
            Ok(()),
            Some(2),
            t0(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "version 2 is already in production");
    }

    #[test]
    fn a_rejection_is_recorded_with_its_reason() {
        let approver = actor("approver");
        let mut p = pending(&actor("scientist"));
        let effects = on_event(
            &mut p,
            Event::Reject {
                by: approver.clone(),
                reason: "CV folds disagree".into(),
            },
            t0(),
        )
        .unwrap();
        assert_eq!(effects, vec![Effect::Finished(PromotionState::Rejected)]);
        assert_eq!(p.state, PromotionState::Rejected);
        assert_eq!(p.decided_by, Some(approver));
        assert_eq!(p.decision_reason.as_deref(), Some("CV folds disagree"));
        assert_eq!(p.replaced, None);
    }

    #[test]
    fn a_rejection_without_a_reason_is_refused() {
        let mut p = pending(&actor("scientist"));
        let err = on_event(
            &mut p,
            Event::Reject {
                by: actor("approver"),
                reason: String::new(),
            },
            t0(),
        )
        .unwrap_err();
        assert_eq!(err, Rejection::NoReason { field: "reason" });
        assert_eq!(p.state, PromotionState::Pending);
    }

    #[test]
    fn the_requester_or_an_admin_can_withdraw_a_request_nobody_else() {
        let scientist = actor("scientist");
        let mut p = pending(&scientist);
        let err = on_event(
            &mut p,
            Event::Cancel {
                by: actor("other"),
                by_admin: false,
            },
            t0(),
        )
        .unwrap_err();
        assert_eq!(err, Rejection::NotRequester("scientist".into()));
        let mut q = p.clone();
        on_event(
            &mut p,
            Event::Cancel {
                by: scientist,
                by_admin: false,
            },
            t0(),
        )
        .unwrap();
        assert_eq!(p.state, PromotionState::Cancelled);
        on_event(
            &mut q,
            Event::Cancel {
                by: actor("admin"),
                by_admin: true,
            },
            t0(),
        )
        .unwrap();
        assert_eq!(q.state, PromotionState::Cancelled);
    }

    #[test]
    fn a_decided_request_cannot_be_decided_again() {
        let approver = actor("approver");
        let mut p = pending(&actor("scientist"));
        on_event(&mut p, approval(&approver, Some(1)), t0()).unwrap();
        let after = p.clone();
        for event in [
            approval(&actor("second approver"), Some(2)),
            Event::Reject {
                by: actor("x"),
                reason: "late".into(),
            },
            Event::Cancel {
                by: actor("admin"),
                by_admin: true,
            },
        ] {
            let err = on_event(&mut p, event, t0()).unwrap_err();
            assert!(matches!(
                err,
                Rejection::WrongState {
                    state: PromotionState::Approved,
                    ..
                }
            ));
            assert_eq!(p, after);
        }
    }

    #[test]
    fn two_approvals_of_the_same_request_apply_once() {
        // Both approvers read the pending request; the store's
        // compare-and-set keeps the first, the second re-reads the approved
        // request and is refused.
        let mut p = pending(&actor("scientist"));
        let mut stale = p.clone();
        on_event(&mut p, approval(&actor("a"), Some(1)), t0()).unwrap();
        assert!(on_event(&mut stale, approval(&actor("b"), Some(1)), t0()).is_ok());
        let mut reread = p.clone();
        assert!(matches!(
            on_event(&mut reread, approval(&actor("b"), Some(1)), t0()),
            Err(Rejection::WrongState { .. })
        ));
    }

    #[test]
    fn concurrent_promotions_to_production_one_wins_the_other_is_refused_by_the_registry() {
        // Versions 2 and 3 were both approved against production version 1.
        let mut slots = ModelSlots {
            name: "sample-quality".into(),
            revision: 0,
            stages: [(1, Production), (2, Staging), (3, Staging)].into(),
            aliases: Default::default(),
        };
        let mut changes = Vec::new();
        for version in [2, 3] {
            let (mut p, _) = request(
                ask(version, Production),
                actor("scientist"),
                Staging,
                Ok(()),
                Some(1),
                t0(),
            )
            .unwrap();
            let effects = on_event(&mut p, approval(&actor("approver"), Some(1)), t0()).unwrap();
            let Some(Effect::Apply(change)) = effects.into_iter().next() else {
                panic!("an approval applies a change");
            };
            changes.push(change);
        }
        let mut it = changes.into_iter();
        assert!(apply(&mut slots, it.next().unwrap()).is_ok());
        assert!(matches!(
            apply(&mut slots, it.next().unwrap()),
            Err(crate::registry::Rejection::ProductionChanged { .. })
        ));
        assert_eq!(slots.production(), Some(2));
    }

    #[test]
    fn a_request_made_against_another_production_version_is_stale() {
        let mut p = pending(&actor("scientist"));
        assert_eq!(p.against, Some(1));
        let before = p.clone();
        let err = on_event(&mut p, approval(&actor("approver"), Some(3)), t0()).unwrap_err();
        assert_eq!(
            err,
            Rejection::Stale {
                against: Some(1),
                now: Some(3)
            }
        );
        assert!(
            err.to_string().contains("from version 1 to version 3"),
            "{err}"
        );
        assert_eq!(p, before);
        // It can still be rejected or withdrawn.
        on_event(
            &mut p,
            Event::Reject {
                by: actor("approver"),
                reason: "stale".into(),
            },
            t0(),
        )
        .unwrap();
    }

    #[test]
    fn every_state_parses_from_its_name() {
        for s in PromotionState::ALL {
            assert_eq!(s.as_str().parse::<PromotionState>().unwrap(), *s);
        }
        assert!("approve".parse::<PromotionState>().is_err());
    }
}
