//! What a sandboxed run produced: how it ended, resource use, the isolation layers applied
//! or missing, the captured output; the exit-status convention; the record for the audit
//! trail and `--output json`, which names environment variables but never their values.

use std::ffi::OsString;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::{Network, SandboxPolicy, UserSpec, display_paths, display_word};

/// Exit status when the timeout killed the command.
pub const EXIT_TIMED_OUT: u8 = 124;
/// Exit status when the sandbox itself could not be set up.
pub const EXIT_SETUP_FAILED: u8 = 125;
/// Exit status when the command exists but could not be executed.
pub const EXIT_NOT_EXECUTABLE: u8 = 126;
/// Exit status when the command was not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// One isolation layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// `PR_SET_NO_NEW_PRIVS`: no set-uid or file capabilities gained by exec.
    NoNewPrivs,
    /// Bounding, effective, permitted, inheritable and ambient sets emptied.
    Capabilities,
    /// The command's identity: never a host root-equivalent uid.
    User,
    /// Own user namespace.
    UserNamespace,
    /// Own pid namespace.
    PidNamespace,
    /// Own mount namespace with a root built from the allow-lists.
    MountNamespace,
    /// Own network namespace (only with network `none`).
    NetworkNamespace,
    /// Own IPC namespace.
    IpcNamespace,
    /// Own UTS namespace.
    UtsNamespace,
    /// A `/proc` showing only the sandbox's processes.
    Proc,
    /// Landlock filesystem rules for the allow-lists.
    Landlock,
    /// Landlock network rules (TCP, and UDP where the kernel has them).
    LandlockNetwork,
    /// Landlock scopes: signals and abstract Unix sockets outside the sandbox.
    LandlockScope,
    /// The seccomp filter.
    Seccomp,
    /// Resource limits.
    Rlimits,
}

/// Whether a layer is in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerState {
    /// In force.
    Applied,
    /// Wanted, but the kernel (or the caller's privileges) did not allow it.
    Unavailable,
    /// Not wanted by the policy (the network namespace with network `host`).
    NotRequested,
}

/// One layer's state, with a short reason or detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerReport {
    /// The layer.
    pub layer: Layer,
    /// Its state.
    pub state: LayerState,
    /// What was applied, or why not.
    pub detail: String,
}

impl LayerReport {
    pub(crate) fn applied(layer: Layer, detail: impl Into<String>) -> Self {
        LayerReport {
            layer,
            state: LayerState::Applied,
            detail: detail.into(),
        }
    }

    pub(crate) fn unavailable(layer: Layer, detail: impl Into<String>) -> Self {
        LayerReport {
            layer,
            state: LayerState::Unavailable,
            detail: detail.into(),
        }
    }

    pub(crate) fn not_requested(layer: Layer, detail: impl Into<String>) -> Self {
        LayerReport {
            layer,
            state: LayerState::NotRequested,
            detail: detail.into(),
        }
    }
}

/// How the command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Termination {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// The timeout killed it and everything it started.
    TimedOut,
    /// Not found in the sandbox's `PATH` or at its path.
    NotFound(String),
    /// Found, but it could not be executed (permissions, Landlock, format).
    NotExecutable(String),
    /// The sandbox could not be set up; the command did not run.
    SetupFailed(String),
}

impl Termination {
    /// The exit status convention: the command's own; 128+N for signal N; 124 after the
    /// timeout; 125 when the sandbox could not be set up; 126 not executable; 127 not found.
    pub fn exit_code(&self) -> u8 {
        match self {
            Termination::Exited(code) => u8::try_from(*code & 0xff).unwrap_or(1),
            Termination::Signaled(signal) => u8::try_from(128 + (*signal & 0x7f)).unwrap_or(255),
            Termination::TimedOut => EXIT_TIMED_OUT,
            Termination::NotFound(_) => EXIT_NOT_FOUND,
            Termination::NotExecutable(_) => EXIT_NOT_EXECUTABLE,
            Termination::SetupFailed(_) => EXIT_SETUP_FAILED,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Termination::Exited(_) => "exited",
            Termination::Signaled(_) => "signaled",
            Termination::TimedOut => "timed_out",
            Termination::NotFound(_) => "not_found",
            Termination::NotExecutable(_) => "not_executable",
            Termination::SetupFailed(_) => "setup_failed",
        }
    }
}

/// Resources the command's process tree used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceUsage {
    /// Largest resident set of any one process, bytes.
    pub max_rss_bytes: u64,
    /// User CPU time of all processes reaped, microseconds.
    pub user_cpu_us: u64,
    /// System CPU time of all processes reaped, microseconds.
    pub system_cpu_us: u64,
}

/// One captured output stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    /// The bytes kept (at most the limit), with secret values redacted.
    pub bytes: Vec<u8>,
    /// All bytes the command wrote.
    pub total_bytes: u64,
    /// Whether bytes were dropped.
    pub truncated: bool,
}

/// The result of [`crate::Sandbox::run`].
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How the command ended.
    pub termination: Termination,
    /// Wall-clock time from start to the last process gone.
    pub duration: Duration,
    /// Resources used.
    pub usage: ResourceUsage,
    /// Every layer's state.
    pub layers: Vec<LayerReport>,
    /// Captured standard output (`None` when passed through).
    pub stdout: Option<Captured>,
    /// Captured standard error (`None` when passed through).
    pub stderr: Option<Captured>,
    /// Whether the scratch directory was removed.
    pub scratch_removed: bool,
}

impl Outcome {
    /// The exit status, by the convention of [`Termination::exit_code`].
    pub fn exit_code(&self) -> u8 {
        self.termination.exit_code()
    }

    /// Whether the timeout killed the command.
    pub fn timed_out(&self) -> bool {
        self.termination == Termination::TimedOut
    }

    /// The signal that killed the command, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.termination {
            Termination::Signaled(signal) => Some(signal),
            _ => None,
        }
    }

    /// Layers that were wanted but not available.
    pub fn unavailable_layers(&self) -> impl Iterator<Item = &LayerReport> {
        self.layers
            .iter()
            .filter(|l| l.state == LayerState::Unavailable)
    }

    /// The record for the audit trail and `--output json`: the command, the settings
    /// (environment names only), how it ended, resource use, layers and truncated output.
    pub fn record(
        &self,
        policy: &SandboxPolicy,
        program: &OsString,
        args: &[OsString],
    ) -> RunRecord {
        let message = match &self.termination {
            Termination::NotFound(m)
            | Termination::NotExecutable(m)
            | Termination::SetupFailed(m) => Some(m.clone()),
            _ => None,
        };
        let error = match &self.termination {
            Termination::Exited(_) | Termination::Signaled(_) => None,
            Termination::TimedOut => Some(RecordError {
                code: "timed_out".into(),
                message: "the timeout killed the command and everything it started".into(),
            }),
            Termination::NotFound(m) => Some(RecordError {
                code: "command_not_found".into(),
                message: m.clone(),
            }),
            Termination::NotExecutable(m) => Some(RecordError {
                code: "command_not_executable".into(),
                message: m.clone(),
            }),
            Termination::SetupFailed(m) => Some(RecordError {
                code: SETUP_ERROR_CODE.into(),
                message: m.clone(),
            }),
        };
        RunRecord {
            command: command_words(program, args),
            settings: RecordSettings::of(policy),
            exit_status: self.exit_code(),
            termination: self.termination.kind(),
            exit_code: match self.termination {
                Termination::Exited(code) => Some(code),
                _ => None,
            },
            signal: self.signal(),
            timed_out: self.timed_out(),
            message,
            error,
            duration_ms: u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            usage: self.usage,
            layers: self.layers.clone(),
            stdout: self.stdout.as_ref().map(RecordOutput::from),
            stderr: self.stderr.as_ref().map(RecordOutput::from),
            scratch_removed: self.scratch_removed,
        }
    }
}

/// The error code of a run the sandbox could not set up.
pub const SETUP_ERROR_CODE: &str = "sandbox_setup";

/// The command line as records show it.
fn command_words(program: &OsString, args: &[OsString]) -> Vec<String> {
    std::iter::once(program)
        .chain(args)
        .map(display_word)
        .collect()
}

impl RunRecord {
    /// The record of a run that never started because the sandbox could not be set up
    /// (a policy refused, a path missing): the same shape as any other record, with exit
    /// status 125, no layers, no output, and `error` saying why.
    pub fn setup_failure(
        program: &OsString,
        args: &[OsString],
        settings: RecordSettings,
        message: impl Into<String>,
    ) -> RunRecord {
        let message = message.into();
        RunRecord {
            command: command_words(program, args),
            settings,
            exit_status: EXIT_SETUP_FAILED,
            termination: Termination::SetupFailed(String::new()).kind(),
            exit_code: None,
            signal: None,
            timed_out: false,
            message: Some(message.clone()),
            error: Some(RecordError {
                code: SETUP_ERROR_CODE.into(),
                message,
            }),
            duration_ms: 0,
            usage: ResourceUsage::default(),
            layers: Vec::new(),
            stdout: None,
            stderr: None,
            // Nothing was created.
            scratch_removed: true,
        }
    }
}

impl RecordSettings {
    /// The settings of `policy`.
    pub fn of(policy: &SandboxPolicy) -> RecordSettings {
        let limits = policy.limits();
        RecordSettings {
            allow_read: display_paths(policy.allow_read()),
            allow_write: display_paths(policy.allow_write()),
            network: policy.network(),
            timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            memory_bytes: limits.memory_bytes,
            cpu_time_ms: u64::try_from(limits.cpu_time.as_millis()).unwrap_or(u64::MAX),
            max_procs: limits.max_procs,
            env: policy.env_names().to_vec(),
            user: match policy.user() {
                UserSpec::Nobody => "nobody".to_string(),
                UserSpec::Name(name) => name.clone(),
                UserSpec::Uid(uid) => uid.to_string(),
            },
        }
    }
}

/// Why a run failed, in a [`RunRecord`]: the same object `--output json` uses for every
/// error of the command line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordError {
    /// `sandbox_setup`, `command_not_found`, `command_not_executable`, `timed_out`.
    pub code: String,
    /// What happened.
    pub message: String,
}

/// A run as the audit trail and `--output json` show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunRecord {
    /// The command and its arguments (lossy text).
    pub command: Vec<String>,
    /// The settings it ran with.
    pub settings: RecordSettings,
    /// The exit status the command line returns.
    pub exit_status: u8,
    /// `exited`, `signaled`, `timed_out`, `not_found`, `not_executable`, `setup_failed`.
    pub termination: &'static str,
    /// The command's own exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// Whether the timeout killed it.
    pub timed_out: bool,
    /// Why it did not run, when it did not.
    pub message: Option<String>,
    /// The failure, when the sandbox could not set up, find, run or finish the command
    /// (`null` when the command ran and exited or was killed by a signal).
    pub error: Option<RecordError>,
    /// Wall-clock duration.
    pub duration_ms: u64,
    /// Resources used.
    pub usage: ResourceUsage,
    /// Every layer's state.
    pub layers: Vec<LayerReport>,
    /// Captured standard output.
    pub stdout: Option<RecordOutput>,
    /// Captured standard error.
    pub stderr: Option<RecordOutput>,
    /// Whether the scratch directory was removed.
    pub scratch_removed: bool,
}

/// The settings part of a [`RunRecord`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordSettings {
    /// Extra readable paths.
    pub allow_read: Vec<String>,
    /// Extra writable paths.
    pub allow_write: Vec<String>,
    /// The network.
    pub network: Network,
    /// Timeout.
    pub timeout_ms: u64,
    /// Memory per process.
    pub memory_bytes: u64,
    /// CPU time per process.
    pub cpu_time_ms: u64,
    /// Process limit.
    pub max_procs: u64,
    /// Names of environment variables passed in (never their values).
    pub env: Vec<String>,
    /// The identity asked for.
    pub user: String,
}

/// Captured output in a [`RunRecord`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordOutput {
    /// The kept bytes as text (invalid UTF-8 replaced).
    pub text: String,
    /// All bytes written.
    pub total_bytes: u64,
    /// Whether bytes were dropped.
    pub truncated: bool,
}

impl From<&Captured> for RecordOutput {
    fn from(captured: &Captured) -> Self {
        RecordOutput {
            text: String::from_utf8_lossy(&captured.bytes).into_owned(),
            total_bytes: captured.total_bytes,
            truncated: captured.truncated,
        }
    }
}

/// The replacement for a secret value found in captured output.
pub const REDACTED: &[u8] = b"[redacted]";

/// Replaces every occurrence of each secret in `bytes`, and a trailing partial occurrence
/// when the output was cut (a secret split by the limit must not leak its first half).
pub(crate) fn redact(bytes: &mut Vec<u8>, secrets: &[Vec<u8>], truncated: bool) {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if memchr::memmem::find(bytes, secret).is_some() {
            let mut out = Vec::with_capacity(bytes.len());
            let mut rest: &[u8] = bytes;
            while let Some(at) = memchr::memmem::find(rest, secret) {
                out.extend_from_slice(rest.get(..at).unwrap_or_default());
                out.extend_from_slice(REDACTED);
                rest = rest.get(at + secret.len()..).unwrap_or_default();
            }
            out.extend_from_slice(rest);
            *bytes = out;
        }
        if truncated {
            let longest = (1..secret.len().min(bytes.len() + 1))
                .rev()
                .find(|&n| bytes.ends_with(secret.get(..n).unwrap_or_default()));
            if let Some(n) = longest {
                bytes.truncate(bytes.len() - n);
                bytes.extend_from_slice(REDACTED);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_convention() {
        assert_eq!(Termination::Exited(3).exit_code(), 3);
        assert_eq!(Termination::Signaled(9).exit_code(), 137);
        assert_eq!(Termination::TimedOut.exit_code(), 124);
        assert_eq!(Termination::SetupFailed(String::new()).exit_code(), 125);
        assert_eq!(Termination::NotExecutable(String::new()).exit_code(), 126);
        assert_eq!(Termination::NotFound(String::new()).exit_code(), 127);
    }

    #[test]
    fn a_setup_failure_has_the_keys_of_any_other_record() {
        let policy = SandboxPolicy::default();
        let program = OsString::from("true");
        let ran = Outcome {
            termination: Termination::Exited(0),
            duration: Duration::from_millis(3),
            usage: ResourceUsage::default(),
            layers: Vec::new(),
            stdout: None,
            stderr: None,
            scratch_removed: true,
        }
        .record(&policy, &program, &[]);
        let failed =
            RunRecord::setup_failure(&program, &[], RecordSettings::of(&policy), "no such path");
        let keys = |record: &RunRecord| {
            let value = serde_json::to_value(record).unwrap();
            let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(&ran), keys(&failed));
        assert_eq!(failed.exit_status, EXIT_SETUP_FAILED);
        assert_eq!(failed.error.unwrap().code, SETUP_ERROR_CODE);
        assert_eq!(ran.error, None);
    }

    #[test]
    fn secrets_are_redacted_even_when_cut() {
        let secrets = vec![b"hunter2".to_vec()];
        let mut out = b"pw=hunter2; again hunter2.".to_vec();
        redact(&mut out, &secrets, false);
        assert_eq!(out, b"pw=[redacted]; again [redacted].");
        let mut cut = b"pw=hunt".to_vec();
        redact(&mut cut, &secrets, true);
        assert_eq!(cut, b"pw=[redacted]");
        let mut harmless = b"hunt".to_vec();
        redact(&mut harmless, &secrets, false);
        assert_eq!(harmless, b"hunt");
    }
}
