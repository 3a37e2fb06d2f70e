//! The real-world pattern: `fixtures/phoenix-release`, a Dockerfile of the form
//! `mix phx.gen.release --docker` writes (apt-get and locale-gen in the runner stage,
//! `RUN chown nobody /app` before `USER nobody`, `CMD ["/app/bin/server"]`), built on the
//! base images of `base-images/` with `--network host` (apt-get reaches Debian's mirror).
//! imgbuild's image must run as nobody and answer HTTP, and so must BuildKit's, built
//! from the same file, context and bases (BuildKit is the oracle).

mod base_common;

use std::path::Path;
use std::process::Command;

use base_common::{
    BaseImages, base_images, docker_ok, env, http_get, imgbuild_bin, pid1_uids, start_release,
    unique_name,
};

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/phoenix-release")
}

/// A fresh copy of the fixture, as a clone leaves it.
fn checkout() -> tempfile::TempDir {
    let dir = base_common::tempdir();
    base_common::copy_checkout(&fixture(), dir.path());
    dir
}

fn build_args(bases: &BaseImages) -> [String; 4] {
    [
        "--build-arg".into(),
        format!("BUILDER_IMAGE={}", bases.toolchain),
        "--build-arg".into(),
        format!("RUNNER_IMAGE={}", bases.slim),
    ]
}

fn build_with_imgbuild(bases: &BaseImages, tag: &str) {
    let context = checkout();
    let cache = base_common::tempdir();
    let out = Command::new(imgbuild_bin())
        .args([
            "build",
            "--progress",
            "plain",
            "--network",
            "host",
            "-t",
            tag,
        ])
        .arg("--cache-dir")
        .arg(cache.path())
        .args(build_args(bases))
        .arg(context.path())
        .env("DOCKER_HOST", &env().docker_host)
        .env("HOME", cache.path())
        .output()
        .expect("imgbuild runs");
    assert!(
        out.status.success(),
        "imgbuild failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build_with_buildkit(bases: &BaseImages, tag: &str) {
    let context = checkout();
    let out = Command::new(base_common::DOCKER_CLI)
        .args(["build", "--network", "host", "-t", tag])
        .args(build_args(bases))
        .arg(context.path())
        .env("DOCKER_HOST", &env().docker_host)
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .expect("docker build runs");
    assert!(
        out.status.success(),
        "BuildKit failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The image's configured user, the uid of its server process and of a shell run in
/// the container, and its HTTP answers; then the image is removed.
fn check_runs_as_nobody_and_serves(image: &str) {
    let user = docker_ok(["image", "inspect", image, "--format", "{{.Config.User}}"]);
    assert_eq!(user.trim(), "nobody", "{image}: Config.User");
    let cmd = docker_ok([
        "image",
        "inspect",
        image,
        "--format",
        "{{json .Config.Cmd}}",
    ]);
    assert_eq!(cmd.trim(), r#"["/app/bin/server"]"#, "{image}: Config.Cmd");

    let (name, port) = start_release(image, &[]);
    assert_eq!(http_get(port, "/", &name), "hello from phoenix-release\n");
    assert_eq!(
        http_get(port, "/robots.txt", &name),
        "User-agent: *\nDisallow:\n"
    );

    let id = docker_ok(["exec", name.as_str(), "id", "-u"]);
    assert_eq!(id.trim(), "65534", "{image}: id -u in the container");
    // The server itself (pid 1 is bin/server's exec of the release), not only the shell.
    let uids = pid1_uids(&name);
    assert!(
        uids.split_whitespace().skip(1).all(|id| id == "65534"),
        "{image}: pid 1 {uids}"
    );
    // `RUN chown nobody /app` ran as root, before USER nobody: the app dir is nobody's.
    let owner = docker_ok(["exec", name.as_str(), "stat", "-c", "%U:%G %a", "/app"]);
    assert_eq!(owner.trim(), "nobody:root 755", "{image}: /app");
    docker_ok(["rm", "-f", name.as_str()]);
    docker_ok(["rmi", image]);
}

#[test]
fn imgbuild_builds_the_release_and_it_serves_as_nobody() {
    let bases = base_images();
    let tag = unique_name("phoenix-release-imgbuild");
    build_with_imgbuild(&bases, &tag);
    check_runs_as_nobody_and_serves(&tag);
}

#[test]
fn buildkit_builds_the_same_fixture_and_it_serves_as_nobody() {
    let bases = base_images();
    let tag = unique_name("phoenix-release-buildkit");
    build_with_buildkit(&bases, &tag);
    check_runs_as_nobody_and_serves(&tag);
}
