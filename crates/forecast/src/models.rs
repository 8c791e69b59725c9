//! The candidate models and the one interface the backtest drives them through.
//!
//! Every model reads the prepared `fit_values` (NaN = missing, skipped, never imputed into the
//! fit) and writes point forecasts. [`Model::forecast_origins`] exists so a model can share
//! work between the rolling origins of a backtest (the Prophet-style model accumulates one
//! Gram matrix over all of them); the default refits at each origin.

pub mod decomposition;
pub mod ets;
pub mod naive;
pub mod piecewise;

use serde::Serialize;
use thiserror::Error;

/// Why a model produced no forecast.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum ModelError {
    /// Not enough values for this model.
    #[error("needs at least {needed} values, has {has}")]
    TooShort {
        /// Values needed.
        needed: usize,
        /// Values present.
        has: usize,
    },
    /// The model needs a season the series does not have.
    #[error("no season of this length in the series")]
    NoSeason,
}

/// The data a model fits: the prepared series up to an origin.
#[derive(Clone, Copy, Debug)]
pub struct FitData<'a> {
    /// Values (outliers pulled in), NaN where missing.
    pub values: &'a [f64],
    /// Weights: 0 where missing, below 1 for outliers.
    pub weights: &'a [f64],
    /// Season lengths in steps, ascending.
    pub seasons: &'a [usize],
    /// Length of history that fixes a model's design (time scale, changepoint positions,
    /// scaling): the first backtest origin, so the final fit is the model that was scored.
    /// 0 = the data's own length.
    pub design_len: usize,
}

impl<'a> FitData<'a> {
    /// The data before index `origin`.
    pub fn until(&self, origin: usize) -> FitData<'a> {
        let origin = origin.min(self.values.len()).min(self.weights.len());
        FitData {
            values: self.values.get(..origin).unwrap_or_default(),
            weights: self.weights.get(..origin).unwrap_or_default(),
            seasons: self.seasons,
            design_len: self.design_len,
        }
    }

    /// Number of finite values.
    pub fn count_finite(&self) -> usize {
        self.values.iter().filter(|v| v.is_finite()).count()
    }

    /// The last finite value.
    pub fn last_finite(&self) -> Option<f64> {
        self.values.iter().rev().copied().find(|v| v.is_finite())
    }
}

/// What a fit leaves besides the points (for plots and reports).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FitInfo {
    /// Grid indices of the trend's changepoints that the fit kept (Prophet-style model).
    pub changepoints: Vec<usize>,
}

/// The candidate models by name, as the output and `--models` spell them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// The value one day earlier.
    SeasonalNaiveDay,
    /// The value one week earlier.
    SeasonalNaiveWeek,
    /// Exponential smoothing, simple or with a damped trend, chosen by AIC.
    AutoEts,
    /// Multiple seasonal decomposition (day, and week with three cycles) plus AutoETS.
    Mstl,
    /// Piecewise-linear trend with L1-regularised changepoints plus Fourier seasonality.
    ProphetStyle,
}

impl ModelKind {
    /// All candidates, simplest first (ties in the backtest go to the simpler model).
    pub const ALL: [ModelKind; 5] = [
        ModelKind::SeasonalNaiveDay,
        ModelKind::SeasonalNaiveWeek,
        ModelKind::AutoEts,
        ModelKind::Mstl,
        ModelKind::ProphetStyle,
    ];

    /// The name used in output.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::SeasonalNaiveDay => "seasonal_naive_day",
            ModelKind::SeasonalNaiveWeek => "seasonal_naive_week",
            ModelKind::AutoEts => "auto_ets",
            ModelKind::Mstl => "mstl",
            ModelKind::ProphetStyle => "prophet_style",
        }
    }

    /// The model of a name, for `--models`.
    pub fn from_name(name: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The model with its default settings.
    pub fn build(self) -> Box<dyn Model> {
        match self {
            ModelKind::SeasonalNaiveDay => Box::new(naive::SeasonalNaive::nth_season(0)),
            ModelKind::SeasonalNaiveWeek => Box::new(naive::SeasonalNaive::nth_season(1)),
            ModelKind::AutoEts => Box::new(ets::AutoEts),
            ModelKind::Mstl => Box::new(decomposition::Mstl::default()),
            ModelKind::ProphetStyle => Box::new(piecewise::ProphetStyle::default()),
        }
    }
}

/// One forecasting method.
pub trait Model: Send + Sync {
    /// Fits on `data` and writes `out.len()` point forecasts, starting one step after the data.
    fn forecast(&self, data: &FitData<'_>, out: &mut [f64]) -> Result<FitInfo, ModelError>;

    /// Forecasts from each origin (ascending) the next `horizon` steps; one result per origin.
    fn forecast_origins(
        &self,
        data: &FitData<'_>,
        origins: &[usize],
        horizon: usize,
    ) -> Vec<Result<Vec<f64>, ModelError>> {
        origins
            .iter()
            .map(|&origin| {
                let mut out = vec![0.0; horizon];
                self.forecast(&data.until(origin), &mut out).map(|_| out)
            })
            .collect()
    }
}
