//! The store with real unpacking, real overlay mounts and real renames (root needed).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::testutil::{TestTar, diff_id, require_root};
use super::*;
use crate::oci::Compression;

fn store() -> (tempfile::TempDir, SnapshotStore) {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(&tmp.path().join("cache")).unwrap();
    (tmp, store)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn unpack(store: &SnapshotStore, tar: &[u8]) -> Snapshot {
    store
        .unpack_layer(&diff_id(tar), Compression::Uncompressed, tar)
        .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A reader that must not be read.
struct Untouchable;

impl Read for Untouchable {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        panic!("the store read a blob it already had");
    }
}

#[test]
fn a_layer_is_unpacked_once_and_found_again() {
    let (_tmp, store) = store();
    let tar = TestTar::new().file("etc/os-release", b"ID=test\n").finish();
    let id = diff_id(&tar);
    assert_eq!(store.layer(&id).unwrap(), None);
    let layer = store
        .unpack_layer(&id, Compression::Gzip, &gzip(&tar)[..])
        .unwrap();
    assert_eq!(layer.name(), format!("layer-{}", id.digest()));
    assert_eq!(
        fs::read(layer.path().join("etc/os-release")).unwrap(),
        b"ID=test\n"
    );
    assert_eq!(store.layer(&id).unwrap().as_ref(), Some(&layer));
    let again = store
        .unpack_layer(&id, Compression::Gzip, Untouchable)
        .unwrap();
    assert_eq!(again, layer);
    assert!(names(&store.root().join(TMP)).is_empty());
    // The store is root's alone; the image's root directory is 0755.
    assert_eq!(fs::metadata(store.root()).unwrap().mode() & 0o777, 0o700);
    assert_eq!(fs::metadata(layer.path()).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn a_layer_that_is_not_its_diff_id_leaves_nothing() {
    let (_tmp, store) = store();
    let tar = TestTar::new().file("f", b"content").finish();
    let other = diff_id(b"something else");
    let err = store
        .unpack_layer(&other, Compression::Uncompressed, &tar[..])
        .unwrap_err();
    assert!(matches!(err, Error::DiffIdMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&diff_id(&tar).to_string()),
        "{err}"
    );
    assert_eq!(store.layer(&other).unwrap(), None);
    assert!(names(&store.root().join(TMP)).is_empty());
    assert!(names(&store.root().join(COMMITTED)).is_empty());

    // A hostile one neither.
    let tar = TestTar::new().file("../escape", b"").finish();
    let err = store
        .unpack_layer(&diff_id(&tar), Compression::Uncompressed, &tar[..])
        .unwrap_err();
    assert!(matches!(err, Error::Entry { .. }), "{err}");
    assert!(names(&store.root().join(TMP)).is_empty());
    assert!(names(&store.root().join(COMMITTED)).is_empty());
}

/// Reads slowly, so two unpacks of the same layer surely overlap.
struct Slow<'a>(&'a [u8]);

impl Read for Slow<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::thread::sleep(std::time::Duration::from_millis(2));
        let n = buf.len().min(self.0.len()).min(4096);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn two_builds_unpacking_one_layer_at_once_share_it() {
    let (_tmp, store) = store();
    let mut tar = TestTar::new();
    for i in 0..40 {
        tar.file(&format!("d/file{i}"), &[i as u8; 3000]);
    }
    let tar = tar.finish();
    let id = diff_id(&tar);
    let results: Vec<Result<Snapshot>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                // Each thread opens the store as its own process would.
                let root = store.root().parent().unwrap().to_path_buf();
                let (id, tar) = (&id, &tar);
                s.spawn(move || {
                    let store = SnapshotStore::open(&root).unwrap();
                    store.unpack_layer(id, Compression::Uncompressed, Slow(tar))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let [a, b]: [Snapshot; 2] = results
        .into_iter()
        .map(|r| r.unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(names(&a.path().join("d")).len(), 40);
    assert_eq!(
        names(&store.root().join(COMMITTED)),
        [format!("layer-{}", id.digest())]
    );
    assert!(names(&store.root().join(TMP)).is_empty());
}

#[test]
fn a_step_is_committed_without_copying_and_its_chain_mounts_again() {
    let (_tmp, store) = store();
    let base = unpack(
        &store,
        &TestTar::new()
            .file("bin/tool", b"v1")
            .file("etc/gone", b"")
            .finish(),
    );
    let active = store.prepare(std::slice::from_ref(&base)).unwrap();
    let upper_inode = fs::metadata(active.upper()).unwrap().ino();
    let target = active.rootfs();
    let mounted = active.mount(&target).unwrap();
    assert_eq!(fs::read(target.join("bin/tool")).unwrap(), b"v1");
    fs::write(target.join("bin/tool"), b"v2").unwrap();
    fs::remove_file(target.join("etc/gone")).unwrap();
    fs::create_dir(target.join("app")).unwrap();
    mounted.unmount().unwrap();
    // The lower is untouched.
    assert_eq!(fs::read(base.path().join("bin/tool")).unwrap(), b"v1");

    let step = store.commit(active, "sha256:step-1").unwrap();
    assert_eq!(fs::metadata(step.path()).unwrap().ino(), upper_inode);
    assert_eq!(step.parents(), [base.name()]);
    assert_eq!(store.step("sha256:step-1").unwrap().as_ref(), Some(&step));
    assert_eq!(store.step("sha256:other").unwrap(), None);
    assert!(names(&store.root().join(ACTIVE)).is_empty());

    let chain = store.chain(&step).unwrap();
    assert_eq!(chain, [base.clone(), step.clone()]);
    let next = store.prepare(&chain).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let mounted = next.mount(outside.path()).unwrap();
    let root = mounted.target();
    assert_eq!(fs::read(root.join("bin/tool")).unwrap(), b"v2");
    assert!(!root.join("etc/gone").exists());
    assert!(root.join("app").is_dir());
    mounted.unmount().unwrap();
    drop(next);
    assert!(names(&store.root().join(ACTIVE)).is_empty());
}

#[test]
fn from_scratch_mounts_an_empty_root() {
    let (_tmp, store) = store();
    let active = store.prepare(&[]).unwrap();
    let mounted = active.mount(&active.rootfs()).unwrap();
    assert!(names(mounted.target()).is_empty());
    fs::write(mounted.target().join("hello"), b"").unwrap();
    mounted.unmount().unwrap();
    let step = store.commit(active, "k").unwrap();
    assert_eq!(names(step.path()), ["hello"]);
    assert!(step.parents().is_empty());
    assert!(names(&store.root().join(EMPTY)).is_empty());
}

#[test]
fn the_first_commit_of_a_key_wins_and_the_second_is_dropped() {
    let (_tmp, store) = store();
    let first = store.prepare(&[]).unwrap();
    let second = store.prepare(&[]).unwrap();
    fs::write(first.upper().join("who"), b"first").unwrap();
    fs::write(second.upper().join("who"), b"second").unwrap();
    let a = store.commit(first, "same key").unwrap();
    let b = store.commit(second, "same key").unwrap();
    assert_eq!(a, b);
    assert_eq!(fs::read(b.path().join("who")).unwrap(), b"first");
    assert!(names(&store.root().join(ACTIVE)).is_empty());
}

#[test]
fn a_snapshot_in_use_is_not_removed() {
    let (_tmp, store) = store();
    let base = unpack(&store, &TestTar::new().file("f", b"").finish());
    let active = store.prepare(std::slice::from_ref(&base)).unwrap();
    let step = store.commit(active, "k").unwrap();

    let using = store.prepare(std::slice::from_ref(&base)).unwrap();
    let err = store.remove(&base).unwrap_err();
    assert!(matches!(err, Error::InUse(_)), "{err}");
    assert!(base.path().join("f").exists());
    drop(using);

    store.remove(&base).unwrap();
    assert!(!base.path().exists());
    assert_eq!(
        store
            .layer(&diff_id(&TestTar::new().file("f", b"").finish()))
            .unwrap(),
        None
    );
    assert!(names(&store.root().join(TMP)).is_empty());
    // What was built on it says so.
    let err = store.chain(&step).unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err}");
    let err = store.prepare(std::slice::from_ref(&base)).unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err}");
    // Removing it twice is fine.
    store.remove(&base).unwrap();
}

/// `n` committed steps, each writing `level` (its number) and `fN`; step 100 deletes `f0`
/// and step 150 brings it back.
fn deep_chain(store: &SnapshotStore, n: usize) -> Vec<Snapshot> {
    let mut chain: Vec<Snapshot> = Vec::new();
    for i in 0..n {
        let active = store.prepare(&chain).unwrap();
        let upper = active.upper();
        fs::write(upper.join("level"), i.to_string()).unwrap();
        fs::write(upper.join(format!("f{i}")), b"").unwrap();
        match i {
            100 => rustix::fs::mknodat(
                rustix::fs::CWD,
                upper.join("f0"),
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::empty(),
                0,
            )
            .unwrap(),
            150 => fs::write(upper.join("f0"), b"back").unwrap(),
            _ => {}
        }
        let step = store.commit(active, &format!("step {i}")).unwrap();
        chain = store.chain(&step).unwrap();
    }
    chain
}

#[test]
fn a_chain_of_200_snapshots_mounts() {
    let (_tmp, store) = store();
    let chain = deep_chain(&store, 200);
    assert_eq!(chain.len(), 200);
    let active = store.prepare(&chain).unwrap();
    let mounted = active.mount(&active.rootfs()).unwrap();
    let root = mounted.target();
    // The topmost lower wins: lowerdir+ order is top first.
    assert_eq!(fs::read_to_string(root.join("level")).unwrap(), "199");
    assert_eq!(fs::read(root.join("f0")).unwrap(), b"back");
    assert!(root.join("f1").exists() && root.join("f199").exists());
    assert_eq!(names(root).len(), 201);
    fs::write(root.join("f199"), b"top").unwrap();
    mounted.unmount().unwrap();
    assert_eq!(fs::read(active.upper().join("f199")).unwrap(), b"top");
}

#[test]
fn without_lowerdir_plus_a_deep_chain_is_a_clear_error() {
    let (_tmp, store) = store();
    let chain = deep_chain(&store, 120);
    // Few lowers fit in mount(2)'s page.
    let shallow = store.prepare(&chain[..3]).unwrap();
    let mounted = shallow
        .mount_with(&shallow.rootfs(), mount::Api::Legacy, false)
        .unwrap();
    assert_eq!(
        fs::read_to_string(mounted.target().join("level")).unwrap(),
        "2"
    );
    mounted.unmount().unwrap();

    let deep = store.prepare(&chain).unwrap();
    let err = deep
        .mount_with(&deep.rootfs(), mount::Api::Legacy, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("120 lower directories"), "{err}");
    assert!(err.contains("4095 bytes"), "{err}");
}

#[test]
fn a_volatile_mount_works_through_either_api_and_marks_its_work_directory() {
    let (_tmp, store) = store();
    let chain = deep_chain(&store, 2);
    for api in [mount::Api::Auto, mount::Api::Legacy] {
        let active = store.prepare(&chain).unwrap();
        let mounted = active.mount_with(&active.rootfs(), api, true).unwrap();
        assert_eq!(
            fs::read_to_string(mounted.target().join("level")).unwrap(),
            "1"
        );
        fs::write(mounted.target().join("x"), b"y").unwrap();
        mounted.unmount().unwrap();
        assert_eq!(fs::read(active.upper().join("x")).unwrap(), b"y", "{api:?}");
        // overlayfs leaves this behind for a volatile mount (and refuses to mount that work
        // directory again until it goes): the mark that the option was really applied.
        assert!(
            active
                .dir()
                .join(active::WORK)
                .join("work/incompat/volatile")
                .exists(),
            "{api:?}"
        );
    }
}

#[test]
fn abandoned_directories_go_and_live_ones_stay() {
    let (_tmp, store) = store();
    let abandoned = store.root().join(TMP).join("unpack-dead");
    fs::create_dir_all(abandoned.join("fs/a")).unwrap();
    let live = store.prepare(&[]).unwrap();
    let mounted = live.mount(&live.rootfs()).unwrap();
    let recovered = store.recover().unwrap();
    assert_eq!(recovered.removed, std::slice::from_ref(&abandoned));
    assert!(recovered.unmounted.is_empty());
    assert!(!abandoned.exists());
    // The live snapshot is still mounted and writable.
    fs::write(mounted.target().join("x"), b"").unwrap();
    mounted.unmount().unwrap();
}

/// Rewrites `name`'s info.json as if it had been committed unsynced in another boot.
fn mark_from_earlier_boot(store: &SnapshotStore, name: &str) {
    let path = store.root().join(COMMITTED).join(name).join(INFO);
    let mut info: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    info["unsynced_boot"] = "00000000-0000-0000-0000-000000000000".into();
    fs::write(&path, serde_json::to_vec(&info).unwrap()).unwrap();
}

fn unsynced_boot(store: &SnapshotStore, name: &str) -> Option<String> {
    store.read_info(name).unwrap().unwrap().unsynced_boot
}

/// Makes `name`'s to-do mark old enough for `settle`.
fn age_mark(store: &SnapshotStore, name: &str) {
    let mark = store.root().join(UNSYNCED).join(name);
    let old = SystemTime::now() - SETTLE_AFTER - Duration::from_secs(1);
    fs::File::options()
        .write(true)
        .open(&mark)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

#[test]
fn a_step_committed_unsynced_is_trusted_in_its_boot_and_dropped_after_a_reboot() {
    let (_tmp, store) = store();
    let base = unpack(&store, &TestTar::new().file("base", b"b").finish());
    // An unpacked layer is not synced either: it is marked like a step.
    assert_eq!(unsynced_boot(&store, base.name()).as_deref(), boot_id());

    let below = store.prepare(std::slice::from_ref(&base)).unwrap();
    // Mounted the way steps run: volatile, so the unmount does not sync.
    let mounted = below.into_mounted().unwrap();
    fs::write(mounted.root().join("first"), b"1").unwrap();
    let below = store.commit(mounted.unmount().unwrap(), "below").unwrap();
    assert_eq!(unsynced_boot(&store, below.name()).as_deref(), boot_id());
    assert_eq!(
        names(&store.root().join(UNSYNCED)),
        [base.name(), below.name()]
    );
    let chain = store.chain(&below).unwrap();
    let top = store.prepare(&chain).unwrap();
    fs::write(top.upper().join("second"), b"2").unwrap();
    let top = store.commit(top, "top").unwrap();
    // In this boot both are found, and the chain mounts.
    assert_eq!(store.step("below").unwrap().as_ref(), Some(&below));
    let chain = store.chain(&top).unwrap();
    assert_eq!(chain.len(), 3);

    // After a reboot, `below` may have lost writes: it is not used, and goes. `top` is on
    // it, so its chain is broken (a miss for the executor) though `top` itself was fine.
    mark_from_earlier_boot(&store, below.name());
    assert_eq!(store.step("below").unwrap(), None);
    assert!(!store.root().join(COMMITTED).join(below.name()).exists());
    assert!(!store.root().join(UNSYNCED).join(below.name()).exists());
    assert!(matches!(store.chain(&top), Err(Error::Missing { .. })));

    // Built again, the step takes the name the untrusted one had.
    let again = store.prepare(std::slice::from_ref(&base)).unwrap();
    fs::write(again.upper().join("first"), b"1").unwrap();
    let again = store.commit(again, "below").unwrap();
    assert_eq!(store.step("below").unwrap().as_ref(), Some(&again));
    mark_from_earlier_boot(&store, again.name());
    let replacement = store.prepare(std::slice::from_ref(&base)).unwrap();
    fs::write(replacement.upper().join("first"), b"1 again").unwrap();
    // Committed over an untrusted snapshot still in place (a build held it when another
    // looked): the untrusted one goes, not the new one.
    let replacement = store.commit(replacement, "below").unwrap();
    assert_eq!(
        fs::read(replacement.path().join("first")).unwrap(),
        b"1 again"
    );

    // An unreadable info.json (what a crash can leave of an unsynced write) is the same.
    let info = store.root().join(COMMITTED).join(top.name()).join(INFO);
    fs::write(&info, b"").unwrap();
    assert_eq!(store.step("top").unwrap(), None);
    assert!(!store.root().join(COMMITTED).join(top.name()).exists());
}

#[test]
fn a_layer_unpacked_in_an_earlier_boot_is_unpacked_again() {
    let (_tmp, store) = store();
    let tar = TestTar::new().file("base", b"b").finish();
    let base = unpack(&store, &tar);
    let step = store.prepare(std::slice::from_ref(&base)).unwrap();
    let step = store.commit(step, "on-base").unwrap();
    assert_eq!(store.layer(&diff_id(&tar)).unwrap().as_ref(), Some(&base));

    mark_from_earlier_boot(&store, base.name());
    assert_eq!(store.layer(&diff_id(&tar)).unwrap(), None);
    assert!(!store.root().join(COMMITTED).join(base.name()).exists());
    // The steps on it lose their chain: the executor runs them again.
    assert!(matches!(store.chain(&step), Err(Error::Missing { .. })));

    let again = unpack(&store, &tar);
    assert_eq!(again.name(), base.name());
    assert_eq!(fs::read(again.path().join("base")).unwrap(), b"b");
    assert_eq!(unsynced_boot(&store, again.name()).as_deref(), boot_id());
}

#[test]
fn settle_vouches_for_steps_once_they_are_old_enough_and_they_survive_a_reboot() {
    let (_tmp, store) = store();
    let fresh = store.prepare(&[]).unwrap();
    fs::write(fresh.upper().join("f"), b"f").unwrap();
    let fresh = store.commit(fresh, "fresh").unwrap();
    let old = store.prepare(&[]).unwrap();
    fs::write(old.upper().join("o"), b"o").unwrap();
    let old = store.commit(old, "old").unwrap();
    // A mark whose snapshot is gone is only tidied away.
    fs::write(store.root().join(UNSYNCED).join("step-gone"), b"").unwrap();
    age_mark(&store, "step-gone");

    // Nothing old enough: no sync, nothing changes.
    assert_eq!(store.settle().unwrap(), 0);
    assert_eq!(unsynced_boot(&store, old.name()).as_deref(), boot_id());

    age_mark(&store, old.name());
    assert_eq!(store.settle().unwrap(), 1);
    assert_eq!(unsynced_boot(&store, old.name()), None);
    assert_eq!(unsynced_boot(&store, fresh.name()).as_deref(), boot_id());
    assert_eq!(names(&store.root().join(UNSYNCED)), [fresh.name()]);
    // Nothing but the info changed, and no temporary file is left beside it.
    assert_eq!(
        names(&store.root().join(COMMITTED).join(old.name())),
        ["fs", "info.json"]
    );

    // A reboot: the settled step stays, the fresh one goes.
    mark_from_earlier_boot(&store, fresh.name());
    let settled = store.read_info(old.name()).unwrap().unwrap();
    assert!(!settled.may_have_lost_writes());
    assert_eq!(store.step("old").unwrap().as_ref(), Some(&old));
    assert_eq!(store.step("fresh").unwrap(), None);
}

#[test]
fn a_step_mount_can_be_mounted_again_after_a_volatile_unmount() {
    let (_tmp, store) = store();
    let active = store.prepare(&[]).unwrap();
    let mounted = active.into_mounted().unwrap();
    fs::write(mounted.root().join("a"), b"a").unwrap();
    let active = mounted.unmount().unwrap();
    let mounted = active.into_mounted().unwrap();
    assert_eq!(fs::read(mounted.root().join("a")).unwrap(), b"a");
    fs::write(mounted.root().join("b"), b"b").unwrap();
    let active = mounted.unmount().unwrap();
    // Both mounts were volatile (overlayfs marks the work directory so).
    assert!(
        active
            .dir()
            .join(active::WORK)
            .join("work/incompat/volatile")
            .exists()
    );
    let step = store.commit(active, "twice").unwrap();
    assert_eq!(names(step.path()), ["a", "b"]);
}
