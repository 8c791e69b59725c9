//! A Prometheus HTTP API client for `query_range`: one series per returned result, labels kept.
//! Errors say what went wrong with which URL: Prometheus' own error message, an HTTP status,
//! a timeout, or an answer larger than the configured bound (read in chunks, so an oversized
//! answer is never held whole). URLs in errors never carry the credentials a base URL may hold
//! (`http://user:pass@host`): they are shown by the API and written to logs.

use std::collections::HashMap;
use std::time::Duration;

use thiserror::Error;

use crate::input::{self, InputError, ReadSeries};
use crate::series::Labels;

/// The most points per series one `query_range` request may ask for: Prometheus refuses more
/// than 11,000 ("exceeded maximum resolution"); longer ranges are asked for in parts.
pub const MAX_POINTS_PER_QUERY: i64 = 11_000;

/// Why a query gave no series.
#[derive(Debug, Error)]
pub enum PrometheusError {
    /// The base URL does not parse.
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
        /// The client's message.
        message: String,
    },
    /// A non-success status without a Prometheus error document.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer is larger than the bound.
    #[error("{url}: answer larger than {limit} bytes; narrow the query, the range or the step")]
    TooLarge {
        /// The request URL.
        url: String,
        /// The bound.
        limit: usize,
    },
    /// The answer is not a usable Prometheus document (or reports an error).
    #[error(transparent)]
    Answer(#[from] InputError),
}

/// A range query.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeQuery {
    /// PromQL.
    pub query: String,
    /// Start, Unix milliseconds.
    pub start_ms: i64,
    /// End, Unix milliseconds.
    pub end_ms: i64,
    /// Resolution step, milliseconds.
    pub step_ms: i64,
}

/// A client of one Prometheus server.
#[derive(Clone, Debug)]
pub struct PrometheusClient {
    base: reqwest::Url,
    http: reqwest::Client,
    timeout: Duration,
    max_bytes: usize,
}

fn seconds(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

impl PrometheusClient {
    /// A client of the server at `base_url` (`http://host:9090`, a path prefix allowed).
    pub fn new(
        base_url: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<PrometheusClient, PrometheusError> {
        let bad = |message: String| PrometheusError::BadUrl {
            url: redact_url(base_url),
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
        Ok(PrometheusClient {
            base,
            http,
            timeout,
            max_bytes,
        })
    }

    /// Runs `query` over its range; one series per result. A range of more than
    /// [`MAX_POINTS_PER_QUERY`] steps (Prometheus refuses those) is asked for in consecutive
    /// parts, joined per series; the answer bound holds for all parts together.
    pub async fn query_range(&self, query: &RangeQuery) -> Result<ReadSeries, PrometheusError> {
        let step = query.step_ms.max(1);
        let span = query.end_ms.saturating_sub(query.start_ms).max(0);
        let points = span / step + 1;
        let mut budget = self.max_bytes;
        if points <= MAX_POINTS_PER_QUERY {
            return self.query_part(query, &mut budget).await;
        }
        let part_span = (MAX_POINTS_PER_QUERY - 1).saturating_mul(step);
        let mut out = ReadSeries::default();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut start = query.start_ms;
        while start <= query.end_ms {
            let end = start.saturating_add(part_span).min(query.end_ms);
            let part = RangeQuery {
                query: query.query.clone(),
                start_ms: start,
                end_ms: end,
                step_ms: step,
            };
            let read = self.query_part(&part, &mut budget).await?;
            for series in read.series {
                match index
                    .get(&series.labels)
                    .and_then(|&i| out.series.get_mut(i))
                {
                    Some(known) => known.points.extend(series.points),
                    None => {
                        index.insert(series.labels.clone(), out.series.len());
                        out.series.push(series);
                    }
                }
            }
            out.problems.extend(read.problems);
            // The next part starts a step after this one's end: no sample twice.
            start = match end.checked_add(step) {
                Some(next) => next,
                None => break,
            };
        }
        Ok(out)
    }

    /// One `query_range` request; `budget` is what is left of the answer bound.
    async fn query_part(
        &self,
        query: &RangeQuery,
        budget: &mut usize,
    ) -> Result<ReadSeries, PrometheusError> {
        let mut url =
            self.base
                .join("api/v1/query_range")
                .map_err(|e| PrometheusError::BadUrl {
                    url: redact_url(self.base.as_str()),
                    message: e.to_string(),
                })?;
        let shown = redact_url(url.as_str());
        url.query_pairs_mut()
            .append_pair("query", &query.query)
            .append_pair("start", &seconds(query.start_ms))
            .append_pair("end", &seconds(query.end_ms))
            .append_pair("step", &seconds(query.step_ms.max(1)));
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                PrometheusError::Timeout {
                    url: shown.clone(),
                    timeout: self.timeout,
                }
            } else {
                // reqwest's message names the full URL, credentials included.
                PrometheusError::Http {
                    url: shown.clone(),
                    message: error_chain(&e.without_url()),
                }
            }
        };
        let mut response = self.http.get(url).send().await.map_err(failed)?;
        let status = response.status();
        if response
            .content_length()
            .is_some_and(|len| len > *budget as u64)
        {
            return Err(PrometheusError::TooLarge {
                url: shown,
                limit: self.max_bytes,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > *budget {
                return Err(PrometheusError::TooLarge {
                    url: shown,
                    limit: self.max_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        *budget = budget.saturating_sub(body.len());
        // Prometheus answers errors (400, 422, 503) with a JSON document carrying the reason.
        // Read into typed values straight from the bytes: a JSON tree of a large answer
        // would take about ten times its size.
        match input::read_prometheus_slice(&shown, &body)? {
            Some(read) => Ok(read),
            None => {
                let text = String::from_utf8_lossy(&body);
                if status.is_success() {
                    Err(PrometheusError::Answer(InputError::Shape {
                        source_name: shown,
                        message: format!(
                            "not a Prometheus API answer: {}",
                            text.chars().take(120).collect::<String>()
                        ),
                    }))
                } else {
                    Err(PrometheusError::Status {
                        url: shown,
                        status: status.as_u16(),
                        body: text.chars().take(200).collect(),
                    })
                }
            }
        }
    }
}

/// `url` without the user name and password of its authority (`http://u:p@h/x` →
/// `http://h/x`); text that is not a URL is returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = url.get(authority_start..).unwrap_or_default();
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_len).unwrap_or_default();
    match authority.rfind('@') {
        Some(at) => format!(
            "{}{}",
            url.get(..authority_start).unwrap_or_default(),
            rest.get(at + 1..).unwrap_or_default()
        ),
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
    use axum::Router;
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::routing::get;
    use std::collections::HashMap;

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        format!("http://{addr}/prom")
    }

    fn query() -> RangeQuery {
        RangeQuery {
            query: "rate(http_requests_total[5m])".into(),
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_600_000,
            step_ms: 300_000,
        }
    }

    #[tokio::test]
    async fn matrix_answer_becomes_series_with_labels() {
        let app = Router::new().route(
            "/prom/api/v1/query_range",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                assert_eq!(q.get("query").unwrap(), "rate(http_requests_total[5m])");
                assert_eq!(q.get("step").unwrap(), "300.000");
                r#"{"status":"success","data":{"resultType":"matrix","result":[
                    {"metric":{"job":"api"},"values":[[1700000000,"1"],[1700000300,"2"]]}]}}"#
            }),
        );
        let base = serve(app).await;
        let client = PrometheusClient::new(&base, Duration::from_secs(5), 1 << 20).unwrap();
        let read = client.query_range(&query()).await.unwrap();
        assert_eq!(read.series.len(), 1);
        assert_eq!(read.series[0].labels.get("job").unwrap(), "api");
        assert_eq!(read.series[0].points.len(), 2);
    }

    #[tokio::test]
    async fn errors_timeouts_and_oversized_answers() {
        let app = Router::new()
            .route(
                "/bad/api/v1/query_range",
                get(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
                    )
                }),
            )
            .route(
                "/down/api/v1/query_range",
                get(|| async { (StatusCode::BAD_GATEWAY, "upstream down") }),
            )
            .route(
                "/slow/api/v1/query_range",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "{}"
                }),
            )
            .route(
                "/big/api/v1/query_range",
                get(|| async { "x".repeat(10_000) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        let client = |path: &str| {
            PrometheusClient::new(
                &format!("http://{addr}/{path}"),
                Duration::from_millis(300),
                1000,
            )
            .unwrap()
        };
        let err = client("bad").query_range(&query()).await.unwrap_err();
        assert!(err.to_string().contains("bad_data parse error"), "{err}");
        let err = client("down").query_range(&query()).await.unwrap_err();
        assert!(
            matches!(err, PrometheusError::Status { status: 502, .. }),
            "{err}"
        );
        let err = client("slow").query_range(&query()).await.unwrap_err();
        assert!(matches!(err, PrometheusError::Timeout { .. }), "{err}");
        let err = client("big").query_range(&query()).await.unwrap_err();
        assert!(matches!(err, PrometheusError::TooLarge { .. }), "{err}");
        assert!(PrometheusClient::new("ftp://x", Duration::from_secs(1), 1).is_err());
        // Nothing listens on port 9 of loopback: a connection error, not a panic.
        let err = PrometheusClient::new("http://127.0.0.1:9", Duration::from_secs(2), 1000)
            .unwrap()
            .query_range(&query())
            .await
            .unwrap_err();
        assert!(matches!(err, PrometheusError::Http { .. }), "{err}");
    }

    #[test]
    fn redact_url_drops_credentials_only() {
        assert_eq!(
            redact_url("https://user:s3cret@prom.example:9090/p?q=1"),
            "https://prom.example:9090/p?q=1"
        );
        assert_eq!(redact_url("http://user@h/x"), "http://h/x");
        assert_eq!(redact_url("http://h:9090/a@b"), "http://h:9090/a@b");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[tokio::test]
    async fn errors_never_show_the_credentials_of_the_url() {
        let app = Router::new()
            .route(
                "/p/api/v1/query_range",
                get(|| async { (StatusCode::BAD_GATEWAY, "upstream down") }),
            )
            .route(
                "/slow/api/v1/query_range",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "{}"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        // Refused connection (reqwest names the URL), a status, a timeout, a bad URL.
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let urls = [
            format!("http://admin:s3cret@127.0.0.1:{refused}"),
            format!("http://admin:s3cret@{addr}/p"),
            format!("http://admin:s3cret@{addr}/slow"),
        ];
        for url in &urls {
            let client = PrometheusClient::new(url, Duration::from_millis(300), 1000).unwrap();
            let err = client.query_range(&query()).await.unwrap_err().to_string();
            assert!(!err.contains("s3cret") && !err.contains("admin"), "{err}");
            assert!(err.contains("127.0.0.1"), "{err}");
        }
        let err = PrometheusClient::new("ftp://admin:s3cret@h", Duration::from_secs(1), 1)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
