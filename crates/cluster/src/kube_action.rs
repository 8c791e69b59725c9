//! One Kubernetes action as API requests: the patch bodies (built like kubectl's), the call
//! through `kube::Api<DynamicObject>`, the JSON summary, and API errors turned into messages
//! that name the missing RBAC rule or the missing object.

use std::collections::BTreeMap;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use opsloop_heal::action::ActionError;
use opsloop_heal::spec::KubeActionKind;
use serde_json::{Value, json};

use crate::runner::{RESTARTED_AT_ANNOTATION, error_chain};
use crate::target::{Permission, Target, action_name, permission};

/// What one Kubernetes action needs beyond its target.
pub(crate) struct KubeRequest<'a> {
    pub action: KubeActionKind,
    pub target: Target,
    pub replicas: Option<i32>,
    pub annotations: &'a BTreeMap<String, String>,
    pub patch: Option<&'a Value>,
    /// RFC 3339 time for `rollout_restart`.
    pub now_rfc3339: String,
}

fn api(client: kube::Client, target: &Target) -> Api<DynamicObject> {
    let kind = target.kind;
    let gvk = GroupVersionKind::gvk(kind.group(), kind.version(), kind.name());
    let resource = ApiResource::from_gvk_with_plural(&gvk, kind.plural());
    match &target.namespace {
        Some(ns) => Api::namespaced_with(client, ns, &resource),
        None => Api::all_with(client, &resource),
    }
}

/// The body each patching action sends, and its patch type.
pub(crate) fn patch_body(req: &KubeRequest<'_>) -> Result<Patch<Value>, ActionError> {
    let body = match req.action {
        // Exactly what `kubectl rollout restart` sends: a new pod-template annotation makes
        // the controller roll the pods; strategic merge keeps the other annotations.
        KubeActionKind::RolloutRestart => {
            return Ok(Patch::Strategic(json!({
                "spec": {"template": {"metadata": {"annotations": {
                    RESTARTED_AT_ANNOTATION: req.now_rfc3339,
                }}}}
            })));
        }
        KubeActionKind::Scale => {
            let replicas = req
                .replicas
                .ok_or_else(|| ActionError::Other("kubernetes scale: no replicas given".into()))?;
            json!({"spec": {"replicas": replicas}})
        }
        KubeActionKind::Cordon => json!({"spec": {"unschedulable": true}}),
        KubeActionKind::Uncordon => json!({"spec": {"unschedulable": false}}),
        KubeActionKind::Annotate => {
            if req.annotations.is_empty() {
                return Err(ActionError::Other(
                    "kubernetes annotate: no annotations given".into(),
                ));
            }
            json!({"metadata": {"annotations": req.annotations}})
        }
        KubeActionKind::Patch => match req.patch {
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(ActionError::Other(
                    "kubernetes patch: the patch must be a JSON object".into(),
                ));
            }
            None => {
                return Err(ActionError::Other(
                    "kubernetes patch: no patch given".into(),
                ));
            }
        },
        KubeActionKind::DeletePod => {
            return Err(ActionError::Other("delete_pod does not patch".into()));
        }
    };
    Ok(Patch::Merge(body))
}

/// Performs the request; the summary is a JSON object with kind, namespace, name and
/// resourceVersion (plus replicas for scale).
pub(crate) async fn perform(
    client: kube::Client,
    field_manager: &str,
    req: &KubeRequest<'_>,
) -> Result<Value, ActionError> {
    let permission = permission(req.action, req.target.kind)
        .map_err(|m| ActionError::Other(format!("kubernetes: {m}")))?;
    let api = api(client, &req.target);
    let params = PatchParams {
        field_manager: Some(field_manager.to_string()),
        ..PatchParams::default()
    };
    let name = req.target.name.as_str();
    let fail = |e: kube::Error| api_error(e, req, permission);
    let (resource_version, replicas) = match req.action {
        KubeActionKind::Scale => {
            let scale = api
                .patch_scale(name, &params, &patch_body(req)?)
                .await
                .map_err(fail)?;
            (
                scale.metadata.resource_version,
                scale.spec.and_then(|s| s.replicas),
            )
        }
        KubeActionKind::DeletePod => {
            let deleted = api
                .delete(name, &DeleteParams::default())
                .await
                .map_err(fail)?;
            // The pod as it is being deleted, or a Status once it is already gone.
            let rv = deleted.left().and_then(|pod| pod.metadata.resource_version);
            (rv, None)
        }
        _ => {
            let object = api
                .patch(name, &params, &patch_body(req)?)
                .await
                .map_err(fail)?;
            (object.metadata.resource_version, None)
        }
    };
    let mut summary = json!({
        "action": action_name(req.action),
        "kind": req.target.kind.name(),
        "namespace": req.target.namespace,
        "name": name,
        "resourceVersion": resource_version,
    });
    if let (Some(r), Some(map)) = (replicas, summary.as_object_mut()) {
        map.insert("replicas".into(), json!(r));
    }
    Ok(summary)
}

/// An API error as the operator needs it: status code, reason, the object and, for 403, the
/// RBAC rule to add.
fn api_error(e: kube::Error, req: &KubeRequest<'_>, permission: Permission) -> ActionError {
    let object = format!("{} {}", req.target.kind.name(), req.target.display_name());
    let action = action_name(req.action);
    let kube::Error::Api(status) = e else {
        return ActionError::Http(format!("kubernetes {action} {object}: {}", error_chain(&e)));
    };
    let reason = if status.reason.is_empty() {
        "Unknown"
    } else {
        status.reason.as_str()
    };
    let hint = match status.code {
        403 => {
            format!("; the service account lacks {permission} (grant it as in deploy/rbac.yaml)")
        }
        404 => format!("; {object} does not exist"),
        409 => "; the object changed meanwhile, a retry may succeed".to_string(),
        _ => String::new(),
    };
    ActionError::Other(format!(
        "kubernetes {action} {object}: {} {reason}: {}{hint}",
        status.code, status.message
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::TargetKind;

    fn request<'a>(
        action: KubeActionKind,
        annotations: &'a BTreeMap<String, String>,
        patch: Option<&'a Value>,
    ) -> KubeRequest<'a> {
        KubeRequest {
            action,
            target: Target {
                kind: TargetKind::Deployment,
                namespace: Some("prod".into()),
                name: "web".into(),
            },
            replicas: None,
            annotations,
            patch,
            now_rfc3339: "2026-11-29T07:00:00Z".into(),
        }
    }

    #[test]
    fn missing_inputs_are_errors_not_empty_patches() {
        let none = BTreeMap::new();
        for (action, needle) in [
            (KubeActionKind::Scale, "replicas"),
            (KubeActionKind::Annotate, "annotations"),
            (KubeActionKind::Patch, "no patch"),
        ] {
            let e = patch_body(&request(action, &none, None)).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
        let not_object = json!([1]);
        let e = patch_body(&request(KubeActionKind::Patch, &none, Some(&not_object))).unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
    }

    #[test]
    fn rollout_restart_is_a_strategic_patch_of_the_template() {
        let none = BTreeMap::new();
        let Patch::Strategic(body) =
            patch_body(&request(KubeActionKind::RolloutRestart, &none, None)).unwrap()
        else {
            panic!("not strategic");
        };
        assert_eq!(
            body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION],
            "2026-11-29T07:00:00Z"
        );
    }
}
