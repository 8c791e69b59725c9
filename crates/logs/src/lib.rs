//! The log inspection loop: from bytes on disk to templates, rule hits and anomalies.
//!
//! Start with [`inspect::Inspector`], which runs the whole pipeline over files and builds an
//! [`inspect::Report`]. Its stages, in the order a line meets them:
//!
//! - [`input::LineReader`] reads plain or gzip input line by line, reporting bad bytes (the
//!   policy for long lines and bad bytes, shared by every input, is [`input::decode_line`]);
//! - [`parse::Parser`] turns a line into a [`parse::Record`] ([`parse::detect`] picks the format);
//! - a joiner adds stack-trace lines and CRI partial lines to the record they belong to;
//! - [`analysis::Analyzer`] runs the complete record through the next three stages:
//! - [`miner::TemplateMiner`] assigns the message a template, using [`mask`] for variables;
//! - [`rules::RuleSet`] matches rules, prefiltered through [`literals`];
//! - [`anomaly::AnomalyDetector`] flags new templates and spikes;
//! - [`events`] turns rule hits and anomalies into CloudEvents.
//!
//! [`pipeline::LogPipeline`] runs the same stages for the agent, over many live sources;
//! [`tail::FileTailer`] follows files through rotation for it.

pub mod analysis;
pub mod anomaly;
pub mod events;
pub mod input;
pub mod inspect;
mod joiner;
pub mod literals;
pub mod mask;
pub mod miner;
pub mod parse;
pub mod pipeline;
pub mod redact;
pub mod rules;
pub mod tail;
mod wordscan;
