//! A build stage's place in the engine: an engine image, and layers from the step cache
//! (an imported cache's, on a fresh machine) on top of it that are not loaded yet. They
//! are loaded, on top of the image below them, only when a step has to run on them or
//! the stage is read ([`Builder::materialize`]).

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use oci_spec::image::{Descriptor, Digest, ImageManifest, MediaType};

use super::{Builder, config, lock};
use crate::cache::LayerRecord;
use crate::oci::{self, Image};
use crate::plan::dispatch::ImageConfig;
use crate::progress::VertexId;
use crate::publish::load_into_engine;

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

impl Builder {
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
            load_into_engine(
                &engine,
                Arc::new(image),
                &[],
                base_layers.iter().cloned().collect(),
            )
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
