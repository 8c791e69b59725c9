//! Waiting for a child process by pid, with a deadline and, for a command-line caller,
//! termination signals read from a signalfd (shared by the caller and the outer helper).

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The child ended (it is not reaped).
    Exited,
    /// The deadline passed first.
    TimedOut,
    /// A signal read from the given signalfd arrived first.
    Signal(i32),
}

/// Waits until the child `pid` has ended (without reaping it), `limit` has passed, or a
/// signal arrives on `signals`. A pidfd makes this one `poll`, with no busy waiting.
pub(crate) fn wait_for_pid(
    pid: i32,
    limit: Duration,
    signals: Option<&nix::sys::signalfd::SignalFd>,
) -> Waited {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions, pidfd_open, waitid};
    let deadline = Instant::now() + limit;
    let rustix_pid = Pid::from_raw(pid);
    let exited = || {
        rustix_pid
            .and_then(|pid| {
                waitid(
                    WaitId::Pid(pid),
                    WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG,
                )
                .ok()
                .flatten()
            })
            .is_some()
    };
    let pending_signal = || {
        signals
            .and_then(|fd| fd.read_signal().ok().flatten())
            .and_then(|info| i32::try_from(info.ssi_signo).ok())
    };
    let pidfd = rustix_pid.and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Without a pidfd (kernel before 5.3): look every few milliseconds.
        let step = if pidfd.is_some() {
            left
        } else {
            left.min(Duration::from_millis(5))
        };
        let timeout = Timespec::try_from(step).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2);
        if let Some(pidfd) = &pidfd {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
        }
        if let Some(signals) = signals {
            let fd: BorrowedFd<'_> = signals.as_fd();
            fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
        }
        let polled = poll(&mut fds, Some(&timeout));
        if let Some(signal) = pending_signal() {
            return Waited::Signal(signal);
        }
        match polled {
            Ok(_) if pidfd.is_none() && exited() => return Waited::Exited,
            Ok(n) if n > 0 && pidfd.is_some() && exited() => return Waited::Exited,
            Ok(_) if left.is_zero() => {
                return if exited() {
                    Waited::Exited
                } else {
                    Waited::TimedOut
                };
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return Waited::TimedOut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_times_out_and_sees_the_end() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        assert_eq!(
            wait_for_pid(pid, Duration::from_millis(1), None),
            Waited::TimedOut
        );
        assert_eq!(
            wait_for_pid(pid, Duration::from_secs(60), None),
            Waited::Exited
        );
        assert!(child.wait().unwrap().success());
    }
}
