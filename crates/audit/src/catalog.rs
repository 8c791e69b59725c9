//! The check catalogue: every check's stable id, severity, category, why it matters and
//! how to fix it. Ids never change once released; the SARIF `ruleId` is the id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; rarely breaks anything by itself.
    Info,
    /// A risk or a deviation from common practice.
    Warning,
    /// Breaks, or will break, in production.
    Error,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// The SARIF `level` for this severity.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Severity::Info => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not `info`, `warning` or `error`.
#[derive(Debug, thiserror::Error)]
#[error("unknown severity `{0}` (expected info, warning or error)")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "error" => Ok(Severity::Error),
            other => Err(UnknownSeverity(other.to_string())),
        }
    }
}

/// One check of the catalogue.
#[derive(Debug, Serialize)]
pub struct Check {
    /// Stable id (the SARIF `ruleId`).
    pub id: &'static str,
    /// Severity of its findings.
    pub severity: Severity,
    /// Group in the catalogue.
    pub category: &'static str,
    /// One line: what it finds.
    pub title: &'static str,
    /// Why it matters.
    pub why: &'static str,
    /// How to fix it.
    pub fix: &'static str,
    /// Which common linters check the same concept (kube-linter, Polaris, kube-score,
    /// Checkov), or "none".
    pub peers: &'static str,
}

macro_rules! checks {
    ($( $const:ident { $id:literal, $sev:ident, $cat:literal, $title:literal, $why:literal, $fix:literal, $peers:literal } )*) => {
        $(
            #[doc = $title]
            pub static $const: Check = Check {
                id: $id,
                severity: Severity::$sev,
                category: $cat,
                title: $title,
                why: $why,
                fix: $fix,
                peers: $peers,
            };
        )*
        /// Every check, in catalogue order.
        pub static ALL: &[&Check] = &[$( &$const ),*];
    };
}

checks! {
    GOMAXPROCS_ABOVE_CPU_LIMIT {
        "gomaxprocs-above-cpu-limit", Error, "runtime",
        "GOMAXPROCS is above the container's CPU limit (rounded up to whole cores)",
        "The Go scheduler runs GOMAXPROCS threads in parallel; above the CFS quota the process burns its quota early in each period and is throttled, which shows as latency spikes.",
        "Set GOMAXPROCS to the CPU limit rounded up (valueFrom.resourceFieldRef limits.cpu), or drop it on Go 1.25+ which reads the limit itself. Allowed: up to ceil(limit in cores), so 2 passes a 1500m limit and 3 does not.",
        "none"
    }
    GOMEMLIMIT_NOT_BELOW_MEMORY_LIMIT {
        "gomemlimit-not-below-memory-limit", Error, "runtime",
        "GOMEMLIMIT is at or above the memory limit, or not valid Go syntax",
        "The Go GC only works harder as the heap nears GOMEMLIMIT; at or above the cgroup limit the kernel OOM-kills the pod before the GC reacts, since non-heap memory needs headroom. A malformed value makes the runtime abort at start.",
        "Set GOMEMLIMIT to about 90% of the memory limit, in Go syntax (e.g. 460MiB for a 512Mi limit).",
        "none"
    }
    GOGC_OFF_WITHOUT_GOMEMLIMIT {
        "gogc-off-without-gomemlimit", Error, "runtime",
        "GOGC=off without a GOMEMLIMIT",
        "With GOGC=off and no memory limit for the runtime, the Go GC never runs: the heap grows until the container is OOM-killed.",
        "Set GOMEMLIMIT below the memory limit, or remove GOGC=off.",
        "none"
    }
    JVM_HEAP_NOT_BELOW_MEMORY_LIMIT {
        "jvm-heap-not-below-memory-limit", Error, "runtime",
        "JVM heap (-Xmx, MaxRAMPercentage) at or above the memory limit",
        "Heap is only part of a JVM's memory (metaspace, threads, code cache, direct buffers); a heap as large as the limit gets the container OOM-killed under load.",
        "Keep -Xmx at or below about 75% of the memory limit, or use -XX:MaxRAMPercentage=75.",
        "none"
    }
    GRACE_PERIOD_SHORTER_THAN_PRESTOP {
        "grace-period-shorter-than-prestop", Error, "runtime",
        "terminationGracePeriodSeconds is not longer than the preStop sleep",
        "The grace period counts from the start of the preStop hook; when the sleep uses it up, the container is killed without a graceful shutdown and in-flight requests fail. Equal counts too (the id says shorter, the check is not longer): the kubelet kills the container the moment the sleep ends.",
        "Set terminationGracePeriodSeconds to the preStop sleep plus the time the application needs to drain.",
        "none"
    }
    PROBE_TIMEOUT_NOT_BELOW_PERIOD {
        "probe-timeout-not-below-period", Warning, "probes",
        "A probe's timeoutSeconds is not below its periodSeconds",
        "Probes then overlap: a slow endpoint gets the next probe before the last one timed out, and failures pile up faster than the period suggests.",
        "Keep timeoutSeconds well below periodSeconds.",
        "none"
    }
    LIVENESS_KILLS_SLOW_START {
        "liveness-kills-slow-start", Error, "probes",
        "The liveness failure window is shorter than the start-up time, without a startupProbe",
        "The kubelet restarts a container whose liveness probe fails initialDelaySeconds + failureThreshold x periodSeconds after start; a slower starter (as its readiness delay says) is killed in a loop and never becomes ready.",
        "Add a startupProbe that allows the full start-up time, or lengthen the liveness failure window.",
        "none"
    }
    LIVENESS_IDENTICAL_TO_READINESS {
        "liveness-identical-to-readiness", Warning, "probes",
        "The liveness probe tests the same endpoint as the readiness probe",
        "A dependency outage that should only take pods out of the Service then restarts every pod at once; liveness should only test the process itself. Only the handler is compared (httpGet path, port, scheme and host; tcpSocket port; exec command; grpc port and service, with the API's defaults): different timing does not make a different probe.",
        "Point liveness at a cheap endpoint that checks only the process, with a longer failure window than readiness.",
        "kube-score pod-probes-identical"
    }
    PROBE_PORT_NOT_DECLARED {
        "probe-port-not-declared", Warning, "probes",
        "A probe targets a port the container does not declare",
        "A probe on a named port that does not exist fails every time; a number missing from the ports list is often a typo or a stale port. A numeric port on a container that declares no ports at all is not reported: the ports list is optional and many containers leave it out, so there is nothing to compare with.",
        "Probe a port listed in the container's ports (by name or number).",
        "kube-linter liveness-port, readiness-port, startup-port"
    }
    HPA_UTILIZATION_WITHOUT_REQUESTS {
        "hpa-utilization-without-requests", Error, "scaling",
        "HPA scales on CPU or memory utilization of a target without requests",
        "Utilization is usage divided by the request; when a container has no request the HPA cannot compute it and never scales.",
        "Set requests for the resource on every container of the target, or scale on an AverageValue target.",
        "none"
    }
    HPA_MIN_ABOVE_MAX {
        "hpa-min-above-max", Error, "scaling",
        "HPA minReplicas is above maxReplicas",
        "The API rejects the object, or with a missing minReplicas default of 1 the range is empty: the autoscaler does not work.",
        "Make minReplicas at most maxReplicas.",
        "Polaris hpaMaxAvailability (related)"
    }
    HPA_TARGET_MISSING {
        "hpa-target-missing", Error, "scaling",
        "HPA targets a workload that is not among the inputs",
        "An HPA whose scaleTargetRef does not exist scales nothing; usually a renamed Deployment or a wrong kind.",
        "Point scaleTargetRef at the workload's kind and name, or delete the HPA.",
        "kube-linter dangling-horizontalpodautoscaler, kube-score horizontalpodautoscaler-has-target"
    }
    PDB_MIN_AVAILABLE_TOO_HIGH {
        "pdb-min-available-too-high", Error, "scaling",
        "PDB minAvailable is at or above the replicas (or HPA minReplicas) it protects",
        "No pod may then be evicted: node drains and cluster upgrades hang until someone deletes the PDB by hand.",
        "Set minAvailable below the replica count (or use maxUnavailable: 1), and run at least two replicas.",
        "Polaris pdbMinAvailableGreaterThanHPAMinReplicas, kube-linter pdb-min-available"
    }
    PDB_MAX_UNAVAILABLE_ZERO {
        "pdb-max-unavailable-zero", Error, "scaling",
        "PDB maxUnavailable is 0",
        "No pod may ever be evicted: node drains and upgrades hang.",
        "Set maxUnavailable to at least 1.",
        "kube-linter pdb-max-unavailable, Polaris pdbDisruptionsIsZero"
    }
    PDB_SELECTS_NOTHING {
        "pdb-selects-nothing", Warning, "scaling",
        "PodDisruptionBudget selects no pods of the inputs",
        "A PDB whose selector matches no workload protects nothing; usually a label typo.",
        "Make the PDB's selector match the workload's pod template labels.",
        "none"
    }
    SERVICE_SELECTS_NOTHING {
        "service-selects-nothing", Warning, "network",
        "Service selects no pods of the inputs",
        "A Service whose selector matches no pod template has no endpoints: every request fails.",
        "Make spec.selector match the workload's pod template labels.",
        "kube-linter dangling-service, kube-score service-targets-pod"
    }
    SERVICE_TARGET_PORT_MISSING {
        "service-target-port-missing", Error, "network",
        "Service targetPort names a port no selected container declares",
        "A named targetPort that no selected container declares gives the Service no usable endpoints. A numeric targetPort (or a port without targetPort, which defaults to it) is reported when every selected container lists its ports and none is that number: traffic then goes to a port nothing listens on. A container that lists no ports may listen on any, so it is not reported then.",
        "Use a port name (or number) that the selected containers declare in their ports.",
        "kube-score service-targets-pod (related)"
    }
    SERVICEMONITOR_SELECTS_NOTHING {
        "servicemonitor-selects-nothing", Warning, "network",
        "ServiceMonitor selects no Service of the inputs",
        "Prometheus then scrapes nothing for it and alerts based on those metrics stay silent.",
        "Make spec.selector (and namespaceSelector) match the Service's labels and namespace.",
        "kube-linter dangling-servicemonitor"
    }
    SERVICEMONITOR_PORT_MISSING {
        "servicemonitor-port-missing", Error, "network",
        "ServiceMonitor endpoint port is not a port name of the selected Services",
        "The Prometheus operator generates no scrape target for an endpoint whose port name does not exist: the metrics silently disappear.",
        "Use the name of a port in the Service's spec.ports.",
        "none"
    }
    ISTIO_RETRIES_EXCEED_TIMEOUT {
        "istio-retries-exceed-timeout", Warning, "network",
        "Istio retries (attempts x perTryTimeout) exceed the route timeout",
        "The route timeout cuts the retries short: the configured attempts never happen, and clients see timeouts the retry policy was meant to absorb.",
        "Make attempts x perTryTimeout fit within the route's timeout, or raise the timeout.",
        "none"
    }
    KNATIVE_TARGET_ABOVE_CONCURRENCY {
        "knative-target-above-concurrency", Warning, "scaling",
        "Knative autoscaling target is above containerConcurrency",
        "The autoscaler aims at more concurrent requests per pod than the hard limit allows: requests queue in the activator and the service scales late.",
        "Keep autoscaling.knative.dev/target at or below containerConcurrency (about 70% of it).",
        "none"
    }
    SELECTOR_MISMATCH {
        "selector-mismatch", Error, "correctness",
        "Workload selector does not match its pod template labels",
        "The API rejects the workload (apps/v1), or the controller never sees its own pods and creates more without end.",
        "Make spec.selector match spec.template.metadata.labels.",
        "kube-linter mismatching-selector, kube-score deployment-pod-selector-labels-match-template-metadata-labels"
    }
    CPU_REQUEST_MISSING {
        "cpu-request-missing", Warning, "resources",
        "Container has no CPU request",
        "Without a request the scheduler places the pod as if it needed no CPU; it is starved on busy nodes and CPU-based autoscaling cannot work.",
        "Set resources.requests.cpu.",
        "kube-linter unset-cpu-requirements, Polaris cpuRequestsMissing, kube-score container-resources, Checkov CKV_K8S_10"
    }
    MEMORY_REQUEST_MISSING {
        "memory-request-missing", Warning, "resources",
        "Container has no memory request",
        "Without a request the scheduler can overcommit the node; the pod is among the first evicted under memory pressure.",
        "Set resources.requests.memory.",
        "kube-linter unset-memory-requirements, Polaris memoryRequestsMissing, kube-score container-resources, Checkov CKV_K8S_12"
    }
    CPU_LIMIT_MISSING {
        "cpu-limit-missing", Info, "resources",
        "Container has no CPU limit",
        "A container without a CPU limit can take every idle core of the node; runtimes that size themselves from the limit (Go, JVM) see the whole node.",
        "Set resources.limits.cpu, or accept unbounded CPU deliberately and suppress this check.",
        "kube-linter unset-cpu-requirements, Polaris cpuLimitsMissing, kube-score container-resources, Checkov CKV_K8S_11"
    }
    MEMORY_LIMIT_MISSING {
        "memory-limit-missing", Warning, "resources",
        "Container has no memory limit",
        "A leak then grows until the node runs out of memory and the kernel kills whatever it picks, other pods included.",
        "Set resources.limits.memory.",
        "kube-linter unset-memory-requirements, Polaris memoryLimitsMissing, kube-score container-resources, Checkov CKV_K8S_13"
    }
    LIMIT_BELOW_REQUEST {
        "limit-below-request", Error, "resources",
        "A resource limit is below its request",
        "The API server rejects the pod: the workload never starts.",
        "Make each limit at least the matching request.",
        "none"
    }
    IMAGE_TAG_LATEST {
        "image-tag-latest", Warning, "image",
        "Image uses the latest tag or no tag",
        "latest moves: two pods of one Deployment can run different code, and a rollback does not roll back.",
        "Pin a version tag or a digest.",
        "kube-linter latest-tag, Polaris tagNotSpecified, kube-score container-image-tag, Checkov CKV_K8S_14"
    }
    PRIVILEGED_CONTAINER {
        "privileged-container", Error, "security",
        "Container runs privileged",
        "A privileged container has every capability and all host devices: escaping to the node is trivial.",
        "Remove securityContext.privileged, add only the capabilities needed.",
        "kube-linter privileged-container, Polaris runAsPrivileged, kube-score container-security-context-privileged, Checkov CKV_K8S_16"
    }
    PRIVILEGE_ESCALATION_ALLOWED {
        "privilege-escalation-allowed", Warning, "security",
        "Container does not set allowPrivilegeEscalation: false",
        "setuid binaries in the image can then gain more privileges than the process started with.",
        "Set securityContext.allowPrivilegeEscalation: false.",
        "kube-linter privilege-escalation-container, Polaris privilegeEscalationAllowed, Checkov CKV_K8S_20"
    }
    RUNS_AS_ROOT {
        "runs-as-root", Warning, "security",
        "Container may run as root",
        "A process running as UID 0 turns any container escape or writable host mount into root on the node.",
        "Set runAsNonRoot: true and a non-zero runAsUser (pod or container securityContext).",
        "kube-linter run-as-non-root, Polaris runAsRootAllowed, kube-score container-security-context-user-group-id, Checkov CKV_K8S_23"
    }
    WRITABLE_ROOT_FILESYSTEM {
        "writable-root-filesystem", Warning, "security",
        "Container root filesystem is writable",
        "An attacker can drop tools and modify binaries in a writable root filesystem.",
        "Set securityContext.readOnlyRootFilesystem: true and mount emptyDir volumes where the app writes.",
        "kube-linter no-read-only-root-fs, Polaris notReadOnlyRootFilesystem, kube-score container-security-context-readonlyrootfilesystem, Checkov CKV_K8S_22"
    }
    HOST_NETWORK {
        "host-network", Error, "security",
        "Pod uses the host network",
        "The pod sees every interface of the node and can bind its ports, bypassing NetworkPolicies.",
        "Remove hostNetwork: true; expose the pod with a Service.",
        "kube-linter host-network, Polaris hostNetworkSet, Checkov CKV_K8S_19"
    }
    HOST_PID {
        "host-pid", Error, "security",
        "Pod shares the host PID namespace",
        "The pod sees and can signal every process of the node.",
        "Remove hostPID: true.",
        "kube-linter host-pid, Polaris hostPIDSet, Checkov CKV_K8S_17"
    }
    HOST_IPC {
        "host-ipc", Error, "security",
        "Pod shares the host IPC namespace",
        "The pod can read shared memory of every process on the node.",
        "Remove hostIPC: true.",
        "kube-linter host-ipc, Polaris hostIPCSet, Checkov CKV_K8S_18"
    }
    HOST_PORT {
        "host-port", Warning, "security",
        "Container binds a host port",
        "A hostPort ties the pod to nodes where the port is free (scheduling failures) and exposes it on the node's address.",
        "Remove hostPort; expose the pod with a Service.",
        "Polaris hostPortSet, Checkov CKV_K8S_26"
    }
    HOST_PATH {
        "host-path", Warning, "security",
        "Pod mounts a host path",
        "A hostPath volume exposes the node's filesystem; the container runtime socket gives full control of the node.",
        "Use a PersistentVolumeClaim, emptyDir, ConfigMap or Secret instead.",
        "kube-linter sensitive-host-mounts, writable-host-mount, docker-sock, Polaris hostPathSet, Checkov CKV_K8S_27"
    }
    CAPABILITIES_ADDED {
        "capabilities-added", Error, "security",
        "Container adds Linux capabilities",
        "Capabilities such as SYS_ADMIN, NET_ADMIN or NET_RAW give the container powers over the node's kernel and network.",
        "Drop ALL and add back only NET_BIND_SERVICE when a low port is needed.",
        "Polaris dangerousCapabilities, insecureCapabilities, Checkov CKV_K8S_25, CKV_K8S_39"
    }
    SECRET_IN_ENV_LITERAL {
        "secret-in-env-literal", Error, "security",
        "A secret is written as a literal env value",
        "The secret is then in the manifest, the repository and every `kubectl get -o yaml`; it cannot be rotated without a deploy.",
        "Move it to a Secret and use valueFrom.secretKeyRef.",
        "kube-linter env-var-secret, Polaris sensitiveContainerEnvVar, Checkov CKV_K8S_35"
    }
    ENV_DUPLICATE {
        "env-duplicate", Warning, "correctness",
        "An env var is set twice in one container",
        "Only the last value counts, silently; the first is usually the one someone meant to change.",
        "Keep one entry per name.",
        "kube-linter duplicate-env-var, kube-score environment-variable-key-duplication"
    }
    ENV_REFERENCE_MISSING {
        "env-reference-missing", Error, "correctness",
        "An env reference names a Secret, ConfigMap or key that is not among the inputs",
        "A pod whose non-optional env reference does not resolve stays in CreateContainerConfigError.",
        "Add the Secret or ConfigMap (and key) to the manifests, fix the name, or mark the reference optional.",
        "kube-linter env-value-from"
    }
    SINGLE_REPLICA_UNDER_PDB {
        "single-replica-under-pdb", Warning, "availability",
        "A workload protected by a PDB runs a single replica",
        "With one replica the PDB either blocks every drain or protects nothing; the workload is down during every node maintenance.",
        "Run at least two replicas.",
        "Polaris deploymentMissingReplicas, kube-linter minimum-three-replicas (related)"
    }
    NO_ANTI_AFFINITY {
        "no-anti-affinity", Info, "availability",
        "Several replicas without pod anti-affinity or topology spread",
        "The scheduler may put every replica on one node or zone, which then takes them all down together.",
        "Add a podAntiAffinity preference or topologySpreadConstraints on the hostname or zone.",
        "kube-linter no-anti-affinity, Polaris topologySpreadConstraint, kube-score deployment-has-host-podantiaffinity"
    }
    CRONJOB_CONCURRENCY_POLICY_MISSING {
        "cronjob-concurrency-policy-missing", Info, "jobs",
        "CronJob does not set concurrencyPolicy",
        "The default Allow starts a new run while the last one still runs; slow runs pile up.",
        "Set concurrencyPolicy: Forbid (or Replace) unless overlapping runs are safe.",
        "none"
    }
    CRONJOB_STARTING_DEADLINE_MISSING {
        "cronjob-starting-deadline-missing", Info, "jobs",
        "CronJob does not set startingDeadlineSeconds",
        "After 100 missed schedules (controller downtime) the CronJob stops scheduling altogether.",
        "Set startingDeadlineSeconds.",
        "kube-score cronjob-has-deadline"
    }
    JOB_BACKOFF_LIMIT_MISSING {
        "job-backoff-limit-missing", Info, "jobs",
        "Job does not set backoffLimit",
        "The default of 6 retries with exponential back-off can hold a failing Job for many minutes, or retry a non-idempotent one.",
        "Set backoffLimit deliberately.",
        "none"
    }
    JOB_TTL_MISSING {
        "job-ttl-missing", Info, "jobs",
        "Job does not set ttlSecondsAfterFinished",
        "Finished Jobs and their pods are kept forever and accumulate in the API server.",
        "Set ttlSecondsAfterFinished.",
        "kube-linter job-ttl-seconds-after-finished"
    }
    API_VERSION_DEPRECATED {
        "api-version-deprecated", Warning, "correctness",
        "Deprecated API version or kind",
        "Deprecated APIs are removed in a later release; manifests using them then fail to apply.",
        "Move to the replacement named in the finding.",
        "kube-linter no-extensions-v1beta, kube-score stable-version"
    }
    API_VERSION_REMOVED {
        "api-version-removed", Error, "correctness",
        "API version removed from Kubernetes",
        "Current clusters no longer serve this API: `kubectl apply` fails.",
        "Move to the replacement named in the finding.",
        "kube-linter no-extensions-v1beta, kube-score stable-version"
    }
    READINESS_PROBE_MISSING {
        "readiness-probe-missing", Warning, "probes",
        "Container behind a Service has no readiness probe",
        "Without a readiness probe the Service sends traffic to pods as soon as they start, before they can serve, and to pods that stopped serving.",
        "Add a readinessProbe.",
        "kube-score pod-probes (same scope: pods behind a Service); related, on every container: kube-linter no-readiness-probe, Polaris readinessProbeMissing, Checkov CKV_K8S_9"
    }
    RBAC_WILDCARD {
        "rbac-wildcard", Warning, "rbac",
        "Role grants wildcard verbs, resources or API groups",
        "A wildcard grants everything, including resources and verbs added in future releases.",
        "List the verbs, resources and API groups needed.",
        "kube-linter wildcard-in-rules, Checkov CKV_K8S_49"
    }
    CLUSTER_ADMIN_BINDING {
        "cluster-admin-binding", Error, "rbac",
        "Binding to the cluster-admin role",
        "cluster-admin can do anything in every namespace; a compromised subject owns the cluster.",
        "Bind a role with only the permissions needed.",
        "kube-linter cluster-admin-role-binding, Polaris clusterrolebindingClusterAdmin"
    }
    RBAC_READS_SECRETS {
        "rbac-reads-secrets", Warning, "rbac",
        "Role can read Secrets",
        "get, list or watch on secrets reveals every credential in its scope, service account tokens included.",
        "Limit the rule to named secrets (resourceNames) or remove it.",
        "kube-linter access-to-secrets, Checkov CKV2_K8S_5"
    }
    RBAC_EXEC_INTO_PODS {
        "rbac-exec-into-pods", Warning, "rbac",
        "Role can exec or attach into pods",
        "pods/exec and pods/attach run commands in any pod in scope, with its service account and secrets.",
        "Remove pods/exec and pods/attach, or limit them to a break-glass role.",
        "Polaris clusterrolePodExecAttach, Checkov CKV2_K8S_2"
    }
}

/// A check by id.
pub fn find(id: &str) -> Option<&'static Check> {
    ALL.iter().copied().find(|c| c.id == id)
}

/// The catalogue as a Markdown page (the docs' catalogue is generated from this).
pub fn markdown() -> String {
    let mut out = String::from(
        "# `opsloop audit` check catalogue\n\n\
         Generated from `crates/audit/src/catalog.rs` (`opsloop audit --list-checks` prints the same).\n\
         Ids are stable: they are the SARIF `ruleId` and what `opsloop.dev/ignore` and the config's\n\
         `disable:` name.\n",
    );
    let mut category = "";
    for check in ALL {
        if check.category != category {
            category = check.category;
            out.push_str(&format!("\n## {category}\n"));
        }
        out.push_str(&format!(
            "\n### `{}` ({})\n\n{}.\n\n- **Why:** {}\n- **Fix:** {}\n- **Also in:** {}\n",
            check.id, check.severity, check.title, check.why, check.fix, check.peers
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_kebab_case() {
        let mut ids: Vec<&str> = ALL.iter().map(|c| c.id).collect();
        assert!(
            ids.iter()
                .all(|id| id.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        );
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len());
    }

    #[test]
    fn severities_parse() {
        assert_eq!("warning".parse::<Severity>().unwrap(), Severity::Warning);
        assert!("fatal".parse::<Severity>().is_err());
        assert!(Severity::Error > Severity::Warning);
    }

    #[test]
    fn catalogue_page_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/CHECKS.md");
        let page = markdown();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, &page).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == page,
            "CHECKS.md is stale: run `UPDATE_GOLDEN=1 cargo test -p opsloop-audit catalogue_page`"
        );
    }
}
