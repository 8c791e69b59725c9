//! Supervision of the agent's tasks: one cancellation token and one task tracker for all of
//! them, restarts with backoff, and readiness that tells the truth.
//!
//! A task that fails (returns an error or panics) is logged, counted in
//! `opsloop_task_failures_total{task}` and marks the agent not ready (`/readyz` 503)
//! until it is back. What happens next is the task's [`OnFailure`]: tasks that can start over
//! (sources, the JetStream relay, housekeeping, reload) are restarted with exponential backoff
//! and count as up again once they have run for [`HEALTHY_AFTER`]; tasks that own state nothing
//! else can rebuild (the pipeline thread, the publisher) stop the agent, which then exits
//! non-zero so that its service manager restarts it from the saved positions.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opsloop_metrics::{AgentMetrics, TaskLabel};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A restarted task counts as healthy again after running this long without failing.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(2);
/// First wait before a restart; doubled per consecutive failure.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest wait before a restart.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a task stopped, as the task reports it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TaskError(pub String);

impl TaskError {
    /// A task error from anything displayable.
    pub fn new(e: impl std::fmt::Display) -> Self {
        TaskError(e.to_string())
    }
}

/// A supervised task: stop it alone (a source removed by a reload).
pub struct TaskHandle {
    cancel: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

impl TaskHandle {
    /// Cancels the task and waits for it to end.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.join.await;
    }

    /// Waits up to `timeout` for the task to end by itself (a drain); `false` if it did not.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, &mut self.join).await.is_ok()
    }
}

/// What a failed task leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Start it again after a backoff.
    Restart,
    /// Stop the agent (non-zero exit).
    StopAgent,
}

/// Which tasks are down, and whether the agent finished starting.
#[derive(Default)]
struct Health {
    started: AtomicBool,
    down: Mutex<BTreeSet<String>>,
    ready: Arc<AtomicBool>,
}

impl Health {
    fn update(&self) {
        let none_down = self.down.lock().map(|d| d.is_empty()).unwrap_or(false);
        self.ready.store(
            self.started.load(Ordering::Acquire) && none_down,
            Ordering::Release,
        );
    }

    fn set_down(&self, task: &str, down: bool) {
        if let Ok(mut d) = self.down.lock() {
            if down {
                d.insert(task.to_string());
            } else {
                d.remove(task);
            }
        }
        self.update();
    }
}

struct Inner {
    cancel: CancellationToken,
    tracker: TaskTracker,
    health: Health,
    metrics: Arc<AgentMetrics>,
    /// Cancelled when a [`OnFailure::StopAgent`] task failed.
    fatal: CancellationToken,
    fatal_reason: Mutex<Option<String>>,
}

/// Runs and watches the agent's tasks. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// A supervisor counting failures in `metrics`.
    pub fn new(metrics: Arc<AgentMetrics>) -> Supervisor {
        Supervisor {
            inner: Arc::new(Inner {
                cancel: CancellationToken::new(),
                tracker: TaskTracker::new(),
                health: Health::default(),
                metrics,
                fatal: CancellationToken::new(),
                fatal_reason: Mutex::new(None),
            }),
        }
    }

    /// The flag `/readyz` reads: started, and no task down.
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.inner.health.ready)
    }

    /// Whether the agent is ready now.
    pub fn is_ready(&self) -> bool {
        self.inner.health.ready.load(Ordering::Acquire)
    }

    /// The agent finished starting: ready once no task is down.
    pub fn set_started(&self) {
        self.inner.health.started.store(true, Ordering::Release);
        self.inner.health.update();
    }

    /// The agent is stopping: no longer ready.
    pub fn set_stopping(&self) {
        self.inner.health.started.store(false, Ordering::Release);
        self.inner.health.update();
    }

    /// Cancelled when the agent shuts down; tasks select on it.
    pub fn token(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Names of the tasks that are down now.
    pub fn down(&self) -> Vec<String> {
        self.inner
            .health
            .down
            .lock()
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A task that keeps running but cannot do its work (a store that refuses writes, a
    /// JetStream server out of reach) reports itself down, so `/readyz` says so, and up
    /// again once it recovers. Logged on each change.
    pub fn set_degraded(&self, task: &str, degraded: bool) {
        let was = self
            .inner
            .health
            .down
            .lock()
            .map(|d| d.contains(task))
            .unwrap_or(false);
        if was == degraded {
            return;
        }
        if degraded {
            tracing::warn!(task, "task cannot do its work; the agent is not ready");
        } else {
            tracing::info!(task, "task recovered");
        }
        self.inner.health.set_down(task, degraded);
    }

    /// Resolves when a task whose failure stops the agent failed; returns why.
    pub async fn fatal(&self) -> String {
        self.inner.fatal.cancelled().await;
        self.fatal_reason()
            .unwrap_or_else(|| "a task failed".to_string())
    }

    /// Why the agent must stop, if it must.
    pub fn fatal_reason(&self) -> Option<String> {
        self.inner.fatal_reason.lock().ok().and_then(|r| r.clone())
    }

    /// Runs `make(token)` as the task `name`, again after each failure if `on_failure` says
    /// so, until the agent shuts down or the returned handle stops it. A task that returns
    /// `Ok` is done and not restarted.
    pub fn spawn<F, Fut>(
        &self,
        name: impl Into<String>,
        on_failure: OnFailure,
        mut make: F,
    ) -> TaskHandle
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        let name = name.into();
        let me = self.clone();
        let cancel = self.inner.cancel.child_token();
        let token = cancel.clone();
        let join = self.inner.tracker.spawn(async move {
            me.supervise(&name, on_failure, &cancel, &mut make).await;
            // However it ended, a task that is gone is not "down" any more.
            me.inner.health.set_down(&name, false);
        });
        TaskHandle {
            cancel: token,
            join,
        }
    }

    async fn supervise<F, Fut>(
        &self,
        name: &str,
        on_failure: OnFailure,
        cancel: &CancellationToken,
        make: &mut F,
    ) where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        let me = self;
        let name = name.to_string();
        {
            let mut backoff = BACKOFF_MIN;
            let mut down = false;
            loop {
                // Its own task, so that a panic ends only this run and is seen here.
                let mut run = tokio::spawn(make(cancel.child_token()));
                let outcome = loop {
                    tokio::select! {
                        r = &mut run => break r,
                        _ = tokio::time::sleep(HEALTHY_AFTER), if down => {
                            down = false;
                            backoff = BACKOFF_MIN;
                            me.inner.health.set_down(&name, false);
                            tracing::info!(task = %name, "task recovered");
                        }
                    }
                };
                let reason = match outcome {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e.0,
                    Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e)),
                    Err(_) => return, // aborted: shutting down
                };
                if cancel.is_cancelled() {
                    return; // failures while stopping are the stop's, not the task's
                }
                if !me.failed(&name, on_failure, &reason) {
                    return;
                }
                down = true;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                me.inner
                    .metrics
                    .task_restarts
                    .get_or_create(&TaskLabel { task: name.clone() })
                    .inc();
                tracing::warn!(task = %name, "restarting task");
            }
        }
    }

    /// Watches a thread the agent cannot restart (the pipeline): when it panics, the agent
    /// stops. `Ok` from the thread is a normal end.
    pub fn watch_thread(&self, name: impl Into<String>, thread: std::thread::JoinHandle<()>) {
        let name = name.into();
        let me = self.clone();
        self.inner.tracker.spawn(async move {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            let reason = match joined {
                Ok(Ok(())) => return,
                Ok(Err(panic)) => format!("panicked: {}", payload_message(panic.as_ref())),
                Err(e) => format!("could not be joined: {e}"),
            };
            me.failed(&name, OnFailure::StopAgent, &reason);
        });
    }

    /// Records a failure; returns whether to restart.
    fn failed(&self, name: &str, on_failure: OnFailure, reason: &str) -> bool {
        self.inner
            .metrics
            .task_failures
            .get_or_create(&TaskLabel {
                task: name.to_string(),
            })
            .inc();
        self.inner.health.set_down(name, true);
        match on_failure {
            OnFailure::Restart => {
                tracing::error!(task = %name, error = %reason, "task failed; restarting after a backoff");
                true
            }
            OnFailure::StopAgent => {
                tracing::error!(task = %name, error = %reason, "task failed; stopping the agent");
                // Not ready from now on, whatever else recovers.
                self.set_stopping();
                if let Ok(mut r) = self.inner.fatal_reason.lock()
                    && r.is_none()
                {
                    *r = Some(format!("task {name} failed: {reason}"));
                }
                self.inner.fatal.cancel();
                false
            }
        }
    }

    /// Cancels every task and waits up to `timeout` for them to end.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.set_stopping();
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        tokio::time::timeout(timeout, self.inner.tracker.wait())
            .await
            .is_ok()
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload_message(payload.as_ref()),
        Err(e) => e.to_string(),
    }
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn failures(m: &AgentMetrics, task: &str) -> u64 {
        m.task_failures
            .get_or_create(&TaskLabel { task: task.into() })
            .get()
    }

    async fn wait_until(mut f: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_task_is_counted_marks_not_ready_and_recovers_after_restart() {
        let metrics = Arc::new(AgentMetrics::default());
        let s = Supervisor::new(Arc::clone(&metrics));
        s.set_started();
        assert!(s.is_ready());
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        s.spawn("flaky", OnFailure::Restart, move |cancel| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    return Err(TaskError::new("store is locked"));
                }
                cancel.cancelled().await;
                Ok(())
            }
        });
        wait_until(|| failures(&metrics, "flaky") == 1).await;
        assert!(!s.is_ready(), "a task down makes the agent not ready");
        assert_eq!(s.down(), ["flaky"]);
        wait_until(|| runs.load(Ordering::SeqCst) == 3).await;
        assert_eq!(failures(&metrics, "flaky"), 2);
        wait_until(|| s.is_ready()).await;
        assert!(s.down().is_empty());
        assert_eq!(
            metrics
                .task_restarts
                .get_or_create(&TaskLabel {
                    task: "flaky".into()
                })
                .get(),
            2
        );
        assert!(s.shutdown(Duration::from_secs(5)).await);
        assert!(s.fatal_reason().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted() {
        let metrics = Arc::new(AgentMetrics::default());
        let s = Supervisor::new(Arc::clone(&metrics));
        s.set_started();
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        s.spawn("panicky", OnFailure::Restart, move |cancel| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(n > 0, "injected panic");
                cancel.cancelled().await;
                Ok(())
            }
        });
        wait_until(|| runs.load(Ordering::SeqCst) == 2).await;
        assert_eq!(failures(&metrics, "panicky"), 1);
        wait_until(|| s.is_ready()).await;
        assert!(s.shutdown(Duration::from_secs(5)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_stops_the_agent_fires_fatal_and_is_not_restarted() {
        let metrics = Arc::new(AgentMetrics::default());
        let s = Supervisor::new(Arc::clone(&metrics));
        s.set_started();
        let runs = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&runs);
        s.spawn("publisher", OnFailure::StopAgent, move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            async { Err(TaskError::new("broken")) }
        });
        let reason = s.fatal().await;
        assert!(
            reason.contains("publisher") && reason.contains("broken"),
            "{reason}"
        );
        assert!(!s.is_ready());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(s.shutdown(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_panicking_thread_stops_the_agent() {
        let metrics = Arc::new(AgentMetrics::default());
        let s = Supervisor::new(Arc::clone(&metrics));
        s.set_started();
        let thread = std::thread::spawn(|| panic!("pipeline bug"));
        s.watch_thread("pipeline", thread);
        let reason = tokio::time::timeout(Duration::from_secs(30), s.fatal())
            .await
            .unwrap();
        assert!(reason.contains("pipeline bug"), "{reason}");
        assert_eq!(failures(&metrics, "pipeline"), 1);
        assert!(!s.is_ready());
    }

    #[tokio::test]
    async fn a_degraded_task_makes_the_agent_not_ready_until_it_recovers() {
        let s = Supervisor::new(Arc::new(AgentMetrics::default()));
        s.set_started();
        s.set_degraded("publisher", true);
        assert!(!s.is_ready());
        s.set_degraded("publisher", true);
        assert_eq!(s.down(), ["publisher"]);
        s.set_degraded("publisher", false);
        assert!(s.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_during_shutdown_are_not_counted() {
        let metrics = Arc::new(AgentMetrics::default());
        let s = Supervisor::new(Arc::clone(&metrics));
        s.spawn("source", OnFailure::Restart, |cancel| async move {
            cancel.cancelled().await;
            Err(TaskError::new("socket closed"))
        });
        assert!(s.shutdown(Duration::from_secs(5)).await);
        assert_eq!(failures(&metrics, "source"), 0);
    }
}
