//! The pipeline thread (parsing, mining and rules are CPU work, kept off the async workers)
//! and the publisher task that puts its events on the bus.
//!
//! With every batch of events the thread sends the file sources' progress (see
//! [`crate::checkpoint`]); the publisher reports it back to the tailers only after the events
//! before it are durable. Every [`FLUSH_EVERY`], whatever the load, the thread completes the
//! pending multi-line record of each source quiet for [`IDLE_FLUSH`] by its own last line, so
//! a busy source never holds back a quiet one's events or positions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsloop_bus::{EmbeddedBus, EventBus};
use opsloop_core::Event;
use opsloop_core::time::Clock;
use opsloop_logs::events::{self, Origin};
use opsloop_logs::pipeline::LogPipeline;
use opsloop_logs::redact::Redactor;
use opsloop_logs::rules::RuleSet;
use opsloop_metrics::{AgentMetrics, Counter, RuleLabel, SourceLabel};
use opsloop_store::{Store, StoredTemplate};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::batch::{Input, LineBatch, LineProblemKind};
use crate::checkpoint::ProgressTable;
use crate::supervisor::{Supervisor, TaskError};

/// Events for the bus, and file sources' progress to report once they are durable.
pub struct Outbound {
    events: Vec<Event>,
    progress: Vec<(Arc<AtomicU64>, u64)>,
}

/// Outbound batches waiting for the publisher.
pub const OUTBOUND_CAPACITY: usize = 1_000;
/// Stack of the pipeline thread.
const PIPELINE_STACK: usize = 16 << 20;
/// How often progress is sent when no event carries it.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// How often quiet sources are checked for a record to complete.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A source quiet this long has its pending record completed (its next line may never come).
pub const IDLE_FLUSH: Duration = Duration::from_millis(500);
/// How often changed templates and rule hit counts are saved.
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// At most one `input_problem` event per source and kind this often (counters count all).
const PROBLEM_EVERY_MS: i64 = 60_000;
/// The metrics label of records from the API, whatever `source` they name (a label per
/// client-chosen name would let clients grow the metrics without bound).
pub const INGEST_SOURCE: &str = "http";

/// A rule as the API lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleStatus {
    /// Rule id.
    pub id: String,
    /// Severity name.
    pub severity: String,
    /// Description.
    pub description: String,
    /// The file it came from (`builtin` for the built-in pack).
    pub source: String,
    /// Records it matched since start.
    pub hits: u64,
}

/// The rules of `rules`, none matched yet: what the API shows before the first save.
pub fn rule_statuses(rules: &RuleSet) -> Vec<RuleStatus> {
    rules
        .rules()
        .iter()
        .map(|r| RuleStatus {
            id: r.spec.id.clone(),
            severity: r.spec.severity.as_str().into(),
            description: r.spec.description.clone(),
            source: r.source.clone(),
            hits: 0,
        })
        .collect()
}

/// What the pipeline thread works with.
pub struct PipelineParts {
    /// The analysis.
    pub pipeline: LogPipeline,
    /// Sources' input.
    pub input: mpsc::Receiver<Input>,
    /// To the publisher.
    pub outbound: mpsc::Sender<Outbound>,
    /// Where templates are saved.
    pub store: Arc<Mutex<Store>>,
    /// Counters.
    pub metrics: Arc<AgentMetrics>,
    /// The rules the API lists, refreshed with their hit counts.
    pub rules: Arc<Mutex<Vec<RuleStatus>>>,
    /// Time of input problem events and of template first/last seen.
    pub clock: Arc<dyn Clock>,
    /// The `source` of events the agent reports itself.
    pub event_source: String,
    /// The redaction the pipeline applies, for the examples the thread reports itself.
    pub redactor: Redactor,
}

/// Runs the pipeline until every sender of `input` is gone; then completes pending records,
/// publishes and saves templates.
pub fn spawn_pipeline(parts: PipelineParts) -> std::io::Result<std::thread::JoinHandle<()>> {
    let handle = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("opsloop-pipeline".into())
        // Rule conditions are evaluated recursively; bounded at load, with room to spare.
        .stack_size(PIPELINE_STACK)
        .spawn(move || run_pipeline(parts, &handle))
}

fn run_pipeline(parts: PipelineParts, handle: &tokio::runtime::Handle) {
    let PipelineParts {
        mut pipeline,
        mut input,
        outbound,
        store,
        metrics,
        rules,
        clock,
        event_source,
        redactor,
    } = parts;
    let mut out = Vec::new();
    let mut progress = ProgressTable::default();
    // Per source: (parse errors, lines processed), looked up once per batch.
    let mut counters: HashMap<Arc<str>, (Counter, Counter)> = HashMap::new();
    let ingest_processed = metrics
        .lines_processed
        .get_or_create(&SourceLabel {
            source: INGEST_SOURCE.to_string(),
        })
        .clone();
    let mut problems = ProblemReporter {
        redactor,
        ..ProblemReporter::default()
    };
    let mut templates = TemplateSaver::default();
    let mut last_save = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_flush = Instant::now();
    let mut redactions = 0;
    loop {
        let next = handle.block_on(async { tokio::time::timeout(FLUSH_EVERY, input.recv()).await });
        let mut done = false;
        match next {
            Ok(Some(Input::Lines(batch))) => {
                let (errors, processed) =
                    counters
                        .entry(Arc::clone(&batch.source))
                        .or_insert_with(|| {
                            let label = SourceLabel {
                                source: batch.source.to_string(),
                            };
                            (
                                metrics.parse_errors.get_or_create(&label).clone(),
                                metrics.lines_processed.get_or_create(&label).clone(),
                            )
                        });
                let mut lines = 0;
                for line in batch.lines() {
                    lines += 1;
                    if pipeline
                        .push_line(&batch.source, line, &mut out)
                        .parse_failed
                    {
                        errors.inc();
                    }
                }
                processed.inc_by(lines);
                problems.note(&batch, clock.now_ms());
                if let Some((durable, sent)) = batch.progress {
                    progress.sent(batch.source, durable, sent);
                }
            }
            Ok(Some(Input::Record(rec))) => {
                ingest_processed.inc();
                pipeline.push_record(rec, &mut out);
            }
            Ok(Some(Input::Rules(new))) => {
                if let Ok(mut r) = rules.lock() {
                    *r = rule_statuses(&new);
                }
                pipeline.replace_rules(*new);
            }
            Ok(Some(Input::Source(name, spec))) => {
                // The last run's held record is completed first: its events go out with
                // this batch (a file's lines after its saved position are read again).
                pipeline.restart_source(&name, spec, &mut out);
                progress.reset(&name);
            }
            Ok(Some(Input::Redactor(r))) => {
                problems.redactor = (*r).clone();
                pipeline.set_redactor(*r);
            }
            Ok(Some(Input::Event(event))) => out.push(*event),
            #[cfg(test)]
            Ok(Some(Input::Panic)) => panic!("injected pipeline failure"),
            Ok(None) => {
                pipeline.flush_all(&mut out);
                done = true;
            }
            Err(_) => {}
        }
        if last_flush.elapsed() >= FLUSH_EVERY {
            pipeline.flush_idle(IDLE_FLUSH, &mut out);
            problems.report(&event_source, clock.now_ms(), done, &mut out);
            last_flush = Instant::now();
        }
        if done {
            problems.report(&event_source, clock.now_ms(), true, &mut out);
        }
        if !out.is_empty() || done || last_progress.elapsed() >= PROGRESS_EVERY {
            let complete = progress.complete(|s| pipeline.held_lines(s));
            if !out.is_empty() || !complete.is_empty() {
                count_events(&out, &metrics, &pipeline);
                count_redactions(&pipeline, &metrics, &mut redactions);
                let batch = Outbound {
                    events: std::mem::take(&mut out),
                    progress: complete,
                };
                if outbound.blocking_send(batch).is_err() {
                    // The publisher is gone (the supervisor stops the agent): nothing more
                    // can become durable.
                    return;
                }
            }
            last_progress = Instant::now();
        }
        if done || last_save.elapsed() >= SAVE_EVERY {
            templates.save(&store, &pipeline, clock.now_ms());
            if let Ok(mut info) = rules.lock() {
                *info = pipeline
                    .rule_hits()
                    .into_iter()
                    .map(|(r, hits)| RuleStatus {
                        id: r.spec.id.clone(),
                        severity: r.spec.severity.as_str().into(),
                        description: r.spec.description.clone(),
                        source: r.source.clone(),
                        hits,
                    })
                    .collect();
            }
            last_save = Instant::now();
        }
        if done {
            return;
        }
    }
}

fn count_events(out: &[Event], metrics: &AgentMetrics, pipeline: &LogPipeline) {
    for e in out
        .iter()
        .filter(|e| e.kind == opsloop_core::event::types::LOG_RULE_MATCHED)
    {
        if let Some(rule) = &e.subject {
            metrics
                .rule_hits
                .get_or_create(&RuleLabel { rule: rule.clone() })
                .inc();
        }
    }
    metrics.templates.set(pipeline.template_count() as i64);
}

/// Adds the pipeline's redactions since the last call to the counter.
fn count_redactions(pipeline: &LogPipeline, metrics: &AgentMetrics, counted: &mut u64) {
    let now = pipeline.redactions();
    metrics.log_redactions.inc_by(now.saturating_sub(*counted));
    *counted = now;
}

/// Cut and invalid lines per source, reported as `input_problem` events: the first of a kind
/// at once, then at most one per [`PROBLEM_EVERY_MS`] with the count since the last.
#[derive(Default)]
struct ProblemReporter {
    sources: HashMap<(Arc<str>, LineProblemKind), PendingProblem>,
    /// Examples are stored in events: secrets in them are redacted like in records.
    redactor: Redactor,
}

#[derive(Default)]
struct PendingProblem {
    count: u64,
    example: Option<String>,
    last_event_ms: Option<i64>,
}

impl ProblemReporter {
    fn note(&mut self, batch: &LineBatch, _now_ms: i64) {
        let p = &batch.problems;
        for (kind, n) in [
            (LineProblemKind::Cut, p.cut),
            (LineProblemKind::InvalidUtf8, p.invalid_utf8),
        ] {
            if n == 0 {
                continue;
            }
            let pending = self
                .sources
                .entry((Arc::clone(&batch.source), kind))
                .or_default();
            pending.count += n;
            if pending.example.is_none() {
                // The first line of this kind in the batch (the batch's first problem when it
                // is of this kind, else its first line: a good enough example).
                let index = p.first.filter(|(_, k)| *k == kind).map_or(0, |(i, _)| i);
                pending.example = batch.line(index).map(|l| {
                    let mut example = short(l).to_string();
                    self.redactor.redact(&mut example);
                    example
                });
            }
        }
    }

    fn report(&mut self, event_source: &str, now_ms: i64, all: bool, out: &mut Vec<Event>) {
        for ((source, kind), p) in &mut self.sources {
            if p.count == 0 {
                continue;
            }
            // A clock moved back counts as due (never silence problems for long).
            let due = p
                .last_event_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= PROBLEM_EVERY_MS || now_ms < t);
            if !due && !all {
                continue;
            }
            let origin = Origin {
                source: event_source,
                input: source,
            };
            out.push(events::input_problem(
                &origin,
                kind.as_str(),
                now_ms,
                serde_json::json!({
                    "count": p.count,
                    "example": p.example.take().unwrap_or_default(),
                }),
            ));
            p.count = 0;
            p.last_event_ms = Some(now_ms);
        }
    }
}

/// At most this much of a line goes into an event as an example.
const EXAMPLE_CHARS: usize = 512;

fn short(line: &str) -> &str {
    match line.char_indices().nth(EXAMPLE_CHARS) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

/// Saves templates whose count changed since the last save; first and last seen are the
/// save times around the change (within [`SAVE_EVERY`]).
#[derive(Default)]
struct TemplateSaver {
    saved: HashMap<String, u64>,
}

/// Templates remembered as saved; beyond this the memory is cleared and all are saved again.
const MAX_REMEMBERED: usize = 200_000;

impl TemplateSaver {
    fn save(&mut self, store: &Mutex<Store>, pipeline: &LogPipeline, now_ms: i64) {
        if self.saved.len() > MAX_REMEMBERED {
            self.saved.clear();
        }
        let changed: Vec<StoredTemplate> = pipeline
            .templates()
            .into_iter()
            .filter_map(|(id, template, count)| {
                let id = id.to_string();
                let before = self.saved.get(&id).copied();
                if before == Some(count) {
                    return None;
                }
                self.saved.insert(id.clone(), count);
                Some(StoredTemplate {
                    id,
                    template,
                    count,
                    first_seen_ms: before.is_none().then_some(now_ms),
                    last_seen_ms: Some(now_ms),
                })
            })
            .collect();
        if changed.is_empty() {
            return;
        }
        let result = store
            .lock()
            .map_err(|_| "store lock poisoned".to_string())
            .and_then(|mut s| s.upsert_templates(&changed).map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::error!(error = %e, "saving templates failed; retrying at the next save");
            // Forget what failed so that the next save writes it again.
            for t in &changed {
                self.saved.remove(&t.id);
            }
        }
    }
}

/// Publishes outbound batches in order; a batch's progress is reported only after its events
/// (and so all before them) are on the bus. A failing store is retried, not skipped: skipping
/// would let a tailer save a position past lines whose events were lost. While it fails the
/// publisher reports itself degraded (`/readyz` 503).
pub async fn publish(
    mut outbound: mpsc::Receiver<Outbound>,
    bus: EmbeddedBus,
    metrics: Arc<AgentMetrics>,
    supervisor: Supervisor,
) -> Result<(), TaskError> {
    while let Some(batch) = outbound.recv().await {
        if !batch.events.is_empty() {
            let span = tracing::info_span!("events.publish", events = batch.events.len());
            publish_until_stored(&bus, batch.events, &metrics, &supervisor)
                .instrument(span)
                .await;
        }
        for (durable, through) in batch.progress {
            durable.fetch_max(through, Ordering::AcqRel);
        }
    }
    Ok(())
}

/// Publishes `events`, retrying with backoff while the store fails.
async fn publish_until_stored(
    bus: &EmbeddedBus,
    events: Vec<Event>,
    metrics: &AgentMetrics,
    supervisor: &Supervisor,
) {
    let events: Arc<[Event]> = events.into();
    let mut delay = Duration::from_millis(100);
    loop {
        match bus.publish(Arc::clone(&events)).await {
            Ok(n) => {
                metrics.events_published.inc_by(n as u64);
                supervisor.set_degraded("publisher", false);
                return;
            }
            Err(e) => {
                metrics.publish_failures.inc();
                supervisor.set_degraded("publisher", true);
                tracing::error!(error = %e, events = events.len(), "publishing events failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsloop_core::time::SystemClock;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_the_pipeline_thread_stops_the_agent() {
        let metrics = Arc::new(AgentMetrics::default());
        let supervisor = Supervisor::new(Arc::clone(&metrics));
        supervisor.set_started();
        let (input_tx, input_rx) = mpsc::channel(8);
        let (outbound_tx, _outbound_rx) = mpsc::channel(8);
        let rules = RuleSet::compile(&[]).unwrap();
        let thread = spawn_pipeline(PipelineParts {
            pipeline: LogPipeline::new(
                rules,
                opsloop_logs::miner::MinerConfig::default(),
                opsloop_logs::anomaly::AnomalyConfig::default(),
                "/test",
            ),
            input: input_rx,
            outbound: outbound_tx,
            store: Arc::new(Mutex::new(Store::in_memory().unwrap())),
            metrics: Arc::clone(&metrics),
            rules: Arc::new(Mutex::new(Vec::new())),
            clock: Arc::new(SystemClock),
            event_source: "/test".into(),
            redactor: Redactor::default(),
        })
        .unwrap();
        supervisor.watch_thread("pipeline", thread);
        assert!(supervisor.is_ready());
        input_tx.send(Input::Panic).await.unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(30), supervisor.fatal())
            .await
            .unwrap();
        assert!(reason.contains("injected pipeline failure"), "{reason}");
        assert!(!supervisor.is_ready(), "/readyz turns 503");
        assert_eq!(
            metrics
                .task_failures
                .get_or_create(&opsloop_metrics::TaskLabel {
                    task: "pipeline".into()
                })
                .get(),
            1
        );
    }

    #[test]
    fn problems_are_reported_first_at_once_then_once_a_minute_with_counts() {
        let source: Arc<str> = Arc::from("app");
        let mut r = ProblemReporter::default();
        let mut out = Vec::new();
        let mut batch = LineBatch::new(&source);
        batch.push_flagged("ok", false, false);
        batch.push_flagged("cut one password=hunter2", true, false);
        r.note(&batch, 0);
        r.report("/agent", 1_000, false, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data["kind"], "cut_lines");
        assert_eq!(out[0].data["count"], 1);
        assert_eq!(out[0].data["example"], "cut one password=<redacted>");
        out.clear();
        for _ in 0..3 {
            r.note(&batch, 0);
        }
        r.report("/agent", 30_000, false, &mut out);
        assert!(out.is_empty(), "rate limited");
        r.report("/agent", 61_000, false, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data["count"], 3);
    }
}
