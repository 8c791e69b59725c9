//! Serde helpers for `f64` fields of saved state that may hold NaN or ±infinity: JSON has no
//! such numbers (serde_json writes `null`, which does not read back as `f64`, and the whole
//! state would be set aside). Finite values stay numbers; the others are written as the
//! strings `"NaN"`, `"inf"` and `"-inf"`. Reading also takes `null` as NaN, so states written
//! before these helpers load.
//!
//! Use with `#[serde(with = "crate::finite::one")]` (or `opt`, `seq`, `array`, `opt_pair`).

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// One `f64` as saved.
#[derive(Clone, Copy, Debug)]
struct Repr(f64);

impl Serialize for Repr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }
}

struct ReprVisitor;

impl Visitor<'_> for ReprVisitor {
    type Value = Repr;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number, \"NaN\", \"inf\" or \"-inf\"")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Repr, E> {
        Ok(Repr(v))
    }
    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Repr, E> {
        Ok(Repr(v as f64))
    }
    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Repr, E> {
        Ok(Repr(v as f64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Repr, E> {
        // Rust parses "NaN", "inf", "-inf", "+Inf" and "infinity" alike.
        v.parse::<f64>()
            .map(Repr)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Repr, E> {
        Ok(Repr(f64::NAN))
    }
    fn visit_none<E: de::Error>(self) -> Result<Repr, E> {
        Ok(Repr(f64::NAN))
    }
}

impl<'de> Deserialize<'de> for Repr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Repr, D::Error> {
        d.deserialize_any(ReprVisitor)
    }
}

/// A plain `f64`.
pub mod one {
    use super::*;

    /// Writes `v`.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        Repr(*v).serialize(s)
    }
    /// Reads a value.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Repr::deserialize(d).map(|r| r.0)
    }
}

/// An `Option<f64>` (`None` stays `null`).
pub mod opt {
    use super::*;

    /// Writes `v`.
    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        v.map(Repr).serialize(s)
    }
    /// Reads a value.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<Repr>::deserialize(d).map(|r| r.map(|r| r.0))
    }
}

/// An `Option<(f64, f64)>`.
pub mod opt_pair {
    use super::*;

    /// Writes `v`.
    pub fn serialize<S: Serializer>(v: &Option<(f64, f64)>, s: S) -> Result<S::Ok, S::Error> {
        v.map(|(a, b)| (Repr(a), Repr(b))).serialize(s)
    }
    /// Reads a value.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(f64, f64)>, D::Error> {
        Option::<(Repr, Repr)>::deserialize(d).map(|r| r.map(|(a, b)| (a.0, b.0)))
    }
}

/// A `Vec<f64>`.
pub mod seq {
    use super::*;

    /// Writes `v`.
    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| Repr(*x)))
    }
    /// Reads a value.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Vec::<Repr>::deserialize(d).map(|v| v.into_iter().map(|r| r.0).collect())
    }
}

/// An `[f64; N]`.
pub mod array {
    use super::*;

    /// Writes `v`.
    pub fn serialize<S: Serializer, const N: usize>(v: &[f64; N], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| Repr(*x)))
    }
    /// Reads a value of exactly `N` numbers.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[f64; N], D::Error> {
        let values = super::seq::deserialize(d)?;
        let len = values.len();
        values
            .try_into()
            .map_err(|_| de::Error::invalid_length(len, &format!("{N} numbers").as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct All {
        #[serde(with = "one")]
        a: f64,
        #[serde(with = "opt")]
        b: Option<f64>,
        #[serde(with = "opt")]
        none: Option<f64>,
        #[serde(with = "opt_pair")]
        c: Option<(f64, f64)>,
        #[serde(with = "seq")]
        d: Vec<f64>,
        #[serde(with = "array")]
        e: [f64; 3],
    }

    #[test]
    fn non_finite_values_round_trip_and_finite_ones_stay_exact() {
        let all = All {
            a: f64::NAN,
            b: Some(f64::INFINITY),
            none: None,
            c: Some((f64::NEG_INFINITY, 0.1 + 0.2)),
            d: vec![1.5, f64::NAN, f64::MAX],
            e: [f64::INFINITY, -0.0, 1e-300],
        };
        let text = serde_json::to_string(&all).unwrap();
        let back: All = serde_json::from_str(&text).unwrap();
        assert!(back.a.is_nan());
        assert_eq!(back.b, Some(f64::INFINITY));
        assert_eq!(back.none, None);
        let (c0, c1) = back.c.unwrap();
        assert_eq!(
            (c0, c1.to_bits()),
            (f64::NEG_INFINITY, (0.1f64 + 0.2).to_bits())
        );
        assert_eq!(back.d[0], 1.5);
        assert!(back.d[1].is_nan());
        assert_eq!(back.d[2], f64::MAX);
        assert_eq!(back.e[0], f64::INFINITY);
        assert_eq!(back.e[2], 1e-300);
        // What serde_json wrote for non-finite values before: null reads as NaN.
        let old: All = serde_json::from_str(
            r#"{"a": null, "b": null, "none": null, "c": null, "d": [null], "e": [1, 2, null]}"#,
        )
        .unwrap();
        assert!(old.a.is_nan() && old.d[0].is_nan() && old.e[2].is_nan());
        assert!(
            serde_json::from_str::<All>(
                r#"{"a": 1, "b": 1, "none": null, "c": null, "d": [], "e": [1, 2]}"#
            )
            .is_err()
        );
    }
}
