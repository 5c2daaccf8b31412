//! Stores experiment transitions: the pure experiment lifecycle
//! (`tracseq_core::lifecycle::experiment`) decides the new record, this
//! writes it with a compare-and-set on the state it was read in. No other
//! code sets an experiment's state.

use chrono::{DateTime, Utc};
use tracing::info;
use tracseq_core::lifecycle::experiment::{self, Effect, Event};
use tracseq_core::types::Experiment;
use tracseq_core::{Error, Platform, Result};

/// The outcome of [`apply`].
pub enum Applied {
    /// Stored: the new record and the work that follows from it.
    Stored(Box<Experiment>, Vec<Effect>),
    /// Someone else changed the experiment's state first (a cancel, another
    /// scheduler): nothing was written; read it again to decide.
    Lost,
}

/// Applies `event` to `exp` (as read from the store) and stores the result
/// unless its state changed in the meantime. An event the lifecycle refuses
/// in the experiment's state is a [`Error::Conflict`] naming the state.
pub async fn apply(
    p: &Platform,
    exp: &Experiment,
    event: Event,
    now: DateTime<Utc>,
) -> Result<Applied> {
    let mut next = exp.clone();
    let effects = experiment::on_event(&mut next, event, now)
        .map_err(|e| Error::Conflict(format!("experiment {}: {e}", exp.id)))?;
    if !p.state.update_experiment(&next, exp.state).await? {
        return Ok(Applied::Lost);
    }
    if next.state.is_terminal() {
        info!(experiment_id = %next.id, state = %next.state, error = ?next.error,
              model_version = ?next.model_version, "experiment finished");
    }
    Ok(Applied::Stored(Box::new(next), effects))
}
