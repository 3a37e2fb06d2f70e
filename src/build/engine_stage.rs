//! Build stages run in the engine: each RUN in a container made from the previous step's
//! image, each COPY as a tar uploaded into a container, each WORKDIR as a directory, and the
//! container committed after every step. Containers are always removed.

use std::io::{Read, Seek, SeekFrom};
use std::time::Instant;

use anyhow::Context as _;
use futures_util::StreamExt;

use super::archive::{
    CopyFromPlan, Overrides, TarOut, write_copy_from, write_inline_files, write_selection,
};
use super::mounts::{self, MountContext, MountGuards};
use std::sync::atomic::Ordering;

use super::remote_cache::{EngineState, Found, UsedResult, UsedStep, cache_mount_ids};
use super::steps::{Lookup, StepResult};
use super::{Builder, StageBase, StageOutput, config, lock};
use crate::cache::StepRecord;
use crate::cache::remote::StepKind as CachedKind;
use crate::engine::{self, Container, Mount, RunSpec};
use crate::error::InputError;
use crate::oci::layer::{Ownership, resolve_chown};
use crate::oci::{self, DockerArchiveOptions};
use crate::plan::dispatch::{CopyFrom, CopyStep, RunStep, StagePlan, Step, StepKind};

/// Where a stage's steps continue from: the image of its first `steps` steps, from an
/// earlier build.
struct Resume {
    steps: usize,
    image: String,
    /// Per step up to there: whether it added a layer.
    adds_layer: Vec<bool>,
}

/// A failed step, named as progress named it, with the engine's error (exit code, last
/// lines) as the cause.
#[derive(Debug)]
pub struct StepFailed {
    pub step: String,
    pub location: String,
}

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} failed", self.location, self.step)
    }
}

impl std::error::Error for StepFailed {}

impl Builder {
    /// Runs a build stage in the engine. Cached steps reuse the engine image of an earlier
    /// build, or the layer the step cache holds (an imported cache's, on a fresh machine):
    /// those layers are loaded into the engine only when a step has to run on top of them
    /// or something reads the stage.
    ///
    /// All keys are computed first: when nothing is exported, a hit on a later step whose
    /// image the engine still has makes everything before it irrelevant, so the engine is
    /// asked only about that image, and steps run from there. (An export needs every step's
    /// layer, so it looks at each step.)
    pub(super) async fn run_engine_stage(
        &self,
        index: usize,
        plan: &StagePlan,
    ) -> anyhow::Result<StageOutput> {
        let base = self.stage_base(index);
        let total = plan.steps.len() + usize::from(matches!(base, StageBase::Image(_)));
        let (mut state, mut key) = self.engine_base(index, plan, total).await?;
        let first = total - plan.steps.len();
        let target = index == self.graph.target;

        let mut prepared_steps = Vec::with_capacity(plan.steps.len());
        let mut parent = key.clone();
        for (n, step) in plan.steps.iter().enumerate() {
            let source_key = self.copy_source_key(step)?;
            let prepared = self.prepare(
                step,
                StepResult::EngineImage,
                &parent,
                source_key.as_deref(),
                &|_| false,
            )?;
            parent = prepared.inputs.key();
            prepared_steps.push((
                self.identity(&plan.name, n),
                self.position(&plan.name, n),
                prepared,
            ));
        }
        let resume = match self.request.cache_to.is_empty() {
            true => self.resume_point(&prepared_steps).await?,
            false => None,
        };

        // A step whose commit changed nothing gets a new image but no layer (Docker drops
        // empty diffs), so layers are counted rather than assumed.
        let mut layer_steps = Vec::new();
        let mut layer_count = match (&resume, &state.unloaded) {
            // Counted only if a step runs after the resumed one.
            (Some(resume), _) if resume.steps == plan.steps.len() => 0,
            (Some(resume), _) => self.engine_layer_count(&resume.image).await?,
            (None, Some(name)) => {
                self.pulled_image(name)?.image.layers().len() + state.pending.len()
            }
            (None, None) => self.engine_layer_count(&state.image).await? + state.pending.len(),
        };
        if let Some(resume) = &resume {
            state = EngineState::at(resume.image.clone());
        }
        for (n, (step, (identity, position, prepared))) in
            plan.steps.iter().zip(prepared_steps).enumerate()
        {
            let name = self.step_name(plan, first + n + 1, total, &step.display);
            if let Some(resume) = resume.as_ref().filter(|r| n < r.steps) {
                let id = self.ids.next();
                self.reporter.cached(id, &name);
                self.hits.fetch_add(1, Ordering::Relaxed);
                if resume.adds_layer.get(n).copied().unwrap_or(true) {
                    layer_steps.push(step.history);
                }
                key = prepared.inputs.key();
                continue;
            }
            let id = self.ids.next();
            let step_key = prepared.inputs.key();
            let used = |result| UsedStep {
                key: step_key.clone(),
                inputs: prepared.inputs.clone(),
                position: position.clone(),
                kind: CachedKind::Engine,
                target,
                result,
                mounts: cache_mount_ids(step),
            };
            let reason = match self
                .find_engine_step(&identity, &position, &prepared.inputs)
                .await?
            {
                Found::Image { image, layer } => {
                    self.reporter.cached(id, &name);
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    let diff_id = self.count_layer(&image, &mut layer_count).await?;
                    if diff_id.is_some() {
                        layer_steps.push(step.history);
                    }
                    self.record_use(used(match layer {
                        Some(layer) if diff_id.as_deref() == Some(layer.diff_id.as_str()) => {
                            UsedResult::Layer(Some(layer))
                        }
                        _ => UsedResult::Engine {
                            image: image.clone(),
                            diff_id,
                        },
                    }));
                    state = EngineState::at(image);
                    key = step_key;
                    continue;
                }
                Found::Layer(layer) => {
                    self.reporter.cached(id, &name);
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    if let Some(layer) = &layer {
                        state.pending.push(layer.clone());
                        layer_steps.push(step.history);
                        layer_count += 1;
                    }
                    self.record_use(used(UsedResult::Layer(layer)));
                    key = step_key;
                    continue;
                }
                Found::Miss(reason) => reason,
            };
            self.misses.fetch_add(1, Ordering::Relaxed);
            self.reporter.started(id, &name);
            self.reporter.log(id, &format!("cache miss: {reason}"));
            let started = Instant::now();
            let result = async {
                let image = self.materialize(&mut state, &plan.config, id).await?;
                self.execute_in_engine(id, step, &image).await
            }
            .await;
            match result {
                Ok(new_image) => {
                    self.reporter.done(id, started.elapsed());
                    state = EngineState::at(new_image);
                }
                Err(e) => {
                    self.reporter.failed(id, started.elapsed());
                    let location = format!("{}:{}", self.graph.dockerfile.file, step.location.line);
                    return Err(e.context(StepFailed {
                        step: name,
                        location,
                    }));
                }
            }
            let diff_id = self.count_layer(&state.image, &mut layer_count).await?;
            if diff_id.is_some() {
                layer_steps.push(step.history);
            }
            self.remember(
                &identity,
                &StepRecord {
                    key: step_key.clone(),
                    inputs: prepared.inputs.clone(),
                    image: Some(state.image.clone()),
                    layer: None,
                    adds_layer: Some(diff_id.is_some()),
                },
            );
            self.record_use(used(UsedResult::Engine {
                image: state.image.clone(),
                diff_id,
            }));
            key = step_key;
        }
        Ok(StageOutput {
            image: state.image,
            pending: state.pending,
            unloaded: state.unloaded,
            key,
            config: plan.config.clone(),
            base,
            layer_steps,
        })
    }

    /// The latest step of a stage whose image from an earlier build the engine still has
    /// (asking the engine about no other step), with whether each step up to it added a
    /// layer. `None` also when a step before it has no local record of that (it came from
    /// an imported cache, or an older imgbuild wrote it): then each step is looked at.
    async fn resume_point(
        &self,
        steps: &[(String, String, super::steps::Prepared)],
    ) -> anyhow::Result<Option<Resume>> {
        let records: Vec<Option<StepRecord>> = steps
            .iter()
            .map(|(identity, position, prepared)| {
                match self.lookup(identity, position, &prepared.inputs) {
                    Lookup::Hit(record) => Some(*record),
                    Lookup::Miss { .. } => None,
                }
            })
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
            load_into_engine(&engine, image, &[])
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
            load_into_engine(&engine, image, &[])
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
            CopyFrom::Context => Err(anyhow::anyhow!(
                "a COPY from the build context has no source image"
            )),
        }
    }

    /// The key of what a `COPY --from` reads: the source stage's last key or the image's
    /// digest.
    pub(super) fn copy_source_key(&self, step: &Step) -> anyhow::Result<Option<String>> {
        let StepKind::Copy(copy) = &step.kind else {
            return Ok(None);
        };
        Ok(match &copy.from {
            CopyFrom::Context => None,
            CopyFrom::Stage(i) => Some(self.stage_output(*i)?.key.clone()),
            CopyFrom::Image(name) => Some(self.pulled_image(name)?.digest.clone()),
        })
    }

    async fn execute_in_engine(
        &self,
        id: usize,
        step: &Step,
        image: &str,
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
                let (mut spec, _guards) = self.run_spec(run, image)?;
                spec.env = exact_env(&spec.env, &image_env);
                if spec.user.is_empty() {
                    // BuildKit runs a stage without USER as root, whatever the image says.
                    spec.user = "0:0".into();
                }
                commit_config.env = exact_env(&commit_config.env, &spec.env);
                self.restore_cache_mounts(id, run).await;
                let reporter = self.reporter.clone();
                let container = engine
                    .run(&spec, &mut |line: engine::OutputLine<'_>| {
                        reporter.log(id, line.text)
                    })
                    .await?;
                Ok(engine.commit_and_remove(container, &commit_config).await?)
            }
            StepKind::Copy(copy) => {
                commit_config.env = exact_env(&commit_config.env, &image_env);
                let container = engine.create(&RunSpec::new(image, ["true"])).await?;
                let result = self.copy_into(&container, step, copy).await;
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
                let exists = engine
                    .stat(&container, path)
                    .await
                    .map(|s| s.is_dir())
                    .unwrap_or(false);
                if exists {
                    engine.remove(container).await?;
                    return Ok(image.to_owned());
                }
                let owner = match user.as_str() {
                    "" => Ownership::ROOT,
                    u => {
                        let (passwd, group) = read_accounts(&engine, &container).await;
                        resolve_chown(u, passwd.as_deref(), group.as_deref())?
                    }
                };
                let mut out = TarOut::new(
                    Vec::new(),
                    Overrides {
                        owner: Some(owner),
                        chmod: None,
                        mtime: self.epoch().max(0) as u64,
                    },
                );
                out.dir(path, 0o755, owner)?;
                let tar = out.finish()?;
                let uploaded = engine.upload(&container, "/", tar).await;
                if let Err(e) = uploaded {
                    let _ = engine.remove(container).await;
                    return Err(e.into());
                }
                Ok(engine.commit_and_remove(container, &commit_config).await?)
            }
        }
    }

    /// The container a RUN runs in, and what must outlive it (secret files, locks).
    pub(super) fn run_spec(
        &self,
        run: &RunStep,
        image: &str,
    ) -> anyhow::Result<(RunSpec, MountGuards)> {
        let network = match run.network.as_deref() {
            Some("host") => engine::Network::Host,
            Some("none") => engine::Network::None,
            Some(_) => engine::Network::Default,
            None => self.request.network,
        };
        let prepared = mounts::prepare(
            &run.mounts,
            &MountContext {
                cache_dir: &self.request.cache_dir,
                context_root: self.context.root(),
                secrets: &self.request.secrets,
            },
        )?;
        let mut mounts = prepared.mounts;
        let (mut argv, stdin) = match &run.script {
            // A heredoc with a shebang runs as a script file, as docker build runs it: the
            // file lives in a tmpfs, so it never reaches the committed image.
            Some(script) => {
                mounts.push(Mount::Tmpfs {
                    target: "/dev/pipes".into(),
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
        let spec = RunSpec {
            image: image.to_owned(),
            argv,
            env: run.env.clone(),
            workdir: run.workdir.clone(),
            user: run.user.clone(),
            network,
            stdin,
            mounts,
        };
        Ok((spec, prepared.guards))
    }

    /// Puts the files of a COPY into `container`.
    async fn copy_into(
        &self,
        container: &Container,
        step: &Step,
        copy: &CopyStep,
    ) -> anyhow::Result<()> {
        let engine = self.engine()?.clone();
        let owner = match &copy.chown {
            Some(spec) => {
                let (passwd, group) = read_accounts(&engine, container).await;
                Some(resolve_chown(spec, passwd.as_deref(), group.as_deref())?)
            }
            None => None,
        };
        let chmod = super::steps::select_options(copy)?.chmod;
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
        let stat_dir = |path: String| {
            let engine = engine.clone();
            async move {
                engine
                    .stat(container, &path)
                    .await
                    .map(|s| s.is_dir())
                    .unwrap_or(false)
            }
        };
        let dest_exists = stat_dir(copy.dest.trim_end_matches('/').to_owned()).await;
        match &copy.from {
            CopyFrom::Context => {
                if !copy.sources.is_empty() {
                    let options = super::steps::select_options(copy)?;
                    let selection =
                        self.context
                            .select(&copy.sources, &copy.dest, &options, &|_| dest_exists)?;
                    tokio::task::block_in_place(|| {
                        write_selection(&mut out, &selection, &|_| dest_exists)
                    })?;
                }
            }
            from => {
                let source_image = self.copy_source_image(from).await?;
                for src in &copy.sources {
                    copy_from_image(
                        &engine,
                        &source_image,
                        src,
                        &CopyFromTarget {
                            dest: &copy.dest,
                            dest_exists,
                            many: copy.sources.len() > 1,
                            temp_dir: self.oci_blobs.root(),
                        },
                        &mut out,
                    )
                    .await?;
                }
            }
        }
        write_inline_files(&mut out, copy, dest_exists)?;
        let mut spool = out
            .finish()?
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing the tar of a COPY")?;
        spool.seek(SeekFrom::Start(0))?;
        let tar =
            tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(spool), 1 << 20);
        engine
            .upload_stream(container, "/", tar)
            .await
            .with_context(|| format!("copying files into {}", step.display))?;
        Ok(())
    }
}

/// Where a `COPY --from` source goes: `dest` as the COPY names it, whether it is an existing
/// directory, whether the COPY has several sources, and where the engine's archive is
/// kept while it is rewritten.
pub(super) struct CopyFromTarget<'a> {
    pub dest: &'a str,
    pub dest_exists: bool,
    pub many: bool,
    pub temp_dir: &'a std::path::Path,
}

/// Adds `src` of an engine image to `out`, renamed as `COPY src dest` places it.
pub(super) async fn copy_from_image<W: std::io::Write>(
    engine: &engine::Engine,
    image: &str,
    src: &str,
    target: &CopyFromTarget<'_>,
    out: &mut TarOut<W>,
) -> anyhow::Result<()> {
    let CopyFromTarget {
        dest,
        dest_exists,
        many,
        temp_dir,
    } = *target;
    if src.contains(['*', '?', '[']) {
        return Err(InputError::new(format!("COPY --from with a wildcard (`{src}`) is not supported yet; name the files or their directory")).into());
    }
    let container = engine.create(&RunSpec::new(image, ["true"])).await?;
    let result = async {
        let path = if src.starts_with('/') {
            src.to_owned()
        } else {
            format!("/{src}")
        };
        let mut stat = engine.stat(&container, &path).await.map_err(|e| {
            anyhow::anyhow!(e).context(format!("COPY --from: `{src}` not found in the source"))
        })?;
        let mut path = path;
        // A source that is a symlink is followed, as BuildKit follows it.
        for _ in 0..16 {
            if !stat.is_symlink() {
                break;
            }
            let target = stat.link_target.clone();
            path = if target.starts_with('/') {
                target
            } else {
                format!("{}/{}", parent(&path), target)
            };
            stat = engine.stat(&container, &path).await?;
        }
        let top = path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let source_is_dir = stat.is_dir();
        let dest_clean = if dest == "/" {
            "/".to_owned()
        } else {
            dest.trim_end_matches('/').to_owned()
        };
        let target = if source_is_dir {
            dest_clean
        } else if dest.ends_with('/') || dest_exists || many {
            format!("{}/{}", dest_clean.trim_end_matches('/'), top)
        } else {
            dest_clean
        };
        let plan = CopyFromPlan {
            top: if top.is_empty() { ".".into() } else { top },
            source_is_dir,
            dest: target,
            dest_exists: source_is_dir && dest_exists,
        };
        // The archive goes through a temporary file, not memory: it may be gigabytes.
        let spool = tempfile::tempfile_in(temp_dir)
            .context("creating a temporary file for a COPY --from")?;
        let mut file = tokio::fs::File::from_std(spool);
        engine.download_to(&container, &path, &mut file).await?;
        let mut spool = file.into_std().await;
        spool.seek(SeekFrom::Start(0))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, spool);
        tokio::task::block_in_place(|| write_copy_from(out, reader, &plan))
    }
    .await;
    let _ = engine.remove(container).await;
    result
}

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

fn parent(path: &str) -> &str {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}

/// The container's `/etc/passwd` and `/etc/group`, for `--chown` by name.
async fn read_accounts(
    engine: &engine::Engine,
    container: &Container,
) -> (Option<String>, Option<String>) {
    (
        read_file(engine, container, "/etc/passwd").await,
        read_file(engine, container, "/etc/group").await,
    )
}

async fn read_file(engine: &engine::Engine, container: &Container, path: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let mut stream = engine.download(container, path);
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.ok()?);
        // An image's own account files are small; a huge one is not read into memory.
        if bytes.len() as u64 > super::image_fs::ACCOUNT_FILE_LIMIT {
            return None;
        }
    }
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut entry = archive.entries().ok()?.next()?.ok()?;
    let mut text = String::new();
    entry.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Loads `image` into the engine as a docker archive, leaving out the layers in `omit`.
pub(super) async fn load_into_engine(
    engine: &engine::Engine,
    image: std::sync::Arc<dyn oci::Image>,
    omit: &[oci_spec::image::Digest],
) -> anyhow::Result<()> {
    let archive =
        tempfile::NamedTempFile::new().context("creating a temporary file for an engine load")?;
    let path = archive.path().to_path_buf();
    let omit_layers = omit.iter().cloned().collect();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        oci::write_docker_archive(
            &mut file,
            image.as_ref(),
            &[],
            &DockerArchiveOptions { omit_layers },
        )?;
        std::io::Write::flush(&mut file)?;
        Ok(())
    })
    .await??;
    let file = tokio::fs::File::open(archive.path()).await?;
    engine.load_archive_from(file).await?;
    Ok(())
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
