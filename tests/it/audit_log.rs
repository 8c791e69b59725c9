//! `opsloop audit-log`: the binary verifying and exporting a trail written through the store
//! API, intact and then tampered with as someone with write access to the file would (edit,
//! delete, reorder): verify must fail naming the record.

use std::path::Path;
use std::process::Output;

use opsloop_store::{Store, TrailAppend};
use serde_json::{Value, json};

use super::run;

/// A data directory whose trail has `n` records (seq 1..=n).
fn data_dir_with_trail(n: i64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    for i in 1..=n {
        let data = json!({"step": i, "output": "ok"});
        store
            .append_trail(
                &TrailAppend {
                    kind: if i == 2 { "approved" } else { "step_finished" },
                    incident_id: Some("inc-1"),
                    actor: (i == 2).then_some("alice"),
                    data: &data,
                },
                1_795_910_400_000 + i,
            )
            .unwrap();
    }
    dir
}

/// Runs SQL on the store file directly, append-only triggers dropped first.
fn tamper(dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join("opsloop.db")).unwrap();
    conn.execute_batch(&format!(
        "DROP TRIGGER IF EXISTS audit_trail_no_update;
         DROP TRIGGER IF EXISTS audit_trail_no_delete;
         {sql}"
    ))
    .unwrap();
}

fn verify(dir: &Path, extra: &[&str]) -> Output {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["audit-log", "verify", "--data-dir", dir];
    args.extend_from_slice(extra);
    run(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn an_intact_trail_verifies() {
    let dir = data_dir_with_trail(5);
    let out = verify(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "5 records, chain intact\n");
    let out = verify(dir.path(), &["--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"records": 5, "ok": true, "first_bad": null}));

    // A store without any trail record verifies too.
    let empty = data_dir_with_trail(0);
    let out = verify(empty.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "0 records, chain intact\n");
}

#[test]
fn no_store_is_an_error_and_none_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let out = verify(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no store"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let missing = dir.path().join("nowhere");
    let out = verify(&missing, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!missing.exists());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[test]
fn tampering_fails_naming_the_record() {
    let cases = [
        (
            "edited",
            r#"UPDATE audit_trail SET data = '{"step":3,"output":"fine"}' WHERE seq = 3"#,
            3,
            "edited",
        ),
        (
            "approver changed",
            "UPDATE audit_trail SET actor = 'mallory' WHERE seq = 2",
            2,
            "edited",
        ),
        (
            "middle deleted",
            "DELETE FROM audit_trail WHERE seq = 3",
            3,
            "removed",
        ),
        (
            "last deleted",
            "DELETE FROM audit_trail WHERE seq = 5",
            5,
            "removed",
        ),
        (
            "reordered",
            "UPDATE audit_trail SET seq = -1 WHERE seq = 3;
             UPDATE audit_trail SET seq = 3 WHERE seq = 4;
             UPDATE audit_trail SET seq = 4 WHERE seq = -1;",
            3,
            "reordered",
        ),
    ];
    for (what, sql, seq, word) in cases {
        let dir = data_dir_with_trail(5);
        tamper(dir.path(), sql);
        let out = verify(dir.path(), &[]);
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        let text = stdout(&out);
        assert!(
            text.contains(&format!("chain broken at record {seq}:")) && text.contains(word),
            "{what}: {text}"
        );
        let out = verify(dir.path(), &["--output", "json"]);
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["ok"], false, "{what}: {v}");
        assert_eq!(v["first_bad"]["seq"], seq, "{what}: {v}");
    }
}

#[test]
fn export_prints_json_lines_after_a_cursor() {
    let dir = data_dir_with_trail(5);
    let d = dir.path().to_str().unwrap();
    let out = run(&["audit-log", "export", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let records: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5);
    assert_eq!(records[0]["prev_hash"], opsloop_store::GENESIS_HASH);
    assert_eq!(records[1]["prev_hash"], records[0]["hash"]);
    assert_eq!(records[1]["actor"], "alice");
    assert_eq!(records[1]["kind"], "approved");
    assert_eq!(records[0]["time"], "2026-11-29T00:00:00.001Z");

    let out = run(&["audit-log", "export", "--data-dir", d, "--after", "3"]);
    let seqs: Vec<i64> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [4, 5]);

    let out = run(&["audit-log", "export", "--data-dir", d, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["records"].as_array().map(Vec::len), Some(5));
    assert_eq!(doc["records"][4]["hash"], records[4]["hash"]);
}
