//! The library driven directly, as the heal loop will: captured output limits, the record,
//! the timeout, and the fallback without a user namespace (root keeps the other
//! namespaces and `setuid`s; an unprivileged caller keeps Landlock, seccomp and rlimits).
//! The bench binary serves as the helper executable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::time::Duration;

use opsloop_sandbox::{
    Helper, Layer, LayerState, Outcome, OutputMode, Sandbox, SandboxPolicy, SandboxPolicyBuilder,
    Termination,
};

fn helper() -> Helper {
    Helper::new(env!("CARGO_BIN_EXE_sandbox_bench"), ["__sandbox-helper"])
}

fn run(builder: SandboxPolicyBuilder, cmd: &[&str]) -> Outcome {
    let sandbox = Sandbox::new(builder.build().unwrap(), helper());
    let args: Vec<OsString> = cmd.iter().skip(1).map(OsString::from).collect();
    sandbox.run(cmd[0].as_ref(), &args).unwrap()
}

fn state(outcome: &Outcome, layer: Layer) -> LayerState {
    outcome
        .layers
        .iter()
        .find(|l| l.layer == layer)
        .unwrap_or_else(|| panic!("layer {layer:?} missing from {:?}", outcome.layers))
        .state
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

#[test]
fn captured_output_is_cut_at_the_limit_and_counted() {
    let outcome = run(
        SandboxPolicy::builder().stdout(OutputMode::Capture { limit: 10 }),
        &[
            "sh",
            "-c",
            "head -c 100000 /dev/zero | tr '\\0' x; echo err >&2",
        ],
    );
    assert_eq!(outcome.termination, Termination::Exited(0));
    let stdout = outcome.stdout.unwrap();
    assert_eq!(stdout.bytes, b"xxxxxxxxxx");
    assert_eq!(stdout.total_bytes, 100_000);
    assert!(stdout.truncated);
    let stderr = outcome.stderr.unwrap();
    assert_eq!(stderr.bytes, b"err\n");
    assert!(!stderr.truncated);
    assert!(outcome.scratch_removed);
}

#[test]
fn the_record_names_environment_variables_but_never_their_values() {
    let name = "OPSLOOP_SANDBOX_LIB_TEST_SECRET";
    let policy = SandboxPolicy::builder().env(name).build().unwrap();
    let sandbox = Sandbox::new(policy, helper());
    // Unset in the test's environment: the name is recorded all the same (the CLI test
    // covers a set value and its redaction).
    let program = OsString::from("true");
    let outcome = sandbox.run(&program, &[]).unwrap();
    let record = outcome.record(sandbox.policy(), &program, &[]);
    assert_eq!(record.settings.env, vec![name.to_string()]);
    assert_eq!(record.exit_status, 0);
    assert_eq!(record.termination, "exited");
}

/// Processes whose command line holds `token`.
fn processes_with(token: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            line.contains(token).then_some(line)
        })
        .collect()
}

/// A shell that starts a background sleep named by a unique duration, then sleeps itself.
fn with_background_child(token: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("sleep {token} & sleep 30"),
    ]
}

#[test]
fn the_timeout_ends_the_run_with_124_and_kills_background_children() {
    let token = format!("31.{}1", std::process::id());
    let cmd = with_background_child(&token);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let outcome = run(
        SandboxPolicy::builder().timeout(Duration::from_millis(300)),
        &cmd,
    );
    assert_eq!(outcome.termination, Termination::TimedOut);
    assert_eq!(outcome.exit_code(), 124);
    assert!(outcome.timed_out());
    // Gone before `run` returned: no waiting here.
    assert_eq!(processes_with(&token), Vec::<String>::new());
}

#[test]
fn without_a_user_namespace_the_other_layers_still_hold() {
    let outcome = run(
        SandboxPolicy::builder().user_namespace(false),
        &["sh", "-c", "id -u; cat /etc/shadow || echo no-shadow"],
    );
    let stdout = String::from_utf8_lossy(&outcome.stdout.as_ref().unwrap().bytes).into_owned();
    assert_eq!(outcome.termination, Termination::Exited(0), "{stdout}");
    assert!(stdout.contains("no-shadow"), "{stdout}");
    assert_eq!(
        state(&outcome, Layer::UserNamespace),
        LayerState::Unavailable
    );
    assert_eq!(state(&outcome, Layer::Seccomp), LayerState::Applied);
    assert_eq!(state(&outcome, Layer::Rlimits), LayerState::Applied);
    assert_eq!(state(&outcome, Layer::NoNewPrivs), LayerState::Applied);
    if is_root() {
        // Root keeps the namespaces and leaves for nobody with setuid.
        assert_eq!(stdout.lines().next(), Some("65534"));
        for layer in [
            Layer::PidNamespace,
            Layer::MountNamespace,
            Layer::NetworkNamespace,
            Layer::Proc,
            Layer::Capabilities,
        ] {
            assert_eq!(state(&outcome, layer), LayerState::Applied, "{layer:?}");
        }
    } else {
        assert_eq!(
            state(&outcome, Layer::PidNamespace),
            LayerState::Unavailable
        );
        assert_eq!(
            state(&outcome, Layer::MountNamespace),
            LayerState::Unavailable
        );
    }
}

#[test]
fn without_a_user_namespace_the_timeout_still_kills_the_tree() {
    let token = format!("31.{}2", std::process::id());
    let cmd = with_background_child(&token);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let outcome = run(
        SandboxPolicy::builder()
            .user_namespace(false)
            .timeout(Duration::from_millis(300)),
        &cmd,
    );
    assert_eq!(outcome.termination, Termination::TimedOut);
    assert_eq!(processes_with(&token), Vec::<String>::new());
}
