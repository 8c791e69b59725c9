//! `opsloop forecast`: flags and output of the resource prediction loop; reading, preparation,
//! model choice, intervals, capacity warnings and plots live in `opsloop-forecast`.

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use crate::prometheus_args::duration_ms;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use opsloop_core::time::format_rfc3339;
use opsloop_forecast::capacity::{self, CapacityWarning, Direction, Threshold};
use opsloop_forecast::hpa::{self, ExternalMetric, HpaMetric, HpaOptions, HpaSpec, PrescaleBand};
use opsloop_forecast::input::{self, RowProblem};
use opsloop_forecast::{ForecastOptions, Horizon, Outcome, Series, forecast_series, plot};
use serde::Serialize;

use crate::{Output, exit};

/// Flags of `opsloop forecast`.
#[derive(Args, Debug)]
pub struct ForecastArgs {
    /// What else to derive from forecasts.
    #[command(subcommand)]
    command: Option<ForecastCommand>,
    /// CSV or JSON `timestamp,value[,series]` file (RFC 3339 or Unix seconds); `-` reads
    /// stdin. Repeatable.
    #[arg(long = "input", value_name = "FILE|-")]
    inputs: Vec<PathBuf>,
    /// Prometheus input (`--prometheus URL --query PROMQL ...`); one forecast per returned
    /// series.
    #[command(flatten)]
    prom: crate::prometheus_args::PrometheusArgs,
    /// How far ahead: steps (`288`) or a duration (`1d`) [default: one day, or 24 steps].
    #[arg(long, value_name = "N|DURATION")]
    horizon: Option<String>,
    /// Season lengths (`1d,7d`) [default: a day and a week, inferred from the step].
    #[arg(long, value_name = "DURATIONS", value_delimiter = ',')]
    season: Vec<String>,
    /// Robust z-score above which a point is an outlier (down-weighted, not deleted).
    #[arg(long, value_name = "Z", default_value_t = 3.0)]
    outlier_z: f64,
    /// Fill gaps up to this long; longer gaps are reported and left out of fitting.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    max_fill: String,
    /// Warn when the forecast reaches this value (same as --threshold-above).
    #[arg(long, value_name = "X", conflicts_with_all = ["threshold_above", "threshold_below"])]
    threshold: Option<f64>,
    /// Warn when the forecast reaches or exceeds this value.
    #[arg(long, value_name = "X", conflicts_with = "threshold_below")]
    threshold_above: Option<f64>,
    /// Warn when the forecast falls to or below this value.
    #[arg(long, value_name = "X")]
    threshold_below: Option<f64>,
    /// Write an SVG plot (several series: FILE-1.svg, FILE-2.svg, …).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

impl ForecastArgs {
    /// The output format, as the binary's error reporting knows it.
    pub fn output(&self) -> Output {
        match &self.command {
            Some(ForecastCommand::Hpa(hpa)) => hpa.output,
            None => self.output,
        }
    }
}

/// Subcommands of `opsloop forecast`.
#[derive(Subcommand, Debug)]
enum ForecastCommand {
    /// Propose an autoscaling/v2 HPA from a demand history, validated against the reactive HPA
    /// simulated on that history.
    Hpa(Box<HpaArgs>),
}

/// Which forecast the scheduled windows serve.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum BandArg {
    /// The point forecast.
    Value,
    /// The upper bound of the 80 % interval (more replica-hours, fewer misses).
    Upper80,
}

/// Flags of `opsloop forecast hpa`.
#[derive(Args, Debug)]
struct HpaArgs {
    /// Demand history: CSV or JSON `timestamp,value` (RFC 3339 or Unix seconds); `-` reads stdin.
    #[arg(long, value_name = "FILE|-")]
    demand: PathBuf,
    /// Demand one pod serves at 100 % (same unit as the demand).
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "cpu_per_pod",
        conflicts_with = "cpu_per_pod"
    )]
    per_pod_capacity: Option<f64>,
    /// CPU cores one pod is given (the demand is then in cores): an HPA on CPU utilisation.
    #[arg(long, value_name = "CORES")]
    cpu_per_pod: Option<f64>,
    /// Share of a pod's capacity the HPA aims at.
    #[arg(long, value_name = "0..1", default_value_t = 0.8)]
    target_utilization: f64,
    /// Per-pod metric the HPA reads with --per-pod-capacity.
    #[arg(long, value_name = "NAME", default_value = "requests_per_second")]
    metric: String,
    /// Time from pod creation to readiness, in the simulation.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    startup_delay: String,
    /// Length of a scheduled pre-scaling window.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    window: String,
    /// Which forecast the windows serve.
    #[arg(long, value_enum, default_value_t = BandArg::Value)]
    band: BandArg,
    /// In the simulation, hold each demand sample until the next (a sample is its bucket's
    /// rate) instead of interpolating linearly between samples.
    #[arg(long)]
    hold_demand: bool,
    /// Lowest replica count [default: serves the 5th percentile of the demand].
    #[arg(long, value_name = "N")]
    min_replicas: Option<u32>,
    /// Highest replica count [default: 1.5 × the peak at the target].
    #[arg(long, value_name = "N")]
    max_replicas: Option<u32>,
    /// Name of the HPA and of the Deployment it scales.
    #[arg(long, default_value = "app")]
    name: String,
    /// Namespace of the HPA.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// The predictive form: an HPA on the agent's forecast gauge (External metric) plus the
    /// Prometheus Adapter rule serving it.
    #[arg(long)]
    external: bool,
    /// The forecast job whose gauge the HPA reads [default: --name].
    #[arg(long, value_name = "JOB")]
    job: Option<String>,
    /// How far ahead the gauge looks (its `ahead` label).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    ahead: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// One series' result in the JSON document: the library's forecast plus the warning.
#[derive(Serialize)]
struct SeriesDoc<'a> {
    #[serde(flatten)]
    forecast: &'a opsloop_forecast::SeriesForecast,
    warning: Option<&'a CapacityWarning>,
}

#[derive(Serialize)]
struct Failure {
    series: String,
    error: String,
}

fn options(args: &ForecastArgs) -> Result<(ForecastOptions, Option<Threshold>)> {
    let mut options = ForecastOptions::default();
    if let Some(h) = &args.horizon {
        options.horizon = match h.parse::<usize>() {
            Ok(0) => bail!("--horizon: must be at least one step"),
            Ok(steps) => Horizon::Steps(steps),
            Err(_) => Horizon::Millis(duration_ms("--horizon", h)?),
        };
    }
    for season in &args.season {
        options
            .prepare
            .seasons_ms
            .push(duration_ms("--season", season)?);
    }
    if !(args.outlier_z > 0.0 && args.outlier_z.is_finite()) {
        bail!("--outlier-z {} must be a positive number", args.outlier_z);
    }
    options.prepare.outlier_z = args.outlier_z;
    options.prepare.max_fill_ms = duration_ms("--max-fill", &args.max_fill)?;
    let threshold = match (
        args.threshold.or(args.threshold_above),
        args.threshold_below,
    ) {
        (Some(value), _) => Some(Threshold {
            value,
            direction: Direction::Above,
        }),
        (None, Some(value)) => Some(Threshold {
            value,
            direction: Direction::Below,
        }),
        (None, None) => None,
    };
    if threshold.is_some_and(|t| !t.value.is_finite()) {
        bail!("--threshold must be a finite number");
    }
    Ok((options, threshold))
}

/// Reads every `--input`; a file that cannot be read at all is an error, bad rows are problems.
fn read_files(
    inputs: &[PathBuf],
    series: &mut Vec<Series>,
    problems: &mut Vec<RowProblem>,
) -> Result<()> {
    for path in inputs {
        let stdin = path.as_os_str() == "-";
        let name = if stdin {
            "<stdin>".to_owned()
        } else {
            path.display().to_string()
        };
        let mut text = String::new();
        if stdin {
            io::stdin()
                .read_to_string(&mut text)
                .with_context(|| format!("reading {name}"))?;
        } else {
            text = std::fs::read_to_string(path).with_context(|| format!("reading {name}"))?;
        }
        let read = input::read(&name, &text)?;
        series.extend(read.series);
        problems.extend(read.problems);
    }
    Ok(())
}

fn query_prometheus(
    args: &ForecastArgs,
    url: &str,
    query: &str,
) -> Result<(Vec<Series>, Vec<RowProblem>)> {
    let read = args.prom.query_range(url, query)?;
    Ok((read.series, read.problems))
}

fn progress_bar(count: usize) -> Option<ProgressBar> {
    if count < 20 || !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(count as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {pos}/{len} series [{bar:30}] eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

fn plot_path(base: &Path, index: usize, total: usize) -> PathBuf {
    if total <= 1 {
        return base.to_path_buf();
    }
    let stem = base
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("forecast");
    base.with_file_name(format!("{stem}-{}.svg", index + 1))
}

fn short(v: f64) -> String {
    if v.abs() >= 1e5 || (v != 0.0 && v.abs() < 1e-2) {
        format!("{v:.3e}")
    } else {
        format!("{v:.3}")
    }
}

/// Whether `e` is a write to a closed pipe (`opsloop forecast … | head`): the reader has
/// what it wanted, which is a clean end, not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(io::ErrorKind::BrokenPipe)
    })
}

/// A line on stderr; a closed stderr is not worth a panic (`eprintln!` would panic).
fn warn(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// The first row problems (position and reason) for an error message, and how many more.
fn problems_summary(problems: &[RowProblem]) -> String {
    const SHOWN: usize = 5;
    let mut text: Vec<String> = problems
        .iter()
        .take(SHOWN)
        .map(|p| format!("{}: {}", p.position, p.message))
        .collect();
    if problems.len() > SHOWN {
        text.push(format!("and {} more", problems.len() - SHOWN));
    }
    text.join("; ")
}

/// Runs `opsloop forecast hpa`.
fn run_hpa(args: &HpaArgs) -> Result<u8> {
    match run_hpa_writing(args) {
        Err(e) if is_broken_pipe(&e) => Ok(exit::OK),
        other => other,
    }
}

fn run_hpa_writing(args: &HpaArgs) -> Result<u8> {
    let (capacity, metric) = match (args.per_pod_capacity, args.cpu_per_pod) {
        (Some(n), _) => (
            n,
            HpaMetric::Pods {
                name: args.metric.clone(),
            },
        ),
        (None, Some(cores)) => (cores, HpaMetric::Cpu),
        (None, None) => bail!("give --per-pod-capacity N or --cpu-per-pod CORES"),
    };
    if !(capacity.is_finite() && capacity > 0.0) {
        bail!("the capacity of a pod must be a positive number, not {capacity}");
    }
    if !(args.target_utilization > 0.0 && args.target_utilization <= 1.0) {
        bail!(
            "--target-utilization {} must be in (0, 1]",
            args.target_utilization
        );
    }
    let ahead_ms = duration_ms("--ahead", &args.ahead)?;
    if ahead_ms <= 0 {
        bail!("--ahead must be positive");
    }
    // Spelled as the agent's gauge label is (`60m` → `1h`), or the HPA would select nothing.
    let ahead = hpa::ahead_label(ahead_ms);
    let options = HpaOptions {
        capacity_per_pod: capacity,
        target_utilization: args.target_utilization,
        startup_delay_ms: duration_ms("--startup-delay", &args.startup_delay)?,
        window_ms: duration_ms("--window", &args.window)?.max(1),
        min_replicas: args.min_replicas,
        max_replicas: args.max_replicas,
        external_ahead_ms: args.external.then_some(ahead_ms),
        hold_demand: args.hold_demand,
        band: match args.band {
            BandArg::Value => PrescaleBand::Value,
            BandArg::Upper80 => PrescaleBand::Upper80,
        },
        ..HpaOptions::default()
    };
    let mut series = Vec::new();
    let mut problems = Vec::new();
    read_files(
        std::slice::from_ref(&args.demand),
        &mut series,
        &mut problems,
    )?;
    let [demand] = series.as_slice() else {
        bail!("--demand must hold one series, it holds {}", series.len());
    };
    let proposal = hpa::propose(demand, &options)?;
    let job = args.job.clone().unwrap_or_else(|| args.name.clone());
    let target = match metric {
        HpaMetric::Cpu => 100.0 * args.target_utilization,
        HpaMetric::Pods { .. } => proposal.target_per_pod,
    };
    let spec = HpaSpec {
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        metric,
        external: args.external.then(|| ExternalMetric {
            job: job.clone(),
            ahead: ahead.clone(),
            target_per_pod: proposal.target_per_pod,
        }),
        target,
        min_replicas: proposal.min_replicas,
        max_replicas: proposal.max_replicas,
        scale_down_window_seconds: 300,
        windows: proposal.windows.clone(),
    };
    let yaml = hpa::hpa_yaml(&spec);
    let rule = args.external.then(|| hpa::adapter_rule(&job, &ahead));
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match args.output {
        Output::Json => {
            let doc = serde_json::json!({
                "series": proposal.series,
                "hpa": yaml,
                "adapter_rule": rule,
                "spec": spec,
                "validation": proposal,
                "problems": problems,
            });
            serde_json::to_writer(&mut out, &doc)?;
            writeln!(out)?;
        }
        Output::Text => {
            // Comments only, so the whole output stays valid YAML for kubectl.
            let days = (proposal.validated_to - proposal.validated_from) as f64 / 86_400_000.0;
            writeln!(
                out,
                "# {}: validated on {} … {} ({days:.1} days), day-ahead forecasts refitted daily",
                proposal.series,
                format_rfc3339(proposal.validated_from),
                format_rfc3339(proposal.validated_to)
            )?;
            writeln!(
                out,
                "# {:<10} {:>22} {:>14} {:>12}",
                "", "under-provisioned min", "replica-hours", "scale events"
            )?;
            for (label, r) in [
                ("reactive", proposal.reactive),
                ("proposal", proposal.proposal),
            ] {
                writeln!(
                    out,
                    "# {label:<10} {:>22.1} {:>14.1} {:>12}",
                    r.under_provisioned_minutes, r.replica_hours, r.scale_events
                )?;
            }
            if !proposal.forecast_failures.is_empty() {
                writeln!(
                    out,
                    "# {} day(s) without a forecast (no pre-scaling)",
                    proposal.forecast_failures.len()
                )?;
            }
            out.write_all(yaml.as_bytes())?;
            if let Some(rule) = &rule {
                writeln!(out, "---")?;
                out.write_all(rule.as_bytes())?;
            }
        }
    }
    out.flush()?;
    for problem in &problems {
        warn(format_args!(
            "opsloop: {}: {} (row skipped)",
            problem.position, problem.message
        ));
    }
    Ok(if problems.is_empty() {
        exit::OK
    } else {
        exit::INPUT_PROBLEMS
    })
}

/// Runs `opsloop forecast`.
pub fn run(args: ForecastArgs) -> Result<u8> {
    if let Some(ForecastCommand::Hpa(hpa)) = &args.command {
        return run_hpa(hpa);
    }
    match run_forecast(&args) {
        Err(e) if is_broken_pipe(&e) => Ok(exit::OK),
        other => other,
    }
}

fn run_forecast(args: &ForecastArgs) -> Result<u8> {
    let (options, threshold) = options(args)?;
    let mut series = Vec::new();
    let mut problems = Vec::new();
    read_files(&args.inputs, &mut series, &mut problems)?;
    if let (Some(url), Some(query)) = (&args.prom.prometheus, &args.prom.query) {
        let (found, trouble) = query_prometheus(args, url, query)?;
        if found.is_empty() {
            bail!("{url}: the query returned no series: {query}");
        }
        series.extend(found);
        problems.extend(trouble);
    } else if args.inputs.is_empty() {
        bail!("nothing to forecast: give --input FILE (or -) or --prometheus URL --query PROMQL");
    }
    if series.is_empty() {
        bail!(
            "no series in the input ({} row problem(s): {})",
            problems.len(),
            problems_summary(&problems)
        );
    }

    let bar = progress_bar(series.len());
    let mut outcomes: Vec<(Outcome, Option<CapacityWarning>)> = Vec::new();
    let mut failures = Vec::new();
    for s in &series {
        match forecast_series(s, &options) {
            Ok(outcome) => {
                let last = outcome
                    .prepared
                    .values
                    .iter()
                    .rev()
                    .copied()
                    .find(|v| v.is_finite());
                let warning = threshold.and_then(|t| {
                    capacity::check(
                        &outcome.forecast.forecast,
                        outcome.prepared.last_ms(),
                        last,
                        t,
                    )
                });
                outcomes.push((outcome, warning));
            }
            Err(e) => failures.push(Failure {
                series: s.name.clone(),
                error: e.to_string(),
            }),
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }

    if let Some(base) = &args.plot {
        for (i, (outcome, _)) in outcomes.iter().enumerate() {
            let path = plot_path(base, i, outcomes.len());
            let history = outcome.forecast.forecast.len().saturating_mul(3).max(100);
            let doc = plot::svg(&outcome.prepared, &outcome.forecast, threshold, history)?;
            std::fs::write(&path, doc).with_context(|| format!("writing {}", path.display()))?;
        }
    }

    let stdout = io::stdout();
    let mut out = stdout.lock();
    match args.output {
        Output::Json => {
            let docs: Vec<SeriesDoc<'_>> = outcomes
                .iter()
                .map(|(o, w)| SeriesDoc {
                    forecast: &o.forecast,
                    warning: w.as_ref(),
                })
                .collect();
            let doc = serde_json::json!({
                "series": docs,
                "failed": failures,
                "problems": problems,
            });
            serde_json::to_writer(&mut out, &doc)?;
            writeln!(out)?;
        }
        Output::Text => {
            writeln!(
                out,
                "{:<40} {:<20} {:>6}  {:<34} warning",
                "series", "model", "MASE", "next values"
            )?;
            for (o, w) in &outcomes {
                let f = &o.forecast;
                let mase = f
                    .backtest
                    .candidates
                    .iter()
                    .find(|c| c.model == f.model)
                    .and_then(|c| c.mase)
                    .map_or_else(|| "-".to_owned(), |m| format!("{m:.3}"));
                let next: Vec<String> = f.forecast.iter().take(3).map(|p| short(p.value)).collect();
                writeln!(
                    out,
                    "{:<40} {:<20} {:>6}  {:<34} {}",
                    f.series,
                    f.model.name(),
                    mase,
                    next.join(" "),
                    w.as_ref().map_or("", |w| w.message.as_str())
                )?;
                let p = &f.prepared;
                if p.filled + p.dropped + p.outliers + p.duplicates + p.off_grid > 0 {
                    writeln!(
                        out,
                        "  prepared: {} filled, {} dropped in {} gap(s), {} outliers, {} duplicates, {} off-grid",
                        p.filled,
                        p.dropped,
                        p.gaps.len(),
                        p.outliers,
                        p.duplicates,
                        p.off_grid
                    )?;
                }
                for note in &f.notes {
                    writeln!(out, "  note: {note}")?;
                }
                if let (Some(first), Some(last)) = (f.forecast.first(), f.forecast.last()) {
                    writeln!(
                        out,
                        "  forecast {} … {} ({} points)",
                        format_rfc3339(first.time_ms),
                        format_rfc3339(last.time_ms),
                        f.forecast.len()
                    )?;
                }
            }
        }
    }
    out.flush()?;
    for problem in &problems {
        warn(format_args!(
            "opsloop: {}: {} (row skipped)",
            problem.position, problem.message
        ));
    }
    for failure in &failures {
        warn(format_args!("opsloop: cannot forecast {}", failure.error));
    }
    Ok(if outcomes.is_empty() {
        // Not one series could be forecast: nothing usable came out (3 is for a partial run).
        exit::ERROR
    } else if failures.is_empty() && problems.is_empty() {
        exit::OK
    } else {
        exit::INPUT_PROBLEMS
    })
}
