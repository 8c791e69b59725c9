//! Integration tests: the `opsloop` binary driven as a user would, on the fixtures in
//! `tests/fixtures`. One test binary with modules, so there is one link step.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod audit_agent;
mod audit_log;
mod config;
mod detect;
mod detect_agent;
mod forecast;
mod forecast_agent;
mod hardening;
mod heal;
mod inspect;
mod jetstream;
mod otlp;
mod reliability;
mod run;
mod sandbox;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The built binary.
pub fn opsloop() -> Command {
    Command::new(env!("CARGO_BIN_EXE_opsloop"))
}

/// A fixture's path.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs `opsloop` with `args` in the repository root (so fixture paths print relative).
pub fn run(args: &[&str]) -> Output {
    opsloop()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running opsloop: {e}"))
}

/// Runs with `stdin` as standard input.
pub fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = opsloop()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning opsloop: {e}"));
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Compares `actual` with `tests/golden/NAME`; `UPDATE_GOLDEN=1` rewrites the file.
pub fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs from the output (UPDATE_GOLDEN=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}
mod heal_alertmanager;
mod heal_oom;
mod heal_reload;
mod heal_restart;
mod heal_run;
mod heal_scaleout;
