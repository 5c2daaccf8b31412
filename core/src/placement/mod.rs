//! Placement: which worker, and which GPUs on it, a job gets — a pure
//! function over the fleet's capacity and reservations.
//!
//! Shares and cpus are counted in integer thousandths (see
//! [`crate::resources::MILLI`]) so that "never overcommit" is exact.
//! Every map is a `BTreeMap`, so the same fleet and request always give the
//! same answer, whatever order workers joined in.

use crate::fleet::AssignedGpu;
use crate::resources::{
    describe_gpus, to_milli, GpuDemand, GpuInfo, ResourceRequest, WorkerCapacity, MILLI,
};
use crate::{Error, JobId, Result, WorkerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Where a job runs and what it holds there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub worker: WorkerId,
    pub cpus: f64,
    pub memory_mb: u64,
    /// Sorted by index; empty for a CPU-only job.
    pub devices: Vec<AssignedGpu>,
}

/// Why a job was not placed; the dispatcher acts differently on each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The fleet is empty (start-up, or every worker gone): wait for one.
    NoWorkers,
    /// Some worker could hold the job when idle; wait for a release.
    Busy(String),
    /// No worker in the fleet could hold it even idle (or the request is
    /// invalid). A worker joining may change that, so this is a state to
    /// report, not necessarily a failure.
    Unschedulable(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoWorkers => f.write_str("no worker has joined the fleet; waiting for one"),
            Refusal::Busy(r) => write!(f, "busy: {r}"),
            Refusal::Unschedulable(r) => write!(f, "unschedulable: {r}"),
        }
    }
}

/// What is reserved on one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DeviceUse {
    share: u32,
    memory_mb: u64,
}

#[derive(Clone, Debug)]
struct Node {
    capacity: WorkerCapacity,
    cpu_used: u64,
    memory_used: u64,
    /// Keyed by index; may name a device the capacity no longer lists (it
    /// vanished from a later report) until its jobs are released.
    devices: BTreeMap<u32, DeviceUse>,
    jobs: BTreeMap<JobId, Placement>,
}

impl Node {
    fn device_use(&self, index: u32) -> DeviceUse {
        self.devices.get(&index).copied().unwrap_or_default()
    }
}

/// Reserved resources of one worker, for `GET /workers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerUsage {
    pub cpus_reserved: f64,
    pub memory_reserved_mb: u64,
    pub devices: Vec<AssignedGpu>,
    pub jobs: Vec<JobId>,
}

/// The workers placement knows of and what each job holds on them.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    nodes: BTreeMap<WorkerId, Node>,
    jobs: BTreeMap<JobId, WorkerId>,
}

fn cpus_f64(millis: u64) -> f64 {
    millis as f64 / f64::from(MILLI)
}

impl Fleet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a worker or updates its capacity (each heartbeat may). Its
    /// reservations are kept: a capacity that shrank below them only stops
    /// new placements there until jobs finish.
    pub fn set_worker(&mut self, id: WorkerId, capacity: WorkerCapacity) -> Result<()> {
        capacity.validate()?;
        match self.nodes.get_mut(&id) {
            Some(node) => node.capacity = capacity,
            None => {
                let node = Node {
                    capacity,
                    cpu_used: 0,
                    memory_used: 0,
                    devices: BTreeMap::new(),
                    jobs: BTreeMap::new(),
                };
                self.nodes.insert(id, node);
            }
        }
        Ok(())
    }

    /// A dead or departed worker: drops it and frees what its jobs held.
    /// Returns those jobs so the caller can re-queue them.
    pub fn remove_worker(&mut self, id: &WorkerId) -> Vec<JobId> {
        let Some(node) = self.nodes.remove(id) else {
            return Vec::new();
        };
        for job in node.jobs.keys() {
            self.jobs.remove(job);
        }
        node.jobs.into_keys().collect()
    }

    /// Records that `job` holds `placement`. Checks it again against the
    /// current reservations, so a placement computed from a stale view (or
    /// twice for one free slot) can never overcommit.
    pub fn reserve(&mut self, job: JobId, placement: &Placement) -> Result<()> {
        if let Some(w) = self.jobs.get(&job) {
            return Err(Error::Conflict(format!(
                "job {job} already holds a reservation on worker {w}"
            )));
        }
        let node = self
            .nodes
            .get_mut(&placement.worker)
            .ok_or_else(|| Error::not_found(format!("worker {}", placement.worker)))?;
        let cpus = to_milli(placement.cpus)
            .ok_or_else(|| Error::Invalid(format!("placement cpus {}", placement.cpus)))?;
        let conflict = |what: String| Error::Conflict(format!("job {job} no longer fits: {what}"));
        if node.cpu_used + cpus > node.capacity.cpu_millis() {
            return Err(conflict(format!("{} cpus", placement.cpus)));
        }
        if node.memory_used + placement.memory_mb > node.capacity.memory_mb {
            return Err(conflict(format!("{} MiB memory", placement.memory_mb)));
        }
        let mut adds: Vec<(u32, DeviceUse)> = Vec::with_capacity(placement.devices.len());
        for d in &placement.devices {
            let share = d.share_milli;
            if !(1..=MILLI).contains(&share) {
                return Err(Error::Invalid(format!(
                    "placement share {share}/1000 on GPU {}",
                    d.index
                )));
            }
            if adds.iter().any(|(i, _)| *i == d.index) {
                return Err(Error::Invalid(format!("GPU {} assigned twice", d.index)));
            }
            let gpu = node
                .capacity
                .gpus
                .iter()
                .find(|g| g.index == d.index)
                .ok_or_else(|| conflict(format!("worker has no GPU {}", d.index)))?;
            let used = node.device_use(d.index);
            if used.share + share > MILLI || used.memory_mb + d.memory_mb > gpu.memory_total_mb {
                return Err(conflict(format!("GPU {} is taken", d.index)));
            }
            let memory_mb = d.memory_mb;
            adds.push((d.index, DeviceUse { share, memory_mb }));
        }
        node.cpu_used += cpus;
        node.memory_used += placement.memory_mb;
        for (index, add) in adds {
            let u = node.devices.entry(index).or_default();
            u.share += add.share;
            u.memory_mb += add.memory_mb;
        }
        node.jobs.insert(job, placement.clone());
        self.jobs.insert(job, placement.worker.clone());
        Ok(())
    }

    /// Frees what `job` held; None if it held nothing (already released,
    /// or its worker was removed), which makes release idempotent.
    pub fn release(&mut self, job: &JobId) -> Option<Placement> {
        let worker = self.jobs.remove(job)?;
        let node = self.nodes.get_mut(&worker)?;
        let p = node.jobs.remove(job)?;
        // The amounts were checked on reserve, so they convert and subtract exactly.
        node.cpu_used -= to_milli(p.cpus).unwrap_or(0);
        node.memory_used -= p.memory_mb;
        for d in &p.devices {
            if let Some(u) = node.devices.get_mut(&d.index) {
                u.share -= d.share_milli;
                u.memory_mb -= d.memory_mb;
                if *u == DeviceUse::default() {
                    node.devices.remove(&d.index);
                }
            }
        }
        Some(p)
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Workers in id order with their last reported capacity.
    pub fn workers(&self) -> impl Iterator<Item = (&WorkerId, &WorkerCapacity)> {
        self.nodes.iter().map(|(id, n)| (id, &n.capacity))
    }

    pub fn placement_of(&self, job: &JobId) -> Option<&Placement> {
        let w = self.jobs.get(job)?;
        self.nodes.get(w)?.jobs.get(job)
    }

    pub fn usage(&self, worker: &WorkerId) -> Option<WorkerUsage> {
        let n = self.nodes.get(worker)?;
        Some(WorkerUsage {
            cpus_reserved: cpus_f64(n.cpu_used),
            memory_reserved_mb: n.memory_used,
            devices: n
                .devices
                .iter()
                .map(|(&index, u)| AssignedGpu {
                    index,
                    share_milli: u.share,
                    memory_mb: u.memory_mb,
                })
                .collect(),
            jobs: n.jobs.keys().copied().collect(),
        })
    }
}

/// Ordering of candidate placements; smaller wins, ties go to the first
/// worker in id order. Fields compare in declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    /// CPU-only jobs go to workers with fewer GPUs first, so GPU hosts keep
    /// their cpus and memory for the GPU jobs only they can run.
    gpus_on_worker: usize,
    /// Shares go to a device that is already partly used (0) before
    /// opening a fresh one (1), keeping whole devices for whole-GPU jobs.
    fresh_device: u8,
    /// Best fit: the tightest device for a share…
    share_left: u32,
    /// …then the worker left with the fewest untouched devices…
    free_devices_left: usize,
    /// …then the fewest cpus and memory left (pack, don't spread).
    cpus_left: u64,
    memory_left: u64,
}

/// Best assignment of `req` on `node`, ignoring its reservations when
/// `idle` (to ask "could it ever fit here?").
fn fit(node: &Node, req: &ResourceRequest, idle: bool) -> Option<(Score, Vec<AssignedGpu>)> {
    let used = |i: u32| {
        if idle {
            DeviceUse::default()
        } else {
            node.device_use(i)
        }
    };
    let (cpu_used, mem_used) = if idle {
        (0, 0)
    } else {
        (node.cpu_used, node.memory_used)
    };
    let cpus_left = node
        .capacity
        .cpu_millis()
        .checked_sub(cpu_used)?
        .checked_sub(req.cpu_millis())?;
    let memory_left = node
        .capacity
        .memory_mb
        .checked_sub(mem_used)?
        .checked_sub(req.memory_mb)?;
    let gpus = &node.capacity.gpus;
    let untouched = |g: &&GpuInfo| used(g.index) == DeviceUse::default();
    let free_devices = gpus.iter().filter(untouched).count();
    let gm = req.gpu_memory_mb;
    let mut score = Score {
        gpus_on_worker: 0,
        fresh_device: 0,
        share_left: 0,
        free_devices_left: free_devices,
        cpus_left,
        memory_left,
    };
    let devices = match req.gpu_demand() {
        GpuDemand::None => {
            score.gpus_on_worker = gpus.len();
            Vec::new()
        }
        GpuDemand::Share(s) => {
            let best = gpus
                .iter()
                .filter_map(|g| {
                    let u = used(g.index);
                    let share_left = (MILLI - u.share).checked_sub(s)?;
                    let mem_left = g
                        .memory_total_mb
                        .checked_sub(u.memory_mb)?
                        .checked_sub(gm)?;
                    Some(((u.share == 0, share_left, mem_left, g.index), g))
                })
                .min_by_key(|(key, _)| *key)?;
            let ((fresh, share_left, _, _), g) = best;
            score.fresh_device = u8::from(fresh);
            score.share_left = share_left;
            if used(g.index) == DeviceUse::default() {
                score.free_devices_left -= 1;
            }
            vec![AssignedGpu {
                index: g.index,
                share_milli: s,
                memory_mb: gm,
            }]
        }
        GpuDemand::Whole(n) => {
            let mut fitting: Vec<&GpuInfo> = gpus
                .iter()
                .filter(untouched)
                .filter(|g| g.memory_total_mb >= gm)
                .collect();
            if fitting.len() < n as usize {
                return None;
            }
            // The smallest devices that suffice, keeping big ones for big asks.
            fitting.sort_by_key(|g| (g.memory_total_mb, g.index));
            fitting.truncate(n as usize);
            fitting.sort_by_key(|g| g.index);
            score.free_devices_left -= fitting.len();
            fitting
                .iter()
                .map(|g| AssignedGpu {
                    index: g.index,
                    share_milli: MILLI,
                    memory_mb: g.memory_total_mb,
                })
                .collect()
        }
    };
    Some((score, devices))
}

/// Chooses a worker and devices for `req` without changing the fleet;
/// the caller then [`Fleet::reserve`]s the result for the job.
pub fn place(fleet: &Fleet, req: &ResourceRequest) -> std::result::Result<Placement, Refusal> {
    if let Err(e) = req.validate() {
        return Err(Refusal::Unschedulable(format!("invalid request: {e}")));
    }
    if fleet.nodes.is_empty() {
        return Err(Refusal::NoWorkers);
    }
    let mut best: Option<(Score, &WorkerId, Vec<AssignedGpu>)> = None;
    for (id, node) in &fleet.nodes {
        if let Some((score, devices)) = fit(node, req, false) {
            if best.as_ref().is_none_or(|(b, _, _)| score < *b) {
                best = Some((score, id, devices));
            }
        }
    }
    if let Some((_, worker, devices)) = best {
        return Ok(Placement {
            worker: worker.clone(),
            cpus: req.cpus,
            memory_mb: req.memory_mb,
            devices,
        });
    }
    if let Err(reason) = schedulable(fleet, req) {
        return Err(Refusal::Unschedulable(reason));
    }
    let able: Vec<&str> = fleet
        .nodes
        .iter()
        .filter(|(_, n)| fit(n, req, true).is_some())
        .map(|(id, _)| id.0.as_str())
        .collect();
    let mut names = able.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if able.len() > 5 {
        names.push_str(&format!(" and {} more", able.len() - 5));
    }
    Err(Refusal::Busy(format!(
        "needs {}; {} of {} workers could hold it ({names}) but none has it free now",
        req.describe(),
        able.len(),
        fleet.nodes.len()
    )))
}

/// Ok when some worker of the fleet could hold `req` once idle; else the
/// reason, naming what is asked and the most the fleet offers.
pub fn schedulable(fleet: &Fleet, req: &ResourceRequest) -> std::result::Result<(), String> {
    req.validate()
        .map_err(|e| format!("invalid request: {e}"))?;
    if fleet.nodes.is_empty() {
        return Err("no worker has joined the fleet".into());
    }
    if fleet.nodes.values().any(|n| fit(n, req, true).is_some()) {
        return Ok(());
    }
    let mut reasons = Vec::new();
    if let Some(r) = gpu_shortfall(fleet, req) {
        reasons.push(r);
    }
    let (cid, cn) = largest(fleet, |n| n.capacity.cpu_millis());
    if cn.capacity.cpu_millis() < req.cpu_millis() {
        reasons.push(format!(
            "needs {} cpus; the largest worker ({cid}) has {}",
            req.cpus, cn.capacity.cpus
        ));
    }
    let (mid, mn) = largest(fleet, |n| n.capacity.memory_mb);
    if mn.capacity.memory_mb < req.memory_mb {
        reasons.push(format!(
            "needs {} MiB memory; the largest worker ({mid}) has {} MiB",
            req.memory_mb, mn.capacity.memory_mb
        ));
    }
    if reasons.is_empty() {
        let mut workers: Vec<String> = fleet
            .nodes
            .iter()
            .take(5)
            .map(|(id, n)| format!("{id}: {}", n.capacity.describe()))
            .collect();
        if fleet.nodes.len() > 5 {
            workers.push(format!("and {} more", fleet.nodes.len() - 5));
        }
        reasons.push(format!(
            "needs {} on one worker; no worker has all of it ({})",
            req.describe(),
            workers.join("; ")
        ));
    }
    Err(reasons.join(". "))
}

/// The worker with the most of `key`; ties go to the first in id order.
fn largest<K: Ord>(fleet: &Fleet, key: impl Fn(&Node) -> K) -> (&WorkerId, &Node) {
    let mut best: Option<(&WorkerId, &Node)> = None;
    for (id, n) in &fleet.nodes {
        if best.is_none_or(|(_, b)| key(n) > key(b)) {
            best = Some((id, n));
        }
    }
    best.expect("callers check that the fleet is not empty")
}

/// The reason when no worker's GPUs alone could serve `req`, else None.
fn gpu_shortfall(fleet: &Fleet, req: &ResourceRequest) -> Option<String> {
    let gm = req.gpu_memory_mb;
    let (need_devices, what) = match req.gpu_demand() {
        GpuDemand::None => return None,
        GpuDemand::Share(_) => (1, format!("{} of one GPU", req.gpus)),
        GpuDemand::Whole(n) => (
            n as usize,
            format!("{n} GPU{}", if n == 1 { "" } else { "s" }),
        ),
    };
    let with_mem = match (gm, need_devices) {
        (0, _) => String::new(),
        (_, 1) => format!(" with {gm} MiB"),
        _ => format!(" with {gm} MiB each"),
    };
    let qualifying = |n: &Node| {
        n.capacity
            .gpus
            .iter()
            .filter(|g| g.memory_total_mb >= gm)
            .count()
    };
    let (best_id, best) = largest(fleet, |n| (qualifying(n), n.capacity.gpus.len()));
    let have = qualifying(best);
    if have >= need_devices {
        return None;
    }
    let needs = format!("needs {what}{with_mem}");
    let gpus = &best.capacity.gpus;
    if gpus.is_empty() {
        return Some(format!("{needs}; no worker in the fleet has a GPU"));
    }
    if have == 0 {
        let (on, g) = fleet
            .nodes
            .iter()
            .flat_map(|(id, n)| n.capacity.gpus.iter().map(move |g| (id, g)))
            .max_by_key(|(id, g)| (g.memory_total_mb, std::cmp::Reverse(*id)))?;
        return Some(format!(
            "{needs}; the largest GPU in the fleet has {} MiB ({} on {on})",
            g.memory_total_mb, g.name
        ));
    }
    if have == gpus.len() {
        return Some(format!(
            "{needs}; the largest worker ({best_id}) has {}",
            describe_gpus(gpus)
        ));
    }
    Some(format!(
        "{needs}; the most any worker has with {gm} MiB or more is {have} ({best_id} has {})",
        describe_gpus(gpus)
    ))
}

/// The value of `CUDA_VISIBLE_DEVICES` for a job: its devices' indices,
/// or "" for a CPU-only job so it cannot touch the worker's GPUs. The
/// indices are NVML's (PCI bus order), so the job also needs
/// `CUDA_DEVICE_ORDER=PCI_BUS_ID`; inside the job the devices are then
/// `cuda:0..n` in this order.
pub fn cuda_visible_devices(placement: &Placement) -> String {
    placement
        .devices
        .iter()
        .map(|d| d.index.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;
