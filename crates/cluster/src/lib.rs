//! opsloop's cluster actions for the heal loop: the [`ClusterRunner`] performs `kubernetes`
//! actions (rollout restart, scale, delete pod, cordon/uncordon, annotate, patch) with a
//! `kube::Client` and `nats_publish` actions with an `async_nats::Client`. The heal crate's
//! `SystemRunner::with_cluster` delegates both kinds here.
//!
//! The library never picks a Kubernetes API version (no k8s-openapi version feature): the
//! binary does.

mod client;
mod kube_action;
mod runner;
mod target;

pub use client::{ClusterError, infer_kube_client};
pub use runner::{ClusterRunner, FIELD_MANAGER, RESTARTED_AT_ANNOTATION};
pub use target::{Permission, Target, TargetKind, all_permissions};
