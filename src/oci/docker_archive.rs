//! Reading `docker save` archives (`manifest.json`, a config, layer tars) as source images.
//! An archive has no registry manifest, so an OCI manifest is made for it: uncompressed
//! layers are described by their diff_id (verified when read), compressed ones are hashed
//! once when the archive is opened.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use oci_spec::image::{Digest, ImageManifest, MediaType};
use serde::{Deserialize, Serialize};

use super::assembled::{ImageParts, not_in_image};
use super::config::ImageConfig;
use super::digest::{HashingReader, VerifyingReader, sha256_digest};
use super::error::{Error, IoContext, Result};
use super::image::Image;
use super::manifest::{build_manifest, descriptor};
use super::source::{FileSource, open_source};

const METADATA_LIMIT: u64 = 16 << 20;

/// One image of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveManifestEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

/// An image read from a docker archive.
pub struct DockerArchiveImage {
    source: Arc<dyn FileSource>,
    parts: ImageParts,
    layer_paths: HashMap<Digest, (String, u64)>,
}

/// `name` with `:latest` added when it has neither tag nor digest, as Docker stores tags.
pub fn with_default_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// Opens the image tagged `reference` in a docker archive (a tar or its extracted
/// directory), or its only image when `reference` is `None`.
pub fn open_docker_archive(path: &Path, reference: Option<&str>) -> Result<DockerArchiveImage> {
    let source: Arc<dyn FileSource> = Arc::from(open_source(path)?);
    let location = source.describe();
    let raw = source
        .read_all("manifest.json", METADATA_LIMIT)
        .map_err(|_| {
            Error::invalid(format!(
                "{location} is not a docker archive: it has no readable manifest.json"
            ))
        })?;
    let entries: Vec<ArchiveManifestEntry> = serde_json::from_slice(&raw)
        .map_err(|e| Error::invalid(format!("{location}: manifest.json is not valid: {e}")))?;
    let entry = match reference {
        Some(r) => {
            let wanted = with_default_tag(r);
            entries.iter().find(|e| {
                e.repo_tags
                    .iter()
                    .flatten()
                    .any(|t| *t == wanted || with_default_tag(t) == wanted)
            })
        }
        None if entries.len() == 1 => entries.first(),
        None => None,
    };
    let Some(entry) = entry else {
        let tags: Vec<&str> = entries
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten())
            .map(String::as_str)
            .collect();
        return Err(Error::invalid(match reference {
            Some(r) => format!(
                "{location} has no image tagged `{r}` (tags: {})",
                tags.join(", ")
            ),
            None => format!(
                "{location} holds {} images (tags: {}); name the one to use",
                entries.len(),
                tags.join(", ")
            ),
        }));
    };

    let raw_config = source.read_all(&entry.config, METADATA_LIMIT)?;
    let config_digest = sha256_digest(&raw_config);
    if let Some(named) = hex_in_name(&entry.config)
        && named != config_digest.digest()
    {
        return Err(Error::CorruptBlob {
            digest: format!("sha256:{named}"),
            problem: format!("{} in {location} has digest {config_digest}", entry.config),
        });
    }
    let diff_ids = ImageConfig::from_json(&raw_config)?.diff_ids()?;
    if diff_ids.len() != entry.layers.len() {
        return Err(Error::invalid(format!(
            "{location}: manifest.json lists {} layers, the config {} diff_ids",
            entry.layers.len(),
            diff_ids.len()
        )));
    }

    let mut descriptors = Vec::new();
    let mut layer_paths = HashMap::new();
    for (layer_path, diff_id) in entry.layers.iter().zip(&diff_ids) {
        let (mut reader, size) = source
            .open(layer_path)
            .context(|| format!("opening {layer_path} in {location}"))?
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{location} has no {layer_path}, listed in manifest.json"
                ))
            })?;
        let mut magic = [0u8; 4];
        let got = read_up_to(&mut reader, &mut magic)
            .context(|| format!("reading {layer_path} in {location}"))?;
        let magic = magic.get(..got).unwrap_or_default();
        let (media_type, digest) =
            if magic.starts_with(&[0x1f, 0x8b]) || magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                let media_type = if magic.starts_with(&[0x1f, 0x8b]) {
                    MediaType::ImageLayerGzip
                } else {
                    MediaType::ImageLayerZstd
                };
                let (mut reader, _) = source
                    .open(layer_path)
                    .context(|| format!("opening {layer_path} in {location}"))?
                    .ok_or_else(|| Error::invalid(format!("{location} has no {layer_path}")))?;
                let mut hashing = HashingReader::new(&mut reader);
                io::copy(&mut hashing, &mut io::sink())
                    .context(|| format!("reading {layer_path} in {location}"))?;
                (media_type, hashing.finish().1)
            } else {
                (MediaType::ImageLayer, diff_id.clone())
            };
        layer_paths.insert(digest.clone(), (layer_path.clone(), size));
        descriptors.push(descriptor(media_type, digest, size)?);
    }
    let config_descriptor = descriptor(
        MediaType::ImageConfig,
        config_digest,
        raw_config.len() as u64,
    )?;
    let (manifest, raw_manifest) = build_manifest(config_descriptor, descriptors)?;
    Ok(DockerArchiveImage {
        source,
        parts: ImageParts {
            raw_manifest,
            manifest,
            media_type: MediaType::ImageManifest.to_string(),
            raw_config,
        },
        layer_paths,
    })
}

fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(buf.get_mut(filled..).unwrap_or_default())? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The sha256 hex a file name carries (`HEX.json`, `blobs/sha256/HEX`), if any.
fn hex_in_name(path: &str) -> Option<&str> {
    let base = path.rsplit('/').next()?;
    let stem = base.strip_suffix(".json").unwrap_or(base);
    (stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit())).then_some(stem)
}

impl Image for DockerArchiveImage {
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
        let (path, size) = self
            .layer_paths
            .get(digest)
            .ok_or_else(|| not_in_image(digest))?;
        let (reader, _) = self.source.open(path)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{path} is missing from {}", self.source.describe()),
            )
        })?;
        Ok(Box::new(VerifyingReader::new(
            reader,
            digest.clone(),
            Some(*size),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tags_like_docker() {
        assert_eq!(with_default_tag("app"), "app:latest");
        assert_eq!(
            with_default_tag("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(
            with_default_tag("localhost:5000/app:1"),
            "localhost:5000/app:1"
        );
        assert_eq!(with_default_tag("app@sha256:00"), "app@sha256:00");
    }

    #[test]
    fn config_names_carry_their_digest() {
        let hex = "a".repeat(64);
        assert_eq!(hex_in_name(&format!("{hex}.json")), Some(hex.as_str()));
        assert_eq!(
            hex_in_name(&format!("blobs/sha256/{hex}")),
            Some(hex.as_str())
        );
        assert_eq!(hex_in_name("config.json"), None);
    }
}
