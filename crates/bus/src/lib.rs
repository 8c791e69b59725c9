//! The event bus: every loop publishes its findings as [`Event`]s here, and consumers (the
//! healing loop, the API's live view, exporters) read them through durable subscriptions.
//!
//! [`EventBus`] is the abstraction. [`EmbeddedBus`] is the single-node default: the event log
//! in the [`Store`] is the outbox, so an event is durable once `publish` returns, and each
//! named consumer keeps an acknowledged cursor there, so a restart redelivers what was not
//! acknowledged (at-least-once). [`jetstream::JetStreamBus`] is the scale-out implementation;
//! an agent configured for it still writes to the embedded outbox first and
//! [`relay::relay_to_jetstream`] forwards from there, so a NATS outage delays events but loses
//! none.

pub mod jetstream;
pub mod relay;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::future::Future;
use std::sync::{Arc, Mutex};

use opsloop_core::Event;
use opsloop_store::{Store, StoreError};
use tokio::sync::watch;

/// Why the bus failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The store behind the embedded bus failed.
    #[error("bus: {0}")]
    Store(#[from] StoreError),
    /// The store's lock was poisoned by a panic elsewhere.
    #[error("bus: store lock poisoned")]
    Poisoned,
    /// A blocking task failed to complete.
    #[error("bus: worker task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The bus was closed.
    #[error("bus: closed")]
    Closed,
    /// NATS or JetStream failed (connection, stream, publish, consume).
    #[error("nats: {0}")]
    Nats(String),
}

/// An event handed to a consumer, with the position to acknowledge.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// Position in the bus (acknowledge it when processed).
    pub seq: i64,
    /// The event.
    pub event: Event,
}

/// A durable subscription: [`Subscription::next`] waits for events after the consumer's
/// position; [`Subscription::ack`] records progress.
pub trait Subscription: Send {
    /// The next batch of at most `max` deliveries, waiting until there is at least one.
    fn next(&mut self, max: usize) -> impl Future<Output = Result<Vec<Delivery>, BusError>> + Send;
    /// Records that everything up to and including `seq` was processed.
    fn ack(&mut self, seq: i64) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// Publishes events and hands out durable subscriptions.
pub trait EventBus: Send + Sync {
    /// The subscription type.
    type Sub: Subscription;
    /// Publishes events; when this returns they are durable. Events whose id was already
    /// published are dropped (deduplication). Shared, so that a retry costs no copy.
    fn publish(&self, events: Arc<[Event]>)
    -> impl Future<Output = Result<usize, BusError>> + Send;
    /// Subscribes as the durable consumer `name`, resuming after its last acknowledgement.
    fn subscribe(&self, name: &str) -> impl Future<Output = Result<Self::Sub, BusError>> + Send;
    /// Like [`EventBus::subscribe`], except that a consumer `name` that does not exist yet
    /// starts at the bus's current head instead of its first event: a consumer that acts on
    /// what it reads (the heal loop) must not act on the history it was added to.
    fn subscribe_new(&self, name: &str)
    -> impl Future<Output = Result<Self::Sub, BusError>> + Send;
}

/// A clock: the current time as Unix milliseconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The in-process bus over the store's event log.
#[derive(Clone)]
pub struct EmbeddedBus {
    store: Arc<Mutex<Store>>,
    head: watch::Sender<i64>,
    now: Clock,
}

impl EmbeddedBus {
    /// A bus over `store`, on the wall clock.
    pub fn new(store: Arc<Mutex<Store>>) -> Result<EmbeddedBus, BusError> {
        Self::with_clock(store, Arc::new(opsloop_core::time::now_ms))
    }

    /// A bus over `store` reading the time from `now` (Unix ms): events are stamped with it as
    /// their ingestion time (what retention goes by), and acknowledgements with it.
    pub fn with_clock(store: Arc<Mutex<Store>>, now: Clock) -> Result<EmbeddedBus, BusError> {
        let last = store.lock().map_err(|_| BusError::Poisoned)?.last_seq()?;
        let (head, _) = watch::channel(last);
        Ok(EmbeddedBus { store, head, now })
    }

    /// The sequence of the last event published.
    pub fn head(&self) -> i64 {
        *self.head.borrow()
    }

    /// The bus's clock, Unix ms.
    pub fn now_ms(&self) -> i64 {
        (self.now)()
    }

    /// How many stored events the slowest durable consumer has not acknowledged: the last
    /// sequence minus the lowest acknowledged position over all consumers (a consumer counts
    /// from its first subscription, before any acknowledgement). Events already removed by
    /// retention can no longer be delivered and do not count. 0 when there is no consumer.
    pub async fn lag(&self) -> Result<i64, BusError> {
        self.with_store(|s| {
            let Some(acked) = s.min_consumer_acked()? else {
                return Ok(0);
            };
            let last = s.last_seq()?;
            let before_first = s.first_seq()?.saturating_sub(1);
            Ok(last.saturating_sub(acked.max(before_first)).max(0))
        })
        .await
    }

    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, BusError> {
        let store = Arc::clone(&self.store);
        // SQLite calls block; keep them off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut guard = store.lock().map_err(|_| BusError::Poisoned)?;
            f(&mut guard).map_err(BusError::from)
        })
        .await?
    }
}

impl EventBus for EmbeddedBus {
    type Sub = EmbeddedSubscription;

    async fn publish(&self, events: Arc<[Event]>) -> Result<usize, BusError> {
        let now = self.now_ms();
        let (added, last) = self
            .with_store(move |s| {
                let added = s.append_events(&events, now)?;
                Ok((added, s.last_seq()?))
            })
            .await?;
        self.head.send_replace(last);
        Ok(added)
    }

    async fn subscribe(&self, name: &str) -> Result<EmbeddedSubscription, BusError> {
        self.subscribe_at(name, false).await
    }

    async fn subscribe_new(&self, name: &str) -> Result<EmbeddedSubscription, BusError> {
        self.subscribe_at(name, true).await
    }
}

impl EmbeddedBus {
    /// Subscribes `name`; a new consumer starts at the first event, or at the head when
    /// `from_head`.
    async fn subscribe_at(
        &self,
        name: &str,
        from_head: bool,
    ) -> Result<EmbeddedSubscription, BusError> {
        let owned = name.to_string();
        let now = self.now_ms();
        let acked = self
            .with_store(move |s| {
                // Known from now on, so that its lag counts before it acknowledges anything.
                let start = if from_head { s.last_seq()? } else { 0 };
                s.register_consumer_at(&owned, start, now)?;
                s.consumer_acked(&owned)
            })
            .await?;
        Ok(EmbeddedSubscription {
            bus: self.clone(),
            name: name.to_string(),
            position: acked,
            head: self.head.subscribe(),
        })
    }
}

/// A durable consumer of the [`EmbeddedBus`].
pub struct EmbeddedSubscription {
    bus: EmbeddedBus,
    name: String,
    position: i64,
    head: watch::Receiver<i64>,
}

impl EmbeddedSubscription {
    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sequence of the last event handed out.
    pub fn position(&self) -> i64 {
        self.position
    }
}

impl Subscription for EmbeddedSubscription {
    async fn next(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        loop {
            let after = self.position;
            let batch = self
                .bus
                .with_store(move |s| s.events_after(after, max.max(1)))
                .await?;
            if let Some((last, _)) = batch.last() {
                self.position = *last;
                return Ok(batch
                    .into_iter()
                    .map(|(seq, event)| Delivery { seq, event })
                    .collect());
            }
            // Nothing new: wait for the head to move past our position.
            let position = self.position;
            self.head
                .wait_for(|&head| head > position)
                .await
                .map_err(|_| BusError::Closed)?;
        }
    }

    async fn ack(&mut self, seq: i64) -> Result<(), BusError> {
        let name = self.name.clone();
        let now = self.bus.now_ms();
        self.bus
            .with_store(move |s| s.ack_consumer(&name, seq, now))
            .await
    }
}

#[cfg(test)]
mod tests;
