//! Images made by imgbuild: a base image plus new layers and a new config (the packaging
//! stage), and `scratch`. The base's compressed blobs pass through untouched: the new
//! manifest lists the base's layer descriptors as they are (Docker media types mapped to
//! their OCI names, which changes no byte of any blob).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use oci_spec::image::{Digest, ImageManifest, MediaType};

use super::Platform;
use super::config::ImageConfig;
use super::digest::{VerifyingReader, sha256_digest};
use super::error::{Error, Result};
use super::image::Image;
use super::layer::WrittenLayer;
use super::manifest::{build_manifest, descriptor, oci_layer_media_type};

/// The manifest and config of an image, parsed once: what every [`Image`] implementation
/// answers its manifest and config questions from.
#[derive(Debug, Clone)]
pub struct ImageParts {
    pub raw_manifest: Vec<u8>,
    pub manifest: ImageManifest,
    pub media_type: String,
    pub raw_config: Vec<u8>,
}

impl ImageParts {
    /// An OCI manifest for `config` and `layers`.
    fn build(config: &ImageConfig, layers: Vec<oci_spec::image::Descriptor>) -> Result<Self> {
        Self::oci(MediaType::ImageConfig, config.to_json(), layers)
    }

    /// An OCI image manifest whose config blob is `raw_config` of `config_media_type`
    /// (an image config, or another artifact's, as the step cache's index).
    pub fn oci(
        config_media_type: MediaType,
        raw_config: Vec<u8>,
        layers: Vec<oci_spec::image::Descriptor>,
    ) -> Result<Self> {
        let config_descriptor = descriptor(
            config_media_type,
            sha256_digest(&raw_config),
            raw_config.len() as u64,
        )?;
        let (manifest, raw_manifest) = build_manifest(config_descriptor, layers)?;
        Ok(ImageParts {
            raw_manifest,
            manifest,
            media_type: MediaType::ImageManifest.to_string(),
            raw_config,
        })
    }

    /// The config bytes, if `digest` is the config's.
    pub fn config_blob(&self, digest: &Digest) -> Option<Box<dyn Read + Send>> {
        (self.manifest.config().digest() == digest)
            .then(|| Box::new(io::Cursor::new(self.raw_config.clone())) as Box<dyn Read + Send>)
    }
}

pub(crate) fn not_in_image(digest: &Digest) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("blob {digest} is not part of this image"),
    )
}

/// A base image with layers appended and a new config.
pub struct AssembledImage {
    base: Arc<dyn Image>,
    parts: ImageParts,
    new_layers: HashMap<Digest, (PathBuf, u64)>,
}

/// Appends `layers` to `base` with `config` (usually the base's config, edited by the
/// instructions, with one history entry per instruction). The config's `rootfs.diff_ids`
/// is set here: the base's, then the new layers'.
pub fn append_layers(
    base: Arc<dyn Image>,
    layers: &[WrittenLayer],
    mut config: ImageConfig,
) -> Result<AssembledImage> {
    let mut diff_ids = base.diff_ids()?;
    if diff_ids.len() != base.layers().len() {
        return Err(Error::invalid(format!(
            "base image {} has {} layers but its config lists {} diff_ids",
            base.digest(),
            base.layers().len(),
            diff_ids.len()
        )));
    }
    diff_ids.extend(layers.iter().map(|l| l.diff_id.clone()));
    config.set_diff_ids(&diff_ids);

    let mut descriptors: Vec<_> = base
        .layers()
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.set_media_type(oci_layer_media_type(d.media_type()));
            d
        })
        .collect();
    descriptors.extend(layers.iter().map(|l| l.descriptor.clone()));
    let parts = ImageParts::build(&config, descriptors)?;
    let new_layers = layers
        .iter()
        .map(|l| {
            (
                l.descriptor.digest().clone(),
                (l.path.clone(), l.descriptor.size()),
            )
        })
        .collect();
    Ok(AssembledImage {
        base,
        parts,
        new_layers,
    })
}

impl Image for AssembledImage {
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
        if let Some((path, size)) = self.new_layers.get(digest) {
            let file = File::open(path).map_err(|e| {
                io::Error::new(e.kind(), format!("opening layer {}: {e}", path.display()))
            })?;
            return Ok(Box::new(VerifyingReader::new(
                BufReader::with_capacity(1 << 20, file),
                digest.clone(),
                Some(*size),
            )));
        }
        if self
            .parts
            .manifest
            .layers()
            .iter()
            .any(|l| l.digest() == digest)
        {
            return self.base.open_blob(digest);
        }
        Err(not_in_image(digest))
    }
}

/// `FROM scratch`: no layers, an empty config for `platform` created at `epoch`.
pub fn scratch(platform: &Platform, epoch: i64) -> Result<Arc<dyn Image>> {
    let config = ImageConfig::new(platform, epoch)?;
    Ok(Arc::new(Scratch(ImageParts::build(&config, Vec::new())?)))
}

struct Scratch(ImageParts);

impl Image for Scratch {
    fn raw_manifest(&self) -> &[u8] {
        &self.0.raw_manifest
    }

    fn manifest_media_type(&self) -> &str {
        &self.0.media_type
    }

    fn manifest(&self) -> &ImageManifest {
        &self.0.manifest
    }

    fn raw_config(&self) -> &[u8] {
        &self.0.raw_config
    }

    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        self.0
            .config_blob(digest)
            .ok_or_else(|| not_in_image(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::DOCKER_LAYER_GZIP;
    use crate::oci::validate::validate_image;
    use crate::oci::{BlobStore, Compression, LayerBuilder, LayerOptions};
    use std::io::Read;

    /// A base whose manifest uses Docker's media types, as Docker Hub images do.
    struct DockerTyped(AssembledImage, ImageManifest);

    impl Image for DockerTyped {
        fn raw_manifest(&self) -> &[u8] {
            self.0.raw_manifest()
        }
        fn manifest_media_type(&self) -> &str {
            self.0.manifest_media_type()
        }
        fn manifest(&self) -> &ImageManifest {
            &self.1
        }
        fn raw_config(&self) -> &[u8] {
            self.0.raw_config()
        }
        fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
            self.0.open_blob(digest)
        }
    }

    #[test]
    fn base_blobs_pass_through_and_new_layers_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let layer = |content: &'static [u8]| {
            let mut b = LayerBuilder::new(store.clone(), LayerOptions::new(Compression::Gzip, 0));
            let meta = crate::oci::layer::EntryMeta {
                mode: 0o644,
                owner: crate::oci::layer::Ownership::ROOT,
            };
            b.add_bytes("/f", content, meta).unwrap();
            b.write().unwrap()
        };
        let empty = scratch(&Platform::linux_amd64(), 0).unwrap();
        let mut config = empty.config().unwrap();
        config.push_history("ADD f /", false).unwrap();
        let base = append_layers(empty, &[layer(b"base")], config).unwrap();
        let mut docker_manifest = base.manifest().clone();
        for l in docker_manifest.layers_mut() {
            l.set_media_type(MediaType::Other(DOCKER_LAYER_GZIP.into()));
        }
        let base: Arc<dyn Image> = Arc::new(DockerTyped(base, docker_manifest));

        let mut config = base.config().unwrap();
        config.push_history("COPY f /", false).unwrap();
        let top = layer(b"top");
        let app = append_layers(base.clone(), std::slice::from_ref(&top), config).unwrap();
        let first = &app.layers()[0];
        assert_eq!(first.digest(), base.layers()[0].digest());
        assert_eq!(first.size(), base.layers()[0].size());
        assert_eq!(first.media_type(), &MediaType::ImageLayerGzip);
        assert_eq!(app.layers()[1], top.descriptor);
        assert_eq!(app.diff_ids().unwrap()[1], top.diff_id);
        validate_image(&app).unwrap();
        assert!(app.open_blob(&crate::oci::sha256_digest(b"nope")).is_err());
    }
}
