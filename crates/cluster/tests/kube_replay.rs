//! Every Kubernetes action against a replaying API server: the exact request (method, path,
//! query, content type, patch body) and the summary built from recorded responses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use opsloop_cluster::ClusterRunner;
use opsloop_core::time::ManualClock;
use opsloop_heal::action::{Action, ActionError, ActionRunner};
use opsloop_heal::spec::KubeActionKind;
use serde_json::{Value, json};
use support::{Recorded, Replay};

/// 2026-11-29T07:38:48.500Z.
const NOW_MS: i64 = 1_795_937_928_500;

fn runner(replay: &Replay) -> ClusterRunner {
    ClusterRunner::new()
        .with_kube(replay.client())
        .with_clock(Arc::new(ManualClock::new(NOW_MS)))
}

fn kube(action: KubeActionKind, kind: &str, namespace: Option<&str>, name: &str) -> Action {
    Action::Kubernetes {
        action,
        object_kind: kind.into(),
        namespace: namespace.map(Into::into),
        name: name.into(),
        replicas: None,
        annotations: BTreeMap::new(),
        patch: None,
    }
}

fn with_replicas(mut action: Action, n: i32) -> Action {
    if let Action::Kubernetes { replicas, .. } = &mut action {
        *replicas = Some(n);
    }
    action
}

fn with_annotations(mut action: Action, pairs: &[(&str, &str)]) -> Action {
    if let Action::Kubernetes { annotations, .. } = &mut action {
        *annotations = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }
    action
}

fn with_patch(mut action: Action, body: Value) -> Action {
    if let Action::Kubernetes { patch, .. } = &mut action {
        *patch = Some(body);
    }
    action
}

fn request(method: &str, path: &str, content_type: &str, body: Value) -> Recorded {
    Recorded {
        method: method.into(),
        path: path.into(),
        content_type: content_type.into(),
        body,
    }
}

const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";

async fn summary(runner: &ClusterRunner, action: &Action) -> Value {
    let out = runner.run(action).await.unwrap();
    assert!(out.success, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap()
}

#[tokio::test]
async fn rollout_restart_patches_the_pod_template_like_kubectl() {
    let replay = Replay::default();
    replay.answer(200, "deployment_patched.json");
    let action = kube(
        KubeActionKind::RolloutRestart,
        "Deployment",
        Some("prod"),
        "web",
    );
    let out = summary(&runner(&replay), &action).await;
    assert_eq!(
        replay.single(),
        request(
            "PATCH",
            "/apis/apps/v1/namespaces/prod/deployments/web?&fieldManager=opsloop",
            STRATEGIC,
            json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2026-11-29T07:38:48Z"
            }}}}}),
        )
    );
    assert_eq!(
        out,
        json!({"action": "rollout_restart", "kind": "Deployment", "namespace": "prod",
               "name": "web", "resourceVersion": "48213"})
    );
}

#[tokio::test]
async fn rollout_restart_of_a_daemonset_in_the_default_namespace_of_the_client() {
    let replay = Replay::default();
    replay.answer(200, "daemonset_patched.json");
    let action = kube(
        KubeActionKind::RolloutRestart,
        "DaemonSet",
        None,
        "node-exporter",
    );
    let out = summary(&runner(&replay), &action).await;
    let req = replay.single();
    assert_eq!(
        req.path,
        "/apis/apps/v1/namespaces/default/daemonsets/node-exporter?&fieldManager=opsloop"
    );
    assert_eq!(
        (req.method.as_str(), req.content_type.as_str()),
        ("PATCH", STRATEGIC)
    );
    assert_eq!(out["resourceVersion"], "9911");
}

#[tokio::test]
async fn scale_patches_the_scale_subresource() {
    let replay = Replay::default();
    replay.answer(200, "scale_deployment.json");
    let action = with_replicas(
        kube(KubeActionKind::Scale, "Deployment", Some("prod"), "web"),
        5,
    );
    let out = summary(&runner(&replay), &action).await;
    assert_eq!(
        replay.single(),
        request(
            "PATCH",
            "/apis/apps/v1/namespaces/prod/deployments/web/scale?&fieldManager=opsloop",
            MERGE,
            json!({"spec": {"replicas": 5}}),
        )
    );
    assert_eq!(
        out,
        json!({"action": "scale", "kind": "Deployment", "namespace": "prod", "name": "web",
               "resourceVersion": "48290", "replicas": 5})
    );
}

#[tokio::test]
async fn scale_of_a_statefulset_uses_its_scale_subresource() {
    let replay = Replay::default();
    replay.answer(200, "scale_deployment.json");
    let action = with_replicas(kube(KubeActionKind::Scale, "sts", Some("prod"), "db"), 0);
    summary(&runner(&replay), &action).await;
    let req = replay.single();
    assert_eq!(
        req.path,
        "/apis/apps/v1/namespaces/prod/statefulsets/db/scale?&fieldManager=opsloop"
    );
    assert_eq!(req.body, json!({"spec": {"replicas": 0}}));
}

#[tokio::test]
async fn delete_pod_deletes_it_and_reports_the_pod() {
    let replay = Replay::default();
    replay.answer(200, "pod_deleting.json");
    let action = kube(
        KubeActionKind::DeletePod,
        "Pod",
        Some("prod"),
        "web-7d4b9c8f6d-x2k9q",
    );
    let out = summary(&runner(&replay), &action).await;
    assert_eq!(
        replay.single(),
        request(
            "DELETE",
            "/api/v1/namespaces/prod/pods/web-7d4b9c8f6d-x2k9q?",
            "application/json",
            json!({}),
        )
    );
    assert_eq!(out["kind"], "Pod");
    assert_eq!(out["resourceVersion"], "48301");
}

#[tokio::test]
async fn delete_pod_answered_with_a_success_status_has_no_resource_version() {
    let replay = Replay::default();
    replay.answer(200, "status_pod_gone.json");
    let action = kube(
        KubeActionKind::DeletePod,
        "",
        Some("prod"),
        "web-7d4b9c8f6d-x2k9q",
    );
    let out = summary(&runner(&replay), &action).await;
    assert_eq!(out["resourceVersion"], Value::Null);
    assert_eq!(out["kind"], "Pod");
}

#[tokio::test]
async fn cordon_and_uncordon_patch_the_node_spec() {
    for (action, unschedulable) in [
        (KubeActionKind::Cordon, true),
        (KubeActionKind::Uncordon, false),
    ] {
        let replay = Replay::default();
        replay.answer(200, "node_patched.json");
        let out = summary(&runner(&replay), &kube(action, "Node", None, "worker-2")).await;
        assert_eq!(
            replay.single(),
            request(
                "PATCH",
                "/api/v1/nodes/worker-2?&fieldManager=opsloop",
                MERGE,
                json!({"spec": {"unschedulable": unschedulable}}),
            )
        );
        assert_eq!(out["namespace"], Value::Null);
        assert_eq!(out["resourceVersion"], "77120");
    }
}

#[tokio::test]
async fn annotate_merges_the_annotations() {
    let replay = Replay::default();
    replay.answer(200, "statefulset_patched.json");
    let action = with_annotations(
        kube(KubeActionKind::Annotate, "StatefulSet", Some("prod"), "db"),
        &[
            ("opsloop.io/incident", "inc-42"),
            ("opsloop.io/playbook", "db-restart"),
        ],
    );
    let out = summary(&runner(&replay), &action).await;
    assert_eq!(
        replay.single(),
        request(
            "PATCH",
            "/apis/apps/v1/namespaces/prod/statefulsets/db?&fieldManager=opsloop",
            MERGE,
            json!({"metadata": {"annotations": {
                "opsloop.io/incident": "inc-42", "opsloop.io/playbook": "db-restart"
            }}}),
        )
    );
    assert_eq!(out["resourceVersion"], "51007");
}

#[tokio::test]
async fn patch_sends_the_given_merge_patch() {
    let replay = Replay::default();
    replay.answer(200, "deployment_patched.json");
    // A merge patch replaces lists wholesale, so playbooks patch scalar fields and maps.
    let body = json!({"spec": {"paused": false, "minReadySeconds": 10},
                      "metadata": {"labels": {"opsloop.io/healed": "true"}}});
    let action = with_patch(
        kube(KubeActionKind::Patch, "Deployment", Some("prod"), "web"),
        body.clone(),
    );
    summary(&runner(&replay), &action).await;
    assert_eq!(
        replay.single(),
        request(
            "PATCH",
            "/apis/apps/v1/namespaces/prod/deployments/web?&fieldManager=opsloop",
            MERGE,
            body,
        )
    );
}

#[tokio::test]
async fn not_found_names_the_object_and_the_status() {
    let replay = Replay::default();
    replay.answer(404, "status_404.json");
    let action = kube(
        KubeActionKind::RolloutRestart,
        "Deployment",
        Some("prod"),
        "web",
    );
    let e = runner(&replay).run(&action).await.unwrap_err();
    let ActionError::Other(message) = e else {
        panic!("{e:?}");
    };
    assert_eq!(
        message,
        "kubernetes rollout_restart Deployment prod/web: 404 NotFound: deployments.apps \"web\" \
         not found; Deployment prod/web does not exist"
    );
}

#[tokio::test]
async fn forbidden_names_the_missing_rbac_rule() {
    let replay = Replay::default();
    replay.answer(403, "status_403.json");
    let action = with_replicas(
        kube(KubeActionKind::Scale, "Deployment", Some("prod"), "web"),
        5,
    );
    let e = runner(&replay).run(&action).await.unwrap_err();
    let message = e.to_string();
    assert!(
        message.starts_with("kubernetes scale Deployment prod/web: 403 Forbidden: "),
        "{message}"
    );
    assert!(
        message.ends_with(
            "the service account lacks verb \"patch\" on \"deployments/scale\" in API group \
             \"apps\" (grant it as in deploy/rbac.yaml)"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn invalid_actions_send_nothing() {
    let replay = Replay::default();
    let runner = runner(&replay);
    for (action, needle) in [
        (
            with_replicas(kube(KubeActionKind::Scale, "DaemonSet", Some("p"), "x"), 1),
            "scale acts on a Deployment or StatefulSet, not a DaemonSet",
        ),
        (
            kube(KubeActionKind::Cordon, "Node", Some("prod"), "worker-2"),
            "cluster-scoped",
        ),
        (
            kube(KubeActionKind::Patch, "Secret", Some("p"), "s"),
            "\"Secret\"",
        ),
        (
            kube(KubeActionKind::Patch, "Deployment", Some("p"), "web"),
            "no patch",
        ),
        (
            kube(KubeActionKind::Scale, "Deployment", Some("p"), "web"),
            "no replicas",
        ),
    ] {
        let e = runner.run(&action).await.unwrap_err();
        assert!(e.to_string().contains(needle), "{e} lacks {needle}");
    }
    assert!(replay.requests().is_empty(), "{:#?}", replay.requests());
}

#[tokio::test]
async fn a_broken_connection_is_an_http_error() {
    // A client whose service always fails, as when the API server is unreachable.
    let service = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
        Err::<http::Response<kube::client::Body>, _>(std::io::Error::other("connection refused"))
    });
    let runner = ClusterRunner::new().with_kube(kube::Client::new(service, "default"));
    let e = runner
        .run(&kube(KubeActionKind::Cordon, "Node", None, "worker-2"))
        .await
        .unwrap_err();
    let ActionError::Http(message) = e else {
        panic!("{e:?}");
    };
    assert!(message.contains("connection refused"), "{message}");
    assert!(
        message.starts_with("kubernetes cordon Node worker-2: "),
        "{message}"
    );
}
