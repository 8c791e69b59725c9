//! The outer helper: drops a root caller to the command's user, creates the user, pid,
//! network, IPC and UTS namespaces (each as far as the kernel allows), starts the inner
//! helper as pid 1 of the new pid namespace, enforces the timeout by killing it (which
//! kills the whole namespace), and reports the tree's resource use. It dies with its caller
//! (parent-death signal, armed after the last credential change, which would clear it), and
//! the inner helper dies with it, so a killed caller leaves nothing running.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};

use nix::sched::{CloneFlags, unshare};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, getegid, geteuid, setgroups, setpgid, setresgid, setresuid};

use super::{SetupError, setup_error, setup_failure, setup_io_error, write_status};
use crate::outcome::{Layer, LayerReport, ResourceUsage};
use crate::plan::{OUTER_STATUS, OuterFacts, OuterStatus, Plan, Stage};
use crate::policy::Network;
use crate::process::{Waited, wait_for_pid};

pub(super) fn run(plan: Plan) -> u8 {
    let path = plan.status_path(OUTER_STATUS);
    let mut file = match File::create(&path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("opsloop: sandbox: creating {}: {e}", path.display());
            return 125;
        }
    };
    let mut status = OuterStatus::default();
    if let Err(e) = outer(plan, &mut status) {
        status.setup_error = Some(e.to_string());
    }
    write_status(&mut file, &status);
    if status.setup_error.is_some() { 125 } else { 0 }
}

/// Why user namespaces are off on this host, if a sysctl says so.
fn userns_disabled() -> Option<&'static str> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let is = |path: &str, value: &str| read(path).is_some_and(|v| v.trim() == value);
    if is("/proc/sys/user/max_user_namespaces", "0") {
        Some("user.max_user_namespaces is 0")
    } else if is("/proc/sys/kernel/unprivileged_userns_clone", "0") {
        Some("kernel.unprivileged_userns_clone is 0")
    } else if is(
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
    ) {
        Some("AppArmor restricts unprivileged user namespaces")
    } else {
        None
    }
}

/// Leaves root for the command's user for good (groups, gid, then uid).
fn drop_to(uid: u32, gid: u32) -> Result<(), SetupError> {
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    setgroups(&[gid]).map_err(setup_error("setgroups"))?;
    setresgid(gid, gid, gid).map_err(setup_error("setresgid"))?;
    setresuid(uid, uid, uid).map_err(setup_error("setresuid"))
}

/// Maps uid and gid 0 of the new user namespace to `uid` and `gid`, this process's own ids
/// read before the unshare (the one mapping an unprivileged process may write; after the
/// unshare the ids read back as the overflow id).
fn map_self(uid: u32, gid: u32) -> Result<(), SetupError> {
    let write = |name: &str, text: String| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/{name}"))
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(setup_io_error(format!("writing /proc/self/{name}")))
    };
    // /proc/self of a non-dumpable process belongs to root: writable again for the maps.
    let _ = nix::sys::prctl::set_dumpable(true);
    let written = write("setgroups", "deny".into())
        .and_then(|()| write("uid_map", format!("0 {uid} 1")))
        .and_then(|()| write("gid_map", format!("0 {gid} 1")));
    let _ = nix::sys::prctl::set_dumpable(false);
    written
}

/// Kills this process when the one that started it dies (so a killed caller does not
/// leave the command running until its timeout), and exits if that already happened.
fn arm_parent_death(caller_pid: u32) -> Result<(), SetupError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(setup_error("parent-death signal"))?;
    let parent = nix::unistd::getppid().as_raw();
    if u32::try_from(parent).ok() != Some(caller_pid) {
        return Err(setup_failure(
            "parent-death signal",
            format!("the caller (pid {caller_pid}) is gone"),
        ));
    }
    Ok(())
}

fn outer(mut plan: Plan, status: &mut OuterStatus) -> Result<(), SetupError> {
    // Nobody on the host may read this process's memory or environment.
    let _ = nix::sys::prctl::set_dumpable(false);
    let root = geteuid().is_root();
    if root && (plan.uid == 0 || plan.gid == 0) {
        return Err(setup_failure("user", "the command never runs as uid 0"));
    }
    let host_uid = if root { plan.uid } else { geteuid().as_raw() };
    let network_none = plan.network == Network::None;
    let mut base = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    if network_none {
        base |= CloneFlags::CLONE_NEWNET;
    }
    let mut facts = OuterFacts::default();
    let mut namespaces_error = None;

    let userns_off = if plan.user_namespace {
        userns_disabled()
    } else {
        Some("turned off by the policy")
    };
    let mut dropped = false;
    match userns_off {
        None => {
            if root {
                // The user namespace is created as the command's user, so its root maps
                // to that user on the host, never to uid 0.
                drop_to(plan.uid, plan.gid)?;
                dropped = true;
            }
            let (own_uid, own_gid) = (geteuid().as_raw(), getegid().as_raw());
            match unshare(base | CloneFlags::CLONE_NEWUSER) {
                Ok(()) => {
                    map_self(own_uid, own_gid)?;
                    facts.user_ns = true;
                    status.layers.push(LayerReport::applied(
                        Layer::UserNamespace,
                        format!("host uid {host_uid}"),
                    ));
                }
                Err(e) => {
                    status.layers.push(LayerReport::unavailable(
                        Layer::UserNamespace,
                        format!("unshare: {}", e.desc()),
                    ));
                    namespaces_error = Some(format!("no user namespace ({})", e.desc()));
                }
            }
        }
        Some(reason) => {
            status
                .layers
                .push(LayerReport::unavailable(Layer::UserNamespace, reason));
            if root {
                if let Err(e) = unshare(base) {
                    namespaces_error = Some(format!("unshare: {}", e.desc()));
                }
            } else {
                namespaces_error = Some("needs a user namespace or root".into());
            }
        }
    }
    // Credential changes (the drop to the user, the new user namespace) clear the
    // parent-death signal: armed only now, then checked against a caller that died first.
    arm_parent_death(plan.caller_pid)?;
    facts.root_without_userns = root && !dropped;
    let namespaced = facts.user_ns || (root && !dropped && namespaces_error.is_none());
    facts.pid_ns = namespaced;
    facts.net_ns = namespaced && network_none;
    facts.host_uid = host_uid;
    for (layer, wanted) in [
        (Layer::PidNamespace, true),
        (Layer::NetworkNamespace, network_none),
        (Layer::IpcNamespace, true),
        (Layer::UtsNamespace, true),
    ] {
        status.layers.push(match (wanted, namespaced) {
            (false, _) => LayerReport::not_requested(layer, "network host"),
            (true, true) => LayerReport::applied(layer, ""),
            (true, false) => {
                LayerReport::unavailable(layer, namespaces_error.clone().unwrap_or_default())
            }
        });
    }

    // The inner helper keeps the read end; only this process holds the write end, so the
    // inner one sees a hang-up once this process is gone.
    let (death_read, death_write) = nix::unistd::pipe().map_err(setup_error("pipe"))?;
    nix::fcntl::fcntl(
        &death_write,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(setup_error("pipe"))?;
    facts.death_pipe = Some(death_read.as_raw_fd());

    plan.stage = Stage::Inner;
    facts.layers = status.layers.clone();
    plan.outer = facts;
    let pid_ns = plan.outer.pid_ns;
    let plan_timeout = plan.limits.timeout;
    let inner_pid = start_inner(plan, death_write.as_raw_fd(), pid_ns)?;
    drop(death_read);

    let finished = wait_for_pid(inner_pid.as_raw(), plan_timeout, None) == Waited::Exited;
    drop(death_write);
    if !finished {
        status.timed_out = true;
        // Pid 1 dying takes the whole pid namespace with it.
        let _ = kill(inner_pid, Signal::SIGKILL);
    }
    if !pid_ns {
        // Not yet reaped, so the group id cannot have been reused.
        let _ = killpg(inner_pid, Signal::SIGKILL);
    }
    let exit = loop {
        match waitpid(inner_pid, None) {
            Ok(WaitStatus::Exited(_, code)) => break (Some(code), None),
            Ok(WaitStatus::Signaled(_, signal, _)) => break (None, Some(signal as i32)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(setup_error("waiting for the sandbox's init")(e)),
        }
    };
    (status.inner_exit, status.inner_signal) = exit;
    if let Ok(usage) = getrusage(UsageWho::RUSAGE_CHILDREN) {
        let micros = |t: nix::sys::time::TimeVal| {
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000
                + u64::try_from(t.tv_usec()).unwrap_or(0)
        };
        status.usage = ResourceUsage {
            max_rss_bytes: u64::try_from(usage.max_rss()).unwrap_or(0) * 1024,
            user_cpu_us: micros(usage.user_time()),
            system_cpu_us: micros(usage.system_time()),
        };
    }
    Ok(())
}

/// Starts the inner helper as pid 1 of the new pid namespace: forked, running the inner
/// stage directly (helper processes have a single thread: [`crate::helper_main`] is all
/// they run). `death_write` is this process's end of the death pipe, closed in the child.
fn start_inner(plan: Plan, death_write: RawFd, pid_ns: bool) -> Result<Pid, SetupError> {
    if !crate::fork::single_threaded() {
        return Err(setup_failure(
            "starting the sandbox's init",
            "the helper process has more than one thread",
        ));
    }
    let pid = crate::fork::fork_stage(move || {
        // The inner helper must see a hang-up when this process is gone.
        let _ = nix::unistd::close(death_write);
        if !pid_ns {
            // Without a pid namespace, the process group is what can be killed. With one,
            // the command stays in the caller's group, the terminal's foreground one, so
            // it can read a terminal without being stopped (SIGTTIN).
            let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
        }
        super::inner::run(plan)
    })
    .map_err(setup_error("starting the sandbox's init"))?;
    if !pid_ns {
        // Also here, so a kill of the group right after cannot miss it.
        let _ = setpgid(pid, pid);
    }
    Ok(pid)
}
