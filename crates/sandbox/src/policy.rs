//! What a sandboxed run may do: the allow-lists, the network, the limits, the environment
//! names and the identity; the builder that validates them; the parsers for `256MiB` and
//! `2s` style values that the command line and playbooks share.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Names the sandbox sets itself; `--env` cannot override them.
pub const RESERVED_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "OPSLOOP_SCRATCH"];

/// What the command may reach on the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// No TCP or UDP at all, loopback included (own network namespace, Landlock, seccomp).
    None,
    /// The host's network.
    Host,
}

/// Which identity the command runs as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserSpec {
    /// `nobody`.
    Nobody,
    /// A user name looked up in the password database.
    Name(String),
    /// A numeric uid (its group: the user's primary group, or the same number).
    Uid(u32),
}

impl UserSpec {
    /// Parses `NAME|UID` as the command line takes it.
    pub fn parse(text: &str) -> Self {
        match text.parse::<u32>() {
            Ok(uid) => UserSpec::Uid(uid),
            Err(_) => UserSpec::Name(text.to_string()),
        }
    }
}

/// Resource limits of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time before the whole process tree is killed.
    pub timeout: Duration,
    /// Data memory per process (`RLIMIT_DATA`: heap and private writable mappings), bytes.
    pub memory_bytes: u64,
    /// CPU time per process (`RLIMIT_CPU`; SIGXCPU, then SIGKILL a second later).
    pub cpu_time: Duration,
    /// Processes of the sandbox's user (`RLIMIT_NPROC`, counted in its own user namespace).
    pub max_procs: u64,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Largest file a process may write (`RLIMIT_FSIZE`), bytes.
    pub file_size_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            memory_bytes: 256 << 20,
            cpu_time: Duration::from_secs(10),
            max_procs: 64,
            open_files: 256,
            file_size_bytes: 256 << 20,
        }
    }
}

/// Where the command's standard output or error goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// Passed through to the caller's own descriptor.
    Inherit,
    /// Captured into the outcome; bytes beyond `limit` are counted and dropped.
    Capture {
        /// Bytes kept.
        limit: usize,
    },
}

/// Where the command's standard input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputMode {
    /// `/dev/null`.
    Null,
    /// The caller's own standard input.
    Inherit,
}

/// A policy that failed validation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// An allow-list path is not absolute.
    #[error("{flag} {path}: the path must be absolute")]
    RelativePath {
        /// `allow_read` or `allow_write`.
        flag: &'static str,
        /// The path as given.
        path: String,
    },
    /// An environment name is empty, holds `=` or NUL, or is one the sandbox sets itself.
    #[error("env {name:?}: {reason}")]
    EnvName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A limit is zero.
    #[error("{field}: must be greater than zero")]
    ZeroLimit {
        /// The limit's name.
        field: &'static str,
    },
}

/// Everything a sandboxed run may do. Build it with [`SandboxPolicy::builder`]; the
/// defaults are what a playbook's `exec` gets.
#[derive(Clone, Debug)]
pub struct SandboxPolicy {
    pub(crate) allow_read: Vec<PathBuf>,
    pub(crate) allow_write: Vec<PathBuf>,
    pub(crate) network: Network,
    pub(crate) limits: Limits,
    pub(crate) env_names: Vec<String>,
    pub(crate) user: UserSpec,
    pub(crate) user_namespace: bool,
    pub(crate) stdin: InputMode,
    pub(crate) stdout: OutputMode,
    pub(crate) stderr: OutputMode,
    pub(crate) notices: bool,
    pub(crate) scratch_parent: Option<PathBuf>,
}

impl Default for SandboxPolicy {
    fn default() -> Self {
        SandboxPolicy {
            allow_read: Vec::new(),
            allow_write: Vec::new(),
            network: Network::None,
            limits: Limits::default(),
            env_names: Vec::new(),
            user: UserSpec::Nobody,
            user_namespace: true,
            stdin: InputMode::Null,
            stdout: OutputMode::Capture {
                limit: DEFAULT_CAPTURE_LIMIT,
            },
            stderr: OutputMode::Capture {
                limit: DEFAULT_CAPTURE_LIMIT,
            },
            notices: false,
            scratch_parent: None,
        }
    }
}

/// Bytes of each output stream a playbook run keeps by default.
pub const DEFAULT_CAPTURE_LIMIT: usize = 64 << 10;

impl SandboxPolicy {
    /// A builder starting from the defaults.
    pub fn builder() -> SandboxPolicyBuilder {
        SandboxPolicyBuilder {
            policy: SandboxPolicy::default(),
        }
    }

    /// Paths made readable and executable beyond the defaults.
    pub fn allow_read(&self) -> &[PathBuf] {
        &self.allow_read
    }

    /// Paths made writable beyond the scratch directory.
    pub fn allow_write(&self) -> &[PathBuf] {
        &self.allow_write
    }

    /// The network setting.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Names of the caller's environment variables passed in.
    pub fn env_names(&self) -> &[String] {
        &self.env_names
    }

    /// The identity asked for.
    pub fn user(&self) -> &UserSpec {
        &self.user
    }
}

/// Builds a [`SandboxPolicy`]; [`SandboxPolicyBuilder::build`] validates it.
#[derive(Clone, Debug)]
pub struct SandboxPolicyBuilder {
    policy: SandboxPolicy,
}

impl SandboxPolicyBuilder {
    /// Makes `path` (absolute) readable and executable.
    pub fn allow_read(mut self, path: impl Into<PathBuf>) -> Self {
        self.policy.allow_read.push(path.into());
        self
    }

    /// Allows creating, changing and deleting under `path` (absolute).
    pub fn allow_write(mut self, path: impl Into<PathBuf>) -> Self {
        self.policy.allow_write.push(path.into());
        self
    }

    /// Sets the network.
    pub fn network(mut self, network: Network) -> Self {
        self.policy.network = network;
        self
    }

    /// Sets the wall-clock timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.policy.limits.timeout = timeout;
        self
    }

    /// Sets the data-memory limit per process (`RLIMIT_DATA`).
    pub fn memory(mut self, bytes: u64) -> Self {
        self.policy.limits.memory_bytes = bytes;
        self
    }

    /// Sets the CPU-time limit per process.
    pub fn cpu_time(mut self, cpu: Duration) -> Self {
        self.policy.limits.cpu_time = cpu;
        self
    }

    /// Sets the process limit.
    pub fn max_procs(mut self, procs: u64) -> Self {
        self.policy.limits.max_procs = procs;
        self
    }

    /// Sets the open-file limit per process.
    pub fn open_files(mut self, files: u64) -> Self {
        self.policy.limits.open_files = files;
        self
    }

    /// Sets the largest file a process may write.
    pub fn file_size(mut self, bytes: u64) -> Self {
        self.policy.limits.file_size_bytes = bytes;
        self
    }

    /// Passes the caller's variable `name` in (its value never appears in records).
    pub fn env(mut self, name: impl Into<String>) -> Self {
        self.policy.env_names.push(name.into());
        self
    }

    /// Sets the identity.
    pub fn user(mut self, user: UserSpec) -> Self {
        self.policy.user = user;
        self
    }

    /// Whether to use a user namespace when the kernel allows one (default true). Without
    /// it a root caller still gets the other namespaces and `setuid`; an unprivileged caller
    /// gets no namespaces at all. Tests use this to exercise the fallback.
    pub fn user_namespace(mut self, enabled: bool) -> Self {
        self.policy.user_namespace = enabled;
        self
    }

    /// Sets standard input.
    pub fn stdin(mut self, mode: InputMode) -> Self {
        self.policy.stdin = mode;
        self
    }

    /// Sets standard output.
    pub fn stdout(mut self, mode: OutputMode) -> Self {
        self.policy.stdout = mode;
        self
    }

    /// Sets standard error.
    pub fn stderr(mut self, mode: OutputMode) -> Self {
        self.policy.stderr = mode;
        self
    }

    /// Whether the sandbox prints, to the command's standard error before it starts, which
    /// layers the kernel did not allow (the command line turns this on).
    pub fn notices(mut self, enabled: bool) -> Self {
        self.policy.notices = enabled;
        self
    }

    /// The directory the scratch directory is created in (default: the system's temporary
    /// directory).
    pub fn scratch_parent(mut self, dir: impl Into<PathBuf>) -> Self {
        self.policy.scratch_parent = Some(dir.into());
        self
    }

    /// Validates and returns the policy.
    pub fn build(self) -> Result<SandboxPolicy, PolicyError> {
        let policy = self.policy;
        check_absolute("allow_read", &policy.allow_read)?;
        check_absolute("allow_write", &policy.allow_write)?;
        for name in &policy.env_names {
            check_env_name(name)?;
        }
        let limits = &policy.limits;
        let zero = [
            ("timeout", limits.timeout.is_zero()),
            ("memory", limits.memory_bytes == 0),
            ("cpu_time", limits.cpu_time.is_zero()),
            ("max_procs", limits.max_procs == 0),
            ("open_files", limits.open_files == 0),
            ("file_size", limits.file_size_bytes == 0),
        ];
        if let Some((field, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return Err(PolicyError::ZeroLimit { field });
        }
        Ok(policy)
    }
}

fn check_absolute(flag: &'static str, paths: &[PathBuf]) -> Result<(), PolicyError> {
    match paths.iter().find(|p| !p.is_absolute()) {
        Some(path) => Err(PolicyError::RelativePath {
            flag,
            path: path.display().to_string(),
        }),
        None => Ok(()),
    }
}

fn check_env_name(name: &str) -> Result<(), PolicyError> {
    let reason = if name.is_empty() {
        Some("empty name")
    } else if name.contains(['=', '\0']) {
        Some("a name holds no '=' or NUL")
    } else if RESERVED_ENV.contains(&name) {
        Some("set by the sandbox itself")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PolicyError::EnvName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A `256MiB` or `2s` value that did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{value:?}: {reason}")]
pub struct UnitError {
    value: String,
    reason: &'static str,
}

fn split_number(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    let number: f64 = number.parse().ok()?;
    number.is_finite().then_some((number, unit.trim()))
}

/// Parses a byte count: a number with an optional unit `B`, `K`/`KB` (1000), `KiB` (1024),
/// `M`/`MB`, `MiB`, `G`/`GB`, `GiB`, `T`/`TB`, `TiB`.
pub fn parse_bytes(text: &str) -> Result<u64, UnitError> {
    let error = |reason| UnitError {
        value: text.to_string(),
        reason,
    };
    let (number, unit) = split_number(text).ok_or_else(|| error("expected a number"))?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1_048_576.0,
        "g" | "gb" => 1e9,
        "gib" => 1_073_741_824.0,
        "t" | "tb" => 1e12,
        "tib" => 1_099_511_627_776.0,
        _ => {
            return Err(error(
                "unknown unit (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)",
            ));
        }
    };
    let bytes = (number * scale).round();
    if bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(error("out of range"));
    }
    Ok(bytes as u64)
}

/// Parses a duration: a number with an optional unit `ms`, `s` (the default), `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let error = |reason| UnitError {
        value: text.to_string(),
        reason,
    };
    let (number, unit) = split_number(text).ok_or_else(|| error("expected a number"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(error("unknown unit (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs() < 366 * 24 * 3600)
        .ok_or_else(|| error("out of range"))
}

/// The printable form of a path list, for records.
pub(crate) fn display_paths(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.display().to_string()).collect()
}

/// Lossy text of a command line word, for records.
pub(crate) fn display_word(word: &OsString) -> String {
    Path::new(word).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_take_units() {
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1.5KiB"), Ok(1536));
        assert_eq!(parse_bytes("10"), Ok(10));
        assert_eq!(parse_bytes("2 GB"), Ok(2_000_000_000));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("-1").is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn builder_validates() {
        assert!(SandboxPolicy::builder().allow_read("/usr").build().is_ok());
        assert!(matches!(
            SandboxPolicy::builder().allow_write("rel").build(),
            Err(PolicyError::RelativePath { .. })
        ));
        assert!(matches!(
            SandboxPolicy::builder().env("PATH").build(),
            Err(PolicyError::EnvName { .. })
        ));
        assert!(matches!(
            SandboxPolicy::builder().env("A=B").build(),
            Err(PolicyError::EnvName { .. })
        ));
        assert_eq!(
            SandboxPolicy::builder().max_procs(0).build().err(),
            Some(PolicyError::ZeroLimit { field: "max_procs" })
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let policy = SandboxPolicy::default();
        assert_eq!(policy.network, Network::None);
        assert_eq!(policy.limits.timeout, Duration::from_secs(30));
        assert_eq!(policy.limits.memory_bytes, 256 << 20);
        assert_eq!(policy.limits.cpu_time, Duration::from_secs(10));
        assert_eq!(policy.limits.max_procs, 64);
        assert_eq!(UserSpec::parse("65534"), UserSpec::Uid(65534));
        assert_eq!(UserSpec::parse("nobody"), UserSpec::Name("nobody".into()));
    }
}
