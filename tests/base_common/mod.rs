//! Shared by the base image tests (`mod base_common;`): the base images, built once per
//! machine and test run by `scripts/base-images` (which skips images the registry already
//! has from the same recipe and builder, and serialises concurrent callers with a lock).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../support/mod.rs"]
mod support;
pub use support::*;

/// The base images in the test registry, ready to pull.
#[derive(Debug, Clone)]
pub struct BaseImages {
    pub slim: String,
    pub toolchain: String,
}

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn recipe(name: &str) -> PathBuf {
    repo().join("base-images").join(name)
}

/// Builds (or finds) both base images in the test registry with this test build's
/// imgbuild binary, and pulls them into the engine.
pub fn base_images() -> BaseImages {
    recipes_in_registry(&[]);
    let registry = &env().registry;
    let images = BaseImages {
        slim: format!("{registry}/imgbuild/bookworm-slim:bookworm"),
        toolchain: format!("{registry}/imgbuild/elixir-toolchain:bookworm"),
    };
    for image in [&images.slim, &images.toolchain] {
        docker_ok(["pull", "-q", image.as_str()]);
    }
    images
}

/// `base-images/bookworm-slim` alone in the test registry (not the toolchain), as a FROM
/// line names it.
pub fn slim_base_image() -> String {
    recipes_in_registry(&["bookworm-slim"]);
    format!("{}/imgbuild/bookworm-slim:bookworm", env().registry)
}

/// `base-images/bookworm-bare` (Debian minbase without OpenSSL: the runtime base of the
/// toolchain/runtime mismatch fixture) in the test registry, as a FROM line names it.
pub fn bare_base_image() -> String {
    recipes_in_registry(&["bookworm-bare"]);
    format!("{}/imgbuild/bookworm-bare:bookworm", env().registry)
}

/// `base-images/go-toolchain` (Debian's Go, which cross-compiles for any GOARCH) in the
/// test registry, as a FROM line names it.
pub fn go_toolchain_image() -> String {
    recipes_in_registry(&["go-toolchain"]);
    format!("{}/imgbuild/go-toolchain:bookworm", env().registry)
}

/// Runs `scripts/base-images REGISTRY NAMES…` (no names: the default recipes), which builds
/// what the registry lacks.
fn recipes_in_registry(names: &[&str]) {
    let registry = &env().registry;
    let script = repo().join("scripts/base-images");
    let output = Command::new(&script)
        .arg(registry)
        .args(names)
        .env("IMGBUILD", imgbuild_bin())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "scripts/base-images failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `docker run --rm --network none IMAGE ARGS…`, returning stdout; panics with stderr.
pub fn run_in(image: &str, extra: &[&str], args: &[&str]) -> String {
    let mut all = vec!["run", "--rm", "--network", "none"];
    all.extend_from_slice(extra);
    all.push(image);
    all.extend_from_slice(args);
    docker_ok(all)
}

/// Starts a release image in the background on the host network, serving on a free port
/// (`PORT`), with `env` (`KEY=value`) as well; its container name and port. No Erlang
/// distribution: releases of tests running at once on the host network would share one
/// epmd port, and a node registering with another's epmd fails.
pub fn start_release(image: &str, env: &[&str]) -> (String, u16) {
    let port = free_port();
    let name = unique_name("release");
    let port_env = format!("PORT={port}");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name.as_str(),
        "--network",
        "host",
        "-e",
        port_env.as_str(),
        "-e",
        "RELEASE_DISTRIBUTION=none",
    ];
    for var in env {
        args.extend(["-e", var]);
    }
    args.push(image);
    docker_ok(args);
    (name, port)
}

/// The `Uid:` line of pid 1 in a running container: the server process itself, not a
/// shell exec'd beside it.
pub fn pid1_uids(container: &str) -> String {
    let status = docker_ok(["exec", container, "cat", "/proc/1/status"]);
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default()
        .to_owned()
}

/// A release image's answer to `path` and the uid line of its pid 1 ([`start_release`]);
/// the container is removed.
pub fn serve_release(image: &str, path: &str, env: &[&str]) -> (String, String) {
    let (name, port) = start_release(image, env);
    let body = http_get(port, path, &name);
    let uids = pid1_uids(&name);
    docker_ok(["rm", "-f", name.as_str()]);
    (body, uids)
}
