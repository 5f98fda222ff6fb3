//! The crate-level error type.

use std::fmt;

/// What can go wrong inside the hub, with context for the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubError {
    /// A Redis command failed (message names the command and key).
    Redis(String),
    /// An actor was gone (the instance is shutting down).
    Mailbox(String),
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubError::Redis(m) => write!(f, "redis: {m}"),
            HubError::Mailbox(m) => write!(f, "actor unavailable: {m}"),
        }
    }
}

impl std::error::Error for HubError {}
