//! `GET /models/{name}/drift`: how far the features a model version was
//! asked about (the prediction log) have moved from those it was trained
//! on (the profile in its artifact), feature by feature.

use super::feedback::parse_since;
use super::{json_reply, paging, query, run, with_ctx};
use crate::problem::{ApiError, ApiResult};
use crate::serving::Pick;
use crate::Ctx;
use std::collections::HashMap;
use tracseq_core::paging::Page;
use tracseq_core::predictions::{version_features, PredictionFilter};
use tracseq_core::types::validate_name;
use tracseq_learn::drift_report::{profile_drift, JS_DRIFT, MIN_LIVE, PSI_DRIFT};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// Live records compared when the query does not say.
pub const DEFAULT_WINDOW: u32 = 5_000;
/// The most live records one report reads.
pub const MAX_WINDOW: u32 = 50_000;

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("models" / String / "drift")
        .and(warp::get())
        .and(with_ctx(ctx))
        .and(query())
        .then(|name, ctx, q| run(drift(ctx, name, q)))
}

async fn drift(ctx: Ctx, name: String, q: HashMap<String, String>) -> ApiResult {
    validate_name("model", &name)?;
    paging::only(&q, &["version", "since", "limit"])?;
    let version = q
        .get("version")
        .map(|v| {
            v.parse::<u32>().ok().filter(|v| *v >= 1).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "version '{}' must be a version number (1 or more)",
                    tracseq_core::error::excerpt(v, 20)
                ))
            })
        })
        .transpose()?;
    let since = q.get("since").map(|s| parse_since(s)).transpose()?;
    let window = match q.get("limit") {
        None => DEFAULT_WINDOW,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_WINDOW).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit must be a whole number from 1 to {MAX_WINDOW} (live records compared)"
                ))
            })?,
    };
    // The version asked for, else the one serving requests without one.
    let pick = version.map_or(Pick::Serving, Pick::Version);
    let loaded = ctx.models.get(&ctx.platform, &name, pick).await?;
    let version = loaded.version.version;
    let filter = PredictionFilter {
        model: Some(name.clone()),
        since,
        entity_id: None,
        // What callers sent once: not a shadow's copy of it again.
        answered_only: true,
    };
    let page = Page {
        limit: window,
        after: None,
    };
    let records = ctx
        .platform
        .predictions
        .list_predictions(&filter, &page)
        .await?;
    let parsed = version_features(&records, version);
    let live: Vec<_> = parsed.iter().collect();
    let features = profile_drift(&loaded.artifact.profile, &live);
    let drifted: Vec<&str> = features
        .iter()
        .filter(|f| f.drifted)
        .map(|f| f.feature.as_str())
        .collect();
    Ok(json_reply(
        &serde_json::json!({
            "model": name,
            "version": version,
            "since": since,
            "window": window,
            "live_records": live.len(),
            "reference_rows": loaded.artifact.profile.rows,
            "thresholds": {"psi": PSI_DRIFT, "jensen_shannon": JS_DRIFT, "min_live": MIN_LIVE},
            "drifted": drifted,
            "features": features,
        }),
        StatusCode::OK,
    ))
}
