//! A port of NAB's scoring (`nab/sweeper.py`: window scores, probation, one threshold swept over
//! a set of files, normalisation against the null detector) for fast tuning inside the bench.
//! NAB's own scorer (`tools/nab-score/score.sh`) stays the reference; the bench runs both.

/// A NAB cost profile.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

/// NAB's three profiles.
pub const PROFILES: [Profile; 3] = [
    Profile {
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    },
    Profile {
        tp: 1.0,
        fp: 0.22,
        fn_: 1.0,
    },
    Profile {
        tp: 1.0,
        fp: 0.11,
        fn_: 2.0,
    },
];

/// One file's scored rows and label windows (row index ranges, inclusive).
pub struct ScoredFile {
    pub scores: Vec<f64>,
    pub windows: Vec<(usize, usize)>,
}

fn scaled_sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// (score, sweep score, window id) of each row after probation, as `calcSweepScore` does.
fn sweep_points(
    file: &ScoredFile,
    p: Profile,
    window_base: usize,
    out: &mut Vec<(f64, f64, Option<usize>)>,
) {
    let n = file.scores.len();
    let probation = ((0.15 * n as f64).floor()).min(750.0) as usize;
    let max_tp = scaled_sigmoid(-1.0);
    let mut prev: Option<(usize, f64)> = None; // right index, width
    let mut w = 0;
    for (i, &s) in file.scores.iter().enumerate() {
        let current = file
            .windows
            .get(w)
            .filter(|(a, b)| *a <= i && i <= *b)
            .copied();
        let sweep = match current {
            Some((a, b)) => {
                let width = (b - a + 1) as f64;
                let pos = -((b as f64) - i as f64 + 1.0) / width;
                scaled_sigmoid(pos) * p.tp / max_tp
            }
            None => match prev {
                None => -p.fp,
                Some((right, width)) => {
                    scaled_sigmoid((i as f64 - right as f64).abs() / (width - 1.0)) * p.fp
                }
            },
        };
        if i >= probation {
            out.push((s, sweep, current.map(|_| window_base + w)));
        }
        if let Some((a, b)) = current
            && i == b
        {
            prev = Some((b, (b - a + 1) as f64));
            w += 1;
        }
    }
}

/// The normalised NAB score (0 = null, 100 = perfect) of `files` under `p`, the threshold
/// chosen by the sweep, and the raw score.
pub fn score(files: &[&ScoredFile], p: Profile) -> (f64, f64, f64) {
    let mut points = Vec::new();
    let mut base = 0;
    for f in files {
        sweep_points(f, p, base, &mut points);
        base += f.windows.len();
    }
    let n_windows = base;
    points.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut window_best: Vec<Option<f64>> = vec![None; n_windows];
    let mut scorable = vec![false; n_windows];
    for pt in &points {
        if let Some(w) = pt.2 {
            scorable[w] = true;
        }
    }
    let null = -p.fn_ * scorable.iter().filter(|s| **s).count() as f64;
    let mut fp_sum = 0.0;
    let mut tp_sum = 0.0;
    let mut best = (null, 1.1);
    let mut i = 0;
    while i < points.len() {
        let t = points[i].0;
        while i < points.len() && points[i].0 == t {
            let (_, sweep, win) = points[i];
            match win {
                None => fp_sum += sweep,
                Some(w) => {
                    let old = window_best[w];
                    if old.is_none_or(|o| sweep > o) {
                        tp_sum += sweep - old.unwrap_or(-p.fn_);
                        window_best[w] = Some(sweep);
                    }
                }
            }
            i += 1;
        }
        let total = null + tp_sum + fp_sum;
        if total > best.0 {
            best = (total, t);
        }
    }
    let perfect = p.tp * n_windows as f64;
    (100.0 * (best.0 - null) / (perfect - null), best.1, best.0)
}
