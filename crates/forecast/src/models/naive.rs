//! Seasonal naive: each future point repeats the value one season earlier (the last observed
//! one at that phase, when the latest cycle has a gap there).

use super::{FitData, FitInfo, Model, ModelError};

/// Seasonal naive on one of the series' seasons.
#[derive(Clone, Copy, Debug)]
pub struct SeasonalNaive {
    /// Which season (0 = the shortest, usually a day; 1 = the next, usually a week).
    season_index: usize,
}

impl SeasonalNaive {
    /// Seasonal naive on the `index`-th shortest season.
    pub fn nth_season(index: usize) -> SeasonalNaive {
        SeasonalNaive {
            season_index: index,
        }
    }
}

/// Writes seasonal-naive forecasts with period `m` into `out`.
pub fn seasonal_naive(values: &[f64], m: usize, out: &mut [f64]) -> Result<(), ModelError> {
    let n = values.len();
    if m == 0 || n < m {
        return Err(ModelError::TooShort { needed: m, has: n });
    }
    let fallback = values
        .iter()
        .rev()
        .copied()
        .find(|v| v.is_finite())
        .ok_or(ModelError::TooShort { needed: 1, has: 0 })?;
    for (h, slot) in out.iter_mut().enumerate() {
        // The same phase in the last cycle, then earlier cycles when that one is missing.
        let mut back = m - (h % m);
        let mut found = None;
        while back <= n {
            if let Some(v) = values.get(n - back).copied().filter(|v| v.is_finite()) {
                found = Some(v);
                break;
            }
            back += m;
        }
        *slot = found.unwrap_or(fallback);
    }
    Ok(())
}

impl Model for SeasonalNaive {
    fn forecast(&self, data: &FitData<'_>, out: &mut [f64]) -> Result<FitInfo, ModelError> {
        let m = *data
            .seasons
            .get(self.season_index)
            .ok_or(ModelError::NoSeason)?;
        seasonal_naive(data.values, m, out)?;
        Ok(FitInfo::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_the_last_cycle_and_skips_gaps() {
        let values = [1.0, 2.0, 3.0, 4.0, f64::NAN, 6.0];
        let mut out = [0.0; 5];
        seasonal_naive(&values, 3, &mut out).unwrap();
        assert_eq!(out, [4.0, 2.0, 6.0, 4.0, 2.0]);
    }

    #[test]
    fn needs_a_season() {
        let data = FitData {
            values: &[1.0, 2.0],
            weights: &[1.0, 1.0],
            seasons: &[],
            design_len: 0,
        };
        let mut out = [0.0; 2];
        assert_eq!(
            SeasonalNaive::nth_season(0).forecast(&data, &mut out),
            Err(ModelError::NoSeason)
        );
    }
}
