//! The Prometheus flags `opsloop forecast` and `opsloop detect` share
//! (`--prometheus URL --query PROMQL --range --step --end --timeout --max-answer-mib`) and the
//! one range query they make with them.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use opsloop_core::time::parse_duration;
use opsloop_forecast::input::{self, ReadSeries};
use opsloop_forecast::prometheus::{PrometheusClient, RangeQuery};

/// Where and what to read from Prometheus.
#[derive(Args, Debug)]
pub struct PrometheusArgs {
    /// Prometheus server to query (`http://host:9090`); every returned series is a series of
    /// its own.
    #[arg(long, value_name = "URL", requires = "query")]
    pub prometheus: Option<String>,
    /// PromQL for `--prometheus` (counters through `rate(...)`).
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub query: Option<String>,
    /// History to fetch from Prometheus.
    #[arg(long, value_name = "DURATION", default_value = "14d")]
    pub range: String,
    /// Query resolution.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub step: String,
    /// End of the queried range (RFC 3339 or Unix seconds) [default: now].
    #[arg(long, value_name = "TIME")]
    pub end: Option<String>,
    /// Give up on Prometheus after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub timeout: String,
    /// Largest Prometheus answer accepted, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub max_answer_mib: usize,
}

/// A duration flag in milliseconds.
pub fn duration_ms(flag: &str, text: &str) -> Result<i64> {
    let d = parse_duration(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl PrometheusArgs {
    /// Runs `query` against `url` over the range the flags give, the end aligned to the step.
    pub fn query_range(&self, url: &str, query: &str) -> Result<ReadSeries> {
        let range_ms = duration_ms("--range", &self.range)?;
        let step_ms = duration_ms("--step", &self.step)?;
        if step_ms <= 0 {
            bail!("--step must be positive");
        }
        let end_ms = match &self.end {
            Some(text) => input::parse_timestamp(text)
                .with_context(|| format!("--end {text:?} is not RFC 3339 or Unix seconds"))?,
            None => opsloop_core::time::now_ms(),
        };
        // Aligned to the step, so repeated runs ask Prometheus for the same grid.
        let end_ms = end_ms - end_ms.rem_euclid(step_ms);
        let timeout = Duration::from_millis(
            u64::try_from(duration_ms("--timeout", &self.timeout)?).unwrap_or(0),
        );
        let client =
            PrometheusClient::new(url, timeout, self.max_answer_mib.saturating_mul(1 << 20))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the HTTP runtime")?;
        Ok(runtime.block_on(client.query_range(&RangeQuery {
            query: query.to_owned(),
            start_ms: end_ms.saturating_sub(range_ms),
            end_ms,
            step_ms,
        }))?)
    }
}
