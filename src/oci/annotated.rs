//! `--annotation`: an image whose manifest carries annotations, as BuildKit's image
//! exporter writes them into a single-platform manifest. Only the manifest is new (and so
//! the image digest); the config and every blob are the image's own.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::Arc;

use oci_spec::image::{Digest, ImageManifest, MediaType};

use super::error::{Error, Result};
use super::image::Image;
use super::json::canonical_json;

/// `image` with `annotations` added to its manifest's (a later value replacing the
/// image's own for the same key); `image` itself when there are none.
pub fn annotate(
    image: Arc<dyn Image>,
    annotations: &BTreeMap<String, String>,
) -> Result<Arc<dyn Image>> {
    if annotations.is_empty() {
        return Ok(image);
    }
    if image.manifest_media_type() != MediaType::ImageManifest.as_ref() {
        // Docker's schema 2 manifest has no annotations: a registry would drop them.
        return Err(Error::invalid(format!(
            "--annotation needs an OCI manifest, and the image is {} (the base image unchanged, \
             in Docker's format); add an instruction to the final stage (e.g. a LABEL) so \
             imgbuild writes the manifest",
            image.manifest_media_type()
        )));
    }
    let mut manifest = image.manifest().clone();
    let mut merged = manifest.annotations().clone().unwrap_or_default();
    merged.extend(annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
    manifest.set_annotations(Some(merged.into_iter().collect()));
    let raw_manifest = canonical_json(&manifest);
    Ok(Arc::new(AnnotatedImage {
        inner: image,
        manifest,
        raw_manifest,
    }))
}

struct AnnotatedImage {
    inner: Arc<dyn Image>,
    manifest: ImageManifest,
    raw_manifest: Vec<u8>,
}

impl Image for AnnotatedImage {
    fn raw_manifest(&self) -> &[u8] {
        &self.raw_manifest
    }

    fn manifest_media_type(&self) -> &str {
        self.inner.manifest_media_type()
    }

    fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }

    fn raw_config(&self) -> &[u8] {
        self.inner.raw_config()
    }

    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        self.inner.open_blob(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{ImageConfig, Platform, append_layers, scratch};

    #[test]
    fn annotations_go_into_the_manifest_and_nothing_else_changes() {
        let platform = Platform::linux_amd64();
        let config = ImageConfig::new(&platform, 0).unwrap();
        let base = scratch(&platform, 0).unwrap();
        let image: Arc<dyn Image> = Arc::new(append_layers(base, &[], config).unwrap());
        let same = annotate(image.clone(), &BTreeMap::new()).unwrap();
        assert_eq!(same.digest(), image.digest());

        let annotations = BTreeMap::from([
            (
                "org.opencontainers.image.description".to_owned(),
                "hello".to_owned(),
            ),
            ("com.example.team".to_owned(), "ci".to_owned()),
        ]);
        let annotated = annotate(image.clone(), &annotations).unwrap();
        assert_ne!(annotated.digest(), image.digest());
        assert_eq!(annotated.raw_config(), image.raw_config());
        assert_eq!(annotated.layers(), image.layers());
        let parsed: serde_json::Value = serde_json::from_slice(annotated.raw_manifest()).unwrap();
        assert_eq!(parsed["annotations"]["com.example.team"], "ci");
        assert_eq!(
            parsed["annotations"]["org.opencontainers.image.description"],
            "hello"
        );
        // The same annotations give the same digest.
        assert_eq!(
            annotate(image, &annotations).unwrap().digest(),
            annotated.digest()
        );
    }
}
