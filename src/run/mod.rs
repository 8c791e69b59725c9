//! `opsloop run`: the long-running agent. Reads the configuration, resolves secrets, starts
//! the [`Agent`] and serves the HTTP API over it until a signal or a fatal task failure; the
//! libraries do the work.

mod anomaly_jobs;
mod audit_jobs;
mod forecast_jobs;
mod heal;
mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use opsloop_agent::reload::{ReloadHook, load_config};
use opsloop_agent::{Agent, AgentOptions};
use opsloop_bus::jetstream::JetStreamOptions;
use opsloop_core::config::{BusKind, Config, LogFormat, NatsConfig};
use opsloop_core::time::SystemClock;
use opsloop_server::{AgentMetrics, ApiState, RuleInfo};

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
        // Everything `run` loads is checked before anything starts (rules included).
        Some(path) => load_config(path).map_err(anyhow::Error::msg)?.config,
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
        Some(crate::Output::Json) => config.log.format = LogFormat::Json,
        Some(crate::Output::Text) => config.log.format = LogFormat::Human,
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
    let result = runtime.block_on(serve(config, args.config));
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

/// Why the configuration's `hooks:` cannot be compiled, if they cannot.
pub(crate) fn hooks_problems(config: &Config) -> std::result::Result<(), String> {
    heal::hooks(&config.hooks)
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

/// Why the configuration's `forecasts:`, `metric_anomalies:` and `audits:` cannot run, per
/// section.
pub(crate) fn job_problems(config: &Config) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Err(e) = forecast_jobs::ForecastLoop::from_config(config) {
        out.push(("forecasts", format!("{e:#}")));
    }
    if let Err(e) = anomaly_jobs::AnomalyLoop::from_config(config) {
        out.push(("metric_anomalies", format!("{e:#}")));
    }
    if let Err(e) = audit_jobs::AuditLoop::from_config(config) {
        out.push(("audits", format!("{e:#}")));
    }
    out
}

/// The named tokens of `api.tokens`, each from its environment variable or file (never logged).
fn api_tokens(config: &Config) -> Result<Arc<[opsloop_server::ApiToken]>> {
    let mut out = Vec::new();
    for (i, t) in config.api.tokens.iter().enumerate() {
        let field = format!("api.tokens[{i}]");
        let secret = match (&t.token_env, &t.token_file) {
            (Some(var), _) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
                _ => bail!("{field}.token_env: {var} is not set or empty"),
            },
            (None, Some(path)) => secret_file(path, &format!("{field}.token_file"))?,
            (None, None) => bail!("{field}: token_env or token_file is required"),
        };
        out.push(opsloop_server::ApiToken::new(
            t.name.clone(),
            t.role,
            secret,
        ));
    }
    Ok(Arc::from(out))
}

/// A secret from the environment variable `env` (when set and not blank), else `inline`, else
/// the file `file` (the config field `field`), trimmed. An empty secret is an error: it would
/// pass as "a token is set" and protect nothing. Never logged.
pub(crate) fn secret(
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
        return match t.trim() {
            "" => bail!("{field}: the token is empty"),
            t => Ok(Some(t.to_string())),
        };
    }
    file.map(|path| secret_file(path, field)).transpose()
}

/// The secret in `path` (the config field `field`), trimmed; empty is an error.
pub(crate) fn secret_file(path: &std::path::Path, field: &str) -> Result<String> {
    let t = std::fs::read_to_string(path).with_context(|| format!("{field} {}", path.display()))?;
    match t.trim() {
        "" => bail!("{field} {}: the file is empty", path.display()),
        t => Ok(t.to_string()),
    }
}

/// How to reach JetStream, from the config; the token from `OPSLOOP_NATS_TOKEN` or a file.
fn jetstream_options(nats: &NatsConfig) -> Result<JetStreamOptions> {
    let mut options = JetStreamOptions::new(&nats.url, &nats.stream);
    options.max_age = nats.max_age.get();
    options.duplicate_window = nats.duplicate_window.get();
    options.replicas = nats.replicas;
    options.token = secret(
        "OPSLOOP_NATS_TOKEN",
        None,
        nats.token_file.as_deref(),
        "bus.nats.token_file",
    )?;
    Ok(options)
}

async fn serve(config: Config, config_path: Option<PathBuf>) -> Result<u8> {
    let listen: SocketAddr = config
        .listen
        .parse()
        .with_context(|| format!("listen {:?}", config.listen))?;
    let token = api_token(&config)?;
    let tokens = api_tokens(&config)?;
    if token.is_none() && tokens.is_empty() && !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen} without an API token: set OPSLOOP_API_TOKEN, api.token or api.token_file, or listen on loopback"
        );
    }
    let jetstream = match (config.bus.kind, &config.bus.nats) {
        (BusKind::Nats, Some(nats)) => Some(jetstream_options(nats)?),
        _ => None,
    };
    let api = config.api.clone();
    // Checked before anything starts: a bad playbook or job keeps the agent from starting.
    let playbooks = heal::playbooks(config_path.as_deref())?;
    let heal_loop = heal::LoopCell::default();
    let hooks = heal::hooks(&config.hooks)?;
    let forecasts = forecast_jobs::ForecastLoop::from_config(&config)?;
    let anomalies = anomaly_jobs::AnomalyLoop::from_config(&config)?;
    let audits = audit_jobs::AuditLoop::from_config(&config)?;
    let heal_metrics = Arc::new(heal::HealMetrics::default());
    let metrics = Arc::new(AgentMetrics::with_extra(|registry| {
        registry.register_collector(Box::new(Arc::clone(&heal_metrics)));
        forecasts.register(registry);
        anomalies.register(registry);
        audits.register(registry);
    }));
    let reload_hook = all_or_nothing(vec![
        heal::reload_hook(Arc::clone(&heal_loop)),
        forecasts.reload_hook(),
        anomalies.reload_hook(),
        audits.reload_hook(),
    ]);
    let agent = Agent::start(
        AgentOptions {
            config,
            config_path,
            clock: Arc::new(SystemClock),
            jetstream: jetstream.clone(),
            reload_hook: Some(reload_hook),
        },
        Arc::clone(&metrics),
    )
    .await?;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            agent.shutdown().await;
            return Err(e).with_context(|| format!("listen {listen}"));
        }
    };
    let heal = match heal::start(
        &agent,
        playbooks,
        hooks,
        &heal_loop,
        jetstream,
        heal_metrics,
    )
    .await
    {
        Ok(h) => h,
        Err(e) => {
            agent.shutdown().await;
            return Err(e.context("starting the self-healing loop"));
        }
    };
    let started = forecasts
        .start(&agent)
        .context("starting the forecast jobs")
        .and_then(|()| {
            anomalies
                .start(&agent)
                .context("starting the metric anomaly jobs")
        })
        .and_then(|()| audits.start(&agent).context("starting the audit jobs"));
    if let Err(e) = started {
        agent.shutdown().await;
        return Err(e);
    }
    let rules = Arc::clone(&agent.rules);
    let state = ApiState {
        store: Arc::clone(&agent.store),
        metrics,
        ready: agent.supervisor.ready_flag(),
        token: token.map(Arc::from),
        tokens,
        heal: Some(heal),
        protect_metrics: api.protect_metrics,
        views: opsloop_server::ReadModels {
            forecasts: Some(forecasts.view()),
            metric_anomalies: Some(anomalies.view()),
            audit_findings: Some(audits.view()),
        },
        rules: Arc::new(move || {
            rules
                .lock()
                .map(|r| {
                    r.iter()
                        .map(|r| RuleInfo {
                            id: r.id.clone(),
                            severity: r.severity.clone(),
                            description: r.description.clone(),
                            source: r.source.clone(),
                            hits: r.hits,
                        })
                        .collect()
                })
                .unwrap_or_default()
        }),
        ingest: agent.ingest.clone(),
        max_body_bytes: usize::try_from(api.max_body_bytes).unwrap_or(usize::MAX),
        max_records_per_request: api.max_records_per_request,
        max_record_bytes: api.max_record_bytes,
        max_concurrent_ingest: api.max_concurrent_ingest,
        settling: Default::default(),
    };
    tracing::info!(addr = %listener.local_addr()?, "API listening");
    agent.supervisor.set_started();
    let supervisor = agent.supervisor.clone();
    let stop = stop_signal(supervisor.clone());
    let server = axum::serve(listener, opsloop_server::router(state)).with_graceful_shutdown(stop);
    // The server ends on a signal, or when a task that stops the agent failed.
    server.await.context("serving the API")?;

    tracing::info!("shutting down: draining the pipeline");
    let complete = agent.shutdown().await;
    if let Some(reason) = supervisor.fatal_reason() {
        tracing::error!(error = %reason, "the agent stopped on a failure");
        return Ok(exit::AGENT_FAILED);
    }
    if !complete {
        tracing::warn!("shutdown did not complete in time");
    }
    Ok(exit::OK)
}

/// One reload hook over several: the file is checked by all of them first, and the changes
/// are committed only when every one accepts it (a bad section rejects the whole reload).
fn all_or_nothing(hooks: Vec<ReloadHook>) -> ReloadHook {
    Arc::new(move |path: &std::path::Path| {
        let mut commits = Vec::with_capacity(hooks.len());
        for hook in &hooks {
            commits.push(hook(path)?);
        }
        Ok(Box::new(move || {
            for commit in commits {
                commit();
            }
        }) as Box<dyn FnOnce() + Send>)
    })
}

/// Resolves on SIGINT/SIGTERM or when a task that stops the agent failed.
async fn stop_signal(supervisor: opsloop_agent::Supervisor) {
    tokio::select! {
        _ = shutdown_signal() => {}
        reason = supervisor.fatal() => {
            tracing::error!(error = %reason, "stopping the agent");
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
