//! The HPA bench of issue 10: on NAB demand series, the proposal (reactive HPA plus scheduled
//! pre-scaling from day-ahead forecasts refitted each day on the data before it) against the
//! simulated reactive HPA, on the same days: under-provisioned minutes, replica-hours, scale
//! events. Target: fewer under-provisioned minutes at no more than 10 % extra replica-hours.
//!
//! ```text
//! cargo run --release -p opsloop-forecast --bin hpa_bench -- ../shared/data/nab/splits
//! ```
//! Series default to `elb_request_count_8c0756,nyc_taxi` (`--series a,b` to change). Every
//! `observed=1` row of a series is its demand history. The capacity of a pod is fixed by rule,
//! not tuned: a fifth of the series' median demand (so the median needs about six pods at the
//! 80 % target). Each series runs with pod start-up delays of 30 s, 1 min and 2 min, in both
//! forms (scheduled windows from the point forecast, the default, and from the upper 80 %
//! band; the external metric 5 min ahead beside the observed one), and with the demand between
//! samples interpolated linearly (the CLI's default) or held (a sample as its bucket's rate).
//! `--series` is the only knob; nothing here is tuned per series.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use opsloop_forecast::hpa::{self, HpaOptions, PrescaleBand};
use opsloop_forecast::{Series, input, stats};

fn load(dir: &std::path::Path, name: &str) -> Result<Series, String> {
    let path = dir.join(format!("{name}.csv"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut csv = String::from("timestamp,value\n");
    for row in text.lines().skip(1) {
        let f: Vec<&str> = row.split(',').collect();
        if let (Some(ds), Some(y), Some(&"1")) = (f.first(), f.get(1), f.get(2)) {
            csv.push_str(&format!("{ds},{y}\n"));
        }
    }
    let read = input::read(name, &csv).map_err(|e| e.to_string())?;
    read.series
        .into_iter()
        .next()
        .ok_or(format!("{name}: no observed rows"))
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut names = vec!["elb_request_count_8c0756".to_owned(), "nyc_taxi".to_owned()];
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--series" => {
                names = args
                    .next()
                    .ok_or("--series needs a list")?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
            }
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    let dir = dir.ok_or("usage: hpa_bench SPLITS_DIR [--series a,b]")?;
    println!(
        "{:<26} {:<7} {:<15} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6} {:>7}  verdict",
        "series",
        "between",
        "form",
        "startup",
        "days",
        "under R",
        "under P",
        "rep-h R",
        "rep-h P",
        "ev R",
        "ev P",
        "extra"
    );
    for name in &names {
        let series = load(&dir, name)?;
        let mut values: Vec<f64> = series.points.iter().map(|p| p.1).collect();
        let median = stats::median_in_place(&mut values).ok_or(format!("{name}: no values"))?;
        let capacity = (median / 5.0).max(1e-9);
        for (between, hold) in [("linear", false), ("hold", true)] {
            for startup_s in [30i64, 60, 120] {
                for (form, band, external) in [
                    ("windows value", PrescaleBand::Value, None),
                    ("windows upper80", PrescaleBand::Upper80, None),
                    ("external 5m", PrescaleBand::Value, Some(300_000)),
                ] {
                    let options = HpaOptions {
                        capacity_per_pod: capacity,
                        startup_delay_ms: startup_s * 1000,
                        band,
                        hold_demand: hold,
                        external_ahead_ms: external,
                        ..HpaOptions::default()
                    };
                    let started = Instant::now();
                    let p = hpa::propose(&series, &options).map_err(|e| e.to_string())?;
                    let secs = started.elapsed().as_secs_f64();
                    let (r, q) = (p.reactive, p.proposal);
                    let extra = 100.0 * (q.replica_hours / r.replica_hours - 1.0);
                    let ok =
                        q.under_provisioned_minutes < r.under_provisioned_minutes && extra <= 10.0;
                    println!(
                        "{:<26} {:<7} {:<15} {:>6}s {:>7.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6} {:>6} {:>6.1}%  {} ({:.2} s)",
                        name,
                        between,
                        form,
                        startup_s,
                        (p.validated_to - p.validated_from) as f64 / 86_400_000.0,
                        r.under_provisioned_minutes,
                        q.under_provisioned_minutes,
                        r.replica_hours,
                        q.replica_hours,
                        r.scale_events,
                        q.scale_events,
                        extra,
                        if ok { "meets target" } else { "misses target" },
                        secs
                    );
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hpa_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
