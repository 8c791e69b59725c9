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
    let store = Store::open(dir).unwrap();
    EmbeddedBus::new(Arc::new(Mutex::new(store))).unwrap()
}

#[tokio::test]
async fn published_events_reach_a_waiting_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_at(dir.path());
    let mut sub = bus.subscribe("heal").await.unwrap();
    let waiter = tokio::spawn(async move { sub.next(10).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let sent = vec![event(1), event(2)];
    assert_eq!(bus.publish(sent.clone().into()).await.ok(), Some(2));
    let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
    let got = got.unwrap().unwrap();
    let got = got.unwrap();
    assert_eq!(
        got.iter().map(|d| &d.event).collect::<Vec<_>>(),
        sent.iter().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_new_consumer_from_now_skips_the_history_and_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_at(dir.path());
    bus.publish(vec![event(1), event(2)].into()).await.unwrap();
    let mut sub = bus.subscribe_new("heal").await.unwrap();
    bus.publish(vec![event(3)].into()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub.next(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.iter().map(|d| d.event.time.clone()).collect::<Vec<_>>(),
        [event(3).time]
    );
    // Not acknowledged: a known consumer resumes where it was, it does not jump to the head.
    drop(sub);
    bus.publish(vec![event(4)].into()).await.unwrap();
    let mut again = bus.subscribe_new("heal").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), again.next(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
}

#[tokio::test]
async fn duplicates_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_at(dir.path());
    let e = event(1);
    assert_eq!(bus.publish(Arc::from([e.clone()])).await.ok(), Some(1));
    assert_eq!(bus.publish(Arc::from([e])).await.ok(), Some(0));
}

#[tokio::test]
async fn restart_redelivers_what_was_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = bus_at(dir.path());
        bus.publish((0..5).map(event).collect::<Vec<_>>().into())
            .await
            .unwrap();
        let mut sub = bus.subscribe("heal").await.unwrap();
        let batch = sub.next(3).await.unwrap();
        assert_eq!(batch.len(), 3);
        // Processed two of the three before "crashing".
        sub.ack(batch[1].seq).await.unwrap();
    }
    let bus = bus_at(dir.path());
    let mut sub = bus.subscribe("heal").await.unwrap();
    let batch = sub.next(10).await.unwrap();
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
    let mut other = bus.subscribe("api").await.unwrap();
    assert_eq!(other.next(10).await.map(|b| b.len()).ok(), Some(5));
}

/// Polls `f` until it yields, failing after a generous deadline (a hang guard: outcomes are
/// decided by the condition, never by the time).
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const HOUR_MS: i64 = 3_600_000;

/// A clock the test sets.
fn manual_clock(start: i64) -> (Arc<std::sync::atomic::AtomicI64>, Clock) {
    let now = Arc::new(std::sync::atomic::AtomicI64::new(start));
    let read = Arc::clone(&now);
    (
        now,
        Arc::new(move || read.load(std::sync::atomic::Ordering::SeqCst)),
    )
}

#[tokio::test]
async fn published_events_age_by_the_bus_clock_not_their_own_time() {
    use std::sync::atomic::Ordering::SeqCst;
    let now = 1_800_000_000_000;
    let store = Arc::new(Mutex::new(Store::in_memory().unwrap()));
    let (clock, read) = manual_clock(now - 2 * HOUR_MS);
    let bus = EmbeddedBus::with_clock(Arc::clone(&store), read).unwrap();
    assert_eq!(bus.now_ms(), now - 2 * HOUR_MS);
    // Recent by its own time, but published two hours ago.
    let early = event(now);
    bus.publish(Arc::from([early])).await.unwrap();
    clock.store(now, SeqCst);
    // A record stamped a year ago, published now.
    let year_old = event(now - 365 * 24 * HOUR_MS);
    bus.publish(Arc::from([year_old.clone()])).await.unwrap();
    let mut s = store.lock().unwrap();
    assert_eq!(
        s.apply_retention(now, Some(HOUR_MS), None, None).ok(),
        Some(1)
    );
    let left = s.events(&opsloop_store::EventQuery::default()).unwrap();
    assert_eq!(left.events, [year_old]);
}

#[tokio::test]
async fn lag_is_what_the_slowest_consumer_has_not_acknowledged() {
    let store = Arc::new(Mutex::new(Store::in_memory().unwrap()));
    let (_, clock) = manual_clock(0);
    let bus = EmbeddedBus::with_clock(Arc::clone(&store), clock).unwrap();
    bus.publish((0..5).map(event).collect::<Vec<_>>().into())
        .await
        .unwrap();
    assert_eq!(bus.lag().await.ok(), Some(0), "no consumer, no lag");

    let mut heal = bus.subscribe("heal").await.unwrap();
    let batch = heal.next(3).await.unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(
        bus.lag().await.ok(),
        Some(5),
        "received is not acknowledged"
    );
    heal.ack(batch[1].seq).await.unwrap();
    assert_eq!(bus.lag().await.ok(), Some(3));

    // A faster consumer does not hide the slow one.
    let mut api = bus.subscribe("api").await.unwrap();
    let all = api.next(10).await.unwrap();
    api.ack(all[4].seq).await.unwrap();
    assert_eq!(bus.lag().await.ok(), Some(3));
    bus.publish(Arc::from([event(5)])).await.unwrap();
    assert_eq!(bus.lag().await.ok(), Some(4));

    // Events retention removed cannot be delivered any more: they are not lag.
    store
        .lock()
        .unwrap()
        .apply_retention(0, None, Some(1), None)
        .unwrap();
    assert_eq!(bus.lag().await.ok(), Some(1));
}

mod relay_supervision {
    use super::*;
    use crate::jetstream::{JetStreamBus, JetStreamOptions};
    use crate::relay::{BackoffPolicy, RelayStatus, relay_to_jetstream_with_backoff};
    use crate::testing::NatsServer;
    use std::sync::atomic::Ordering;

    /// A second connection to the store's file, to break and mend its tables under it.
    fn sql(dir: &std::path::Path, statement: &str) {
        let conn = rusqlite::Connection::open(dir.join("opsloop.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.execute_batch(statement)
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    fn options(server: &NatsServer) -> JetStreamOptions {
        let mut o = JetStreamOptions::new(server.url(), "relay-test");
        o.timeout = Duration::from_secs(5);
        o
    }

    fn fast() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(200),
        }
    }

    /// The distinct event ids in the stream, read by a fresh consumer until `want` arrived.
    async fn stream_ids(server: &NatsServer, want: usize) -> Vec<String> {
        let bus = JetStreamBus::connect(&options(server)).await.unwrap();
        let mut sub = bus.subscribe("check").await.unwrap();
        let mut ids = Vec::new();
        while ids.len() < want {
            let batch = tokio::time::timeout(Duration::from_secs(30), sub.next(500))
                .await
                .unwrap_or_else(|_| panic!("only {} of {want} events in the stream", ids.len()))
                .unwrap();
            ids.extend(batch.into_iter().map(|d| d.event.id));
            ids.sort();
            ids.dedup();
        }
        ids
    }

    #[test]
    fn suffix_matching_is_what_the_consumer_filters_take() {
        assert!(JetStreamBus::suffix_matches(
            "io.opsloop.alert.resolved",
            "resolved"
        ));
        assert!(JetStreamBus::suffix_matches("a.resolved", "resolved"));
        assert!(JetStreamBus::suffix_matches(
            "a.b.c.d.e.f.g.resolved",
            "resolved"
        ));
        assert!(!JetStreamBus::suffix_matches(
            "a.b.c.d.e.f.g.h.resolved",
            "resolved"
        ));
        assert!(!JetStreamBus::suffix_matches("resolved", "resolved"));
        assert!(!JetStreamBus::suffix_matches(
            "io.opsloop.metric.anomaly_resolved",
            "resolved"
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_jetstream_consumer_from_now_skips_the_stream_history() {
        let dir = tempfile::tempdir().unwrap();
        let server = NatsServer::start(&dir.path().join("nats"));
        let bus = JetStreamBus::connect(&options(&server)).await.unwrap();
        bus.publish(vec![event(1), event(2)].into()).await.unwrap();
        let mut sub = bus.subscribe_new("fresh").await.unwrap();
        bus.publish(vec![event(3)].into()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(30), sub.next(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got.iter().map(|d| d.event.time.clone()).collect::<Vec<_>>(),
            [event(3).time]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relay_survives_outbox_failures_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let server = NatsServer::start(&dir.path().join("nats"));
        let outbox = bus_at(dir.path());
        outbox
            .publish((0..10).map(event).collect::<Vec<_>>().into())
            .await
            .unwrap();

        // The outbox cannot be read or subscribed to when the relay starts.
        sql(
            dir.path(),
            "ALTER TABLE events RENAME TO events_away; ALTER TABLE consumers RENAME TO consumers_away;",
        );
        let status = Arc::new(RelayStatus::default());
        let (stop, stopped) = watch::channel(false);
        let relay = tokio::spawn(relay_to_jetstream_with_backoff(
            outbox.clone(),
            options(&server),
            Arc::clone(&status),
            stopped,
            fast(),
        ));
        until("failed subscriptions", || async {
            (status.failures.load(Ordering::Relaxed) >= 2).then_some(())
        })
        .await;
        sql(
            dir.path(),
            "ALTER TABLE consumers_away RENAME TO consumers;",
        );
        let failures = status.failures.load(Ordering::Relaxed);
        until("failed reads", || async {
            (status.failures.load(Ordering::Relaxed) >= failures + 2).then_some(())
        })
        .await;
        assert_eq!(status.position.load(Ordering::Relaxed), 0);
        assert!(!relay.is_finished(), "a store error must not end the relay");
        sql(dir.path(), "ALTER TABLE events_away RENAME TO events;");
        until("the backlog forwarded", || async {
            (status.position.load(Ordering::Relaxed) == 10).then_some(())
        })
        .await;

        // Acknowledging fails after JetStream took a batch: retried, not ended, not lost.
        sql(
            dir.path(),
            "ALTER TABLE consumers RENAME TO consumers_away;",
        );
        outbox
            .publish((10..20).map(event).collect::<Vec<_>>().into())
            .await
            .unwrap();
        let failures = status.failures.load(Ordering::Relaxed);
        until("failed acknowledgements", || async {
            (status.failures.load(Ordering::Relaxed) >= failures + 2).then_some(())
        })
        .await;
        assert!(!relay.is_finished(), "a store error must not end the relay");
        assert_eq!(status.position.load(Ordering::Relaxed), 10);
        sql(
            dir.path(),
            "ALTER TABLE consumers_away RENAME TO consumers;",
        );
        until("the batch acknowledged", || async {
            (status.position.load(Ordering::Relaxed) == 20).then_some(())
        })
        .await;
        outbox
            .publish((20..30).map(event).collect::<Vec<_>>().into())
            .await
            .unwrap();
        until("forwarding after the failures", || async {
            (status.position.load(Ordering::Relaxed) == 30).then_some(())
        })
        .await;
        assert!(status.connected.load(Ordering::Relaxed));

        let _ = stop.send(true);
        let ended = tokio::time::timeout(Duration::from_secs(30), relay).await;
        assert!(
            matches!(ended, Ok(Ok(Ok(())))),
            "only the stop signal ends the relay: {ended:?}"
        );
        assert_eq!(stream_ids(&server, 30).await.len(), 30);
        assert_eq!(status.forwarded.load(Ordering::Relaxed), 30);
    }
}

#[test]
fn backoff_doubles_up_to_its_cap_and_resets() {
    let mut b = relay::Backoff::new(relay::BackoffPolicy::default());
    let ms: Vec<u128> = (0..9).map(|_| b.delay().as_millis()).collect();
    assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    b.reset();
    assert_eq!(b.delay(), Duration::from_millis(100));
    // A cap below the first wait, and a wait that would overflow when doubled.
    let mut b = relay::Backoff::new(relay::BackoffPolicy {
        initial: Duration::MAX,
        max: Duration::from_secs(1),
    });
    assert_eq!(b.delay(), Duration::from_secs(1));
    assert_eq!(b.delay(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_its_delay_or_until_stopped() {
    let mut b = relay::Backoff::new(relay::BackoffPolicy::default());
    let (stop, mut stopped) = watch::channel(false);
    let start = tokio::time::Instant::now();
    assert!(!b.wait(&mut stopped).await);
    assert!(!b.wait(&mut stopped).await);
    // Virtual time: the sleeps were the policy's, 100 ms then 200 ms.
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    let waiting = tokio::spawn(async move { b.wait(&mut stopped).await });
    tokio::task::yield_now().await;
    let _ = stop.send(true);
    assert_eq!(waiting.await.ok(), Some(true));
    assert!(start.elapsed() < Duration::from_millis(700));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consume_error_after_a_partial_batch_hides_no_delivery() {
    use crate::jetstream::{JetStreamBus, JetStreamOptions};
    let dir = tempfile::tempdir().unwrap();
    let server = crate::testing::NatsServer::start(&dir.path().join("nats"));
    let options = JetStreamOptions::new(server.url(), "partial");
    let bus = JetStreamBus::connect(&options).await.unwrap();
    bus.publish((0..5).map(event).collect::<Vec<_>>().into())
        .await
        .unwrap();
    let mut sub = bus.subscribe("partial").await.unwrap();
    let mut seqs: Vec<i64> = sub.next(1).await.unwrap().iter().map(|d| d.seq).collect();
    // The other four are on their way or buffered; then the consumer goes, and the server
    // ends the pull with an error behind them. The flush makes sure the client has read both.
    bus.context()
        .delete_consumer_from_stream("partial", "partial")
        .await
        .unwrap();
    bus.context().client().flush().await.unwrap();
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(30), sub.next(10)).await {
            Ok(Ok(batch)) => seqs.extend(batch.iter().map(|d| d.seq)),
            Ok(Err(e)) => break e,
            Err(_) => panic!("no error after the consumer was deleted"),
        }
    };
    assert_eq!(
        seqs,
        [1, 2, 3, 4, 5],
        "every delivery handed out before the error ({error})"
    );
}
