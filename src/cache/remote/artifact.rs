//! The cache as an OCI image manifest: the index as its config blob, the step layers and
//! mount snapshots as its layers. It implements [`oci::Image`], so the registry push and
//! the OCI layout writer store it like any image.

use std::io::{self, Read};

use oci_spec::image::{Descriptor, Digest, ImageManifest, MediaType};

use super::CacheIndex;
use crate::oci::{self, Image};

/// The config media type that marks a manifest as an imgbuild cache.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.imgbuild.cache.index.v1+json";

/// The name of the cache in an OCI layout's `index.json` (`type=local`).
pub const LAYOUT_REF_NAME: &str = "imgbuild-cache";

/// A cache ready to be written: manifest, index and the blob store holding its layers.
pub struct CacheArtifact {
    parts: oci::ImageParts,
    blobs: oci::BlobStore,
}

impl CacheArtifact {
    /// The manifest of `index`, whose layers are read from `blobs` when written.
    pub fn new(index: &CacheIndex, blobs: oci::BlobStore) -> oci::Result<CacheArtifact> {
        let layers = index
            .layers()
            .into_iter()
            .map(|l| {
                let digest: Digest = l.digest.parse().map_err(|e| {
                    oci::Error::invalid(format!("cache layer digest `{}`: {e}", l.digest))
                })?;
                oci::manifest::descriptor(MediaType::from(l.media_type.as_str()), digest, l.size)
            })
            .collect::<oci::Result<Vec<Descriptor>>>()?;
        let parts = oci::ImageParts::oci(
            MediaType::Other(INDEX_MEDIA_TYPE.to_owned()),
            oci::canonical_json(index),
            layers,
        )?;
        Ok(CacheArtifact { parts, blobs })
    }

    /// The digests of the layers not in the local blob store.
    pub fn missing_blobs(&self) -> Vec<&Descriptor> {
        self.parts
            .manifest
            .layers()
            .iter()
            .filter(|d| !self.blobs.contains(d.digest()))
            .collect()
    }
}

/// Whether a manifest is an imgbuild cache's, and if not, what it is instead.
pub fn check_manifest(manifest: &ImageManifest) -> Result<(), String> {
    let config_type = manifest.config().media_type().to_string();
    if config_type == INDEX_MEDIA_TYPE {
        return Ok(());
    }
    Err(match config_type.as_str() {
        "application/vnd.buildkit.cacheconfig.v0" => {
            "it is a BuildKit cache, not an imgbuild cache".to_owned()
        }
        t if oci::manifest::is_config_media_type(&MediaType::from(t)) => {
            "it is an image, not an imgbuild cache".to_owned()
        }
        t => format!("its config is `{t}`, not an imgbuild cache index"),
    })
}

impl Image for CacheArtifact {
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
        let Some(layer) = self
            .parts
            .manifest
            .layers()
            .iter()
            .find(|d| d.digest() == digest)
        else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{digest} is not a blob of the cache"),
            ));
        };
        let reader = self
            .blobs
            .open_blob(digest, Some(layer.size()))
            .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))?;
        Ok(Box::new(reader))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::remote::{CachedStep, StepKind};
    use crate::cache::{KeyInputs, LayerRecord};

    #[test]
    fn the_manifest_lists_each_layer_once_and_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = oci::BlobStore::open(dir.path()).unwrap();
        let layer = blobs.put_bytes(b"layer bytes").unwrap();
        let record = LayerRecord {
            digest: layer.to_string(),
            diff_id: layer.to_string(),
            size: 11,
            media_type: MediaType::ImageLayerGzip.to_string(),
        };
        let mut index = CacheIndex::new();
        for instruction in ["RUN a", "RUN b"] {
            let inputs = KeyInputs {
                instruction: instruction.into(),
                ..KeyInputs::default()
            };
            index.steps.push(CachedStep {
                key: inputs.key(),
                kind: StepKind::Engine,
                inputs,
                layer: Some(record.clone()),
            });
        }
        let artifact = CacheArtifact::new(&index, blobs.clone()).unwrap();
        assert_eq!(artifact.layers().len(), 1);
        assert_eq!(check_manifest(artifact.manifest()), Ok(()));
        assert!(artifact.missing_blobs().is_empty());
        let mut back = Vec::new();
        artifact
            .open_blob(&layer)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b"layer bytes");
        let again = CacheArtifact::new(&index, blobs).unwrap();
        assert_eq!(artifact.digest(), again.digest());
        let parsed: CacheIndex = serde_json::from_slice(artifact.raw_config()).unwrap();
        assert_eq!(parsed, index);
    }

    #[test]
    fn other_manifests_are_named() {
        let image = oci::scratch(&oci::Platform::linux_amd64(), 0).unwrap();
        assert!(
            check_manifest(image.manifest())
                .unwrap_err()
                .contains("an image")
        );
    }
}
