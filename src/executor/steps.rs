//! What a step's cache key is made of, and the cache lookup every step goes through.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::Builder;
use crate::cache::remote::StepKind as CachedKind;
use crate::cache::{self, KeyInputs, LayerRecord, StepRecord};
use crate::context::{EntryKind, SelectOptions, Selection, SelectionDigest};
use crate::oci::WrittenLayer;
use crate::plan::dispatch::{CopyFrom, CopyStep, RunStep, Step, StepKind};

/// A step's inputs, and for COPY from the context the selection they were computed from.
pub(super) struct Prepared {
    pub inputs: KeyInputs,
    pub selection: Option<(Selection, SelectionDigest)>,
}

/// What a lookup found.
pub(super) enum Lookup {
    Hit(Box<StepRecord>),
    Miss { reason: String },
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub(super) fn select_options(copy: &CopyStep) -> anyhow::Result<SelectOptions> {
    let chmod = match &copy.chmod {
        Some(m) => Some(crate::oci::layer::parse_chmod(m)?),
        None => None,
    };
    Ok(SelectOptions {
        exclude: copy.exclude.clone(),
        parents: copy.parents,
        chmod,
        is_add: copy.is_add && copy.unpack != Some(false),
    })
}

/// What a step's cached result is, part of its key: the same COPY on the same base gives an
/// engine image in a build stage and a layer in the packaging stage, and one must never be
/// taken for the other (a packaging step that found a build stage's record took its missing
/// layer for "nothing changed" and left the COPY out of the image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StepResult {
    EngineImage,
    Layer,
}

impl StepResult {
    fn name(self) -> &'static str {
        match self {
            StepResult::EngineImage => "an engine image",
            StepResult::Layer => "a layer written by imgbuild",
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

impl Builder {
    /// A user's mistake in `step` (a missing source…) named with the step's `file:line`.
    fn located(&self, step: &Step, e: anyhow::Error) -> anyhow::Error {
        let location = format!("{}:{}", self.graph.dockerfile.file, step.location.line);
        match e.downcast_ref::<crate::error::InputError>() {
            Some(input) => {
                let located = crate::error::InputError::new(format!("{location}: {input}"));
                match input.hint() {
                    Some(hint) => located.with_hint(hint.to_owned()).into(),
                    None => located.into(),
                }
            }
            None => e.context(location),
        }
    }

    /// The named inputs of `step`, on top of the key `parent`, for a step whose result is
    /// `result`. `source_key` is the key of the stage or image a `COPY --from` reads;
    /// `dest_is_dir` answers for the filesystem the step writes into.
    pub(super) fn prepare(
        &self,
        step: &Step,
        result: StepResult,
        parent: &str,
        source_key: Option<&str>,
        dest_is_dir: &dyn Fn(&str) -> bool,
    ) -> anyhow::Result<Prepared> {
        let mut inputs = KeyInputs {
            parent: parent.to_owned(),
            ..KeyInputs::default()
        };
        inputs
            .other
            .insert("the step's result".into(), result.name().into());
        let mut selection = None;
        match &step.kind {
            StepKind::Run(run) => {
                self.run_inputs(run, &mut inputs);
                self.bind_mount_inputs(run, &mut inputs)?;
            }
            StepKind::Copy(copy) => {
                inputs.instruction = step.display.clone();
                let other = &mut inputs.other;
                other.insert("dest".into(), copy.dest.clone());
                for (name, value) in [
                    ("chown", &copy.chown),
                    ("chmod", &copy.chmod),
                    ("checksum", &copy.checksum),
                ] {
                    if let Some(v) = value {
                        other.insert(name.into(), v.clone());
                    }
                }
                if copy.parents {
                    other.insert("parents".into(), "true".into());
                }
                if !copy.exclude.is_empty() {
                    other.insert("exclude".into(), copy.exclude.join("\n"));
                }
                for doc in &copy.inline {
                    other.insert(
                        format!("heredoc {}", doc.name),
                        sha256_hex(doc.data.as_bytes()),
                    );
                }
                match source_key {
                    Some(key) => {
                        other.insert("the stage or image it copies from".into(), key.to_owned());
                    }
                    None if !copy.sources.is_empty() => {
                        let options = select_options(copy)?;
                        let selected = self
                            .context
                            .select(&copy.sources, &copy.dest, &options, dest_is_dir)
                            .map_err(|e| self.located(step, e))?;
                        for skipped in &selected.skipped {
                            self.reporter.warning(&skipped.to_string());
                        }
                        // Before the files are read (hashed, then sent), so a user who copied
                        // the whole disk by mistake hears it early.
                        if let Some(warning) = self.context_size_warning(step, &selected) {
                            self.reporter.warning(&warning);
                        }
                        let digest = self.context.digest(&selected)?;
                        inputs.files = digest.files.clone();
                        other.insert("selection".into(), digest.digest.clone());
                        selection = Some((selected, digest));
                    }
                    None => {}
                }
                self.remote_inputs(copy, &mut inputs)?;
            }
            StepKind::Mkdir { path, user } => {
                inputs.instruction = format!("WORKDIR {path}");
                inputs.other.insert("user".into(), user.clone());
            }
        }
        Ok(Prepared { inputs, selection })
    }

    /// A warning when `selection` is larger than `--context-size-warning`, naming the step
    /// and the largest top-level paths of the context it selects.
    fn context_size_warning(&self, step: &Step, selection: &Selection) -> Option<String> {
        let limit = self.request.context_size_warning?;
        let root = self.context.root();
        let mut total = 0u64;
        let mut by_top: BTreeMap<String, u64> = BTreeMap::new();
        for entry in &selection.entries {
            let size = match &entry.kind {
                EntryKind::File { size, .. } => *size,
                EntryKind::Archive => std::fs::metadata(&entry.source).map_or(0, |m| m.len()),
                _ => continue,
            };
            total += size;
            let rel = entry.source.strip_prefix(root).unwrap_or(&entry.source);
            let top = rel
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            *by_top.entry(top).or_default() += size;
        }
        if total <= limit {
            return None;
        }
        let mut largest: Vec<(String, u64)> = by_top.into_iter().collect();
        largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let largest: Vec<String> = largest
            .iter()
            .take(3)
            .map(|(path, size)| format!("{path} {}", indicatif::HumanBytes(*size)))
            .collect();
        Some(format!(
            "{}:{}: {} selects {} of the build context, more than --context-size-warning ({}); \
             largest: {}. List what the image does not need in .dockerignore",
            self.graph.dockerfile.file,
            step.location.line,
            step.display,
            indicatif::HumanBytes(total),
            indicatif::HumanBytes(limit),
            largest.join(", "),
        ))
    }

    fn run_inputs(&self, run: &RunStep, inputs: &mut KeyInputs) {
        inputs.instruction = serde_json::to_string(&run.argv).unwrap_or_default();
        inputs.env = run
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv.clone(), String::new()),
            })
            .collect::<BTreeMap<_, _>>();
        let other = &mut inputs.other;
        other.insert("user".into(), run.user.clone());
        other.insert("workdir".into(), run.workdir.clone());
        let network = format!("{:?}", self.run_network(run)).to_lowercase();
        other.insert("network".into(), network);
        if let Some(security) = &run.security {
            other.insert("security".into(), security.clone());
        }
        if let Some(script) = &run.script {
            other.insert("script".into(), sha256_hex(script.data.as_bytes()));
        }
        for (i, mount) in run.mounts.iter().enumerate() {
            other.insert(format!("mount {i}"), format!("{mount:?}"));
        }
    }

    /// A bind mount of the build context is keyed on the content it shows; a bind or cache
    /// mount from a stage or image on that stage's key or that image's digest.
    fn bind_mount_inputs(&self, run: &RunStep, inputs: &mut KeyInputs) -> anyhow::Result<()> {
        use crate::frontend::instructions::MountKind;
        for (i, mount) in run.mounts.iter().enumerate() {
            if let Some(from) = &mount.from
                && matches!(mount.kind, MountKind::Bind | MountKind::Cache)
            {
                let from = CopyFrom::named(&self.graph, from);
                if let Some(key) = self.source_key(&from)? {
                    inputs.other.insert(format!("mount {i} from"), key);
                }
                continue;
            }
            if mount.kind != MountKind::Bind {
                continue;
            }
            let source = mount.source.clone().unwrap_or_else(|| ".".into());
            let selected =
                self.context
                    .select(&[source], "/mount/", &SelectOptions::default(), &|_| true)?;
            let digest = self.context.digest(&selected)?;
            inputs
                .other
                .insert(format!("mount {i} content"), digest.digest);
            inputs.files.extend(digest.files);
        }
        Ok(())
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

    /// The step's position for imported caches (see [`cache::remote::position`]).
    pub(super) fn position(&self, stage: &str, step: usize) -> String {
        cache::remote::position(&self.graph.dockerfile.file, stage, step)
    }

    pub(super) fn identity(&self, stage: &str, step: usize) -> String {
        cache::step_identity(
            self.context.root(),
            &self.graph.dockerfile.file,
            stage,
            step,
        )
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
            match self
                .remote_layer(identity, inputs, CachedKind::Engine)
                .await
            {
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
