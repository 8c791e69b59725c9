//! Benchmark of the heal engine on one thread:
//!
//! 1. matching throughput: events/s through [`HealEngine::handle`] with 100 playbooks
//!    loaded (type index, CEL condition, key, threshold, guardrails), for a spread of event
//!    types and for the worst case of every playbook on one type;
//! 2. latency: event → first step started, in-process (a recording runner), p50/p99/max.
//!
//! With `--store`, decisions and incidents go where the agent writes them: the audit trail
//! and incidents tables of a file store (WAL, one transaction per record), and the incident
//! events into its event log; without it, to a null journal (the engine alone).
//!
//! Run: `cargo run --release -p opsloop-heal --bin heal_bench [-- --store --events N --playbooks N]`

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use opsloop_core::Event;
use opsloop_core::time::ManualClock;
use opsloop_heal::action::RecordingRunner;
use opsloop_heal::engine::{Decision, EventSink};
use opsloop_heal::incident::{HealJournal, NullJournal};
use opsloop_heal::run::run_incident;
use opsloop_heal::store_journal::StoreJournal;
use opsloop_heal::{HealEngine, PlaybookSet};
use opsloop_store::Store;

struct NullSink;

impl EventSink for NullSink {
    fn publish(&self, _event: Event) {}
}

/// The incident events into the store's event log, as the embedded bus writes them.
struct StoreSink(Arc<Mutex<Store>>);

impl EventSink for StoreSink {
    fn publish(&self, event: Event) {
        if let Ok(mut store) = self.0.lock() {
            // Stored "now" on the bench clock's epoch; retention never runs here.
            let _ = store.append_events(std::slice::from_ref(&event), 1_700_000_000_000);
        }
    }
}

/// The store every engine of the run writes to, when `--store` was given.
static STORE: OnceLock<Arc<Mutex<Store>>> = OnceLock::new();

/// `n` playbooks; playbook `i` triggers on `type_of(i)` with a condition on the alert name.
fn playbooks(n: usize, types: usize, threshold: u32) -> String {
    let mut y = String::from("playbooks:\n");
    for i in 0..n {
        y.push_str(&format!(
            r#"  - name: pb-{i}
    trigger:
      type: io.opsloop.bench.t{t}
      condition: 'event.data.labels.alertname == "A{i}"'
    key: 'event.data.labels.instance'
    threshold: {{ count: {threshold}, within: 1m }}
    mode: enforce
    guardrails: {{ cooldown: 1m, concurrency: 1000, max_runs_per_hour: 1000000, blast_radius: {{ max_targets: 1000000, within: 1h }} }}
    steps:
      - exec: {{ command: [/bin/true, '${{{{ event.data.labels.instance }}}}'] }}
"#,
            t = i % types.max(1),
        ));
    }
    y
}

fn event(kind: &str, alert: &str, instance: &str) -> Event {
    Event::new(
        kind,
        "/bench",
        Some(alert),
        0,
        serde_json::json!({
            "status": "firing",
            "labels": { "alertname": alert, "instance": instance, "severity": "warning" },
            "annotations": { "summary": "bench" },
        }),
    )
}

fn new_engine(yaml: &str, clock: Arc<ManualClock>) -> Result<HealEngine, String> {
    let set = PlaybookSet::from_yaml(yaml, "bench").map_err(|e| e.to_string())?;
    let (journal, sink): (Arc<dyn HealJournal>, Arc<dyn EventSink>) = match STORE.get() {
        Some(store) => (
            Arc::new(StoreJournal::new(
                Arc::clone(store),
                clock.clone(),
                Arc::new(AtomicU64::new(0)),
            )),
            Arc::new(StoreSink(Arc::clone(store))),
        ),
        None => (Arc::new(NullJournal), Arc::new(NullSink)),
    };
    Ok(HealEngine::new(set, clock, journal, sink, BTreeMap::new()))
}

/// Events/s through `handle`; every incident is finished at once so guardrails stay live.
fn throughput(label: &str, yaml: &str, events: &[Event]) -> Result<f64, String> {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut engine = new_engine(yaml, clock.clone())?;
    let start = Instant::now();
    let mut incidents = 0usize;
    for (i, e) in events.iter().enumerate() {
        if i % 100 == 0 {
            clock.advance(Duration::from_millis(5));
        }
        for d in engine.handle(e) {
            if let Decision::Remediate(plan) = d {
                incidents += 1;
                engine.finish(&plan.incident);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = events.len() as f64 / secs;
    println!(
        "{label}: {} events in {secs:.3} s = {rate:.0} events/s ({incidents} incidents opened, {} keys tracked)",
        events.len(),
        engine.tracked_keys()
    );
    Ok(rate)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or_default()
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), String> {
    let n_events = arg("--events", 200_000);
    let n_playbooks = arg("--playbooks", 100);
    let store_dir = std::env::temp_dir().join(format!("heal-bench-{}", std::process::id()));
    if std::env::args().any(|a| a == "--store") {
        std::fs::create_dir_all(&store_dir).map_err(|e| e.to_string())?;
        let store = Store::open(&store_dir).map_err(|e| e.to_string())?;
        let _ = STORE.set(Arc::new(Mutex::new(store)));
        println!(
            "journal: file store in {} (trail, incidents, events)",
            store_dir.display()
        );
    } else {
        println!("journal: none (the engine alone; --store for the agent's path)");
    }
    let result = run(n_events, n_playbooks);
    if let Some(store) = STORE.get()
        && let Ok(store) = store.lock()
    {
        let records = store.trail_head().ok().flatten().map_or(0, |(seq, _)| seq);
        println!("trail records written: {records}");
    }
    let _ = std::fs::remove_dir_all(&store_dir);
    result
}

fn run(n_events: usize, n_playbooks: usize) -> Result<(), String> {
    let load_start = Instant::now();
    let spread_yaml = playbooks(n_playbooks, 50, 3);
    let _ = new_engine(&spread_yaml, Arc::new(ManualClock::new(0)))?;
    println!(
        "loaded and compiled {n_playbooks} playbooks in {:.1} ms",
        load_start.elapsed().as_secs_f64() * 1000.0
    );

    // 1a. A realistic spread: 100 event types, half of them with no playbook; two playbooks
    //     per type with a playbook, one of which matches the alert name; 1,000 instances.
    let spread: Vec<Event> = (0..n_events)
        .map(|i| {
            let t = i % 100;
            let pb = if t < 50 {
                t + 50 * ((i / 100) % 2)
            } else {
                i % n_playbooks.max(1)
            };
            event(
                &format!("io.opsloop.bench.t{t}"),
                &format!("A{pb}"),
                &format!("host-{}", (i * 7919) % 1000),
            )
        })
        .collect();
    let spread_rate = throughput("matching, 100 types (spread)", &spread_yaml, &spread)?;

    // 1b. Worst case: every playbook on the one type of every event (100 CEL conditions
    //     per event).
    let worst_yaml = playbooks(n_playbooks, 1, 3);
    let worst: Vec<Event> = spread
        .iter()
        .take(n_events / 10)
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.clone();
            e.kind = "io.opsloop.bench.t0".into();
            e.data["labels"]["alertname"] =
                serde_json::json!(format!("A{}", i % n_playbooks.max(1)));
            e
        })
        .collect();
    throughput("matching, 1 type (worst case)", &worst_yaml, &worst)?;

    // 2. Event → first step started, in-process: each event opens an incident (a new key,
    //    threshold 1) whose run starts with a recorded exec.
    let latency_yaml = playbooks(n_playbooks, 50, 1);
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let mut engine = new_engine(&latency_yaml, clock.clone())?;
    let runner = Arc::new(RecordingRunner::default());
    let deps = engine.run_deps(runner.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let samples = (n_events / 20).clamp(100, 20_000);
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let pb = i % n_playbooks.max(1);
        let e = event(
            &format!("io.opsloop.bench.t{}", pb % 50),
            &format!("A{pb}"),
            &format!("lat-{i}"),
        );
        clock.advance(Duration::from_millis(1));
        runner.clear();
        let start = tokio::time::Instant::now();
        for d in engine.handle(&e) {
            if let Decision::Remediate(plan) = d {
                let done = rt.block_on(run_incident(*plan, &deps));
                engine.finish(&done);
            }
        }
        if let Some(first) = runner.instants().first() {
            latencies.push(first.duration_since(start));
        }
    }
    latencies.sort_unstable();
    let p99 = percentile(&latencies, 0.99);
    println!(
        "event -> first step started ({} incidents): p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        p99,
        latencies.last().copied().unwrap_or_default()
    );
    // 2b. The same through the loop task (channel, engine task, one task per incident).
    let engine2 = new_engine(&latency_yaml, clock.clone())?;
    let runner2 = Arc::new(RecordingRunner::default());
    let mut via_loop = Vec::with_capacity(samples);
    rt.block_on(async {
        let (handle, task) = opsloop_heal::driver::spawn(engine2, runner2.clone());
        for i in 0..samples {
            let pb = i % n_playbooks.max(1);
            let e = event(
                &format!("io.opsloop.bench.t{}", pb % 50),
                &format!("A{pb}"),
                &format!("loop-{i}"),
            );
            let start = tokio::time::Instant::now();
            if handle.send(e).await.is_err() {
                break;
            }
            runner2.wait_for(i + 1).await;
            if let Some(t) = runner2.instants().last() {
                via_loop.push(t.duration_since(start));
            }
        }
        drop(handle);
        let _ = task.await;
    });
    via_loop.sort_unstable();
    let p99_loop = percentile(&via_loop, 0.99);
    println!(
        "event -> first step started through the loop task ({} incidents): p50 {:?}, p99 {:?}, max {:?}",
        via_loop.len(),
        percentile(&via_loop, 0.5),
        p99_loop,
        via_loop.last().copied().unwrap_or_default()
    );
    let p99 = p99.max(p99_loop);
    println!(
        "targets: >= 20000 events/s ({}), p99 < 20 ms ({})",
        if spread_rate >= 20_000.0 {
            "met"
        } else {
            "NOT met"
        },
        if p99 < Duration::from_millis(20) {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
