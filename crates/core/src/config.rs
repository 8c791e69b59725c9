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
    /// Redaction of secrets in log records.
    #[serde(default)]
    pub redact: RedactConfig,
    /// Self-healing playbooks, as written (the heal crate reads and checks them from the
    /// file's text, with their line numbers: the core crate only carries them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub playbooks: Vec<serde_json::Value>,
    /// Generic webhooks (`POST /api/v1/hooks/{name}`): how a JSON body becomes an event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookConfig>,
    /// Forecast jobs, as written (the forecast crate reads and checks them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forecasts: Vec<serde_json::Value>,
    /// Metric anomaly jobs, as written (the detect crate reads and checks them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_anomalies: Vec<serde_json::Value>,
    /// Manifest audit jobs, as written (the audit crate reads and checks them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audits: Vec<serde_json::Value>,
}

/// One generic webhook: its body (`body` in CEL) becomes an event of type `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// The path segment: `POST /api/v1/hooks/{name}`.
    pub name: String,
    /// The event type (`com.example.deploy.failed`).
    #[serde(rename = "type")]
    pub kind: String,
    /// CEL giving the event's subject (a string), e.g. `body.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// CEL giving the event's data; the body itself by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
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
    /// Most records one `POST /api/v1/logs` may carry; larger requests get 413 whole.
    #[serde(default = "default_max_records")]
    pub max_records_per_request: usize,
    /// Largest record of `POST /api/v1/logs`, as JSON text; larger ones are rejected.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// Log ingest requests served at once; more get 503 with `Retry-After`.
    #[serde(default = "default_max_concurrent_ingest")]
    pub max_concurrent_ingest: usize,
    /// With a token set, `/metrics` needs it too.
    #[serde(default)]
    pub protect_metrics: bool,
    /// Named bearer tokens with roles, besides `token` (which acts as an admin token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<ApiTokenConfig>,
}

/// What an API token may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiRole {
    /// Read: every `GET`.
    Viewer,
    /// Also send input (logs, Alertmanager, webhooks) and approve or reject incidents.
    Operator,
    /// Everything.
    Admin,
}

impl ApiRole {
    /// Its name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRole::Viewer => "viewer",
            ApiRole::Operator => "operator",
            ApiRole::Admin => "admin",
        }
    }
}

/// A named API token: its secret comes from an environment variable or a file, never from
/// the configuration itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    /// Who holds it; recorded as the approver of what it approves.
    pub name: String,
    /// What it may do.
    pub role: ApiRole,
    /// Environment variable holding the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// File holding the secret (surrounding whitespace ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

fn default_max_body() -> u64 {
    10 << 20
}

fn default_max_record_bytes() -> usize {
    64 << 10
}

fn default_max_records() -> usize {
    100_000
}

fn default_max_concurrent_ingest() -> usize {
    8
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            token: None,
            token_file: None,
            max_body_bytes: default_max_body(),
            max_records_per_request: default_max_records(),
            max_record_bytes: default_max_record_bytes(),
            max_concurrent_ingest: default_max_concurrent_ingest(),
            protect_metrics: false,
            tokens: Vec::new(),
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
        /// How lines are parsed.
        #[serde(default)]
        parser: ParserKind,
        /// Whether stack traces are joined to their first line.
        #[serde(default)]
        multiline: Multiline,
        /// Where to start in a file seen for the first time.
        #[serde(default)]
        start_at: StartAt,
        /// Longest line kept; the rest of a longer line is skipped and counted.
        #[serde(default = "default_max_line")]
        max_line_bytes: usize,
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
        /// Longest frame kept (RFC 5425 asks for at least 8 KiB); longer ones are cut and
        /// counted.
        #[serde(default = "default_max_frame")]
        max_line_bytes: usize,
        /// TCP connections served at once; more are refused and counted.
        #[serde(default = "default_max_connections")]
        max_connections: usize,
    },
    /// Standard input.
    Stdin {
        /// Unique name.
        name: String,
        /// How lines are parsed.
        #[serde(default)]
        parser: ParserKind,
        /// Longest line kept; the rest of a longer line is skipped and counted.
        #[serde(default = "default_max_line")]
        max_line_bytes: usize,
    },
}

fn default_max_line() -> usize {
    1 << 20
}

fn default_max_frame() -> usize {
    64 << 10
}

fn default_max_connections() -> usize {
    256
}

/// How a source's lines are parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParserKind {
    /// Detected from the first lines.
    #[default]
    Auto,
    /// The whole line is the message.
    Raw,
    /// One JSON object per line.
    Json,
    /// `key=value` pairs.
    Logfmt,
    /// RFC 3164 and RFC 5424.
    Syslog,
    /// nginx/Apache access logs.
    Access,
    /// Kubernetes klog.
    Klog,
    /// `timestamp level message`.
    Plain,
}

/// Whether continuation lines (stack traces) are joined to their record. YAML 1.1 reads a
/// bare `on`/`off` as a boolean, so booleans are accepted too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Multiline {
    /// On for every parser but raw.
    #[default]
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

impl<'de> Deserialize<'de> for Multiline {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Multiline;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("auto, on or off")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Multiline, E> {
                Ok(if v { Multiline::On } else { Multiline::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Multiline, E> {
                match v {
                    "auto" => Ok(Multiline::Auto),
                    "on" | "true" => Ok(Multiline::On),
                    "off" | "false" => Ok(Multiline::Off),
                    other => Err(E::unknown_variant(other, &["auto", "on", "off"])),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Where to start reading a file seen for the first time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Only what is written from now on.
    #[default]
    End,
    /// The whole file.
    Beginning,
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

    /// The longest line (or syslog frame) the source keeps.
    pub fn max_line_bytes(&self) -> usize {
        match self {
            SourceConfig::File { max_line_bytes, .. }
            | SourceConfig::Syslog { max_line_bytes, .. }
            | SourceConfig::Stdin { max_line_bytes, .. } => *max_line_bytes,
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
    /// Tokens of a message that form its template (the rest become one `<*>`): bounds the
    /// memory of a template, however long its messages.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
}

fn default_max_tokens() -> usize {
    256
}

fn default_max_templates() -> usize {
    20_000
}

impl Default for MinerSettings {
    fn default() -> Self {
        Self {
            max_templates: default_max_templates(),
            max_tokens: default_max_tokens(),
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
    /// Maximum age (`7d`), by the time events were stored, not the time their lines name.
    #[serde(default = "default_max_age")]
    pub max_age: ConfigDuration,
    /// Maximum number of events.
    #[serde(default = "default_max_events")]
    pub max_events: u64,
}

fn default_max_age() -> ConfigDuration {
    ConfigDuration::days(7)
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
    /// Which bus.
    #[serde(rename = "type", default)]
    pub kind: BusKind,
    /// NATS settings, for `nats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsConfig>,
}

/// Which event bus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// In-process, with an outbox in the store.
    #[default]
    Embedded,
    /// NATS JetStream (the outbox is forwarded to it).
    Nats,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Embedded,
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
    pub max_age: ConfigDuration,
    /// Window in which JetStream drops a republished event id (`10m`); it must cover the
    /// longest time an agent may take to republish after a crash.
    #[serde(default = "default_duplicate_window")]
    pub duplicate_window: ConfigDuration,
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

fn default_nats_max_age() -> ConfigDuration {
    ConfigDuration::days(7)
}

fn default_duplicate_window() -> ConfigDuration {
    ConfigDuration::minutes(10)
}

fn default_replicas() -> usize {
    1
}

/// The agent's own logging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Line format.
    #[serde(default)]
    pub format: LogFormat,
    /// Least severe level written.
    #[serde(default)]
    pub level: LogLevel,
}

/// The agent's log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines (coloured only on a terminal).
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The agent's log level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    #[default]
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The lowercase name (a `tracing` filter directive).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: LogLevel::Info,
        }
    }
}

/// Redaction of secrets in log records before they become events or stored examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// On by default: passwords, tokens, API keys, `Authorization` headers, AWS access keys,
    /// private keys and URL credentials are replaced by `<redacted>`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// More patterns: a regex whose first capture group (or whole match) is redacted.
    #[serde(default)]
    pub patterns: Vec<RedactPattern>,
}

impl Default for RedactConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            patterns: Vec::new(),
        }
    }
}

/// One extra redaction pattern.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactPattern {
    /// Name, for messages.
    pub name: String,
    /// The regex.
    pub regex: String,
}

/// A duration written as `30s`, `5m`, `1h30m`, `7d` (units ms, s, m, h, d); checked when the
/// file is read, so an out-of-range value is an error with its path, never a wrapped number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigDuration(std::time::Duration);

impl ConfigDuration {
    /// `n` days.
    pub const fn days(n: u64) -> Self {
        ConfigDuration(std::time::Duration::from_secs(n * 86_400))
    }

    /// `n` minutes.
    pub const fn minutes(n: u64) -> Self {
        ConfigDuration(std::time::Duration::from_secs(n * 60))
    }

    /// The duration.
    pub fn get(self) -> std::time::Duration {
        self.0
    }

    /// In milliseconds, saturating at `i64::MAX`.
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl std::str::FromStr for ConfigDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(ConfigDuration)
    }
}

impl std::fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        let (n, unit) = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
        ]
        .into_iter()
        .find(|(u, _)| ms > 0 && ms.is_multiple_of(*u))
        .map_or((ms, "ms"), |(u, unit)| (ms / u, unit));
        write!(f, "{n}{unit}")
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
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
    /// A value of the wrong shape or type, at `path` (the message has line and column).
    #[error("{path}: {message}")]
    Shape {
        /// Path of the value (`store.retention.max_age`; inside a source, the source).
        path: String,
        /// What is wrong, where.
        message: String,
    },
    /// Well-formed, but some values are wrong.
    #[error("{} problem(s): {}", .0.len(), .0.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigProblem>),
}

impl Config {
    /// Parses and validates YAML text. A value of the wrong shape is an error naming its path
    /// (`sources[0].parser`) and its line.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let mut path = String::new();
        let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                path = e.path().to_string();
                e.into_inner()
            })
        });
        let config: Config = match parsed {
            Ok(c) => c,
            Err(e) if path.is_empty() || path == "." => {
                return Err(ConfigError::Syntax(e.to_string()));
            }
            Err(e) => {
                return Err(ConfigError::Shape {
                    path,
                    message: e.to_string(),
                });
            }
        };
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

    /// Every problem the types cannot express (addresses, unique names, ranges), each with
    /// its path.
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
        let mut token_names = HashSet::new();
        for (i, t) in self.api.tokens.iter().enumerate() {
            let at = |field: &str| format!("api.tokens[{i}].{field}");
            if t.name.trim().is_empty() {
                problem(at("name"), "empty name".into());
            } else if !token_names.insert(t.name.as_str()) {
                problem(at("name"), format!("{:?} is used by another token", t.name));
            }
            match (&t.token_env, &t.token_file) {
                (Some(_), Some(_)) => problem(
                    format!("api.tokens[{i}]"),
                    "set token_env or token_file, not both".into(),
                ),
                (None, None) => problem(
                    format!("api.tokens[{i}]"),
                    "set token_env or token_file".into(),
                ),
                (Some(env), None) if env.is_empty() => {
                    problem(at("token_env"), "empty variable name".into());
                }
                _ => {}
            }
        }
        for (field, value) in [
            ("max_body_bytes", self.api.max_body_bytes as usize),
            ("max_records_per_request", self.api.max_records_per_request),
            ("max_record_bytes", self.api.max_record_bytes),
            ("max_concurrent_ingest", self.api.max_concurrent_ingest),
        ] {
            if value == 0 {
                problem(format!("api.{field}"), "must be greater than zero".into());
            }
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
            if !(MIN_LINE_BYTES..=MAX_LINE_BYTES).contains(&source.max_line_bytes()) {
                problem(
                    at("max_line_bytes"),
                    format!(
                        "{}: expected {MIN_LINE_BYTES} to {MAX_LINE_BYTES}",
                        source.max_line_bytes()
                    ),
                );
            }
            match source {
                SourceConfig::File {
                    include, exclude, ..
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
                }
                SourceConfig::Syslog {
                    udp,
                    tcp,
                    max_connections,
                    ..
                } => {
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
                    if *max_connections == 0 {
                        problem(at("max_connections"), "must be greater than zero".into());
                    }
                }
                SourceConfig::Stdin { .. } => {}
            }
        }
        if self.miner.max_tokens == 0 {
            problem(
                "miner.max_tokens".into(),
                "must be greater than zero".into(),
            );
        }
        if self.miner.max_templates == 0 {
            problem(
                "miner.max_templates".into(),
                "must be greater than zero".into(),
            );
        }
        if self.store.retention.max_age.get().is_zero() {
            problem(
                "store.retention.max_age".into(),
                "must be greater than zero".into(),
            );
        }
        match (self.bus.kind, &self.bus.nats) {
            (BusKind::Embedded, _) => {}
            (BusKind::Nats, None) => {
                problem("bus.nats".into(), "bus type nats needs nats.url".into());
            }
            (BusKind::Nats, Some(n)) => {
                if !n.url.starts_with("nats://") && !n.url.starts_with("tls://") {
                    problem(
                        "bus.nats.url".into(),
                        format!("{:?}: expected nats://HOST:PORT", n.url),
                    );
                }
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
                if n.replicas == 0 || n.replicas > 5 {
                    problem(
                        "bus.nats.replicas".into(),
                        format!("{}: expected 1 to 5", n.replicas),
                    );
                }
            }
        }
        for (i, p) in self.redact.patterns.iter().enumerate() {
            if p.regex.trim().is_empty() {
                problem(format!("redact.patterns[{i}].regex"), "empty regex".into());
            }
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

/// The smallest `max_line_bytes` a source may set.
pub const MIN_LINE_BYTES: usize = 256;
/// The largest `max_line_bytes` a source may set: one line is held in memory whole.
pub const MAX_LINE_BYTES: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_complete() {
        let c = Config::embedded_default().unwrap();
        assert_eq!(c.listen, "127.0.0.1:7878");
        assert_eq!(c.sources.len(), 2);
        assert!(
            matches!(&c.sources[1], SourceConfig::Syslog { udp: Some(u), .. } if u == "127.0.0.1:5514")
        );
        assert!(c.rules.builtin);
        assert_eq!(c.bus.kind, BusKind::Embedded);
    }

    #[test]
    fn empty_file_means_defaults() {
        let c = Config::from_yaml("{}").unwrap();
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
  - type: syslog
    name: app
    udp: "localhost"
    max_connections: 0
bus:
  type: nats
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
            "sources[1].name",
            "sources[1].udp",
            "sources[1].max_connections",
            "bus.nats",
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
    fn a_value_of_the_wrong_kind_names_its_path_and_line() {
        for (text, path, line) in [
            (
                "sources:\n  - type: file\n    name: a\n    include: [x]\n    parser: yaml\n",
                // Inside a tagged source serde sees only the item: its path and first line.
                "sources[0]",
                "line 2",
            ),
            (
                "store:\n  retention:\n    max_age: forever\n",
                "store.retention.max_age",
                "line 3",
            ),
            ("bus:\n  type: kafka\n", "bus.type", "line 2"),
            ("log:\n  level: loud\n", "log.level", "line 2"),
            (
                "sources:\n  - type: file\n    name: a\n    include: [x]\n    start_at: middle\n",
                "sources[0]",
                "line 2",
            ),
        ] {
            let Err(e @ ConfigError::Shape { .. }) = Config::from_yaml(text) else {
                panic!("{text:?} should be rejected");
            };
            let msg = e.to_string();
            assert!(msg.starts_with(path), "{msg}");
            assert!(msg.contains(line), "{msg}");
        }
    }

    #[test]
    fn multiline_takes_on_and_off_bare_or_quoted() {
        for (value, want) in [
            ("on", Multiline::On),
            ("off", Multiline::Off),
            ("\"on\"", Multiline::On),
            ("auto", Multiline::Auto),
        ] {
            let text = format!(
                "sources:\n  - type: file\n    name: a\n    include: [x]\n    multiline: {value}\n"
            );
            let c = Config::from_yaml(&text).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert!(
                matches!(&c.sources[0], SourceConfig::File { multiline, .. } if *multiline == want),
                "{value}"
            );
        }
        assert!(
            Config::from_yaml(
                "sources:\n  - type: file\n    name: a\n    include: [x]\n    multiline: maybe\n"
            )
            .is_err()
        );
    }

    #[test]
    fn durations_that_do_not_fit_are_rejected_not_wrapped() {
        for text in [
            "store:\n  retention:\n    max_age: 213503982335d\n",
            "store:\n  retention:\n    max_age: 18446744073709552s\n",
        ] {
            let r = Config::from_yaml(text);
            assert!(
                matches!(&r, Err(ConfigError::Shape { path, .. }) if path == "store.retention.max_age"),
                "{r:?}"
            );
        }
        let c = Config::from_yaml("store:\n  retention:\n    max_age: 36h\n").unwrap();
        assert_eq!(c.store.retention.max_age.get().as_secs(), 36 * 3600);
        assert_eq!(c.store.retention.max_age.to_string(), "36h");
    }

    #[test]
    fn unknown_keys_and_types_are_syntax_errors_with_location() {
        let e = Config::from_yaml("listen: 127.0.0.1:1\nlisten_port: 3\n");
        let Err(e @ (ConfigError::Syntax(_) | ConfigError::Shape { .. })) = e else {
            panic!("expected a syntax error")
        };
        let msg = e.to_string();
        assert!(
            msg.contains("listen_port") && msg.contains("line 2"),
            "{msg}"
        );
        assert!(Config::from_yaml("sources:\n  - type: ftp\n    name: x\n").is_err());
    }

    #[test]
    fn api_tokens_have_roles_and_one_secret_source() {
        let c = Config::from_yaml(
            "api:\n  tokens:\n    - {name: alice, role: operator, token_env: ALICE_TOKEN}\n    - {name: grafana, role: viewer, token_file: /run/secrets/grafana}\n",
        )
        .unwrap();
        assert_eq!(c.api.tokens.len(), 2);
        assert_eq!(c.api.tokens[0].role, ApiRole::Operator);
        assert!(ApiRole::Viewer < ApiRole::Operator && ApiRole::Operator < ApiRole::Admin);
        let bad = Config::from_yaml(
            "api:\n  tokens:\n    - {name: a, role: admin}\n    - {name: a, role: viewer, token_env: X, token_file: f}\n",
        );
        let Err(ConfigError::Invalid(problems)) = bad else {
            panic!("expected problems: {bad:?}")
        };
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["api.tokens[0]", "api.tokens[1].name", "api.tokens[1]"]
        );
        assert!(
            Config::from_yaml("api:\n  tokens:\n    - {name: a, role: root, token_env: X}\n")
                .is_err()
        );
    }
}
