//! Probe checks: timing (timeout against period, a liveness window shorter than the start-up),
//! liveness identical to readiness, probes on undeclared ports, and containers behind a
//! Service without a readiness probe.

use super::{Context, Pod, PodSelector, Sink};
use crate::catalog::{
    LIVENESS_IDENTICAL_TO_READINESS, LIVENESS_KILLS_SLOW_START, PROBE_PORT_NOT_DECLARED,
    PROBE_TIMEOUT_NOT_BELOW_PERIOD, READINESS_PROBE_MISSING,
};
use crate::objects::Object;
use crate::yaml::Node;

/// The probe kinds, as fields of a container.
const PROBES: [&str; 3] = ["livenessProbe", "readinessProbe", "startupProbe"];

/// A probe's timing, with the API's defaults.
struct Timing {
    initial_delay: i64,
    period: i64,
    timeout: i64,
    failure_threshold: i64,
}

impl Timing {
    fn of(probe: &Node<'_>) -> Timing {
        let field = |name: &str, default: i64| {
            probe
                .get(name)
                .and_then(Node::as_i64)
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Timing {
            initial_delay: probe
                .get("initialDelaySeconds")
                .and_then(Node::as_i64)
                .unwrap_or(0),
            period: field("periodSeconds", 10),
            timeout: field("timeoutSeconds", 1),
            failure_threshold: field("failureThreshold", 3),
        }
    }

    /// Seconds after start when failing probes have restarted (liveness) the container.
    fn failure_window(&self) -> i64 {
        self.initial_delay
            .saturating_add(self.failure_threshold.saturating_mul(self.period))
    }
}

/// What a probe tests, with the API's defaults filled in; its timing is left out: a
/// liveness probe that hits the readiness endpoint less often still restarts every pod
/// when a dependency of that endpoint fails.
#[derive(Debug, PartialEq, Eq)]
enum Handler<'n> {
    Http {
        path: &'n str,
        port: Option<&'n str>,
        scheme: &'n str,
        host: Option<&'n str>,
    },
    Tcp {
        port: Option<&'n str>,
        host: Option<&'n str>,
    },
    Exec(Vec<&'n str>),
    Grpc {
        port: Option<&'n str>,
        service: &'n str,
    },
}

impl<'n> Handler<'n> {
    fn of(probe: &'n Node<'_>) -> Option<Handler<'n>> {
        let text = |node: &'n Node<'_>, key: &str| node.get(key).and_then(Node::as_str);
        if let Some(http) = probe.get("httpGet") {
            return Some(Handler::Http {
                path: text(http, "path").unwrap_or("/"),
                port: text(http, "port"),
                scheme: text(http, "scheme").unwrap_or("HTTP"),
                host: text(http, "host"),
            });
        }
        if let Some(tcp) = probe.get("tcpSocket") {
            return Some(Handler::Tcp {
                port: text(tcp, "port"),
                host: text(tcp, "host"),
            });
        }
        if let Some(exec) = probe.get("exec") {
            let command = exec.get("command").map(Node::items).unwrap_or_default();
            return Some(Handler::Exec(
                command.iter().filter_map(Node::as_str).collect(),
            ));
        }
        let grpc = probe.get("grpc")?;
        Some(Handler::Grpc {
            port: text(grpc, "port"),
            service: text(grpc, "service").unwrap_or(""),
        })
    }
}

/// Runs the per-container probe checks of one pod template.
pub fn check_pod(pod: &Pod<'_, '_>, sink: &mut Sink) {
    for container in pod.template.app_containers() {
        for name in PROBES {
            let Some(entry) = container.node.entry(name) else {
                continue;
            };
            let probe = &entry.value;
            let timing = Timing::of(probe);
            if timing.timeout >= timing.period {
                let line = probe
                    .entry("timeoutSeconds")
                    .map_or(entry.key_line, |e| e.key_line);
                sink.container(
                    &PROBE_TIMEOUT_NOT_BELOW_PERIOD,
                    pod.index,
                    &container,
                    line,
                    format!(
                        "{name}: timeoutSeconds {} is not below periodSeconds {}",
                        timing.timeout, timing.period
                    ),
                );
            }
            for handler in ["httpGet", "tcpSocket", "grpc"] {
                if let Some(port) = probe.path(&[handler]).and_then(|h| h.entry("port"))
                    && !container.declares_port(&port.value)
                {
                    let shown = port.value.as_str().unwrap_or_default();
                    let message = if port.value.as_i64().is_some() {
                        format!("{name} probes port {shown}, which the container does not declare")
                    } else {
                        format!(
                            "{name} probes the named port `{shown}`, which the container does not declare: the probe always fails"
                        )
                    };
                    sink.container(
                        &PROBE_PORT_NOT_DECLARED,
                        pod.index,
                        &container,
                        port.key_line,
                        message,
                    );
                }
            }
        }

        let liveness = container.node.entry("livenessProbe");
        let readiness = container.node.get("readinessProbe");
        if let (Some(liveness), Some(readiness)) = (liveness, readiness)
            && let Some(handler) = Handler::of(&liveness.value)
            && Handler::of(readiness) == Some(handler)
        {
            sink.container(
                &LIVENESS_IDENTICAL_TO_READINESS,
                pod.index,
                &container,
                liveness.key_line,
                "livenessProbe tests the same endpoint as readinessProbe".to_string(),
            );
        }

        if let (Some(liveness), Some(readiness)) = (liveness, readiness)
            && container.node.get("startupProbe").is_none()
        {
            let window = Timing::of(&liveness.value).failure_window();
            // The readiness delay is the author's own statement of how long start-up takes.
            let start_up = Timing::of(readiness).initial_delay;
            if start_up > window {
                sink.container(
                    &LIVENESS_KILLS_SLOW_START,
                    pod.index,
                    &container,
                    liveness.key_line,
                    format!(
                        "the liveness probe restarts the container {window}s after start, but readiness waits {start_up}s for it to start, and there is no startupProbe"
                    ),
                );
            }
        }
    }
}

/// Readiness probes of containers behind a Service.
pub fn check_behind_services(context: &Context<'_, '_>, sink: &mut Sink) {
    let mut behind_service = vec![false; context.objects.len()];
    for (_, service) in context.of_kind("Service") {
        if service.group() != "" {
            continue;
        }
        let Some(selector) = service_selector(service) else {
            continue;
        };
        for workload in
            context.workloads_matching(service.namespace.as_deref(), PodSelector::Map(selector))
        {
            if let Some(flag) = behind_service.get_mut(workload) {
                *flag = true;
            }
        }
    }
    for &index in &context.workloads {
        if !behind_service.get(index).copied().unwrap_or(false) {
            continue;
        }
        let Some(object) = context.object(index) else {
            continue;
        };
        // Jobs finish; a Service in front of one is not serving traffic the usual way.
        if matches!(object.kind.as_str(), "Job" | "CronJob") {
            continue;
        }
        let Some(template) = object.pod_template() else {
            continue;
        };
        for container in template.app_containers() {
            if container.node.get("readinessProbe").is_none() {
                sink.container(
                    &READINESS_PROBE_MISSING,
                    index,
                    &container,
                    container.line(),
                    "a Service sends traffic to this container, which has no readinessProbe"
                        .to_string(),
                );
            }
        }
    }
}

/// A Service's selector when it selects pods (not ExternalName, not empty).
pub fn service_selector<'n, 'a>(service: &'n Object<'a>) -> Option<&'n Node<'a>> {
    if service.node.path(&["spec", "type"]).and_then(Node::as_str) == Some("ExternalName") {
        return None;
    }
    service
        .node
        .path(&["spec", "selector"])
        .filter(|s| !s.entries().is_empty())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::lines_of;

    const HEAD: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: app\n        ports: [{name: http, containerPort: 8080}]\n";

    #[test]
    fn timeout_not_below_period() {
        let bad = format!(
            "{HEAD}        readinessProbe:\n          httpGet: {{path: /, port: http}}\n          periodSeconds: 5\n          timeoutSeconds: 5\n"
        );
        assert_eq!(lines_of(&bad, "probe-timeout-not-below-period"), vec![18]);
        let good = bad.replace("timeoutSeconds: 5", "timeoutSeconds: 2");
        assert!(lines_of(&good, "probe-timeout-not-below-period").is_empty());
    }

    #[test]
    fn slow_start_killed_by_liveness() {
        let bad = format!(
            "{HEAD}        livenessProbe:\n          httpGet: {{path: /live, port: http}}\n          periodSeconds: 5\n        readinessProbe:\n          httpGet: {{path: /ready, port: http}}\n          initialDelaySeconds: 60\n"
        );
        assert_eq!(lines_of(&bad, "liveness-kills-slow-start"), vec![15]);
        let good = format!(
            "{bad}        startupProbe:\n          httpGet: {{path: /live, port: http}}\n          failureThreshold: 30\n"
        );
        assert!(lines_of(&good, "liveness-kills-slow-start").is_empty());
    }

    #[test]
    fn identical_probes() {
        let bad = format!(
            "{HEAD}        livenessProbe:\n          httpGet: {{path: /health, port: http}}\n        readinessProbe:\n          httpGet: {{path: /health, port: http}}\n"
        );
        assert_eq!(lines_of(&bad, "liveness-identical-to-readiness"), vec![15]);
        let good = bad.replacen("/health", "/live", 1);
        assert!(lines_of(&good, "liveness-identical-to-readiness").is_empty());
        // Only the timing differs (the reviewer's repro): still the same endpoint.
        let timed = bad.replacen(
            "port: http}\n",
            "port: http}\n          initialDelaySeconds: 10\n          periodSeconds: 20\n",
            1,
        );
        assert_eq!(
            lines_of(&timed, "liveness-identical-to-readiness"),
            vec![15]
        );
        // Defaults count: no path is `/`, no scheme is HTTP.
        let defaults = format!(
            "{HEAD}        livenessProbe:\n          httpGet: {{port: http}}\n        readinessProbe:\n          httpGet: {{path: /, port: http, scheme: HTTP}}\n          failureThreshold: 1\n"
        );
        assert_eq!(
            lines_of(&defaults, "liveness-identical-to-readiness"),
            vec![15]
        );
        let other_port = defaults.replacen("port: http}", "port: 9090}", 1);
        assert!(lines_of(&other_port, "liveness-identical-to-readiness").is_empty());
        let exec = format!(
            "{HEAD}        livenessProbe:\n          exec: {{command: [check, live]}}\n          periodSeconds: 30\n        readinessProbe:\n          exec: {{command: [check, live]}}\n"
        );
        assert_eq!(lines_of(&exec, "liveness-identical-to-readiness"), vec![15]);
        let grpc = format!(
            "{HEAD}        livenessProbe:\n          grpc: {{port: 9000}}\n        readinessProbe:\n          grpc: {{port: 9000, service: ready}}\n"
        );
        assert!(lines_of(&grpc, "liveness-identical-to-readiness").is_empty());
    }

    #[test]
    fn probe_on_undeclared_port() {
        let bad = format!(
            "{HEAD}        readinessProbe:\n          httpGet:\n            path: /\n            port: metrics\n"
        );
        assert_eq!(lines_of(&bad, "probe-port-not-declared"), vec![18]);
        let good = bad.replace("port: metrics", "port: http");
        assert!(lines_of(&good, "probe-port-not-declared").is_empty());
        let numeric = bad.replace("port: metrics", "port: 8080");
        assert!(lines_of(&numeric, "probe-port-not-declared").is_empty());
        let stale = bad.replace("port: metrics", "port: 9999");
        assert_eq!(lines_of(&stale, "probe-port-not-declared"), vec![18]);
        let no_ports = stale.replace("        ports: [{name: http, containerPort: 8080}]\n", "");
        assert!(lines_of(&no_ports, "probe-port-not-declared").is_empty());
    }

    #[test]
    fn readiness_missing_behind_a_service() {
        let service = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n";
        let bad = format!("{HEAD}{service}");
        assert_eq!(lines_of(&bad, "readiness-probe-missing"), vec![13]);
        assert!(lines_of(HEAD, "readiness-probe-missing").is_empty());
    }
}
