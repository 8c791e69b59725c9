//! Loader tests: the playbook contract, and problems reported with file, line and path.

use super::*;

const GOOD: &str = r#"
playbooks:
  - name: disk-full
    description: rotate logs
    trigger:
      type: io.opsloop.alert.firing
      condition: 'event.data.labels.alertname == "DiskFull"'
    key: 'event.data.labels.instance'
    threshold: { count: 3, within: 5m }
    mode: enforce
    guardrails:
      cooldown: 10m
      max_runs_per_hour: 3
      blast_radius: { max_targets: 5, within: 1h }
    vars: { dir: '${{ env.DIR }}' }
    steps:
      - name: df
        exec: { command: [df, -P, '${{ vars.dir }}'], allow_read: ['${{ vars.dir }}'], timeout: 10s }
        capture: df
        retries: { attempts: 3, backoff: 1s }
      - name: notify
        when: 'steps.df.exit_code == 0'
        http:
          method: post
          url: 'http://127.0.0.1:9/hook'
          headers: { Authorization: { secret_env: HOOK_TOKEN } }
          body: '${{ event.data.labels.instance }}'
          expect_status: [200, 204]
    verify:
      deadline: 1m
      interval: 5s
      checks:
        - http: { url: 'http://127.0.0.1:9/health', expect_status: 200, body_contains: ok }
        - no_event: { type: io.opsloop.alert.firing, for: 30s }
    on_failure:
      steps:
        - event: { type: io.opsloop.heal.custom, subject: x, data: { n: 1, who: '${{ event.id }}' } }
      escalate:
        - webhook: { url: 'http://127.0.0.1:9/esc' }
        - alertmanager: { url: 'http://127.0.0.1:9093' }
        - event: { type: io.opsloop.heal.escalated }
"#;

fn problems(text: &str) -> Vec<Problem> {
    match PlaybookSet::from_yaml(text, "f.yaml") {
        Ok(_) => Vec::new(),
        Err(e) => e.problems,
    }
}

#[test]
fn a_full_playbook_compiles() {
    let set = PlaybookSet::from_yaml(GOOD, "f.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.len(), 1);
    let p = &set.playbooks()[0];
    assert_eq!(p.name, "disk-full");
    assert_eq!(p.line, 3);
    assert_eq!(p.threshold.count, 3);
    assert_eq!(p.guardrails.cooldown_ms, 600_000);
    assert_eq!(p.guardrails.concurrency, 4);
    assert_eq!(p.steps.len(), 2);
    assert_eq!(p.steps[0].attempts, 3);
    assert_eq!(p.steps[1].action.kind(), "http");
    assert_eq!(p.verify.as_ref().map(|v| v.checks.len()), Some(2));
    assert_eq!(p.compensation.len(), 1);
    assert_eq!(p.escalate.len(), 3);
    assert!(set.secret_env().contains("HOOK_TOKEN"));
    let mut c = Vec::new();
    set.candidates("io.opsloop.alert.firing", &mut c);
    assert_eq!(c, vec![0]);
    set.candidates("io.opsloop.alert.resolved", &mut c);
    assert!(c.is_empty());
}

#[test]
fn a_single_playbook_file_is_accepted_and_defaults_are_safe() {
    let text =
        "name: one\ntrigger: { type: 'io.opsloop.log.*' }\nsteps:\n  - event: { type: x.y }\n";
    let set = PlaybookSet::from_yaml(text, "one.yaml").unwrap_or_else(|e| panic!("{e}"));
    let p = &set.playbooks()[0];
    assert_eq!(p.mode, Mode::DryRun);
    assert!(p.guardrails.skip_resolved);
    assert_eq!(p.guardrails.max_runs_per_hour, 6);
    assert_eq!(p.guardrails.blast_max_targets, 10);
    let mut c = Vec::new();
    set.candidates("io.opsloop.log.rule_matched", &mut c);
    assert_eq!(c, vec![0]);
}

#[test]
fn unknown_fields_are_reported_with_path_and_line() {
    let text = "playbooks:\n  - name: a\n    trigger: { type: t }\n    steps:\n      - exec: { command: [true] }\n        retry: 3\n";
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, Some(6), "{p:?}");
    assert!(p[0].message.contains("retry"), "{p:?}");
    assert!(p[0].path.contains("steps[0]"), "{p:?}");
    assert!(p[0].to_string().starts_with("f.yaml:6: "), "{}", p[0]);
}

#[test]
fn bad_cel_is_reported_at_its_line() {
    let text = "playbooks:\n  - name: a\n    trigger:\n      type: t\n      condition: 'event.data.x =='\n    steps:\n      - event: { type: x }\n";
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, Some(5));
    assert_eq!(p[0].path, "playbooks[0].trigger.condition");
    assert!(p[0].message.contains("invalid CEL"));
}

#[test]
fn bad_templates_durations_and_names_are_reported() {
    let text = r#"
playbooks:
  - name: Bad_Name
    trigger: { type: t }
    steps:
      - exec: { command: ['${{ event.data. }}'] }
  - name: b
    trigger: { type: t }
    threshold: { count: 2, within: 5 parsecs }
    steps:
      - event: { type: x }
"#;
    let p = problems(text);
    // The duration is a shape error: reported alone, before validation.
    assert!(
        p.iter()
            .any(|x| x.message.contains("parsecs") || x.path.contains("within")),
        "{p:?}"
    );
    let text = r#"
playbooks:
  - name: Bad_Name
    trigger: { type: t }
    steps:
      - exec: { command: ['${{ event.data. }}'] }
"#;
    let p = problems(text);
    assert!(
        p.iter()
            .any(|x| x.path == "playbooks[0].name" && x.line == Some(3)),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|x| x.path.contains("exec.command") && x.line == Some(6)),
        "{p:?}"
    );
}

#[test]
fn duplicates_and_missing_parts_are_reported() {
    let text = r#"
playbooks:
  - name: a
    trigger: { type: t }
    steps:
      - kubernetes: { action: rollout_restart, namespace: prod }
  - name: a
    trigger: { type: 't*x' }
    steps: []
  - name: c
    trigger: { type: t }
    steps:
      - name: s
        exec: { command: [x] }
        http: { url: 'http://x' }
      - name: s
        kubernetes: { action: scale, name: web }
"#;
    let p = problems(text);
    let has = |path: &str, needle: &str| {
        p.iter()
            .any(|x| x.path.contains(path) && x.message.contains(needle))
    };
    assert!(
        has("playbooks[0].steps[0].kubernetes.name", "needs `name`"),
        "{p:?}"
    );
    assert!(has("playbooks[1].name", "duplicate playbook name"), "{p:?}");
    assert!(has("playbooks[1].trigger.type", "only at the end"), "{p:?}");
    assert!(has("playbooks[1].steps", "at least one step"), "{p:?}");
    assert!(has("playbooks[2].steps[0]", "exactly one"), "{p:?}");
    assert!(has("playbooks[2].steps[1].name", "duplicate step"), "{p:?}");
    assert!(
        has("playbooks[2].steps[1].kubernetes.replicas", "replicas"),
        "{p:?}"
    );
    let dup = p
        .iter()
        .find(|x| x.message.contains("duplicate playbook"))
        .map(|x| x.message.clone());
    assert!(dup.is_some_and(|m| m.contains("f.yaml:3")));
}

#[test]
fn relative_paths_and_reserved_env_are_refused() {
    let text = r#"
name: a
trigger: { type: t }
steps:
  - exec: { command: [ls], allow_write: [var/log], env: [PATH, GOOD_NAME, "bad-name"] }
"#;
    let p = problems(text);
    assert!(p.iter().any(|x| x.message.contains("absolute")), "{p:?}");
    assert!(
        p.iter()
            .any(|x| x.message.contains("PATH is set by the sandbox")),
        "{p:?}"
    );
    assert!(p.iter().any(|x| x.message.contains("bad-name")), "{p:?}");
    assert!(!p.iter().any(|x| x.message.contains("GOOD_NAME")), "{p:?}");
}

#[test]
fn syntax_errors_have_a_line() {
    let p = problems("playbooks:\n  - name: a\n    trigger: { type: t\n");
    assert_eq!(p.len(), 1);
    assert!(p[0].line.is_some(), "{p:?}");
}

#[test]
fn load_reads_dirs_and_reports_every_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "name: a\ntrigger: { type: t }\nsteps: [ { event: { type: x } } ]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "name: a\ntrigger: { type: t }\nsteps: [ { event: { type: x } } ]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        "name: c\ntrigger: { type: t }\nbogus: 1\nsteps: []\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("ignored.txt"), "not yaml").unwrap();
    let err = PlaybookSet::load(&[dir.path()])
        .err()
        .map(|e| e.problems)
        .unwrap_or_default();
    assert!(
        err.iter()
            .any(|p| p.file.ends_with("b.yml") && p.message.contains("duplicate")),
        "{err:?}"
    );
    assert!(
        err.iter()
            .any(|p| p.file.ends_with("c.yaml") && p.message.contains("bogus")),
        "{err:?}"
    );
    std::fs::remove_file(dir.path().join("b.yml")).unwrap();
    std::fs::remove_file(dir.path().join("c.yaml")).unwrap();
    let set = PlaybookSet::load(&[dir.path()]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.len(), 1);
    assert!(PlaybookSet::load(&[dir.path().join("missing.yaml")]).is_err());
}

#[test]
fn references_to_missing_captures_and_vars_are_reported() {
    let text = r#"
name: refs
trigger: { type: t, condition: 'vars.x == "1"' }
vars: { dir: /srv }
steps:
  - name: first
    when: 'steps.df.exit_code == 0'
    exec: { command: [ls, '${{ vars.dri }}'] }
    capture: df
  - name: second
    when: 'steps.df.exit_code == 0 && event.data.items.all(x, x > 0)'
    exec: { command: [ls, '${{ vars.dir }}'] }
"#;
    let p = problems(text);
    assert!(
        p.iter().any(|x| x.path == "playbooks[0].trigger.condition"
            && x.message.contains("`vars` is not available")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|x| x.path == "playbooks[0].steps[0]"
            && x.line == Some(6)
            && x.message.contains("steps.df: no earlier step")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|x| x.message.contains("vars.dri: no such var")),
        "{p:?}"
    );
    assert!(
        !p.iter().any(|x| x.path == "playbooks[0].steps[1]"),
        "{p:?}"
    );
    assert_eq!(p.len(), 3, "{p:?}");
}

#[test]
fn an_agent_config_lends_its_playbooks_list() {
    let text = "listen: 127.0.0.1:7878\nsources: []\nplaybooks:\n  - name: a\n    trigger: { type: t }\n    steps: [ { event: { type: x } } ]\n";
    let set = PlaybookSet::from_config_yaml(text, "agent.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.playbooks()[0].line, 4);
    assert!(PlaybookSet::from_config_yaml("listen: x\n", "agent.yaml").is_ok_and(|s| s.is_empty()));
    let bad = "listen: x\nplaybooks:\n  - name: a\n    trigger: { type: t }\n    steps: []\n";
    let p = PlaybookSet::from_config_yaml(bad, "agent.yaml")
        .err()
        .map(|e| e.problems)
        .unwrap_or_default();
    assert_eq!(p[0].line, Some(3), "{p:?}");
}

#[test]
fn a_playbook_cannot_emit_the_loops_own_events() {
    let text = "playbooks:\n  - name: a\n    trigger: { type: t }\n    steps:\n      - event: { type: io.opsloop.incident.approve, data: { incident_id: x } }\n";
    let p = problems(text);
    assert!(
        p.iter()
            .any(|p| p.path.ends_with("event.type") && p.message.contains("own")),
        "{p:?}"
    );
}

#[test]
fn an_agent_config_names_playbook_files_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let one = "name: from-file\ntrigger: { type: t }\nsteps: [ { event: { type: x } } ]\n";
    std::fs::write(dir.path().join("one.yaml"), one).unwrap();
    let sub = dir.path().join("more");
    std::fs::create_dir(&sub).unwrap();
    let list = "playbooks:\n  - name: from-dir-a\n    trigger: { type: t }\n    steps: [ { event: { type: x } } ]\n  - name: from-dir-b\n    trigger: { type: u }\n    steps: [ { event: { type: x } } ]\n";
    std::fs::write(sub.join("list.yml"), list).unwrap();
    std::fs::write(sub.join("notes.txt"), "not a playbook").unwrap();
    let text = format!(
        "listen: x\nplaybooks:\n  - {}\n  - name: inline\n    trigger: {{ type: t }}\n    steps: [ {{ event: {{ type: x }} }} ]\n  - {}\n",
        dir.path().join("one.yaml").display(),
        sub.display()
    );
    let set = PlaybookSet::from_config_yaml(&text, "agent.yaml").unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = set.playbooks().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["from-file", "inline", "from-dir-a", "from-dir-b"]);
    // The inline playbook keeps its own line and its index in the config's list.
    assert_eq!(set.playbooks()[1].line, 4);

    // A bad file in a named directory rejects the whole set, naming that file and line;
    // a missing path names the configuration's line.
    std::fs::write(
        sub.join("bad.yaml"),
        "name: bad\ntrigger: { type: t }\nsteps: []\n",
    )
    .unwrap();
    let text = format!(
        "listen: x\nplaybooks:\n  - {}\n  - does/not/exist\n",
        sub.display()
    );
    let p = PlaybookSet::from_config_yaml(&text, "agent.yaml")
        .err()
        .map(|e| e.problems)
        .unwrap_or_default();
    assert!(
        p.iter()
            .any(|x| x.file.ends_with("bad.yaml") && x.line.is_some()),
        "{p:?}"
    );
    assert!(
        p.iter().any(|x| x.file == "agent.yaml"
            && x.line == Some(4)
            && x.path == "playbooks[1]"
            && x.message.contains("no such file")),
        "{p:?}"
    );
    // Duplicate names across the config and a file are one problem.
    let text = format!(
        "playbooks:\n  - {}\n  - name: from-file\n    trigger: {{ type: t }}\n    steps: [ {{ event: {{ type: x }} }} ]\n",
        dir.path().join("one.yaml").display()
    );
    let p = PlaybookSet::from_config_yaml(&text, "agent.yaml")
        .err()
        .map(|e| e.problems)
        .unwrap_or_default();
    assert!(
        p.iter()
            .any(|x| x.message.contains("duplicate playbook name")),
        "{p:?}"
    );
}

fn exec_playbook(exec: &str) -> String {
    format!(
        "name: a\ntrigger: {{ type: t }}\nsteps:\n  - exec: {{ command: [/bin/true], {exec} }}\n"
    )
}

#[test]
fn exec_steps_take_the_sandbox_limits() {
    let text = exec_playbook("memory: 64MiB, cpu_time: 2s, max_procs: 8");
    let set = PlaybookSet::from_yaml(&text, "f.yaml").unwrap_or_else(|e| panic!("{e}"));
    let ActionTemplate::Exec(x) = &set.playbooks()[0].steps[0].action else {
        panic!("not an exec step");
    };
    assert_eq!(x.memory, Some(64 << 20));
    assert_eq!(x.cpu_time, Some(Duration::from_secs(2)));
    assert_eq!(x.max_procs, Some(8));
    for (exec, field) in [
        ("memory: lots", "memory"),
        ("memory: 0", "memory"),
        ("cpu_time: 0s", "cpu_time"),
        ("max_procs: 0", "max_procs"),
    ] {
        let p = problems(&exec_playbook(exec));
        assert!(
            p.iter().any(|x| x.path.ends_with(&format!("exec.{field}"))),
            "{exec}: {p:?}"
        );
    }
}

#[test]
fn what_the_sandbox_would_refuse_is_refused_at_load() {
    let scratch_root = std::env::temp_dir();
    for (exec, field) in [
        ("user: root", "user"),
        ("user: '0'", "user"),
        ("allow_write: ['/']", "allow_write"),
        (
            &*format!("allow_read: ['{}']", scratch_root.display()),
            "allow_read",
        ),
    ] {
        let p = problems(&exec_playbook(exec));
        assert!(
            p.iter().any(|x| x.path.ends_with(&format!("exec.{field}"))),
            "{exec}: {p:?}"
        );
    }
    // A path beside the scratch root, another user, or a template (decided at run time)
    // are fine.
    for exec in [
        "allow_write: ['/var/log/app']",
        "user: daemon",
        "allow_write: ['${{ env.DIR }}']",
    ] {
        assert_eq!(problems(&exec_playbook(exec)), Vec::new(), "{exec}");
    }
}
