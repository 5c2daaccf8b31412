//! Embedded `StateStore` on SQLite through sqlx, migrated at start.
//!
//! SQLite allows one writer at a time; instead of letting concurrent writers
//! fail with SQLITE_BUSY, every write goes through a one-connection pool
//! (queued in-process), while reads use a separate pool that WAL lets run
//! beside the writer. The security store writes the same file through its
//! own connection, so a transaction that reads before it writes begins
//! `IMMEDIATE`: it takes the write lock first (waiting up to the busy
//! timeout) instead of failing with SQLITE_BUSY_SNAPSHOT when the other
//! connection commits between its read and its write.

use crate::error::{model_not_found, trial_not_found, version_taken, Classify};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use tracseq_core::fleet::WorkerRecord;
use tracseq_core::ids::{DatasetId, ExperimentId, JobId};
use tracseq_core::paging::Page;
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
mod security;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

pub struct SqliteStateStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn opt_ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(ms)
}

/// The record a row's `body` column holds.
fn body<T: DeserializeOwned>(row: &SqliteRow) -> Result<T> {
    Ok(serde_json::from_str(row.get::<&str, _>("body"))?)
}

/// The records of rows' `body` columns, in row order.
fn bodies<T: DeserializeOwned>(rows: &[SqliteRow]) -> Result<Vec<T>> {
    rows.iter().map(body).collect()
}

impl SqliteStateStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        Self::connect(opts).await
    }

    /// A private in-memory database (tests): one shared-cache connection set.
    pub async fn in_memory() -> Result<Self> {
        let name = format!(
            "file:tracseq-{}?mode=memory&cache=shared",
            uuid::Uuid::new_v4()
        );
        let opts = SqliteConnectOptions::from_str(&name)
            .classify()?
            .foreign_keys(true);
        Self::connect(opts).await
    }

    async fn connect(opts: SqliteConnectOptions) -> Result<Self> {
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .classify()?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| Error::Internal(format!("sqlite migration failed: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await
            .classify()?;
        Ok(SqliteStateStore { writer, reader })
    }

    async fn get_body<T: DeserializeOwned>(&self, sql: &str, key: &str, what: String) -> Result<T> {
        let row = sqlx::query(sql)
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .classify()?;
        match row {
            Some(r) => body(&r),
            None => Err(Error::not_found(what)),
        }
    }
}

async fn insert_job_on<'e, E>(exec: E, job: &Job) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO jobs (id, kind, experiment_id, trial_number, state, priority, lease_expires_at,
                           deadline_at, retry_at, created_at, version, body)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(job.id.to_string())
    .bind(job.kind.as_str())
    .bind(job.experiment_id.map(|e| e.to_string()))
    .bind(job.trial_number.map(|n| n as i64))
    .bind(job.state.as_str())
    .bind(job.priority as i64)
    .bind(opt_ms(job.lease_expires_at))
    .bind(opt_ms(job.deadline_at))
    .bind(opt_ms(job.retry_at))
    .bind(ms(job.created_at))
    .bind(job.version)
    .bind(serde_json::to_string(job)?)
    .execute(exec)
    .await.classify()?;
    Ok(())
}

#[async_trait]
impl StateStore for SqliteStateStore {
    async fn insert_job(&self, job: &Job) -> Result<()> {
        insert_job_on(&self.writer, job).await
    }

    async fn insert_jobs(&self, jobs: &[Job]) -> Result<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.classify()?;
        for job in jobs {
            insert_job_on(&mut *tx, job).await?;
        }
        tx.commit().await.classify()?;
        Ok(())
    }

    async fn get_job(&self, id: JobId) -> Result<Job> {
        self.get_body(
            "SELECT body FROM jobs WHERE id = ?",
            &id.to_string(),
            format!("job {id}"),
        )
        .await
    }

    async fn update_job(&self, job: &Job) -> Result<bool> {
        let mut stored = job.clone();
        stored.version += 1;
        let res = sqlx::query(
            "UPDATE jobs SET state = ?, priority = ?, trial_number = ?, lease_expires_at = ?,
                 deadline_at = ?, retry_at = ?, version = ?, body = ?
             WHERE id = ? AND version = ?",
        )
        .bind(stored.state.as_str())
        .bind(stored.priority as i64)
        .bind(stored.trial_number.map(|n| n as i64))
        .bind(opt_ms(stored.lease_expires_at))
        .bind(opt_ms(stored.deadline_at))
        .bind(opt_ms(stored.retry_at))
        .bind(stored.version)
        .bind(serde_json::to_string(&stored)?)
        .bind(job.id.to_string())
        .bind(job.version)
        .execute(&self.writer)
        .await
        .classify()?;
        if res.rows_affected() == 1 {
            return Ok(true);
        }
        // Distinguish a lost race from a missing job.
        self.get_job(job.id).await?;
        Ok(false)
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let mut sql = String::from("SELECT body FROM jobs WHERE 1 = 1");
        if filter.experiment_id.is_some() {
            sql.push_str(" AND experiment_id = ?");
        }
        if !filter.states.is_empty() {
            let marks = vec!["?"; filter.states.len()].join(", ");
            sql.push_str(&format!(" AND state IN ({marks})"));
        }
        sql.push_str(" ORDER BY created_at, id");
        if filter.limit.is_some() {
            sql.push_str(" LIMIT ?");
        }
        let mut q = sqlx::query(&sql);
        if let Some(e) = filter.experiment_id {
            q = q.bind(e.to_string());
        }
        for s in &filter.states {
            q = q.bind(s.as_str());
        }
        if let Some(l) = filter.limit {
            q = q.bind(l as i64);
        }
        let rows = q.fetch_all(&self.reader).await.classify()?;
        bodies(&rows)
    }

    async fn due_jobs(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>> {
        let rows = sqlx::query(
            "SELECT body FROM jobs
             WHERE (state IN ('leased', 'running') AND (lease_expires_at <= ?1 OR deadline_at <= ?1))
                OR (state = 'failed' AND retry_at <= ?1)
             ORDER BY created_at, id LIMIT ?2",
        )
        .bind(ms(now))
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await.classify()?;
        bodies(&rows)
    }

    async fn insert_experiment(&self, exp: &Experiment) -> Result<()> {
        sqlx::query(
            "INSERT INTO experiments (id, name, kind, state, created_at, body) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(exp.id.to_string())
        .bind(&exp.name)
        .bind(exp.kind.as_str())
        .bind(exp.state.as_str())
        .bind(ms(exp.created_at))
        .bind(serde_json::to_string(exp)?)
        .execute(&self.writer)
        .await.classify()?;
        Ok(())
    }

    async fn get_experiment(&self, id: ExperimentId) -> Result<Experiment> {
        self.get_body(
            "SELECT body FROM experiments WHERE id = ?",
            &id.to_string(),
            format!("experiment {id}"),
        )
        .await
    }

    async fn list_experiments(&self, state: Option<ExperimentState>) -> Result<Vec<Experiment>> {
        let rows = match state {
            Some(s) => sqlx::query("SELECT body FROM experiments WHERE state = ? ORDER BY id DESC")
                .bind(s.as_str())
                .fetch_all(&self.reader)
                .await
                .classify()?,
            None => sqlx::query("SELECT body FROM experiments ORDER BY id DESC")
                .fetch_all(&self.reader)
                .await
                .classify()?,
        };
        bodies(&rows)
    }

    async fn update_experiment(&self, exp: &Experiment, expected: ExperimentState) -> Result<bool> {
        let res =
            sqlx::query("UPDATE experiments SET state = ?, body = ? WHERE id = ? AND state = ?")
                .bind(exp.state.as_str())
                .bind(serde_json::to_string(exp)?)
                .bind(exp.id.to_string())
                .bind(expected.as_str())
                .execute(&self.writer)
                .await
                .classify()?;
        if res.rows_affected() == 1 {
            return Ok(true);
        }
        self.get_experiment(exp.id).await?;
        Ok(false)
    }

    async fn create_trial(
        &self,
        experiment: ExperimentId,
        params: Map<String, Value>,
        job: Option<Job>,
        now: DateTime<Utc>,
    ) -> Result<Trial> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.classify()?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM experiments WHERE id = ?")
                .bind(experiment.to_string())
                .fetch_optional(&mut *tx)
                .await
                .classify()?;
        let Some(state) = state else {
            return Err(Error::not_found(format!("experiment {experiment}")));
        };
        state
            .parse::<ExperimentState>()?
            .check_accepts_trials(experiment)?;
        let number: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE experiment_id = ?",
        )
        .bind(experiment.to_string())
        .fetch_one(&mut *tx)
        .await
        .classify()?;
        let number = number as u64;
        let trial = Trial::new_running(experiment, number, params, job.as_ref().map(|j| j.id), now);
        if let Some(mut job) = job {
            job.trial_number = Some(number);
            insert_job_on(&mut *tx, &job).await?;
        }
        sqlx::query("INSERT INTO trials (experiment_id, number, state, job_id, body) VALUES (?, ?, ?, ?, ?)")
            .bind(experiment.to_string())
            .bind(number as i64)
            .bind(trial.state.as_str())
            .bind(trial.job_id.map(|j| j.to_string()))
            .bind(serde_json::to_string(&trial)?)
            .execute(&mut *tx)
            .await.classify()?;
        tx.commit().await.classify()?;
        Ok(trial)
    }

    async fn get_trial(&self, experiment: ExperimentId, number: u64) -> Result<Trial> {
        let row = sqlx::query("SELECT body FROM trials WHERE experiment_id = ? AND number = ?")
            .bind(experiment.to_string())
            .bind(number as i64)
            .fetch_optional(&self.reader)
            .await
            .classify()?;
        match row {
            Some(r) => body(&r),
            None => Err(trial_not_found(experiment, number)),
        }
    }

    async fn list_trials(&self, experiment: ExperimentId) -> Result<Vec<Trial>> {
        let rows = sqlx::query("SELECT body FROM trials WHERE experiment_id = ? ORDER BY number")
            .bind(experiment.to_string())
            .fetch_all(&self.reader)
            .await
            .classify()?;
        bodies(&rows)
    }

    async fn list_trials_since(
        &self,
        experiment: ExperimentId,
        from: u64,
        also: &[u64],
    ) -> Result<Vec<Trial>> {
        // `also` travels as one JSON array, however many numbers it holds
        // (SQLite caps the number of bound parameters).
        let rows = sqlx::query(
            "SELECT body FROM trials WHERE experiment_id = ?
               AND (number >= ? OR number IN (SELECT value FROM json_each(?)))
             ORDER BY number",
        )
        .bind(experiment.to_string())
        .bind(i64::try_from(from).unwrap_or(i64::MAX))
        .bind(serde_json::to_string(also)?)
        .fetch_all(&self.reader)
        .await
        .classify()?;
        bodies(&rows)
    }

    async fn record_intermediate(
        &self,
        experiment: ExperimentId,
        number: u64,
        step: u32,
        value: f64,
    ) -> Result<Trial> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.classify()?;
        let mut trial = trial_in_tx(&mut tx, experiment, number).await?;
        trial.record_intermediate(step, value)?;
        write_trial(&mut tx, &trial).await?;
        tx.commit().await.classify()?;
        Ok(trial)
    }

    async fn finish_trial(
        &self,
        experiment: ExperimentId,
        number: u64,
        outcome: TrialOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.classify()?;
        let mut trial = trial_in_tx(&mut tx, experiment, number).await?;
        if !trial.finish(&outcome, now) {
            return Ok(false);
        }
        write_trial(&mut tx, &trial).await?;
        tx.commit().await.classify()?;
        Ok(true)
    }

    async fn register_model_version(
        &self,
        new: NewModelVersion,
        now: DateTime<Utc>,
    ) -> Result<ModelVersion> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.classify()?;
        if let Some(job) = new.job_id {
            let row = sqlx::query("SELECT body FROM model_versions WHERE job_id = ?")
                .bind(job.to_string())
                .fetch_optional(&mut *tx)
                .await
                .classify()?;
            if let Some(r) = row {
                return body(&r);
            }
        }
        let taken = sqlx::query("SELECT 1 FROM model_versions WHERE name = ? AND version = ?")
            .bind(&new.name)
            .bind(new.version as i64)
            .fetch_optional(&mut *tx)
            .await
            .classify()?;
        if taken.is_some() {
            return Err(version_taken(&new.name, new.version));
        }
        let mut new = new;
        let tags = std::mem::take(&mut new.tags);
        let mv = new.into_version(now);
        sqlx::query("INSERT INTO model_versions (name, version, job_id, created_at, body) VALUES (?, ?, ?, ?, ?)")
            .bind(&mv.name)
            .bind(mv.version as i64)
            .bind(mv.job_id.map(|j| j.to_string()))
            .bind(ms(mv.created_at))
            .bind(serde_json::to_string(&mv)?)
            .execute(&mut *tx)
            .await.classify()?;
        if !tags.is_empty() {
            sqlx::query("INSERT INTO model_tags (name, version, body) VALUES (?, ?, ?)")
                .bind(&mv.name)
                .bind(mv.version as i64)
                .bind(serde_json::to_string(&tags)?)
                .execute(&mut *tx)
                .await
                .classify()?;
        }
        tx.commit().await.classify()?;
        Ok(mv)
    }

    async fn next_model_version(&self, name: &str) -> Result<u32> {
        let v: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = ?",
        )
        .bind(name)
        .fetch_one(&self.reader)
        .await
        .classify()?;
        Ok(v as u32)
    }

    async fn find_model_version_by_job(&self, job: JobId) -> Result<Option<ModelVersion>> {
        let row = sqlx::query("SELECT body FROM model_versions WHERE job_id = ?")
            .bind(job.to_string())
            .fetch_optional(&self.reader)
            .await
            .classify()?;
        row.as_ref().map(body).transpose()
    }

    async fn get_model_version(&self, name: &str, version: Option<u32>) -> Result<ModelVersion> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT body FROM model_versions WHERE name = ? AND version = ?")
                    .bind(name)
                    .bind(v as i64)
                    .fetch_optional(&self.reader)
                    .await
                    .classify()?
            }
            None => sqlx::query(
                "SELECT body FROM model_versions WHERE name = ? ORDER BY version DESC LIMIT 1",
            )
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .classify()?,
        };
        match row {
            Some(r) => body(&r),
            None => Err(model_not_found(name, version)),
        }
    }

    async fn list_model_versions(&self, name: Option<&str>) -> Result<Vec<ModelVersion>> {
        let rows = match name {
            Some(n) => {
                sqlx::query("SELECT body FROM model_versions WHERE name = ? ORDER BY version")
                    .bind(n)
                    .fetch_all(&self.reader)
                    .await
                    .classify()?
            }
            None => sqlx::query("SELECT body FROM model_versions ORDER BY name, version")
                .fetch_all(&self.reader)
                .await
                .classify()?,
        };
        bodies(&rows)
    }

    async fn insert_dataset(&self, ds: &DatasetRecord) -> Result<()> {
        sqlx::query("INSERT INTO datasets (id, name, created_at, body) VALUES (?, ?, ?, ?)")
            .bind(ds.id.to_string())
            .bind(&ds.name)
            .bind(ms(ds.created_at))
            .bind(serde_json::to_string(ds)?)
            .execute(&self.writer)
            .await
            .classify()?;
        Ok(())
    }

    async fn get_dataset(&self, id: DatasetId) -> Result<DatasetRecord> {
        self.get_body(
            "SELECT body FROM datasets WHERE id = ?",
            &id.to_string(),
            format!("dataset {id}"),
        )
        .await
    }

    async fn list_datasets(&self) -> Result<Vec<DatasetRecord>> {
        let rows = sqlx::query("SELECT body FROM datasets ORDER BY id DESC")
            .fetch_all(&self.reader)
            .await
            .classify()?;
        bodies(&rows)
    }

    async fn upsert_worker(&self, worker: &WorkerRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO workers (id, resource_class, last_heartbeat_at, body) VALUES (?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET resource_class = excluded.resource_class,
                 last_heartbeat_at = excluded.last_heartbeat_at, body = excluded.body",
        )
        .bind(&worker.id.0)
        .bind(worker.resource_classes.join(","))
        .bind(ms(worker.last_heartbeat_at))
        .bind(serde_json::to_string(worker)?)
        .execute(&self.writer)
        .await
        .classify()?;
        Ok(())
    }

    async fn list_workers(&self) -> Result<Vec<WorkerRecord>> {
        let rows = sqlx::query("SELECT body FROM workers ORDER BY id")
            .fetch_all(&self.reader)
            .await
            .classify()?;
        bodies(&rows)
    }

    async fn page_experiments(&self, page: &Page) -> Result<Vec<Experiment>> {
        self.experiments_page(page).await
    }

    async fn page_datasets(&self, page: &Page) -> Result<Vec<DatasetRecord>> {
        self.datasets_page(page).await
    }

    async fn page_workers(&self, page: &Page) -> Result<Vec<WorkerRecord>> {
        self.workers_page(page).await
    }

    async fn page_model_versions(&self, page: &Page) -> Result<Vec<ModelVersion>> {
        self.model_versions_page(page).await
    }
}

async fn trial_in_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    experiment: ExperimentId,
    number: u64,
) -> Result<Trial> {
    let row = sqlx::query("SELECT body FROM trials WHERE experiment_id = ? AND number = ?")
        .bind(experiment.to_string())
        .bind(number as i64)
        .fetch_optional(&mut **tx)
        .await
        .classify()?;
    match row {
        Some(r) => body(&r),
        None => Err(trial_not_found(experiment, number)),
    }
}

async fn write_trial(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, trial: &Trial) -> Result<()> {
    sqlx::query("UPDATE trials SET state = ?, body = ? WHERE experiment_id = ? AND number = ?")
        .bind(trial.state.as_str())
        .bind(serde_json::to_string(trial)?)
        .bind(trial.experiment_id.to_string())
        .bind(trial.number as i64)
        .execute(&mut **tx)
        .await
        .classify()?;
    Ok(())
}
