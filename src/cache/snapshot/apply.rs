//! Applies one layer's tar stream to an empty directory, making it an overlay lower
//! directory: what the layer adds is written as it is (regular files, directories,
//! symlinks, hard links, devices, fifos, with modes, owners, mtimes and extended
//! attributes), and OCI whiteouts become overlay whiteouts: `.wh.NAME` a 0/0 character
//! device `NAME`, `.wh..wh..opq` the `trusted.overlay.opaque=y` attribute on its directory.
//!
//! Like containerd's and Docker's appliers, a layer is applied on its own: a hard link must
//! point to a file earlier in the same layer (one to a lower layer's file is refused, as
//! containerd refuses it: the link would have to be a copy-up), and parents a layer leaves
//! out are made 0755 and owned by root. Within a layer a later entry replaces an earlier
//! one at the same path (directories merge), and a whiteout leaves the same layer's entry
//! alone (the OCI spec: it hides lower layers only).
//!
//! Every path is confined with [`super::beneath`]: `..` is refused, absolute paths are
//! taken from the layer root, and no write goes through a symlink.
//!
//! [`apply_to_tree`] applies an image's layers one after another to one directory instead,
//! giving its file system as a plain tree (`--output type=local|tar`): a whiteout removes
//! what an earlier layer wrote, and the files belong to the caller, the layers' owners
//! being recorded on the side.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use tar::EntryType;

use super::beneath::{self, WalkError, display};
use super::error::{Error, Result};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
/// AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): never part of an image's files.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
/// The xattr marking an opaque overlay directory.
pub(super) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// overlayfs's own attributes: a layer could use them to redirect lookups into other
/// directories, so they are never taken from a layer.
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";

/// Where an applier writes, which decides how paths resolve and what replaces what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// An empty directory becoming an overlay lower directory: no symlink is ever
    /// followed, OCI whiteouts become overlay whiteouts.
    Layer,
    /// A mounted root file system, as Docker extracts an archive into a container: parents
    /// resolve through the root's own symlinks without leaving it, `.wh.` names are plain
    /// names, and with `same_kind` a directory and a non-directory never replace each
    /// other (Docker's `NoOverwriteDirNonDir`, BuildKit's copy).
    Root { same_kind: bool },
    /// A plain directory receiving an image's layers bottom first ([`apply_to_tree`]): no
    /// symlink is followed, OCI whiteouts remove what earlier layers wrote, owners are
    /// recorded in a [`TreeState`] instead of being set.
    Tree,
}

/// What [`Target::Tree`] keeps across the layers of one image.
#[derive(Debug, Default)]
pub(super) struct TreeState {
    /// The layers' owners of every path written, as `(uid, gid)`; a path not here (a
    /// parent no layer listed) is root's.
    pub owners: BTreeMap<Vec<u8>, (u32, u32)>,
    /// Directory mtimes, set by [`TreeState::set_dir_times`] once the last layer is in.
    pub dir_times: HashMap<Vec<u8>, i64>,
}

impl TreeState {
    /// Forgets the owners of `path` and everything below it (removed from the tree).
    fn forget(&mut self, path: &[u8]) {
        let below = [path, b"/"].concat();
        self.owners.remove(path);
        let doomed: Vec<Vec<u8>> = self
            .owners
            .range(below.clone()..)
            .take_while(|(key, _)| key.starts_with(&below))
            .map(|(key, _)| key.clone())
            .collect();
        for key in doomed {
            self.owners.remove(&key);
        }
    }
}

/// How many entries a layer had, for callers' statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Applied {
    pub entries: u64,
}

/// Applies the tar stream `tar` to the directory open as `root` (empty, owned by the
/// caller). `layer` names the layer in errors.
pub(super) fn apply(
    root: BorrowedFd<'_>,
    tar: impl Read,
    layer: &str,
    target: Target,
) -> Result<Applied> {
    run(root, tar, layer, target, None)
}

/// Applies the next layer (bottom first) of an image to the directory open as `root`, empty
/// before the first: see [`Target::Tree`]. Once the last layer is in, call
/// [`TreeState::set_dir_times`].
pub(super) fn apply_to_tree(
    root: BorrowedFd<'_>,
    tar: impl Read,
    layer: &str,
    state: &mut TreeState,
) -> Result<Applied> {
    run(root, tar, layer, Target::Tree, Some(state))
}

fn run(
    root: BorrowedFd<'_>,
    tar: impl Read,
    layer: &str,
    target: Target,
    tree: Option<&mut TreeState>,
) -> Result<Applied> {
    let mut applier = Applier {
        root,
        target,
        layer,
        dir_times: HashMap::new(),
        parent: None,
        buf: vec![0; 1 << 16],
        tree,
        this_layer: HashSet::new(),
    };
    let mut archive = tar::Archive::new(tar);
    let stream_err = |source: io::Error| Error::Io {
        context: format!("reading layer {layer}"),
        source,
    };
    let mut applied = Applied::default();
    for entry in archive.entries().map_err(stream_err)? {
        let mut entry = entry.map_err(stream_err)?;
        let path = entry.path_bytes().into_owned();
        applier.entry(&mut entry).map_err(|problem| match problem {
            Problem::Stream(source) => stream_err(source),
            Problem::Entry(problem) => Error::Entry {
                layer: layer.to_string(),
                path: display(&path),
                problem,
            },
        })?;
        applied.entries += 1;
    }
    match applier.tree.take() {
        // Later layers write into these directories: they are dated once, at the end.
        Some(tree) => tree.dir_times.extend(applier.dir_times.drain()),
        None => applier.set_dir_times()?,
    }
    Ok(applied)
}

enum Problem {
    /// The stream itself failed (reading, decompressing).
    Stream(io::Error),
    /// The entry is refused or could not be written.
    Entry(String),
}

impl From<String> for Problem {
    fn from(problem: String) -> Self {
        Problem::Entry(problem)
    }
}

/// `problem` with what was being done.
fn doing(what: &'static str) -> impl Fn(Errno) -> Problem {
    move |e| Problem::Entry(format!("{what}: {}", io::Error::from(e)))
}

/// Metadata an entry asks for.
struct Meta {
    mode: u32,
    uid: Uid,
    gid: Gid,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Applier<'a> {
    root: BorrowedFd<'a>,
    target: Target,
    layer: &'a str,
    /// Directory mtimes, set once everything is written (writing into a directory moves
    /// its mtime).
    dir_times: HashMap<Vec<u8>, i64>,
    /// The last parent directory opened: entries come grouped by directory. Dropped
    /// whenever anything is removed, as it may have been the removed directory.
    parent: Option<(Vec<u8>, OwnedFd)>,
    buf: Vec<u8>,
    /// [`Target::Tree`]'s state across layers.
    tree: Option<&'a mut TreeState>,
    /// [`Target::Tree`]: every path this layer wrote, which its own whiteouts leave alone.
    this_layer: HashSet<Vec<u8>>,
}

impl Applier<'_> {
    /// Copies a file's content, telling a broken stream from a failed write.
    fn copy_content(&mut self, from: &mut impl Read, to: &mut File) -> Result<(), Problem> {
        loop {
            let n = match from.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Problem::Stream(e)),
            };
            to.write_all(self.buf.get(..n).unwrap_or_default())
                .map_err(|e| format!("writing its content: {e}"))?;
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Problem> {
        let raw_path = entry.path_bytes().into_owned();
        let parts = beneath::components(&raw_path).map_err(|e| e.message().to_string())?;
        let Some((&name, parent_parts)) = parts.split_last() else {
            // The layer root ("./"): the snapshot root stands for it, as in containerd.
            return Ok(());
        };
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            return Ok(());
        }
        if parent_parts.iter().any(|p| p.starts_with(AUFS_META_PREFIX))
            || (name.starts_with(AUFS_META_PREFIX) && name != OPAQUE)
        {
            return Ok(());
        }
        let is_layer = self.target == Target::Layer;
        if self.target == Target::Tree {
            if name == OPAQUE {
                return self.remove_lower_children(parent_parts);
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                return self.remove_lower(parent_parts, hidden);
            }
            self.this_layer.insert(parts.join(&b'/'));
        }
        if is_layer && name == OPAQUE {
            let dir = self.parent(parent_parts)?;
            return rustix::fs::setxattr(
                beneath::fd_path(dir.as_fd(), b""),
                OPAQUE_XATTR,
                b"y",
                XattrFlags::empty(),
            )
            .map_err(doing("marking its directory opaque"));
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX)
            && is_layer
        {
            return self.whiteout(parent_parts, hidden);
        }

        let meta = self.meta(entry)?;
        let parent = self.parent(parent_parts)?;
        let dir = parent.as_fd();
        let os_name = OsStr::from_bytes(name);
        let existing = beneath::file_type_at(dir, name).map_err(|e| e.to_string())?;
        if let (Target::Root { same_kind: true }, Some(existing)) = (self.target, existing)
            && (existing == FileType::Directory) != entry_type.is_dir()
        {
            return Err(match entry_type.is_dir() {
                true => "cannot replace a non-directory with a directory",
                false => "cannot replace a directory with a non-directory",
            }
            .to_string()
            .into());
        }
        let replace = |applier: &mut Self| -> Result<(), Problem> {
            if existing.is_some() {
                applier.parent = None;
                beneath::remove_all_at(dir, name)
                    .map_err(|e| format!("replacing what an earlier entry put there: {e}"))?;
                if let Some(tree) = applier.tree.as_deref_mut() {
                    tree.forget(&parts.join(&b'/'));
                }
            }
            Ok(())
        };

        let is_symlink = entry_type.is_symlink();
        match entry_type {
            EntryType::Directory => {
                if existing != Some(FileType::Directory) {
                    replace(self)?;
                    rustix::fs::mkdirat(dir, os_name, Mode::from_raw_mode(0o700))
                        .map_err(doing("creating the directory"))?;
                }
                self.dir_times.insert(parts.join(&b'/'), meta.mtime);
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                replace(self)?;
                let fd = rustix::fs::openat(
                    dir,
                    os_name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(doing("creating the file"))?;
                self.copy_content(entry, &mut File::from(fd))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| "a symlink without a target".to_string())?;
                replace(self)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), dir, os_name)
                    .map_err(doing("creating the symlink"))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| "a hard link without a target".to_string())?
                    .into_owned();
                return self.hard_link(dir, &parts, &target, existing.is_some());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let file_type = match entry_type {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                replace(self)?;
                rustix::fs::mknodat(
                    dir,
                    os_name,
                    file_type,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(doing("creating the device node"))?;
            }
            other => {
                return Err(format!("unsupported entry type {other:?}").into());
            }
        }
        if let Some(tree) = self.tree.as_deref_mut() {
            let owner = (meta.uid.as_raw(), meta.gid.as_raw());
            tree.owners.insert(parts.join(&b'/'), owner);
        }
        self.set_meta(dir, name, &meta, is_symlink, entry_type.is_dir())
    }

    /// [`Target::Tree`]'s `.wh.NAME`: removes what an earlier layer put at NAME.
    fn remove_lower(&mut self, parent_parts: &[&[u8]], hidden: &[u8]) -> Result<(), Problem> {
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
            return Err(format!("a whiteout of `{}`", display(hidden)).into());
        }
        let parent = match self.open_dir(parent_parts, false) {
            Ok(parent) => parent,
            // Nothing below there to hide: no directory there (a file or symlink there hides
            // the lower directory already).
            Err(
                WalkError::Missing { .. } | WalkError::NotDir { .. } | WalkError::Symlink { .. },
            ) => {
                return Ok(());
            }
            Err(e) => return Err(e.describe(parent_parts).into()),
        };
        let path = [parent_parts, &[hidden]].concat().join(&b'/');
        self.remove_if_lower(parent.as_fd(), hidden, &path)
    }

    /// [`Target::Tree`]'s `.wh..wh.opq`: empties the directory of what earlier layers put
    /// there, keeping what this layer wrote before the marker.
    fn remove_lower_children(&mut self, parent_parts: &[&[u8]]) -> Result<(), Problem> {
        let dir = self.parent(parent_parts)?;
        // `dir` is an O_PATH descriptor, which cannot be listed.
        let listable = rustix::fs::openat(
            &dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(doing("opening the opaque directory"))?;
        let mut names = Vec::new();
        for entry in
            rustix::fs::Dir::new(listable).map_err(doing("listing the opaque directory"))?
        {
            let entry = entry.map_err(doing("listing the opaque directory"))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        for name in names {
            let path = [parent_parts, &[name.as_slice()]].concat().join(&b'/');
            self.remove_if_lower(dir.as_fd(), &name, &path)?;
        }
        Ok(())
    }

    fn remove_if_lower(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
    ) -> Result<(), Problem> {
        if self.this_layer.contains(path)
            || beneath::file_type_at(dir, name)
                .map_err(|e| e.to_string())?
                .is_none()
        {
            return Ok(());
        }
        self.parent = None;
        beneath::remove_all_at(dir, name)
            .map_err(|e| format!("removing `{}` of a lower layer: {e}", display(path)))?;
        if let Some(tree) = self.tree.as_deref_mut() {
            tree.forget(path);
        }
        Ok(())
    }

    /// Ownership, extended attributes, mode and (except for directories) times, in the
    /// order that keeps each: chown clears setuid bits and file capabilities.
    fn set_meta(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        is_symlink: bool,
        is_dir: bool,
    ) -> Result<(), Problem> {
        let os_name = OsStr::from_bytes(name);
        let tree = self.target == Target::Tree;
        // A tree's files are the caller's, as BuildKit's local export gives them.
        if !tree {
            rustix::fs::chownat(
                dir,
                os_name,
                Some(meta.uid),
                Some(meta.gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(doing("setting its owner"))?;
        }
        if !meta.xattrs.is_empty() {
            let path = beneath::fd_path(dir, name);
            for (key, value) in &meta.xattrs {
                match rustix::fs::lsetxattr(&path, key.as_str(), value, XattrFlags::empty()) {
                    // The file system cannot store it (as containerd, go on without).
                    Ok(()) | Err(Errno::OPNOTSUPP) => {}
                    // A tree exported by a user who may not set `security.*` or `trusted.*`.
                    Err(Errno::PERM) if tree => {}
                    Err(e) => {
                        return Err(format!(
                            "setting extended attribute `{key}`: {}",
                            io::Error::from(e)
                        )
                        .into());
                    }
                }
            }
        }
        if !is_symlink {
            rustix::fs::chmodat(
                dir,
                os_name,
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .map_err(doing("setting its mode"))?;
        }
        if !is_dir {
            rustix::fs::utimensat(
                dir,
                os_name,
                &timestamps(meta.mtime),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(doing("setting its mtime"))?;
        }
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta, Problem> {
        let header = entry.header();
        let unreadable = |what: &str| format!("an unreadable {what}");
        let old = header.as_old();
        let mode = numeric(&old.mode, header.mode().map(u64::from))
            .ok_or_else(|| unreadable("mode"))?
            & 0o7777;
        let mut uid = numeric(&old.uid, header.uid()).ok_or_else(|| unreadable("uid"))?;
        let mut gid = numeric(&old.gid, header.gid()).ok_or_else(|| unreadable("gid"))?;
        let mut mtime = numeric(&old.mtime, header.mtime())
            .ok_or_else(|| unreadable("mtime"))
            .map(|m| i64::try_from(m).unwrap_or(i64::MAX))?;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(Problem::Stream)? {
            for ext in pax {
                let ext = ext.map_err(Problem::Stream)?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                let number = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.split('.').next())
                        .and_then(|v| v.parse::<i64>().ok())
                        .ok_or_else(|| unreadable(&String::from_utf8_lossy(key)))
                };
                match key {
                    b"uid" => uid = u64::try_from(number()?).map_err(|_| unreadable("uid"))?,
                    b"gid" => gid = u64::try_from(number()?).map_err(|_| unreadable("gid"))?,
                    b"mtime" => mtime = number()?,
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            let name = std::str::from_utf8(name)
                                .ok()
                                .filter(|n| !n.is_empty() && !n.contains('\0'))
                                .ok_or_else(|| {
                                    format!("an invalid xattr name `{}`", display(name))
                                })?;
                            if !name.starts_with(OVERLAY_XATTR_PREFIX) {
                                xattrs.push((name.to_string(), value.to_vec()));
                            }
                        }
                    }
                }
            }
        }
        let id = |value: u64, what: &str| {
            u32::try_from(value).map_err(|_| format!("a {what} ({value}) too large for Linux"))
        };
        Ok(Meta {
            mode: u32::try_from(mode).unwrap_or(0),
            uid: Uid::from_raw(id(uid, "uid")?),
            gid: Gid::from_raw(id(gid, "gid")?),
            mtime,
            xattrs,
        })
    }

    /// `.wh.NAME`: a 0/0 character device `NAME`, unless this layer put something there.
    fn whiteout(&mut self, parent_parts: &[&[u8]], hidden: &[u8]) -> Result<(), Problem> {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(format!("a whiteout of `{}`", display(hidden)).into());
        }
        let parent = self.parent(parent_parts)?;
        if beneath::file_type_at(parent.as_fd(), hidden)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Ok(());
        }
        rustix::fs::mknodat(
            parent.as_fd(),
            OsStr::from_bytes(hidden),
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(doing("creating the overlay whiteout"))
    }

    fn hard_link(
        &mut self,
        dir: BorrowedFd<'_>,
        parts: &[&[u8]],
        target: &[u8],
        replace: bool,
    ) -> Result<(), Problem> {
        let target_parts = beneath::components(target)
            .map_err(|e| format!("its link target `{}`: {}", display(target), e.message()))?;
        let Some((&target_name, target_parent)) = target_parts.split_last() else {
            return Err("a hard link to the layer root".to_string().into());
        };
        if target_parts == parts {
            return Err("a hard link to itself".to_string().into());
        }
        let not_here = || {
            format!(
                "its hard link target `{}` is not a file earlier in this layer (links to \
                 files of lower layers are refused, as containerd does)",
                display(target)
            )
        };
        let target_dir = match self.open_dir(target_parent, false) {
            Ok(fd) => fd,
            Err(WalkError::Missing { .. }) => return Err(not_here().into()),
            Err(e) => {
                return Err(format!("its hard link target: {}", e.describe(target_parent)).into());
            }
        };
        match beneath::file_type_at(target_dir.as_fd(), target_name).map_err(|e| e.to_string())? {
            None => return Err(not_here().into()),
            Some(FileType::Directory) => {
                return Err(
                    format!("its hard link target `{}` is a directory", display(target)).into(),
                );
            }
            Some(_) => {}
        }
        let name = parts.last().copied().unwrap_or_default();
        if replace {
            self.parent = None;
            beneath::remove_all_at(dir, name)
                .map_err(|e| format!("replacing what an earlier entry put there: {e}"))?;
        }
        rustix::fs::linkat(
            target_dir.as_fd(),
            OsStr::from_bytes(target_name),
            dir,
            OsStr::from_bytes(name),
            AtFlags::empty(),
        )
        .map_err(doing("creating the hard link"))
    }

    /// The directory `parts` below the root as the target resolves it, created if missing
    /// with `create`.
    fn open_dir(&self, parts: &[&[u8]], create: bool) -> Result<OwnedFd, WalkError> {
        match self.target {
            Target::Layer | Target::Tree => beneath::open_dir(self.root, parts, create),
            Target::Root { .. } => beneath::open_dir_in_root(self.root, parts, create),
        }
    }

    /// The directory `parts` below the root, created if missing; cached for the next entry.
    fn parent(&mut self, parts: &[&[u8]]) -> Result<OwnedFd, Problem> {
        let key = parts.join(&b'/');
        if let Some((cached, fd)) = &self.parent
            && *cached == key
        {
            return fd.try_clone().map_err(|e| Problem::Entry(e.to_string()));
        }
        let fd = self.open_dir(parts, true).map_err(|e| e.describe(parts))?;
        let copy = fd.try_clone().map_err(|e| Problem::Entry(e.to_string()))?;
        self.parent = Some((key, fd));
        Ok(copy)
    }

    fn set_dir_times(&mut self) -> Result<()> {
        set_dir_times(self.root, self.target, &self.dir_times, self.layer)
    }
}

/// Dates the directories of `times` (paths below `root` as `target` resolves them), after
/// everything was written into them.
fn set_dir_times(
    root: BorrowedFd<'_>,
    target: Target,
    times: &HashMap<Vec<u8>, i64>,
    layer: &str,
) -> Result<()> {
    for (path, mtime) in times {
        let parts = beneath::components(path).unwrap_or_default();
        let Some((&name, parent)) = parts.split_last() else {
            continue;
        };
        // A directory a later entry replaced is no longer there to be dated.
        let opened = match target {
            Target::Layer | Target::Tree => beneath::open_dir(root, parent, false),
            Target::Root { .. } => beneath::open_dir_in_root(root, parent, false),
        };
        let Ok(dir) = opened else {
            continue;
        };
        if beneath::file_type_at(dir.as_fd(), name).ok().flatten() != Some(FileType::Directory) {
            continue;
        }
        rustix::fs::utimensat(
            &dir,
            OsStr::from_bytes(name),
            &timestamps(*mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::Entry {
            layer: layer.to_string(),
            path: display(path),
            problem: format!("setting its mtime: {}", io::Error::from(e)),
        })?;
    }
    Ok(())
}

impl TreeState {
    /// Dates the tree's directories once every layer is in (`root` as given to
    /// [`apply_to_tree`]).
    pub(super) fn set_dir_times(&self, root: BorrowedFd<'_>) -> Result<()> {
        set_dir_times(root, Target::Tree, &self.dir_times, "of the image")
    }
}

/// A numeric header field; one left empty (all NULs or spaces) is 0, as Go's archive/tar
/// (hence Docker and containerd) reads it.
fn numeric(raw: &[u8], parsed: io::Result<u64>) -> Option<u64> {
    match parsed {
        Ok(value) => Some(value),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Some(0),
        Err(_) => None,
    }
}

fn timestamps(mtime: i64) -> Timestamps {
    let at = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: at,
        last_modification: at,
    }
}

#[cfg(test)]
mod tests;
