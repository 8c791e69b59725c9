//! Small robust statistics shared by preparation, models and scoring: medians that skip NaN,
//! per-phase profiles, quantiles, and the MASE scale.

/// The median of `values` (reordered in place); `None` when empty. NaN must be filtered out
/// by the caller (they sort last and would bias the result).
pub fn median_in_place(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let len = values.len();
    let mid = len / 2;
    let (lower, upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if len % 2 == 1 {
        return Some(upper);
    }
    let lower_max = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lower_max + upper) / 2.0)
}

/// The `q`-quantile (0..=1) of sorted, finite `sorted`, linearly interpolated.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let a = *sorted.get(lo)?;
    let b = *sorted.get(hi)?;
    Some(a + (b - a) * (pos - lo as f64))
}

/// Per-phase medians of a series with period `m` (NaN skipped; a phase without values gets 0
/// after centring). The profile is centred on its median so it carries no level.
pub fn phase_medians(values: &[f64], m: usize) -> Vec<f64> {
    let m = m.max(1);
    let cycles = values.len().div_ceil(m);
    let mut scratch = Vec::with_capacity(cycles);
    let mut profile = Vec::with_capacity(m);
    for phase in 0..m {
        scratch.clear();
        scratch.extend(
            values
                .iter()
                .skip(phase)
                .step_by(m)
                .copied()
                .filter(|v| v.is_finite()),
        );
        profile.push(median_in_place(&mut scratch).unwrap_or(f64::NAN));
    }
    let mut finite: Vec<f64> = profile.iter().copied().filter(|v| v.is_finite()).collect();
    let centre = median_in_place(&mut finite).unwrap_or(0.0);
    for p in profile.iter_mut() {
        *p = if p.is_finite() { *p - centre } else { 0.0 };
    }
    profile
}

/// The MASE denominator: mean absolute difference between points `lag` apart, over pairs where
/// both are finite. Falls back to lag 1 when that is zero or has no pairs (as the anchors do);
/// `None` when even lag 1 is degenerate (a constant series). "Zero" is relative: a mean
/// difference below 1e-9 of the mean magnitude is rounding error (a perfectly periodic series
/// computed in floating point), not a scale, and would turn every MASE into 1e15.
pub fn mase_scale(values: &[f64], lag: usize) -> Option<f64> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let mean_magnitude = if finite.is_empty() {
        0.0
    } else {
        finite
            .iter()
            .map(|v| v.abs() / finite.len() as f64)
            .sum::<f64>()
    };
    let floor = (1e-9 * mean_magnitude).max(f64::MIN_POSITIVE);
    let mean_abs_diff = |lag: usize| {
        let (mut sum, mut count) = (0.0, 0usize);
        for (a, b) in values.iter().zip(values.iter().skip(lag)) {
            if a.is_finite() && b.is_finite() {
                sum += (b - a).abs();
                count += 1;
            }
        }
        let mean = sum / count.max(1) as f64;
        (count > 0 && mean.is_finite() && mean > floor).then_some(mean)
    };
    mean_abs_diff(lag.max(1)).or_else(|| mean_abs_diff(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median_in_place(&mut []), None);
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_in_place(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let sorted = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&sorted, 0.5), Some(2.0));
        assert_eq!(quantile_sorted(&sorted, 0.1), Some(0.4));
        assert_eq!(quantile_sorted(&[], 0.5), None);
    }

    #[test]
    fn phase_profile_is_centred() {
        let values: Vec<f64> = (0..12).map(|i| [1.0, 5.0, 3.0][i % 3]).collect();
        assert_eq!(phase_medians(&values, 3), vec![-2.0, 2.0, 0.0]);
    }

    #[test]
    fn mase_scale_falls_back_to_lag_one() {
        assert_eq!(mase_scale(&[1.0, 2.0, 1.0, 2.0], 2), Some(1.0));
        assert_eq!(mase_scale(&[5.0, 5.0, 5.0], 1), None);
        assert_eq!(mase_scale(&[1.0, f64::NAN, 3.0], 1), None);
    }

    #[test]
    fn mase_scale_ignores_rounding_error() {
        // A perfect daily cycle computed in floating point: seasonal differences of ~1e-15.
        let values: Vec<f64> = (0..96)
            .map(|i| 100.0 + 30.0 * (i as f64 / 24.0 * std::f64::consts::TAU).sin())
            .collect();
        let scale = mase_scale(&values, 24).unwrap();
        assert!(scale > 1.0, "{scale}");
        // Values too large for their differences to be finite: no scale, not infinity.
        assert_eq!(mase_scale(&[1e308, -1e308, 1e308], 1), None);
    }
}
