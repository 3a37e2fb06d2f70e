//! Errors of the snapshot store.

use std::io;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure, with what was being done to which path.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// A layer entry the store refuses to unpack: one that would write outside its
    /// snapshot, or that no file system can hold.
    #[error("layer {layer}: entry `{path}`: {problem}")]
    Entry {
        layer: String,
        path: String,
        problem: String,
    },

    /// The unpacked stream is not the layer the caller asked for.
    #[error(
        "layer {expected}: the uncompressed content has digest {actual}; the blob is corrupt \
         or the image config lists the wrong diff ID"
    )]
    DiffIdMismatch { expected: String, actual: String },

    /// The kernel refused an overlay mount (its own messages included).
    #[error("{0}")]
    Mount(String),

    /// A snapshot that was removed (or never committed) since it was looked up.
    #[error("snapshot {name} is no longer in the store")]
    Missing { name: String },

    /// A snapshot another build holds (mounted, or being written).
    #[error("snapshot {0} is in use by another build")]
    InUse(String),

    /// Writing an upper directory as a layer failed.
    #[error("writing the layer of {path}")]
    Layer {
        path: String,
        #[source]
        source: crate::oci::Error,
    },

    /// A store entry or an argument that makes no sense.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done (and to which path) to an `io::Error`.
pub(super) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
    fn with_path(self, action: &str, path: &Path) -> Result<T>;
}

impl<T, E: Into<io::Error>> IoContext<T> for std::result::Result<T, E> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source: source.into(),
        })
    }

    fn with_path(self, action: &str, path: &Path) -> Result<T> {
        self.context(|| format!("{action} {}", path.display()))
    }
}
