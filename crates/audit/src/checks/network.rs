//! Traffic checks across objects: Services that select nothing or name a missing
//! targetPort, ServiceMonitors that select no Service or name a missing port, and Istio
//! retries that cannot fit in their route's timeout.

use super::probes::service_selector;
use super::{Context, PodSelector, Sink};
use crate::catalog::{
    ISTIO_RETRIES_EXCEED_TIMEOUT, SERVICE_SELECTS_NOTHING, SERVICE_TARGET_PORT_MISSING,
    SERVICEMONITOR_PORT_MISSING, SERVICEMONITOR_SELECTS_NOTHING,
};
use crate::objects::{Object, label_selector_matches, same_namespace};
use crate::quantity::duration_seconds;
use crate::yaml::{self, Node};

/// Labels of the `kubernetes` Service the API server keeps in `default`.
const BUILTIN_APISERVER_LABELS: &str = "component: apiserver\nprovider: kubernetes\n";

/// Runs the network checks.
pub fn check(context: &Context<'_, '_>, sink: &mut Sink) {
    for (index, service) in context.of_kind("Service") {
        if service.group().is_empty() {
            check_service(context, index, service, sink);
        }
    }
    for (index, monitor) in context.of_kind("ServiceMonitor") {
        check_service_monitor(context, index, monitor, sink);
    }
    for (index, route) in context.of_kind("VirtualService") {
        check_virtual_service(index, route, sink);
    }
}

fn check_service(context: &Context<'_, '_>, index: usize, service: &Object<'_>, sink: &mut Sink) {
    let Some(selector) = service_selector(service) else {
        return;
    };
    let matched =
        context.workloads_matching(service.namespace.as_deref(), PodSelector::Map(selector));
    if matched.is_empty() {
        sink.object(
            &SERVICE_SELECTS_NOTHING,
            index,
            service.line_of(&["spec", "selector"]),
            "the selector matches no pod template of the inputs: the Service has no endpoints"
                .to_string(),
        );
        return;
    }
    let ports = service
        .node
        .path(&["spec", "ports"])
        .map(Node::items)
        .unwrap_or_default();
    for port in ports {
        // targetPort defaults to port.
        let Some(target) = port.entry("targetPort").or_else(|| port.entry("port")) else {
            continue;
        };
        if let Some(number) = target.value.as_i64() {
            if !numeric_target_declared(context, &matched, &target.value) {
                sink.object(
                    &SERVICE_TARGET_PORT_MISSING,
                    index,
                    target.key_line,
                    format!(
                        "targetPort {number}: the selected containers declare their ports, and none is {number}"
                    ),
                );
            }
            continue;
        }
        let Some(name) = target.value.as_str() else {
            continue;
        };
        // Pods made by an operator have ports this audit cannot see: assume declared.
        let declared = matched.iter().any(|&w| {
            context
                .object(w)
                .and_then(Object::pod_template)
                .is_none_or(|t| t.app_containers().any(|c| c.declares_port(&target.value)))
        });
        if !declared {
            sink.object(
                &SERVICE_TARGET_PORT_MISSING,
                index,
                target.key_line,
                format!("targetPort `{name}` is not a port name of any selected container"),
            );
        }
    }
}

/// Whether a numeric targetPort may reach a selected container. A container that lists no
/// ports may listen on any (the list is optional), and operator-made pods have ports this
/// audit cannot see: either makes the port count as declared. Only when every selected
/// container lists its ports and none is the number is it a defect.
fn numeric_target_declared(context: &Context<'_, '_>, matched: &[usize], port: &Node<'_>) -> bool {
    matched.iter().any(|&w| {
        let Some(template) = context.object(w).and_then(Object::pod_template) else {
            return true;
        };
        template.app_containers().any(|c| {
            c.node.get("ports").is_none_or(|p| p.items().is_empty()) || c.declares_port(port)
        })
    })
}

fn check_service_monitor(
    context: &Context<'_, '_>,
    index: usize,
    monitor: &Object<'_>,
    sink: &mut Sink,
) {
    let Some(spec) = monitor.node.get("spec") else {
        return;
    };
    let Some(selector) = spec.entry("selector") else {
        return;
    };
    let namespaces = spec.get("namespaceSelector");
    let any_namespace = namespaces
        .and_then(|n| n.get("any"))
        .and_then(Node::as_bool)
        .unwrap_or(false);
    let names: Vec<&str> = namespaces
        .and_then(|n| n.get("matchNames"))
        .map(Node::items)
        .unwrap_or_default()
        .iter()
        .filter_map(Node::as_str)
        .collect();
    // When the inputs hold no Service at all in the namespaces named (kube-system's,
    // created by the cluster installer), the targets are outside what this run can resolve.
    if !any_namespace && !names.is_empty() && !names.iter().any(|ns| context.has_service_in(ns)) {
        return;
    }
    let in_scope = |service: &Object<'_>| {
        if any_namespace {
            return true;
        }
        if names.is_empty() {
            return same_namespace(service.namespace.as_deref(), monitor.namespace.as_deref());
        }
        names
            .iter()
            .any(|n| same_namespace(service.namespace.as_deref(), Some(n)))
    };
    let services: Vec<&Object<'_>> = context
        .services_matching(&selector.value, in_scope)
        .into_iter()
        .filter_map(|i| context.object(i))
        .collect();
    if services.is_empty() {
        // The API server creates the `kubernetes` Service in `default` itself.
        let builtin = yaml::parse(BUILTIN_APISERVER_LABELS);
        let default_in_scope = any_namespace
            || names.contains(&"default")
            || (names.is_empty() && monitor.namespace.as_deref().is_none_or(|n| n == "default"));
        if default_in_scope
            && builtin
                .documents
                .first()
                .is_some_and(|labels| label_selector_matches(&selector.value, Some(labels)))
        {
            return;
        }
        sink.object(
            &SERVICEMONITOR_SELECTS_NOTHING,
            index,
            selector.key_line,
            "the selector matches no Service of the inputs: nothing is scraped".to_string(),
        );
        return;
    }
    for endpoint in spec.get("endpoints").map(Node::items).unwrap_or_default() {
        let Some(port) = endpoint.entry("port") else {
            continue;
        };
        let Some(name) = port.value.as_str() else {
            continue;
        };
        let exists = services.iter().any(|s| {
            s.node
                .path(&["spec", "ports"])
                .map(Node::items)
                .unwrap_or_default()
                .iter()
                .any(|p| p.get("name").and_then(Node::as_str) == Some(name))
        });
        if !exists {
            sink.object(
                &SERVICEMONITOR_PORT_MISSING,
                index,
                port.key_line,
                format!("endpoint port `{name}` is not a port name of the selected Service(s)"),
            );
        }
    }
}

fn check_virtual_service(index: usize, route: &Object<'_>, sink: &mut Sink) {
    if !route.group().starts_with("networking.istio.io") {
        return;
    }
    for http in route
        .node
        .path(&["spec", "http"])
        .map(Node::items)
        .unwrap_or_default()
    {
        let Some(timeout) = http
            .get("timeout")
            .and_then(Node::as_str)
            .and_then(duration_seconds)
            .filter(|t| *t > 0.0)
        else {
            continue;
        };
        let Some(retries) = http.entry("retries") else {
            continue;
        };
        let Some(attempts) = retries.value.get("attempts").and_then(Node::as_i64) else {
            continue;
        };
        let Some(per_try) = retries
            .value
            .get("perTryTimeout")
            .and_then(Node::as_str)
            .and_then(duration_seconds)
        else {
            continue;
        };
        let total = attempts as f64 * per_try;
        if total > timeout {
            sink.object(
                &ISTIO_RETRIES_EXCEED_TIMEOUT,
                index,
                retries.key_line,
                format!(
                    "{attempts} attempts x perTryTimeout {per_try}s = {total}s exceed the route timeout {timeout}s"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::lines_of;

    const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: app\n        ports: [{name: http, containerPort: 8080}, {name: metrics, containerPort: 9090}]\n";

    const SERVICE: &str = "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\n  labels: {app: web}\nspec:\n  selector: {app: web}\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n  - name: metrics\n    port: 9090\n";

    #[test]
    fn service_selecting_nothing() {
        let bad = format!(
            "{DEPLOYMENT}{}",
            SERVICE.replace("selector: {app: web}", "selector: {app: api}")
        );
        assert_eq!(lines_of(&bad, "service-selects-nothing"), vec![24]);
        assert!(lines_of(&format!("{DEPLOYMENT}{SERVICE}"), "service-selects-nothing").is_empty());
        let other_namespace =
            bad.replace("namespace: shop\n  labels", "namespace: other\n  labels");
        assert_eq!(
            lines_of(&other_namespace, "service-selects-nothing"),
            vec![24]
        );
    }

    #[test]
    fn service_target_port_name_missing() {
        let bad = format!(
            "{DEPLOYMENT}{}",
            SERVICE.replace("targetPort: http", "targetPort: web")
        );
        assert_eq!(lines_of(&bad, "service-target-port-missing"), vec![28]);
        assert!(
            lines_of(
                &format!("{DEPLOYMENT}{SERVICE}"),
                "service-target-port-missing"
            )
            .is_empty()
        );
    }

    #[test]
    fn service_numeric_target_port_missing() {
        // targetPort 8081 where the container lists 8080 and 9090.
        let bad = format!(
            "{DEPLOYMENT}{}",
            SERVICE.replace("targetPort: http", "targetPort: 8081")
        );
        assert_eq!(lines_of(&bad, "service-target-port-missing"), vec![28]);
        let declared = bad.replace("targetPort: 8081", "targetPort: 8080");
        assert!(lines_of(&declared, "service-target-port-missing").is_empty());
        // Without targetPort the port itself is the target: 9091 is not listed.
        let defaulted = format!(
            "{DEPLOYMENT}{}",
            SERVICE.replace("port: 9090", "port: 9091")
        );
        assert_eq!(
            lines_of(&defaulted, "service-target-port-missing"),
            vec![30]
        );
        // A container that lists no ports may listen on anything.
        let unlisted = bad.replace(
            "        ports: [{name: http, containerPort: 8080}, {name: metrics, containerPort: 9090}]\n",
            "",
        );
        assert!(lines_of(&unlisted, "service-target-port-missing").is_empty());
    }

    const MONITOR: &str = "---\napiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  selector:\n    matchLabels: {app: web}\n  endpoints:\n  - port: metrics\n";

    #[test]
    fn service_monitor_selecting_nothing() {
        let bad = format!(
            "{DEPLOYMENT}{SERVICE}{}",
            MONITOR.replace("{app: web}", "{app: api}")
        );
        assert_eq!(lines_of(&bad, "servicemonitor-selects-nothing"), vec![38]);
        let good = format!("{DEPLOYMENT}{SERVICE}{MONITOR}");
        assert!(lines_of(&good, "servicemonitor-selects-nothing").is_empty());
    }

    #[test]
    fn service_monitor_port_missing() {
        let bad = format!(
            "{DEPLOYMENT}{SERVICE}{}",
            MONITOR.replace("port: metrics", "port: prom")
        );
        assert_eq!(lines_of(&bad, "servicemonitor-port-missing"), vec![41]);
        let good = format!("{DEPLOYMENT}{SERVICE}{MONITOR}");
        assert!(lines_of(&good, "servicemonitor-port-missing").is_empty());
    }

    #[test]
    fn istio_retries() {
        let bad = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web}\nspec:\n  hosts: [web]\n  http:\n  - route: [{destination: {host: web}}]\n    timeout: 5s\n    retries:\n      attempts: 3\n      perTryTimeout: 2s\n";
        assert_eq!(lines_of(bad, "istio-retries-exceed-timeout"), vec![9]);
        let good = bad.replace("timeout: 5s", "timeout: 7s");
        assert!(lines_of(&good, "istio-retries-exceed-timeout").is_empty());
    }
}
