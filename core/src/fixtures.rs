//! Builders for tests: a fixed instant, a runnable job and an experiment,
//! shared by the lifecycle tests here and the backends' conformance suites.

use crate::ids::ExperimentId;
use crate::protocol::{JobSpec, NoopPayload};
use crate::types::{Experiment, ExperimentKind, ExperimentState, Job, NewJob};
use chrono::{DateTime, Utc};
use serde_json::json;

/// A fixed instant so suites never depend on the wall clock.
pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

pub fn new_job(experiment: Option<ExperimentId>, max_attempts: u32) -> Job {
    NewJob {
        spec: JobSpec::Noop(NoopPayload::default()),
        experiment_id: experiment,
        resource_class: "cpu".into(),
        resources: Default::default(),
        priority: 0,
        max_attempts,
        timeout_secs: 60,
    }
    .into_job(t0(), None)
    .expect("a noop job encodes")
}

pub fn new_experiment(name: &str) -> Experiment {
    Experiment {
        id: ExperimentId::new(),
        name: name.into(),
        kind: ExperimentKind::AskTell,
        spec: json!({"direction": "minimize"}),
        state: ExperimentState::Running,
        priority: 0,
        error: None,
        model_name: None,
        model_version: None,
        created_at: t0(),
        updated_at: t0(),
        finished_at: None,
        owner: None,
    }
}

/// Version `version` of model `name` as a train job would register it,
/// with one recorded metric.
pub fn model_version(name: &str, version: u32, auc: f64) -> crate::types::NewModelVersion {
    crate::types::NewModelVersion {
        name: name.into(),
        version,
        job_id: None,
        family: "linear".into(),
        experiment_id: None,
        artifact_path: format!("models/{name}/{version}/model.json"),
        sha256: "0".repeat(64),
        metrics: [("auc".to_string(), auc)].into(),
        params: Default::default(),
        target: "quality_score".into(),
        owner: None,
        description: None,
        lineage: Default::default(),
        tags: Default::default(),
    }
}
