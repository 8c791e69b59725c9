//! Forecast jobs inside the agent (`forecasts:` in the configuration): what a job is
//! ([`JobConfig`], checked by [`check`]), and [`ForecastJobs`], which owns the jobs' schedule,
//! their state and their gauges.
//!
//! Each run of a job queries Prometheus over `range` up to now, forecasts every returned series
//! (labels kept) and then:
//!
//! - **breach**: when `threshold` is set and the forecast (or its 80 % band) crosses it within
//!   the horizon, the series' breach window opens and one [`types::BREACH_PREDICTED`] event is
//!   emitted; later runs that still predict the crossing emit nothing, and only after a run
//!   that predicts no crossing (the window closed) can a new event follow;
//! - **self-check**: the forecast points up to the longest `ahead` are kept as predictions
//!   (bounded; the first prediction of a time is kept, so what is checked is the forecast
//!   made about `ahead` before, as the gauge showed it), and compared with the observations
//!   once Prometheus has them. When the MAPE of the checks within `check_window` exceeds
//!   `mape_limit` (at least [`MIN_CHECKS`] checks), the series turns degraded
//!   ([`types::DEGRADED`], once) and its gauge falls back to the latest observation (the
//!   reactive value), so a bad model never drives scaling; when the MAPE is back within the
//!   limit the series recovers ([`types::RECOVERED`], once) and the gauge follows the forecast
//!   again;
//! - **gauges**: `forecast_value{job, series labels…, ahead}` per series and `ahead` (a series
//!   label named `job` or `ahead` is exported as `exported_job`/`exported_ahead`, as Prometheus
//!   does), and `forecast_degraded{job, series labels…}` (1 while degraded).
//!
//! A failed run (Prometheus down, a bad answer) is counted per job, shown in the view, and the
//! job runs again at its next interval; the gauges keep their last values meanwhile. A job's
//! state (open breaches, pending predictions and checks, degraded flags, counters) is saved
//! as `<name>.json` in the state directory after each run and loaded at start; a file that
//! cannot be read is reported in the view and the job starts fresh. Time comes from an
//! injected [`Clock`] only.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opsloop_core::config::ConfigDuration;
use opsloop_core::event::Event;
use opsloop_core::time::{Clock, format_rfc3339};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thiserror::Error;

use crate::accuracy;
use crate::capacity::{self, Direction, Threshold};
use crate::pipeline::{ForecastOptions, ForecastPoint, Horizon, MAX_HORIZON_STEPS};
use crate::prometheus::{PrometheusClient, RangeQuery, redact_url};
use crate::series::{Labels, Series};

/// The event types the jobs emit.
pub mod types {
    /// A series' forecast crosses the job's threshold within the horizon (once per breach
    /// window). Subject: the series; data: `job`, `labels`, `model`, `degraded`, `threshold`,
    /// `expected`, `earliest_80`, `latest_80`, `message`.
    pub const BREACH_PREDICTED: &str = "io.opsloop.forecast.breach_predicted";
    /// A series' rolling MAPE exceeded the job's limit: its gauge now shows the latest
    /// observation. Data: `job`, `labels`, `model`, `mape`, `mape_limit`, `checks`,
    /// `fallback`.
    pub const DEGRADED: &str = "io.opsloop.forecast.degraded";
    /// A degraded series' rolling MAPE is back within the limit: its gauge follows the
    /// forecast again. Same data as [`DEGRADED`] without `fallback`.
    pub const RECOVERED: &str = "io.opsloop.forecast.recovered";
}

/// Checks needed in the window before a series can be judged degraded or recovered.
pub const MIN_CHECKS: usize = 3;
/// Predictions kept per series waiting for their observation.
pub const MAX_PENDING: usize = 4096;
/// Checked predictions kept per series (besides the window).
pub const MAX_CHECKED: usize = 4096;
/// The largest grid a job may ask Prometheus for (`range / step`).
pub const MAX_QUERY_POINTS: i64 = 200_000;
/// The longest `timeout` a job may give Prometheus.
pub const MAX_TIMEOUT: ConfigDuration = ConfigDuration::minutes(10);
/// The largest Prometheus answer a job reads.
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// The version written into state files.
const STATE_VERSION: u32 = 1;

/// One job as written under `forecasts:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// The job's name: its API path, gauge label and state file (`[A-Za-z0-9_.-]`, starting
    /// with a letter or digit).
    pub name: String,
    /// The Prometheus server (`http://host:9090`).
    pub prometheus: String,
    /// PromQL; one forecast per returned series.
    pub query: String,
    /// History fetched each run.
    #[serde(default = "default_range")]
    pub range: ConfigDuration,
    /// Query resolution (the forecast's step).
    #[serde(default = "default_step")]
    pub step: ConfigDuration,
    /// Time between runs.
    #[serde(default = "default_every")]
    pub every: ConfigDuration,
    /// How far ahead to forecast (and look for a breach).
    #[serde(default = "default_horizon")]
    pub horizon: ConfigDuration,
    /// The value whose crossing is a breach (none: no breach events).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Which side of `threshold` is the breach.
    #[serde(default = "default_direction")]
    pub direction: Direction,
    /// Leads of the exported gauges (`ahead` label).
    #[serde(default = "default_ahead")]
    pub ahead: Vec<ConfigDuration>,
    /// The rolling MAPE (a fraction) above which the model is degraded.
    #[serde(default = "default_mape_limit")]
    pub mape_limit: f64,
    /// The window of checked predictions the MAPE is computed over.
    #[serde(default = "default_check_window")]
    pub check_window: ConfigDuration,
    /// Give up on Prometheus after this long.
    #[serde(default = "default_timeout")]
    pub timeout: ConfigDuration,
    /// Season lengths (default: a day and a week, when the history covers two of them).
    #[serde(default)]
    pub seasons: Vec<ConfigDuration>,
    /// Series forecast per run at most (the first by name; the rest is reported).
    #[serde(default = "default_max_series")]
    pub max_series: usize,
}

fn default_range() -> ConfigDuration {
    ConfigDuration::days(7)
}
fn default_step() -> ConfigDuration {
    ConfigDuration::minutes(5)
}
fn default_every() -> ConfigDuration {
    ConfigDuration::minutes(5)
}
fn default_horizon() -> ConfigDuration {
    ConfigDuration::days(1)
}
fn default_direction() -> Direction {
    Direction::Above
}
fn default_ahead() -> Vec<ConfigDuration> {
    vec![ConfigDuration::minutes(5)]
}
fn default_mape_limit() -> f64 {
    0.15
}
fn default_check_window() -> ConfigDuration {
    ConfigDuration::minutes(60)
}
fn default_timeout() -> ConfigDuration {
    ConfigDuration::minutes(1)
}
fn default_max_series() -> usize {
    50
}

impl JobConfig {
    fn step_ms(&self) -> i64 {
        self.step.as_millis_i64().max(1)
    }

    fn every_ms(&self) -> i64 {
        self.every.as_millis_i64().max(1)
    }

    /// The lead whose predictions the self-check keeps: the longest `ahead`, at least a step.
    fn check_lead_ms(&self) -> i64 {
        self.ahead
            .iter()
            .map(|a| a.as_millis_i64())
            .max()
            .unwrap_or(0)
            .max(self.step_ms())
    }

    fn threshold(&self) -> Option<Threshold> {
        self.threshold.map(|value| Threshold {
            value,
            direction: self.direction,
        })
    }

    fn forecast_options(&self) -> ForecastOptions {
        let mut options = ForecastOptions {
            horizon: Horizon::Millis(self.horizon.as_millis_i64()),
            ..ForecastOptions::default()
        };
        options.prepare.seasons_ms = self.seasons.iter().map(|s| s.as_millis_i64()).collect();
        options
    }
}

/// A checked job, ready to run.
#[derive(Clone, Debug)]
pub struct ForecastJob {
    /// What was written.
    pub config: JobConfig,
    client: PrometheusClient,
}

/// Why `forecasts:` cannot run.
#[derive(Debug, Error, PartialEq)]
pub enum JobError {
    /// A job or one of its fields is wrong.
    #[error("{path}: {message}")]
    Invalid {
        /// Where: `forecasts[1].step`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Checks `forecasts:` (each element as written); an error names `forecasts[i].field`.
pub fn check(values: &[Value]) -> Result<Vec<ForecastJob>, JobError> {
    let mut names = BTreeSet::new();
    let mut jobs = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let invalid = |field: &str, message: String| JobError::Invalid {
            path: if field.is_empty() || field == "." {
                format!("forecasts[{i}]")
            } else {
                format!("forecasts[{i}].{field}")
            },
            message,
        };
        let mut config: JobConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            invalid(&path, e.into_inner().to_string())
        })?;
        // The default timeout (a minute) never outlasts a shorter interval; a written one
        // that does is an error (below).
        if value.get("timeout").is_none() && config.timeout.get() > config.every.get() {
            config.timeout = config.every;
        }
        check_fields(&config).map_err(|(field, message)| invalid(field, message))?;
        if !names.insert(config.name.clone()) {
            return Err(invalid(
                "name",
                format!("{:?} is used by an earlier job", config.name),
            ));
        }
        let timeout = config.timeout.get();
        let client = PrometheusClient::new(&config.prometheus, timeout, MAX_ANSWER_BYTES)
            .map_err(|e| invalid("prometheus", e.to_string()))?;
        jobs.push(ForecastJob { config, client });
    }
    Ok(jobs)
}

/// What [`check`] cannot leave to serde: names, bounds, relations between fields.
fn check_fields(c: &JobConfig) -> Result<(), (&'static str, String)> {
    let name_ok = c
        .name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && c.name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && c.name.len() <= 128;
    if !name_ok {
        return Err((
            "name",
            format!(
                "{:?}: use letters, digits, '_', '-' and '.', starting with a letter or digit (at most 128)",
                c.name
            ),
        ));
    }
    if c.query.trim().is_empty() {
        return Err(("query", "must not be empty".into()));
    }
    let step = c.step.as_millis_i64();
    if step < 1000 {
        return Err(("step", format!("{} is below the minimum of 1s", c.step)));
    }
    if c.every.as_millis_i64() < 1000 {
        return Err(("every", format!("{} is below the minimum of 1s", c.every)));
    }
    if c.timeout.as_millis_i64() < 1 {
        return Err(("timeout", "must be positive".into()));
    }
    if c.timeout.get() > MAX_TIMEOUT.get() {
        return Err((
            "timeout",
            format!(
                "{} is above the maximum of {MAX_TIMEOUT}: a Prometheus that slow holds the job's runs",
                c.timeout
            ),
        ));
    }
    if c.timeout.get() > c.every.get() {
        return Err((
            "timeout",
            format!(
                "{} is longer than `every` ({}): a run must end before the next one is due",
                c.timeout, c.every
            ),
        ));
    }
    let range = c.range.as_millis_i64();
    if range < 2 * step || range / step > MAX_QUERY_POINTS {
        return Err((
            "range",
            format!(
                "{} must cover between 2 and {MAX_QUERY_POINTS} steps of {}",
                c.range, c.step
            ),
        ));
    }
    let horizon = c.horizon.as_millis_i64();
    if horizon < step || horizon / step > MAX_HORIZON_STEPS as i64 {
        return Err((
            "horizon",
            format!(
                "{} must cover between 1 and {MAX_HORIZON_STEPS} steps of {}",
                c.horizon, c.step
            ),
        ));
    }
    if c.ahead.is_empty() {
        return Err(("ahead", "needs at least one lead".into()));
    }
    if let Some(a) = c
        .ahead
        .iter()
        .find(|a| a.as_millis_i64() <= 0 || a.as_millis_i64() > horizon)
    {
        return Err((
            "ahead",
            format!("{a} must be positive and within the horizon {}", c.horizon),
        ));
    }
    if !(c.mape_limit.is_finite() && c.mape_limit > 0.0) {
        return Err((
            "mape_limit",
            format!("{} must be a positive fraction (0.15 = 15 %)", c.mape_limit),
        ));
    }
    if c.check_window.as_millis_i64() < step {
        return Err((
            "check_window",
            format!("{} is shorter than a step ({})", c.check_window, c.step),
        ));
    }
    if c.threshold.is_some_and(|t| !t.is_finite()) {
        return Err(("threshold", "must be a finite number".into()));
    }
    if !(1..=10_000).contains(&c.max_series) {
        return Err(("max_series", "must be between 1 and 10000".into()));
    }
    if let Some(s) = c.seasons.iter().find(|s| s.as_millis_i64() < 2 * step) {
        return Err(("seasons", format!("{s} is shorter than two steps")));
    }
    Ok(())
}

/// Gauges per followed series, labelled with the series' own labels (the same type as the
/// agent's `SeriesGauges`).
pub type SeriesGauges = Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>;

/// The jobs' metric families; register them once, under the agent's `opsloop` prefix.
#[derive(Clone, Debug, Default)]
pub struct JobMetrics {
    /// `forecast_value{job, series labels…, ahead}`.
    pub values: SeriesGauges,
    /// `forecast_degraded{job, series labels…}`: 1 while the gauge shows the observation.
    pub degraded: SeriesGauges,
    /// `forecast_job_failures_total{job}`: runs that got no answer from Prometheus.
    pub failures: Family<Vec<(String, String)>, Counter>,
}

impl JobMetrics {
    /// Registers the families on `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "forecast_value",
            "Forecast of a series `ahead` from its last observation (the observation itself while the job's model is degraded)",
            self.values.clone(),
        );
        registry.register(
            "forecast_degraded",
            "1 while a series' forecast misses its MAPE limit and its gauge shows the observation",
            self.degraded.clone(),
        );
        registry.register(
            "forecast_job_failures",
            "Forecast job runs that failed (Prometheus down or a bad answer), per job",
            self.failures.clone(),
        );
    }
}

/// The labels of a series' gauges: `job` first, then the series' labels (without `__name__`;
/// `job` and `ahead` renamed `exported_…`, prefixed again while the name is taken, as a series
/// from a Pushgateway or a federation may already carry `exported_job`), then `ahead` when
/// given. A label twice would make the whole exposition invalid.
fn gauge_labels(job: &str, labels: &Labels, ahead: Option<&str>) -> Vec<(String, String)> {
    let mut used: BTreeSet<String> = labels
        .keys()
        .filter(|k| k.as_str() != "__name__")
        .cloned()
        .collect();
    used.insert("job".to_owned());
    used.insert("ahead".to_owned());
    let mut out = vec![("job".to_owned(), job.to_owned())];
    for (k, v) in labels {
        let k = match k.as_str() {
            "__name__" => continue,
            "job" | "ahead" => {
                let mut renamed = format!("exported_{k}");
                while used.contains(&renamed) {
                    renamed.insert_str(0, "exported_");
                }
                used.insert(renamed.clone());
                renamed
            }
            _ => k.clone(),
        };
        out.push((k, v.clone()));
    }
    if let Some(a) = ahead {
        out.push(("ahead".to_owned(), a.to_owned()));
    }
    out
}

/// Numbers in state files: JSON has no NaN or infinity (serde_json writes them as `null`, and
/// a `null` f64 fails the load), so non-finite values are written as the strings `NaN`,
/// `+Inf` and `-Inf` (Prometheus' spelling); `null` reads as NaN.
mod stored_f64 {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// One stored number.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Num(pub(super) f64);

    impl Serialize for Num {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                v if v.is_finite() => s.serialize_f64(v),
                v if v.is_nan() => s.serialize_str("NaN"),
                v if v > 0.0 => s.serialize_str("+Inf"),
                _ => s.serialize_str("-Inf"),
            }
        }
    }

    impl<'de> Deserialize<'de> for Num {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Raw {
                Number(f64),
                Text(String),
                Null(()),
            }
            Ok(Num(match Raw::deserialize(d)? {
                Raw::Number(v) => v,
                Raw::Text(t) => match t.as_str() {
                    "+Inf" | "Inf" | "inf" => f64::INFINITY,
                    "-Inf" | "-inf" => f64::NEG_INFINITY,
                    _ => f64::NAN,
                },
                Raw::Null(()) => f64::NAN,
            }))
        }
    }

    pub(super) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        Num(*v).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Num::deserialize(d).map(|n| n.0)
    }

    /// `Option<f64>`.
    pub(super) mod opt {
        use super::*;

        pub(in super::super) fn serialize<S: Serializer>(
            v: &Option<f64>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            v.map(Num).serialize(s)
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<f64>, D::Error> {
            Ok(Option::<Num>::deserialize(d)?.map(|n| n.0))
        }
    }

    /// `Option<(i64, f64)>`.
    pub(super) mod opt_point {
        use super::*;

        pub(in super::super) fn serialize<S: Serializer>(
            v: &Option<(i64, f64)>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            v.map(|(t, v)| (t, Num(v))).serialize(s)
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<(i64, f64)>, D::Error> {
            Ok(Option::<(i64, Num)>::deserialize(d)?.map(|(t, n)| (t, n.0)))
        }
    }

    /// `BTreeMap<i64, f64>`.
    pub(super) mod map {
        use super::*;

        pub(in super::super) fn serialize<S: Serializer>(
            v: &BTreeMap<i64, f64>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_map(v.iter().map(|(t, v)| (t, Num(*v))))
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<BTreeMap<i64, f64>, D::Error> {
            Ok(BTreeMap::<i64, Num>::deserialize(d)?
                .into_iter()
                .map(|(t, n)| (t, n.0))
                .collect())
        }
    }
}

/// A prediction compared with its observation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Check {
    time_ms: i64,
    #[serde(with = "stored_f64")]
    predicted: f64,
    #[serde(with = "stored_f64")]
    actual: f64,
}

/// A breach window that is open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OpenBreach {
    /// When the window opened (the run that emitted the event).
    since_ms: i64,
    /// The latest run's warning (`capacity::CapacityWarning` as JSON).
    warning: Value,
}

/// What the latest run computed for a series; shown by the view, not saved.
#[derive(Clone, Debug, Default)]
struct SeriesView {
    points: Vec<ForecastPoint>,
    /// `(ahead, value, from the forecast?)`.
    gauges: Vec<(String, f64, bool)>,
}

/// A series' saved state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SeriesState {
    labels: Labels,
    model: Option<String>,
    error: Option<String>,
    #[serde(with = "stored_f64::opt_point")]
    last_observation: Option<(i64, f64)>,
    /// Target time → the first prediction of it.
    #[serde(with = "stored_f64::map")]
    pending: BTreeMap<i64, f64>,
    checked: VecDeque<Check>,
    /// Rolling MAPE as a fraction.
    #[serde(with = "stored_f64::opt")]
    mape: Option<f64>,
    degraded: bool,
    breach: Option<OpenBreach>,
    #[serde(skip)]
    view: SeriesView,
}

/// A job's saved state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct JobState {
    version: u32,
    runs: u64,
    failures: u64,
    consecutive_failures: u64,
    last_run_ms: Option<i64>,
    last_success_ms: Option<i64>,
    last_error: Option<String>,
    /// Series of the last answer not forecast (over `max_series`).
    series_dropped: usize,
    series: BTreeMap<String, SeriesState>,
}

struct Slot {
    job: ForecastJob,
    state: JobState,
    /// `None`: at once.
    next_run_ms: Option<i64>,
    state_error: Option<String>,
    /// The id of the run in flight: a job never runs twice at once (a run that outlasts its
    /// interval delays its own next run, nobody else's).
    running: Option<u64>,
}

struct Inner {
    slots: BTreeMap<String, Slot>,
    state_dir: Option<PathBuf>,
    /// The id of the next claimed run.
    next_run_id: u64,
}

/// The jobs of `forecasts:`: their schedule, state, gauges and view.
pub struct ForecastJobs {
    clock: Arc<dyn Clock>,
    source: String,
    metrics: JobMetrics,
    inner: Mutex<Inner>,
}

/// A run [`ForecastJobs::claim_due`] handed out: fetch, then [`ForecastJobs::complete`].
#[derive(Clone, Debug)]
pub struct DueRun {
    job: ForecastJob,
    /// When the run was due (the query's end and the events' time).
    pub now_ms: i64,
    /// Which claim this is (its job is not claimed again until this run completes).
    run_id: u64,
}

/// Releases a claimed run when the task running it ends in any way (completed, panicked or
/// aborted with the agent's task), so that its job can be claimed again.
struct RunGuard {
    jobs: Arc<ForecastJobs>,
    name: String,
    run_id: u64,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.jobs.release(&self.name, self.run_id);
    }
}

impl DueRun {
    /// The job's name.
    pub fn name(&self) -> &str {
        &self.job.config.name
    }

    /// Queries Prometheus over the job's range up to the run's time (aligned to the step, so
    /// successive runs read the same grid).
    pub async fn fetch(&self) -> Result<Vec<Series>, String> {
        let c = &self.job.config;
        let step = c.step_ms();
        let end_ms = self.now_ms - self.now_ms.rem_euclid(step);
        let query = RangeQuery {
            query: c.query.clone(),
            start_ms: end_ms.saturating_sub(c.range.as_millis_i64()),
            end_ms,
            step_ms: step,
        };
        self.job
            .client
            .query_range(&query)
            .await
            .map(|read| read.series)
            .map_err(|e| e.to_string())
    }
}

/// One series of a run, forecast (outside the lock: fitting is the expensive part).
struct Fitted {
    key: String,
    labels: Labels,
    /// Finite observations, sorted by time, one per time.
    observed: Vec<(i64, f64)>,
    forecast: Result<Fit, String>,
}

struct Fit {
    model: String,
    points: Vec<ForecastPoint>,
    /// The last grid time of the history (the forecast starts a step later).
    last_grid_ms: i64,
}

struct FitRun {
    series: Vec<Fitted>,
    dropped: usize,
}

fn fit(config: &JobConfig, mut series: Vec<Series>) -> FitRun {
    // By name, so that the series kept under `max_series` stay the same from run to run.
    series.sort_by(|a, b| a.name.cmp(&b.name));
    let dropped = series.len().saturating_sub(config.max_series);
    series.truncate(config.max_series);
    let options = config.forecast_options();
    let series = series
        .into_iter()
        .map(|s| {
            let mut observed: Vec<(i64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(_, v)| v.is_finite())
                .collect();
            observed.sort_by_key(|p| p.0);
            observed.dedup_by_key(|p| p.0);
            let forecast = crate::pipeline::forecast_series(&s, &options)
                .map(|o| Fit {
                    model: o.forecast.model.name().to_owned(),
                    points: o.forecast.forecast,
                    last_grid_ms: o.prepared.last_ms(),
                })
                .map_err(|e| e.to_string());
            Fitted {
                key: s.name,
                labels: s.labels,
                observed,
                forecast,
            }
        })
        .collect();
    FitRun { series, dropped }
}

/// The MAPE of `checked` as a fraction.
fn rolling_mape(checked: &VecDeque<Check>) -> Option<f64> {
    let mut sorted: Vec<Check> = checked.iter().copied().collect();
    sorted.sort_by_key(|c| c.time_ms);
    let predicted: Vec<(i64, f64)> = sorted.iter().map(|c| (c.time_ms, c.predicted)).collect();
    let actual: Vec<(i64, f64)> = sorted.iter().map(|c| (c.time_ms, c.actual)).collect();
    accuracy::mape(&predicted, &actual).map(|percent| percent / 100.0)
}

/// The first forecast point at least `lead_ms` after `from_ms`, else the last one.
fn point_at(points: &[ForecastPoint], from_ms: i64, lead_ms: i64) -> Option<&ForecastPoint> {
    let target = from_ms.saturating_add(lead_ms);
    points
        .iter()
        .find(|p| p.time_ms >= target)
        .or_else(|| points.last())
}

fn state_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

/// Writes through a temporary file, synced, and a rename, then syncs the directory: a crash
/// (or a power loss) leaves the old state or the new one, never an empty file.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The rename is durable once the directory is; a directory that cannot be opened
        // for syncing (some filesystems) still has the renamed file.
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Deletes a state file that no job claims any more.
fn remove_state_file(path: &Path) {
    // A file that stays is harmless: the next start tries again.
    let _ = std::fs::remove_file(path);
}

fn read_state(path: &Path) -> Result<Option<JobState>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let state: JobState = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a job state ({e}); starting fresh", path.display()))?;
    if state.version != STATE_VERSION {
        return Err(format!(
            "{}: state version {} is not {STATE_VERSION}; starting fresh",
            path.display(),
            state.version
        ));
    }
    Ok(Some(state))
}

fn opt_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(format_rfc3339(ms)))
}

fn point_json(p: &ForecastPoint) -> Value {
    json!({
        "timestamp": format_rfc3339(p.time_ms),
        "value": p.value,
        "lower_80": p.lower_80,
        "upper_80": p.upper_80,
        "lower_95": p.lower_95,
        "upper_95": p.upper_95,
    })
}

impl ForecastJobs {
    /// The jobs, none run yet; `source` is the `source` of their events.
    pub fn new(
        jobs: Vec<ForecastJob>,
        clock: Arc<dyn Clock>,
        source: impl Into<String>,
        metrics: JobMetrics,
    ) -> ForecastJobs {
        let slots = jobs
            .into_iter()
            .map(|job| {
                (
                    job.config.name.clone(),
                    Slot {
                        job,
                        state: JobState {
                            version: STATE_VERSION,
                            ..JobState::default()
                        },
                        next_run_ms: None,
                        state_error: None,
                        running: None,
                    },
                )
            })
            .collect();
        ForecastJobs {
            clock,
            source: source.into(),
            metrics,
            inner: Mutex::new(Inner {
                slots,
                state_dir: None,
                next_run_id: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state stays consistent between statements: a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Saves state in `dir` from now on, and loads the saved state of every job that has not
    /// run yet. A state that cannot be read is reported (here and in the job's view) and the
    /// job starts fresh. State files no job claims (jobs removed while the agent was down,
    /// temporary files of an interrupted save) are deleted, so they do not linger forever.
    pub fn load_state(&self, dir: &Path) -> Vec<String> {
        let mut problems = Vec::new();
        let mut inner = self.lock();
        if let Err(e) = std::fs::create_dir_all(dir) {
            problems.push(format!("{}: {e}", dir.display()));
        }
        inner.state_dir = Some(dir.to_path_buf());
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(file_name) = file_name.to_str() else {
                    continue;
                };
                let job = file_name
                    .strip_suffix(".json")
                    .or_else(|| file_name.strip_suffix(".json.tmp"));
                if let Some(job) = job
                    && (file_name.ends_with(".tmp") || !inner.slots.contains_key(job))
                {
                    remove_state_file(&entry.path());
                }
            }
        }
        for (name, slot) in inner.slots.iter_mut() {
            if slot.state.runs > 0 {
                continue;
            }
            match read_state(&state_path(dir, name)) {
                Ok(Some(state)) => slot.state = state,
                Ok(None) => {}
                Err(e) => {
                    problems.push(e.clone());
                    slot.state_error = Some(e);
                }
            }
        }
        problems
    }

    /// Replaces the job set (a reload): jobs that keep their name keep their state; a job
    /// whose configuration changed runs at once; gauges of removed jobs and of changed jobs
    /// are removed (a changed job's come back with its run).
    pub fn replace(&self, jobs: Vec<ForecastJob>) {
        let mut inner = self.lock();
        let mut old = std::mem::take(&mut inner.slots);
        let dir = inner.state_dir.clone();
        for job in jobs {
            let name = job.config.name.clone();
            let slot = match old.remove(&name) {
                Some(mut slot) if slot.job.config == job.config => {
                    slot.job = job;
                    slot
                }
                Some(mut slot) => {
                    self.remove_gauges(&slot.job.config, &slot.state);
                    slot.job = job;
                    slot.next_run_ms = None;
                    slot
                }
                None => {
                    let mut slot = Slot {
                        job,
                        state: JobState {
                            version: STATE_VERSION,
                            ..JobState::default()
                        },
                        next_run_ms: None,
                        state_error: None,
                        running: None,
                    };
                    if let Some(dir) = &dir {
                        match read_state(&state_path(dir, &name)) {
                            Ok(Some(state)) => slot.state = state,
                            Ok(None) => {}
                            Err(e) => slot.state_error = Some(e),
                        }
                    }
                    slot
                }
            };
            inner.slots.insert(name, slot);
        }
        for (name, slot) in &old {
            self.remove_gauges(&slot.job.config, &slot.state);
            self.metrics
                .failures
                .remove(&vec![("job".to_owned(), name.clone())]);
            // Under the lock: a run of the removed job completing now sees it gone and does
            // not save (see `complete`).
            if let Some(dir) = &dir {
                remove_state_file(&state_path(dir, name));
            }
        }
    }

    fn remove_gauges(&self, config: &JobConfig, state: &JobState) {
        for series in state.series.values() {
            self.remove_series_gauges(config, &series.labels);
        }
    }

    fn remove_series_gauges(&self, config: &JobConfig, labels: &Labels) {
        for ahead in &config.ahead {
            let label = crate::hpa::ahead_label(ahead.as_millis_i64());
            let labels = gauge_labels(&config.name, labels, Some(&label));
            self.metrics.values.remove(&labels);
        }
        self.metrics
            .degraded
            .remove(&gauge_labels(&config.name, labels, None));
    }

    /// The names of the jobs.
    pub fn names(&self) -> Vec<String> {
        self.lock().slots.keys().cloned().collect()
    }

    /// The runs due now, each job at most once per interval (a clock stepped back by more
    /// than an interval makes a job due again rather than silent until the clock catches up)
    /// and never while its previous run is in flight. Claiming schedules the job's next run;
    /// a claimed run must be given to [`ForecastJobs::complete`] (or released by the task
    /// running it ending), or its job is not claimed again.
    pub fn claim_due(&self) -> Vec<DueRun> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let Inner {
            slots, next_run_id, ..
        } = &mut *inner;
        let mut due = Vec::new();
        for slot in slots.values_mut() {
            if slot.running.is_some() {
                continue;
            }
            let every = slot.job.config.every_ms();
            let is_due = match slot.next_run_ms {
                None => true,
                Some(next) => now >= next || next.saturating_sub(now) > every,
            };
            if is_due {
                slot.next_run_ms = Some(now.saturating_add(every));
                let run_id = *next_run_id;
                *next_run_id = next_run_id.wrapping_add(1);
                slot.running = Some(run_id);
                due.push(DueRun {
                    job: slot.job.clone(),
                    now_ms: now,
                    run_id,
                });
            }
        }
        due
    }

    /// Ends the claim of run `run_id` of job `name` (nothing when it already ended).
    fn release(&self, name: &str, run_id: u64) {
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(name)
            && slot.running == Some(run_id)
        {
            slot.running = None;
        }
    }

    /// When the next run is due (`None`: no jobs).
    pub fn next_due_ms(&self) -> Option<i64> {
        let now = self.clock.now_ms();
        self.lock()
            .slots
            .values()
            .map(|s| s.next_run_ms.unwrap_or(now))
            .min()
    }

    /// Claims the due runs and starts each as its own task on `tasks` (fetch with the job's
    /// timeout, then fitting on the blocking pool); each task yields its job's name and events.
    /// Nothing here waits for a run: one slow Prometheus delays only its own job. Returns how
    /// many runs were started. A task that fails (a panic while fitting) is counted as a
    /// failed run of its job; a task dropped unfinished releases its job.
    pub fn spawn_due(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<(String, Vec<Event>)>,
    ) -> usize {
        let runs = self.claim_due();
        let started = runs.len();
        for run in runs {
            let me = Arc::clone(self);
            tasks.spawn(async move {
                let name = run.name().to_owned();
                let _guard = RunGuard {
                    jobs: Arc::clone(&me),
                    name: name.clone(),
                    run_id: run.run_id,
                };
                // The client's timeout bounds each request; this bounds the whole fetch (a
                // body trickling in), with a little slack so the client's error wins.
                let limit = run.job.config.timeout.get() + Duration::from_secs(1);
                let fetched = match tokio::time::timeout(limit, run.fetch()).await {
                    Ok(fetched) => fetched,
                    Err(_) => Err(format!(
                        "{}: no answer within {limit:?}",
                        redact_url(&run.job.config.prometheus)
                    )),
                };
                let completer = Arc::clone(&me);
                let events =
                    match tokio::task::spawn_blocking(move || completer.complete(&run, fetched))
                        .await
                    {
                        Ok(events) => events,
                        Err(e) => {
                            me.record_failure(&name, format!("forecast task failed: {e}"));
                            Vec::new()
                        }
                    };
                (name, events)
            });
        }
        started
    }

    /// Claims the due runs, runs them concurrently and waits for all of them; their events
    /// in the order of the jobs' names. (The agent uses [`ForecastJobs::drive`], which does
    /// not wait for one run before claiming the next.)
    pub async fn run_due(self: &Arc<Self>) -> Vec<Event> {
        let mut tasks = tokio::task::JoinSet::new();
        self.spawn_due(&mut tasks);
        let mut done: Vec<(String, Vec<Event>)> = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            // A task's own panic is counted by it (see `spawn_due`); a join error here is a
            // cancelled runtime.
            if let Ok(result) = joined {
                done.push(result);
            }
        }
        done.sort_by(|a, b| a.0.cmp(&b.0));
        done.into_iter().flat_map(|(_, events)| events).collect()
    }

    /// Runs the jobs until the returned future is dropped: every job on its own schedule,
    /// each run a task of its own (at most one per job, so at most as many tasks as jobs),
    /// and `publish` called with the events of each run as it completes. Looks at the
    /// schedule at least every `max_sleep` (reloads and clock steps are seen within it).
    pub async fn drive<F, Fut>(self: Arc<Self>, max_sleep: Duration, mut publish: F)
    where
        F: FnMut(Vec<Event>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            self.spawn_due(&mut tasks);
            let sleep = self.wait(max_sleep).max(Duration::from_millis(50));
            tokio::select! {
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok((_, events)) = joined
                        && !events.is_empty()
                    {
                        publish(events).await;
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    fn record_failure(&self, name: &str, message: String) {
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(name) {
            slot.state.failures += 1;
            slot.state.consecutive_failures += 1;
            slot.state.last_error = Some(message);
        }
        self.metrics
            .failures
            .get_or_create(&vec![("job".to_owned(), name.to_owned())])
            .inc();
    }

    /// Completes `run` with what the fetch gave: forecasts, self-check, breaches, gauges, and
    /// the saved state. Returns the events to publish. A run whose job was removed or changed
    /// meanwhile is dropped (the changed job runs on its own).
    pub fn complete(&self, run: &DueRun, fetched: Result<Vec<Series>, String>) -> Vec<Event> {
        let events = self.complete_claimed(run, fetched);
        // After the state is saved: the job's next run never races this one's save.
        self.release(run.name(), run.run_id);
        events
    }

    fn complete_claimed(&self, run: &DueRun, fetched: Result<Vec<Series>, String>) -> Vec<Event> {
        let fitted = fetched.map(|series| fit(&run.job.config, series));
        let name = run.name();
        let (events, save) = {
            let mut inner = self.lock();
            let dir = inner.state_dir.clone();
            let Some(slot) = inner.slots.get_mut(name) else {
                return Vec::new();
            };
            if slot.job.config != run.job.config {
                return Vec::new();
            }
            let events = self.apply(&run.job.config, &mut slot.state, run.now_ms, fitted);
            let save = dir.map(|d| (state_path(&d, name), serde_json::to_vec(&slot.state)));
            (events, save)
        };
        if let Some((path, bytes)) = save {
            let result = bytes
                .map_err(|e| e.to_string())
                .and_then(|b| write_atomic(&path, &b).map_err(|e| e.to_string()));
            let mut inner = self.lock();
            match inner.slots.get_mut(name) {
                Some(slot) => {
                    slot.state_error = result
                        .err()
                        .map(|e| format!("{}: state not saved: {e}", path.display()));
                }
                // Removed by a reload while the file was written: the file goes with it.
                None => remove_state_file(&path),
            }
        }
        events
    }

    fn event(&self, kind: &str, subject: &str, now: i64, data: Value, key: &str) -> Event {
        Event::new(kind, &self.source, Some(subject), now, data).with_fingerprint_key(key)
    }

    fn apply(
        &self,
        config: &JobConfig,
        state: &mut JobState,
        now: i64,
        fitted: Result<FitRun, String>,
    ) -> Vec<Event> {
        state.runs += 1;
        state.last_run_ms = Some(now);
        let run = match fitted {
            Ok(run) => run,
            Err(message) => {
                state.failures += 1;
                state.consecutive_failures += 1;
                state.last_error = Some(message);
                self.metrics
                    .failures
                    .get_or_create(&vec![("job".to_owned(), config.name.clone())])
                    .inc();
                return Vec::new();
            }
        };
        state.consecutive_failures = 0;
        state.last_error = None;
        state.last_success_ms = Some(now);
        state.series_dropped = run.dropped;
        let mut events = Vec::new();
        let seen: BTreeSet<String> = run.series.iter().map(|f| f.key.clone()).collect();
        let gone: Vec<String> = state
            .series
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(s) = state.series.remove(&key) {
                self.remove_series_gauges(config, &s.labels);
            }
        }
        for f in run.series {
            let series = state.series.entry(f.key.clone()).or_default();
            series.labels = f.labels.clone();
            self.update_series(config, series, now, &f, &mut events);
        }
        events
    }

    fn update_series(
        &self,
        config: &JobConfig,
        s: &mut SeriesState,
        now: i64,
        f: &Fitted,
        events: &mut Vec<Event>,
    ) {
        let job = config.name.as_str();
        // A clock stepped back leaves predictions and checks "from the future": they belong
        // to another timeline (and would skew the MAPE, or wait until the clock catches up),
        // so they go. A run predicts at most a horizon (and a step of alignment) ahead.
        let latest_target = now
            .saturating_add(config.horizon.as_millis_i64())
            .saturating_add(config.step_ms());
        s.pending.retain(|t, _| *t <= latest_target);
        s.checked.retain(|c| c.time_ms <= now);
        // The window stays open (no repeated event), but not "open since" a future time.
        if let Some(b) = s.breach.as_mut()
            && b.since_ms > now
        {
            b.since_ms = now;
        }
        // Self-check: every prediction whose time has been observed is compared (or dropped
        // when Prometheus has no sample there).
        let last_seen = f.observed.last().map(|p| p.0);
        if let Some(last_seen) = last_seen {
            let due: Vec<(i64, f64)> = s
                .pending
                .range(..=last_seen)
                .map(|(t, v)| (*t, *v))
                .collect();
            for (t, predicted) in due {
                s.pending.remove(&t);
                if let Ok(i) = f.observed.binary_search_by_key(&t, |p| p.0)
                    && let Some(&(_, actual)) = f.observed.get(i)
                    && actual != 0.0
                {
                    s.checked.push_back(Check {
                        time_ms: t,
                        predicted,
                        actual,
                    });
                }
            }
        }
        let window_start = now.saturating_sub(config.check_window.as_millis_i64());
        s.checked.retain(|c| c.time_ms >= window_start);
        while s.checked.len() > MAX_CHECKED {
            s.checked.pop_front();
        }
        // Predictions that can no longer be observed (older than the queried range).
        let oldest = now.saturating_sub(config.range.as_millis_i64());
        s.pending.retain(|t, _| *t >= oldest);
        s.mape = rolling_mape(&s.checked);
        s.last_observation = f.observed.last().copied();
        let subject = f.key.as_str();
        let health = |s: &SeriesState| {
            json!({
                "job": job,
                "labels": s.labels,
                "model": s.model,
                "mape": s.mape,
                "mape_limit": config.mape_limit,
                "checks": s.checked.len(),
            })
        };
        match s.mape {
            Some(m) if !s.degraded && s.checked.len() >= MIN_CHECKS && m > config.mape_limit => {
                s.degraded = true;
                let mut data = health(s);
                data["fallback"] = json!(s.last_observation.map(|(_, v)| v));
                events.push(self.event(
                    types::DEGRADED,
                    subject,
                    now,
                    data,
                    &format!("{job}/{now}"),
                ));
            }
            Some(m) if s.degraded && s.checked.len() >= MIN_CHECKS && m <= config.mape_limit => {
                s.degraded = false;
                events.push(self.event(
                    types::RECOVERED,
                    subject,
                    now,
                    health(s),
                    &format!("{job}/{now}"),
                ));
            }
            _ => {}
        }
        match &f.forecast {
            Ok(fit) => {
                s.model = Some(fit.model.clone());
                s.error = None;
                let lead_end = fit.last_grid_ms.saturating_add(config.check_lead_ms());
                for p in fit.points.iter().take_while(|p| p.time_ms <= lead_end) {
                    if p.value.is_finite() {
                        s.pending.entry(p.time_ms).or_insert(p.value);
                    }
                }
                while s.pending.len() > MAX_PENDING {
                    s.pending.pop_first();
                }
                s.view.points = fit.points.clone();
                if let Some(threshold) = config.threshold() {
                    let last_value = s.last_observation.map(|(_, v)| v);
                    let warning =
                        capacity::check(&fit.points, fit.last_grid_ms, last_value, threshold)
                            .and_then(|w| serde_json::to_value(w).ok());
                    match (warning, &mut s.breach) {
                        (Some(w), Some(open)) => open.warning = w,
                        (Some(w), None) => {
                            let mut data = w.clone();
                            data["job"] = json!(job);
                            data["labels"] = json!(s.labels);
                            data["model"] = json!(fit.model);
                            data["degraded"] = json!(s.degraded);
                            events.push(self.event(
                                types::BREACH_PREDICTED,
                                subject,
                                now,
                                data,
                                &format!("{job}/{now}"),
                            ));
                            s.breach = Some(OpenBreach {
                                since_ms: now,
                                warning: w,
                            });
                        }
                        // The window closed: the next crossing opens a new one.
                        (None, _) => s.breach = None,
                    }
                }
            }
            Err(e) => {
                s.model = None;
                s.error = Some(e.clone());
                s.view.points.clear();
            }
        }
        // Gauges: the forecast at each lead; the observation while degraded or without one.
        s.view.gauges.clear();
        let observed = s.last_observation;
        for ahead in &config.ahead {
            let label = crate::hpa::ahead_label(ahead.as_millis_i64());
            let from_forecast = match (&f.forecast, s.degraded) {
                (Ok(fit), false) => {
                    point_at(&fit.points, fit.last_grid_ms, ahead.as_millis_i64()).map(|p| p.value)
                }
                _ => None,
            };
            let value = match (from_forecast, observed) {
                (Some(v), _) => Some((v, true)),
                (None, Some((_, v))) => Some((v, false)),
                (None, None) => None,
            };
            let labels = gauge_labels(job, &s.labels, Some(&label));
            match value {
                Some((v, forecast)) => {
                    self.metrics.values.get_or_create(&labels).set(v);
                    s.view.gauges.push((label, v, forecast));
                }
                None => {
                    self.metrics.values.remove(&labels);
                }
            }
        }
        self.metrics
            .degraded
            .get_or_create(&gauge_labels(job, &s.labels, None))
            .set(if s.degraded { 1.0 } else { 0.0 });
    }

    fn series_json(config: &JobConfig, key: &str, s: &SeriesState, points: bool) -> Value {
        let mut v = json!({
            "series": key,
            "labels": s.labels,
            "model": s.model,
            "error": s.error,
            "degraded": s.degraded,
            "mape": s.mape,
            "mape_limit": config.mape_limit,
            "checks": s.checked.len(),
            "pending_predictions": s.pending.len(),
            "last_observation": s.last_observation.map(|(t, v)| json!({
                "timestamp": format_rfc3339(t),
                "value": v,
            })),
            "breach": s.breach.as_ref().map(|b| {
                let mut w = b.warning.clone();
                w["open_since"] = json!(format_rfc3339(b.since_ms));
                w
            }),
            "gauges": s.view.gauges.iter().map(|(ahead, value, forecast)| json!({
                "ahead": ahead,
                "value": value,
                "source": if *forecast { "forecast" } else { "observation" },
            })).collect::<Vec<_>>(),
        });
        if points {
            v["points"] = s.view.points.iter().map(point_json).collect();
        }
        v
    }

    fn job_json(slot: &Slot, points: bool) -> Value {
        let c = &slot.job.config;
        let st = &slot.state;
        json!({
            "job": c.name,
            "prometheus": redact_url(&c.prometheus),
            "query": c.query,
            "every": c.every,
            "horizon": c.horizon,
            "ahead": c.ahead,
            "threshold": c.threshold().map(|t| json!({"value": t.value, "direction": t.direction})),
            "runs": st.runs,
            "failures": st.failures,
            "consecutive_failures": st.consecutive_failures,
            "last_run": opt_time(st.last_run_ms),
            "last_success": opt_time(st.last_success_ms),
            "next_run": opt_time(slot.next_run_ms),
            "error": st.last_error,
            "state_error": slot.state_error,
            "series_dropped": st.series_dropped,
            "series": st.series.iter().map(|(k, s)| Self::series_json(c, k, s, points)).collect::<Vec<_>>(),
        })
    }

    /// `GET /api/v1/forecasts`: every job with its last run, error and series (labels, model,
    /// degraded, MAPE, open breach, gauges).
    pub fn list(&self) -> Value {
        let inner = self.lock();
        let jobs: Vec<Value> = inner
            .slots
            .values()
            .map(|s| Self::job_json(s, false))
            .collect();
        json!({ "forecasts": jobs })
    }

    /// `GET /api/v1/forecasts/{job}`: the job as in [`ForecastJobs::list`], each series with
    /// its forecast points.
    pub fn get(&self, name: &str) -> Option<Value> {
        let inner = self.lock();
        inner.slots.get(name).map(|s| Self::job_json(s, true))
    }

    /// How long until the next run is due, at most `cap` (for the driver's sleep).
    pub fn wait(&self, cap: Duration) -> Duration {
        let now = self.clock.now_ms();
        let ms = self
            .next_due_ms()
            .map_or(i64::MAX, |next| next.saturating_sub(now))
            .max(0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)).min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsloop_core::time::ManualClock;

    const MIN: i64 = 60_000;
    /// 2023-11-14T22:00:00Z, a whole hour.
    const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;

    fn config(extra: Value) -> Value {
        let mut v = json!({
            "name": "demand",
            "prometheus": "http://127.0.0.1:9",
            "query": "demand",
            "range": "6h",
            "step": "1m",
            "every": "5m",
            "horizon": "1h",
            "check_window": "30m",
        });
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        v
    }

    fn labels() -> Labels {
        [("__name__", "demand"), ("instance", "a")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Six hours of `f` at one minute up to `now` (what the query of a run at `now` returns).
    fn history(now: i64, f: &dyn Fn(i64) -> f64) -> Series {
        let end = now - now.rem_euclid(MIN);
        let labels = labels();
        Series {
            name: crate::series::display_name(&labels),
            labels,
            points: (0..=360)
                .map(|i| end - (360 - i) * MIN)
                .map(|t| (t, f(t)))
                .collect(),
        }
    }

    /// A little deterministic noise, so the series is not constant.
    fn noise(t: i64) -> f64 {
        ((t / MIN * 7919) % 11) as f64 * 0.05
    }

    fn jobs_at(clock: &Arc<ManualClock>, extra: Value) -> ForecastJobs {
        let jobs = check(&[config(extra)]).unwrap();
        ForecastJobs::new(
            jobs,
            Arc::clone(clock) as Arc<dyn Clock>,
            "/opsloop/agent/test/forecasts",
            JobMetrics::default(),
        )
    }

    /// Runs what is due with `f` as Prometheus' data; the events and how many runs there were.
    fn tick(jobs: &ForecastJobs, f: &dyn Fn(i64) -> f64) -> (Vec<Event>, usize) {
        let runs = jobs.claim_due();
        let mut events = Vec::new();
        for run in &runs {
            events.extend(jobs.complete(run, Ok(vec![history(run.now_ms, f)])));
        }
        (events, runs.len())
    }

    fn kinds(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }

    fn series_view(jobs: &ForecastJobs) -> Value {
        jobs.get("demand").unwrap()["series"][0].clone()
    }

    fn gauge(jobs: &ForecastJobs, ahead: &str) -> f64 {
        let mut l = labels();
        l.remove("__name__");
        let labels = gauge_labels("demand", &l, Some(ahead));
        jobs.metrics.values.get_or_create(&labels).get()
    }

    #[test]
    fn check_names_the_job_and_field() {
        let err = |v: Value| check(&[config(json!({})), v]).unwrap_err().to_string();
        assert!(
            err(config(json!({"name": "other", "bogus": 1}))).starts_with("forecasts[1]"),
            "{}",
            err(config(json!({"name": "other", "bogus": 1})))
        );
        let missing = json!({"name": "x", "prometheus": "http://p:9090"});
        assert_eq!(err(missing), "forecasts[1]: missing field `query`");
        assert!(
            err(config(json!({"name": "b", "step": "soon"}))).starts_with("forecasts[1].step: ")
        );
        assert!(err(config(json!({}))).starts_with("forecasts[1].name: \"demand\" is used"));
        assert!(
            err(config(json!({"name": "b", "prometheus": "ftp://x"})))
                .starts_with("forecasts[1].prometheus: ")
        );
        assert!(err(config(json!({"name": "../x"}))).starts_with("forecasts[1].name: "));
        assert!(
            err(config(json!({"name": "b", "ahead": ["2h"]}))).starts_with("forecasts[1].ahead: ")
        );
        assert!(
            err(config(json!({"name": "b", "mape_limit": 0})))
                .starts_with("forecasts[1].mape_limit: ")
        );
        assert!(
            err(config(json!({"name": "b", "range": "1m"}))).starts_with("forecasts[1].range: ")
        );
        assert!(
            err(config(json!({"name": "b", "direction": "sideways"})))
                .starts_with("forecasts[1].direction: ")
        );
        let jobs = check(&[config(json!({}))]).unwrap();
        let c = &jobs[0].config;
        assert_eq!(c.ahead, vec![ConfigDuration::minutes(5)]);
        assert_eq!(c.mape_limit, 0.15);
        assert_eq!(c.direction, Direction::Above);
    }

    #[test]
    fn breach_is_reported_once_per_window() {
        let clock = Arc::new(ManualClock::new(T0));
        let jobs = jobs_at(&clock, json!({"threshold": 90}));
        // 0.1 per minute: 86 now, 90 in 40 minutes, within the hour's horizon.
        let start = T0 - 6 * 60 * MIN;
        let ramp = |t: i64| 50.0 + (t - start) as f64 / MIN as f64 * 0.1 + noise(t);
        let flat = |t: i64| 50.0 + noise(t);
        let (events, runs) = tick(&jobs, &ramp);
        assert_eq!((kinds(&events), runs), (vec![types::BREACH_PREDICTED], 1));
        let e = &events[0];
        assert_eq!(e.subject.as_deref(), Some("demand{instance=\"a\"}"));
        assert_eq!(e.time, format_rfc3339(T0));
        assert_eq!(e.data["job"], "demand");
        assert_eq!(e.data["labels"]["instance"], "a");
        assert!(
            e.data["model"].is_string() && e.data["earliest_80"].is_string(),
            "{}",
            e.data
        );
        assert_eq!(e.data["threshold"]["value"], 90.0);
        assert!(series_view(&jobs)["breach"]["open_since"].is_string());
        // Within the interval nothing runs; the next runs still predict it: no new event.
        clock.advance(Duration::from_secs(60));
        assert_eq!(tick(&jobs, &ramp).1, 0);
        for _ in 0..3 {
            clock.advance(Duration::from_secs(240));
            let (events, runs) = tick(&jobs, &ramp);
            assert_eq!((events.len(), runs), (0, 1));
            clock.advance(Duration::from_secs(60));
        }
        // A run that predicts no crossing closes the window; the next crossing opens a new one.
        clock.advance(Duration::from_secs(300));
        let (events, _) = tick(&jobs, &flat);
        assert!(!kinds(&events).contains(&types::BREACH_PREDICTED));
        assert!(series_view(&jobs)["breach"].is_null());
        clock.advance(Duration::from_secs(300));
        let (events, _) = tick(&jobs, &ramp);
        assert_eq!(kinds(&events), vec![types::BREACH_PREDICTED]);
        assert_ne!(
            events[0].fingerprint, e.fingerprint,
            "a new window is a new finding"
        );
    }

    #[test]
    fn a_degraded_model_falls_back_to_the_observation_and_recovers() {
        let clock = Arc::new(ManualClock::new(T0));
        let jobs = jobs_at(&clock, json!({"ahead": ["5m", "10m"]}));
        let jump = T0 + 2 * MIN;
        let level = move |t: i64| if t >= jump { 200.0 } else { 100.0 } + noise(t);
        let (events, _) = tick(&jobs, &level);
        assert!(events.is_empty());
        let s = series_view(&jobs);
        assert_eq!(s["degraded"], false);
        assert_eq!(s["gauges"][0]["source"], "forecast");
        let forecast_5m = gauge(&jobs, "5m");
        assert!((forecast_5m - 100.0).abs() < 5.0, "{forecast_5m}");
        // The next run sees the jump: the predictions made before it miss by half.
        clock.advance(Duration::from_secs(300));
        let (events, _) = tick(&jobs, &level);
        assert_eq!(kinds(&events), vec![types::DEGRADED]);
        assert!(
            events[0].data["mape"].as_f64().unwrap() > 0.15,
            "{}",
            events[0].data
        );
        let s = series_view(&jobs);
        assert_eq!(s["degraded"], true);
        let observed = s["last_observation"]["value"].as_f64().unwrap();
        assert_eq!(events[0].data["fallback"], observed);
        assert_eq!(gauge(&jobs, "5m"), observed);
        assert_eq!(gauge(&jobs, "10m"), observed);
        assert_eq!(s["gauges"][1]["source"], "observation");
        let mut l = labels();
        l.remove("__name__");
        assert_eq!(
            jobs.metrics
                .degraded
                .get_or_create(&gauge_labels("demand", &l, None))
                .get(),
            1.0
        );
        // Degraded is reported once; once the misses leave the window, the model recovers.
        let mut recovered = None;
        for i in 0..24 {
            clock.advance(Duration::from_secs(300));
            let (events, _) = tick(&jobs, &level);
            assert!(!kinds(&events).contains(&types::DEGRADED), "run {i}");
            if kinds(&events).contains(&types::RECOVERED) {
                recovered = Some(i);
                break;
            }
        }
        assert!(recovered.is_some(), "{}", series_view(&jobs));
        let s = series_view(&jobs);
        assert_eq!(s["degraded"], false);
        assert_eq!(s["gauges"][0]["source"], "forecast");
        assert_eq!(
            gauge(&jobs, "5m"),
            s["gauges"][0]["value"].as_f64().unwrap()
        );
        assert!((gauge(&jobs, "5m") - 200.0).abs() < 10.0);
    }

    #[test]
    fn state_survives_a_restart_and_a_corrupt_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let extra = json!({"threshold": 150});
        let jump = T0 + 2 * MIN;
        let level = move |t: i64| if t >= jump { 200.0 } else { 100.0 } + noise(t);
        {
            let jobs = jobs_at(&clock, extra.clone());
            assert!(jobs.load_state(dir.path()).is_empty());
            assert!(tick(&jobs, &level).0.is_empty());
            clock.advance(Duration::from_secs(300));
            let (events, _) = tick(&jobs, &level);
            assert_eq!(
                kinds(&events),
                vec![types::DEGRADED, types::BREACH_PREDICTED],
                "already above 150"
            );
        }
        // A restart: the open breach, the degraded flag and the checks are back; the next run
        // neither repeats the breach nor the degradation.
        let jobs = jobs_at(&clock, extra.clone());
        assert!(jobs.load_state(dir.path()).is_empty());
        let view = jobs.get("demand").unwrap();
        assert_eq!(view["runs"], 2);
        assert_eq!(view["series"][0]["degraded"], true);
        assert!(view["series"][0]["breach"]["open_since"].is_string());
        assert!(view["series"][0]["checks"].as_u64().unwrap() >= 3);
        clock.advance(Duration::from_secs(300));
        let (events, runs) = tick(&jobs, &level);
        assert_eq!((events.len(), runs), (0, 1), "{:?}", kinds(&events));
        // A corrupt file is reported, the job starts fresh and its next save replaces it.
        std::fs::write(
            dir.path().join("demand.json"),
            b"{\"version\": 1, \"series\": [",
        )
        .unwrap();
        let jobs = jobs_at(&clock, extra);
        let problems = jobs.load_state(dir.path());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("demand.json"), "{problems:?}");
        let view = jobs.get("demand").unwrap();
        assert!(
            view["state_error"]
                .as_str()
                .unwrap()
                .contains("starting fresh")
        );
        assert_eq!(view["runs"], 0);
        let (events, _) = tick(&jobs, &level);
        assert_eq!(kinds(&events), vec![types::BREACH_PREDICTED]);
        assert!(jobs.get("demand").unwrap()["state_error"].is_null());
        assert!(
            read_state(&dir.path().join("demand.json"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn schedule_and_checks_hold_across_new_year_and_long_uptime() {
        // 2025-12-31T23:00Z to 2026-01-01T01:00Z, every 10 minutes.
        let new_year = 1_767_225_600_000;
        for start in [new_year - 60 * MIN, i64::from(i32::MAX) * 1000 * 40] {
            let start = start - start.rem_euclid(MIN);
            let clock = Arc::new(ManualClock::new(start));
            let jobs = jobs_at(&clock, json!({"every": "10m", "ahead": ["10m"]}));
            let mut runs = 0;
            // Every minute for two hours: one run per interval, wherever the year turns.
            for _ in 0..=120 {
                let (events, n) = tick(&jobs, &|t| 100.0 + noise(t));
                assert!(events.is_empty(), "{:?}", kinds(&events));
                runs += n;
                clock.advance(Duration::from_secs(60));
            }
            assert_eq!(runs, 13);
            let s = series_view(&jobs);
            assert_eq!(s["degraded"], false);
            // The 30-minute window holds the checks of its runs only: memory stays bounded.
            let checks = s["checks"].as_u64().unwrap();
            assert!((20..=31).contains(&checks), "{s}");
            assert!(s["pending_predictions"].as_u64().unwrap() <= 10, "{s}");
            assert!(s["mape"].as_f64().unwrap() < 0.01, "{s}");
        }
        // A clock stepped back a day: the job runs again instead of waiting a day.
        let clock = Arc::new(ManualClock::new(new_year));
        let jobs = jobs_at(&clock, json!({}));
        assert_eq!(tick(&jobs, &|t| 100.0 + noise(t)).1, 1);
        clock.set(new_year - 86_400_000);
        assert_eq!(tick(&jobs, &|t| 100.0 + noise(t)).1, 1);
        assert_eq!(tick(&jobs, &|t| 100.0 + noise(t)).1, 0);
    }

    #[tokio::test]
    async fn a_failing_prometheus_is_counted_and_retried() {
        // A port nothing listens on: connection refused, as with Prometheus down.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let clock = Arc::new(ManualClock::new(T0));
        let jobs = Arc::new(jobs_at(
            &clock,
            json!({"prometheus": format!("http://127.0.0.1:{port}"), "timeout": "5s"}),
        ));
        assert!(jobs.run_due().await.is_empty());
        let view = jobs.get("demand").unwrap();
        assert_eq!(
            (view["runs"].as_u64(), view["failures"].as_u64()),
            (Some(1), Some(1))
        );
        assert!(
            view["error"].as_str().unwrap().contains("127.0.0.1"),
            "{view}"
        );
        assert_eq!(view["next_run"], format_rfc3339(T0 + 5 * MIN));
        // Not again within the interval; again at the next one.
        assert!(jobs.run_due().await.is_empty());
        assert_eq!(jobs.get("demand").unwrap()["failures"], 1);
        assert_eq!(
            jobs.wait(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
        clock.advance(Duration::from_secs(300));
        jobs.run_due().await;
        let view = jobs.get("demand").unwrap();
        assert_eq!(
            (
                view["failures"].as_u64(),
                view["consecutive_failures"].as_u64()
            ),
            (Some(2), Some(2))
        );
        let failures = jobs
            .metrics
            .failures
            .get_or_create(&vec![("job".to_owned(), "demand".to_owned())])
            .get();
        assert_eq!(failures, 2);
        // A good answer later resets the run of failures (the same path as a fetched one).
        clock.advance(Duration::from_secs(300));
        for run in jobs.claim_due() {
            jobs.complete(&run, Ok(vec![history(run.now_ms, &|t| 100.0 + noise(t))]));
        }
        let view = jobs.get("demand").unwrap();
        assert_eq!(
            (
                view["failures"].as_u64(),
                view["consecutive_failures"].as_u64()
            ),
            (Some(2), Some(0))
        );
        assert!(view["error"].is_null());
    }

    #[test]
    fn reload_keeps_the_state_of_jobs_that_stay() {
        let clock = Arc::new(ManualClock::new(T0));
        let jobs = jobs_at(&clock, json!({}));
        tick(&jobs, &|t| 100.0 + noise(t));
        assert!(gauge(&jobs, "5m") > 90.0);
        let mut other = config(json!({"name": "other"}));
        let changed = config(json!({"ahead": ["10m"]}));
        jobs.replace(check(&[changed, other.clone()]).unwrap());
        assert_eq!(jobs.names(), vec!["demand".to_owned(), "other".to_owned()]);
        let view = jobs.get("demand").unwrap();
        assert_eq!(view["runs"], 1, "state kept");
        assert!(view["next_run"].is_null(), "a changed job runs at once");
        // The old lead's gauge is gone with the old configuration.
        let text = {
            let mut registry = Registry::with_prefix("opsloop");
            jobs.metrics.register(&mut registry);
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
            out
        };
        assert!(!text.contains("ahead=\"5m\""), "{text}");
        other["name"] = json!("third");
        jobs.replace(check(&[other]).unwrap());
        assert_eq!(jobs.names(), vec!["third".to_owned()]);
        assert!(jobs.get("demand").is_none());
        assert_eq!(jobs.list()["forecasts"][0]["job"], "third");
    }

    #[test]
    fn gauge_labels_keep_the_series_labels() {
        let labels: Labels = [("__name__", "x"), ("job", "api"), ("pod", "p1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let got = gauge_labels("demand", &labels, Some("5m"));
        let want: Vec<(String, String)> = [
            ("job", "demand"),
            ("exported_job", "api"),
            ("pod", "p1"),
            ("ahead", "5m"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(got, want);
    }

    fn encode(jobs: &ForecastJobs) -> String {
        let mut registry = Registry::with_prefix("opsloop");
        jobs.metrics.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn gauge_labels_never_repeat_a_name() {
        let labels: Labels = [
            ("job", "api"),
            ("exported_job", "push"),
            ("exported_exported_job", "fed"),
            ("ahead", "x"),
            ("exported_ahead", "y"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for ahead in [Some("5m"), None] {
            let got = gauge_labels("demand", &labels, ahead);
            let names: BTreeSet<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(names.len(), got.len(), "{got:?}");
            let value = |k: &str| got.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            assert_eq!(value("job"), Some("demand"));
            assert_eq!(value("exported_job"), Some("push"));
            assert_eq!(value("exported_exported_job"), Some("fed"));
            assert_eq!(value("exported_exported_exported_job"), Some("api"));
            assert_eq!(value("exported_exported_ahead"), Some("x"));
            assert_eq!(value("ahead"), ahead);
        }
    }

    #[test]
    fn credentials_of_the_prometheus_url_are_never_shown() {
        let url = json!("http://admin:s3cret@127.0.0.1:9");
        let jobs = check(&[config(json!({"prometheus": url}))]).unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let jobs = ForecastJobs::new(
            jobs,
            Arc::clone(&clock) as Arc<dyn Clock>,
            "/test",
            JobMetrics::default(),
        );
        let view = jobs.list().to_string();
        assert!(
            !view.contains("s3cret") && view.contains("127.0.0.1:9"),
            "{view}"
        );
        let err = check(&[config(json!({"prometheus": "ftp://admin:s3cret@h"}))])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[tokio::test]
    async fn a_failed_fetch_shows_no_credentials() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let clock = Arc::new(ManualClock::new(T0));
        let url = format!("http://admin:s3cret@127.0.0.1:{port}");
        let jobs = Arc::new(jobs_at(&clock, json!({"prometheus": url, "timeout": "5s"})));
        jobs.run_due().await;
        let view = jobs.get("demand").unwrap();
        let error = view["error"].as_str().unwrap();
        assert!(
            !error.contains("s3cret") && !error.contains("admin"),
            "{error}"
        );
        assert!(error.contains("127.0.0.1"), "{error}");
    }

    #[test]
    fn non_finite_numbers_survive_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut series = SeriesState {
            labels: labels(),
            last_observation: Some((T0, f64::NAN)),
            mape: Some(f64::INFINITY),
            ..SeriesState::default()
        };
        series.pending.insert(T0 + MIN, f64::NEG_INFINITY);
        series.pending.insert(T0 + 2 * MIN, 1.5);
        series.checked.push_back(Check {
            time_ms: T0,
            predicted: f64::NAN,
            actual: f64::INFINITY,
        });
        let state = JobState {
            version: STATE_VERSION,
            runs: 3,
            series: [("s".to_owned(), series)].into_iter().collect(),
            ..JobState::default()
        };
        let path = dir.path().join("demand.json");
        write_atomic(&path, &serde_json::to_vec(&state).unwrap()).unwrap();
        let back = read_state(&path).unwrap().unwrap();
        assert_eq!(back.runs, 3);
        let s = &back.series["s"];
        assert!(s.last_observation.unwrap().1.is_nan());
        assert_eq!(s.mape, Some(f64::INFINITY));
        assert_eq!(s.pending[&(T0 + MIN)], f64::NEG_INFINITY);
        assert_eq!(s.pending[&(T0 + 2 * MIN)], 1.5);
        assert!(s.checked[0].predicted.is_nan());
        assert_eq!(s.checked[0].actual, f64::INFINITY);
        // A file an older version wrote with `null` for a NaN loads too.
        let old = r#"{"version":1,"runs":1,"failures":0,"consecutive_failures":0,
            "last_run_ms":null,"last_success_ms":null,"last_error":null,"series_dropped":0,
            "series":{"s":{"labels":{},"model":null,"error":null,"last_observation":[1,null],
            "pending":{"5":null},"checked":[{"time_ms":1,"predicted":null,"actual":2.0}],
            "mape":null,"degraded":false,"breach":null}}}"#;
        std::fs::write(&path, old).unwrap();
        let back = read_state(&path).unwrap().unwrap();
        assert!(back.series["s"].pending[&5].is_nan());
    }

    #[test]
    fn a_clock_stepped_back_a_day_keeps_the_job_checking() {
        let clock = Arc::new(ManualClock::new(T0));
        let jobs = jobs_at(&clock, json!({"threshold": 1000}));
        let level = |t: i64| 100.0 + noise(t);
        for _ in 0..6 {
            assert_eq!(tick(&jobs, &level).1, 1);
            clock.advance(Duration::from_secs(300));
        }
        let before = series_view(&jobs);
        assert!(before["checks"].as_u64().unwrap() >= 20, "{before}");
        clock.set(T0 - 86_400_000);
        let now = clock.now_ms();
        // Data of the day before is different: the checks must come from it alone.
        let other = |t: i64| 300.0 + noise(t);
        for _ in 0..3 {
            assert_eq!(tick(&jobs, &other).1, 1);
            let inner = jobs.lock();
            let s = inner.slots["demand"].state.series.values().next().unwrap();
            let latest = clock.now_ms() + 60 * MIN + MIN;
            assert!(s.pending.keys().all(|t| *t <= latest), "{:?}", s.pending);
            assert!(s.checked.iter().all(|c| c.time_ms <= clock.now_ms()));
            assert!(s.checked.iter().all(|c| c.actual > 250.0));
            drop(inner);
            clock.advance(Duration::from_secs(300));
        }
        let s = series_view(&jobs);
        assert!(s["checks"].as_u64().unwrap() >= 5, "{s}");
        assert!(s["mape"].as_f64().unwrap() < 0.05, "{s}");
        assert_eq!(s["degraded"], false);
        assert!(clock.now_ms() > now);
    }

    #[test]
    fn removed_jobs_lose_their_gauges_and_state_files() {
        let dir = tempfile::tempdir().unwrap();
        let stray = dir.path().join("gone.json");
        std::fs::write(&stray, b"{}").unwrap();
        std::fs::write(dir.path().join("demand.json.tmp"), b"{").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"kept").unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let jobs = jobs_at(&clock, json!({}));
        let problems = jobs.load_state(dir.path());
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!stray.exists(), "a job removed while the agent was down");
        assert!(!dir.path().join("demand.json.tmp").exists());
        assert!(dir.path().join("notes.txt").exists());
        tick(&jobs, &|t| 100.0 + noise(t));
        jobs.record_failure("demand", "x".into());
        let file = dir.path().join("demand.json");
        assert!(file.exists());
        assert!(encode(&jobs).contains("job=\"demand\""));
        jobs.replace(check(&[config(json!({"name": "other"}))]).unwrap());
        assert!(!file.exists(), "removed at runtime");
        let text = encode(&jobs);
        assert!(!text.contains("job=\"demand\""), "{text}");
        // A run of the removed job finishing late does not bring the file back.
        let clock2 = Arc::new(ManualClock::new(T0));
        let old = jobs_at(&clock2, json!({}));
        let run = old.claim_due().pop().unwrap();
        assert!(
            jobs.complete(&run, Ok(vec![history(T0, &|t| 100.0 + noise(t))]))
                .is_empty()
        );
        assert!(!file.exists());
    }

    /// Polls `done` (a condition, not a fixed delay) for at most a minute.
    async fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_prometheus_does_not_hold_up_other_jobs() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Accepts connections and never answers; counts them (one per run of the slow job).
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        tokio::spawn({
            let accepted = Arc::clone(&accepted);
            async move {
                let mut held = Vec::new();
                while let Ok((socket, _)) = silent.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    if held.len() < 64 {
                        held.push(socket);
                    }
                }
            }
        });
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // "a-slow" sorts first and hangs for its whole timeout (the interval, 5 minutes).
        let jobs = check(&[
            config(json!({"name": "a-slow", "prometheus": format!("http://{silent_addr}"), "timeout": "5m"})),
            config(json!({"name": "b-fast", "prometheus": format!("http://127.0.0.1:{refused}"), "timeout": "5m"})),
        ])
        .unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let jobs = Arc::new(ForecastJobs::new(
            jobs,
            Arc::clone(&clock) as Arc<dyn Clock>,
            "/test",
            JobMetrics::default(),
        ));
        let driver =
            tokio::spawn(Arc::clone(&jobs).drive(Duration::from_millis(10), |_events| async {}));
        let runs = |name: &str| jobs.get(name).unwrap()["runs"].as_u64().unwrap();
        // Five intervals: the fast job runs on each, while the slow one is still in its first.
        for period in 1..=5u64 {
            wait_until(&format!("run {period} of b-fast"), || {
                runs("b-fast") == period
            })
            .await;
            assert_eq!(
                jobs.get("b-fast").unwrap()["next_run"],
                format_rfc3339(clock.now_ms() + 5 * MIN)
            );
            clock.advance(Duration::from_secs(300));
        }
        wait_until("run 6 of b-fast", || runs("b-fast") == 6).await;
        assert_eq!(runs("a-slow"), 0);
        // Never a second run of the slow job while its first is in flight.
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // Dropping the driver aborts the hanging run and frees its job for the next claim.
        driver.abort();
        let _ = driver.await;
        wait_until("a-slow released", || {
            jobs.claim_due().iter().any(|r| r.name() == "a-slow")
        })
        .await;
    }

    #[test]
    fn timeout_is_bounded_by_the_interval_and_ten_minutes() {
        let err = |v: Value| check(&[v]).unwrap_err().to_string();
        let long = err(config(json!({"timeout": "2h", "every": "3h"})));
        assert!(
            long.starts_with("forecasts[0].timeout: 2h is above the maximum of 10m"),
            "{long}"
        );
        let over = err(config(json!({"timeout": "6m"})));
        assert!(
            over.starts_with("forecasts[0].timeout: 6m is longer than `every` (5m)"),
            "{over}"
        );
        // The default timeout (1m) follows a shorter interval instead of failing the check.
        let jobs = check(&[config(json!({"every": "10s"}))]).unwrap();
        assert_eq!(jobs[0].config.timeout.to_string(), "10s");
        let jobs = check(&[config(json!({}))]).unwrap();
        assert_eq!(jobs[0].config.timeout.to_string(), "1m");
    }
}
