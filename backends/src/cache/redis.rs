//! The prediction cache's shared tier on Redis: `GET` and `SET … PX`.
//!
//! Serving must never wait on a cache that is down, so every command has a
//! short deadline (`serving.redis_timeout_ms`), and after a failure the
//! tier answers `Unavailable` at once for [`PAUSE`] before it tries the
//! server again. The connection is made when first needed and remade by
//! the client after a drop, so an api that starts while Redis is down uses
//! it as soon as it is back.

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Mutex as AsyncMutex;
use tracseq_core::ports::PredictionCache;
use tracseq_core::{Error, Result};

/// How long the tier stays out of the way after a failure.
pub const PAUSE: Duration = Duration::from_secs(1);
/// Every key this platform writes starts with it.
const PREFIX: &str = "tracseq:prediction:";

pub struct RedisCache {
    client: ::redis::Client,
    timeout: Duration,
    connection: AsyncMutex<Option<ConnectionManager>>,
    paused_until: Mutex<Option<Instant>>,
    failures: AtomicU64,
    /// The URL without its password, for messages.
    shown: String,
}

fn unavailable(shown: &str, what: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("redis at {shown}: {what}"))
}

impl RedisCache {
    /// A tier for `url` whose commands give up after `timeout`. Only the
    /// URL is checked here; nothing connects yet.
    pub fn new(url: &str, timeout: Duration) -> Result<RedisCache> {
        let client = ::redis::Client::open(url)
            .map_err(|e| Error::Invalid(format!("serving.redis_url: {e}")))?;
        let shown = match url.split_once('@') {
            Some((_, host)) => format!("redis://…@{host}"),
            None => url.to_string(),
        };
        Ok(RedisCache {
            client,
            timeout,
            connection: AsyncMutex::new(None),
            paused_until: Mutex::new(None),
            failures: AtomicU64::new(0),
            shown,
        })
    }

    /// Commands that failed or timed out so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn paused(&self) -> bool {
        let g = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        g.is_some_and(|until| Instant::now() < until)
    }

    fn fail(&self, what: impl std::fmt::Display) -> Error {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.paused_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + PAUSE);
        unavailable(&self.shown, what)
    }

    /// The connection, made now if there is none.
    async fn connection(&self) -> Result<ConnectionManager> {
        if self.paused() {
            return Err(unavailable(&self.shown, "paused after a failure"));
        }
        let mut g = self.connection.lock().await;
        if let Some(c) = g.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let made = tokio::time::timeout(
            self.timeout * 4,
            self.client.get_connection_manager_with_config(config),
        )
        .await;
        match made {
            Ok(Ok(c)) => {
                *g = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => Err(self.fail(e)),
            Err(_) => Err(self.fail("connecting timed out")),
        }
    }

    async fn run<T: ::redis::FromRedisValue>(&self, cmd: ::redis::Cmd) -> Result<T> {
        let mut c = self.connection().await?;
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.fail(e)),
            Err(_) => Err(self.fail("command timed out")),
        }
    }
}

#[async_trait]
impl PredictionCache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(format!("{PREFIX}{key}"));
        let v: Option<Vec<u8>> = self.run(cmd).await?;
        Ok(v.map(Bytes::from))
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(format!("{PREFIX}{key}"))
            .arg(value.as_ref())
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        self.run::<()>(cmd).await
    }
}
