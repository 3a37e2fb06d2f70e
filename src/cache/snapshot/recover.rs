//! Clean-up after builds that were killed: overlay mounts they left (found in
//! `/proc/self/mountinfo` by their upper directory or mount point inside the store's
//! `active/`) are detached, then their half-written directories are deleted. A directory
//! is abandoned exactly when its lock can be taken (see `lock`), so the live builds of other
//! processes sharing the cache directory keep theirs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::{IoContext, Result};
use super::lock::LockedDir;
use super::{ACTIVE, SnapshotStore, TMP, active, mount};

/// What [`SnapshotStore::recover`] cleaned up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Mount points detached.
    pub unmounted: Vec<PathBuf>,
    /// Abandoned directories deleted (active snapshots, unpacks, removals).
    pub removed: Vec<PathBuf>,
    /// Abandoned directories left because something is still mounted there.
    pub kept: Vec<PathBuf>,
}

/// One line of `/proc/self/mountinfo`, the fields used here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountInfo {
    mount_point: PathBuf,
    fs_type: String,
    upperdir: Option<PathBuf>,
}

impl SnapshotStore {
    /// Detaches the mounts and deletes the directories that killed builds left in the
    /// store. Meant for the start of a build; safe while other builds use the store.
    pub fn recover(&self) -> Result<Recovered> {
        let mut recovered = Recovered::default();
        let active = self.root.join(ACTIVE);

        let mounts = read_mountinfo()?;
        let mut by_owner: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
        for mount in &mounts {
            if let Some(owner) = owner(mount, &active) {
                by_owner
                    .entry(owner)
                    .or_default()
                    .push(mount.mount_point.clone());
            }
        }
        for (owner, mut points) in by_owner {
            // A directory gone, or one whose lock is free, has no live build behind it.
            let stale = !owner.exists()
                || LockedDir::try_lock(&owner, true)
                    .with_path("locking", &owner)?
                    .is_some();
            if !stale {
                continue;
            }
            points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for point in points {
                if mount::detach(&point).is_ok() {
                    recovered.unmounted.push(point);
                }
            }
        }

        let still_mounted = read_mountinfo()?;
        for dir in [active, self.root.join(TMP)] {
            let entries = fs::read_dir(&dir).with_path("reading", &dir)?;
            for entry in entries {
                let path = entry.with_path("reading", &dir)?.path();
                let lock = match LockedDir::try_lock(&path, true) {
                    Ok(Some(lock)) => lock,
                    // Held by a live build, gone, or not a directory imgbuild made.
                    Ok(None) | Err(_) => continue,
                };
                if still_mounted
                    .iter()
                    .any(|m| owner(m, &dir).as_deref() == Some(&*path))
                {
                    recovered.kept.push(path);
                    continue;
                }
                active::remove_dir(&path).with_path("deleting", &path)?;
                drop(lock);
                recovered.removed.push(path);
            }
        }
        Ok(recovered)
    }
}

/// The directory directly below `dir` that a mount belongs to: its upper directory or its
/// mount point is inside it.
fn owner(mount: &MountInfo, dir: &Path) -> Option<PathBuf> {
    let child = |path: &Path| {
        let rest = path.strip_prefix(dir).ok()?;
        let first = rest.components().next()?;
        Some(dir.join(first))
    };
    let by_upper = match mount.fs_type == "overlay" {
        true => mount.upperdir.as_deref().and_then(child),
        false => None,
    };
    by_upper.or_else(|| child(&mount.mount_point))
}

fn read_mountinfo() -> Result<Vec<MountInfo>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).with_path("reading", path)?;
    Ok(parse_mountinfo(&text))
}

/// `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER_OPTIONS`
fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fs_type = right.next()?.to_string();
            let super_options = right.nth(1).unwrap_or_default();
            let upperdir = super_options
                .split(',')
                .find_map(|o| o.strip_prefix("upperdir="))
                .map(|p| PathBuf::from(unescape(p)));
            Some(MountInfo {
                mount_point: PathBuf::from(unescape(mount_point)),
                fs_type,
                upperdir,
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline, `\` (and in options `,` and `=`) as `\ooo`.
fn unescape(field: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
95 22 0:51 / /cache/snapshots-v1/active/ab\\040c/rootfs rw,relatime shared:50 - overlay imgbuild rw,lowerdir+=/x,upperdir=/cache/snapshots-v1/active/ab\\040c/fs,workdir=/cache/snapshots-v1/active/ab\\040c/work,index=off
96 22 0:52 / /elsewhere rw - overlay imgbuild rw,upperdir=/cache/snapshots-v1/active/def/fs,workdir=/w
97 22 0:53 / /tmp rw - tmpfs tmpfs rw,size=10k
";

    #[test]
    fn mountinfo_lines_give_mount_points_and_upper_directories() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts.len(), 4);
        assert_eq!(
            mounts[1].mount_point,
            Path::new("/cache/snapshots-v1/active/ab c/rootfs")
        );
        assert_eq!(
            mounts[1].upperdir.as_deref(),
            Some(Path::new("/cache/snapshots-v1/active/ab c/fs"))
        );
        assert_eq!(mounts[3].fs_type, "tmpfs");
        assert_eq!(mounts[3].upperdir, None);
    }

    #[test]
    fn mounts_belong_to_the_active_directory_they_use() {
        let active = Path::new("/cache/snapshots-v1/active");
        let owners: Vec<_> = parse_mountinfo(SAMPLE)
            .iter()
            .map(|m| owner(m, active))
            .collect();
        assert_eq!(
            owners,
            [
                None,
                Some(active.join("ab c")),
                Some(active.join("def")),
                None
            ]
        );
    }
}
