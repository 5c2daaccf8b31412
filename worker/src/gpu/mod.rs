//! The worker's GPU inventory: read from NVML where a driver exists, else
//! from configuration, else none — and the host capacity reported with it.

mod configured;
mod host;
mod nvml;

pub use configured::{parse_gpu_list, ConfiguredInventory};
pub use host::{
    capacity, host_cpus, host_memory_mb, parse_cgroup_limit_mb, parse_meminfo_total_mb,
};
pub use nvml::NvmlInventory;

use tracseq_core::resources::GpuInfo;
use tracseq_core::Result;

/// Where a worker's GPUs come from; snapshots are taken per heartbeat.
pub trait GpuInventory: Send + Sync {
    /// "nvml", "configured" or "none", for logs and `GET /workers`.
    fn name(&self) -> &str;
    /// The devices now, sorted by index. Cheap enough to call per heartbeat.
    fn snapshot(&self) -> Vec<GpuInfo>;
}

/// Picks the inventory: the configured list when given (an operator's word
/// beats probing, and makes placement testable anywhere), else NVML, else
/// none. The note, when present, says why the worker has no GPU and should
/// be logged once at start-up. A bad configured list is an error, so the
/// worker does not start with a capacity the operator did not mean.
pub fn detect(configured: Option<&str>) -> Result<(Box<dyn GpuInventory>, Option<String>)> {
    if let Some(spec) = configured {
        return Ok((Box::new(ConfiguredInventory::parse(spec)?), None));
    }
    match NvmlInventory::init() {
        Ok(inv) if inv.snapshot().is_empty() => Ok((
            Box::new(inv),
            Some("NVML found no usable GPU; running as a CPU worker".into()),
        )),
        Ok(inv) => Ok((Box::new(inv), None)),
        Err(note) => Ok((Box::new(ConfiguredInventory::none()), Some(note))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_wins_and_bad_configuration_is_an_error() {
        let (inv, note) = detect(Some("0:A100:81920,1:A100:81920")).unwrap();
        assert_eq!(
            (inv.name(), inv.snapshot().len(), note),
            ("configured", 2, None)
        );
        let (inv, _) = detect(Some("none")).unwrap();
        assert_eq!((inv.name(), inv.snapshot().len()), ("none", 0));
        let e = detect(Some("0:A100:81920,0:A100:81920")).err().unwrap();
        assert!(e.to_string().contains("index 0 is listed twice"), "{e}");
    }

    /// Without a driver this proves detection degrades to a CPU worker with
    /// a note; on a GPU host (`TRACSEQ_EXPECT_GPUS=n`) it checks real NVML
    /// readings instead.
    #[test]
    fn detection_without_configuration_never_panics() {
        let (inv, note) = detect(None).unwrap();
        let gpus = inv.snapshot();
        let expected: usize = std::env::var("TRACSEQ_EXPECT_GPUS")
            .map(|v| v.parse().expect("TRACSEQ_EXPECT_GPUS is a count"))
            .unwrap_or(0);
        assert_eq!(gpus.len(), expected, "inventory {}: {gpus:?}", inv.name());
        if expected == 0 {
            let note = note.expect("a worker without GPUs says why");
            assert!(note.ends_with("running as a CPU worker"), "{note}");
            return;
        }
        assert_eq!((inv.name(), note), ("nvml", None));
        for (i, g) in gpus.iter().enumerate() {
            assert_eq!(g.index as usize, i);
            assert!(g.uuid.starts_with("GPU-"), "{g:?}");
            assert!(!g.name.is_empty() && g.name != "unknown", "{g:?}");
            assert!(g.memory_total_mb > 1024, "{g:?}");
            assert!(
                g.memory_free_mb.is_some_and(|f| f <= g.memory_total_mb),
                "{g:?}"
            );
            eprintln!("{}", serde_json::to_string(g).unwrap());
        }
        let cap = capacity(inv.as_ref());
        cap.validate().unwrap();
        eprintln!("capacity: {}", cap.describe());
    }
}
