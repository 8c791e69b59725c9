#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use opsloop_core::time::ManualClock;

use super::*;

/// 2026-12-31T23:55:00Z.
const NEW_YEARS_EVE: i64 = 1_798_761_300_000;

const BAD_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  hostNetwork: true
  containers:
    - name: app
      image: nginx:1.27
";

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("manifests")).unwrap();
        std::fs::write(dir.path().join("manifests/pod.yaml"), BAD_POD).unwrap();
        Fixture {
            dir,
            clock: Arc::new(ManualClock::new(NEW_YEARS_EVE)),
        }
    }

    fn manifests(&self) -> String {
        self.dir.path().join("manifests").display().to_string()
    }

    fn write(&self, text: &str) {
        std::fs::write(self.dir.path().join("manifests/pod.yaml"), text).unwrap();
    }

    fn job(&self) -> AuditJob {
        check(&[json!({"name": "site", "paths": [self.manifests()], "every": "10m"})])
            .unwrap()
            .remove(0)
    }

    fn runner(&self) -> Runner {
        Runner::new(
            vec![self.job()],
            self.dir.path().join("state"),
            "/opsloop/agent/test",
            self.clock.clone(),
        )
    }
}

/// Runs what is due, returning the events.
fn run(runner: &mut Runner) -> Vec<Event> {
    let mut out = Vec::new();
    runner.run_due_blocking(&mut |events| {
        out.extend_from_slice(events);
        Ok(())
    });
    out
}

fn of_check<'a>(events: &'a [Event], kind: &str, check: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.kind == kind && e.data["check"] == check)
        .collect()
}

#[test]
fn check_reads_jobs_with_defaults() {
    let jobs = check(&[json!({"name": "a", "paths": ["k8s/"]})]).unwrap();
    assert_eq!(jobs[0].every, Duration::from_secs(600));
    assert_eq!(jobs[0].min_severity, Severity::Info);
    let jobs = check(&[json!({
        "name": "b", "paths": ["x.yaml"], "every": "1h", "min_severity": "warning",
        "disable": ["host-network"]
    })])
    .unwrap();
    assert_eq!(jobs[0].min_severity, Severity::Warning);
    assert!(jobs[0].options.disabled.contains("host-network"));
}

#[test]
fn check_names_the_job_and_field() {
    let field = |v: Value| check(&[json!({"name": "ok", "paths": ["a"]}), v]).unwrap_err();
    let e = field(json!({"name": "b", "paths": ["a"], "every": "soon"}));
    assert_eq!((e.index, e.field.as_str()), (1, "every"));
    assert!(e.to_string().starts_with("audits[1].every: "), "{e}");
    let e = field(json!({"name": "b", "paths": ["a"], "evry": "1m"}));
    assert_eq!(e.index, 1);
    assert!(e.message.contains("evry"), "{e}");
    let e = field(json!({"name": "b", "paths": ["a"], "disable": ["host-network", "nope"]}));
    assert_eq!(e.field, "disable[1]");
    assert_eq!(field(json!({"name": "ok", "paths": ["a"]})).field, "name");
    assert_eq!(field(json!({"name": "../x", "paths": ["a"]})).field, "name");
    assert_eq!(field(json!({"name": "b", "paths": []})).field, "paths");
    assert_eq!(
        field(json!({"name": "b", "paths": ["-"]})).field,
        "paths[0]"
    );
    assert_eq!(
        field(json!({"name": "b", "paths": ["a"], "every": "10ms"})).field,
        "every"
    );
    assert_eq!(
        field(json!({"name": "b", "paths": ["a"], "min_severity": "fatal"})).field,
        "min_severity"
    );
}

#[test]
fn a_new_finding_is_reported_once_and_resolved_once() {
    let f = Fixture::new();
    let mut runner = f.runner();
    let first = run(&mut runner);
    let host = of_check(&first, FINDING, "host-network");
    assert_eq!(host.len(), 1, "{first:#?}");
    assert_eq!(host[0].data["object"]["name"], "web");
    assert_eq!(host[0].data["field"], "spec.hostNetwork");
    assert_eq!(host[0].source, "/opsloop/agent/test/audit");
    assert!(first.iter().all(|e| e.kind == FINDING));

    // Not due before its time; then due, and nothing new.
    f.clock.advance(Duration::from_secs(60));
    assert!(runner.due().is_empty());
    f.clock.advance(Duration::from_secs(600));
    assert!(run(&mut runner).is_empty());

    f.write(&BAD_POD.replace("  hostNetwork: true\n", ""));
    runner.changed(&f.dir.path().join("manifests/pod.yaml"));
    f.clock.advance(DEFAULT_DEBOUNCE);
    let fixed = run(&mut runner);
    assert_eq!(fixed.len(), 1, "{fixed:#?}");
    let resolved = of_check(&fixed, RESOLVED, "host-network");
    assert_eq!(resolved.len(), 1);
    // A consumer pairs the resolution with its finding.
    assert_eq!(resolved[0].fingerprint, host[0].fingerprint);
    f.clock.advance(Duration::from_secs(600));
    assert!(run(&mut runner).is_empty());
}

#[test]
fn an_edit_above_a_finding_does_not_report_it_again() {
    let f = Fixture::new();
    let mut runner = f.runner();
    assert!(!run(&mut runner).is_empty());
    let line_before = runner.view().list(&BTreeMap::new())["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "host-network")
        .unwrap()["line"]
        .as_u64()
        .unwrap();
    f.write(&format!(
        "# owned by the web team\n# see the runbook\n\n{BAD_POD}"
    ));
    f.clock.advance(Duration::from_secs(601));
    assert!(run(&mut runner).is_empty());
    let view = runner.view().list(&BTreeMap::new());
    let moved = view["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "host-network")
        .unwrap();
    assert_eq!(moved["line"].as_u64().unwrap(), line_before + 3);
}

#[test]
fn a_restart_does_not_report_open_findings_again() {
    let f = Fixture::new();
    let first = run(&mut f.runner());
    assert!(!first.is_empty());
    let mut again = f.runner();
    assert!(run(&mut again).is_empty());
    let view = again.view().list(&BTreeMap::new());
    assert_eq!(view["findings"].as_array().unwrap().len(), first.len());
    // What was first seen before the restart keeps its time.
    assert_eq!(
        view["findings"][0]["first_seen"],
        "2026-12-31T23:55:00.000Z"
    );
}

#[test]
fn corrupt_state_is_reported_and_ignored() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.dir.path().join("state")).unwrap();
    std::fs::write(f.dir.path().join("state/site.json"), "{not json").unwrap();
    let mut runner = f.runner();
    let status = &runner.view().statuses()[0];
    assert_eq!(status.errors, 1);
    assert!(status.last_error.as_deref().unwrap().contains("unreadable"));
    let events = run(&mut runner);
    assert_eq!(of_check(&events, FINDING, "host-network").len(), 1);
    // The state is good again: a restart reports nothing.
    assert!(run(&mut f.runner()).is_empty());
}

#[test]
fn a_failed_publish_is_counted_and_retried() {
    let f = Fixture::new();
    let mut runner = f.runner();
    let ran = runner.run_due_blocking(&mut |_| Err("bus down".into()));
    assert_eq!(ran, 1);
    let status = &runner.view().statuses()[0];
    assert_eq!((status.errors, status.runs), (1, 0));
    assert!(status.last_error.as_deref().unwrap().contains("bus down"));
    assert!(runner.due().is_empty());
    f.clock.advance(Duration::from_millis(RETRY_MS as u64));
    // Retried with the same events: nothing was lost.
    assert_eq!(
        of_check(&run(&mut runner), FINDING, "host-network").len(),
        1
    );
    assert_eq!(runner.view().statuses()[0].runs, 1);
}

#[test]
fn schedule_holds_across_new_year_and_long_uptime() {
    let f = Fixture::new();
    let mut runner = f.runner();
    assert!(!run(&mut runner).is_empty());
    // 23:59: not yet. 00:05 on New Year's Day: due, nothing re-fires.
    f.clock.advance(Duration::from_secs(4 * 60));
    assert!(runner.due().is_empty());
    f.clock.advance(Duration::from_secs(6 * 60));
    assert_eq!(runner.due(), vec!["site".to_string()]);
    assert!(run(&mut runner).is_empty());
    // A long gap runs once, not once per missed period.
    f.clock.advance(Duration::from_secs(400 * 86_400));
    assert_eq!(run(&mut runner).len(), 0);
    assert!(runner.due().is_empty());
    assert_eq!(runner.view().statuses()[0].runs, 3);
    let view = runner.view().list(&BTreeMap::new());
    assert_eq!(
        view["findings"][0]["first_seen"],
        "2026-12-31T23:55:00.000Z"
    );
    assert!(
        view["findings"][0]["last_seen"]
            .as_str()
            .unwrap()
            .starts_with("2028-02-")
    );
    // A wall clock stepped back runs the job again rather than waiting out the gap.
    f.clock.set(NEW_YEARS_EVE);
    assert_eq!(runner.due().len(), 1);
    // Far in the future, the schedule saturates instead of wrapping.
    f.clock.set(i64::MAX - 1);
    assert!(run(&mut runner).is_empty());
    assert!(runner.due().is_empty());
}

#[test]
fn findings_below_the_job_severity_are_not_reported() {
    let f = Fixture::new();
    let mut job = f.job();
    job.min_severity = Severity::Error;
    let mut runner = Runner::new(vec![job], f.dir.path().join("state"), "/s", f.clock.clone());
    let events = run(&mut runner);
    assert!(
        events.iter().all(|e| e.data["severity"] == "error"),
        "{events:#?}"
    );
}

#[test]
fn reload_keeps_state_and_runs_changed_jobs() {
    let f = Fixture::new();
    let mut runner = f.runner();
    let first = run(&mut runner);
    runner.set_jobs(vec![f.job()]);
    assert!(
        runner.due().is_empty(),
        "an unchanged job keeps its schedule"
    );
    let mut job = f.job();
    job.options.disabled.insert("host-network");
    runner.set_jobs(vec![job]);
    assert_eq!(runner.due().len(), 1);
    let events = run(&mut runner);
    assert_eq!(events.len(), 1);
    assert_eq!(of_check(&events, RESOLVED, "host-network").len(), 1);
    assert!(first.len() > 1);
}

#[test]
fn findings_of_an_unparsable_file_stay_open() {
    let f = Fixture::new();
    let mut runner = f.runner();
    run(&mut runner);
    f.write("apiVersion: v1\nkind: Pod\nmetadata:\n\tname: web\n");
    f.clock.advance(Duration::from_secs(601));
    assert!(run(&mut runner).is_empty());
    let status = &runner.view().statuses()[0];
    assert_eq!(status.input_errors_total, 1);
    assert!(status.input_errors[0].contains("pod.yaml:4"), "{status:?}");
}

#[test]
fn view_filters_by_severity_and_check() {
    let f = Fixture::new();
    let mut runner = f.runner();
    run(&mut runner);
    let view = runner.view();
    let query = |pairs: &[(&str, &str)]| {
        view.list(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    let all = query(&[]);
    let all = all["findings"].as_array().unwrap();
    assert!(all.len() > 1);
    let host = query(&[("check", "host-network")]);
    assert_eq!(host["findings"].as_array().unwrap().len(), 1);
    assert_eq!(host["jobs"][0]["name"], "site");
    let severity = all[0]["severity"].as_str().unwrap();
    let same = query(&[("severity", severity)]);
    assert!(
        same["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["severity"] == severity)
    );
    assert!(query(&[("severity", "fatal")])["error"].is_string());
    assert!(
        query(&[("job", "other")])["findings"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn diff_caps_open_findings_and_counts_the_rest() {
    let f = Fixture::new();
    let sources = source::collect(&[f.manifests()], &mut std::io::empty());
    let report = crate::audit(&sources, &Options::default());
    assert!(report.findings.len() > 2);
    let mut previous = BTreeMap::new();
    let first = diff_capped(&f.job(), &report, &previous, 1, "/s", 2);
    assert_eq!(first.open.len(), 2);
    assert_eq!(first.over_cap as usize, report.findings.len() - 2);
    assert_eq!(first.events.len(), 2);
    previous = first.open;
    let again = diff_capped(&f.job(), &report, &previous, 2, "/s", 2);
    assert!(again.events.is_empty(), "a full job keeps what it has");
}

/// Events in, fixed file, resolution out: through the watcher, waiting on conditions.
#[test]
fn drive_runs_on_file_changes() {
    let f = Fixture::new();
    // An hour's schedule: only the change can make it run again within the test.
    let mut job = f.job();
    job.every = Duration::from_secs(3600);
    let runner = Runner::new(vec![job], f.dir.path().join("state"), "/s", f.clock.clone())
        .with_debounce(Duration::ZERO);
    let view = runner.view();
    let sink = Arc::new(Collect::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (_jobs_tx, jobs_rx) = tokio::sync::watch::channel(Vec::new());
    let stop = Arc::new(tokio::sync::Notify::new());
    let driver = runtime.spawn({
        let sink: Arc<dyn EventSink> = sink.clone();
        let stop = Arc::clone(&stop);
        drive(
            runner,
            sink,
            jobs_rx,
            DriveOptions {
                tick: Duration::from_millis(20),
                watch: true,
            },
            async move { stop.notified().await },
        )
    });
    wait_until("the first run", || view.statuses()[0].runs == 1);
    assert_eq!(sink.count(FINDING, "host-network"), 1);
    f.write(&BAD_POD.replace("  hostNetwork: true\n", ""));
    wait_until("the resolution", || {
        sink.count(RESOLVED, "host-network") == 1
    });
    stop.notify_one();
    runtime.block_on(driver).unwrap();
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl Collect {
    fn count(&self, kind: &str, check: &str) -> usize {
        of_check(&self.0.lock().unwrap(), kind, check).len()
    }
}

impl EventSink for Collect {
    fn publish(
        &self,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        self.0.lock().unwrap().extend(events);
        Box::pin(async { Ok(()) })
    }
}

#[test]
fn the_data_dir_inside_the_paths_is_neither_audited_nor_a_change() {
    let f = Fixture::new();
    let data = f.dir.path().join("manifests/data");
    std::fs::create_dir_all(&data).unwrap();
    // A manifest-looking file of the agent's own (a cache, a state file of an old layout).
    std::fs::write(data.join("cache.yaml"), BAD_POD).unwrap();
    let mut runner = Runner::new(
        vec![f.job()],
        data.join("audit"),
        "/opsloop/agent/test",
        f.clock.clone(),
    )
    .ignoring(&data)
    .with_debounce(Duration::from_secs(1));
    let first = run(&mut runner);
    assert_eq!(of_check(&first, FINDING, "host-network").len(), 1);
    assert!(data.join("audit/site.json").is_file());
    assert!(
        first
            .iter()
            .all(|e| !e.data["file"].as_str().unwrap().contains("/data/")),
        "{first:?}"
    );
    // The agent's own writes: the state file, its temporary file, the database.
    runner.changed(&data.join("audit/site.json"));
    runner.changed(&data.join("audit/site.json.tmp"));
    runner.changed(&data.join("events.db-wal"));
    f.clock.advance(Duration::from_secs(2));
    assert!(runner.due().is_empty(), "its own writes do not run the job");
    // A real change still does.
    runner.changed(&f.dir.path().join("manifests/pod.yaml"));
    f.clock.advance(Duration::from_secs(2));
    assert_eq!(runner.due(), vec!["site".to_string()]);
    assert!(run(&mut runner).is_empty(), "its state file is no manifest");
    let status = &runner.view().statuses()[0];
    assert_eq!(status.input_errors_total, 0, "{status:?}");
}

#[test]
fn the_state_dir_is_ignored_without_being_told() {
    let f = Fixture::new();
    let state = f.dir.path().join("manifests/state");
    let mut runner = Runner::new(vec![f.job()], &state, "/s", f.clock.clone())
        .with_debounce(Duration::from_secs(1));
    run(&mut runner);
    runner.changed(&state.join("site.json"));
    f.clock.advance(Duration::from_secs(2));
    assert!(runner.due().is_empty());
    f.clock.advance(Duration::from_secs(601));
    assert!(run(&mut runner).is_empty());
}

#[test]
fn findings_under_a_missing_root_stay_open() {
    let f = Fixture::new();
    let mut runner = f.runner();
    let first = run(&mut runner);
    let manifests = f.dir.path().join("manifests");
    let moved = f.dir.path().join("moved");
    std::fs::rename(&manifests, &moved).unwrap();
    f.clock.advance(Duration::from_secs(601));
    assert!(run(&mut runner).is_empty(), "nothing is known to be fixed");
    let status = &runner.view().statuses()[0];
    assert_eq!(status.input_errors_total, 1, "{status:?}");
    assert_eq!(status.open_findings, first.len());
    std::fs::rename(&moved, &manifests).unwrap();
    f.clock.advance(Duration::from_secs(601));
    assert!(run(&mut runner).is_empty(), "nothing is reported again");
}

#[test]
fn diff_keeps_findings_under_an_unreadable_directory() {
    let f = Fixture::new();
    let sources = source::collect(&[f.manifests()], &mut std::io::empty());
    let report = crate::audit(&sources, &Options::default());
    let first = diff(&f.job(), &report, &BTreeMap::new(), 1, "/s");
    // The directory itself unreadable this time: one error naming it, no findings.
    let unreadable = source::Source {
        name: f.manifests(),
        bytes: Err("permission denied".into()),
        names_only: false,
    };
    let report = crate::audit(&[unreadable], &Options::default());
    assert_eq!(report.errors.len(), 1);
    let again = diff(&f.job(), &report, &first.open, 2, "/s");
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert_eq!(again.open, first.open);
    // A sibling whose name only starts the same is not under it.
    let mut job = f.job();
    job.name = "other".into();
    let sibling = source::Source {
        name: format!("{}-old", f.manifests()),
        bytes: Err("gone".into()),
        names_only: false,
    };
    let report = crate::audit(&[sibling], &Options::default());
    let resolved = diff(&job, &report, &first.open, 3, "/s");
    assert_eq!(resolved.events.len(), first.open.len());
}

#[test]
fn a_removed_job_resolves_its_findings_and_forgets_its_state() {
    let f = Fixture::new();
    let mut runner = f.runner();
    let first = run(&mut runner);
    let state = f.dir.path().join("state/site.json");
    assert!(state.is_file());
    // Removed and back before anything ran: nothing happened.
    runner.set_jobs(Vec::new());
    runner.set_jobs(vec![f.job()]);
    assert!(run(&mut runner).is_empty());
    // Renamed: the old name's findings resolve, the new one's are new.
    let mut renamed = f.job();
    renamed.name = "shop".into();
    runner.set_jobs(vec![renamed]);
    // The bus refuses first: retried later, the state file kept.
    let mut refused = 0;
    runner.run_due_blocking(&mut |events| {
        if events.iter().any(|e| e.kind == RESOLVED) {
            refused += 1;
            return Err("bus down".into());
        }
        Ok(())
    });
    assert_eq!(refused, 1);
    assert!(state.is_file());
    f.clock.advance(Duration::from_secs(61));
    let events = run(&mut runner);
    let resolved: Vec<_> = events.iter().filter(|e| e.kind == RESOLVED).collect();
    assert_eq!(resolved.len(), first.len());
    assert!(
        resolved
            .iter()
            .all(|e| e.data["job"] == "site" && e.data["reason"] == "job_removed")
    );
    let paired: BTreeSet<_> = first.iter().map(|e| &e.fingerprint).collect();
    assert!(resolved.iter().all(|e| paired.contains(&e.fingerprint)));
    assert!(!state.is_file(), "its state file is deleted");
    f.clock.advance(Duration::from_secs(601));
    assert!(run(&mut runner).is_empty(), "resolved once only");
}

#[test]
fn two_jobs_over_one_file_have_their_own_fingerprints() {
    let f = Fixture::new();
    let jobs = check(&[
        json!({"name": "a", "paths": [f.manifests()]}),
        json!({"name": "b", "paths": [f.manifests()]}),
    ])
    .unwrap();
    let mut runner = Runner::new(jobs, f.dir.path().join("state"), "/s", f.clock.clone());
    let events = run(&mut runner);
    let host = of_check(&events, FINDING, "host-network");
    assert_eq!(host.len(), 2);
    assert_ne!(host[0].fingerprint, host[1].fingerprint);
}

#[test]
fn view_lists_at_most_limit_findings_and_counts_the_rest() {
    let f = Fixture::new();
    let mut runner = f.runner();
    let all = run(&mut runner).len();
    assert!(all > 1);
    let view = runner.view();
    let query = |limit: Option<&str>| {
        let mut q = BTreeMap::new();
        if let Some(limit) = limit {
            q.insert("limit".to_string(), limit.to_string());
        }
        view.list(&q)
    };
    let default = query(None);
    assert_eq!(default["findings"].as_array().unwrap().len(), all);
    assert_eq!(default["omitted"], 0);
    let one = query(Some("1"));
    assert_eq!(one["findings"].as_array().unwrap().len(), 1);
    assert_eq!(one["omitted"], all - 1);
    assert!(query(Some("10001"))["error"].is_string());
    assert!(query(Some("many"))["error"].is_string());
    assert_eq!(
        query(Some("10000"))["findings"].as_array().unwrap().len(),
        all
    );
}

/// A job removed by a reload on the agent: its findings resolve, its state file goes.
#[test]
fn drive_resolves_the_findings_of_a_removed_job() {
    let f = Fixture::new();
    let runner = Runner::new(
        vec![f.job()],
        f.dir.path().join("state"),
        "/s",
        f.clock.clone(),
    );
    let view = runner.view();
    let sink = Arc::new(Collect::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (jobs_tx, jobs_rx) = tokio::sync::watch::channel(vec![f.job()]);
    let stop = Arc::new(tokio::sync::Notify::new());
    let driver = runtime.spawn({
        let sink: Arc<dyn EventSink> = sink.clone();
        let stop = Arc::clone(&stop);
        drive(
            runner,
            sink,
            jobs_rx,
            DriveOptions {
                tick: Duration::from_millis(20),
                watch: true,
            },
            async move { stop.notified().await },
        )
    });
    wait_until("the first run", || view.statuses()[0].runs == 1);
    let state = f.dir.path().join("state/site.json");
    // The status counts the run before the state file is written off the runner's lock.
    wait_until("the state file written", || state.is_file());
    jobs_tx.send_replace(Vec::new());
    wait_until("the resolution", || {
        sink.count(RESOLVED, "host-network") == 1
    });
    wait_until("the state file gone", || !state.exists());
    assert!(view.statuses().is_empty());
    stop.notify_one();
    runtime.block_on(driver).unwrap();
}
