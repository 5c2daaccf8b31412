//! The [`RegistryStore`] port (stages, aliases, promotions, deployments,
//! history, tags): in memory here, beside the model versions of
//! [`MemoryStateStore`]; on SQLite and PostgreSQL in `sqlite/registry.rs`
//! and `postgres/registry.rs`, beside the state store of the same database.
//!
//! What the three share is here, so they cannot drift apart: which writes
//! are refused before anything is stored ([`check_write`]), which stages a
//! write actually moves and in which order ([`stage_updates`]), how history
//! rows are numbered, and the messages for missing and taken records.

use crate::error::model_not_found;
use crate::memory_state::{Inner, MemoryStateStore};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use tracseq_core::ids::{DeploymentId, PromotionId};
use tracseq_core::lifecycle::deployment::{Deployment, DeploymentState, Target};
use tracseq_core::lifecycle::promotion::Promotion;
use tracseq_core::ports::{
    DeploymentFilter, DeploymentWrite, HistoryEntry, ModelTags, PromotionFilter, PromotionWrite,
    RegistryStore, RegistryWrite,
};
use tracseq_core::registry::{ModelSlots, Stage};
use tracseq_core::{Error, Result};

/// The `version` under which the SQL stores keep a model's own tags
/// (version numbers are never negative).
pub(crate) const MODEL_TAGS: i64 = -1;

pub(crate) fn promotion_not_found(id: PromotionId) -> Error {
    Error::not_found(format!("promotion request {id}"))
}

pub(crate) fn promotion_exists(id: PromotionId) -> Error {
    Error::Conflict(format!("promotion request {id} already exists"))
}

pub(crate) fn deployment_not_found(id: DeploymentId) -> Error {
    Error::not_found(format!("deployment {id}"))
}

pub(crate) fn deployment_exists(id: DeploymentId) -> Error {
    Error::Conflict(format!("deployment {id} already exists"))
}

/// Refuses a write the model's stored versions (`versions`, with their
/// stages now) cannot take: `NotFound` when the model has none, `Invalid`
/// when a slot names a version it lacks, when two versions would be in
/// production, or when a history row or the promotion belongs to another
/// model. Checked before anything of the write is stored.
pub(crate) fn check_write(write: &RegistryWrite, versions: &BTreeMap<u32, Stage>) -> Result<()> {
    let slots = &write.slots;
    let name = &slots.name;
    if versions.is_empty() {
        return Err(model_not_found(name, None));
    }
    let unknown = |what: String, version: u32| {
        Error::Invalid(format!(
            "{what} names version {version} of model '{name}', which does not exist"
        ))
    };
    for version in slots.stages.keys() {
        if !versions.contains_key(version) {
            return Err(unknown("a stage".into(), *version));
        }
    }
    for (alias, version) in &slots.aliases {
        if !versions.contains_key(version) {
            return Err(unknown(format!("alias '{alias}'"), *version));
        }
    }
    let production: Vec<u32> = slots
        .stages
        .iter()
        .filter(|(_, s)| **s == Stage::Production)
        .map(|(v, _)| *v)
        .collect();
    if production.len() > 1 {
        return Err(Error::Invalid(format!(
            "model '{name}' can have one production version, not {production:?}"
        )));
    }
    if let Some(h) = write.history.iter().find(|h| h.model != *name) {
        return Err(Error::Invalid(format!(
            "a history entry of model '{}' cannot be written with model '{name}'",
            h.model
        )));
    }
    let promotion = match &write.promotion {
        Some(PromotionWrite::Insert(p)) | Some(PromotionWrite::Update { promotion: p, .. }) => {
            Some(p)
        }
        None => None,
    };
    if let Some(p) = promotion.filter(|p| p.model != *name) {
        return Err(Error::Invalid(format!(
            "promotion request {} is for model '{}', not '{name}'",
            p.id, p.model
        )));
    }
    Ok(())
}

/// The stages `wanted` changes from `current`, with every move out of
/// production before any move into it (the stores' one-production index
/// checks each row as it is written).
pub(crate) fn stage_updates(
    current: &BTreeMap<u32, Stage>,
    wanted: &BTreeMap<u32, Stage>,
) -> Vec<(u32, Stage)> {
    let mut updates: Vec<(u32, Stage)> = wanted
        .iter()
        .filter(|(v, s)| current.get(v) != Some(s))
        .map(|(v, s)| (*v, *s))
        .collect();
    updates.sort_by_key(|(v, s)| (*s == Stage::Production, *v));
    updates
}

/// The write's history rows numbered after `last_seq`, the model's last.
pub(crate) fn numbered_history(write: &RegistryWrite, last_seq: u64) -> Vec<HistoryEntry> {
    write
        .history
        .iter()
        .zip(last_seq + 1..)
        .map(|(h, seq)| HistoryEntry { seq, ..h.clone() })
        .collect()
}

/// The record an update of `d` stores: its revision bumped.
pub(crate) fn bumped(d: &Deployment) -> Result<Deployment> {
    let revision = d
        .revision
        .checked_add(1)
        .ok_or_else(|| Error::Invalid(format!("deployment {}: revision out of range", d.id)))?;
    Ok(Deployment {
        revision,
        ..d.clone()
    })
}

/// A revision (or sequence number) as the SQL stores' signed integers keep it.
pub(crate) fn to_sql(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::Invalid(format!("{what} {n} is out of range")))
}

/// A revision (or sequence number) read back from a signed column.
pub(crate) fn from_sql(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| Error::Internal(format!("corrupt record: negative {what} {n}")))
}

/// A stored stage, which the schema's CHECK keeps to the known words.
pub(crate) fn stage_from_sql(s: &str) -> Result<Stage> {
    s.parse()
        .map_err(|_| Error::Internal(format!("corrupt record: unknown stage '{s}'")))
}

/// One version of a model as the SQL stores read it, with its model's
/// slots row (absent before the model's first change).
pub(crate) struct SlotRow {
    pub name: String,
    pub version: u32,
    pub stage: Stage,
    pub revision: Option<u64>,
    pub aliases: Option<BTreeMap<String, u32>>,
}

/// Rows ordered by name then version, as models' slots.
pub(crate) fn group_slots(rows: impl IntoIterator<Item = SlotRow>) -> Vec<ModelSlots> {
    let mut out: Vec<ModelSlots> = Vec::new();
    for row in rows {
        if out.last().is_none_or(|s| s.name != row.name) {
            out.push(ModelSlots {
                name: row.name.clone(),
                revision: row.revision.unwrap_or(0),
                stages: BTreeMap::new(),
                aliases: row.aliases.unwrap_or_default(),
            });
        }
        if let Some(slots) = out.last_mut() {
            slots.stages.insert(row.version, row.stage);
        }
    }
    out
}

/// The registry records of a [`MemoryStateStore`] (whose model versions
/// they belong to).
#[derive(Clone, Default)]
pub(crate) struct MemoryRegistry {
    /// Revision and aliases per model, from its first change.
    slots: BTreeMap<String, (u64, BTreeMap<String, u32>)>,
    /// Stages moved from `none`.
    stages: BTreeMap<(String, u32), Stage>,
    promotions: BTreeMap<PromotionId, Promotion>,
    deployments: BTreeMap<DeploymentId, Deployment>,
    history: BTreeMap<String, Vec<HistoryEntry>>,
    pub(crate) tags: BTreeMap<(String, Option<u32>), BTreeMap<String, String>>,
}

impl MemoryRegistry {
    /// Applies `write` as the SQL stores do, in their order; `Ok(false)`
    /// and `Err` may leave `self` half-changed, so the caller works on a copy.
    fn commit(&mut self, write: &RegistryWrite, versions: &BTreeSet<u32>) -> Result<bool> {
        let name = &write.slots.name;
        let (revision, _) = self.slots.get(name).cloned().unwrap_or_default();
        if revision != write.slots.revision {
            return Ok(false);
        }
        let current: BTreeMap<u32, Stage> = versions
            .iter()
            .map(|v| (*v, self.stage(name, *v)))
            .collect();
        check_write(write, &current)?;
        match &write.promotion {
            Some(PromotionWrite::Insert(p)) => {
                if self.promotions.contains_key(&p.id) {
                    return Err(promotion_exists(p.id));
                }
                self.promotions.insert(p.id, p.clone());
            }
            Some(PromotionWrite::Update {
                promotion,
                expected,
            }) => {
                let stored = self
                    .promotions
                    .get_mut(&promotion.id)
                    .ok_or_else(|| promotion_not_found(promotion.id))?;
                if stored.state != *expected {
                    return Ok(false);
                }
                *stored = promotion.clone();
            }
            None => {}
        }
        for (version, stage) in stage_updates(&current, &write.slots.stages) {
            self.stages.insert((name.clone(), version), stage);
        }
        let history = self.history.entry(name.clone()).or_default();
        let last = history.last().map_or(0, |h| h.seq);
        history.extend(numbered_history(write, last));
        self.slots
            .insert(name.clone(), (revision + 1, write.slots.aliases.clone()));
        Ok(true)
    }

    fn stage(&self, name: &str, version: u32) -> Stage {
        self.stages
            .get(&(name.to_string(), version))
            .copied()
            .unwrap_or(Stage::None)
    }

    fn slots_of(&self, name: &str, versions: impl Iterator<Item = u32>) -> ModelSlots {
        let (revision, aliases) = self.slots.get(name).cloned().unwrap_or_default();
        ModelSlots {
            name: name.to_string(),
            revision,
            stages: versions.map(|v| (v, self.stage(name, v))).collect(),
            aliases,
        }
    }

    fn commit_deployments(
        &mut self,
        write: &DeploymentWrite,
        versions: &BTreeSet<u32>,
    ) -> Result<bool> {
        for d in &write.inserts {
            if self.deployments.contains_key(&d.id) {
                return Err(deployment_exists(d.id));
            }
            let stored = Deployment {
                revision: 0,
                ..d.clone()
            };
            self.deployments.insert(d.id, stored);
        }
        for d in &write.updates {
            let stored = self
                .deployments
                .get_mut(&d.id)
                .ok_or_else(|| deployment_not_found(d.id))?;
            if stored.revision != d.revision {
                return Ok(false);
            }
            *stored = bumped(d)?;
        }
        match &write.registry {
            Some(registry) => self.commit(registry, versions),
            None => Ok(true),
        }
    }
}

/// Newest first by the stores' millisecond columns, then id, as SQL sorts.
fn newest_first<T, K: Ord>(items: &mut [T], key: impl Fn(&T) -> (i64, K)) {
    items.sort_by_key(|t| std::cmp::Reverse(key(t)));
}

fn truncate<T>(items: &mut Vec<T>, limit: Option<u32>) {
    if let Some(limit) = limit {
        items.truncate(limit as usize);
    }
}

/// The version numbers of model `name`.
fn versions_of(g: &Inner, name: &str) -> BTreeSet<u32> {
    g.models
        .keys()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .collect()
}

#[async_trait]
impl RegistryStore for MemoryStateStore {
    async fn model_slots(&self, name: &str) -> Result<ModelSlots> {
        let g = self.lock();
        let versions = versions_of(&g, name);
        if versions.is_empty() {
            return Err(model_not_found(name, None));
        }
        Ok(g.registry.slots_of(name, versions.into_iter()))
    }

    async fn all_slots(&self) -> Result<Vec<ModelSlots>> {
        let g = self.lock();
        let mut by_name: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (name, version) in g.models.keys() {
            by_name.entry(name.as_str()).or_default().push(*version);
        }
        Ok(by_name
            .into_iter()
            .map(|(name, versions)| g.registry.slots_of(name, versions.into_iter()))
            .collect())
    }

    async fn commit_registry(&self, write: RegistryWrite) -> Result<bool> {
        let mut g = self.lock();
        let versions = versions_of(&g, &write.slots.name);
        let mut next = g.registry.clone();
        let won = next.commit(&write, &versions)?;
        if won {
            g.registry = next;
        }
        Ok(won)
    }

    async fn get_promotion(&self, id: PromotionId) -> Result<Promotion> {
        self.lock()
            .registry
            .promotions
            .get(&id)
            .cloned()
            .ok_or_else(|| promotion_not_found(id))
    }

    async fn list_promotions(&self, filter: &PromotionFilter) -> Result<Vec<Promotion>> {
        let g = self.lock();
        let mut out: Vec<Promotion> = g
            .registry
            .promotions
            .values()
            .filter(|p| filter.model.as_ref().is_none_or(|m| p.model == *m))
            .filter(|p| filter.state.is_none_or(|s| p.state == s))
            .cloned()
            .collect();
        newest_first(&mut out, |p| (p.requested_at.timestamp_millis(), p.id));
        truncate(&mut out, filter.limit);
        Ok(out)
    }

    async fn commit_deployments(&self, write: DeploymentWrite) -> Result<bool> {
        let mut g = self.lock();
        let versions = match &write.registry {
            Some(r) => versions_of(&g, &r.slots.name),
            None => BTreeSet::new(),
        };
        let mut next = g.registry.clone();
        let won = next.commit_deployments(&write, &versions)?;
        if won {
            g.registry = next;
        }
        Ok(won)
    }

    async fn get_deployment(&self, id: DeploymentId) -> Result<Deployment> {
        self.lock()
            .registry
            .deployments
            .get(&id)
            .cloned()
            .ok_or_else(|| deployment_not_found(id))
    }

    async fn list_deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>> {
        let g = self.lock();
        let mut out: Vec<Deployment> = g
            .registry
            .deployments
            .values()
            .filter(|d| filter.model.as_ref().is_none_or(|m| d.model == *m))
            .filter(|d| filter.target.is_none_or(|t| d.target == t))
            .filter(|d| filter.state.is_none_or(|s| d.state == s))
            .cloned()
            .collect();
        newest_first(&mut out, |d| (d.created_at.timestamp_millis(), d.id));
        truncate(&mut out, filter.limit);
        Ok(out)
    }

    async fn live_deployments(&self, target: Target) -> Result<Vec<Deployment>> {
        let g = self.lock();
        let mut out: Vec<Deployment> = g
            .registry
            .deployments
            .values()
            .filter(|d| d.target == target && d.state == DeploymentState::Live)
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            let key = |d: &Deployment| (d.created_at.timestamp_millis(), d.id);
            a.model.cmp(&b.model).then(key(b).cmp(&key(a)))
        });
        Ok(out)
    }

    async fn model_history(
        &self,
        name: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>> {
        let g = self.lock();
        Ok(g.registry
            .history
            .get(name)
            .map(|h| {
                h.iter()
                    .filter(|e| e.seq > after_seq)
                    .take(limit as usize)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn set_tags(
        &self,
        name: &str,
        version: Option<u32>,
        tags: BTreeMap<String, String>,
    ) -> Result<()> {
        let mut g = self.lock();
        let versions = versions_of(&g, name);
        let known = match version {
            Some(v) => versions.contains(&v),
            None => !versions.is_empty(),
        };
        if !known {
            return Err(model_not_found(name, version));
        }
        g.registry.tags.insert((name.to_string(), version), tags);
        Ok(())
    }

    async fn tags(&self, name: &str) -> Result<ModelTags> {
        let g = self.lock();
        if versions_of(&g, name).is_empty() {
            return Err(model_not_found(name, None));
        }
        let mut out = ModelTags::default();
        for ((_, version), tags) in g
            .registry
            .tags
            .range((name.to_string(), None)..)
            .take_while(|((n, _), _)| n == name)
            .filter(|(_, tags)| !tags.is_empty())
        {
            match version {
                None => out.model = tags.clone(),
                Some(v) => {
                    out.versions.insert(*v, tags.clone());
                }
            }
        }
        Ok(out)
    }
}
