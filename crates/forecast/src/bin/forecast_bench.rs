//! The forecasting bench on the NAB splits, as the anchors define it: per series, train on the
//! `split=train` rows with `observed=1`, forecast the test day with the defaults, score MASE
//! (test MAE over observed points / in-sample seasonal-naive MAE at a lag of one day, lag 1
//! when that is degenerate), 80 % interval coverage and fit time.
//!
//! ```text
//! cargo run --release -p opsloop-forecast --bin forecast_bench -- ../shared/data/nab/splits
//! ```
//! Options: `--repeat N` (timing repeats, default 5), `--models a,b` and `--origins N` to study
//! candidates (not the defaults). The summary is printed for all series and for the two halves
//! of the manifest (even and odd rows), so a constant chosen on one half can be checked on the
//! other.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use opsloop_forecast::models::ModelKind;
use opsloop_forecast::{ForecastOptions, Horizon, forecast_series, input, stats};

struct Row {
    series: String,
    points: usize,
    model: String,
    mase: f64,
    coverage: f64,
    millis: f64,
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    stats::median_in_place(&mut v).unwrap_or(f64::NAN)
}

fn summary(label: &str, rows: &[&Row]) {
    let mase: Vec<f64> = rows.iter().map(|r| r.mase).collect();
    let covered: f64 = rows.iter().map(|r| r.coverage).sum::<f64>() / rows.len().max(1) as f64;
    let millis: Vec<f64> = rows.iter().map(|r| r.millis).collect();
    println!(
        "{label:<10} series {:>2}  mean MASE {:.3}  median MASE {:.3}  80% coverage {:.1}%  median fit {:.1} ms",
        rows.len(),
        mase.iter().sum::<f64>() / mase.len().max(1) as f64,
        median(&mase),
        100.0 * covered,
        median(&millis)
    );
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut repeat = 5usize;
    let mut options = ForecastOptions::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--repeat needs a number")?;
            }
            "--origins" => {
                options.backtest.origins = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--origins needs a number")?;
            }
            "--models" => {
                let list = args.next().ok_or("--models needs a list")?;
                options.backtest.models = list
                    .split(',')
                    .map(|m| ModelKind::from_name(m).ok_or(format!("unknown model {m}")))
                    .collect::<Result<_, _>>()?;
            }
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    let dir =
        dir.ok_or("usage: forecast_bench SPLITS_DIR [--repeat N] [--models a,b] [--origins N]")?;
    let manifest = std::fs::read_to_string(dir.join("manifest.csv"))
        .map_err(|e| format!("{}: {e}", dir.join("manifest.csv").display()))?;
    let mut rows = Vec::new();
    for line in manifest.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(name), Some(season), Some(h)) = (fields.first(), fields.get(3), fields.get(5))
        else {
            continue;
        };
        let season: usize = season
            .parse()
            .map_err(|_| format!("{name}: bad season_day"))?;
        let h: usize = h.parse().map_err(|_| format!("{name}: bad h"))?;
        let path = dir.join(format!("{name}.csv"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut train_csv = String::from("timestamp,value\n");
        let mut train_grid = Vec::new();
        let mut test = Vec::new();
        for row in text.lines().skip(1) {
            let f: Vec<&str> = row.split(',').collect();
            let (Some(ds), Some(y), Some(observed), Some(split)) =
                (f.first(), f.get(1), f.get(2), f.get(3))
            else {
                continue;
            };
            let observed = *observed == "1";
            let value: f64 = y.parse().unwrap_or(f64::NAN);
            match *split {
                "train" => {
                    train_grid.push(if observed { value } else { f64::NAN });
                    if observed {
                        train_csv.push_str(&format!("{ds},{y}\n"));
                    }
                }
                _ if observed => {
                    let t = input::parse_timestamp(ds).ok_or(format!("{name}: bad ds {ds}"))?;
                    test.push((t, value));
                }
                _ => {}
            }
        }
        let read = input::read(name, &train_csv).map_err(|e| e.to_string())?;
        let series = read
            .series
            .first()
            .ok_or(format!("{name}: no train rows"))?;
        options.horizon = Horizon::Steps(h);
        let mut timings = Vec::with_capacity(repeat);
        let mut outcome = None;
        for _ in 0..repeat.max(1) {
            let started = Instant::now();
            let result = forecast_series(series, &options);
            timings.push(started.elapsed().as_secs_f64() * 1000.0);
            outcome = Some(result);
        }
        let outcome = outcome
            .ok_or("no run")?
            .map_err(|e| format!("{name}: {e}"))?;
        let scale =
            stats::mase_scale(&train_grid, season).ok_or(format!("{name}: degenerate scale"))?;
        let (mut abs_sum, mut count, mut covered) = (0.0, 0usize, 0usize);
        for (t, actual) in &test {
            if let Some(p) = outcome.forecast.forecast.iter().find(|p| p.time_ms == *t) {
                abs_sum += (actual - p.value).abs();
                count += 1;
                if *actual >= p.lower_80 && *actual <= p.upper_80 {
                    covered += 1;
                }
            }
        }
        if count == 0 {
            return Err(format!(
                "{name}: no forecast point matched a test timestamp"
            ));
        }
        rows.push(Row {
            series: (*name).to_owned(),
            points: outcome.prepared.len(),
            model: outcome.forecast.model.name().to_owned(),
            mase: abs_sum / count as f64 / scale,
            coverage: covered as f64 / count as f64,
            millis: median(&timings),
        });
    }
    println!(
        "{:<36} {:>6} {:<20} {:>7} {:>7} {:>8}",
        "series", "points", "model", "MASE", "cov80", "fit ms"
    );
    for r in &rows {
        println!(
            "{:<36} {:>6} {:<20} {:>7.3} {:>6.1}% {:>8.1}",
            r.series,
            r.points,
            r.model,
            r.mase,
            100.0 * r.coverage,
            r.millis
        );
    }
    let all: Vec<&Row> = rows.iter().collect();
    let even: Vec<&Row> = rows.iter().step_by(2).collect();
    let odd: Vec<&Row> = rows.iter().skip(1).step_by(2).collect();
    summary("all", &all);
    summary("half A", &even);
    summary("half B", &odd);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("forecast_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
