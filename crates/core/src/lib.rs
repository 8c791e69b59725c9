//! opsloop's shared vocabulary, used by every loop and by the infrastructure crates.
//!
//! - [`Level`]: log severity, parsed from the many spellings logs use.
//! - [`time`]: timestamps as Unix milliseconds and the civil-date arithmetic behind them.
//! - [`event`]: the CloudEvents 1.0 [`Event`] every loop emits, and the event [`event::types`].
//! - [`config`]: the agent's YAML [`config::Config`], its embedded default and validation.
//! - [`ingest`]: records received over the API, [`ingest::IngestedRecord`].
//! - [`alertmanager`]: Alertmanager webhook notifications (version 4) as events.
//!
//! This crate does no I/O; everything above it depends on it and it depends on nothing of ours.

pub mod alertmanager;
pub mod config;
pub mod event;
pub mod ingest;
pub mod level;
pub mod time;

pub use event::Event;
pub use level::Level;
