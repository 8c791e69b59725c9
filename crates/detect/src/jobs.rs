//! The agent's metric anomaly jobs (`metric_anomalies:` in its configuration): each follows the
//! series of one PromQL query on a schedule, scores every new point with a per-series
//! [`Detector`], groups the scores into episodes ([`StretchTracker`]) and reports each episode
//! as two CloudEvents: [`ANOMALY`] when it starts, [`ANOMALY_RESOLVED`] when it ends.
//!
//! This module owns the job configuration and its checks ([`check`]), the runners
//! ([`JobSet`]: schedule on an injected [`Clock`], due jobs run concurrently, range queries
//! since the last point through the forecast loop's Prometheus client, up to `delay` before
//! now so a scrape has landed, state
//! per series saved to and restored from a directory, reload), the score gauges and error
//! counters ([`JobMetrics`]) and the read model the API shows ([`AnomalyView`]). The binary
//! publishes the events and wires the rest.
//!
//! Guarantees: every grid point of a series is fed to its detector at most once and none is
//! skipped while Prometheus answers (the job's cursor moves only after an answer was
//! ingested; a failed run is counted and the same range is asked again next run). Events are
//! at least once: they are saved with the state until handed over, and a restart from an
//! older state regenerates them with the same fingerprint. Memory is bounded: series per job
//! (`max_series`, the rest counted as refused), label bytes per series, points per query,
//! answer bytes, pending events and recent episodes all have caps.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use opsloop_core::Event;
use opsloop_core::config::ConfigDuration;
use opsloop_core::time::{Clock, format_rfc3339};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::json;
use thiserror::Error;

use opsloop_forecast::Series;
use opsloop_forecast::prometheus::{PrometheusClient, PrometheusError, RangeQuery};

use crate::detector::{Detector, DetectorConfig};
use crate::stretches::StretchTracker;

/// The event type of an episode's start.
pub const ANOMALY: &str = "io.opsloop.metric.anomaly";
/// The event type of an episode's end.
pub const ANOMALY_RESOLVED: &str = "io.opsloop.metric.anomaly_resolved";

/// Recent episodes the view keeps (all jobs).
pub const MAX_EPISODES: usize = 256;
/// Events a job holds while they cannot be published; the oldest go first (counted).
pub const MAX_PENDING_EVENTS: usize = 1024;
/// Bytes of label names and values a followed series may have (a bound on its memory).
pub const MAX_LABEL_BYTES: usize = 4096;
/// Prometheus refuses more than 11,000 points per series in one range query.
const MAX_STEPS_PER_QUERY: i64 = 10_000;
/// Points (series × steps) one query may return, so a catch-up answer stays small.
const MAX_POINTS_PER_QUERY: i64 = 250_000;
/// Bytes one answer may have.
const MAX_ANSWER_BYTES: usize = 32 << 20;
/// Points the first run reads back by default: enough for the detector's probation and more.
const DEFAULT_LOOKBACK_POINTS: i64 = 600;
/// The most points a lookback may span.
const MAX_LOOKBACK_POINTS: i64 = 100_000;
/// Series a job may follow at most (`max_series`): each holds up to 64 KiB and is saved.
pub const MAX_SERIES: usize = 10_000;
/// A state without new events is saved at most this often (runs may be every second).
const SAVE_EVERY_MS: i64 = 300_000;
/// The least default `delay`: a 15s scrape interval plus a 10s scrape timeout, rounded up.
const DEFAULT_MIN_DELAY_MS: i64 = 30_000;
/// The longest `delay` allowed.
const MAX_DELAY_MS: i64 = 86_400_000;
/// Version of the state file's layout.
const STATE_VERSION: u32 = 1;

/// One job of `metric_anomalies:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyJob {
    /// Unique name: the `job` label of its gauges and the name of its state file.
    pub name: String,
    /// Base URL of the Prometheus server (`http://prometheus:9090`).
    pub prometheus: String,
    /// PromQL; every series it returns is followed.
    pub query: String,
    /// Resolution: one point per series every `step`.
    pub step: ConfigDuration,
    /// How often the job runs (default: `step`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<ConfigDuration>,
    /// Score at which an episode starts (default: the detector's alarm level).
    #[serde(default = "crate::default_threshold")]
    pub threshold: f64,
    /// How far the first run reads back (default: 600 steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<ConfigDuration>,
    /// A series without points for this long is dropped with its state (default: the larger
    /// of 1h and five runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget_after: Option<ConfigDuration>,
    /// Series followed at most; more are refused and counted.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Timeout of one query (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ConfigDuration>,
    /// How far behind the clock queries end (default: one step, at least 30s): the newest
    /// sample lands in Prometheus a scrape interval and a scrape after its time, and a grid
    /// point read before that would be scored on the previous sample and never read again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<ConfigDuration>,
}

fn default_max_series() -> usize {
    500
}

impl AnomalyJob {
    /// The step in milliseconds (at least 1).
    pub fn step_ms(&self) -> i64 {
        self.step.as_millis_i64().max(1)
    }

    /// Milliseconds between two runs.
    pub fn every_ms(&self) -> i64 {
        self.every
            .map_or(self.step_ms(), ConfigDuration::as_millis_i64)
            .max(1)
    }

    /// How far the first run reads back, in milliseconds.
    pub fn lookback_ms(&self) -> i64 {
        self.lookback.map_or(
            self.step_ms().saturating_mul(DEFAULT_LOOKBACK_POINTS),
            ConfigDuration::as_millis_i64,
        )
    }

    /// Milliseconds without points after which a series is dropped.
    pub fn forget_after_ms(&self) -> i64 {
        self.forget_after.map_or(
            self.every_ms().saturating_mul(5).max(3_600_000),
            ConfigDuration::as_millis_i64,
        )
    }

    /// How far behind the clock queries end, in milliseconds.
    pub fn delay_ms(&self) -> i64 {
        self.delay.map_or(
            self.step_ms().max(DEFAULT_MIN_DELAY_MS),
            ConfigDuration::as_millis_i64,
        )
    }

    /// The timeout of one query.
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
            .map_or(std::time::Duration::from_secs(10), ConfigDuration::get)
    }

    /// Whether `other` follows the same series on the same grid (its state carries over).
    fn same_series(&self, other: &AnomalyJob) -> bool {
        self.query == other.query && self.step_ms() == other.step_ms()
    }
}

/// Why jobs cannot run or their state cannot be kept.
#[derive(Debug, Error)]
pub enum JobError {
    /// A job of the configuration is wrong: `path` names it (`metric_anomalies[1].step`).
    #[error("{path}: {message}")]
    Config {
        /// Where.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A state file could not be read or written.
    #[error("state {path}: {message}")]
    State {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// The jobs of `metric_anomalies:`, checked: an error names the job and its field.
pub fn check(values: &[serde_json::Value]) -> Result<Vec<AnomalyJob>, JobError> {
    let mut jobs: Vec<AnomalyJob> = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let at = |field: &str| JobError::Config {
            path: format!("metric_anomalies[{i}].{field}"),
            message: String::new(),
        };
        let fail = |field: &str, message: String| match at(field) {
            JobError::Config { path, .. } => JobError::Config { path, message },
            other => other,
        };
        let job: AnomalyJob = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            JobError::Config {
                path: if path.is_empty() || path == "." {
                    format!("metric_anomalies[{i}]")
                } else {
                    format!("metric_anomalies[{i}].{path}")
                },
                message,
            }
        })?;
        let name_ok = !job.name.is_empty()
            && job.name.len() <= 64
            && !job.name.starts_with('.')
            && job
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return Err(fail(
                "name",
                format!(
                    "{:?}: 1 to 64 letters, digits, `_`, `-` or `.` (not first), it names the state file",
                    job.name
                ),
            ));
        }
        if jobs.iter().any(|j| j.name == job.name) {
            return Err(fail("name", format!("{:?} is used twice", job.name)));
        }
        PrometheusClient::new(&job.prometheus, job.timeout(), MAX_ANSWER_BYTES)
            .map_err(|e| fail("prometheus", e.to_string()))?;
        if job.query.trim().is_empty() {
            return Err(fail("query", "empty".into()));
        }
        if job.step.as_millis_i64() < 1000 {
            return Err(fail("step", format!("{} is under 1s", job.step)));
        }
        if let Some(every) = job.every
            && every.as_millis_i64() < 1000
        {
            return Err(fail("every", format!("{every} is under 1s")));
        }
        if !(job.threshold > 0.0 && job.threshold <= 1.0) {
            return Err(fail(
                "threshold",
                format!("{} is outside (0, 1]", job.threshold),
            ));
        }
        let points = job.lookback_ms() / job.step_ms();
        if !(1..=MAX_LOOKBACK_POINTS).contains(&points) {
            return Err(fail(
                "lookback",
                format!("spans {points} steps; 1 to {MAX_LOOKBACK_POINTS} allowed"),
            ));
        }
        if job.forget_after_ms() < job.every_ms() {
            return Err(fail("forget_after", "shorter than `every`".into()));
        }
        if !(1..=MAX_SERIES).contains(&job.max_series) {
            return Err(fail(
                "max_series",
                format!("{} is outside 1..={MAX_SERIES}", job.max_series),
            ));
        }
        if !(0..=MAX_DELAY_MS).contains(&job.delay_ms()) {
            return Err(fail(
                "delay",
                format!(
                    "{} is outside 0s..1d",
                    job.delay.map_or(String::new(), |d| d.to_string())
                ),
            ));
        }
        if !(100..=600_000).contains(&job.timeout().as_millis()) {
            return Err(fail(
                "timeout",
                format!("{:?} is outside 100ms..10m", job.timeout()),
            ));
        }
        jobs.push(job);
    }
    Ok(jobs)
}

/// Gauges per followed series, labelled `job` plus the series' own labels (the same type as
/// the agent's `SeriesGauges`).
pub type ScoreGauges = Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>;
/// Counters per job, labelled `job`.
pub type JobCounters = Family<Vec<(String, String)>, Counter>;

/// The jobs' metric families.
#[derive(Clone, Debug, Default)]
pub struct JobMetrics {
    /// `metric_anomaly_score`: each series' latest score before the per-episode suppression
    /// (an anomaly that goes on stays visible).
    pub scores: ScoreGauges,
    /// `metric_anomaly_job_errors_total`: runs that failed.
    pub errors: JobCounters,
    /// `metric_anomaly_series_refused_total`: series not followed (over `max_series`, or
    /// labels over [`MAX_LABEL_BYTES`]), counted per run.
    pub refused: JobCounters,
}

impl JobMetrics {
    /// Registers the families (the registry adds its prefix, `opsloop_` in the agent).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "metric_anomaly_score",
            "Latest anomaly score of each followed series (before per-episode suppression), per job",
            self.scores.clone(),
        );
        registry.register(
            "metric_anomaly_job_errors",
            "Metric anomaly job runs that failed (Prometheus unreachable, refused or bad answer)",
            self.errors.clone(),
        );
        registry.register(
            "metric_anomaly_series_refused",
            "Series a metric anomaly job did not follow (over max_series or labels too large)",
            self.refused.clone(),
        );
    }
}

/// An anomalous episode of one series, as the API lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The id of its [`ANOMALY`] event.
    pub id: String,
    /// The job.
    pub job: String,
    /// The series (`name{label="value",…}`), the events' subject.
    pub series: String,
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// When it started, RFC 3339.
    pub start: String,
    /// When it started, Unix ms.
    pub start_ms: i64,
    /// The value that started it.
    #[serde(with = "crate::finite::one")]
    pub value: f64,
    /// The score that started it.
    #[serde(with = "crate::finite::one")]
    pub score: f64,
    /// The highest score so far.
    #[serde(with = "crate::finite::one")]
    pub peak: f64,
    /// When the peak was, Unix ms.
    pub peak_ms: i64,
    /// The last point whose score reached the threshold, Unix ms.
    pub last_ms: i64,
    /// Still going on.
    pub open: bool,
    /// When it was over, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Why it was over: `scores_below_threshold`, `series_gone`, `job_removed` or `job_changed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

/// What a job did since the agent started, as the API shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStats {
    /// The job.
    pub name: String,
    /// Runs.
    pub runs: u64,
    /// Runs that failed.
    pub failures: u64,
    /// Failed runs since the last success.
    pub consecutive_failures: u64,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// When it was, RFC 3339.
    pub last_error_at: Option<String>,
    /// The last successful run, RFC 3339.
    pub last_success_at: Option<String>,
    /// The newest grid time ingested, RFC 3339.
    pub cursor: Option<String>,
    /// More points wait than one query reads: the next run follows at once.
    pub behind: bool,
    /// Series followed.
    pub series: usize,
    /// Bytes the followed series hold (their detectors at full size, labels, episodes).
    pub memory_bytes: usize,
    /// Points scored.
    pub points: u64,
    /// Series refused (over `max_series` or labels too large), counted per run.
    pub series_refused: u64,
    /// Series dropped after `forget_after` without points.
    pub series_dropped: u64,
    /// Events dropped because too many were waiting to be published.
    pub events_dropped: u64,
    /// Why the saved state was not used or could not be saved, if it was not.
    pub state_error: Option<String>,
}

/// The jobs' read model: recent episodes (most recent first, bounded) and per-job statistics.
/// Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct AnomalyView {
    inner: Arc<Mutex<ViewState>>,
}

#[derive(Debug, Default)]
struct ViewState {
    jobs: BTreeMap<String, JobStats>,
    episodes: VecDeque<Episode>,
}

impl AnomalyView {
    fn with<R>(&self, f: impl FnOnce(&mut ViewState) -> R) -> R {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    /// `{"episodes": [...], "jobs": [...]}`. Query: `job`, `series`, `open` (`true`/`false`),
    /// `limit` (default 100, at most [`MAX_EPISODES`]).
    pub fn list(&self, query: &BTreeMap<String, String>) -> serde_json::Value {
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(100)
            .min(MAX_EPISODES);
        let job = query.get("job");
        let series = query.get("series");
        let open = query.get("open").and_then(|o| o.parse::<bool>().ok());
        self.with(|s| {
            let episodes: Vec<&Episode> = s
                .episodes
                .iter()
                .filter(|e| job.is_none_or(|j| *j == e.job))
                .filter(|e| series.is_none_or(|x| *x == e.series))
                .filter(|e| open.is_none_or(|o| o == e.open))
                .take(limit)
                .collect();
            let jobs: Vec<&JobStats> = s
                .jobs
                .values()
                .filter(|j| job.is_none_or(|n| *n == j.name))
                .collect();
            json!({ "episodes": episodes, "jobs": jobs })
        })
    }

    /// One episode by id.
    pub fn get(&self, id: &str) -> Option<serde_json::Value> {
        self.with(|s| {
            s.episodes
                .iter()
                .find(|e| e.id == id)
                .and_then(|e| serde_json::to_value(e).ok())
        })
    }

    /// The recent episodes, most recent first.
    pub fn episodes(&self) -> Vec<Episode> {
        self.with(|s| s.episodes.iter().cloned().collect())
    }

    /// A job's statistics.
    pub fn job(&self, name: &str) -> Option<JobStats> {
        self.with(|s| s.jobs.get(name).cloned())
    }

    /// Adds or updates an episode, keeping the newest [`MAX_EPISODES`] by start.
    fn upsert(&self, episode: &Episode) {
        self.with(|s| {
            if let Some(known) = s.episodes.iter_mut().find(|e| e.id == episode.id) {
                *known = episode.clone();
                return;
            }
            let at = s
                .episodes
                .iter()
                .position(|e| e.start_ms < episode.start_ms)
                .unwrap_or(s.episodes.len());
            s.episodes.insert(at, episode.clone());
            s.episodes.truncate(MAX_EPISODES);
        });
    }

    fn set_stats(&self, stats: &JobStats) {
        self.with(|s| {
            s.jobs.insert(stats.name.clone(), stats.clone());
        });
    }

    fn remove_job(&self, name: &str) {
        self.with(|s| {
            s.jobs.remove(name);
        });
    }
}

/// What the jobs share: where state goes, the clock, the events' source, metrics and view.
#[derive(Clone)]
pub struct Options {
    /// Directory of the state files (`<job>.json`); `None`: nothing is saved.
    pub state_dir: Option<PathBuf>,
    /// The clock runs are scheduled on and ranges end at.
    pub clock: Arc<dyn Clock>,
    /// The agent's event source (`/opsloop/agent/HOST`); events come from
    /// `<source>/metric-anomalies/<job>`.
    pub source: String,
    /// Gauges and counters.
    pub metrics: JobMetrics,
    /// The read model.
    pub view: AnomalyView,
}

/// One followed series.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SeriesState {
    labels: BTreeMap<String, String>,
    detector: Detector,
    tracker: StretchTracker,
    /// The newest point fed (non-finite ones included), Unix ms.
    last_ms: i64,
    /// The latest score before suppression (the gauge).
    #[serde(with = "crate::finite::one")]
    score: f64,
    /// The episode going on.
    open: Option<Episode>,
}

impl SeriesState {
    fn new(labels: BTreeMap<String, String>, threshold: f64) -> Self {
        SeriesState {
            labels,
            detector: Detector::new(DetectorConfig {
                alarm_level: threshold,
                ..DetectorConfig::default()
            }),
            tracker: StretchTracker::new(threshold, StretchTracker::DEFAULT_GAP),
            last_ms: i64::MIN,
            score: 0.0,
            open: None,
        }
    }

    /// Bytes this series holds once its detector's buffers are full.
    fn memory_bytes(&self) -> usize {
        let labels: usize = self
            .labels
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum();
        let episode = self.open.as_ref().map_or(0, |e| {
            std::mem::size_of::<Episode>() + e.id.len() + e.series.len() + e.start.len() + labels
        });
        std::mem::size_of::<Self>() + self.detector.memory_bytes() + 2 * labels + episode
    }
}

/// A job's state: what the state file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct JobState {
    /// The newest grid time ingested.
    cursor_ms: Option<i64>,
    series: BTreeMap<String, SeriesState>,
    /// Events not published yet.
    pending: Vec<Event>,
}

#[derive(Serialize)]
struct SavedRef<'a> {
    version: u32,
    job: &'a str,
    query: &'a str,
    step_ms: i64,
    state: &'a JobState,
    episodes: Vec<Episode>,
}

#[derive(Deserialize)]
struct Saved {
    version: u32,
    query: String,
    step_ms: i64,
    state: JobState,
    #[serde(default)]
    episodes: Vec<Episode>,
}

/// The `name{label="value",…}` of a series (values escaped as PromQL writes them).
pub fn series_key(labels: &BTreeMap<String, String>) -> String {
    let mut out = labels.get("__name__").cloned().unwrap_or_default();
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().filter(|(k, _)| *k != "__name__") {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// The gauge labels of a series of `job`: `job` first; the series' `__name__` becomes
/// `metric_name`, and its own `job` or `metric_name` become `exported_…` (as Prometheus
/// renames clashing target labels).
pub fn gauge_labels(job: &str, labels: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = vec![("job".to_string(), job.to_string())];
    // Names taken: ours and the series' own, so a renamed label never duplicates one (a
    // series from a Pushgateway or a federation often has `exported_job` already).
    let used: std::collections::BTreeSet<&str> = labels
        .keys()
        .map(String::as_str)
        .chain(["job", "metric_name"])
        .collect();
    let mut renamed: Vec<String> = Vec::new();
    for (k, v) in labels {
        let name = match k.as_str() {
            "__name__" => "metric_name".to_string(),
            "job" | "metric_name" => {
                let mut name = format!("exported_{k}");
                while used.contains(name.as_str()) || renamed.contains(&name) {
                    name = format!("exported_{name}");
                }
                renamed.push(name.clone());
                name
            }
            _ => k.clone(),
        };
        out.push((name, v.clone()));
    }
    out
}

fn job_label(job: &str) -> Vec<(String, String)> {
    vec![("job".to_string(), job.to_string())]
}

/// One job at work.
struct Runner {
    job: AnomalyJob,
    client: Result<PrometheusClient, String>,
    state: JobState,
    stats: JobStats,
    /// When the next run is due (`None`: now).
    next_run_ms: Option<i64>,
    /// Steps per query after an answer was too large (halved each time, doubled back after
    /// each success).
    chunk_limit: i64,
    /// Series of the last answer (`None` before the first: `max_series` is assumed).
    answer_series: Option<usize>,
    /// Events were made or returned since the last save: the next save must not wait.
    save_due: bool,
    /// When the state was last saved, by the clock.
    saved_at_ms: Option<i64>,
}

fn client_of(job: &AnomalyJob) -> Result<PrometheusClient, String> {
    PrometheusClient::new(&job.prometheus, job.timeout(), MAX_ANSWER_BYTES)
        .map_err(|e| e.to_string())
}

fn state_path(dir: &Path, job: &str) -> PathBuf {
    dir.join(format!("{job}.json"))
}

/// Appends `event` to `pending`, dropping the oldest over the cap.
fn push_event(pending: &mut Vec<Event>, dropped: &mut u64, event: Event) {
    if pending.len() >= MAX_PENDING_EVENTS {
        pending.remove(0);
        *dropped += 1;
    }
    pending.push(event);
}

impl Runner {
    /// A runner of `job`, its state read from the state directory when there is one.
    fn restore(job: AnomalyJob, ctx: &Options) -> Runner {
        let mut runner = Runner {
            client: client_of(&job),
            stats: JobStats {
                name: job.name.clone(),
                ..JobStats::default()
            },
            job,
            state: JobState::default(),
            next_run_ms: None,
            chunk_limit: MAX_STEPS_PER_QUERY,
            answer_series: None,
            save_due: false,
            saved_at_ms: None,
        };
        if let Some(dir) = &ctx.state_dir {
            let path = state_path(dir, &runner.job.name);
            match std::fs::read(&path) {
                Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                    Ok(saved)
                        if saved.version != STATE_VERSION
                            || saved.query != runner.job.query
                            || saved.step_ms != runner.job.step_ms() =>
                    {
                        if saved.version != STATE_VERSION {
                            runner.stats.state_error = Some(format!(
                                "{}: state version {} unknown, starting afresh",
                                path.display(),
                                saved.version
                            ));
                        }
                        // Another query, step or layout: the series start afresh, but the
                        // events not published yet go out and the episodes going on end.
                        runner.state = saved.state;
                        for e in &saved.episodes {
                            ctx.view.upsert(e);
                        }
                        runner.retire_all("job_changed", ctx);
                    }
                    Ok(saved) => {
                        runner.state = saved.state;
                        for e in &saved.episodes {
                            ctx.view.upsert(e);
                        }
                    }
                    Err(e) => {
                        // Kept aside for a look, never read again.
                        let aside = path.with_extension("json.corrupt");
                        let _ = std::fs::rename(&path, &aside);
                        runner.stats.state_error = Some(format!(
                            "{}: unreadable state ({e}), starting afresh; kept as {}",
                            path.display(),
                            aside.display()
                        ));
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    runner.stats.state_error = Some(format!("{}: {e}", path.display()));
                }
            }
        }
        runner.apply_threshold();
        for (key, series) in &runner.state.series {
            ctx.metrics
                .scores
                .get_or_create(&gauge_labels(&runner.job.name, &series.labels))
                .set(series.score);
            if let Some(open) = &series.open
                && &open.series == key
            {
                ctx.view.upsert(open);
            }
        }
        runner.publish_stats(ctx);
        runner
    }

    /// The job's threshold on every series (it may have changed by reload or restart).
    fn apply_threshold(&mut self) {
        let threshold = self.job.threshold;
        for series in self.state.series.values_mut() {
            series.detector.set_alarm_level(threshold);
            series.tracker.set_threshold(threshold);
        }
    }

    fn publish_stats(&mut self, ctx: &Options) {
        self.stats.series = self.state.series.len();
        self.stats.memory_bytes = self
            .state
            .series
            .iter()
            .map(|(k, s)| k.len() + s.memory_bytes())
            .sum();
        self.stats.cursor = self.state.cursor_ms.map(format_rfc3339);
        ctx.view.set_stats(&self.stats);
    }

    fn source(&self, ctx: &Options) -> String {
        format!("{}/metric-anomalies/{}", ctx.source, self.job.name)
    }

    /// Whether a run is due at `now`: its time came, or the clock was stepped back by more
    /// than one interval (the job must not stall until the clock catches up).
    fn due(&self, now: i64) -> bool {
        self.next_run_ms
            .is_none_or(|at| at <= now || at.saturating_sub(now) > self.job.every_ms())
    }

    /// Steps the next query may span.
    fn chunk_steps(&self) -> i64 {
        // The last answer's series (all that may come at the first run), not the followed
        // ones: at start none are followed, and a full lookback of every series would be
        // refused as too large, then halved through failures.
        let series = self
            .answer_series
            .unwrap_or(self.job.max_series)
            .max(self.state.series.len())
            .max(1);
        let series = i64::try_from(series).unwrap_or(i64::MAX);
        (MAX_POINTS_PER_QUERY / series)
            .clamp(1, MAX_STEPS_PER_QUERY)
            .min(self.chunk_limit)
            .max(1)
    }

    /// The wall clock is before the cursor (stepped back, or a state from a host whose clock
    /// ran ahead): the cursor and every series go back to `end`, so the job queries again at
    /// once instead of waiting until the clock passes the cursor, and the points Prometheus
    /// now has for the replayed range are fed (their detectors see that range again).
    fn clock_went_back(&mut self, cursor: i64, end: i64) {
        self.state.cursor_ms = Some(end);
        self.save_due = true;
        for series in self.state.series.values_mut() {
            series.last_ms = series.last_ms.min(end);
        }
        self.stats.state_error = Some(format!(
            "the clock ({}) is before the cursor ({}): the cursor was reset to the clock",
            format_rfc3339(end),
            format_rfc3339(cursor)
        ));
    }

    /// Grows with every event made (kept or dropped).
    fn events_made(&self) -> u64 {
        self.state.pending.len() as u64 + self.stats.events_dropped
    }

    /// One run: the points after the cursor (at most one query's worth), scored.
    async fn run(&mut self, ctx: &Options) {
        let now = ctx.clock.now_ms();
        let step = self.job.step_ms();
        self.stats.runs += 1;
        // The newest grid time whose samples have landed (see `AnomalyJob::delay`).
        let end = now
            .saturating_sub(self.job.delay_ms())
            .div_euclid(step)
            .saturating_mul(step);
        if let Some(cursor) = self.state.cursor_ms
            && cursor
                > now
                    .div_euclid(step)
                    .saturating_mul(step)
                    .saturating_add(step)
        {
            self.clock_went_back(cursor, end);
        }
        let start = match self.state.cursor_ms {
            Some(cursor) => cursor.saturating_add(step),
            None => end.saturating_sub((self.job.lookback_ms() / step).saturating_mul(step)),
        };
        let mut behind = false;
        // Nothing new before the next grid time (or the clock was stepped back).
        if start <= end {
            let steps = self.chunk_steps();
            let chunk_end = end.min(start.saturating_add((steps - 1).saturating_mul(step)));
            let answer = match &self.client {
                Ok(client) => client
                    .query_range(&RangeQuery {
                        query: self.job.query.clone(),
                        start_ms: start,
                        end_ms: chunk_end,
                        step_ms: step,
                    })
                    .await
                    .map(|read| read.series)
                    .map_err(|e| {
                        if matches!(e, PrometheusError::TooLarge { .. }) {
                            // A smaller range next time.
                            self.chunk_limit = (steps / 2).max(1);
                        }
                        e.to_string()
                    }),
                Err(e) => Err(e.clone()),
            };
            match answer {
                Ok(series) => {
                    self.answer_series = Some(series.len());
                    self.chunk_limit = self.chunk_limit.saturating_mul(2).min(MAX_STEPS_PER_QUERY);
                    let made = self.events_made();
                    self.ingest(series, ctx);
                    self.state.cursor_ms = Some(chunk_end);
                    self.forget(chunk_end, now, ctx);
                    if self.events_made() != made {
                        self.save_due = true;
                    }
                    self.stats.consecutive_failures = 0;
                    self.stats.last_success_at = Some(format_rfc3339(now));
                    behind = chunk_end < end;
                }
                Err(message) => {
                    self.stats.failures += 1;
                    self.stats.consecutive_failures += 1;
                    self.stats.last_error = Some(message);
                    self.stats.last_error_at = Some(format_rfc3339(now));
                    ctx.metrics
                        .errors
                        .get_or_create(&job_label(&self.job.name))
                        .inc();
                }
            }
        }
        self.stats.behind = behind;
        self.next_run_ms = Some(if behind {
            now
        } else {
            now.saturating_add(self.job.every_ms())
        });
        self.publish_stats(ctx);
    }

    /// Feeds an answer's new points to their series' detectors, in time order, and turns
    /// episode starts and ends into events.
    fn ingest(&mut self, answer: Vec<Series>, ctx: &Options) {
        let source = self.source(ctx);
        let job = &self.job;
        let JobState {
            series: followed,
            pending,
            ..
        } = &mut self.state;
        let stats = &mut self.stats;
        let mut refused = 0u64;
        for raw in answer {
            if raw.points.is_empty() {
                continue;
            }
            let key = series_key(&raw.labels);
            if !followed.contains_key(&key) {
                let label_bytes: usize = raw.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
                if followed.len() >= job.max_series || label_bytes > MAX_LABEL_BYTES {
                    refused += 1;
                    continue;
                }
                followed.insert(key.clone(), SeriesState::new(raw.labels, job.threshold));
            }
            let Some(series) = followed.get_mut(&key) else {
                continue;
            };
            let mut points = raw.points;
            points.sort_by_key(|(t, _)| *t);
            for (ts, value) in points {
                // Never twice: a point at or before the newest fed is skipped.
                if ts <= series.last_ms {
                    continue;
                }
                series.last_ms = ts;
                let Some(point) = series.detector.push_point(value) else {
                    continue;
                };
                stats.points += 1;
                series.score = point.surprise;
                let index = usize::try_from(series.detector.seen()).unwrap_or(usize::MAX);
                let ended = series.tracker.push(index, &point);
                if ended.is_some()
                    && let Some(mut episode) = series.open.take()
                {
                    episode.open = false;
                    episode.end = Some(format_rfc3339(episode.last_ms));
                    episode.resolution = Some("scores_below_threshold".into());
                    ctx.view.upsert(&episode);
                    push_event(
                        pending,
                        &mut stats.events_dropped,
                        resolved_event(&source, &episode, ts),
                    );
                }
                match (series.tracker.open().copied(), series.open.as_mut()) {
                    (Some(stretch), None) if stretch.start == index => {
                        let event = Event::new(
                            ANOMALY,
                            &source,
                            Some(&key),
                            ts,
                            json!({
                                "job": job.name,
                                "series": key,
                                "labels": series.labels,
                                "value": value,
                                "score": point.score,
                                "threshold": job.threshold,
                                "view": point.view,
                                "start": format_rfc3339(ts),
                                "start_ms": ts,
                            }),
                        )
                        .with_fingerprint_key(&format!("{}/{ts}", job.name));
                        let episode = Episode {
                            id: event.id.clone(),
                            job: job.name.clone(),
                            series: key.clone(),
                            labels: series.labels.clone(),
                            start: format_rfc3339(ts),
                            start_ms: ts,
                            value,
                            score: point.score,
                            peak: stretch.peak,
                            peak_ms: ts,
                            last_ms: ts,
                            open: true,
                            end: None,
                            resolution: None,
                        };
                        ctx.view.upsert(&episode);
                        series.open = Some(episode);
                        push_event(pending, &mut stats.events_dropped, event);
                    }
                    (Some(stretch), Some(episode)) => {
                        if stretch.end == index {
                            episode.last_ms = ts;
                        }
                        if stretch.peak_at == index {
                            episode.peak = stretch.peak;
                            episode.peak_ms = ts;
                        }
                    }
                    _ => {}
                }
            }
            ctx.metrics
                .scores
                .get_or_create(&gauge_labels(&job.name, &series.labels))
                .set(series.score);
            if let Some(open) = &series.open {
                // The view follows the peak of an episode going on.
                ctx.view.upsert(open);
            }
        }
        if refused > 0 {
            stats.series_refused += refused;
            ctx.metrics
                .refused
                .get_or_create(&job_label(&job.name))
                .inc_by(refused);
        }
    }

    /// Drops the series without points for `forget_after` before `through_ms` (the newest
    /// grid time ingested, so a catch-up after an outage drops nothing that is alive).
    fn forget(&mut self, through_ms: i64, now: i64, ctx: &Options) {
        let horizon = through_ms.saturating_sub(self.job.forget_after_ms());
        let gone: Vec<String> = self
            .state
            .series
            .iter()
            .filter(|(_, s)| s.last_ms < horizon)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(series) = self.state.series.remove(&key) {
                self.stats.series_dropped += 1;
                self.retire_series(series, "series_gone", now, ctx);
            }
        }
    }

    /// Removes a series' gauge and ends its episode, if one goes on, for `reason`.
    fn retire_series(&mut self, series: SeriesState, reason: &str, now: i64, ctx: &Options) {
        ctx.metrics
            .scores
            .remove(&gauge_labels(&self.job.name, &series.labels));
        if let Some(mut episode) = series.open {
            episode.open = false;
            episode.end = Some(format_rfc3339(now));
            episode.resolution = Some(reason.into());
            ctx.view.upsert(&episode);
            let event = resolved_event(&self.source(ctx), &episode, now);
            push_event(
                &mut self.state.pending,
                &mut self.stats.events_dropped,
                event,
            );
        }
    }

    /// Retires every series for `reason` (the job was removed or follows something else).
    fn retire_all(&mut self, reason: &str, ctx: &Options) {
        let now = ctx.clock.now_ms();
        let all = std::mem::take(&mut self.state.series);
        for series in all.into_values() {
            self.retire_series(series, reason, now, ctx);
        }
        self.state.cursor_ms = None;
    }

    /// Takes `job`'s settings (a reload): the state stays when it follows the same series.
    fn reconfigure(&mut self, job: AnomalyJob, ctx: &Options) {
        if !self.job.same_series(&job) {
            self.retire_all("job_changed", ctx);
            self.chunk_limit = MAX_STEPS_PER_QUERY;
            self.answer_series = None;
            self.save_due = true;
        }
        if self.job.prometheus != job.prometheus || self.job.timeout != job.timeout {
            self.client = client_of(&job);
        }
        if self.job.every_ms() != job.every_ms() {
            self.next_run_ms = None;
        }
        self.job = job;
        self.apply_threshold();
        self.publish_stats(ctx);
    }

    /// Writes the state file (atomically: a crash leaves the old one or the new one).
    fn save(&mut self, ctx: &Options) -> Result<(), JobError> {
        let Some(dir) = &ctx.state_dir else {
            return Ok(());
        };
        let path = state_path(dir, &self.job.name);
        let failed = |e: &dyn std::fmt::Display| JobError::State {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let episodes = ctx
            .view
            .episodes()
            .into_iter()
            .filter(|e| e.job == self.job.name)
            .collect();
        let saved = SavedRef {
            version: STATE_VERSION,
            job: &self.job.name,
            query: &self.job.query,
            step_ms: self.job.step_ms(),
            state: &self.state,
            episodes,
        };
        let bytes = serde_json::to_vec(&saved).map_err(|e| failed(&e))?;
        std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
        let tmp = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| failed(&e))
    }
}

fn resolved_event(source: &str, episode: &Episode, time_ms: i64) -> Event {
    Event::new(
        ANOMALY_RESOLVED,
        source,
        Some(&episode.series),
        time_ms,
        json!({
            "job": episode.job,
            "series": episode.series,
            "labels": episode.labels,
            "start": episode.start,
            "start_ms": episode.start_ms,
            "end": episode.end,
            "peak": episode.peak,
            "peak_at": format_rfc3339(episode.peak_ms),
            "reason": episode.resolution,
            "episode": episode.id,
        }),
    )
    .with_fingerprint_key(&format!("{}/{}", episode.job, episode.start_ms))
}

/// The running jobs.
pub struct JobSet {
    runners: Vec<Runner>,
    /// Events of removed jobs not published yet (not saved: their job is gone).
    orphans: Vec<Event>,
    ctx: Options,
}

impl JobSet {
    /// The jobs, each with its saved state (a missing file starts afresh; an unreadable one is
    /// reported in the job's statistics and set aside).
    pub fn new(jobs: Vec<AnomalyJob>, options: Options) -> JobSet {
        let runners = jobs
            .into_iter()
            .map(|job| Runner::restore(job, &options))
            .collect();
        JobSet {
            runners,
            orphans: Vec::new(),
            ctx: options,
        }
    }

    /// The read model.
    pub fn view(&self) -> &AnomalyView {
        &self.ctx.view
    }

    /// Replaces the jobs (a reload). A job whose name stays keeps its state (unless it now
    /// follows another query or step: then its series are retired and it starts afresh); a
    /// removed job ends its episodes, loses its gauges and its state file.
    pub fn replace(&mut self, jobs: Vec<AnomalyJob>) {
        let mut old: BTreeMap<String, Runner> = self
            .runners
            .drain(..)
            .map(|r| (r.job.name.clone(), r))
            .collect();
        for job in jobs {
            let runner = match old.remove(&job.name) {
                Some(mut runner) => {
                    runner.reconfigure(job, &self.ctx);
                    runner
                }
                None => Runner::restore(job, &self.ctx),
            };
            self.runners.push(runner);
        }
        for (name, mut runner) in old {
            runner.retire_all("job_removed", &self.ctx);
            self.orphans.append(&mut runner.state.pending);
            let excess = self.orphans.len().saturating_sub(MAX_PENDING_EVENTS);
            self.orphans.drain(..excess);
            self.ctx.view.remove_job(&name);
            self.ctx.metrics.errors.remove(&job_label(&name));
            self.ctx.metrics.refused.remove(&job_label(&name));
            if let Some(dir) = &self.ctx.state_dir {
                let _ = std::fs::remove_file(state_path(dir, &name));
            }
        }
    }

    /// Runs the jobs that are due by the clock, concurrently (a Prometheus that hangs delays
    /// no other job's answer; each job's state changes when its own answer is in); how many
    /// ran. A failure is counted in the job's statistics and metrics, and the same range is
    /// asked again at its next run. Dropped mid-run, no job's state is half changed.
    pub async fn run_due(&mut self) -> usize {
        let now = self.ctx.clock.now_ms();
        let ctx = &self.ctx;
        let runs: Vec<_> = self
            .runners
            .iter_mut()
            .filter(|runner| runner.due(now))
            .map(|runner| runner.run(ctx))
            .collect();
        let ran = runs.len();
        futures_util::future::join_all(runs).await;
        ran
    }

    /// Saves the jobs' state when it matters: events were made or handed back since the last
    /// save, or [`SAVE_EVERY_MS`] passed (a restart then replays at most that much, and
    /// regenerates no event). The problems (also shown in the jobs' statistics).
    pub fn save(&mut self) -> Vec<JobError> {
        self.save_where(false)
    }

    /// Saves every job's state now (at shutdown); the problems.
    pub fn save_now(&mut self) -> Vec<JobError> {
        self.save_where(true)
    }

    fn save_where(&mut self, all: bool) -> Vec<JobError> {
        let now = self.ctx.clock.now_ms();
        let mut problems = Vec::new();
        for runner in &mut self.runners {
            let due = all
                || runner.save_due
                || runner.saved_at_ms.is_none_or(|at| {
                    // A clock stepped back saves too, rather than waiting for it.
                    now < at || now.saturating_sub(at) >= SAVE_EVERY_MS
                });
            if !due {
                continue;
            }
            match runner.save(&self.ctx) {
                Ok(()) => {
                    runner.save_due = false;
                    runner.saved_at_ms = Some(now);
                    if runner
                        .stats
                        .state_error
                        .as_deref()
                        .is_some_and(|e| e.starts_with("save: "))
                    {
                        runner.stats.state_error = None;
                        runner.publish_stats(&self.ctx);
                    }
                }
                Err(e) => {
                    runner.stats.state_error = Some(format!("save: {e}"));
                    runner.publish_stats(&self.ctx);
                    problems.push(e);
                }
            }
        }
        problems
    }

    /// Whether events wait to be published.
    pub fn has_events(&self) -> bool {
        !self.orphans.is_empty() || self.runners.iter().any(|r| !r.state.pending.is_empty())
    }

    /// The events waiting to be published, in order; hand back what could not be published
    /// with [`JobSet::return_events`].
    pub fn take_events(&mut self) -> Vec<Event> {
        let mut out = std::mem::take(&mut self.orphans);
        for runner in &mut self.runners {
            out.append(&mut runner.state.pending);
        }
        out
    }

    /// Puts back events that could not be published, ahead of newer ones (bounded).
    pub fn return_events(&mut self, events: Vec<Event>) {
        let mut back: BTreeMap<usize, Vec<Event>> = BTreeMap::new();
        let mut orphans = Vec::new();
        for event in events {
            let job = event.data.get("job").and_then(|j| j.as_str());
            match self
                .runners
                .iter()
                .position(|r| Some(r.job.name.as_str()) == job)
            {
                Some(i) => back.entry(i).or_default().push(event),
                None => orphans.push(event),
            }
        }
        for (i, mut events) in back {
            if let Some(runner) = self.runners.get_mut(i) {
                events.append(&mut runner.state.pending);
                let excess = events.len().saturating_sub(MAX_PENDING_EVENTS);
                events.drain(..excess);
                runner.stats.events_dropped += excess as u64;
                runner.state.pending = events;
                runner.save_due = true;
                runner.publish_stats(&self.ctx);
            }
        }
        orphans.append(&mut self.orphans);
        let excess = orphans.len().saturating_sub(MAX_PENDING_EVENTS);
        orphans.drain(..excess);
        self.orphans = orphans;
    }
}

#[cfg(test)]
mod tests;
