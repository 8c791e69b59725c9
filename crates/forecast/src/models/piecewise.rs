//! The Prophet-style model, written here: a piecewise-linear trend with changepoints placed
//! evenly over the first 80 % of the history and kept or dropped by an L1 penalty, plus
//! Fourier terms for each season with a ridge penalty, fitted by weighted, regularised least
//! squares (coordinate descent on the Gram matrix). No sampler, no optimiser runtime: a fit is
//! one pass over the data plus a small p×p solve.
//!
//! The design (time scale, changepoint positions) is fixed by `FitData::design_len`, so the
//! Gram matrix of a later backtest origin extends the one of an earlier origin: all origins of
//! a backtest cost one pass.

use super::{FitData, FitInfo, Model, ModelError};
use crate::stats;

/// Settings of the Prophet-style model.
#[derive(Clone, Debug)]
pub struct ProphetStyle {
    /// Candidate changepoints.
    pub changepoints: usize,
    /// Share of the history (from its start) where changepoints may sit.
    pub changepoint_range: f64,
    /// L1 penalty on changepoint slope changes, in units of the scaled series per unit time.
    pub changepoint_penalty: f64,
    /// Fourier order of the shortest season and of longer ones.
    pub fourier_orders: [usize; 2],
    /// Ridge penalty on Fourier coefficients.
    pub seasonality_penalty: f64,
}

impl Default for ProphetStyle {
    fn default() -> Self {
        ProphetStyle {
            changepoints: 25,
            changepoint_range: 0.8,
            changepoint_penalty: 0.002,
            fourier_orders: [8, 3],
            seasonality_penalty: 1e-4,
        }
    }
}

/// The regression design of one fit.
struct Design {
    reference_len: f64,
    changepoints: Vec<f64>,
    seasons: Vec<(usize, usize)>,
    width: usize,
}

impl Design {
    fn new(model: &ProphetStyle, reference_len: usize, seasons: &[usize]) -> Design {
        let reference_len = reference_len.max(2) as f64;
        let count = model.changepoints;
        let changepoints = (1..=count)
            .map(|j| model.changepoint_range * j as f64 / (count + 1) as f64)
            .collect::<Vec<_>>();
        let seasons: Vec<(usize, usize)> = seasons
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                let order = model.fourier_orders.get(i.min(1)).copied().unwrap_or(3);
                (m, order.min(m / 2))
            })
            .filter(|&(_, order)| order > 0)
            .collect();
        let width = 2 + changepoints.len() + seasons.iter().map(|(_, k)| 2 * k).sum::<usize>();
        Design {
            reference_len,
            changepoints,
            seasons,
            width,
        }
    }

    /// Writes the regressors of grid index `i` into `row` (length `width`).
    fn row(&self, i: usize, row: &mut [f64]) {
        let s = i as f64 / self.reference_len;
        let mut cols = row.iter_mut();
        let mut put = |v: f64| {
            if let Some(c) = cols.next() {
                *c = v;
            }
        };
        put(1.0);
        put(s);
        for &c in &self.changepoints {
            put((s - c).max(0.0));
        }
        for &(m, order) in &self.seasons {
            let theta = std::f64::consts::TAU * (i % m) as f64 / m as f64;
            let (sin1, cos1) = theta.sin_cos();
            let (mut sin_k, mut cos_k) = (sin1, cos1);
            for _ in 0..order {
                put(sin_k);
                put(cos_k);
                // sin/cos of (k+1)θ from kθ: two trigonometric calls per row and season.
                (sin_k, cos_k) = (sin_k * cos1 + cos_k * sin1, cos_k * cos1 - sin_k * sin1);
            }
        }
    }

    fn penalties(&self, model: &ProphetStyle) -> (Vec<f64>, Vec<f64>) {
        let mut l1 = vec![0.0; self.width];
        let mut l2 = vec![1e-9; self.width];
        for j in 0..self.changepoints.len() {
            if let Some(p) = l1.get_mut(2 + j) {
                *p = model.changepoint_penalty;
            }
        }
        for p in l2.iter_mut().skip(2 + self.changepoints.len()) {
            *p = model.seasonality_penalty;
        }
        (l1, l2)
    }
}

/// Weighted normal equations accumulated row by row.
struct Normal {
    gram: Vec<f64>,
    rhs: Vec<f64>,
    weight: f64,
    width: usize,
}

impl Normal {
    fn new(width: usize) -> Normal {
        Normal {
            gram: vec![0.0; width * width],
            rhs: vec![0.0; width],
            weight: 0.0,
            width,
        }
    }

    fn add(&mut self, row: &[f64], y: f64, w: f64) {
        self.weight += w;
        for (a, &xa) in row.iter().enumerate() {
            let wxa = w * xa;
            if let Some(r) = self.rhs.get_mut(a) {
                *r += wxa * y;
            }
            // Upper triangle only; the solver reads it symmetrically.
            if let Some(line) = self.gram.get_mut(a * self.width + a..(a + 1) * self.width) {
                for (g, &xb) in line.iter_mut().zip(row.iter().skip(a)) {
                    *g += wxa * xb;
                }
            }
        }
    }

    fn g(&self, a: usize, b: usize) -> f64 {
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        self.gram.get(a * self.width + b).copied().unwrap_or(0.0)
    }

    /// Minimises ½βᵀGβ − cᵀβ + Σ l1|β| + ½ Σ l2 β² (G, c divided by the total weight) by
    /// coordinate descent, starting from `beta`.
    fn solve(&self, l1: &[f64], l2: &[f64], beta: &mut [f64]) {
        let p = self.width;
        let scale = if self.weight > 0.0 {
            1.0 / self.weight
        } else {
            0.0
        };
        let mut g_beta = vec![0.0; p];
        for (a, gb) in g_beta.iter_mut().enumerate() {
            *gb = (0..p)
                .map(|b| self.g(a, b) * beta.get(b).copied().unwrap_or(0.0))
                .sum::<f64>()
                * scale;
        }
        for _sweep in 0..400 {
            let mut max_change: f64 = 0.0;
            for j in 0..p {
                let gjj = self.g(j, j) * scale;
                let lam2 = l2.get(j).copied().unwrap_or(0.0);
                let denom = gjj + lam2;
                if denom.is_nan() || denom <= 0.0 {
                    continue;
                }
                let old = beta.get(j).copied().unwrap_or(0.0);
                let rho = self.rhs.get(j).copied().unwrap_or(0.0) * scale
                    - g_beta.get(j).copied().unwrap_or(0.0)
                    + gjj * old;
                let lam1 = l1.get(j).copied().unwrap_or(0.0);
                let shrunk = rho.signum() * (rho.abs() - lam1).max(0.0);
                let new = shrunk / denom;
                let delta = new - old;
                if delta != 0.0 {
                    if let Some(b) = beta.get_mut(j) {
                        *b = new;
                    }
                    for (a, gb) in g_beta.iter_mut().enumerate() {
                        *gb += self.g(a, j) * scale * delta;
                    }
                    max_change = max_change.max(delta.abs() * gjj.sqrt());
                }
            }
            if max_change < 1e-7 {
                break;
            }
        }
    }
}

/// Location and spread used to scale the series, so penalties do not depend on its units.
fn scaling(values: &[f64]) -> (f64, f64) {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let centre = stats::median_in_place(&mut finite).unwrap_or(0.0);
    for v in finite.iter_mut() {
        *v = (*v - centre).abs();
    }
    let spread = stats::median_in_place(&mut finite).unwrap_or(0.0) * 1.4826;
    let spread = if spread > 0.0 {
        spread
    } else {
        let max_dev = finite.iter().copied().fold(0.0, f64::max);
        if max_dev > 0.0 { max_dev } else { 1.0 }
    };
    (centre, spread)
}

impl ProphetStyle {
    fn run(
        &self,
        data: &FitData<'_>,
        origins: &[usize],
        horizon: usize,
    ) -> Vec<Result<(Vec<f64>, FitInfo), ModelError>> {
        let n = data.values.len().min(data.weights.len());
        let first_origin = origins.first().copied().unwrap_or(n).min(n);
        let reference = if data.design_len > 0 {
            data.design_len
        } else {
            first_origin
        };
        let design = Design::new(self, reference, data.seasons);
        let (l1, l2) = design.penalties(self);
        let (centre, spread) = scaling(data.values.get(..reference.min(n)).unwrap_or_default());
        let mut normal = Normal::new(design.width);
        let mut row = vec![0.0; design.width];
        let mut beta = vec![0.0; design.width];
        let mut next = 0usize;
        let mut finite_seen = 0usize;
        let mut results = Vec::with_capacity(origins.len());
        for &origin in origins {
            let origin = origin.min(n);
            while next < origin {
                let (y, w) = (
                    data.values.get(next).copied().unwrap_or(f64::NAN),
                    data.weights.get(next).copied().unwrap_or(0.0),
                );
                if y.is_finite() && w > 0.0 {
                    design.row(next, &mut row);
                    normal.add(&row, (y - centre) / spread, w);
                    finite_seen += 1;
                }
                next += 1;
            }
            let needed = design.width.max(10);
            if finite_seen < needed {
                results.push(Err(ModelError::TooShort {
                    needed,
                    has: finite_seen,
                }));
                continue;
            }
            normal.solve(&l1, &l2, &mut beta);
            let mut out = Vec::with_capacity(horizon);
            for h in 0..horizon {
                design.row(origin + h, &mut row);
                let fitted: f64 = row.iter().zip(&beta).map(|(x, b)| x * b).sum();
                out.push(centre + spread * fitted);
            }
            let changepoints = design
                .changepoints
                .iter()
                .zip(beta.iter().skip(2))
                .filter(|(_, delta)| delta.abs() > 1e-6)
                .map(|(c, _)| (c * design.reference_len).round() as usize)
                .collect();
            results.push(Ok((out, FitInfo { changepoints })));
        }
        results
    }
}

impl Model for ProphetStyle {
    fn forecast(&self, data: &FitData<'_>, out: &mut [f64]) -> Result<FitInfo, ModelError> {
        let n = data.values.len();
        let result = self.run(data, &[n], out.len()).pop();
        let (points, info) = result.unwrap_or(Err(ModelError::TooShort { needed: 1, has: 0 }))?;
        for (slot, v) in out.iter_mut().zip(points) {
            *slot = v;
        }
        Ok(info)
    }

    fn forecast_origins(
        &self,
        data: &FitData<'_>,
        origins: &[usize],
        horizon: usize,
    ) -> Vec<Result<Vec<f64>, ModelError>> {
        self.run(data, origins, horizon)
            .into_iter()
            .map(|r| r.map(|(points, _)| points))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, f: impl Fn(usize) -> f64) -> (Vec<f64>, Vec<f64>) {
        ((0..n).map(f).collect(), vec![1.0; n])
    }

    #[test]
    fn fits_trend_and_daily_season() {
        let f = |i: usize| {
            0.01 * i as f64 + 2.0 * (std::f64::consts::TAU * (i % 48) as f64 / 48.0).sin()
        };
        let (values, weights) = series(48 * 10, f);
        let data = FitData {
            values: &values,
            weights: &weights,
            seasons: &[48],
            design_len: 0,
        };
        let mut out = vec![0.0; 48];
        ProphetStyle::default().forecast(&data, &mut out).unwrap();
        for (h, v) in out.iter().enumerate() {
            assert!(
                (v - f(values.len() + h)).abs() < 0.3,
                "h={h}: {v} vs {}",
                f(values.len() + h)
            );
        }
    }

    #[test]
    fn finds_a_slope_change() {
        let f = |i: usize| if i < 300 { 0.0 } else { (i - 300) as f64 * 0.1 };
        let (values, weights) = series(1000, f);
        let data = FitData {
            values: &values,
            weights: &weights,
            seasons: &[],
            design_len: 0,
        };
        let mut out = vec![0.0; 10];
        let info = ProphetStyle::default().forecast(&data, &mut out).unwrap();
        assert!(!info.changepoints.is_empty());
        assert!((out[0] - f(1000)).abs() < 3.0, "{}", out[0]);
    }

    #[test]
    fn origins_share_one_pass_and_match_single_fits() {
        let f = |i: usize| (i as f64 * 0.3).sin() + 0.001 * i as f64;
        let (values, weights) = series(600, f);
        let data = FitData {
            values: &values,
            weights: &weights,
            seasons: &[20],
            design_len: 400,
        };
        let model = ProphetStyle::default();
        let many = model.forecast_origins(&data, &[400, 500], 5);
        let mut single = vec![0.0; 5];
        model.forecast(&data.until(500), &mut single).unwrap();
        let shared = many[1].as_ref().unwrap();
        for (a, b) in shared.iter().zip(&single) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }
}
