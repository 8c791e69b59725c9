//! Actions with every value interpolated ([`Action`]), the [`ActionRunner`] boundary that
//! performs them, the real [`SystemRunner`] (exec through the sandbox, HTTP, events; a
//! delegate for Kubernetes and NATS, which the binary wires) and the [`RecordingRunner`]
//! tests and benches use.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opsloop_core::Event;
use opsloop_sandbox::{Helper, Network, OutputMode, Sandbox, SandboxPolicy, Termination, UserSpec};
use serde::{Serialize, Serializer};

use crate::incident::REDACTED;
use crate::spec::{KubeActionKind, NetworkSpec};

/// Bytes of an HTTP response body read; the rest is dropped.
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// Bytes of each exec output stream captured.
pub const EXEC_CAPTURE_BYTES: usize = 64 << 10;

/// One HTTP header; a secret's value never serialises.
#[derive(Clone, Debug)]
pub struct Header {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Whether it came from `secret_env` / `secret_file`.
    pub secret: bool,
}

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Header", 2)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("value", if self.secret { REDACTED } else { &self.value })?;
        st.end()
    }
}

/// An action ready to perform: every template rendered.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// A sandboxed command.
    Exec {
        /// Program and arguments.
        command: Vec<String>,
        /// Readable paths.
        allow_read: Vec<String>,
        /// Writable paths.
        allow_write: Vec<String>,
        /// Network.
        network: NetworkSpec,
        /// Sandbox wall-clock limit, ms.
        timeout_ms: u64,
        /// Environment names passed in.
        env: Vec<String>,
        /// User.
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// Memory limit per process, bytes (the sandbox's default when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory_bytes: Option<u64>,
        /// CPU time limit, ms (the sandbox's default when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_time_ms: Option<u64>,
        /// Most processes at once (the sandbox's default when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_procs: Option<u64>,
    },
    /// An HTTP request.
    Http {
        /// Method.
        method: String,
        /// URL.
        url: String,
        /// Headers.
        headers: Vec<Header>,
        /// Body.
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// Accepted statuses (empty: 2xx).
        expect_status: Vec<u16>,
    },
    /// A Kubernetes action.
    Kubernetes {
        /// What.
        action: KubeActionKind,
        /// Object kind.
        object_kind: String,
        /// Namespace.
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        /// Name.
        name: String,
        /// For scale.
        #[serde(skip_serializing_if = "Option::is_none")]
        replicas: Option<i32>,
        /// For annotate.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        annotations: BTreeMap<String, String>,
        /// For patch.
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<serde_json::Value>,
    },
    /// A NATS publish.
    NatsPublish {
        /// Subject.
        subject: String,
        /// Payload.
        payload: String,
    },
    /// A CloudEvent to publish.
    Event {
        /// The event.
        event: Box<Event>,
    },
}

impl Action {
    /// The kind as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Exec { .. } => "exec",
            Action::Http { .. } => "http",
            Action::Kubernetes { .. } => "kubernetes",
            Action::NatsPublish { .. } => "nats_publish",
            Action::Event { .. } => "event",
        }
    }
}

/// What an action produced.
#[derive(Clone, Debug, Default)]
pub struct ActionOutput {
    /// Whether it did what was asked (exit 0, expected status).
    pub success: bool,
    /// Exit code of an exec.
    pub exit_code: Option<i32>,
    /// HTTP status.
    pub status: Option<u16>,
    /// Standard output, or the HTTP body.
    pub stdout: String,
    /// Standard error, or a description of the failure.
    pub stderr: String,
    /// An event the caller must publish.
    pub emitted: Option<Event>,
}

/// An action could not be performed at all.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionError {
    /// No implementation is wired for this kind.
    #[error("{0} actions are not available in this agent (no client configured)")]
    Unsupported(&'static str),
    /// The sandbox could not run the command.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// The request failed before a response.
    #[error("http: {0}")]
    Http(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// A boxed future, as the runner trait returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Performs actions. The caller enforces the step's timeout and retries.
pub trait ActionRunner: Send + Sync {
    /// Performs `action`.
    fn run<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<ActionOutput, ActionError>>;
}

/// The real runner: exec in the sandbox, HTTP with reqwest, events handed back; Kubernetes
/// and NATS through `cluster` when the binary provides one.
pub struct SystemRunner {
    helper: Helper,
    http: reqwest::Client,
    cluster: Option<Arc<dyn ActionRunner>>,
}

impl SystemRunner {
    /// A runner whose sandbox starts `helper`.
    pub fn new(helper: Helper) -> Result<SystemRunner, ActionError> {
        // HTTPS through the process's rustls provider (ring, as kube and NATS use); a
        // provider already installed stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ActionError::Http(e.to_string()))?;
        Ok(SystemRunner {
            helper,
            http,
            cluster: None,
        })
    }

    /// Sends `kubernetes` and `nats_publish` actions to `runner`.
    pub fn with_cluster(mut self, runner: Arc<dyn ActionRunner>) -> SystemRunner {
        self.cluster = Some(runner);
        self
    }

    async fn exec(&self, action: &Action) -> Result<ActionOutput, ActionError> {
        let Action::Exec {
            command,
            allow_read,
            allow_write,
            network,
            timeout_ms,
            env,
            user,
            memory_bytes,
            cpu_time_ms,
            max_procs,
        } = action
        else {
            return Err(ActionError::Other("not an exec action".into()));
        };
        let mut b = SandboxPolicy::builder()
            .network(match network {
                NetworkSpec::None => Network::None,
                NetworkSpec::Host => Network::Host,
            })
            .timeout(Duration::from_millis((*timeout_ms).max(1)))
            .stdout(OutputMode::Capture {
                limit: EXEC_CAPTURE_BYTES,
            })
            .stderr(OutputMode::Capture {
                limit: EXEC_CAPTURE_BYTES,
            });
        for p in allow_read {
            b = b.allow_read(p);
        }
        for p in allow_write {
            b = b.allow_write(p);
        }
        for n in env {
            b = b.env(n);
        }
        if let Some(u) = user {
            b = b.user(UserSpec::parse(u));
        }
        if let Some(bytes) = memory_bytes {
            b = b.memory(*bytes);
        }
        if let Some(ms) = cpu_time_ms {
            b = b.cpu_time(Duration::from_millis(*ms));
        }
        if let Some(n) = max_procs {
            b = b.max_procs(*n);
        }
        let policy = b.build().map_err(|e| ActionError::Sandbox(e.to_string()))?;
        let Some((program, args)) = command.split_first() else {
            return Err(ActionError::Sandbox("empty command".into()));
        };
        let program: std::ffi::OsString = program.into();
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        let sandbox = Sandbox::new(policy, self.helper.clone());
        // The sandbox blocks (fork, wait): keep it off the async workers.
        let outcome = tokio::task::spawn_blocking(move || sandbox.run(&program, &args))
            .await
            .map_err(|e| ActionError::Sandbox(e.to_string()))?
            .map_err(|e| ActionError::Sandbox(e.to_string()))?;
        let text = |c: &Option<opsloop_sandbox::Captured>| {
            c.as_ref()
                .map(|c| String::from_utf8_lossy(&c.bytes).into_owned())
                .unwrap_or_default()
        };
        let mut stderr = text(&outcome.stderr);
        let exit_code = match &outcome.termination {
            Termination::Exited(code) => Some(*code),
            Termination::SetupFailed(m)
            | Termination::NotFound(m)
            | Termination::NotExecutable(m) => {
                stderr.push_str(m);
                Some(i32::from(outcome.exit_code()))
            }
            _ => Some(i32::from(outcome.exit_code())),
        };
        Ok(ActionOutput {
            success: outcome.termination == Termination::Exited(0),
            exit_code,
            status: None,
            stdout: text(&outcome.stdout),
            stderr,
            emitted: None,
        })
    }

    async fn http(&self, action: &Action) -> Result<ActionOutput, ActionError> {
        let Action::Http {
            method,
            url,
            headers,
            body,
            expect_status,
        } = action
        else {
            return Err(ActionError::Other("not an http action".into()));
        };
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| ActionError::Http(e.to_string()))?;
        let mut req = self.http.request(method, url.as_str());
        for h in headers {
            req = req.header(h.name.as_str(), h.value.as_str());
        }
        if let Some(b) = body {
            req = req.body(b.clone());
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| ActionError::Http(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ActionError::Http(error_chain(&e)))?
        {
            let room = MAX_BODY_BYTES.saturating_sub(buf.len());
            buf.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or(&[]));
            if buf.len() >= MAX_BODY_BYTES {
                break;
            }
        }
        let success = if expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            expect_status.contains(&status)
        };
        Ok(ActionOutput {
            success,
            exit_code: None,
            status: Some(status),
            stdout: String::from_utf8_lossy(&buf).into_owned(),
            stderr: if success {
                String::new()
            } else {
                format!("unexpected status {status}")
            },
            emitted: None,
        })
    }
}

/// The error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl ActionRunner for SystemRunner {
    fn run<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<ActionOutput, ActionError>> {
        Box::pin(async move {
            match action {
                Action::Exec { .. } => self.exec(action).await,
                Action::Http { .. } => self.http(action).await,
                Action::Event { event } => Ok(ActionOutput {
                    success: true,
                    emitted: Some((**event).clone()),
                    ..ActionOutput::default()
                }),
                Action::Kubernetes { .. } | Action::NatsPublish { .. } => match &self.cluster {
                    Some(c) => c.run(action).await,
                    None => Err(ActionError::Unsupported(action.kind())),
                },
            }
        })
    }
}

/// Decides what a [`RecordingRunner`] answers: the action and the number of calls before it.
pub type Responder = dyn Fn(&Action, usize) -> Result<ActionOutput, ActionError> + Send + Sync;

/// A runner that performs nothing: it records every action (with the tokio instant it was
/// called at) and answers with a responder (default: success, events handed back).
pub struct RecordingRunner {
    calls: Mutex<Vec<(tokio::time::Instant, Action)>>,
    responder: Box<Responder>,
    notify: tokio::sync::Notify,
}

impl Default for RecordingRunner {
    fn default() -> Self {
        RecordingRunner::new(|action, _| {
            Ok(ActionOutput {
                success: true,
                exit_code: matches!(action, Action::Exec { .. }).then_some(0),
                status: matches!(action, Action::Http { .. }).then_some(200),
                emitted: match action {
                    Action::Event { event } => Some((**event).clone()),
                    _ => None,
                },
                ..ActionOutput::default()
            })
        })
    }
}

impl RecordingRunner {
    /// A runner answering with `responder`.
    pub fn new(
        responder: impl Fn(&Action, usize) -> Result<ActionOutput, ActionError> + Send + Sync + 'static,
    ) -> Self {
        RecordingRunner {
            calls: Mutex::new(Vec::new()),
            responder: Box::new(responder),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// The actions performed, in order.
    pub fn actions(&self) -> Vec<Action> {
        self.calls
            .lock()
            .map(|c| c.iter().map(|(_, a)| a.clone()).collect())
            .unwrap_or_default()
    }

    /// The instants actions were performed at.
    pub fn instants(&self) -> Vec<tokio::time::Instant> {
        self.calls
            .lock()
            .map(|c| c.iter().map(|(t, _)| *t).collect())
            .unwrap_or_default()
    }

    /// Number of actions performed.
    pub fn count(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Forgets the recorded calls.
    pub fn clear(&self) {
        if let Ok(mut c) = self.calls.lock() {
            c.clear();
        }
    }

    /// Waits until at least `n` actions were performed.
    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.notify.notified();
            if self.count() >= n {
                return;
            }
            notified.await;
        }
    }
}

impl ActionRunner for RecordingRunner {
    fn run<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<ActionOutput, ActionError>> {
        let n = match self.calls.lock() {
            Ok(mut c) => {
                c.push((tokio::time::Instant::now(), action.clone()));
                c.len() - 1
            }
            Err(_) => 0,
        };
        self.notify.notify_waiters();
        let result = (self.responder)(action, n);
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn https_urls_speak_tls() {
        // A listener that answers a TLS hello with plain text: the request fails in the TLS
        // handshake, which shows an https URL is spoken to over TLS (without TLS support the
        // client refuses the scheme before connecting).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nnot tls").await;
            }
        });
        let runner = SystemRunner::new(Helper::new("/nonexistent", ["x"])).unwrap();
        let action = Action::Http {
            method: "GET".into(),
            url: format!("https://127.0.0.1:{port}/"),
            headers: Vec::new(),
            body: None,
            expect_status: Vec::new(),
        };
        let e = runner.run(&action).await.unwrap_err().to_string();
        assert!(!e.contains("scheme"), "{e}");
        assert!(
            e.to_lowercase().contains("tls")
                || e.contains("corrupt")
                || e.contains("handshake")
                || e.contains("InvalidContentType"),
            "{e}"
        );
    }
}
