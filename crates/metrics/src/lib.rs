//! The agent's own metrics: [`AgentMetrics`] owns one Prometheus registry (prefix `opsloop_`)
//! and every counter and gauge the agent keeps, with the label sets they use.
//!
//! A crate of its own so that sources, loops and the HTTP API can all count without depending
//! on each other; only the API encodes it (`GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
/// The counter type of [`AgentMetrics`], for callers that keep a labelled child.
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::registry::Registry;

/// Labels naming a source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// Source name.
    pub source: String,
}

/// Labels naming a rule.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    /// Rule id.
    pub rule: String,
}

/// Labels naming an agent task (a source reader, a loop, the relay).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabel {
    /// Task name.
    pub task: String,
}

/// The agent's own metrics, all in one registry, named after Prometheus conventions.
pub struct AgentMetrics {
    registry: Registry,
    /// Lines read per source.
    pub lines_read: Family<SourceLabel, Counter>,
    /// Bytes read per source.
    pub bytes_read: Family<SourceLabel, Counter>,
    /// Lines through the pipeline per source (behind `lines_read` by what is queued).
    pub lines_processed: Family<SourceLabel, Counter>,
    /// Datagrams the kernel dropped on a syslog UDP socket, per source.
    pub udp_drops: Family<SourceLabel, Counter>,
    /// Lines that did not parse, per source.
    pub parse_errors: Family<SourceLabel, Counter>,
    /// Lines cut at the line length limit, per source.
    pub log_lines_cut: Family<SourceLabel, Counter>,
    /// Lines that were not valid UTF-8, per source.
    pub log_invalid_utf8_lines: Family<SourceLabel, Counter>,
    /// Secret values redacted from records.
    pub log_redactions: Counter,
    /// Live templates.
    pub templates: Gauge,
    /// Rule hits per rule.
    pub rule_hits: Family<RuleLabel, Counter>,
    /// Events published on the bus.
    pub events_published: Counter,
    /// Attempts to store published events that failed (each is retried).
    pub publish_failures: Counter,
    /// Events published but not yet acknowledged by the slowest consumer.
    pub bus_lag: Gauge,
    /// Events the JetStream relay forwarded (duplicates not counted).
    pub bus_forwarded: Counter,
    /// Failed attempts to reach or publish to JetStream.
    pub bus_forward_failures: Counter,
    /// Configuration reloads applied.
    pub config_reloads: Counter,
    /// Configuration reloads rejected.
    pub config_reload_failures: Counter,
    /// Records accepted by `POST /api/v1/logs`.
    pub ingested: Counter,
    /// Records rejected by `POST /api/v1/logs`.
    pub ingest_rejected: Counter,
    /// Ingest requests refused because too many were in flight.
    pub ingest_throttled: Counter,
    /// Syslog TCP connections refused (over the connection limit), per source.
    pub syslog_tcp_connections_refused: Family<SourceLabel, Counter>,
    /// Agent tasks that died, per task.
    pub task_failures: Family<TaskLabel, Counter>,
    /// Agent tasks restarted, per task.
    pub task_restarts: Family<TaskLabel, Counter>,
    /// Checkpoints that could not be read or written, per source.
    pub checkpoint_errors: Family<SourceLabel, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("opsloop");
        let m = AgentMetrics {
            lines_read: Family::default(),
            bytes_read: Family::default(),
            parse_errors: Family::default(),
            log_lines_cut: Family::default(),
            log_invalid_utf8_lines: Family::default(),
            log_redactions: Counter::default(),
            templates: Gauge::default(),
            rule_hits: Family::default(),
            lines_processed: Family::default(),
            udp_drops: Family::default(),
            events_published: Counter::default(),
            publish_failures: Counter::default(),
            bus_lag: Gauge::default(),
            bus_forwarded: Counter::default(),
            bus_forward_failures: Counter::default(),
            config_reloads: Counter::default(),
            config_reload_failures: Counter::default(),
            ingested: Counter::default(),
            ingest_rejected: Counter::default(),
            ingest_throttled: Counter::default(),
            syslog_tcp_connections_refused: Family::default(),
            task_failures: Family::default(),
            task_restarts: Family::default(),
            checkpoint_errors: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "log_lines_read",
            "Log lines read, per source",
            m.lines_read.clone(),
        );
        registry.register(
            "log_bytes_read",
            "Log bytes read, per source",
            m.bytes_read.clone(),
        );
        registry.register(
            "log_lines_processed",
            "Log lines through parsing, mining and rules, per source",
            m.lines_processed.clone(),
        );
        registry.register(
            "syslog_udp_drops",
            "Syslog datagrams the kernel dropped because the socket buffer was full, per source",
            m.udp_drops.clone(),
        );
        registry.register(
            "log_parse_errors",
            "Log lines that did not parse, per source",
            m.parse_errors.clone(),
        );
        registry.register(
            "log_lines_cut",
            "Log lines cut at the line length limit, per source",
            m.log_lines_cut.clone(),
        );
        registry.register(
            "log_invalid_utf8_lines",
            "Log lines that were not valid UTF-8, per source",
            m.log_invalid_utf8_lines.clone(),
        );
        registry.register(
            "log_redactions",
            "Secret values redacted from log records",
            m.log_redactions.clone(),
        );
        registry.register("log_templates", "Live log templates", m.templates.clone());
        registry.register(
            "log_rule_hits",
            "Log rule hits, per rule",
            m.rule_hits.clone(),
        );
        registry.register(
            "events_published",
            "Events published on the bus",
            m.events_published.clone(),
        );
        registry.register(
            "events_publish_failures",
            "Attempts to store published events that failed; each is retried",
            m.publish_failures.clone(),
        );
        registry.register(
            "bus_lag_events",
            "Events not yet acknowledged by the slowest consumer",
            m.bus_lag.clone(),
        );
        registry.register(
            "bus_forwarded_events",
            "Events forwarded from the outbox to NATS JetStream",
            m.bus_forwarded.clone(),
        );
        registry.register(
            "bus_forward_failures",
            "Failed attempts to reach or publish to NATS JetStream",
            m.bus_forward_failures.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads applied",
            m.config_reloads.clone(),
        );
        registry.register(
            "config_reload_failures",
            "Configuration reloads rejected",
            m.config_reload_failures.clone(),
        );
        registry.register(
            "ingest_records",
            "Records accepted by the log ingest API",
            m.ingested.clone(),
        );
        registry.register(
            "ingest_rejected_records",
            "Records rejected by the log ingest API",
            m.ingest_rejected.clone(),
        );
        registry.register(
            "ingest_throttled_requests",
            "Log ingest requests refused because too many were in flight",
            m.ingest_throttled.clone(),
        );
        registry.register(
            "syslog_tcp_connections_refused",
            "Syslog TCP connections refused over the connection limit, per source",
            m.syslog_tcp_connections_refused.clone(),
        );
        registry.register(
            "task_failures",
            "Agent tasks that died, per task",
            m.task_failures.clone(),
        );
        registry.register(
            "task_restarts",
            "Agent tasks restarted, per task",
            m.task_restarts.clone(),
        );
        registry.register(
            "checkpoint_errors",
            "Checkpoints that could not be read or written, per source",
            m.checkpoint_errors.clone(),
        );
        AgentMetrics { registry, ..m }
    }
}

/// Gauges per followed series, labelled with the series' own labels (the forecast and
/// metric-anomaly jobs export these).
pub type SeriesGauges = Family<Vec<(String, String)>, Gauge<f64, std::sync::atomic::AtomicU64>>;

impl AgentMetrics {
    /// The agent's metrics plus what `extra` registers (under the same `opsloop_` prefix):
    /// the loops' own families, which live in their crates.
    pub fn with_extra(extra: impl FnOnce(&mut Registry)) -> Self {
        let mut m = AgentMetrics::default();
        extra(&mut m.registry);
        m
    }

    /// The exposition text (OpenMetrics), empty if encoding failed.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_metrics_are_registered_with_prometheus_names() {
        let m = AgentMetrics::default();
        let src = SourceLabel {
            source: "syslog".into(),
        };
        let task = TaskLabel {
            task: "tail".into(),
        };
        m.log_lines_cut.get_or_create(&src).inc();
        m.log_invalid_utf8_lines.get_or_create(&src).inc();
        m.syslog_tcp_connections_refused.get_or_create(&src).inc();
        m.checkpoint_errors.get_or_create(&src).inc();
        m.task_failures.get_or_create(&task).inc();
        m.task_restarts.get_or_create(&task).inc();
        m.log_redactions.inc();
        m.ingest_throttled.inc();
        let text = m.encode();
        for line in [
            "opsloop_log_lines_cut_total{source=\"syslog\"} 1",
            "opsloop_log_invalid_utf8_lines_total{source=\"syslog\"} 1",
            "opsloop_syslog_tcp_connections_refused_total{source=\"syslog\"} 1",
            "opsloop_checkpoint_errors_total{source=\"syslog\"} 1",
            "opsloop_task_failures_total{task=\"tail\"} 1",
            "opsloop_task_restarts_total{task=\"tail\"} 1",
            "opsloop_log_redactions_total 1",
            "opsloop_ingest_throttled_requests_total 1",
            "opsloop_config_reload_failures_total 0",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
