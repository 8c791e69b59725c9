use super::*;
use opsloop_core::event::types;

fn event(kind: &str, subject: &str, time_ms: i64) -> Event {
    Event::new(
        kind,
        "/opsloop/test",
        Some(subject),
        time_ms,
        serde_json::json!({"n": time_ms}),
    )
}

#[test]
fn file_store_is_wal_and_migrated_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.journal_mode().ok().as_deref(), Some("wal"));
    assert_eq!(store.schema_version().ok(), Some(MIGRATIONS.len() as i64));
    drop(store);
    let again = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.schema_version().ok(), Some(MIGRATIONS.len() as i64));
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    drop(Store::open(dir.path()));
    let conn = Connection::open(dir.path().join("opsloop.db")).unwrap_or_else(|e| panic!("{e}"));
    conn.pragma_update(None, "user_version", 99)
        .unwrap_or_else(|e| panic!("{e}"));
    drop(conn);
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

#[test]
fn events_round_trip_dedup_filter_and_page() {
    let mut store = Store::in_memory().unwrap_or_else(|e| panic!("{e}"));
    let mut events: Vec<Event> = (0..25)
        .map(|i| {
            event(
                if i % 2 == 0 {
                    types::LOG_RULE_MATCHED
                } else {
                    types::LOG_NEW_TEMPLATE
                },
                if i % 5 == 0 { "oom-kill" } else { "timeout" },
                i * 1000,
            )
        })
        .collect();
    assert_eq!(store.append_events(&events).ok(), Some(25));
    events.truncate(3);
    assert_eq!(
        store.append_events(&events).ok(),
        Some(0),
        "ids already stored are skipped"
    );

    let all = store.events(&EventQuery {
        limit: Some(1000),
        ..EventQuery::default()
    });
    let all = all.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.events.len(), 25);
    assert_eq!(all.events[0], events[0]);
    assert_eq!(all.next, None);

    let rules = EventQuery {
        kind: Some(types::LOG_RULE_MATCHED.into()),
        ..EventQuery::default()
    };
    assert_eq!(store.events(&rules).map(|p| p.events.len()).ok(), Some(13));
    let oom = EventQuery {
        subject: Some("oom-kill".into()),
        ..EventQuery::default()
    };
    assert_eq!(store.events(&oom).map(|p| p.events.len()).ok(), Some(5));
    let window = EventQuery {
        since_ms: Some(5000),
        until_ms: Some(10_000),
        ..EventQuery::default()
    };
    assert_eq!(store.events(&window).map(|p| p.events.len()).ok(), Some(5));

    // Cursor pagination visits every event once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .events(&EventQuery {
                after,
                limit: Some(7),
                ..EventQuery::default()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        seen.extend(page.events.into_iter().map(|e| e.id));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    seen.dedup();
    assert_eq!(seen.len(), 25);
}

fn ten_events_a_minute_apart() -> Store {
    let mut store = Store::in_memory().unwrap_or_else(|e| panic!("{e}"));
    let events: Vec<Event> = (0..10).map(|i| event("t", "s", i * 60_000)).collect();
    store
        .append_events(&events)
        .unwrap_or_else(|e| panic!("{e}"));
    store
}

#[test]
fn retention_by_age_and_count() {
    let mut store = ten_events_a_minute_apart();
    // Older than 5 minutes at t=9m: minutes 0..=3 go.
    assert_eq!(
        store
            .apply_retention(9 * 60_000, Some(5 * 60_000), None, None)
            .ok(),
        Some(4)
    );
    assert_eq!(store.apply_retention(0, None, Some(3), None).ok(), Some(3));
    let left = store
        .events(&EventQuery::default())
        .map(|p| p.events.len())
        .ok();
    assert_eq!(left, Some(3));
}

#[test]
fn retention_keeps_what_a_relay_has_not_forwarded() {
    let mut store = ten_events_a_minute_apart();
    // Everything is past its age, but only seq 1..=2 were forwarded.
    assert_eq!(
        store
            .apply_retention(60 * 60_000, Some(60_000), Some(1), Some(2))
            .ok(),
        Some(2)
    );
    assert_eq!(
        store.apply_retention(0, None, Some(1), Some(10)).ok(),
        Some(7)
    );
}

#[test]
fn checkpoints_counters_templates() {
    let mut store = Store::in_memory().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.checkpoint("file:/var/log/syslog").ok(), Some(None));
    store
        .put_checkpoint("file:/var/log/syslog", "{\"offset\":10}", 1)
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .put_checkpoint("file:/var/log/syslog", "{\"offset\":20}", 2)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store
            .checkpoint("file:/var/log/syslog")
            .ok()
            .flatten()
            .as_deref(),
        Some("{\"offset\":20}")
    );
    store
        .add_counter("lines", 5)
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .add_counter("lines", 7)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.counter("lines").ok(), Some(12));
    assert_eq!(store.counter("never").ok(), Some(0));
    let t = StoredTemplate {
        id: "00000000000000aa".into(),
        template: "user <*> logged in".into(),
        count: 3,
        first_seen_ms: Some(1),
        last_seen_ms: Some(5),
    };
    store
        .upsert_templates(std::slice::from_ref(&t))
        .unwrap_or_else(|e| panic!("{e}"));
    let newer = StoredTemplate {
        count: 9,
        first_seen_ms: Some(4),
        last_seen_ms: Some(9),
        ..t.clone()
    };
    store
        .upsert_templates(&[newer])
        .unwrap_or_else(|e| panic!("{e}"));
    let got = store.templates(10).unwrap_or_default();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].count, got[0].first_seen_ms, got[0].last_seen_ms),
        (9, Some(1), Some(9))
    );
}

#[test]
fn outbox_reads_and_consumer_cursors() {
    let mut store = Store::in_memory().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.last_seq().ok(), Some(0));
    let events: Vec<Event> = (0..5).map(|i| event("t", "s", i)).collect();
    store
        .append_events(&events)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.last_seq().ok(), Some(5));
    let after = store.events_after(2, 10).unwrap_or_default();
    assert_eq!(after.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(after[0].1, events[2]);
    assert_eq!(store.consumer_acked("heal").ok(), Some(0));
    store
        .ack_consumer("heal", 4, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .ack_consumer("heal", 2, 2)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.consumer_acked("heal").ok(),
        Some(4),
        "acks never move backwards"
    );
}
