//! Progress reporting: the [`Reporter`] trait the library calls, and its renderers for a
//! terminal ([`tty`]), for logs and CI ([`plain`]) and for scripts (quiet: nothing).
//!
//! Library code never prints; it tells a reporter what happened. Only the renderers
//! here write to the terminal, so `--progress quiet` really prints only the image ID.

pub mod plain;
pub mod rawjson;
pub mod tty;

use std::sync::Arc;
use std::time::Duration;

/// How progress is shown, after `auto` is resolved against the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Redrawn lines with spinners, on a terminal.
    Tty,
    /// BuildKit-style numbered lines, for logs and CI.
    Plain,
    /// Only the image digest on stdout.
    Quiet,
    /// One JSON object per event on stderr (`--progress rawjson`).
    RawJson,
}

/// Identifies one vertex of the build (a step, a pull, a push) across events.
pub type VertexId = usize;

/// What the library tells the user about. Every method has a default that does nothing, so
/// a reporter implements only what it shows.
pub trait Reporter: Send + Sync {
    /// A vertex starts: `name` is what the user sees, e.g. `[build 4/9] RUN mix deps.get`.
    fn started(&self, _id: VertexId, _name: &str) {}
    /// A vertex was answered from the cache.
    fn cached(&self, _id: VertexId, _name: &str) {}
    /// A line of a vertex's output (RUN output, a cache-miss reason, a resolved digest).
    fn log(&self, _id: VertexId, _line: &str) {}
    /// Bytes done of a known or unknown total (downloads, uploads, layer writes).
    fn progress(&self, _id: VertexId, _done: u64, _total: Option<u64>) {}
    /// A vertex finished.
    fn done(&self, _id: VertexId, _elapsed: Duration) {}
    /// A vertex failed; the error itself is reported by the caller.
    fn failed(&self, _id: VertexId, _elapsed: Duration) {}
    /// Something the user should know that does not stop the build.
    fn warning(&self, _message: &str) {}
    /// A plain line about how the build runs (which executor, and why), not a warning.
    fn note(&self, message: &str) {
        self.summary(message);
    }
    /// A final line (image name, digest, size, cache figures).
    fn summary(&self, _line: &str) {}
    /// The figures of a finished build, for reporters that record them (`rawjson`).
    fn outcome(&self, _outcome: &Outcome) {}
}

/// What a finished build reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    pub tags: Vec<String>,
    /// The manifest digest.
    pub digest: String,
    /// The config digest (docker's image ID).
    pub image_id: String,
    /// Compressed size of all layers, in bytes.
    pub size: u64,
    pub layers: usize,
    pub cache_hits: usize,
    pub cache_misses: usize,
    pub seconds: f64,
}

/// Reports nothing (`--progress quiet`, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {}

/// The reporter for a mode.
pub fn reporter(mode: Mode) -> Arc<dyn Reporter> {
    match mode {
        Mode::Tty => Arc::new(tty::TtyReporter::new()),
        Mode::Plain => Arc::new(plain::PlainReporter::new(std::io::stderr())),
        Mode::Quiet => Arc::new(Silent),
        Mode::RawJson => Arc::new(rawjson::JsonReporter::new(std::io::stderr())),
    }
}

/// Allocates vertex ids in order, as BuildKit numbers its `#N` lines.
#[derive(Debug, Default)]
pub struct Ids(std::sync::atomic::AtomicUsize);

impl Ids {
    pub fn next(&self) -> VertexId {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }
}
