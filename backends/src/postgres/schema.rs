//! Schema management: applying the embedded migrations and refusing to run
//! against a database whose migrations differ from this binary's.

use super::{classify, Fail, PostgresStateStore, MIGRATOR};
use sqlx::migrate::MigrateError;
use sqlx::{Executor, Row};
use std::collections::BTreeMap;
use tracseq_core::{Error, Result};

/// The message operators see when the schema lags behind the binary.
const NOT_MIGRATED: &str = "database schema is not migrated; run `tracseq-ml migrate`";

impl PostgresStateStore {
    /// Applies the embedded migrations (creating the configured schema if
    /// it does not exist). Safe to run from several processes at once: sqlx
    /// serialises migrators with an advisory lock.
    pub async fn migrate(&self) -> Result<()> {
        if let Some(schema) = &self.schema {
            // Validated in `connect`, so it is a plain identifier.
            let sql = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
            self.run(|_| {
                let sql = sql.clone();
                async move {
                    self.pool.execute(sql.as_str()).await?;
                    Ok(())
                }
            })
            .await?;
        }
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            MigrateError::VersionMissing(v) => newer_schema(v),
            MigrateError::Execute(e) => classify(Fail::Db(e)),
            other => Error::Internal(format!("postgres migration failed: {other}")),
        })
    }

    /// Checks that the database holds exactly the migrations embedded in this
    /// binary. The api and scheduler call it at start and refuse to run on a
    /// mismatch: `Unavailable` when migrations are missing (run
    /// `tracseq-ml migrate`), `Invalid` when the database is newer than the
    /// binary or an applied migration failed or differs from ours.
    pub async fn check_schema(&self) -> Result<()> {
        let applied = self
            .run(|_| async {
                // to_regclass follows search_path and answers NULL (rather
                // than failing the statement) when the table is absent.
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                        .fetch_one(&self.pool)
                        .await?;
                if exists.is_none() {
                    return Ok(None);
                }
                let rows = sqlx::query(
                    "SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version",
                )
                .fetch_all(&self.pool)
                .await?;
                let mut applied = Vec::with_capacity(rows.len());
                for r in &rows {
                    applied.push((
                        r.try_get::<i64, _>("version")?,
                        r.try_get::<bool, _>("success")?,
                        r.try_get::<Vec<u8>, _>("checksum")?,
                    ));
                }
                Ok(Some(applied))
            })
            .await?;
        let Some(applied) = applied else {
            return Err(Error::Unavailable(NOT_MIGRATED.into()));
        };
        let embedded: BTreeMap<i64, &[u8]> = MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| (m.version, m.checksum.as_ref()))
            .collect();
        for (version, success, checksum) in &applied {
            match embedded.get(version) {
                None => return Err(newer_schema(*version)),
                Some(_) if !success => {
                    return Err(Error::Invalid(format!(
                        "database migration {version} failed part-way; repair the database, then run `tracseq-ml migrate`"
                    )))
                }
                Some(ours) if *ours != checksum.as_slice() => {
                    return Err(Error::Invalid(format!(
                        "database migration {version} differs from the one in this binary"
                    )))
                }
                Some(_) => {}
            }
        }
        if embedded
            .keys()
            .any(|v| !applied.iter().any(|(a, _, _)| a == v))
        {
            return Err(Error::Unavailable(NOT_MIGRATED.into()));
        }
        Ok(())
    }
}

fn newer_schema(applied: i64) -> Error {
    let ours = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    Error::Invalid(format!(
        "database schema is newer than this binary (version {applied} > {ours})"
    ))
}
