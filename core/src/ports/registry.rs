//! `RegistryStore`: the model lifecycle's records — each model's stages and
//! aliases, promotion requests, deployments and the history of every move.
//!
//! Its own port, like [`super::SecurityStore`]: the api and the scheduler
//! change these records, a worker never does (a deploy job reports its
//! result like any job and the scheduler moves the deployment), so a
//! worker's database role needs no grant on them. Every change is one write
//! guarded by compare-and-set: the pure rules in [`crate::registry`] and
//! [`crate::lifecycle`] compute it from what was read, and a lost race is
//! re-read and recomputed, never merged.

use crate::ids::{DeploymentId, PromotionId};
use crate::lifecycle::deployment::{Deployment, DeploymentState, Target};
use crate::lifecycle::promotion::{Promotion, PromotionState};
use crate::registry::{Effect, ModelSlots};
use crate::security::Actor;
use crate::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One row of a model's history: one stage or alias move, who asked, who
/// approved and through which request or deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Assigned by the store, increasing within a model (0 before storing).
    pub seq: u64,
    pub model: String,
    pub at: DateTime<Utc>,
    pub change: Effect,
    /// Who asked (the requester of a promotion, the caller of a rollback).
    pub requested_by: Option<Actor>,
    /// Who approved it, where approval was needed.
    pub approved_by: Option<Actor>,
    pub promotion_id: Option<PromotionId>,
    pub deployment_id: Option<DeploymentId>,
    pub reason: Option<String>,
}

/// A promotion record written with a registry change.
#[derive(Clone, Debug, PartialEq)]
pub enum PromotionWrite {
    /// A new request.
    Insert(Promotion),
    /// A decided request, written only if the stored one is still in `expected`.
    Update {
        promotion: Promotion,
        expected: PromotionState,
    },
}

/// One atomic change of a model's registry records.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryWrite {
    /// The slots as computed, with `revision` still the one they were read
    /// at; stored as `revision + 1` only if the stored revision still equals it.
    pub slots: ModelSlots,
    /// Appended to the model's history (their `seq` is assigned).
    pub history: Vec<HistoryEntry>,
    pub promotion: Option<PromotionWrite>,
}

/// Deployment records changed together, with the registry change that
/// goes with them (a rollback restores the production stage).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DeploymentWrite {
    /// New records, stored at revision 0 (`Conflict` if the id exists).
    pub inserts: Vec<Deployment>,
    /// Changed records, each written only if the stored revision still
    /// equals its `revision`, and stored as `revision + 1`.
    pub updates: Vec<Deployment>,
    pub registry: Option<RegistryWrite>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromotionFilter {
    pub model: Option<String>,
    pub state: Option<PromotionState>,
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeploymentFilter {
    pub model: Option<String>,
    pub target: Option<Target>,
    pub state: Option<DeploymentState>,
    pub limit: Option<u32>,
}

#[async_trait]
pub trait RegistryStore: Send + Sync {
    /// The model's slots: every registered version's stage (`none` until
    /// moved), its aliases and its revision (0 before its first change).
    /// `NotFound` naming the model when it has no version.
    async fn model_slots(&self, name: &str) -> Result<ModelSlots>;
    /// The slots of every model that has a version, by name.
    async fn all_slots(&self) -> Result<Vec<ModelSlots>>;

    /// Stores `write` in one transaction. `Ok(false)` when the model's
    /// revision moved since `write.slots` was read, or the promotion is no
    /// longer in its expected state: nothing is written, the caller re-reads.
    /// A slot naming a version the model does not have is `Invalid`.
    async fn commit_registry(&self, write: RegistryWrite) -> Result<bool>;

    async fn get_promotion(&self, id: PromotionId) -> Result<Promotion>;
    /// Newest first.
    async fn list_promotions(&self, filter: &PromotionFilter) -> Result<Vec<Promotion>>;

    /// Stores `write` in one transaction (with its registry change, if
    /// any): all or nothing. `Ok(false)` when any record's revision moved,
    /// or the registry's did.
    async fn commit_deployments(&self, write: DeploymentWrite) -> Result<bool>;
    async fn get_deployment(&self, id: DeploymentId) -> Result<Deployment>;
    /// Newest first.
    async fn list_deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>>;
    /// The live deployment of each model on `target`, by model name: what
    /// every api replica polls to know which version to serve.
    async fn live_deployments(&self, target: Target) -> Result<Vec<Deployment>>;

    /// The model's history, oldest first, after `after_seq`, at most `limit`.
    async fn model_history(
        &self,
        name: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>>;

    /// Replaces the tags of a model (`version = None`) or of one version.
    /// `NotFound` for a model or version that does not exist.
    async fn set_tags(
        &self,
        name: &str,
        version: Option<u32>,
        tags: BTreeMap<String, String>,
    ) -> Result<()>;
    /// The tags of a model and of each of its versions (versions without
    /// tags are absent).
    async fn tags(&self, name: &str) -> Result<ModelTags>;
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelTags {
    pub model: BTreeMap<String, String>,
    pub versions: BTreeMap<u32, BTreeMap<String, String>>,
}
