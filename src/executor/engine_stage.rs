//! The engine backend of the step driver ([`super::driver`]): build stages run in the
//! engine, each RUN in a container made from the previous step's image, each COPY as a tar
//! uploaded into a container, each WORKDIR as a directory, and the container committed
//! after every step. Containers are always removed.

use std::time::Instant;

use anyhow::Context as _;

use super::archive::{
    Absent, CopyDest, Overrides, TarOut, copies_anything, is_under, names_as_written,
    write_inline_files, write_selection,
};
use super::copy_from::copy_from_sources;
use super::image_fs;
use super::mounts::{self, MountContext, MountGuards, MountSources};
use super::stage_fs::{self, ContainerFs, RootFs, StageFs};

use super::driver::{Found, Keyed, StageBackend};
use super::engine_state::EngineState;
use super::steps::{EngineHit, Lookup};
use super::{Builder, StageBase, StageOutput, config, lock};
use crate::cache::remote::{StepKind as CachedKind, UsedResult};
use crate::cache::{KeyInputs, StepRecord};
use crate::context::{Selection, SelectionDigest};
use crate::engine::{self, Mount, RunSpec};
use crate::error::InputError;
use crate::oci;
use crate::oci::layer::{Ownership, resolve_user};
use crate::plan::dispatch::{CopyFrom, CopyStep, RunStep, StagePlan, Step, StepKind};
use crate::plan::keys::StepResult;
use crate::progress::VertexId;
use crate::publish::load_into_engine;

/// Where a stage's steps continue from: the image of its first `steps` steps, from an
/// earlier build.
struct Resume {
    steps: usize,
    image: String,
    /// Per step up to there: whether it added a layer.
    adds_layer: Vec<bool>,
}

/// The engine backend of the step driver: a build stage (or a target stage with RUN) run
/// in the engine. Cached steps reuse the engine image of an earlier build, or the layer the
/// step cache holds (an imported cache's, on a fresh machine): those layers are loaded into
/// the engine only when a step has to run on top of them or something reads the stage.
///
/// All keys are made first: when nothing is exported, a hit on a later step whose image the
/// engine still has makes everything before it irrelevant, so the engine is asked only
/// about that image, and steps run from there. (An export needs every step's layer, so it
/// looks at each step.)
struct EngineStage<'a> {
    builder: &'a Builder,
    index: usize,
    plan: &'a StagePlan,
    base: StageBase,
    state: EngineState,
    /// The engine's layer count of `state.image` with `state.pending` on top: a step whose
    /// commit changed nothing gets a new image but no layer (Docker drops empty diffs), so
    /// layers are counted rather than assumed.
    layer_count: usize,
    /// History indices of the steps that added a layer, in order.
    layer_steps: Vec<usize>,
    resume: Option<Resume>,
}

impl StageBackend for EngineStage<'_> {
    type Hit = EngineHit;
    type Ran = ();
    type Output = StageOutput;
    const RESULT: StepResult = StepResult::EngineImage;
    const KIND: CachedKind = CachedKind::Engine;

    async fn start(&mut self, total: usize) -> anyhow::Result<String> {
        let (state, key) = self
            .builder
            .engine_base(self.index, self.plan, total)
            .await?;
        self.state = state;
        Ok(key)
    }

    /// A COPY's destination is looked at in the container when it runs; keys do not
    /// depend on it.
    fn dest_is_dir(&self, _path: &str) -> bool {
        false
    }

    fn keys_ahead(&self) -> bool {
        true
    }

    async fn ahead(&mut self, steps: &[Keyed]) -> anyhow::Result<usize> {
        let b = self.builder;
        self.resume = match b.request.cache_to.is_empty() {
            true => b.resume_point(steps).await?,
            false => None,
        };
        self.layer_count = match (&self.resume, &self.state.unloaded) {
            // Counted only if a step runs after the resumed one.
            (Some(resume), _) if resume.steps == self.plan.steps.len() => 0,
            (Some(resume), _) => b.engine_layer_count(&resume.image).await?,
            (None, Some(name)) => {
                b.pulled_image(name)?.image.layers().len() + self.state.pending.len()
            }
            (None, None) => {
                b.engine_layer_count(&self.state.image).await? + self.state.pending.len()
            }
        };
        Ok(match &self.resume {
            Some(resume) => {
                self.state = EngineState::at(resume.image.clone());
                resume.steps
            }
            None => 0,
        })
    }

    fn resumed(&mut self, step: &Step, n: usize) {
        let adds_layer = self
            .resume
            .as_ref()
            .and_then(|r| r.adds_layer.get(n).copied());
        if adds_layer.unwrap_or(true) {
            self.layer_steps.push(step.history);
        }
    }

    async fn look_up(
        &self,
        identity: &str,
        position: &str,
        inputs: &KeyInputs,
    ) -> anyhow::Result<Found<EngineHit>> {
        self.builder
            .find_engine_step(identity, position, inputs)
            .await
    }

    async fn apply(&mut self, step: &Step, hit: EngineHit) -> anyhow::Result<UsedResult> {
        match hit {
            EngineHit::Image { image, layer } => {
                let diff_id = self
                    .builder
                    .count_layer(&image, &mut self.layer_count)
                    .await?;
                if diff_id.is_some() {
                    self.layer_steps.push(step.history);
                }
                let used = match layer {
                    Some(layer) if diff_id.as_deref() == Some(layer.diff_id.as_str()) => {
                        UsedResult::Layer(Some(layer))
                    }
                    _ => UsedResult::Engine {
                        image: image.clone(),
                        diff_id,
                    },
                };
                self.state = EngineState::at(image);
                Ok(used)
            }
            EngineHit::Layer(layer) => {
                if let Some(layer) = &layer {
                    self.state.pending.push(layer.clone());
                    self.layer_steps.push(step.history);
                    self.layer_count += 1;
                }
                Ok(UsedResult::Layer(layer))
            }
        }
    }

    async fn run(
        &mut self,
        id: VertexId,
        n: usize,
        step: &Step,
        _selection: Option<(Selection, SelectionDigest)>,
    ) -> anyhow::Result<()> {
        let b = self.builder;
        let image = b
            .materialize(&mut self.state, &self.plan.config, id)
            .await?;
        let mount_points = match &step.kind {
            StepKind::Run(_) => b.missing_mount_points(self.index, n)?,
            _ => Vec::new(),
        };
        let new_image = b.execute_in_engine(id, step, &image, &mount_points).await?;
        self.state = EngineState::at(new_image);
        Ok(())
    }

    async fn ran(
        &mut self,
        step: &Step,
        inputs: &KeyInputs,
        (): (),
    ) -> anyhow::Result<(StepRecord, UsedResult)> {
        let diff_id = self
            .builder
            .count_layer(&self.state.image, &mut self.layer_count)
            .await?;
        if diff_id.is_some() {
            self.layer_steps.push(step.history);
        }
        let record = StepRecord {
            key: inputs.key(),
            inputs: inputs.clone(),
            image: Some(self.state.image.clone()),
            layer: None,
            adds_layer: Some(diff_id.is_some()),
            snapshot: None,
        };
        let used = UsedResult::Engine {
            image: self.state.image.clone(),
            diff_id,
        };
        Ok((record, used))
    }

    fn finish(self, key: String) -> anyhow::Result<StageOutput> {
        Ok(StageOutput {
            image: self.state.image,
            pending: self.state.pending,
            unloaded: self.state.unloaded,
            key,
            config: self.plan.config.clone(),
            base: self.base,
            layer_steps: self.layer_steps,
            snapshots: None,
        })
    }
}

impl Builder {
    /// Runs a build stage (or a target stage with RUN) in the engine.
    pub(super) async fn run_engine_stage(
        &self,
        index: usize,
        plan: &StagePlan,
    ) -> anyhow::Result<StageOutput> {
        let backend = EngineStage {
            builder: self,
            index,
            plan,
            base: self.stage_base(index),
            state: EngineState::at(String::new()),
            layer_count: 0,
            layer_steps: Vec::new(),
            resume: None,
        };
        self.drive(index, plan, backend).await
    }

    /// The latest step of a stage whose image from an earlier build the engine still has
    /// (asking the engine about no other step), with whether each step up to it added a
    /// layer. `None` also when a step before it has no local record of that (it came from
    /// an imported cache, or an older imgbuild wrote it): then each step is looked at.
    async fn resume_point(&self, steps: &[Keyed]) -> anyhow::Result<Option<Resume>> {
        let records: Vec<Option<StepRecord>> = steps
            .iter()
            .map(
                |step| match self.lookup(&step.identity, &step.position, &step.prepared.inputs) {
                    Lookup::Hit(record) => Some(*record),
                    Lookup::Miss { .. } => None,
                },
            )
            .collect();
        let engine = self.engine()?;
        for (i, record) in records.iter().enumerate().rev() {
            if let Some(image) = record.as_ref().and_then(|r| r.image.as_ref())
                && engine.find_image(image).await?.is_some()
            {
                let adds_layer: Option<Vec<bool>> = records[..=i]
                    .iter()
                    .map(|r| r.as_ref().and_then(|r| r.adds_layer))
                    .collect();
                return Ok(adds_layer.map(|adds_layer| Resume {
                    steps: i + 1,
                    image: image.clone(),
                    adds_layer,
                }));
            }
        }
        Ok(None)
    }

    /// The diff_id of the layer `image` has on top of the `count` before it, if it has one
    /// more; `count` becomes its layer count.
    async fn count_layer(&self, image: &str, count: &mut usize) -> anyhow::Result<Option<String>> {
        let diff_ids = self
            .engine()?
            .find_image(image)
            .await?
            .map(|i| i.diff_ids)
            .unwrap_or_default();
        let added = (diff_ids.len() > *count)
            .then(|| diff_ids.last().cloned())
            .flatten();
        *count = diff_ids.len();
        Ok(added)
    }

    pub(super) async fn engine_layer_count(&self, image: &str) -> anyhow::Result<usize> {
        let info = self.engine()?.find_image(image).await?;
        Ok(info.map_or(0, |i| i.diff_ids.len()))
    }

    /// The engine image a stage starts from (with the cached layers of the stage it is
    /// built on not loaded yet), and the root of its keys.
    async fn engine_base(
        &self,
        index: usize,
        plan: &StagePlan,
        total: usize,
    ) -> anyhow::Result<(EngineState, String)> {
        match self.stage_base(index) {
            StageBase::Stage(i) => {
                let out = self.stage_output(i)?;
                Ok((
                    EngineState {
                        image: out.image.clone(),
                        pending: out.pending.clone(),
                        unloaded: out.unloaded.clone(),
                    },
                    out.key.clone(),
                ))
            }
            StageBase::Image(name) => {
                let id = self.ids.next();
                let label = self.step_name(plan, 1, total, &format!("FROM {name}"));
                self.reporter.started(id, &label);
                let started = Instant::now();
                // Loaded into the engine when a step has to run on it (a stage whose steps
                // all come from the cache never needs it).
                let pulled = self.pulled_image(&name)?;
                let image = pulled.image.config_descriptor().digest().to_string();
                let loaded = lock(&self.loaded).contains_key(&name)
                    || self.engine()?.find_image(&image).await?.is_some();
                self.reporter.done(id, started.elapsed());
                Ok((
                    EngineState {
                        image,
                        pending: Vec::new(),
                        unloaded: (!loaded).then(|| name.clone()),
                    },
                    pulled.digest.clone(),
                ))
            }
            StageBase::Scratch => Ok((
                EngineState::at(self.ensure_scratch_loaded().await?),
                "scratch".to_owned(),
            )),
        }
    }

    /// Loads a pulled image into the engine unless it has it (by config digest, which is
    /// the engine's image id); returns the engine image id.
    pub(super) async fn ensure_loaded(&self, name: &str) -> anyhow::Result<String> {
        if let Some(id) = lock(&self.loaded).get(name) {
            return Ok(id.clone());
        }
        let pulled = self.pulled_image(name)?;
        let image = pulled.image.clone();
        let config_digest = image.config_descriptor().digest().to_string();
        let engine = self.engine()?.clone();
        if engine.find_image(&config_digest).await?.is_none() {
            load_into_engine(&engine, image, &[], Default::default())
                .await
                .with_context(|| format!("loading {name} into the engine"))?;
        }
        lock(&self.loaded).insert(name.to_owned(), config_digest.clone());
        Ok(config_digest)
    }

    /// An image with an empty filesystem, for `FROM scratch` build stages (the engine
    /// needs an image to make containers from).
    async fn ensure_scratch_loaded(&self) -> anyhow::Result<String> {
        if let Some(id) = lock(&self.loaded).get("scratch") {
            return Ok(id.clone());
        }
        let layer = oci::LayerBuilder::new(
            self.oci_blobs.clone(),
            oci::LayerOptions::new(oci::Compression::Gzip, self.epoch()),
        )
        .write()?;
        let base = oci::scratch(&self.request.publish.platform, self.epoch())?;
        let config = oci::ImageConfig::from_json(base.raw_config())?;
        let image: std::sync::Arc<dyn oci::Image> =
            std::sync::Arc::new(oci::append_layers(base, &[layer], config)?);
        let id = image.config_descriptor().digest().to_string();
        let engine = self.engine()?.clone();
        if engine.find_image(&id).await?.is_none() {
            load_into_engine(&engine, image, &[], Default::default())
                .await
                .context("loading an empty image for FROM scratch")?;
        }
        lock(&self.loaded).insert("scratch".into(), id.clone());
        Ok(id)
    }

    /// The engine image a `COPY --from` reads.
    pub(super) async fn copy_source_image(&self, from: &CopyFrom) -> anyhow::Result<String> {
        match from {
            CopyFrom::Stage(i) => self.stage_image(*i).await,
            CopyFrom::Image(name) => self.ensure_loaded(name).await,
            CopyFrom::Context | CopyFrom::Local(_) => Err(anyhow::anyhow!(
                "a COPY from the build context has no source image"
            )),
        }
    }

    /// The mount points (`/dev`, `/proc`, `/sys`) that the image before step `step` of
    /// stage `index` lacks, which a RUN there must leave in its layer.
    fn missing_mount_points(&self, index: usize, step: usize) -> anyhow::Result<Vec<&'static str>> {
        Ok(self.lacking_before(index, step, &MOUNT_POINTS)?.0)
    }

    /// Which of `paths` (mount points, `/etc`) the image before step `step` of stage
    /// `index` lacks, and where the steps of its chain of stages wrote (COPY destinations,
    /// WORKDIRs). A RUN leaves the mount points in its layer, as BuildKit's does (runc
    /// makes them in the root file system), where the engine keeps its own in a layer that
    /// is never committed: after one, only `/etc` can still be lacking.
    fn lacking_before(
        &self,
        index: usize,
        step: usize,
        paths: &[&'static str],
    ) -> anyhow::Result<(Vec<&'static str>, Vec<String>)> {
        let (mut index, mut steps) = (index, step);
        let mut paths = paths.to_vec();
        let mut written = Vec::new();
        loop {
            let plan = self.plan(index)?;
            for step in &plan.steps[..steps] {
                match &step.kind {
                    StepKind::Run(_) => paths.retain(|path| *path == "/etc"),
                    StepKind::Copy(copy) => written.push(crate::context::clean_dest(&copy.dest)),
                    StepKind::Mkdir { path, .. } => written.push(crate::context::clean_dest(path)),
                }
            }
            let lacking = match &self.graph.stages[index].base {
                _ if paths.is_empty() => paths,
                crate::frontend::stages::Base::Scratch => paths,
                crate::frontend::stages::Base::Image(name) => {
                    self.lacking_in_image(name, &paths)?
                }
                crate::frontend::stages::Base::Stage(i) => {
                    index = *i;
                    steps = self.plan(index)?.steps.len();
                    continue;
                }
            };
            return Ok((lacking, written));
        }
    }

    /// Which of `paths` the pulled image `name` has nothing at.
    fn lacking_in_image(
        &self,
        name: &str,
        paths: &[&'static str],
    ) -> anyhow::Result<Vec<&'static str>> {
        let pulled = self.pulled_image(name)?;
        let fs = tokio::task::block_in_place(|| {
            image_fs::ImageFs::of_image_cached(pulled.image.as_ref(), &self.request.cache_dir)
        })
        .with_context(|| format!("reading the file system of {name}"))?;
        Ok(paths
            .iter()
            .copied()
            .filter(|path| fs.node(path).is_none())
            .collect())
    }

    /// What a container of a `COPY --from` source shows that the source may lack (the
    /// engine's mount points and `/etc`): those its base lacks, certainly, unless a step
    /// of the stage may have made them (a COPY of a root file system onto scratch).
    pub(super) fn absent_in(&self, from: &CopyFrom) -> anyhow::Result<Absent> {
        let lackable: Vec<&'static str> = MOUNT_POINTS.into_iter().chain(["/etc"]).collect();
        let (lacking, written) = match from {
            CopyFrom::Stage(i) => self.lacking_before(*i, self.plan(*i)?.steps.len(), &lackable)?,
            CopyFrom::Image(name) => (self.lacking_in_image(name, &lackable)?, Vec::new()),
            CopyFrom::Context | CopyFrom::Local(_) => (Vec::new(), Vec::new()),
        };
        // A step writing at or above a path, or below it, may have made it.
        let may_be_made = |path: &str| {
            written
                .iter()
                .any(|w| is_under(path, w) || is_under(w, path))
        };
        let mut absent = Absent {
            container: true,
            ..Absent::default()
        };
        for path in lacking {
            if path == "/etc" || may_be_made(path) {
                absent.maybe.push(path);
            } else {
                absent.mount_points.push(path);
            }
        }
        Ok(absent)
    }

    async fn execute_in_engine(
        &self,
        id: usize,
        step: &Step,
        image: &str,
        mount_points: &[&str],
    ) -> anyhow::Result<String> {
        let engine = self.engine()?.clone();
        // The engine image a step starts from may have been made by another Dockerfile (the
        // cache is keyed on what a step reads, not on the config around it), so neither its
        // ENV nor its USER may reach the step.
        let image_env = engine
            .find_image(image)
            .await?
            .map(|i| i.config.env)
            .unwrap_or_default();
        let mut commit_config = config::to_engine(&step.config);
        match &step.kind {
            StepKind::Run(run) => {
                let sources = self.mount_sources(run).await?;
                let (mut spec, _guards) = self.run_spec(run, image, &sources)?;
                spec.env = exact_env(&spec.env, &image_env);
                if spec.user.is_empty() {
                    // BuildKit runs a stage without USER as root, whatever the image says.
                    spec.user = "0:0".into();
                }
                commit_config.env = exact_env(&commit_config.env, &spec.env);
                self.restore_cache_mounts(id, run).await;
                self.command_starts();
                let reporter = self.reporter.clone();
                let container = engine
                    .run(&spec, &mut |line: engine::OutputLine<'_>| {
                        reporter.log(id, line.text)
                    })
                    .await?;
                let mut made: Vec<String> = mount_points.iter().map(|&p| p.to_owned()).collect();
                // runc makes the working directory as written (`/a/b/../c`), and so leaves
                // `/a/b`; the engine cleans it first, so those are made here.
                for prefix in crate::plan::dispatch::unclean_cwd_prefixes(&run.workdir) {
                    let fs = ContainerFs {
                        engine: &engine,
                        container: &container,
                    };
                    if let Ok(Ok(resolved)) = stage_fs::resolve(&fs, &prefix).await {
                        made.extend(resolved.workdir_creates(&prefix).unwrap_or_default());
                    }
                }
                if !made.is_empty() {
                    let mut out = TarOut::new(
                        Vec::new(),
                        Overrides {
                            owner: Some(Ownership::ROOT),
                            chmod: None,
                            mtime: self.epoch().max(0) as u64,
                        },
                    );
                    for dir in &made {
                        out.created_dir(dir, Ownership::ROOT)?;
                    }
                    if let Err(e) = engine.upload(&container, "/", out.finish()?).await {
                        let _ = engine.remove(container).await;
                        return Err(e.into());
                    }
                }
                Ok(engine.commit_and_remove(container, &commit_config).await?)
            }
            StepKind::Copy(copy) => {
                commit_config.env = exact_env(&commit_config.env, &image_env);
                let container = engine.create(&RunSpec::new(image, ["true"])).await?;
                let fs = ContainerFs {
                    engine: &engine,
                    container: &container,
                };
                let result = self.copy_into(&fs, step, copy).await;
                match result {
                    Ok(()) => Ok(engine.commit_and_remove(container, &commit_config).await?),
                    Err(e) => {
                        let _ = engine.remove(container).await;
                        Err(e)
                    }
                }
            }
            StepKind::Mkdir { path, user } => {
                commit_config.env = exact_env(&commit_config.env, &image_env);
                let container = engine.create(&RunSpec::new(image, ["true"])).await?;
                let fs = ContainerFs {
                    engine: &engine,
                    container: &container,
                };
                let made = self.mkdir_in(&fs, path, user).await;
                match made {
                    Ok(true) => Ok(engine.commit_and_remove(container, &commit_config).await?),
                    Ok(false) => {
                        engine.remove(container).await?;
                        Ok(image.to_owned())
                    }
                    Err(e) => {
                        let _ = engine.remove(container).await;
                        Err(e)
                    }
                }
            }
        }
    }

    /// WORKDIR's `mkdir -p` in `fs`, each directory it creates owned by the USER; `false`
    /// when the directory was there.
    pub(super) async fn mkdir_in(
        &self,
        fs: &impl StageFs,
        path: &str,
        user: &str,
    ) -> anyhow::Result<bool> {
        let creates = stage_fs::resolve(fs, path)
            .await?
            .map_err(|e| InputError::new(format!("WORKDIR {path}: {e}")))?
            .workdir_creates(path)?;
        if creates.is_empty() {
            return Ok(false);
        }
        let owner = match user {
            "" => Ownership::ROOT,
            u => {
                let (passwd, group) = stage_fs::read_accounts(fs).await;
                resolve_user(u, passwd.as_deref(), group.as_deref())
            }
        };
        let mut out = TarOut::new(
            tempfile::tempfile_in(self.oci_blobs.root())
                .context("creating a temporary file for WORKDIR")?,
            Overrides {
                owner: Some(owner),
                chmod: None,
                mtime: self.epoch().max(0) as u64,
            },
        );
        for dir in &creates {
            out.created_dir(dir, owner)?;
        }
        fs.extract(out.finish()?, engine::Replace::SameKind).await?;
        Ok(true)
    }

    /// The network a RUN runs in: `default` is the build's (`--network`), as in BuildKit;
    /// `host` was checked against the entitlements before the build started.
    pub(super) fn run_network(&self, run: &RunStep) -> engine::Network {
        crate::plan::keys::run_network(run, self.request.network)
    }

    /// The container a RUN runs in, and what must outlive it (secret files, locks).
    pub(super) fn run_spec(
        &self,
        run: &RunStep,
        image: &str,
        sources: &MountSources,
    ) -> anyhow::Result<(RunSpec, MountGuards)> {
        let network = self.run_network(run);
        let prepared = mounts::prepare(
            &run.mounts,
            &MountContext {
                cache_dir: &self.request.cache_dir,
                context: &self.context,
                secrets: &self.request.secrets,
                ssh: &self.request.ssh,
                sources,
                engine_is_local: self.steps_run_here(),
            },
        )?;
        let mut mounts = prepared.mounts;
        let (mut argv, stdin) = match &run.script {
            // A heredoc with a shebang runs as a script file, as docker build runs it: the
            // file lives in a tmpfs (executable, as BuildKit's mounted file is), so it never
            // reaches the committed image.
            Some(script) => {
                mounts.push(Mount::Tmpfs {
                    target: "/dev/pipes".into(),
                    size: None,
                    read_only: false,
                });
                let path = run.argv.first().cloned().unwrap_or_default();
                let argv = vec![
                    "/bin/sh".to_owned(),
                    "-c".to_owned(),
                    format!("cat > '{path}' && chmod 755 '{path}' && exec '{path}'"),
                ];
                (argv, Some(script.data.clone().into_bytes()))
            }
            None => (run.argv.clone(), None),
        };
        if !prepared.env_exports.is_empty() {
            // Secrets for `env=` are read from their mounted file by a shell in front of the
            // command, so they never enter the container's (committed) configuration.
            let mut wrapped = vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                format!("{} && exec \"$@\"", prepared.env_exports.join(" && ")),
                "sh".to_owned(),
            ];
            wrapped.append(&mut argv);
            argv = wrapped;
        }
        let mut env = run.env.clone();
        for var in prepared.env {
            let name = var.split_once('=').map_or(var.as_str(), |(n, _)| n);
            if !env
                .iter()
                .any(|e| e.split_once('=').is_some_and(|(n, _)| n == name))
            {
                env.push(var);
            }
        }
        // Set last, as BuildKit's exec op appends its ProxyEnv: it wins over an ENV.
        for var in &self.request.run_options.proxy_env {
            oci::set_env_entry(&mut env, var.clone());
        }
        let spec = RunSpec {
            image: image.to_owned(),
            argv,
            env,
            workdir: run.workdir.clone(),
            user: run.user.clone(),
            network,
            stdin,
            mounts,
            privileged: run.security.as_deref() == Some("insecure"),
            options: self.request.run_options.clone(),
        };
        Ok((spec, prepared.guards))
    }

    /// Puts the files of a COPY into `fs`.
    pub(super) async fn copy_into(
        &self,
        fs: &impl StageFs,
        step: &Step,
        copy: &CopyStep,
    ) -> anyhow::Result<()> {
        let owner = match &copy.chown {
            Some(spec) => {
                let (passwd, group) = stage_fs::read_accounts(fs).await;
                Some(resolve_user(spec, passwd.as_deref(), group.as_deref()))
            }
            None => None,
        };
        let chmod = crate::plan::keys::select_options(copy)?.chmod;
        let mtime = self.epoch().max(0) as u64;
        // The tar goes through a temporary file, not memory: a COPY may be gigabytes.
        let spool = tempfile::tempfile_in(self.oci_blobs.root())
            .context("creating a temporary file for a COPY")?;
        let mut out = TarOut::new(
            std::io::BufWriter::with_capacity(1 << 20, spool),
            Overrides {
                owner,
                chmod,
                mtime,
            },
        );
        let resolved = stage_fs::resolve(fs, &copy.dest)
            .await?
            .map_err(|e| InputError::new(format!("{}: {e}", step.display)))?;
        let dest = CopyDest::new(&copy.dest, resolved);
        let dest_exists = dest.is_dir;
        match &copy.from {
            CopyFrom::Context | CopyFrom::Local(_) => {
                let selection = match copy.sources.is_empty() {
                    true => None,
                    false => {
                        let options = crate::plan::keys::select_options(copy)?;
                        Some(self.keys().context_of(&copy.from)?.select(
                            &copy.sources,
                            &copy.dest,
                            &options,
                            &|_| dest_exists,
                        )?)
                    }
                };
                if copies_anything(copy, selection.as_ref()) {
                    dest.start(&mut out)?;
                }
                if let Some(selection) = selection {
                    tokio::task::block_in_place(|| {
                        write_selection(&mut out, &selection, &|_| dest_exists, &names_as_written)
                    })?;
                }
            }
            from => {
                self.copy_from(from, copy, &dest, &mut out).await?;
            }
        }
        self.write_remote_sources(&mut out, copy, &|_| dest_exists)?;
        write_inline_files(&mut out, copy, dest_exists)?;
        let spool = out
            .finish()?
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing the tar of a COPY")?;
        // An ADDed archive extracts as the archive says (BuildKit's unpack).
        let replace = match copy.is_add {
            true => engine::Replace::Anything,
            false => engine::Replace::SameKind,
        };
        fs.extract(spool, replace)
            .await
            .with_context(|| format!("copying files into {}", step.display))
    }

    /// Adds what `COPY --from=… sources… dest` takes from a stage or an image to `out`
    /// (see [`copy_from_sources`]), read from the stage's snapshots when it has them, else
    /// from a container of its engine image. Returns whether any source matched.
    pub(super) async fn copy_from<W: std::io::Write>(
        &self,
        from: &CopyFrom,
        copy: &CopyStep,
        dest: &CopyDest,
        out: &mut TarOut<W>,
    ) -> anyhow::Result<bool> {
        let temp_dir = self.oci_blobs.root();
        if let Some(view) = self.native_view(from).await? {
            let fs = RootFs::new(view.root());
            let copied =
                copy_from_sources(&fs, &Absent::default(), copy, dest, temp_dir, out).await;
            // A view is only read: what it wrote (nothing) is dropped with it.
            view.unmount()?;
            return copied;
        }
        let image = self.copy_source_image(from).await?;
        let engine = self.engine()?.clone();
        let absent = self.absent_in(from)?;
        let container = engine.create(&RunSpec::new(&image, ["true"])).await?;
        let fs = ContainerFs {
            engine: &engine,
            container: &container,
        };
        let copied = copy_from_sources(&fs, &absent, copy, dest, temp_dir, out).await;
        let _ = engine.remove(container).await;
        copied
    }
}

/// What runc makes in a root file system that lacks them, and a RUN's layer keeps.
const MOUNT_POINTS: [&str; 3] = ["/dev", "/proc", "/sys"];

/// `wanted`, and every variable of `others` it does not name as a bare `KEY`: Docker adds an
/// image's variables that a container does not name to the container's environment (and a
/// container's to the image committed from it), and a bare `KEY` is how it is told to
/// leave one out.
fn exact_env(wanted: &[String], others: &[String]) -> Vec<String> {
    let key = |kv: &str| kv.split_once('=').map_or(kv, |(k, _)| k).to_owned();
    let named: std::collections::HashSet<String> = wanted.iter().map(|kv| key(kv)).collect();
    let mut env = wanted.to_vec();
    for kv in others {
        let k = key(kv);
        if !named.contains(&k) && !env.contains(&k) {
            env.push(k);
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::exact_env;

    #[test]
    fn exact_env_unsets_what_it_does_not_name() {
        let wanted = ["PATH=/bin".to_string(), "A=1".to_string()];
        let others = [
            "A=old".to_string(),
            "LATER=leak".to_string(),
            "GONE".to_string(),
            "LATER=twice".to_string(),
        ];
        assert_eq!(
            exact_env(&wanted, &others),
            ["PATH=/bin", "A=1", "LATER", "GONE"]
        );
        assert_eq!(exact_env(&wanted, &[]), wanted);
    }
}
