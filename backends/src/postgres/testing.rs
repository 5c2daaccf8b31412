//! Test support: a throw-away schema per test, so tests run in parallel
//! against one server without seeing each other's rows.

use super::{PgOptions, PostgresStateStore};
use crate::testing::services::{service_unavailable, test_database_url};
use sqlx::{Connection, Executor, PgConnection};
use std::time::Duration;

/// A schema `t_<uuid>` created on the test server and dropped (with
/// everything in it) when this value is dropped, panicking tests included.
pub struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    /// Creates the schema, or returns `None` when the server is
    /// unreachable and `CI` is unset (the caller skips its test). Panics
    /// when `CI` is set and the server is unreachable.
    pub async fn create() -> Option<TestSchema> {
        let url = test_database_url();
        let mut conn = match admin_connection(&url).await {
            Ok(c) => c,
            Err(e) => {
                service_unavailable("PostgreSQL", &url, &e);
                return None;
            }
        };
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        conn.execute(format!("CREATE SCHEMA {name}").as_str())
            .await
            .expect("create test schema");
        let _ = conn.close().await;
        Some(TestSchema { url, name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Options for a store in this schema (pool size as given).
    pub fn options(&self, max_connections: u32) -> PgOptions {
        PgOptions {
            max_connections,
            schema: Some(self.name.clone()),
            application_name: format!("tracseq-test-{}", &self.name[2..14]),
            ..PgOptions::default()
        }
    }

    /// A connected, migrated store in this schema.
    pub async fn store(&self, max_connections: u32) -> PostgresStateStore {
        let store = PostgresStateStore::connect(&self.url, self.options(max_connections))
            .await
            .expect("connect test store");
        store.migrate().await.expect("migrate test schema");
        store
    }

    /// A separate connection, outside any store's pool.
    pub async fn admin(&self) -> PgConnection {
        admin_connection(&self.url).await.expect("admin connection")
    }
}

async fn admin_connection(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connection timed out after 10 s".into()),
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down:
        // clean up on a private thread with its own small runtime.
        let (url, name) = (self.url.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = admin_connection(&url).await {
                    let sql = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                    if let Err(e) = conn.execute(sql.as_str()).await {
                        eprintln!("could not drop test schema {name}: {e}");
                    }
                    let _ = conn.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
