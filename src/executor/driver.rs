//! The one step driver: every stage's steps go key → look up → run → record here, whatever
//! runs them. A [`StageBackend`] says how a stage starts, how it takes a cached result, how
//! it runs a step and what the stage becomes: the engine backend (`engine_stage`) commits
//! a container per step, the packaging backend (`package`) writes layers itself. A backend
//! that keeps snapshots instead implements the same trait.
//!
//! The driver owns what every backend shares: the step names progress shows, the cache
//! hit and miss lines, the hit and miss counts, a failed step named with its `file:line`,
//! the step cache records and the journal `--cache-to` exports.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::remote_cache::cache_mount_ids;
use super::{Builder, StageBase};
use crate::cache::remote::{StepKind as CachedKind, UsedResult, UsedStep};
use crate::cache::{KeyInputs, StepRecord};
use crate::context::{Selection, SelectionDigest};
use crate::plan::dispatch::{StagePlan, Step};
use crate::plan::keys::{Prepared, StepResult};
use crate::progress::VertexId;

/// What the caches have for a step, as a backend takes it.
pub(super) enum Found<H> {
    Hit(H),
    /// Why the step has to run.
    Miss(String),
}

/// A step's key inputs, with where it was last built (the miss explanations).
pub(super) struct Keyed {
    pub identity: String,
    pub position: String,
    pub prepared: Prepared,
}

/// The operations the driver needs from whatever runs a stage's steps.
pub(super) trait StageBackend {
    /// What the caches hold for a step, as this backend takes it.
    type Hit;
    /// What running a step left, for [`StageBackend::ran`].
    type Ran;
    /// What the stage becomes.
    type Output;
    /// What a step's result is: part of its key, so one backend never takes another's
    /// result for its own.
    const RESULT: StepResult;
    /// How an exported cache files the steps.
    const KIND: CachedKind;

    /// Starts the stage from its base (`total`: the step count progress shows, the FROM
    /// included); returns the key the first step's key is made on.
    async fn start(&mut self, total: usize) -> anyhow::Result<String>;

    /// Whether `path` is a directory in the filesystem the next step writes into (a COPY's
    /// destination, in its key).
    fn dest_is_dir(&self, path: &str) -> bool;

    /// Whether [`StageBackend::dest_is_dir`] does not depend on the steps before, so every
    /// key can be made before any step runs (and [`StageBackend::ahead`] look at them all).
    fn keys_ahead(&self) -> bool {
        false
    }

    /// With every step's key made: how many leading steps need no look-up at all (an
    /// earlier build's result already covers them). The driver shows them cached and
    /// calls [`StageBackend::resumed`] for each.
    async fn ahead(&mut self, _steps: &[Keyed]) -> anyhow::Result<usize> {
        Ok(0)
    }

    /// Step `n` was covered by [`StageBackend::ahead`].
    fn resumed(&mut self, _step: &Step, _n: usize) {}

    /// Looks a step up in the caches (`identity` and `position`: where it was last built,
    /// to explain a miss).
    async fn look_up(
        &self,
        identity: &str,
        position: &str,
        inputs: &KeyInputs,
    ) -> anyhow::Result<Found<Self::Hit>>;

    /// Continues the stage from a cached result; returns what the export records.
    async fn apply(&mut self, step: &Step, hit: Self::Hit) -> anyhow::Result<UsedResult>;

    /// Gets ready to run a step; a failure here is not the step's.
    fn before_run(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Runs step `n` (`selection`: what a COPY from the context selected for its key).
    async fn run(
        &mut self,
        id: VertexId,
        n: usize,
        step: &Step,
        selection: Option<(Selection, SelectionDigest)>,
    ) -> anyhow::Result<Self::Ran>;

    /// After a step ran: the record the step cache keeps and what the export records.
    async fn ran(
        &mut self,
        step: &Step,
        inputs: &KeyInputs,
        ran: Self::Ran,
    ) -> anyhow::Result<(StepRecord, UsedResult)>;

    /// The stage after its last step, whose key is `key`.
    fn finish(self, key: String) -> anyhow::Result<Self::Output>;
}

/// A failed step, named as progress named it, with the backend's error (exit code, last
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
    /// Runs the steps of stage `index` with `backend`.
    pub(super) async fn drive<B: StageBackend>(
        &self,
        index: usize,
        plan: &StagePlan,
        mut backend: B,
    ) -> anyhow::Result<B::Output> {
        let total =
            plan.steps.len() + usize::from(matches!(self.stage_base(index), StageBase::Image(_)));
        let first = total - plan.steps.len();
        let target = index == self.graph.target;
        let mut key = backend.start(total).await?;
        let keys = self.keys();
        let keyed = |backend: &B, n: usize, step: &Step, parent: &str| {
            anyhow::Ok(Keyed {
                identity: keys.identity(&plan.name, n),
                position: keys.position(&plan.name, n),
                prepared: keys.prepare(step, B::RESULT, parent, &|p| backend.dest_is_dir(p))?,
            })
        };
        // A stage `--no-cache-filter` names runs every step; what it gives replaces what the
        // cache held, and later stages may still come from the cache.
        let uncached = self.no_cache_filter(plan.stage);
        let mut ahead = Vec::new();
        let mut skip = 0;
        if backend.keys_ahead() && uncached.is_none() {
            let mut parent = key.clone();
            for (n, step) in plan.steps.iter().enumerate() {
                let step = keyed(&backend, n, step, &parent)?;
                parent = step.prepared.inputs.key();
                ahead.push(step);
            }
            skip = backend.ahead(&ahead).await?;
        }
        let mut ahead = ahead.into_iter();
        for (n, step) in plan.steps.iter().enumerate() {
            let name = self.step_name(plan, first + n + 1, total, &step.display);
            let Keyed {
                identity,
                position,
                prepared,
            } = match ahead.next() {
                Some(keyed) => keyed,
                None => keyed(&backend, n, step, &key)?,
            };
            let Prepared { inputs, selection } = prepared;
            let step_key = inputs.key();
            let id = self.ids.next();
            if n < skip {
                self.reporter.cached(id, &name);
                self.hits.fetch_add(1, Ordering::Relaxed);
                backend.resumed(step, n);
                key = step_key;
                continue;
            }
            let used = |result| UsedStep {
                key: step_key.clone(),
                inputs: inputs.clone(),
                position: position.clone(),
                kind: B::KIND,
                target,
                result,
                mounts: cache_mount_ids(step),
            };
            let found = match &uncached {
                Some(reason) => Found::Miss(reason.clone()),
                None => backend.look_up(&identity, &position, &inputs).await?,
            };
            let reason = match found {
                Found::Hit(hit) => {
                    self.reporter.cached(id, &name);
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    let result = backend.apply(step, hit).await?;
                    self.record_use(used(result));
                    key = step_key;
                    continue;
                }
                Found::Miss(reason) => reason,
            };
            self.misses.fetch_add(1, Ordering::Relaxed);
            self.reporter.started(id, &name);
            self.reporter.log(id, &format!("cache miss: {reason}"));
            let started = Instant::now();
            backend.before_run()?;
            let ran = match backend.run(id, n, step, selection).await {
                Ok(ran) => ran,
                Err(e) => {
                    self.reporter.failed(id, started.elapsed());
                    let location = format!("{}:{}", self.graph.dockerfile.file, step.location.line);
                    return Err(e.context(StepFailed {
                        step: name,
                        location,
                    }));
                }
            };
            self.reporter.done(id, started.elapsed());
            let (record, result) = backend.ran(step, &inputs, ran).await?;
            self.remember(&identity, &record);
            self.record_use(used(result));
            key = step_key;
        }
        if uncached.is_some() {
            key = crate::plan::keys::rerun_key(&key);
        }
        backend.finish(key)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::cache::StepCache;
    use crate::context::Context;
    use crate::frontend::DockerfileSource;
    use crate::oci;
    use crate::progress::Reporter;
    use crate::publish::PublishRequest;
    use crate::registry::{self, Credentials, RegistryOptions};
    use crate::request::BuildRequest;

    /// Every event, as a line.
    #[derive(Default)]
    struct Events(Mutex<Vec<String>>);

    impl Events {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl Reporter for Events {
        fn started(&self, _id: VertexId, name: &str) {
            self.0.lock().unwrap().push(format!("started {name}"));
        }
        fn cached(&self, _id: VertexId, name: &str) {
            self.0.lock().unwrap().push(format!("cached {name}"));
        }
        fn log(&self, _id: VertexId, line: &str) {
            self.0.lock().unwrap().push(format!("log {line}"));
        }
        fn done(&self, _id: VertexId, _elapsed: std::time::Duration) {
            self.0.lock().unwrap().push("done".into());
        }
        fn failed(&self, _id: VertexId, _elapsed: std::time::Duration) {
            self.0.lock().unwrap().push("failed".into());
        }
    }

    /// A builder of `dockerfile` in `dir` (context and cache dir), without engine or
    /// registry: the fake backend below needs neither.
    fn builder(dir: &Path, dockerfile: &str, reporter: Arc<Events>) -> Builder {
        std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
        let cache_dir = dir.join("cache");
        let publish = PublishRequest {
            tags: Vec::new(),
            outputs: Vec::new(),
            push: false,
            compression: oci::Compression::Gzip,
            source_date_epoch: 0,
            iidfile: None,
            metadata_file: None,
            registry: RegistryOptions::default(),
            platform: oci::Platform::linux_amd64(),
            progress: crate::progress::Mode::Plain,
            annotations: Default::default(),
            multi_platform: None,
            platform_asked: false,
        };
        let request = BuildRequest {
            context: dir.to_owned(),
            dockerignore: true,
            context_owners: false,
            build_contexts: BTreeMap::new(),
            ssh: BTreeMap::new(),
            run_options: Default::default(),
            dockerfile: DockerfileSource::Path(dir.join("Dockerfile")),
            target: None,
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            network: crate::engine::Network::Default,
            allow: Default::default(),
            no_cache: false,
            no_cache_filter: Default::default(),
            cache_dir: cache_dir.clone(),
            secrets: BTreeMap::new(),
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            label_from_git: false,
            context_size_warning: None,
            executor: crate::request::ExecutorChoice::Engine,
            engine: None,
            engine_for: BTreeMap::new(),
            pull: false,
            publish,
        };
        let graph = crate::frontend::load(
            &request.dockerfile,
            &request.build_args,
            None,
            &request.publish.platform,
            &request.build_contexts,
        )
        .unwrap();
        let registry_blobs = registry::BlobStore::open(&cache_dir).unwrap();
        let oci_blobs = registry_blobs.blobs().clone();
        Builder {
            context: Context::open(dir).unwrap(),
            local_contexts: Default::default(),
            cache: StepCache::open(&cache_dir).unwrap(),
            registry: Arc::new(
                registry::Client::new(&RegistryOptions::default(), Credentials::anonymous())
                    .unwrap(),
            ),
            fetcher: crate::fetch::Fetcher::new(&cache_dir, oci_blobs.clone()).unwrap(),
            request,
            graph,
            reporter,
            ids: Arc::default(),
            oci_blobs,
            registry_blobs,
            engine: None,
            image_engine: None,
            pulled: HashMap::new(),
            pulled_platforms: HashMap::new(),
            stages: Mutex::new(HashMap::new()),
            plans: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
            remote: Default::default(),
            journal: Mutex::new(Vec::new()),
            restored_mounts: tokio::sync::Mutex::new(Default::default()),
            native: None,
            engine_preload: None,
            target_fs: Default::default(),
        }
    }

    /// A backend that runs nothing: it records what the driver asks of it, looks steps up
    /// in the builder's step cache, and fails the step whose display is `fail`.
    struct Fake<'a> {
        builder: &'a Builder,
        skip: Option<usize>,
        fail: Option<&'static str>,
        calls: Vec<String>,
    }

    impl StageBackend for Fake<'_> {
        type Hit = ();
        type Ran = ();
        type Output = (String, Vec<String>);
        const RESULT: StepResult = StepResult::Layer;
        const KIND: CachedKind = CachedKind::Package;

        async fn start(&mut self, total: usize) -> anyhow::Result<String> {
            self.calls.push(format!("start {total}"));
            Ok("base".into())
        }

        fn dest_is_dir(&self, _path: &str) -> bool {
            false
        }

        fn keys_ahead(&self) -> bool {
            self.skip.is_some()
        }

        async fn ahead(&mut self, steps: &[Keyed]) -> anyhow::Result<usize> {
            self.calls.push(format!("ahead {}", steps.len()));
            Ok(self.skip.unwrap_or(0))
        }

        fn resumed(&mut self, step: &Step, _n: usize) {
            self.calls.push(format!("resumed {}", step.display));
        }

        async fn look_up(
            &self,
            identity: &str,
            position: &str,
            inputs: &KeyInputs,
        ) -> anyhow::Result<Found<()>> {
            Ok(match self.builder.lookup(identity, position, inputs) {
                super::super::steps::Lookup::Hit(_) => Found::Hit(()),
                super::super::steps::Lookup::Miss { reason } => Found::Miss(reason),
            })
        }

        async fn apply(&mut self, step: &Step, (): ()) -> anyhow::Result<UsedResult> {
            self.calls.push(format!("apply {}", step.display));
            Ok(UsedResult::Layer(None))
        }

        async fn run(
            &mut self,
            _id: VertexId,
            n: usize,
            step: &Step,
            _selection: Option<(Selection, SelectionDigest)>,
        ) -> anyhow::Result<()> {
            self.calls.push(format!("run {n} {}", step.display));
            match self.fail {
                Some(fail) if fail == step.display => anyhow::bail!("exit code 1"),
                _ => Ok(()),
            }
        }

        async fn ran(
            &mut self,
            _step: &Step,
            inputs: &KeyInputs,
            (): (),
        ) -> anyhow::Result<(StepRecord, UsedResult)> {
            let record = StepRecord {
                key: inputs.key(),
                inputs: inputs.clone(),
                image: None,
                layer: None,
                adds_layer: None,
                snapshot: None,
            };
            Ok((record, UsedResult::Layer(None)))
        }

        fn finish(self, key: String) -> anyhow::Result<(String, Vec<String>)> {
            Ok((key, self.calls))
        }
    }

    fn fake(builder: &Builder) -> Fake<'_> {
        Fake {
            builder,
            skip: None,
            fail: None,
            calls: Vec::new(),
        }
    }

    const DOCKERFILE: &str = "FROM scratch\nWORKDIR /a\nWORKDIR /b\n";

    fn drive(builder: &Builder, backend: Fake<'_>) -> anyhow::Result<(String, Vec<String>)> {
        let plan =
            crate::plan::dispatch::dispatch_stage(&builder.graph, 0, &Default::default(), &[])?;
        tokio::runtime::Builder::new_current_thread()
            .build()?
            .block_on(builder.drive(0, &plan, backend))
    }

    #[test]
    fn a_miss_runs_and_records_and_the_next_build_hits() {
        let dir = tempfile::tempdir().unwrap();
        let events = Arc::new(Events::default());
        let b = builder(dir.path(), DOCKERFILE, events.clone());
        let (first_key, calls) = drive(&b, fake(&b)).unwrap();
        assert_eq!(calls, ["start 2", "run 0 WORKDIR /a", "run 1 WORKDIR /b"]);
        let shown = events.take();
        assert_eq!(shown.len(), 6, "{shown:?}");
        assert_eq!(shown[0], "started [1/2] WORKDIR /a");
        assert!(shown[1].starts_with("log cache miss: "), "{shown:?}");
        assert_eq!(shown[2], "done");
        assert_eq!(shown[3], "started [2/2] WORKDIR /b");
        assert_eq!(b.misses.load(Ordering::Relaxed), 2);

        let b = builder(dir.path(), DOCKERFILE, events.clone());
        let (key, calls) = drive(&b, fake(&b)).unwrap();
        assert_eq!(key, first_key, "the same steps give the same keys");
        assert_eq!(calls, ["start 2", "apply WORKDIR /a", "apply WORKDIR /b"]);
        assert_eq!(
            events.take(),
            ["cached [1/2] WORKDIR /a", "cached [2/2] WORKDIR /b"]
        );
        assert_eq!(b.hits.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_failed_step_is_named_where_the_dockerfile_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let events = Arc::new(Events::default());
        let b = builder(dir.path(), DOCKERFILE, events.clone());
        let backend = Fake {
            fail: Some("WORKDIR /b"),
            ..fake(&b)
        };
        let err = drive(&b, backend).unwrap_err();
        let failed = err.downcast_ref::<StepFailed>().expect("a StepFailed");
        let file = dir.path().join("Dockerfile").display().to_string();
        assert_eq!(
            failed.to_string(),
            format!("{file}:3: [2/2] WORKDIR /b failed")
        );
        assert_eq!(
            format!("{:#}", err).rsplit(": ").next(),
            Some("exit code 1")
        );
        assert_eq!(events.take().last().map(String::as_str), Some("failed"));
        // The step before it was recorded: it is a hit now, the failed one still runs.
        let b = builder(dir.path(), DOCKERFILE, events.clone());
        let (_, calls) = drive(&b, fake(&b)).unwrap();
        assert_eq!(calls, ["start 2", "apply WORKDIR /a", "run 1 WORKDIR /b"]);
    }

    #[test]
    fn steps_a_backend_resumes_past_are_cached_without_a_look_up() {
        let dir = tempfile::tempdir().unwrap();
        let events = Arc::new(Events::default());
        let b = builder(dir.path(), DOCKERFILE, events.clone());
        let backend = Fake {
            skip: Some(1),
            ..fake(&b)
        };
        let (key, calls) = drive(&b, backend).unwrap();
        assert_eq!(
            calls,
            [
                "start 2",
                "ahead 2",
                "resumed WORKDIR /a",
                "run 1 WORKDIR /b"
            ]
        );
        assert_eq!(events.take()[0], "cached [1/2] WORKDIR /a");
        // Keys made ahead are the keys made step by step.
        let b = builder(dir.path(), DOCKERFILE, events.clone());
        let (again, _) = drive(&b, fake(&b)).unwrap();
        assert_eq!(key, again);
    }
}
