//! The body of `POST /api/v1/logs`: read as a stream of records (NDJSON line by line, or a
//! JSON array element by element), each forwarded into the pipeline as soon as it is parsed.
//!
//! Memory stays at the body plus one record: no list of all values or all errors is built.
//! A request is counted first (without building values) and refused whole when it is over the
//! record limit or is not a JSON array, so such a request never half-enters the pipeline.
//! Runs on a blocking thread: forwarding waits on the bounded pipeline (backpressure).

use std::fmt;

use opsloop_core::ingest::IngestedRecord;
use serde::Deserializer as _;
use serde::de::{Error as _, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;
use tokio::sync::mpsc;

/// JSON values (objects, arrays, strings, numbers...) one record may hold: a record of
/// `max_record_bytes` can then never grow into much more memory than its text (a small body
/// of `[{},{},...]` would otherwise become millions of values).
pub(crate) const MAX_RECORD_VALUES: usize = 1_000;

/// How many rejected records an answer lists; the rest are only counted.
pub(crate) const LISTED_REJECTIONS: usize = 10;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What became of a request's records.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    /// Records forwarded into the pipeline.
    pub accepted: u64,
    /// Records rejected.
    pub rejected: u64,
    /// The first [`LISTED_REJECTIONS`] rejected records: index and reason.
    pub first_rejections: Vec<(u64, String)>,
}

/// Why a request was refused.
#[derive(Debug)]
pub(crate) enum Refused {
    /// More records than the limit; none was forwarded.
    TooMany,
    /// A JSON array that does not parse; none was forwarded.
    Invalid(String),
    /// The pipeline closed midway; what was forwarded before is in the summary.
    Closed(Summary),
}

/// Limits of one request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Most records.
    pub max_records: usize,
    /// Largest record, as JSON text.
    pub max_record_bytes: usize,
}

/// Forwards the records of `body` into `tx`, within `limits`.
pub(crate) fn forward(
    body: &[u8],
    limits: Limits,
    now_ms: i64,
    tx: &mpsc::Sender<IngestedRecord>,
) -> Result<Summary, Refused> {
    let max_records = limits.max_records;
    let body = body.strip_prefix(BOM).unwrap_or(body);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let body = &body[start..];
    let mut sink = Sink {
        tx,
        now_ms,
        max_record_bytes: limits.max_record_bytes,
        next_index: 0,
        closed: false,
        summary: Summary::default(),
    };
    if body.first() == Some(&b'[') {
        count_array(body, max_records)?;
        let mut de = serde_json::Deserializer::from_slice(body);
        let forwarded = de.deserialize_seq(ForwardEach(&mut sink));
        if sink.closed {
            return Err(Refused::Closed(sink.summary));
        }
        // Cannot happen after the count pass parsed the same bytes; kept as an error anyway.
        forwarded.map_err(|e| Refused::Invalid(format!("invalid JSON array: {e}")))?;
    } else {
        let lines = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
        if lines.clone().nth(max_records).is_some() {
            return Err(Refused::TooMany);
        }
        for line in lines {
            if !sink.offer_text(line) {
                return Err(Refused::Closed(sink.summary));
            }
        }
    }
    Ok(sink.summary)
}

/// Checks that `body` is one JSON array of at most `max` elements, building none of them.
fn count_array(body: &[u8], max: usize) -> Result<(), Refused> {
    let mut over = false;
    let mut de = serde_json::Deserializer::from_slice(body);
    let counted = de
        .deserialize_seq(CountUpTo {
            max,
            over: &mut over,
        })
        .and_then(|()| de.end());
    match counted {
        _ if over => Err(Refused::TooMany),
        Ok(()) => Ok(()),
        Err(e) => Err(Refused::Invalid(format!("invalid JSON array: {e}"))),
    }
}

/// Counts elements, stopping with an error (and `over` set) past `max`.
struct CountUpTo<'a> {
    max: usize,
    over: &'a mut bool,
}

impl<'de> Visitor<'de> for CountUpTo<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0usize;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
            if n > self.max {
                *self.over = true;
                return Err(A::Error::custom("too many records"));
            }
        }
        Ok(())
    }
}

/// Converts and forwards each element as it is parsed.
struct ForwardEach<'s, 'a>(&'s mut Sink<'a>);

impl<'de> Visitor<'de> for ForwardEach<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            // An element that is not valid JSON fails the whole array (as the count pass did).
            // Each is taken as its text first, so its size is checked before values are built.
            let Some(raw) = seq.next_element::<&serde_json::value::RawValue>()? else {
                return Ok(());
            };
            if !self.0.offer_text(raw.get().as_bytes()) {
                return Err(A::Error::custom("the pipeline closed"));
            }
        }
    }
}

/// Where parsed records go, with the tally.
struct Sink<'a> {
    tx: &'a mpsc::Sender<IngestedRecord>,
    now_ms: i64,
    max_record_bytes: usize,
    next_index: u64,
    closed: bool,
    summary: Summary,
}

impl Sink<'_> {
    /// Takes one record's JSON text: checked for size, parsed, checked for the number of
    /// values, converted and forwarded. False once the pipeline has closed.
    fn offer_text(&mut self, text: &[u8]) -> bool {
        let index = self.next_index;
        self.next_index += 1;
        let record = if text.len() > self.max_record_bytes {
            Err(Why::TooLarge(text.len(), self.max_record_bytes))
        } else {
            match serde_json::from_slice::<Value>(text) {
                Ok(v) if count_values(&v, MAX_RECORD_VALUES) > MAX_RECORD_VALUES => {
                    Err(Why::TooManyValues)
                }
                Ok(v) => IngestedRecord::from_json(v, self.now_ms).map_err(Why::Record),
                Err(e) => Err(Why::Json(e)),
            }
        };
        match record {
            Ok(rec) => {
                if self.tx.blocking_send(rec).is_err() {
                    self.closed = true;
                    return false;
                }
                self.summary.accepted += 1;
            }
            Err(why) => {
                self.summary.rejected += 1;
                // Only the listed reasons are rendered: most rejections cost no allocation.
                if self.summary.first_rejections.len() < LISTED_REJECTIONS {
                    let text = match why {
                        Why::Record(e) => e.to_string(),
                        Why::Json(e) => format!("invalid JSON: {e}"),
                        Why::TooLarge(n, max) => {
                            format!("record of {n} bytes is over the limit of {max}")
                        }
                        Why::TooManyValues => {
                            format!("record holds more than {MAX_RECORD_VALUES} JSON values")
                        }
                    };
                    self.summary.first_rejections.push((index, text));
                }
            }
        }
        true
    }
}

enum Why {
    Record(opsloop_core::ingest::IngestError),
    Json(serde_json::Error),
    TooLarge(usize, usize),
    TooManyValues,
}

/// The values in `v` (itself included), counting no further than just past `limit`.
fn count_values(v: &Value, limit: usize) -> usize {
    let mut stack = vec![v];
    let mut n = 0;
    while let Some(v) = stack.pop() {
        n += 1;
        if n > limit {
            break;
        }
        match v {
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(o) => stack.extend(o.values()),
            _ => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str, max: usize) -> (Result<Summary, Refused>, Vec<IngestedRecord>) {
        let (tx, mut rx) = mpsc::channel(1000);
        let limits = Limits {
            max_records: max,
            max_record_bytes: 1 << 20,
        };
        let out = forward(body.as_bytes(), limits, 7, &tx);
        drop(tx);
        let mut got = Vec::new();
        while let Ok(r) = rx.try_recv() {
            got.push(r);
        }
        (out, got)
    }

    #[test]
    fn arrays_and_ndjson_forward_each_record() {
        let (out, got) = run("\u{feff} [{\"msg\":\"a\"}, {}, 3, {\"log\":\"b\"}]", 10);
        let s = out.unwrap();
        assert_eq!((s.accepted, s.rejected), (2, 2));
        assert_eq!(
            s.first_rejections.iter().map(|r| r.0).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].message, "b");
        let (out, got) = run("\u{feff}{\"msg\":\"a\"}\r\n\n  \nnope\n{\"msg\":\"c\"}", 3);
        let s = out.unwrap();
        assert_eq!((s.accepted, s.rejected), (2, 1));
        assert_eq!(s.first_rejections[0].0, 1);
        assert!(s.first_rejections[0].1.starts_with("invalid JSON"));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn over_the_limit_or_broken_arrays_forward_nothing() {
        for body in [
            "[{\"msg\":\"a\"},{\"msg\":\"b\"},{\"msg\":\"c\"}]",
            "{\"msg\":\"a\"}\n{\"msg\":\"b\"}\n{\"msg\":\"c\"}\n",
        ] {
            let (out, got) = run(body, 2);
            assert!(matches!(out, Err(Refused::TooMany)), "{body}: {out:?}");
            assert!(got.is_empty());
            assert!(run(body, 3).0.is_ok());
        }
        for body in [
            "[{\"msg\":\"a\"}",
            "[{\"msg\":\"a\"}] x",
            "[{\"msg\":\"a\"},]",
        ] {
            let (out, got) = run(body, 10);
            assert!(matches!(out, Err(Refused::Invalid(_))), "{body}: {out:?}");
            assert!(got.is_empty());
        }
    }

    #[test]
    fn a_closed_pipeline_stops_the_request() {
        let (tx, rx) = mpsc::channel(10);
        drop(rx);
        let limits = Limits {
            max_records: 10,
            max_record_bytes: 1 << 20,
        };
        let out = forward(b"{\"msg\":\"a\"}\n{\"msg\":\"b\"}", limits, 0, &tx);
        assert!(matches!(out, Err(Refused::Closed(s)) if s.accepted == 0));
        let out = forward(b"[{\"msg\":\"a\"}]", limits, 0, &tx);
        assert!(matches!(out, Err(Refused::Closed(_))));
    }

    #[test]
    fn one_record_cannot_grow_into_many_values_or_bytes() {
        let (tx, mut rx) = mpsc::channel(16);
        let nested = format!("{{\"msg\":\"x\",\"f\":[{}{{}}]}}", "{},".repeat(5_000));
        let long = format!("{{\"msg\":\"{}\"}}", "y".repeat(300));
        let body = format!("[{nested},{long},{{\"msg\":\"ok\"}}]");
        let limits = Limits {
            max_records: 10,
            max_record_bytes: 256,
        };
        let summary = match forward(body.as_bytes(), limits, 0, &tx) {
            Ok(s) => s,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!((summary.accepted, summary.rejected), (1, 2));
        assert!(
            summary.first_rejections[0].1.contains("over the limit"),
            "{:?}",
            summary.first_rejections
        );
        let limits = Limits {
            max_records: 10,
            max_record_bytes: 1 << 20,
        };
        let summary = match forward(nested.as_bytes(), limits, 0, &tx) {
            Ok(s) => s,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(summary.rejected, 1);
        assert!(summary.first_rejections[0].1.contains("JSON values"));
        drop(tx);
        let mut got = Vec::new();
        while let Some(r) = rx.blocking_recv() {
            got.push(r.message);
        }
        assert_eq!(got, ["ok"]);
    }
}
