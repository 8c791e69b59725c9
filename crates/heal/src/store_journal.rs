//! The engine's journal over the store ([`StoreJournal`]): decisions go to the hash-chained
//! audit trail, incidents to their table, where the API and `audit-log verify` read them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opsloop_core::time::{Clock, parse_iso8601};
use opsloop_store::Store;
use opsloop_store::incidents::StoredIncident;
use opsloop_store::trail::TrailAppend;

use crate::incident::{HealJournal, Incident, TrailEntry};

/// Runs a store write: on a multi-threaded runtime's worker it tells the runtime first, so
/// that other tasks move to other workers while SQLite commits (the store's lock is shared
/// with the API's queries and the bus).
fn blocking<T>(write: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(write)
        }
        _ => write(),
    }
}

/// Unix ms of an RFC 3339 time the engine wrote (0 if it is not one).
fn millis(rfc3339: &str) -> i64 {
    parse_iso8601(rfc3339.as_bytes()).map_or(0, |(ms, _)| ms)
}

/// The engine's journal over the store: decisions to the trail, incidents to their table.
/// A write that fails is logged (the engine goes on: refusing to act because the trail is
/// down would turn a storage problem into an outage).
pub struct StoreJournal {
    store: Arc<Mutex<Store>>,
    clock: Arc<dyn Clock>,
    failures: Arc<AtomicU64>,
}

impl StoreJournal {
    /// A journal over `store`, stamping trail records with `clock`; writes the store refused
    /// are counted in `failures`.
    pub fn new(
        store: Arc<Mutex<Store>>,
        clock: Arc<dyn Clock>,
        failures: Arc<AtomicU64>,
    ) -> StoreJournal {
        StoreJournal {
            store,
            clock,
            failures,
        }
    }
}

impl HealJournal for StoreJournal {
    fn record(&self, entry: &TrailEntry) {
        let data = match serde_json::to_value(entry) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "heal trail: entry not serialisable");
                return;
            }
        };
        let kind = data["kind"].as_str().unwrap_or("decision").to_string();
        let append = TrailAppend {
            kind: &kind,
            incident_id: entry.incident_id.as_deref(),
            actor: Some("opsloop"),
            data: &data,
        };
        let now = self.clock.now_ms();
        let result = blocking(|| {
            self.store
                .lock()
                .map_err(|_| "store lock poisoned".to_string())
                .and_then(|mut s| s.append_trail(&append, now).map_err(|e| e.to_string()))
        });
        if let Err(e) = result {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "heal trail: record not written");
        }
    }

    fn save_incident(&self, incident: &Incident) {
        let data = match serde_json::to_value(incident) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "heal incidents: not serialisable");
                return;
            }
        };
        let stored = StoredIncident {
            id: incident.id.clone(),
            playbook: incident.playbook.clone(),
            key: incident.key.clone(),
            target: Some(incident.target.clone()),
            state: incident.state.as_str().to_string(),
            mode: incident.mode.as_str().to_string(),
            created_ms: millis(&incident.created),
            updated_ms: millis(&incident.updated),
            data,
        };
        let result = blocking(|| {
            self.store
                .lock()
                .map_err(|_| "store lock poisoned".to_string())
                .and_then(|mut s| s.put_incident(&stored).map_err(|e| e.to_string()))
        });
        if let Err(e) = result {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, incident = %incident.id, "heal incidents: not saved");
        }
    }
}
