//! The registry port on the embedded SQLite database.
//!
//! Each write is one transaction begun with `BEGIN IMMEDIATE`, so it holds
//! SQLite's write lock from its first read: two processes on one file (the
//! server and a command) queue instead of one failing half-way. The
//! compare-and-set is the transaction's first statement; a lost race, a
//! refused write or an error returns before `COMMIT`, and dropping the
//! transaction rolls everything back.

use super::{bodies, body, ms, SqliteStateStore};
use crate::error::{model_not_found, Classify};
use crate::registry::{
    bumped, check_write, deployment_exists, deployment_not_found, from_sql, group_slots,
    numbered_history, promotion_exists, promotion_not_found, stage_from_sql, stage_updates, to_sql,
    SlotRow, MODEL_TAGS,
};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::collections::BTreeMap;
use tracseq_core::ids::{DeploymentId, PromotionId};
use tracseq_core::lifecycle::deployment::{Deployment, Target};
use tracseq_core::lifecycle::promotion::Promotion;
use tracseq_core::ports::{
    DeploymentFilter, DeploymentWrite, HistoryEntry, ModelTags, PromotionFilter, PromotionWrite,
    RegistryStore, RegistryWrite,
};
use tracseq_core::registry::{ModelSlots, Stage};
use tracseq_core::{Error, Result};

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

/// Every version with its model's slots row, ordered by name then version.
const SLOTS_SQL: &str = "SELECT v.name, v.version, v.stage, s.revision, s.aliases
     FROM model_versions v LEFT JOIN model_slots s ON s.name = v.name";

fn slot_row(row: &SqliteRow) -> Result<SlotRow> {
    let version: i64 = row.get("version");
    let aliases: Option<&str> = row.get("aliases");
    Ok(SlotRow {
        name: row.get("name"),
        version: u32::try_from(version)
            .map_err(|_| Error::Internal(format!("corrupt record: model version {version}")))?,
        stage: stage_from_sql(row.get("stage"))?,
        revision: row
            .get::<Option<i64>, _>("revision")
            .map(|r| from_sql(r, "revision"))
            .transpose()?,
        aliases: aliases.map(serde_json::from_str).transpose()?,
    })
}

fn slots_of(rows: &[SqliteRow]) -> Result<Vec<ModelSlots>> {
    let rows = rows.iter().map(slot_row).collect::<Result<Vec<_>>>()?;
    Ok(group_slots(rows))
}

/// The stored stage of each version of `name`.
async fn stages_in(tx: &mut Tx<'_>, name: &str) -> Result<BTreeMap<u32, Stage>> {
    let rows = sqlx::query("SELECT version, stage FROM model_versions WHERE name = ?")
        .bind(name)
        .fetch_all(&mut **tx)
        .await
        .classify()?;
    rows.iter()
        .map(|r| {
            let v: i64 = r.get("version");
            let v = u32::try_from(v)
                .map_err(|_| Error::Internal(format!("corrupt record: model version {v}")))?;
            Ok((v, stage_from_sql(r.get("stage"))?))
        })
        .collect()
}

/// Stores `write` inside `tx`; `Ok(false)` on a lost compare-and-set (the
/// caller drops `tx`, which rolls back whatever was written before it).
async fn registry_in_tx(tx: &mut Tx<'_>, write: &RegistryWrite) -> Result<bool> {
    let slots = &write.slots;
    let name = &slots.name;
    let aliases = serde_json::to_string(&slots.aliases)?;
    let next = to_sql(slots.revision.saturating_add(1), "revision")?;
    let won = if slots.revision == 0 {
        sqlx::query(
            "INSERT INTO model_slots (name, revision, aliases) VALUES (?, ?, ?)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(next)
        .bind(&aliases)
        .execute(&mut **tx)
        .await
    } else {
        sqlx::query(
            "UPDATE model_slots SET revision = ?, aliases = ? WHERE name = ? AND revision = ?",
        )
        .bind(next)
        .bind(&aliases)
        .bind(name)
        .bind(to_sql(slots.revision, "revision")?)
        .execute(&mut **tx)
        .await
    }
    .classify()?
    .rows_affected()
        == 1;
    if !won {
        return Ok(false);
    }
    let current = stages_in(tx, name).await?;
    check_write(write, &current)?;
    match &write.promotion {
        Some(PromotionWrite::Insert(p)) => {
            let res = sqlx::query(
                "INSERT INTO promotions (id, model, state, requested_at, body) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(p.id.to_string())
            .bind(&p.model)
            .bind(p.state.as_str())
            .bind(ms(p.requested_at))
            .bind(serde_json::to_string(p)?)
            .execute(&mut **tx)
            .await
            .classify()?;
            if res.rows_affected() == 0 {
                return Err(promotion_exists(p.id));
            }
        }
        Some(PromotionWrite::Update {
            promotion: p,
            expected,
        }) => {
            let res =
                sqlx::query("UPDATE promotions SET state = ?, body = ? WHERE id = ? AND state = ?")
                    .bind(p.state.as_str())
                    .bind(serde_json::to_string(p)?)
                    .bind(p.id.to_string())
                    .bind(expected.as_str())
                    .execute(&mut **tx)
                    .await
                    .classify()?;
            if res.rows_affected() == 0 {
                let exists = sqlx::query("SELECT 1 FROM promotions WHERE id = ?")
                    .bind(p.id.to_string())
                    .fetch_optional(&mut **tx)
                    .await
                    .classify()?;
                return match exists {
                    Some(_) => Ok(false),
                    None => Err(promotion_not_found(p.id)),
                };
            }
        }
        None => {}
    }
    for (version, stage) in stage_updates(&current, &slots.stages) {
        sqlx::query("UPDATE model_versions SET stage = ? WHERE name = ? AND version = ?")
            .bind(stage.as_str())
            .bind(name)
            .bind(i64::from(version))
            .execute(&mut **tx)
            .await
            .classify()?;
    }
    let last: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM model_history WHERE model = ?")
            .bind(name)
            .fetch_one(&mut **tx)
            .await
            .classify()?;
    for h in numbered_history(write, from_sql(last, "history seq")?) {
        sqlx::query("INSERT INTO model_history (model, seq, at, body) VALUES (?, ?, ?, ?)")
            .bind(name)
            .bind(to_sql(h.seq, "history seq")?)
            .bind(ms(h.at))
            .bind(serde_json::to_string(&h)?)
            .execute(&mut **tx)
            .await
            .classify()?;
    }
    Ok(true)
}

/// Stores the deployments of `write` inside `tx`; `Ok(false)` on a lost
/// compare-and-set.
async fn deployments_in_tx(tx: &mut Tx<'_>, write: &DeploymentWrite) -> Result<bool> {
    for d in &write.inserts {
        let d = Deployment {
            revision: 0,
            ..d.clone()
        };
        let res = sqlx::query(
            "INSERT INTO deployments (id, model, target, state, created_at, revision, body)
             VALUES (?, ?, ?, ?, ?, 0, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(d.id.to_string())
        .bind(&d.model)
        .bind(d.target.as_str())
        .bind(d.state.as_str())
        .bind(ms(d.created_at))
        .bind(serde_json::to_string(&d)?)
        .execute(&mut **tx)
        .await
        .classify()?;
        if res.rows_affected() == 0 {
            return Err(deployment_exists(d.id));
        }
    }
    for d in &write.updates {
        let stored = bumped(d)?;
        let res = sqlx::query(
            "UPDATE deployments SET model = ?, target = ?, state = ?, created_at = ?,
                 revision = ?, body = ?
             WHERE id = ? AND revision = ?",
        )
        .bind(&stored.model)
        .bind(stored.target.as_str())
        .bind(stored.state.as_str())
        .bind(ms(stored.created_at))
        .bind(to_sql(stored.revision, "revision")?)
        .bind(serde_json::to_string(&stored)?)
        .bind(d.id.to_string())
        .bind(to_sql(d.revision, "revision")?)
        .execute(&mut **tx)
        .await
        .classify()?;
        if res.rows_affected() == 0 {
            let exists = sqlx::query("SELECT 1 FROM deployments WHERE id = ?")
                .bind(d.id.to_string())
                .fetch_optional(&mut **tx)
                .await
                .classify()?;
            return match exists {
                Some(_) => Ok(false),
                None => Err(deployment_not_found(d.id)),
            };
        }
    }
    match &write.registry {
        Some(registry) => registry_in_tx(tx, registry).await,
        None => Ok(true),
    }
}

impl SqliteStateStore {
    async fn model_exists(&self, name: &str, version: Option<u32>) -> Result<bool> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT 1 FROM model_versions WHERE name = ? AND version = ?")
                    .bind(name)
                    .bind(i64::from(v))
                    .fetch_optional(&self.reader)
                    .await
            }
            None => {
                sqlx::query("SELECT 1 FROM model_versions WHERE name = ? LIMIT 1")
                    .bind(name)
                    .fetch_optional(&self.reader)
                    .await
            }
        }
        .classify()?;
        Ok(row.is_some())
    }
}

#[async_trait]
impl RegistryStore for SqliteStateStore {
    async fn model_slots(&self, name: &str) -> Result<ModelSlots> {
        // One statement: a consistent view of stages, aliases and revision.
        let sql = format!("{SLOTS_SQL} WHERE v.name = ? ORDER BY v.version");
        let rows = sqlx::query(&sql)
            .bind(name)
            .fetch_all(&self.reader)
            .await
            .classify()?;
        slots_of(&rows)?
            .pop()
            .ok_or_else(|| model_not_found(name, None))
    }

    async fn all_slots(&self) -> Result<Vec<ModelSlots>> {
        let sql = format!("{SLOTS_SQL} ORDER BY v.name, v.version");
        let rows = sqlx::query(&sql).fetch_all(&self.reader).await.classify()?;
        slots_of(&rows)
    }

    async fn commit_registry(&self, write: RegistryWrite) -> Result<bool> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.classify()?;
        if !registry_in_tx(&mut tx, &write).await? {
            return Ok(false);
        }
        tx.commit().await.classify()?;
        Ok(true)
    }

    async fn get_promotion(&self, id: PromotionId) -> Result<Promotion> {
        let row = sqlx::query("SELECT body FROM promotions WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .classify()?;
        row.as_ref()
            .map(body)
            .transpose()?
            .ok_or_else(|| promotion_not_found(id))
    }

    async fn list_promotions(&self, filter: &PromotionFilter) -> Result<Vec<Promotion>> {
        let rows = sqlx::query(
            "SELECT body FROM promotions
             WHERE (?1 IS NULL OR model = ?1) AND (?2 IS NULL OR state = ?2)
             ORDER BY requested_at DESC, id DESC LIMIT ?3",
        )
        .bind(filter.model.as_deref())
        .bind(filter.state.map(|s| s.as_str()))
        .bind(filter.limit.map_or(-1, i64::from))
        .fetch_all(&self.reader)
        .await
        .classify()?;
        bodies(&rows)
    }

    async fn commit_deployments(&self, write: DeploymentWrite) -> Result<bool> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.classify()?;
        if !deployments_in_tx(&mut tx, &write).await? {
            return Ok(false);
        }
        tx.commit().await.classify()?;
        Ok(true)
    }

    async fn get_deployment(&self, id: DeploymentId) -> Result<Deployment> {
        let row = sqlx::query("SELECT body FROM deployments WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .classify()?;
        row.as_ref()
            .map(body)
            .transpose()?
            .ok_or_else(|| deployment_not_found(id))
    }

    async fn list_deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>> {
        // A negative LIMIT is no limit in SQLite.
        let rows = sqlx::query(
            "SELECT body FROM deployments
             WHERE (?1 IS NULL OR model = ?1) AND (?2 IS NULL OR target = ?2)
               AND (?3 IS NULL OR state = ?3)
             ORDER BY created_at DESC, id DESC LIMIT ?4",
        )
        .bind(filter.model.as_deref())
        .bind(filter.target.map(|t| t.as_str()))
        .bind(filter.state.map(|s| s.as_str()))
        .bind(filter.limit.map_or(-1, i64::from))
        .fetch_all(&self.reader)
        .await
        .classify()?;
        bodies(&rows)
    }

    async fn live_deployments(&self, target: Target) -> Result<Vec<Deployment>> {
        let rows = sqlx::query(
            "SELECT body FROM deployments WHERE target = ? AND state = 'live'
             ORDER BY model, created_at DESC, id DESC",
        )
        .bind(target.as_str())
        .fetch_all(&self.reader)
        .await
        .classify()?;
        bodies(&rows)
    }

    async fn model_history(
        &self,
        name: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(
            "SELECT body FROM model_history WHERE model = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(name)
        .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .classify()?;
        bodies(&rows)
    }

    async fn set_tags(
        &self,
        name: &str,
        version: Option<u32>,
        tags: BTreeMap<String, String>,
    ) -> Result<()> {
        if !self.model_exists(name, version).await? {
            return Err(model_not_found(name, version));
        }
        sqlx::query(
            "INSERT INTO model_tags (name, version, body) VALUES (?, ?, ?)
             ON CONFLICT (name, version) DO UPDATE SET body = excluded.body",
        )
        .bind(name)
        .bind(version.map_or(MODEL_TAGS, i64::from))
        .bind(serde_json::to_string(&tags)?)
        .execute(&self.writer)
        .await
        .classify()?;
        Ok(())
    }

    async fn tags(&self, name: &str) -> Result<ModelTags> {
        if !self.model_exists(name, None).await? {
            return Err(model_not_found(name, None));
        }
        let rows = sqlx::query("SELECT version, body FROM model_tags WHERE name = ?")
            .bind(name)
            .fetch_all(&self.reader)
            .await
            .classify()?;
        let mut out = ModelTags::default();
        for row in &rows {
            let tags: BTreeMap<String, String> = body(row)?;
            if tags.is_empty() {
                continue;
            }
            match row.get::<i64, _>("version") {
                MODEL_TAGS => out.model = tags,
                v => {
                    let v = u32::try_from(v).map_err(|_| {
                        Error::Internal(format!("corrupt record: tags of model version {v}"))
                    })?;
                    out.versions.insert(v, tags);
                }
            }
        }
        Ok(out)
    }
}
