//! Parsing log lines into [`Record`]s: timestamp, level, message and fields.
//!
//! [`Format`] names the formats opsloop reads; [`Parser`] parses one line of a format into a
//! reused [`Record`]; [`detect`] picks a file's format from a sample of its lines. A line that
//! does not fit its file's format is kept whole as a raw message (and reported by the caller),
//! so mixed files lose nothing.
//!
//! The parsers for syslog, klog, logfmt and the `timestamp level message` family are written
//! by hand: they run once per line and allocate nothing for the common case.

use std::str::FromStr;

use opsloop_core::Level;
use opsloop_core::time::{CivilYear, civil_to_millis, digits, month_from_abbrev, parse_iso8601};
use regex::Regex;
use serde_json::Value;

/// A log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The whole line is the message.
    Raw,
    /// One JSON object per line.
    Json,
    /// `key=value` pairs (`level=info msg="..."`).
    Logfmt,
    /// RFC 3164 and RFC 5424 syslog, with or without the `<PRI>` header.
    Syslog,
    /// nginx/Apache common and combined access logs.
    Access,
    /// Kubernetes klog / glog (`I0102 15:04:05.000000 1 file.go:12] msg`).
    Klog,
    /// `timestamp level message` lines as Go, Java and Python loggers write them.
    Plain,
    /// A user-supplied regex with named groups.
    Regex,
}

impl Format {
    /// The formats [`detect`] considers, most specific first.
    pub const DETECTABLE: [Format; 6] = [
        Format::Json,
        Format::Syslog,
        Format::Access,
        Format::Klog,
        Format::Plain,
        Format::Logfmt,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Json => "json",
            Format::Logfmt => "logfmt",
            Format::Syslog => "syslog",
            Format::Access => "access",
            Format::Klog => "klog",
            Format::Plain => "plain",
            Format::Regex => "regex",
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "raw" => Format::Raw,
            "json" => Format::Json,
            "logfmt" => Format::Logfmt,
            "syslog" => Format::Syslog,
            "access" | "nginx" | "apache" => Format::Access,
            "klog" | "glog" => Format::Klog,
            "plain" => Format::Plain,
            "regex" => Format::Regex,
            other => {
                return Err(format!(
                    "unknown parser {other:?} (expected auto, raw, json, logfmt, syslog, access, klog, plain or regex)"
                ));
            }
        })
    }
}

/// A parsed log record. One is reused for every line, so its buffers stop allocating.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// 1-based line number of the record's first line.
    pub line: u64,
    /// Unix milliseconds, when the line carries a time.
    pub timestamp: Option<i64>,
    /// Severity, when the line carries one.
    pub level: Option<Level>,
    /// The message: what the template miner sees.
    pub message: String,
    /// Other fields (JSON, logfmt, access-log and regex fields, syslog header parts).
    pub fields: Vec<(String, Value)>,
    /// Lines joined to this record (stack traces), newline-separated.
    pub continuation: String,
    /// How many lines were joined.
    pub continuation_lines: u32,
    /// The timestamp had no year and got the parser's (RFC 3164, klog, logcat).
    pub year_assumed: bool,
    /// The level was not written but inferred from the message's words ([`infer_level`]).
    pub level_inferred: bool,
    /// A partial line (CRI `P`): the next line of the same stream continues its message.
    pub partial: bool,
    /// The container stream of a CRI line; partial lines join only within their stream.
    pub cri_stream: Option<CriStream>,
    /// The message was cut at the length limit (a joined CRI message that grew past it).
    pub cut: bool,
}

/// The stream a container runtime (CRI) line was written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CriStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Record {
    /// Empties the record for reuse.
    pub fn clear(&mut self) {
        self.line = 0;
        self.timestamp = None;
        self.level = None;
        self.message.clear();
        self.fields.clear();
        self.continuation.clear();
        self.continuation_lines = 0;
        self.year_assumed = false;
        self.level_inferred = false;
        self.partial = false;
        self.cri_stream = None;
        self.cut = false;
    }

    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// Invalid `--pattern` regexes.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// The regex does not compile.
    #[error("invalid pattern: {0}")]
    Invalid(#[from] regex::Error),
    /// No group names the message.
    #[error("pattern needs a named group `msg` or `message` (e.g. `(?P<msg>.*)`)")]
    NoMessage,
}

/// Year-less times more than this after the line's arrival are from the year before.
const ROLL_BACK_AFTER_MS: i64 = 2 * 86_400_000;

/// How year-less timestamps (RFC 3164, klog, logcat) get their year.
#[derive(Clone, Copy, Debug)]
struct Years {
    /// The fixed year, or the year of `now` (cached with its bounds: recomputed only when
    /// `now` leaves it, so setting `now` per line costs two comparisons).
    year: CivilYear,
    /// When the line arrived, if known: the year is then the one that puts the time in the
    /// year up to two days after `now` (clocks of writer and reader disagree a little).
    now: Option<i64>,
    /// Accept days the month does not have (only to tell whether a line is shaped like a
    /// record: one with an impossible date is a bad record, not a continuation).
    lenient: bool,
}

impl Years {
    fn fixed(year: i64) -> Years {
        let start_ms = civil_to_millis(year, 1, 1, 0, 0, 0, 0).unwrap_or(i64::MIN);
        let end_ms = civil_to_millis(year + 1, 1, 1, 0, 0, 0, 0).unwrap_or(i64::MAX);
        Years {
            year: CivilYear {
                year,
                start_ms,
                end_ms,
            },
            now: None,
            lenient: false,
        }
    }

    /// Milliseconds of a year-less civil time; `None` for a date that does not exist.
    fn resolve(&self, month: u32, day: u32, h: u32, m: u32, s: u32, ms: u32) -> Option<i64> {
        let y = self.year.year;
        let day = if self.lenient && (1..=31).contains(&day) {
            1
        } else {
            day
        };
        let Some(now) = self.now else {
            return civil_to_millis(y, month, day, h, m, s, ms);
        };
        let limit = now.saturating_add(ROLL_BACK_AFTER_MS);
        match civil_to_millis(y, month, day, h, m, s, ms) {
            // Two days before New Year, early January is (nearly) now, not eleven months ago.
            Some(t) if limit >= self.year.end_ms => {
                match civil_to_millis(y + 1, month, day, h, m, s, ms) {
                    Some(next) if next <= limit => Some(next),
                    _ => Some(t),
                }
            }
            Some(t) if t <= limit => Some(t),
            // Later than two days from now (a December line read in January), or a Feb 29
            // that this year lacks: the year before.
            _ => civil_to_millis(y - 1, month, day, h, m, s, ms),
        }
    }
}

/// Parses lines of one format.
pub struct Parser {
    format: Format,
    years: Years,
    access: Option<Regex>,
    pattern: Option<Regex>,
    /// Reused by [`Parser::starts_record`]: probing a line does not reallocate its buffers.
    scratch: Record,
}

const MESSAGE_KEYS: [&str; 5] = ["message", "msg", "log", "MESSAGE", "text"];
const LEVEL_KEYS: [&str; 6] = [
    "level",
    "severity",
    "lvl",
    "loglevel",
    "log.level",
    "levelname",
];
const TIME_KEYS: [&str; 6] = ["timestamp", "time", "ts", "@timestamp", "t", "datetime"];

impl Parser {
    /// A parser for `format`. Year-less timestamps (RFC 3164, klog) get `year`, until
    /// [`Parser::set_now`] makes the year follow the lines' arrival time.
    pub fn new(format: Format, year: i64) -> Self {
        let access = if format == Format::Access {
            access_regex()
        } else {
            None
        };
        Self {
            format,
            years: Years::fixed(year),
            access,
            pattern: None,
            scratch: Record::default(),
        }
    }

    /// A parser for a user regex with named groups: `msg` or `message` (required), `ts` or
    /// `timestamp`, `level`; every other named group becomes a field.
    pub fn with_pattern(pattern: &str, year: i64) -> Result<Self, PatternError> {
        let re = regex::RegexBuilder::new(pattern)
            .size_limit(10 << 20)
            .build()?;
        if !re
            .capture_names()
            .flatten()
            .any(|n| n == "msg" || n == "message")
        {
            return Err(PatternError::NoMessage);
        }
        Ok(Self {
            format: Format::Regex,
            years: Years::fixed(year),
            access: None,
            pattern: Some(re),
            scratch: Record::default(),
        })
    }

    /// [`Parser::set_now`] as a builder, for a batch read at one moment.
    pub fn roll_back_future(mut self, now_ms: i64) -> Self {
        self.set_now(now_ms);
        self
    }

    /// Tells the parser when the next lines arrived (call per line or per batch; cheap).
    /// From then on a year-less time gets the year of `now_ms`, or the year before when that
    /// would put it more than two days after `now_ms` (logs read in January still have
    /// December lines), or the year after when that puts it within those two days (a January
    /// line read late on December 31 by a clock running behind the writer's).
    pub fn set_now(&mut self, now_ms: i64) {
        if !self.years.year.contains(now_ms) {
            self.years.year = CivilYear::of(now_ms);
        }
        self.years.now = Some(now_ms);
    }

    /// The format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Parses `line` into `rec` (which the caller cleared). False when the line is not in this
    /// format; `rec` is then left for the caller to fill as raw.
    /// A line whose timestamp names a day its month does not have (`Feb 30`) does not parse.
    pub fn parse(&self, line: &str, rec: &mut Record) -> bool {
        parse_format(
            self.format,
            self.years,
            self.access.as_ref(),
            self.pattern.as_ref(),
            line,
            rec,
        )
    }

    /// Whether `line` starts a new record (as opposed to continuing a stack trace). Formats
    /// whose records open with a timestamp or a brace can tell; raw and logfmt treat only
    /// indented and `Caused by:` lines as continuations. A line shaped like a record but with
    /// an impossible date starts one too (which then fails to parse and is reported), rather
    /// than hiding in the record before it.
    pub fn starts_record(&mut self, line: &str) -> bool {
        if is_continuation_text(line) {
            return false;
        }
        match self.format {
            // A JSON record never spans lines; a stray line among them is a record of its own.
            Format::Raw | Format::Logfmt | Format::Regex | Format::Access | Format::Json => true,
            Format::Syslog | Format::Klog | Format::Plain => {
                let mut lenient = self.years;
                lenient.lenient = true;
                self.scratch.clear();
                parse_format(self.format, lenient, None, None, line, &mut self.scratch)
            }
        }
    }
}

fn parse_format(
    format: Format,
    years: Years,
    access: Option<&Regex>,
    pattern: Option<&Regex>,
    line: &str,
    rec: &mut Record,
) -> bool {
    match format {
        Format::Raw => {
            rec.message.push_str(line);
            true
        }
        Format::Json => parse_json(line, years, rec),
        Format::Logfmt => parse_logfmt(line, years, rec),
        Format::Syslog => parse_syslog(line, years, rec),
        Format::Access => access.is_some_and(|re| parse_access(re, line, rec)),
        Format::Klog => parse_klog(line, years, rec),
        Format::Plain => parse_plain(line, years, rec),
        Format::Regex => pattern.is_some_and(|re| parse_pattern(re, line, years, rec)),
    }
}

/// Words that give away a record's severity when the line does not state one, most severe
/// first. Only whole words count (`errors=0` is not an error).
const LEVEL_WORDS: [(&str, Level); 14] = [
    ("panic", Level::Critical),
    ("fatal", Level::Critical),
    ("emergency", Level::Critical),
    ("critical", Level::Critical),
    ("error", Level::Error),
    ("failed", Level::Error),
    ("failure", Level::Error),
    ("exception", Level::Error),
    ("segfault", Level::Error),
    ("refused", Level::Error),
    ("warning", Level::Warn),
    ("warn", Level::Warn),
    ("deprecated", Level::Warn),
    ("timeout", Level::Warn),
];

static LEVEL_FINDER: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(LEVEL_WORDS.iter().map(|(w, _)| w))
            .ok()
    });

/// The most severe level named by a whole word of `message`, for lines that state none
/// (file syslog, raw application output). `None` when no such word occurs.
pub fn infer_level(message: &str) -> Option<Level> {
    let finder = LEVEL_FINDER.as_ref()?;
    let b = message.as_bytes();
    let mut best: Option<Level> = None;
    for m in finder.find_overlapping_iter(message) {
        let before = m.start().checked_sub(1).map(|i| b[i]);
        let after = b.get(m.end()).copied();
        let boundary = |c: Option<u8>| c.is_none_or(|c| !c.is_ascii_alphanumeric() && c != b'=');
        if boundary(before) && boundary(after) {
            let level = LEVEL_WORDS[m.pattern().as_usize()].1;
            best = Some(best.map_or(level, |b| b.max(level)));
        }
    }
    best
}

/// Lines that continue the record before them in any format: indented lines (Java `\tat`,
/// Python `  File`), `Caused by:` and `... 12 more`.
fn is_continuation_text(line: &str) -> bool {
    line.starts_with([' ', '\t']) && !line.trim().is_empty()
        || line.starts_with("Caused by:")
        || line.starts_with("...")
}

/// Picks the format that parses most of `sample` (at least 60% of its non-empty lines);
/// raw when none does.
pub fn detect(sample: &[&str], year: i64) -> Format {
    let lines: Vec<&str> = sample
        .iter()
        .copied()
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return Format::Raw;
    }
    let mut best = (Format::Raw, 0usize);
    let mut rec = Record::default();
    for format in Format::DETECTABLE {
        let parser = Parser::new(format, year);
        let mut ok = 0;
        let mut parsed = 0;
        let mut first_parses = false;
        for (i, l) in lines.iter().enumerate() {
            rec.clear();
            let p = parser.parse(l, &mut rec);
            if p {
                parsed += 1;
                first_parses |= i == 0;
            }
            if p || (format != Format::Json && is_continuation_text(l)) {
                ok += 1;
            }
        }
        // Timestamped formats own the lines between their records (stack traces, panics), so
        // a file that opens with a record and has a third of its lines as records is theirs.
        let timestamped = matches!(format, Format::Syslog | Format::Klog | Format::Plain);
        let accepted =
            ok * 10 >= lines.len() * 6 || timestamped && first_parses && parsed * 3 >= lines.len();
        if accepted && ok > best.1 {
            best = (format, ok);
        }
    }
    best.0
}

fn set_level_from(rec: &mut Record, s: &str) {
    if rec.level.is_none() {
        rec.level = Level::parse(s.trim_matches(|c: char| !c.is_ascii_alphanumeric()));
    }
}

/// Seconds or milliseconds since the epoch, told apart by magnitude.
fn epoch_to_millis(v: f64) -> Option<i64> {
    if !v.is_finite() || v <= 0.0 {
        return None;
    }
    Some(if v > 1e17 {
        (v / 1e6) as i64
    } else if v > 1e14 {
        (v / 1e3) as i64
    } else if v > 1e11 {
        v as i64
    } else {
        (v * 1000.0) as i64
    })
}

/// A time written as text; the flag says the year was assumed.
fn parse_time_text(s: &str, years: Years) -> Option<(i64, bool)> {
    let b = s.as_bytes();
    if let Some((ms, _)) = parse_iso8601(b) {
        return Some((ms, false));
    }
    if let Some((ms, _)) = parse_slash_datetime(b) {
        return Some((ms, false));
    }
    if let Some((ms, _)) = parse_bsd_time(b, years) {
        return Some((ms, true));
    }
    if let Some((ms, _)) = parse_clf_time(b) {
        return Some((ms, false));
    }
    s.parse::<f64>()
        .ok()
        .and_then(epoch_to_millis)
        .map(|ms| (ms, false))
}

fn parse_json(line: &str, years: Years, rec: &mut Record) -> bool {
    let trimmed = line.trim();
    if !trimmed.starts_with('{') {
        return false;
    }
    let Ok(map) = serde_json::from_str::<serde_json::Map<String, Value>>(trimmed) else {
        return false;
    };
    for (k, v) in map {
        if rec.message.is_empty() && MESSAGE_KEYS.contains(&k.as_str()) {
            match &v {
                Value::String(s) => rec.message.push_str(s.trim_end_matches('\n')),
                other => rec.message.push_str(&other.to_string()),
            }
            continue;
        }
        if rec.level.is_none() && LEVEL_KEYS.contains(&k.as_str()) {
            match &v {
                Value::String(s) => set_level_from(rec, s),
                Value::Number(n) => {
                    // Numeric levels: bunyan/pino style (10..60), else syslog severity.
                    if let Some(n) = n.as_u64() {
                        rec.level = Some(match n {
                            0..=7 => Level::from_syslog_severity(n as u8),
                            10 => Level::Trace,
                            20 => Level::Debug,
                            30 => Level::Info,
                            40 => Level::Warn,
                            50 => Level::Error,
                            _ => Level::Critical,
                        });
                    }
                }
                _ => {}
            }
            if rec.level.is_some() {
                continue;
            }
        }
        if rec.timestamp.is_none() && TIME_KEYS.contains(&k.as_str()) {
            let (ts, assumed) = match &v {
                Value::String(s) => parse_time_text(s, years).unzip(),
                Value::Number(n) => (n.as_f64().and_then(epoch_to_millis), None),
                _ => (None, None),
            };
            rec.timestamp = ts;
            rec.year_assumed = assumed.unwrap_or(false);
            if rec.timestamp.is_some() {
                continue;
            }
        }
        rec.fields.push((k, v));
    }
    true
}

/// Splits a logfmt line into pairs; calls `f(key, value, quoted)`. False on malformed input.
pub fn logfmt_pairs<'a>(line: &'a str, mut f: impl FnMut(&'a str, String, bool)) -> bool {
    let b = line.as_bytes();
    let mut i = 0;
    let mut pairs = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' && b[i] != b'"' {
            i += 1;
        }
        let key = &line[key_start..i];
        if key.is_empty() {
            return false;
        }
        if i >= b.len() || b[i] == b' ' {
            f(key, String::new(), false);
            pairs += 1;
            continue;
        }
        if b[i] == b'"' {
            return false;
        }
        i += 1; // '='
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut value = String::new();
            let mut closed = false;
            while i < b.len() {
                match b[i] {
                    b'\\' if i + 1 < b.len() => {
                        let c = line[i + 1..].chars().next().unwrap_or('\\');
                        value.push(match c {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            _ => c,
                        });
                        i += 1 + c.len_utf8();
                    }
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    _ => {
                        let ch_len = line[i..].chars().next().map_or(1, char::len_utf8);
                        value.push_str(&line[i..i + ch_len]);
                        i += ch_len;
                    }
                }
            }
            if !closed {
                return false;
            }
            f(key, value, true);
        } else {
            let v_start = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            f(key, line[v_start..i].to_string(), false);
        }
        pairs += 1;
    }
    pairs > 0
}

fn parse_logfmt(line: &str, years: Years, rec: &mut Record) -> bool {
    let mut with_value = 0;
    let mut fields = std::mem::take(&mut rec.fields);
    let mut message = None;
    let mut level = None;
    let mut time = None;
    let ok = logfmt_pairs(line, |k, v, quoted| {
        if !v.is_empty() || quoted {
            with_value += 1;
        }
        match k {
            "msg" | "message" if message.is_none() => message = Some(v),
            "level" | "lvl" | "severity" if level.is_none() => level = Level::parse(&v),
            "ts" | "time" | "timestamp" if time.is_none() => time = parse_time_text(&v, years),
            _ => {
                let value = if quoted || v.is_empty() {
                    if v.is_empty() && !quoted {
                        Value::Bool(true)
                    } else {
                        Value::String(v)
                    }
                } else {
                    scalar_value(&v)
                };
                fields.push((k.to_string(), value));
            }
        }
    });
    rec.fields = fields;
    if !ok || with_value < 2 {
        rec.fields.clear();
        return false;
    }
    if level.is_some() {
        rec.level = level;
    }
    if let Some((ms, assumed)) = time {
        rec.timestamp = Some(ms);
        rec.year_assumed = assumed;
    }
    match message {
        Some(m) => rec.message.push_str(&m),
        None => rec.message.push_str(line),
    }
    true
}

/// A bare value as JSON: integers and floats as numbers, `true`/`false`, else a string.
pub fn scalar_value(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
    {
        return Value::from(f);
    }
    match v {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(v.to_string()),
    }
}

/// `Mmm dd hh:mm:ss` (day may be space-padded); returns millis and bytes used.
fn parse_bsd_time(b: &[u8], years: Years) -> Option<(i64, usize)> {
    let (month, day, h, m, s, used) = parse_bsd_fields(b)?;
    Some((years.resolve(month, day, h, m, s, 0)?, used))
}

/// The fields of `Mmm dd hh:mm:ss`: month, day, hour, minute, second and bytes used.
fn parse_bsd_fields(b: &[u8]) -> Option<(u32, u32, u32, u32, u32, usize)> {
    let month = month_from_abbrev(b.get(0..3)?)?;
    if b.get(3) != Some(&b' ') {
        return None;
    }
    let (day, at) = match (b.get(4), b.get(5)) {
        (Some(b' '), Some(d)) if d.is_ascii_digit() => (u32::from(d - b'0'), 6),
        _ => (digits(b, 4, 2)?, 6),
    };
    if b.get(at) != Some(&b' ') {
        return None;
    }
    let (h, m, s, used) = parse_hms(b, at + 1)?;
    Some((month, day, h, m, s, used))
}

/// `hh:mm:ss` with optional fraction at `at`; returns the parts and the end offset.
fn parse_hms(b: &[u8], at: usize) -> Option<(u32, u32, u32, usize)> {
    let h = digits(b, at, 2)?;
    let m = digits(b, at + 3, 2)?;
    let s = digits(b, at + 6, 2)?;
    if b.get(at + 2) != Some(&b':') || b.get(at + 5) != Some(&b':') {
        return None;
    }
    let mut end = at + 8;
    if matches!(b.get(end), Some(b'.' | b',')) {
        end += 1;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    Some((h, m, s, end))
}

/// `YYYY/MM/DD hh:mm:ss` (nginx error log and others).
fn parse_slash_datetime(b: &[u8]) -> Option<(i64, usize)> {
    let y = digits(b, 0, 4)?;
    if b.get(4) != Some(&b'/') || b.get(7) != Some(&b'/') || b.get(10) != Some(&b' ') {
        return None;
    }
    let (mo, d) = (digits(b, 5, 2)?, digits(b, 8, 2)?);
    let (h, m, s, used) = parse_hms(b, 11)?;
    Some((civil_to_millis(i64::from(y), mo, d, h, m, s, 0)?, used))
}

/// Common Log Format time: `10/Oct/2000:13:55:36 -0700`.
fn parse_clf_time(b: &[u8]) -> Option<(i64, usize)> {
    let d = digits(b, 0, 2)?;
    let mo = month_from_abbrev(b.get(3..6)?)?;
    let y = digits(b, 7, 4)?;
    let (h, m, s, mut used) = parse_hms(b, 12)?;
    let mut ms = civil_to_millis(i64::from(y), mo, d, h, m, s, 0)?;
    if b.get(used) == Some(&b' ') && matches!(b.get(used + 1), Some(b'+' | b'-')) {
        let sign = if b[used + 1] == b'-' { -1 } else { 1 };
        let off = i64::from(digits(b, used + 2, 2)? * 60 + digits(b, used + 4, 2)?);
        ms -= sign * off * 60_000;
        used += 6;
    }
    Some((ms, used))
}

/// RFC 5424 (`<PRI>1 TS HOST APP PROCID MSGID SD MSG`) and RFC 3164
/// (`[<PRI>]Mmm dd hh:mm:ss HOST TAG[PID]: MSG`).
fn parse_syslog(line: &str, years: Years, rec: &mut Record) -> bool {
    let b = line.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'<') {
        let Some(end) = b.iter().take(5).position(|&c| c == b'>') else {
            return false;
        };
        let Ok(pri) = line[1..end].parse::<u16>() else {
            return false;
        };
        if pri > 191 {
            return false;
        }
        rec.level = Some(Level::from_syslog_severity((pri % 8) as u8));
        rec.fields.push(("facility".into(), Value::from(pri / 8)));
        i = end + 1;
    }
    let rest = &line[i..];
    if let Some(rest) = rest.strip_prefix("1 ") {
        return parse_5424(rest, rec);
    }
    let Some((ms, used)) = parse_bsd_time(rest.as_bytes(), years) else {
        return false;
    };
    rec.timestamp = Some(ms);
    rec.year_assumed = true;
    let rest = rest[used..].trim_start();
    let (host, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    rec.fields.push(("host".into(), Value::from(host)));
    // TAG[PID]: — the tag ends at '[' or ':' within the first word.
    let word_end = rest.find(' ').unwrap_or(rest.len());
    let word = &rest[..word_end];
    if let Some(colon) = word.rfind(':').filter(|&c| c + 1 == word.len()) {
        let tag = &word[..colon];
        let (app, pid) = match tag.find('[') {
            Some(open) => (&tag[..open], tag[open + 1..].strip_suffix(']')),
            None => (tag, None),
        };
        rec.fields.push(("app".into(), Value::from(app)));
        if let Some(pid) = pid {
            rec.fields.push(("pid".into(), scalar_value(pid)));
        }
        rec.message.push_str(rest[word_end..].trim_start());
    } else {
        rec.message.push_str(rest);
    }
    true
}

fn parse_5424(rest: &str, rec: &mut Record) -> bool {
    let mut parts = rest.splitn(6, ' ');
    let (Some(ts), Some(host), Some(app), Some(procid), Some(msgid)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let tail = parts.next().unwrap_or("");
    if ts != "-" {
        match parse_iso8601(ts.as_bytes()) {
            Some((ms, _)) => rec.timestamp = Some(ms),
            None => return false,
        }
    }
    for (k, v) in [
        ("host", host),
        ("app", app),
        ("procid", procid),
        ("msgid", msgid),
    ] {
        if v != "-" {
            rec.fields.push((k.into(), scalar_value(v)));
        }
    }
    // Structured data: "-" or one or more [id k="v" ...] elements.
    let msg = if let Some(after) = tail.strip_prefix("- ") {
        after
    } else if tail == "-" {
        ""
    } else if tail.starts_with('[') {
        let b = tail.as_bytes();
        let mut i = 0;
        let mut in_quote = false;
        while i < b.len() {
            match b[i] {
                b'\\' if in_quote => i += 1,
                b'"' => in_quote = !in_quote,
                b']' if !in_quote && b.get(i + 1) != Some(&b'[') => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        rec.fields.push((
            "structured_data".into(),
            Value::from(&tail[..i.min(tail.len())]),
        ));
        tail.get(i..).unwrap_or("").trim_start()
    } else {
        tail
    };
    rec.message
        .push_str(msg.strip_prefix('\u{feff}').unwrap_or(msg));
    true
}

fn access_regex() -> Option<Regex> {
    // A constant pattern, exercised by the tests.
    Regex::new(
        r#"^(\S+) (\S+) (\S+) \[([^\]]+)\] "(\S+) (\S+)(?: (\S+))?" (\d{3}) (\d+|-)(?: "([^"]*)" "([^"]*)")?"#,
    )
    .ok()
}

fn parse_access(re: &Regex, line: &str, rec: &mut Record) -> bool {
    let Some(c) = re.captures(line) else {
        return false;
    };
    let get = |i: usize| c.get(i).map_or("", |m| m.as_str());
    // The time's shape is in the regex; a time that does not parse is an impossible date.
    let Some((ms, _)) = parse_clf_time(get(4).as_bytes()) else {
        return false;
    };
    rec.timestamp = Some(ms);
    let status: u16 = get(8).parse().unwrap_or(0);
    rec.level = Some(match status {
        500.. => Level::Error,
        400..=499 => Level::Warn,
        _ => Level::Info,
    });
    rec.fields.push(("client".into(), Value::from(get(1))));
    if get(3) != "-" {
        rec.fields.push(("user".into(), Value::from(get(3))));
    }
    rec.fields.push(("method".into(), Value::from(get(5))));
    rec.fields.push(("path".into(), Value::from(get(6))));
    if !get(7).is_empty() {
        rec.fields.push(("protocol".into(), Value::from(get(7))));
    }
    rec.fields.push(("status".into(), Value::from(status)));
    rec.fields.push((
        "bytes".into(),
        Value::from(get(9).parse::<u64>().unwrap_or(0)),
    ));
    if c.get(10).is_some() {
        rec.fields.push(("referer".into(), Value::from(get(10))));
        rec.fields.push(("user_agent".into(), Value::from(get(11))));
    }
    let path = get(6).split('?').next().unwrap_or("");
    rec.message.push_str(get(5));
    rec.message.push(' ');
    rec.message.push_str(path);
    rec.message.push(' ');
    rec.message.push_str(get(8));
    true
}

/// `Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg`.
fn parse_klog(line: &str, years: Years, rec: &mut Record) -> bool {
    let b = line.as_bytes();
    let level = match b.first() {
        Some(b'I') => Level::Info,
        Some(b'W') => Level::Warn,
        Some(b'E') => Level::Error,
        Some(b'F') => Level::Critical,
        _ => return false,
    };
    let (Some(mo), Some(d)) = (digits(b, 1, 2), digits(b, 3, 2)) else {
        return false;
    };
    if b.get(5) != Some(&b' ') {
        return false;
    }
    let Some((h, m, s, end)) = parse_hms(b, 6) else {
        return false;
    };
    let Some(close) = line[end..].find("] ").map(|i| i + end) else {
        return false;
    };
    let header = line[end..close].trim();
    let (thread, source) = header.split_once(' ').unwrap_or(("", header));
    if !source.contains(':') {
        return false;
    }
    let frac = line[14.min(end)..end].trim_start_matches('.');
    let millis = digits(frac.as_bytes(), 0, 3).unwrap_or(0);
    let Some(ms) = years.resolve(mo, d, h, m, s, millis) else {
        return false;
    };
    rec.timestamp = Some(ms);
    rec.year_assumed = true;
    rec.level = Some(level);
    if !thread.trim().is_empty() {
        rec.fields
            .push(("thread".into(), scalar_value(thread.trim())));
    }
    rec.fields
        .push(("source".into(), Value::from(source.trim())));
    rec.message.push_str(&line[close + 2..]);
    true
}

/// `Www Mmm dd hh:mm:ss yyyy` (C's ctime, Apache's error log).
fn parse_ctime(b: &[u8]) -> Option<(i64, usize)> {
    if !b.get(0..3)?.iter().all(u8::is_ascii_alphabetic) || b.get(3) != Some(&b' ') {
        return None;
    }
    let (month, day, h, m, s, used) = parse_bsd_fields(&b[4..])?;
    if b.get(4 + used) != Some(&b' ') {
        return None;
    }
    let year = digits(b, 5 + used, 4)?;
    Some((
        civil_to_millis(i64::from(year), month, day, h, m, s, 0)?,
        9 + used,
    ))
}

/// `MM-DD hh:mm:ss.fff` (Android logcat), year-less.
fn parse_month_day(b: &[u8], years: Years) -> Option<(i64, usize)> {
    let (mo, d) = (digits(b, 0, 2)?, digits(b, 3, 2)?);
    if b.get(2) != Some(&b'-') || b.get(5) != Some(&b' ') {
        return None;
    }
    let (h, m, s, end) = parse_hms(b, 6)?;
    let millis = digits(b, 15, 3).filter(|_| end >= 18).unwrap_or(0);
    Some((years.resolve(mo, d, h, m, s, millis)?, end))
}

/// `yy/MM/dd hh:mm:ss` (log4j's `%d{yy/MM/dd HH:mm:ss}`, Spark) and `yyMMdd hhmmss` (Hadoop).
fn parse_short_date(b: &[u8]) -> Option<(i64, usize)> {
    if b.get(2) == Some(&b'/') && b.get(5) == Some(&b'/') && b.get(8) == Some(&b' ') {
        let (y, mo, d) = (digits(b, 0, 2)?, digits(b, 3, 2)?, digits(b, 6, 2)?);
        let (h, m, s, end) = parse_hms(b, 9)?;
        return Some((
            civil_to_millis(2000 + i64::from(y), mo, d, h, m, s, 0)?,
            end,
        ));
    }
    if b.get(6) == Some(&b' ') && b.get(13) == Some(&b' ') {
        let (y, mo, d) = (digits(b, 0, 2)?, digits(b, 2, 2)?, digits(b, 4, 2)?);
        let (h, m, s) = (digits(b, 7, 2)?, digits(b, 9, 2)?, digits(b, 11, 2)?);
        return Some((civil_to_millis(2000 + i64::from(y), mo, d, h, m, s, 0)?, 13));
    }
    None
}

/// The timestamps `plain` lines may open with; the flag says the year was assumed.
fn parse_leading_time(b: &[u8], years: Years) -> Option<(i64, usize, bool)> {
    let with_year = |x: Option<(i64, usize)>| x.map(|(ms, used)| (ms, used, false));
    let without = |x: Option<(i64, usize)>| x.map(|(ms, used)| (ms, used, true));
    with_year(parse_iso8601(b))
        .or_else(|| with_year(parse_slash_datetime(b)))
        .or_else(|| without(parse_bsd_time(b, years)))
        .or_else(|| with_year(parse_ctime(b)))
        .or_else(|| without(parse_month_day(b, years)))
        .or_else(|| with_year(parse_short_date(b)))
}

/// Zone names written after a time (`... 03:04:05.123 UTC [1234] LOG:`); the time is kept as
/// written, in UTC.
fn strip_zone(rest: &str) -> &str {
    const ZONES: [&str; 20] = [
        "UTC", "GMT", "Z", "CET", "CEST", "EET", "EEST", "WET", "WEST", "BST", "IST", "PST", "PDT",
        "MST", "MDT", "CST", "CDT", "EST", "EDT", "JST",
    ];
    let word_end = rest.find([' ', '\t']).unwrap_or(rest.len());
    if ZONES.contains(&&rest[..word_end]) {
        rest[word_end..].trim_start()
    } else {
        rest
    }
}

/// The CRI container-log frame after the time: `stdout F message` (`P` for a partial line).
fn cri_prefix(rest: &str) -> Option<(&str, CriStream, bool, &str)> {
    let (stream, tail) = rest.split_once(' ')?;
    let which = match stream {
        "stdout" => CriStream::Stdout,
        "stderr" => CriStream::Stderr,
        _ => return None,
    };
    let (tag, msg) = tail.split_once(' ').unwrap_or((tail, ""));
    match tag {
        "F" => Some((stream, which, false, msg)),
        "P" => Some((stream, which, true, msg)),
        _ => None,
    }
}

/// `TIMESTAMP [LEVEL] message` and its relatives: the time in one of the forms of
/// [`parse_leading_time`], optionally bracketed; then the level among the next words, bare,
/// bracketed or followed by a colon (`INFO`, `[error]`, `WARN:`), possibly after a thread or
/// logger name, or a single letter after process and thread ids (logcat: `1702 2395 D Tag:`).
fn parse_plain(line: &str, years: Years, rec: &mut Record) -> bool {
    let b = line.as_bytes();
    let start = usize::from(b.first() == Some(&b'['));
    let Some((ms, used, year_assumed)) = parse_leading_time(&b[start..], years) else {
        return false;
    };
    rec.timestamp = Some(ms);
    rec.year_assumed = year_assumed;
    let mut rest = &line[start + used..];
    if start == 1 {
        rest = rest.strip_prefix(']').unwrap_or(rest);
    }
    let rest = strip_zone(rest.trim_start_matches([' ', '\t', '|', '-', ',']));
    if let Some((stream, which, partial, inner)) = cri_prefix(rest) {
        rec.fields.push(("stream".into(), Value::from(stream)));
        rec.partial = partial;
        rec.cri_stream = Some(which);
        // The container's own line may be structured: JSON or logfmt inside the CRI frame.
        if !parse_json(inner, years, rec) && !parse_logfmt(inner, years, rec) {
            rec.message.push_str(inner);
        }
        return true;
    }
    let mut probe = rest;
    let mut numbers: Vec<&str> = Vec::new();
    let mut words = 0;
    while words < 3 && !probe.is_empty() {
        let word_end = probe.find([' ', '\t']).unwrap_or(probe.len());
        let word = &probe[..word_end];
        let bare =
            word.trim_matches(|c: char| matches!(c, '[' | ']' | '(' | ')' | ':' | '<' | '>' | ','));
        let only_numbers_before = words == 0 && !numbers.is_empty();
        let letter_level = bare.len() == 1 && only_numbers_before;
        if (bare.len() > 1 || letter_level)
            && let Some(level) = Level::parse(bare)
        {
            rec.level = Some(level);
            let after = probe[word_end..].trim_start_matches([' ', '\t', ':', '-', '|']);
            let before = &rest[..rest.len() - probe.len()];
            if numbers.is_empty() && !before.trim().is_empty() {
                rec.message.push_str(before.trim_end());
                rec.message.push(' ');
            } else if !numbers.is_empty() {
                let keys = ["pid", "tid"];
                for (k, n) in keys.iter().zip(&numbers) {
                    rec.fields.push(((*k).to_string(), scalar_value(n)));
                }
            }
            rec.message.push_str(after);
            return true;
        }
        if !bare.is_empty() && bare.bytes().all(|c| c.is_ascii_digit()) && words == 0 {
            numbers.push(bare);
        } else if !word.bytes().all(|c| c.is_ascii_punctuation()) {
            words += 1;
        }
        probe = probe[word_end..].trim_start();
    }
    rec.message.push_str(rest);
    true
}

fn parse_pattern(re: &Regex, line: &str, years: Years, rec: &mut Record) -> bool {
    let Some(c) = re.captures(line) else {
        return false;
    };
    for name in re.capture_names().flatten() {
        let Some(m) = c.name(name) else { continue };
        let v = m.as_str();
        match name {
            "msg" | "message" => rec.message.push_str(v),
            "level" => set_level_from(rec, v),
            "ts" | "timestamp" | "time" => {
                let (ts, assumed) = parse_time_text(v, years).unzip();
                rec.timestamp = ts;
                rec.year_assumed = assumed.unwrap_or(false);
            }
            _ => rec.fields.push((name.to_string(), scalar_value(v))),
        }
    }
    true
}

#[cfg(test)]
mod tests;
