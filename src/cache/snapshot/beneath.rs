//! File operations confined below one directory: paths from layers are split into checked
//! components, directories are opened without following any symlink (`openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or one `O_NOFOLLOW` step at a time), and every
//! write then names a single component relative to such a directory's descriptor. So
//! nothing a layer contains can redirect a write outside the tree.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Why a path from a layer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BadPath {
    /// A `..` component: refused wherever it is, even where it would stay inside.
    DotDot,
    /// A NUL byte, which no file name can hold.
    Nul,
}

impl BadPath {
    pub fn message(self) -> &'static str {
        match self {
            BadPath::DotDot => "`..` in a layer path is refused (it could climb out of the layer)",
            BadPath::Nul => "a NUL byte in a layer path",
        }
    }
}

/// The components of a path from a layer, relative to the layer root: a leading `/`, `.`
/// and empty components are dropped (absolute paths are taken as relative to the root, as
/// Docker and containerd do); `..` is refused.
pub(super) fn components(path: &[u8]) -> Result<Vec<&[u8]>, BadPath> {
    if path.contains(&0) {
        return Err(BadPath::Nul);
    }
    let mut parts = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(BadPath::DotDot),
            p => parts.push(p),
        }
    }
    Ok(parts)
}

/// Why a directory below the root could not be opened.
#[derive(Debug)]
pub(super) enum WalkError {
    /// The component ending at `depth` (exclusive) is a symbolic link.
    Symlink {
        depth: usize,
    },
    /// The component ending at `depth` exists but is not a directory.
    NotDir {
        depth: usize,
    },
    /// The component ending at `depth` does not exist (and was not to be created).
    Missing {
        depth: usize,
    },
    Io(io::Error),
}

impl WalkError {
    /// A message naming the offending prefix of `parts`.
    pub fn describe(&self, parts: &[&[u8]]) -> String {
        let prefix = |depth: usize| display(&parts[..depth.min(parts.len())].join(&b'/'));
        match self {
            WalkError::Symlink { depth } => format!(
                "its parent `{}` is a symbolic link; the store never writes through one",
                prefix(*depth)
            ),
            WalkError::NotDir { depth } => {
                format!("its parent `{}` is not a directory", prefix(*depth))
            }
            WalkError::Missing { depth } => format!("`{}` does not exist", prefix(*depth)),
            WalkError::Io(e) => e.to_string(),
        }
    }
}

/// Opens directory `parts` below `root` (an `O_PATH` descriptor), never following a
/// symlink. With `create`, missing directories are made (mode 0755, owned by root, as
/// Docker does for parents a layer leaves out).
pub(super) fn open_dir(
    root: BorrowedFd<'_>,
    parts: &[&[u8]],
    create: bool,
) -> Result<OwnedFd, WalkError> {
    if parts.is_empty() {
        return rustix::fs::openat(root, c".", dir_flags(), Mode::empty())
            .map_err(|e| WalkError::Io(e.into()));
    }
    // One syscall in the common case; the walk below explains failures and creates.
    let joined = parts.join(&b'/');
    match rustix::fs::openat2(
        root,
        OsStr::from_bytes(&joined),
        dir_flags(),
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR | Errno::XDEV | Errno::NOSYS) => {}
        Err(e) => return Err(WalkError::Io(e.into())),
    }
    let mut dir = rustix::fs::openat(root, c".", dir_flags(), Mode::empty())
        .map_err(|e| WalkError::Io(e.into()))?;
    for (i, part) in parts.iter().enumerate() {
        let name = OsStr::from_bytes(part);
        let depth = i + 1;
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {}
                FileType::Symlink => return Err(WalkError::Symlink { depth }),
                _ => return Err(WalkError::NotDir { depth }),
            },
            Err(Errno::NOENT) if create => {
                make_parent_dir(dir.as_fd(), name).map_err(|e| WalkError::Io(e.into()))?;
            }
            Err(Errno::NOENT) => return Err(WalkError::Missing { depth }),
            Err(e) => return Err(WalkError::Io(e.into())),
        }
        dir = rustix::fs::openat(&dir, name, dir_flags(), Mode::empty()).map_err(|e| match e {
            // Replaced by a symlink between the stat and the open: still refused.
            Errno::LOOP | Errno::NOTDIR => WalkError::NotDir { depth },
            e => WalkError::Io(e.into()),
        })?;
    }
    Ok(dir)
}

/// Opens directory `parts` of the root file system `root` as a process inside it would:
/// symlinks on the way are followed, absolute ones and `..` from the root itself
/// (`openat2` with `RESOLVE_IN_ROOT`), so nothing resolves outside it. With `create`,
/// missing directories are made (mode 0755, owned by root, as Docker's archive
/// extraction makes the parents an archive leaves out).
pub(super) fn open_dir_in_root(
    root: BorrowedFd<'_>,
    parts: &[&[u8]],
    create: bool,
) -> Result<OwnedFd, WalkError> {
    let open = |depth: usize| {
        let joined = match parts.get(..depth).unwrap_or_default() {
            [] => b".".to_vec(),
            prefix => prefix.join(&b'/'),
        };
        rustix::fs::openat2(
            root,
            OsStr::from_bytes(&joined),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    };
    let failed = |e: Errno, depth: usize| match e {
        Errno::NOTDIR => WalkError::NotDir { depth },
        Errno::NOENT => WalkError::Missing { depth },
        e => WalkError::Io(e.into()),
    };
    match open(parts.len()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) if create => {}
        Err(e) => return Err(failed(e, parts.len())),
    }
    // Find the deepest directory that exists, then make the rest below it.
    let mut depth = parts.len();
    let mut dir = loop {
        depth -= 1;
        match open(depth) {
            Ok(fd) => break fd,
            Err(Errno::NOENT) if depth > 0 => continue,
            Err(e) => return Err(failed(e, depth)),
        }
    };
    for (i, part) in parts.iter().enumerate().skip(depth) {
        let name = OsStr::from_bytes(part);
        // A dangling symlink there fails: it would make a directory elsewhere.
        make_parent_dir(dir.as_fd(), name).map_err(|e| failed(e, i + 1))?;
        dir = rustix::fs::openat(&dir, name, dir_flags(), Mode::empty())
            .map_err(|e| failed(e, i + 1))?;
    }
    Ok(dir)
}

/// Makes directory `name` in `dir` as Docker makes the parents an archive leaves out: mode
/// 0755 (explicitly: the umask must not decide) and owned by root (the creator may not be).
fn make_parent_dir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755))?;
    rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o755), AtFlags::empty())?;
    rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::ROOT),
        Some(rustix::fs::Gid::ROOT),
        AtFlags::SYMLINK_NOFOLLOW,
    )
}

fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// What is at `name` in `dir`, without following a symlink; `None` if nothing is.
pub(super) fn file_type_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A path naming `name` inside the directory open as `dir`, for the calls that take only
/// paths (`lsetxattr`): `/proc/self/fd/N` pins the directory, and `name` is one component,
/// which the `l*` calls do not follow.
pub(super) fn fd_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    let mut path = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if !name.is_empty() {
        path.push(b'/');
        path.extend_from_slice(name);
    }
    PathBuf::from(OsStr::from_bytes(&path))
}

/// Removes `name` in `dir` and, if it is a directory, everything below it, without
/// following symlinks and without entering another file system (a mount at or below it
/// makes this fail instead of emptying what is mounted there).
pub(super) fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let os = OsStr::from_bytes(name);
    let st = rustix::fs::statat(dir, os, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(dir, os, AtFlags::empty())?);
    }
    if st.st_dev != rustix::fs::fstat(dir)?.st_dev {
        return Err(io::Error::other(format!(
            "`{}` is a mount point; not deleting through it",
            display(name)
        )));
    }
    let sub = rustix::fs::openat(
        dir,
        os,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    empty_dir(sub.as_fd(), st.st_dev)?;
    Ok(rustix::fs::unlinkat(dir, os, AtFlags::REMOVEDIR)?)
}

fn empty_dir(dir: BorrowedFd<'_>, dev: u64) -> io::Result<()> {
    // Names first, so only one descriptor per level stays open while recursing.
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    for name in names {
        let os = OsStr::from_bytes(&name);
        let st = rustix::fs::statat(dir, os, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            rustix::fs::unlinkat(dir, os, AtFlags::empty())?;
            continue;
        }
        if st.st_dev != dev {
            return Err(io::Error::other(format!(
                "`{}` is on another file system (a mount?); not deleting through it",
                display(&name)
            )));
        }
        let sub = rustix::fs::openat(
            dir,
            os,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        empty_dir(sub.as_fd(), dev)?;
        rustix::fs::unlinkat(dir, os, AtFlags::REMOVEDIR)?;
    }
    Ok(())
}

/// Removes the tree at `path` (see [`remove_all_at`]); nothing there is fine.
pub(super) fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::other(format!(
            "refusing to delete {}",
            path.display()
        )));
    };
    let parent = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    match remove_all_at(parent.as_fd(), name.as_bytes()) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// A layer path for messages.
pub(super) fn display(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn components_drop_roots_and_refuse_dotdot() {
        assert_eq!(
            components(b"/etc/passwd").unwrap(),
            [&b"etc"[..], b"passwd"]
        );
        assert_eq!(components(b"./a//b/./c/").unwrap(), [&b"a"[..], b"b", b"c"]);
        assert!(components(b"./").unwrap().is_empty());
        assert_eq!(components(b"../x"), Err(BadPath::DotDot));
        assert_eq!(components(b"a/../b"), Err(BadPath::DotDot));
        assert_eq!(components(b"a\0b"), Err(BadPath::Nul));
    }

    fn root_fd(path: &Path) -> OwnedFd {
        rustix::fs::open(path, dir_flags(), Mode::empty()).unwrap()
    }

    #[test]
    fn open_dir_creates_missing_parents_and_refuses_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        symlink(outside.path(), root.join("link")).unwrap();
        fs::write(root.join("file"), b"").unwrap();
        let fd = root_fd(&root);

        open_dir(fd.as_fd(), &[b"a", b"b"], true).unwrap();
        assert!(root.join("a/b").is_dir());

        let parts: [&[u8]; 2] = [b"link", b"x"];
        let err = open_dir(fd.as_fd(), &parts, true).unwrap_err();
        assert!(matches!(err, WalkError::Symlink { depth: 1 }), "{err:?}");
        assert!(err.describe(&parts).contains("`link` is a symbolic link"));
        assert!(!outside.path().join("x").exists());

        let err = open_dir(fd.as_fd(), &[b"file", b"x"], true).unwrap_err();
        assert!(matches!(err, WalkError::NotDir { depth: 1 }), "{err:?}");
        let err = open_dir(fd.as_fd(), &[b"none"], false).unwrap_err();
        assert!(matches!(err, WalkError::Missing { depth: 1 }), "{err:?}");
    }

    #[test]
    fn remove_all_at_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), b"x").unwrap();
        let victim = tmp.path().join("victim");
        fs::create_dir_all(victim.join("d/e")).unwrap();
        fs::write(victim.join("d/e/f"), b"").unwrap();
        symlink(outside.path(), victim.join("d/link")).unwrap();
        remove_tree(&victim).unwrap();
        assert!(!victim.exists());
        assert!(outside.path().join("keep").exists());
        // Gone already: fine.
        remove_tree(&victim).unwrap();
    }

    #[test]
    fn remove_tree_never_empties_a_mount() {
        crate::cache::snapshot::testutil::require_root();
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        let mnt = tree.join("a/mnt");
        fs::create_dir_all(&mnt).unwrap();
        rustix::mount::mount(
            "tmpfs",
            &mnt,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap();
        fs::write(mnt.join("precious"), b"").unwrap();
        let below = remove_tree(&tree).unwrap_err();
        let at = remove_tree(&mnt).unwrap_err();
        let precious = mnt.join("precious").exists();
        rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::DETACH).unwrap();
        assert!(precious, "{below} / {at}");
        assert!(below.to_string().contains("another file system"), "{below}");
        assert!(at.to_string().contains("mount point"), "{at}");
        remove_tree(&tree).unwrap();
    }
}
