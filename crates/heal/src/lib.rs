//! opsloop's self-healing loop: playbooks matched against events, guarded incidents,
//! actions (sandboxed exec, HTTP, Kubernetes, NATS, events), verification, compensation and
//! escalation, every decision handed to a journal (the audit trail).
//!
//! - [`spec`]: the playbook YAML as written; [`playbook`]: loading, validation (file:line),
//!   compilation, the event-type index.
//! - [`expr`]: bounded CEL and `${{ … }}` templates.
//! - [`engine`]: [`HealEngine`], matching, thresholds, guardrails, approvals, the incident
//!   lifecycle up to the start of a run.
//! - [`run`]: [`run::run_incident`], steps with timeouts and retries, verification,
//!   compensation, escalation.
//! - [`action`]: the [`action::ActionRunner`] boundary and its implementations.
//! - [`incident`]: incidents, trail entries, the [`incident::HealJournal`] trait, redaction.
//! - [`driver`]: the loop as a tokio task fed events through a channel.
//! - [`lock`]: [`lock::IncidentLock`], one agent acting per incident when several share a
//!   stream.
//! - [`simulate`]: what `opsloop heal test` shows, acting on nothing.
//! - [`store_journal`]: the journal over the store (trail and incidents tables).
//!
//! The crate consumes and produces CloudEvents only; it imports no other loop.

pub mod action;
pub mod driver;
pub mod engine;
pub mod expr;
pub mod incident;
pub mod lock;
pub mod playbook;
pub mod run;
pub mod simulate;
pub mod spec;
pub mod store_journal;

pub use engine::HealEngine;
pub use playbook::PlaybookSet;
