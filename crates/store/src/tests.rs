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
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.journal_mode().ok().as_deref(), Some("wal"));
    assert_eq!(store.schema_version().ok(), Some(MIGRATIONS.len() as i64));
    drop(store);
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(again.schema_version().ok(), Some(MIGRATIONS.len() as i64));
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()));
    let conn = Connection::open(dir.path().join("opsloop.db")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

#[test]
fn events_round_trip_dedup_filter_and_page() {
    let mut store = Store::in_memory().unwrap();
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
    assert_eq!(store.append_events(&events, 1).ok(), Some(25));
    events.truncate(3);
    assert_eq!(
        store.append_events(&events, 2).ok(),
        Some(0),
        "ids already stored are skipped"
    );

    let all = store.events(&EventQuery {
        limit: Some(1000),
        ..EventQuery::default()
    });
    let all = all.unwrap();
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
            .unwrap();
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

/// Ten events ingested a minute apart (at minutes 0..=9), each with the same record time.
fn ten_events_a_minute_apart() -> Store {
    let mut store = Store::in_memory().unwrap();
    for i in 0..10 {
        store
            .append_events(&[event("t", "s", 0)], i * 60_000)
            .unwrap();
    }
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
    let mut store = Store::in_memory().unwrap();
    assert_eq!(store.checkpoint("file:/var/log/syslog").ok(), Some(None));
    store
        .put_checkpoint("file:/var/log/syslog", "{\"offset\":10}", 1)
        .unwrap();
    store
        .put_checkpoint("file:/var/log/syslog", "{\"offset\":20}", 2)
        .unwrap();
    assert_eq!(
        store
            .checkpoint("file:/var/log/syslog")
            .ok()
            .flatten()
            .as_deref(),
        Some("{\"offset\":20}")
    );
    store.add_counter("lines", 5).unwrap();
    store.add_counter("lines", 7).unwrap();
    assert_eq!(store.counter("lines").ok(), Some(12));
    assert_eq!(store.counter("never").ok(), Some(0));
    let t = StoredTemplate {
        id: "00000000000000aa".into(),
        template: "user <*> logged in".into(),
        count: 3,
        first_seen_ms: Some(1),
        last_seen_ms: Some(5),
    };
    store.upsert_templates(std::slice::from_ref(&t)).unwrap();
    let newer = StoredTemplate {
        count: 9,
        first_seen_ms: Some(4),
        last_seen_ms: Some(9),
        ..t.clone()
    };
    store.upsert_templates(&[newer]).unwrap();
    let got = store.templates(10).unwrap_or_default();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].count, got[0].first_seen_ms, got[0].last_seen_ms),
        (9, Some(1), Some(9))
    );
}

#[test]
fn outbox_reads_and_consumer_cursors() {
    let mut store = Store::in_memory().unwrap();
    assert_eq!(store.last_seq().ok(), Some(0));
    let events: Vec<Event> = (0..5).map(|i| event("t", "s", i)).collect();
    store.append_events(&events, 0).unwrap();
    assert_eq!(store.last_seq().ok(), Some(5));
    let after = store.events_after(2, 10).unwrap_or_default();
    assert_eq!(after.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(after[0].1, events[2]);
    assert_eq!(store.consumer_acked("heal").ok(), Some(0));
    store.ack_consumer("heal", 4, 1).unwrap();
    store.ack_consumer("heal", 2, 2).unwrap();
    assert_eq!(
        store.consumer_acked("heal").ok(),
        Some(4),
        "acks never move backwards"
    );
}

const HOUR_MS: i64 = 3_600_000;
const YEAR_MS: i64 = 365 * 24 * HOUR_MS;

fn count(store: &Store) -> usize {
    store
        .events(&EventQuery {
            limit: Some(1000),
            ..EventQuery::default()
        })
        .map(|p| p.events.len())
        .unwrap()
}

#[test]
fn retention_goes_by_ingestion_time_not_record_time() {
    let now = 1_800_000_000_000;
    let mut store = Store::in_memory().unwrap();
    // A log line stamped a year ago, arriving now: kept.
    let old_record = event("t", "old-record", now - YEAR_MS);
    // A current line stamped in the future (a wrong year), but stored two hours ago: gone.
    let stored_early = event("t", "stored-early", now + YEAR_MS);
    store
        .append_events(std::slice::from_ref(&stored_early), now - 2 * HOUR_MS)
        .unwrap();
    store
        .append_events(std::slice::from_ref(&old_record), now)
        .unwrap();
    assert_eq!(
        store.apply_retention(now, Some(HOUR_MS), None, None).ok(),
        Some(1)
    );
    let left = store.events(&EventQuery::default()).unwrap();
    assert_eq!(left.events, [old_record]);
}

#[test]
fn retention_with_absurd_limits_deletes_nothing() {
    let mut store = ten_events_a_minute_apart();
    // now - i64::MAX fits for a positive now; for a negative one it overflows.
    for now in [9 * 60_000, 0, -2, i64::MIN] {
        assert_eq!(
            store.apply_retention(now, Some(i64::MAX), None, None).ok(),
            Some(0),
            "max_age i64::MAX at {now}"
        );
    }
    // A negative age (a wrapped conversion) would put the cutoff in the future.
    assert_eq!(
        store
            .apply_retention(9 * 60_000, Some(i64::MIN), None, None)
            .ok(),
        Some(0)
    );
    assert_eq!(
        store.apply_retention(9 * 60_000, Some(-1), None, None).ok(),
        Some(0)
    );
    // u64::MAX events as i64 is OFFSET -1, which SQLite takes as 0: it deleted everything.
    assert_eq!(
        store
            .apply_retention(9 * 60_000, None, Some(u64::MAX), None)
            .ok(),
        Some(0)
    );
    assert_eq!(count(&store), 10);
}

#[test]
fn migration_3_gives_existing_events_an_ingestion_time() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A version-2 database with one event, as an older opsloop left it.
        let conn = Connection::open(dir.path().join("opsloop.db")).unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        let e = event("t", "s", 5 * 60_000);
        conn.execute(
            "INSERT INTO events (id, type, source, subject, time_ms, fingerprint, body)
             VALUES (?1, 't', 's', 's', ?2, '', ?3)",
            params![e.id, 5 * 60_000, serde_json::to_string(&e).unwrap()],
        )
        .unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().ok(), Some(MIGRATIONS.len() as i64));
    let ingested: Option<i64> = store
        .conn
        .query_row("SELECT ingested_ms FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ingested, Some(5 * 60_000));
    assert_eq!(
        store
            .apply_retention(6 * 60_000, Some(2 * 60_000), None, None)
            .ok(),
        Some(0)
    );
    assert_eq!(
        store
            .apply_retention(8 * 60_000, Some(2 * 60_000), None, None)
            .ok(),
        Some(1)
    );
}

#[test]
fn event_time_filters_compare_numerically_across_years_and_signs() {
    let mut store = Store::in_memory().unwrap();
    // 1901, 1969 (negative), the epoch, 1970 + 9 ms, 2001, 2286 (13 digits -> 14), 9999.
    let times = [
        -2_177_452_800_000,
        -1,
        0,
        9,
        1_000_000_000_000,
        10_000_000_000_000,
        253_402_300_799_999,
    ];
    // Stored out of order, so that the page order (by seq) says nothing about time.
    let mut events: Vec<Event> = times.iter().map(|&t| event("t", "s", t)).collect();
    events.reverse();
    store.append_events(&events, 0).unwrap();
    let window = |since: Option<i64>, until: Option<i64>| -> Vec<i64> {
        let page = store
            .events(&EventQuery {
                since_ms: since,
                until_ms: until,
                limit: Some(1000),
                ..EventQuery::default()
            })
            .unwrap();
        let mut got: Vec<i64> = page
            .events
            .iter()
            .filter_map(|e| e.data["n"].as_i64())
            .collect();
        got.sort_unstable();
        got
    };
    assert_eq!(window(None, None), times);
    assert_eq!(window(Some(0), None), times[2..]);
    assert_eq!(window(None, Some(0)), times[..2]);
    assert_eq!(window(Some(-1), Some(10)), [-1, 0, 9]);
    // As text, "9" > "10000000000000" and "-1" < "-2177452800000" would not hold.
    assert_eq!(window(Some(9), Some(10_000_000_000_001)), times[3..6]);
    assert_eq!(window(Some(10_000_000_000_000), Some(i64::MAX)), times[5..]);
    assert_eq!(window(Some(i64::MIN), Some(-1)), times[..1]);
}

#[test]
fn templates_keep_earliest_first_and_latest_last_seen() {
    let mut store = Store::in_memory().unwrap();
    let t = |id: &str, count: u64, first: Option<i64>, last: Option<i64>| StoredTemplate {
        id: id.into(),
        template: format!("{id} <*>"),
        count,
        first_seen_ms: first,
        last_seen_ms: last,
    };
    store
        .upsert_templates(&[
            t("a", 1, Some(100), Some(100)),
            t("b", 5, Some(50), Some(70)),
            t("c", 2, None, None),
        ])
        .unwrap();
    // Only what changed: an older first sighting (from a restarted miner, say), a newer last.
    store
        .upsert_templates(&[t("a", 4, Some(40), Some(400))])
        .unwrap();
    // Out of order, or without times: never moves first later, last earlier, or erases.
    store
        .upsert_templates(&[t("b", 6, Some(60), Some(65))])
        .unwrap();
    store
        .upsert_templates(&[t("a", 7, None, None), t("c", 3, Some(9), Some(12))])
        .unwrap();
    store.upsert_templates(&[]).unwrap();
    let got = store.templates(10).unwrap();
    assert_eq!(
        got,
        [
            t("a", 7, Some(40), Some(400)),
            t("b", 6, Some(50), Some(70)),
            t("c", 3, Some(9), Some(12)),
        ]
    );
}

#[test]
fn slowest_consumer_and_first_seq() {
    let mut store = Store::in_memory().unwrap();
    assert_eq!(store.min_consumer_acked().ok(), Some(None));
    assert_eq!(store.first_seq().ok(), Some(0));
    let events: Vec<Event> = (0..5).map(|i| event("t", "s", i)).collect();
    store.append_events(&events, 0).unwrap();
    store.register_consumer("relay", 1).unwrap();
    assert_eq!(store.min_consumer_acked().ok(), Some(Some(0)));
    store.ack_consumer("relay", 4, 2).unwrap();
    store.register_consumer("relay", 3).unwrap();
    assert_eq!(
        store.consumer_acked("relay").ok(),
        Some(4),
        "registering again does not reset"
    );
    store.ack_consumer("heal", 2, 2).unwrap();
    assert_eq!(store.min_consumer_acked().ok(), Some(Some(2)));
    store.apply_retention(0, None, Some(2), None).unwrap();
    assert_eq!(store.first_seq().ok(), Some(4));
}

#[test]
fn a_consumer_that_is_gone_can_be_forgotten() {
    let mut store = Store::in_memory().unwrap();
    store.register_consumer("jetstream:OLD", 0).unwrap();
    store.ack_consumer("heal", 5, 0).unwrap();
    assert_eq!(store.consumers().unwrap(), ["heal", "jetstream:OLD"]);
    assert_eq!(store.min_consumer_acked().unwrap(), Some(0));
    assert!(store.remove_consumer("jetstream:OLD").unwrap());
    assert!(!store.remove_consumer("jetstream:OLD").unwrap());
    assert_eq!(store.min_consumer_acked().unwrap(), Some(5));
}

#[test]
fn migration_4_adds_an_empty_trail_and_keeps_what_was_there() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A version-3 database with one event, as the previous opsloop left it.
        let mut store = Store::open(dir.path()).unwrap();
        store.append_events(&[event("t", "s", 0)], 0).unwrap();
        store
            .conn
            .execute_batch(
                "DROP TABLE audit_trail; DROP TABLE audit_head; DROP TABLE incidents;
                 PRAGMA user_version = 3;",
            )
            .unwrap();
    }
    // Read-only, a store without a trail has an empty one.
    let old = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(old.schema_version().ok(), Some(3));
    assert!(old.verify_trail().unwrap().ok);
    drop(old);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().ok(), Some(4));
    assert_eq!(store.last_seq().ok(), Some(1));
    let v = store.verify_trail().unwrap();
    assert!(v.ok && v.records == 0, "{v:?}");
}

#[test]
fn an_event_is_found_by_its_id() {
    let mut store = Store::in_memory().unwrap();
    let e = event("t", "s", 5);
    store
        .append_events(&[e.clone(), event("u", "s", 6)], 1)
        .unwrap();
    assert_eq!(store.event_by_id(&e.id).unwrap(), Some(e));
    assert_eq!(store.event_by_id("nope").unwrap(), None);
}
