//! Build contexts for the `context_*` tests, made in a temporary directory per test.
//! Included by them with `#[path = "context_fixture.rs"] mod fixture;` (Cargo also builds
//! it alone, as a test binary without tests).

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use imgbuild::context::{Context, EntryKind, SelectOptions, Selection};

/// A context directory that is removed when dropped.
pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Default for Fixture {
    fn default() -> Fixture {
        Fixture::new()
    }
}

impl Fixture {
    /// An empty context in its own temporary directory (`ctx/` inside it, so tests can put
    /// files next to the context to prove they are never reached).
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        fs::create_dir(dir.path().join("ctx")).expect("the context directory");
        Fixture { dir }
    }

    /// Like [`Fixture::new`], in `/dev/shm` when it is there (a tmpfs).
    pub fn in_memory() -> Fixture {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        fs::create_dir(dir.path().join("ctx")).expect("the context directory");
        Fixture { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    /// The directory that holds the context: outside it.
    pub fn outside(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// A file with `content` and `mode` (parents created 0755).
    pub fn file(&self, rel: &str, content: &str, mode: u32) -> &Fixture {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            self.mkdirs(parent);
        }
        fs::write(&path, content).expect("write a fixture file");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }

    pub fn dir(&self, rel: &str, mode: u32) -> &Fixture {
        let path = self.path(rel);
        self.mkdirs(&path);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }

    pub fn symlink(&self, rel: &str, target: &str) -> &Fixture {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            self.mkdirs(parent);
        }
        std::os::unix::fs::symlink(target, &path).expect("symlink");
        self
    }

    pub fn hardlink(&self, rel: &str, existing: &str) -> &Fixture {
        fs::hard_link(self.path(existing), self.path(rel)).expect("hard link");
        self
    }

    fn mkdirs(&self, path: &Path) {
        fs::create_dir_all(path).expect("create directories");
    }

    pub fn context(&self) -> Context {
        Context::open(&self.root()).expect("open the context")
    }
}

/// Selects with default options; `dest_is_dir` says no directory exists in the image.
pub fn select(ctx: &Context, sources: &[&str], dest: &str) -> anyhow::Result<Selection> {
    select_with(ctx, sources, dest, &SelectOptions::default())
}

pub fn select_with(
    ctx: &Context,
    sources: &[&str],
    dest: &str,
    opts: &SelectOptions,
) -> anyhow::Result<Selection> {
    let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    ctx.select(&sources, dest, opts, &|_| false)
}

/// One line per entry: `target kind mode`, e.g. `/app/a.txt file 644`, `/l -> x symlink`,
/// `/app dir 755 implicit`.
pub fn summary(selection: &Selection) -> Vec<String> {
    selection
        .entries
        .iter()
        .map(|e| {
            let kind = match &e.kind {
                EntryKind::Dir => "dir".to_owned(),
                EntryKind::File { .. } => "file".to_owned(),
                EntryKind::Socket => "socket".to_owned(),
                EntryKind::Symlink { target } => format!("symlink -> {target}"),
                EntryKind::Hardlink { target } => format!("hardlink -> {target}"),
                EntryKind::Archive => "archive".to_owned(),
            };
            let implicit = if e.implicit { " implicit" } else { "" };
            format!("{} {kind} {:o}{implicit}", e.target, e.mode)
        })
        .collect()
}

/// Only the targets.
pub fn targets(selection: &Selection) -> Vec<String> {
    selection.entries.iter().map(|e| e.target.clone()).collect()
}

/// The full error chain, as the binary prints it.
pub fn error_text(error: &anyhow::Error) -> String {
    format!("{error:#}")
}

/// Sets a path's modification time (without following a symlink's target: not needed).
pub fn set_mtime(path: &Path, seconds_after_epoch: u64) {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds_after_epoch);
    let file = fs::File::open(path).expect("open to set mtime");
    file.set_modified(time).expect("set mtime");
}
