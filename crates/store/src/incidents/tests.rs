use super::*;
use serde_json::json;

fn incident(id: &str, playbook: &str, state: &str, created_ms: i64) -> StoredIncident {
    StoredIncident {
        id: id.into(),
        playbook: playbook.into(),
        key: format!("key-{}", created_ms % 2),
        target: Some("db1".into()),
        state: state.into(),
        mode: "enforce".into(),
        created_ms,
        updated_ms: created_ms,
        data: json!({"id": id, "state": state, "steps": []}),
    }
}

#[test]
fn put_is_an_upsert_keeping_the_creation_time() {
    let mut store = Store::in_memory().unwrap();
    assert_eq!(store.incident("a").unwrap(), None);
    store
        .put_incident(&incident("a", "disk", "detected", 10))
        .unwrap();
    let mut later = incident("a", "disk", "resolved", 99);
    later.target = None;
    store.put_incident(&later).unwrap();
    let got = store.incident("a").unwrap().unwrap();
    assert_eq!(got.state, "resolved");
    assert_eq!(got.created_ms, 10, "creation time kept");
    assert_eq!(got.updated_ms, 99);
    assert_eq!(got.target, None);
    assert_eq!(got.data["state"], "resolved");
}

#[test]
fn filters_and_cursor_pages_newest_first() {
    let mut store = Store::in_memory().unwrap();
    // Two incidents share each creation time, so the cursor must break ties by id.
    for i in 0..20 {
        let state = if i % 4 == 0 {
            "awaiting_approval"
        } else {
            "resolved"
        };
        let playbook = if i < 10 { "disk" } else { "oom" };
        store
            .put_incident(&incident(&format!("inc-{i:02}"), playbook, state, i / 2))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .incidents(&IncidentQuery {
                cursor,
                limit: Some(3),
                ..IncidentQuery::default()
            })
            .unwrap();
        seen.extend(page.items.into_iter().map(|i| (i.created_ms, i.id)));
        match page.next_cursor {
            Some(c) => cursor = IncidentCursor::parse(&c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 20);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first, each once");

    // A page boundary stays put while newer incidents arrive.
    let first = store
        .incidents(&IncidentQuery {
            limit: Some(5),
            ..IncidentQuery::default()
        })
        .unwrap();
    store
        .put_incident(&incident("inc-new", "disk", "detected", 1000))
        .unwrap();
    let second = store
        .incidents(&IncidentQuery {
            cursor: first.next_cursor,
            limit: Some(5),
            ..IncidentQuery::default()
        })
        .unwrap();
    assert_eq!(
        second.items.first().map(|i| i.id.as_str()),
        Some(seen[5].1.as_str())
    );

    let count = |q: IncidentQuery| {
        store
            .incidents(&IncidentQuery {
                limit: Some(1000),
                ..q
            })
            .unwrap()
            .items
            .len()
    };
    assert_eq!(
        count(IncidentQuery {
            state: Some("awaiting_approval".into()),
            ..IncidentQuery::default()
        }),
        5
    );
    assert_eq!(
        count(IncidentQuery {
            playbook: Some("oom".into()),
            ..IncidentQuery::default()
        }),
        10
    );
    assert_eq!(
        count(IncidentQuery {
            key: Some("key-1".into()),
            ..IncidentQuery::default()
        }),
        10
    );
    assert_eq!(
        count(IncidentQuery {
            since_ms: Some(3),
            until_ms: Some(5),
            ..IncidentQuery::default()
        }),
        4
    );
    assert_eq!(
        count(IncidentQuery {
            playbook: Some("oom".into()),
            state: Some("awaiting_approval".into()),
            ..IncidentQuery::default()
        }),
        2
    );
}

#[test]
fn cursors_round_trip_and_bad_ones_are_refused() {
    let c = IncidentCursor {
        created_ms: -5,
        id: "a:b".into(),
    };
    assert_eq!(IncidentCursor::parse(&c.to_string()), Some(c));
    assert_eq!(IncidentCursor::parse("nope"), None);
    assert_eq!(IncidentCursor::parse("x:y"), None);
}

#[test]
fn a_corrupt_incident_is_named() {
    let mut store = Store::in_memory().unwrap();
    store
        .put_incident(&incident("a", "disk", "detected", 1))
        .unwrap();
    store
        .conn
        .execute("UPDATE incidents SET data = 'not json' WHERE id = 'a'", [])
        .unwrap();
    assert!(matches!(
        store.incident("a"),
        Err(StoreError::CorruptIncident { id, .. }) if id == "a"
    ));
}

#[test]
fn ended_incidents_age_out_and_open_ones_stay() {
    let mut store = Store::in_memory().unwrap();
    for (id, state, at) in [
        ("old-resolved", "resolved", 10),
        ("old-cancelled", "cancelled", 10),
        ("old-waiting", "awaiting_approval", 10),
        ("old-running", "remediating", 10),
        ("new-resolved", "resolved", 1_000),
    ] {
        store
            .put_incident(&incident(id, "disk", state, at))
            .unwrap();
    }
    assert_eq!(store.prune_incidents(1_100, 500).unwrap(), 2);
    let left: Vec<String> = store
        .incidents(&IncidentQuery::default())
        .unwrap()
        .items
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(
        !left
            .iter()
            .any(|id| id == "old-resolved" || id == "old-cancelled")
    );
    // Ages that reach before time itself, or negative ones, delete nothing.
    assert_eq!(store.prune_incidents(i64::MIN + 5, 10).unwrap(), 0);
    assert_eq!(store.prune_incidents(1_100, -1).unwrap(), 0);
}
