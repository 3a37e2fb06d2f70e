//! The native backend of the step driver ([`super::driver`]): build stages run by imgbuild
//! itself. A stage is a chain of snapshots ([`crate::cache::snapshot`]): its base image's
//! layers, unpacked once each, then one snapshot per step; the chain is unpacked only when
//! a step runs or something reads the stage's files ([`super::native_chain`]). A step mounts an overlay of the
//! chain with a new upper directory; a RUN runs there through the OCI runtime
//! ([`crate::runtime`]), a COPY or WORKDIR writes its files through the mount
//! ([`super::stage_fs::RootFs`]), and the upper directory is kept as the step's snapshot
//! under the step's key: nothing is committed or copied.
//!
//! Keys are the engine backend's, so both executors name a step's result alike.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use oci_spec::image::Digest;

use super::driver::{Found, StageBackend};
use super::native_chain::{NativeChain, Recipe};
use super::stage_fs::RootFs;
use super::{Builder, StageBase, StageOutput};
use crate::cache::remote::{StepKind as CachedKind, UsedResult};
use crate::cache::snapshot::{ActiveSnapshot, Lease, MountedSnapshot, Snapshot, SnapshotStore};
use crate::cache::{KeyInputs, LayerRecord, StepRecord};
use crate::context::{Selection, SelectionDigest};
use crate::engine;
use crate::plan::dispatch::{CopyFrom, RunStep, StagePlan, Step, StepKind};
use crate::plan::keys::StepResult;
use crate::progress::VertexId;
use crate::registry;
use crate::runtime::{self, Runtime};

/// What the native executor needs for a build: the snapshot store and the OCI runtime,
/// with its state kept in the cache dir.
pub(super) struct Native {
    pub(super) store: SnapshotStore,
    runtime: Runtime,
    /// The runtime's `--root`: one per cache dir, so the next build finds the containers
    /// of a killed one.
    state_dir: PathBuf,
    /// Where each RUN's bundle (`config.json`, hosts, resolv.conf) is written.
    bundles: PathBuf,
    /// Every snapshot this build has used, held until the build ends, so that another
    /// build's pruning or `--no-cache` cannot remove one between two steps.
    held: Mutex<HashMap<String, Lease>>,
}

impl Native {
    /// Ctrl-C and SIGTERM delete this process's runtime containers (and the engine's, when
    /// one is connected) before the process exits; its mounts are detached by the next
    /// build's clean-up ([`SnapshotStore::recover`]).
    pub fn exit_on_interrupt(&self, engine: Option<engine::Engine>) -> anyhow::Result<()> {
        let runtime = self.runtime.clone();
        let state_dir = self.state_dir.clone();
        engine::cleanup::exit_on_interrupt_with(async move {
            let _ = runtime.remove_process_containers(&state_dir).await;
            if let Some(engine) = engine {
                let _ = engine.remove_process_containers().await;
            }
        })?;
        Ok(())
    }

    /// The runtime the steps run on, as the build's summary names it.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Opens the store in `cache_dir` and cleans up after builds that were killed: their
    /// containers, their mounts, their half-written snapshots.
    pub async fn open(cache_dir: &std::path::Path, runtime: Runtime) -> anyhow::Result<Native> {
        let store = SnapshotStore::open(cache_dir)?;
        let state_dir = cache_dir.join("runc-v1");
        let bundles = cache_dir.join("bundles-v1");
        for dir in [&state_dir, &bundles] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        runtime.cleanup_stale(&state_dir).await?;
        store.recover()?;
        // Earlier builds' steps made durable, off this build's path: it waits on the disk.
        let settling = store.clone();
        std::thread::spawn(move || settling.settle());
        Ok(Native {
            store,
            runtime,
            state_dir,
            bundles,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// Holds each snapshot of `chain` until [`Self::release`].
    fn hold(&self, chain: &[Snapshot]) -> anyhow::Result<()> {
        let mut held = super::lock(&self.held);
        for snapshot in chain {
            if !held.contains_key(snapshot.name()) {
                held.insert(snapshot.name().to_owned(), self.store.lease(snapshot)?);
            }
        }
        Ok(())
    }

    /// Lets go of the snapshots this build held: it is done with them.
    pub fn release(&self) {
        super::lock(&self.held).clear();
    }

    /// `top` with every snapshot below it, bottom first: held for the rest of the build.
    pub(super) fn chain_of(&self, top: &Snapshot) -> anyhow::Result<Vec<Snapshot>> {
        let chain = self.store.chain(top)?;
        self.hold(&chain)?;
        Ok(chain)
    }
}

/// The native backend: the stage's chain of snapshots so far, unpacked only when a step
/// runs ([`Recipe`]).
struct NativeStage<'a> {
    builder: &'a Builder,
    native: &'a Native,
    plan: &'a StagePlan,
    base: StageBase,
    recipe: Recipe,
}

/// A cache hit of the native backend, with the step's result as an export takes it.
pub(super) enum NativeHit {
    /// The step's snapshot is in the store: the chain up to it, held.
    Snapshot(Vec<Snapshot>),
    /// The step's layer is in the blob store (`None`: the step changed nothing); it is
    /// unpacked when the stage's files are needed.
    Layer {
        key: String,
        layer: Option<LayerRecord>,
    },
}

impl NativeStage<'_> {
    /// The layer of a step another build recorded: the one the record names (when the blob
    /// store has it), none for a step that changed nothing, or the engine executor's,
    /// taken out of the engine. `None` when it cannot be had.
    async fn layer_of_record(
        &self,
        record: &StepRecord,
    ) -> anyhow::Result<Option<Option<LayerRecord>>> {
        let layer = match (&record.layer, record.adds_layer) {
            (Some(layer), _) => layer.clone(),
            (None, Some(false)) => return Ok(Some(None)),
            (None, _) => match self.builder.engine_step_layer(record).await? {
                Some(layer) => layer,
                None => return Ok(None),
            },
        };
        let usable = layer.compression().is_some()
            && layer.diff_id.parse::<Digest>().is_ok()
            && layer
                .digest
                .parse::<Digest>()
                .is_ok_and(|d| self.builder.oci_blobs.contains(&d));
        Ok(usable.then_some(Some(layer)))
    }

    /// The step from an imported cache (`--cache-from`): its layer fetched into the blob
    /// store (unpacked into a snapshot when needed, never loaded into an engine), and
    /// remembered in the local cache, so the next build (with either executor) finds it.
    async fn imported(
        &self,
        identity: &str,
        inputs: &KeyInputs,
    ) -> anyhow::Result<Option<Option<LayerRecord>>> {
        let b = self.builder;
        let Some(layer) = b.remote_layer(identity, inputs, CachedKind::Engine).await else {
            return Ok(None);
        };
        let record = StepRecord {
            key: inputs.key(),
            inputs: inputs.clone(),
            image: None,
            adds_layer: Some(layer.is_some()),
            layer,
            snapshot: None,
        };
        let layer = self.layer_of_record(&record).await?;
        if layer.is_some() {
            b.remember(identity, &record);
        }
        Ok(layer)
    }

    /// The chain so far, unpacked now if it was not yet.
    fn chain(&mut self, id: VertexId) -> anyhow::Result<Vec<Snapshot>> {
        if let Some(chain) = self.recipe.as_ready() {
            return Ok(chain.to_vec());
        }
        let chain = self.builder.make_chain(&self.recipe, id)?;
        self.recipe = Recipe::ready(chain.clone());
        Ok(chain)
    }
}

impl StageBackend for NativeStage<'_> {
    type Hit = (NativeHit, UsedResult);
    type Ran = ActiveSnapshot;
    type Output = StageOutput;
    const RESULT: StepResult = StepResult::EngineImage;
    const KIND: CachedKind = CachedKind::Engine;

    /// Nothing is unpacked yet: the base image waits for the first step that runs (its
    /// unpacking shows there).
    async fn start(&mut self, total: usize) -> anyhow::Result<String> {
        let b = self.builder;
        match &self.base {
            StageBase::Scratch => Ok("scratch".to_owned()),
            StageBase::Stage(i) => {
                let out = b.stage_output(*i)?;
                self.recipe = out
                    .snapshots
                    .as_ref()
                    .context("a native stage built on a stage the engine built")?
                    .recipe()
                    .await;
                Ok(out.key)
            }
            StageBase::Image(name) => {
                let id = b.ids.next();
                b.reporter.started(
                    id,
                    &b.step_name(self.plan, 1, total, &format!("FROM {name}")),
                );
                b.reporter.done(id, std::time::Duration::ZERO);
                self.recipe = Recipe {
                    image: Some(name.clone()),
                    ..Recipe::default()
                };
                Ok(b.pulled_image(name)?.digest.clone())
            }
        }
    }

    /// A COPY's destination is looked at when it runs; keys do not depend on it (as the
    /// engine backend's, so both make the same keys).
    fn dest_is_dir(&self, _path: &str) -> bool {
        false
    }

    async fn look_up(
        &self,
        identity: &str,
        position: &str,
        inputs: &KeyInputs,
    ) -> anyhow::Result<Found<Self::Hit>> {
        let b = self.builder;
        let key = inputs.key();
        let found = match b.request.no_cache {
            true => None,
            false => self.native.store.step(&key)?,
        };
        // Held at once: a snapshot another build removes before that is a miss.
        if let Some(chain) = found.and_then(|snapshot| self.native.chain_of(&snapshot).ok()) {
            let _ = b.cache.set_last_inputs(identity, inputs);
            return Ok(Found::Hit((
                NativeHit::Snapshot(chain),
                UsedResult::Snapshot,
            )));
        }
        let reason = match b.lookup(identity, position, inputs) {
            super::steps::Lookup::Miss { reason } => reason,
            super::steps::Lookup::Hit(record) => match self.layer_of_record(&record).await? {
                Some(layer) => {
                    let result = UsedResult::Layer(layer.clone());
                    return Ok(Found::Hit((NativeHit::Layer { key, layer }, result)));
                }
                None => "the cache has the step, but neither its snapshot nor its layer is here"
                    .to_owned(),
            },
        };
        Ok(match self.imported(identity, inputs).await? {
            Some(layer) => {
                let result = UsedResult::Layer(layer.clone());
                Found::Hit((NativeHit::Layer { key, layer }, result))
            }
            None => Found::Miss(reason),
        })
    }

    async fn apply(
        &mut self,
        _step: &Step,
        (hit, result): Self::Hit,
    ) -> anyhow::Result<UsedResult> {
        match hit {
            NativeHit::Snapshot(chain) => self.recipe = Recipe::ready(chain),
            NativeHit::Layer { key, layer } => self.recipe.steps.push((key, layer)),
        }
        Ok(result)
    }

    async fn run(
        &mut self,
        id: VertexId,
        _n: usize,
        step: &Step,
        _selection: Option<(Selection, SelectionDigest)>,
    ) -> anyhow::Result<ActiveSnapshot> {
        let b = self.builder;
        let chain = self.chain(id)?;
        let mounted = self.native.store.prepare(&chain)?.into_mounted()?;
        let fs = RootFs::new(mounted.root());
        let result = match &step.kind {
            StepKind::Run(run) => {
                b.command_starts();
                b.run_natively(self.native, id, run, &mounted).await
            }
            StepKind::Copy(copy) => b.copy_into(&fs, step, copy).await,
            StepKind::Mkdir { path, user } => b.mkdir_in(&fs, path, user).await.map(|_| ()),
        };
        let active = mounted.unmount();
        result?;
        let active = active?;
        if matches!(step.kind, StepKind::Run(_)) {
            // The runtime's mount points for /etc/hosts and /etc/resolv.conf come and go.
            active.drop_untouched_dir("etc")?;
        }
        Ok(active)
    }

    async fn ran(
        &mut self,
        _step: &Step,
        inputs: &KeyInputs,
        active: ActiveSnapshot,
    ) -> anyhow::Result<(StepRecord, UsedResult)> {
        let key = inputs.key();
        let store = self.native.store.clone();
        if (self.builder.request.no_cache
            || self.builder.no_cache_filter(self.plan.stage).is_some())
            && let Some(old) = store.step(&key)?
        {
            // The step ran again (`--no-cache`, `--no-cache-filter`): its new result replaces
            // the old one, unless another build is using that one (then both keep it).
            let _ = store.remove(&old);
        }
        let snapshot = tokio::task::block_in_place(|| store.commit(active, &key))?;
        self.recipe = Recipe::ready(self.native.chain_of(&snapshot)?);
        let record = StepRecord {
            key,
            inputs: inputs.clone(),
            image: None,
            layer: None,
            adds_layer: None,
            snapshot: Some(snapshot.name().to_owned()),
        };
        Ok((record, UsedResult::Snapshot))
    }

    fn finish(self, key: String) -> anyhow::Result<StageOutput> {
        Ok(StageOutput {
            image: String::new(),
            key,
            config: self.plan.config.clone(),
            base: self.base,
            layer_steps: Vec::new(),
            pending: Vec::new(),
            unloaded: None,
            snapshots: Some(Arc::new(NativeChain::new(self.recipe))),
        })
    }
}

impl Builder {
    /// Runs a build stage natively.
    pub(super) async fn run_native_stage(
        &self,
        native: &Native,
        index: usize,
        plan: &StagePlan,
    ) -> anyhow::Result<StageOutput> {
        let backend = NativeStage {
            builder: self,
            native,
            plan,
            base: self.stage_base(index),
            recipe: Recipe::default(),
        };
        self.drive(index, plan, backend).await
    }

    /// The snapshots of a pulled image's layers, bottom first: each unpacked from the blob
    /// store the first time any build needs it.
    pub(super) fn image_snapshots(
        &self,
        name: &str,
        id: VertexId,
    ) -> anyhow::Result<Vec<Snapshot>> {
        let native = self.native()?;
        let pulled = self.pulled_image(name)?;
        let image = pulled.image.clone();
        let diff_ids = image.diff_ids()?;
        let mut chain = Vec::with_capacity(diff_ids.len());
        for diff_id in &diff_ids {
            chain.push(native.store.layer(diff_id)?);
        }
        // Every missing layer at once, each on a thread of its own (a layer is a snapshot
        // of its own: they do not depend on each other); a layer the pull left is
        // downloaded now and unpacked as it streams in.
        let mut unpacks = Vec::new();
        for (i, (layer, diff_id)) in image.layers().iter().zip(&diff_ids).enumerate() {
            if chain[i].is_some() {
                continue;
            }
            let encoding = crate::oci::manifest::layer_encoding(layer.media_type())
                .with_context(|| format!("{name}: a layer of media type {}", layer.media_type()))?;
            let blob: Box<dyn std::io::Read + Send> = match &pulled.layers_from {
                Some(reference) if !self.registry_blobs.contains(layer.digest()) => {
                    self.reporter
                        .log(id, &format!("downloading and unpacking {}", short(diff_id)));
                    Box::new(self.download_followed(reference, layer))
                }
                _ => {
                    self.reporter
                        .log(id, &format!("unpacking {}", short(diff_id)));
                    image
                        .open_blob(layer.digest())
                        .with_context(|| format!("opening layer {} of {name}", layer.digest()))?
                }
            };
            let blob = std::io::BufReader::with_capacity(1 << 20, blob);
            unpacks.push((i, diff_id, encoding, blob));
        }
        let store = &native.store;
        let unpacked = tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                let threads: Vec<_> = unpacks
                    .into_iter()
                    .map(|(i, diff_id, encoding, blob)| {
                        (
                            i,
                            scope.spawn(move || store.unpack_layer(diff_id, encoding, blob)),
                        )
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|(i, thread)| match thread.join() {
                        Ok(result) => result.map(|snapshot| (i, snapshot)).map_err(Into::into),
                        Err(_) => Err(anyhow::anyhow!("unpacking a layer of {name} panicked")),
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
        })?;
        for (i, snapshot) in unpacked {
            chain[i] = Some(snapshot);
        }
        let chain: Vec<Snapshot> = chain.into_iter().flatten().collect();
        native.hold(&chain)?;
        Ok(chain)
    }

    /// Starts downloading `layer` of `reference` into the blob store, returning a reader
    /// that follows the download (see [`registry::BlobFollow`]): its end is the verified
    /// blob's, and a failed download is its error.
    fn download_followed(
        &self,
        reference: &registry::Reference,
        layer: &oci_spec::image::Descriptor,
    ) -> registry::FollowingReader {
        let follow = registry::BlobFollow::new();
        let reader = follow.reader();
        let end = follow.ender();
        let (client, store) = (self.registry.clone(), self.registry_blobs.clone());
        let (reference, layer) = (reference.clone(), layer.clone());
        tokio::spawn(async move {
            let fetched = client
                .fetch_blob_followed(&reference, &layer, &store, &registry::NoProgress, &follow)
                .await;
            end.finish(fetched.map_err(|e| {
                format!(
                    "downloading layer {} of {reference}: {}",
                    layer.digest(),
                    registry::with_causes(&e)
                )
            }));
        });
        reader
    }

    /// The layer of a build-stage step the native executor ran or found, for an export: the
    /// one written before, else the upper directory of its
    /// snapshot in `store`, written now and remembered in the local cache. `Ok(None)` when
    /// the step changed nothing; an error when the snapshot is gone.
    pub(super) fn snapshot_step_layer(
        &self,
        store: &SnapshotStore,
        key: &str,
    ) -> anyhow::Result<Option<LayerRecord>> {
        let record = self.cache.get(key);
        if let Some(record) = &record {
            if record.adds_layer == Some(false) {
                return Ok(None);
            }
            if record.layer.is_some()
                && let Ok(Some(layer)) = self.cached_layer(record)
            {
                return Ok(Some(LayerRecord::from(&layer)));
            }
        }
        let snapshot = store
            .step(key)?
            .with_context(|| format!("the snapshot of step {key} is gone"))?;
        // Held while it is read: no pruning build removes it meanwhile.
        let _lease = store.lease(&snapshot)?;
        let layer = self.upper_layer(&snapshot)?.as_ref().map(LayerRecord::from);
        if let Some(mut record) = record {
            record.adds_layer = Some(layer.is_some());
            record.layer = layer.clone();
            if let Err(e) = self.cache.put(&record) {
                self.reporter
                    .warning(&format!("could not write the step cache: {e}"));
            }
        }
        Ok(layer)
    }

    /// The layer of a step the engine executor committed, taken out of the engine (`docker
    /// save`) into the blob store and remembered in the local cache, as an export takes it.
    /// `None` when no engine is connected or the engine no longer has the step's image.
    async fn engine_step_layer(&self, record: &StepRecord) -> anyhow::Result<Option<LayerRecord>> {
        let (Some(image), Some(true), Ok(engine)) =
            (&record.image, record.adds_layer, self.engine())
        else {
            return Ok(None);
        };
        let Some(info) = engine.find_image(image).await? else {
            return Ok(None);
        };
        let Some(diff_id) = info.diff_ids.last() else {
            return Ok(None);
        };
        let wanted = std::collections::HashSet::from([diff_id.clone()]);
        let mut layers = crate::cache::remote::layers_from_engine(
            engine,
            &wanted,
            std::slice::from_ref(image),
            &self.oci_blobs,
        )
        .await?;
        let layer = layers.remove(diff_id);
        if let Some(layer) = &layer {
            let mut record = record.clone();
            record.layer = Some(layer.clone());
            let _ = self.cache.put(&record);
        }
        Ok(layer)
    }

    /// The file system `COPY --from` (or a `from=` mount) reads, mounted from snapshots:
    /// `None` when it has none (a stage the engine built, or the engine executor is used).
    pub(super) async fn native_view(
        &self,
        from: &CopyFrom,
    ) -> anyhow::Result<Option<MountedSnapshot>> {
        let Some(native) = &self.native else {
            return Ok(None);
        };
        let chain = match from {
            CopyFrom::Context | CopyFrom::Local(_) => return Ok(None),
            CopyFrom::Stage(i) => match self.stage_output(*i)?.snapshots {
                Some(chain) => chain.get(self, self.ids.next()).await?,
                None => return Ok(None),
            },
            CopyFrom::Image(name) => self.image_snapshots(name, self.ids.next())?,
        };
        Ok(Some(native.store.prepare(&chain)?.into_mounted()?))
    }

    /// Runs a RUN in `mounted` through the OCI runtime: the command, environment, user,
    /// working directory, network and mounts as the engine backend gives them.
    async fn run_natively(
        &self,
        native: &Native,
        id: VertexId,
        run: &RunStep,
        mounted: &MountedSnapshot,
    ) -> anyhow::Result<()> {
        let sources = self.mount_sources(run).await?;
        let (spec, _guards) = self.run_spec(run, "", &sources)?;
        self.restore_cache_mounts(id, run).await;
        let rootfs = mounted.root();
        let user = match spec.user.as_str() {
            // BuildKit runs a stage without USER as root, whatever the image says.
            "" => runtime::User::ROOT,
            user => runtime::User::resolve(rootfs, user)?,
        };
        let mut mounts = Vec::with_capacity(spec.mounts.len());
        for mount in spec.mounts {
            mounts.push(match mount {
                engine::Mount::Bind {
                    source,
                    target,
                    read_only,
                } => runtime::Mount::Bind {
                    source,
                    target,
                    read_only,
                },
                engine::Mount::Tmpfs {
                    target,
                    size,
                    read_only,
                } => runtime::Mount::Tmpfs {
                    target,
                    size,
                    read_only,
                },
                engine::Mount::Volume { target, .. } => {
                    anyhow::bail!("a volume at {target}: not supported by the native executor")
                }
            });
        }
        let mut run_spec = runtime::RunSpec::new(rootfs, spec.argv);
        run_spec.env = spec.env;
        run_spec.cwd = match spec.workdir.as_str() {
            "" => "/".to_owned(),
            cwd => cwd.to_owned(),
        };
        run_spec.user = user;
        run_spec.network = match spec.network {
            engine::Network::None => runtime::Network::None,
            engine::Network::Host | engine::Network::Default => runtime::Network::Host,
        };
        run_spec.mounts = mounts;
        run_spec.stdin = spec.stdin;
        run_spec.privileged = spec.privileged;
        // BuildKit's /etc/hosts with the --add-host lines after its own.
        if !spec.options.extra_hosts.is_empty() {
            let hosts = runtime::hosts(&run_spec.hostname) + &spec.options.hosts_lines();
            run_spec.hosts = Some(hosts);
        }
        run_spec.shm_size = spec.options.shm_size;
        run_spec.ulimits = spec.options.ulimits;
        let bundle = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&native.bundles)
            .context("creating a bundle directory for a RUN")?;
        let reporter: Arc<dyn crate::progress::Reporter> = self.reporter.clone();
        let ran = native
            .runtime
            .run(
                &native.state_dir,
                bundle.path(),
                &run_spec,
                &mut |line: engine::OutputLine<'_>| reporter.log(id, line.text),
            )
            .await;
        if ran.is_err() && engine::cleanup::interrupted() {
            // Killed by the interrupt handler, which exits the process when it is done.
            match engine::cleanup::wait_for_exit().await {}
        }
        ran?;
        Ok(())
    }
}

/// A digest's first 12 hex digits, as progress shows layers.
fn short(digest: &Digest) -> &str {
    digest.digest().get(..12).unwrap_or_default()
}
