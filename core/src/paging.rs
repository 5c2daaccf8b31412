//! One page of a listing: at most `limit` items after a cursor, so no
//! listing answers ten thousand records at once.
//!
//! The cursor is the key of the last item of the previous page (an id, or a
//! model's name) in the listing's own order, so a page stays correct while
//! records are added: newer items never shift the older ones.

use crate::{Error, Result};
use std::collections::HashMap;

/// Items per page when the caller does not say.
pub const DEFAULT_PAGE: u32 = 100;
/// The most items one page may hold.
pub const MAX_PAGE: u32 = 1_000;
/// The longest cursor accepted.
pub const MAX_CURSOR: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// 1 to [`MAX_PAGE`].
    pub limit: u32,
    /// The key of the last item already seen.
    pub after: Option<String>,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: DEFAULT_PAGE,
            after: None,
        }
    }
}

impl Page {
    /// Every item, for callers inside the platform that need them all.
    pub fn all() -> Page {
        Page {
            limit: u32::MAX,
            after: None,
        }
    }

    /// The page a query string asks for (`limit`, `after`); each problem
    /// names its parameter.
    pub fn from_query(q: &HashMap<String, String>) -> Result<Page> {
        let limit = match q.get("limit") {
            None => DEFAULT_PAGE,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "limit must be a whole number from 1 to {MAX_PAGE} (got '{}')",
                        crate::error::excerpt(l, 20)
                    ))
                })?,
        };
        let after = match q.get("after") {
            None => None,
            Some(a) if a.is_empty() || a.len() > MAX_CURSOR => {
                return Err(Error::Invalid(format!(
                    "after must be 1 to {MAX_CURSOR} bytes: the last key of the previous page"
                )))
            }
            Some(a) => Some(a.clone()),
        };
        Ok(Page { limit, after })
    }

    /// The items of this page from `items` (sorted in the listing's order,
    /// `key` giving each one's cursor), for stores that list in memory.
    /// `descending`: the listing runs from the greatest key down.
    pub fn slice<T>(&self, items: Vec<T>, key: impl Fn(&T) -> String, descending: bool) -> Vec<T> {
        items
            .into_iter()
            .filter(|item| match &self.after {
                None => true,
                Some(after) if descending => key(item) < *after,
                Some(after) => key(item) > *after,
            })
            .take(self.limit as usize)
            .collect()
    }

    /// The `LIMIT` for a SQL query.
    pub fn sql_limit(&self) -> i64 {
        i64::from(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_page_reads_limit_and_after_and_names_a_bad_one() {
        assert_eq!(Page::from_query(&q(&[])).unwrap(), Page::default());
        let p = Page::from_query(&q(&[("limit", "5"), ("after", "x")])).unwrap();
        assert_eq!((p.limit, p.after.as_deref()), (5, Some("x")));
        for (k, v) in [
            ("limit", "0"),
            ("limit", "1001"),
            ("limit", "-1"),
            ("limit", "a"),
            ("after", ""),
        ] {
            let err = Page::from_query(&q(&[(k, v)])).unwrap_err();
            assert!(err.to_string().starts_with(k), "{k}={v}: {err}");
        }
    }

    #[test]
    fn slicing_takes_the_items_after_the_cursor_in_either_order() {
        let up = vec!["a", "b", "c", "d"];
        let page = Page {
            limit: 2,
            after: Some("a".into()),
        };
        assert_eq!(page.slice(up.clone(), |s| s.to_string(), false), ["b", "c"]);
        let down = vec!["d", "c", "b", "a"];
        let page = Page {
            limit: 2,
            after: Some("d".into()),
        };
        assert_eq!(page.slice(down, |s| s.to_string(), true), ["c", "b"]);
        assert_eq!(Page::all().slice(up, |s| s.to_string(), false).len(), 4);
    }
}
