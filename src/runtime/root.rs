//! Paths inside a root file system, resolved as a process chrooted there would resolve
//! them: `openat2(RESOLVE_IN_ROOT)` keeps every symlink (absolute or `..`) inside the root,
//! so a hostile image's `/etc/passwd -> /etc/shadow` or `/app -> /` never reaches the host.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps};
use rustix::io::Errno;

/// A directory used as `/`.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// What `openat2` resolves with: inside the root, and no `/proc/self/fd`-style magic links
/// (which could point anywhere).
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// How often an `openat2` that failed with `EAGAIN` (a rename raced the lookup) is retried.
const RETRIES: usize = 16;

impl Root {
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_owned(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `path` (absolute or not, always taken from the root) with `flags`.
    fn open_at(&self, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
        let relative = path.trim_start_matches('/');
        let relative = if relative.is_empty() { "." } else { relative };
        let mut attempts = 0;
        loop {
            match rustix::fs::openat2(
                &self.fd,
                relative,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                IN_ROOT,
            ) {
                Err(Errno::AGAIN) if attempts < RETRIES => attempts += 1,
                result => return result.map_err(io::Error::from),
            }
        }
    }

    /// The contents of the regular file at `path`, or `None` when nothing is there. A file
    /// of more than `limit` bytes, or something other than a regular file, is an error.
    pub(crate) fn read_small_file(&self, path: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let fd = match self.open_at(path, OFlags::RDONLY | OFlags::NOCTTY) {
            Ok(fd) => fd,
            Err(err) if is_missing(&err) => return Ok(None),
            Err(err) => return Err(err),
        };
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(io::Error::other(format!("{path} is not a regular file")));
        }
        let mut contents = Vec::new();
        std::fs::File::from(fd)
            .take(limit + 1)
            .read_to_end(&mut contents)?;
        if contents.len() as u64 > limit {
            return Err(io::Error::other(format!(
                "{path} is larger than {limit} bytes"
            )));
        }
        Ok(Some(contents))
    }

    /// Whether anything (a symlink counts, dangling or not) is at `path`. Errors other than
    /// "not there" count as there, so callers that act on absence stay cautious.
    pub(crate) fn exists(&self, path: &str) -> bool {
        match self.open_at(path, OFlags::PATH | OFlags::NOFOLLOW) {
            Ok(_) => true,
            Err(err) => !is_missing(&err),
        }
    }

    /// Creates the directory `path` and each missing directory above it, owned by
    /// `uid:gid` with mode 0755, as BuildKit creates a missing working directory. An
    /// existing non-directory on the way is left for the runtime to report.
    pub(crate) fn create_dir_all(&self, path: &str, uid: u32, gid: u32) -> io::Result<()> {
        let components: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        for depth in 1..=components.len() {
            let prefix = components[..depth].join("/");
            match self.open_at(&prefix, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(_) => continue,
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => return Ok(()),
                Err(err) => return Err(err),
            }
            let name = components[depth - 1];
            let parent = self.open_at(&components[..depth - 1].join("/"), OFlags::PATH)?;
            rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755))?;
            let dir = rustix::fs::openat(
                &parent,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            rustix::fs::fchown(
                &dir,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
            // Exactly 0755, whatever imgbuild's umask.
            rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o755))?;
        }
        Ok(())
    }

    /// Removes `path` if it is an empty regular file (a mount point the runtime created for a
    /// file it mounted there) and gives its directory back its times, so that directory reads
    /// as unchanged. Returns whether it removed something.
    pub(crate) fn remove_empty_file(&self, path: &str) -> io::Result<bool> {
        let trimmed = path.trim_end_matches('/');
        let (parent, name) = match trimmed.rsplit_once('/') {
            Some((parent, name)) => (parent, name),
            None => ("", trimmed),
        };
        if name.is_empty() || name == "." || name == ".." {
            return Ok(false);
        }
        let parent = match self.open_at(parent, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(err) if is_missing(&err) => return Ok(false),
            Err(err) => return Err(err),
        };
        let stat = match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(false),
            Err(err) => return Err(err.into()),
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile || stat.st_size != 0 {
            return Ok(false);
        }
        let before = rustix::fs::fstat(&parent)?;
        rustix::fs::unlinkat(&parent, name, AtFlags::empty())?;
        let times = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: before.st_atime,
                tv_nsec: before.st_atime_nsec as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: before.st_mtime,
                tv_nsec: before.st_mtime_nsec as _,
            },
        };
        rustix::fs::futimens(&parent, &times)?;
        Ok(true)
    }
}

fn is_missing(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/real"), "inside").unwrap();
        // Absolute and `..` links both stay under the root.
        symlink(outside.path().join("secret"), dir.path().join("etc/abs")).unwrap();
        symlink("../../../../../etc/real", dir.path().join("etc/rel")).unwrap();
        let root = Root::open(dir.path()).unwrap();

        assert_eq!(root.read_small_file("/etc/abs", 100).unwrap(), None);
        assert_eq!(
            root.read_small_file("/etc/rel", 100).unwrap().as_deref(),
            Some(&b"inside"[..])
        );
        assert!(root.exists("/etc/abs"), "the dangling link itself is there");
        assert!(!root.exists("/etc/nothing"));
        assert!(!root.exists("/etc/real/below"));
    }

    #[test]
    fn small_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![b'x'; 11]).unwrap();
        std::fs::create_dir(dir.path().join("dir")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert!(root.read_small_file("big", 10).is_err());
        assert_eq!(root.read_small_file("big", 11).unwrap().unwrap().len(), 11);
        assert!(root.read_small_file("dir", 10).is_err());
    }

    #[test]
    fn created_directories_belong_to_the_user_and_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        // On the host this link is the host's `/`; in the root it is the root.
        symlink("/", dir.path().join("escape")).unwrap();
        let name = format!("imgbuild-root-test-{}", std::process::id());
        let root = Root::open(dir.path()).unwrap();

        root.create_dir_all(&format!("/escape/{name}/./b"), 1234, 5678)
            .unwrap();

        assert!(
            !Path::new("/").join(&name).exists(),
            "nothing made on the host"
        );
        for created in [name.clone(), format!("{name}/b")] {
            let meta = std::fs::metadata(dir.path().join(&created)).unwrap();
            assert!(meta.is_dir());
            assert_eq!((meta.uid(), meta.gid()), (1234, 5678), "{created}");
            assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "{created}");
        }
        // What exists is left alone.
        let before = std::fs::metadata(dir.path()).unwrap();
        root.create_dir_all("/", 1, 1).unwrap();
        assert_eq!(std::fs::metadata(dir.path()).unwrap().uid(), before.uid());
    }

    #[test]
    fn a_dangling_link_on_the_way_is_an_error_not_a_directory_elsewhere() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        symlink(outside.path().join("made"), dir.path().join("app")).unwrap();
        let root = Root::open(dir.path()).unwrap();

        assert!(root.create_dir_all("/app/src", 0, 0).is_err());
        assert!(!outside.path().join("made").exists());
    }

    #[test]
    fn only_empty_files_are_removed_and_the_directory_keeps_its_times() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(etc.join("hosts"), "").unwrap();
        std::fs::write(etc.join("kept"), "x").unwrap();
        std::fs::create_dir(etc.join("empty-dir")).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::open(&etc)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let root = Root::open(dir.path()).unwrap();

        assert!(root.remove_empty_file("/etc/hosts").unwrap());
        assert!(!root.remove_empty_file("/etc/kept").unwrap());
        assert!(!root.remove_empty_file("/etc/empty-dir").unwrap());
        assert!(!root.remove_empty_file("/etc/gone").unwrap());
        assert!(!root.remove_empty_file("/nowhere/x").unwrap());

        assert!(!etc.join("hosts").exists());
        assert!(etc.join("kept").exists() && etc.join("empty-dir").exists());
        assert_eq!(std::fs::metadata(&etc).unwrap().modified().unwrap(), old);
    }
}
