//! `?limit=&after=` on the listings, and the `Link: <…>; rel="next"` header
//! that says where the next page starts.

use crate::problem::ApiError;
use std::collections::HashMap;
use tracseq_core::paging::Page;
use warp::http::{header, HeaderValue};
use warp::reply::Response;

/// The page a listing's query string asks for. Parameters other than
/// `limit` and `after` are refused by name; `cursor` checks that `after`
/// is a key of this listing (an id of the right kind, a model name).
pub(crate) fn page(
    q: &HashMap<String, String>,
    cursor: impl Fn(&str) -> tracseq_core::Result<()>,
) -> Result<Page, ApiError> {
    if let Some(k) = q.keys().find(|k| !["limit", "after"].contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter '{}'; expected limit or after",
            tracseq_core::error::excerpt(k, 64)
        )));
    }
    let page = Page::from_query(q)?;
    if let Some(after) = &page.after {
        cursor(after)?;
    }
    Ok(page)
}

/// Adds `Link: <path?limit=N&after=KEY>; rel="next"` when the page came
/// back full (`last` is its last item's key): there may be more. A `path`
/// that carries a query (a listing's filters, encoded) keeps it.
pub(crate) fn link_next(
    resp: &mut Response,
    path: &str,
    page: &Page,
    got: usize,
    last: Option<String>,
) {
    let Some(last) = last.filter(|_| got == page.limit as usize) else {
        return;
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let link = format!(
        "<{path}{sep}limit={}&after={}>; rel=\"next\"",
        page.limit,
        encode(&last)
    );
    if let Ok(v) = HeaderValue::from_str(&link) {
        resp.headers_mut().insert(header::LINK, v);
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(crate) fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Refuses query parameters other than `allowed`, naming the first.
pub(crate) fn only(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(format!(
            "unknown query parameter '{}'; expected {}",
            tracseq_core::error::excerpt(k, 64),
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// Refuses parameters other than a filtered listing's `filters`, `limit`
/// and `after`, naming the first.
pub(crate) fn only_filters(q: &HashMap<String, String>, filters: &[&str]) -> Result<(), ApiError> {
    let known: Vec<&str> = filters.iter().chain(&["limit", "after"]).copied().collect();
    only(q, &known)
}

/// The page a filtered listing's query asks for, its filters left aside
/// (checked by the listing, with [`only_filters`]).
pub(crate) fn filtered_page(
    q: &HashMap<String, String>,
    cursor: impl Fn(&str) -> tracseq_core::Result<()>,
) -> Result<Page, ApiError> {
    let paged: HashMap<String, String> = q
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "limit" | "after"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    page(&paged, cursor)
}

/// `base` with the query's `filters` (encoded, in the order given) and not
/// its page: where a filtered listing's next link points.
pub(crate) fn filtered_path(base: &str, q: &HashMap<String, String>, filters: &[&str]) -> String {
    let kept: Vec<String> = filters
        .iter()
        .filter_map(|k| q.get(*k).map(|v| format!("{k}={}", encode(v))))
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// `?limit=` as the listings read it (1 to the page bound, a default when absent).
pub(crate) fn limit(q: &HashMap<String, String>) -> Result<u32, ApiError> {
    let only_limit: HashMap<String, String> = q
        .get("limit")
        .map(|l| ("limit".to_string(), l.clone()))
        .into_iter()
        .collect();
    Ok(Page::from_query(&only_limit)?.limit)
}

/// A query string's map from its pairs (for the listings' tests).
#[cfg(test)]
pub(crate) fn query_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded_in_the_next_link() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn a_full_page_links_to_the_next_and_a_short_one_does_not() {
        let page = Page {
            limit: 2,
            after: None,
        };
        let mut resp = warp::reply::Response::new(Default::default());
        link_next(&mut resp, "/datasets", &page, 1, Some("x".into()));
        assert!(resp.headers().get(header::LINK).is_none());
        link_next(&mut resp, "/datasets", &page, 2, Some("a b".into()));
        assert_eq!(
            resp.headers()[header::LINK],
            "</datasets?limit=2&after=a%20b>; rel=\"next\""
        );
        link_next(
            &mut resp,
            "/predictions?model=m",
            &page,
            2,
            Some("k".into()),
        );
        assert_eq!(
            resp.headers()[header::LINK],
            "</predictions?model=m&limit=2&after=k>; rel=\"next\""
        );
    }

    #[test]
    fn unknown_parameters_and_bad_cursors_are_refused_by_name() {
        let q = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        let any = |_: &str| Ok(());
        assert!(page(&q("bogus", "1"), any)
            .unwrap_err()
            .message
            .contains("bogus"));
        assert!(page(&q("limit", "0"), any)
            .unwrap_err()
            .message
            .contains("limit"));
        let err = page(&q("after", "x"), |_| {
            Err(tracseq_core::Error::Invalid(
                "after must be a data set id".into(),
            ))
        })
        .unwrap_err();
        assert!(err.message.contains("after"));
    }
}
