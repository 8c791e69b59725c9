//! Log rules: YAML-defined matches over records, optionally counted in a time window.
//!
//! A [`RuleFile`] is what users write; [`RuleSet::load`] reads the built-in pack and rule files
//! the one way the agent, `inspect` and `config check` share; [`RuleSet::compile`] validates
//! every rule (regexes, CEL conditions within [`MAX_CONDITION_BYTES`] and the other bounds,
//! windows) and builds the prefilters; [`RuleSet::evaluate`] runs per record.
//!
//! The cost per record grows far slower than the number of rules: every message regex is
//! reduced to literals that any match must contain ([`crate::literals`]), and those literals
//! and all keywords run as one Aho-Corasick automaton over the message. Only the rules it
//! names (plus rules with no message predicate) are looked at; a regex with no usable literal
//! runs in one shared [`RegexSet`]. Template predicates
//! are cached per template and generation. CEL conditions run last, only on survivors.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use opsloop_core::Level;
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::miner::TemplateId;
use crate::parse::Record;

/// How serious a rule's finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs a look soon.
    #[serde(alias = "warn")]
    Warning,
    /// Something failed.
    Error,
    /// Act now.
    #[serde(alias = "crit")]
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Ok(Severity::Info),
            "warning" | "warn" => Ok(Severity::Warning),
            "error" => Ok(Severity::Error),
            "critical" | "crit" => Ok(Severity::Critical),
            _ => Err(format!(
                "unknown severity {s:?} (expected info, warning, error or critical)"
            )),
        }
    }
}

/// A rule file: `rules:` followed by a list of [`RuleSpec`]s.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The rules.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// One rule as written in YAML.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique id (`[a-z0-9._-]+`).
    pub id: String,
    /// What the rule finds, for people.
    #[serde(default)]
    pub description: String,
    /// How serious a hit is.
    pub severity: Severity,
    /// Free-form labels carried into hits and events.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// What a record must satisfy; every given predicate must hold.
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    /// Fire only when this many matches fall within a time window.
    #[serde(default)]
    pub window: Option<WindowSpec>,
}

/// The predicates of a rule. All that are given must hold.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// A regex over the message (or over `field`, when given).
    #[serde(default)]
    pub regex: Option<String>,
    /// The field `regex` applies to instead of the message.
    #[serde(default)]
    pub field: Option<String>,
    /// Any of these words in the message (ASCII case-insensitive).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The record's template id.
    #[serde(default)]
    pub template_id: Option<String>,
    /// A template pattern, `<*>` for any run of text (`Failed password for <*> from <*>`).
    #[serde(default)]
    pub template: Option<String>,
    /// The record's level is at least this.
    #[serde(default)]
    pub level: Option<Level>,
    /// A CEL expression over `message`, `level`, `fields`, `template`, `template_id`.
    #[serde(default)]
    pub condition: Option<String>,
}

/// A window: `count` matches within `within`, counted per value of `group_by`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WindowSpec {
    /// The short form: `count >= 5 within 1m [by FIELD]`.
    Text(String),
    /// The long form.
    Full {
        /// Matches needed.
        count: u32,
        /// Window length (`30s`, `1m`, `1h`).
        within: String,
        /// Field whose value separates counts (`client`, or `fields.client`).
        #[serde(default)]
        group_by: Option<String>,
    },
}

/// Why rules could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The YAML is malformed or has unknown keys.
    #[error("{path}: {message}")]
    Yaml {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A rule is invalid.
    #[error("{path}{}: rules[{index}] (id {id:?}): {field}: {message}", line_suffix(*.line))]
    Invalid {
        /// The file.
        path: String,
        /// The 1-based line the rule starts on, when the loader had the file's text.
        line: Option<u64>,
        /// The rule's position in the file.
        index: usize,
        /// The rule's id.
        id: String,
        /// The field at fault (`match.regex`).
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn line_suffix(line: Option<u64>) -> String {
    line.map_or_else(String::new, |l| format!(":{l}"))
}

/// The built-in rule pack (disabled with `--no-builtin-rules`).
pub const BUILTIN_RULES: &str = include_str!("builtin_rules.yaml");

/// Parses a rule file's text; `path` names it in errors. A YAML error names the rule it is in
/// when that can be told (`rules[1] (id "x"): unknown variant `bogus`...`).
pub fn parse_rule_file(path: &str, text: &str) -> Result<RuleFile, RuleError> {
    serde_saphyr::from_str::<RuleFile>(text).map_err(|e| {
        let rule = e.location().and_then(|at| rule_at_line(text, at.line()));
        let message = match rule {
            Some((index, Some(id))) => format!("rules[{index}] (id {id:?}): {e}"),
            Some((index, None)) => format!("rules[{index}]: {e}"),
            None => e.to_string(),
        };
        RuleError::Yaml {
            path: path.to_string(),
            message,
        }
    })
}

/// Where each rule of a rule file starts, and its id: read leniently (other keys and their
/// values are not looked at), so it works on files the strict parse rejects.
fn rule_heads(text: &str) -> Option<Vec<(u64, Option<String>)>> {
    #[derive(Deserialize)]
    struct Heads {
        #[serde(default)]
        rules: Vec<serde_saphyr::Spanned<Head>>,
    }
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        id: Option<String>,
    }
    let heads: Heads = serde_saphyr::from_str(text).ok()?;
    Some(
        heads
            .rules
            .into_iter()
            .map(|h| (h.referenced.line(), h.value.id))
            .collect(),
    )
}

/// The rule (index, id) whose text contains `line`.
fn rule_at_line(text: &str, line: u64) -> Option<(usize, Option<String>)> {
    let heads = rule_heads(text)?;
    let index = heads.iter().rposition(|(l, _)| *l > 0 && *l <= line)?;
    heads.into_iter().nth(index).map(|(_, id)| (index, id))
}

/// Reads a rule file, or every `*.yaml`/`*.yml` in a directory (sorted by name): (name, text).
fn read_rule_texts(path: &Path) -> Result<Vec<(String, String)>, RuleError> {
    let io = |source| RuleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut texts = Vec::new();
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        entries.sort();
        for p in entries {
            let text = std::fs::read_to_string(&p).map_err(|source| RuleError::Io {
                path: p.clone(),
                source,
            })?;
            texts.push((p.display().to_string(), text));
        }
    } else {
        let text = std::fs::read_to_string(path).map_err(io)?;
        texts.push((path.display().to_string(), text));
    }
    Ok(texts)
}

/// Loads rules from a file or every `*.yaml`/`*.yml` in a directory (sorted by name).
pub fn load_rules(path: &Path) -> Result<Vec<(String, RuleFile)>, RuleError> {
    read_rule_texts(path)?
        .into_iter()
        .map(|(name, text)| {
            let file = parse_rule_file(&name, &text)?;
            Ok((name, file))
        })
        .collect()
}

/// A compiled window.
#[derive(Clone, Debug)]
struct Window {
    count: u32,
    within_ms: i64,
    group_by: Option<String>,
}

fn parse_window(spec: &WindowSpec) -> Result<Window, String> {
    let (count, within, group_by) = match spec {
        WindowSpec::Full {
            count,
            within,
            group_by,
        } => (*count, within.clone(), group_by.clone()),
        WindowSpec::Text(text) => {
            let words: Vec<&str> = text.split_whitespace().collect();
            match words.as_slice() {
                ["count", ">=", n, "within", d, rest @ ..] => {
                    let n = n.parse::<u32>().map_err(|_| format!("bad count {n:?}"))?;
                    let group = match rest {
                        [] => None,
                        ["by", field] => Some((*field).to_string()),
                        _ => {
                            return Err(format!(
                                "expected `by FIELD` after the duration in {text:?}"
                            ));
                        }
                    };
                    (n, (*d).to_string(), group)
                }
                _ => {
                    return Err(format!(
                        "expected `count >= N within DURATION [by FIELD]`, got {text:?}"
                    ));
                }
            }
        }
    };
    if count == 0 {
        return Err("count must be at least 1".into());
    }
    if count > MAX_WINDOW_COUNT {
        return Err(format!(
            "count {count} is too high; at most {MAX_WINDOW_COUNT} is allowed"
        ));
    }
    let within_ms = i64::try_from(parse_duration(&within)?.as_millis())
        .map_err(|_| format!("window {within:?} is too long"))?;
    if within_ms <= 0 {
        return Err("window must be longer than zero".into());
    }
    let group_by = group_by.map(|g| g.strip_prefix("fields.").unwrap_or(&g).to_string());
    Ok(Window {
        count,
        within_ms,
        group_by,
    })
}

pub use opsloop_core::time::parse_duration;

/// Longest condition accepted, in bytes. Conditions are a line or two; the bound keeps the CEL
/// parser's work small, and its error positions too (a syntax error past column 65,535 made
/// `cel` panic while formatting the message).
pub const MAX_CONDITION_BYTES: usize = 4096;
/// Deepest nesting of `(`, `[` and `{` accepted. The CEL parser recurses through a dozen
/// grammar rules per level: in a debug build a level takes about 170 KiB of stack, and 11
/// levels overflowed a 2 MiB thread.
pub const MAX_CONDITION_NESTING: usize = 8;
/// Most operator tokens accepted (binary operators, `-`, `.`, `[`, `?` and `in`; not `!`).
/// Arithmetic, comparison and member chains are left-deep trees however they are written.
pub const MAX_CONDITION_OPERATORS: usize = 200;
/// Deepest expression tree accepted. Evaluation recurses once per level (about 40 KiB each in
/// a debug build: 55 levels overflowed a 2 MiB thread); `&&` and `||` chains are balanced by
/// the parser and stay shallow.
pub const MAX_CONDITION_DEPTH: usize = 32;
/// Stack of the thread conditions are compiled on: the bounds keep a compile within a 2 MiB
/// stack, and this is the margin should they ever miss a case (the parser's own recursion
/// limit is reached within 16 MiB).
const COMPILE_STACK: usize = 64 << 20;

/// Nesting and operator count of a condition, read the way the CEL lexer reads it: string
/// literals (with escapes, raw and triple-quoted forms) and `//` comments do not count.
fn condition_shape(expr: &str) -> (usize, usize) {
    let b = expr.as_bytes();
    let (mut i, mut depth, mut nesting, mut ops) = (0, 0usize, 0usize, 0usize);
    // Whether the identifier just before a quote makes the string raw (`r"..."`, `br'...'`).
    let mut raw_prefix = false;
    while i < b.len() {
        let c = b[i];
        let after_ident = std::mem::take(&mut raw_prefix);
        match c {
            b'"' | b'\'' => {
                // An unterminated or malformed string is a lexer error: the quote is skipped
                // and what follows is read as code, as the CEL lexer does.
                i = string_end(b, i, after_ident).unwrap_or(i + 1);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                nesting = nesting.max(depth);
                if c == b'[' {
                    ops += 1;
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'<' | b'>' | b'=' | b'!' => {
                if b.get(i + 1) == Some(&b'=') {
                    ops += 1;
                    i += 2;
                    continue;
                }
                // A lone `!` is unary; the parser folds chains of it.
                if c != b'!' {
                    ops += 1;
                }
            }
            b'&' | b'|' => {
                ops += 1;
                if b.get(i + 1) == Some(&c) {
                    i += 2;
                    continue;
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'?' | b'.' => ops += 1,
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &b[start..i];
                if word == b"in" {
                    ops += 1;
                }
                raw_prefix = matches!(word, b"r" | b"R" | b"br" | b"bR" | b"Br" | b"BR");
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    (nesting, ops)
}

/// The index just past the string literal starting at `b[i]` (a quote), or `None` when the
/// CEL lexer would not accept one there.
fn string_end(b: &[u8], i: usize, raw: bool) -> Option<usize> {
    let q = b[i];
    if b.get(i + 1) == Some(&q)
        && b.get(i + 2) == Some(&q)
        && let Some(end) = scan_string(b, i + 3, q, true, raw)
    {
        return Some(end);
    }
    scan_string(b, i + 1, q, false, raw)
}

fn scan_string(b: &[u8], mut j: usize, q: u8, triple: bool, raw: bool) -> Option<usize> {
    while j < b.len() {
        let c = b[j];
        if triple {
            if c == q && b.get(j + 1) == Some(&q) && b.get(j + 2) == Some(&q) {
                return Some(j + 3);
            }
        } else if c == q {
            return Some(j + 1);
        } else if c == b'\n' || c == b'\r' {
            return None;
        }
        if c == b'\\' && !raw {
            j += escape_len(&b[j..])?;
            continue;
        }
        j += 1;
    }
    None
}

/// Length of the escape sequence `s` starts with (`s[0]` is a backslash), if CEL has it.
fn escape_len(s: &[u8]) -> Option<usize> {
    let digits = |n: usize, ok: fn(&u8) -> bool| s.get(2..2 + n).is_some_and(|d| d.iter().all(ok));
    match s.get(1)? {
        b'a' | b'b' | b'f' | b'n' | b'r' | b't' | b'v' | b'"' | b'\'' | b'\\' | b'?' | b'`' => {
            Some(2)
        }
        b'x' | b'X' if digits(2, u8::is_ascii_hexdigit) => Some(4),
        b'u' if digits(4, u8::is_ascii_hexdigit) => Some(6),
        b'U' if digits(8, u8::is_ascii_hexdigit) => Some(10),
        b'0'..=b'3' if digits(2, |d| (b'0'..=b'7').contains(d)) => Some(4),
        _ => None,
    }
}

/// Depth of an expression tree, walked without recursion (the tree may be deep).
fn expr_depth(root: &cel::IdedExpr) -> usize {
    use cel::common::ast::{EntryExpr, Expr};
    let mut max = 0;
    let mut stack = vec![(root, 1usize)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        match &e.expr {
            Expr::Call(c) => {
                stack.extend(c.target.iter().map(|t| (&**t, d + 1)));
                stack.extend(c.args.iter().map(|a| (a, d + 1)));
            }
            Expr::Comprehension(c) => {
                for x in [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ] {
                    stack.push((x, d + 1));
                }
            }
            Expr::List(l) => stack.extend(l.elements.iter().map(|x| (x, d + 1))),
            Expr::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            stack.push((&me.key, d + 1));
                            stack.push((&me.value, d + 1));
                        }
                        EntryExpr::StructField(f) => stack.push((&f.value, d + 1)),
                    }
                }
            }
            Expr::Struct(st) => {
                for entry in &st.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            stack.push((&me.key, d + 1));
                            stack.push((&me.value, d + 1));
                        }
                        EntryExpr::StructField(f) => stack.push((&f.value, d + 1)),
                    }
                }
            }
            Expr::Select(sel) => stack.push((&sel.operand, d + 1)),
            Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => {}
        }
    }
    max
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}

/// Checks a condition against the bounds above, compiles it (a panic in the compiler becomes
/// an error) and checks the tree's depth. Within the bounds this runs on a 2 MiB stack.
fn compile_bounded(expr: &str) -> Result<cel::Program, String> {
    if expr.len() > MAX_CONDITION_BYTES {
        return Err(format!(
            "condition is {} bytes long; at most {MAX_CONDITION_BYTES} are allowed",
            expr.len()
        ));
    }
    let (nesting, ops) = condition_shape(expr);
    if nesting > MAX_CONDITION_NESTING {
        return Err(format!(
            "condition nests brackets {nesting} deep; at most {MAX_CONDITION_NESTING} are allowed"
        ));
    }
    if ops > MAX_CONDITION_OPERATORS {
        return Err(format!(
            "condition has {ops} operators; at most {MAX_CONDITION_OPERATORS} are allowed"
        ));
    }
    let program =
        std::panic::catch_unwind(|| cel::Program::compile(expr).map_err(|e| e.to_string()))
            .map_err(|p| format!("the CEL compiler failed: {}", panic_message(&*p)))??;
    let depth = expr_depth(program.expression());
    if depth > MAX_CONDITION_DEPTH {
        return Err(format!(
            "condition is {depth} levels deep; at most {MAX_CONDITION_DEPTH} are allowed \
             (split long arithmetic or comparison chains)"
        ));
    }
    Ok(program)
}

/// Compiles a rule condition within the bounds above; the error names the bound exceeded.
pub fn compile_condition(expr: &str) -> Result<cel::Program, String> {
    let owned = expr.to_string();
    let spawned = std::thread::Builder::new()
        .name("cel-compile".into())
        .stack_size(COMPILE_STACK)
        .spawn(move || compile_bounded(&owned));
    match spawned {
        Ok(handle) => handle
            .join()
            .unwrap_or_else(|_| Err("the CEL compiler failed".into())),
        // No thread to be had: the bounds still hold here.
        Err(_) => compile_bounded(expr),
    }
}

/// A rule, compiled.
pub struct Rule {
    /// The rule as written.
    pub spec: RuleSpec,
    /// The file it came from.
    pub source: String,
    field_regex: Option<Regex>,
    message_regex: Option<Regex>,
    has_message_regex: bool,
    has_keywords: bool,
    template_id: Option<TemplateId>,
    template: Option<Regex>,
    condition: Option<cel::Program>,
    window: Option<Window>,
}

/// One rule firing on one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleHit {
    /// Index of the rule in the set.
    pub rule: usize,
}

/// What a record looks like to the rules, besides the record itself.
pub struct RuleContext<'a> {
    /// The record's template id.
    pub template_id: TemplateId,
    /// The template's index in the miner and its generation, the cache key.
    pub template_key: (u32, u32),
    /// The template text.
    pub template: &'a str,
    /// The record's time for windows; `None` uses the wall clock (read only if needed).
    pub timestamp: Option<i64>,
}

/// What a prefilter literal stands for.
#[derive(Clone, Copy, Debug)]
enum LiteralOwner {
    /// A literal every match of the rule's message regex contains.
    Regex(usize),
    /// One of the rule's keywords.
    Keyword(usize),
}

/// A compiled set of rules.
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Message regexes with no usable literal: run together on every record.
    always_set: Option<RegexSet>,
    always_owner: Vec<usize>,
    /// All literals: regex prefilter literals and keywords, ASCII case-insensitive, each once.
    literals: Option<AhoCorasick>,
    /// Per literal, the rules' predicates it stands for.
    literal_owner: Vec<Vec<LiteralOwner>>,
    /// Per literal, the other literals it contains.
    implied: Vec<Vec<usize>>,
    lower: Vec<u8>,
    unfiltered: Vec<usize>,
    template_cache: FxHashMap<(u32, u32, usize), bool>,
    windows: Vec<FxHashMap<String, VecDeque<i64>>>,
    cel_base: cel::Context<'static, 'static>,
    regex_hits: Vec<u32>,
    keyword_hits: Vec<u32>,
    literal_seen: Vec<u32>,
    candidates: Vec<usize>,
    stamp: u32,
    /// CEL evaluation errors per rule (a missing field is not an error: it is false).
    pub condition_errors: Vec<u64>,
    /// Rules whose condition panicked once: it is not evaluated again (false).
    condition_panicked: Vec<bool>,
}

/// The most groups one windowed rule keeps; the groups matched least recently go past this.
const MAX_WINDOW_GROUPS: usize = 10_000;
/// Timestamps one windowed rule keeps at most, over all its groups: a rule counting to a high
/// `count` keeps fewer groups (at least [`MIN_WINDOW_GROUPS`]).
const MAX_WINDOW_TIMESTAMPS: usize = 1_000_000;
const MIN_WINDOW_GROUPS: usize = 16;
/// The highest window `count`.
pub const MAX_WINDOW_COUNT: u32 = 100_000;
/// Bytes of a group's value kept as its key; longer values share their first bytes' count.
const MAX_GROUP_KEY: usize = 256;
/// Most rules in a set.
pub const MAX_RULES: usize = 10_000;
/// Most keywords in a rule, and the longest keyword.
pub const MAX_KEYWORDS: usize = 1_000;
const MAX_KEYWORD_BYTES: usize = 1_024;
/// Most distinct prefilter literals (keywords and regex literals) in a set.
pub const MAX_LITERALS: usize = 20_000;

impl RuleSet {
    /// Loads and compiles the rules the agent, `inspect` and `config check` use: the built-in
    /// pack when `builtin`, then each path (a rule file, or a directory of them, see
    /// [`load_rules`]). Errors name the file, and the rule and its line when they are about one.
    pub fn load(builtin: bool, paths: &[PathBuf]) -> Result<RuleSet, RuleError> {
        let mut texts = Vec::new();
        if builtin {
            texts.push(("builtin".to_string(), BUILTIN_RULES.to_string()));
        }
        for p in paths {
            texts.extend(read_rule_texts(p)?);
        }
        let files = texts
            .iter()
            .map(|(name, text)| Ok((name.clone(), parse_rule_file(name, text)?)))
            .collect::<Result<Vec<_>, RuleError>>()?;
        RuleSet::compile(&files).map_err(|mut e| {
            if let RuleError::Invalid {
                path, line, index, ..
            } = &mut e
                && let Some((_, text)) = texts.iter().find(|(name, _)| name == path)
            {
                *line = rule_heads(text)
                    .and_then(|heads| heads.get(*index).map(|h| h.0))
                    .filter(|&l| l > 0);
            }
            e
        })
    }

    /// Compiles `files` (file name, parsed file). Ids must be unique across all files.
    pub fn compile(files: &[(String, RuleFile)]) -> Result<RuleSet, RuleError> {
        let mut rules = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut always_patterns = Vec::new();
        let mut always_owner = Vec::new();
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut literal_owner = Vec::new();
        let mut unfiltered = Vec::new();
        for (path, file) in files {
            for (index, spec) in file.rules.iter().enumerate() {
                let invalid = |field: &'static str, message: String| RuleError::Invalid {
                    path: path.clone(),
                    line: None,
                    index,
                    id: spec.id.clone(),
                    field,
                    message,
                };
                if rules.len() >= MAX_RULES {
                    return Err(invalid("id", format!("more than {MAX_RULES} rules in all")));
                }
                if spec.id.is_empty()
                    || !spec
                        .id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                {
                    return Err(invalid("id", "must be non-empty [A-Za-z0-9._-]".into()));
                }
                if !seen.insert(spec.id.clone()) {
                    return Err(invalid("id", "duplicate rule id".into()));
                }
                let m = &spec.matcher;
                let rule_index = rules.len();
                let mut field_regex = None;
                let mut message_regex = None;
                let mut has_message_regex = false;
                if let Some(re) = &m.regex {
                    let compiled = RegexBuilder::new(re)
                        .size_limit(2 << 20)
                        .build()
                        .map_err(|e| invalid("match.regex", e.to_string()))?;
                    if m.field.is_some() {
                        field_regex = Some(compiled);
                    } else {
                        match crate::literals::required_literals(re) {
                            Some(lits) => {
                                for lit in lits {
                                    literals.push(lit);
                                    literal_owner.push(LiteralOwner::Regex(rule_index));
                                }
                            }
                            None => {
                                always_patterns.push(re.clone());
                                always_owner.push(rule_index);
                            }
                        }
                        message_regex = Some(compiled);
                        has_message_regex = true;
                    }
                } else if m.field.is_some() {
                    return Err(invalid("match.field", "needs match.regex".into()));
                }
                if m.keywords.len() > MAX_KEYWORDS {
                    return Err(invalid(
                        "match.keywords",
                        format!(
                            "{} keywords; at most {MAX_KEYWORDS} are allowed",
                            m.keywords.len()
                        ),
                    ));
                }
                for k in &m.keywords {
                    if k.is_empty() {
                        return Err(invalid("match.keywords", "empty keyword".into()));
                    }
                    if k.len() > MAX_KEYWORD_BYTES {
                        return Err(invalid(
                            "match.keywords",
                            format!("a keyword is longer than {MAX_KEYWORD_BYTES} bytes"),
                        ));
                    }
                    literals.push(k.as_bytes().to_vec());
                    literal_owner.push(LiteralOwner::Keyword(rule_index));
                }
                let template_id = match &m.template_id {
                    Some(t) => Some(t.parse::<TemplateId>().map_err(|_| {
                        invalid(
                            "match.template_id",
                            format!("{t:?} is not a template id (16 hex digits)"),
                        )
                    })?),
                    None => None,
                };
                let template = match &m.template {
                    Some(t) => Some(template_regex(t).map_err(|e| invalid("match.template", e))?),
                    None => None,
                };
                let condition = match &m.condition {
                    Some(c) => {
                        Some(compile_condition(c).map_err(|e| invalid("match.condition", e))?)
                    }
                    None => None,
                };
                let window = match &spec.window {
                    Some(w) => Some(parse_window(w).map_err(|e| invalid("window", e))?),
                    None => None,
                };
                let has_keywords = !m.keywords.is_empty();
                if !has_message_regex && !has_keywords {
                    unfiltered.push(rule_index);
                }
                if m.regex.is_none()
                    && !has_keywords
                    && template_id.is_none()
                    && template.is_none()
                    && m.level.is_none()
                    && condition.is_none()
                {
                    return Err(invalid("match", "needs at least one predicate".into()));
                }
                rules.push(Rule {
                    spec: spec.clone(),
                    source: path.clone(),
                    field_regex,
                    message_regex,
                    has_message_regex,
                    has_keywords,
                    template_id,
                    template,
                    condition,
                    window,
                });
            }
        }
        let always_set = if always_patterns.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(&always_patterns)
                    .size_limit(64 << 20)
                    .build()
                    .map_err(|e| RuleError::Yaml {
                        path: "rules".into(),
                        message: e.to_string(),
                    })?,
            )
        };
        // One automaton pattern per distinct literal, standing for every predicate that has it.
        let mut index: FxHashMap<Vec<u8>, usize> = FxHashMap::default();
        let mut distinct: Vec<Vec<u8>> = Vec::new();
        let mut owners: Vec<Vec<LiteralOwner>> = Vec::new();
        for (mut l, owner) in literals.into_iter().zip(literal_owner) {
            l.make_ascii_lowercase();
            let i = *index.entry(l.clone()).or_insert_with(|| {
                distinct.push(l);
                owners.push(Vec::new());
                distinct.len() - 1
            });
            owners[i].push(owner);
        }
        if distinct.len() > MAX_LITERALS {
            return Err(RuleError::Yaml {
                path: "rules".into(),
                message: format!(
                    "{} distinct keywords and regex literals; at most {MAX_LITERALS} are allowed",
                    distinct.len()
                ),
            });
        }
        let build_error = |e: aho_corasick::BuildError| RuleError::Yaml {
            path: "rules".into(),
            message: e.to_string(),
        };
        // For each literal, the other literals inside it: found whenever it is. An overlapping
        // search of each literal finds them in linear time, where comparing every pair would
        // take quadratic time in the number of literals.
        let mut implied: Vec<Vec<usize>> = vec![Vec::new(); distinct.len()];
        if !distinct.is_empty() {
            let all = AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .build(&distinct)
                .map_err(build_error)?;
            for (i, lit) in distinct.iter().enumerate() {
                let inside = &mut implied[i];
                inside.extend(
                    all.find_overlapping_iter(lit)
                        .map(|m| m.pattern().as_usize())
                        .filter(|&j| j != i),
                );
                inside.sort_unstable();
                inside.dedup();
            }
        }
        let literal_owner = owners;
        let literals = if distinct.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&distinct)
                    .map_err(build_error)?,
            )
        };
        let n = rules.len();
        Ok(RuleSet {
            rules,
            always_set,
            always_owner,
            literals,
            literal_owner,
            implied,
            lower: Vec::new(),
            unfiltered,
            template_cache: FxHashMap::default(),
            windows: (0..n).map(|_| FxHashMap::default()).collect(),
            cel_base: cel::Context::default(),
            regex_hits: vec![0; n],
            keyword_hits: vec![0; n],
            literal_seen: vec![0; n],
            candidates: Vec::new(),
            stamp: 0,
            condition_errors: vec![0; n],
            condition_panicked: vec![false; n],
        })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Evaluates every rule against `rec`, pushing the rules that fire into `hits`.
    pub fn evaluate(&mut self, rec: &Record, ctx: &RuleContext<'_>, hits: &mut Vec<RuleHit>) {
        if self.rules.is_empty() {
            return;
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.regex_hits.iter_mut().for_each(|x| *x = 0);
            self.keyword_hits.iter_mut().for_each(|x| *x = 0);
            self.literal_seen.iter_mut().for_each(|x| *x = 0);
            self.stamp = 1;
        }
        let stamp = self.stamp;
        // Message regexes and keywords see a multi-line record whole (a stack trace's `panic:`
        // or `Caused by: ... OutOfMemoryError`); allocating only for such records.
        let text: std::borrow::Cow<'_, str> = if rec.continuation.is_empty() {
            std::borrow::Cow::Borrowed(&rec.message)
        } else {
            std::borrow::Cow::Owned(format!("{}\n{}", rec.message, rec.continuation))
        };
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        if let Some(set) = &self.always_set {
            for i in set.matches(&text).iter() {
                let r = self.always_owner[i];
                self.regex_hits[r] = stamp;
                candidates.push(r);
            }
        }
        if let Some(ac) = &self.literals {
            // Leftmost-longest search over the lowercased message, restarted one byte after
            // each match start: every position where a literal starts is visited, and literals
            // that are substrings of the one found there come from `implied`. This lets the
            // automaton use its SIMD prefilter, which an overlapping search cannot.
            self.lower.clear();
            self.lower
                .extend(text.bytes().map(|b| b.to_ascii_lowercase()));
            let mut at = 0;
            while at < self.lower.len() {
                let input = aho_corasick::Input::new(&self.lower[..]).span(at..self.lower.len());
                let Some(m) = ac.find(input) else { break };
                at = m.start() + 1;
                let p = m.pattern().as_usize();
                for &q in std::iter::once(&p).chain(&self.implied[p]) {
                    for &owner in &self.literal_owner[q] {
                        match owner {
                            LiteralOwner::Keyword(r) => {
                                if self.keyword_hits[r] != stamp {
                                    self.keyword_hits[r] = stamp;
                                    candidates.push(r);
                                }
                            }
                            LiteralOwner::Regex(r) => {
                                // The literal only says the regex may match; ask the regex, once.
                                if self.literal_seen[r] != stamp {
                                    self.literal_seen[r] = stamp;
                                    let hit = self.rules[r]
                                        .message_regex
                                        .as_ref()
                                        .is_some_and(|re| re.is_match(&text));
                                    if hit {
                                        self.regex_hits[r] = stamp;
                                        candidates.push(r);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        for &r in &candidates {
            let rule = &self.rules[r];
            if rule.has_message_regex && self.regex_hits[r] != stamp {
                continue;
            }
            if rule.has_keywords && self.keyword_hits[r] != stamp {
                continue;
            }
            if self.check_rest(r, rec, ctx) && self.window_fires(r, rec, ctx) {
                hits.push(RuleHit { rule: r });
            }
        }
        self.candidates = candidates;
        for k in 0..self.unfiltered.len() {
            let r = self.unfiltered[k];
            if self.check_rest(r, rec, ctx) && self.window_fires(r, rec, ctx) {
                hits.push(RuleHit { rule: r });
            }
        }
        hits.sort_unstable_by_key(|h| h.rule);
    }

    /// The predicates other than message regex and keywords, cheapest first.
    fn check_rest(&mut self, r: usize, rec: &Record, ctx: &RuleContext<'_>) -> bool {
        let rule = &self.rules[r];
        if let Some(min) = rule.spec.matcher.level
            && rec.level.is_none_or(|l| l < min)
        {
            return false;
        }
        if let Some(id) = rule.template_id
            && id != ctx.template_id
        {
            return false;
        }
        if let Some(re) = &rule.template {
            let key = (ctx.template_key.0, ctx.template_key.1, r);
            let ok = match self.template_cache.get(&key) {
                Some(&ok) => ok,
                None => {
                    let ok = re.is_match(ctx.template);
                    if self.template_cache.len() > 1_000_000 {
                        self.template_cache.clear();
                    }
                    self.template_cache.insert(key, ok);
                    ok
                }
            };
            if !ok {
                return false;
            }
        }
        let rule = &self.rules[r];
        if let (Some(re), Some(field)) = (&rule.field_regex, &rule.spec.matcher.field) {
            let name = field.strip_prefix("fields.").unwrap_or(field);
            let ok = match name {
                "message" => re.is_match(&rec.message),
                _ => match rec.field(name) {
                    Some(Value::String(s)) => re.is_match(s),
                    Some(other) => re.is_match(&other.to_string()),
                    None => false,
                },
            };
            if !ok {
                return false;
            }
        }
        if let Some(program) = &rule.condition {
            if self.condition_panicked[r] {
                return false;
            }
            // A panic inside `cel` must not take the agent down: the rule stops matching.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                eval_condition(&self.cel_base, program, rec, ctx)
            }));
            return match result {
                Ok(Ok(v)) => v,
                Ok(Err(missing)) => {
                    if !missing {
                        self.condition_errors[r] += 1;
                    }
                    false
                }
                Err(_) => {
                    self.condition_errors[r] += 1;
                    self.condition_panicked[r] = true;
                    false
                }
            };
        }
        true
    }

    fn window_fires(&mut self, r: usize, rec: &Record, ctx: &RuleContext<'_>) -> bool {
        let Some(w) = &self.rules[r].window else {
            return true;
        };
        let mut group = match &w.group_by {
            Some(f) => match rec.field(f) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            },
            None => String::new(),
        };
        if group.len() > MAX_GROUP_KEY {
            let mut end = MAX_GROUP_KEY;
            while !group.is_char_boundary(end) {
                end -= 1;
            }
            group.truncate(end);
        }
        let (count, within) = (w.count as usize, w.within_ms);
        // Record times come from the input (or the network): no arithmetic on them may overflow.
        let now = ctx.timestamp.unwrap_or_else(opsloop_core::time::now_ms);
        let cutoff = now.saturating_sub(within);
        let limit =
            (MAX_WINDOW_TIMESTAMPS / count.max(1)).clamp(MIN_WINDOW_GROUPS, MAX_WINDOW_GROUPS);
        let groups = &mut self.windows[r];
        if !groups.contains_key(&group) && groups.len() >= limit {
            evict_groups(groups, cutoff, limit);
        }
        let q = groups.entry(group).or_default();
        q.push_back(now);
        while q.front().is_some_and(|&t| t <= cutoff) {
            q.pop_front();
        }
        while q.len() > count {
            q.pop_front();
        }
        if q.len() >= count {
            q.clear();
            return true;
        }
        false
    }
}

/// Makes room in a full window: drops groups with no match in the window, and if that frees
/// nothing, the tenth matched least recently. One pass frees many slots, so a stream of new
/// group values costs little per record.
fn evict_groups(groups: &mut FxHashMap<String, VecDeque<i64>>, cutoff: i64, limit: usize) {
    // The last time pushed: the newest unless the input's times went backwards.
    let newest = |q: &VecDeque<i64>| q.back().copied().unwrap_or(i64::MIN);
    groups.retain(|_, q| newest(q) > cutoff);
    if groups.len() < limit {
        return;
    }
    let mut times: Vec<i64> = groups.values().map(newest).collect();
    let k = (times.len() / 10).max(1) - 1;
    let (_, &mut threshold, _) = times.select_nth_unstable(k);
    groups.retain(|_, q| newest(q) > threshold);
}

/// `Ok(bool)`, or `Err(true)` when the condition read a field the record lacks (false, not an
/// error), `Err(false)` for a real evaluation error.
fn eval_condition(
    base: &cel::Context<'static, 'static>,
    program: &cel::Program,
    rec: &Record,
    ctx: &RuleContext<'_>,
) -> Result<bool, bool> {
    let mut scope = base.new_inner_scope();
    let fields: serde_json::Map<String, Value> = rec
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let fields = cel::to_value(Value::Object(fields)).map_err(|_| false)?;
    scope.add_variable_from_value("fields", fields);
    scope.add_variable_from_value("message", rec.message.as_str());
    scope.add_variable_from_value("level", rec.level.map_or("", Level::as_str));
    scope.add_variable_from_value("template", ctx.template);
    scope.add_variable_from_value("template_id", ctx.template_id.to_string());
    match program.execute(&scope) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(_) => Err(false),
        Err(e) => {
            let text = e.to_string();
            Err(text.contains("No such key") || text.contains("no such key"))
        }
    }
}

/// Compiles a template pattern: `<*>` matches any run of characters, whitespace runs match any
/// whitespace, the rest is literal; anchored at both ends.
fn template_regex(pattern: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    for (i, part) in pattern.split("<*>").enumerate() {
        if i > 0 {
            re.push_str(".+?");
        }
        let words: Vec<String> = part.split_whitespace().map(regex::escape).collect();
        if part.starts_with(char::is_whitespace) && i > 0 {
            re.push_str(r"\s+");
        }
        re.push_str(&words.join(r"\s+"));
        if part.ends_with(char::is_whitespace) && !words.is_empty() {
            re.push_str(r"\s+");
        }
    }
    re.push('$');
    RegexBuilder::new(&re)
        .size_limit(2 << 20)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
