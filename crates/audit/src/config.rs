//! The audit's configuration file and suppression annotations.
//!
//! The file (`opsloop audit --config FILE`) is YAML:
//!
//! ```yaml
//! # Checks not to run, by id (`opsloop audit --list-checks`).
//! disable: [cpu-limit-missing, no-anti-affinity]
//! ```
//!
//! Per object, `opsloop.dev/ignore: "check-id,check-id"` with
//! `opsloop.dev/ignore-reason: "why"` in `metadata.annotations` suppresses those checks
//! for that object; suppressed findings are still counted and listed in JSON.

use serde::Deserialize;

use crate::catalog;

/// Annotation listing the check ids to ignore on an object.
pub const IGNORE_ANNOTATION: &str = "opsloop.dev/ignore";

/// Annotation saying why.
pub const IGNORE_REASON_ANNOTATION: &str = "opsloop.dev/ignore-reason";

/// The audit config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Check ids not to run.
    #[serde(default)]
    pub disable: Vec<String>,
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not valid YAML, or unknown fields.
    #[error("{0}")]
    Syntax(String),
    /// `disable:` names an id that is no check.
    #[error("disable: `{id}` is no check id (see `opsloop audit --list-checks`)")]
    UnknownCheck {
        /// The id as written.
        id: String,
    },
}

impl AuditConfig {
    /// Parses and validates a config file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(AuditConfig::default());
        }
        let config: AuditConfig =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every id names a check.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.disable.iter().find(|id| catalog::find(id).is_none()) {
            Some(id) => Err(ConfigError::UnknownCheck { id: id.clone() }),
            None => Ok(()),
        }
    }

    /// The disabled checks' ids, as the catalogue spells them.
    pub fn disabled_checks(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.disable
            .iter()
            .filter_map(|id| catalog::find(id))
            .map(|c| c.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_disable_list() {
        let config = AuditConfig::parse("disable: [cpu-limit-missing, host-port]\n").unwrap();
        assert_eq!(config.disabled_checks().count(), 2);
    }

    #[test]
    fn unknown_ids_and_fields_are_refused() {
        assert!(matches!(
            AuditConfig::parse("disable: [cpu-limits]\n"),
            Err(ConfigError::UnknownCheck { .. })
        ));
        assert!(matches!(
            AuditConfig::parse("disabled: [cpu-limit-missing]\n"),
            Err(ConfigError::Syntax(_))
        ));
        assert!(AuditConfig::parse("").unwrap().disable.is_empty());
    }
}
