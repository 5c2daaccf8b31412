//! RabbitMQ `JobQueue` (lapin 4): the dispatch queue of the distributed
//! deployment.
//!
//! # Topology
//! Declared (idempotently) on every channel this backend opens, so a broker
//! that lost its definitions, or a queue deleted by an operator, heals on the
//! next reconnect. With `prefix = "tracseq"`:
//! - `tracseq.jobs`: durable **direct** exchange; routing key = resource class.
//! - `tracseq.jobs.<class>`: one durable queue per class, bound with the class
//!   as key, declared with `x-max-priority` and `x-dead-letter-exchange`.
//! - `tracseq.jobs.dlx`: durable **fanout** dead-letter exchange, bound to the
//!   single durable queue `tracseq.jobs.dead`. Fanout because dead letters of
//!   every class go to one place; the original class stays in the routing key
//!   and in the broker's `x-death` header.
//!
//! # Delivery guarantees
//! At least once. `publish` sends a persistent message (delivery mode 2) with
//! the job priority on a confirm-mode channel and returns only after the
//! broker's ack; a broker nack is an error. A publish whose confirm was lost
//! with the connection is retried, so a message may be enqueued twice; that is
//! harmless because messages only wake a worker, which then claims the job's
//! lease in the state store.
//!
//! # Reconnection
//! One connection per `AmqpQueue`, shared by a publish channel and one channel
//! per subscription. Every broker operation runs in a retry loop: on failure
//! it waits (exponential backoff, 100 ms doubling up to 5 s), reconnects if the
//! connection is gone, reopens the channel and re-declares the topology, and
//! tries again, surfacing [`Error::Unavailable`] only once
//! [`AmqpOptions::reconnect_timeout`] has passed. A [`Subscription`] whose
//! channel died re-creates its channel, QoS and consumer the same way on the
//! next `next()` call and continues.
//!
//! # Unsettled deliveries
//! Dropping a [`Delivery`] without settling it spawns a `basic.nack(requeue =
//! true)` on its channel, so the message comes back at once and the prefetch
//! slot is freed even while the subscription lives on. If that cannot happen
//! (no Tokio runtime, channel already gone) the fallback is channel close:
//! the broker requeues every unacknowledged delivery of a channel when it
//! closes, which happens when the subscription is dropped or the connection
//! dies. Acking or nacking a delivery whose channel has died returns `Ok(())`:
//! the broker has already requeued it and will redeliver it (flagged
//! `redelivered`), which the lease claim in the state store makes harmless.
//!
//! # Malformed messages
//! A body that does not decode as a JSON [`DispatchMessage`] is nacked without
//! requeue (so it is dead-lettered for inspection) and consumption continues.

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer, ErrorKind,
    ExchangeKind,
};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracseq_core::ports::{Acker, Delivery, JobQueue, Subscription};
use tracseq_core::types::DispatchMessage;
use tracseq_core::{Error, Result};

mod subscription;
#[cfg(test)]
mod test_hooks;

use subscription::AmqpSubscription;

/// Messages published before their confirms are awaited together.
const PUBLISH_CHUNK: usize = 512;
/// First wait after a failed broker operation; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two attempts of a broker operation.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Lower bound for one attempt's time limit, so an attempt started just before
/// the deadline still has a chance to complete.
const MIN_ATTEMPT_TIME: Duration = Duration::from_secs(1);
/// AMQP delivery mode for messages the broker writes to disk.
const PERSISTENT: u8 = 2;
/// How long closing a connection waits for the broker's close-ok. A
/// connection whose socket already died may never answer, and neither
/// shutdown nor reconnection may hang on it.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How long settling a delivery may take. An ack or nack is one frame with
/// no reply, but lapin can leave the future pending forever when the
/// delivery's channel dies during the call (seen in the connection-loss
/// conformance test, about 1 run in 10). The broker requeues the message of
/// a dead channel anyway, so giving up is safe.
const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// Closes `conn`, waiting at most `CLOSE_WAIT`. Errors (an already-closed
/// connection answers with one) and timeouts leave nothing to do: the
/// connection is dropped either way.
async fn close_quietly(conn: &Connection, code: u16, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_WAIT, conn.close(code, reason.into())).await;
}

/// How an [`AmqpQueue`] names and shapes its topology.
#[derive(Clone, Debug)]
pub struct AmqpOptions {
    /// Prefix of every exchange and queue name (`<prefix>.jobs`,
    /// `<prefix>.jobs.<class>`, ...). Distinct prefixes give fully isolated
    /// queues on one broker (tests use a random one).
    pub prefix: String,
    /// Resource classes, one queue each. Publishing to, subscribing to or
    /// asking the depth of another class is [`Error::Invalid`].
    pub classes: Vec<String>,
    /// `x-max-priority` of the class queues (RabbitMQ allows 1..=255, advises
    /// at most 10). Changing it for existing queues needs them deleted first:
    /// the broker refuses a declaration with different arguments.
    pub max_priority: u8,
    /// How long an operation keeps retrying (reconnecting with backoff)
    /// before it fails with [`Error::Unavailable`].
    pub reconnect_timeout: Duration,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            prefix: "tracseq".into(),
            classes: vec!["cpu".into(), "gpu".into()],
            max_priority: 9,
            reconnect_timeout: Duration::from_secs(30),
        }
    }
}

/// Exchange and queue names derived from [`AmqpOptions::prefix`].
#[derive(Debug)]
struct Names {
    exchange: String,
    dead_exchange: String,
    dead_queue: String,
}

impl Names {
    fn new(prefix: &str) -> Self {
        Names {
            exchange: format!("{prefix}.jobs"),
            dead_exchange: format!("{prefix}.jobs.dlx"),
            dead_queue: format!("{prefix}.jobs.dead"),
        }
    }

    fn queue(&self, class: &str) -> String {
        format!("{}.{class}", self.exchange)
    }
}

/// The RabbitMQ implementation of [`JobQueue`]. Cheap to clone; clones share
/// one connection.
#[derive(Clone, Debug)]
pub struct AmqpQueue {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Behind a lock only so tests can point a live queue at a dead broker.
    url: std::sync::Mutex<String>,
    opts: AmqpOptions,
    names: Names,
    /// Serialises (re)connecting so concurrent callers share one new
    /// connection instead of each opening their own.
    state: tokio::sync::Mutex<State>,
    closed: AtomicBool,
}

#[derive(Default)]
struct State {
    conn: Option<Arc<Connection>>,
    /// Confirm-mode channel for publishing and depth queries.
    channel: Option<Channel>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field(
                "connected",
                &self.conn.as_ref().map(|c| c.status().connected()),
            )
            .field("channel", &self.channel.as_ref().map(|c| c.id()))
            .finish()
    }
}

/// Outcome of one failed attempt inside [`Shared::retry`].
enum Attempt {
    /// Transient (connection, channel, timeout): reconnect and try again.
    Retry(String),
    /// Retrying cannot help; return this error at once.
    Fatal(Error),
}

impl From<lapin::Error> for Attempt {
    fn from(e: lapin::Error) -> Self {
        // A declaration that conflicts with an existing queue or exchange, or
        // credentials/permissions the broker refuses, are deployment errors:
        // retrying for the whole reconnect timeout would only hide them.
        if let ErrorKind::ProtocolError(amqp) = e.kind() {
            match amqp.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => {
                    return Attempt::Fatal(Error::Invalid(format!(
                        "RabbitMQ refused the job queue topology (existing queues or \
                         exchanges with other arguments?): {e}"
                    )));
                }
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
                | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => {
                    return Attempt::Fatal(Error::Invalid(format!("RabbitMQ refused access: {e}")));
                }
                _ => {}
            }
        }
        Attempt::Retry(e.to_string())
    }
}

impl AmqpQueue {
    /// Connects to `url` (e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`) and
    /// declares the topology. Makes a single attempt, so a wrong URL or a
    /// broker that is down fails fast with [`Error::Unavailable`] (retry at
    /// the call site to wait for it); later broker or connection losses are
    /// retried transparently, see the module docs.
    pub async fn connect(url: &str, opts: AmqpOptions) -> Result<Self> {
        if opts.classes.is_empty() {
            return Err(Error::Invalid("AMQP queue needs at least one class".into()));
        }
        if opts.max_priority == 0 {
            return Err(Error::Invalid("max_priority must be at least 1".into()));
        }
        let shared = Arc::new(Shared {
            url: std::sync::Mutex::new(url.to_string()),
            names: Names::new(&opts.prefix),
            opts,
            state: tokio::sync::Mutex::default(),
            closed: AtomicBool::new(false),
        });
        let attempt = tokio::time::timeout(
            shared.opts.reconnect_timeout.max(MIN_ATTEMPT_TIME),
            shared.publish_channel(),
        )
        .await;
        match attempt {
            Ok(Ok(_)) => Ok(AmqpQueue { shared }),
            Ok(Err(Attempt::Fatal(e))) => Err(e),
            Ok(Err(Attempt::Retry(e))) => Err(Error::Unavailable(format!(
                "cannot connect to RabbitMQ: {e}"
            ))),
            Err(_) => Err(Error::Unavailable(
                "cannot connect to RabbitMQ: timed out".into(),
            )),
        }
    }

    /// The queue that holds a class's messages.
    pub fn queue_name(&self, class: &str) -> String {
        self.shared.names.queue(class)
    }

    /// The queue that collects dead-lettered messages of every class.
    pub fn dead_letter_queue(&self) -> &str {
        &self.shared.names.dead_queue
    }

    /// Messages waiting in the dead-letter queue, for metrics and tests.
    pub async fn dead_letter_depth(&self) -> Result<u64> {
        self.shared.depth_of(&self.shared.names.dead_queue).await
    }

    /// Closes the connection: subscriptions return `Ok(None)` and later calls
    /// fail with [`Error::Unavailable`]. Unsettled deliveries are requeued by
    /// the broker.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let mut state = self.shared.state.lock().await;
        state.channel = None;
        if let Some(conn) = state.conn.take() {
            close_quietly(&conn, 200, "tracseq queue closed").await;
        }
    }

    fn check_class(&self, class: &str) -> Result<()> {
        if self.shared.opts.classes.iter().any(|c| c == class) {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "unknown resource class {class:?} (configured: {})",
                self.shared.opts.classes.join(", ")
            )))
        }
    }
}

impl Shared {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Runs `attempt` until it succeeds, fails fatally, or the reconnect
    /// timeout has passed. Attempts reconnect on their own (through
    /// [`Shared::connection`] / [`Shared::publish_channel`]), since those see
    /// that the connection or channel is no longer usable.
    async fn retry<T, F, Fut>(&self, op: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, Attempt>>,
    {
        let deadline = Instant::now() + self.opts.reconnect_timeout;
        let mut backoff = INITIAL_BACKOFF;
        loop {
            if self.is_closed() {
                return Err(Error::Unavailable(format!("{op}: AMQP queue is closed")));
            }
            // Bound each attempt too: a half-open TCP connection can leave a
            // confirm or an RPC reply pending until the heartbeat notices.
            let limit = deadline
                .saturating_duration_since(Instant::now())
                .max(MIN_ATTEMPT_TIME);
            let reason = match tokio::time::timeout(limit, attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(Attempt::Fatal(e))) => return Err(e),
                Ok(Err(Attempt::Retry(reason))) => reason,
                Err(_) => format!("no answer from RabbitMQ within {limit:?}"),
            };
            if Instant::now() + backoff >= deadline {
                return Err(Error::Unavailable(format!(
                    "{op}: RabbitMQ unavailable for {:?}: {reason}",
                    self.opts.reconnect_timeout
                )));
            }
            tracing::warn!(op, %reason, ?backoff, "AMQP operation failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The shared connection, reconnecting if the current one is gone.
    async fn connection(&self) -> std::result::Result<Arc<Connection>, Attempt> {
        let mut state = self.state.lock().await;
        self.connection_locked(&mut state).await
    }

    async fn connection_locked(
        &self,
        state: &mut State,
    ) -> std::result::Result<Arc<Connection>, Attempt> {
        if self.is_closed() {
            return Err(Attempt::Fatal(Error::Unavailable(
                "AMQP queue is closed".into(),
            )));
        }
        if let Some(conn) = &state.conn {
            if conn.status().connected() {
                return Ok(conn.clone());
            }
        }
        // The old connection (if any) is dead: its channels are too.
        state.channel = None;
        state.conn = None;
        let props = ConnectionProperties::default()
            .with_connection_name(format!("tracseq-ml {}", self.opts.prefix).into());
        let url = self.url.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let conn = Arc::new(Connection::connect(&url, props).await?);
        tracing::info!(prefix = %self.opts.prefix, "connected to RabbitMQ");
        state.conn = Some(conn.clone());
        Ok(conn)
    }

    /// The confirm-mode publish channel, reopened (and the topology
    /// re-declared) if it or the connection died.
    async fn publish_channel(&self) -> std::result::Result<Channel, Attempt> {
        let mut state = self.state.lock().await;
        let conn = self.connection_locked(&mut state).await?;
        if let Some(channel) = &state.channel {
            if channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        let channel = self.open_channel(&conn).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        state.channel = Some(channel.clone());
        Ok(channel)
    }

    /// Forgets the publish channel if it is still `stale`, so the next
    /// attempt opens a new one and re-declares the topology.
    async fn drop_publish_channel(&self, stale: &Channel) {
        let mut state = self.state.lock().await;
        if state.channel.as_ref().map(Channel::id) == Some(stale.id()) {
            state.channel = None;
        }
    }

    /// A new channel with the topology declared on it.
    async fn open_channel(&self, conn: &Connection) -> std::result::Result<Channel, Attempt> {
        let channel = conn.create_channel().await?;
        self.declare_topology(&channel).await?;
        Ok(channel)
    }

    async fn declare_topology(&self, ch: &Channel) -> std::result::Result<(), Attempt> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let names = &self.names;
        ch.exchange_declare(
            names.dead_exchange.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(
            names.dead_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_bind(
            names.dead_queue.as_str().into(),
            names.dead_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            names.exchange.as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        let mut args = FieldTable::default();
        // A signed 32-bit integer: the type every RabbitMQ version accepts
        // for x-max-priority.
        args.insert(
            "x-max-priority".into(),
            AMQPValue::LongInt(i32::from(self.opts.max_priority)),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(names.dead_exchange.as_str().into()),
        );
        for class in &self.opts.classes {
            let queue = names.queue(class);
            ch.queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                args.clone(),
            )
            .await?;
            ch.queue_bind(
                queue.as_str().into(),
                names.exchange.as_str().into(),
                class.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// Publishes every message on the confirm channel, then waits for all
    /// the confirms: one round trip for the batch instead of one each.
    async fn publish_once(
        &self,
        class: &str,
        messages: &[(Vec<u8>, BasicProperties)],
    ) -> std::result::Result<(), Attempt> {
        let channel = self.publish_channel().await?;
        let mut confirms = Vec::with_capacity(messages.len());
        for (payload, properties) in messages {
            let confirm = channel
                .basic_publish(
                    self.names.exchange.as_str().into(),
                    class.into(),
                    // Mandatory: a message no queue took comes back instead of
                    // vanishing, e.g. when the class queue was deleted.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    payload,
                    properties.clone(),
                )
                .await?;
            confirms.push(confirm);
        }
        // Every confirm is awaited even after a failure so none is left
        // pending on the channel; the first failure decides the attempt.
        let mut outcome = Ok(());
        for confirm in confirms {
            let checked = match confirm.await {
                Ok(c) => self.check_confirmation(&channel, class, c).await,
                Err(e) => Err(e.into()),
            };
            if outcome.is_ok() {
                outcome = checked;
            }
        }
        outcome
    }

    async fn check_confirmation(
        &self,
        channel: &Channel,
        class: &str,
        confirmation: Confirmation,
    ) -> std::result::Result<(), Attempt> {
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => {
                // Unroutable: the binding or queue is missing. A fresh channel
                // re-declares the topology, then the retry can succeed.
                self.drop_publish_channel(channel).await;
                Err(Attempt::Retry(format!(
                    "message to class {class:?} was returned unroutable: {}",
                    returned.reply_text
                )))
            }
            Confirmation::Nack(_) => Err(Attempt::Fatal(Error::Unavailable(format!(
                "RabbitMQ refused (nacked) a message for class {class:?}"
            )))),
            Confirmation::NotRequested => Err(Attempt::Fatal(Error::Internal(
                "publish channel is not in confirm mode".into(),
            ))),
        }
    }

    async fn depth_of(&self, queue: &str) -> Result<u64> {
        self.retry("depth", || async {
            let channel = self.publish_channel().await?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            // A missing queue closes the channel (404); the retry reopens it,
            // which re-declares the topology, so the answer is then 0.
            let declared = channel
                .queue_declare(queue.into(), passive, FieldTable::default())
                .await?;
            Ok(u64::from(declared.message_count()))
        })
        .await
    }

    /// A channel with QoS and a consumer on `queue`.
    async fn start_consumer(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> std::result::Result<(Channel, Consumer), Attempt> {
        let conn = self.connection().await?;
        let channel = self.open_channel(&conn).await?;
        // Per consumer (global = false): what the trait's `prefetch` means.
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                // Empty: let the broker generate a unique tag.
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }
}

#[async_trait]
impl JobQueue for AmqpQueue {
    async fn publish(&self, class: &str, msg: &DispatchMessage) -> Result<()> {
        self.publish_batch(class, std::slice::from_ref(msg)).await
    }

    async fn publish_batch(&self, class: &str, msgs: &[DispatchMessage]) -> Result<()> {
        self.check_class(class)?;
        let mut encoded = Vec::with_capacity(msgs.len());
        for msg in msgs {
            let payload = serde_json::to_vec(msg)
                .map_err(|e| Error::Internal(format!("encoding dispatch message: {e}")))?;
            let properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(PERSISTENT)
                .with_priority(msg.priority);
            encoded.push((payload, properties));
        }
        let shared = &self.shared;
        // A failed attempt publishes its whole chunk again: duplicates are
        // harmless wake-ups (the store decides), a missing one is not. Chunks
        // bound how much one failure repeats.
        for chunk in encoded.chunks(PUBLISH_CHUNK) {
            shared
                .retry("publish", || shared.publish_once(class, chunk))
                .await?;
        }
        Ok(())
    }

    async fn subscribe(&self, class: &str, prefetch: u16) -> Result<Box<dyn Subscription>> {
        self.check_class(class)?;
        if prefetch == 0 {
            // basic.qos 0 means "unlimited", the opposite of what a caller
            // passing 0 could want.
            return Err(Error::Invalid("prefetch must be at least 1".into()));
        }
        let queue = self.shared.names.queue(class);
        let consumer = self
            .shared
            .retry("subscribe", || self.shared.start_consumer(&queue, prefetch))
            .await?;
        Ok(Box::new(AmqpSubscription {
            shared: self.shared.clone(),
            queue,
            prefetch,
            consumer: Some(consumer),
        }))
    }

    async fn depth(&self, class: &str) -> Result<u64> {
        self.check_class(class)?;
        self.shared.depth_of(&self.shared.names.queue(class)).await
    }
}
