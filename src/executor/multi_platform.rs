//! `--platform a,b`: one build per platform, then an OCI index over their images.
//!
//! Each platform's image is built by the same code as a single-platform build
//! ([`super::prepare`], [`super::Builder::make_image`]), with its own `TARGETPLATFORM`,
//! its FROM images pulled for it, and its steps keyed by it, so a stage that does not
//! depend on the platform (a `FROM --platform=$BUILDPLATFORM` build stage whose inputs are
//! the same) is a cache hit for the second platform. Nothing is published until every platform is built: then the
//! index goes to each output at once, and one cache export holds the steps of all.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{BuildResult, MadeImage, prepare};
use crate::oci::PlatformIndex;
use crate::progress::{Ids, Outcome, Reporter, VertexId};
use crate::publish::{self, Recorder, SinkDeps};
use crate::request::BuildRequest;

/// Builds every platform of `request`, then publishes the index.
pub(super) async fn build(
    request: BuildRequest,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<BuildResult> {
    let started = Instant::now();
    let multi = request
        .publish
        .multi_platform
        .clone()
        .ok_or_else(|| anyhow::anyhow!("a multi-platform build without platforms"))?;
    // Every platform is prepared before any runs: a refusal for the second platform
    // (a base without it, a RUN with no emulator for it) comes before the first's steps.
    let ids = Arc::new(Ids::default());
    let mut prepared = Vec::with_capacity(multi.images.len());
    for (n, (platform, _)) in multi.images.iter().enumerate() {
        let publish = request
            .publish
            .for_platform(n)
            .ok_or_else(|| anyhow::anyhow!("no request for {platform}"))?;
        let engine = request.engine_for.get(platform).cloned();
        let one = BuildRequest {
            executor: match engine {
                // A platform built on an engine of its own runs its steps there.
                Some(_) => crate::request::ExecutorChoice::Engine,
                None => request.executor,
            },
            engine: engine.or_else(|| request.engine.clone()),
            publish,
            ..request.clone()
        };
        let platform_reporter: Arc<dyn Reporter> = Arc::new(PlatformReporter {
            inner: reporter.clone(),
            platform: platform.to_string(),
        });
        let builder = prepare(one, platform_reporter, ids.clone()).await;
        prepared.push(builder.map_err(|e| for_platform(e, platform))?);
    }
    let mut made: Vec<MadeImage> = Vec::with_capacity(prepared.len());
    for (builder, (platform, _)) in prepared.into_iter().zip(&multi.images) {
        let image = builder.make_image().await;
        made.push(image.map_err(|e| for_platform(e, platform))?);
    }
    let images = multi
        .images
        .iter()
        .zip(&made)
        .map(|((platform, _), m)| (platform.clone(), m.image.clone()))
        .collect();
    let index = Arc::new(PlatformIndex::new(images, &multi.index_annotations)?);
    publish_index(&request, &made, index.clone(), &reporter).await?;
    export_caches(&made).await?;
    let mut findings = Vec::new();
    for m in &mut made {
        for finding in m.finish().await? {
            if !findings.contains(&finding) {
                findings.push(finding);
            }
        }
    }
    let count = |f: fn(&super::Builder) -> usize| made.iter().map(|m| f(&m.builder)).sum();
    let executors = multi
        .images
        .iter()
        .zip(&made)
        .map(|((platform, _), m)| (platform.clone(), m.builder.executor_used()))
        .collect();
    Ok(BuildResult {
        image: made[0].image.clone(),
        digest: index.digest().to_string(),
        // As BuildKit's `--iidfile` for several platforms: the index's digest.
        config_digest: index.digest().to_string(),
        size: index
            .images()
            .iter()
            .flat_map(|(_, image)| image.layers())
            .map(|l| l.size())
            .sum(),
        layers: index
            .images()
            .iter()
            .map(|(_, image)| image.layers().len())
            .sum(),
        cache_hits: count(|b| b.hits.load(Ordering::Relaxed)),
        cache_misses: count(|b| b.misses.load(Ordering::Relaxed)),
        elapsed: started.elapsed(),
        executor: super::ExecutorUsed::of_platforms(executors),
        findings,
    })
}

/// An error of one platform's build says which platform it is.
fn for_platform(e: anyhow::Error, platform: &crate::oci::Platform) -> anyhow::Error {
    e.context(format!("building the {platform} image"))
}

/// Sends the index to every output the request names.
async fn publish_index(
    request: &BuildRequest,
    made: &[MadeImage],
    index: Arc<PlatformIndex>,
    reporter: &Arc<dyn Reporter>,
) -> anyhow::Result<()> {
    let first = &made[0].builder;
    // The image goes to the build's engine, not one that ran a platform's steps.
    let engine = match request.publish.to_engine() {
        true => Some(super::connect(request.engine.as_ref()).await?),
        false => None,
    };
    let deps = SinkDeps {
        engine,
        registry: Some(first.registry.clone()),
        blobs: first.registry_blobs.clone(),
        engine_known_images: made
            .iter()
            .flat_map(|m| m.builder.engine_known_images())
            .collect(),
        scratch: request.cache_dir.clone(),
    };
    let sinks = publish::sinks_for(&request.publish, &deps)?;
    let recorder = Recorder::for_request(&request.publish);
    publish::publish_all(
        &sinks,
        &publish::Product::Index(index),
        &request.publish.tags,
        &recorder,
        reporter,
        &first.ids,
    )
    .await
}

/// One `--cache-to` export holding the steps every platform's build used.
async fn export_caches(made: &[MadeImage]) -> anyhow::Result<()> {
    let mut all: Option<super::remote_cache::PreparedExport> = None;
    for m in made {
        if let Some(prepared) = m.builder.prepare_journal().await? {
            match &mut all {
                Some(all) => all.merge(prepared),
                None => all = Some(prepared),
            }
        }
    }
    match all {
        Some(all) => made[0].builder.export_prepared(&all).await,
        None => Ok(()),
    }
}

/// A platform's build as the progress display shows it: BuildKit's `[linux/arm64 build
/// 2/4]` names, and warnings that say which platform they are about. (The builds share
/// one [`Ids`], so their vertex ids never meet.)
struct PlatformReporter {
    inner: Arc<dyn Reporter>,
    platform: String,
}

impl PlatformReporter {
    fn name(&self, name: &str) -> String {
        match name.strip_prefix('[') {
            Some(rest) => format!("[{} {rest}", self.platform),
            None => format!("[{}] {name}", self.platform),
        }
    }
}

impl Reporter for PlatformReporter {
    fn started(&self, id: VertexId, name: &str) {
        self.inner.started(id, &self.name(name));
    }
    fn cached(&self, id: VertexId, name: &str) {
        self.inner.cached(id, &self.name(name));
    }
    fn log(&self, id: VertexId, line: &str) {
        self.inner.log(id, line);
    }
    fn progress(&self, id: VertexId, done: u64, total: Option<u64>) {
        self.inner.progress(id, done, total);
    }
    fn done(&self, id: VertexId, elapsed: Duration) {
        self.inner.done(id, elapsed);
    }
    fn failed(&self, id: VertexId, elapsed: Duration) {
        self.inner.failed(id, elapsed);
    }
    fn warning(&self, message: &str) {
        self.inner.warning(&format!("{}: {message}", self.platform));
    }
    fn note(&self, message: &str) {
        self.inner.note(&format!("{}: {message}", self.platform));
    }
    fn summary(&self, line: &str) {
        self.inner.summary(line);
    }
    fn outcome(&self, outcome: &Outcome) {
        self.inner.outcome(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Names(Mutex<Vec<(VertexId, String)>>);

    impl Reporter for Names {
        fn started(&self, id: VertexId, name: &str) {
            self.0.lock().unwrap().push((id, name.to_owned()));
        }
        fn warning(&self, message: &str) {
            self.0.lock().unwrap().push((0, message.to_owned()));
        }
    }

    #[test]
    fn a_platform_build_names_its_vertices_as_buildkit_does() {
        let names = Arc::new(Names::default());
        let reporter = PlatformReporter {
            inner: names.clone(),
            platform: "linux/arm64".into(),
        };
        reporter.started(3, "[build 2/4] RUN make");
        reporter.started(4, "exporting to engine");
        reporter.warning("Dockerfile:1: something");
        assert_eq!(
            *names.0.lock().unwrap(),
            vec![
                (3, "[linux/arm64 build 2/4] RUN make".to_string()),
                (4, "[linux/arm64] exporting to engine".to_string()),
                (0, "linux/arm64: Dockerfile:1: something".to_string()),
            ]
        );
    }
}
