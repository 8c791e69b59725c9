//! The forecast jobs (`forecasts:`) inside `opsloop run`: read from the configuration, reloaded with it, run
//! on the agent, their events on the agent's bus, their gauges in `/metrics` and their
//! results behind the API's read-only view. The jobs themselves (schedule, self-check,
//! breach windows, state) are `opsloop_forecast::jobs`; this module wires them.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use opsloop_agent::Agent;
use opsloop_agent::reload::ReloadHook;
use opsloop_agent::supervisor::OnFailure;
use opsloop_bus::EventBus;
use opsloop_core::config::Config;
use opsloop_core::event::Event;
use opsloop_core::time::{Clock, SystemClock};
use opsloop_forecast::jobs::{ForecastJobs, JobMetrics, check};
use opsloop_server::{ReadModel, Registry};

/// Events kept for a retry while the bus refuses them (beyond it the oldest are dropped and
/// logged: a bus down for hours must not grow memory).
const MAX_UNPUBLISHED: usize = 10_000;
/// The longest sleep between looks at the schedule (reloads and clock steps are seen within it).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The jobs of the configuration's `forecasts:`.
pub(super) struct ForecastLoop {
    jobs: Arc<ForecastJobs>,
    metrics: JobMetrics,
    state_dir: PathBuf,
}

impl ForecastLoop {
    /// The jobs of `config`, checked (an error names the job and field); nothing runs yet.
    pub(super) fn from_config(config: &Config) -> Result<Self> {
        let jobs = check(&config.forecasts).map_err(|e| anyhow!("{e}"))?;
        let metrics = JobMetrics::default();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let source = format!("{}/forecasts", opsloop_agent::agent::event_source());
        Ok(Self {
            jobs: Arc::new(ForecastJobs::new(jobs, clock, source, metrics.clone())),
            metrics,
            state_dir: config.data_dir.join("forecasts"),
        })
    }

    /// Registers the jobs' metric families on the agent's registry.
    pub(super) fn register(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// Checks the jobs of a reloaded configuration file; the returned commit swaps them in.
    pub(super) fn reload_hook(&self) -> ReloadHook {
        let jobs = Arc::clone(&self.jobs);
        Arc::new(move |path: &Path| {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let config =
                Config::from_yaml(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
            let new = check(&config.forecasts).map_err(|e| e.to_string())?;
            let jobs = Arc::clone(&jobs);
            Ok(Box::new(move || {
                jobs.replace(new);
                tracing::info!(jobs = ?jobs.names(), "forecast jobs reloaded");
            }) as Box<dyn FnOnce() + Send>)
        })
    }

    /// Starts the jobs on the agent.
    pub(super) fn start(&self, agent: &Agent) -> Result<()> {
        for problem in self.jobs.load_state(&self.state_dir) {
            tracing::warn!(problem = %problem, "forecast job state not loaded");
        }
        let jobs = Arc::clone(&self.jobs);
        let bus = agent.bus.clone();
        // Events the bus refused, retried before the next ones (kept across task restarts).
        let unpublished: Arc<tokio::sync::Mutex<VecDeque<Event>>> = Arc::default();
        let _task = agent
            .supervisor
            .spawn("forecasts", OnFailure::Restart, move |cancel| {
                let jobs = Arc::clone(&jobs);
                let bus = bus.clone();
                let unpublished = Arc::clone(&unpublished);
                async move {
                    // Each job runs on its own schedule, one task per run: a slow Prometheus
                    // holds only its own job (see `ForecastJobs::drive`).
                    let publish_events = |events: Vec<Event>| {
                        let bus = bus.clone();
                        let unpublished = Arc::clone(&unpublished);
                        async move {
                            let mut queue = unpublished.lock().await;
                            queue.extend(events);
                            publish(&bus, &mut queue).await;
                        }
                    };
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = jobs.drive(MAX_SLEEP, publish_events) => {}
                    }
                    Ok(())
                }
            });
        Ok(())
    }

    /// What `GET` on the loop's API path shows.
    pub(super) fn view(&self) -> Arc<dyn ReadModel> {
        Arc::new(JobsView(Arc::clone(&self.jobs)))
    }
}

/// Publishes `queue` on the bus, emptying it; what the bus refuses stays for the next try.
async fn publish(bus: &opsloop_bus::EmbeddedBus, queue: &mut VecDeque<Event>) {
    if queue.is_empty() {
        return;
    }
    let events: Arc<[Event]> = queue.iter().cloned().collect();
    match bus.publish(events).await {
        Ok(_) => queue.clear(),
        Err(e) => {
            tracing::error!(error = %e, pending = queue.len(), "forecast events not published; retrying");
            let over = queue.len().saturating_sub(MAX_UNPUBLISHED);
            if over > 0 {
                tracing::error!(
                    dropped = over,
                    "forecast events dropped: the bus refused them too long"
                );
                queue.drain(..over);
            }
        }
    }
}

/// The API's view of the jobs.
struct JobsView(Arc<ForecastJobs>);

impl ReadModel for JobsView {
    fn list(&self, _query: &BTreeMap<String, String>) -> serde_json::Value {
        self.0.list()
    }
    fn get(&self, name: &str) -> Option<serde_json::Value> {
        self.0.get(name)
    }
}
