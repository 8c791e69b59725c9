//! `opsloop audit-log`: check and export the self-healing loop's hash-chained audit trail in
//! a data directory. The store is opened read-only and never created: these commands may run
//! next to a live agent, or on a copy of its directory taken for an investigation.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use opsloop_store::{Store, TrailRecord};

use crate::{Output, exit};

/// Exit status of `verify` when a record is bad (edited, removed, reordered, truncated).
pub const TRAIL_BROKEN: u8 = 1;

/// Records read per page by `export`.
const EXPORT_PAGE: usize = 1000;

/// Below this many records, `verify` draws no progress bar.
const PROGRESS_MIN_RECORDS: u64 = 50_000;

/// Flags of `opsloop audit-log`.
#[derive(Args, Debug)]
pub struct AuditLogArgs {
    #[command(subcommand)]
    command: AuditLogCommand,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
}

#[derive(Subcommand, Debug)]
enum AuditLogCommand {
    /// Check the hash chain: exit 0 when intact, 1 naming the first bad record (edited,
    /// removed, reordered, or missing at the end), 2 when there is no store.
    Verify {
        /// The agent's data directory (holding `opsloop.db`).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Print the records with their hashes, oldest first: one JSON object a line (`--output
    /// json`: one document `{"records": [...]}`).
    Export {
        /// The agent's data directory (holding `opsloop.db`).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Only records after this sequence number.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: i64,
    },
}

impl AuditLogArgs {
    /// The output format asked for.
    pub fn output(&self) -> Output {
        self.output
    }
}

/// Runs `opsloop audit-log`.
pub fn run(args: AuditLogArgs) -> Result<u8> {
    match args.command {
        AuditLogCommand::Verify { data_dir } => verify(&data_dir, args.output),
        AuditLogCommand::Export { data_dir, after } => export(&data_dir, after, args.output),
    }
}

fn open(data_dir: &std::path::Path) -> Result<Store> {
    Store::open_read_only(data_dir)
        .with_context(|| format!("opening the store in {}", data_dir.display()))
}

fn progress_bar(total: u64, output: Output) -> Option<ProgressBar> {
    if output != Output::Text || total < PROGRESS_MIN_RECORDS || !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} records {elapsed}") {
        bar.set_style(style);
    }
    Some(bar)
}

fn verify(data_dir: &std::path::Path, output: Output) -> Result<u8> {
    let store = open(data_dir)?;
    let total = store
        .trail_head()
        .ok()
        .flatten()
        .map_or(0, |(seq, _)| u64::try_from(seq).unwrap_or(0));
    let bar = progress_bar(total, output);
    let result = store.verify_trail_with_progress(&mut |n| {
        if let Some(bar) = &bar {
            bar.set_position(n);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let v = result.context("reading the audit trail")?;
    match output {
        Output::Json => println!("{}", serde_json::to_string(&v)?),
        Output::Text => match &v.first_bad {
            None => println!("{} records, chain intact", v.records),
            Some(bad) => println!(
                "{} records, chain broken at record {}: {}",
                v.records, bad.seq, bad.reason
            ),
        },
    }
    Ok(if v.ok { exit::OK } else { TRAIL_BROKEN })
}

/// A record as exported: the stored fields plus its time in RFC 3339 (as the API shows it).
fn record_json(r: &TrailRecord) -> serde_json::Value {
    serde_json::json!({
        "seq": r.seq,
        "time": opsloop_core::time::format_rfc3339(r.time_ms),
        "time_ms": r.time_ms,
        "kind": r.kind,
        "incident_id": r.incident_id,
        "actor": r.actor,
        "data": r.data,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    })
}

fn export(data_dir: &std::path::Path, after: i64, output: Output) -> Result<u8> {
    let store = open(data_dir)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let written = write_records(&store, after, output, &mut out);
    match written.and_then(|()| out.flush().map_err(anyhow::Error::from)) {
        Ok(()) => Ok(exit::OK),
        // A reader that stopped early (`| head`) is not an error.
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(exit::OK)
        }
        Err(e) => Err(e),
    }
}

/// Writes the records page by page, never holding more than one page.
fn write_records(store: &Store, after: i64, output: Output, out: &mut impl Write) -> Result<()> {
    let mut cursor = after.max(0);
    let mut first = true;
    // Serialised into a reused buffer, then written: write errors stay `io::Error`s.
    let mut line = Vec::new();
    if output == Output::Json {
        out.write_all(b"{\"records\":[")?;
    }
    loop {
        let page = store
            .trail(cursor, EXPORT_PAGE)
            .with_context(|| format!("reading the audit trail after record {cursor}"))?;
        let Some(last) = page.last() else {
            break;
        };
        cursor = last.seq;
        for r in &page {
            line.clear();
            if output == Output::Json && !first {
                line.push(b',');
            }
            serde_json::to_writer(&mut line, &record_json(r))?;
            if output == Output::Text {
                line.push(b'\n');
            }
            out.write_all(&line)?;
            first = false;
        }
    }
    if output == Output::Json {
        out.write_all(b"]}\n")?;
    }
    Ok(())
}
