//! `GET /alerts` and `GET /alerts/{id}`: what the scheduler's monitor
//! raised (drift, canary rollbacks, error-rate spikes) and how each
//! webhook delivery went, newest first, a page at a time.

use super::workers::labels;
use super::{json_reply, paging, query, run, with_ctx};
use crate::problem::{ApiError, ApiResult};
use crate::Ctx;
use std::collections::HashMap;
use tracseq_core::ids::AlertId;
use tracseq_core::lifecycle::alert::AlertKind;
use tracseq_core::monitoring::{AlertFilter, DriftScores};
use tracseq_core::types::validate_name;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let list = warp::path!("alerts")
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .and(query())
        .then(|ctx, q| run(list(ctx, q)));
    let one = warp::path!("alerts" / String)
        .and(warp::get())
        .and(with_ctx(ctx))
        .then(|id: String, ctx: Ctx| {
            run(async move {
                let id: AlertId = id.parse()?;
                let alert = ctx.platform.alerts.get_alert(id).await?;
                Ok(json_reply(&alert, StatusCode::OK))
            })
        });
    list.or(one).unify()
}

const FILTERS: &[&str] = &["kind", "model", "since"];

/// The filter a query string asks for; each problem names its parameter.
fn filter(q: &HashMap<String, String>) -> Result<AlertFilter, ApiError> {
    paging::only_filters(q, FILTERS)?;
    let kind = q
        .get("kind")
        .map(|k| {
            k.parse::<AlertKind>()
                .map_err(|e| ApiError::bad_request(format!("kind: {e}")))
        })
        .transpose()?;
    let model = q.get("model").cloned();
    if let Some(m) = &model {
        validate_name("model", m)?;
    }
    let since = q
        .get("since")
        .map(|s| super::feedback::parse_since(s))
        .transpose()?;
    Ok(AlertFilter { kind, model, since })
}

async fn list(ctx: Ctx, q: HashMap<String, String>) -> ApiResult {
    let filter = filter(&q)?;
    let page = paging::filtered_page(&q, |a| {
        a.parse::<AlertId>()
            .map(drop)
            .map_err(|_| tracseq_core::Error::Invalid("after must be an alert id".into()))
    })?;
    let items = ctx.platform.alerts.list_alerts(&filter, &page).await?;
    let mut resp = json_reply(&items, StatusCode::OK);
    let last = items.last().map(|a| a.id.to_string());
    let next = paging::filtered_path("/alerts", &q, FILTERS);
    paging::link_next(&mut resp, &next, &page, items.len(), last);
    Ok(resp)
}

/// The monitor's latest drift scores as Prometheus gauges: each served
/// version's per-feature effect size, and how many features drifted.
pub(crate) fn render_drift(scores: &[DriftScores], out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP tracseq_drift_score A served version's feature drift at the monitor's last pass: PSI for numbers, Jensen-Shannon distance for categories.\n\
         # TYPE tracseq_drift_score gauge"
    );
    for s in scores {
        let version = s.version.to_string();
        for f in &s.features {
            let l = labels(&[
                ("model", &s.model),
                ("version", &version),
                ("feature", &f.feature),
                ("statistic", &f.statistic),
            ]);
            let _ = writeln!(out, "tracseq_drift_score{l} {}", f.value);
        }
    }
    let _ = writeln!(
        out,
        "# HELP tracseq_drift_features_drifted Features over their drift threshold at the monitor's last pass.\n\
         # TYPE tracseq_drift_features_drifted gauge"
    );
    for s in scores {
        let version = s.version.to_string();
        let l = labels(&[("model", &s.model), ("version", &version)]);
        let n = s.features.iter().filter(|f| f.drifted).count();
        let _ = writeln!(out, "tracseq_drift_features_drifted{l} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP tracseq_drift_live_records Live records the monitor's last drift pass compared.\n\
         # TYPE tracseq_drift_live_records gauge"
    );
    for s in scores {
        let version = s.version.to_string();
        let l = labels(&[("model", &s.model), ("version", &version)]);
        let _ = writeln!(out, "tracseq_drift_live_records{l} {}", s.live_records);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::paging::query_of as q;

    #[test]
    fn each_bad_parameter_is_refused_by_name() {
        for (k, v) in [
            ("kind", "flood"),
            ("model", "no spaces"),
            ("since", "yesterday"),
            ("bogus", "1"),
        ] {
            let err = filter(&q(&[(k, v)])).unwrap_err();
            assert!(err.message.contains(k), "{k}: {}", err.message);
        }
    }

    #[test]
    fn a_good_query_becomes_its_filter() {
        let f = filter(&q(&[("kind", "drift"), ("model", "sq")])).unwrap();
        assert_eq!(
            (f.kind, f.model.as_deref()),
            (Some(AlertKind::Drift), Some("sq"))
        );
    }
}
