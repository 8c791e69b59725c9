//! Configuration reload on SIGHUP and when the file changes.
//!
//! The new file is read, validated whole and its rules compiled before anything changes; a bad
//! file leaves the running configuration in force, counted, logged and reported as an event.
//! A good one swaps the rules atomically (the pipeline thread takes the new set between two
//! records) and applies the source list: unchanged sources keep running and their positions.
//! `listen`, `data_dir`, `bus` and `store` changes take effect on restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use opsloop_bus::{EmbeddedBus, EventBus};
use opsloop_core::Event;
use opsloop_core::config::Config;
use opsloop_logs::rules::RuleSet;
use opsloop_server::AgentMetrics;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::load_rules_of;
use super::sources::{Input, Sources};

/// Watches `path` (if any) and applies reloads until the task is aborted.
pub async fn reload_loop(
    mut current: Config,
    path: Option<PathBuf>,
    input: mpsc::Sender<Input>,
    sources: Arc<tokio::sync::Mutex<Sources>>,
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
        let span = tracing::info_span!("config.reload", trigger = why);
        let Some(failure) = reload_once(&path, why, &mut current, &input, &sources, &metrics)
            .instrument(span)
            .await
        else {
            return; // the pipeline is gone: shutting down
        };
        if let Some(message) = failure {
            metrics.config_reload_failures.inc();
            tracing::error!(trigger = why, error = %message, "configuration reload rejected; keeping the running configuration");
            let event = Event::new(
                opsloop_core::event::types::CONFIG_RELOAD_FAILED,
                "/opsloop/agent",
                Some(&path.display().to_string()),
                opsloop_core::time::now_ms(),
                serde_json::json!({"error": message, "trigger": why}),
            );
            if bus.publish(Arc::from([event])).await.is_ok() {
                metrics.events_published.inc();
            }
        }
    }
}

/// One reload: read, validate, swap rules, reconcile sources. `None` when the pipeline is gone;
/// otherwise why the reload failed, if it did.
async fn reload_once(
    path: &Path,
    why: &str,
    current: &mut Config,
    input: &mpsc::Sender<Input>,
    sources: &tokio::sync::Mutex<Sources>,
    metrics: &AgentMetrics,
) -> Option<Option<String>> {
    let p = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || -> Result<(Config, RuleSet)> {
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let config = Config::from_yaml(&text).with_context(|| format!("config {}", p.display()))?;
        let rules = load_rules_of(&config)?;
        Ok((config, rules))
    })
    .await
    .unwrap_or_else(|e| Err(anyhow::anyhow!("reload task failed: {e}")));
    let (config, rules) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return Some(Some(format!("{e:#}"))),
    };
    if input.send(Input::Rules(Box::new(rules))).await.is_err() {
        return None;
    }
    let (started, errors) = sources.lock().await.apply(&config.sources).await;
    if !started.is_empty() && config.sources != current.sources {
        tracing::info!(sources = ?started, "sources started or restarted");
    }
    if config.listen != current.listen
        || config.data_dir != current.data_dir
        || config.bus != current.bus
        || config.store != current.store
    {
        tracing::warn!("listen, data_dir, bus and store changes take effect on restart");
    }
    *current = config;
    metrics.config_reloads.inc();
    tracing::info!(trigger = why, "configuration reloaded");
    // A source that could not start (an address in use) fails the reload too.
    Some(
        errors
            .into_iter()
            .map(|e| format!("{e:#}"))
            .reduce(|a, b| format!("{a}; {b}")),
    )
}
