//! Distributed `StateStore` on PostgreSQL through sqlx: pooled, migrated on
//! demand, safe under concurrent schedulers and workers.
//!
//! Concurrency rests on the database, never on in-process locks, because
//! several processes share one database:
//! - `update_job` is a single `UPDATE … WHERE id = $1 AND version = $2`.
//!   Under READ COMMITTED a second writer waits on the row lock and then
//!   re-checks the `WHERE` against the committed row, so exactly one
//!   compare-and-set wins and every claim race has one winner.
//! - `create_trial` locks the experiment row (`FOR UPDATE`) before reading
//!   `MAX(number)`, so creators of one experiment queue behind each other and
//!   numbers stay dense; the primary key `(experiment_id, number)` backs it up.
//! - Trial updates read the trial `FOR UPDATE`, so a final outcome is
//!   recorded once and concurrent intermediate values do not overwrite each
//!   other.
//! - Model registration leans on the unique constraints (`(name, version)`,
//!   `job_id`) with `ON CONFLICT DO NOTHING`, then re-reads to tell "my job
//!   already registered" from "that number is taken".
//!
//! Every call is retried a few times with a short backoff when it fails with
//! [`Error::Unavailable`] (I/O errors, pool timeouts, the server shutting a
//! connection down). The pool tests each connection before handing it out,
//! so after a server restart the dead connections are replaced. A failure
//! can be ambiguous — the server may have committed before the connection
//! died — so each write checks on a retry whether its own earlier attempt
//! already landed, and answers as if that attempt had succeeded.

use crate::error::{db_error, model_not_found, trial_not_found, version_taken};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Executor, Postgres, Row, Transaction};
use std::collections::BTreeMap;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;
use tracseq_core::fleet::WorkerRecord;
use tracseq_core::ids::{DatasetId, ExperimentId, JobId};
use tracseq_core::ports::{JobFilter, StateStore};
use tracseq_core::types::{
    DatasetRecord, Experiment, ExperimentState, Job, ModelVersion, NewModelVersion, Trial,
    TrialOutcome,
};
use tracseq_core::{Error, Result};

mod alerts;
mod paging;
mod predictions;
mod registry;
mod schema;
mod security;
mod state_store;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// How a [`PostgresStateStore`] connects and retries.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Upper bound on pooled connections per process. Size it to the
    /// process's concurrency (api request handlers, scheduler loop, worker
    /// slots) and keep the fleet's total under the server's `max_connections`.
    pub max_connections: u32,
    /// Schema that holds the tables (becomes the connection's `search_path`).
    /// `None` uses the server's default search path (normally `public`).
    /// Must be a plain identifier: letters, digits and `_`, at most 63 bytes.
    pub schema: Option<String>,
    /// Shown in `pg_stat_activity`, so operators can tell the components apart.
    pub application_name: String,
    /// How long a call waits for a free (or freshly opened) connection before
    /// that attempt fails as unavailable.
    pub acquire_timeout: Duration,
    /// Extra attempts for a call that failed as unavailable (0 = no retries).
    pub max_retries: u32,
    /// Backoff before the first retry; doubled per retry (capped at 2 s) plus
    /// up to the same again as jitter, so a fleet does not retry in lockstep.
    pub retry_backoff: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 10,
            schema: None,
            application_name: "tracseq-ml".into(),
            acquire_timeout: Duration::from_secs(5),
            max_retries: 3,
            retry_backoff: Duration::from_millis(50),
        }
    }
}

/// The `StateStore` of the distributed deployment. Cheap to clone: clones
/// share one pool.
#[derive(Clone, Debug)]
pub struct PostgresStateStore {
    pool: PgPool,
    schema: Option<String>,
    max_retries: u32,
    retry_backoff: Duration,
}

/// What one attempt of an operation can fail with: a raw database error
/// (classified once, in [`classify`], so the retry loop sees PostgreSQL's
/// codes) or an already meaningful domain error.
#[derive(Debug)]
enum Fail {
    Db(sqlx::Error),
    Domain(Error),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Domain(e)
    }
}

impl From<serde_json::Error> for Fail {
    fn from(e: serde_json::Error) -> Self {
        Fail::Domain(e.into())
    }
}

type Attempt<T> = std::result::Result<T, Fail>;

/// Maps a failure to the core error. On top of the generic sqlx mapping this
/// knows PostgreSQL's SQLSTATEs for a connection the server closed or could
/// not open (class 08, 57P01-57P03, 53300): those surface as database errors,
/// not I/O errors, yet retrying on a fresh connection is exactly right.
fn classify(f: Fail) -> Error {
    let e = match f {
        Fail::Domain(e) => return e,
        Fail::Db(e) => e,
    };
    if let sqlx::Error::Database(db) = &e {
        let code = db.code();
        let code = code.as_deref().unwrap_or("");
        if code.starts_with("08")
            || matches!(
                code,
                "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
            )
        {
            return Error::Unavailable(format!("postgres: {db}"));
        }
        // JSONB rejects `\u0000` in strings; that is bad input, not a bug.
        if code == "22P05" {
            return Error::Invalid(format!("record cannot be stored: {db}"));
        }
    }
    if let sqlx::Error::ColumnDecode { .. } = &e {
        return Error::Internal(format!("corrupt record: {e}"));
    }
    db_error(e)
}

fn is_unique_violation(f: &Fail) -> bool {
    matches!(f, Fail::Db(sqlx::Error::Database(db)) if db.is_unique_violation())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn opt_ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(ms)
}

fn body<T: DeserializeOwned>(row: &PgRow) -> Attempt<T> {
    Ok(row.try_get::<Json<T>, _>("body")?.0)
}

fn bodies<T: DeserializeOwned>(rows: &[PgRow]) -> Attempt<Vec<T>> {
    rows.iter().map(body).collect()
}

fn json<T: Serialize>(v: &T) -> Json<&T> {
    Json(v)
}

/// A schema name goes into `search_path` and `CREATE SCHEMA` unquoted, so
/// only plain identifiers are accepted.
fn validate_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "database schema '{schema}' must be letters, digits and '_' (at most 63), not starting with a digit"
        )))
    }
}

impl PostgresStateStore {
    /// Opens a pool to `url` (`postgres://user:pass@host:port/db?...`). Does
    /// not migrate: call [`Self::migrate`] (the `migrate` command) or
    /// [`Self::check_schema`] (every other component, at start).
    ///
    /// Fails with `Invalid` for a bad URL or schema name and `Unavailable`
    /// when the server cannot be reached within the retries.
    pub async fn connect(url: &str, opts: PgOptions) -> Result<Self> {
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Invalid(format!("invalid database URL: {e}")))?
            .application_name(&opts.application_name);
        if let Some(schema) = &opts.schema {
            validate_schema(schema)?;
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let pool_opts = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            // Pinging before use is what lets the pool survive a server
            // restart or killed backends: dead connections are dropped and
            // replaced instead of failing the caller's query.
            .test_before_acquire(true)
            // Bound a connection's life so one that went bad silently (or
            // pins server memory) is eventually recycled.
            .max_lifetime(Duration::from_secs(30 * 60))
            .idle_timeout(Duration::from_secs(10 * 60));
        let store = PostgresStateStore {
            // Lazy: the first call opens connections, through the same retry
            // loop as everything else; the ping below proves reachability.
            pool: pool_opts.connect_lazy_with(connect),
            schema: opts.schema,
            max_retries: opts.max_retries,
            retry_backoff: opts.retry_backoff,
        };
        store
            .run(|_| async {
                sqlx::query("SELECT 1").execute(&store.pool).await?;
                Ok(())
            })
            .await?;
        Ok(store)
    }

    /// The pool, for health checks and metrics (size, idle connections).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `op` and retries it while it fails as unavailable. `op` gets the
    /// attempt number (0 first) so writes can check on a retry whether their
    /// previous, ambiguously failed attempt already committed.
    async fn run<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut attempt = 0;
        loop {
            match op(attempt).await.map_err(classify) {
                Err(Error::Unavailable(msg)) if attempt < self.max_retries => {
                    let base = self.retry_backoff.saturating_mul(1 << attempt.min(6));
                    let base = base.min(Duration::from_secs(2));
                    let jitter_ms = base.as_millis().max(1) as u64;
                    let wait =
                        base + Duration::from_millis(rand::thread_rng().gen_range(0..jitter_ms));
                    tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, error = %msg,
                        "postgres unavailable; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn fetch_body<T: DeserializeOwned>(&self, sql: &str, key: String) -> Attempt<Option<T>> {
        let row = sqlx::query(sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(body).transpose()
    }

    /// The record `id` of `table` (one of this module's fixed table names),
    /// or "`what` `id` not found".
    async fn by_id<T: DeserializeOwned>(
        &self,
        table: &'static str,
        what: &str,
        id: impl std::fmt::Display,
    ) -> Attempt<T> {
        let sql = format!("SELECT body FROM {table} WHERE id = $1::uuid");
        self.fetch_body(&sql, id.to_string())
            .await?
            .ok_or_else(|| Error::not_found(format!("{what} {id}")).into())
    }

    async fn job_once(&self, id: JobId) -> Attempt<Job> {
        self.by_id("jobs", "job", id).await
    }

    async fn experiment_once(&self, id: ExperimentId) -> Attempt<Experiment> {
        self.by_id("experiments", "experiment", id).await
    }

    async fn dataset_once(&self, id: DatasetId) -> Attempt<DatasetRecord> {
        self.by_id("datasets", "dataset", id).await
    }

    async fn version_by_job(&self, job: JobId) -> Attempt<Option<ModelVersion>> {
        self.fetch_body(
            "SELECT body FROM model_versions WHERE job_id = $1::uuid",
            job.to_string(),
        )
        .await
    }

    async fn register_once(
        &self,
        mv: &ModelVersion,
        tags: &BTreeMap<String, String>,
        attempt: u32,
    ) -> Attempt<ModelVersion> {
        if let Some(job) = mv.job_id {
            if let Some(existing) = self.version_by_job(job).await? {
                return Ok(existing);
            }
        }
        // DO NOTHING (rather than an error) waits for a concurrent inserter
        // of the same key to finish and then reports zero rows, so the
        // re-reads below see the winner's committed row.
        // The version and its first tags in one transaction. (A train job's
        // version has no tags, so the worker's role needs no grant on them.)
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO model_versions (name, version, job_id, created_at, body)
             VALUES ($1, $2, $3::uuid, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(&mv.name)
        .bind(i64::from(mv.version))
        .bind(mv.job_id.map(|j| j.to_string()))
        .bind(ms(mv.created_at))
        .bind(json(mv))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            if !tags.is_empty() {
                sqlx::query("INSERT INTO model_tags (name, version, body) VALUES ($1, $2, $3)")
                    .bind(&mv.name)
                    .bind(i64::from(mv.version))
                    .bind(json(tags))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            return Ok(mv.clone());
        }
        tx.rollback().await?;
        if let Some(job) = mv.job_id {
            // The same train job registered concurrently: one version for it.
            if let Some(existing) = self.version_by_job(job).await? {
                return Ok(existing);
            }
        }
        if attempt > 0 {
            let stored: Option<ModelVersion> =
                self.fetch_model_version(&mv.name, Some(mv.version)).await?;
            if stored.as_ref() == Some(mv) {
                return Ok(mv.clone());
            }
        }
        Err(version_taken(&mv.name, mv.version).into())
    }

    async fn fetch_model_version(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Attempt<Option<ModelVersion>> {
        let row =
            match version {
                Some(v) => {
                    sqlx::query("SELECT body FROM model_versions WHERE name = $1 AND version = $2")
                        .bind(name)
                        .bind(i64::from(v))
                        .fetch_optional(&self.pool)
                        .await?
                }
                None => sqlx::query(
                    "SELECT body FROM model_versions WHERE name = $1 ORDER BY version DESC LIMIT 1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
            };
        row.as_ref().map(body).transpose()
    }

    async fn create_trial_once(
        &self,
        trial: &Trial,
        job: Option<&Job>,
        attempt: u32,
    ) -> Attempt<Trial> {
        let experiment = trial.experiment_id;
        let mut tx = self.pool.begin().await?;
        // Serialises trial creation per experiment across every process; the
        // lock is released at commit, after the new trial is visible.
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM experiments WHERE id = $1::uuid FOR UPDATE")
                .bind(experiment.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(state) = state else {
            return Err(Error::not_found(format!("experiment {experiment}")).into());
        };
        if attempt > 0 {
            // An earlier attempt may have committed before its connection
            // died; its trial carries our (fixed) trial id.
            let earlier = sqlx::query(
                "SELECT body FROM trials WHERE experiment_id = $1::uuid AND body->>'id' = $2",
            )
            .bind(experiment.to_string())
            .bind(trial.id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = earlier {
                return body(&row);
            }
        }
        state
            .parse::<ExperimentState>()?
            .check_accepts_trials(experiment)?;
        let number: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE experiment_id = $1::uuid",
        )
        .bind(experiment.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let mut trial = trial.clone();
        trial.number = u64::try_from(number)
            .map_err(|_| Error::Internal(format!("negative trial number {number}")))?;
        if let Some(job) = job {
            let mut job = job.clone();
            job.trial_number = Some(trial.number);
            insert_job_on(&mut *tx, &job).await?;
        }
        sqlx::query(
            "INSERT INTO trials (experiment_id, number, state, job_id, body)
             VALUES ($1::uuid, $2, $3, $4::uuid, $5)",
        )
        .bind(experiment.to_string())
        .bind(number)
        .bind(trial.state.as_str())
        .bind(trial.job_id.map(|j| j.to_string()))
        .bind(json(&trial))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(trial)
    }

    /// Inserts a record; on a retry, a duplicate equal to `expected` means
    /// our earlier attempt committed, so it counts as success.
    async fn insert_once<T, F, Fut>(
        &self,
        attempt: u32,
        insert: Fut,
        stored: F,
        expected: &T,
    ) -> Attempt<()>
    where
        T: PartialEq,
        Fut: Future<Output = Attempt<()>>,
        F: Future<Output = Attempt<T>>,
    {
        match insert.await {
            Err(f) if attempt > 0 && is_unique_violation(&f) => {
                if stored.await? == *expected {
                    Ok(())
                } else {
                    Err(f)
                }
            }
            other => other,
        }
    }
}

async fn insert_job_on<'e, E>(exec: E, job: &Job) -> Attempt<()>
where
    E: Executor<'e, Database = Postgres>,
{
    let trial_number = job
        .trial_number
        .map(i64::try_from)
        .transpose()
        .map_err(|_| Error::Invalid(format!("job {}: trial number out of range", job.id)))?;
    sqlx::query(
        "INSERT INTO jobs (id, kind, experiment_id, trial_number, state, priority, lease_expires_at,
                           deadline_at, retry_at, created_at, version, body)
         VALUES ($1::uuid, $2, $3::uuid, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(job.id.to_string())
    .bind(job.kind.as_str())
    .bind(job.experiment_id.map(|e| e.to_string()))
    .bind(trial_number)
    .bind(job.state.as_str())
    .bind(i32::from(job.priority))
    .bind(opt_ms(job.lease_expires_at))
    .bind(opt_ms(job.deadline_at))
    .bind(opt_ms(job.retry_at))
    .bind(ms(job.created_at))
    .bind(job.version)
    .bind(json(job))
    .execute(exec)
    .await?;
    Ok(())
}

/// Reads a trial and locks its row until the transaction ends, so
/// read-modify-write updates of one trial never interleave.
async fn lock_trial(
    tx: &mut Transaction<'_, Postgres>,
    experiment: ExperimentId,
    number: u64,
) -> Attempt<Trial> {
    let row = sqlx::query(
        "SELECT body FROM trials WHERE experiment_id = $1::uuid AND number = $2 FOR UPDATE",
    )
    .bind(experiment.to_string())
    .bind(trial_number_param(number)?)
    .fetch_optional(&mut **tx)
    .await?;
    match row {
        Some(r) => body(&r),
        None => Err(trial_not_found(experiment, number).into()),
    }
}

async fn write_trial(tx: &mut Transaction<'_, Postgres>, trial: &Trial) -> Attempt<()> {
    sqlx::query(
        "UPDATE trials SET state = $1, body = $2 WHERE experiment_id = $3::uuid AND number = $4",
    )
    .bind(trial.state.as_str())
    .bind(json(trial))
    .bind(trial.experiment_id.to_string())
    .bind(trial_number_param(trial.number)?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Trial numbers are BIGINT; a number beyond it cannot exist.
fn trial_number_param(number: u64) -> Attempt<i64> {
    i64::try_from(number)
        .map_err(|_| Error::Invalid(format!("trial number {number} is out of range")).into())
}
