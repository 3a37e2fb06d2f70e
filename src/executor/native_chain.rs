//! A native stage's chain of snapshots, made when something first reads the stage's files.
//! A stage whose steps are all cache hits found as layers (a fresh CI runner with
//! `--cache-from`, or steps the engine executor ran) unpacks neither its base image nor
//! those layers unless a step that runs, a `COPY --from` that runs or the image itself
//! needs them: the engine executor leaves such a stage unloaded in the same way
//! ([`super::engine_state`]).

use anyhow::Context as _;
use oci_spec::image::Digest;

use super::Builder;
use crate::cache::LayerRecord;
use crate::cache::snapshot::Snapshot;
use crate::progress::VertexId;

/// What a chain is made of: snapshots that exist, or the base image and the cached layers
/// still to unpack on top of them.
#[derive(Debug, Clone, Default)]
pub(super) struct Recipe {
    /// The snapshots at the bottom, held by this build (none when `image` is to be unpacked
    /// first, or for `FROM scratch`).
    pub below: Vec<Snapshot>,
    /// The base image, when its layers are not unpacked yet.
    pub image: Option<String>,
    /// Cached steps to unpack on top, bottom first: each key, and the layer in the blob
    /// store (`None`: the step changed nothing).
    pub steps: Vec<(String, Option<LayerRecord>)>,
}

impl Recipe {
    /// A chain that exists.
    pub fn ready(chain: Vec<Snapshot>) -> Recipe {
        Recipe {
            below: chain,
            ..Recipe::default()
        }
    }

    /// The chain, when nothing is left to unpack.
    pub fn as_ready(&self) -> Option<&[Snapshot]> {
        (self.image.is_none() && self.steps.is_empty()).then_some(self.below.as_slice())
    }
}

/// A finished native stage's chain, made at most once, by the first reader.
#[derive(Debug)]
pub(super) struct NativeChain {
    state: tokio::sync::Mutex<Recipe>,
}

impl NativeChain {
    pub fn new(recipe: Recipe) -> NativeChain {
        NativeChain {
            state: tokio::sync::Mutex::new(recipe),
        }
    }

    /// What the chain is made of, as a stage built on this one starts from.
    pub async fn recipe(&self) -> Recipe {
        self.state.lock().await.clone()
    }

    /// The chain, bottom first: unpacked now if it was not yet.
    pub async fn get(&self, builder: &Builder, id: VertexId) -> anyhow::Result<Vec<Snapshot>> {
        let mut state = self.state.lock().await;
        if let Some(chain) = state.as_ready() {
            return Ok(chain.to_vec());
        }
        let chain = builder.make_chain(&state, id)?;
        *state = Recipe::ready(chain.clone());
        Ok(chain)
    }
}

impl Builder {
    /// Unpacks what `recipe` still lacks (the base image's layers, then each cached step's
    /// layer on the chain below it, unless the store has that step already) and returns
    /// the chain, every snapshot held by this build.
    pub(super) fn make_chain(
        &self,
        recipe: &Recipe,
        id: VertexId,
    ) -> anyhow::Result<Vec<Snapshot>> {
        let native = self.native()?;
        let store = &native.store;
        let mut chain = match &recipe.image {
            Some(name) => self.image_snapshots(name, id)?,
            None => recipe.below.clone(),
        };
        for (key, layer) in &recipe.steps {
            let snapshot = match (store.step(key)?, layer) {
                (Some(found), _) => found,
                (None, None) => store.commit(store.prepare(&chain)?, key)?,
                (None, Some(layer)) => {
                    let digest: Digest = layer.digest.parse()?;
                    let diff_id: Digest = layer.diff_id.parse()?;
                    let encoding = layer
                        .compression()
                        .with_context(|| format!("a layer of media type {}", layer.media_type))?;
                    let blob = self.oci_blobs.open_file(&digest).with_context(|| {
                        format!(
                            "opening cached layer {}",
                            self.oci_blobs.path(&digest).display()
                        )
                    })?;
                    let blob = std::io::BufReader::with_capacity(1 << 20, blob);
                    tokio::task::block_in_place(|| {
                        store.step_from_layer(key, &chain, &diff_id, encoding, blob)
                    })?
                }
            };
            chain = native.chain_of(&snapshot)?;
        }
        Ok(chain)
    }
}
