//! Framing of byte streams into lines, as a `tokio_util` codec: newline framing for stdin, and
//! for syslog over TCP also octet counting (RFC 6587 `LEN SP MSG`), chosen per frame.
//!
//! One policy for every stream, the same as for files: a frame longer than the limit is cut at
//! the limit, kept, and flagged; the rest of it is skipped. Nothing resets the connection, and a
//! peer that never sends a newline cannot grow memory past the limit.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// One frame: its bytes (without the octet count; a trailing newline, if any, is kept for the
/// caller to trim) and whether it was cut.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// The bytes kept.
    pub data: BytesMut,
    /// Longer than the limit: the rest was skipped.
    pub cut: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a frame.
    Start,
    /// In an octet-counted frame with this many bytes still to come.
    Counted(u64),
    /// Skipping this many bytes of an octet-counted frame that was cut.
    SkipCounted(u64),
    /// Skipping the rest of a newline-framed line that was cut.
    SkipLine,
}

/// Splits a byte stream into [`Frame`]s of at most `max` bytes.
#[derive(Debug)]
pub struct FrameCodec {
    max: usize,
    octet_counting: bool,
    state: State,
    /// Where the newline search resumes (bytes before it were searched already).
    searched: usize,
}

/// Digits of the longest octet count considered (`u64::MAX` has 20).
const MAX_COUNT_DIGITS: usize = 20;

impl FrameCodec {
    /// Newline framing only (stdin).
    pub fn lines(max: usize) -> FrameCodec {
        FrameCodec {
            max: max.max(1),
            octet_counting: false,
            state: State::Start,
            searched: 0,
        }
    }

    /// Octet counting or newline framing, per frame (syslog over TCP).
    pub fn syslog(max: usize) -> FrameCodec {
        FrameCodec {
            octet_counting: true,
            ..FrameCodec::lines(max)
        }
    }

    /// `Some(len, header bytes)` when `buf` starts with an octet count (`[1-9][0-9]* SP`);
    /// `None` when it cannot be one; `Err(())` when more bytes are needed to tell.
    fn octet_count(buf: &[u8]) -> Result<Option<(u64, usize)>, ()> {
        if !matches!(buf.first(), Some(b'1'..=b'9')) {
            return Ok(None);
        }
        let mut len: u64 = 0;
        for (i, &b) in buf.iter().enumerate().take(MAX_COUNT_DIGITS + 1) {
            match b {
                b'0'..=b'9' => {
                    len = match len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(u64::from(b - b'0')))
                    {
                        Some(l) => l,
                        None => return Ok(None), // not a count: a line that starts with digits
                    };
                }
                b' ' => return Ok(Some((len, i + 1))),
                _ => return Ok(None),
            }
        }
        if buf.len() > MAX_COUNT_DIGITS {
            Ok(None)
        } else {
            Err(())
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        loop {
            match self.state {
                State::SkipCounted(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    buf.advance(n);
                    let left = left - n as u64;
                    if left > 0 {
                        self.state = State::SkipCounted(left);
                        return Ok(None);
                    }
                    self.state = State::Start;
                }
                State::SkipLine => match memchr_newline(buf) {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.state = State::Start;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                },
                State::Counted(len) => {
                    let max = self.max as u64;
                    if len <= max {
                        let len = len as usize;
                        if buf.len() < len {
                            buf.reserve(len - buf.len());
                            return Ok(None);
                        }
                        self.state = State::Start;
                        return Ok(Some(Frame {
                            data: buf.split_to(len),
                            cut: false,
                        }));
                    }
                    if buf.len() < self.max {
                        return Ok(None);
                    }
                    self.state = State::SkipCounted(len - max);
                    return Ok(Some(Frame {
                        data: buf.split_to(self.max),
                        cut: true,
                    }));
                }
                State::Start => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    if self.octet_counting {
                        match Self::octet_count(buf) {
                            Err(()) => return Ok(None),
                            Ok(Some((len, header))) => {
                                buf.advance(header);
                                self.searched = 0;
                                self.state = State::Counted(len);
                                continue;
                            }
                            Ok(None) => {}
                        }
                    }
                    // A line of `max` bytes may end in `\r\n`: look two bytes past the limit.
                    let from = self.searched.min(buf.len());
                    let limit = buf.len().min(self.max + 2);
                    if let Some(i) = buf.get(from..limit).and_then(memchr_newline) {
                        let end = from + i;
                        let content = if end > 0 && buf[end - 1] == b'\r' {
                            end - 1
                        } else {
                            end
                        };
                        if content <= self.max {
                            self.searched = 0;
                            return Ok(Some(Frame {
                                data: buf.split_to(end + 1),
                                cut: false,
                            }));
                        }
                    }
                    if buf.len() > self.max + 1 || (buf.len() > self.max && buf[self.max] != b'\r')
                    {
                        self.searched = 0;
                        self.state = State::SkipLine;
                        return Ok(Some(Frame {
                            data: buf.split_to(self.max),
                            cut: true,
                        }));
                    }
                    self.searched = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        // What is left at the end: a last line without newline, or a frame the peer did not
        // finish (kept, flagged as cut).
        self.searched = 0;
        let state = std::mem::replace(&mut self.state, State::Start);
        if buf.is_empty() {
            return Ok(None);
        }
        let cut = match state {
            State::Start => false,
            State::Counted(_) => true,
            State::SkipCounted(_) | State::SkipLine => {
                buf.clear();
                return Ok(None);
            }
        };
        let n = buf.len().min(self.max);
        let data = buf.split_to(n);
        buf.clear();
        Ok(Some(Frame { data, cut }))
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, then EOF; returns frames as (text, cut).
    fn frames(mut codec: FrameCodec, input: &[u8], step: usize) -> Vec<(String, bool)> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in input.chunks(step.max(1)) {
            buf.extend_from_slice(chunk);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push((String::from_utf8_lossy(&f.data).into_owned(), f.cut));
            }
        }
        while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
            out.push((String::from_utf8_lossy(&f.data).into_owned(), f.cut));
        }
        out
    }

    fn owned(v: &[(&str, bool)]) -> Vec<(String, bool)> {
        v.iter().map(|(s, c)| ((*s).to_string(), *c)).collect()
    }

    #[test]
    fn newline_frames_are_cut_at_the_limit_and_the_rest_skipped() {
        let input = b"short\nthis one is far too long\nnext\nno newline at end";
        for step in [1, 3, 7, 100] {
            assert_eq!(
                frames(FrameCodec::lines(8), input, step),
                owned(&[
                    ("short\n", false),
                    ("this one", true),
                    ("next\n", false),
                    ("no newli", true),
                ]),
                "step {step}"
            );
        }
    }

    #[test]
    fn octet_counted_frames_over_the_limit_are_cut_kept_and_the_connection_goes_on() {
        let mut input = Vec::new();
        input.extend_from_slice(b"5 hello");
        input.extend_from_slice(b"13 <34>abcdefghi");
        input.extend_from_slice(b"3 end");
        input.extend_from_slice(b"plain line\n");
        for step in [1, 2, 5, 100] {
            assert_eq!(
                frames(FrameCodec::syslog(8), &input, step),
                owned(&[
                    ("hello", false),
                    ("<34>abcd", true),
                    ("end", false),
                    ("plain li", true),
                ]),
                "step {step}"
            );
        }
    }

    #[test]
    fn a_huge_or_impossible_count_cuts_instead_of_dropping() {
        // A count larger than anything sent: the frame runs to the end, kept up to the limit.
        let got = frames(
            FrameCodec::syslog(8),
            b"99999999999 <34>msg one\n<34>msg two\n",
            4,
        );
        assert_eq!(got, owned(&[("<34>msg ", true)]));
        // 21+ digits cannot be a count: a line that starts with digits.
        let got = frames(
            FrameCodec::syslog(64),
            b"123456789012345678901234 not a count\nnext\n",
            3,
        );
        assert_eq!(
            got,
            owned(&[
                ("123456789012345678901234 not a count\n", false),
                ("next\n", false)
            ])
        );
        // Digits then not a space: a line.
        let got = frames(FrameCodec::syslog(64), b"2026-01-01 line\n", 2);
        assert_eq!(got, owned(&[("2026-01-01 line\n", false)]));
    }

    #[test]
    fn an_unfinished_counted_frame_at_eof_is_kept_and_flagged() {
        let got = frames(FrameCodec::syslog(64), b"20 <34>short", 3);
        assert_eq!(got, owned(&[("<34>short", true)]));
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_whole_with_either_line_ending() {
        let got = frames(FrameCodec::lines(4), b"abcd\r\nefgh\nijklm\r\n", 1);
        assert_eq!(
            got,
            owned(&[("abcd\r\n", false), ("efgh\n", false), ("ijkl", true)])
        );
    }

    #[test]
    fn memory_stays_bounded_without_newlines() {
        let mut codec = FrameCodec::lines(1024);
        let mut buf = BytesMut::new();
        let mut cut = 0;
        for _ in 0..1000 {
            buf.extend_from_slice(&[b'x'; 4096]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                assert!(f.data.len() <= 1024);
                cut += usize::from(f.cut);
            }
            assert!(buf.len() <= 4096 + 1024, "{}", buf.len());
        }
        assert_eq!(cut, 1, "one line, cut once, the rest skipped");
    }
}
