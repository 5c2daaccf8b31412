//! The worker fleet as the store records it: each worker's capacity, live
//! GPU figures and the jobs it holds, upserted on every heartbeat.

use crate::ids::{JobId, WorkerId};
use crate::resources::{ResourceRequest, WorkerCapacity};
use crate::types::JobKind;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Heartbeats a worker may miss before it counts as dead: one late beat
/// (a long GC pause, a slow store write) must not flap it.
pub const MISSED_HEARTBEATS_BEFORE_DEAD: i32 = 3;

/// The devices a job was given on its worker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuAssignment {
    /// GPU indices on the worker (NVML order) with the share of each.
    pub devices: Vec<AssignedGpu>,
    /// What the job's process sees as `CUDA_VISIBLE_DEVICES` ("" = none).
    pub cuda_visible_devices: String,
}

/// A share of one GPU: what placement gives a job on a device, what a job
/// records it holds, and what a device has reserved in all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssignedGpu {
    /// NVML index on the worker.
    pub index: u32,
    /// Thousandths of the device: 1000 for a whole GPU, 250 for `gpus: 0.25`.
    pub share_milli: u32,
    /// GPU memory reserved on it: what a share asked for, or the whole
    /// device's memory for a whole-device job (nobody else can use it).
    pub memory_mb: u64,
}

/// A job a worker is running, with what it reserved there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunningJob {
    pub job_id: JobId,
    pub kind: JobKind,
    pub attempt: u32,
    pub resources: ResourceRequest,
    #[serde(default)]
    pub gpus: GpuAssignment,
    pub started_at: DateTime<Utc>,
}

/// One worker's row: written by the worker, read by the scheduler (for
/// placement feasibility) and by `GET /workers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub id: WorkerId,
    /// Queues it consumes, e.g. `["gpu", "cpu"]`.
    pub resource_classes: Vec<String>,
    pub slots: u16,
    pub capacity: WorkerCapacity,
    /// Where the GPU list comes from: `nvml`, `configured` or `none`.
    pub inventory: String,
    pub running: Vec<RunningJob>,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat_at: DateTime<Utc>,
    /// The worker's heartbeat interval, so readers judge liveness by the
    /// worker's own cadence rather than a global guess.
    pub heartbeat_ms: u64,
    /// Set by a clean shutdown: gone, not dead.
    #[serde(default)]
    pub stopped: bool,
    /// The worker's build, to spot a fleet mid-upgrade.
    pub version: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerStatus {
    Alive,
    /// Heartbeats stopped without a shutdown: crashed, killed or cut off.
    Dead,
    Stopped,
}

impl WorkerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Alive => "alive",
            WorkerStatus::Dead => "dead",
            WorkerStatus::Stopped => "stopped",
        }
    }
}

impl WorkerRecord {
    pub fn status(&self, now: DateTime<Utc>) -> WorkerStatus {
        if self.stopped {
            return WorkerStatus::Stopped;
        }
        let every = Duration::milliseconds(self.heartbeat_ms.clamp(100, 3_600_000) as i64);
        if now - self.last_heartbeat_at > every * MISSED_HEARTBEATS_BEFORE_DEAD {
            WorkerStatus::Dead
        } else {
            WorkerStatus::Alive
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn record(at: DateTime<Utc>) -> WorkerRecord {
        WorkerRecord {
            id: WorkerId("w".into()),
            resource_classes: vec!["cpu".into()],
            slots: 2,
            capacity: WorkerCapacity::default(),
            inventory: "none".into(),
            running: vec![],
            started_at: at,
            last_heartbeat_at: at,
            heartbeat_ms: 1_000,
            stopped: false,
            version: "test".into(),
        }
    }

    #[test]
    fn liveness_follows_the_workers_own_heartbeat_interval() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut w = record(t);
        assert_eq!(w.status(t + Duration::seconds(3)), WorkerStatus::Alive);
        assert_eq!(
            w.status(t + Duration::milliseconds(3_001)),
            WorkerStatus::Dead
        );
        w.heartbeat_ms = 10_000;
        assert_eq!(w.status(t + Duration::seconds(29)), WorkerStatus::Alive);
        w.stopped = true;
        assert_eq!(w.status(t + Duration::hours(1)), WorkerStatus::Stopped);
    }
}
