//! The [`ClusterRunner`]: the heal loop's `ActionRunner` for `kubernetes` and
//! `nats_publish` actions, each available only when its client was given.

use std::sync::Arc;

use opsloop_core::time::{Clock, SystemClock};
use opsloop_heal::action::{Action, ActionError, ActionOutput, ActionRunner, BoxFuture};

use crate::kube_action::{KubeRequest, perform};
use crate::target::Target;

/// The pod-template annotation `kubectl rollout restart` sets; the same one here, so a
/// restart by opsloop looks like one by an operator.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// The field manager recorded in `managedFields` for every change opsloop makes.
pub const FIELD_MANAGER: &str = "opsloop";

/// Performs `kubernetes` actions with a `kube::Client` and `nats_publish` actions with an
/// `async_nats::Client`; an action whose client is missing is `Unsupported`.
pub struct ClusterRunner {
    kube: Option<kube::Client>,
    nats: Option<async_nats::Client>,
    clock: Arc<dyn Clock>,
}

impl Default for ClusterRunner {
    fn default() -> Self {
        ClusterRunner::new()
    }
}

impl ClusterRunner {
    /// A runner with no clients (every action `Unsupported`) and the system clock.
    pub fn new() -> ClusterRunner {
        ClusterRunner {
            kube: None,
            nats: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Performs `kubernetes` actions with `client`; namespaced objects given no namespace
    /// use the client's default namespace.
    pub fn with_kube(mut self, client: kube::Client) -> ClusterRunner {
        self.kube = Some(client);
        self
    }

    /// Performs `nats_publish` actions with `client`.
    pub fn with_nats(mut self, client: async_nats::Client) -> ClusterRunner {
        self.nats = Some(client);
        self
    }

    /// Takes the time of `rollout_restart` from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> ClusterRunner {
        self.clock = clock;
        self
    }

    /// Now, as RFC 3339 in UTC to the second (what kubectl writes).
    fn now_rfc3339(&self) -> String {
        let seconds = self.clock.now_ms().div_euclid(1000);
        jiff::Timestamp::from_second(seconds)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_string()
    }

    async fn kubernetes(&self, action: &Action) -> Result<ActionOutput, ActionError> {
        let Action::Kubernetes {
            action: kind,
            object_kind,
            namespace,
            name,
            replicas,
            annotations,
            patch,
        } = action
        else {
            return Err(ActionError::Other("not a kubernetes action".into()));
        };
        let Some(client) = &self.kube else {
            return Err(ActionError::Unsupported("kubernetes"));
        };
        let target = Target::resolve(
            *kind,
            object_kind,
            namespace.as_deref(),
            name,
            client.default_namespace(),
        )
        .map_err(|m| ActionError::Other(format!("kubernetes: {m}")))?;
        let request = KubeRequest {
            action: *kind,
            target,
            replicas: *replicas,
            annotations,
            patch: patch.as_ref(),
            now_rfc3339: self.now_rfc3339(),
        };
        let summary = perform(client.clone(), FIELD_MANAGER, &request).await?;
        Ok(ActionOutput {
            success: true,
            stdout: summary.to_string(),
            ..ActionOutput::default()
        })
    }

    async fn nats_publish(&self, action: &Action) -> Result<ActionOutput, ActionError> {
        let Action::NatsPublish { subject, payload } = action else {
            return Err(ActionError::Other("not a nats_publish action".into()));
        };
        let Some(client) = &self.nats else {
            return Err(ActionError::Unsupported("nats_publish"));
        };
        let fail = |e: &dyn std::error::Error| {
            ActionError::Other(format!("nats publish to {subject:?}: {}", error_chain(e)))
        };
        client
            .publish(subject.clone(), payload.clone().into())
            .await
            .map_err(|e| fail(&e))?;
        // Publish only queues the message; flushing makes success mean the server has it.
        client.flush().await.map_err(|e| fail(&e))?;
        Ok(ActionOutput {
            success: true,
            stdout: serde_json::json!({"subject": subject, "bytes": payload.len()}).to_string(),
            ..ActionOutput::default()
        })
    }
}

impl ActionRunner for ClusterRunner {
    fn run<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<ActionOutput, ActionError>> {
        Box::pin(async move {
            match action {
                Action::Kubernetes { .. } => self.kubernetes(action).await,
                Action::NatsPublish { .. } => self.nats_publish(action).await,
                other => Err(ActionError::Unsupported(other.kind())),
            }
        })
    }
}

/// The error and its causes on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Wrapping errors often repeat their cause's text; say it once.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsloop_core::time::ManualClock;
    use opsloop_heal::spec::KubeActionKind;

    #[test]
    fn restart_time_is_rfc3339_seconds_from_the_clock() {
        let runner = ClusterRunner::new().with_clock(Arc::new(ManualClock::new(1_795_937_928_999)));
        assert_eq!(runner.now_rfc3339(), "2026-11-29T07:38:48Z");
    }

    #[tokio::test]
    async fn other_action_kinds_are_not_ours() {
        // The heal crate's SystemRunner takes it as its cluster delegate.
        let runner: Arc<dyn ActionRunner> = Arc::new(ClusterRunner::new());
        let event = Action::Event {
            event: Box::new(opsloop_core::Event::new(
                "io.opsloop.test",
                "t",
                None,
                0,
                serde_json::Value::Null,
            )),
        };
        assert_eq!(
            runner.run(&event).await.unwrap_err(),
            ActionError::Unsupported("event")
        );
    }

    #[tokio::test]
    async fn without_clients_actions_are_unsupported() {
        let runner = ClusterRunner::new();
        let kube = Action::Kubernetes {
            action: KubeActionKind::Scale,
            object_kind: "Deployment".into(),
            namespace: None,
            name: "web".into(),
            replicas: Some(1),
            annotations: Default::default(),
            patch: None,
        };
        assert_eq!(
            runner.run(&kube).await.unwrap_err(),
            ActionError::Unsupported("kubernetes")
        );
        let nats = Action::NatsPublish {
            subject: "a".into(),
            payload: "b".into(),
        };
        assert_eq!(
            runner.run(&nats).await.unwrap_err(),
            ActionError::Unsupported("nats_publish")
        );
    }
}
