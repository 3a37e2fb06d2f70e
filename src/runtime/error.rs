//! The runtime's errors: one variant for each thing a caller or a user can act on.

use crate::engine::RunFailedMessage;

/// What went wrong finding or running the OCI runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable runtime: the reason fits on one line, for the executor's fallback message.
    #[error("{0}")]
    Unavailable(String),

    /// A command ran and exited with a non-zero status (the same message as the engine's).
    #[error("{}", RunFailedMessage { command, exit_code: *exit_code, last_lines })]
    RunFailed {
        /// The command as the user would recognise it (argv joined with spaces).
        command: String,
        exit_code: i64,
        /// The last lines it printed (stdout and stderr, in the order they arrived).
        last_lines: Vec<String>,
    },

    /// The runtime could not start the command (no such executable, a working directory
    /// that is a file, a mount it could not make): the runtime's own message.
    #[error("cannot start `{command}`: {message}")]
    StartFailed { command: String, message: String },

    /// The runtime itself ended without an exit status (killed by a signal).
    #[error("`{program}` running `{command}` was killed by signal {signal}")]
    RuntimeKilled {
        program: String,
        command: String,
        signal: i32,
    },

    /// A user or group name the image's `/etc/passwd` or `/etc/group` does not have, worded
    /// as Docker and BuildKit word it.
    #[error("{0}")]
    User(String),

    /// A runtime command other than `run` (`list`, `delete`) failed.
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },

    /// Reading or writing a file of the bundle, the root file system or the state dir.
    #[error("cannot {operation}")]
    Io {
        operation: String,
        #[source]
        source: std::io::Error,
    },

    /// A request imgbuild would not send (an empty command, a relative path).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The exit code of a command that failed (`RunFailed`), if that is what happened.
    pub fn exit_code(&self) -> Option<i64> {
        match self {
            Error::RunFailed { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }

    pub(crate) fn io(operation: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            operation: operation.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_reads_as_the_engine_s() {
        let lines = vec!["cc main.c".to_owned(), "main.c:1: error".to_owned()];
        let ours = Error::RunFailed {
            command: "/bin/sh -c make".into(),
            exit_code: 2,
            last_lines: lines.clone(),
        };
        let engine = crate::engine::Error::RunFailed {
            command: "/bin/sh -c make".into(),
            exit_code: 2,
            last_lines: lines,
        };
        assert_eq!(ours.to_string(), engine.to_string());
        assert!(ours.to_string().contains("exit code 2"), "{ours}");
        assert_eq!(ours.exit_code(), Some(2));
    }
}
