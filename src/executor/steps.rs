//! The step cache lookups every step goes through: the local cache, then the imported
//! ones, and a miss explained. The keys come from [`crate::plan::keys`].

use super::Builder;
use super::driver::Found;
use crate::cache::remote::StepKind as CachedKind;
use crate::cache::{self, KeyInputs, LayerRecord, StepRecord};
use crate::fetch::RemoteSource;
use crate::oci::WrittenLayer;
use crate::plan::dispatch::CopyFrom;
use crate::plan::keys::{Keys, Sources};

/// What a lookup found.
pub(super) enum Lookup {
    Hit(Box<StepRecord>),
    Miss { reason: String },
}

/// What the caches have for a build-stage step.
pub(super) enum EngineHit {
    /// The engine still has the image an earlier build committed (and the step's layer,
    /// when an export took it out of the engine before).
    Image {
        image: String,
        layer: Option<LayerRecord>,
    },
    /// The step's layer, in the blob store (`None`: the step changed no file).
    Layer(Option<LayerRecord>),
}

impl Sources for Builder {
    fn source_key(&self, from: &CopyFrom) -> anyhow::Result<Option<String>> {
        Ok(match from {
            CopyFrom::Context | CopyFrom::Local(_) => None,
            CopyFrom::Stage(i) => Some(self.stage_output(*i)?.key.clone()),
            CopyFrom::Image(name) => Some(self.pulled_image(name)?.digest.clone()),
        })
    }

    fn remote_key(&self, source: &RemoteSource) -> anyhow::Result<String> {
        Ok(self.resolved(source)?.key())
    }
}

impl Builder {
    /// The build's key maker.
    pub(super) fn keys(&self) -> Keys<'_> {
        Keys {
            graph: &self.graph,
            context: &self.context,
            local_contexts: &self.local_contexts,
            network: self.request.network,
            run_options: &self.request.run_options,
            context_size_warning: self.request.context_size_warning,
            sources: self,
            reporter: self.reporter.as_ref(),
        }
    }

    /// Why the steps of stage `stage` are run without a look-up in any cache:
    /// `--no-cache-filter` names the stage.
    pub(super) fn no_cache_filter(&self, stage: usize) -> Option<String> {
        let name = self.graph.stage(stage).name.as_deref()?;
        self.request
            .no_cache_filter
            .contains(name)
            .then(|| format!("--no-cache-filter {name}"))
    }

    /// Looks `inputs` up in the step cache (unless `--no-cache`), remembering them as the
    /// last build of the step at `identity` so the next miss can say what changed. A miss
    /// is explained against the last local build of the step, else against the build that
    /// exported an imported cache (`position`).
    pub(super) fn lookup(&self, identity: &str, position: &str, inputs: &KeyInputs) -> Lookup {
        let key = inputs.key();
        if !self.request.no_cache
            && let Some(record) = self.cache.get(&key)
        {
            let _ = self.cache.set_last_inputs(identity, inputs);
            return Lookup::Hit(Box::new(record));
        }
        let reason = if self.request.no_cache {
            "--no-cache".to_owned()
        } else {
            match self.cache.last_inputs(identity) {
                Some(last) => cache::explain_miss(Some(&last), inputs),
                // An exported cache's inputs are redacted: compare like with like.
                None => match self.remote.last_inputs(position) {
                    Some(last) => cache::explain_miss(Some(last), &cache::remote::redact(inputs)),
                    None => cache::explain_miss(None, inputs),
                },
            }
        };
        Lookup::Miss { reason }
    }

    /// Stores a step's result; the cache is an optimisation, so failing to write it is a
    /// warning, not a failed build.
    pub(super) fn remember(&self, identity: &str, record: &StepRecord) {
        if let Err(e) = self
            .cache
            .put(record)
            .and_then(|_| self.cache.set_last_inputs(identity, &record.inputs))
        {
            self.reporter
                .warning(&format!("could not write the step cache: {e}"));
        }
    }

    fn blob_is_local(&self, digest: &str) -> bool {
        digest
            .parse::<oci_spec::image::Digest>()
            .is_ok_and(|d| self.oci_blobs.contains(&d))
    }

    /// A build-stage step in the local cache, else in the imported ones.
    pub(super) async fn find_engine_step(
        &self,
        identity: &str,
        position: &str,
        inputs: &KeyInputs,
    ) -> anyhow::Result<Found<EngineHit>> {
        let reason = match self.lookup(identity, position, inputs) {
            Lookup::Hit(record) => {
                let local_layer = record
                    .layer
                    .clone()
                    .filter(|l| self.blob_is_local(&l.digest));
                if let Some(image) = &record.image
                    && self.engine()?.find_image(image).await?.is_some()
                {
                    return Ok(Found::Hit(EngineHit::Image {
                        image: image.clone(),
                        layer: local_layer,
                    }));
                }
                match (&record.image, &record.layer) {
                    // Not a step that changed nothing: the native executor ran it.
                    (None, None) if record.snapshot.is_some() => {
                        // Its snapshot's upper directory, written as a layer here, would
                        // not always give the engine's image (a COPY over identical files:
                        // tests/conformance_build.rs, copy-overwrite); an export writes it.
                        "the step last ran on the native executor, whose result is a snapshot \
                         (an export with --cache-to writes its layer)"
                            .to_owned()
                    }
                    (_, Some(_)) if local_layer.is_some() => {
                        return Ok(Found::Hit(EngineHit::Layer(local_layer)));
                    }
                    (None, None) => return Ok(Found::Hit(EngineHit::Layer(None))),
                    (Some(_), _) => "the engine no longer has the step's image".to_owned(),
                    (None, Some(_)) => "the step's layer is no longer in the blob store".to_owned(),
                }
            }
            Lookup::Miss { reason } => reason,
        };
        Ok(
            match self
                .remote_layer(identity, inputs, CachedKind::Engine)
                .await
            {
                Some(layer) => Found::Hit(EngineHit::Layer(layer)),
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
                Ok(cached) => return Ok(cached),
                Err(why) => why,
            },
            Lookup::Miss { reason } => reason,
        };
        let Some(layer) = self
            .remote_layer(identity, inputs, CachedKind::Package)
            .await
        else {
            return Err(reason);
        };
        let record = StepRecord {
            key: inputs.key(),
            inputs: inputs.clone(),
            image: None,
            layer,
            adds_layer: None,
            snapshot: None,
        };
        match self.cached_layer(&record) {
            Ok(cached) => {
                // A layer compressed again for this build was kept by `cached_layer`,
                // record and all; one used as imported is kept here.
                if cached.as_ref().map(LayerRecord::from) == record.layer {
                    self.remember(identity, &record);
                }
                Ok(cached)
            }
            Err(_) => Err(reason),
        }
    }

    /// The step's layer from an imported cache, fetched into the blob store: `Some(None)`
    /// for a step that changed nothing, `None` when no cache has it (or it cannot be
    /// fetched: a warning).
    pub(super) async fn remote_layer(
        &self,
        identity: &str,
        inputs: &KeyInputs,
        kind: CachedKind,
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
}
