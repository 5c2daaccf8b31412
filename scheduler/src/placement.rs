//! Placement: which worker, and which GPUs on it, a job gets — a pure
//! function over the fleet's capacity and reservations.
//!
//! Shares and cpus are counted in integer thousandths (see
//! [`tracseq_core::resources::MILLI`]) so that "never overcommit" is exact.
//! Every map is a `BTreeMap`, so the same fleet and request always give the
//! same answer, whatever order workers joined in.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use tracseq_core::resources::{
    describe_gpus, to_milli, GpuDemand, GpuInfo, ResourceRequest, WorkerCapacity, MILLI,
};
use tracseq_core::{Error, JobId, Result, WorkerId};

/// One device given to a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceAssignment {
    /// NVML index on the worker.
    pub index: u32,
    /// Thousandths of the device: 1000 for a whole GPU, 250 for `gpus: 0.25`
    /// (the unit of `tracseq_core::fleet::AssignedGpu`, so it copies over).
    pub share_milli: u32,
    /// GPU memory reserved on it: what a share asked for, or the whole
    /// device's memory for a whole-device job (nobody else can use it).
    pub memory_mb: u64,
}

/// Where a job runs and what it holds there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub worker: WorkerId,
    pub cpus: f64,
    pub memory_mb: u64,
    /// Sorted by index; empty for a CPU-only job.
    pub devices: Vec<DeviceAssignment>,
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
    pub devices: Vec<DeviceUsage>,
    pub jobs: Vec<JobId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceUsage {
    pub index: u32,
    pub share_milli: u32,
    pub memory_mb: u64,
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
                .map(|(&index, u)| DeviceUsage {
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
fn fit(node: &Node, req: &ResourceRequest, idle: bool) -> Option<(Score, Vec<DeviceAssignment>)> {
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
            vec![DeviceAssignment {
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
                .map(|g| DeviceAssignment {
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
    let mut best: Option<(Score, &WorkerId, Vec<DeviceAssignment>)> = None;
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
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn cap(cpus: f64, memory_mb: u64, gpus: &[(u32, &str, u64)]) -> WorkerCapacity {
        let gpus = gpus
            .iter()
            .map(|&(index, name, memory_total_mb)| GpuInfo {
                index,
                uuid: String::new(),
                name: name.into(),
                memory_total_mb,
                memory_free_mb: None,
                utilization_pct: None,
                temperature_c: None,
                power_w: None,
            })
            .collect();
        WorkerCapacity {
            cpus,
            memory_mb,
            gpus,
        }
    }

    fn rq(cpus: f64, memory_mb: u64, gpus: f64, gpu_memory_mb: u64) -> ResourceRequest {
        ResourceRequest {
            cpus,
            memory_mb,
            gpus,
            gpu_memory_mb,
        }
    }

    fn w(id: &str) -> WorkerId {
        WorkerId(id.into())
    }

    fn fleet(workers: Vec<(&str, WorkerCapacity)>) -> Fleet {
        let mut f = Fleet::new();
        for (id, c) in workers {
            f.set_worker(w(id), c).unwrap();
        }
        f
    }

    const A100: (u32, &str, u64) = (0, "A100", 81920);

    fn two_a100() -> WorkerCapacity {
        cap(32.0, 256_000, &[A100, (1, "A100", 81920)])
    }

    /// Places and reserves; panics when refused.
    fn put(f: &mut Fleet, r: &ResourceRequest) -> Placement {
        let p = place(f, r).unwrap_or_else(|e| panic!("{r:?}: {e}"));
        f.reserve(JobId::new(), &p).unwrap();
        p
    }

    fn busy(f: &Fleet, r: &ResourceRequest) -> String {
        match place(f, r) {
            Err(Refusal::Busy(m)) => m,
            other => panic!("{r:?} should be busy, got {other:?}"),
        }
    }

    fn unschedulable(f: &Fleet, r: &ResourceRequest) -> String {
        match place(f, r) {
            Err(Refusal::Unschedulable(m)) => {
                assert_eq!(schedulable(f, r), Err(m.clone()));
                m
            }
            other => panic!("{r:?} should be unschedulable, got {other:?}"),
        }
    }

    fn indices(p: &Placement) -> Vec<u32> {
        p.devices.iter().map(|d| d.index).collect()
    }

    #[test]
    fn overcommit_is_refused_for_count_memory_and_cpus() {
        let mut f = fleet(vec![("g", cap(8.0, 1000, &[A100]))]);
        put(&mut f, &rq(1.0, 0, 1.0, 0));
        busy(&f, &rq(1.0, 0, 1.0, 0));
        busy(&f, &rq(1.0, 0, 0.001, 0));

        let mut f = fleet(vec![("g", cap(8.0, 1000, &[A100]))]);
        put(&mut f, &rq(1.0, 0, 0.5, 50_000));
        busy(&f, &rq(1.0, 0, 0.25, 40_000));
        let p = put(&mut f, &rq(1.0, 0, 0.25, 31_920));
        assert_eq!(p.devices[0].memory_mb, 31_920);
        busy(&f, &rq(1.0, 0, 0.25, 1));
        put(&mut f, &rq(1.0, 0, 0.25, 0));
        busy(&f, &rq(1.0, 0, 0.001, 0));

        put(&mut f, &rq(4.0, 1000, 0.0, 0));
        busy(&f, &rq(1.0, 1, 0.0, 0));
        busy(&f, &rq(1.001, 0, 0.0, 0));
        put(&mut f, &rq(1.0, 0, 0.0, 0));
    }

    #[test]
    fn reserve_rechecks_a_stale_placement() {
        let mut f = fleet(vec![("g", cap(8.0, 0, &[A100]))]);
        let r = rq(1.0, 0, 1.0, 0);
        let (p1, p2) = (place(&f, &r).unwrap(), place(&f, &r).unwrap());
        assert_eq!(p1, p2);
        let job = JobId::new();
        f.reserve(job, &p1).unwrap();
        let e = f.reserve(job, &p1).unwrap_err();
        assert!(e.to_string().contains("already holds"), "{e}");
        let e = f.reserve(JobId::new(), &p2).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
        assert!(e.to_string().contains("GPU 0 is taken"), "{e}");
        let mut gone = p2.clone();
        gone.worker = w("nobody");
        assert!(matches!(
            f.reserve(JobId::new(), &gone),
            Err(Error::NotFound(_))
        ));
        assert_eq!(f.release(&job), Some(p1));
        assert_eq!(f.release(&job), None);
        f.reserve(JobId::new(), &p2).unwrap();
    }

    #[test]
    fn fractional_jobs_pack_onto_one_device() {
        let mut f = fleet(vec![("g", two_a100())]);
        for _ in 0..4 {
            assert_eq!(indices(&put(&mut f, &rq(1.0, 0, 0.25, 0))), vec![0]);
        }
        assert_eq!(indices(&put(&mut f, &rq(1.0, 0, 0.25, 0))), vec![1]);
        let u = f.usage(&w("g")).unwrap();
        let shares: Vec<u32> = u.devices.iter().map(|d| d.share_milli).collect();
        assert_eq!(shares, vec![1000, 250]);
        assert_eq!(u.jobs.len(), 5);
    }

    #[test]
    fn shares_prefer_the_tightest_partly_used_device_on_any_worker() {
        let mut f = fleet(vec![("a", two_a100()), ("b", two_a100())]);
        let first = put(&mut f, &rq(1.0, 0, 0.5, 0));
        assert_eq!((first.worker.0.as_str(), indices(&first)), ("a", vec![0]));
        let (job, p) = (JobId::new(), place(&f, &rq(1.0, 0, 0.7, 0)).unwrap());
        assert_eq!((p.worker.0.as_str(), indices(&p)), ("a", vec![1]));
        f.reserve(job, &p).unwrap();
        let p = put(&mut f, &rq(1.0, 0, 0.3, 0));
        assert_eq!(
            (p.worker.0.as_str(), indices(&p)),
            ("a", vec![1]),
            "best fit"
        );
        let p = put(&mut f, &rq(1.0, 0, 0.2, 0));
        assert_eq!((p.worker.0.as_str(), indices(&p)), ("a", vec![0]));
        f.release(&job);
        // a's device 0 has 0.3 free, device 1 has 0.7: the tighter one wins.
        let p = put(&mut f, &rq(1.0, 0, 0.1, 0));
        assert_eq!((p.worker.0.as_str(), indices(&p)), ("a", vec![0]));
    }

    #[test]
    fn whole_gpu_jobs_avoid_partly_used_devices() {
        let mut f = fleet(vec![("g", two_a100())]);
        put(&mut f, &rq(1.0, 0, 0.25, 0));
        let p = put(&mut f, &rq(1.0, 0, 1.0, 0));
        assert_eq!(indices(&p), vec![1]);
        assert_eq!(
            (p.devices[0].share_milli, p.devices[0].memory_mb),
            (1000, 81920)
        );
        let m = busy(&f, &rq(1.0, 0, 1.0, 0));
        assert_eq!(
            m,
            "needs 1 cpu, 1 GPU; 1 of 1 workers could hold it (g) but none has it free now"
        );
        busy(&f, &rq(1.0, 0, 2.0, 0));
    }

    #[test]
    fn whole_gpu_jobs_pack_and_take_the_smallest_devices_that_suffice() {
        let t4 = |i| (i, "T4", 15_360);
        let mut f = fleet(vec![
            ("a", cap(32.0, 0, &[(0, "A100", 81920), t4(1), t4(2)])),
            ("b", cap(32.0, 0, &[(0, "A100", 81920)])),
        ]);
        let p = put(&mut f, &rq(1.0, 0, 2.0, 0));
        assert_eq!((p.worker.0.as_str(), indices(&p)), ("a", vec![1, 2]));
        assert_eq!(cuda_visible_devices(&p), "1,2");
        // Each worker has one free A100 left; "a" has fewer free cpus: pack there.
        let p = put(&mut f, &rq(1.0, 0, 1.0, 20_000));
        assert_eq!((p.worker.0.as_str(), indices(&p)), ("a", vec![0]));
        let p = put(&mut f, &rq(1.0, 0, 1.0, 0));
        assert_eq!((p.worker.0.as_str(), indices(&p)), ("b", vec![0]));
    }

    #[test]
    fn unschedulable_reasons_name_the_shortfall() {
        let f = fleet(vec![
            ("gpu-1", cap(16.0, 64_000, &[A100])),
            ("cpu-1", cap(64.0, 0, &[])),
        ]);
        assert_eq!(
            unschedulable(&f, &rq(1.0, 0, 2.0, 40_000)),
            "needs 2 GPUs with 40000 MiB each; the largest worker (gpu-1) has 1 GPU (A100, 81920 MiB)"
        );
        assert_eq!(
            unschedulable(&f, &rq(1.0, 0, 0.5, 90_000)),
            "needs 0.5 of one GPU with 90000 MiB; the largest GPU in the fleet has 81920 MiB (A100 on gpu-1)"
        );
        assert_eq!(
            unschedulable(&f, &rq(128.0, 100_000, 0.0, 0)),
            "needs 128 cpus; the largest worker (cpu-1) has 64. \
             needs 100000 MiB memory; the largest worker (gpu-1) has 64000 MiB"
        );
        let m = unschedulable(&f, &rq(32.0, 0, 1.0, 0));
        assert!(
            m.starts_with("needs 32 cpus, 1 GPU on one worker; no worker has all of it"),
            "{m}"
        );
        assert!(
            m.contains("gpu-1: 16 cpus, 64000 MiB, 1 GPU (A100, 81920 MiB)"),
            "{m}"
        );
        assert!(m.contains("cpu-1: 64 cpus, 0 MiB, no GPU"), "{m}");

        let cpu_only = fleet(vec![("c", cap(8.0, 0, &[]))]);
        assert_eq!(
            unschedulable(&cpu_only, &rq(1.0, 0, 1.0, 0)),
            "needs 1 GPU; no worker in the fleet has a GPU"
        );
        let mixed = fleet(vec![(
            "m",
            cap(
                8.0,
                0,
                &[(0, "T4", 15_360), (1, "T4", 15_360), (2, "A100", 81920)],
            ),
        )]);
        assert_eq!(
            unschedulable(&mixed, &rq(1.0, 0, 2.0, 40_000)),
            "needs 2 GPUs with 40000 MiB each; the most any worker has with 40000 MiB or more \
             is 1 (m has 3 GPUs (A100, 81920 MiB; 2× T4, 15360 MiB))"
        );
        let m = unschedulable(&mixed, &rq(1.0, 0, 1.5, 0));
        assert!(
            m.starts_with("invalid request: gpus above 1 must be a whole number"),
            "{m}"
        );
    }

    #[test]
    fn busy_is_told_apart_from_unschedulable_and_from_no_workers() {
        let mut f = Fleet::new();
        assert_eq!(place(&f, &rq(1.0, 0, 0.0, 0)), Err(Refusal::NoWorkers));
        assert!(schedulable(&f, &rq(1.0, 0, 0.0, 0)).is_err());
        f.set_worker(w("g"), cap(4.0, 0, &[A100])).unwrap();
        let r = rq(4.0, 0, 1.0, 0);
        let job = JobId::new();
        f.reserve(job, &place(&f, &r).unwrap()).unwrap();
        assert_eq!(schedulable(&f, &r), Ok(()));
        busy(&f, &r);
        busy(&f, &rq(1.0, 0, 0.0, 0));
        unschedulable(&f, &rq(5.0, 0, 0.0, 0));
        f.release(&job);
        put(&mut f, &r);
    }

    #[test]
    fn a_dead_workers_reservations_are_freed() {
        let mut f = fleet(vec![("a", two_a100()), ("b", two_a100())]);
        let jobs: Vec<(JobId, Placement)> = (0..3)
            .map(|_| {
                let (j, p) = (JobId::new(), place(&f, &rq(1.0, 0, 1.0, 0)).unwrap());
                f.reserve(j, &p).unwrap();
                (j, p)
            })
            .collect();
        let on_a: Vec<JobId> = jobs
            .iter()
            .filter(|(_, p)| p.worker == w("a"))
            .map(|(j, _)| *j)
            .collect();
        assert_eq!(on_a.len(), 2);
        let mut freed = f.remove_worker(&w("a"));
        freed.sort();
        let mut expected = on_a.clone();
        expected.sort();
        assert_eq!(freed, expected);
        assert!(f.remove_worker(&w("a")).is_empty());
        for j in &on_a {
            assert_eq!(f.placement_of(j), None);
            assert_eq!(f.release(j), None);
        }
        assert!(f.placement_of(&jobs[2].0).is_some());
        f.set_worker(w("a"), two_a100()).unwrap();
        assert_eq!(f.usage(&w("a")).unwrap().devices, vec![]);
        assert_eq!(put(&mut f, &rq(1.0, 0, 2.0, 0)).worker, w("a"));
    }

    #[test]
    fn cpu_jobs_prefer_workers_without_gpus_but_may_use_gpu_hosts() {
        let mut f = fleet(vec![
            ("a-gpu", cap(16.0, 0, &[A100])),
            ("z-cpu", cap(2.0, 0, &[])),
        ]);
        for _ in 0..2 {
            assert_eq!(put(&mut f, &rq(1.0, 0, 0.0, 0)).worker, w("z-cpu"));
        }
        let p = put(&mut f, &rq(1.0, 0, 0.0, 0));
        assert_eq!(p.worker, w("a-gpu"));
        assert!(p.devices.is_empty());
        assert_eq!(
            cuda_visible_devices(&p),
            "",
            "a CPU job must not see the GPUs"
        );
        assert_eq!(indices(&put(&mut f, &rq(1.0, 0, 1.0, 0))), vec![0]);
    }

    #[test]
    fn capacity_updates_keep_reservations() {
        let mut f = fleet(vec![("g", two_a100())]);
        let job = JobId::new();
        f.reserve(job, &place(&f, &rq(8.0, 0, 1.0, 0)).unwrap())
            .unwrap();
        f.set_worker(w("g"), cap(4.0, 0, &[(1, "A100", 81920)]))
            .unwrap();
        busy(&f, &rq(1.0, 0, 0.0, 0));
        assert!(f.set_worker(w("g"), cap(4.0, 0, &[A100, A100])).is_err());
        assert!(f.release(&job).is_some());
        assert_eq!(f.usage(&w("g")).unwrap().cpus_reserved, 0.0);
        assert_eq!(indices(&put(&mut f, &rq(4.0, 0, 1.0, 0))), vec![1]);
    }

    #[test]
    fn placement_does_not_depend_on_join_order() {
        let workers = || {
            vec![
                ("a", two_a100()),
                ("b", cap(8.0, 0, &[A100])),
                ("c", cap(4.0, 0, &[])),
                ("d", two_a100()),
            ]
        };
        let asks = [
            rq(1.0, 0, 0.5, 0),
            rq(2.0, 0, 1.0, 0),
            rq(1.0, 0, 0.0, 0),
            rq(1.0, 0, 0.25, 1000),
            rq(1.0, 0, 2.0, 0),
            rq(4.0, 0, 0.0, 0),
        ];
        let run = |mut list: Vec<(&str, WorkerCapacity)>, reverse: bool| {
            if reverse {
                list.reverse();
            }
            let mut f = fleet(list);
            asks.iter().map(|r| put(&mut f, r)).collect::<Vec<_>>()
        };
        let forward = run(workers(), false);
        assert_eq!(forward, run(workers(), true));
        let on: Vec<&str> = forward.iter().map(|p| p.worker.0.as_str()).collect();
        // b's single GPU takes the first share (it leaves no whole device
        // idle), the next share joins it, the CPU job avoids GPU hosts until
        // c is full.
        assert_eq!(on, ["b", "a", "c", "b", "d", "b"]);
    }

    fn check_invariants(f: &Fleet) {
        for (id, n) in &f.nodes {
            let mut sum = (0u64, 0u64, BTreeMap::<u32, DeviceUse>::new());
            for (job, p) in &n.jobs {
                assert_eq!(f.jobs.get(job), Some(id));
                sum.0 += to_milli(p.cpus).unwrap();
                sum.1 += p.memory_mb;
                for d in &p.devices {
                    let u = sum.2.entry(d.index).or_default();
                    u.share += d.share_milli;
                    u.memory_mb += d.memory_mb;
                }
            }
            assert_eq!(
                (sum.0, sum.1, &sum.2),
                (n.cpu_used, n.memory_used, &n.devices)
            );
            assert!(n.cpu_used <= n.capacity.cpu_millis());
            assert!(n.memory_used <= n.capacity.memory_mb);
            for g in &n.capacity.gpus {
                let u = n.device_use(g.index);
                assert!(u.share <= MILLI, "{id} GPU {}: share {}", g.index, u.share);
                assert!(u.memory_mb <= g.memory_total_mb, "{id} GPU {}", g.index);
            }
        }
        let held: usize = f.nodes.values().map(|n| n.jobs.len()).sum();
        assert_eq!(held, f.jobs.len());
    }

    #[test]
    fn random_reserve_and_release_never_overcommit() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let capacities = [
            two_a100(),
            cap(8.0, 32_000, &[(0, "T4", 15_360)]),
            cap(6.5, 16_000, &[]),
            cap(
                64.0,
                512_000,
                &[(0, "H100", 81_559), (1, "H100", 81_559), (3, "L4", 22_491)],
            ),
        ];
        let ids = ["w0", "w1", "w2", "w3"];
        let mut f = Fleet::new();
        let mut held: Vec<JobId> = Vec::new();
        let (mut placed, mut busy_count) = (0, 0);
        for step in 0..5000 {
            match rng.gen_range(0..100) {
                0..=1 => {
                    let i = rng.gen_range(0..ids.len());
                    for j in f.remove_worker(&w(ids[i])) {
                        held.retain(|h| *h != j);
                    }
                }
                2..=7 => {
                    let i = rng.gen_range(0..ids.len());
                    f.set_worker(w(ids[i]), capacities[i].clone()).unwrap();
                }
                8..=44 if !held.is_empty() => {
                    let j = held.swap_remove(rng.gen_range(0..held.len()));
                    assert!(f.release(&j).is_some());
                }
                _ => {
                    let gpus = match rng.gen_range(0..4) {
                        0 => 0.0,
                        1 => f64::from(rng.gen_range(1..=1000u32)) / 1000.0,
                        2 => f64::from(rng.gen_range(1..=3u32)),
                        _ => [0.25, 0.5, 0.1][rng.gen_range(0..3)],
                    };
                    let gm = if gpus > 0.0 {
                        rng.gen_range(0..30_000)
                    } else {
                        0
                    };
                    let r = rq(
                        f64::from(rng.gen_range(1..=4000u32)) / 1000.0,
                        rng.gen_range(0..20_000),
                        gpus,
                        gm,
                    );
                    match place(&f, &r) {
                        Ok(p) => {
                            let j = JobId::new();
                            f.reserve(j, &p)
                                .unwrap_or_else(|e| panic!("step {step}: {e}"));
                            held.push(j);
                            placed += 1;
                        }
                        Err(Refusal::Busy(_)) => {
                            assert_eq!(schedulable(&f, &r), Ok(()));
                            busy_count += 1;
                        }
                        Err(Refusal::Unschedulable(m)) => assert_eq!(schedulable(&f, &r), Err(m)),
                        Err(Refusal::NoWorkers) => assert!(f.is_empty()),
                    }
                }
            }
            check_invariants(&f);
        }
        // The run must have exercised both outcomes to prove anything.
        assert!(
            placed > 500 && busy_count > 100,
            "placed {placed}, busy {busy_count}"
        );
    }

    #[test]
    fn placement_round_trips_through_json() {
        let f = fleet(vec![("g", two_a100())]);
        let p = place(&f, &rq(0.5, 10, 0.25, 100)).unwrap();
        let back: Placement = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
