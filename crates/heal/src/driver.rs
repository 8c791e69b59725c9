//! The loop as a task: [`spawn`] moves a [`HealEngine`] into a tokio task that takes events
//! from a bounded channel, runs each incident it opens in its own task and hands finished
//! incidents back to the engine. Playbooks are replaced in place ([`HealHandle::reload`]),
//! keeping the state of playbooks that keep their name. This is how the agent wires the
//! loop: every bus event goes to [`HealHandle::send`].
//!
//! Before an enforced incident runs, [`spawn_with_lock`] takes its [`IncidentLock`] (agents
//! sharing a stream act once per key and cooldown); an incident whose lock is held elsewhere,
//! or cannot be asked for, is cancelled unacted (fail safe) and recorded as suppressed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opsloop_core::Event;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::action::ActionRunner;
use crate::engine::{Decision, HealEngine};
use crate::incident::Incident;
use crate::lock::{IncidentLock, NoLock};
use crate::playbook::PlaybookSet;

/// Trail reason: another agent holds the incident's lock.
pub const LOCKED_BY_ANOTHER_AGENT: &str = "locked_by_another_agent";
/// Trail reason: the lock could not be asked for; not acting is the safe side.
pub const LOCK_UNAVAILABLE: &str = "lock_unavailable";
/// How often the loop expires approvals and idle keys when no event does it.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Shortest lock: at least JetStream's acknowledgement wait (30 s by default). An event whose
/// agent froze before acknowledging it is redelivered to another agent after that wait; a
/// lock that had expired by then would let the redelivery act a second time.
const MIN_LOCK_TTL: Duration = Duration::from_secs(30);

/// What the lock decided, counted since the loop started.
#[derive(Debug, Default)]
pub struct LockCounts {
    /// Incidents whose lock this agent got (they ran).
    pub acquired: AtomicU64,
    /// Incidents left to the agent holding their lock.
    pub locked_elsewhere: AtomicU64,
    /// Incidents not run because the lock could not be asked for.
    pub unavailable: AtomicU64,
}

/// Events queued before [`HealHandle::send`] waits.
pub const EVENT_QUEUE: usize = 4096;

enum Input {
    Event(Box<Event>),
    Reload(PlaybookSet),
    /// Answered once every input before it was handled.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The sending side of a running loop. Dropping every handle stops the loop once the
/// incidents in flight have finished.
#[derive(Clone)]
pub struct HealHandle {
    tx: mpsc::Sender<Input>,
    locks: Arc<LockCounts>,
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

    /// Returns once the engine has handled every event sent before (its decisions made and
    /// recorded; runs may still be going on): what a consumer acknowledges after, so that
    /// an event queued but not yet handled when the agent stops is delivered again.
    pub async fn handled(&self) -> Result<(), Stopped> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Input::Barrier(tx))
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Replaces the playbooks (validated already); state of same-named playbooks is kept.
    pub async fn reload(&self, set: PlaybookSet) -> Result<(), Stopped> {
        self.tx.send(Input::Reload(set)).await.map_err(|_| Stopped)
    }

    /// The lock's decisions so far.
    pub fn lock_counts(&self) -> &LockCounts {
        &self.locks
    }
}

/// Starts the loop on the current tokio runtime, for one agent alone ([`NoLock`]).
pub fn spawn(engine: HealEngine, runner: Arc<dyn ActionRunner>) -> (HealHandle, JoinHandle<()>) {
    spawn_with_lock(engine, runner, Arc::new(NoLock))
}

/// Starts the loop; every enforced incident first takes its lock from `lock`.
pub fn spawn_with_lock(
    engine: HealEngine,
    runner: Arc<dyn ActionRunner>,
    lock: Arc<dyn IncidentLock>,
) -> (HealHandle, JoinHandle<()>) {
    spawn_counted(engine, runner, lock, Arc::default())
}

/// Starts the loop like [`spawn_with_lock`], counting the lock's decisions in `locks` (shared
/// with whoever exports them).
pub fn spawn_counted(
    engine: HealEngine,
    runner: Arc<dyn ActionRunner>,
    lock: Arc<dyn IncidentLock>,
    locks: Arc<LockCounts>,
) -> (HealHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let task = tokio::spawn(drive(engine, runner, lock, Arc::clone(&locks), rx));
    (HealHandle { tx, locks }, task)
}

/// Runs the plan if its lock is granted; otherwise cancels it unacted.
async fn run_locked(
    plan: crate::engine::RunPlan,
    deps: &crate::run::RunDeps,
    lock: &dyn IncidentLock,
    counts: &LockCounts,
) -> Incident {
    // The lock holds for the cooldown and at least as long as the run can take (a run longer
    // than the cooldown must not let another agent start the same remediation meanwhile).
    let cooldown = u64::try_from(plan.playbook.guardrails.cooldown_ms).unwrap_or(0);
    let ttl = Duration::from_millis(cooldown)
        .max(crate::run::longest_run(&plan.playbook))
        .max(MIN_LOCK_TTL);
    match lock
        .try_acquire(&plan.playbook.name, &plan.incident.key, ttl)
        .await
    {
        Ok(true) => {
            counts.acquired.fetch_add(1, Ordering::Relaxed);
            crate::run::run_incident(plan, deps).await
        }
        Ok(false) => {
            counts.locked_elsewhere.fetch_add(1, Ordering::Relaxed);
            crate::run::suppress_incident(plan, LOCKED_BY_ANOTHER_AGENT, None, deps)
        }
        Err(e) => {
            counts.unavailable.fetch_add(1, Ordering::Relaxed);
            let error = e.to_string();
            crate::run::suppress_incident(plan, LOCK_UNAVAILABLE, Some(&error), deps)
        }
    }
}

async fn drive(
    mut engine: HealEngine,
    runner: Arc<dyn ActionRunner>,
    lock: Arc<dyn IncidentLock>,
    counts: Arc<LockCounts>,
    mut rx: mpsc::Receiver<Input>,
) {
    let mut deps = engine.run_deps(runner);
    // Finished incidents come back here; at most the concurrency guardrail are in flight.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Incident>();
    let mut in_flight = 0usize;
    let mut open = true;
    // Approvals expire on time even when no event arrives.
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while open || in_flight > 0 {
        tokio::select! {
            _ = sweep.tick(), if open => {
                let _ = engine.tick();
            }
            input = rx.recv(), if open => match input {
                Some(Input::Event(event)) => {
                    for d in engine.handle(&event) {
                        if let Decision::Remediate(plan) = d {
                            in_flight += 1;
                            let deps = deps.clone();
                            let done_tx = done_tx.clone();
                            let lock = Arc::clone(&lock);
                            let counts = Arc::clone(&counts);
                            tokio::spawn(async move {
                                let done = run_locked(*plan, &deps, lock.as_ref(), &counts).await;
                                let _ = done_tx.send(done);
                            });
                        }
                    }
                }
                Some(Input::Reload(set)) => {
                    engine.replace_playbooks(set);
                    // Runs started from now on redact the secrets the new set names.
                    deps = engine.run_deps(Arc::clone(&deps.runner));
                }
                Some(Input::Barrier(done)) => {
                    let _ = done.send(());
                }
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

    /// A secret named only by the reloaded set is redacted from runs started after the reload.
    #[tokio::test]
    async fn secrets_of_a_reloaded_set_are_redacted_from_its_runs() {
        let first =
            "name: p\ntrigger: { type: t }\nmode: enforce\nsteps: [ { exec: { command: [x] } } ]\n";
        let second = "name: q\ntrigger: { type: u }\nmode: enforce\nsteps:\n  - http:\n      url: 'http://127.0.0.1:9/hook'\n      headers: { Authorization: { secret_env: HOOK_TOKEN } }\n      body: 'token ${{ env.HOOK_TOKEN }}'\n";
        let first = PlaybookSet::from_yaml(first, "t").unwrap_or_else(|e| panic!("{e}"));
        let second = PlaybookSet::from_yaml(second, "t").unwrap_or_else(|e| panic!("{e}"));
        let journal = Arc::new(MemoryJournal::default());
        let env: BTreeMap<String, String> =
            [("HOOK_TOKEN".to_string(), "hunter2-very-secret".to_string())].into();
        let engine = HealEngine::new(
            first,
            Arc::new(SystemClock),
            journal.clone(),
            Arc::new(MemorySink::default()),
            env,
        );
        let runner = Arc::new(RecordingRunner::default());
        let (handle, task) = spawn(engine, runner.clone());
        handle
            .reload(second)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let e = Event::new("u", "/t", Some("s"), 0, serde_json::json!({}));
        handle.send(e).await.unwrap_or_else(|e| panic!("{e}"));
        drop(handle);
        task.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(runner.count(), 1);
        // Everything recorded: the incident and every trail entry of the run.
        let text = format!(
            "{}{}",
            serde_json::to_string(&journal.incidents()).unwrap_or_default(),
            serde_json::to_string(&journal.entries()).unwrap_or_default()
        );
        assert!(text.contains("token"), "{text}");
        assert!(!text.contains("hunter2-very-secret"), "{text}");
    }

    /// Two agents (engines) sharing one lock table and one target: each gets the same event
    /// (a duplicate), twice; one action in all, the other agent records why it did not act.
    #[tokio::test]
    async fn agents_sharing_a_lock_act_once_per_key() {
        use crate::incident::TrailKind;
        use crate::lock::MemoryLock;
        let yaml = "name: p\ntrigger: { type: t }\nmode: enforce\nguardrails: { cooldown: 10m }\nsteps: [ { exec: { command: [x] } } ]\n";
        let set = PlaybookSet::from_yaml(yaml, "t").unwrap_or_else(|e| panic!("{e}"));
        let lock = Arc::new(MemoryLock::new(Arc::new(SystemClock)));
        let runner = Arc::new(RecordingRunner::default());
        let e = Event::new("t", "/t", Some("s"), 0, serde_json::json!({}));
        let mut journals = Vec::new();
        let mut sinks = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..2 {
            let journal = Arc::new(MemoryJournal::default());
            let sink = Arc::new(MemorySink::default());
            let engine = HealEngine::new(
                set.clone(),
                Arc::new(SystemClock),
                journal.clone(),
                sink.clone(),
                BTreeMap::new(),
            );
            let (handle, task) = spawn_with_lock(engine, runner.clone(), lock.clone());
            journals.push(journal);
            sinks.push(sink);
            handles.push((handle, task));
        }
        // One after the other, so the order of the two agents is known.
        for (handle, _) in &handles {
            for _ in 0..2 {
                handle
                    .send(e.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            while handle.lock_counts().acquired.load(Ordering::SeqCst)
                + handle.lock_counts().locked_elsewhere.load(Ordering::SeqCst)
                == 0
            {
                tokio::task::yield_now().await;
            }
        }
        let counts: Vec<(u64, u64)> = handles
            .iter()
            .map(|(h, _)| {
                (
                    h.lock_counts().acquired.load(Ordering::SeqCst),
                    h.lock_counts().locked_elsewhere.load(Ordering::SeqCst),
                )
            })
            .collect();
        for (handle, task) in handles {
            drop(handle);
            task.await.unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(runner.count(), 1);
        assert_eq!(counts, vec![(1, 0), (0, 1)]);
        let second = journals[1].incidents();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].state, IncidentState::Cancelled);
        assert!(
            journals[1]
                .entries()
                .iter()
                .any(|t| t.kind == TrailKind::Suppressed && t.detail == LOCKED_BY_ANOTHER_AGENT)
        );
        // The agent that lost the lock never announced a remediation.
        let announced = |i: usize| -> Vec<String> {
            sinks[i].events().iter().map(|e| e.kind.clone()).collect()
        };
        assert!(announced(0).contains(&"io.opsloop.incident.remediating".to_string()));
        assert_eq!(
            announced(1),
            [
                "io.opsloop.incident.detected",
                "io.opsloop.incident.cancelled"
            ]
        );
    }

    #[tokio::test]
    async fn an_unavailable_lock_means_no_action() {
        use crate::incident::TrailKind;
        use crate::lock::MemoryLock;
        let yaml =
            "name: p\ntrigger: { type: t }\nmode: enforce\nsteps: [ { exec: { command: [x] } } ]\n";
        let set = PlaybookSet::from_yaml(yaml, "t").unwrap_or_else(|e| panic!("{e}"));
        let lock = Arc::new(MemoryLock::new(Arc::new(SystemClock)));
        lock.set_failing(true);
        let journal = Arc::new(MemoryJournal::default());
        let engine = HealEngine::new(
            set,
            Arc::new(SystemClock),
            journal.clone(),
            Arc::new(MemorySink::default()),
            BTreeMap::new(),
        );
        let runner = Arc::new(RecordingRunner::default());
        let (handle, task) = spawn_with_lock(engine, runner.clone(), lock);
        let e = Event::new("t", "/t", Some("s"), 0, serde_json::json!({}));
        handle.send(e).await.unwrap_or_else(|e| panic!("{e}"));
        let counts = Arc::clone(&handle.locks);
        drop(handle);
        task.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(runner.count(), 0);
        assert_eq!(counts.unavailable.load(Ordering::SeqCst), 1);
        let entry = journal
            .entries()
            .into_iter()
            .find(|t| t.kind == TrailKind::Suppressed)
            .unwrap_or_else(|| panic!("no suppression recorded"));
        assert_eq!(entry.detail, LOCK_UNAVAILABLE);
        assert!(
            entry.data["error"]
                .as_str()
                .is_some_and(|e| e.contains("failing"))
        );
    }
}
