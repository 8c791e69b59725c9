//! Capacity warnings: when a forecast crosses a threshold, read from the bands and not from the
//! mean alone. For an upper threshold the 80 % band's upper edge gives the earliest plausible
//! crossing, the point forecast the expected one and the lower edge the latest one (mirrored
//! for a lower threshold).

use serde::{Deserialize, Serialize};

use crate::pipeline::{ForecastPoint, rfc3339};

/// Which side of the threshold is the problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Reaching or exceeding the threshold is the problem (disk full, CPU budget).
    Above,
    /// Falling to or below it is (free space, headroom).
    Below,
}

/// A threshold to watch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Threshold {
    /// The value.
    pub value: f64,
    /// Which side.
    pub direction: Direction,
}

/// A predicted crossing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CapacityWarning {
    /// The threshold.
    pub threshold: Threshold,
    /// When the point forecast crosses, if it does within the horizon.
    #[serde(serialize_with = "opt_rfc3339")]
    pub expected: Option<i64>,
    /// Earliest crossing inside the 80 % band.
    #[serde(serialize_with = "opt_rfc3339")]
    pub earliest_80: Option<i64>,
    /// Latest crossing inside the 80 % band (`None`: not within the horizon).
    #[serde(serialize_with = "opt_rfc3339")]
    pub latest_80: Option<i64>,
    /// The sentence for people.
    pub message: String,
}

fn opt_rfc3339<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => rfc3339(ms, s),
        None => s.serialize_none(),
    }
}

/// `3 d 4 h`, `2 h 5 min`, `40 s`: a span readable at a glance (two units at most).
pub fn human_span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

fn format_value(v: f64) -> String {
    // `0.9`, `85`, `1.5e9`: the threshold as the user typed it, near enough.
    if v != 0.0 && (v.abs() >= 1e7 || v.abs() < 1e-3) {
        format!("{v:e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Checks `points` (forecast after `last_ms`, the last observation at `last_value`) against
/// `threshold`. `None` when neither the forecast nor its 80 % band crosses within the horizon.
pub fn check(
    points: &[ForecastPoint],
    last_ms: i64,
    last_value: Option<f64>,
    threshold: Threshold,
) -> Option<CapacityWarning> {
    let crosses = |v: f64| match threshold.direction {
        Direction::Above => v >= threshold.value,
        Direction::Below => v <= threshold.value,
    };
    let (word, side) = match threshold.direction {
        Direction::Above => ("above", "crosses"),
        Direction::Below => ("below", "falls below"),
    };
    let t = format_value(threshold.value);
    if last_value.is_some_and(crosses) {
        return Some(CapacityWarning {
            threshold,
            expected: Some(last_ms),
            earliest_80: Some(last_ms),
            latest_80: Some(last_ms),
            message: format!("already {word} {t}"),
        });
    }
    let first = |edge: fn(&ForecastPoint, Direction) -> f64| {
        points
            .iter()
            .find(|p| crosses(edge(p, threshold.direction)))
            .map(|p| p.time_ms)
    };
    // For an upper threshold the band's upper edge crosses first; mirrored below.
    let near_edge = |p: &ForecastPoint, d: Direction| match d {
        Direction::Above => p.upper_80,
        Direction::Below => p.lower_80,
    };
    let far_edge = |p: &ForecastPoint, d: Direction| match d {
        Direction::Above => p.lower_80,
        Direction::Below => p.upper_80,
    };
    let earliest = first(near_edge)?;
    let expected = first(|p, _| p.value);
    let latest = first(far_edge);
    let span = |ms: i64| human_span(ms - last_ms);
    let horizon_end = points.last().map(|p| p.time_ms).unwrap_or(last_ms);
    let band = format!(
        "80 %: {} – {}",
        span(earliest),
        latest.map_or_else(|| format!("beyond {}", span(horizon_end)), span)
    );
    let message = match expected {
        Some(at) => format!("{side} {t} in {} ({band})", span(at)),
        None => format!(
            "may cross {t}: the forecast stays {} it for {}, its 80 % band reaches it in {}",
            if threshold.direction == Direction::Above {
                "below"
            } else {
                "above"
            },
            span(horizon_end),
            span(earliest)
        ),
    };
    Some(CapacityWarning {
        threshold,
        expected,
        earliest_80: Some(earliest),
        latest_80: latest,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, slope: f64, half_band: f64) -> Vec<ForecastPoint> {
        (0..n)
            .map(|i| {
                let value = slope * (i + 1) as f64;
                ForecastPoint {
                    time_ms: (i as i64 + 1) * 3_600_000,
                    value,
                    lower_80: value - half_band,
                    upper_80: value + half_band,
                    lower_95: value - 2.0 * half_band,
                    upper_95: value + 2.0 * half_band,
                }
            })
            .collect()
    }

    #[test]
    fn crossing_reads_the_band() {
        let points = ramp(200, 1.0, 10.0);
        let above = Threshold {
            value: 90.0,
            direction: Direction::Above,
        };
        let w = check(&points, 0, Some(0.0), above).unwrap();
        assert_eq!(w.expected, Some(90 * 3_600_000));
        assert_eq!(w.earliest_80, Some(80 * 3_600_000));
        assert_eq!(w.latest_80, Some(100 * 3_600_000));
        assert_eq!(
            w.message,
            "crosses 90 in 3 d 18 h (80 %: 3 d 8 h – 4 d 4 h)"
        );
    }

    #[test]
    fn band_only_and_no_crossing() {
        let points = ramp(10, 0.01, 0.85);
        let above = Threshold {
            value: 0.9,
            direction: Direction::Above,
        };
        let w = check(&points, 0, Some(0.0), above).unwrap();
        assert_eq!(w.expected, None);
        assert!(w.message.starts_with("may cross 0.9"), "{}", w.message);
        let calm = ramp(10, 0.0, 0.1);
        assert_eq!(check(&calm, 0, Some(0.0), above), None);
        let below = Threshold {
            value: 0.5,
            direction: Direction::Below,
        };
        let w = check(&calm, 0, Some(0.0), below).unwrap();
        assert_eq!(w.message, "already below 0.5");
    }

    #[test]
    fn spans_read_well() {
        assert_eq!(human_span(40_000), "40 s");
        assert_eq!(human_span(125 * 60_000), "2 h 5 min");
        assert_eq!(human_span(2 * 86_400_000), "2 d");
        assert_eq!(human_span(-5), "0 s");
    }
}
