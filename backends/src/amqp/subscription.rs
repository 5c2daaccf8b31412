//! A consumer of one class's queue and the settling of its deliveries: a
//! dead channel is re-created on the next `next()`, and a delivery dropped
//! unsettled is nacked back to the queue (see the module docs of [`super`]).

use super::*;

pub(super) struct AmqpSubscription {
    pub(super) shared: Arc<Shared>,
    pub(super) queue: String,
    pub(super) prefetch: u16,
    /// `None` after the channel died, until the next `next()` re-creates it.
    /// Dropping it (with the subscription) closes the channel, which makes
    /// the broker requeue every delivery still unsettled on it.
    pub(super) consumer: Option<(Channel, Consumer)>,
}

#[async_trait]
impl Subscription for AmqpSubscription {
    async fn next(&mut self) -> Result<Option<Delivery>> {
        // Cancel-safe: dropping this future (e.g. a caller's timeout) loses no
        // message, since a consumer stream only yields what it already holds.
        loop {
            if self.shared.is_closed() {
                return Ok(None);
            }
            let consumer = match &mut self.consumer {
                Some((_, consumer)) => consumer,
                None => {
                    let (queue, prefetch) = (&self.queue, self.prefetch);
                    let shared = &self.shared;
                    let started = match shared
                        .retry("resubscribe", || shared.start_consumer(queue, prefetch))
                        .await
                    {
                        Ok(started) => started,
                        // Closed while re-subscribing: the end, not an error.
                        Err(_) if shared.is_closed() => return Ok(None),
                        Err(e) => return Err(e),
                    };
                    tracing::info!(queue = %self.queue, "AMQP consumer re-created");
                    &mut self.consumer.insert(started).1
                }
            };
            match consumer.next().await {
                Some(Ok(raw)) => match serde_json::from_slice::<DispatchMessage>(&raw.data) {
                    Ok(message) => {
                        return Ok(Some(Delivery {
                            message,
                            redelivered: raw.redelivered,
                            acker: Box::new(AmqpAcker {
                                acker: raw.acker,
                                settled: AtomicBool::new(false),
                            }),
                        }));
                    }
                    Err(e) => {
                        tracing::warn!(
                            queue = %self.queue,
                            error = %e,
                            bytes = raw.data.len(),
                            "malformed dispatch message; dead-lettering it"
                        );
                        let reject = BasicNackOptions {
                            requeue: false,
                            multiple: false,
                        };
                        // If this fails the channel is gone and the broker
                        // requeues the message; it is rejected again later.
                        if let Err(e) = raw.acker.nack(reject).await {
                            tracing::warn!(error = %e, "could not dead-letter message");
                        }
                    }
                },
                Some(Err(e)) => {
                    // The channel or connection failed; the stream ends after
                    // this. Start over on a fresh channel.
                    tracing::warn!(queue = %self.queue, error = %e, "AMQP consumer failed");
                    self.consumer = None;
                }
                None => {
                    // Cancelled: by our own close, or by the broker (channel
                    // or connection closed, queue deleted).
                    if self.shared.is_closed() {
                        return Ok(None);
                    }
                    tracing::warn!(queue = %self.queue, "AMQP consumer cancelled; re-subscribing");
                    self.consumer = None;
                }
            }
        }
    }
}

struct AmqpAcker {
    acker: lapin::Acker,
    /// Set by the first settle (or by drop), so a delivery settles once.
    settled: AtomicBool,
}

impl AmqpAcker {
    fn claim(&self) -> Result<()> {
        if self.settled.swap(true, Ordering::SeqCst) {
            Err(Error::Conflict("delivery already settled".into()))
        } else {
            Ok(())
        }
    }
}

/// Maps the result of settling a delivery. lapin answers `Ok(false)` when the
/// delivery's channel is gone, and an error when it died during the call; in
/// both cases the broker has requeued the message and will redeliver it, so
/// there is nothing for the caller to do and this is not an error.
fn settled(op: &str, outcome: lapin::Result<bool>) -> Result<()> {
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!(
                op,
                "delivery's channel is gone; the broker will redeliver it"
            );
            Ok(())
        }
        Err(e) => {
            tracing::warn!(op, error = %e, "settling failed; the broker will redeliver the message");
            Ok(())
        }
    }
}

/// Waits for an ack or nack at most `SETTLE_WAIT`; a settle that never
/// finishes counts as a dead channel (`Ok(false)`).
async fn settle(op: impl Future<Output = lapin::Result<bool>>) -> lapin::Result<bool> {
    tokio::time::timeout(SETTLE_WAIT, op)
        .await
        .unwrap_or(Ok(false))
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(&self) -> Result<()> {
        self.claim()?;
        settled("ack", settle(self.acker.ack(Default::default())).await)
    }

    async fn nack(&self, requeue: bool) -> Result<()> {
        self.claim()?;
        let options = BasicNackOptions {
            requeue,
            multiple: false,
        };
        settled("nack", settle(self.acker.nack(options)).await)
    }
}

impl Drop for AmqpAcker {
    fn drop(&mut self) {
        if self.settled.swap(true, Ordering::SeqCst) {
            return;
        }
        // Requeue now rather than when the channel closes, so the message and
        // the prefetch slot come back while the subscription lives on. Without
        // a runtime the channel close (subscription drop) requeues it instead.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let acker = self.acker.clone();
            runtime.spawn(async move {
                let options = BasicNackOptions {
                    requeue: true,
                    multiple: false,
                };
                let _ = settled("requeue on drop", settle(acker.nack(options)).await);
            });
        }
    }
}
