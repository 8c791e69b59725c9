//! RBAC checks: wildcard rules, bindings to cluster-admin, roles that read Secrets or
//! exec into pods.

use super::{Context, Sink};
use crate::catalog::{
    CLUSTER_ADMIN_BINDING, RBAC_EXEC_INTO_PODS, RBAC_READS_SECRETS, RBAC_WILDCARD,
};
use crate::yaml::Node;

/// Runs the RBAC checks.
pub fn check(context: &Context<'_, '_>, sink: &mut Sink) {
    for kind in ["Role", "ClusterRole"] {
        for (index, role) in context.of_kind(kind) {
            if !role.group().starts_with("rbac.authorization.k8s.io") {
                continue;
            }
            for rule in role.node.get("rules").map(Node::items).unwrap_or_default() {
                check_rule(index, rule, sink);
            }
        }
    }
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        for (index, binding) in context.of_kind(kind) {
            let Some(role_ref) = binding.node.get("roleRef") else {
                continue;
            };
            if role_ref.get("kind").and_then(Node::as_str) == Some("ClusterRole")
                && let Some(name) = role_ref.entry("name")
                && name.value.as_str() == Some("cluster-admin")
            {
                sink.object(
                    &CLUSTER_ADMIN_BINDING,
                    index,
                    name.key_line,
                    format!("{kind} grants cluster-admin"),
                );
            }
        }
    }
}

fn strings<'n>(rule: &'n Node<'_>, field: &str) -> Vec<&'n str> {
    rule.get(field)
        .map(Node::items)
        .unwrap_or_default()
        .iter()
        .filter_map(Node::as_str)
        .collect()
}

fn check_rule(index: usize, rule: &Node<'_>, sink: &mut Sink) {
    let groups = strings(rule, "apiGroups");
    let resources = strings(rule, "resources");
    let verbs = strings(rule, "verbs");
    let wildcard_fields: Vec<&str> = [
        ("apiGroups", &groups),
        ("resources", &resources),
        ("verbs", &verbs),
    ]
    .iter()
    .filter(|(_, values)| values.contains(&"*"))
    .map(|(field, _)| *field)
    .collect();
    if let Some(first) = wildcard_fields.first() {
        let line = rule.entry(first).map_or(rule.line, |e| e.key_line);
        sink.object(
            &RBAC_WILDCARD,
            index,
            line,
            format!("`*` in {}", wildcard_fields.join(", ")),
        );
    }
    // Non-resource rules (nonResourceURLs) have no resources.
    let core = groups.iter().any(|g| g.is_empty() || *g == "*");
    let any_verb = |wanted: &[&str]| verbs.iter().any(|v| *v == "*" || wanted.contains(v));
    if core
        && resources.iter().any(|r| *r == "secrets" || *r == "*")
        && any_verb(&["get", "list", "watch"])
        && rule
            .get("resourceNames")
            .is_none_or(|n| n.items().is_empty())
    {
        let line = rule.entry("resources").map_or(rule.line, |e| e.key_line);
        sink.object(
            &RBAC_READS_SECRETS,
            index,
            line,
            "can get, list or watch secrets".to_string(),
        );
    }
    let exec: Vec<&str> = resources
        .iter()
        .copied()
        .filter(|r| matches!(*r, "pods/exec" | "pods/attach" | "pods/*" | "*"))
        .collect();
    // exec uses create (POST) and get (websocket upgrade).
    if core && !exec.is_empty() && any_verb(&["create", "get"]) {
        let line = rule.entry("resources").map_or(rule.line, |e| e.key_line);
        sink.object(
            &RBAC_EXEC_INTO_PODS,
            index,
            line,
            format!("can exec or attach into pods ({})", exec.join(", ")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::lines_of;

    const ROLE: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list]\n";

    #[test]
    fn wildcard() {
        let bad = ROLE.replace("verbs: [get, list]", "verbs: [\"*\"]");
        assert_eq!(lines_of(&bad, "rbac-wildcard"), vec![7]);
        assert!(lines_of(ROLE, "rbac-wildcard").is_empty());
    }

    #[test]
    fn reads_secrets() {
        let bad = ROLE.replace("[configmaps]", "[configmaps, secrets]");
        assert_eq!(lines_of(&bad, "rbac-reads-secrets"), vec![6]);
        assert!(lines_of(ROLE, "rbac-reads-secrets").is_empty());
        let named = bad.replace("  verbs:", "  resourceNames: [tls]\n  verbs:");
        assert!(lines_of(&named, "rbac-reads-secrets").is_empty());
    }

    #[test]
    fn exec_into_pods() {
        let bad = ROLE
            .replace("[configmaps]", "[pods, pods/exec]")
            .replace("[get, list]", "[get, create]");
        assert_eq!(lines_of(&bad, "rbac-exec-into-pods"), vec![6]);
        assert!(lines_of(ROLE, "rbac-exec-into-pods").is_empty());
    }

    #[test]
    fn cluster_admin() {
        let bad = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\nsubjects: [{kind: ServiceAccount, name: ci, namespace: ci}]\n";
        assert_eq!(lines_of(bad, "cluster-admin-binding"), vec![7]);
        let good = bad.replace("name: cluster-admin", "name: view");
        assert!(lines_of(&good, "cluster-admin-binding").is_empty());
    }
}
