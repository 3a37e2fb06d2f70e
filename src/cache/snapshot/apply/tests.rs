use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use tar::EntryType;

use super::*;
use crate::cache::snapshot::testutil::{TestEntry, TestTar, require_root};

fn open(path: &Path) -> OwnedFd {
    rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap()
}

/// Applies `tar` to a fresh directory; returns the temp dir (root at `root/`).
fn apply_tar(tar: &[u8]) -> (tempfile::TempDir, Result<Applied>) {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let result = apply(open(&root).as_fd(), tar, "sha256:test", Target::Layer);
    (tmp, result)
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// A valid VFS_CAP_REVISION_2 `security.capability` (cap_net_bind_service, effective).
const CAP_NET_BIND_SERVICE: [u8; 20] = [
    0x01, 0, 0, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn every_kind_of_entry_keeps_its_metadata() {
    let mut tar = TestTar::new();
    tar.add(TestEntry {
        mode: 0o750,
        uid: 7,
        gid: 8,
        mtime: 1_234_567,
        ..TestEntry::new("etc/", EntryType::Directory)
    })
    .add(TestEntry {
        data: b"root:x:0:0\n",
        mode: 0o4755,
        uid: 1000,
        gid: 1001,
        mtime: 1_111_111,
        pax: vec![
            ("SCHILY.xattr.user.note".into(), b"kept".to_vec()),
            (
                "SCHILY.xattr.security.capability".into(),
                CAP_NET_BIND_SERVICE.to_vec(),
            ),
        ],
        ..TestEntry::new("etc/passwd", EntryType::Regular)
    })
    .add(TestEntry {
        mode: 0o1777,
        ..TestEntry::new("tmp/", EntryType::Directory)
    })
    .add(TestEntry {
        mode: 0o2775,
        gid: 50,
        ..TestEntry::new("srv/", EntryType::Directory)
    })
    .symlink("etc/link", "/etc/passwd")
    .hardlink("etc/hard", "etc/passwd")
    .add(TestEntry {
        device: (1, 3),
        mode: 0o666,
        ..TestEntry::new("dev/null", EntryType::Char)
    })
    .add(TestEntry {
        device: (7, 0),
        mode: 0o660,
        gid: 6,
        ..TestEntry::new("dev/loop0", EntryType::Block)
    })
    .add(TestEntry {
        mode: 0o620,
        ..TestEntry::new("run/fifo", EntryType::Fifo)
    })
    .add(TestEntry {
        // A PAX uid beyond USTAR's octal field, and a PAX mtime with a fraction.
        pax: vec![
            ("uid".into(), b"3000000".to_vec()),
            ("mtime".into(), b"1700000000.5".to_vec()),
        ],
        data: b"big",
        ..TestEntry::new("home/big", EntryType::Regular)
    });
    let long = format!("deep/{}/file", "d".repeat(150));
    tar.file(&long, b"long name");
    let (tmp, result) = apply_tar(&tar.finish());
    let applied = result.unwrap();
    assert_eq!(applied.entries, 11);
    let root = tmp.path().join("root");

    let etc = fs::symlink_metadata(root.join("etc")).unwrap();
    assert_eq!(
        (etc.mode() & 0o7777, etc.uid(), etc.gid(), etc.mtime()),
        (0o750, 7, 8, 1_234_567),
        "the directory's mtime survives the files written into it"
    );
    let passwd = fs::symlink_metadata(root.join("etc/passwd")).unwrap();
    assert!(passwd.is_file());
    assert_eq!(
        (
            passwd.mode() & 0o7777,
            passwd.uid(),
            passwd.gid(),
            passwd.mtime()
        ),
        (0o4755, 1000, 1001, 1_111_111),
        "setuid survives the chown"
    );
    assert_eq!(fs::read(root.join("etc/passwd")).unwrap(), b"root:x:0:0\n");
    assert_eq!(
        xattr(&root.join("etc/passwd"), "user.note").unwrap(),
        b"kept"
    );
    assert_eq!(
        xattr(&root.join("etc/passwd"), "security.capability").unwrap(),
        CAP_NET_BIND_SERVICE,
        "the capability survives the chown"
    );
    assert_eq!(passwd.nlink(), 2);
    assert_eq!(
        fs::symlink_metadata(root.join("etc/hard")).unwrap().ino(),
        passwd.ino()
    );
    assert_eq!(
        fs::read_link(root.join("etc/link")).unwrap(),
        Path::new("/etc/passwd")
    );
    let mode = |p: &str| fs::symlink_metadata(root.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("tmp"), 0o1777);
    assert_eq!(mode("srv"), 0o2775);
    let null = fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (
            rustix::fs::major(null.rdev()),
            rustix::fs::minor(null.rdev())
        ),
        (1, 3)
    );
    assert_eq!(null.mode() & 0o7777, 0o666);
    let loop0 = fs::symlink_metadata(root.join("dev/loop0")).unwrap();
    assert!(loop0.file_type().is_block_device());
    assert_eq!((loop0.gid(), loop0.mode() & 0o777), (6, 0o660));
    assert!(
        fs::symlink_metadata(root.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let big = fs::symlink_metadata(root.join("home/big")).unwrap();
    assert_eq!((big.uid(), big.mtime()), (3_000_000, 1_700_000_000));
    assert_eq!(fs::read(root.join(&long)).unwrap(), b"long name");
    // Parents the layer left out: 0755, root.
    let dev = fs::symlink_metadata(root.join("dev")).unwrap();
    assert_eq!((dev.mode() & 0o7777, dev.uid()), (0o755, 0));
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let tar = TestTar::new()
        .dir("a/")
        .whiteout("a/.wh.gone")
        .dir("b/")
        .whiteout("b/.wh..wh..opq")
        .file("b/kept", b"x")
        // The same layer's own file is not hidden by its whiteout...
        .file("c", b"mine")
        .whiteout(".wh.c")
        // ...and a later entry replaces a whiteout.
        .whiteout(".wh.d")
        .file("d", b"back")
        // AUFS bookkeeping is left out.
        .file(".wh..wh.plnk/123.456", b"")
        .finish();
    let (tmp, result) = apply_tar(&tar);
    result.unwrap();
    let root = tmp.path().join("root");
    let gone = fs::symlink_metadata(root.join("a/gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert!(!root.join("a/.wh.gone").exists());
    assert_eq!(xattr(&root.join("b"), OPAQUE_XATTR).unwrap(), b"y");
    assert!(!root.join("b/.wh..wh..opq").exists());
    assert_eq!(fs::read(root.join("b/kept")).unwrap(), b"x");
    assert_eq!(fs::read(root.join("c")).unwrap(), b"mine");
    assert_eq!(fs::read(root.join("d")).unwrap(), b"back");
    assert!(!root.join(".wh..wh.plnk").exists());
}

#[test]
fn later_entries_replace_earlier_ones_and_directories_merge() {
    let tar = TestTar::new()
        .file("x", b"file first")
        .dir("x/")
        .file("x/inner", b"")
        .dir("y/")
        .file("y/child", b"")
        .file("y", b"file replaces directory")
        .dir("z/")
        .file("z/child", b"")
        .add(TestEntry {
            mode: 0o700,
            ..TestEntry::new("z/", EntryType::Directory)
        })
        .symlink("s", "x")
        .file(
            "s",
            b"a file replaces the symlink, never written through it",
        )
        .finish();
    let (tmp, result) = apply_tar(&tar);
    result.unwrap();
    let root = tmp.path().join("root");
    assert!(root.join("x/inner").is_file());
    assert_eq!(
        fs::read(root.join("y")).unwrap(),
        b"file replaces directory"
    );
    assert!(root.join("z/child").exists());
    assert_eq!(
        fs::metadata(root.join("z")).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    assert!(fs::symlink_metadata(root.join("s")).unwrap().is_file());
    assert!(fs::read_dir(root.join("x")).unwrap().count() == 1);
}

#[test]
fn overlay_attributes_in_a_layer_are_dropped() {
    let tar = TestTar::new()
        .add(TestEntry {
            pax: vec![
                (
                    "SCHILY.xattr.trusted.overlay.redirect".into(),
                    b"/etc".to_vec(),
                ),
                ("SCHILY.xattr.trusted.overlay.opaque".into(), b"y".to_vec()),
            ],
            ..TestEntry::new("d/", EntryType::Directory)
        })
        .finish();
    let (tmp, result) = apply_tar(&tar);
    result.unwrap();
    let d = tmp.path().join("root/d");
    assert!(xattr(&d, "trusted.overlay.redirect").is_none());
    assert!(xattr(&d, OPAQUE_XATTR).is_none());
}

/// A directory outside the snapshot, with a file that must stay as it is.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Outside {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("canary"), b"untouched").unwrap();
        Outside { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn str(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// Nothing was added, removed, linked or changed.
    fn assert_untouched(&self) {
        let names: Vec<_> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["canary"]);
        let canary = self.path().join("canary");
        assert_eq!(fs::read(&canary).unwrap(), b"untouched");
        assert_eq!(fs::metadata(&canary).unwrap().nlink(), 1);
        assert!(xattr(self.path(), OPAQUE_XATTR).is_none());
    }
}

fn refused(tar: &[u8], wanted: &str) {
    let (_tmp, result) = apply_tar(tar);
    let err = result.expect_err("a hostile layer must be refused");
    let message = err.to_string();
    assert!(matches!(err, Error::Entry { .. }), "{message}");
    assert!(message.contains(wanted), "{message}");
}

#[test]
fn dotdot_is_refused() {
    refused(&TestTar::new().file("../x", b"").finish(), "`..`");
    refused(&TestTar::new().file("a/../../x", b"").finish(), "`..`");
    refused(&TestTar::new().hardlink("h", "../x").finish(), "`..`");
}

#[test]
fn absolute_paths_stay_inside() {
    let outside = Outside::new();
    let evil = format!("{}/canary", outside.str());
    let tar = TestTar::new().file(&evil, b"pwned").finish();
    let (tmp, result) = apply_tar(&tar);
    result.unwrap();
    outside.assert_untouched();
    let inside = tmp.path().join("root").join(evil.trim_start_matches('/'));
    assert_eq!(fs::read(inside).unwrap(), b"pwned");
}

#[test]
fn nothing_is_written_through_a_symlink() {
    let outside = Outside::new();
    for relative in [false, true] {
        let target = match relative {
            false => outside.str().to_string(),
            // From root/evil, climbs to `/` whatever the depth of the temp dir.
            true => format!("{}{}", "../".repeat(40), outside.str()),
        };
        type Case = (&'static str, fn(&mut TestTar));
        let cases: [Case; 6] = [
            ("a file", |t| {
                t.file("evil/pwned", b"x");
            }),
            ("a dir", |t| {
                t.dir("evil/pwned/");
            }),
            ("a whiteout", |t| {
                t.whiteout("evil/.wh.canary");
            }),
            ("opaque", |t| {
                t.whiteout("evil/.wh..wh..opq");
            }),
            ("a link in", |t| {
                t.hardlink("evil/pwned", "x");
            }),
            ("a link to", |t| {
                t.hardlink("h", "evil/canary");
            }),
        ];
        for (what, add) in cases {
            let mut tar = TestTar::new();
            tar.symlink("evil", &target).file("x", b"");
            add(&mut tar);
            let (_tmp, result) = apply_tar(&tar.finish());
            let err = result.expect_err(what).to_string();
            assert!(err.contains("`evil` is a symbolic link"), "{what}: {err}");
            outside.assert_untouched();
        }
    }
}

#[test]
fn hard_links_must_point_into_the_same_layer() {
    let outside = Outside::new();
    let target = format!("{}/canary", outside.str());
    refused(
        &TestTar::new().hardlink("shadow", &target).finish(),
        "is not a file earlier in this layer",
    );
    refused(
        &TestTar::new().hardlink("shadow", "/etc/shadow").finish(),
        "is not a file earlier in this layer",
    );
    outside.assert_untouched();
    refused(
        &TestTar::new().dir("d/").hardlink("h", "d").finish(),
        "is a directory",
    );
    refused(
        &TestTar::new().file("f", b"").hardlink("f", "f").finish(),
        "to itself",
    );
    // The layer's own /etc/shadow is fine.
    let tar = TestTar::new()
        .file("etc/shadow", b"inside")
        .hardlink("copy", "/etc/shadow")
        .finish();
    let (tmp, result) = apply_tar(&tar);
    result.unwrap();
    assert_eq!(fs::read(tmp.path().join("root/copy")).unwrap(), b"inside");
}

#[test]
fn a_truncated_stream_is_an_error() {
    let mut tar = TestTar::new().file("f", &[7; 5000]).finish();
    tar.truncate(2048);
    let (_tmp, result) = apply_tar(&tar);
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn empty_numeric_fields_are_zero_as_go_reads_them() {
    let mut tar = TestTar::new().file("f", b"x").finish();
    // Blank the uid, gid and mtime fields (and fix the checksum).
    let mut header = tar::Header::new_old();
    header.as_mut_bytes().copy_from_slice(&tar[..512]);
    header.as_old_mut().uid = [0; 8];
    header.as_old_mut().gid = [b' '; 8];
    header.as_old_mut().mtime = [0; 12];
    header.set_cksum();
    tar[..512].copy_from_slice(header.as_bytes());
    let (tmp, result) = apply_tar(&tar);
    result.unwrap();
    let meta = fs::symlink_metadata(tmp.path().join("root/f")).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mtime()), (0, 0, 0));

    let mut header = tar::Header::new_old();
    header.as_mut_bytes().copy_from_slice(&tar[..512]);
    header.as_old_mut().uid = *b"garbage\0";
    header.set_cksum();
    tar[..512].copy_from_slice(header.as_bytes());
    let (_tmp, result) = apply_tar(&tar);
    assert!(result.unwrap_err().to_string().contains("unreadable uid"));
}

/// A root with Debian's `/bin -> usr/bin` and an absolute link `/lib -> /usr/lib`.
fn debian_like_root() -> tempfile::TempDir {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
    fs::create_dir(root.join("data")).unwrap();
    tmp
}

fn extract(root: &Path, tar: &[u8], same_kind: bool) -> Result<Applied> {
    apply(open(root).as_fd(), tar, "COPY", Target::Root { same_kind })
}

#[test]
fn into_a_root_writes_go_through_its_symlinks_and_stay_inside() {
    let tmp = debian_like_root();
    let root = tmp.path();
    let tar = TestTar::new()
        .file("bin/x", b"x")
        .file("lib/y", b"y")
        .file("new/parent/z", b"z")
        .file("w/.wh.kept", b"")
        .finish();
    extract(root, &tar, true).unwrap();
    assert_eq!(fs::read(root.join("usr/bin/x")).unwrap(), b"x");
    // The absolute link resolves inside the root, not on the host.
    assert_eq!(fs::read(root.join("usr/lib/y")).unwrap(), b"y");
    assert!(
        fs::symlink_metadata(root.join("bin"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(root.join("new/parent/z")).unwrap(), b"z");
    let made = fs::metadata(root.join("new")).unwrap();
    assert_eq!((made.mode() & 0o7777, made.uid()), (0o755, 0));
    // Not a layer: a `.wh.` name is a file like any other.
    assert!(root.join("w/.wh.kept").is_file());
}

#[test]
fn into_a_root_a_directory_and_a_file_never_replace_each_other_when_asked() {
    let tmp = debian_like_root();
    let root = tmp.path();
    let file_over_dir = TestTar::new().file("data", b"x").finish();
    let err = extract(root, &file_over_dir, true).unwrap_err().to_string();
    assert!(err.contains("cannot replace a directory"), "{err}");
    assert!(root.join("data").is_dir());
    fs::write(root.join("f"), b"old").unwrap();
    let dir_over_file = TestTar::new().dir("f").finish();
    let err = extract(root, &dir_over_file, true).unwrap_err().to_string();
    assert!(err.contains("cannot replace a non-directory"), "{err}");
    // An archive extracts as it says (ADD of a tar).
    extract(root, &file_over_dir, false).unwrap();
    assert_eq!(fs::read(root.join("data")).unwrap(), b"x");
}
