//! Errors of the `oci` module. Input mistakes a user can fix (`--chown` naming an unknown
//! user, a bad `--chmod`) are [`crate::error::InputError`]s instead, returned by the
//! functions that parse them.

use std::io;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure, with what was being done to which file.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// A blob whose content does not match its digest or size.
    #[error("blob {digest} is corrupt: {problem}")]
    CorruptBlob { digest: String, problem: String },

    /// An image, layout or archive that breaks the OCI or Docker format.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
}

/// Adds what was being done (and to which path) to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
    fn with_path(self, action: &str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }

    fn with_path(self, action: &str, path: &Path) -> Result<T> {
        self.context(|| format!("{action} {}", path.display()))
    }
}
