//! `opsloop config`: print the embedded default, check a file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use opsloop_core::config::{Config, ConfigError, ConfigProblem, DEFAULT_CONFIG};

use crate::{Output, exit};

/// Flags of `opsloop config`.
#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the embedded default configuration, annotated, as a file to start from.
    Default,
    /// Validate a configuration file; print every problem with its path.
    Check {
        /// The file.
        file: PathBuf,
    },
}

impl ConfigArgs {
    /// The output format asked for.
    pub fn output(&self) -> Output {
        self.output
    }
}

/// What `run` would fail on beyond the file itself: the rule files and redaction patterns it
/// names, and its secret files.
fn loaded_problems(config: Config) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let files = [
        ("api.token_file", config.api.token_file.clone()),
        (
            "bus.nats.token_file",
            config.bus.nats.as_ref().and_then(|n| n.token_file.clone()),
        ),
    ];
    for (field, file) in files {
        if let Some(path) = file
            && let Err(e) = crate::run::secret_file(&path, field)
        {
            problems.push(ConfigProblem {
                path: field.into(),
                message: format!("{e:#}"),
            });
        }
    }
    if let Err(e) = opsloop_agent::reload::redactor_of(&config.redact) {
        problems.push(ConfigProblem {
            path: "redact.patterns".into(),
            message: e,
        });
    }
    if let Err(e) = opsloop_logs::rules::RuleSet::load(config.rules.builtin, &config.rules.paths) {
        problems.push(ConfigProblem {
            path: "rules.paths".into(),
            message: e.to_string(),
        });
    }
    problems
}

/// Runs `opsloop config`.
pub fn run(args: ConfigArgs) -> Result<u8> {
    match args.command {
        ConfigCommand::Default => {
            match args.output {
                Output::Text => print!("{DEFAULT_CONFIG}"),
                Output::Json => {
                    let config = Config::embedded_default()?;
                    println!("{}", serde_json::to_string_pretty(&config)?);
                }
            }
            Ok(exit::OK)
        }
        ConfigCommand::Check { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let name = file.display().to_string();
            // Everything `run` would load: the file, then the rule files it names.
            let mut problems: Vec<ConfigProblem> = match Config::from_yaml(&text) {
                Ok(config) => loaded_problems(config),
                Err(ConfigError::Shape { path, message }) => vec![ConfigProblem { path, message }],
                Err(ConfigError::Syntax(message)) => vec![ConfigProblem {
                    path: String::new(),
                    message,
                }],
                Err(ConfigError::Invalid(problems)) => problems,
            };
            // The playbooks, as `run` reads them (with their line numbers), and the hooks.
            if let Err(e) = opsloop_heal::PlaybookSet::from_config_yaml(&text, &name) {
                problems.push(ConfigProblem {
                    path: "playbooks".into(),
                    message: e.to_string(),
                });
            }
            if let Ok(config) = Config::from_yaml(&text)
                && let Err(e) = crate::run::hooks_problems(&config)
            {
                problems.push(ConfigProblem {
                    path: "hooks".into(),
                    message: e,
                });
            }
            // The loops' jobs, as `run` reads them.
            if let Ok(config) = Config::from_yaml(&text) {
                for (section, problem) in crate::run::job_problems(&config) {
                    problems.push(ConfigProblem {
                        path: section.into(),
                        message: problem,
                    });
                }
            }
            match args.output {
                Output::Json => {
                    let doc = serde_json::json!({
                        "file": name,
                        "valid": problems.is_empty(),
                        "errors": problems,
                    });
                    println!("{}", serde_json::to_string_pretty(&doc)?);
                }
                Output::Text if problems.is_empty() => println!("{name}: valid"),
                Output::Text => {
                    for p in &problems {
                        if p.path.is_empty() {
                            println!("{name}: {}", p.message);
                        } else {
                            println!("{name}: {}: {}", p.path, p.message);
                        }
                    }
                    eprintln!("{name}: {} problem(s)", problems.len());
                }
            }
            Ok(if problems.is_empty() {
                exit::OK
            } else {
                exit::ERROR
            })
        }
    }
}
