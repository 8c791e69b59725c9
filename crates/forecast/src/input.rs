//! Reading series from files: CSV `timestamp,value[,series]` (header optional, columns found by
//! name, `ds`/`y` accepted too) and JSON (an array of objects or `[timestamp, value]` pairs, or a
//! Prometheus `query_range` answer with any number of series).
//!
//! Timestamps are RFC 3339 (a missing zone means UTC) or Unix seconds. A row that cannot be read
//! is reported with its line (or element) and skipped; the rest of the input is still read.
//! Empty, `NaN` and `null` values are kept as missing points (NaN): preparation reports them.

use std::collections::HashMap;

use serde_json::Value;
use thiserror::Error;

use crate::series::{Labels, Series, display_name};

/// What makes a whole input unreadable (as opposed to one bad row).
#[derive(Debug, Error)]
pub enum InputError {
    /// The input holds no rows at all.
    #[error("{source_name}: no data")]
    Empty {
        /// The file name or `-`.
        source_name: String,
    },
    /// The CSV header names no value column.
    #[error(
        "{source_name}: line 1: header {header:?} has no `value` column (expected `timestamp,value[,series]`)"
    )]
    NoValueColumn {
        /// The file name or `-`.
        source_name: String,
        /// The header as read.
        header: String,
    },
    /// JSON that does not parse.
    #[error("{source_name}: invalid JSON: {error}")]
    Json {
        /// The file name or `-`.
        source_name: String,
        /// The parser's message (with line and column).
        error: serde_json::Error,
    },
    /// JSON of a shape this reader does not know, or a Prometheus error answer.
    #[error("{source_name}: {message}")]
    Shape {
        /// The file name, `-` or the Prometheus URL.
        source_name: String,
        /// What is wrong.
        message: String,
    },
}

/// One row that could not be read; the row is skipped.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RowProblem {
    /// `FILE:line N` or `FILE: element N`.
    pub position: String,
    /// What is wrong with it.
    pub message: String,
}

/// Everything read from one input.
#[derive(Debug, Default)]
pub struct ReadSeries {
    /// The series, in order of first appearance.
    pub series: Vec<Series>,
    /// Rows skipped, with why.
    pub problems: Vec<RowProblem>,
}

/// Reads `text` (CSV or JSON, decided by its first non-blank character) named `source_name` in
/// messages. Series names default to `source_name` when the input has no series column.
pub fn read(source_name: &str, text: &str) -> Result<ReadSeries, InputError> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(InputError::Empty {
            source_name: source_name.to_owned(),
        });
    }
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let value: Value = serde_json::from_str(text).map_err(|error| InputError::Json {
            source_name: source_name.to_owned(),
            error,
        })?;
        read_json(source_name, &value)
    } else {
        read_csv(source_name, text)
    }
}

/// Parses a timestamp: RFC 3339 (zone optional, then UTC) or Unix seconds (fraction allowed).
/// Returns Unix milliseconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds_to_ms(seconds);
    }
    match opsloop_core::time::parse_iso8601(text.as_bytes()) {
        Some((ms, used)) if used == text.len() => Some(ms),
        _ => None,
    }
}

fn seconds_to_ms(seconds: f64) -> Option<i64> {
    // Beyond year 9999 a "timestamp" is a mistake (milliseconds passed as seconds, say).
    const MAX_SECONDS: f64 = 253_402_300_799.0;
    if seconds.is_finite() && seconds.abs() <= MAX_SECONDS {
        Some((seconds * 1000.0).round() as i64)
    } else {
        None
    }
}

/// A value: a finite number, or missing (empty, `NaN`, `null`) as NaN. Infinite or
/// non-numeric text is an error.
fn parse_value(text: &str) -> Result<f64, String> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("nan") || t.eq_ignore_ascii_case("null") {
        return Ok(f64::NAN);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("value {t:?} is not finite")),
        Err(_) => Err(format!("value {t:?} is not a number")),
    }
}

/// Collects points into series by name, keeping first-appearance order.
struct Collector<'a> {
    source_name: &'a str,
    index: HashMap<String, usize>,
    out: ReadSeries,
}

impl<'a> Collector<'a> {
    fn new(source_name: &'a str) -> Self {
        Collector {
            source_name,
            index: HashMap::new(),
            out: ReadSeries::default(),
        }
    }

    fn problem(&mut self, position: String, message: String) {
        self.out.problems.push(RowProblem { position, message });
    }

    fn series_mut(&mut self, name: Option<&str>, labels: Option<&Labels>) -> &mut Series {
        let key = name.unwrap_or(self.source_name);
        let i = match self.index.get(key) {
            Some(&i) => i,
            None => {
                let i = self.out.series.len();
                let mut series = Series::new(key);
                match labels {
                    Some(labels) => series.labels = labels.clone(),
                    None => {
                        if let Some(name) = name {
                            series.labels.insert("series".into(), name.to_owned());
                        }
                    }
                }
                self.out.series.push(series);
                self.index.insert(key.to_owned(), i);
                i
            }
        };
        // In bounds: the index only holds positions of series already pushed.
        &mut self.out.series[i]
    }

    fn push(&mut self, name: Option<&str>, labels: Option<&Labels>, ms: i64, value: f64) {
        self.series_mut(name, labels).points.push((ms, value));
    }

    fn finish(self) -> Result<ReadSeries, InputError> {
        if self.out.series.is_empty() && self.out.problems.is_empty() {
            return Err(InputError::Empty {
                source_name: self.source_name.to_owned(),
            });
        }
        Ok(self.out)
    }
}

fn read_csv(source_name: &str, text: &str) -> Result<ReadSeries, InputError> {
    let mut collector = Collector::new(source_name);
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let Some((first_no, first)) = lines.next() else {
        return Err(InputError::Empty {
            source_name: source_name.to_owned(),
        });
    };
    // Columns: by header names when the first field is not a timestamp, positional otherwise.
    let first_fields: Vec<&str> = first.split(',').map(str::trim).collect();
    let is_header = first_fields
        .first()
        .is_none_or(|f| parse_timestamp(f.trim_matches('"')).is_none());
    let (ts_col, value_col, series_col) = if is_header {
        let find = |names: &[&str]| {
            first_fields.iter().position(|f| {
                let f = f.trim_matches('"');
                names.iter().any(|n| f.eq_ignore_ascii_case(n))
            })
        };
        let value = find(&["value", "y", "v"]).ok_or_else(|| InputError::NoValueColumn {
            source_name: source_name.to_owned(),
            header: first.to_owned(),
        })?;
        let ts = find(&["timestamp", "ds", "time", "t", "date"]).unwrap_or(0);
        (ts, value, find(&["series", "name"]))
    } else {
        (0, 1, (first_fields.len() > 2).then_some(2))
    };
    let data_lines = (!is_header)
        .then_some((first_no, first))
        .into_iter()
        .chain(lines);
    for (no, line) in data_lines {
        let position = format!("{source_name}: line {}", no + 1);
        let fields: Vec<&str> = line
            .split(',')
            .map(|f| f.trim().trim_matches('"'))
            .collect();
        let (Some(ts_text), Some(value_text)) = (fields.get(ts_col), fields.get(value_col)) else {
            collector.problem(
                position,
                format!("{} field(s), expected timestamp and value", fields.len()),
            );
            continue;
        };
        let Some(ms) = parse_timestamp(ts_text) else {
            collector.problem(
                position,
                format!("timestamp {ts_text:?} is not RFC 3339 or Unix seconds"),
            );
            continue;
        };
        let value = match parse_value(value_text) {
            Ok(v) => v,
            Err(message) => {
                collector.problem(position, message);
                continue;
            }
        };
        let name = series_col
            .and_then(|c| fields.get(c))
            .copied()
            .filter(|s| !s.is_empty());
        collector.push(name, None, ms, value);
    }
    collector.finish()
}

fn json_timestamp(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_f64().and_then(seconds_to_ms),
        Value::String(s) => parse_timestamp(s),
        _ => None,
    }
}

fn json_value(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("value {n} is not a number")),
        Value::String(s) => parse_value(s),
        Value::Null => Ok(f64::NAN),
        other => Err(format!("value {other} is not a number")),
    }
}

fn read_json(source_name: &str, value: &Value) -> Result<ReadSeries, InputError> {
    if let Some(obj) = value.as_object()
        && (obj.contains_key("data") || obj.contains_key("status"))
    {
        return read_prometheus(source_name, value);
    }
    let Some(items) = value.as_array() else {
        return Err(InputError::Shape {
            source_name: source_name.to_owned(),
            message: "expected an array of {timestamp, value[, series]} objects or [timestamp, value] pairs, or a Prometheus query_range answer".into(),
        });
    };
    let mut collector = Collector::new(source_name);
    for (i, item) in items.iter().enumerate() {
        let position = format!("{source_name}: element {}", i + 1);
        let (ts, val, name) = match item {
            Value::Array(pair) => (pair.first(), pair.get(1), None),
            Value::Object(o) => {
                let get = |names: &[&str]| names.iter().find_map(|n| o.get(*n));
                (
                    get(&["timestamp", "ds", "time", "t"]),
                    get(&["value", "y", "v"]),
                    get(&["series", "name"]).and_then(Value::as_str),
                )
            }
            _ => (None, None, None),
        };
        let (Some(ts), Some(val)) = (ts, val) else {
            collector.problem(
                position,
                "expected {timestamp, value} or [timestamp, value]".into(),
            );
            continue;
        };
        let Some(ms) = json_timestamp(ts) else {
            collector.problem(
                position,
                format!("timestamp {ts} is not RFC 3339 or Unix seconds"),
            );
            continue;
        };
        match json_value(val) {
            Ok(v) => collector.push(name, None, ms, v),
            Err(message) => collector.problem(position, message),
        }
    }
    collector.finish()
}

/// Reads a Prometheus HTTP API answer (`query_range` matrix, or an instant vector) into one series
/// per result, labels kept. An error answer (`"status": "error"`) is an [`InputError::Shape`]
/// carrying Prometheus' own message.
pub fn read_prometheus(source_name: &str, value: &Value) -> Result<ReadSeries, InputError> {
    let shape = |message: String| InputError::Shape {
        source_name: source_name.to_owned(),
        message,
    };
    let status = value.get("status").and_then(Value::as_str).unwrap_or("");
    if status != "success" {
        let kind = value.get("errorType").and_then(Value::as_str).unwrap_or("");
        let error = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error message");
        return Err(shape(format!(
            "Prometheus answered status {status:?}: {kind} {error}"
        )));
    }
    let result_type = value
        .pointer("/data/resultType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(results) = value.pointer("/data/result").and_then(Value::as_array) else {
        return Err(shape("Prometheus answer has no data.result array".into()));
    };
    if !matches!(result_type, "matrix" | "vector") {
        return Err(shape(format!(
            "Prometheus answer of type {result_type:?}: expected a matrix (use query_range)"
        )));
    }
    let mut collector = Collector::new(source_name);
    for (i, result) in results.iter().enumerate() {
        let labels: Labels = result
            .get("metric")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let name = display_name(&labels);
        // Two results with the same labels cannot happen in Prometheus; keep them apart anyway.
        let name = if collector.index.contains_key(&name) {
            format!("{name}#{}", i + 1)
        } else {
            name
        };
        collector.series_mut(Some(&name), Some(&labels));
        let samples: Vec<&Value> = match (result.get("values"), result.get("value")) {
            (Some(Value::Array(values)), _) => values.iter().collect(),
            (None, Some(single)) => vec![single],
            _ => Vec::new(),
        };
        for (j, sample) in samples.into_iter().enumerate() {
            let position = format!("{source_name}: result {} sample {}", i + 1, j + 1);
            let parsed = sample
                .as_array()
                .and_then(|p| Some((json_timestamp(p.first()?)?, p.get(1)?)));
            let Some((ms, v)) = parsed else {
                collector.problem(
                    position,
                    format!("sample {sample} is not [time, \"value\"]"),
                );
                continue;
            };
            match json_value(v) {
                Ok(v) => collector.push(Some(&name), Some(&labels), ms, v),
                Err(message) => collector.problem(position, message),
            }
        }
    }
    Ok(collector.out)
}

/// A Prometheus API answer read straight into typed values (no `serde_json::Value` tree: a
/// tree of a 1,000-series answer takes about ten times the answer's size). Strings borrow
/// from the answer where they carry no escapes.
mod typed {
    use std::borrow::Cow;
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{Deserializer, SeqAccess, Visitor};

    use crate::series::Labels;

    #[derive(Deserialize)]
    pub(super) struct Answer<'a> {
        #[serde(borrow)]
        pub(super) status: Cow<'a, str>,
        #[serde(default, rename = "errorType", borrow)]
        pub(super) error_type: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        pub(super) error: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        pub(super) data: Option<Data<'a>>,
    }

    #[derive(Deserialize)]
    pub(super) struct Data<'a> {
        #[serde(default, rename = "resultType", borrow)]
        pub(super) result_type: Option<Cow<'a, str>>,
        #[serde(default)]
        pub(super) result: Option<Vec<Result>>,
    }

    #[derive(Deserialize)]
    pub(super) struct Result {
        #[serde(default)]
        pub(super) metric: Labels,
        #[serde(default)]
        pub(super) values: Option<Samples>,
        #[serde(default)]
        pub(super) value: Option<Sample>,
    }

    /// One `[time, "value"]` pair, converted as it is read: `(ms, value)` or why not.
    pub(super) type Converted = std::result::Result<(i64, f64), String>;

    /// A sample as written: seconds and the value as a string.
    #[derive(Deserialize)]
    struct Raw<'a>(f64, #[serde(borrow)] Cow<'a, str>);

    fn convert(raw: Raw<'_>) -> Converted {
        let ms = super::seconds_to_ms(raw.0)
            .ok_or_else(|| format!("time {} is not Unix seconds", raw.0))?;
        super::parse_value(&raw.1).map(|v| (ms, v))
    }

    /// An instant vector's single sample.
    pub(super) struct Sample(pub(super) Converted);

    impl<'de> Deserialize<'de> for Sample {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            Raw::deserialize(d).map(|raw| Sample(convert(raw)))
        }
    }

    /// A matrix result's samples, each converted as it is read (16 bytes a point), with the
    /// positions (from 1) and reasons of those that could not be.
    #[derive(Default)]
    pub(super) struct Samples {
        pub(super) points: Vec<(i64, f64)>,
        pub(super) problems: Vec<(usize, String)>,
    }

    impl<'de> Deserialize<'de> for Samples {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct SamplesVisitor;
            impl<'de> Visitor<'de> for SamplesVisitor {
                type Value = Samples;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an array of [time, \"value\"] pairs")
                }
                fn visit_seq<A: SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> std::result::Result<Samples, A::Error> {
                    let mut out = Samples {
                        points: Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16)),
                        problems: Vec::new(),
                    };
                    while let Some(raw) = seq.next_element::<Raw<'de>>()? {
                        match convert(raw) {
                            Ok(p) => out.points.push(p),
                            Err(e) => out
                                .problems
                                .push((out.points.len() + out.problems.len() + 1, e)),
                        }
                    }
                    Ok(out)
                }
            }
            d.deserialize_seq(SamplesVisitor)
        }
    }
}

/// Reads a Prometheus HTTP API answer from its bytes, as [`read_prometheus`] does from a
/// parsed document, without building a JSON tree of it (an answer of 1,000 series of two
/// weeks is about 90 MB; its tree would be ten times that). `Ok(None)`: the bytes are not a
/// Prometheus API document (no `status`), for the caller to report with the HTTP status. A
/// document of an unexpected shape (a sample that is not `[time, "value"]`, say) is read
/// through the JSON tree instead, so that each bad sample is reported where it is.
pub fn read_prometheus_slice(
    source_name: &str,
    bytes: &[u8],
) -> Result<Option<ReadSeries>, InputError> {
    let answer: typed::Answer<'_> = match serde_json::from_slice(bytes) {
        Ok(answer) => answer,
        Err(_) => {
            return match serde_json::from_slice::<Value>(bytes) {
                Ok(doc) if doc.get("status").is_some() => {
                    read_prometheus(source_name, &doc).map(Some)
                }
                _ => Ok(None),
            };
        }
    };
    let shape = |message: String| InputError::Shape {
        source_name: source_name.to_owned(),
        message,
    };
    if answer.status != "success" {
        return Err(shape(format!(
            "Prometheus answered status {:?}: {} {}",
            answer.status,
            answer.error_type.as_deref().unwrap_or(""),
            answer.error.as_deref().unwrap_or("no error message")
        )));
    }
    let Some(data) = answer.data else {
        return Err(shape("Prometheus answer has no data.result array".into()));
    };
    let result_type = data.result_type.as_deref().unwrap_or("").to_owned();
    let Some(results) = data.result else {
        return Err(shape("Prometheus answer has no data.result array".into()));
    };
    if !matches!(result_type.as_str(), "matrix" | "vector") {
        return Err(shape(format!(
            "Prometheus answer of type {result_type:?}: expected a matrix (use query_range)"
        )));
    }
    let mut collector = Collector::new(source_name);
    for (i, result) in results.into_iter().enumerate() {
        let labels = result.metric;
        let name = display_name(&labels);
        // Two results with the same labels cannot happen in Prometheus; keep them apart anyway.
        let name = if collector.index.contains_key(&name) {
            format!("{name}#{}", i + 1)
        } else {
            name
        };
        let (points, problems) = match (result.values, result.value) {
            (Some(samples), _) => (samples.points, samples.problems),
            (None, Some(typed::Sample(Ok(p)))) => (vec![p], Vec::new()),
            (None, Some(typed::Sample(Err(e)))) => (Vec::new(), vec![(1, e)]),
            (None, None) => (Vec::new(), Vec::new()),
        };
        for (j, message) in problems {
            collector.problem(
                format!("{source_name}: result {} sample {j}", i + 1),
                message,
            );
        }
        let series = collector.series_mut(Some(&name), Some(&labels));
        if series.points.is_empty() {
            series.points = points;
        } else {
            series.points.extend(points);
        }
    }
    Ok(Some(collector.out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_prometheus_reading_matches_the_tree() {
        let docs = [
            r#"{"status":"success","data":{"resultType":"matrix","result":[
                {"metric":{"__name__":"up","job":"a\"b"},"values":[[1700000000,"1"],[1700000300.5,"NaN"],[1700000600,"+Inf"],[1700000900,"2e3"]]},
                {"metric":{},"values":[]},
                {"metric":{"job":"v"},"value":[1700000000,"7"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[
                {"metric":{"job":"a"},"values":[[1700000000,"1"],["x",2],[1700000600,"3"]]}]}}"#,
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
            r#"{"status":"success","data":{"resultType":"scalar","result":[]}}"#,
            r#"{"status":"success"}"#,
        ];
        for doc in docs {
            let tree = read_prometheus("p", &serde_json::from_str(doc).unwrap());
            let typed = read_prometheus_slice("p", doc.as_bytes());
            match (tree, typed) {
                (Ok(a), Ok(Some(b))) => {
                    assert_eq!(a.problems, b.problems, "{doc}");
                    assert_eq!(a.series.len(), b.series.len(), "{doc}");
                    for (x, y) in a.series.iter().zip(&b.series) {
                        assert_eq!((&x.name, &x.labels), (&y.name, &y.labels));
                        let bits = |s: &Series| -> Vec<(i64, u64)> {
                            s.points.iter().map(|(t, v)| (*t, v.to_bits())).collect()
                        };
                        assert_eq!(bits(x), bits(y), "{doc}");
                    }
                }
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("{doc}: {a:?} vs {b:?}"),
            }
        }
        assert!(matches!(
            read_prometheus_slice("p", b"upstream down"),
            Ok(None)
        ));
        assert!(matches!(read_prometheus_slice("p", b"{\"a\":1}"), Ok(None)));
    }

    #[test]
    fn csv_with_header_series_and_bad_rows() {
        let text = "timestamp,value,series\n\
                    2024-01-01T00:00:00Z,1.5,a\n\
                    1704067500,2,a\n\
                    2024-01-01T00:00:00Z,x,b\n\
                    yesterday,3,b\n\
                    2024-01-01T00:10:00,inf,a\n\
                    2024-01-01T00:15:00+00:00,,b\n";
        let read = read("f.csv", text).unwrap();
        assert_eq!(read.series.len(), 2);
        assert_eq!(read.series[0].name, "a");
        assert_eq!(
            read.series[0].points,
            vec![(1_704_067_200_000, 1.5), (1_704_067_500_000, 2.0)]
        );
        assert_eq!(read.series[1].labels.get("series").unwrap(), "b");
        assert!(read.series[1].points[0].1.is_nan());
        let positions: Vec<&str> = read.problems.iter().map(|p| p.position.as_str()).collect();
        assert_eq!(
            positions,
            ["f.csv: line 4", "f.csv: line 5", "f.csv: line 6"]
        );
        assert!(read.problems[2].message.contains("not finite"));
    }

    #[test]
    fn csv_without_header_and_nab_columns() {
        let read = read("-", "0,1\n300,2\n").unwrap();
        assert_eq!(read.series[0].points, vec![(0, 1.0), (300_000, 2.0)]);
        assert_eq!(read.series[0].name, "-");
        let nab = "ds,y,observed,split\n2015-01-17T00:00:00,24841.0,1,train\n";
        let read = super::read("nab.csv", nab).unwrap();
        assert_eq!(read.series[0].points[0].1, 24841.0);
    }

    #[test]
    fn csv_header_without_value_is_an_error() {
        let err = read("f.csv", "when,what\n1,2\n").unwrap_err();
        assert!(err.to_string().contains("f.csv: line 1"), "{err}");
    }

    #[test]
    fn json_objects_and_pairs() {
        let text =
            r#"[{"timestamp": 0, "value": 1}, [60, "2"], {"timestamp": "bad", "value": 3}, 7]"#;
        let read = read("j.json", text).unwrap();
        assert_eq!(read.series[0].points, vec![(0, 1.0), (60_000, 2.0)]);
        assert_eq!(read.problems.len(), 2);
        assert_eq!(read.problems[0].position, "j.json: element 3");
    }

    #[test]
    fn prometheus_matrix_keeps_labels() {
        let text = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","job":"a"},"values":[[1700000000,"1"],[1700000060,"NaN"]]},
            {"metric":{"job":"b"},"values":[[1700000000.5,"2"],["x","3"]]}]}}"#;
        let read = read("prom", text).unwrap();
        assert_eq!(read.series.len(), 2);
        assert_eq!(read.series[0].name, "up{job=\"a\"}");
        assert_eq!(read.series[0].labels.get("job").unwrap(), "a");
        assert_eq!(read.series[1].points, vec![(1_700_000_000_500, 2.0)]);
        assert_eq!(read.problems.len(), 1);
    }

    #[test]
    fn prometheus_error_answer_carries_its_message() {
        let text = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let err = read("http://p", text).unwrap_err().to_string();
        assert!(err.contains("bad_data parse error at char 3"), "{err}");
    }

    #[test]
    fn empty_inputs_are_errors() {
        assert!(matches!(read("e", "  \n"), Err(InputError::Empty { .. })));
        assert!(matches!(
            read("e", "timestamp,value\n"),
            Err(InputError::Empty { .. })
        ));
        assert!(matches!(read("e", "{"), Err(InputError::Json { .. })));
    }
}
