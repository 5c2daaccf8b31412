//! `/workers`: the fleet as the workers' heartbeats report it, and
//! `/metrics`: the same figures (plus queue depths) for Prometheus.

use super::{json_reply, paging, query, run, with_ctx};
use crate::Ctx;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use tracseq_core::fleet::{WorkerRecord, WorkerStatus};
use tracseq_core::ids::WorkerId;
use tracseq_core::Error;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// A worker as `GET /workers` shows it: the stored record plus what the
/// reader judges from it (liveness, heartbeat age, GPU shares in use).
#[derive(Serialize)]
struct WorkerView<'a> {
    status: WorkerStatus,
    heartbeat_age_ms: i64,
    running_jobs: usize,
    /// Sum of the shares running jobs hold on each GPU, by index.
    gpu_shares_reserved: Vec<(u32, f64)>,
    #[serde(flatten)]
    record: &'a WorkerRecord,
}

fn view(w: &WorkerRecord, now: DateTime<Utc>) -> WorkerView<'_> {
    WorkerView {
        status: w.status(now),
        heartbeat_age_ms: (now - w.last_heartbeat_at).num_milliseconds(),
        running_jobs: w.running.len(),
        gpu_shares_reserved: reserved_shares(w),
        record: w,
    }
}

fn reserved_shares(w: &WorkerRecord) -> Vec<(u32, f64)> {
    w.capacity
        .gpus
        .iter()
        .map(|g| {
            let milli: u32 = w
                .running
                .iter()
                .flat_map(|r| &r.gpus.devices)
                .filter(|d| d.index == g.index)
                .map(|d| d.share_milli)
                .sum();
            (g.index, f64::from(milli) / 1000.0)
        })
        .collect()
}

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let list = warp::path!("workers")
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .and(query())
        .then(|ctx: Ctx, q: HashMap<String, String>| {
            run(async move {
                let page = paging::page(&q, |a| a.parse::<WorkerId>().map(drop))?;
                let workers = ctx.platform.state.page_workers(&page).await?;
                let now = Utc::now();
                let views: Vec<_> = workers.iter().map(|w| view(w, now)).collect();
                let count = |s: WorkerStatus| views.iter().filter(|v| v.status == s).count();
                let body = serde_json::json!({
                    "alive": count(WorkerStatus::Alive),
                    "dead": count(WorkerStatus::Dead),
                    "stopped": count(WorkerStatus::Stopped),
                    "workers": views,
                });
                let mut resp = json_reply(&body, StatusCode::OK);
                let last = workers.last().map(|w| w.id.0.clone());
                paging::link_next(&mut resp, "/workers", &page, workers.len(), last);
                Ok(resp)
            })
        });
    let one = warp::path!("workers" / String)
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .then(|id: String, ctx: Ctx| {
            run(async move {
                let id: WorkerId = id.parse()?;
                let workers = ctx.platform.state.list_workers().await?;
                let w = workers
                    .iter()
                    .find(|w| w.id == id)
                    .ok_or_else(|| Error::not_found(format!("worker {id}")))?;
                Ok(json_reply(&view(w, Utc::now()), StatusCode::OK))
            })
        });
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_ctx(ctx))
        .then(|ctx: Ctx| {
            run(async move {
                let workers = ctx.platform.state.list_workers().await?;
                let mut depths = Vec::new();
                for class in ["cpu", "gpu"] {
                    // A queue the deployment does not declare is left out,
                    // not reported as an error.
                    if let Ok(d) = ctx.platform.queue.depth(class).await {
                        depths.push((class, d));
                    }
                }
                let mut text = render_metrics(&workers, &depths, Utc::now());
                let failures = ctx
                    .audit_failures
                    .load(std::sync::atomic::Ordering::Relaxed);
                let _ = writeln!(
                    text,
                    "# HELP tracseq_audit_failures_total Audit entries this api process could not write.\n\
                     # TYPE tracseq_audit_failures_total counter\n\
                     tracseq_audit_failures_total {failures}"
                );
                ctx.models.render_metrics(&mut text);
                ctx.prediction_log.render_metrics(&mut text);
                ctx.cache.render_metrics(&mut text);
                ctx.shadows.render_metrics(&mut text);
                let drift = ctx.platform.alerts.drift_scores().await?;
                super::alerts::render_drift(&drift, &mut text);
                Ok(warp::reply::with_header(
                    text,
                    "content-type",
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .into_response())
            })
        });
    list.or(one).unify().or(metrics).unify()
}

/// Prometheus text exposition. Only live workers export GPU figures: a
/// dead worker's last readings are stale and would mislead a dashboard.
pub(crate) fn render_metrics(
    workers: &[WorkerRecord],
    queue_depths: &[(&str, u64)],
    now: DateTime<Utc>,
) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let statuses = [
        WorkerStatus::Alive,
        WorkerStatus::Dead,
        WorkerStatus::Stopped,
    ];
    family(
        "tracseq_workers",
        "Workers by status (dead: heartbeats stopped without a shutdown).",
        statuses
            .iter()
            .map(|s| {
                let n = workers.iter().filter(|w| w.status(now) == *s).count();
                (labels(&[("status", s.as_str())]), n as f64)
            })
            .collect(),
    );
    let live: Vec<_> = workers
        .iter()
        .filter(|w| w.status(now) == WorkerStatus::Alive)
        .collect();
    let per_worker = |f: &dyn Fn(&WorkerRecord) -> f64| -> Vec<(String, f64)> {
        live.iter()
            .map(|w| (labels(&[("worker", &w.id.0)]), f(w)))
            .collect()
    };
    family(
        "tracseq_worker_slots",
        "Jobs a live worker runs at once.",
        per_worker(&|w| f64::from(w.slots)),
    );
    family(
        "tracseq_worker_running_jobs",
        "Jobs a live worker is running.",
        per_worker(&|w| w.running.len() as f64),
    );
    family(
        "tracseq_worker_heartbeat_age_seconds",
        "Seconds since a live worker's last heartbeat.",
        per_worker(&|w| (now - w.last_heartbeat_at).num_milliseconds() as f64 / 1000.0),
    );
    type Reading = fn(&tracseq_core::resources::GpuInfo) -> Option<f64>;
    let gpu_families: [(&str, &str, Reading); 5] = [
        (
            "tracseq_gpu_memory_total_bytes",
            "GPU memory, total.",
            |g| Some(g.memory_total_mb as f64 * 1048576.0),
        ),
        (
            "tracseq_gpu_memory_free_bytes",
            "GPU memory, free (NVML).",
            |g| g.memory_free_mb.map(|m| m as f64 * 1048576.0),
        ),
        (
            "tracseq_gpu_utilization_ratio",
            "GPU utilisation, 0..1 (NVML).",
            |g| g.utilization_pct.map(|p| f64::from(p) / 100.0),
        ),
        (
            "tracseq_gpu_temperature_celsius",
            "GPU temperature (NVML).",
            |g| g.temperature_c.map(f64::from),
        ),
        ("tracseq_gpu_power_watts", "GPU power draw (NVML).", |g| {
            g.power_w
        }),
    ];
    for (name, help, read) in gpu_families {
        let mut samples = Vec::new();
        for w in &live {
            for g in &w.capacity.gpus {
                if let Some(v) = read(g) {
                    let index = g.index.to_string();
                    let l = labels(&[
                        ("worker", &w.id.0),
                        ("gpu", &index),
                        ("name", &g.name),
                        ("uuid", &g.uuid),
                    ]);
                    samples.push((l, v));
                }
            }
        }
        family(name, help, samples);
    }
    let mut shares = Vec::new();
    for w in &live {
        for (index, share) in reserved_shares(w) {
            let index = index.to_string();
            shares.push((labels(&[("worker", &w.id.0), ("gpu", &index)]), share));
        }
    }
    family(
        "tracseq_gpu_reserved_share",
        "Share of each GPU held by running jobs (1 = fully reserved).",
        shares,
    );
    family(
        "tracseq_queue_depth",
        "Wake-up messages waiting in a resource class's queue.",
        queue_depths
            .iter()
            .map(|(c, d)| (labels(&[("class", c)]), *d as f64))
            .collect(),
    );
    out
}

/// `{a="x",b="y"}` with the exposition format's escapes.
pub(crate) fn labels(pairs: &[(&str, &str)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use tracseq_core::fleet::{AssignedGpu, GpuAssignment, RunningJob};
    use tracseq_core::resources::{GpuInfo, ResourceRequest, WorkerCapacity};
    use tracseq_core::types::JobKind;
    use tracseq_core::{JobId, WorkerId};

    fn worker(id: &str, at: DateTime<Utc>) -> WorkerRecord {
        WorkerRecord {
            id: WorkerId(id.into()),
            resource_classes: vec!["gpu".into()],
            slots: 4,
            capacity: WorkerCapacity {
                cpus: 8.0,
                memory_mb: 32_000,
                gpus: vec![GpuInfo {
                    index: 0,
                    uuid: "GPU-1".into(),
                    name: "A\"100".into(),
                    memory_total_mb: 1024,
                    memory_free_mb: Some(512),
                    utilization_pct: Some(50),
                    temperature_c: None,
                    power_w: Some(100.5),
                }],
            },
            inventory: "nvml".into(),
            running: vec![RunningJob {
                job_id: JobId::new(),
                kind: JobKind::Trial,
                attempt: 1,
                resources: ResourceRequest {
                    gpus: 0.25,
                    ..Default::default()
                },
                gpus: GpuAssignment {
                    devices: vec![AssignedGpu {
                        index: 0,
                        share_milli: 250,
                        memory_mb: 0,
                    }],
                    cuda_visible_devices: "0".into(),
                },
                started_at: at,
            }],
            started_at: at,
            last_heartbeat_at: at,
            heartbeat_ms: 1000,
            stopped: false,
            version: "t".into(),
        }
    }

    #[test]
    fn metrics_cover_live_workers_and_escape_labels() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let alive = worker("w1", t);
        let dead = worker("w2", t - Duration::minutes(5));
        let text = render_metrics(&[alive, dead], &[("gpu", 3)], t);
        assert!(text.contains("tracseq_workers{status=\"alive\"} 1\n"));
        assert!(text.contains("tracseq_workers{status=\"dead\"} 1\n"));
        assert!(text.contains(
            "tracseq_gpu_memory_free_bytes{worker=\"w1\",gpu=\"0\",name=\"A\\\"100\",uuid=\"GPU-1\"} 536870912\n"
        ));
        assert!(text.contains("tracseq_gpu_utilization_ratio{worker=\"w1\""));
        assert!(text.contains("tracseq_gpu_reserved_share{worker=\"w1\",gpu=\"0\"} 0.25\n"));
        assert!(text.contains("tracseq_queue_depth{class=\"gpu\"} 3\n"));
        // The dead worker's stale readings are not exported; no temperature
        // was read, so none is invented.
        assert!(!text.contains("worker=\"w2\""));
        assert!(!text.contains("tracseq_gpu_temperature_celsius{"));
    }
}
