//! `opsloop audit --cluster` against a replaying API server: the requests made (paged,
//! metadata-only for ConfigMaps and Secrets), what becomes an input and what does not
//! (objects a controller owns, Secret values), and the audit over the result.

#![cfg(feature = "cluster")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response};
use kube::client::Body;
use opsloop_audit::cluster;
use opsloop_audit::{Options, audit};

/// The recorded answer for a request: by path, and for the paged deployments by
/// continuation token.
fn answer(path_and_query: &str) -> (u16, &'static str) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    match path {
        "/apis/apps/v1/deployments" if query.contains("continue=") => {
            (200, "deployments_page2.json")
        }
        "/apis/apps/v1/deployments" => (200, "deployments_page1.json"),
        "/apis/apps/v1/statefulsets" => (200, "statefulsets.json"),
        "/apis/apps/v1/daemonsets" => (403, "status_403_daemonsets.json"),
        "/apis/batch/v1/jobs" => (200, "jobs.json"),
        "/apis/batch/v1/cronjobs" => (200, "cronjobs.json"),
        "/api/v1/pods" => (200, "pods.json"),
        "/api/v1/services" => (200, "services.json"),
        "/apis/autoscaling/v2/horizontalpodautoscalers" => (200, "horizontalpodautoscalers.json"),
        "/apis/policy/v1/poddisruptionbudgets" => (200, "poddisruptionbudgets.json"),
        "/api/v1/configmaps" => (200, "configmaps_metadata.json"),
        "/api/v1/secrets" => (200, "secrets_metadata.json"),
        _ => (404, "status_404.json"),
    }
}

/// One request: path with query, and the `Accept` header.
type Seen = (String, String);

#[derive(Clone, Default)]
struct Replay(Arc<Mutex<Vec<Seen>>>);

impl tower::Service<Request<Body>> for Replay {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let accept = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        self.0.lock().unwrap().push((path.clone(), accept));
        let (status, name) = answer(&path);
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cluster")
            .join(name);
        let body = std::fs::read(&file).unwrap();
        Box::pin(async move {
            Ok(Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap())
        })
    }
}

fn read_all() -> (cluster::ClusterRead, Vec<Seen>) {
    let replay = Replay::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let read = runtime.block_on(async {
        // The client spawns its buffer task: built on the runtime.
        let client = kube::Client::new(replay.clone(), "default");
        cluster::read(&client, None).await
    });
    let seen = replay.0.lock().unwrap().clone();
    (read, seen)
}

#[test]
fn reads_every_kind_paged_and_secrets_by_name_only() {
    let (read, seen) = read_all();
    let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths.len(), 13, "{paths:#?}");
    assert_eq!(paths[0], "/apis/apps/v1/deployments?&limit=500");
    assert!(paths[1].starts_with("/apis/apps/v1/deployments?&limit=500&continue=eyJ2Ijoi"));
    for (path, accept) in &seen {
        let metadata_only = accept.contains("as=PartialObjectMetadataList");
        let names_only =
            path.starts_with("/api/v1/secrets") || path.starts_with("/api/v1/configmaps");
        assert_eq!(metadata_only, names_only, "{path}: {accept}");
    }

    let names: Vec<&str> = read.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "cluster://default/Deployment/web",
            "cluster://shop/Deployment/api",
            // Forbidden: an input error of the run, the rest still read.
            "cluster://DaemonSet/*",
            "cluster://default/Pod/debug",
            "cluster://default/Service/web",
            "cluster://default/ConfigMap/web-config",
            "cluster://default/Secret/db-password",
        ]
    );
    let daemonsets = read
        .sources
        .iter()
        .find(|s| s.name.contains("DaemonSet"))
        .unwrap();
    let error = daemonsets.bytes.as_ref().unwrap_err();
    assert!(
        error.contains("forbidden") && error.contains("list permission"),
        "{error}"
    );
    assert_eq!(read.notes.len(), 1);
    assert!(
        read.notes[0].starts_with("ServiceMonitor: "),
        "{:?}",
        read.notes
    );

    let text = |name: &str| {
        let source = read.sources.iter().find(|s| s.name == name).unwrap();
        String::from_utf8(source.bytes.clone().unwrap()).unwrap()
    };
    let secret = text("cluster://default/Secret/db-password");
    assert!(!secret.contains("aHVudGVyMg"), "{secret}");
    assert!(!secret.contains("last-applied"), "{secret}");
    assert!(secret.contains("\"kind\": \"Secret\""));
    let api = text("cluster://shop/Deployment/api");
    assert!(
        !api.contains("managedFields") && !api.contains("last-applied"),
        "{api}"
    );
    assert!(!api.contains("\"status\""), "{api}");
}

#[test]
fn the_checks_run_over_cluster_objects() {
    let (read, _) = read_all();
    let report = audit(&read.sources, &Options::default());
    assert!(report.has_read_errors(), "the forbidden kind is reported");
    let checks_of = |file: &str| -> Vec<&str> {
        report
            .findings
            .iter()
            .filter(|f| f.file == file)
            .map(|f| f.check)
            .collect()
    };
    assert!(checks_of("cluster://default/Pod/debug").contains(&"host-network"));
    // GOMAXPROCS 16 against a 2-CPU limit: the runtime checks see the live spec.
    let api = checks_of("cluster://shop/Deployment/api");
    assert!(api.iter().any(|c| c.contains("gomaxprocs")), "{api:?}");
    // Cross-resource: the Service selects the Deployment read from another request.
    assert!(!checks_of("cluster://default/Service/web").contains(&"service-selects-nothing"));
    let host = report
        .findings
        .iter()
        .find(|f| f.check == "host-network")
        .unwrap();
    assert!(host.line > 1);
}

#[test]
fn key_references_into_names_only_objects_are_not_missing() {
    let (read, _) = read_all();
    let names_only: Vec<&str> = read
        .sources
        .iter()
        .filter(|s| s.names_only)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        names_only,
        vec![
            "cluster://default/ConfigMap/web-config",
            "cluster://default/Secret/db-password"
        ]
    );
    let report = audit(&read.sources, &Options::default());
    let missing: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.check == "env-reference-missing")
        .map(|f| f.message.as_str())
        .collect();
    // The secretKeyRef and configMapKeyRef name keys of objects whose values were never
    // read: not findings. The Secret that does not exist at all still is one.
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].contains("no-such-secret"), "{missing:?}");
}
