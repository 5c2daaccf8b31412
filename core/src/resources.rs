//! What a job asks for (cpus, memory, GPUs) and what a worker reports it has.
//!
//! Memory is counted in MiB everywhere; the fields keep the `_mb` suffix that
//! nvidia-smi and most schedulers use for the same unit.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Fractional amounts (cpus, GPU shares) are whole thousandths, so that
/// placement can add and compare them as integers: four 0.25 shares must
/// fill a device exactly, and ten 0.1 shares in `f64` do not sum to 1.0.
pub const MILLI: u32 = 1000;
/// Upper bounds that catch typos (a `gpus: 8000` meant as memory) and keep
/// every product in the placement arithmetic far from overflow.
pub const MAX_CPUS: f64 = 4096.0;
pub const MAX_MEMORY_MB: u64 = 64 * 1024 * 1024;
pub const MAX_GPUS: f64 = 1024.0;
pub const MAX_GPU_MEMORY_MB: u64 = 1024 * 1024;

/// Resources one job needs while it runs.
///
/// Defaults: 1 cpu, no memory reservation, no GPU. Memory is a reservation
/// for placement only (0 = "don't account"), not a limit the worker enforces.
///
/// `gpus` is either a share of ONE device in (0, 1] (a multiple of 0.001;
/// 0.25 lets four such jobs share a GPU) or a whole number of devices.
/// `gpu_memory_mb` is per device: `gpus = 2, gpu_memory_mb = 40000` needs
/// two devices with at least 40000 MiB each. For a share it is the memory
/// reserved on that device; shares are logical, so a job that wants its
/// memory protected from co-tenants must state it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceRequest {
    pub cpus: f64,
    pub memory_mb: u64,
    pub gpus: f64,
    pub gpu_memory_mb: u64,
}

impl Default for ResourceRequest {
    fn default() -> Self {
        ResourceRequest {
            cpus: 1.0,
            memory_mb: 0,
            gpus: 0.0,
            gpu_memory_mb: 0,
        }
    }
}

/// The GPU part of a validated request, in the integer form placement uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuDemand {
    None,
    /// Thousandths of one device, 1..=999.
    Share(u32),
    /// Whole devices, each taken exclusively.
    Whole(u32),
}

/// `x` in thousandths, or None when it is negative or not a whole number of
/// thousandths.
pub fn to_milli(x: f64) -> Option<u64> {
    let scaled = x * f64::from(MILLI);
    let rounded = scaled.round();
    // Tolerance: 0.001 * 1000 and friends are not exact in binary.
    ((scaled - rounded).abs() < 1e-6 && rounded >= 0.0).then_some(rounded as u64)
}

impl ResourceRequest {
    /// Checks every field; the message names the field and the rule broken.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        let c = self.cpus;
        if !c.is_finite() || c <= 0.0 {
            return bad(format!("cpus must be a number > 0, got {c}"));
        }
        if c > MAX_CPUS {
            return bad(format!("cpus must be at most {MAX_CPUS}, got {c}"));
        }
        if to_milli(c).is_none_or(|m| m == 0) {
            return bad(format!("cpus must be a multiple of 0.001, got {c}"));
        }
        if self.memory_mb > MAX_MEMORY_MB {
            return bad(format!(
                "memory_mb must be at most {MAX_MEMORY_MB} (64 TiB), got {}",
                self.memory_mb
            ));
        }
        let g = self.gpus;
        if !g.is_finite() || g < 0.0 {
            return bad(format!("gpus must be a number >= 0, got {g}"));
        }
        if g > MAX_GPUS {
            return bad(format!("gpus must be at most {MAX_GPUS}, got {g}"));
        }
        if g > 1.0 && g.fract() != 0.0 {
            return bad(format!(
                "gpus above 1 must be a whole number of devices, got {g} \
                 (a fraction is a share of one device, e.g. 0.25)"
            ));
        }
        if g > 0.0 && g < 1.0 && to_milli(g).is_none_or(|m| m == 0) {
            return bad(format!(
                "a fractional gpus share must be a multiple of 0.001 in (0, 1], got {g}"
            ));
        }
        if self.gpu_memory_mb > MAX_GPU_MEMORY_MB {
            return bad(format!(
                "gpu_memory_mb must be at most {MAX_GPU_MEMORY_MB} (1 TiB per device), got {}",
                self.gpu_memory_mb
            ));
        }
        if self.gpu_memory_mb > 0 && g == 0.0 {
            return bad(format!(
                "gpu_memory_mb is {} but gpus is 0; ask for gpus (e.g. 0.5 or 1) too",
                self.gpu_memory_mb
            ));
        }
        Ok(())
    }

    /// The queue a job with this request goes to.
    pub fn resource_class(&self) -> &'static str {
        if self.gpus > 0.0 {
            "gpu"
        } else {
            "cpu"
        }
    }

    /// `cpus` in thousandths; meaningful after [`Self::validate`].
    pub fn cpu_millis(&self) -> u64 {
        to_milli(self.cpus).unwrap_or(0)
    }

    /// The GPU part as integers; meaningful after [`Self::validate`].
    pub fn gpu_demand(&self) -> GpuDemand {
        match to_milli(self.gpus).unwrap_or(0) {
            0 => GpuDemand::None,
            m if m < u64::from(MILLI) => GpuDemand::Share(m as u32),
            m => GpuDemand::Whole((m / u64::from(MILLI)) as u32),
        }
    }

    /// "1 cpu, 2 GPUs with 40000 MiB each": for refusals and logs.
    pub fn describe(&self) -> String {
        let mut s = format!("{} cpu{}", self.cpus, plural_f(self.cpus));
        if self.memory_mb > 0 {
            let _ = write!(s, ", {} MiB memory", self.memory_mb);
        }
        match self.gpu_demand() {
            GpuDemand::None => {}
            GpuDemand::Share(_) => {
                let _ = write!(s, ", {} of one GPU", self.gpus);
                if self.gpu_memory_mb > 0 {
                    let _ = write!(s, " with {} MiB", self.gpu_memory_mb);
                }
            }
            GpuDemand::Whole(n) => {
                let _ = write!(s, ", {n} GPU{}", plural(u64::from(n)));
                if self.gpu_memory_mb > 0 {
                    let each = if n > 1 { " each" } else { "" };
                    let _ = write!(s, " with {} MiB{each}", self.gpu_memory_mb);
                }
            }
        }
        s
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn plural_f(x: f64) -> &'static str {
    if x == 1.0 {
        ""
    } else {
        "s"
    }
}

/// One GPU as a worker sees it. Readings other than the identity and total
/// memory are optional: NVML may refuse any of them on some boards, and a
/// configured inventory has none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// NVML's index (PCI bus order), also what `CUDA_VISIBLE_DEVICES` names
    /// when `CUDA_DEVICE_ORDER=PCI_BUS_ID`.
    pub index: u32,
    /// NVML's "GPU-…" UUID; empty for a configured inventory.
    #[serde(default)]
    pub uuid: String,
    pub name: String,
    pub memory_total_mb: u64,
    #[serde(default)]
    pub memory_free_mb: Option<u64>,
    #[serde(default)]
    pub utilization_pct: Option<u32>,
    #[serde(default)]
    pub temperature_c: Option<u32>,
    #[serde(default)]
    pub power_w: Option<f64>,
}

/// What a worker offers, sent in heartbeats and shown by `GET /workers`.
///
/// Unknown fields are accepted (unlike requests) so that a newer worker
/// reporting an extra reading does not break an older scheduler mid-upgrade.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerCapacity {
    pub cpus: f64,
    pub memory_mb: u64,
    #[serde(default)]
    pub gpus: Vec<GpuInfo>,
}

impl WorkerCapacity {
    /// Rejects reports placement could not reason about: it came from a peer.
    pub fn validate(&self) -> Result<()> {
        if !self.cpus.is_finite() || self.cpus < 0.0 || self.cpus > MAX_CPUS {
            return Err(Error::Invalid(format!(
                "worker cpus must be a number in [0, {MAX_CPUS}], got {}",
                self.cpus
            )));
        }
        if self.memory_mb > MAX_MEMORY_MB {
            return Err(Error::Invalid(format!(
                "worker memory_mb must be at most {MAX_MEMORY_MB}, got {}",
                self.memory_mb
            )));
        }
        if self.gpus.len() > MAX_GPUS as usize {
            return Err(Error::Invalid(format!(
                "a worker reports at most {MAX_GPUS} GPUs, got {}",
                self.gpus.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for g in &self.gpus {
            if !seen.insert(g.index) {
                return Err(Error::Invalid(format!(
                    "GPU index {} is reported twice",
                    g.index
                )));
            }
            if g.memory_total_mb > MAX_GPU_MEMORY_MB {
                return Err(Error::Invalid(format!(
                    "GPU {} memory_total_mb must be at most {MAX_GPU_MEMORY_MB}, got {}",
                    g.index, g.memory_total_mb
                )));
            }
        }
        Ok(())
    }

    /// `cpus` in thousandths, rounded down so placement never counts a
    /// fraction of a cpu the host does not have.
    pub fn cpu_millis(&self) -> u64 {
        if self.cpus.is_finite() && self.cpus > 0.0 {
            (self.cpus * f64::from(MILLI)).floor() as u64
        } else {
            0
        }
    }

    /// "16 cpus, 64000 MiB, 2 GPUs (A100, 81920 MiB)".
    pub fn describe(&self) -> String {
        format!(
            "{} cpu{}, {} MiB, {}",
            self.cpus,
            plural_f(self.cpus),
            self.memory_mb,
            describe_gpus(&self.gpus)
        )
    }
}

/// "no GPU", "1 GPU (A100, 81920 MiB)", "3 GPUs (2× A100, 81920 MiB; T4, 15360 MiB)".
pub fn describe_gpus<'a>(gpus: impl IntoIterator<Item = &'a GpuInfo>) -> String {
    let mut kinds: BTreeMap<(&str, u64), u64> = BTreeMap::new();
    for g in gpus {
        *kinds.entry((&g.name, g.memory_total_mb)).or_default() += 1;
    }
    let total: u64 = kinds.values().sum();
    if total == 0 {
        return "no GPU".into();
    }
    // Biggest devices first: they are what a refusal's reader looks for.
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort_by(|((an, am), _), ((bn, bm), _)| bm.cmp(am).then(an.cmp(bn)));
    let parts: Vec<String> = kinds
        .iter()
        .map(|((name, mem), n)| {
            let name = if name.is_empty() { "GPU" } else { name };
            if kinds.len() > 1 && *n > 1 {
                format!("{n}× {name}, {mem} MiB")
            } else {
                format!("{name}, {mem} MiB")
            }
        })
        .collect();
    format!("{total} GPU{} ({})", plural(total), parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cpus: f64, gpus: f64, gpu_memory_mb: u64) -> ResourceRequest {
        ResourceRequest {
            cpus,
            memory_mb: 0,
            gpus,
            gpu_memory_mb,
        }
    }

    fn invalid(r: &ResourceRequest) -> String {
        match r.validate() {
            Err(Error::Invalid(m)) => m,
            other => panic!("{r:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_one_cpu_and_nothing_else() {
        let r: ResourceRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(r, ResourceRequest::default());
        assert_eq!(
            (r.cpus, r.memory_mb, r.gpus, r.gpu_memory_mb),
            (1.0, 0, 0.0, 0)
        );
        r.validate().unwrap();
        assert_eq!(r.resource_class(), "cpu");
        let r: ResourceRequest = serde_json::from_str(r#"{"gpus": 0.5}"#).unwrap();
        assert_eq!(r.cpus, 1.0);
        assert_eq!(r.resource_class(), "gpu");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = serde_json::from_str::<ResourceRequest>(r#"{"gpu": 1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `gpu`"), "{e}");
    }

    #[test]
    fn valid_requests() {
        for (c, g, m) in [
            (1.0, 0.0, 0),
            (0.5, 0.25, 1000),
            (0.001, 0.001, 0),
            (2.0, 1.0, 0),
            (64.0, 8.0, 40000),
            (1.0, 1024.0, 0),
            (4096.0, 0.0, 0),
        ] {
            let r = req(c, g, m);
            r.validate().unwrap_or_else(|e| panic!("{r:?}: {e}"));
        }
    }

    #[test]
    fn gpus_rules_have_clear_messages() {
        assert!(invalid(&req(1.0, f64::NAN, 0)).contains("gpus must be a number >= 0"));
        assert!(invalid(&req(1.0, f64::INFINITY, 0)).contains("gpus must be a number >= 0"));
        assert!(invalid(&req(1.0, -1.0, 0)).contains("gpus must be a number >= 0, got -1"));
        let m = invalid(&req(1.0, 1.5, 0));
        assert!(m.contains("whole number of devices, got 1.5"), "{m}");
        assert!(invalid(&req(1.0, 2048.0, 0)).contains("at most 1024"));
        let m = invalid(&req(1.0, 0.0001, 0));
        assert!(m.contains("multiple of 0.001"), "{m}");
        let m = invalid(&req(1.0, 0.0, 1000));
        assert!(m.contains("gpu_memory_mb is 1000 but gpus is 0"), "{m}");
        let mut r = req(1.0, 1.0, MAX_GPU_MEMORY_MB + 1);
        assert!(invalid(&r).contains("gpu_memory_mb must be at most"));
        r.gpu_memory_mb = 0;
        r.memory_mb = MAX_MEMORY_MB + 1;
        assert!(invalid(&r).contains("memory_mb must be at most"));
    }

    #[test]
    fn cpus_rules_have_clear_messages() {
        assert!(invalid(&req(0.0, 0.0, 0)).contains("cpus must be a number > 0, got 0"));
        assert!(invalid(&req(-2.0, 0.0, 0)).contains("cpus must be a number > 0"));
        assert!(invalid(&req(f64::NAN, 0.0, 0)).contains("cpus must be a number > 0"));
        assert!(invalid(&req(5000.0, 0.0, 0)).contains("cpus must be at most 4096"));
        assert!(invalid(&req(0.0004, 0.0, 0)).contains("multiple of 0.001"));
        assert!(invalid(&req(1.0 / 3.0, 0.0, 0)).contains("multiple of 0.001"));
    }

    #[test]
    fn demand_is_exact_in_thousandths() {
        assert_eq!(req(1.0, 0.0, 0).gpu_demand(), GpuDemand::None);
        assert_eq!(req(1.0, 0.25, 0).gpu_demand(), GpuDemand::Share(250));
        assert_eq!(req(1.0, 0.1, 0).gpu_demand(), GpuDemand::Share(100));
        assert_eq!(req(1.0, 0.999, 0).gpu_demand(), GpuDemand::Share(999));
        assert_eq!(req(1.0, 1.0, 0).gpu_demand(), GpuDemand::Whole(1));
        assert_eq!(req(1.0, 8.0, 0).gpu_demand(), GpuDemand::Whole(8));
        assert_eq!(req(0.1, 0.0, 0).cpu_millis(), 100);
        assert_eq!(req(2.5, 0.0, 0).cpu_millis(), 2500);
    }

    #[test]
    fn describe_names_what_is_asked() {
        assert_eq!(req(1.0, 0.0, 0).describe(), "1 cpu");
        assert_eq!(
            req(2.0, 2.0, 40000).describe(),
            "2 cpus, 2 GPUs with 40000 MiB each"
        );
        assert_eq!(
            req(0.5, 0.25, 8000).describe(),
            "0.5 cpus, 0.25 of one GPU with 8000 MiB"
        );
        let mut r = req(1.0, 1.0, 0);
        r.memory_mb = 4096;
        assert_eq!(r.describe(), "1 cpu, 4096 MiB memory, 1 GPU");
    }

    fn gpu(index: u32, name: &str, mem: u64) -> GpuInfo {
        GpuInfo {
            index,
            uuid: String::new(),
            name: name.into(),
            memory_total_mb: mem,
            memory_free_mb: None,
            utilization_pct: None,
            temperature_c: None,
            power_w: None,
        }
    }

    #[test]
    fn capacity_round_trips_and_tolerates_missing_readings() {
        let cap = WorkerCapacity {
            cpus: 16.0,
            memory_mb: 64000,
            gpus: vec![gpu(0, "A100", 81920)],
        };
        let json = serde_json::to_value(&cap).unwrap();
        assert_eq!(json["gpus"][0]["memory_free_mb"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<WorkerCapacity>(json).unwrap(), cap);
        let sparse: WorkerCapacity = serde_json::from_str(
            r#"{"cpus": 2, "memory_mb": 10, "gpus": [{"index": 1, "name": "T4", "memory_total_mb": 15360, "ecc": true}]}"#,
        )
        .unwrap();
        assert_eq!(sparse.gpus[0], gpu(1, "T4", 15360));
        sparse.validate().unwrap();
    }

    #[test]
    fn capacity_validation_catches_duplicates_and_nonsense() {
        let mut cap = WorkerCapacity {
            cpus: 8.0,
            memory_mb: 1,
            gpus: vec![gpu(0, "A100", 81920), gpu(0, "A100", 81920)],
        };
        let e = cap.validate().unwrap_err().to_string();
        assert!(e.contains("GPU index 0 is reported twice"), "{e}");
        cap.gpus.pop();
        cap.cpus = f64::NAN;
        assert!(cap
            .validate()
            .unwrap_err()
            .to_string()
            .contains("worker cpus"));
        cap.cpus = 7.9999;
        cap.validate().unwrap();
        assert_eq!(cap.cpu_millis(), 7999);
    }

    #[test]
    fn gpus_are_described_by_kind() {
        assert_eq!(describe_gpus(&[]), "no GPU");
        assert_eq!(
            describe_gpus(&[gpu(0, "A100", 81920)]),
            "1 GPU (A100, 81920 MiB)"
        );
        assert_eq!(
            describe_gpus(&[gpu(0, "A100", 81920), gpu(1, "A100", 81920)]),
            "2 GPUs (A100, 81920 MiB)"
        );
        assert_eq!(
            describe_gpus(&[
                gpu(0, "T4", 15360),
                gpu(1, "A100", 81920),
                gpu(2, "A100", 81920)
            ]),
            "3 GPUs (2× A100, 81920 MiB; T4, 15360 MiB)"
        );
    }
}
