//! Anomalous stretches (episodes): from a stream of scored points to runs that start at an
//! alarm (score at or above the threshold) and last while the surprise stays there, short dips
//! included. The tracker is serialisable with the detector, so a follower resumes an episode
//! after a restart; an episode starts when [`StretchTracker::open`] appears at the pushed index
//! and ends when [`StretchTracker::push`] returns it.

use serde::{Deserialize, Serialize};

use crate::detector::Point;

/// One anomalous stretch, by point index (0-based, as the caller numbers its points).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stretch {
    /// The alarm's index.
    pub start: usize,
    /// The last index whose surprise was at or above the threshold.
    pub end: usize,
    /// The highest surprise in the stretch.
    #[serde(with = "crate::finite::one")]
    pub peak: f64,
    /// Where the peak was.
    pub peak_at: usize,
}

/// Groups scored points into stretches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StretchTracker {
    #[serde(with = "crate::finite::one")]
    threshold: f64,
    /// Points below the threshold that end a stretch.
    gap: usize,
    open: Option<Stretch>,
}

impl StretchTracker {
    /// Points below the threshold after which a stretch is over.
    pub const DEFAULT_GAP: usize = 12;

    /// A tracker flagging points at or above `threshold`.
    pub fn new(threshold: f64, gap: usize) -> Self {
        StretchTracker {
            threshold,
            gap: gap.max(1),
            open: None,
        }
    }

    /// The threshold points are flagged at.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Changes the threshold (a reload); a stretch in progress goes on.
    pub fn set_threshold(&mut self, threshold: f64) {
        self.threshold = threshold;
    }

    /// The stretch in progress, if any.
    pub fn open(&self) -> Option<&Stretch> {
        self.open.as_ref()
    }

    /// Whether point `p` is flagged: its score reaches the threshold.
    pub fn flags(&self, p: &Point) -> bool {
        p.score >= self.threshold
    }

    /// Folds in point `index`; returns a stretch that ended before it.
    pub fn push(&mut self, index: usize, p: &Point) -> Option<Stretch> {
        let mut finished = None;
        if let Some(open) = &mut self.open {
            if p.surprise >= self.threshold || p.score >= self.threshold {
                open.end = index;
                if p.surprise > open.peak {
                    open.peak = p.surprise;
                    open.peak_at = index;
                }
                return None;
            }
            if index.saturating_sub(open.end) < self.gap {
                return None;
            }
            finished = self.open.take();
        }
        if self.flags(p) {
            self.open = Some(Stretch {
                start: index,
                end: index,
                peak: p.surprise.max(p.score),
                peak_at: index,
            });
        }
        finished
    }

    /// The stretch still open at the end of the input.
    pub fn finish(&mut self) -> Option<Stretch> {
        self.open.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(score: f64, surprise: f64) -> Point {
        Point {
            score,
            surprise,
            ..Point::default()
        }
    }

    #[test]
    fn a_stretch_starts_at_the_alarm_and_spans_short_dips() {
        let mut t = StretchTracker::new(0.5, 3);
        let points = [
            p(0.1, 0.1),
            p(0.9, 0.9),
            p(0.0, 0.8),
            p(0.0, 0.2),
            p(0.0, 0.7),
            p(0.0, 0.1),
            p(0.0, 0.1),
            p(0.0, 0.1),
            p(0.0, 0.6),
        ];
        let mut out = Vec::new();
        for (i, q) in points.iter().enumerate() {
            out.extend(t.push(i, q));
        }
        out.extend(t.finish());
        assert_eq!(
            out,
            vec![Stretch {
                start: 1,
                end: 4,
                peak: 0.9,
                peak_at: 1
            }]
        );
    }
}
