//! The log inspection loop.
pub mod mask;
pub mod miner;
