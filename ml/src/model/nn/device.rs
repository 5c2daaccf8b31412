//! Where nn training runs: CPU or CUDA, from the environment (the check
//! that trains one seeded network on both is [`crate::nn_check`]).
//!
//! `TRACSEQ_TORCH_DEVICE` = `auto` (default: CUDA when libtorch sees a
//! device, else CPU), `cpu`, `cuda` or `cuda:N`. libtorch numbers only the
//! devices `CUDA_VISIBLE_DEVICES` leaves visible, so a worker that pins a job
//! to a GPU through that variable needs nothing more here.
//! `TRACSEQ_TORCH_THREADS` sizes libtorch's CPU thread pool (default 1: a
//! worker already runs one trial per core, and more threads per trial would
//! oversubscribe them).

use tch::Device;

use crate::error::{invalid, Result};

/// Environment variable choosing the training device.
pub const DEVICE_ENV: &str = "TRACSEQ_TORCH_DEVICE";
/// Environment variable sizing libtorch's CPU thread pool.
pub const THREADS_ENV: &str = "TRACSEQ_TORCH_THREADS";

/// A requested training device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NnDevice {
    /// CUDA device 0 when libtorch sees one, else the CPU.
    Auto,
    Cpu,
    /// This CUDA device; an error when libtorch cannot use it.
    Cuda(usize),
}

impl NnDevice {
    /// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Result<NnDevice> {
        match s.trim() {
            "" | "auto" => Ok(NnDevice::Auto),
            "cpu" => Ok(NnDevice::Cpu),
            "cuda" => Ok(NnDevice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(NnDevice::Cuda)
                .ok_or_else(|| {
                    invalid(format!(
                        "{DEVICE_ENV} must be auto, cpu, cuda or cuda:N, got '{other}'"
                    ))
                }),
        }
    }

    /// The device `TRACSEQ_TORCH_DEVICE` asks for (auto when unset).
    pub fn from_env() -> Result<NnDevice> {
        NnDevice::parse(&std::env::var(DEVICE_ENV).unwrap_or_default())
    }

    /// The libtorch device to train on.
    pub fn resolve(self) -> Result<Device> {
        match self {
            NnDevice::Cpu => Ok(Device::Cpu),
            NnDevice::Auto => Ok(Device::cuda_if_available()),
            NnDevice::Cuda(i) => {
                let count = if tch::Cuda::is_available() {
                    usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
                } else {
                    0
                };
                if i < count {
                    Ok(Device::Cuda(i))
                } else {
                    Err(invalid(format!(
                        "CUDA device {i} was asked for but libtorch sees {count} CUDA device(s): \
                         a CPU-only libtorch link (see ops/libtorch.sh cuda), no driver, or \
                         CUDA_VISIBLE_DEVICES hides it"
                    )))
                }
            }
        }
    }
}

/// `TRACSEQ_TORCH_THREADS`, default 1.
pub(crate) fn threads_from_env() -> Result<usize> {
    match std::env::var(THREADS_ENV) {
        Err(_) => Ok(1),
        Ok(s) => s
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "{THREADS_ENV} must be a whole number in 1..=1024, got '{s}'"
                ))
            }),
    }
}
