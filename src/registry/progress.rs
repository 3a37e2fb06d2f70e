//! Progress of pulls and pushes, reported through a trait the caller implements: the
//! library never prints (rendering lives in `crate::progress`).

use std::time::Duration;

use oci_spec::image::Digest;

use super::reference::Reference;

/// How a blob ended up where it was needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Pull: already in the local blob store, not fetched.
    Cached,
    /// Pull: fetched and verified.
    Downloaded,
    /// Push: the registry had it.
    AlreadyPresent,
    /// Push: mounted from another repository of the same registry.
    Mounted { from: String },
    /// Push: uploaded.
    Uploaded,
}

/// Callbacks for pull and push progress. Every method has a do-nothing default. Calls
/// may come from concurrent transfers, so implementations use interior mutability.
pub trait Progress: Send + Sync {
    /// A tag was resolved to the digest the build will use.
    fn on_resolved(&self, _reference: &Reference, _digest: &Digest) {}
    /// A transfer starts (or is checked, for blobs that turn out to be present).
    fn on_blob_start(&self, _digest: &Digest, _size: u64) {}
    /// `bytes` more bytes of the blob were transferred.
    fn on_blob_progress(&self, _digest: &Digest, _bytes: u64) {}
    fn on_blob_done(&self, _digest: &Digest, _outcome: &BlobOutcome) {}
    /// A request failed and will be tried again after `delay`.
    fn on_retry(&self, _request: &str, _attempt: u32, _delay: Duration, _reason: &str) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
