//! `opsloop detect`: one scored row per input row, causality (a prefix gets the same scores),
//! the anomaly column and stretches, bad input reported without losing rows, the plot, and
//! Prometheus input against a real Prometheus.

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

/// Whether `doc` is well-formed XML as far as elements go: every tag closed in order, one root.
fn well_formed_xml(doc: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = doc;
    while let Some(open) = rest.find('<') {
        let close = rest[open..]
            .find('>')
            .ok_or_else(|| format!("unclosed `<` at {}", doc.len() - rest.len() + open))?;
        let tag = &rest[open + 1..open + close];
        rest = &rest[open + close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(top) if top == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let name = tag
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or_default()
            .to_string();
        if stack.is_empty() {
            roots += 1;
        }
        if !tag.ends_with('/') {
            stack.push(name);
        }
    }
    if !stack.is_empty() || roots != 1 {
        return Err(format!("open at the end: {stack:?}, {roots} root(s)"));
    }
    Ok(())
}

#[test]
fn plot_writes_a_well_formed_svg_of_series_score_and_stretches() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("spike.svg");
    let out = run(&[
        "detect",
        "--input",
        SPIKE,
        "--output",
        "text",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = std::fs::read_to_string(&svg).unwrap();
    assert!(doc.starts_with("<svg"), "{}", &doc[..80.min(doc.len())]);
    well_formed_xml(&doc).unwrap();
    for needle in [
        "value",
        "anomaly score",
        "threshold",
        "flagged stretch",
        "<rect",
    ] {
        assert!(doc.contains(needle), "no {needle:?} in the plot");
    }
}

#[test]
fn the_threshold_is_the_detectors_alarm_level_too() {
    use opsloop_detect::{Detector, DetectorConfig};
    let input = std::fs::read_to_string(fixture("detect/spike.csv")).unwrap();
    let values: Vec<f64> = input
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    for threshold in ["0.2", "0.9"] {
        let out = run(&["detect", "--input", SPIKE, "--threshold", threshold]);
        let mut d = Detector::new(DetectorConfig {
            alarm_level: threshold.parse().unwrap(),
            ..DetectorConfig::default()
        });
        let expected: Vec<String> = values
            .iter()
            .map(|v| d.push(*v).unwrap().to_string())
            .collect();
        let got: Vec<String> = csv_rows(&out.stdout)
            .into_iter()
            .map(|r| r[2].clone())
            .collect();
        assert_eq!(got, expected, "--threshold {threshold}");
    }
}

#[test]
fn one_glitch_does_not_hide_a_later_spike() {
    // The review's repro: 50 ± 10, one 1e12 at row 300, a 10x spike (500) at row 3000.
    let mut seed = 4u64;
    let mut csv = String::from("timestamp,value\n");
    for i in 0..4000 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let noise = (seed >> 33) as f64 / f64::from(1u32 << 31) - 0.5;
        let v = match i {
            300 => 1e12,
            3000 => 500.0,
            _ => 50.0 + 20.0 * noise,
        };
        csv.push_str(&format!("{},{v}\n", 1_700_000_000 + i * 60));
    }
    let out = run_with_stdin(
        &["detect", "--input", "-", "--threshold", "0.35"],
        csv.as_bytes(),
    );
    let flagged: Vec<usize> = csv_rows(&out.stdout)
        .iter()
        .enumerate()
        .filter(|(_, r)| r[3] == "1")
        .map(|(i, _)| i)
        .collect();
    assert!(flagged.contains(&300), "{flagged:?}");
    assert!(flagged.contains(&3000), "{flagged:?}");
}

#[test]
fn a_headerless_file_starting_with_nan_is_read_and_a_bad_one_prints_no_header() {
    let out = run_with_stdin(
        &["detect", "--input", "-"],
        b"1700000000,NaN\n1700000060,2\n1700000120,\n1700000180,3\n",
    );
    assert_eq!(out.status.code(), Some(3), "input problems");
    let rows = csv_rows(&out.stdout);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0], vec!["1700000000", "NaN", ""]);
    assert!(!rows[1][2].is_empty());
    assert_eq!(rows[2], vec!["1700000120", "", ""]);
    let out = run_with_stdin(&["detect", "--input", "-"], b"a,b\nx,y\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run_with_stdin(
        &["detect", "--input", "-"],
        br#"[{"timestamp": 1, "value": null}, [2, 3]]"#,
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("value is null (no sample)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_input_scores_every_returned_series() {
    if !crate::forecast::prometheus_available() {
        return;
    }
    // Two series every minute for 10 hours; series b spikes at point 500.
    let end_s: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    let points = 600;
    let mut om = String::from("# HELP load Load.\n# TYPE load gauge\n");
    for (instance, spike) in [("a", None), ("b", Some(500))] {
        for i in 0..points {
            let t = end_s - (points - 1 - i) * 60;
            let bump = if Some(i) == spike { 80.0 } else { 0.0 };
            let v = 20.0 + 3.0 * (i as f64 / 25.0).sin() + (i % 5) as f64 * 0.1 + bump;
            om.push_str(&format!("load{{instance=\"{instance}\"}} {v} {t}\n"));
        }
    }
    om.push_str("# EOF\n");
    let dir = tempfile::tempdir().unwrap();
    let server = crate::forecast::start_prometheus(dir.path(), &om);
    let end = end_s.to_string();
    let base = [
        "detect",
        "--prometheus",
        server.url.as_str(),
        "--query",
        "load",
        "--range",
        "10h",
        "--step",
        "1m",
        "--end",
        end.as_str(),
    ];
    let with = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    let out = with(&["--threshold", "0.5"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().next(),
        Some("series,timestamp,value,anomaly_score,anomaly")
    );
    let rows: Vec<Vec<String>> = text
        .lines()
        .skip(1)
        .map(|l| {
            // The series column is quoted (it holds commas and quotes): split after it.
            let (series, rest) = l.rsplit_once("\",").map_or(("", l), |(s, r)| (s, r));
            std::iter::once(series.trim_start_matches('"').replace("\"\"", "\""))
                .chain(rest.split(',').map(str::to_string))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 2 * points as usize);
    assert_eq!(rows[0][0], "load{instance=\"a\"}");
    assert_eq!(rows[points as usize][0], "load{instance=\"b\"}");
    let spike_ts = (end_s - (points - 1 - 500) * 60).to_string();
    let flagged: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r[4] == "1")
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(flagged, vec![("load{instance=\"b\"}", spike_ts.as_str())]);

    let out = with(&["--output", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let series = doc["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[1]["labels"]["instance"], "b");
    assert_eq!(series[1]["rows"].as_array().map(Vec::len), Some(600));
    assert_eq!(series[1]["stretches"][0]["start"], spike_ts.as_str());
    assert_eq!(series[0]["stretches"].as_array().map(Vec::len), Some(0));

    let plot = dir.path().join("load.svg");
    let out = with(&["--output", "text", "--plot", plot.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("load{instance=\"b\"}: 600 rows, 600 scored"),
        "{text}"
    );
    assert!(text.contains(&format!("  {spike_ts} ..")), "{text}");
    for n in [1, 2] {
        let doc = std::fs::read_to_string(dir.path().join(format!("load-{n}.svg"))).unwrap();
        well_formed_xml(&doc).unwrap();
    }
}
