//! Exponential smoothing with automatic model choice (AutoETS, non-seasonal, additive errors):
//! simple smoothing (A,N,N) or a damped additive trend (A,Ad,N), parameters by least one-step
//! squared error, the form by AIC. Written here instead of taken from `augurs-ets` because the
//! backtest fits it several times per series within a budget of milliseconds (augurs' AutoETS
//! took 30–120 ms per fit on a 4,000-point series). Missing values advance the state without
//! a correction, as state-space models treat them.

use super::{FitData, FitInfo, Model, ModelError};

/// AutoETS over the non-seasonal additive forms.
#[derive(Clone, Copy, Debug, Default)]
pub struct AutoEts;

/// A fitted exponential smoothing model: final state and parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EtsFit {
    /// Final level.
    pub level: f64,
    /// Final trend (0 for the simple form).
    pub trend: f64,
    /// Trend damping (0 for the simple form).
    pub phi: f64,
    /// Level smoothing.
    pub alpha: f64,
    /// Trend smoothing.
    pub beta: f64,
    /// Akaike information criterion of the fit.
    pub aic: f64,
}

impl EtsFit {
    /// The point forecast `h` steps ahead (h ≥ 1).
    pub fn predict(&self, out: &mut [f64]) {
        let mut damp_sum = 0.0;
        let mut phi_power = 1.0;
        for slot in out.iter_mut() {
            phi_power *= self.phi;
            damp_sum += phi_power;
            *slot = self.level + damp_sum * self.trend;
        }
    }
}

/// Runs the damped-trend filter; `beta = phi = 0` is simple smoothing. Returns the sum of
/// squared one-step errors, their count and the final state.
fn run(values: &[f64], alpha: f64, beta: f64, phi: f64, level0: f64) -> (f64, usize, f64, f64) {
    let (mut level, mut trend) = (level0, 0.0);
    let (mut sse, mut count) = (0.0, 0usize);
    for &y in values {
        let predicted = level + phi * trend;
        if y.is_finite() {
            let error = y - predicted;
            sse += error * error;
            count += 1;
            level = predicted + alpha * error;
            trend = phi * trend + beta * error;
        } else {
            level = predicted;
            trend *= phi;
        }
    }
    (sse, count, level, trend)
}

fn aic(sse: f64, count: usize, params: usize) -> f64 {
    let n = count.max(1) as f64;
    // A perfect fit has SSE 0: a tiny floor keeps the logarithm finite and the ranking.
    n * (sse / n).max(1e-300).ln() + 2.0 * (params + 1) as f64
}

/// Smoothing parameters of a fitted form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EtsParams {
    /// Level smoothing.
    pub alpha: f64,
    /// Trend smoothing (0: no trend).
    pub beta: f64,
    /// Trend damping (0: no trend).
    pub phi: f64,
    /// Akaike information criterion of the fit that chose them.
    pub aic: f64,
}

fn first_finite(values: &[f64]) -> f64 {
    values
        .iter()
        .copied()
        .find(|v| v.is_finite())
        .unwrap_or(0.0)
}

/// Chooses the form and its parameters on `values` (NaN = missing).
pub fn fit_params(values: &[f64]) -> Result<EtsParams, ModelError> {
    let finite = values.iter().filter(|v| v.is_finite()).count();
    if finite < 4 {
        return Err(ModelError::TooShort {
            needed: 4,
            has: finite,
        });
    }
    let level0 = first_finite(values);

    // Simple smoothing: a coarse grid, then golden-section search around the best.
    let sse_of = |alpha: f64| run(values, alpha, 0.0, 0.0, level0).0;
    let grid = [0.01, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 0.99];
    let mut best = (f64::INFINITY, 0.5);
    for &a in &grid {
        let s = sse_of(a);
        if s < best.0 {
            best = (s, a);
        }
    }
    let (mut lo, mut hi) = ((best.1 - 0.15).max(0.001), (best.1 + 0.15).min(0.999));
    let ratio = 0.618_033_988_75;
    let mut x1 = hi - ratio * (hi - lo);
    let mut x2 = lo + ratio * (hi - lo);
    let (mut f1, mut f2) = (sse_of(x1), sse_of(x2));
    for _ in 0..12 {
        if f1 < f2 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - ratio * (hi - lo);
            f1 = sse_of(x1);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + ratio * (hi - lo);
            f2 = sse_of(x2);
        }
    }
    let (sse, alpha) =
        [(f1, x1), (f2, x2), best]
            .into_iter()
            .fold(
                (f64::INFINITY, 0.5),
                |acc, c| if c.0 < acc.0 { c } else { acc },
            );
    let count = finite;
    let mut chosen = EtsParams {
        alpha,
        beta: 0.0,
        phi: 0.0,
        aic: aic(sse, count, 2),
    };

    // Damped trend: a grid is enough to tell whether a trend pays for its parameters.
    for &alpha in &[0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9] {
        for &beta_share in &[0.02, 0.1, 0.3] {
            for &phi in &[0.85, 0.95, 0.98] {
                let beta = alpha * beta_share;
                let (sse, count, _, _) = run(values, alpha, beta, phi, level0);
                let candidate_aic = aic(sse, count, 5);
                if candidate_aic < chosen.aic {
                    chosen = EtsParams {
                        alpha,
                        beta,
                        phi,
                        aic: candidate_aic,
                    };
                }
            }
        }
    }
    Ok(chosen)
}

/// Runs the filter with `params` over `values`: the final state.
pub fn filter(values: &[f64], params: EtsParams) -> EtsFit {
    let (_, _, level, trend) = run(
        values,
        params.alpha,
        params.beta,
        params.phi,
        first_finite(values),
    );
    EtsFit {
        level,
        trend,
        phi: params.phi,
        alpha: params.alpha,
        beta: params.beta,
        aic: params.aic,
    }
}

/// Fits AutoETS to `values` (NaN = missing): parameters on the first `design_len` values
/// (all when 0), state over all of them.
pub fn fit_with_design(values: &[f64], design_len: usize) -> Result<EtsFit, ModelError> {
    let design = if design_len > 0 && design_len <= values.len() {
        values.get(..design_len).unwrap_or(values)
    } else {
        values
    };
    let params = fit_params(design)?;
    Ok(filter(values, params))
}

/// Fits AutoETS to `values` (NaN = missing).
pub fn fit(values: &[f64]) -> Result<EtsFit, ModelError> {
    fit_with_design(values, 0)
}

impl Model for AutoEts {
    fn forecast(&self, data: &FitData<'_>, out: &mut [f64]) -> Result<FitInfo, ModelError> {
        fit_with_design(data.values, data.design_len)?.predict(out);
        Ok(FitInfo::default())
    }

    fn forecast_origins(
        &self,
        data: &FitData<'_>,
        origins: &[usize],
        horizon: usize,
    ) -> Vec<Result<Vec<f64>, ModelError>> {
        // Parameters from the design prefix, as the final fit will use: one search, not one
        // per origin.
        let design = data.design_len.max(origins.first().copied().unwrap_or(0));
        let params = fit_params(data.until(design).values);
        origins
            .iter()
            .map(|&origin| {
                let params = params.clone()?;
                let mut out = vec![0.0; horizon];
                filter(data.until(origin).values, params).predict(&mut out);
                Ok(out)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_series_gives_a_flat_forecast_near_the_level() {
        let values: Vec<f64> = (0..200)
            .map(|i| 10.0 + ((i * 37) % 7) as f64 * 0.1)
            .collect();
        let fit = fit(&values).unwrap();
        let mut out = [0.0; 5];
        fit.predict(&mut out);
        for v in out {
            assert!((v - 10.3).abs() < 0.5, "{v}");
        }
    }

    #[test]
    fn trend_is_followed_and_damped() {
        let values: Vec<f64> = (0..300).map(|i| i as f64).collect();
        let fit = fit(&values).unwrap();
        assert!(fit.phi > 0.0, "{fit:?}");
        let mut out = [0.0; 50];
        fit.predict(&mut out);
        assert!(out[0] > 299.0 && out[0] < 302.0, "{}", out[0]);
        assert!(out[49] < 300.0 + 50.0, "damped: {}", out[49]);
    }

    #[test]
    fn missing_values_are_skipped() {
        let mut values: Vec<f64> = vec![5.0; 100];
        values[50] = f64::NAN;
        let fit = fit(&values).unwrap();
        assert!((fit.level - 5.0).abs() < 1e-9);
    }

    #[test]
    fn too_short() {
        assert!(fit(&[1.0, f64::NAN, 2.0]).is_err());
    }
}
