//! Starting a helper stage by forking instead of executing the helper again: the one place
//! the sandbox uses `unsafe`. A fresh exec of the opsloop binary costs about 3 ms of dynamic
//! relocation; the sandbox's start-up budget is 10 ms for all its stages. Forking is only
//! sound from a process with a single thread (no lock another thread holds can be copied
//! locked, so allocating and running ordinary Rust code in the child is fine), which
//! [`single_threaded`] checks; callers with more threads (the agent) execute the helper.

#![allow(unsafe_code)]

use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use nix::unistd::{ForkResult, Pid};

/// Exit status of a forked stage that panicked.
const STAGE_PANICKED: i32 = 125;

/// Whether this process has exactly one thread (`/proc/self/stat`); `false` when that
/// cannot be read, so the caller takes the path that is always sound.
pub(crate) fn single_threaded() -> bool {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    // Fields after the command name, which is in parentheses and may hold spaces:
    // `state` is field 3, `num_threads` field 20.
    stat.rfind(')')
        .and_then(|end| stat.get(end + 1..))
        .and_then(|rest| rest.split_ascii_whitespace().nth(17))
        .is_some_and(|threads| threads == "1")
}

/// Forks; the child runs `stage` and exits with the status it returns, never returning
/// into the caller's frames (a panic exits 125). Returns the child's pid in the parent.
/// Call only when [`single_threaded`] said so.
pub(crate) fn fork_stage(stage: impl FnOnce() -> u8) -> nix::Result<Pid> {
    // SAFETY: the process has one thread (checked by the caller just before, and nothing
    // in between starts one), so the child's copy of memory holds no lock or allocator
    // state another thread was in the middle of changing; the child leaves through
    // `_exit`, so no destructor or exit handler of the parent's runs twice.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            default_signal_handlers();
            let status = catch_unwind(AssertUnwindSafe(stage)).map_or(STAGE_PANICKED, i32::from);
            // SAFETY: `_exit` ends the process without running anything of the parent's.
            unsafe { libc::_exit(status) }
        }
    }
}

/// Gives every signal the caller handles its default action back, so a signal sent to a
/// helper never runs a copy of the caller's handler (ignored ones stay ignored).
fn default_signal_handlers() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing the default action runs no code of ours in a handler.
        if let Ok(previous) = unsafe { sigaction(signal, &default) }
            && matches!(previous.handler(), SigHandler::SigIgn)
        {
            // SAFETY: as above, ignoring runs no code either.
            let _ = unsafe { sigaction(signal, &previous) };
        }
    }
}

/// Overwrites this process's environment strings with zeros (in a forked child, its own
/// copy): `/proc/PID/environ` and `/proc/PID/mem` of a helper then show none of the
/// caller's variables, as an executed helper, started with only the plan, showed none.
/// The helpers change credentials and are briefly dumpable (to write their user namespace
/// maps), when another process of the command's user could read them.
pub(crate) fn scrub_environment() {
    // SAFETY: one thread; `environ` is the C library's NULL-terminated array of
    // NUL-terminated strings, each writable (the initial block on the stack, or memory
    // `setenv` allocated); zeroing a string's bytes up to its NUL keeps it a valid (empty)
    // string, and nothing else reads the environment while this runs.
    unsafe {
        let mut entry = libc::environ;
        if entry.is_null() {
            return;
        }
        while !(*entry).is_null() {
            let text = *entry;
            std::ptr::write_bytes(text, 0, libc::strlen(text));
            entry = entry.add(1);
        }
    }
}

/// Closes every descriptor above 2 (in a forked child, before its stage opens its own), so
/// a helper holds nothing of the caller's: pipes, signalfd, files.
pub(crate) fn close_inherited_descriptors() {
    let open: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
            .filter(|&fd| fd > 2)
            .collect(),
        Err(_) => return,
    };
    for fd in open {
        // The listing's own descriptor is among them, already closed: EBADF, harmless.
        let _ = nix::unistd::close(fd);
    }
}

/// Makes descriptor `to` a copy of `from` (in a forked child, before its stage runs).
pub(crate) fn dup_onto(from: RawFd, to: RawFd) -> bool {
    // SAFETY: dup2 takes plain numbers; a bad one is an error (EBADF), never undefined
    // behaviour, and `to` is one of the standard descriptors no Rust object owns here.
    unsafe { libc::dup2(from, to) >= 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_thread_is_seen() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || stopped.recv());
        assert!(!single_threaded());
        drop(stop);
        let _ = other.join();
    }
}
