//! Helpers shared by the `tests/engine_*.rs` integration tests (each declares `mod support;`
//! and `mod engine_common;`). Everything runs against the real test engine.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use imgbuild::engine::{Container, Engine, EngineAddress, OutputStream, Result, RunSpec};

use crate::support;

/// A connection to the test engine.
pub async fn engine() -> Engine {
    let host = &support::env().docker_host;
    let address = EngineAddress::parse(Some(host))
        .unwrap_or_else(|e| panic!("the test engine's address {host} is refused: {e}"));
    Engine::connect_to(address)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test engine: {e}"))
}

pub fn busybox() -> String {
    support::env().busybox_image.clone()
}

/// Runs `spec`, collecting every output line with its stream.
pub async fn run_collecting(
    engine: &Engine,
    spec: &RunSpec,
) -> (Result<Container>, Vec<(OutputStream, String)>) {
    let mut lines = Vec::new();
    let result = engine
        .run(spec, &mut |line| {
            lines.push((line.stream, line.text.to_owned()))
        })
        .await;
    (result, lines)
}

/// Runs `spec`, which must succeed, removes its container and returns its stdout lines.
pub async fn stdout_of(engine: &Engine, spec: &RunSpec) -> Vec<String> {
    let (result, lines) = run_collecting(engine, spec).await;
    let container = result.unwrap_or_else(|e| panic!("{:?} failed: {e}", spec.argv));
    engine
        .remove(container)
        .await
        .unwrap_or_else(|e| panic!("remove the container of {:?}: {e}", spec.argv));
    lines
        .into_iter()
        .filter(|(stream, _)| *stream == OutputStream::Stdout)
        .map(|(_, text)| text)
        .collect()
}

/// `sh -c SCRIPT MARKER`: the marker becomes `$0`, so the container's command line carries
/// it and [`containers_with`] finds the container whatever happened to the test's handles.
pub fn script(image: &str, script: &str, marker: &str) -> RunSpec {
    RunSpec::new(image, ["sh", "-c", script, marker])
}

/// The ids of the containers (in any state) whose command line contains `marker`.
pub fn containers_with(marker: &str) -> Vec<String> {
    support::docker_ok(["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"])
        .lines()
        .filter(|line| line.contains(marker))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

pub fn container_exists(name_or_id: &str) -> bool {
    support::docker(["container", "inspect", name_or_id])
        .status
        .success()
}

/// `docker image inspect --format FORMAT IMAGE`, trimmed.
pub fn inspect_image(image: &str, format: &str) -> String {
    support::docker_ok(["image", "inspect", "--format", format, image])
        .trim()
        .to_owned()
}

/// Removes an image (an id: with all its tags; a reference: that tag) when dropped, so a
/// test that fails midway leaves nothing behind in the shared engine.
pub struct RemoveImageOnDrop(pub String);

impl Drop for RemoveImageOnDrop {
    fn drop(&mut self) {
        // Usually removed already by the test itself.
        let _ = support::docker(["rmi", "-f", &self.0]);
    }
}
