//! `opsloop detect`: flags and output of streaming metric anomaly detection; the detector,
//! the reader and the stretches live in `opsloop-detect`.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use opsloop_detect::detector::Point;
use opsloop_detect::input::{self, Row, RowProblem, TimestampCheck};
use opsloop_detect::stretches::{Stretch, StretchTracker};
use opsloop_detect::{Detector, default_threshold};

use crate::{Output, exit};

/// How `detect` prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DetectOutput {
    /// `timestamp,value,anomaly_score[,anomaly]`, one row per input row, streamed.
    Csv,
    /// One JSON document: rows, stretches, problems.
    Json,
    /// The anomalous stretches, readable.
    Text,
}

/// Flags of `opsloop detect`.
#[derive(Args, Debug)]
pub struct DetectArgs {
    /// CSV or JSON `timestamp,value` input (a Prometheus query_range answer too); `-` reads stdin.
    #[arg(long, value_name = "FILE|-")]
    input: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DetectOutput::Csv)]
    output: DetectOutput,
    /// Score at or above which a row is anomalous; adds the `anomaly` column to CSV
    /// [default for text and JSON: the shipped threshold].
    #[arg(long, value_name = "X")]
    threshold: Option<f64>,
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

/// One row's result, kept for JSON and text output.
struct Scored {
    timestamp: String,
    value: String,
    score: Option<f64>,
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

fn detect(args: DetectArgs) -> Result<u8> {
    let threshold = args.threshold.unwrap_or_else(default_threshold);
    if !(0.0..=1.0).contains(&threshold) {
        bail!("--threshold {threshold} is outside [0, 1]");
    }
    let from_stdin = args.input.as_os_str() == "-";
    let name = if from_stdin {
        "<stdin>".to_string()
    } else {
        args.input.display().to_string()
    };
    let reader: Box<dyn BufRead> = if from_stdin {
        Box::new(io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.input).with_context(|| format!("opening {name}"))?;
        Box::new(io::BufReader::new(file))
    };
    let rows = input::open(reader).with_context(|| format!("reading {name}"))?;

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let csv = args.output == DetectOutput::Csv;
    let flag_column = args.threshold.is_some();
    if csv {
        out.write_all(b"timestamp,value,anomaly_score")?;
        if flag_column {
            out.write_all(b",anomaly")?;
        }
        out.write_all(b"\n")?;
    }

    let mut detector = Detector::default();
    let mut stretches = StretchTracker::new(threshold, StretchTracker::DEFAULT_GAP);
    let mut check = TimestampCheck::default();
    let mut kept: Vec<Scored> = Vec::new();
    let mut found: Vec<Stretch> = Vec::new();
    let mut problems: Vec<(String, RowProblem)> = Vec::new();
    let mut scored_rows = 0usize;
    let mut report = |position: String, problem: RowProblem| {
        eprintln!("opsloop: {name}: {position}: {problem}");
        problems.push((position, problem));
    };
    for (row_index, row) in rows.enumerate() {
        let row: Row = row.with_context(|| format!("reading {name}"))?;
        if let Some(problem) = check.check(&row) {
            report(row.position.to_string(), problem);
        }
        let point: Option<Point> = match &row.value {
            Ok(v) => detector.push_point(*v),
            Err(problem) => {
                report(
                    format!("{} (passed through unscored)", row.position),
                    problem.clone(),
                );
                None
            }
        };
        if let Some(p) = &point {
            scored_rows += 1;
            found.extend(stretches.push(row_index, p));
        }
        let score = point.map(|p| p.score);
        if csv {
            csv_field(&mut out, &row.timestamp)?;
            out.write_all(b",")?;
            csv_field(&mut out, &row.value_text)?;
            match score {
                Some(s) => write!(out, ",{s}")?,
                None => out.write_all(b",")?,
            }
            if flag_column {
                match score {
                    Some(s) => write!(out, ",{}", u8::from(s >= threshold))?,
                    None => out.write_all(b",")?,
                }
            }
            out.write_all(b"\n")?;
            if from_stdin {
                // A live pipe gets each row as it is scored.
                out.flush()?;
            }
        } else {
            kept.push(Scored {
                timestamp: row.timestamp,
                value: row.value_text,
                score,
            });
        }
    }
    found.extend(stretches.finish());

    // Stretches are indexed by row (unscored rows included), so they map onto `kept`.
    let at = |i: usize| kept.get(i).map_or("", |r| r.timestamp.as_str());
    match args.output {
        DetectOutput::Csv => {}
        DetectOutput::Json => {
            let rows: Vec<_> = kept
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "timestamp": r.timestamp,
                        "value": r.value,
                        "anomaly_score": r.score,
                        "anomaly": r.score.map(|s| s >= threshold),
                    })
                })
                .collect();
            let stretches: Vec<_> = found
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "start": at(s.start),
                        "end": at(s.end),
                        "rows": s.end - s.start + 1,
                        "peak_score": s.peak,
                        "peak_at": at(s.peak_at),
                    })
                })
                .collect();
            let problems: Vec<_> = problems
                .iter()
                .map(|(pos, p)| serde_json::json!({ "position": pos, "message": p.to_string() }))
                .collect();
            let doc = serde_json::json!({
                "input": name,
                "threshold": threshold,
                "rows": rows,
                "scored_rows": scored_rows,
                "stretches": stretches,
                "problems": problems,
            });
            serde_json::to_writer(&mut out, &doc)?;
            out.write_all(b"\n")?;
        }
        DetectOutput::Text => {
            writeln!(
                out,
                "{name}: {} rows, {scored_rows} scored; threshold {threshold}; {} anomalous stretch(es)",
                kept.len(),
                found.len()
            )?;
            for s in &found {
                writeln!(
                    out,
                    "  {} .. {}  {} row(s), peak {:.3} at {}",
                    at(s.start),
                    at(s.end),
                    s.end - s.start + 1,
                    s.peak,
                    at(s.peak_at)
                )?;
            }
            if !problems.is_empty() {
                writeln!(out, "{} input problem(s), listed on stderr", problems.len())?;
            }
        }
    }
    out.flush()?;
    Ok(if problems.is_empty() {
        exit::OK
    } else {
        exit::INPUT_PROBLEMS
    })
}
