//! The raw input of a forecast: one named series of `(timestamp, value)` points with its labels,
//! as read from a file or from Prometheus, before any preparation.

use std::collections::BTreeMap;

/// Label names and values of a series (Prometheus labels, or `series` for file input).
pub type Labels = BTreeMap<String, String>;

/// One series as read: points in input order, possibly unordered, duplicated or irregular.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// How messages and tables name the series (`{job="api"}`, the `series` column, or the file).
    pub name: String,
    /// The series' labels, kept for the output.
    pub labels: Labels,
    /// Unix milliseconds and values; a value may be NaN where the input had no number.
    pub points: Vec<(i64, f64)>,
}

impl Series {
    /// An empty series named `name`.
    pub fn new(name: impl Into<String>) -> Series {
        Series {
            name: name.into(),
            ..Series::default()
        }
    }
}

/// The display name of a label set, PromQL style: `name{a="b",c="d"}` (`{}` when empty).
pub fn display_name(labels: &Labels) -> String {
    let metric = labels.get("__name__").map(String::as_str).unwrap_or("");
    let mut out = String::from(metric);
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if !rest.is_empty() || metric.is_empty() {
        out.push('{');
        out.push_str(&rest.join(","));
        out.push('}');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_follow_promql() {
        let mut labels = Labels::new();
        assert_eq!(display_name(&labels), "{}");
        labels.insert("__name__".into(), "up".into());
        assert_eq!(display_name(&labels), "up");
        labels.insert("job".into(), "api".into());
        assert_eq!(display_name(&labels), "up{job=\"api\"}");
    }
}
