//! Reading OCI image layouts (a directory or the same as a tar) as source images. Every
//! blob is verified against its digest as it is read; a mismatch names the blob.

use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest};

use super::Platform;
use super::assembled::{ImageParts, not_in_image};
use super::digest::{VerifyingReader, require_sha256, sha256_digest};
use super::error::{Error, IoContext, Result};
use super::image::Image;
use super::manifest::{is_index_media_type, is_manifest_media_type, parse_manifest};
use super::source::{FileSource, open_source};

/// The annotation naming an image in an OCI layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's and BuildKit's annotation for the full image name.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Manifests, indexes and configs are small; refuse to load anything bigger into memory.
const METADATA_LIMIT: u64 = 16 << 20;

/// An image read from an OCI layout directory or tar.
pub struct LayoutImage {
    source: Arc<dyn FileSource>,
    parts: ImageParts,
}

/// Opens the image named `reference` (its `org.opencontainers.image.ref.name`) in the OCI
/// layout at `path` (a directory or a tar of one), or the only image when `reference` is
/// `None`. Multi-platform indexes are resolved to `platform`.
pub fn open_oci_layout(
    path: &Path,
    reference: Option<&str>,
    platform: &Platform,
) -> Result<LayoutImage> {
    open_selected(path, reference, platform, false)
}

/// [`open_oci_layout`] for `oci-layout://PATH:TAG`: `tag` names the image as buildx names
/// it (`v1`), or is the tag of the one image named as skopeo and imgbuild name it (`app:v1`).
pub fn open_oci_layout_tagged(
    path: &Path,
    tag: Option<&str>,
    platform: &Platform,
) -> Result<LayoutImage> {
    open_selected(path, tag, platform, true)
}

/// `PATH[:TAG]` of an `oci-layout://` reference: the tag is what follows the last `:` when
/// what precedes it is a layout directory (a path may hold a `:` too).
pub fn split_layout_tag(layout: &str) -> (&str, Option<&str>) {
    match layout.rsplit_once(':') {
        Some((path, tag))
            if !tag.is_empty()
                && !tag.contains('/')
                && Path::new(path).join("oci-layout").is_file() =>
        {
            (path, Some(tag))
        }
        _ => (layout, None),
    }
}

fn open_selected(
    path: &Path,
    reference: Option<&str>,
    platform: &Platform,
    tag_fallback: bool,
) -> Result<LayoutImage> {
    let source: Arc<dyn FileSource> = Arc::from(open_source(path)?);
    let layout = source.read_all("oci-layout", METADATA_LIMIT).map_err(|_| {
        Error::invalid(format!(
            "{} is not an OCI image layout: it has no readable oci-layout file",
            path.display()
        ))
    })?;
    let version: serde_json::Value = serde_json::from_slice(&layout)
        .map_err(|e| Error::invalid(format!("{}: oci-layout is not JSON: {e}", path.display())))?;
    if version.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
        return Err(Error::invalid(format!(
            "{}: unsupported imageLayoutVersion {}",
            path.display(),
            version
                .get("imageLayoutVersion")
                .unwrap_or(&serde_json::Value::Null)
        )));
    }
    let index_bytes = source.read_all("index.json", METADATA_LIMIT)?;
    let index: ImageIndex = serde_json::from_slice(&index_bytes).map_err(|e| {
        Error::invalid(format!(
            "{}: index.json is not a valid image index: {e}",
            path.display()
        ))
    })?;

    let mut chosen = select(
        index.manifests(),
        reference,
        &source.describe(),
        tag_fallback,
    )?;
    // Follow nested indexes (multi-platform images) down to one manifest.
    for _ in 0..8 {
        if is_manifest_media_type(chosen.media_type().as_ref()) {
            let raw_manifest = read_verified(&*source, &chosen)?;
            let manifest = parse_manifest(&raw_manifest, &format!("manifest {}", chosen.digest()))?;
            let raw_config = read_verified(&*source, manifest.config())?;
            return Ok(LayoutImage {
                source,
                parts: ImageParts {
                    raw_manifest,
                    media_type: chosen.media_type().to_string(),
                    manifest,
                    raw_config,
                },
            });
        }
        if !is_index_media_type(chosen.media_type().as_ref()) {
            return Err(Error::invalid(format!(
                "{}: {} has media type {}, neither an image manifest nor an index",
                source.describe(),
                chosen.digest(),
                chosen.media_type()
            )));
        }
        let raw = read_verified(&*source, &chosen)?;
        let nested: ImageIndex = serde_json::from_slice(&raw)
            .map_err(|e| Error::invalid(format!("index {} is not valid: {e}", chosen.digest())))?;
        chosen = for_platform(nested.manifests(), platform, chosen.digest())?;
    }
    Err(Error::invalid(format!(
        "{}: indexes nest too deeply",
        source.describe()
    )))
}

fn ref_names(d: &Descriptor) -> impl Iterator<Item = &String> {
    d.annotations()
        .iter()
        .flat_map(|a| [a.get(REF_NAME), a.get(CONTAINERD_NAME)])
        .flatten()
}

fn select(
    manifests: &[Descriptor],
    reference: Option<&str>,
    location: &str,
    tag_fallback: bool,
) -> Result<Descriptor> {
    let named = |matches: &dyn Fn(&str) -> bool| -> Vec<&Descriptor> {
        manifests
            .iter()
            .filter(|d| ref_names(d).any(|n| matches(n)))
            .collect()
    };
    let candidates: Vec<&Descriptor> = match reference {
        Some(r) => match named(&|n| n == r) {
            exact if !exact.is_empty() || !tag_fallback => exact,
            _ => named(&|n| n.rsplit_once(':').is_some_and(|(_, tag)| tag == r)),
        },
        None => manifests.iter().collect(),
    };
    let mut digests: Vec<&Digest> = Vec::new();
    for d in &candidates {
        if !digests.contains(&d.digest()) {
            digests.push(d.digest());
        }
    }
    match (candidates.first(), digests.len()) {
        (Some(d), 1) => Ok((*d).clone()),
        _ => {
            let mut names: Vec<&str> = manifests
                .iter()
                .filter_map(|d| d.annotations().as_ref()?.get(REF_NAME).map(String::as_str))
                .collect();
            names.sort();
            let available = if names.is_empty() {
                "none is named".to_string()
            } else {
                format!("names: {}", names.join(", "))
            };
            Err(match reference {
                Some(r) => {
                    Error::invalid(format!("{location} has no image named `{r}` ({available})"))
                }
                None if manifests.is_empty() => {
                    Error::invalid(format!("{location} holds no image"))
                }
                None => Error::invalid(format!(
                    "{location} holds {} images ({available}); name the one to use",
                    digests.len()
                )),
            })
        }
    }
}

fn for_platform(
    manifests: &[Descriptor],
    platform: &Platform,
    index: &Digest,
) -> Result<Descriptor> {
    let matches = |d: &&Descriptor| match d.platform() {
        Some(p) => {
            p.os().to_string() == platform.os
                && p.architecture().to_string() == platform.architecture
                && (platform.variant.is_none()
                    || p.variant().as_deref() == platform.variant.as_deref())
        }
        None => false,
    };
    if let Some(d) = manifests.iter().find(matches) {
        return Ok(d.clone());
    }
    match manifests {
        [only] if only.platform().is_none() => Ok(only.clone()),
        _ => Err(Error::invalid(format!(
            "index {index} has no image for platform {platform}"
        ))),
    }
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.digest())
}

/// Reads a small blob whole and checks its digest and size.
fn read_verified(source: &dyn FileSource, d: &Descriptor) -> Result<Vec<u8>> {
    require_sha256(d.digest(), "a blob")?;
    let path = blob_path(d.digest());
    let Some((reader, size)) = source
        .open(&path)
        .context(|| format!("opening {path} in {}", source.describe()))?
    else {
        return Err(Error::invalid(format!(
            "blob {} is missing from {}",
            d.digest(),
            source.describe()
        )));
    };
    if size > METADATA_LIMIT {
        return Err(Error::invalid(format!(
            "blob {} is {size} bytes, too big for a manifest or config",
            d.digest()
        )));
    }
    let mut bytes = Vec::new();
    reader
        .take(METADATA_LIMIT)
        .read_to_end(&mut bytes)
        .context(|| format!("reading {path} in {}", source.describe()))?;
    let actual = sha256_digest(&bytes);
    if &actual != d.digest() {
        return Err(Error::CorruptBlob {
            digest: d.digest().to_string(),
            problem: format!("its content in {} has digest {actual}", source.describe()),
        });
    }
    if bytes.len() as u64 != d.size() {
        return Err(Error::CorruptBlob {
            digest: d.digest().to_string(),
            problem: format!("it has {} bytes, {} expected", bytes.len(), d.size()),
        });
    }
    Ok(bytes)
}

impl Image for LayoutImage {
    fn raw_manifest(&self) -> &[u8] {
        &self.parts.raw_manifest
    }

    fn manifest_media_type(&self) -> &str {
        &self.parts.media_type
    }

    fn manifest(&self) -> &ImageManifest {
        &self.parts.manifest
    }

    fn raw_config(&self) -> &[u8] {
        &self.parts.raw_config
    }

    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        if let Some(config) = self.parts.config_blob(digest) {
            return Ok(config);
        }
        let layer = self
            .parts
            .manifest
            .layers()
            .iter()
            .find(|l| l.digest() == digest)
            .ok_or_else(|| not_in_image(digest))?;
        require_sha256(digest, "a layer")
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let (reader, _) = self.source.open(&blob_path(digest))?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("blob {digest} is missing from {}", self.source.describe()),
            )
        })?;
        Ok(Box::new(VerifyingReader::new(
            reader,
            digest.clone(),
            Some(layer.size()),
        )))
    }
}
