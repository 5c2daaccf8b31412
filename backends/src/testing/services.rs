//! Finding the external services (databases, brokers) that backend tests need.
//!
//! Locally a missing service skips the test with a printed line; under CI
//! (env `CI` set) it fails the test, so a broken CI service can never turn
//! into a silently green run.

/// The PostgreSQL URL for tests: `TRACSEQ_TEST_DATABASE_URL`, else
/// `DATABASE_URL`, else the local default server.
pub fn test_database_url() -> String {
    ["TRACSEQ_TEST_DATABASE_URL", "DATABASE_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Reports that `service` at `url` could not be reached. Panics when `CI`
/// is set; otherwise prints a skip line and returns, and the caller returns.
pub fn service_unavailable(service: &str, url: &str, err: &dyn std::fmt::Display) {
    let url = redact(url);
    if std::env::var_os("CI").is_some() {
        panic!("{service} is required under CI but {url} is unreachable: {err}");
    }
    eprintln!("skipped: {service} at {url} is unreachable ({err}); set CI=1 to make this fail");
}

/// Hides a password in `scheme://user:password@host/...`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
