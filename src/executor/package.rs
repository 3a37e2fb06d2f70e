//! The packaging backend of the step driver ([`super::driver`]): the image that ships,
//! written directly. Its base image's compressed layers are reused as they are; each COPY
//! and WORKDIR becomes a deterministic layer written by imgbuild. A target stage with RUN
//! runs in the engine instead, and its layers are rewritten the same way
//! ([`Builder::stage_as_image`]). Config instructions only touch the config.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use futures_util::StreamExt;
use oci_spec::image::{Descriptor, DescriptorBuilder, Digest, MediaType};

use super::archive::{
    CopyDest, Overrides, TarOut, copies_anything, write_inline_files, write_selection,
};
use super::driver::{Found, StageBackend};
use super::image_fs::{ImageFs, Kind};
use super::{Builder, StageBase, config};
use crate::cache::remote::{StepKind as CachedKind, UsedResult};
use crate::cache::{KeyInputs, LayerRecord, StepRecord};
use crate::context::{Selection, SelectionDigest};
use crate::error::InputError;
use crate::oci::layer::{EntryMeta, Ownership, resolve_user};
use crate::oci::{self, AddOptions, Image, LayerBuilder, LayerOptions, WrittenLayer};
use crate::plan::dispatch::{CopyFrom, StagePlan, Step, StepKind};
use crate::plan::keys::StepResult;
use crate::progress::VertexId;

/// The image a stage's packaging starts from.
pub(super) struct PackageBase {
    pub(super) image: Arc<dyn Image>,
    config: oci::ImageConfig,
    key: String,
}

/// The packaging backend of the step driver: the target stage written as an image, a layer
/// per step that changes files.
struct Packaging<'a> {
    builder: &'a Builder,
    index: usize,
    plan: &'a StagePlan,
    plans: &'a HashMap<usize, StagePlan>,
    /// Set by `start`.
    started: Option<Started>,
    layers: Vec<WrittenLayer>,
    /// The stage's history, steps that changed nothing marked empty.
    history: Vec<crate::plan::dispatch::History>,
}

/// The base of a started packaging stage and its file system.
struct Started {
    base: PackageBase,
    /// Reading the base image's file system costs a pass over its layers: only done when
    /// a step needs it (a rebuild that hits the cache never does).
    lazy: LazyFs,
}

impl Packaging<'_> {
    fn started(&self) -> anyhow::Result<&Started> {
        self.started
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the packaging stage was not started"))
    }
}

impl StageBackend for Packaging<'_> {
    type Hit = Option<WrittenLayer>;
    type Ran = Option<WrittenLayer>;
    type Output = Arc<dyn Image>;
    const RESULT: StepResult = StepResult::Layer;
    const KIND: CachedKind = CachedKind::Package;

    async fn start(&mut self, total: usize) -> anyhow::Result<String> {
        let b = self.builder;
        let base = match &b.stage_base(self.index) {
            StageBase::Scratch => {
                let image = oci::scratch(&b.request.publish.platform, b.epoch())?;
                let config = oci::ImageConfig::from_json(image.raw_config())?;
                PackageBase {
                    image,
                    config,
                    key: "scratch".into(),
                }
            }
            StageBase::Image(name) => {
                let id = b.ids.next();
                b.reporter.cached(
                    id,
                    &b.step_name(self.plan, 1, total, &format!("FROM {name}")),
                );
                let pulled = b.pulled_image(name)?;
                PackageBase {
                    image: pulled.image.clone(),
                    config: pulled.config.clone(),
                    key: pulled.digest.clone(),
                }
            }
            StageBase::Stage(i) => b.stage_as_image(*i, self.plans).await?,
        };
        let key = base.key.clone();
        let ahead = b
            .target_fs
            .get()
            .and_then(|reading| super::lock(reading).take())
            .filter(|reading| reading.reads(base.image.as_ref()));
        let lazy = LazyFs {
            fs: RefCell::new(None),
            ahead: RefCell::new(ahead),
            base: base.image.clone(),
            cache_dir: b.request.cache_dir.clone(),
        };
        self.started = Some(Started { base, lazy });
        Ok(key)
    }

    fn dest_is_dir(&self, path: &str) -> bool {
        self.started
            .as_ref()
            .is_some_and(|s| s.lazy.is_dir(path, &self.layers))
    }

    async fn look_up(
        &self,
        identity: &str,
        position: &str,
        inputs: &KeyInputs,
    ) -> anyhow::Result<Found<Option<WrittenLayer>>> {
        Ok(
            match self
                .builder
                .find_package_step(identity, position, inputs)
                .await
            {
                Ok(cached) => Found::Hit(cached),
                Err(reason) => Found::Miss(reason),
            },
        )
    }

    async fn apply(
        &mut self,
        step: &Step,
        cached: Option<WrittenLayer>,
    ) -> anyhow::Result<UsedResult> {
        let used = UsedResult::Layer(cached.as_ref().map(LayerRecord::from));
        match cached {
            Some(layer) => {
                if let Some(fs) = self.started()?.lazy.fs.borrow_mut().as_mut() {
                    tokio::task::block_in_place(|| apply_blob(fs, &layer.path, &layer.descriptor))?;
                }
                self.layers.push(layer);
            }
            None => mark_empty(&mut self.history, step),
        }
        Ok(used)
    }

    fn before_run(&mut self) -> anyhow::Result<()> {
        self.started()?.lazy.ensure(&self.layers)
    }

    async fn run(
        &mut self,
        _id: VertexId,
        _n: usize,
        step: &Step,
        selection: Option<(Selection, SelectionDigest)>,
    ) -> anyhow::Result<Option<WrittenLayer>> {
        let lazy = &self.started()?.lazy;
        let mut fs = lazy.fs.borrow_mut().take().unwrap_or_default();
        let result = self.builder.package_step(step, &mut fs, selection).await;
        *lazy.fs.borrow_mut() = Some(fs);
        result
    }

    async fn ran(
        &mut self,
        step: &Step,
        inputs: &KeyInputs,
        layer: Option<WrittenLayer>,
    ) -> anyhow::Result<(StepRecord, UsedResult)> {
        let record = StepRecord {
            key: inputs.key(),
            inputs: inputs.clone(),
            image: None,
            adds_layer: None,
            snapshot: None,
            layer: layer.as_ref().map(LayerRecord::from),
        };
        let used = UsedResult::Layer(record.layer.clone());
        match layer {
            Some(layer) => self.layers.push(layer),
            None => mark_empty(&mut self.history, step),
        }
        Ok((record, used))
    }

    fn finish(self, _key: String) -> anyhow::Result<Arc<dyn Image>> {
        let b = self.builder;
        let Some(Started { base, .. }) = self.started else {
            anyhow::bail!("the packaging stage was not started");
        };
        let mut doc = base.config.clone();
        // History entries are dated like the config: set the date first.
        doc.set_created(b.epoch())?;
        config::apply_to_oci(&self.plan.config, &self.history, &mut doc)?;
        for (k, v) in &b.request.labels {
            doc.set_label(k, v);
        }
        Ok(Arc::new(oci::append_layers(base.image, &self.layers, doc)?))
    }
}

impl Builder {
    /// Writes the target stage as an image.
    pub(super) async fn package(
        &self,
        index: usize,
        plan: &StagePlan,
        plans: &HashMap<usize, StagePlan>,
    ) -> anyhow::Result<Arc<dyn Image>> {
        let backend = Packaging {
            builder: self,
            index,
            plan,
            plans,
            started: None,
            layers: Vec::new(),
            history: plan.history.clone(),
        };
        self.drive(index, plan, backend).await
    }

    /// A cached step's layer: `Ok(None)` for a step that changed nothing, `Err` (why) when
    /// its blob is gone. A layer recorded with another compression than this build's (by a
    /// build with another output) is compressed again as this build writes layers, and
    /// recorded so: the same tar, so the blob a run of the step would give, and the image
    /// does not depend on which build wrote the record.
    pub(super) fn cached_layer(&self, record: &StepRecord) -> Result<Option<WrittenLayer>, String> {
        let Some(layer) = &record.layer else {
            return Ok(None);
        };
        let gone = || "the step's layer is no longer in the blob store".to_owned();
        let digest: Digest = layer.digest.parse().map_err(|_| gone())?;
        let diff_id: Digest = layer.diff_id.parse().map_err(|_| gone())?;
        if !self.oci_blobs.contains(&digest) {
            return Err(gone());
        }
        let path = self.oci_blobs.path(&digest);
        let media_type = MediaType::from(layer.media_type.as_str());
        let options = self.layer_options();
        if media_type != options.compression.layer_media_type() {
            let written = tokio::task::block_in_place(|| {
                oci::recompress(&self.oci_blobs, &path, &media_type, &diff_id, &options)
            })
            .map_err(|e| format!("the cached layer could not be read ({e})"))?;
            let mut recompressed = record.clone();
            recompressed.layer = Some(LayerRecord::from(&written));
            // Unrecorded, the next such build compresses it again: nothing worse.
            let _ = self.cache.put(&recompressed);
            return Ok(Some(written));
        }
        let descriptor = descriptor(media_type, digest, layer.size).ok_or_else(gone)?;
        Ok(Some(WrittenLayer {
            descriptor,
            diff_id,
            uncompressed_size: 0,
            path,
        }))
    }

    fn layer_options(&self) -> LayerOptions {
        LayerOptions::new(self.request.publish.compression, self.epoch())
    }

    fn layer_builder(&self) -> LayerBuilder {
        LayerBuilder::new(self.oci_blobs.clone(), self.layer_options())
    }

    /// Runs one step of the packaging stage; `None` when the filesystem did not change.
    async fn package_step(
        &self,
        step: &Step,
        fs: &mut ImageFs,
        selection: Option<(crate::context::Selection, crate::context::SelectionDigest)>,
    ) -> anyhow::Result<Option<WrittenLayer>> {
        match &step.kind {
            StepKind::Mkdir { path, user } => {
                let creates = fs
                    .resolve(path, true)
                    .map_err(|e| InputError::new(format!("WORKDIR {path}: {e}")))?
                    .workdir_creates(path)?;
                if creates.is_empty() {
                    return Ok(None);
                }
                let owner = workdir_owner(fs, user);
                let mut tar = self.temp_tar(Overrides {
                    owner: Some(owner),
                    chmod: None,
                    mtime: self.mtime(),
                })?;
                // BuildKit's `mkdir -p`: every directory it creates belongs to the USER.
                for dir in &creates {
                    tar.created_dir(dir, owner)?;
                }
                self.write_tar_layer(tar, fs).map(Some)
            }
            StepKind::Copy(copy) => {
                let owner = self.owner(fs, copy.chown.as_deref());
                let chmod = crate::plan::keys::select_options(copy)?.chmod;
                let mut tar = self.temp_tar(Overrides {
                    owner,
                    chmod,
                    mtime: self.mtime(),
                })?;
                let resolved = fs
                    .resolve(&copy.dest, true)
                    .map_err(|e| InputError::new(format!("{}: {e}", step.display)))?;
                let dest = CopyDest::new(&copy.dest, resolved);
                let dest_exists = dest.is_dir;
                match &copy.from {
                    CopyFrom::Context | CopyFrom::Local(_) => {
                        let selected = selection.as_ref().map(|(selected, _)| selected);
                        if copies_anything(copy, selected) {
                            dest.start(&mut tar)?;
                        }
                        if let Some(selected) = selected {
                            tokio::task::block_in_place(|| {
                                write_selection(
                                    &mut tar,
                                    selected,
                                    &|p| fs.is_dir_followed(p),
                                    &|p| fs.real_dir(p),
                                )
                            })?;
                        }
                    }
                    from => {
                        if !self.copy_from(from, copy, &dest, &mut tar).await? {
                            // A wildcard that matched nothing: BuildKit changes nothing.
                            return Ok(None);
                        }
                    }
                }
                self.write_remote_sources(&mut tar, copy, &|p| fs.is_dir(p))?;
                write_inline_files(&mut tar, copy, dest_exists)?;
                self.write_tar_layer(tar, fs).map(Some)
            }
            // A target stage with RUN steps is built in the engine (see `Builder::run`).
            StepKind::Run(_) => Err(anyhow::anyhow!("a RUN step cannot be written directly")),
        }
    }

    fn mtime(&self) -> u64 {
        self.epoch().max(0) as u64
    }

    /// `--chown` (or WORKDIR's user) resolved against the image's own accounts.
    fn owner(&self, fs: &ImageFs, spec: Option<&str>) -> Option<Ownership> {
        let spec = spec?;
        let passwd = fs.text_file("/etc/passwd");
        let group = fs.text_file("/etc/group");
        Some(resolve_user(spec, passwd.as_deref(), group.as_deref()))
    }

    fn temp_tar(&self, overrides: Overrides) -> anyhow::Result<TarOut<BufWriter<std::fs::File>>> {
        let file = tempfile::tempfile_in(self.oci_blobs.root())
            .context("creating a temporary file for a layer")?;
        Ok(TarOut::new(BufWriter::new(file), overrides))
    }

    /// Writes the tar of a step as a layer. Directories the tar does not create but that
    /// exist in the image keep the image's metadata in the layer, as in BuildKit's diffs.
    fn write_tar_layer(
        &self,
        tar: TarOut<BufWriter<std::fs::File>>,
        fs: &mut ImageFs,
    ) -> anyhow::Result<WrittenLayer> {
        let mut file = tar.finish()?.into_inner().map_err(|e| e.into_error())?;
        tokio::task::block_in_place(|| -> anyhow::Result<WrittenLayer> {
            file.seek(SeekFrom::Start(0))?;
            let mut builder = self.layer_builder();
            let paths = tar_paths(&mut file)?;
            if let Some(path) = paths
                .non_dirs
                .iter()
                .find(|p| fs.stat(p).is_some_and(|m| m.kind == Kind::Dir))
            {
                return Err(InputError::new(format!(
                    "cannot replace to directory `{path}` with file: the image has a directory there"
                ))
                .with_hint("copy to another path, or into that directory with a trailing `/`")
                .into());
            }
            for dir in paths.parents {
                if fs.stat(&dir).is_some_and(|m| m.kind != Kind::Dir) {
                    // The destination was resolved through links, so this is a directory
                    // of what is copied landing on a link or file of the image: BuildKit
                    // refuses it the same way.
                    return Err(InputError::new(format!(
                        "cannot copy to non-directory: `{dir}` in the image is not a directory"
                    ))
                    .with_hint("copy into the directory the link points to")
                    .into());
                }
                if let Some(meta) = fs.stat(&dir).filter(|m| m.kind == Kind::Dir) {
                    builder.add_directory(
                        &dir,
                        EntryMeta {
                            mode: meta.mode,
                            owner: Ownership {
                                uid: meta.uid,
                                gid: meta.gid,
                            },
                        },
                    )?;
                }
            }
            builder.add_tar_file(
                file.try_clone()?,
                &AddOptions {
                    dest: "/".into(),
                    ..AddOptions::default()
                },
            )?;
            let layer = builder.write()?;
            file.seek(SeekFrom::Start(0))?;
            fs.apply_layer(std::io::BufReader::with_capacity(1 << 20, &mut file))?;
            Ok(layer)
        })
    }

    /// Rewrites an uncompressed layer tar (from `docker save`) deterministically.
    fn relayer(
        &self,
        mut tar: std::fs::File,
        fs: &mut ImageFs,
    ) -> anyhow::Result<Option<WrittenLayer>> {
        let mut builder = self.layer_builder();
        builder.add_tar_file(
            tar.try_clone()?,
            &AddOptions {
                dest: "/".into(),
                numeric_owners: true,
                ..AddOptions::default()
            },
        )?;
        if builder.is_empty() {
            return Ok(None);
        }
        let layer = builder.write()?;
        tar.seek(SeekFrom::Start(0))?;
        fs.apply_layer(std::io::BufReader::with_capacity(1 << 20, &mut tar))?;
        Ok(Some(layer))
    }

    /// The last `count` layers of an engine image, as uncompressed tar files.
    async fn engine_layers(
        &self,
        image_id: &str,
        count: usize,
    ) -> anyhow::Result<Vec<std::fs::File>> {
        let engine = self.engine()?;
        let mut saved = tempfile::tempfile_in(self.oci_blobs.root())
            .context("creating a temporary file for docker save")?;
        let mut stream = engine.save_image(image_id);
        while let Some(chunk) = stream.next().await {
            std::io::Write::write_all(&mut saved, &chunk?)?;
        }
        tokio::task::block_in_place(|| extract_saved_layers(saved, count, self.oci_blobs.root()))
    }

    /// A build stage as an image with layers imgbuild wrote: the layers of the image the
    /// stage chain starts from (reused as they are) plus one rewritten layer per layer the
    /// engine made for the stages, with history entries matched to them.
    pub(super) async fn stage_as_image(
        &self,
        index: usize,
        plans: &HashMap<usize, StagePlan>,
    ) -> anyhow::Result<PackageBase> {
        let mut chain = vec![index];
        let mut root = self.stage_output(index)?.base.clone();
        while let StageBase::Stage(i) = root {
            chain.push(i);
            root = self.stage_output(i)?.base.clone();
        }
        chain.reverse();
        // The engine has one empty layer under `FROM scratch` stages (see
        // `ensure_scratch_loaded`); it is not part of the image.
        let (root_image, mut doc, engine_root_layers) = match &root {
            StageBase::Image(name) => {
                let p = self.pulled_image(name)?;
                let count = p.image.diff_ids()?.len();
                (p.image.clone(), p.config.clone(), count)
            }
            _ => {
                let image = oci::scratch(&self.request.publish.platform, self.epoch())?;
                let config = oci::ImageConfig::from_json(image.raw_config())?;
                (image, config, 1)
            }
        };
        let output = self.stage_output(index)?;
        let id = self.ids.next();
        self.reporter.started(
            id,
            &format!(
                "[internal] export the layers of stage {}",
                self.graph.dockerfile.stages[index].display_name()
            ),
        );
        let started = Instant::now();
        let exported = match &output.snapshots {
            Some(snapshots) => match snapshots.get(self, id).await {
                Ok(snapshots) => {
                    let root_layers = engine_root_layers.min(root_image.layers().len());
                    self.snapshot_layers(&chain, &snapshots, root_layers, plans)
                }
                Err(e) => Err(e),
            },
            None => {
                self.engine_stage_layers(index, &chain, engine_root_layers)
                    .await
            }
        };
        let (layers, with_layer) = match exported {
            Ok(exported) => exported,
            Err(e) => {
                self.reporter.failed(id, started.elapsed());
                return Err(e);
            }
        };
        self.reporter.done(id, started.elapsed());
        doc.set_created(self.epoch())?;
        for &i in &chain {
            if let Some(p) = plans.get(&i) {
                let mut history = p.history.clone();
                for (h, entry) in history.iter_mut().enumerate() {
                    entry.empty_layer = !with_layer.contains(&(i, h));
                }
                config::apply_to_oci(&p.config, &history, &mut doc)?;
            }
        }
        if index == self.graph.target {
            for (k, v) in &self.request.labels {
                doc.set_label(k, v);
            }
        }
        let image: Arc<dyn Image> = Arc::new(oci::append_layers(root_image, &layers, doc.clone())?);
        Ok(PackageBase {
            image,
            config: doc,
            key: output.key,
        })
    }

    /// The layers the engine made for a stage chain (`chain`: stage indices, bottom first),
    /// rewritten by imgbuild's layer writer, and the steps (stage, history index) that
    /// made one.
    async fn engine_stage_layers(
        &self,
        index: usize,
        chain: &[usize],
        engine_root_layers: usize,
    ) -> anyhow::Result<StageLayers> {
        let image = self.stage_image(index).await?;
        let engine = self.engine()?.clone();
        let info = engine
            .find_image(&image)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the engine lost the image of stage {index}"))?;
        // Which history entry each engine layer belongs to, stage by stage.
        let mut owners: Vec<(usize, usize)> = Vec::new();
        for &i in chain {
            owners.extend(self.stage_output(i)?.layer_steps.iter().map(|&h| (i, h)));
        }
        let own = info.diff_ids.len().saturating_sub(engine_root_layers);
        if own != owners.len() {
            anyhow::bail!(
                "stage {} has {own} layers of its own in the engine, but {} steps that made one",
                self.graph.dockerfile.stages[index].display_name(),
                owners.len()
            );
        }
        let tars = self.engine_layers(&image, own).await?;
        let mut fs = ImageFs::default();
        let mut layers = Vec::new();
        let mut with_layer: std::collections::HashSet<(usize, usize)> = Default::default();
        for (tar, owner) in tars.into_iter().zip(&owners) {
            if let Some(layer) = tokio::task::block_in_place(|| self.relayer(tar, &mut fs))? {
                layers.push(layer);
                with_layer.insert(*owner);
            }
        }
        Ok((layers, with_layer))
    }

    /// The layers of a stage chain the native executor ran: each step snapshot's upper
    /// directory above the `root_layers` base layers in `snapshots`, written by the layer
    /// writer (overlay whiteouts as OCI ones); a step that changed nothing makes none, as
    /// in the engine.
    fn snapshot_layers(
        &self,
        chain: &[usize],
        snapshots: &[crate::cache::snapshot::Snapshot],
        root_layers: usize,
        plans: &HashMap<usize, StagePlan>,
    ) -> anyhow::Result<StageLayers> {
        let mut owners: Vec<(usize, usize)> = Vec::new();
        for &i in chain {
            let plan = plans
                .get(&i)
                .with_context(|| format!("stage {i} was not dispatched"))?;
            owners.extend(plan.steps.iter().map(|s| (i, s.history)));
        }
        let steps = snapshots.get(root_layers..).unwrap_or_default();
        if steps.len() != owners.len() {
            anyhow::bail!(
                "the stage has {} snapshots of its own, but {} steps",
                steps.len(),
                owners.len()
            );
        }
        let mut layers = Vec::new();
        let mut with_layer = HashSet::new();
        for (snapshot, owner) in steps.iter().zip(owners) {
            if let Some(layer) = self.upper_layer(snapshot)? {
                layers.push(layer);
                with_layer.insert(owner);
            }
        }
        Ok((layers, with_layer))
    }
}

impl Builder {
    /// A step snapshot's upper directory as a layer, written by the packaging stage's layer
    /// writer (overlay whiteouts as OCI ones); `None` for a step that changed nothing,
    /// which makes no layer, as in the engine.
    pub(super) fn upper_layer(
        &self,
        snapshot: &crate::cache::snapshot::Snapshot,
    ) -> anyhow::Result<Option<WrittenLayer>> {
        tokio::task::block_in_place(|| {
            let mut builder = self.layer_builder();
            crate::cache::snapshot::add_upper(&mut builder, snapshot.path())?;
            Ok(match builder.is_empty() {
                true => None,
                false => Some(builder.write()?),
            })
        })
    }
}

/// A stage chain's own layers, and the steps (stage, history index) that made one.
type StageLayers = (Vec<WrittenLayer>, HashSet<(usize, usize)>);

/// The file system of the image being written, read from its layers the first time a step
/// needs it.
struct LazyFs {
    fs: RefCell<Option<ImageFs>>,
    /// The base's file system being read ahead (see [`ImageFs::read_ahead`]).
    ahead: RefCell<Option<super::image_fs::ReadAhead>>,
    base: Arc<dyn Image>,
    cache_dir: std::path::PathBuf,
}

impl LazyFs {
    fn ensure(&self, layers: &[WrittenLayer]) -> anyhow::Result<()> {
        if self.fs.borrow().is_some() {
            return Ok(());
        }
        let ahead = self.ahead.borrow_mut().take();
        let fs = tokio::task::block_in_place(|| -> anyhow::Result<ImageFs> {
            // A read ahead that failed is read again here, to report its error.
            let read = ahead.and_then(|reading| reading.wait().ok());
            let mut fs = match read {
                Some(fs) => fs,
                None => ImageFs::of_image_cached(self.base.as_ref(), &self.cache_dir)
                    .context("reading the base image's file system")?,
            };
            for layer in layers {
                apply_blob(&mut fs, &layer.path, &layer.descriptor)?;
            }
            Ok(fs)
        })?;
        *self.fs.borrow_mut() = Some(fs);
        Ok(())
    }

    /// Whether `path` is a directory in the image; `false` if the image cannot be read (the
    /// step that needs it then reports the error).
    fn is_dir(&self, path: &str, layers: &[WrittenLayer]) -> bool {
        self.ensure(layers).is_ok()
            && self
                .fs
                .borrow()
                .as_ref()
                .is_some_and(|fs| fs.is_dir_followed(path))
    }
}

/// The owner of the directories a WORKDIR creates: the stage's USER as of that step.
pub(super) fn workdir_owner(fs: &ImageFs, user: &str) -> Ownership {
    if user.is_empty() {
        return Ownership::ROOT;
    }
    let passwd = fs.text_file("/etc/passwd");
    let group = fs.text_file("/etc/group");
    resolve_user(user, passwd.as_deref(), group.as_deref())
}

fn mark_empty(history: &mut [crate::plan::dispatch::History], step: &Step) {
    if let Some(entry) = history.get_mut(step.history) {
        entry.empty_layer = true;
    }
}

fn descriptor(media_type: MediaType, digest: Digest, size: u64) -> Option<Descriptor> {
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(size)
        .build()
        .ok()
}

/// Applies a layer blob of the blob store to `fs`.
fn apply_blob(
    fs: &mut ImageFs,
    path: &std::path::Path,
    descriptor: &Descriptor,
) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    fs.apply_layer(oci::manifest::uncompressed_layer(
        descriptor.media_type(),
        file,
    )?)
}

/// The directories above every entry of a tar (absolute, without the root).
/// What a step's tar writes: the directories above its entries, and its entries that are
/// not directories.
struct TarPaths {
    parents: Vec<String>,
    non_dirs: Vec<String>,
}

fn tar_paths(file: &mut std::fs::File) -> anyhow::Result<TarPaths> {
    let mut dirs = std::collections::BTreeSet::new();
    let mut non_dirs = Vec::new();
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries()? {
        let entry = entry?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut path = String::new();
        let parts: Vec<&str> = name
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            path.push('/');
            path.push_str(part);
            dirs.insert(path.clone());
        }
        if !entry.header().entry_type().is_dir() && !parts.is_empty() {
            non_dirs.push(format!("/{}", parts.join("/")));
        }
    }
    Ok(TarPaths {
        parents: dirs.into_iter().collect(),
        non_dirs,
    })
}

/// The last `count` layer tars of a `docker save` archive, in order, each as its own file.
/// A layer that appears twice in the image (two steps whose diffs are the same bytes) is
/// saved once by the engine: its later `layer.tar` entries are symlinks to the first.
fn extract_saved_layers(
    mut saved: std::fs::File,
    count: usize,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<std::fs::File>> {
    saved.seek(SeekFrom::Start(0))?;
    // manifest.json names the layer files in order; it may come after them, so read it
    // (and where the symlinks point) in one pass and the layers in a second.
    let mut manifest: Option<serde_json::Value> = None;
    let mut links: HashMap<String, String> = HashMap::new();
    {
        let mut archive = tar::Archive::new(&mut saved);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if name == "manifest.json" {
                manifest = Some(serde_json::from_reader(&mut entry)?);
            } else if entry.header().entry_type() == tar::EntryType::Symlink
                && let Some(target) = entry.link_name_bytes()
            {
                let target = String::from_utf8_lossy(&target).into_owned();
                links.insert(name.clone(), resolve_link(&name, &target));
            }
        }
    }
    let manifest = manifest
        .ok_or_else(|| anyhow::anyhow!("the engine's image archive has no manifest.json"))?;
    let layer_names: Vec<String> = manifest
        .get(0)
        .and_then(|m| m.get("Layers"))
        .and_then(|l| l.as_array())
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // Each wanted layer by the file that holds its bytes (a symlink followed).
    let wanted: Vec<String> = layer_names[layer_names.len().saturating_sub(count)..]
        .iter()
        .map(|name| {
            let mut name = name.clone();
            // Bounded: a link loop in a broken archive must not hang the build.
            for _ in 0..links.len() {
                match links.get(&name) {
                    Some(target) => name = target.clone(),
                    None => break,
                }
            }
            name
        })
        .collect();
    let mut files: HashMap<String, std::fs::File> = HashMap::new();
    saved.seek(SeekFrom::Start(0))?;
    let mut archive = tar::Archive::new(&mut saved);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if entry.header().entry_type().is_file()
            && wanted.contains(&name)
            && !files.contains_key(&name)
        {
            let mut file = tempfile::tempfile_in(dir)?;
            std::io::copy(&mut entry, &mut file)?;
            files.insert(name, file);
        }
    }
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for name in &wanted {
        *uses.entry(name.as_str()).or_default() += 1;
    }
    wanted
        .iter()
        .map(|n| {
            let lacks = || anyhow::anyhow!("the engine's image archive lacks layer {n}");
            let left = uses.get_mut(n.as_str()).map(|u| {
                *u -= 1;
                *u
            });
            if left == Some(0) {
                let mut file = files.remove(n).ok_or_else(lacks)?;
                file.seek(SeekFrom::Start(0))?;
                return Ok(file);
            }
            // The same bytes for another position: a copy of its own.
            let file = files.get_mut(n).ok_or_else(lacks)?;
            file.seek(SeekFrom::Start(0))?;
            let mut copy = tempfile::tempfile_in(dir)?;
            std::io::copy(file, &mut copy)?;
            copy.seek(SeekFrom::Start(0))?;
            Ok(copy)
        })
        .collect()
}

/// The archive path a symlink at `name` pointing to `target` names (`docker save` writes
/// `../<id>/layer.tar`).
fn resolve_link(name: &str, target: &str) -> String {
    let mut parts: Vec<&str> = match name.rsplit_once('/') {
        Some((dir, _)) if !target.starts_with('/') => dir.split('/').collect(),
        _ => Vec::new(),
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn add(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
    }

    /// An archive shaped like `docker save`'s: layer `b` repeats `a`, saved as a symlink.
    fn saved_archive() -> std::fs::File {
        let mut builder = tar::Builder::new(Vec::new());
        add(&mut builder, "a/layer.tar", b"layer a");
        add(&mut builder, "c/layer.tar", b"layer c");
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_cksum();
        builder
            .append_link(&mut link, "b/layer.tar", "../a/layer.tar")
            .unwrap();
        add(
            &mut builder,
            "manifest.json",
            br#"[{"Layers":["a/layer.tar","b/layer.tar","c/layer.tar"]}]"#,
        );
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&builder.into_inner().unwrap()).unwrap();
        file
    }

    fn contents(files: Vec<std::fs::File>) -> Vec<String> {
        files
            .into_iter()
            .map(|mut f| {
                let mut text = String::new();
                f.read_to_string(&mut text).unwrap();
                text
            })
            .collect()
    }

    #[test]
    fn a_repeated_layer_saved_as_a_symlink_is_extracted_at_each_position() {
        let dir = tempfile::tempdir().unwrap();
        let all = extract_saved_layers(saved_archive(), 3, dir.path()).unwrap();
        assert_eq!(contents(all), ["layer a", "layer a", "layer c"]);
        // The repeat's target lies below the layers asked for.
        let top = extract_saved_layers(saved_archive(), 2, dir.path()).unwrap();
        assert_eq!(contents(top), ["layer a", "layer c"]);
    }

    #[test]
    fn symlinks_resolve_against_their_own_directory() {
        assert_eq!(resolve_link("b/layer.tar", "../a/layer.tar"), "a/layer.tar");
        assert_eq!(resolve_link("b/layer.tar", "/a/layer.tar"), "a/layer.tar");
        assert_eq!(resolve_link("b/layer.tar", "./x.tar"), "b/x.tar");
    }
}
