//! Runtime defects no linter checks: Go's GOMAXPROCS, GOMEMLIMIT and GOGC and the JVM
//! heap against the container's limits, and the termination grace period against the
//! preStop sleep.

use super::{Pod, Sink};
use crate::catalog::{
    GOGC_OFF_WITHOUT_GOMEMLIMIT, GOMAXPROCS_ABOVE_CPU_LIMIT, GOMEMLIMIT_NOT_BELOW_MEMORY_LIMIT,
    GRACE_PERIOD_SHORTER_THAN_PRESTOP, JVM_HEAP_NOT_BELOW_MEMORY_LIMIT,
};
use crate::objects::Container;
use crate::quantity::{
    cpu_millis, duration_seconds, go_memory_limit, human_bytes, jvm_size, memory_bytes,
};
use crate::yaml::Node;

/// Kubernetes' default terminationGracePeriodSeconds.
const DEFAULT_GRACE_SECONDS: f64 = 30.0;

/// Env vars the JVM (or its launch scripts) read options from.
const JVM_OPTION_VARS: [&str; 5] = [
    "JAVA_OPTS",
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "_JAVA_OPTIONS",
    "JVM_OPTS",
];

/// Runs the runtime checks on one pod template.
pub fn check_pod(pod: &Pod<'_, '_>, sink: &mut Sink) {
    for container in pod.template.containers() {
        go_runtime(pod, &container, sink);
        jvm_heap(pod, &container, sink);
    }
    grace_period(pod, sink);
}

fn go_runtime(pod: &Pod<'_, '_>, container: &Container<'_, '_>, sink: &mut Sink) {
    let cpu_limit = container
        .resource("limits", "cpu")
        .and_then(Node::as_str)
        .and_then(cpu_millis);
    if let (Some((value, line)), Some(limit)) = (container.env_value("GOMAXPROCS"), cpu_limit)
        && let Ok(procs) = value.trim().parse::<u32>()
    {
        // Go 1.25 rounds a fractional limit up, and never goes below 1.
        let allowed = (limit / 1000.0).ceil().max(1.0);
        if f64::from(procs) > allowed {
            sink.container(
                &GOMAXPROCS_ABOVE_CPU_LIMIT,
                pod.index,
                container,
                line,
                format!(
                    "GOMAXPROCS={procs} but the CPU limit is {}m ({allowed} core(s))",
                    limit.round()
                ),
            );
        }
    }

    let memory_limit = container
        .resource("limits", "memory")
        .and_then(Node::as_str)
        .and_then(memory_bytes);
    let gomemlimit = gomemlimit(container);
    match (&gomemlimit, memory_limit) {
        (Some(GoMemLimit::Malformed(text, line)), _) => sink.container(
            &GOMEMLIMIT_NOT_BELOW_MEMORY_LIMIT,
            pod.index,
            container,
            *line,
            format!(
                "GOMEMLIMIT={text} is not valid Go syntax (B, KiB, MiB, GiB, TiB): the Go runtime aborts at start"
            ),
        ),
        (Some(GoMemLimit::Bytes(bytes, line)), Some(limit)) if *bytes >= limit => {
            sink.container(
                &GOMEMLIMIT_NOT_BELOW_MEMORY_LIMIT,
                pod.index,
                container,
                *line,
                format!(
                    "GOMEMLIMIT is {} but the memory limit is {}: no headroom for non-heap memory",
                    human_bytes(*bytes),
                    human_bytes(limit)
                ),
            );
        }
        (Some(GoMemLimit::FromLimit(line)), Some(_)) => sink.container(
            &GOMEMLIMIT_NOT_BELOW_MEMORY_LIMIT,
            pod.index,
            container,
            *line,
            "GOMEMLIMIT comes from limits.memory, so it equals the memory limit: no headroom"
                .to_string(),
        ),
        _ => {}
    }

    if let Some((gogc, line)) = container.env_value("GOGC")
        && gogc.trim().eq_ignore_ascii_case("off")
        && !matches!(
            gomemlimit,
            Some(GoMemLimit::Bytes(..) | GoMemLimit::FromLimit(_))
        )
    {
        sink.container(
            &GOGC_OFF_WITHOUT_GOMEMLIMIT,
            pod.index,
            container,
            line,
            "GOGC=off and no GOMEMLIMIT: the garbage collector never runs".to_string(),
        );
    }
}

enum GoMemLimit {
    Bytes(f64, u32),
    Malformed(String, u32),
    /// From `resourceFieldRef: limits.memory` without a divisor: the limit itself.
    FromLimit(u32),
}

fn gomemlimit(container: &Container<'_, '_>) -> Option<GoMemLimit> {
    let entry = container
        .env()
        .iter()
        .rev()
        .find(|e| e.get("name").and_then(Node::as_str) == Some("GOMEMLIMIT"))?;
    if let Some(value) = entry.entry("value") {
        let text = value.value.as_str()?.trim();
        if text.eq_ignore_ascii_case("off") || text.is_empty() {
            return None;
        }
        return Some(match go_memory_limit(text) {
            Some(bytes) => GoMemLimit::Bytes(bytes, value.key_line),
            None => GoMemLimit::Malformed(text.to_string(), value.key_line),
        });
    }
    let field = entry.path(&["valueFrom", "resourceFieldRef"])?;
    let divisor = field.get("divisor").and_then(Node::as_str);
    (field.get("resource").and_then(Node::as_str) == Some("limits.memory")
        && divisor.is_none_or(|d| memory_bytes(d) == Some(1.0)))
    .then(|| GoMemLimit::FromLimit(entry.entry("valueFrom").map_or(entry.line, |e| e.key_line)))
}

fn jvm_heap(pod: &Pod<'_, '_>, container: &Container<'_, '_>, sink: &mut Sink) {
    let Some(limit) = container
        .resource("limits", "memory")
        .and_then(Node::as_str)
        .and_then(memory_bytes)
    else {
        return;
    };
    let mut texts: Vec<(&str, u32)> = Vec::new();
    for entry in container.env() {
        let name = entry.get("name").and_then(Node::as_str).unwrap_or_default();
        if let Some(value) = entry.entry("value")
            && let Some(text) = value.value.as_str()
            && (JVM_OPTION_VARS.contains(&name)
                || text.contains("-Xmx")
                || text.contains("RAMPercentage"))
        {
            texts.push((text, value.key_line));
        }
    }
    for field in ["command", "args"] {
        for item in container
            .node
            .get(field)
            .map(Node::items)
            .unwrap_or_default()
        {
            if let Some(text) = item.as_str() {
                texts.push((text, item.line));
            }
        }
    }
    for (text, line) in texts {
        for token in text.split_whitespace() {
            let token = token.trim_matches(|c| c == '"' || c == '\'');
            if let Some(size) = token.strip_prefix("-Xmx")
                && let Some(heap) = jvm_size(size)
                && heap >= limit
            {
                sink.container(
                    &JVM_HEAP_NOT_BELOW_MEMORY_LIMIT,
                    pod.index,
                    container,
                    line,
                    format!(
                        "-Xmx{size} ({}) is not below the memory limit {}",
                        human_bytes(heap),
                        human_bytes(limit)
                    ),
                );
            } else if let Some(percent) = token.strip_prefix("-XX:MaxRAMPercentage=")
                && let Ok(percent) = percent.parse::<f64>()
                && percent >= 100.0
            {
                sink.container(
                    &JVM_HEAP_NOT_BELOW_MEMORY_LIMIT,
                    pod.index,
                    container,
                    line,
                    format!(
                        "-XX:MaxRAMPercentage={percent} lets the heap take the whole memory limit {}",
                        human_bytes(limit)
                    ),
                );
            }
        }
    }
}

fn grace_period(pod: &Pod<'_, '_>, sink: &mut Sink) {
    let spec = pod.template.spec;
    let grace_entry = spec.entry("terminationGracePeriodSeconds");
    let grace = grace_entry
        .and_then(|e| e.value.as_f64())
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    for container in pod.template.app_containers() {
        let Some(pre_stop) = container.node.path(&["lifecycle", "preStop"]) else {
            continue;
        };
        let Some((sleep, sleep_line)) = pre_stop_sleep(pre_stop) else {
            continue;
        };
        // The grace period also has to cover the application's own shutdown after the
        // sleep, so a grace period equal to the sleep leaves it no time at all.
        if grace <= sleep {
            let line = grace_entry.map_or(sleep_line, |e| e.key_line);
            let source = if grace_entry.is_some() {
                "terminationGracePeriodSeconds"
            } else {
                "the default terminationGracePeriodSeconds"
            };
            sink.container(
                &GRACE_PERIOD_SHORTER_THAN_PRESTOP,
                pod.index,
                &container,
                line,
                format!(
                    "{source} is {grace}s, not longer than the preStop hook's {sleep}s sleep: no time is left for a graceful shutdown"
                ),
            );
        }
    }
}

/// Seconds a preStop hook sleeps (the `sleep:` action, or `sleep N` in an exec command),
/// with the line that says so.
pub fn pre_stop_sleep(pre_stop: &Node<'_>) -> Option<(f64, u32)> {
    if let Some(seconds) = pre_stop.entry("sleep").and_then(|e| {
        e.value
            .get("seconds")
            .and_then(Node::as_f64)
            .map(|s| (s, e.key_line))
    }) {
        return Some(seconds);
    }
    let command = pre_stop.path(&["exec", "command"])?;
    let mut total = 0.0;
    let mut line = None;
    let items = command.items();
    let words: Vec<(&str, u32)> = items
        .iter()
        .filter_map(|i| i.as_str().map(|s| (s, i.line)))
        .flat_map(|(s, l)| {
            s.split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')'))
                .filter(|w| !w.is_empty())
                .map(move |w| (w, l))
        })
        .collect();
    for pair in words.windows(2) {
        let [(word, word_line), (argument, _)] = pair else {
            continue;
        };
        if word.rsplit('/').next() == Some("sleep")
            && let Some(seconds) = sleep_argument(argument)
        {
            total += seconds;
            line.get_or_insert(*word_line);
        }
    }
    line.map(|l| (total, l))
}

/// `sleep`'s argument: seconds, or with a GNU suffix (`s`, `m`, `h`).
fn sleep_argument(text: &str) -> Option<f64> {
    let text = text.trim_matches(|c| c == '"' || c == '\'');
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds.is_finite().then_some(seconds);
    }
    if let Some(days) = text.strip_suffix('d') {
        return days.parse::<f64>().ok().map(|d| d * 86_400.0);
    }
    duration_seconds(text)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::lines_of;
    use super::*;
    use crate::yaml::parse;

    const DEPLOYMENT_HEAD: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n";

    fn deployment(spec: &str) -> String {
        format!("{DEPLOYMENT_HEAD}{spec}")
    }

    #[test]
    fn gomaxprocs_above_limit_fires_at_the_env_value() {
        let text = deployment(
            "      containers:\n      - name: app\n        image: x:1\n        env:\n        - name: GOMAXPROCS\n          value: \"8\"\n        resources:\n          limits: {cpu: 1500m}\n",
        );
        assert_eq!(lines_of(&text, "gomaxprocs-above-cpu-limit"), vec![17]);
    }

    #[test]
    fn merge_keys_give_the_merged_container_its_base_fields() {
        // A second container built from the first with `<<: *base` (the reviewer's repro).
        let text = deployment(
            "      containers:\n      - &base\n        name: app\n        image: x:1\n        resources: &res\n          requests: {cpu: 100m, memory: 64Mi}\n          limits: {cpu: 1, memory: 64Mi}\n        env:\n        - {name: GOMAXPROCS, value: \"4\"}\n      - <<: *base\n        name: side\n",
        );
        let parsed = parse(&text);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        // Both containers: the merged one reports at the base's line it inherited.
        assert_eq!(lines_of(&text, "gomaxprocs-above-cpu-limit"), vec![20, 20]);
        assert!(lines_of(&text, "cpu-request-missing").is_empty());
    }

    #[test]
    fn gomaxprocs_within_rounded_up_limit_is_silent() {
        let text = deployment(
            "      containers:\n      - name: app\n        image: x:1\n        env:\n        - name: GOMAXPROCS\n          value: \"2\"\n        resources:\n          limits: {cpu: 1500m}\n",
        );
        assert!(lines_of(&text, "gomaxprocs-above-cpu-limit").is_empty());
    }

    #[test]
    fn gomemlimit_equal_fires_and_headroom_is_silent() {
        let bad = deployment(
            "      containers:\n      - name: app\n        env:\n        - {name: GOMEMLIMIT, value: 512MiB}\n        resources:\n          limits: {memory: 512Mi}\n",
        );
        assert_eq!(lines_of(&bad, "gomemlimit-not-below-memory-limit").len(), 1);
        let good = bad.replace("512MiB", "460MiB");
        assert!(lines_of(&good, "gomemlimit-not-below-memory-limit").is_empty());
    }

    #[test]
    fn gomemlimit_from_limits_memory_has_no_headroom() {
        let bad = deployment(
            "      containers:\n      - name: app\n        env:\n        - name: GOMEMLIMIT\n          valueFrom:\n            resourceFieldRef: {resource: limits.memory}\n        resources:\n          limits: {memory: 512Mi}\n",
        );
        assert_eq!(
            lines_of(&bad, "gomemlimit-not-below-memory-limit"),
            vec![16]
        );
    }

    #[test]
    fn gomemlimit_in_kubernetes_syntax_is_malformed() {
        let bad = deployment(
            "      containers:\n      - name: app\n        env:\n        - {name: GOMEMLIMIT, value: 400Mi}\n",
        );
        assert_eq!(lines_of(&bad, "gomemlimit-not-below-memory-limit").len(), 1);
    }

    #[test]
    fn gogc_off() {
        let bad = deployment(
            "      containers:\n      - name: app\n        env:\n        - {name: GOGC, value: \"off\"}\n",
        );
        assert_eq!(lines_of(&bad, "gogc-off-without-gomemlimit"), vec![15]);
        let good = deployment(
            "      containers:\n      - name: app\n        env:\n        - {name: GOGC, value: \"off\"}\n        - {name: GOMEMLIMIT, value: 400MiB}\n",
        );
        assert!(lines_of(&good, "gogc-off-without-gomemlimit").is_empty());
    }

    #[test]
    fn jvm_heap_from_env_and_args() {
        let bad = deployment(
            "      containers:\n      - name: app\n        env:\n        - {name: JAVA_OPTS, value: \"-Xms256m -Xmx1g\"}\n        args: [\"-XX:MaxRAMPercentage=100.0\"]\n        resources:\n          limits: {memory: 1Gi}\n",
        );
        assert_eq!(
            lines_of(&bad, "jvm-heap-not-below-memory-limit"),
            vec![15, 16]
        );
        let good = bad.replace("-Xmx1g", "-Xmx700m").replace("=100.0", "=75.0");
        assert!(lines_of(&good, "jvm-heap-not-below-memory-limit").is_empty());
    }

    #[test]
    fn grace_period_against_prestop() {
        let bad = deployment(
            "      terminationGracePeriodSeconds: 10\n      containers:\n      - name: app\n        lifecycle:\n          preStop:\n            exec:\n              command: [\"/bin/sh\", \"-c\", \"sleep 20 && nginx -s quit\"]\n",
        );
        assert_eq!(
            lines_of(&bad, "grace-period-shorter-than-prestop"),
            vec![12]
        );
        let good = bad.replace("Seconds: 10", "Seconds: 45");
        assert!(lines_of(&good, "grace-period-shorter-than-prestop").is_empty());
        // Equal is not longer: the kubelet kills the container as the sleep ends.
        let equal = bad.replace("Seconds: 10", "Seconds: 20");
        assert_eq!(
            lines_of(&equal, "grace-period-shorter-than-prestop"),
            vec![12]
        );
        let one_more = bad.replace("Seconds: 10", "Seconds: 21");
        assert!(lines_of(&one_more, "grace-period-shorter-than-prestop").is_empty());
    }

    #[test]
    fn sleep_action_against_default_grace() {
        let bad = deployment(
            "      containers:\n      - name: app\n        lifecycle:\n          preStop:\n            sleep:\n              seconds: 40\n",
        );
        assert_eq!(
            lines_of(&bad, "grace-period-shorter-than-prestop"),
            vec![16]
        );
    }

    #[test]
    fn sleep_commands() {
        let doc = parse(
            "a: {exec: {command: [sleep, \"15\"]}}\nb: {exec: {command: [/bin/sh, -c, \"echo; /bin/sleep 5s; sleep 1m\"]}}\nc: {exec: {command: [sh, -c, \"nginx -s quit\"]}}\n",
        );
        let d = &doc.documents[0];
        assert_eq!(pre_stop_sleep(d.get("a").unwrap()).map(|s| s.0), Some(15.0));
        assert_eq!(pre_stop_sleep(d.get("b").unwrap()).map(|s| s.0), Some(65.0));
        assert_eq!(pre_stop_sleep(d.get("c").unwrap()), None);
    }
}
