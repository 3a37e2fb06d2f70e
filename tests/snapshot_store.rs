//! The snapshot store across processes: a build killed with SIGKILL while its snapshots
//! are mounted leaves mounts and directories that the next build's `recover` cleans up,
//! without touching the live snapshots of a build still running. Needs root and overlayfs
//! (CI runs as root); fails, never skips, without them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use imgbuild::cache::snapshot::SnapshotStore;
use imgbuild::oci::Compression;
use sha2::{Digest as _, Sha256};

const TEST: &str = "a_killed_build_leaves_nothing_the_next_one_does_not_clean";
/// Set in the child process: the cache directory it mounts snapshots in.
const CHILD_CACHE: &str = "IMGBUILD_TEST_SNAPSHOT_CHILD_CACHE";
/// Set in the child process: a directory outside the store it also mounts on.
const CHILD_TARGET: &str = "IMGBUILD_TEST_SNAPSHOT_CHILD_TARGET";

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the snapshot store tests need root (overlay mounts); run them as root, as CI does"
    );
}

fn layer_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_size(5);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, "etc/hello", &b"hello"[..])
        .unwrap();
    builder.into_inner().unwrap()
}

fn open_with_layer(cache: &Path) -> (SnapshotStore, imgbuild::cache::snapshot::Snapshot) {
    let store = SnapshotStore::open(cache).unwrap();
    let tar = layer_tar();
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&tar)))
        .parse()
        .unwrap();
    let layer = store
        .unpack_layer(&diff_id, Compression::Uncompressed, &tar[..])
        .unwrap();
    (store, layer)
}

/// The child: mounts two snapshots (one inside the store, one outside), says so, waits to
/// be killed.
fn child(cache: &Path, target: &Path) -> ! {
    let (store, layer) = open_with_layer(cache);
    let inside = store.prepare(std::slice::from_ref(&layer)).unwrap();
    let outside = store.prepare(std::slice::from_ref(&layer)).unwrap();
    let _a = inside.mount(&inside.rootfs()).unwrap();
    let _b = outside.mount(target).unwrap();
    fs::write(inside.rootfs().join("written"), b"by the child").unwrap();
    fs::write(cache.join("ready"), b"").unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

fn dir_names(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
}

#[test]
fn a_killed_build_leaves_nothing_the_next_one_does_not_clean() {
    if let (Some(cache), Some(target)) = (
        std::env::var_os(CHILD_CACHE),
        std::env::var_os(CHILD_TARGET),
    ) {
        child(Path::new(&cache), Path::new(&target));
    }
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let target = tmp.path().join("elsewhere");
    fs::create_dir_all(&cache).unwrap();
    fs::create_dir(&target).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_CACHE, &cache)
        .env(CHILD_TARGET, &target)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !cache.join("ready").exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("the child build ended early ({status}): {err}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the child build did not mount its snapshots within a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let store = SnapshotStore::open(&cache).unwrap();
    let active = store.root().join("active");
    let childs = dir_names(&active);
    assert_eq!(childs.len(), 2, "the child's two active snapshots");

    // SIGKILL: no destructor runs, the mounts stay.
    child.kill().unwrap();
    child.wait().unwrap();
    let stale: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|p| p == &target || childs.iter().any(|c| p.starts_with(c)))
        .collect();
    assert_eq!(
        stale.len(),
        2,
        "the killed build's mounts are left: {stale:?}"
    );

    // A build that is still running, in this process.
    let (_, layer) = open_with_layer(&cache);
    let live = store.prepare(std::slice::from_ref(&layer)).unwrap();
    let live_mount = live.mount(&live.rootfs()).unwrap();

    let recovered = store.recover().unwrap();
    let mut unmounted = recovered.unmounted.clone();
    unmounted.sort();
    let mut expected = stale.clone();
    expected.sort();
    assert_eq!(unmounted, expected);
    let mut removed = recovered.removed.clone();
    removed.sort();
    assert_eq!(removed, childs);
    assert!(recovered.kept.is_empty(), "{recovered:?}");

    let now = mount_points();
    assert!(stale.iter().all(|p| !now.contains(p)), "{now:?}");
    assert!(now.contains(&live.rootfs()), "the live build's mount stays");
    assert_eq!(
        fs::read(live.rootfs().join("etc/hello")).unwrap(),
        b"hello",
        "and still works"
    );
    assert_eq!(
        dir_names(&active).len(),
        1,
        "only the live build's snapshot is left"
    );
    assert!(dir_names(&target).is_empty());
    live_mount.unmount().unwrap();
    drop(live);
    assert!(dir_names(&active).is_empty());
    // The committed layer is untouched.
    assert_eq!(fs::read(layer.path().join("etc/hello")).unwrap(), b"hello");
}
