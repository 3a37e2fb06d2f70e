//! `imgbuild base build` refusing what it cannot build, quickly and with exit status 2,
//! before anything is downloaded. The binary runs for real; nothing is mocked.

mod base_common;

use std::process::{Command, Output};

use base_common::{imgbuild_bin, recipe, tempdir};

fn base_build(args: &[&str]) -> Output {
    Command::new(imgbuild_bin())
        .args(["base", "build"])
        .args(args)
        .env("XDG_CACHE_HOME", std::env::temp_dir())
        .output()
        .unwrap()
}

fn assert_input_error(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in:\n{stderr}");
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn a_missing_recipe_is_an_input_error() {
    let dir = tempdir();
    let output = base_build(&[dir.path().join("nope").to_str().unwrap()]);
    assert_input_error(&output, "not a recipe directory");
    let output = base_build(&[dir.path().to_str().unwrap()]);
    assert_input_error(&output, "image.toml");
}

#[test]
fn recipe_errors_name_the_line() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("image.toml"),
        "[debian]\nsuite = \"bookworm\"\npackages = [\"Not A Package\"]\n[image]\ntag = \"x/y:z\"\n",
    )
    .unwrap();
    let output = base_build(&[dir.path().to_str().unwrap()]);
    assert_input_error(
        &output,
        "image.toml:3: `Not A Package` is not a valid package",
    );
}

/// An architecture this machine cannot run (no emulator imgbuild knows; arm64, which
/// `scripts/test-env` registers, is built in tests/platform_emulation.rs).
#[test]
fn an_architecture_this_machine_cannot_run_is_refused() {
    let slim = recipe("bookworm-slim");
    let output = base_build(&[slim.to_str().unwrap(), "--platform", "linux/loong64"]);
    assert_input_error(
        &output,
        "cannot run linux/loong64 programs, which debootstrap runs to make the root file system: imgbuild knows no emulator for the loong64 architecture",
    );
    let output = base_build(&[slim.to_str().unwrap(), "--platform", "linux/arm/v7"]);
    assert_input_error(&output, "without a variant");
}

#[test]
fn push_needs_a_tag() {
    let slim = recipe("bookworm-slim");
    let output = base_build(&[slim.to_str().unwrap(), "--push"]);
    assert_input_error(&output, "--push needs at least one --tag");
}

#[test]
fn without_root_it_says_so() {
    // setpriv (util-linux) drops to nobody for this one process.
    let slim = recipe("bookworm-slim");
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(imgbuild_bin())
        .args(["base", "build", slim.to_str().unwrap()])
        .env("HOME", "/nonexistent")
        .env("XDG_CACHE_HOME", "/tmp/imgbuild-base-cli-nobody")
        .output()
        .unwrap();
    assert_input_error(&output, "must run as root");
}

#[test]
fn a_failing_debootstrap_leaves_nothing_behind() {
    // A real debootstrap against Debian's mirror, which stops at the unknown package
    // once it has the package lists.
    let recipe = tempdir();
    std::fs::write(
        recipe.path().join("image.toml"),
        "[debian]\nsuite = \"bookworm\"\npackages = [\"imgbuild-no-such-package\"]\n\
         [image]\ntag = \"imgbuild-test/broken:1\"\n",
    )
    .unwrap();
    let cache = tempdir();
    let out = tempdir();
    let output = Command::new(imgbuild_bin())
        .args(["base", "build"])
        .arg(recipe.path())
        .arg("--output")
        .arg(format!(
            "type=oci,dest={}",
            out.path().join("image").display()
        ))
        .args(["--progress", "plain"])
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("imgbuild-no-such-package"), "{stderr}");
    assert!(
        stderr.contains("error: debootstrap of bookworm"),
        "{stderr}"
    );
    let builds = cache.path().join("imgbuild/base-build");
    let left: Vec<_> = std::fs::read_dir(&builds).unwrap().collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        builds.display()
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(cache.path().to_str().unwrap()),
        "still mounted:\n{mounts}"
    );
    assert!(!out.path().join("image").exists());
}
