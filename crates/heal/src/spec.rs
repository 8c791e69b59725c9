//! The playbook YAML as written: the serde shapes of the file contract (field names are
//! the public interface), with source spans where later validation needs a line number.
//! Validation and compilation into runnable form live in [`crate::playbook`].

use std::collections::BTreeMap;

use opsloop_core::config::ConfigDuration;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// A string with the line it was written on.
pub type SpannedText = Spanned<String>;

/// A file holding a list of playbooks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookFile {
    /// The playbooks.
    pub playbooks: Vec<Spanned<PlaybookSpec>>,
}

/// The `playbooks:` list of an agent configuration file; its other keys are the agent's.
#[derive(Debug, Deserialize)]
pub struct ConfigPlaybooks {
    /// The playbooks (none when the key is absent).
    #[serde(default)]
    pub playbooks: Vec<Spanned<ConfigPlaybook>>,
}

/// One entry of an agent configuration's `playbooks:` list: a playbook written inline, or
/// the path of a playbook file or of a directory of them (a relative path is read from the
/// working directory, as every path of the configuration).
#[derive(Debug)]
pub enum ConfigPlaybook {
    /// A file or directory of playbooks.
    Path(String),
    /// A playbook written inline.
    Inline(Box<PlaybookSpec>),
}

impl<'de> Deserialize<'de> for ConfigPlaybook {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // By hand rather than `untagged`: an inline playbook keeps the field path and the
        // message of its first error instead of "did not match any variant".
        struct EntryVisitor;
        impl<'de> serde::de::Visitor<'de> for EntryVisitor {
            type Value = ConfigPlaybook;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a playbook, or the path of a playbook file or directory")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ConfigPlaybook, E> {
                if v.trim().is_empty() {
                    return Err(E::custom("an empty playbook path"));
                }
                Ok(ConfigPlaybook::Path(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ConfigPlaybook, A::Error> {
                PlaybookSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|spec| ConfigPlaybook::Inline(Box::new(spec)))
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

/// Only the top-level keys: tells a list file from a single-playbook file.
#[derive(Debug, Deserialize)]
pub struct FileShape {
    /// Present in a list file.
    #[serde(default)]
    pub playbooks: Option<serde::de::IgnoredAny>,
}

/// One playbook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookSpec {
    /// Unique, `[a-z0-9-]`.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// What starts it.
    pub trigger: TriggerSpec,
    /// Dedup/group key (CEL → string); default: the event's fingerprint.
    #[serde(default)]
    pub key: Option<SpannedText>,
    /// What is acted on (CEL → string); default: the key.
    #[serde(default)]
    pub target: Option<SpannedText>,
    /// How many matches within how long before acting.
    #[serde(default)]
    pub threshold: ThresholdSpec,
    /// enforce, dry-run or approve.
    #[serde(default)]
    pub mode: Mode,
    /// Limits on acting.
    #[serde(default)]
    pub guardrails: GuardrailSpec,
    /// Named values (templates), evaluated once per incident.
    #[serde(default)]
    pub vars: BTreeMap<String, SpannedText>,
    /// The remediation.
    pub steps: Vec<Spanned<StepSpec>>,
    /// Checks after the steps.
    #[serde(default)]
    pub verify: Option<VerifySpec>,
    /// Compensation and escalation when steps or verification fail.
    #[serde(default)]
    pub on_failure: Option<OnFailureSpec>,
}

/// One event type or several.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// As a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// What starts a playbook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// Event type(s); a trailing `*` matches a prefix.
    #[serde(rename = "type")]
    pub types: Spanned<OneOrMany>,
    /// CEL over `event`.
    #[serde(default)]
    pub condition: Option<SpannedText>,
}

/// `count` matches within `within`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSpec {
    /// Matches needed (at least 1).
    #[serde(default = "one")]
    pub count: u32,
    /// The window.
    #[serde(default = "five_minutes")]
    pub within: ConfigDuration,
}

impl Default for ThresholdSpec {
    fn default() -> Self {
        ThresholdSpec {
            count: 1,
            within: five_minutes(),
        }
    }
}

fn one() -> u32 {
    1
}

fn five_minutes() -> ConfigDuration {
    ConfigDuration::minutes(5)
}

/// How a playbook acts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Runs the steps.
    #[serde(rename = "enforce")]
    Enforce,
    /// Records what it would run; runs nothing (the default: safe).
    #[default]
    #[serde(rename = "dry-run")]
    DryRun,
    /// Waits for an approval event before running.
    #[serde(rename = "approve")]
    Approve,
}

impl Mode {
    /// As written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry-run",
            Mode::Approve => "approve",
        }
    }
}

/// Limits on acting.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailSpec {
    /// Quiet time per key after a run.
    #[serde(default = "five_minutes")]
    pub cooldown: ConfigDuration,
    /// Runs per target in any hour.
    #[serde(default = "six")]
    pub max_runs_per_hour: u32,
    /// Incidents remediating at once, all playbooks.
    #[serde(default = "four")]
    pub concurrency: usize,
    /// Distinct targets acted on per window.
    #[serde(default)]
    pub blast_radius: BlastRadiusSpec,
    /// Never act on a resolved alert.
    #[serde(default = "yes")]
    pub skip_resolved: bool,
}

impl Default for GuardrailSpec {
    fn default() -> Self {
        GuardrailSpec {
            cooldown: five_minutes(),
            max_runs_per_hour: six(),
            concurrency: four(),
            blast_radius: BlastRadiusSpec::default(),
            skip_resolved: true,
        }
    }
}

fn six() -> u32 {
    6
}

fn four() -> usize {
    4
}

fn yes() -> bool {
    true
}

/// Distinct targets per window.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlastRadiusSpec {
    /// Most distinct targets.
    #[serde(default = "ten")]
    pub max_targets: usize,
    /// The window.
    #[serde(default = "one_hour")]
    pub within: ConfigDuration,
}

impl Default for BlastRadiusSpec {
    fn default() -> Self {
        BlastRadiusSpec {
            max_targets: ten(),
            within: one_hour(),
        }
    }
}

fn ten() -> usize {
    10
}

fn one_hour() -> ConfigDuration {
    ConfigDuration::minutes(60)
}

/// One step: exactly one action, plus how to run it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Name (default `step-N`).
    #[serde(default)]
    pub name: Option<String>,
    /// CEL; false skips the step.
    #[serde(default)]
    pub when: Option<SpannedText>,
    /// Saves the result under `steps.<capture>`.
    #[serde(default)]
    pub capture: Option<String>,
    /// Per attempt.
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
    /// Attempts and backoff.
    #[serde(default)]
    pub retries: Option<RetrySpec>,
    /// Run a command in the sandbox.
    #[serde(default)]
    pub exec: Option<ExecSpec>,
    /// An HTTP request.
    #[serde(default)]
    pub http: Option<HttpSpec>,
    /// A Kubernetes action.
    #[serde(default)]
    pub kubernetes: Option<KubernetesSpec>,
    /// Publish on NATS.
    #[serde(default)]
    pub nats_publish: Option<NatsSpec>,
    /// Emit a CloudEvent.
    #[serde(default)]
    pub event: Option<EventSpec>,
}

/// Attempts and exponential backoff.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all (at least 1).
    #[serde(default = "one")]
    pub attempts: u32,
    /// First wait (default 1s); doubles each time, capped.
    #[serde(default)]
    pub backoff: Option<ConfigDuration>,
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            attempts: 1,
            backoff: None,
        }
    }
}

/// Network access of an exec step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkSpec {
    /// None at all.
    #[default]
    None,
    /// The host's.
    Host,
}

/// A sandboxed command.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSpec {
    /// Program and arguments; no shell unless the program is one.
    pub command: Vec<String>,
    /// Extra readable paths.
    #[serde(default)]
    pub allow_read: Vec<String>,
    /// Writable paths.
    #[serde(default)]
    pub allow_write: Vec<String>,
    /// Network access.
    #[serde(default)]
    pub network: NetworkSpec,
    /// Sandbox wall-clock limit.
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
    /// Names of the agent's environment variables passed in.
    #[serde(default)]
    pub env: Vec<String>,
    /// Run as this user (default nobody).
    #[serde(default)]
    pub user: Option<String>,
    /// Memory limit per process, with a unit (`256MiB`; the sandbox's default otherwise).
    #[serde(default)]
    pub memory: Option<String>,
    /// CPU time limit (`10s`; the sandbox's default otherwise).
    #[serde(default)]
    pub cpu_time: Option<ConfigDuration>,
    /// Most processes at once (the sandbox's default otherwise).
    #[serde(default)]
    pub max_procs: Option<u64>,
}

/// A header value: text, or a secret read at run time.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum SecretOrText {
    /// Plain (interpolated) text.
    Text(String),
    /// From an environment variable.
    Env {
        /// The variable.
        secret_env: String,
    },
    /// From a file (trailing newline trimmed).
    File {
        /// The file.
        secret_file: String,
    },
}

/// An HTTP request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// GET, POST, …
    #[serde(default = "get")]
    pub method: String,
    /// The URL.
    pub url: String,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretOrText>,
    /// Body.
    #[serde(default)]
    pub body: Option<String>,
    /// Accepted statuses; default any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
}

fn get() -> String {
    "GET".into()
}

/// Kubernetes actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KubeActionKind {
    /// Restart a workload's pods (annotate the pod template).
    RolloutRestart,
    /// Set replicas.
    Scale,
    /// Delete one pod.
    DeletePod,
    /// Mark a node unschedulable.
    Cordon,
    /// Mark a node schedulable.
    Uncordon,
    /// Set annotations.
    Annotate,
    /// Apply a merge patch.
    Patch,
}

/// A Kubernetes action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    /// What to do.
    pub action: KubeActionKind,
    /// Object kind (Deployment, StatefulSet, DaemonSet, Pod, Node).
    #[serde(default)]
    pub kind: Option<String>,
    /// Namespace (not for nodes).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Object name (required).
    #[serde(default)]
    pub name: Option<String>,
    /// For `scale`.
    #[serde(default)]
    pub replicas: Option<String>,
    /// For `annotate`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// For `patch`: a JSON merge patch (strings interpolated).
    #[serde(default)]
    pub patch: Option<serde_json::Value>,
}

/// A NATS publish.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSpec {
    /// Subject.
    pub subject: String,
    /// Payload text.
    #[serde(default)]
    pub payload: Option<String>,
}

/// A CloudEvent to emit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// Data (strings interpolated).
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

/// Verification.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// Give up after this long.
    #[serde(default = "five_minutes")]
    pub deadline: ConfigDuration,
    /// Time between rounds (default 10s).
    #[serde(default)]
    pub interval: Option<ConfigDuration>,
    /// All must pass in one round.
    pub checks: Vec<Spanned<CheckSpec>>,
}

/// One check: exactly one kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// HTTP probe.
    #[serde(default)]
    pub http: Option<HttpCheckSpec>,
    /// Prometheus query with a CEL expectation over `value`.
    #[serde(default)]
    pub prometheus: Option<PrometheusCheckSpec>,
    /// No matching event for a while.
    #[serde(default)]
    pub no_event: Option<NoEventSpec>,
    /// A sandboxed command whose captured output a CEL expectation reads (`stdout`,
    /// `exit_code`): how the disk example checks `df` again.
    #[serde(default)]
    pub exec: Option<ExecCheckSpec>,
}

/// HTTP probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheckSpec {
    /// The URL.
    pub url: String,
    /// Expected status.
    #[serde(default = "two_hundred")]
    pub expect_status: u16,
    /// Text the body must hold.
    #[serde(default)]
    pub body_contains: Option<String>,
}

fn two_hundred() -> u16 {
    200
}

/// Prometheus instant query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusCheckSpec {
    /// Server base URL.
    pub url: String,
    /// PromQL.
    pub query: String,
    /// CEL over `value` (the first sample, a double).
    pub expect: SpannedText,
}

/// No event of a type (and condition) for a duration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoEventSpec {
    /// Type pattern.
    #[serde(rename = "type")]
    pub kind: String,
    /// CEL over `event`.
    #[serde(default)]
    pub condition: Option<SpannedText>,
    /// How long.
    #[serde(rename = "for")]
    pub quiet_for: ConfigDuration,
}

/// A command run as a check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecCheckSpec {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Extra readable paths.
    #[serde(default)]
    pub allow_read: Vec<String>,
    /// Names of environment variables passed in.
    #[serde(default)]
    pub env: Vec<String>,
    /// CEL over `stdout`, `stderr`, `exit_code`.
    pub expect: SpannedText,
}

/// Compensation and escalation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnFailureSpec {
    /// Steps run after a failure.
    #[serde(default)]
    pub steps: Vec<Spanned<StepSpec>>,
    /// Who is told.
    #[serde(default)]
    pub escalate: Vec<Spanned<EscalateSpec>>,
}

/// One escalation target: exactly one kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateSpec {
    /// POST the incident as JSON.
    #[serde(default)]
    pub webhook: Option<WebhookSpec>,
    /// POST an alert to `/api/v2/alerts`.
    #[serde(default)]
    pub alertmanager: Option<WebhookSpec>,
    /// Emit an event.
    #[serde(default)]
    pub event: Option<EscalateEventSpec>,
}

/// A URL to post to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// The URL.
    pub url: String,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretOrText>,
}

/// The escalation event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateEventSpec {
    /// Type (default `io.opsloop.heal.escalated`).
    #[serde(rename = "type", default = "escalated_type")]
    pub kind: String,
}

fn escalated_type() -> String {
    "io.opsloop.heal.escalated".into()
}
