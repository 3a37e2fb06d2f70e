//! Progress reporting: the `Reporter` trait the library calls, and its renderers
//! (tty, plain, quiet).

/// How progress is shown, after `auto` is resolved against the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Redrawn lines with spinners, on a terminal.
    Tty,
    /// BuildKit-style numbered lines, for logs and CI.
    Plain,
    /// Only the image digest on stdout.
    Quiet,
}
