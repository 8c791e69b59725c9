//! Small streaming statistics the detector is built from: exponentially weighted moments and
//! the normal tail probability. No allocation after construction.

use serde::{Deserialize, Serialize};

/// Upper tail probability of the standard normal, `P(Z > z)`, with a relative error below
/// 1.2e-7 everywhere (Numerical Recipes' `erfcc`), so far tails keep their order.
pub fn normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Exponentially weighted mean and mean absolute deviation. The weight of the newest point is
/// `max(1/n, alpha)`: a plain average until `1/alpha` points have been seen, so early values
/// do not dominate for long.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EwStats {
    /// Points seen (saturating).
    pub n: u32,
    /// The weighted mean.
    #[serde(with = "crate::finite::one")]
    pub mean: f64,
    /// The weighted mean absolute deviation from the mean.
    #[serde(with = "crate::finite::one")]
    pub mad: f64,
}

impl EwStats {
    /// Folds `x` in with the floor weight `alpha`.
    pub fn push(&mut self, x: f64, alpha: f64) {
        self.n = self.n.saturating_add(1);
        let w = (1.0 / f64::from(self.n)).max(alpha);
        let dev = (x - self.mean).abs();
        self.mean += w * (x - self.mean);
        if self.n > 1 {
            self.mad += w * (dev - self.mad);
        }
    }
}

/// Exponentially weighted mean and variance (for the score distribution).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EwMoments {
    /// Points seen (saturating).
    pub n: u32,
    /// The weighted mean.
    #[serde(with = "crate::finite::one")]
    pub mean: f64,
    /// The weighted variance.
    #[serde(with = "crate::finite::one")]
    pub var: f64,
}

impl EwMoments {
    /// Folds `x` in with the floor weight `alpha`.
    pub fn push(&mut self, x: f64, alpha: f64) {
        self.n = self.n.saturating_add(1);
        let w = (1.0 / f64::from(self.n)).max(alpha);
        let d = x - self.mean;
        self.mean += w * d;
        self.var = (1.0 - w) * (self.var + w * d * d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_tail_matches_known_values() {
        assert!((normal_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_tail(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_tail(-1.959_964) - 0.975).abs() < 1e-6);
        let far = normal_tail(6.0);
        assert!((far / 9.865_876e-10 - 1.0).abs() < 1e-5, "{far}");
    }

    #[test]
    fn moments_of_a_constant_and_of_two_values() {
        let mut m = EwMoments::default();
        for _ in 0..10 {
            m.push(3.0, 0.01);
        }
        assert_eq!(m.mean, 3.0);
        assert_eq!(m.var, 0.0);
        let mut m = EwMoments::default();
        m.push(0.0, 0.01);
        m.push(2.0, 0.01);
        assert!((m.mean - 1.0).abs() < 1e-12);
        assert!((m.var - 1.0).abs() < 1e-12);
    }
}
