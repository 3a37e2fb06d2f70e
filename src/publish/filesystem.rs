//! `--output type=local,dest=DIR` and `type=tar,dest=FILE|-`: the image's file system
//! instead of the image, as BuildKit's local and tar exporters give it (the whole final
//! root file system, base image included; what a layer deleted is absent).
//!
//! * `type=local`: the files belong to the user running imgbuild (as BuildKit's client
//!   receives them); modes, symlinks, hard links and times are the image's. A new DIR
//!   appears whole (written beside it, then renamed; mode 0700, as BuildKit makes it); an
//!   existing one is merged into: what the image has replaces what is there, the rest stays.
//! * `type=tar`: one uncompressed tar of the tree, in BuildKit's form: names without `./`,
//!   no root entry, directories with a trailing `/`, parents before their sorted children,
//!   the layers' numeric owners, no user or group names, hard links as link entries.
//!
//! Both write the tree once, layer after layer, into a scratch directory
//! ([`ImageTree`]); the tar is then read from it in order.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cache::snapshot::{ImageTree, TreeOwners};
use crate::oci::{self, Image, Publish, Published};

/// `--output type=local,dest=DIR`.
pub struct LocalDir {
    dest: PathBuf,
}

/// Where `--output type=tar` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarDest {
    File(PathBuf),
    Stdout,
}

/// `--output type=tar,dest=FILE|-`.
pub struct RootfsTar {
    dest: TarDest,
    /// Where the tree is written before it is read into the tar (stdout only; a file's
    /// tree is written beside it).
    scratch: PathBuf,
}

impl LocalDir {
    pub fn new(dest: PathBuf) -> LocalDir {
        LocalDir { dest }
    }
}

impl RootfsTar {
    pub fn new(dest: TarDest, scratch: PathBuf) -> RootfsTar {
        RootfsTar { dest, scratch }
    }
}

fn published(image: &dyn Image, destination: String) -> Published {
    Published {
        digest: image.digest(),
        config_digest: image.config_descriptor().digest().clone(),
        destination,
    }
}

/// A scratch directory in `parent`, removed when dropped.
fn scratch_in(parent: &Path, what: &str) -> anyhow::Result<tempfile::TempDir> {
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(&format!(".imgbuild-{what}-"))
        .tempdir_in(parent)
        .with_context(|| format!("creating a scratch directory in {}", parent.display()))
}

/// Writes `image`'s file system into the empty directory `dir`.
fn write_tree(image: &dyn Image, dir: &Path) -> anyhow::Result<TreeOwners> {
    let diff_ids = image.diff_ids()?;
    let layers = image.layers();
    anyhow::ensure!(
        diff_ids.len() == layers.len(),
        "the image's config lists {} layers and its manifest {}",
        diff_ids.len(),
        layers.len()
    );
    let mut tree = ImageTree::new(dir)?;
    for (layer, diff_id) in layers.iter().zip(&diff_ids) {
        let media_type = layer.media_type();
        let encoding = oci::manifest::layer_encoding(media_type).with_context(|| {
            format!("layer {}: unknown media type {media_type}", layer.digest())
        })?;
        let blob = image
            .open_blob(layer.digest())
            .with_context(|| format!("opening layer {}", layer.digest()))?;
        tree.add_layer(blob, encoding, diff_id)
            .with_context(|| format!("writing layer {} into {}", layer.digest(), dir.display()))?;
    }
    Ok(tree.finish()?)
}

impl Publish for LocalDir {
    /// A directory per platform, named as BuildKit names them (`DEST/linux_arm64`).
    fn publish_index(
        &self,
        index: &crate::oci::PlatformIndex,
        tags: &[String],
    ) -> anyhow::Result<Published> {
        for (platform, image) in index.images() {
            LocalDir::new(self.dest.join(platform.file_name())).publish(image.as_ref(), tags)?;
        }
        Ok(Published {
            digest: index.digest(),
            config_digest: index.digest(),
            destination: format!("local:{}", self.dest.display()),
        })
    }

    fn publish(&self, image: &dyn Image, _tags: &[String]) -> anyhow::Result<Published> {
        let dest = &self.dest;
        let destination = format!("local:{}", dest.display());
        match fs::symlink_metadata(dest) {
            Ok(meta) if meta.is_dir() => {
                // Inside it: the same file system, so every entry can be renamed into place.
                let scratch = scratch_in(dest, "local")?;
                write_tree(image, scratch.path())?;
                merge_into(scratch.path(), dest)
                    .with_context(|| format!("moving the files into {}", dest.display()))?;
            }
            Ok(_) => anyhow::bail!(
                "{} exists and is not a directory; type=local writes a directory",
                dest.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = match dest.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                let scratch = scratch_in(parent, "local")?;
                write_tree(image, scratch.path())?;
                fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("setting the mode of {}", dest.display()))?;
                let written = scratch.keep();
                if let Err(e) = fs::rename(&written, dest) {
                    let _ = fs::remove_dir_all(&written);
                    return Err(e)
                        .with_context(|| format!("renaming the tree to {}", dest.display()));
                }
            }
            Err(e) => return Err(e).with_context(|| format!("looking at {}", dest.display())),
        }
        Ok(published(image, destination))
    }
}

/// Moves every entry of `from` into `into`: a directory into a directory merges, anything
/// else replaces what is there. `from` is left empty.
fn merge_into(from: &Path, into: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let source = entry.path();
        let target = into.join(entry.file_name());
        let source_meta = fs::symlink_metadata(&source)?;
        match fs::symlink_metadata(&target) {
            Ok(existing) if existing.is_dir() && source_meta.is_dir() => {
                merge_into(&source, &target)?;
                fs::remove_dir(&source)?;
                // Moving entries in dated the directory now: give it the image's mode and time.
                fs::set_permissions(&target, source_meta.permissions())?;
                let mtime = filetime(&source_meta);
                fs::File::open(&target)?.set_modified(mtime)?;
            }
            Ok(existing) => {
                if existing.is_dir() {
                    fs::remove_dir_all(&target)?;
                } else {
                    fs::remove_file(&target)?;
                }
                fs::rename(&source, &target)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(&source, &target)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn filetime(meta: &fs::Metadata) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(meta.mtime()).unwrap_or(0))
}

impl Publish for RootfsTar {
    fn publish(&self, image: &dyn Image, _tags: &[String]) -> anyhow::Result<Published> {
        match &self.dest {
            TarDest::Stdout => {
                let scratch = scratch_in(&self.scratch, "tar")?;
                let owners = write_tree(image, scratch.path())?;
                let stdout = io::stdout().lock();
                let mut out = io::BufWriter::with_capacity(1 << 20, stdout);
                write_tar(scratch.path(), &owners, &mut out)
                    .context("writing the tar to standard output")?;
                out.flush().context("writing the tar to standard output")?;
                Ok(published(image, "tar:-".into()))
            }
            TarDest::File(dest) => {
                let parent = match dest.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                let scratch = scratch_in(parent, "tar")?;
                let tree = scratch.path().join("tree");
                fs::create_dir(&tree).with_context(|| format!("creating {}", tree.display()))?;
                let owners = write_tree(image, &tree)?;
                // Written under a temporary name, renamed once complete.
                let partial = scratch.path().join("rootfs.tar");
                let file = fs::File::create(&partial)
                    .with_context(|| format!("creating {}", partial.display()))?;
                let mut out = io::BufWriter::with_capacity(1 << 20, file);
                write_tar(&tree, &owners, &mut out)
                    .and_then(|()| out.flush())
                    .with_context(|| format!("writing {}", dest.display()))?;
                fs::rename(&partial, dest)
                    .with_context(|| format!("writing {}", dest.display()))?;
                Ok(published(image, format!("tar:{}", dest.display())))
            }
        }
    }
}

/// Writes the tree under `root` as a tar: parents first, children sorted by name, names
/// relative to `root` without `./`, owners from `owners`.
fn write_tar(root: &Path, owners: &TreeOwners, out: impl Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    // The first path of each multiply linked inode: later ones are link entries to it.
    let mut first_links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    // Directories still to list, as (relative path, sorted names left), deepest last; an
    // explicit stack, as trees can be deeper than the thread's stack allows recursion.
    let mut stack: Vec<(PathBuf, std::vec::IntoIter<std::ffi::OsString>)> =
        vec![(PathBuf::new(), sorted_names(root)?.into_iter())];
    while let Some((dir, names)) = stack.last_mut() {
        let Some(name) = names.next() else {
            stack.pop();
            continue;
        };
        let rel = dir.join(&name);
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path)?;
        let file_type = meta.file_type();
        let (uid, gid) = owners.get(rel.as_os_str().as_bytes());
        let mut header = tar::Header::new_ustar();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(u64::from(uid));
        header.set_gid(u64::from(gid));
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header.set_size(0);
        if file_type.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            let mut name = rel.clone().into_os_string();
            name.push("/");
            builder.append_data(&mut header, Path::new(&name), io::empty())?;
            stack.push((rel, sorted_names(&path)?.into_iter()));
        } else if file_type.is_file() {
            let inode = (meta.dev(), meta.ino());
            if meta.nlink() > 1 {
                if let Some(first) = first_links.get(&inode) {
                    header.set_entry_type(tar::EntryType::Link);
                    builder.append_link(&mut header, &rel, first)?;
                    continue;
                }
                first_links.insert(inode, rel.clone());
            }
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            builder.append_data(&mut header, &rel, fs::File::open(&path)?)?;
        } else if file_type.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            builder.append_link(&mut header, &rel, fs::read_link(&path)?)?;
        } else if file_type.is_char_device() || file_type.is_block_device() {
            header.set_entry_type(if file_type.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let rdev = meta.rdev();
            header.set_device_major(rustix::fs::major(rdev))?;
            header.set_device_minor(rustix::fs::minor(rdev))?;
            builder.append_data(&mut header, &rel, io::empty())?;
        } else if file_type.is_fifo() {
            header.set_entry_type(tar::EntryType::Fifo);
            builder.append_data(&mut header, &rel, io::empty())?;
        }
        // Sockets cannot be in a layer, so there are none here.
    }
    builder.into_inner()?.flush()
}

fn sorted_names(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}
