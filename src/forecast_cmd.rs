//! `opsloop forecast`: flags and output of the resource prediction loop; reading, preparation,
//! model choice, intervals, capacity warnings and plots live in `opsloop-forecast`.

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use opsloop_core::time::{format_rfc3339, parse_duration};
use opsloop_forecast::capacity::{self, CapacityWarning, Direction, Threshold};
use opsloop_forecast::input::{self, RowProblem};
use opsloop_forecast::prometheus::{PrometheusClient, RangeQuery};
use opsloop_forecast::{ForecastOptions, Horizon, Outcome, Series, forecast_series, plot};
use serde::Serialize;

use crate::{Output, exit};

/// Flags of `opsloop forecast`.
#[derive(Args, Debug)]
pub struct ForecastArgs {
    /// CSV or JSON `timestamp,value[,series]` file (RFC 3339 or Unix seconds); `-` reads
    /// stdin. Repeatable.
    #[arg(long = "input", value_name = "FILE|-")]
    inputs: Vec<PathBuf>,
    /// Prometheus server to query (`http://host:9090`); one forecast per returned series.
    #[arg(long, value_name = "URL", requires = "query")]
    prometheus: Option<String>,
    /// PromQL for `--prometheus` (counters through `rate(...)`).
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    query: Option<String>,
    /// History to fetch from Prometheus.
    #[arg(long, value_name = "DURATION", default_value = "14d")]
    range: String,
    /// Query resolution.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    step: String,
    /// End of the queried range (RFC 3339 or Unix seconds) [default: now].
    #[arg(long, value_name = "TIME")]
    end: Option<String>,
    /// Give up on Prometheus after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    timeout: String,
    /// Largest Prometheus answer accepted, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    max_answer_mib: usize,
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
        self.output
    }
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

fn duration_ms(flag: &str, text: &str) -> Result<i64> {
    let d = parse_duration(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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
    let range_ms = duration_ms("--range", &args.range)?;
    let step_ms = duration_ms("--step", &args.step)?;
    if step_ms <= 0 {
        bail!("--step must be positive");
    }
    let end_ms = match &args.end {
        Some(text) => input::parse_timestamp(text)
            .with_context(|| format!("--end {text:?} is not RFC 3339 or Unix seconds"))?,
        None => opsloop_core::time::now_ms(),
    };
    // Aligned to the step, so repeated runs ask Prometheus for the same grid.
    let end_ms = end_ms - end_ms.rem_euclid(step_ms);
    let timeout =
        Duration::from_millis(u64::try_from(duration_ms("--timeout", &args.timeout)?).unwrap_or(0));
    let client = PrometheusClient::new(url, timeout, args.max_answer_mib.saturating_mul(1 << 20))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let read = runtime.block_on(client.query_range(&RangeQuery {
        query: query.to_owned(),
        start_ms: end_ms.saturating_sub(range_ms),
        end_ms,
        step_ms,
    }))?;
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

/// Runs `opsloop forecast`.
pub fn run(args: ForecastArgs) -> Result<u8> {
    let (options, threshold) = options(&args)?;
    let mut series = Vec::new();
    let mut problems = Vec::new();
    read_files(&args.inputs, &mut series, &mut problems)?;
    if let (Some(url), Some(query)) = (&args.prometheus, &args.query) {
        let (found, trouble) = query_prometheus(&args, url, query)?;
        if found.is_empty() {
            bail!("{url}: the query returned no series: {query}");
        }
        series.extend(found);
        problems.extend(trouble);
    } else if args.inputs.is_empty() {
        bail!("nothing to forecast: give --input FILE (or -) or --prometheus URL --query PROMQL");
    }
    if series.is_empty() {
        bail!("no series in the input ({} row problem(s))", problems.len());
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
        eprintln!(
            "opsloop: {}: {} (row skipped)",
            problem.position, problem.message
        );
    }
    for failure in &failures {
        eprintln!("opsloop: cannot forecast {}", failure.error);
    }
    Ok(if failures.is_empty() && problems.is_empty() {
        exit::OK
    } else {
        exit::INPUT_PROBLEMS
    })
}
