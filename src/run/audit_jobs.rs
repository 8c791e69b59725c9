//! The manifest audit jobs (`audits:`) inside `opsloop run`: read from the configuration, reloaded with it, run
//! on the agent, their events on the agent's bus, their counters in `/metrics` and their
//! open findings behind the API's read-only view (`GET /api/v1/audit/findings`). The jobs
//! themselves (schedule, file watching, findings state) live in `opsloop_audit::jobs`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Result;
use opsloop_agent::Agent;
use opsloop_agent::reload::ReloadHook;
use opsloop_agent::supervisor::OnFailure;
use opsloop_audit::jobs::{self, AuditJob, DriveOptions, EventSink, Runner, View};
use opsloop_bus::{EmbeddedBus, EventBus};
use opsloop_core::config::Config;
use opsloop_core::event::Event;
use opsloop_core::time::SystemClock;
use opsloop_server::{Counter, ReadModel, Registry};
use tokio::sync::watch;

/// The jobs of the configuration's `audits:`.
pub(super) struct AuditLoop {
    /// The current job set; a reload sends the new one to the running loop.
    jobs: watch::Sender<Vec<AuditJob>>,
    /// Where each job keeps its open findings (`data_dir/audit`).
    state_dir: PathBuf,
    /// The agent's data directory: never audited nor watched (`paths: ["."]` includes it).
    data_dir: PathBuf,
    view: View,
    counters: Counters,
}

/// The loop's metric families.
#[derive(Clone, Default)]
struct Counters {
    findings: Counter,
    resolved: Counter,
    publish_failures: Counter,
}

impl AuditLoop {
    /// The jobs of `config`, checked (an error names the job and field); nothing runs yet.
    pub(super) fn from_config(config: &Config) -> Result<Self> {
        let jobs = jobs::check(&config.audits)?;
        Ok(Self {
            jobs: watch::Sender::new(jobs),
            state_dir: config.data_dir.join("audit"),
            data_dir: config.data_dir.clone(),
            view: View::default(),
            counters: Counters::default(),
        })
    }

    /// Registers the jobs' metric families on the agent's registry (its prefix makes them
    /// `opsloop_audit_*_total`).
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "audit_findings_reported",
            "Audit findings reported as new (io.opsloop.audit.finding events)",
            self.counters.findings.clone(),
        );
        registry.register(
            "audit_findings_resolved",
            "Audit findings reported gone (io.opsloop.audit.resolved events)",
            self.counters.resolved.clone(),
        );
        registry.register(
            "audit_publish_failures",
            "Audit runs whose events the bus refused (retried later)",
            self.counters.publish_failures.clone(),
        );
    }

    /// Checks the jobs of a reloaded configuration file; the returned commit swaps them in.
    pub(super) fn reload_hook(&self) -> ReloadHook {
        let sender = self.jobs.clone();
        Arc::new(move |path: &Path| {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let config =
                Config::from_yaml(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
            let jobs = jobs::check(&config.audits).map_err(|e| e.to_string())?;
            let sender = sender.clone();
            Ok(Box::new(move || {
                sender.send_replace(jobs);
            }) as Box<dyn FnOnce() + Send>)
        })
    }

    /// Starts the jobs on the agent: one task, restarted by the supervisor should it end
    /// (it reloads its state files then).
    pub(super) fn start(&self, agent: &Agent) -> Result<()> {
        let sender = self.jobs.clone();
        let state_dir = self.state_dir.clone();
        let data_dir = self.data_dir.clone();
        let view = self.view.clone();
        let sink: Arc<dyn EventSink> = Arc::new(BusSink {
            bus: agent.bus.clone(),
            counters: self.counters.clone(),
        });
        let source = opsloop_agent::agent::event_source();
        let _task = agent
            .supervisor
            .spawn("audit", OnFailure::Restart, move |cancel| {
                let jobs = sender.subscribe();
                let specs = jobs.borrow().clone();
                let state_dir = state_dir.clone();
                let data_dir = data_dir.clone();
                let source = source.clone();
                let view = view.clone();
                let sink = Arc::clone(&sink);
                async move {
                    // Reading the jobs' state files blocks.
                    let runner = tokio::task::spawn_blocking(move || {
                        Runner::new(specs, state_dir, &source, Arc::new(SystemClock))
                            .ignoring(data_dir)
                            .with_view(view)
                    })
                    .await
                    .map_err(opsloop_agent::supervisor::TaskError::new)?;
                    jobs::drive(
                        runner,
                        sink,
                        jobs,
                        DriveOptions::default(),
                        cancel.cancelled(),
                    )
                    .await;
                    Ok(())
                }
            });
        Ok(())
    }

    /// What `GET` on the loop's API path shows.
    pub(super) fn view(&self) -> Arc<dyn ReadModel> {
        Arc::new(FindingsView(self.view.clone()))
    }
}

/// The jobs' events on the agent's bus, counted by type.
struct BusSink {
    bus: EmbeddedBus,
    counters: Counters,
}

impl EventSink for BusSink {
    fn publish(
        &self,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let resolved = events.iter().filter(|e| e.kind == jobs::RESOLVED).count() as u64;
            let findings = events.len() as u64 - resolved;
            match self.bus.publish(Arc::from(events)).await {
                Ok(_) => {
                    self.counters.findings.inc_by(findings);
                    self.counters.resolved.inc_by(resolved);
                    Ok(())
                }
                Err(e) => {
                    self.counters.publish_failures.inc();
                    Err(e.to_string())
                }
            }
        })
    }
}

/// `GET /api/v1/audit/findings`: the open findings (`?severity=`, `?check=`, `?job=`) and
/// every job's status.
struct FindingsView(View);

impl ReadModel for FindingsView {
    fn list(&self, query: &BTreeMap<String, String>) -> serde_json::Value {
        self.0.list(query)
    }
    fn get(&self, _name: &str) -> Option<serde_json::Value> {
        None
    }
}
