//! The small Prometheus client the metric anomaly jobs follow series with: `query_range` only,
//! one [`RawSeries`] per result with its labels. The answer is read in chunks up to a bound,
//! so an oversized answer is refused ([`PromError::TooLarge`]) before it is held whole.
//! (The forecast crate has its own client: the loops do not import each other.)

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;

/// Why a query gave no series.
#[derive(Debug, Error)]
pub enum PromError {
    /// The base URL does not parse or is not HTTP.
    #[error("invalid Prometheus URL {url:?}: {message}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why.
        message: String,
    },
    /// No answer within the timeout.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout {
        /// The request URL (without the query).
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Connection or protocol failure.
    #[error("{url}: {message}")]
    Http {
        /// The request URL.
        url: String,
        /// The client's message and its causes.
        message: String,
    },
    /// Prometheus answered with an error (bad query, overload) or a non-success status.
    #[error("{url}: {message}")]
    Refused {
        /// The request URL.
        url: String,
        /// Prometheus' error type and message, or the status and the start of the body.
        message: String,
    },
    /// The answer is larger than the bound.
    #[error("{url}: answer larger than {limit} bytes")]
    TooLarge {
        /// The request URL.
        url: String,
        /// The bound.
        limit: usize,
    },
    /// The answer is not a Prometheus range-query document.
    #[error("{url}: not a range-query answer: {message}")]
    Shape {
        /// The request URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },
}

/// One series of a range-query answer.
#[derive(Clone, Debug, PartialEq)]
pub struct RawSeries {
    /// Its labels (`__name__` included when the query keeps it).
    pub labels: BTreeMap<String, String>,
    /// `(Unix ms, value)` in the order Prometheus gave them; values may be non-finite.
    pub points: Vec<(i64, f64)>,
}

/// A client of one Prometheus server.
#[derive(Clone, Debug)]
pub struct PromClient {
    base: reqwest::Url,
    http: reqwest::Client,
    timeout: Duration,
    max_bytes: usize,
}

/// Seconds with millisecond precision, as the HTTP API takes them.
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

impl PromClient {
    /// A client of the server at `base_url` (`http://host:9090`, a path prefix allowed).
    pub fn new(base_url: &str, timeout: Duration, max_bytes: usize) -> Result<Self, PromError> {
        let bad = |message: String| PromError::BadUrl {
            url: redact_text(base_url),
            message,
        };
        let mut base = reqwest::Url::parse(base_url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("expected http:// or https://".into()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        // HTTPS through the process's rustls provider (ring, as kube and NATS use); a
        // provider already installed stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(PromClient {
            base,
            http,
            timeout,
            max_bytes,
        })
    }

    /// Runs `query` from `start_ms` to `end_ms` (both included) every `step_ms`.
    pub async fn query_range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<RawSeries>, PromError> {
        let mut url = self
            .base
            .join("api/v1/query_range")
            .map_err(|e| PromError::BadUrl {
                url: redact(&self.base),
                message: e.to_string(),
            })?;
        let shown = redact(&url);
        url.query_pairs_mut()
            .append_pair("query", query)
            .append_pair("start", &seconds(start_ms))
            .append_pair("end", &seconds(end_ms))
            .append_pair("step", &seconds(step_ms.max(1)));
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                PromError::Timeout {
                    url: shown.clone(),
                    timeout: self.timeout,
                }
            } else {
                PromError::Http {
                    url: shown.clone(),
                    // Without the URL: it has the query and may have credentials.
                    message: error_chain(&e.without_url()),
                }
            }
        };
        let mut response = self.http.get(url).send().await.map_err(failed)?;
        let status = response.status();
        let too_large = || PromError::TooLarge {
            url: shown.clone(),
            limit: self.max_bytes,
        };
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        // Prometheus answers its errors (400, 422, 503) with a JSON document giving the reason.
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(doc) if doc.get("status").is_some() => read_matrix(&shown, &doc),
            _ if !status.is_success() => Err(PromError::Refused {
                url: shown,
                message: format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            }),
            _ => Err(PromError::Shape {
                url: shown,
                message: String::from_utf8_lossy(&body).chars().take(120).collect(),
            }),
        }
    }
}

/// The series of a `query_range` answer document.
pub fn read_matrix(url: &str, doc: &serde_json::Value) -> Result<Vec<RawSeries>, PromError> {
    let shape = |message: String| PromError::Shape {
        url: url.to_owned(),
        message,
    };
    if doc.get("status").and_then(|s| s.as_str()) != Some("success") {
        let kind = doc.get("errorType").and_then(|s| s.as_str()).unwrap_or("");
        let error = doc.get("error").and_then(|s| s.as_str()).unwrap_or("");
        return Err(PromError::Refused {
            url: url.to_owned(),
            message: format!("{kind} {error}").trim().to_string(),
        });
    }
    let data = doc.get("data").ok_or_else(|| shape("no `data`".into()))?;
    match data.get("resultType").and_then(|t| t.as_str()) {
        Some("matrix") => {}
        other => return Err(shape(format!("result type {other:?}, expected \"matrix\""))),
    }
    let results = data
        .get("result")
        .and_then(|r| r.as_array())
        .ok_or_else(|| shape("no `data.result` array".into()))?;
    let mut out = Vec::with_capacity(results.len());
    for (i, result) in results.iter().enumerate() {
        let labels = result
            .get("metric")
            .and_then(|m| m.as_object())
            .ok_or_else(|| shape(format!("result[{i}] has no `metric` object")))?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let values = result
            .get("values")
            .and_then(|v| v.as_array())
            .ok_or_else(|| shape(format!("result[{i}] has no `values` array")))?;
        let mut points = Vec::with_capacity(values.len());
        for (j, pair) in values.iter().enumerate() {
            let bad = || shape(format!("result[{i}].values[{j}] is not [time, \"value\"]"));
            let pair = pair.as_array().ok_or_else(bad)?;
            let (Some(t), Some(v)) = (pair.first().and_then(|t| t.as_f64()), pair.get(1)) else {
                return Err(bad());
            };
            // Prometheus writes NaN and ±Inf as "NaN", "+Inf", "-Inf"; Rust parses all three.
            let v = v
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(bad)?;
            let ms = (t * 1000.0).round();
            if !ms.is_finite() || ms.abs() > 9.0e15 {
                return Err(bad());
            }
            points.push((ms as i64, v));
        }
        out.push(RawSeries { labels, points });
    }
    Ok(out)
}

/// `url` as errors show it: without its user name and password (they would reach the
/// API's `last_error` and the logs).
fn redact(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() || !shown.username().is_empty() {
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
    }
    shown.to_string()
}

/// A URL text that may not parse, its `user:password@` part removed.
fn redact_text(url: &str) -> String {
    if let Ok(parsed) = reqwest::Url::parse(url) {
        return redact(&parsed);
    }
    let authority_at = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[authority_at..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_at + i);
    match url[authority_at..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..authority_at], &url[authority_at + at + 1..]),
        None => url.to_owned(),
    }
}

/// The error and its causes on one line (reqwest's top message alone is often just
/// "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_answer_becomes_series_and_errors_say_why() {
        let doc = serde_json::json!({"status": "success", "data": {"resultType": "matrix",
            "result": [{"metric": {"__name__": "up", "job": "api"},
                        "values": [[1700000000, "1"], [1700000060.5, "NaN"], [1700000120, "+Inf"]]}]}});
        let series = read_matrix("u", &doc).unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].labels["job"], "api");
        assert_eq!(series[0].points[0], (1_700_000_000_000, 1.0));
        assert_eq!(series[0].points[1].0, 1_700_000_060_500);
        assert!(series[0].points[1].1.is_nan());
        assert_eq!(series[0].points[2].1, f64::INFINITY);

        let refused =
            serde_json::json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
        let err = read_matrix("u", &refused).unwrap_err();
        assert!(err.to_string().contains("bad_data parse error"), "{err}");
        let vector = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": []}});
        assert!(matches!(
            read_matrix("u", &vector),
            Err(PromError::Shape { .. })
        ));
        let bad_pair = serde_json::json!({"status": "success", "data": {"resultType": "matrix",
            "result": [{"metric": {}, "values": [[1, 2]]}]}});
        assert!(matches!(
            read_matrix("u", &bad_pair),
            Err(PromError::Shape { .. })
        ));
    }

    #[test]
    fn seconds_keep_milliseconds() {
        assert_eq!(seconds(1_700_000_000_123), "1700000000.123");
        assert_eq!(seconds(-1500), "-1.500");
        assert_eq!(seconds(0), "0.000");
    }

    #[tokio::test]
    async fn errors_never_show_the_urls_credentials() {
        // Nothing listens on port 9 of loopback: the request fails at once.
        let client = PromClient::new(
            "http://alice:s3cret@127.0.0.1:9/",
            Duration::from_secs(5),
            10,
        )
        .unwrap();
        let err = client
            .query_range("up", 0, 60_000, 15_000)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("alice"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:9"), "{text}");
        for bad in ["ftp://alice:s3cret@host/", "http://alice:s3cret@[::1/x"] {
            let text = PromClient::new(bad, Duration::from_secs(1), 10)
                .unwrap_err()
                .to_string();
            assert!(
                !text.contains("s3cret") && !text.contains("alice"),
                "{text}"
            );
        }
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(PromClient::new("ftp://x", Duration::from_secs(1), 10).is_err());
        assert!(PromClient::new("not a url", Duration::from_secs(1), 10).is_err());
        assert!(PromClient::new("http://127.0.0.1:9090/prom", Duration::from_secs(1), 10).is_ok());
    }
}
