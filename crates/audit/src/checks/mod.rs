//! The checks, run over every object of one run at once so cross-resource checks see all
//! inputs. [`Context`] is the run's index (workloads, kinds, names, pod and Service labels,
//! HPA targets), so resolving a reference or a selector costs the objects it may match,
//! not every object of the run; each submodule owns one family of checks and reports
//! through a [`Sink`].
//!
//! - [`runtime`]: Go and JVM knobs against limits, grace period against preStop.
//! - [`probes`]: probe timing, identical probes, probe ports, readiness behind a Service.
//! - [`scaling`]: HPA, PDB and Knative autoscaling.
//! - [`network`]: Service, ServiceMonitor and Istio routes.
//! - [`workload`]: per-container hygiene the common linters share, selectors, jobs.
//! - [`api`]: deprecated and removed API versions.
//! - [`rbac`]: wildcards, cluster-admin, secrets and exec.

pub mod api;
pub mod network;
pub mod probes;
pub mod rbac;
pub mod runtime;
pub mod scaling;
pub mod workload;

#[cfg(test)]
mod fixture_tests;

use std::borrow::Cow;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::catalog::Check;
use crate::objects::{
    Container, Object, PodTemplate, label_selector_matches, map_selector_matches, same_namespace,
};
use crate::yaml::{Entry, Node, Value};

/// A finding before suppression: the object is an index into the run's objects.
#[derive(Debug, Clone)]
pub struct RawFinding {
    /// The check that fired.
    pub check: &'static Check,
    /// Index of the object in the run.
    pub object: usize,
    /// 1-based line of the offending field.
    pub line: u32,
    /// The container concerned, when there is one.
    pub container: Option<String>,
    /// What exactly is wrong, with the values involved.
    pub message: String,
}

/// Collects findings.
#[derive(Debug, Default)]
pub struct Sink {
    /// Findings so far.
    pub findings: Vec<RawFinding>,
}

impl Sink {
    /// Records a finding on an object.
    pub fn object(&mut self, check: &'static Check, object: usize, line: u32, message: String) {
        self.findings.push(RawFinding {
            check,
            object,
            line,
            container: None,
            message,
        });
    }

    /// Records a finding on a container.
    pub fn container(
        &mut self,
        check: &'static Check,
        object: usize,
        container: &Container<'_, '_>,
        line: u32,
        message: String,
    ) {
        self.findings.push(RawFinding {
            check,
            object,
            line,
            container: Some(container.name().to_string()),
            message,
        });
    }
}

/// A pod selector as the selecting kind writes it.
#[derive(Clone, Copy)]
pub enum PodSelector<'n, 'a> {
    /// A plain label map (Service, ReplicationController): empty selects nothing.
    Map(&'n Node<'a>),
    /// A `LabelSelector` (`matchLabels` + `matchExpressions`): empty selects everything.
    Label(&'n Node<'a>),
}

impl<'n, 'a> PodSelector<'n, 'a> {
    fn matches(self, labels: Option<&Node<'_>>) -> bool {
        match self {
            PodSelector::Map(selector) => map_selector_matches(selector, labels),
            PodSelector::Label(selector) => label_selector_matches(selector, labels),
        }
    }

    /// A `key=value` every matching label set must carry, to look candidates up by.
    fn required_label(self) -> Option<(&'n str, &'n str)> {
        let entries = match self {
            PodSelector::Map(selector) => selector.entries(),
            PodSelector::Label(selector) => selector
                .get("matchLabels")
                .map(Node::entries)
                .unwrap_or_default(),
        };
        entries
            .iter()
            .find_map(|e| e.value.as_str().map(|v| (e.key.as_ref(), v)))
    }
}

/// `label key, label value` → positions (ascending) of what carries that label.
type LabelIndex = FxHashMap<(String, String), Vec<usize>>;

fn index_labels(index: &mut LabelIndex, position: usize, labels: Option<&Node<'_>>) {
    for entry in labels.map(Node::entries).unwrap_or_default() {
        if let Some(value) = entry.value.as_str() {
            index
                .entry((entry.key.to_string(), value.to_string()))
                .or_default()
                .push(position);
        }
    }
}

/// The run's objects and the lookups the checks share.
pub struct Context<'r, 'a> {
    /// Every object of the run.
    pub objects: &'r [Object<'a>],
    /// Objects with a pod template.
    pub workloads: Vec<usize>,
    by_kind: FxHashMap<&'r str, Vec<usize>>,
    /// `(kind, name)` → objects, in input order (namespaces are checked on lookup).
    by_name: FxHashMap<(&'r str, &'r str), Vec<usize>>,
    /// Workload index → the HPA that targets it.
    hpa_of: FxHashMap<usize, usize>,
    /// Objects whose pods carry labels, with those labels: workloads (their template's
    /// labels) and operator resources that make pods (Prometheus, Alertmanager, …).
    pod_labels: Vec<(usize, Node<'a>)>,
    /// Pod labels → positions in `pod_labels`.
    pod_label_index: LabelIndex,
    /// Core Services, in input order.
    services: Vec<usize>,
    /// Service `metadata.labels` → positions in `services`.
    service_label_index: LabelIndex,
    /// Namespaces that hold at least one core Service.
    service_namespaces: FxHashSet<&'r str>,
}

impl<'r, 'a> Context<'r, 'a> {
    /// Indexes the run's objects.
    pub fn new(objects: &'r [Object<'a>]) -> Self {
        let mut by_kind: FxHashMap<&'r str, Vec<usize>> = FxHashMap::default();
        let mut by_name: FxHashMap<(&'r str, &'r str), Vec<usize>> = FxHashMap::default();
        let mut workloads = Vec::new();
        let mut pod_labels = Vec::new();
        let mut pod_label_index = LabelIndex::default();
        let mut services = Vec::new();
        let mut service_label_index = LabelIndex::default();
        let mut service_namespaces = FxHashSet::default();
        for (i, object) in objects.iter().enumerate() {
            by_kind.entry(object.kind.as_str()).or_default().push(i);
            by_name
                .entry((object.kind.as_str(), object.name.as_str()))
                .or_default()
                .push(i);
            let labels = if let Some(template) = object.pod_template() {
                workloads.push(i);
                Some(template.labels().cloned().unwrap_or(Node {
                    line: object.line,
                    value: Value::Map(Vec::new()),
                }))
            } else {
                operator_pod_labels(object)
            };
            if let Some(labels) = labels {
                index_labels(&mut pod_label_index, pod_labels.len(), Some(&labels));
                pod_labels.push((i, labels));
            }
            if object.kind == "Service" && object.group().is_empty() {
                index_labels(&mut service_label_index, services.len(), object.labels());
                services.push(i);
                if let Some(namespace) = &object.namespace {
                    service_namespaces.insert(namespace.as_str());
                }
            }
        }
        let mut context = Context {
            objects,
            workloads,
            by_kind,
            by_name,
            hpa_of: FxHashMap::default(),
            pod_labels,
            pod_label_index,
            services,
            service_label_index,
            service_namespaces,
        };
        let mut hpa_of = FxHashMap::default();
        for (hpa, object) in context.of_kind("HorizontalPodAutoscaler") {
            if let Some(target) = context.hpa_target(object) {
                hpa_of.entry(target).or_insert(hpa);
            }
        }
        context.hpa_of = hpa_of;
        context
    }

    /// Objects of one kind, with their indexes.
    pub fn of_kind(&self, kind: &str) -> impl Iterator<Item = (usize, &'r Object<'a>)> + '_ {
        let objects = self.objects;
        self.by_kind
            .get(kind)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(move |&i| objects.get(i).map(|o| (i, o)))
    }

    /// The object of `kind` named `name` visible from namespace `namespace` (the first in
    /// input order).
    pub fn find(&self, kind: &str, name: &str, namespace: Option<&str>) -> Option<usize> {
        self.by_name
            .get(&(kind, name))
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .copied()
            .find(|&i| {
                self.objects
                    .get(i)
                    .is_some_and(|o| same_namespace(o.namespace.as_deref(), namespace))
            })
    }

    /// The workload an HPA's scaleTargetRef names, when it is among the inputs.
    pub fn hpa_target(&self, hpa: &Object<'_>) -> Option<usize> {
        let target = hpa.node.path(&["spec", "scaleTargetRef"])?;
        let kind = target.get("kind").and_then(Node::as_str)?;
        let name = target.get("name").and_then(Node::as_str)?;
        self.find(kind, name, hpa.namespace.as_deref())
    }

    /// The HPA targeting a workload.
    pub fn hpa_of(&self, workload: usize) -> Option<usize> {
        self.hpa_of.get(&workload).copied()
    }

    /// Objects making pods in a namespace visible from `namespace` whose pod labels
    /// `selector` matches, in input order: workloads, and operator resources such as
    /// Prometheus (which have no pod template: callers needing containers skip those).
    pub fn workloads_matching(
        &self,
        namespace: Option<&str>,
        selector: PodSelector<'_, '_>,
    ) -> Vec<usize> {
        let matches = |&(i, ref labels): &(usize, Node<'a>)| {
            self.objects.get(i).is_some_and(|o| {
                same_namespace(o.namespace.as_deref(), namespace) && selector.matches(Some(labels))
            })
        };
        match selector.required_label() {
            Some((key, value)) => self
                .pod_label_index
                .get(&(key.to_string(), value.to_string()))
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|&p| self.pod_labels.get(p))
                .filter(|entry| matches(entry))
                .map(|(i, _)| *i)
                .collect(),
            None => self
                .pod_labels
                .iter()
                .filter(|entry| matches(entry))
                .map(|(i, _)| *i)
                .collect(),
        }
    }

    /// Core Services whose `metadata.labels` the `LabelSelector` `selector` matches and
    /// that `in_scope` accepts, in input order.
    pub fn services_matching(
        &self,
        selector: &Node<'_>,
        in_scope: impl Fn(&Object<'_>) -> bool,
    ) -> Vec<usize> {
        let keep = |&i: &usize| {
            self.objects
                .get(i)
                .is_some_and(|s| in_scope(s) && label_selector_matches(selector, s.labels()))
        };
        match PodSelector::Label(selector).required_label() {
            Some((key, value)) => self
                .service_label_index
                .get(&(key.to_string(), value.to_string()))
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|&p| self.services.get(p).copied())
                .filter(keep)
                .collect(),
            None => self.services.iter().copied().filter(keep).collect(),
        }
    }

    /// Whether the inputs hold a core Service in `namespace`.
    pub fn has_service_in(&self, namespace: &str) -> bool {
        self.service_namespaces.contains(namespace)
    }

    /// The object at an index (always present for indexes the context handed out).
    pub fn object(&self, index: usize) -> Option<&'r Object<'a>> {
        self.objects.get(index)
    }

    /// The pod count a workload runs at its low point: the HPA's minReplicas when an HPA
    /// targets it, else spec.replicas (default 1). None for kinds without a count
    /// (DaemonSets, Jobs).
    pub fn min_pods(&self, workload: usize) -> Option<i64> {
        let object = self.object(workload)?;
        if object.kind == "Pod" {
            return Some(1);
        }
        if !object.is_replicated() {
            return None;
        }
        if let Some(hpa) = self.hpa_of(workload).and_then(|h| self.object(h)) {
            return Some(
                hpa.node
                    .path(&["spec", "minReplicas"])
                    .and_then(Node::as_i64)
                    .unwrap_or(1),
            );
        }
        Some(object.replicas().unwrap_or(1))
    }
}

/// The labels the Prometheus operator puts on the pods of its resources (their
/// `spec.podMetadata.labels` plus the operator's own), so Services and PDBs that select
/// those pods resolve.
fn operator_pod_labels<'a>(object: &Object<'a>) -> Option<Node<'a>> {
    if object.group() != "monitoring.coreos.com" {
        return None;
    }
    let app = match object.kind.as_str() {
        "Prometheus" => "prometheus",
        "PrometheusAgent" => "prometheus-agent",
        "Alertmanager" => "alertmanager",
        "ThanosRuler" => "thanos-ruler",
        _ => return None,
    };
    let scalar = |text: String| Node {
        line: object.line,
        value: Value::Scalar(Cow::Owned(text), false),
    };
    let mut entries: Vec<Entry<'a>> = object
        .node
        .path(&["spec", "podMetadata", "labels"])
        .map(|l| l.entries().to_vec())
        .unwrap_or_default();
    let name = object.name.clone();
    for (key, value) in [
        ("app.kubernetes.io/name", app.to_string()),
        ("app.kubernetes.io/instance", name.clone()),
        (
            "app.kubernetes.io/managed-by",
            "prometheus-operator".to_string(),
        ),
        (app, name.clone()),
        ("operator.prometheus.io/name", name),
    ] {
        if !entries.iter().any(|e| e.key == key) {
            entries.push(Entry {
                key: Cow::Owned(key.to_string()),
                key_line: object.line,
                value: scalar(value),
            });
        }
    }
    Some(Node {
        line: object.line,
        value: Value::Map(entries),
    })
}

/// Runs every check over the objects.
pub fn run_all(objects: &[Object<'_>]) -> Vec<RawFinding> {
    let context = Context::new(objects);
    let mut sink = Sink::default();
    for &index in &context.workloads {
        let Some(object) = context.object(index) else {
            continue;
        };
        let Some(template) = object.pod_template() else {
            continue;
        };
        let pod = Pod {
            index,
            object,
            template,
        };
        runtime::check_pod(&pod, &mut sink);
        probes::check_pod(&pod, &mut sink);
        workload::check_pod(&context, &pod, &mut sink);
    }
    workload::check_objects(&context, &mut sink);
    scaling::check(&context, &mut sink);
    network::check(&context, &mut sink);
    probes::check_behind_services(&context, &mut sink);
    api::check(&context, &mut sink);
    rbac::check(&context, &mut sink);
    sink.findings
}

/// A workload's pod template with the object around it.
#[derive(Clone, Copy)]
pub struct Pod<'r, 'a> {
    /// Index of the object.
    pub index: usize,
    /// The object.
    pub object: &'r Object<'a>,
    /// Its pod template.
    pub template: PodTemplate<'r, 'a>,
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::objects::{Extracted, extract};
    use crate::yaml::parse;

    /// `(check id, line)` of every finding on a YAML stream.
    pub fn findings(text: &str) -> Vec<(&'static str, u32)> {
        let parsed = parse(text);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let objects: Vec<_> = parsed
            .documents
            .into_iter()
            .flat_map(|d| match extract(0, d) {
                Extracted::Objects(o) => o,
                Extracted::NotAnObject => Vec::new(),
            })
            .collect();
        super::run_all(&objects)
            .into_iter()
            .map(|f| (f.check.id, f.line))
            .collect()
    }

    /// Lines where `id` fired.
    pub fn lines_of(text: &str, id: &str) -> Vec<u32> {
        findings(text)
            .into_iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, l)| l)
            .collect()
    }
}
