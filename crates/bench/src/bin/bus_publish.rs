//! Publish throughput of the event buses: the embedded one (SQLite outbox) and NATS JetStream
//! (a real `nats-server -js` started on a free loopback port; `$NATS_SERVER` or `nats-server`
//! on `PATH`, 2.10 or newer). Prints one JSON object per bus.
//!
//! `bus_publish [EVENTS] [BATCH] [embedded|jetstream]` (defaults 200000, 1000, both).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use opsloop_bus::jetstream::{JetStreamBus, JetStreamOptions};
use opsloop_bus::testing::NatsServer;
use opsloop_bus::{EmbeddedBus, EventBus};
use opsloop_core::Event;

/// Events shaped like the agent's rule hits.
fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            Event::new(
                "io.opsloop.log.rule_matched",
                "opsloop/agent/bench",
                Some("http-5xx"),
                1_795_000_000_000 + i as i64,
                serde_json::json!({
                    "rule": "http-5xx",
                    "severity": "warning",
                    "input": "nginx",
                    "message": format!("10.0.0.{} - - \"GET /api/orders/{i} HTTP/1.1\" 502 157", i % 250),
                    "template_id": "t-4f1c",
                    "fields": {"status": 502, "path": format!("/api/orders/{i}")},
                }),
            )
        })
        .collect()
}

async fn measure<B: EventBus>(bus: &B, name: &str, n: usize, batch: usize) -> anyhow::Result<()> {
    // Built before the clock starts: the figure is the bus's, not the event builder's.
    let mut batches: Vec<Vec<Event>> = Vec::new();
    for event in events(n) {
        match batches.last_mut() {
            Some(last) if last.len() < batch => last.push(event),
            _ => batches.push(vec![event]),
        }
    }
    let start = Instant::now();
    let mut published = 0;
    for chunk in batches {
        published += bus.publish(chunk.into()).await?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "bus": name,
            "events": published,
            "batch": batch,
            "seconds": secs,
            "events_per_s": published as f64 / secs,
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let batch: usize = args.next().map_or(Ok(1_000), |a| a.parse())?;
    let only = args.next();
    let wanted = |bus: &str| only.as_deref().is_none_or(|o| o == bus);
    let dir = tempfile::tempdir()?;

    if wanted("embedded") {
        let store = opsloop_store::Store::open(&dir.path().join("store"))?;
        let embedded = EmbeddedBus::new(Arc::new(Mutex::new(store)))?;
        measure(&embedded, "embedded", n, batch).await?;
    }
    if !wanted("jetstream") {
        return Ok(());
    }
    let server = NatsServer::start(&dir.path().join("nats"));
    let options = JetStreamOptions::new(server.url(), "opsloop-bench");
    let jetstream = JetStreamBus::connect(&options)
        .await
        .context("connect to nats-server")?;
    measure(&jetstream, "jetstream", n, batch).await?;
    Ok(())
}
