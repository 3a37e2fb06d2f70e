//! Elixir releases without a Dockerfile (`fixtures/mix-zero-config`,
//! `fixtures/phoenix-shaped`), `imgbuild init`, and the release checks of `imgbuild check`:
//! each check on a fixture that makes its mistake, the toolchain/runtime mismatch
//! (`fixtures/runtime-mismatch`) shown to be real by running the image. Built on the base
//! images of `base-images/`, run in the real engine.

mod base_common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use base_common::{
    BaseImages, bare_base_image, base_images, copy_checkout, docker, docker_ok, env, imgbuild_bin,
    repo, serve_release, summary_digest, tempdir, unique_name,
};

fn bases() -> &'static BaseImages {
    static BASES: OnceLock<BaseImages> = OnceLock::new();
    BASES.get_or_init(base_images)
}

/// A fresh copy of a fixture, as a clone would have it.
fn fixture(name: &str) -> tempfile::TempDir {
    let dir = tempdir();
    copy_checkout(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name),
        dir.path(),
    );
    dir
}

/// `imgbuild ARGS` with the test engine and `cache` as the cache dir.
fn imgbuild(cache: &Path, args: &[&str]) -> Output {
    Command::new(imgbuild_bin())
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .env("DOCKER_HOST", &env().docker_host)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("imgbuild runs")
}

/// The zero-config flags that point at the test's base images.
fn image_flags() -> [String; 4] {
    let bases = bases();
    [
        "--builder-image".into(),
        bases.toolchain.clone(),
        "--runner-image".into(),
        bases.slim.clone(),
    ]
}

/// `imgbuild build --network host ARGS DIR`, which must succeed; its stderr.
fn build_ok(cache: &Path, dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["build", "--progress", "plain", "--network", "host"];
    all.extend_from_slice(args);
    all.push(dir.to_str().unwrap());
    let out = imgbuild(cache, &all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "imgbuild failed ({}):\n{stderr}",
        out.status
    );
    stderr
}

/// [`build_ok`] of a Mix project without a Dockerfile, on the test's base images.
fn build_zero_config(cache: &Path, dir: &Path, args: &[&str]) -> String {
    let flags = image_flags();
    let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    build_ok(cache, dir, &all)
}

/// `imgbuild init [image flags] ARGS DIR`.
fn init(dir: &Path, extra: &[&str]) -> Output {
    Command::new(imgbuild_bin())
        .arg("init")
        .args(image_flags())
        .args(extra)
        .arg(dir)
        .output()
        .expect("imgbuild runs")
}

/// `imgbuild check --network host ARGS DIR`: exit code, stdout (the findings), stderr.
fn check(cache: &Path, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["check", "--progress", "plain", "--network", "host"];
    all.extend_from_slice(args);
    all.push(dir.to_str().unwrap());
    let out = imgbuild(cache, &all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether the plain progress shows the step whose line contains `instruction` as cached.
fn step_cached(stderr: &str, instruction: &str) -> bool {
    let id = stderr
        .lines()
        .find(|l| l.starts_with('#') && l.contains(instruction) && l.contains(']'))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no step `{instruction}` in:\n{stderr}"));
    stderr.lines().any(|l| l == format!("{id} CACHED"))
}

#[test]
fn a_mix_project_without_a_dockerfile_builds_a_release_that_serves_as_nobody_and_migrates() {
    let project = fixture("mix-zero-config");
    let cache = tempdir();
    let tag = unique_name("zero-config").to_lowercase();
    let first = build_zero_config(cache.path(), project.path(), &["-t", &tag]);
    assert!(
        first.contains("no Dockerfile: building the Mix project's release"),
        "{first}"
    );
    assert!(
        !first.contains("WARNING"),
        "the clean fixture warns:\n{first}"
    );

    let (body, uid) = serve_release(&tag, "/", &[]);
    assert_eq!(body, "hello from greeter\n");
    assert!(
        uid.split_whitespace().skip(1).all(|id| id == "65534"),
        "pid 1 runs as {uid}"
    );
    let user = docker_ok(["run", "--rm", &tag, "id", "-un"]);
    assert_eq!(user.trim(), "nobody");
    let migrated = docker_ok([
        "run",
        "--rm",
        "--network",
        "none",
        &tag,
        "/app/bin/greeter",
        "eval",
        "Greeter.Release.migrate()",
    ]);
    assert_eq!(
        migrated.trim(),
        "migrate: greeter has no database; nothing to migrate"
    );

    // The same inputs give the same image; every step is cached.
    let again = build_zero_config(cache.path(), project.path(), &["-t", &tag]);
    assert_eq!(summary_digest(&again), summary_digest(&first));
    assert!(again.contains("cache    13 of 13 steps cached"), "{again}");

    // A code change runs the compile and release again, never the dependency steps.
    std::fs::write(
        project.path().join("lib/greeter/extra.ex"),
        "defmodule Greeter.Extra do\n  def answer, do: 42\nend\n",
    )
    .unwrap();
    let changed = build_zero_config(cache.path(), project.path(), &["-t", &tag]);
    for step in ["RUN mix deps.get", "RUN mix deps.compile"] {
        assert!(step_cached(&changed, step), "{step} ran again:\n{changed}");
    }
    for step in ["COPY lib lib", "RUN mix compile", "RUN mix release"] {
        assert!(
            !step_cached(&changed, step),
            "{step} was cached:\n{changed}"
        );
    }
    assert_ne!(summary_digest(&changed), summary_digest(&first));

    // Its checks find nothing.
    let flags = image_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (code, findings, stderr) = check(cache.path(), project.path(), &flags);
    assert_eq!((code, findings.as_str()), (0, ""), "{stderr}");
    docker_ok(["rmi", tag.as_str()]);
}

#[test]
fn init_writes_the_dockerfile_that_gives_the_zero_config_digest() {
    let zero_config = fixture("mix-zero-config");
    let owned = fixture("mix-zero-config");
    // Separate cache dirs: the digests agree because the builds do, not the cache.
    let (cache_a, cache_b) = (tempdir(), tempdir());
    // `imgbuild .` exactly, its images named by imgbuild.toml.
    std::fs::write(
        zero_config.path().join("imgbuild.toml"),
        format!(
            "builder-image = \"{}\"\nrunner-image = \"{}\"\n",
            bases().toolchain,
            bases().slim
        ),
    )
    .unwrap();
    let expected = summary_digest(&build_ok(
        cache_a.path(),
        zero_config.path(),
        &["--output", "type=cacheonly"],
    ));

    let out = init(owned.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dockerfile = std::fs::read_to_string(owned.path().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("USER nobody\n"), "{dockerfile}");
    assert!(
        dockerfile.contains(&format!("FROM {} AS build\n", bases().toolchain)),
        "{dockerfile}"
    );
    // The conformance case mix-zero-config-release builds this Dockerfile with BuildKit
    // and imgbuild: it must stay what init writes.
    let case = repo().join("tests/conformance/build/cases/mix-zero-config-release/Dockerfile");
    assert!(
        dockerfile
            .replace(&bases().toolchain, "@ELIXIR@")
            .replace(&bases().slim, "@SLIM@")
            == std::fs::read_to_string(&case).unwrap(),
        "{} is no longer the Dockerfile `imgbuild init` writes; write it again:\n{dockerfile}",
        case.display()
    );
    let built = build_ok(
        cache_b.path(),
        owned.path(),
        &["--output", "type=cacheonly"],
    );
    assert!(!built.contains("no Dockerfile"), "{built}");
    assert_eq!(summary_digest(&built), expected);

    // An existing Dockerfile is not replaced unless asked.
    let again = init(owned.path(), &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let forced = init(owned.path(), &["--force"]);
    assert!(forced.status.success());
    // And a directory without mix.exs is an input error.
    let empty = tempdir();
    let none = init(empty.path(), &[]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("has no mix.exs"));
}

#[test]
fn a_phoenix_shaped_project_builds_its_assets_and_serves() {
    let project = fixture("phoenix-shaped");
    let cache = tempdir();
    let tag = unique_name("phoenix-shaped").to_lowercase();
    let stderr = build_zero_config(cache.path(), project.path(), &["-t", &tag]);
    assert!(stderr.contains("RUN mix assets.deploy"), "{stderr}");
    assert!(!stderr.contains("WARNING"), "{stderr}");
    // Phoenix's runtime.exs serves only with PHX_SERVER, which the image sets.
    let (css, _) = serve_release(&tag, "/assets/app.css", &[]);
    let source = std::fs::read_to_string(project.path().join("assets/app.css")).unwrap();
    assert_eq!(css, source);
    let (body, _) = serve_release(&tag, "/", &[]);
    assert_eq!(body, "hello from shop\n");
    docker_ok(["rmi", tag.as_str()]);
}

/// A fixture that makes one mistake: a copy of a zero-config fixture with the Dockerfile
/// `imgbuild init` writes, and one edit.
struct Mistake {
    id: &'static str,
    fixture: &'static str,
    /// The file edited, and the edit.
    file: &'static str,
    edit: fn(&str) -> String,
    /// Where the finding must point: the file, and the line holding this text.
    at_file: &'static str,
    at_line_with: &'static str,
}

fn mistakes() -> Vec<Mistake> {
    vec![
        Mistake {
            id: "CompileTimeSecret",
            fixture: "mix-zero-config",
            file: "config/config.exs",
            edit: |text| {
                format!("{text}config :greeter, api_key: System.get_env(\"GREETER_API_KEY\")\n")
            },
            at_file: "config/config.exs",
            at_line_with: "GREETER_API_KEY",
        },
        Mistake {
            id: "RandomReleaseCookie",
            fixture: "mix-zero-config",
            file: "mix.exs",
            edit: |text| {
                text.lines()
                    .filter(|l| !l.trim_start().starts_with("cookie:"))
                    .map(|l| format!("{l}\n"))
                    .collect()
            },
            at_file: "mix.exs",
            at_line_with: "releases:",
        },
        Mistake {
            id: "RunsAsRoot",
            fixture: "mix-zero-config",
            file: "Dockerfile",
            edit: |text| text.replace("USER nobody\n", ""),
            at_file: "Dockerfile",
            at_line_with: "bookworm-slim",
        },
        Mistake {
            id: "NoUtf8Locale",
            fixture: "mix-zero-config",
            file: "Dockerfile",
            // A locale the runtime image does not have (it has en_US and C.UTF-8).
            edit: |text| {
                text.replace(
                    "LANG=C.UTF-8 LC_ALL=C.UTF-8",
                    "LANG=en_GB.UTF-8 LC_ALL=en_GB.UTF-8",
                )
            },
            at_file: "Dockerfile",
            at_line_with: "en_GB.UTF-8",
        },
        Mistake {
            id: "PhoenixServerOff",
            fixture: "phoenix-shaped",
            file: "Dockerfile",
            edit: |text| text.replace(" PHX_SERVER=true", ""),
            at_file: "config/runtime.exs",
            at_line_with: "if System.get_env(\"PHX_SERVER\")",
        },
        Mistake {
            id: "SecretsUsedInArgOrEnv",
            fixture: "mix-zero-config",
            file: "Dockerfile",
            edit: |text| {
                text.replace(
                    "ENV MIX_ENV=prod\n",
                    "ENV MIX_ENV=prod\nARG HEX_API_TOKEN\n",
                )
            },
            at_file: "Dockerfile",
            at_line_with: "ARG HEX_API_TOKEN",
        },
    ]
}

/// 1-based number of the first line of `path` that contains `text`.
fn line_with(path: &Path, text: &str) -> usize {
    let content = std::fs::read_to_string(path).unwrap();
    content
        .lines()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no `{text}` in {}:\n{content}", path.display()))
        + 1
}

#[test]
fn each_check_fires_on_its_fixture_at_its_line_and_check_skip_silences_it() {
    let cache = tempdir();
    // The clean fixtures first: silent, and their steps fill the cache the others share.
    let clean = fixture("mix-zero-config");
    let flags = image_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (code, findings, stderr) = check(cache.path(), clean.path(), &flags);
    assert_eq!((code, findings.as_str()), (0, ""), "{stderr}");
    let hello = fixture("elixir-hello");
    let builder = format!("BUILDER_IMAGE={}", bases().toolchain);
    let runner = format!("RUNNER_IMAGE={}", bases().slim);
    let args = ["--build-arg", &builder, "--build-arg", &runner];
    let (code, findings, stderr) = check(cache.path(), hello.path(), &args);
    assert_eq!((code, findings.as_str()), (0, ""), "{stderr}");

    let cases: Vec<(Mistake, tempfile::TempDir)> = mistakes()
        .into_iter()
        .map(|mistake| {
            let dir = fixture(mistake.fixture);
            let out = init(dir.path(), &[]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let path = dir.path().join(mistake.file);
            let text = std::fs::read_to_string(&path).unwrap();
            let edited = (mistake.edit)(&text);
            assert_ne!(edited, text, "{}: the edit changed nothing", mistake.id);
            std::fs::write(&path, edited).unwrap();
            (mistake, dir)
        })
        .collect();
    std::thread::scope(|scope| {
        for (mistake, dir) in &cases {
            let cache = cache.path();
            scope.spawn(move || {
                let line = line_with(&dir.path().join(mistake.at_file), mistake.at_line_with);
                let (code, findings, stderr) = check(cache, dir.path(), &[]);
                assert_eq!(code, 1, "{}: exit code\n{findings}\n{stderr}", mistake.id);
                let lines: Vec<&str> = findings.lines().collect();
                assert_eq!(lines.len(), 1, "{}: {findings}", mistake.id);
                let prefix = format!("{}:{line}: ", dir.path().join(mistake.at_file).display());
                assert!(
                    lines[0].starts_with(&prefix)
                        && lines[0].ends_with(&format!("[{}]", mistake.id)),
                    "{}: expected `{prefix}… [{}]`, got {}",
                    mistake.id,
                    mistake.id,
                    lines[0]
                );

                // A build shows the finding as a warning and succeeds.
                let out = imgbuild(
                    cache,
                    &[
                        "build",
                        "--progress",
                        "plain",
                        "--network",
                        "host",
                        "-o",
                        "type=cacheonly",
                        dir.path().to_str().unwrap(),
                    ],
                );
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "{}: {stderr}", mistake.id);
                assert!(
                    stderr.contains(&format!("WARNING: {}", lines[0])),
                    "{}: {stderr}",
                    mistake.id
                );

                // `# check=skip=ID` at the top of the Dockerfile silences it.
                let dockerfile = dir.path().join("Dockerfile");
                let text = std::fs::read_to_string(&dockerfile).unwrap();
                std::fs::write(&dockerfile, format!("# check=skip={}\n{text}", mistake.id))
                    .unwrap();
                let (code, findings, stderr) = check(cache, dir.path(), &[]);
                assert_eq!(
                    (code, findings.as_str()),
                    (0, ""),
                    "{}: {stderr}",
                    mistake.id
                );
            });
        }
    });
}

#[test]
fn the_shared_library_check_finds_what_the_runtime_image_lacks_and_the_image_does_fail() {
    let bare = bare_base_image();
    let project = fixture("runtime-mismatch");
    let cache = tempdir();
    let tag = unique_name("runtime-mismatch").to_lowercase();
    let builder = format!("BUILDER_IMAGE={}", bases().toolchain);
    let runner = format!("RUNNER_IMAGE={bare}");
    let (code, findings, stderr) = check(
        cache.path(),
        project.path(),
        &[
            "--build-arg",
            &builder,
            "--build-arg",
            &runner,
            "--load",
            "-t",
            &tag,
        ],
    );
    assert_eq!(code, 1, "{findings}\n{stderr}");
    let lines: Vec<&str> = findings.lines().collect();
    assert_eq!(lines.len(), 1, "{findings}");
    let finding = lines[0];
    // It points at the runtime stage, where the image (or its packages) must change.
    let at = format!(
        "{}:{}: /app/lib/crypto-",
        project.path().join("Dockerfile").display(),
        line_with(&project.path().join("Dockerfile"), "FROM ${RUNNER_IMAGE}")
    );
    assert!(finding.starts_with(&at), "{at:?}: {finding}");
    assert!(finding.contains("/priv/lib/crypto.so"), "{finding}");
    assert!(
        finding.contains("needs libcrypto.so.3, which the image does not have"),
        "{finding}"
    );
    assert!(
        finding.contains(&format!("built on the image {}", bases().toolchain)),
        "{finding}"
    );
    assert!(finding.ends_with("[MissingSharedLibrary]"), "{finding}");

    // The check does not guess: the image dies at start on the library it named.
    let out = docker([
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "PORT=4000",
        tag.as_str(),
    ]);
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the release started:\n{logs}");
    assert!(
        logs.contains("libcrypto.so.3: cannot open shared object file"),
        "{logs}"
    );
    docker_ok(["rmi", tag.as_str()]);

    // `# check=skip=MissingSharedLibrary` silences it.
    let dockerfile = project.path().join("Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    std::fs::write(
        &dockerfile,
        format!("# check=skip=MissingSharedLibrary\n{text}"),
    )
    .unwrap();
    let (code, findings, stderr) = check(
        cache.path(),
        project.path(),
        &["--build-arg", &builder, "--build-arg", &runner],
    );
    assert_eq!((code, findings.as_str()), (0, ""), "{stderr}");
    std::fs::write(&dockerfile, text).unwrap();

    // On the runtime image that has OpenSSL, the same release passes.
    let slim = format!("RUNNER_IMAGE={}", bases().slim);
    let (code, findings, stderr) = check(
        cache.path(),
        project.path(),
        &["--build-arg", &builder, "--build-arg", &slim],
    );
    assert_eq!((code, findings.as_str()), (0, ""), "{stderr}");
}

/// `--builder-image` without a Mix project, and a Mix project whose versions imgbuild has
/// no default images for, are input errors before anything is built.
#[test]
fn images_for_a_project_that_is_not_zero_config_are_input_errors() {
    let cache = tempdir();
    let hello = fixture("elixir-hello");
    let out = imgbuild(
        cache.path(),
        &[
            "build",
            "--builder-image",
            "x",
            hello.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "--builder-image and --runner-image are for a Mix project without a Dockerfile"
        ),
        "{stderr}"
    );

    let project = fixture("mix-zero-config");
    let mix = project.path().join("mix.exs");
    let text = std::fs::read_to_string(&mix).unwrap();
    std::fs::write(&mix, text.replace("~> 1.14", "~> 1.99")).unwrap();
    let out = imgbuild(cache.path(), &["build", project.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no default images for the Mix project `greeter`"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: give --builder-image"), "{stderr}");
}
