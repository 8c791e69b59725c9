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
            let status = catch_unwind(AssertUnwindSafe(stage)).map_or(STAGE_PANICKED, i32::from);
            // SAFETY: `_exit` ends the process without running anything of the parent's.
            unsafe { libc::_exit(status) }
        }
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
