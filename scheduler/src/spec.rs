//! Experiment specs: the body of `POST /experiments`, validated at the edge.

use crate::objective::{self, Objective};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracseq_core::config::LimitsConfig;
use tracseq_core::resources::ResourceRequest;
use tracseq_core::types::{check_label, validate_name};
use tracseq_core::{DatasetId, Error, Result};
use tracseq_hpo::{Direction, PrunerConfig, SamplerConfig, SearchSpace};
use tracseq_learn::dataset::Limits;

/// What a user submits. Unknown fields are rejected so that a typo is an
/// error, not a silently ignored setting.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentRequest {
    /// Who asks: set by the api from the caller's token, never read from
    /// the request body.
    #[serde(skip)]
    pub owner: Option<tracseq_core::security::Actor>,
    pub name: String,
    /// With a data set the platform trains models (AutoML); without one the
    /// experiment is an ask/tell optimisation service.
    pub dataset_id: Option<DatasetId>,
    pub target: Option<String>,
    /// AutoML: the metric to optimise (default per task: rmse, auc, log_loss).
    pub metric: Option<String>,
    /// Ask/tell: whether smaller or larger told values are better (default minimize).
    pub direction: Option<Direction>,
    /// Multi-objective experiments: 2 to 4 `{name, direction}` objects
    /// (see [`crate::objectives`]); replaces `metric` and `direction`.
    pub objectives: Option<Value>,
    /// Required for ask/tell; AutoML defaults to the model families' space.
    pub search_space: Option<Value>,
    pub sampler: Option<Value>,
    pub pruner: Option<Value>,
    #[serde(default)]
    pub budget: Budget,
    pub parallelism: Option<u32>,
    pub cv_folds: Option<u32>,
    pub seed: Option<u64>,
    pub model_name: Option<String>,
    pub priority: Option<u8>,
    pub max_attempts: Option<u32>,
    pub trial_timeout_secs: Option<u64>,
    /// What each trial (and the final training job) needs on a worker;
    /// `gpus > 0` sends them to the `gpu` queue.
    pub resources: Option<ResourceRequest>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Most trials to run.
    pub trials: Option<u64>,
    /// Wall-clock seconds after which no new trial starts.
    pub seconds: Option<u64>,
    /// Stop starting trials once the best value has not improved in this
    /// many consecutive complete trials (see `crate::history::trials_since_improvement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_improvement_trials: Option<u64>,
}

/// The validated spec stored with the experiment; every default resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    pub dataset_id: Option<DatasetId>,
    pub target: Option<String>,
    pub task: Option<Value>,
    pub metric: Option<String>,
    /// The first objective's direction in a multi-objective experiment.
    pub direction: Direction,
    /// Multi-objective experiments only; `None` for a single objective, which
    /// keeps single-objective specs exactly as they were stored before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<Vec<Objective>>,
    pub search_space: Value,
    pub sampler: SamplerConfig,
    pub pruner: PrunerConfig,
    pub budget: Budget,
    pub parallelism: u32,
    pub cv_folds: u32,
    pub seed: u64,
    pub model_name: Option<String>,
    pub max_attempts: u32,
    pub trial_timeout_secs: u64,
    /// Older specs (before resources existed) read as the default request.
    #[serde(default)]
    pub resources: ResourceRequest,
}

impl ExperimentSpec {
    pub fn from_value(v: &Value) -> Result<Self> {
        serde_json::from_value(v.clone())
            .map_err(|e| Error::Internal(format!("stored experiment spec is corrupt: {e}")))
    }

    pub fn space(&self) -> Result<SearchSpace> {
        SearchSpace::from_json(&self.search_space).map_err(|e| Error::Internal(e.to_string()))
    }

    /// The objectives' directions in order when there are several.
    pub fn multi_objective_directions(&self) -> Option<Vec<Direction>> {
        self.objectives
            .as_ref()
            .map(|o| o.iter().map(|o| o.direction).collect())
    }
}

pub const MAX_FOLDS: u32 = 20;
pub const MAX_ATTEMPTS: u32 = 20;
pub const MAX_PRIORITY: u8 = 9;

/// Checks everything that does not need the data set; the caller resolves
/// task and metric for AutoML experiments.
pub fn validate(req: &ExperimentRequest, limits: &LimitsConfig) -> Result<ExperimentSpec> {
    let invalid = |m: String| Err(Error::Invalid(m));
    validate_name("experiment name", &req.name)?;
    if let Some(m) = &req.model_name {
        validate_name("model_name", m)?;
        tracseq_core::registry::check_model_name_free("model_name", m).map_err(Error::Invalid)?;
    } else if req.dataset_id.is_some() {
        // The model takes the experiment's name.
        tracseq_core::registry::check_model_name_free("experiment name", &req.name)
            .map_err(Error::Invalid)?;
    }
    let automl = req.dataset_id.is_some();
    if automl {
        if req.target.as_deref().is_none_or(str::is_empty) {
            return invalid("target is required with dataset_id".into());
        }
        if let Some(target) = &req.target {
            check_label("target", target)?;
        }
        if req.direction.is_some() {
            return invalid(
                "direction is implied by metric for AutoML experiments; remove it".into(),
            );
        }
    } else {
        for (field, set) in [
            ("target", req.target.is_some()),
            ("metric", req.metric.is_some()),
            ("cv_folds", req.cv_folds.is_some()),
            ("model_name", req.model_name.is_some()),
        ] {
            if set {
                return invalid(format!(
                    "{field} only applies to experiments with a dataset_id"
                ));
            }
        }
        if req.search_space.is_none() {
            return invalid(
                "search_space is required for an ask/tell experiment (no dataset_id)".into(),
            );
        }
    }
    let objectives = match &req.objectives {
        None => None,
        Some(v) => {
            if req.direction.is_some() {
                return invalid(
                    "direction does not apply with objectives; give each objective its direction"
                        .into(),
                );
            }
            if req.metric.is_some() {
                return invalid(
                    "metric does not apply with objectives; name the metric as the first objective"
                        .into(),
                );
            }
            Some(objective::parse(v, automl)?)
        }
    };
    let multi = objectives.is_some();
    let search_space = match &req.search_space {
        Some(s) => s.clone(),
        None => tracseq_learn::model::default_search_space(),
    };
    if let Some(params) = search_space.as_object() {
        for key in params.keys() {
            check_label("search_space parameter", key)?;
        }
    }
    let space = SearchSpace::from_json(&search_space)
        .map_err(|e| Error::Invalid(format!("search_space: {e}")))?;
    if space.is_empty() {
        return invalid("search_space must define at least one parameter".into());
    }
    let seed = req.seed.unwrap_or(0);
    let sampler: SamplerConfig = parse_tagged("sampler", req.sampler.as_ref(), seed)?
        .unwrap_or_else(|| {
            if multi {
                SamplerConfig::Nsga2(tracseq_hpo::samplers::nsga2::Nsga2SamplerConfig {
                    seed,
                    ..Default::default()
                })
            } else {
                SamplerConfig::Tpe(tracseq_hpo::TpeSamplerConfig {
                    seed,
                    ..Default::default()
                })
            }
        });
    // A grid is finite: its size is the most trials the experiment can run.
    let grid_size = sampler
        .validate_for(&space)
        .map_err(|e| Error::Invalid(format!("sampler: {e}")))?;
    if multi {
        tracseq_hpo::build_multi_objective(&sampler)
            .map_err(|e| Error::Invalid(format!("sampler: {e}")))?;
    }
    let pruner: PrunerConfig =
        parse_tagged("pruner", req.pruner.as_ref(), seed)?.unwrap_or(if automl && !multi {
            PrunerConfig::Median(Default::default())
        } else {
            PrunerConfig::None
        });
    pruner
        .validate()
        .map_err(|e| Error::Invalid(format!("pruner: {e}")))?;
    // Pruners compare trials by one intermediate value; with several
    // objectives there is no single "worse" to stop on (Optuna refuses too).
    if multi && pruner != PrunerConfig::None {
        return invalid(
            "pruner: pruning needs a single objective; remove pruner (or use {\"type\": \"none\"}) for a multi-objective experiment"
                .into(),
        );
    }

    let mut budget = req.budget.clone();
    if let Some(points) = grid_size {
        match budget.trials {
            Some(t) if t > points => {
                return invalid(format!(
                    "budget.trials {t} exceeds the {points} points of the grid sampler; lower it or leave it out to run the whole grid"
                ))
            }
            Some(_) => {}
            None if points > limits.max_trials => {
                return invalid(format!(
                    "the grid sampler has {points} points, more than the limit of {} trials; set budget.trials or shrink the grid",
                    limits.max_trials
                ))
            }
            // Without a trial budget a grid experiment runs every point once.
            None => budget.trials = Some(points),
        }
    }
    if multi && budget.no_improvement_trials.is_some() {
        return invalid(
            "budget.no_improvement_trials needs a single objective; a multi-objective experiment has no one best value to improve"
                .into(),
        );
    }
    match budget.no_improvement_trials {
        Some(0) => return invalid("budget.no_improvement_trials must be at least 1".into()),
        Some(n) if n > limits.max_trials => {
            return invalid(format!(
                "budget.no_improvement_trials {n} exceeds the limit of {}",
                limits.max_trials
            ))
        }
        _ => {}
    }
    match (budget.trials, budget.seconds) {
        (None, None) if automl => return invalid("budget needs trials or seconds".into()),
        (Some(0), _) => return invalid("budget.trials must be at least 1".into()),
        (Some(t), _) if t > limits.max_trials => {
            return invalid(format!(
                "budget.trials {t} exceeds the limit of {}",
                limits.max_trials
            ))
        }
        (_, Some(0)) => return invalid("budget.seconds must be at least 1".into()),
        (_, Some(s)) if s > limits.max_budget_seconds => {
            return invalid(format!(
                "budget.seconds {s} exceeds the limit of {}",
                limits.max_budget_seconds
            ))
        }
        _ => {}
    }
    let parallelism = req.parallelism.unwrap_or(2);
    if parallelism == 0 || parallelism > limits.max_parallelism {
        return invalid(format!(
            "parallelism must be 1..={} (got {parallelism})",
            limits.max_parallelism
        ));
    }
    let cv_folds = req.cv_folds.unwrap_or(3);
    if !(2..=MAX_FOLDS).contains(&cv_folds) {
        return invalid(format!("cv_folds must be 2..={MAX_FOLDS} (got {cv_folds})"));
    }
    let max_attempts = req.max_attempts.unwrap_or(3);
    if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
        return invalid(format!(
            "max_attempts must be 1..={MAX_ATTEMPTS} (got {max_attempts})"
        ));
    }
    let trial_timeout_secs = req.trial_timeout_secs.unwrap_or(600);
    if !(1..=86_400).contains(&trial_timeout_secs) {
        return invalid(format!(
            "trial_timeout_secs must be 1..=86400 (got {trial_timeout_secs})"
        ));
    }
    if req.priority.is_some_and(|p| p > MAX_PRIORITY) {
        return invalid(format!("priority must be 0..={MAX_PRIORITY}"));
    }
    let resources = req.resources.clone().unwrap_or_default();
    resources
        .validate()
        .map_err(|e| Error::Invalid(format!("resources: {e}")))?;
    Ok(ExperimentSpec {
        dataset_id: req.dataset_id,
        target: req.target.clone(),
        task: None,
        // An AutoML experiment's first objective is its metric.
        metric: match &objectives {
            Some(o) if automl => Some(o[0].name.clone()),
            _ => req.metric.clone(),
        },
        direction: match &objectives {
            Some(o) => o[0].direction,
            None => req.direction.unwrap_or_default(),
        },
        objectives,
        search_space: space.to_json(),
        sampler,
        pruner,
        budget,
        parallelism,
        cv_folds,
        seed,
        model_name: automl.then(|| req.model_name.clone().unwrap_or_else(|| req.name.clone())),
        max_attempts,
        trial_timeout_secs,
        resources,
    })
}

/// Parses an internally tagged config object; a missing `seed` takes the
/// experiment's seed so one `seed` makes the whole experiment reproducible.
fn parse_tagged<T: serde::de::DeserializeOwned>(
    what: &str,
    v: Option<&Value>,
    seed: u64,
) -> Result<Option<T>> {
    let Some(v) = v else { return Ok(None) };
    let mut v = v.clone();
    if let Some(obj) = v.as_object_mut() {
        if what == "sampler" && !obj.contains_key("seed") {
            obj.insert("seed".into(), Value::from(seed));
        }
    } else {
        return Err(Error::Invalid(format!(
            "{what} must be an object with a \"type\""
        )));
    }
    serde_json::from_value(v)
        .map(Some)
        .map_err(|e| Error::Invalid(format!("{what}: {e}")))
}

pub fn dataset_limits(limits: &LimitsConfig) -> Limits {
    Limits {
        max_bytes: limits.dataset_max_bytes,
        max_rows: limits.dataset_max_rows,
        max_columns: limits.dataset_max_columns,
    }
}

/// Body of `POST /experiments/{id}/trials/{number}/tell`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TellRequest {
    pub value: Option<f64>,
    /// Multi-objective experiments: one value per objective, in order.
    #[serde(default, deserialize_with = "objective::deserialize_values")]
    pub values: Option<Vec<f64>>,
    pub state: Option<String>,
    /// Params evaluated by the client, if it did not use the asked ones exactly.
    pub params: Option<Map<String, Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> Result<ExperimentSpec> {
        let r: ExperimentRequest =
            serde_json::from_value(v).map_err(|e| Error::Invalid(e.to_string()))?;
        validate(&r, &LimitsConfig::default())
    }

    fn ask_tell() -> Value {
        json!({"name": "opt", "search_space": {"x": {"type": "float", "low": -1, "high": 1}}})
    }

    #[test]
    fn ask_tell_defaults() {
        let s = req(ask_tell()).unwrap();
        assert_eq!(s.direction, Direction::Minimize);
        assert_eq!(s.pruner, PrunerConfig::None);
        assert!(matches!(s.sampler, SamplerConfig::Tpe(_)));
        assert_eq!(s.parallelism, 2);
    }

    #[test]
    fn experiment_seed_flows_into_the_sampler() {
        let mut v = ask_tell();
        v["seed"] = json!(7);
        v["sampler"] = json!({"type": "random"});
        let s = req(v).unwrap();
        assert_eq!(
            s.sampler,
            SamplerConfig::Random(tracseq_hpo::RandomSamplerConfig { seed: 7 })
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"name": "x"}), "search_space"),
            (
                json!({"name": "bad name", "search_space": {}}),
                "experiment name",
            ),
            (
                json!({"name": "x", "search_space": {"a": {"type": "float", "low": 1, "high": 0}}}),
                "search_space",
            ),
            (
                json!({"name": "x", "target": "y", "search_space": {}}),
                "target",
            ),
            (
                json!({"name": "x", "dataset_id": DatasetId::new(), "budget": {"trials": 5}}),
                "target",
            ),
        ];
        for (v, needle) in cases {
            let err = req(v.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{v}: {err}");
        }
        let mut v = ask_tell();
        v["parallelism"] = json!(0);
        assert!(req(v).unwrap_err().to_string().contains("parallelism"));
        let mut v = ask_tell();
        v["budget"] = json!({"trials": 0});
        assert!(req(v).unwrap_err().to_string().contains("budget.trials"));
        let mut v = ask_tell();
        v["sampler"] = json!({"type": "annealing"});
        assert!(req(v).unwrap_err().to_string().contains("sampler"));
        let mut v = ask_tell();
        v["pruner"] = json!({"type": "median", "interval_steps": 0});
        assert!(req(v).unwrap_err().to_string().contains("interval_steps"));
    }

    #[test]
    fn automl_defaults_to_the_model_space_and_median_pruning() {
        let v = json!({"name": "q", "dataset_id": DatasetId::new(), "target": "y", "budget": {"trials": 10}});
        let s = req(v).unwrap();
        assert!(matches!(s.pruner, PrunerConfig::Median(_)));
        assert_eq!(s.model_name.as_deref(), Some("q"));
        assert!(s.search_space.get("family").is_some());
    }

    fn grid_space() -> Value {
        json!({
            "k": {"type": "categorical", "choices": ["a", "b"]},
            "n": {"type": "int", "low": 1, "high": 3}
        })
    }

    #[test]
    fn grid_sampler_defaults_the_trial_budget_to_the_grid_size() {
        let v = json!({"name": "g", "search_space": grid_space(), "sampler": {"type": "grid"}, "seed": 4});
        let s = req(v).unwrap();
        assert_eq!(s.budget.trials, Some(6));
        let SamplerConfig::Grid(g) = &s.sampler else {
            panic!("{:?}", s.sampler)
        };
        assert_eq!(g.seed, 4);
        let v = json!({"name": "g", "search_space": grid_space(), "sampler": {"type": "grid"}, "budget": {"trials": 4}});
        assert_eq!(req(v).unwrap().budget.trials, Some(4));
        // AutoML needs no other budget with a grid.
        let v = json!({"name": "q", "dataset_id": DatasetId::new(), "target": "y", "search_space": grid_space(), "sampler": {"type": "grid"}});
        assert_eq!(req(v).unwrap().budget.trials, Some(6));
    }

    #[test]
    fn grid_and_no_improvement_errors_name_the_field() {
        let cases = [
            (
                json!({"sampler": {"type": "grid"}, "budget": {"trials": 7}}),
                "budget.trials 7 exceeds the 6 points of the grid sampler",
            ),
            (
                json!({"sampler": {"type": "grid", "grid": {"n": [4]}}}),
                "sampler: sampler.grid.n: 4 is outside [1, 3]",
            ),
            (
                json!({"sampler": {"type": "grid", "grid": {"z": [4]}}}),
                "unknown parameter 'z'",
            ),
            (
                json!({"sampler": {"type": "grid", "grid": {"k": ["a", "a"]}}}),
                "\"a\" is listed twice",
            ),
            (
                json!({"sampler": {"type": "grid", "points_per_dimension": 0}}),
                "points_per_dimension",
            ),
            (
                json!({"sampler": {"type": "nelder_mead"}}),
                "sampler: sampler nelder_mead needs at least one float parameter without step or when",
            ),
            (
                json!({"sampler": {"type": "particle_swarm", "population": 1}}),
                "sampler: sampler.population must be in 2..=1000 (got 1)",
            ),
            (
                json!({"sampler": {"type": "tpe", "multivariate": "yes"}}),
                "sampler: invalid type: string \"yes\", expected a boolean",
            ),
            (
                json!({"budget": {"no_improvement_trials": 0}}),
                "budget.no_improvement_trials must be at least 1",
            ),
            (
                json!({"budget": {"no_improvement_trials": 10_001}}),
                "budget.no_improvement_trials 10001 exceeds the limit",
            ),
        ];
        for (extra, needle) in cases {
            let mut v = json!({"name": "g", "search_space": grid_space()});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            let err = req(v.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{v}: {err}");
        }
        let big = json!({
            "name": "g",
            "search_space": {"a": {"type": "int", "low": 0, "high": 99}, "b": {"type": "int", "low": 0, "high": 99}, "c": {"type": "categorical", "choices": [1, 2]}},
            "sampler": {"type": "grid"}
        });
        let err = req(big).unwrap_err().to_string();
        assert!(err.contains("more than the limit of 10000 trials"), "{err}");
        let mut v = ask_tell();
        v["budget"] = json!({"no_improvement_trials": 3});
        assert_eq!(req(v).unwrap().budget.no_improvement_trials, Some(3));
    }

    fn two_objectives() -> Value {
        json!([{"name": "auc", "direction": "maximize"}, {"name": "latency_ms", "direction": "minimize"}])
    }

    #[test]
    fn multi_objective_defaults_to_nsga2_without_a_pruner() {
        let mut v = ask_tell();
        v["objectives"] = two_objectives();
        v["seed"] = json!(9);
        let s = req(v).unwrap();
        let SamplerConfig::Nsga2(c) = &s.sampler else {
            panic!("{:?}", s.sampler)
        };
        assert_eq!((c.seed, c.population_size), (9, 24));
        assert_eq!(s.pruner, PrunerConfig::None);
        assert_eq!(s.direction, Direction::Maximize, "the first objective's");
        assert_eq!(
            s.multi_objective_directions(),
            Some(vec![Direction::Maximize, Direction::Minimize])
        );
        // Stored and read back unchanged; single-objective specs carry no objectives.
        let back = ExperimentSpec::from_value(&serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let single = serde_json::to_value(req(ask_tell()).unwrap()).unwrap();
        assert!(single.get("objectives").is_none(), "{single}");
        // Value-blind samplers work too.
        for sampler in [json!({"type": "random"}), json!({"type": "grid"})] {
            let mut v = ask_tell();
            v["objectives"] = two_objectives();
            v["sampler"] = sampler;
            v["budget"] = json!({"trials": 5});
            req(v).unwrap();
        }
        // AutoML: the metric comes from the first objective, no median pruner.
        let v = json!({"name": "q", "dataset_id": DatasetId::new(), "target": "y", "budget": {"trials": 10},
                       "objectives": [{"name": "rmse"}, {"name": "model_bytes"}]});
        let s = req(v).unwrap();
        assert_eq!(s.metric.as_deref(), Some("rmse"));
        assert_eq!(s.direction, Direction::Minimize);
        assert_eq!(s.pruner, PrunerConfig::None);
    }

    #[test]
    fn multi_objective_errors_name_the_field() {
        let automl = json!({"name": "q", "dataset_id": DatasetId::new(), "target": "y", "budget": {"trials": 10}});
        let cases = [
            (
                ask_tell(),
                json!({"objectives": [{"name": "a", "direction": "minimize"}]}),
                "objectives must list 2 to 4",
            ),
            (
                ask_tell(),
                json!({"direction": "minimize"}),
                "direction does not apply with objectives",
            ),
            (
                ask_tell(),
                json!({"sampler": {"type": "tpe"}}),
                "sampler: sampler \"tpe\" optimises a single objective",
            ),
            (
                ask_tell(),
                json!({"sampler": {"type": "nsga2", "population_size": 1}}),
                "sampler.population_size must be in 2..=1000",
            ),
            (
                ask_tell(),
                json!({"sampler": {"type": "nsga2", "crossover": 1}}),
                "sampler: unknown field `crossover`",
            ),
            (
                ask_tell(),
                json!({"pruner": {"type": "median"}}),
                "pruner: pruning needs a single objective",
            ),
            (
                ask_tell(),
                json!({"budget": {"no_improvement_trials": 3}}),
                "budget.no_improvement_trials needs a single objective",
            ),
            (
                automl.clone(),
                json!({"metric": "auc", "objectives": [{"name": "auc"}, {"name": "latency_us"}]}),
                "metric does not apply with objectives",
            ),
            (
                automl.clone(),
                json!({"objectives": [{"name": "auc"}, {"name": "latency_ms"}]}),
                "objectives[1].name 'latency_ms' is not measured per trial",
            ),
            (
                automl.clone(),
                json!({"objectives": [{"name": "auc"}, {"name": "latency_us"}], "pruner": {"type": "asha"}}),
                "pruner: pruning needs a single objective",
            ),
        ];
        for (base, extra, needle) in cases {
            let mut v = base;
            if extra.get("objectives").is_none() {
                v["objectives"] = two_objectives();
            }
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            let err = req(v.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{v}: {err}");
        }
        // An explicit "none" pruner is fine.
        let mut v = ask_tell();
        v["objectives"] = two_objectives();
        v["pruner"] = json!({"type": "none"});
        req(v).unwrap();
    }
}
