//! Deterministic layers. A [`LayerBuilder`] collects entries from directory trees, tar
//! streams and single entries (later ones replace earlier ones at the same path, as in an
//! overlay), then writes them in one pass: sorted, parents first, with normalised
//! metadata, hashed (diff_id) and compressed on every core, the compressed blob hashed and
//! stored under its digest.
//!
//! What is normalised, so the same tree gives the same bytes on every machine:
//! * mtimes are clamped to the source date epoch (never below 0); no atime or ctime;
//! * owners are numeric, from the source or `--chown`; user and group names are kept only
//!   from tar streams (they come from inside an image), never from the host;
//! * permission bits of host directory trees do not depend on the umask that created them:
//!   directories and owner-executable files become 0755, other files 0644, special bits
//!   kept (ask for [`AddOptions::exact_modes`] for trees whose modes matter, like a
//!   root filesystem); `--chmod` replaces them; tar streams keep theirs;
//! * hard links stay hard links (the first in write order carries the data); sockets
//!   are left out, as `docker build` does.
//!
//! Content of tar streams is spooled to a temporary file beside the blobs while entries are
//! collected, because a stream arrives in its own order and the layer is written sorted.

mod chmod;
mod compress;
mod entries;
mod ownership;
mod tar_writer;

pub use chmod::Chmod;
pub use ownership::{Ownership, resolve_user};

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::{Descriptor, DescriptorBuilder, Digest};

use super::Compression;
use super::blobs::BlobStore;
use super::error::{Error, IoContext, Result};
use compress::BlobWriter;
use entries::{Data, Entry, EntryMap, Kind, Meta, SourceTree, Sources, is_whiteout_name};
use tar_writer::TarWriter;

/// Prefix of a whiteout file's name: `.wh.NAME` hides `NAME` of lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque whiteout: its directory hides all lower-layer content of that directory.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Options of a whole layer.
#[derive(Debug, Clone)]
pub struct LayerOptions {
    pub compression: Compression,
    /// Every mtime is clamped to this (`--source-date-epoch`).
    pub source_date_epoch: i64,
    /// Compression threads; the output does not depend on it.
    pub threads: usize,
}

impl LayerOptions {
    pub fn new(compression: Compression, source_date_epoch: i64) -> Self {
        LayerOptions {
            compression,
            source_date_epoch,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// How one source (a tree, a tar stream, a file) is added.
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    /// Where the source lands in the image, e.g. `/app` (`""` or `/` for the root).
    pub dest: String,
    /// `--chown`: replaces the source's owners.
    pub chown: Option<Ownership>,
    /// `--chmod`: changes the permission bits of files and directories.
    pub chmod: Option<Chmod>,
    /// Directory trees only: keep permission bits exactly as on disk instead of normalising
    /// them (for trees whose modes are meaningful, such as a debootstrap root filesystem).
    pub exact_modes: bool,
    /// Tars only: owners by id alone, the archive's user and group names left out (the
    /// engine's diffs name owners after its own host's accounts; a layer must not depend on
    /// the machine, and the native executor's layers have ids alone).
    pub numeric_owners: bool,
}

/// What a [`LayerBuilder::add_dir_filtered`] filter decides for one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    Include,
    /// Leave this entry out, but still look inside it if it is a directory.
    Exclude,
    /// Leave this directory and everything below it out.
    Prune,
}

/// Metadata of a single entry added by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    pub mode: u32,
    pub owner: Ownership,
}

/// A layer blob written into a [`BlobStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenLayer {
    /// Digest, size and media type of the blob (compressed unless the options said not).
    pub descriptor: Descriptor,
    /// Digest of the uncompressed tar, for the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    /// Where the blob is stored.
    pub path: PathBuf,
}

pub struct LayerBuilder {
    store: BlobStore,
    options: LayerOptions,
    entries: EntryMap,
    spool: Option<(BufWriter<File>, u64)>,
    trees: Vec<SourceTree>,
}

impl LayerBuilder {
    /// A new, empty layer whose blob will be stored in `store`.
    pub fn new(store: BlobStore, options: LayerOptions) -> Self {
        LayerBuilder {
            store,
            options,
            entries: EntryMap::default(),
            spool: None,
            trees: Vec::new(),
        }
    }

    /// Number of entries collected so far (without implicit parent directories).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// Adds the contents of directory `src` under `options.dest` (like `COPY dir/ dest`).
    pub fn add_dir(&mut self, src: &Path, options: &AddOptions) -> Result<()> {
        self.add_dir_filtered(src, options, |_, _| Walk::Include)
    }

    /// Like [`Self::add_dir`], asking `filter` about every path (relative to `src`), e.g. to
    /// apply `.dockerignore`. Parents of included entries that were excluded are added as
    /// plain directories (0755, owned by `--chown` or root).
    pub fn add_dir_filtered(
        &mut self,
        src: &Path,
        options: &AddOptions,
        mut filter: impl FnMut(&Path, &Metadata) -> Walk,
    ) -> Result<()> {
        let root = fs::symlink_metadata(src).with_path("reading", src)?;
        if !root.is_dir() {
            return Err(Error::invalid(format!(
                "{} is not a directory",
                src.display()
            )));
        }
        let dest = normalize(options.dest.as_bytes()).ok_or_else(|| bad_dest(&options.dest))?;
        let dir_meta = synthetic_dir_meta(options);
        self.entries.ensure_parents(&dest, &dir_meta);
        self.entries.ensure_dir(&dest, &dir_meta);

        let tree = u32::try_from(self.trees.len())
            .map_err(|_| Error::invalid("too many directory trees in one layer"))?;
        self.trees.push(SourceTree {
            root: src.to_path_buf(),
            dest: dest.clone(),
        });
        // Hard links are kept only between files of this one tree.
        let mut link_groups: HashMap<(u64, u64), u64> = HashMap::new();
        let mut walk = walkdir::WalkDir::new(src)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(item) = walk.next() {
            let item = item.map_err(|e| {
                let path = e.path().unwrap_or(src).to_path_buf();
                Error::Io {
                    context: format!("reading {}", path.display()),
                    source: e.into(),
                }
            })?;
            let rel = item.path().strip_prefix(src).unwrap_or(item.path());
            let meta = item.metadata().map_err(|e| Error::Io {
                context: format!("reading {}", item.path().display()),
                source: e.into(),
            })?;
            match filter(rel, &meta) {
                Walk::Include => {}
                Walk::Exclude => continue,
                Walk::Prune => {
                    if meta.is_dir() {
                        walk.skip_current_dir();
                    }
                    continue;
                }
            }
            let path = join(&dest, rel.as_os_str().as_bytes());
            let Some(entry) = self.host_entry(
                item.path(),
                Data::Tree(tree),
                &meta,
                options,
                &mut link_groups,
            )?
            else {
                continue;
            };
            self.entries.ensure_parents(&path, &dir_meta);
            self.entries.insert(path, entry);
        }
        Ok(())
    }

    /// Adds one host file at `dest` (a full path in the image). A symlink given as `src` is
    /// followed, as `COPY` does for its sources.
    pub fn add_file(&mut self, src: &Path, dest: &str, options: &AddOptions) -> Result<()> {
        let meta = fs::metadata(src).with_path("reading", src)?;
        if meta.is_dir() {
            return Err(Error::invalid(format!(
                "{} is a directory; add it with add_dir",
                src.display()
            )));
        }
        let path = normalize(dest.as_bytes())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad_dest(dest))?;
        let data = Data::Disk(src.to_path_buf());
        let Some(entry) = self.host_entry(src, data, &meta, options, &mut HashMap::new())? else {
            return Err(Error::invalid(format!(
                "{} is a socket, which cannot be stored in a layer",
                src.display()
            )));
        };
        self.entries
            .ensure_parents(&path, &synthetic_dir_meta(options));
        self.entries.insert(path, entry);
        Ok(())
    }

    /// Adds every entry of a tar stream (an engine archive download, a container diff)
    /// under `options.dest`. Whiteouts in the stream are kept as whiteouts; modes, owners,
    /// user names and extended attributes are kept unless overridden.
    pub fn add_tar(&mut self, reader: impl Read, options: &AddOptions) -> Result<()> {
        self.add_tar_stream(reader, options, false)
    }

    /// [`Self::add_tar`] for a tar in a file the builder may keep until the layer is
    /// written: file contents are then read from that file in place instead of being
    /// copied to the spool, so a COPY of a 5 GB file needs 5 GB of temporary disk, not 10.
    /// (When the builder already spools another stream, the tar is read like a stream.)
    pub fn add_tar_file(&mut self, file: File, options: &AddOptions) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let io_err = |source| Error::Io {
            context: "reading a tar file".into(),
            source,
        };
        if self.spool.is_some() {
            let mut file = file;
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            return self.add_tar(io::BufReader::with_capacity(1 << 20, file), options);
        }
        // The file becomes the spool: entries point into it, and anything that must still be
        // spooled (sparse entries) is appended after the tar's end, where the cursor is put.
        // The tar is read through `read_at`, which leaves that cursor alone.
        let reader = ReadAt {
            file: file.try_clone().map_err(io_err)?,
            pos: 0,
        };
        let mut writer = file;
        let end = writer.seek(SeekFrom::End(0)).map_err(io_err)?;
        self.spool = Some((BufWriter::with_capacity(1 << 20, writer), end));
        self.add_tar_stream(io::BufReader::with_capacity(1 << 20, reader), options, true)
    }

    /// `in_place`: the stream is the spool file itself (see [`Self::add_tar_file`]).
    fn add_tar_stream(
        &mut self,
        reader: impl Read,
        options: &AddOptions,
        in_place: bool,
    ) -> Result<()> {
        let dest = normalize(options.dest.as_bytes()).ok_or_else(|| bad_dest(&options.dest))?;
        let dir_meta = synthetic_dir_meta(options);
        if !dest.is_empty() {
            self.entries.ensure_parents(&dest, &dir_meta);
            self.entries.ensure_dir(&dest, &dir_meta);
        }
        let mut archive = tar::Archive::new(reader);
        let stream_err = |e: io::Error| Error::Io {
            context: "reading a tar stream".into(),
            source: e,
        };
        for item in archive.entries().map_err(stream_err)? {
            let mut item = item.map_err(stream_err)?;
            let raw_path = item.path_bytes().into_owned();
            let rel = normalize(&raw_path).ok_or_else(|| {
                Error::invalid(format!(
                    "tar entry `{}` points outside the layer root",
                    String::from_utf8_lossy(&raw_path)
                ))
            })?;
            if rel.is_empty() {
                // The archive's own root ("./"): the destination directory stands for it.
                continue;
            }
            let path = join(&dest, &rel);
            let header = item.header().clone();
            let entry_err = |what: &str| {
                Error::invalid(format!(
                    "tar entry `{}` has {what}",
                    String::from_utf8_lossy(&raw_path)
                ))
            };
            let mut meta = Meta {
                mode: header.mode().map_err(|_| entry_err("an unreadable mode"))? & 0o7777,
                uid: header.uid().map_err(|_| entry_err("an unreadable uid"))?,
                gid: header.gid().map_err(|_| entry_err("an unreadable gid"))?,
                uname: String::from_utf8_lossy(header.username_bytes().unwrap_or_default())
                    .into_owned(),
                gname: String::from_utf8_lossy(header.groupname_bytes().unwrap_or_default())
                    .into_owned(),
                mtime: i64::try_from(
                    header
                        .mtime()
                        .map_err(|_| entry_err("an unreadable mtime"))?,
                )
                .unwrap_or(i64::MAX),
            };
            if let Some(owner) = options.chown {
                meta.uid = owner.uid;
                meta.gid = owner.gid;
                meta.uname.clear();
                meta.gname.clear();
            }
            if options.numeric_owners {
                meta.uname.clear();
                meta.gname.clear();
            }
            let entry_type = header.entry_type();
            if let Some(chmod) = options.chmod.as_ref().filter(|_| !entry_type.is_symlink()) {
                meta.mode = chmod.apply(meta.mode, entry_type.is_dir());
            }
            let mut xattrs = Vec::new();
            if let Some(pax) = item.pax_extensions().map_err(stream_err)? {
                for ext in pax {
                    let ext = ext.map_err(stream_err)?;
                    if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                        xattrs.push((
                            String::from_utf8_lossy(name).into_owned(),
                            ext.value_bytes().to_vec(),
                        ));
                    }
                }
            }
            let base = rel.rsplit(|&b| b == b'/').next().unwrap_or_default();
            let mut link_target = None;
            let kind = match entry_type {
                t if is_whiteout_name(base) && (t.is_file() || t.is_character_special()) => {
                    Kind::Whiteout
                }
                t if in_place && (t.is_file() || t == tar::EntryType::Continuous) => Kind::File {
                    data: Data::Spool(item.raw_file_position()),
                    size: item.size(),
                    link_group: None,
                },
                t if t.is_file()
                    || t == tar::EntryType::Continuous
                    || t == tar::EntryType::GNUSparse =>
                {
                    let (offset, size) = self.spool_copy(&mut item).map_err(|e| Error::Io {
                        context: format!(
                            "reading `{}` from a tar stream",
                            String::from_utf8_lossy(&raw_path)
                        ),
                        source: e,
                    })?;
                    Kind::File {
                        data: Data::Spool(offset),
                        size,
                        link_group: None,
                    }
                }
                t if t.is_dir() => Kind::Dir,
                t if t.is_symlink() => {
                    let target = item
                        .link_name_bytes()
                        .ok_or_else(|| entry_err("no link target"))?;
                    Kind::Symlink(target.into_owned())
                }
                t if t.is_hard_link() => {
                    let target = item
                        .link_name_bytes()
                        .ok_or_else(|| entry_err("no link target"))?;
                    let target = normalize(&target)
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| entry_err("a link target outside the layer root"))?;
                    let target = join(&dest, &target);
                    let kind = self.link_to(&target, &raw_path)?;
                    link_target = Some(target);
                    kind
                }
                t if t.is_character_special() || t.is_block_special() => {
                    let major = header.device_major().ok().flatten().unwrap_or(0);
                    let minor = header.device_minor().ok().flatten().unwrap_or(0);
                    if t.is_character_special() {
                        Kind::Char(major, minor)
                    } else {
                        Kind::Block(major, minor)
                    }
                }
                t if t.is_fifo() => Kind::Fifo,
                t if t.is_pax_global_extensions() => continue,
                other => {
                    return Err(entry_err(&format!("unsupported type {other:?}")));
                }
            };
            // A hard link shares its target's inode, hence its metadata.
            let entry = match link_target
                .as_deref()
                .and_then(|t| self.entries.get_file(t))
            {
                Some(target) => Entry {
                    kind,
                    ..target.clone()
                },
                None => Entry { kind, meta, xattrs },
            };
            self.entries.ensure_parents(&path, &dir_meta);
            self.entries.insert(path, entry);
        }
        Ok(())
    }

    /// Adds a directory.
    pub fn add_directory(&mut self, path: &str, meta: EntryMeta) -> Result<()> {
        self.add_manual(path, Kind::Dir, meta)
    }

    /// Adds a regular file with the given content.
    pub fn add_bytes(
        &mut self,
        path: &str,
        content: impl Into<Arc<[u8]>>,
        meta: EntryMeta,
    ) -> Result<()> {
        let data: Arc<[u8]> = content.into();
        let size = data.len() as u64;
        self.add_manual(
            path,
            Kind::File {
                data: Data::Bytes(data),
                size,
                link_group: None,
            },
            meta,
        )
    }

    /// Adds a symbolic link (its target is stored as given).
    pub fn add_symlink(&mut self, path: &str, target: &str, owner: Ownership) -> Result<()> {
        let meta = EntryMeta { mode: 0o777, owner };
        self.add_manual(path, Kind::Symlink(target.as_bytes().to_vec()), meta)
    }

    /// Adds a hard link to a regular file already added to this layer.
    pub fn add_hardlink(&mut self, path: &str, target: &str) -> Result<()> {
        let path_bytes = normalize(path.as_bytes())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad_dest(path))?;
        let norm_target = normalize(target.as_bytes()).unwrap_or_default();
        let kind = self.link_to(&norm_target, path.as_bytes())?;
        // `link_to` succeeded, so the target is there; it shares its metadata with the link.
        let Some(target_entry) = self.entries.get_file(&norm_target) else {
            return Err(Error::invalid(format!(
                "hard link target `{target}` is not in the layer"
            )));
        };
        let entry = Entry {
            kind,
            ..target_entry.clone()
        };
        self.entries
            .ensure_parents(&path_bytes, &Meta::synthetic(0o755, 0, 0));
        self.entries.insert(path_bytes, entry);
        Ok(())
    }

    /// Adds a whiteout that deletes `path` of lower layers (written as `DIR/.wh.NAME`).
    /// Paths are bytes, as file names on Linux.
    pub fn add_whiteout(&mut self, path: impl AsRef<[u8]>) -> Result<()> {
        let path = path.as_ref();
        let norm = normalize(path)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad_dest(&String::from_utf8_lossy(path)))?;
        let (dir, base) = match norm.iter().rposition(|&b| b == b'/') {
            Some(pos) => (
                norm.get(..pos).unwrap_or_default(),
                norm.get(pos + 1..).unwrap_or_default(),
            ),
            None => (&[][..], &norm[..]),
        };
        let mut name = WHITEOUT_PREFIX.as_bytes().to_vec();
        name.extend_from_slice(base);
        let full = join(dir, &name);
        self.entries
            .ensure_parents(&full, &Meta::synthetic(0o755, 0, 0));
        self.entries.insert(full, whiteout_entry());
        Ok(())
    }

    /// Makes directory `dir` opaque: lower layers' content of it is hidden (the directory
    /// entry and `DIR/.wh..wh..opq` are written).
    pub fn add_opaque_whiteout(&mut self, dir: impl AsRef<[u8]>) -> Result<()> {
        let dir = dir.as_ref();
        let norm = normalize(dir).ok_or_else(|| bad_dest(&String::from_utf8_lossy(dir)))?;
        let meta = Meta::synthetic(0o755, 0, 0);
        self.entries.ensure_parents(&norm, &meta);
        self.entries.ensure_dir(&norm, &meta);
        self.entries
            .insert(join(&norm, OPAQUE_WHITEOUT.as_bytes()), whiteout_entry());
        Ok(())
    }

    /// Sets extended attribute `name` of the entry already at `path` (directory trees
    /// carry none of their own; this adds the few a layer must keep, like a file's
    /// `security.capability`).
    pub fn set_xattr(&mut self, path: impl AsRef<[u8]>, name: &str, value: &[u8]) -> Result<()> {
        let path = path.as_ref();
        let shown = || String::from_utf8_lossy(path).into_owned();
        let norm = normalize(path)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad_dest(&shown()))?;
        let entry = self
            .entries
            .get_mut(&norm)
            .ok_or_else(|| Error::invalid(format!("`{}` is not in the layer", shown())))?;
        entry.xattrs.retain(|(k, _)| k != name);
        entry.xattrs.push((name.to_string(), value.to_vec()));
        Ok(())
    }

    /// Writes the layer: one pass over the entries in canonical order into a temporary
    /// file, renamed to its digest in the store once complete.
    pub fn write(self) -> Result<WrittenLayer> {
        let LayerBuilder {
            store,
            options,
            entries,
            spool,
            trees,
        } = self;
        let spool = match spool {
            Some((writer, _)) => Some(writer.into_inner().map_err(|e| Error::Io {
                context: "writing the tar spool file".into(),
                source: e.into_error(),
            })?),
            None => None,
        };
        let sources = Sources { spool, trees };

        let temp = store.temp_file()?;
        let file = temp
            .as_file()
            .try_clone()
            .with_path("opening", temp.path())?;
        let blob = BlobWriter::new(file, options.compression, options.threads)
            .with_path("starting the compressor for", temp.path())?;
        let mut tar = TarWriter::new(blob, options.source_date_epoch);
        for item in entries.into_write_order(&Meta::synthetic(0o755, 0, 0)) {
            tar.write_entry(&item, &sources).context(|| {
                format!(
                    "writing `{}` into a layer",
                    String::from_utf8_lossy(&item.name)
                )
            })?;
        }
        let digests = tar
            .finish()
            .and_then(BlobWriter::finish)
            .with_path("writing layer blob", temp.path())?;
        store_blob(&store, temp, digests, options.compression)
    }

    fn add_manual(&mut self, path: &str, kind: Kind, meta: EntryMeta) -> Result<()> {
        let norm = normalize(path.as_bytes())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad_dest(path))?;
        let parent_meta = Meta::synthetic(0o755, meta.owner.uid, meta.owner.gid);
        self.entries.ensure_parents(&norm, &parent_meta);
        let entry = Entry {
            kind,
            meta: Meta::synthetic(meta.mode & 0o7777, meta.owner.uid, meta.owner.gid),
            xattrs: Vec::new(),
        };
        self.entries.insert(norm, entry);
        Ok(())
    }

    /// Turns the regular file at `target` into a member of a hard-link group and returns
    /// the kind of a new member.
    fn link_to(&mut self, target: &[u8], link: &[u8]) -> Result<Kind> {
        let not_found = || {
            Error::invalid(format!(
                "hard link `{}` points to `{}`, which is not a regular file earlier in the layer",
                String::from_utf8_lossy(link),
                String::from_utf8_lossy(target)
            ))
        };
        let fresh_group = self.entries.new_link_group();
        let entry = self.entries.get_file_mut(target).ok_or_else(not_found)?;
        match &mut entry.kind {
            Kind::File {
                data,
                size,
                link_group,
            } => {
                let group = *link_group.get_or_insert(fresh_group);
                Ok(Kind::File {
                    data: data.clone(),
                    size: *size,
                    link_group: Some(group),
                })
            }
            _ => Err(not_found()),
        }
    }

    /// Copies a tar entry's content to the spool; returns its offset and length.
    fn spool_copy(&mut self, data: &mut impl Read) -> io::Result<(u64, u64)> {
        if self.spool.is_none() {
            let file = tempfile::tempfile_in(self.store.root())?;
            self.spool = Some((BufWriter::with_capacity(1 << 20, file), 0));
        }
        let Some((writer, end)) = self.spool.as_mut() else {
            return Err(io::Error::other("spool file missing"));
        };
        let offset = *end;
        let copied = io::copy(data, writer)?;
        *end += copied;
        Ok((offset, copied))
    }

    /// An entry for a host file; `None` for sockets, which tar cannot hold.
    fn host_entry(
        &mut self,
        path: &Path,
        data: Data,
        meta: &Metadata,
        options: &AddOptions,
        link_groups: &mut HashMap<(u64, u64), u64>,
    ) -> Result<Option<Entry>> {
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            let link_group = if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                Some(match link_groups.get(&key) {
                    Some(group) => *group,
                    None => {
                        let group = self.entries.new_link_group();
                        link_groups.insert(key, group);
                        group
                    }
                })
            } else {
                None
            };
            Kind::File {
                data,
                size: meta.len(),
                link_group,
            }
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            let target = fs::read_link(path).with_path("reading symlink", path)?;
            Kind::Symlink(target.as_os_str().as_bytes().to_vec())
        } else if ft.is_char_device() || ft.is_block_device() {
            let (major, minor) = split_dev(meta.rdev());
            if ft.is_char_device() {
                Kind::Char(major, minor)
            } else {
                Kind::Block(major, minor)
            }
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            return Ok(None);
        };
        let mode = if matches!(kind, Kind::Symlink(_)) {
            0o777
        } else {
            let is_dir = matches!(kind, Kind::Dir);
            let mode = if options.exact_modes {
                meta.mode() & 0o7777
            } else {
                normalized_mode(meta.mode(), is_dir)
            };
            options
                .chmod
                .as_ref()
                .map_or(mode, |chmod| chmod.apply(mode, is_dir))
        };
        let owner = options.chown.unwrap_or(Ownership {
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
        });
        Ok(Some(Entry {
            kind,
            meta: Meta {
                mode,
                uid: owner.uid,
                gid: owner.gid,
                uname: String::new(),
                gname: String::new(),
                mtime: meta.mtime(),
            },
            xattrs: Vec::new(),
        }))
    }
}

/// Reads a file through `read_at` (pread), leaving its cursor to a writer of the same file.
struct ReadAt {
    file: File,
    pos: u64,
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Permission bits of a host entry without the umask's influence: what the owner may
/// execute decides between 0755 and 0644 (as git records modes); special bits are kept.
fn normalized_mode(mode: u32, is_dir: bool) -> u32 {
    let special = mode & 0o7000;
    if is_dir || mode & 0o100 != 0 {
        special | 0o755
    } else {
        special | 0o644
    }
}

/// Directories imgbuild creates for a source: the destination and its missing parents.
fn synthetic_dir_meta(options: &AddOptions) -> Meta {
    let owner = options.chown.unwrap_or(Ownership::ROOT);
    Meta::synthetic(0o755, owner.uid, owner.gid)
}

fn whiteout_entry() -> Entry {
    Entry {
        kind: Kind::Whiteout,
        meta: Meta::synthetic(0, 0, 0),
        xattrs: Vec::new(),
    }
}

fn bad_dest(dest: &str) -> Error {
    Error::invalid(format!("`{dest}` is not a path inside the image"))
}

/// A path relative to the layer root, without `.` components or empty ones; `None` if
/// `..` would climb out of it. Leading `/` and `./` are dropped.
fn normalize(path: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join(&b'/'))
}

fn join(dir: &[u8], rel: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return rel.to_vec();
    }
    let mut path = dir.to_vec();
    path.push(b'/');
    path.extend_from_slice(rel);
    path
}

/// The layer blob at `blob` (of `media_type`) written again with `options`' compression:
/// the same tar, so the very blob a fresh write of the layer would give. The tar must hash
/// to `diff_id`.
pub fn recompress(
    store: &BlobStore,
    blob: &Path,
    media_type: &oci_spec::image::MediaType,
    diff_id: &Digest,
    options: &LayerOptions,
) -> Result<WrittenLayer> {
    let file = File::open(blob).with_path("opening", blob)?;
    let mut tar =
        super::manifest::uncompressed_layer(media_type, file).with_path("reading", blob)?;
    let temp = store.temp_file()?;
    let out = temp
        .as_file()
        .try_clone()
        .with_path("opening", temp.path())?;
    let mut writer = BlobWriter::new(out, options.compression, options.threads)
        .with_path("starting the compressor for", temp.path())?;
    io::copy(&mut tar, &mut writer).with_path("recompressing", blob)?;
    let digests = writer
        .finish()
        .with_path("writing layer blob", temp.path())?;
    if digests.diff_id != *diff_id {
        return Err(Error::invalid(format!(
            "{} holds a layer whose content is {}, not {diff_id}",
            blob.display(),
            digests.diff_id
        )));
    }
    store_blob(store, temp, digests, options.compression)
}

/// Moves a finished blob to its digest in `store`.
fn store_blob(
    store: &BlobStore,
    temp: tempfile::NamedTempFile,
    digests: compress::BlobDigests,
    compression: Compression,
) -> Result<WrittenLayer> {
    let path = store.commit(temp, &digests.digest)?;
    let descriptor = DescriptorBuilder::default()
        .media_type(compression.layer_media_type())
        .digest(digests.digest)
        .size(digests.size)
        .build()
        .map_err(|e| Error::invalid(format!("building a layer descriptor: {e}")))?;
    Ok(WrittenLayer {
        descriptor,
        diff_id: digests.diff_id,
        uncompressed_size: digests.uncompressed_size,
        path,
    })
}

/// Linux's `major()`/`minor()` of a device number.
fn split_dev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

impl Compression {
    /// The OCI media type of layers compressed this way.
    pub fn layer_media_type(self) -> oci_spec::image::MediaType {
        match self {
            Compression::Gzip => oci_spec::image::MediaType::ImageLayerGzip,
            Compression::Zstd => oci_spec::image::MediaType::ImageLayerZstd,
            Compression::Uncompressed => oci_spec::image::MediaType::ImageLayer,
        }
    }
}

#[cfg(test)]
mod tests;
