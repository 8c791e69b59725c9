//! `opsloop heal sandbox` from outside: escape attempts by a small C program built here
//! (`tests/fixtures/sandbox/escape.c`), each of which must fail, and controls that must
//! work. Every run goes under an outer limit (`timeout`, `prlimit`), and every attempt is
//! bounded on its own, so a broken sandbox cannot harm the machine. When the tests run as
//! root, each one runs twice: as root (the sandbox drops to `nobody` itself) and as
//! `nobody` through `setpriv` (the unprivileged path with user namespaces).

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::fixture;

/// Who runs `opsloop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// The test's own user.
    Me,
    /// `nobody`, through `setpriv` (only when the tests run as root).
    Nobody,
}

fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|u| u.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

fn callers() -> Vec<Caller> {
    if is_root() {
        vec![Caller::Me, Caller::Nobody]
    } else {
        println!("not root: the root caller's path is not exercised");
        vec![Caller::Me]
    }
}

/// A directory every user can enter, for the helper program and test files.
fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Earlier runs' directories, whose test process is gone.
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("opsloop-it-sandbox-")
                    && !Path::new("/proc").join(pid).exists()
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("opsloop-it-sandbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    })
}

/// The escape program, compiled once.
fn escape() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = work_dir().join("bin");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("escape");
        let status = Command::new("gcc")
            .args(["-O1", "-o"])
            .arg(&bin)
            .arg(fixture("sandbox/escape.c"))
            .status()
            .expect("gcc builds the escape program");
        assert!(status.success(), "gcc failed");
        bin
    })
}

/// A command line running `opsloop heal sandbox FLAGS -- CMD` as `caller`, under outer
/// limits.
fn sandbox_command(caller: Caller, flags: &[&str], cmd: &[&str]) -> Command {
    let mut command = Command::new("timeout");
    command.args(["--signal=KILL", "120"]);
    if caller == Caller::Nobody {
        command.args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ]);
    }
    command
        .args(["prlimit", "--as=8589934592", "--cpu=120", "--"])
        .arg(env!("CARGO_BIN_EXE_opsloop"))
        .args(["heal", "sandbox"])
        .args(flags)
        .arg("--")
        .args(cmd)
        .current_dir("/")
        .stdin(Stdio::null());
    command
}

/// Runs `cmd` as `caller` without the sandbox (controls: what the host allows anyway).
fn as_caller(caller: Caller, cmd: &[&str]) -> Output {
    let mut command = Command::new("timeout");
    command.args(["--signal=KILL", "60"]);
    if caller == Caller::Nobody {
        command.args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ]);
    }
    command
        .args(cmd)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The escape program's verdict on `mode` outside the sandbox.
fn escapes_outside(caller: Caller, mode: &[&str]) -> bool {
    let mut cmd = vec![escape().to_str().unwrap()];
    cmd.extend_from_slice(mode);
    text(&as_caller(caller, &cmd).stdout).contains("ESCAPED")
}

fn sandbox(caller: Caller, flags: &[&str], cmd: &[&str]) -> Output {
    sandbox_command(caller, flags, cmd).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the escape program in `mode` with `--allow-read` of its directory; asserts that
/// the attempt was blocked.
fn assert_blocked(caller: Caller, flags: &[&str], mode: &[&str]) -> Output {
    let bin = escape();
    let dir = bin.parent().unwrap().to_str().unwrap();
    let mut all_flags = vec!["--allow-read", dir];
    all_flags.extend_from_slice(flags);
    let mut cmd = vec![bin.to_str().unwrap()];
    cmd.extend_from_slice(mode);
    let out = sandbox(caller, &all_flags, &cmd);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("BLOCKED") && !stdout.contains("ESCAPED"),
        "{caller:?} {mode:?}: not blocked\nstdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    out
}

#[test]
fn ordinary_commands_work_and_scratch_is_removed() {
    for caller in callers() {
        let out = sandbox(
            caller,
            &[],
            &[
                "sh",
                "-c",
                "echo hello > note && cat note && pwd && test \"$HOME\" = \"$PWD\" && df >/dev/null && echo df-ok",
            ],
        );
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{caller:?}: {stdout} {}",
            text(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.first(), Some(&"hello"));
        assert_eq!(lines.last(), Some(&"df-ok"));
        let scratch = Path::new(lines.get(1).unwrap());
        assert!(scratch.is_absolute());
        assert!(
            !scratch.exists(),
            "{caller:?}: scratch {} left behind",
            scratch.display()
        );
        // The identity: nobody.
        let out = sandbox(caller, &[], &["id", "-u"]);
        assert_eq!(text(&out.stdout).trim(), "65534", "{caller:?}");
    }
}

#[test]
fn environment_is_cleared_except_the_allowed_names() {
    for caller in callers() {
        let mut command = sandbox_command(caller, &["--env", "OPSLOOP_IT_PASSED"], &["env"]);
        command
            .env("OPSLOOP_IT_SECRET", "agent-secret-value")
            .env("OPSLOOP_IT_PASSED", "passed-value");
        let out = command.output().unwrap();
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        let names: Vec<&str> = stdout.lines().filter_map(|l| l.split('=').next()).collect();
        for name in &names {
            assert!(
                [
                    "PATH",
                    "HOME",
                    "LANG",
                    "OPSLOOP_SCRATCH",
                    "OPSLOOP_IT_PASSED"
                ]
                .contains(name),
                "{caller:?}: unexpected variable {name}"
            );
        }
        assert!(stdout.contains("OPSLOOP_IT_PASSED=passed-value"));
        assert!(!stdout.contains("agent-secret-value"));
    }
}

#[test]
fn files_outside_the_allow_lists_cannot_be_read() {
    let secret_dir = work_dir().join("secret");
    std::fs::create_dir_all(&secret_dir).unwrap();
    let private = secret_dir.join("private");
    std::fs::write(&private, "private").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let public = secret_dir.join("public");
    std::fs::write(&public, "public").unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    let in_tmp = std::env::temp_dir().join(format!("opsloop-it-tmp-{}", std::process::id()));
    std::fs::write(&in_tmp, "tmp").unwrap();
    std::fs::set_permissions(&in_tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    // World-readable in a world-readable directory: only the sandbox stands in the way.
    let in_var_tmp = Path::new("/var/tmp").join(format!("opsloop-it-{}", std::process::id()));
    std::fs::write(&in_var_tmp, "var-tmp").unwrap();
    std::fs::set_permissions(&in_var_tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    for caller in callers() {
        // Control: outside the sandbox the caller reads them.
        for path in [&public, &in_tmp, &in_var_tmp] {
            let out = as_caller(caller, &["cat", path.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{caller:?}: {} unreadable outside",
                path.display()
            );
        }
        for path in [
            "/etc/shadow",
            private.to_str().unwrap(),
            public.to_str().unwrap(),
            in_tmp.to_str().unwrap(),
            in_var_tmp.to_str().unwrap(),
            "/proc/1/root/etc/shadow",
            "/proc/1/environ",
        ] {
            assert_blocked(caller, &[], &["read", path]);
        }
        for dir in ["/root", "/home"] {
            assert_blocked(caller, &[], &["list", dir]);
        }
        // The sandbox's /tmp holds only the way to its scratch directory.
        let out = sandbox(caller, &[], &["ls", "-a", "/tmp"]);
        let names = text(&out.stdout);
        let file_name = in_tmp.file_name().unwrap().to_str().unwrap();
        assert!(
            !names.contains(file_name),
            "{caller:?}: host /tmp visible: {names}"
        );
    }
    std::fs::remove_file(in_tmp).unwrap();
    std::fs::remove_file(in_var_tmp).unwrap();
}

#[test]
fn nothing_outside_scratch_and_allow_write_can_be_written_or_deleted() {
    let open_dir = work_dir().join("open");
    std::fs::create_dir_all(&open_dir).unwrap();
    // World-writable: only the sandbox stands in the way.
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let victim = open_dir.join("victim");
    std::fs::write(&victim, "intact").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o666)).unwrap();
    let allowed = work_dir().join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::set_permissions(&allowed, std::fs::Permissions::from_mode(0o777)).unwrap();
    let readable = open_dir.to_str().unwrap();
    for caller in callers() {
        let victim_path = victim.to_str().unwrap();
        assert_blocked(caller, &[], &["write", victim_path]);
        assert_blocked(caller, &[], &["unlink", victim_path]);
        assert_blocked(caller, &["--allow-read", readable], &["write", victim_path]);
        assert_blocked(
            caller,
            &["--allow-read", readable],
            &["unlink", victim_path],
        );
        assert_blocked(caller, &[], &["write", "/usr/opsloop-it"]);
        assert_blocked(caller, &[], &["mkdir", "/opsloop-it"]);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "intact");

        // Control: --allow-write permits creating and deleting there.
        let made = allowed.join(format!("made-{caller:?}"));
        let out = sandbox(
            caller,
            &["--allow-write", allowed.to_str().unwrap()],
            &[
                "sh",
                "-c",
                &format!("echo x > {0} && rm {0} && echo y > {0}", made.display()),
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(std::fs::read_to_string(&made).unwrap(), "y\n");
        // Control: --allow-read makes a file readable.
        let out = sandbox(caller, &["--allow-read", readable], &["cat", victim_path]);
        assert_eq!(text(&out.stdout), "intact");
    }
}

#[test]
fn network_none_blocks_tcp_and_udp_on_loopback() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let tcp_port = tcp.local_addr().unwrap().port().to_string();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let udp_port = udp.local_addr().unwrap().port().to_string();
    for caller in callers() {
        assert_blocked(caller, &[], &["tcp", "127.0.0.1", &tcp_port]);
        assert_blocked(caller, &[], &["udp", "127.0.0.1", &udp_port]);
        assert!(tcp.accept().is_err(), "a connection arrived");
        assert!(udp.recv(&mut [0u8; 8]).is_err(), "a datagram arrived");

        // Control: network host reaches the host.
        let bin = escape();
        let out = sandbox(
            caller,
            &[
                "--network",
                "host",
                "--allow-read",
                bin.parent().unwrap().to_str().unwrap(),
            ],
            &[bin.to_str().unwrap(), "tcp", "127.0.0.1", &tcp_port],
        );
        assert!(
            text(&out.stdout).contains("ESCAPED tcp connect"),
            "{}",
            text(&out.stdout)
        );
        let mut accepted = None;
        for _ in 0..100 {
            if let Ok((stream, _)) = tcp.accept() {
                accepted = Some(stream);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(accepted.is_some(), "network host: no connection arrived");
    }
}

#[test]
fn processes_outside_cannot_be_signalled_traced_or_read() {
    for caller in callers() {
        // The victim runs as the same uid as the command whenever possible.
        let mut victim = if is_root() {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                "sleep",
                "60",
            ]);
            c
        } else {
            let mut c = Command::new("sleep");
            c.arg("60");
            c
        };
        let mut victim = victim
            .env("OPSLOOP_IT_VICTIM_SECRET", "s3cret")
            .spawn()
            .unwrap();
        let pid = victim.id().to_string();
        assert_blocked(caller, &[], &["kill", &pid]);
        assert_blocked(caller, &[], &["ptrace", &pid]);
        assert_blocked(caller, &[], &["read", &format!("/proc/{pid}/environ")]);
        assert!(victim.try_wait().unwrap().is_none(), "the victim died");
        victim.kill().unwrap();
        victim.wait().unwrap();
    }
}

#[test]
fn dangerous_system_calls_are_denied() {
    for caller in callers() {
        for mode in [
            "mount",
            "chroot",
            "unshare-user",
            "clone-user",
            "clone3-user",
            "module",
            "bpf",
            "perf",
            "keyctl",
            "setuid0",
            "ptrace-traceme",
            "vm-read",
            "io-uring",
        ] {
            assert_blocked(caller, &[], &[mode]);
        }
    }
}

#[test]
fn a_fork_bomb_stops_at_max_procs() {
    for caller in callers() {
        let out = assert_blocked(caller, &["--max-procs", "10"], &["fork-bomb", "40"]);
        let stdout = text(&out.stdout);
        let made: u32 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("forked ")?.split(' ').next()?.parse().ok())
            .unwrap();
        assert!(made < 10, "{caller:?}: {made} processes");
    }
}

#[test]
fn memory_beyond_the_limit_is_refused() {
    // Above what the sandbox's init needs to start the command in a debug build (about
    // 80 MiB of address space; about 40 MiB in a release build).
    const LIMIT: &str = "160MiB";
    for caller in callers() {
        assert_blocked(caller, &["--memory", LIMIT], &["memory", "512"]);
        // Mappings the data limit alone did not count.
        for (mode, mib) in [
            ("memory-shared", "1024"),
            ("memory-growsdown", "1024"),
            ("memory-memfd", "200"),
        ] {
            assert_blocked(caller, &["--memory", LIMIT], &[mode, mib]);
        }
        // Control: within the limit.
        let bin = escape();
        let out = sandbox(
            caller,
            &[
                "--memory",
                LIMIT,
                "--allow-read",
                bin.parent().unwrap().to_str().unwrap(),
            ],
            &[bin.to_str().unwrap(), "memory", "16"],
        );
        assert!(
            text(&out.stdout).contains("ESCAPED memory"),
            "16 MiB should fit"
        );
    }
}

#[test]
fn cpu_beyond_the_limit_is_killed_even_when_sigxcpu_is_ignored() {
    for caller in callers() {
        let bin = escape();
        let out = sandbox(
            caller,
            &[
                "--cpu-time",
                "1s",
                "--allow-read",
                bin.parent().unwrap().to_str().unwrap(),
            ],
            &[bin.to_str().unwrap(), "cpu", "30"],
        );
        assert!(!text(&out.stdout).contains("ESCAPED"));
        assert_eq!(
            out.status.code(),
            Some(137),
            "{caller:?}: {}",
            text(&out.stderr)
        );
    }
}

/// Processes whose command line holds `token`.
fn processes_named(token: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            let mut cmdline = Vec::new();
            std::fs::File::open(e.path().join("cmdline"))
                .and_then(|mut f| f.read_to_end(&mut cmdline))
                .is_ok()
                && String::from_utf8_lossy(&cmdline).contains(token)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_timeout_kills_the_whole_tree_daemons_included() {
    for caller in callers() {
        let bin = escape();
        let dir = bin.parent().unwrap().to_str().unwrap();
        let token = format!("opsloop-it-daemon-{}-{caller:?}", std::process::id());
        let out = sandbox(
            caller,
            &["--timeout", "1s", "--allow-read", dir],
            &[bin.to_str().unwrap(), "daemon", "60", &token, "60"],
        );
        assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("daemon started"));
        assert!(text(&out.stderr).contains("timed out"));
        assert_eq!(
            processes_named(&token),
            Vec::<String>::new(),
            "{caller:?}: survivors"
        );

        // A command that exits at once leaves nothing behind either.
        let token = format!("{token}-quick");
        let out = sandbox(
            caller,
            &["--allow-read", dir],
            &[bin.to_str().unwrap(), "daemon", "60", &token],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(
            processes_named(&token),
            Vec::<String>::new(),
            "{caller:?}: survivors"
        );
    }
}

#[test]
fn descriptors_the_caller_holds_open_do_not_leak_in() {
    for caller in callers() {
        let bin = escape();
        let dir = bin.parent().unwrap().to_str().unwrap();
        // bash's redirections are inherited (no close-on-exec) by opsloop.
        let inner = sandbox_command(
            caller,
            &["--allow-read", dir],
            &[bin.to_str().unwrap(), "fds"],
        );
        let line = std::iter::once(inner.get_program())
            .chain(inner.get_args())
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let out = Command::new("bash")
            .args([
                "-c",
                &format!("exec 7</etc/hostname 8>/dev/null; exec {line}"),
            ])
            .current_dir("/")
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("BLOCKED") && !stdout.contains("open fd"),
            "{caller:?}: {stdout}"
        );
    }
}

#[test]
fn exit_statuses_follow_the_convention() {
    for caller in callers() {
        let code = |flags: &[&str], cmd: &[&str]| sandbox(caller, flags, cmd).status.code();
        assert_eq!(code(&[], &["sh", "-c", "exit 3"]), Some(3));
        assert_eq!(code(&[], &["sh", "-c", "kill -9 $$"]), Some(137));
        assert_eq!(code(&[], &["opsloop-it-no-such-command"]), Some(127));
        assert_eq!(code(&[], &["/etc/passwd"]), Some(126));
        assert_eq!(code(&["--user", "root"], &["true"]), Some(125));
        assert_eq!(
            code(&["--allow-read", "/opsloop-it-missing"], &["true"]),
            Some(125)
        );
        assert_eq!(code(&["--timeout", "300ms"], &["sleep", "30"]), Some(124));
    }
}

#[test]
fn stdin_passes_through() {
    let mut child = sandbox_command(Caller::Me, &[], &["cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"through\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "through\n");
}

#[test]
fn json_reports_status_layers_usage_and_redacted_output() {
    for caller in callers() {
        let mut command = sandbox_command(
            caller,
            &["--output", "json", "--env", "OPSLOOP_IT_TOKEN"],
            &[
                "sh",
                "-c",
                "echo out; echo \"token=$OPSLOOP_IT_TOKEN\" >&2; exit 4",
            ],
        );
        command.env("OPSLOOP_IT_TOKEN", "tok-123456");
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(4));
        let stdout = text(&out.stdout);
        assert!(
            !stdout.contains("tok-123456"),
            "the secret leaked: {stdout}"
        );
        let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(doc["exit_status"], 4);
        assert_eq!(doc["termination"], "exited");
        assert_eq!(doc["stdout"]["text"], "out\n");
        assert_eq!(doc["stderr"]["text"], "token=[redacted]\n");
        assert_eq!(doc["settings"]["env"][0], "OPSLOOP_IT_TOKEN");
        assert!(doc["duration_ms"].is_u64());
        assert!(doc["usage"]["max_rss_bytes"].as_u64().unwrap() > 0);
        assert_eq!(doc["scratch_removed"], true);
        let layers = doc["layers"].as_array().unwrap();
        // What this kernel has, probed outside the sandbox: a layer it has must be applied.
        let userns = escapes_outside(caller, &["unshare-user"]);
        let namespaces = userns || caller == Caller::Me && is_root();
        let landlock_abi: u32 =
            text(&as_caller(caller, &[escape().to_str().unwrap(), "landlock-abi"]).stdout)
                .trim()
                .strip_prefix("landlock abi ")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        for (name, available) in [
            ("no_new_privs", true),
            ("capabilities", true),
            ("user", true),
            ("seccomp", true),
            ("rlimits", true),
            ("landlock", landlock_abi > 0),
            ("user_namespace", userns),
            ("pid_namespace", namespaces),
            ("mount_namespace", namespaces),
            ("network_namespace", namespaces),
            ("ipc_namespace", namespaces),
            ("uts_namespace", namespaces),
            ("proc", namespaces),
        ] {
            let layer = layers.iter().find(|l| l["layer"] == name);
            let state = layer.map(|l| l["state"].as_str().unwrap_or_default());
            if available {
                assert_eq!(
                    state,
                    Some("applied"),
                    "{caller:?}: layer {name}: {layer:?}"
                );
            } else {
                // Never silently missing.
                assert_eq!(
                    state,
                    Some("unavailable"),
                    "{caller:?}: layer {name}: {layer:?}"
                );
            }
        }
    }
}

#[test]
fn json_reports_a_setup_failure() {
    let out = sandbox(
        Caller::Me,
        &["--output", "json", "--user", "root"],
        &["true"],
    );
    assert_eq!(out.status.code(), Some(125));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["termination"], "setup_failed");
    assert_eq!(doc["exit_status"], 125);
    assert_eq!(doc["error"]["code"], "sandbox_setup");
    assert!(doc["error"]["message"].as_str().unwrap().contains("uid"));

    // Every failure has the keys of a successful run's document.
    let keys = |doc: &serde_json::Value| {
        let mut keys: Vec<String> = doc.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let ok = sandbox(Caller::Me, &["--output", "json"], &["true"]);
    let ok: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(ok["error"].is_null());
    for (flags, cmd) in [
        (&["--output", "json", "--user", "root"][..], &["true"][..]),
        (
            &["--output", "json", "--allow-read", "/opsloop-it-missing"],
            &["true"],
        ),
        (&["--output", "json", "--allow-read", "/"], &["true"]),
        (&["--output", "json", "--env", "PATH"], &["true"]),
        (&["--output", "json"], &["opsloop-it-no-such-command"]),
        (
            &["--output", "json", "--timeout", "200ms"],
            &["sleep", "30"],
        ),
    ] {
        let out = sandbox(Caller::Me, flags, cmd);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{flags:?}: {e}: {}", text(&out.stdout)));
        assert_eq!(keys(&doc), keys(&ok), "{flags:?}");
        assert_eq!(doc["exit_status"], out.status.code().unwrap(), "{flags:?}");
        assert!(doc["error"]["code"].is_string(), "{flags:?}: {doc}");
        assert!(doc["layers"].is_array(), "{flags:?}");
    }
}

/// Callers and `--user` accounts other than root and `nobody`: the user namespace maps the
/// ids the helper had before it unshared.
#[test]
fn other_callers_and_users_work() {
    if !is_root() {
        eprintln!("skipped: needs root to switch to other users");
        return;
    }
    let run = |pre: &[&str], flags: &[&str]| {
        let mut c = Command::new("timeout");
        c.args(["--signal=KILL", "120"])
            .args(pre)
            .arg(env!("CARGO_BIN_EXE_opsloop"))
            .args(["heal", "sandbox"])
            .args(flags)
            .args(["--", "id", "-u"])
            .current_dir("/")
            .stdin(Stdio::null());
        c.output().expect("runs")
    };
    let out = run(
        &[
            "setpriv",
            "--reuid=4242",
            "--regid=4242",
            "--clear-groups",
            "--",
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[], &["--user", "4343"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The filter's own errno for denied calls, as `strerror` spells it.
const FILTER_EPERM: &str = "Operation not permitted";

/// Calls an unprivileged process may make on this host (checked outside first), which
/// the seccomp filter denies: the errno must be the filter's, not a missing privilege's.
#[test]
fn calls_the_host_allows_an_unprivileged_process_are_denied_by_the_filter() {
    for caller in callers() {
        let mut checked = Vec::new();
        for mode in ["unshare-user", "keyctl", "perf", "userfaultfd"] {
            if !escapes_outside(caller, &[mode]) {
                println!("{caller:?}: {mode} is refused on this host anyway; not a filter check");
                continue;
            }
            let out = assert_blocked(caller, &[], &[mode]);
            let stdout = text(&out.stdout);
            assert!(
                stdout.contains(FILTER_EPERM),
                "{caller:?} {mode}: not the filter's errno: {stdout}"
            );
            checked.push(mode);
        }
        assert!(
            checked.len() >= 2,
            "{caller:?}: too few calls allowed on this host to check the filter: {checked:?}"
        );
        // x32 numbers: the kernel says ENOSYS when it has no x32; the filter says EPERM first.
        if cfg!(target_arch = "x86_64") {
            let out = assert_blocked(caller, &[], &["x32"]);
            assert!(
                text(&out.stdout).contains(FILTER_EPERM),
                "{caller:?}: {}",
                text(&out.stdout)
            );
        }
    }
}

#[test]
fn socket_families_are_an_allow_list() {
    let unsupported = "Address family not supported";
    for caller in callers() {
        // Controls: the host allows these outside the sandbox.
        for family in ["vsock", "netlink-route"] {
            assert!(
                escapes_outside(caller, &["socket", family]),
                "{caller:?}: socket {family} fails outside the sandbox"
            );
        }
        // Network none: Unix sockets only.
        for family in ["vsock", "netlink-route", "netlink-diag", "packet", "alg"] {
            let out = assert_blocked(caller, &[], &["socket", family]);
            assert!(
                text(&out.stdout).contains(unsupported),
                "{caller:?} {family}: {}",
                text(&out.stdout)
            );
        }
        assert_blocked(caller, &[], &["socketpair-inet"]);
        let bin = escape();
        let dir = bin.parent().unwrap().to_str().unwrap();
        for mode in [&["socket", "unix"][..], &["socketpair-unix"]] {
            let mut cmd = vec![bin.to_str().unwrap()];
            cmd.extend_from_slice(mode);
            let out = sandbox(caller, &["--allow-read", dir], &cmd);
            assert!(
                text(&out.stdout).contains("ESCAPED"),
                "{caller:?} {mode:?}: {}",
                text(&out.stdout)
            );
        }
        // Network host: netlink route yes, the exotic families and other netlink no.
        let host = ["--network", "host"];
        for family in ["vsock", "netlink-diag", "netlink-audit", "packet", "alg"] {
            assert_blocked(caller, &host, &["socket", family]);
        }
        let out = sandbox(
            caller,
            &["--network", "host", "--allow-read", dir],
            &[bin.to_str().unwrap(), "socket", "netlink-route"],
        );
        assert!(
            text(&out.stdout).contains("ESCAPED"),
            "{caller:?}: {}",
            text(&out.stdout)
        );
    }
}

/// The command lines of processes whose command line holds `token`.
fn command_lines_with(token: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let mut cmdline = Vec::new();
            std::fs::File::open(e.path().join("cmdline"))
                .and_then(|mut f| f.read_to_end(&mut cmdline))
                .ok()?;
            let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            line.contains(token).then_some(line)
        })
        .collect()
}

/// Whether a `sleep` with argument `duration` runs (durations are unique per test).
fn command_sleeping(duration: &str) -> bool {
    command_lines_with(duration)
        .iter()
        .any(|l| l.starts_with("sleep "))
}

/// Polls `condition` every 20 ms for at most `limit`; whether it held.
fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killing_the_caller_kills_the_command() {
    // A scratch root of its own: sandboxes of tests running meanwhile sweep the shared one,
    // and would remove the killed caller's directory before this test looks for it.
    let scratch_root = shared_dir("sweep-root");
    for caller in callers() {
        // A duration no other process uses, so the sleep can be found.
        let duration = format!("60.{}{}", std::process::id(), caller as u8);
        let mut opsloop = sleeping_sandbox(caller, &duration, &scratch_root);
        let sleeping = || command_sleeping(&duration);
        let started = wait_until(Duration::from_secs(20), sleeping);
        opsloop.kill().unwrap();
        opsloop.wait().unwrap();
        assert!(started, "{caller:?}: the command never started");
        assert!(
            wait_until(Duration::from_secs(20), || !sleeping()),
            "{caller:?}: the command outlived its killed caller: {:?}",
            command_lines_with(&duration)
        );
        // SIGKILL left its directory behind; the next run sweeps it.
        let pid = opsloop.id();
        assert!(
            !control_dirs_of(pid, &scratch_root).is_empty(),
            "{caller:?}: no directory of the killed caller to sweep"
        );
        let out = sandbox_command(caller, &[], &["true"])
            .env("TMPDIR", &scratch_root)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(
            control_dirs_of(pid, &scratch_root),
            Vec::<String>::new(),
            "{caller:?}"
        );
    }
}

/// The control directories in the scratch root `root` named after `pid`.
fn control_dirs_of(pid: u32, root: &Path) -> Vec<String> {
    let prefix = format!("opsloop-sandbox-{pid}-");
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

#[test]
fn a_terminated_caller_kills_the_command_and_removes_its_directory() {
    // A SIGINT this test process ignores (started in the background by a shell) is
    // ignored by `opsloop` too, as it should be: then only SIGTERM is tried.
    let int_ignored = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let mask = s
                .lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&mask, 16).ok()
        })
        .is_some_and(|mask| mask & (1 << (2 - 1)) != 0);
    let signals: &[&str] = if int_ignored {
        &["TERM"]
    } else {
        &["TERM", "INT"]
    };
    // A scratch root of its own, which no other test's sandbox sweeps meanwhile.
    let scratch_root = shared_dir("signal-root");
    for caller in callers() {
        for &signal in signals {
            let duration = format!("61.{}{}", std::process::id(), caller as u8);
            let mut opsloop = sleeping_sandbox(caller, &duration, &scratch_root);
            let pid = opsloop.id();
            let sleeping = || command_sleeping(&duration);
            assert!(
                wait_until(Duration::from_secs(20), sleeping),
                "{caller:?}: the command never started"
            );
            let sent = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
            let status = opsloop.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert!(
                status.signal().is_some(),
                "{caller:?} {signal}: ended by the signal, not {status:?}"
            );
            // Removed before the caller ended, not by a later sweep.
            assert_eq!(
                control_dirs_of(pid, &scratch_root),
                Vec::<String>::new(),
                "{caller:?} {signal}"
            );
            assert!(
                wait_until(Duration::from_secs(20), || !sleeping()),
                "{caller:?} {signal}: the command outlived its caller"
            );
        }
    }
}

#[test]
fn a_command_can_read_the_terminal() {
    // `script` gives the sandbox a terminal as its controlling one and standard input;
    // the command must read it without being stopped (SIGTTIN) until the timeout.
    if Command::new("script").arg("--version").output().is_err() {
        println!("no `script` here: the terminal case is not exercised");
        return;
    }
    let inner = format!(
        "{} heal sandbox --timeout 20s -- head -n 1",
        env!("CARGO_BIN_EXE_opsloop")
    );
    let mut script = Command::new("timeout")
        .args(["--signal=KILL", "60", "script", "-qec", &inner, "/dev/null"])
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    script
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"typed-line\n")
        .unwrap();
    let out = script.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    // The terminal echoes the line once and the command prints it once.
    assert!(
        stdout.matches("typed-line").count() >= 2,
        "the command did not read the terminal: {stdout}"
    );
}

#[test]
fn mounts_below_a_read_only_allow_list_are_read_only() {
    if !is_root() {
        println!("not root: mounting a tmpfs below an allow-list needs root; not exercised");
        return;
    }
    let top = work_dir().join("with-submount");
    let sub = top.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755)).unwrap();
    /// Unmounts the tmpfs whatever the test's outcome.
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs"])
        .arg(&sub)
        .status()
        .unwrap();
    if !mounted.success() {
        println!("mounting a tmpfs was refused here; not exercised");
        return;
    }
    let _unmount = Unmount(sub.clone());
    for caller in callers() {
        let out = sandbox(
            caller,
            &["--allow-read", top.to_str().unwrap()],
            &["cat", "/proc/self/mountinfo"],
        );
        let mountinfo = text(&out.stdout);
        let line = mountinfo
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(sub.to_str().unwrap()))
            .unwrap_or_else(|| panic!("{caller:?}: submount missing: {mountinfo}"));
        let options = line.split(' ').nth(5).unwrap();
        assert!(
            options.split(',').any(|o| o == "ro"),
            "{caller:?}: the submount is writable: {line}"
        );
        assert!(
            options.contains("nosuid") && options.contains("nodev"),
            "{line}"
        );
    }
}

#[test]
fn allow_lists_may_not_expose_other_sandboxes_scratch() {
    let scratch_root = std::env::temp_dir();
    let scratch_root = scratch_root.to_str().unwrap();
    for caller in callers() {
        for flags in [
            ["--allow-read", scratch_root],
            ["--allow-write", scratch_root],
            ["--allow-read", "/"],
        ] {
            let out = sandbox(caller, &flags, &["true"]);
            assert_eq!(out.status.code(), Some(125), "{caller:?} {flags:?}");
            assert!(
                text(&out.stderr).contains("scratch root"),
                "{caller:?} {flags:?}: {}",
                text(&out.stderr)
            );
        }
        // Control: a directory beside the control directories is fine.
        let out = sandbox(
            caller,
            &["--allow-read", work_dir().to_str().unwrap()],
            &["true"],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{caller:?}: {}",
            text(&out.stderr)
        );
    }
}

/// `opsloop` run as `caller` (through `setpriv` for `nobody`; it execs, so the child's pid
/// is opsloop's).
fn opsloop_as(caller: Caller) -> Command {
    if caller == Caller::Nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_opsloop"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_opsloop"))
    }
}

/// A directory of the work directory any user may create files in (sticky, like /tmp).
fn shared_dir(name: &str) -> PathBuf {
    let dir = work_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// `opsloop heal sandbox -- sleep DURATION` started as `caller` with `scratch_root` as its
/// scratch root; the child's pid is opsloop's (setpriv execs).
fn sleeping_sandbox(caller: Caller, duration: &str, scratch_root: &Path) -> std::process::Child {
    opsloop_as(caller)
        .args(["heal", "sandbox", "--", "sleep", duration])
        .env("TMPDIR", scratch_root)
        .current_dir("/")
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// The processes below `root` (children, grandchildren, ...), from `/proc/*/stat`.
fn descendants_of(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let rest = stat.get(stat.rfind(')')? + 1..)?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut index = 0;
    while let Some(&parent) = found.get(index) {
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        index += 1;
    }
    found.remove(0);
    found
}

#[test]
fn the_helpers_hold_none_of_the_callers_environment() {
    // The command line forks its helpers (no fresh exec): their memory starts as a copy of
    // the caller's. A helper is briefly dumpable while it writes its user namespace maps,
    // so nothing of the caller's environment may stay in it.
    if !is_root() {
        println!("not root: the helpers' environment cannot be read here");
        return;
    }
    for caller in callers() {
        let duration = format!("62.{}{}", std::process::id(), caller as u8);
        let mut command = opsloop_as(caller);
        let mut opsloop = command
            .args(["heal", "sandbox", "--env", "OPSLOOP_IT_PASSED", "--"])
            .args(["sleep", &duration])
            .env("OPSLOOP_IT_CALLER_SECRET", "caller-secret-value")
            .env("OPSLOOP_IT_PASSED", "passed-value")
            .current_dir("/")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let sleeping = || command_sleeping(&duration);
        assert!(
            wait_until(Duration::from_secs(20), sleeping),
            "{caller:?}: the command never started"
        );
        let helpers: Vec<u32> = descendants_of(opsloop.id())
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| !c.starts_with(b"sleep"))
            })
            .collect();
        let mut environments = Vec::new();
        for pid in &helpers {
            if let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) {
                environments.push((*pid, String::from_utf8_lossy(&environ).into_owned()));
            }
        }
        opsloop.kill().unwrap();
        opsloop.wait().unwrap();
        assert_eq!(environments.len(), 2, "{caller:?}: outer and inner helper");
        for (pid, environ) in environments {
            assert!(
                !environ.contains("caller-secret-value"),
                "{caller:?}: helper {pid} holds the caller's environment"
            );
        }
        assert!(wait_until(Duration::from_secs(20), || !sleeping()));
    }
}

#[test]
fn the_agents_path_blocks_escapes_too() {
    // A caller with threads (this test process, like the agent) executes opsloop afresh as
    // the outer helper instead of forking itself: the same layers must hold there.
    use opsloop_sandbox::{Helper, OutputMode, Sandbox, SandboxPolicy};
    let bin = escape();
    let policy = SandboxPolicy::builder()
        .allow_read(bin.parent().unwrap())
        .stdout(OutputMode::Capture { limit: 64 << 10 })
        .stderr(OutputMode::Capture { limit: 64 << 10 })
        .build()
        .unwrap();
    let helper = Helper::new(env!("CARGO_BIN_EXE_opsloop"), ["heal", "sandbox-helper"]);
    let sandbox = Sandbox::new(policy, helper);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    for mode in [
        vec!["read", "/etc/shadow"],
        vec!["read", "/proc/1/environ"],
        vec!["write", "/usr/opsloop-it"],
        vec!["tcp", "127.0.0.1", port.as_str()],
        vec!["mount"],
        vec!["unshare-user"],
        vec!["setuid0"],
        vec!["ptrace-traceme"],
    ] {
        let args: Vec<std::ffi::OsString> = mode.iter().map(Into::into).collect();
        let outcome = sandbox.run(bin.as_os_str(), &args).unwrap();
        let stdout = outcome
            .stdout
            .as_ref()
            .map(|c| String::from_utf8_lossy(&c.bytes).into_owned())
            .unwrap_or_default();
        assert!(
            stdout.contains("BLOCKED") && !stdout.contains("ESCAPED"),
            "{mode:?}: not blocked: {stdout} ({:?})",
            outcome.termination
        );
    }
}
