//! opsloop's streaming metric anomaly detection: a causal [`Detector`] per series scoring each
//! value in [0, 1], the [`stretches`] of scores above a threshold, and a small reader of
//! `timestamp,value` CSV/JSON input ([`input`]), an SVG plot of a scored series ([`plot`]);
//! the agent's jobs that follow Prometheus series with it ([`jobs`], over the forecast crate's
//! Prometheus client).

pub mod detector;
mod finite;
pub mod input;
pub mod jobs;
pub mod plot;
pub mod season;
pub mod stats;
pub mod stretches;

pub use detector::{Detector, DetectorConfig};

/// The threshold `opsloop detect` flags anomalies at by default: the detector's alarm level.
pub fn default_threshold() -> f64 {
    DetectorConfig::default().alarm_level
}
