//! `GET /predictions`: the prediction log, newest first, by model, entity
//! and time, a page at a time.

use super::{json_reply, paging, query, run, with_ctx};
use crate::problem::{ApiError, ApiResult};
use crate::Ctx;
use std::collections::HashMap;
use tracseq_core::ids::RequestId;
use tracseq_core::predictions::{validate_entity_id, PredictionFilter};
use tracseq_core::types::validate_name;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("predictions")
        .and(warp::get())
        .and(with_ctx(ctx))
        .and(query())
        .then(|ctx, q| run(list(ctx, q)))
}

const FILTERS: &[&str] = &["model", "since", "entity_id"];

/// The filter a query string asks for; each problem names its parameter.
fn filter(q: &HashMap<String, String>) -> Result<PredictionFilter, ApiError> {
    paging::only_filters(q, FILTERS)?;
    let model = q.get("model").cloned();
    if let Some(m) = &model {
        validate_name("model", m)?;
    }
    let entity_id = q.get("entity_id").cloned();
    if let Some(e) = &entity_id {
        validate_entity_id(e)?;
    }
    let since = q
        .get("since")
        .map(|s| super::feedback::parse_since(s))
        .transpose()?;
    Ok(PredictionFilter {
        model,
        since,
        entity_id,
        answered_only: false,
    })
}

async fn list(ctx: Ctx, q: HashMap<String, String>) -> ApiResult {
    let filter = filter(&q)?;
    let page = paging::filtered_page(&q, |a| {
        a.parse::<RequestId>()
            .map(drop)
            .map_err(|_| tracseq_core::Error::Invalid("after must be a request id".into()))
    })?;
    let items = ctx
        .platform
        .predictions
        .list_predictions(&filter, &page)
        .await?;
    let mut resp = json_reply(&items, StatusCode::OK);
    let last = items.last().map(|r| r.request_id.to_string());
    let next = paging::filtered_path("/predictions", &q, FILTERS);
    paging::link_next(&mut resp, &next, &page, items.len(), last);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::routes::paging::query_of as q;

    #[test]
    fn each_bad_parameter_is_refused_by_name() {
        for (k, v) in [
            ("model", "no spaces"),
            ("entity_id", ""),
            ("since", "yesterday"),
            ("bogus", "1"),
        ] {
            let err = filter(&q(&[(k, v)])).unwrap_err();
            assert!(err.message.contains(k), "{k}: {}", err.message);
        }
    }

    #[test]
    fn the_next_link_keeps_the_filters_but_not_the_page() {
        let got = paging::filtered_path(
            "/predictions",
            &q(&[
                ("model", "m"),
                ("since", "2026-12-01T00:00:00+01:00"),
                ("after", "x"),
            ]),
            FILTERS,
        );
        assert_eq!(
            got,
            "/predictions?model=m&since=2026-12-01T00%3A00%3A00%2B01%3A00"
        );
        let f = filter(&q(&[("since", "2026-12-01T00:00:00+01:00")])).unwrap();
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-11-30T23:00:00+00:00");
    }
}
