//! The JetStream bus against a real `nats-server -js`: dedup by `Nats-Msg-Id`, durable pull
//! consumers with redelivery, and the outbox relay across server outages.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opsloop_bus::jetstream::{JetStreamBus, JetStreamOptions};
use opsloop_bus::relay::{RelayStatus, relay_to_jetstream};
use opsloop_bus::testing::NatsServer;
use opsloop_bus::{EmbeddedBus, EventBus, Subscription};
use opsloop_core::Event;
use opsloop_store::Store;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

fn events(n: usize, tag: &str) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let kind = if i % 2 == 0 {
                "io.opsloop.test.even"
            } else {
                "io.opsloop.test.odd"
            };
            let subject = format!("{tag}-{i}");
            Event::new(
                kind,
                "test",
                Some(&subject),
                opsloop_core::time::now_ms(),
                serde_json::json!({ "i": i, "tag": tag }),
            )
        })
        .collect()
}

fn options(server: &NatsServer) -> JetStreamOptions {
    let mut o = JetStreamOptions::new(server.url(), "TEST_EVENTS");
    o.ack_wait = Duration::from_secs(1);
    o.timeout = Duration::from_secs(2);
    o
}

async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads everything the durable consumer `name` has, acknowledging as it goes.
async fn drain(bus: &JetStreamBus, name: &str, expect: usize) -> Vec<Event> {
    let mut sub = bus
        .subscribe(name)
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let mut seen = Vec::new();
    while seen.len() < expect {
        let batch = tokio::time::timeout(Duration::from_secs(20), sub.next(500))
            .await
            .unwrap_or_else(|_| panic!("only {} of {expect} events arrived", seen.len()))
            .unwrap_or_else(|e| panic!("next: {e}"));
        let last = batch.last().map(|d| d.seq).unwrap_or_default();
        seen.extend(batch.into_iter().map(|d| d.event));
        sub.ack(last).await.unwrap_or_else(|e| panic!("ack: {e}"));
    }
    seen
}

#[test]
fn jetstream_dedups_by_event_id_and_redelivers_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    runtime().block_on(async {
        let bus = JetStreamBus::connect(&options(&server))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let batch = events(10, "a");
        assert_eq!(bus.publish(batch.clone().into()).await.ok(), Some(10));
        // The same ids again: JetStream drops them all.
        assert_eq!(bus.publish(batch.clone().into()).await.ok(), Some(0));

        // A consumer takes 10, acknowledges the first 4 and goes away.
        let mut sub = bus.subscribe("healer").await.unwrap();
        let mut got = Vec::new();
        while got.len() < 10 {
            got.extend(sub.next(10).await.unwrap());
        }
        assert_eq!(
            got.iter().map(|d| d.event.id.clone()).collect::<Vec<_>>(),
            batch.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
        );
        assert_eq!(got[0].event, batch[0]);
        sub.ack(got[3].seq).await.unwrap();
        drop(sub);

        // The durable consumer, resumed, gets the 6 unacknowledged ones again (after ack_wait).
        let again = drain(&bus, "healer", 6).await;
        let ids: Vec<_> = again.iter().map(|e| e.id.clone()).collect();
        let want: Vec<_> = batch[4..].iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, want);
        // Subject per type.
        assert_eq!(
            JetStreamBus::subject(&batch[1]),
            "opsloop.events.io.opsloop.test.odd"
        );
    });
}

#[test]
fn relay_forwards_the_outbox_across_server_outages_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("store: {e}"));
    let outbox = EmbeddedBus::new(Arc::new(Mutex::new(store))).unwrap();
    let mut server = NatsServer::start(&dir.path().join("nats"));
    // The server is down when the agent starts: events wait in the outbox.
    server.kill();
    runtime().block_on(async {
        let status = Arc::new(RelayStatus::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let relay = tokio::spawn(relay_to_jetstream(
            outbox.clone(),
            options(&server),
            Arc::clone(&status),
            stopped,
        ));
        outbox.publish(events(300, "down").into()).await.unwrap();
        until("a failed attempt", || async {
            (status.failures.load(Ordering::Relaxed) > 0).then_some(())
        })
        .await;
        assert_eq!(status.position.load(Ordering::Relaxed), 0);

        server.restart();
        until("the backlog forwarded", || async {
            (status.position.load(Ordering::Relaxed) == 300).then_some(())
        })
        .await;

        // Killed again while the agent keeps producing, then back.
        server.kill();
        outbox.publish(events(200, "outage").into()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.restart();
        outbox.publish(events(100, "after").into()).await.unwrap();
        until("everything forwarded", || async {
            (status.position.load(Ordering::Relaxed) == 600).then_some(())
        })
        .await;
        let _ = stop.send(true);
        let _ = relay.await;

        let bus = JetStreamBus::connect(&options(&server))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let got = drain(&bus, "check", 600).await;
        let mut ids: Vec<_> = got.iter().map(|e| e.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 600, "every event exactly once in the stream");
        assert_eq!(status.forwarded.load(Ordering::Relaxed), 600);
    });
}
