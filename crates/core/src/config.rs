//! The agent's configuration: one YAML file ([`Config`]), its embedded default
//! ([`DEFAULT_CONFIG`]) and validation that reports every problem with its path
//! ([`Config::validate`]).
//!
//! Parsing checks shapes and types (unknown keys are errors, with line and column); validation
//! checks meaning (addresses, durations, unique names) and collects all problems instead of
//! stopping at the first.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::time::parse_duration;

/// The embedded default configuration, annotated: what `opsloop run` uses without `--config`.
pub const DEFAULT_CONFIG: &str = include_str!("default_config.yaml");

/// The agent's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP API address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Data directory (store, checkpoints).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// API settings.
    #[serde(default)]
    pub api: ApiConfig,
    /// Log sources.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Rules.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Template miner.
    #[serde(default)]
    pub miner: MinerSettings,
    /// Anomaly detection.
    #[serde(default)]
    pub anomaly: AnomalySettings,
    /// Store.
    #[serde(default)]
    pub store: StoreConfig,
    /// Event bus.
    #[serde(default)]
    pub bus: BusConfig,
    /// The agent's own logs.
    #[serde(default)]
    pub log: LogConfig,
    /// The agent's own traces (OTLP).
    #[serde(default)]
    pub traces: TracesConfig,
}

fn default_listen() -> String {
    "127.0.0.1:7878".into()
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./opsloop-data")
}

/// API settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer token for ingest and mutating endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// File holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Largest accepted request body.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
}

fn default_max_body() -> u64 {
    10 << 20
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            token: None,
            token_file: None,
            max_body_bytes: default_max_body(),
        }
    }
}

/// One log source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// Files by glob.
    File {
        /// Unique name.
        name: String,
        /// Globs to read.
        include: Vec<String>,
        /// Globs to skip.
        #[serde(default)]
        exclude: Vec<String>,
        /// Parser name or `auto`.
        #[serde(default = "auto")]
        parser: String,
        /// `auto`, `on` or `off`.
        #[serde(default = "auto")]
        multiline: String,
        /// `end` or `beginning`, for files seen for the first time.
        #[serde(default = "default_start_at")]
        start_at: String,
    },
    /// Syslog listeners.
    Syslog {
        /// Unique name.
        name: String,
        /// UDP address.
        #[serde(default)]
        udp: Option<String>,
        /// TCP address.
        #[serde(default)]
        tcp: Option<String>,
    },
    /// Standard input.
    Stdin {
        /// Unique name.
        name: String,
        /// Parser name or `auto`.
        #[serde(default = "auto")]
        parser: String,
    },
}

fn auto() -> String {
    "auto".into()
}

fn default_start_at() -> String {
    "end".into()
}

impl SourceConfig {
    /// The source's name.
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::File { name, .. }
            | SourceConfig::Syslog { name, .. }
            | SourceConfig::Stdin { name, .. } => name,
        }
    }
}

/// Rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Load the built-in pack.
    #[serde(default = "yes")]
    pub builtin: bool,
    /// Rule files or directories.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
}

fn yes() -> bool {
    true
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            builtin: true,
            paths: Vec::new(),
        }
    }
}

/// Template miner settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerSettings {
    /// Live templates kept.
    #[serde(default = "default_max_templates")]
    pub max_templates: usize,
}

fn default_max_templates() -> usize {
    20_000
}

impl Default for MinerSettings {
    fn default() -> Self {
        Self {
            max_templates: default_max_templates(),
        }
    }
}

/// Anomaly settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySettings {
    /// Records before new templates count.
    #[serde(default = "default_warmup")]
    pub warmup_records: u64,
}

fn default_warmup() -> u64 {
    1000
}

impl Default for AnomalySettings {
    fn default() -> Self {
        Self {
            warmup_records: default_warmup(),
        }
    }
}

/// Store settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Retention.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// Retention of events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Maximum age (`7d`).
    #[serde(default = "default_max_age")]
    pub max_age: String,
    /// Maximum number of events.
    #[serde(default = "default_max_events")]
    pub max_events: u64,
}

fn default_max_age() -> String {
    "7d".into()
}

fn default_max_events() -> u64 {
    1_000_000
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_events: default_max_events(),
        }
    }
}

/// Event bus settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// `embedded` or `nats`.
    #[serde(rename = "type", default = "default_bus")]
    pub kind: String,
    /// NATS settings, for `nats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsConfig>,
}

fn default_bus() -> String {
    "embedded".into()
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: default_bus(),
            nats: None,
        }
    }
}

/// NATS JetStream settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL.
    pub url: String,
    /// Stream name.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// How long the stream keeps events (`7d`).
    #[serde(default = "default_nats_max_age")]
    pub max_age: String,
    /// Window in which JetStream drops a republished event id (`10m`); it must cover the
    /// longest time an agent may take to republish after a crash.
    #[serde(default = "default_duplicate_window")]
    pub duplicate_window: String,
    /// Stream replicas: 1 on a single server, 3 on a cluster.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// File holding the server token (the env `OPSLOOP_NATS_TOKEN` takes precedence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

fn default_stream() -> String {
    "OPSLOOP_EVENTS".into()
}

fn default_nats_max_age() -> String {
    "7d".into()
}

fn default_duplicate_window() -> String {
    "10m".into()
}

fn default_replicas() -> usize {
    1
}

/// The agent's own logging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`.
    #[serde(default = "default_log_format")]
    pub format: String,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_format() -> String {
    "human".into()
}

fn default_log_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

/// The agent's own traces, exported over OTLP/gRPC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// Collector endpoint (`http://host:4317`); off when unset and `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// is unset too.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of traces kept, 0 to 1.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

fn default_service_name() -> String {
    "opsloop".into()
}

fn default_sample_ratio() -> f64 {
    1.0
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
        }
    }
}

/// A configuration problem: where (a path like `sources[1].udp`) and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigProblem {
    /// Path of the offending value in the file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Why a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not valid YAML, or wrong shapes or types (the message has line and column).
    #[error("{0}")]
    Syntax(String),
    /// Well-formed, but some values are wrong.
    #[error("{} problem(s): {}", .0.len(), .0.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigProblem>),
}

const PARSERS: [&str; 9] = [
    "auto", "raw", "json", "logfmt", "syslog", "access", "klog", "plain", "regex",
];

impl Config {
    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The embedded default.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::from_yaml(DEFAULT_CONFIG)
    }

    /// Every problem in the configuration, each with its path.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut problem = |path: String, message: String| out.push(ConfigProblem { path, message });
        if self.listen.parse::<SocketAddr>().is_err() {
            problem(
                "listen".into(),
                format!("{:?} is not an address like 127.0.0.1:7878", self.listen),
            );
        }
        if self.api.token.is_some() && self.api.token_file.is_some() {
            problem("api".into(), "set token or token_file, not both".into());
        }
        if self.api.token.as_deref().is_some_and(str::is_empty) {
            problem("api.token".into(), "empty token".into());
        }
        if self.api.max_body_bytes == 0 {
            problem(
                "api.max_body_bytes".into(),
                "must be greater than zero".into(),
            );
        }
        let mut names = HashSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            let at = |field: &str| format!("sources[{i}].{field}");
            let name = source.name();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                problem(
                    at("name"),
                    format!("{name:?}: use letters, digits, '.', '_' and '-'"),
                );
            } else if name == "http" {
                problem(
                    at("name"),
                    "\"http\" is reserved for records posted to the API".into(),
                );
            } else if !names.insert(name.to_string()) {
                problem(at("name"), format!("{name:?} is used by another source"));
            }
            match source {
                SourceConfig::File {
                    include,
                    exclude,
                    parser,
                    multiline,
                    start_at,
                    ..
                } => {
                    if include.is_empty() {
                        problem(at("include"), "needs at least one path or glob".into());
                    }
                    for (j, g) in include.iter().chain(exclude).enumerate() {
                        if g.trim().is_empty() {
                            let field = if j < include.len() {
                                "include"
                            } else {
                                "exclude"
                            };
                            problem(at(field), "empty path".into());
                        }
                    }
                    if !PARSERS.contains(&parser.as_str()) || parser == "regex" {
                        problem(at("parser"), format!("unknown parser {parser:?}"));
                    }
                    if !["auto", "on", "off"].contains(&multiline.as_str()) {
                        problem(
                            at("multiline"),
                            format!("{multiline:?}: expected auto, on or off"),
                        );
                    }
                    if !["end", "beginning"].contains(&start_at.as_str()) {
                        problem(
                            at("start_at"),
                            format!("{start_at:?}: expected end or beginning"),
                        );
                    }
                }
                SourceConfig::Syslog { udp, tcp, .. } => {
                    if udp.is_none() && tcp.is_none() {
                        problem(at("udp"), "set udp, tcp or both".into());
                    }
                    for (field, addr) in [("udp", udp), ("tcp", tcp)] {
                        if let Some(a) = addr
                            && a.parse::<SocketAddr>().is_err()
                        {
                            problem(
                                at(field),
                                format!("{a:?} is not an address like 127.0.0.1:5514"),
                            );
                        }
                    }
                }
                SourceConfig::Stdin { parser, .. } => {
                    if !PARSERS.contains(&parser.as_str()) || parser == "regex" {
                        problem(at("parser"), format!("unknown parser {parser:?}"));
                    }
                }
            }
        }
        if self.miner.max_templates == 0 {
            problem(
                "miner.max_templates".into(),
                "must be greater than zero".into(),
            );
        }
        if let Err(e) = parse_duration(&self.store.retention.max_age) {
            problem("store.retention.max_age".into(), e);
        }
        match self.bus.kind.as_str() {
            "embedded" => {}
            "nats" => match &self.bus.nats {
                None => problem("bus.nats".into(), "bus type nats needs nats.url".into()),
                Some(n) if !n.url.starts_with("nats://") && !n.url.starts_with("tls://") => {
                    problem(
                        "bus.nats.url".into(),
                        format!("{:?}: expected nats://HOST:PORT", n.url),
                    );
                }
                Some(n) => {
                    if n.stream.is_empty()
                        || n.stream
                            .contains(|c: char| c.is_whitespace() || ".*>/\\".contains(c))
                    {
                        problem(
                            "bus.nats.stream".into(),
                            format!(
                                "{:?}: a stream name has no spaces, dots, *, > or slashes",
                                n.stream
                            ),
                        );
                    }
                    for (field, value) in [
                        ("max_age", &n.max_age),
                        ("duplicate_window", &n.duplicate_window),
                    ] {
                        if let Err(e) = parse_duration(value) {
                            problem(format!("bus.nats.{field}"), e);
                        }
                    }
                    if n.replicas == 0 || n.replicas > 5 {
                        problem(
                            "bus.nats.replicas".into(),
                            format!("{}: expected 1 to 5", n.replicas),
                        );
                    }
                }
            },
            other => problem(
                "bus.type".into(),
                format!("{other:?}: expected embedded or nats"),
            ),
        }
        if !["human", "json"].contains(&self.log.format.as_str()) {
            problem(
                "log.format".into(),
                format!("{:?}: expected human or json", self.log.format),
            );
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            problem(
                "log.level".into(),
                format!(
                    "{:?}: expected error, warn, info, debug or trace",
                    self.log.level
                ),
            );
        }
        if let Some(endpoint) = &self.traces.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            problem(
                "traces.otlp_endpoint".into(),
                format!("{endpoint:?}: expected a URL like http://127.0.0.1:4317"),
            );
        }
        if !(0.0..=1.0).contains(&self.traces.sample_ratio) {
            problem(
                "traces.sample_ratio".into(),
                format!("{}: expected 0 to 1", self.traces.sample_ratio),
            );
        }
        if self.traces.service_name.trim().is_empty() {
            problem("traces.service_name".into(), "empty".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_complete() {
        let c = Config::embedded_default().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.listen, "127.0.0.1:7878");
        assert_eq!(c.sources.len(), 2);
        assert!(
            matches!(&c.sources[1], SourceConfig::Syslog { udp: Some(u), .. } if u == "127.0.0.1:5514")
        );
        assert!(c.rules.builtin);
        assert_eq!(c.bus.kind, "embedded");
    }

    #[test]
    fn empty_file_means_defaults() {
        let c = Config::from_yaml("{}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.data_dir, PathBuf::from("./opsloop-data"));
        assert!(c.sources.is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
listen: "not an address"
sources:
  - type: file
    name: app
    include: []
    parser: yaml
  - type: syslog
    name: app
    udp: "localhost"
store:
  retention:
    max_age: "forever"
bus:
  type: kafka
traces:
  otlp_endpoint: "collector:4317"
  sample_ratio: 2
"#;
        let Err(ConfigError::Invalid(problems)) = Config::from_yaml(text) else {
            panic!("expected validation problems");
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "listen",
            "sources[0].include",
            "sources[0].parser",
            "sources[1].name",
            "sources[1].udp",
            "store.retention.max_age",
            "bus.type",
            "traces.otlp_endpoint",
            "traces.sample_ratio",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_types_are_syntax_errors_with_location() {
        let e = Config::from_yaml("listen: 127.0.0.1:1\nlisten_port: 3\n");
        let Err(ConfigError::Syntax(msg)) = e else {
            panic!("expected a syntax error")
        };
        assert!(msg.contains("listen_port"), "{msg}");
        assert!(Config::from_yaml("sources:\n  - type: ftp\n    name: x\n").is_err());
    }
}
