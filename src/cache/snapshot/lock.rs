//! Directory leases through `flock`: a process that dies (even by SIGKILL) drops its locks,
//! so a directory whose lock can be taken has no live owner.
//!
//! * A directory being written (an unpack in progress, an active snapshot) is held
//!   exclusively by its writer; clean-up takes a directory only when it can lock it.
//! * A committed snapshot used as a lower directory is held shared; removing it needs the
//!   exclusive lock, so a snapshot in use is never removed.
//!
//! The lock is on the directory itself, so it follows the directory through a rename.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

/// An open, locked directory.
#[derive(Debug)]
pub(super) struct LockedDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl LockedDir {
    /// Creates a new, uniquely named directory (mode 0700) in `parent`, locked exclusively.
    pub fn create(parent: &Path, prefix: &str) -> io::Result<LockedDir> {
        loop {
            let path = tempfile::Builder::new()
                .prefix(prefix)
                .rand_bytes(12)
                .tempdir_in(parent)?
                .keep();
            // A clean-up in another process may take the new directory for abandoned
            // between its creation and this lock, and remove it; then try another name.
            if let Some(locked) = LockedDir::try_lock(&path, true)?
                && rustix::fs::fstat(&locked.fd)?.st_nlink > 0
            {
                return Ok(locked);
            }
        }
    }

    /// Locks the directory at `path`, exclusively or shared, without waiting. `None` when
    /// another holder conflicts or the directory is gone.
    pub fn try_lock(path: &Path, exclusive: bool) -> io::Result<Option<LockedDir>> {
        let fd = match rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let op = match exclusive {
            true => FlockOperation::NonBlockingLockExclusive,
            false => FlockOperation::NonBlockingLockShared,
        };
        match rustix::fs::flock(&fd, op) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        // Removed between the open and the lock: nothing to hold.
        if rustix::fs::fstat(&fd)?.st_nlink == 0 {
            return Ok(None);
        }
        Ok(Some(LockedDir {
            path: path.to_path_buf(),
            fd,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Records that the directory was renamed to `path` (the lock came along).
    pub fn moved_to(&mut self, path: PathBuf) {
        self.path = path;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let tmp = tempfile::tempdir().unwrap();
        let held = LockedDir::create(tmp.path(), "x-").unwrap();
        assert!(held.path().starts_with(tmp.path()));
        assert!(LockedDir::try_lock(held.path(), true).unwrap().is_none());
        assert!(LockedDir::try_lock(held.path(), false).unwrap().is_none());
        let path = held.path().to_path_buf();
        drop(held);

        let a = LockedDir::try_lock(&path, false).unwrap().unwrap();
        let b = LockedDir::try_lock(&path, false).unwrap().unwrap();
        assert!(LockedDir::try_lock(&path, true).unwrap().is_none());
        drop((a, b));
        assert!(LockedDir::try_lock(&path, true).unwrap().is_some());
        assert!(
            LockedDir::try_lock(&tmp.path().join("gone"), true)
                .unwrap()
                .is_none()
        );
    }

    /// What `try_lock` relies on to tell a directory removed under it.
    #[test]
    fn a_removed_directory_has_no_links_left() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        let fd = rustix::fs::open(&dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(rustix::fs::fstat(&fd).unwrap().st_nlink, 0);
    }
}
