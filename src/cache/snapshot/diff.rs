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
fn xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
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
