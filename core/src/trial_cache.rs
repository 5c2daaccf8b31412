//! Each experiment's trials, kept decoded between reads.
//!
//! Every ask, report and scheduler pass needs all of an experiment's
//! trials. Reading and decoding them from the state store each time makes
//! an ask cost O(trials): 37 ms at 10,000 trials, nearly all of it the read
//! (bench/RESULTS.md, "Ask cost"). But a finished trial never changes: a
//! store moves a running trial to its final state once, and refuses
//! intermediate values after that. So a copy stays correct if each refresh
//! fetches again only the trials numbered past the copy and those the copy
//! holds as running ([`StateStore::list_trials_since`]). Numbers are dense
//! and assigned in commit order, so the copy is a prefix `0..n`; a refresh
//! that finds a gap (a store that broke that rule) reads everything.
//!
//! The copy is a cache only: any process may write the store (other API
//! replicas, workers), and every read goes to the store for what may have
//! changed, so a reader sees what a full `list_trials` would show then.

use crate::ids::ExperimentId;
use crate::ports::StateStore;
use crate::types::{Trial, TrialState};
use crate::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many trials, over all experiments, the cache keeps by default
/// (about 1 KB each decoded); the least recently read experiments go first.
pub const DEFAULT_MAX_TRIALS: usize = 200_000;

pub struct TrialCache {
    max_trials: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// Bumped on every read; an entry's stamp says when it was last read.
    clock: u64,
    total: usize,
    map: HashMap<ExperimentId, (u64, Arc<Vec<Trial>>)>,
}

impl Default for TrialCache {
    fn default() -> Self {
        TrialCache::new(DEFAULT_MAX_TRIALS)
    }
}

impl TrialCache {
    pub fn new(max_trials: usize) -> Self {
        TrialCache {
            max_trials,
            inner: Mutex::new(Entries::default()),
        }
    }

    /// All trials of `experiment` by number, as `store.list_trials` would
    /// return them now.
    pub async fn trials(
        &self,
        store: &dyn StateStore,
        experiment: ExperimentId,
    ) -> Result<Arc<Vec<Trial>>> {
        // Taken out while it is refreshed, so that when no earlier reader
        // still holds it the refresh updates it in place instead of copying.
        // A concurrent read of the same experiment meanwhile reads it whole.
        let held = self.take(experiment);
        let fresh = match held {
            Some(mut copy) => {
                let running: Vec<u64> = copy
                    .iter()
                    .filter(|t| t.state == TrialState::Running)
                    .map(|t| t.number)
                    .collect();
                let changed = store
                    .list_trials_since(experiment, copy.len() as u64, &running)
                    .await?;
                if merge(Arc::make_mut(&mut copy), changed) {
                    copy
                } else {
                    Arc::new(store.list_trials(experiment).await?)
                }
            }
            None => Arc::new(store.list_trials(experiment).await?),
        };
        // A merged copy is dense by construction; a full read is checked
        // once here, and one with a gap is answered but never kept.
        if is_dense(&fresh) {
            self.put(experiment, fresh.clone());
        }
        Ok(fresh)
    }

    /// Forgets every copy (tests; an operator restoring a store under a
    /// running process would need it too).
    pub fn clear(&self) {
        let mut g = self.lock();
        g.map.clear();
        g.total = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The entries are always consistent between statements, so a panic
        // elsewhere while holding the lock leaves nothing half-done.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, experiment: ExperimentId) -> Option<Arc<Vec<Trial>>> {
        let mut g = self.lock();
        let (_, copy) = g.map.remove(&experiment)?;
        g.total -= copy.len();
        Some(copy)
    }

    fn put(&self, experiment: ExperimentId, copy: Arc<Vec<Trial>>) {
        if copy.len() > self.max_trials {
            return;
        }
        let mut g = self.lock();
        g.clock += 1;
        let stamp = g.clock;
        g.total += copy.len();
        if let Some((_, old)) = g.map.insert(experiment, (stamp, copy)) {
            // A concurrent reader put its copy back first; both are valid.
            g.total -= old.len();
        }
        while g.total > self.max_trials {
            let Some(oldest) = g
                .map
                .iter()
                .filter(|(id, _)| **id != experiment)
                .min_by_key(|(_, (stamp, _))| *stamp)
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some((_, evicted)) = g.map.remove(&oldest) {
                g.total -= evicted.len();
            }
        }
    }
}

/// Whether `trials` are exactly the numbers `0..n`, in order.
fn is_dense(trials: &[Trial]) -> bool {
    trials.iter().enumerate().all(|(i, t)| t.number == i as u64)
}

/// Applies what a refresh read to a dense copy of `0..copy.len()`: replaces
/// the re-read trials and appends the new ones, so the copy stays dense.
/// `false` (the copy partly updated, to be dropped) when `changed` skips a
/// number, which a store's dense numbering rules out.
fn merge(copy: &mut Vec<Trial>, changed: Vec<Trial>) -> bool {
    for t in changed {
        let Ok(i) = usize::try_from(t.number) else {
            return false;
        };
        match i.cmp(&copy.len()) {
            std::cmp::Ordering::Less => copy[i] = t,
            std::cmp::Ordering::Equal => copy.push(t),
            std::cmp::Ordering::Greater => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    //! The cache over every store (that it follows each change a full read
    //! would show) is part of the `StateStore` conformance suite in
    //! `tracseq-backends`; these are the store-free parts.
    use super::*;
    use chrono::Utc;
    use serde_json::Map;

    fn trials(experiment: ExperimentId, n: u64) -> Arc<Vec<Trial>> {
        let t = |i| Trial::new_running(experiment, i, Map::new(), None, Utc::now());
        Arc::new((0..n).map(t).collect())
    }

    #[test]
    fn evicts_the_least_recently_read_experiment_past_its_bound() {
        let cache = TrialCache::new(5);
        let (a, b) = (ExperimentId::new(), ExperimentId::new());
        cache.put(a, trials(a, 3));
        cache.put(b, trials(b, 3));
        let g = cache.lock();
        assert_eq!(g.total, 3);
        assert!(g.map.contains_key(&b) && !g.map.contains_key(&a));
    }

    #[test]
    fn a_copy_larger_than_the_bound_is_not_kept() {
        let cache = TrialCache::new(2);
        let a = ExperimentId::new();
        cache.put(a, trials(a, 3));
        assert_eq!(cache.lock().total, 0);
        assert!(cache.take(a).is_none());
    }

    #[test]
    fn a_gap_in_the_numbers_is_refused() {
        let t = |n: u64| Trial::new_running(ExperimentId::new(), n, Map::new(), None, Utc::now());
        let mut copy = vec![t(0), t(1)];
        assert!(merge(&mut copy, vec![t(1), t(2)]));
        assert_eq!(copy.len(), 3);
        assert!(!merge(&mut copy, vec![t(4)]));
        assert!(is_dense(&copy) && !is_dense(&[t(0), t(2)]));
    }
}
