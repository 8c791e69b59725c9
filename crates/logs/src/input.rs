//! Reading log input: [`LineReader`] yields the lines of a plain or gzip file, or of stdin.
//!
//! It never gives up on bad input. Invalid UTF-8 is replaced (U+FFFD) and reported, a line longer
//! than the cap is cut at the cap and reported, a truncated or corrupt gzip stream ends the file
//! with a report of the line it stopped at. Every report is a [`Problem`] naming file and line.
//! One line buffer is reused for the whole input: no allocation per line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde::Serialize;

/// The longest line kept whole; longer lines are cut here (default 1 MiB).
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

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
}

/// Yields lines from one input, reporting problems to a callback.
pub struct LineReader {
    name: String,
    reader: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    text: String,
    number: u64,
    max_line: usize,
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
            buf: Vec::with_capacity(4096),
            text: String::with_capacity(4096),
            number: 0,
            max_line: max_line.max(1),
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
        self.buf.clear();
        let mut cut = false;
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
            let content = &chunk[..found.unwrap_or(used)];
            let room = self.max_line.saturating_sub(self.buf.len());
            if content.len() > room {
                cut = true;
            }
            self.buf
                .extend_from_slice(&content[..content.len().min(room)]);
            self.reader.consume(used);
            self.bytes += used as u64;
            if found.is_some() {
                break;
            }
        }
        if !saw_any && self.buf.is_empty() {
            return None;
        }
        self.number += 1;
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if cut {
            report(Problem {
                kind: ProblemKind::LineTooLong,
                file: self.name.clone(),
                line: self.number,
                detail: format!("line longer than {} bytes was cut", self.max_line),
            });
        }
        if memchr::memchr(0, &self.buf).is_some() {
            report(Problem {
                kind: ProblemKind::Binary,
                file: self.name.clone(),
                line: self.number,
                detail: "NUL bytes in line".into(),
            });
        }
        self.text.clear();
        match std::str::from_utf8(&self.buf) {
            Ok(s) => self.text.push_str(s),
            Err(_) => {
                // A cut inside a multi-byte character is the cut's fault, not the input's.
                let lossy = String::from_utf8_lossy(&self.buf);
                let only_tail = cut
                    && std::str::from_utf8(&self.buf[..self.buf.len().saturating_sub(3)]).is_ok();
                if !only_tail {
                    report(Problem {
                        kind: ProblemKind::InvalidUtf8,
                        file: self.name.clone(),
                        line: self.number,
                        detail: "invalid UTF-8 replaced with U+FFFD".into(),
                    });
                }
                self.text.push_str(&lossy);
            }
        }
        Some(Line {
            number: self.number,
            text: &self.text,
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
    fn truncated_gzip_is_reported() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("x.log.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for i in 0..1000 {
            let _ = writeln!(enc, "line {i} with some text");
        }
        let full = enc.finish().unwrap_or_default();
        std::fs::write(&path, &full[..full.len() / 2]).unwrap_or_else(|e| panic!("{e}"));
        let mut r =
            LineReader::open(path.to_str().unwrap_or(""), 100).unwrap_or_else(|e| panic!("{e}"));
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
