//! The metric anomaly jobs (`metric_anomalies:`) inside `opsloop run`: read from the
//! configuration, reloaded with it, run on the agent (one supervised task over
//! `opsloop_detect::jobs::JobSet`, state under `data_dir/metric-anomalies`), their events on
//! the agent's bus, their gauges in `/metrics` and their episodes behind the API's read-only
//! view.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use opsloop_agent::Agent;
use opsloop_agent::reload::ReloadHook;
use opsloop_agent::supervisor::OnFailure;
use opsloop_bus::EventBus;
use opsloop_core::config::Config;
use opsloop_core::time::SystemClock;
use opsloop_detect::jobs::{self, AnomalyJob, AnomalyView, JobMetrics, JobSet, Options};
use opsloop_server::{ReadModel, Registry};

/// How often the task looks for due jobs (each job runs on its own `every`).
const TICK: Duration = Duration::from_secs(1);

/// Jobs of a reloaded file waiting for the task to swap them in: one slot, the newest wins.
type ReloadSlot = Arc<Mutex<Option<Vec<AnomalyJob>>>>;

/// The jobs of the configuration's `metric_anomalies:`.
pub(super) struct AnomalyLoop {
    jobs: Vec<AnomalyJob>,
    state_dir: PathBuf,
    metrics: JobMetrics,
    view: AnomalyView,
    reload: ReloadSlot,
}

impl AnomalyLoop {
    /// The jobs of `config`, checked (an error names the job and field); nothing runs yet.
    pub(super) fn from_config(config: &Config) -> Result<Self> {
        let jobs = jobs::check(&config.metric_anomalies)?;
        Ok(Self {
            jobs,
            state_dir: config.data_dir.join("metric-anomalies"),
            metrics: JobMetrics::default(),
            view: AnomalyView::default(),
            reload: ReloadSlot::default(),
        })
    }

    /// Registers the jobs' metric families on the agent's registry.
    pub(super) fn register(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// Checks the jobs of a reloaded configuration file; the returned commit swaps them in
    /// (the task picks them up at its next tick).
    pub(super) fn reload_hook(&self) -> ReloadHook {
        let slot = Arc::clone(&self.reload);
        Arc::new(move |path: &Path| {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let config =
                Config::from_yaml(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
            let jobs = jobs::check(&config.metric_anomalies).map_err(|e| e.to_string())?;
            let slot = Arc::clone(&slot);
            Ok(Box::new(move || {
                if let Ok(mut pending) = slot.lock() {
                    *pending = Some(jobs);
                }
            }) as Box<dyn FnOnce() + Send>)
        })
    }

    /// Starts the jobs on the agent: their saved state is read now, then one supervised task
    /// runs them (restarted if it fails; a failing job is counted, never fatal).
    pub(super) fn start(&self, agent: &Agent) -> Result<()> {
        let set = JobSet::new(
            self.jobs.clone(),
            Options {
                state_dir: Some(self.state_dir.clone()),
                clock: Arc::new(SystemClock),
                source: opsloop_agent::agent::event_source(),
                metrics: self.metrics.clone(),
                view: self.view.clone(),
            },
        );
        for job in &self.jobs {
            if let Some(problem) = set.view().job(&job.name).and_then(|s| s.state_error) {
                tracing::warn!(job = %job.name, problem = %problem, "metric anomaly state not restored");
            }
        }
        // Outside the task: a restarted task goes on with the same jobs and state.
        let set = Arc::new(tokio::sync::Mutex::new(set));
        let bus = agent.bus.clone();
        let slot = Arc::clone(&self.reload);
        let _task = agent
            .supervisor
            .spawn("metric-anomalies", OnFailure::Restart, move |cancel| {
                let set = Arc::clone(&set);
                let bus = bus.clone();
                let slot = Arc::clone(&slot);
                async move {
                    let mut tick = tokio::time::interval(TICK);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        let stopping = tokio::select! {
                            _ = cancel.cancelled() => true,
                            _ = tick.tick() => false,
                        };
                        let mut set = set.lock().await;
                        if stopping {
                            save_at_shutdown(&mut set);
                            return Ok(());
                        }
                        let reloaded = slot.lock().ok().and_then(|mut s| s.take());
                        if let Some(jobs) = reloaded {
                            set.replace(jobs);
                            tracing::info!("metric anomaly jobs reloaded");
                        }
                        // Dropped at shutdown mid-query: the state is only changed once an
                        // answer is in, so nothing is half done.
                        let ran = tokio::select! {
                            _ = cancel.cancelled() => None,
                            ran = set.run_due() => Some(ran),
                        };
                        let Some(ran) = ran else {
                            save_at_shutdown(&mut set);
                            return Ok(());
                        };
                        if ran == 0 && !set.has_events() {
                            continue;
                        }
                        let events = set.take_events();
                        if !events.is_empty() {
                            let batch: Arc<[opsloop_core::Event]> = Arc::from(events.clone());
                            if let Err(e) = bus.publish(batch).await {
                                tracing::warn!(error = %e, "metric anomaly events not published yet: kept for the next run");
                                set.return_events(events);
                            }
                        }
                        // Saved after publishing: a crash before this replays the run from the
                        // previous state and regenerates its events (same fingerprints). Only
                        // when events were made, else every few minutes: runs may be every
                        // second and a state is tens of KiB per series.
                        let problems = tokio::task::block_in_place(|| set.save());
                        for problem in problems {
                            tracing::warn!(error = %problem, "metric anomaly state not saved");
                        }
                    }
                }
            });
        Ok(())
    }

    /// What `GET /api/v1/metric-anomalies` shows.
    pub(super) fn view(&self) -> Arc<dyn ReadModel> {
        Arc::new(EpisodesView(self.view.clone()))
    }
}

/// Saves every job's state as the task stops, so a restart replays nothing.
fn save_at_shutdown(set: &mut JobSet) {
    for problem in tokio::task::block_in_place(|| set.save_now()) {
        tracing::warn!(error = %problem, "metric anomaly state not saved at shutdown");
    }
}

/// The jobs' recent episodes and statistics, for the API.
struct EpisodesView(AnomalyView);

impl ReadModel for EpisodesView {
    fn list(&self, query: &BTreeMap<String, String>) -> serde_json::Value {
        self.0.list(query)
    }
    fn get(&self, id: &str) -> Option<serde_json::Value> {
        self.0.get(id)
    }
}
