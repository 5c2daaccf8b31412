//! The registry port on PostgreSQL, safe with several api replicas and
//! schedulers writing one model at once.
//!
//! Every write is one transaction whose first statement is the model's
//! compare-and-set: `UPDATE model_slots … WHERE revision = $n`, or for a
//! model's first change `INSERT … ON CONFLICT DO NOTHING`. Under READ
//! COMMITTED a second writer waits on that row's lock and then finds the
//! revision moved (or the row there), so exactly one writer from a revision
//! wins, and everything after it in the transaction (stages, history
//! numbers, the promotion) is written by that one writer alone. Deployment
//! updates lock their rows in id order, so two writes over the same
//! deployments cannot deadlock. A lost race or a refused write returns
//! before `COMMIT`, and the dropped transaction rolls back.
//!
//! Like every call of [`PostgresStateStore`], a write that failed as
//! unavailable is retried; a retry that finds its compare-and-set lost
//! first checks whether its own earlier attempt committed (the stored
//! records equal the ones it wrote) and then answers as that attempt would
//! have.

use super::*;
use crate::registry::{
    bumped, check_write, deployment_exists, deployment_not_found, from_sql, group_slots,
    numbered_history, promotion_exists, promotion_not_found, stage_from_sql, stage_updates, to_sql,
    SlotRow, MODEL_TAGS,
};
use std::collections::BTreeMap;
use tracseq_core::ids::{DeploymentId, PromotionId};
use tracseq_core::lifecycle::deployment::{Deployment, Target};
use tracseq_core::lifecycle::promotion::Promotion;
use tracseq_core::ports::{
    DeploymentFilter, DeploymentWrite, HistoryEntry, ModelTags, PromotionFilter, PromotionWrite,
    RegistryStore, RegistryWrite,
};
use tracseq_core::registry::{ModelSlots, Stage};

type Tx<'a> = Transaction<'a, Postgres>;

/// Every version with its model's slots row; callers add WHERE and ORDER BY.
const SLOTS_SQL: &str = "SELECT v.name, v.version, v.stage, s.revision, s.aliases
     FROM model_versions v LEFT JOIN model_slots s ON s.name = v.name";

fn version_from(v: i64) -> Attempt<u32> {
    u32::try_from(v)
        .map_err(|_| Error::Internal(format!("corrupt record: model version {v}")).into())
}

fn slot_row(row: &PgRow) -> Attempt<SlotRow> {
    let aliases: Option<Json<BTreeMap<String, u32>>> = row.try_get("aliases")?;
    Ok(SlotRow {
        name: row.try_get("name")?,
        version: version_from(row.try_get("version")?)?,
        stage: stage_from_sql(row.try_get("stage")?)?,
        revision: row
            .try_get::<Option<i64>, _>("revision")?
            .map(|r| from_sql(r, "revision"))
            .transpose()?,
        aliases: aliases.map(|a| a.0),
    })
}

fn slots_of(rows: &[PgRow]) -> Attempt<Vec<ModelSlots>> {
    let rows = rows.iter().map(slot_row).collect::<Attempt<Vec<_>>>()?;
    Ok(group_slots(rows))
}

/// The stored stage of each version of `name`.
async fn stages_in(tx: &mut Tx<'_>, name: &str) -> Attempt<BTreeMap<u32, Stage>> {
    let rows = sqlx::query("SELECT version, stage FROM model_versions WHERE name = $1")
        .bind(name)
        .fetch_all(&mut **tx)
        .await?;
    let mut out = BTreeMap::new();
    for r in &rows {
        out.insert(
            version_from(r.try_get("version")?)?,
            stage_from_sql(r.try_get("stage")?)?,
        );
    }
    Ok(out)
}

/// Stores `write` inside `tx`; `Ok(false)` on a lost compare-and-set (the
/// caller drops `tx`, which rolls back whatever was written before it).
async fn registry_in_tx(tx: &mut Tx<'_>, write: &RegistryWrite) -> Attempt<bool> {
    let slots = &write.slots;
    let name = &slots.name;
    let next = to_sql(slots.revision.saturating_add(1), "revision")?;
    let won = if slots.revision == 0 {
        // A concurrent first change waits for ours to end, then does nothing.
        sqlx::query(
            "INSERT INTO model_slots (name, revision, aliases) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(next)
        .bind(json(&slots.aliases))
        .execute(&mut **tx)
        .await?
    } else {
        sqlx::query(
            "UPDATE model_slots SET revision = $1, aliases = $2 WHERE name = $3 AND revision = $4",
        )
        .bind(next)
        .bind(json(&slots.aliases))
        .bind(name)
        .bind(to_sql(slots.revision, "revision")?)
        .execute(&mut **tx)
        .await?
    }
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
                "INSERT INTO promotions (id, model, state, requested_at, body)
                 VALUES ($1::uuid, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(p.id.to_string())
            .bind(&p.model)
            .bind(p.state.as_str())
            .bind(ms(p.requested_at))
            .bind(json(p))
            .execute(&mut **tx)
            .await?;
            if res.rows_affected() == 0 {
                return Err(promotion_exists(p.id).into());
            }
        }
        Some(PromotionWrite::Update {
            promotion: p,
            expected,
        }) => {
            let res = sqlx::query(
                "UPDATE promotions SET state = $1, body = $2 WHERE id = $3::uuid AND state = $4",
            )
            .bind(p.state.as_str())
            .bind(json(p))
            .bind(p.id.to_string())
            .bind(expected.as_str())
            .execute(&mut **tx)
            .await?;
            if res.rows_affected() == 0 {
                let exists = sqlx::query("SELECT 1 FROM promotions WHERE id = $1::uuid")
                    .bind(p.id.to_string())
                    .fetch_optional(&mut **tx)
                    .await?;
                return match exists {
                    Some(_) => Ok(false),
                    None => Err(promotion_not_found(p.id).into()),
                };
            }
        }
        None => {}
    }
    for (version, stage) in stage_updates(&current, &slots.stages) {
        sqlx::query("UPDATE model_versions SET stage = $1 WHERE name = $2 AND version = $3")
            .bind(stage.as_str())
            .bind(name)
            .bind(i64::from(version))
            .execute(&mut **tx)
            .await?;
    }
    let last: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM model_history WHERE model = $1")
            .bind(name)
            .fetch_one(&mut **tx)
            .await?;
    for h in numbered_history(write, from_sql(last, "history seq")?) {
        sqlx::query("INSERT INTO model_history (model, seq, at, body) VALUES ($1, $2, $3, $4)")
            .bind(name)
            .bind(to_sql(h.seq, "history seq")?)
            .bind(ms(h.at))
            .bind(json(&h))
            .execute(&mut **tx)
            .await?;
    }
    Ok(true)
}

/// Stores `write` inside `tx`; `Ok(false)` on a lost compare-and-set.
async fn deployments_in_tx(tx: &mut Tx<'_>, write: &DeploymentWrite) -> Attempt<bool> {
    for d in &write.inserts {
        let d = Deployment {
            revision: 0,
            ..d.clone()
        };
        let res = sqlx::query(
            "INSERT INTO deployments (id, model, target, state, created_at, revision, body)
             VALUES ($1::uuid, $2, $3, $4, $5, 0, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(d.id.to_string())
        .bind(&d.model)
        .bind(d.target.as_str())
        .bind(d.state.as_str())
        .bind(ms(d.created_at))
        .bind(json(&d))
        .execute(&mut **tx)
        .await?;
        if res.rows_affected() == 0 {
            return Err(deployment_exists(d.id).into());
        }
    }
    // Row locks taken in id order (stable, so two updates of one record
    // keep theirs).
    let mut updates: Vec<&Deployment> = write.updates.iter().collect();
    updates.sort_by_key(|d| d.id);
    for d in updates {
        let stored = bumped(d)?;
        let res = sqlx::query(
            "UPDATE deployments SET model = $1, target = $2, state = $3, created_at = $4,
                 revision = $5, body = $6
             WHERE id = $7::uuid AND revision = $8",
        )
        .bind(&stored.model)
        .bind(stored.target.as_str())
        .bind(stored.state.as_str())
        .bind(ms(stored.created_at))
        .bind(to_sql(stored.revision, "revision")?)
        .bind(json(&stored))
        .bind(d.id.to_string())
        .bind(to_sql(d.revision, "revision")?)
        .execute(&mut **tx)
        .await?;
        if res.rows_affected() == 0 {
            let exists = sqlx::query("SELECT 1 FROM deployments WHERE id = $1::uuid")
                .bind(d.id.to_string())
                .fetch_optional(&mut **tx)
                .await?;
            return match exists {
                Some(_) => Ok(false),
                None => Err(deployment_not_found(d.id).into()),
            };
        }
    }
    match &write.registry {
        Some(registry) => registry_in_tx(tx, registry).await,
        None => Ok(true),
    }
}

/// Whether a retried write's answer comes from its earlier attempt: the
/// compare-and-set lost (or an insert found its id taken) on a retry.
fn maybe_landed(attempt: u32, outcome: &Attempt<bool>) -> bool {
    attempt > 0 && matches!(outcome, Ok(false) | Err(Fail::Domain(Error::Conflict(_))))
}

impl PostgresStateStore {
    async fn commit_registry_once(&self, write: &RegistryWrite) -> Attempt<bool> {
        let mut tx = self.pool.begin().await?;
        if !registry_in_tx(&mut tx, write).await? {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn commit_deployments_once(&self, write: &DeploymentWrite) -> Attempt<bool> {
        let mut tx = self.pool.begin().await?;
        if !deployments_in_tx(&mut tx, write).await? {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn slots_once(&self, name: &str) -> Attempt<Option<ModelSlots>> {
        let sql = format!("{SLOTS_SQL} WHERE v.name = $1 ORDER BY v.version");
        let rows = sqlx::query(&sql).bind(name).fetch_all(&self.pool).await?;
        Ok(slots_of(&rows)?.pop())
    }

    async fn promotion_once(&self, id: PromotionId) -> Attempt<Option<Promotion>> {
        self.fetch_body(
            "SELECT body FROM promotions WHERE id = $1::uuid",
            id.to_string(),
        )
        .await
    }

    async fn deployment_once(&self, id: DeploymentId) -> Attempt<Option<Deployment>> {
        self.fetch_body(
            "SELECT body FROM deployments WHERE id = $1::uuid",
            id.to_string(),
        )
        .await
    }

    /// Whether the stored records are what `write` stores: its slots at the
    /// next revision, its promotion and, last in the history, its rows.
    async fn registry_landed(&self, write: &RegistryWrite) -> Attempt<bool> {
        let Some(now) = self.slots_once(&write.slots.name).await? else {
            return Ok(false);
        };
        let ours = write
            .slots
            .stages
            .iter()
            .all(|(v, s)| now.stages.get(v) == Some(s));
        if !ours
            || now.revision != write.slots.revision.saturating_add(1)
            || now.aliases != write.slots.aliases
        {
            return Ok(false);
        }
        let promotion = match &write.promotion {
            Some(PromotionWrite::Insert(p)) | Some(PromotionWrite::Update { promotion: p, .. }) => {
                Some(p)
            }
            None => None,
        };
        if let Some(p) = promotion {
            if self.promotion_once(p.id).await?.as_ref() != Some(p) {
                return Ok(false);
            }
        }
        let n = write.history.len();
        if n == 0 {
            return Ok(true);
        }
        let rows = sqlx::query(
            "SELECT body FROM model_history WHERE model = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(&write.slots.name)
        .bind(n as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut stored: Vec<HistoryEntry> = bodies(&rows)?;
        stored.reverse();
        let same = stored.len() == n
            && stored.iter().zip(&write.history).all(|(s, h)| {
                HistoryEntry {
                    seq: s.seq,
                    ..h.clone()
                } == *s
            });
        Ok(same)
    }

    /// Whether every record of `write` is stored as it stores them.
    async fn deployments_landed(&self, write: &DeploymentWrite) -> Attempt<bool> {
        let mut expected: BTreeMap<DeploymentId, Deployment> = BTreeMap::new();
        for d in &write.inserts {
            let d = Deployment {
                revision: 0,
                ..d.clone()
            };
            expected.insert(d.id, d);
        }
        for d in &write.updates {
            expected.insert(d.id, bumped(d)?);
        }
        for (id, d) in &expected {
            if self.deployment_once(*id).await?.as_ref() != Some(d) {
                return Ok(false);
            }
        }
        match &write.registry {
            Some(registry) => self.registry_landed(registry).await,
            None => Ok(true),
        }
    }

    async fn model_exists(&self, name: &str, version: Option<u32>) -> Attempt<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM model_versions
             WHERE name = $1 AND ($2::bigint IS NULL OR version = $2) LIMIT 1",
        )
        .bind(name)
        .bind(version.map(i64::from))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}

#[async_trait]
impl RegistryStore for PostgresStateStore {
    async fn model_slots(&self, name: &str) -> Result<ModelSlots> {
        // One statement: a consistent view of stages, aliases and revision.
        self.run(|_| self.slots_once(name))
            .await?
            .ok_or_else(|| model_not_found(name, None))
    }

    async fn all_slots(&self) -> Result<Vec<ModelSlots>> {
        let sql = format!("{SLOTS_SQL} ORDER BY v.name, v.version");
        let sql = &sql;
        self.run(|_| async move {
            let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
            slots_of(&rows)
        })
        .await
    }

    async fn commit_registry(&self, write: RegistryWrite) -> Result<bool> {
        let write = &write;
        self.run(|attempt| async move {
            let outcome = self.commit_registry_once(write).await;
            if maybe_landed(attempt, &outcome) && self.registry_landed(write).await? {
                return Ok(true);
            }
            outcome
        })
        .await
    }

    async fn get_promotion(&self, id: PromotionId) -> Result<Promotion> {
        self.run(|_| self.promotion_once(id))
            .await?
            .ok_or_else(|| promotion_not_found(id))
    }

    async fn list_promotions(&self, filter: &PromotionFilter) -> Result<Vec<Promotion>> {
        self.run(|_| async move {
            // One static statement (NULL = no filter) keeps the plan cached.
            let rows = sqlx::query(
                "SELECT body FROM promotions
                 WHERE ($1::text IS NULL OR model = $1) AND ($2::text IS NULL OR state = $2)
                 ORDER BY requested_at DESC, id DESC
                 LIMIT $3",
            )
            .bind(filter.model.as_deref())
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.limit.map(i64::from))
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn commit_deployments(&self, write: DeploymentWrite) -> Result<bool> {
        let write = &write;
        self.run(|attempt| async move {
            let outcome = self.commit_deployments_once(write).await;
            if maybe_landed(attempt, &outcome) && self.deployments_landed(write).await? {
                return Ok(true);
            }
            outcome
        })
        .await
    }

    async fn get_deployment(&self, id: DeploymentId) -> Result<Deployment> {
        self.run(|_| self.deployment_once(id))
            .await?
            .ok_or_else(|| deployment_not_found(id))
    }

    async fn list_deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>> {
        self.run(|_| async move {
            let rows = sqlx::query(
                "SELECT body FROM deployments
                 WHERE ($1::text IS NULL OR model = $1) AND ($2::text IS NULL OR target = $2)
                   AND ($3::text IS NULL OR state = $3)
                 ORDER BY created_at DESC, id DESC
                 LIMIT $4",
            )
            .bind(filter.model.as_deref())
            .bind(filter.target.map(|t| t.as_str()))
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.limit.map(i64::from))
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn live_deployments(&self, target: Target) -> Result<Vec<Deployment>> {
        self.run(|_| async move {
            let rows = sqlx::query(
                "SELECT body FROM deployments WHERE target = $1 AND state = 'live'
                 ORDER BY model, created_at DESC, id DESC",
            )
            .bind(target.as_str())
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn model_history(
        &self,
        name: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        self.run(|_| async move {
            let rows = sqlx::query(
                "SELECT body FROM model_history WHERE model = $1 AND seq > $2
                 ORDER BY seq LIMIT $3",
            )
            .bind(name)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            bodies(&rows)
        })
        .await
    }

    async fn set_tags(
        &self,
        name: &str,
        version: Option<u32>,
        tags: BTreeMap<String, String>,
    ) -> Result<()> {
        let tags = &tags;
        // An upsert of the whole set: a retry writes the same again.
        self.run(|_| async move {
            if !self.model_exists(name, version).await? {
                return Err(model_not_found(name, version).into());
            }
            sqlx::query(
                "INSERT INTO model_tags (name, version, body) VALUES ($1, $2, $3)
                 ON CONFLICT (name, version) DO UPDATE SET body = EXCLUDED.body",
            )
            .bind(name)
            .bind(version.map_or(MODEL_TAGS, i64::from))
            .bind(json(tags))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn tags(&self, name: &str) -> Result<ModelTags> {
        self.run(|_| async move {
            if !self.model_exists(name, None).await? {
                return Err(model_not_found(name, None).into());
            }
            let rows = sqlx::query("SELECT version, body FROM model_tags WHERE name = $1")
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
            let mut out = ModelTags::default();
            for row in &rows {
                let tags: BTreeMap<String, String> = body(row)?;
                if tags.is_empty() {
                    continue;
                }
                match row.try_get::<i64, _>("version")? {
                    MODEL_TAGS => out.model = tags,
                    v => {
                        out.versions.insert(version_from(v)?, tags);
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}
