//! A multi-platform image: an OCI image index over one image per platform, in the order the
//! platforms were asked for (as BuildKit orders them). The index is canonical JSON, so the
//! same images give the same index digest.

use std::collections::BTreeMap;
use std::sync::Arc;

use oci_spec::image::{
    Arch, Descriptor, Digest, ImageIndex, ImageIndexBuilder, MediaType, Os, PlatformBuilder,
};

use super::Platform;
use super::digest::sha256_digest;
use super::error::{Error, Result};
use super::image::Image;
use super::json::canonical_json;
use super::manifest::descriptor;

/// An image for each of several platforms, and the index that lists them.
pub struct PlatformIndex {
    images: Vec<(Platform, Arc<dyn Image>)>,
    raw: Vec<u8>,
    index: ImageIndex,
}

impl PlatformIndex {
    /// The index of `images`, with `annotations` on the index itself.
    pub fn new(
        images: Vec<(Platform, Arc<dyn Image>)>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<PlatformIndex> {
        let mut manifests = Vec::with_capacity(images.len());
        for (platform, image) in &images {
            let mut entry = descriptor(
                MediaType::from(image.manifest_media_type()),
                image.digest(),
                image.raw_manifest().len() as u64,
            )?;
            entry.set_platform(Some(oci_platform(platform)?));
            manifests.push(entry);
        }
        let mut builder = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests);
        if !annotations.is_empty() {
            builder = builder.annotations(
                annotations
                    .clone()
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            );
        }
        let index = builder
            .build()
            .map_err(|e| Error::invalid(format!("building the image index: {e}")))?;
        Ok(PlatformIndex {
            raw: canonical_json(&index),
            images,
            index,
        })
    }

    /// The index exactly as it is written or pushed.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The index digest: what a multi-platform reference resolves to.
    pub fn digest(&self) -> Digest {
        sha256_digest(&self.raw)
    }

    /// The index's own descriptor, as a layout's `index.json` lists it.
    pub fn descriptor(&self) -> Result<Descriptor> {
        descriptor(MediaType::ImageIndex, self.digest(), self.raw.len() as u64)
    }

    pub fn media_type(&self) -> &'static str {
        "application/vnd.oci.image.index.v1+json"
    }

    /// The images, by platform, in the index's order.
    pub fn images(&self) -> &[(Platform, Arc<dyn Image>)] {
        &self.images
    }

    /// The parsed index.
    pub fn index(&self) -> &ImageIndex {
        &self.index
    }

    /// The image for `platform`, if the index has one.
    pub fn image_for(&self, platform: &Platform) -> Option<&Arc<dyn Image>> {
        self.images
            .iter()
            .find(|(p, _)| p == platform)
            .map(|(_, image)| image)
    }
}

fn oci_platform(platform: &Platform) -> Result<oci_spec::image::Platform> {
    let mut builder = PlatformBuilder::default()
        .os(Os::from(platform.os.as_str()))
        .architecture(Arch::from(platform.architecture.as_str()));
    if let Some(variant) = &platform.variant {
        builder = builder.variant(variant.clone());
    }
    builder
        .build()
        .map_err(|e| Error::invalid(format!("the platform {platform}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::scratch;

    #[test]
    fn lists_each_platform_in_order_with_a_stable_digest() {
        let (amd64_platform, arm64_platform): (Platform, Platform) =
            (Platform::linux_amd64(), "linux/arm64".parse().unwrap());
        let amd64 = scratch(&amd64_platform, 0).unwrap();
        let arm64 = scratch(&arm64_platform, 0).unwrap();
        let make = || {
            PlatformIndex::new(
                vec![
                    (amd64_platform.clone(), amd64.clone()),
                    (arm64_platform.clone(), arm64.clone()),
                ],
                &BTreeMap::from([("org.example.a".to_string(), "1".to_string())]),
            )
            .unwrap()
        };
        let index = make();
        assert_eq!(index.digest(), make().digest());
        let value: serde_json::Value = serde_json::from_slice(index.raw()).unwrap();
        assert_eq!(
            value["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(value["schemaVersion"], 2);
        assert_eq!(value["annotations"]["org.example.a"], "1");
        let manifests = value["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 2);
        assert_eq!(manifests[0]["platform"]["architecture"], "amd64");
        assert_eq!(manifests[1]["platform"]["architecture"], "arm64");
        assert_eq!(manifests[1]["digest"], arm64.digest().to_string());
        assert_eq!(
            manifests[1]["size"],
            serde_json::json!(arm64.raw_manifest().len())
        );
        assert!(manifests[0].get("annotations").is_none());
    }
}
