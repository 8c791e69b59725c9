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

use tokio::sync::watch;
use tracing::Instrument;

use crate::jetstream::{JetStreamBus, JetStreamOptions};
use crate::{BusError, EmbeddedBus, EventBus, Subscription};

/// Events per publish batch.
const BATCH: usize = 1_000;
/// Longest wait between reconnection or republish attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long the relay keeps forwarding after shutdown was asked for.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// What the relay has done, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct RelayStatus {
    /// Outbox position acknowledged by JetStream.
    pub position: AtomicI64,
    /// Events JetStream accepted (duplicates not counted).
    pub forwarded: AtomicU64,
    /// Failed connection or publish attempts.
    pub failures: AtomicU64,
    /// Whether the last attempt reached the server.
    pub connected: AtomicBool,
}

/// Forwards `outbox` to the JetStream stream of `options` until `shutdown` turns true, then
/// keeps forwarding what is already in the outbox for a few seconds (the rest goes on the
/// next start). Returns an error only when the outbox itself fails.
pub async fn relay_to_jetstream(
    outbox: EmbeddedBus,
    options: JetStreamOptions,
    status: Arc<RelayStatus>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let consumer = format!("jetstream:{}", options.stream);
    let mut sub = outbox.subscribe(&consumer).await?;
    status.position.store(sub.position(), Ordering::Relaxed);
    let mut backoff = Backoff::default();
    let target = loop {
        match JetStreamBus::connect(&options).await {
            Ok(bus) => break bus,
            Err(e) => {
                status.failures.fetch_add(1, Ordering::Relaxed);
                status.connected.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "jetstream not reachable; events wait in the outbox");
                if backoff.wait(&mut shutdown).await {
                    return Ok(());
                }
            }
        }
    };
    status.connected.store(true, Ordering::Relaxed);
    tracing::info!(url = %options.url, stream = %options.stream, "forwarding events to jetstream");
    let mut draining_until = None;
    loop {
        let batch = match draining_until {
            None => tokio::select! {
                batch = sub.next(BATCH) => batch?,
                _ = shutdown.wait_for(|&stop| stop) => {
                    draining_until = Some(tokio::time::Instant::now() + DRAIN_TIME);
                    continue;
                }
            },
            Some(deadline) => {
                let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now())
                else {
                    return Ok(());
                };
                match tokio::time::timeout(left.min(Duration::from_millis(100)), sub.next(BATCH))
                    .await
                {
                    Ok(batch) => batch?,
                    // The outbox is empty: everything was forwarded.
                    Err(_) => return Ok(()),
                }
            }
        };
        let Some(last) = batch.last().map(|d| d.seq) else {
            continue;
        };
        let events: Arc<[_]> = batch.into_iter().map(|d| d.event).collect();
        loop {
            let span = tracing::info_span!("jetstream.publish", events = events.len());
            match target.publish(Arc::clone(&events)).instrument(span).await {
                Ok(added) => {
                    status.forwarded.fetch_add(added as u64, Ordering::Relaxed);
                    status.connected.store(true, Ordering::Relaxed);
                    backoff = Backoff::default();
                    break;
                }
                Err(e) => {
                    status.failures.fetch_add(1, Ordering::Relaxed);
                    status.connected.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, events = events.len(), "jetstream publish failed; retrying");
                    let stopped = match draining_until {
                        Some(_) => true,
                        None => backoff.wait(&mut shutdown).await,
                    };
                    if stopped {
                        // Unacknowledged in the outbox: forwarded on the next start.
                        return Ok(());
                    }
                }
            }
        }
        sub.ack(last).await?;
        status.position.store(last, Ordering::Relaxed);
    }
}

/// Exponential backoff from 100 ms to [`MAX_BACKOFF`].
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(100))
    }
}

impl Backoff {
    /// Waits the current delay and doubles it; true if shutdown was asked for meanwhile.
    async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let delay = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        let slept = tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.wait_for(|&stop| stop) => false,
        };
        !slept || *shutdown.borrow()
    }
}
