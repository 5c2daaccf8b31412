//! The GPU inventory read live from NVIDIA's management library (NVML).
//!
//! `nvml-wrapper` dlopens `libnvidia-ml.so.1` at [`NvmlInventory::init`], so
//! a binary built here runs unchanged on hosts without the driver: there
//! the load fails with an error, never a panic, and the worker runs on CPUs.

use super::GpuInventory;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use std::collections::BTreeSet;
use std::sync::Mutex;
use tracing::warn;
use tracseq_core::resources::GpuInfo;

const MIB: u64 = 1024 * 1024;

pub struct NvmlInventory {
    nvml: Nvml,
    /// Devices already reported unreadable: a heartbeat snapshots every few
    /// seconds, and a GPU that fell off the bus should be logged once.
    warned: Mutex<BTreeSet<u32>>,
}

impl NvmlInventory {
    /// Loads NVML; the error says in words why there is no GPU inventory.
    pub fn init() -> Result<Self, String> {
        Nvml::init()
            .map(|nvml| NvmlInventory {
                nvml,
                warned: Mutex::new(BTreeSet::new()),
            })
            .map_err(|e| explain_init_error(&e))
    }

    fn read(&self, index: u32) -> Result<GpuInfo, NvmlError> {
        let d = self.nvml.device_by_index(index)?;
        // Without its total memory a device cannot be placed on, so that
        // reading is required; the others only inform operators.
        let memory = d.memory_info()?;
        Ok(GpuInfo {
            index,
            uuid: d.uuid().unwrap_or_default(),
            name: d.name().unwrap_or_else(|_| "unknown".into()),
            memory_total_mb: memory.total / MIB,
            memory_free_mb: Some(memory.free / MIB),
            utilization_pct: d.utilization_rates().ok().map(|u| u.gpu),
            temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
            power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
        })
    }
}

impl GpuInventory for NvmlInventory {
    fn name(&self) -> &str {
        "nvml"
    }

    /// Devices that cannot be read are left out (and logged once each):
    /// offering a lost GPU to the scheduler would only fail the jobs sent to it.
    fn snapshot(&self) -> Vec<GpuInfo> {
        let count = match self.nvml.device_count() {
            Ok(n) => n,
            Err(e) => {
                if self.warned.lock().is_ok_and(|mut w| w.insert(u32::MAX)) {
                    warn!(error = %e, "NVML cannot count GPUs; reporting none");
                }
                return Vec::new();
            }
        };
        (0..count)
            .filter_map(|i| match self.read(i) {
                Ok(g) => Some(g),
                Err(e) => {
                    if self.warned.lock().is_ok_and(|mut w| w.insert(i)) {
                        warn!(gpu = i, error = %e, "GPU unreadable; not offering it");
                    }
                    None
                }
            })
            .collect()
    }
}

fn explain_init_error(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(_) => {
            "no NVIDIA driver (libnvidia-ml.so.1 not found); running as a CPU worker".into()
        }
        NvmlError::DriverNotLoaded => {
            "the NVIDIA driver is installed but not loaded; running as a CPU worker".into()
        }
        NvmlError::NoPermission => {
            "no permission to query the NVIDIA driver; running as a CPU worker".into()
        }
        other => format!("NVML unavailable ({other}); running as a CPU worker"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_an_error_not_a_panic() {
        let path = std::ffi::OsStr::new("/nonexistent/libnvidia-ml.so.1");
        let e = Nvml::builder().lib_path(path).init().unwrap_err();
        assert!(matches!(e, NvmlError::LibloadingError(_)), "{e:?}");
        assert_eq!(
            explain_init_error(&e),
            "no NVIDIA driver (libnvidia-ml.so.1 not found); running as a CPU worker"
        );
    }

    #[test]
    fn init_errors_are_explained_for_operators() {
        assert_eq!(
            explain_init_error(&NvmlError::DriverNotLoaded),
            "the NVIDIA driver is installed but not loaded; running as a CPU worker"
        );
        let m = explain_init_error(&NvmlError::Unknown);
        assert!(
            m.starts_with("NVML unavailable (") && m.ends_with("running as a CPU worker"),
            "{m}"
        );
    }
}
