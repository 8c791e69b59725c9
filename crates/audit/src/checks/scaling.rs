//! Autoscaling and disruption checks across objects: HPA utilization without requests,
//! HPA bounds and targets, PDBs that select nothing or block every eviction, single
//! replicas under a PDB, and the Knative target against containerConcurrency.

use super::{Context, PodSelector, Sink};
use crate::catalog::{
    HPA_MIN_ABOVE_MAX, HPA_TARGET_MISSING, HPA_UTILIZATION_WITHOUT_REQUESTS,
    KNATIVE_TARGET_ABOVE_CONCURRENCY, PDB_MAX_UNAVAILABLE_ZERO, PDB_MIN_AVAILABLE_TOO_HIGH,
    PDB_SELECTS_NOTHING, SINGLE_REPLICA_UNDER_PDB,
};
use crate::objects::Object;
use crate::yaml::Node;

/// Runs the scaling checks.
pub fn check(context: &Context<'_, '_>, sink: &mut Sink) {
    for (index, hpa) in context.of_kind("HorizontalPodAutoscaler") {
        check_hpa(context, index, hpa, sink);
    }
    let mut under_pdb = vec![false; context.objects.len()];
    for (index, pdb) in context.of_kind("PodDisruptionBudget") {
        check_pdb(context, index, pdb, &mut under_pdb, sink);
    }
    for (index, flagged) in under_pdb.iter().enumerate() {
        if *flagged && context.min_pods(index) == Some(1) {
            let Some(object) = context.object(index) else {
                continue;
            };
            let line = object.line_of(&["spec", "replicas"]);
            let source = if context.hpa_of(index).is_some() {
                "its HPA's minReplicas is 1"
            } else {
                "it runs 1 replica"
            };
            sink.object(
                &SINGLE_REPLICA_UNDER_PDB,
                index,
                line,
                format!("a PodDisruptionBudget selects this workload but {source}"),
            );
        }
    }
    for (index, object) in context.of_kind("Service") {
        if object.group() == "serving.knative.dev" {
            check_knative(index, object, sink);
        }
    }
    for (index, object) in context.of_kind("Configuration") {
        if object.group() == "serving.knative.dev" {
            check_knative(index, object, sink);
        }
    }
}

/// A resource the HPA computes utilization of, with the line of the metric.
struct UtilizationMetric {
    resource: String,
    container: Option<String>,
    line: u32,
}

fn utilization_metrics(hpa: &Object<'_>) -> Vec<UtilizationMetric> {
    let spec = hpa.node.get("spec");
    let mut found = Vec::new();
    if let Some(entry) = spec.and_then(|s| s.entry("targetCPUUtilizationPercentage")) {
        found.push(UtilizationMetric {
            resource: "cpu".to_string(),
            container: None,
            line: entry.key_line,
        });
    }
    let metrics = spec.and_then(|s| s.entry("metrics"));
    for metric in metrics.map(|m| m.value.items()).unwrap_or_default() {
        let kind = metric.get("type").and_then(Node::as_str);
        let (source, container) = match kind {
            Some("Resource") => (metric.get("resource"), None),
            Some("ContainerResource") => {
                let source = metric.get("containerResource");
                let container = source
                    .and_then(|s| s.get("container"))
                    .and_then(Node::as_str)
                    .map(str::to_string);
                (source, container)
            }
            _ => continue,
        };
        let Some(source) = source else { continue };
        let utilization = source
            .path(&["target", "type"])
            .and_then(Node::as_str)
            .is_some_and(|t| t == "Utilization")
            || source.get("targetAverageUtilization").is_some();
        if let (true, Some(resource)) = (utilization, source.get("name").and_then(Node::as_str)) {
            found.push(UtilizationMetric {
                resource: resource.to_string(),
                container,
                line: metric.line,
            });
        }
    }
    // Without metrics (v2) or a target (v1) the HPA scales on 80% CPU utilization.
    let has_metrics = metrics.is_some_and(|m| !m.value.items().is_empty());
    if found.is_empty() && !has_metrics {
        found.push(UtilizationMetric {
            resource: "cpu".to_string(),
            container: None,
            line: spec
                .and_then(|_| hpa.node.entry("spec"))
                .map_or(hpa.line, |e| e.key_line),
        });
    }
    found
}

fn check_hpa(context: &Context<'_, '_>, index: usize, hpa: &Object<'_>, sink: &mut Sink) {
    let spec = hpa.node.get("spec");
    let min = spec
        .and_then(|s| s.get("minReplicas"))
        .and_then(Node::as_i64)
        .unwrap_or(1);
    if let Some(max) = spec.and_then(|s| s.entry("maxReplicas"))
        && let Some(max_value) = max.value.as_i64()
        && min > max_value
    {
        let line = hpa.line_of(&["spec", "minReplicas"]);
        sink.object(
            &HPA_MIN_ABOVE_MAX,
            index,
            line,
            format!("minReplicas {min} is above maxReplicas {max_value}"),
        );
    }

    let target_ref = spec.and_then(|s| s.entry("scaleTargetRef"));
    let Some(target) = context.hpa_target(hpa) else {
        let (line, what) = match target_ref {
            Some(entry) => {
                let kind = entry
                    .value
                    .get("kind")
                    .and_then(Node::as_str)
                    .unwrap_or("?");
                let name = entry
                    .value
                    .get("name")
                    .and_then(Node::as_str)
                    .unwrap_or("?");
                (
                    entry.key_line,
                    format!("{kind} {name} is not among the inputs"),
                )
            }
            None => (hpa.line, "spec.scaleTargetRef is missing".to_string()),
        };
        sink.object(
            &HPA_TARGET_MISSING,
            index,
            line,
            format!("scale target {what}"),
        );
        return;
    };
    let Some(template) = context.object(target).and_then(Object::pod_template) else {
        return;
    };
    for metric in utilization_metrics(hpa) {
        let missing: Vec<&str> = template
            .app_containers()
            .filter(|c| {
                metric
                    .container
                    .as_deref()
                    .is_none_or(|name| c.name() == name)
            })
            .filter(|c| c.effective_request(&metric.resource).is_none())
            .map(|c| c.name())
            .collect();
        if !missing.is_empty() {
            let target_name = context
                .object(target)
                .map(Object::display)
                .unwrap_or_default();
            sink.object(
                &HPA_UTILIZATION_WITHOUT_REQUESTS,
                index,
                metric.line,
                format!(
                    "scales on {} utilization but container(s) {} of {target_name} have no {} request",
                    metric.resource,
                    missing.join(", "),
                    metric.resource
                ),
            );
        }
    }
}

fn check_pdb(
    context: &Context<'_, '_>,
    index: usize,
    pdb: &Object<'_>,
    under_pdb: &mut [bool],
    sink: &mut Sink,
) {
    let spec = pdb.node.get("spec");
    let selector_entry = spec.and_then(|s| s.entry("selector"));
    let Some(selector_entry) = selector_entry.filter(|e| !e.value.is_null()) else {
        // A null selector selects no pods in policy/v1.
        sink.object(
            &PDB_SELECTS_NOTHING,
            index,
            pdb.line_of(&["spec"]),
            "spec.selector is missing: the PDB selects no pods".to_string(),
        );
        return;
    };
    let selector = &selector_entry.value;
    let matched =
        context.workloads_matching(pdb.namespace.as_deref(), PodSelector::Label(selector));
    if matched.is_empty() {
        sink.object(
            &PDB_SELECTS_NOTHING,
            index,
            selector_entry.key_line,
            "the selector matches no pod template of the inputs".to_string(),
        );
        return;
    }
    for &workload in &matched {
        if let Some(flag) = under_pdb.get_mut(workload) {
            *flag = true;
        }
    }

    if let Some(entry) = spec.and_then(|s| s.entry("maxUnavailable"))
        && let Some(text) = entry.value.as_str()
        && matches!(text.trim(), "0" | "0%")
    {
        sink.object(
            &PDB_MAX_UNAVAILABLE_ZERO,
            index,
            entry.key_line,
            "maxUnavailable is 0: no pod can ever be evicted".to_string(),
        );
    }

    let Some(entry) = spec.and_then(|s| s.entry("minAvailable")) else {
        return;
    };
    // Kinds without a replica count (DaemonSets, Jobs) make the total unknown.
    let counts: Option<Vec<i64>> = matched.iter().map(|&w| context.min_pods(w)).collect();
    let Some(counts) = counts else { return };
    // Counts come from input: a negative one (rejected by the API) adds nothing, and huge
    // ones saturate instead of overflowing.
    let pods: i64 = counts
        .iter()
        .filter(|&&n| n > 0)
        .fold(0i64, |total, &n| total.saturating_add(n));
    let Some(text) = entry.value.as_str() else {
        return;
    };
    let required = match text.trim().strip_suffix('%') {
        Some(percent) => match percent.trim().parse::<f64>() {
            // The disruption controller rounds a percentage of pods up.
            Ok(p) => (p / 100.0 * pods as f64).ceil() as i64,
            Err(_) => return,
        },
        None => match text.trim().parse::<i64>() {
            Ok(n) => n,
            Err(_) => return,
        },
    };
    if required >= pods {
        let scaled = matched.iter().any(|&w| context.hpa_of(w).is_some());
        let basis = if scaled {
            "the HPA's minReplicas"
        } else {
            "the replicas"
        };
        sink.object(
            &PDB_MIN_AVAILABLE_TOO_HIGH,
            index,
            entry.key_line,
            format!(
                "minAvailable {text} requires {required} pod(s) but {basis} of the selected workloads give {pods}: no pod can be evicted"
            ),
        );
    }
}

fn check_knative(index: usize, service: &Object<'_>, sink: &mut Sink) {
    let Some(template) = service.node.path(&["spec", "template"]) else {
        return;
    };
    let Some(concurrency) = template
        .path(&["spec", "containerConcurrency"])
        .and_then(Node::as_f64)
        .filter(|c| *c > 0.0)
    else {
        return;
    };
    let Some(target) = template
        .path(&["metadata", "annotations"])
        .and_then(|a| a.entry("autoscaling.knative.dev/target"))
    else {
        return;
    };
    if let Some(value) = target.value.as_f64()
        && value > concurrency
    {
        sink.object(
            &KNATIVE_TARGET_ABOVE_CONCURRENCY,
            index,
            target.key_line,
            format!(
                "autoscaling target {value} is above containerConcurrency {concurrency}: the autoscaler waits for a load the pods refuse"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::lines_of;

    const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: app\n        image: x:1\n        resources:\n          requests: {memory: 64Mi}\n";

    const HPA: &str = "---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  minReplicas: 2\n  maxReplicas: 5\n  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n      target: {type: Utilization, averageUtilization: 70}\n";

    /// Two workloads at `i64::MAX` replicas under one PDB (the reviewer's repro).
    const OVERFLOW: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  replicas: 9223372036854775807\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec: {containers: [{name: c, image: x:1}]}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\nspec:\n  replicas: 9223372036854775807\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec: {containers: [{name: c, image: x:1}]}\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: p}\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {app: x}}\n";

    #[test]
    fn pdb_pod_counts_saturate_and_ignore_negative_replicas() {
        // Debug builds panic on overflow: this must simply not fire.
        assert!(lines_of(OVERFLOW, "pdb-min-available-too-high").is_empty());
        let percent = OVERFLOW.replace("minAvailable: 1", "minAvailable: 100%");
        assert_eq!(lines_of(&percent, "pdb-min-available-too-high"), vec![25]);
        // -5 replicas add nothing: 3 pods, minAvailable 2 leaves one evictable.
        let negative = OVERFLOW
            .replacen("9223372036854775807", "-5", 1)
            .replacen("9223372036854775807", "3", 1)
            .replace("minAvailable: 1", "minAvailable: 2");
        assert!(lines_of(&negative, "pdb-min-available-too-high").is_empty());
        let tight = negative.replace("minAvailable: 2", "minAvailable: 3");
        assert_eq!(lines_of(&tight, "pdb-min-available-too-high"), vec![25]);
    }

    #[test]
    fn hpa_on_cpu_without_cpu_requests() {
        let bad = format!("{DEPLOYMENT}{HPA}");
        assert_eq!(lines_of(&bad, "hpa-utilization-without-requests"), vec![28]);
        let good = bad.replace(
            "requests: {memory: 64Mi}",
            "requests: {memory: 64Mi, cpu: 100m}",
        );
        assert!(lines_of(&good, "hpa-utilization-without-requests").is_empty());
        let limit_only = bad.replace(
            "requests: {memory: 64Mi}",
            "requests: {memory: 64Mi}\n          limits: {cpu: 500m}",
        );
        assert!(lines_of(&limit_only, "hpa-utilization-without-requests").is_empty());
    }

    #[test]
    fn hpa_v1_default_is_cpu() {
        let hpa = "---\napiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n  scaleTargetRef: {kind: Deployment, name: web}\n  maxReplicas: 4\n";
        let bad = format!("{DEPLOYMENT}{hpa}");
        assert_eq!(lines_of(&bad, "hpa-utilization-without-requests"), vec![22]);
    }

    #[test]
    fn hpa_bounds_and_target() {
        let bad = format!(
            "{DEPLOYMENT}{}",
            HPA.replace("minReplicas: 2", "minReplicas: 6")
        );
        assert_eq!(lines_of(&bad, "hpa-min-above-max"), vec![25]);
        assert!(lines_of(&format!("{DEPLOYMENT}{HPA}"), "hpa-min-above-max").is_empty());
        let dangling = format!("{DEPLOYMENT}{}", HPA.replace("name: web}", "name: api}"));
        assert_eq!(lines_of(&dangling, "hpa-target-missing"), vec![24]);
        assert!(lines_of(&format!("{DEPLOYMENT}{HPA}"), "hpa-target-missing").is_empty());
    }

    const PDB: &str = "---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec:\n  minAvailable: 3\n  selector:\n    matchLabels: {app: web}\n";

    #[test]
    fn pdb_min_available_against_replicas_and_hpa() {
        let bad = format!("{DEPLOYMENT}{PDB}");
        assert_eq!(lines_of(&bad, "pdb-min-available-too-high"), vec![23]);
        let good = bad.replace("minAvailable: 3", "minAvailable: 2");
        assert!(lines_of(&good, "pdb-min-available-too-high").is_empty());
        let with_hpa = format!("{good}{HPA}");
        assert_eq!(lines_of(&with_hpa, "pdb-min-available-too-high"), vec![23]);
        let percent = bad.replace("minAvailable: 3", "minAvailable: 100%");
        assert_eq!(lines_of(&percent, "pdb-min-available-too-high"), vec![23]);
    }

    #[test]
    fn pdb_max_unavailable_zero() {
        let bad = format!(
            "{DEPLOYMENT}{}",
            PDB.replace("minAvailable: 3", "maxUnavailable: 0")
        );
        assert_eq!(lines_of(&bad, "pdb-max-unavailable-zero"), vec![23]);
        let good = bad.replace("maxUnavailable: 0", "maxUnavailable: 1");
        assert!(lines_of(&good, "pdb-max-unavailable-zero").is_empty());
    }

    #[test]
    fn pdb_selecting_nothing() {
        let bad = format!("{DEPLOYMENT}{}", PDB.replace("{app: web}", "{app: webb}"));
        assert_eq!(lines_of(&bad, "pdb-selects-nothing"), vec![24]);
        assert!(lines_of(&format!("{DEPLOYMENT}{PDB}"), "pdb-selects-nothing").is_empty());
    }

    #[test]
    fn single_replica_under_pdb() {
        let bad = format!(
            "{}{}",
            DEPLOYMENT.replace("replicas: 3", "replicas: 1"),
            PDB.replace("minAvailable: 3", "maxUnavailable: 1")
        );
        assert_eq!(lines_of(&bad, "single-replica-under-pdb"), vec![6]);
        let good = bad.replace("replicas: 1", "replicas: 2");
        assert!(lines_of(&good, "single-replica-under-pdb").is_empty());
    }

    #[test]
    fn knative_target_above_concurrency() {
        let bad = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: fn}\nspec:\n  template:\n    metadata:\n      annotations:\n        autoscaling.knative.dev/target: \"50\"\n    spec:\n      containerConcurrency: 10\n      containers: [{image: x:1}]\n";
        assert_eq!(lines_of(bad, "knative-target-above-concurrency"), vec![8]);
        let good = bad.replace("\"50\"", "\"7\"");
        assert!(lines_of(&good, "knative-target-above-concurrency").is_empty());
    }
}
