//! The outbox relay: forwards the embedded bus's event log to JetStream.
//!
//! With the JetStream bus, the agent still writes every event to its local outbox first, so
//! neither a slow nor a stopped NATS server can block or lose the pipeline's events. The relay
//! is a durable consumer of that outbox: it publishes a batch with `Nats-Msg-Id` = event id,
//! and acknowledges it locally only after JetStream acknowledged every event of it. A crash
//! between the two republishes the batch, which JetStream drops as duplicates (within its
//! duplicate window), so the stream gets each event once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use opsloop_core::Event;
use tokio::sync::watch;
use tracing::Instrument;

use crate::jetstream::{JetStreamBus, JetStreamOptions};
use crate::{BusError, EmbeddedBus, EmbeddedSubscription, EventBus, Subscription};

/// Events per publish batch.
const BATCH: usize = 1_000;
/// How long the relay keeps forwarding after shutdown was asked for.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// What the relay has done, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct RelayStatus {
    /// Outbox position acknowledged by JetStream.
    pub position: AtomicI64,
    /// Events JetStream accepted (duplicates not counted).
    pub forwarded: AtomicU64,
    /// Failed attempts: connecting or publishing to JetStream, reading or acknowledging the
    /// outbox. Each is retried after a backoff.
    pub failures: AtomicU64,
    /// Whether the last attempt reached the server.
    pub connected: AtomicBool,
}

/// The waits between retries: doubling from `initial` up to `max`, back to `initial` after
/// a success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    /// 100 ms, doubling up to 5 s.
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// Names of the outbox consumers of relays start with this.
pub const RELAY_CONSUMER_PREFIX: &str = "jetstream:";

/// The outbox consumer of the relay to `stream`.
pub fn relay_consumer(stream: &str) -> String {
    format!("{RELAY_CONSUMER_PREFIX}{stream}")
}

/// Forwards `outbox` to the JetStream stream of `options` until `shutdown` turns true, then
/// keeps forwarding what is already in the outbox for a few seconds (the rest goes on the
/// next start). Failures (JetStream unreachable or refusing a publish, the outbox failing to
/// read or acknowledge) are counted in [`RelayStatus::failures`] and retried with the
/// default [`BackoffPolicy`]; they never end the relay, only `shutdown` does. Always returns
/// `Ok` (the `Result` is kept for callers written when an outbox error ended the relay).
pub async fn relay_to_jetstream(
    outbox: EmbeddedBus,
    options: JetStreamOptions,
    status: Arc<RelayStatus>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    relay_to_jetstream_with_backoff(outbox, options, status, shutdown, BackoffPolicy::default())
        .await
}

/// [`relay_to_jetstream`] with the given waits between retries.
pub async fn relay_to_jetstream_with_backoff(
    outbox: EmbeddedBus,
    options: JetStreamOptions,
    status: Arc<RelayStatus>,
    mut shutdown: watch::Receiver<bool>,
    policy: BackoffPolicy,
) -> Result<(), BusError> {
    let mut relay = Relay {
        consumer: relay_consumer(&options.stream),
        outbox,
        options,
        status,
        sub: None,
        target: None,
        batch: None,
        draining_until: None,
    };
    let mut backoff = Backoff::new(policy);
    loop {
        match relay.step(&mut shutdown).await {
            Ok(Step::Forwarded) => backoff.reset(),
            Ok(Step::Again) => {}
            Ok(Step::Done) => return Ok(()),
            Err(failure) => {
                relay.status.failures.fetch_add(1, Ordering::Relaxed);
                match failure {
                    Failure::Nats(e) => {
                        relay.status.connected.store(false, Ordering::Relaxed);
                        tracing::warn!(error = %e, "jetstream failed; events wait in the outbox, retrying");
                    }
                    Failure::Outbox(e) => {
                        tracing::warn!(error = %e, "reading the outbox failed; retrying");
                    }
                }
                // While draining, a failure ends the relay: what is left stays unacknowledged
                // in the outbox and is forwarded on the next start.
                if relay.draining_until.is_some() || backoff.wait(&mut shutdown).await {
                    return Ok(());
                }
            }
        }
    }
}

/// What a step of the relay achieved.
enum Step {
    /// A batch went to JetStream and was acknowledged in the outbox.
    Forwarded,
    /// Nothing yet (shutdown began, or an empty read): step again.
    Again,
    /// Stopped: the drain finished.
    Done,
}

/// A step failed; the relay waits and tries again.
enum Failure {
    /// Connecting or publishing to JetStream.
    Nats(BusError),
    /// Subscribing to, reading or acknowledging the outbox.
    Outbox(BusError),
}

/// A batch read from the outbox, not yet acknowledged there.
struct Batch {
    last: i64,
    events: Arc<[Event]>,
    published: bool,
}

struct Relay {
    consumer: String,
    outbox: EmbeddedBus,
    options: JetStreamOptions,
    status: Arc<RelayStatus>,
    sub: Option<EmbeddedSubscription>,
    target: Option<JetStreamBus>,
    /// Kept across failures, so that a retry resumes where the failure was.
    batch: Option<Batch>,
    draining_until: Option<tokio::time::Instant>,
}

impl Relay {
    /// Subscribes, connects, reads, publishes and acknowledges, each as far as not yet done.
    async fn step(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<Step, Failure> {
        let sub = match &mut self.sub {
            Some(sub) => sub,
            None => {
                let sub = self
                    .outbox
                    .subscribe(&self.consumer)
                    .await
                    .map_err(Failure::Outbox)?;
                self.status
                    .position
                    .store(sub.position(), Ordering::Relaxed);
                self.sub.insert(sub)
            }
        };
        let target = match &self.target {
            Some(target) => target,
            None => {
                let target = JetStreamBus::connect(&self.options)
                    .await
                    .map_err(Failure::Nats)?;
                self.status.connected.store(true, Ordering::Relaxed);
                tracing::info!(url = %self.options.url, stream = %self.options.stream,
                    "forwarding events to jetstream");
                self.target.insert(target)
            }
        };
        let batch = match &mut self.batch {
            Some(batch) => batch,
            None => {
                let read = match self.draining_until {
                    None => tokio::select! {
                        read = sub.next(BATCH) => read,
                        _ = shutdown.wait_for(|&stop| stop) => {
                            self.draining_until =
                                Some(tokio::time::Instant::now() + DRAIN_TIME);
                            return Ok(Step::Again);
                        }
                    },
                    Some(deadline) => {
                        let Some(left) =
                            deadline.checked_duration_since(tokio::time::Instant::now())
                        else {
                            return Ok(Step::Done);
                        };
                        let wait = left.min(Duration::from_millis(100));
                        match tokio::time::timeout(wait, sub.next(BATCH)).await {
                            Ok(read) => read,
                            // The outbox is empty: everything was forwarded.
                            Err(_) => return Ok(Step::Done),
                        }
                    }
                };
                let read = read.map_err(Failure::Outbox)?;
                let Some(last) = read.last().map(|d| d.seq) else {
                    return Ok(Step::Again);
                };
                self.batch.insert(Batch {
                    last,
                    events: read.into_iter().map(|d| d.event).collect(),
                    published: false,
                })
            }
        };
        if !batch.published {
            let span = tracing::info_span!("jetstream.publish", events = batch.events.len());
            match target
                .publish(Arc::clone(&batch.events))
                .instrument(span)
                .await
            {
                Ok(added) => {
                    self.status
                        .forwarded
                        .fetch_add(added as u64, Ordering::Relaxed);
                    self.status.connected.store(true, Ordering::Relaxed);
                    batch.published = true;
                }
                Err(e) => {
                    // Connect afresh next time, which also recreates a stream lost meanwhile.
                    self.target = None;
                    return Err(Failure::Nats(e));
                }
            }
        }
        sub.ack(batch.last).await.map_err(Failure::Outbox)?;
        self.status.position.store(batch.last, Ordering::Relaxed);
        self.batch = None;
        Ok(Step::Forwarded)
    }
}

/// Exponential backoff under a [`BackoffPolicy`].
pub(crate) struct Backoff {
    policy: BackoffPolicy,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(policy: BackoffPolicy) -> Backoff {
        Backoff {
            policy,
            next: policy.initial,
        }
    }

    /// Back to the first wait (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = self.policy.initial;
    }

    /// The wait to make now; doubles the next one, up to the maximum.
    pub(crate) fn delay(&mut self) -> Duration {
        let delay = self.next.min(self.policy.max);
        self.next = self.next.saturating_mul(2).min(self.policy.max);
        delay
    }

    /// Waits the current delay and doubles it; true if shutdown was asked for meanwhile.
    pub(crate) async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let delay = self.delay();
        let slept = tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.wait_for(|&stop| stop) => false,
        };
        !slept || *shutdown.borrow()
    }
}
