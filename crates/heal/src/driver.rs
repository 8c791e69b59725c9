//! The loop as a task: [`spawn`] moves a [`HealEngine`] into a tokio task that takes events
//! from a bounded channel, runs each incident it opens in its own task and hands finished
//! incidents back to the engine. Playbooks are replaced in place ([`HealHandle::reload`]),
//! keeping the state of playbooks that keep their name. This is how the agent wires the
//! loop: every bus event goes to [`HealHandle::send`].

use std::sync::Arc;

use opsloop_core::Event;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::action::ActionRunner;
use crate::engine::{Decision, HealEngine};
use crate::incident::Incident;
use crate::playbook::PlaybookSet;

/// Events queued before [`HealHandle::send`] waits.
pub const EVENT_QUEUE: usize = 4096;

enum Input {
    Event(Box<Event>),
    Reload(PlaybookSet),
}

/// The sending side of a running loop. Dropping every handle stops the loop once the
/// incidents in flight have finished.
#[derive(Clone)]
pub struct HealHandle {
    tx: mpsc::Sender<Input>,
}

/// The loop has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the heal loop has stopped")]
pub struct Stopped;

impl HealHandle {
    /// Queues an event (waits while the queue is full: backpressure, never a drop).
    pub async fn send(&self, event: Event) -> Result<(), Stopped> {
        self.tx
            .send(Input::Event(Box::new(event)))
            .await
            .map_err(|_| Stopped)
    }

    /// Replaces the playbooks (validated already); state of same-named playbooks is kept.
    pub async fn reload(&self, set: PlaybookSet) -> Result<(), Stopped> {
        self.tx.send(Input::Reload(set)).await.map_err(|_| Stopped)
    }
}

/// Starts the loop on the current tokio runtime.
pub fn spawn(engine: HealEngine, runner: Arc<dyn ActionRunner>) -> (HealHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let task = tokio::spawn(drive(engine, runner, rx));
    (HealHandle { tx }, task)
}

async fn drive(
    mut engine: HealEngine,
    runner: Arc<dyn ActionRunner>,
    mut rx: mpsc::Receiver<Input>,
) {
    let deps = engine.run_deps(runner);
    // Finished incidents come back here; at most the concurrency guardrail are in flight.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Incident>();
    let mut in_flight = 0usize;
    let mut open = true;
    while open || in_flight > 0 {
        tokio::select! {
            input = rx.recv(), if open => match input {
                Some(Input::Event(event)) => {
                    for d in engine.handle(&event) {
                        if let Decision::Remediate(plan) = d {
                            in_flight += 1;
                            let deps = deps.clone();
                            let done_tx = done_tx.clone();
                            tokio::spawn(async move {
                                let done = crate::run::run_incident(*plan, &deps).await;
                                let _ = done_tx.send(done);
                            });
                        }
                    }
                }
                Some(Input::Reload(set)) => engine.replace_playbooks(set),
                None => open = false,
            },
            Some(done) = done_rx.recv() => {
                in_flight = in_flight.saturating_sub(1);
                engine.finish(&done);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use opsloop_core::time::SystemClock;

    use super::*;
    use crate::action::RecordingRunner;
    use crate::engine::MemorySink;
    use crate::incident::{IncidentState, MemoryJournal};

    #[tokio::test]
    async fn the_loop_runs_incidents_once_and_stops_when_dropped() {
        let yaml =
            "name: p\ntrigger: { type: t }\nmode: enforce\nsteps: [ { exec: { command: [x] } } ]\n";
        let set = PlaybookSet::from_yaml(yaml, "t").unwrap_or_else(|e| panic!("{e}"));
        let journal = Arc::new(MemoryJournal::default());
        let engine = HealEngine::new(
            set.clone(),
            Arc::new(SystemClock),
            journal.clone(),
            Arc::new(MemorySink::default()),
            BTreeMap::new(),
        );
        let runner = Arc::new(RecordingRunner::default());
        let (handle, task) = spawn(engine, runner.clone());
        let e = Event::new("t", "/t", Some("s"), 0, serde_json::json!({}));
        for _ in 0..50 {
            handle
                .send(e.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        handle.reload(set).await.unwrap_or_else(|e| panic!("{e}"));
        // Cooldown state survived the reload: still one action.
        handle
            .send(e.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drop(handle);
        task.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(runner.count(), 1);
        let incidents = journal.incidents();
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].state, IncidentState::Resolved);
    }
}
