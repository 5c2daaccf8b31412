//! `GET /audit`: the audit log for admins, newest first, a page at a time
//! (`Link: <…&before=N>; rel="next"` while older entries remain).

use super::paging::encode;
use super::{json_reply, query, run, with_ctx};
use crate::problem::{ApiError, ApiResult};
use crate::Ctx;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use tracseq_core::security::audit::AuditFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use tracseq_core::paging::{DEFAULT_PAGE as DEFAULT_LIMIT, MAX_PAGE as MAX_LIMIT};
/// The longest filter value accepted (names, ids, actions, targets).
pub(crate) const MAX_VALUE: usize = 512;

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("audit")
        .and(warp::get())
        .and(with_ctx(ctx))
        .and(query())
        .then(|ctx, q| run(list(ctx, q)))
}

/// The filter a query string asks for; each problem names its parameter.
fn filter(q: &HashMap<String, String>) -> Result<AuditFilter, ApiError> {
    const KNOWN: [&str; 6] = ["actor", "action", "target", "since", "before", "limit"];
    if let Some(k) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        let k: String = k.chars().take(64).collect();
        return Err(ApiError::bad_request(format!(
            "unknown query parameter '{k}'; expected one of {}",
            KNOWN.join(", ")
        )));
    }
    let text = |key: &str| -> Result<Option<String>, ApiError> {
        match q.get(key) {
            Some(v) if v.is_empty() || v.len() > MAX_VALUE => Err(ApiError::bad_request(format!(
                "{key} must be 1-{MAX_VALUE} bytes"
            ))),
            other => Ok(other.cloned()),
        }
    };
    let since = q
        .get("since")
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(
                        "since must be an RFC 3339 time, e.g. 2026-12-04T00:00:00Z",
                    )
                })
        })
        .transpose()?;
    let before_seq =
        q.get("before")
            .map(|b| {
                b.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    ApiError::bad_request("before must be an entry number (seq) >= 1")
                })
            })
            .transpose()?;
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit must be 1..={MAX_LIMIT}")))?,
    };
    Ok(AuditFilter {
        actor: text("actor")?,
        action: text("action")?,
        target: text("target")?,
        since,
        before_seq,
        limit,
    })
}

async fn list(ctx: Ctx, q: HashMap<String, String>) -> ApiResult {
    let f = filter(&q)?;
    let entries = ctx.security.list_audit(&f).await?;
    let mut resp = json_reply(&entries, StatusCode::OK);
    if let (true, Some(last)) = (entries.len() as u32 == f.limit, entries.last()) {
        let mut next: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| k.as_str() != "before")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        next.sort();
        next.push(("before".into(), last.seq.to_string()));
        let qs: Vec<String> = next
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let link = format!("</audit?{}>; rel=\"next\"", qs.join("&"));
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::routes::paging::query_of as q;

    #[test]
    fn every_filter_parameter_is_read_and_bad_ones_are_named() {
        let f = filter(&q(&[
            ("actor", "alice"),
            ("since", "2026-12-04T00:00:00Z"),
            ("before", "9"),
            ("limit", "5"),
        ]))
        .unwrap();
        assert_eq!(f.actor.as_deref(), Some("alice"));
        assert_eq!(f.before_seq, Some(9));
        assert_eq!(f.limit, 5);
        assert_eq!(filter(&q(&[])).unwrap().limit, DEFAULT_LIMIT);
        for (k, v) in [
            ("limit", "0"),
            ("limit", "1001"),
            ("before", "x"),
            ("since", "yesterday"),
            ("actor", ""),
            ("bogus", "1"),
        ] {
            let err = filter(&q(&[(k, v)])).unwrap_err();
            assert!(err.message.contains(k), "{k}={v}: {}", err.message);
        }
        let long = "a".repeat(600);
        assert!(filter(&q(&[("target", &long)])).is_err());
    }
}
