//! An overlay upper directory as an OCI layer: what a step changed, written by the
//! deterministic layer writer. overlayfs records a deletion as a 0/0 character device and
//! a replaced directory as `trusted.overlay.opaque=y`; a layer says `.wh.NAME` and
//! `DIR/.wh..wh..opq`. Modes are kept exactly, and of the extended attributes only
//! `security.capability`, as Docker and containerd write their diffs (the upper directory
//! also holds overlayfs's private `trusted.overlay.*` attributes, never part of a layer).

use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use super::apply::OPAQUE_XATTR;
use super::error::{Error, Result};
use crate::oci::layer::Walk;
use crate::oci::{AddOptions, BlobStore, LayerBuilder, LayerOptions, WrittenLayer};

const CAPABILITY_XATTR: &str = "security.capability";

/// Adds the changes recorded in the upper directory `upper` to `builder`, at the layer's
/// root.
pub fn add_upper(builder: &mut LayerBuilder, upper: &Path) -> Result<()> {
    let layer_err = |source| Error::Layer {
        path: upper.display().to_string(),
        source,
    };
    let mut whiteouts: Vec<PathBuf> = Vec::new();
    let mut opaque: Vec<PathBuf> = Vec::new();
    let mut capabilities: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut failure: Option<Error> = None;
    let options = AddOptions {
        exact_modes: true,
        ..AddOptions::default()
    };
    builder
        .add_dir_filtered(upper, &options, |rel, meta: &Metadata| {
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                whiteouts.push(rel.to_path_buf());
                return Walk::Exclude;
            }
            let wanted = match () {
                () if ft.is_dir() => OPAQUE_XATTR,
                () if ft.is_file() => CAPABILITY_XATTR,
                () => return Walk::Include,
            };
            match xattr(&upper.join(rel), wanted) {
                Ok(Some(value)) if ft.is_dir() => {
                    if value == b"y" {
                        opaque.push(rel.to_path_buf());
                    }
                }
                Ok(Some(value)) => capabilities.push((rel.to_path_buf(), value)),
                Ok(None) => {}
                Err(e) => {
                    failure.get_or_insert(Error::Io {
                        context: format!("reading {wanted} of {}", upper.join(rel).display()),
                        source: e,
                    });
                }
            }
            Walk::Include
        })
        .map_err(layer_err)?;
    if let Some(e) = failure {
        return Err(e);
    }
    for rel in whiteouts {
        builder
            .add_whiteout(rel.as_os_str().as_bytes())
            .map_err(layer_err)?;
    }
    for rel in opaque {
        builder
            .add_opaque_whiteout(rel.as_os_str().as_bytes())
            .map_err(layer_err)?;
    }
    for (rel, value) in capabilities {
        builder
            .set_xattr(rel.as_os_str().as_bytes(), CAPABILITY_XATTR, &value)
            .map_err(layer_err)?;
    }
    Ok(())
}

/// A layer of exactly the changes in `upper`, written into `blobs`.
pub fn write_upper_layer(
    upper: &Path,
    blobs: BlobStore,
    options: LayerOptions,
) -> Result<WrittenLayer> {
    let mut builder = LayerBuilder::new(blobs, options);
    add_upper(&mut builder, upper)?;
    builder.write().map_err(|source| Error::Layer {
        path: upper.display().to_string(),
        source,
    })
}

/// An extended attribute of `path` (not following a symlink); `None` when it has none or
/// the file system keeps none.
pub fn xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::NODATA | Errno::OPNOTSUPP) => return Ok(None),
            Err(Errno::RANGE) => {
                let len = rustix::fs::lgetxattr_query(path, name)?;
                buf.resize(len.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    use rustix::fs::XattrFlags;

    use super::*;
    use crate::cache::snapshot::testutil::{TestTar, diff_id, require_root};
    use crate::cache::snapshot::{Snapshot, SnapshotStore};
    use crate::oci::Compression;

    /// A valid VFS_CAP_REVISION_2 `security.capability` (cap_net_raw, effective).
    const CAP_NET_RAW: [u8; 20] = [
        0x01, 0, 0, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    /// One entry of a written layer.
    #[derive(Debug, PartialEq, Eq)]
    struct Entry {
        kind: tar::EntryType,
        link: Option<String>,
        content: Vec<u8>,
        xattrs: Vec<String>,
    }

    fn entries(blob: &Path) -> Vec<(String, Entry)> {
        let gz = flate2::read::GzDecoder::new(fs::File::open(blob).unwrap());
        let mut archive = tar::Archive::new(gz);
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let mut xattrs = Vec::new();
            if let Some(pax) = entry.pax_extensions().unwrap() {
                for ext in pax {
                    let key = ext.unwrap().key().unwrap().to_string();
                    if let Some(x) = key.strip_prefix("SCHILY.xattr.") {
                        xattrs.push(x.to_string());
                    }
                }
            }
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned());
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            out.push((
                name,
                Entry {
                    kind: entry.header().entry_type(),
                    link,
                    content,
                    xattrs,
                },
            ));
        }
        out
    }

    /// Every path below `root` with its type, mode and content: what a container sees.
    fn view(root: &Path) -> BTreeMap<String, (String, u32, Vec<u8>)> {
        walkdir::WalkDir::new(root)
            .min_depth(1)
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let meta = e.path().symlink_metadata().unwrap();
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                let content = match meta.is_file() {
                    true => fs::read(e.path()).unwrap(),
                    false => Vec::new(),
                };
                let kind = format!("{:?}", meta.file_type());
                (rel, (kind, meta.permissions().mode(), content))
            })
            .collect()
    }

    fn view_of(
        store: &SnapshotStore,
        lowers: &[Snapshot],
    ) -> BTreeMap<String, (String, u32, Vec<u8>)> {
        let active = store.prepare(lowers).unwrap();
        let mounted = active.mount(&active.rootfs()).unwrap();
        let view = view(mounted.target());
        mounted.unmount().unwrap();
        view
    }

    #[test]
    fn an_upper_directory_becomes_the_layer_of_its_changes() {
        require_root();
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(&tmp.path().join("cache")).unwrap();
        let unpack = |tar: &[u8]| {
            store
                .unpack_layer(&diff_id(tar), Compression::Uncompressed, tar)
                .unwrap()
        };
        let l1 = unpack(
            &TestTar::new()
                .file("a", b"a")
                .file("b", b"b")
                .file("d/x", b"x")
                .file("d/y", b"y")
                .file("keep/k", b"old")
                .file("bin/ping", b"ping")
                .finish(),
        );
        let l2 = unpack(
            &TestTar::new()
                .whiteout(".wh.a")
                .dir("d/")
                .whiteout("d/.wh..wh..opq")
                .file("d/new", b"new")
                .finish(),
        );
        let base = [l1, l2];

        let active = store.prepare(&base).unwrap();
        let mounted = active.mount(&active.rootfs()).unwrap();
        let root = mounted.target();
        // The layers' whiteouts work in the mount.
        assert!(!root.join("a").exists());
        assert_eq!(fs::read_dir(root.join("d")).unwrap().count(), 1);
        assert!(root.join("d/new").exists());
        // A step's changes.
        fs::remove_file(root.join("b")).unwrap();
        fs::write(root.join("keep/k"), b"new content").unwrap();
        fs::create_dir(root.join("z")).unwrap();
        fs::remove_dir_all(root.join("d")).unwrap();
        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/again"), b"again").unwrap();
        rustix::fs::lsetxattr(
            root.join("bin/ping"),
            "security.capability",
            &CAP_NET_RAW,
            XattrFlags::empty(),
        )
        .unwrap();
        fs::write(root.join("h1"), b"linked").unwrap();
        fs::hard_link(root.join("h1"), root.join("h2")).unwrap();
        mounted.unmount().unwrap();

        let blobs = crate::oci::BlobStore::open(tmp.path().join("blobs")).unwrap();
        let written = write_upper_layer(
            &active.upper(),
            blobs,
            LayerOptions::new(Compression::Gzip, 0),
        )
        .unwrap();
        let entries = entries(&written.path);
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                ".wh.b",
                "bin/",
                "bin/ping",
                "d/",
                "d/.wh..wh..opq",
                "d/again",
                "h1",
                "h2",
                "keep/",
                "keep/k",
                "z/"
            ]
        );
        let get = |name: &str| &entries.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(get("keep/k").content, b"new content");
        assert_eq!(get("bin/ping").content, b"ping");
        assert_eq!(get("bin/ping").xattrs, ["security.capability"]);
        assert_eq!(get("h2").kind, tar::EntryType::Link);
        assert_eq!(get("h2").link.as_deref(), Some("h1"));
        assert_eq!(get(".wh.b").kind, tar::EntryType::Regular);
        // overlayfs's own attributes (origin, impure, opaque) stay out.
        assert!(
            entries
                .iter()
                .all(|(_, e)| e.xattrs.iter().all(|x| !x.starts_with("trusted.")))
        );

        // The layer, unpacked on the same base, shows what the committed step shows.
        let blob = fs::File::open(&written.path).unwrap();
        let layer = store
            .unpack_layer(&written.diff_id, Compression::Gzip, blob)
            .unwrap();
        let step = store.commit(active, "the step").unwrap();
        let through_step = view_of(&store, &store.chain(&step).unwrap());
        let through_layer = view_of(&store, &[base[0].clone(), base[1].clone(), layer]);
        assert_eq!(through_layer, through_step);
        assert_eq!(through_step["d/again"].2, b"again");
        assert!(!through_step.contains_key("b") && !through_step.contains_key("d/x"));
    }
}
