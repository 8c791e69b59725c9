//! Audit trail bench: appends (one transaction per record, and batched) and a full streaming
//! verification on a file store, in WAL mode as the agent runs it.
//!
//! `cargo run --release -p opsloop-store --bin trail_bench -- [--records N] [--data-dir DIR]`
//!
//! Without `--data-dir`, a fresh directory under the system's temporary directory is used and
//! removed afterwards. `--records` (default 100000) is the size of the trail verified; the
//! one-per-transaction append runs on the first tenth of it.

use std::path::PathBuf;
use std::time::Instant;

use opsloop_store::{Store, TrailAppend};

struct Args {
    records: i64,
    data_dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        records: 100_000,
        data_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--records" => {
                let v = it.next().ok_or("--records needs a value")?;
                args.records = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--records: {v:?} is not a positive number"))?;
            }
            "--data-dir" => {
                args.data_dir = Some(PathBuf::from(it.next().ok_or("--data-dir needs a value")?));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn rate(n: i64, secs: f64) -> f64 {
    n as f64 / secs.max(1e-9)
}

fn bench(args: &Args, dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut store = Store::open(dir)?;
    let data = serde_json::json!({
        "playbook": "disk-full", "step": "compress-logs",
        "detail": "exit 0 after 212 ms", "output": "compressed 14 files",
    });
    let entry = TrailAppend {
        kind: "step_finished",
        incident_id: Some("0195f3c2-7d1e-7cc0-9a51-4be0d2a6c0f1"),
        actor: Some("engine"),
        data: &data,
    };
    let singles = (args.records / 10).max(1);
    let t = Instant::now();
    for i in 0..singles {
        store.append_trail(&entry, i)?;
    }
    let single_secs = t.elapsed().as_secs_f64();

    let batch = vec![entry; 100];
    let rest = args.records - singles;
    let t = Instant::now();
    let mut done = 0;
    while done < rest {
        let n = usize::try_from((rest - done).min(100))?;
        store.append_trail_many(&batch[..n], done)?;
        done += n as i64;
    }
    let batch_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let v = store.verify_trail()?;
    let verify_secs = t.elapsed().as_secs_f64();
    if !v.ok {
        return Err(format!("the fresh trail does not verify: {v:?}").into());
    }
    println!("trail_bench: {} records", v.records);
    println!(
        "append, one transaction each: {singles} in {single_secs:.3} s = {:.0} records/s",
        rate(singles, single_secs)
    );
    println!(
        "append, batches of 100:       {rest} in {batch_secs:.3} s = {:.0} records/s",
        rate(rest, batch_secs)
    );
    println!(
        "verify (streaming):           {} in {verify_secs:.3} s = {:.0} records/s",
        v.records,
        rate(i64::try_from(v.records)?, verify_secs)
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("trail_bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let (dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("opsloop-trail-bench-{}", std::process::id())),
            true,
        ),
    };
    let result = bench(&args, &dir);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trail_bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
