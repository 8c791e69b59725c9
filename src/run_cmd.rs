//! `opsloop run`: the long-running agent. Wires configuration, store, bus, pipeline, sources
//! and the HTTP API together; the libraries do the work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use opsloop_bus::jetstream::JetStreamOptions;
use opsloop_bus::relay::{RelayStatus, relay_to_jetstream};
use opsloop_bus::{EmbeddedBus, EventBus};
use opsloop_core::Event;
use opsloop_core::config::{Config, NatsConfig, SourceConfig};
use opsloop_core::ingest::IngestedRecord;
use opsloop_logs::anomaly::AnomalyConfig;
use opsloop_logs::miner::MinerConfig;
use opsloop_logs::parse::Format;
use opsloop_logs::pipeline::{LogPipeline, SourceSpec};
use opsloop_logs::rules::{BUILTIN_RULES, RuleSet, load_rules, parse_rule_file};
use opsloop_logs::tail::{FileTailer, StartAt, TailCheckpoint};
use opsloop_server::{AgentMetrics, ApiState, RuleInfo, RuleLabel, SourceLabel};
use opsloop_store::{Store, StoredTemplate};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

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
}

/// What sources send the pipeline thread.
enum Input {
    Line {
        source: Arc<str>,
        text: String,
    },
    Record(IngestedRecord),
    /// A reloaded, fully validated rule set.
    Rules(Box<RuleSet>),
}

/// Largest syslog frame accepted (RFC 5425 asks receivers to take at least 8 KiB).
const MAX_FRAME: usize = 64 * 1024;

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
    let problems = config.validate();
    if let Some(p) = problems.first() {
        bail!("{}: {}", p.path, p.message);
    }
    init_logging(&config.log.format, &config.log.level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(agent(config, args.config))
}

/// The agent's own logs: human-readable or JSON lines on stderr, `RUST_LOG` overriding the level.
fn init_logging(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn api_token(config: &Config) -> Result<Option<String>> {
    if let Ok(t) = std::env::var("OPSLOOP_API_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(Some(t.trim().to_string()));
    }
    if let Some(t) = &config.api.token {
        return Ok(Some(t.clone()));
    }
    if let Some(path) = &config.api.token_file {
        let t = std::fs::read_to_string(path)
            .with_context(|| format!("api.token_file {}", path.display()))?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(None)
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

fn parse_format(name: &str) -> Option<Format> {
    if name == "auto" {
        None
    } else {
        name.parse().ok()
    }
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
    let mut pipeline = LogPipeline::new(
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

    // Sources feed one bounded channel: when the pipeline falls behind, TCP and HTTP senders
    // wait (backpressure) and UDP datagrams queue in the kernel.
    let (input_tx, mut input_rx) = mpsc::channel::<Input>(10_000);
    let (event_tx, mut event_rx) = mpsc::channel::<Vec<Event>>(1_000);

    let mut tasks = Vec::new();
    let mut file_threads = Vec::new();
    let stop_files = Arc::new(AtomicBool::new(false));
    for source in &config.sources {
        match source {
            SourceConfig::Syslog { name, udp, tcp } => {
                pipeline.add_source(
                    name,
                    SourceSpec {
                        format: Some(Format::Syslog),
                        multiline: Some(false),
                    },
                );
                let name: Arc<str> = Arc::from(name.as_str());
                if let Some(addr) = udp {
                    let socket = tokio::net::UdpSocket::bind(addr)
                        .await
                        .with_context(|| format!("syslog udp {addr}"))?;
                    tracing::info!(source = %name, addr = %socket.local_addr()?, "syslog listening on udp");
                    tasks.push(tokio::spawn(syslog_udp(
                        socket,
                        Arc::clone(&name),
                        input_tx.clone(),
                        Arc::clone(&metrics),
                    )));
                }
                if let Some(addr) = tcp {
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("syslog tcp {addr}"))?;
                    tracing::info!(source = %name, addr = %listener.local_addr()?, "syslog listening on tcp");
                    tasks.push(tokio::spawn(syslog_tcp(
                        listener,
                        Arc::clone(&name),
                        input_tx.clone(),
                        Arc::clone(&metrics),
                    )));
                }
            }
            SourceConfig::Stdin { name, parser } => {
                pipeline.add_source(
                    name,
                    SourceSpec {
                        format: parse_format(parser),
                        multiline: None,
                    },
                );
                tasks.push(tokio::spawn(stdin_lines(
                    Arc::from(name.as_str()),
                    input_tx.clone(),
                    Arc::clone(&metrics),
                )));
            }
            SourceConfig::File {
                name,
                include,
                exclude,
                parser,
                multiline,
                start_at,
            } => {
                pipeline.add_source(
                    name,
                    SourceSpec {
                        format: parse_format(parser),
                        multiline: match multiline.as_str() {
                            "on" => Some(true),
                            "off" => Some(false),
                            _ => None,
                        },
                    },
                );
                let key = format!("tail:{name}");
                let saved: Vec<TailCheckpoint> = store
                    .lock()
                    .ok()
                    .and_then(|s| s.checkpoint(&key).ok().flatten())
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or_default();
                let start = if start_at == "beginning" {
                    StartAt::Beginning
                } else {
                    StartAt::End
                };
                let tailer = FileTailer::new(include, exclude, start, &saved)
                    .with_context(|| format!("source {name}"))?;
                file_threads.push(spawn_tailer(
                    tailer,
                    Arc::from(name.as_str()),
                    key,
                    input_tx.clone(),
                    Arc::clone(&store),
                    Arc::clone(&metrics),
                    Arc::clone(&stop_files),
                )?);
            }
        }
    }

    // The pipeline thread: parsing, mining and rules are CPU work, off the async workers.
    let handle = tokio::runtime::Handle::current();
    let pipe_metrics = Arc::clone(&metrics);
    let pipe_store = Arc::clone(&store);
    let pipe_rules = Arc::clone(&rule_info);
    let pipeline_thread = std::thread::Builder::new()
        .name("opsloop-pipeline".into())
        .spawn(move || {
            let mut out = Vec::new();
            let mut last_save = std::time::Instant::now();
            loop {
                let next = handle.block_on(async {
                    tokio::time::timeout(Duration::from_millis(500), input_rx.recv()).await
                });
                match next {
                    Ok(Some(Input::Line { source, text })) => {
                        if pipeline.push_line(&source, &text, &mut out).parse_failed {
                            pipe_metrics
                                .parse_errors
                                .get_or_create(&SourceLabel {
                                    source: source.to_string(),
                                })
                                .inc();
                        }
                    }
                    Ok(Some(Input::Record(rec))) => pipeline.push_record(rec, &mut out),
                    Ok(Some(Input::Rules(rules))) => pipeline.replace_rules(*rules),
                    Ok(None) => {
                        pipeline.flush_all(&mut out);
                        publish_from_thread(&event_tx, &mut out, &pipe_metrics, &pipeline);
                        save_templates(&pipe_store, &pipeline);
                        break;
                    }
                    Err(_) => pipeline.flush_idle(Duration::from_millis(500), &mut out),
                }
                publish_from_thread(&event_tx, &mut out, &pipe_metrics, &pipeline);
                if last_save.elapsed() >= Duration::from_secs(5) {
                    save_templates(&pipe_store, &pipeline);
                    if let Ok(mut info) = pipe_rules.lock() {
                        *info = pipeline
                            .rule_hits()
                            .into_iter()
                            .map(|(r, hits)| RuleInfo {
                                id: r.spec.id.clone(),
                                severity: r.spec.severity.as_str().into(),
                                description: r.spec.description.clone(),
                                source: r.source.clone(),
                                hits,
                            })
                            .collect();
                    }
                    last_save = std::time::Instant::now();
                }
            }
        })?;

    // The publisher: events onto the bus (durable in the store once published).
    let pub_bus = bus.clone();
    let pub_metrics = Arc::clone(&metrics);
    let publisher = tokio::spawn(async move {
        while let Some(batch) = event_rx.recv().await {
            match pub_bus.publish(batch).await {
                Ok(n) => {
                    pub_metrics.events_published.inc_by(n as u64);
                }
                Err(e) => tracing::error!(error = %e, "publishing events failed"),
            }
        }
    });

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
        ingest: forward_ingest(input_tx.clone()),
        max_body_bytes: config.api.max_body_bytes as usize,
    };
    let reload = tokio::spawn(reload_loop(
        config.clone(),
        config_path,
        input_tx.clone(),
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
    stop_files.store(true, Ordering::Release);
    for t in file_threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = tokio::task::spawn_blocking(move || pipeline_thread.join()).await;
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
    options.token = match std::env::var("OPSLOOP_NATS_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
        _ => match &nats.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("bus.nats.token_file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        },
    };
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
        .await;
        if let Ok(Some(Ok(n))) = result
            && n > 0
        {
            tracing::info!(deleted = n, "retention removed old events");
        }
    }
}

/// Reloads the configuration on SIGHUP and when its file changes: validates it whole (rules
/// compiled included) and swaps the rules in; a bad file leaves the running configuration in
/// force, counted, logged and reported as an event. Sources, listen address and data directory
/// take effect on restart.
async fn reload_loop(
    mut current: Config,
    path: Option<PathBuf>,
    input: mpsc::Sender<Input>,
    bus: EmbeddedBus,
    metrics: Arc<AgentMetrics>,
) {
    let Some(path) = path else {
        return; // the embedded default has no file to reload
    };
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = modified(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        let why = tokio::select! {
            _ = signalled => "SIGHUP",
            _ = tick.tick() => {
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                "file change"
            }
        };
        let p = path.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<(Config, RuleSet)> {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let config =
                Config::from_yaml(&text).with_context(|| format!("config {}", p.display()))?;
            let rules = load_rules_of(&config)?;
            Ok((config, rules))
        })
        .await;
        match loaded {
            Ok(Ok((config, rules))) => {
                if input.send(Input::Rules(Box::new(rules))).await.is_err() {
                    return;
                }
                if config.sources != current.sources
                    || config.listen != current.listen
                    || config.data_dir != current.data_dir
                {
                    tracing::warn!("sources, listen and data_dir changes take effect on restart");
                }
                current = config;
                metrics.config_reloads.inc();
                tracing::info!(trigger = why, "configuration reloaded");
            }
            Ok(Err(e)) => {
                metrics.config_reload_failures.inc();
                let message = format!("{e:#}");
                tracing::error!(trigger = why, error = %message, "configuration reload rejected; keeping the running configuration");
                let event = Event::new(
                    opsloop_core::event::types::CONFIG_RELOAD_FAILED,
                    "/opsloop/agent",
                    Some(&path.display().to_string()),
                    opsloop_core::time::now_ms(),
                    serde_json::json!({"error": message, "trigger": why}),
                );
                if bus.publish(vec![event]).await.is_ok() {
                    metrics.events_published.inc();
                }
            }
            Err(e) => tracing::error!(error = %e, "configuration reload failed"),
        }
    }
}

/// A thread that polls a file source, sends its lines and persists its positions.
fn spawn_tailer(
    mut tailer: FileTailer,
    source: Arc<str>,
    key: String,
    tx: mpsc::Sender<Input>,
    store: Arc<Mutex<Store>>,
    metrics: Arc<AgentMetrics>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let save = move |tailer: &FileTailer| {
        let text = serde_json::to_string(&tailer.checkpoints()).unwrap_or_default();
        if let Ok(mut s) = store.lock()
            && let Err(e) = s.put_checkpoint(&key, &text, opsloop_core::time::now_ms())
        {
            tracing::error!(error = %e, "saving checkpoints failed");
        }
    };
    let thread = std::thread::Builder::new()
        .name(format!("opsloop-tail-{source}"))
        .spawn(move || {
            let mut last_save = std::time::Instant::now();
            while !stop.load(Ordering::Acquire) {
                let mut closed = false;
                tailer.poll(&mut |_, line| {
                    count_line(&metrics, &source, line.len() + 1);
                    let input = Input::Line {
                        source: Arc::clone(&source),
                        text: line.to_string(),
                    };
                    closed |= tx.blocking_send(input).is_err();
                });
                if closed {
                    break;
                }
                if last_save.elapsed() >= Duration::from_secs(1) {
                    save(&tailer);
                    last_save = std::time::Instant::now();
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            save(&tailer);
        })?;
    Ok(thread)
}

/// Records from the API go through a small task into the pipeline's channel.
fn forward_ingest(input: mpsc::Sender<Input>) -> mpsc::Sender<IngestedRecord> {
    let (tx, mut rx) = mpsc::channel::<IngestedRecord>(1_000);
    tokio::spawn(async move {
        while let Some(rec) = rx.recv().await {
            if input.send(Input::Record(rec)).await.is_err() {
                break;
            }
        }
    });
    tx
}

fn publish_from_thread(
    tx: &mpsc::Sender<Vec<Event>>,
    out: &mut Vec<Event>,
    metrics: &AgentMetrics,
    pipeline: &LogPipeline,
) {
    if out.is_empty() {
        return;
    }
    for e in out
        .iter()
        .filter(|e| e.kind == opsloop_core::event::types::LOG_RULE_MATCHED)
    {
        if let Some(rule) = &e.subject {
            metrics
                .rule_hits
                .get_or_create(&RuleLabel { rule: rule.clone() })
                .inc();
        }
    }
    metrics.templates.set(pipeline.template_count() as i64);
    let _ = tx.blocking_send(std::mem::take(out));
}

fn save_templates(store: &Mutex<Store>, pipeline: &LogPipeline) {
    let templates: Vec<StoredTemplate> = pipeline
        .templates()
        .into_iter()
        .map(|(id, template, count)| StoredTemplate {
            id: id.to_string(),
            template,
            count,
            first_seen_ms: None,
            last_seen_ms: None,
        })
        .collect();
    if let Ok(mut s) = store.lock()
        && let Err(e) = s.upsert_templates(&templates)
    {
        tracing::error!(error = %e, "saving templates failed");
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

/// Counts a received line and hands it to the pipeline; false once the pipeline is gone.
async fn send_line(
    tx: &mpsc::Sender<Input>,
    metrics: &AgentMetrics,
    source: &Arc<str>,
    raw: &[u8],
) -> bool {
    count_line(metrics, source, raw.len());
    let text = String::from_utf8_lossy(raw)
        .trim_end_matches(['\n', '\r', '\0'])
        .to_string();
    if text.is_empty() {
        return true;
    }
    tx.send(Input::Line {
        source: Arc::clone(source),
        text,
    })
    .await
    .is_ok()
}

fn count_line(metrics: &AgentMetrics, source: &str, bytes: usize) {
    let label = SourceLabel {
        source: source.to_string(),
    };
    metrics.lines_read.get_or_create(&label).inc();
    metrics
        .bytes_read
        .get_or_create(&label)
        .inc_by(bytes as u64);
}

async fn syslog_udp(
    socket: tokio::net::UdpSocket,
    source: Arc<str>,
    tx: mpsc::Sender<Input>,
    metrics: Arc<AgentMetrics>,
) {
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        let Ok((n, _)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if !send_line(&tx, &metrics, &source, &buf[..n]).await {
            return;
        }
    }
}

async fn syslog_tcp(
    listener: tokio::net::TcpListener,
    source: Arc<str>,
    tx: mpsc::Sender<Input>,
    metrics: Arc<AgentMetrics>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (source, tx, metrics) = (Arc::clone(&source), tx.clone(), Arc::clone(&metrics));
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            let mut frame = Vec::new();
            loop {
                frame.clear();
                // RFC 6587: octet counting (`LEN SP MSG`) or newline framing, per frame.
                let first = match reader.fill_buf().await {
                    Ok([]) | Err(_) => return,
                    Ok(b) => b[0],
                };
                if first.is_ascii_digit() {
                    let mut len_bytes = Vec::new();
                    if reader.read_until(b' ', &mut len_bytes).await.is_err() {
                        return;
                    }
                    let len: usize = match std::str::from_utf8(&len_bytes)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                    {
                        Some(l) if l <= MAX_FRAME => l,
                        _ => return, // malformed framing: drop the connection, not the agent
                    };
                    frame.resize(len, 0);
                    if reader.read_exact(&mut frame).await.is_err() {
                        return;
                    }
                } else {
                    match reader.read_until(b'\n', &mut frame).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if frame.len() > MAX_FRAME {
                        frame.truncate(MAX_FRAME);
                    }
                }
                if !send_line(&tx, &metrics, &source, &frame).await {
                    return;
                }
            }
        });
    }
}

async fn stdin_lines(source: Arc<str>, tx: mpsc::Sender<Input>, metrics: Arc<AgentMetrics>) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(text)) = lines.next_line().await {
        count_line(&metrics, &source, text.len() + 1);
        if tx
            .send(Input::Line {
                source: Arc::clone(&source),
                text,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}
