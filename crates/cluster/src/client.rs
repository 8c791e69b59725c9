//! Building a `kube::Client` from the environment without failing where no cluster is
//! configured: an agent on a plain host simply has no Kubernetes actions.

use std::ffi::OsString;
use std::path::PathBuf;

/// A cluster client could not be built although one is configured.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig or in-cluster configuration is unreadable or invalid.
    #[error("kubernetes configuration ({source_hint}): {message}")]
    Config {
        /// Where the configuration was looked for.
        source_hint: String,
        /// What went wrong.
        message: String,
    },
    /// The configuration is valid but the client could not be built from it (TLS, proxy).
    #[error("kubernetes client: {0}")]
    Client(String),
}

/// Where a Kubernetes configuration would come from, if anywhere, reading variables through
/// `var` (tests pass a map: changing the process environment is unsafe).
fn configured_source(var: impl Fn(&str) -> Option<OsString>) -> Option<String> {
    if let Some(path) = var("KUBECONFIG").filter(|p| !p.is_empty()) {
        return Some(format!("KUBECONFIG={}", PathBuf::from(path).display()));
    }
    if let Some(home) = var("HOME") {
        let path = PathBuf::from(home).join(".kube").join("config");
        if path.is_file() {
            return Some(path.display().to_string());
        }
    }
    var("KUBERNETES_SERVICE_HOST")
        .filter(|h| !h.is_empty())
        .map(|_| "in-cluster service account".to_string())
}

/// A client from `$KUBECONFIG`, `~/.kube/config` or the in-cluster service account (the
/// order `kubectl` uses), or `None` when none of them exists. A configuration that exists
/// but is broken is an error, so a typo does not silently disable the actions.
pub async fn infer_kube_client() -> Result<Option<kube::Client>, ClusterError> {
    let Some(source_hint) = configured_source(|name| std::env::var_os(name)) else {
        return Ok(None);
    };
    let config = kube::Config::infer()
        .await
        .map_err(|e| ClusterError::Config {
            source_hint,
            message: crate::runner::error_chain(&e),
        })?;
    kube::Client::try_from(config)
        .map(Some)
        .map_err(|e| ClusterError::Client(crate::runner::error_chain(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn source(vars: &[(&str, &std::path::Path)]) -> Option<String> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
            .collect();
        configured_source(|name| map.get(name).cloned())
    }

    #[test]
    fn nothing_configured_means_no_client() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(source(&[("HOME", home.path())]), None);
        assert_eq!(source(&[]), None);
    }

    #[test]
    fn kubeconfig_then_home_then_in_cluster() {
        let home = tempfile::tempdir().unwrap();
        let host = std::path::Path::new("10.0.0.1");
        assert_eq!(
            source(&[("HOME", home.path()), ("KUBERNETES_SERVICE_HOST", host)]).as_deref(),
            Some("in-cluster service account")
        );
        std::fs::create_dir(home.path().join(".kube")).unwrap();
        std::fs::write(home.path().join(".kube/config"), "").unwrap();
        assert!(
            source(&[("HOME", home.path()), ("KUBERNETES_SERVICE_HOST", host)])
                .unwrap()
                .ends_with("config")
        );
        let kc = std::path::Path::new("/k/config");
        assert!(
            source(&[("HOME", home.path()), ("KUBECONFIG", kc)])
                .unwrap()
                .starts_with("KUBECONFIG=")
        );
    }
}
