//! The heal loop's configuration in `opsloop run`: a generic webhook maps a JSON body to an
//! event by CEL, playbooks reload with the rest of the file, and a bad playbook is rejected
//! with the running set kept.

use serde_json::Value;

use crate::run::{http, start_agent, stop_agent, wait_for};
use opsloop_bus::testing::free_port;

fn config(api: u16, data: &std::path::Path, playbook: &str, condition: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:{api}
data_dir: {}
hooks:
  - name: deploy
    type: com.example.deploy.failed
    subject: body.service
    data: '{{"service": body.service, "version": body.version}}'
playbooks:
  - name: {playbook}
    trigger:
      type: com.example.deploy.failed
      condition: '{condition}'
    key: event.subject
    mode: dry-run
    steps:
      - name: note
        event: {{ type: com.example.noted, subject: '${{{{ event.subject }}}}' }}
"#,
        data.display()
    )
}

fn incidents_of(api: u16, playbook: &str) -> usize {
    let (status, body) = http(
        api,
        "GET",
        &format!("/api/v1/incidents?playbook={playbook}"),
        "",
        None,
    );
    if status != 200 {
        return 0;
    }
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["incidents"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Waits for a `reload_failed` event whose text mentions `needle`.
fn wait_for_rejected_reload(api: u16, needle: &str) {
    wait_for("the rejected reload", || {
        let (_, body) = http(
            api,
            "GET",
            "/api/v1/events?type=io.opsloop.config.reload_failed",
            "",
            None,
        );
        body.contains(needle).then_some(())
    });
}

#[test]
fn hooks_map_bodies_and_playbooks_reload_with_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let data = dir.path().join("data");
    let path = dir.path().join("opsloop.yaml");
    std::fs::write(
        &path,
        config(api, &data, "first", r#"event.data.service == "checkout""#),
    )
    .unwrap();
    let mut agent = start_agent(&path);
    wait_for("readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });

    // The hook maps the body; an unknown hook is 404.
    let body = r#"{"service": "checkout", "version": "1.2.3", "noise": [1, 2]}"#;
    let (status, answer) = http(api, "POST", "/api/v1/hooks/deploy", body, None);
    assert!((200..300).contains(&status), "{status} {answer}");
    let (status, _) = http(api, "POST", "/api/v1/hooks/nope", body, None);
    assert_eq!(status, 404);
    // The event reaches the store through the bus, after the hook answered.
    let events = wait_for("the hook's event", || {
        let (_, events) = http(
            api,
            "GET",
            "/api/v1/events?type=com.example.deploy.failed",
            "",
            None,
        );
        let events: Value = serde_json::from_str(&events).ok()?;
        events["events"].get(0).is_some().then_some(events)
    });
    let event = &events["events"][0];
    assert_eq!(event["subject"], "checkout", "{events}");
    assert_eq!(event["data"]["version"], "1.2.3", "{events}");
    assert!(event["data"].get("noise").is_none(), "{events}");
    wait_for("the first playbook's dry run", || {
        (incidents_of(api, "first") == 1).then_some(())
    });

    // A bad playbook: the reload is rejected and the running set stays.
    let mut bad = config(api, &data, "second", r#"event.data.service == "#);
    bad.push('\n');
    std::fs::write(&path, bad).unwrap();
    wait_for_rejected_reload(api, "condition");
    // The first playbook still matches (its key is in cooldown after the dry run, so the
    // trail records the match as suppressed).
    let body = r#"{"service": "checkout", "version": "1.2.4"}"#;
    http(api, "POST", "/api/v1/hooks/deploy", body, None);
    wait_for("the first playbook still in force", || {
        let (_, trail) = http(api, "GET", "/api/v1/audit-log?limit=1000", "", None);
        let trail: Value = serde_json::from_str(&trail).ok()?;
        trail["records"]
            .as_array()?
            .iter()
            .any(|r| r["kind"] == "suppressed" && r["data"]["playbook"] == "first")
            .then_some(())
    });

    // A good new file: the second playbook takes over.
    std::fs::write(
        &path,
        config(api, &data, "second", r#"event.data.service == "payments""#),
    )
    .unwrap();
    // Reloads are noticed by the file's modification time: wait until the new set is in
    // force by sending until the second playbook has an incident.
    wait_for("the second playbook after the reload", || {
        http(
            api,
            "POST",
            "/api/v1/hooks/deploy",
            r#"{"service": "payments", "version": "9"}"#,
            None,
        );
        (incidents_of(api, "second") >= 1).then_some(())
    });
    stop_agent(&mut agent);
}

fn playbook_file(name: &str, service: &str) -> String {
    format!(
        r#"name: {name}
trigger:
  type: com.example.deploy.failed
  condition: 'event.data.service == "{service}"'
key: event.subject
mode: dry-run
steps:
  - name: note
    event: {{ type: com.example.noted }}
"#
    )
}

#[test]
fn playbooks_in_a_named_directory_load_and_reload_when_a_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let data = dir.path().join("data");
    let books = dir.path().join("playbooks.d");
    std::fs::create_dir(&books).unwrap();
    std::fs::write(books.join("a.yaml"), playbook_file("from-dir", "checkout")).unwrap();
    let path = dir.path().join("opsloop.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:{api}\ndata_dir: {}\nhooks:\n  - name: deploy\n    type: com.example.deploy.failed\n    subject: body.service\nplaybooks:\n  - {}\n",
            data.display(),
            books.display()
        ),
    )
    .unwrap();
    let mut agent = start_agent(&path);
    wait_for("readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
    http(
        api,
        "POST",
        "/api/v1/hooks/deploy",
        r#"{"service": "checkout"}"#,
        None,
    );
    wait_for("the directory's playbook", || {
        (incidents_of(api, "from-dir") == 1).then_some(())
    });

    // A bad file dropped into the directory: rejected, naming the file; the set stays.
    std::fs::write(
        books.join("b.yaml"),
        "name: broken\ntrigger: { type: t }\nsteps: []\n",
    )
    .unwrap();
    wait_for_rejected_reload(api, "b.yaml");
    std::fs::remove_file(books.join("b.yaml")).unwrap();

    // Only the playbook file changes (the config does not): the new version takes over.
    std::fs::write(books.join("a.yaml"), playbook_file("renamed", "payments")).unwrap();
    wait_for("the edited file's playbook", || {
        http(
            api,
            "POST",
            "/api/v1/hooks/deploy",
            r#"{"service": "payments"}"#,
            None,
        );
        (incidents_of(api, "renamed") >= 1).then_some(())
    });
    stop_agent(&mut agent);
}
