//! The agent's log pipeline: [`LogPipeline`] takes lines and records from many sources
//! through parser, multi-line joiner, template miner, rules and anomaly detection, and returns
//! what it finds as events. One thread owns it; sources feed it through a bounded channel.

use std::time::{Duration, Instant};

use opsloop_core::Event;
use opsloop_core::ingest::IngestedRecord;
use rustc_hash::FxHashMap;

use crate::anomaly::{AnomalyConfig, AnomalyDetector};
use crate::events::{self, Origin};
use crate::inspect::{Joiner, Pushed, current_year};
use crate::miner::{MinerConfig, TemplateId, TemplateMiner};
use crate::parse::{Format, Parser, Record, detect, infer_level};
use crate::rules::{RuleContext, RuleSet};

/// How a source's lines are read.
#[derive(Clone, Debug)]
pub struct SourceSpec {
    /// A fixed format, or `None` to detect from the first lines.
    pub format: Option<Format>,
    /// Join stack traces (default: on for every format but raw).
    pub multiline: Option<bool>,
}

/// Lines buffered to detect a stream's format.
const DETECT_LINES: usize = 8;
/// At most one `input_problem` event per source this often (the counter counts every line).
const PROBLEM_EVERY: Duration = Duration::from_secs(60);

struct SourceState {
    spec: SourceSpec,
    joiner: Option<Joiner>,
    detecting: Vec<String>,
    lines: u64,
    last_line: Instant,
    /// Lines that did not parse since the last `input_problem` event, and the first of them.
    unparsed: u64,
    unparsed_example: Option<(u64, String)>,
    last_problem_event: Option<Instant>,
}

/// What one line did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineOutcome {
    /// The line did not fit the source's format (kept as a raw message).
    pub parse_failed: bool,
}

/// The pipeline.
pub struct LogPipeline {
    miner: TemplateMiner,
    rules: RuleSet,
    anomalies: AnomalyDetector,
    sources: FxHashMap<String, SourceState>,
    event_source: String,
    year: i64,
    rule_hits: Vec<u64>,
    hits: Vec<crate::rules::RuleHit>,
    found: Vec<crate::anomaly::Anomaly>,
}

impl LogPipeline {
    /// A pipeline with `rules`, naming its events' source `event_source`.
    pub fn new(
        rules: RuleSet,
        miner: MinerConfig,
        anomaly: AnomalyConfig,
        event_source: &str,
    ) -> Self {
        let n = rules.len();
        LogPipeline {
            miner: TemplateMiner::new(miner),
            rules,
            anomalies: AnomalyDetector::new(anomaly),
            sources: FxHashMap::default(),
            event_source: event_source.to_string(),
            year: current_year(),
            rule_hits: vec![0; n],
            hits: Vec::new(),
            found: Vec::new(),
        }
    }

    /// Declares a source (lines from undeclared sources are read with format detection).
    pub fn add_source(&mut self, name: &str, spec: SourceSpec) {
        self.sources
            .insert(name.to_string(), SourceState::new(spec));
    }

    /// Feeds one line of `source`; complete records' findings go to `out`.
    pub fn push_line(&mut self, source: &str, line: &str, out: &mut Vec<Event>) -> LineOutcome {
        let year = self.year;
        if !self.sources.contains_key(source) {
            // An undeclared source (API records name their own): detect its format.
            self.sources.insert(
                source.to_string(),
                SourceState::new(SourceSpec {
                    format: None,
                    multiline: None,
                }),
            );
        }
        let Some(state) = self.sources.get_mut(source) else {
            return LineOutcome::default();
        };
        state.lines += 1;
        state.last_line = Instant::now();
        let number = state.lines;
        if state.joiner.is_none() {
            if state.spec.format.is_none() && state.detecting.len() < DETECT_LINES {
                state.detecting.push(line.to_string());
                return LineOutcome::default();
            }
            state.start(year);
            let buffered = std::mem::take(&mut state.detecting);
            let first = number - buffered.len() as u64;
            let mut outcome = LineOutcome::default();
            for (i, l) in buffered.iter().enumerate() {
                outcome.parse_failed |= self.feed(source, first + i as u64, l, out).parse_failed;
            }
            let o = self.feed(source, number, line, out);
            return LineOutcome {
                parse_failed: outcome.parse_failed || o.parse_failed,
            };
        }
        self.feed(source, number, line, out)
    }

    fn feed(&mut self, source: &str, number: u64, line: &str, out: &mut Vec<Event>) -> LineOutcome {
        // The joiner leaves its source while the record is processed, so the miner and rules
        // can be borrowed too; no buffer is reallocated.
        let Some(mut joiner) = self.sources.get_mut(source).and_then(|s| s.joiner.take()) else {
            return LineOutcome::default();
        };
        let outcome = if line.trim().is_empty() && joiner.parser.format() != Format::Raw {
            LineOutcome::default()
        } else {
            match joiner.push(number, line) {
                Pushed::Joined => LineOutcome::default(),
                Pushed::Started { parse_failed } => {
                    if joiner.next.level.is_none() && joiner.parser.format() != Format::Raw {
                        joiner.next.level = infer_level(&joiner.next.message);
                        joiner.next.level_inferred = joiner.next.level.is_some();
                    }
                    if let Some(done) = joiner.rotate() {
                        self.process(source, done, out);
                    }
                    LineOutcome { parse_failed }
                }
            }
        };
        let format = joiner.parser.format();
        let Some(state) = self.sources.get_mut(source) else {
            return outcome;
        };
        state.joiner = Some(joiner);
        if outcome.parse_failed {
            state.unparsed += 1;
            if state.unparsed_example.is_none() {
                state.unparsed_example = Some((number, line.to_string()));
            }
            self.report_unparsed(source, format, false, out);
        }
        outcome
    }

    /// Reports a source's unparsed lines as one `input_problem` event, at most once per
    /// [`PROBLEM_EVERY`] unless `now`: the first at once, then counts.
    fn report_unparsed(&mut self, source: &str, format: Format, now: bool, out: &mut Vec<Event>) {
        let Some(state) = self.sources.get_mut(source) else {
            return;
        };
        if state.unparsed == 0
            || (!now
                && state
                    .last_problem_event
                    .is_some_and(|t| t.elapsed() < PROBLEM_EVERY))
        {
            return;
        }
        let (line, example) = state.unparsed_example.take().unwrap_or_default();
        let origin = Origin {
            source: &self.event_source,
            input: source,
        };
        out.push(events::input_problem(
            &origin,
            format.as_str(),
            state.unparsed,
            line,
            &example,
        ));
        state.unparsed = 0;
        state.last_problem_event = Some(Instant::now());
    }

    /// Reports what [`LogPipeline::report_unparsed`] still holds, for every source.
    fn report_all_unparsed(&mut self, now: bool, out: &mut Vec<Event>) {
        let pending: Vec<(String, Format)> = self
            .sources
            .iter()
            .filter(|(_, s)| s.unparsed > 0)
            .filter_map(|(k, s)| Some((k.clone(), s.joiner.as_ref()?.parser.format())))
            .collect();
        for (name, format) in pending {
            self.report_unparsed(&name, format, now, out);
        }
    }

    /// Lines of `source` received but not yet processed: buffered for format detection or
    /// part of the record still being assembled. The source's earlier lines are complete.
    pub fn held_lines(&self, source: &str) -> u64 {
        let Some(state) = self.sources.get(source) else {
            return 0;
        };
        let pending = match &state.joiner {
            Some(j) if j.has_pending => state.lines.saturating_sub(j.pending.line) + 1,
            _ => 0,
        };
        state.detecting.len() as u64 + pending
    }

    /// Feeds a record received already structured (HTTP ingest).
    pub fn push_record(&mut self, rec: IngestedRecord, out: &mut Vec<Event>) {
        let record = Record {
            line: 0,
            timestamp: rec.timestamp,
            level: rec.level.or_else(|| infer_level(&rec.message)),
            level_inferred: rec.level.is_none(),
            message: rec.message,
            fields: rec.fields,
            ..Record::default()
        };
        let source = rec.source;
        self.process(&source, &record, out);
    }

    /// Completes records of sources quiet for `idle` (their next line may never come).
    pub fn flush_idle(&mut self, idle: Duration, out: &mut Vec<Event>) {
        let now = Instant::now();
        let quiet: Vec<String> = self
            .sources
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_line) >= idle)
            .map(|(k, _)| k.clone())
            .collect();
        for name in quiet {
            self.flush_source(&name, out);
        }
        self.report_all_unparsed(false, out);
    }

    /// Completes every pending record (shutdown).
    pub fn flush_all(&mut self, out: &mut Vec<Event>) {
        let names: Vec<String> = self.sources.keys().cloned().collect();
        for name in names {
            self.flush_source(&name, out);
        }
        self.report_all_unparsed(true, out);
    }

    fn flush_source(&mut self, name: &str, out: &mut Vec<Event>) {
        let year = self.year;
        let Some(state) = self.sources.get_mut(name) else {
            return;
        };
        if state.joiner.is_none() && !state.detecting.is_empty() {
            state.start(year);
            let buffered = std::mem::take(&mut state.detecting);
            let first = state.lines - buffered.len() as u64 + 1;
            for (i, l) in buffered.iter().enumerate() {
                self.feed(name, first + i as u64, l, out);
            }
        }
        let pending = self
            .sources
            .get_mut(name)
            .and_then(|s| s.joiner.as_mut())
            .and_then(Joiner::take_pending);
        if let Some(rec) = pending {
            self.process(name, &rec, out);
        }
    }

    fn process(&mut self, source: &str, rec: &Record, out: &mut Vec<Event>) {
        let a = self.miner.add(&rec.message);
        let origin = Origin {
            source: &self.event_source,
            input: source,
        };
        let (text, generation) = self
            .miner
            .template(a.index)
            .map_or((String::new(), 0), |t| {
                (t.text().to_string(), t.generation())
            });
        if !self.rules.is_empty() {
            let ctx = RuleContext {
                template_id: a.id,
                template_key: (a.index, generation),
                template: &text,
                timestamp: rec.timestamp,
            };
            self.hits.clear();
            self.rules.evaluate(rec, &ctx, &mut self.hits);
            for h in &self.hits {
                self.rule_hits[h.rule] += 1;
                out.push(events::rule_matched(
                    &origin,
                    &self.rules.rules()[h.rule],
                    rec,
                    a.id,
                    &text,
                ));
            }
        }
        self.found.clear();
        let is_error = rec.level.is_some_and(opsloop_core::Level::is_error);
        self.anomalies
            .observe(a.id, a.created, rec.timestamp, is_error, &mut self.found);
        for an in &self.found {
            let t = an
                .template_id
                .and_then(|t| self.miner.resolve(t))
                .map(|t| t.text());
            out.push(events::anomaly(&origin, an, rec, an.template_id, t));
        }
    }

    /// Swaps in a new rule set (a configuration reload); hit counts carry over by rule id.
    pub fn replace_rules(&mut self, rules: RuleSet) {
        let old: FxHashMap<String, u64> = self
            .rules
            .rules()
            .iter()
            .zip(&self.rule_hits)
            .map(|(r, &h)| (r.spec.id.clone(), h))
            .collect();
        self.rule_hits = rules
            .rules()
            .iter()
            .map(|r| old.get(&r.spec.id).copied().unwrap_or(0))
            .collect();
        self.rules = rules;
    }

    /// Live templates: id, text, count.
    pub fn templates(&self) -> Vec<(TemplateId, String, u64)> {
        self.miner
            .templates()
            .map(|t| (t.id(), t.text().to_string(), t.count()))
            .collect()
    }

    /// Number of live templates.
    pub fn template_count(&self) -> usize {
        self.miner.len()
    }

    /// The rules with their hit counts.
    pub fn rule_hits(&self) -> Vec<(&crate::rules::Rule, u64)> {
        self.rules
            .rules()
            .iter()
            .zip(self.rule_hits.iter().copied())
            .collect()
    }
}

impl SourceState {
    fn new(spec: SourceSpec) -> SourceState {
        SourceState {
            spec,
            joiner: None,
            detecting: Vec::new(),
            lines: 0,
            last_line: Instant::now(),
            unparsed: 0,
            unparsed_example: None,
            last_problem_event: None,
        }
    }

    fn start(&mut self, year: i64) {
        let format = self.spec.format.unwrap_or_else(|| {
            let sample: Vec<&str> = self.detecting.iter().map(String::as_str).collect();
            detect(&sample, year)
        });
        let parser = Parser::new(format, year).roll_back_future(opsloop_core::time::now_ms());
        let multiline = self.spec.multiline.unwrap_or(format != Format::Raw);
        self.joiner = Some(Joiner::new(parser, multiline));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{BUILTIN_RULES, parse_rule_file};

    fn pipeline() -> LogPipeline {
        let file = parse_rule_file("builtin", BUILTIN_RULES).unwrap_or_else(|e| panic!("{e}"));
        let rules = RuleSet::compile(&[("builtin".into(), file)]).unwrap_or_else(|e| panic!("{e}"));
        LogPipeline::new(
            rules,
            MinerConfig::default(),
            AnomalyConfig::default(),
            "/opsloop/test",
        )
    }

    #[test]
    fn syslog_lines_become_rule_events() {
        let mut p = pipeline();
        p.add_source(
            "syslog",
            SourceSpec {
                format: Some(Format::Syslog),
                multiline: Some(false),
            },
        );
        let mut out = Vec::new();
        p.push_line(
            "syslog",
            "<3>Nov 20 10:00:00 web kernel: Out of memory: Killed process 42 (java)",
            &mut out,
        );
        assert!(
            out.is_empty(),
            "the record completes when the next one starts or the source idles"
        );
        p.flush_idle(Duration::ZERO, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, "io.opsloop.log.rule_matched");
        assert_eq!(out[0].subject.as_deref(), Some("oom-kill"));
        assert_eq!(out[0].data["input"], "syslog");
        assert_eq!(
            p.rule_hits()
                .iter()
                .find(|(r, _)| r.spec.id == "oom-kill")
                .map(|x| x.1),
            Some(1)
        );
    }

    #[test]
    fn undeclared_streams_are_detected_and_joined() {
        let mut p = pipeline();
        let mut out = Vec::new();
        let lines = [
            "2026-01-02 03:04:05 ERROR request failed",
            "java.io.IOException: connection refused",
            "\tat a.b(C.java:1)",
            "2026-01-02 03:04:06 INFO ok",
        ];
        for (i, l) in lines.iter().enumerate() {
            p.push_line("app", l, &mut out);
            // Buffered for format detection until 8 lines came or the source idles.
            assert_eq!(p.held_lines("app"), i as u64 + 1);
        }
        p.flush_idle(Duration::ZERO, &mut out);
        assert_eq!(p.held_lines("app"), 0);
        p.push_line("app", "2026-01-02 03:04:07 ERROR request failed", &mut out);
        p.push_line("app", "java.io.IOException: connection refused", &mut out);
        assert_eq!(p.held_lines("app"), 2, "a record still being joined");
        p.push_line("app", "2026-01-02 03:04:08 INFO ok", &mut out);
        assert_eq!(
            p.held_lines("app"),
            1,
            "the last record may still get lines"
        );
        p.flush_all(&mut out);
        assert_eq!(p.held_lines("app"), 0);
        assert_eq!(
            p.template_count(),
            2,
            "two records, the trace joined to the first"
        );
        assert!(
            out.iter()
                .any(|e| e.subject.as_deref() == Some("connection-refused"))
        );
    }

    #[test]
    fn unparsed_lines_are_reported_once_then_counted() {
        let mut p = pipeline();
        p.add_source(
            "api-json",
            SourceSpec {
                format: Some(Format::Json),
                multiline: Some(false),
            },
        );
        let mut out = Vec::new();
        let problems = |out: &[Event]| -> Vec<(u64, u64, String)> {
            out.iter()
                .filter(|e| e.kind == "io.opsloop.log.input_problem")
                .map(|e| {
                    (
                        e.data["count"].as_u64().unwrap_or(0),
                        e.data["line"].as_u64().unwrap_or(0),
                        e.data["example"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        };
        p.push_line("api-json", r#"{"msg":"fine"}"#, &mut out);
        p.push_line("api-json", "not json at all", &mut out);
        assert_eq!(problems(&out), [(1, 2, "not json at all".to_string())]);
        for _ in 0..5 {
            p.push_line("api-json", "{broken", &mut out);
        }
        assert_eq!(problems(&out).len(), 1, "at most one event a minute");
        p.flush_all(&mut out);
        let all = problems(&out);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1], (5, 3, "{broken".to_string()), "the rest, counted");
        assert_eq!(
            out.iter()
                .find(|e| e.kind == "io.opsloop.log.input_problem")
                .and_then(|e| e.subject.clone())
                .as_deref(),
            Some("api-json")
        );
    }

    #[test]
    fn ingested_records() {
        let mut p = pipeline();
        let mut out = Vec::new();
        let rec = IngestedRecord {
            source: "api".into(),
            received_ms: 0,
            timestamp: Some(1000),
            level: None,
            message: "write /data: no space left on device".into(),
            fields: vec![],
        };
        p.push_record(rec, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].subject.as_deref(), Some("disk-full"));
    }
}
