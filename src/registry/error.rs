//! The registry client's errors. Every message names the request (method and URL, never
//! credentials) or the registry and scope at fault, and says what to do where it can.

use std::path::PathBuf;

use oci_spec::image::Digest;

use super::credentials::CredentialsError;
use crate::error::InputError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer: connection refused or reset, TLS failure, timeout — after retries.
    #[error("{request} failed after {attempts} attempt(s)")]
    Transport {
        request: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },

    /// An answer that is an error.
    #[error("{request} answered {status}{detail}")]
    Status {
        request: String,
        status: u16,
        /// The registry's own error codes and messages, `: CODE: message`, or empty.
        detail: String,
    },

    #[error(
        "authentication to {registry} failed for scope `{scope}`: {reason}\n\
         credentials were looked for in {sources}"
    )]
    Auth {
        registry: String,
        scope: String,
        reason: String,
        sources: String,
    },

    #[error("{what} does not match its digest: expected {expected}, got {actual}; it was not kept")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: String,
    },

    #[error("{what} is {actual} bytes long, but its descriptor says {expected}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    #[error("{reference}: {message}")]
    Manifest { reference: String, message: String },

    #[error("{reference} has no image for platform {wanted} (it has: {available})")]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {source}")]
    StoreIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A blob transfer restarted until the retry bound.
    #[error("{what} failed {attempts} times; giving up")]
    GaveUp {
        what: String,
        attempts: u32,
        #[source]
        source: Box<Error>,
    },

    #[error(transparent)]
    Credentials(#[from] CredentialsError),

    #[error(transparent)]
    Input(#[from] InputError),

    #[error("{0}")]
    Client(String),

    /// Every endpoint tried (mirrors, then the registry itself) failed.
    #[error("{what}: {}", .attempts.iter().map(|(via, e)| format!("{via}: {}", with_causes(e))).collect::<Vec<_>>().join("; then "))]
    AllEndpointsFailed {
        what: String,
        /// Each endpoint tried, and how it failed.
        attempts: Vec<(String, Error)>,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether another attempt may succeed (connection trouble, 5xx, 429).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Status { status, .. } => *status == 429 || (*status >= 500 && *status != 501),
            // Local I/O (an image's blob that cannot be read) does not get better by retrying.
            _ => false,
        }
    }
}

/// An error and its causes on one line, `a: b: c`.
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let shown = c.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        cause = c.source();
    }
    text
}
