//! Configuration: one options struct per component, layered as defaults <
//! `tracseq.toml` < `TRACSEQ_*` environment < command-line flags.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

mod alerts;
mod serving;
pub use alerts::{AlertsConfig, Webhook};
pub use serving::ServingConfig;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where embedded mode keeps `state.db` and `artifacts/`.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub scheduler: SchedulerConfig,
    pub worker: WorkerConfig,
    pub limits: LimitsConfig,
    /// Artifacts at rest: sealed with AES-256-GCM under a key-encryption key.
    pub encryption: EncryptionConfig,
    /// Where the distributed roles (`api`, `scheduler`, `worker`) find the
    /// shared engines. Also set by `DATABASE_URL`, `AMQP_URL`,
    /// `ARTIFACT_URL`, `S3_ENDPOINT` and `AWS_REGION`.
    pub distributed: DistributedConfig,
    /// What deploy jobs render for the docker, kubernetes and sagemaker targets.
    pub deploy: DeployConfig,
    /// The prediction log (and what else `/predict` does beside answering).
    pub serving: ServingConfig,
    /// The monitor (drift, error rates) and where alerts go.
    pub alerts: AlertsConfig,
}

/// The deploy targets' settings. Nothing here is a credential: rendered
/// files are never applied by the platform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeployConfig {
    /// The image a model's serving image builds on: the platform's own
    /// (ops/Dockerfile), which has `tracseq-ml serve`.
    pub image: String,
    /// Where serving images are pushed, e.g. `registry.lab.example:5000/ml`
    /// (empty: image names without a registry).
    pub registry: String,
    /// The IAM role SageMaker assumes for the endpoint (empty: the rendered
    /// bodies carry a stand-in and the deployment's note says to set this).
    pub sagemaker_role_arn: String,
}

impl Default for DeployConfig {
    fn default() -> Self {
        DeployConfig {
            image: format!("tracseq-ml:{}", env!("CARGO_PKG_VERSION")),
            registry: String::new(),
            sagemaker_role_arn: String::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributedConfig {
    /// PostgreSQL, e.g. `postgres://tracseq@db:5432/tracseq`.
    pub database_url: String,
    /// Pooled connections per process.
    pub database_max_connections: u32,
    /// Schema holding the tables (empty: the server's default, `public`).
    pub database_schema: String,
    /// RabbitMQ, e.g. `amqp://guest:guest@mq:5672/%2f`.
    pub amqp_url: String,
    /// Prefix of the exchanges and queues (`<prefix>.jobs.cpu`, ...).
    pub amqp_prefix: String,
    /// `s3://bucket/prefix`, or a directory shared by every host.
    pub artifact_url: String,
    /// S3-compatible endpoint (MinIO, Ceph...); empty for AWS itself.
    pub s3_endpoint: String,
    pub s3_region: String,
}

/// Where the key-encryption keys come from and what may be read without
/// one. The keys themselves are never part of the configuration (which is
/// printed and logged): they live in `key_file` or in `TRACSEQ_KEK`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// A file of key-encryption keys, one per line, the first wrapping new
    /// objects (`tracseq-ml keys generate` writes one). Unset: the keys in
    /// `TRACSEQ_KEK`, else (embedded mode) `<data_dir>/keys/kek`, created
    /// on first start.
    pub key_file: Option<PathBuf>,
    /// Refuse to read an artifact stored without encryption (after
    /// `tracseq-ml keys migrate` has sealed an older store).
    pub require: bool,
    /// Store new artifacts in plain text. Distributed roles refuse to start
    /// without a key unless this is set.
    pub disabled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub host: IpAddr,
    pub port: u16,
    /// Largest accepted request body (data set uploads included).
    pub max_body_bytes: u64,
    /// Most records in one `/predict` or `/batch_predict` body.
    pub max_predict_records: usize,
    /// How long an api process trusts a token it found active before
    /// asking the store again, in ms; a revocation made through another
    /// replica takes effect here within this time. 0 asks on every request.
    pub token_cache_ms: u64,
    /// How often an api process reads which version each model's live
    /// `platform` deployment names, in ms; a deploy or rollback takes
    /// traffic on every replica within this time (plus the artifact's load).
    pub deployment_poll_ms: u64,
    /// PEM certificate chain: with `tls_key`, the api serves HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How often the dispatch loop wakes up when nothing notifies it.
    pub tick_ms: u64,
    /// A job still queued this long after its last wake-up message is
    /// published again (a message can be lost with a broker; duplicates are
    /// harmless, the store decides who runs a job).
    pub republish_secs: u64,
    /// A queued job that no live worker could ever hold (too many GPUs, too
    /// much memory) for this long is marked `unschedulable` with the reason.
    /// The wait lets a fleet that is starting up register first.
    pub unschedulable_secs: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Workers started inside `tracseq-ml up`.
    pub count: usize,
    /// Jobs one worker runs at once.
    pub slots: u16,
    /// A job's lease length; a worker that stops heartbeating loses the job after it.
    pub lease_secs: u64,
    /// How often a worker renews its leases (well under `lease_secs`).
    pub heartbeat_ms: u64,
    /// Queues this worker consumes: `auto` (`gpu` and `cpu` on a host with
    /// GPUs, `cpu` elsewhere), or a comma-separated list such as `gpu,cpu`.
    pub resource_class: String,
    /// The GPUs to offer instead of asking NVML, `index:name:memory_mb`
    /// comma-separated (e.g. `0:A100:81920,1:A100:81920`), or `none`.
    /// Unset: NVML where a driver exists, else no GPU.
    pub gpus: Option<String>,
}

impl WorkerConfig {
    /// The configured queues; empty means automatic.
    pub fn classes(&self) -> Vec<String> {
        if self.resource_class.trim() == "auto" {
            return Vec::new();
        }
        self.resource_class
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub dataset_max_bytes: usize,
    pub dataset_max_rows: usize,
    pub dataset_max_columns: usize,
    pub max_trials: u64,
    pub max_parallelism: u32,
    pub max_budget_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(".tracseq"),
            api: ApiConfig::default(),
            scheduler: SchedulerConfig::default(),
            worker: WorkerConfig::default(),
            limits: LimitsConfig::default(),
            encryption: EncryptionConfig::default(),
            distributed: DistributedConfig::default(),
            deploy: DeployConfig::default(),
            serving: ServingConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

impl Default for DistributedConfig {
    fn default() -> Self {
        DistributedConfig {
            database_url: String::new(),
            database_max_connections: 10,
            database_schema: String::new(),
            amqp_url: String::new(),
            amqp_prefix: "tracseq".into(),
            artifact_url: String::new(),
            s3_endpoint: String::new(),
            s3_region: String::new(),
        }
    }
}

/// The ecosystem's own variable names, read before `TRACSEQ_*` (which wins).
const ECOSYSTEM_ENV: &[(&str, &str)] = &[
    ("DATABASE_URL", "TRACSEQ_DISTRIBUTED_DATABASE_URL"),
    ("AMQP_URL", "TRACSEQ_DISTRIBUTED_AMQP_URL"),
    ("ARTIFACT_URL", "TRACSEQ_DISTRIBUTED_ARTIFACT_URL"),
    ("S3_ENDPOINT", "TRACSEQ_DISTRIBUTED_S3_ENDPOINT"),
    ("AWS_REGION", "TRACSEQ_DISTRIBUTED_S3_REGION"),
    ("REDIS_URL", "TRACSEQ_SERVING_REDIS_URL"),
];

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8094,
            max_body_bytes: 64 * 1024 * 1024,
            max_predict_records: 10_000,
            token_cache_ms: 1_000,
            deployment_poll_ms: 500,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            tick_ms: 250,
            republish_secs: 30,
            unschedulable_secs: 30,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            count: 2,
            slots: 1,
            lease_secs: 30,
            heartbeat_ms: 5_000,
            resource_class: "auto".into(),
            gpus: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            dataset_max_bytes: 64 * 1024 * 1024,
            dataset_max_rows: 1_000_000,
            dataset_max_columns: 1_000,
            max_trials: 10_000,
            max_parallelism: 64,
            max_budget_seconds: 7 * 24 * 3600,
        }
    }
}

impl Config {
    /// Defaults, then the file (if given, or `tracseq.toml` if present), then `TRACSEQ_*`.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut value = toml::Value::try_from(Config::default())
            .map_err(|e| Error::Internal(format!("default config: {e}")))?;
        let default_file = Path::new("tracseq.toml");
        let file = match file {
            Some(f) => Some(f),
            None if default_file.exists() => Some(default_file),
            None => None,
        };
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Invalid(format!("cannot read config {}: {e}", path.display()))
            })?;
            let overlay: toml::Value = toml::from_str(&text)
                .map_err(|e| Error::Invalid(format!("config {}: {e}", path.display())))?;
            merge(&mut value, overlay);
        }
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let ecosystem = ECOSYSTEM_ENV.iter().filter_map(|(from, to)| {
            let v = vars.iter().find(|(k, _)| k == from)?;
            Some((to.to_string(), v.1.clone()))
        });
        apply_env(&mut value, ecosystem.chain(vars.iter().cloned()))?;
        let cfg: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| Error::Invalid(format!("config: {}", e.message())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(Error::Invalid(format!("config key '{key}': {why}")));
        if self.worker.slots == 0 {
            return bad("worker.slots", "must be at least 1");
        }
        if self.worker.lease_secs < 2 {
            return bad("worker.lease_secs", "must be at least 2");
        }
        if self.worker.heartbeat_ms == 0
            || self.worker.heartbeat_ms >= self.worker.lease_secs * 1000
        {
            return bad(
                "worker.heartbeat_ms",
                "must be above 0 and below worker.lease_secs",
            );
        }
        if self.scheduler.tick_ms == 0 {
            return bad("scheduler.tick_ms", "must be above 0");
        }
        if self.scheduler.backoff_base_ms > self.scheduler.backoff_max_ms {
            return bad(
                "scheduler.backoff_base_ms",
                "must not exceed scheduler.backoff_max_ms",
            );
        }
        if self.limits.max_parallelism == 0 || self.limits.max_trials == 0 {
            return bad("limits", "max_parallelism and max_trials must be above 0");
        }
        let plain = |v: &str| !v.chars().any(|c| c.is_whitespace() || c.is_control());
        if self.deploy.image.is_empty() || !plain(&self.deploy.image) {
            return bad("deploy.image", "must be an image reference without spaces");
        }
        if !plain(&self.deploy.registry) {
            return bad(
                "deploy.registry",
                "must be a registry address without spaces",
            );
        }
        let role = &self.deploy.sagemaker_role_arn;
        let role_ok = role.starts_with("arn:aws") && role.contains(":role/") && plain(role);
        if !role.is_empty() && !role_ok {
            return bad(
                "deploy.sagemaker_role_arn",
                "must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
            );
        }
        if self.api.tls_cert.is_some() != self.api.tls_key.is_some() {
            return bad("api.tls_cert", "needs api.tls_key, and the other way round");
        }
        if self.api.token_cache_ms > 60_000 {
            return bad(
                "api.token_cache_ms",
                "must be at most 60000: a revoked token would stay usable that long",
            );
        }
        if !(50..=60_000).contains(&self.api.deployment_poll_ms) {
            return bad(
                "api.deployment_poll_ms",
                "must be 50 to 60000: how long a deploy may take to reach every replica",
            );
        }
        self.serving.validate()?;
        self.alerts.validate()?;
        if self.encryption.disabled && self.encryption.require {
            return bad(
                "encryption.require",
                "cannot be set together with encryption.disabled",
            );
        }
        if self.encryption.disabled && self.encryption.key_file.is_some() {
            return bad(
                "encryption.key_file",
                "is set but encryption.disabled turns encryption off; drop one of them",
            );
        }
        if self.distributed.database_max_connections == 0 {
            return bad("distributed.database_max_connections", "must be at least 1");
        }
        let classes = self.worker.classes();
        if classes.is_empty() && self.worker.resource_class.trim() != "auto" {
            return bad(
                "worker.resource_class",
                "names no queue; use auto or e.g. gpu,cpu",
            );
        }
        for class in &classes {
            crate::types::validate_name("worker.resource_class", class)?;
        }
        Ok(())
    }

    /// The distributed engines, checked for presence: a role cannot start
    /// without knowing where the shared state, queue and artifacts are.
    pub fn require_distributed(&self) -> Result<&DistributedConfig> {
        let d = &self.distributed;
        for (value, key, env) in [
            (&d.database_url, "distributed.database_url", "DATABASE_URL"),
            (&d.amqp_url, "distributed.amqp_url", "AMQP_URL"),
            (&d.artifact_url, "distributed.artifact_url", "ARTIFACT_URL"),
        ] {
            if value.is_empty() {
                return Err(Error::Invalid(format!(
                    "config key '{key}' is not set (set it, or {env})"
                )));
            }
        }
        Ok(d)
    }

    pub fn retry_policy(&self) -> crate::lifecycle::RetryPolicy {
        crate::lifecycle::RetryPolicy {
            backoff_base_ms: self.scheduler.backoff_base_ms,
            backoff_max_ms: self.scheduler.backoff_max_ms,
        }
    }
}

fn merge(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Keys that are absent unless set, so not among the defaults' leaves; each
/// can still be set as `TRACSEQ_<SECTION>_<KEY>`.
const OPTIONAL_KEYS: &[&str] = &[
    "api.tls_cert",
    "api.tls_key",
    "worker.gpus",
    "encryption.key_file",
];

/// Every leaf key `a.b_c` can be set as `TRACSEQ_A_B_C`. The variable's text
/// is read as a TOML value when it parses as one of the key's type, else as a string.
fn apply_env(value: &mut toml::Value, vars: impl Iterator<Item = (String, String)>) -> Result<()> {
    let mut leaves = Vec::new();
    collect_leaves(value, String::new(), &mut leaves);
    leaves.extend(OPTIONAL_KEYS.iter().map(|k| k.to_string()));
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix("TRACSEQ_") else {
            continue;
        };
        let Some(key) = leaves
            .iter()
            .find(|k| k.replace('.', "_").eq_ignore_ascii_case(rest))
        else {
            continue;
        };
        let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw.clone()));
        if OPTIONAL_KEYS.contains(&key.as_str()) {
            // Absent by default (no value in the defaults to take a type
            // from): these are texts (paths, lists).
            let (table, leaf) = key.split_once('.').expect("optional keys are section.key");
            if let Some(section) = value.get_mut(table).and_then(toml::Value::as_table_mut) {
                section.insert(leaf.to_string(), toml::Value::String(raw));
            }
            continue;
        }
        let mut slot = &mut *value;
        for part in key.split('.') {
            slot = slot
                .get_mut(part)
                .ok_or_else(|| Error::Internal(format!("config key {key} vanished")))?;
        }
        *slot = match (&*slot, parsed) {
            (toml::Value::String(_), _) => toml::Value::String(raw),
            (toml::Value::Float(_), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
            (current, parsed)
                if std::mem::discriminant(current) == std::mem::discriminant(&parsed) =>
            {
                parsed
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "environment {name}: '{raw}' is not a valid value for config key '{key}'"
                )))
            }
        };
    }
    Ok(())
}

fn collect_leaves(v: &toml::Value, prefix: String, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, child) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect_leaves(child, key, out);
            }
        }
        _ => out.push(prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Config> {
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        apply_env(
            &mut v,
            pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())),
        )?;
        v.try_into()
            .map_err(|e: toml::de::Error| Error::Invalid(e.message().to_string()))
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let c = env(&[("TRACSEQ_API_PORT", "9000"), ("TRACSEQ_DATA_DIR", "/tmp/x")]).unwrap();
        assert_eq!(c.api.port, 9000);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn encryption_is_configured_by_environment_and_contradictions_are_refused() {
        let c = env(&[
            ("TRACSEQ_ENCRYPTION_KEY_FILE", "/etc/tracseq/kek"),
            ("TRACSEQ_ENCRYPTION_REQUIRE", "true"),
        ])
        .unwrap();
        assert_eq!(
            c.encryption.key_file,
            Some(PathBuf::from("/etc/tracseq/kek"))
        );
        assert!(c.encryption.require);
        let mut both = Config::default();
        both.encryption.disabled = true;
        both.encryption.require = true;
        let err = both.validate().unwrap_err().to_string();
        assert!(err.contains("encryption.require"), "{err}");
        both.encryption.require = false;
        both.encryption.key_file = Some("/k".into());
        let err = both.validate().unwrap_err().to_string();
        assert!(err.contains("encryption.key_file"), "{err}");
    }

    #[test]
    fn ecosystem_variables_fill_the_distributed_section() {
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        let vars = [(
            "TRACSEQ_DISTRIBUTED_DATABASE_URL".to_string(),
            "postgres://db/x".to_string(),
        )];
        apply_env(&mut v, vars.into_iter()).unwrap();
        let c: Config = v.try_into().unwrap();
        assert_eq!(c.distributed.database_url, "postgres://db/x");
        let err = Config::default()
            .require_distributed()
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn a_bad_value_names_the_key() {
        let tls = env(&[
            ("TRACSEQ_API_TLS_CERT", "/etc/tracseq/cert.pem"),
            ("TRACSEQ_API_TLS_KEY", "/etc/tracseq/key.pem"),
            ("TRACSEQ_WORKER_GPUS", "none"),
        ])
        .unwrap();
        assert_eq!(
            tls.api.tls_cert.as_deref(),
            Some(Path::new("/etc/tracseq/cert.pem"))
        );
        assert_eq!(
            tls.api.tls_key.as_deref(),
            Some(Path::new("/etc/tracseq/key.pem"))
        );
        assert_eq!(tls.worker.gpus.as_deref(), Some("none"));
        let err = env(&[("TRACSEQ_API_PORT", "lots")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        type Break = fn(&mut Config);
        let cases: [(Break, &str); 2] = [
            (|c| c.worker.slots = 0, "worker.slots"),
            (|c| c.worker.heartbeat_ms = 60_000, "worker.heartbeat_ms"),
        ];
        for (break_it, key) in cases {
            let mut c = Config::default();
            break_it(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn file_layer_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[api]\nprot = 1\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
        std::fs::write(&path, "[api]\nport = 9100\n[worker]\ncount = 3\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!((c.api.port, c.worker.count), (9100, 3));
    }
}
