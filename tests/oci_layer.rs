//! Layers checked with GNU tar: determinism across runs, umasks and mtimes; order, owners,
//! mtimes, hard links and symlinks as `tar -tvf` shows them.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use imgbuild::oci::layer::{Chmod, Ownership};
use imgbuild::oci::{AddOptions, BlobStore, Compression, LayerBuilder, LayerOptions, WrittenLayer};

const EPOCH: i64 = 1_700_000_000;

fn sh(script: &str) {
    let status = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(status.success(), "`{script}` failed");
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A small tree with files, nested directories, a hard link, symlinks and a long name.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc/app")).unwrap();
    fs::create_dir_all(root.join("a-dir")).unwrap();
    fs::write(root.join("usr/bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("etc/app/config.toml"), "answer = 42\n").unwrap();
    fs::write(root.join("a.txt"), "a\n").unwrap();
    fs::write(root.join("a-dir/b"), "b\n").unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-alias")).unwrap();
    symlink("../etc/app/config.toml", root.join("usr/config")).unwrap();
    let long = "very-long-directory-name-".repeat(5);
    fs::create_dir_all(root.join(&long)).unwrap();
    fs::write(
        root.join(&long).join("file-with-a-long-name-too.txt"),
        "long\n",
    )
    .unwrap();
}

fn write_layer(store: &BlobStore, src: &Path, options: &AddOptions) -> WrittenLayer {
    let mut b = LayerBuilder::new(store.clone(), LayerOptions::new(Compression::Gzip, EPOCH));
    b.add_dir(src, options).unwrap();
    b.write().unwrap()
}

#[test]
fn same_tree_same_digest_across_runs_umasks_and_mtimes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let src = tmp.path().join("src");
    sh(&format!("umask 022 && mkdir {}", src.display()));
    make_tree(&src);
    let opts = AddOptions {
        dest: "/srv".into(),
        ..Default::default()
    };
    let first = write_layer(&store, &src, &opts);
    let second = write_layer(&store, &src, &opts);
    assert_eq!(first, second);

    // A copy made as a checkout under another umask makes it (group-writable), with other,
    // newer mtimes.
    let copy = tmp.path().join("copy");
    sh(&format!(
        "umask 002 && cp -r --no-preserve=mode {src} {copy} && chmod +x {copy}/usr/bin/tool \
         && find {copy} -exec touch -h -d '2030-01-02 03:04:05' {{}} +",
        src = src.display(),
        copy = copy.display()
    ));
    // cp -r does not keep hard links; make the copy's link again.
    fs::remove_file(copy.join("usr/bin/tool-alias")).unwrap();
    fs::hard_link(copy.join("usr/bin/tool"), copy.join("usr/bin/tool-alias")).unwrap();
    let copied_mode = fs::metadata(copy.join("a.txt")).unwrap().mode() & 0o777;
    assert_eq!(
        copied_mode, 0o664,
        "the copy really has other permission bits"
    );
    let third = write_layer(&store, &copy, &opts);
    assert_eq!(third.descriptor.digest(), first.descriptor.digest());
    assert_eq!(third.diff_id, first.diff_id);
}

#[test]
fn gnu_tar_sees_sorted_entries_epoch_mtimes_owners_and_links() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let opts = AddOptions {
        dest: "/srv".into(),
        chown: Some(Ownership {
            uid: 1000,
            gid: 1001,
        }),
        ..Default::default()
    };
    let layer = write_layer(&store, &src, &opts);

    let names = run(Command::new("tar").arg("-tzf").arg(&layer.path));
    let names: Vec<&str> = names.lines().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are in byte order");
    assert_eq!(names.first(), Some(&"srv/"));
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("file-with-a-long-name-too.txt"))
    );

    let listing = run(Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvzf"])
        .arg(&layer.path)
        .env("TZ", "UTC"));
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // The destination directory imgbuild creates gets the --chown owner too.
        assert_eq!(fields[1], "1000/1001", "{line}");
        assert_eq!(
            (fields[3], fields[4]),
            ("2023-11-14", "22:13:20"),
            "mtime is the epoch: {line}"
        );
    }
    let line_of = |name: &str| {
        listing
            .lines()
            .find(|l| l.split_whitespace().nth(5) == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{listing}"))
            .to_string()
    };
    assert!(line_of("srv/usr/bin/tool").starts_with("-rwxr-xr-x"));
    assert!(line_of("srv/usr/bin/tool-alias").starts_with("hrwxr-xr-x"));
    assert!(line_of("srv/usr/bin/tool-alias").ends_with("link to srv/usr/bin/tool"));
    assert!(line_of("srv/usr/config").starts_with("lrwxrwxrwx"));
    assert!(line_of("srv/usr/config").ends_with("-> ../etc/app/config.toml"));

    // Extracted by GNU tar, the hard link is one inode and the content is intact.
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer.path)
        .arg("-C")
        .arg(&out));
    let a = fs::metadata(out.join("srv/usr/bin/tool")).unwrap();
    let b = fs::metadata(out.join("srv/usr/bin/tool-alias")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(
        fs::read_to_string(out.join("srv/usr/config")).unwrap(),
        "answer = 42\n"
    );
}

#[test]
fn a_tar_stream_from_gnu_tar_gives_the_same_layer_as_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let opts = AddOptions {
        dest: "/srv".into(),
        chown: Some(Ownership::ROOT),
        chmod: Some(Chmod::Octal(0o755)),
        ..Default::default()
    };
    let from_tree = write_layer(&store, &src, &opts);
    // GNU tar writes its own order, names and metadata; the overrides make them equal.
    let tarball = tmp.path().join("src.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg("."));
    let mut b = LayerBuilder::new(store.clone(), LayerOptions::new(Compression::Gzip, EPOCH));
    b.add_tar(fs::File::open(&tarball).unwrap(), &opts).unwrap();
    let from_tar = b.write().unwrap();
    let list = |l: &WrittenLayer| {
        run(Command::new("tar")
            .args(["--numeric-owner", "-tvzf"])
            .arg(&l.path))
    };
    assert_eq!(list(&from_tar), list(&from_tree));
}
