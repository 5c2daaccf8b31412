//! `GET /deployments/{id}/analysis`: the A/B analysis of one platform
//! deployment's traffic, from what every replica logged under it — per
//! variant the requests, failures, latency percentiles, outcomes and live
//! metrics with 95% intervals, and each variant against the baseline
//! (`primary`; `stable` while a canary runs) on every metric with the test
//! [`tracseq_learn::compare`] names, its statistic and p-value. Under 30
//! outcomes a side says there are not enough yet rather than a verdict.

use super::deployments::deployment_id;
use super::feedback::MAX_LIVE_OUTCOMES;
use super::{json_reply, run, with_ctx};
use crate::problem::ApiResult;
use crate::Ctx;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use tracseq_core::lifecycle::deployment::Target;
use tracseq_core::lifecycle::traffic::{PRIMARY, SHADOW, STABLE};
use tracseq_core::predictions::LiveFilter;
use tracseq_core::Error;
use tracseq_learn::compare::{compare, Comparison};
use tracseq_learn::live::{losses, metrics_of, LiveMetric, Losses};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("deployments" / String / "analysis")
        .and(warp::get())
        .and(with_ctx(ctx))
        .then(|id: String, ctx: Ctx| run(analysis(ctx, id)))
}

#[derive(Serialize)]
struct Latency {
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
}

#[derive(Serialize)]
struct VariantAnalysis {
    variant: String,
    version: u32,
    requests: u64,
    errors: u64,
    error_rate: Option<f64>,
    /// Interpolated within the log's latency buckets.
    latency: Latency,
    outcomes: usize,
    metrics: Vec<LiveMetric>,
}

async fn analysis(ctx: Ctx, id: String) -> ApiResult {
    let d = ctx
        .platform
        .registry
        .get_deployment(deployment_id(&id)?)
        .await?;
    if d.target != Target::Platform {
        return Err(Error::Conflict(format!(
            "deployment {} is to {}: only platform deployments serve traffic to analyse",
            d.id, d.target
        ))
        .into());
    }
    let filter = LiveFilter {
        model: d.model.clone(),
        since: None,
        deployment: Some(d.id),
    };
    let p = &ctx.platform.predictions;
    let counts = p.prediction_counts(&filter).await?;
    let labelled = p.labelled_predictions(&filter, MAX_LIVE_OUTCOMES).await?;
    let mut pairs: BTreeMap<(u32, &str), Vec<(&Value, &Value)>> = BTreeMap::new();
    for l in &labelled {
        pairs
            .entry((l.prediction.version, l.prediction.variant.as_str()))
            .or_default()
            .push((&l.prediction.output, &l.outcome.actual));
    }
    let per_arm: BTreeMap<(u32, &str), Losses> =
        pairs.iter().map(|(k, v)| (*k, losses(v))).collect();
    let variants: Vec<VariantAnalysis> = counts
        .iter()
        .map(|c| {
            let l = per_arm.get(&(c.version, c.variant.as_str()));
            VariantAnalysis {
                variant: c.variant.clone(),
                version: c.version,
                requests: c.predictions,
                errors: c.errors,
                error_rate: (c.predictions > 0).then(|| c.errors as f64 / c.predictions as f64),
                latency: Latency {
                    p50_ms: c.latency_quantile_ms(0.50),
                    p90_ms: c.latency_quantile_ms(0.90),
                    p99_ms: c.latency_quantile_ms(0.99),
                },
                outcomes: l
                    .and_then(|l| l.by_metric.first())
                    .map_or(0, |(_, v)| v.len()),
                metrics: l.map(metrics_of).unwrap_or_default(),
            }
        })
        .collect();
    // The baseline: stable while a canary has one, else primary.
    let baseline = if counts.iter().any(|c| c.variant == STABLE) {
        STABLE
    } else {
        PRIMARY
    };
    let base = per_arm
        .iter()
        .find(|((_, v), _)| *v == baseline)
        .map(|(_, l)| l);
    let mut comparisons: Vec<Comparison> = Vec::new();
    for ((version, variant), l) in &per_arm {
        if *variant == baseline {
            continue;
        }
        let name = format!("{variant}@{version}");
        for (metric, xs) in &l.by_metric {
            let empty: &[f64] = &[];
            let b = base.and_then(|b| b.of(metric)).unwrap_or(empty);
            comparisons.push(compare(metric, (baseline, b), (&name, xs)));
        }
    }
    let note = variants.iter().any(|v| v.variant == SHADOW).then_some(
        "a shadow is judged by the outcomes of the answers it shadowed: the same samples as \
             the arm that answered them, so its comparison is conservative",
    );
    let body = serde_json::json!({
        "deployment": {
            "id": d.id, "model": d.model, "version": d.version, "state": d.state,
            "traffic": d.traffic, "rollout": d.rollout,
        },
        "baseline": baseline,
        "variants": variants,
        "comparisons": comparisons,
        "note": note,
    });
    Ok(json_reply(&body, StatusCode::OK))
}
