//! The executor: runs a build request end to end.
//!
//! ```text
//! frontend::load ──► pull FROM images ──► build stages in the engine ──► packaging stage ──► sinks
//!                    (registry, blob store)   (engine_stage: RUN, COPY,    (package: layers
//!                                              WORKDIR, committed)          written directly)
//! ```
//!
//! Every step of every stage goes through one step driver (`driver`): its key is made from
//! its inputs ([`crate::plan::keys`]), looked up in the step cache ([`crate::cache`]), a hit
//! reuses the result, a miss says which input changed and runs the step, and the result is
//! recorded. What runs a step is a backend of the driver: the engine (`engine_stage`) or
//! the packaging stage's direct writes (`package`).

mod archive;
mod checks;
mod config;
mod copy_from;
mod driver;
mod engine_images;
mod engine_preload;
mod engine_stage;
mod engine_state;
mod image_fs;
mod mounts;
mod multi_platform;
mod native_chain;
mod native_stage;
mod package;
mod preflight;
mod remote;
mod remote_cache;
mod select;
mod ssh_agent;
mod stage_fs;
mod steps;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cache::StepCache;
use crate::context::Context;
use crate::engine::Engine;
use crate::error::InputError;
use crate::frontend::stages::{Base, BuildGraph};
use crate::oci::{self, Image};
use crate::plan::dispatch::{self, ImageConfig, StagePlan};
use crate::progress::{Ids, Reporter};
use crate::publish::{self, Recorder, SinkDeps};
use crate::registry::{self, Reference};
use crate::request::BuildRequest;

pub use image_fs::ImageFs;
pub use select::ExecutorUsed;

/// What a build produced.
pub struct BuildResult {
    pub image: Arc<dyn Image>,
    /// The digest that names the image (see [`crate::publish::PublishRequest::names_image`]):
    /// the manifest's, or the image ID when the image only goes to the engine.
    pub digest: String,
    /// The config digest (docker's image ID: `-q`, `--iidfile`).
    pub config_digest: String,
    /// Compressed size of all layers.
    pub size: u64,
    pub layers: usize,
    pub cache_hits: usize,
    pub cache_misses: usize,
    pub elapsed: Duration,
    /// What ran the steps.
    pub executor: ExecutorUsed,
    /// What the checks found (`crate::check`), skipped ones left out.
    pub findings: Vec<crate::check::Finding>,
}

/// How much disk the blob store may keep after a build that ran a step: the least
/// recently used blobs beyond it are removed then (`registry::BlobStore::collect`). Base
/// images' compressed layers, the layers of steps and imported caches live there; 10 GiB
/// holds a few toolchains and hundreds of builds' layers. `imgbuild prune` frees more.
pub(crate) const DEFAULT_BLOB_BUDGET: u64 = 10 << 30;

/// A FROM image pulled into the blob store.
struct Pulled {
    image: Arc<dyn Image>,
    /// The config digest (the engine's image ID): the root of the stage's cache keys, the
    /// same whether the image came from a registry or from the engine.
    digest: String,
    config: oci::ImageConfig,
    /// Where its layers are fetched from when the native executor unpacks them, if the
    /// pull left them (see [`Builder::defers_layers`]).
    layers_from: Option<Reference>,
}

impl Pulled {
    fn of(image: registry::PulledImage) -> anyhow::Result<Pulled> {
        let config = oci::ImageConfig::from_json(image.raw_config())?;
        Ok(Pulled {
            digest: image.config_descriptor().digest().to_string(),
            image: Arc::new(image),
            config,
            layers_from: None,
        })
    }
}

/// A finished build stage: its image in the engine and the config its instructions left.
#[derive(Clone)]
struct StageOutput {
    /// The engine image id after the stage's last step.
    image: String,
    /// The key of the stage's last step (the root of keys that depend on the stage).
    key: String,
    config: ImageConfig,
    /// The stage's base, for stages built on it that are packaged (their base layers).
    base: StageBase,
    /// History indices of the steps that added a layer in the engine, in order.
    layer_steps: Vec<usize>,
    /// Layers from the step cache on top of `image`, not loaded into the engine until
    /// something needs the stage's image ([`Builder::stage_image`]).
    pending: Vec<crate::cache::LayerRecord>,
    /// The FROM image `image` is, when it is not loaded into the engine yet (every step of
    /// the stage came from the cache).
    unloaded: Option<String>,
    /// For a stage the native executor ran: its snapshots, bottom first, unpacked when
    /// first read (`image` is empty).
    snapshots: Option<std::sync::Arc<native_chain::NativeChain>>,
}

/// Where a stage starts.
#[derive(Clone)]
enum StageBase {
    Scratch,
    /// A pulled image, by the FROM name it was pulled for.
    Image(String),
    /// Another stage.
    Stage(usize),
}

pub(crate) struct Builder {
    request: BuildRequest,
    graph: BuildGraph,
    reporter: Arc<dyn Reporter>,
    /// Vertex ids, shared by the builds of a multi-platform build.
    ids: Arc<Ids>,
    context: Context,
    /// The `--build-context NAME=DIR` directories, opened as contexts, by name.
    local_contexts: std::collections::BTreeMap<String, Context>,
    oci_blobs: oci::BlobStore,
    registry_blobs: registry::BlobStore,
    cache: StepCache,
    registry: Arc<registry::Client>,
    engine: Option<Engine>,
    /// The engine whose images FROM and `COPY --from` may name (none with `--pull`).
    image_engine: Option<Engine>,
    pulled: HashMap<String, Pulled>,
    /// The platform each key of `pulled` was pulled for: a later round of pulls (stages a
    /// base image's trigger brought in) names another platform's image apart.
    pulled_platforms: HashMap<String, oci::Platform>,
    /// Finished build stages; stages run concurrently, hence the locks.
    stages: Mutex<HashMap<usize, StageOutput>>,
    plans: Mutex<HashMap<usize, StagePlan>>,
    /// Engine image ids of pulled images already loaded.
    loaded: Mutex<HashMap<String, String>>,
    hits: AtomicUsize,
    misses: AtomicUsize,
    /// The steps imported with `--cache-from`.
    remote: crate::cache::remote::RemoteCache,
    /// The steps this build used, for `--cache-to`.
    journal: Mutex<Vec<crate::cache::remote::UsedStep>>,
    /// Cache mounts already restored from an imported cache (or found non-empty).
    restored_mounts: tokio::sync::Mutex<std::collections::HashSet<String>>,
    /// `ADD https://…` and `ADD git…` sources, resolved once per build.
    fetcher: crate::fetch::Fetcher,
    /// The native executor, when it runs this build's stages.
    native: Option<native_stage::Native>,
    /// The final image's base, loading into the engine while the stages run.
    engine_preload: Option<engine_preload::EnginePreload>,
    /// The packaged target's base file system, read while the build stages' commands run
    /// (see [`ImageFs::read_ahead`]); taken by the packaging stage.
    target_fs: OnceLock<Mutex<Option<image_fs::ReadAhead>>>,
}

/// A lock that a panic elsewhere cannot make unusable (the data stays consistent: every
/// writer inserts whole entries).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Builds the image `request` describes and publishes it: one image, or with several
/// platforms an index over one image for each ([`multi_platform`]).
pub async fn build(
    request: BuildRequest,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<BuildResult> {
    if request.publish.multi_platform.is_some() {
        return multi_platform::build(request, reporter).await;
    }
    let started = Instant::now();
    let mut made = prepare(request, reporter, Arc::default())
        .await?
        .make_image()
        .await?;
    made.builder.publish(made.image.clone()).await?;
    made.builder.export_caches().await?;
    let findings = made.finish().await?;
    let image = made.image;
    Ok(BuildResult {
        digest: made
            .builder
            .request
            .publish
            .names_image(image.as_ref())
            .to_string(),
        config_digest: image.config_descriptor().digest().to_string(),
        size: image.layers().iter().map(|l| l.size()).sum(),
        layers: image.layers().len(),
        image,
        cache_hits: made.builder.hits.load(Ordering::Relaxed),
        cache_misses: made.builder.misses.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        executor: made.builder.executor_used(),
        findings,
    })
}

/// An image built and not yet published, with its checks running.
struct MadeImage {
    builder: Builder,
    image: Arc<dyn Image>,
    findings: tokio::task::JoinHandle<anyhow::Result<Vec<crate::check::Finding>>>,
}

impl MadeImage {
    /// Ends the build once the image is published: the native executor's snapshots are
    /// released (and pruned past the budget), blobs past theirs are collected, and the
    /// checks' findings are in.
    async fn finish(&mut self) -> anyhow::Result<Vec<crate::check::Finding>> {
        let builder = &self.builder;
        if let Some(native) = &builder.native {
            native.release();
        }
        if builder.misses.load(Ordering::Relaxed) > 0 {
            // As the snapshots, the least recently used first; nothing while another
            // build has the store open (`None`: the next build that ends alone collects).
            let collected =
                tokio::task::block_in_place(|| builder.registry_blobs.collect(DEFAULT_BLOB_BUDGET));
            if let Err(e) = collected {
                builder
                    .reporter
                    .warning(&format!("could not collect the blob store: {e}"));
            }
        }
        if builder.native.is_some() && builder.misses.load(Ordering::Relaxed) > 0 {
            // Snapshots beyond the budget go, least recently used first; never one in use.
            // (A build that ran nothing added nothing: the walk over the store is skipped.)
            let cache_dir = builder.request.cache_dir.clone();
            let pruned = tokio::task::block_in_place(|| {
                select::prune_after_build(&cache_dir, select::DEFAULT_SNAPSHOT_BUDGET)
            });
            if let Err(e) = pruned {
                builder
                    .reporter
                    .warning(&format!("could not prune the snapshot store: {e}"));
            }
        }
        match (&mut self.findings).await {
            Ok(Ok(findings)) => Ok(findings),
            Ok(Err(e)) => {
                builder
                    .reporter
                    .warning(&format!("the checks could not read the image: {e:#}"));
                Ok(Vec::new())
            }
            Err(e) => Err(anyhow::anyhow!("the checks stopped: {e}")),
        }
    }
}

/// A builder for `request` (one platform), its FROM images pulled and every stage
/// dispatched and checked: nothing has run yet.
async fn prepare(
    mut request: BuildRequest,
    reporter: Arc<dyn Reporter>,
    ids: Arc<Ids>,
) -> anyhow::Result<Builder> {
    if request.label_from_git {
        match crate::context::git::labels(&request.context, request.publish.source_date_epoch) {
            // An explicit --label wins.
            Ok(labels) => {
                for (key, value) in labels {
                    request.labels.entry(key).or_insert(value);
                }
            }
            Err(why) => reporter.warning(&format!(
                "--label-from-git: no labels, {} is not in a usable git checkout ({why})",
                request.context.display()
            )),
        }
    }
    if let crate::request::DockerfileSource::Generated { notes, .. } = &request.dockerfile {
        reporter.note(
            "no Dockerfile: building the Mix project's release with the Dockerfile imgbuild writes for it (`imgbuild init` saves it)",
        );
        for note in notes {
            reporter.warning(note);
        }
    }
    let graph = crate::frontend::load(
        &request.dockerfile,
        &request.build_args,
        request.target.as_deref(),
        &request.publish.platform,
        &request.build_contexts,
    )?;
    for name in &request.no_cache_filter {
        if !graph
            .dockerfile
            .stages
            .iter()
            .any(|stage| stage.name.as_deref() == Some(name.as_str()))
        {
            reporter.warning(&format!(
                "--no-cache-filter {name}: the Dockerfile has no stage of that name"
            ));
        }
    }
    let dockerfile_path = match &request.dockerfile {
        crate::request::DockerfileSource::Path(path) => Some(path.as_path()),
        crate::request::DockerfileSource::Stdin
        | crate::request::DockerfileSource::Generated { .. } => None,
    };
    let context = if request.dockerignore {
        Context::open_for(&request.context, dockerfile_path)?
    } else {
        Context::open_unfiltered(&request.context)?
    };
    let context = match request.context_owners {
        true => context.keeping_owners(),
        false => context,
    };
    let mut local_contexts = std::collections::BTreeMap::new();
    for (name, named) in &request.build_contexts {
        if let crate::frontend::stages::NamedContext::Local(dir) = named {
            local_contexts.insert(name.clone(), Context::open(dir)?);
        }
    }
    // One blob store for pulled, built and pushed blobs alike.
    let registry_blobs = registry::BlobStore::open(&request.cache_dir)?;
    let oci_blobs = registry_blobs.blobs().clone();
    let cache = StepCache::open(&request.cache_dir)
        .with_context(|| format!("opening the step cache in {}", request.cache_dir.display()))?;
    // What builds killed mid-write left behind (a partial blob can be large).
    crate::cache::remove_abandoned_temp_files(&request.cache_dir, crate::cache::ABANDONED_TEMP_AGE);
    let credentials = registry::Credentials::from_environment()?;
    let registry = Arc::new(registry::Client::new(
        &request.publish.registry,
        credentials,
    )?);
    // Secret files of an earlier run that was killed go before this one starts.
    mounts::remove_abandoned_secrets();
    let native = match select::select_reported(request.executor, &request.cache_dir, &*reporter)? {
        select::Selected::Native { runtime } => {
            Some(native_stage::Native::open(&request.cache_dir, runtime).await?)
        }
        select::Selected::Engine { .. } => None,
    };
    let engine = connect_engine_if_needed(&request, &graph, native.is_some()).await?;
    if let Some(native) = &native {
        native.exit_on_interrupt(engine.clone())?;
    }
    // FROM images the engine holds are the build's, as on BuildKit's docker driver, unless
    // --pull asks for the registry's. A build that needs no engine still looks, when one
    // answers.
    let names_images = graph.needed.iter().any(|&i| {
        matches!(graph.stages[i].base, Base::Image(_)) || !graph.stages[i].image_sources.is_empty()
    });
    let image_engine = match (&engine, request.pull || !names_images) {
        (_, true) => None,
        (Some(engine), false) => Some(engine.clone()),
        (None, false) => connect(request.engine.as_ref()).await.ok(),
    };
    let remote = match request.cache_from.is_empty() || request.no_cache {
        true => crate::cache::remote::RemoteCache::default(),
        false => {
            crate::cache::remote::import_reported(
                &request.cache_from,
                &registry,
                &registry_blobs,
                &request.publish.platform,
                reporter.as_ref(),
                &ids,
            )
            .await
        }
    };
    let fetcher = crate::fetch::Fetcher::new(&request.cache_dir, oci_blobs.clone())?;
    let mut builder = Builder {
        request,
        graph,
        reporter,
        ids,
        context,
        local_contexts,
        oci_blobs,
        registry_blobs,
        cache,
        registry,
        engine,
        image_engine,
        pulled: HashMap::new(),
        pulled_platforms: HashMap::new(),
        stages: Mutex::new(HashMap::new()),
        plans: Mutex::new(HashMap::new()),
        loaded: Mutex::new(HashMap::new()),
        hits: AtomicUsize::new(0),
        misses: AtomicUsize::new(0),
        remote,
        journal: Mutex::new(Vec::new()),
        restored_mounts: tokio::sync::Mutex::new(Default::default()),
        fetcher,
        native,
        engine_preload: None,
        target_fs: OnceLock::new(),
    };
    builder.prepare().await?;
    Ok(builder)
}

impl Builder {
    /// Runs a prepared build and starts the checks of its image.
    async fn make_image(mut self) -> anyhow::Result<MadeImage> {
        let image = oci::annotate(self.run().await?, &self.request.publish.annotations)?;
        // The checks only read the image's blobs: they run while it is published.
        let check_inputs = checks::CheckInputs::gather(&self, &*image)?;
        let checked_image = image.clone();
        let findings = tokio::task::spawn_blocking(move || check_inputs.run(checked_image));
        Ok(MadeImage {
            builder: self,
            image,
            findings,
        })
    }
}

/// Whether the target stage has a RUN step (and so runs like a build stage).
fn target_runs(graph: &BuildGraph) -> bool {
    graph.stage(graph.target).commands.iter().any(|c| {
        matches!(
            c.instruction,
            crate::frontend::instructions::Instruction::Run(_)
        )
    })
}

/// Whether any part of the build needs the engine: loading the result, and with the engine
/// executor, build stages, RUN in the final stage, a final stage built on another stage
/// or copying from images (the native executor reads those from snapshots).
fn needs_engine(request: &BuildRequest, graph: &BuildGraph, native: bool) -> bool {
    let build_stages = graph.needed.iter().any(|&i| i != graph.target);
    let target = graph.stage(graph.target);
    let runs = target_runs(graph);
    let on_stage = matches!(graph.stages[graph.target].base, Base::Stage(_));
    let copies_from_images = !graph.stages[graph.target].image_sources.is_empty()
        || target.commands.iter().any(|c| matches!(&c.instruction, crate::frontend::instructions::Instruction::Copy(copy) if copy.from.is_some()));
    request.publish.to_engine()
        || (!native && (build_stages || runs || on_stage || copies_from_images))
}

/// The engine at `address`, or the environment's (`DOCKER_HOST`, the docker context).
async fn connect(address: Option<&crate::engine::EngineAddress>) -> anyhow::Result<Engine> {
    Ok(match address {
        Some(address) => Engine::connect_to(address.clone()).await?,
        None => Engine::connect().await?,
    })
}

async fn connect_engine_if_needed(
    request: &BuildRequest,
    graph: &BuildGraph,
    native: bool,
) -> anyhow::Result<Option<Engine>> {
    if !needs_engine(request, graph, native) {
        return Ok(None);
    }
    let engine = connect(request.engine.as_ref()).await?;
    // Containers of an earlier run that was killed are removed before this one starts.
    let _ = engine.reap_leftovers().await;
    // Ctrl-C and SIGTERM remove this run's containers before the process exits (with the
    // native executor, its handler does: `Native::exit_on_interrupt`).
    if !native {
        engine.exit_on_interrupt()?;
    }
    Ok(Some(engine))
}

impl Builder {
    fn engine(&self) -> anyhow::Result<&Engine> {
        self.engine.as_ref().ok_or_else(|| {
            anyhow::anyhow!("this build needs a Docker engine, and none was connected")
        })
    }

    /// The native executor, for what only it can do.
    fn native(&self) -> anyhow::Result<&native_stage::Native> {
        self.native
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the native executor is not in use"))
    }

    fn epoch(&self) -> i64 {
        self.request.publish.source_date_epoch
    }

    /// Pulls the FROM images and dispatches every stage: everything imgbuild refuses is
    /// refused now, before any step runs.
    async fn prepare(&mut self) -> anyhow::Result<()> {
        // A base image's ONBUILD triggers may name stages and images nothing else does:
        // those are pulled and built too, until the triggers add nothing.
        let mut pulled_for = BTreeSet::new();
        loop {
            let new: BTreeSet<usize> = self
                .graph
                .needed
                .iter()
                .copied()
                .filter(|i| !pulled_for.contains(i))
                .collect();
            self.pull_images(&new).await?;
            pulled_for.extend(new);
            if !self.take_base_image_triggers()? {
                break;
            }
        }
        if self.engine.is_none() {
            self.engine =
                connect_engine_if_needed(&self.request, &self.graph, self.native.is_some()).await?;
        }
        for arg in &self.graph.unused_build_args {
            self.reporter.warning(&format!(
                "build-arg `{arg}` was not consumed by any ARG of the stages built"
            ));
        }
        self.dispatch_all()?;
        self.preflight()
    }

    /// Runs the stages of a prepared build and makes its image.
    async fn run(&mut self) -> anyhow::Result<Arc<dyn Image>> {
        self.engine_preload = self.start_engine_preload().await;
        let this = &*self;
        let target = this.graph.target;
        // Build stages run as soon as the stages they need are done, several at once.
        let mut pending: BTreeSet<usize> = this
            .graph
            .needed
            .iter()
            .copied()
            .filter(|&i| i != target)
            .collect();
        let mut done: BTreeSet<usize> = BTreeSet::new();
        let mut running = futures_util::stream::FuturesUnordered::new();
        loop {
            let ready: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&i| {
                    this.graph.stages[i]
                        .stage_deps
                        .iter()
                        .all(|d| done.contains(d))
                })
                .collect();
            for i in ready {
                pending.remove(&i);
                running.push(async move { (i, this.build_stage(i).await) });
            }
            let Some((i, result)) = futures_util::StreamExt::next(&mut running).await else {
                break;
            };
            result?;
            done.insert(i);
        }
        if !pending.is_empty() {
            anyhow::bail!("stages {pending:?} could not be scheduled");
        }
        this.build_target(target).await
    }

    /// Dispatches and runs one build stage.
    async fn build_stage(&self, index: usize) -> anyhow::Result<()> {
        let plan = self.plan(index)?;
        self.resolve_remote_sources(&plan).await?;
        self.run_stage(index, &plan).await
    }

    /// Runs the steps of a stage with the build's executor, keeping what it became.
    async fn run_stage(&self, index: usize, plan: &StagePlan) -> anyhow::Result<()> {
        let output = match &self.native {
            Some(native) => self.run_native_stage(native, index, plan).await?,
            None => self.run_engine_stage(index, plan).await?,
        };
        lock(&self.stages).insert(index, output);
        Ok(())
    }

    /// Dispatches every needed stage, bases first, before any step runs: every error the
    /// Dockerfile has is found before a build stage has run for minutes.
    fn dispatch_all(&self) -> anyhow::Result<()> {
        // `needed` lists stages in Dockerfile order, so a base stage comes first.
        for &index in &self.graph.needed {
            let (base, base_args) = match &self.graph.stages[index].base {
                // BuildKit's empty image: WorkingDir `/` (dispatch adds the default PATH).
                Base::Scratch => (
                    ImageConfig {
                        working_dir: "/".into(),
                        ..ImageConfig::default()
                    },
                    Vec::new(),
                ),
                Base::Image(name) => (
                    config::from_oci(&self.pulled_image(name)?.config),
                    Vec::new(),
                ),
                Base::Stage(i) => {
                    let base = self.plan(*i)?;
                    (base.config, base.args)
                }
            };
            let plan = dispatch::dispatch_stage(&self.graph, index, &base, &base_args)?;
            lock(&self.plans).insert(index, plan);
        }
        Ok(())
    }

    fn plan(&self, index: usize) -> anyhow::Result<StagePlan> {
        lock(&self.plans)
            .get(&index)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("stage {index} was not dispatched"))
    }

    /// The image of the target stage.
    async fn build_target(&self, index: usize) -> anyhow::Result<Arc<dyn Image>> {
        let plan = self.plan(index)?;
        self.resolve_remote_sources(&plan).await?;
        let plans = lock(&self.plans).clone();
        // A target with RUN steps runs like a build stage; its layers are then written
        // deterministically (from the engine's, or from the snapshots' upper directories). Without RUN, every layer is
        // written directly.
        if plan
            .steps
            .iter()
            .any(|s| matches!(s.kind, dispatch::StepKind::Run(_)))
        {
            self.run_stage(index, &plan).await?;
            return Ok(self.stage_as_image(index, &plans).await?.image);
        }
        self.package(index, &plan, &plans).await
    }

    /// Pulls every image a needed stage names (FROM and `COPY --from=image`), once for each
    /// platform it is used for: a FROM image for its `--platform` (an index without it is
    /// an error, as in BuildKit), the others for the build's platform.
    ///
    /// An image is known by its name; when a stage uses it for another platform than the
    /// build's too (`FROM --platform=$BUILDPLATFORM golang` and `FROM golang` in one
    /// build for arm64), that stage's base is renamed `NAME (PLATFORM)`, the name its
    /// pull is kept and shown under.
    ///
    /// `new`: the stages whose FROM images were not pulled yet (every needed stage, but
    /// for those a base image's ONBUILD triggers add).
    async fn pull_images(&mut self, new: &BTreeSet<usize>) -> anyhow::Result<()> {
        let default = self.request.publish.platform.clone();
        let mut wanted: Vec<(String, oci::Platform, Option<usize>)> = Vec::new();
        for &i in &self.graph.needed {
            let stage = &self.graph.stages[i];
            if let (Base::Image(name), true) = (&stage.base, new.contains(&i)) {
                let platform = stage.platform.clone().unwrap_or_else(|| default.clone());
                wanted.push((name.clone(), platform, Some(i)));
            }
            for name in &stage.image_sources {
                wanted.push((name.clone(), default.clone(), None));
            }
        }
        // The build's platform first, so the plain name is that platform's image (`COPY
        // --from=IMAGE` names it so).
        wanted.sort_by_key(|(_, platform, _)| *platform != default);
        // (key, name, platform) of each image to pull, and (stage, key, platform) of each
        // stage based on one.
        let mut pulls: Vec<(String, String, oci::Platform)> = Vec::new();
        let mut bases: Vec<(usize, String, oci::Platform)> = Vec::new();
        for (name, platform, stage) in wanted {
            let key = match self.pulled_platforms.get(&name) {
                Some(earlier) if *earlier != platform => format!("{name} ({platform})"),
                _ => name.clone(),
            };
            if let (Some(i), true) = (stage, key != name) {
                self.graph.stages[i].base = Base::Image(key.clone());
            }
            if !self.pulled_platforms.contains_key(&key) {
                self.pulled_platforms.insert(key.clone(), platform.clone());
                if !self.pulled.contains_key(&key) {
                    pulls.push((key.clone(), name, platform.clone()));
                }
            }
            if let Some(i) = stage {
                bases.push((i, key, platform));
            }
        }
        // All at once, as BuildKit resolves them: a cold build's first step waits for its
        // base's layers, not for every other stage's image as well.
        let read_whole = self.images_read_whole();
        let pulled =
            futures_util::future::try_join_all(pulls.iter().map(|(key, name, platform)| {
                let defer = self.native.is_some() && !read_whole.contains(key.as_str());
                self.pull(name, platform, defer)
            }))
            .await?;
        for ((key, ..), pulled) in pulls.into_iter().zip(pulled) {
            self.pulled.insert(key, pulled);
        }
        for (i, key, platform) in bases {
            self.warn_platform(i, &key, &platform)?;
        }
        Ok(())
    }

    /// Takes in the ONBUILD triggers of the needed stages' base images; returns whether
    /// they made the build need more.
    fn take_base_image_triggers(&mut self) -> anyhow::Result<bool> {
        let mut more = false;
        for i in self.graph.needed.clone() {
            let Base::Image(name) = &self.graph.stages[i].base else {
                continue;
            };
            let triggers = self.pulled_image(name)?.config.on_build();
            if !triggers.is_empty() {
                more |= self.graph.add_base_image_triggers(i, &triggers)?;
            }
        }
        Ok(more)
    }

    /// BuildKit's `InvalidBaseImagePlatform` warning: the FROM image is for another platform
    /// than the stage's (a single-platform image is used as it is, as BuildKit uses it).
    /// When the image being made would be built on it and `--platform` asked for another
    /// platform, it is an input error instead: BuildKit would label another platform's
    /// files with the platform asked for (moby/buildkit dockerfile2llb, `implicitTarget`).
    fn warn_platform(
        &self,
        stage: usize,
        name: &str,
        wanted: &oci::Platform,
    ) -> anyhow::Result<()> {
        let config = &self.pulled_image(name)?.config;
        let (os, arch) = (config.os(), config.architecture());
        if os.is_some_and(|os| os != wanted.os)
            || arch.is_some_and(|arch| arch != wanted.architecture)
        {
            let line = self.graph.dockerfile.stages[stage].location.line;
            if self.request.publish.platform_asked && self.is_image_base(stage) {
                return Err(InputError::new(format!(
                    "{}:{line}: {name} has no image for {wanted}: it is a single-platform image for {}/{}, and the image built on it would be labelled {wanted}",
                    self.graph.dockerfile.file,
                    os.unwrap_or_default(),
                    arch.unwrap_or_default(),
                ))
                .with_hint(format!("use a base image that has {wanted} (an index listing it), or leave {wanted} out of --platform"))
                .into());
            }
            self.reporter.warning(&format!(
                "{}:{line}: InvalidBaseImagePlatform: Base image {name} was pulled with platform \"{}/{}\", expected \"{wanted}\" for current build",
                self.graph.dockerfile.file,
                os.unwrap_or_default(),
                arch.unwrap_or_default(),
            ));
        }
        Ok(())
    }

    /// Whether `stage` is the target stage or a stage it is built on (FROM, not COPY
    /// --from): its base's layers are the image's.
    fn is_image_base(&self, stage: usize) -> bool {
        let mut at = self.graph.target;
        loop {
            if at == stage {
                return true;
            }
            match self.graph.stages[at].base {
                Base::Stage(below) => at = below,
                Base::Scratch | Base::Image(_) => return false,
            }
        }
    }

    /// The images whose layer blobs the build may read whole: the base of the target's
    /// chain of stages (its layers are the image's) and `COPY --from` images. The native
    /// executor reads the layers of the others only to unpack them, and may leave them to
    /// be downloaded then ([`Self::defers_layers`]).
    fn images_read_whole(&self) -> std::collections::HashSet<&str> {
        let mut names: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut index = self.graph.target;
        while let Base::Stage(i) = &self.graph.stages[index].base {
            index = *i;
        }
        if let Base::Image(name) = &self.graph.stages[index].base {
            names.insert(name);
        }
        for &i in &self.graph.needed {
            names.extend(
                self.graph.stages[i]
                    .image_sources
                    .iter()
                    .map(String::as_str),
            );
        }
        names
    }

    /// Whether an image pulled with `defer` asked has its layers left to its unpack: from
    /// a registry (no mirror: a later fetch goes to the registry itself).
    fn defers_layers(&self, defer: bool, reference: &Reference) -> bool {
        defer && !self.registry.has_mirror(reference.registry())
    }

    /// Pulls `name` for `platform`; with `defer`, its layers may be left for the native
    /// executor to download as it unpacks them (see [`Self::images_read_whole`]).
    async fn pull(
        &self,
        name: &str,
        platform: &oci::Platform,
        defer: bool,
    ) -> anyhow::Result<Pulled> {
        if let Some(layout) = name.strip_prefix(crate::frontend::stages::OCI_LAYOUT_PREFIX) {
            return self.pull_oci_layout(name, layout, platform);
        }
        let reference =
            Reference::parse(name).map_err(|e| InputError::new(format!("FROM {name}: {e}")))?;
        let id = self.ids.next();
        let label = format!("[internal] load metadata for {reference}");
        self.reporter.started(id, &label);
        let started = Instant::now();
        let progress = PullProgress {
            reporter: self.reporter.clone(),
            id,
        };
        if let Some(engine) = &self.image_engine
            && let Some(info) = engine_images::lookup(engine, &reference, platform).await
        {
            let image = self
                .image_from_engine(engine, &reference, &info, platform, &progress)
                .await?;
            self.reporter.done(id, started.elapsed());
            return Pulled::of(image);
        }
        let deferred = self.defers_layers(defer, &reference);
        let result = match deferred {
            true => {
                self.registry
                    .pull_deferring_layers(&reference, platform, &self.registry_blobs, &progress)
                    .await
            }
            false => {
                self.registry
                    .pull(&reference, platform, &self.registry_blobs, &progress)
                    .await
            }
        };
        match result {
            Ok(image) => {
                let digest = image.manifest_digest().to_string();
                self.reporter
                    .log(id, &format!("resolved {reference} to {digest}"));
                self.reporter.done(id, started.elapsed());
                let mut pulled = Pulled::of(image)?;
                pulled.layers_from = deferred.then_some(reference);
                Ok(pulled)
            }
            Err(e @ registry::Error::NoMatchingPlatform { .. }) => {
                // The image exists, not for this platform: the request is what is wrong.
                self.reporter.failed(id, started.elapsed());
                Err(InputError::new(e.to_string())
                    .with_hint(format!(
                        "build for the platforms it has, or use a base image that has {platform}"
                    ))
                    .into())
            }
            Err(e) => {
                self.reporter.failed(id, started.elapsed());
                let names: Vec<&str> = self
                    .graph
                    .dockerfile
                    .stages
                    .iter()
                    .filter_map(|s| s.name.as_deref())
                    .collect();
                let mut err = anyhow::Error::new(e).context(format!("pulling {reference}"));
                if !names.is_empty() && !name.contains(['/', ':', '.']) {
                    err = err.context(format!(
                        "no stage or image named `{name}`; stages are: {}",
                        names.join(", ")
                    ));
                }
                Err(err)
            }
        }
    }

    /// A `--build-context NAME=oci-layout://PATH[:TAG]` image, `layout` being `PATH[:TAG]`:
    /// its blobs put into the blob store, to be read as a pulled image is.
    fn pull_oci_layout(
        &self,
        name: &str,
        layout: &str,
        platform: &oci::Platform,
    ) -> anyhow::Result<Pulled> {
        let (path, tag) = oci::split_layout_tag(layout);
        let id = self.ids.next();
        self.reporter
            .started(id, &format!("[internal] load metadata for {name}"));
        let started = Instant::now();
        let manifest = tokio::task::block_in_place(|| -> anyhow::Result<_> {
            let image = oci::open_oci_layout_tagged(std::path::Path::new(path), tag, platform)?;
            engine_images::store_image(&self.registry_blobs, &image)
        })
        .with_context(|| format!("reading the image of {name}"))?;
        // The image has no registry; a reference of the reserved `.invalid` domain stands
        // for one (a push never mounts blobs from it).
        let reference = Reference::parse("oci-layout.invalid/image:latest")?;
        let image = registry::PulledImage::from_store(&reference, &manifest, &self.registry_blobs)?
            .with_context(|| format!("{name}: the blob store lost the layout's blobs"))?;
        self.reporter.done(id, started.elapsed());
        Pulled::of(image)
    }

    /// The engine's image `info` for `reference` (see [`engine_images`]): from the blob
    /// store when an earlier build put it there, else from the registry when it has the
    /// same image, else out of the engine.
    async fn image_from_engine(
        &self,
        engine: &Engine,
        reference: &Reference,
        info: &crate::engine::ImageInfo,
        platform: &oci::Platform,
        progress: &PullProgress,
    ) -> anyhow::Result<registry::PulledImage> {
        let id: oci_spec::image::Digest = info
            .id
            .parse()
            .with_context(|| format!("the engine's image id `{}`", info.id))?;
        let say = |line: String| self.reporter.log(progress.id, &line);
        say(format!("the engine has {reference}: image {id}"));
        let cache_dir = &self.request.cache_dir;
        if let Some(image) =
            engine_images::remembered(cache_dir, &self.registry_blobs, reference, &id)?
        {
            return Ok(image);
        }
        // The registry's copy of the same image keeps its compressed layers (and pushes
        // can mount them); a registry that does not answer soon is not waited for.
        let pulled = self
            .registry
            .pull_same_image(
                reference,
                platform,
                &self.registry_blobs,
                progress,
                &id,
                engine_images::REGISTRY_PATIENCE,
            )
            .await;
        match pulled {
            Ok(image) => {
                say(format!(
                    "its registry has the same image: {}",
                    image.manifest_digest()
                ));
                engine_images::remember(cache_dir, &id, image.manifest_digest())?;
                return Ok(image);
            }
            Err(e) => say(format!(
                "not taken from its registry: {}; the engine's is used, as BuildKit uses it \
                 (--pull takes the registry's)",
                registry::with_causes(&e)
            )),
        }
        say("taking it out of the engine (docker save)".to_owned());
        engine_images::import(engine, cache_dir, &self.registry_blobs, reference, &id).await
    }

    fn pulled_image(&self, name: &str) -> anyhow::Result<&Pulled> {
        self.pulled
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("image {name} was not pulled"))
    }

    fn stage_output(&self, index: usize) -> anyhow::Result<StageOutput> {
        lock(&self.stages)
            .get(&index)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("stage {index} was not built"))
    }

    fn stage_base(&self, index: usize) -> StageBase {
        match &self.graph.stages[index].base {
            Base::Scratch => StageBase::Scratch,
            Base::Image(name) => StageBase::Image(name.clone()),
            Base::Stage(i) => StageBase::Stage(*i),
        }
    }

    /// `[build 3/9] RUN …`, as BuildKit names steps.
    fn step_name(&self, plan: &StagePlan, number: usize, total: usize, what: &str) -> String {
        let width = total.to_string().len();
        if self.graph.needed.len() > 1 || self.graph.dockerfile.stages[plan.stage].name.is_some() {
            format!("[{} {number:>width$}/{total}] {what}", plan.name)
        } else {
            format!("[{number:>width$}/{total}] {what}")
        }
    }

    /// Images the engine may hold whose layers an engine load can leave out.
    fn engine_known_images(&self) -> Vec<String> {
        let mut known: Vec<String> = lock(&self.loaded).values().cloned().collect();
        // A stage the native executor built has no engine image (an empty id).
        known.extend(
            lock(&self.stages)
                .values()
                .filter(|s| !s.image.is_empty())
                .map(|s| s.image.clone()),
        );
        // The image the tags name now (the previous build, usually): it shares the base
        // layers the packaging stage never loads, so a rebuild sends only its new layers.
        known.extend(
            self.request
                .publish
                .tags
                .iter()
                .map(|t| oci::with_default_tag(t)),
        );
        known
    }

    /// Starts loading the final image's base into the engine, when the image goes there
    /// and the engine lacks the base's layers (see [`engine_preload`]).
    async fn start_engine_preload(&self) -> Option<engine_preload::EnginePreload> {
        let engine = self.engine.as_ref()?;
        if !self.request.publish.to_engine() {
            return None;
        }
        let name = engine_preload::preloadable_base(&self.graph, self.native.is_some())?;
        let image = self.pulled_image(name).ok()?.image.clone();
        engine_preload::EnginePreload::start(engine, image, &self.engine_known_images()).await
    }

    /// A RUN's command is about to start, its root file system ready: the engine may take
    /// the final image's base now (see [`engine_preload`]).
    fn command_starts(&self) {
        if let Some(preload) = &self.engine_preload {
            preload.begin();
        }
        self.target_fs
            .get_or_init(|| Mutex::new(self.read_target_fs_ahead()));
    }

    /// Starts reading the file system of the image the target stage is packaged onto: its
    /// first WORKDIR or COPY needs it (see [`ImageFs::read_ahead`]).
    fn read_target_fs_ahead(&self) -> Option<image_fs::ReadAhead> {
        let Base::Image(name) = &self.graph.stages[self.graph.target].base else {
            return None;
        };
        if target_runs(&self.graph) {
            return None;
        }
        let image = self.pulled_image(name).ok()?.image.clone();
        Some(ImageFs::read_ahead(image, self.request.cache_dir.clone()))
    }

    async fn publish(&mut self, image: Arc<dyn Image>) -> anyhow::Result<()> {
        let mut known = self.engine_known_images();
        let preloaded = match self.engine_preload.take() {
            Some(preload) => preload.finish().await,
            None => None,
        };
        known.extend(preloaded.as_ref().map(|p| p.id.clone()));
        let published = self.publish_to_sinks(image.clone(), known).await;
        // A base this build loaded was a way to get its layers in; the final image holds
        // them now (unless it is the base itself, unchanged).
        if let (Some(base), Some(engine)) = (preloaded, &self.engine)
            && base.loaded
            && base.id != image.config_descriptor().digest().to_string()
        {
            let _ = engine.remove_image(&base.id).await;
        }
        published
    }

    async fn publish_to_sinks(
        &self,
        image: Arc<dyn Image>,
        known: Vec<String>,
    ) -> anyhow::Result<()> {
        let deps = SinkDeps {
            engine: self.engine.clone(),
            registry: Some(self.registry.clone()),
            blobs: self.registry_blobs.clone(),
            engine_known_images: known,
            scratch: self.request.cache_dir.clone(),
        };
        let sinks = publish::sinks_for(&self.request.publish, &deps)?;
        let recorder = Recorder::for_request(&self.request.publish);
        publish::publish_all(
            &sinks,
            &publish::Product::Image(image),
            &self.request.publish.tags,
            &recorder,
            &self.reporter,
            &self.ids,
        )
        .await
    }
}

/// Pull transfers as log lines of the pull's vertex.
struct PullProgress {
    reporter: Arc<dyn Reporter>,
    id: usize,
}

impl registry::Progress for PullProgress {
    fn on_blob_done(&self, digest: &oci_spec::image::Digest, outcome: &registry::BlobOutcome) {
        if *outcome == registry::BlobOutcome::Downloaded {
            let short = digest.digest().get(..12).unwrap_or_default();
            self.reporter.log(self.id, &format!("downloaded {short}"));
        }
    }

    fn on_retry(&self, request: &str, attempt: u32, delay: Duration, reason: &str) {
        self.reporter.log(
            self.id,
            &format!(
                "retrying {request} (attempt {attempt}, in {:.1}s): {reason}",
                delay.as_secs_f64()
            ),
        );
    }
}
