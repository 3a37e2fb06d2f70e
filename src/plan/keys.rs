//! Every step's cache key: the named inputs a step's result depends on ([`KeyInputs`]),
//! on top of the key of the step before it. A miss can then say which input changed.
//!
//! Keys are made here, from the plan and the build context; what only a running build
//! knows (the key of a stage built before, the content of a remote source once fetched,
//! whether a destination is a directory in the filesystem written into) is asked of the
//! executor through [`Sources`] and the `dest_is_dir` of [`Keys::prepare`].

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::dispatch::{CopyFrom, CopyStep, RunStep, Step, StepKind};
use crate::cache::{self, KeyInputs};
use crate::context::{
    Context, EntryKind, SelectOptions, Selection, SelectionDigest, climbs_above_root,
};
use crate::engine::Network;
use crate::error::InputError;
use crate::fetch::RemoteSource;
use crate::frontend::instructions::MountKind;
use crate::frontend::stages::BuildGraph;
use crate::progress::Reporter;

/// A step's inputs, and for COPY from the context the selection they were computed from.
pub struct Prepared {
    pub inputs: KeyInputs,
    pub selection: Option<(Selection, SelectionDigest)>,
}

/// What a step's cached result is, part of its key: the same COPY on the same base gives an
/// engine image in a build stage and a layer in the packaging stage, and one must never be
/// taken for the other (a packaging step that found a build stage's record took its missing
/// layer for "nothing changed" and left the COPY out of the image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepResult {
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

/// What keys read from the build in progress.
pub trait Sources {
    /// The key of a stage or image that files are taken from (its last step's key, or the
    /// image's digest); `None` for the build context.
    fn source_key(&self, from: &CopyFrom) -> anyhow::Result<Option<String>>;
    /// What a remote source resolved to (content digest, commit), resolved before the
    /// stage's keys are made.
    fn remote_key(&self, source: &RemoteSource) -> anyhow::Result<String>;
}

/// The key maker of one build.
pub struct Keys<'a> {
    pub graph: &'a BuildGraph,
    pub context: &'a Context,
    /// The `--build-context NAME=DIR` directories, by name.
    pub local_contexts: &'a std::collections::BTreeMap<String, Context>,
    /// The build's `--network`, which a RUN without `--network` runs in.
    pub network: Network,
    /// The build's `--add-host`, `--shm-size` and `--ulimit`, which every RUN gets.
    pub run_options: &'a crate::engine::RunOptions,
    /// `--context-size-warning`.
    pub context_size_warning: Option<u64>,
    pub sources: &'a dyn Sources,
    /// Where warnings found while the inputs are read go (files left out, a large
    /// selection).
    pub reporter: &'a dyn Reporter,
}

/// The network a RUN runs in: `default` is the build's (`--network`), as in BuildKit.
pub fn run_network(run: &RunStep, build: Network) -> Network {
    match run.network.as_deref() {
        Some("host") => Network::Host,
        Some("none") => Network::None,
        _ => build,
    }
}

/// The options a COPY's sources are selected with.
pub fn select_options(copy: &CopyStep) -> anyhow::Result<SelectOptions> {
    let chmod = match &copy.chmod {
        Some(m) => Some(crate::oci::layer::Chmod::parse(m)?),
        None => None,
    };
    Ok(SelectOptions {
        exclude: copy.exclude.clone(),
        parents: copy.parents,
        chmod,
        is_add: copy.is_add && copy.unpack != Some(false),
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The key that a stage which ran again under `--no-cache-filter` shows the stages built
/// on it: its last step's key marked with this run, so they run again too rather than take
/// what the cache made from the stage's earlier result. (BuildKit compares the new result's
/// content; a snapshot's or engine image's name says nothing about its content, so every
/// use of the stage runs again.)
pub fn rerun_key(key: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    sha256_hex(format!("no-cache-filter\0{key}\0{}\0{nanos}", std::process::id()).as_bytes())
}

impl Keys<'_> {
    /// The context a COPY without a stage or image reads: the build context, or a
    /// `--build-context NAME=DIR`.
    pub fn context_of(&self, from: &CopyFrom) -> anyhow::Result<&Context> {
        match from {
            CopyFrom::Local(name) => self
                .local_contexts
                .get(name)
                .ok_or_else(|| anyhow::anyhow!("no --build-context {name} was opened")),
            _ => Ok(self.context),
        }
    }

    /// A user's mistake in `step` (a missing source…) named with the step's `file:line`.
    fn located(&self, step: &Step, e: anyhow::Error) -> anyhow::Error {
        let location = format!("{}:{}", self.graph.dockerfile.file, step.location.line);
        match e.downcast_ref::<InputError>() {
            Some(input) => {
                let located = InputError::new(format!("{location}: {input}"));
                match input.hint() {
                    Some(hint) => located.with_hint(hint.to_owned()).into(),
                    None => located.into(),
                }
            }
            None => e.context(location),
        }
    }

    /// The named inputs of `step`, on top of the key `parent`, for a step whose result is
    /// `result`. `dest_is_dir` answers for the filesystem the step writes into.
    pub fn prepare(
        &self,
        step: &Step,
        result: StepResult,
        parent: &str,
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
                // A git source's checksum only checks the commit it resolved to, which the
                // key has already: adding one keeps the step cached, as in BuildKit
                // (testAddGitChecksumCache). A download's is part of what it asks for.
                let git_only = !copy.remote.is_empty()
                    && copy
                        .remote
                        .iter()
                        .all(|r| matches!(r, RemoteSource::Git(_)));
                let checksum = copy.checksum.as_ref().filter(|_| !git_only);
                for (name, value) in [
                    ("chown", copy.chown.as_ref()),
                    ("chmod", copy.chmod.as_ref()),
                    ("checksum", checksum),
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
                match self.sources.source_key(&copy.from)? {
                    Some(key) => {
                        other.insert("the stage or image it copies from".into(), key);
                    }
                    None if !copy.sources.is_empty() => {
                        let options = select_options(copy)?;
                        let context = self.context_of(&copy.from)?;
                        let selected = context
                            .select(&copy.sources, &copy.dest, &options, dest_is_dir)
                            .map_err(|e| self.located(step, e))?;
                        for skipped in &selected.skipped {
                            self.reporter.warning(&skipped.to_string());
                        }
                        for src in copy.sources.iter().filter(|s| climbs_above_root(s)) {
                            self.reporter.warning(&format!(
                                "{}:{}: {src} climbs above the build context; as BuildKit \
                                 does, `..` stops at the context's root, so this copies `{}` \
                                 of the context",
                                self.graph.dockerfile.file,
                                step.location.line,
                                crate::context::clean_dest(src).trim_start_matches('/'),
                            ));
                        }
                        // Before the files are read (hashed, then sent), so a user who copied
                        // the whole disk by mistake hears it early.
                        if let Some(warning) = self.context_size_warning(step, &selected) {
                            self.reporter.warning(&warning);
                        }
                        let digest = context.digest(&selected)?;
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
        let limit = self.context_size_warning?;
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
        let network = format!("{:?}", run_network(run, self.network)).to_lowercase();
        other.insert("network".into(), network);
        other.extend(self.run_options.key_entries());
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
        for (i, mount) in run.mounts.iter().enumerate() {
            if let Some(from) = &mount.from
                && matches!(mount.kind, MountKind::Bind | MountKind::Cache)
            {
                let from = CopyFrom::named(self.graph, from);
                if let Some(key) = self.sources.source_key(&from)? {
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

    /// The remote sources' part of a step's key: content (and `Last-Modified`) of a
    /// download, commit of a git source; named by URL so a miss says which one changed.
    fn remote_inputs(&self, copy: &CopyStep, inputs: &mut KeyInputs) -> anyhow::Result<()> {
        for (i, source) in copy.remote.iter().enumerate() {
            let resolved = self.sources.remote_key(source)?;
            inputs
                .other
                .insert(format!("remote source {i}"), format!("{source:?}"));
            inputs.files.insert(source.display(), resolved);
        }
        Ok(())
    }

    /// Where the step `step` of `stage` was last built from this context and Dockerfile
    /// (see [`cache::step_identity`]), so the next miss can say what changed.
    pub fn identity(&self, stage: &str, step: usize) -> String {
        cache::step_identity(
            self.context.root(),
            &self.graph.dockerfile.file,
            stage,
            step,
        )
    }

    /// The step's position for imported caches (see [`cache::remote::position`]).
    pub fn position(&self, stage: &str, step: usize) -> String {
        cache::remote::position(&self.graph.dockerfile.file, stage, step)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;

    use super::*;
    use crate::engine::RunOptions;

    static NO_LOCAL_CONTEXTS: std::collections::BTreeMap<String, Context> =
        std::collections::BTreeMap::new();

    static NO_RUN_OPTIONS: RunOptions = RunOptions {
        extra_hosts: Vec::new(),
        shm_size: None,
        ulimits: Vec::new(),
        proxy_env: Vec::new(),
    };
    use crate::frontend::{instructions, parse_dockerfile, stages};
    use crate::oci::Platform;
    use crate::plan::dispatch::{ImageConfig, StagePlan, dispatch_stage};

    /// Stage keys as a running build would know them.
    struct Built {
        stage_key: String,
    }

    impl Sources for Built {
        fn source_key(&self, from: &CopyFrom) -> anyhow::Result<Option<String>> {
            Ok(match from {
                CopyFrom::Context | CopyFrom::Local(_) => None,
                CopyFrom::Stage(_) => Some(self.stage_key.clone()),
                CopyFrom::Image(name) => Some(format!("digest of {name}")),
            })
        }

        fn remote_key(&self, source: &RemoteSource) -> anyhow::Result<String> {
            Ok(format!("resolved {}", source.display()))
        }
    }

    #[derive(Default)]
    struct Warnings(Mutex<Vec<String>>);

    impl Reporter for Warnings {
        fn warning(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_owned());
        }
    }

    fn graph(dockerfile: &str) -> BuildGraph {
        let ast = parse_dockerfile("Dockerfile", dockerfile.as_bytes()).unwrap();
        let dockerfile = instructions::from_ast("Dockerfile", &ast).unwrap();
        stages::resolve(
            dockerfile,
            &Default::default(),
            None,
            &Platform::linux_amd64(),
        )
        .unwrap()
    }

    fn plan(graph: &BuildGraph, stage: usize) -> StagePlan {
        dispatch_stage(graph, stage, &ImageConfig::default(), &[]).unwrap()
    }

    fn write(root: &Path, files: &[(&str, &str)]) {
        for (path, data) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
    }

    /// The key maker of a build of `graph` in `context` with the default network and run
    /// options.
    fn keys_with<'a>(
        graph: &'a BuildGraph,
        context: &'a Context,
        sources: &'a dyn Sources,
        reporter: &'a dyn Reporter,
    ) -> Keys<'a> {
        Keys {
            graph,
            context,
            local_contexts: &NO_LOCAL_CONTEXTS,
            network: Network::Default,
            run_options: &NO_RUN_OPTIONS,
            context_size_warning: None,
            sources,
            reporter,
        }
    }

    /// Each step's key of `stage`, chained from `root`.
    fn stage_keys(keys: &Keys<'_>, plan: &StagePlan, result: StepResult) -> Vec<String> {
        let mut parent = "root".to_owned();
        plan.steps
            .iter()
            .map(|step| {
                let prepared = keys.prepare(step, result, &parent, &|_| false).unwrap();
                parent = prepared.inputs.key();
                parent.clone()
            })
            .collect()
    }

    #[test]
    fn a_git_sources_checksum_is_not_part_of_its_key_and_a_downloads_is() {
        let dir = tempfile::tempdir().unwrap();
        let reporter = Warnings::default();
        let sources = Built {
            stage_key: String::new(),
        };
        let key = |dockerfile: &str| {
            let graph = graph(dockerfile);
            let plan = plan(&graph, 0);
            let context = Context::open(dir.path()).unwrap();
            let keys = keys_with(&graph, &context, &sources, &reporter);
            stage_keys(&keys, &plan, StepResult::Layer)
        };
        let commit = "a".repeat(40);
        let git = "ADD --keep-git-dir https://example.com/r.git#v1 /repo\n";
        assert_eq!(
            key(&format!("FROM scratch\n{git}")),
            key(&format!(
                "FROM scratch\n{}",
                git.replace("ADD ", &format!("ADD --checksum={commit} "))
            ))
        );
        let sum = format!("sha256:{}", "b".repeat(64));
        let http = "ADD https://example.com/f /f\n";
        assert_ne!(
            key(&format!("FROM scratch\n{http}")),
            key(&format!(
                "FROM scratch\n{}",
                http.replace("ADD ", &format!("ADD --checksum={sum} "))
            ))
        );
    }

    const DEPS_THEN_SOURCE: &str =
        "FROM scratch\nCOPY mix.lock /app/\nRUN deps\nCOPY src /app/src\nRUN build\n";

    #[test]
    fn a_changed_source_file_misses_only_from_its_copy_on() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[("mix.lock", "v1"), ("src/main.ex", "a")]);
        let graph = graph(DEPS_THEN_SOURCE);
        let plan = plan(&graph, 0);
        let reporter = Warnings::default();
        let sources = Built {
            stage_key: String::new(),
        };
        let keys_now = || {
            let context = Context::open(dir.path()).unwrap();
            let keys = keys_with(&graph, &context, &sources, &reporter);
            stage_keys(&keys, &plan, StepResult::Layer)
        };
        let before = keys_now();
        assert_eq!(before, keys_now(), "keys are stable");
        write(dir.path(), &[("src/main.ex", "b")]);
        let source_changed = keys_now();
        assert_eq!(source_changed[..2], before[..2]);
        assert_ne!(source_changed[2], before[2]);
        assert_ne!(source_changed[3], before[3]);
        write(dir.path(), &[("mix.lock", "v2")]);
        let lock_changed = keys_now();
        assert!(
            lock_changed
                .iter()
                .zip(&source_changed)
                .all(|(a, b)| a != b)
        );
        assert!(reporter.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_run_is_keyed_on_its_network_and_on_what_its_result_is() {
        let dir = tempfile::tempdir().unwrap();
        let graph = graph("FROM scratch\nRUN a\nRUN --network=none b\n");
        let plan = plan(&graph, 0);
        let context = Context::open(dir.path()).unwrap();
        let reporter = Warnings::default();
        let sources = Built {
            stage_key: String::new(),
        };
        let with_host = RunOptions {
            extra_hosts: vec![crate::engine::ExtraHost {
                name: "db".into(),
                ip: "10.0.0.2".parse().unwrap(),
            }],
            ..RunOptions::default()
        };
        let keys_with = |network, run_options| Keys {
            graph: &graph,
            context: &context,
            local_contexts: &NO_LOCAL_CONTEXTS,
            network,
            run_options,
            context_size_warning: None,
            sources: &sources,
            reporter: &reporter,
        };
        let keys = |network| keys_with(network, &NO_RUN_OPTIONS);
        let key = |network, step: usize, result| {
            keys(network)
                .prepare(&plan.steps[step], result, "root", &|_| false)
                .unwrap()
                .inputs
                .key()
        };
        // --add-host (and --shm-size, --ulimit) reach every RUN's key.
        let with_host_key = keys_with(Network::Default, &with_host)
            .prepare(&plan.steps[0], StepResult::Layer, "root", &|_| false)
            .unwrap()
            .inputs
            .key();
        assert_ne!(with_host_key, key(Network::Default, 0, StepResult::Layer));
        let image = StepResult::EngineImage;
        assert_ne!(
            key(Network::Default, 0, image),
            key(Network::Host, 0, image)
        );
        assert_eq!(
            key(Network::Default, 1, image),
            key(Network::Host, 1, image)
        );
        assert_ne!(
            key(Network::Default, 0, image),
            key(Network::Default, 0, StepResult::Layer)
        );
    }

    #[test]
    fn copy_from_a_stage_is_keyed_on_the_stage_not_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let graph =
            graph("FROM scratch AS build\nRUN make\nFROM scratch\nCOPY --from=build /out /app\n");
        let plan = plan(&graph, 1);
        let context = Context::open(dir.path()).unwrap();
        let reporter = Warnings::default();
        let key = |stage_key: &str| {
            let sources = Built {
                stage_key: stage_key.to_owned(),
            };
            let keys = keys_with(&graph, &context, &sources, &reporter);
            let prepared = keys
                .prepare(&plan.steps[0], StepResult::Layer, "root", &|_| false)
                .unwrap();
            assert!(prepared.selection.is_none());
            prepared.inputs.key()
        };
        assert_eq!(key("sha256:1"), key("sha256:1"));
        assert_ne!(key("sha256:1"), key("sha256:2"));
    }

    #[test]
    fn a_missing_context_file_is_the_users_error_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let graph = graph("FROM scratch\n\nCOPY missing.txt /app/\n");
        let plan = plan(&graph, 0);
        let context = Context::open(dir.path()).unwrap();
        let reporter = Warnings::default();
        let sources = Built {
            stage_key: String::new(),
        };
        let keys = keys_with(&graph, &context, &sources, &reporter);
        let Err(err) = keys.prepare(&plan.steps[0], StepResult::Layer, "root", &|_| false) else {
            panic!("a missing file was keyed");
        };
        let input = err.downcast_ref::<InputError>().expect("an input error");
        assert!(input.to_string().starts_with("Dockerfile:3: "), "{input}");
        assert!(input.to_string().contains("missing.txt"), "{input}");
    }
}
