//! The log inspection loop.
pub mod input;
pub mod mask;
pub mod miner;
pub mod parse;
pub mod rules;
