//! `JobQueue`: wake-up messages with broker semantics (ack, nack, redelivery).

use crate::types::DispatchMessage;
use crate::Result;
use async_trait::async_trait;

/// A durable, prioritised queue per resource class. Publishing returns only
/// once the backend has accepted the message (publisher confirms on AMQP).
#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn publish(&self, class: &str, msg: &DispatchMessage) -> Result<()>;
    /// Publishes several messages; returns once all are accepted. Backends
    /// with publisher confirms wait for the confirms together instead of one
    /// round trip each. A failure may leave some published: messages are
    /// wake-ups, so the caller simply publishes again.
    async fn publish_batch(&self, class: &str, msgs: &[DispatchMessage]) -> Result<()> {
        for msg in msgs {
            self.publish(class, msg).await?;
        }
        Ok(())
    }
    /// Starts consuming a class with at most `prefetch` unacknowledged deliveries.
    async fn subscribe(&self, class: &str, prefetch: u16) -> Result<Box<dyn Subscription>>;
    /// Messages waiting (not delivered) in a class, for metrics and tests.
    async fn depth(&self, class: &str) -> Result<u64>;
}

#[async_trait]
pub trait Subscription: Send {
    /// The next delivery; waits until one is available. `Ok(None)` means the
    /// subscription was closed.
    async fn next(&mut self) -> Result<Option<Delivery>>;
}

/// Settles one delivery. A delivery dropped without being settled is
/// returned to its queue, as a broker does when a consumer's channel closes.
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(&self) -> Result<()>;
    async fn nack(&self, requeue: bool) -> Result<()>;
}

pub struct Delivery {
    pub message: DispatchMessage,
    /// Set when the message was delivered before and not acknowledged.
    pub redelivered: bool,
    pub acker: Box<dyn Acker>,
}

impl Delivery {
    pub async fn ack(self) -> Result<()> {
        self.acker.ack().await
    }
    pub async fn nack(self, requeue: bool) -> Result<()> {
        self.acker.nack(requeue).await
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("redelivered", &self.redelivered)
            .finish()
    }
}
