//! Log severity levels.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A log record's severity, ordered from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Finest detail.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Normal but significant (syslog `notice`).
    Notice,
    /// Something unexpected that the program handled.
    Warn,
    /// A failed operation.
    Error,
    /// The program or host is in trouble: syslog `crit`, `alert`, `emerg`; `fatal`, `panic`.
    Critical,
}

impl Level {
    /// All levels, least severe first.
    pub const ALL: [Level; 7] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Notice,
        Level::Warn,
        Level::Error,
        Level::Critical,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Critical => "critical",
        }
    }

    /// Parses the spellings logs use (`WARN`, `warning`, `E`, `err`, `FATAL`, PostgreSQL's
    /// `LOG`, ...), ignoring ASCII case. Single letters are the klog/glog and Android ones.
    pub fn parse(s: &str) -> Option<Level> {
        let b = s.as_bytes();
        if b.len() > 12 {
            return None;
        }
        let mut buf = [0u8; 12];
        for (d, s) in buf.iter_mut().zip(b) {
            *d = s.to_ascii_lowercase();
        }
        Some(match &buf[..b.len()] {
            b"trace" | b"trc" | b"finest" | b"finer" | b"v" => Level::Trace,
            b"debug" | b"dbg" | b"d" | b"fine" | b"debug1" | b"debug2" => Level::Debug,
            b"info" | b"inf" | b"i" | b"information" | b"informational" | b"log" => Level::Info,
            b"notice" | b"n" => Level::Notice,
            b"warn" | b"warning" | b"wrn" | b"w" => Level::Warn,
            b"error" | b"err" | b"e" | b"severe" | b"eror" => Level::Error,
            b"critical" | b"crit" | b"fatal" | b"f" | b"panic" | b"alert" | b"emerg"
            | b"emergency" | b"a" => Level::Critical,
            _ => return None,
        })
    }

    /// The level of a syslog severity number (0 = emerg ... 7 = debug).
    pub fn from_syslog_severity(severity: u8) -> Level {
        match severity {
            0..=2 => Level::Critical,
            3 => Level::Error,
            4 => Level::Warn,
            5 => Level::Notice,
            6 => Level::Info,
            _ => Level::Debug,
        }
    }

    /// Whether this level reports a failure (`error` or worse).
    pub fn is_error(self) -> bool {
        self >= Level::Error
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Level`] from a string.
#[derive(Debug, thiserror::Error)]
#[error("unknown level {0:?} (expected trace, debug, info, notice, warn, error or critical)")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::parse(s).ok_or_else(|| UnknownLevel(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("E"), Some(Level::Error));
        assert_eq!(Level::parse("Fatal"), Some(Level::Critical));
        assert_eq!(Level::parse("chatty"), None);
        assert!(Level::Critical > Level::Error && Level::Error.is_error());
        assert_eq!(Level::from_syslog_severity(3), Level::Error);
    }
}
