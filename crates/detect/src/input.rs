//! The `timestamp,value` reader: CSV (header optional, columns found by name) and JSON (an
//! array of objects or pairs, or a Prometheus `query_range` answer with one series).
//!
//! Rows keep their timestamp and value text exactly as read, so the output can repeat them.
//! A row whose value is not a finite number is kept too, with its problem: the caller passes it
//! through unscored. Timestamp order is checked by [`TimestampCheck`], which reports without
//! rejecting (the detector scores rows in input order).

use std::io::BufRead;

use serde_json::Value;
use thiserror::Error;

/// What makes the whole input unreadable (as opposed to one bad row).
#[derive(Debug, Error)]
pub enum InputError {
    /// The underlying reader failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV header names no `value` column, and the first row is not data either.
    #[error("line 1: header {header:?} has no `value` column (expected `timestamp,value`)")]
    NoValueColumn {
        /// The header as read.
        header: String,
    },
    /// JSON input that is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON input of a shape this reader does not know.
    #[error("JSON input: {0}")]
    JsonShape(String),
}

/// Why one row cannot be scored, or is suspicious.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum RowProblem {
    /// The line is not UTF-8 text (read with replacement characters).
    #[error("not UTF-8 text")]
    NotUtf8,
    /// Too few fields for the columns named by the header.
    #[error("{found} field(s), expected timestamp and value")]
    MissingField {
        /// Fields found on the row.
        found: usize,
    },
    /// The value is not a number.
    #[error("value {0:?} is not a number")]
    NotANumber(String),
    /// The value is NaN or infinite.
    #[error("value {0:?} is not finite")]
    NotFinite(String),
    /// The value is JSON `null`: no sample at that time.
    #[error("value is null (no sample)")]
    Null,
    /// The timestamp is not a date, a date-time or a number of seconds.
    #[error("timestamp {0:?} is not a date-time or a number")]
    BadTimestamp(String),
    /// The same timestamp as the previous row.
    #[error("timestamp {timestamp:?} repeats the one of {previous_row}")]
    DuplicateTimestamp {
        /// The timestamp as read.
        timestamp: String,
        /// Where it was seen before ("line N" or "element N").
        previous_row: String,
    },
    /// A timestamp earlier than the previous row's.
    #[error("timestamp {timestamp:?} is earlier than the one of {previous_row}")]
    UnorderedTimestamp {
        /// The timestamp as read.
        timestamp: String,
        /// The row it should follow ("line N" or "element N").
        previous_row: String,
    },
}

/// Where a row came from: a CSV line or a JSON array element (both 1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// A line of CSV input.
    Line(usize),
    /// An element of a JSON array.
    Element(usize),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Element(n) => write!(f, "element {n}"),
        }
    }
}

/// One input row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Where it was read.
    pub position: Position,
    /// The timestamp as read (unquoted).
    pub timestamp: String,
    /// The value as read (unquoted).
    pub value_text: String,
    /// The value, or why it cannot be scored.
    pub value: Result<f64, RowProblem>,
}

/// Parses a value field: a finite number.
pub fn parse_value(text: &str) -> Result<f64, RowProblem> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(RowProblem::NotFinite(text.to_string())),
        Err(_) => Err(RowProblem::NotANumber(text.to_string())),
    }
}

/// Seconds since the Unix epoch of a timestamp: RFC 3339, a civil date-time read as UTC
/// (`2015-02-26 21:42:53`, NAB's form), a date, or a number of seconds.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    let t = text.trim();
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Some(ts.as_millisecond() as f64 / 1000.0);
    }
    if let Ok(dt) = t.parse::<jiff::civil::DateTime>() {
        return dt
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_millisecond() as f64 / 1000.0);
    }
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Checks timestamps in input order: unparsable, repeated or going back in time.
#[derive(Debug, Default)]
pub struct TimestampCheck {
    last: Option<(f64, Position)>,
}

impl TimestampCheck {
    /// The problem of `row`'s timestamp, if any. An unparsable timestamp does not move the
    /// reference point, so one bad row does not flag the next.
    pub fn check(&mut self, row: &Row) -> Option<RowProblem> {
        let Some(t) = parse_timestamp(&row.timestamp) else {
            return Some(RowProblem::BadTimestamp(row.timestamp.clone()));
        };
        let problem = match self.last {
            Some((prev, pos)) if t == prev => Some(RowProblem::DuplicateTimestamp {
                timestamp: row.timestamp.clone(),
                previous_row: pos.to_string(),
            }),
            Some((prev, pos)) if t < prev => Some(RowProblem::UnorderedTimestamp {
                timestamp: row.timestamp.clone(),
                previous_row: pos.to_string(),
            }),
            _ => None,
        };
        if problem.is_none() {
            self.last = Some((t, row.position));
        }
        problem
    }
}

/// The rows of an input, read as they come (CSV) or after parsing the document (JSON).
pub enum Rows<R> {
    /// CSV, streamed line by line.
    Csv(CsvRows<R>),
    /// JSON, parsed whole.
    Json(std::vec::IntoIter<Row>),
}

impl<R: BufRead> Iterator for Rows<R> {
    type Item = Result<Row, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Rows::Csv(rows) => rows.next(),
            Rows::Json(rows) => rows.next().map(Ok),
        }
    }
}

/// Opens `reader`: JSON if the first non-blank character is `[` or `{`, else CSV.
pub fn open<R: BufRead>(mut reader: R) -> Result<Rows<R>, InputError> {
    let first = loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break None;
        }
        // Skip a UTF-8 byte-order mark and leading blanks.
        let skip = buf
            .iter()
            .take_while(|b| b.is_ascii_whitespace() || matches!(b, 0xEF | 0xBB | 0xBF))
            .count();
        if skip < buf.len() {
            break buf.get(skip).copied();
        }
        let n = buf.len();
        reader.consume(n);
    };
    if matches!(first, Some(b'[' | b'{')) {
        let doc: Value = serde_json::from_reader(reader)?;
        Ok(Rows::Json(json_rows(&doc)?.into_iter()))
    } else {
        Ok(Rows::Csv(CsvRows::new(reader)))
    }
}

/// CSV rows, streamed.
pub struct CsvRows<R> {
    reader: R,
    line: usize,
    buf: Vec<u8>,
    fields: Vec<String>,
    /// Column indexes of timestamp and value, known after the first record.
    columns: Option<(usize, usize)>,
    /// The current line was not UTF-8.
    lossy: bool,
    failed: bool,
}

impl<R: BufRead> CsvRows<R> {
    fn new(reader: R) -> Self {
        CsvRows {
            reader,
            line: 0,
            buf: Vec::new(),
            fields: Vec::new(),
            columns: None,
            lossy: false,
            failed: false,
        }
    }

    /// Reads the next non-blank line into `fields`; false at the end.
    fn read_record(&mut self) -> Result<bool, InputError> {
        loop {
            self.buf.clear();
            if self.reader.read_until(b'\n', &mut self.buf)? == 0 {
                return Ok(false);
            }
            self.line += 1;
            let text = String::from_utf8_lossy(&self.buf);
            self.lossy = matches!(text, std::borrow::Cow::Owned(_));
            let text = text
                .trim_start_matches('\u{feff}')
                .trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() || text.starts_with('#') {
                continue;
            }
            split_csv(text, &mut self.fields);
            return Ok(true);
        }
    }

    fn row(&self, ts: usize, val: usize) -> Row {
        let position = Position::Line(self.line);
        match (self.fields.get(ts), self.fields.get(val)) {
            (Some(t), Some(v)) if self.lossy => Row {
                position,
                timestamp: t.clone(),
                value_text: v.clone(),
                value: Err(RowProblem::NotUtf8),
            },
            (Some(t), Some(v)) => Row {
                position,
                timestamp: t.clone(),
                value_text: v.clone(),
                value: parse_value(v),
            },
            _ => Row {
                position,
                timestamp: self.fields.first().cloned().unwrap_or_default(),
                value_text: String::new(),
                value: Err(RowProblem::MissingField {
                    found: self.fields.len(),
                }),
            },
        }
    }
}

impl<R: BufRead> Iterator for CsvRows<R> {
    type Item = Result<Row, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.read_record() {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        }
        if let Some((ts, val)) = self.columns {
            return Some(Ok(self.row(ts, val)));
        }
        // First record: a header naming the columns, or data in `timestamp,value` order.
        let named = |names: &[&str]| {
            self.fields
                .iter()
                .position(|f| names.iter().any(|n| f.trim().eq_ignore_ascii_case(n)))
        };
        if let Some(val) = named(&["value", "y"]) {
            let ts = named(&["timestamp", "time", "ts", "date", "ds"]).unwrap_or(if val == 0 {
                1
            } else {
                0
            });
            self.columns = Some((ts, val));
            return self.next();
        }
        // Data when the first field is a time or the second a number of any kind (NaN and an
        // empty value included: that row passes through unscored, the file is still read).
        let data = self.fields.len() >= 2
            && (self
                .fields
                .first()
                .is_some_and(|t| parse_timestamp(t).is_some())
                || self
                    .fields
                    .get(1)
                    .is_some_and(|v| v.trim().is_empty() || v.trim().parse::<f64>().is_ok()));
        if data {
            self.columns = Some((0, 1));
            return Some(Ok(self.row(0, 1)));
        }
        self.failed = true;
        Some(Err(InputError::NoValueColumn {
            header: self.fields.join(","),
        }))
    }
}

/// Splits one CSV line into `out`, honouring double quotes (`""` inside quotes is a quote).
fn split_csv(line: &str, out: &mut Vec<String>) {
    out.clear();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (',', false) => out.push(std::mem::take(&mut field).trim().to_string()),
            _ => field.push(c),
        }
    }
    out.push(field.trim().to_string());
}

/// The text of a JSON scalar as it would be written back: strings unquoted, numbers as printed.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn json_row(index: usize, item: &Value) -> Row {
    let position = Position::Element(index + 1);
    let (ts, val) = match item {
        Value::Array(pair) => (pair.first(), pair.get(1)),
        Value::Object(map) => (
            ["timestamp", "time", "ts", "date"]
                .iter()
                .find_map(|k| map.get(*k)),
            map.get("value"),
        ),
        _ => (None, None),
    };
    let timestamp = ts.and_then(scalar_text).unwrap_or_default();
    if matches!(val, Some(Value::Null)) {
        return Row {
            position,
            timestamp,
            value_text: "null".into(),
            value: Err(RowProblem::Null),
        };
    }
    match val.and_then(scalar_text) {
        Some(text) => Row {
            position,
            timestamp,
            value: parse_value(&text),
            value_text: text,
        },
        None => Row {
            position,
            timestamp,
            value_text: String::new(),
            value: Err(RowProblem::MissingField {
                found: usize::from(ts.is_some()),
            }),
        },
    }
}

/// The rows of a JSON document.
fn json_rows(doc: &Value) -> Result<Vec<Row>, InputError> {
    let items = match doc {
        Value::Array(items) => items,
        Value::Object(map) => {
            // A Prometheus `query_range` answer: `data.result[0].values`.
            let result = map
                .get("data")
                .and_then(|d| d.get("result"))
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    InputError::JsonShape(
                        "expected an array of {timestamp, value} or a Prometheus query_range answer"
                            .into(),
                    )
                })?;
            match result.as_slice() {
                [one] => one
                    .get("values")
                    .and_then(Value::as_array)
                    .ok_or_else(|| InputError::JsonShape("the series has no `values`".into()))?,
                other => {
                    return Err(InputError::JsonShape(format!(
                        "the Prometheus answer holds {} series; detect reads one",
                        other.len()
                    )));
                }
            }
        }
        _ => {
            return Err(InputError::JsonShape(
                "expected an array or an object".into(),
            ));
        }
    };
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, item)| json_row(i, item))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Row> {
        open(text.as_bytes())
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    #[test]
    fn csv_with_header_keeps_text_as_read() {
        let rows = read("timestamp,value\n2015-02-26 21:42:53,35\n\"2015-02-26 21:47:53\",4.10\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].timestamp, "2015-02-26 21:47:53");
        assert_eq!(rows[1].value_text, "4.10");
        assert_eq!(rows[1].value, Ok(4.1));
        assert_eq!(rows[1].position, Position::Line(3));
    }

    #[test]
    fn csv_columns_by_name_and_without_header() {
        let rows = read("value,extra,timestamp\n1,x,2020-01-01T00:00:00Z\n");
        assert_eq!(rows[0].timestamp, "2020-01-01T00:00:00Z");
        assert_eq!(rows[0].value, Ok(1.0));
        let rows = read("100,1\n200,2\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].value, Ok(2.0));
    }

    #[test]
    fn bad_values_are_kept_with_their_problem() {
        let rows = read("timestamp,value\n1,abc\n2,NaN\n3,inf\n4\n5,2\n");
        assert_eq!(rows[0].value, Err(RowProblem::NotANumber("abc".into())));
        assert_eq!(rows[1].value, Err(RowProblem::NotFinite("NaN".into())));
        assert_eq!(rows[2].value, Err(RowProblem::NotFinite("inf".into())));
        assert_eq!(rows[3].value, Err(RowProblem::MissingField { found: 1 }));
        assert_eq!(rows[4].value, Ok(2.0));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_a_row_problem() {
        let rows: Vec<Row> = open(&b"timestamp,value\n1,\xff2\n2,3\n"[..])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows[0].value, Err(RowProblem::NotUtf8));
        assert_eq!(rows[1].value, Ok(3.0));
    }

    #[test]
    fn a_headerless_file_whose_first_value_is_not_a_number_is_still_read() {
        for first in ["NaN", "", "inf"] {
            let rows = read(&format!("1700000000,{first}\n1700000060,2\n"));
            assert_eq!(rows.len(), 2, "{first:?}");
            assert!(rows[0].value.is_err(), "{first:?}");
            assert_eq!(rows[0].value_text, first);
            assert_eq!(rows[1].value, Ok(2.0));
        }
        // A first field that is a time is enough too.
        let rows = read("2024-01-01T00:00:00Z,abc\n2024-01-01T00:01:00Z,3\n");
        assert_eq!(rows[0].value, Err(RowProblem::NotANumber("abc".into())));
        assert_eq!(rows[1].value, Ok(3.0));
    }

    #[test]
    fn a_json_null_value_says_so() {
        let rows = read(r#"[{"timestamp": 1, "value": null}, [2, null], [3, 4]]"#);
        assert_eq!(rows[0].value, Err(RowProblem::Null));
        assert_eq!(rows[1].value, Err(RowProblem::Null));
        assert_eq!(rows[0].value_text, "null");
        assert_eq!(RowProblem::Null.to_string(), "value is null (no sample)");
        assert_eq!(rows[2].value, Ok(4.0));
    }

    #[test]
    fn header_without_value_is_an_error() {
        let mut rows = open("a,b\nx,y\n".as_bytes()).unwrap();
        assert!(matches!(
            rows.next(),
            Some(Err(InputError::NoValueColumn { .. }))
        ));
        assert!(rows.next().is_none());
    }

    #[test]
    fn json_shapes() {
        let rows = read(r#"[{"timestamp":"2020-01-01 00:00:00","value":1.5},[2,"3"]]"#);
        assert_eq!(rows[0].value, Ok(1.5));
        assert_eq!(rows[1].timestamp, "2");
        assert_eq!(rows[1].value, Ok(3.0));
        let prom = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1435781430.781,"1"],[1435781445.781,"2"]]}]}}"#;
        let rows = read(prom);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].timestamp, "1435781430.781");
        assert!(matches!(
            open(r#"{"data":{"result":[]}}"#.as_bytes()),
            Err(InputError::JsonShape(_))
        ));
    }

    #[test]
    fn timestamp_check_reports_duplicates_and_disorder() {
        let rows = read(
            "t,value\n2020-01-01 00:00:00,1\n2020-01-01 00:00:00,1\n2019-12-31 00:00:00,1\nnope,1\n2020-01-02,1\n",
        );
        let mut check = TimestampCheck::default();
        let problems: Vec<_> = rows.iter().map(|r| check.check(r)).collect();
        assert_eq!(problems[0], None);
        assert!(matches!(
            problems[1],
            Some(RowProblem::DuplicateTimestamp { .. })
        ));
        assert!(matches!(
            problems[2],
            Some(RowProblem::UnorderedTimestamp { .. })
        ));
        assert!(matches!(problems[3], Some(RowProblem::BadTimestamp(_))));
        assert_eq!(problems[4], None);
    }
}
