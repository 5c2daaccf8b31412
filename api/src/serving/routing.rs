//! A request without version or alias, routed by its model's live
//! deployment: the traffic policy's slots with their versions loaded, the
//! sticky choice of one, and the shadow that gets a copy.
//!
//! A [`Routed`] is built once per deployment revision by the replica's
//! poller (every version it names loaded and digest-checked first), so
//! choosing costs one hash of the entity id (or one random number) and a
//! scan of a few slots.

use super::LoadedModel;
use std::sync::Arc;
use tracseq_core::ids::DeploymentId;
use tracseq_core::lifecycle::traffic::{self, Shadow, BUCKETS, PRIMARY};

/// One slot of a deployment's traffic, its version loaded.
pub struct RoutedSlot {
    pub variant: String,
    /// Buckets below this (and not below the slot before) come here.
    pub upper: u32,
    pub model: Arc<LoadedModel>,
}

/// A live platform deployment as this replica serves it.
pub struct Routed {
    pub deployment: DeploymentId,
    /// The deployment's own version (primary, or the canary).
    pub version: u32,
    /// The record's revision this was built from.
    pub revision: u64,
    pub slots: Vec<RoutedSlot>,
    pub shadow: Option<Shadow>,
}

/// The model that answers one request, and through which arm.
pub struct Answerer {
    pub model: Arc<LoadedModel>,
    route: Option<(Arc<Routed>, usize)>,
}

impl Answerer {
    /// A request that named its version (or alias): no policy applies.
    pub fn pinned(model: Arc<LoadedModel>) -> Answerer {
        Answerer { model, route: None }
    }

    /// The variant that answers ([`PRIMARY`] for a pinned request).
    pub fn variant(&self) -> &str {
        match &self.route {
            Some((r, i)) => &r.slots[*i].variant,
            None => PRIMARY,
        }
    }

    pub fn deployment(&self) -> Option<DeploymentId> {
        self.route.as_ref().map(|(r, _)| r.deployment)
    }

    /// The deployment that routed this request, if one did.
    pub fn routed(&self) -> Option<&Arc<Routed>> {
        self.route.as_ref().map(|(r, _)| r)
    }

    /// The shadow that gets a copy of this request, if any.
    pub fn shadow(&self) -> Option<&Shadow> {
        self.route.as_ref().and_then(|(r, _)| r.shadow.as_ref())
    }
}

impl Routed {
    /// The slot for a request: by its entity id's sticky bucket, else at
    /// random.
    pub fn pick(self: &Arc<Self>, entity_id: Option<&str>) -> Answerer {
        let i = if self.slots.len() == 1 {
            0
        } else {
            let bucket = match entity_id {
                Some(e) => traffic::bucket(self.deployment, e),
                None => rand::random::<u32>() % BUCKETS,
            };
            traffic::slot_of(self.slots.iter().map(|s| s.upper), bucket)
        };
        Answerer {
            model: self.slots[i].model.clone(),
            route: Some((self.clone(), i)),
        }
    }
}
