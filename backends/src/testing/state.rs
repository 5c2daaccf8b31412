//! The `StateStore` conformance suite.

use super::{new_experiment, new_job, t0};
use chrono::Duration;
use serde_json::{json, Map};
use std::collections::BTreeMap;
use std::sync::Arc;
use tracseq_core::ids::{DatasetId, JobId, WorkerId};
use tracseq_core::lifecycle::{Event, RetryPolicy};
use tracseq_core::ports::{transition, transition_from, JobFilter, StateStore, TransitionOutcome};
use tracseq_core::trial_cache::TrialCache;
use tracseq_core::types::{
    DatasetRecord, ExperimentState, JobState, NewModelVersion, TrialOutcome, TrialState,
};
use tracseq_core::Error;

/// Runs every check against a fresh, empty store.
pub async fn state_store_suite(store: Arc<dyn StateStore>) {
    jobs_round_trip_and_cas(store.as_ref()).await;
    batch_insert_all_or_none(store.as_ref()).await;
    claims_race_exactly_one_winner(store.clone()).await;
    transition_from_held_and_stale_copies(store.as_ref()).await;
    due_jobs_and_retry_cycle(store.as_ref()).await;
    experiments_and_conditional_update(store.as_ref()).await;
    trials_numbering_jobs_and_final_state(store.clone()).await;
    trials_since_and_the_cache_over_them(store.as_ref()).await;
    model_registry(store.as_ref()).await;
    datasets(store.as_ref()).await;
    worker_registry(store.as_ref()).await;
    super::paging::pages_walk_every_listing_once_in_order(store.as_ref()).await;
}

async fn jobs_round_trip_and_cas(s: &dyn StateStore) {
    let job = new_job(None, 3);
    s.insert_job(&job).await.unwrap();
    assert!(
        matches!(s.insert_job(&job).await, Err(Error::Conflict(_))),
        "duplicate id"
    );
    assert_eq!(s.get_job(job.id).await.unwrap(), job);
    assert!(matches!(
        s.get_job(JobId::new()).await,
        Err(Error::NotFound(_))
    ));

    let mut changed = job.clone();
    changed.state = JobState::Leased;
    assert!(s.update_job(&changed).await.unwrap());
    let stored = s.get_job(job.id).await.unwrap();
    assert_eq!((stored.state, stored.version), (JobState::Leased, 1));
    // A writer holding the old version loses.
    assert!(!s.update_job(&changed).await.unwrap());
    let mut missing = job.clone();
    missing.id = JobId::new();
    assert!(matches!(
        s.update_job(&missing).await,
        Err(Error::NotFound(_))
    ));

    let in_state = |state| JobFilter {
        states: vec![state],
        ..Default::default()
    };
    let listed = s.list_jobs(&in_state(JobState::Leased)).await.unwrap();
    assert!(listed.iter().any(|j| j.id == job.id));
    let none = s.list_jobs(&in_state(JobState::Dead)).await.unwrap();
    assert!(none.iter().all(|j| j.state == JobState::Dead));
}

async fn batch_insert_all_or_none(s: &dyn StateStore) {
    s.insert_jobs(&[]).await.unwrap();
    let batch: Vec<_> = (1..=5).map(|i| new_job(None, i)).collect();
    s.insert_jobs(&batch).await.unwrap();
    for job in &batch {
        assert_eq!(&s.get_job(job.id).await.unwrap(), job);
    }
    // One taken id refuses the whole batch: nothing half-written.
    let fresh: Vec<_> = (1..=3).map(|i| new_job(None, i)).collect();
    let mut clash = fresh.clone();
    clash.push(batch[2].clone());
    assert!(matches!(
        s.insert_jobs(&clash).await,
        Err(Error::Conflict(_))
    ));
    for job in &fresh {
        assert!(
            matches!(s.get_job(job.id).await, Err(Error::NotFound(_))),
            "a refused batch left job {} behind",
            job.id
        );
    }
}

async fn claims_race_exactly_one_winner(s: Arc<dyn StateStore>) {
    let job = new_job(None, 3);
    s.insert_job(&job).await.unwrap();
    let policy = RetryPolicy::default();
    let mut handles = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let ev = Event::Claim {
                worker: WorkerId(format!("w{i}")),
                lease: Duration::seconds(30),
            };
            transition(s.as_ref(), job.id, ev, t0(), &policy)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for h in handles {
        if matches!(h.await.unwrap(), TransitionOutcome::Applied { .. }) {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one claim wins");
    let stored = s.get_job(job.id).await.unwrap();
    assert_eq!((stored.state, stored.attempt), (JobState::Leased, 1));

    // The same race from the copy a wake-up message carries (claim and
    // start in one write): still exactly one winner, started once.
    let job = new_job(None, 3);
    s.insert_job(&job).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..8 {
        let (s, held) = (s.clone(), job.clone());
        handles.push(tokio::spawn(async move {
            let ev = Event::ClaimAndStart {
                worker: WorkerId(format!("w{i}")),
                lease: Duration::seconds(30),
                gpus: None,
            };
            transition_from(s.as_ref(), &held, ev, t0(), &policy)
                .await
                .unwrap()
        }));
    }
    let mut winners = Vec::new();
    for h in handles {
        if let TransitionOutcome::Applied { job, .. } = h.await.unwrap() {
            winners.push(job);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim-and-start wins");
    let stored = s.get_job(job.id).await.unwrap();
    assert_eq!(stored, winners[0]);
    assert_eq!((stored.state, stored.attempt), (JobState::Running, 1));
}

async fn transition_from_held_and_stale_copies(s: &dyn StateStore) {
    let policy = RetryPolicy::default();
    let queued = new_job(None, 3);
    s.insert_job(&queued).await.unwrap();
    let claim = |w: &str| Event::Claim {
        worker: WorkerId(w.into()),
        lease: Duration::seconds(30),
    };
    let TransitionOutcome::Applied { job: held, .. } =
        transition_from(s, &queued, claim("a"), t0(), &policy)
            .await
            .unwrap()
    else {
        panic!("claim from a current copy applies");
    };
    assert_eq!(
        held,
        s.get_job(queued.id).await.unwrap(),
        "the returned job is what is stored"
    );
    // The old copy still says queued: the event is decided on the stored job.
    let out = transition_from(s, &queued, claim("b"), t0(), &policy)
        .await
        .unwrap();
    assert!(
        matches!(out, TransitionOutcome::Rejected { .. }),
        "a stale copy cannot win a claim"
    );
    let start = Event::Start {
        worker: WorkerId("a".into()),
        attempt: 1,
        lease: Duration::seconds(30),
    };
    let out = transition_from(s, &held, start, t0(), &policy)
        .await
        .unwrap();
    assert_eq!(out.job().state, JobState::Running);
    assert_eq!(
        s.get_job(queued.id).await.unwrap().version,
        held.version + 1
    );
}

async fn due_jobs_and_retry_cycle(s: &dyn StateStore) {
    let policy = RetryPolicy {
        backoff_base_ms: 1_000,
        backoff_max_ms: 1_000,
    };
    let job = new_job(None, 2);
    s.insert_job(&job).await.unwrap();
    let w = WorkerId("w".into());
    let claim = Event::Claim {
        worker: w.clone(),
        lease: Duration::seconds(10),
    };
    transition(s, job.id, claim, t0(), &policy).await.unwrap();
    let due = |at: i64| async move {
        s.due_jobs(t0() + Duration::seconds(at), 100)
            .await
            .unwrap()
            .iter()
            .any(|j| j.id == job.id)
    };
    assert!(!due(9).await, "lease still valid");
    assert!(due(10).await, "lease expired");
    let at = |event, secs| transition(s, job.id, event, t0() + Duration::seconds(secs), &policy);
    let out = at(Event::ExpireLease, 10).await.unwrap();
    assert!(matches!(out, TransitionOutcome::Applied { .. }));
    assert!(!due(10).await, "retry waits for backoff");
    assert!(due(11).await, "retry due");
    at(Event::RetryDue, 11).await.unwrap();
    let stored = s.get_job(job.id).await.unwrap();
    assert_eq!(stored.state, JobState::Queued);
    assert!(stored.last_error.unwrap().contains("lease expired"));

    // A duplicate result for one attempt is stored once.
    let claim = Event::Claim {
        worker: w.clone(),
        lease: Duration::seconds(10),
    };
    transition(s, job.id, claim, t0() + Duration::seconds(12), &policy)
        .await
        .unwrap();
    let ok = Event::Succeed {
        worker: w.clone(),
        attempt: 2,
        result: json!({"value": 1.5}),
    };
    transition(s, job.id, ok.clone(), t0() + Duration::seconds(13), &policy)
        .await
        .unwrap();
    let v = s.get_job(job.id).await.unwrap().version;
    let again = transition(s, job.id, ok, t0() + Duration::seconds(14), &policy)
        .await
        .unwrap();
    assert!(matches!(again, TransitionOutcome::Applied { ref effects, .. } if effects.is_empty()));
    let stored = s.get_job(job.id).await.unwrap();
    assert_eq!(stored.version, v, "duplicate result wrote nothing");
    assert_eq!(stored.result_attempt, Some(2));
}

async fn experiments_and_conditional_update(s: &dyn StateStore) {
    let a = new_experiment("a");
    let mut b = new_experiment("b");
    s.insert_experiment(&a).await.unwrap();
    s.insert_experiment(&b).await.unwrap();
    assert!(matches!(
        s.insert_experiment(&a).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(s.get_experiment(a.id).await.unwrap(), a);
    let all = s.list_experiments(None).await.unwrap();
    let pos = |id| all.iter().position(|e| e.id == id).unwrap();
    assert!(pos(b.id) < pos(a.id), "newest first");

    b.state = ExperimentState::Cancelled;
    assert!(s
        .update_experiment(&b, ExperimentState::Running)
        .await
        .unwrap());
    let mut stale = b.clone();
    stale.state = ExperimentState::Finalizing;
    assert!(
        !s.update_experiment(&stale, ExperimentState::Running)
            .await
            .unwrap(),
        "lost to cancel"
    );
    assert_eq!(
        s.get_experiment(b.id).await.unwrap().state,
        ExperimentState::Cancelled
    );
    let job = new_job(Some(b.id), 1);
    assert!(
        matches!(
            s.create_trial(b.id, Map::new(), Some(job.clone()), t0())
                .await,
            Err(Error::Conflict(_))
        ),
        "a cancelled experiment takes no new trial"
    );
    assert!(s.list_trials(b.id).await.unwrap().is_empty());
    assert!(
        matches!(s.get_job(job.id).await, Err(Error::NotFound(_))),
        "nor the refused trial's job"
    );
    let running = s
        .list_experiments(Some(ExperimentState::Running))
        .await
        .unwrap();
    assert!(running.iter().any(|e| e.id == a.id) && running.iter().all(|e| e.id != b.id));
}

async fn trials_numbering_jobs_and_final_state(s: Arc<dyn StateStore>) {
    let exp = new_experiment("trials");
    s.insert_experiment(&exp).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..6 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut p = Map::new();
            p.insert("x".into(), json!(i));
            let job = (i % 2 == 0).then(|| new_job(Some(exp.id), 1));
            s.create_trial(exp.id, p, job, t0()).await.unwrap()
        }));
    }
    let mut numbers = Vec::new();
    for h in handles {
        numbers.push(h.await.unwrap().number);
    }
    numbers.sort();
    assert_eq!(numbers, (0..6).collect::<Vec<u64>>(), "dense, never reused");

    let trials = s.list_trials(exp.id).await.unwrap();
    assert_eq!(trials.len(), 6);
    for t in &trials {
        if let Some(job_id) = t.job_id {
            let job = s.get_job(job_id).await.unwrap();
            assert_eq!(
                job.trial_number,
                Some(t.number),
                "job points back at its trial"
            );
        }
    }
    assert!(matches!(
        s.create_trial(tracseq_core::ExperimentId::new(), Map::new(), None, t0())
            .await,
        Err(Error::NotFound(_))
    ));

    let t = s.record_intermediate(exp.id, 0, 1, 0.5).await.unwrap();
    assert_eq!(*t.intermediate, BTreeMap::from([(1, 0.5)]));
    s.record_intermediate(exp.id, 0, 1, 0.4).await.unwrap();
    s.record_intermediate(exp.id, 0, 2, 0.3).await.unwrap();
    assert_eq!(
        *s.get_trial(exp.id, 0).await.unwrap().intermediate,
        BTreeMap::from([(1, 0.4), (2, 0.3)])
    );

    assert!(s
        .finish_trial(
            exp.id,
            0,
            TrialOutcome::new(TrialState::Complete, Some(0.3), Some(json!({"k": 1}))),
            t0()
        )
        .await
        .unwrap());
    assert!(
        !s.finish_trial(
            exp.id,
            0,
            TrialOutcome::new(TrialState::Failed, None, None),
            t0()
        )
        .await
        .unwrap(),
        "once"
    );
    let t = s.get_trial(exp.id, 0).await.unwrap();
    assert_eq!(
        (t.state, t.value, t.values, t.detail),
        (TrialState::Complete, Some(0.3), None, Some(json!({"k": 1})))
    );
    // A multi-objective outcome keeps every value, in order, with its state.
    let outcome = TrialOutcome::new(TrialState::Complete, Some(0.9), None)
        .with_values(Some(vec![0.9, 12.5, -3.0]));
    assert!(s.finish_trial(exp.id, 1, outcome, t0()).await.unwrap());
    let t = s.get_trial(exp.id, 1).await.unwrap();
    assert_eq!(
        (t.state, t.value, t.values),
        (TrialState::Complete, Some(0.9), Some(vec![0.9, 12.5, -3.0]))
    );
    assert_eq!(
        s.list_trials(exp.id).await.unwrap()[1].values,
        Some(vec![0.9, 12.5, -3.0])
    );
    assert!(matches!(
        s.record_intermediate(exp.id, 0, 3, 0.1).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        s.get_trial(exp.id, 99).await,
        Err(Error::NotFound(_))
    ));
}

async fn trials_since_and_the_cache_over_them(s: &dyn StateStore) {
    let exp = new_experiment("trials-since");
    s.insert_experiment(&exp).await.unwrap();
    let cache = TrialCache::default();
    let numbers =
        |ts: &[tracseq_core::types::Trial]| ts.iter().map(|t| t.number).collect::<Vec<_>>();
    for i in 0..6 {
        let mut p = Map::new();
        p.insert("x".into(), json!(i));
        s.create_trial(exp.id, p, None, t0()).await.unwrap();
    }
    assert_eq!(cache.trials(s, exp.id).await.unwrap().len(), 6);
    let since = |from, also: &'static [u64]| s.list_trials_since(exp.id, from, also);
    assert_eq!(numbers(&since(4, &[]).await.unwrap()), vec![4, 5]);
    assert_eq!(
        numbers(&since(4, &[1, 4, 2]).await.unwrap()),
        vec![1, 2, 4, 5],
        "by number, each once"
    );
    assert_eq!(
        numbers(&since(0, &[]).await.unwrap()),
        vec![0, 1, 2, 3, 4, 5]
    );
    assert_eq!(numbers(&since(6, &[9]).await.unwrap()), Vec::<u64>::new());
    assert_eq!(
        numbers(&since(u64::MAX, &[u64::MAX, 3]).await.unwrap()),
        vec![3]
    );
    let other = new_experiment("trials-since-other");
    s.insert_experiment(&other).await.unwrap();
    assert!(s
        .list_trials_since(other.id, 0, &[0, 1])
        .await
        .unwrap()
        .is_empty());

    // A trial finished and one reported on since the cache's last read, and
    // one created: the cache shows them as a full read does.
    let done = TrialOutcome::new(TrialState::Complete, Some(0.5), Some(json!({"k": 2})));
    assert!(s.finish_trial(exp.id, 2, done, t0()).await.unwrap());
    s.record_intermediate(exp.id, 3, 1, 0.25).await.unwrap();
    s.create_trial(exp.id, Map::new(), None, t0())
        .await
        .unwrap();
    let held = cache.trials(s, exp.id).await.unwrap();
    // Trials finished out of order while an earlier reader still holds its
    // copy: the refresh copies, and that reader's snapshot stays as it was.
    let late = TrialOutcome::new(TrialState::Complete, Some(0.75), None);
    assert!(s.finish_trial(exp.id, 5, late.clone(), t0()).await.unwrap());
    assert!(s.finish_trial(exp.id, 3, late, t0()).await.unwrap());
    let cached = cache.trials(s, exp.id).await.unwrap();
    assert_eq!(held[3].state, TrialState::Running);
    assert_eq!(cached[3].state, TrialState::Complete);
    let full = s.list_trials(exp.id).await.unwrap();
    assert_eq!(
        serde_json::to_value(&*cached).unwrap(),
        serde_json::to_value(&full).unwrap()
    );
    assert_eq!(cached[2].state, TrialState::Complete);
    assert_eq!(*cached[3].intermediate, BTreeMap::from([(1, 0.25)]));
}

async fn model_registry(s: &dyn StateStore) {
    let new = |version: u32, job: Option<JobId>| NewModelVersion {
        name: "quality".into(),
        version,
        job_id: job,
        family: "linear".into(),
        experiment_id: None,
        artifact_path: format!("models/quality/{version}/model.json"),
        sha256: "ab".repeat(32),
        metrics: BTreeMap::from([("rmse".to_string(), 1.0)]),
        params: Map::new(),
        target: "quality_score".into(),
        owner: None,
        description: None,
        lineage: Default::default(),
        tags: Default::default(),
    };
    assert_eq!(s.next_model_version("quality").await.unwrap(), 1);
    assert!(matches!(
        s.get_model_version("quality", None).await,
        Err(Error::NotFound(_))
    ));
    let job = JobId::new();
    let v1 = s
        .register_model_version(new(1, Some(job)), t0())
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    // The same train job registering again gets its version back.
    assert_eq!(
        s.register_model_version(new(2, Some(job)), t0())
            .await
            .unwrap(),
        v1
    );
    assert!(matches!(
        s.register_model_version(new(1, None), t0()).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(s.next_model_version("quality").await.unwrap(), 2);
    s.register_model_version(new(2, None), t0()).await.unwrap();
    assert_eq!(
        s.get_model_version("quality", None).await.unwrap().version,
        2
    );
    assert_eq!(s.get_model_version("quality", Some(1)).await.unwrap(), v1);
    assert!(matches!(
        s.get_model_version("quality", Some(9)).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(s.find_model_version_by_job(job).await.unwrap(), Some(v1));
    assert_eq!(
        s.find_model_version_by_job(JobId::new()).await.unwrap(),
        None
    );
    let versions = s.list_model_versions(Some("quality")).await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(s
        .list_model_versions(Some("other"))
        .await
        .unwrap()
        .is_empty());
}

async fn datasets(s: &dyn StateStore) {
    let ds = DatasetRecord {
        id: DatasetId::new(),
        name: "samples".into(),
        artifact_path: "datasets/x/data.csv".into(),
        sha256: "00".repeat(32),
        size_bytes: 10,
        rows: 2,
        schema: json!([{"name": "a", "kind": "numeric"}]),
        created_at: t0(),
        owner: None,
    };
    s.insert_dataset(&ds).await.unwrap();
    assert_eq!(s.get_dataset(ds.id).await.unwrap(), ds);
    assert!(matches!(
        s.get_dataset(DatasetId::new()).await,
        Err(Error::NotFound(_))
    ));
    assert!(s.list_datasets().await.unwrap().contains(&ds));
}

async fn worker_registry(s: &dyn StateStore) {
    use tracseq_core::fleet::{RunningJob, WorkerRecord, WorkerStatus};
    use tracseq_core::resources::{GpuInfo, ResourceRequest, WorkerCapacity};
    let mut w = WorkerRecord {
        id: WorkerId("gpu-host-1".into()),
        resource_classes: vec!["gpu".into(), "cpu".into()],
        slots: 4,
        capacity: WorkerCapacity {
            cpus: 16.0,
            memory_mb: 64_000,
            gpus: vec![GpuInfo {
                index: 0,
                uuid: "GPU-0".into(),
                name: "A100".into(),
                memory_total_mb: 81_920,
                memory_free_mb: Some(80_000),
                utilization_pct: Some(12),
                temperature_c: Some(40),
                power_w: Some(71.5),
            }],
        },
        inventory: "configured".into(),
        running: vec![],
        started_at: t0(),
        last_heartbeat_at: t0(),
        heartbeat_ms: 1_000,
        stopped: false,
        version: "test".into(),
    };
    s.upsert_worker(&w).await.unwrap();
    let mut other = w.clone();
    other.id = WorkerId("cpu-host-1".into());
    other.capacity.gpus.clear();
    s.upsert_worker(&other).await.unwrap();
    // A heartbeat replaces the row whole.
    w.last_heartbeat_at = t0() + Duration::seconds(1);
    w.running.push(RunningJob {
        job_id: JobId::new(),
        kind: tracseq_core::types::JobKind::Trial,
        attempt: 1,
        resources: ResourceRequest::default(),
        gpus: Default::default(),
        started_at: t0(),
    });
    s.upsert_worker(&w).await.unwrap();
    let listed = s.list_workers().await.unwrap();
    let ids: Vec<_> = listed.iter().map(|x| x.id.0.as_str()).collect();
    assert_eq!(
        ids,
        ["cpu-host-1", "gpu-host-1"],
        "one row per worker, by id"
    );
    assert_eq!(listed[1], w);
    assert_eq!(
        listed[1].status(t0() + Duration::seconds(2)),
        WorkerStatus::Alive
    );
    assert_eq!(
        listed[0].status(t0() + Duration::seconds(60)),
        WorkerStatus::Dead
    );
}
