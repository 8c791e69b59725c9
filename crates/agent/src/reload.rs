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

use opsloop_core::Event;
use opsloop_core::config::{Config, RedactConfig};
use opsloop_logs::redact::Redactor;
use opsloop_logs::rules::RuleSet;
use opsloop_metrics::AgentMetrics;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch::Input;
use crate::sources::Sources;
use crate::supervisor::TaskError;

/// What other parts of the binary (the heal loop's playbooks) read from the same file on a
/// reload: given the file, it checks its part and returns how to apply it, or why the file is
/// rejected (the whole reload is then rejected, nothing changes).
pub type ReloadHook = Arc<dyn Fn(&Path) -> Result<Box<dyn FnOnce() + Send>, String> + Send + Sync>;

/// How often the file's modification time is checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// What reloads change.
pub struct ReloadTarget {
    /// The configuration in force.
    pub current: tokio::sync::Mutex<Config>,
    /// The file to read.
    pub path: PathBuf,
    /// The pipeline's channel (rules, events).
    pub input: mpsc::Sender<Input>,
    /// The running sources.
    pub sources: Arc<tokio::sync::Mutex<Sources>>,
    /// Counters.
    pub metrics: Arc<AgentMetrics>,
    /// The `source` of the events it reports.
    pub event_source: String,
    /// The time of those events.
    pub clock: Arc<dyn opsloop_core::time::Clock>,
    /// Checks and applies the parts of the file the agent does not own.
    pub hook: Option<ReloadHook>,
}

/// A configuration and what it names, loaded and checked: what `run` would use.
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Its rules (built-in and files), compiled.
    pub rules: RuleSet,
    /// Its secret redaction.
    pub redactor: Redactor,
}

/// The redaction `config` asks for.
pub fn redactor_of(config: &RedactConfig) -> Result<Redactor, String> {
    if !config.enabled {
        return Ok(Redactor::disabled());
    }
    let extra: Vec<(&str, &str)> = config
        .patterns
        .iter()
        .map(|p| (p.name.as_str(), p.regex.as_str()))
        .collect();
    Redactor::new(&extra).map_err(|e| format!("redact.patterns: {e}"))
}

/// Everything `config` names, loaded: rules and redaction.
pub fn load_parts(config: Config) -> Result<Loaded, String> {
    let rules =
        RuleSet::load(config.rules.builtin, &config.rules.paths).map_err(|e| e.to_string())?;
    let redactor = redactor_of(&config.redact)?;
    Ok(Loaded {
        config,
        rules,
        redactor,
    })
}

/// Loads a configuration file and everything it names.
pub fn load_config(path: &Path) -> Result<Loaded, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let config = Config::from_yaml(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
    load_parts(config)
}

/// Watches the file and applies reloads until cancelled.
pub async fn reload_loop(
    target: Arc<ReloadTarget>,
    cancel: CancellationToken,
) -> Result<(), TaskError> {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = {
        let config = target.current.lock().await;
        watched_stamp(&target.path, &config)
    };
    let mut tick = tokio::time::interval(CHECK_EVERY);
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
                let now = {
                    let config = target.current.lock().await;
                    watched_stamp(&target.path, &config)
                };
                if now == seen {
                    continue;
                }
                seen = now;
                "file change"
            }
            _ = cancel.cancelled() => return Ok(()),
        };
        let span = tracing::info_span!("config.reload", trigger = why);
        let Some(failure) = reload_once(&target, why).instrument(span).await else {
            return Ok(()); // the pipeline is gone: shutting down
        };
        if let Some(message) = failure {
            target.metrics.config_reload_failures.inc();
            tracing::error!(trigger = why, error = %message, "configuration reload rejected; keeping the running configuration");
            let event = Event::new(
                opsloop_core::event::types::CONFIG_RELOAD_FAILED,
                &target.event_source,
                Some(&target.path.display().to_string()),
                target.clock.now_ms(),
                serde_json::json!({"error": message, "trigger": why}),
            );
            if target
                .input
                .send(Input::Event(Box::new(event)))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    }
}

/// Most entries of one watched directory looked at (a directory of thousands of files is
/// still watched, by its own modification time and its first entries).
const MAX_WATCHED_ENTRIES: usize = 1024;

/// Modification times of the file and of what it names that a reload reads again: its rule
/// files and the playbook files or directories (string entries of `playbooks:`). A change in
/// any of them reloads, so editing a playbook file is picked up like editing the config.
fn watched_stamp(path: &Path, config: &Config) -> Vec<Option<std::time::SystemTime>> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let named = config.rules.paths.iter().map(PathBuf::as_path).chain(
        config
            .playbooks
            .iter()
            .filter_map(|entry| entry.as_str().map(Path::new)),
    );
    let mut stamp = vec![modified(path)];
    for p in named {
        stamp.push(modified(p));
        if let Ok(entries) = std::fs::read_dir(p) {
            let mut times: Vec<_> = entries
                .flatten()
                .take(MAX_WATCHED_ENTRIES)
                .map(|e| (e.file_name(), modified(&e.path())))
                .collect();
            times.sort();
            stamp.extend(times.into_iter().map(|(_, t)| t));
        }
    }
    stamp
}

/// One reload: read, validate, swap rules, reconcile sources. `None` when the pipeline is gone;
/// otherwise why the reload failed, if it did.
async fn reload_once(target: &ReloadTarget, why: &str) -> Option<Option<String>> {
    let p = target.path.clone();
    let loaded = tokio::task::spawn_blocking(move || load_config(&p))
        .await
        .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
    let Loaded {
        config,
        rules,
        redactor,
    } = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return Some(Some(e)),
    };
    // The other parts of the file are checked before anything changes too.
    let apply_hook = match &target.hook {
        Some(hook) => {
            let (hook, p) = (Arc::clone(hook), target.path.clone());
            match tokio::task::spawn_blocking(move || hook(&p)).await {
                Ok(Ok(apply)) => Some(apply),
                Ok(Err(e)) => return Some(Some(e)),
                Err(e) => return Some(Some(format!("reload task failed: {e}"))),
            }
        }
        None => None,
    };
    let swapped = target
        .input
        .send(Input::Rules(Box::new(rules)))
        .await
        .is_ok()
        && target
            .input
            .send(Input::Redactor(Box::new(redactor)))
            .await
            .is_ok();
    if !swapped {
        return None;
    }
    let (started, errors) = target.sources.lock().await.apply(&config.sources).await;
    let mut current = target.current.lock().await;
    if !started.is_empty() && config.sources != current.sources {
        tracing::info!(sources = ?started, "sources started or restarted");
    }
    if config.listen != current.listen
        || config.data_dir != current.data_dir
        || config.bus != current.bus
        || config.store != current.store
        || config.api != current.api
    {
        tracing::warn!("listen, data_dir, api, bus and store changes take effect on restart");
    }
    *current = config;
    if let Some(apply) = apply_hook {
        apply();
    }
    target.metrics.config_reloads.inc();
    tracing::info!(trigger = why, "configuration reloaded");
    // A source that could not start (an address in use) fails the reload too.
    Some(
        errors
            .into_iter()
            .map(|e| e.to_string())
            .reduce(|a, b| format!("{a}; {b}")),
    )
}
