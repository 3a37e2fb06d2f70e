//! Loading the final image's base into the engine while the stages run.
//!
//! An engine that lacks the base image's layers (a fresh CI runner's) had them sent with
//! the final image: on the Elixir showcase, 2.7 s of a 13 s build spent after the last
//! step. Loaded alongside the steps instead, the final load sends only the layers built on
//! top. BuildKit gets the same overlap by pulling the base into the engine's store while
//! earlier stages run.
//!
//! The load begins with the first RUN that runs, not at once: before it, a native build is
//! unpacking its toolchain image, as disk-bound as the engine's load, and the two slowed
//! each other down (the Elixir showcase's unpack took 13 s instead of 7 s on the 2-core
//! machine); a RUN is mostly a compiler's CPU time, which the load's writes overlap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use crate::engine::Engine;
use crate::frontend::stages::{Base, BuildGraph};
use crate::oci::Image;
use crate::publish::{layers_engine_has, load_into_engine};

/// The final image's base on its way into the engine (or found there). A load stops if
/// this is dropped unfinished (a failed build).
pub(super) struct EnginePreload {
    /// The engine image id (the config digest) of the base.
    id: String,
    /// The load; `None` when the engine had the base image already.
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Lets the load begin.
    go: Arc<Notify>,
    begun: AtomicBool,
}

/// The base image in the engine, once the preload ended.
pub(super) struct Preloaded {
    pub(super) id: String,
    /// Whether this build loaded it (untagged, only to get its layers in: it is removed once
    /// the final image holds them) rather than finding it there.
    pub(super) loaded: bool,
}

impl EnginePreload {
    /// Starts loading `image`, untagged, unless the engine has it or holds all its layers
    /// already (under one of the `known` images).
    pub(super) async fn start(
        engine: &Engine,
        image: Arc<dyn Image>,
        known: &[String],
    ) -> Option<EnginePreload> {
        let id = image.config_descriptor().digest().to_string();
        let go = Arc::new(Notify::new());
        if engine.find_image(&id).await.ok().flatten().is_some() {
            return Some(EnginePreload {
                id,
                task: None,
                go,
                begun: AtomicBool::new(true),
            });
        }
        let held = layers_engine_has(engine, known, image.as_ref()).await;
        let wanted = image.diff_ids().ok()?;
        if wanted.iter().all(|d| held.contains(d)) {
            return None;
        }
        let engine = engine.clone();
        let wait = go.clone();
        let task = tokio::spawn(async move {
            wait.notified().await;
            load_into_engine(&engine, image, &[], held).await
        });
        Some(EnginePreload {
            id,
            task: Some(task),
            go,
            begun: AtomicBool::new(false),
        })
    }

    /// Lets the load begin (called as a RUN step starts; only the first call counts).
    pub(super) fn begin(&self) {
        if !self.begun.swap(true, Ordering::Relaxed) {
            // A permit is kept if the task is not waiting yet.
            self.go.notify_one();
        }
    }

    /// Waits for the load to end: the base, whose layers the final load may leave out.
    /// `None` when the load failed, or never began (no step ran: one load of the whole
    /// image is quicker than two); the final load then sends every layer, and reports
    /// whatever is wrong with the engine.
    pub(super) async fn finish(mut self) -> Option<Preloaded> {
        if !self.begun.load(Ordering::Relaxed) {
            return None;
        }
        let loaded = match self.task.as_mut() {
            None => false,
            Some(task) => match task.await {
                Ok(Ok(())) => true,
                _ => return None,
            },
        };
        Some(Preloaded {
            id: self.id.clone(),
            loaded,
        })
    }
}

impl Drop for EnginePreload {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The image the target stage's chain starts from (the base of its first stage), when
/// loading it early is worth it: the engine executor loads the FROM images of the stages
/// it runs itself, so with it only a packaged target (no RUN) whose base no build stage
/// shares is preloaded.
pub(super) fn preloadable_base(graph: &BuildGraph, native: bool) -> Option<&str> {
    let mut index = graph.target;
    loop {
        match &graph.stages[index].base {
            Base::Stage(i) => index = *i,
            Base::Scratch => return None,
            Base::Image(name) => {
                if native {
                    return Some(name);
                }
                let packaged = index == graph.target && !super::target_runs(graph);
                let shared = graph.needed.iter().any(|&i| {
                    i != graph.target
                        && matches!(&graph.stages[i].base, Base::Image(other) if other == name)
                });
                return (packaged && !shared).then_some(name.as_str());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(dockerfile: &str) -> BuildGraph {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Dockerfile");
        std::fs::write(&path, dockerfile).unwrap();
        crate::frontend::load(
            &crate::request::DockerfileSource::Path(path),
            &Default::default(),
            None,
            &crate::oci::Platform::linux_amd64(),
            &Default::default(),
        )
        .unwrap()
    }

    const RELEASE: &str =
        "FROM toolchain AS build\nRUN make\nFROM runner\nCOPY --from=build /out /app\n";

    #[test]
    fn the_packaged_targets_base_is_preloaded_with_either_executor() {
        let g = graph(RELEASE);
        assert_eq!(preloadable_base(&g, true), Some("runner"));
        assert_eq!(preloadable_base(&g, false), Some("runner"));
    }

    #[test]
    fn a_target_on_a_stage_preloads_the_chains_image_only_natively() {
        // The engine executor loads `base` itself to run the first stage's RUN.
        let g = graph("FROM base AS deps\nRUN make\nFROM deps\nCOPY a /a\n");
        assert_eq!(preloadable_base(&g, true), Some("base"));
        assert_eq!(preloadable_base(&g, false), None);
    }

    #[test]
    fn the_engine_executor_preloads_no_image_it_loads_for_a_step() {
        // A RUN in the target, or a build stage on the same image: the engine executor
        // loads the image for that step anyway.
        let runs = graph("FROM runner\nRUN true\n");
        assert_eq!(preloadable_base(&runs, false), None);
        assert_eq!(preloadable_base(&runs, true), Some("runner"));
        let shared = graph("FROM img AS build\nRUN make\nFROM img\nCOPY --from=build /out /app\n");
        assert_eq!(preloadable_base(&shared, false), None);
        assert_eq!(preloadable_base(&shared, true), Some("img"));
    }

    #[test]
    fn scratch_has_nothing_to_preload() {
        let g =
            graph("FROM toolchain AS build\nRUN make\nFROM scratch\nCOPY --from=build /out /app\n");
        assert_eq!(preloadable_base(&g, true), None);
        assert_eq!(preloadable_base(&g, false), None);
    }
}
