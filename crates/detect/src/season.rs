//! Causal season finding and the seasonal envelope: the period of a series from the
//! autocorrelation of its recent history (no timestamps, no per-series settings), and how far a
//! value falls outside what the same phase of the last cycles held. Fixed-size stack buffers;
//! nothing allocates.

/// Values averaged into one block before the coarse autocorrelation (keeps the search cheap).
pub const BLOCK: usize = 4;
/// The shortest period looked for, in points: shorter "seasons" are noise or the level's
/// own smoothness.
pub const MIN_PERIOD: usize = 12;
/// Share of the best autocorrelation a shorter lag needs to be taken as the period instead.
const NEAR_BEST: f64 = 0.9;
/// The most blocks the coarse search looks at.
const MAX_BLOCKS: usize = 512;

/// Autocorrelation of `values` (mean already removed, variance `var`) at `lag`, averaged over
/// the pairs it has so long lags are not shrunk towards 0.
fn autocorrelation(values: &[f64], lag: usize, var: f64) -> f64 {
    let Some(later) = values.get(lag..) else {
        return 0.0;
    };
    let pairs = later.len();
    if pairs == 0 || var <= 0.0 {
        return 0.0;
    }
    let sum: f64 = values.iter().zip(later).map(|(a, b)| a * b).sum();
    sum / pairs as f64 / var
}

/// The period of `history` (oldest first) and its autocorrelation, if one is at least
/// `min_acf`: the highest autocorrelation peak after the first zero crossing (a smooth series
/// correlates with itself at every short lag without being seasonal), searched on block means
/// and refined at full resolution. At least two cycles must be in the history.
pub fn find_period(history: &[f64], min_acf: f64) -> Option<(usize, f64)> {
    let n_blocks = (history.len() / BLOCK).min(MAX_BLOCKS);
    if n_blocks < 4 * MIN_PERIOD / BLOCK {
        return None;
    }
    let recent = history.get(history.len() - n_blocks * BLOCK..)?;
    let mut blocks = [0.0f64; MAX_BLOCKS];
    for (slot, chunk) in blocks.iter_mut().zip(recent.chunks_exact(BLOCK)) {
        *slot = chunk.iter().sum::<f64>() / BLOCK as f64;
    }
    let blocks = blocks.get_mut(..n_blocks)?;
    let mean = blocks.iter().sum::<f64>() / n_blocks as f64;
    blocks.iter_mut().for_each(|b| *b -= mean);
    let var = blocks.iter().map(|b| b * b).sum::<f64>() / n_blocks as f64;
    if !var.is_finite() || var <= 0.0 {
        return None;
    }
    let mut acf = [0.0f64; MAX_BLOCKS / 2 + 1];
    let mut crossed = false;
    let mut best = (0usize, min_acf);
    for lag in 1..=n_blocks / 2 {
        let r = autocorrelation(blocks, lag, var);
        if let Some(slot) = acf.get_mut(lag) {
            *slot = r;
        }
        if !crossed {
            crossed = r < 0.0;
            continue;
        }
        if lag * BLOCK >= MIN_PERIOD && r > best.1 {
            best = (lag, r);
        }
    }
    if best.0 == 0 {
        return None;
    }
    // Multiples of the period correlate about as well as the period itself: take the first
    // peak nearly as high as the best.
    let first_peak = (MIN_PERIOD.div_ceil(BLOCK)..best.0).find(|&lag| {
        let at = |l: usize| acf.get(l).copied().unwrap_or(0.0);
        at(lag) >= NEAR_BEST * best.1 && at(lag) >= at(lag - 1) && at(lag) >= at(lag + 1)
    });
    if let Some(lag) = first_peak {
        best = (lag, acf.get(lag).copied().unwrap_or(best.1));
    }

    // Refine around the coarse lag on the full-resolution values.
    let full = recent;
    let n = full.len();
    let mean = full.iter().sum::<f64>() / n as f64;
    let mut centred = [0.0f64; MAX_BLOCKS * BLOCK];
    let centred = centred.get_mut(..n)?;
    for (c, v) in centred.iter_mut().zip(full) {
        *c = v - mean;
    }
    let var = centred.iter().map(|c| c * c).sum::<f64>() / n as f64;
    let coarse = best.0 * BLOCK;
    let mut refined = (coarse, f64::NEG_INFINITY);
    for lag in coarse.saturating_sub(BLOCK - 1).max(MIN_PERIOD)..=(coarse + BLOCK - 1).min(n / 2) {
        let r = autocorrelation(centred, lag, var);
        if r > refined.1 {
            refined = (lag, r);
        }
    }
    refined.1.is_finite().then_some(refined)
}

/// The range `[lo, hi]` the same phase held in the last `cycles` cycles of `period`, phase
/// jitter of `tolerance` points allowed either way. `back(k)` is the value `k` points before the
/// newest (`back(0)` the newest); `None` once it runs out of history. `None` if not even one
/// cycle is there.
pub fn envelope(
    back: impl Fn(usize) -> Option<f64>,
    period: usize,
    cycles: usize,
    tolerance: usize,
) -> Option<(f64, f64)> {
    let mut range: Option<(f64, f64)> = None;
    for cycle in 1..=cycles {
        let centre = cycle * period;
        for offset in centre.saturating_sub(tolerance).max(1)..=centre + tolerance {
            let Some(v) = back(offset) else {
                return range;
            };
            range = Some(range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
        }
    }
    range
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (*seed >> 33) as f64 / f64::from(1u32 << 31) - 0.5
    }

    #[test]
    fn finds_the_period_of_a_noisy_cycle() {
        let mut seed = 3;
        for period in [24usize, 50, 144, 288] {
            let values: Vec<f64> = (0..1024)
                .map(|i| {
                    10.0 * (std::f64::consts::TAU * i as f64 / period as f64).sin()
                        + 2.0 * noise(&mut seed)
                })
                .collect();
            let (found, acf) = find_period(&values, 0.3).unwrap();
            assert!(
                found.abs_diff(period) <= 1 + period / 50,
                "{period}: found {found}"
            );
            assert!(acf > 0.5);
        }
    }

    #[test]
    fn no_period_in_noise_a_trend_or_a_constant() {
        let mut seed = 11;
        let noise_only: Vec<f64> = (0..1024).map(|_| noise(&mut seed)).collect();
        assert_eq!(find_period(&noise_only, 0.3), None);
        let trend: Vec<f64> = (0..1024).map(|i| i as f64).collect();
        assert_eq!(find_period(&trend, 0.3), None);
        assert_eq!(find_period(&[5.0; 1024], 0.3), None);
        assert_eq!(find_period(&[1.0, 2.0, 3.0], 0.3), None);
    }

    #[test]
    fn envelope_spans_the_same_phase_of_past_cycles() {
        // newest first: back(k) = k, history of 100 points.
        let back = |k: usize| (k < 100).then_some(k as f64);
        assert_eq!(envelope(back, 10, 3, 2), Some((8.0, 32.0)));
        assert_eq!(envelope(back, 40, 3, 2), Some((38.0, 82.0)));
        assert_eq!(envelope(back, 200, 3, 2), None);
    }
}
