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
