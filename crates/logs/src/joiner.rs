//! Assembling records from lines: [`Joiner`] joins stack-trace lines to the record they belong
//! to and CRI partial lines (`P`) to the rest of their message, per stream.
//!
//! Both joins are bounded: a record takes at most [`MAX_CONTINUATION_LINES`] continuation lines
//! (64 KiB of their text), and a CRI message joined from partial lines at most the line-length
//! limit; beyond it the message is cut (flagged [`Record::cut`]) and its further parts are
//! skipped until its final (`F`) line.

use crate::input::DEFAULT_MAX_LINE;
use crate::parse::{CriStream, Format, Parser, Record, infer_level};

/// Lines joined to one record at most; the next line starts a new record.
pub(crate) const MAX_CONTINUATION_LINES: u32 = 500;
/// Bytes of continuation text kept per record (all its lines are counted).
const MAX_CONTINUATION_BYTES: usize = 64 * 1024;

/// What [`Joiner::push`] did with a line.
pub(crate) enum Pushed {
    /// The line was added to a record still being assembled.
    Joined,
    /// The line started a record, now in `next`; `parse_failed` when it did not fit the format
    /// (it is then kept whole as a raw message).
    Started { parse_failed: bool },
}

/// Assembles multi-line records: `next` receives a parsed line; `pending` is the record being
/// built. CRI partial lines wait in a buffer of their stream until their final line.
pub(crate) struct Joiner {
    pub(crate) parser: Parser,
    multiline: bool,
    pub(crate) pending: Record,
    pub(crate) next: Record,
    pub(crate) has_pending: bool,
    /// CRI messages being joined from partial lines, by stream (stdout, stderr): the streams
    /// interleave, and a stderr line must not end a stdout message.
    partials: [Record; 2],
    partial_open: [bool; 2],
    max_message: usize,
}

fn stream_slot(s: CriStream) -> usize {
    match s {
        CriStream::Stdout => 0,
        CriStream::Stderr => 1,
    }
}

/// Appends as much of `src` to `dst` as keeps `dst` within `max` bytes, cutting on a character
/// boundary; true when something was left out.
fn push_capped(dst: &mut String, src: &str, max: usize) -> bool {
    let room = max.saturating_sub(dst.len());
    if src.len() <= room {
        dst.push_str(src);
        return false;
    }
    let mut end = room;
    while !src.is_char_boundary(end) {
        end -= 1;
    }
    dst.push_str(&src[..end]);
    true
}

impl Joiner {
    /// A joiner for one source; CRI messages are capped at [`DEFAULT_MAX_LINE`].
    pub(crate) fn new(parser: Parser, multiline: bool) -> Joiner {
        Joiner {
            parser,
            multiline,
            pending: Record::default(),
            next: Record::default(),
            has_pending: false,
            partials: [Record::default(), Record::default()],
            partial_open: [false; 2],
            max_message: DEFAULT_MAX_LINE,
        }
    }

    /// Caps messages joined from CRI partial lines at `max` bytes (at least 1).
    pub(crate) fn with_max_message(mut self, max: usize) -> Joiner {
        self.max_message = max.max(1);
        self
    }

    /// Moves the line just pushed (`next`) into place as the pending record, returning the
    /// previous pending record, complete, when there was one. Buffers are swapped, not
    /// reallocated: the returned record is valid until the next push.
    pub(crate) fn rotate(&mut self) -> Option<&Record> {
        std::mem::swap(&mut self.pending, &mut self.next);
        let had = std::mem::replace(&mut self.has_pending, true);
        had.then_some(&self.next)
    }

    /// Takes a record still held, if any (end of input, or the source went quiet): the pending
    /// record, then CRI messages whose final line never came. Call until `None`.
    pub(crate) fn take_pending(&mut self) -> Option<Record> {
        if std::mem::replace(&mut self.has_pending, false) {
            return Some(std::mem::take(&mut self.pending));
        }
        let i = self.partial_open.iter().position(|&open| open)?;
        self.partial_open[i] = false;
        let mut rec = std::mem::take(&mut self.partials[i]);
        self.infer_level(&mut rec);
        Some(rec)
    }

    /// The first line of the records still held, if any: lines from there on are not
    /// processed yet.
    pub(crate) fn first_held_line(&self) -> Option<u64> {
        let pending = self.has_pending.then_some(self.pending.line);
        let partials = (0..2)
            .filter(|&i| self.partial_open[i])
            .map(|i| self.partials[i].line);
        pending.into_iter().chain(partials).min()
    }

    fn infer_level(&self, rec: &mut Record) {
        // Raw means "do not interpret"; every other format may leave the level unstated.
        if rec.level.is_none() && self.parser.format() != Format::Raw {
            rec.level = infer_level(&rec.message);
            rec.level_inferred = rec.level.is_some();
        }
    }

    pub(crate) fn push(&mut self, number: u64, text: &str) -> Pushed {
        let can_join = self.multiline
            && self.has_pending
            && self.pending.continuation_lines < MAX_CONTINUATION_LINES;
        if can_join && !self.parser.starts_record(text) {
            // A continuation: kept with its record, not mined on its own.
            if self.pending.continuation.len() < MAX_CONTINUATION_BYTES {
                if !self.pending.continuation.is_empty() {
                    self.pending.continuation.push('\n');
                }
                self.pending.continuation.push_str(text);
            }
            self.pending.continuation_lines += 1;
            return Pushed::Joined;
        }
        self.next.clear();
        self.next.line = number;
        let ok = self.parser.parse(text, &mut self.next);
        if ok && let Some(stream) = self.next.cri_stream {
            // A CRI partial line continues in the next line of its stream: one message.
            let i = stream_slot(stream);
            if self.partial_open[i] {
                let part = &mut self.partials[i];
                if !part.cut {
                    part.cut = push_capped(&mut part.message, &self.next.message, self.max_message);
                }
                part.continuation_lines += 1;
                if part.level.is_none() {
                    part.level = self.next.level;
                }
                if self.next.partial {
                    return Pushed::Joined;
                }
                // The final line completes the message: it is the record started now.
                part.partial = false;
                std::mem::swap(&mut self.next, part);
                self.partial_open[i] = false;
            } else if self.next.partial {
                if self.next.message.len() > self.max_message {
                    let whole = std::mem::take(&mut self.next.message);
                    self.next.cut = push_capped(&mut self.next.message, &whole, self.max_message);
                }
                std::mem::swap(&mut self.next, &mut self.partials[i]);
                self.partial_open[i] = true;
                return Pushed::Joined;
            }
        }
        if !ok {
            self.next.clear();
            self.next.line = number;
            self.next.message.push_str(text);
        }
        let mut next = std::mem::take(&mut self.next);
        self.infer_level(&mut next);
        self.next = next;
        Pushed::Started { parse_failed: !ok }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `lines`; returns the complete records' messages, in the order they completed.
    fn join(joiner: &mut Joiner, lines: &[&str]) -> Vec<Record> {
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if let Pushed::Started { .. } = joiner.push(i as u64 + 1, l)
                && let Some(done) = joiner.rotate()
            {
                out.push(done.clone());
            }
        }
        while let Some(rec) = joiner.take_pending() {
            out.push(rec);
        }
        out
    }

    fn cri() -> Joiner {
        Joiner::new(Parser::new(Format::Plain, 2026), true)
    }

    #[test]
    fn cri_partial_lines_join_per_stream() {
        let mut j = cri();
        let recs = join(
            &mut j,
            &[
                "2024-01-02T03:04:05.000Z stdout P out-start ",
                "2024-01-02T03:04:05.001Z stderr F err whole",
                "2024-01-02T03:04:05.002Z stdout F out-end",
            ],
        );
        let got: Vec<(&str, u64, Option<CriStream>)> = recs
            .iter()
            .map(|r| (r.message.as_str(), r.line, r.cri_stream))
            .collect();
        assert_eq!(
            got,
            [
                ("err whole", 2, Some(CriStream::Stderr)),
                ("out-start out-end", 1, Some(CriStream::Stdout)),
            ]
        );
        assert!(recs.iter().all(|r| !r.partial && !r.cut));
    }

    #[test]
    fn cri_joins_are_capped_and_skip_to_the_final_line() {
        let mut j = cri().with_max_message(11);
        let recs = join(
            &mut j,
            &[
                "2024-01-02T03:04:05.000Z stdout P 0123456",
                "2024-01-02T03:04:05.001Z stdout P 789é-more",
                "2024-01-02T03:04:05.002Z stdout P even more, skipped",
                "2024-01-02T03:04:05.003Z stdout F end",
                "2024-01-02T03:04:05.004Z stdout F next",
            ],
        );
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].message, "0123456789", "cut on a character boundary");
        assert!(recs[0].cut);
        assert_eq!(recs[0].continuation_lines, 3);
        assert_eq!(recs[1].message, "next");
        assert!(!recs[1].cut);
        // The part kept never outgrows the cap, however many partial lines come.
        let mut j = cri().with_max_message(64);
        for i in 0..10_000 {
            j.push(i, "2024-01-02T03:04:05.000Z stdout P 0123456789abcdef");
        }
        assert_eq!(j.partials[0].message.len(), 64);
        assert_eq!(j.first_held_line(), Some(0));
    }

    #[test]
    fn unfinished_partial_lines_are_flushed_and_held_lines_counted() {
        let mut j = cri();
        j.push(1, "2024-01-02T03:04:05.000Z stdout F one");
        let _ = j.rotate();
        j.push(2, "2024-01-02T03:04:05.000Z stderr P half");
        assert_eq!(j.first_held_line(), Some(1));
        j.push(3, "2024-01-02T03:04:05.000Z stdout F two");
        let done = j.rotate().map(|r| r.message.clone());
        assert_eq!(done.as_deref(), Some("one"));
        assert_eq!(j.first_held_line(), Some(2), "the open stderr part");
        let rest: Vec<String> = std::iter::from_fn(|| j.take_pending())
            .map(|r| r.message)
            .collect();
        assert_eq!(rest, ["two", "half"]);
        assert_eq!(j.first_held_line(), None);
    }

    #[test]
    fn impossible_dates_start_a_record_that_fails_to_parse() {
        let mut j = Joiner::new(Parser::new(Format::Syslog, 2026), true);
        assert!(matches!(
            j.push(1, "Feb 28 10:00:00 web app: fine"),
            Pushed::Started {
                parse_failed: false
            }
        ));
        let _ = j.rotate();
        assert!(matches!(
            j.push(2, "java.io.IOException: a trace line"),
            Pushed::Joined
        ));
        // Not hidden in the record before it as a continuation: a record of its own, raw.
        assert!(matches!(
            j.push(3, "Feb 30 10:00:00 web app: corrupt"),
            Pushed::Started { parse_failed: true }
        ));
        assert_eq!(j.next.message, "Feb 30 10:00:00 web app: corrupt");
        assert_eq!(j.next.timestamp, None);
    }
}
