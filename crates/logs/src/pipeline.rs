//! The agent's log pipeline: [`LogPipeline`] takes lines and records from many sources
//! through parser, multi-line joiner and the shared [`Analyzer`] (template miner, rules,
//! anomaly detection), and returns what it finds as events. One thread owns it; sources feed
//! it through a bounded channel.
//!
//! Everything that depends on time reads the pipeline's [`Clock`]: the arrival time of a line
//! (which decides the year of a year-less timestamp), a source's idle time and the rate limit of
//! `input_problem` events.

use std::sync::Arc;
use std::time::Duration;

use opsloop_core::Event;
use opsloop_core::ingest::IngestedRecord;
use opsloop_core::time::{CivilYear, Clock, SystemClock};
use rustc_hash::FxHashMap;

use crate::analysis::Analyzer;
use crate::anomaly::AnomalyConfig;
use crate::events::{self, Origin};
use crate::joiner::{Joiner, Pushed};
use crate::miner::{MinerConfig, TemplateId};
use crate::parse::{Format, Parser, Record, detect, infer_level};
use crate::redact::Redactor;
use crate::rules::RuleSet;

/// How a source's lines are read.
#[derive(Clone, Debug)]
pub struct SourceSpec {
    /// A fixed format, or `None` to detect from the first lines.
    pub format: Option<Format>,
    /// Join stack traces (default: on for every format but raw).
    pub multiline: Option<bool>,
    /// Longest message a record may be joined into (CRI partial lines, stack traces); the
    /// source's line limit, default [`crate::input::DEFAULT_MAX_LINE`].
    pub max_message: Option<usize>,
}

/// Lines buffered to detect a stream's format.
const DETECT_LINES: usize = 8;
/// At most one `input_problem` event per source this often (the counter counts every line).
const PROBLEM_EVERY_MS: i64 = 60_000;

/// Whether `d_ms` passed from `since` to `now`. A clock stepped back counts as having passed:
/// better an early flush or report than one held until the clock catches up.
fn passed(now: i64, since: i64, d_ms: i64) -> bool {
    now < since || now - since >= d_ms
}

struct SourceState {
    spec: SourceSpec,
    joiner: Option<Joiner>,
    /// Lines held for format detection, with their arrival times.
    detecting: Vec<(String, i64)>,
    lines: u64,
    /// Clock time of the last line.
    last_line: i64,
    /// Lines that did not parse since the last `input_problem` event, and the first of them.
    unparsed: u64,
    unparsed_example: Option<(u64, String)>,
    last_problem_event: Option<i64>,
}

/// What one line did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineOutcome {
    /// The line did not fit the source's format (kept as a raw message).
    pub parse_failed: bool,
}

/// The analysis shared by all sources, apart from them so both can be borrowed at once.
struct Core {
    analyzer: Analyzer,
    event_source: String,
    redactor: Redactor,
    redactions: u64,
}

impl Core {
    fn process(&mut self, input: &str, rec: &Record, out: &mut Vec<Event>) {
        // Secrets go before anything can keep or send them.
        let (rec, n) = self.redactor.redacted(rec);
        self.redactions += n as u64;
        let rec = &*rec;
        let origin = Origin {
            source: &self.event_source,
            input,
        };
        self.analyzer.analyze(rec).events(&origin, rec, out);
    }
}

/// The pipeline.
pub struct LogPipeline {
    core: Core,
    sources: FxHashMap<String, SourceState>,
    clock: Arc<dyn Clock>,
}

impl LogPipeline {
    /// A pipeline with `rules`, naming its events' source `event_source`, on the system clock.
    pub fn new(
        rules: RuleSet,
        miner: MinerConfig,
        anomaly: AnomalyConfig,
        event_source: &str,
    ) -> Self {
        Self::with_clock(rules, miner, anomaly, event_source, Arc::new(SystemClock))
    }

    /// [`LogPipeline::new`] on `clock`.
    pub fn with_clock(
        rules: RuleSet,
        miner: MinerConfig,
        anomaly: AnomalyConfig,
        event_source: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        LogPipeline {
            core: Core {
                analyzer: Analyzer::new(rules, miner, anomaly),
                event_source: event_source.to_string(),
                redactor: Redactor::default(),
                redactions: 0,
            },
            sources: FxHashMap::default(),
            clock,
        }
    }

    /// Replaces the secret redaction applied to every record before analysis (on by default
    /// with [`Redactor::default`]; [`Redactor::disabled`] turns it off).
    pub fn set_redactor(&mut self, redactor: Redactor) {
        self.core.redactor = redactor;
    }

    /// Values redacted so far.
    pub fn redactions(&self) -> u64 {
        self.core.redactions
    }

    /// Declares a source (lines from undeclared sources are read with format detection).
    pub fn add_source(&mut self, name: &str, spec: SourceSpec) {
        let now = self.clock.now_ms();
        self.sources
            .insert(name.to_string(), SourceState::new(spec, now));
    }

    /// Declares a source that may have run before (a restart, a reload): what its earlier
    /// run left (the record still being joined, lines held for format detection, unparsed
    /// counts) is completed into `out` first, never dropped.
    pub fn restart_source(&mut self, name: &str, spec: SourceSpec, out: &mut Vec<Event>) {
        let now = self.clock.now_ms();
        if let Some(mut old) = self.sources.remove(name) {
            old.flush(name, now, &mut self.core, out);
            old.report_unparsed(name, true, now, &self.core.event_source, out);
        }
        self.sources
            .insert(name.to_string(), SourceState::new(spec, now));
    }

    /// Feeds one line of `source`, arrived now by the pipeline's clock; complete records'
    /// findings go to `out`.
    pub fn push_line(&mut self, source: &str, line: &str, out: &mut Vec<Event>) -> LineOutcome {
        let now = self.clock.now_ms();
        if !self.sources.contains_key(source) {
            // An undeclared source (API records name their own): detect its format.
            let spec = SourceSpec {
                format: None,
                multiline: None,
                max_message: None,
            };
            self.sources
                .insert(source.to_string(), SourceState::new(spec, now));
        }
        let Some(state) = self.sources.get_mut(source) else {
            return LineOutcome::default();
        };
        state.push(source, line, now, &mut self.core, out)
    }

    /// Lines of `source` received but not yet processed: buffered for format detection or
    /// part of a record still being assembled. The source's earlier lines are complete.
    pub fn held_lines(&self, source: &str) -> u64 {
        let Some(state) = self.sources.get(source) else {
            return 0;
        };
        let assembling = state
            .joiner
            .as_ref()
            .and_then(Joiner::first_held_line)
            .map_or(0, |first| state.lines.saturating_sub(first) + 1);
        state.detecting.len() as u64 + assembling
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
        self.core.process(&rec.source, &record, out);
    }

    /// Completes the records of every source whose own last line is at least `idle` old by
    /// the clock (their next line may never come), however busy other sources are. Cheap
    /// enough to call every 100 ms: no allocation, one pass over the sources.
    pub fn flush_idle(&mut self, idle: Duration, out: &mut Vec<Event>) {
        let now = self.clock.now_ms();
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        for (name, state) in self.sources.iter_mut() {
            if state.holds_lines() && passed(now, state.last_line, idle_ms) {
                state.flush(name, now, &mut self.core, out);
            }
            state.report_unparsed(name, false, now, &self.core.event_source, out);
        }
    }

    /// Completes every pending record (shutdown).
    pub fn flush_all(&mut self, out: &mut Vec<Event>) {
        let now = self.clock.now_ms();
        for (name, state) in self.sources.iter_mut() {
            state.flush(name, now, &mut self.core, out);
            state.report_unparsed(name, true, now, &self.core.event_source, out);
        }
    }

    /// Swaps in a new rule set (a configuration reload); hit counts carry over by rule id.
    pub fn replace_rules(&mut self, rules: RuleSet) {
        self.core.analyzer.replace_rules(rules);
    }

    /// Live templates: id, text, count.
    pub fn templates(&self) -> Vec<(TemplateId, String, u64)> {
        self.core
            .analyzer
            .miner()
            .templates()
            .map(|t| (t.id(), t.text().to_string(), t.count()))
            .collect()
    }

    /// Number of live templates.
    pub fn template_count(&self) -> usize {
        self.core.analyzer.miner().len()
    }

    /// The rules with their hit counts.
    pub fn rule_hits(&self) -> Vec<(&crate::rules::Rule, u64)> {
        self.core.analyzer.rule_hits()
    }
}

impl SourceState {
    fn new(spec: SourceSpec, now: i64) -> SourceState {
        SourceState {
            spec,
            joiner: None,
            detecting: Vec::new(),
            lines: 0,
            last_line: now,
            unparsed: 0,
            unparsed_example: None,
            last_problem_event: None,
        }
    }

    /// Whether lines are held: for detection, or in a record not complete yet.
    fn holds_lines(&self) -> bool {
        !self.detecting.is_empty()
            || self
                .joiner
                .as_ref()
                .is_some_and(|j| j.first_held_line().is_some())
    }

    fn start(&mut self, now: i64) {
        let year = CivilYear::of(now).year;
        let format = self.spec.format.unwrap_or_else(|| {
            let sample: Vec<&str> = self.detecting.iter().map(|(l, _)| l.as_str()).collect();
            detect(&sample, year)
        });
        let mut parser = Parser::new(format, year);
        parser.set_now(now);
        let multiline = self.spec.multiline.unwrap_or(format != Format::Raw);
        let max = self
            .spec
            .max_message
            .unwrap_or(crate::input::DEFAULT_MAX_LINE);
        self.joiner = Some(Joiner::new(parser, multiline).with_max_message(max));
    }

    fn push(
        &mut self,
        name: &str,
        line: &str,
        now: i64,
        core: &mut Core,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        self.lines += 1;
        self.last_line = now;
        let number = self.lines;
        if self.joiner.is_none() {
            if self.spec.format.is_none() && self.detecting.len() < DETECT_LINES {
                self.detecting.push((line.to_string(), now));
                return LineOutcome::default();
            }
            let parse_failed = self.replay_detected(name, true, now, core, out);
            let o = self.feed(name, number, line, now, core, out);
            return LineOutcome {
                parse_failed: parse_failed || o.parse_failed,
            };
        }
        self.feed(name, number, line, now, core, out)
    }

    /// Starts the parser and feeds it the lines held for detection; `pushing` when the line
    /// after them is being pushed (already counted in `self.lines`).
    fn replay_detected(
        &mut self,
        name: &str,
        pushing: bool,
        now: i64,
        core: &mut Core,
        out: &mut Vec<Event>,
    ) -> bool {
        self.start(now);
        let buffered = std::mem::take(&mut self.detecting);
        let first = (self.lines + 1).saturating_sub(u64::from(pushing) + buffered.len() as u64);
        let mut failed = false;
        for (i, (l, at)) in buffered.iter().enumerate() {
            failed |= self
                .feed(name, first + i as u64, l, *at, core, out)
                .parse_failed;
        }
        failed
    }

    /// Feeds one line, which arrived at `now`, to the joiner; processes the record it completes.
    fn feed(
        &mut self,
        name: &str,
        number: u64,
        line: &str,
        now: i64,
        core: &mut Core,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        let Some(joiner) = self.joiner.as_mut() else {
            return LineOutcome::default();
        };
        // Per line, so a year-less time gets the year of its arrival, however long the agent
        // has been running (cheap: the year is recomputed only when `now` leaves it).
        joiner.parser.set_now(now);
        let outcome = if line.trim().is_empty() && joiner.parser.format() != Format::Raw {
            LineOutcome::default()
        } else {
            match joiner.push(number, line) {
                Pushed::Joined => LineOutcome::default(),
                Pushed::Started { parse_failed } => {
                    if let Some(done) = joiner.rotate() {
                        core.process(name, done, out);
                    }
                    LineOutcome { parse_failed }
                }
            }
        };
        if outcome.parse_failed {
            self.unparsed += 1;
            if self.unparsed_example.is_none() {
                let mut example = line.to_string();
                core.redactions += core.redactor.redact(&mut example) as u64;
                self.unparsed_example = Some((number, example));
            }
            self.report_unparsed(name, false, now, &core.event_source, out);
        }
        outcome
    }

    /// Completes what the source holds: lines buffered for detection, then the records being
    /// assembled.
    fn flush(&mut self, name: &str, now: i64, core: &mut Core, out: &mut Vec<Event>) {
        if self.joiner.is_none() && !self.detecting.is_empty() {
            self.replay_detected(name, false, now, core, out);
        }
        while let Some(rec) = self.joiner.as_mut().and_then(Joiner::take_pending) {
            core.process(name, &rec, out);
        }
    }

    /// Reports unparsed lines as one `input_problem` event, at most once per
    /// [`PROBLEM_EVERY_MS`] unless `force`: the first at once, then counts.
    fn report_unparsed(
        &mut self,
        name: &str,
        force: bool,
        now: i64,
        event_source: &str,
        out: &mut Vec<Event>,
    ) {
        if self.unparsed == 0
            || (!force
                && self
                    .last_problem_event
                    .is_some_and(|t| !passed(now, t, PROBLEM_EVERY_MS)))
        {
            return;
        }
        let Some(format) = self.joiner.as_ref().map(|j| j.parser.format()) else {
            return;
        };
        let (line, example) = self.unparsed_example.take().unwrap_or_default();
        let origin = Origin {
            source: event_source,
            input: name,
        };
        out.push(events::input_problem(
            &origin,
            "unparsed_lines",
            now,
            serde_json::json!({
                "format": format.as_str(),
                "count": self.unparsed,
                "line": line,
                "example": example,
            }),
        ));
        self.unparsed = 0;
        self.last_problem_event = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{BUILTIN_RULES, parse_rule_file};
    use opsloop_core::time::{ManualClock, civil_to_millis};

    fn pipeline() -> LogPipeline {
        let file = parse_rule_file("builtin", BUILTIN_RULES).unwrap();
        let rules = RuleSet::compile(&[("builtin".into(), file)]).unwrap();
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
                max_message: None,
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
    fn a_restarted_source_completes_what_its_last_run_held() {
        let mut p = pipeline();
        let spec = SourceSpec {
            format: Some(Format::Syslog),
            multiline: Some(false),
            max_message: None,
        };
        p.add_source("syslog", spec.clone());
        let mut out = Vec::new();
        p.push_line(
            "syslog",
            "<3>Nov 20 10:00:00 web kernel: Out of memory: Killed process 42 (java)",
            &mut out,
        );
        assert!(out.is_empty(), "held until the next record or idle");
        p.restart_source("syslog", spec, &mut out);
        assert_eq!(out.len(), 1, "the held record is completed, not dropped");
        assert_eq!(out[0].subject.as_deref(), Some("oom-kill"));
        assert_eq!(p.held_lines("syslog"), 0);
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
                max_message: None,
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

    fn on_clock(clock: &Arc<ManualClock>) -> LogPipeline {
        let file = parse_rule_file("builtin", BUILTIN_RULES).unwrap();
        let rules = RuleSet::compile(&[("builtin".into(), file)]).unwrap();
        let clock: Arc<dyn Clock> = clock.clone();
        LogPipeline::with_clock(
            rules,
            MinerConfig::default(),
            AnomalyConfig::default(),
            "/opsloop/test",
            clock,
        )
    }

    fn syslog(p: &mut LogPipeline, name: &str) {
        p.add_source(
            name,
            SourceSpec {
                format: Some(Format::Syslog),
                multiline: Some(true),
                max_message: None,
            },
        );
    }

    /// Timestamps of the `oom-kill` findings in `out`.
    fn oom_times(out: &[Event]) -> Vec<String> {
        out.iter()
            .filter(|e| e.subject.as_deref() == Some("oom-kill"))
            .map(|e| e.data["timestamp"].as_str().unwrap_or("").to_string())
            .collect()
    }

    const OOM: &str = "web kernel: Out of memory: Killed process 42 (java)";

    #[test]
    fn year_less_lines_keep_the_clocks_year_over_long_uptime() {
        let at = |y, mo, d, h| civil_to_millis(y, mo, d, h, 0, 0, 0).unwrap_or_default();
        let clock = Arc::new(ManualClock::new(at(2026, 6, 15, 12)));
        let mut p = on_clock(&clock);
        syslog(&mut p, "syslog");
        let mut out = Vec::new();
        p.push_line("syslog", &format!("Jun 15 11:00:00 {OOM}"), &mut out);
        clock.advance(Duration::from_secs(3 * 86_400));
        p.push_line("syslog", &format!("Jun 18 11:00:00 {OOM}"), &mut out);
        clock.advance(Duration::from_secs(397 * 86_400));
        p.push_line("syslog", &format!("Jul 20 11:00:00 {OOM}"), &mut out);
        p.flush_all(&mut out);
        assert_eq!(
            oom_times(&out),
            [
                "2026-06-15T11:00:00.000Z",
                "2026-06-18T11:00:00.000Z",
                "2027-07-20T11:00:00.000Z"
            ]
        );
    }

    #[test]
    fn year_less_lines_across_new_year() {
        let clock = Arc::new(ManualClock::new(
            civil_to_millis(2027, 1, 1, 0, 5, 0, 0).unwrap_or_default(),
        ));
        let mut p = on_clock(&clock);
        syslog(&mut p, "syslog");
        let mut out = Vec::new();
        p.push_line("syslog", &format!("Dec 31 23:59:00 {OOM}"), &mut out);
        p.push_line("syslog", &format!("Jan  1 00:01:00 {OOM}"), &mut out);
        p.flush_all(&mut out);
        assert_eq!(
            oom_times(&out),
            ["2026-12-31T23:59:00.000Z", "2027-01-01T00:01:00.000Z"]
        );
    }

    #[test]
    fn a_quiet_source_is_flushed_while_another_keeps_talking() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let mut p = on_clock(&clock);
        syslog(&mut p, "a");
        syslog(&mut p, "b");
        let mut out = Vec::new();
        // B: one record with a continuation line, then silence.
        p.push_line("b", &format!("Jun 15 11:00:00 {OOM}"), &mut out);
        p.push_line("b", "  continuation of the record", &mut out);
        assert_eq!(p.held_lines("b"), 2);
        // A: a line every 100 ms, the flush check after each, as the pipeline thread does.
        let mut flushed_after = None;
        for i in 1..=20u64 {
            clock.advance(Duration::from_millis(100));
            p.push_line("a", "Jun 15 11:00:00 web app: tick", &mut out);
            p.flush_idle(Duration::from_millis(500), &mut out);
            if flushed_after.is_none() && !oom_times(&out).is_empty() {
                flushed_after = Some(i * 100);
            }
        }
        assert_eq!(
            flushed_after,
            Some(500),
            "B flushed once quiet 500 ms by the clock"
        );
        assert_eq!(p.held_lines("b"), 0);
        assert_eq!(p.held_lines("a"), 1, "A's last record may still get lines");
        assert_eq!(oom_times(&out).len(), 1);
    }

    #[test]
    fn problem_reports_are_rate_limited_by_the_clock() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let mut p = on_clock(&clock);
        p.add_source(
            "j",
            SourceSpec {
                format: Some(Format::Json),
                multiline: Some(false),
                max_message: None,
            },
        );
        let mut out = Vec::new();
        let problems = |out: &[Event]| {
            out.iter()
                .filter(|e| e.kind == "io.opsloop.log.input_problem")
                .count()
        };
        p.push_line("j", "bad 1", &mut out);
        p.push_line("j", "bad 2", &mut out);
        clock.advance(Duration::from_secs(59));
        p.push_line("j", "bad 3", &mut out);
        p.flush_idle(Duration::from_secs(1), &mut out);
        assert_eq!(problems(&out), 1);
        clock.advance(Duration::from_secs(1));
        p.flush_idle(Duration::from_secs(1), &mut out);
        assert_eq!(
            problems(&out),
            2,
            "a minute by the clock: the count of the rest"
        );
        let last = out
            .iter()
            .rev()
            .find(|e| e.kind == "io.opsloop.log.input_problem");
        assert_eq!(last.map(|e| e.data["count"].as_u64()), Some(Some(2)));
    }

    #[test]
    fn impossible_dates_are_reported_and_kept_raw() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let mut p = on_clock(&clock);
        syslog(&mut p, "s");
        let mut out = Vec::new();
        let o = p.push_line("s", &format!("Feb 30 11:00:00 {OOM}"), &mut out);
        assert!(o.parse_failed);
        p.flush_all(&mut out);
        assert_eq!(
            oom_times(&out),
            [""],
            "the rule still sees the raw message, undated"
        );
        assert!(out.iter().any(|e| e.kind == "io.opsloop.log.input_problem"));
    }

    #[test]
    fn cri_partial_lines_hold_their_position_until_complete() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let mut p = on_clock(&clock);
        p.add_source(
            "cri",
            SourceSpec {
                format: Some(Format::Plain),
                multiline: None,
                max_message: None,
            },
        );
        let mut out = Vec::new();
        p.push_line(
            "cri",
            "2024-01-02T03:04:05.000Z stdout P Out of memory: ",
            &mut out,
        );
        p.push_line("cri", "2024-01-02T03:04:05.001Z stderr F other", &mut out);
        p.push_line("cri", "2024-01-02T03:04:05.002Z stderr F more", &mut out);
        assert_eq!(p.held_lines("cri"), 3, "the stdout part holds from line 1");
        p.push_line(
            "cri",
            "2024-01-02T03:04:05.003Z stdout F Killed process 1 (x)",
            &mut out,
        );
        assert_eq!(
            p.held_lines("cri"),
            4,
            "the joined record, pending now, starts at line 1"
        );
        p.flush_all(&mut out);
        assert_eq!(oom_times(&out), ["2024-01-02T03:04:05.000Z"]);
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
