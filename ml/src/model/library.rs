//! What the trainers of the library families (lightgbm, random_forest,
//! xgboost) share: both [`Trainer`] methods from one `train`, the libraries'
//! seed, how many rows a converted model is verified on, and the reports of
//! a watched training in rounds.

use super::boosted::{Link, TreeModel};
use super::{check_training_data, FittedModel, Step, Trainer, Watch, Watched};
use crate::error::{internal, invalid, Result};
use crate::matrix::DenseMatrix;
use crate::metrics::{compute, Metric};
use crate::task::Task;

/// Rows a converted model is checked on against the library's own scores.
pub(crate) const VERIFY_ROWS: usize = 2_000;

/// The libraries' seeds are C ints; this folds the 64-bit seed into one.
pub(crate) fn library_seed(seed: u64) -> i32 {
    (seed ^ (seed >> 32)) as u32 as i32
}

/// A trainer that boosts through a library one round at a time. Its
/// `train`, with a watch or without, is both [`Trainer`] methods.
pub trait LibraryTrainer {
    /// The library, as the error of a fit that stopped unwatched names it.
    const LIBRARY: &'static str;

    /// Trains on `x`, which [`check_training_data`] passed, reporting
    /// through a [`Reporter`] on `watch`.
    fn train(&self, x: &DenseMatrix, y: &[f64], task: &Task, watch: Option<Watch<'_>>) -> Watched;
}

impl<T: LibraryTrainer> Trainer for T {
    fn fit(&self, x: &DenseMatrix, y: &[f64], task: &Task) -> Result<FittedModel> {
        check_training_data(x, y, task)?;
        self.train(x, y, task, None)?
            .ok_or_else(|| internal(format!("unwatched {} training stopped", T::LIBRARY)))
    }

    fn fit_watched(&self, x: &DenseMatrix, y: &[f64], task: &Task, watch: Watch<'_>) -> Watched {
        check_training_data(x, y, task)?;
        self.train(x, y, task, Some(watch))
    }
}

/// How often a trainer that boosts in rounds reports its validation
/// metric: about twenty reports per fold, and always the last round.
/// Reports are written to the store and read by the pruner, so one per
/// round would cost more than it tells.
fn report_every(rounds: usize) -> usize {
    (rounds / 20).max(1)
}

/// The watched side of a training in rounds: every [`report_every`]
/// rounds, and after the last, the metric of the library's outputs on the
/// watched rows, reported to the pruner. Without a watch it reports
/// nothing.
pub(crate) struct Reporter<'w, 't> {
    watch: Option<Watch<'w>>,
    task: &'t Task,
    metric: Metric,
    every: usize,
}

impl<'w, 't> Reporter<'w, 't> {
    /// Fails when the watched rows do not have the training columns.
    pub(crate) fn new(
        watch: Option<Watch<'w>>,
        x: &DenseMatrix,
        task: &'t Task,
        metric: Metric,
        rounds: usize,
    ) -> Result<Reporter<'w, 't>> {
        if let Some(w) = &watch {
            if w.x.cols != x.cols || w.y.len() != w.x.rows {
                return Err(invalid("validation rows do not match the training columns"));
            }
        }
        Ok(Reporter {
            watch,
            task,
            metric,
            every: report_every(rounds),
        })
    }

    /// The watched rows, if any.
    pub(crate) fn rows(&self) -> Option<(&'w DenseMatrix, &'w [f64])> {
        self.watch.as_ref().map(|w| (w.x, w.y))
    }

    /// After `round` (`last` when no more follow): when a report is due,
    /// scores `outputs()`, the library's outputs on the watched rows, and
    /// gives the pruner's answer to it.
    pub(crate) fn after(
        &mut self,
        round: usize,
        last: bool,
        outputs: impl FnOnce() -> Result<Vec<f64>>,
    ) -> Result<Step> {
        let Some(w) = &mut self.watch else {
            return Ok(Step::Continue);
        };
        if !round.is_multiple_of(self.every) && !last {
            return Ok(Step::Continue);
        }
        let outputs = TreeModel::widen_binary(Link::for_task(self.task), &outputs()?);
        let value = compute(self.metric, self.task, w.y, &outputs)?;
        let step = u32::try_from(round).map_err(|_| internal("too many rounds"))?;
        Ok((w.report)(step, value))
    }
}
