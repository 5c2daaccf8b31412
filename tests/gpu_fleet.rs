//! GPU placement through the real dispatch path (memory backends, real
//! worker loops and scheduler): GPU jobs go only to workers that can hold
//! them, shares never overcommit a device, heartbeats carry the inventory,
//! a job nobody could hold ends `unschedulable`, and a worker that stops
//! heartbeating shows as dead.

mod common;

use chrono::{DateTime, Utc};
use common::fleet::Fleet;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracseq_core::fleet::WorkerStatus;
use tracseq_core::protocol::{JobSpec, NoopPayload};
use tracseq_core::resources::ResourceRequest;
use tracseq_core::types::{DispatchMessage, Job, JobState, NewJob};
use tracseq_core::{JobId, WorkerId};
use tracseq_worker::{gpu, HostResources, Worker, WorkerOptions};

const HEARTBEAT: Duration = Duration::from_millis(100);

impl Fleet {
    /// A worker with a configured GPU list ("none" for a CPU host).
    fn worker(
        &self,
        name: &str,
        gpus: &str,
        classes: &[&str],
        slots: u16,
    ) -> (Arc<Worker>, tokio::task::JoinHandle<()>, CancellationToken) {
        let (inventory, _) = gpu::detect(Some(gpus)).unwrap();
        let host = HostResources::new(WorkerId(name.into()), inventory, u32::from(slots)).unwrap();
        self.spawn_worker(WorkerOptions {
            id: WorkerId(name.into()),
            resource_classes: classes.iter().map(|c| c.to_string()).collect(),
            host: Arc::new(host),
            slots,
            lease: Duration::from_secs(10),
            heartbeat: HEARTBEAT,
            drain: Duration::from_secs(5),
            dataset_limits: Default::default(),
        })
    }

    async fn submit(&self, resources: ResourceRequest, sleep_ms: u64) -> JobId {
        let job = NewJob {
            spec: JobSpec::Noop(NoopPayload { sleep_ms }),
            experiment_id: None,
            resource_class: resources.resource_class().into(),
            resources,
            priority: 0,
            max_attempts: 1,
            timeout_secs: 60,
        }
        .into_job(Utc::now(), None)
        .unwrap();
        self.platform.state.insert_job(&job).await.unwrap();
        self.platform
            .queue
            .publish(&job.resource_class, &DispatchMessage::for_job(&job))
            .await
            .unwrap();
        job.id
    }

    async fn wait_terminal(&self, ids: &[JobId], limit: Duration) -> Vec<Job> {
        let start = Instant::now();
        loop {
            let mut jobs = Vec::new();
            for id in ids {
                jobs.push(self.platform.state.get_job(*id).await.unwrap());
            }
            if jobs.iter().all(|j| j.state.is_terminal()) {
                return jobs;
            }
            assert!(
                start.elapsed() < limit,
                "jobs not finished: {:?}",
                jobs.iter().map(|j| j.state).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn gpus(g: f64) -> ResourceRequest {
    ResourceRequest {
        gpus: g,
        ..Default::default()
    }
}

/// When the attempt ran.
fn interval(j: &Job) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        j.started_at.expect("started"),
        j.finished_at.expect("finished"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_jobs_run_only_where_they_fit_and_never_overcommit() {
    let fleet = Fleet::new();
    // A CPU host that only takes CPU work, and a two-GPU host that takes both.
    let (_cpu, _, _) = fleet.worker("cpu-host", "none", &["cpu"], 4);
    let (_gpu, _, _) = fleet.worker("gpu-host", "0:T4:16000,1:T4:16000", &["gpu", "cpu"], 8);

    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(fleet.submit(gpus(0.5), 300).await);
    }
    ids.push(fleet.submit(gpus(1.0), 300).await);
    for _ in 0..3 {
        ids.push(fleet.submit(ResourceRequest::default(), 50).await);
    }
    let jobs = fleet.wait_terminal(&ids, Duration::from_secs(30)).await;

    for j in &jobs {
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
        if j.resources.gpus > 0.0 {
            assert_eq!(j.lease_owner, None, "a finished job holds no lease: {j:?}");
            let a = j.gpus.as_ref().expect("a GPU job records its devices");
            let want = if j.resources.gpus >= 1.0 { 1000 } else { 500 };
            assert_eq!(a.devices.len(), 1, "{a:?}");
            assert_eq!(a.devices[0].share_milli, want);
            assert_eq!(a.cuda_visible_devices, a.devices[0].index.to_string());
        } else {
            assert!(j.gpus.is_none(), "a CPU job gets no GPU: {j:?}");
        }
    }
    // Whoever ran them, at no instant did a device hold more than itself.
    // Checked at every attempt's start: the shares of jobs running then.
    let gpu_jobs: Vec<&Job> = jobs.iter().filter(|j| j.gpus.is_some()).collect();
    let mut shared_a_device = false;
    for probe in &gpu_jobs {
        let at = interval(probe).0;
        let mut per_device: BTreeMap<u32, u32> = BTreeMap::new();
        for j in &gpu_jobs {
            let (s, e) = interval(j);
            if s <= at && at < e {
                for d in &j.gpus.as_ref().unwrap().devices {
                    *per_device.entry(d.index).or_default() += d.share_milli;
                }
            }
        }
        for (dev, milli) in per_device {
            assert!(milli <= 1000, "GPU {dev} held {milli}/1000 at {at}");
            let own = probe.gpus.as_ref().unwrap().devices[0].index;
            shared_a_device |= dev == own && milli == 1000 && probe.resources.gpus < 1.0;
        }
    }
    assert!(
        shared_a_device,
        "two half-GPU jobs ran together on one device (fractional packing)"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_inventory_and_running_jobs_and_stops_are_seen() {
    let fleet = Fleet::new();
    let (_w, task, stop) = fleet.worker("gpu-host", "0:A100:81920,1:A100:81920", &[], 2);
    let id = fleet.submit(gpus(0.25), 1_500).await;

    // While the job runs, the worker's row shows it and its share.
    let start = Instant::now();
    let row = loop {
        let rows = fleet.platform.state.list_workers().await.unwrap();
        if let Some(r) = rows.iter().find(|r| !r.running.is_empty()) {
            break r.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no heartbeat with the running job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(row.id.0, "gpu-host");
    assert_eq!(row.slots, 2);
    assert_eq!(row.inventory, "configured");
    assert_eq!(
        row.resource_classes,
        ["gpu", "cpu"],
        "auto: a GPU host takes both"
    );
    let names: Vec<_> = row
        .capacity
        .gpus
        .iter()
        .map(|g| (g.index, g.name.as_str(), g.memory_total_mb))
        .collect();
    assert_eq!(names, [(0, "A100", 81920), (1, "A100", 81920)]);
    assert!(row.capacity.cpus >= 2.0);
    assert_eq!(row.running[0].job_id, id);
    assert_eq!(row.running[0].gpus.devices[0].share_milli, 250);
    assert_eq!(row.status(Utc::now()), WorkerStatus::Alive);

    // A clean stop is recorded as stopped, not dead.
    stop.cancel();
    task.await.unwrap();
    let rows = fleet.platform.state.list_workers().await.unwrap();
    assert_eq!(rows[0].status(Utc::now()), WorkerStatus::Stopped);
    assert!(rows[0].running.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_heartbeating_is_dead() {
    let fleet = Fleet::new();
    let (_w, task, _) = fleet.worker("doomed", "none", &["cpu"], 1);
    let start = Instant::now();
    while fleet
        .platform
        .state
        .list_workers()
        .await
        .unwrap()
        .is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed: no shutdown, no more heartbeats.
    task.abort();
    let _ = task.await;
    tokio::time::sleep(HEARTBEAT * 5).await;
    let rows = fleet.platform.state.list_workers().await.unwrap();
    assert_eq!(rows[0].status(Utc::now()), WorkerStatus::Dead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_no_worker_could_hold_ends_unschedulable_with_the_reason() {
    let mut fleet = Fleet::new();
    let (_w, _, _) = fleet.worker("small", "0:T4:16000", &[], 2);
    fleet.run_scheduler(
        fleet
            .scheduler()
            .with_unschedulable_after(Duration::from_millis(200)),
    );
    let too_big = fleet.submit(gpus(2.0), 0).await;
    let fits = fleet.submit(gpus(1.0), 0).await;
    let jobs = fleet
        .wait_terminal(&[too_big, fits], Duration::from_secs(20))
        .await;
    assert_eq!(jobs[0].state, JobState::Unschedulable);
    let reason = jobs[0].last_error.as_deref().unwrap();
    assert!(reason.starts_with("unschedulable: "), "{reason}");
    assert!(reason.contains("2 GPUs"), "{reason}");
    assert!(
        reason.contains("T4"),
        "the reason names what the fleet has: {reason}"
    );
    assert_eq!(jobs[1].state, JobState::Succeeded);
    fleet.stop().await;
}
