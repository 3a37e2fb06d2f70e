//! The executor's side of `--cache-from` and `--cache-to` ([`crate::cache::remote`]):
//!
//! * lookups that fall back on the imported caches when the local step cache has nothing
//!   usable, fetching a step's layer when the step is a hit;
//! * build-stage layers from a cache kept aside ([`EngineState::pending`]) and loaded into
//!   the engine, on top of the image below them, only when a step has to run on them or
//!   the stage is read ([`Builder::materialize`]);
//! * cache mounts restored on a fresh machine before a RUN that uses them runs;
//! * the export: every step the build used ([`UsedStep`]), the engine's layers of the steps
//!   that ran here (taken from `docker save`, as the engine made them: mtimes and all), and
//!   snapshots of the cache mounts.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::StreamExt;
use oci_spec::image::{Descriptor, Digest, ImageManifest, MediaType};

use super::engine_stage::load_into_engine;
use super::steps::Lookup;
use super::{Builder, config, lock, mounts};
use crate::cache::remote::{
    self, CacheExport, CacheIndex, CacheLocation, CacheMode, CachedMount, CachedStep, RemoteCache,
    StepKind,
};
use crate::cache::{KeyInputs, LayerRecord, StepRecord};
use crate::frontend::instructions::MountKind;
use crate::oci::{self, HashingWriter, Image, WrittenLayer};
use crate::plan::dispatch::{self, ImageConfig, RunStep, Step};
use crate::progress::{Ids, Reporter, VertexId};
use crate::registry::{self, Reference};
use crate::request::BuildRequest;

/// A step this build used (ran or found in a cache), as `--cache-to` exports it.
#[derive(Debug, Clone)]
pub(super) struct UsedStep {
    pub key: String,
    pub inputs: KeyInputs,
    pub position: String,
    pub kind: StepKind,
    /// A step of the stage that makes the image (all that `mode=min` exports).
    pub target: bool,
    pub result: UsedResult,
    /// The ids of the cache mounts a RUN used.
    pub mounts: Vec<String>,
}

#[derive(Debug, Clone)]
pub(super) enum UsedResult {
    /// The step's layer is a blob in the blob store (`None`: it changed no file).
    Layer(Option<LayerRecord>),
    /// A build-stage step whose layer is only in the engine: `diff_id` of the top layer of
    /// `image` (`None`: the step added no layer).
    Engine {
        image: String,
        diff_id: Option<String>,
    },
}

/// Where a build stage is: an engine image, and cached layers on top of it not loaded yet.
#[derive(Debug, Clone)]
pub(super) struct EngineState {
    pub image: String,
    pub pending: Vec<LayerRecord>,
    /// The FROM image `image` is, when it is not in the engine yet.
    pub unloaded: Option<String>,
}

impl EngineState {
    pub fn at(image: String) -> EngineState {
        EngineState {
            image,
            pending: Vec::new(),
            unloaded: None,
        }
    }
}

/// What the caches have for a build-stage step.
pub(super) enum Found {
    /// The engine still has the image an earlier build committed (and the step's layer,
    /// when an export took it out of the engine before).
    Image {
        image: String,
        layer: Option<LayerRecord>,
    },
    /// The step's layer, in the blob store (`None`: the step changed no file).
    Layer(Option<LayerRecord>),
    Miss(String),
}

/// The ids of the cache mounts of a RUN step.
pub(super) fn cache_mount_ids(step: &Step) -> Vec<String> {
    match &step.kind {
        dispatch::StepKind::Run(run) => run_cache_mount_ids(run),
        _ => Vec::new(),
    }
}

fn run_cache_mount_ids(run: &RunStep) -> Vec<String> {
    run.mounts
        .iter()
        .filter(|m| m.kind == MountKind::Cache)
        .map(mounts::cache_id)
        .collect()
}

pub(super) fn layer_record(layer: &WrittenLayer) -> LayerRecord {
    LayerRecord {
        digest: layer.descriptor.digest().to_string(),
        diff_id: layer.diff_id.to_string(),
        size: layer.descriptor.size(),
        media_type: layer.descriptor.media_type().to_string(),
    }
}

/// Reads the `--cache-from` caches (their manifests and indexes only). A cache that cannot
/// be used is a warning: the build goes on without it.
pub(super) async fn import_caches(
    request: &BuildRequest,
    client: &registry::Client,
    store: &registry::BlobStore,
    reporter: &Arc<dyn Reporter>,
    ids: &Ids,
) -> RemoteCache {
    if request.cache_from.is_empty() || request.no_cache {
        return RemoteCache::default();
    }
    let id = ids.next();
    let names: Vec<String> = request.cache_from.iter().map(|l| l.to_string()).collect();
    reporter.started(
        id,
        &format!(
            "[internal] importing cache manifest from {}",
            names.join(", ")
        ),
    );
    let started = Instant::now();
    let (cache, warnings) = remote::import(
        &request.cache_from,
        client,
        store,
        &request.publish.platform,
    )
    .await;
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

impl Builder {
    pub(super) fn record_use(&self, step: UsedStep) {
        if !self.request.cache_to.is_empty() {
            lock(&self.journal).push(step);
        }
    }

    fn blob_is_local(&self, digest: &str) -> bool {
        digest
            .parse::<Digest>()
            .is_ok_and(|d| self.oci_blobs.contains(&d))
    }

    /// A build-stage step in the local cache, else in the imported ones.
    pub(super) async fn find_engine_step(
        &self,
        identity: &str,
        position: &str,
        inputs: &KeyInputs,
    ) -> anyhow::Result<Found> {
        let reason = match self.lookup(identity, position, inputs) {
            Lookup::Hit(record) => {
                let local_layer = record
                    .layer
                    .clone()
                    .filter(|l| self.blob_is_local(&l.digest));
                if let Some(image) = &record.image
                    && self.engine()?.find_image(image).await?.is_some()
                {
                    return Ok(Found::Image {
                        image: image.clone(),
                        layer: local_layer,
                    });
                }
                match (&record.image, &record.layer) {
                    (_, Some(_)) if local_layer.is_some() => return Ok(Found::Layer(local_layer)),
                    (None, None) => return Ok(Found::Layer(None)),
                    (Some(_), _) => "the engine no longer has the step's image".to_owned(),
                    (None, Some(_)) => "the step's layer is no longer in the blob store".to_owned(),
                }
            }
            Lookup::Miss { reason } => reason,
        };
        Ok(
            match self.remote_layer(identity, inputs, StepKind::Engine).await {
                Some(layer) => Found::Layer(layer),
                None => Found::Miss(reason),
            },
        )
    }

    /// A packaging step's layer from the local cache, else from the imported ones (then
    /// kept in the local cache); `Err` is the reason for the miss.
    pub(super) async fn find_package_step(
        &self,
        identity: &str,
        position: &str,
        inputs: &KeyInputs,
    ) -> Result<Option<WrittenLayer>, String> {
        let reason = match self.lookup(identity, position, inputs) {
            Lookup::Hit(record) if record.image.is_some() => {
                "the cache holds a build stage's image for this step, not its layer".to_owned()
            }
            Lookup::Hit(record) => match self.cached_layer(&record) {
                Some(cached) => return Ok(cached),
                None => "the step's layer is no longer in the blob store".to_owned(),
            },
            Lookup::Miss { reason } => reason,
        };
        let Some(layer) = self.remote_layer(identity, inputs, StepKind::Package).await else {
            return Err(reason);
        };
        let record = StepRecord {
            key: inputs.key(),
            inputs: inputs.clone(),
            image: None,
            layer,
            adds_layer: None,
        };
        match self.cached_layer(&record) {
            Some(cached) => {
                self.remember(identity, &record);
                Ok(cached)
            }
            None => Err(reason),
        }
    }

    /// The step's layer from an imported cache, fetched into the blob store: `Some(None)`
    /// for a step that changed nothing, `None` when no cache has it (or it cannot be
    /// fetched: a warning).
    async fn remote_layer(
        &self,
        identity: &str,
        inputs: &KeyInputs,
        kind: StepKind,
    ) -> Option<Option<LayerRecord>> {
        if self.request.no_cache {
            return None;
        }
        let key = inputs.key();
        let found = self.remote.step(&key, kind)?;
        let layer = found.step.layer.clone();
        if let Some(layer) = &layer
            && let Err(e) = self
                .remote
                .fetch(&layer.digest, &self.registry, &self.registry_blobs)
                .await
        {
            self.reporter.warning(&format!(
                "the cached layer of step {key} could not be fetched, so the step runs: {e:#}"
            ));
            return None;
        }
        let _ = self.cache.set_last_inputs(identity, inputs);
        Some(layer)
    }

    /// The engine image of `state`: its FROM image loaded if it was not, then its pending
    /// cached layers (one docker archive with only those layers: the engine has the rest).
    pub(super) async fn materialize(
        &self,
        state: &mut EngineState,
        config: &ImageConfig,
        id: VertexId,
    ) -> anyhow::Result<String> {
        if let Some(name) = state.unloaded.take() {
            self.reporter
                .log(id, &format!("loading {name} into the engine"));
            state.image = self.ensure_loaded(&name).await?;
        }
        if state.pending.is_empty() {
            return Ok(state.image.clone());
        }
        let engine = self.engine()?.clone();
        let base = engine
            .find_image(&state.image)
            .await?
            .with_context(|| format!("the engine lost image {}", state.image))?;
        let base_layers = base
            .diff_ids
            .iter()
            .map(|d| d.parse::<Digest>())
            .collect::<Result<Vec<_>, _>>()
            .context("the engine reported a malformed diff_id")?;
        let image = OnEngine::new(
            &base_layers,
            &state.pending,
            config,
            &self.request.publish.platform,
            self.epoch(),
            &self.oci_blobs,
        )?;
        let image_id = image.config_descriptor().digest().to_string();
        if engine.find_image(&image_id).await?.is_none() {
            self.reporter.log(
                id,
                &format!(
                    "loading {} cached layer(s) into the engine",
                    state.pending.len()
                ),
            );
            load_into_engine(&engine, Arc::new(image), &base_layers)
                .await
                .context("loading cached layers into the engine")?;
        }
        *state = EngineState::at(image_id.clone());
        Ok(image_id)
    }

    /// The engine image of a finished build stage, its cached layers loaded.
    pub(super) async fn stage_image(&self, index: usize) -> anyhow::Result<String> {
        let output = self.stage_output(index)?;
        if output.pending.is_empty() && output.unloaded.is_none() {
            return Ok(output.image);
        }
        let id = self.ids.next();
        self.reporter.started(
            id,
            &format!(
                "[internal] load stage {} into the engine",
                self.graph.dockerfile.stages[index].display_name()
            ),
        );
        let started = Instant::now();
        let mut state = EngineState {
            image: output.image.clone(),
            pending: output.pending.clone(),
            unloaded: output.unloaded.clone(),
        };
        match self.materialize(&mut state, &output.config, id).await {
            Ok(image) => {
                self.reporter.done(id, started.elapsed());
                if let Some(stored) = lock(&self.stages).get_mut(&index) {
                    stored.image = image.clone();
                    stored.pending.clear();
                    stored.unloaded = None;
                }
                Ok(image)
            }
            Err(e) => {
                self.reporter.failed(id, started.elapsed());
                Err(e)
            }
        }
    }

    /// Fills the empty cache mounts of `run` from the imported caches, once per mount.
    pub(super) async fn restore_cache_mounts(&self, id: VertexId, run: &RunStep) {
        if self.remote.is_empty() || self.request.no_cache {
            return;
        }
        let mut restored = self.restored_mounts.lock().await;
        for mount_id in run_cache_mount_ids(run) {
            if !restored.insert(mount_id.clone()) {
                continue;
            }
            let Some((mount, source)) = self.remote.mount(&mount_id) else {
                continue;
            };
            let dir = mounts::cache_mount_dir(&self.request.cache_dir, &mount_id);
            if !is_empty_dir(&dir) {
                continue;
            }
            match self.restore_mount(mount, &dir).await {
                Ok(()) => {
                    let from = self
                        .remote
                        .sources
                        .get(source)
                        .map(|s| s.location.to_string())
                        .unwrap_or_default();
                    self.reporter
                        .log(id, &format!("cache mount {mount_id} restored from {from}"));
                }
                Err(e) => self.reporter.warning(&format!(
                    "the cache mount `{mount_id}` could not be restored from the imported cache: {e:#}"
                )),
            }
        }
    }

    /// Unpacks a mount snapshot beside `dir` and moves its entries in, so a failure leaves
    /// the directory empty rather than half filled.
    async fn restore_mount(&self, mount: &CachedMount, dir: &Path) -> anyhow::Result<()> {
        self.remote
            .fetch(&mount.layer.digest, &self.registry, &self.registry_blobs)
            .await?;
        let digest: Digest = mount.layer.digest.parse()?;
        let blob = self.oci_blobs.path(&digest);
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let parent = dir.parent().context("a cache mount has no parent")?;
            let staging = tempfile::Builder::new()
                .prefix(".restore-")
                .tempdir_in(parent)?;
            remote::restore_mount(std::fs::File::open(&blob)?, staging.path())?;
            for entry in std::fs::read_dir(staging.path())? {
                let entry = entry?;
                std::fs::rename(entry.path(), dir.join(entry.file_name()))?;
            }
            Ok(())
        })
        .await?
    }

    /// `--cache-to`: each destination gets the steps its mode covers. A failed export
    /// fails the build unless it says `ignore-error=true`.
    pub(super) async fn export_caches(&self) -> anyhow::Result<()> {
        let exports = self.request.cache_to.clone();
        if exports.is_empty() {
            return Ok(());
        }
        let mut used = std::mem::take(&mut *lock(&self.journal));
        let max = exports.iter().any(|e| e.mode == CacheMode::Max);
        let mounts = match self.prepare_export(&mut used, max).await {
            Ok(mounts) => mounts,
            Err(e) if exports.iter().all(|e| e.ignore_error) => {
                self.reporter
                    .warning(&format!("the build cache was not exported: {e:#}"));
                return Ok(());
            }
            Err(e) => return Err(e.context("preparing the build cache for export")),
        };
        for export in &exports {
            let id = self.ids.next();
            let mode = match export.mode {
                CacheMode::Min => "min",
                CacheMode::Max => "max",
            };
            self.reporter.started(
                id,
                &format!("exporting cache to {} (mode={mode})", export.location),
            );
            let started = Instant::now();
            match self.export_one(export, &used, &mounts, id).await {
                Ok(()) => self.reporter.done(id, started.elapsed()),
                Err(e) => {
                    self.reporter.failed(id, started.elapsed());
                    let e = e.context(format!("exporting the build cache to {}", export.location));
                    if !export.ignore_error {
                        return Err(e);
                    }
                    self.reporter.warning(&format!("{e:#}"));
                }
            }
        }
        Ok(())
    }

    /// Takes the layers of the steps that ran here out of the engine (and remembers them
    /// in the local cache, so the next export skips that), and snapshots the cache mounts
    /// (`mode=max`).
    async fn prepare_export(
        &self,
        used: &mut [UsedStep],
        max: bool,
    ) -> anyhow::Result<Vec<CachedMount>> {
        let mut wanted: HashSet<String> = HashSet::new();
        let mut images: Vec<String> = Vec::new();
        for step in used.iter_mut() {
            if let UsedResult::Engine { image, diff_id } = &step.result {
                match diff_id {
                    None => step.result = UsedResult::Layer(None),
                    Some(d) if max || step.target => {
                        wanted.insert(d.clone());
                        images.push(image.clone());
                    }
                    Some(_) => {}
                }
            }
        }
        let mount_ids: Vec<(String, String)> = if max {
            let mut last_use: Vec<(String, String)> = Vec::new();
            for step in used.iter() {
                for id in &step.mounts {
                    last_use.retain(|(m, _)| m != id);
                    last_use.push((id.clone(), step.key.clone()));
                }
            }
            last_use
        } else {
            Vec::new()
        };
        if wanted.is_empty() && mount_ids.is_empty() {
            return Ok(Vec::new());
        }
        let id = self.ids.next();
        self.reporter
            .started(id, "[internal] preparing the build cache for export");
        let started = Instant::now();
        let result = async {
            let layers = if wanted.is_empty() {
                HashMap::new()
            } else {
                self.reporter.log(
                    id,
                    &format!("taking {} layer(s) out of the engine", wanted.len()),
                );
                self.engine_diffs(&wanted, &images).await?
            };
            for step in used.iter_mut() {
                if let UsedResult::Engine {
                    diff_id: Some(d), ..
                } = &step.result
                    && let Some(record) = layers.get(d)
                {
                    if let Some(mut local) = self.cache.get(&step.key) {
                        local.layer = Some(record.clone());
                        let _ = self.cache.put(&local);
                    }
                    step.result = UsedResult::Layer(Some(record.clone()));
                }
            }
            let mut mounts = Vec::new();
            for (mount_id, step) in mount_ids {
                let dir = mounts::cache_mount_dir(&self.request.cache_dir, &mount_id);
                if !is_empty_dir(&dir) {
                    let store = self.oci_blobs.clone();
                    let layer =
                        tokio::task::spawn_blocking(move || remote::snapshot_mount(&dir, &store))
                            .await??;
                    self.reporter.log(
                        id,
                        &format!(
                            "cache mount {mount_id}: {}",
                            indicatif::HumanBytes(layer.size)
                        ),
                    );
                    mounts.push(CachedMount {
                        id: mount_id,
                        step,
                        layer,
                    });
                } else if let Some((imported, _)) = self.remote.mount(&mount_id) {
                    // Not used here (its steps were cached): passed on as it came.
                    mounts.push(imported.clone());
                }
            }
            anyhow::Ok(mounts)
        }
        .await;
        match &result {
            Ok(_) => self.reporter.done(id, started.elapsed()),
            Err(_) => self.reporter.failed(id, started.elapsed()),
        }
        result
    }

    async fn export_one(
        &self,
        export: &CacheExport,
        used: &[UsedStep],
        mounts: &[CachedMount],
        id: VertexId,
    ) -> anyhow::Result<()> {
        let mut index = CacheIndex::new();
        let mut seen = HashSet::new();
        for step in used {
            if export.mode == CacheMode::Min && !step.target {
                continue;
            }
            let UsedResult::Layer(layer) = &step.result else {
                anyhow::bail!("step {} has no layer to export", step.key);
            };
            if seen.insert((step.key.clone(), step.kind)) {
                index.steps.push(CachedStep {
                    key: step.key.clone(),
                    kind: step.kind,
                    inputs: remote::redact(&step.inputs),
                    layer: layer.clone(),
                });
            }
            index
                .positions
                .insert(step.position.clone(), step.key.clone());
        }
        if export.mode == CacheMode::Max {
            index.mounts = mounts.to_vec();
        }
        let artifact = remote::CacheArtifact::new(&index, self.oci_blobs.clone())?;
        // Layers of imported caches that were not needed here are not local: fetched,
        // unless they go back to the repository they came from.
        let target = match &export.location {
            CacheLocation::Registry(name) => Some(Reference::parse(name)?),
            CacheLocation::Local(_) => None,
        };
        for missing in artifact.missing_blobs() {
            let digest = missing.digest().to_string();
            let in_place = target.as_ref().is_some_and(|t| {
                self.remote
                    .sources
                    .iter()
                    .any(|s| s.has_blob(&digest) && s.is_in_repository_of(t))
            });
            if !in_place {
                self.remote
                    .fetch(&digest, &self.registry, &self.registry_blobs)
                    .await?;
            }
        }
        let report = remote::export(
            &artifact,
            &export.location,
            &self.registry,
            &self.registry_blobs,
            &registry::NoProgress,
        )
        .await?;
        self.reporter.log(
            id,
            &format!(
                "{} steps, {} cache mounts; {} blobs written ({}), {} already there; manifest {}",
                index.steps.len(),
                index.mounts.len(),
                report.uploaded,
                indicatif::HumanBytes(report.bytes_uploaded),
                report.already_there,
                report.digest
            ),
        );
        Ok(())
    }

    /// The layers with the given diff_ids, taken from `docker save` of `images` (the one
    /// with the most layers first: it usually holds a whole stage) and stored as gzip
    /// blobs exactly as the engine has them.
    async fn engine_diffs(
        &self,
        wanted: &HashSet<String>,
        images: &[String],
    ) -> anyhow::Result<HashMap<String, LayerRecord>> {
        let engine = self.engine()?.clone();
        let mut candidates = Vec::new();
        let mut seen = HashSet::new();
        for image in images {
            if seen.insert(image.clone())
                && let Some(info) = engine.find_image(image).await?
            {
                candidates.push((image.clone(), info.diff_ids));
            }
        }
        candidates.sort_by_key(|(_, diff_ids)| std::cmp::Reverse(diff_ids.len()));
        let mut remaining = wanted.clone();
        let mut found = HashMap::new();
        for (image, diff_ids) in candidates {
            if !diff_ids.iter().any(|d| remaining.contains(d)) {
                continue;
            }
            let (sender, receiver) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
            let looking_for = remaining.clone();
            let store = self.oci_blobs.clone();
            let worker = tokio::task::spawn_blocking(move || {
                extract_layers(ChannelReader::new(receiver), &looking_for, &store)
            });
            let mut stream = engine.save_image(&image);
            while let Some(chunk) = stream.next().await {
                let failed = chunk.is_err();
                let item = chunk.map_err(|e| io::Error::other(e.to_string()));
                // The worker stops reading once it has every layer it looks for.
                if sender.send(item).await.is_err() || failed {
                    break;
                }
            }
            drop(sender);
            let extracted = worker
                .await?
                .with_context(|| format!("reading `docker save` of {image}"))?;
            for (diff_id, record) in extracted {
                remaining.remove(&diff_id);
                found.insert(diff_id, record);
            }
        }
        if !remaining.is_empty() {
            anyhow::bail!(
                "the engine's images do not hold the layers {}",
                remaining.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        Ok(found)
    }
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
}

/// A docker save stream as a `Read`, fed chunk by chunk from the async side.
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(receiver: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            receiver,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        let chunk = self.current.split_to(n);
        buf.get_mut(..n)
            .ok_or_else(|| io::Error::other("short buffer"))?
            .copy_from_slice(&chunk);
        Ok(n)
    }
}

/// Reads a `docker save` archive and stores the layer tars whose digest is in `wanted`.
/// Layers are recognised by content (Engine 20.10 names them by v1 id, later engines by
/// digest), so each tar goes to a temporary file while it is hashed.
fn extract_layers(
    reader: impl Read,
    wanted: &HashSet<String>,
    store: &oci::BlobStore,
) -> anyhow::Result<HashMap<String, LayerRecord>> {
    let mut found = HashMap::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if !(name.ends_with("layer.tar") || name.starts_with("blobs/sha256/")) {
            continue;
        }
        let mut temp = tempfile::tempfile_in(store.root())?;
        let mut hashing = HashingWriter::new(&mut temp);
        io::copy(&mut entry, &mut hashing)?;
        let (_, diff_id, _) = hashing.finish();
        let diff_id = diff_id.to_string();
        if wanted.contains(&diff_id) && !found.contains_key(&diff_id) {
            temp.seek(SeekFrom::Start(0))?;
            let record = remote::store_gzip_blob(store, io::BufReader::new(temp))?;
            found.insert(diff_id, record);
            if found.len() == wanted.len() {
                break;
            }
        }
    }
    Ok(found)
}

/// An engine image plus cached layers, as a docker archive needs it: the engine's layers
/// are listed (by diff_id) but never read, since the load leaves them out.
struct OnEngine {
    parts: oci::ImageParts,
    blobs: HashMap<Digest, (PathBuf, u64)>,
}

impl OnEngine {
    fn new(
        engine_layers: &[Digest],
        cached: &[LayerRecord],
        stage_config: &ImageConfig,
        platform: &oci::Platform,
        epoch: i64,
        store: &oci::BlobStore,
    ) -> anyhow::Result<OnEngine> {
        let mut descriptors: Vec<Descriptor> = engine_layers
            .iter()
            .map(|d| oci::manifest::descriptor(MediaType::ImageLayer, d.clone(), 0))
            .collect::<oci::Result<_>>()?;
        let mut diff_ids = engine_layers.to_vec();
        let mut blobs = HashMap::new();
        for layer in cached {
            let digest: Digest = layer.digest.parse()?;
            diff_ids.push(layer.diff_id.parse()?);
            descriptors.push(oci::manifest::descriptor(
                MediaType::from(layer.media_type.as_str()),
                digest.clone(),
                layer.size,
            )?);
            blobs.insert(digest.clone(), (store.path(&digest), layer.size));
        }
        let mut doc = oci::ImageConfig::new(platform, epoch)?;
        config::apply_to_oci(stage_config, &[], &mut doc)?;
        doc.set_diff_ids(&diff_ids);
        let parts = oci::ImageParts::oci(MediaType::ImageConfig, doc.to_json(), descriptors)?;
        Ok(OnEngine { parts, blobs })
    }
}

impl Image for OnEngine {
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
        if let Some(config) = self.parts.config_blob(digest) {
            return Ok(config);
        }
        let (path, size) = self.blobs.get(digest).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("layer {digest} is in the engine, not in the blob store"),
            )
        })?;
        let file = std::fs::File::open(path)?;
        Ok(Box::new(oci::VerifyingReader::new(
            io::BufReader::new(file),
            digest.clone(),
            Some(*size),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar like `docker save`'s: layer tars among other files.
    fn saved(layers: &[&[u8]]) -> Vec<u8> {
        let mut out = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            out.append_data(&mut header, name, data).unwrap();
        };
        add("manifest.json", b"[]");
        for (i, layer) in layers.iter().enumerate() {
            add(&format!("{i:064x}/json"), b"{}");
            add(&format!("{i:064x}/layer.tar"), layer);
        }
        out.into_inner().unwrap()
    }

    #[test]
    fn layers_are_found_by_content_and_stored_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let store = oci::BlobStore::open(dir.path()).unwrap();
        let (base, step) = (&b"base layer tar"[..], &b"step layer tar"[..]);
        let wanted: HashSet<String> = [oci::sha256_digest(step).to_string()].into();
        let found = extract_layers(&saved(&[base, step])[..], &wanted, &store).unwrap();
        assert_eq!(found.len(), 1);
        let record = &found[&oci::sha256_digest(step).to_string()];
        assert_eq!(record.diff_id, oci::sha256_digest(step).to_string());
        let blob = std::fs::read(store.path(&record.digest.parse().unwrap())).unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(tar, step);
    }

    #[test]
    fn a_channel_of_chunks_reads_as_one_stream() {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let feeder = std::thread::spawn(move || {
            for chunk in [&b"hello "[..], b"", b"channel"] {
                sender
                    .blocking_send(Ok(Bytes::copy_from_slice(chunk)))
                    .unwrap();
            }
        });
        let mut text = String::new();
        ChannelReader::new(receiver)
            .read_to_string(&mut text)
            .unwrap();
        feeder.join().unwrap();
        assert_eq!(text, "hello channel");
    }
}
