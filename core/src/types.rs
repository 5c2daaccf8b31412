//! Records kept in the state store: jobs, experiments, trials, model versions, data sets.

use crate::fleet::GpuAssignment;
use crate::ids::{DatasetId, ExperimentId, JobId, TrialId, WorkerId};
use crate::protocol::JobSpec;
use crate::resources::ResourceRequest;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Implements `as_str`, `Display` and `FromStr` for a unit enum whose serde
/// names are snake_case, so stores and URLs use the same spelling as JSON.
macro_rules! str_enum {
    ($name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> crate::Result<Self> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(crate::Error::Invalid(format!(
                        concat!("unknown ", stringify!($name), " '{}'; expected one of: {}"),
                        other,
                        [$($s),+].join(", ")
                    ))),
                }
            }
        }
    };
}
pub(crate) use str_enum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Trial,
    Train,
    BatchPredict,
    /// Does nothing and succeeds: a canary that proves the whole dispatch
    /// path (store, queue, lease, result) works, and what it costs.
    Noop,
    /// Checks a model version's artifact and renders a deployment's files.
    Deploy,
}
str_enum!(JobKind { Trial => "trial", Train => "train", BatchPredict => "batch_predict", Noop => "noop", Deploy => "deploy" });

/// Job states; the transitions between them live in [`crate::lifecycle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Leased,
    Running,
    Succeeded,
    /// Failed this attempt; waiting for `retry_at` before it is queued again.
    Failed,
    /// Out of attempts (or failed with a non-retryable error).
    Dead,
    Cancelled,
    Pruned,
    /// No worker in the fleet could ever hold what it asks for (the reason
    /// is in `last_error`); resubmit with a smaller request or a bigger fleet.
    Unschedulable,
}
str_enum!(JobState {
    Queued => "queued", Leased => "leased", Running => "running", Succeeded => "succeeded",
    Failed => "failed", Dead => "dead", Cancelled => "cancelled", Pruned => "pruned",
    Unschedulable => "unschedulable",
});

impl JobState {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Succeeded
                | JobState::Dead
                | JobState::Cancelled
                | JobState::Pruned
                | JobState::Unschedulable
        )
    }
    /// A worker holds the job (its lease must be kept alive).
    pub fn is_held(&self) -> bool {
        matches!(self, JobState::Leased | JobState::Running)
    }
}

/// A unit of work for a worker. `kind` and `payload` are the stored form of a
/// [`JobSpec`] (jobs are made from one, see [`NewJob`]); workers decode it
/// again with [`Job::spec`] because it crossed a store and a queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub experiment_id: Option<ExperimentId>,
    pub trial_number: Option<u64>,
    pub payload: Value,
    pub resource_class: String,
    /// What the job needs on a worker; placement never overcommits it.
    #[serde(default)]
    pub resources: ResourceRequest,
    /// The GPUs the current (or last) attempt was given on its worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<GpuAssignment>,
    pub priority: u8,
    pub state: JobState,
    /// Number of the current (or last) attempt; 0 before the first claim.
    pub attempt: u32,
    pub max_attempts: u32,
    pub timeout_secs: u64,
    pub lease_owner: Option<WorkerId>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When a running attempt must have finished (started_at + timeout).
    pub deadline_at: Option<DateTime<Utc>>,
    pub retry_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub result: Option<Value>,
    /// The attempt whose result is recorded: results are kept once per (job, attempt).
    pub result_attempt: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the current (or last) attempt started running.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency counter; every stored update bumps it.
    pub version: i64,
}

impl Job {
    /// The job's work, decoded from its stored kind and payload.
    pub fn spec(&self) -> crate::Result<JobSpec> {
        JobSpec::from_parts(self.kind, &self.payload)
    }
}

/// Parameters for a new job; the rest of [`Job`] starts from defaults.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub spec: JobSpec,
    pub experiment_id: Option<ExperimentId>,
    pub resource_class: String,
    pub resources: ResourceRequest,
    pub priority: u8,
    pub max_attempts: u32,
    pub timeout_secs: u64,
}

impl NewJob {
    /// The queued job. Fails only if the spec cannot be encoded as JSON
    /// (a non-finite number in it).
    pub fn into_job(self, now: DateTime<Utc>, trial_number: Option<u64>) -> crate::Result<Job> {
        Ok(Job {
            id: JobId::new(),
            kind: self.spec.kind(),
            experiment_id: self.experiment_id,
            trial_number,
            payload: self.spec.to_payload()?,
            resource_class: self.resource_class,
            resources: self.resources,
            gpus: None,
            priority: self.priority,
            state: JobState::Queued,
            attempt: 0,
            max_attempts: self.max_attempts.max(1),
            timeout_secs: self.timeout_secs.max(1),
            lease_owner: None,
            lease_expires_at: None,
            deadline_at: None,
            retry_at: None,
            last_error: None,
            result: None,
            result_attempt: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            version: 0,
        })
    }
}

/// What travels over the queue: a wake-up naming the job. The state store
/// stays the source of truth, so a stale or duplicate message is harmless.
/// Unknown fields are ignored (not refused) so that workers keep taking
/// messages from a newer scheduler during a rolling upgrade.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DispatchMessage {
    pub job_id: JobId,
    pub kind: JobKind,
    pub priority: u8,
    /// The job as stored when the message was published. A worker claims
    /// from this copy with one compare-and-set instead of a read and a
    /// write. Only a hint: a stale copy loses the compare-and-set and the
    /// worker reads the store, which stays the truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Box<Job>>,
}

/// Jobs whose payload encodes larger than this travel without a copy in
/// their message: the saved read is not worth a large message.
const SNAPSHOT_PAYLOAD_LIMIT: usize = 4 * 1024;

impl DispatchMessage {
    /// The wake-up for `job`, which must be the job exactly as stored (a
    /// worker claims from the copy with a compare-and-set on its version).
    pub fn for_job(job: &Job) -> Self {
        let small = serde_json::to_vec(&job.payload)
            .map(|b| b.len() <= SNAPSHOT_PAYLOAD_LIMIT)
            .unwrap_or(false);
        DispatchMessage {
            job_id: job.id,
            kind: job.kind,
            priority: job.priority,
            job: small.then(|| Box::new(job.clone())),
        }
    }

    /// The job copy, if present and really of this message's job.
    pub fn snapshot(&self) -> Option<&Job> {
        self.job.as_deref().filter(|j| j.id == self.job_id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentKind {
    /// The platform trains models on a data set.
    Automl,
    /// The objective runs outside; clients ask for params and tell values.
    AskTell,
}
str_enum!(ExperimentKind { Automl => "automl", AskTell => "ask_tell" });

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentState {
    Running,
    /// Trials are done; the final model is being trained and registered.
    Finalizing,
    Completed,
    Failed,
    Cancelled,
}
str_enum!(ExperimentState {
    Running => "running", Finalizing => "finalizing", Completed => "completed",
    Failed => "failed", Cancelled => "cancelled",
});

impl ExperimentState {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            ExperimentState::Completed | ExperimentState::Failed | ExperimentState::Cancelled
        )
    }

    /// What every state store checks inside `create_trial`'s transaction: a
    /// finished experiment takes no new trials, so a scheduler tick that read
    /// the experiment before a cancel cannot start one after it.
    pub fn check_accepts_trials(&self, id: ExperimentId) -> crate::Result<()> {
        if self.is_terminal() {
            return Err(crate::Error::Conflict(format!(
                "experiment {id} is {self}: it takes no new trials"
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub id: ExperimentId,
    pub name: String,
    pub kind: ExperimentKind,
    /// The validated experiment spec (owned by the scheduler crate).
    pub spec: Value,
    pub state: ExperimentState,
    pub priority: u8,
    pub error: Option<String>,
    pub model_name: Option<String>,
    pub model_version: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The token that created it (absent on records made before tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<crate::security::Actor>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    Running,
    Complete,
    Pruned,
    Failed,
}
str_enum!(TrialState { Running => "running", Complete => "complete", Pruned => "pruned", Failed => "failed" });

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub id: TrialId,
    pub experiment_id: ExperimentId,
    /// Dense per-experiment number, assigned by the store, never reused.
    pub number: u64,
    /// Shared, not owned: the samplers read every finished trial's params on
    /// each ask, and a copy per trial per ask dominated ask time at 10,000
    /// trials. Serialised as the plain map.
    pub params: Arc<serde_json::Map<String, Value>>,
    pub state: TrialState,
    /// The objective value; in a multi-objective experiment, the first
    /// objective's (so ranking by `value` means ranking by the first objective).
    pub value: Option<f64>,
    /// Multi-objective experiments only: one value per objective, in the
    /// experiment's objective order. Records from before multi-objective
    /// experiments read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f64>>,
    /// Shared for the same reason as `params` (pruners read every trial's).
    pub intermediate: Arc<BTreeMap<u32, f64>>,
    pub job_id: Option<JobId>,
    /// Extra results (all metrics, fold values, artifact path).
    pub detail: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Trial {
    /// A new running trial, as every store creates it.
    pub fn new_running(
        experiment_id: ExperimentId,
        number: u64,
        params: serde_json::Map<String, Value>,
        job_id: Option<JobId>,
        now: DateTime<Utc>,
    ) -> Trial {
        Trial {
            id: TrialId::new(),
            experiment_id,
            number,
            params: Arc::new(params),
            state: TrialState::Running,
            value: None,
            values: None,
            intermediate: Arc::default(),
            job_id,
            detail: None,
            created_at: now,
            finished_at: None,
        }
    }
}

impl Trial {
    /// Records an intermediate value of this running trial (the last write
    /// per step wins). A finished trial is a [`crate::Error::Conflict`]: its
    /// record never changes again, which readers of trials rely on.
    pub fn record_intermediate(&mut self, step: u32, value: f64) -> crate::Result<()> {
        if self.state != TrialState::Running {
            return Err(crate::Error::Conflict(format!(
                "trial {} is already {}",
                self.number, self.state
            )));
        }
        Arc::make_mut(&mut self.intermediate).insert(step, value);
        Ok(())
    }

    /// Moves this running trial to `outcome`'s final state; `false`, with
    /// nothing changed, when it had already finished: a final outcome is
    /// recorded exactly once.
    pub fn finish(&mut self, outcome: &TrialOutcome, now: DateTime<Utc>) -> bool {
        if self.state != TrialState::Running {
            return false;
        }
        outcome.apply(self, now);
        true
    }
}

/// How a trial ended, recorded in one write by
/// [`crate::ports::StateStore::finish_trial`], so no reader ever sees a final
/// state without its values.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialOutcome {
    pub state: TrialState,
    pub value: Option<f64>,
    /// One value per objective (multi-objective experiments only).
    pub values: Option<Vec<f64>>,
    pub detail: Option<Value>,
}

impl TrialOutcome {
    /// A single-objective outcome.
    pub fn new(state: TrialState, value: Option<f64>, detail: Option<Value>) -> Self {
        TrialOutcome {
            state,
            value,
            values: None,
            detail,
        }
    }

    /// The same outcome with one value per objective.
    pub fn with_values(mut self, values: Option<Vec<f64>>) -> Self {
        self.values = values;
        self
    }

    /// Writes the outcome onto a running trial.
    pub fn apply(&self, trial: &mut Trial, now: DateTime<Utc>) {
        trial.state = self.state;
        trial.value = self.value;
        trial.values = self.values.clone();
        trial.detail = self.detail.clone();
        trial.finished_at = Some(now);
    }

    /// Whether `trial` already holds exactly this outcome, finished at `now`
    /// (a retried write that had in fact committed).
    pub fn is_recorded_on(&self, trial: &Trial, now: DateTime<Utc>) -> bool {
        trial.state == self.state
            && trial.value == self.value
            && trial.values == self.values
            && trial.detail == self.detail
            && trial.finished_at == Some(now)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: u32,
    /// The train job that produced it: a retried train job finds its version
    /// instead of registering a second one.
    pub job_id: Option<JobId>,
    pub family: String,
    pub experiment_id: Option<ExperimentId>,
    pub artifact_path: String,
    pub sha256: String,
    pub metrics: BTreeMap<String, f64>,
    pub params: serde_json::Map<String, Value>,
    pub target: String,
    pub created_at: DateTime<Utc>,
    /// Whose model it is: the owner of the experiment that trained it, or
    /// whoever registered it (absent on versions registered before tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<crate::security::Actor>,
    /// What the version is, in its registrant's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where it came from, beyond `experiment_id` and `job_id`.
    #[serde(default, skip_serializing_if = "Lineage::is_empty")]
    pub lineage: Lineage,
}

/// Where a model version came from: the trial whose parameters it was
/// fitted with, the exact data (its SHA-256) and the feature set version.
/// Each field is there when it applies; a version registered from outside
/// says what its registrant knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<DatasetId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_set_version: Option<String>,
}

impl Lineage {
    pub fn is_empty(&self) -> bool {
        *self == Lineage::default()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewModelVersion {
    pub name: String,
    /// Chosen by the caller (from `next_model_version`) because the artifact
    /// path contains it; a taken number answers `Conflict`.
    pub version: u32,
    pub job_id: Option<JobId>,
    pub family: String,
    pub experiment_id: Option<ExperimentId>,
    pub artifact_path: String,
    pub sha256: String,
    pub metrics: BTreeMap<String, f64>,
    pub params: serde_json::Map<String, Value>,
    pub target: String,
    /// The owner of the experiment it comes from, or its registrant.
    #[serde(default)]
    pub owner: Option<crate::security::Actor>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub lineage: Lineage,
    /// The version's first tags, stored in the same transaction as the
    /// version (so a registration never lands without them).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub id: DatasetId,
    pub name: String,
    pub artifact_path: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub rows: u64,
    /// Column names, kinds and missing counts as detected on upload.
    pub schema: Value,
    pub created_at: DateTime<Utc>,
    /// The token that uploaded it (absent on records made before tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<crate::security::Actor>,
}

/// Validates a user-chosen name (model, experiment, data set): it appears in
/// artifact keys and URLs, so it must be a safe path segment.
/// The longest label a user gives (a column, a parameter, an objective).
pub const MAX_LABEL: usize = 256;

/// Validates a user-given label that the platform stores and shows again (a
/// CSV column, a search-space parameter, a target): 1 to [`MAX_LABEL`] bytes
/// without control characters (NUL, newlines, escapes), which would break
/// logs, CSV output and terminals. The message names the field and quotes
/// at most its first 64 characters, escaped.
pub fn check_label(what: &str, label: &str) -> crate::Result<()> {
    let why = if label.is_empty() {
        "must not be empty"
    } else if label.len() > MAX_LABEL {
        "is longer than 256 bytes"
    } else if label.chars().any(char::is_control) {
        "must not contain control characters (NUL, tab, newline, escape)"
    } else {
        return Ok(());
    };
    let shown: String = label.chars().take(64).collect();
    let more = if shown.len() < label.len() { "…" } else { "" };
    Err(crate::Error::Invalid(format!(
        "{what} {:?}{more} {why}",
        shown
    )))
}

/// What [`validate_name`] accepts, as a regular expression (for the
/// OpenAPI document).
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$";

pub fn validate_name(what: &str, name: &str) -> crate::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(crate::Error::Invalid(format!(
            "{what} '{}' must be 1-100 characters of [A-Za-z0-9-_.] and not start with '.'",
            crate::error::excerpt(name, 100)
        )))
    }
}

impl NewModelVersion {
    /// The version as registered at `now`.
    pub fn into_version(self, now: DateTime<Utc>) -> ModelVersion {
        ModelVersion {
            name: self.name,
            version: self.version,
            job_id: self.job_id,
            family: self.family,
            experiment_id: self.experiment_id,
            artifact_path: self.artifact_path,
            sha256: self.sha256,
            metrics: self.metrics,
            params: self.params,
            target: self.target,
            created_at: now,
            owner: self.owner,
            description: self.description,
            lineage: self.lineage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_with_a_control_character_is_refused_naming_the_field() {
        assert!(check_label("column", "gc content (%)").is_ok());
        assert!(check_label("column", "Qualität").is_ok());
        for bad in ["", "a\0b", "a\nb", "\u{1b}[31m", &"x".repeat(MAX_LABEL + 1)] {
            let err = check_label("column", bad).unwrap_err();
            assert!(err.to_string().starts_with("column "), "{err}");
            assert!(
                err.to_string().len() < 200,
                "the message stays short: {err}"
            );
        }
    }

    #[test]
    fn the_name_pattern_accepts_exactly_what_validate_name_accepts() {
        let re = regex::Regex::new(NAME_PATTERN).unwrap();
        let long = "a".repeat(100);
        let too_long = "a".repeat(101);
        for name in [
            "a", "A-b_c.1", "-x", "_x", ".x", "", "a b", "a/b", "é", "a\0b", "x.", &long, &too_long,
        ] {
            assert_eq!(
                re.is_match(name),
                validate_name("name", name).is_ok(),
                "{name:?}: the pattern and validate_name disagree"
            );
        }
    }

    #[test]
    fn a_finished_trial_takes_no_more_values_and_keeps_its_first_outcome() {
        let now = Utc::now();
        let mut t = Trial::new_running(ExperimentId::new(), 3, Default::default(), None, now);
        t.record_intermediate(1, 0.5).unwrap();
        t.record_intermediate(1, 0.25).unwrap();
        assert_eq!(
            t.intermediate.get(&1),
            Some(&0.25),
            "the last write per step wins"
        );
        assert!(t.finish(
            &TrialOutcome::new(TrialState::Complete, Some(0.1), None),
            now
        ));
        let pruned = TrialOutcome::new(TrialState::Pruned, Some(0.9), None);
        assert!(!t.finish(&pruned, now));
        assert_eq!((t.state, t.value), (TrialState::Complete, Some(0.1)));
        let err = t.record_intermediate(2, 0.3).unwrap_err();
        assert_eq!(
            err,
            crate::Error::Conflict("trial 3 is already complete".into())
        );
        assert_eq!(t.intermediate.len(), 1);
    }

    #[test]
    fn enums_round_trip_through_str_and_serde() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), *s);
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                Value::String(s.to_string())
            );
        }
        assert!("bogus".parse::<JobKind>().is_err());
    }

    #[test]
    fn trials_stored_before_multi_objective_read_without_values() {
        let mut t =
            Trial::new_running(ExperimentId::new(), 0, Default::default(), None, Utc::now());
        let mut body = serde_json::to_value(&t).unwrap();
        assert!(
            body.get("values").is_none(),
            "single-objective bodies stay as they were"
        );
        body.as_object_mut().unwrap().remove("values");
        let back: Trial = serde_json::from_value(body).unwrap();
        assert_eq!(back.values, None);
        TrialOutcome::new(TrialState::Complete, Some(1.0), None)
            .with_values(Some(vec![1.0, 2.0]))
            .apply(&mut t, Utc::now());
        let back: Trial = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back.values, Some(vec![1.0, 2.0]));
    }

    #[test]
    fn names_are_safe_path_segments() {
        assert!(validate_name("model", "sample-quality_v2").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "with space"] {
            assert!(validate_name("model", bad).is_err(), "{bad}");
        }
    }
}
