//! Defect audit of Kubernetes manifests: the runtime defects no linter checks (GOMAXPROCS
//! and GOMEMLIMIT against limits, JVM heaps, grace periods against preStop sleeps, probe
//! timing, HPAs and PDBs that cannot work, …) plus the checks the common linters share.
//!
//! Start with [`source::collect`] to read the inputs, then [`audit`] to get a [`Report`];
//! [`render`] prints it as text, JSON or SARIF. The pieces:
//!
//! - [`yaml`]: the positioned YAML tree (every field keeps its line) and parse errors.
//! - [`objects`]: Kubernetes objects, `kind: List`, pod templates, label selectors.
//! - [`checks`]: the checks, run over all objects of a run at once (cross-resource).
//! - [`catalog`]: every check's id, severity, why and fix.
//! - [`config`]: the audit config file (`disable:`) and suppression annotations.
//! - [`quantity`]: Kubernetes quantities, Go and JVM sizes, durations.

pub mod catalog;
pub mod checks;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod config;
pub mod jobs;
pub mod objects;
pub mod quantity;
pub mod render;
pub mod source;
pub mod yaml;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustc_hash::FxHashSet;
use serde::Serialize;

pub use catalog::Severity;
use config::{AuditConfig, IGNORE_ANNOTATION, IGNORE_REASON_ANNOTATION};
use objects::{Extracted, Object};
use source::Source;
use yaml::ParseError;

/// Kinds the audit knows (built-in kinds and the custom resources it resolves); any other
/// kind is counted as unknown, never an error.
const KNOWN_KINDS: &[&str] = &[
    "Pod",
    "PodTemplate",
    "ReplicationController",
    "Service",
    "Endpoints",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "Namespace",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "LimitRange",
    "ResourceQuota",
    "Node",
    "Event",
    "ComponentStatus",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ControllerRevision",
    "Job",
    "CronJob",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "PodSecurityPolicy",
    "Ingress",
    "IngressClass",
    "NetworkPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "StorageClass",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "CSIStorageCapacity",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "PriorityClass",
    "Lease",
    "CertificateSigningRequest",
    "EndpointSlice",
    "RuntimeClass",
    "FlowSchema",
    "PriorityLevelConfiguration",
    "APIService",
    "ServiceMonitor",
    "Prometheus",
    "PrometheusAgent",
    "Alertmanager",
    "ThanosRuler",
    "VirtualService",
    "Configuration",
    "Rollout",
    "DeploymentConfig",
];

/// What to audit with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Check ids not to run (from the config file and flags).
    pub disabled: FxHashSet<&'static str>,
}

impl Options {
    /// Options from a config file's content.
    pub fn from_config(config: &AuditConfig) -> Self {
        Options {
            disabled: config.disabled_checks().collect(),
        }
    }
}

/// The object a finding is about.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ObjectRef {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Line of the object's first field.
    pub line: u32,
}

impl ObjectRef {
    fn of(object: &Object<'_>) -> Self {
        ObjectRef {
            api_version: object.api_version.clone(),
            kind: object.kind.clone(),
            name: object.name.clone(),
            namespace: object.namespace.clone(),
            line: object.line,
        }
    }

    /// `Kind namespace/name`.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {}/{}", self.kind, ns, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// One finding.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// The check's id.
    pub check: &'static str,
    /// Its severity.
    pub severity: Severity,
    /// The input file (as given).
    pub file: String,
    /// Index of the file in [`Report::files`].
    #[serde(skip)]
    pub file_index: usize,
    /// 1-based line of the offending field.
    pub line: u32,
    /// The offending field's path inside the object (`spec.template.spec.containers[web]
    /// .resources.limits`), empty when the finding points at the object itself. Unlike the
    /// line it survives edits elsewhere in the file, so it identifies a finding across runs.
    #[serde(skip)]
    pub field: String,
    /// The object.
    pub object: ObjectRef,
    /// The container, for container-level findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// What is wrong, with the values involved.
    pub message: String,
    /// Why it matters (from the catalogue).
    pub why: &'static str,
    /// How to fix it (from the catalogue).
    pub fix: &'static str,
}

/// A finding suppressed by an `opsloop.dev/ignore` annotation.
#[derive(Clone, Debug, Serialize)]
pub struct Suppressed {
    /// The finding.
    #[serde(flatten)]
    pub finding: Finding,
    /// The `opsloop.dev/ignore-reason`, when given.
    pub reason: Option<String>,
}

/// An input that could not be (fully) read.
#[derive(Clone, Debug, Serialize)]
pub struct InputError {
    /// The input file.
    pub file: String,
    /// Index of the file in [`Report::files`].
    #[serde(skip)]
    pub file_index: usize,
    /// 1-based line (0 when the file could not be read at all).
    pub line: u32,
    /// 1-based column (0 when unknown).
    pub column: u32,
    /// What is wrong.
    pub message: String,
}

/// Something about the run the user should know that is not a finding (an ignore
/// annotation naming an unknown check, one without a reason).
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    /// The input file.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// What is off.
    pub message: String,
}

/// One input file's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct FileSummary {
    /// The path as given.
    pub path: String,
    /// Documents parsed (empty ones not counted).
    pub documents: usize,
    /// Kubernetes objects found (`List` items counted one by one).
    pub objects: usize,
    /// Whether every document parsed.
    pub parsed: bool,
    /// Why the file could not be read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_error: Option<String>,
}

/// Counts for the whole run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Input files.
    pub files: usize,
    /// Files with at least one document that could not be parsed, or unreadable.
    pub files_with_errors: usize,
    /// Documents parsed.
    pub documents: usize,
    /// Documents that are no Kubernetes object (no kind/apiVersion).
    pub not_objects: usize,
    /// Objects audited.
    pub objects: usize,
    /// Objects per kind.
    pub kinds: BTreeMap<String, usize>,
    /// Objects of kinds the audit does not know (audited by the generic checks only).
    pub unknown_kinds: BTreeMap<String, usize>,
    /// Findings reported.
    pub findings: usize,
    /// Findings by severity.
    pub by_severity: BTreeMap<&'static str, usize>,
    /// Findings suppressed by annotations.
    pub suppressed: usize,
}

/// The outcome of one audit run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Counts.
    pub summary: Summary,
    /// Findings, by file, line and check.
    pub findings: Vec<Finding>,
    /// Inputs that could not be read or parsed, each with file and line.
    pub errors: Vec<InputError>,
    /// Findings suppressed by annotations.
    pub suppressed: Vec<Suppressed>,
    /// Remarks on suppression annotations.
    pub notices: Vec<Notice>,
    /// Every input, parsed or not.
    pub files: Vec<FileSummary>,
}

impl Report {
    /// The worst severity found, if any finding.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Whether any input could not be read at all.
    pub fn has_read_errors(&self) -> bool {
        self.files.iter().any(|f| f.read_error.is_some())
    }
}

/// What one input turned into.
struct ParsedFile<'a> {
    objects: Vec<Object<'a>>,
    documents: usize,
    not_objects: usize,
    errors: Vec<ParseError>,
}

fn parse_source(file: usize, bytes: &[u8]) -> ParsedFile<'_> {
    let text = match yaml::decode(bytes) {
        Ok(text) => text,
        Err(e) => {
            return ParsedFile {
                objects: Vec::new(),
                documents: 0,
                not_objects: 0,
                errors: vec![e],
            };
        }
    };
    let parsed = yaml::parse(text);
    let documents = parsed.documents.len();
    let mut objects = Vec::new();
    let mut not_objects = 0;
    for document in parsed.documents {
        match objects::extract(file, document) {
            Extracted::Objects(found) => objects.extend(found),
            Extracted::NotAnObject => not_objects += 1,
        }
    }
    ParsedFile {
        objects,
        documents,
        not_objects,
        errors: parsed.errors,
    }
}

/// Parses every source, on all cores.
fn parse_all<'a>(sources: &'a [Source], on_file: &(dyn Fn() + Sync)) -> Vec<ParsedFile<'a>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(sources.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, ParsedFile<'a>)>> =
        Mutex::new(Vec::with_capacity(sources.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(source) = sources.get(index) else {
                        break;
                    };
                    let parsed = match &source.bytes {
                        Ok(bytes) => parse_source(index, bytes),
                        Err(_) => ParsedFile {
                            objects: Vec::new(),
                            documents: 0,
                            not_objects: 0,
                            errors: Vec::new(),
                        },
                    };
                    on_file();
                    local.push((index, parsed));
                }
                if let Ok(mut all) = results.lock() {
                    all.extend(local);
                }
            });
        }
    });
    let mut all = results.into_inner().unwrap_or_else(|e| e.into_inner());
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, parsed)| parsed).collect()
}

/// Audits the sources: every check over all objects of all inputs together.
pub fn audit(sources: &[Source], options: &Options) -> Report {
    audit_with_progress(sources, options, &|| {})
}

/// [`audit`], calling `on_file` after each input is parsed (for a progress bar).
pub fn audit_with_progress(
    sources: &[Source],
    options: &Options,
    on_file: &(dyn Fn() + Sync),
) -> Report {
    let parsed = parse_all(sources, on_file);
    let mut summary = Summary {
        files: sources.len(),
        ..Summary::default()
    };
    let mut files = Vec::with_capacity(sources.len());
    let mut errors = Vec::new();
    let mut objects: Vec<Object<'_>> = Vec::new();
    for (index, (source, parsed)) in sources.iter().zip(parsed).enumerate() {
        let read_error = source.bytes.as_ref().err().cloned();
        if let Some(message) = &read_error {
            errors.push(InputError {
                file: source.name.clone(),
                file_index: index,
                line: 0,
                column: 0,
                message: format!("cannot read: {message}"),
            });
        }
        for error in &parsed.errors {
            errors.push(InputError {
                file: source.name.clone(),
                file_index: index,
                line: error.line,
                column: error.column,
                message: error.message.clone(),
            });
        }
        if read_error.is_some() || !parsed.errors.is_empty() {
            summary.files_with_errors += 1;
        }
        summary.documents += parsed.documents;
        summary.not_objects += parsed.not_objects;
        files.push(FileSummary {
            path: source.name.clone(),
            documents: parsed.documents,
            objects: parsed.objects.len(),
            parsed: read_error.is_none() && parsed.errors.is_empty(),
            read_error,
        });
        objects.extend(parsed.objects.into_iter().map(|mut object| {
            object.names_only = source.names_only;
            object
        }));
    }
    summary.objects = objects.len();
    for object in &objects {
        *summary.kinds.entry(object.kind.clone()).or_default() += 1;
        if !KNOWN_KINDS.contains(&object.kind.as_str()) {
            *summary
                .unknown_kinds
                .entry(object.kind.clone())
                .or_default() += 1;
        }
    }

    let mut notices = Vec::new();
    let ignores: Vec<Ignore> = objects
        .iter()
        .map(|o| Ignore::of(o, sources, &mut notices))
        .collect();

    let mut findings = Vec::new();
    let mut suppressed = Vec::new();
    for raw in checks::run_all(&objects) {
        if options.disabled.contains(raw.check.id) {
            continue;
        }
        let Some(object) = objects.get(raw.object) else {
            continue;
        };
        let finding = Finding {
            check: raw.check.id,
            severity: raw.check.severity,
            file: sources
                .get(object.file)
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            file_index: object.file,
            line: raw.line,
            field: field_at(&object.node, raw.line),
            object: ObjectRef::of(object),
            container: raw.container,
            message: raw.message,
            why: raw.check.why,
            fix: raw.check.fix,
        };
        match ignores.get(raw.object).filter(|i| i.covers(raw.check.id)) {
            Some(ignore) => suppressed.push(Suppressed {
                finding,
                reason: ignore.reason.clone(),
            }),
            None => findings.push(finding),
        }
    }
    findings.sort_by(|a, b| {
        (a.file_index, a.line, a.check, &a.container).cmp(&(
            b.file_index,
            b.line,
            b.check,
            &b.container,
        ))
    });
    findings.dedup_by(|a, b| {
        a.file_index == b.file_index
            && a.line == b.line
            && a.check == b.check
            && a.container == b.container
            && a.message == b.message
    });
    summary.findings = findings.len();
    summary.suppressed = suppressed.len();
    for severity in [Severity::Error, Severity::Warning, Severity::Info] {
        summary.by_severity.insert(
            severity.as_str(),
            findings.iter().filter(|f| f.severity == severity).count(),
        );
    }
    Report {
        summary,
        findings,
        errors,
        suppressed,
        notices,
        files,
    }
}

/// The path of the deepest field of `node` whose key sits on `line` (the first in source
/// order when several share it); empty when none does. Sequence items are named by their
/// `name` when they have one (containers, ports, env), else by index.
fn field_at(node: &yaml::Node<'_>, line: u32) -> String {
    fn walk(node: &yaml::Node<'_>, line: u32, path: &mut Vec<String>, best: &mut Vec<String>) {
        match &node.value {
            yaml::Value::Map(entries) => {
                for entry in entries {
                    // Entries start in order: nothing at or after a key below `line` can
                    // sit on it.
                    if entry.key_line > line {
                        break;
                    }
                    path.push(entry.key.to_string());
                    if entry.key_line == line && path.len() > best.len() {
                        best.clone_from(path);
                    }
                    walk(&entry.value, line, path, best);
                    path.pop();
                }
            }
            yaml::Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if item.line > line {
                        break;
                    }
                    let segment = item
                        .get("name")
                        .and_then(yaml::Node::as_str)
                        .map_or_else(|| format!("[{i}]"), |name| format!("[{name}]"));
                    // The item's segment joins its sequence's key: `containers[web]`.
                    let Some(last) = path.last_mut() else {
                        continue;
                    };
                    let keep = last.len();
                    last.push_str(&segment);
                    walk(item, line, path, best);
                    if let Some(last) = path.last_mut() {
                        last.truncate(keep);
                    }
                }
            }
            yaml::Value::Scalar(..) => {}
        }
    }
    let mut best = Vec::new();
    walk(node, line, &mut Vec::new(), &mut best);
    best.join(".")
}

/// An object's `opsloop.dev/ignore` annotation, parsed.
struct Ignore {
    ids: Vec<String>,
    reason: Option<String>,
}

impl Ignore {
    fn of(object: &Object<'_>, sources: &[Source], notices: &mut Vec<Notice>) -> Ignore {
        let Some(value) = object.annotation(IGNORE_ANNOTATION) else {
            return Ignore {
                ids: Vec::new(),
                reason: None,
            };
        };
        let file = sources
            .get(object.file)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let line = object.line_of(&["metadata", "annotations", IGNORE_ANNOTATION]);
        let ids: Vec<String> = value
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect();
        for id in &ids {
            if catalog::find(id).is_none() {
                notices.push(Notice {
                    file: file.clone(),
                    line,
                    message: format!(
                        "{}: {IGNORE_ANNOTATION} names `{id}`, which is no check id",
                        object.display()
                    ),
                });
            }
        }
        let reason = object
            .annotation(IGNORE_REASON_ANNOTATION)
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        if reason.is_none() {
            notices.push(Notice {
                file,
                line,
                message: format!(
                    "{}: {IGNORE_ANNOTATION} without {IGNORE_REASON_ANNOTATION}",
                    object.display()
                ),
            });
        }
        Ignore { ids, reason }
    }

    fn covers(&self, id: &str) -> bool {
        self.ids.iter().any(|i| i == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, text: &str) -> Source {
        Source {
            name: name.to_string(),
            bytes: Ok(text.as_bytes().to_vec()),
            names_only: false,
        }
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  hostNetwork: true\n  containers: [{name: c, image: x:1}]\n";

    #[test]
    fn broken_files_are_reported_and_the_rest_audited() {
        let sources = vec![
            source("bad.yaml", "kind: Pod\nmetadata:\n\tname: x\n"),
            source("good.yaml", POD),
            Source {
                name: "gone.yaml".to_string(),
                bytes: Err("No such file".to_string()),
                names_only: false,
            },
        ];
        let report = audit(&sources, &Options::default());
        assert_eq!(report.errors.len(), 2);
        assert_eq!(report.errors[0].file, "bad.yaml");
        assert_eq!(report.errors[0].line, 3);
        assert!(report.findings.iter().any(|f| f.check == "host-network"));
        assert_eq!(report.summary.files_with_errors, 2);
        assert!(report.has_read_errors());
    }

    #[test]
    fn annotation_suppresses_with_reason() {
        let text = POD.replace(
            "  name: p\n",
            "  name: p\n  annotations:\n    opsloop.dev/ignore: \"host-network, no-such-check\"\n    opsloop.dev/ignore-reason: node agent\n",
        );
        let report = audit(&[source("p.yaml", &text)], &Options::default());
        assert!(!report.findings.iter().any(|f| f.check == "host-network"));
        assert_eq!(report.suppressed.len(), 1);
        assert_eq!(report.suppressed[0].reason.as_deref(), Some("node agent"));
        assert_eq!(report.notices.len(), 1);
        assert!(report.notices[0].message.contains("no-such-check"));
    }

    #[test]
    fn disabled_checks_do_not_report() {
        let mut options = Options::default();
        options.disabled.insert("host-network");
        let report = audit(&[source("p.yaml", POD)], &options);
        assert!(!report.findings.iter().any(|f| f.check == "host-network"));
    }

    #[test]
    fn cross_resource_resolution_spans_files() {
        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: x:1}]\n";
        let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n";
        let report = audit(
            &[source("d.yaml", deployment), source("s.yaml", service)],
            &Options::default(),
        );
        assert!(
            !report
                .findings
                .iter()
                .any(|f| f.check == "service-selects-nothing")
        );
        let alone = audit(&[source("s.yaml", service)], &Options::default());
        assert!(
            alone
                .findings
                .iter()
                .any(|f| f.check == "service-selects-nothing")
        );
    }

    #[test]
    fn findings_name_their_field_independently_of_the_line() {
        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      hostNetwork: true\n      containers:\n        - name: app\n          image: x:1\n";
        let field = |text: &str, check: &str| {
            let report = audit(&[source("d.yaml", text)], &Options::default());
            let found = report.findings.iter().find(|f| f.check == check).unwrap();
            (found.line, found.field.clone())
        };
        let (line, path) = field(deployment, "host-network");
        assert_eq!(path, "spec.template.spec.hostNetwork");
        let moved = field(&format!("# a comment\n\n{deployment}"), "host-network");
        assert_eq!(moved, (line + 2, path));
        let (_, image) = field(deployment, "privilege-escalation-allowed");
        assert!(
            image.starts_with("spec.template.spec.containers[app]"),
            "{image}"
        );
    }

    #[test]
    fn unknown_kinds_are_counted() {
        let report = audit(
            &[source(
                "x.yaml",
                "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\nfoo: bar\n",
            )],
            &Options::default(),
        );
        assert_eq!(report.summary.unknown_kinds.get("Widget"), Some(&1));
        assert_eq!(report.summary.not_objects, 1);
        assert!(report.errors.is_empty());
    }
}
