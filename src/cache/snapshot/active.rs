//! Active snapshots: a new upper directory (and its overlay work directory) on top of a
//! chain of committed snapshots, mounted where a step runs, then committed under the
//! step's key or dropped.

use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::Errno;

use super::error::{Error, Result};
use super::lock::LockedDir;
use super::mount::{self, Api, Overlay};
use super::{Snapshot, beneath};

/// Where, inside an active snapshot's directory, its parts live.
pub(super) const UPPER: &str = "fs";
pub(super) const WORK: &str = "work";
pub(super) const ROOTFS: &str = "rootfs";

/// A snapshot being written: created by [`super::SnapshotStore::prepare`], turned into a
/// committed snapshot by [`super::SnapshotStore::commit`]. Dropped without a commit, its
/// directories are deleted.
///
/// While it exists, its directory is locked (a build that finds it cannot take it for
/// abandoned) and every lower snapshot is leased (none can be removed under it).
#[derive(Debug)]
pub struct ActiveSnapshot {
    /// `None` once committed.
    pub(super) dir: Option<LockedDir>,
    pub(super) lowers: Vec<Snapshot>,
    /// Shared locks on the lowers' directories.
    pub(super) _leases: Vec<super::Lease>,
    /// The store's empty directory, the lower of a snapshot on nothing (`FROM scratch`).
    pub(super) empty: PathBuf,
}

impl ActiveSnapshot {
    pub(super) fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// The upper directory: where everything written through the mount lands.
    pub fn upper(&self) -> PathBuf {
        self.dir().join(UPPER)
    }

    /// An empty directory inside the snapshot, meant as its mount target (clean-up after a
    /// killed build finds mounts there as well as anywhere else).
    pub fn rootfs(&self) -> PathBuf {
        self.dir().join(ROOTFS)
    }

    /// The snapshots below, bottom first.
    pub fn lowers(&self) -> &[Snapshot] {
        &self.lowers
    }

    /// Removes directory `path` (relative to the root) from the upper directory when
    /// overlayfs only copied it up: it holds nothing, is not opaque, and the lowers show a
    /// directory there with the same mode and owner. Returns whether it was removed. Call
    /// it unmounted. (A runtime that makes and removes mount points in `/etc` leaves such
    /// a directory; the engine's own mount points never touch the image, so its diff has
    /// none.)
    pub fn drop_untouched_dir(&self, path: &str) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let upper = self.upper().join(path);
        let Ok(meta) = std::fs::symlink_metadata(&upper) else {
            return Ok(false);
        };
        let empty = meta.is_dir()
            && std::fs::read_dir(&upper)
                .map_err(|e| Error::Io {
                    context: format!("reading {}", upper.display()),
                    source: e,
                })?
                .next()
                .is_none();
        let opaque =
            rustix::fs::lgetxattr(&upper, super::apply::OPAQUE_XATTR, &mut [0u8; 4][..]).is_ok();
        if !empty || opaque {
            return Ok(false);
        }
        let below = self
            .lowers
            .iter()
            .rev()
            .find_map(|lower| std::fs::symlink_metadata(lower.path().join(path)).ok());
        let same = below.is_some_and(|l| {
            l.is_dir() && l.mode() == meta.mode() && (l.uid(), l.gid()) == (meta.uid(), meta.gid())
        });
        if !same {
            return Ok(false);
        }
        std::fs::remove_dir(&upper).map_err(|e| Error::Io {
            context: format!("removing {}", upper.display()),
            source: e,
        })?;
        Ok(true)
    }

    /// Mounts the snapshot (an overlay of the lowers and the upper directory) at `target`,
    /// an existing directory. Unmounted by [`Mounted::unmount`], or detached when dropped.
    pub fn mount(&self, target: &Path) -> Result<Mounted<'_>> {
        self.mount_with(target, Api::Auto, false)
    }

    /// Mounts like [`mount`](Self::mount), for writes that will be thrown away: the unmount
    /// does not sync the upper file system (overlayfs `volatile`, Linux 5.10 or later;
    /// an older kernel refuses the mount). The overlay probe uses it.
    pub fn mount_volatile(&self, target: &Path) -> Result<Mounted<'_>> {
        self.mount_with(target, Api::Auto, true)
    }

    pub(super) fn mount_with(
        &self,
        target: &Path,
        api: Api,
        volatile: bool,
    ) -> Result<Mounted<'_>> {
        self.overlay_mount(target, api, volatile)?;
        Ok(Mounted {
            target: Some(target.to_path_buf()),
            _snapshot: PhantomData,
        })
    }

    /// Mounts the snapshot at its own [`rootfs`](Self::rootfs), the mount owning it: for a
    /// step that runs on it, or a stage read by `COPY --from`.
    ///
    /// The mount is `volatile` where the kernel has it (Linux 5.10+): its unmount does not
    /// sync the file system, and a commit records the boot instead (see the store's doc).
    pub fn into_mounted(self) -> Result<MountedSnapshot> {
        let target = self.rootfs();
        self.overlay_mount_volatile_if_possible(&target)?;
        Ok(MountedSnapshot {
            active: Some(self),
            target,
        })
    }

    fn overlay_mount_volatile_if_possible(&self, target: &Path) -> Result<()> {
        static REFUSED: AtomicBool = AtomicBool::new(false);
        if !REFUSED.load(Ordering::Relaxed) {
            // A volatile mount leaves `work/incompat/volatile` in its work directory, and
            // overlayfs refuses that work directory again while it is there: gone, the
            // snapshot can be mounted again in this boot (its page cache is the truth until
            // a reboot).
            let _ = beneath::remove_tree(&self.dir().join(WORK).join("work/incompat"));
            match self.overlay_mount(target, Api::Auto, true) {
                Ok(()) => return Ok(()),
                // Older kernels do not know the option; any other error repeats below.
                Err(_) => REFUSED.store(true, Ordering::Relaxed),
            }
        }
        self.overlay_mount(target, Api::Auto, false)
    }

    fn overlay_mount(&self, target: &Path, api: Api, volatile: bool) -> Result<()> {
        let upper = self.upper();
        let work = self.dir().join(WORK);
        let mut lowers_top_first: Vec<&Path> = self.lowers.iter().rev().map(|s| s.path()).collect();
        if lowers_top_first.is_empty() {
            lowers_top_first.push(&self.empty);
        }
        let overlay = Overlay {
            lowers_top_first,
            upper: &upper,
            work: &work,
            volatile,
        };
        mount::mount(&overlay, target, api)
    }
}

/// An active snapshot mounted at its own root: [`ActiveSnapshot::into_mounted`]. Dropped,
/// the mount is detached and the snapshot dropped.
#[derive(Debug)]
pub struct MountedSnapshot {
    /// `None` once unmounted.
    active: Option<ActiveSnapshot>,
    target: PathBuf,
}

impl MountedSnapshot {
    /// Where the snapshot's file system is.
    pub fn root(&self) -> &Path {
        &self.target
    }

    /// Unmounts, giving the snapshot back to be committed or dropped.
    pub fn unmount(mut self) -> Result<ActiveSnapshot> {
        let unmounted = mount::unmount(&self.target);
        if unmounted.is_err() {
            // Still busy: detach it so the snapshot can be committed or removed.
            let _ = mount::detach(&self.target);
        }
        let active = self
            .active
            .take()
            .ok_or_else(|| Error::Invalid("the snapshot was already unmounted".into()))?;
        unmounted.map(|()| active)
    }
}

impl Drop for MountedSnapshot {
    fn drop(&mut self) {
        if self.active.is_some() {
            let _ = mount::detach(&self.target);
        }
    }
}

impl Drop for ActiveSnapshot {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            // Fails (and leaves the directory to the next clean-up) if still mounted.
            let _ = remove_dir(dir.path());
        }
    }
}

/// Deletes an active snapshot's directory; refuses while its `rootfs` is a mount point, so
/// a leaked mount never has its upper directory deleted from under it.
pub(super) fn remove_dir(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir(dir.join(ROOTFS)) {
        Err(e) if e.raw_os_error() == Some(Errno::BUSY.raw_os_error()) => return Err(e),
        // Gone, removed, or holding what someone wrote there unmounted: deleted below.
        _ => {}
    }
    beneath::remove_tree(dir)
}

/// An active snapshot mounted somewhere. It borrows the snapshot, so a snapshot cannot be
/// committed or dropped while mounted.
#[derive(Debug)]
#[must_use = "dropping it detaches the mount at once"]
pub struct Mounted<'a> {
    target: Option<PathBuf>,
    _snapshot: PhantomData<&'a ActiveSnapshot>,
}

impl Mounted<'_> {
    pub fn target(&self) -> &Path {
        self.target.as_deref().unwrap_or(Path::new(""))
    }

    /// Unmounts, waiting briefly for processes that still use it to finish exiting.
    pub fn unmount(mut self) -> Result<()> {
        match self.target.take() {
            Some(target) => mount::unmount(&target).inspect_err(|_| {
                // Still busy: detach it so the snapshot can be committed or removed.
                let _ = mount::detach(&target);
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            let _ = mount::detach(&target);
        }
    }
}

/// The active snapshot's directory for committing: its lock, its lowers' names.
pub(super) fn into_parts(mut active: ActiveSnapshot) -> Result<(LockedDir, Vec<String>)> {
    let dir = active
        .dir
        .take()
        .ok_or_else(|| Error::Invalid("the snapshot was already committed".into()))?;
    let parents = active.lowers.iter().map(|s| s.name().to_string()).collect();
    Ok((dir, parents))
}
