//! The helper processes, entered through [`helper_main`]: the outer one (privilege drop,
//! namespaces, timeout, usage) and the inner one (pid 1: new root, restrictions, the
//! command). Each has a single thread, so namespaces can be created: the outer one is a
//! fresh exec of the helper executable when the caller has threads (the agent), else a
//! fork of the caller (the command line); the inner one is always a fork of the outer one.
//! Nothing is ever forked from a multi-threaded process.

mod filter;
mod fsroot;
pub(crate) mod inner;
mod outer;

use crate::plan::{PLAN_VAR, Plan, Stage};

/// Exit status of a helper that could not even read its plan.
const HELPER_FAILED: u8 = 125;

/// Runs the helper stage named by the plan in the environment; returns the process's exit
/// status. The executable given to [`crate::Helper`] must call this (and nothing else that
/// starts threads) when invoked with the helper arguments.
pub fn helper_main() -> u8 {
    let Some(text) = std::env::var_os(PLAN_VAR) else {
        eprintln!("opsloop: sandbox helper: {PLAN_VAR} is not set (this command is internal)");
        return HELPER_FAILED;
    };
    let plan: Plan = match serde_json::from_slice(text.as_encoded_bytes()) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("opsloop: sandbox helper: unreadable plan: {e}");
            return HELPER_FAILED;
        }
    };
    run_stage(plan)
}

/// Runs the outer stage in this process (forked by a single-threaded caller).
pub(crate) fn run_outer(plan: Plan) -> u8 {
    outer::run(plan)
}

/// Runs the helper stage the plan names; returns the process's exit status.
fn run_stage(plan: Plan) -> u8 {
    match plan.stage {
        Stage::Outer => outer::run(plan),
        Stage::Inner => inner::run(plan),
    }
}

/// A step of the set-up that failed: names the step.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {reason}")]
pub(crate) struct SetupError {
    step: String,
    reason: String,
}

pub(crate) fn setup_error(step: impl Into<String>) -> impl FnOnce(nix::Error) -> SetupError {
    let step = step.into();
    move |errno| SetupError {
        step,
        reason: errno.desc().to_string(),
    }
}

pub(crate) fn setup_io_error(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> SetupError {
    let step = step.into();
    move |e| SetupError {
        step,
        reason: e.to_string(),
    }
}

pub(crate) fn setup_failure(step: impl Into<String>, reason: impl Into<String>) -> SetupError {
    SetupError {
        step: step.into(),
        reason: reason.into(),
    }
}

/// Writes a status file; a failure is reported on standard error (the caller then sees
/// no report and says so).
pub(crate) fn write_status<T: serde::Serialize>(file: &mut std::fs::File, status: &T) {
    use std::io::Write;
    let written = serde_json::to_vec(status)
        .map_err(std::io::Error::other)
        .and_then(|bytes| file.write_all(&bytes));
    if let Err(e) = written {
        eprintln!("opsloop: sandbox helper: writing its report: {e}");
    }
}

pub(crate) use inner::layer_name;
