//! The registry's operations for the api: promotion requests and their
//! decisions, aliases. Each is a read-compute-store loop: read the model's
//! slots (and the request), let the pure rules decide
//! ([`tracseq_core::registry`], [`tracseq_core::lifecycle::promotion`]),
//! store the result with one compare-and-set, and on a lost race read again
//! and decide again: a second approval of the same request finds it
//! approved, a promotion approved after another one landed finds its
//! request stale.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use tracseq_core::ids::PromotionId;
use tracseq_core::lifecycle::promotion::{
    self, Effect as PromotionEffect, NewPromotion, Promotion, PromotionState, Rejection,
};
use tracseq_core::ports::{HistoryEntry, PromotionWrite, RegistryStore, RegistryWrite, StateStore};
use tracseq_core::registry::{self, check_gates, Change, ModelSlots};
use tracseq_core::security::Actor;
use tracseq_core::{Error, Result};

/// How many times a lost compare-and-set is re-read and decided again
/// before the caller is told to retry.
const RACES: usize = 16;

/// What an approver or the requester decides on a pending request.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Approve {
        reason: Option<String>,
    },
    Reject {
        reason: String,
    },
    /// Withdraw; `by_admin` lets an admin withdraw someone else's request.
    Cancel {
        by_admin: bool,
    },
}

/// Records a request to move a version to a stage. Into production it
/// waits for an approver; a lower stage is applied at once. Gates are
/// checked now (and again at approval).
pub async fn request_promotion(
    state: &dyn StateStore,
    registry: &dyn RegistryStore,
    new: NewPromotion,
    by: &Actor,
    now: DateTime<Utc>,
) -> Result<Promotion> {
    for _ in 0..RACES {
        let mut slots = registry.model_slots(&new.model).await?;
        let current = slots
            .stage_of(new.version)
            .ok_or_else(|| no_version(&new.model, new.version))?;
        let gates = judge(state, &slots, &new.model, new.version, &new.gates).await?;
        let (promotion, effects) = promotion::request(
            new.clone(),
            by.clone(),
            current,
            gates,
            slots.production(),
            now,
        )
        .map_err(refusal)?;
        let history = apply_effects(&mut slots, &effects, &promotion, now)?;
        let write = RegistryWrite {
            slots,
            history,
            promotion: Some(PromotionWrite::Insert(promotion.clone())),
        };
        if registry.commit_registry(write).await? {
            return Ok(promotion);
        }
    }
    Err(busy(&new.model))
}

/// Applies `decision` by `by` to the pending request `id`.
pub async fn decide(
    state: &dyn StateStore,
    registry: &dyn RegistryStore,
    id: PromotionId,
    decision: Decision,
    by: &Actor,
    now: DateTime<Utc>,
) -> Result<Promotion> {
    for _ in 0..RACES {
        let mut p = registry.get_promotion(id).await?;
        let mut slots = registry.model_slots(&p.model).await?;
        let event = match &decision {
            Decision::Approve { reason } => promotion::Event::Approve {
                by: by.clone(),
                reason: reason.clone(),
                gates: judge(state, &slots, &p.model, p.version, &p.gates).await?,
                production: slots.production(),
            },
            Decision::Reject { reason } => promotion::Event::Reject {
                by: by.clone(),
                reason: reason.clone(),
            },
            Decision::Cancel { by_admin } => promotion::Event::Cancel {
                by: by.clone(),
                by_admin: *by_admin,
            },
        };
        let effects = promotion::on_event(&mut p, event, now).map_err(refusal)?;
        let history = apply_effects(&mut slots, &effects, &p, now)?;
        let write = RegistryWrite {
            slots,
            history,
            promotion: Some(PromotionWrite::Update {
                promotion: p.clone(),
                expected: PromotionState::Pending,
            }),
        };
        if registry.commit_registry(write).await? {
            return Ok(p);
        }
    }
    Err(Error::Conflict(format!(
        "promotion request {id}: too many concurrent decisions; try again"
    )))
}

/// Points `alias` of model `name` at `version` (`None`: deletes the alias).
pub async fn set_alias(
    registry: &dyn RegistryStore,
    name: &str,
    alias: &str,
    version: Option<u32>,
    by: &Actor,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<ModelSlots> {
    for _ in 0..RACES {
        let mut slots = registry.model_slots(name).await?;
        let change = match version {
            Some(version) => Change::SetAlias {
                alias: alias.to_string(),
                version,
            },
            None => Change::DeleteAlias {
                alias: alias.to_string(),
            },
        };
        let moved = registry::apply(&mut slots, change).map_err(registry_refusal)?;
        if moved.is_empty() {
            return Ok(slots);
        }
        let history = moved
            .into_iter()
            .map(|change| HistoryEntry {
                seq: 0,
                model: name.to_string(),
                at: now,
                change,
                requested_by: Some(by.clone()),
                approved_by: None,
                promotion_id: None,
                deployment_id: None,
                reason: reason.clone(),
            })
            .collect();
        let stored = ModelSlots {
            revision: slots.revision + 1,
            ..slots.clone()
        };
        let write = RegistryWrite {
            slots,
            history,
            promotion: None,
        };
        if registry.commit_registry(write).await? {
            return Ok(stored);
        }
    }
    Err(busy(name))
}

/// The outcome of a request's gates against the model as it is now.
async fn judge(
    state: &dyn StateStore,
    slots: &ModelSlots,
    name: &str,
    version: u32,
    gates: &[registry::Gate],
) -> Result<std::result::Result<(), String>> {
    if gates.is_empty() {
        return Ok(Ok(()));
    }
    let candidate = state.get_model_version(name, Some(version)).await?;
    let production = match slots.production().filter(|v| *v != version) {
        Some(v) => Some((v, state.get_model_version(name, Some(v)).await?.metrics)),
        None => None,
    };
    let production: Option<(u32, &BTreeMap<String, f64>)> =
        production.as_ref().map(|(v, m)| (*v, m));
    Ok(check_gates(gates, &candidate.metrics, production))
}

/// Applies the registry changes among a promotion's effects to `slots`
/// and returns the history rows they make.
fn apply_effects(
    slots: &mut ModelSlots,
    effects: &[PromotionEffect],
    p: &Promotion,
    now: DateTime<Utc>,
) -> Result<Vec<HistoryEntry>> {
    let mut history = Vec::new();
    for effect in effects {
        let PromotionEffect::Apply(change) = effect else {
            continue;
        };
        let moved = registry::apply(slots, change.clone()).map_err(registry_refusal)?;
        let approved_by = (p.stage.needs_approval())
            .then(|| p.decided_by.clone())
            .flatten();
        history.extend(moved.into_iter().map(|change| HistoryEntry {
            seq: 0,
            model: p.model.clone(),
            at: now,
            change,
            requested_by: Some(p.requested_by.clone()),
            approved_by: approved_by.clone(),
            promotion_id: Some(p.id),
            deployment_id: None,
            reason: Some(p.reason.clone()),
        }));
    }
    Ok(history)
}

fn no_version(name: &str, version: u32) -> Error {
    Error::NotFound(format!("model '{name}' has no version {version}"))
}

fn busy(name: &str) -> Error {
    Error::Conflict(format!(
        "model '{name}': too many concurrent registry changes; try again"
    ))
}

/// A promotion refusal as the error kind the api answers with.
pub fn refusal(r: Rejection) -> Error {
    let message = r.to_string();
    match r {
        Rejection::NoReason { .. } => Error::Invalid(message),
        Rejection::SelfApproval(_) | Rejection::NotRequester(_) => Error::Forbidden(message),
        Rejection::WrongState { .. }
        | Rejection::GateFailed(_)
        | Rejection::AlreadyThere { .. }
        | Rejection::Stale { .. } => Error::Conflict(message),
    }
}

/// A registry refusal as the error kind the api answers with.
pub fn registry_refusal(r: registry::Rejection) -> Error {
    let message = r.to_string();
    match r {
        registry::Rejection::UnknownVersion { .. } | registry::Rejection::UnknownAlias { .. } => {
            Error::NotFound(message)
        }
        registry::Rejection::InvalidAlias(_) => Error::Invalid(message),
        registry::Rejection::ProductionChanged { .. } => Error::Conflict(message),
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
pub(crate) mod tests;
