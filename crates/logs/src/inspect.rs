//! One-shot inspection of log files: [`Inspector`] runs every record through parser, multi-line
//! joiner, [`TemplateMiner`], [`RuleSet`] and [`AnomalyDetector`], and builds a [`Report`].
//!
//! Per-record assignments (`--emit assignments`) are buffered and written when the input ends
//! (or every [`ASSIGNMENT_FLUSH`] records), so each line is printed with its template as it
//! stands then, after later lines have generalised it.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Instant;

use opsloop_core::Level;
use opsloop_core::time::{CivilYear, format_rfc3339};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::analysis::Analyzer;
use crate::anomaly::{Anomaly, AnomalyConfig, AnomalyKind};
use crate::input::{DEFAULT_MAX_LINE, LineReader, Problem, ProblemKind};
use crate::joiner::{Joiner, Pushed};
use crate::miner::{MinerConfig, TemplateId, TemplateMiner};
use crate::parse::{Format, Parser, Record, detect};
use crate::rules::{RuleSet, Severity};

/// Buffered assignments are written out at least this often.
pub const ASSIGNMENT_FLUSH: usize = 4_000_000;
/// Examples kept per rule.
const RULE_EXAMPLES: usize = 3;
/// Problems kept as examples (all are counted).
pub const DEFAULT_MAX_PROBLEMS: usize = 100;
/// Anomalies kept (all are counted).
const ANOMALY_LIMIT: usize = 1000;
/// Per-template statistics kept at most.
const MAX_TEMPLATE_STATS: usize = 100_000;
/// Characters of an example message kept.
const EXAMPLE_CHARS: usize = 500;
/// Lines sampled to detect a file's format.
const DETECT_SAMPLE: usize = 32;

/// How to inspect.
#[derive(Clone, Debug)]
pub struct InspectOptions {
    /// A fixed format, or `None` to detect per file.
    pub format: Option<Format>,
    /// A regex with named groups (implies [`Format::Regex`]).
    pub pattern: Option<String>,
    /// Join stack-trace lines to their record (default: on for every format but raw).
    pub multiline: Option<bool>,
    /// Miner settings.
    pub miner: MinerConfig,
    /// Anomaly settings.
    pub anomaly: AnomalyConfig,
    /// Longest line kept whole.
    pub max_line: usize,
    /// Year for timestamps that have none (RFC 3164, klog); `None` is the current year, with
    /// times more than two days ahead moved to the year before.
    pub year: Option<i64>,
    /// Problems listed with file and line; the rest are only counted.
    pub max_problems: usize,
}

impl Default for InspectOptions {
    fn default() -> Self {
        Self {
            format: None,
            pattern: None,
            multiline: None,
            miner: MinerConfig::default(),
            anomaly: AnomalyConfig::default(),
            max_line: DEFAULT_MAX_LINE,
            year: None,
            max_problems: DEFAULT_MAX_PROBLEMS,
        }
    }
}

/// The current UTC year.
pub fn current_year() -> i64 {
    CivilYear::of(opsloop_core::time::now_ms()).year
}

/// Problems counted by kind, the first `keep` kept as examples: memory stays bounded however
/// bad the input.
#[derive(Debug)]
struct ProblemTally {
    keep: usize,
    total: u64,
    counts: BTreeMap<ProblemKind, u64>,
    examples: Vec<Problem>,
}

impl ProblemTally {
    fn new(keep: usize) -> ProblemTally {
        ProblemTally {
            keep,
            total: 0,
            counts: BTreeMap::new(),
            examples: Vec::new(),
        }
    }

    fn add(&mut self, p: Problem) {
        self.add_with(p.kind, || p);
    }

    /// Counts a problem of `kind`; builds it only when it is kept.
    fn add_with(&mut self, kind: ProblemKind, make: impl FnOnce() -> Problem) {
        self.total += 1;
        *self.counts.entry(kind).or_default() += 1;
        if self.examples.len() < self.keep {
            self.examples.push(make());
        }
    }

    /// Adds another tally's counts, and its examples while there is room.
    fn merge(&mut self, other: ProblemTally) {
        self.total += other.total;
        for (k, v) in other.counts {
            *self.counts.entry(k).or_default() += v;
        }
        let room = self.keep.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }
}

/// Where a record was seen.
#[derive(Clone, Debug, Serialize)]
pub struct Seen {
    /// The file.
    pub file: String,
    /// The 1-based line.
    pub line: u64,
    /// The record's time, RFC 3339, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

#[derive(Clone, Debug)]
struct TemplateStats {
    count: u64,
    first: (u32, u64, Option<i64>),
    last: (u32, u64, Option<i64>),
    example: String,
    created_after_warmup: bool,
}

#[derive(Clone, Debug)]
struct RuleStats {
    count: u64,
    examples: Vec<RuleExample>,
}

/// A record that made a rule fire.
#[derive(Clone, Debug, Serialize)]
pub struct RuleExample {
    /// The file.
    pub file: String,
    /// The 1-based line.
    pub line: u64,
    /// The record's time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The message (first 500 characters).
    pub message: String,
}

/// Per-file figures.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    /// The path (`-` for stdin).
    pub path: String,
    /// The format used.
    pub format: Format,
    /// Whether the format was detected (not given).
    pub detected: bool,
    /// Lines read.
    pub lines: u64,
    /// Records (lines after multi-line joining, blank lines excluded).
    pub records: u64,
    /// Blank lines (not records).
    pub blank_lines: u64,
    /// Bytes read (after decompression).
    pub bytes: u64,
    /// Problems found in this file.
    pub problems: u64,
    /// Set when the file could not be opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The inspector: feed files, then take the [`Report`].
pub struct Inspector {
    options: InspectOptions,
    analyzer: Analyzer,
    files: Vec<FileReport>,
    template_stats: FxHashMap<TemplateId, TemplateStats>,
    dropped_template_stats: u64,
    rule_stats: Vec<RuleStats>,
    levels: BTreeMap<&'static str, u64>,
    error_minutes: BTreeMap<i64, u64>,
    problems: ProblemTally,
    anomaly_list: Vec<(Anomaly, u32, u64)>,
    anomaly_counts: BTreeMap<AnomalyKind, u64>,
    records: u64,
    levels_inferred: u64,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
    started: Instant,
    assignments: Option<Box<dyn Write + Send>>,
    events: Option<Box<dyn Write + Send>>,
    pending: Vec<(u32, u64, TemplateId)>,
    fragments: FxHashMap<TemplateId, (u32, Vec<u8>)>,
    file_json: Vec<Vec<u8>>,
    event_buf: Vec<opsloop_core::Event>,
    write_error: Option<io::Error>,
    redactor: crate::redact::Redactor,
}

impl Inspector {
    /// An inspector with `options` and compiled `rules`.
    pub fn new(options: InspectOptions, rules: RuleSet) -> Self {
        let n = rules.len();
        let max_problems = options.max_problems;
        Self {
            analyzer: Analyzer::new(rules, options.miner.clone(), options.anomaly.clone()),
            options,
            files: Vec::new(),
            template_stats: FxHashMap::default(),
            dropped_template_stats: 0,
            rule_stats: vec![
                RuleStats {
                    count: 0,
                    examples: Vec::new()
                };
                n
            ],
            levels: BTreeMap::new(),
            error_minutes: BTreeMap::new(),
            problems: ProblemTally::new(max_problems),
            anomaly_list: Vec::new(),
            anomaly_counts: BTreeMap::new(),
            records: 0,
            levels_inferred: 0,
            first_ts: None,
            last_ts: None,
            started: Instant::now(),
            assignments: None,
            events: None,
            pending: Vec::new(),
            fragments: FxHashMap::default(),
            file_json: Vec::new(),
            event_buf: Vec::new(),
            write_error: None,
            redactor: crate::redact::Redactor::default(),
        }
    }

    /// Writes one JSON object per record to `out` (see the module docs for when).
    pub fn emit_assignments(&mut self, out: Box<dyn Write + Send>) {
        self.assignments = Some(out);
    }

    /// Writes every finding as it happens, one CloudEvent (JSON) per line, to `out`.
    pub fn emit_events(&mut self, out: Box<dyn Write + Send>) {
        self.events = Some(out);
    }

    /// Replaces the secret redaction applied to every record (on by default with
    /// [`crate::redact::Redactor::default`]; [`crate::redact::Redactor::disabled`] turns it off).
    pub fn set_redactor(&mut self, redactor: crate::redact::Redactor) {
        self.redactor = redactor;
    }

    fn write_event(&mut self, event: &opsloop_core::Event) {
        let Some(out) = self.events.as_mut() else {
            return;
        };
        if self.write_error.is_none() {
            let written = serde_json::to_writer(&mut *out, event)
                .map_err(io::Error::from)
                .and_then(|_| out.write_all(b"\n"));
            if let Err(e) = written {
                self.write_error = Some(e);
            }
        }
    }

    /// The miner, e.g. to save its state.
    pub fn miner(&self) -> &TemplateMiner {
        self.analyzer.miner()
    }

    /// The miner, e.g. to load a saved state before inspecting.
    pub fn miner_mut(&mut self) -> &mut TemplateMiner {
        self.analyzer.miner_mut()
    }

    /// Reads one input to its end. `progress` is called with the bytes read so far, now and
    /// then. Open failures are recorded in the report, not returned.
    pub fn inspect_path(&mut self, path: &str, progress: &mut dyn FnMut(u64)) {
        let file_index = self.files.len() as u32;
        self.file_json
            .push(serde_json::to_vec(path).unwrap_or_default());
        let mut report = FileReport {
            path: path.to_string(),
            format: Format::Raw,
            detected: false,
            lines: 0,
            records: 0,
            blank_lines: 0,
            bytes: 0,
            problems: 0,
            error: None,
        };
        let mut reader = match LineReader::open(path, self.options.max_line) {
            Ok(r) => r,
            Err(e) => {
                report.error = Some(e.to_string());
                self.files.push(report);
                return;
            }
        };
        // Bounded: a file of bad lines keeps its first problems and counts the rest.
        let mut problems = ProblemTally::new(self.options.max_problems);
        // Sample the first lines for format detection, then replay them.
        let mut sample: Vec<(u64, String)> = Vec::new();
        while sample.len() < DETECT_SAMPLE {
            match reader.next_line(&mut |p| problems.add(p)) {
                Some(line) => sample.push((line.number, line.text.to_string())),
                None => break,
            }
        }
        // One moment for the whole run: every line's year is decided against it.
        let now = opsloop_core::time::now_ms();
        let year = self.options.year.unwrap_or_else(|| CivilYear::of(now).year);
        let parser = match (&self.options.pattern, self.options.format) {
            (Some(p), _) => match Parser::with_pattern(p, year) {
                Ok(p) => p,
                Err(e) => {
                    report.error = Some(e.to_string());
                    self.files.push(report);
                    return;
                }
            },
            (None, Some(f)) => Parser::new(f, year),
            (None, None) => {
                let texts: Vec<&str> = sample.iter().map(|(_, t)| t.as_str()).collect();
                report.detected = true;
                Parser::new(detect(&texts, year), year)
            }
        };
        let parser = match self.options.year {
            Some(_) => parser,
            None => parser.roll_back_future(now),
        };
        report.format = parser.format();
        let multiline = self
            .options
            .multiline
            .unwrap_or(parser.format() != Format::Raw);
        let mut joiner = Joiner::new(parser, multiline).with_max_message(self.options.max_line);
        self.files.push(report);
        for (number, text) in &sample {
            self.feed_line(&mut joiner, file_index, *number, text, &mut problems);
        }
        let mut since_progress = 0u32;
        while let Some(line) = reader.next_line(&mut |p| problems.add(p)) {
            let (number, text) = (line.number, line.text);
            self.feed_line(&mut joiner, file_index, number, text, &mut problems);
            since_progress += 1;
            if since_progress == 65_536 {
                since_progress = 0;
                progress(reader.bytes);
            }
        }
        while let Some(rec) = joiner.take_pending() {
            self.process(file_index, &rec);
        }
        progress(reader.bytes);
        let report = &mut self.files[file_index as usize];
        report.lines = reader.lines_read();
        report.bytes = reader.bytes;
        self.files[file_index as usize].problems += problems.total;
        self.problems.merge(problems);
        if self.pending.len() >= ASSIGNMENT_FLUSH {
            self.flush_assignments();
        }
    }

    fn feed_line(
        &mut self,
        joiner: &mut Joiner,
        file: u32,
        number: u64,
        text: &str,
        problems: &mut ProblemTally,
    ) {
        // A blank line is no record, except in raw input, where every line is one.
        if text.trim().is_empty() && joiner.parser.format() != Format::Raw {
            self.files[file as usize].blank_lines += 1;
            return;
        }
        match joiner.push(number, text) {
            Pushed::Joined => {}
            Pushed::Started { parse_failed } => {
                if parse_failed {
                    problems.add_with(ProblemKind::ParseError, || Problem {
                        kind: ProblemKind::ParseError,
                        file: self.files[file as usize].path.clone(),
                        line: number,
                        detail: format!(
                            "not {} format; kept as a raw message",
                            joiner.parser.format().as_str()
                        ),
                    });
                }
                if let Some(done) = joiner.rotate() {
                    self.process(file, done);
                }
            }
        }
        if self.pending.len() >= ASSIGNMENT_FLUSH {
            self.flush_assignments();
        }
    }

    /// Runs one complete record through the analysis and keeps the statistics of the report.
    fn process(&mut self, file: u32, rec: &Record) {
        // Secrets go before the miner, rules, examples and events see the record.
        let (rec, _) = self.redactor.redacted(rec);
        let rec = &*rec;
        self.records += 1;
        self.files[file as usize].records += 1;
        if rec.cut {
            self.problems
                .add_with(ProblemKind::LineTooLong, || Problem {
                    kind: ProblemKind::LineTooLong,
                    file: self.files[file as usize].path.clone(),
                    line: rec.line,
                    detail: format!(
                        "message joined from partial lines longer than {} bytes was cut",
                        self.options.max_line
                    ),
                });
            if let Some(f) = self.files.get_mut(file as usize) {
                f.problems += 1;
            }
        }
        let analysis = self.analyzer.analyze(rec);
        let a = analysis.assignment;
        let level_name = rec.level.map_or("unknown", Level::as_str);
        if rec.level_inferred {
            self.levels_inferred += 1;
        }
        *self.levels.entry(level_name).or_default() += 1;
        if let Some(ts) = rec.timestamp {
            self.first_ts = Some(self.first_ts.map_or(ts, |f| f.min(ts)));
            self.last_ts = Some(self.last_ts.map_or(ts, |l| l.max(ts)));
            if rec.level.is_some_and(Level::is_error) && self.error_minutes.len() < 1_000_000 {
                *self
                    .error_minutes
                    .entry(ts.div_euclid(60_000) * 60_000)
                    .or_default() += 1;
            }
        }
        let after_warmup = self.records > self.options.anomaly.warmup_records;
        let room = self.template_stats.len() < MAX_TEMPLATE_STATS;
        match self.template_stats.get_mut(&a.id) {
            Some(s) => {
                s.count += 1;
                s.last = (file, rec.line, rec.timestamp);
            }
            None if room => {
                self.template_stats.insert(
                    a.id,
                    TemplateStats {
                        count: 1,
                        first: (file, rec.line, rec.timestamp),
                        last: (file, rec.line, rec.timestamp),
                        example: truncate(&rec.message, EXAMPLE_CHARS),
                        created_after_warmup: a.created && after_warmup,
                    },
                );
            }
            None => self.dropped_template_stats += 1,
        }
        if self.events.is_some() {
            let origin = crate::events::Origin {
                source: "/opsloop/inspect",
                input: &self.files[file as usize].path,
            };
            analysis.events(&origin, rec, &mut self.event_buf);
        }
        for h in analysis.hits {
            let s = &mut self.rule_stats[h.rule];
            s.count += 1;
            if s.examples.len() < RULE_EXAMPLES {
                s.examples.push(RuleExample {
                    file: self.files[file as usize].path.clone(),
                    line: rec.line,
                    timestamp: rec.timestamp.map(format_rfc3339),
                    message: truncate(&rec.message, EXAMPLE_CHARS),
                });
            }
        }
        for an in analysis.anomalies {
            *self.anomaly_counts.entry(an.kind).or_default() += 1;
            if self.anomaly_list.len() < ANOMALY_LIMIT {
                self.anomaly_list.push((an.clone(), file, rec.line));
            }
        }
        let events = std::mem::take(&mut self.event_buf);
        for e in &events {
            self.write_event(e);
        }
        self.event_buf = events;
        self.event_buf.clear();
        if self.assignments.is_some() {
            self.pending.push((file, rec.line, a.id));
        }
    }

    /// Writes buffered assignments with their templates as they stand now.
    fn flush_assignments(&mut self) {
        let Some(out) = self.assignments.as_mut() else {
            self.pending.clear();
            return;
        };
        let mut line_buf = itoa_buf();
        for &(file, line, id) in &self.pending {
            let frag = match self.fragments.get(&id) {
                Some((generation, frag))
                    if self
                        .analyzer
                        .miner()
                        .resolve(id)
                        .is_some_and(|t| t.generation() == *generation) =>
                {
                    frag
                }
                _ => {
                    let (generation, text, final_id) = match self.analyzer.miner().resolve(id) {
                        Some(t) => (t.generation(), t.text().to_string(), t.id()),
                        None => (
                            u32::MAX,
                            self.template_stats
                                .get(&id)
                                .map(|s| s.example.clone())
                                .unwrap_or_default(),
                            id,
                        ),
                    };
                    let mut frag = Vec::with_capacity(text.len() + 64);
                    frag.extend_from_slice(b",\"template_id\":\"");
                    frag.extend_from_slice(final_id.to_string().as_bytes());
                    frag.extend_from_slice(b"\",\"template\":");
                    frag.extend_from_slice(&serde_json::to_vec(&text).unwrap_or_default());
                    frag.extend_from_slice(b"}\n");
                    self.fragments.insert(id, (generation, frag));
                    &self.fragments[&id].1
                }
            };
            let mut w = |b: &[u8]| {
                if self.write_error.is_none()
                    && let Err(e) = out.write_all(b)
                {
                    self.write_error = Some(e);
                }
            };
            w(b"{\"file\":");
            w(&self.file_json[file as usize]);
            w(b",\"line\":");
            w(format_u64(&mut line_buf, line));
            w(frag);
        }
        if self.write_error.is_none()
            && let Err(e) = out.flush()
        {
            self.write_error = Some(e);
        }
        self.pending.clear();
        if self.fragments.len() > 200_000 {
            self.fragments.clear();
        }
    }

    /// Ends the inspection: writes remaining assignments and builds the report.
    pub fn finish(mut self) -> (Report, TemplateMiner, Option<io::Error>) {
        self.flush_assignments();
        if let Some(out) = self.events.as_mut()
            && let Err(e) = out.flush()
        {
            self.write_error.get_or_insert(e);
        }
        let mut found = Vec::new();
        self.analyzer.finish(&mut found);
        let last_file = self.files.len().saturating_sub(1) as u32;
        for an in found {
            *self.anomaly_counts.entry(an.kind).or_default() += 1;
            if self.anomaly_list.len() < ANOMALY_LIMIT {
                self.anomaly_list.push((an, last_file, 0));
            }
        }
        let report = self.build_report();
        let miner = std::mem::take(self.analyzer.miner_mut());
        (report, miner, self.write_error)
    }

    fn seen(&self, (file, line, ts): (u32, u64, Option<i64>)) -> Seen {
        Seen {
            file: self
                .files
                .get(file as usize)
                .map(|f| f.path.clone())
                .unwrap_or_default(),
            line,
            timestamp: ts.map(format_rfc3339),
        }
    }

    fn build_report(&self) -> Report {
        // Fold statistics of templates that were merged into another into the survivor.
        let mut merged: FxHashMap<TemplateId, TemplateStats> = FxHashMap::default();
        for (&id, s) in &self.template_stats {
            let target = self.analyzer.miner().resolve(id).map_or(id, |t| t.id());
            match merged.get_mut(&target) {
                Some(m) => {
                    m.count += s.count;
                    if (s.first.0, s.first.1) < (m.first.0, m.first.1) {
                        m.first = s.first;
                        m.example = s.example.clone();
                    }
                    if (s.last.0, s.last.1) > (m.last.0, m.last.1) {
                        m.last = s.last;
                    }
                    m.created_after_warmup &= s.created_after_warmup;
                }
                None => {
                    merged.insert(target, s.clone());
                }
            }
        }
        let total = self.records.max(1) as f64;
        let mut templates: Vec<TemplateReport> = merged
            .iter()
            .map(|(&id, s)| TemplateReport {
                id: id.to_string(),
                template: self
                    .analyzer
                    .miner()
                    .resolve(id)
                    .map_or_else(|| s.example.clone(), |t| t.text().to_string()),
                count: s.count,
                share: s.count as f64 / total,
                first_seen: self.seen(s.first),
                last_seen: self.seen(s.last),
                example: s.example.clone(),
                new: s.created_after_warmup,
            })
            .collect();
        templates.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.id.cmp(&b.id)));
        let rare_limit = (self.records / 10_000).max(2);
        let new_templates: Vec<String> = templates
            .iter()
            .filter(|t| t.new)
            .map(|t| t.id.clone())
            .collect();
        let rare_templates: Vec<String> = templates
            .iter()
            .filter(|t| t.count <= rare_limit && templates.len() > 1)
            .map(|t| t.id.clone())
            .collect();
        let rule_hits: Vec<RuleHitReport> = self
            .analyzer
            .rules()
            .rules()
            .iter()
            .zip(&self.rule_stats)
            .filter(|(_, s)| s.count > 0)
            .map(|(r, s)| RuleHitReport {
                rule: r.spec.id.clone(),
                severity: r.spec.severity,
                description: r.spec.description.clone(),
                labels: r.spec.labels.clone(),
                source: r.source.clone(),
                count: s.count,
                examples: s.examples.clone(),
            })
            .collect();
        let mut rule_hits = rule_hits;
        rule_hits.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.count.cmp(&a.count)));
        let anomalies = self
            .anomaly_list
            .iter()
            .map(|(a, file, line)| AnomalyReport {
                kind: a.kind,
                template_id: a.template_id.map(|t| {
                    self.analyzer
                        .miner()
                        .resolve(t)
                        .map_or(t, |x| x.id())
                        .to_string()
                }),
                file: self
                    .files
                    .get(*file as usize)
                    .map(|f| f.path.clone())
                    .unwrap_or_default(),
                line: *line,
                bucket: if a.dated {
                    format_rfc3339(a.bucket)
                } else {
                    format!("records {}-{}", a.bucket * 1000 + 1, (a.bucket + 1) * 1000)
                },
                observed: a.observed,
                baseline: a.baseline,
            })
            .collect();
        let elapsed = self.started.elapsed().as_secs_f64();
        let lines: u64 = self.files.iter().map(|f| f.lines).sum();
        Report {
            summary: Summary {
                files: self.files.len(),
                lines,
                records: self.records,
                levels_inferred: self.levels_inferred,
                bytes: self.files.iter().map(|f| f.bytes).sum(),
                templates: templates.len(),
                templates_evicted: self.analyzer.miner().evicted(),
                first_timestamp: self.first_ts.map(format_rfc3339),
                last_timestamp: self.last_ts.map(format_rfc3339),
                elapsed_seconds: elapsed,
                lines_per_second: if elapsed > 0.0 {
                    lines as f64 / elapsed
                } else {
                    0.0
                },
                rules_loaded: self.analyzer.rules().len(),
                rule_hits: self.rule_stats.iter().map(|s| s.count).sum(),
                problems: self.problems.total,
                anomalies: self.anomaly_counts.values().sum(),
            },
            files: self.files.clone(),
            levels: self
                .levels
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
            templates,
            new_templates,
            rare_templates,
            rule_hits,
            anomalies,
            anomaly_counts: self
                .anomaly_counts
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect(),
            error_histogram: self
                .error_minutes
                .iter()
                .map(|(m, c)| MinuteCount {
                    minute: format_rfc3339(*m),
                    errors: *c,
                })
                .collect(),
            problems: ProblemReport {
                counts: self
                    .problems
                    .counts
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), *v))
                    .collect(),
                examples: self.problems.examples.clone(),
            },
        }
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

fn format_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The result of an inspection: `--output json` prints it as it is.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Totals.
    pub summary: Summary,
    /// Per input.
    pub files: Vec<FileReport>,
    /// Records per level (`unknown` when the record had none).
    pub levels: BTreeMap<String, u64>,
    /// Templates, most frequent first.
    pub templates: Vec<TemplateReport>,
    /// Ids of templates first seen after the warm-up.
    pub new_templates: Vec<String>,
    /// Ids of templates seen at most max(2, records/10000) times.
    pub rare_templates: Vec<String>,
    /// Rules that fired, most severe first.
    pub rule_hits: Vec<RuleHitReport>,
    /// Anomalies found (the first 1,000).
    pub anomalies: Vec<AnomalyReport>,
    /// Anomalies per kind (all of them).
    pub anomaly_counts: BTreeMap<String, u64>,
    /// Error-or-worse records per minute, for dated records.
    pub error_histogram: Vec<MinuteCount>,
    /// Input problems.
    pub problems: ProblemReport,
}

/// Totals of an inspection.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Inputs given.
    pub files: usize,
    /// Lines read.
    pub lines: u64,
    /// Records.
    pub records: u64,
    /// Records whose level was inferred from their words (the line stated none).
    pub levels_inferred: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Distinct templates.
    pub templates: usize,
    /// Templates evicted to bound memory.
    pub templates_evicted: u64,
    /// Earliest record time.
    pub first_timestamp: Option<String>,
    /// Latest record time.
    pub last_timestamp: Option<String>,
    /// Wall time taken.
    pub elapsed_seconds: f64,
    /// Lines per second.
    pub lines_per_second: f64,
    /// Rules loaded.
    pub rules_loaded: usize,
    /// Rule hits in all.
    pub rule_hits: u64,
    /// Input problems in all.
    pub problems: u64,
    /// Anomalies in all.
    pub anomalies: u64,
}

/// A template in the report.
#[derive(Clone, Debug, Serialize)]
pub struct TemplateReport {
    /// Stable id.
    pub id: String,
    /// Text, variables as `<*>`.
    pub template: String,
    /// Records assigned.
    pub count: u64,
    /// Share of all records.
    pub share: f64,
    /// First record.
    pub first_seen: Seen,
    /// Last record.
    pub last_seen: Seen,
    /// The first record's message.
    pub example: String,
    /// First seen after the warm-up.
    pub new: bool,
}

/// A rule that fired.
#[derive(Clone, Debug, Serialize)]
pub struct RuleHitReport {
    /// Rule id.
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// Description.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Where the rule was defined.
    pub source: String,
    /// Times it fired.
    pub count: u64,
    /// The first records that made it fire.
    pub examples: Vec<RuleExample>,
}

/// An anomaly in the report.
#[derive(Clone, Debug, Serialize)]
pub struct AnomalyReport {
    /// Kind.
    pub kind: AnomalyKind,
    /// Template concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// File of the record that revealed it.
    pub file: String,
    /// Line of that record (0 when found at the end of input).
    pub line: u64,
    /// The minute (RFC 3339) or record range it concerns.
    pub bucket: String,
    /// Observed count or share.
    pub observed: f64,
    /// Baseline count or share.
    pub baseline: f64,
}

/// Errors in one minute.
#[derive(Clone, Debug, Serialize)]
pub struct MinuteCount {
    /// Minute start, RFC 3339.
    pub minute: String,
    /// Error-or-worse records.
    pub errors: u64,
}

/// Input problems.
#[derive(Clone, Debug, Serialize)]
pub struct ProblemReport {
    /// Count per kind.
    pub counts: BTreeMap<String, u64>,
    /// The first 100, with file and line.
    pub examples: Vec<Problem>,
}

#[cfg(test)]
mod tests;
