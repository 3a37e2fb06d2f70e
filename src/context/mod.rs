//! The build context: what `COPY` and `ADD` read from the context directory, and the
//! digest that keys their cache entries.
//!
//! [`Context::select`] turns a step's sources and destination into a [`Selection`]: every
//! path the step writes into the image, with its type and normalised mode, the way docker
//! build (BuildKit) resolves them. [`Context::digest`] hashes exactly that: paths in the
//! image, types, modes, file contents and symlink targets, never mtimes or host owners. So
//! `COPY mix.exs mix.lock ./` + `RUN mix deps.get` stays cached across source edits, fresh
//! clones and other machines, and misses when the lockfile changes.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use imgbuild::context::{Context, SelectOptions};
//! let context = Context::open(std::path::Path::new("."))?;
//! let sources = vec!["mix.exs".to_owned(), "mix.lock".to_owned()];
//! let selection = context.select(&sources, "/app/", &SelectOptions::default(), &|_| false)?;
//! let digest = context.digest(&selection)?;
//! println!("{} ({} files)", digest.digest, digest.files.len());
//! # Ok(())
//! # }
//! ```
//!
//! Errors are `anyhow` errors. The user's mistakes (a missing or excluded source, a path
//! leaving the context, a bad `.dockerignore` line) carry [`crate::error::InputError`] or
//! [`crate::frontend::Error`], so they exit 2; failures to read the disk exit 1.

mod archive;
pub use archive::{is_tar_archive, open_archive, open_no_follow};
mod digest;
mod filter;
pub use filter::{Include, PathFilter};
pub mod git;
mod glob;
pub use glob::{Glob, has_wildcards};
mod path;
pub use path::{clean_dest, climbs_above_root};
mod select;
pub mod stdin;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::error::InputError;
use crate::frontend::dockerignore::DockerIgnore;

/// Errors of this module: see the module documentation for how input errors are marked.
pub type Error = anyhow::Error;

/// Up to this many `.dockerignore` lines, an error names the line that excludes a source.
const MAX_LINES_TO_EXPLAIN: usize = 1000;

/// An opened build context: its canonical root and its ignore file's rules.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    ignore: DockerIgnore,
    /// The ignore file's text, to name the line that excludes a source in errors.
    ignore_text: Vec<u8>,
    /// The ignore file as errors name it: `.dockerignore`, or `app.Dockerfile.dockerignore`
    /// as the user named the Dockerfile.
    ignore_name: String,
    /// Entries carry their files' owners (see [`Context::keeping_owners`]).
    keep_owners: bool,
}

/// How a `COPY`/`ADD` selects its files, beyond its sources and destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectOptions {
    /// `COPY --exclude=PATTERN`: `.dockerignore` syntax, matched against paths relative to
    /// each source (a copied directory's contents relative to it, a wildcard's matches
    /// relative to the directory before the wildcard).
    pub exclude: Vec<String>,
    /// `COPY --parents`: keep each source's path (below an optional `/./` pivot) under the
    /// destination.
    pub parents: bool,
    /// `--chmod`, already parsed. An octal mode is every selected file's and directory's
    /// (symlinks excepted); a symbolic one changes each entry's mode as it is written
    /// (`executor::archive`), so entries keep their own here.
    pub chmod: Option<crate::oci::layer::Chmod>,
    /// `ADD` of local files (without `--unpack=false`): a source that is a tar archive,
    /// plain or compressed with gzip, bzip2, xz or zstd, becomes an [`EntryKind::Archive`]
    /// to extract at the destination.
    pub is_add: bool,
}

/// What one `COPY`/`ADD` writes into the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Sorted by target path, component by component: parents before children. One entry
    /// per target; when two sources write the same path, the later one wins, as in BuildKit.
    pub entries: Vec<Entry>,
    /// Sockets, FIFOs and devices found in what was copied: left out, to be reported as
    /// warnings.
    pub skipped: Vec<Skipped>,
    /// Whether `.dockerignore` left out something below a copied directory: when not, the
    /// directory as it is on disk is what was selected (a bind mount may use it).
    pub ignored: bool,
}

/// One path the step writes into the image.
///
/// Modes are normalised so that the machine's umask and the checkout do not change the
/// image or its cache key: directories 0755, regular files 0755 when any execute bit is
/// set and 0644 otherwise, symlinks 0777. `--chmod` replaces the mode of every file and
/// directory (symlinks keep 0777), the destination directory included, as BuildKit ≥ 0.21
/// does. docker build copies the host's permission bits, so the image differs from its
/// result only for files and directories whose mode is neither of the two normal ones
/// (0600, 0664, 0775, setuid bits…). Owners are part of an entry only in a context that
/// keeps them (a tar on standard input, as BuildKit keeps them); otherwise the writer
/// applies `--chown` or root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The absolute host path inside the context (symlinks in a source path resolved);
    /// the context root for the destination directory.
    pub source: PathBuf,
    /// The absolute path in the image.
    pub target: String,
    pub kind: EntryKind,
    /// Normalised permission bits (see above).
    pub mode: u32,
    /// The destination directory, which the copy creates rather than copies: BuildKit
    /// leaves the mode of an existing directory alone (unless `--chmod` is given) and
    /// creates a missing one with `mode`. Missing parents of the destination are not
    /// listed: BuildKit creates them 0755.
    pub implicit: bool,
    /// `(uid, gid)` in a context that keeps its owners ([`Context::keeping_owners`]).
    pub owner: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File {
        size: u64,
        /// Whether the host file has an execute bit (before `--chmod`).
        executable: bool,
    },
    /// A unix socket, written as an empty regular file of its mode, as BuildKit's context
    /// transfer turns it (testCopySocket); never opened.
    Socket,
    /// Written as a symlink with this target; never followed or read.
    Symlink {
        target: String,
    },
    /// A regular file hard-linked to an earlier entry of the same source: `target` is the
    /// image path of that entry, to write as a tar hard link.
    Hardlink {
        target: String,
    },
    /// `ADD` of a local tar archive: extract it into `target` (a directory).
    Archive,
}

/// A file left out of a selection because it cannot be copied into an image.
///
/// BuildKit fails on FIFOs; imgbuild leaves out FIFOs and device nodes alike, since
/// reading a FIFO blocks and a device node in a build context is almost always an
/// accident. (Sockets are copied as empty files: [`EntryKind::Socket`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Relative to the context root.
    pub path: String,
    /// `FIFO`, `character device` or `block device`.
    pub kind: &'static str,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "skipped `{}`: a {} cannot be copied into an image",
            self.path, self.kind
        )
    }
}

/// The cache key of a selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionDigest {
    /// `sha256:…` over every entry: target path, type, mode, and the content of files and
    /// archives, the target of symlinks and hard links.
    pub digest: String,
    /// `sha256:…` of the content of each regular file (hard links included) and archive,
    /// by source path relative to the context root, so a cache miss can say which file
    /// changed.
    pub files: BTreeMap<String, String>,
}

impl Context {
    /// Opens a context directory and reads its `.dockerignore`.
    ///
    /// A missing `.dockerignore` excludes nothing; an invalid line is an input error
    /// located as `.dockerignore:LINE: …`.
    pub fn open(root: &Path) -> Result<Context, Error> {
        Self::open_for(root, None)
    }

    /// Opens a context directory for the Dockerfile at `dockerfile` (`None`: read from
    /// standard input). As BuildKit does, `DOCKERFILE.dockerignore` beside the Dockerfile
    /// (`app.Dockerfile.dockerignore` for `-f app.Dockerfile`, `Dockerfile.dockerignore`
    /// for the default) replaces the context's `.dockerignore` when it exists; the two are
    /// never merged.
    pub fn open_for(root: &Path, dockerfile: Option<&Path>) -> Result<Context, Error> {
        let canonical = std::fs::canonicalize(root).map_err(|e| {
            anyhow::Error::new(
                InputError::new(format!(
                    "the build context `{}` cannot be opened: {}",
                    root.display(),
                    io_reason(&e)
                ))
                .with_hint(
                    "give the directory to build as CONTEXT (default: the current directory)",
                ),
            )
        })?;
        if !canonical.is_dir() {
            return Err(InputError::new(format!(
                "the build context `{}` is not a directory",
                root.display()
            ))
            .with_hint("give the directory that holds the files to COPY as CONTEXT")
            .into());
        }
        let beside_dockerfile = dockerfile.map(|path| {
            let mut name = path.as_os_str().to_owned();
            name.push(".dockerignore");
            PathBuf::from(name)
        });
        let (ignore_path, ignore_name) = match beside_dockerfile.filter(|p| p.exists()) {
            Some(path) => {
                let name = path.display().to_string();
                (path, name)
            }
            None => (canonical.join(".dockerignore"), ".dockerignore".to_owned()),
        };
        let ignore_text = match std::fs::read(&ignore_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(InputError::new(format!(
                    "`{}` cannot be read: {}",
                    ignore_path.display(),
                    io_reason(&e)
                ))
                .into());
            }
        };
        let ignore = DockerIgnore::parse(&ignore_text).map_err(|e| e.in_file(&ignore_name))?;
        Ok(Context {
            root: canonical,
            ignore,
            ignore_text,
            ignore_name,
            keep_owners: false,
        })
    }

    /// A directory read as a context without a `.dockerignore`: what `ADD` fetched (a
    /// download, a git checkout), where a `.dockerignore` of the source means nothing.
    pub fn open_unfiltered(root: &Path) -> Result<Context, Error> {
        let root =
            std::fs::canonicalize(root).with_context(|| format!("opening {}", root.display()))?;
        Ok(Context {
            root,
            ignore: DockerIgnore::default(),
            ignore_text: Vec::new(),
            ignore_name: ".dockerignore".to_owned(),
            keep_owners: false,
        })
    }

    /// This context with its files' owners kept: a tar on standard input, whose owners
    /// BuildKit keeps for COPY (it unpacks the tar into a state and copies from that, as
    /// from a stage). A directory's owners are the checkout's, never the image's.
    pub fn keeping_owners(mut self) -> Context {
        self.keep_owners = true;
        self
    }

    /// Whether a `.dockerignore` leaves anything out of this context.
    pub fn filters(&self) -> bool {
        !self.ignore.is_empty()
    }

    /// Whether `.dockerignore` leaves out `rel_path` (relative to the root, clean).
    pub fn excludes(&self, rel_path: &str) -> bool {
        self.ignore.is_excluded(rel_path)
    }

    /// The canonical context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Selects what `COPY <sources> <dest>` (or `ADD`) copies, as docker build / BuildKit
    /// does.
    ///
    /// * `dest` is absolute; a trailing `/` makes it a directory. A source file goes to
    ///   `dest` unless `dest` ends in `/` or `dest_is_dir(dest)` says it is a directory in
    ///   the image, then to `dest/<name>`. A source directory copies its contents into
    ///   `dest`. `.` is the whole context; `/x` means `x` in the context.
    /// * Wildcards (`*`, `?`, `[…]`, Go's `filepath.Match` per component) may match
    ///   nothing, even for every source (BuildKit's behaviour), but the directory before
    ///   the first wildcard must exist. A source without wildcards must exist.
    /// * Paths excluded by `.dockerignore` do not exist for COPY, the Dockerfile and the
    ///   `.dockerignore` included.
    /// * A symlink named as a source (or on its path) is followed, within the context
    ///   only; symlinks inside a copied directory are copied as symlinks.
    pub fn select(
        &self,
        sources: &[String],
        dest: &str,
        opts: &SelectOptions,
        dest_is_dir: &dyn Fn(&str) -> bool,
    ) -> Result<Selection, Error> {
        select::Selector::new(self, opts)?.run(sources, dest, dest_is_dir)
    }

    /// The digest of a selection, reading file contents (in parallel on several cores).
    pub fn digest(&self, selection: &Selection) -> Result<SelectionDigest, Error> {
        digest::digest(&self.root, selection)
    }

    /// The 1-based `.dockerignore` line that makes `rel_path` excluded, if one does.
    fn excluding_line(&self, rel_path: &str) -> Option<(usize, String)> {
        let text = String::from_utf8_lossy(&self.ignore_text);
        let lines: Vec<&str> = text.split('\n').collect();
        // One parse per line: quadratic, so only for files of a sensible size.
        if lines.len() > MAX_LINES_TO_EXPLAIN {
            return None;
        }
        // The last line whose addition turns the path from visible to excluded decides.
        let mut found = None;
        let mut before = false;
        for n in 1..=lines.len() {
            let prefix = lines.get(..n).unwrap_or_default().join("\n");
            let after = DockerIgnore::parse(prefix.as_bytes())
                .map(|ignore| select::ignored(&ignore, rel_path))
                .unwrap_or(before);
            if after && !before {
                found = lines.get(n - 1).map(|line| (n, line.trim().to_owned()));
            }
            before = after;
        }
        found
    }

    fn context_error(&self, message: String, hint: impl Into<String>) -> Error {
        InputError::new(message).with_hint(hint).into()
    }
}

/// An I/O error's reason without Rust's "(os error 2)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Reads a path's metadata without following a final symlink, naming the path on failure.
fn lstat(path: &Path) -> Result<std::fs::Metadata, Error> {
    std::fs::symlink_metadata(path).with_context(|| format!("reading `{}`", path.display()))
}
