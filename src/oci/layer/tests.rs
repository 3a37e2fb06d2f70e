use super::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};

/// What a reader sees of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    uname: String,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn read_layer(layer: &WrittenLayer) -> Vec<(String, Seen)> {
    let file = File::open(&layer.path).unwrap();
    let reader: Box<dyn Read> = if layer.descriptor.media_type().to_string().ends_with("zstd") {
        Box::new(zstd::Decoder::new(file).unwrap())
    } else {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    };
    let mut archive = tar::Archive::new(reader);
    let mut seen = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let h = e.header().clone();
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for ext in pax {
                let ext = ext.unwrap();
                if let Some(k) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((k.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        seen.push((
            name,
            Seen {
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                uname: h.username().unwrap().unwrap_or("").to_string(),
                mtime: h.mtime().unwrap(),
                link,
                data,
                xattrs,
            },
        ));
    }
    seen
}

fn names(seen: &[(String, Seen)]) -> Vec<&str> {
    seen.iter().map(|(n, _)| n.as_str()).collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: BlobStore,
    src: PathBuf,
}

impl Fixture {
    /// The fixture's tree as a layer compressed with `compression`.
    fn write(&self, compression: Compression) -> WrittenLayer {
        let mut b = LayerBuilder::new(self.store.clone(), LayerOptions::new(compression, 0));
        b.add_dir(&self.src, &AddOptions::default()).unwrap();
        b.write().unwrap()
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path().join("blobs")).unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::create_dir_all(src.join("etc/conf.d")).unwrap();
    fs::write(src.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o775)).unwrap();
    fs::write(src.join("etc/conf.d/a.conf"), b"a=1\n").unwrap();
    fs::set_permissions(
        src.join("etc/conf.d/a.conf"),
        fs::Permissions::from_mode(0o664),
    )
    .unwrap();
    fs::hard_link(src.join("etc/conf.d/a.conf"), src.join("etc/a-link.conf")).unwrap();
    symlink("conf.d/a.conf", src.join("etc/current")).unwrap();
    Fixture {
        _dir: dir,
        store,
        src,
    }
}

fn options(epoch: i64) -> LayerOptions {
    LayerOptions::new(Compression::Gzip, epoch)
}

#[test]
fn a_tree_is_written_sorted_with_normalised_metadata() {
    let f = fixture();
    let mut b = LayerBuilder::new(f.store.clone(), options(1_000));
    b.add_dir(
        &f.src,
        &AddOptions {
            dest: "/app".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let layer = b.write().unwrap();
    let seen = read_layer(&layer);
    assert_eq!(
        names(&seen),
        [
            "app/",
            "app/bin/",
            "app/bin/tool",
            "app/etc/",
            "app/etc/a-link.conf",
            "app/etc/conf.d/",
            "app/etc/conf.d/a.conf",
            "app/etc/current",
        ]
    );
    let by_name: BTreeMap<_, _> = seen.into_iter().collect();
    // Files written now are newer than the epoch: clamped.
    assert!(by_name.values().all(|s| s.mtime == 1_000));
    // Umask-independent modes.
    assert_eq!(by_name["app/bin/tool"].mode, 0o755);
    assert_eq!(by_name["app/etc/a-link.conf"].mode, 0o644);
    assert_eq!(by_name["app/etc/conf.d/"].mode, 0o755);
    // The hard link's first member in write order carries the data.
    assert_eq!(by_name["app/etc/a-link.conf"].data, b"a=1\n");
    assert_eq!(by_name["app/etc/conf.d/a.conf"].kind, tar::EntryType::Link);
    assert_eq!(
        by_name["app/etc/conf.d/a.conf"].link.as_deref(),
        Some("app/etc/a-link.conf")
    );
    assert_eq!(by_name["app/etc/current"].kind, tar::EntryType::Symlink);
    assert_eq!(
        by_name["app/etc/current"].link.as_deref(),
        Some("conf.d/a.conf")
    );
    // Owners are the source's numeric ids; no host names.
    let me = fs::metadata(&f.src).unwrap();
    assert_eq!(by_name["app/bin/tool"].uid, u64::from(me.uid()));
    assert!(by_name.values().all(|s| s.uname.is_empty()));
    // The destination directory imgbuild created is root's.
    assert_eq!((by_name["app/"].uid, by_name["app/"].mode), (0, 0o755));
}

#[test]
fn older_mtimes_are_kept_and_overrides_apply() {
    let f = fixture();
    let old = File::options()
        .write(true)
        .open(f.src.join("bin/tool"))
        .unwrap();
    old.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(500))
        .unwrap();
    let mut b = LayerBuilder::new(f.store.clone(), options(1_000));
    let opts = AddOptions {
        chown: Some(Ownership { uid: 1000, gid: 50 }),
        chmod: Some(super::Chmod::Octal(0o600)),
        ..Default::default()
    };
    b.add_dir(&f.src, &opts).unwrap();
    let seen: BTreeMap<_, _> = read_layer(&b.write().unwrap()).into_iter().collect();
    assert_eq!(seen["bin/tool"].mtime, 500);
    assert_eq!(seen["bin/tool"].mode, 0o600);
    assert_eq!(
        seen["bin/"].mode, 0o600,
        "--chmod applies to directories too"
    );
    assert_eq!(seen["etc/current"].mode, 0o777, "symlinks keep 0777");
    assert!(seen.values().all(|s| (s.uid, s.gid) == (1000, 50)));
}

#[test]
fn the_same_tree_gives_the_same_digests_and_compression_changes_the_media_type() {
    let f = fixture();
    let write = |compression| f.write(compression);
    let (a, b) = (write(Compression::Gzip), write(Compression::Gzip));
    assert_eq!(a, b);
    let z = write(Compression::Zstd);
    assert_eq!(z.diff_id, a.diff_id, "same tar, other compression");
    assert_ne!(z.descriptor.digest(), a.descriptor.digest());
    assert_eq!(
        z.descriptor.media_type().to_string(),
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        a.descriptor.media_type().to_string(),
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(fs::metadata(&a.path).unwrap().len(), a.descriptor.size());
    assert_eq!(sha256_of_file(&a.path), *a.descriptor.digest());
}

/// Compressing a stored layer again gives, from any compression to any other, the blob a
/// fresh write with that compression gives; a blob that is not the layer it should be is
/// refused.
#[test]
fn a_recompressed_layer_is_the_blob_a_fresh_write_gives() {
    let f = fixture();
    let write = |compression| f.write(compression);
    let all = [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ];
    for from in all {
        let stored = write(from);
        for to in all {
            let again = recompress(
                &f.store,
                &stored.path,
                stored.descriptor.media_type(),
                &stored.diff_id,
                &LayerOptions::new(to, 0),
            )
            .unwrap();
            let fresh = write(to);
            assert_eq!(again.descriptor, fresh.descriptor, "{from:?} to {to:?}");
            assert_eq!(again.diff_id, fresh.diff_id);
            assert_eq!(sha256_of_file(&again.path), *fresh.descriptor.digest());
        }
    }
    let stored = write(Compression::Gzip);
    let other = crate::oci::digest::sha256_digest(b"another layer");
    let err = recompress(
        &f.store,
        &stored.path,
        stored.descriptor.media_type(),
        &other,
        &LayerOptions::new(Compression::Uncompressed, 0),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not sha256:"), "{err}");
}

fn sha256_of_file(path: &Path) -> Digest {
    crate::oci::digest::sha256_digest(&fs::read(path).unwrap())
}

/// A tar stream with entries out of order, a hard link before its target in sorted order,
/// whiteouts, an xattr, a long name and a host user name.
fn messy_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, ty: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(if ty.is_dir() { 0o750 } else { 0o640 });
        h.set_uid(33);
        h.set_gid(34);
        h.set_username("www-data").unwrap();
        h.set_mtime(9_999_999);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            b.append_link(&mut h, name, l).unwrap();
        } else {
            b.append_data(&mut h, name, data).unwrap();
        }
    };
    let long = format!("srv/{}/file", "n".repeat(150));
    add("srv/z-target", tar::EntryType::Regular, b"shared", None);
    add(
        "srv/a-link",
        tar::EntryType::Link,
        b"",
        Some("srv/z-target"),
    );
    add("srv/.wh.deleted", tar::EntryType::Regular, b"", None);
    add("srv/", tar::EntryType::Directory, b"", None);
    add("var/lib/.wh..wh..opq", tar::EntryType::Regular, b"", None);
    add(&long, tar::EntryType::Regular, b"long", None);
    let mut data = b.into_inner().unwrap();
    // An xattr record on one more file, written by hand (the tar crate writes none).
    let mut pax_h = tar::Header::new_ustar();
    let rec = tar_writer_record("SCHILY.xattr.security.capability", b"\x01\x02");
    pax_h.set_path("PaxHeaders/ping").unwrap();
    pax_h.set_entry_type(tar::EntryType::XHeader);
    pax_h.set_size(rec.len() as u64);
    pax_h.set_cksum();
    let mut tail = tar::Builder::new(Vec::new());
    tail.append(&pax_h, &rec[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("bin/ping").unwrap();
    h.set_size(4);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tail.append(&h, &b"ping"[..]).unwrap();
    let tail = tail.into_inner().unwrap();
    // Replace the first archive's end marker by the tail.
    data.truncate(data.len() - 1024);
    data.extend_from_slice(&tail);
    data
}

fn tar_writer_record(key: &str, value: &[u8]) -> Vec<u8> {
    let len = key.len() + value.len() + 3 + 2;
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    assert_eq!(r.len(), len);
    r
}

#[test]
fn a_tar_stream_is_sorted_and_keeps_links_whiteouts_xattrs_and_long_names() {
    let f = fixture();
    let mut b = LayerBuilder::new(f.store.clone(), options(1_000));
    b.add_tar(&messy_tar()[..], &AddOptions::default()).unwrap();
    let seen = read_layer(&b.write().unwrap());
    let long = format!("srv/{}/file", "n".repeat(150));
    let long_dir = format!("srv/{}/", "n".repeat(150));
    assert_eq!(
        names(&seen),
        [
            "bin/",
            "bin/ping",
            "srv/",
            "srv/.wh.deleted",
            "srv/a-link",
            long_dir.as_str(),
            long.as_str(),
            "srv/z-target",
            "var/",
            "var/lib/",
            "var/lib/.wh..wh..opq",
        ]
    );
    let by_name: BTreeMap<_, _> = seen.into_iter().collect();
    assert_eq!(by_name["srv/a-link"].data, b"shared");
    assert_eq!(by_name["srv/z-target"].link.as_deref(), Some("srv/a-link"));
    assert_eq!(
        by_name["srv/a-link"].uname, "www-data",
        "names from an image are kept"
    );
    assert_eq!(
        (by_name["srv/a-link"].uid, by_name["srv/a-link"].mode),
        (33, 0o640)
    );
    assert_eq!(by_name["srv/"].mode, 0o750);
    assert_eq!(by_name["srv/.wh.deleted"].mode, 0);
    assert_eq!(by_name[long.as_str()].data, b"long");
    assert!(by_name.values().all(|s| s.mtime <= 1_000));
    assert_eq!(
        by_name["bin/ping"].xattrs,
        [("security.capability".to_string(), b"\x01\x02".to_vec())]
    );
}

#[test]
fn a_tar_file_read_in_place_gives_the_same_layer_as_a_stream() {
    let f = fixture();
    let messy = messy_tar();
    let file_of = |bytes: &[u8]| {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        file
    };
    let mut streamed = LayerBuilder::new(f.store.clone(), options(1_000));
    streamed
        .add_tar(&messy[..], &AddOptions::default())
        .unwrap();
    let streamed = streamed.write().unwrap();
    // The file's cursor is left at the end by the writer: it must not matter.
    let mut in_place = LayerBuilder::new(f.store.clone(), options(1_000));
    in_place
        .add_tar_file(file_of(&messy), &AddOptions::default())
        .unwrap();
    let in_place = in_place.write().unwrap();
    assert_eq!(streamed.descriptor, in_place.descriptor);
    assert_eq!(read_layer(&in_place), read_layer(&streamed));

    // Two tars: the second is read as a stream into the first one's file, after its end.
    let other = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(5);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "srv/z-target", &b"later"[..])
            .unwrap();
        b.into_inner().unwrap()
    };
    let mut streamed = LayerBuilder::new(f.store.clone(), options(1_000));
    streamed
        .add_tar(&messy[..], &AddOptions::default())
        .unwrap();
    streamed
        .add_tar(&other[..], &AddOptions::default())
        .unwrap();
    let streamed = streamed.write().unwrap();
    let mut in_place = LayerBuilder::new(f.store.clone(), options(1_000));
    in_place
        .add_tar_file(file_of(&messy), &AddOptions::default())
        .unwrap();
    in_place
        .add_tar_file(file_of(&other), &AddOptions::default())
        .unwrap();
    let in_place = in_place.write().unwrap();
    assert_eq!(streamed.descriptor, in_place.descriptor);
    let by_name: BTreeMap<_, _> = read_layer(&in_place).into_iter().collect();
    assert_eq!(by_name["srv/z-target"].data, b"later");
}

#[test]
fn tar_entries_may_not_escape_the_root() {
    let f = fixture();
    let mut raw = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..9].copy_from_slice(b"../passwd");
    h.set_size(0);
    h.set_cksum();
    raw.append(&h, &b""[..]).unwrap();
    let mut b = LayerBuilder::new(f.store.clone(), options(0));
    let err = b
        .add_tar(&raw.into_inner().unwrap()[..], &AddOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("outside the layer root"), "{err}");
}

#[test]
fn single_entries_and_whiteouts() {
    let f = fixture();
    let mut b = LayerBuilder::new(f.store.clone(), options(0));
    let meta = EntryMeta {
        mode: 0o640,
        owner: Ownership { uid: 1, gid: 2 },
    };
    b.add_bytes("/etc/motd", &b"hello\n"[..], meta).unwrap();
    b.add_hardlink("/etc/motd2", "/etc/motd").unwrap();
    b.add_whiteout("/usr/share/doc").unwrap();
    b.add_opaque_whiteout("/var/cache").unwrap();
    b.add_symlink("/bin", "usr/bin", Ownership::ROOT).unwrap();
    assert!(b.add_hardlink("/x", "/nope").is_err());
    assert!(b.add_bytes("/../x", &b""[..], meta).is_err());
    let seen = read_layer(&b.write().unwrap());
    assert_eq!(
        names(&seen),
        [
            "bin",
            "etc/",
            "etc/motd",
            "etc/motd2",
            "usr/",
            "usr/share/",
            "usr/share/.wh.doc",
            "var/",
            "var/cache/",
            "var/cache/.wh..wh..opq",
        ]
    );
    let by_name: BTreeMap<_, _> = seen.into_iter().collect();
    assert_eq!(by_name["etc/motd2"].link.as_deref(), Some("etc/motd"));
    assert_eq!(
        (by_name["etc/motd"].mode, by_name["etc/motd"].gid),
        (0o640, 2)
    );
}

#[test]
fn a_file_that_changes_while_written_is_an_error() {
    let f = fixture();
    let mut b = LayerBuilder::new(f.store.clone(), options(0));
    b.add_dir(&f.src, &AddOptions::default()).unwrap();
    fs::write(f.src.join("bin/tool"), b"longer content than before\n").unwrap();
    let err = b.write().unwrap_err();
    assert!(format!("{err}").contains("bin/tool"), "{err}");
}
