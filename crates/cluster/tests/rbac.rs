//! `deploy/rbac.yaml` grants exactly what the Kubernetes actions use: every request each
//! action sends (recorded through the replaying API server) is allowed, and nothing else is
//! (no `*`, no secrets, no read verbs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use opsloop_cluster::{ClusterRunner, TargetKind, all_permissions};
use opsloop_heal::action::{Action, ActionRunner};
use opsloop_heal::spec::KubeActionKind;
use serde::Deserialize;
use support::Replay;

#[derive(Debug, Deserialize)]
struct Manifest {
    kind: String,
    metadata: Metadata,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default, rename = "roleRef")]
    role_ref: Option<RoleRef>,
    #[serde(default)]
    subjects: Vec<Subject>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(rename = "apiGroups")]
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RoleRef {
    kind: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

type Grant = (String, String, String);

fn rbac_text() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rbac.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn manifests() -> Vec<Manifest> {
    serde_saphyr::from_str_multiple(&rbac_text()).unwrap()
}

/// (group, resource, verb) for every rule of every role.
fn granted(manifests: &[Manifest]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for m in manifests
        .iter()
        .filter(|m| m.kind == "ClusterRole" || m.kind == "Role")
    {
        for rule in &m.rules {
            for g in &rule.api_groups {
                for r in &rule.resources {
                    for v in &rule.verbs {
                        out.insert((g.clone(), r.clone(), v.clone()));
                    }
                }
            }
        }
    }
    out
}

/// What RBAC checks for a request: its API group, resource (with subresource) and verb.
fn grant_for(method: &str, path: &str) -> Grant {
    let path = path.split('?').next().unwrap();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("unexpected path {path}"),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] => rest,
        rest => rest,
    };
    let resource = match rest {
        [resource, _name] => resource.to_string(),
        [resource, _name, sub] => format!("{resource}/{sub}"),
        _ => panic!("unexpected path {path}"),
    };
    let verb = match method {
        "PATCH" => "patch",
        "DELETE" => "delete",
        "GET" => "get",
        "PUT" => "update",
        "POST" => "create",
        other => panic!("unexpected method {other}"),
    };
    (group.into(), resource, verb.into())
}

const ACTIONS: [KubeActionKind; 7] = [
    KubeActionKind::RolloutRestart,
    KubeActionKind::Scale,
    KubeActionKind::DeletePod,
    KubeActionKind::Cordon,
    KubeActionKind::Uncordon,
    KubeActionKind::Annotate,
    KubeActionKind::Patch,
];

#[tokio::test]
async fn every_request_every_action_sends_is_granted_and_nothing_more() {
    let granted = granted(&manifests());
    let mut used = BTreeSet::new();
    for action in ACTIONS {
        for kind in TargetKind::ALL {
            let replay = Replay::default();
            replay.answer(
                200,
                if action == KubeActionKind::Scale {
                    "scale_deployment.json"
                } else {
                    "deployment_patched.json"
                },
            );
            let runner = ClusterRunner::new().with_kube(replay.client());
            let a = Action::Kubernetes {
                action,
                object_kind: kind.name().into(),
                namespace: kind.namespaced().then(|| "prod".into()),
                name: "x".into(),
                replicas: Some(1),
                annotations: [("a".to_string(), "b".to_string())].into(),
                patch: Some(serde_json::json!({"metadata": {"labels": {"a": "b"}}})),
            };
            let result = runner.run(&a).await;
            let requests = replay.requests();
            if result.is_err() {
                // An unsupported combination must not reach the server at all.
                assert!(requests.is_empty(), "{action:?} {kind:?}: {requests:?}");
                continue;
            }
            for r in requests {
                let grant = grant_for(&r.method, &r.path);
                assert!(
                    granted.contains(&grant),
                    "{action:?} on {kind:?} sends {} {} needing {grant:?}, not granted by deploy/rbac.yaml",
                    r.method,
                    r.path
                );
                used.insert(grant);
            }
        }
    }
    let extra: Vec<_> = granted.difference(&used).collect();
    assert!(extra.is_empty(), "deploy/rbac.yaml grants unused {extra:?}");
    // The crate's permission table (used in 403 messages) says the same.
    let table: BTreeSet<Grant> = all_permissions()
        .iter()
        .map(|p| (p.group.into(), p.resource.into(), p.verb.into()))
        .collect();
    assert_eq!(table, used);
}

#[test]
fn no_wildcards_secrets_or_read_verbs() {
    for (group, resource, verb) in granted(&manifests()) {
        for field in [&group, &resource, &verb] {
            assert!(
                !field.contains('*'),
                "wildcard in {group}/{resource}/{verb}"
            );
        }
        assert!(!resource.starts_with("secrets"), "secrets granted");
        assert!(
            ![
                "get",
                "list",
                "watch",
                "create",
                "update",
                "deletecollection",
                "escalate",
                "bind",
                "impersonate"
            ]
            .contains(&verb.as_str()),
            "{verb} on {resource} granted"
        );
    }
}

#[test]
fn every_role_is_bound_to_the_opsloop_service_account() {
    let manifests = manifests();
    let account = manifests
        .iter()
        .find(|m| m.kind == "ServiceAccount")
        .expect("a ServiceAccount");
    assert_eq!(account.metadata.name, "opsloop");
    let namespace = account.metadata.namespace.clone().expect("its namespace");
    for role in manifests.iter().filter(|m| m.kind == "ClusterRole") {
        let binding = manifests
            .iter()
            .find(|m| {
                m.kind.ends_with("Binding")
                    && m.role_ref
                        .as_ref()
                        .is_some_and(|r| r.kind == "ClusterRole" && r.name == role.metadata.name)
            })
            .unwrap_or_else(|| panic!("{} is not bound", role.metadata.name));
        assert!(
            binding.subjects.iter().all(|s| s.kind == "ServiceAccount"
                && s.name == "opsloop"
                && s.namespace == namespace),
            "{:?}",
            binding.subjects
        );
    }
}

#[test]
fn every_rule_says_which_action_needs_it() {
    let text = rbac_text();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("- apiGroups:") {
            let before = lines[i - 1].trim_start();
            assert!(
                before.starts_with('#'),
                "rule at line {} has no comment naming its action",
                i + 1
            );
        }
    }
}
