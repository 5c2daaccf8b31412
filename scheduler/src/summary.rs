//! What `GET /experiments` and `GET /experiments/{id}` show of an
//! experiment: trial counts, the best trial, the Pareto front and the
//! parameter importances.

use crate::objectives;
use crate::spec::ExperimentSpec;
use serde::Serialize;
use serde_json::{Map, Value};
use tracseq_core::types::{Experiment, Trial, TrialState};
use tracseq_core::{Platform, Result};

#[derive(Clone, Debug, Serialize)]
pub struct TrialCounts {
    pub total: u64,
    pub running: u64,
    pub complete: u64,
    pub pruned: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExperimentSummary {
    #[serde(flatten)]
    pub experiment: Experiment,
    pub counts: TrialCounts,
    pub best_trial: Option<BestTrial>,
    /// Multi-objective experiments (on `GET /experiments/{id}` only): the
    /// complete trials no other complete trial dominates, best first by the
    /// first objective.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pareto_front: Option<Vec<objectives::FrontTrial>>,
    /// Each parameter's share of the value's variance (see `tracseq_hpo::importance`);
    /// absent while there are too few complete trials (`importance_reason`
    /// says why) and in listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub importance: Option<tracseq_hpo::importance::Importance>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub importance_reason: Option<String>,
}

/// The parameter importances of an experiment's complete trials, or why
/// there are none. In a multi-objective experiment they explain the first
/// objective (each trial's `value`).
pub fn importance(
    spec: &ExperimentSpec,
    trials: &[Trial],
) -> std::result::Result<tracseq_hpo::importance::Importance, String> {
    let space = spec
        .space()
        .map_err(|e| format!("search space unreadable: {e}"))?;
    let complete: Vec<(u64, &Map<String, Value>, f64)> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| t.value.map(|v| (t.number, &*t.params, v)))
        .collect();
    tracseq_hpo::importance::importance(&space, &complete, spec.seed)
}

pub async fn summary(p: &Platform, exp: Experiment) -> Result<ExperimentSummary> {
    summary_with(p, exp, true).await
}

/// The summary without parameter importances (a forest fit each) and
/// Pareto fronts (a trial list each), for listings: `GET /experiments/{id}`
/// shows them.
pub async fn brief_summary(p: &Platform, exp: Experiment) -> Result<ExperimentSummary> {
    summary_with(p, exp, false).await
}

async fn summary_with(
    p: &Platform,
    exp: Experiment,
    with_importance: bool,
) -> Result<ExperimentSummary> {
    let spec = ExperimentSpec::from_value(&exp.spec)?;
    let trials = p.trials(exp.id).await?;
    let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count() as u64;
    let counts = TrialCounts {
        total: trials.len() as u64,
        running: count(TrialState::Running),
        complete: count(TrialState::Complete),
        pruned: count(TrialState::Pruned),
        failed: count(TrialState::Failed),
    };
    let best_trial = best_trial(&spec, &trials);
    let pareto_front = if with_importance {
        objectives::pareto_front(&spec, &trials)
    } else {
        None
    };
    let (importance, importance_reason) = if !with_importance {
        (None, None)
    } else {
        match importance(&spec, &trials) {
            Ok(imp) => (Some(imp), None),
            Err(reason) => (None, Some(reason)),
        }
    };
    Ok(ExperimentSummary {
        experiment: exp,
        counts,
        best_trial,
        pareto_front,
        importance,
        importance_reason,
    })
}

/// The best complete trial; in a multi-objective experiment, best by the
/// first objective (with all its values), one end of the Pareto front.
#[derive(Clone, Debug, Serialize)]
pub struct BestTrial {
    pub number: u64,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f64>>,
    pub params: Map<String, Value>,
}

pub fn best_trial(spec: &ExperimentSpec, trials: &[Trial]) -> Option<BestTrial> {
    if spec.objectives.is_some() {
        // Best by the first objective with ties broken by the next ones, so
        // never a dominated trial: the head of the Pareto front.
        let head = objectives::pareto_front(spec, trials)?.into_iter().next()?;
        return Some(BestTrial {
            number: head.number,
            value: *head.values.first()?,
            params: head.params,
            values: Some(head.values),
        });
    }
    trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| t.value.filter(|v| v.is_finite()).map(|v| (t, v)))
        // Ties go to the lower trial number, so the winner is deterministic.
        .fold(None::<(&Trial, f64)>, |best, (t, v)| match best {
            Some((_, bv)) if !spec.direction.is_better(v, bv) => best,
            _ => Some((t, v)),
        })
        .map(|(t, v)| BestTrial {
            number: t.number,
            value: v,
            values: t.values.clone(),
            params: Map::clone(&t.params),
        })
}
