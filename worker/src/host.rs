//! What this host offers and what its running jobs hold: the worker side of
//! placement. Every worker loop in one process shares one `HostResources`,
//! so two loops can never hand the same GPU share out twice.

use crate::gpu::{self, GpuInventory};
use std::sync::Mutex;
use tracseq_core::fleet::GpuAssignment;
use tracseq_core::placement::{self, Fleet, Placement, Refusal};
use tracseq_core::resources::{ResourceRequest, WorkerCapacity};
use tracseq_core::{JobId, Result, WorkerId};

pub struct HostResources {
    /// This host's name in the one-node fleet below.
    node: WorkerId,
    inventory: Box<dyn GpuInventory>,
    /// Jobs run in the worker process, so a slot is the unit of concurrency;
    /// the host offers at least one cpu per slot so that default (1-cpu)
    /// jobs are limited by slots, as configured, and bigger ones by cpus.
    min_cpus: f64,
    fleet: Mutex<Fleet>,
}

impl HostResources {
    /// `slots` is the total over the worker loops sharing this host.
    pub fn new(node: WorkerId, inventory: Box<dyn GpuInventory>, slots: u32) -> Result<Self> {
        let host = Self::unrefreshed(node, inventory, slots);
        host.refresh()?;
        Ok(host)
    }

    /// A host with no GPU (tests, benchmarks, CPU-only deployments).
    pub fn cpu_only(node: WorkerId, slots: u32) -> Self {
        let host = Self::unrefreshed(node, Box::new(gpu::ConfiguredInventory::none()), slots);
        // A configured empty inventory always validates.
        let _ = host.refresh();
        host
    }

    fn unrefreshed(node: WorkerId, inventory: Box<dyn GpuInventory>, slots: u32) -> Self {
        HostResources {
            node,
            inventory,
            min_cpus: f64::from(slots.max(1)),
            fleet: Mutex::new(Fleet::new()),
        }
    }

    pub fn inventory_name(&self) -> &str {
        self.inventory.name()
    }

    pub fn has_gpus(&self) -> bool {
        !self.capacity().gpus.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fleet> {
        // Fleet operations validate before they mutate, so a poisoned lock
        // never guards a half-applied reservation.
        self.fleet.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a fresh inventory snapshot (live GPU figures) and makes it the
    /// capacity placement uses; reservations are kept.
    pub fn refresh(&self) -> Result<WorkerCapacity> {
        let mut capacity = gpu::capacity(self.inventory.as_ref());
        capacity.cpus = capacity.cpus.max(self.min_cpus);
        self.lock()
            .set_worker(self.node.clone(), capacity.clone())?;
        Ok(capacity)
    }

    /// The capacity as last refreshed.
    pub fn capacity(&self) -> WorkerCapacity {
        self.lock()
            .workers()
            .next()
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }

    /// Places and reserves `req` for `job` on this host, or says why not.
    pub fn reserve(
        &self,
        job: JobId,
        req: &ResourceRequest,
    ) -> std::result::Result<GpuAssignment, Refusal> {
        let mut fleet = self.lock();
        let placed = placement::place(&fleet, req)?;
        fleet
            .reserve(job, &placed)
            .map_err(|e| Refusal::Busy(e.to_string()))?;
        Ok(assignment(&placed))
    }

    pub fn release(&self, job: &JobId) {
        self.lock().release(job);
    }
}

/// The record of a placement that travels on the job and in heartbeats.
pub fn assignment(p: &Placement) -> GpuAssignment {
    GpuAssignment {
        devices: p.devices.clone(),
        cuda_visible_devices: placement::cuda_visible_devices(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(spec: &str, slots: u32) -> HostResources {
        let (inv, _) = gpu::detect(Some(spec)).unwrap();
        HostResources::new(WorkerId("h".into()), inv, slots).unwrap()
    }

    fn gpus(g: f64) -> ResourceRequest {
        ResourceRequest {
            gpus: g,
            ..Default::default()
        }
    }

    #[test]
    fn reservations_pack_shares_and_never_overcommit() {
        let h = host("0:A100:81920,1:A100:81920", 16);
        let jobs: Vec<JobId> = (0..9).map(|_| JobId::new()).collect();
        // Four quarter shares fill one device before the next is touched.
        for j in &jobs[..4] {
            let a = h.reserve(*j, &gpus(0.25)).unwrap();
            assert_eq!(a.cuda_visible_devices, "0");
        }
        assert_eq!(
            h.reserve(jobs[4], &gpus(0.25))
                .unwrap()
                .cuda_visible_devices,
            "1"
        );
        // No whole device is free now.
        assert!(matches!(
            h.reserve(jobs[5], &gpus(1.0)),
            Err(Refusal::Busy(_))
        ));
        assert!(matches!(
            h.reserve(jobs[6], &gpus(4.0)),
            Err(Refusal::Unschedulable(_))
        ));
        // Releasing device 1's share frees it for a whole-device job.
        h.release(&jobs[4]);
        let whole = h.reserve(jobs[7], &gpus(1.0)).unwrap();
        assert_eq!(whole.cuda_visible_devices, "1");
        assert_eq!(whole.devices[0].share_milli, 1000);
    }

    #[test]
    fn slots_bound_default_jobs_not_host_cpus() {
        let h = host("none", 64);
        assert!(h.capacity().cpus >= 64.0);
        assert!(!h.has_gpus());
        assert_eq!(h.inventory_name(), "none");
    }
}
