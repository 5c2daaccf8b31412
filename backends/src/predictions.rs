//! The [`PredictionLogStore`] port (the prediction log): in memory here,
//! beside [`MemoryStateStore`]; on SQLite and PostgreSQL in
//! `sqlite/predictions.rs` and `postgres/predictions.rs`.
//!
//! What the three share is here: the refusal of a batch that repeats a
//! request id, the check that an outcome matches its prediction, and the
//! messages for records missing or already there.

use crate::memory_state::MemoryStateStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashSet};
use tracseq_core::ids::RequestId;
use tracseq_core::paging::Page;
use tracseq_core::ports::PredictionLogStore;
use tracseq_core::predictions::{
    Labelled, Outcome, PredictionFilter, PredictionRecord, VariantCount,
};
use tracseq_core::{Error, Result};

pub(crate) fn prediction_not_found(id: RequestId) -> Error {
    Error::not_found(format!("prediction request {id}"))
}

pub(crate) fn outcome_exists(id: RequestId) -> Error {
    Error::Conflict(format!(
        "prediction request {id} already has an outcome; outcomes are never replaced"
    ))
}

/// Refuses an outcome whose model, version or variant are not its
/// prediction's (the caller copies them from it).
pub(crate) fn check_outcome(outcome: &Outcome, prediction: &PredictionRecord) -> Result<()> {
    if (&outcome.model, outcome.version, &outcome.variant)
        != (&prediction.model, prediction.version, &prediction.variant)
    {
        return Err(Error::Invalid(format!(
            "the outcome of {} names {}@{} ({}), not its prediction's {}@{} ({})",
            outcome.request_id,
            outcome.model,
            outcome.version,
            outcome.variant,
            prediction.model,
            prediction.version,
            prediction.variant
        )));
    }
    Ok(())
}

pub(crate) fn already_logged(id: RequestId) -> Error {
    Error::Conflict(format!("prediction request {id} is already logged"))
}

/// Refuses a batch that names one request id twice (before anything of it
/// is stored).
pub(crate) fn check_batch(records: &[PredictionRecord]) -> Result<()> {
    let mut seen = HashSet::with_capacity(records.len());
    match records.iter().find(|r| !seen.insert(r.request_id)) {
        Some(r) => Err(already_logged(r.request_id)),
        None => Ok(()),
    }
}

/// Whether `r` is on the page and matches the filter (for the memory store).
fn matches(r: &PredictionRecord, f: &PredictionFilter, page: &Page) -> Result<bool> {
    if let Some(after) = &page.after {
        if r.request_id >= after.parse::<RequestId>()? {
            return Ok(false);
        }
    }
    Ok(f.model.as_ref().is_none_or(|m| *m == r.model)
        && f.entity_id
            .as_ref()
            .is_none_or(|e| r.entity_id.as_ref() == Some(e))
        && f.since.is_none_or(|t| r.at >= t))
}

#[async_trait]
impl PredictionLogStore for MemoryStateStore {
    async fn append_predictions(&self, records: &[PredictionRecord]) -> Result<()> {
        check_batch(records)?;
        let mut g = self.lock();
        if let Some(r) = records
            .iter()
            .find(|r| g.predictions.contains_key(&r.request_id))
        {
            return Err(already_logged(r.request_id));
        }
        for r in records {
            g.predictions.insert(r.request_id, r.clone());
        }
        Ok(())
    }

    async fn list_predictions(
        &self,
        filter: &PredictionFilter,
        page: &Page,
    ) -> Result<Vec<PredictionRecord>> {
        let g = self.lock();
        let mut out = Vec::new();
        for r in g.predictions.values().rev() {
            if out.len() >= page.limit as usize {
                break;
            }
            if matches(r, filter, page)? {
                out.push(r.clone());
            }
        }
        Ok(out)
    }

    async fn get_prediction(&self, id: RequestId) -> Result<PredictionRecord> {
        self.lock()
            .predictions
            .get(&id)
            .cloned()
            .ok_or_else(|| prediction_not_found(id))
    }

    async fn record_outcome(&self, outcome: &Outcome) -> Result<()> {
        let mut g = self.lock();
        let id = outcome.request_id;
        let prediction = g
            .predictions
            .get(&id)
            .ok_or_else(|| prediction_not_found(id))?;
        check_outcome(outcome, prediction)?;
        if g.outcomes.contains_key(&id) {
            return Err(outcome_exists(id));
        }
        g.outcomes.insert(id, outcome.clone());
        Ok(())
    }

    async fn labelled_predictions(
        &self,
        model: &str,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<Labelled>> {
        let g = self.lock();
        Ok(g.outcomes
            .values()
            .rev()
            .filter(|o| o.model == model)
            .filter_map(|o| {
                let p = g.predictions.get(&o.request_id)?;
                since.is_none_or(|t| p.at >= t).then(|| Labelled {
                    prediction: p.clone(),
                    outcome: o.clone(),
                })
            })
            .take(limit as usize)
            .collect())
    }

    async fn prediction_counts(
        &self,
        model: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<VariantCount>> {
        let g = self.lock();
        let mut counts: BTreeMap<(u32, String), u64> = BTreeMap::new();
        for p in g.predictions.values() {
            if p.model == model && since.is_none_or(|t| p.at >= t) {
                *counts.entry((p.version, p.variant.clone())).or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .map(|((version, variant), predictions)| VariantCount {
                version,
                variant,
                predictions,
            })
            .collect())
    }
}
