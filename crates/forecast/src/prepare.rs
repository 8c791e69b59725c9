//! Preparation of a raw series for fitting: ordering and de-duplication, a regular grid at the
//! series' own (inferred) step, short gaps filled, long gaps left missing and reported, season
//! lengths, and outliers found with a rolling robust z-score and down-weighted.
//!
//! Nothing is silent: every change is counted in [`PreparedReport`]. Nothing is invented for
//! fitting: a slot of a long gap stays NaN with weight 0, and every model skips such slots.
//! An outlier keeps its place; the models see it pulled in to the edge of the robust band
//! (`fit_values`) with a weight below 1, so a real level shift, which moves the rolling median
//! with it, survives.

use serde::Serialize;
use thiserror::Error;

use crate::series::Series;
use crate::stats;

/// Why a series cannot be prepared.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum PrepareError {
    /// No finite value at all (empty, or all NaN).
    #[error("no finite values")]
    NoValues,
    /// Too few points to infer a step or to fit anything.
    #[error("only {points} point(s) with values: at least {needed} needed")]
    TooShort {
        /// Points with values.
        points: usize,
        /// The minimum.
        needed: usize,
    },
    /// The grid spanning the timestamps would be larger than the memory bound.
    #[error(
        "{points} grid points at a step of {step_ms} ms exceed the limit of {limit} (irregular timestamps?)"
    )]
    GridTooLarge {
        /// Points the grid would need.
        points: u64,
        /// The inferred step.
        step_ms: i64,
        /// The limit.
        limit: usize,
    },
    /// A season given with `--season` is not a whole number of steps of at least 2.
    #[error("season of {season_ms} ms is not at least two steps of {step_ms} ms")]
    BadSeason {
        /// The season asked for.
        season_ms: i64,
        /// The series' step.
        step_ms: i64,
    },
}

/// How to prepare.
#[derive(Clone, Debug, PartialEq)]
pub struct PrepareOptions {
    /// Gaps up to this long (milliseconds) are filled by linear interpolation; longer ones are
    /// left missing. At least one step is always filled.
    pub max_fill_ms: i64,
    /// Robust z-score above which a point is an outlier.
    pub outlier_z: f64,
    /// Half-width, in steps, of the rolling window of the robust z-score.
    pub outlier_half_window: usize,
    /// Season lengths in milliseconds; empty = inferred from the step (a day, a week).
    pub seasons_ms: Vec<i64>,
    /// The largest grid accepted (bounded memory).
    pub max_points: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            max_fill_ms: 3_600_000,
            outlier_z: 3.0,
            outlier_half_window: 15,
            seasons_ms: Vec::new(),
            max_points: 2_000_000,
        }
    }
}

/// A stretch of missing grid points that was too long to fill.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gap {
    /// First missing slot, Unix milliseconds.
    pub start_ms: i64,
    /// Last missing slot, Unix milliseconds.
    pub end_ms: i64,
    /// Missing slots.
    pub points: usize,
}

/// What preparation did to one series (the issue's `prepared` object).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PreparedReport {
    /// Points read (with or without a value).
    pub input_points: usize,
    /// Points on the grid, from the first to the last value.
    pub grid_points: usize,
    /// The grid step in seconds.
    pub step_seconds: f64,
    /// Grid points filled by interpolation (short gaps).
    pub filled: usize,
    /// Grid points left missing (long gaps), excluded from fitting.
    pub dropped: usize,
    /// Points flagged as outliers and down-weighted.
    pub outliers: usize,
    /// Points sharing a timestamp (or a grid slot) with a later one; the later one is kept.
    pub duplicates: usize,
    /// Points that came before an earlier timestamp (the series was sorted).
    pub unordered: usize,
    /// Points off the grid, moved to the nearest slot.
    pub off_grid: usize,
    /// Season lengths used, in steps.
    pub seasons: Vec<usize>,
    /// The gaps left missing.
    pub gaps: Vec<Gap>,
}

/// A series ready for the models.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// Time of the first grid point, Unix milliseconds.
    pub start_ms: i64,
    /// Grid step, milliseconds.
    pub step_ms: i64,
    /// Values on the grid (filled where short gaps were); NaN in long gaps.
    pub values: Vec<f64>,
    /// `values` with outliers pulled in to the robust band: what the models fit.
    pub fit_values: Vec<f64>,
    /// Per point: 0 in gaps, below 1 for outliers, 1 otherwise.
    pub weights: Vec<f64>,
    /// Indices of the outliers.
    pub outlier_indices: Vec<usize>,
    /// Season lengths in steps, ascending.
    pub seasons: Vec<usize>,
    /// What was done.
    pub report: PreparedReport,
}

impl Prepared {
    /// Number of grid points.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the grid is empty (never, for a prepared series).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Time of grid point `i` (also past the end, for forecasts).
    pub fn time_of(&self, i: usize) -> i64 {
        let i = i64::try_from(i).unwrap_or(i64::MAX);
        self.start_ms.saturating_add(i.saturating_mul(self.step_ms))
    }

    /// Time of the last grid point.
    pub fn last_ms(&self) -> i64 {
        self.time_of(self.len().saturating_sub(1))
    }
}

const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;

/// The median of the differences of sorted, distinct timestamps.
fn median_step(times: &[i64]) -> i64 {
    let mut diffs: Vec<i64> = times
        .windows(2)
        .filter_map(|w| match w {
            [a, b] if b > a => Some(b - a),
            _ => None,
        })
        .collect();
    if diffs.is_empty() {
        return 1;
    }
    let mid = diffs.len() / 2;
    let (_, median, _) = diffs.select_nth_unstable(mid);
    (*median).max(1)
}

/// The "round" step nearest `step_ms` within 5 %: a divisor of a day (whole seconds, or
/// whole milliseconds of a second below one), or whole days above one.
fn round_step_near(step_ms: i64) -> Option<i64> {
    let candidates: Vec<i64> = if step_ms >= DAY_MS {
        vec![(step_ms as f64 / DAY_MS as f64).round() as i64 * DAY_MS]
    } else if step_ms >= 1000 {
        (1..=86_400i64)
            .filter(|s| 86_400 % s == 0)
            .map(|s| s * 1000)
            .collect()
    } else {
        (1..=1000i64).filter(|ms| 1000 % ms == 0).collect()
    };
    candidates
        .into_iter()
        .filter(|c| *c > 0 && ((c - step_ms).abs() as f64) <= 0.05 * step_ms as f64)
        .min_by_key(|c| (c - step_ms).abs())
}

/// The grid phase for `step_ms`: the median offset of the timestamps from the first one's
/// grid (in (-step/2, step/2]), so jitter around the grid does not push points a slot away.
fn grid_start(times: &[i64], step_ms: i64) -> i64 {
    let first = times.first().copied().unwrap_or(0);
    let mut offsets: Vec<i64> = times
        .iter()
        .map(|t| {
            let r = (t - first).rem_euclid(step_ms);
            if 2 * r > step_ms { r - step_ms } else { r }
        })
        .collect();
    if offsets.is_empty() {
        return first;
    }
    let mid = offsets.len() / 2;
    let (_, median, _) = offsets.select_nth_unstable(mid);
    first + *median
}

/// How badly `step_ms` fits: timestamps sharing a slot plus empty slots within the span.
fn misfit(times: &[i64], step_ms: i64) -> u64 {
    let start = grid_start(times, step_ms);
    let mut collisions = 0u64;
    let mut last: Option<i64> = None;
    let mut first_slot = None;
    for &t in times {
        let slot = ((t - start) as f64 / step_ms as f64).round() as i64;
        first_slot.get_or_insert(slot);
        if last == Some(slot) {
            collisions += 1;
        }
        last = Some(slot);
    }
    let span = match (first_slot, last) {
        (Some(a), Some(b)) => u64::try_from(b - a + 1).unwrap_or(0),
        _ => 0,
    };
    let distinct = times.len() as u64 - collisions;
    collisions + span.saturating_sub(distinct)
}

/// The step of sorted, distinct timestamps and the grid's first time. The candidates: the
/// median difference, the mean one (span over count) and the round steps (see
/// [`round_step_near`]) near either, all within 5 % of the median; the one whose grid leaves the fewest timestamps
/// sharing a slot and the fewest empty slots wins, a round step on a tie. So jittered
/// samples (300 s ± 100 s) keep their 300 s step (and their daily season) instead of an
/// odd median like 297 s, while a truly regular 297 s series keeps 297 s.
fn infer_grid(times: &[i64]) -> (i64, i64) {
    let median = median_step(times);
    let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
        return (median, 0);
    };
    if times.len() < 3 {
        return (median, first);
    }
    let mean = (((last - first) as f64 / (times.len() - 1) as f64).round() as i64).max(1);
    // Only near the median: a mean stretched by long gaps is not a step.
    let near = |c: i64| ((c - median).abs() as f64) <= 0.05 * median as f64;
    let mut candidates: Vec<(i64, bool)> = vec![(median, false)];
    if near(mean) {
        candidates.push((mean, false));
    }
    for base in [median, mean] {
        if let Some(round) = round_step_near(base).filter(|r| near(*r)) {
            candidates.push((round, true));
        }
    }
    let best = candidates
        .into_iter()
        .min_by_key(|&(step, round)| (misfit(times, step), !round))
        .map_or(median, |(step, _)| step);
    (best, grid_start(times, best))
}

/// Season lengths in steps: those asked for, or a day and a week when the step divides them.
/// A season is kept only when the history covers at least two of its cycles.
pub fn seasons_for(step_ms: i64, n: usize, asked_ms: &[i64]) -> Result<Vec<usize>, PrepareError> {
    let mut out = Vec::new();
    if asked_ms.is_empty() {
        for season_ms in [DAY_MS, WEEK_MS] {
            if step_ms < season_ms && season_ms % step_ms == 0 {
                let steps = usize::try_from(season_ms / step_ms).unwrap_or(usize::MAX);
                if steps >= 2 && n >= 2 * steps {
                    out.push(steps);
                }
            }
        }
    } else {
        for &season_ms in asked_ms {
            let steps = (season_ms as f64 / step_ms as f64).round();
            if steps.is_nan() || steps < 2.0 {
                return Err(PrepareError::BadSeason { season_ms, step_ms });
            }
            let steps = steps as usize;
            if n >= 2 * steps {
                out.push(steps);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Prepares `series`.
pub fn prepare(series: &Series, options: &PrepareOptions) -> Result<Prepared, PrepareError> {
    let mut report = PreparedReport {
        input_points: series.points.len(),
        ..PreparedReport::default()
    };
    let mut points: Vec<(i64, f64)> = series
        .points
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    if points.is_empty() {
        return Err(PrepareError::NoValues);
    }
    report.unordered = points
        .windows(2)
        .filter(|w| matches!(w, [a, b] if b.0 < a.0))
        .count();
    // Stable: among equal timestamps the later input row stays last, and wins.
    points.sort_by_key(|p| p.0);
    let before = points.len();
    dedup_keep_last(&mut points);
    report.duplicates = before - points.len();
    if points.len() < 3 {
        return Err(PrepareError::TooShort {
            points: points.len(),
            needed: 3,
        });
    }
    let times: Vec<i64> = points.iter().map(|p| p.0).collect();
    let (step_ms, start_ms) = infer_grid(&times);
    let end_ms = times.last().copied().unwrap_or(start_ms);
    let slots = ((end_ms - start_ms) as f64 / step_ms as f64)
        .round()
        .max(0.0) as u64
        + 1;
    if slots > options.max_points as u64 {
        return Err(PrepareError::GridTooLarge {
            points: slots,
            step_ms,
            limit: options.max_points,
        });
    }
    let n = slots as usize;
    let mut values = vec![f64::NAN; n];
    for &(t, v) in &points {
        let offset = t - start_ms;
        // At least 0: the grid's phase may start it just after the first timestamp.
        let slot = (offset as f64 / step_ms as f64).round().max(0.0) as usize;
        if offset % step_ms != 0 {
            report.off_grid += 1;
        }
        if let Some(cell) = values.get_mut(slot) {
            if !cell.is_nan() {
                report.duplicates += 1;
            }
            *cell = v;
        }
    }
    report.grid_points = n;
    report.step_seconds = step_ms as f64 / 1000.0;
    let max_fill_steps = usize::try_from((options.max_fill_ms / step_ms).max(1)).unwrap_or(1);
    fill_gaps(&mut values, max_fill_steps, start_ms, step_ms, &mut report);

    let seasons = seasons_for(step_ms, n, &options.seasons_ms)?;
    report.seasons = seasons.clone();
    let mut weights: Vec<f64> = values
        .iter()
        .map(|v| if v.is_nan() { 0.0 } else { 1.0 })
        .collect();
    let mut fit_values = values.clone();
    let outlier_indices = flag_outliers(
        &values,
        seasons.first().copied(),
        options,
        &mut fit_values,
        &mut weights,
    );
    report.outliers = outlier_indices.len();
    Ok(Prepared {
        start_ms,
        step_ms,
        values,
        fit_values,
        weights,
        outlier_indices,
        seasons,
        report,
    })
}

/// Removes all but the last of each run of equal timestamps (input sorted by time).
fn dedup_keep_last(points: &mut Vec<(i64, f64)>) {
    let mut write = 0;
    for read in 0..points.len() {
        let next_same = points
            .get(read + 1)
            .is_some_and(|next| points.get(read).is_some_and(|p| p.0 == next.0));
        if !next_same {
            points.swap(write, read);
            write += 1;
        }
    }
    points.truncate(write);
}

/// Fills runs of NaN up to `max_steps` long by linear interpolation; longer runs are recorded.
fn fill_gaps(
    values: &mut [f64],
    max_steps: usize,
    start_ms: i64,
    step_ms: i64,
    report: &mut PreparedReport,
) {
    let mut i = 0;
    while i < values.len() {
        if !values.get(i).is_some_and(|v| v.is_nan()) {
            i += 1;
            continue;
        }
        let gap_start = i;
        while values.get(i).is_some_and(|v| v.is_nan()) {
            i += 1;
        }
        let len = i - gap_start;
        // The grid starts and ends on values, so both neighbours exist.
        let before = gap_start
            .checked_sub(1)
            .and_then(|j| values.get(j))
            .copied();
        let after = values.get(i).copied();
        match (before, after) {
            (Some(a), Some(b)) if len <= max_steps => {
                for k in 0..len {
                    let frac = (k + 1) as f64 / (len + 1) as f64;
                    if let Some(cell) = values.get_mut(gap_start + k) {
                        *cell = a + (b - a) * frac;
                    }
                }
                report.filled += len;
            }
            _ => {
                report.dropped += len;
                let at = |j: usize| start_ms + j as i64 * step_ms;
                report.gaps.push(Gap {
                    start_ms: at(gap_start),
                    end_ms: at(i - 1),
                    points: len,
                });
            }
        }
    }
}

/// Flags outliers by a rolling robust z-score of the deseasonalised series and pulls them in.
/// Returns their indices.
fn flag_outliers(
    values: &[f64],
    season: Option<usize>,
    options: &PrepareOptions,
    fit_values: &mut [f64],
    weights: &mut [f64],
) -> Vec<usize> {
    let n = values.len();
    // Residual after the per-phase median profile, so a daily peak is not an outlier.
    let mut residual = values.to_vec();
    if let Some(m) = season.filter(|&m| n >= 3 * m) {
        let profile = stats::phase_medians(values, m);
        for (i, r) in residual.iter_mut().enumerate() {
            if let Some(p) = profile.get(i % m) {
                *r -= p;
            }
        }
    }
    let mut scratch: Vec<f64> = residual.iter().copied().filter(|v| v.is_finite()).collect();
    let global_median = stats::median_in_place(&mut scratch).unwrap_or(0.0);
    // A quiet stretch has a tiny local MAD; flagging its normal noise would be wrong. The
    // floor is the point-to-point noise (differences are free of level shifts).
    scratch.clear();
    scratch.extend(residual.windows(2).filter_map(|w| match w {
        [a, b] if a.is_finite() && b.is_finite() => Some((b - a).abs()),
        _ => None,
    }));
    // The median difference, not the mean: chosen on half of the NAB series (the mean made the
    // floor too high on spiky series and their bands too narrow).
    let noise = stats::median_in_place(&mut scratch).unwrap_or(0.0) / std::f64::consts::SQRT_2;
    let floor = (0.5 * noise).max(1e-9 * (1.0 + global_median.abs()));
    let k = options.outlier_half_window.max(2);
    let z_limit = options.outlier_z;
    let mut out = Vec::new();
    if z_limit.is_nan() || z_limit <= 0.0 {
        return out;
    }
    let mut window = Vec::with_capacity(2 * k + 1);
    for i in 0..n {
        let Some(&r) = residual.get(i) else { break };
        if !r.is_finite() {
            continue;
        }
        window.clear();
        let lo = i.saturating_sub(k);
        let hi = (i + k + 1).min(n);
        window.extend(
            residual
                .get(lo..hi)
                .unwrap_or_default()
                .iter()
                .copied()
                .filter(|v| v.is_finite()),
        );
        let Some(median) = stats::median_in_place(&mut window) else {
            continue;
        };
        for v in window.iter_mut() {
            *v = (*v - median).abs();
        }
        let mad = stats::median_in_place(&mut window)
            .unwrap_or(0.0)
            .max(floor);
        let sigma = 1.4826 * mad;
        let z = (r - median) / sigma;
        if z.abs() > z_limit {
            out.push(i);
            let pull = (r - median) - z.signum() * z_limit * sigma;
            if let (Some(f), Some(w)) = (fit_values.get_mut(i), weights.get_mut(i)) {
                *f -= pull;
                *w = z_limit / z.abs();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[(i64, f64)]) -> Series {
        Series {
            name: "s".into(),
            points: points.to_vec(),
            ..Series::default()
        }
    }

    fn regular(n: usize, step_s: i64, f: impl Fn(usize) -> f64) -> Series {
        series(
            &(0..n)
                .map(|i| (i as i64 * step_s * 1000, f(i)))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn jittered_timestamps_keep_their_round_step_and_daily_season() {
        // Four days at 300 s, each sample 0-200 s late (a scraper under load).
        let mut seed = 12_345u64;
        let mut jitter = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 33) % 200_001) as i64
        };
        let n = 4 * 288;
        let points: Vec<(i64, f64)> = (0..n)
            .map(|i| {
                let t = 1_700_000_000_000 + i as i64 * 300_000 + jitter();
                let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                (t, 100.0 + 30.0 * phase.sin())
            })
            .collect();
        let p = prepare(&series(&points), &PrepareOptions::default()).unwrap();
        assert_eq!(p.step_ms, 300_000);
        assert_eq!(p.report.duplicates, 0, "{:?}", p.report);
        assert_eq!(p.report.filled, 0, "{:?}", p.report);
        assert_eq!(p.values.len(), n);
        assert!(p.values.iter().all(|v| v.is_finite()));
        assert!(p.seasons.contains(&288), "{:?}", p.seasons);
        // A truly regular odd step stays as it is.
        let odd = regular(500, 297, |i| i as f64);
        let p = prepare(&odd, &PrepareOptions::default()).unwrap();
        assert_eq!(p.step_ms, 297_000);
        assert_eq!((p.report.duplicates, p.report.filled), (0, 0));
    }

    #[test]
    fn sorts_dedups_and_infers_the_step() {
        let s = series(&[(600_000, 3.0), (0, 1.0), (300_000, 2.0), (300_000, 2.5)]);
        let p = prepare(&s, &PrepareOptions::default()).unwrap();
        assert_eq!(p.step_ms, 300_000);
        assert_eq!(p.values, vec![1.0, 2.5, 3.0]);
        assert_eq!(p.report.duplicates, 1);
        assert_eq!(p.report.unordered, 1);
    }

    #[test]
    fn short_gaps_filled_long_gaps_dropped() {
        let mut s = regular(100, 60, |i| i as f64);
        s.points.retain(|(t, _)| !(5..7).contains(&(t / 60_000)));
        s.points.retain(|(t, _)| !(20..90).contains(&(t / 60_000)));
        let options = PrepareOptions {
            max_fill_ms: 5 * 60_000,
            ..PrepareOptions::default()
        };
        let p = prepare(&s, &options).unwrap();
        assert_eq!(p.len(), 100);
        assert_eq!(p.report.filled, 2);
        assert_eq!(p.values[5], 5.0);
        assert_eq!(p.report.dropped, 70);
        assert!(p.values[50].is_nan());
        assert_eq!(p.weights[50], 0.0);
        assert_eq!(
            p.report.gaps,
            vec![Gap {
                start_ms: 20 * 60_000,
                end_ms: 89 * 60_000,
                points: 70
            }]
        );
    }

    #[test]
    fn spike_is_down_weighted_and_level_shift_survives() {
        let mut s = regular(400, 300, |i| {
            let base = if i < 200 { 10.0 } else { 50.0 };
            base + ((i * 7919) % 13) as f64 * 0.1
        });
        s.points[100].1 = 500.0;
        let p = prepare(&s, &PrepareOptions::default()).unwrap();
        assert!(p.outlier_indices.contains(&100));
        assert_eq!(p.values[100], 500.0, "outliers are not deleted");
        assert!(p.fit_values[100] < 20.0);
        assert!(p.weights[100] < 0.1);
        // The shift itself is at most a point or two at the boundary, never the new level.
        assert!(p.outlier_indices.iter().filter(|&&i| i > 210).count() == 0);
        assert!(p.fit_values[300] > 45.0);
    }

    #[test]
    fn seasons_inferred_from_step_and_history() {
        assert_eq!(seasons_for(300_000, 4032, &[]).unwrap(), vec![288, 2016]);
        assert_eq!(seasons_for(300_000, 3744, &[]).unwrap(), vec![288]);
        assert_eq!(
            seasons_for(11 * 60_000, 5000, &[]).unwrap(),
            Vec::<usize>::new()
        );
        assert_eq!(seasons_for(300_000, 4032, &[DAY_MS]).unwrap(), vec![288]);
        assert!(seasons_for(300_000, 4032, &[300_000]).is_err());
    }

    #[test]
    fn bad_series_are_errors() {
        assert_eq!(
            prepare(&series(&[]), &PrepareOptions::default()),
            Err(PrepareError::NoValues)
        );
        assert_eq!(
            prepare(&series(&[(0, f64::NAN)]), &PrepareOptions::default()),
            Err(PrepareError::NoValues)
        );
        assert!(matches!(
            prepare(&series(&[(0, 1.0), (1, 1.0)]), &PrepareOptions::default()),
            Err(PrepareError::TooShort { .. })
        ));
        let huge = series(&[(0, 1.0), (1, 1.0), (2, 1.0), (1_000_000_000_000, 1.0)]);
        assert!(matches!(
            prepare(&huge, &PrepareOptions::default()),
            Err(PrepareError::GridTooLarge { .. })
        ));
    }
}
