//! Putting an image somewhere. One [`Publish`] trait, one implementation per destination:
//! OCI layout directory, OCI layout tar, `docker load` archive here; engine load and
//! registry push elsewhere behind the same trait. Sinks take `&dyn Image` and re-verify
//! every blob they copy, whatever the source.
//!
//! Nothing incomplete is ever left where a complete output is expected: archives are
//! written under a temporary name and renamed; a new layout directory is built beside its
//! destination and renamed; an existing layout gets its blobs first (each renamed into
//! place) and its `index.json` last.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageIndexBuilder, MediaType};
use serde_json::json;

use super::Compression;
use super::blobs::BlobStore;
use super::digest::VerifyingReader;
use super::docker_archive::{ArchiveManifestEntry, with_default_tag};
use super::error::{Error, IoContext, Result};
use super::image::Image;
use super::index::PlatformIndex;
use super::json::canonical_json;
use super::layout::REF_NAME;
use super::manifest::{descriptor, layer_encoding};

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// What a sink did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The manifest digest (what `docker inspect` calls RepoDigest's digest).
    pub digest: Digest,
    /// The config digest (docker's image ID, `--iidfile`).
    pub config_digest: Digest,
    /// Where the image went, e.g. `oci:out/` or `docker-archive:img.tar`.
    pub destination: String,
}

/// A destination for images. Sinks are blocking, like [`Image`]; async callers run them in
/// `spawn_blocking`.
pub trait Publish: Send + Sync {
    /// Writes `image` under every tag in `tags` (none: untagged).
    fn publish(&self, image: &dyn Image, tags: &[String]) -> anyhow::Result<Published>;

    /// Writes a multi-platform `index` and every image it lists under every tag. A sink that
    /// cannot hold an index says so; requests refuse such outputs before building.
    fn publish_index(&self, index: &PlatformIndex, tags: &[String]) -> anyhow::Result<Published> {
        let _ = (index, tags);
        anyhow::bail!("this output cannot hold a multi-platform image")
    }

    /// Completes what `publish` left open (nothing, for the sinks here).
    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}

fn published(image: &dyn Image, destination: String) -> Published {
    Published {
        digest: image.digest(),
        config_digest: image.config_descriptor().digest().clone(),
        destination,
    }
}

fn published_index(index: &PlatformIndex, destination: String) -> Published {
    Published {
        digest: index.digest(),
        config_digest: index.digest(),
        destination,
    }
}

/// What a layout holds under a name: one image, or an index of one image per platform.
#[derive(Clone, Copy)]
pub enum Artifact<'a> {
    Image(&'a dyn Image),
    Index(&'a PlatformIndex),
}

impl<'a> Artifact<'a> {
    fn images(self) -> Vec<&'a dyn Image> {
        match self {
            Artifact::Image(image) => vec![image],
            Artifact::Index(index) => index.images().iter().map(|(_, i)| i.as_ref()).collect(),
        }
    }

    /// The descriptor `index.json` lists.
    fn descriptor(self) -> Result<Descriptor> {
        match self {
            Artifact::Image(image) => manifest_descriptor(image),
            Artifact::Index(index) => index.descriptor(),
        }
    }
}

/// The manifest's own descriptor, as an index lists it.
fn manifest_descriptor(image: &dyn Image) -> Result<Descriptor> {
    descriptor(
        MediaType::from(image.manifest_media_type()),
        image.digest(),
        image.raw_manifest().len() as u64,
    )
}

/// Opens a blob of `image`, checked against its descriptor while read.
fn open_verified(image: &dyn Image, d: &Descriptor) -> Result<impl Read + use<>> {
    let reader = image
        .open_blob(d.digest())
        .context(|| format!("opening blob {}", d.digest()))?;
    Ok(VerifyingReader::new(
        reader,
        d.digest().clone(),
        Some(d.size()),
    ))
}

// ---------------------------------------------------------------------------------------
// OCI layout directory

/// `--output type=oci,dest=DIR`.
pub struct OciDir {
    path: PathBuf,
}

impl OciDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        OciDir { path: path.into() }
    }
}

impl Publish for OciDir {
    fn publish(&self, image: &dyn Image, tags: &[String]) -> anyhow::Result<Published> {
        write_oci_dir(&self.path, image, tags)?;
        Ok(published(image, format!("oci:{}", self.path.display())))
    }

    fn publish_index(&self, index: &PlatformIndex, tags: &[String]) -> anyhow::Result<Published> {
        write_oci_layout(&self.path, Artifact::Index(index), tags)?;
        Ok(published_index(
            index,
            format!("oci:{}", self.path.display()),
        ))
    }
}

/// Writes `image` into the OCI layout at `dir`: [`write_oci_layout`] of one image.
pub fn write_oci_dir(dir: &Path, image: &dyn Image, tags: &[String]) -> Result<()> {
    write_oci_layout(dir, Artifact::Image(image), tags)
}

/// Writes `artifact` into the OCI layout at `dir`, creating it, or adding to it when it
/// exists (blobs already there are kept; an index entry with the same name is replaced).
pub fn write_oci_layout(dir: &Path, artifact: Artifact<'_>, tags: &[String]) -> Result<()> {
    if !dir.exists() {
        let parent = parent_dir(dir);
        fs::create_dir_all(parent).with_path("creating", parent)?;
        let temp = tempfile::Builder::new()
            .prefix(".imgbuild-layout-")
            .tempdir_in(parent)
            .with_path("creating a temporary directory in", parent)?;
        fill_layout(temp.path(), artifact, tags)?;
        let staged = temp.keep();
        return fs::rename(&staged, dir).map_err(|e| {
            let _ = fs::remove_dir_all(&staged);
            Error::Io {
                context: format!("moving the new layout into place at {}", dir.display()),
                source: e,
            }
        });
    }
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "{} exists and is not a directory; an OCI layout directory goes there",
            dir.display()
        )));
    }
    let is_layout = dir.join("oci-layout").is_file();
    let is_empty = fs::read_dir(dir)
        .with_path("reading", dir)?
        .next()
        .is_none();
    if !is_layout && !is_empty {
        return Err(Error::invalid(format!(
            "{} exists and is neither empty nor an OCI image layout; refusing to write into it",
            dir.display()
        )));
    }
    fill_layout(dir, artifact, tags)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn fill_layout(dir: &Path, artifact: Artifact<'_>, tags: &[String]) -> Result<()> {
    let store = BlobStore::open(dir.join("blobs"))?;
    for image in artifact.images() {
        for layer in image.layers() {
            let mut reader = open_verified(image, layer)?;
            store.put(layer, &mut reader)?;
        }
        let config = image.config_descriptor();
        store.put(config, &mut image.raw_config())?;
        store.put(&manifest_descriptor(image)?, &mut image.raw_manifest())?;
    }
    if let Artifact::Index(index) = artifact {
        store.put(&index.descriptor()?, &mut index.raw())?;
    }
    let manifest = artifact.descriptor()?;

    let index_path = dir.join("index.json");
    let mut entries: Vec<Descriptor> = if index_path.is_file() {
        let raw = fs::read(&index_path).with_path("reading", &index_path)?;
        let index: ImageIndex = serde_json::from_slice(&raw).map_err(|e| {
            Error::invalid(format!(
                "{} is not a valid image index: {e}",
                index_path.display()
            ))
        })?;
        index.manifests().clone()
    } else {
        Vec::new()
    };
    add_to_index(&mut entries, &manifest, tags);
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries)
        .build()
        .map_err(|e| Error::invalid(format!("building index.json: {e}")))?;
    if !dir.join("oci-layout").is_file() {
        write_atomically(&dir.join("oci-layout"), OCI_LAYOUT)?;
    }
    write_atomically(&index_path, &canonical_json(&index))
}

/// Adds the manifest under each tag (replacing entries of the same name), or once without a
/// name when there are no tags and it is not listed yet.
fn add_to_index(entries: &mut Vec<Descriptor>, manifest: &Descriptor, tags: &[String]) {
    let name_of = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned()
    };
    if tags.is_empty() {
        if !entries.iter().any(|d| d.digest() == manifest.digest()) {
            entries.push(manifest.clone());
        }
        return;
    }
    entries.retain(|d| name_of(d).is_none_or(|n| !tags.contains(&n)));
    for tag in tags {
        let mut named = manifest.clone();
        named.set_annotations(Some(
            [(REF_NAME.to_string(), tag.clone())].into_iter().collect(),
        ));
        entries.push(named);
    }
}

/// Writes a small file under a temporary name, then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = parent_dir(path);
    let mut temp = tempfile::Builder::new()
        .prefix(".imgbuild-")
        .tempfile_in(parent)
        .with_path("creating a temporary file in", parent)?;
    temp.write_all(bytes).with_path("writing", temp.path())?;
    set_readable(temp.path())?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_path("moving into place", path)?;
    Ok(())
}

fn set_readable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .with_path("setting permissions of", path)
}

/// Writes to a temporary file beside `path` with `write`, then renames it to `path`.
fn write_file_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let parent = parent_dir(path);
    fs::create_dir_all(parent).with_path("creating", parent)?;
    let temp = tempfile::Builder::new()
        .prefix(".imgbuild-")
        .tempfile_in(parent)
        .with_path("creating a temporary file in", parent)?;
    {
        let mut out = BufWriter::with_capacity(1 << 20, temp.as_file());
        write(&mut out)?;
        out.flush().with_path("writing", temp.path())?;
    }
    set_readable(temp.path())?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_path("moving into place", path)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tar writing shared by both archive formats

/// Appends entries with fixed metadata (root, mtime 0), so equal images give equal archives.
struct ArchiveWriter<'a> {
    tar: tar::Builder<&'a mut dyn Write>,
    written: HashSet<String>,
}

impl<'a> ArchiveWriter<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        ArchiveWriter {
            tar: tar::Builder::new(out),
            written: HashSet::new(),
        }
    }

    fn header(ty: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        if self.written.insert(name.to_string()) {
            let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
            self.tar
                .append_data(&mut h, name, io::empty())
                .context(|| format!("writing {name} into the archive"))?;
        }
        Ok(())
    }

    /// Appends a file of exactly `size` bytes (the reader is checked to have that many).
    fn file(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        if !self.written.insert(name.to_string()) {
            return Ok(());
        }
        let mut h = Self::header(tar::EntryType::Regular, 0o644, size);
        let mut exact = ExactSize {
            inner: data,
            left: size,
        };
        self.tar
            .append_data(&mut h, name, &mut exact)
            .context(|| format!("writing {name} into the archive"))?;
        if exact.left != 0 {
            return Err(Error::invalid(format!(
                "{name} ended {} bytes early",
                exact.left
            )));
        }
        // Reading on to the end lets a verifying reader check the digest, and catches a
        // source longer than announced.
        let mut extra = [0u8; 1];
        let more = data
            .read(&mut extra)
            .context(|| format!("writing {name} into the archive"))?;
        if more != 0 {
            return Err(Error::invalid(format!(
                "{name} is longer than its {size} bytes"
            )));
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        self.tar
            .into_inner()
            .context(|| "finishing the archive".to_string())?
            .flush()
            .context(|| "finishing the archive".to_string())
    }
}

/// Reads at most `left` bytes and errors if the source has more.
struct ExactSize<'a> {
    inner: &'a mut dyn Read,
    left: u64,
}

impl Read for ExactSize<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(buf.get_mut(..max).unwrap_or_default())?;
        self.left -= n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------
// OCI layout tar

/// `--output type=oci,dest=FILE.tar`.
pub struct OciTar {
    path: PathBuf,
}

impl OciTar {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        OciTar { path: path.into() }
    }
}

impl Publish for OciTar {
    fn publish(&self, image: &dyn Image, tags: &[String]) -> anyhow::Result<Published> {
        write_file_atomically(&self.path, |out| {
            write_oci_archive(out, Artifact::Image(image), tags)
        })?;
        Ok(published(
            image,
            format!("oci-archive:{}", self.path.display()),
        ))
    }

    fn publish_index(&self, index: &PlatformIndex, tags: &[String]) -> anyhow::Result<Published> {
        write_file_atomically(&self.path, |out| {
            write_oci_archive(out, Artifact::Index(index), tags)
        })?;
        Ok(published_index(
            index,
            format!("oci-archive:{}", self.path.display()),
        ))
    }
}

/// Writes `artifact` as an OCI layout in tar form to `out`.
pub fn write_oci_archive(
    out: &mut dyn Write,
    artifact: Artifact<'_>,
    tags: &[String],
) -> Result<()> {
    let manifest = artifact.descriptor()?;
    let mut entries = Vec::new();
    add_to_index(&mut entries, &manifest, tags);
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries)
        .build()
        .map_err(|e| Error::invalid(format!("building index.json: {e}")))?;
    let index = canonical_json(&index);

    let mut ar = ArchiveWriter::new(out);
    ar.file("oci-layout", OCI_LAYOUT.len() as u64, &mut &OCI_LAYOUT[..])?;
    ar.file("index.json", index.len() as u64, &mut &index[..])?;
    ar.dir("blobs/")?;
    ar.dir("blobs/sha256/")?;
    let blob_name = |d: &Digest| format!("blobs/{}/{}", d.algorithm(), d.digest());
    for image in artifact.images() {
        for layer in image.layers() {
            let mut reader = open_verified(image, layer)?;
            ar.file(&blob_name(layer.digest()), layer.size(), &mut reader)?;
        }
        let config = image.config_descriptor();
        let mut config_reader = VerifyingReader::new(
            image.raw_config(),
            config.digest().clone(),
            Some(config.size()),
        );
        ar.file(
            &blob_name(config.digest()),
            config.size(),
            &mut config_reader,
        )?;
        let own = manifest_descriptor(image)?;
        ar.file(
            &blob_name(own.digest()),
            own.size(),
            &mut image.raw_manifest(),
        )?;
    }
    if let Artifact::Index(index) = artifact {
        ar.file(
            &blob_name(manifest.digest()),
            manifest.size(),
            &mut index.raw(),
        )?;
    }
    ar.finish()
}

// ---------------------------------------------------------------------------------------
// docker load archive

/// The uncompressed size of a zstd layer, found by decompressing it once (zstd decodes at
/// GB/s; a tar entry needs its size before its content). Verifies the blob on the way.
fn zstd_content_size(image: &dyn Image, layer: &Descriptor) -> Result<u64> {
    let context = || format!("decompressing layer {}", layer.digest());
    let mut decoder = zstd::Decoder::new(open_verified(image, layer)?).context(context)?;
    let size = io::copy(&mut decoder, &mut io::sink()).context(context)?;
    // Read what the decoder left, so the digest check runs.
    io::copy(&mut decoder.finish(), &mut io::sink()).context(context)?;
    Ok(size)
}

/// `--output type=docker,dest=FILE.tar`: an archive `docker load` reads (Engine 20.10
/// cannot load OCI layouts).
pub struct DockerArchive {
    path: PathBuf,
    options: DockerArchiveOptions,
}

#[derive(Debug, Clone, Default)]
pub struct DockerArchiveOptions {
    /// diff_ids of layers to leave out of the archive (still listed in `manifest.json`):
    /// those the engine already has, which its load accepts.
    pub omit_layers: HashSet<Digest>,
}

impl DockerArchive {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DockerArchive {
            path: path.into(),
            options: DockerArchiveOptions::default(),
        }
    }
}

impl Publish for DockerArchive {
    fn publish(&self, image: &dyn Image, tags: &[String]) -> anyhow::Result<Published> {
        write_file_atomically(&self.path, |out| {
            write_docker_archive(out, image, tags, &self.options)
        })?;
        Ok(published(
            image,
            format!("docker-archive:{}", self.path.display()),
        ))
    }
}

/// Writes `image` as a `docker load` archive to `out`: the config, the layer blobs as they
/// are stored (Docker decompresses them on load), `manifest.json` and `repositories`.
pub fn write_docker_archive(
    out: &mut dyn Write,
    image: &dyn Image,
    tags: &[String],
    options: &DockerArchiveOptions,
) -> Result<()> {
    let diff_ids = image.diff_ids()?;
    if diff_ids.len() != image.layers().len() {
        return Err(Error::invalid(format!(
            "image {} has {} layers but {} diff_ids",
            image.digest(),
            image.layers().len(),
            diff_ids.len()
        )));
    }
    let mut repo_tags = Vec::new();
    for tag in tags {
        if tag.contains('@') {
            return Err(Error::invalid(format!(
                "`{tag}` names a digest; a docker archive can only carry tags"
            )));
        }
        repo_tags.push(with_default_tag(tag));
    }

    let config = image.config_descriptor();
    let config_name = format!("{}.json", config.digest().digest());
    // Engine 20.10 decompresses gzip layers on load but not zstd ones: those go in as
    // plain tars.
    let layer_name = |d: &Descriptor, diff_id: &Digest| match layer_encoding(d.media_type()) {
        Some(Compression::Gzip) => format!("{}.tar.gz", d.digest().digest()),
        Some(Compression::Zstd) => format!("{}.tar", diff_id.digest()),
        _ => format!("{}.tar", d.digest().digest()),
    };
    let entry = ArchiveManifestEntry {
        config: config_name.clone(),
        repo_tags: (!repo_tags.is_empty()).then(|| repo_tags.clone()),
        layers: image
            .layers()
            .iter()
            .zip(&diff_ids)
            .map(|(d, diff_id)| layer_name(d, diff_id))
            .collect(),
    };
    let manifest_json = canonical_json(&[entry]);

    let mut ar = ArchiveWriter::new(out);
    let mut config_reader = VerifyingReader::new(
        image.raw_config(),
        config.digest().clone(),
        Some(config.size()),
    );
    ar.file(&config_name, config.size(), &mut config_reader)?;
    for (layer, diff_id) in image.layers().iter().zip(&diff_ids) {
        if options.omit_layers.contains(diff_id) {
            continue;
        }
        let name = layer_name(layer, diff_id);
        if layer_encoding(layer.media_type()) == Some(Compression::Zstd) {
            let size = zstd_content_size(image, layer)?;
            let mut reader = zstd::Decoder::new(open_verified(image, layer)?)
                .context(|| format!("decompressing layer {}", layer.digest()))?;
            ar.file(&name, size, &mut reader)?;
        } else {
            let mut reader = open_verified(image, layer)?;
            ar.file(&name, layer.size(), &mut reader)?;
        }
    }
    ar.file(
        "manifest.json",
        manifest_json.len() as u64,
        &mut &manifest_json[..],
    )?;
    // Only pre-1.10 engines read `repositories`; it maps repository → tag → top layer ID.
    if let Some(top) = diff_ids.last() {
        let mut repos = serde_json::Map::new();
        for tag in &repo_tags {
            let (repo, tag) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
            let entry = repos.entry(repo.to_string()).or_insert_with(|| json!({}));
            if let Some(map) = entry.as_object_mut() {
                map.insert(tag.to_string(), top.digest().into());
            }
        }
        if !repos.is_empty() {
            let repositories = canonical_json(&repos);
            ar.file(
                "repositories",
                repositories.len() as u64,
                &mut &repositories[..],
            )?;
        }
    }
    ar.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::sha256_digest;

    fn manifest(content: &[u8]) -> Descriptor {
        descriptor(
            MediaType::ImageManifest,
            sha256_digest(content),
            content.len() as u64,
        )
        .unwrap()
    }

    fn names(entries: &[Descriptor]) -> Vec<(Option<String>, String)> {
        entries
            .iter()
            .map(|d| {
                (
                    d.annotations()
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .cloned(),
                    d.digest().digest()[..4].to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn index_entries_are_replaced_by_name_and_untagged_images_listed_once() {
        let (a, b) = (manifest(b"a"), manifest(b"b"));
        let mut entries = Vec::new();
        add_to_index(&mut entries, &a, &["x".into(), "y".into()]);
        add_to_index(&mut entries, &b, &["y".into()]);
        add_to_index(&mut entries, &b, &[]);
        add_to_index(&mut entries, &a, &[]);
        let a4 = a.digest().digest()[..4].to_string();
        let b4 = b.digest().digest()[..4].to_string();
        assert_eq!(
            names(&entries),
            [(Some("x".into()), a4), (Some("y".into()), b4)]
        );
    }

    #[test]
    fn docker_archives_refuse_digest_references() {
        let image = crate::oci::scratch(&crate::oci::Platform::linux_amd64(), 0).unwrap();
        let err = write_docker_archive(
            &mut Vec::new(),
            &*image,
            &["app@sha256:0000".into()],
            &DockerArchiveOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("names a digest"), "{err}");
    }
}
