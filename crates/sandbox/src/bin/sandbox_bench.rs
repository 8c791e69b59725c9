//! Start-up overhead of the sandbox: runs `/bin/true` directly, through the library from
//! this single-threaded process (helpers forked), and given `--opsloop PATH` through the
//! library from a caller with threads (the agent's path: opsloop executed as the outer
//! helper) and through `opsloop heal sandbox`; prints p50/p90/p99.
//!
//! `cargo run --release -p opsloop-sandbox --bin sandbox_bench -- --runs 200 --opsloop target/release/opsloop`
//!
//! With `--no-userns` the library runs take the fallback without a user namespace. The
//! binary is its own sandbox helper (`sandbox_bench __sandbox-helper`).

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use opsloop_sandbox::{Helper, OutputMode, Sandbox, SandboxPolicy, Termination, helper_main};

const HELPER_ARG: &str = "__sandbox-helper";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = percentile(&samples, 0.5);
    println!(
        "{name:<32} runs {:>4}  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms",
        samples.len(),
        ms(p50),
        ms(percentile(&samples, 0.9)),
        ms(percentile(&samples, 0.99)),
    );
    p50
}

/// Prints how much longer than running the command directly (`direct`) a path took (p50).
fn overhead(name: &str, p50: Duration, direct: Duration) {
    println!(
        "{name:<32} p50 {:>7.2} ms",
        p50.saturating_sub(direct).as_secs_f64() * 1000.0
    );
}

fn time(runs: usize, mut once: impl FnMut() -> bool) -> Option<Vec<Duration>> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        if !once() {
            return None;
        }
        samples.push(start.elapsed());
    }
    Some(samples)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(HELPER_ARG) {
        return ExitCode::from(helper_main());
    }
    let mut runs = 100usize;
    let mut opsloop: Option<PathBuf> = None;
    let mut userns = true;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--runs" => match iter.next().and_then(|n| n.parse().ok()) {
                Some(n) => runs = n,
                None => {
                    eprintln!("sandbox_bench: --runs takes a number");
                    return ExitCode::from(2);
                }
            },
            "--opsloop" => opsloop = iter.next().map(PathBuf::from),
            "--no-userns" => userns = false,
            other => {
                eprintln!("sandbox_bench: unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }

    let direct = time(runs, || {
        Command::new("/bin/true")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(direct) = direct else {
        eprintln!("sandbox_bench: /bin/true failed");
        return ExitCode::from(1);
    };
    let direct = report("/bin/true directly", direct);

    let policy = match SandboxPolicy::builder()
        .user_namespace(userns)
        .stdout(OutputMode::Inherit)
        .stderr(OutputMode::Inherit)
        .build()
    {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("sandbox_bench: {e}");
            return ExitCode::from(1);
        }
    };
    let sandbox = Sandbox::new(policy, Helper::current_exe([HELPER_ARG]));
    let mut failure = None;
    let library = time(runs, || match sandbox.run("/bin/true".as_ref(), &[]) {
        Ok(outcome) if outcome.termination == Termination::Exited(0) => true,
        Ok(outcome) => {
            failure = Some(format!("{:?}", outcome.termination));
            false
        }
        Err(e) => {
            failure = Some(e.to_string());
            false
        }
    });
    let Some(library) = library else {
        eprintln!(
            "sandbox_bench: sandboxed /bin/true failed: {}",
            failure.unwrap_or_default()
        );
        return ExitCode::from(1);
    };
    let library = report("Sandbox::run(/bin/true)", library);
    overhead("overhead (library)", library, direct);

    if let Some(opsloop) = &opsloop {
        // The agent's path: a caller with threads executes the helper (opsloop) afresh
        // for the outer stage instead of forking itself.
        let (_keep, parked) = std::sync::mpsc::channel::<()>();
        let other_thread = std::thread::spawn(move || parked.recv());
        let threaded = Sandbox::new(
            sandbox.policy().clone(),
            Helper::new(opsloop, ["heal", "sandbox-helper"]),
        );
        let agent = time(runs, || {
            threaded
                .run("/bin/true".as_ref(), &[])
                .is_ok_and(|o| o.termination == Termination::Exited(0))
        });
        drop(_keep);
        let _ = other_thread.join();
        let Some(agent) = agent else {
            eprintln!("sandbox_bench: sandboxed /bin/true from a threaded caller failed");
            return ExitCode::from(1);
        };
        let agent = report("Sandbox::run, threaded caller", agent);
        overhead("overhead (agent's path)", agent, direct);
        let cli = time(runs, || {
            Command::new(opsloop)
                .args(["heal", "sandbox", "--", "/bin/true"])
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        let Some(cli) = cli else {
            eprintln!("sandbox_bench: opsloop heal sandbox -- /bin/true failed");
            return ExitCode::from(1);
        };
        let cli = report("opsloop heal sandbox -- /bin/true", cli);
        overhead("overhead (command line)", cli, direct);
    }
    ExitCode::SUCCESS
}
