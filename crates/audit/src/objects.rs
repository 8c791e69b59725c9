//! Kubernetes objects found in parsed documents: identity (kind, name, namespace), `kind:
//! List` expansion, where each workload kind keeps its pod template, containers, and
//! label-selector matching. Knows shapes, not rules: the checks live in [`crate::checks`].

use crate::yaml::{Node, Value};

/// One Kubernetes object from an input file.
#[derive(Debug)]
pub struct Object<'a> {
    /// Index of the input file in the run.
    pub file: usize,
    /// Line of the object's first field (`apiVersion:` usually).
    pub line: u32,
    /// `apiVersion` as written.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name` (or `generateName`), empty when missing.
    pub name: String,
    /// `metadata.namespace` when set.
    pub namespace: Option<String>,
    /// The whole object.
    pub node: Node<'a>,
    /// Read without its values (see [`crate::source::Source::names_only`]): only its
    /// identity can be checked.
    pub names_only: bool,
}

/// What a document turned out to be.
#[derive(Debug)]
pub enum Extracted<'a> {
    /// One or more objects (a `List` gives its items).
    Objects(Vec<Object<'a>>),
    /// A document that is no Kubernetes object (no `kind`/`apiVersion`): counted, skipped.
    NotAnObject,
}

/// Reads the objects out of one parsed document.
pub fn extract(file: usize, document: Node<'_>) -> Extracted<'_> {
    let Some(kind) = document.get("kind").and_then(Node::as_str) else {
        return Extracted::NotAnObject;
    };
    if document.get("apiVersion").and_then(Node::as_str).is_none() {
        return Extracted::NotAnObject;
    }
    if kind == "List" || (kind.ends_with("List") && document.get("items").is_some()) {
        let items = match document.value {
            Value::Map(entries) => entries
                .into_iter()
                .find(|e| e.key == "items")
                .map(|e| e.value),
            _ => None,
        };
        let objects = match items.map(|n| n.value) {
            Some(Value::Seq(items)) => items
                .into_iter()
                .filter_map(|item| match extract(file, item) {
                    Extracted::Objects(objects) => Some(objects),
                    Extracted::NotAnObject => None,
                })
                .flatten()
                .collect(),
            _ => Vec::new(),
        };
        return Extracted::Objects(objects);
    }
    let kind = kind.to_string();
    let api_version = document
        .get("apiVersion")
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_string();
    let metadata = document.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_string();
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Node::as_str)
        .map(str::to_string);
    Extracted::Objects(vec![Object {
        file,
        line: document.line,
        api_version,
        kind,
        name,
        namespace,
        node: document,
        names_only: false,
    }])
}

/// A pod template inside an object: its labels and its pod spec.
#[derive(Clone, Copy, Debug)]
pub struct PodTemplate<'n, 'a> {
    /// The template's `metadata` (labels, annotations), when present.
    pub metadata: Option<&'n Node<'a>>,
    /// The pod spec.
    pub spec: &'n Node<'a>,
}

impl<'n, 'a> PodTemplate<'n, 'a> {
    /// The pod labels (a mapping node), when present.
    pub fn labels(&self) -> Option<&'n Node<'a>> {
        self.metadata.and_then(|m| m.get("labels"))
    }

    /// The containers, init containers included.
    pub fn containers(&self) -> impl Iterator<Item = Container<'n, 'a>> + use<'n, 'a> {
        let spec = self.spec;
        let regular = spec
            .get("containers")
            .map(Node::items)
            .unwrap_or_default()
            .iter()
            .map(|node| Container { node, init: false });
        let init = spec
            .get("initContainers")
            .map(Node::items)
            .unwrap_or_default()
            .iter()
            .map(|node| Container { node, init: true });
        regular.chain(init)
    }

    /// The regular (not init) containers.
    pub fn app_containers(&self) -> impl Iterator<Item = Container<'n, 'a>> + use<'n, 'a> {
        self.containers().filter(|c| !c.init)
    }
}

/// A container of a pod spec.
#[derive(Clone, Copy, Debug)]
pub struct Container<'n, 'a> {
    /// The container's mapping.
    pub node: &'n Node<'a>,
    /// Whether it is an init container.
    pub init: bool,
}

impl<'n, 'a> Container<'n, 'a> {
    /// The container's name.
    pub fn name(&self) -> &'n str {
        self.node
            .get("name")
            .and_then(Node::as_str)
            .unwrap_or("<unnamed>")
    }

    /// The line to report for a missing field: the container's `- name:` line.
    pub fn line(&self) -> u32 {
        self.node
            .entry("name")
            .map_or(self.node.line, |e| e.key_line)
    }

    /// A resource quantity's text: `section` is `requests` or `limits`.
    pub fn resource(&self, section: &str, resource: &str) -> Option<&'n Node<'a>> {
        self.node
            .path(&["resources", section, resource])
            .filter(|n| !n.is_null())
    }

    /// A resource request, defaulted from the limit the way the API server does.
    pub fn effective_request(&self, resource: &str) -> Option<&'n Node<'a>> {
        self.resource("requests", resource)
            .or_else(|| self.resource("limits", resource))
    }

    /// The `env` entries.
    pub fn env(&self) -> &'n [Node<'a>] {
        self.node.get("env").map(Node::items).unwrap_or_default()
    }

    /// The literal value of env var `name`, with the line of its `value:`.
    pub fn env_value(&self, name: &str) -> Option<(&'n str, u32)> {
        self.env().iter().rev().find_map(|e| {
            if e.get("name").and_then(Node::as_str) != Some(name) {
                return None;
            }
            let entry = e.entry("value")?;
            Some((entry.value.as_str()?, entry.key_line))
        })
    }

    /// Whether the container declares port `port` (a number, or a port name).
    pub fn declares_port(&self, port: &Node<'_>) -> bool {
        let ports = self.node.get("ports").map(Node::items).unwrap_or_default();
        match port.as_i64() {
            // A container that declares no ports at all just does not list them; a number
            // is only suspicious when the list exists and lacks it.
            Some(number) => {
                ports.is_empty()
                    || ports
                        .iter()
                        .any(|p| p.get("containerPort").and_then(Node::as_i64) == Some(number))
            }
            None => {
                let Some(name) = port.as_str() else {
                    return true;
                };
                ports
                    .iter()
                    .any(|p| p.get("name").and_then(Node::as_str) == Some(name))
            }
        }
    }

    /// The security context value `field` of the container, else of the pod.
    pub fn security<'p>(&self, pod: &'p Node<'a>, field: &str) -> Option<&'p Node<'a>>
    where
        'n: 'p,
    {
        self.node
            .path(&["securityContext", field])
            .filter(|n| !n.is_null())
            .or_else(|| {
                pod.path(&["securityContext", field])
                    .filter(|n| !n.is_null())
            })
    }
}

impl<'a> Object<'a> {
    /// The API group (`apps`, `` for core).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// `Kind namespace/name` for messages.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {}/{}", self.kind, ns, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// The object's `metadata.labels`.
    pub fn labels(&self) -> Option<&Node<'a>> {
        self.node.path(&["metadata", "labels"])
    }

    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.node
            .path(&["metadata", "annotations", key])
            .and_then(Node::as_str)
    }

    /// The field's line, or the object's line when the field is missing.
    pub fn line_of(&self, path: &[&str]) -> u32 {
        let Some((last, parents)) = path.split_last() else {
            return self.line;
        };
        self.node
            .path(parents)
            .and_then(|n| n.entry(last))
            .map_or(self.line, |e| e.key_line)
    }

    /// Whether the object is a workload with a pod template (Deployments and friends, Pods,
    /// CronJobs, Knative Services, Argo Rollouts).
    pub fn pod_template(&self) -> Option<PodTemplate<'_, 'a>> {
        let node = &self.node;
        let group = self.group();
        let template_path: &[&str] = match self.kind.as_str() {
            "Pod" if group.is_empty() => &[],
            "PodTemplate" if group.is_empty() => &["template"],
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
                if matches!(group, "apps" | "extensions") =>
            {
                &["spec", "template"]
            }
            "ReplicationController" if group.is_empty() => &["spec", "template"],
            "Job" if group == "batch" => &["spec", "template"],
            "CronJob" if group == "batch" => &["spec", "jobTemplate", "spec", "template"],
            "Service" | "Configuration" if group == "serving.knative.dev" => &["spec", "template"],
            "Rollout" if group == "argoproj.io" => &["spec", "template"],
            "DeploymentConfig" if matches!(group, "apps.openshift.io" | "") => {
                &["spec", "template"]
            }
            _ => return None,
        };
        let template = node.path(template_path)?;
        let metadata = template.get("metadata");
        let spec = template.get("spec")?;
        matches!(spec.value, Value::Map(_)).then_some(PodTemplate { metadata, spec })
    }

    /// The workload's replica count as written (`spec.replicas`), None when unset or not a
    /// replicated kind.
    pub fn replicas(&self) -> Option<i64> {
        self.node.path(&["spec", "replicas"]).and_then(Node::as_i64)
    }

    /// Whether the kind runs a replica count (Deployment, StatefulSet, ReplicaSet, ...).
    pub fn is_replicated(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "Deployment"
                | "StatefulSet"
                | "ReplicaSet"
                | "ReplicationController"
                | "Rollout"
                | "DeploymentConfig"
        )
    }
}

/// Whether objects in namespaces `a` and `b` can refer to one another: equal, or either
/// unset (manifests applied with `-n`).
pub fn same_namespace(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Whether a plain label map (Service, ReplicationController selector) matches `labels`.
/// An empty map matches nothing here: such a Service has no selector.
pub fn map_selector_matches(selector: &Node<'_>, labels: Option<&Node<'_>>) -> bool {
    let entries = selector.entries();
    !entries.is_empty()
        && entries
            .iter()
            .all(|e| labels.and_then(|l| l.get(&e.key)).and_then(Node::as_str) == e.value.as_str())
}

/// Whether a `LabelSelector` (`matchLabels` + `matchExpressions`) matches `labels`. An
/// empty selector matches everything, as the API defines it.
pub fn label_selector_matches(selector: &Node<'_>, labels: Option<&Node<'_>>) -> bool {
    let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Node::as_str);
    let match_labels = selector
        .get("matchLabels")
        .map(Node::entries)
        .unwrap_or_default();
    if !match_labels
        .iter()
        .all(|e| label(&e.key) == e.value.as_str())
    {
        return false;
    }
    let expressions = selector
        .get("matchExpressions")
        .map(Node::items)
        .unwrap_or_default();
    expressions.iter().all(|expression| {
        let Some(key) = expression.get("key").and_then(Node::as_str) else {
            return false;
        };
        let values = expression
            .get("values")
            .map(Node::items)
            .unwrap_or_default();
        let value = label(key);
        let in_values = value.is_some_and(|v| values.iter().any(|x| x.as_str() == Some(v)));
        match expression.get("operator").and_then(Node::as_str) {
            Some("In") => in_values,
            Some("NotIn") => !in_values,
            Some("Exists") => value.is_some(),
            Some("DoesNotExist") => value.is_none(),
            _ => false,
        }
    })
}

/// Whether a selector node is a `LabelSelector` (has `matchLabels`/`matchExpressions`) or
/// is empty.
pub fn is_label_selector(selector: &Node<'_>) -> bool {
    selector.get("matchLabels").is_some()
        || selector.get("matchExpressions").is_some()
        || selector.entries().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn objects(text: &str) -> Vec<Object<'_>> {
        let parsed = parse(text);
        parsed
            .documents
            .into_iter()
            .flat_map(|d| match extract(0, d) {
                Extracted::Objects(o) => o,
                Extracted::NotAnObject => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn list_items_become_objects() {
        let objs = objects(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: a\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata:\n    name: b\n    namespace: x\n",
        );
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].kind, "Service");
        assert_eq!(objs[0].line, 4);
        assert_eq!(objs[1].display(), "Deployment x/b");
    }

    #[test]
    fn not_an_object() {
        let parsed = parse("replicaCount: 3\n");
        let doc = parsed.documents.into_iter().next().unwrap();
        assert!(matches!(extract(0, doc), Extracted::NotAnObject));
    }

    #[test]
    fn pod_templates_by_kind() {
        let objs = objects(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        metadata: {labels: {a: b}}\n        spec:\n          containers: [{name: x}]\n",
        );
        let template = objs[0].pod_template().unwrap();
        assert_eq!(template.containers().count(), 1);
        assert_eq!(
            template.labels().unwrap().get("a").unwrap().as_str(),
            Some("b")
        );
    }

    #[test]
    fn selectors() {
        let parsed = parse(
            "labels: {app: web, tier: fe}\nsel1: {matchLabels: {app: web}, matchExpressions: [{key: tier, operator: In, values: [fe, be]}]}\nsel2: {matchExpressions: [{key: tier, operator: DoesNotExist}]}\nmap: {app: web}\nempty: {}\n",
        );
        let doc = &parsed.documents[0];
        let labels = doc.get("labels");
        assert!(label_selector_matches(doc.get("sel1").unwrap(), labels));
        assert!(!label_selector_matches(doc.get("sel2").unwrap(), labels));
        assert!(map_selector_matches(doc.get("map").unwrap(), labels));
        assert!(!map_selector_matches(doc.get("empty").unwrap(), labels));
        assert!(label_selector_matches(doc.get("empty").unwrap(), labels));
    }
}
