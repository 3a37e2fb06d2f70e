//! Small real images for tests, until the OCI writer lands: gzip'd tar layers of
//! pseudo-random (incompressible) files, a config with the right diff IDs, and an OCI or
//! Docker schema-2 manifest, behind `imgbuild::oci::Image`.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use imgbuild::oci::Image;
use imgbuild::registry::blob_store::digest_of;
use oci_spec::image::{Digest, ImageManifest};
use sha2::{Digest as _, Sha256};

#[derive(Clone)]
pub struct Layer {
    pub compressed: Vec<u8>,
    pub diff_id: String,
}

/// A gzip'd tar with one file of `size` pseudo-random bytes derived from `seed`.
pub fn layer(seed: &str, size: usize) -> Layer {
    let mut state: u64 = seed.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        // xorshift64*: fast, and gzip cannot shrink it.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    data.truncate(size);
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, format!("{seed}.bin"), data.as_slice())
        .unwrap_or_else(|e| panic!("tar: {e}"));
    let tar = tar.into_inner().unwrap_or_else(|e| panic!("tar: {e}"));
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap_or_else(|e| panic!("gzip: {e}"));
    Layer {
        compressed: gz.finish().unwrap_or_else(|e| panic!("gzip: {e}")),
        diff_id,
    }
}

pub struct TestImage {
    raw_manifest: Vec<u8>,
    media_type: String,
    manifest: ImageManifest,
    raw_config: Vec<u8>,
    blobs: HashMap<String, Vec<u8>>,
    pub layers: Vec<Layer>,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

impl TestImage {
    /// An OCI image of these layers; `label` makes configs (and so digests) differ.
    pub fn oci(label: &str, layers: Vec<Layer>) -> TestImage {
        TestImage::build(label, layers, false)
    }

    /// A Docker schema-2 image.
    pub fn docker(label: &str, layers: Vec<Layer>) -> TestImage {
        TestImage::build(label, layers, true)
    }

    fn build(label: &str, layers: Vec<Layer>, docker: bool) -> TestImage {
        let (manifest_type, config_type, layer_type) = if docker {
            (
                DOCKER_MANIFEST,
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        } else {
            (
                OCI_MANIFEST,
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        };
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "test": label }, "Cmd": ["/bin/sh"] },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": layers.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
        });
        let raw_config = serde_json::to_vec(&config).unwrap_or_else(|e| panic!("{e}"));
        let mut blobs = HashMap::new();
        let config_digest = digest_of(&raw_config);
        blobs.insert(config_digest.to_string(), raw_config.clone());
        let layer_descriptors: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| {
                let digest = digest_of(&l.compressed);
                blobs.insert(digest.to_string(), l.compressed.clone());
                serde_json::json!({
                    "mediaType": layer_type,
                    "digest": digest.to_string(),
                    "size": l.compressed.len(),
                })
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {
                "mediaType": config_type,
                "digest": config_digest.to_string(),
                "size": raw_config.len(),
            },
            "layers": layer_descriptors,
        });
        let raw_manifest = serde_json::to_vec(&manifest).unwrap_or_else(|e| panic!("{e}"));
        TestImage {
            manifest: serde_json::from_slice(&raw_manifest).unwrap_or_else(|e| panic!("{e}")),
            raw_manifest,
            media_type: manifest_type.to_owned(),
            raw_config,
            blobs,
            layers,
        }
    }

    pub fn digest(&self) -> Digest {
        digest_of(&self.raw_manifest)
    }

    pub fn layer_digests(&self) -> Vec<Digest> {
        self.manifest
            .layers()
            .iter()
            .map(|l| l.digest().clone())
            .collect()
    }

    /// Every blob digest (config and layers).
    pub fn blob_digests(&self) -> Vec<Digest> {
        let mut digests = vec![self.manifest.config().digest().clone()];
        digests.extend(self.layer_digests());
        digests
    }

    pub fn blob(&self, digest: &Digest) -> Option<&[u8]> {
        self.blobs.get(digest.as_ref()).map(Vec::as_slice)
    }

    /// Total bytes of all blobs.
    pub fn total_size(&self) -> u64 {
        self.blobs.values().map(|b| b.len() as u64).sum()
    }

    /// Replaces a blob's bytes (keeping its digest): an image whose blob is corrupt.
    pub fn corrupt_blob(&mut self, digest: &Digest) {
        if let Some(bytes) = self.blobs.get_mut(digest.as_ref())
            && let Some(first) = bytes.first_mut()
        {
            *first ^= 0xff;
        }
    }
}

impl Image for TestImage {
    fn raw_manifest(&self) -> &[u8] {
        &self.raw_manifest
    }

    fn manifest_media_type(&self) -> &str {
        &self.media_type
    }

    fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }

    fn raw_config(&self) -> &[u8] {
        &self.raw_config
    }

    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        match self.blobs.get(digest.as_ref()) {
            Some(bytes) => Ok(Box::new(io::Cursor::new(bytes.clone()))),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{digest} is not in this test image"),
            )),
        }
    }
}
