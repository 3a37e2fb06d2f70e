//! The image abstraction every source and sink speaks (after go-containerregistry's
//! `v1.Image`): a manifest, a config, and blobs opened by digest. Registry pulls, OCI
//! layouts, docker archives and the packaging stage implement it; layout/archive writers,
//! engine load and registry push take `&dyn Image`.

use std::io::{self, Read};

use oci_spec::image::{Descriptor, Digest, ImageManifest};

use super::config::ImageConfig;
use super::digest::sha256_digest;
use super::error::Result;

pub trait Image: Send + Sync {
    /// The manifest exactly as it is written or pushed; the image digest is its sha256.
    fn raw_manifest(&self) -> &[u8];

    /// The manifest's media type (OCI or Docker schema 2).
    fn manifest_media_type(&self) -> &str;

    /// The parsed manifest (config and layer descriptors).
    fn manifest(&self) -> &ImageManifest;

    /// The config blob exactly as referenced by the manifest.
    fn raw_config(&self) -> &[u8];

    /// Opens a blob of this image (config or layer), compressed as stored.
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>>;

    /// The image digest: the sha256 of the manifest bytes.
    fn digest(&self) -> Digest {
        sha256_digest(self.raw_manifest())
    }

    /// The config's descriptor in the manifest.
    fn config_descriptor(&self) -> &Descriptor {
        self.manifest().config()
    }

    /// Layer descriptors, bottom first.
    fn layers(&self) -> &[Descriptor] {
        self.manifest().layers()
    }

    /// The parsed config (unknown fields kept).
    fn config(&self) -> Result<ImageConfig> {
        ImageConfig::from_json(self.raw_config())
    }

    /// Uncompressed layer digests from the config, bottom first.
    fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.config()?.diff_ids()
    }
}
