//! Scheduler and workers together on the memory backends: determinism,
//! lease expiry after a worker dies, and retries ending in `dead`.

mod common;

use bytes::Bytes;
use chrono::Utc;
use common::fleet::{Fleet, POLICY};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracseq_core::config::LimitsConfig;
use tracseq_core::lifecycle::Event;
use tracseq_core::ports::{transition, ArtifactPath, JobFilter, TransitionOutcome};
use tracseq_core::types::{DatasetRecord, ExperimentState, JobState, TrialState};
use tracseq_core::{DatasetId, ExperimentId, WorkerId};
use tracseq_scheduler::service;
use tracseq_scheduler::spec::ExperimentRequest;
use tracseq_worker::{HostResources, WorkerOptions};

impl Fleet {
    /// A fleet running a scheduler and one single-slot CPU worker per name,
    /// each with a 10 s lease.
    fn started(workers: &[&str]) -> Fleet {
        let mut fleet = Fleet::new();
        fleet.start_scheduler();
        for name in workers {
            fleet.start_worker(name, Duration::from_secs(10));
        }
        fleet
    }

    fn start_scheduler(&mut self) {
        let s = self.scheduler();
        self.run_scheduler(s);
    }

    fn start_worker(&mut self, name: &str, lease: Duration) {
        let (_, task, _) = self.spawn_worker(WorkerOptions {
            id: WorkerId(name.into()),
            resource_classes: vec!["cpu".into()],
            host: Arc::new(HostResources::cpu_only(WorkerId(name.into()), 1)),
            slots: 1,
            lease,
            heartbeat: lease / 4,
            drain: Duration::from_secs(30),
            dataset_limits: Default::default(),
        });
        self.tasks.push(task);
    }

    /// Stores the lab data generated from `(rows, seed)` as a data set.
    async fn lab_dataset(&self, rows: usize, seed: u64) -> DatasetId {
        self.dataset(tracseq_learn::lab::generate_csv(rows, seed), false)
            .await
    }

    async fn dataset(&self, csv: String, corrupt_digest: bool) -> DatasetId {
        let id = DatasetId::new();
        let path = ArtifactPath::dataset(id, "data.csv").unwrap();
        let meta = self
            .platform
            .artifacts
            .put(&path, Bytes::from(csv))
            .await
            .unwrap();
        let sha256 = if corrupt_digest {
            "0".repeat(64)
        } else {
            meta.sha256.unwrap()
        };
        let rec = DatasetRecord {
            id,
            name: "d".into(),
            artifact_path: path.to_string(),
            sha256,
            size_bytes: meta.size,
            rows: 0,
            schema: json!([]),
            created_at: Utc::now(),
            owner: None,
        };
        self.platform.state.insert_dataset(&rec).await.unwrap();
        id
    }

    async fn experiment(&self, body: Value) -> ExperimentId {
        let req: ExperimentRequest = serde_json::from_value(body).unwrap();
        let exp =
            service::create_experiment(&self.platform, req, &LimitsConfig::default(), Utc::now())
                .await
                .unwrap();
        self.wake.notify_one();
        exp.id
    }

    async fn wait_finished(&self, id: ExperimentId) -> tracseq_core::types::Experiment {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let exp = self.platform.state.get_experiment(id).await.unwrap();
            if exp.state.is_terminal() {
                return exp;
            }
            assert!(
                Instant::now() < deadline,
                "experiment did not finish: {exp:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn automl(ds: DatasetId, trials: u64, parallelism: u32, seed: u64) -> Value {
    json!({"name": "t", "dataset_id": ds, "target": "quality_score", "budget": {"trials": trials},
           "parallelism": parallelism, "seed": seed, "max_attempts": 2})
}

async fn leaderboard(seed: u64) -> Vec<(u64, Value, Option<f64>, TrialState)> {
    leaderboard_with(seed, json!({}), 8, 2).await
}

/// The trials of an AutoML experiment run by two workers; `extra` adds
/// spec fields (sampler, search space).
async fn leaderboard_with(
    seed: u64,
    extra: Value,
    trials: u64,
    parallelism: u32,
) -> Vec<(u64, Value, Option<f64>, TrialState)> {
    let fleet = Fleet::started(&["a", "b"]);
    let ds = fleet.lab_dataset(300, 9).await;
    let mut spec = automl(ds, trials, parallelism, seed);
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let id = fleet.experiment(spec).await;
    let exp = fleet.wait_finished(id).await;
    assert_eq!(exp.state, ExperimentState::Completed, "{exp:?}");
    let trials = fleet.platform.state.list_trials(id).await.unwrap();
    fleet.stop().await;
    trials
        .into_iter()
        .map(|t| {
            (
                t.number,
                Value::Object(Map::clone(&t.params)),
                t.value,
                t.state,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_leaderboard_whatever_the_timing() {
    let first = leaderboard(3).await;
    let second = leaderboard(3).await;
    assert_eq!(first.len(), 8);
    assert_eq!(first, second);
    let other = leaderboard(4).await;
    assert_ne!(first, other, "another seed explores differently");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_samplers_give_the_same_leaderboard_whatever_the_timing() {
    // Past its start-up trials TPE's constant liar reads the pending
    // trials, and the particle swarm hands one generation (3 trials) to the
    // parallel workers at a time: both only from what the trial number
    // fixes, so the timing of the two workers changes nothing.
    let space = json!({
        "gbm_learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": true},
        "gbm_subsample": {"type": "float", "low": 0.5, "high": 1.0},
        "gbm_max_depth": {"type": "int", "low": 2, "high": 5}
    });
    for sampler in [
        json!({"type": "tpe", "n_startup_trials": 3}),
        json!({"type": "particle_swarm", "population": 3}),
    ] {
        let extra = json!({"search_space": space, "sampler": sampler});
        let first = leaderboard_with(5, extra.clone(), 9, 3).await;
        let second = leaderboard_with(5, extra, 9, 3).await;
        assert_eq!(first.len(), 9, "{sampler}");
        assert_eq!(first, second, "{sampler}");
        // Parallel trials were spread out: no two share their params.
        for (i, a) in first.iter().enumerate() {
            for b in &first[i + 1..] {
                assert_ne!(a.1, b.1, "{sampler}: trials {} and {}", a.0, b.0);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_job_runs_again_after_its_lease_expires() {
    let mut fleet = Fleet::started(&[]);
    let ds = fleet.lab_dataset(200, 1).await;
    let id = fleet.experiment(automl(ds, 2, 1, 1)).await;

    // A worker takes trial 0's job, claims it with a short lease, acks the
    // message... and dies.
    let mut sub = fleet.platform.queue.subscribe("cpu", 1).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let claim = Event::Claim {
        worker: WorkerId("doomed".into()),
        lease: chrono::Duration::milliseconds(300),
    };
    let out = transition(
        fleet.platform.state.as_ref(),
        delivery.message.job_id,
        claim,
        Utc::now(),
        &POLICY,
    )
    .await
    .unwrap();
    assert!(matches!(out, TransitionOutcome::Applied { .. }));
    delivery.ack().await.unwrap();
    drop(sub);

    fleet.start_worker("survivor", Duration::from_secs(10));
    let exp = fleet.wait_finished(id).await;
    assert_eq!(exp.state, ExperimentState::Completed, "{exp:?}");
    let trials = fleet.platform.state.list_trials(id).await.unwrap();
    assert_eq!(trials.len(), 2, "exactly the planned trials");
    let job = fleet
        .platform
        .state
        .get_job(trials[0].job_id.unwrap())
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(
        (job.attempt, job.result_attempt),
        (2, Some(2)),
        "ran again, result recorded once"
    );
    assert!(job.last_error.unwrap().contains("lease expired"));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_job_ends_dead_with_its_error_and_the_experiment_says_why() {
    let fleet = Fleet::started(&["a"]);
    // The stored digest does not match the bytes: every attempt fails.
    let ds = fleet
        .dataset(tracseq_learn::lab::generate_csv(100, 1), true)
        .await;
    let id = fleet.experiment(automl(ds, 2, 2, 1)).await;
    let exp = fleet.wait_finished(id).await;
    assert_eq!(exp.state, ExperimentState::Failed);
    assert!(exp
        .error
        .unwrap()
        .contains("none of the 2 trials completed"));
    let jobs = fleet
        .platform
        .state
        .list_jobs(&JobFilter {
            experiment_id: Some(id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
    for job in jobs {
        assert_eq!(job.state, JobState::Dead);
        assert_eq!(job.attempt, 2, "retried up to max_attempts");
        assert!(
            job.last_error.unwrap().contains("digest"),
            "the error says what went wrong"
        );
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classification_automl_registers_a_model_that_predicts_labels() {
    let fleet = Fleet::started(&["a"]);
    // The lab data with a pass/fail target instead of the score.
    let csv = tracseq_learn::lab::generate_csv(400, 5);
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let target_col = header
        .split(',')
        .position(|c| c == "quality_score")
        .unwrap();
    let mut out = header.replace("quality_score", "passed") + "\n";
    for line in lines {
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        let score: f64 = cells[target_col].parse().unwrap();
        cells[target_col] = if score >= 70.0 {
            "pass".into()
        } else {
            "fail".into()
        };
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    let ds = fleet.dataset(out, false).await;
    let body = json!({"name": "passfail", "dataset_id": ds, "target": "passed", "budget": {"trials": 4}, "seed": 2});
    let id = fleet.experiment(body).await;
    let exp = fleet.wait_finished(id).await;
    assert_eq!(exp.state, ExperimentState::Completed, "{exp:?}");
    let spec = tracseq_scheduler::spec::ExperimentSpec::from_value(&exp.spec).unwrap();
    assert_eq!(spec.metric.as_deref(), Some("auc"));
    let version = fleet
        .platform
        .state
        .get_model_version("passfail", None)
        .await
        .unwrap();
    let auc = version.metrics["auc"];
    assert!(auc > 0.7, "cross-validated AUC {auc}");
    let bytes = fleet
        .platform
        .artifacts
        .get(&ArtifactPath::parse(&version.artifact_path).unwrap())
        .await
        .unwrap();
    let model =
        tracseq_learn::artifact::ModelArtifact::from_bytes(&bytes, &version.sha256).unwrap();
    let p = &model
        .predict(&[tracseq_learn::lab::example_record(1)])
        .unwrap()[0];
    assert!(matches!(p.label.as_deref(), Some("pass") | Some("fail")));
    let probs = p.probabilities.as_ref().unwrap();
    assert!((probs.values().sum::<f64>() - 1.0).abs() < 1e-9);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_experiments_trials_run_first() {
    let mut fleet = Fleet::started(&[]);
    let ds = fleet.lab_dataset(200, 3).await;
    let body = |name: &str, priority: u8| {
        json!({"name": name, "dataset_id": ds, "target": "quality_score", "budget": {"trials": 3},
               "parallelism": 3, "seed": 1, "priority": priority,
               "search_space": {"family": {"type": "categorical", "choices": ["linear"]}}})
    };
    let low = fleet.experiment(body("low", 1)).await;
    let high = fleet.experiment(body("high", 8)).await;
    // Both experiments' trials wait in the queue before any worker exists.
    let deadline = Instant::now() + Duration::from_secs(30);
    while fleet.platform.queue.depth("cpu").await.unwrap() < 6 {
        assert!(Instant::now() < deadline, "trials were not queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fleet.start_worker("only", Duration::from_secs(10));
    for id in [low, high] {
        assert_eq!(
            fleet.wait_finished(id).await.state,
            ExperimentState::Completed
        );
    }
    let finished = |id| {
        let state = fleet.platform.state.clone();
        async move {
            let filter = JobFilter {
                experiment_id: Some(id),
                ..Default::default()
            };
            let jobs = state.list_jobs(&filter).await.unwrap();
            jobs.into_iter()
                .filter(|j| j.kind == tracseq_core::types::JobKind::Trial)
                .map(|j| j.finished_at.unwrap())
                .collect::<Vec<_>>()
        }
    };
    let (high_done, low_done) = (finished(high).await, finished(low).await);
    let last_high = high_done.iter().max().unwrap();
    let first_low = low_done.iter().min().unwrap();
    assert!(
        last_high <= first_low,
        "every high-priority trial ran before the low-priority ones"
    );
    fleet.stop().await;
}
