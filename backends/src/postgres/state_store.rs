//! The `StateStore` port on PostgreSQL: every method runs its statements in
//! [`PostgresStateStore::run`]'s retry loop (see the module docs of
//! [`super`] for why each write is safe to retry).

use super::*;
use tracseq_core::paging::Page;

#[async_trait]
impl StateStore for PostgresStateStore {
    async fn insert_job(&self, job: &Job) -> Result<()> {
        self.run(|attempt| {
            self.insert_once(
                attempt,
                insert_job_on(&self.pool, job),
                self.job_once(job.id),
                job,
            )
        })
        .await
    }

    async fn insert_jobs(&self, jobs: &[Job]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        self.run(|attempt| async move {
            let mut tx = self.pool.begin().await?;
            for job in jobs {
                match insert_job_on(&mut *tx, job).await {
                    Ok(()) => {}
                    // The transaction is all or none, so on a retry one
                    // duplicate means the earlier attempt committed them all,
                    // unless what is stored differs (a real conflict).
                    Err(f) if attempt > 0 && is_unique_violation(&f) => {
                        drop(tx);
                        for job in jobs {
                            if self.job_once(job.id).await? != *job {
                                return Err(f);
                            }
                        }
                        return Ok(());
                    }
                    Err(f) => return Err(f),
                }
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn get_job(&self, id: JobId) -> Result<Job> {
        self.run(|_| self.job_once(id)).await
    }

    async fn update_job(&self, job: &Job) -> Result<bool> {
        let mut stored = job.clone();
        stored.version += 1;
        let trial_number = job
            .trial_number
            .map(i64::try_from)
            .transpose()
            .map_err(|_| Error::Invalid(format!("job {}: trial number out of range", job.id)))?;
        let stored = &stored;
        self.run(|attempt| async move {
            let res = sqlx::query(
                "UPDATE jobs SET state = $1, priority = $2, trial_number = $3, lease_expires_at = $4,
                     deadline_at = $5, retry_at = $6, version = $7, body = $8
                 WHERE id = $9::uuid AND version = $10",
            )
            .bind(stored.state.as_str())
            .bind(i32::from(stored.priority))
            .bind(trial_number)
            .bind(opt_ms(stored.lease_expires_at))
            .bind(opt_ms(stored.deadline_at))
            .bind(opt_ms(stored.retry_at))
            .bind(stored.version)
            .bind(json(stored))
            .bind(job.id.to_string())
            .bind(job.version)
            .execute(&self.pool)
            .await?;
            if res.rows_affected() == 1 {
                return Ok(true);
            }
            // Also tells a lost race from a missing job (NotFound).
            let now = self.job_once(job.id).await?;
            // On a retry, our earlier attempt may be the write we lost to.
            Ok(attempt > 0 && now == *stored)
        })
        .await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        let states = &states;
        self.run(|_| async move {
            // One static statement (NULL = no filter) keeps the plan cached.
            let rows = sqlx::query(
                "SELECT body FROM jobs
                 WHERE ($1::uuid IS NULL OR experiment_id = $1::uuid)
                   AND (cardinality($2::text[]) = 0 OR state = ANY($2::text[]))
                 ORDER BY created_at, id
                 LIMIT $3",
            )
            .bind(filter.experiment_id.map(|e| e.to_string()))
            .bind(states)
            .bind(filter.limit.map(i64::from))
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn due_jobs(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>> {
        self.run(|_| async move {
            let rows = sqlx::query(
                "SELECT body FROM jobs
                 WHERE (state IN ('leased', 'running') AND (lease_expires_at <= $1 OR deadline_at <= $1))
                    OR (state = 'failed' AND retry_at <= $1)
                 ORDER BY created_at, id LIMIT $2",
            )
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn insert_experiment(&self, exp: &Experiment) -> Result<()> {
        self.run(|attempt| {
            let insert = async move {
                sqlx::query(
                    "INSERT INTO experiments (id, name, kind, state, created_at, body)
                     VALUES ($1::uuid, $2, $3, $4, $5, $6)",
                )
                .bind(exp.id.to_string())
                .bind(&exp.name)
                .bind(exp.kind.as_str())
                .bind(exp.state.as_str())
                .bind(ms(exp.created_at))
                .bind(json(exp))
                .execute(&self.pool)
                .await?;
                Ok(())
            };
            self.insert_once(attempt, insert, self.experiment_once(exp.id), exp)
        })
        .await
    }

    async fn get_experiment(&self, id: ExperimentId) -> Result<Experiment> {
        self.run(|_| self.experiment_once(id)).await
    }

    async fn list_experiments(&self, state: Option<ExperimentState>) -> Result<Vec<Experiment>> {
        self.run(|_| async move {
            // Ids are UUIDv7, so id order is creation order.
            let rows = sqlx::query(
                "SELECT body FROM experiments WHERE ($1::text IS NULL OR state = $1) ORDER BY id DESC",
            )
            .bind(state.map(|s| s.as_str()))
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn update_experiment(&self, exp: &Experiment, expected: ExperimentState) -> Result<bool> {
        self.run(|attempt| async move {
            let res = sqlx::query(
                "UPDATE experiments SET state = $1, body = $2 WHERE id = $3::uuid AND state = $4",
            )
            .bind(exp.state.as_str())
            .bind(json(exp))
            .bind(exp.id.to_string())
            .bind(expected.as_str())
            .execute(&self.pool)
            .await?;
            if res.rows_affected() == 1 {
                return Ok(true);
            }
            let now = self.experiment_once(exp.id).await?;
            Ok(attempt > 0 && now == *exp)
        })
        .await
    }

    async fn create_trial(
        &self,
        experiment: ExperimentId,
        params: Map<String, Value>,
        job: Option<Job>,
        now: DateTime<Utc>,
    ) -> Result<Trial> {
        // Built once so every attempt carries the same trial id, which is how
        // a retry recognises its own committed trial.
        let trial = Trial::new_running(experiment, 0, params, job.as_ref().map(|j| j.id), now);
        let (trial, job) = (&trial, job.as_ref());
        self.run(|attempt| self.create_trial_once(trial, job, attempt))
            .await
    }

    async fn get_trial(&self, experiment: ExperimentId, number: u64) -> Result<Trial> {
        let n = trial_number_param(number).map_err(classify)?;
        self.run(|_| async move {
            let row = sqlx::query(
                "SELECT body FROM trials WHERE experiment_id = $1::uuid AND number = $2",
            )
            .bind(experiment.to_string())
            .bind(n)
            .fetch_optional(&self.pool)
            .await?;
            match row {
                Some(r) => body(&r),
                None => Err(trial_not_found(experiment, number).into()),
            }
        })
        .await
    }

    async fn list_trials(&self, experiment: ExperimentId) -> Result<Vec<Trial>> {
        self.run(|_| async move {
            let rows = sqlx::query(
                "SELECT body FROM trials WHERE experiment_id = $1::uuid ORDER BY number",
            )
            .bind(experiment.to_string())
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn list_trials_since(
        &self,
        experiment: ExperimentId,
        from: u64,
        also: &[u64],
    ) -> Result<Vec<Trial>> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let also: Vec<i64> = also.iter().filter_map(|&n| i64::try_from(n).ok()).collect();
        let also = &also;
        self.run(|_| async move {
            let rows = sqlx::query(
                "SELECT body FROM trials WHERE experiment_id = $1::uuid
                   AND (number >= $2 OR number = ANY($3))
                 ORDER BY number",
            )
            .bind(experiment.to_string())
            .bind(from)
            .bind(also)
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn record_intermediate(
        &self,
        experiment: ExperimentId,
        number: u64,
        step: u32,
        value: f64,
    ) -> Result<Trial> {
        self.run(|attempt| async move {
            let mut tx = self.pool.begin().await?;
            let mut trial = lock_trial(&mut tx, experiment, number).await?;
            if let Err(e) = trial.record_intermediate(step, value) {
                // Our earlier attempt landed and the trial finished since.
                if attempt > 0 && trial.intermediate.get(&step) == Some(&value) {
                    return Ok(trial);
                }
                return Err(e.into());
            }
            write_trial(&mut tx, &trial).await?;
            tx.commit().await?;
            Ok(trial)
        })
        .await
    }

    async fn finish_trial(
        &self,
        experiment: ExperimentId,
        number: u64,
        outcome: TrialOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let outcome = &outcome;
        self.run(|attempt| async move {
            let mut tx = self.pool.begin().await?;
            let mut trial = lock_trial(&mut tx, experiment, number).await?;
            if !trial.finish(outcome, now) {
                // On a retry, the final state may be the one we wrote.
                return Ok(attempt > 0 && outcome.is_recorded_on(&trial, now));
            }
            write_trial(&mut tx, &trial).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn register_model_version(
        &self,
        new: NewModelVersion,
        now: DateTime<Utc>,
    ) -> Result<ModelVersion> {
        let mut new = new;
        let tags = &std::mem::take(&mut new.tags);
        let mv = &new.into_version(now);
        self.run(|attempt| self.register_once(mv, tags, attempt))
            .await
    }

    async fn next_model_version(&self, name: &str) -> Result<u32> {
        let v: i64 = self
            .run(|_| async move {
                Ok(sqlx::query_scalar(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = $1",
                )
                .bind(name)
                .fetch_one(&self.pool)
                .await?)
            })
            .await?;
        u32::try_from(v)
            .map_err(|_| Error::Internal(format!("model '{name}': version {v} overflows")))
    }

    async fn find_model_version_by_job(&self, job: JobId) -> Result<Option<ModelVersion>> {
        self.run(|_| self.version_by_job(job)).await
    }

    async fn get_model_version(&self, name: &str, version: Option<u32>) -> Result<ModelVersion> {
        self.run(|_| self.fetch_model_version(name, version))
            .await?
            .ok_or_else(|| model_not_found(name, version))
    }

    async fn list_model_versions(&self, name: Option<&str>) -> Result<Vec<ModelVersion>> {
        self.run(|_| async move {
            let rows = sqlx::query(
                "SELECT body FROM model_versions WHERE ($1::text IS NULL OR name = $1)
                 ORDER BY name, version",
            )
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn insert_dataset(&self, ds: &DatasetRecord) -> Result<()> {
        self.run(|attempt| {
            let insert = async move {
                sqlx::query(
                    "INSERT INTO datasets (id, name, created_at, body) VALUES ($1::uuid, $2, $3, $4)",
                )
                .bind(ds.id.to_string())
                .bind(&ds.name)
                .bind(ms(ds.created_at))
                .bind(json(ds))
                .execute(&self.pool)
                .await?;
                Ok(())
            };
            self.insert_once(attempt, insert, self.dataset_once(ds.id), ds)
        })
        .await
    }

    async fn get_dataset(&self, id: DatasetId) -> Result<DatasetRecord> {
        self.run(|_| self.dataset_once(id)).await
    }

    async fn list_datasets(&self) -> Result<Vec<DatasetRecord>> {
        self.run(|_| async move {
            let rows = sqlx::query("SELECT body FROM datasets ORDER BY id DESC")
                .fetch_all(&self.pool)
                .await?;
            bodies(&rows)
        })
        .await
    }

    async fn upsert_worker(&self, worker: &WorkerRecord) -> Result<()> {
        // Idempotent: a retry after an unknown commit writes the same row.
        self.run(|_| async move {
            sqlx::query(
                "INSERT INTO workers (id, resource_class, last_heartbeat_at, body)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET resource_class = EXCLUDED.resource_class,
                     last_heartbeat_at = EXCLUDED.last_heartbeat_at, body = EXCLUDED.body",
            )
            .bind(&worker.id.0)
            .bind(worker.resource_classes.join(","))
            .bind(ms(worker.last_heartbeat_at))
            .bind(json(worker))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn list_workers(&self) -> Result<Vec<WorkerRecord>> {
        self.run(|_| async move {
            let rows = sqlx::query("SELECT body FROM workers ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
            bodies(&rows)
        })
        .await
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
