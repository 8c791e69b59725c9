//! The number formats the checks compare: Kubernetes resource quantities (`500m`, `1.5`,
//! `512Mi`, `1G`, `1e3`), Go's `GOMEMLIMIT` sizes (`512MiB`), JVM sizes (`-Xmx2g`) and
//! durations (`2s`, `150ms`, `1m30s`, as Istio and Knative write them).

/// A CPU quantity in millicores (`500m` → 500, `2` → 2000, `1.5` → 1500).
pub fn cpu_millis(text: &str) -> Option<f64> {
    quantity(text).map(|v| v * 1000.0)
}

/// A memory quantity in bytes (`512Mi`, `1G`, `1e9`, `128974848`).
pub fn memory_bytes(text: &str) -> Option<f64> {
    quantity(text)
}

/// A Kubernetes quantity as a plain number (suffixes applied; `m` is milli).
pub fn quantity(text: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 14] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("", 1.0),
    ];
    let text = text.trim();
    let (number, multiplier) = SUFFIXES
        .iter()
        .find_map(|(suffix, m)| text.strip_suffix(suffix).map(|n| (n, *m)))?;
    if number.is_empty() || number.ends_with(['e', 'E']) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value * multiplier)
}

/// A `GOMEMLIMIT` value in bytes: an integer with an optional `B`, `KiB`, `MiB`, `GiB` or
/// `TiB` suffix, as the Go runtime reads it. `off` (no limit) and unparsable values are `None`.
pub fn go_memory_limit(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier = match suffix {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0_f64.powi(4),
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    Some(value * multiplier)
}

/// A JVM memory size (`-Xmx` argument without the flag): bytes, or `k`/`m`/`g`/`t`
/// (either case), powers of 1024.
pub fn jvm_size(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier = match suffix {
        "" => 1.0,
        "k" | "K" => 1024.0,
        "m" | "M" => 1024.0 * 1024.0,
        "g" | "G" => 1024.0 * 1024.0 * 1024.0,
        "t" | "T" => 1024.0_f64.powi(4),
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    Some(value * multiplier)
}

/// A duration in seconds: Go/Istio style (`1h2m3.5s`, `150ms`, `2us`) or a bare number of
/// seconds.
pub fn duration_seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds.is_finite().then_some(seconds);
    }
    let mut rest = text;
    let mut total = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let value: f64 = number.parse().ok()?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = next;
    }
    Some(total)
}

/// Bytes as a short human text (`512Mi`), for messages.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [(&str, f64); 4] = [
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Ki", 1024.0),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            let value = bytes / size;
            return if value.fract() == 0.0 {
                format!("{value}{unit}")
            } else {
                format!("{value:.1}{unit}")
            };
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_cores_and_millicores() {
        assert_eq!(cpu_millis("500m"), Some(500.0));
        assert_eq!(cpu_millis("2"), Some(2000.0));
        assert_eq!(cpu_millis("1.5"), Some(1500.0));
        assert_eq!(cpu_millis("0.25"), Some(250.0));
        assert_eq!(cpu_millis("abc"), None);
        assert_eq!(cpu_millis(""), None);
    }

    #[test]
    fn memory_with_binary_and_decimal_suffixes() {
        assert_eq!(memory_bytes("512Mi"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(memory_bytes("1G"), Some(1e9));
        assert_eq!(memory_bytes("1e3"), Some(1000.0));
        assert_eq!(memory_bytes("128974848"), Some(128_974_848.0));
        assert_eq!(memory_bytes("12Qi"), None);
        assert_eq!(memory_bytes("-1Mi"), None);
    }

    #[test]
    fn go_memory_limits() {
        assert_eq!(go_memory_limit("512MiB"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(go_memory_limit("1073741824"), Some(1_073_741_824.0));
        assert_eq!(
            go_memory_limit("2GiB"),
            Some(2.0 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(go_memory_limit("off"), None);
        assert_eq!(go_memory_limit("512Mi"), None);
    }

    #[test]
    fn jvm_sizes() {
        assert_eq!(jvm_size("512m"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(jvm_size("2G"), Some(2.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(jvm_size("1048576"), Some(1_048_576.0));
        assert_eq!(jvm_size("2x"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(duration_seconds("2s"), Some(2.0));
        assert_eq!(duration_seconds("150ms"), Some(0.15));
        assert_eq!(duration_seconds("1m30s"), Some(90.0));
        assert_eq!(duration_seconds("0.5s"), Some(0.5));
        assert_eq!(duration_seconds("10"), Some(10.0));
        assert_eq!(duration_seconds("soon"), None);
        assert_eq!(duration_seconds(""), None);
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(512.0 * 1024.0 * 1024.0), "512Mi");
        assert_eq!(human_bytes(1.5 * 1024.0 * 1024.0 * 1024.0), "1.5Gi");
        assert_eq!(human_bytes(100.0), "100B");
    }
}
