//! The snapshot store of the native executor: image layers unpacked once each, and the
//! upper directories of steps, kept as overlay lower directories.
//!
//! Layout under `<cache-dir>/snapshots-v1/` (mode 0700: setuid files and device nodes of
//! images are root's business alone):
//!
//! ```text
//! committed/layer-<diff ID hex>/fs          a base layer, unpacked
//! committed/step-<sha256 of key>/fs         a committed step: the upper directory it wrote
//! committed/<name>/info.json                what it is (diff ID or key) and, for a step,
//!                                           the snapshots below it, bottom first
//! active/<random>/{fs,work,rootfs}          a snapshot being written (upper, overlay work
//!                                           directory, mount target)
//! tmp/<random>/                             a layer being unpacked, a snapshot being removed
//! empty/                                    the lower directory of a snapshot on nothing
//! unsynced/<name>                           a step committed before its files were on disk
//! sizes/<name>                               the bytes a committed snapshot takes, measured
//!                                           once (see `prune`)
//! ```
//!
//! Nothing is visible half-written: a layer is unpacked into `tmp/`, checked against its
//! diff ID and renamed into `committed/`; a step is committed by renaming its active
//! directory, upper directory and all, so nothing is copied. Renames never replace: when
//! two builds sharing a cache directory make the same snapshot, the first rename wins and
//! the other build uses it. Directories being written are `flock`ed by their writer and
//! snapshots used as lowers are `flock`ed shared (see `lock`), so a build that was killed
//! leaves nothing a later one mistakes for live ([`SnapshotStore::recover`]), and nothing
//! in use is removed.
//!
//! A snapshot's files are not synced to disk when it is committed. A step's overlay is
//! mounted `volatile`, whose unmount skips overlayfs's `syncfs` of the whole file system
//! (50–100 ms after a `mix compile`, on every step); an unpacked layer is not synced either
//! (0.6 s for the Elixir toolchain's 500 MB, on a cold build's way to its first step). Its
//! `info.json` records the boot instead. Until the machine reboots, the page cache holds
//! whatever is not on disk yet, so the snapshot is sound; after a reboot (a power loss may
//! have dropped writes) a snapshot still marked with an earlier boot is not trusted, only
//! removed, and the step runs (or the layer is unpacked) again.
//! [`SnapshotStore::settle`] clears the mark once a `syncfs` has put the files on disk, so
//! a reboot keeps what was built more than a minute before it.

mod active;
mod apply;
mod beneath;
mod decode;
mod diff;
mod error;
mod lock;
mod mount;
mod prune;
mod recover;
#[cfg(test)]
mod testutil;
mod tree;

pub use active::{ActiveSnapshot, Mounted, MountedSnapshot};

/// Opens (with `create`, making what is missing) the directory `rel` below `root` without
/// following any symlink on the way, for a path a build step's files decide (a cache
/// mount's `source=`): what a RUN left there can never lead outside `root`.
pub fn open_dir_below(
    root: &Path,
    rel: &str,
    create: bool,
) -> std::result::Result<std::os::fd::OwnedFd, String> {
    let root = rustix::fs::open(
        root,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening {}: {e}", root.display()))?;
    let parts = beneath::components(rel.as_bytes()).map_err(|bad| bad.message().to_owned())?;
    beneath::open_dir(std::os::fd::AsFd::as_fd(&root), &parts, create)
        .map_err(|e| e.describe(&parts))
}
pub use diff::{add_upper, write_upper_layer, xattr};
pub use error::{Error, Result};
pub use prune::Pruned;
pub use recover::Recovered;
pub use tree::{ImageTree, TreeOwners};

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use oci_spec::image::{Digest, DigestAlgorithm};
use rustix::fs::{Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use error::IoContext;
use lock::LockedDir;

/// The store's directory under the cache dir; a format change is a new name.
pub const LAYOUT: &str = "snapshots-v1";

const COMMITTED: &str = "committed";
const ACTIVE: &str = "active";
const TMP: &str = "tmp";
const EMPTY: &str = "empty";
const UNSYNCED: &str = "unsynced";
const SIZES: &str = "sizes";
/// How long after its commit [`SnapshotStore::settle`] vouches for a snapshot: the kernel writes
/// dirty data back after 30 s (`vm.dirty_expire_centisecs`), so by then its `syncfs` has
/// little left to write.
const SETTLE_AFTER: Duration = Duration::from_secs(45);
/// Inside a committed snapshot's directory: its tree, and what it is.
const FS: &str = "fs";
const INFO: &str = "info.json";

/// The snapshot store in one cache directory. Cheap to clone; any number of processes may
/// open the same one.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
}

/// A committed snapshot held in use ([`SnapshotStore::lease`]).
#[derive(Debug)]
pub struct Lease {
    _dir: LockedDir,
}

/// A committed snapshot: a directory tree used as an overlay lower directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    name: String,
    path: PathBuf,
    parents: Vec<String>,
}

impl Snapshot {
    /// Its name in the store (`layer-…` or `step-…`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directory tree.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For a step, the names of the snapshots it was written on, bottom first (see
    /// [`SnapshotStore::chain`]); empty for a layer.
    pub fn parents(&self) -> &[String] {
        &self.parents
    }
}

/// `info.json` of a committed snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct Info {
    #[serde(flatten)]
    origin: Origin,
    #[serde(default)]
    parents: Vec<String>,
    /// The boot in which the snapshot was committed with its files not yet synced to disk;
    /// `None` once they are (see the module's doc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unsynced_boot: Option<String>,
}

impl Info {
    /// Committed unsynced in an earlier boot: a crash may have lost some of its writes.
    fn may_have_lost_writes(&self) -> bool {
        self.unsynced_boot
            .as_deref()
            .is_some_and(|boot| boot_id() != Some(boot))
    }
}

/// The kernel's id of this boot; `None` where `/proc` does not tell (then every commit
/// syncs).
fn boot_id() -> Option<&'static str> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
    })
    .as_deref()
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Origin {
    Layer { diff_id: String },
    Step { key: String },
}

impl SnapshotStore {
    /// Opens (creating if needed) the store in `cache_dir`.
    pub fn open(cache_dir: &Path) -> Result<SnapshotStore> {
        fs::create_dir_all(cache_dir).with_path("creating the cache directory", cache_dir)?;
        let root = cache_dir.join(LAYOUT);
        match fs::DirBuilder::new().mode(0o700).create(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_path("creating", &root),
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .with_path("restricting access to", &root)?;
        // Mount options and mountinfo name it absolutely, so clean-up can recognise it.
        let root = root.canonicalize().with_path("resolving", &root)?;
        for dir in [COMMITTED, ACTIVE, TMP, EMPTY, UNSYNCED, SIZES] {
            let path = root.join(dir);
            fs::create_dir_all(&path).with_path("creating", &path)?;
        }
        let empty = root.join(EMPTY);
        fs::set_permissions(&empty, fs::Permissions::from_mode(0o755))
            .with_path("setting the mode of", &empty)?;
        Ok(SnapshotStore { root })
    }

    /// The store's directory (`<cache-dir>/snapshots-v1`, resolved).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The unpacked layer with this diff ID, if the store has it.
    pub fn layer(&self, diff_id: &Digest) -> Result<Option<Snapshot>> {
        let name = layer_name(diff_id)?;
        self.load(
            &name,
            &Origin::Layer {
                diff_id: diff_id.to_string(),
            },
        )
    }

    /// The unpacked layer with this diff ID: the store's, or unpacked from `blob` (a layer
    /// blob compressed as `encoding`) as it streams in. The snapshot appears only once the
    /// whole blob was read and its uncompressed content matched `diff_id`; `blob` is read
    /// to its end, so a reader that checks the compressed digest at the end can stop it.
    /// When another build unpacks the same layer at the same time, both succeed and share
    /// one snapshot.
    pub fn unpack_layer(
        &self,
        diff_id: &Digest,
        encoding: crate::oci::Compression,
        blob: impl Read + Send,
    ) -> Result<Snapshot> {
        if let Some(found) = self.layer(diff_id)? {
            return Ok(found);
        }
        let name = layer_name(diff_id)?;
        let tmp_root = self.root.join(TMP);
        let mut tmp = LockedDir::create(&tmp_root, "unpack-")
            .with_path("creating a directory in", &tmp_root)?;
        let info = Info {
            origin: Origin::Layer {
                diff_id: diff_id.to_string(),
            },
            parents: Vec::new(),
            unsynced_boot: boot_id().map(str::to_owned),
        };
        let unpacked = unpack_into(tmp.path(), diff_id, encoding, blob)
            .and_then(|()| write_info(tmp.path(), &info));
        if let Err(e) = unpacked {
            let _ = beneath::remove_tree(tmp.path());
            return Err(e);
        }
        self.publish_and_load(&mut tmp, name, &info)
    }

    /// The committed snapshot of the step with this cache key, if the store has it.
    pub fn step(&self, key: &str) -> Result<Option<Snapshot>> {
        self.load(&step_name(key), &Origin::Step { key: key.into() })
    }

    /// `top` with every snapshot below it, bottom first: the lowers of a snapshot on top
    /// of `top`.
    pub fn chain(&self, top: &Snapshot) -> Result<Vec<Snapshot>> {
        let mut chain = Vec::with_capacity(top.parents.len() + 1);
        for name in &top.parents {
            let info = self
                .trusted_info(name)?
                .ok_or_else(|| Error::Missing { name: name.clone() })?;
            chain.push(self.snapshot(name, info));
        }
        chain.push(top.clone());
        Ok(chain)
    }

    /// Holds `snapshot` in use until the lease is dropped: no build removes or prunes it
    /// meanwhile. Also marks it used now, for collection by age.
    pub fn lease(&self, snapshot: &Snapshot) -> Result<Lease> {
        let dir = self.root.join(COMMITTED).join(&snapshot.name);
        let lease = LockedDir::try_lock(&dir, false)
            .with_path("leasing snapshot", &dir)?
            .ok_or_else(|| Error::Missing {
                name: snapshot.name.clone(),
            })?;
        let _ = rustix::fs::futimens(lease.fd(), &now());
        Ok(Lease { _dir: lease })
    }

    /// A new active snapshot on top of `lowers` (bottom first; none for `FROM scratch`),
    /// with an empty upper directory. The lowers are leased until it is dropped or
    /// committed.
    pub fn prepare(&self, lowers: &[Snapshot]) -> Result<ActiveSnapshot> {
        let leases = lowers
            .iter()
            .map(|lower| self.lease(lower))
            .collect::<Result<Vec<_>>>()?;
        let active_root = self.root.join(ACTIVE);
        let dir = LockedDir::create(&active_root, "")
            .with_path("creating a directory in", &active_root)?;
        for (name, mode) in [
            (active::UPPER, 0o755),
            (active::WORK, 0o700),
            (active::ROOTFS, 0o755),
        ] {
            let path = dir.path().join(name);
            fs::create_dir(&path).with_path("creating", &path)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .with_path("setting the mode of", &path)?;
        }
        Ok(ActiveSnapshot {
            dir: Some(dir),
            lowers: lowers.to_vec(),
            _leases: leases,
            empty: self.root.join(EMPTY),
        })
    }

    /// The snapshot of step `key` on top of `lowers`, made from the layer the step left
    /// (`blob`, compressed as `encoding`; checked against `diff_id`): a step another
    /// executor ran, or an imported cache holds. OCI whiteouts become overlay whiteouts.
    pub fn step_from_layer(
        &self,
        key: &str,
        lowers: &[Snapshot],
        diff_id: &Digest,
        encoding: crate::oci::Compression,
        blob: impl Read + Send,
    ) -> Result<Snapshot> {
        let active = self.prepare(lowers)?;
        let upper = active.upper();
        // `unpack_into` makes the upper directory itself.
        fs::remove_dir(&upper).with_path("replacing", &upper)?;
        let dir = upper
            .parent()
            .ok_or_else(|| Error::Invalid(format!("{} has no parent", upper.display())))?;
        unpack_into(dir, diff_id, encoding, blob)?;
        self.commit(active, key)
    }

    /// Keeps `active`'s upper directory as the snapshot of the step with cache key `key`
    /// (nothing is copied). If the store already has one for `key` (another build
    /// committed it first), that one is kept and returned.
    pub fn commit(&self, active: ActiveSnapshot, key: &str) -> Result<Snapshot> {
        let (mut dir, parents) = active::into_parts(active)?;
        if dir.path().parent() != Some(&*self.root.join(ACTIVE)) {
            let _ = beneath::remove_tree(dir.path());
            return Err(Error::Invalid(format!(
                "{} is not an active snapshot of the store in {}",
                dir.path().display(),
                self.root.display()
            )));
        }
        let info = Info {
            origin: Origin::Step { key: key.into() },
            parents,
            unsynced_boot: boot_id().map(str::to_owned),
        };
        let name = step_name(key);
        let ready = beneath::remove_tree(&dir.path().join(active::WORK))
            .and_then(|()| beneath::remove_tree(&dir.path().join(active::ROOTFS)))
            .with_path("cleaning up", dir.path())
            .and_then(|()| write_info(dir.path(), &info));
        if let Err(e) = ready {
            let _ = beneath::remove_tree(dir.path());
            return Err(e);
        }
        self.publish_and_load(&mut dir, name, &info)
    }

    /// [`Self::publish`]es a complete directory whose `info.json` is `info`, synced first
    /// only if `info` names no boot (else `settle` is told to sync it later), and returns
    /// the committed snapshot of that name.
    fn publish_and_load(&self, dir: &mut LockedDir, name: String, info: &Info) -> Result<Snapshot> {
        let synced = info.unsynced_boot.is_none();
        self.publish(dir, &name, synced)?;
        if !synced {
            // A to-do list for `settle`: lost, the snapshot is only rebuilt after a reboot.
            let _ = fs::write(self.root.join(UNSYNCED).join(&name), "");
        }
        self.load(&name, &info.origin)?
            .ok_or(Error::Missing { name })
    }

    /// Vouches for the snapshots committed unsynced at least [`SETTLE_AFTER`] ago, after one
    /// `syncfs` of the file system: their `info.json` loses its boot, so they outlive a
    /// reboot. Returns how many. It blocks on the disk: meant for a thread of its own.
    pub fn settle(&self) -> Result<usize> {
        let Some(boot) = boot_id() else {
            return Ok(0);
        };
        let unsynced = self.root.join(UNSYNCED);
        let now = SystemTime::now();
        let mut due = Vec::new();
        for entry in fs::read_dir(&unsynced).with_path("reading", &unsynced)? {
            let entry = entry.with_path("reading", &unsynced)?;
            let committed = entry.metadata().and_then(|m| m.modified());
            if committed.is_ok_and(|at| at + SETTLE_AFTER <= now) {
                due.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        if due.is_empty() {
            return Ok(0);
        }
        rustix::fs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .and_then(|fd| rustix::fs::syncfs(fd.as_fd()))
        .with_path("syncing", &self.root)?;
        let mut settled = 0;
        for name in due {
            // Gone, settled by another build, or from an earlier boot (`load` removes those):
            // nothing to vouch for.
            if let Ok(Some(mut info)) = self.read_info(&name)
                && info.unsynced_boot.as_deref() == Some(boot)
            {
                info.unsynced_boot = None;
                // A new file renamed over the old: readers see one or the other, and a crash
                // leaves the old mark (the snapshot is rebuilt) or an unreadable file (the same).
                let path = self.root.join(COMMITTED).join(&name).join(INFO);
                let replaced = serde_json::to_vec_pretty(&info)
                    .map_err(|e| Error::Invalid(format!("encoding {name}'s info: {e}")))
                    .and_then(|json| replace_file(&path, &json));
                if replaced.is_err() {
                    continue;
                }
                settled += 1;
            }
            let _ = fs::remove_file(unsynced.join(&name));
        }
        Ok(settled)
    }

    /// Removes a committed snapshot. Fails with [`Error::InUse`] while any build leases it
    /// (mounted as a lower, or being removed). Snapshots on top of it are not removed and
    /// can no longer be mounted ([`Self::chain`] reports them broken).
    pub fn remove(&self, snapshot: &Snapshot) -> Result<()> {
        let dir = self.root.join(COMMITTED).join(&snapshot.name);
        if !dir.exists() {
            return Ok(());
        }
        let Some(lock) = LockedDir::try_lock(&dir, true).with_path("locking", &dir)? else {
            return Err(Error::InUse(snapshot.name.clone()));
        };
        self.remove_locked(lock)
    }

    /// Removes the committed snapshot whose directory `lock` holds exclusively.
    fn remove_locked(&self, mut lock: LockedDir) -> Result<()> {
        let dir = lock.path().to_path_buf();
        // Out of sight at once, deleted at leisure (a crash leaves it to `recover`).
        let tmp_root = self.root.join(TMP);
        // An empty directory the rename replaces: a name no other build uses.
        let grave = tempfile::Builder::new()
            .prefix("remove-")
            .tempdir_in(&tmp_root)
            .with_path("creating a directory in", &tmp_root)?
            .keep();
        fs::rename(&dir, &grave).with_path("removing snapshot", &dir)?;
        lock.moved_to(grave.clone());
        if let Some(name) = dir.file_name() {
            // A record left behind is dropped by the next prune.
            let _ = fs::remove_file(self.root.join(SIZES).join(name));
        }
        beneath::remove_tree(&grave).with_path("deleting", &grave)
    }

    /// Moves a locked, complete directory into `committed/name`, unless another build got
    /// there first; then the directory is deleted and theirs is used. With `sync`, its files
    /// are on disk first; without, its `info.json` must name the boot (see the module's doc).
    fn publish(&self, dir: &mut LockedDir, name: &str, sync: bool) -> Result<()> {
        // One that cannot be trusted (an earlier boot's, unsynced) goes, so this one can take
        // its name instead of being dropped for it.
        self.trusted_info(name)?;
        let dest = self.root.join(COMMITTED).join(name);
        let fs_dir = dir.path().join(FS);
        if sync {
            // Durable before it is visible: a power loss must not leave a torn snapshot
            // that later builds would trust.
            rustix::fs::open(
                &fs_dir,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .and_then(|fd| rustix::fs::syncfs(fd.as_fd()))
            .with_path("syncing", &fs_dir)?;
        }
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            dir.path(),
            rustix::fs::CWD,
            &dest,
            RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {
                dir.moved_to(dest);
                Ok(())
            }
            Err(Errno::EXIST | Errno::NOTEMPTY) => {
                let _ = beneath::remove_tree(dir.path());
                Ok(())
            }
            Err(e) => {
                let _ = beneath::remove_tree(dir.path());
                Err(e).with_path("moving a snapshot into place at", &dest)
            }
        }
    }

    fn read_info(&self, name: &str) -> Result<Option<Info>> {
        let path = self.root.join(COMMITTED).join(name).join(INFO);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_path("reading", &path),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Invalid(format!("{} is corrupt: {e}", path.display())))
    }

    fn snapshot(&self, name: &str, info: Info) -> Snapshot {
        Snapshot {
            name: name.to_string(),
            path: self.root.join(COMMITTED).join(name).join(FS),
            parents: info.parents,
        }
    }

    /// `name`'s info, or `None` when it is gone or cannot be trusted: committed unsynced in
    /// an earlier boot, or with an unreadable `info.json` (both what a crash can leave). An
    /// untrusted snapshot is removed, unless a build holds it.
    fn trusted_info(&self, name: &str) -> Result<Option<Info>> {
        match self.read_info(name) {
            Ok(Some(info)) if !info.may_have_lost_writes() => return Ok(Some(info)),
            Ok(None) => return Ok(None),
            Ok(Some(_)) | Err(Error::Invalid(_)) => {}
            Err(e) => return Err(e),
        }
        let dir = self.root.join(COMMITTED).join(name);
        if let Ok(Some(lock)) = LockedDir::try_lock(&dir, true) {
            let _ = self.remove_locked(lock);
        }
        let _ = fs::remove_file(self.root.join(UNSYNCED).join(name));
        Ok(None)
    }

    /// The committed snapshot `name`, checked to be what `origin` says.
    fn load(&self, name: &str, origin: &Origin) -> Result<Option<Snapshot>> {
        let Some(info) = self.trusted_info(name)? else {
            return Ok(None);
        };
        if info.origin != *origin {
            return Err(Error::Invalid(format!(
                "snapshot {name} holds {:?}, not {origin:?}; remove {} to rebuild it",
                info.origin,
                self.root.join(COMMITTED).join(name).display()
            )));
        }
        // Its last use, for `prune`: a directory's mtime moves only here and in `prepare`.
        let dir = self.root.join(COMMITTED).join(name);
        let _ = rustix::fs::utimensat(rustix::fs::CWD, &dir, &now(), rustix::fs::AtFlags::empty());
        Ok(Some(self.snapshot(name, info)))
    }
}

fn unpack_into(
    dir: &Path,
    diff_id: &Digest,
    encoding: crate::oci::Compression,
    blob: impl Read + Send,
) -> Result<()> {
    let fs_dir = dir.join(FS);
    fs::create_dir(&fs_dir).with_path("creating", &fs_dir)?;
    // The root of the image's file system: what the overlay shows as `/`.
    fs::set_permissions(&fs_dir, fs::Permissions::from_mode(0o755))
        .with_path("setting the mode of", &fs_dir)?;
    let root = rustix::fs::open(
        &fs_dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_path("opening", &fs_dir)?;
    let layer = diff_id.to_string();
    decode::unpack_blob(blob, encoding, &layer, |tar| {
        apply::apply(root.as_fd(), tar, &layer, apply::Target::Layer)
    })?;
    Ok(())
}

/// Extracts the tar stream `tar` into the mounted root file system `root` (a step's
/// snapshot, through its overlay mount), as Docker extracts an archive into a container:
/// paths resolve through the root's own symlinks and never leave it, an entry replaces
/// what is there (with `same_kind`, a directory and a non-directory never replace each
/// other: the copy fails), an existing directory takes the entry's owner, mode and time.
/// `what` names the archive in errors. Returns how many entries it had.
pub fn extract_into_root(root: &Path, tar: impl Read, what: &str, same_kind: bool) -> Result<u64> {
    let fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_path("opening", root)?;
    let applied = apply::apply(fd.as_fd(), tar, what, apply::Target::Root { same_kind })?;
    Ok(applied.entries)
}

/// Writes `bytes` to `path` through a new file in the same directory renamed over it:
/// readers see the old file or the new one, never part of one.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(".new-")
        .tempfile_in(dir)
        .with_path("creating a file in", dir)?;
    fs::write(temp.path(), bytes).with_path("writing", temp.path())?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_path("replacing", path)?;
    Ok(())
}

fn write_info(dir: &Path, info: &Info) -> Result<()> {
    let path = dir.join(INFO);
    let json = serde_json::to_vec_pretty(info)
        .map_err(|e| Error::Invalid(format!("encoding {}: {e}", path.display())))?;
    fs::write(&path, json).with_path("writing", &path)
}

fn layer_name(diff_id: &Digest) -> Result<String> {
    if *diff_id.algorithm() != DigestAlgorithm::Sha256 {
        return Err(Error::Invalid(format!(
            "layer {diff_id}: only sha256 diff IDs are supported"
        )));
    }
    Ok(format!("layer-{}", diff_id.digest()))
}

fn step_name(key: &str) -> String {
    format!("step-{}", hex::encode(Sha256::digest(key.as_bytes())))
}

fn now() -> rustix::fs::Timestamps {
    let now = rustix::fs::Timespec {
        tv_sec: 0,
        tv_nsec: rustix::fs::UTIME_NOW,
    };
    rustix::fs::Timestamps {
        last_access: now,
        last_modification: now,
    }
}

#[cfg(test)]
mod tests;
