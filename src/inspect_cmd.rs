//! `opsloop inspect`: flags, wiring and exit code.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use opsloop_logs::anomaly::AnomalyConfig;
use opsloop_logs::inspect::{InspectOptions, Inspector, Report, current_year};
use opsloop_logs::miner::{MinerConfig, MinerState};
use opsloop_logs::parse::Format;
use opsloop_logs::rules::{RuleSet, Severity};

use crate::{Output, exit, render};

/// Bytes a `--state` file may have: a full miner (20,000 templates of long messages with
/// their evidence) stays well below this.
const MAX_STATE_BYTES: u64 = 256 << 20;

/// What to print per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// One JSON object per record: file, line, template_id, template.
    Assignments,
    /// One CloudEvent (JSON) per finding: rule matches and anomalies, as they happen.
    Events,
}

/// Multi-line joining.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Multiline {
    /// On for every format but raw.
    Auto,
    /// Join indented / `Caused by:` lines (and, for timestamped formats, lines that do not
    /// start a record) to the record before.
    On,
    /// Every line is a record.
    Off,
}

/// Flags of `opsloop inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Log files (plain or gzip); `-` or nothing reads stdin.
    #[arg(value_name = "FILE")]
    files: Vec<String>,
    /// Parser: auto (detect per file), raw, json, logfmt, syslog, access, klog, plain, regex.
    #[arg(long, default_value = "auto", value_name = "PARSER")]
    parser: String,
    /// Named-regex parser: groups `msg` (required), `ts`, `level`; others become fields.
    #[arg(long, value_name = "REGEX")]
    pattern: Option<String>,
    /// Join stack-trace lines to their record.
    #[arg(long, value_enum, default_value_t = Multiline::Auto)]
    multiline: Multiline,
    /// Rule file or directory of *.yaml rule files (repeatable).
    #[arg(long, value_name = "FILE|DIR")]
    rules: Vec<PathBuf>,
    /// Do not load the built-in rule pack.
    #[arg(long)]
    no_builtin_rules: bool,
    /// Miner state: loaded if it exists, saved when done, so ids carry over between runs.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Print one JSON object per record (assignments) or per finding (events) instead of the
    /// report.
    #[arg(long, value_enum)]
    emit: Option<Emit>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Exit 1 when a rule of this severity or worse fired (info, warning, error, critical).
    #[arg(long, value_name = "SEVERITY")]
    fail_on: Option<Severity>,
    /// Templates listed in the text report.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Records before new templates count as anomalies.
    #[arg(long, default_value_t = 1000)]
    warmup: u64,
    /// Live templates kept (least recently seen evicted past this).
    #[arg(long, default_value_t = MinerConfig::default().max_templates)]
    max_templates: usize,
    /// Year for timestamps written without one (RFC 3164 syslog, klog).
    #[arg(long)]
    year: Option<i64>,
    /// Longest line kept whole, in bytes; longer lines are cut and reported.
    #[arg(long, default_value_t = opsloop_logs::input::DEFAULT_MAX_LINE)]
    max_line_bytes: usize,
    /// Tokens of a message that form its template; the rest become one `<*>`.
    #[arg(long, default_value_t = opsloop_logs::miner::MAX_TOKENS)]
    max_tokens: usize,
    /// Problems listed with file and line in the report; the rest are only counted.
    #[arg(long, default_value_t = opsloop_logs::inspect::DEFAULT_MAX_PROBLEMS)]
    max_problems: usize,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
}

impl InspectArgs {
    /// The report format asked for.
    pub fn output(&self) -> Output {
        self.output
    }
}

/// Runs `opsloop inspect`.
pub fn run(args: InspectArgs) -> Result<u8> {
    let format = match args.parser.as_str() {
        "auto" => None,
        p => Some(p.parse::<Format>().map_err(anyhow::Error::msg)?),
    };
    if format == Some(Format::Regex) && args.pattern.is_none() {
        bail!("--parser regex needs --pattern");
    }
    let rules = load_all_rules(&args)?;
    let options = InspectOptions {
        format,
        pattern: args.pattern.clone(),
        multiline: match args.multiline {
            Multiline::Auto => None,
            Multiline::On => Some(true),
            Multiline::Off => Some(false),
        },
        miner: MinerConfig {
            max_templates: args.max_templates.max(1),
            max_tokens: args.max_tokens.max(1),
            ..MinerConfig::default()
        },
        anomaly: AnomalyConfig {
            warmup_records: args.warmup,
            ..AnomalyConfig::default()
        },
        max_line: args.max_line_bytes.max(1),
        year: args.year,
        max_problems: args.max_problems,
    };
    // Validate the pattern once, up front, rather than once per file.
    if let Some(p) = &options.pattern {
        opsloop_logs::parse::Parser::with_pattern(p, options.year.unwrap_or_else(current_year))
            .with_context(|| "--pattern".to_string())?;
    }
    let mut inspector = Inspector::new(options, rules);
    if let Some(path) = &args.state
        && path.exists()
    {
        // A state of the default bounds is a few MiB; a file far larger is not one of ours.
        let size = std::fs::metadata(path)
            .with_context(|| format!("reading state {}", path.display()))?
            .len();
        if size > MAX_STATE_BYTES {
            bail!(
                "state {}: {size} bytes, more than a miner state can be ({MAX_STATE_BYTES})",
                path.display()
            );
        }
        let file = std::fs::File::open(path)
            .with_context(|| format!("reading state {}", path.display()))?;
        // Parsed as it is read: the text itself is never held whole.
        let state: MinerState = serde_json::from_reader(io::BufReader::new(file))
            .with_context(|| format!("state {}: not an opsloop miner state", path.display()))?;
        inspector
            .miner_mut()
            .restore(state)
            .with_context(|| format!("state {}", path.display()))?;
    }
    match args.emit {
        Some(Emit::Assignments) => {
            inspector.emit_assignments(Box::new(BufWriter::with_capacity(1 << 16, io::stdout())))
        }
        Some(Emit::Events) => {
            inspector.emit_events(Box::new(BufWriter::with_capacity(1 << 16, io::stdout())))
        }
        None => {}
    }
    let files = if args.files.is_empty() {
        vec!["-".to_string()]
    } else {
        args.files.clone()
    };
    let bar = progress_bar(&files, args.no_progress);
    let mut done_before = 0u64;
    for path in &files {
        let mut last = 0u64;
        inspector.inspect_path(path, &mut |bytes| {
            last = bytes;
            if let Some(b) = &bar {
                b.set_position(done_before + bytes);
            }
        });
        done_before += last;
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let (report, miner, write_error) = inspector.finish();
    if let Some(e) = write_error
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        bail!("writing assignments: {e}");
    }
    if let Some(path) = &args.state {
        save_state(path, miner.snapshot())?;
    }
    // The process ends after the report: freeing up to the template cap's worth of small
    // allocations one by one would only delay the exit (a tenth of the run on hostile input).
    std::mem::forget(miner);
    if args.emit.is_none() {
        let stdout = io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let printed = match args.output {
            Output::Json => serde_json::to_writer_pretty(&mut out, &report)
                .map_err(io::Error::from)
                .and_then(|_| writeln!(out)),
            Output::Text => render::report(&mut out, &report, args.top, io::stdout().is_terminal()),
        };
        match printed.and_then(|_| out.flush()) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => bail!("writing report: {e}"),
            _ => {}
        }
    }
    for f in &report.files {
        if let Some(e) = &f.error {
            eprintln!("opsloop: {}: {e}", f.path);
        }
    }
    Ok(exit_code(&report, args.fail_on))
}

fn exit_code(report: &Report, fail_on: Option<Severity>) -> u8 {
    if report.files.iter().any(|f| f.error.is_some()) {
        return exit::ERROR;
    }
    if let Some(min) = fail_on
        && report.rule_hits.iter().any(|h| h.severity >= min)
    {
        return exit::RULE_FIRED;
    }
    if report.summary.problems > 0 {
        return exit::INPUT_PROBLEMS;
    }
    exit::OK
}

fn load_all_rules(args: &InspectArgs) -> Result<RuleSet> {
    Ok(RuleSet::load(!args.no_builtin_rules, &args.rules)?)
}

fn save_state(path: &std::path::Path, state: MinerState) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let json = state_within(state, MAX_STATE_BYTES as usize)?;
    std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The state as JSON of at most `max` bytes, so that the next run can read it: what does not
/// fit is left out, the evidence towards new variables first, then the least used templates
/// (a message of theirs starts a template again; aliases to them go with them).
fn state_within(mut state: MinerState, max: usize) -> Result<Vec<u8>> {
    let mut json = serde_json::to_vec(&state)?;
    if json.len() <= max {
        return Ok(json);
    }
    for t in &mut state.templates {
        t.variants = Vec::new();
    }
    state.templates.sort_by_key(|t| std::cmp::Reverse(t.count));
    loop {
        json = serde_json::to_vec(&state)?;
        if json.len() <= max || state.templates.is_empty() {
            break;
        }
        // Keep the share of templates that fits, a little less to converge quickly.
        let keep =
            (state.templates.len() as f64 * (max as f64 / json.len() as f64) * 0.95) as usize;
        state
            .templates
            .truncate(keep.min(state.templates.len() - 1));
        let kept: std::collections::HashSet<&str> =
            state.templates.iter().map(|t| t.id.as_str()).collect();
        state.aliases.retain(|_, to| kept.contains(to.as_str()));
    }
    if json.len() > max {
        bail!("the miner state does not fit in {max} bytes even without templates; not saved");
    }
    eprintln!(
        "warning: the miner state was larger than {max} bytes; kept the {} most used templates",
        state.templates.len()
    );
    Ok(json)
}

/// A byte progress bar on a terminal, for inputs over 16 MiB.
fn progress_bar(files: &[String], disabled: bool) -> Option<ProgressBar> {
    if disabled || !io::stderr().is_terminal() {
        return None;
    }
    let total: u64 = files
        .iter()
        .filter(|f| *f != "-")
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    if total < 16 << 20 || files.iter().any(|f| f == "-" || f.ends_with(".gz")) {
        return None;
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{spinner} {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsloop_logs::miner::TemplateMiner;

    #[test]
    fn a_state_too_large_keeps_the_most_used_templates() {
        let mut miner = TemplateMiner::default();
        // Messages of different lengths never share a template.
        for i in 1..=150 {
            let line = "word ".repeat(i);
            for _ in 0..(i % 7 + 1) {
                miner.add(&line);
            }
        }
        let full = serde_json::to_vec(&miner.snapshot()).unwrap();
        let max = full.len() / 3;
        let json = state_within(miner.snapshot(), max).unwrap();
        assert!(json.len() <= max);
        let state: MinerState = serde_json::from_slice(&json).unwrap();
        assert!(!state.templates.is_empty());
        // The kept ones are the most used: none left out was used more than one kept.
        let least_kept = state.templates.iter().map(|t| t.count).min().unwrap();
        assert!(least_kept >= 5, "kept a template used {least_kept} times");
        // A state within bounds is written as it is.
        assert_eq!(state_within(miner.snapshot(), usize::MAX).unwrap(), full);
    }
}
