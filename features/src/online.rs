//! The online store: the newest value of each (feature version, entity),
//! for serving, with one write rule for every backend.
//!
//! The rule: a write replaces the stored value only if its event time is
//! later, or its event time is equal and it was ingested later. That is the
//! offline store's tie rule (ties go to the later ingestion), so a value
//! served online is the value a training row at the same time sees; an
//! older event, or a replay of the same event, never overwrites. Reads
//! apply the feature's ttl at the time of the read, as the offline join
//! applies it at the row's time.

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracseq_core::Result;

use crate::pit::AsOf;
use crate::time::Micros;

/// A value with its event and ingestion times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub value: Value,
    pub event_time: Micros,
    pub ingested_at: Micros,
}

impl Stamped {
    /// The value a read at `now` with `ttl` (microseconds) may serve.
    pub fn visible(&self, now: Micros, ttl: Option<i64>) -> bool {
        AsOf {
            time: now,
            ttl,
            exclude_ingested_after: false,
        }
        .admits(self.event_time, self.ingested_at)
    }
}

/// Whether `incoming` replaces `current` under the write rule.
pub fn replaces(incoming: &Stamped, current: Option<&Stamped>) -> bool {
    current
        .is_none_or(|c| (incoming.event_time, incoming.ingested_at) > (c.event_time, c.ingested_at))
}

/// One write: `feature` is a feature version's key (`name@version`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineWrite {
    pub feature: String,
    pub entity: String,
    pub value: Stamped,
}

/// A backend of the online store (in process, Redis).
#[async_trait]
pub trait OnlineStore: Send + Sync {
    /// Applies `writes` under the write rule; returns how many replaced
    /// (or created) a stored value.
    async fn put(&self, writes: &[OnlineWrite]) -> Result<usize>;
    /// The stored values of `features` (version keys) for `entity`, in
    /// order; no ttl applied (see [`Stamped::visible`]).
    async fn get(&self, entity: &str, features: &[String]) -> Result<Vec<Option<Stamped>>>;
}

const SHARDS: usize = 32;

/// The in-process online store: sharded hash maps behind read-write locks.
pub struct MemoryOnlineStore {
    shards: Vec<RwLock<HashMap<String, HashMap<String, Stamped>>>>,
}

impl Default for MemoryOnlineStore {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl MemoryOnlineStore {
    fn shard(&self, entity: &str) -> &RwLock<HashMap<String, HashMap<String, Stamped>>> {
        // FNV-1a: cheap and stable; the shard only spreads lock contention.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in entity.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// Applies one write; true when it replaced or created the value.
    pub fn put_one(&self, write: &OnlineWrite) -> bool {
        let mut shard = self
            .shard(&write.entity)
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let features = shard.entry(write.entity.clone()).or_default();
        if replaces(&write.value, features.get(&write.feature)) {
            features.insert(write.feature.clone(), write.value.clone());
            true
        } else {
            false
        }
    }

    pub fn get_now(&self, entity: &str, features: &[String]) -> Vec<Option<Stamped>> {
        let shard = self.shard(entity).read().unwrap_or_else(|p| p.into_inner());
        let stored = shard.get(entity);
        features
            .iter()
            .map(|f| stored.and_then(|s| s.get(f)).cloned())
            .collect()
    }
}

#[async_trait]
impl OnlineStore for MemoryOnlineStore {
    async fn put(&self, writes: &[OnlineWrite]) -> Result<usize> {
        Ok(writes.iter().filter(|w| self.put_one(w)).count())
    }

    async fn get(&self, entity: &str, features: &[String]) -> Result<Vec<Option<Stamped>>> {
        Ok(self.get_now(entity, features))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stamped(value: Value, event_time: Micros, ingested_at: Micros) -> Stamped {
        Stamped {
            value,
            event_time,
            ingested_at,
        }
    }

    #[test]
    fn the_write_rule_keeps_the_newest_event_and_breaks_ties_by_ingestion() {
        let current = stamped(json!(1), 10, 10);
        assert!(replaces(&current, None));
        assert!(
            replaces(&stamped(json!(2), 11, 5), Some(&current)),
            "a later event wins even if ingested earlier"
        );
        assert!(
            !replaces(&stamped(json!(2), 9, 99), Some(&current)),
            "an older event never overwrites"
        );
        assert!(
            replaces(&stamped(json!(2), 10, 11), Some(&current)),
            "same event, later ingestion: the correction wins"
        );
        assert!(
            !replaces(&stamped(json!(2), 10, 10), Some(&current)),
            "a replay of the same write changes nothing"
        );
    }

    #[test]
    fn reads_apply_the_ttl_at_the_time_of_the_read() {
        let v = stamped(json!(1), 100, 100);
        assert!(v.visible(100, None));
        assert!(v.visible(150, Some(50)));
        assert!(!v.visible(151, Some(50)));
        assert!(
            !v.visible(99, None),
            "an event after the read's time is not served"
        );
    }

    #[tokio::test]
    async fn the_memory_store_follows_the_rule_in_any_write_order() {
        let store = MemoryOnlineStore::default();
        let w = |value: i64, event: Micros, ingested: Micros| OnlineWrite {
            feature: "rin@1".into(),
            entity: "S-1".into(),
            value: stamped(json!(value), event, ingested),
        };
        let writes = [
            w(3, 30, 31),
            w(1, 10, 11),
            w(2, 20, 21),
            w(4, 30, 40),
            w(5, 30, 35),
        ];
        assert_eq!(store.put(&writes).await.ok(), Some(2));
        let got = store
            .get("S-1", &["rin@1".into(), "age@1".into()])
            .await
            .unwrap_or_default();
        assert_eq!(got, vec![Some(stamped(json!(4), 30, 40)), None]);
        assert_eq!(
            store
                .get("S-2", &["rin@1".into()])
                .await
                .unwrap_or_default(),
            vec![None]
        );
    }
}
