//! The scale-out bus: NATS JetStream.
//!
//! Events go to subjects `opsloop.events.<type>` of one stream, as CloudEvents in structured
//! JSON mode, each published with `Nats-Msg-Id` = the event id so that JetStream drops a
//! republished event inside the stream's duplicate window. Consumers are durable pull
//! consumers with explicit acknowledgement: what a consumer did not acknowledge within
//! `ack_wait` is delivered again, to it or to another replica of it.
//!
//! [`JetStreamBus::locks`] opens a KV bucket of create-if-absent entries with a per-key time
//! to live ([`KvLocks`]): what lets agents sharing the stream act once per incident.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::{ConnectOptions, HeaderMap};
use futures_util::{FutureExt, StreamExt};
use opsloop_core::Event;

use crate::{BusError, Delivery, EventBus, Subscription};

/// The subject prefix: an event of type `T` is published on `opsloop.events.T`.
pub const SUBJECT_PREFIX: &str = "opsloop.events";

/// Deliveries a consumer may hold unacknowledged; JetStream stops delivering beyond this
/// (backpressure instead of an unbounded buffer in the consumer).
const MAX_ACK_PENDING: i64 = 10_000;

/// How to reach JetStream and shape the stream.
#[derive(Clone, Debug)]
pub struct JetStreamOptions {
    /// Server URL(s), comma separated (`nats://host:4222`).
    pub url: String,
    /// Stream name.
    pub stream: String,
    /// How long the stream keeps events.
    pub max_age: Duration,
    /// Window in which a republished event id is dropped as a duplicate.
    pub duplicate_window: Duration,
    /// Stream replicas (1 on a single server, 3 on a cluster).
    pub replicas: usize,
    /// Token for servers that require one.
    pub token: Option<String>,
    /// How long to wait for the server to acknowledge a publish or answer an API request.
    pub timeout: Duration,
    /// How long a consumer has to acknowledge a delivery before it is delivered again.
    pub ack_wait: Duration,
}

impl JetStreamOptions {
    /// Defaults for `url` and `stream`: events kept 7 days, duplicates dropped within 10 min.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> JetStreamOptions {
        JetStreamOptions {
            url: url.into(),
            stream: stream.into(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(600),
            replicas: 1,
            token: None,
            timeout: Duration::from_secs(5),
            ack_wait: Duration::from_secs(30),
        }
    }
}

/// A bus over one JetStream stream.
#[derive(Clone)]
pub struct JetStreamBus {
    context: jetstream::Context,
    stream: String,
    ack_wait: Duration,
}

fn nats_error(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Nats(format!("{what}: {e}"))
}

impl JetStreamBus {
    /// Connects and creates the stream if it does not exist (an existing stream is used as
    /// it is configured). Fails if the server cannot be reached now; once connected, the
    /// client reconnects by itself for as long as it lives.
    pub async fn connect(options: &JetStreamOptions) -> Result<JetStreamBus, BusError> {
        let mut connect = ConnectOptions::new()
            .name("opsloop")
            .connection_timeout(options.timeout)
            .max_reconnects(None);
        if let Some(token) = &options.token {
            connect = connect.token(token.clone());
        }
        let client = connect
            .connect(options.url.as_str())
            .await
            .map_err(|e| nats_error(&format!("connect to {}", options.url), e))?;
        let context = jetstream::ContextBuilder::new()
            .timeout(options.timeout)
            .backpressure_on_inflight(true)
            .build(client);
        context
            .get_or_create_stream(stream::Config {
                name: options.stream.clone(),
                subjects: vec![format!("{SUBJECT_PREFIX}.>")],
                max_age: options.max_age,
                duplicate_window: options.duplicate_window,
                num_replicas: options.replicas.max(1),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_error(&format!("create stream {}", options.stream), e))?;
        Ok(JetStreamBus {
            context,
            stream: options.stream.clone(),
            ack_wait: options.ack_wait,
        })
    }

    /// The KV bucket `bucket` as a lock table, created if missing (per-key TTLs need
    /// nats-server 2.11 or newer).
    pub async fn locks(&self, bucket: &str) -> Result<KvLocks, BusError> {
        let store = match self.context.get_key_value(bucket).await {
            Ok(store) => store,
            Err(_) => self
                .context
                .create_key_value(kv::Config {
                    bucket: bucket.to_string(),
                    description: "opsloop: create-if-absent locks with a time to live".into(),
                    history: 1,
                    storage: stream::StorageType::File,
                    // Per-key TTLs; the marker an expiry leaves is itself gone after this.
                    limit_markers: Some(LOCK_MARKER_TTL),
                    ..Default::default()
                })
                .await
                .map_err(|e| nats_error(&format!("create kv bucket {bucket}"), e))?,
        };
        Ok(KvLocks { store })
    }

    /// Where the durable consumer `name` stands (for health checks and tests).
    pub async fn consumer_backlog(&self, name: &str) -> Result<ConsumerBacklog, BusError> {
        let stream = self
            .context
            .get_stream(&self.stream)
            .await
            .map_err(|e| nats_error(&format!("stream {}", self.stream), e))?;
        let mut consumer: consumer::PullConsumer = stream
            .get_consumer(name)
            .await
            .map_err(|e| nats_error(&format!("consumer {name}"), e))?;
        let info = consumer
            .info()
            .await
            .map_err(|e| nats_error(&format!("consumer {name}"), e))?;
        Ok(ConsumerBacklog {
            unacknowledged: info
                .num_pending
                .saturating_add(u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX)),
            redelivered: u64::try_from(info.num_redelivered).unwrap_or(u64::MAX),
        })
    }

    /// The JetStream context (tests reach the server through it).
    #[cfg(test)]
    pub(crate) fn context(&self) -> &jetstream::Context {
        &self.context
    }

    /// The subject an event is published on.
    pub fn subject(event: &Event) -> String {
        format!("{SUBJECT_PREFIX}.{}", event.kind)
    }
}

impl EventBus for JetStreamBus {
    type Sub = JetStreamSubscription;

    /// Publishes all events before waiting for any acknowledgement (one round trip per
    /// batch, not per event), then counts the ones JetStream did not report as duplicates.
    async fn publish(&self, events: Arc<[Event]>) -> Result<usize, BusError> {
        let mut pending = Vec::with_capacity(events.len());
        // Subjects are shared per event type within the batch (a subject clones cheaply).
        let mut subjects: BTreeMap<&str, async_nats::Subject> = BTreeMap::new();
        for event in events.iter() {
            // Sized for a typical event, so encoding does not regrow the buffer.
            let mut payload = Vec::with_capacity(1024);
            serde_json::to_writer(&mut payload, event)
                .map_err(|e| nats_error("encode event", e))?;
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.as_str());
            headers.insert("Content-Type", "application/cloudevents+json");
            let subject = subjects
                .entry(event.kind.as_str())
                .or_insert_with(|| Self::subject(event).into())
                .clone();
            let ack = self
                .context
                .publish_with_headers(subject, headers, payload.into())
                .await
                .map_err(|e| nats_error("publish", e))?;
            pending.push(ack);
        }
        let mut added = 0;
        for ack in pending {
            let ack = ack.await.map_err(|e| nats_error("publish ack", e))?;
            if !ack.duplicate {
                added += 1;
            }
        }
        Ok(added)
    }

    async fn subscribe(&self, name: &str) -> Result<JetStreamSubscription, BusError> {
        self.subscribe_with(name, consumer::DeliverPolicy::All)
            .await
    }

    async fn subscribe_new(&self, name: &str) -> Result<JetStreamSubscription, BusError> {
        // Applies when the consumer is created; an existing one keeps its position.
        self.subscribe_with(name, consumer::DeliverPolicy::New)
            .await
    }
}

/// Longest event type (in dot-separated tokens) [`JetStreamBus::subscribe_suffix`] matches.
const MAX_TYPE_TOKENS: usize = 8;

impl JetStreamBus {
    /// Whether an event of type `kind` reaches [`JetStreamBus::subscribe_suffix`]`(…,
    /// suffix, …)`: its last token is `suffix` and it has at most 8 tokens.
    pub fn suffix_matches(kind: &str, suffix: &str) -> bool {
        let tokens = kind.split('.').count();
        (2..=MAX_TYPE_TOKENS).contains(&tokens) && kind.rsplit('.').next() == Some(suffix)
    }

    /// A consumer of its own (not shared with other agents) of the events whose type ends in
    /// the token `suffix` (`resolved`: `io.opsloop.alert.resolved`, ...), from now on.
    /// Every agent that subscribes gets every such event. The server removes the consumer
    /// after `inactive` without a client.
    pub async fn subscribe_suffix(
        &self,
        name: &str,
        suffix: &str,
        inactive: Duration,
    ) -> Result<JetStreamSubscription, BusError> {
        let filters = (1..MAX_TYPE_TOKENS)
            .map(|n| format!("{SUBJECT_PREFIX}.{}{suffix}", "*.".repeat(n)))
            .collect();
        self.subscribe_config(
            name,
            consumer::pull::Config {
                durable_name: Some(name.to_string()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: self.ack_wait,
                max_ack_pending: MAX_ACK_PENDING,
                filter_subjects: filters,
                deliver_policy: consumer::DeliverPolicy::New,
                inactive_threshold: inactive,
                ..Default::default()
            },
        )
        .await
    }

    async fn subscribe_with(
        &self,
        name: &str,
        deliver_policy: consumer::DeliverPolicy,
    ) -> Result<JetStreamSubscription, BusError> {
        self.subscribe_config(
            name,
            consumer::pull::Config {
                durable_name: Some(name.to_string()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: self.ack_wait,
                max_ack_pending: MAX_ACK_PENDING,
                filter_subject: format!("{SUBJECT_PREFIX}.>"),
                deliver_policy,
                ..Default::default()
            },
        )
        .await
    }

    async fn subscribe_config(
        &self,
        name: &str,
        config: consumer::pull::Config,
    ) -> Result<JetStreamSubscription, BusError> {
        let stream = self
            .context
            .get_stream(&self.stream)
            .await
            .map_err(|e| nats_error(&format!("stream {}", self.stream), e))?;
        let consumer = stream
            .get_or_create_consumer(name, config)
            .await
            .map_err(|e| nats_error(&format!("consumer {name}"), e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| nats_error(&format!("consumer {name}"), e))?;
        Ok(JetStreamSubscription {
            messages,
            pending: BTreeMap::new(),
        })
    }
}

/// A durable consumer's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerBacklog {
    /// Not yet delivered, plus delivered and not acknowledged (what a crashed replica held
    /// counts until it is redelivered and acknowledged).
    pub unacknowledged: u64,
    /// Deliveries now pending that were delivered more than once.
    pub redelivered: u64,
}

/// How long the delete marker of an expired lock stays (the server's minimum is 1 s).
const LOCK_MARKER_TTL: Duration = Duration::from_secs(1);

/// A KV bucket of locks: [`KvLocks::try_create`] creates an entry only if it is absent.
#[derive(Clone)]
pub struct KvLocks {
    store: kv::Store,
}

impl KvLocks {
    /// Creates `key` with `value`, expiring after `ttl` (whole seconds rounded up, at least one):
    /// `Ok(true)` if this call created it, `Ok(false)` if it exists, an error if the server
    /// could not say.
    pub async fn try_create(
        &self,
        key: &str,
        value: bytes::Bytes,
        ttl: Duration,
    ) -> Result<bool, BusError> {
        // Rounded up: a lock must never expire before the time asked for.
        let secs = ttl
            .as_secs()
            .saturating_add(u64::from(ttl.subsec_nanos() > 0));
        let ttl = Duration::from_secs(secs.max(1));
        match self.store.create_with_ttl(key, value, ttl).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(nats_error(&format!("lock {key}"), e)),
        }
    }
}

/// A durable pull consumer of the [`JetStreamBus`]. [`Delivery::seq`] is the stream sequence.
pub struct JetStreamSubscription {
    messages: consumer::pull::Stream,
    /// Delivered, not yet acknowledged, by stream sequence.
    pending: BTreeMap<i64, jetstream::Message>,
}

impl JetStreamSubscription {
    /// Turns one message into a delivery; a message that is not an event (published on our
    /// subjects by someone else) is terminated so it is never delivered again.
    async fn accept(&mut self, message: jetstream::Message) -> Option<Delivery> {
        let seq = match message.info() {
            Ok(info) => info.stream_sequence as i64,
            Err(e) => {
                tracing::warn!(error = %e, "jetstream message without delivery info, ignored");
                return None;
            }
        };
        match serde_json::from_slice::<Event>(&message.payload) {
            Ok(event) => {
                self.pending.insert(seq, message);
                Some(Delivery { seq, event })
            }
            Err(e) => {
                tracing::warn!(seq, subject = %message.subject, error = %e,
                    "message on the event subjects is not a CloudEvent, terminated");
                if let Err(e) = message.ack_with(jetstream::AckKind::Term).await {
                    tracing::warn!(seq, error = %e, "terminating a bad message failed");
                }
                None
            }
        }
    }
}

impl Subscription for JetStreamSubscription {
    async fn next(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let mut out = Vec::new();
        while out.is_empty() {
            // Wait for one message, then take what is already buffered, up to `max`.
            let first = match self.messages.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(nats_error("consume", e)),
                None => return Err(BusError::Closed),
            };
            out.extend(self.accept(first).await);
            while out.len() < max.max(1) {
                match self.messages.next().now_or_never() {
                    Some(Some(Ok(m))) => out.extend(self.accept(m).await),
                    Some(Some(Err(e))) if out.is_empty() => {
                        return Err(nats_error("consume", e));
                    }
                    // The deliveries taken are pending: returning the error instead would hide
                    // them from the caller, and its next ack would acknowledge them unseen.
                    Some(Some(Err(e))) => {
                        tracing::warn!(error = %e, "jetstream consume error after a partial batch");
                        break;
                    }
                    Some(None) | None => break,
                }
            }
        }
        Ok(out)
    }

    async fn ack(&mut self, seq: i64) -> Result<(), BusError> {
        let later = self.pending.split_off(&seq.saturating_add(1));
        let done = std::mem::replace(&mut self.pending, later);
        for message in done.values() {
            message.ack().await.map_err(|e| nats_error("ack", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod lock_tests {
    use std::time::{Duration, Instant};

    use super::{JetStreamBus, JetStreamOptions};
    use crate::testing::NatsServer;

    /// Two clients on one bucket: one create wins; the entry expires after its TTL and can
    /// be taken again; with the server gone, the answer is an error, never a grant.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kv_locks_are_created_once_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut server = NatsServer::start(&dir.path().join("nats"));
        let mut options = JetStreamOptions::new(server.url(), "locks");
        options.timeout = Duration::from_secs(2);
        let a = JetStreamBus::connect(&options).await.unwrap();
        let b = JetStreamBus::connect(&options).await.unwrap();
        let (la, lb) = (
            a.locks("test_locks").await.unwrap(),
            b.locks("test_locks").await.unwrap(),
        );
        let ttl = Duration::from_secs(1);
        assert!(la.try_create("heal.p.k", "a".into(), ttl).await.unwrap());
        assert!(!lb.try_create("heal.p.k", "b".into(), ttl).await.unwrap());
        assert!(
            lb.try_create("heal.p.other", "b".into(), ttl)
                .await
                .unwrap()
        );
        // Expired: the next create wins (polled, the server expires on its own schedule).
        let deadline = Instant::now() + Duration::from_secs(20);
        while !lb.try_create("heal.p.k", "b".into(), ttl).await.unwrap() {
            assert!(Instant::now() < deadline, "the lock never expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.kill();
        assert!(la.try_create("heal.p.z", "a".into(), ttl).await.is_err());
    }
}
