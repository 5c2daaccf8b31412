//! The shadow: a copy of a routed request answered by another version on a
//! task of its own, logged (variant `shadow`, `shadow_of` the answer's
//! request id) and never returned.
//!
//! The caller's answer never waits for it: the copy starts after the
//! answer is built, runs under its own timeout, and a failure or a timeout
//! is logged as the shadow's error and counted — nothing of it reaches
//! the primary. At most [`MAX_IN_FLIGHT`] copies run at once per replica;
//! a copy beyond that is skipped and counted, so a stuck shadow cannot pile
//! up tasks and memory behind a busy endpoint.

use crate::Ctx;
use chrono::Utc;
use serde_json::Value;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tracseq_core::ids::{DeploymentId, RequestId};
use tracseq_core::lifecycle::traffic::{Shadow, SHADOW};
use tracseq_core::predictions::{LoggedFeatures, PredictionRecord};

/// Shadow copies one replica runs at once.
pub const MAX_IN_FLIGHT: usize = 256;

pub struct Shadows {
    permits: Arc<Semaphore>,
    started: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    skipped: AtomicU64,
}

impl Default for Shadows {
    fn default() -> Self {
        Shadows {
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            started: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }
}

/// One request's copy for the shadow.
pub struct Copy {
    pub model: String,
    pub shadow: Shadow,
    pub shadow_of: RequestId,
    pub deployment: Option<DeploymentId>,
    pub entity_id: Option<String>,
    /// As the caller sent them: parsed on the shadow's task, not on the
    /// answer's.
    pub features: LoggedFeatures,
    pub caller: Option<String>,
}

impl Shadows {
    /// Starts the shadow's answer to `copy` on a task of its own and
    /// returns at once.
    pub fn spawn(ctx: &Ctx, copy: Copy) {
        let this = &ctx.shadows;
        let Ok(permit) = this.permits.clone().try_acquire_owned() else {
            this.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        this.started.fetch_add(1, Ordering::Relaxed);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let limit = Duration::from_millis(copy.shadow.timeout_ms);
            let version = copy.shadow.version;
            let run = async {
                let model = ctx.models.load(&ctx.platform, &copy.model, version).await?;
                let features = copy.features.parse()?;
                let answer = crate::routes::predict::answer(
                    &ctx,
                    &model,
                    &features,
                    // Only the output is logged and compared.
                    tracseq_learn::predict::Explain::No,
                )
                .await?;
                Ok::<_, crate::problem::ApiError>((model, answer))
            };
            let outcome = tokio::time::timeout(limit, run).await;
            let latency = started.elapsed();
            let (output, error) = match outcome {
                Ok(Ok((model, answer))) => {
                    model.record(SHADOW, latency, true);
                    (crate::routes::predict::log_output(&answer), None)
                }
                Ok(Err(e)) => {
                    ctx.shadows.failed.fetch_add(1, Ordering::Relaxed);
                    (Value::Null, Some(e.message))
                }
                Err(_) => {
                    ctx.shadows.timed_out.fetch_add(1, Ordering::Relaxed);
                    (
                        Value::Null,
                        Some(format!(
                            "the shadow gave no answer within {} ms",
                            copy.shadow.timeout_ms
                        )),
                    )
                }
            };
            if let Some(e) = &error {
                tracing::debug!(model = %copy.model, version, error = %e, "shadow answer failed");
            }
            if ctx.prediction_log.enabled() {
                ctx.prediction_log.record(PredictionRecord {
                    request_id: RequestId::new(),
                    at: Utc::now(),
                    model: copy.model,
                    version,
                    variant: SHADOW.into(),
                    entity_id: copy.entity_id,
                    features: copy.features,
                    output,
                    latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                    caller: copy.caller,
                    deployment_id: copy.deployment,
                    shadow_of: Some(copy.shadow_of),
                    error,
                });
            }
            drop(permit);
        });
    }

    /// The shadow copies started and still running on this replica.
    pub fn in_flight(&self) -> usize {
        MAX_IN_FLIGHT - self.permits.available_permits()
    }

    pub fn render_metrics(&self, out: &mut String) {
        let _ = write!(
            out,
            "# HELP tracseq_shadow_requests_total Shadow copies by what became of them: started, failed (an error), timed_out, skipped (too many running).\n\
             # TYPE tracseq_shadow_requests_total counter\n\
             tracseq_shadow_requests_total{{result=\"started\"}} {}\n\
             tracseq_shadow_requests_total{{result=\"failed\"}} {}\n\
             tracseq_shadow_requests_total{{result=\"timed_out\"}} {}\n\
             tracseq_shadow_requests_total{{result=\"skipped\"}} {}\n\
             # HELP tracseq_shadow_in_flight Shadow copies running now on this replica.\n\
             # TYPE tracseq_shadow_in_flight gauge\n\
             tracseq_shadow_in_flight {}\n",
            self.started.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.timed_out.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.in_flight(),
        );
    }
}
