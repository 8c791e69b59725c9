//! Reading log input: [`LineReader`] yields the lines of a plain or gzip file, or of stdin.
//!
//! It never gives up on bad input. Invalid UTF-8 is replaced (U+FFFD) and reported, a line longer
//! than the cap is cut at the cap and reported, a truncated or corrupt gzip stream ends the file
//! with a report of the line it stopped at. Every report is a [`Problem`] naming file and line.
//! One line buffer is reused for the whole input: no allocation per line.
//!
//! The policy for long lines and bad bytes is the same for every input (files read here, files
//! followed by [`crate::tail::FileTailer`], streams the agent receives), and lives here alone:
//! [`decode_line`] for a line held whole, [`LineCutter`] for one arriving in pieces. A line is
//! cut at the limit (its first `max` bytes, backed off to a UTF-8 character boundary), the rest
//! of it up to the newline is skipped, one trailing `\r` is dropped, and invalid UTF-8 is
//! replaced with U+FFFD; [`LineFlags`] tells the caller which of these happened.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde::Serialize;

/// The longest line kept whole; longer lines are cut here (default 1 MiB).
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// What [`decode_line`] had to do to a line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineFlags {
    /// The line was longer than the limit: only its first bytes are kept.
    pub cut: bool,
    /// Bytes that are not UTF-8 were replaced with U+FFFD (a character split by the cut does
    /// not count: it is dropped whole).
    pub invalid_utf8: bool,
}

/// Decodes one line (without its `\n`) into `out`, reusing its buffer: drops a trailing `\r`,
/// keeps at most `max` bytes (at least 1), cut on a character boundary, and replaces invalid
/// UTF-8. Allocates only when `out` must grow.
pub fn decode_line(raw: &[u8], max: usize, out: &mut String) -> LineFlags {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let max = max.max(1);
    let mut flags = LineFlags::default();
    let mut kept = raw;
    if raw.len() > max {
        flags.cut = true;
        // Back off over the continuation bytes of a character the cut would split (at most
        // three); in input that is not UTF-8 anyway, cut where the limit says.
        let mut end = max;
        while end > 0 && max - end < 3 && raw[end] & 0xC0 == 0x80 {
            end -= 1;
        }
        if raw[end] & 0xC0 == 0x80 {
            end = max;
        }
        kept = &raw[..end];
    }
    out.clear();
    // Nearly every line is valid UTF-8: one validation pass, then one copy.
    if let Ok(text) = std::str::from_utf8(kept) {
        out.push_str(text);
        return flags;
    }
    for chunk in kept.utf8_chunks() {
        out.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            flags.invalid_utf8 = true;
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    flags
}

/// Assembles one line from pieces (reads that end mid-line) under the policy of
/// [`decode_line`]: keeps what the limit allows, counts the rest without holding it. One
/// buffer is reused for every line.
#[derive(Debug)]
pub struct LineCutter {
    buf: Vec<u8>,
    max: usize,
    /// Bytes of the line given so far, kept or not.
    consumed: u64,
    /// Bytes were left out (beyond `max + 1`, the one extra telling a cut from a `\r`).
    overflow: bool,
}

impl LineCutter {
    /// A cutter for lines of at most `max` bytes (at least 1).
    pub fn new(max: usize) -> LineCutter {
        LineCutter {
            buf: Vec::new(),
            max: max.max(1),
            consumed: 0,
            overflow: false,
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Adds a piece of the current line (no `\n` in it).
    pub fn extend(&mut self, piece: &[u8]) {
        self.consumed += piece.len() as u64;
        let room = (self.max + 1).saturating_sub(self.buf.len());
        if piece.len() > room {
            self.overflow = true;
        }
        self.buf.extend_from_slice(&piece[..piece.len().min(room)]);
    }

    /// Bytes of the unfinished line given so far, including those skipped.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Whether no piece of a line is held.
    pub fn is_empty(&self) -> bool {
        self.consumed == 0
    }

    /// The bytes kept so far (at most `max + 1`).
    pub fn kept(&self) -> &[u8] {
        &self.buf
    }

    /// Ends the line: decodes it into `out` and starts the next.
    pub fn finish(&mut self, out: &mut String) -> LineFlags {
        let mut flags = decode_line(&self.buf, self.max, out);
        flags.cut |= self.overflow;
        self.clear();
        flags
    }

    /// Forgets the unfinished line (the input was truncated or replaced).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.consumed = 0;
        self.overflow = false;
        // A huge line leaves a huge buffer: give it back rather than hold it per file.
        if self.buf.capacity() > 64 * 1024 {
            self.buf.shrink_to(64 * 1024);
        }
    }
}

/// What went wrong with a piece of input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Bytes that are not UTF-8 were replaced.
    InvalidUtf8,
    /// NUL bytes in a line: binary data in a text log.
    Binary,
    /// A line longer than the cap was cut.
    LineTooLong,
    /// The gzip stream ended early or is corrupt.
    TruncatedGzip,
    /// Reading failed.
    ReadError,
    /// A line did not parse as the file's format; it was kept as a raw message.
    ParseError,
}

impl ProblemKind {
    /// The snake_case name, as in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::InvalidUtf8 => "invalid_utf8",
            ProblemKind::Binary => "binary",
            ProblemKind::LineTooLong => "line_too_long",
            ProblemKind::TruncatedGzip => "truncated_gzip",
            ProblemKind::ReadError => "read_error",
            ProblemKind::ParseError => "parse_error",
        }
    }
}

/// One problem with the input, located by file and 1-based line.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The file (`-` for stdin).
    pub file: String,
    /// The 1-based line number.
    pub line: u64,
    /// A short explanation.
    pub detail: String,
}

/// A line as read: its 1-based number and text.
pub struct Line<'a> {
    /// 1-based line number in its file.
    pub number: u64,
    /// The text, without the line terminator.
    pub text: &'a str,
    /// Whether it was cut or had bytes replaced (each also reported as a [`Problem`]).
    pub flags: LineFlags,
}

/// Yields lines from one input, reporting problems to a callback.
pub struct LineReader {
    name: String,
    reader: Box<dyn BufRead + Send>,
    line: LineCutter,
    text: String,
    number: u64,
    done: bool,
    /// Bytes read so far (compressed bytes are counted after decompression).
    pub bytes: u64,
}

impl LineReader {
    /// Opens `path`; `-` is stdin. Gzip is recognised by its magic bytes, not the name.
    pub fn open(path: &str, max_line: usize) -> io::Result<Self> {
        let raw: Box<dyn Read + Send> = if path == "-" {
            Box::new(io::stdin())
        } else {
            Box::new(File::open(Path::new(path))?)
        };
        let mut buffered = BufReader::with_capacity(256 * 1024, raw);
        let is_gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn BufRead + Send> = if is_gzip {
            Box::new(BufReader::with_capacity(
                256 * 1024,
                MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        Ok(Self::from_reader(path, reader, max_line))
    }

    /// Reads from any buffered reader, named `name` in problems.
    pub fn from_reader(name: &str, reader: Box<dyn BufRead + Send>, max_line: usize) -> Self {
        Self {
            name: name.to_string(),
            reader,
            line: LineCutter::new(max_line),
            text: String::with_capacity(4096),
            number: 0,
            done: false,
            bytes: 0,
        }
    }

    /// Lines read so far.
    pub fn lines_read(&self) -> u64 {
        self.number
    }

    /// The input's name (`-` for stdin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next line, or `None` at the end of input (or after an unrecoverable read error,
    /// which is reported first).
    pub fn next_line(&mut self, report: &mut dyn FnMut(Problem)) -> Option<Line<'_>> {
        if self.done {
            return None;
        }
        let mut saw_any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let kind = if e.kind() == io::ErrorKind::UnexpectedEof
                        || e.kind() == io::ErrorKind::InvalidInput
                        || e.kind() == io::ErrorKind::InvalidData
                    {
                        ProblemKind::TruncatedGzip
                    } else {
                        ProblemKind::ReadError
                    };
                    report(Problem {
                        kind,
                        file: self.name.clone(),
                        line: self.number + 1,
                        detail: format!("input ends here: {e}"),
                    });
                    self.done = true;
                    break;
                }
            };
            if chunk.is_empty() {
                self.done = true;
                break;
            }
            saw_any = true;
            let (used, found) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i + 1, Some(i)),
                None => (chunk.len(), None),
            };
            self.line.extend(&chunk[..found.unwrap_or(used)]);
            self.reader.consume(used);
            self.bytes += used as u64;
            if found.is_some() {
                break;
            }
        }
        if !saw_any && self.line.is_empty() {
            return None;
        }
        self.number += 1;
        if memchr::memchr(0, self.line.kept()).is_some() {
            report(Problem {
                kind: ProblemKind::Binary,
                file: self.name.clone(),
                line: self.number,
                detail: "NUL bytes in line".into(),
            });
        }
        let flags = self.line.finish(&mut self.text);
        if flags.cut {
            report(Problem {
                kind: ProblemKind::LineTooLong,
                file: self.name.clone(),
                line: self.number,
                detail: format!("line longer than {} bytes was cut", self.line.max()),
            });
        }
        if flags.invalid_utf8 {
            report(Problem {
                kind: ProblemKind::InvalidUtf8,
                file: self.name.clone(),
                line: self.number,
                detail: "invalid UTF-8 replaced with U+FFFD".into(),
            });
        }
        Some(Line {
            number: self.number,
            text: &self.text,
            flags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn read_all(bytes: Vec<u8>, max: usize) -> (Vec<(u64, String)>, Vec<Problem>) {
        let mut r = LineReader::from_reader("t", Box::new(Cursor::new(bytes)), max);
        let mut problems = Vec::new();
        let mut lines = Vec::new();
        while let Some(l) = r.next_line(&mut |p| problems.push(p)) {
            lines.push((l.number, l.text.to_string()));
        }
        (lines, problems)
    }

    #[test]
    fn lines_and_crlf() {
        let (lines, problems) = read_all(b"a\r\nb\n\nc".to_vec(), 100);
        let texts: Vec<_> = lines.iter().map(|l| l.1.as_str()).collect();
        assert_eq!(texts, ["a", "b", "", "c"]);
        assert!(problems.is_empty());
    }

    #[test]
    fn bad_bytes_are_reported_not_dropped() {
        let (lines, problems) = read_all(b"ok\n\xff\xfe bad\nx\0y\n".to_vec(), 100);
        assert_eq!(lines.len(), 3);
        assert_eq!(problems[0].kind, ProblemKind::InvalidUtf8);
        assert_eq!(problems[0].line, 2);
        assert_eq!(problems[1].kind, ProblemKind::Binary);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\nnext\n");
        let (lines, problems) = read_all(input, 100);
        assert_eq!(lines[0].1.len(), 100);
        assert_eq!(lines[1].1, "next");
        assert_eq!(problems[0].kind, ProblemKind::LineTooLong);
    }

    #[test]
    fn a_3_mib_line_is_cut_once_and_the_next_line_is_intact() {
        let mut input = vec![b'y'; 3 << 20];
        input.extend_from_slice(b"\nnext line\n");
        let mut r = LineReader::from_reader("t", Box::new(Cursor::new(input)), DEFAULT_MAX_LINE);
        let mut problems = Vec::new();
        let first = r
            .next_line(&mut |p| problems.push(p))
            .map(|l| (l.text.len(), l.flags));
        assert_eq!(
            first,
            Some((
                DEFAULT_MAX_LINE,
                LineFlags {
                    cut: true,
                    invalid_utf8: false
                }
            ))
        );
        let second = r
            .next_line(&mut |p| problems.push(p))
            .map(|l| (l.number, l.text.to_string(), l.flags));
        assert_eq!(second, Some((2, "next line".into(), LineFlags::default())));
        assert!(r.next_line(&mut |p| problems.push(p)).is_none());
        let kinds: Vec<ProblemKind> = problems.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, [ProblemKind::LineTooLong]);
        assert!(r.line.kept().is_empty() && r.line.buf.capacity() <= 64 * 1024);
    }

    #[test]
    fn decode_line_policy() {
        let mut out = String::from("old content");
        let f = decode_line(b"plain\r", 100, &mut out);
        assert_eq!((out.as_str(), f), ("plain", LineFlags::default()));
        // Exactly at the limit, with a CR: not cut.
        let f = decode_line(b"abcd\r", 4, &mut out);
        assert_eq!((out.as_str(), f.cut), ("abcd", false));
        let f = decode_line(b"abcde", 4, &mut out);
        assert_eq!((out.as_str(), f.cut), ("abcd", true));
        // A cut inside a character drops the character, and is not bad UTF-8.
        let f = decode_line("abé€x".as_bytes(), 5, &mut out);
        assert_eq!(
            (out.as_str(), f),
            (
                "abé",
                LineFlags {
                    cut: true,
                    invalid_utf8: false
                }
            )
        );
        let f = decode_line(b"a\xffb\xc3", 100, &mut out);
        assert_eq!(
            (out.as_str(), f.invalid_utf8, f.cut),
            ("a\u{fffd}b\u{fffd}", true, false)
        );
        let f = decode_line(b"\xff\xff\xff\xff\xff", 2, &mut out);
        assert_eq!((out.as_str(), f.cut), ("\u{fffd}\u{fffd}", true));
        // The same policy for a line given in pieces.
        let mut c = LineCutter::new(4);
        c.extend(b"ab");
        c.extend(b"cd");
        c.extend(b"\r");
        assert_eq!(c.consumed(), 5);
        assert!(!c.finish(&mut out).cut, "abcd + CR is not too long");
        assert_eq!(out, "abcd");
        for _ in 0..1000 {
            c.extend(b"0123456789");
        }
        assert_eq!((c.consumed(), c.kept().len()), (10_000, 5));
        assert!(c.finish(&mut out).cut);
        assert_eq!(out, "0123");
        assert!(c.is_empty());
    }

    #[test]
    fn truncated_gzip_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for i in 0..1000 {
            let _ = writeln!(enc, "line {i} with some text");
        }
        let full = enc.finish().unwrap_or_default();
        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        let mut r = LineReader::open(path.to_str().unwrap_or(""), 100).unwrap();
        let mut problems = Vec::new();
        let mut n = 0;
        while r.next_line(&mut |p| problems.push(p)).is_some() {
            n += 1;
        }
        assert!(n > 0 && n < 1000);
        assert_eq!(
            problems.last().map(|p| p.kind),
            Some(ProblemKind::TruncatedGzip)
        );
    }
}
