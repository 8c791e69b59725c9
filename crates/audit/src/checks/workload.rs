//! Workload checks the common linters share: requests and limits, image tags, security
//! context, host namespaces and mounts, capabilities, env hygiene and references,
//! anti-affinity; plus selector/template mismatch and Job/CronJob settings.

use rustc_hash::FxHashSet;

use super::{Context, Pod, Sink};
use crate::catalog::{
    CAPABILITIES_ADDED, CPU_LIMIT_MISSING, CPU_REQUEST_MISSING, CRONJOB_CONCURRENCY_POLICY_MISSING,
    CRONJOB_STARTING_DEADLINE_MISSING, ENV_DUPLICATE, ENV_REFERENCE_MISSING, HOST_IPC,
    HOST_NETWORK, HOST_PATH, HOST_PID, HOST_PORT, IMAGE_TAG_LATEST, JOB_BACKOFF_LIMIT_MISSING,
    JOB_TTL_MISSING, LIMIT_BELOW_REQUEST, MEMORY_LIMIT_MISSING, MEMORY_REQUEST_MISSING,
    NO_ANTI_AFFINITY, PRIVILEGE_ESCALATION_ALLOWED, PRIVILEGED_CONTAINER, RUNS_AS_ROOT,
    SECRET_IN_ENV_LITERAL, SELECTOR_MISMATCH, WRITABLE_ROOT_FILESYSTEM,
};
use crate::objects::{Container, Object, label_selector_matches, map_selector_matches};
use crate::quantity::{duration_seconds, quantity};
use crate::yaml::Node;

/// Capabilities that may be added without a finding: binding ports below 1024.
const HARMLESS_CAPABILITIES: [&str; 1] = ["NET_BIND_SERVICE"];

/// Env var name parts that mark a secret.
const SECRET_NAME_PARTS: [&str; 9] = [
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
];

/// Env var name endings that mark a reference to a secret, not the secret itself.
const SECRET_REFERENCE_SUFFIXES: [&str; 7] = [
    "_FILE",
    "_PATH",
    "_DIR",
    "_NAME",
    "_REF",
    "_ENDPOINT",
    "_URL",
];

/// Words of an env var's name (split at `_`, `-`, `.`) that make it a setting about a
/// secret, not the secret: `TOKEN_TTL_SECONDS`, `ENABLE_TOKEN_AUTH`, `PASSWORD_MIN_LENGTH`,
/// `DB_PASSWORD_FILE` (a path to the secret).
const SECRET_SETTING_WORDS: [&str; 22] = [
    "TTL",
    "LENGTH",
    "LEN",
    "ENABLE",
    "ENABLED",
    "DISABLE",
    "DISABLED",
    "TIMEOUT",
    "EXPIRY",
    "EXPIRATION",
    "EXPIRES",
    "LIFETIME",
    "SECONDS",
    "INTERVAL",
    "ROTATION",
    "FILE",
    "PATH",
    "DIR",
    "MOUNT",
    "ALGORITHM",
    "HEADER",
    "PROVIDER",
];

/// Digits a number may have and still be a setting (a length, a TTL in seconds, a port),
/// not a numeric secret.
const SETTING_NUMBER_DIGITS: usize = 6;

/// Runs the per-pod hygiene checks.
pub fn check_pod(context: &Context<'_, '_>, pod: &Pod<'_, '_>, sink: &mut Sink) {
    let spec = pod.template.spec;
    for (field, check, what) in [
        ("hostNetwork", &HOST_NETWORK, "the node's network"),
        ("hostPID", &HOST_PID, "the node's process namespace"),
        ("hostIPC", &HOST_IPC, "the node's IPC namespace"),
    ] {
        if let Some(entry) = spec.entry(field)
            && entry.value.as_bool() == Some(true)
        {
            sink.object(
                check,
                pod.index,
                entry.key_line,
                format!("{field}: true gives the pod {what}"),
            );
        }
    }
    for volume in spec.get("volumes").map(Node::items).unwrap_or_default() {
        if let Some(entry) = volume.entry("hostPath") {
            let path = entry
                .value
                .get("path")
                .and_then(Node::as_str)
                .unwrap_or("?");
            let socket = path.ends_with(".sock");
            let message = if socket {
                format!("mounts the host's runtime socket {path}: full control of the node")
            } else {
                format!("mounts the host path {path}")
            };
            sink.object(&HOST_PATH, pod.index, entry.key_line, message);
        }
    }
    for container in pod.template.containers() {
        resources(pod, &container, sink);
        image(pod, &container, sink);
        security(pod, &container, sink);
        env(context, pod, &container, sink);
    }
    anti_affinity(context, pod, sink);
}

fn resources(pod: &Pod<'_, '_>, container: &Container<'_, '_>, sink: &mut Sink) {
    let line = container.line();
    for (resource, request_check, limit_check) in [
        ("cpu", &CPU_REQUEST_MISSING, &CPU_LIMIT_MISSING),
        ("memory", &MEMORY_REQUEST_MISSING, &MEMORY_LIMIT_MISSING),
    ] {
        // The API server copies a limit into a missing request, so only both missing is
        // a missing request.
        if container.effective_request(resource).is_none() {
            sink.container(
                request_check,
                pod.index,
                container,
                line,
                format!("no {resource} request (resources.requests.{resource})"),
            );
        }
        if container.resource("limits", resource).is_none() {
            sink.container(
                limit_check,
                pod.index,
                container,
                line,
                format!("no {resource} limit (resources.limits.{resource})"),
            );
        }
        let value = |section: &str| {
            container
                .resource(section, resource)
                .and_then(Node::as_str)
                .and_then(quantity)
        };
        if let (Some(request), Some(limit)) = (value("requests"), value("limits"))
            && limit < request
        {
            let limit_line = container
                .node
                .path(&["resources", "limits"])
                .and_then(|l| l.entry(resource))
                .map_or(line, |e| e.key_line);
            let text = |section: &str| {
                container
                    .resource(section, resource)
                    .and_then(Node::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            sink.container(
                &LIMIT_BELOW_REQUEST,
                pod.index,
                container,
                limit_line,
                format!(
                    "{resource} limit {} is below the request {}",
                    text("limits"),
                    text("requests")
                ),
            );
        }
    }
}

/// The tag of an image reference: `None` when untagged, empty never; digests count as pinned.
pub fn image_tag(image: &str) -> Option<&str> {
    if image.contains('@') {
        return Some("@digest");
    }
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    last_segment.split_once(':').map(|(_, tag)| tag)
}

fn image(pod: &Pod<'_, '_>, container: &Container<'_, '_>, sink: &mut Sink) {
    let Some(entry) = container.node.entry("image") else {
        return;
    };
    let Some(image) = entry.value.as_str() else {
        return;
    };
    // Templating placeholders are not images yet.
    if image.contains("{{") || image.contains("${") {
        return;
    }
    let message = match image_tag(image) {
        None => format!("image `{image}` has no tag, so it runs `latest`"),
        Some("latest") => format!("image `{image}` uses the `latest` tag"),
        Some(_) => return,
    };
    sink.container(
        &IMAGE_TAG_LATEST,
        pod.index,
        container,
        entry.key_line,
        message,
    );
}

fn security(pod: &Pod<'_, '_>, container: &Container<'_, '_>, sink: &mut Sink) {
    let spec = pod.template.spec;
    let context = container.node.get("securityContext");
    let field = |name: &str| context.and_then(|c| c.entry(name));
    let field_line = |name: &str| field(name).map_or(container.line(), |e| e.key_line);

    let privileged = field("privileged").and_then(|e| e.value.as_bool()) == Some(true);
    if privileged {
        sink.container(
            &PRIVILEGED_CONTAINER,
            pod.index,
            container,
            field_line("privileged"),
            "securityContext.privileged: true".to_string(),
        );
    }

    if field("allowPrivilegeEscalation").and_then(|e| e.value.as_bool()) != Some(false) {
        let message = if privileged {
            "privileged containers always allow privilege escalation".to_string()
        } else if field("allowPrivilegeEscalation").is_some() {
            "allowPrivilegeEscalation is true".to_string()
        } else {
            "allowPrivilegeEscalation is not set to false".to_string()
        };
        sink.container(
            &PRIVILEGE_ESCALATION_ALLOWED,
            pod.index,
            container,
            field_line("allowPrivilegeEscalation"),
            message,
        );
    }

    let run_as_user = container.security(spec, "runAsUser").and_then(Node::as_i64);
    let non_root = container
        .security(spec, "runAsNonRoot")
        .and_then(Node::as_bool);
    let root_line = || {
        field("runAsUser")
            .map(|e| e.key_line)
            .or_else(|| {
                spec.path(&["securityContext"])
                    .and_then(|c| c.entry("runAsUser"))
                    .map(|e| e.key_line)
            })
            .unwrap_or(container.line())
    };
    match run_as_user {
        Some(0) => sink.container(
            &RUNS_AS_ROOT,
            pod.index,
            container,
            root_line(),
            "runAsUser is 0 (root)".to_string(),
        ),
        Some(_) => {}
        None if non_root == Some(true) => {}
        None => sink.container(
            &RUNS_AS_ROOT,
            pod.index,
            container,
            field_line("runAsNonRoot"),
            "neither runAsNonRoot: true nor a non-zero runAsUser is set".to_string(),
        ),
    }

    if field("readOnlyRootFilesystem").and_then(|e| e.value.as_bool()) != Some(true) {
        sink.container(
            &WRITABLE_ROOT_FILESYSTEM,
            pod.index,
            container,
            field_line("readOnlyRootFilesystem"),
            "readOnlyRootFilesystem is not true".to_string(),
        );
    }

    if let Some(add) = context
        .and_then(|c| c.get("capabilities"))
        .and_then(|c| c.entry("add"))
    {
        let added: Vec<&str> = add
            .value
            .items()
            .iter()
            .filter_map(Node::as_str)
            .filter(|c| {
                let name = c.trim_start_matches("CAP_");
                !HARMLESS_CAPABILITIES.contains(&name)
            })
            .collect();
        if !added.is_empty() {
            sink.container(
                &CAPABILITIES_ADDED,
                pod.index,
                container,
                add.key_line,
                format!("adds capabilities {}", added.join(", ")),
            );
        }
    }

    for port in container
        .node
        .get("ports")
        .map(Node::items)
        .unwrap_or_default()
    {
        if let Some(entry) = port.entry("hostPort")
            && entry.value.as_i64().is_some_and(|p| p > 0)
        {
            sink.container(
                &HOST_PORT,
                pod.index,
                container,
                entry.key_line,
                format!(
                    "binds host port {}",
                    entry.value.as_str().unwrap_or_default()
                ),
            );
        }
    }
}

/// Whether an env var's name says it holds a secret (not a setting about one).
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_PARTS.iter().any(|part| upper.contains(part))
        && !SECRET_REFERENCE_SUFFIXES
            .iter()
            .any(|suffix| upper.ends_with(suffix))
        && !upper
            .split(['_', '-', '.'])
            .any(|word| SECRET_SETTING_WORDS.contains(&word))
}

/// Whether a literal value cannot be a secret: empty, a boolean, a small integer, a
/// duration (`30s`, `1h`).
pub fn is_setting_value(text: &str) -> bool {
    let text = text.trim();
    if text.is_empty() {
        return true;
    }
    let lower = text.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off"
    ) {
        return true;
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits.len() <= SETTING_NUMBER_DIGITS;
    }
    text.bytes().any(|b| b.is_ascii_alphabetic()) && duration_seconds(text).is_some()
}

fn env(
    context: &Context<'_, '_>,
    pod: &Pod<'_, '_>,
    container: &Container<'_, '_>,
    sink: &mut Sink,
) {
    let namespace = pod.object.namespace.as_deref();
    let mut seen: FxHashSet<&str> = FxHashSet::default();
    for entry in container.env() {
        let Some(name_entry) = entry.entry("name") else {
            continue;
        };
        let Some(name) = name_entry.value.as_str() else {
            continue;
        };
        if !seen.insert(name) {
            sink.container(
                &ENV_DUPLICATE,
                pod.index,
                container,
                name_entry.key_line,
                format!("env var {name} is set more than once; the last one wins"),
            );
        }
        if let Some(value) = entry.entry("value")
            && let Some(text) = value.value.as_str()
            && !is_setting_value(text)
            && looks_secret(name)
            && !text.contains("$(")
        {
            sink.container(
                &SECRET_IN_ENV_LITERAL,
                pod.index,
                container,
                value.key_line,
                format!("env var {name} holds a literal secret value"),
            );
        }
        for (reference, kind) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")] {
            let Some(reference_entry) = entry.path(&["valueFrom"]).and_then(|v| v.entry(reference))
            else {
                continue;
            };
            let reference = &reference_entry.value;
            if reference.get("optional").and_then(Node::as_bool) == Some(true) {
                continue;
            }
            let Some(target) = reference.get("name").and_then(Node::as_str) else {
                continue;
            };
            let key = reference.get("key").and_then(Node::as_str);
            if let Some(message) = missing_reference(context, kind, target, key, namespace) {
                sink.container(
                    &ENV_REFERENCE_MISSING,
                    pod.index,
                    container,
                    reference_entry.key_line,
                    format!("env var {name}: {message}"),
                );
            }
        }
    }
    for source in container
        .node
        .get("envFrom")
        .map(Node::items)
        .unwrap_or_default()
    {
        for (reference, kind) in [("secretRef", "Secret"), ("configMapRef", "ConfigMap")] {
            let Some(reference_entry) = source.entry(reference) else {
                continue;
            };
            let reference = &reference_entry.value;
            if reference.get("optional").and_then(Node::as_bool) == Some(true) {
                continue;
            }
            let Some(target) = reference.get("name").and_then(Node::as_str) else {
                continue;
            };
            if let Some(message) = missing_reference(context, kind, target, None, namespace) {
                sink.container(
                    &ENV_REFERENCE_MISSING,
                    pod.index,
                    container,
                    reference_entry.key_line,
                    format!("envFrom: {message}"),
                );
            }
        }
    }
}

/// Why a Secret/ConfigMap reference does not resolve among the inputs, if it does not.
fn missing_reference(
    context: &Context<'_, '_>,
    kind: &str,
    name: &str,
    key: Option<&str>,
    namespace: Option<&str>,
) -> Option<String> {
    let Some(object) = context
        .find(kind, name, namespace)
        .and_then(|i| context.object(i))
    else {
        return Some(format!("{kind} {name} is not among the inputs"));
    };
    // A cluster's Secrets and ConfigMaps are listed without their values: their keys are
    // unknown, not missing.
    if object.names_only {
        return None;
    }
    let key = key?;
    let has_key = ["data", "stringData", "binaryData"]
        .iter()
        .any(|section| object.node.path(&[section, key]).is_some());
    (!has_key).then(|| format!("{kind} {name} has no key `{key}`"))
}

fn anti_affinity(context: &Context<'_, '_>, pod: &Pod<'_, '_>, sink: &mut Sink) {
    if !matches!(
        pod.object.kind.as_str(),
        "Deployment" | "StatefulSet" | "Rollout"
    ) {
        return;
    }
    let replicas = match context.hpa_of(pod.index).and_then(|h| context.object(h)) {
        Some(hpa) => hpa
            .node
            .path(&["spec", "minReplicas"])
            .and_then(Node::as_i64)
            .unwrap_or(1)
            .max(pod.object.replicas().unwrap_or(1)),
        None => pod.object.replicas().unwrap_or(1),
    };
    if replicas < 2 {
        return;
    }
    let spec = pod.template.spec;
    let spread = spec
        .get("topologySpreadConstraints")
        .is_some_and(|t| !t.items().is_empty());
    let anti = spec.path(&["affinity", "podAntiAffinity"]).is_some();
    if !spread && !anti {
        sink.object(
            &NO_ANTI_AFFINITY,
            pod.index,
            pod.object.line_of(&["spec", "replicas"]),
            format!("{replicas} replicas without podAntiAffinity or topologySpreadConstraints"),
        );
    }
}

/// Object-level workload checks: selectors and Job/CronJob settings.
pub fn check_objects(context: &Context<'_, '_>, sink: &mut Sink) {
    for &index in &context.workloads {
        let Some(object) = context.object(index) else {
            continue;
        };
        selector_mismatch(index, object, sink);
    }
    for (index, cron) in context.of_kind("CronJob") {
        let Some(spec) = cron.node.get("spec") else {
            continue;
        };
        let spec_line = cron.line_of(&["spec"]);
        if spec.get("concurrencyPolicy").is_none() {
            sink.object(
                &CRONJOB_CONCURRENCY_POLICY_MISSING,
                index,
                spec_line,
                "concurrencyPolicy is not set (default Allow: runs may overlap)".to_string(),
            );
        }
        if spec.get("startingDeadlineSeconds").is_none() {
            sink.object(
                &CRONJOB_STARTING_DEADLINE_MISSING,
                index,
                spec_line,
                "startingDeadlineSeconds is not set".to_string(),
            );
        }
    }
    for (index, job) in context.of_kind("Job") {
        let Some(spec) = job.node.get("spec") else {
            continue;
        };
        let spec_line = job.line_of(&["spec"]);
        if spec.get("backoffLimit").is_none() {
            sink.object(
                &JOB_BACKOFF_LIMIT_MISSING,
                index,
                spec_line,
                "backoffLimit is not set (default 6 retries)".to_string(),
            );
        }
        if spec.get("ttlSecondsAfterFinished").is_none() {
            sink.object(
                &JOB_TTL_MISSING,
                index,
                spec_line,
                "ttlSecondsAfterFinished is not set: the finished Job is kept forever".to_string(),
            );
        }
    }
}

fn selector_mismatch(index: usize, object: &Object<'_>, sink: &mut Sink) {
    let Some(template) = object.pod_template() else {
        return;
    };
    let labels = template.labels();
    match object.kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Rollout" => {
            let Some(selector) = object
                .node
                .path(&["spec"])
                .and_then(|s| s.entry("selector"))
            else {
                // extensions/v1beta1 defaulted the selector from the labels; apps/v1 requires it.
                if matches!(object.api_version.as_str(), "apps/v1" | "apps/v1beta2") {
                    sink.object(
                        &SELECTOR_MISMATCH,
                        index,
                        object.line_of(&["spec"]),
                        "spec.selector is missing (required in apps/v1)".to_string(),
                    );
                }
                return;
            };
            if !label_selector_matches(&selector.value, labels)
                || selector.value.entries().is_empty()
            {
                sink.object(
                    &SELECTOR_MISMATCH,
                    index,
                    selector.key_line,
                    "spec.selector does not match spec.template.metadata.labels".to_string(),
                );
            }
        }
        "ReplicationController" => {
            if let Some(selector) = object
                .node
                .path(&["spec"])
                .and_then(|s| s.entry("selector"))
                && !map_selector_matches(&selector.value, labels)
            {
                sink.object(
                    &SELECTOR_MISMATCH,
                    index,
                    selector.key_line,
                    "spec.selector does not match spec.template.metadata.labels".to_string(),
                );
            }
        }
        "Job" => {
            let manual = object
                .node
                .path(&["spec", "manualSelector"])
                .and_then(Node::as_bool)
                == Some(true);
            if manual
                && let Some(selector) = object
                    .node
                    .path(&["spec"])
                    .and_then(|s| s.entry("selector"))
                && !label_selector_matches(&selector.value, labels)
            {
                sink.object(
                    &SELECTOR_MISMATCH,
                    index,
                    selector.key_line,
                    "spec.selector does not match spec.template.metadata.labels".to_string(),
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::lines_of;
    use super::*;

    const HEAD: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n";

    /// A container that passes every container check.
    const CLEAN: &str = "      containers:\n      - name: app\n        image: registry.example/web:1.4.2\n        resources:\n          requests: {cpu: 100m, memory: 128Mi}\n          limits: {cpu: 500m, memory: 256Mi}\n        securityContext:\n          runAsNonRoot: true\n          runAsUser: 10001\n          allowPrivilegeEscalation: false\n          readOnlyRootFilesystem: true\n";

    fn clean() -> String {
        format!("{HEAD}{CLEAN}")
    }

    #[test]
    fn clean_container_is_silent() {
        let found = super::super::test_support::findings(&clean());
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn missing_resources() {
        let bad = clean().replace(
            "        resources:\n          requests: {cpu: 100m, memory: 128Mi}\n          limits: {cpu: 500m, memory: 256Mi}\n",
            "",
        );
        for id in [
            "cpu-request-missing",
            "memory-request-missing",
            "cpu-limit-missing",
            "memory-limit-missing",
        ] {
            assert_eq!(lines_of(&bad, id), vec![14], "{id}");
            assert!(lines_of(&clean(), id).is_empty(), "{id}");
        }
    }

    #[test]
    fn limit_below_request() {
        let bad = clean().replace("memory: 256Mi", "memory: 64Mi");
        assert_eq!(lines_of(&bad, "limit-below-request"), vec![18]);
    }

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("nginx"), None);
        assert_eq!(image_tag("localhost:5000/nginx"), None);
        assert_eq!(image_tag("nginx:latest"), Some("latest"));
        assert_eq!(image_tag("nginx@sha256:abc"), Some("@digest"));
        let bad = clean().replace("web:1.4.2", "web:latest");
        assert_eq!(lines_of(&bad, "image-tag-latest"), vec![15]);
        let untagged = clean().replace("web:1.4.2", "web");
        assert_eq!(lines_of(&untagged, "image-tag-latest"), vec![15]);
    }

    #[test]
    fn security_context() {
        let privileged = clean().replace(
            "allowPrivilegeEscalation: false",
            "allowPrivilegeEscalation: false\n          privileged: true",
        );
        assert_eq!(lines_of(&privileged, "privileged-container"), vec![23]);
        let escalation = clean().replace(
            "allowPrivilegeEscalation: false",
            "allowPrivilegeEscalation: true",
        );
        assert_eq!(
            lines_of(&escalation, "privilege-escalation-allowed"),
            vec![22]
        );
        let root = clean().replace("runAsUser: 10001", "runAsUser: 0");
        assert_eq!(lines_of(&root, "runs-as-root"), vec![21]);
        let unset = clean()
            .replace("          runAsNonRoot: true\n", "")
            .replace("          runAsUser: 10001\n", "");
        assert_eq!(lines_of(&unset, "runs-as-root"), vec![14]);
        let writable = clean().replace(
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
        );
        assert_eq!(lines_of(&writable, "writable-root-filesystem"), vec![23]);
        let caps = format!(
            "{}          capabilities:\n            add: [NET_BIND_SERVICE, SYS_ADMIN]\n",
            clean()
        );
        assert_eq!(lines_of(&caps, "capabilities-added"), vec![25]);
        let harmless = caps.replace(", SYS_ADMIN", "");
        assert!(lines_of(&harmless, "capabilities-added").is_empty());
    }

    #[test]
    fn host_namespaces_ports_and_paths() {
        let bad = format!(
            "{HEAD}      hostNetwork: true\n      hostPID: true\n      hostIPC: true\n      volumes:\n      - name: sock\n        hostPath: {{path: /var/run/docker.sock}}\n{}        ports: [{{containerPort: 80, hostPort: 80}}]\n",
            CLEAN
                .trim_start_matches("      containers:\n")
                .replace("      - name: app", "      containers:\n      - name: app")
        );
        assert_eq!(lines_of(&bad, "host-network"), vec![13]);
        assert_eq!(lines_of(&bad, "host-pid"), vec![14]);
        assert_eq!(lines_of(&bad, "host-ipc"), vec![15]);
        assert_eq!(lines_of(&bad, "host-path"), vec![18]);
        assert_eq!(lines_of(&bad, "host-port").len(), 1);
        for id in [
            "host-network",
            "host-pid",
            "host-ipc",
            "host-path",
            "host-port",
        ] {
            assert!(lines_of(&clean(), id).is_empty(), "{id}");
        }
    }

    #[test]
    fn env_checks() {
        let bad = format!(
            "{}        env:\n        - {{name: DB_PASSWORD, value: hunter2}}\n        - {{name: DB_PASSWORD_FILE, value: /run/secrets/db}}\n        - {{name: MODE, value: a}}\n        - {{name: MODE, value: b}}\n        - name: TOKEN\n          valueFrom:\n            secretKeyRef: {{name: api, key: token}}\n",
            clean()
        );
        assert_eq!(lines_of(&bad, "secret-in-env-literal"), vec![25]);
        assert_eq!(lines_of(&bad, "env-duplicate"), vec![28]);
        assert_eq!(lines_of(&bad, "env-reference-missing"), vec![31]);
        let secret =
            "---\napiVersion: v1\nkind: Secret\nmetadata: {name: api}\nstringData: {token: x}\n";
        let good = format!("{bad}{secret}");
        assert!(lines_of(&good, "env-reference-missing").is_empty());
        let wrong_key = good.replace("stringData: {token: x}", "stringData: {other: x}");
        assert_eq!(lines_of(&wrong_key, "env-reference-missing"), vec![31]);
        assert!(looks_secret("AWS_SECRET_ACCESS_KEY"));
        assert!(!looks_secret("VAULT_TOKEN_PATH"));
    }

    #[test]
    fn settings_about_secrets_are_not_secrets() {
        let with_env = |vars: &str| format!("{}        env:\n{vars}", clean());
        // The reviewer's repro: names about secrets, values that cannot be secrets.
        let settings = with_env(
            "        - {name: TOKEN_TTL_SECONDS, value: \"3600\"}\n        - {name: ENABLE_TOKEN_AUTH, value: \"true\"}\n        - {name: PASSWORD_MIN_LENGTH, value: \"8\"}\n        - {name: DB_PASSWORD_FILE, value: /run/secrets/db}\n        - {name: SESSION_TOKEN_TIMEOUT, value: 30m}\n        - {name: API_TOKEN, value: \"\"}\n        - {name: API_TOKEN_REQUIRED, value: \"yes\"}\n",
        );
        assert!(lines_of(&settings, "secret-in-env-literal").is_empty());
        // Real-looking secrets are still reported, a long number included.
        let secrets = with_env(
            "        - {name: API_TOKEN, value: ghp_4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e}\n        - {name: DB_PASSWORD, value: hunter2}\n        - {name: PIN_SECRET, value: \"8204719355\"}\n        - {name: PASSWORD, value: 10m-of-chars}\n",
        );
        assert_eq!(
            lines_of(&secrets, "secret-in-env-literal"),
            vec![25, 26, 27, 28]
        );
        assert!(is_setting_value("45s") && is_setting_value("1h30m") && is_setting_value("Off"));
        assert!(!is_setting_value("s3cr3t") && !is_setting_value("1234567"));
    }

    #[test]
    fn anti_affinity_with_replicas() {
        let bad = clean().replace("replicas: 1", "replicas: 3");
        assert_eq!(lines_of(&bad, "no-anti-affinity"), vec![6]);
        let good = format!(
            "{bad}      topologySpreadConstraints:\n      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {{matchLabels: {{app: web}}}}}}\n"
        );
        assert!(lines_of(&good, "no-anti-affinity").is_empty());
    }

    #[test]
    fn selector_mismatch() {
        let bad = clean().replace("labels: {app: web}", "labels: {app: website}");
        assert_eq!(lines_of(&bad, "selector-mismatch"), vec![7]);
        assert!(lines_of(&clean(), "selector-mismatch").is_empty());
    }

    #[test]
    fn jobs_and_cronjobs() {
        let cron = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: \"*/5 * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers: [{name: c, image: x:1}]\n";
        assert_eq!(
            lines_of(cron, "cronjob-concurrency-policy-missing"),
            vec![4]
        );
        assert_eq!(lines_of(cron, "cronjob-starting-deadline-missing"), vec![4]);
        let fixed = cron.replace(
            "  schedule:",
            "  concurrencyPolicy: Forbid\n  startingDeadlineSeconds: 300\n  schedule:",
        );
        assert!(lines_of(&fixed, "cronjob-concurrency-policy-missing").is_empty());
        assert!(lines_of(&fixed, "cronjob-starting-deadline-missing").is_empty());
        let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: j, image: x:1}]\n";
        assert_eq!(lines_of(job, "job-backoff-limit-missing"), vec![4]);
        assert_eq!(lines_of(job, "job-ttl-missing"), vec![4]);
        let fixed = job.replace(
            "spec:\n  template",
            "spec:\n  backoffLimit: 2\n  ttlSecondsAfterFinished: 3600\n  template",
        );
        assert!(lines_of(&fixed, "job-backoff-limit-missing").is_empty());
        assert!(lines_of(&fixed, "job-ttl-missing").is_empty());
    }
}
