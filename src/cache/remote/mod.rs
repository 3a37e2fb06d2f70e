//! The step cache between machines: `--cache-to` exports the steps of a build (their keys,
//! the inputs that made each key, the layer each step added) and the content of its
//! `RUN --mount=type=cache` directories; `--cache-from` imports them on another machine,
//! typically a fresh CI runner, through the registry the image goes to
//! (`type=registry,ref=REF`) or a directory a CI system keeps between jobs
//! (`type=local,dest=DIR` / `src=DIR`, an OCI image layout).
//!
//! The format (an OCI image manifest, so any registry stores it):
//!
//! ```text
//! manifest  application/vnd.oci.image.manifest.v1+json
//! ├─ config application/vnd.imgbuild.cache.index.v1+json   the CacheIndex, JSON
//! └─ layers application/vnd.oci.image.layer.v1.tar+gzip    one per distinct step layer
//!                                                           and cache-mount snapshot
//! ```
//!
//! Import is lazy: only the manifest and the index are fetched when the build starts; a
//! layer is fetched when its step is a cache hit, a mount snapshot when a RUN that uses the
//! mount has to run and the mount is empty. A cache that cannot be read (missing, corrupt,
//! another tool's) is left out with a warning, never failing the build.
//!
//! An export is made from the journal of the steps a build used ([`UsedStep`]): the index
//! for each destination's mode ([`index_of`]), with the layers of steps that ran in the
//! engine taken out of `docker save` ([`layers_from_engine`]).

mod artifact;
mod blob;
mod journal;
mod mount_tar;
mod saved;
mod source;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{KeyInputs, LayerRecord};

pub use artifact::{CacheArtifact, INDEX_MEDIA_TYPE, LAYOUT_REF_NAME};
pub use blob::{GzipBlobWriter, store_gzip_blob};
pub use journal::{UsedResult, UsedStep, index_of, last_mount_uses};
pub use mount_tar::{is_empty_dir, restore_mount, snapshot_mount};
pub use saved::layers_from_engine;
pub use source::{ExportReport, ImportedCache, export, import, import_reported};

/// The `format` of the index this version writes and reads.
pub const FORMAT: &str = "imgbuild-cache-v1";

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// A registry reference (`host/repo:tag`), as given.
    Registry(String),
    /// An OCI image layout directory.
    Local(PathBuf),
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheLocation::Registry(r) => f.write_str(r),
            CacheLocation::Local(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// How much of a build `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The steps of the stage that makes the image (BuildKit's default).
    #[default]
    Min,
    /// Every step of every stage, and the cache mounts.
    Max,
}

/// `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub location: CacheLocation,
    pub mode: CacheMode,
    /// A failed export is a warning instead of a failed build (BuildKit's `ignore-error`).
    pub ignore_error: bool,
}

/// Which kind of step made a cached result; the two are never substituted for each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// A step of a stage run in the engine: its layer is the engine's diff, as it was.
    Engine,
    /// A step of the packaging stage: its layer is the deterministic one imgbuild wrote.
    Package,
}

/// One step of the exporting build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedStep {
    pub key: String,
    pub kind: StepKind,
    /// What made the key, [`redact`]ed, so that a miss on another machine can say which
    /// input changed.
    pub inputs: KeyInputs,
    /// The layer the step added; `None` when it changed no file.
    pub layer: Option<LayerRecord>,
}

/// What a `RUN --mount=type=cache` directory held after the exporting build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedMount {
    /// The mount's id (its target when no id was given).
    pub id: String,
    /// The key of the last step of the build that used it.
    pub step: String,
    /// The directory as a tar (its root entry `./` included).
    pub layer: LayerRecord,
}

/// The config blob of a cache manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CacheIndex {
    pub format: String,
    pub steps: Vec<CachedStep>,
    /// Step position (see [`position`]) → the key built there, so a miss can be explained
    /// against the exporting build.
    pub positions: BTreeMap<String, String>,
    pub mounts: Vec<CachedMount>,
}

impl CacheIndex {
    pub fn new() -> CacheIndex {
        CacheIndex {
            format: FORMAT.to_owned(),
            ..CacheIndex::default()
        }
    }

    /// Checks what an imported index claims: the format, that every key is a digest, and
    /// that every layer is a blob `has_blob` knows. Returns the reason it cannot be used.
    pub fn validate(&self, has_blob: &dyn Fn(&str) -> bool) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "its format is `{}`, this imgbuild reads `{FORMAT}`",
                self.format
            ));
        }
        let is_digest = |key: &str| {
            key.strip_prefix("sha256:")
                .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        for step in &self.steps {
            if !is_digest(&step.key) {
                return Err(format!("step key `{}` is not a sha256 digest", step.key));
            }
            if let Some(layer) = &step.layer
                && !has_blob(&layer.digest)
            {
                return Err(format!(
                    "step {} names layer {}, which the manifest does not list",
                    step.key, layer.digest
                ));
            }
        }
        for mount in &self.mounts {
            if !has_blob(&mount.layer.digest) {
                return Err(format!(
                    "cache mount `{}` names layer {}, which the manifest does not list",
                    mount.id, mount.layer.digest
                ));
            }
        }
        Ok(())
    }

    /// Every distinct layer the index names, steps first, in order.
    pub fn layers(&self) -> Vec<&LayerRecord> {
        let mut seen = std::collections::HashSet::new();
        self.steps
            .iter()
            .filter_map(|s| s.layer.as_ref())
            .chain(self.mounts.iter().map(|m| &m.layer))
            .filter(|l| seen.insert(l.digest.clone()))
            .collect()
    }
}

/// A step's inputs as an exported cache shows them: the values that may be secret (the
/// instruction as expanded, with the build arguments in it; variable values; other named
/// inputs) replaced by their digests. Names, file digests and the parent key stay, and a
/// miss is explained by names alone, so comparing redacted inputs on both sides explains
/// it as well as the raw ones. (A cache is as readable as the registry repository it is
/// pushed to; the same build arguments in the image's history are not redacted: use
/// `--secret` for secrets.)
pub fn redact(inputs: &KeyInputs) -> KeyInputs {
    let digest = |value: &str| format!("sha256:{}", hex::encode(Sha256::digest(value.as_bytes())));
    let digests = |map: &BTreeMap<String, String>| {
        map.iter()
            .map(|(k, v)| (k.clone(), digest(v)))
            .collect::<BTreeMap<_, _>>()
    };
    KeyInputs {
        parent: inputs.parent.clone(),
        instruction: digest(&inputs.instruction),
        env: digests(&inputs.env),
        files: inputs.files.clone(),
        other: digests(&inputs.other),
    }
}

/// A step's position for miss explanations across machines: the Dockerfile's file name,
/// the stage and the step number. Unlike [`super::step_identity`] it leaves out the
/// context's path, which differs between checkouts.
pub fn position(dockerfile: &str, stage: &str, step: usize) -> String {
    let name = dockerfile.rsplit('/').next().unwrap_or(dockerfile);
    let mut hasher = Sha256::new();
    for part in [name, stage, &step.to_string()] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// The imported caches of a build, searched in `--cache-from` order.
#[derive(Default)]
pub struct RemoteCache {
    pub(crate) sources: Vec<ImportedCache>,
    steps: HashMap<(String, StepKind), (usize, usize)>,
}

/// A step found in an imported cache.
pub struct RemoteStep<'a> {
    pub step: &'a CachedStep,
    /// Which source has it (for fetching its layer).
    pub source: usize,
}

impl RemoteCache {
    pub fn new(sources: Vec<ImportedCache>) -> RemoteCache {
        let mut steps = HashMap::new();
        for (s, source) in sources.iter().enumerate() {
            for (i, step) in source.index.steps.iter().enumerate() {
                steps.entry((step.key.clone(), step.kind)).or_insert((s, i));
            }
        }
        RemoteCache { sources, steps }
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The step with `key`, made by the same kind of step.
    pub fn step(&self, key: &str, kind: StepKind) -> Option<RemoteStep<'_>> {
        let (s, i) = *self.steps.get(&(key.to_owned(), kind))?;
        let step = self.sources.get(s)?.index.steps.get(i)?;
        Some(RemoteStep { step, source: s })
    }

    /// The inputs of the step an exporting build built at `position`.
    pub fn last_inputs(&self, position: &str) -> Option<&KeyInputs> {
        self.sources.iter().find_map(|source| {
            let key = source.index.positions.get(position)?;
            source
                .index
                .steps
                .iter()
                .find(|s| &s.key == key)
                .map(|s| &s.inputs)
        })
    }

    /// Puts the layer `digest` into the local blob store from the first source that has
    /// it, unless it is there already.
    pub async fn fetch(
        &self,
        digest: &str,
        client: &crate::registry::Client,
        store: &crate::registry::BlobStore,
    ) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        for source in self.sources.iter().filter(|s| s.has_blob(digest)) {
            match source.fetch(digest, client, store).await {
                Ok(_) => return Ok(()),
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        if failures.is_empty() {
            anyhow::bail!("no imported cache has {digest}");
        }
        anyhow::bail!("{}", failures.join("; "))
    }

    /// The snapshot of the cache mount `id`, and which source has it.
    pub fn mount(&self, id: &str) -> Option<(&CachedMount, usize)> {
        self.sources.iter().enumerate().find_map(|(s, source)| {
            source
                .index
                .mounts
                .iter()
                .find(|m| m.id == id)
                .map(|m| (m, s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(instruction: &str, layer: Option<&str>) -> CachedStep {
        let inputs = KeyInputs {
            parent: "sha256:base".into(),
            instruction: instruction.into(),
            ..KeyInputs::default()
        };
        CachedStep {
            key: inputs.key(),
            kind: StepKind::Engine,
            inputs,
            layer: layer.map(|d| LayerRecord {
                digest: d.into(),
                diff_id: "sha256:d".into(),
                size: 1,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            }),
        }
    }

    #[test]
    fn validation_refuses_what_cannot_be_trusted() {
        let mut index = CacheIndex::new();
        index.steps.push(step("RUN a", Some("sha256:l1")));
        index.steps.push(step("RUN b", None));
        let listed = |d: &str| d == "sha256:l1";
        assert_eq!(index.validate(&listed), Ok(()));

        let mut malformed = index.clone();
        malformed.steps[1].key = "../../etc/passwd".into();
        assert!(malformed.validate(&listed).unwrap_err().contains("digest"));

        let mut unlisted = index.clone();
        unlisted.steps.push(step("RUN c", Some("sha256:l2")));
        assert!(
            unlisted
                .validate(&listed)
                .unwrap_err()
                .contains("sha256:l2")
        );

        let mut other = index.clone();
        other.format = "something-else".into();
        assert!(other.validate(&listed).unwrap_err().contains("format"));
    }

    #[test]
    fn redacted_inputs_hide_values_and_still_explain_misses() {
        let inputs = |token: &str, lock: &str| KeyInputs {
            parent: "sha256:base".into(),
            instruction: format!("RUN git clone https://{token}@example.com/x"),
            env: [("TOKEN".into(), token.into())].into(),
            files: [("mix.lock".into(), lock.into())].into(),
            other: [("user".into(), "nobody".into())].into(),
        };
        let exported = redact(&inputs("s3cr3t", "sha256:1"));
        let text = serde_json::to_string(&exported).unwrap();
        assert!(
            !text.contains("s3cr3t") && !text.contains("nobody"),
            "{text}"
        );
        assert_eq!(exported.files, inputs("s3cr3t", "sha256:1").files);
        let explain = |now: &KeyInputs| crate::cache::explain_miss(Some(&exported), &redact(now));
        assert_eq!(explain(&inputs("s3cr3t", "sha256:2")), "mix.lock changed");
        assert_eq!(
            explain(&inputs("other", "sha256:1")),
            "the instruction changed"
        );
        assert!(explain(&inputs("s3cr3t", "sha256:1")).contains("missing"));
    }

    #[test]
    fn lookups_go_by_key_and_kind_in_source_order() {
        let a = step("RUN a", None);
        let mut first = CacheIndex::new();
        first.steps.push(a.clone());
        first
            .positions
            .insert(position("Dockerfile", "build", 1), a.key.clone());
        let mut second = CacheIndex::new();
        let mut packaged = a.clone();
        packaged.kind = StepKind::Package;
        second.steps.push(packaged);
        let cache = RemoteCache::new(vec![
            ImportedCache::for_tests(first),
            ImportedCache::for_tests(second),
        ]);
        assert_eq!(cache.step(&a.key, StepKind::Engine).unwrap().source, 0);
        assert_eq!(cache.step(&a.key, StepKind::Package).unwrap().source, 1);
        assert!(cache.step("sha256:nope", StepKind::Engine).is_none());
        // Positions ignore where the Dockerfile is.
        assert_eq!(
            cache.last_inputs(&position("/ci/checkout/Dockerfile", "build", 1)),
            Some(&a.inputs)
        );
        assert!(
            cache
                .last_inputs(&position("Dockerfile", "build", 2))
                .is_none()
        );
    }
}
