//! Every check against its fixture pair in `tests/fixtures/audit/checks/`: `<id>.yaml`
//! must trigger the check and `<id>.fixed.yaml`, its fixed twin, must not. The same files
//! drive the binary in the integration tests.

use super::test_support::findings;
use crate::catalog;

/// The fixture directory, from this crate.
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/audit/checks"
);

fn fixture(name: &str) -> String {
    let path = format!("{FIXTURES}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_fires(id: &str) {
    let found = findings(&fixture(&format!("{id}.yaml")));
    assert!(
        found.iter().any(|(check, line)| *check == id && *line > 0),
        "{id}.yaml does not trigger {id}: {found:?}"
    );
}

fn assert_silent(id: &str) {
    let found = findings(&fixture(&format!("{id}.fixed.yaml")));
    assert!(
        !found.iter().any(|(check, _)| *check == id),
        "{id}.fixed.yaml triggers {id}: {found:?}"
    );
}

macro_rules! fixture_pairs {
    ($($module:ident => $id:literal,)*) => {
        $(
            mod $module {
                #[test]
                fn fires_on_its_fixture() {
                    super::assert_fires($id);
                }

                #[test]
                fn silent_on_the_fixed_twin() {
                    super::assert_silent($id);
                }
            }
        )*

        /// The ids with a fixture pair above.
        const COVERED: &[&str] = &[$($id),*];
    };
}

fixture_pairs! {
    gomaxprocs_above_cpu_limit => "gomaxprocs-above-cpu-limit",
    gomemlimit_not_below_memory_limit => "gomemlimit-not-below-memory-limit",
    gogc_off_without_gomemlimit => "gogc-off-without-gomemlimit",
    jvm_heap_not_below_memory_limit => "jvm-heap-not-below-memory-limit",
    grace_period_shorter_than_prestop => "grace-period-shorter-than-prestop",
    probe_timeout_not_below_period => "probe-timeout-not-below-period",
    liveness_kills_slow_start => "liveness-kills-slow-start",
    liveness_identical_to_readiness => "liveness-identical-to-readiness",
    probe_port_not_declared => "probe-port-not-declared",
    hpa_utilization_without_requests => "hpa-utilization-without-requests",
    hpa_min_above_max => "hpa-min-above-max",
    hpa_target_missing => "hpa-target-missing",
    pdb_min_available_too_high => "pdb-min-available-too-high",
    pdb_max_unavailable_zero => "pdb-max-unavailable-zero",
    pdb_selects_nothing => "pdb-selects-nothing",
    service_selects_nothing => "service-selects-nothing",
    service_target_port_missing => "service-target-port-missing",
    servicemonitor_selects_nothing => "servicemonitor-selects-nothing",
    servicemonitor_port_missing => "servicemonitor-port-missing",
    istio_retries_exceed_timeout => "istio-retries-exceed-timeout",
    knative_target_above_concurrency => "knative-target-above-concurrency",
    selector_mismatch => "selector-mismatch",
    cpu_request_missing => "cpu-request-missing",
    memory_request_missing => "memory-request-missing",
    cpu_limit_missing => "cpu-limit-missing",
    memory_limit_missing => "memory-limit-missing",
    limit_below_request => "limit-below-request",
    image_tag_latest => "image-tag-latest",
    privileged_container => "privileged-container",
    privilege_escalation_allowed => "privilege-escalation-allowed",
    runs_as_root => "runs-as-root",
    writable_root_filesystem => "writable-root-filesystem",
    host_network => "host-network",
    host_pid => "host-pid",
    host_ipc => "host-ipc",
    host_port => "host-port",
    host_path => "host-path",
    capabilities_added => "capabilities-added",
    secret_in_env_literal => "secret-in-env-literal",
    env_duplicate => "env-duplicate",
    env_reference_missing => "env-reference-missing",
    single_replica_under_pdb => "single-replica-under-pdb",
    no_anti_affinity => "no-anti-affinity",
    cronjob_concurrency_policy_missing => "cronjob-concurrency-policy-missing",
    cronjob_starting_deadline_missing => "cronjob-starting-deadline-missing",
    job_backoff_limit_missing => "job-backoff-limit-missing",
    job_ttl_missing => "job-ttl-missing",
    api_version_deprecated => "api-version-deprecated",
    api_version_removed => "api-version-removed",
    readiness_probe_missing => "readiness-probe-missing",
    rbac_wildcard => "rbac-wildcard",
    cluster_admin_binding => "cluster-admin-binding",
    rbac_reads_secrets => "rbac-reads-secrets",
    rbac_exec_into_pods => "rbac-exec-into-pods",
}

#[test]
fn every_check_has_a_fixture_pair() {
    for check in catalog::ALL {
        assert!(
            COVERED.contains(&check.id),
            "no fixture test for {}",
            check.id
        );
    }
}

#[test]
fn the_clean_fixture_triggers_nothing() {
    let found = findings(&fixture("../clean.yaml"));
    assert!(found.is_empty(), "{found:?}");
}
