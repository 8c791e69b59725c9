//! `opsloop detect`: one scored row per input row, causality (a prefix gets the same scores),
//! the anomaly column and stretches, bad input reported without losing rows.

use serde_json::Value;

use crate::{fixture, run, run_with_stdin};

const SPIKE: &str = "tests/fixtures/detect/spike.csv";

/// Rows of CSV output, header excluded, split into fields.
fn csv_rows(stdout: &[u8]) -> Vec<Vec<String>> {
    String::from_utf8_lossy(stdout)
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn csv_output_repeats_each_row_with_a_score_in_unit_range() {
    let out = run(&["detect", "--input", SPIKE]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().next(), Some("timestamp,value,anomaly_score"));
    let input = std::fs::read_to_string(fixture("detect/spike.csv")).unwrap();
    let input_rows: Vec<&str> = input.lines().skip(1).collect();
    let rows = csv_rows(&out.stdout);
    assert_eq!(rows.len(), input_rows.len());
    for (row, line) in rows.iter().zip(&input_rows) {
        assert_eq!(
            format!("{},{}", row[0], row[1]),
            *line,
            "timestamp and value as read"
        );
        let score: f64 = row[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "{score}");
    }
    // The spike (row 701 of the data) scores highest.
    let best = rows
        .iter()
        .max_by(|a, b| {
            a[2].parse::<f64>()
                .unwrap()
                .total_cmp(&b[2].parse().unwrap())
        })
        .unwrap();
    assert_eq!(best[0], "2024-01-03 10:20:00");
}

#[test]
fn a_prefix_gets_exactly_the_scores_it_gets_in_the_whole_file() {
    let whole = run(&["detect", "--input", SPIKE]);
    let input = std::fs::read_to_string(fixture("detect/spike.csv")).unwrap();
    for keep in [1usize, 151, 400, 701] {
        let prefix: String = input
            .lines()
            .take(keep + 1)
            .map(|l| format!("{l}\n"))
            .collect();
        let part = run_with_stdin(&["detect", "--input", "-"], prefix.as_bytes());
        assert_eq!(part.status.code(), Some(0));
        let whole_rows = csv_rows(&whole.stdout);
        let part_rows = csv_rows(&part.stdout);
        assert_eq!(part_rows.len(), keep);
        assert_eq!(part_rows[..], whole_rows[..keep], "prefix of {keep} rows");
    }
}

#[test]
fn threshold_adds_the_anomaly_column_and_text_lists_the_stretch() {
    let out = run(&["detect", "--input", SPIKE, "--threshold", "0.5"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().next(),
        Some("timestamp,value,anomaly_score,anomaly")
    );
    let flagged: Vec<String> = csv_rows(&out.stdout)
        .into_iter()
        .filter(|r| r[3] == "1")
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(flagged, vec!["2024-01-03 10:20:00".to_string()]);

    let out = run(&["detect", "--input", SPIKE, "--output", "text"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("800 rows, 800 scored"), "{text}");
    assert!(text.contains("1 anomalous stretch"), "{text}");
    assert!(text.contains("2024-01-03 10:20:00 .."), "{text}");
}

#[test]
fn json_output_holds_rows_and_stretches() {
    let out = run(&["detect", "--input", SPIKE, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["rows"].as_array().map(Vec::len), Some(800));
    assert_eq!(doc["rows"][700]["timestamp"], "2024-01-03 10:20:00");
    assert_eq!(doc["rows"][700]["value"], "120.000");
    assert_eq!(doc["rows"][700]["anomaly"], true);
    assert_eq!(doc["stretches"][0]["start"], "2024-01-03 10:20:00");
}

#[test]
fn bad_rows_are_reported_by_line_and_passed_through() {
    let out = run(&["detect", "--input", "tests/fixtures/detect/bad.csv"]);
    assert_eq!(out.status.code(), Some(3), "input problems exit 3");
    let rows = csv_rows(&out.stdout);
    assert_eq!(rows.len(), 8, "every row is written");
    assert_eq!(rows[1], vec!["2024-01-01 00:05:00", "abc", ""]);
    assert_eq!(rows[2], vec!["2024-01-01 00:10:00", "NaN", ""]);
    assert!(!rows[7][2].is_empty(), "scoring goes on after bad rows");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "bad.csv: line 3 (passed through unscored): value \"abc\" is not a number",
        "line 4 (passed through unscored): value \"NaN\" is not finite",
        "line 6: timestamp \"2023-12-31 00:00:00\" is earlier",
        "line 7: timestamp \"not a time\"",
        "line 8 (passed through unscored): 1 field(s)",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in\n{stderr}");
    }
}

#[test]
fn unreadable_input_is_an_error() {
    let out = run(&["detect", "--input", "tests/fixtures/detect/missing.csv"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_with_stdin(&["detect", "--input", "-"], b"a,b\nx,y\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `value` column"));
    let out = run(&["detect", "--input", SPIKE, "--threshold", "2"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn empty_and_constant_input_are_defined() {
    let out = run_with_stdin(&["detect", "--input", "-"], b"timestamp,value\n");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "timestamp,value,anomaly_score\n"
    );
    let constant: String = std::iter::once("timestamp,value\n".to_string())
        .chain((0..500).map(|i| format!("{i},7\n")))
        .collect();
    let out = run_with_stdin(&["detect", "--input", "-"], constant.as_bytes());
    assert_eq!(out.status.code(), Some(0));
    assert!(csv_rows(&out.stdout).iter().all(|r| r[2] == "0"));
}
