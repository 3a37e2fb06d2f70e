//! OCI images written directly: deterministic layers, config, manifest, index, layout and
//! archive I/O.
//!
//! * [`Image`]: what every source and sink speaks (manifest, config, blobs by digest).
//! * Making images: [`LayerBuilder`] writes a layer into a [`BlobStore`];
//!   [`ImageConfig`] edits a config (unknown fields kept); [`append_layers`] puts new layers
//!   and a config on a base image (its blobs untouched); [`scratch`] is `FROM scratch`.
//! * Reading images: [`open_oci_layout`] (directory or tar), [`open_docker_archive`],
//!   [`open_image`] (`oci:DIR[:NAME]`, `oci-archive:…`, `docker-archive:…`); every blob is
//!   verified as it is read.
//! * Putting images somewhere: the [`Publish`] sinks [`OciDir`], [`OciTar`],
//!   [`DockerArchive`] (and the streaming [`write_oci_archive`], [`write_docker_archive`]).
//! * [`validate_image`]: checks digests, sizes, diff_ids and media types of any image.

mod annotated;
mod assembled;
mod blobs;
pub mod changeset;
mod config;
mod digest;
mod docker_archive;
mod error;
mod image;
mod index;
mod json;
pub mod layer;
mod layout;
pub mod manifest;
mod publish;
pub mod rootpath;
mod source;
mod transport;
mod validate;

pub use annotated::annotate;
pub use assembled::{AssembledImage, ImageParts, append_layers, scratch};
pub use blobs::{BlobStore, StoredBlob};
pub use config::{Healthcheck, ImageConfig, rfc3339, set_env_entry};
pub use digest::{HashingReader, HashingWriter, VerifyingReader, sha256_digest};
pub use docker_archive::{DockerArchiveImage, open_docker_archive, with_default_tag};
pub use error::{Error, Result};
pub use image::Image;
pub use index::PlatformIndex;
pub use json::canonical_json;
pub use layer::{AddOptions, LayerBuilder, LayerOptions, WrittenLayer, recompress};
pub use layout::{
    LayoutImage, REF_NAME, open_oci_layout, open_oci_layout_tagged, split_layout_tag,
};
pub use publish::{
    Artifact, DockerArchive, DockerArchiveOptions, OciDir, OciTar, Publish, Published,
    write_docker_archive, write_oci_archive, write_oci_dir, write_oci_layout,
};
pub use transport::open_image;
pub use validate::validate_image;

use std::fmt;
use std::str::FromStr;

/// Compression of the layers imgbuild writes. Base layers keep theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    /// Plain tar (BuildKit's `compression=uncompressed`): for an image that only goes to
    /// the engine, which stores layers unpacked and never needs the compressed blob.
    Uncompressed,
}

/// An image platform, `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// linux/amd64: what imgbuild builds unless told otherwise.
    pub fn linux_amd64() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl Platform {
    /// The platform of this machine (what BuildKit calls the build platform).
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// The platform as a file name, as BuildKit names per-platform directories:
    /// `linux_arm64`, `linux_arm_v7`.
    pub fn file_name(&self) -> String {
        self.to_string().replace('/', "_")
    }
}

impl Default for Platform {
    fn default() -> Self {
        Platform::linux_amd64()
    }
}

impl FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid =
            |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| valid(p)) {
            return Err(format!(
                "`{s}` is not a platform (expected os/arch[/variant], e.g. linux/amd64)"
            ));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}
