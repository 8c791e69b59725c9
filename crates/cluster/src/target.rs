//! The objects Kubernetes actions touch: which kinds each action accepts, their API
//! coordinates, and the RBAC permission (group, resource, verb) each action needs. This table
//! is the single source for the requests made, the 403 hint and the `deploy/rbac.yaml` test.

use opsloop_heal::spec::KubeActionKind;

/// The object kinds actions act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// v1 Pod.
    Pod,
    /// v1 Node (cluster-scoped).
    Node,
}

impl TargetKind {
    /// Every kind.
    pub const ALL: [TargetKind; 5] = [
        TargetKind::Deployment,
        TargetKind::StatefulSet,
        TargetKind::DaemonSet,
        TargetKind::Pod,
        TargetKind::Node,
    ];

    /// Parses a kind as playbooks write it: the kind (`Deployment`), its plural or the
    /// kubectl short name, in any case.
    pub fn parse(text: &str) -> Option<TargetKind> {
        let kind = match text.trim().to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" => TargetKind::Deployment,
            "statefulset" | "statefulsets" | "sts" => TargetKind::StatefulSet,
            "daemonset" | "daemonsets" | "ds" => TargetKind::DaemonSet,
            "pod" | "pods" | "po" => TargetKind::Pod,
            "node" | "nodes" | "no" => TargetKind::Node,
            _ => return None,
        };
        Some(kind)
    }

    /// The kind as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Deployment => "Deployment",
            TargetKind::StatefulSet => "StatefulSet",
            TargetKind::DaemonSet => "DaemonSet",
            TargetKind::Pod => "Pod",
            TargetKind::Node => "Node",
        }
    }

    /// API group (empty: core).
    pub fn group(self) -> &'static str {
        match self {
            TargetKind::Deployment | TargetKind::StatefulSet | TargetKind::DaemonSet => "apps",
            TargetKind::Pod | TargetKind::Node => "",
        }
    }

    /// API version within the group.
    pub fn version(self) -> &'static str {
        "v1"
    }

    /// The resource (plural) in URLs and RBAC rules.
    pub fn plural(self) -> &'static str {
        match self {
            TargetKind::Deployment => "deployments",
            TargetKind::StatefulSet => "statefulsets",
            TargetKind::DaemonSet => "daemonsets",
            TargetKind::Pod => "pods",
            TargetKind::Node => "nodes",
        }
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        self != TargetKind::Node
    }

    /// The kind used when a playbook names none (as the heal crate's playbook check does).
    pub fn default_for(action: KubeActionKind) -> TargetKind {
        match action {
            KubeActionKind::Cordon | KubeActionKind::Uncordon => TargetKind::Node,
            KubeActionKind::DeletePod => TargetKind::Pod,
            _ => TargetKind::Deployment,
        }
    }
}

/// One RBAC grant: `verb` on `resource` (with `/subresource`) in API `group`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission {
    /// API group (empty: core).
    pub group: &'static str,
    /// Resource, with `/subresource` where one is used.
    pub resource: &'static str,
    /// Verb.
    pub verb: &'static str,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        write!(
            f,
            "verb \"{}\" on \"{}\" in API group \"{}\"",
            self.verb, self.resource, group
        )
    }
}

/// Every action name, for messages.
pub(crate) fn action_name(action: KubeActionKind) -> &'static str {
    match action {
        KubeActionKind::RolloutRestart => "rollout_restart",
        KubeActionKind::Scale => "scale",
        KubeActionKind::DeletePod => "delete_pod",
        KubeActionKind::Cordon => "cordon",
        KubeActionKind::Uncordon => "uncordon",
        KubeActionKind::Annotate => "annotate",
        KubeActionKind::Patch => "patch",
    }
}

/// Every action kind.
pub(crate) const ALL_ACTIONS: [KubeActionKind; 7] = [
    KubeActionKind::RolloutRestart,
    KubeActionKind::Scale,
    KubeActionKind::DeletePod,
    KubeActionKind::Cordon,
    KubeActionKind::Uncordon,
    KubeActionKind::Annotate,
    KubeActionKind::Patch,
];

/// The permission `action` needs on `kind`, or why the combination is not supported.
pub fn permission(action: KubeActionKind, kind: TargetKind) -> Result<Permission, String> {
    use KubeActionKind as A;
    use TargetKind as K;
    let (resource, verb) = match (action, kind) {
        (A::RolloutRestart, K::Deployment | K::StatefulSet | K::DaemonSet) => {
            (kind.plural(), "patch")
        }
        (A::Scale, K::Deployment) => ("deployments/scale", "patch"),
        (A::Scale, K::StatefulSet) => ("statefulsets/scale", "patch"),
        (A::DeletePod, K::Pod) => ("pods", "delete"),
        (A::Cordon | A::Uncordon, K::Node) => ("nodes", "patch"),
        (A::Annotate | A::Patch, _) => (kind.plural(), "patch"),
        _ => {
            let accepted = match action {
                A::RolloutRestart => "a Deployment, StatefulSet or DaemonSet",
                A::Scale => "a Deployment or StatefulSet",
                A::DeletePod => "a Pod",
                _ => "a Node",
            };
            return Err(format!(
                "{} acts on {accepted}, not a {}",
                action_name(action),
                kind.name()
            ));
        }
    };
    Ok(Permission {
        group: kind.group(),
        resource,
        verb,
    })
}

/// Every permission some action needs: what `deploy/rbac.yaml` must grant, and no more.
pub fn all_permissions() -> Vec<Permission> {
    let mut all: Vec<Permission> = ALL_ACTIONS
        .iter()
        .flat_map(|a| TargetKind::ALL.iter().map(move |k| permission(*a, *k)))
        .filter_map(Result::ok)
        .collect();
    all.sort();
    all.dedup();
    all
}

/// A resolved object: kind, namespace (only for namespaced kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Kind.
    pub kind: TargetKind,
    /// Namespace; `None` for nodes.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl Target {
    /// Resolves the action's object; `default_namespace` serves namespaced kinds given none.
    pub fn resolve(
        action: KubeActionKind,
        object_kind: &str,
        namespace: Option<&str>,
        name: &str,
        default_namespace: &str,
    ) -> Result<Target, String> {
        let kind = if object_kind.trim().is_empty() {
            TargetKind::default_for(action)
        } else {
            TargetKind::parse(object_kind).ok_or_else(|| {
                format!(
                    "kind {object_kind:?} is not one of Deployment, StatefulSet, DaemonSet, Pod, Node"
                )
            })?
        };
        if name.trim().is_empty() {
            return Err("the object name is empty".into());
        }
        let namespace = match (kind.namespaced(), namespace.map(str::trim)) {
            (false, None | Some("")) => None,
            (false, Some(ns)) => {
                return Err(format!(
                    "{} objects are cluster-scoped; namespace {ns:?} does not apply",
                    kind.name()
                ));
            }
            (true, None | Some("")) => Some(default_namespace.to_string()),
            (true, Some(ns)) => Some(ns.to_string()),
        };
        Ok(Target {
            kind,
            namespace,
            name: name.to_string(),
        })
    }

    /// `namespace/name`, or the name for cluster-scoped objects.
    pub fn display_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_in_any_spelling() {
        assert_eq!(
            TargetKind::parse("Deployment"),
            Some(TargetKind::Deployment)
        );
        assert_eq!(TargetKind::parse("deploy"), Some(TargetKind::Deployment));
        assert_eq!(TargetKind::parse("STS"), Some(TargetKind::StatefulSet));
        assert_eq!(TargetKind::parse("nodes"), Some(TargetKind::Node));
        assert_eq!(TargetKind::parse("Secret"), None);
        for k in TargetKind::ALL {
            assert_eq!(TargetKind::parse(k.name()), Some(k));
            assert_eq!(TargetKind::parse(k.plural()), Some(k));
        }
    }

    #[test]
    fn unsupported_combinations_say_what_is_accepted() {
        let e = permission(KubeActionKind::Scale, TargetKind::DaemonSet).unwrap_err();
        assert_eq!(
            e,
            "scale acts on a Deployment or StatefulSet, not a DaemonSet"
        );
        let e = permission(KubeActionKind::Cordon, TargetKind::Pod).unwrap_err();
        assert!(e.contains("a Node"), "{e}");
        assert!(permission(KubeActionKind::DeletePod, TargetKind::Deployment).is_err());
        assert!(permission(KubeActionKind::RolloutRestart, TargetKind::Node).is_err());
    }

    #[test]
    fn permissions_are_least_privilege() {
        let all = all_permissions();
        assert!(all.iter().all(|p| p.verb == "patch" || p.verb == "delete"));
        assert!(
            all.iter()
                .filter(|p| p.verb == "delete")
                .all(|p| p.resource == "pods")
        );
        assert!(all.contains(&Permission {
            group: "apps",
            resource: "statefulsets/scale",
            verb: "patch"
        }));
        assert_eq!(all.len(), 8, "{all:?}");
    }

    #[test]
    fn targets_resolve_with_defaults_and_reject_misplaced_namespaces() {
        let t = Target::resolve(KubeActionKind::Scale, "", None, "web", "prod").unwrap();
        assert_eq!(t.kind, TargetKind::Deployment);
        assert_eq!(t.namespace.as_deref(), Some("prod"));
        let t = Target::resolve(KubeActionKind::Cordon, "", None, "n1", "prod").unwrap();
        assert_eq!((t.kind, t.namespace), (TargetKind::Node, None));
        let e = Target::resolve(KubeActionKind::Cordon, "Node", Some("x"), "n1", "d").unwrap_err();
        assert!(e.contains("cluster-scoped"), "{e}");
        let e = Target::resolve(KubeActionKind::Patch, "Secret", None, "s", "d").unwrap_err();
        assert!(e.contains("\"Secret\""), "{e}");
        assert!(Target::resolve(KubeActionKind::Patch, "Pod", None, " ", "d").is_err());
    }
}
