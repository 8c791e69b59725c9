//! Printing a [`Report`]: readable text grouped by file and object, one JSON document, or
//! a SARIF 2.1.0 log for code-scanning tools; and the check catalogue as text or JSON.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::{self, Check};
use crate::{Finding, Report};

/// The text report: findings grouped by file and object, each with `file:line`,
/// severity, message, why and fix; unparsable inputs with their line; a summary.
pub fn text(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    // Findings and errors are sorted by file: each file takes its run from the front.
    let mut findings_left: &[Finding] = &report.findings;
    let mut errors_left: &[crate::InputError] = &report.errors;
    for (index, file) in report.files.iter().enumerate() {
        let split = findings_left.partition_point(|f| f.file_index <= index);
        let (findings, rest) = findings_left.split_at(split);
        findings_left = rest;
        let split = errors_left.partition_point(|e| e.file_index <= index);
        let (errors, rest) = errors_left.split_at(split);
        errors_left = rest;
        if findings.is_empty() && errors.is_empty() {
            continue;
        }
        writeln!(out, "{}", file.path)?;
        for error in errors {
            if error.line == 0 {
                writeln!(out, "  {}: error: {}", file.path, error.message)?;
            } else {
                writeln!(
                    out,
                    "  {}:{}:{}: parse error: {} (document skipped)",
                    file.path, error.line, error.column, error.message
                )?;
            }
        }
        let mut current_object: Option<(&str, &str, Option<&str>, u32)> = None;
        for finding in findings {
            let key = (
                finding.object.kind.as_str(),
                finding.object.name.as_str(),
                finding.object.namespace.as_deref(),
                finding.object.line,
            );
            if current_object != Some(key) {
                writeln!(out, "  {}", finding.object.display())?;
                current_object = Some(key);
            }
            let container = finding
                .container
                .as_deref()
                .map(|c| format!("container {c}: "))
                .unwrap_or_default();
            writeln!(
                out,
                "    {}:{}: {} [{}] {container}{}",
                finding.file, finding.line, finding.severity, finding.check, finding.message
            )?;
            writeln!(out, "      why: {}", finding.why)?;
            writeln!(out, "      fix: {}", finding.fix)?;
        }
    }
    for notice in &report.notices {
        writeln!(
            out,
            "{}:{}: note: {}",
            notice.file, notice.line, notice.message
        )?;
    }
    let s = &report.summary;
    let count = |sev: &str| s.by_severity.get(sev).copied().unwrap_or(0);
    writeln!(
        out,
        "{} finding(s): {} error, {} warning, {} info; {} object(s) in {} file(s), {} file(s) with parse errors, {} suppressed",
        s.findings,
        count("error"),
        count("warning"),
        count("info"),
        s.objects,
        s.files,
        s.files_with_errors,
        s.suppressed
    )?;
    if !s.unknown_kinds.is_empty() {
        let kinds: Vec<String> = s
            .unknown_kinds
            .iter()
            .map(|(kind, n)| format!("{kind} ({n})"))
            .collect();
        writeln!(out, "kinds without specific checks: {}", kinds.join(", "))?;
    }
    Ok(())
}

/// Writes the report as one JSON document.
pub fn json(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer(&mut *out, report).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

/// Scheme of the inputs `--cluster` reads (`cluster://namespace/Kind/name`).
const CLUSTER_SCHEME: &str = "cluster://";

/// A path as a SARIF `artifactLocation.uri`: the path as given, `/`-separated, with the
/// characters URIs reserve percent-encoded; `stdin` for standard input (`-`), and a
/// cluster object's `cluster://` location with its scheme kept readable.
pub fn uri_of(path: &str) -> String {
    if path == "-" {
        return "stdin".to_string();
    }
    let (scheme, rest) = match path.strip_prefix(CLUSTER_SCHEME) {
        Some(rest) => (CLUSTER_SCHEME, rest),
        None => ("", path),
    };
    let mut uri = String::with_capacity(path.len());
    uri.push_str(scheme);
    for byte in rest.replace('\\', "/").bytes() {
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'/'
            | b'+'
            | b'='
            | b'@'
            | b','
            | b'&' => uri.push(char::from(byte)),
            other => uri.push_str(&format!("%{other:02X}")),
        }
    }
    uri
}

// The SARIF 2.1.0 subset written, serialized straight from borrowed data (no DOM).

#[derive(Serialize)]
struct SarifLog<'r> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: [SarifRun<'r>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRun<'r> {
    tool: SarifTool<'r>,
    invocations: [SarifInvocation<'r>; 1],
    artifacts: Vec<SarifArtifact<'r>>,
    results: Vec<SarifResult<'r>>,
    properties: SarifRunProperties<'r>,
}

#[derive(Serialize)]
struct SarifRunProperties<'r> {
    summary: &'r crate::Summary,
}

#[derive(Serialize)]
struct SarifTool<'r> {
    driver: SarifDriver<'r>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifDriver<'r> {
    name: &'static str,
    version: &'r str,
    information_uri: &'static str,
    rules: Vec<SarifRule>,
}

#[derive(Serialize)]
struct SarifText<'r> {
    text: &'r str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRule {
    id: &'static str,
    name: &'static str,
    short_description: SarifText<'static>,
    full_description: SarifText<'static>,
    help: SarifOwnedText,
    default_configuration: SarifLevel,
    properties: SarifRuleProperties,
}

#[derive(Serialize)]
struct SarifOwnedText {
    text: String,
}

#[derive(Serialize)]
struct SarifLevel {
    level: &'static str,
}

#[derive(Serialize)]
struct SarifRuleProperties {
    category: &'static str,
    severity: &'static str,
    peers: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifInvocation<'r> {
    execution_successful: bool,
    tool_execution_notifications: Vec<SarifNotification<'r>>,
}

#[derive(Serialize)]
struct SarifNotification<'r> {
    level: &'static str,
    message: SarifText<'r>,
    locations: [SarifLocation<'r>; 1],
    descriptor: SarifDescriptor,
}

#[derive(Serialize)]
struct SarifDescriptor {
    id: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifLocation<'r> {
    physical_location: SarifPhysical<'r>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifPhysical<'r> {
    artifact_location: SarifArtifactLocation<'r>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<SarifRegion>,
}

#[derive(Serialize)]
struct SarifArtifactLocation<'r> {
    uri: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRegion {
    start_line: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_column: Option<u32>,
}

#[derive(Serialize)]
struct SarifArtifact<'r> {
    location: SarifArtifactLocation<'r>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult<'r> {
    rule_id: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_index: Option<usize>,
    level: &'static str,
    message: SarifOwnedText,
    locations: [SarifLocation<'r>; 1],
    properties: SarifResultProperties<'r>,
}

#[derive(Serialize)]
struct SarifResultProperties<'r> {
    object: &'r crate::ObjectRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'r str>,
}

fn sarif_rule(check: &'static Check) -> SarifRule {
    SarifRule {
        id: check.id,
        name: check.id,
        short_description: SarifText { text: check.title },
        full_description: SarifText { text: check.why },
        help: SarifOwnedText {
            text: format!("{} Fix: {}", check.why, check.fix),
        },
        default_configuration: SarifLevel {
            level: check.severity.sarif_level(),
        },
        properties: SarifRuleProperties {
            category: check.category,
            severity: check.severity.as_str(),
            peers: check.peers,
        },
    }
}

fn location(uri: &str, index: usize, region: Option<SarifRegion>) -> SarifLocation<'_> {
    SarifLocation {
        physical_location: SarifPhysical {
            artifact_location: SarifArtifactLocation {
                uri,
                index: Some(index),
            },
            region,
        },
    }
}

/// Writes the report as a SARIF 2.1.0 log: one run; every check a rule (`ruleId` = check
/// id); every input an artifact; unreadable or unparsable inputs as tool execution
/// notifications with the file and the error's line.
pub fn sarif(report: &Report, tool_version: &str, out: &mut dyn Write) -> io::Result<()> {
    let uris: Vec<String> = report.files.iter().map(|f| uri_of(&f.path)).collect();
    let uri = |index: usize| uris.get(index).map_or("", String::as_str);
    let results = report
        .findings
        .iter()
        .map(|finding| {
            let container = finding
                .container
                .as_deref()
                .map(|c| format!(" container {c}:"))
                .unwrap_or_default();
            SarifResult {
                rule_id: finding.check,
                rule_index: catalog::ALL.iter().position(|c| c.id == finding.check),
                level: finding.severity.sarif_level(),
                message: SarifOwnedText {
                    text: format!(
                        "{}:{container} {}",
                        finding.object.display(),
                        finding.message
                    ),
                },
                locations: [location(
                    uri(finding.file_index),
                    finding.file_index,
                    Some(SarifRegion {
                        start_line: finding.line.max(1),
                        start_column: None,
                    }),
                )],
                properties: SarifResultProperties {
                    object: &finding.object,
                    container: finding.container.as_deref(),
                },
            }
        })
        .collect();
    let notifications = report
        .errors
        .iter()
        .map(|error| SarifNotification {
            level: "error",
            message: SarifText {
                text: &error.message,
            },
            locations: [location(
                uri(error.file_index),
                error.file_index,
                (error.line > 0).then_some(SarifRegion {
                    start_line: error.line,
                    start_column: Some(error.column.max(1)),
                }),
            )],
            descriptor: SarifDescriptor {
                id: if error.line > 0 {
                    "parse-error"
                } else {
                    "read-error"
                },
            },
        })
        .collect();
    let log = SarifLog {
        schema: "https://json.schemastore.org/sarif-2.1.0.json",
        version: "2.1.0",
        runs: [SarifRun {
            tool: SarifTool {
                driver: SarifDriver {
                    name: "opsloop-audit",
                    version: tool_version,
                    information_uri: "https://github.com/opsloop/opsloop",
                    rules: catalog::ALL.iter().map(|c| sarif_rule(c)).collect(),
                },
            },
            invocations: [SarifInvocation {
                execution_successful: true,
                tool_execution_notifications: notifications,
            }],
            artifacts: uris
                .iter()
                .map(|uri| SarifArtifact {
                    location: SarifArtifactLocation { uri, index: None },
                })
                .collect(),
            results,
            properties: SarifRunProperties {
                summary: &report.summary,
            },
        }],
    };
    serde_json::to_writer(&mut *out, &log).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

/// Writes a SARIF log for a run that could not start (an invalid config file): no results,
/// `executionSuccessful: false`, and the reason as a configuration notification, so tools
/// reading stdout still get a log.
pub fn sarif_failure(message: &str, tool_version: &str, out: &mut dyn Write) -> io::Result<()> {
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "opsloop-audit",
                "version": tool_version,
                "informationUri": "https://github.com/opsloop/opsloop",
            } },
            "invocations": [{
                "executionSuccessful": false,
                "toolConfigurationNotifications": [{
                    "level": "error",
                    "message": { "text": message },
                }],
            }],
            "artifacts": [],
            "results": [],
        }]
    });
    serde_json::to_writer(&mut *out, &log).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

/// The catalogue as text: one block per check.
pub fn checks_text(out: &mut dyn Write) -> io::Result<()> {
    let mut category = "";
    for check in catalog::ALL {
        if check.category != category {
            category = check.category;
            writeln!(out, "{category}")?;
        }
        writeln!(out, "  {} ({}): {}", check.id, check.severity, check.title)?;
        writeln!(out, "    why: {}", check.why)?;
        writeln!(out, "    fix: {}", check.fix)?;
        writeln!(out, "    also in: {}", check.peers)?;
    }
    Ok(())
}

/// The catalogue as JSON: `{"checks": [...]}`.
pub fn checks_json() -> Value {
    json!({ "checks": catalog::ALL })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;
    use crate::{Options, audit};

    fn report() -> Report {
        let sources = vec![
            Source {
                name: "dir/pod one.yaml".to_string(),
                bytes: Ok(b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostPID: true\n  containers: [{name: c, image: x:1}]\n".to_vec()),
                names_only: false,
            },
            Source {
                name: "broken.yaml".to_string(),
                bytes: Ok(b"a: 1\na: 2\n".to_vec()),
                names_only: false,
            },
        ];
        audit(&sources, &Options::default())
    }

    #[test]
    fn sarif_has_rules_artifacts_results_and_notifications() {
        let mut out = Vec::new();
        sarif(&report(), "0.1.0", &mut out).unwrap();
        let log: Value = serde_json::from_slice(&out).unwrap();
        let run = &log["runs"][0];
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(run["artifacts"].as_array().unwrap().len(), 2);
        assert_eq!(run["artifacts"][0]["location"]["uri"], "dir/pod%20one.yaml");
        assert_eq!(uri_of("-"), "stdin");
        assert_eq!(
            uri_of("cluster://shop/Deployment/api"),
            "cluster://shop/Deployment/api"
        );
        assert_eq!(uri_of("cluster://DaemonSet/*"), "cluster://DaemonSet/%2A");
        assert_eq!(uri_of("a:b.yaml"), "a%3Ab.yaml");
        let results = run["results"].as_array().unwrap();
        let host_pid = results.iter().find(|r| r["ruleId"] == "host-pid").unwrap();
        assert_eq!(
            host_pid["locations"][0]["physicalLocation"]["region"]["startLine"],
            5
        );
        let notification = &run["invocations"][0]["toolExecutionNotifications"][0];
        assert_eq!(
            notification["locations"][0]["physicalLocation"]["region"]["startLine"],
            2
        );
        assert_eq!(
            notification["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "broken.yaml"
        );
        let rule_ids: Vec<&str> = run["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert!(rule_ids.contains(&"host-pid"));
    }

    #[test]
    fn text_groups_by_file_and_object() {
        let mut out = Vec::new();
        text(&report(), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("dir/pod one.yaml\n  Pod p\n"), "{out}");
        assert!(
            out.contains("dir/pod one.yaml:5: error [host-pid]"),
            "{out}"
        );
        assert!(
            out.contains("broken.yaml:2:1: parse error: duplicate key `a`"),
            "{out}"
        );
    }

    #[test]
    fn catalogue_lists_every_check() {
        let mut out = Vec::new();
        checks_text(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(catalog::ALL.iter().all(|c| out.contains(c.id)));
        assert_eq!(
            checks_json()["checks"].as_array().unwrap().len(),
            catalog::ALL.len()
        );
    }
}
