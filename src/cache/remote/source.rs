//! Reading a cache from a registry or an OCI layout (the manifest and index up front, each
//! layer when asked), and writing one.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::artifact::{CacheArtifact, LAYOUT_REF_NAME, check_manifest};
use super::{CacheIndex, CacheLocation, RemoteCache};
use crate::oci::{self, Image};
use crate::progress::{Ids, Reporter};
use crate::registry::{self, Reference};

/// An index is a few kilobytes per step; anything this large is not one.
const INDEX_LIMIT: u64 = 64 << 20;

/// One imported cache.
pub struct ImportedCache {
    pub location: CacheLocation,
    pub index: CacheIndex,
    /// The manifest's layers by digest.
    layers: HashMap<String, Descriptor>,
    origin: Origin,
}

enum Origin {
    Registry(Reference),
    Local(Arc<oci::LayoutImage>),
    #[cfg(test)]
    Nowhere,
}

impl ImportedCache {
    #[cfg(test)]
    pub fn for_tests(index: CacheIndex) -> ImportedCache {
        ImportedCache {
            location: CacheLocation::Local("/nowhere".into()),
            index,
            layers: HashMap::new(),
            origin: Origin::Nowhere,
        }
    }

    fn new(
        location: CacheLocation,
        manifest: &ImageManifest,
        raw_index: &[u8],
        origin: Origin,
    ) -> Result<ImportedCache, String> {
        check_manifest(manifest)?;
        if raw_index.len() as u64 > INDEX_LIMIT {
            return Err(format!("its index is {} bytes long", raw_index.len()));
        }
        let index: CacheIndex = serde_json::from_slice(raw_index)
            .map_err(|e| format!("its index is not valid: {e}"))?;
        let layers: HashMap<String, Descriptor> = manifest
            .layers()
            .iter()
            .map(|d| (d.digest().to_string(), d.clone()))
            .collect();
        index.validate(&|digest| layers.contains_key(digest))?;
        Ok(ImportedCache {
            location,
            index,
            layers,
            origin,
        })
    }

    /// Whether this cache holds the blob `digest`.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.layers.contains_key(digest)
    }

    /// Whether this cache is in the same registry repository as `reference`.
    pub fn is_in_repository_of(&self, reference: &Reference) -> bool {
        matches!(&self.origin, Origin::Registry(r)
            if r.registry() == reference.registry() && r.repository() == reference.repository())
    }

    /// Puts the layer `digest` into the local blob store, verified, unless it is there.
    /// Returns whether it was transferred.
    pub async fn fetch(
        &self,
        digest: &str,
        client: &registry::Client,
        store: &registry::BlobStore,
    ) -> anyhow::Result<bool> {
        let descriptor = self.layers.get(digest).with_context(|| {
            format!("{digest} is not a layer of the cache at {}", self.location)
        })?;
        match &self.origin {
            Origin::Registry(reference) => Ok(client
                .fetch_blob(reference, descriptor, store, &registry::NoProgress)
                .await
                .with_context(|| format!("fetching {digest} from {reference}"))?),
            Origin::Local(layout) => {
                if store.contains(descriptor.digest()) {
                    return Ok(false);
                }
                let layout = layout.clone();
                let descriptor = descriptor.clone();
                let store = store.clone();
                let what = format!("layer {digest} of the cache at {}", self.location);
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let mut reader = layout.open_blob(descriptor.digest())?;
                    let mut writer =
                        store.writer(descriptor.digest(), Some(descriptor.size()), &what)?;
                    let mut buffer = vec![0u8; 1 << 20];
                    loop {
                        let n = std::io::Read::read(&mut reader, &mut buffer)?;
                        let Some(chunk) = buffer.get(..n).filter(|c| !c.is_empty()) else {
                            break;
                        };
                        writer.write(chunk)?;
                    }
                    writer.commit()?;
                    Ok(())
                })
                .await??;
                Ok(true)
            }
            #[cfg(test)]
            Origin::Nowhere => anyhow::bail!("a test cache has no blobs"),
        }
    }
}

/// Reads each cache of `locations`; one that cannot be read is left out, with a warning
/// saying why.
pub async fn import(
    locations: &[CacheLocation],
    client: &registry::Client,
    store: &registry::BlobStore,
    platform: &oci::Platform,
) -> (RemoteCache, Vec<String>) {
    let mut imported = Vec::new();
    let mut warnings = Vec::new();
    for location in locations {
        match import_one(location, client, store, platform).await {
            Ok(cache) => imported.push(cache),
            Err(e) => warnings.push(format!(
                "the cache at {location} is not used: {}",
                crate::registry::with_causes(e.as_ref())
            )),
        }
    }
    (RemoteCache::new(imported), warnings)
}

/// [`import`], shown as one progress vertex: what each cache holds, and a warning for each
/// cache left out.
pub async fn import_reported(
    locations: &[CacheLocation],
    client: &registry::Client,
    store: &registry::BlobStore,
    platform: &oci::Platform,
    reporter: &dyn Reporter,
    ids: &Ids,
) -> RemoteCache {
    let id = ids.next();
    let names: Vec<String> = locations.iter().map(|l| l.to_string()).collect();
    reporter.started(
        id,
        &format!(
            "[internal] importing cache manifest from {}",
            names.join(", ")
        ),
    );
    let started = Instant::now();
    let (cache, warnings) = import(locations, client, store, platform).await;
    for source in &cache.sources {
        reporter.log(
            id,
            &format!(
                "{}: {} steps, {} cache mounts",
                source.location,
                source.index.steps.len(),
                source.index.mounts.len()
            ),
        );
    }
    for warning in &warnings {
        reporter.warning(warning);
    }
    reporter.done(id, started.elapsed());
    cache
}

async fn import_one(
    location: &CacheLocation,
    client: &registry::Client,
    store: &registry::BlobStore,
    platform: &oci::Platform,
) -> anyhow::Result<ImportedCache> {
    match location {
        CacheLocation::Registry(name) => {
            let reference = Reference::parse(name)?;
            let fetched = client
                .fetch_image_manifest(&reference, store, &registry::NoProgress)
                .await?;
            let manifest = registry::manifest::parse_image(&fetched.bytes)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            check_manifest(&manifest).map_err(|e| anyhow::anyhow!("{e}"))?;
            if manifest.config().size() > INDEX_LIMIT {
                anyhow::bail!("its index is {} bytes long", manifest.config().size());
            }
            client
                .fetch_blob(&reference, manifest.config(), store, &registry::NoProgress)
                .await?;
            let raw = store
                .read_verified(manifest.config().digest())?
                .context("the index vanished from the blob store")?;
            ImportedCache::new(
                location.clone(),
                &manifest,
                &raw,
                Origin::Registry(reference),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))
        }
        CacheLocation::Local(dir) => {
            let dir = dir.clone();
            let platform = platform.clone();
            let layout = tokio::task::spawn_blocking(move || {
                oci::open_oci_layout(&dir, Some(LAYOUT_REF_NAME), &platform)
            })
            .await??;
            let manifest = layout.manifest().clone();
            let raw = layout.raw_config().to_vec();
            ImportedCache::new(
                location.clone(),
                &manifest,
                &raw,
                Origin::Local(Arc::new(layout)),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))
        }
    }
}

impl RemoteCache {
    /// Writes `index` to `location` as a cache artifact of the blob store. Layers of these
    /// imported caches that the build did not need are not local: they are fetched first,
    /// unless they go back to the registry repository they came from.
    pub async fn export_index(
        &self,
        index: &CacheIndex,
        location: &CacheLocation,
        client: &registry::Client,
        store: &registry::BlobStore,
    ) -> anyhow::Result<ExportReport> {
        let artifact = CacheArtifact::new(index, store.blobs().clone())?;
        let target = match location {
            CacheLocation::Registry(name) => Some(Reference::parse(name)?),
            CacheLocation::Local(_) => None,
        };
        for missing in artifact.missing_blobs() {
            let digest = missing.digest().to_string();
            let in_place = target.as_ref().is_some_and(|t| {
                self.sources
                    .iter()
                    .any(|s| s.has_blob(&digest) && s.is_in_repository_of(t))
            });
            if !in_place {
                self.fetch(&digest, client, store).await?;
            }
        }
        export(&artifact, location, client, store, &registry::NoProgress).await
    }
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// The digest of the cache manifest.
    pub digest: String,
    pub uploaded: usize,
    pub bytes_uploaded: u64,
    /// Blobs the destination already had (not sent again).
    pub already_there: usize,
}

/// Writes `artifact` to `location`: pushed to a registry (blobs it has are not sent), or as
/// an OCI layout (its blobs that no cache references any more removed, so a directory a CI
/// system saves between jobs does not grow without end).
pub async fn export(
    artifact: &CacheArtifact,
    location: &CacheLocation,
    client: &registry::Client,
    store: &registry::BlobStore,
    progress: &dyn registry::Progress,
) -> anyhow::Result<ExportReport> {
    match location {
        CacheLocation::Registry(name) => {
            let reference = Reference::parse(name)?;
            let report = client
                .push_with_report(artifact, &[reference], store, progress)
                .await?;
            Ok(ExportReport {
                digest: artifact.digest().to_string(),
                uploaded: report.uploaded,
                bytes_uploaded: report.bytes_uploaded,
                already_there: report.already_present + report.mounted,
            })
        }
        CacheLocation::Local(dir) => tokio::task::block_in_place(|| {
            let blobs = dir.join("blobs").join("sha256");
            let before: HashSet<String> = list_blobs(&blobs);
            oci::write_oci_dir(dir, artifact, &[LAYOUT_REF_NAME.to_owned()])?;
            prune_layout(dir)?;
            let written: Vec<String> = artifact
                .layers()
                .iter()
                .map(|l| l.digest().digest().to_owned())
                .collect();
            let uploaded: Vec<&String> = written.iter().filter(|d| !before.contains(*d)).collect();
            let bytes_uploaded = artifact
                .layers()
                .iter()
                .filter(|l| !before.contains(l.digest().digest()))
                .map(|l| l.size())
                .sum();
            Ok(ExportReport {
                digest: artifact.digest().to_string(),
                uploaded: uploaded.len(),
                bytes_uploaded,
                already_there: written.len() - uploaded.len(),
            })
        }),
    }
}

fn list_blobs(dir: &Path) -> HashSet<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the blobs of an OCI layout that no manifest of its `index.json` references.
/// A layout holding anything but image manifests (nested indexes) is left alone.
fn prune_layout(dir: &Path) -> anyhow::Result<()> {
    let index: ImageIndex = serde_json::from_slice(
        &fs::read(dir.join("index.json")).context("reading the layout's index.json")?,
    )
    .context("parsing the layout's index.json")?;
    let blob_dir = dir.join("blobs").join("sha256");
    let mut keep: HashSet<String> = HashSet::new();
    for entry in index.manifests() {
        if !oci::manifest::is_manifest_media_type(entry.media_type().as_ref()) {
            return Ok(());
        }
        let hex = entry.digest().digest().to_owned();
        let manifest: ImageManifest = serde_json::from_slice(
            &fs::read(blob_dir.join(&hex))
                .with_context(|| format!("reading manifest {}", entry.digest()))?,
        )
        .with_context(|| format!("parsing manifest {}", entry.digest()))?;
        keep.insert(hex);
        keep.insert(manifest.config().digest().digest().to_owned());
        keep.extend(
            manifest
                .layers()
                .iter()
                .map(|l| l.digest().digest().to_owned()),
        );
    }
    for name in list_blobs(&blob_dir) {
        if !keep.contains(&name) && !name.starts_with('.') {
            fs::remove_file(blob_dir.join(&name))
                .with_context(|| format!("removing the unused blob {name}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::KeyInputs;
    use crate::cache::remote::{CachedStep, StepKind};

    fn artifact(store: &oci::BlobStore, content: &[u8]) -> CacheArtifact {
        let layer = super::super::store_gzip_blob(store, content).unwrap();
        let inputs = KeyInputs {
            instruction: String::from_utf8_lossy(content).into_owned(),
            ..KeyInputs::default()
        };
        let mut index = CacheIndex::new();
        index.steps.push(CachedStep {
            key: inputs.key(),
            kind: StepKind::Package,
            inputs,
            layer: Some(layer),
        });
        CacheArtifact::new(&index, store.clone()).unwrap()
    }

    #[test]
    fn local_exports_replace_the_cache_and_drop_unused_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = oci::BlobStore::open(dir.path().join("store")).unwrap();
        let layout = dir.path().join("layout");
        let blobs = |layout: &Path| list_blobs(&layout.join("blobs/sha256"));
        let first = artifact(&store, b"first layer");
        oci::write_oci_dir(&layout, &first, &[LAYOUT_REF_NAME.to_owned()]).unwrap();
        prune_layout(&layout).unwrap();
        assert_eq!(blobs(&layout).len(), 3, "manifest, index, layer");

        let second = artifact(&store, b"second layer");
        oci::write_oci_dir(&layout, &second, &[LAYOUT_REF_NAME.to_owned()]).unwrap();
        prune_layout(&layout).unwrap();
        let left = blobs(&layout);
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.contains(second.digest().digest()));
        assert!(!left.contains(first.digest().digest()));

        // What is left reads back as the second cache.
        let image = oci::open_oci_layout(
            &layout,
            Some(LAYOUT_REF_NAME),
            &oci::Platform::linux_amd64(),
        )
        .unwrap();
        assert_eq!(image.digest(), second.digest());
    }
}
