//! Test-only hooks into a live queue: sever its connection, redirect its
//! reconnects, reach its raw channel, and remove its topology afterwards.

use super::*;

impl AmqpQueue {
    /// Simulates a lost connection: closes the live connection behind the
    /// queue's back, as a broker restart or network failure would.
    pub(crate) async fn sever_connection_for_test(&self) {
        let state = self.shared.state.lock().await;
        if let Some(conn) = &state.conn {
            close_quietly(conn, 320, "test: simulated connection loss").await;
        }
    }

    /// A plain channel on the queue's connection, for tests that need raw
    /// AMQP (publishing garbage, inspecting properties).
    pub(crate) async fn raw_channel_for_test(&self) -> Channel {
        let conn = match self.shared.connection().await {
            Ok(conn) => conn,
            Err(_) => panic!("no AMQP connection"),
        };
        conn.create_channel().await.expect("create channel")
    }

    /// Points future reconnects at another URL (e.g. a dead port, to act as
    /// a broker outage).
    pub(crate) fn redirect_for_test(&self, url: &str) {
        *self.shared.url.lock().unwrap_or_else(|e| e.into_inner()) = url.to_string();
    }

    pub(crate) fn exchange_for_test(&self) -> &str {
        &self.shared.names.exchange
    }

    /// Deletes every queue and exchange of this prefix (test cleanup). Uses
    /// its own connection, so it also works after [`AmqpQueue::close`].
    pub(crate) async fn delete_topology_for_test(&self, url: &str) {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("cleanup connection");
        let ch = conn.create_channel().await.expect("cleanup channel");
        let names = &self.shared.names;
        for class in &self.shared.opts.classes {
            let _ = ch
                .queue_delete(
                    names.queue(class).as_str().into(),
                    QueueDeleteOptions::default(),
                )
                .await;
        }
        let _ = ch
            .queue_delete(
                names.dead_queue.as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await;
        for exchange in [&names.exchange, &names.dead_exchange] {
            let _ = ch
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
        close_quietly(&conn, 200, "cleanup done").await;
    }
}
