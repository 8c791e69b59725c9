//! The audit as a job of the agent (`audits:` in its configuration): each job audits its
//! paths at start, every `every` and shortly after a file under them changes, and reports
//! the difference with its previous run as events: `io.opsloop.audit.finding` once per new
//! finding, `io.opsloop.audit.resolved` once it is gone.
//!
//! This module owns the job configuration ([`check`]), the findings each job has open (keyed
//! by [`finding_key`], persisted per job under a state directory so a restart does not
//! re-emit them), the schedule ([`Runner`], on an injected [`Clock`]), the read-only
//! [`View`] the API shows, and the async [`drive`] loop that watches the files and hands
//! events to an [`EventSink`]. A failing run (a publish refused, a state file not written)
//! is counted, shown in the view and retried later; nothing here panics or stops the agent.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opsloop_core::config::ConfigDuration;
use opsloop_core::event::Event;
use opsloop_core::time::{Clock, format_rfc3339};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Finding, Options, Report, Severity, catalog, source};

/// Type of the event of a new finding.
pub const FINDING: &str = "io.opsloop.audit.finding";
/// Type of the event of a finding that went away.
pub const RESOLVED: &str = "io.opsloop.audit.resolved";
/// How often a job runs when `every` is not given.
pub const DEFAULT_EVERY: ConfigDuration = ConfigDuration::minutes(10);
/// Open findings kept per job; more are counted (`over_cap`), not tracked.
pub const MAX_FINDINGS_PER_JOB: usize = 10_000;
/// How long after a file change a job waits for more changes before it runs (editors and
/// `git checkout` write many files in a burst).
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(500);
/// How soon a failed run is tried again (sooner than `every` when that is longer).
const RETRY_MS: i64 = 60_000;
/// Input problems of the last run shown per job.
const MAX_INPUT_ERRORS_SHOWN: usize = 20;
/// Changed paths remembered between two wake-ups; beyond that every job is marked changed.
const MAX_PENDING_CHANGES: usize = 1024;
/// The shortest `every`: a shorter one would audit continuously.
const MIN_EVERY: Duration = Duration::from_secs(1);
/// Findings [`View::list`] shows when the query gives no `limit`.
pub const DEFAULT_LIST_LIMIT: usize = 1000;
/// The largest `limit` [`View::list`] accepts.
pub const MAX_LIST_LIMIT: usize = 10_000;
/// Version of the state file layout.
const STATE_VERSION: u32 = 1;

/// A job as written in `audits:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobConfig {
    name: String,
    paths: Vec<String>,
    #[serde(default = "default_every")]
    every: ConfigDuration,
    #[serde(default = "default_min_severity")]
    min_severity: Severity,
    #[serde(default)]
    disable: Vec<String>,
}

fn default_every() -> ConfigDuration {
    DEFAULT_EVERY
}

fn default_min_severity() -> Severity {
    Severity::Info
}

/// Why `audits:` was refused: the job's index and field, and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("audits[{index}].{field}: {message}")]
pub struct JobError {
    /// Index of the job in `audits:`.
    pub index: usize,
    /// The field (`name`, `every`, `disable[1]`, …).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// One checked audit job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditJob {
    /// Unique name: `[A-Za-z0-9][A-Za-z0-9_.-]*` (it names the state file).
    pub name: String,
    /// Files and directories audited together (directories searched recursively).
    pub paths: Vec<String>,
    /// How often it runs.
    pub every: Duration,
    /// The least severity reported.
    pub min_severity: Severity,
    /// The checks run.
    pub options: Options,
}

/// Checks the configuration's `audits:`; the first problem is the error, naming the job's
/// index and field.
pub fn check(values: &[Value]) -> Result<Vec<AuditJob>, JobError> {
    let mut jobs: Vec<AuditJob> = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let invalid = |field: &str, message: String| JobError {
            index,
            field: field.to_string(),
            message,
        };
        let config: JobConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "name" } else { path.as_str() };
            let field = field.to_string();
            invalid(&field, e.into_inner().to_string())
        })?;
        if !valid_name(&config.name) {
            return Err(invalid(
                "name",
                format!(
                    "{:?}: use letters, digits, `_`, `.` and `-`, starting with a letter or digit",
                    config.name
                ),
            ));
        }
        if jobs.iter().any(|j| j.name == config.name) {
            return Err(invalid(
                "name",
                format!("{:?} is used by another job", config.name),
            ));
        }
        if config.paths.is_empty() {
            return Err(invalid("paths", "at least one path is required".into()));
        }
        for (i, path) in config.paths.iter().enumerate() {
            if path.trim().is_empty() || path == "-" {
                return Err(invalid(
                    &format!("paths[{i}]"),
                    format!("{path:?} is no file or directory"),
                ));
            }
        }
        if config.every.get() < MIN_EVERY {
            return Err(invalid(
                "every",
                format!("{} is shorter than 1s", config.every),
            ));
        }
        let mut options = Options::default();
        for (i, id) in config.disable.iter().enumerate() {
            let Some(known) = catalog::find(id) else {
                return Err(invalid(
                    &format!("disable[{i}]"),
                    format!("`{id}` is no check id (see `opsloop audit --list-checks`)"),
                ));
            };
            options.disabled.insert(known.id);
        }
        jobs.push(AuditJob {
            name: config.name,
            paths: config.paths,
            every: config.every.get(),
            min_severity: config.min_severity,
            options,
        });
    }
    Ok(jobs)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128
}

/// The object of an open finding.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FindingObject {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A finding a job has open.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OpenFinding {
    /// Its identity across runs ([`finding_key`]).
    pub key: String,
    /// The check's id.
    pub check: String,
    /// Its severity.
    pub severity: Severity,
    /// The input file (or `cluster://` location).
    pub file: String,
    /// Line in the last run that saw it.
    pub line: u32,
    /// The field's path in the object (empty: the object itself).
    #[serde(default)]
    pub field: String,
    /// The object.
    pub object: FindingObject,
    /// The container, for container-level findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// What is wrong, as the last run said it.
    pub message: String,
    /// When a run first reported it (Unix ms).
    pub first_seen_ms: i64,
    /// When a run last reported it (Unix ms).
    pub last_seen_ms: i64,
}

/// What makes two findings of two runs the same finding: check, file, object, container and
/// field, never the line (an edit above it moves it) nor the message (it quotes values).
pub fn finding_key(finding: &Finding) -> String {
    let object = &finding.object;
    format!(
        "{}\u{1f}{}\u{1f}{}/{}/{}/{}\u{1f}{}\u{1f}{}",
        finding.check,
        finding.file,
        object.api_version.rsplit_once('/').map_or("", |(g, _)| g),
        object.kind,
        object.namespace.as_deref().unwrap_or(""),
        object.name,
        finding.container.as_deref().unwrap_or(""),
        finding.field,
    )
}

impl OpenFinding {
    fn of(finding: &Finding, key: String, now: i64) -> OpenFinding {
        OpenFinding {
            key,
            check: finding.check.to_string(),
            severity: finding.severity,
            file: finding.file.clone(),
            line: finding.line,
            field: finding.field.clone(),
            object: FindingObject {
                api_version: finding.object.api_version.clone(),
                kind: finding.object.kind.clone(),
                name: finding.object.name.clone(),
                namespace: finding.object.namespace.clone(),
            },
            container: finding.container.clone(),
            message: finding.message.clone(),
            first_seen_ms: now,
            last_seen_ms: now,
        }
    }

    /// The finding as the API and the events show it.
    pub fn to_json(&self, job: &str) -> Value {
        let check = catalog::find(&self.check);
        json!({
            "job": job,
            "check": self.check,
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "object": self.object,
            "container": self.container,
            "message": self.message,
            "why": check.map(|c| c.why),
            "fix": check.map(|c| c.fix),
            "first_seen": format_rfc3339(self.first_seen_ms),
            "last_seen": format_rfc3339(self.last_seen_ms),
        })
    }

    /// The event announcing it (`kind` [`FINDING`] or [`RESOLVED`]). Both kinds share one
    /// fingerprint, so that a consumer pairs a resolution with its finding; the job is part
    /// of it, since two jobs over one file report the same finding independently.
    fn event(&self, kind: &str, job: &str, source: &str, now: i64) -> Event {
        let mut data = self.to_json(job);
        if let Some(map) = data.as_object_mut() {
            map.insert("key".into(), Value::from(self.key.clone()));
        }
        let mut event = Event::new(FINDING, source, Some(&self.file), now, data)
            .with_fingerprint_key(&format!("{job}\u{1f}{}", self.key));
        event.kind = kind.to_string();
        event
    }
}

/// A job's counters and last outcome, as the view shows them.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct JobStatus {
    /// The job.
    pub name: String,
    /// Runs that completed.
    pub runs: u64,
    /// Failures: runs not completed (publish refused, audit task lost), state not written
    /// or unreadable.
    pub errors: u64,
    /// The last failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the last run completed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// Findings open now.
    pub open_findings: usize,
    /// Findings of the last run not tracked because the job holds
    /// [`MAX_FINDINGS_PER_JOB`] already.
    pub over_cap: u64,
    /// Inputs of the last run that could not be read or parsed (the first few): their
    /// findings stay open as they were.
    pub input_errors: Vec<String>,
    /// Input problems of the last run in all.
    pub input_errors_total: usize,
}

/// The state file of one job.
#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    job: String,
    findings: Vec<OpenFinding>,
}

/// One job while it runs: its spec, open findings and schedule.
struct JobRun {
    spec: AuditJob,
    open: BTreeMap<String, OpenFinding>,
    /// Runs when the clock reaches this (Unix ms).
    next_due_ms: i64,
    /// When a run last started, to notice a clock stepped back.
    last_attempt_ms: Option<i64>,
    /// When a file under its paths changed first since its last run.
    changed_ms: Option<i64>,
    status: JobStatus,
}

/// What one run found, before it is published: apply it with [`Runner::commit`] once its
/// events are out, or drop it with [`Runner::fail`].
#[derive(Debug)]
pub struct Pending {
    /// The job.
    pub job: String,
    /// The events to publish, findings first, each group in key order.
    pub events: Vec<Event>,
    open: BTreeMap<String, OpenFinding>,
    over_cap: u64,
    input_errors: Vec<String>,
    input_errors_total: usize,
    now_ms: i64,
}

/// A run to do: audit it off the async workers with [`Prepared::audit`].
pub struct Prepared {
    spec: AuditJob,
    previous: BTreeMap<String, OpenFinding>,
    source: String,
    now_ms: i64,
    ignored: Vec<PathBuf>,
}

impl Prepared {
    /// Reads the job's paths, audits them and compares with its open findings (blocking:
    /// it reads files and uses every core).
    pub fn audit(self) -> Pending {
        let mut sources = source::collect(&self.spec.paths, &mut std::io::empty());
        // The agent's own files (state, database) are no manifests of the job.
        sources.retain(|s| !is_ignored(&self.ignored, Path::new(&s.name)));
        let report = crate::audit(&sources, &self.spec.options);
        diff(
            &self.spec,
            &report,
            &self.previous,
            self.now_ms,
            &self.source,
        )
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.spec.name
    }
}

/// Compares a run's report with the job's open findings: new ones become finding events,
/// vanished ones resolved events. Findings of a file that could not be read or parsed this
/// time stay open (the file is not known to be fixed).
pub fn diff(
    job: &AuditJob,
    report: &Report,
    previous: &BTreeMap<String, OpenFinding>,
    now: i64,
    source: &str,
) -> Pending {
    diff_capped(job, report, previous, now, source, MAX_FINDINGS_PER_JOB)
}

/// [`diff`] keeping at most `cap` open findings.
fn diff_capped(
    job: &AuditJob,
    report: &Report,
    previous: &BTreeMap<String, OpenFinding>,
    now: i64,
    source: &str,
    cap: usize,
) -> Pending {
    // An error names a file, or a root path or directory that could not be read: every
    // finding under it is unknown this time, not fixed.
    let unreadable: BTreeSet<&str> = report.errors.iter().map(|e| e.file.as_str()).collect();
    let under_unreadable = |file: &str| {
        unreadable
            .iter()
            .any(|errored| *errored == file || Path::new(file).starts_with(errored))
    };
    let reported: Vec<(String, &Finding)> = report
        .findings
        .iter()
        .filter(|f| f.severity >= job.min_severity)
        .map(|f| (finding_key(f), f))
        .collect();
    let mut open: BTreeMap<String, OpenFinding> = BTreeMap::new();
    // Known findings first, so that a full job keeps what it has and drops only new ones.
    for (key, finding) in &reported {
        if let Some(old) = previous.get(key)
            && !open.contains_key(key)
        {
            let mut kept = OpenFinding::of(finding, key.clone(), now);
            kept.first_seen_ms = old.first_seen_ms;
            open.insert(key.clone(), kept);
        }
    }
    for old in previous.values() {
        if !open.contains_key(&old.key) && under_unreadable(&old.file) && open.len() < cap {
            open.insert(old.key.clone(), old.clone());
        }
    }
    let mut new = Vec::new();
    let mut over_cap = 0u64;
    for (key, finding) in reported {
        if open.contains_key(&key) {
            continue;
        }
        if open.len() >= cap {
            over_cap += 1;
            continue;
        }
        let record = OpenFinding::of(finding, key.clone(), now);
        new.push(record.event(FINDING, &job.name, source, now));
        open.insert(key, record);
    }
    let resolved = previous
        .values()
        .filter(|old| !open.contains_key(&old.key))
        .map(|old| old.event(RESOLVED, &job.name, source, now));
    new.extend(resolved);
    let input_errors = report
        .errors
        .iter()
        .take(MAX_INPUT_ERRORS_SHOWN)
        .map(|e| match e.line {
            0 => format!("{}: {}", e.file, e.message),
            line => format!("{}:{line}: {}", e.file, e.message),
        })
        .collect();
    Pending {
        job: job.name.clone(),
        events: new,
        open,
        over_cap,
        input_errors,
        input_errors_total: report.errors.len(),
        now_ms: now,
    }
}

/// What the API shows: every job's open findings and status. Cheap to clone; the
/// [`Runner`] updates it after every run.
#[derive(Clone, Default)]
pub struct View(Arc<Mutex<Shown>>);

/// Per job: its status and open findings.
type Shown = BTreeMap<String, (JobStatus, Vec<OpenFinding>)>;

impl View {
    /// `{"findings": [...], "jobs": [...], "omitted": n}`: open findings (filtered by the
    /// query's `severity`, `check` and `job`, each an exact match) by job, file and line,
    /// the first `limit` of them ([`DEFAULT_LIST_LIMIT`], at most [`MAX_LIST_LIMIT`]);
    /// `omitted` counts the matching ones left out; and every job's status.
    pub fn list(&self, query: &BTreeMap<String, String>) -> Value {
        let severity = match query.get("severity").map(|s| parse_severity(s)) {
            Some(Err(e)) => return json!({ "findings": [], "jobs": [], "error": e }),
            Some(Ok(s)) => Some(s),
            None => None,
        };
        let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
            None => DEFAULT_LIST_LIMIT,
            Some(Ok(n)) if n <= MAX_LIST_LIMIT => n,
            Some(_) => {
                let e = format!("limit: expected a number from 0 to {MAX_LIST_LIMIT}");
                return json!({ "findings": [], "jobs": [], "error": e });
            }
        };
        let check = query.get("check");
        let job = query.get("job");
        let Ok(jobs) = self.0.lock() else {
            return json!({ "findings": [], "jobs": [], "error": "view unavailable" });
        };
        let mut findings: Vec<(&str, &OpenFinding)> = jobs
            .iter()
            .filter(|(name, _)| job.is_none_or(|j| j == *name))
            .flat_map(|(name, (_, open))| open.iter().map(move |f| (name.as_str(), f)))
            .filter(|(_, f)| severity.is_none_or(|s| f.severity == s))
            .filter(|(_, f)| check.is_none_or(|c| *c == f.check))
            .collect();
        findings.sort_by(|(ja, a), (jb, b)| {
            (ja, &a.file, a.line, &a.key).cmp(&(jb, &b.file, b.line, &b.key))
        });
        let omitted = findings.len().saturating_sub(limit);
        json!({
            "findings": findings.iter().take(limit).map(|(job, f)| f.to_json(job)).collect::<Vec<_>>(),
            "omitted": omitted,
            "jobs": jobs.values().map(|(status, _)| status).collect::<Vec<_>>(),
        })
    }

    /// Every job's status.
    pub fn statuses(&self) -> Vec<JobStatus> {
        self.0
            .lock()
            .map(|jobs| jobs.values().map(|(s, _)| s.clone()).collect())
            .unwrap_or_default()
    }

    fn set(&self, runs: &[JobRun]) {
        if let Ok(mut jobs) = self.0.lock() {
            *jobs = runs
                .iter()
                .map(|run| {
                    let mut status = run.status.clone();
                    status.open_findings = run.open.len();
                    (
                        run.spec.name.clone(),
                        (status, run.open.values().cloned().collect()),
                    )
                })
                .collect();
        }
    }
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    match text {
        "info" => Ok(Severity::Info),
        "warning" => Ok(Severity::Warning),
        "error" => Ok(Severity::Error),
        other => Err(format!(
            "severity {other:?}: expected info, warning or error"
        )),
    }
}

/// The jobs' schedules and open findings. Synchronous: [`drive`] runs it on the agent, and
/// tests step it with a [`opsloop_core::time::ManualClock`].
pub struct Runner {
    jobs: Vec<JobRun>,
    /// Jobs removed by a reload whose open findings are still to be resolved; their
    /// `next_due_ms` is when to try (again).
    retired: Vec<JobRun>,
    /// Directories of the agent's own files: neither audited nor a change.
    ignored: Vec<PathBuf>,
    state_dir: PathBuf,
    source: String,
    clock: Arc<dyn Clock>,
    debounce_ms: i64,
    view: View,
}

impl Runner {
    /// Jobs whose state lives in `state_dir` (created when first written), their events
    /// from `event_source` (`/opsloop/agent/HOST`), their time from `clock`. Every job is
    /// due at once. A state file that cannot be read is counted as an error of its job and
    /// ignored.
    pub fn new(
        jobs: Vec<AuditJob>,
        state_dir: impl Into<PathBuf>,
        event_source: &str,
        clock: Arc<dyn Clock>,
    ) -> Runner {
        let state_dir = state_dir.into();
        let mut runner = Runner {
            jobs: Vec::new(),
            retired: Vec::new(),
            ignored: vec![state_dir.clone()],
            state_dir,
            source: format!("{event_source}/audit"),
            clock,
            debounce_ms: duration_ms(DEFAULT_DEBOUNCE),
            view: View::default(),
        };
        runner.set_jobs(jobs);
        runner
    }

    /// Shows the runner through `view` (one the API already holds).
    pub fn with_view(mut self, view: View) -> Runner {
        self.view = view;
        self.view.set(&self.jobs);
        self
    }

    /// Neither audits nor watches what lies under `dir` (the agent's data directory, which
    /// the default `paths: ["."]` includes). The state directory is always ignored.
    pub fn ignoring(mut self, dir: impl Into<PathBuf>) -> Runner {
        self.ignored.push(dir.into());
        self
    }

    /// Waits `debounce` after a change before running.
    pub fn with_debounce(mut self, debounce: Duration) -> Runner {
        self.debounce_ms = duration_ms(debounce);
        self
    }

    /// What the API shows.
    pub fn view(&self) -> View {
        self.view.clone()
    }

    /// Swaps the job set in: a job keeping its name keeps its open findings (and runs at
    /// once if its spec changed); a new one loads its state file and runs at once; a
    /// removed one has its open findings resolved (reason `job_removed`, see
    /// [`Runner::next_retirement`]) and then its state file deleted.
    pub fn set_jobs(&mut self, jobs: Vec<AuditJob>) {
        self.swap_jobs(jobs, &mut BTreeMap::new());
    }

    /// The state files [`Runner::set_jobs`] would read for `jobs` (the new ones), so that
    /// [`drive`] reads them off the async workers.
    fn states_to_read(&self, jobs: &[AuditJob]) -> Vec<(String, PathBuf)> {
        jobs.iter()
            .filter(|spec| {
                !self.jobs.iter().any(|r| r.spec.name == spec.name)
                    && !self.retired.iter().any(|r| r.spec.name == spec.name)
            })
            .map(|spec| (spec.name.clone(), self.state_path(&spec.name)))
            .collect()
    }

    /// [`Runner::set_jobs`] with state files already read (`read`, by job); one missing
    /// there is read here.
    fn swap_jobs(&mut self, jobs: Vec<AuditJob>, read: &mut BTreeMap<String, StateRead>) {
        let mut old: BTreeMap<String, JobRun> = std::mem::take(&mut self.jobs)
            .into_iter()
            .chain(std::mem::take(&mut self.retired))
            .map(|run| (run.spec.name.clone(), run))
            .collect();
        for spec in jobs {
            let run = match old.remove(&spec.name) {
                Some(mut run) => {
                    if run.spec != spec {
                        run.next_due_ms = i64::MIN;
                    }
                    run.spec = spec;
                    run
                }
                None => {
                    let state = read
                        .remove(&spec.name)
                        .unwrap_or_else(|| read_state(&self.state_path(&spec.name)));
                    job_run(spec, state)
                }
            };
            self.jobs.push(run);
        }
        // What is left was removed: resolve its findings as soon as possible.
        self.retired = old
            .into_values()
            .map(|mut run| {
                run.next_due_ms = i64::MIN;
                run
            })
            .collect();
        self.view.set(&self.jobs);
    }

    fn state_path(&self, job: &str) -> PathBuf {
        self.state_dir.join(format!("{job}.json"))
    }

    /// A removed job whose findings are to be resolved now: publish its events, then
    /// [`Retirement::remove_state`] and [`Runner::retired`]; or [`Runner::retirement_failed`].
    pub fn next_retirement(&mut self) -> Option<Retirement> {
        let now = self.clock.now_ms();
        let run = self.retired.iter().find(|r| now >= r.next_due_ms)?;
        let job = run.spec.name.as_str();
        let events = run
            .open
            .values()
            .map(|old| {
                let mut event = old.event(RESOLVED, job, &self.source, now);
                if let Some(map) = event.data.as_object_mut() {
                    map.insert("reason".into(), Value::from("job_removed"));
                }
                event
            })
            .collect();
        Some(Retirement {
            job: job.to_string(),
            events,
            state: self.state_path(job),
        })
    }

    /// A removed job's resolutions are published (and its state file removed): it is gone.
    pub fn retired(&mut self, job: &str) {
        self.retired.retain(|r| r.spec.name != job);
    }

    /// A removed job's resolutions were not published: tried again within a minute.
    pub fn retirement_failed(&mut self, job: &str, error: &str) {
        let retry = self.clock.now_ms().saturating_add(RETRY_MS);
        tracing::warn!(job = %job, error = %error, "audit job removed; its resolutions not published, retrying later");
        for run in self.retired.iter_mut().filter(|r| r.spec.name == job) {
            run.next_due_ms = retry;
        }
    }

    /// Files and directories to watch: directories recursively, a file through its
    /// directory (editors replace files by renaming).
    /// (Blocking: it looks at the file system.)
    pub fn watch_targets(&self) -> Vec<(PathBuf, bool)> {
        watch_targets(&self.watched_paths())
    }

    /// Every job's paths.
    fn watched_paths(&self) -> Vec<String> {
        self.jobs
            .iter()
            .flat_map(|run| run.spec.paths.iter().cloned())
            .collect()
    }

    /// Something changed at `path`: the jobs auditing it run once the changes settle.
    pub fn changed(&mut self, path: &Path) {
        // The agent's own writes (state files, their temporary files, the database) would
        // otherwise run the jobs again after every run, forever.
        if is_ignored(&self.ignored, path) {
            return;
        }
        let now = self.clock.now_ms();
        for run in &mut self.jobs {
            if run.spec.paths.iter().any(|p| covers(Path::new(p), path)) {
                run.changed_ms.get_or_insert(now);
            }
        }
    }

    /// Every job runs once the changes settle (changes were lost).
    pub fn changed_all(&mut self) {
        let now = self.clock.now_ms();
        for run in &mut self.jobs {
            run.changed_ms.get_or_insert(now);
        }
    }

    /// The jobs due now: never run, their time come, a settled change, or the clock stepped
    /// back behind their last run.
    pub fn due(&self) -> Vec<String> {
        let now = self.clock.now_ms();
        self.jobs
            .iter()
            .filter(|run| {
                now >= run.next_due_ms
                    || run.last_attempt_ms.is_some_and(|last| now < last)
                    || run
                        .changed_ms
                        .is_some_and(|at| now >= at.saturating_add(self.debounce_ms))
            })
            .map(|run| run.spec.name.clone())
            .collect()
    }

    /// A run of `job`, now (`None` when there is no such job).
    pub fn prepare(&mut self, job: &str) -> Option<Prepared> {
        let now = self.clock.now_ms();
        let run = self.jobs.iter_mut().find(|r| r.spec.name == job)?;
        run.last_attempt_ms = Some(now);
        // Changes from here on are seen by a later run.
        run.changed_ms = None;
        Some(Prepared {
            spec: run.spec.clone(),
            previous: run.open.clone(),
            source: self.source.clone(),
            now_ms: now,
            ignored: self.ignored.clone(),
        })
    }

    /// Applies a run whose events are published: its findings become the job's open ones,
    /// saved to its state file.
    pub fn commit(&mut self, pending: Pending) {
        let job = pending.job.clone();
        if let Some(write) = self.apply(pending) {
            let written = write.write();
            self.saved(&job, &write.path, written);
        }
    }

    /// [`Runner::commit`] in memory; the state file is written by the caller with
    /// [`StateWrite::write`] (blocking) and the outcome given to [`Runner::saved`].
    fn apply(&mut self, pending: Pending) -> Option<StateWrite> {
        let path = self.state_path(&pending.job);
        let run = self.jobs.iter_mut().find(|r| r.spec.name == pending.job)?;
        run.open = pending.open;
        run.next_due_ms = pending.now_ms.saturating_add(duration_ms(run.spec.every));
        run.status.runs += 1;
        run.status.last_run = Some(format_rfc3339(pending.now_ms));
        run.status.over_cap = pending.over_cap;
        run.status.input_errors = pending.input_errors;
        run.status.input_errors_total = pending.input_errors_total;
        let state = StateFile {
            version: STATE_VERSION,
            job: run.spec.name.clone(),
            findings: run.open.values().cloned().collect(),
        };
        self.view.set(&self.jobs);
        Some(StateWrite {
            bytes: serde_json::to_vec(&state).map_err(std::io::Error::other),
            path,
        })
    }

    /// Records whether a job's state file was written.
    fn saved(&mut self, job: &str, path: &Path, written: std::io::Result<()>) {
        let Err(e) = written else {
            return;
        };
        let Some(run) = self.jobs.iter_mut().find(|r| r.spec.name == job) else {
            return;
        };
        let message = format!("state {}: not written: {e}", path.display());
        tracing::warn!(job = %job, error = %message, "audit job");
        fail_status(&mut run.status, message);
        self.view.set(&self.jobs);
    }

    /// Records that a run of `job` failed: counted, shown, retried within a minute (or at
    /// its next time, when sooner); the open findings stay as they were, so the same events
    /// come again.
    pub fn fail(&mut self, job: &str, error: String) {
        let now = self.clock.now_ms();
        let Some(run) = self.jobs.iter_mut().find(|r| r.spec.name == job) else {
            return;
        };
        tracing::warn!(job = %job, error = %error, "audit job failed; retrying later");
        fail_status(&mut run.status, error);
        let retry = duration_ms(run.spec.every).min(RETRY_MS);
        run.next_due_ms = now.saturating_add(retry);
        self.view.set(&self.jobs);
    }

    /// Runs every due job here and now, handing its events to `publish` (for tests and
    /// one-shot use; [`drive`] does the same on the agent). Returns the jobs run.
    pub fn run_due_blocking(
        &mut self,
        publish: &mut dyn FnMut(&[Event]) -> Result<(), String>,
    ) -> usize {
        while let Some(retirement) = self.next_retirement() {
            match publish(&retirement.events) {
                Ok(()) => {
                    if let Err(e) = retirement.remove_state() {
                        tracing::warn!(job = %retirement.job, error = %e, "audit job removed; state file not deleted");
                    }
                    self.retired(&retirement.job);
                }
                Err(e) => self.retirement_failed(&retirement.job, &e),
            }
        }
        let due = self.due();
        for job in &due {
            let Some(prepared) = self.prepare(job) else {
                continue;
            };
            let pending = prepared.audit();
            match publish(&pending.events) {
                Ok(()) => self.commit(pending),
                Err(e) => self.fail(job, format!("events not published: {e}")),
            }
        }
        due.len()
    }
}

fn fail_status(status: &mut JobStatus, message: String) {
    status.errors += 1;
    status.last_error = Some(message);
}

/// A job's state file as read: its open findings, or why none were kept.
type StateRead = (BTreeMap<String, OpenFinding>, Option<String>);

/// Reads a job's state file (blocking). A missing file is no error.
fn read_state(path: &Path) -> StateRead {
    let unreadable = |e: &dyn std::fmt::Display| {
        Some(format!(
            "state {}: unreadable, ignored: {e}",
            path.display()
        ))
    };
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
            Ok(state) if state.version == STATE_VERSION => (
                state
                    .findings
                    .into_iter()
                    .take(MAX_FINDINGS_PER_JOB)
                    .map(|f| (f.key.clone(), f))
                    .collect(),
                None,
            ),
            Ok(state) => (
                BTreeMap::new(),
                Some(format!(
                    "state {}: version {} unknown, ignored",
                    path.display(),
                    state.version
                )),
            ),
            Err(e) => (BTreeMap::new(), unreadable(&e)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), None),
        Err(e) => (BTreeMap::new(), unreadable(&e)),
    }
}

/// A job starting with the state read for it, due at once.
fn job_run(spec: AuditJob, (open, error): StateRead) -> JobRun {
    let mut status = JobStatus {
        name: spec.name.clone(),
        ..JobStatus::default()
    };
    if let Some(error) = error {
        fail_status(&mut status, error);
    }
    JobRun {
        spec,
        open,
        next_due_ms: i64::MIN,
        last_attempt_ms: None,
        changed_ms: None,
        status,
    }
}

/// A removed job's resolved events, from [`Runner::next_retirement`].
pub struct Retirement {
    /// The removed job.
    pub job: String,
    /// One [`RESOLVED`] event (`reason: job_removed`) per finding it had open.
    pub events: Vec<Event>,
    state: PathBuf,
}

impl Retirement {
    /// Deletes the job's state file (blocking), once its events are published.
    pub fn remove_state(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.state) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Whether `path` lies under one of the `ignored` directories.
fn is_ignored(ignored: &[PathBuf], path: &Path) -> bool {
    ignored.iter().any(|dir| covers(dir, path))
}

/// Whether a change at `changed` concerns the job path `path` (it, or something under it).
fn covers(path: &Path, changed: &Path) -> bool {
    if changed.starts_with(path) {
        return true;
    }
    // Watchers report absolute paths; jobs may name relative ones.
    match (std::path::absolute(path), std::path::absolute(changed)) {
        (Ok(path), Ok(changed)) => changed.starts_with(path),
        _ => false,
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// See [`Runner::watch_targets`] (blocking).
fn watch_targets(paths: &[String]) -> Vec<(PathBuf, bool)> {
    let mut targets = BTreeSet::new();
    for path in paths {
        let path = Path::new(path);
        if path.is_dir() {
            targets.insert((path.to_path_buf(), true));
        } else {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            targets.insert((parent.to_path_buf(), false));
        }
    }
    targets.into_iter().collect()
}

/// A job's state file to write.
struct StateWrite {
    path: PathBuf,
    bytes: std::io::Result<Vec<u8>>,
}

impl StateWrite {
    /// Writes the state through a synced temporary file and a rename (blocking): a crash
    /// leaves the old or the new file, never half of one.
    fn write(&self) -> std::io::Result<()> {
        use std::io::Write;
        let bytes = self
            .bytes
            .as_ref()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.path)
    }
}

/// Where a run's events go (the agent's bus).
pub trait EventSink: Send + Sync {
    /// Publishes the events durably, in order; an error fails the run (retried later).
    fn publish(
        &self,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// Changed paths collected by the watcher between two wake-ups (bounded).
#[derive(Default)]
struct Changes {
    paths: Mutex<BTreeSet<PathBuf>>,
    overflow: AtomicBool,
    wake: tokio::sync::Notify,
}

/// Only changes of content and names: the audit's own reads must not wake it again.
fn is_change(kind: notify::EventKind) -> bool {
    use notify::EventKind::{Create, Modify, Remove};
    use notify::event::ModifyKind::Metadata;
    matches!(kind, Create(_) | Remove(_) | Modify(_)) && !matches!(kind, Modify(Metadata(_)))
}

/// A watcher over the targets (`None` when the system has none), and what could not be
/// watched: the schedule still runs for those.
fn watch(
    targets: &[(PathBuf, bool)],
    changes: &Arc<Changes>,
) -> (Option<notify::RecommendedWatcher>, Vec<String>) {
    use notify::Watcher;
    let sink = Arc::clone(changes);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let (paths, overflow) = match event {
            Ok(e) if e.need_rescan() => (Vec::new(), true),
            Ok(e) if is_change(e.kind) => (e.paths, false),
            Ok(_) => return,
            // An error of the watcher (queue overflow): anything may have changed.
            Err(_) => (Vec::new(), true),
        };
        if let Ok(mut pending) = sink.paths.lock() {
            for path in paths {
                if pending.len() >= MAX_PENDING_CHANGES {
                    sink.overflow.store(true, Ordering::Release);
                    break;
                }
                pending.insert(path);
            }
        }
        if overflow {
            sink.overflow.store(true, Ordering::Release);
        }
        sink.wake.notify_one();
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => return (None, vec![format!("no file watcher: {e}")]),
    };
    let mut problems = Vec::new();
    for (path, recursive) in targets {
        let mode = if *recursive {
            notify::RecursiveMode::Recursive
        } else {
            notify::RecursiveMode::NonRecursive
        };
        if let Err(e) = watcher.watch(path, mode) {
            problems.push(format!("{}: {e}", path.display()));
        }
    }
    (Some(watcher), problems)
}

/// Watches the runner's targets off the async workers (a recursive watch walks the tree);
/// what cannot be watched is logged the first time only (`logged`), since the schedule
/// covers it anyway.
async fn rewatch(
    runner: &Runner,
    changes: &Arc<Changes>,
    logged: &mut bool,
) -> Option<notify::RecommendedWatcher> {
    let paths = runner.watched_paths();
    let changes = Arc::clone(changes);
    let (watcher, problems) =
        match tokio::task::spawn_blocking(move || watch(&watch_targets(&paths), &changes)).await {
            Ok(watched) => watched,
            Err(e) => (None, vec![format!("watcher task lost: {e}")]),
        };
    if !problems.is_empty() && !*logged {
        *logged = true;
        tracing::warn!(
            problems = %problems.join("; "),
            "audit jobs: not watching every path; those run on their schedule only"
        );
    }
    watcher
}

/// How [`drive`] runs.
#[derive(Clone, Copy, Debug)]
pub struct DriveOptions {
    /// How often it looks at the clock for due jobs.
    pub tick: Duration,
    /// Whether it watches the files (off: schedule only).
    pub watch: bool,
}

impl Default for DriveOptions {
    fn default() -> Self {
        DriveOptions {
            tick: Duration::from_secs(1),
            watch: true,
        }
    }
}

/// Runs the jobs until `stop` resolves: due jobs audited off the async workers, their
/// events handed to `sink` and then committed; file changes wake it; a new job set from
/// `jobs` is swapped in (and watched). Never fails: every failure is counted in the view.
pub async fn drive(
    mut runner: Runner,
    sink: Arc<dyn EventSink>,
    mut jobs: tokio::sync::watch::Receiver<Vec<AuditJob>>,
    options: DriveOptions,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let changes = Arc::new(Changes::default());
    let mut logged = false;
    let mut watcher = match options.watch {
        true => rewatch(&runner, &changes, &mut logged).await,
        false => None,
    };
    let mut jobs_open = true;
    loop {
        while let Some(retirement) = runner.next_retirement() {
            let published = if retirement.events.is_empty() {
                Ok(())
            } else {
                sink.publish(retirement.events.clone()).await
            };
            if let Err(e) = published {
                runner.retirement_failed(&retirement.job, &e);
                continue;
            }
            let job = retirement.job.clone();
            let removed = tokio::task::spawn_blocking(move || retirement.remove_state()).await;
            if let Err(e) = removed
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                tracing::warn!(job = %job, error = %e, "audit job removed; state file not deleted");
            }
            runner.retired(&job);
        }
        for job in runner.due() {
            let Some(prepared) = runner.prepare(&job) else {
                continue;
            };
            let pending = match tokio::task::spawn_blocking(move || prepared.audit()).await {
                Ok(pending) => pending,
                Err(e) => {
                    runner.fail(&job, format!("audit task lost: {e}"));
                    continue;
                }
            };
            let events = pending.events.clone();
            let published = if events.is_empty() {
                Ok(())
            } else {
                sink.publish(events).await
            };
            match published {
                Ok(()) => {
                    let Some(write) = runner.apply(pending) else {
                        continue;
                    };
                    let path = write.path.clone();
                    let written = tokio::task::spawn_blocking(move || write.write())
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
                    runner.saved(&job, &path, written);
                }
                Err(e) => runner.fail(&job, format!("events not published: {e}")),
            }
        }
        tokio::select! {
            () = &mut stop => return,
            () = changes.wake.notified() => {
                let paths = changes.paths.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
                for path in &paths {
                    runner.changed(path);
                }
                if changes.overflow.swap(false, Ordering::AcqRel) {
                    runner.changed_all();
                }
            }
            changed = jobs.changed(), if jobs_open => {
                if changed.is_err() {
                    // The sender is gone: no more reloads, the current jobs go on.
                    jobs_open = false;
                    continue;
                }
                let next = jobs.borrow_and_update().clone();
                let wanted = runner.states_to_read(&next);
                let mut read = tokio::task::spawn_blocking(move || {
                    wanted
                        .into_iter()
                        .map(|(job, path)| (job, read_state(&path)))
                        .collect::<BTreeMap<_, _>>()
                })
                .await
                .unwrap_or_default();
                runner.swap_jobs(next, &mut read);
                if options.watch {
                    drop(watcher.take());
                    watcher = rewatch(&runner, &changes, &mut logged).await;
                }
            }
            () = tokio::time::sleep(options.tick) => {}
        }
    }
}

#[cfg(test)]
mod tests;
