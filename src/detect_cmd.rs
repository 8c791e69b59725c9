//! `opsloop detect`: flags and output of streaming metric anomaly detection (a file, stdin or a
//! Prometheus range query; CSV, JSON or text; an optional SVG plot); the detector, the reader,
//! the stretches and the plot live in `opsloop-detect`, the Prometheus client in
//! `opsloop-forecast`.
//!
//! Memory: CSV rows are written as they are scored; text output keeps only the stretches; JSON
//! keeps every row (one document), and `--plot` keeps 24 bytes per row.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use opsloop_detect::detector::Point;
use opsloop_detect::input::{self, Row, RowProblem, TimestampCheck};
use opsloop_detect::plot::{self, PlotLabels, PlotRow};
use opsloop_detect::stretches::StretchTracker;
use opsloop_detect::{Detector, DetectorConfig, default_threshold};
use opsloop_forecast::Labels;

use crate::{Output, exit};

/// How `detect` prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DetectOutput {
    /// `timestamp,value,anomaly_score[,anomaly]`, one row per input row, streamed (with
    /// `--prometheus`, a leading `series` column).
    Csv,
    /// One JSON document: rows, stretches, problems (per series with `--prometheus`).
    Json,
    /// The anomalous stretches, readable.
    Text,
}

/// Flags of `opsloop detect`.
#[derive(Args, Debug)]
pub struct DetectArgs {
    /// CSV or JSON `timestamp,value` input (a Prometheus query_range answer too); `-` reads stdin.
    #[arg(
        long,
        value_name = "FILE|-",
        required_unless_present = "prometheus",
        conflicts_with = "prometheus"
    )]
    input: Option<PathBuf>,
    /// Prometheus input (`--prometheus URL --query PROMQL ...`); every returned series is
    /// scored.
    #[command(flatten)]
    prom: crate::prometheus_args::PrometheusArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DetectOutput::Csv)]
    output: DetectOutput,
    /// Score at or above which a row is anomalous; adds the `anomaly` column to CSV. It is
    /// also the detector's alarm level (one alarm per episode), as in the agent's jobs
    /// [default for text and JSON: the shipped threshold].
    #[arg(long, value_name = "X")]
    threshold: Option<f64>,
    /// Write an SVG plot: the series with its flagged stretches, and the score (several
    /// series: FILE-1.svg, FILE-2.svg, …).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

impl DetectArgs {
    /// The output format, as the binary's error reporting knows it.
    pub fn output(&self) -> Output {
        match self.output {
            DetectOutput::Json => Output::Json,
            DetectOutput::Csv | DetectOutput::Text => Output::Text,
        }
    }
}

/// Writes a CSV field, quoted when it must be.
fn csv_field(out: &mut impl Write, field: &str) -> io::Result<()> {
    if field.contains([',', '"', '\n', '\r']) {
        write!(out, "\"{}\"", field.replace('"', "\"\""))
    } else {
        out.write_all(field.as_bytes())
    }
}

/// Runs `opsloop detect`. A closed stdout (`| head`) ends the run quietly.
pub fn run(args: DetectArgs) -> Result<u8> {
    match detect(args) {
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(exit::OK)
        }
        other => other,
    }
}

/// A stretch with the timestamps of its rows, as printed.
struct FoundStretch {
    start: String,
    end: String,
    rows: usize,
    peak: f64,
    peak_at: String,
    /// Plot positions of its first and last row.
    x: (f64, f64),
}

/// Timestamps and plot positions of the stretch going on.
#[derive(Default)]
struct OpenTimes {
    start: (String, f64),
    end: (String, f64),
    peak_at: String,
}

/// One series being scored: the detector, its stretches, and what the output keeps.
struct SeriesRun<'a> {
    /// How the output names it (the PromQL form with `--prometheus`, else the input's name).
    name: String,
    labels: Option<Labels>,
    threshold: f64,
    output: DetectOutput,
    /// The CSV `anomaly` column is written.
    flag_column: bool,
    /// The CSV `series` column is written, with this text.
    series_column: Option<&'a str>,
    detector: Detector,
    tracker: StretchTracker,
    rows: usize,
    scored: usize,
    /// Rows of the JSON document (JSON output only).
    json_rows: Vec<serde_json::Value>,
    /// Rows of the plot (`--plot` only).
    plot_rows: Option<Vec<PlotRow>>,
    /// The first row's time (Unix s): the plot's x axis counts hours from it; `None`: rows.
    origin: Option<f64>,
    x: f64,
    open: OpenTimes,
    found: Vec<FoundStretch>,
}

impl<'a> SeriesRun<'a> {
    fn new(
        name: String,
        args: &DetectArgs,
        threshold: f64,
        series_column: Option<&'a str>,
    ) -> Self {
        SeriesRun {
            name,
            labels: None,
            threshold,
            output: args.output,
            flag_column: args.threshold.is_some(),
            series_column,
            // The threshold is the detector's alarm level too, as in the agent's jobs: one
            // alarm per episode at the level rows are flagged at.
            detector: Detector::new(DetectorConfig {
                alarm_level: threshold,
                ..DetectorConfig::default()
            }),
            tracker: StretchTracker::new(threshold, StretchTracker::DEFAULT_GAP),
            rows: 0,
            scored: 0,
            json_rows: Vec::new(),
            plot_rows: args.plot.is_some().then(Vec::new),
            origin: None,
            x: 0.0,
            open: OpenTimes::default(),
            found: Vec::new(),
        }
    }

    /// Scores one row and writes or keeps it.
    fn push(
        &mut self,
        out: &mut impl Write,
        timestamp: &str,
        value_text: &str,
        value: Option<f64>,
    ) -> io::Result<()> {
        let index = self.rows;
        self.rows += 1;
        self.x = match (index, input::parse_timestamp(timestamp)) {
            (0, Some(t)) => {
                self.origin = Some(t);
                0.0
            }
            (_, Some(t)) if self.origin.is_some() => (t - self.origin.unwrap_or(t)) / 3600.0,
            // Without a first time the axis counts rows; an unreadable time keeps the last x.
            _ if self.origin.is_none() => index as f64,
            _ => self.x,
        };
        let point: Option<Point> = value.and_then(|v| self.detector.push_point(v));
        if let Some(p) = &point {
            self.scored += 1;
            if let Some(done) = self.tracker.push(index, p) {
                let open = std::mem::take(&mut self.open);
                self.found.push(FoundStretch {
                    start: open.start.0,
                    end: open.end.0,
                    rows: done.end - done.start + 1,
                    peak: done.peak,
                    peak_at: open.peak_at,
                    x: (open.start.1, open.end.1),
                });
            }
            if let Some(s) = self.tracker.open() {
                let here = (timestamp.to_string(), self.x);
                if s.start == index {
                    self.open.start = here.clone();
                }
                if s.end == index {
                    self.open.end = here;
                }
                if s.peak_at == index {
                    self.open.peak_at = timestamp.to_string();
                }
            }
        }
        let score = point.map(|p| p.score);
        if let Some(rows) = &mut self.plot_rows {
            rows.push(PlotRow {
                x: self.x,
                value,
                score,
            });
        }
        match self.output {
            DetectOutput::Csv => {
                if let Some(series) = self.series_column {
                    csv_field(out, series)?;
                    out.write_all(b",")?;
                }
                csv_field(out, timestamp)?;
                out.write_all(b",")?;
                csv_field(out, value_text)?;
                match score {
                    Some(s) => write!(out, ",{s}")?,
                    None => out.write_all(b",")?,
                }
                if self.flag_column {
                    match score {
                        Some(s) => write!(out, ",{}", u8::from(s >= self.threshold))?,
                        None => out.write_all(b",")?,
                    }
                }
                out.write_all(b"\n")?;
            }
            DetectOutput::Json => self.json_rows.push(serde_json::json!({
                "timestamp": timestamp,
                "value": value_text,
                "anomaly_score": score,
                "anomaly": score.map(|s| s >= self.threshold),
            })),
            DetectOutput::Text => {}
        }
        Ok(())
    }

    /// Closes the stretch still open at the end of the input.
    fn finish(&mut self) {
        if let Some(done) = self.tracker.finish() {
            let open = std::mem::take(&mut self.open);
            self.found.push(FoundStretch {
                start: open.start.0,
                end: open.end.0,
                rows: done.end - done.start + 1,
                peak: done.peak,
                peak_at: open.peak_at,
                x: (open.start.1, open.end.1),
            });
        }
    }

    fn stretches_json(&self) -> Vec<serde_json::Value> {
        self.found
            .iter()
            .map(|s| {
                serde_json::json!({
                    "start": s.start,
                    "end": s.end,
                    "rows": s.rows,
                    "peak_score": s.peak,
                    "peak_at": s.peak_at,
                })
            })
            .collect()
    }

    fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "{}: {} rows, {} scored; threshold {}; {} anomalous stretch(es)",
            self.name,
            self.rows,
            self.scored,
            self.threshold,
            self.found.len()
        )?;
        for s in &self.found {
            writeln!(
                out,
                "  {} .. {}  {} row(s), peak {:.3} at {}",
                s.start, s.end, s.rows, s.peak, s.peak_at
            )?;
        }
        Ok(())
    }

    /// Writes the plot to `path`.
    fn plot(&self, path: &Path) -> Result<()> {
        let Some(rows) = &self.plot_rows else {
            return Ok(());
        };
        let x_desc = match self.origin {
            Some(t) => format!(
                "hours since {}",
                opsloop_core::time::format_rfc3339((t * 1000.0) as i64)
            ),
            None => "row".to_string(),
        };
        let stretches: Vec<(f64, f64)> = self.found.iter().map(|s| s.x).collect();
        let doc = plot::svg(
            rows,
            &stretches,
            PlotLabels {
                title: &self.name,
                x_desc: &x_desc,
                threshold: self.threshold,
            },
        )?;
        std::fs::write(path, doc).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// The plot file of series `index` of `total`: `FILE.svg` alone, else `FILE-1.svg`, ….
fn plot_path(base: &Path, index: usize, total: usize) -> PathBuf {
    if total <= 1 {
        return base.to_path_buf();
    }
    let stem = base
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("detect");
    base.with_file_name(format!("{stem}-{}.svg", index + 1))
}

fn detect(args: DetectArgs) -> Result<u8> {
    let threshold = args.threshold.unwrap_or_else(default_threshold);
    if !(0.0..=1.0).contains(&threshold) {
        bail!("--threshold {threshold} is outside [0, 1]");
    }
    match (&args.prom.prometheus, &args.prom.query, &args.input) {
        (Some(url), Some(query), _) => detect_prometheus(&args, url, query, threshold),
        (_, _, Some(path)) => detect_file(&args, path, threshold),
        _ => bail!("nothing to score: give --input FILE (or -) or --prometheus URL --query PROMQL"),
    }
}

fn csv_header(out: &mut impl Write, series_column: bool, flag_column: bool) -> io::Result<()> {
    if series_column {
        out.write_all(b"series,")?;
    }
    out.write_all(b"timestamp,value,anomaly_score")?;
    if flag_column {
        out.write_all(b",anomaly")?;
    }
    out.write_all(b"\n")
}

fn detect_file(args: &DetectArgs, path: &Path, threshold: f64) -> Result<u8> {
    let from_stdin = path.as_os_str() == "-";
    let name = if from_stdin {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let reader: Box<dyn BufRead> = if from_stdin {
        Box::new(io::stdin().lock())
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("opening {name}"))?;
        Box::new(io::BufReader::new(file))
    };
    let mut rows = input::open(reader)
        .with_context(|| format!("reading {name}"))?
        .peekable();
    // An input unreadable from its first record gets no header on stdout, only the error.
    if let Some(Err(_)) = rows.peek()
        && let Some(Err(e)) = rows.next()
    {
        return Err(e).with_context(|| format!("reading {name}"));
    }

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.output == DetectOutput::Csv {
        csv_header(&mut out, false, args.threshold.is_some())?;
    }
    let mut run = SeriesRun::new(name.clone(), args, threshold, None);
    let mut check = TimestampCheck::default();
    let mut problems: Vec<(String, RowProblem)> = Vec::new();
    let mut report = |position: String, problem: RowProblem| {
        eprintln!("opsloop: {name}: {position}: {problem}");
        problems.push((position, problem));
    };
    for row in rows {
        let row: Row = row.with_context(|| format!("reading {name}"))?;
        if let Some(problem) = check.check(&row) {
            report(row.position.to_string(), problem);
        }
        let value = match &row.value {
            Ok(v) => Some(*v),
            Err(problem) => {
                report(
                    format!("{} (passed through unscored)", row.position),
                    problem.clone(),
                );
                None
            }
        };
        run.push(&mut out, &row.timestamp, &row.value_text, value)?;
        if from_stdin && args.output == DetectOutput::Csv {
            // A live pipe gets each row as it is scored.
            out.flush()?;
        }
    }
    run.finish();

    match args.output {
        DetectOutput::Csv => {}
        DetectOutput::Json => {
            let problems: Vec<_> = problems
                .iter()
                .map(|(pos, p)| serde_json::json!({ "position": pos, "message": p.to_string() }))
                .collect();
            let doc = serde_json::json!({
                "input": name,
                "threshold": threshold,
                "rows": run.json_rows,
                "scored_rows": run.scored,
                "stretches": run.stretches_json(),
                "problems": problems,
            });
            serde_json::to_writer(&mut out, &doc)?;
            out.write_all(b"\n")?;
        }
        DetectOutput::Text => {
            run.write_text(&mut out)?;
            if !problems.is_empty() {
                writeln!(out, "{} input problem(s), listed on stderr", problems.len())?;
            }
        }
    }
    out.flush()?;
    if let Some(path) = &args.plot {
        run.plot(path)?;
    }
    Ok(if problems.is_empty() {
        exit::OK
    } else {
        exit::INPUT_PROBLEMS
    })
}

/// Unix seconds as Prometheus writes them: whole seconds plain, else with milliseconds.
fn seconds_text(ms: i64) -> String {
    if ms.rem_euclid(1000) == 0 {
        ms.div_euclid(1000).to_string()
    } else {
        format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
    }
}

fn detect_prometheus(args: &DetectArgs, url: &str, query: &str, threshold: f64) -> Result<u8> {
    let read = args.prom.query_range(url, query)?;
    if read.series.is_empty() {
        bail!("{url}: the query returned no series: {query}");
    }
    let mut problems: Vec<(String, String)> = Vec::new();
    for p in &read.problems {
        eprintln!("opsloop: {}: {}", p.position, p.message);
        problems.push((p.position.clone(), p.message.clone()));
    }

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let csv = args.output == DetectOutput::Csv;
    if csv {
        // A `series` column whatever the number of series: a script's columns do not change
        // with what the query returns.
        csv_header(&mut out, true, args.threshold.is_some())?;
    }
    let total = read.series.len();
    let mut json_series = Vec::new();
    for (i, series) in read.series.iter().enumerate() {
        let mut run = SeriesRun::new(
            series.name.clone(),
            args,
            threshold,
            csv.then_some(series.name.as_str()),
        );
        run.labels = Some(series.labels.clone());
        for &(ms, v) in &series.points {
            let timestamp = seconds_text(ms);
            let value = if v.is_finite() {
                Some(v)
            } else {
                let problem = RowProblem::NotFinite(v.to_string());
                let position = format!("{} at {timestamp} (passed through unscored)", series.name);
                eprintln!("opsloop: {url}: {position}: {problem}");
                problems.push((position, problem.to_string()));
                None
            };
            run.push(&mut out, &timestamp, &v.to_string(), value)?;
        }
        run.finish();
        match args.output {
            DetectOutput::Csv => {}
            DetectOutput::Json => json_series.push(serde_json::json!({
                "series": run.name,
                "labels": run.labels,
                "rows": std::mem::take(&mut run.json_rows),
                "scored_rows": run.scored,
                "stretches": run.stretches_json(),
            })),
            DetectOutput::Text => run.write_text(&mut out)?,
        }
        if let Some(base) = &args.plot {
            run.plot(&plot_path(base, i, total))?;
        }
    }
    match args.output {
        DetectOutput::Json => {
            let problems: Vec<_> = problems
                .iter()
                .map(|(pos, m)| serde_json::json!({ "position": pos, "message": m }))
                .collect();
            let doc = serde_json::json!({
                "prometheus": opsloop_forecast::prometheus::redact_url(url),
                "query": query,
                "threshold": threshold,
                "series": json_series,
                "problems": problems,
            });
            serde_json::to_writer(&mut out, &doc)?;
            out.write_all(b"\n")?;
        }
        DetectOutput::Text if !problems.is_empty() => {
            writeln!(out, "{} input problem(s), listed on stderr", problems.len())?;
        }
        _ => {}
    }
    out.flush()?;
    Ok(if problems.is_empty() {
        exit::OK
    } else {
        exit::INPUT_PROBLEMS
    })
}
