//! The inner helper, pid 1 of the sandbox's pid namespace: builds the new root, leaves for
//! an unprivileged identity, drops every capability, sets the rlimits, applies Landlock,
//! no_new_privs and seccomp to itself, then starts the command (which inherits all of it)
//! with only descriptors 0, 1 and 2, reaps orphans until the command ends, and reports how
//! it ended. When it exits, the kernel kills whatever the command left behind; it dies
//! with the outer helper (parent-death signal re-armed after its own credential changes,
//! and a pipe only the outer helper writes to tells whether that one died first).

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{CloneFlags, unshare};
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{AccessFlags, Gid, Uid, access, chdir, setgroups, setresgid, setresuid};

use super::{SetupError, filter, fsroot, setup_error, setup_failure, setup_io_error, write_status};
use crate::outcome::{Layer, LayerReport, LayerState};
use crate::plan::{INNER_STATUS, InnerStatus, Plan};

pub(super) fn run(plan: Plan) -> u8 {
    // Descriptors inherited from the caller, to be closed for the command: listed before
    // this process opens any of its own.
    let mut inherited = inherited_fds();
    let death_pipe = plan.outer.death_pipe.and_then(|fd| {
        inherited.retain(|&open| open != fd);
        reopen_death_pipe(fd)
    });
    let path = plan.status_path(INNER_STATUS);
    let mut file = match File::create(&path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("opsloop: sandbox: creating {}: {e}", path.display());
            return 125;
        }
    };
    let mut status = InnerStatus::default();
    if let Err(e) = inner(&plan, &inherited, death_pipe.as_ref(), &mut status) {
        status.setup_error = Some(e.to_string());
    }
    write_status(&mut file, &status);
    if status.setup_error.is_some() { 125 } else { 0 }
}

/// Open descriptors above 2.
fn inherited_fds() -> Vec<i32> {
    match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&fd| fd > 2)
            .collect(),
        // No /proc: every descriptor the limit allows (closing a closed one is harmless).
        Err(_) => {
            let most = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft.min(4096));
            (3..i32::try_from(most).unwrap_or(1024)).collect()
        }
    }
}

/// The pipe the outer helper holds the other end of, as a descriptor of this process's own
/// (close-on-exec, so the command never gets it); the inherited number is closed.
fn reopen_death_pipe(fd: i32) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let reopened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{fd}"))
        .ok();
    let _ = nix::unistd::close(fd);
    reopened
}

/// Arms the parent-death signal (the credential changes above cleared the first one) and
/// stops if the outer helper died before it was armed: pid 1 dying then takes the whole
/// sandbox with it.
fn arm_parent_death(death_pipe: Option<&File>) -> Result<(), SetupError> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(setup_error("parent-death signal"))?;
    let Some(pipe) = death_pipe else {
        return Ok(());
    };
    let mut fds = [PollFd::new(pipe, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Nothing is ever written: readable or hung up both mean the writer is gone.
    let gone = poll(&mut fds, Some(&now)).is_ok_and(|n| n > 0);
    if gone {
        return Err(setup_failure(
            "parent-death signal",
            "the outer helper is gone",
        ));
    }
    Ok(())
}

fn inner(
    plan: &Plan,
    inherited: &[i32],
    death_pipe: Option<&File>,
    status: &mut InnerStatus,
) -> Result<(), SetupError> {
    let facts = &plan.outer;
    // If the outer helper dies (the caller gave up on it), everything here dies too.
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(setup_error("parent-death signal"))?;
    // For the user-namespace maps after the root has changed.
    let proc_self = File::open("/proc/self").map_err(setup_io_error("opening /proc/self"))?;
    let layers = &mut status.layers;

    let can_mount = facts.user_ns || facts.root_without_userns;
    let mut proc_mounted = false;
    let mut mount_ns = false;
    if can_mount {
        match unshare(CloneFlags::CLONE_NEWNS) {
            Ok(()) => {
                proc_mounted = fsroot::build(plan, facts.pid_ns)?;
                mount_ns = true;
                layers.push(LayerReport::applied(
                    Layer::MountNamespace,
                    "root built from the allow-lists",
                ));
            }
            Err(e) => layers.push(LayerReport::unavailable(
                Layer::MountNamespace,
                format!("unshare: {}", e.desc()),
            )),
        }
    } else {
        layers.push(LayerReport::unavailable(
            Layer::MountNamespace,
            "needs a user namespace or root",
        ));
    }
    layers.push(if proc_mounted {
        LayerReport::applied(Layer::Proc, "only the sandbox's processes")
    } else if facts.pid_ns && mount_ns {
        LayerReport::unavailable(Layer::Proc, "mounting proc was refused: no /proc at all")
    } else {
        LayerReport::unavailable(
            Layer::Proc,
            "needs pid and mount namespaces: /proc is closed",
        )
    });
    chdir(&plan.scratch).map_err(setup_error("chdir to the scratch directory"))?;
    if facts.pid_ns {
        let _ = nix::unistd::sethostname("opsloop-sandbox");
    }

    layers.push(identity(plan, &proc_self)?);
    drop(proc_self);
    layers.push(drop_capabilities());
    layers.push(rlimits(plan)?);
    layers.extend(filter::landlock(plan, mount_ns, proc_mounted)?);
    // Landlock set it already where it ran; set it here for kernels without Landlock.
    layers.push(match prctl::set_no_new_privs() {
        Ok(()) => LayerReport::applied(Layer::NoNewPrivs, ""),
        Err(e) => LayerReport::unavailable(Layer::NoNewPrivs, e.desc()),
    });
    layers.push(if seccomp_supported() {
        filter::seccomp(plan.network)?
    } else {
        LayerReport::unavailable(Layer::Seccomp, "this kernel has no seccomp")
    });
    // Nothing outside may read this process's memory or /proc files. The command's own
    // flag cannot be set from here: posix_spawn runs no code between fork and exec, and
    // execve makes a process dumpable again unless its credentials change. What keeps
    // sandboxes (all host uid 65534) apart is the pid namespace each has, the Landlock
    // domain (ptrace and /proc access across domains are denied) and seccomp (ptrace,
    // process_vm_*); the CLI warns loudly when the pid namespace is missing.
    let _ = prctl::set_dumpable(false);
    arm_parent_death(death_pipe)?;

    if plan.notices {
        let missing: Vec<String> = layers
            .iter()
            .filter(|l| l.state == LayerState::Unavailable)
            .chain(
                facts
                    .layers
                    .iter()
                    .filter(|l| l.state == LayerState::Unavailable),
            )
            .map(|l| format!("{} ({})", layer_name(l.layer), l.detail))
            .collect();
        if !missing.is_empty() {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(
                stderr,
                "opsloop: sandbox: not available on this host: {}",
                missing.join("; ")
            );
        }
    }

    start_and_wait(plan, inherited, facts.pid_ns, status)
}

/// The layer's name as reports spell it.
pub(crate) fn layer_name(layer: Layer) -> String {
    serde_json::to_value(layer)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn seccomp_supported() -> bool {
    std::fs::read_to_string("/proc/self/status").map_or(true, |s| s.contains("\nSeccomp:"))
}

/// Leaves for the command's identity: a second user namespace whose only uid is the
/// command's (mapped to the first one's root, i.e. the unprivileged host uid), or
/// `setuid` for a root caller without user namespaces.
fn identity(plan: &Plan, proc_self: &File) -> Result<LayerReport, SetupError> {
    let facts = &plan.outer;
    let (uid, gid) = (plan.uid, plan.gid);
    if facts.user_ns {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(setup_error("unshare the user namespace"))?;
        let write = |name: &str, text: String| {
            nix::fcntl::openat(
                proc_self,
                name,
                nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map(File::from)
            .map_err(setup_error(format!("opening {name}")))?
            .write_all(text.as_bytes())
            .map_err(setup_io_error(format!("writing {name}")))
        };
        // A non-dumpable process's /proc files belong to root of the user namespace its
        // memory was created in: the host's, when this process was forked rather than
        // executed. Dumpable for the writes only.
        let _ = prctl::set_dumpable(true);
        let written = write("setgroups", "deny".into())
            .and_then(|()| write("uid_map", format!("{uid} 0 1")))
            .and_then(|()| write("gid_map", format!("{gid} 0 1")));
        let _ = prctl::set_dumpable(false);
        written?;
        return Ok(LayerReport::applied(
            Layer::User,
            format!(
                "uid {uid} ({}) in a user namespace; host uid {}",
                plan.user_label, facts.host_uid
            ),
        ));
    }
    if facts.root_without_userns {
        // The bounding set can only be cleared while still privileged.
        clear_bounding_set();
        let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
        setgroups(&[g]).map_err(setup_error("setgroups"))?;
        setresgid(g, g, g).map_err(setup_error("setresgid"))?;
        setresuid(u, u, u).map_err(setup_error("setresuid"))?;
        return Ok(LayerReport::applied(
            Layer::User,
            format!("host uid {uid} ({})", plan.user_label),
        ));
    }
    Ok(LayerReport::applied(
        Layer::User,
        format!(
            "the caller's own uid {} (unprivileged, no user namespace)",
            facts.host_uid
        ),
    ))
}

/// Drops what it can from the bounding set; true if all of it.
fn clear_bounding_set() -> bool {
    use rustix::thread::{CapabilitySet, remove_capability_from_bounding_set};
    CapabilitySet::all()
        .iter()
        .map(remove_capability_from_bounding_set)
        .all(|r| matches!(r, Ok(()) | Err(rustix::io::Errno::INVAL)))
}

fn drop_capabilities() -> LayerReport {
    use rustix::thread::{
        CapabilitySet, CapabilitySets, clear_ambient_capability_set, set_capabilities,
    };
    let bounding = clear_bounding_set();
    let sets = set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    );
    let ambient = clear_ambient_capability_set();
    match (sets, ambient) {
        (Ok(()), Ok(())) => LayerReport::applied(
            Layer::Capabilities,
            if bounding {
                "all sets empty"
            } else {
                "effective, permitted, inheritable, ambient empty; bounding set kept (no CAP_SETPCAP)"
            },
        ),
        (Err(e), _) | (_, Err(e)) => {
            LayerReport::unavailable(Layer::Capabilities, format!("capset: {e}"))
        }
    }
}

/// Lowers a limit, never raising the hard one.
fn lower(resource: Resource, soft: u64, hard: u64) -> Result<(), SetupError> {
    let (_, current_hard) = getrlimit(resource).map_err(setup_error("getrlimit"))?;
    let hard = hard.min(current_hard);
    setrlimit(resource, soft.min(hard), hard)
        .map_err(setup_error(format!("setrlimit {resource:?}")))
}

/// Processes of the real uid running now (only needed without a user namespace, where
/// RLIMIT_NPROC counts all of the caller's processes).
fn processes_of_this_uid() -> u64 {
    let uid = nix::unistd::getuid().as_raw().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .is_some_and(|real| real == uid)
            })
        })
        .count() as u64
}

fn rlimits(plan: &Plan) -> Result<LayerReport, SetupError> {
    let limits = &plan.limits;
    let facts = &plan.outer;
    let cpu = limits.cpu_time.as_secs() + u64::from(limits.cpu_time.subsec_nanos() > 0);
    // This process counts too.
    let mut procs = limits.max_procs.saturating_add(1);
    let mut detail = String::new();
    if !facts.user_ns && !facts.root_without_userns {
        // Without its own user namespace the count includes the caller's other processes.
        procs = procs.saturating_add(processes_of_this_uid());
        detail = format!(
            " (plus the caller's {} running processes)",
            procs.saturating_sub(limits.max_procs).saturating_sub(1)
        );
    }
    lower(Resource::RLIMIT_CORE, 0, 0)?;
    // The data limit (heap, private writable mappings) here; the address-space limit,
    // which also counts shared, stack-like and memfd mappings, just before the command
    // starts (see `limit_address_space`).
    lower(
        Resource::RLIMIT_DATA,
        limits.memory_bytes,
        limits.memory_bytes,
    )?;
    // SIGXCPU at the limit, SIGKILL a second later for a process that ignores it.
    lower(Resource::RLIMIT_CPU, cpu, cpu + 1)?;
    lower(Resource::RLIMIT_NPROC, procs, procs)?;
    lower(
        Resource::RLIMIT_NOFILE,
        limits.open_files,
        limits.open_files,
    )?;
    lower(
        Resource::RLIMIT_FSIZE,
        limits.file_size_bytes,
        limits.file_size_bytes,
    )?;
    Ok(LayerReport::applied(
        Layer::Rlimits,
        format!(
            "address space {} bytes per process, cpu {cpu} s, processes {}{detail}, open files {}, file size {} bytes, no core dumps",
            limits.memory_bytes, limits.max_procs, limits.open_files, limits.file_size_bytes
        ),
    ))
}

/// This process's address space now (`VmSize`), if `/proc` says.
fn address_space_in_use() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Room this process needs under its own address-space limit to start the command
/// (posix_spawn maps a stack) and report how it ended.
const SPAWN_HEADROOM: u64 = 4 << 20;

/// Sets the memory limit as an address-space limit (RLIMIT_AS: every mapping counts,
/// shared, stack-like and memfd ones included), soft and hard, on this process just before
/// it starts the command, which inherits it; the command's new image replaces this one, so
/// the limit is the command's own. Nothing here allocates much afterwards. Refused with a
/// clear reason when this process alone already needs more than the limit.
fn limit_address_space(memory: u64) -> Result<(), SetupError> {
    if let Some(used) = address_space_in_use()
        && used.saturating_add(SPAWN_HEADROOM) > memory
    {
        return Err(setup_failure(
            "memory limit",
            format!(
                "{memory} bytes is below what the sandbox's init needs to start the command \
                 ({} bytes of address space); use at least {} MiB",
                used.saturating_add(SPAWN_HEADROOM),
                used.saturating_add(SPAWN_HEADROOM).div_ceil(1 << 20)
            ),
        ));
    }
    lower(Resource::RLIMIT_AS, memory, memory)
}

/// Where the command is: its own path when it has a `/`, else the first executable file
/// of that name in the sandbox's `PATH`.
fn resolve(program: &[u8], search_path: &[u8]) -> Option<PathBuf> {
    if program.contains(&b'/') {
        return Some(PathBuf::from(OsStr::from_bytes(program)));
    }
    search_path
        .split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { b".".as_slice() } else { dir };
            Path::new(OsStr::from_bytes(dir)).join(OsStr::from_bytes(program))
        })
        .find(|candidate| candidate.is_file() && access(candidate, AccessFlags::X_OK).is_ok())
}

fn c_string(bytes: &[u8], what: &str) -> Result<CString, SetupError> {
    CString::new(bytes).map_err(|_| setup_failure(what, "holds a NUL byte"))
}

fn start_and_wait(
    plan: &Plan,
    inherited: &[i32],
    pid_ns: bool,
    status: &mut InnerStatus,
) -> Result<(), SetupError> {
    let shown = String::from_utf8_lossy(plan.program.as_bytes()).into_owned();
    let Some(path) = resolve(plan.program.as_bytes(), plan.search_path.as_bytes()) else {
        status.not_found = Some(format!("{shown}: command not found in the sandbox's PATH"));
        return Ok(());
    };
    let mut argv = vec![c_string(plan.program.as_bytes(), "the command")?];
    for (index, arg) in plan.args.iter().enumerate() {
        argv.push(c_string(
            arg.as_bytes(),
            &format!("argument {}", index + 1),
        )?);
    }
    let mut envp = Vec::with_capacity(plan.env.len());
    for (name, value) in &plan.env {
        let mut pair = name.as_bytes().to_vec();
        pair.push(b'=');
        pair.extend_from_slice(value.as_bytes());
        envp.push(c_string(&pair, "an environment variable")?);
    }
    let mut actions = PosixSpawnFileActions::init().map_err(setup_error("posix_spawn"))?;
    limit_address_space(plan.limits.memory_bytes)?;
    for &fd in inherited {
        actions.add_close(fd).map_err(setup_error("posix_spawn"))?;
    }
    let mut attr = PosixSpawnAttr::init().map_err(setup_error("posix_spawn"))?;
    // Dispositions this process changed (Rust ignores SIGPIPE) go back to the defaults.
    attr.set_sigdefault(&SigSet::all())
        .map_err(setup_error("posix_spawn"))?;
    attr.set_sigmask(&SigSet::empty())
        .map_err(setup_error("posix_spawn"))?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK,
    )
    .map_err(setup_error("posix_spawn"))?;
    let child = match posix_spawn(path.as_path(), &actions, &attr, &argv, &envp) {
        Ok(pid) => pid,
        Err(Errno::ENOENT) => {
            status.not_found = Some(format!("{shown}: no such file in the sandbox"));
            return Ok(());
        }
        Err(e @ (Errno::EACCES | Errno::EPERM | Errno::ENOEXEC | Errno::EISDIR)) => {
            status.not_executable = Some(format!("{shown}: {}", e.desc()));
            return Ok(());
        }
        Err(e) => return Err(setup_failure(format!("starting {shown}"), e.desc())),
    };
    loop {
        // As pid 1, reap every orphan; without a pid namespace only the command.
        let waited = if pid_ns {
            waitpid(None, None)
        } else {
            waitpid(child, None)
        };
        match waited {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                status.exit_code = Some(code);
                return Ok(());
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                status.signal = Some(signal as i32);
                return Ok(());
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(setup_failure("waiting for the command", e.desc())),
        }
    }
}
