//! Rolling-origin backtest: every candidate forecasts from several origins over the last part
//! of the history, is scored by MASE against what happened, and the best one is chosen. A
//! candidate whose forecast is not finite or leaves the plausible range (a blow-up) is
//! rejected, whatever its score. The chosen model's residuals give the prediction intervals.

use serde::Serialize;

use crate::models::{FitData, ModelKind};
use crate::stats;

/// How to backtest.
#[derive(Clone, Debug, PartialEq)]
pub struct BacktestOptions {
    /// Origins (each one backtest horizon apart, the last one a horizon before the end).
    pub origins: usize,
    /// Candidates, simplest first.
    pub models: Vec<ModelKind>,
    /// A forecast further than this many history ranges outside the history's range blew up.
    pub blow_up_ranges: f64,
}

impl Default for BacktestOptions {
    fn default() -> Self {
        BacktestOptions {
            origins: 3,
            models: ModelKind::ALL.to_vec(),
            blow_up_ranges: 1.0,
        }
    }
}

/// One candidate's result (an element of the issue's `backtest` metrics).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CandidateScore {
    /// The model's name.
    pub model: ModelKind,
    /// Mean absolute scaled error over all origins (`None` when not scored).
    pub mase: Option<f64>,
    /// Symmetric MAPE in percent over all origins.
    pub smape: Option<f64>,
    /// `ok`, or why the candidate was not usable (`blew up at …`, `needs …`).
    pub status: String,
}

/// The backtest of one series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Backtest {
    /// Origins used.
    pub origins: usize,
    /// Steps forecast from each origin.
    pub horizon: usize,
    /// The MASE denominator (in-sample seasonal-naive MAE).
    pub scale: f64,
    /// Every candidate, in the order tried.
    pub candidates: Vec<CandidateScore>,
}

/// What the backtest decided.
#[derive(Clone, Debug)]
pub struct Selection {
    /// The report.
    pub backtest: Backtest,
    /// Usable candidates, best first.
    pub ranking: Vec<ModelKind>,
    /// Residuals (actual − forecast) of each candidate, by model, over all origins.
    pub residuals: Vec<(ModelKind, Vec<f64>)>,
}

impl Selection {
    /// The residuals of `model`.
    pub fn residuals_of(&self, model: ModelKind) -> &[f64] {
        self.residuals
            .iter()
            .find(|(m, _)| *m == model)
            .map(|(_, r)| r.as_slice())
            .unwrap_or_default()
    }
}

/// Why no backtest could be run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BacktestError {
    /// The history is too short for one origin.
    #[error(
        "too short for a backtest: {points} grid points, {needed} needed (a forecast horizon of {horizon} after at least {min_train} points of history)"
    )]
    TooShort {
        /// Grid points.
        points: usize,
        /// Points needed.
        needed: usize,
        /// Backtest horizon.
        horizon: usize,
        /// Minimum history at the first origin.
        min_train: usize,
    },
}

/// The plausible range of a history: forecasts outside `[min − k·range, max + k·range]` blew up.
pub fn plausible_range(values: &[f64], ranges: f64) -> (f64, f64) {
    let (lo, hi) = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (f64::NEG_INFINITY, f64::INFINITY);
    }
    // A flat history still allows a little movement.
    let range = (hi - lo).max(1e-9 * (1.0 + hi.abs()));
    (lo - ranges * range, hi + ranges * range)
}

/// The backtest horizon for a forecast of `horizon` steps over `n` points.
pub fn backtest_horizon(horizon: usize, seasons: &[usize], n: usize) -> usize {
    let cap = seasons.first().copied().unwrap_or(horizon).max(1);
    horizon.min(cap).min(n / 4).max(1)
}

/// Minimum history before the first origin.
pub fn min_train(seasons: &[usize]) -> usize {
    seasons.first().map(|m| 2 * m).unwrap_or(0).max(30)
}

/// Runs the backtest. `actuals` are the prepared values (outliers as observed), `data` what the
/// models fit.
pub fn run(
    data: &FitData<'_>,
    actuals: &[f64],
    horizon: usize,
    options: &BacktestOptions,
) -> Result<Selection, BacktestError> {
    let n = data.values.len();
    let h = backtest_horizon(horizon, data.seasons, n);
    let min_train = min_train(data.seasons);
    let origins: Vec<usize> = (1..=options.origins.max(1))
        .rev()
        .filter_map(|j| n.checked_sub(j * h))
        .filter(|&o| o >= min_train)
        .collect();
    let Some(&first_origin) = origins.first() else {
        return Err(BacktestError::TooShort {
            points: n,
            needed: min_train + h,
            horizon: h,
            min_train,
        });
    };
    let lag = data.seasons.first().copied().unwrap_or(1);
    let scale = stats::mase_scale(actuals, lag).unwrap_or(1.0);
    let data = FitData {
        design_len: first_origin,
        ..*data
    };
    let mut candidates = Vec::with_capacity(options.models.len());
    let mut scored: Vec<(f64, usize, ModelKind)> = Vec::new();
    let mut residuals = Vec::new();
    for (rank, &kind) in options.models.iter().enumerate() {
        let model = kind.build();
        let results = model.forecast_origins(&data, &origins, h);
        let mut model_residuals = Vec::with_capacity(origins.len() * h);
        let (mut abs_sum, mut smape_sum, mut count) = (0.0, 0.0, 0usize);
        let mut failure = None;
        for (&origin, result) in origins.iter().zip(results) {
            let forecast = match result {
                Ok(f) => f,
                Err(e) => {
                    failure = Some(format!("unavailable: {e}"));
                    break;
                }
            };
            let (lo, hi) = plausible_range(
                data.values.get(..origin).unwrap_or_default(),
                options.blow_up_ranges,
            );
            if forecast
                .iter()
                .any(|v| !v.is_finite() || *v < lo || *v > hi)
            {
                failure = Some(format!(
                    "rejected: blew up (left the plausible range {lo:.4}..{hi:.4})"
                ));
                break;
            }
            let actual = actuals.get(origin..origin + h).unwrap_or_default();
            for (&a, &f) in actual.iter().zip(&forecast) {
                if a.is_finite() {
                    let error = a - f;
                    abs_sum += error.abs();
                    let denom = a.abs() + f.abs();
                    smape_sum += if denom > 0.0 {
                        200.0 * error.abs() / denom
                    } else {
                        0.0
                    };
                    count += 1;
                    model_residuals.push(error);
                }
            }
        }
        match failure {
            Some(status) => candidates.push(CandidateScore {
                model: kind,
                mase: None,
                smape: None,
                status,
            }),
            None if count == 0 => candidates.push(CandidateScore {
                model: kind,
                mase: None,
                smape: None,
                status: "unavailable: no observed points after the origins".into(),
            }),
            // Errors too large to add up (values near ±1e308): no score, so not chosen.
            None if !(abs_sum / count as f64 / scale).is_finite() => {
                candidates.push(CandidateScore {
                    model: kind,
                    mase: None,
                    smape: None,
                    status: "rejected: its errors are too large to score (not finite)".into(),
                })
            }
            None => {
                let mase = abs_sum / count as f64 / scale;
                candidates.push(CandidateScore {
                    model: kind,
                    mase: Some(mase),
                    smape: Some(smape_sum / count as f64),
                    status: "ok".into(),
                });
                scored.push((mase, rank, kind));
                residuals.push((kind, model_residuals));
            }
        }
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    Ok(Selection {
        backtest: Backtest {
            origins: origins.len(),
            horizon: h,
            scale,
            candidates,
        },
        ranking: scored.into_iter().map(|(_, _, k)| k).collect(),
        residuals,
    })
}

/// Interval offsets from residuals: (lower 80, upper 80, lower 95, upper 95), added to a point
/// forecast. Zero when there are no residuals.
pub fn interval_offsets(residuals: &[f64]) -> [f64; 4] {
    let mut sorted: Vec<f64> = residuals
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| stats::quantile_sorted(&sorted, p).unwrap_or(0.0);
    [q(0.10), q(0.90), q(0.025), q(0.975)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(n: usize, m: usize) -> Vec<f64> {
        (0..n)
            .map(|i| 10.0 + 5.0 * (std::f64::consts::TAU * (i % m) as f64 / m as f64).sin())
            .collect()
    }

    #[test]
    fn seasonal_series_prefers_a_seasonal_model() {
        let values = daily(24 * 14, 24);
        let weights = vec![1.0; values.len()];
        let data = FitData {
            values: &values,
            weights: &weights,
            seasons: &[24, 168],
            design_len: 0,
        };
        let selection = run(&data, &values, 24, &BacktestOptions::default()).unwrap();
        assert_eq!(selection.backtest.origins, 3);
        assert_eq!(selection.backtest.horizon, 24);
        let best = selection.ranking[0];
        assert_ne!(best, ModelKind::AutoEts, "{:?}", selection.backtest);
        let best_score = selection
            .backtest
            .candidates
            .iter()
            .find(|c| c.model == best)
            .and_then(|c| c.mase)
            .unwrap();
        assert!(best_score < 0.05, "{best_score}");
    }

    #[test]
    fn too_short_is_an_error_with_numbers() {
        let values = daily(35, 24);
        let weights = vec![1.0; 35];
        let data = FitData {
            values: &values,
            weights: &weights,
            seasons: &[],
            design_len: 0,
        };
        let err = run(&data, &values, 24, &BacktestOptions::default()).unwrap_err();
        assert!(matches!(err, BacktestError::TooShort { .. }), "{err}");
    }

    #[test]
    fn intervals_from_residual_quantiles() {
        let residuals: Vec<f64> = (0..=100).map(|i| i as f64 - 50.0).collect();
        let [l80, u80, l95, u95] = interval_offsets(&residuals);
        assert_eq!((l80, u80), (-40.0, 40.0));
        assert_eq!((l95, u95), (-47.5, 47.5));
        assert_eq!(interval_offsets(&[]), [0.0; 4]);
    }
}
