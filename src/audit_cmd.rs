//! `opsloop audit`: flags, output and exit code of the Kubernetes manifest audit of files or
//! of the current kubeconfig context's cluster (`--cluster`); reading, checking and
//! rendering live in `opsloop-audit`.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use opsloop_audit::config::AuditConfig;
use opsloop_audit::{Options, Report, Severity, catalog, render, source};

use crate::{Output, exit};

/// Inputs from which a progress bar is worth drawing.
const PROGRESS_MIN_FILES: usize = 200;

/// How `audit` prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuditOutput {
    /// Findings grouped by file and object, with why and fix.
    Text,
    /// One JSON document: summary, findings, errors, suppressed, files.
    Json,
    /// One SARIF 2.1.0 log for code-scanning tools.
    Sarif,
}

/// The least severity that fails the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Any finding.
    Info,
    /// Warnings and errors.
    Warning,
    /// Errors only.
    Error,
    /// Never fail on findings.
    Never,
}

impl FailOn {
    fn threshold(self) -> Option<Severity> {
        match self {
            FailOn::Info => Some(Severity::Info),
            FailOn::Warning => Some(Severity::Warning),
            FailOn::Error => Some(Severity::Error),
            FailOn::Never => None,
        }
    }
}

/// Flags of `opsloop audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Manifest files or directories (searched recursively for *.yaml, *.yml, *.json);
    /// `-` reads stdin (`helm template` or `kustomize build` output).
    #[arg(value_name = "PATH", required_unless_present_any = ["list_checks", "cluster"])]
    paths: Vec<String>,
    /// Audit the live cluster of the current kubeconfig context (or the in-cluster service
    /// account) instead of files: workloads, Services, HPAs, PDBs, ServiceMonitors, and
    /// ConfigMap and Secret names (never their values).
    #[arg(long, conflicts_with = "paths")]
    cluster: bool,
    /// With --cluster: this namespace only (default: all namespaces).
    #[arg(long, value_name = "NAMESPACE", requires = "cluster")]
    namespace: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = AuditOutput::Text)]
    output: AuditOutput,
    /// Exit 1 when a finding of this severity or worse is reported.
    #[arg(long, value_enum, default_value_t = FailOn::Error, value_name = "SEVERITY")]
    fail_on: FailOn,
    /// Audit config file (YAML): `disable: [check-id, ...]`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Do not run this check (repeatable).
    #[arg(long, value_name = "CHECK-ID")]
    disable: Vec<String>,
    /// Print the check catalogue (id, severity, why, fix) and exit.
    #[arg(long)]
    list_checks: bool,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
}

impl AuditArgs {
    /// The output format, as the binary's error reporting knows it.
    pub fn output(&self) -> Output {
        match self.output {
            AuditOutput::Json => Output::Json,
            // A SARIF reader gets a SARIF log even on failure (written here), never the
            // generic JSON error document.
            AuditOutput::Text | AuditOutput::Sarif => Output::Text,
        }
    }
}

/// Runs `opsloop audit`.
pub fn run(args: AuditArgs) -> Result<u8> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.list_checks {
        match args.output {
            AuditOutput::Json | AuditOutput::Sarif => {
                serde_json::to_writer_pretty(&mut out, &render::checks_json())?;
                out.write_all(b"\n")?;
            }
            AuditOutput::Text => render::checks_text(&mut out)?,
        }
        out.flush()?;
        return Ok(exit::OK);
    }

    let options = match options(&args) {
        Ok(options) => options,
        Err(e) if args.output == AuditOutput::Sarif => {
            let message = format!("{e:#}");
            render::sarif_failure(&message, env!("CARGO_PKG_VERSION"), &mut out)?;
            out.flush()?;
            eprintln!("opsloop: error: {message}");
            return Ok(exit::ERROR);
        }
        Err(e) => return Err(e),
    };

    let sources = if args.cluster {
        match cluster_sources(args.namespace.as_deref()) {
            Ok(sources) => sources,
            Err(e) if args.output == AuditOutput::Sarif => {
                let message = format!("{e:#}");
                render::sarif_failure(&message, env!("CARGO_PKG_VERSION"), &mut out)?;
                out.flush()?;
                eprintln!("opsloop: error: {message}");
                return Ok(exit::ERROR);
            }
            Err(e) => return Err(e),
        }
    } else {
        source::collect(&args.paths, &mut io::stdin().lock())
    };
    let bar = progress_bar(sources.len(), args.no_progress);
    let report = match &bar {
        Some(bar) => opsloop_audit::audit_with_progress(&sources, &options, &|| bar.inc(1)),
        None => opsloop_audit::audit(&sources, &options),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }

    match args.output {
        AuditOutput::Text => render::text(&report, &mut out)?,
        AuditOutput::Json => render::json(&report, &mut out)?,
        AuditOutput::Sarif => render::sarif(&report, env!("CARGO_PKG_VERSION"), &mut out)?,
    }
    out.flush()?;
    if args.output != AuditOutput::Text {
        // Text output already lists these; machine formats keep stdout to one document.
        for error in &report.errors {
            if error.line == 0 {
                eprintln!("opsloop: {}: {}", error.file, error.message);
            } else {
                eprintln!(
                    "opsloop: {}:{}:{}: {}",
                    error.file, error.line, error.column, error.message
                );
            }
        }
        for notice in &report.notices {
            eprintln!(
                "opsloop: {}:{}: {}",
                notice.file, notice.line, notice.message
            );
        }
    }
    Ok(exit_code(&report, args.fail_on))
}

/// The objects of the current context's cluster as inputs (`cluster://ns/Kind/name`).
fn cluster_sources(namespace: Option<&str>) -> Result<Vec<source::Source>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let read = runtime.block_on(async {
        let client = opsloop_cluster::infer_kube_client()
            .await?
            .context("no cluster: set KUBECONFIG, create ~/.kube/config or run in a pod")?;
        anyhow::Ok(opsloop_audit::cluster::read(&client, namespace).await)
    })?;
    for note in &read.notes {
        eprintln!("opsloop: {note}");
    }
    Ok(read.sources)
}

fn options(args: &AuditArgs) -> Result<Options> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            AuditConfig::parse(&text).with_context(|| format!("{}", path.display()))?
        }
        None => AuditConfig::default(),
    };
    for id in &args.disable {
        if catalog::find(id).is_none() {
            bail!("--disable {id}: no such check (see `opsloop audit --list-checks`)");
        }
        config.disable.push(id.clone());
    }
    Ok(Options::from_config(&config))
}

/// Unreadable inputs (2) before unparsable files (3) before findings (1): a run that could
/// not read all its input is incomplete, and its exit code says so even when what it did
/// read has findings (those are printed all the same).
fn exit_code(report: &Report, fail_on: FailOn) -> u8 {
    if report.has_read_errors() {
        return exit::ERROR;
    }
    if !report.errors.is_empty() {
        return exit::INPUT_PROBLEMS;
    }
    if let (Some(threshold), Some(worst)) = (fail_on.threshold(), report.worst())
        && worst >= threshold
    {
        return exit::RULE_FIRED;
    }
    exit::OK
}

fn progress_bar(files: usize, disabled: bool) -> Option<ProgressBar> {
    if disabled || files < PROGRESS_MIN_FILES || !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(files as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} files {elapsed}") {
        bar.set_style(style);
    }
    Some(bar)
}
