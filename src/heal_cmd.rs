//! `opsloop heal`: the self-healing loop's commands. `heal sandbox` runs one command in the
//! sandbox exactly as a playbook's `exec` step would; the sandbox itself lives in
//! `opsloop-sandbox`. The hidden `heal sandbox-helper` is the sandbox's own helper process.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use opsloop_sandbox::{
    DEFAULT_CAPTURE_LIMIT, EXIT_SETUP_FAILED, Helper, InputMode, Network, OutputMode, Sandbox,
    SandboxPolicy, Termination, UserSpec, layer_name, parse_bytes, parse_duration,
};

use crate::Output;

/// The arguments that lead the binary back to the sandbox helper.
const HELPER_ARGS: [&str; 2] = ["heal", "sandbox-helper"];

/// Flags of `opsloop heal`.
#[derive(Args, Debug)]
pub struct HealArgs {
    #[command(subcommand)]
    command: HealCommand,
}

#[derive(Subcommand, Debug)]
enum HealCommand {
    /// Run a command in the sandbox a playbook's `exec` step gets (namespaces, Landlock,
    /// seccomp, rlimits, no privileges); exit status: the command's own, 124 timed out,
    /// 125 sandbox not set up, 126 not executable, 127 not found, 128+N killed by signal N.
    Sandbox(SandboxArgs),
    /// Internal: the sandbox's helper processes.
    #[command(name = "sandbox-helper", hide = true)]
    SandboxHelper,
}

/// What the command may reach on the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum NetworkArg {
    /// No TCP or UDP, loopback included.
    None,
    /// The host's network.
    Host,
}

/// Flags of `opsloop heal sandbox`.
#[derive(Args, Debug)]
pub struct SandboxArgs {
    /// Make PATH readable and executable (repeatable).
    #[arg(long = "allow-read", value_name = "PATH")]
    allow_read: Vec<PathBuf>,
    /// Allow creating, changing and deleting under PATH (repeatable).
    #[arg(long = "allow-write", value_name = "PATH")]
    allow_write: Vec<PathBuf>,
    /// Network access.
    #[arg(long, value_enum, default_value_t = NetworkArg::None)]
    network: NetworkArg,
    /// Wall-clock limit; the whole process tree is killed after it (e.g. `30s`, `500ms`).
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Address space per process (e.g. `256MiB`).
    #[arg(long, value_name = "BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    memory: u64,
    /// CPU time per process (SIGXCPU, then SIGKILL a second later).
    #[arg(long = "cpu-time", value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    cpu_time: Duration,
    /// Processes the command may have at once.
    #[arg(long = "max-procs", value_name = "N", default_value_t = 64)]
    max_procs: u64,
    /// Pass this environment variable in (repeatable); its value never appears in output.
    #[arg(long, value_name = "NAME")]
    env: Vec<String>,
    /// Run as this user [default: nobody].
    #[arg(long, value_name = "NAME|UID")]
    user: Option<String>,
    /// Output format: `text` passes the command's output through; `json` captures it
    /// (truncated) into one document with exit status, duration, resource use and layers.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// The command and its arguments, after `--`; no shell is involved.
    #[arg(last = true, required = true, value_name = "CMD", num_args = 1..)]
    command: Vec<OsString>,
}

impl HealArgs {
    /// The output format, as the binary's error reporting knows it.
    pub fn output(&self) -> Output {
        match &self.command {
            HealCommand::Sandbox(args) => args.output,
            HealCommand::SandboxHelper => Output::Text,
        }
    }
}

/// Runs `opsloop heal`.
pub fn run(args: HealArgs) -> Result<u8> {
    match args.command {
        HealCommand::Sandbox(args) => sandbox(args),
        HealCommand::SandboxHelper => Ok(opsloop_sandbox::helper_main()),
    }
}

/// Says why the sandbox could not be set up; the command did not run.
fn setup_failed(json: bool, message: &str) -> u8 {
    eprintln!("opsloop: sandbox: cannot set up: {message}");
    if json {
        let doc = serde_json::json!({
            "exit_status": EXIT_SETUP_FAILED,
            "termination": "setup_failed",
            "error": { "code": "sandbox_setup", "message": message },
        });
        println!("{doc}");
    }
    EXIT_SETUP_FAILED
}

fn sandbox(args: SandboxArgs) -> Result<u8> {
    let json = args.output == Output::Json;
    let stream = if json {
        OutputMode::Capture {
            limit: DEFAULT_CAPTURE_LIMIT,
        }
    } else {
        OutputMode::Inherit
    };
    let mut builder = SandboxPolicy::builder()
        .network(match args.network {
            NetworkArg::None => Network::None,
            NetworkArg::Host => Network::Host,
        })
        .timeout(args.timeout)
        .memory(args.memory)
        .cpu_time(args.cpu_time)
        .max_procs(args.max_procs)
        .stdin(InputMode::Inherit)
        .stdout(stream)
        .stderr(stream)
        // In text mode the sandbox says at start what it could not apply; JSON has it in
        // the document (and on stderr afterwards).
        .notices(!json);
    if let Some(user) = &args.user {
        builder = builder.user(UserSpec::parse(user));
    }
    for path in &args.allow_read {
        let path = std::path::absolute(path)
            .with_context(|| format!("--allow-read {}", path.display()))?;
        builder = builder.allow_read(path);
    }
    for path in &args.allow_write {
        let path = std::path::absolute(path)
            .with_context(|| format!("--allow-write {}", path.display()))?;
        builder = builder.allow_write(path);
    }
    for name in &args.env {
        builder = builder.env(name);
    }
    let policy = match builder.build() {
        Ok(policy) => policy,
        Err(e) => return Ok(setup_failed(json, &e.to_string())),
    };
    let Some((program, rest)) = args.command.split_first() else {
        return Ok(setup_failed(json, "no command given after --"));
    };
    let sandbox = Sandbox::new(policy, Helper::current_exe(HELPER_ARGS));
    let outcome = match sandbox.run(program, rest) {
        Ok(outcome) => outcome,
        Err(e) => return Ok(setup_failed(json, &e.to_string())),
    };
    match &outcome.termination {
        Termination::TimedOut => eprintln!(
            "opsloop: sandbox: timed out after {:?}; the command and everything it started were killed",
            args.timeout
        ),
        Termination::SetupFailed(message) => {
            eprintln!("opsloop: sandbox: cannot set up: {message}")
        }
        Termination::NotFound(message) | Termination::NotExecutable(message) => {
            eprintln!("opsloop: sandbox: {message}")
        }
        Termination::Exited(_) | Termination::Signaled(_) => {}
    }
    if !outcome.scratch_removed {
        eprintln!("opsloop: sandbox: warning: the scratch directory could not be removed");
    }
    if json {
        let missing: Vec<String> = outcome
            .unavailable_layers()
            .map(|l| format!("{} ({})", layer_name(l.layer), l.detail))
            .collect();
        if !missing.is_empty() {
            eprintln!(
                "opsloop: sandbox: not available on this host: {}",
                missing.join("; ")
            );
        }
        let record = outcome.record(sandbox.policy(), program, rest);
        println!("{}", serde_json::to_string_pretty(&record)?);
    }
    Ok(outcome.exit_code())
}
