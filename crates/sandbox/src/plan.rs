//! The plan the caller hands the helper processes (through one environment variable), and
//! the status files they hand back (in the control directory, out of the sandbox's reach).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::outcome::{LayerReport, ResourceUsage};
use crate::policy::{Limits, Network};

/// The environment variable that carries the plan to a helper.
pub const PLAN_VAR: &str = "OPSLOOP_SANDBOX_PLAN";
/// The outer helper's status file, in the control directory.
pub(crate) const OUTER_STATUS: &str = "outer.json";
/// The inner helper's status file, in the control directory.
pub(crate) const INNER_STATUS: &str = "inner.json";
/// The mount point of the new root, in the control directory.
pub(crate) const ROOT_DIR: &str = "root";
/// The scratch directory, in the control directory.
pub(crate) const SCRATCH_DIR: &str = "scratch";

/// Bytes that travel as text when they are UTF-8 (the usual case), as numbers otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Bytes {
    Text(String),
    Raw(Vec<u8>),
}

impl Bytes {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Bytes::Text(text.to_string()),
            Err(_) => Bytes::Raw(bytes.to_vec()),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Bytes::Text(text) => text.as_bytes(),
            Bytes::Raw(raw) => raw,
        }
    }
}

/// Which helper a process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Stage {
    /// Drops privileges, creates the namespaces, enforces the timeout, collects usage.
    Outer,
    /// Pid 1 of the new pid namespace: builds the root, restricts itself, starts the command.
    Inner,
}

/// How a path is exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Access {
    /// Readable and executable.
    Read,
    /// Readable, writable, creatable, deletable.
    Write,
    /// A device node: read and write, nothing else.
    Device,
    /// The new `/proc` (only with a pid namespace).
    Proc,
}

/// One path of the sandbox's filesystem, by its canonical host path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PathRule {
    pub path: PathBuf,
    pub access: Access,
    /// Whether it is a directory (mount points and Landlock rights differ).
    pub dir: bool,
}

/// What the outer helper did, for the inner one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OuterFacts {
    pub user_ns: bool,
    pub pid_ns: bool,
    pub net_ns: bool,
    /// The outer helper kept root: the inner one mounts as root and then `setuid`s.
    pub root_without_userns: bool,
    /// The command's uid as the host sees it.
    pub host_uid: u32,
    pub layers: Vec<LayerReport>,
    /// The inner helper's inherited read end of a pipe whose write end only the outer
    /// helper holds: hang-up there means the outer helper is gone.
    pub death_pipe: Option<i32>,
}

/// Everything a helper needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub stage: Stage,
    /// The process that started the outer helper: the outer helper exits if it is no
    /// longer its parent once the parent-death signal is armed.
    pub caller_pid: u32,
    pub control: PathBuf,
    pub scratch: PathBuf,
    pub rules: Vec<PathRule>,
    /// Symbolic links to recreate in the new root (`/bin` → `usr/bin`), path and target.
    pub links: Vec<(PathBuf, PathBuf)>,
    pub uid: u32,
    pub gid: u32,
    pub user_label: String,
    pub user_namespace: bool,
    pub network: Network,
    pub limits: Limits,
    pub program: Bytes,
    pub args: Vec<Bytes>,
    pub env: Vec<(Bytes, Bytes)>,
    /// The sandbox's `PATH`, for looking the program up.
    pub search_path: Bytes,
    pub notices: bool,
    pub outer: OuterFacts,
}

impl Plan {
    pub(crate) fn status_path(&self, name: &str) -> PathBuf {
        self.control.join(name)
    }
}

/// What the outer helper reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct OuterStatus {
    pub setup_error: Option<String>,
    pub layers: Vec<LayerReport>,
    pub timed_out: bool,
    /// How the inner helper ended (its own exit code or signal).
    pub inner_exit: Option<i32>,
    pub inner_signal: Option<i32>,
    pub usage: ResourceUsage,
}

/// What the inner helper reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct InnerStatus {
    pub setup_error: Option<String>,
    pub layers: Vec<LayerReport>,
    pub not_found: Option<String>,
    pub not_executable: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
}

/// Reads a status file; `None` if the helper never wrote it.
pub(crate) fn read_status<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}
