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
use std::collections::HashSet;
use tracseq_core::ids::RequestId;
use tracseq_core::paging::Page;
use tracseq_core::ports::PredictionLogStore;
use tracseq_core::predictions::{
    tally, Labelled, LiveFilter, Outcome, PredictionFilter, PredictionRecord, VariantCount,
    LATENCY_BOUNDS_US,
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

/// The SQL that counts a model's records per version and variant with
/// failures and cumulative latency buckets (the same in SQLite and
/// PostgreSQL but for how `failed` reads as a number and the filter's
/// placeholders).
pub(crate) fn counts_sql(failed: &str, filter: &str) -> String {
    use std::fmt::Write;
    let mut buckets = String::new();
    for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
        let _ = write!(
            buckets,
            ", SUM(CASE WHEN latency_us <= {bound} THEN 1 ELSE 0 END) AS le{i}"
        );
    }
    format!(
        "SELECT version, variant, COUNT(*) AS n,
                SUM(CASE WHEN {failed} THEN 1 ELSE 0 END) AS errors{buckets}
         FROM prediction_logs WHERE {filter}
         GROUP BY version, variant ORDER BY version, variant"
    )
}

/// Reads the rows of [`counts_sql`]; `num` and `text` read one column.
pub(crate) fn counts_from_rows<R>(
    rows: &[R],
    num: impl Fn(&R, &str) -> Result<i64>,
    text: impl Fn(&R, &str) -> Result<String>,
) -> Result<Vec<VariantCount>> {
    let n = |r: &R, c: &str| -> Result<u64> { Ok(num(r, c)?.max(0) as u64) };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut latency_le = Vec::with_capacity(LATENCY_BOUNDS_US.len());
        for i in 0..LATENCY_BOUNDS_US.len() {
            latency_le.push(n(r, &format!("le{i}"))?);
        }
        out.push(VariantCount {
            version: u32::try_from(n(r, "version")?).unwrap_or(u32::MAX),
            variant: text(r, "variant")?,
            predictions: n(r, "n")?,
            errors: n(r, "errors")?,
            latency_le,
        });
    }
    Ok(out)
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
        && f.since.is_none_or(|t| r.at >= t)
        && (!f.answered_only || r.answered()))
}

/// Refuses an outcome for a record nobody received as an answer.
pub(crate) fn check_answered(prediction: &PredictionRecord) -> Result<()> {
    match (&prediction.shadow_of, &prediction.error) {
        (Some(of), _) => Err(Error::Invalid(format!(
            "prediction request {} is a shadow's copy of {of}: report the outcome under {of}",
            prediction.request_id
        ))),
        (None, Some(_)) => Err(Error::Conflict(format!(
            "prediction request {} failed and gave no answer to compare with",
            prediction.request_id
        ))),
        (None, None) => Ok(()),
    }
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
            if let Some(of) = r.shadow_of {
                g.shadows.entry(of).or_default().push(r.request_id);
            }
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
        check_answered(prediction)?;
        check_outcome(outcome, prediction)?;
        if g.outcomes.contains_key(&id) {
            return Err(outcome_exists(id));
        }
        g.outcomes.insert(id, outcome.clone());
        Ok(())
    }

    async fn labelled_predictions(&self, filter: &LiveFilter, limit: u32) -> Result<Vec<Labelled>> {
        let g = self.lock();
        let mut out = Vec::new();
        for o in g
            .outcomes
            .values()
            .rev()
            .filter(|o| o.model == filter.model)
        {
            if out.len() >= limit as usize {
                break;
            }
            let answer = g.predictions.get(&o.request_id).into_iter();
            let shadows = g
                .shadows
                .get(&o.request_id)
                .into_iter()
                .flatten()
                .filter_map(|id| g.predictions.get(id));
            for p in answer.chain(shadows) {
                if filter.matches(p) && out.len() < limit as usize {
                    out.push(Labelled {
                        prediction: p.clone(),
                        outcome: o.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn prediction_counts(&self, filter: &LiveFilter) -> Result<Vec<VariantCount>> {
        let g = self.lock();
        Ok(tally(g.predictions.values().filter(|p| filter.matches(p))))
    }

    async fn prune_predictions(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        let mut g = self.lock();
        let mut old: Vec<(DateTime<Utc>, RequestId)> = g
            .predictions
            .values()
            .filter(|r| r.at < before)
            .map(|r| (r.at, r.request_id))
            .collect();
        old.sort_unstable();
        old.truncate(limit as usize);
        for (_, id) in &old {
            if let Some(r) = g.predictions.remove(id) {
                if let Some(of) = r.shadow_of {
                    if let Some(copies) = g.shadows.get_mut(&of) {
                        copies.retain(|c| c != id);
                    }
                }
            }
            g.outcomes.remove(id);
            g.shadows.remove(id);
        }
        Ok(old.len() as u64)
    }
}
