//! The `opsloop` binary: parses the command line and wires the library crates together.
//! It decides nothing a library could decide.

mod audit_cmd;
mod audit_log_cmd;
mod config_cmd;
mod detect_cmd;
mod forecast_cmd;
mod heal_cmd;
mod inspect_cmd;
mod prometheus_args;
mod render;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit codes, documented in the README.
pub mod exit {
    /// Success, nothing to report.
    pub const OK: u8 = 0;
    /// A rule of the `--fail-on` severity or worse fired.
    pub const RULE_FIRED: u8 = 1;
    /// Usage error, unreadable input, invalid rules/state/config: the run is incomplete.
    pub const ERROR: u8 = 2;
    /// The input had problems (invalid UTF-8, cut lines, truncated gzip, unparsable lines);
    /// everything readable was still inspected.
    pub const INPUT_PROBLEMS: u8 = 3;
    /// `opsloop run` stopped because a task it cannot restart failed (the pipeline, the
    /// publisher); restarted, it resumes from the saved positions.
    pub const AGENT_FAILED: u8 = 4;
}

/// opsloop closes the operations loops: log inspection, resource prediction, self-healing.
#[derive(Parser, Debug)]
#[command(name = "opsloop", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspect log files: templates, rule hits, anomalies, error clusters.
    Inspect(inspect_cmd::InspectArgs),
    /// The agent's configuration: print the default, check a file.
    Config(config_cmd::ConfigArgs),
    /// Run the agent: live sources, events, store, bus and HTTP API.
    Run(run::RunArgs),
    /// Audit Kubernetes manifests for runtime defects and common misconfigurations.
    Audit(audit_cmd::AuditArgs),
    /// The self-healing loop's audit trail: verify its hash chain, export it.
    AuditLog(audit_log_cmd::AuditLogArgs),
    /// Forecast metric series: models chosen by backtest, 80/95 % bands, capacity warnings.
    Forecast(forecast_cmd::ForecastArgs),
    /// Score a metric series for anomalies: streaming, causal, one score per row.
    Detect(detect_cmd::DetectArgs),
    /// The self-healing loop: check and test playbooks; run a command as an `exec` step would.
    Heal(heal_cmd::HealArgs),
}

/// How a command prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable text.
    Text,
    /// One JSON document.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = match &cli.command {
        Command::Inspect(args) => args.output(),
        Command::Audit(args) => args.output(),
        Command::AuditLog(args) => args.output(),
        Command::Config(args) => args.output(),
        Command::Run(args) => args.output(),
        Command::Detect(args) => args.output(),
        Command::Heal(args) => args.output(),
        Command::Forecast(args) => args.output(),
    };
    let result = match cli.command {
        Command::Inspect(args) => inspect_cmd::run(args),
        Command::Audit(args) => audit_cmd::run(args),
        Command::AuditLog(args) => audit_log_cmd::run(args),
        Command::Config(args) => config_cmd::run(args),
        Command::Run(args) => run::run(args),
        Command::Detect(args) => detect_cmd::run(args),
        Command::Heal(args) => heal_cmd::run(args),
        Command::Forecast(args) => forecast_cmd::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let message = format!("{e:#}");
            eprintln!("opsloop: error: {message}");
            if output == Output::Json {
                // Scripts reading stdout get the error as a document too.
                let doc = serde_json::json!({ "error": { "code": "error", "message": message } });
                println!("{doc}");
            }
            ExitCode::from(exit::ERROR)
        }
    }
}
