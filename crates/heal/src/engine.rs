//! The engine: one per agent, fed every event. [`HealEngine::handle`] matches playbooks
//! (type index first, CEL only for candidates), counts threshold windows per (playbook,
//! key), applies the guardrails in order (open incident, cooldown, max runs per hour,
//! concurrency, blast radius; resolved alerts never act), handles approvals and resolved
//! alerts, and opens incidents: dry-run ones are recorded with their interpolated steps,
//! approve ones wait, enforce ones come back as a [`RunPlan`] for [`crate::run::run_incident`].
//! [`HealEngine::finish`] takes a finished run back. All state is bounded; idle keys are
//! evicted. Time comes from the injected clock.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use opsloop_core::Event;
use opsloop_core::time::{Clock, format_rfc3339};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::expr::{Expr, Scope, from_json, from_strings};
use crate::incident::{
    HealJournal, Incident, IncidentState, Redactor, StepRecord, TrailEntry, TrailKind,
};
use crate::playbook::{Playbook, PlaybookSet, TypePattern};
use crate::run::{RunDeps, render_steps};
use crate::spec::Mode;

/// Approval event type (data: `incident_id`, `approver`).
pub const APPROVE_TYPE: &str = "io.opsloop.incident.approve";
/// Rejection event type (data: `incident_id`, `approver`).
pub const REJECT_TYPE: &str = "io.opsloop.incident.reject";
/// The alert types the Alertmanager receiver publishes.
pub const ALERT_FIRING: &str = "io.opsloop.alert.firing";
/// A resolved alert.
pub const ALERT_RESOLVED: &str = "io.opsloop.alert.resolved";

/// Bounds of the engine's state.
#[derive(Clone, Copy, Debug)]
pub struct EngineLimits {
    /// Keys tracked per playbook (windows, cooldowns); idle ones go first.
    pub max_keys_per_playbook: usize,
    /// Targets tracked per playbook for max-runs-per-hour.
    pub max_targets_per_playbook: usize,
    /// Incidents awaiting approval, all playbooks.
    pub max_pending_approvals: usize,
    /// How long an approval may be waited for before the incident is cancelled, ms.
    pub approval_timeout_ms: i64,
    /// A repeated suppression of one key for one reason is recorded once per this, ms.
    pub suppression_record_interval_ms: i64,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            max_keys_per_playbook: 10_000,
            max_targets_per_playbook: 10_000,
            max_pending_approvals: 1_000,
            approval_timeout_ms: 24 * 3_600_000,
            suppression_record_interval_ms: 60_000,
        }
    }
}

/// Where events the loop produces go (incident transitions, `event` steps, escalations).
pub trait EventSink: Send + Sync {
    /// Publishes one event (already redacted).
    fn publish(&self, event: Event);
}

/// A sink that keeps events in memory, bounded.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<VecDeque<Event>>,
}

/// Events a [`MemorySink`] keeps.
const MEMORY_SINK_CAP: usize = 100_000;

impl MemorySink {
    /// The events, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes and returns the events.
    pub fn drain(&self) -> Vec<Event> {
        self.events
            .lock()
            .map(|mut e| e.drain(..).collect())
            .unwrap_or_default()
    }
}

impl EventSink for MemorySink {
    fn publish(&self, event: Event) {
        if let Ok(mut e) = self.events.lock() {
            if e.len() >= MEMORY_SINK_CAP {
                e.pop_front();
            }
            e.push_back(event);
        }
    }
}

/// Why a match did not act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressReason {
    /// An incident for this key is awaiting approval or running.
    IncidentOpen,
    /// The key ran less than `cooldown` ago.
    Cooldown,
    /// The target ran `max_runs_per_hour` times in the last hour.
    MaxRunsPerHour,
    /// `concurrency` incidents are remediating.
    Concurrency,
    /// `max_targets` distinct targets were acted on within the window.
    BlastRadius,
    /// Too many incidents await approval.
    PendingApprovalsFull,
    /// The playbook tracks as many keys as it may, all open or cooling down: a new key is
    /// not acted on (memory stays bounded, and no cooldown is forgotten to make room).
    KeysFull,
}

impl SuppressReason {
    /// As written in the trail.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressReason::IncidentOpen => "incident_open",
            SuppressReason::Cooldown => "cooldown",
            SuppressReason::MaxRunsPerHour => "max_runs_per_hour",
            SuppressReason::Concurrency => "concurrency",
            SuppressReason::BlastRadius => "blast_radius",
            SuppressReason::PendingApprovalsFull => "pending_approvals_full",
            SuppressReason::KeysFull => "keys_full",
        }
    }
}

/// Everything a run needs besides the shared dependencies.
#[derive(Clone, Debug)]
pub struct RunPlan {
    /// The incident, in state `remediating`.
    pub incident: Incident,
    /// The playbook.
    pub playbook: Arc<Playbook>,
    /// The event that triggered it.
    pub trigger: Arc<Event>,
}

/// What handling an event decided (one entry per playbook that did something).
#[derive(Clone, Debug)]
pub enum Decision {
    /// Run this incident now ([`crate::run::run_incident`]), then [`HealEngine::finish`].
    Remediate(Box<RunPlan>),
    /// Recorded as a dry run with its interpolated steps; nothing to run.
    DryRun(Box<Incident>),
    /// Waiting for an approval event.
    AwaitingApproval(Box<Incident>),
    /// Counted towards the threshold.
    ThresholdPending {
        /// Playbook.
        playbook: String,
        /// Key.
        key: String,
        /// Matches in the window.
        count: u32,
        /// Needed.
        needed: u32,
    },
    /// A guardrail stopped it.
    Suppressed {
        /// Playbook.
        playbook: String,
        /// Key.
        key: String,
        /// Why.
        reason: SuppressReason,
    },
    /// A resolved alert cancelled a pending threshold or an incident awaiting approval.
    Cancelled {
        /// Playbook.
        playbook: String,
        /// Key.
        key: String,
        /// The incident cancelled, if one was waiting.
        incident: Option<Box<Incident>>,
    },
    /// An approver rejected the incident.
    Rejected(Box<Incident>),
    /// An approval or rejection that matched no waiting incident.
    ApprovalIgnored {
        /// The id it named.
        incident_id: String,
        /// Why.
        reason: String,
    },
}

/// Why a playbook did or did not act on an event (for `heal test`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verdict {
    /// The event's type is not among the trigger's types.
    TypeMismatch {
        /// The trigger's types.
        expected: Vec<TypePattern>,
    },
    /// The condition was false.
    ConditionFalse {
        /// The condition.
        condition: String,
    },
    /// The condition, key or target could not be evaluated (treated as no match).
    EvaluationError {
        /// Which expression.
        field: String,
        /// Why.
        error: String,
    },
    /// A resolved alert: never acts; pending work for its key was cancelled.
    ResolvedAlert {
        /// Key.
        key: String,
    },
    /// Counted; not enough matches yet.
    ThresholdNotReached {
        /// Key.
        key: String,
        /// Matches in the window.
        count: u32,
        /// Needed.
        needed: u32,
    },
    /// A guardrail stopped it.
    Suppressed {
        /// Key.
        key: String,
        /// Target.
        target: String,
        /// Why.
        reason: SuppressReason,
    },
    /// Matched and passed every guardrail.
    Triggered {
        /// Key.
        key: String,
        /// Target.
        target: String,
        /// Mode.
        mode: Mode,
        /// The incident opened.
        incident_id: String,
    },
}

/// A playbook's verdict on one event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlaybookVerdict {
    /// Playbook.
    pub playbook: String,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Per (playbook, key) state.
#[derive(Debug, Default)]
struct KeyState {
    /// Match times within the threshold window (at most `count`).
    window: VecDeque<i64>,
    /// Start of the last run (or dry run).
    last_run_ms: Option<i64>,
    /// The incident awaiting approval or running.
    open: Option<String>,
    /// Last activity, for evicting idle keys.
    touched_ms: i64,
    /// Last suppression recorded: reason and time, and how many were not recorded since.
    last_suppression: Option<(SuppressReason, i64)>,
    unrecorded_suppressions: u64,
    /// Last below-threshold match recorded, and how many were not recorded since.
    last_threshold_record_ms: Option<i64>,
    unrecorded_threshold_matches: u64,
}

/// Per playbook state.
#[derive(Debug, Default)]
struct PlaybookState {
    keys: FxHashMap<String, KeyState>,
    /// Run times per target within the last hour.
    runs_by_target: FxHashMap<String, VecDeque<i64>>,
    /// (time, target) of runs within the blast-radius window.
    acted: VecDeque<(i64, String)>,
    /// Runs per target within `acted`: its size is the number of distinct targets.
    acted_targets: FxHashMap<String, usize>,
}

impl PlaybookState {
    /// Drops runs that left the hour and the blast-radius window (a time "in the future",
    /// after the clock stepped back, counts as now) and returns the runs on `target` within
    /// the last hour.
    fn runs_in_windows(&mut self, target: &str, now: i64, blast_within_ms: i64) -> usize {
        let hour_ago = now.saturating_sub(3_600_000);
        let runs = self
            .runs_by_target
            .get_mut(target)
            .map(|q| {
                if q.back().is_some_and(|&t| t > now) {
                    for t in q.iter_mut() {
                        *t = (*t).min(now);
                    }
                }
                while q.front().is_some_and(|&t| t <= hour_ago) {
                    q.pop_front();
                }
                q.len()
            })
            .unwrap_or(0);
        let blast_cutoff = now.saturating_sub(blast_within_ms);
        if self.acted.back().is_some_and(|(t, _)| *t > now) {
            for (t, _) in self.acted.iter_mut() {
                *t = (*t).min(now);
            }
        }
        while let Some((t, _)) = self.acted.front()
            && *t <= blast_cutoff
        {
            if let Some((_, gone)) = self.acted.pop_front()
                && let Some(n) = self.acted_targets.get_mut(&gone)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.acted_targets.remove(&gone);
                }
            }
        }
        runs
    }

    /// Whether acting on `target` would take one more distinct target than `g` allows.
    fn widens_blast_radius(&self, target: &str, g: &crate::playbook::Guardrails) -> bool {
        !self.acted_targets.contains_key(target) && self.acted_targets.len() >= g.blast_max_targets
    }
}

/// What [`HealEngine::restore`] took back from a previous run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Finished runs (cooldowns, runs per hour and blast radius count them).
    pub runs: usize,
    /// Incidents waiting for approval again.
    pub awaiting: usize,
    /// Runs under way when the agent stopped, now `failed`.
    pub interrupted: usize,
    /// Incidents that never ran, now `cancelled`.
    pub cancelled: usize,
}

/// An incident waiting for approval.
#[derive(Debug)]
struct Pending {
    playbook: usize,
    /// The playbook as it was when approval was asked: what the approver saw is what runs,
    /// even if a reload changed it meanwhile.
    version: Arc<Playbook>,
    incident: Incident,
    trigger: Arc<Event>,
    since_ms: i64,
}

/// An incident running.
#[derive(Debug)]
struct Running {
    playbook: usize,
    key: String,
}

/// No-event watches of verifications in progress, shared with the runs.
#[derive(Debug, Default)]
pub struct EventWatches {
    count: AtomicUsize,
    next_id: AtomicU64,
    watches: Mutex<Vec<Watch>>,
}

#[derive(Debug)]
struct Watch {
    id: u64,
    pattern: TypePattern,
    condition: Option<Expr>,
    last_seen: Option<tokio::time::Instant>,
}

impl EventWatches {
    /// Starts watching for events matching `pattern` and `condition`; returns the id.
    pub fn add(&self, pattern: TypePattern, condition: Option<Expr>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut w) = self.watches.lock() {
            w.push(Watch {
                id,
                pattern,
                condition,
                last_seen: None,
            });
            self.count.store(w.len(), Ordering::Release);
        }
        id
    }

    /// When a matching event was last seen.
    pub fn last_seen(&self, id: u64) -> Option<tokio::time::Instant> {
        self.watches
            .lock()
            .ok()?
            .iter()
            .find(|w| w.id == id)?
            .last_seen
    }

    /// Stops watching.
    pub fn remove(&self, id: u64) {
        if let Ok(mut w) = self.watches.lock() {
            w.retain(|x| x.id != id);
            self.count.store(w.len(), Ordering::Release);
        }
    }

    /// Notes an event (cheap when nothing is watched).
    pub fn observe(&self, event: &Event, ctx: &mut Option<cel::Context<'static, 'static>>) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let Ok(mut w) = self.watches.lock() else {
            return;
        };
        for watch in w.iter_mut() {
            if !watch.pattern.matches(&event.kind) {
                continue;
            }
            let ok = match &watch.condition {
                None => true,
                Some(c) => {
                    let s = ctx.get_or_insert_with(|| event_scope(event).context());
                    c.eval_bool_in(s).unwrap_or(false)
                }
            };
            if ok {
                watch.last_seen = Some(tokio::time::Instant::now());
            }
        }
    }
}

/// The scope of an event: `event` as a map (id, type, source, subject, time, data,
/// fingerprint).
pub fn event_scope(event: &Event) -> Scope {
    Scope::new().with("event", event_value(event))
}

/// An event as a CEL map.
pub fn event_value(event: &Event) -> cel::Value {
    let mut m: std::collections::HashMap<String, cel::Value> = std::collections::HashMap::new();
    m.insert("id".into(), cel::Value::from(event.id.as_str()));
    m.insert("type".into(), cel::Value::from(event.kind.as_str()));
    m.insert("source".into(), cel::Value::from(event.source.as_str()));
    m.insert(
        "subject".into(),
        event
            .subject
            .as_deref()
            .map_or(cel::Value::Null, cel::Value::from),
    );
    m.insert("time".into(), cel::Value::from(event.time.as_str()));
    m.insert("data".into(), from_json(&event.data));
    m.insert(
        "fingerprint".into(),
        cel::Value::from(event.fingerprint.as_str()),
    );
    cel::Value::from(m)
}

/// Whether an event reports a resolved alert: its type ends in `.resolved`, or its data's
/// `status` is `resolved` (an Alertmanager alert).
pub fn is_resolved(event: &Event) -> bool {
    event.kind.ends_with(".resolved")
        || event.data.get("status").and_then(|s| s.as_str()) == Some("resolved")
}

/// The self-healing engine. Not shared: one task owns it and feeds it events.
pub struct HealEngine {
    set: PlaybookSet,
    states: Vec<PlaybookState>,
    clock: Arc<dyn Clock>,
    journal: Arc<dyn HealJournal>,
    sink: Arc<dyn EventSink>,
    env: Arc<BTreeMap<String, String>>,
    env_value: cel::Value,
    redactor: Redactor,
    limits: EngineLimits,
    pending: BTreeMap<String, Pending>,
    running: FxHashMap<String, Running>,
    watches: Arc<EventWatches>,
    candidates: Vec<usize>,
    last_sweep_ms: i64,
}

impl HealEngine {
    /// An engine over `set`, with the agent's environment `env` (what `env.NAME` reads and
    /// where `secret_env` comes from).
    pub fn new(
        set: PlaybookSet,
        clock: Arc<dyn Clock>,
        journal: Arc<dyn HealJournal>,
        sink: Arc<dyn EventSink>,
        env: BTreeMap<String, String>,
    ) -> HealEngine {
        let redactor = redactor_for(&set, &env);
        let states = set
            .playbooks()
            .iter()
            .map(|_| PlaybookState::default())
            .collect();
        let env_value = from_strings(&env);
        let now = clock.now_ms();
        HealEngine {
            set,
            states,
            clock,
            journal,
            sink,
            env: Arc::new(env),
            env_value,
            redactor,
            limits: EngineLimits::default(),
            pending: BTreeMap::new(),
            running: FxHashMap::default(),
            watches: Arc::new(EventWatches::default()),
            candidates: Vec::new(),
            last_sweep_ms: now,
        }
    }

    /// Replaces the bounds.
    pub fn with_limits(mut self, limits: EngineLimits) -> HealEngine {
        self.limits = limits;
        self
    }

    /// The playbooks.
    pub fn playbooks(&self) -> &PlaybookSet {
        &self.set
    }

    /// The redactor every record goes through.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Incidents remediating or verifying now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Expires approvals waited for too long and evicts idle keys, as every event does once
    /// a minute: the loop calls it on a timer too, so that a quiet bus does not leave an
    /// incident `awaiting_approval` past its window.
    pub fn tick(&mut self) -> Vec<Decision> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        self.sweep(now, &mut out);
        out
    }

    /// Incidents awaiting approval now.
    pub fn awaiting_approval(&self) -> usize {
        self.pending.len()
    }

    /// Keys tracked, all playbooks (for bounds checks).
    pub fn tracked_keys(&self) -> usize {
        self.states.iter().map(|s| s.keys.len()).sum()
    }

    /// The dependencies a run needs, sharing this engine's journal, sink, clock, environment,
    /// redactor and event watches.
    pub fn run_deps(&self, runner: Arc<dyn crate::action::ActionRunner>) -> RunDeps {
        RunDeps {
            runner,
            journal: self.journal.clone(),
            sink: self.sink.clone(),
            clock: self.clock.clone(),
            env: self.env.clone(),
            redactor: self.redactor.clone(),
            watches: self.watches.clone(),
        }
    }

    /// Replaces the playbooks (hot reload). A playbook that keeps its name keeps its
    /// windows, cooldowns, run counts and waiting approvals; the state of a removed one is
    /// dropped and its approvals are cancelled. Runs in flight finish as they started.
    pub fn replace_playbooks(&mut self, set: PlaybookSet) {
        let now = self.clock.now_ms();
        let mut old: FxHashMap<String, (usize, PlaybookState)> = FxHashMap::default();
        let states = std::mem::take(&mut self.states);
        for (i, (st, pb)) in states.into_iter().zip(self.set.playbooks()).enumerate() {
            old.insert(pb.name.clone(), (i, st));
        }
        let mut remap: FxHashMap<usize, usize> = FxHashMap::default();
        let mut states = Vec::with_capacity(set.len());
        for (j, pb) in set.playbooks().iter().enumerate() {
            match old.remove(&pb.name) {
                Some((i, st)) => {
                    remap.insert(i, j);
                    states.push(st);
                }
                None => states.push(PlaybookState::default()),
            }
        }
        self.redactor = redactor_for(&set, &self.env);
        self.set = set;
        self.states = states;
        for r in self.running.values_mut() {
            r.playbook = remap.get(&r.playbook).copied().unwrap_or(usize::MAX);
        }
        let ids: Vec<String> = self.pending.keys().cloned().collect();
        for id in ids {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            match remap.get(&p.playbook) {
                Some(&j) => p.playbook = j,
                None => {
                    if let Some(mut p) = self.pending.remove(&id) {
                        self.transition(
                            &mut p.incident,
                            IncidentState::Cancelled,
                            now,
                            Some("the playbook was removed".into()),
                        );
                    }
                }
            }
        }
    }

    /// Handles one event.
    pub fn handle(&mut self, event: &Event) -> Vec<Decision> {
        self.process(event, None)
    }

    /// Handles one event and says, for every playbook, why it acted or not.
    pub fn handle_explained(&mut self, event: &Event) -> (Vec<Decision>, Vec<PlaybookVerdict>) {
        let mut verdicts = Vec::new();
        let decisions = self.process(event, Some(&mut verdicts));
        (decisions, verdicts)
    }

    /// A copy of `event` with the secret values this engine knows masked (what is kept in
    /// an incident record).
    fn redacted_event(&self, event: &Event) -> Event {
        let mut copy = event.clone();
        self.redactor.redact_json(&mut copy.data);
        copy.subject = copy.subject.map(|s| self.redactor.redact(&s));
        copy
    }

    /// How far back [`HealEngine::restore`] needs the finished runs of a previous run: the
    /// longest of the hour of `max_runs_per_hour` and every playbook's cooldown and
    /// blast-radius window. (Incidents that never ended matter at any age.)
    pub fn memory_ms(&self) -> i64 {
        self.set
            .playbooks()
            .iter()
            .map(|pb| pb.guardrails.cooldown_ms.max(pb.guardrails.blast_within_ms))
            .fold(3_600_000, i64::max)
    }

    /// Takes back what a previous run of the agent left (its incidents, oldest first: those
    /// that never ended, and the finished runs of the last [`HealEngine::memory_ms`]): finished runs
    /// restore cooldowns, runs per hour and blast radius; an incident awaiting approval
    /// waits again, with its trigger event as `trigger` finds it by id; a run that was under
    /// way when the agent stopped ends `failed` (its actions may have run in part: it is
    /// neither retried nor forgotten, and its key cools down from now); one that had not
    /// started ends `cancelled`. Call before the first event.
    pub fn restore(
        &mut self,
        history: Vec<Incident>,
        trigger: &mut dyn FnMut(&str) -> Option<Event>,
    ) -> Restored {
        let now = self.clock.now_ms();
        let mut restored = Restored::default();
        let at = |rfc3339: &str| {
            opsloop_core::time::parse_iso8601(rfc3339.as_bytes()).map_or(now, |(ms, _)| ms.min(now))
        };
        // Runs are counted in the order they ran (the guardrails' windows expect it).
        let mut history = history;
        history.sort_by_key(|i| at(&i.updated));
        for mut incident in history {
            let index = self
                .set
                .playbooks()
                .iter()
                .position(|pb| pb.name == incident.playbook);
            let state = incident.state;
            let open = matches!(
                state,
                IncidentState::Detected
                    | IncidentState::AwaitingApproval
                    | IncidentState::Approved
                    | IncidentState::Remediating
                    | IncidentState::Verifying
            );
            let Some(i) = index else {
                if open {
                    self.transition(
                        &mut incident,
                        IncidentState::Cancelled,
                        now,
                        Some("the agent restarted and the playbook is no longer configured".into()),
                    );
                    restored.cancelled += 1;
                }
                continue;
            };
            let created = at(&incident.created);
            let target = incident.target.clone();
            match state {
                IncidentState::AwaitingApproval => {
                    let expired = now.saturating_sub(created) >= self.limits.approval_timeout_ms;
                    let found = if expired {
                        None
                    } else {
                        trigger(&incident.trigger_event_id)
                            .or_else(|| incident.trigger.take().map(|e| *e))
                    };
                    let Some(event) = found else {
                        let reason = if expired {
                            "no approval within the approval timeout"
                        } else {
                            "the agent restarted and the trigger event is no longer stored"
                        };
                        self.transition(
                            &mut incident,
                            IncidentState::Cancelled,
                            now,
                            Some(reason.into()),
                        );
                        restored.cancelled += 1;
                        continue;
                    };
                    let Some(pb) = self.set.playbooks().get(i).cloned() else {
                        continue;
                    };
                    if let Some(st) = self.states.get_mut(i) {
                        let ks = st.keys.entry(incident.key.clone()).or_default();
                        ks.open = Some(incident.id.clone());
                        ks.touched_ms = now;
                    }
                    self.pending.insert(
                        incident.id.clone(),
                        Pending {
                            playbook: i,
                            version: pb,
                            incident,
                            trigger: Arc::new(event),
                            since_ms: created,
                        },
                    );
                    restored.awaiting += 1;
                }
                IncidentState::Detected | IncidentState::Approved => {
                    self.transition(
                        &mut incident,
                        IncidentState::Cancelled,
                        now,
                        Some("the agent restarted before the run began".into()),
                    );
                    restored.cancelled += 1;
                }
                IncidentState::Remediating | IncidentState::Verifying => {
                    // Counted when it last moved (its run), not when it was opened: an
                    // approval may have come hours after.
                    self.count_run(i, &target, at(&incident.updated));
                    self.cool_down(i, &incident.key, now);
                    self.transition(
                        &mut incident,
                        IncidentState::Failed,
                        now,
                        Some(
                            "interrupted: the agent stopped during the run; its actions may \
                             have run in part"
                                .into(),
                        ),
                    );
                    restored.interrupted += 1;
                }
                IncidentState::Resolved
                | IncidentState::Failed
                | IncidentState::Escalated
                | IncidentState::DryRun => {
                    self.count_run(i, &target, at(&incident.updated));
                    self.cool_down(i, &incident.key, at(&incident.updated));
                    restored.runs += 1;
                }
                IncidentState::Rejected | IncidentState::Cancelled => {}
            }
        }
        restored
    }

    /// Starts `key`'s cooldown at `from` unless a later one is known.
    fn cool_down(&mut self, i: usize, key: &str, from: i64) {
        if let Some(st) = self.states.get_mut(i) {
            let ks = st.keys.entry(key.to_string()).or_default();
            ks.last_run_ms = Some(ks.last_run_ms.map_or(from, |t| t.max(from)));
            ks.touched_ms = ks.touched_ms.max(from);
        }
    }

    /// Takes back a finished run: frees its concurrency slot and its key; the cooldown runs
    /// from now.
    pub fn finish(&mut self, incident: &Incident) {
        let now = self.clock.now_ms();
        if let Some(r) = self.running.remove(&incident.id)
            && let Some(st) = self.states.get_mut(r.playbook)
            && let Some(k) = st.keys.get_mut(&r.key)
        {
            k.open = None;
            k.last_run_ms = Some(now);
            k.touched_ms = now;
        }
    }

    fn process(
        &mut self,
        event: &Event,
        mut explain: Option<&mut Vec<PlaybookVerdict>>,
    ) -> Vec<Decision> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        if now.saturating_sub(self.last_sweep_ms) >= 60_000 || now < self.last_sweep_ms {
            self.sweep(now, &mut out);
        }
        if event.kind == APPROVE_TYPE || event.kind == REJECT_TYPE {
            self.approval(event, now, &mut out);
            return out;
        }
        // One CEL context per event, built only if some candidate or watch needs it.
        let mut ctx: Option<cel::Context<'static, 'static>> = None;
        self.watches.observe(event, &mut ctx);

        let mut candidates = std::mem::take(&mut self.candidates);
        let resolved = is_resolved(event);
        if resolved {
            // The firing twin's playbooks too: `….resolved` cancels what `….firing` started.
            self.set.candidates(&event.kind, &mut candidates);
            if let Some(base) = event.kind.strip_suffix(".resolved") {
                let mut twin = Vec::new();
                self.set.candidates(&format!("{base}.firing"), &mut twin);
                for i in twin {
                    if !candidates.contains(&i) {
                        candidates.push(i);
                    }
                }
            }
        } else {
            self.set.candidates(&event.kind, &mut candidates);
        }
        if let Some(v) = explain.as_deref_mut() {
            for p in self.set.playbooks() {
                if !p.types.iter().any(|t| t.matches(&event.kind))
                    && !candidates.iter().any(|&i| {
                        self.set
                            .playbooks()
                            .get(i)
                            .is_some_and(|c| c.name == p.name)
                    })
                {
                    v.push(PlaybookVerdict {
                        playbook: p.name.clone(),
                        verdict: Verdict::TypeMismatch {
                            expected: p.types.clone(),
                        },
                    });
                }
            }
        }
        let trigger = Arc::new(event.clone());
        for &i in &candidates {
            let Some(pb) = self.set.playbooks().get(i).cloned() else {
                continue;
            };
            let s = ctx.get_or_insert_with(|| {
                event_scope(event)
                    .with("env", self.env_value.clone())
                    .context()
            });
            if let Some(c) = &pb.condition {
                match c.eval_bool_in(s) {
                    Ok(true) => {}
                    Ok(false) => {
                        if let Some(v) = explain.as_deref_mut() {
                            v.push(PlaybookVerdict {
                                playbook: pb.name.clone(),
                                verdict: Verdict::ConditionFalse {
                                    condition: c.source().to_string(),
                                },
                            });
                        }
                        continue;
                    }
                    Err(e) => {
                        // A missing field is the common case (the event is of another
                        // shape): no match, as for a false condition.
                        if let Some(v) = explain.as_deref_mut() {
                            v.push(PlaybookVerdict {
                                playbook: pb.name.clone(),
                                verdict: Verdict::EvaluationError {
                                    field: "trigger.condition".into(),
                                    error: e,
                                },
                            });
                        }
                        continue;
                    }
                }
            }
            let key = match &pb.key {
                None => Ok(event.fingerprint.clone()),
                Some(k) => k.eval_string_in(s).map_err(|e| ("key", e)),
            };
            let key = key.and_then(|key| {
                let target = match &pb.target {
                    None => Ok(key.clone()),
                    Some(t) => t.eval_string_in(s).map_err(|e| ("target", e)),
                }?;
                Ok((key, target))
            });
            let (key, target) = match key {
                Ok(kt) => kt,
                Err((field, error)) => {
                    if let Some(v) = explain.as_deref_mut() {
                        v.push(PlaybookVerdict {
                            playbook: pb.name.clone(),
                            verdict: Verdict::EvaluationError {
                                field: field.into(),
                                error,
                            },
                        });
                    }
                    continue;
                }
            };
            if resolved && pb.guardrails.skip_resolved {
                self.cancel_for_resolved(i, &pb, &key, event, now, &mut out);
                if let Some(v) = explain.as_deref_mut() {
                    v.push(PlaybookVerdict {
                        playbook: pb.name.clone(),
                        verdict: Verdict::ResolvedAlert { key },
                    });
                }
                continue;
            }
            if resolved && !pb.types.iter().any(|t| t.matches(&event.kind)) {
                // Only here as the firing twin; a resolved event does not trigger it.
                continue;
            }
            let verdict = self.matched(i, &pb, key, target, &trigger, now, &mut out);
            if let Some(v) = explain.as_deref_mut() {
                v.push(PlaybookVerdict {
                    playbook: pb.name.clone(),
                    verdict,
                });
            }
        }
        self.candidates = candidates;
        out
    }

    /// Threshold, guardrails, incident.
    #[allow(clippy::too_many_arguments)]
    fn matched(
        &mut self,
        i: usize,
        pb: &Arc<Playbook>,
        key: String,
        target: String,
        trigger: &Arc<Event>,
        now: i64,
        out: &mut Vec<Decision>,
    ) -> Verdict {
        let limits = self.limits;
        let running_now = self.running.len();
        let Some(st) = self.states.get_mut(i) else {
            return Verdict::EvaluationError {
                field: "playbook".into(),
                error: "no state".into(),
            };
        };
        if !st.keys.contains_key(&key) && st.keys.len() >= limits.max_keys_per_playbook {
            evict_keys(&mut st.keys, limits.max_keys_per_playbook, pb, now);
            // Keys that are open or cooling down stay; past twice the limit, new keys wait.
            if st.keys.len() >= limits.max_keys_per_playbook.saturating_mul(2) {
                let reason = SuppressReason::KeysFull;
                out.push(Decision::Suppressed {
                    playbook: pb.name.clone(),
                    key: key.clone(),
                    reason,
                });
                return Verdict::Suppressed {
                    key,
                    target,
                    reason,
                };
            }
        }
        let ks = st.keys.entry(key.clone()).or_default();
        ks.touched_ms = now;
        // Threshold window.
        let cutoff = now.saturating_sub(pb.threshold.within_ms);
        ks.window.push_back(now);
        while ks.window.front().is_some_and(|&t| t <= cutoff || t > now) {
            ks.window.pop_front();
        }
        let needed = pb.threshold.count;
        while ks.window.len() > needed as usize {
            ks.window.pop_front();
        }
        let count = u32::try_from(ks.window.len()).unwrap_or(u32::MAX);
        if count < needed {
            // Like suppressions, one record per key and interval: a steady trickle that never
            // reaches the threshold must not add a trail row per event forever.
            let due = ks.last_threshold_record_ms.is_none_or(|at| {
                now.saturating_sub(at) >= limits.suppression_record_interval_ms || at > now
            });
            if due {
                let skipped = std::mem::take(&mut ks.unrecorded_threshold_matches);
                ks.last_threshold_record_ms = Some(now);
                self.journal.record(&TrailEntry {
                    at: format_rfc3339(now),
                    kind: TrailKind::ThresholdPending,
                    playbook: pb.name.clone(),
                    key: key.clone(),
                    incident_id: None,
                    event_id: Some(trigger.id.clone()),
                    detail: format!("{count} of {needed} within {}ms", pb.threshold.within_ms),
                    data: serde_json::json!({ "matches_since_last_record": skipped }),
                });
            } else {
                ks.unrecorded_threshold_matches += 1;
            }
            out.push(Decision::ThresholdPending {
                playbook: pb.name.clone(),
                key: key.clone(),
                count,
                needed,
            });
            return Verdict::ThresholdNotReached { key, count, needed };
        }
        // Guardrails, in order. A wall clock stepped back leaves times "in the future": they
        // count as now (the guardrail holds, from now on) rather than as gone.
        let g = pb.guardrails;
        if ks.last_run_ms.is_some_and(|t| t > now) {
            ks.last_run_ms = Some(now);
        }
        let reason = if ks.open.is_some() {
            Some(SuppressReason::IncidentOpen)
        } else if ks.last_run_ms.is_some_and(|t| now - t < g.cooldown_ms) {
            Some(SuppressReason::Cooldown)
        } else {
            let runs = st.runs_in_windows(&target, now, g.blast_within_ms);
            if runs >= g.max_runs_per_hour as usize {
                Some(SuppressReason::MaxRunsPerHour)
            } else if pb.mode == Mode::Enforce && running_now >= g.concurrency {
                Some(SuppressReason::Concurrency)
            } else if st.widens_blast_radius(&target, &g) {
                Some(SuppressReason::BlastRadius)
            } else if pb.mode == Mode::Approve && self.pending.len() >= limits.max_pending_approvals
            {
                Some(SuppressReason::PendingApprovalsFull)
            } else {
                None
            }
        };
        let Some(ks) = st.keys.get_mut(&key) else {
            return Verdict::EvaluationError {
                field: "key".into(),
                error: "evicted".into(),
            };
        };
        if let Some(reason) = reason {
            // A storm must not flood the trail: one record per key and reason per interval.
            let record = match ks.last_suppression {
                Some((r, at)) => {
                    r != reason || now.saturating_sub(at) >= limits.suppression_record_interval_ms
                }
                None => true,
            };
            if record {
                let skipped = std::mem::take(&mut ks.unrecorded_suppressions);
                ks.last_suppression = Some((reason, now));
                self.journal.record(&TrailEntry {
                    at: format_rfc3339(now),
                    kind: TrailKind::Suppressed,
                    playbook: pb.name.clone(),
                    key: key.clone(),
                    incident_id: ks.open.clone(),
                    event_id: Some(trigger.id.clone()),
                    detail: reason.as_str().into(),
                    data: serde_json::json!({
                        "target": self.redactor.redact(&target),
                        "suppressed_since_last_record": skipped,
                    }),
                });
            } else {
                ks.unrecorded_suppressions += 1;
            }
            out.push(Decision::Suppressed {
                playbook: pb.name.clone(),
                key: key.clone(),
                reason,
            });
            return Verdict::Suppressed {
                key,
                target,
                reason,
            };
        }
        // Acting: the window starts over.
        ks.window.clear();
        ks.last_suppression = None;
        let mut incident = Incident {
            id: uuid::Uuid::now_v7().to_string(),
            playbook: pb.name.clone(),
            key: key.clone(),
            target: target.clone(),
            state: IncidentState::Detected,
            mode: pb.mode,
            created: format_rfc3339(now),
            updated: format_rfc3339(now),
            trigger_event_id: trigger.id.clone(),
            steps: Vec::new(),
            verification: Vec::new(),
            approver: None,
            reason: None,
            trigger: None,
        };
        self.journal.record(&TrailEntry {
            at: format_rfc3339(now),
            kind: TrailKind::Matched,
            playbook: pb.name.clone(),
            key: key.clone(),
            incident_id: Some(incident.id.clone()),
            event_id: Some(trigger.id.clone()),
            detail: format!("mode {}", pb.mode.as_str()),
            data: serde_json::json!({ "target": self.redactor.redact(&target) }),
        });
        self.transition(&mut incident, IncidentState::Detected, now, None);
        let verdict = Verdict::Triggered {
            key: key.clone(),
            target: target.clone(),
            mode: pb.mode,
            incident_id: incident.id.clone(),
        };
        match pb.mode {
            Mode::DryRun => {
                if let Some(ks) = self.states.get_mut(i).and_then(|s| s.keys.get_mut(&key)) {
                    ks.last_run_ms = Some(now);
                }
                self.count_run(i, &target, now);
                incident.steps = self.preview(pb, trigger);
                self.transition(&mut incident, IncidentState::DryRun, now, None);
                out.push(Decision::DryRun(Box::new(incident)));
            }
            Mode::Approve => {
                if let Some(ks) = self.states.get_mut(i).and_then(|s| s.keys.get_mut(&key)) {
                    ks.open = Some(incident.id.clone());
                }
                incident.steps = self.preview(pb, trigger);
                incident.trigger = Some(Box::new(self.redacted_event(trigger)));
                self.transition(&mut incident, IncidentState::AwaitingApproval, now, None);
                self.pending.insert(
                    incident.id.clone(),
                    Pending {
                        playbook: i,
                        version: Arc::clone(pb),
                        incident: incident.clone(),
                        trigger: trigger.clone(),
                        since_ms: now,
                    },
                );
                out.push(Decision::AwaitingApproval(Box::new(incident)));
            }
            Mode::Enforce => {
                let plan = self.start(i, pb.clone(), incident, trigger.clone(), now);
                out.push(Decision::Remediate(Box::new(plan)));
            }
        }
        verdict
    }

    /// Counts a run against the per-target and blast-radius windows.
    fn count_run(&mut self, i: usize, target: &str, now: i64) {
        let max_targets = self.limits.max_targets_per_playbook;
        if let Some(st) = self.states.get_mut(i) {
            if !st.runs_by_target.contains_key(target) && st.runs_by_target.len() >= max_targets {
                let hour_ago = now.saturating_sub(3_600_000);
                st.runs_by_target
                    .retain(|_, q| q.back().is_some_and(|&t| t > hour_ago));
            }
            if st.runs_by_target.len() < max_targets || st.runs_by_target.contains_key(target) {
                st.runs_by_target
                    .entry(target.to_string())
                    .or_default()
                    .push_back(now);
            }
            if st.acted.len() < max_targets {
                st.acted.push_back((now, target.to_string()));
                *st.acted_targets.entry(target.to_string()).or_default() += 1;
            }
        }
    }

    /// Moves an incident to remediating and hands out its plan.
    fn start(
        &mut self,
        i: usize,
        pb: Arc<Playbook>,
        mut incident: Incident,
        trigger: Arc<Event>,
        now: i64,
    ) -> RunPlan {
        self.count_run(i, &incident.target.clone(), now);
        if let Some(ks) = self
            .states
            .get_mut(i)
            .and_then(|s| s.keys.get_mut(&incident.key))
        {
            ks.open = Some(incident.id.clone());
            ks.last_run_ms = Some(now);
        }
        self.running.insert(
            incident.id.clone(),
            Running {
                playbook: i,
                key: incident.key.clone(),
            },
        );
        incident.steps.clear();
        incident.trigger = None;
        // `remediating` is recorded by the run itself, once it may act: under scale-out an
        // agent that loses the incident's lock ends it `cancelled` without ever having
        // announced a remediation.
        RunPlan {
            incident,
            playbook: pb,
            trigger,
        }
    }

    fn preview(&self, pb: &Playbook, trigger: &Event) -> Vec<StepRecord> {
        render_steps(pb, trigger, &self.env, &self.redactor, self.clock.now_ms())
    }

    fn transition(
        &self,
        incident: &mut Incident,
        state: IncidentState,
        now: i64,
        reason: Option<String>,
    ) {
        incident.transition(state, now);
        if reason.is_some() {
            incident.reason = reason;
        }
        record_transition(
            incident,
            now,
            self.journal.as_ref(),
            self.sink.as_ref(),
            &self.redactor,
        );
    }

    fn cancel_for_resolved(
        &mut self,
        i: usize,
        pb: &Playbook,
        key: &str,
        event: &Event,
        now: i64,
        out: &mut Vec<Decision>,
    ) {
        let Some(st) = self.states.get_mut(i) else {
            return;
        };
        let Some(ks) = st.keys.get_mut(key) else {
            return;
        };
        let had_window = !ks.window.is_empty();
        ks.window.clear();
        let pending_id = ks.open.clone().filter(|id| self.pending.contains_key(id));
        if pending_id.is_some() {
            ks.open = None;
        }
        if !had_window && pending_id.is_none() {
            return;
        }
        let mut cancelled = None;
        if let Some(id) = pending_id
            && let Some(mut p) = self.pending.remove(&id)
        {
            self.transition(
                &mut p.incident,
                IncidentState::Cancelled,
                now,
                Some(format!("the alert resolved (event {})", event.id)),
            );
            cancelled = Some(Box::new(p.incident));
        }
        self.journal.record(&TrailEntry {
            at: format_rfc3339(now),
            kind: TrailKind::Suppressed,
            playbook: pb.name.clone(),
            key: key.to_string(),
            incident_id: cancelled.as_ref().map(|c| c.id.clone()),
            event_id: Some(event.id.clone()),
            detail: "resolved".into(),
            data: serde_json::json!({ "cancelled_threshold": had_window }),
        });
        out.push(Decision::Cancelled {
            playbook: pb.name.clone(),
            key: key.to_string(),
            incident: cancelled,
        });
    }

    fn approval(&mut self, event: &Event, now: i64, out: &mut Vec<Decision>) {
        let approve = event.kind == APPROVE_TYPE;
        let id = event
            .data
            .get("incident_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let approver = event
            .data
            .get("approver")
            .and_then(|v| v.as_str())
            .filter(|a| !a.is_empty())
            .map(str::to_string);
        let Some(approver) = approver else {
            out.push(Decision::ApprovalIgnored {
                incident_id: id,
                reason: "no approver named".into(),
            });
            return;
        };
        let Some(p) = self.pending.get(&id) else {
            out.push(Decision::ApprovalIgnored {
                incident_id: id,
                reason: "no incident awaiting approval has this id".into(),
            });
            return;
        };
        // Expired approvals are swept once a minute; one that expired since is not taken.
        if now.saturating_sub(p.since_ms) >= self.limits.approval_timeout_ms {
            out.push(Decision::ApprovalIgnored {
                incident_id: id,
                reason: "the approval window has expired".into(),
            });
            return;
        }
        let i = p.playbook;
        let pb = Arc::clone(&p.version);
        let kind = if approve {
            TrailKind::Approved
        } else {
            TrailKind::Rejected
        };
        // The guardrails are checked again as of now: other incidents may have run since
        // the approval was asked (two approvals on distinct targets must not exceed the blast
        // radius between them).
        let g = pb.guardrails;
        let target = p.incident.target.clone();
        let held = if !approve {
            None
        } else if self.running.len() >= g.concurrency {
            Some(SuppressReason::Concurrency)
        } else {
            match self.states.get_mut(i) {
                Some(st) => {
                    let runs = st.runs_in_windows(&target, now, g.blast_within_ms);
                    if runs >= g.max_runs_per_hour as usize {
                        Some(SuppressReason::MaxRunsPerHour)
                    } else if st.widens_blast_radius(&target, &g) {
                        Some(SuppressReason::BlastRadius)
                    } else {
                        None
                    }
                }
                None => None,
            }
        };
        if let Some(reason) = held {
            // Left waiting: the approver may approve again once the guardrail allows it.
            self.journal.record(&TrailEntry {
                at: format_rfc3339(now),
                kind: TrailKind::Suppressed,
                playbook: pb.name.clone(),
                key: p.incident.key.clone(),
                incident_id: Some(id.clone()),
                event_id: Some(event.id.clone()),
                detail: reason.as_str().into(),
                data: serde_json::json!({ "approver": approver }),
            });
            out.push(Decision::Suppressed {
                playbook: pb.name.clone(),
                key: p.incident.key.clone(),
                reason,
            });
            return;
        }
        let Some(mut p) = self.pending.remove(&id) else {
            return;
        };
        p.incident.approver = Some(approver.clone());
        self.journal.record(&TrailEntry {
            at: format_rfc3339(now),
            kind,
            playbook: pb.name.clone(),
            key: p.incident.key.clone(),
            incident_id: Some(id.clone()),
            event_id: Some(event.id.clone()),
            detail: approver,
            data: serde_json::Value::Null,
        });
        if approve {
            self.transition(&mut p.incident, IncidentState::Approved, now, None);
            let plan = self.start(i, pb, p.incident, p.trigger, now);
            out.push(Decision::Remediate(Box::new(plan)));
        } else {
            if let Some(ks) = self
                .states
                .get_mut(i)
                .and_then(|s| s.keys.get_mut(&p.incident.key))
            {
                ks.open = None;
            }
            self.transition(&mut p.incident, IncidentState::Rejected, now, None);
            out.push(Decision::Rejected(Box::new(p.incident)));
        }
    }

    /// Expires approvals waited for too long; evicts idle keys.
    fn sweep(&mut self, now: i64, out: &mut Vec<Decision>) {
        self.last_sweep_ms = now;
        let timeout = self.limits.approval_timeout_ms;
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.since_ms) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(mut p) = self.pending.remove(&id) {
                if let Some(ks) = self
                    .states
                    .get_mut(p.playbook)
                    .and_then(|s| s.keys.get_mut(&p.incident.key))
                {
                    ks.open = None;
                }
                self.transition(
                    &mut p.incident,
                    IncidentState::Cancelled,
                    now,
                    Some("no approval within the approval timeout".into()),
                );
                out.push(Decision::Cancelled {
                    playbook: p.incident.playbook.clone(),
                    key: p.incident.key.clone(),
                    incident: Some(Box::new(p.incident)),
                });
            }
        }
        for (st, pb) in self.states.iter_mut().zip(self.set.playbooks()) {
            let idle = idle_after(pb);
            st.keys
                .retain(|_, k| k.open.is_some() || now.saturating_sub(k.touched_ms) < idle);
            let hour_ago = now.saturating_sub(3_600_000);
            st.runs_by_target
                .retain(|_, q| q.back().is_some_and(|&t| t > hour_ago));
        }
    }
}

/// How long a key must be idle before its state can go: nothing it holds matters after
/// the longest of its windows.
fn idle_after(pb: &Playbook) -> i64 {
    pb.threshold
        .within_ms
        .max(pb.guardrails.cooldown_ms)
        .max(60_000)
}

/// Makes room among a playbook's keys: idle keys first, then the least recently touched
/// tenth; keys with an open incident or in their cooldown stay (evicting those would let a
/// flood of new keys undo the cooldown of the ones that ran).
fn evict_keys(keys: &mut FxHashMap<String, KeyState>, limit: usize, pb: &Playbook, now: i64) {
    let idle = idle_after(pb);
    let cooldown = pb.guardrails.cooldown_ms;
    let protected = |k: &KeyState| {
        k.open.is_some()
            || k.last_run_ms
                .is_some_and(|t| now.saturating_sub(t) < cooldown || t > now)
    };
    keys.retain(|_, k| protected(k) || now.saturating_sub(k.touched_ms) < idle);
    if keys.len() < limit {
        return;
    }
    let mut times: Vec<i64> = keys
        .values()
        .filter(|k| !protected(k))
        .map(|k| k.touched_ms)
        .collect();
    if times.is_empty() {
        return;
    }
    let k = (times.len() / 10).max(1) - 1;
    let (_, &mut threshold, _) = times.select_nth_unstable(k);
    keys.retain(|_, s| protected(s) || s.touched_ms > threshold);
}

/// The redactor of a set: `secret_env` values, `secret_file` contents, and variables with
/// secret-sounding names.
pub fn redactor_for(set: &PlaybookSet, env: &BTreeMap<String, String>) -> Redactor {
    let mut values = Vec::new();
    for name in set.secret_env() {
        if let Some(v) = env.get(name) {
            values.push(v.clone());
        }
    }
    for (name, v) in env {
        if Redactor::is_secret_name(name) {
            values.push(v.clone());
        }
    }
    for file in set.secret_files() {
        if let Ok(v) = std::fs::read_to_string(file) {
            values.push(v);
        }
    }
    Redactor::new(values)
}

/// Saves the incident, records the transition and publishes its event, all redacted.
pub fn record_transition(
    incident: &Incident,
    now: i64,
    journal: &dyn HealJournal,
    sink: &dyn EventSink,
    redactor: &Redactor,
) {
    journal.save_incident(incident);
    journal.record(&TrailEntry {
        at: format_rfc3339(now),
        kind: TrailKind::Transition,
        playbook: incident.playbook.clone(),
        key: incident.key.clone(),
        incident_id: Some(incident.id.clone()),
        event_id: None,
        detail: incident.state.as_str().into(),
        data: incident.reason.as_ref().map_or(
            serde_json::Value::Null,
            |r| serde_json::json!({ "reason": redactor.redact(r) }),
        ),
    });
    let mut event = incident.event(now);
    redactor.redact_json(&mut event.data);
    sink.publish(event);
}

#[cfg(test)]
mod tests;
