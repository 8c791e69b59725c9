//! The log inspection loop.
pub mod anomaly;
pub mod input;
pub mod inspect;
pub mod literals;
pub mod mask;
pub mod miner;
pub mod parse;
pub mod rules;
