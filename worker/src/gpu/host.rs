//! The host's cpus and memory: the non-GPU half of a worker's capacity.

use super::GpuInventory;
use tracseq_core::resources::WorkerCapacity;

const MIB: u64 = 1024 * 1024;

/// What the worker reports in heartbeats: host cpus and memory plus a
/// fresh GPU snapshot.
pub fn capacity(gpus: &dyn GpuInventory) -> WorkerCapacity {
    WorkerCapacity {
        cpus: host_cpus(),
        memory_mb: host_memory_mb(),
        gpus: gpus.snapshot(),
    }
}

/// Cpus this process may use; `available_parallelism` already honours
/// affinity masks and cgroup cpu quotas, which is what a container gets.
pub fn host_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// MemTotal, lowered to the cgroup's memory limit when one is set (a
/// container sees the host's whole MemTotal but is killed at its limit).
/// 0 when neither can be read, so that no job with a memory reservation
/// lands on a host of unknown size.
pub fn host_memory_mb() -> u64 {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let total = read("/proc/meminfo").and_then(|t| parse_meminfo_total_mb(&t));
    let limit = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|t| parse_cgroup_limit_mb(&t));
    match (total, limit) {
        (Some(t), Some(l)) => t.min(l),
        (t, l) => t.or(l).unwrap_or(0),
    }
}

/// MemTotal from `/proc/meminfo` (given in KiB there) in MiB.
pub fn parse_meminfo_total_mb(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(kib / 1024),
        Some(_) => None,
    }
}

/// A cgroup memory limit in bytes (v2 `memory.max`, v1
/// `memory.limit_in_bytes`) in MiB; None for "max" (no limit).
pub fn parse_cgroup_limit_mb(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().map(|b| b / MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_read_in_mib() {
        let text = "MemTotal:       16318256 kB\nMemFree:         1234567 kB\nMemAvailable:   9000000 kB\n";
        assert_eq!(parse_meminfo_total_mb(text), Some(15935));
        let later = "MemFree: 1 kB\nMemTotal: 2048 kB\n";
        assert_eq!(parse_meminfo_total_mb(later), Some(2));
        assert_eq!(parse_meminfo_total_mb("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo_total_mb("MemTotal: lots kB\n"), None);
        assert_eq!(parse_meminfo_total_mb("MemTotal: 1024 MB\n"), None);
    }

    #[test]
    fn cgroup_limits_are_bytes_or_max() {
        assert_eq!(parse_cgroup_limit_mb("8589934592\n"), Some(8192));
        assert_eq!(parse_cgroup_limit_mb("max\n"), None);
        // cgroup v1's "unlimited" is a huge number; min() with MemTotal absorbs it.
        assert_eq!(
            parse_cgroup_limit_mb("9223372036854771712"),
            Some(8796093022207)
        );
    }

    #[test]
    fn this_host_reports_some_cpus_and_memory() {
        assert!(host_cpus() >= 1.0);
        if cfg!(target_os = "linux") {
            assert!(host_memory_mb() > 0);
        }
    }
}
