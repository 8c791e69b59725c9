//! Timestamps: Unix milliseconds (`i64`), and parsing of the forms logs write them in.
//!
//! Parsing is hand-written because it runs once per log line: no allocation, no regex.

/// The wall clock as Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian), after H. Hinnant.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whether `year` has a February 29 (proleptic Gregorian).
pub fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1-12) of `year`; 0 for a month out of range.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Unix milliseconds of a civil date and time in UTC; `None` if a field is out of range,
/// including days the month does not have (Feb 30, Apr 31, Feb 29 of a common year): such a
/// date is a corrupt line, not a day of the next month.
pub fn civil_to_millis(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
) -> Option<i64> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // Second 60 is a leap second, as syslog and ISO 8601 may write it.
    if hour > 23 || minute > 59 || second > 60 || millis > 999 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(secs * 1000 + i64::from(millis))
}

/// The UTC civil year a time falls in, with the bounds callers cache to avoid recomputing it
/// for every line: the year stays valid while `start_ms <= t < end_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilYear {
    /// The year.
    pub year: i64,
    /// Its first millisecond (Jan 1 00:00:00.000 UTC).
    pub start_ms: i64,
    /// The first millisecond of the next year.
    pub end_ms: i64,
}

impl CivilYear {
    /// The year `ms` falls in.
    pub fn of(ms: i64) -> CivilYear {
        // Clocks live within years 0000..=9999; an absurd one is taken at the nearest end,
        // so that nothing below can overflow.
        let ms = ms.clamp(RFC3339_MIN_MS, RFC3339_MAX_MS);
        let (year, _, _) = civil_from_days(ms.div_euclid(86_400_000));
        CivilYear {
            year,
            start_ms: days_from_civil(year, 1, 1) * 86_400_000,
            end_ms: days_from_civil(year + 1, 1, 1) * 86_400_000,
        }
    }

    /// Whether `ms` falls in this year.
    pub fn contains(&self, ms: i64) -> bool {
        (self.start_ms..self.end_ms).contains(&ms)
    }
}

/// A source of the current time, injectable so that code depending on time can be tested
/// across long uptimes and New Year without waiting.
pub trait Clock: Send + Sync {
    /// Now, as Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that moves only when told: for tests (here and in other crates), simulations and
/// replays.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock standing at `ms`.
    pub fn new(ms: i64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicI64::new(ms))
    }

    /// Moves the clock to `ms` (also backwards, as a wall clock may be stepped).
    pub fn set(&self, ms: i64) {
        self.0.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// Moves the clock forward by `by` (saturating).
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let _ = self.0.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |now| Some(now.saturating_add(ms)),
        );
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The month number of a three-letter English month name, ignoring case.
pub fn month_from_abbrev(name: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    if name.len() < 3 {
        return None;
    }
    let lower = [
        name[0].to_ascii_lowercase(),
        name[1].to_ascii_lowercase(),
        name[2].to_ascii_lowercase(),
    ];
    MONTHS
        .iter()
        .position(|m| **m == lower)
        .map(|i| i as u32 + 1)
}

/// Reads `n` ASCII digits at `at`.
pub fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses an RFC 3339 / ISO 8601 timestamp at the start of `b`
/// (`2024-01-02T03:04:05.123Z`, `2024-01-02 03:04:05,123+02:00`, zone optional = UTC).
/// Returns the milliseconds and the number of bytes consumed.
pub fn parse_iso8601(b: &[u8]) -> Option<(i64, usize)> {
    let year = digits(b, 0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if !matches!(b.get(10), Some(b'T' | b' ' | b't')) {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    if b.get(13) != Some(&b':') {
        return None;
    }
    let minute = digits(b, 14, 2)?;
    let mut i = 16;
    let mut second = 0;
    if b.get(16) == Some(&b':') {
        second = digits(b, 17, 2)?;
        i = 19;
    }
    let mut millis = 0u32;
    // A fraction needs digits: in `04:30:30, Info` the comma ends the timestamp.
    if matches!(b.get(i), Some(b'.' | b',')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        let mut scale = 100;
        i += 1;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            millis += u32::from(c - b'0') * scale;
            scale /= 10;
            i += 1;
        }
    }
    let mut offset_min: i64 = 0;
    match b.get(i) {
        Some(b'Z' | b'z') => i += 1,
        Some(&sign @ (b'+' | b'-')) => {
            let h = digits(b, i + 1, 2)?;
            let (m, used) = match b.get(i + 3) {
                Some(b':') => (digits(b, i + 4, 2)?, 6),
                _ => (
                    digits(b, i + 3, 2).unwrap_or(0),
                    if digits(b, i + 3, 2).is_some() { 5 } else { 3 },
                ),
            };
            offset_min = i64::from(h * 60 + m) * if sign == b'-' { -1 } else { 1 };
            i += used;
        }
        _ => {}
    }
    let ms = civil_to_millis(i64::from(year), month, day, hour, minute, second, millis)?;
    Some((ms - offset_min * 60_000, i))
}

/// Formats Unix milliseconds as RFC 3339 UTC with millisecond precision.
pub fn format_rfc3339(millis: i64) -> String {
    // RFC 3339 has four-digit years: a time outside 0000..=9999 (a bogus epoch number in a
    // log line) is written as the nearest one that can be, never as an invalid string.
    let millis = millis.clamp(RFC3339_MIN_MS, RFC3339_MAX_MS);
    let days = millis.div_euclid(86_400_000);
    let rem = millis.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, ms) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// 0000-01-01T00:00:00.000Z, the earliest time RFC 3339 can write.
pub const RFC3339_MIN_MS: i64 = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z, the latest time RFC 3339 can write.
pub const RFC3339_MAX_MS: i64 = 253_402_300_799_999;

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The longest duration [`parse_duration`] accepts: 100 years of 365.25 days. Longer values
/// are configuration mistakes, and every duration then fits an `i64` of milliseconds (which
/// callers add to timestamps) with room to spare.
pub const MAX_DURATION_MS: u64 = 36_525 * 86_400_000;

/// Parses `500ms`, `30s`, `5m`, `2h`, `1d`, or combinations like `1h30m`; at most
/// [`MAX_DURATION_MS`] (100 years) in all, anything longer is an error rather than a wrap.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let out_of_range = || format!("duration {s:?} is out of range (at most 100 years, 36525d)");
    let b = s.trim().as_bytes();
    let mut total = 0u64;
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let mut n = 0u64;
        while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(c - b'0')))
                .ok_or_else(out_of_range)?;
            i += 1;
        }
        if i == start {
            return Err(format!("invalid duration {s:?} (e.g. 30s, 5m, 1h)"));
        }
        let scale = match (b.get(i), b.get(i + 1)) {
            (Some(b'm'), Some(b's')) => {
                i += 2;
                1
            }
            (Some(b's'), _) => 1000,
            (Some(b'm'), _) => 60_000,
            (Some(b'h'), _) => 3_600_000,
            (Some(b'd'), _) => 86_400_000,
            (None, _) => return Err(format!("invalid duration {s:?} (e.g. 30s, 5m, 1h)")),
            (Some(_), _) => {
                let unit = s.trim()[i..].chars().next().unwrap_or(' ');
                return Err(format!(
                    "invalid duration unit {unit:?} in {s:?} (ms, s, m, h, d)"
                ));
            }
        };
        if scale != 1 {
            i += 1;
        }
        total = n
            .checked_mul(scale)
            .and_then(|ms| total.checked_add(ms))
            .filter(|&t| t <= MAX_DURATION_MS)
            .ok_or_else(out_of_range)?;
    }
    if b.is_empty() {
        return Err(format!("invalid duration {s:?} (e.g. 30s, 5m, 1h)"));
    }
    Ok(std::time::Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso() {
        assert_eq!(parse_iso8601(b"1970-01-01T00:00:01Z"), Some((1000, 20)));
        assert_eq!(
            parse_iso8601(b"2024-01-02 03:04:05,250 INFO").map(|x| x.1),
            Some(23)
        );
        let (a, _) = parse_iso8601(b"2024-01-02T03:04:05+02:00").unwrap_or_default();
        let (b, _) = parse_iso8601(b"2024-01-02T01:04:05Z").unwrap_or_default();
        assert_eq!(a, b);
        assert_eq!(parse_iso8601(b"2024-13-02T03:04:05Z"), None);
        assert_eq!(parse_iso8601(b"hello"), None);
    }

    #[test]
    fn round_trip() {
        let ms = civil_to_millis(2026, 11, 23, 12, 34, 56, 789).unwrap_or_default();
        assert_eq!(format_rfc3339(ms), "2026-11-23T12:34:56.789Z");
        assert_eq!(month_from_abbrev(b"Dec"), Some(12));
    }

    #[test]
    fn impossible_days_are_rejected_not_rolled_over() {
        assert_eq!(civil_to_millis(2025, 2, 30, 0, 0, 0, 0), None);
        assert_eq!(civil_to_millis(2025, 4, 31, 0, 0, 0, 0), None);
        assert_eq!(
            civil_to_millis(2025, 2, 29, 0, 0, 0, 0),
            None,
            "common year"
        );
        assert_eq!(civil_to_millis(1900, 2, 29, 0, 0, 0, 0), None, "century");
        assert!(
            civil_to_millis(2024, 2, 29, 0, 0, 0, 0).is_some(),
            "leap year"
        );
        assert!(
            civil_to_millis(2000, 2, 29, 0, 0, 0, 0).is_some(),
            "400th year"
        );
        assert!(civil_to_millis(2025, 4, 30, 23, 59, 60, 999).is_some());
        assert!(civil_to_millis(2025, 12, 31, 0, 0, 0, 0).is_some());
        assert_eq!(parse_iso8601(b"2025-02-30T00:00:00Z"), None);
        assert_eq!(parse_iso8601(b"2025-04-31 10:00:00"), None);
        // Every day the months have still round-trips.
        for year in [1999, 2000, 2024, 2100] {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    let ms = civil_to_millis(year, month, day, 0, 0, 0, 0).unwrap_or(-1);
                    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
                    assert_eq!((y, m, d), (year, month, day));
                }
            }
        }
    }

    #[test]
    fn durations() {
        let ms = |s: &str| parse_duration(s).map(|d| d.as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms(" 1h30m "), Ok(5_400_000));
        assert_eq!(ms("1d2s"), Ok(86_402_000));
        assert_eq!(ms("36525d"), Ok(u128::from(MAX_DURATION_MS)));
        for bad in ["", "5", "m", "5x", "1h 2m", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn huge_durations_are_errors_not_wraps() {
        // Both once wrapped in release builds (to 384 ms and 9.6 h) and panicked in debug.
        for s in [
            "18446744073709552s",
            "213503982335d",
            "99999999999999999999999ms",
            "36526d",
            "36525d1ms",
            "18446744073709551615ms18446744073709551615ms",
        ] {
            let e = parse_duration(s).err().unwrap_or_default();
            assert!(e.contains("out of range"), "{s}: {e}");
        }
    }

    #[test]
    fn civil_year_bounds() {
        let y = CivilYear::of(civil_to_millis(2024, 7, 1, 0, 0, 0, 0).unwrap_or_default());
        assert_eq!(y.year, 2024);
        assert_eq!(Some(y.start_ms), civil_to_millis(2024, 1, 1, 0, 0, 0, 0));
        assert_eq!(Some(y.end_ms), civil_to_millis(2025, 1, 1, 0, 0, 0, 0));
        assert!(y.contains(y.end_ms - 1) && !y.contains(y.end_ms) && y.contains(y.start_ms));
        assert_eq!(CivilYear::of(-1).year, 1969);
    }

    #[test]
    fn manual_clock() {
        let c = ManualClock::new(1000);
        c.advance(std::time::Duration::from_millis(500));
        assert_eq!(c.now_ms(), 1500);
        c.set(7);
        assert_eq!(c.now_ms(), 7);
        c.advance(std::time::Duration::MAX);
        assert_eq!(c.now_ms(), i64::MAX);
        assert!(SystemClock.now_ms() > 0);
    }

    #[test]
    fn times_outside_four_digit_years_are_written_clamped() {
        assert_eq!(format_rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(i64::MIN), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(RFC3339_MAX_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(RFC3339_MIN_MS), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn the_year_of_an_absurd_clock_does_not_overflow() {
        assert_eq!(CivilYear::of(i64::MAX).year, 9999);
        assert_eq!(CivilYear::of(i64::MIN).year, 0);
    }
}
