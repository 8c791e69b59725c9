//! The agent's own telemetry: logs on stderr (human or JSON lines) and, when an OTLP endpoint
//! is configured, its spans exported to an OpenTelemetry collector over gRPC.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use opsloop_core::config::{LogConfig, LogFormat, TracesConfig};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Flushes and stops the span exporter when dropped (at the end of `run`).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports what is pending, waiting at most a few seconds.
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            tracing::warn!(error = %e, "flushing traces failed");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs an exporter's calls on the agent's runtime. The SDK's batch processor exports from a
/// plain thread, but the gRPC channel needs a tokio reactor.
/// A failing collector is logged once per outage, not once per batch.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: E,
    runtime: tokio::runtime::Handle,
    failing: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = match tokio::runtime::Handle::try_current() {
            Ok(_) => self.inner.export(batch).await,
            Err(_) => self.runtime.block_on(self.inner.export(batch)),
        };
        match &result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(error = %e, spans, "exporting traces failed; dropping them until the collector answers");
            }
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("exporting traces again");
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Installs the global subscriber: `RUST_LOG` or `log.level` filters, `log.format` formats, and
/// spans go to the OTLP endpoint of `traces` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) if there is
/// one. Must be called inside the runtime. An exporter that cannot be built is reported and
/// the agent runs without traces.
pub fn init(log: &LogConfig, traces: &TracesConfig) -> TelemetryGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log.level.as_str()));
    // Colour codes only for a person at a terminal: never into files or journald.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let fmt = match log.format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Human => fmt.boxed(),
    };
    let (provider, problem) = match tracer_provider(traces) {
        Ok(p) => (p, None),
        Err(e) => (None, Some(e)),
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("opsloop"))
            .with_tracked_inactivity(false)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    if let Some(e) = problem {
        tracing::warn!(error = %e, "OTLP trace export is off");
    } else if provider.is_some() {
        tracing::info!(endpoint = %endpoint_of(traces).unwrap_or_default(), "exporting traces over OTLP");
    }
    TelemetryGuard { provider }
}

fn endpoint_of(traces: &TracesConfig) -> Option<String> {
    traces.otlp_endpoint.clone().or_else(|| {
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
    })
}

fn tracer_provider(traces: &TracesConfig) -> Result<Option<SdkTracerProvider>, String> {
    let Some(endpoint) = endpoint_of(traces) else {
        return Ok(None);
    };
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(traces.service_name.clone())
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(OnRuntime {
                inner: exporter,
                runtime,
                failing: AtomicBool::new(false),
            })
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                traces.sample_ratio,
            ))))
            .with_resource(resource)
            .build(),
    ))
}
