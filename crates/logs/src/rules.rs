//! Log rules: YAML-defined matches over records, optionally counted in a time window.
//!
//! A [`RuleFile`] is what users write; [`RuleSet::compile`] validates every rule (regexes, CEL
//! conditions, windows) and builds the prefilters; [`RuleSet::evaluate`] runs per record.
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
    Warning,
    /// Something failed.
    Error,
    /// Act now.
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
    #[error("{path}: rules[{index}] (id {id:?}): {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
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

/// The built-in rule pack (disabled with `--no-builtin-rules`).
pub const BUILTIN_RULES: &str = include_str!("builtin_rules.yaml");

/// Parses a rule file's text; `path` names it in errors.
pub fn parse_rule_file(path: &str, text: &str) -> Result<RuleFile, RuleError> {
    serde_saphyr::from_str::<RuleFile>(text).map_err(|e| RuleError::Yaml {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// Loads rules from a file or every `*.yaml`/`*.yml` in a directory (sorted by name).
pub fn load_rules(path: &Path) -> Result<Vec<(String, RuleFile)>, RuleError> {
    let io = |source| RuleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
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
            let name = p.display().to_string();
            files.push((name.clone(), parse_rule_file(&name, &text)?));
        }
    } else {
        let text = std::fs::read_to_string(path).map_err(io)?;
        let name = path.display().to_string();
        files.push((name.clone(), parse_rule_file(&name, &text)?));
    }
    Ok(files)
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
    let within_ms = parse_duration(&within)?.as_millis() as i64;
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
    /// All literals: regex prefilter literals and keywords, ASCII case-insensitive.
    literals: Option<AhoCorasick>,
    literal_owner: Vec<LiteralOwner>,
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
}

/// The most groups one windowed rule keeps; the oldest group is dropped past this.
const MAX_WINDOW_GROUPS: usize = 10_000;

impl RuleSet {
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
                    index,
                    id: spec.id.clone(),
                    field,
                    message,
                };
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
                for k in &m.keywords {
                    if k.is_empty() {
                        return Err(invalid("match.keywords", "empty keyword".into()));
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
                    Some(c) => Some(
                        cel::Program::compile(c)
                            .map_err(|e| invalid("match.condition", e.to_string()))?,
                    ),
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
        for l in &mut literals {
            l.make_ascii_lowercase();
        }
        // For each literal, the other literals inside it: found whenever it is.
        let implied: Vec<Vec<usize>> = literals
            .iter()
            .enumerate()
            .map(|(i, a)| {
                literals
                    .iter()
                    .enumerate()
                    .filter(|&(j, b)| {
                        j != i && b.len() <= a.len() && memchr::memmem::find(a, b).is_some()
                    })
                    .map(|(j, _)| j)
                    .collect()
            })
            .collect();
        let literals = if literals.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&literals)
                    .map_err(|e| RuleError::Yaml {
                        path: "rules".into(),
                        message: e.to_string(),
                    })?,
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
                    match self.literal_owner[q] {
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
            return match eval_condition(&self.cel_base, program, rec, ctx) {
                Ok(v) => v,
                Err(missing) => {
                    if !missing {
                        self.condition_errors[r] += 1;
                    }
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
        let group = match &w.group_by {
            Some(f) => match rec.field(f) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            },
            None => String::new(),
        };
        let (count, within) = (w.count as usize, w.within_ms);
        let groups = &mut self.windows[r];
        if !groups.contains_key(&group) && groups.len() >= MAX_WINDOW_GROUPS {
            // Drop the group whose newest match is oldest.
            if let Some(oldest) = groups
                .iter()
                .min_by_key(|(_, q)| q.back().copied().unwrap_or(i64::MIN))
                .map(|(k, _)| k.clone())
            {
                groups.remove(&oldest);
            }
        }
        let now = ctx.timestamp.unwrap_or_else(opsloop_core::time::now_ms);
        let q = groups.entry(group).or_default();
        q.push_back(now);
        while q.front().is_some_and(|&t| t <= now - within) {
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
    Regex::new(&re).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
