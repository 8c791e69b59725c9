//! The self-healing loop inside `opsloop run`: playbooks from the configuration file, the
//! engine's decisions and incidents in the store (hash-chained trail, incidents table), its
//! events on the agent's bus, every bus event fed to it through the durable consumer
//! `heal`, and the API's [`HealApi`] (Alertmanager notifications, hooks and approvals become
//! bus events first).
//!
//! With `bus.type: nats` the loop reads the JetStream stream instead, through one durable
//! consumer shared by every agent (each event goes to one of them), and an enforced incident
//! acts only once its lock is created in the KV bucket [`LOCK_BUCKET`] (time to live = the
//! playbook's cooldown): agents sharing the stream act once per incident and cooldown. What
//! the loop and the API publish still goes out through the agent's outbox and relay.
//! An incident lives in the store of the agent that opened it, and its API takes approvals
//! and rejections for it: they go to that agent's own loop directly (and onto the stream, for
//! the record), never through the shared consumer to another agent.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result};
use opsloop_agent::Agent;
use opsloop_agent::reload::ReloadHook;
use opsloop_agent::supervisor::{OnFailure, TaskError};
use opsloop_bus::jetstream::{JetStreamBus, JetStreamOptions, KvLocks};
use opsloop_bus::{EmbeddedBus, EventBus, Subscription};
use opsloop_core::config::HookConfig;
use opsloop_core::event::Event;
use opsloop_core::time::{Clock, SystemClock};
use opsloop_heal::action::{ActionRunner, SystemRunner};
use opsloop_heal::driver::HealHandle;
use opsloop_heal::engine::EventSink;
use opsloop_heal::expr::{Expr, Scope, from_json, to_json};
use opsloop_heal::incident::Incident;
use opsloop_heal::lock::{IncidentLock, LockFuture, LockUnavailable, NoLock, lock_name};
use opsloop_heal::store_journal::StoreJournal;
use opsloop_heal::{HealEngine, PlaybookSet, driver};
use opsloop_sandbox::Helper;
use opsloop_server::HealApi;
use opsloop_store::IncidentQuery;
use opsloop_store::Store;
use opsloop_store::incidents::StoredIncident;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

/// The durable consumer the loop reads the embedded bus with.
const CONSUMER: &str = "heal";
/// The JetStream durable consumer every agent's loop shares.
pub const SHARED_CONSUMER: &str = "opsloop-heal";
/// The JetStream KV bucket of incident locks.
pub const LOCK_BUCKET: &str = "opsloop_heal_locks";
/// Bus events handed to the engine per read.
const BATCH: usize = 256;

/// Reads the playbooks of the configuration file (none without one).
pub fn playbooks(config_path: Option<&Path>) -> Result<PlaybookSet> {
    let Some(path) = config_path else {
        return Ok(PlaybookSet::empty());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    PlaybookSet::from_config_yaml(&text, &path.display().to_string())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The running loop, for reloads: set once the loop started.
pub type LoopCell = Arc<OnceLock<Arc<HealHandle>>>;

/// A reload hook: the new file's playbooks are checked with the rest of it, and swapped in
/// (state of playbooks that keep their name kept) when the whole file is good.
pub fn reload_hook(cell: LoopCell) -> ReloadHook {
    // Each accepted file gets a generation; a set reaches the loop only if no newer one
    // got there first, so two quick reloads never end with the older set in force.
    let issued = Arc::new(AtomicU64::new(0));
    let applied = Arc::new(tokio::sync::Mutex::new(0u64));
    Arc::new(move |path: &Path| {
        let set = playbooks(Some(path)).map_err(|e| format!("{e:#}"))?;
        let cell = Arc::clone(&cell);
        let generation = issued.fetch_add(1, Ordering::SeqCst) + 1;
        let applied = Arc::clone(&applied);
        Ok(Box::new(move || {
            if let Some(handle) = cell.get() {
                let handle = Arc::clone(handle);
                tokio::spawn(reload_in_order(handle, set, generation, applied));
            }
        }) as Box<dyn FnOnce() + Send>)
    })
}

/// Hands `set` (of `generation`) to the loop unless a newer set was handed over already.
async fn reload_in_order(
    handle: Arc<HealHandle>,
    set: PlaybookSet,
    generation: u64,
    applied: Arc<tokio::sync::Mutex<u64>>,
) -> bool {
    let mut last = applied.lock().await;
    if *last > generation {
        return false;
    }
    if handle.reload(set).await.is_err() {
        tracing::warn!("playbooks not reloaded: the heal loop has stopped");
        return false;
    }
    *last = generation;
    tracing::info!("playbooks reloaded");
    true
}

/// Starts the loop over `agent` (its handle goes into `cell`): returns what the API
/// publishes through.
pub async fn start(
    agent: &Agent,
    set: PlaybookSet,
    hooks: BTreeMap<String, Hook>,
    cell: &LoopCell,
    jetstream: Option<JetStreamOptions>,
    metrics: Arc<HealMetrics>,
) -> Result<Arc<dyn HealApi>> {
    let runtime = tokio::runtime::Handle::current();
    let bus = agent.bus.clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let journal = Arc::new(StoreJournal::new(
        Arc::clone(&agent.store),
        Arc::clone(&clock),
        Arc::clone(&metrics.journal_failures),
    ));
    let sink = Arc::new(BusSink {
        bus: bus.clone(),
        runtime: runtime.clone(),
        metrics: Arc::clone(&metrics),
    });
    // Playbooks read the agent's environment through `env`; secrets among it are redacted
    // by the engine wherever they would be recorded.
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut engine = HealEngine::new(set, clock.clone(), journal, sink, env);
    restore(&mut engine, &agent.store, clock.now_ms()).await;
    let runner = runner().await?;
    let locks: Arc<OnceLock<KvLocks>> = Arc::default();
    let lock: Arc<dyn IncidentLock> = match jetstream {
        Some(_) => Arc::new(KvIncidentLock {
            locks: Arc::clone(&locks),
            holder: format!(
                "{} pid {}",
                opsloop_agent::agent::host_name(),
                std::process::id()
            ),
        }),
        None => Arc::new(NoLock),
    };
    let (handle, engine_task) =
        driver::spawn_counted(engine, runner, lock, Arc::clone(&metrics.locks));
    let handle = Arc::new(handle);
    let _ = cell.set(Arc::clone(&handle));
    let api_handle = Arc::clone(&handle);
    let shared_feed = jetstream.is_some();
    // The engine holds the incidents in flight, cooldowns and pending approvals: when it dies
    // the loop cannot go on half alive, so the agent stops (non-zero exit) and is restarted
    // by its service manager, rather than feeding a dead loop.
    let engine_task = Arc::new(Mutex::new(Some(engine_task)));
    let _engine = agent
        .supervisor
        .spawn("heal-engine", OnFailure::StopAgent, move |cancel| {
            let task = engine_task.lock().ok().and_then(|mut t| t.take());
            async move {
                match task {
                    Some(task) => watch_engine(task, cancel.cancelled()).await,
                    None => Err(TaskError::new("heal engine: not running")),
                }
            }
        });
    let feed_bus = bus.clone();
    // This agent's own consumer of resolved events (every agent gets every one): a resolved
    // alert must cancel the incident waiting for approval or the threshold window of
    // whichever agent holds it, not only those of the agent the shared consumer picked.
    let resolved_consumer = format!(
        "opsloop-heal-resolved-{}-{}",
        consumer_safe(&opsloop_agent::agent::host_name()),
        std::process::id()
    );
    let _feed = agent
        .supervisor
        .spawn("heal", OnFailure::Restart, move |cancel| {
            let bus = feed_bus.clone();
            let handle = Arc::clone(&handle);
            let jetstream = jetstream.clone();
            let locks = Arc::clone(&locks);
            let resolved_consumer = resolved_consumer.clone();
            async move {
                let Some(options) = jetstream else {
                    let sub = bus
                        .subscribe_new(CONSUMER)
                        .await
                        .map_err(|e| TaskError::new(format!("heal consumer: {e}")))?;
                    return feed(sub, &handle, false, cancel.cancelled()).await;
                };
                let shared = tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    b = JetStreamBus::connect(&options) => b.map_err(|e| TaskError::new(format!("heal consumer: {e}")))?,
                };
                if locks.get().is_none() {
                    let kv = shared
                        .locks(LOCK_BUCKET)
                        .await
                        .map_err(|e| TaskError::new(format!("heal locks: {e}")))?;
                    // The client reconnects by itself: one bucket handle for the agent's life.
                    let _ = locks.set(kv);
                }
                let sub = shared
                    .subscribe_new(SHARED_CONSUMER)
                    .await
                    .map_err(|e| TaskError::new(format!("heal consumer: {e}")))?;
                let resolved = shared
                    .subscribe_suffix(&resolved_consumer, "resolved", RESOLVED_CONSUMER_IDLE)
                    .await
                    .map_err(|e| TaskError::new(format!("heal resolved consumer: {e}")))?;
                tokio::try_join!(
                    feed(sub, &handle, true, cancel.cancelled()),
                    feed(resolved, &handle, false, cancel.cancelled()),
                )
                .map(|_| ())
            }
        });
    Ok(Arc::new(BusHealApi {
        bus,
        runtime,
        hooks,
        local_decisions: shared_feed.then_some(api_handle),
    }))
}

/// Most incidents of a previous run read back at start.
const MAX_RESTORED: usize = 10_000;
/// The states an incident can be left in when the agent stops.
const OPEN_STATES: [&str; 5] = [
    "detected",
    "awaiting_approval",
    "approved",
    "remediating",
    "verifying",
];

/// Hands the engine what the previous run left in the store: the incidents within its
/// memory (cooldowns, runs per hour, blast radius) and any older one that never ended, with
/// the trigger events of those awaiting approval. A store that cannot be read is logged and
/// the loop starts without them.
async fn restore(engine: &mut HealEngine, store: &Arc<Mutex<Store>>, now_ms: i64) {
    let since = now_ms.saturating_sub(engine.memory_ms());
    let store = Arc::clone(store);
    let read = tokio::task::spawn_blocking(move || {
        let store = store
            .lock()
            .map_err(|_| "store lock poisoned".to_string())?;
        read_history(&store, since).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("reading the previous incidents failed: {e}")));
    let (history, mut triggers) = match read {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "heal: the previous run's incidents could not be read; cooldowns and approvals start empty");
            return;
        }
    };
    let restored = engine.restore(history, &mut |id| triggers.remove(id));
    tracing::info!(
        runs = restored.runs,
        awaiting_approval = restored.awaiting,
        interrupted = restored.interrupted,
        cancelled = restored.cancelled,
        "heal: state of the previous run restored"
    );
}

/// Every incident that never ended (at most [`MAX_RESTORED`]) and the incidents created
/// since `since_ms` (the newest [`MAX_RESTORED`]), oldest first, with the trigger events of
/// those awaiting approval found in the store.
fn read_history(
    store: &Store,
    since_ms: i64,
) -> std::result::Result<(Vec<Incident>, BTreeMap<String, Event>), opsloop_store::StoreError> {
    let mut rows: BTreeMap<String, StoredIncident> = BTreeMap::new();
    // Open ones first, at any age and uncapped by the finished ones: they are bounded by
    // the pending approvals and the concurrency guardrail.
    let mut queries: Vec<IncidentQuery> = OPEN_STATES
        .iter()
        .map(|state| IncidentQuery {
            state: Some((*state).to_string()),
            ..IncidentQuery::default()
        })
        .collect();
    queries.push(IncidentQuery {
        since_ms: Some(since_ms),
        ..IncidentQuery::default()
    });
    for (n, mut query) in queries.into_iter().enumerate() {
        query.limit = Some(1000);
        let cap = if n < OPEN_STATES.len() {
            MAX_RESTORED
        } else {
            rows.len().saturating_add(MAX_RESTORED)
        };
        while rows.len() < cap {
            let page = store.incidents(&query)?;
            for row in page.items {
                rows.entry(row.id.clone()).or_insert(row);
            }
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
    }
    let mut history = Vec::with_capacity(rows.len());
    let mut triggers = BTreeMap::new();
    for row in rows.into_values() {
        match serde_json::from_value::<Incident>(row.data) {
            Ok(incident) => {
                if row.state == "awaiting_approval"
                    && let Some(event) = store.event_by_id(&incident.trigger_event_id)?
                {
                    triggers.insert(incident.trigger_event_id.clone(), event);
                }
                history.push(incident);
            }
            Err(e) => {
                tracing::warn!(incident = %row.id, error = %e, "heal: a stored incident is unreadable; skipped")
            }
        }
    }
    Ok((history, triggers))
}

/// Waits for the engine's task: its end before `stop` is a failure (a panic says so).
async fn watch_engine(
    task: tokio::task::JoinHandle<()>,
    stop: impl std::future::Future<Output = ()>,
) -> std::result::Result<(), TaskError> {
    tokio::select! {
        _ = stop => Ok(()),
        end = task => Err(TaskError::new(match end {
            Err(e) if e.is_panic() => "heal engine: panicked",
            _ => "heal engine: stopped",
        })),
    }
}

/// The loop's own counters, exported in `/metrics`.
#[derive(Debug, Default)]
pub struct HealMetrics {
    /// What the incident lock decided.
    pub locks: Arc<driver::LockCounts>,
    /// Trail records and incidents the store did not take.
    pub journal_failures: Arc<AtomicU64>,
    /// Incident events the bus did not take.
    pub publish_failures: AtomicU64,
}

impl Collector for HealMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let counters = [
            (
                "heal_lock_acquired",
                "Enforced incidents whose lock this agent took (they ran)",
                &self.locks.acquired,
            ),
            (
                "heal_lock_held_elsewhere",
                "Enforced incidents left to the agent holding their lock",
                &self.locks.locked_elsewhere,
            ),
            (
                "heal_lock_unavailable",
                "Enforced incidents not run because the lock could not be asked for",
                &self.locks.unavailable,
            ),
            (
                "heal_journal_failures",
                "Trail records and incidents the store did not take",
                &self.journal_failures,
            ),
            (
                "heal_publish_failures",
                "Incident events the bus did not take",
                &self.publish_failures,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// Hands every delivery of `sub` to the loop, acknowledging each batch once handed over.
/// Ends when `stop` resolves.
/// How long the server keeps an agent's resolved-events consumer without the agent.
const RESOLVED_CONSUMER_IDLE: std::time::Duration = std::time::Duration::from_secs(3_600);

/// `text` as a JetStream consumer name may have it (no dots, wildcards or spaces).
fn consumer_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Whether `event` is an approval or a rejection.
fn is_decision(event: &Event) -> bool {
    event.kind == opsloop_heal::engine::APPROVE_TYPE
        || event.kind == opsloop_heal::engine::REJECT_TYPE
}

/// Hands the consumer's events to the loop, acknowledging each batch once handled. On the
/// shared JetStream consumer (`shared`), approvals and rejections are skipped (the agent
/// whose API took them handed them to its own loop), and so are events whose type ends in
/// `.resolved` (each agent reads those through a consumer of its own).
async fn feed<S: Subscription>(
    mut sub: S,
    handle: &HealHandle,
    shared: bool,
    stop: impl std::future::Future<Output = ()>,
) -> std::result::Result<(), TaskError> {
    let mut stop = std::pin::pin!(stop);
    loop {
        let batch = tokio::select! {
            _ = &mut stop => return Ok(()),
            b = sub.next(BATCH) => b.map_err(|e| TaskError::new(format!("heal consumer: {e}")))?,
        };
        let Some(last) = batch.last().map(|d| d.seq) else {
            continue;
        };
        for delivery in batch {
            // On the shared consumer: decisions went to the deciding agent's loop, and
            // resolved events reach every agent through its own consumer.
            if shared
                && (is_decision(&delivery.event)
                    || JetStreamBus::suffix_matches(&delivery.event.kind, "resolved"))
            {
                continue;
            }
            handle
                .send(delivery.event)
                .await
                .map_err(|e| TaskError::new(format!("heal loop: {e}")))?;
        }
        // Acknowledged once the engine has handled the batch (its decisions recorded): an
        // event still queued when the agent stops is delivered again, and what a crash
        // replays is suppressed as already handled (the restored incident, cooldown, lock).
        handle
            .handled()
            .await
            .map_err(|e| TaskError::new(format!("heal loop: {e}")))?;
        sub.ack(last)
            .await
            .map_err(|e| TaskError::new(format!("heal consumer: {e}")))?;
    }
}

/// The incident lock over the JetStream KV bucket, once the feed connected; before that (or
/// with NATS down) every request fails, and the driver does not act.
struct KvIncidentLock {
    locks: Arc<OnceLock<KvLocks>>,
    /// Written as the lock's value: who acted.
    holder: String,
}

impl IncidentLock for KvIncidentLock {
    fn try_acquire<'a>(
        &'a self,
        playbook: &'a str,
        key: &'a str,
        ttl: std::time::Duration,
    ) -> LockFuture<'a> {
        Box::pin(async move {
            let Some(locks) = self.locks.get() else {
                return Err(LockUnavailable("not connected to NATS yet".into()));
            };
            let name = lock_name(playbook, key);
            let result = locks
                .try_create(&name, self.holder.clone().into_bytes().into(), ttl)
                .await
                .map_err(|e| LockUnavailable(e.to_string()));
            match &result {
                Ok(true) => tracing::debug!(lock = %name, "incident lock taken"),
                Ok(false) => tracing::info!(lock = %name, "incident lock held by another agent"),
                Err(e) => {
                    tracing::warn!(lock = %name, error = %e, "incident lock unavailable: not acting")
                }
            }
            result
        })
    }
}

/// A generic webhook, its expressions compiled.
pub struct Hook {
    kind: String,
    subject: Option<Expr>,
    data: Option<Expr>,
}

/// Compiles `hooks:` (a bad expression stops the start, naming the hook and field).
pub fn hooks(config: &[HookConfig]) -> Result<BTreeMap<String, Hook>> {
    let mut out = BTreeMap::new();
    for (i, h) in config.iter().enumerate() {
        let compile = |field: &str, src: &Option<String>| -> Result<Option<Expr>> {
            src.as_deref()
                .map(Expr::compile)
                .transpose()
                .map_err(|e| anyhow::anyhow!("hooks[{i}].{field}: {e}"))
        };
        // The loop's own decisions (approvals among them, which need an operator token)
        // cannot be forged through a hook.
        if h.kind.starts_with(opsloop_heal::run::INCIDENT_PREFIX) {
            anyhow::bail!(
                "hooks[{i}].type: {:?} is the heal loop's own event type",
                h.kind
            );
        }
        let hook = Hook {
            kind: h.kind.clone(),
            subject: compile("subject", &h.subject)?,
            data: compile("data", &h.data)?,
        };
        if h.name.is_empty() || out.insert(h.name.clone(), hook).is_some() {
            anyhow::bail!("hooks[{i}].name: {:?} is empty or used twice", h.name);
        }
    }
    Ok(out)
}

/// Exec through the sandbox (this binary as its helper); Kubernetes when a kubeconfig or an
/// in-cluster account is found.
async fn runner() -> Result<Arc<dyn ActionRunner>> {
    let helper = Helper::current_exe(crate::heal_cmd::HELPER_ARGS);
    let system = SystemRunner::new(helper).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut cluster = opsloop_cluster::ClusterRunner::new();
    match opsloop_cluster::infer_kube_client().await {
        Ok(Some(client)) => cluster = cluster.with_kube(client),
        Ok(None) => {
            tracing::info!("no kubeconfig or in-cluster account: kubernetes actions unavailable")
        }
        Err(e) => tracing::warn!(error = %e, "kubernetes actions unavailable"),
    }
    Ok(Arc::new(system.with_cluster(Arc::new(cluster))))
}

/// The engine's events (`io.opsloop.incident.*`) on the bus, in order. Publishing waits for
/// the store (the engine's task gives its worker thread up meanwhile): backpressure, no queue.
struct BusSink {
    bus: EmbeddedBus,
    runtime: tokio::runtime::Handle,
    metrics: Arc<HealMetrics>,
}

impl EventSink for BusSink {
    fn publish(&self, event: Event) {
        let events: Arc<[Event]> = Arc::from(vec![event]);
        let publish = || self.runtime.block_on(self.bus.publish(events));
        let result = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(publish)
            }
            // The agent's runtime is multi-threaded; elsewhere (no runtime) block directly.
            _ => publish(),
        };
        if let Err(e) = result {
            self.metrics
                .publish_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "heal: event not published");
        }
    }
}

/// What the API publishes through: the bus, so that notifications and approvals reach the
/// engine as every other event does (and are stored, replayable and audited the same way).
struct BusHealApi {
    bus: EmbeddedBus,
    runtime: tokio::runtime::Handle,
    hooks: BTreeMap<String, Hook>,
    /// With JetStream, this agent's own loop: approvals and rejections go to it directly.
    /// The API takes a decision only for an incident in this agent's store, which only this
    /// agent's engine holds; through the shared consumer it could reach another agent.
    local_decisions: Option<Arc<HealHandle>>,
}

impl HealApi for BusHealApi {
    fn publish(&self, events: Vec<Event>) -> std::result::Result<(), String> {
        // Called off the async workers (the server's blocking pool).
        let decisions: Vec<Event> = match &self.local_decisions {
            Some(_) => events.iter().filter(|e| is_decision(e)).cloned().collect(),
            None => Vec::new(),
        };
        self.runtime
            .block_on(self.bus.publish(Arc::from(events)))
            .map_err(|e| e.to_string())?;
        if let Some(handle) = &self.local_decisions {
            for decision in decisions {
                self.runtime
                    .block_on(handle.send(decision))
                    .map_err(|e| format!("heal loop: {e}"))?;
            }
        }
        Ok(())
    }

    fn map_hook(
        &self,
        name: &str,
        body: &serde_json::Value,
    ) -> Option<std::result::Result<Event, String>> {
        let hook = self.hooks.get(name)?;
        let scope = Scope::new().with("body", from_json(body));
        let subject = match &hook.subject {
            Some(e) => match e.eval_string(&scope) {
                Ok(s) => Some(s),
                Err(err) => return Some(Err(format!("hook {name}: subject: {err}"))),
            },
            None => None,
        };
        let data = match &hook.data {
            Some(e) => match e.eval(&scope) {
                Ok(v) => to_json(&v),
                Err(err) => return Some(Err(format!("hook {name}: data: {err}"))),
            },
            None => body.clone(),
        };
        Some(Ok(Event::new(
            &hook.kind,
            &format!("/opsloop/hooks/{name}"),
            subject.as_deref(),
            opsloop_core::time::now_ms(),
            data,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_engine_that_dies_is_a_failure_and_a_stop_is_not() {
        let panicked = tokio::spawn(async { panic!("engine bug") });
        let e = watch_engine(panicked, std::future::pending())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
        let ended = tokio::spawn(async {});
        let e = watch_engine(ended, std::future::pending())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("stopped"), "{e}");
        let running = tokio::spawn(std::future::pending::<()>());
        assert!(watch_engine(running, async {}).await.is_ok());
    }

    #[test]
    fn heal_counters_are_exported() {
        let heal = Arc::new(HealMetrics::default());
        heal.locks.acquired.fetch_add(2, Ordering::Relaxed);
        heal.journal_failures.fetch_add(1, Ordering::Relaxed);
        let metrics = opsloop_server::AgentMetrics::with_extra(|r| {
            r.register_collector(Box::new(Arc::clone(&heal)));
        });
        let text = metrics.encode();
        assert!(
            text.contains("opsloop_heal_lock_acquired_total 2"),
            "{text}"
        );
        assert!(
            text.contains("opsloop_heal_journal_failures_total 1"),
            "{text}"
        );
        assert!(
            text.contains("opsloop_heal_lock_unavailable_total 0"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod hook_tests {
    use super::*;

    #[tokio::test]
    async fn an_older_reload_never_lands_after_a_newer_one() {
        let engine = HealEngine::new(
            PlaybookSet::empty(),
            Arc::new(SystemClock),
            Arc::new(opsloop_heal::incident::MemoryJournal::default()),
            Arc::new(opsloop_heal::engine::MemorySink::default()),
            BTreeMap::new(),
        );
        let runner = Arc::new(opsloop_heal::action::RecordingRunner::default());
        let (handle, _task) = driver::spawn(engine, runner);
        let handle = Arc::new(handle);
        let applied = Arc::new(tokio::sync::Mutex::new(0u64));
        // The newer set (2) gets there first; the older one (1) is then dropped.
        assert!(
            reload_in_order(
                Arc::clone(&handle),
                PlaybookSet::empty(),
                2,
                Arc::clone(&applied)
            )
            .await
        );
        assert!(
            !reload_in_order(
                Arc::clone(&handle),
                PlaybookSet::empty(),
                1,
                Arc::clone(&applied)
            )
            .await
        );
        assert!(reload_in_order(handle, PlaybookSet::empty(), 3, applied).await);
    }

    #[test]
    fn a_hook_cannot_forge_the_loops_own_events() {
        let hook = HookConfig {
            name: "x".into(),
            kind: "io.opsloop.incident.approve".into(),
            subject: None,
            data: None,
        };
        let Err(e) = hooks(&[hook]) else {
            panic!("a hook of type io.opsloop.incident.approve was accepted");
        };
        let e = e.to_string();
        assert!(e.contains("hooks[0].type"), "{e}");
    }
}
