//! Replaying an argmin solver from a study's trials: the continuous subspace the argmin-backed samplers search, and the "tape" that answers the solver's cost calls with trial values.
//!
//! argmin solvers are state machines that call the cost function
//! synchronously from inside `next_iter`, while an HPO trial's value arrives
//! minutes later from a worker. Rather than persist solver state, each ask
//! re-runs the solver from scratch with argmin's own `Executor` against a
//! tape of the study's trials: every point the solver asks for is looked up
//! among the trials, in trial order, and answered with that trial's value.
//! The first point no trial holds yet is the suggestion (the cost function
//! stops the run with `Stop::Need`); a point a pending trial holds means
//! the solver must wait (`Stop::Blocked`). So the sampler is a pure
//! function of history and pending trials, like the others, and a restart
//! recomputes the same suggestion.

use std::sync::atomic::{AtomicUsize, Ordering};

use argmin::core::{CostFunction, Executor, Solver, State};

use super::tpe::{TpeSampler, TpeSamplerConfig};
use super::Ask;
use crate::space::{ParamKind, SearchSpace};
use crate::{invalid, Direction, FinishedTrial, Params, PendingTrial, Result, TrialState};

/// Two unit-cube positions name the same trial when every coordinate agrees
/// this closely. Trial params travel through JSON (and PostgreSQL's
/// `jsonb`), which keeps f64 exactly, so this only absorbs the ln/exp round
/// trip of log parameters.
const MATCH_TOL: f64 = 1e-9;

/// One axis of the subspace: a parameter's internal interval.
#[derive(Debug, Clone)]
struct Axis {
    name: String,
    index: usize,
    low: f64,
    high: f64,
}

/// The parameters argmin searches: floats without `step` or `when`, each
/// scaled to [0, 1] in internal space (log space for `log` floats). Grid,
/// integer, categorical and conditional parameters don't fit a continuous
/// solver's geometry; TPE chooses those.
#[derive(Debug, Clone)]
pub(crate) struct Subspace {
    axes: Vec<Axis>,
}

impl Subspace {
    pub(crate) fn of(space: &SearchSpace) -> Subspace {
        let axes = space
            .params()
            .iter()
            .enumerate()
            .filter(|(_, spec)| {
                spec.conditions().is_empty()
                    && matches!(spec.kind(), ParamKind::Float { step: None, .. })
            })
            .filter_map(|(index, spec)| {
                let (low, high, _) = spec.internal_bounds()?;
                Some(Axis {
                    name: spec.name().to_string(),
                    index,
                    low,
                    high,
                })
            })
            .collect();
        Subspace { axes }
    }

    pub(crate) fn len(&self) -> usize {
        self.axes.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.axes.is_empty()
    }

    /// The parameters, in axis order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.axes.iter().map(|a| a.name.as_str())
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.axes.iter().any(|a| a.name == name)
    }

    /// The unit coordinate of `value` on the axis of `name`.
    pub(crate) fn unit_of_value(
        &self,
        space: &SearchSpace,
        name: &str,
        value: &serde_json::Value,
    ) -> Option<f64> {
        let axis = self.axes.iter().find(|a| a.name == name)?;
        let x = space.params()[axis.index].to_internal(value)?;
        Some(unit(axis, x))
    }

    /// The params of a unit-cube point (clamped into the cube).
    pub(crate) fn to_params(&self, space: &SearchSpace, u: &[f64]) -> Params {
        self.axes
            .iter()
            .zip(u)
            .map(|(a, &x)| {
                let internal = a.low + x.clamp(0.0, 1.0) * (a.high - a.low);
                (
                    a.name.clone(),
                    space.params()[a.index].internal_to_value(internal),
                )
            })
            .collect()
    }

    /// A trial's position in the unit cube; `None` when a coordinate is
    /// missing or doesn't fit the space.
    fn position(&self, space: &SearchSpace, params: &Params) -> Option<Vec<f64>> {
        self.axes
            .iter()
            .map(|a| {
                let x = space.params()[a.index].to_internal(params.get(&a.name)?)?;
                Some(unit(a, x))
            })
            .collect()
    }
}

/// The continuous subspace, or an error naming the sampler that needs one.
pub(crate) fn require_subspace(space: &SearchSpace, sampler: &str) -> Result<Subspace> {
    let sub = Subspace::of(space);
    if sub.is_empty() {
        return Err(invalid(format!(
            "sampler {sampler} needs at least one float parameter without step or when in \
             search_space (the continuous subspace it searches)"
        )));
    }
    Ok(sub)
}

fn unit(axis: &Axis, x: f64) -> f64 {
    if axis.high > axis.low {
        (x - axis.low) / (axis.high - axis.low)
    } else {
        0.0
    }
}

/// Why a replay stopped before the solver finished: the error a tape's
/// cost function raises, read back with `anyhow::Error::downcast_ref`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Stop {
    /// The solver wants this point evaluated and no trial holds it yet.
    #[error("the solver needs a trial at {0:?}")]
    Need(Vec<f64>),
    /// The point the solver wants is held by a trial that hasn't finished.
    #[error("the solver waits for a pending trial")]
    Blocked,
}

/// What the replay says the next trial should be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// The solver's next point, in the unit cube.
    Point(Vec<f64>),
    /// The solver can't use another trial now (it waits on a pending one,
    /// or it converged): the trial explores with TPE instead.
    Explore,
}

impl Next {
    /// Reads the outcome of an `Executor::run`. Only a stop raised by the
    /// tape names a point; a run that ended (converged, or its iteration cap,
    /// which the tape's length bounds) or failed otherwise leaves nothing to
    /// refine, and TPE explores.
    pub(crate) fn from_run<T>(run: Result<T, argmin::core::Error>) -> Next {
        match run {
            Err(e) => match e.downcast_ref::<Stop>() {
                Some(Stop::Need(x)) => Next::Point(x.clone()),
                Some(Stop::Blocked) | None => Next::Explore,
            },
            Ok(_) => Next::Explore,
        }
    }

    /// Runs `solver` on `problem` (a cost function the tape answers) with
    /// argmin's own `Executor`, `configure`d with the iteration cap the
    /// tape's length implies, and reads where it stopped.
    pub(crate) fn replay<O, S, I>(problem: O, solver: S, configure: impl FnOnce(I) -> I) -> Next
    where
        S: Solver<O, I>,
        I: State,
    {
        Next::from_run(Executor::new(problem, solver).configure(configure).run())
    }
}

/// The TPE an argmin-backed sampler seeded with `seed` leaves the other
/// parameters to, and explores with while its solver can't use a trial.
pub(crate) fn explorer(seed: u64) -> TpeSampler {
    TpeSampler::new_clamped(TpeSamplerConfig {
        seed,
        ..Default::default()
    })
}

/// One ask of an argmin-backed sampler: `next` replays the solver over the
/// study's tape of the continuous subspace; its point fixes those
/// parameters and `tpe` samples the rest (all of them when the subspace is
/// empty or the solver has nothing to refine).
pub(crate) fn sample_replayed(
    tpe: &TpeSampler,
    ask: &Ask<'_>,
    next: impl FnOnce(&Subspace, &Tape) -> Next,
) -> Params {
    let space = ask.space;
    let sub = Subspace::of(space);
    let next = if sub.is_empty() {
        Next::Explore
    } else {
        let tape = Tape::new(&sub, space, ask.history, ask.pending, ask.direction);
        next(&sub, &tape)
    };
    let fixed = match next {
        Next::Point(x) => sub.to_params(space, &x),
        Next::Explore => Params::new(),
    };
    tpe.sample_except(ask, &fixed)
}

/// What the tape holds for a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Lookup {
    /// A finished trial's loss (smaller is better; unusable trials are +∞).
    Value(f64),
    Pending,
    Unassigned,
}

#[derive(Debug, Clone)]
struct Entry {
    position: Option<Vec<f64>>,
    /// `None` while pending.
    loss: Option<f64>,
}

/// The study's trials in trial order, consumed front to back by lookups.
#[derive(Debug)]
pub(crate) struct Tape {
    entries: Vec<Entry>,
    /// First entry not yet consumed. Atomic rather than a `Cell` so the tape
    /// stays `Sync`, which argmin's problems must be if its `rayon` feature
    /// is ever switched on.
    cursor: AtomicUsize,
}

impl Tape {
    pub(crate) fn new(
        subspace: &Subspace,
        space: &SearchSpace,
        history: &[FinishedTrial],
        pending: &[PendingTrial],
        direction: Direction,
    ) -> Tape {
        let mut numbered: Vec<(u64, Entry)> = history
            .iter()
            .map(|t| {
                (
                    t.number,
                    Entry {
                        position: subspace.position(space, &t.params),
                        loss: Some(loss(t, direction)),
                    },
                )
            })
            .chain(pending.iter().map(|p| {
                (
                    p.number,
                    Entry {
                        position: subspace.position(space, &p.params),
                        loss: None,
                    },
                )
            }))
            .collect();
        // Finished before pending for one number, so a result wins; the
        // sort is stable, so the order of the inputs never matters otherwise.
        numbered.sort_by_key(|(number, e)| (*number, e.loss.is_none()));
        numbered.dedup_by_key(|(number, _)| *number);
        Tape {
            entries: numbered.into_iter().map(|(_, e)| e).collect(),
            cursor: AtomicUsize::new(0),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Starts the next replay from the first trial.
    pub(crate) fn rewind(&self) {
        self.cursor.store(0, Ordering::Relaxed);
    }

    /// The first unconsumed trial at `x`, consumed. Trials in between that
    /// aren't at `x` are skipped: they were explorations (TPE trials asked
    /// while the solver waited), not the solver's.
    pub(crate) fn lookup(&self, x: &[f64]) -> Lookup {
        let start = self.cursor.load(Ordering::Relaxed);
        let found = self.entries[start.min(self.entries.len())..]
            .iter()
            .position(|e| {
                e.position.as_ref().is_some_and(|p| {
                    p.len() == x.len()
                        && p.iter()
                            .zip(x)
                            .all(|(a, b)| (a - b.clamp(0.0, 1.0)).abs() <= MATCH_TOL)
                })
            });
        match found {
            None => Lookup::Unassigned,
            Some(offset) => {
                let i = start + offset;
                self.cursor.store(i + 1, Ordering::Relaxed);
                match self.entries[i].loss {
                    Some(loss) => Lookup::Value(loss),
                    None => Lookup::Pending,
                }
            }
        }
    }

    /// The lookup as a cost-function answer.
    pub(crate) fn answer(&self, x: &[f64]) -> Result<f64, argmin::core::Error> {
        match self.lookup(x) {
            Lookup::Value(v) => Ok(v),
            Lookup::Pending => Err(Stop::Blocked.into()),
            Lookup::Unassigned => Err(Stop::Need(x.to_vec()).into()),
        }
    }
}

/// The tape as argmin's cost function: each point the solver evaluates is
/// answered by the next trial at it (see `answer`).
impl CostFunction for &Tape {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, x: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        self.answer(x)
    }
}

/// A trial's value as a loss for a minimising solver. Failed and pruned
/// trials, and non-finite values, are the worst possible (+∞): the solver
/// moves away from them, as it should from a point that could not be scored.
fn loss(t: &FinishedTrial, direction: Direction) -> f64 {
    match (t.state, t.value) {
        (TrialState::Complete, Some(v)) if v.is_finite() => direction.as_loss(v),
        _ => f64::INFINITY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn space() -> SearchSpace {
        SearchSpace::from_json(&json!({
            "x": {"type": "float", "low": -5, "high": 5},
            "lr": {"type": "float", "low": 1e-5, "high": 1, "log": true},
            "grid": {"type": "float", "low": 0, "high": 1, "step": 0.1},
            "k": {"type": "categorical", "choices": ["a", "b"]},
            "cond": {"type": "float", "low": 0, "high": 1, "when": {"k": ["a"]}},
            "n": {"type": "int", "low": 1, "high": 5}
        }))
        .unwrap()
    }

    fn finished(number: u64, params: Params, value: Option<f64>) -> FinishedTrial {
        FinishedTrial {
            number,
            params: params.into(),
            state: if value.is_some() {
                TrialState::Complete
            } else {
                TrialState::Failed
            },
            value,
            intermediate: Default::default(),
        }
    }

    #[test]
    fn subspace_is_the_unconditional_continuous_floats() {
        let space = space();
        let sub = Subspace::of(&space);
        assert_eq!(sub.len(), 2);
        assert!(sub.contains("x") && sub.contains("lr"));
        assert!(!sub.contains("grid") && !sub.contains("cond") && !sub.contains("n"));
        let p = sub.to_params(&space, &[0.5, 0.5]);
        assert_eq!(p["x"], json!(0.0));
        // Half-way in log space: 10^-2.5.
        assert!((p["lr"].as_f64().unwrap().log10() + 2.5).abs() < 1e-12);
        // Out-of-cube points clamp onto its faces.
        let u: Vec<f64> = sub
            .names()
            .map(|n| if n == "x" { -1.0 } else { 2.0 })
            .collect();
        let p = sub.to_params(&space, &u);
        assert_eq!((p["x"].clone(), p["lr"].clone()), (json!(-5.0), json!(1.0)));
        assert_eq!(sub.unit_of_value(&space, "x", &json!(2.5)), Some(0.75));
        assert_eq!(sub.unit_of_value(&space, "x", &json!(9)), None);
    }

    #[test]
    fn tape_matches_trials_in_order_and_skips_explorations() {
        let space = space();
        let sub = Subspace::of(&space);
        let at = |u: [f64; 2]| sub.to_params(&space, &u);
        let history = vec![
            finished(0, at([0.5, 0.5]), Some(3.0)),
            finished(1, at([0.1, 0.9]), Some(1.0)), // an exploration
            finished(2, at([0.7, 0.5]), None),      // failed: worst
            finished(3, at([0.5, 0.5]), Some(2.0)), // the same point again
        ];
        let pending = [PendingTrial {
            number: 4,
            params: at([0.2, 0.2]).into(),
        }];
        let tape = Tape::new(&sub, &space, &history, &pending, Direction::Maximize);
        assert_eq!(tape.len(), 5);
        assert_eq!(tape.lookup(&[0.5, 0.5]), Lookup::Value(-3.0));
        assert_eq!(tape.lookup(&[0.7, 0.5]), Lookup::Value(f64::INFINITY));
        // Trial 1 was skipped over: it is behind the cursor now.
        assert_eq!(tape.lookup(&[0.1, 0.9]), Lookup::Unassigned);
        assert_eq!(tape.lookup(&[0.5, 0.5]), Lookup::Value(-2.0));
        assert_eq!(tape.lookup(&[0.2, 0.2]), Lookup::Pending);
        assert_eq!(tape.lookup(&[0.2, 0.2]), Lookup::Unassigned);
        tape.rewind();
        assert_eq!(tape.lookup(&[0.1, 0.9]), Lookup::Value(-1.0));
        // The cost function's answers.
        tape.rewind();
        assert_eq!(tape.answer(&[0.5, 0.5]).unwrap(), -3.0);
        let need = tape.answer(&[0.3, 0.3]).unwrap_err();
        assert_eq!(
            need.downcast_ref::<Stop>(),
            Some(&Stop::Need(vec![0.3, 0.3]))
        );
        assert_eq!(Next::from_run::<()>(Err(need)), Next::Point(vec![0.3, 0.3]));
        assert_eq!(Next::from_run(Ok(())), Next::Explore);
    }

    #[test]
    fn tape_ignores_input_order_and_prefers_results_to_pending_copies() {
        let space = space();
        let sub = Subspace::of(&space);
        let at = |u: [f64; 2]| sub.to_params(&space, &u);
        let mut history = vec![
            finished(0, at([0.1, 0.1]), Some(1.0)),
            finished(1, at([0.2, 0.2]), Some(2.0)),
        ];
        let pending = [PendingTrial {
            number: 1,
            params: at([0.2, 0.2]).into(),
        }];
        history.reverse();
        let tape = Tape::new(&sub, &space, &history, &pending, Direction::Minimize);
        assert_eq!(tape.len(), 2);
        assert_eq!(tape.lookup(&[0.1, 0.1]), Lookup::Value(1.0));
        assert_eq!(tape.lookup(&[0.2, 0.2]), Lookup::Value(2.0));
    }
}
