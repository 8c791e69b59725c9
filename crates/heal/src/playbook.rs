//! Playbooks compiled for running: [`PlaybookSet::load`] / [`PlaybookSet::from_yaml`] read
//! the YAML ([`crate::spec`]), validate everything the types cannot express and compile
//! every CEL expression and `${{ … }}` template once. Problems carry the file, the line and
//! the field path, all of them reported at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_saphyr::Spanned;

use crate::expr::{Expr, Template};
use crate::spec::{
    self, CheckSpec, EscalateSpec, KubeActionKind, Mode, NetworkSpec, PlaybookSpec, SecretOrText,
    StepSpec,
};

/// Stack of the thread a file is compiled on: the CEL parser recurses deeply (see
/// [`crate::expr`]); the expression bounds keep a compile far below this.
const COMPILE_STACK: usize = 64 << 20;
/// Largest playbook file read, bytes.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Longest step timeout accepted; beyond it the value is surely a typo.
const MAX_STEP_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Most attempts per step.
const MAX_ATTEMPTS: u32 = 20;
/// Default per-attempt timeout of a step.
const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// One problem in a playbook file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file (or origin name).
    pub file: String,
    /// The line, when known (1-based).
    pub line: Option<u64>,
    /// Path of the field (`playbooks[0].steps[1].exec`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why playbooks were rejected: every problem found.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{} problem(s) in playbooks: {}", .problems.len(), .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct LoadError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

/// A trigger's event type: exact, or a prefix (`io.opsloop.log.*`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TypePattern {
    /// This type only.
    Exact(String),
    /// Types starting with this.
    Prefix(String),
}

impl TypePattern {
    /// Parses `a.b.c` or `a.b.*`.
    pub fn parse(text: &str) -> Result<TypePattern, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty event type".into());
        }
        match text.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => Ok(TypePattern::Prefix(prefix.to_string())),
            Some(_) => Err(format!("{text:?}: `*` is allowed only at the end")),
            None if text.contains('*') => Err(format!("{text:?}: `*` is allowed only at the end")),
            None => Ok(TypePattern::Exact(text.to_string())),
        }
    }

    /// Whether `kind` matches.
    pub fn matches(&self, kind: &str) -> bool {
        match self {
            TypePattern::Exact(t) => t == kind,
            TypePattern::Prefix(p) => kind.starts_with(p.as_str()),
        }
    }
}

/// Threshold: `count` matches within `within`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Threshold {
    /// Matches needed.
    pub count: u32,
    /// Window, ms.
    pub within_ms: i64,
}

/// Guardrails, in milliseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Guardrails {
    /// Per key after a run.
    pub cooldown_ms: i64,
    /// Per target, any hour.
    pub max_runs_per_hour: u32,
    /// Incidents remediating at once, all playbooks.
    pub concurrency: usize,
    /// Distinct targets per window.
    pub blast_max_targets: usize,
    /// The blast-radius window.
    pub blast_within_ms: i64,
    /// Never act on a resolved alert.
    pub skip_resolved: bool,
}

/// A header: text or a secret read when the step runs.
#[derive(Clone, Debug)]
pub enum HeaderTemplate {
    /// Interpolated text.
    Text(Template),
    /// From an environment variable.
    SecretEnv(String),
    /// From a file.
    SecretFile(PathBuf),
}

/// A JSON document whose strings are templates.
#[derive(Clone, Debug)]
pub enum JsonTemplate {
    /// A non-string scalar, kept as is.
    Scalar(serde_json::Value),
    /// A string, interpolated.
    Text(Template),
    /// A list.
    List(Vec<JsonTemplate>),
    /// An object (keys literal).
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    fn parse(v: &serde_json::Value) -> Result<JsonTemplate, String> {
        Ok(match v {
            serde_json::Value::String(s) => JsonTemplate::Text(Template::parse(s)?),
            serde_json::Value::Array(items) => JsonTemplate::List(
                items
                    .iter()
                    .map(JsonTemplate::parse)
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(map) => JsonTemplate::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), JsonTemplate::parse(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => JsonTemplate::Scalar(other.clone()),
        })
    }
}

/// A sandboxed command, before interpolation.
#[derive(Clone, Debug)]
pub struct ExecTemplate {
    /// Program and arguments.
    pub command: Vec<Template>,
    /// Readable paths.
    pub allow_read: Vec<Template>,
    /// Writable paths.
    pub allow_write: Vec<Template>,
    /// Network.
    pub network: NetworkSpec,
    /// Sandbox wall-clock limit.
    pub timeout: Option<Duration>,
    /// Environment names passed in.
    pub env: Vec<String>,
    /// User.
    pub user: Option<String>,
    /// Memory limit per process, bytes.
    pub memory: Option<u64>,
    /// CPU time limit.
    pub cpu_time: Option<Duration>,
    /// Most processes at once.
    pub max_procs: Option<u64>,
}

/// An HTTP request, before interpolation.
#[derive(Clone, Debug)]
pub struct HttpTemplate {
    /// Method (upper case).
    pub method: String,
    /// URL.
    pub url: Template,
    /// Headers.
    pub headers: Vec<(String, HeaderTemplate)>,
    /// Body.
    pub body: Option<Template>,
    /// Accepted statuses (empty: any 2xx).
    pub expect_status: Vec<u16>,
}

/// A Kubernetes action, before interpolation.
#[derive(Clone, Debug)]
pub struct KubeTemplate {
    /// What.
    pub action: KubeActionKind,
    /// Object kind.
    pub kind: Template,
    /// Namespace (absent for nodes).
    pub namespace: Option<Template>,
    /// Name.
    pub name: Template,
    /// For scale.
    pub replicas: Option<Template>,
    /// For annotate.
    pub annotations: Vec<(String, Template)>,
    /// For patch.
    pub patch: Option<JsonTemplate>,
}

/// An action, before interpolation.
#[derive(Clone, Debug)]
pub enum ActionTemplate {
    /// Sandboxed command.
    Exec(ExecTemplate),
    /// HTTP request.
    Http(HttpTemplate),
    /// Kubernetes.
    Kubernetes(KubeTemplate),
    /// NATS publish.
    NatsPublish {
        /// Subject.
        subject: Template,
        /// Payload.
        payload: Template,
    },
    /// CloudEvent.
    Event {
        /// Type.
        kind: Template,
        /// Subject.
        subject: Option<Template>,
        /// Data.
        data: JsonTemplate,
    },
}

fn json_templates<'a>(t: &'a JsonTemplate, out: &mut Vec<&'a Template>) {
    match t {
        JsonTemplate::Scalar(_) => {}
        JsonTemplate::Text(t) => out.push(t),
        JsonTemplate::List(items) => items.iter().for_each(|i| json_templates(i, out)),
        JsonTemplate::Object(entries) => entries.iter().for_each(|(_, v)| json_templates(v, out)),
    }
}

impl ActionTemplate {
    /// Every template of the action.
    pub fn templates(&self) -> Vec<&Template> {
        let mut out = Vec::new();
        match self {
            ActionTemplate::Exec(x) => {
                out.extend(x.command.iter().chain(&x.allow_read).chain(&x.allow_write));
            }
            ActionTemplate::Http(h) => {
                out.push(&h.url);
                out.extend(h.body.iter());
                for (_, v) in &h.headers {
                    if let HeaderTemplate::Text(t) = v {
                        out.push(t);
                    }
                }
            }
            ActionTemplate::Kubernetes(k) => {
                out.push(&k.kind);
                out.push(&k.name);
                out.extend(k.namespace.iter().chain(k.replicas.iter()));
                out.extend(k.annotations.iter().map(|(_, t)| t));
                if let Some(p) = &k.patch {
                    json_templates(p, &mut out);
                }
            }
            ActionTemplate::NatsPublish { subject, payload } => {
                out.push(subject);
                out.push(payload);
            }
            ActionTemplate::Event {
                kind,
                subject,
                data,
            } => {
                out.push(kind);
                out.extend(subject.iter());
                json_templates(data, &mut out);
            }
        }
        out
    }

    /// The action's kind as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            ActionTemplate::Exec(_) => "exec",
            ActionTemplate::Http(_) => "http",
            ActionTemplate::Kubernetes(_) => "kubernetes",
            ActionTemplate::NatsPublish { .. } => "nats_publish",
            ActionTemplate::Event { .. } => "event",
        }
    }
}

/// A step, compiled.
#[derive(Clone, Debug)]
pub struct Step {
    /// Name.
    pub name: String,
    /// Runs only when true.
    pub when: Option<Expr>,
    /// Saves the result under `steps.<capture>`.
    pub capture: Option<String>,
    /// Per attempt.
    pub timeout: Duration,
    /// Attempts in all.
    pub attempts: u32,
    /// First backoff.
    pub backoff: Duration,
    /// The action.
    pub action: ActionTemplate,
    /// Line of the step in its file.
    pub line: u64,
}

/// A verification check, compiled.
#[derive(Clone, Debug)]
pub enum Check {
    /// HTTP probe.
    Http {
        /// URL.
        url: Template,
        /// Expected status.
        expect_status: u16,
        /// Text the body holds.
        body_contains: Option<Template>,
    },
    /// Prometheus query.
    Prometheus {
        /// Base URL.
        url: Template,
        /// PromQL.
        query: Template,
        /// Over `value`.
        expect: Expr,
    },
    /// Quiet period.
    NoEvent {
        /// Type.
        pattern: TypePattern,
        /// Over `event`.
        condition: Option<Expr>,
        /// How long, ms.
        quiet_for_ms: i64,
    },
    /// A sandboxed command and an expectation over its output.
    Exec {
        /// Program and arguments.
        command: Vec<Template>,
        /// Readable paths.
        allow_read: Vec<Template>,
        /// Environment names.
        env: Vec<String>,
        /// Over `stdout`, `stderr`, `exit_code`.
        expect: Expr,
    },
}

impl Check {
    /// The check's kind as written.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Http { .. } => "http",
            Check::Prometheus { .. } => "prometheus",
            Check::NoEvent { .. } => "no_event",
            Check::Exec { .. } => "exec",
        }
    }
}

/// Verification.
#[derive(Clone, Debug)]
pub struct Verify {
    /// Give up after.
    pub deadline: Duration,
    /// Between rounds.
    pub interval: Duration,
    /// The checks.
    pub checks: Vec<Check>,
}

/// An escalation target.
#[derive(Clone, Debug)]
pub enum Escalation {
    /// POST the incident.
    Webhook {
        /// URL.
        url: Template,
        /// Headers.
        headers: Vec<(String, HeaderTemplate)>,
    },
    /// POST an Alertmanager alert.
    Alertmanager {
        /// Base URL.
        url: Template,
        /// Headers.
        headers: Vec<(String, HeaderTemplate)>,
    },
    /// Emit an event.
    Event {
        /// Type.
        kind: String,
    },
}

/// A playbook, compiled.
#[derive(Clone, Debug)]
pub struct Playbook {
    /// Unique name.
    pub name: String,
    /// Description.
    pub description: String,
    /// File it came from.
    pub origin: String,
    /// Line it starts on.
    pub line: u64,
    /// Trigger types.
    pub types: Vec<TypePattern>,
    /// Trigger condition.
    pub condition: Option<Expr>,
    /// Key expression (none: the fingerprint).
    pub key: Option<Expr>,
    /// Target expression (none: the key).
    pub target: Option<Expr>,
    /// Threshold.
    pub threshold: Threshold,
    /// Mode.
    pub mode: Mode,
    /// Guardrails.
    pub guardrails: Guardrails,
    /// Vars, in name order.
    pub vars: Vec<(String, Template)>,
    /// Steps.
    pub steps: Vec<Step>,
    /// Verification.
    pub verify: Option<Verify>,
    /// Compensation steps.
    pub compensation: Vec<Step>,
    /// Escalations.
    pub escalate: Vec<Escalation>,
}

/// A validated, compiled set of playbooks with its event-type index.
#[derive(Clone, Debug, Default)]
pub struct PlaybookSet {
    playbooks: Vec<Arc<Playbook>>,
    exact: FxHashMap<String, Vec<usize>>,
    prefixes: Vec<(String, usize)>,
    secret_env: BTreeSet<String>,
    secret_files: BTreeSet<PathBuf>,
}

impl PlaybookSet {
    /// An empty set.
    pub fn empty() -> PlaybookSet {
        PlaybookSet::default()
    }

    /// Reads files and directories (`*.yaml`, `*.yml`, sorted) and compiles them as one set
    /// (names unique across files). Every problem of every file is reported.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<PlaybookSet, LoadError> {
        let mut problems = Vec::new();
        let mut specs = Vec::new();
        for path in paths {
            read_files(path.as_ref(), &mut specs, &mut problems);
        }
        finish(specs, problems)
    }

    /// Compiles the playbooks in `text` (a list under `playbooks:` or one playbook);
    /// `origin` names it in problems.
    pub fn from_yaml(text: &str, origin: &str) -> Result<PlaybookSet, LoadError> {
        let specs = parse_specs(text, origin).map_err(|p| LoadError { problems: vec![p] })?;
        compile_on_big_stack(
            specs
                .into_iter()
                .enumerate()
                .map(|(i, s)| (s, origin.to_string(), i))
                .collect(),
        )
    }

    /// Compiles the `playbooks:` list of an agent configuration file, ignoring its other
    /// keys (the agent's own config validates those); problems carry the file's real lines.
    /// An entry that is a string names a playbook file or directory (`*.yaml`/`*.yml`, not
    /// recursive); relative paths are read from the working directory, as every other path
    /// of the configuration.
    pub fn from_config_yaml(text: &str, origin: &str) -> Result<PlaybookSet, LoadError> {
        let config: spec::ConfigPlaybooks =
            deserialize(text, origin).map_err(|p| LoadError { problems: vec![p] })?;
        let mut problems = Vec::new();
        let mut specs = Vec::new();
        for (index, entry) in config.playbooks.into_iter().enumerate() {
            match entry.value {
                spec::ConfigPlaybook::Inline(spec) => {
                    let spanned = Spanned {
                        value: *spec,
                        referenced: entry.referenced,
                        defined: entry.defined,
                    };
                    specs.push((spanned, origin.to_string(), index));
                }
                spec::ConfigPlaybook::Path(path) => {
                    let path = Path::new(&path);
                    if !path.exists() {
                        problems.push(Problem {
                            file: origin.to_string(),
                            line: Some(entry.referenced.line()).filter(|&l| l > 0),
                            path: format!("playbooks[{index}]"),
                            message: format!("{}: no such file or directory", path.display()),
                        });
                        continue;
                    }
                    read_files(path, &mut specs, &mut problems);
                }
            }
        }
        finish(specs, problems)
    }

    /// The playbooks, in file order.
    pub fn playbooks(&self) -> &[Arc<Playbook>] {
        &self.playbooks
    }

    /// Number of playbooks.
    pub fn len(&self) -> usize {
        self.playbooks.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.playbooks.is_empty()
    }

    /// Indexes of the playbooks whose trigger types match `kind`, in file order, appended
    /// to `out` (cleared first). No allocation once `out` has grown.
    pub fn candidates(&self, kind: &str, out: &mut Vec<usize>) {
        out.clear();
        if let Some(list) = self.exact.get(kind) {
            out.extend_from_slice(list);
        }
        for (prefix, i) in &self.prefixes {
            if kind.starts_with(prefix.as_str()) && !out.contains(i) {
                out.push(*i);
            }
        }
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }

    /// Environment variables referenced by `secret_env`.
    pub fn secret_env(&self) -> &BTreeSet<String> {
        &self.secret_env
    }

    /// Files referenced by `secret_file`.
    pub fn secret_files(&self) -> &BTreeSet<PathBuf> {
        &self.secret_files
    }
}

/// A compiled set, or every problem: those found reading plus those of compiling.
fn finish(specs: Vec<SourcedSpec>, mut problems: Vec<Problem>) -> Result<PlaybookSet, LoadError> {
    match compile_on_big_stack(specs) {
        Ok(set) if problems.is_empty() => Ok(set),
        Ok(_) => Err(LoadError { problems }),
        Err(e) => {
            problems.extend(e.problems);
            Err(LoadError { problems })
        }
    }
}

/// Reads the playbooks of a file, or of the `*.yaml`/`*.yml` files of a directory, into
/// `specs`; what cannot be read or parsed goes to `problems`.
fn read_files(path: &Path, specs: &mut Vec<SourcedSpec>, problems: &mut Vec<Problem>) {
    for file in expand(path, problems) {
        let name = file.display().to_string();
        let text = match read_bounded(&file) {
            Ok(text) => text,
            Err(message) => {
                problems.push(Problem {
                    file: name,
                    line: None,
                    path: String::new(),
                    message,
                });
                continue;
            }
        };
        match parse_specs(&text, &name) {
            Ok(list) => specs.extend(
                list.into_iter()
                    .enumerate()
                    .map(|(i, s)| (s, name.clone(), i)),
            ),
            Err(p) => problems.push(p),
        }
    }
}

fn read_bounded(file: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(file).map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes; playbook files are limited to {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    std::fs::read_to_string(file).map_err(|e| e.to_string())
}

/// A file, or the `*.yaml`/`*.yml` files of a directory (sorted, not recursive).
fn expand(path: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    match std::fs::read_dir(path) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let p = entry.path();
                let yaml = p.extension().is_some_and(|e| e == "yaml" || e == "yml");
                if yaml && p.is_file() {
                    out.push(p);
                }
            }
        }
        Err(e) => problems.push(Problem {
            file: path.display().to_string(),
            line: None,
            path: String::new(),
            message: e.to_string(),
        }),
    }
    out.sort();
    out
}

/// Deserializes with the field path of the first error and its line.
fn deserialize<T: for<'de> serde::Deserialize<'de>>(
    text: &str,
    origin: &str,
) -> Result<T, Problem> {
    let mut path = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    parsed.map_err(|e| {
        let line = e.location().map(|l| l.line()).filter(|&l| l > 0);
        Problem {
            file: origin.to_string(),
            line,
            path: clean_path(&path),
            message: first_line_message(&e.to_string()),
        }
    })
}

/// A field path without the `value` segments the span wrappers add.
fn clean_path(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    path.split('.')
        .filter(|s| *s != "value")
        .collect::<Vec<_>>()
        .join(".")
}

/// The parser's message on one line, without the position (reported separately) and the
/// source excerpt.
fn first_line_message(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // "line 5 column 5: unknown field …"
    match first.split_once(": ") {
        Some((pos, rest)) if pos.starts_with("line ") && pos.contains(" column ") => {
            rest.to_string()
        }
        _ => first.to_string(),
    }
}

fn parse_specs(text: &str, origin: &str) -> Result<Vec<Spanned<PlaybookSpec>>, Problem> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let shape: spec::FileShape = deserialize(text, origin)?;
    if shape.playbooks.is_some() {
        let file: spec::PlaybookFile = deserialize(text, origin)?;
        Ok(file.playbooks)
    } else {
        let one: Spanned<PlaybookSpec> = deserialize(text, origin)?;
        Ok(vec![one])
    }
}

/// A playbook as written, the file it came from and its index in that file's list.
type SourcedSpec = (Spanned<PlaybookSpec>, String, usize);

fn compile_on_big_stack(specs: Vec<SourcedSpec>) -> Result<PlaybookSet, LoadError> {
    let spawned = std::thread::Builder::new()
        .name("heal-compile".into())
        .stack_size(COMPILE_STACK)
        .spawn(move || compile(&specs));
    match spawned {
        Ok(handle) => handle.join().unwrap_or_else(|_| {
            Err(LoadError {
                problems: vec![Problem {
                    file: String::new(),
                    line: None,
                    path: String::new(),
                    message: "compiling the playbooks failed unexpectedly".into(),
                }],
            })
        }),
        Err(e) => Err(LoadError {
            problems: vec![Problem {
                file: String::new(),
                line: None,
                path: String::new(),
                message: format!("cannot start the compiler thread: {e}"),
            }],
        }),
    }
}

/// Collects problems while compiling one file's playbooks.
struct Checker<'a> {
    file: &'a str,
    problems: Vec<Problem>,
    secret_env: BTreeSet<String>,
    secret_files: BTreeSet<PathBuf>,
}

impl Checker<'_> {
    fn problem(&mut self, line: u64, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_string(),
            line: (line > 0).then_some(line),
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn expr(&mut self, text: &Spanned<String>, path: &str) -> Option<Expr> {
        match Expr::compile(&text.value) {
            Ok(e) => Some(e),
            Err(m) => {
                self.problem(text.referenced.line(), path, format!("invalid CEL: {m}"));
                None
            }
        }
    }

    fn template(&mut self, text: &str, line: u64, path: &str) -> Template {
        match Template::parse(text) {
            Ok(t) => t,
            Err(m) => {
                self.problem(line, path, m);
                Template::literal(text)
            }
        }
    }

    /// What the sandbox would refuse at run time (exit 125), refused at load instead: a root
    /// user, and a literal allow-list path holding the sandbox's scratch root (the temporary
    /// directory, where every sandbox's scratch and control files live).
    fn sandbox_refusals(&mut self, x: &spec::ExecSpec, line: u64, p: &str) {
        if let Some(user) = &x.user {
            let user = user.trim();
            if user == "root" || user.parse::<u32>() == Ok(0) {
                self.problem(
                    line,
                    &format!("{p}.user"),
                    "the sandbox never runs a command as root",
                );
            }
        }
        let scratch_root = std::env::temp_dir();
        for (field, paths) in [
            ("allow_read", &x.allow_read),
            ("allow_write", &x.allow_write),
        ] {
            for path in paths.iter().filter(|p| !p.contains("${{")) {
                let path = Path::new(path);
                if path.is_absolute() && scratch_root.starts_with(path) {
                    self.problem(
                        line,
                        &format!("{p}.{field}"),
                        format!(
                            "{} holds {}, the sandboxes' scratch root: it would expose other \
                             commands' scratch",
                            path.display(),
                            scratch_root.display()
                        ),
                    );
                }
            }
        }
    }

    fn path_template(&mut self, text: &str, line: u64, path: &str) -> Template {
        let t = self.template(text, line, path);
        if !t.is_dynamic() && !text.starts_with('/') {
            self.problem(line, path, format!("{text:?}: the path must be absolute"));
        }
        t
    }

    fn headers(
        &mut self,
        headers: &BTreeMap<String, SecretOrText>,
        line: u64,
        path: &str,
    ) -> Vec<(String, HeaderTemplate)> {
        let mut out = Vec::new();
        for (name, value) in headers {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                self.problem(line, path, format!("{name:?} is not a header name"));
            }
            let at = format!("{path}.{name}");
            let h = match value {
                SecretOrText::Text(t) => HeaderTemplate::Text(self.template(t, line, &at)),
                SecretOrText::Env { secret_env } => {
                    if !valid_env_name(secret_env) {
                        self.problem(line, &at, format!("{secret_env:?} is not a variable name"));
                    }
                    self.secret_env.insert(secret_env.clone());
                    HeaderTemplate::SecretEnv(secret_env.clone())
                }
                SecretOrText::File { secret_file } => {
                    if !secret_file.starts_with('/') {
                        self.problem(line, &at, "secret_file must be an absolute path");
                    }
                    self.secret_files.insert(PathBuf::from(secret_file));
                    HeaderTemplate::SecretFile(PathBuf::from(secret_file))
                }
            };
            out.push((name.clone(), h));
        }
        out
    }

    fn env_names(&mut self, names: &[String], line: u64, path: &str) {
        for name in names {
            if !valid_env_name(name) {
                self.problem(line, path, format!("{name:?} is not a variable name"));
            } else if opsloop_sandbox::RESERVED_ENV.contains(&name.as_str()) {
                self.problem(line, path, format!("{name} is set by the sandbox itself"));
            }
        }
    }

    fn steps(&mut self, specs: &[Spanned<StepSpec>], path: &str) -> Vec<Step> {
        let mut out = Vec::new();
        let mut names = BTreeSet::new();
        let mut captures = BTreeSet::new();
        for (i, spanned) in specs.iter().enumerate() {
            let s = &spanned.value;
            let line = spanned.referenced.line();
            let at = format!("{path}[{i}]");
            let name = s.name.clone().unwrap_or_else(|| format!("step-{}", i + 1));
            if !valid_name(&name) {
                self.problem(
                    line,
                    &format!("{at}.name"),
                    format!("{name:?}: use [a-z0-9-] (and _)"),
                );
            }
            if !names.insert(name.clone()) {
                self.problem(
                    line,
                    &format!("{at}.name"),
                    format!("duplicate step name {name:?}"),
                );
            }
            if let Some(c) = &s.capture {
                if !valid_ident(c) {
                    self.problem(
                        line,
                        &format!("{at}.capture"),
                        format!("{c:?}: a capture name is read as `steps.{c}` in CEL; use [a-z_][a-z0-9_]*"),
                    );
                }
                if !captures.insert(c.clone()) {
                    self.problem(
                        line,
                        &format!("{at}.capture"),
                        format!("duplicate capture {c:?}"),
                    );
                }
            }
            let when = s
                .when
                .as_ref()
                .and_then(|w| self.expr(w, &format!("{at}.when")));
            let timeout = s.timeout.map_or(DEFAULT_STEP_TIMEOUT, |d| d.get());
            if timeout.is_zero() || timeout > MAX_STEP_TIMEOUT {
                self.problem(
                    line,
                    &format!("{at}.timeout"),
                    "must be between 1ms and 24h",
                );
            }
            let retries = s.retries.unwrap_or_default();
            if retries.attempts == 0 || retries.attempts > MAX_ATTEMPTS {
                self.problem(
                    line,
                    &format!("{at}.retries.attempts"),
                    format!("must be between 1 and {MAX_ATTEMPTS}"),
                );
            }
            let backoff = retries.backoff.map_or(Duration::from_secs(1), |d| d.get());
            let count = [
                s.exec.is_some(),
                s.http.is_some(),
                s.kubernetes.is_some(),
                s.nats_publish.is_some(),
                s.event.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if count != 1 {
                self.problem(
                    line,
                    &at,
                    format!(
                        "a step needs exactly one of exec, http, kubernetes, nats_publish, event ({count} given)"
                    ),
                );
                continue;
            }
            let action = self.action(s, line, &at);
            if let Some(action) = action {
                out.push(Step {
                    name,
                    when,
                    capture: s.capture.clone(),
                    timeout,
                    attempts: retries.attempts.clamp(1, MAX_ATTEMPTS),
                    backoff,
                    action,
                    line,
                });
            }
        }
        out
    }

    fn action(&mut self, s: &StepSpec, line: u64, at: &str) -> Option<ActionTemplate> {
        if let Some(x) = &s.exec {
            let p = format!("{at}.exec");
            if x.command.is_empty() {
                self.problem(line, &format!("{p}.command"), "empty command");
            }
            let command = x
                .command
                .iter()
                .map(|c| self.template(c, line, &format!("{p}.command")))
                .collect();
            let allow_read = x
                .allow_read
                .iter()
                .map(|c| self.path_template(c, line, &format!("{p}.allow_read")))
                .collect();
            let allow_write = x
                .allow_write
                .iter()
                .map(|c| self.path_template(c, line, &format!("{p}.allow_write")))
                .collect();
            self.env_names(&x.env, line, &format!("{p}.env"));
            self.sandbox_refusals(x, line, &p);
            let memory = x
                .memory
                .as_deref()
                .and_then(|m| match opsloop_sandbox::parse_bytes(m) {
                    Ok(0) => {
                        self.problem(line, &format!("{p}.memory"), "a limit of zero");
                        None
                    }
                    Ok(bytes) => Some(bytes),
                    Err(e) => {
                        self.problem(line, &format!("{p}.memory"), e.to_string());
                        None
                    }
                });
            let cpu_time = x.cpu_time.map(|d| d.get());
            if cpu_time.is_some_and(|d| d.is_zero()) {
                self.problem(line, &format!("{p}.cpu_time"), "a limit of zero");
            }
            if x.max_procs == Some(0) {
                self.problem(line, &format!("{p}.max_procs"), "a limit of zero");
            }
            return Some(ActionTemplate::Exec(ExecTemplate {
                command,
                allow_read,
                allow_write,
                network: x.network,
                timeout: x.timeout.map(|d| d.get()),
                env: x.env.clone(),
                user: x.user.clone(),
                memory,
                cpu_time,
                max_procs: x.max_procs,
            }));
        }
        if let Some(h) = &s.http {
            let p = format!("{at}.http");
            let method = h.method.to_ascii_uppercase();
            if !matches!(
                method.as_str(),
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD"
            ) {
                self.problem(
                    line,
                    &format!("{p}.method"),
                    format!("{:?} is not an HTTP method", h.method),
                );
            }
            for s in &h.expect_status {
                if !(100..=599).contains(s) {
                    self.problem(
                        line,
                        &format!("{p}.expect_status"),
                        format!("{s} is not an HTTP status"),
                    );
                }
            }
            let url = self.url_template(&h.url, line, &format!("{p}.url"));
            let headers = self.headers(&h.headers, line, &format!("{p}.headers"));
            let body = h
                .body
                .as_ref()
                .map(|b| self.template(b, line, &format!("{p}.body")));
            return Some(ActionTemplate::Http(HttpTemplate {
                method,
                url,
                headers,
                body,
                expect_status: h.expect_status.clone(),
            }));
        }
        if let Some(k) = &s.kubernetes {
            let p = format!("{at}.kubernetes");
            let Some(name) = &k.name else {
                self.problem(
                    line,
                    &format!("{p}.name"),
                    "a kubernetes action needs `name`",
                );
                return None;
            };
            let default_kind = match k.action {
                KubeActionKind::Cordon | KubeActionKind::Uncordon => "Node",
                KubeActionKind::DeletePod => "Pod",
                _ => "Deployment",
            };
            let kind_text = k.kind.clone().unwrap_or_else(|| default_kind.to_string());
            match k.action {
                KubeActionKind::Scale if k.replicas.is_none() => {
                    self.problem(line, &format!("{p}.replicas"), "scale needs `replicas`");
                }
                KubeActionKind::Annotate if k.annotations.is_empty() => {
                    self.problem(
                        line,
                        &format!("{p}.annotations"),
                        "annotate needs `annotations`",
                    );
                }
                KubeActionKind::Patch if k.patch.is_none() => {
                    self.problem(line, &format!("{p}.patch"), "patch needs `patch`");
                }
                KubeActionKind::Cordon | KubeActionKind::Uncordon if kind_text != "Node" => {
                    self.problem(
                        line,
                        &format!("{p}.kind"),
                        "cordon and uncordon act on a Node",
                    );
                }
                KubeActionKind::RolloutRestart
                    if !matches!(
                        kind_text.as_str(),
                        "Deployment" | "StatefulSet" | "DaemonSet"
                    ) =>
                {
                    self.problem(
                        line,
                        &format!("{p}.kind"),
                        "rollout_restart acts on a Deployment, StatefulSet or DaemonSet",
                    );
                }
                _ => {}
            }
            let namespace = if kind_text == "Node" {
                None
            } else {
                Some(self.template(
                    k.namespace.as_deref().unwrap_or("default"),
                    line,
                    &format!("{p}.namespace"),
                ))
            };
            let patch = match &k.patch {
                Some(v) => match JsonTemplate::parse(v) {
                    Ok(t) => Some(t),
                    Err(m) => {
                        self.problem(line, &format!("{p}.patch"), m);
                        None
                    }
                },
                None => None,
            };
            return Some(ActionTemplate::Kubernetes(KubeTemplate {
                action: k.action,
                kind: Template::literal(&kind_text),
                namespace,
                name: self.template(name, line, &format!("{p}.name")),
                replicas: k
                    .replicas
                    .as_ref()
                    .map(|r| self.template(r, line, &format!("{p}.replicas"))),
                annotations: k
                    .annotations
                    .iter()
                    .map(|(key, v)| {
                        (
                            key.clone(),
                            self.template(v, line, &format!("{p}.annotations.{key}")),
                        )
                    })
                    .collect(),
                patch,
            }));
        }
        if let Some(n) = &s.nats_publish {
            let p = format!("{at}.nats_publish");
            if n.subject.trim().is_empty() {
                self.problem(line, &format!("{p}.subject"), "empty subject");
            }
            return Some(ActionTemplate::NatsPublish {
                subject: self.template(&n.subject, line, &format!("{p}.subject")),
                payload: self.template(
                    n.payload.as_deref().unwrap_or(""),
                    line,
                    &format!("{p}.payload"),
                ),
            });
        }
        if let Some(e) = &s.event {
            let p = format!("{at}.event");
            if e.kind.trim().is_empty() {
                self.problem(line, &format!("{p}.type"), "empty event type");
            }
            if e.kind.starts_with(crate::run::INCIDENT_PREFIX) {
                self.problem(
                    line,
                    &format!("{p}.type"),
                    "io.opsloop.incident.* events are the heal loop's own (approvals need an operator token)",
                );
            }
            let data =
                match JsonTemplate::parse(e.data.as_ref().unwrap_or(&serde_json::Value::Null)) {
                    Ok(t) => t,
                    Err(m) => {
                        self.problem(line, &format!("{p}.data"), m);
                        JsonTemplate::Scalar(serde_json::Value::Null)
                    }
                };
            return Some(ActionTemplate::Event {
                kind: self.template(&e.kind, line, &format!("{p}.type")),
                subject: e
                    .subject
                    .as_ref()
                    .map(|s| self.template(s, line, &format!("{p}.subject"))),
                data,
            });
        }
        None
    }

    fn url_template(&mut self, text: &str, line: u64, path: &str) -> Template {
        let t = self.template(text, line, path);
        if !(t.is_dynamic() || text.starts_with("http://") || text.starts_with("https://")) {
            self.problem(
                line,
                path,
                format!("{text:?} is not an http:// or https:// URL"),
            );
        }
        t
    }

    fn checks(&mut self, checks: &[Spanned<CheckSpec>], path: &str) -> Vec<Check> {
        let mut out = Vec::new();
        for (i, spanned) in checks.iter().enumerate() {
            let c = &spanned.value;
            let line = spanned.referenced.line();
            let at = format!("{path}[{i}]");
            let count = [
                c.http.is_some(),
                c.prometheus.is_some(),
                c.no_event.is_some(),
                c.exec.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if count != 1 {
                self.problem(
                    line,
                    &at,
                    format!("a check needs exactly one of http, prometheus, no_event, exec ({count} given)"),
                );
                continue;
            }
            if let Some(h) = &c.http {
                out.push(Check::Http {
                    url: self.url_template(&h.url, line, &format!("{at}.http.url")),
                    expect_status: h.expect_status,
                    body_contains: h
                        .body_contains
                        .as_ref()
                        .map(|b| self.template(b, line, &format!("{at}.http.body_contains"))),
                });
            } else if let Some(p) = &c.prometheus {
                let url = self.url_template(&p.url, line, &format!("{at}.prometheus.url"));
                let query = self.template(&p.query, line, &format!("{at}.prometheus.query"));
                if let Some(expect) = self.expr(&p.expect, &format!("{at}.prometheus.expect")) {
                    out.push(Check::Prometheus { url, query, expect });
                }
            } else if let Some(n) = &c.no_event {
                let pattern = match TypePattern::parse(&n.kind) {
                    Ok(p) => p,
                    Err(m) => {
                        self.problem(line, &format!("{at}.no_event.type"), m);
                        continue;
                    }
                };
                let condition = n
                    .condition
                    .as_ref()
                    .and_then(|x| self.expr(x, &format!("{at}.no_event.condition")));
                out.push(Check::NoEvent {
                    pattern,
                    condition,
                    quiet_for_ms: n.quiet_for.as_millis_i64(),
                });
            } else if let Some(x) = &c.exec {
                if x.command.is_empty() {
                    self.problem(line, &format!("{at}.exec.command"), "empty command");
                }
                self.env_names(&x.env, line, &format!("{at}.exec.env"));
                let command = x
                    .command
                    .iter()
                    .map(|t| self.template(t, line, &format!("{at}.exec.command")))
                    .collect();
                let allow_read = x
                    .allow_read
                    .iter()
                    .map(|t| self.path_template(t, line, &format!("{at}.exec.allow_read")))
                    .collect();
                if let Some(expect) = self.expr(&x.expect, &format!("{at}.exec.expect")) {
                    out.push(Check::Exec {
                        command,
                        allow_read,
                        env: x.env.clone(),
                        expect,
                    });
                }
            }
        }
        out
    }

    fn escalations(&mut self, list: &[Spanned<EscalateSpec>], path: &str) -> Vec<Escalation> {
        let mut out = Vec::new();
        for (i, spanned) in list.iter().enumerate() {
            let e = &spanned.value;
            let line = spanned.referenced.line();
            let at = format!("{path}[{i}]");
            let count = [
                e.webhook.is_some(),
                e.alertmanager.is_some(),
                e.event.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if count != 1 {
                self.problem(
                    line,
                    &at,
                    format!("an escalation needs exactly one of webhook, alertmanager, event ({count} given)"),
                );
                continue;
            }
            if let Some(w) = &e.webhook {
                out.push(Escalation::Webhook {
                    url: self.url_template(&w.url, line, &format!("{at}.webhook.url")),
                    headers: self.headers(&w.headers, line, &format!("{at}.webhook.headers")),
                });
            } else if let Some(w) = &e.alertmanager {
                out.push(Escalation::Alertmanager {
                    url: self.url_template(&w.url, line, &format!("{at}.alertmanager.url")),
                    headers: self.headers(&w.headers, line, &format!("{at}.alertmanager.headers")),
                });
            } else if let Some(ev) = &e.event {
                if ev.kind.trim().is_empty() {
                    self.problem(line, &format!("{at}.event.type"), "empty event type");
                }
                out.push(Escalation::Event {
                    kind: ev.kind.clone(),
                });
            }
        }
        out
    }

    fn playbook(&mut self, spanned: &Spanned<PlaybookSpec>, at: &str) -> Option<Playbook> {
        let before = self.problems.len();
        let s = &spanned.value;
        let line = spanned.referenced.line();
        if !valid_name(&s.name) || s.name.contains('_') {
            self.problem(
                line,
                &format!("{at}.name"),
                format!("{:?}: use [a-z0-9-], 1 to 63 characters", s.name),
            );
        }
        let type_line = s.trigger.types.referenced.line().max(line);
        let types_text = s.trigger.types.value.to_vec();
        if types_text.is_empty() {
            self.problem(type_line, &format!("{at}.trigger.type"), "no event type");
        }
        let mut types = Vec::new();
        for t in &types_text {
            match TypePattern::parse(t) {
                Ok(p) => types.push(p),
                Err(m) => self.problem(type_line, &format!("{at}.trigger.type"), m),
            }
        }
        let condition = s
            .trigger
            .condition
            .as_ref()
            .and_then(|c| self.expr(c, &format!("{at}.trigger.condition")));
        let key = s
            .key
            .as_ref()
            .and_then(|c| self.expr(c, &format!("{at}.key")));
        let target = s
            .target
            .as_ref()
            .and_then(|c| self.expr(c, &format!("{at}.target")));
        if s.threshold.count == 0 {
            self.problem(line, &format!("{at}.threshold.count"), "must be at least 1");
        }
        if s.threshold.within.get().is_zero() {
            self.problem(
                line,
                &format!("{at}.threshold.within"),
                "must be greater than zero",
            );
        }
        let g = &s.guardrails;
        if g.max_runs_per_hour == 0 {
            self.problem(
                line,
                &format!("{at}.guardrails.max_runs_per_hour"),
                "must be at least 1",
            );
        }
        if g.concurrency == 0 {
            self.problem(
                line,
                &format!("{at}.guardrails.concurrency"),
                "must be at least 1",
            );
        }
        if g.blast_radius.max_targets == 0 {
            self.problem(
                line,
                &format!("{at}.guardrails.blast_radius.max_targets"),
                "must be at least 1",
            );
        }
        if g.blast_radius.within.get().is_zero() {
            self.problem(
                line,
                &format!("{at}.guardrails.blast_radius.within"),
                "must be greater than zero",
            );
        }
        let mut vars = Vec::new();
        for (name, value) in &s.vars {
            if !valid_ident(name) {
                self.problem(
                    value.referenced.line(),
                    &format!("{at}.vars.{name}"),
                    "a var is read as `vars.NAME` in CEL; use [a-z_][a-z0-9_]*",
                );
            }
            let t = self.template(
                &value.value,
                value.referenced.line(),
                &format!("{at}.vars.{name}"),
            );
            vars.push((name.clone(), t));
        }
        if s.steps.is_empty() {
            self.problem(
                line,
                &format!("{at}.steps"),
                "a playbook needs at least one step",
            );
        }
        let steps = self.steps(&s.steps, &format!("{at}.steps"));
        let verify = match &s.verify {
            Some(v) => {
                if v.checks.is_empty() {
                    self.problem(line, &format!("{at}.verify.checks"), "no checks");
                }
                let interval = v.interval.map_or(Duration::from_secs(10), |d| d.get());
                if interval.is_zero() || v.deadline.get().is_zero() {
                    self.problem(
                        line,
                        &format!("{at}.verify"),
                        "deadline and interval must be greater than zero",
                    );
                }
                Some(Verify {
                    deadline: v.deadline.get(),
                    interval,
                    checks: self.checks(&v.checks, &format!("{at}.verify.checks")),
                })
            }
            None => None,
        };
        let (compensation, escalate) = match &s.on_failure {
            Some(f) => (
                self.steps(&f.steps, &format!("{at}.on_failure.steps")),
                self.escalations(&f.escalate, &format!("{at}.on_failure.escalate")),
            ),
            None => (Vec::new(), Vec::new()),
        };
        if self.problems.len() > before {
            return None;
        }
        Some(Playbook {
            name: s.name.clone(),
            description: s.description.clone(),
            origin: self.file.to_string(),
            line,
            types,
            condition,
            key,
            target,
            threshold: Threshold {
                count: s.threshold.count,
                within_ms: s.threshold.within.as_millis_i64(),
            },
            mode: s.mode,
            guardrails: Guardrails {
                cooldown_ms: g.cooldown.as_millis_i64(),
                max_runs_per_hour: g.max_runs_per_hour,
                concurrency: g.concurrency,
                blast_max_targets: g.blast_radius.max_targets,
                blast_within_ms: g.blast_radius.within.as_millis_i64(),
                skip_resolved: g.skip_resolved,
            },
            vars,
            steps,
            verify,
            compensation,
            escalate,
        })
    }
}

/// References CEL cannot check before running: `steps.X` needs an earlier step capturing
/// `X`, `vars.X` a var `X`; the trigger's expressions see only `event` and `env`.
fn reference_problems(p: &Playbook, at: &str) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    let vars: BTreeSet<&str> = p.vars.iter().map(|(n, _)| n.as_str()).collect();
    for (field, e) in [
        ("trigger.condition", &p.condition),
        ("key", &p.key),
        ("target", &p.target),
    ] {
        if let Some(e) = e {
            for id in e.identifiers() {
                if id == "steps" || id == "vars" {
                    out.push((
                        p.line,
                        format!("{at}.{field}"),
                        format!("`{id}` is not available here: a trigger sees `event` and `env`"),
                    ));
                }
            }
        }
    }
    let mut check = |exprs: Vec<&Expr>, captures: &BTreeSet<String>, line: u64, path: String| {
        for e in exprs {
            for f in e.fields_of("steps") {
                if !captures.contains(&f) {
                    out.push((
                        line,
                        path.clone(),
                        format!("steps.{f}: no earlier step has `capture: {f}`"),
                    ));
                }
            }
            for f in e.fields_of("vars") {
                if !vars.contains(f.as_str()) {
                    out.push((line, path.clone(), format!("vars.{f}: no such var")));
                }
            }
        }
    };
    let mut captures = BTreeSet::new();
    for (kind, steps) in [("steps", &p.steps), ("on_failure.steps", &p.compensation)] {
        for (i, step) in steps.iter().enumerate() {
            let mut exprs: Vec<&Expr> = step.when.iter().collect();
            for t in step.action.templates() {
                exprs.extend(t.exprs());
            }
            check(exprs, &captures, step.line, format!("{at}.{kind}[{i}]"));
            if let Some(c) = &step.capture {
                captures.insert(c.clone());
            }
        }
    }
    if let Some(v) = &p.verify {
        for (i, c) in v.checks.iter().enumerate() {
            let mut exprs: Vec<&Expr> = Vec::new();
            match c {
                Check::Http {
                    url, body_contains, ..
                } => {
                    exprs.extend(url.exprs());
                    exprs.extend(body_contains.iter().flat_map(|t| t.exprs()));
                }
                Check::Prometheus { url, query, expect } => {
                    exprs.extend(url.exprs().chain(query.exprs()));
                    exprs.push(expect);
                }
                Check::NoEvent { .. } => {}
                Check::Exec {
                    command,
                    allow_read,
                    expect,
                    ..
                } => {
                    exprs.extend(command.iter().chain(allow_read).flat_map(|t| t.exprs()));
                    exprs.push(expect);
                }
            }
            check(exprs, &captures, p.line, format!("{at}.verify.checks[{i}]"));
        }
    }
    out
}

fn compile(specs: &[SourcedSpec]) -> Result<PlaybookSet, LoadError> {
    let mut set = PlaybookSet::default();
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for (spec, origin, index) in specs {
        let at = format!("playbooks[{index}]");
        let mut checker = Checker {
            file: origin,
            problems: Vec::new(),
            secret_env: BTreeSet::new(),
            secret_files: BTreeSet::new(),
        };
        let name = spec.value.name.clone();
        let line = spec.referenced.line();
        if let Some((file, first)) = seen.get(&name) {
            checker.problem(
                line,
                &format!("{at}.name"),
                format!("duplicate playbook name {name:?} (first at {file}:{first})"),
            );
        } else {
            seen.insert(name, (origin.clone(), line));
        }
        let compiled = checker.playbook(spec, &at);
        if let Some(p) = &compiled {
            for (line, path, message) in reference_problems(p, &at) {
                checker.problem(line, &path, message);
            }
        }
        let checker_ok = checker.problems.is_empty();
        problems.extend(checker.problems);
        set.secret_env.extend(checker.secret_env);
        set.secret_files.extend(checker.secret_files);
        if let Some(p) = compiled
            && checker_ok
        {
            set.playbooks.push(Arc::new(p));
        }
    }
    if !problems.is_empty() {
        return Err(LoadError { problems });
    }
    for (i, p) in set.playbooks.iter().enumerate() {
        for t in &p.types {
            match t {
                TypePattern::Exact(k) => set.exact.entry(k.clone()).or_default().push(i),
                TypePattern::Prefix(k) => set.prefixes.push((k.clone(), i)),
            }
        }
    }
    Ok(set)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn valid_ident(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests;
