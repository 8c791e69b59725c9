//! The agent behind `opsloop run`: its sources and the data path from a line read to an event
//! stored, and the supervision of every task on the way.
//!
//! - [`sources`]: the [`sources::Source`] trait and its implementations (files, syslog UDP and
//!   TCP, stdin), reconciled by name on reload;
//! - [`framing`]: one line policy for byte streams (cut at the limit, skip the rest, flag);
//!   RFC 6587 octet counting for syslog over TCP;
//! - [`batch`]: what sources send the pipeline, lines in batches with their problems;
//! - [`checkpoint`]: the protocol that saves a file position only once its lines are durable;
//! - [`pipeline`]: the pipeline thread (the log loop's `LogPipeline`) and the publisher;
//! - [`supervisor`]: cancellation, restarts with backoff, readiness, fatal failures;
//! - [`reload`]: configuration reload; [`udp`]: UDP sockets and kernel drop counts;
//! - [`agent`]: [`Agent`], all of the above started and stopped in order.

pub mod agent;
pub mod batch;
pub mod checkpoint;
pub mod framing;
pub mod pipeline;
pub mod reload;
pub mod sources;
pub mod supervisor;
pub mod udp;

pub use agent::{Agent, AgentError, AgentOptions};
pub use supervisor::Supervisor;
