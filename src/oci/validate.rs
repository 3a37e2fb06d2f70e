//! `validate_image`: checks that an image is internally consistent, reading every blob.
//! Every writer's tests run it on what they wrote.

use std::io::{self, Read};

use oci_spec::image::ImageManifest;

use super::Compression;
use super::digest::{HashingReader, sha256_digest};
use super::error::{Error, Result};
use super::image::Image;
use super::manifest::{is_config_media_type, is_manifest_media_type, layer_encoding};

/// Checks the manifest against its media type, the config against its descriptor, every
/// layer's digest, size and diff_id, and that history and layers agree. Returns every
/// problem found, one per line.
pub fn validate_image(image: &dyn Image) -> Result<()> {
    let mut problems = Vec::new();

    match serde_json::from_slice::<ImageManifest>(image.raw_manifest()) {
        Ok(parsed) if parsed != *image.manifest() => {
            problems.push("the parsed manifest differs from the raw manifest".to_string())
        }
        Ok(_) => {}
        Err(e) => problems.push(format!("the raw manifest does not parse: {e}")),
    }
    let manifest = image.manifest();
    if manifest.schema_version() != 2 {
        problems.push(format!(
            "schemaVersion is {}, not 2",
            manifest.schema_version()
        ));
    }
    if !is_manifest_media_type(image.manifest_media_type()) {
        problems.push(format!(
            "manifest media type {} is not an image manifest",
            image.manifest_media_type()
        ));
    }
    if let Some(mt) = manifest.media_type()
        && mt.as_ref() != image.manifest_media_type()
    {
        problems.push(format!(
            "manifest says mediaType {mt} but the image reports {}",
            image.manifest_media_type()
        ));
    }

    let config = manifest.config();
    if !is_config_media_type(config.media_type()) {
        problems.push(format!(
            "config media type {} is not an image config",
            config.media_type()
        ));
    }
    let config_digest = sha256_digest(image.raw_config());
    if &config_digest != config.digest() {
        problems.push(format!(
            "config has digest {config_digest}, the manifest says {}",
            config.digest()
        ));
    }
    if image.raw_config().len() as u64 != config.size() {
        problems.push(format!(
            "config has {} bytes, the manifest says {}",
            image.raw_config().len(),
            config.size()
        ));
    }
    match image.open_blob(config.digest()).and_then(|mut r| {
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes).map(|_| bytes)
    }) {
        Ok(bytes) if bytes != image.raw_config() => {
            problems.push("the config blob differs from the raw config".to_string())
        }
        Ok(_) => {}
        Err(e) => problems.push(format!("reading the config blob: {e}")),
    }

    let (diff_ids, history) = match image.config() {
        Ok(c) => (c.diff_ids(), c.history()),
        Err(e) => (Err(e), Ok(Vec::new())),
    };
    let diff_ids = diff_ids.unwrap_or_else(|e| {
        problems.push(e.to_string());
        Vec::new()
    });
    if diff_ids.len() != manifest.layers().len() {
        problems.push(format!(
            "the manifest has {} layers, the config {} diff_ids",
            manifest.layers().len(),
            diff_ids.len()
        ));
    }
    match history {
        Ok(history) if !history.is_empty() => {
            let with_layer = history
                .iter()
                .filter(|h| h.empty_layer() != Some(true))
                .count();
            if with_layer != manifest.layers().len() {
                problems.push(format!(
                    "history has {with_layer} entries with a layer, the manifest {} layers",
                    manifest.layers().len()
                ));
            }
        }
        Ok(_) => {}
        Err(e) => problems.push(e.to_string()),
    }

    for (i, layer) in manifest.layers().iter().enumerate() {
        let Some(encoding) = layer_encoding(layer.media_type()) else {
            problems.push(format!(
                "layer {i} has media type {}, not a layer type",
                layer.media_type()
            ));
            continue;
        };
        match read_layer(image, layer.digest(), encoding) {
            Ok((digest, size, diff_id)) => {
                if &digest != layer.digest() {
                    problems.push(format!(
                        "layer {i} has digest {digest}, the manifest says {}",
                        layer.digest()
                    ));
                }
                if size != layer.size() {
                    problems.push(format!(
                        "layer {i} has {size} bytes, the manifest says {}",
                        layer.size()
                    ));
                }
                if let Some(expected) = diff_ids.get(i).filter(|d| **d != diff_id) {
                    problems.push(format!(
                        "layer {i} has diff_id {diff_id}, the config says {expected}"
                    ));
                }
            }
            Err(e) => problems.push(format!(
                "reading layer {i} ({}): {}",
                layer.digest(),
                error_chain(&e)
            )),
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "image {} is not valid:\n  {}",
            image.digest(),
            problems.join("\n  ")
        )))
    }
}

/// Reads a layer once: the compressed digest and size, and the uncompressed digest.
fn read_layer(
    image: &dyn Image,
    digest: &oci_spec::image::Digest,
    encoding: Compression,
) -> io::Result<(oci_spec::image::Digest, u64, oci_spec::image::Digest)> {
    let mut compressed = HashingReader::new(image.open_blob(digest)?);
    let diff_id = {
        let mut decoded: Box<dyn Read + '_> = match encoding {
            Compression::Uncompressed => Box::new(&mut compressed),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut compressed)),
            Compression::Zstd => Box::new(zstd::Decoder::new(&mut compressed)?),
        };
        let mut uncompressed = HashingReader::new(&mut decoded);
        io::copy(&mut uncompressed, &mut io::sink())?;
        uncompressed.finish().1
    };
    // Whatever the decoder left unread still belongs to the blob (and ends its verification).
    io::copy(&mut compressed, &mut io::sink())?;
    let (_, digest, size) = compressed.finish();
    Ok((digest, size, diff_id))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Platform;
    use crate::oci::assembled::ImageParts;
    use crate::oci::config::ImageConfig;
    use crate::oci::manifest::{build_manifest, descriptor};
    use oci_spec::image::{Digest, MediaType};
    use std::collections::HashMap;
    use std::io::Write;

    /// An image made of in-memory blobs, free to be inconsistent.
    struct Fake {
        parts: ImageParts,
        blobs: HashMap<Digest, Vec<u8>>,
    }

    impl Image for Fake {
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
            let bytes = self
                .blobs
                .get(digest)
                .cloned()
                .ok_or(io::ErrorKind::NotFound)?;
            Ok(Box::new(io::Cursor::new(bytes)))
        }
    }

    /// One gzip layer of `content`; the config claims `diff_id`, the manifest `size`.
    fn fake(content: &[u8], diff_id: Option<Digest>, size_delta: i64, history: usize) -> Fake {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(content).unwrap();
        let blob = gz.finish().unwrap();
        let mut config = ImageConfig::new(&Platform::linux_amd64(), 0).unwrap();
        config.set_diff_ids(&[diff_id.unwrap_or_else(|| sha256_digest(content))]);
        for _ in 0..history {
            config.push_history("RUN x", false).unwrap();
        }
        let raw_config = config.to_json();
        let config_d = descriptor(
            MediaType::ImageConfig,
            sha256_digest(&raw_config),
            raw_config.len() as u64,
        )
        .unwrap();
        let size = (blob.len() as i64 + size_delta) as u64;
        let layer_d = descriptor(MediaType::ImageLayerGzip, sha256_digest(&blob), size).unwrap();
        let (manifest, raw_manifest) =
            build_manifest(config_d.clone(), vec![layer_d.clone()]).unwrap();
        let blobs = HashMap::from([
            (config_d.digest().clone(), raw_config.clone()),
            (layer_d.digest().clone(), blob),
        ]);
        Fake {
            parts: ImageParts {
                raw_manifest,
                manifest,
                media_type: MediaType::ImageManifest.to_string(),
                raw_config,
            },
            blobs,
        }
    }

    #[test]
    fn a_consistent_image_passes() {
        validate_image(&fake(b"layer", None, 0, 1)).unwrap();
    }

    #[test]
    fn each_inconsistency_is_reported() {
        let wrong = sha256_digest(b"other");
        let err = validate_image(&fake(b"layer", Some(wrong.clone()), 0, 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("diff_id") && err.contains(&wrong.to_string()),
            "{err}"
        );
        let err = validate_image(&fake(b"layer", None, 3, 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bytes, the manifest says"), "{err}");
        let err = validate_image(&fake(b"layer", None, 0, 2))
            .unwrap_err()
            .to_string();
        assert!(err.contains("history has 2 entries"), "{err}");
        let mut bad_config = fake(b"layer", None, 0, 1);
        bad_config.parts.raw_config.push(b' ');
        let err = validate_image(&bad_config).unwrap_err().to_string();
        assert!(err.contains("config has digest"), "{err}");
    }
}
