//! Collection by size budget: the least recently used committed snapshots go first, each
//! with the steps built on it (useless without it), and nothing a build has leased.
//! "Used" is the mtime of a snapshot's directory, moved by every lookup and every
//! `prepare` on top of it. A snapshot's size is measured once and recorded in `sizes/`:
//! a committed snapshot never changes, and walking every tree at the end of each build
//! took 0.15 s after a one-file change to the Elixir showcase (the toolchain alone is
//! 20,000 files), longer than a `COPY` step.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use super::error::{IoContext, Result};
use super::lock::LockedDir;
use super::{COMMITTED, FS, SIZES, SnapshotStore, replace_file};

/// What [`SnapshotStore::prune`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Names of the snapshots removed, oldest first.
    pub removed: Vec<String>,
    /// Bytes (allocated on disk) freed.
    pub freed: u64,
    /// Bytes the remaining snapshots take.
    pub kept: u64,
    /// Snapshots that would have gone but are in use (they or a step on them leased).
    pub in_use: Vec<String>,
}

struct Candidate {
    name: String,
    used: SystemTime,
    size: u64,
    parents: Vec<String>,
}

impl SnapshotStore {
    /// Removes snapshots, least recently used first, until the rest take at most `budget`
    /// bytes. A snapshot goes together with every step built on it; one that is in use,
    /// or has a step on it in use, stays (even over budget).
    pub fn prune(&self, budget: u64) -> Result<Pruned> {
        let committed = self.root.join(COMMITTED);
        let mut candidates = Vec::new();
        for entry in fs::read_dir(&committed).with_path("reading", &committed)? {
            let entry = entry.with_path("reading", &committed)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().with_path("reading", &entry.path())?;
            // Unreadable bookkeeping is no reason to keep a snapshot: it goes like others.
            let parents = self
                .read_info(&name)
                .ok()
                .flatten()
                .map(|info| info.parents)
                .unwrap_or_default();
            candidates.push(Candidate {
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                size: self.size_of(&name, &entry.path().join(FS)),
                name,
                parents,
            });
        }
        self.drop_sizes_except(&candidates);
        candidates.sort_by(|a, b| a.used.cmp(&b.used).then(a.name.cmp(&b.name)));
        let sizes: BTreeMap<&str, u64> = candidates
            .iter()
            .map(|c| (c.name.as_str(), c.size))
            .collect();

        let mut pruned = Pruned {
            kept: sizes.values().sum(),
            ..Pruned::default()
        };
        let mut gone: Vec<&str> = Vec::new();
        for candidate in &candidates {
            if pruned.kept <= budget {
                break;
            }
            if gone.contains(&candidate.name.as_str()) {
                continue;
            }
            // Itself and every step built on it (a step lists its whole chain).
            let group: Vec<&str> = std::iter::once(candidate.name.as_str())
                .chain(
                    candidates
                        .iter()
                        .filter(|c| c.parents.contains(&candidate.name))
                        .map(|c| c.name.as_str()),
                )
                .filter(|name| !gone.contains(name))
                .collect();
            let mut locks = Vec::with_capacity(group.len());
            let mut busy = false;
            for name in &group {
                let dir = committed.join(name);
                match LockedDir::try_lock(&dir, true).with_path("locking", &dir)? {
                    Some(lock) => locks.push(lock),
                    // Removed by another build meanwhile.
                    None if !dir.exists() => {}
                    None => {
                        busy = true;
                        break;
                    }
                }
            }
            if busy {
                pruned.in_use.push(candidate.name.clone());
                continue;
            }
            for lock in locks {
                let name = lock
                    .path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                self.remove_locked(lock)?;
                let size = sizes.get(name.as_str()).copied().unwrap_or(0);
                pruned.freed += size;
                pruned.kept = pruned.kept.saturating_sub(size);
                pruned.removed.push(name);
            }
            gone.extend(group);
        }
        Ok(pruned)
    }

    /// The bytes committed snapshot `name` (tree `fs_dir`) takes: as recorded, else
    /// measured and recorded.
    fn size_of(&self, name: &str, fs_dir: &Path) -> u64 {
        let record = self.root.join(SIZES).join(name);
        if let Some(size) = fs::read_to_string(&record)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return size;
        }
        let size = disk_usage(fs_dir);
        // Best effort: an unrecorded size is measured again.
        let _ = replace_file(&record, size.to_string().as_bytes());
        size
    }

    /// Drops the recorded sizes of snapshots that are gone (removed by a build killed
    /// before it could drop the record).
    fn drop_sizes_except(&self, committed: &[Candidate]) {
        let Ok(records) = fs::read_dir(self.root.join(SIZES)) else {
            return;
        };
        for record in records.flatten() {
            let name = record.file_name();
            if !committed.iter().any(|c| *c.name == *name) {
                let _ = fs::remove_file(record.path());
            }
        }
    }
}

/// Bytes allocated to the tree at `dir`, each inode counted once, never leaving its file
/// system (a snapshot mounted somewhere below is not counted through).
fn disk_usage(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    walkdir::WalkDir::new(dir)
        .same_file_system(true)
        .into_iter()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.nlink() == 1 || m.is_dir() || seen.insert((m.dev(), m.ino())))
        .map(|m| m.blocks() * 512)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::snapshot::Snapshot;
    use crate::cache::snapshot::testutil::require_root;

    /// A committed step of `kib` KiB on `lowers`.
    fn step(store: &SnapshotStore, lowers: &[Snapshot], key: &str, kib: usize) -> Snapshot {
        let active = store.prepare(lowers).unwrap();
        fs::write(active.upper().join("data"), vec![7u8; kib * 1024]).unwrap();
        store.commit(active, key).unwrap()
    }

    fn age(snapshot: &Snapshot, used: i64) {
        let at = rustix::fs::Timespec {
            tv_sec: used,
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: at,
            last_modification: at,
        };
        let dir = snapshot.path().parent().unwrap();
        rustix::fs::utimensat(rustix::fs::CWD, dir, &times, rustix::fs::AtFlags::empty()).unwrap();
    }

    #[test]
    fn the_least_recently_used_go_first_with_what_is_built_on_them() {
        require_root();
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(tmp.path()).unwrap();
        let old = step(&store, &[], "old", 400);
        let on_old = step(&store, &store.chain(&old).unwrap(), "on old", 100);
        let middle = step(&store, &[], "middle", 400);
        let new = step(&store, &[], "new", 400);
        for (snapshot, used) in [
            (&old, 1_000),
            (&on_old, 5_000),
            (&middle, 2_000),
            (&new, 3_000),
        ] {
            age(snapshot, used);
        }

        // Everything fits: nothing goes.
        let pruned = store.prune(10 << 20).unwrap();
        assert!(pruned.removed.is_empty(), "{pruned:?}");
        assert!(pruned.kept >= 1300 << 10, "{pruned:?}");

        // Over budget by a little: the oldest goes, and the step on it with it.
        let pruned = store.prune(pruned.kept - 1).unwrap();
        let mut removed = pruned.removed.clone();
        removed.sort();
        let mut wanted = vec![old.name().to_string(), on_old.name().to_string()];
        wanted.sort();
        assert_eq!(removed, wanted);
        assert!(pruned.freed >= 500 << 10, "{pruned:?}");
        assert!(!old.path().exists() && !on_old.path().exists());
        assert!(middle.path().exists() && new.path().exists());
        assert_eq!(store.step("on old").unwrap(), None);

        // A leased snapshot stays whatever the budget; the next oldest goes instead.
        let using = store.prepare(std::slice::from_ref(&middle)).unwrap();
        let pruned = store.prune(0).unwrap();
        assert_eq!(pruned.removed, [new.name()]);
        assert_eq!(pruned.in_use, [middle.name()]);
        assert!(middle.path().exists());
        drop(using);
        // A lookup is a use: it moves the snapshot's age.
        assert!(store.step("middle").unwrap().is_some());
        let used = fs::metadata(middle.path().parent().unwrap())
            .unwrap()
            .modified()
            .unwrap();
        assert!(
            used.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                > 1_000_000
        );
        let pruned = store.prune(0).unwrap();
        assert_eq!(pruned.removed, [middle.name()]);
        assert_eq!(pruned.kept, 0);
    }

    #[test]
    fn a_snapshots_size_is_measured_once_and_its_record_goes_with_it() {
        require_root();
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(tmp.path()).unwrap();
        let only = step(&store, &[], "only", 100);
        let pruned = store.prune(u64::MAX).unwrap();
        assert!(pruned.kept >= 100 << 10, "{pruned:?}");
        let record = store.root().join(SIZES).join(only.name());
        assert_eq!(
            fs::read_to_string(&record).unwrap(),
            pruned.kept.to_string()
        );

        // From now on the record counts: the tree is not walked again.
        fs::write(&record, "123456789").unwrap();
        assert_eq!(store.prune(u64::MAX).unwrap().kept, 123_456_789);

        // The record of a snapshot that is gone goes, and a removed snapshot's with it.
        let stale = store.root().join(SIZES).join("step-gone");
        fs::write(&stale, "1").unwrap();
        let pruned = store.prune(0).unwrap();
        assert_eq!(pruned.removed, [only.name()]);
        assert_eq!(pruned.freed, 123_456_789);
        assert!(!record.exists() && !stale.exists());
    }
}
