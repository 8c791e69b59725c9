use super::*;
use serde_json::json;

/// A store with `n` records appended one by one.
fn trail_of(n: i64) -> Store {
    let mut store = Store::in_memory().unwrap();
    for i in 1..=n {
        let data = json!({"step": i, "note": "restart"});
        let entry = TrailAppend {
            kind: if i % 2 == 0 {
                "step_started"
            } else {
                "matched"
            },
            incident_id: Some("inc-1"),
            actor: (i % 3 == 0).then_some("alice"),
            data: &data,
        };
        let record = store.append_trail(&entry, 1000 + i).unwrap();
        assert_eq!(record.seq, i);
    }
    store
}

/// Runs raw SQL on the trail as someone with write access to the file would (the append-only
/// triggers are dropped first).
fn tamper(store: &Store, sql: &str) {
    store
        .conn
        .execute_batch(&format!(
            "DROP TRIGGER IF EXISTS audit_trail_no_update;
             DROP TRIGGER IF EXISTS audit_trail_no_delete;
             {sql}"
        ))
        .unwrap();
}

fn first_bad(store: &Store) -> TrailFault {
    let v = store.verify_trail().unwrap();
    assert!(!v.ok, "{v:?}");
    v.first_bad.unwrap()
}

#[test]
fn an_empty_trail_verifies() {
    let store = Store::in_memory().unwrap();
    let v = store.verify_trail().unwrap();
    assert_eq!(
        v,
        TrailVerification {
            records: 0,
            ok: true,
            first_bad: None
        }
    );
    assert!(store.trail(0, 10).unwrap().is_empty());
}

#[test]
fn appended_records_chain_and_verify() {
    let mut store = trail_of(5);
    let data = json!({"comment": "ok"});
    let batch = [
        TrailAppend {
            kind: "approved",
            incident_id: Some("inc-2"),
            actor: Some("bob"),
            data: &data,
        },
        TrailAppend {
            kind: "step_finished",
            incident_id: None,
            actor: None,
            data: &data,
        },
    ];
    let appended = store.append_trail_many(&batch, 9000).unwrap();
    assert_eq!(appended.len(), 2);
    assert_eq!(store.append_trail_many(&[], 9000).unwrap(), []);
    let all = store.trail(0, 100).unwrap();
    assert_eq!(all.len(), 7);
    assert_eq!(all[0].prev_hash, GENESIS_HASH);
    for pair in all.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    assert_eq!(all[5], appended[0]);
    assert_eq!(all[5].actor.as_deref(), Some("bob"));
    assert_eq!(all[5].data["comment"], "ok");
    assert_eq!(all[6].incident_id, None);
    assert_eq!(all[0].hash.len(), 64);
    let v = store.verify_trail().unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.records, 7);

    // Cursor pages: after the last seq of each page.
    let page = store.trail(0, 3).unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let page = store.trail(3, 3).unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5, 6]);
    let page = store.trail(6, 3).unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [7]);
}

#[test]
fn the_encoding_is_unambiguous() {
    // Moving bytes between adjacent fields, or None against Some(""), changes the hash.
    let a = record_hash(1, 0, "ab", Some("c"), None, "{}", GENESIS_HASH);
    let b = record_hash(1, 0, "a", Some("bc"), None, "{}", GENESIS_HASH);
    let c = record_hash(1, 0, "ab", Some("c"), Some(""), "{}", GENESIS_HASH);
    let d = record_hash(1, 0, "ab", None, Some("c"), "{}", GENESIS_HASH);
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, d);
    assert_eq!(
        a,
        record_hash(1, 0, "ab", Some("c"), None, "{}", GENESIS_HASH)
    );
}

#[test]
fn the_trail_refuses_updates_and_deletes() {
    let mut store = trail_of(3);
    assert!(
        store
            .conn
            .execute("UPDATE audit_trail SET data = '{}' WHERE seq = 2", [])
            .is_err()
    );
    assert!(
        store
            .conn
            .execute("DELETE FROM audit_trail WHERE seq = 3", [])
            .is_err()
    );
    // Retention goes by events and leaves the trail alone.
    store
        .apply_retention(i64::MAX, Some(0), Some(0), None)
        .unwrap();
    assert_eq!(store.verify_trail().unwrap().records, 3);
    assert!(store.verify_trail().unwrap().ok);
}

#[test]
fn an_edited_record_is_named() {
    let store = trail_of(5);
    tamper(
        &store,
        r#"UPDATE audit_trail SET data = '{"step":3,"note":"nothing"}' WHERE seq = 3"#,
    );
    let bad = first_bad(&store);
    assert_eq!((bad.seq, bad.kind), (3, TrailFaultKind::Edited), "{bad:?}");
    assert_eq!(store.verify_trail().unwrap().records, 5);

    for edit in [
        "UPDATE audit_trail SET actor = 'mallory' WHERE seq = 2",
        "UPDATE audit_trail SET actor = NULL WHERE seq = 3",
        "UPDATE audit_trail SET time_ms = time_ms + 1 WHERE seq = 4",
        "UPDATE audit_trail SET incident_id = 'inc-9' WHERE seq = 1",
        "UPDATE audit_trail SET kind = 'suppressed' WHERE seq = 5",
    ] {
        let store = trail_of(5);
        tamper(&store, edit);
        assert_eq!(first_bad(&store).kind, TrailFaultKind::Edited, "{edit}");
    }
}

#[test]
fn a_mistyped_field_is_a_fault_not_an_error() {
    let store = trail_of(3);
    tamper(
        &store,
        "UPDATE audit_trail SET time_ms = 'soon' WHERE seq = 2",
    );
    let bad = first_bad(&store);
    assert_eq!(
        (bad.seq, bad.kind),
        (2, TrailFaultKind::Unreadable),
        "{bad:?}"
    );
}

#[test]
fn a_removed_middle_record_is_named() {
    let store = trail_of(5);
    tamper(&store, "DELETE FROM audit_trail WHERE seq = 3");
    let bad = first_bad(&store);
    assert_eq!((bad.seq, bad.kind), (3, TrailFaultKind::Removed), "{bad:?}");
    assert_eq!(store.verify_trail().unwrap().records, 4);

    // Removed and the rest renumbered to close the gap: the chain breaks at 3.
    let store = trail_of(5);
    tamper(
        &store,
        "DELETE FROM audit_trail WHERE seq = 3;
         UPDATE audit_trail SET seq = seq - 1 WHERE seq > 3;",
    );
    let bad = first_bad(&store);
    assert_eq!(
        (bad.seq, bad.kind),
        (3, TrailFaultKind::Reordered),
        "{bad:?}"
    );
}

#[test]
fn removed_last_records_are_detected() {
    let store = trail_of(5);
    tamper(&store, "DELETE FROM audit_trail WHERE seq = 5");
    let bad = first_bad(&store);
    assert_eq!(
        (bad.seq, bad.kind),
        (5, TrailFaultKind::Truncated),
        "{bad:?}"
    );

    let mut store = trail_of(5);
    tamper(&store, "DELETE FROM audit_trail WHERE seq >= 2");
    let bad = first_bad(&store);
    assert_eq!(
        (bad.seq, bad.kind),
        (2, TrailFaultKind::Truncated),
        "{bad:?}"
    );
    // Appending onto a truncated trail would hide the truncation: refused.
    let data = json!({});
    let entry = TrailAppend {
        kind: "matched",
        incident_id: None,
        actor: None,
        data: &data,
    };
    assert!(matches!(
        store.append_trail(&entry, 0),
        Err(StoreError::TrailDamaged { .. })
    ));

    let store = trail_of(2);
    tamper(&store, "DELETE FROM audit_trail");
    let bad = first_bad(&store);
    assert_eq!(
        (bad.seq, bad.kind),
        (1, TrailFaultKind::Truncated),
        "{bad:?}"
    );

    let store = trail_of(2);
    tamper(&store, "DELETE FROM audit_head");
    assert_eq!(first_bad(&store).kind, TrailFaultKind::HeadMismatch);
}

#[test]
fn swapped_records_are_named() {
    let store = trail_of(5);
    tamper(
        &store,
        "UPDATE audit_trail SET seq = -1 WHERE seq = 3;
         UPDATE audit_trail SET seq = 3 WHERE seq = 4;
         UPDATE audit_trail SET seq = 4 WHERE seq = -1;",
    );
    let bad = first_bad(&store);
    assert_eq!(
        (bad.seq, bad.kind),
        (3, TrailFaultKind::Reordered),
        "{bad:?}"
    );
}

#[test]
fn a_forged_record_beyond_the_head_is_detected() {
    let store = trail_of(2);
    let last = store.trail(1, 1).unwrap().remove(0);
    let hash = record_hash(3, 5, "approved", None, Some("mallory"), "{}", &last.hash);
    tamper(
        &store,
        &format!(
            "INSERT INTO audit_trail VALUES (3, 5, 'approved', NULL, 'mallory', '{{}}', '{}', '{hash}')",
            last.hash
        ),
    );
    let bad = first_bad(&store);
    assert_eq!(
        (bad.seq, bad.kind),
        (3, TrailFaultKind::HeadMismatch),
        "{bad:?}"
    );
}

#[test]
fn a_file_trail_survives_reopening_and_reads_read_only() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Store::open_read_only(dir.path()),
        Err(StoreError::Missing { .. })
    ));
    assert!(
        !dir.path().join("opsloop.db").exists(),
        "read-only opening creates nothing"
    );
    let data = json!({"n": 1});
    let entry = TrailAppend {
        kind: "matched",
        incident_id: None,
        actor: None,
        data: &data,
    };
    {
        let mut store = Store::open(dir.path()).unwrap();
        store.append_trail(&entry, 1).unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.append_trail(&entry, 2).unwrap().seq, 2);
    let mut reader = Store::open_read_only(dir.path()).unwrap();
    let v = reader.verify_trail().unwrap();
    assert!(v.ok && v.records == 2, "{v:?}");
    assert!(reader.append_trail(&entry, 3).is_err(), "read-only");
}
