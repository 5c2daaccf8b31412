//! `tracseq-ml gpu-check`: what a worker on this host would see and do.
//! Prints one JSON document: the GPU inventory (NVML, as the worker reads
//! it), one placement scenario on that inventory, and, with the `torch`
//! feature, the same seeded MLP trained on CUDA and on CPU.

use serde_json::{json, Value};
use tracseq_core::resources::ResourceRequest;
use tracseq_core::{JobId, WorkerId};
use tracseq_worker::{gpu, HostResources};

pub fn run(rows: usize, seed: u64) -> anyhow::Result<Value> {
    let (inventory, note) = gpu::detect(None)?;
    let source = inventory.name().to_string();
    let gpus = inventory.snapshot();
    let capacity = gpu::capacity(inventory.as_ref());
    // With no GPU here the scenario still runs, on a configured pair, so
    // the check says something about placement on any machine.
    let (scenario_inventory, scenario_source) = if gpus.is_empty() {
        (
            gpu::detect(Some("0:A100:81920,1:A100:81920"))?.0,
            "configured",
        )
    } else {
        (inventory, "nvml")
    };
    let host = HostResources::new(WorkerId("gpu-check".into()), scenario_inventory, 16)?;
    Ok(json!({
        "inventory": {
            "source": source,
            "note": note,
            "gpus": gpus,
            "host": {"cpus": capacity.cpus, "memory_mb": capacity.memory_mb},
        },
        "placement": placement_scenario(&host, scenario_source),
        "mlp": mlp(rows, seed),
    }))
}

/// Quarter shares pack onto one device; a whole-GPU job then takes only an
/// untouched device; a request larger than the host is unschedulable.
fn placement_scenario(host: &HostResources, source: &str) -> Value {
    let devices = host.capacity().gpus.len();
    let share = |g: f64| ResourceRequest {
        gpus: g,
        ..Default::default()
    };
    let mut steps = Vec::new();
    let mut attempt = |label: &str, req: ResourceRequest| {
        let outcome = match host.reserve(JobId::new(), &req) {
            Ok(a) => json!({"placed": a.cuda_visible_devices, "devices": a.devices}),
            Err(refusal) => json!({"refused": refusal.to_string()}),
        };
        steps.push(json!({"job": label, "outcome": outcome}));
    };
    for i in 0..4 {
        attempt(&format!("quarter share {}", i + 1), share(0.25));
    }
    attempt("whole GPU", share(1.0));
    attempt(
        &format!("{} GPUs (more than the host has)", devices + 1),
        share((devices + 1) as f64),
    );
    json!({"inventory": source, "gpus": devices, "steps": steps})
}

#[cfg(feature = "torch")]
fn mlp(rows: usize, seed: u64) -> Value {
    // A failure is part of the report (say, CUDA present but unusable),
    // not a reason to lose the inventory and placement sections.
    tracseq_learn::nn_check::device_check(rows, seed)
        .unwrap_or_else(|e| json!({"error": e.to_string()}))
}

#[cfg(not(feature = "torch"))]
fn mlp(_rows: usize, _seed: u64) -> Value {
    json!({"skipped": "built without the torch feature (see ops/libtorch.sh)"})
}
