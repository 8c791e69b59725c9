//! Live clusters (`opsloop audit --cluster`, feature `cluster`): the workloads and the
//! objects the checks cross-reference, read through kube-rs as [`DynamicObject`]s and turned
//! into the audit's inputs, one [`Source`] per object named
//! `cluster://namespace/Kind/name`, so every check and output works as for files.
//!
//! What is read: Deployments, StatefulSets, DaemonSets, Jobs (not those a CronJob made),
//! CronJobs, Pods no controller owns, Services, HPAs, PDBs, ConfigMaps and Secrets
//! (metadata only: their values are never requested nor kept), and ServiceMonitors when
//! their CRD is installed. A kind that cannot be listed (RBAC, a removed API) becomes an
//! input error of the run; the rest is still audited.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::{Map, Value};

use crate::source::Source;

/// Objects asked for per request.
const PAGE: u32 = 500;
/// Objects read per kind at most: a bound on memory, far above real clusters.
pub const MAX_PER_KIND: usize = 50_000;

/// How a kind is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    /// The whole object.
    Full,
    /// Names, namespace and labels only, through the metadata-only list.
    NamesOnly,
    /// The whole object; the kind's absence (no CRD) is no error.
    Optional,
}

/// `(group, version, kind, plural, how)`.
const KINDS: &[(&str, &str, &str, &str, Read)] = &[
    ("apps", "v1", "Deployment", "deployments", Read::Full),
    ("apps", "v1", "StatefulSet", "statefulsets", Read::Full),
    ("apps", "v1", "DaemonSet", "daemonsets", Read::Full),
    ("batch", "v1", "Job", "jobs", Read::Full),
    ("batch", "v1", "CronJob", "cronjobs", Read::Full),
    ("", "v1", "Pod", "pods", Read::Full),
    ("", "v1", "Service", "services", Read::Full),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        Read::Full,
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        Read::Full,
    ),
    ("", "v1", "ConfigMap", "configmaps", Read::NamesOnly),
    ("", "v1", "Secret", "secrets", Read::NamesOnly),
    (
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
        "servicemonitors",
        Read::Optional,
    ),
];

/// Owners whose pod template is audited already: what they create is not audited twice.
const TEMPLATE_OWNERS: &[&str] = &[
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
];

/// What was read from the cluster.
#[derive(Debug, Default)]
pub struct ClusterRead {
    /// One input per object; a kind that could not be listed is one input with its error.
    pub sources: Vec<Source>,
    /// What the user should know that is no error (a CRD not installed).
    pub notes: Vec<String>,
}

/// Reads the objects the audit checks, in `namespace` or in all namespaces.
pub async fn read(client: &kube::Client, namespace: Option<&str>) -> ClusterRead {
    let mut out = ClusterRead::default();
    for &(group, version, kind, plural, how) in KINDS {
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        match list(&api, how).await {
            Ok(items) => {
                for item in items {
                    if let Some(source) = to_source(item, &resource, how) {
                        out.sources.push(source);
                    }
                }
            }
            Err(ListError::Absent) => out.notes.push(format!(
                "{kind}: the API {} is not served (CRD not installed); skipped",
                resource.api_version
            )),
            Err(ListError::Failed(message)) => out.sources.push(Source {
                name: location(namespace, kind, "*"),
                bytes: Err(format!("listing {plural}: {message}")),
                names_only: false,
            }),
        }
    }
    out
}

enum ListError {
    /// An optional kind the server does not know.
    Absent,
    /// Anything else, said for the user.
    Failed(String),
}

/// Every object of one kind as JSON, page by page.
async fn list(api: &Api<DynamicObject>, how: Read) -> Result<Vec<Value>, ListError> {
    let mut params = ListParams::default().limit(PAGE);
    let mut items = Vec::new();
    loop {
        let (page, next) = match how {
            Read::NamesOnly => api
                .list_metadata(&params)
                .await
                .map(|l| (json_items(&l.items), l.metadata.continue_)),
            Read::Full | Read::Optional => api
                .list(&params)
                .await
                .map(|l| (json_items(&l.items), l.metadata.continue_)),
        }
        .map_err(|e| match &e {
            kube::Error::Api(status) if status.code == 404 && how == Read::Optional => {
                ListError::Absent
            }
            _ => ListError::Failed(describe(&e)),
        })?;
        items.extend(page);
        if items.len() > MAX_PER_KIND {
            return Err(ListError::Failed(format!(
                "more than {MAX_PER_KIND} objects; audit one namespace at a time (--namespace)"
            )));
        }
        match next.filter(|t| !t.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

fn json_items<T: serde::Serialize>(items: &[T]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

/// An error as a user can act on it: the API's message, with a hint for RBAC.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.code == 403 => format!(
            "forbidden: {} (the current context needs list permission)",
            status.message
        ),
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// `cluster://namespace/Kind/name` (`cluster://Kind/name` for cluster-scoped objects).
fn location(namespace: Option<&str>, kind: &str, name: &str) -> String {
    match namespace {
        Some(ns) => format!("cluster://{ns}/{kind}/{name}"),
        None => format!("cluster://{kind}/{name}"),
    }
}

/// One object as an input: typed (list items come without `apiVersion`/`kind`), stripped
/// of what the server adds and of every value of a names-only kind, pretty-printed so that
/// lines point somewhere. `None` for objects a controller owns.
fn to_source(mut item: Value, resource: &ApiResource, how: Read) -> Option<Source> {
    let object = item.as_object_mut()?;
    let metadata = object
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if owned_by_template(&metadata) {
        return None;
    }
    let name = metadata.get("name").and_then(Value::as_str).unwrap_or("");
    let namespace = metadata.get("namespace").and_then(Value::as_str);
    let source_name = location(namespace, &resource.kind, name);
    let mut typed = Map::new();
    typed.insert(
        "apiVersion".into(),
        Value::from(resource.api_version.clone()),
    );
    typed.insert("kind".into(), Value::from(resource.kind.clone()));
    typed.insert(
        "metadata".into(),
        Value::Object(clean_metadata(&metadata, how)),
    );
    if how != Read::NamesOnly {
        for (key, value) in std::mem::take(object) {
            if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "status") {
                typed.insert(key, value);
            }
        }
    }
    let bytes = serde_json::to_vec_pretty(&Value::Object(typed)).map_err(|e| e.to_string());
    Some(Source {
        name: source_name,
        bytes,
        names_only: how == Read::NamesOnly,
    })
}

/// Whether a controller whose template is audited made this object.
fn owned_by_template(metadata: &Map<String, Value>) -> bool {
    metadata
        .get("ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|owners| {
            owners.iter().any(|o| {
                o.get("controller").and_then(Value::as_bool) == Some(true)
                    && o.get("kind")
                        .and_then(Value::as_str)
                        .is_some_and(|k| TEMPLATE_OWNERS.contains(&k))
            })
        })
}

/// Annotation `kubectl apply` keeps the whole applied object in (a Secret's values too).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Name, namespace, labels and annotations (of a names-only kind opsloop's own only):
/// nothing else of the metadata matters to a check. `last-applied-configuration` is
/// dropped: noise at best, a Secret's values at worst.
fn clean_metadata(metadata: &Map<String, Value>, how: Read) -> Map<String, Value> {
    let mut out = Map::new();
    for key in ["name", "namespace", "labels"] {
        if let Some(value) = metadata.get(key) {
            out.insert(key.into(), value.clone());
        }
    }
    let kept: Map<String, Value> = metadata
        .get("annotations")
        .and_then(Value::as_object)
        .map(|a| {
            a.iter()
                .filter(|(k, _)| {
                    k.as_str() != LAST_APPLIED
                        && (how != Read::NamesOnly || k.starts_with("opsloop.dev/"))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    if !kept.is_empty() {
        out.insert("annotations".into(), Value::Object(kept));
    }
    out
}
