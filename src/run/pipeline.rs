//! The pipeline thread (parsing, mining and rules are CPU work, kept off the async workers)
//! and the publisher task that puts its events on the bus.
//!
//! With every batch of events the thread sends the file sources' progress: how many of each
//! tailer's lines are complete (no longer held in a multi-line record). The publisher reports
//! that progress back to the tailers only after the events before it are durable, which is
//! what lets tailers save positions that a crash cannot skip past.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsloop_bus::{EmbeddedBus, EventBus};
use opsloop_core::Event;
use opsloop_logs::pipeline::LogPipeline;
use opsloop_server::{AgentMetrics, Counter, RuleInfo, RuleLabel, SourceLabel};
use opsloop_store::{Store, StoredTemplate};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::sources::{INGEST_SOURCE, Input};

/// Events for the bus, and file sources' progress to report once they are durable.
pub struct Outbound {
    events: Vec<Event>,
    progress: Vec<(Arc<AtomicU64>, u64)>,
}

/// Outbound batches waiting for the publisher.
pub const OUTBOUND_CAPACITY: usize = 1_000;
/// How often progress is sent when no event carries it.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// A file source's last batch: its tailer's count through that batch, and where to report.
struct Progress {
    durable: Arc<AtomicU64>,
    sent: u64,
    reported: u64,
}

/// Runs the pipeline until every sender of `input` is gone; then completes pending records,
/// publishes and saves templates.
pub fn spawn_pipeline(
    mut pipeline: LogPipeline,
    mut input: mpsc::Receiver<Input>,
    outbound: mpsc::Sender<Outbound>,
    store: Arc<Mutex<Store>>,
    metrics: Arc<AgentMetrics>,
    rule_info: Arc<Mutex<Vec<RuleInfo>>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let handle = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("opsloop-pipeline".into())
        .spawn(move || {
            let mut out = Vec::new();
            let mut progress: HashMap<Arc<str>, Progress> = HashMap::new();
            // Per source: (parse errors, lines processed), looked up once per batch.
            let mut counters: HashMap<Arc<str>, (Counter, Counter)> = HashMap::new();
            let ingest_processed = metrics
                .lines_processed
                .get_or_create(&SourceLabel {
                    source: INGEST_SOURCE.to_string(),
                })
                .clone();
            let mut last_save = Instant::now();
            let mut last_progress = Instant::now();
            loop {
                let next = handle.block_on(async {
                    tokio::time::timeout(Duration::from_millis(500), input.recv()).await
                });
                let mut done = false;
                match next {
                    Ok(Some(Input::Lines(batch))) => {
                        let (errors, processed) = counters
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
                        if let Some((durable, sent)) = batch.progress {
                            let p = progress.entry(batch.source).or_insert(Progress {
                                durable,
                                sent: 0,
                                reported: 0,
                            });
                            p.sent = sent;
                        }
                    }
                    Ok(Some(Input::Record(rec))) => {
                        ingest_processed.inc();
                        pipeline.push_record(rec, &mut out);
                    }
                    Ok(Some(Input::Rules(rules))) => pipeline.replace_rules(*rules),
                    Ok(Some(Input::Source(name, spec))) => {
                        // A (re)started source: its tailer counts from zero again.
                        progress.remove(name.as_str());
                        pipeline.add_source(&name, spec);
                    }
                    Ok(None) => {
                        pipeline.flush_all(&mut out);
                        done = true;
                    }
                    Err(_) => pipeline.flush_idle(Duration::from_millis(500), &mut out),
                }
                let due = last_progress.elapsed() >= PROGRESS_EVERY;
                if !out.is_empty() || due || done {
                    let complete: Vec<(Arc<AtomicU64>, u64)> = progress
                        .iter_mut()
                        .filter_map(|(source, p)| {
                            let through = p.sent.saturating_sub(pipeline.held_lines(source));
                            (through > p.reported).then(|| {
                                p.reported = through;
                                (Arc::clone(&p.durable), through)
                            })
                        })
                        .collect();
                    if !out.is_empty() || !complete.is_empty() {
                        count_events(&out, &metrics, &pipeline);
                        let batch = Outbound {
                            events: std::mem::take(&mut out),
                            progress: complete,
                        };
                        let _ = outbound.blocking_send(batch);
                    }
                    last_progress = Instant::now();
                }
                if done {
                    save_templates(&store, &pipeline);
                    break;
                }
                if last_save.elapsed() >= Duration::from_secs(5) {
                    save_templates(&store, &pipeline);
                    if let Ok(mut info) = rule_info.lock() {
                        *info = pipeline
                            .rule_hits()
                            .into_iter()
                            .map(|(r, hits)| RuleInfo {
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
            }
        })
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

/// Publishes outbound batches in order; a batch's progress is reported only after its events
/// (and so all before them) are on the bus. A failing store is retried, not skipped: skipping
/// would let a tailer save a position past lines whose events were lost.
pub async fn publish(
    mut outbound: mpsc::Receiver<Outbound>,
    bus: EmbeddedBus,
    metrics: Arc<AgentMetrics>,
) {
    while let Some(batch) = outbound.recv().await {
        if !batch.events.is_empty() {
            let span = tracing::info_span!("events.publish", events = batch.events.len());
            publish_until_stored(&bus, batch.events, &metrics)
                .instrument(span)
                .await;
        }
        for (durable, through) in batch.progress {
            durable.fetch_max(through, Ordering::AcqRel);
        }
    }
}

/// Publishes `events`, retrying with backoff while the store fails.
async fn publish_until_stored(bus: &EmbeddedBus, events: Vec<Event>, metrics: &AgentMetrics) {
    let events: Arc<[Event]> = events.into();
    let mut delay = Duration::from_millis(100);
    loop {
        match bus.publish(Arc::clone(&events)).await {
            Ok(n) => {
                metrics.events_published.inc_by(n as u64);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, events = events.len(), "publishing events failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn save_templates(store: &Mutex<Store>, pipeline: &LogPipeline) {
    let templates: Vec<StoredTemplate> = pipeline
        .templates()
        .into_iter()
        .map(|(id, template, count)| StoredTemplate {
            id: id.to_string(),
            template,
            count,
            first_seen_ms: None,
            last_seen_ms: None,
        })
        .collect();
    if let Ok(mut s) = store.lock()
        && let Err(e) = s.upsert_templates(&templates)
    {
        tracing::error!(error = %e, "saving templates failed");
    }
}
