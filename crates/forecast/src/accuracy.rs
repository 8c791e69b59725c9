//! Checking past predictions against what happened: the rolling MAPE a job uses to decide
//! whether its model still deserves trust.

/// Mean absolute percentage error (in percent) of `predicted` points against `actual` points,
/// matched by timestamp (both sorted by time). Pairs whose actual value is zero or not finite
/// are skipped (MAPE is undefined there). `None` when no pair is left.
pub fn mape(predicted: &[(i64, f64)], actual: &[(i64, f64)]) -> Option<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    let mut actual_iter = actual.iter().peekable();
    for &(t, p) in predicted {
        while actual_iter.next_if(|(ta, _)| *ta < t).is_some() {}
        if let Some(&&(ta, a)) = actual_iter.peek()
            && ta == t
            && a.is_finite()
            && a != 0.0
            && p.is_finite()
        {
            sum += ((a - p) / a).abs();
            count += 1;
        }
    }
    (count > 0).then(|| 100.0 * sum / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_by_time_and_skips_zeros() {
        let predicted = [(1, 110.0), (2, 90.0), (3, 5.0), (4, 1.0)];
        let actual = [(0, 1.0), (1, 100.0), (2, 100.0), (3, 0.0)];
        assert_eq!(mape(&predicted, &actual), Some(10.0));
        assert_eq!(mape(&[], &actual), None);
    }
}
