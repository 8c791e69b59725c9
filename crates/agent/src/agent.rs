//! [`Agent`]: the store, the bus (and the JetStream relay), the pipeline thread and its
//! publisher, the sources, housekeeping and reload, all started under one [`Supervisor`] and
//! stopped in the order that loses nothing.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opsloop_bus::EmbeddedBus;
use opsloop_bus::jetstream::JetStreamOptions;
use opsloop_bus::relay::{RELAY_CONSUMER_PREFIX, RelayStatus, relay_consumer, relay_to_jetstream};
use opsloop_core::config::{BusKind, Config, RetentionConfig};
use opsloop_core::ingest::IngestedRecord;
use opsloop_core::time::Clock;
use opsloop_logs::anomaly::AnomalyConfig;
use opsloop_logs::miner::MinerConfig;
use opsloop_logs::pipeline::LogPipeline;
use opsloop_metrics::AgentMetrics;
use opsloop_store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch::{INPUT_CAPACITY, Input};
use crate::pipeline::{
    INGEST_SOURCE, OUTBOUND_CAPACITY, Outbound, PipelineParts, RuleStatus, publish, rule_statuses,
    spawn_pipeline,
};
use crate::reload::{Loaded, ReloadTarget, load_parts, reload_loop};
use crate::sources::{SourceContext, Sources};
use crate::supervisor::{OnFailure, Supervisor, TaskError, TaskHandle};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] opsloop_store::StoreError),
    /// The bus could not be set up.
    #[error("bus: {0}")]
    Bus(#[from] opsloop_bus::BusError),
    /// The rules or the redaction patterns could not be loaded.
    #[error("{0}")]
    Config(String),
    /// A source could not start.
    #[error("{0}")]
    Source(#[from] crate::sources::SourceError),
    /// A thread could not be started.
    #[error("starting {what}: {source}")]
    Thread {
        /// Which.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// How to start an agent.
pub struct AgentOptions {
    /// The configuration.
    pub config: Config,
    /// Its file, watched for reloads (`None`: the embedded default, nothing to reload).
    pub config_path: Option<PathBuf>,
    /// The clock of time-dependent decisions (years of year-less timestamps, retention).
    pub clock: Arc<dyn Clock>,
    /// How to reach JetStream, when `bus.type` is `nats` (secrets already resolved).
    pub jetstream: Option<JetStreamOptions>,
    /// Checks and applies, on every reload, the parts of the file the agent does not own.
    pub reload_hook: Option<crate::reload::ReloadHook>,
}

/// A running agent.
pub struct Agent {
    /// The store.
    pub store: Arc<Mutex<Store>>,
    /// Counters and gauges.
    pub metrics: Arc<AgentMetrics>,
    /// Runs and watches the tasks; its ready flag is `/readyz`.
    pub supervisor: Supervisor,
    /// The rules, with hit counts.
    pub rules: Arc<Mutex<Vec<RuleStatus>>>,
    /// Where the API sends records posted to it.
    pub ingest: mpsc::Sender<IngestedRecord>,
    /// The bus the agent publishes on, for other consumers of its events (the heal loop).
    pub bus: EmbeddedBus,
    sources: Arc<tokio::sync::Mutex<Sources>>,
    publisher: TaskHandle,
    background: Vec<TaskHandle>,
    relay: Option<(TaskHandle, tokio::sync::watch::Sender<bool>)>,
}

/// `/opsloop/agent/<host>`: the `source` of every event this agent emits.
pub fn event_source() -> String {
    format!("/opsloop/agent/{}", host_name())
}

/// The system's host name (what `hostname` prints); `$HOSTNAME`, then `localhost`, where the
/// system does not say. systemd services have no `$HOSTNAME`, so the system comes first.
pub fn host_name() -> String {
    let from_system = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    from_system
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".into())
}

impl Agent {
    /// Opens the store and starts every task; sources that cannot start fail the start.
    pub async fn start(
        options: AgentOptions,
        metrics: Arc<AgentMetrics>,
    ) -> Result<Agent, AgentError> {
        let AgentOptions {
            config,
            config_path,
            clock,
            jetstream,
            reload_hook,
        } = options;
        let supervisor = Supervisor::new(Arc::clone(&metrics));
        let store = Arc::new(Mutex::new(Store::open(&config.data_dir)?));
        // Ingestion times (what retention ages by) come from the agent's clock too.
        let bus_clock = Arc::clone(&clock);
        let bus =
            EmbeddedBus::with_clock(Arc::clone(&store), Arc::new(move || bus_clock.now_ms()))?;
        let shared_bus = bus.clone();
        let Loaded {
            config,
            rules,
            redactor,
        } = load_parts(config).map_err(AgentError::Config)?;
        let event_source = event_source();
        let rule_status = Arc::new(Mutex::new(rule_statuses(&rules)));
        let mut pipeline = LogPipeline::with_clock(
            rules,
            MinerConfig {
                max_templates: config.miner.max_templates,
                max_tokens: config.miner.max_tokens,
                ..MinerConfig::default()
            },
            AnomalyConfig {
                warmup_records: config.anomaly.warmup_records,
                ..AnomalyConfig::default()
            },
            &event_source,
            Arc::clone(&clock),
        );
        pipeline.set_redactor(redactor.clone());

        // Sources feed one bounded channel into the pipeline thread, which feeds the publisher.
        let (input_tx, input_rx) = mpsc::channel::<Input>(INPUT_CAPACITY);
        let (outbound_tx, outbound_rx) = mpsc::channel::<Outbound>(OUTBOUND_CAPACITY);
        let thread = spawn_pipeline(PipelineParts {
            pipeline,
            input: input_rx,
            outbound: outbound_tx,
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            rules: Arc::clone(&rule_status),
            clock: Arc::clone(&clock),
            event_source: event_source.clone(),
            redactor,
        })
        .map_err(|source| AgentError::Thread {
            what: "the pipeline",
            source,
        })?;
        supervisor.watch_thread("pipeline", thread);
        let publisher = {
            // The publisher owns the outbound channel: it cannot start over, so its failure
            // stops the agent.
            let state = Arc::new(Mutex::new(Some(outbound_rx)));
            let (bus, metrics, me) = (bus.clone(), Arc::clone(&metrics), supervisor.clone());
            supervisor.spawn("publisher", OnFailure::StopAgent, move |_| {
                let rx = state.lock().ok().and_then(|mut r| r.take());
                let (bus, metrics, me) = (bus.clone(), Arc::clone(&metrics), me.clone());
                async move {
                    match rx {
                        Some(rx) => publish(rx, bus, metrics, me).await,
                        None => Err(TaskError::new("the publisher cannot be restarted")),
                    }
                }
            })
        };

        let mut sources = Sources::new(
            SourceContext {
                input: input_tx.clone(),
                store: Arc::clone(&store),
                metrics: Arc::clone(&metrics),
                event_source: event_source.clone(),
                clock: Arc::clone(&clock),
            },
            supervisor.clone(),
        );
        let (_, errors) = sources.apply(&config.sources).await;
        if let Some(e) = errors.into_iter().next() {
            sources.stop_all().await;
            supervisor.shutdown(Duration::from_secs(5)).await;
            return Err(e.into());
        }
        let sources = Arc::new(tokio::sync::Mutex::new(sources));
        forget_old_relays(
            &store,
            config
                .bus
                .nats
                .as_ref()
                .filter(|_| config.bus.kind == BusKind::Nats)
                .map(|n| n.stream.as_str()),
        );

        // With the JetStream bus, a relay forwards the outbox to the stream.
        let relay = match (config.bus.kind, jetstream) {
            (BusKind::Nats, Some(options)) => {
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                let status = Arc::new(RelayStatus::default());
                let (bus, st) = (bus.clone(), Arc::clone(&status));
                let handle = supervisor.spawn("relay", OnFailure::Restart, move |_| {
                    relay_to_jetstream(
                        bus.clone(),
                        options.clone(),
                        Arc::clone(&st),
                        stop_rx.clone(),
                    )
                    .map_err_task()
                });
                Some((handle, stop_tx, status))
            }
            _ => None,
        };
        let mut background = Vec::new();
        {
            let parts = Housekeeping {
                retention: config.store.retention.clone(),
                store: Arc::clone(&store),
                bus: bus.clone(),
                relay: relay.as_ref().map(|(_, _, s)| Arc::clone(s)),
                metrics: Arc::clone(&metrics),
                clock: Arc::clone(&clock),
                supervisor: supervisor.clone(),
            };
            background.push(
                supervisor.spawn("housekeeping", OnFailure::Restart, move |cancel| {
                    housekeeping(parts.clone(), cancel)
                }),
            );
        }
        if let Some(path) = config_path {
            let target = Arc::new(ReloadTarget {
                current: tokio::sync::Mutex::new(config.clone()),
                path,
                input: input_tx.clone(),
                sources: Arc::clone(&sources),
                metrics: Arc::clone(&metrics),
                event_source: event_source.clone(),
                clock: Arc::clone(&clock),
                hook: reload_hook.clone(),
            });
            background.push(
                supervisor.spawn("reload", OnFailure::Restart, move |cancel| {
                    reload_loop(Arc::clone(&target), cancel)
                }),
            );
        }
        let ingest = forward_ingest(input_tx, &metrics, &supervisor);
        Ok(Agent {
            store,
            metrics,
            supervisor,
            rules: rule_status,
            ingest,
            bus: shared_bus,
            sources,
            publisher,
            background,
            relay: relay.map(|(h, stop, _)| (h, stop)),
        })
    }

    /// Stops in the order that loses nothing: sources stop (file positions saved), the
    /// pipeline completes what it holds, the publisher stores it, the relay forwards what it
    /// can in a few seconds (the outbox keeps the rest). Returns `false` if something did not
    /// finish in time.
    pub async fn shutdown(self) -> bool {
        let Agent {
            supervisor,
            sources,
            mut publisher,
            background,
            relay,
            ingest,
            ..
        } = self;
        supervisor.set_stopping();
        drop(ingest);
        for task in background {
            task.stop().await;
        }
        sources.lock().await.stop_all().await;
        drop(sources);
        let mut complete = true;
        // The pipeline ends once every sender is gone (the API's with the server); the
        // publisher once the pipeline is done.
        if !publisher.wait(Duration::from_secs(25)).await {
            tracing::warn!("the pipeline did not drain in 25 s; exiting without it");
            complete = false;
        }
        if let Some((mut relay, stop)) = relay {
            let _ = stop.send(true);
            if !relay.wait(Duration::from_secs(10)).await {
                tracing::warn!("jetstream relay did not finish; the outbox keeps the rest");
                complete = false;
            }
        }
        // Whatever did not drain, every task is told to stop.
        let stopped = supervisor.shutdown(Duration::from_secs(5)).await;
        complete && stopped
    }
}

/// Relay consumers of the outbox other than the current relay's (a stream renamed, NATS
/// turned off) will never acknowledge again: forgotten, so they do not hold the lag up.
fn forget_old_relays(store: &Mutex<Store>, current_stream: Option<&str>) {
    let current = current_stream.map(relay_consumer);
    let Ok(mut store) = store.lock() else {
        return;
    };
    let names = match store.consumers() {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(error = %e, "listing outbox consumers failed");
            return;
        }
    };
    for name in names {
        if name.starts_with(RELAY_CONSUMER_PREFIX) && Some(&name) != current.as_ref() {
            match store.remove_consumer(&name) {
                Ok(_) => {
                    tracing::info!(consumer = %name, "forgot the outbox position of a relay no longer configured")
                }
                Err(e) => {
                    tracing::warn!(consumer = %name, error = %e, "forgetting an old relay consumer failed")
                }
            }
        }
    }
}

/// Turns a library result into a task result.
trait MapErrTask {
    fn map_err_task(self) -> futures_util::future::BoxFuture<'static, Result<(), TaskError>>;
}

impl<F, E> MapErrTask for F
where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    fn map_err_task(self) -> futures_util::future::BoxFuture<'static, Result<(), TaskError>> {
        Box::pin(async move { self.await.map_err(TaskError::new) })
    }
}

/// Records from the API go through a small task into the pipeline's channel.
fn forward_ingest(
    input: mpsc::Sender<Input>,
    metrics: &AgentMetrics,
    supervisor: &Supervisor,
) -> mpsc::Sender<IngestedRecord> {
    // Small: records wait in the pipeline's channel already; this only hands them over.
    let (tx, rx) = mpsc::channel::<IngestedRecord>(64);
    let counters = crate::batch::SourceCounters::new(metrics, INGEST_SOURCE);
    let state = Arc::new(Mutex::new(Some(rx)));
    supervisor.spawn("ingest", OnFailure::StopAgent, move |_| {
        let rx = state.lock().ok().and_then(|mut r| r.take());
        let (input, counters) = (input.clone(), counters.clone());
        async move {
            let Some(mut rx) = rx else {
                return Err(TaskError::new("the ingest forwarder cannot be restarted"));
            };
            while let Some(rec) = rx.recv().await {
                counters.count(rec.message.len());
                if input.send(Input::Record(rec)).await.is_err() {
                    break;
                }
            }
            Ok(())
        }
    });
    tx
}

/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// A relay with failures and no progress for this long is reported degraded.
const RELAY_DEGRADED_AFTER: Duration = Duration::from_secs(5);

/// Every second: the bus gauges and the relay's health. Every minute: retention by the time
/// events were stored, never deleting events the JetStream relay has not forwarded. A failing
/// step is logged and tried again at its next turn; it never stops the others.
async fn housekeeping(parts: Housekeeping, cancel: CancellationToken) -> Result<(), TaskError> {
    let Housekeeping {
        retention,
        store,
        bus,
        relay,
        metrics,
        clock,
        supervisor,
    } = parts;
    let max_age_ms = retention.max_age.as_millis_i64();
    let max_events = retention.max_events;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut forwarded, mut failures, mut position) = (0, 0, 0);
    let mut last_relay_progress = tokio::time::Instant::now();
    let mut last_retention = tokio::time::Instant::now();
    let mut lag_failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return Ok(()),
        }
        let relay_position = relay.as_ref().map(|r| r.position.load(Ordering::Relaxed));
        if let Some(r) = &relay {
            let now = r.forwarded.load(Ordering::Relaxed);
            metrics.bus_forwarded.inc_by(now.saturating_sub(forwarded));
            forwarded = now;
            let now_failures = r.failures.load(Ordering::Relaxed);
            metrics
                .bus_forward_failures
                .inc_by(now_failures.saturating_sub(failures));
            let now_position = r.position.load(Ordering::Relaxed);
            if now_failures == failures || now_position > position {
                last_relay_progress = tokio::time::Instant::now();
            }
            supervisor.set_degraded(
                "relay",
                last_relay_progress.elapsed() >= RELAY_DEGRADED_AFTER,
            );
            failures = now_failures;
            position = now_position;
        }
        // The slowest durable consumer (the relay's included) against the head.
        match bus.lag().await {
            Ok(lag) => {
                metrics.bus_lag.set(lag);
                lag_failing = false;
            }
            Err(e) if !lag_failing => {
                tracing::warn!(error = %e, "reading the bus lag failed");
                lag_failing = true;
            }
            Err(_) => {}
        }
        if last_retention.elapsed() < RETENTION_EVERY {
            continue;
        }
        last_retention = tokio::time::Instant::now();
        let store = Arc::clone(&store);
        let now = clock.now_ms();
        let deleted = tokio::task::spawn_blocking(move || {
            let mut s = store
                .lock()
                .map_err(|_| "store lock poisoned".to_string())?;
            let events = s
                .apply_retention(now, Some(max_age_ms), Some(max_events), relay_position)
                .map_err(|e| e.to_string())?;
            // Incidents that ended age out like events; open ones stay.
            let incidents = s
                .prune_incidents(now, max_age_ms)
                .map_err(|e| e.to_string())?;
            Ok::<usize, String>(events + incidents)
        })
        .instrument(tracing::info_span!("store.retention"))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match deleted {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "retention removed old events and ended incidents"
            ),
            Err(e) => tracing::error!(error = %e, "retention failed; trying again in a minute"),
        }
    }
}

/// What housekeeping works on.
#[derive(Clone)]
struct Housekeeping {
    retention: RetentionConfig,
    store: Arc<Mutex<Store>>,
    bus: EmbeddedBus,
    relay: Option<Arc<RelayStatus>>,
    metrics: Arc<AgentMetrics>,
    clock: Arc<dyn Clock>,
    supervisor: Supervisor,
}
