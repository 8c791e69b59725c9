//! One series from raw points to a forecast with intervals: prepare, backtest the candidates,
//! refit the best on the whole history, guard against a blow-up, attach 80 % and 95 % bands
//! from the chosen model's backtest residuals. [`forecast_series`] is the entry point for the
//! CLI and for the agent's jobs alike.

use serde::{Serialize, Serializer};
use thiserror::Error;

use crate::backtest::{self, Backtest, BacktestError, BacktestOptions};
use crate::models::{FitData, ModelKind};
use crate::prepare::{self, PrepareError, PrepareOptions, Prepared, PreparedReport};
use crate::series::{Labels, Series};

/// The longest forecast accepted, in steps (bounded memory).
pub const MAX_HORIZON_STEPS: usize = 100_000;

/// How far ahead to forecast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Horizon {
    /// One shortest season (a day for minute data), or 24 steps without a season.
    #[default]
    Default,
    /// A number of grid steps.
    Steps(usize),
    /// A duration in milliseconds, rounded up to whole steps.
    Millis(i64),
}

impl Horizon {
    /// Steps ahead for a series of step `step_ms` and seasons `seasons`.
    pub fn steps(self, step_ms: i64, seasons: &[usize]) -> usize {
        let steps = match self {
            Horizon::Default => seasons.first().copied().unwrap_or(24),
            Horizon::Steps(n) => n,
            Horizon::Millis(ms) => {
                let step = step_ms.max(1);
                usize::try_from((ms.max(0) + step - 1) / step).unwrap_or(MAX_HORIZON_STEPS)
            }
        };
        steps.clamp(1, MAX_HORIZON_STEPS)
    }
}

/// Everything that decides a forecast.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ForecastOptions {
    /// Preparation.
    pub prepare: PrepareOptions,
    /// Backtest and candidates.
    pub backtest: BacktestOptions,
    /// How far ahead.
    pub horizon: Horizon,
}

/// One forecast point with its bands (an element of the issue's `forecast` array).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ForecastPoint {
    /// When, Unix milliseconds (serialised as RFC 3339).
    #[serde(rename = "timestamp", serialize_with = "rfc3339")]
    pub time_ms: i64,
    /// Point forecast.
    pub value: f64,
    /// Lower bound of the 80 % interval.
    pub lower_80: f64,
    /// Upper bound of the 80 % interval.
    pub upper_80: f64,
    /// Lower bound of the 95 % interval.
    pub lower_95: f64,
    /// Upper bound of the 95 % interval.
    pub upper_95: f64,
}

/// Serialises Unix milliseconds as RFC 3339 UTC.
pub fn rfc3339<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&opsloop_core::time::format_rfc3339(*ms))
}

fn rfc3339_all<S: Serializer>(ms: &[i64], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(ms.iter().map(|&t| opsloop_core::time::format_rfc3339(t)))
}

/// The forecast of one series, as the JSON output carries it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeriesForecast {
    /// The series' name.
    pub series: String,
    /// Its labels.
    pub labels: Labels,
    /// The chosen model.
    pub model: ModelKind,
    /// The backtest of every candidate.
    pub backtest: Backtest,
    /// What preparation did.
    pub prepared: PreparedReport,
    /// The forecast points.
    pub forecast: Vec<ForecastPoint>,
    /// Changepoints the chosen model kept (Prophet-style only), RFC 3339.
    #[serde(serialize_with = "rfc3339_all")]
    pub changepoints: Vec<i64>,
    /// Things the user should know (fallbacks, constant series).
    pub notes: Vec<String>,
}

/// A forecast with the prepared series it came from (for plots and capacity checks).
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The prepared history.
    pub prepared: Prepared,
    /// The forecast.
    pub forecast: SeriesForecast,
}

/// Why a series could not be forecast.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum ForecastError {
    /// Preparation failed.
    #[error("{series}: {source}")]
    Prepare {
        /// The series.
        series: String,
        /// Why.
        source: PrepareError,
    },
    /// No backtest possible.
    #[error("{series}: {source}")]
    Backtest {
        /// The series.
        series: String,
        /// Why.
        source: BacktestError,
    },
    /// Every candidate failed or blew up.
    #[error("{series}: no usable model ({reasons})")]
    NoModel {
        /// The series.
        series: String,
        /// Each candidate's status.
        reasons: String,
    },
}

/// Forecasts one series.
pub fn forecast_series(
    series: &Series,
    options: &ForecastOptions,
) -> Result<Outcome, ForecastError> {
    let prepared =
        prepare::prepare(series, &options.prepare).map_err(|source| ForecastError::Prepare {
            series: series.name.clone(),
            source,
        })?;
    let forecast = forecast_prepared(series, &prepared, options)?;
    Ok(Outcome { prepared, forecast })
}

/// Forecasts an already prepared series (`series` gives its name and labels).
pub fn forecast_prepared(
    series: &Series,
    prepared: &Prepared,
    options: &ForecastOptions,
) -> Result<SeriesForecast, ForecastError> {
    let horizon = options.horizon.steps(prepared.step_ms, &prepared.seasons);
    let data = FitData {
        values: &prepared.fit_values,
        weights: &prepared.weights,
        seasons: &prepared.seasons,
        design_len: 0,
    };
    let selection =
        backtest::run(&data, &prepared.values, horizon, &options.backtest).map_err(|source| {
            ForecastError::Backtest {
                series: series.name.clone(),
                source,
            }
        })?;
    let mut notes = Vec::new();
    if prepared
        .values
        .iter()
        .filter(|v| v.is_finite())
        .all(|v| Some(*v) == prepared.values.first().copied())
    {
        notes.push("constant series: the forecast repeats the constant".to_owned());
    }
    let data = FitData {
        design_len: prepared
            .len()
            .saturating_sub(selection.backtest.origins * selection.backtest.horizon),
        ..data
    };
    let (lo, hi) = backtest::plausible_range(&prepared.values, options.backtest.blow_up_ranges);
    let mut chosen = None;
    for &kind in &selection.ranking {
        let mut points = vec![0.0; horizon];
        match kind.build().forecast(&data, &mut points) {
            Ok(info) if points.iter().all(|v| v.is_finite() && *v >= lo && *v <= hi) => {
                chosen = Some((kind, points, info));
                break;
            }
            Ok(_) => notes.push(format!(
                "{}: the refit on the whole history blew up; next best used",
                kind.name()
            )),
            Err(e) => notes.push(format!(
                "{}: refit failed ({e}); next best used",
                kind.name()
            )),
        }
    }
    let Some((model, points, info)) = chosen else {
        let reasons = selection
            .backtest
            .candidates
            .iter()
            .map(|c| format!("{}: {}", c.model.name(), c.status))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ForecastError::NoModel {
            series: series.name.clone(),
            reasons,
        });
    };
    let [l80, u80, l95, u95] = backtest::interval_offsets(selection.residuals_of(model));
    let bt_h = selection.backtest.horizon.max(1) as f64;
    let n = prepared.len();
    let forecast = points
        .iter()
        .enumerate()
        .map(|(h, &value)| {
            // Beyond the backtested horizon the errors are unmeasured: widen as a random walk.
            let widen = ((h + 1) as f64 / bt_h).sqrt().max(1.0);
            ForecastPoint {
                time_ms: prepared.time_of(n + h),
                value,
                lower_80: value + l80.min(0.0) * widen,
                upper_80: value + u80.max(0.0) * widen,
                lower_95: value + l95.min(0.0) * widen,
                upper_95: value + u95.max(0.0) * widen,
            }
        })
        .collect();
    Ok(SeriesForecast {
        series: series.name.clone(),
        labels: series.labels.clone(),
        model,
        backtest: selection.backtest,
        prepared: prepared.report.clone(),
        forecast,
        changepoints: info
            .changepoints
            .iter()
            .map(|&i| prepared.time_of(i))
            .collect(),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, step_s: i64, f: impl Fn(usize) -> f64) -> Series {
        Series {
            name: "s".into(),
            points: (0..n).map(|i| (i as i64 * step_s * 1000, f(i))).collect(),
            ..Series::default()
        }
    }

    #[test]
    fn daily_series_gets_a_day_ahead_with_ordered_bands() {
        let s = series(288 * 8, 300, |i| {
            50.0 + 20.0 * (std::f64::consts::TAU * (i % 288) as f64 / 288.0).sin()
                + ((i * 7919) % 11) as f64 * 0.3
        });
        let outcome = forecast_series(&s, &ForecastOptions::default()).unwrap();
        let f = &outcome.forecast;
        assert_eq!(f.forecast.len(), 288);
        assert_eq!(f.forecast[0].time_ms, 288 * 8 * 300_000);
        for p in &f.forecast {
            assert!(p.lower_95 <= p.lower_80 && p.lower_80 <= p.value);
            assert!(p.value <= p.upper_80 && p.upper_80 <= p.upper_95);
        }
        assert_eq!(f.backtest.candidates.len(), 5);
        let json = serde_json::to_value(f).unwrap();
        assert_eq!(json["forecast"][0]["timestamp"], "1970-01-09T00:00:00.000Z");
        assert!(json["backtest"]["candidates"][0]["mase"].is_number());
    }

    #[test]
    fn constant_series_is_forecast_as_constant_with_a_note() {
        let s = series(200, 60, |_| 7.0);
        let f = forecast_series(&s, &ForecastOptions::default())
            .unwrap()
            .forecast;
        assert!(
            f.forecast
                .iter()
                .all(|p| p.value == 7.0 && p.upper_95 == 7.0)
        );
        assert!(f.notes.iter().any(|n| n.contains("constant")));
    }

    #[test]
    fn horizon_in_steps_and_durations() {
        assert_eq!(Horizon::Default.steps(300_000, &[288]), 288);
        assert_eq!(Horizon::Default.steps(420_000, &[]), 24);
        assert_eq!(Horizon::Steps(5).steps(300_000, &[288]), 5);
        assert_eq!(Horizon::Millis(86_400_000).steps(300_000, &[]), 288);
        assert_eq!(Horizon::Millis(1).steps(300_000, &[]), 1);
        assert_eq!(Horizon::Steps(usize::MAX).steps(1, &[]), MAX_HORIZON_STEPS);
    }

    #[test]
    fn errors_name_the_series() {
        let s = Series::new("empty{}");
        let err = forecast_series(&s, &ForecastOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), "empty{}: no finite values");
        let short = series(20, 60, |i| i as f64);
        let err = forecast_series(&short, &ForecastOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("too short for a backtest"),
            "{err}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any input: no panic, and a forecast, when there is one, is finite with ordered bands.
        #[test]
        fn any_series_gives_finite_forecasts_or_an_error(
            points in proptest::collection::vec(
                (0i64..20_000, proptest::prop_oneof![
                    -1e6f64..1e6,
                    proptest::prelude::Just(f64::NAN),
                    proptest::prelude::Just(0.0),
                    -1e300f64..1e300,
                ]),
                0..400,
            ),
            step in 1i64..4000,
        ) {
            let series = Series {
                name: "p".into(),
                points: points.iter().map(|&(t, v)| (t * step, v)).collect(),
                ..Series::default()
            };
            if let Ok(outcome) = forecast_series(&series, &ForecastOptions::default()) {
                for p in &outcome.forecast.forecast {
                    proptest::prop_assert!(p.value.is_finite());
                    proptest::prop_assert!(p.lower_95.is_finite() && p.upper_95.is_finite());
                    proptest::prop_assert!(p.lower_95 <= p.lower_80 && p.lower_80 <= p.value);
                    proptest::prop_assert!(p.value <= p.upper_80 && p.upper_80 <= p.upper_95);
                }
            }
        }
    }
}
