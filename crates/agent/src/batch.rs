//! What sources hand the pipeline thread: [`Input`]s through one bounded channel, lines in
//! [`LineBatch`]es (one buffer per batch, not one allocation per line).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use opsloop_core::ingest::IngestedRecord;
use opsloop_logs::pipeline::SourceSpec;
use opsloop_logs::rules::RuleSet;
use opsloop_metrics::{AgentMetrics, Counter, SourceLabel};

/// A batch is sent when it holds this many lines...
pub const BATCH_LINES: usize = 512;
/// ...or this many bytes. With the channel's capacity this bounds what waits for the pipeline.
pub const BATCH_BYTES: usize = 32 * 1024;
/// Inputs waiting for the pipeline thread.
pub const INPUT_CAPACITY: usize = 1_024;

/// What sources (and the reload loop) send the pipeline thread.
pub enum Input {
    /// Lines of one source.
    Lines(LineBatch),
    /// A record from `POST /api/v1/logs`.
    Record(IngestedRecord),
    /// A reloaded, fully validated rule set.
    Rules(Box<RuleSet>),
    /// A reloaded secret redaction.
    Redactor(Box<opsloop_logs::redact::Redactor>),
    /// A source started or restarted with this parsing: its line count starts from zero.
    Source(String, SourceSpec),
    /// An event the agent itself reports (a source's problem), published with the rest.
    Event(Box<opsloop_core::Event>),
    /// Only in tests: makes the pipeline thread panic, as a bug would.
    #[cfg(test)]
    Panic,
}

/// Lines cut or with bad bytes in a batch: counted, and the first kept as an example.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineProblems {
    /// Lines cut at the source's `max_line_bytes` (the rest skipped).
    pub cut: u64,
    /// Lines with invalid UTF-8 (replaced by U+FFFD).
    pub invalid_utf8: u64,
    /// The first problem line: its index in the batch and kind.
    pub first: Option<(usize, LineProblemKind)>,
}

/// A kind of line problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineProblemKind {
    /// Cut at the length limit.
    Cut,
    /// Invalid UTF-8.
    InvalidUtf8,
}

impl LineProblemKind {
    /// The `kind` of its `input_problem` event.
    pub fn as_str(self) -> &'static str {
        match self {
            LineProblemKind::Cut => "cut_lines",
            LineProblemKind::InvalidUtf8 => "invalid_utf8",
        }
    }
}

/// Lines of one source, in one buffer.
pub struct LineBatch {
    /// The source's name.
    pub source: Arc<str>,
    text: String,
    ends: Vec<u32>,
    /// Cut and invalid lines in this batch.
    pub problems: LineProblems,
    /// For file sources: the tailer's count of lines sent, through the last of this batch,
    /// and where the pipeline reports how many of them are durable (events stored).
    pub progress: Option<(Arc<AtomicU64>, u64)>,
}

impl LineBatch {
    /// An empty batch of `source`.
    pub fn new(source: &Arc<str>) -> LineBatch {
        LineBatch {
            source: Arc::clone(source),
            text: String::with_capacity(BATCH_BYTES),
            ends: Vec::with_capacity(BATCH_LINES),
            problems: LineProblems::default(),
            progress: None,
        }
    }

    /// Appends a line (without its newline).
    pub fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.ends
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
    }

    /// Appends a line with what was wrong with it.
    pub fn push_flagged(&mut self, line: &str, cut: bool, invalid_utf8: bool) {
        let index = self.ends.len();
        if cut {
            self.problems.cut += 1;
            self.problems
                .first
                .get_or_insert((index, LineProblemKind::Cut));
        }
        if invalid_utf8 {
            self.problems.invalid_utf8 += 1;
            self.problems
                .first
                .get_or_insert((index, LineProblemKind::InvalidUtf8));
        }
        self.push(line);
    }

    /// Full: send it.
    pub fn is_full(&self) -> bool {
        self.ends.len() >= BATCH_LINES || self.text.len() >= BATCH_BYTES
    }

    /// No lines.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The lines, in order.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let line = self.text.get(start..end as usize).unwrap_or("");
            start = end as usize;
            line
        })
    }

    /// The line at `index`.
    pub fn line(&self, index: usize) -> Option<&str> {
        let end = *self.ends.get(index)? as usize;
        let start = index
            .checked_sub(1)
            .and_then(|i| self.ends.get(i))
            .map_or(0, |&e| e as usize);
        self.text.get(start..end)
    }
}

/// A source's counters, looked up once rather than per line.
#[derive(Clone)]
pub struct SourceCounters {
    lines: Counter,
    bytes: Counter,
    cut: Counter,
    invalid_utf8: Counter,
}

impl SourceCounters {
    /// The counters labelled `source`.
    pub fn new(metrics: &AgentMetrics, source: &str) -> SourceCounters {
        let label = SourceLabel {
            source: source.to_string(),
        };
        SourceCounters {
            lines: metrics.lines_read.get_or_create(&label).clone(),
            bytes: metrics.bytes_read.get_or_create(&label).clone(),
            cut: metrics.log_lines_cut.get_or_create(&label).clone(),
            invalid_utf8: metrics.log_invalid_utf8_lines.get_or_create(&label).clone(),
        }
    }

    /// One line of `bytes` read.
    pub fn count(&self, bytes: usize) {
        self.lines.inc();
        self.bytes.inc_by(bytes as u64);
    }

    /// One line's problems.
    pub fn count_problems(&self, cut: bool, invalid_utf8: bool) {
        if cut {
            self.cut.inc();
        }
        if invalid_utf8 {
            self.invalid_utf8.inc();
        }
    }
}

/// One received frame into a batch: counted (every frame is a line read, so that lines read
/// minus lines processed is what waits), decoded with invalid UTF-8 replaced, trailing newline,
/// carriage return and NULs cut. A frame left empty is still a line: the pipeline counts it as
/// processed and skips it.
pub fn push_frame(batch: &mut LineBatch, counters: &SourceCounters, raw: &[u8], cut: bool) {
    counters.count(raw.len());
    let mut end = raw.len();
    while end > 0 && matches!(raw[end - 1], b'\n' | b'\r' | 0) {
        end -= 1;
    }
    let raw = &raw[..end];
    match std::str::from_utf8(raw) {
        Ok(text) => {
            counters.count_problems(cut, false);
            batch.push_flagged(text, cut, false);
        }
        Err(_) => {
            counters.count_problems(cut, true);
            let text = String::from_utf8_lossy(raw);
            batch.push_flagged(&text, cut, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_their_count_even_when_empty_and_flag_problems() {
        let metrics = AgentMetrics::default();
        let counters = SourceCounters::new(&metrics, "s");
        let source: Arc<str> = Arc::from("s");
        let mut b = LineBatch::new(&source);
        push_frame(&mut b, &counters, b"hello\r\n", false);
        push_frame(&mut b, &counters, b"\0\0\n", false);
        push_frame(&mut b, &counters, b"bad \xff byte", false);
        push_frame(&mut b, &counters, b"cut here", true);
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(lines, ["hello", "", "bad \u{fffd} byte", "cut here"]);
        assert_eq!(b.problems.cut, 1);
        assert_eq!(b.problems.invalid_utf8, 1);
        assert_eq!(b.problems.first, Some((2, LineProblemKind::InvalidUtf8)));
        assert_eq!(b.line(3), Some("cut here"));
        assert_eq!(b.line(0), Some("hello"));
        let label = SourceLabel { source: "s".into() };
        assert_eq!(metrics.lines_read.get_or_create(&label).get(), 4);
        assert_eq!(metrics.log_lines_cut.get_or_create(&label).get(), 1);
        assert_eq!(
            metrics.log_invalid_utf8_lines.get_or_create(&label).get(),
            1
        );
    }
}
