//! A Kubernetes API server stand-in for tests: a `tower::Service` that records every request
//! (method, path with query, content type, JSON body) and answers with recorded responses
//! from `tests/fixtures/`, in order.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response};
use kube::client::Body;
use serde_json::Value;

/// One request the client sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub content_type: String,
    pub body: Value,
}

/// The replaying API server.
#[derive(Clone, Default)]
pub struct Replay {
    answers: Arc<Mutex<VecDeque<(u16, String)>>>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

/// The text of `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Replay {
    /// Queues the next answer: `status` with the fixture `name` as body.
    pub fn answer(&self, status: u16, name: &str) -> &Self {
        self.answers
            .lock()
            .unwrap()
            .push_back((status, fixture(name)));
        self
    }

    /// A client talking to this server, default namespace `default`.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    /// The only request received.
    pub fn single(&self) -> Recorded {
        let all = self.requests();
        assert_eq!(all.len(), 1, "{all:#?}");
        all.into_iter().next().unwrap()
    }
}

impl tower::Service<Request<Body>> for Replay {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            me.recorded.lock().unwrap().push(Recorded {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
                body,
            });
            // An unexpected request gets a 500 Status, which fails the test visibly.
            let (status, text) = me.answers.lock().unwrap().pop_front().unwrap_or((
                500,
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"no recorded answer","reason":"InternalError","code":500}"#.into(),
            ));
            Ok(Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(text.into_bytes()))
                .unwrap())
        })
    }
}
