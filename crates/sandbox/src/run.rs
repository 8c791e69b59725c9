//! The caller's side of a run: resolves the identity and the allow-lists, prepares the
//! control and scratch directories, starts the outer helper, captures bounded output, waits
//! (with a watchdog beyond the helper's own timeout), reads the helpers' reports back and
//! removes the scratch directory.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cleanup::{CONTROL_PREFIX, remove_tree, sweep_once};
use crate::outcome::{Captured, Outcome, Termination, redact};
use crate::plan::{
    Access, Bytes, INNER_STATUS, InnerStatus, OUTER_STATUS, OuterFacts, OuterStatus, PLAN_VAR,
    PathRule, Plan, ROOT_DIR, SCRATCH_DIR, Stage, read_status,
};
use crate::policy::{InputMode, OutputMode, SandboxPolicy, UserSpec};
use crate::process::{Waited, wait_for_pid};

/// `PATH` when the caller has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// What running programs needs: binaries, libraries, and the minimum of `/etc` for the
/// dynamic loader, name service and certificates. Missing ones are skipped.
pub const DEFAULT_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/mtab",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
];

/// Device nodes the command gets (read and write, nothing else; no terminal).
pub const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// Extra time the caller gives the outer helper beyond the timeout before killing it.
const WATCHDOG_GRACE: Duration = Duration::from_secs(10);
/// How long captured output may keep flowing after the helper ended (only a process that
/// escaped the pid namespace, where there is none, can hold a pipe open that long).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The sandbox could not be prepared on the caller's side.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// An allow-list path is missing or unreadable.
    #[error("{flag} {path}: {source}")]
    Path {
        /// `allow_read` or `allow_write`.
        flag: &'static str,
        /// The path.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// An allow-list path would expose the scratch root (every sandbox's control and
    /// scratch directories) or another sandbox's control directory.
    #[error("{flag} {path}: covers {what}; choose a narrower path")]
    CoversScratch {
        /// `allow_read` or `allow_write`.
        flag: &'static str,
        /// The path, canonical.
        path: String,
        /// What it would expose.
        what: &'static str,
    },
    /// The user does not exist or is uid 0.
    #[error("user {0}")]
    User(String),
    /// Preparing the directories or starting the helper failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The plan does not fit in one environment variable.
    #[error("the command line and environment are too large for the sandbox ({0} bytes)")]
    TooLarge(usize),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

/// How the sandbox starts its helper processes: an executable whose `args` lead to
/// [`crate::helper_main`].
#[derive(Clone, Debug)]
pub struct Helper {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Helper {
    /// The running executable again (through `/proc/self/exe`, so an upgrade that replaces
    /// the file does not matter), with `args`.
    pub fn current_exe<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Helper {
            program: PathBuf::from("/proc/self/exe"),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// An explicit executable with `args`.
    pub fn new<I, S>(program: impl Into<PathBuf>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Helper {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// A policy and the helper that enforces it. [`Sandbox::run`] blocks: call it from a
/// blocking thread, not an async worker.
#[derive(Clone, Debug)]
pub struct Sandbox {
    policy: SandboxPolicy,
    helper: Helper,
    end_on_signals: bool,
}

/// The identity the command gets.
struct Identity {
    uid: u32,
    gid: u32,
    label: String,
}

fn resolve_user(spec: &UserSpec) -> Result<Identity, SandboxError> {
    use nix::unistd::{Uid, User};
    let found = match spec {
        UserSpec::Nobody => User::from_name("nobody").ok().flatten(),
        UserSpec::Name(name) => match User::from_name(name) {
            Ok(Some(user)) => Some(user),
            _ => return Err(SandboxError::User(format!("{name}: no such user"))),
        },
        UserSpec::Uid(uid) => User::from_uid(Uid::from_raw(*uid)).ok().flatten(),
    };
    let identity = match (found, spec) {
        (Some(user), _) => Identity {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            label: user.name,
        },
        (None, UserSpec::Uid(uid)) => Identity {
            uid: *uid,
            gid: *uid,
            label: uid.to_string(),
        },
        (None, _) => Identity {
            uid: 65534,
            gid: 65534,
            label: "nobody".to_string(),
        },
    };
    if identity.uid == 0 || identity.gid == 0 {
        return Err(SandboxError::User(format!(
            "{}: the command never runs as uid or gid 0",
            identity.label
        )));
    }
    Ok(identity)
}

/// Removes `.` and `..` without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The symbolic links met on the way to `path` (`/lib64` → `usr/lib64`,
/// `/etc/resolv.conf` → `../run/...`), so the new root resolves it the way the host does.
fn link_chain(path: &Path, links: &mut Vec<(PathBuf, PathBuf)>) {
    let mut current = normalize(path);
    // As many hops as the kernel follows.
    for _ in 0..40 {
        let names: Vec<&OsStr> = current
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name),
                _ => None,
            })
            .collect();
        let mut prefix = PathBuf::from("/");
        let mut found = None;
        for (index, name) in names.iter().enumerate() {
            prefix.push(name);
            match fs::symlink_metadata(&prefix) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    found = Some(index);
                    break;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
        let Some(index) = found else { return };
        let Ok(target) = fs::read_link(&prefix) else {
            return;
        };
        if !links.iter().any(|(link, _)| *link == prefix) {
            links.push((prefix.clone(), target.clone()));
        }
        let mut next = prefix
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        next.push(&target);
        for name in names.iter().skip(index + 1) {
            next.push(name);
        }
        current = normalize(&next);
    }
}

/// Adds `path` as a rule by its canonical form, and the links that lead to it.
fn add_rule(
    path: &Path,
    access: Access,
    rules: &mut Vec<PathRule>,
    links: &mut Vec<(PathBuf, PathBuf)>,
) -> io::Result<()> {
    let canonical = fs::canonicalize(path)?;
    let dir = fs::metadata(&canonical)?.is_dir();
    if canonical != path {
        link_chain(path, links);
    }
    rules.push(PathRule {
        path: canonical,
        access,
        dir,
    });
    Ok(())
}

/// Drops rules a broader rule with at least the same rights already covers, so the new
/// root gets one mount per tree.
fn prune(rules: &mut Vec<PathRule>) {
    rules.sort_by(|a, b| a.path.cmp(&b.path).then(b.access.cmp_rank(a.access)));
    let mut kept: Vec<PathRule> = Vec::with_capacity(rules.len());
    for rule in rules.iter() {
        let covered = matches!(rule.access, Access::Read | Access::Write)
            && kept.iter().any(|k| {
                k.dir
                    && rule.path.starts_with(&k.path)
                    && matches!(
                        (k.access, rule.access),
                        (Access::Write, _) | (Access::Read, Access::Read)
                    )
            });
        if !covered {
            kept.push(rule.clone());
        }
    }
    *rules = kept;
}

impl Access {
    fn cmp_rank(self, other: Access) -> std::cmp::Ordering {
        let rank = |a: Access| match a {
            Access::Read => 0,
            Access::Write => 1,
            Access::Device => 2,
            Access::Proc => 3,
        };
        rank(self).cmp(&rank(other))
    }
}

/// Refuses an allow-list path (canonical) that holds the scratch root `parent`, where
/// every sandbox's control and scratch directories are (all of them owned by the same
/// uid when the sandboxes run as `nobody`), or that lies in another sandbox's control
/// directory.
fn check_scratch_exposure(
    flag: &'static str,
    path: &Path,
    parent: &Path,
) -> Result<(), SandboxError> {
    let what = if parent.starts_with(path) {
        Some("the scratch root, where every sandbox's scratch directory is")
    } else {
        path.strip_prefix(parent)
            .ok()
            .and_then(|rest| rest.components().next())
            .filter(|first| {
                first
                    .as_os_str()
                    .as_bytes()
                    .starts_with(CONTROL_PREFIX.as_bytes())
            })
            .map(|_| "a sandbox's control directory")
    };
    match what {
        Some(what) => Err(SandboxError::CoversScratch {
            flag,
            path: path.display().to_string(),
            what,
        }),
        None => Ok(()),
    }
}

/// A unique name for this process's next control directory.
fn control_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{CONTROL_PREFIX}{}-{}-{nanos:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The control directory: the helpers' reports, the new root's mount point and the
/// scratch directory. Removed when dropped.
struct ControlDir {
    path: PathBuf,
    removed: bool,
}

impl ControlDir {
    /// Creates the control directory in `parent` and its `scratch` and `root`, each 0700
    /// and, for a root caller, owned by the command's user. Every step works on descriptors
    /// opened without following links, so nothing planted in a shared `parent` can
    /// redirect a chown or chmod; the top directory is handed over last, so nobody else
    /// can touch its contents before they are ready.
    fn create(parent: &Path, identity: &Identity, chown: bool) -> Result<Self, SandboxError> {
        use nix::fcntl::{OFlag, open, openat};
        use nix::sys::stat::{Mode, fchmod, mkdirat};
        use nix::unistd::{Gid, Uid, fchown};
        let name = control_name();
        let path = parent.join(&name);
        let owner_only = Mode::S_IRWXU;
        let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let failed = |what: &str, shown: &Path| {
            let what = format!("{what} {}", shown.display());
            move |errno: nix::Error| SandboxError::Io {
                what,
                source: io::Error::from(errno),
            }
        };
        let parent_fd =
            open(parent, dir_flags, Mode::empty()).map_err(failed("opening", parent))?;
        mkdirat(&parent_fd, name.as_str(), owner_only).map_err(failed("creating", &path))?;
        let dir = ControlDir {
            path,
            removed: false,
        };
        let top = openat(&parent_fd, name.as_str(), dir_flags, Mode::empty())
            .map_err(failed("opening", &dir.path))?;
        let hand_over = |fd: &std::os::fd::OwnedFd, shown: &Path| {
            fchmod(fd, owner_only).map_err(failed("chmod", shown))?;
            if chown {
                // The helpers run as the command's user from the start.
                fchown(
                    fd,
                    Some(Uid::from_raw(identity.uid)),
                    Some(Gid::from_raw(identity.gid)),
                )
                .map_err(failed("chown", shown))?;
            }
            Ok::<(), SandboxError>(())
        };
        for sub in [SCRATCH_DIR, ROOT_DIR] {
            let shown = dir.path.join(sub);
            mkdirat(&top, sub, owner_only).map_err(failed("creating", &shown))?;
            let fd =
                openat(&top, sub, dir_flags, Mode::empty()).map_err(failed("opening", &shown))?;
            hand_over(&fd, &shown)?;
        }
        hand_over(&top, &dir.path)?;
        Ok(dir)
    }

    fn remove(&mut self) -> bool {
        if !self.removed {
            self.removed = remove_tree(&self.path);
        }
        self.removed
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Reads a pipe to its end, keeping the first `limit` bytes.
fn capture(pipe: impl Read + Send + 'static, limit: usize) -> mpsc::Receiver<Captured> {
    let (send, receive) = mpsc::channel();
    let mut pipe = pipe;
    std::thread::spawn(move || {
        let mut kept = Vec::with_capacity(limit.min(64 << 10));
        let mut total: u64 = 0;
        let mut buffer = [0u8; 16 << 10];
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    total += n as u64;
                    let room = limit.saturating_sub(kept.len()).min(n);
                    kept.extend_from_slice(buffer.get(..room).unwrap_or_default());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let truncated = total > kept.len() as u64;
        let _ = send.send(Captured {
            bytes: kept,
            total_bytes: total,
            truncated,
        });
    });
    receive
}

impl Sandbox {
    /// A sandbox enforcing `policy` through `helper`.
    pub fn new(policy: SandboxPolicy, helper: Helper) -> Self {
        Sandbox {
            policy,
            helper,
            end_on_signals: false,
        }
    }

    /// For a command-line process that owns its signals: while [`Sandbox::run`] waits,
    /// SIGINT, SIGTERM and SIGHUP are held; when one arrives, the sandbox is killed (its
    /// whole tree), its directory removed, and the signal delivered again with its default
    /// action, which ends this process. Not for a multi-threaded caller (the agent): the
    /// signals are held in the calling thread only.
    pub fn end_on_signals(mut self) -> Self {
        self.end_on_signals = true;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &SandboxPolicy {
        &self.policy
    }

    /// Runs `program` with `args` in the sandbox and waits for it and everything it
    /// started. `Err` only when the caller's side could not prepare the run; failures
    /// inside come back as [`Termination::SetupFailed`]. The command never runs
    /// unsandboxed.
    pub fn run(&self, program: &OsStr, args: &[OsString]) -> Result<Outcome, SandboxError> {
        let started = Instant::now();
        let policy = &self.policy;
        let identity = resolve_user(&policy.user)?;
        let root = nix::unistd::geteuid().is_root();

        let mut rules = Vec::new();
        let mut links = Vec::new();
        for path in DEFAULT_READ {
            // Missing defaults are simply not there (no /lib32 on most hosts).
            let _ = add_rule(Path::new(path), Access::Read, &mut rules, &mut links);
            // `/etc/mtab` leads to the caller's own `/proc/PID/mounts`: the link alone is
            // kept, and resolves to the sandbox's own `/proc`.
            if rules.last().is_some_and(|r| r.path.starts_with("/proc")) {
                rules.pop();
            }
        }
        let parent = match &policy.scratch_parent {
            Some(dir) => dir.clone(),
            None => std::env::temp_dir(),
        };
        let parent = fs::canonicalize(&parent)
            .map_err(io_error(format!("scratch parent {}", parent.display())))?;
        // Directories of earlier callers killed before they could remove theirs.
        sweep_once(&parent);
        for (flag, access, paths) in [
            ("allow_read", Access::Read, &policy.allow_read),
            ("allow_write", Access::Write, &policy.allow_write),
        ] {
            for path in paths {
                add_rule(path, access, &mut rules, &mut links).map_err(|source| {
                    SandboxError::Path {
                        flag,
                        path: path.display().to_string(),
                        source,
                    }
                })?;
                if let Some(rule) = rules.last() {
                    check_scratch_exposure(flag, &rule.path, &parent)?;
                }
            }
        }
        for device in DEVICES {
            if Path::new(device).exists() {
                rules.push(PathRule {
                    path: PathBuf::from(device),
                    access: Access::Device,
                    dir: false,
                });
            }
        }

        let mut control = ControlDir::create(&parent, &identity, root)?;
        let scratch = control.path.join(SCRATCH_DIR);
        rules.push(PathRule {
            path: scratch.clone(),
            access: Access::Write,
            dir: true,
        });
        prune(&mut rules);

        let search_path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
        let mut env = vec![
            (Bytes::new(b"PATH"), Bytes::new(search_path.as_bytes())),
            (
                Bytes::new(b"HOME"),
                Bytes::new(scratch.as_os_str().as_bytes()),
            ),
            (
                Bytes::new(b"OPSLOOP_SCRATCH"),
                Bytes::new(scratch.as_os_str().as_bytes()),
            ),
        ];
        if let Some(lang) = std::env::var_os("LANG") {
            env.push((Bytes::new(b"LANG"), Bytes::new(lang.as_bytes())));
        }
        let mut secrets = Vec::new();
        for name in &policy.env_names {
            if let Some(value) = std::env::var_os(name) {
                secrets.push(value.as_bytes().to_vec());
                env.push((Bytes::new(name.as_bytes()), Bytes::new(value.as_bytes())));
            }
        }

        let plan = Plan {
            stage: Stage::Outer,
            caller_pid: std::process::id(),
            control: control.path.clone(),
            scratch,
            rules,
            links,
            uid: identity.uid,
            gid: identity.gid,
            user_label: identity.label,
            user_namespace: policy.user_namespace,
            network: policy.network,
            limits: policy.limits,
            program: Bytes::new(program.as_bytes()),
            args: args.iter().map(|a| Bytes::new(a.as_bytes())).collect(),
            env,
            search_path: Bytes::new(search_path.as_bytes()),
            notices: policy.notices,
            outer: OuterFacts::default(),
        };
        let plan_text = serde_json::to_string(&plan).map_err(|e| SandboxError::Io {
            what: "encoding the plan".into(),
            source: io::Error::other(e),
        })?;
        // The kernel's limit for one environment string, with room for the name.
        if plan_text.len() > 120 << 10 {
            return Err(SandboxError::TooLarge(plan_text.len()));
        }

        // Held from before the helper starts, so one arriving in between is not lost.
        let held = if self.end_on_signals {
            Some(HeldSignals::hold()?)
        } else {
            None
        };
        let mut child = self.start_outer(&plan, &plan_text)?;
        let limit_of = |mode: OutputMode| match mode {
            OutputMode::Capture { limit } => limit,
            OutputMode::Inherit => 0,
        };
        let stdout = child
            .stdout
            .take()
            .map(|pipe| capture(pipe, limit_of(policy.stdout)));
        let stderr = child
            .stderr
            .take()
            .map(|pipe| capture(pipe, limit_of(policy.stderr)));

        let waited = wait_for_pid(
            child.pid.as_raw(),
            policy.limits.timeout + WATCHDOG_GRACE,
            held.as_ref().map(|h| &h.fd),
        );
        if waited != Waited::Exited {
            let _ = nix::sys::signal::kill(child.pid, nix::sys::signal::Signal::SIGKILL);
        }
        let helper_status = child.wait();
        if let (Waited::Signal(signal), Some(held)) = (waited, held) {
            // The outer helper is dead; the inner one and the command die with it
            // (parent-death signals, pid namespace) and may still be writing for a moment.
            let deadline = Instant::now() + DRAIN_GRACE;
            while !control.remove() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            held.redeliver(signal);
        }
        let finished = waited == Waited::Exited;
        let duration = started.elapsed();

        let drain_deadline = Instant::now() + DRAIN_GRACE;
        let collect = |receiver: Option<mpsc::Receiver<Captured>>| {
            receiver.map(|r| {
                let left = drain_deadline.saturating_duration_since(Instant::now());
                let mut captured = r.recv_timeout(left).unwrap_or_default();
                redact(&mut captured.bytes, &secrets, captured.truncated);
                captured
            })
        };
        let stdout = collect(stdout);
        let stderr = collect(stderr);

        let outer: Option<OuterStatus> = read_status(&plan.status_path(OUTER_STATUS));
        let inner: Option<InnerStatus> = read_status(&plan.status_path(INNER_STATUS));
        let mut layers = Vec::new();
        let termination = match (&outer, finished) {
            (_, false) => Termination::SetupFailed(
                "the sandbox helper did not finish in time and was killed".into(),
            ),
            (None, true) => Termination::SetupFailed(format!(
                "the sandbox helper ended without a report ({})",
                helper_status
            )),
            (Some(outer), true) => {
                layers.extend(outer.layers.iter().cloned());
                if let Some(inner) = &inner {
                    layers.extend(inner.layers.iter().cloned());
                }
                judge(outer, inner.as_ref())
            }
        };
        let usage = outer.map(|o| o.usage).unwrap_or_default();
        let scratch_removed = control.remove();
        Ok(Outcome {
            termination,
            duration,
            usage,
            layers,
            stdout,
            stderr,
            scratch_removed,
        })
    }
}

/// The outer helper's process and the caller's ends of its output pipes.
struct OuterProcess {
    pid: nix::unistd::Pid,
    stdout: Option<fs::File>,
    stderr: Option<fs::File>,
}

impl OuterProcess {
    /// Reaps the outer helper; says how it ended.
    fn wait(&self) -> String {
        use nix::sys::wait::{WaitStatus, waitpid};
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return format!("exit status: {code}"),
                Ok(WaitStatus::Signaled(_, signal, _)) => return format!("signal: {signal}"),
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return format!("status unknown: {}", e.desc()),
            }
        }
    }
}

impl Sandbox {
    /// Starts the outer helper: forked from this process when it has a single thread (the
    /// command line), which saves executing the large binary again; otherwise (the agent)
    /// the helper executable, the plan in its environment.
    fn start_outer(&self, plan: &Plan, plan_text: &str) -> Result<OuterProcess, SandboxError> {
        if crate::fork::single_threaded() {
            return self.fork_outer(plan);
        }
        let policy = &self.policy;
        let stdio = |mode: OutputMode| match mode {
            OutputMode::Inherit => Stdio::inherit(),
            OutputMode::Capture { .. } => Stdio::piped(),
        };
        let mut child = Command::new(&self.helper.program)
            .args(&self.helper.args)
            .env_clear()
            .env(PLAN_VAR, plan_text)
            .stdin(match policy.stdin {
                InputMode::Null => Stdio::null(),
                InputMode::Inherit => Stdio::inherit(),
            })
            .stdout(stdio(policy.stdout))
            .stderr(stdio(policy.stderr))
            .spawn()
            .map_err(io_error(format!(
                "starting the sandbox helper {}",
                self.helper.program.display()
            )))?;
        let pid = i32::try_from(child.id()).map_err(|_| SandboxError::Io {
            what: "starting the sandbox helper".into(),
            source: io::Error::other("pid out of range"),
        })?;
        // Waited for by pid; a `Child` dropped is neither killed nor reaped.
        Ok(OuterProcess {
            pid: nix::unistd::Pid::from_raw(pid),
            stdout: child
                .stdout
                .take()
                .map(|p| fs::File::from(std::os::fd::OwnedFd::from(p))),
            stderr: child
                .stderr
                .take()
                .map(|p| fs::File::from(std::os::fd::OwnedFd::from(p))),
        })
    }

    /// Forks the outer helper, its standard descriptors set as the policy says.
    fn fork_outer(&self, plan: &Plan) -> Result<OuterProcess, SandboxError> {
        use std::os::fd::{AsRawFd, OwnedFd};
        let policy = &self.policy;
        let failed = |what: &'static str| {
            move |e: nix::Error| SandboxError::Io {
                what: what.into(),
                source: e.into(),
            }
        };
        let pipe_for = |mode: OutputMode| -> Result<Option<(OwnedFd, OwnedFd)>, SandboxError> {
            match mode {
                OutputMode::Inherit => Ok(None),
                OutputMode::Capture { .. } => nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map(Some)
                    .map_err(failed("a pipe for the command's output")),
            }
        };
        let stdout = pipe_for(policy.stdout)?;
        let stderr = pipe_for(policy.stderr)?;
        let stdin = match policy.stdin {
            InputMode::Null => {
                Some(fs::File::open("/dev/null").map_err(io_error("opening /dev/null"))?)
            }
            InputMode::Inherit => None,
        };
        let wiring = [
            (stdin.as_ref().map(AsRawFd::as_raw_fd), 0),
            (stdout.as_ref().map(|(_, w)| w.as_raw_fd()), 1),
            (stderr.as_ref().map(|(_, w)| w.as_raw_fd()), 2),
        ];
        let plan = plan.clone();
        let pid = crate::fork::fork_stage(move || {
            // Nothing of the caller's environment stays in this process's memory (the plan
            // holds what the command gets), as in a helper executed with only the plan.
            crate::fork::scrub_environment();
            for (from, to) in wiring {
                if let Some(from) = from {
                    // dup2 clears close-on-exec on the copy.
                    if !crate::fork::dup_onto(from, to) {
                        return 125;
                    }
                }
            }
            crate::fork::close_inherited_descriptors();
            crate::helper::run_outer(plan)
        })
        .map_err(failed("starting the sandbox helper"))?;
        Ok(OuterProcess {
            pid,
            stdout: stdout.map(|(read, _)| fs::File::from(read)),
            stderr: stderr.map(|(read, _)| fs::File::from(read)),
        })
    }
}

/// Termination signals held (blocked, readable from a signalfd) while a command-line caller
/// waits for its sandbox; those the caller ignores stay ignored.
struct HeldSignals {
    fd: nix::sys::signalfd::SignalFd,
    held: nix::sys::signal::SigSet,
}

impl HeldSignals {
    fn hold() -> Result<Self, SandboxError> {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let failed = |what: &str| {
            let what = what.to_string();
            move |e: nix::Error| SandboxError::Io {
                what,
                source: e.into(),
            }
        };
        let previous = SigSet::thread_get_mask().map_err(failed("reading the signal mask"))?;
        let ignored = ignored_signals();
        let mut held = SigSet::empty();
        for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            let bit = 1u64 << ((signal as i32 - 1) & 63);
            if !previous.contains(signal) && ignored & bit == 0 {
                held.add(signal);
            }
        }
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&held), None)
            .map_err(failed("holding termination signals"))?;
        let fd = SignalFd::with_flags(&held, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC);
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) => {
                let _ =
                    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&held), None);
                return Err(failed("a signalfd for termination signals")(e));
            }
        };
        Ok(HeldSignals { fd, held })
    }

    /// Delivers `signal` again (this process has the default action for it: it was not
    /// ignored, and the command line installs no handler), which ends this process.
    fn redeliver(self, signal: i32) -> ! {
        if let Ok(signal) = nix::sys::signal::Signal::try_from(signal) {
            let _ = nix::sys::signal::raise(signal);
        }
        // Unblocked by the drop: the signal ends the process here; should it not, the
        // exit status says the same.
        drop(self);
        std::process::exit(128 + signal)
    }
}

/// The signals this process ignores (`SigIgn` in `/proc/self/status`, bit N-1 for signal
/// N); none when that cannot be read.
fn ignored_signals() -> u64 {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .unwrap_or(0)
}

impl Drop for HeldSignals {
    fn drop(&mut self) {
        use nix::sys::signal::SigmaskHow;
        // One that arrived after the wait is delivered now, as it would have been.
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&self.held), None);
    }
}

/// How the command ended, from the helpers' reports.
fn judge(outer: &OuterStatus, inner: Option<&InnerStatus>) -> Termination {
    if let Some(error) = &outer.setup_error {
        return Termination::SetupFailed(error.clone());
    }
    if outer.timed_out {
        return Termination::TimedOut;
    }
    match inner {
        Some(inner) => {
            if let Some(error) = &inner.setup_error {
                Termination::SetupFailed(error.clone())
            } else if let Some(message) = &inner.not_found {
                Termination::NotFound(message.clone())
            } else if let Some(message) = &inner.not_executable {
                Termination::NotExecutable(message.clone())
            } else if let Some(signal) = inner.signal {
                Termination::Signaled(signal)
            } else if let Some(code) = inner.exit_code {
                Termination::Exited(code)
            } else {
                Termination::SetupFailed("the sandbox's init reported no result".into())
            }
        }
        None => Termination::SetupFailed(match (outer.inner_signal, outer.inner_exit) {
            (Some(signal), _) => format!("the sandbox's init was killed by signal {signal}"),
            (None, Some(code)) => format!("the sandbox's init exited {code} without a report"),
            (None, None) => "the sandbox's init did not start".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{mode, test_dir};

    #[test]
    fn normalize_resolves_dots() {
        assert_eq!(
            normalize(Path::new("/etc/../run/./x")),
            PathBuf::from("/run/x")
        );
        assert_eq!(normalize(Path::new("/../..")), PathBuf::from("/"));
    }

    #[test]
    fn prune_keeps_one_mount_per_tree() {
        let rule = |path: &str, access, dir| PathRule {
            path: PathBuf::from(path),
            access,
            dir,
        };
        let mut rules = vec![
            rule("/usr/share/zoneinfo/UTC", Access::Read, false),
            rule("/usr", Access::Read, true),
            rule("/usr/local/x", Access::Write, true),
            rule("/var/x", Access::Write, true),
            rule("/var/x/y", Access::Read, true),
            rule("/dev/null", Access::Device, false),
        ];
        prune(&mut rules);
        let paths: Vec<_> = rules.iter().map(|r| r.path.display().to_string()).collect();
        assert_eq!(paths, ["/dev/null", "/usr", "/usr/local/x", "/var/x"]);
    }

    #[test]
    fn allow_lists_may_not_expose_the_scratch_root() {
        let parent = Path::new("/tmp");
        for covering in [
            "/",
            "/tmp",
            "/tmp/opsloop-sandbox-1-0-0",
            "/tmp/opsloop-sandbox-1-0-0/scratch",
        ] {
            assert!(
                matches!(
                    check_scratch_exposure("allow_read", Path::new(covering), parent),
                    Err(SandboxError::CoversScratch { .. })
                ),
                "{covering}"
            );
        }
        for fine in ["/usr", "/tmp/data", "/var/tmp", "/tmpx"] {
            assert!(
                check_scratch_exposure("allow_read", Path::new(fine), parent).is_ok(),
                "{fine}"
            );
        }
    }

    #[test]
    fn the_control_directory_is_owner_only() {
        use std::os::unix::fs::MetadataExt;
        let parent = test_dir("control");
        let identity = resolve_user(&UserSpec::Nobody).unwrap();
        let root = nix::unistd::geteuid().is_root();
        let mut control = ControlDir::create(&parent, &identity, root).unwrap();
        for path in [
            control.path.clone(),
            control.path.join(SCRATCH_DIR),
            control.path.join(ROOT_DIR),
        ] {
            assert_eq!(mode(&path), 0o700, "{}", path.display());
            if root {
                assert_eq!(fs::metadata(&path).unwrap().uid(), identity.uid);
            }
        }
        assert!(control.remove());
        fs::remove_dir_all(parent).unwrap();
    }

    #[test]
    fn uid_zero_is_refused() {
        assert!(matches!(
            resolve_user(&UserSpec::Uid(0)),
            Err(SandboxError::User(_))
        ));
        assert!(resolve_user(&UserSpec::Nobody).is_ok());
    }

    #[test]
    fn judge_prefers_setup_errors_then_timeout() {
        let mut outer = OuterStatus {
            timed_out: true,
            ..OuterStatus::default()
        };
        assert_eq!(judge(&outer, None), Termination::TimedOut);
        outer.setup_error = Some("x".into());
        assert_eq!(judge(&outer, None), Termination::SetupFailed("x".into()));
        let outer = OuterStatus::default();
        let inner = InnerStatus {
            signal: Some(9),
            ..InnerStatus::default()
        };
        assert_eq!(judge(&outer, Some(&inner)), Termination::Signaled(9));
    }
}
