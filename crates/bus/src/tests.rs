use super::*;
use std::time::Duration;

use opsloop_core::event::types;

fn event(n: i64) -> Event {
    Event::new(
        types::LOG_RULE_MATCHED,
        "/opsloop/test",
        Some("r"),
        n,
        serde_json::json!({"n": n}),
    )
}

fn bus_at(dir: &std::path::Path) -> EmbeddedBus {
    let store = Store::open(dir).unwrap_or_else(|e| panic!("{e}"));
    EmbeddedBus::new(Arc::new(Mutex::new(store))).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn published_events_reach_a_waiting_consumer() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bus = bus_at(dir.path());
    let mut sub = bus
        .subscribe("heal")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waiter = tokio::spawn(async move { sub.next(10).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let sent = vec![event(1), event(2)];
    assert_eq!(bus.publish(sent.clone().into()).await.ok(), Some(2));
    let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
    let got = got
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let got = got.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.iter().map(|d| &d.event).collect::<Vec<_>>(),
        sent.iter().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn duplicates_are_dropped() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bus = bus_at(dir.path());
    let e = event(1);
    assert_eq!(bus.publish(Arc::from([e.clone()])).await.ok(), Some(1));
    assert_eq!(bus.publish(Arc::from([e])).await.ok(), Some(0));
}

#[tokio::test]
async fn restart_redelivers_what_was_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    {
        let bus = bus_at(dir.path());
        bus.publish((0..5).map(event).collect::<Vec<_>>().into())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut sub = bus
            .subscribe("heal")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let batch = sub.next(3).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(batch.len(), 3);
        // Processed two of the three before "crashing".
        sub.ack(batch[1].seq)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let bus = bus_at(dir.path());
    let mut sub = bus
        .subscribe("heal")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let batch = sub.next(10).await.unwrap_or_else(|e| panic!("{e}"));
    let ns: Vec<i64> = batch
        .iter()
        .filter_map(|d| d.event.data["n"].as_i64())
        .collect();
    assert_eq!(
        ns,
        [2, 3, 4],
        "the unacknowledged third event comes again, nothing is lost"
    );
    // Another consumer has its own cursor.
    let mut other = bus.subscribe("api").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(other.next(10).await.map(|b| b.len()).ok(), Some(5));
}
