//! The temporary directory a base image is built in (`CACHE/base-build/NAME-PID-XXXXXX`,
//! holding `rootfs/` and the layer's `blobs/`), and deleting it safely.
//!
//! debootstrap and the chroot steps mount `/proc`, `/sys` and `/dev` inside the root
//! filesystem. They run in a private mount namespace (see `rootfs`), so those mounts die
//! with them; deleting still checks that nothing is mounted below the directory, and never
//! descends into another file system, because deleting through a bind mount of `/dev` or
//! `/sys` would delete the host's.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Where build directories live under the cache directory.
const BUILD_DIR: &str = "base-build";

pub struct WorkDir {
    path: PathBuf,
    removed: bool,
}

impl WorkDir {
    /// Creates a fresh build directory for recipe `name`, after removing those left behind
    /// by builds whose process is gone (killed, machine restarted).
    pub fn create(cache_dir: &Path, name: &str) -> anyhow::Result<WorkDir> {
        let parent = cache_dir.join(BUILD_DIR);
        fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        remove_abandoned(&parent);
        let path = tempfile::Builder::new()
            .prefix(&format!("{name}-{}-", std::process::id()))
            .tempdir_in(&parent)
            .with_context(|| format!("creating a build directory in {}", parent.display()))?
            .keep();
        Ok(WorkDir {
            path,
            removed: false,
        })
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root filesystem debootstrap fills (not created: debootstrap wants to make it).
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    /// Where the layer blob is written.
    pub fn blobs(&self) -> PathBuf {
        self.path.join("blobs")
    }

    /// Deletes the root filesystem only (the layer is written; the blobs are still needed).
    pub fn remove_rootfs(&self) -> anyhow::Result<()> {
        remove_safely(&self.rootfs())
    }

    /// Deletes everything, reporting what went wrong.
    pub fn remove(mut self) -> anyhow::Result<()> {
        self.removed = true;
        remove_safely(&self.path)
    }
}

impl Drop for WorkDir {
    /// On an early return or a panic: best effort, errors cannot be reported here.
    fn drop(&mut self) {
        if !self.removed {
            let _ = remove_safely(&self.path);
        }
    }
}

/// Removes build directories whose owning process no longer runs. The pid is part of the
/// name; a directory whose name has none is left alone.
fn remove_abandoned(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = remove_safely(&entry.path());
        }
    }
}

/// Mount points at or below `dir`, deepest first, from `/proc/self/mountinfo`.
pub fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(found)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes.get(i) == Some(&b'\\') && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.extend(bytes.get(i).copied());
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts what is still mounted below `dir` (lazily, as `umount -l` does), then deletes
/// `dir` without ever leaving its file system. Refuses if a mount remains.
pub fn remove_safely(dir: &Path) -> anyhow::Result<()> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for mount in mounts_under(dir).context("reading /proc/self/mountinfo")? {
        // Ignored here: whether it worked is checked just below.
        let _ = rustix::mount::unmount(&mount, rustix::mount::UnmountFlags::DETACH);
    }
    let left = mounts_under(dir).context("reading /proc/self/mountinfo")?;
    if let Some(first) = left.first() {
        bail!(
            "not deleting {}: {} is still mounted there; unmount it (umount -l) and delete the directory by hand",
            dir.display(),
            first.display()
        );
    }
    if !meta.is_dir() {
        return fs::remove_file(dir).with_context(|| format!("deleting {}", dir.display()));
    }
    remove_tree(dir, meta.dev()).with_context(|| format!("deleting {}", dir.display()))?;
    fs::remove_dir(dir).with_context(|| format!("deleting {}", dir.display()))
}

/// Deletes the contents of `dir`. Written by hand because `std::fs::remove_dir_all` crosses
/// into other file systems; this one stops at any directory on a device other than `dev`.
fn remove_tree(dir: &Path, dev: u64) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            if meta.dev() != dev {
                return Err(io::Error::other(format!(
                    "{} is on another file system (a mount?); not deleting through it",
                    path.display()
                )));
            }
            remove_tree(&path, dev)?;
            fs::remove_dir(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), "/a b\\c");
        assert_eq!(unescape_mountinfo(r"/plain\"), "/plain\\");
        assert_eq!(unescape_mountinfo(r"/x\09"), "/x\\09");
    }

    #[test]
    fn removes_a_tree_with_odd_entries() {
        let cache = tempfile::tempdir().unwrap();
        let work = WorkDir::create(cache.path(), "t").unwrap();
        let root = work.rootfs();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("a/etc")).unwrap();
        std::os::unix::fs::symlink("missing", root.join("dangling")).unwrap();
        // A read-only directory does not stop root, nor the owner of the parent.
        fs::create_dir(root.join("ro")).unwrap();
        let path = work.path().to_path_buf();
        work.remove().unwrap();
        assert!(!path.exists());
        // The symlink was removed, not followed.
        assert!(Path::new("/etc/passwd").exists());
    }

    #[test]
    fn a_dropped_workdir_is_removed() {
        let cache = tempfile::tempdir().unwrap();
        let path = {
            let work = WorkDir::create(cache.path(), "t").unwrap();
            fs::create_dir_all(work.rootfs().join("x")).unwrap();
            work.path().to_path_buf()
        };
        assert!(!path.exists());
    }

    #[test]
    fn abandoned_directories_are_swept() {
        let cache = tempfile::tempdir().unwrap();
        let parent = cache.path().join(BUILD_DIR);
        // pid_max is at most 2^22: this pid cannot run.
        let stale = parent.join("slim-99999999-abc123");
        let foreign = parent.join("not-ours");
        fs::create_dir_all(stale.join("rootfs/etc")).unwrap();
        fs::create_dir_all(&foreign).unwrap();
        let work = WorkDir::create(cache.path(), "slim").unwrap();
        assert!(!stale.exists());
        assert!(foreign.exists());
        assert!(work.path().exists());
    }

    #[test]
    fn another_device_stops_the_deletion() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let meta = fs::metadata(dir.path()).unwrap();
        // As if `sub` were a mount point of another file system.
        let err = remove_tree(dir.path(), meta.dev() + 1).unwrap_err();
        assert!(err.to_string().contains("another file system"), "{err}");
        assert!(dir.path().join("sub").exists());
    }

    #[test]
    fn mounts_below_are_unmounted_not_deleted_through() {
        // Root only (the tests run as root, in CI too): a tmpfs mounted in the tree, as a
        // leftover /proc mount would be. Its file must vanish with the unmount, and the
        // mount point directory is then deleted like any other.
        let cache = tempfile::tempdir().unwrap();
        let work = WorkDir::create(cache.path(), "t").unwrap();
        let proc_dir = work.rootfs().join("proc");
        fs::create_dir_all(&proc_dir).unwrap();
        rustix::mount::mount(
            "tmpfs",
            &proc_dir,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap();
        fs::write(proc_dir.join("on-tmpfs"), "x").unwrap();
        assert_eq!(mounts_under(work.path()).unwrap(), vec![proc_dir]);
        let path = work.path().to_path_buf();
        work.remove().unwrap();
        assert!(!path.exists());
        assert!(mounts_under(&path).unwrap().is_empty());
    }
}
