//! The engine's errors: one variant for each thing a caller or a user can act on.

use std::fmt;

/// What went wrong talking to the Docker engine.
///
/// Messages never contain credentials: engine addresses are shown with any user
/// information masked, and no request headers are kept.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No engine answers where we looked. `hint` says what to do.
    #[error("cannot reach the Docker engine at {place}: {reason}")]
    EngineUnreachable {
        /// The address, e.g. `unix:///var/run/docker.sock (default)`.
        place: String,
        reason: String,
        hint: String,
    },

    /// `DOCKER_HOST` (or the docker context) holds something imgbuild cannot connect to;
    /// `value` says which (`DOCKER_HOST=…`, `docker context NAME`).
    #[error("{value}: {reason}")]
    UnsupportedHost { value: String, reason: String },

    /// The engine answers, but speaks an API older than the one imgbuild was tested with.
    #[error(
        "the Docker engine at {place} speaks API {api_version}; imgbuild needs API 1.41 \
         (Docker 20.10) or newer"
    )]
    EngineTooOld { place: String, api_version: String },

    /// A command ran and exited with a non-zero status.
    #[error("{}", RunFailedMessage { command, exit_code: *exit_code, last_lines })]
    RunFailed {
        /// The command as the user would recognise it (argv joined with spaces).
        command: String,
        exit_code: i64,
        /// The last lines it printed (stdout and stderr, in the order they arrived).
        last_lines: Vec<String>,
    },

    /// The engine could not start the command at all (no such executable, bad user, …).
    #[error("cannot start `{command}`: {message}")]
    StartFailed { command: String, message: String },

    /// An image, container or path that is not there.
    #[error("{what} does not exist in the Docker engine")]
    NotFound { what: String },

    /// A request the engine refused or failed; the source holds the engine's message.
    #[error("the Docker engine failed to {operation}")]
    Api {
        operation: String,
        #[source]
        source: bollard::errors::Error,
    },

    /// Reading or writing the local side of a transfer failed.
    #[error("cannot {operation}")]
    Io {
        operation: String,
        #[source]
        source: std::io::Error,
    },

    /// A request imgbuild would not send (an empty command, a malformed reference).
    #[error("{0}")]
    Invalid(String),
}

impl crate::error::Hint for Error {
    fn hint(&self) -> Option<&str> {
        Error::hint(self)
    }

    /// The engine is the build's machinery: its failures are never the input's fault.
    fn is_input(&self) -> bool {
        false
    }
}

impl Error {
    /// What the user can do about it, printed after the error as `hint: …`.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::EngineUnreachable { hint, .. } => Some(hint),
            Error::UnsupportedHost { .. } => Some(
                "set DOCKER_HOST to unix:///PATH/docker.sock, tcp://HOST:PORT (with \
                 DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH for TLS) or ssh://USER@HOST, \
                 or pick another docker context (`docker context use NAME`)",
            ),
            Error::EngineTooOld { .. } => Some("upgrade the Docker engine to 20.10 or newer"),
            _ => None,
        }
    }

    /// The exit code of a command that failed (`RunFailed`), if that is what happened.
    pub fn exit_code(&self) -> Option<i64> {
        match self {
            Error::RunFailed { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }

    pub(crate) fn api(operation: impl Into<String>, source: bollard::errors::Error) -> Error {
        Error::Api {
            operation: operation.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether the engine answered 404 (no such container, image or path).
pub(crate) fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// An API error, or `NotFound { what }` when the engine answered 404.
pub(crate) fn api_or_not_found(
    operation: impl Into<String>,
    what: impl FnOnce() -> String,
) -> impl FnOnce(bollard::errors::Error) -> Error {
    move |source| {
        if is_not_found(&source) {
            Error::NotFound { what: what() }
        } else {
            Error::api(operation, source)
        }
    }
}

/// How a failed command is reported; shared with the native runtime so both executors say
/// it the same way.
pub(crate) struct RunFailedMessage<'a> {
    pub(crate) command: &'a str,
    pub(crate) exit_code: i64,
    pub(crate) last_lines: &'a [String],
}

impl fmt::Display for RunFailedMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` failed with exit code {}",
            self.command, self.exit_code
        )?;
        if self.last_lines.is_empty() {
            return f.write_str(" and printed nothing");
        }
        write!(f, "; its last {} lines of output:", self.last_lines.len())?;
        for line in self.last_lines {
            write!(f, "\n  | {line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_failed_shows_code_and_last_lines() {
        let err = Error::RunFailed {
            command: "/bin/sh -c make".into(),
            exit_code: 2,
            last_lines: vec!["cc main.c".into(), "main.c:1: error".into()],
        };
        assert_eq!(
            err.to_string(),
            "`/bin/sh -c make` failed with exit code 2; its last 2 lines of output:\n  \
             | cc main.c\n  | main.c:1: error"
        );
        assert_eq!(err.exit_code(), Some(2));
    }

    #[test]
    fn run_failed_without_output_says_so() {
        let err = Error::RunFailed {
            command: "false".into(),
            exit_code: 1,
            last_lines: vec![],
        };
        assert_eq!(
            err.to_string(),
            "`false` failed with exit code 1 and printed nothing"
        );
    }

    #[test]
    fn only_unreachable_and_host_errors_carry_hints() {
        let unreachable = Error::EngineUnreachable {
            place: "unix:///x".into(),
            reason: "no socket".into(),
            hint: "start it".into(),
        };
        assert_eq!(unreachable.hint(), Some("start it"));
        assert_eq!(Error::Invalid("x".into()).hint(), None);
    }
}
