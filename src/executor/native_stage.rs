//! The native backend of the step driver ([`super::driver`]): build stages run by imgbuild
//! itself. A stage is a chain of snapshots ([`crate::cache::snapshot`]): its base image's
//! layers, unpacked once each, then one snapshot per step. A step mounts an overlay of the
//! chain with a new upper directory; a RUN runs there through the OCI runtime
//! ([`crate::runtime`]), a COPY or WORKDIR writes its files through the mount
//! ([`super::stage_fs::RootFs`]), and the upper directory is kept as the step's snapshot
//! under the step's key: nothing is committed or copied.
//!
//! Keys are the engine backend's, so both executors name a step's result alike.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use oci_spec::image::Digest;

use super::driver::{Found, StageBackend};
use super::stage_fs::RootFs;
use super::{Builder, StageBase, StageOutput};
use crate::cache::remote::{StepKind as CachedKind, UsedResult};
use crate::cache::snapshot::{
    ActiveSnapshot, LayerEncoding, MountedSnapshot, Snapshot, SnapshotStore,
};
use crate::cache::{KeyInputs, StepRecord};
use crate::context::{Selection, SelectionDigest};
use crate::engine;
use crate::plan::dispatch::{CopyFrom, RunStep, StagePlan, Step, StepKind};
use crate::plan::keys::StepResult;
use crate::progress::VertexId;
use crate::runtime::{self, Runtime};

/// What the native executor needs for a build: the snapshot store and the OCI runtime,
/// with its state kept in the cache dir.
pub(super) struct Native {
    store: SnapshotStore,
    runtime: Runtime,
    /// The runtime's `--root`: one per cache dir, so the next build finds the containers
    /// of a killed one.
    state_dir: PathBuf,
    /// Where each RUN's bundle (`config.json`, hosts, resolv.conf) is written.
    bundles: PathBuf,
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
        Ok(Native {
            store,
            runtime,
            state_dir,
            bundles,
        })
    }
}

/// What in this build the native executor cannot do yet, said as `auto`'s fallback line
/// and `--executor native`'s refusal put it; `None` when it can do all of it.
pub(super) fn unsupported(request: &crate::request::BuildRequest) -> Option<String> {
    (!request.cache_from.is_empty() || !request.cache_to.is_empty())
        .then(|| "--cache-from and --cache-to".to_owned())
}

/// The native backend: the stage's chain of snapshots so far, bottom first.
struct NativeStage<'a> {
    builder: &'a Builder,
    native: &'a Native,
    plan: &'a StagePlan,
    base: StageBase,
    chain: Vec<Snapshot>,
}

impl NativeStage<'_> {
    /// The step's snapshot made from what the engine executor recorded: its layer, when the
    /// blob store has it (an export took it out of the engine), or nothing when its commit
    /// changed nothing.
    fn snapshot_of_record(
        &self,
        key: &str,
        record: &StepRecord,
    ) -> anyhow::Result<Option<Snapshot>> {
        let store = &self.native.store;
        let layer = match (&record.layer, record.adds_layer) {
            (Some(layer), _) => layer,
            (None, Some(false)) => {
                let active = store.prepare(&self.chain)?;
                return Ok(Some(store.commit(active, key)?));
            }
            (None, _) => return Ok(None),
        };
        let (Ok(digest), Ok(diff_id)) = (
            layer.digest.parse::<Digest>(),
            layer.diff_id.parse::<Digest>(),
        ) else {
            return Ok(None);
        };
        let Some(encoding) = LayerEncoding::from_media_type(&layer.media_type) else {
            return Ok(None);
        };
        let Ok(blob) = std::fs::File::open(self.builder.oci_blobs.path(&digest)) else {
            return Ok(None);
        };
        let blob = std::io::BufReader::with_capacity(1 << 20, blob);
        let snapshot = tokio::task::block_in_place(|| {
            store.step_from_layer(key, &self.chain, &diff_id, encoding, blob)
        })?;
        Ok(Some(snapshot))
    }
}

impl StageBackend for NativeStage<'_> {
    type Hit = Snapshot;
    type Ran = ActiveSnapshot;
    type Output = StageOutput;
    const RESULT: StepResult = StepResult::EngineImage;
    const KIND: CachedKind = CachedKind::Engine;

    async fn start(&mut self, total: usize) -> anyhow::Result<String> {
        let b = self.builder;
        match &self.base {
            StageBase::Scratch => Ok("scratch".to_owned()),
            StageBase::Stage(i) => {
                let out = b.stage_output(*i)?;
                self.chain = out
                    .snapshots
                    .clone()
                    .context("a native stage built on a stage the engine built")?;
                Ok(out.key)
            }
            StageBase::Image(name) => {
                let id = b.ids.next();
                let label = b.step_name(self.plan, 1, total, &format!("FROM {name}"));
                b.reporter.started(id, &label);
                let started = Instant::now();
                match b.image_snapshots(name, id) {
                    Ok(chain) => {
                        self.chain = chain;
                        b.reporter.done(id, started.elapsed());
                        Ok(b.pulled_image(name)?.digest.clone())
                    }
                    Err(e) => {
                        b.reporter.failed(id, started.elapsed());
                        Err(e)
                    }
                }
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
    ) -> anyhow::Result<Found<Snapshot>> {
        let b = self.builder;
        let key = inputs.key();
        if !b.request.no_cache
            && let Some(snapshot) = self.native.store.step(&key)?
        {
            let _ = b.cache.set_last_inputs(identity, inputs);
            return Ok(Found::Hit(snapshot));
        }
        Ok(Found::Miss(match b.lookup(identity, position, inputs) {
            super::steps::Lookup::Miss { reason } => reason,
            super::steps::Lookup::Hit(record) => match self.snapshot_of_record(&key, &record)? {
                Some(snapshot) => return Ok(Found::Hit(snapshot)),
                None => "the cache has the step, but neither its snapshot nor its layer is here"
                    .to_owned(),
            },
        }))
    }

    async fn apply(&mut self, _step: &Step, hit: Snapshot) -> anyhow::Result<UsedResult> {
        self.chain = self.native.store.chain(&hit)?;
        Ok(UsedResult::Layer(None))
    }

    async fn run(
        &mut self,
        id: VertexId,
        _n: usize,
        step: &Step,
        _selection: Option<(Selection, SelectionDigest)>,
    ) -> anyhow::Result<ActiveSnapshot> {
        let b = self.builder;
        let mounted = self.native.store.prepare(&self.chain)?.into_mounted()?;
        let fs = RootFs::new(mounted.root());
        let result = match &step.kind {
            StepKind::Run(run) => b.run_natively(self.native, id, run, &mounted).await,
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
        if self.builder.request.no_cache
            && let Some(old) = store.step(&key)?
        {
            // The step ran again (`--no-cache`): its new result replaces the old one, unless
            // another build is using that one (then both builds keep it).
            let _ = store.remove(&old);
        }
        let snapshot = tokio::task::block_in_place(|| store.commit(active, &key))?;
        self.chain = self.native.store.chain(&snapshot)?;
        let record = StepRecord {
            key,
            inputs: inputs.clone(),
            image: None,
            layer: None,
            adds_layer: None,
            snapshot: Some(snapshot.name().to_owned()),
        };
        Ok((record, UsedResult::Layer(None)))
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
            snapshots: Some(self.chain),
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
            chain: Vec::new(),
        };
        self.drive(index, plan, backend).await
    }

    /// The snapshots of a pulled image's layers, bottom first: each unpacked from the blob
    /// store the first time any build needs it.
    fn image_snapshots(&self, name: &str, id: VertexId) -> anyhow::Result<Vec<Snapshot>> {
        let native = self
            .native
            .as_ref()
            .context("the native executor is not in use")?;
        let image = self.pulled_image(name)?.image.clone();
        let diff_ids = image.diff_ids()?;
        let mut chain = Vec::with_capacity(diff_ids.len());
        for (layer, diff_id) in image.layers().iter().zip(&diff_ids) {
            if let Some(found) = native.store.layer(diff_id)? {
                chain.push(found);
                continue;
            }
            self.reporter
                .log(id, &format!("unpacking {}", short(diff_id)));
            let encoding = LayerEncoding::from_media_type(layer.media_type().as_ref())
                .with_context(|| format!("{name}: a layer of media type {}", layer.media_type()))?;
            let blob = image
                .open_blob(layer.digest())
                .with_context(|| format!("opening layer {} of {name}", layer.digest()))?;
            let blob = std::io::BufReader::with_capacity(1 << 20, blob);
            let store = native.store.clone();
            chain.push(tokio::task::block_in_place(|| {
                store.unpack_layer(diff_id, encoding, blob)
            })?);
        }
        Ok(chain)
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
            CopyFrom::Context => return Ok(None),
            CopyFrom::Stage(i) => match self.stage_output(*i)?.snapshots {
                Some(chain) => chain,
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
