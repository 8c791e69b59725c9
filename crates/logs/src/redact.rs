//! Redaction of secrets in records, before anything keeps or sends them.
//!
//! A [`Redactor`] replaces secret-looking values with [`MARKER`] and keeps what names them, so
//! templates and rules still see the shape of the line (`password=<redacted>`):
//!
//! - `key=value`, `key: value`, `"key": "value"` where a part of the key is a secret word:
//!   `password`, `passwd`, `passphrase`, `pwd`, `secret`, `token`, `api_key`/`apikey`/`api-key`,
//!   `access_key`, `private_key`, `credentials`, `cookie` (`db_password`, `clientSecret` and
//!   `x-api-key` count; `tokenizer`, `secretary` and `passwords` do not);
//! - `Authorization:` header values (the scheme is kept: `Bearer <redacted>`) and bare
//!   `Bearer` tokens;
//! - AWS access key ids (`AKIA…`/`ASIA…`);
//! - private key blocks (`-----BEGIN … PRIVATE KEY-----` to `-----END … PRIVATE KEY-----`, or to
//!   the end of the record when it has no end line);
//! - the password of a URL's `user:password@`.
//!
//! Structured fields are redacted by name too: a string anywhere under a key that names a
//! secret becomes the marker (numbers and booleans stay: `token_count: 5` is no secret).
//!
//! Most records contain none of this, and the check is one Aho-Corasick pass over trigger words
//! with no allocation; the regexes run only on records that contain a trigger.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use crate::wordscan::WordScan;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Captures, Regex, RegexBuilder};
use serde_json::Value;

use crate::parse::Record;

/// What a redacted value is replaced with.
pub const MARKER: &str = "<redacted>";

/// Extra patterns accepted at most (the built-in ones need a few more bits of the mask).
pub const MAX_EXTRA_PATTERNS: usize = 100;

/// Nesting of structured field values followed at most; a deeper container under a secret
/// key, or one that may hold a secret, is replaced whole.
const MAX_VALUE_DEPTH: usize = 32;

/// Why a redactor could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    /// An extra pattern is not a valid regex.
    #[error("redaction pattern {name:?}: {message}")]
    Invalid {
        /// The pattern's name.
        name: String,
        /// The regex error.
        message: String,
    },
    /// Too many extra patterns.
    #[error("{count} redaction patterns given; at most {max} are supported")]
    TooMany {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// How a pattern's match is checked and which part of it is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The first capture group that took part (the whole match if the regex has none).
    Value,
    /// `key` names a secret (see [`secret_key`]); the first `v*` group that took part.
    KeyValue,
    /// A bearer token: group 1, when it looks like a token rather than a word.
    Bearer,
}

#[derive(Debug)]
struct Pattern {
    name: String,
    regex: Regex,
    kind: Kind,
}

#[derive(Debug)]
struct Inner {
    enabled: bool,
    patterns: Vec<Pattern>,
    /// Trigger words, ASCII case-insensitive; a pattern runs only if one of its words is there.
    triggers: Option<TriggerScan>,
    /// Patterns with no trigger word (extras without a required literal): always run.
    always: u128,
    /// Words a field name must contain to be checked by [`secret_key`].
    key_triggers: Option<AhoCorasick>,
    /// Private key blocks continued in the joined lines: the start and end lines, and the
    /// pattern for the joined lines' part up to the end line.
    pem_begin: Option<Regex>,
    pem_end: Option<Regex>,
    pem_rest: Option<Pattern>,
}

/// Redacts secrets in text and records. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Redactor {
    inner: Arc<Inner>,
}

/// A key's part that names a secret. Compared ASCII case-insensitively, part by part.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "cookie",
    "credential",
    "credentials",
    "privatekey",
];

/// Two consecutive key parts that name a secret together (`api_key`, `AccessKey`).
const SECRET_PAIRS: &[(&str, &str)] = &[
    ("api", "key"),
    ("access", "key"),
    ("private", "key"),
    ("secret", "key"),
];

/// Substrings of every key [`secret_key`] accepts: the field-name prefilter.
const KEY_TRIGGERS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "cookie",
    "credential",
];

/// `Key: value` pairs: the key, a `:` or `=` (quotes and JSON escapes around either), and the
/// value: double-quoted, single-quoted, escaped-quoted (JSON in a JSON string) or bare. A bare
/// value may follow a `Bearer`/`Basic` scheme, which is kept.
const KEY_VALUE: &str = r#"(?i)(?P<key>[a-z_][a-z0-9_.-]*)\\?["']?[ \t]*[:=][ \t]*(?:"(?P<v1>(?:[^"\\\n]|\\.)*)"|'(?P<v2>[^'\n]*)'|\\"(?P<v3>(?:[^"\\\n]|\\[^"])*)\\"|(?:(?:bearer|basic|token)[ \t]+)?(?P<v4>[^\s"',;&)}\]\\]+))"#;
const KEY_VALUE_TRIGGERS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "access-key",
    "accesskey",
    "private_key",
    "private-key",
    "privatekey",
    "credential",
    "cookie",
];

/// `Authorization: <scheme> <value>`; the scheme is kept.
const AUTHORIZATION: &str = r#"(?i)\b(?:proxy-)?authorization\\?["']?[ \t]*[:=][ \t]*\\?["']?(?:(?:basic|bearer|digest|negotiate|ntlm|token|apikey|aws4-hmac-sha256)[ \t]+)?([^\s"'\\,;]+)"#;

const BEARER: &str = r"(?i)\bbearer[ \t]+([a-z0-9._~+/-]+=*)";

const AWS_KEY_ID: &str = r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b";

const PRIVATE_KEY: &str = r"(?s)-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(.*?)(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\z)";
const PEM_BEGIN: &str = r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----";
const PEM_END: &str = r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----";
/// The joined lines of a record whose message opened a key block: up to its end line.
const PEM_REST: &str = r"(?s)\A(.*?)(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\z)";

/// `scheme://user:password@`: the password.
const URL_PASSWORD: &str = r#"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/?#@"'<>]*:([^\s/?#@"'<>]+)@"#;

/// The built-in patterns, in the order they run: header and bearer values before key/value
/// pairs, so `Authorization: Bearer x` keeps its scheme.
fn builtin() -> [(&'static str, &'static str, Kind, &'static [&'static str]); 6] {
    [
        (
            "private-key",
            PRIVATE_KEY,
            Kind::Value,
            &["private key-----"],
        ),
        (
            "authorization",
            AUTHORIZATION,
            Kind::Value,
            &["authorization"],
        ),
        ("bearer", BEARER, Kind::Bearer, &["bearer"]),
        (
            "aws-access-key-id",
            AWS_KEY_ID,
            Kind::Value,
            &["akia", "asia"],
        ),
        ("url-password", URL_PASSWORD, Kind::Value, &["://"]),
        ("key-value", KEY_VALUE, Kind::KeyValue, KEY_VALUE_TRIGGERS),
    ]
}

fn build_regex(name: &str, pattern: &str) -> Result<Regex, RedactError> {
    RegexBuilder::new(pattern)
        .size_limit(2 << 20)
        .build()
        .map_err(|e| RedactError::Invalid {
            name: name.to_string(),
            message: e.to_string(),
        })
}

/// The trigger words of the patterns and which pattern each belongs to.
#[derive(Debug)]
enum TriggerScan {
    /// The built-in words and a few more: a byte-pair table, the fastest on short records.
    Words(WordScan),
    /// Many words (extra patterns with many literals): an automaton, linear whatever their
    /// number.
    Automaton(AhoCorasick, Vec<usize>),
}

impl TriggerScan {
    /// Up to this many words, the table scan; its cost grows with words sharing a first byte.
    const MAX_TABLE_WORDS: usize = 64;

    fn new(words: &[Vec<u8>], owners: Vec<usize>) -> Result<Option<TriggerScan>, RedactError> {
        if words.len() <= Self::MAX_TABLE_WORDS {
            let pairs = owners.iter().zip(words).map(|(&o, w)| (o, w.as_slice()));
            return Ok(WordScan::new(pairs).map(TriggerScan::Words));
        }
        Ok(build_ac(words)?.map(|ac| TriggerScan::Automaton(ac, owners)))
    }
}

fn build_ac<I, P>(words: I) -> Result<Option<AhoCorasick>, RedactError>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    let words: Vec<P> = words.into_iter().collect();
    if words.is_empty() {
        return Ok(None);
    }
    // A DFA: the words are few or the scan runs over every record. (Lowercasing the text to
    // search case-sensitively with the SIMD prefilter was measured slower: short words make
    // it verify too many candidates.)
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(&words)
        .map(Some)
        .map_err(|e| RedactError::Invalid {
            name: "triggers".into(),
            message: e.to_string(),
        })
}

static BUILTIN: LazyLock<Result<Redactor, RedactError>> = LazyLock::new(|| Redactor::new(&[]));

impl Default for Redactor {
    /// The built-in patterns (shared: building them once).
    fn default() -> Self {
        match &*BUILTIN {
            Ok(r) => r.clone(),
            // The built-in patterns are constants that the tests compile, so this cannot
            // happen in a tested build; should it, fields named as secrets are still redacted.
            Err(_) => Redactor::from_inner(Inner {
                enabled: true,
                key_triggers: build_ac(KEY_TRIGGERS).ok().flatten(),
                ..Inner::empty()
            }),
        }
    }
}

impl Inner {
    fn empty() -> Inner {
        Inner {
            enabled: false,
            patterns: Vec::new(),
            triggers: None,
            always: 0,
            key_triggers: None,
            pem_begin: None,
            pem_end: None,
            pem_rest: None,
        }
    }
}

impl Redactor {
    fn from_inner(inner: Inner) -> Redactor {
        Redactor {
            inner: Arc::new(inner),
        }
    }

    /// The built-in patterns plus `extra` (name, regex). An extra regex's first capture group
    /// that took part in a match is replaced, or the whole match when it has no group.
    pub fn new(extra: &[(&str, &str)]) -> Result<Redactor, RedactError> {
        if extra.len() > MAX_EXTRA_PATTERNS {
            return Err(RedactError::TooMany {
                count: extra.len(),
                max: MAX_EXTRA_PATTERNS,
            });
        }
        let mut patterns = Vec::new();
        let mut words: Vec<Vec<u8>> = Vec::new();
        let mut trigger_owner = Vec::new();
        let mut always = 0u128;
        for (name, pattern, kind, triggers) in builtin() {
            for t in triggers {
                words.push(t.as_bytes().to_vec());
                trigger_owner.push(patterns.len());
            }
            patterns.push(Pattern {
                name: name.to_string(),
                regex: build_regex(name, pattern)?,
                kind,
            });
        }
        for (name, pattern) in extra {
            let regex = build_regex(name, pattern)?;
            // Only text containing one of the literals every match needs can match.
            match crate::literals::required_literals(pattern) {
                Some(lits) => {
                    for l in lits {
                        words.push(l);
                        trigger_owner.push(patterns.len());
                    }
                }
                None => always |= 1 << patterns.len(),
            }
            patterns.push(Pattern {
                name: (*name).to_string(),
                regex,
                kind: Kind::Value,
            });
        }
        Ok(Redactor::from_inner(Inner {
            enabled: true,
            patterns,
            triggers: TriggerScan::new(&words, trigger_owner)?,
            always,
            key_triggers: build_ac(KEY_TRIGGERS)?,
            pem_begin: Some(build_regex("private-key", PEM_BEGIN)?),
            pem_end: Some(build_regex("private-key", PEM_END)?),
            pem_rest: Some(Pattern {
                name: "private-key".into(),
                regex: build_regex("private-key", PEM_REST)?,
                kind: Kind::Value,
            }),
        }))
    }

    /// A redactor that changes nothing (redaction turned off).
    pub fn disabled() -> Redactor {
        Redactor::from_inner(Inner::empty())
    }

    /// Whether this redactor changes anything at all.
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// The pattern names, built-in first.
    pub fn pattern_names(&self) -> impl Iterator<Item = &str> {
        self.inner.patterns.iter().map(|p| p.name.as_str())
    }

    /// The patterns whose trigger words `text` contains, as a bit mask.
    fn triggered(&self, text: &str) -> u128 {
        let inner = &*self.inner;
        let mut mask = inner.always;
        match &inner.triggers {
            Some(TriggerScan::Words(scan)) => {
                scan.scan(text.as_bytes(), |owner| mask |= 1 << owner);
            }
            Some(TriggerScan::Automaton(ac, owners)) if ac.is_match(text) => {
                for m in ac.find_overlapping_iter(text) {
                    mask |= 1 << owners[m.pattern().as_usize()];
                }
            }
            _ => {}
        }
        mask
    }

    /// Replaces the secrets in `text` with [`MARKER`]; returns how many. Allocates only when
    /// something is replaced.
    pub fn redact(&self, text: &mut String) -> usize {
        let mask = self.triggered(text);
        if mask == 0 {
            return 0;
        }
        let mut n = 0;
        for (i, p) in self.inner.patterns.iter().enumerate() {
            if mask & (1 << i) != 0 {
                n += apply(p, text);
            }
        }
        n
    }

    /// Whether [`Redactor::redact`] would replace something in `text` (no allocation unless a
    /// candidate needs a closer look).
    pub fn would_redact(&self, text: &str) -> bool {
        let mask = self.triggered(text);
        if mask == 0 {
            return false;
        }
        self.inner
            .patterns
            .iter()
            .enumerate()
            .any(|(i, p)| mask & (1 << i) != 0 && first_target(p, text).is_some())
    }

    /// Whether a field named `key` holds a secret (`password`, `db_password`, `apiKey`,
    /// `Authorization`, `set-cookie`; not `tokenizer` or `passwords_changed`).
    pub fn is_secret_key(&self, key: &str) -> bool {
        self.inner.enabled
            && self
                .inner
                .key_triggers
                .as_ref()
                .is_some_and(|ac| ac.is_match(key))
            && secret_key(key)
    }

    /// Redacts a record in place: message, joined lines and fields. Returns how many values
    /// were replaced.
    pub fn redact_record(&self, rec: &mut Record) -> usize {
        if !self.inner.enabled {
            return 0;
        }
        let mut n = self.redact(&mut rec.message);
        if !rec.continuation.is_empty() {
            // A key block opened in the message goes on in the joined lines.
            if self.opens_key_block(&rec.message)
                && let Some(p) = &self.inner.pem_rest
            {
                n += apply(p, &mut rec.continuation);
            }
            n += self.redact(&mut rec.continuation);
        }
        for (k, v) in &mut rec.fields {
            n += self.redact_value(self.is_secret_key(k), v, 0);
        }
        n
    }

    /// `rec` with its secrets redacted, and how many there were; borrowed (no allocation)
    /// when it has none.
    pub fn redacted<'a>(&self, rec: &'a Record) -> (Cow<'a, Record>, usize) {
        if !self.record_needs(rec) {
            return (Cow::Borrowed(rec), 0);
        }
        let mut owned = rec.clone();
        match self.redact_record(&mut owned) {
            0 => (Cow::Borrowed(rec), 0),
            n => (Cow::Owned(owned), n),
        }
    }

    fn record_needs(&self, rec: &Record) -> bool {
        if !self.inner.enabled {
            return false;
        }
        self.would_redact(&rec.message)
            || (!rec.continuation.is_empty()
                && (self.would_redact(&rec.continuation) || self.opens_key_block(&rec.message)))
            || rec
                .fields
                .iter()
                .any(|(k, v)| self.value_needs(self.is_secret_key(k), v, 0))
    }

    /// Whether `message` starts a private key block it does not end.
    fn opens_key_block(&self, message: &str) -> bool {
        if memchr::memmem::find(message.as_bytes(), b"PRIVATE KEY-----").is_none() {
            return false;
        }
        let (Some(begin), Some(end)) = (&self.inner.pem_begin, &self.inner.pem_end) else {
            return false;
        };
        let Some(last) = begin.find_iter(message).last() else {
            return false;
        };
        !end.is_match(&message[last.end()..])
    }

    fn value_needs(&self, secret: bool, v: &Value, depth: usize) -> bool {
        match v {
            Value::String(s) => {
                if secret {
                    !s.is_empty() && s != MARKER
                } else {
                    self.would_redact(s)
                }
            }
            Value::Array(items) => {
                depth >= MAX_VALUE_DEPTH
                    || items.iter().any(|x| self.value_needs(secret, x, depth + 1))
            }
            Value::Object(map) => {
                depth >= MAX_VALUE_DEPTH
                    || map.iter().any(|(k, x)| {
                        self.value_needs(secret || self.is_secret_key(k), x, depth + 1)
                    })
            }
            _ => false,
        }
    }

    fn redact_value(&self, secret: bool, v: &mut Value, depth: usize) -> usize {
        match v {
            Value::String(s) => {
                if secret {
                    if s.is_empty() || s == MARKER {
                        0
                    } else {
                        *s = MARKER.to_string();
                        1
                    }
                } else {
                    self.redact(s)
                }
            }
            Value::Array(_) | Value::Object(_) if depth >= MAX_VALUE_DEPTH => {
                // Too deep to follow safely; it may hide a secret, so it goes whole.
                *v = Value::String(MARKER.to_string());
                1
            }
            Value::Array(items) => items
                .iter_mut()
                .map(|x| self.redact_value(secret, x, depth + 1))
                .sum(),
            Value::Object(map) => map
                .iter_mut()
                .map(|(k, x)| self.redact_value(secret || self.is_secret_key(k), x, depth + 1))
                .sum(),
            _ => 0,
        }
    }
}

/// The part of a match to replace, if the match is one to redact.
fn target<'h>(p: &Pattern, caps: &Captures<'h>) -> Option<regex::Match<'h>> {
    let m = match p.kind {
        Kind::Value => {
            if caps.len() > 1 {
                (1..caps.len()).find_map(|i| caps.get(i))?
            } else {
                caps.get(0)?
            }
        }
        Kind::KeyValue => {
            let key = caps.name("key")?;
            if !secret_key_last(key.as_str()) || ends_with_authorization(key.as_str()) {
                return None;
            }
            ["v1", "v2", "v3", "v4"].iter().find_map(|g| caps.name(g))?
        }
        Kind::Bearer => {
            let m = caps.get(1)?;
            looks_like_token(m.as_str()).then_some(m)?
        }
    };
    (!m.is_empty() && m.as_str() != MARKER).then_some(m)
}

/// The next target of `p` in `text` at or after `at`, and where to look for the one after.
///
/// A match that is not redacted does not consume its text: `msg="{\"password\":\"x\"}"`
/// is first matched as key `msg`, rejected, and searched again just past that key.
fn next_target(p: &Pattern, text: &str, mut at: usize) -> Option<(Range<usize>, usize)> {
    while at <= text.len() {
        let caps = p.regex.captures_at(text, at)?;
        let whole = caps.get(0)?;
        if let Some(m) = target(p, &caps) {
            return Some((m.range(), whole.end().max(m.end())));
        }
        at = match (p.kind, caps.name("key")) {
            (Kind::KeyValue, Some(key)) if key.end() > at => key.end(),
            _ => {
                whole.start()
                    + text[whole.start()..]
                        .chars()
                        .next()
                        .map_or(1, char::len_utf8)
            }
        };
    }
    None
}

fn first_target(p: &Pattern, text: &str) -> Option<()> {
    if !p.regex.is_match(text) {
        return None;
    }
    next_target(p, text, 0).map(|_| ())
}

/// Replaces every target of `p` in `text`; returns how many.
fn apply(p: &Pattern, text: &mut String) -> usize {
    if !p.regex.is_match(text) {
        return 0;
    }
    let mut out = String::new();
    let mut last = 0;
    let mut at = 0;
    let mut n = 0;
    while let Some((m, next)) = next_target(p, text, at) {
        if n == 0 {
            out.reserve(text.len());
        }
        out.push_str(&text[last..m.start]);
        out.push_str(MARKER);
        last = m.end;
        at = next;
        n += 1;
    }
    if n > 0 {
        out.push_str(&text[last..]);
        *text = out;
    }
    n
}

/// `Authorization` is its own pattern, which keeps the scheme; the key/value pattern would
/// take the scheme for the value.
fn ends_with_authorization(key: &str) -> bool {
    key.len() >= 13
        && key.is_char_boundary(key.len() - 13)
        && key[key.len() - 13..].eq_ignore_ascii_case("authorization")
}

/// A bearer token, not a word: `Bearer authentication failed` is prose.
fn looks_like_token(s: &str) -> bool {
    s.len() >= 8
        && (s.len() >= 24
            || s.bytes()
                .any(|b| b.is_ascii_digit() || b"._~+/=-".contains(&b)))
}

/// Whether a key names a secret: one of its parts (split at `_`, `-`, `.`, other punctuation
/// and camelCase humps) is a [`SECRET_WORDS`] word, or two consecutive parts a
/// [`SECRET_PAIRS`] pair. No allocation.
fn secret_key(key: &str) -> bool {
    let mut prev: Option<&str> = None;
    KeyParts::new(key).any(|part| {
        let hit = names_secret(prev, part);
        prev = Some(part);
        hit
    })
}

/// Like [`secret_key`], but only the key's last part counts: in free text, `token_count: 512`
/// and `password_length=12` are figures about secrets, not secrets.
fn secret_key_last(key: &str) -> bool {
    let mut prev: Option<&str> = None;
    let mut last = None;
    for part in KeyParts::new(key) {
        last = Some((prev, part));
        prev = Some(part);
    }
    last.is_some_and(|(prev, part)| names_secret(prev, part))
}

fn names_secret(prev: Option<&str>, part: &str) -> bool {
    SECRET_WORDS.iter().any(|w| part.eq_ignore_ascii_case(w))
        || prev.is_some_and(|p| {
            SECRET_PAIRS
                .iter()
                .any(|(a, b)| p.eq_ignore_ascii_case(a) && part.eq_ignore_ascii_case(b))
        })
}

/// The parts of a key: runs of ASCII letters and digits, split at camelCase humps
/// (`dbPassword` → `db`, `Password`; `AWSSecretKey` → `AWS`, `Secret`, `Key`).
struct KeyParts<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> KeyParts<'a> {
    fn new(s: &'a str) -> Self {
        KeyParts { s, at: 0 }
    }
}

impl<'a> Iterator for KeyParts<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let b = self.s.as_bytes();
        while self.at < b.len() && !b[self.at].is_ascii_alphanumeric() {
            self.at += 1;
        }
        if self.at >= b.len() {
            return None;
        }
        let start = self.at;
        let mut i = start + 1;
        while i < b.len() && b[i].is_ascii_alphanumeric() {
            let (p, c) = (b[i - 1], b[i]);
            let hump = (p.is_ascii_lowercase() || p.is_ascii_digit()) && c.is_ascii_uppercase();
            let acronym_end = p.is_ascii_uppercase()
                && c.is_ascii_uppercase()
                && b.get(i + 1).is_some_and(u8::is_ascii_lowercase);
            if hump || acronym_end {
                break;
            }
            i += 1;
        }
        self.at = i;
        // Parts are ASCII, so these are char boundaries.
        self.s.get(start..i)
    }
}

#[cfg(test)]
mod tests;
