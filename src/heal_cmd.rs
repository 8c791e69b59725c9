//! `opsloop heal`: the self-healing loop's commands. `heal check` validates playbook files;
//! `heal test` shows what playbooks would do with events, acting on nothing (both from
//! `opsloop-heal`). `heal sandbox` runs one command in the sandbox exactly as a playbook's
//! `exec` step would; the sandbox itself lives in `opsloop-sandbox`. The hidden
//! `heal sandbox-helper` is the sandbox's own helper process.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use opsloop_sandbox::{
    DEFAULT_CAPTURE_LIMIT, EXIT_SETUP_FAILED, Helper, InputMode, Layer, Network, OutputMode,
    RecordSettings, RunRecord, Sandbox, SandboxPolicy, Termination, UserSpec, layer_name,
    parse_bytes, parse_duration,
};

use opsloop_heal::PlaybookSet;
use opsloop_heal::engine::Verdict;
use opsloop_heal::playbook::{Problem, TypePattern};
use opsloop_heal::simulate::{EventReport, events_from_json, simulate};

use crate::{Output, exit};

/// The arguments that lead the binary back to the sandbox helper.
pub(crate) const HELPER_ARGS: [&str; 2] = ["heal", "sandbox-helper"];

/// Flags of `opsloop heal`.
#[derive(Args, Debug)]
pub struct HealArgs {
    #[command(subcommand)]
    command: HealCommand,
}

#[derive(Subcommand, Debug)]
enum HealCommand {
    /// Validate playbook files (files, or directories of *.yaml/*.yml); every problem is
    /// listed with its file, line and field. Exit 0 valid, 1 problems.
    Check(CheckArgs),
    /// Show what the playbooks would do with the events of EVENT.json (a CloudEvent or a
    /// list): which matched, why the others did not, guardrail decisions, the interpolated
    /// steps (secrets redacted). Nothing is run.
    Test(TestArgs),
    /// Run a command in the sandbox a playbook's `exec` step gets (namespaces, Landlock,
    /// seccomp, rlimits, no privileges); exit status: the command's own, 124 timed out,
    /// 125 sandbox not set up, 126 not executable, 127 not found, 128+N killed by signal N.
    Sandbox(SandboxArgs),
    /// Internal: the sandbox's helper processes.
    #[command(name = "sandbox-helper", hide = true)]
    SandboxHelper,
}

/// Exit status of `heal check` and `heal test` when the playbooks have problems.
const PLAYBOOK_PROBLEMS: u8 = 1;

/// Flags of `opsloop heal check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Playbook files or directories.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Flags of `opsloop heal test`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// A playbook file or a directory of them.
    #[arg(value_name = "PLAYBOOKS")]
    playbooks: PathBuf,
    /// A CloudEvent, or a JSON list of them, replayed in order; only `type` is required.
    #[arg(value_name = "EVENT.json")]
    events: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
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
    /// Address space per process (RLIMIT_AS: every mapping counts, shared, stack and
    /// memfd ones included; e.g. `256MiB`); allocations beyond it fail. Not a total: each
    /// of up to --max-procs processes gets this much.
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
            HealCommand::Check(args) => args.output,
            HealCommand::Test(args) => args.output,
            HealCommand::Sandbox(args) => args.output,
            HealCommand::SandboxHelper => Output::Text,
        }
    }
}

/// Runs `opsloop heal`.
pub fn run(args: HealArgs) -> Result<u8> {
    match args.command {
        HealCommand::Check(args) => check(args),
        HealCommand::Test(args) => test(args),
        HealCommand::Sandbox(args) => sandbox(args),
        HealCommand::SandboxHelper => Ok(opsloop_sandbox::helper_main()),
    }
}

/// Prints playbook problems as `file:line: field: message` (text) or a document (JSON).
fn print_problems(output: Output, problems: &[Problem], playbooks: &[String]) -> Result<()> {
    match output {
        Output::Json => {
            let doc = serde_json::json!({
                "valid": problems.is_empty(),
                "playbooks": playbooks,
                "errors": problems,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Output::Text => {
            for p in problems {
                println!("{p}");
            }
            if !problems.is_empty() {
                eprintln!("{} problem(s)", problems.len());
            }
        }
    }
    Ok(())
}

fn check(args: CheckArgs) -> Result<u8> {
    match PlaybookSet::load(&args.paths) {
        Ok(set) => {
            let names: Vec<String> = set.playbooks().iter().map(|p| p.name.clone()).collect();
            if args.output == Output::Text {
                for p in set.playbooks() {
                    println!(
                        "{}:{}: {}: valid (mode {})",
                        p.origin,
                        p.line,
                        p.name,
                        p.mode.as_str()
                    );
                }
                println!("{} playbook(s) valid", names.len());
                Ok(exit::OK)
            } else {
                print_problems(args.output, &[], &names)?;
                Ok(exit::OK)
            }
        }
        Err(e) => {
            print_problems(args.output, &e.problems, &[])?;
            Ok(PLAYBOOK_PROBLEMS)
        }
    }
}

fn test(args: TestArgs) -> Result<u8> {
    let set = match PlaybookSet::load(&[&args.playbooks]) {
        Ok(set) => set,
        Err(e) => {
            print_problems(args.output, &e.problems, &[])?;
            return Ok(PLAYBOOK_PROBLEMS);
        }
    };
    let text = std::fs::read_to_string(&args.events)
        .with_context(|| format!("reading {}", args.events.display()))?;
    let now = opsloop_core::time::now_ms();
    let read = events_from_json(&text, now)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.events.display()))?;
    // Bad entries are named and skipped; the others are still shown.
    let name = args.events.display().to_string();
    let problems: Vec<String> = read
        .problems
        .iter()
        .map(|p| format!("{name}: {p}"))
        .collect();
    for p in &problems {
        eprintln!("opsloop: {p}");
    }
    let reports = simulate(&set, &read.events, std::env::vars().collect(), now);
    match args.output {
        Output::Json => {
            let doc = serde_json::json!({ "events": reports, "errors": problems });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Output::Text => print!("{}", render_reports(&reports)),
    }
    Ok(if problems.is_empty() {
        exit::OK
    } else {
        exit::ERROR
    })
}

/// The text form of `heal test`.
fn render_reports(reports: &[EventReport]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (i, r) in reports.iter().enumerate() {
        let _ = writeln!(
            out,
            "event {}: {}{} (id {})",
            i + 1,
            r.kind,
            r.subject
                .as_deref()
                .map(|s| format!(", subject {s}"))
                .unwrap_or_default(),
            r.event_id
        );
        for p in &r.playbooks {
            let verdict = match &p.verdict {
                Verdict::TypeMismatch { expected } => {
                    let types: Vec<String> = expected
                        .iter()
                        .map(|t| match t {
                            TypePattern::Exact(t) => t.clone(),
                            TypePattern::Prefix(t) => format!("{t}*"),
                        })
                        .collect();
                    format!("not matched: type is not {}", types.join(" or "))
                }
                Verdict::ConditionFalse { condition } => {
                    format!("not matched: condition is false: {condition}")
                }
                Verdict::EvaluationError { field, error } => {
                    format!("not matched: {field} could not be evaluated: {error}")
                }
                Verdict::ResolvedAlert { key } => {
                    format!("resolved alert for key {key}: never acts; pending work cancelled")
                }
                Verdict::ThresholdNotReached { key, count, needed } => {
                    format!("matched, threshold not reached for key {key}: {count} of {needed}")
                }
                Verdict::Suppressed {
                    key,
                    target,
                    reason,
                } => format!(
                    "matched, suppressed by guardrail {} (key {key}, target {target})",
                    reason.as_str()
                ),
                Verdict::Triggered {
                    key, target, mode, ..
                } => format!(
                    "MATCHED: would open an incident (mode {}, key {key}, target {target})",
                    mode.as_str()
                ),
            };
            let _ = writeln!(out, "  {}: {verdict}", p.playbook);
            for (n, s) in p.steps.iter().enumerate() {
                let detail = match &s.error {
                    Some(e) => format!("cannot interpolate: {e}"),
                    None => s.rendered.to_string(),
                };
                let _ = writeln!(out, "    {}. {} [{}] {detail}", n + 1, s.name, s.action);
            }
        }
    }
    out
}

/// Says why the sandbox could not be set up; the command did not run. With `--output json`
/// the document has the keys of every other run's (`exit_status`, `error`, `layers`, ...).
fn setup_failed(args: &SandboxArgs, settings: RecordSettings, message: &str) -> u8 {
    eprintln!("opsloop: sandbox: cannot set up: {message}");
    if args.output == Output::Json {
        let (program, rest) = args
            .command
            .split_first()
            .map_or((OsString::new(), &[][..]), |(p, r)| (p.clone(), r));
        let record = RunRecord::setup_failure(&program, rest, settings, message);
        print_record(&record);
    }
    EXIT_SETUP_FAILED
}

/// Prints a run's JSON document; a reader that went away (`| head`) is no reason to panic,
/// and the exit status still says how the run ended.
fn print_record(record: &RunRecord) {
    use std::io::Write;
    let written = serde_json::to_string_pretty(record)
        .map_err(std::io::Error::other)
        .and_then(|doc| writeln!(std::io::stdout().lock(), "{doc}"));
    if let Err(e) = written {
        eprintln!("opsloop: sandbox: writing the report: {e}");
    }
}

/// The settings as the command line gave them, for a policy that could not be built.
fn settings_of(args: &SandboxArgs) -> RecordSettings {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let paths = |paths: &[PathBuf]| paths.iter().map(|p| p.display().to_string()).collect();
    RecordSettings {
        allow_read: paths(&args.allow_read),
        allow_write: paths(&args.allow_write),
        network: network_of(args.network),
        timeout_ms: millis(args.timeout),
        memory_bytes: args.memory,
        cpu_time_ms: millis(args.cpu_time),
        max_procs: args.max_procs,
        env: args.env.clone(),
        user: args.user.clone().unwrap_or_else(|| "nobody".into()),
    }
}

fn network_of(network: NetworkArg) -> Network {
    match network {
        NetworkArg::None => Network::None,
        NetworkArg::Host => Network::Host,
    }
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
        .network(network_of(args.network))
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
    for (flag, paths, read) in [
        ("--allow-read", &args.allow_read, true),
        ("--allow-write", &args.allow_write, false),
    ] {
        for path in paths {
            let path = match std::path::absolute(path) {
                Ok(path) => path,
                Err(e) => {
                    let message = format!("{flag} {}: {e}", path.display());
                    return Ok(setup_failed(&args, settings_of(&args), &message));
                }
            };
            builder = if read {
                builder.allow_read(path)
            } else {
                builder.allow_write(path)
            };
        }
    }
    for name in &args.env {
        builder = builder.env(name);
    }
    let policy = match builder.build() {
        Ok(policy) => policy,
        Err(e) => return Ok(setup_failed(&args, settings_of(&args), &e.to_string())),
    };
    let Some((program, rest)) = args.command.split_first() else {
        return Ok(setup_failed(
            &args,
            RecordSettings::of(&policy),
            "no command given after --",
        ));
    };
    // SIGINT, SIGTERM, SIGHUP: the sandbox is killed and its directory removed first.
    let sandbox = Sandbox::new(policy, Helper::current_exe(HELPER_ARGS)).end_on_signals();
    let outcome = match sandbox.run(program, rest) {
        Ok(outcome) => outcome,
        Err(e) => {
            let settings = RecordSettings::of(sandbox.policy());
            return Ok(setup_failed(&args, settings, &e.to_string()));
        }
    };
    if outcome
        .unavailable_layers()
        .any(|l| l.layer == Layer::PidNamespace)
    {
        // Said apart from the other missing layers: without it, the command shares the
        // host's process table with everything else running as its uid.
        eprintln!(
            "opsloop: sandbox: WARNING: no pid namespace on this host: the command can see \
             and signal other processes of its uid (other sandboxes included), and what it \
             starts in the background is killed only through its process group"
        );
    }
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
        print_record(&record);
    }
    Ok(outcome.exit_code())
}
