//! `opsloop run`: the long-running agent. Wires configuration, store, bus, pipeline, sources
//! and the HTTP API together; the libraries do the work.

mod pipeline;
mod reload;
mod sources;
mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use opsloop_bus::EmbeddedBus;
use opsloop_bus::jetstream::JetStreamOptions;
use opsloop_bus::relay::{RelayStatus, relay_to_jetstream};
use opsloop_core::config::{Config, NatsConfig};
use opsloop_logs::anomaly::AnomalyConfig;
use opsloop_logs::miner::MinerConfig;
use opsloop_logs::pipeline::LogPipeline;
use opsloop_logs::rules::{BUILTIN_RULES, RuleSet, load_rules, parse_rule_file};
use opsloop_server::{AgentMetrics, ApiState, RuleInfo};
use opsloop_store::Store;
use tokio::sync::mpsc;
use tracing::Instrument;

use self::pipeline::{OUTBOUND_CAPACITY, Outbound, publish, spawn_pipeline};
use self::reload::reload_loop;
use self::sources::{INPUT_CAPACITY, Input, Sources, forward_ingest};
use crate::exit;

/// Flags of `opsloop run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Configuration file (default: the embedded default, see `opsloop config default`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// HTTP API address, overriding the configuration's `listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Data directory, overriding the configuration's `data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The agent's logs on stderr: `text` or `json` lines, overriding `log.format`.
    #[arg(long, value_enum)]
    output: Option<crate::Output>,
}

impl RunArgs {
    /// How errors before start are printed.
    pub fn output(&self) -> crate::Output {
        self.output.unwrap_or(crate::Output::Text)
    }
}

/// Runs `opsloop run`.
pub fn run(args: RunArgs) -> Result<u8> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_yaml(&text).with_context(|| format!("config {}", path.display()))?
        }
        None => {
            eprintln!(
                "opsloop: no --config given: running the embedded default (`opsloop config default` prints it)"
            );
            Config::embedded_default()?
        }
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    match args.output {
        Some(crate::Output::Json) => config.log.format = "json".into(),
        Some(crate::Output::Text) => config.log.format = "human".into(),
        None => {}
    }
    let problems = config.validate();
    if let Some(p) = problems.first() {
        bail!("{}: {}", p.path, p.message);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut telemetry = {
        let _inside = runtime.enter();
        telemetry::init(&config.log, &config.traces)
    };
    let result = runtime.block_on(agent(config, args.config));
    // Before the runtime goes: the exporter flushes on it.
    telemetry.shutdown();
    result
}

fn api_token(config: &Config) -> Result<Option<String>> {
    secret(
        "OPSLOOP_API_TOKEN",
        config.api.token.as_deref(),
        config.api.token_file.as_deref(),
        "api.token_file",
    )
}

/// A secret from the environment variable `env` (when set and not blank), else `inline`, else
/// the file `file` (the config field `field`), trimmed. Never logged.
fn secret(
    env: &str,
    inline: Option<&str>,
    file: Option<&std::path::Path>,
    field: &str,
) -> Result<Option<String>> {
    if let Ok(t) = std::env::var(env)
        && !t.trim().is_empty()
    {
        return Ok(Some(t.trim().to_string()));
    }
    if let Some(t) = inline {
        return Ok(Some(t.to_string()));
    }
    match file {
        Some(path) => {
            let t = std::fs::read_to_string(path)
                .with_context(|| format!("{field} {}", path.display()))?;
            Ok(Some(t.trim().to_string()))
        }
        None => Ok(None),
    }
}

fn load_rules_of(config: &Config) -> Result<RuleSet> {
    let mut files = Vec::new();
    if config.rules.builtin {
        files.push((
            "builtin".to_string(),
            parse_rule_file("builtin", BUILTIN_RULES)?,
        ));
    }
    for p in &config.rules.paths {
        files.extend(load_rules(p)?);
    }
    Ok(RuleSet::compile(&files)?)
}

async fn agent(config: Config, config_path: Option<PathBuf>) -> Result<u8> {
    let listen: SocketAddr = config
        .listen
        .parse()
        .with_context(|| format!("listen {:?}", config.listen))?;
    let token = api_token(&config)?;
    if token.is_none() && !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen} without an API token: set OPSLOOP_API_TOKEN, api.token or api.token_file, or listen on loopback"
        );
    }
    let store = Store::open(&config.data_dir)?;
    let store = Arc::new(Mutex::new(store));
    let bus = EmbeddedBus::new(Arc::clone(&store))?;
    let metrics = Arc::new(AgentMetrics::default());
    let rules = load_rules_of(&config)?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let pipeline = LogPipeline::new(
        rules,
        MinerConfig {
            max_templates: config.miner.max_templates,
            ..MinerConfig::default()
        },
        AnomalyConfig {
            warmup_records: config.anomaly.warmup_records,
            ..AnomalyConfig::default()
        },
        &format!("/opsloop/agent/{host}"),
    );
    let rule_info: Arc<Mutex<Vec<RuleInfo>>> = Arc::new(Mutex::new(Vec::new()));

    // Sources feed one bounded channel into the pipeline thread, which feeds the publisher.
    let (input_tx, input_rx) = mpsc::channel::<Input>(INPUT_CAPACITY);
    let (outbound_tx, outbound_rx) = mpsc::channel::<Outbound>(OUTBOUND_CAPACITY);
    let pipeline_thread = spawn_pipeline(
        pipeline,
        input_rx,
        outbound_tx,
        Arc::clone(&store),
        Arc::clone(&metrics),
        Arc::clone(&rule_info),
    )?;
    let publisher = tokio::spawn(publish(outbound_rx, bus.clone(), Arc::clone(&metrics)));
    let mut sources = Sources::new(input_tx.clone(), Arc::clone(&store), Arc::clone(&metrics));
    let (_, errors) = sources.apply(&config.sources).await;
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    let sources = Arc::new(tokio::sync::Mutex::new(sources));

    // With the JetStream bus, a relay forwards the outbox to the stream.
    let (relay_stop, relay_stopped) = tokio::sync::watch::channel(false);
    let relay_status = Arc::new(RelayStatus::default());
    let relay = match (config.bus.kind.as_str(), &config.bus.nats) {
        ("nats", Some(nats)) => Some(tokio::spawn(relay_to_jetstream(
            bus.clone(),
            jetstream_options(nats)?,
            Arc::clone(&relay_status),
            relay_stopped,
        ))),
        _ => None,
    };
    let housekeeping = tokio::spawn(housekeeping(
        config.store.retention.clone(),
        Arc::clone(&store),
        bus.clone(),
        relay.is_some().then(|| Arc::clone(&relay_status)),
        Arc::clone(&metrics),
    ));

    let ready = Arc::new(AtomicBool::new(false));
    let rules_for_api = Arc::clone(&rule_info);
    let state = ApiState {
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        ready: Arc::clone(&ready),
        token: token.map(Arc::from),
        rules: Arc::new(move || rules_for_api.lock().map(|r| r.clone()).unwrap_or_default()),
        ingest: forward_ingest(input_tx.clone(), &metrics),
        max_body_bytes: config.api.max_body_bytes as usize,
    };
    let reload = tokio::spawn(reload_loop(
        config.clone(),
        config_path,
        input_tx.clone(),
        Arc::clone(&sources),
        bus.clone(),
        Arc::clone(&metrics),
    ));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "API listening");
    drop(input_tx);
    ready.store(true, Ordering::Release);
    let server = axum::serve(listener, opsloop_server::router(state))
        .with_graceful_shutdown(shutdown_signal());
    server.await.context("serving the API")?;

    // Drain: stop sources, let the pipeline finish what it holds, publish, then exit.
    tracing::info!("shutting down: draining the pipeline");
    housekeeping.abort();
    reload.abort();
    let _ = reload.await;
    sources.lock().await.stop_all().await;
    drop(sources);
    let drained = tokio::task::spawn_blocking(move || pipeline_thread.join());
    if tokio::time::timeout(Duration::from_secs(15), drained)
        .await
        .is_err()
    {
        tracing::warn!("the pipeline did not drain in 15 s; exiting without it");
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), publisher).await;
    if let Some(relay) = relay {
        // The relay forwards what is left for a few seconds; the rest waits in the outbox.
        let _ = relay_stop.send(true);
        match tokio::time::timeout(Duration::from_secs(10), relay).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "jetstream relay failed"),
            Err(_) => tracing::warn!("jetstream relay did not finish; the outbox keeps the rest"),
            _ => {}
        }
    }
    Ok(exit::OK)
}

/// How to reach JetStream, from the config; the token from `OPSLOOP_NATS_TOKEN` or a file.
fn jetstream_options(nats: &NatsConfig) -> Result<JetStreamOptions> {
    let mut options = JetStreamOptions::new(&nats.url, &nats.stream);
    options.max_age = opsloop_core::time::parse_duration(&nats.max_age)
        .map_err(|e| anyhow::anyhow!("bus.nats.max_age: {e}"))?;
    options.duplicate_window = opsloop_core::time::parse_duration(&nats.duplicate_window)
        .map_err(|e| anyhow::anyhow!("bus.nats.duplicate_window: {e}"))?;
    options.replicas = nats.replicas;
    options.token = secret(
        "OPSLOOP_NATS_TOKEN",
        None,
        nats.token_file.as_deref(),
        "bus.nats.token_file",
    )?;
    Ok(options)
}

/// Every second: the bus gauges. Every minute: retention, which never deletes events the
/// JetStream relay has not forwarded.
async fn housekeeping(
    retention: opsloop_core::config::RetentionConfig,
    store: Arc<Mutex<Store>>,
    bus: EmbeddedBus,
    relay: Option<Arc<RelayStatus>>,
    metrics: Arc<AgentMetrics>,
) {
    let max_age_ms = opsloop_core::time::parse_duration(&retention.max_age)
        .map(|d| d.as_millis() as i64)
        .ok();
    let max_events = retention.max_events;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut forwarded, mut failures) = (0, 0);
    for n in 0u64.. {
        tick.tick().await;
        let position = relay.as_ref().map(|r| r.position.load(Ordering::Relaxed));
        if let Some(r) = &relay {
            let now = r.forwarded.load(Ordering::Relaxed);
            metrics.bus_forwarded.inc_by(now.saturating_sub(forwarded));
            forwarded = now;
            let now = r.failures.load(Ordering::Relaxed);
            metrics
                .bus_forward_failures
                .inc_by(now.saturating_sub(failures));
            failures = now;
        }
        metrics
            .bus_lag
            .set(position.map_or(0, |p| (bus.head() - p).max(0)));
        if n % 60 != 59 {
            continue;
        }
        let store = Arc::clone(&store);
        let result = tokio::task::spawn_blocking(move || {
            store.lock().ok().map(|mut s| {
                s.apply_retention(
                    opsloop_core::time::now_ms(),
                    max_age_ms,
                    Some(max_events),
                    position,
                )
            })
        })
        .instrument(tracing::info_span!("store.retention"))
        .await;
        if let Ok(Some(Ok(n))) = result
            && n > 0
        {
            tracing::info!(deleted = n, "retention removed old events");
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    // A second signal ends the process at once.
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
}
