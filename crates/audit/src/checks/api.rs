//! Deprecated and removed API versions, from the Kubernetes deprecation guide.

use super::{Context, Sink};
use crate::catalog::{API_VERSION_DEPRECATED, API_VERSION_REMOVED};

/// An API version (of some kinds, or all of its kinds) and what replaced it.
struct Retired {
    api_version: &'static str,
    /// Kinds concerned; empty = every kind of that version.
    kinds: &'static [&'static str],
    /// Release that removed it, or `None` when only deprecated.
    removed_in: Option<&'static str>,
    /// Release that deprecated it, for deprecated-only entries.
    deprecated_in: &'static str,
    replacement: &'static str,
}

const RETIRED: &[Retired] = &[
    Retired {
        api_version: "extensions/v1beta1",
        kinds: &["Ingress"],
        removed_in: Some("1.22"),
        deprecated_in: "1.14",
        replacement: "networking.k8s.io/v1",
    },
    Retired {
        api_version: "extensions/v1beta1",
        kinds: &["NetworkPolicy"],
        removed_in: Some("1.16"),
        deprecated_in: "1.9",
        replacement: "networking.k8s.io/v1",
    },
    Retired {
        api_version: "extensions/v1beta1",
        kinds: &["PodSecurityPolicy"],
        removed_in: Some("1.16"),
        deprecated_in: "1.11",
        replacement: "Pod Security Admission (PodSecurityPolicy is gone since 1.25)",
    },
    Retired {
        api_version: "extensions/v1beta1",
        kinds: &[],
        removed_in: Some("1.16"),
        deprecated_in: "1.9",
        replacement: "apps/v1",
    },
    Retired {
        api_version: "apps/v1beta1",
        kinds: &[],
        removed_in: Some("1.16"),
        deprecated_in: "1.9",
        replacement: "apps/v1",
    },
    Retired {
        api_version: "apps/v1beta2",
        kinds: &[],
        removed_in: Some("1.16"),
        deprecated_in: "1.9",
        replacement: "apps/v1",
    },
    Retired {
        api_version: "networking.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.22"),
        deprecated_in: "1.19",
        replacement: "networking.k8s.io/v1",
    },
    Retired {
        api_version: "batch/v1beta1",
        kinds: &[],
        removed_in: Some("1.25"),
        deprecated_in: "1.21",
        replacement: "batch/v1",
    },
    Retired {
        api_version: "batch/v2alpha1",
        kinds: &[],
        removed_in: Some("1.21"),
        deprecated_in: "1.8",
        replacement: "batch/v1",
    },
    Retired {
        api_version: "policy/v1beta1",
        kinds: &["PodSecurityPolicy"],
        removed_in: Some("1.25"),
        deprecated_in: "1.21",
        replacement: "Pod Security Admission",
    },
    Retired {
        api_version: "policy/v1beta1",
        kinds: &[],
        removed_in: Some("1.25"),
        deprecated_in: "1.21",
        replacement: "policy/v1",
    },
    Retired {
        api_version: "autoscaling/v2beta1",
        kinds: &[],
        removed_in: Some("1.25"),
        deprecated_in: "1.22",
        replacement: "autoscaling/v2",
    },
    Retired {
        api_version: "autoscaling/v2beta2",
        kinds: &[],
        removed_in: Some("1.26"),
        deprecated_in: "1.23",
        replacement: "autoscaling/v2",
    },
    Retired {
        api_version: "rbac.authorization.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.22"),
        deprecated_in: "1.17",
        replacement: "rbac.authorization.k8s.io/v1",
    },
    Retired {
        api_version: "rbac.authorization.k8s.io/v1alpha1",
        kinds: &[],
        removed_in: Some("1.22"),
        deprecated_in: "1.17",
        replacement: "rbac.authorization.k8s.io/v1",
    },
    Retired {
        api_version: "apiextensions.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.22"),
        deprecated_in: "1.16",
        replacement: "apiextensions.k8s.io/v1",
    },
    Retired {
        api_version: "admissionregistration.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.22"),
        deprecated_in: "1.16",
        replacement: "admissionregistration.k8s.io/v1",
    },
    Retired {
        api_version: "apiregistration.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.22"),
        deprecated_in: "1.19",
        replacement: "apiregistration.k8s.io/v1",
    },
    Retired {
        api_version: "scheduling.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.22"),
        deprecated_in: "1.14",
        replacement: "scheduling.k8s.io/v1",
    },
    Retired {
        api_version: "scheduling.k8s.io/v1alpha1",
        kinds: &[],
        removed_in: Some("1.17"),
        deprecated_in: "1.14",
        replacement: "scheduling.k8s.io/v1",
    },
    Retired {
        api_version: "storage.k8s.io/v1beta1",
        kinds: &["CSIStorageCapacity"],
        removed_in: Some("1.27"),
        deprecated_in: "1.24",
        replacement: "storage.k8s.io/v1",
    },
    Retired {
        api_version: "storage.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.22"),
        deprecated_in: "1.19",
        replacement: "storage.k8s.io/v1",
    },
    Retired {
        api_version: "coordination.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.22"),
        deprecated_in: "1.19",
        replacement: "coordination.k8s.io/v1",
    },
    Retired {
        api_version: "certificates.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.22"),
        deprecated_in: "1.19",
        replacement: "certificates.k8s.io/v1",
    },
    Retired {
        api_version: "discovery.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.25"),
        deprecated_in: "1.21",
        replacement: "discovery.k8s.io/v1",
    },
    Retired {
        api_version: "events.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.25"),
        deprecated_in: "1.19",
        replacement: "events.k8s.io/v1",
    },
    Retired {
        api_version: "node.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.25"),
        deprecated_in: "1.20",
        replacement: "node.k8s.io/v1",
    },
    Retired {
        api_version: "flowcontrol.apiserver.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.26"),
        deprecated_in: "1.23",
        replacement: "flowcontrol.apiserver.k8s.io/v1",
    },
    Retired {
        api_version: "flowcontrol.apiserver.k8s.io/v1beta2",
        kinds: &[],
        removed_in: Some("1.29"),
        deprecated_in: "1.26",
        replacement: "flowcontrol.apiserver.k8s.io/v1",
    },
    Retired {
        api_version: "flowcontrol.apiserver.k8s.io/v1beta3",
        kinds: &[],
        removed_in: Some("1.32"),
        deprecated_in: "1.29",
        replacement: "flowcontrol.apiserver.k8s.io/v1",
    },
    Retired {
        api_version: "authentication.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.22"),
        deprecated_in: "1.19",
        replacement: "authentication.k8s.io/v1",
    },
    Retired {
        api_version: "authorization.k8s.io/v1beta1",
        kinds: &[],
        removed_in: Some("1.22"),
        deprecated_in: "1.19",
        replacement: "authorization.k8s.io/v1",
    },
    Retired {
        api_version: "v1",
        kinds: &["Endpoints"],
        removed_in: None,
        deprecated_in: "1.33",
        replacement: "discovery.k8s.io/v1 EndpointSlice",
    },
    Retired {
        api_version: "v1",
        kinds: &["ComponentStatus"],
        removed_in: None,
        deprecated_in: "1.19",
        replacement: "the API server's /livez and /readyz",
    },
];

/// Runs the API version checks.
pub fn check(context: &Context<'_, '_>, sink: &mut Sink) {
    for (index, object) in context.objects.iter().enumerate() {
        let Some(retired) = RETIRED.iter().find(|r| {
            r.api_version == object.api_version
                && (r.kinds.is_empty() || r.kinds.contains(&object.kind.as_str()))
        }) else {
            continue;
        };
        let line = object.line_of(&["apiVersion"]);
        match retired.removed_in {
            Some(release) => sink.object(
                &API_VERSION_REMOVED,
                index,
                line,
                format!(
                    "{} {} was removed in Kubernetes {release}; use {}",
                    object.api_version, object.kind, retired.replacement
                ),
            ),
            None => sink.object(
                &API_VERSION_DEPRECATED,
                index,
                line,
                format!(
                    "{} {} is deprecated since Kubernetes {}; use {}",
                    object.api_version, object.kind, retired.deprecated_in, retired.replacement
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::lines_of;

    #[test]
    fn removed_version() {
        let bad = "kind: Deployment\napiVersion: extensions/v1beta1\nmetadata: {name: x}\n";
        assert_eq!(lines_of(bad, "api-version-removed"), vec![2]);
        let good = bad.replace("extensions/v1beta1", "apps/v1");
        assert!(lines_of(&good, "api-version-removed").is_empty());
    }

    #[test]
    fn deprecated_kind() {
        let bad = "apiVersion: v1\nkind: Endpoints\nmetadata: {name: x}\n";
        assert_eq!(lines_of(bad, "api-version-deprecated"), vec![1]);
        let good = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: x}\naddressType: IPv4\nendpoints: []\n";
        assert!(lines_of(good, "api-version-deprecated").is_empty());
    }
}
