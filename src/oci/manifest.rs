//! Manifests and media types: building an OCI manifest from descriptors, and what each
//! layer media type (OCI or Docker) says about compression.

use oci_spec::image::{
    Descriptor, DescriptorBuilder, Digest, ImageManifest, ImageManifestBuilder, MediaType,
};

use super::Compression;
use super::error::{Error, Result};
use super::json::canonical_json;

/// Docker schema 2 media types, which base images pulled from Docker registries carry.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// The compression of a layer media type; `None` if it is not a layer type.
pub fn layer_encoding(media_type: &MediaType) -> Option<Compression> {
    use Compression::*;
    match media_type {
        MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Some(Uncompressed),
        MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => Some(Gzip),
        MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => Some(Zstd),
        MediaType::Other(m) => match m.as_str() {
            DOCKER_LAYER_GZIP | DOCKER_FOREIGN_LAYER_GZIP => Some(Gzip),
            DOCKER_LAYER_TAR => Some(Uncompressed),
            _ => None,
        },
        _ => None,
    }
}

/// A reader of a layer blob's uncompressed tar, as its media type says it is compressed (a
/// type that is not a layer's is read as it is). Concatenated gzip members are one stream.
pub fn uncompressed_layer<'a>(
    media_type: &MediaType,
    blob: impl std::io::Read + 'a,
) -> std::io::Result<Box<dyn std::io::Read + 'a>> {
    layer_encoding(media_type)
        .unwrap_or(Compression::Uncompressed)
        .decoder(blob)
}

impl Compression {
    /// A reader of the uncompressed tar in a blob compressed this way. Concatenated gzip
    /// members and zstd frames are read as one stream, so the end of the output is the end
    /// of the blob.
    pub fn decoder<'a>(
        self,
        blob: impl std::io::Read + 'a,
    ) -> std::io::Result<Box<dyn std::io::Read + 'a>> {
        let blob = std::io::BufReader::with_capacity(1 << 16, blob);
        Ok(match self {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(blob)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(blob)?),
            Compression::Uncompressed => Box::new(blob),
        })
    }
}

/// The OCI equivalent of a Docker layer media type (the blob stays the same).
pub fn oci_layer_media_type(media_type: &MediaType) -> MediaType {
    match media_type {
        MediaType::Other(m) => match m.as_str() {
            DOCKER_LAYER_GZIP => MediaType::ImageLayerGzip,
            DOCKER_LAYER_TAR => MediaType::ImageLayer,
            DOCKER_FOREIGN_LAYER_GZIP => MediaType::ImageLayerNonDistributableGzip,
            _ => media_type.clone(),
        },
        other => other.clone(),
    }
}

pub fn is_config_media_type(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::ImageConfig)
        || matches!(media_type, MediaType::Other(m) if m == DOCKER_CONFIG)
}

pub fn is_manifest_media_type(media_type: &str) -> bool {
    media_type == MediaType::ImageManifest.as_ref() || media_type == DOCKER_MANIFEST
}

pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == MediaType::ImageIndex.as_ref() || media_type == DOCKER_MANIFEST_LIST
}

pub(crate) fn descriptor(media_type: MediaType, digest: Digest, size: u64) -> Result<Descriptor> {
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(size)
        .build()
        .map_err(|e| Error::invalid(format!("building a descriptor: {e}")))
}

/// An OCI image manifest and its canonical bytes.
pub fn build_manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
) -> Result<(ImageManifest, Vec<u8>)> {
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .map_err(|e| Error::invalid(format!("building a manifest: {e}")))?;
    let bytes = canonical_json(&manifest);
    Ok((manifest, bytes))
}

/// Parses a manifest, naming where it came from on failure.
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<ImageManifest> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("{what} is not a valid image manifest: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layer media type imgbuild reads, OCI and Docker, and types it must not take
    /// for a layer. Unpacking into snapshots, the image's file system and re-compression
    /// all decide by this one function.
    #[test]
    fn layer_media_types_name_their_compression() {
        use Compression::*;
        for (media_type, want) in [
            ("application/vnd.oci.image.layer.v1.tar", Some(Uncompressed)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                Some(Uncompressed),
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Some(Zstd),
            ),
            (DOCKER_LAYER_TAR, Some(Uncompressed)),
            (DOCKER_LAYER_GZIP, Some(Gzip)),
            (DOCKER_FOREIGN_LAYER_GZIP, Some(Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+bzip2", None),
            ("application/vnd.oci.image.config.v1+json", None),
            (DOCKER_CONFIG, None),
            ("application/octet-stream", None),
        ] {
            let parsed = MediaType::from(media_type);
            assert_eq!(layer_encoding(&parsed), want, "{media_type}");
        }
    }

    #[test]
    fn each_compression_decodes_to_the_tar() {
        use std::io::{Read, Write};
        let tar = b"not really a tar, but bytes all the same".repeat(100);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&tar).unwrap();
        let gzip = gzip.finish().unwrap();
        let zstd = zstd::encode_all(&tar[..], 3).unwrap();
        for (compression, blob) in [
            (Compression::Uncompressed, tar.clone()),
            (Compression::Gzip, gzip),
            (Compression::Zstd, zstd),
        ] {
            let mut out = Vec::new();
            compression
                .decoder(&blob[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == tar, "{compression:?}");
        }
    }
}
