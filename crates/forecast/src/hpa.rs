//! Horizontal pod autoscaling from forecasts: the reactive HPA as Kubernetes runs it, simulated
//! on a demand history (15 s sync, 10 % tolerance, 5 min scale-down stabilisation, default
//! rate limits, pods ready after a start-up delay), the proposal it is compared with (the same
//! HPA plus scheduled pre-scaling windows from day-ahead forecasts, or an HPA on the exported
//! forecast gauge), and the `autoscaling/v2` YAML and Prometheus Adapter rule for both forms.
//!
//! The simulator has no clock of its own: it walks simulated time over the history it is given,
//! so tests and benches inject time through the demand grid.

use std::collections::VecDeque;
use std::fmt::Write as _;

use serde::Serialize;

use crate::pipeline::{ForecastOptions, Horizon, forecast_series};
use crate::series::Series;

const DAY_MS: i64 = 86_400_000;

/// How the reactive part of an HPA behaves (Kubernetes defaults unless changed).
#[derive(Clone, Debug, PartialEq)]
pub struct HpaPolicy {
    /// Lowest replica count.
    pub min_replicas: u32,
    /// Highest replica count.
    pub max_replicas: u32,
    /// Demand per pod the HPA aims at (capacity per pod × target utilisation).
    pub target_per_pod: f64,
    /// Relative change of the metric ignored (Kubernetes: 0.1).
    pub tolerance: f64,
    /// Controller sync period (Kubernetes: 15 s).
    pub sync_ms: i64,
    /// Scale-down stabilisation window (Kubernetes: 5 min).
    pub scale_down_window_ms: i64,
    /// Time from a pod's creation to its readiness.
    pub startup_delay_ms: i64,
}

impl HpaPolicy {
    /// Kubernetes' defaults around `target_per_pod` and the replica bounds.
    pub fn kubernetes(min_replicas: u32, max_replicas: u32, target_per_pod: f64) -> HpaPolicy {
        HpaPolicy {
            min_replicas: min_replicas.max(1),
            max_replicas: max_replicas.max(min_replicas.max(1)),
            target_per_pod,
            tolerance: 0.1,
            sync_ms: 15_000,
            scale_down_window_ms: 300_000,
            startup_delay_ms: 60_000,
        }
    }
}

/// Values on a regular time grid; NaN where unknown. Read between points by linear
/// interpolation.
#[derive(Clone, Copy, Debug)]
pub struct Grid<'a> {
    /// Time of `values[0]`, Unix milliseconds.
    pub start_ms: i64,
    /// Step, milliseconds (positive).
    pub step_ms: i64,
    /// The values.
    pub values: &'a [f64],
    /// Between points: hold each value until the next (a value is its bucket's average rate)
    /// instead of interpolating linearly.
    pub hold: bool,
}

impl Grid<'_> {
    /// The value at `t_ms`, interpolated; `None` outside the grid or next to a missing value.
    pub fn at(&self, t_ms: i64) -> Option<f64> {
        if self.step_ms <= 0 || t_ms < self.start_ms {
            return None;
        }
        let offset = t_ms - self.start_ms;
        let i = usize::try_from(offset / self.step_ms).ok()?;
        let frac = (offset % self.step_ms) as f64 / self.step_ms as f64;
        let a = *self.values.get(i)?;
        if frac == 0.0 || self.hold {
            return a.is_finite().then_some(a);
        }
        let b = *self.values.get(i + 1)?;
        (a.is_finite() && b.is_finite()).then_some(a + (b - a) * frac)
    }

    /// Time just past the last value.
    pub fn end_ms(&self) -> i64 {
        let n = i64::try_from(self.values.len()).unwrap_or(i64::MAX);
        self.start_ms.saturating_add(n.saturating_mul(self.step_ms))
    }
}

/// A window in which the replica count may not fall below `min_replicas` (a scheduled
/// pre-scaling, as a CronJob patching the HPA or KEDA's cron scaler applies it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Floor {
    /// Start, Unix milliseconds.
    pub start_ms: i64,
    /// End (exclusive), Unix milliseconds.
    pub end_ms: i64,
    /// Replicas at least.
    pub min_replicas: u32,
}

/// What the HPA's metric reads.
#[derive(Clone, Copy, Debug)]
pub enum Signal<'a> {
    /// The demand itself (the reactive HPA).
    Observed,
    /// The observed demand and a forecast gauge side by side, as an HPA with both metrics
    /// runs them (the larger recommendation wins): at time `t` the gauge reads `grid` at
    /// `t + ahead_ms`.
    Predicted {
        /// Forecast values by target time.
        grid: Grid<'a>,
        /// How far ahead the gauge looks.
        ahead_ms: i64,
    },
}

/// One simulated run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SimulationReport {
    /// Minutes in which the ready pods could not serve the demand.
    pub under_provisioned_minutes: f64,
    /// Replica-hours paid for (starting pods included).
    pub replica_hours: f64,
    /// Syncs that changed the replica count.
    pub scale_events: usize,
    /// The most replicas at once.
    pub peak_replicas: u32,
}

/// Simulates an HPA with `policy` over `[from_ms, to_ms)` of `demand`, pods each serving
/// `capacity_per_pod`. `floors` (sorted by start, not overlapping) raise the minimum in their
/// windows. Times where the demand is unknown count neither as served nor as under-provisioned.
pub fn simulate(
    demand: Grid<'_>,
    signal: Signal<'_>,
    floors: &[Floor],
    policy: &HpaPolicy,
    capacity_per_pod: f64,
    from_ms: i64,
    to_ms: i64,
) -> SimulationReport {
    let mut report = SimulationReport::default();
    let sync_ms = policy.sync_ms.max(1);
    let target = if policy.target_per_pod > 0.0 {
        policy.target_per_pod
    } else {
        1.0
    };
    let max = policy.max_replicas.max(1);
    let floor_index = |t: i64, cursor: &mut usize| -> u32 {
        while floors.get(*cursor).is_some_and(|f| f.end_ms <= t) {
            *cursor += 1;
        }
        match floors.get(*cursor) {
            Some(f) if f.start_ms <= t => f.min_replicas,
            _ => 0,
        }
    };
    let mut cursor = 0usize;
    let min_at =
        |t: i64, cursor: &mut usize| policy.min_replicas.max(floor_index(t, cursor)).min(max);
    let metric_at = |t: i64| match signal {
        Signal::Observed => demand.at(t),
        Signal::Predicted { grid, ahead_ms } => {
            match (demand.at(t), grid.at(t.saturating_add(ahead_ms))) {
                (Some(d), Some(p)) => Some(d.max(p)),
                (d, p) => d.or(p),
            }
        }
    };
    // Start in steady state: enough ready pods for the first demand.
    let first = metric_at(from_ms).unwrap_or(0.0);
    let mut replicas = desired_for(first, target, max).clamp(min_at(from_ms, &mut cursor), max);
    // Ready times of pods still starting, oldest first.
    let mut starting: VecDeque<i64> = VecDeque::new();
    // Recommendations inside the scale-down window (at most window / sync of them).
    let mut recommendations: VecDeque<(i64, u32)> = VecDeque::new();
    let mut t = from_ms;
    while t < to_ms {
        while starting.front().is_some_and(|&ready| ready <= t) {
            starting.pop_front();
        }
        if let Some(metric) = metric_at(t) {
            let ratio = metric / (target * f64::from(replicas));
            let raw = if (ratio - 1.0).abs() <= policy.tolerance {
                replicas
            } else {
                desired_for(metric, target, max)
            };
            recommendations.push_back((t, raw));
            while recommendations
                .front()
                .is_some_and(|&(at, _)| at <= t - policy.scale_down_window_ms)
            {
                recommendations.pop_front();
            }
            // Scale up at once (no up window); scale down only to the highest recommendation of
            // the window, as Kubernetes' stabilisation does.
            let down = recommendations.iter().map(|&(_, r)| r).max().unwrap_or(raw);
            let mut desired = replicas;
            if desired < raw {
                desired = raw;
            }
            if desired > down {
                desired = down;
            }
            // Default scale-up policy: at most double or +4 pods per period, whichever is more.
            let up_limit = replicas.saturating_mul(2).max(replicas.saturating_add(4));
            desired = desired.min(up_limit).clamp(min_at(t, &mut cursor), max);
            if desired > replicas {
                for _ in replicas..desired {
                    starting.push_back(t.saturating_add(policy.startup_delay_ms));
                }
                report.scale_events += 1;
            } else if desired < replicas {
                // Kubernetes deletes pods that are not ready first.
                for _ in desired..replicas {
                    starting.pop_back();
                }
                report.scale_events += 1;
            }
            replicas = desired;
        } else {
            // No metric: the HPA holds, but a scheduled floor still applies.
            let floor = min_at(t, &mut cursor);
            if floor > replicas {
                for _ in replicas..floor {
                    starting.push_back(t.saturating_add(policy.startup_delay_ms));
                }
                replicas = floor;
                report.scale_events += 1;
            }
        }
        report.peak_replicas = report.peak_replicas.max(replicas);
        let span_ms = sync_ms.min(to_ms - t);
        report.replica_hours += f64::from(replicas) * span_ms as f64 / 3_600_000.0;
        let ready = replicas.saturating_sub(u32::try_from(starting.len()).unwrap_or(u32::MAX));
        if let Some(d) = demand.at(t)
            && d > f64::from(ready) * capacity_per_pod * (1.0 + 1e-9)
        {
            report.under_provisioned_minutes += span_ms as f64 / 60_000.0;
        }
        t = t.saturating_add(sync_ms);
    }
    report
}

/// Replicas needed for `demand` at `per_pod` each, within `1..=max`.
fn desired_for(demand: f64, per_pod: f64, max: u32) -> u32 {
    let pods = (demand / per_pod).ceil();
    if pods.is_nan() || pods < 1.0 {
        1
    } else if pods >= f64::from(max) {
        max
    } else {
        pods as u32
    }
}

/// Day-ahead forecasts made over a history, each from the data before its origin: what a
/// nightly job would have predicted, for validating a proposal out of sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RollingForecast {
    /// Grid start, Unix milliseconds (the history's first grid point).
    pub start_ms: i64,
    /// Grid step, milliseconds.
    pub step_ms: i64,
    /// Point forecasts by target time; NaN where none was made.
    pub value: Vec<f64>,
    /// Upper 80 % bound by target time; NaN where none was made.
    pub upper_80: Vec<f64>,
    /// First origin with a forecast (the start of the validated period).
    pub first_origin_ms: Option<i64>,
    /// Origins whose fit failed, with why.
    pub failures: Vec<String>,
}

impl RollingForecast {
    /// The point forecasts as a grid.
    pub fn value_grid(&self) -> Grid<'_> {
        Grid {
            start_ms: self.start_ms,
            step_ms: self.step_ms,
            values: &self.value,
            hold: false,
        }
    }
}

/// Forecasts `series` (already on grid `start_ms`/`step_ms` with `len` points) one `refit_ms`
/// at a time, from `min_history_ms` after its start, each fit using only earlier points and
/// looking `refit_ms + lead_ms` ahead.
pub fn rolling_forecast(
    series: &Series,
    options: &ForecastOptions,
    grid: (i64, i64, usize),
    refit_ms: i64,
    min_history_ms: i64,
    lead_ms: i64,
) -> RollingForecast {
    let (start_ms, step_ms, len) = grid;
    let mut out = RollingForecast {
        start_ms,
        step_ms,
        value: vec![f64::NAN; len],
        upper_80: vec![f64::NAN; len],
        ..RollingForecast::default()
    };
    let step = step_ms.max(1);
    let end_ms =
        start_ms.saturating_add(i64::try_from(len).unwrap_or(i64::MAX).saturating_mul(step));
    let refit = refit_ms.max(step);
    let mut options = options.clone();
    options.horizon = Horizon::Millis(refit.saturating_add(lead_ms));
    let mut sorted = series.points.clone();
    sorted.sort_by_key(|p| p.0);
    let mut origin = start_ms.saturating_add(min_history_ms.max(step));
    while origin < end_ms {
        let cut = sorted.partition_point(|p| p.0 < origin);
        let window = Series {
            name: series.name.clone(),
            labels: series.labels.clone(),
            points: sorted.get(..cut).map(<[_]>::to_vec).unwrap_or_default(),
        };
        match forecast_series(&window, &options) {
            Ok(outcome) => {
                out.first_origin_ms.get_or_insert(origin);
                for p in &outcome.forecast.forecast {
                    // Later origins overwrite the lead part of earlier ones: the newest wins.
                    if p.time_ms < origin || (p.time_ms - start_ms) % step != 0 {
                        continue;
                    }
                    let Ok(i) = usize::try_from((p.time_ms - start_ms) / step) else {
                        continue;
                    };
                    if let (Some(v), Some(u)) = (out.value.get_mut(i), out.upper_80.get_mut(i)) {
                        *v = p.value;
                        *u = p.upper_80;
                    }
                }
            }
            Err(e) => out.failures.push(e.to_string()),
        }
        origin = origin.saturating_add(refit);
    }
    out
}

/// Scheduled floors from forecasts: per window of `window_ms` (aligned to the epoch, so to UTC
/// hours), the replicas that serve the highest `band` value from the window's start to its end
/// plus `lead_ms` (pods must be ready when demand arrives) at full capacity.
pub fn floors_from(
    band: Grid<'_>,
    window_ms: i64,
    lead_ms: i64,
    capacity_per_pod: f64,
    max_replicas: u32,
) -> Vec<Floor> {
    let mut floors: Vec<Floor> = Vec::new();
    let window = window_ms.max(band.step_ms.max(1));
    let end = band.end_ms();
    let mut start = band.start_ms - band.start_ms.rem_euclid(window);
    while start < end {
        let stop = start.saturating_add(window);
        let mut peak = f64::NEG_INFINITY;
        let mut t = start.max(band.start_ms);
        let reach = stop.saturating_add(lead_ms);
        while t < reach && t < end {
            if let Some(v) = band.at(t) {
                peak = peak.max(v);
            }
            t = t.saturating_add(band.step_ms.max(1));
        }
        if peak.is_finite() && peak > 0.0 && capacity_per_pod > 0.0 {
            let pods = desired_for(peak, capacity_per_pod, max_replicas.max(1));
            match floors.last_mut() {
                Some(last) if last.end_ms == start && last.min_replicas == pods => {
                    last.end_ms = stop
                }
                _ => floors.push(Floor {
                    start_ms: start,
                    end_ms: stop,
                    min_replicas: pods,
                }),
            }
        }
        start = stop;
    }
    floors
}

/// What the proposed HPA scales on.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HpaMetric {
    /// A per-pod metric (`type: Pods`, target `AverageValue`).
    Pods {
        /// Metric name as the custom metrics API serves it.
        name: String,
    },
    /// CPU (`type: Resource`, target `Utilization`).
    Cpu,
}

/// The forecast gauge through Prometheus Adapter (`type: External`), beside the reactive metric.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExternalMetric {
    /// The agent's forecast job (the gauge's `job` label).
    pub job: String,
    /// The gauge's `ahead` label (`5m`).
    pub ahead: String,
    /// Predicted demand per pod to aim at (`AverageValue`).
    pub target_per_pod: f64,
}

/// A scheduled pre-scaling window as printed: a time of day (UTC) and a minimum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DailyWindow {
    /// `HH:MM` UTC.
    pub start: String,
    /// `HH:MM` UTC (exclusive; `24:00` for midnight).
    pub end: String,
    /// Replicas at least.
    pub min_replicas: u32,
    /// The cron schedule that raises the minimum at the start.
    pub cron: String,
}

/// Turns floors of one day into daily windows, leaving out those not above `min_replicas`.
pub fn daily_windows(floors: &[Floor], min_replicas: u32) -> Vec<DailyWindow> {
    let hhmm = |ms: i64| {
        let of_day = ms.rem_euclid(DAY_MS);
        let minutes = if of_day == 0 && ms != 0 {
            0
        } else {
            of_day / 60_000
        };
        (minutes / 60, minutes % 60)
    };
    floors
        .iter()
        .filter(|f| f.min_replicas > min_replicas)
        .map(|f| {
            let (sh, sm) = hhmm(f.start_ms);
            let end_of_day = f.end_ms.rem_euclid(DAY_MS) == 0;
            let (eh, em) = if end_of_day { (24, 0) } else { hhmm(f.end_ms) };
            DailyWindow {
                start: format!("{sh:02}:{sm:02}"),
                end: format!("{eh:02}:{em:02}"),
                min_replicas: f.min_replicas,
                cron: format!("{sm} {sh} * * *"),
            }
        })
        .collect()
}

/// A Kubernetes quantity for a target value (`80`, `80500m`).
pub fn quantity(value: f64) -> String {
    let milli = (value * 1000.0).round();
    if milli % 1000.0 == 0.0 {
        format!("{}", milli / 1000.0)
    } else {
        format!("{milli}m")
    }
}

/// Everything the YAML needs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HpaSpec {
    /// HPA and Deployment name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The reactive metric.
    pub metric: HpaMetric,
    /// The predictive form's forecast gauge.
    pub external: Option<ExternalMetric>,
    /// Target per pod (AverageValue) or, for CPU, the utilisation in percent.
    pub target: f64,
    /// Replica bounds and behaviour.
    pub min_replicas: u32,
    /// Highest replica count.
    pub max_replicas: u32,
    /// Scale-down stabilisation window, seconds.
    pub scale_down_window_seconds: i64,
    /// Scheduled pre-scaling windows (UTC).
    pub windows: Vec<DailyWindow>,
}

/// The `autoscaling/v2` HorizontalPodAutoscaler, with the scheduled windows as a comment block
/// in front (an HPA has no schedule of its own).
pub fn hpa_yaml(spec: &HpaSpec) -> String {
    let mut y = String::new();
    if !spec.windows.is_empty() {
        y.push_str(
            "# Scheduled pre-scaling (UTC), from the day-ahead forecast: raise minReplicas in\n",
        );
        y.push_str("# these windows (a CronJob patching this HPA, or KEDA's cron scaler).\n");
        for w in &spec.windows {
            let _ = writeln!(
                y,
                "#   {}-{}  minReplicas {:<4} cron \"{}\"",
                w.start, w.end, w.min_replicas, w.cron
            );
        }
    }
    let _ = write!(
        y,
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: {name}\n  minReplicas: {min}\n  maxReplicas: {max}\n  metrics:\n",
        name = spec.name,
        ns = spec.namespace,
        min = spec.min_replicas,
        max = spec.max_replicas,
    );
    match &spec.metric {
        HpaMetric::Pods { name } => {
            let _ = write!(
                y,
                "  - type: Pods\n    pods:\n      metric:\n        name: {name}\n      target:\n        type: AverageValue\n        averageValue: \"{}\"\n",
                quantity(spec.target)
            );
        }
        HpaMetric::Cpu => {
            let _ = write!(
                y,
                "  - type: Resource\n    resource:\n      name: cpu\n      target:\n        type: Utilization\n        averageUtilization: {}\n",
                spec.target.round()
            );
        }
    }
    if let Some(ExternalMetric {
        job,
        ahead,
        target_per_pod,
    }) = &spec.external
    {
        // The adapter rule (`adapter_rule`) picks the job's series itself, under either label
        // a scrape gives it: the HPA names the metric only, no selector.
        let _ = write!(
            y,
            "  - type: External\n    external:\n      metric:\n        name: {}\n      target:\n        type: AverageValue\n        averageValue: \"{}\"\n",
            external_metric_name(job, ahead),
            quantity(*target_per_pod)
        );
    }
    let _ = write!(
        y,
        "  behavior:\n    scaleUp:\n      stabilizationWindowSeconds: 0\n      selectPolicy: Max\n      policies:\n      - type: Percent\n        value: 100\n        periodSeconds: 15\n      - type: Pods\n        value: 4\n        periodSeconds: 15\n    scaleDown:\n      stabilizationWindowSeconds: {}\n      selectPolicy: Max\n      policies:\n      - type: Percent\n        value: 100\n        periodSeconds: 15\n",
        spec.scale_down_window_seconds
    );
    y
}

/// The `ahead` label of a lead, as the agent's gauges write it: the largest whole unit of
/// `d`, `h`, `m`, `s` (else `ms`), as the configuration prints durations (`60m` → `1h`), so the
/// label `forecast hpa --external --ahead 60m` selects is the one the agent exports.
pub fn ahead_label(ahead_ms: i64) -> String {
    let ms = ahead_ms.max(0);
    let (n, unit) = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ]
    .into_iter()
    .find(|(u, _)| ms > 0 && ms % u == 0)
    .map_or((ms, "ms"), |(u, unit)| (ms / u, unit));
    format!("{n}{unit}")
}

/// The External metric's name for forecast job `job` at lead `ahead` (an `ahead_label`):
/// `opsloop_forecast_<job>_<ahead>`, other characters than letters, digits and `_` as `_`.
/// One name per job and lead, so several predictive HPAs can be served side by side.
pub fn external_metric_name(job: &str, ahead: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    format!("opsloop_forecast_{}_{}", clean(job), clean(ahead))
}

/// A PromQL string literal inside a single-quoted YAML scalar.
fn promql_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '\'' => quoted.push_str("''"),
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The Prometheus Adapter rule that serves forecast job `job`'s gauge at lead `ahead` (an
/// `ahead_label`) as the External metric [`external_metric_name`] (no namespace label on the
/// gauge, hence `namespaced: false`).
///
/// The gauge carries the forecast job as `job`. A Prometheus scrape with the default
/// `honor_labels: false` renames that label `exported_job` (its own `job` is the scrape's), a
/// scrape with `honor_labels: true` keeps it: the rule's query takes the series under either
/// name, so it serves the metric whichever way the agent is scraped.
pub fn adapter_rule(job: &str, ahead: &str) -> String {
    let job_q = promql_string(job);
    let ahead_q = promql_string(ahead);
    format!(
        "# Prometheus Adapter (config.yaml): serves opsloop's forecast gauge as an External metric.\n\
         # The forecast job is the gauge's `job` label, or `exported_job` when Prometheus scrapes\n\
         # the agent with the default honor_labels: false; the query takes either. (With\n\
         # honor_labels: false, do not name the agent's scrape job like a forecast job.)\n\
         externalRules:\n\
         - seriesQuery: 'opsloop_forecast_value{{ahead={ahead_q}}}'\n  \
         resources:\n    namespaced: false\n  \
         name:\n    matches: ^opsloop_forecast_value$\n    as: {name}\n  \
         metricsQuery: 'max(<<.Series>>{{job={job_q},ahead={ahead_q}}} or <<.Series>>{{exported_job={job_q},ahead={ahead_q}}})'\n",
        name = external_metric_name(job, ahead),
    )
}

/// Which forecast value the scheduled floors must serve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrescaleBand {
    /// The point forecast.
    #[default]
    Value,
    /// The upper bound of the 80 % interval.
    Upper80,
}

/// Everything that decides a proposal.
#[derive(Clone, Debug, PartialEq)]
pub struct HpaOptions {
    /// Demand one pod serves at 100 %.
    pub capacity_per_pod: f64,
    /// Share of the capacity the HPA aims at (0–1].
    pub target_utilization: f64,
    /// Pod start-up delay, milliseconds.
    pub startup_delay_ms: i64,
    /// Length of a scheduled window, milliseconds.
    pub window_ms: i64,
    /// Replica bounds; `None` = from the history.
    pub min_replicas: Option<u32>,
    /// Highest replica count; `None` = from the history.
    pub max_replicas: Option<u32>,
    /// The predictive form: the HPA reads the forecast this far ahead (`None`: scheduled windows).
    pub external_ahead_ms: Option<i64>,
    /// Which band the windows serve.
    pub band: PrescaleBand,
    /// Demand between samples in the simulation: held (`true`) or interpolated linearly.
    pub hold_demand: bool,
    /// How the forecasts are made.
    pub forecast: ForecastOptions,
}

impl Default for HpaOptions {
    fn default() -> Self {
        HpaOptions {
            capacity_per_pod: 1.0,
            target_utilization: 0.8,
            startup_delay_ms: 60_000,
            window_ms: 3_600_000,
            min_replicas: None,
            max_replicas: None,
            external_ahead_ms: None,
            band: PrescaleBand::default(),
            hold_demand: false,
            forecast: ForecastOptions::default(),
        }
    }
}

/// Why no proposal could be made.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum HpaError {
    /// Bad options.
    #[error("{0}")]
    Options(String),
    /// The demand could not be prepared.
    #[error("{series}: {source}")]
    Prepare {
        /// The series.
        series: String,
        /// Why.
        source: crate::prepare::PrepareError,
    },
    /// Not enough history for the day-ahead forecasts.
    #[error("{series}: {message}")]
    History {
        /// The series.
        series: String,
        /// What is missing.
        message: String,
    },
}

/// A proposal and its validation on the history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HpaProposal {
    /// The demand series.
    pub series: String,
    /// Lowest replica count.
    pub min_replicas: u32,
    /// Highest replica count.
    pub max_replicas: u32,
    /// Demand per pod the HPA aims at.
    pub target_per_pod: f64,
    /// Scheduled pre-scaling for the next day (empty in the predictive form).
    pub windows: Vec<DailyWindow>,
    /// The reactive HPA simulated on the validated period.
    pub reactive: SimulationReport,
    /// The proposal simulated on the same period.
    pub proposal: SimulationReport,
    /// Start of the validated period (the first day-ahead forecast), RFC 3339.
    #[serde(serialize_with = "crate::pipeline::rfc3339")]
    pub validated_from: i64,
    /// End of the validated period, RFC 3339.
    #[serde(serialize_with = "crate::pipeline::rfc3339")]
    pub validated_to: i64,
    /// Day-ahead fits that failed (their day has no pre-scaling).
    pub forecast_failures: Vec<String>,
}

/// Proposes an HPA for `demand` and validates it against the reactive HPA on the history:
/// day-ahead forecasts are refitted each day from the data before it (out of sample), turned
/// into scheduled floors (or, in the predictive form, read by the HPA `ahead` of time), and
/// both HPAs run on the real demand from the first forecast day on.
pub fn propose(demand: &Series, options: &HpaOptions) -> Result<HpaProposal, HpaError> {
    let capacity = options.capacity_per_pod;
    let utilization = options.target_utilization;
    if !(capacity.is_finite() && capacity > 0.0) {
        return Err(HpaError::Options(format!(
            "capacity per pod {capacity} must be a positive number"
        )));
    }
    if !(utilization.is_finite() && utilization > 0.0 && utilization <= 1.0) {
        return Err(HpaError::Options(format!(
            "target utilisation {utilization} must be in (0, 1]"
        )));
    }
    let prepared =
        crate::prepare::prepare(demand, &options.forecast.prepare).map_err(|source| {
            HpaError::Prepare {
                series: demand.name.clone(),
                source,
            }
        })?;
    let target_per_pod = capacity * utilization;
    let mut finite: Vec<f64> = prepared
        .values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    finite.sort_by(f64::total_cmp);
    let low = crate::stats::quantile_sorted(&finite, 0.05).unwrap_or(0.0);
    let peak = finite.last().copied().unwrap_or(0.0);
    let min_replicas = options
        .min_replicas
        .unwrap_or_else(|| desired_for(low, capacity, u32::MAX))
        .max(1);
    let max_replicas = options
        .max_replicas
        .unwrap_or_else(|| desired_for(peak * 1.5, target_per_pod, 10_000))
        .max(min_replicas.saturating_add(1));
    let mut policy = HpaPolicy::kubernetes(min_replicas, max_replicas, target_per_pod);
    policy.startup_delay_ms = options.startup_delay_ms.max(0);
    let lead_ms = policy.startup_delay_ms + policy.sync_ms;
    let span_ms = prepared.last_ms() - prepared.start_ms;
    let min_history_ms = 3 * DAY_MS;
    if span_ms < min_history_ms + DAY_MS / 2 {
        return Err(HpaError::History {
            series: demand.name.clone(),
            message: format!(
                "{:.1} days of history: at least 3.5 are needed (3 to fit, the rest to validate on)",
                span_ms as f64 / DAY_MS as f64
            ),
        });
    }
    let rolling = rolling_forecast(
        demand,
        &options.forecast,
        (prepared.start_ms, prepared.step_ms, prepared.len()),
        DAY_MS,
        min_history_ms,
        lead_ms.max(options.external_ahead_ms.unwrap_or(0)),
    );
    let Some(from_ms) = rolling.first_origin_ms else {
        return Err(HpaError::History {
            series: demand.name.clone(),
            message: format!(
                "no day-ahead forecast could be made ({})",
                rolling.failures.first().map_or("", String::as_str)
            ),
        });
    };
    let to_ms = prepared.last_ms().saturating_add(prepared.step_ms);
    let demand_grid = Grid {
        start_ms: prepared.start_ms,
        step_ms: prepared.step_ms,
        values: &prepared.values,
        hold: options.hold_demand,
    };
    let band_values = match options.band {
        PrescaleBand::Value => &rolling.value,
        PrescaleBand::Upper80 => &rolling.upper_80,
    };
    let band = Grid {
        start_ms: rolling.start_ms,
        step_ms: rolling.step_ms,
        values: band_values,
        hold: false,
    };
    let reactive = simulate(
        demand_grid,
        Signal::Observed,
        &[],
        &policy,
        capacity,
        from_ms,
        to_ms,
    );
    let (proposal, windows) = match options.external_ahead_ms {
        Some(ahead_ms) => {
            let signal = Signal::Predicted {
                grid: rolling.value_grid(),
                ahead_ms,
            };
            (
                simulate(demand_grid, signal, &[], &policy, capacity, from_ms, to_ms),
                Vec::new(),
            )
        }
        None => {
            let floors = floors_from(band, options.window_ms, lead_ms, capacity, max_replicas);
            let report = simulate(
                demand_grid,
                Signal::Observed,
                &floors,
                &policy,
                capacity,
                from_ms,
                to_ms,
            );
            (
                report,
                next_day_windows(
                    demand,
                    options,
                    &prepared,
                    lead_ms,
                    capacity,
                    max_replicas,
                    min_replicas,
                ),
            )
        }
    };
    Ok(HpaProposal {
        series: demand.name.clone(),
        min_replicas,
        max_replicas,
        target_per_pod,
        windows,
        reactive,
        proposal,
        validated_from: from_ms,
        validated_to: to_ms,
        forecast_failures: rolling.failures,
    })
}

/// The scheduled windows of the day after the history, from a forecast on all of it.
fn next_day_windows(
    demand: &Series,
    options: &HpaOptions,
    prepared: &crate::prepare::Prepared,
    lead_ms: i64,
    capacity: f64,
    max_replicas: u32,
    min_replicas: u32,
) -> Vec<DailyWindow> {
    let mut forecast = options.forecast.clone();
    forecast.horizon = Horizon::Millis(DAY_MS + lead_ms);
    let Ok(outcome) = forecast_series(demand, &forecast) else {
        return Vec::new();
    };
    let values: Vec<f64> = outcome
        .forecast
        .forecast
        .iter()
        .map(|p| match options.band {
            PrescaleBand::Value => p.value,
            PrescaleBand::Upper80 => p.upper_80,
        })
        .collect();
    let grid = Grid {
        start_ms: prepared.last_ms().saturating_add(prepared.step_ms),
        step_ms: prepared.step_ms,
        values: &values,
        hold: false,
    };
    let mut floors = floors_from(grid, options.window_ms, lead_ms, capacity, max_replicas);
    // Exactly one day from the first window on, so no time of day is listed twice.
    if let Some(day_end) = floors.first().map(|f| f.start_ms.saturating_add(DAY_MS)) {
        floors.retain(|f| f.start_ms < day_end);
        for f in &mut floors {
            f.end_ms = f.end_ms.min(day_end);
        }
    }
    let mut windows = daily_windows(&floors, min_replicas);
    windows.sort_by(|a, b| a.start.cmp(&b.start));
    windows.dedup_by(|a, b| a.start == b.start);
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn policy() -> HpaPolicy {
        HpaPolicy::kubernetes(1, 50, 10.0)
    }

    #[test]
    fn steady_demand_needs_no_scaling() {
        let values = [95.0; 60];
        let demand = Grid {
            start_ms: 0,
            step_ms: MIN,
            values: &values,
            hold: false,
        };
        let r = simulate(demand, Signal::Observed, &[], &policy(), 12.5, 0, 59 * MIN);
        assert_eq!(r.scale_events, 0);
        assert_eq!(r.peak_replicas, 10);
        assert_eq!(r.under_provisioned_minutes, 0.0);
        assert!((r.replica_hours - 10.0 * 59.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn changes_within_tolerance_are_ignored() {
        // 100 → 108 over 10 pods of target 10: ratio 1.08, inside 10 %.
        let values: Vec<f64> = (0..30)
            .map(|i| if i < 10 { 100.0 } else { 108.0 })
            .collect();
        let demand = Grid {
            start_ms: 0,
            step_ms: MIN,
            values: &values,
            hold: false,
        };
        let r = simulate(demand, Signal::Observed, &[], &policy(), 20.0, 0, 29 * MIN);
        assert_eq!(r.scale_events, 0);
    }

    #[test]
    fn a_step_up_is_under_provisioned_for_the_startup_delay() {
        // Demand doubles at minute 10; pods hold 10 each at most; start-up takes 2 min.
        let values: Vec<f64> = (0..40)
            .map(|i| if i < 10 { 100.0 } else { 200.0 })
            .collect();
        let demand = Grid {
            start_ms: 0,
            step_ms: MIN,
            values: &values,
            hold: false,
        };
        let mut p = policy();
        p.startup_delay_ms = 2 * MIN;
        let r = simulate(demand, Signal::Observed, &[], &p, 10.0, 0, 39 * MIN);
        // Interpolated ramp from minute 9 to 10, then 2 minutes of start-up, sync-granular.
        assert!(
            r.under_provisioned_minutes >= 2.0 && r.under_provisioned_minutes <= 3.25,
            "{r:?}"
        );
        assert_eq!(r.peak_replicas, 20);
    }

    #[test]
    fn scale_down_waits_for_the_stabilisation_window() {
        let values: Vec<f64> = (0..30).map(|i| if i < 10 { 200.0 } else { 50.0 }).collect();
        let demand = Grid {
            start_ms: 0,
            step_ms: MIN,
            values: &values,
            hold: false,
        };
        let r = simulate(demand, Signal::Observed, &[], &policy(), 10.0, 0, 30 * MIN);
        // 20 replicas for 10 min, ~5 min more after the drop, then 5.
        let hours = r.replica_hours;
        assert!(
            hours > 20.0 * 14.0 / 60.0 && hours < 20.0 * 16.0 / 60.0 + 5.0 * 16.0 / 60.0,
            "{r:?}"
        );
        let mut short = policy();
        short.scale_down_window_ms = 0;
        let fast = simulate(demand, Signal::Observed, &[], &short, 10.0, 0, 30 * MIN);
        assert!(fast.replica_hours < r.replica_hours);
    }

    #[test]
    fn scale_up_is_rate_limited() {
        let values: Vec<f64> = (0..10).map(|i| if i < 2 { 10.0 } else { 1000.0 }).collect();
        let demand = Grid {
            start_ms: 0,
            step_ms: MIN,
            values: &values,
            hold: false,
        };
        let mut p = policy();
        p.startup_delay_ms = 0;
        let r = simulate(demand, Signal::Observed, &[], &p, 10.0, 0, 10 * MIN);
        // 1 → 5 → 10 → 20 → 40 → 50: several steps, not one jump.
        assert!(r.scale_events >= 4, "{r:?}");
        assert_eq!(r.peak_replicas, 50);
    }

    #[test]
    fn a_floor_pre_scales_before_the_demand_arrives() {
        let values: Vec<f64> = (0..40)
            .map(|i| if i < 20 { 100.0 } else { 200.0 })
            .collect();
        let demand = Grid {
            start_ms: 0,
            step_ms: MIN,
            values: &values,
            hold: false,
        };
        let mut p = policy();
        p.startup_delay_ms = 2 * MIN;
        let reactive = simulate(demand, Signal::Observed, &[], &p, 10.0, 0, 40 * MIN);
        let floors = [Floor {
            start_ms: 15 * MIN,
            end_ms: 40 * MIN,
            min_replicas: 20,
        }];
        let planned = simulate(demand, Signal::Observed, &floors, &p, 10.0, 0, 40 * MIN);
        assert!(reactive.under_provisioned_minutes > 0.0);
        assert_eq!(planned.under_provisioned_minutes, 0.0, "{planned:?}");
    }

    #[test]
    fn a_predicted_signal_scales_ahead() {
        let values: Vec<f64> = (0..40)
            .map(|i| if i < 20 { 100.0 } else { 200.0 })
            .collect();
        let demand = Grid {
            start_ms: 0,
            step_ms: MIN,
            values: &values,
            hold: false,
        };
        let mut p = policy();
        p.startup_delay_ms = 2 * MIN;
        let signal = Signal::Predicted {
            grid: demand,
            ahead_ms: 5 * MIN,
        };
        let r = simulate(demand, signal, &[], &p, 10.0, 0, 40 * MIN);
        assert_eq!(r.under_provisioned_minutes, 0.0, "{r:?}");
    }

    #[test]
    fn missing_demand_holds_and_counts_nothing() {
        let values = [f64::NAN; 10];
        let demand = Grid {
            start_ms: 0,
            step_ms: MIN,
            values: &values,
            hold: false,
        };
        let r = simulate(demand, Signal::Observed, &[], &policy(), 10.0, 0, 10 * MIN);
        assert_eq!(r.under_provisioned_minutes, 0.0);
        assert_eq!(r.scale_events, 0);
        assert_eq!(r.peak_replicas, 1);
    }

    #[test]
    fn floors_merge_and_become_daily_windows() {
        let hour = 60 * MIN;
        let values: Vec<f64> = (0..24)
            .map(|h| if (8..10).contains(&h) { 95.0 } else { 5.0 })
            .collect();
        let band = Grid {
            start_ms: 0,
            step_ms: hour,
            values: &values,
            hold: false,
        };
        let floors = floors_from(band, hour, 0, 10.0, 100);
        assert!(floors.iter().any(|f| f.min_replicas == 10));
        let windows = daily_windows(&floors, 1);
        assert_eq!(windows.len(), 1, "{windows:?}");
        assert_eq!(windows[0].start, "08:00");
        assert_eq!(windows[0].end, "10:00");
        assert_eq!(windows[0].min_replicas, 10);
        assert_eq!(windows[0].cron, "0 8 * * *");
    }

    /// Four weeks at 5 min of a sharp daily ramp (quiet nights, a morning jump): day-ahead
    /// forecasts see the jump coming, the reactive HPA only once it is there.
    fn ramping_demand() -> Series {
        let mut s = Series::new("ramp");
        let step = 300_000i64;
        for i in 0..(28 * 288) {
            let t = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS + i * step;
            let minute = (t % DAY_MS) / MIN;
            let v = if (8 * 60..20 * 60).contains(&minute) {
                400.0
            } else {
                50.0
            };
            s.points.push((t, v + (i % 5) as f64));
        }
        s
    }

    #[test]
    fn the_proposal_pre_scales_a_predictable_ramp() {
        let options = HpaOptions {
            capacity_per_pod: 10.0,
            startup_delay_ms: 2 * MIN,
            ..HpaOptions::default()
        };
        let p = propose(&ramping_demand(), &options).unwrap();
        assert!(p.reactive.under_provisioned_minutes > 0.0, "{p:?}");
        assert!(
            p.proposal.under_provisioned_minutes < p.reactive.under_provisioned_minutes,
            "{p:?}"
        );
        assert!(
            p.proposal.replica_hours <= 1.1 * p.reactive.replica_hours,
            "{p:?}"
        );
        // The morning window of the next day raises the minimum.
        assert!(
            p.windows
                .iter()
                .any(|w| w.start == "07:00" || w.start == "08:00"),
            "{:?}",
            p.windows
        );
        assert!(p.validated_from > 0 && p.validated_to > p.validated_from);
        let external = propose(
            &ramping_demand(),
            &HpaOptions {
                external_ahead_ms: Some(5 * MIN),
                ..options
            },
        )
        .unwrap();
        assert!(external.windows.is_empty());
        assert!(
            external.proposal.under_provisioned_minutes
                < external.reactive.under_provisioned_minutes
        );
    }

    #[test]
    fn short_or_bad_input_is_an_error() {
        let mut short = ramping_demand();
        short.points.truncate(288);
        assert!(matches!(
            propose(&short, &HpaOptions::default()),
            Err(HpaError::History { .. })
        ));
        let bad = HpaOptions {
            capacity_per_pod: 0.0,
            ..HpaOptions::default()
        };
        assert!(matches!(
            propose(&ramping_demand(), &bad),
            Err(HpaError::Options(_))
        ));
        let bad = HpaOptions {
            target_utilization: 1.5,
            ..HpaOptions::default()
        };
        assert!(matches!(
            propose(&ramping_demand(), &bad),
            Err(HpaError::Options(_))
        ));
        assert!(matches!(
            propose(&Series::new("empty"), &HpaOptions::default()),
            Err(HpaError::Prepare { .. })
        ));
    }

    #[test]
    fn held_demand_steps_at_each_sample() {
        let values = [10.0, 20.0];
        let linear = Grid {
            start_ms: 0,
            step_ms: MIN,
            values: &values,
            hold: false,
        };
        let held = Grid {
            hold: true,
            ..linear
        };
        assert_eq!(linear.at(MIN / 2), Some(15.0));
        assert_eq!(held.at(MIN / 2), Some(10.0));
        assert_eq!(held.at(MIN + 1), Some(20.0));
        assert_eq!(linear.at(MIN + 1), None);
        assert_eq!(linear.at(-1), None);
    }

    #[test]
    fn yaml_and_adapter_rule() {
        let spec = HpaSpec {
            name: "api".into(),
            namespace: "prod".into(),
            metric: HpaMetric::Cpu,
            external: Some(ExternalMetric {
                job: "api-rps".into(),
                ahead: "5m".into(),
                target_per_pod: 80.5,
            }),
            target: 80.5,
            min_replicas: 2,
            max_replicas: 30,
            scale_down_window_seconds: 300,
            windows: vec![],
        };
        let y = hpa_yaml(&spec);
        assert!(y.contains("apiVersion: autoscaling/v2"));
        assert!(y.contains("averageValue: \"80500m\""));
        assert!(y.contains("name: opsloop_forecast_api_rps_5m\n"), "{y}");
        assert!(y.contains("stabilizationWindowSeconds: 300"));
        let rule = adapter_rule("api-rps", "5m");
        assert!(rule.contains("seriesQuery: 'opsloop_forecast_value{ahead=\"5m\"}'"));
        assert!(rule.contains("as: opsloop_forecast_api_rps_5m\n"), "{rule}");
        assert!(
            rule.contains(
                "metricsQuery: 'max(<<.Series>>{job=\"api-rps\",ahead=\"5m\"} or <<.Series>>{exported_job=\"api-rps\",ahead=\"5m\"})'"
            ),
            "{rule}"
        );
        // Quotes cannot break out of the PromQL string nor the YAML scalar.
        let odd = adapter_rule("it's \"x\"", "5m");
        assert!(odd.contains("job=\"it''s \\\"x\\\"\""), "{odd}");
        assert_eq!(quantity(80.0), "80");
    }

    #[test]
    fn ahead_labels_match_the_configuration_spelling() {
        use opsloop_core::config::ConfigDuration;
        for text in ["60m", "1h", "5m", "90s", "1500ms", "2d", "48h", "30s"] {
            let d: ConfigDuration = text.parse().unwrap();
            assert_eq!(ahead_label(d.as_millis_i64()), d.to_string(), "{text}");
        }
        assert_eq!(ahead_label(3_600_000), "1h");
        assert_eq!(ahead_label(90_000), "90s");
    }
}
