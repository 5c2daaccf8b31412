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

/// The Redis URL for tests: `TRACSEQ_TEST_REDIS_URL`, else `REDIS_URL`,
/// else the local default server.
pub fn test_redis_url() -> String {
    ["TRACSEQ_TEST_REDIS_URL", "REDIS_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".into())
}

/// A private `redis-server` a test may stop and start again (on the same
/// port), to prove what an outage does. Killed when dropped.
pub struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Starts one on a free port; `None` (after [`service_unavailable`])
    /// when `redis-server` cannot run here.
    pub fn start() -> Option<PrivateRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = PrivateRedis {
            port,
            dir: tempfile::tempdir().expect("a temporary directory"),
            child: None,
        };
        if let Err(e) = server.resume() {
            service_unavailable("redis-server", "redis-server (binary)", &e);
            return None;
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on its port and waits until it answers.
    pub fn resume(&mut self) -> std::io::Result<()> {
        self.stop();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Err(std::io::Error::other(
            "redis-server did not start listening",
        ))
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
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
