//! Experiment operations shared by the api and the workers: create, ask,
//! report, tell, cancel. Each is a short sequence of state-store calls
//! around the pure HPO code and the experiment lifecycle.

use crate::history::{history, history_bound, no_improvement_stop, running_trials, time_is_up};
use crate::lifecycle::{self, Applied};
use crate::objectives;
use crate::spec::{self, dataset_limits, ExperimentRequest, ExperimentSpec, TellRequest};
use chrono::{DateTime, Utc};
use serde_json::json;
use tracseq_core::config::LimitsConfig;
use tracseq_core::lifecycle::{experiment, Event};
use tracseq_core::ports::{transition, ArtifactPath, JobFilter};
use tracseq_core::types::{
    DatasetRecord, Experiment, ExperimentKind, ExperimentState, JobState, Trial, TrialOutcome,
    TrialState,
};
use tracseq_core::{Error, ExperimentId, Platform, Result};
use tracseq_hpo::{FinishedTrial, SearchSpace};
use tracseq_learn::dataset::Dataset;
use tracseq_learn::metrics::Metric;
use tracseq_learn::schema::DatasetSchema;
use tracseq_learn::Task;

/// Validates the request, resolves task and metric from the data set for
/// AutoML, and stores the experiment. Nothing is stored on any error.
pub async fn create_experiment(
    p: &Platform,
    req: ExperimentRequest,
    limits: &LimitsConfig,
    now: DateTime<Utc>,
) -> Result<Experiment> {
    let mut spec = spec::validate(&req, limits)?;
    let kind = if let Some(ds_id) = spec.dataset_id {
        let record = p.state.get_dataset(ds_id).await.map_err(|e| match e {
            Error::NotFound(_) => Error::Invalid(format!("dataset_id {ds_id} does not exist")),
            other => other,
        })?;
        let target = spec.target.clone().unwrap_or_default();
        let task = match summarised_task(&record, &target) {
            Some(task) => task.map_err(|e| Error::Invalid(e.to_string()))?,
            None => read_task(p, &record, target, limits).await?,
        };
        // With objectives, the metric is the first of them.
        let field = if spec.objectives.is_some() {
            "objectives[0].name"
        } else {
            "metric"
        };
        let metric = match &spec.metric {
            Some(m) => m
                .parse::<Metric>()
                .map_err(|e| Error::Invalid(format!("{field}: {e}")))?,
            None => Metric::default_for(&task),
        };
        metric
            .check_applies(&task)
            .map_err(|e| Error::Invalid(format!("{field}: {e}")))?;
        spec.direction = metric.direction();
        spec.metric = Some(metric.name().to_string());
        spec.task = Some(serde_json::to_value(&task)?);
        ExperimentKind::Automl
    } else {
        ExperimentKind::AskTell
    };
    let exp = Experiment {
        id: ExperimentId::new(),
        name: req.name.clone(),
        kind,
        spec: serde_json::to_value(&spec)?,
        state: ExperimentState::Running,
        priority: req.priority.unwrap_or(0),
        error: None,
        model_name: spec.model_name.clone(),
        model_version: None,
        created_at: now,
        updated_at: now,
        finished_at: None,
        owner: req.owner.clone(),
    };
    p.state.insert_experiment(&exp).await?;
    Ok(exp)
}

/// The task of an experiment predicting `target`, from the column summary
/// stored with the data set at upload; `None` when the summary does not
/// tell (a record stored before summaries kept tasks, or a target of very
/// many classes).
fn summarised_task(record: &DatasetRecord, target: &str) -> Option<tracseq_learn::Result<Task>> {
    let schema: DatasetSchema = serde_json::from_value(record.schema.clone()).ok()?;
    schema.target_task(record.rows, target)
}

/// The task of an experiment predicting `target`, read from the data set
/// itself. Parsing it is CPU work of up to the upload limit: off the async
/// threads, which serve every other request meanwhile.
async fn read_task(
    p: &Platform,
    record: &DatasetRecord,
    target: String,
    limits: &LimitsConfig,
) -> Result<Task> {
    let ds_id = record.id;
    let bytes = p
        .artifacts
        .get(&ArtifactPath::parse(&record.artifact_path)?)
        .await?;
    let data_limits = dataset_limits(limits);
    tokio::task::spawn_blocking(move || {
        let data = Dataset::from_csv(&bytes, &data_limits)
            .map_err(|e| Error::Invalid(format!("dataset {ds_id}: {e}")))?;
        tracseq_learn::task::infer_task(&data, &target).map_err(|e| Error::Invalid(e.to_string()))
    })
    .await
    .map_err(|e| Error::Internal(format!("reading data set {ds_id} panicked: {e}")))?
}

async fn running_experiment(
    p: &Platform,
    id: ExperimentId,
) -> Result<(Experiment, ExperimentSpec)> {
    let exp = p.state.get_experiment(id).await?;
    let spec = ExperimentSpec::from_value(&exp.spec)?;
    Ok((exp, spec))
}

/// Ask: creates the next trial of an ask/tell experiment with sampled params.
pub async fn ask(p: &Platform, id: ExperimentId, now: DateTime<Utc>) -> Result<Trial> {
    let (exp, spec) = running_experiment(p, id).await?;
    if exp.kind != ExperimentKind::AskTell {
        return Err(Error::Conflict(format!(
            "experiment {id} runs its own trials; ask/tell is for experiments without a dataset"
        )));
    }
    let trials = p.trials(id).await?;
    let stalled = no_improvement_stop(&spec, &trials);
    if exp.state != ExperimentState::Running {
        if let (ExperimentState::Completed, Some(n)) = (exp.state, stalled) {
            return Err(stopped_no_improvement(id, n));
        }
        return Err(Error::Conflict(format!("experiment {id} is {}", exp.state)));
    }
    if let Some(spent) = budget_spent(&spec, &exp, &trials, now) {
        // Nothing runs any more: the experiment is over (a tell usually
        // said so already; a time budget can lapse with no tell).
        if !trials.iter().any(|t| t.state == TrialState::Running) {
            let event = experiment::Event::BudgetSpent {
                trials: trials.len() as u64,
            };
            lifecycle::apply(p, &exp, event, now).await?;
        }
        return Err(Error::Conflict(format!(
            "experiment {id} has used its {spent}"
        )));
    }
    if let Some(n) = stalled {
        // The experiment is over: say so in its state too, so clients that
        // poll it see it end. Trials still running can still be told.
        lifecycle::apply(p, &exp, experiment::Event::Stalled { trials: n }, now).await?;
        return Err(stopped_no_improvement(id, n));
    }
    let space = spec.space()?;
    let number = trials.len() as u64;
    // Ask/tell learns from whatever has finished; the trials clients are
    // still running are pending, so parallel clients get spread-out points.
    let params = match objectives::suggest(&spec, &space, &trials, None, number)? {
        Some(params) => params,
        None => spec.sampler.build().sample_with_pending(
            &space,
            &history(&trials, None),
            &running_trials(&trials),
            spec.direction,
            number,
        ),
    };
    p.state.create_trial(id, params, None, now).await
}

fn stopped_no_improvement(id: ExperimentId, n: u64) -> Error {
    Error::Conflict(format!(
        "experiment stopped: no improvement in {n} trials (experiment {id})"
    ))
}

/// Report: records an intermediate value and answers whether the trial should stop.
pub async fn report(
    p: &Platform,
    id: ExperimentId,
    number: u64,
    step: u32,
    value: f64,
) -> Result<bool> {
    if !value.is_finite() {
        return Err(Error::Invalid(format!(
            "value must be a finite number (got {value})"
        )));
    }
    let (exp, spec) = running_experiment(p, id).await?;
    let trial = p.state.record_intermediate(id, number, step, value).await?;
    let trials = p.trials(id).await?;
    let below = match exp.kind {
        ExperimentKind::Automl => Some(history_bound(&spec, number)),
        ExperimentKind::AskTell => None,
    };
    let hist: Vec<FinishedTrial> = history(&trials, below)
        .into_iter()
        .filter(|t| t.number != number)
        .collect();
    // The trial's number places it in a Hyperband bracket.
    Ok(spec
        .pruner
        .should_prune_trial(number, spec.direction, step, &trial.intermediate, &hist))
}

/// Tell: the final outcome of an ask/tell trial, recorded exactly once.
pub async fn tell(
    p: &Platform,
    id: ExperimentId,
    number: u64,
    req: TellRequest,
    now: DateTime<Utc>,
) -> Result<Trial> {
    let (exp, spec) = running_experiment(p, id).await?;
    if exp.kind != ExperimentKind::AskTell {
        return Err(Error::Conflict(format!(
            "experiment {id} runs its own trials; tell is for ask/tell experiments"
        )));
    }
    let trial = p.state.get_trial(id, number).await?;
    let state = match req.state.as_deref() {
        None | Some("complete") => TrialState::Complete,
        Some("failed") => TrialState::Failed,
        Some("pruned") => TrialState::Pruned,
        Some(other) => {
            return Err(Error::Invalid(format!(
                "state must be complete, failed or pruned (got '{other}')"
            )))
        }
    };
    let (value, values) = objectives::told_values(&spec, state, &req, &trial)?;
    if let Some(params) = &req.params {
        let space: SearchSpace = spec.space()?;
        space
            .validate(params)
            .map_err(|e| Error::Invalid(format!("params: {e}")))?;
        if params != &*trial.params {
            return Err(Error::Invalid(format!(
                "params differ from the ones asked for trial {number}; tell the asked params"
            )));
        }
    }
    // Everything is checked before this one write: a refused tell leaves
    // the trial untouched, an accepted one stores state and values together.
    let outcome = TrialOutcome::new(state, value, None).with_values(values);
    if !p.state.finish_trial(id, number, outcome, now).await? {
        return Err(Error::Conflict(format!(
            "trial {number} was already told ({})",
            trial.state
        )));
    }
    // The last trial of a spent budget ends the experiment, so clients that
    // poll it see it end instead of `running` forever.
    if exp.state == ExperimentState::Running {
        let trials = p.trials(id).await?;
        if budget_spent(&spec, &exp, &trials, now).is_some()
            && !trials.iter().any(|t| t.state == TrialState::Running)
        {
            let event = experiment::Event::BudgetSpent {
                trials: trials.len() as u64,
            };
            // A lost race (a cancel) leaves the other writer's state.
            lifecycle::apply(p, &exp, event, now).await?;
        }
    }
    p.state.get_trial(id, number).await
}

/// Which budget of an ask/tell experiment is used up, if one is.
fn budget_spent(
    spec: &ExperimentSpec,
    exp: &Experiment,
    trials: &[Trial],
    now: DateTime<Utc>,
) -> Option<&'static str> {
    if spec.budget.trials.is_some_and(|b| trials.len() as u64 >= b) {
        Some("budget of trials")
    } else if time_is_up(spec, exp, now) {
        Some("time budget")
    } else {
        None
    }
}

/// Cancels an experiment and every job of it that has not finished.
pub async fn cancel(p: &Platform, id: ExperimentId, now: DateTime<Utc>) -> Result<Experiment> {
    loop {
        let exp = p.state.get_experiment(id).await?;
        if exp.state.is_terminal() {
            return Err(Error::Conflict(format!(
                "experiment {id} is already {}",
                exp.state
            )));
        }
        // A lost race (the scheduler finalized it meanwhile) reads again.
        let Applied::Stored(exp, effects) =
            lifecycle::apply(p, &exp, experiment::Event::Cancel, now).await?
        else {
            continue;
        };
        let exp = *exp;
        if effects.contains(&experiment::Effect::CancelWork) {
            cancel_jobs(p, id, now).await?;
            for t in p.state.list_trials(id).await? {
                if t.state == TrialState::Running {
                    let outcome = TrialOutcome::new(
                        TrialState::Failed,
                        None,
                        Some(json!({"error": "cancelled"})),
                    );
                    p.state.finish_trial(id, t.number, outcome, now).await?;
                }
            }
        }
        return Ok(exp);
    }
}

/// Cancels the live jobs of an experiment (also re-run by the scheduler, so a
/// crash between the two writes leaves nothing running).
pub async fn cancel_jobs(p: &Platform, id: ExperimentId, now: DateTime<Utc>) -> Result<()> {
    let live = [
        JobState::Queued,
        JobState::Leased,
        JobState::Running,
        JobState::Failed,
    ];
    let jobs = p
        .state
        .list_jobs(&JobFilter {
            experiment_id: Some(id),
            states: live.to_vec(),
            limit: None,
        })
        .await?;
    for job in jobs {
        let ev = Event::Cancel {
            reason: "experiment cancelled".into(),
        };
        transition(p.state.as_ref(), job.id, ev, now, &p.policy).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{summary, ExperimentSummary};
    use serde_json::{Map, Value};
    use tracseq_core::lifecycle::RetryPolicy;

    fn platform() -> Platform {
        tracseq_backends::platform::in_memory(RetryPolicy::default())
    }

    async fn create(p: &Platform, v: Value) -> Experiment {
        let req: ExperimentRequest = serde_json::from_value(v).unwrap();
        create_experiment(p, req, &LimitsConfig::default(), Utc::now())
            .await
            .unwrap()
    }

    fn canonical(p: &Map<String, Value>) -> String {
        serde_json::to_string(&p.iter().collect::<std::collections::BTreeMap<_, _>>()).unwrap()
    }

    fn tell_value(value: f64) -> TellRequest {
        TellRequest {
            value: Some(value),
            values: None,
            state: None,
            params: None,
        }
    }

    #[tokio::test]
    async fn summary_reports_parameter_importance_once_enough_trials_are_complete() {
        let p = platform();
        let exp = create(
            &p,
            json!({
                "name": "importance",
                "search_space": {
                    "x": {"type": "float", "low": 0, "high": 1},
                    "y": {"type": "float", "low": 0, "high": 1}
                },
                "sampler": {"type": "random"},
                "budget": {"trials": 50}
            }),
        )
        .await;
        let summary_json = |s: ExperimentSummary| serde_json::to_value(s).unwrap();
        for i in 0..30 {
            let t = ask(&p, exp.id, Utc::now()).await.unwrap();
            let x = t.params["x"].as_f64().unwrap();
            tell(&p, exp.id, t.number, tell_value(10.0 * x), Utc::now())
                .await
                .unwrap();
            if i == 3 {
                let exp = p.state.get_experiment(exp.id).await.unwrap();
                let s = summary_json(summary(&p, exp).await.unwrap());
                assert_eq!(s["importance"], Value::Null, "{s}");
                let reason = s["importance_reason"].as_str().unwrap();
                assert!(reason.contains("at least 5"), "{reason}");
            }
        }
        let exp = p.state.get_experiment(exp.id).await.unwrap();
        let s = summary_json(summary(&p, exp.clone()).await.unwrap());
        let imp = &s["importance"];
        assert_eq!(imp["method"], "forest partial-dependence variance", "{s}");
        assert_eq!(imp["trials"], 30);
        assert_eq!(imp["params"][0]["name"], "x", "{s}");
        assert!(
            imp["params"][0]["importance"].as_f64().unwrap() > 0.7,
            "{s}"
        );
        assert!(s.get("importance_reason").is_none(), "{s}");
        // Same numbers on every GET.
        assert_eq!(summary_json(summary(&p, exp).await.unwrap()), s);
    }

    #[tokio::test]
    async fn ask_stops_after_n_trials_without_improvement() {
        let p = platform();
        let exp = create(
            &p,
            json!({
                "name": "stall",
                "search_space": {"x": {"type": "float", "low": 0, "high": 1}},
                "sampler": {"type": "random"},
                "budget": {"trials": 50, "no_improvement_trials": 2}
            }),
        )
        .await;
        // 1.0 and 0.5 improve; 0.7 and 0.5 (a tie) don't: two trials without improvement.
        for (i, value) in [1.0, 0.5, 0.7, 0.5].into_iter().enumerate() {
            let t = ask(&p, exp.id, Utc::now()).await.unwrap();
            assert_eq!(t.number, i as u64);
            tell(&p, exp.id, t.number, tell_value(value), Utc::now())
                .await
                .unwrap();
        }
        for _ in 0..2 {
            let err = ask(&p, exp.id, Utc::now()).await.unwrap_err();
            assert!(matches!(err, Error::Conflict(_)), "{err:?}");
            assert!(
                err.to_string()
                    .contains("experiment stopped: no improvement in 2 trials"),
                "{err}"
            );
        }
        let stored = p.state.get_experiment(exp.id).await.unwrap();
        assert_eq!(stored.state, ExperimentState::Completed);
        assert!(stored.finished_at.is_some());
        assert_eq!(p.state.list_trials(exp.id).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn ask_sees_what_another_replica_told_despite_its_trial_cache() {
        // Two API replicas over one store, each with its own cache: asks on
        // one, tells on the other. The asking replica must see each tell,
        // or it would never notice the experiment stall.
        let asker = platform();
        let teller = Platform {
            trial_cache: Default::default(),
            ..asker.clone()
        };
        let exp = create(
            &asker,
            json!({
                "name": "replicas",
                "search_space": {"x": {"type": "float", "low": 0, "high": 1}},
                "sampler": {"type": "tpe", "seed": 3, "n_startup_trials": 2},
                "budget": {"trials": 50, "no_improvement_trials": 2}
            }),
        )
        .await;
        for value in [1.0, 0.5, 0.7, 0.5] {
            let t = ask(&asker, exp.id, Utc::now()).await.unwrap();
            tell(&teller, exp.id, t.number, tell_value(value), Utc::now())
                .await
                .unwrap();
        }
        let err = ask(&asker, exp.id, Utc::now()).await.unwrap_err();
        assert!(
            err.to_string().contains("no improvement in 2 trials"),
            "{err}"
        );
        let cached = asker.trials(exp.id).await.unwrap();
        assert_eq!(
            serde_json::to_value(&*cached).unwrap(),
            serde_json::to_value(asker.state.list_trials(exp.id).await.unwrap()).unwrap()
        );
    }

    #[tokio::test]
    async fn the_sampler_history_shares_the_cached_trials_params() {
        // Ask cost at 10,000 trials was dominated by copying every finished
        // trial's params into the history; they must be shared instead, by
        // the history, the pending list and later reads of the cache.
        let p = platform();
        let exp = create(
            &p,
            json!({
                "name": "shared",
                "search_space": {"x": {"type": "float", "low": 0, "high": 1}},
                "sampler": {"type": "tpe", "seed": 1, "n_startup_trials": 2}
            }),
        )
        .await;
        for value in [0.3, 0.2, 0.1] {
            let t = ask(&p, exp.id, Utc::now()).await.unwrap();
            report(&p, exp.id, t.number, 1, value + 1.0).await.unwrap();
            tell(&p, exp.id, t.number, tell_value(value), Utc::now())
                .await
                .unwrap();
        }
        let running = ask(&p, exp.id, Utc::now()).await.unwrap();
        let trials = p.trials(exp.id).await.unwrap();
        let hist = history(&trials, None);
        assert_eq!(hist.len(), 3);
        for (h, t) in hist.iter().zip(trials.iter()) {
            assert!(std::sync::Arc::ptr_eq(&h.params, &t.params));
            assert!(std::sync::Arc::ptr_eq(&h.intermediate, &t.intermediate));
            assert_eq!(h.intermediate.len(), 1);
        }
        let pending = running_trials(&trials);
        assert_eq!(pending.len(), 1);
        assert!(std::sync::Arc::ptr_eq(
            &pending[0].params,
            &trials[running.number as usize].params
        ));
        // Another ask refreshes the cache; the finished trials stay as read.
        ask(&p, exp.id, Utc::now()).await.unwrap();
        let again = p.trials(exp.id).await.unwrap();
        assert_eq!(again.len(), 5);
        for n in 0..3 {
            assert!(std::sync::Arc::ptr_eq(&again[n].params, &trials[n].params));
        }
    }

    #[tokio::test]
    async fn ask_keeps_going_while_the_best_improves() {
        let p = platform();
        let exp = create(
            &p,
            json!({
                "name": "improving",
                "search_space": {"x": {"type": "float", "low": 0, "high": 1}},
                "direction": "maximize",
                "budget": {"no_improvement_trials": 1}
            }),
        )
        .await;
        for value in [1.0, 2.0, 3.0, 4.0] {
            let t = ask(&p, exp.id, Utc::now()).await.unwrap();
            tell(&p, exp.id, t.number, tell_value(value), Utc::now())
                .await
                .unwrap();
        }
        // A pending trial doesn't count; one without improvement does.
        let t = ask(&p, exp.id, Utc::now()).await.unwrap();
        tell(&p, exp.id, t.number, tell_value(1.0), Utc::now())
            .await
            .unwrap();
        let err = ask(&p, exp.id, Utc::now()).await.unwrap_err();
        assert!(
            err.to_string().contains("no improvement in 1 trials"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn telling_the_last_trial_of_the_budget_completes_the_experiment() {
        let p = platform();
        let exp = create(
            &p,
            json!({"name": "budget", "budget": {"trials": 2},
                   "search_space": {"x": {"type": "float", "low": 0, "high": 1}}}),
        )
        .await;
        let a = ask(&p, exp.id, Utc::now()).await.unwrap();
        let b = ask(&p, exp.id, Utc::now()).await.unwrap();
        let err = ask(&p, exp.id, Utc::now()).await.unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        assert!(err.to_string().contains("budget of trials"), "{err}");
        // One trial still runs: the experiment waits for it.
        tell(&p, exp.id, a.number, tell_value(0.5), Utc::now())
            .await
            .unwrap();
        let state = p.state.get_experiment(exp.id).await.unwrap().state;
        assert_eq!(state, ExperimentState::Running);
        tell(&p, exp.id, b.number, tell_value(0.25), Utc::now())
            .await
            .unwrap();
        let done = p.state.get_experiment(exp.id).await.unwrap();
        assert_eq!(done.state, ExperimentState::Completed);
        assert!(done.finished_at.is_some());
        let err = ask(&p, exp.id, Utc::now()).await.unwrap_err();
        assert!(err.to_string().contains("completed"), "{err}");
    }

    #[tokio::test]
    async fn a_spent_time_budget_with_nothing_running_completes_at_the_next_ask() {
        let p = platform();
        let exp = create(
            &p,
            json!({"name": "clock", "budget": {"seconds": 1},
                   "search_space": {"x": {"type": "float", "low": 0, "high": 1}}}),
        )
        .await;
        let later = exp.created_at + chrono::Duration::seconds(2);
        let err = ask(&p, exp.id, later).await.unwrap_err();
        assert!(err.to_string().contains("time budget"), "{err}");
        let state = p.state.get_experiment(exp.id).await.unwrap().state;
        assert_eq!(state, ExperimentState::Completed);
    }

    #[tokio::test]
    async fn grid_ask_visits_every_point_once_then_stops() {
        let p = platform();
        let exp = create(
            &p,
            json!({
                "name": "grid",
                "search_space": {
                    "model": {"type": "categorical", "choices": ["a", "b"]},
                    "depth": {"type": "int", "low": 1, "high": 2, "when": {"model": ["b"]}}
                },
                "sampler": {"type": "grid"}
            }),
        )
        .await;
        let spec = ExperimentSpec::from_value(&exp.spec).unwrap();
        assert_eq!(spec.budget.trials, Some(3));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let t = ask(&p, exp.id, Utc::now()).await.unwrap();
            assert!(seen.insert(canonical(&t.params)));
        }
        let expected: std::collections::BTreeSet<String> = [
            json!({"model": "a"}),
            json!({"depth": 1, "model": "b"}),
            json!({"depth": 2, "model": "b"}),
        ]
        .iter()
        .map(|v| canonical(v.as_object().unwrap()))
        .collect();
        assert_eq!(seen, expected);
        let err = ask(&p, exp.id, Utc::now()).await.unwrap_err();
        assert!(err.to_string().contains("budget of trials"), "{err}");
    }
}
