//! `detect_bench`: runs the shipped detector over NAB's labelled files, scores it with a port of
//! NAB's scorer (all files, and the two halves used to choose and to check the constants),
//! measures throughput and state size, optionally writes the scorer's input and runs NAB's own
//! scorer on it, and prints the ablation of each part.
//!
//! ```sh
//! cargo run --release -p opsloop-detect --bin detect_bench -- \
//!     --data ../shared/data/nab-anomaly [--out DIR --nab-score ../shared/tools/nab-score/score.sh] \
//!     [--ablation] [--per-file] [--set '{"suppress_points": 300}'] [--alarms FILE.tsv]
//! ```

mod nab;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use opsloop_detect::input::{self, Row};
use opsloop_detect::{Detector, DetectorConfig};

/// One ablation: switches a part of the detector off.
type Ablation = fn(&mut DetectorConfig);

struct Args {
    data: PathBuf,
    out: Option<PathBuf>,
    nab_score: Option<PathBuf>,
    ablation: bool,
    per_file: bool,
    set: Option<String>,
    repeat: usize,
    alarms: Option<PathBuf>,
}

fn usage() -> String {
    "usage: detect_bench --data NAB_ANOMALY_DIR [--out DIR] [--nab-score SCORE_SH] [--ablation] \
     [--per-file] [--set JSON] [--repeat N] [--alarms TSV]"
        .into()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        data: PathBuf::new(),
        out: None,
        nab_score: None,
        ablation: false,
        per_file: false,
        set: None,
        repeat: 3,
        alarms: None,
    };
    let mut it = std::env::args().skip(1);
    let mut have_data = false;
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--data" => {
                args.data = value()?.into();
                have_data = true;
            }
            "--out" => args.out = Some(value()?.into()),
            "--alarms" => args.alarms = Some(value()?.into()),
            "--nab-score" => args.nab_score = Some(value()?.into()),
            "--set" => args.set = Some(value()?),
            "--repeat" => args.repeat = value()?.parse().map_err(|e| format!("--repeat: {e}"))?,
            "--ablation" => args.ablation = true,
            "--per-file" => args.per_file = true,
            _ => return Err(usage()),
        }
    }
    if !have_data {
        return Err(usage());
    }
    Ok(args)
}

/// One labelled NAB file.
struct Series {
    /// `category/file.csv`.
    name: String,
    rows: Vec<Row>,
    values: Vec<f64>,
    windows: Vec<(usize, usize)>,
    /// Which half: false = A (constants chosen on it), true = B (held out).
    half_b: bool,
}

fn load(data: &Path) -> Result<Vec<Series>, String> {
    let labels_path = data.join("labels.json");
    let labels: BTreeMap<String, Vec<(String, String)>> = serde_json::from_str(
        &std::fs::read_to_string(&labels_path)
            .map_err(|e| format!("{}: {e}", labels_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", labels_path.display()))?;
    let mut out = Vec::new();
    // Halves: within each category, files alternate A, B in name order, so both halves hold
    // every kind of series.
    let mut per_category: BTreeMap<String, usize> = BTreeMap::new();
    for (name, windows) in &labels {
        let path = data.join("data").join(name);
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let rows = input::open(std::io::BufReader::new(file))
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let values = rows
            .iter()
            .map(|r| {
                r.value
                    .clone()
                    .map_err(|e| format!("{name}: {}: {e}", r.position))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let index_of = |ts: &str| {
            let ts = ts.trim_end_matches(".000000");
            rows.iter()
                .position(|r| r.timestamp == ts)
                .ok_or_else(|| format!("{name}: window bound {ts} is not a row"))
        };
        let windows = windows
            .iter()
            .map(|(a, b)| Ok((index_of(a)?, index_of(b)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let category = name.split('/').next().unwrap_or_default().to_string();
        let k = per_category.entry(category).or_default();
        let half_b = *k % 2 == 1;
        *k += 1;
        out.push(Series {
            name: name.clone(),
            rows,
            values,
            windows,
            half_b,
        });
    }
    Ok(out)
}

fn run(series: &[Series], config: &DetectorConfig) -> Vec<Vec<f64>> {
    series
        .iter()
        .map(|s| {
            let mut d = Detector::new(config.clone());
            s.values.iter().map(|v| d.push(*v).unwrap_or(0.0)).collect()
        })
        .collect()
}

/// Normalised scores: [all, A, B] × profiles, with each set's swept thresholds.
fn evaluate(series: &[Series], scores: &[Vec<f64>]) -> [[(f64, f64); 3]; 3] {
    let files: Vec<nab::ScoredFile> = series
        .iter()
        .zip(scores)
        .map(|(s, sc)| nab::ScoredFile {
            scores: sc.clone(),
            windows: s.windows.clone(),
        })
        .collect();
    let sets: [Vec<&nab::ScoredFile>; 3] = [
        files.iter().collect(),
        files
            .iter()
            .zip(series)
            .filter(|(_, s)| !s.half_b)
            .map(|(f, _)| f)
            .collect(),
        files
            .iter()
            .zip(series)
            .filter(|(_, s)| s.half_b)
            .map(|(f, _)| f)
            .collect(),
    ];
    let mut out = [[(0.0, 0.0); 3]; 3];
    for (set, row) in sets.iter().zip(out.iter_mut()) {
        for (p, cell) in nab::PROFILES.iter().zip(row.iter_mut()) {
            let (s, t, _) = nab::score(set, *p);
            *cell = (s, t);
        }
    }
    out
}

fn line(label: &str, e: &[[(f64, f64); 3]; 3]) -> String {
    format!(
        "| {label} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.3} |",
        e[0][0].0, e[0][1].0, e[0][2].0, e[1][0].0, e[1][1].0, e[2][0].0, e[2][1].0, e[0][0].1
    )
}

fn write_scorer_input(dir: &Path, series: &[Series], scores: &[Vec<f64>]) -> Result<(), String> {
    for (s, sc) in series.iter().zip(scores) {
        let path = dir.join(&s.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut text = String::from("timestamp,value,anomaly_score\n");
        for (r, v) in s.rows.iter().zip(sc) {
            let _ = writeln!(text, "{},{},{v}", r.timestamp, r.value_text);
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Every scored point above 0.05 after NAB's probation, with its view and where it falls
/// (`w<k>@<position in window>` or `fp`), for studying what the detector gets wrong.
fn write_alarms(path: &Path, series: &[Series], config: &DetectorConfig) -> Result<(), String> {
    let mut text = String::from("half\tfile\tindex\tscore\tview\twhere\n");
    for s in series {
        let mut d = Detector::new(config.clone());
        let probation = ((0.15 * s.values.len() as f64).floor()).min(750.0) as usize;
        for (i, v) in s.values.iter().enumerate() {
            let Some(p) = d.push_point(*v) else { continue };
            if i < probation || p.score <= 0.05 {
                continue;
            }
            let place = s
                .windows
                .iter()
                .enumerate()
                .find(|(_, (a, b))| *a <= i && i <= *b)
                .map_or("fp".to_string(), |(k, (a, b))| {
                    format!("w{k}@{:.2}", (i - a) as f64 / (b - a + 1) as f64)
                });
            let _ = writeln!(
                text,
                "{}\t{}\t{i}\t{:.4}\t{:?}\t{place}",
                if s.half_b { "B" } else { "A" },
                s.name,
                p.score,
                p.view
            );
        }
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("detect_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<(), String> {
    let args = parse_args()?;
    let mut config = DetectorConfig::default();
    if let Some(set) = &args.set {
        let mut base = serde_json::to_value(&config).map_err(|e| e.to_string())?;
        let patch: serde_json::Value =
            serde_json::from_str(set).map_err(|e| format!("--set: {e}"))?;
        if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                b.insert(k.clone(), v.clone());
            }
        }
        config = serde_json::from_value(base).map_err(|e| format!("--set: {e}"))?;
    }
    let series = load(&args.data)?;
    let points: usize = series.iter().map(|s| s.values.len()).sum();

    // Throughput: the detector alone, best of `repeat` runs, one thread.
    let mut best = f64::INFINITY;
    let mut scores = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        scores = run(&series, &config);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let state_bytes = {
        let mut d = Detector::new(config.clone());
        for v in series.iter().flat_map(|s| s.values.iter()).take(5000) {
            d.push(*v);
        }
        serde_json::to_vec(&d).map(|v| v.len()).unwrap_or(0)
    };
    println!(
        "{} files, {points} points: {:.3} s detection (best of {}), {:.2} M points/s; state after 5000 points: {} bytes as JSON, {} bytes in memory (approx.)",
        series.len(),
        best,
        args.repeat.max(1),
        points as f64 / best / 1e6,
        state_bytes,
        Detector::new(config.clone()).memory_bytes(),
    );
    let e = evaluate(&series, &scores);
    println!(
        "| variant | all 29: standard / low FP / low FN | half A (tuned): std / low FP | half B (held out): std / low FP | threshold (std, all) |"
    );
    println!("|---|---|---|---|---|");
    println!("{}", line("shipped", &e));

    if args.per_file {
        let thr = e[0][0].1;
        for (s, sc) in series.iter().zip(&scores) {
            let probation = ((0.15 * sc.len() as f64).floor()).min(750.0) as usize;
            let inside = |i: usize| s.windows.iter().any(|(a, b)| *a <= i && i <= *b);
            let fps: Vec<usize> = (probation..sc.len())
                .filter(|&i| sc[i] >= thr && !inside(i))
                .collect();
            let hits: Vec<String> = s
                .windows
                .iter()
                .map(
                    |(a, b)| match (*a..=*b).find(|&i| i >= probation && sc[i] >= thr) {
                        Some(i) => format!("hit@{:.2}", (i - a) as f64 / (b - a + 1) as f64),
                        None => "MISS".into(),
                    },
                )
                .collect();
            let mut d = Detector::new(config.clone());
            let mut periods = Vec::new();
            for v in &s.values {
                d.push(*v);
                let p = d.period().unwrap_or(0);
                if periods.last() != Some(&p) {
                    periods.push(p);
                }
            }
            println!(
                "  {} {:55} n={:5} periods={:?} windows=[{}] fp={} {:?}",
                if s.half_b { "B" } else { "A" },
                s.name,
                sc.len(),
                periods.iter().take(6).collect::<Vec<_>>(),
                hits.join(" "),
                fps.len(),
                fps.iter().take(8).collect::<Vec<_>>()
            );
        }
    }

    if let Some(path) = &args.alarms {
        write_alarms(path, &series, &config)?;
    }

    if args.ablation {
        let variants: [(&str, Ablation); 13] = [
            ("no spatial view", |c| c.spatial = false),
            ("with the level view (off by default)", |c| c.level = true),
            ("no difference view", |c| c.diff = false),
            ("no pattern view", |c| c.pattern = false),
            ("no seasonal view", |c| c.seasonal = false),
            ("no likelihood (raw surprise mapped directly)", |c| {
                c.likelihood = false
            }),
            ("no empirical tail (normal tail only)", |c| {
                c.empirical_tail = false
            }),
            ("no suppression", |c| c.suppression = false),
            ("suppression not extended while an episode goes on", |c| {
                c.extend_points = 0
            }),
            (
                "no new alarm inside the quiet time after an episode ended",
                |c| c.reopen_after = 0,
            ),
            (
                "range grows without limit (one glitch widens it for good)",
                |c| c.bound_growth = 0.0,
            ),
            ("no probation", |c| c.probation = 0),
            ("spatial view only", |c| {
                c.level = false;
                c.diff = false;
                c.pattern = false;
                c.seasonal = false;
            }),
        ];
        for (label, change) in variants {
            let mut c = config.clone();
            change(&mut c);
            let e = evaluate(&series, &run(&series, &c));
            println!("{}", line(label, &e));
        }
    }

    if let Some(dir) = &args.out {
        write_scorer_input(dir, &series, &scores)?;
        println!("scorer input written to {}", dir.display());
        if let Some(score_sh) = &args.nab_score {
            let out = std::process::Command::new("bash")
                .arg(score_sh)
                .arg("--detector-dir")
                .arg(dir)
                .args(["--name", "opsloop", "--peers", "ARTime,numenta,contextOSE"])
                .output()
                .map_err(|e| format!("{}: {e}", score_sh.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "NAB scorer failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
                .map_err(|e| format!("NAB scorer output: {e}"))?;
            println!(
                "NAB's scorer: {}",
                serde_json::to_string(&doc["detector"]).unwrap_or_default()
            );
            println!(
                "peers: {}",
                serde_json::to_string(&doc["peers"]).unwrap_or_default()
            );
        }
    } else if args.nab_score.is_some() {
        return Err("--nab-score needs --out DIR".into());
    }
    Ok(())
}
