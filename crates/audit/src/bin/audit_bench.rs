//! Audit speed on a manifest directory, optionally against Checkov in the same run.
//!
//! ```text
//! cargo run --release -p opsloop-audit --bin audit_bench -- ../shared/data/manifests \
//!     [--runs 10] [--checkov PATH-TO-checkov]
//! ```
//!
//! Each run reads, parses and audits every file and renders the SARIF log (what
//! `opsloop audit --output sarif` does, minus process start). Prints the wall time of each
//! run (min and median), files, objects, findings, parse errors, and checks that every input
//! file is an artifact of the SARIF log. With `--checkov`, runs
//! `checkov -d DIR --framework kubernetes -o json --quiet` once and prints the ratio.

#![allow(clippy::print_stdout)]

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use opsloop_audit::{Options, audit, render, source};

struct Args {
    dir: String,
    runs: usize,
    checkov: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut runs = 10;
    let mut checkov = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--runs needs a positive number")?;
            }
            "--checkov" => checkov = Some(args.next().ok_or("--checkov needs a path")?),
            other if dir.is_none() => dir = Some(other.to_string()),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    let dir = dir
        .or_else(|| std::env::var("OPSLOOP_AUDIT_BENCH_DIR").ok())
        .ok_or("usage: audit_bench DIR [--runs N] [--checkov PATH]")?;
    Ok(Args { dir, runs, checkov })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("audit_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let mut times: Vec<Duration> = Vec::with_capacity(args.runs);
    let mut last = None;
    for _ in 0..args.runs {
        let start = Instant::now();
        let sources = source::collect(std::slice::from_ref(&args.dir), &mut std::io::empty());
        let report = audit(&sources, &Options::default());
        let mut rendered = Vec::with_capacity(2 << 20);
        if let Err(e) = render::sarif(&report, env!("CARGO_PKG_VERSION"), &mut rendered) {
            eprintln!("audit_bench: rendering SARIF: {e}");
            return ExitCode::from(2);
        }
        times.push(start.elapsed());
        last = Some((report, rendered));
    }
    let Some((report, rendered)) = last else {
        return ExitCode::from(2);
    };
    let sarif_bytes = rendered.len();
    let sarif: serde_json::Value = match serde_json::from_slice(&rendered) {
        Ok(sarif) => sarif,
        Err(e) => {
            eprintln!("audit_bench: the SARIF log is not JSON: {e}");
            return ExitCode::from(1);
        }
    };
    times.sort();
    let min = times.first().copied().unwrap_or_default();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let artifacts = sarif["runs"][0]["artifacts"].as_array().map_or(0, Vec::len);
    let s = &report.summary;
    println!("dir: {}", args.dir);
    println!(
        "files: {}  documents: {}  objects: {}  findings: {}  parse errors: {} (in {} files)  unknown kinds: {}",
        s.files,
        s.documents,
        s.objects,
        s.findings,
        report.errors.len(),
        s.files_with_errors,
        s.unknown_kinds.values().sum::<usize>()
    );
    println!(
        "sarif: {artifacts} artifacts for {} files, {} results, {sarif_bytes} bytes",
        s.files,
        sarif["runs"][0]["results"].as_array().map_or(0, Vec::len)
    );
    println!(
        "opsloop audit: {} runs, min {:.1} ms, median {:.1} ms",
        args.runs,
        min.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3
    );
    if artifacts != s.files {
        eprintln!("audit_bench: the SARIF log does not list every input file");
        return ExitCode::from(1);
    }
    if let Some(checkov) = args.checkov {
        let start = Instant::now();
        let status = Command::new(&checkov)
            .args([
                "-d",
                &args.dir,
                "--framework",
                "kubernetes",
                "-o",
                "json",
                "--quiet",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let elapsed = start.elapsed();
        match status {
            Ok(status) => {
                println!(
                    "checkov: {:.2} s (exit {})",
                    elapsed.as_secs_f64(),
                    status.code().unwrap_or(-1)
                );
                println!(
                    "speed-up: {:.0}x (checkov / median audit)",
                    elapsed.as_secs_f64() / median.as_secs_f64().max(1e-9)
                );
            }
            Err(e) => {
                eprintln!("audit_bench: running {checkov}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}
