//! Manifest kinds the client accepts (OCI index, Docker manifest list, OCI manifest, Docker
//! schema 2) and platform selection in indexes.

use oci_spec::image::{Digest, ImageManifest};
use serde::Deserialize;

use crate::oci::Platform;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` header for manifest requests: every kind imgbuild understands.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// What a manifest document is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An OCI index or Docker manifest list: pick a platform.
    Index { media_type: String },
    /// An image manifest.
    Image { media_type: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Classifies a manifest by its bytes (its `mediaType`, else its shape, as OCI allows the
/// field to be absent), falling back on the HTTP `Content-Type`.
pub fn classify(bytes: &[u8], content_type: Option<&str>) -> Result<Kind, String> {
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| format!("the manifest is not valid JSON ({e})"))?;
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_owned())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    let media_type = probe.media_type.clone().or(content_type);
    match media_type.as_deref() {
        Some(t @ (OCI_INDEX | DOCKER_MANIFEST_LIST)) => Ok(Kind::Index {
            media_type: t.to_owned(),
        }),
        Some(t @ (OCI_MANIFEST | DOCKER_MANIFEST)) => Ok(Kind::Image {
            media_type: t.to_owned(),
        }),
        Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED) => Err(
            "it is a Docker schema 1 manifest, which imgbuild does not support; \
             push the image again with a current Docker or skopeo"
                .into(),
        ),
        Some(other) => Err(format!("unsupported manifest media type `{other}`")),
        None if probe.schema_version == Some(1) => {
            Err("it is a Docker schema 1 manifest, which imgbuild does not support".into())
        }
        None if probe.manifests.is_some() => Ok(Kind::Index {
            media_type: OCI_INDEX.to_owned(),
        }),
        None if probe.config.is_some() => Ok(Kind::Image {
            media_type: OCI_MANIFEST.to_owned(),
        }),
        None => Err("the document is neither an image manifest nor an index".into()),
    }
}

/// Parses an image manifest (OCI or Docker schema 2: the same fields).
pub fn parse_image(bytes: &[u8]) -> Result<ImageManifest, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("the image manifest is invalid ({e})"))
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    #[serde(default)]
    media_type: Option<String>,
    digest: Digest,
    #[serde(default)]
    platform: Option<EntryPlatform>,
}

#[derive(Deserialize)]
struct EntryPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// The digest of the manifest for `wanted` in an index, or the list of platforms it has.
pub fn select_platform(bytes: &[u8], wanted: &Platform) -> Result<Digest, SelectError> {
    let index: Index = serde_json::from_slice(bytes)
        .map_err(|e| SelectError::Invalid(format!("the index is invalid ({e})")))?;
    let wanted_variant = normalized_variant(&wanted.architecture, wanted.variant.as_deref());
    let mut available = Vec::new();
    let mut fallback = None;
    for entry in &index.manifests {
        // Nested indexes and attestations are not images for a platform.
        if entry
            .media_type
            .as_deref()
            .is_some_and(|t| t != OCI_MANIFEST && t != DOCKER_MANIFEST)
        {
            continue;
        }
        let Some(p) = &entry.platform else { continue };
        if p.os == "unknown" {
            continue;
        }
        let variant = normalized_variant(&p.architecture, p.variant.as_deref());
        available.push(match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        });
        if p.os != wanted.os || p.architecture != wanted.architecture {
            continue;
        }
        if variant == wanted_variant {
            return Ok(entry.digest.clone());
        }
        // No variant asked for: any variant of the architecture will do, as Docker picks.
        if wanted.variant.is_none() && fallback.is_none() {
            fallback = Some(entry.digest.clone());
        }
    }
    fallback.ok_or_else(|| {
        SelectError::NoMatch(if available.is_empty() {
            "no platform-specific images".to_owned()
        } else {
            available.join(", ")
        })
    })
}

#[derive(Debug, PartialEq, Eq)]
pub enum SelectError {
    Invalid(String),
    /// The platforms the index has.
    NoMatch(String),
}

/// Variants that are the default for their architecture compare equal to none
/// (containerd's normalisation: arm64 is v8, arm is v7, amd64 is v1).
fn normalized_variant<'a>(architecture: &str, variant: Option<&'a str>) -> Option<&'a str> {
    match (architecture, variant) {
        ("arm64", Some("v8")) | ("amd64", Some("v1")) | ("arm", Some("v7")) => None,
        (_, variant) => variant,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
    const D4: &str = "sha256:4444444444444444444444444444444444444444444444444444444444444444";

    fn index() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[
              {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
              {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D2}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v6"}}}},
              {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D3}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{D4}","size":1,"platform":{{"os":"unknown","architecture":"unknown"}}}}
            ]}}"#
        )
    }

    fn platform(s: &str) -> Platform {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn classifies_the_four_kinds_and_refuses_schema1() {
        let kind = |json: &str, ct: Option<&str>| classify(json.as_bytes(), ct);
        assert!(matches!(kind(&index(), None), Ok(Kind::Index { .. })));
        assert!(matches!(
            kind(
                &format!(r#"{{"mediaType":"{OCI_INDEX}","manifests":[]}}"#),
                None
            ),
            Ok(Kind::Index { .. })
        ));
        assert_eq!(
            kind(r#"{"schemaVersion":2,"config":{},"layers":[]}"#, None),
            Ok(Kind::Image {
                media_type: OCI_MANIFEST.into()
            })
        );
        assert_eq!(
            kind(
                r#"{"schemaVersion":2,"config":{},"layers":[]}"#,
                Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8")
            ),
            Ok(Kind::Image {
                media_type: DOCKER_MANIFEST.into()
            })
        );
        assert!(
            kind(r#"{"schemaVersion":1,"fsLayers":[]}"#, None)
                .is_err_and(|e| e.contains("schema 1"))
        );
        assert!(
            kind(
                &format!(r#"{{"mediaType":"{DOCKER_SCHEMA1_SIGNED}"}}"#),
                None
            )
            .is_err()
        );
        assert!(kind("not json", None).is_err());
        assert!(kind(r#"{"mediaType":"text/html"}"#, None).is_err_and(|e| e.contains("text/html")));
    }

    #[test]
    fn selects_platforms_with_variant_normalisation() {
        let bytes = index();
        let select = |p: &str| select_platform(bytes.as_bytes(), &platform(p));
        assert_eq!(select("linux/amd64").map(|d| d.to_string()), Ok(D1.into()));
        assert_eq!(select("linux/arm64").map(|d| d.to_string()), Ok(D3.into()));
        assert_eq!(
            select("linux/arm64/v8").map(|d| d.to_string()),
            Ok(D3.into())
        );
        assert_eq!(select("linux/arm").map(|d| d.to_string()), Ok(D2.into()));
        let missing = select("linux/arm/v7");
        assert_eq!(
            missing,
            Err(SelectError::NoMatch(
                "linux/amd64, linux/arm/v6, linux/arm64/v8".into()
            ))
        );
        assert!(matches!(
            select("windows/amd64"),
            Err(SelectError::NoMatch(_))
        ));
    }
}
