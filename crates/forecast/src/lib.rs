//! opsloop's resource prediction loop as a library: read series ([`input`], [`prometheus`]),
//! prepare them ([`prepare`]), choose a model per series by rolling-origin backtest
//! ([`backtest`] over [`models`]), forecast with 80 % and 95 % bands ([`pipeline`]), warn about
//! capacity ([`capacity`]), propose and simulate autoscalers ([`hpa`]), check past predictions
//! ([`accuracy`]), plot ([`plot`]) and run scheduled jobs inside the agent ([`jobs`]).
//!
//! Start with [`pipeline::forecast_series`]: one [`Series`] and [`ForecastOptions`] in, an
//! [`Outcome`] (the prepared history and a [`SeriesForecast`]) out. An agent job is the same
//! call on a window fetched from Prometheus, followed by [`accuracy::mape`] on the predictions
//! of earlier runs once their time has come.

pub mod accuracy;
pub mod backtest;
pub mod capacity;
pub mod hpa;
pub mod input;
pub mod jobs;
pub mod models;
pub mod pipeline;
pub mod plot;
pub mod prepare;
pub mod prometheus;
pub mod series;
pub mod stats;

pub use pipeline::{
    ForecastError, ForecastOptions, ForecastPoint, Horizon, Outcome, SeriesForecast,
    forecast_series,
};
pub use series::{Labels, Series};
