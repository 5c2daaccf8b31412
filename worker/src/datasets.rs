//! A small per-process cache of parsed data sets: every trial of an
//! experiment reads the same CSV, and parsing it each time would dominate
//! short trials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracseq_core::ports::ArtifactPath;
use tracseq_core::{DatasetId, Error, Platform, Result};
use tracseq_learn::dataset::{Dataset, Limits};

pub struct DatasetCache {
    limits: Limits,
    capacity: usize,
    entries: Mutex<HashMap<DatasetId, (u64, Arc<Dataset>)>>,
    clock: std::sync::atomic::AtomicU64,
}

impl DatasetCache {
    pub fn new(limits: Limits, capacity: usize) -> Self {
        DatasetCache {
            limits,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
            clock: Default::default(),
        }
    }

    pub async fn get(&self, platform: &Platform, id: DatasetId) -> Result<Arc<Dataset>> {
        let tick = self
            .clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.0 = tick;
            return Ok(entry.1.clone());
        }
        let record = platform.state.get_dataset(id).await?;
        let path = ArtifactPath::parse(&record.artifact_path)?;
        let bytes = platform.artifacts.get(&path).await?;
        let digest = tracseq_core::digest::sha256_hex(&bytes);
        if digest != record.sha256 {
            return Err(Error::Internal(format!(
                "dataset {id}: stored bytes do not match their digest (expected {}, got {digest})",
                record.sha256
            )));
        }
        let limits = self.limits;
        let data = tokio::task::spawn_blocking(move || Dataset::from_csv(&bytes, &limits))
            .await
            .map_err(|e| Error::Internal(format!("dataset parser panicked: {e}")))?
            .map_err(|e| Error::Invalid(format!("dataset {id}: {e}")))?;
        let data = Arc::new(data);
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            // Evict the least recently used entry.
            if let Some(oldest) = entries.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k) {
                entries.remove(&oldest);
            }
        }
        entries.insert(id, (tick, data.clone()));
        Ok(data)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DatasetId, (u64, Arc<Dataset>)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}
