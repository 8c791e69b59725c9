//! Runs remediation commands in a sandbox that is on by default and safe by default: own
//! user, pid, mount, network, IPC and UTS namespaces; a root built from allow-lists; an
//! unprivileged identity with no capabilities; rlimits; Landlock; no_new_privs; seccomp.
//! Each layer is applied whenever the kernel allows it and reported when it does not.
//!
//! ```no_run
//! use opsloop_sandbox::{Helper, Sandbox, SandboxPolicy};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = SandboxPolicy::builder().allow_read("/var/log").build()?;
//! // The running executable must call `helper_main` when started with these arguments.
//! let sandbox = Sandbox::new(policy, Helper::current_exe(["heal", "sandbox-helper"]));
//! let outcome = sandbox.run("df".as_ref(), &["-h".into()])?;
//! println!("exit {}", outcome.exit_code());
//! # Ok(()) }
//! ```

mod cleanup;
mod fork;
mod helper;
mod outcome;
mod plan;
mod policy;
mod process;
mod run;
#[cfg(test)]
mod test_support;

pub use helper::helper_main;
pub use outcome::{
    Captured, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_SETUP_FAILED, EXIT_TIMED_OUT, Layer,
    LayerReport, LayerState, Outcome, REDACTED, RecordError, RecordOutput, RecordSettings,
    ResourceUsage, RunRecord, SETUP_ERROR_CODE, Termination,
};
pub use plan::PLAN_VAR;
pub use policy::{
    DEFAULT_CAPTURE_LIMIT, InputMode, Limits, Network, OutputMode, PolicyError, RESERVED_ENV,
    SandboxPolicy, SandboxPolicyBuilder, UnitError, UserSpec, parse_bytes, parse_duration,
};
pub use run::{DEFAULT_READ, DEVICES, Helper, Sandbox, SandboxError};

/// The name a layer has in reports (`landlock`, `pid_namespace`, ...).
pub fn layer_name(layer: Layer) -> String {
    helper::layer_name(layer)
}
