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

/// Unix milliseconds of a civil date and time in UTC; `None` if a field is out of range.
pub fn civil_to_millis(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 || millis > 999 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(secs * 1000 + i64::from(millis))
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

/// Parses `500ms`, `30s`, `5m`, `2h`, `1d`, or combinations like `1h30m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let mut total = 0u64;
    let mut num = String::new();
    let b = s.trim();
    let mut chars = b.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            unit.push('s');
        }
        let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        num.clear();
        total += n * match unit.as_str() {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!(
                    "invalid duration unit {unit:?} in {s:?} (ms, s, m, h, d)"
                ));
            }
        };
        any = true;
    }
    if !num.is_empty() || !any {
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
}
