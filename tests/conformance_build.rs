//! Differential conformance against BuildKit: every case under
//! `tests/conformance/build/cases/` is built with `DOCKER_BUILDKIT=1 docker build` and with
//! imgbuild, on the same engine, bases and context, and the two images must agree file by
//! file (type, mode, owner, size, content, link target, hard links; never mtimes) and in
//! their run-time config. Each case runs twice: as written ("direct": imgbuild writes a
//! RUN-less target stage itself) and with `RUN true` appended ("engine": the same steps run
//! in the executor); imgbuild's two results must agree with each other too. A case whose
//! target stage has a RUN already runs it in the executor as written: it has only the
//! direct variant.
//!
//! imgbuild builds each variant with both executors (`--executor native` and `engine`; the
//! environment variable `IMGBUILD_CONFORMANCE_EXECUTORS=native,engine` narrows them), and
//! each result is held to BuildKit's; the two executors must also give the same image
//! digest.
//!
//! Deliberate differences are listed, with their reason, in
//! `tests/conformance/build/differences.toml`, and only there. A case's `case.toml` may name
//! an open bug as `known_divergence`: that trial passes only while the divergence shows.
//! See README.md, "Conformance against BuildKit", for the case format.

// The harness reports known divergences and timings on the terminal, like libtest does.
#![allow(clippy::print_stdout)]

mod base_common;
#[path = "conformance_support/image.rs"]
mod image;
#[path = "support/ssh_agent.rs"]
mod ssh_agent;
#[path = "support/static_http.rs"]
mod static_http;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use base_common::{busybox_in_registry, docker, env, imgbuild, repo, tempdir, unique_name};
use image::{Image, Tree};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;

/// How many differences a failure lists before it only counts the rest.
const SHOWN_DIFFERENCES: usize = 40;
/// How many lines of a failed build's output a failure shows.
const LOG_TAIL: usize = 30;

fn main() {
    let arguments = Arguments::from_args();
    let mut trials = vec![
        Trial::test("differences-file", || {
            check_differences_file().map_err(Failed::from)
        }),
        Trial::test("cases-well-formed", || check_cases().map_err(Failed::from)),
        Trial::test("glob-match", || check_glob_match().map_err(Failed::from)),
        Trial::test("target-stage-runs", || {
            check_target_stage_runs().map_err(Failed::from)
        }),
        Trial::test("static-http", || check_static_http().map_err(Failed::from)),
        Trial::test("config-compare", || {
            check_config_compare().map_err(Failed::from)
        }),
        Trial::test("output-local-and-tar", || {
            check_filesystem_outputs().map_err(Failed::from)
        }),
        Trial::test("context-git", || check_git_context().map_err(Failed::from)),
    ];
    trials.extend(image::self_tests().into_iter().map(|(name, test)| {
        Trial::test(format!("flatten-{name}"), move || {
            test().map_err(Failed::from)
        })
    }));
    for name in case_names() {
        trials.push(Trial::test(name.clone(), move || run_case(&name)));
    }
    libtest_mimic::run(&arguments, trials).exit();
}

fn cases_dir() -> PathBuf {
    repo().join("tests/conformance/build/cases")
}

fn differences_path() -> PathBuf {
    repo().join("tests/conformance/build/differences.toml")
}

/// The case directories, by name: adding a case is adding a directory.
fn case_names() -> Vec<String> {
    let dir = cases_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list the cases in {}: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `case.toml`; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseToml {
    /// `--target`; the target stage must be the last stage (the engine variant appends to it).
    target: Option<String>,
    #[serde(default)]
    build_args: Vec<String>,
    /// `--secret` specs; `src=` is relative to the build context.
    #[serde(default)]
    secrets: Vec<String>,
    /// More flags for both builders, as they are (`--add-host`, `--shm-size`, `--ulimit`).
    #[serde(default)]
    flags: Vec<String>,
    /// Start an ssh-agent holding a new key for the case; both builders get it as
    /// `SSH_AUTH_SOCK` (for `flags = ["--ssh", "default"]`).
    #[serde(default)]
    ssh_agent: bool,
    /// `"fail"`: BuildKit fails the build, and imgbuild must fail too (exit 1 or 2).
    expect: Option<String>,
    /// `false` only when the target has no `/bin/sh` to run `RUN true` (with `why`).
    engine_variant: Option<bool>,
    why: Option<String>,
    /// An open bug: the trial passes only while imgbuild still diverges.
    known_divergence: Option<String>,
    /// The context on standard input (`docker build -`): `"tar"` or `"tar.gz"` (the context
    /// with the variant's Dockerfile at its root, named by `-f` inside the tar), or
    /// `"dockerfile"` (the Dockerfile itself; the case has no context).
    stdin: Option<String>,
    /// Where the local BuildKit v0.8 differs from current BuildKit, and which one the case
    /// follows.
    #[allow(dead_code)]
    note: Option<String>,
}

/// One deliberate difference between imgbuild and BuildKit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Difference {
    case: String,
    /// An absolute path, or a glob (`*`, `?` within a component, `**` across them);
    /// `config` for config fields.
    path: String,
    field: String,
    reason: String,
    /// `direct` or `engine`; both when absent.
    variant: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DifferencesFile {
    #[serde(default)]
    difference: Vec<Difference>,
}

const FS_FIELDS: [&str; 8] = [
    "presence",
    "type",
    "mode",
    "owner",
    "size",
    "content",
    "link",
    "hardlinks",
];
const CONFIG_FIELDS: [&str; 12] = [
    "Env",
    "Cmd",
    "Entrypoint",
    "User",
    "WorkingDir",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
];

fn load_differences() -> Result<Vec<Difference>, String> {
    let path = differences_path();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: DifferencesFile =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file.difference)
}

/// The differences file names existing cases, known fields and a reason for each entry.
fn check_differences_file() -> Result<(), String> {
    let cases: BTreeSet<String> = case_names().into_iter().collect();
    let mut problems = Vec::new();
    for d in load_differences()? {
        let at = format!(
            "difference (case {}, path {}, field {})",
            d.case, d.path, d.field
        );
        if !cases.contains(&d.case) {
            problems.push(format!("{at}: no case directory {}", d.case));
        }
        let config = d.path == "config";
        if !config && !d.path.starts_with('/') {
            problems.push(format!("{at}: path must be absolute, or `config`"));
        }
        let known = if config {
            CONFIG_FIELDS.contains(&d.field.as_str())
        } else {
            FS_FIELDS.contains(&d.field.as_str())
        };
        if !known {
            problems.push(format!(
                "{at}: unknown field; file fields: {}; config fields: {}",
                FS_FIELDS.join(", "),
                CONFIG_FIELDS.join(", ")
            ));
        }
        if d.reason.trim().is_empty() {
            problems.push(format!("{at}: the reason is empty"));
        }
        if d.variant
            .as_deref()
            .is_some_and(|v| v != "direct" && v != "engine")
        {
            problems.push(format!("{at}: variant must be `direct` or `engine`"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// A base image the cases may build on, with its diff_ids (whose flattened tree is kept).
struct Base {
    reference: String,
    diff_ids: Vec<String>,
}

fn diff_ids_in_engine(reference: &str) -> Result<Vec<String>, String> {
    let inspect = || {
        docker([
            "image",
            "inspect",
            "-f",
            "{{json .RootFS.Layers}}",
            reference,
        ])
    };
    let mut output = inspect();
    if !output.status.success() {
        let pull = docker(["pull", "-q", reference]);
        if !pull.status.success() {
            return Err(format!(
                "docker pull {reference}: {}",
                String::from_utf8_lossy(&pull.stderr)
            ));
        }
        output = inspect();
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "docker image inspect {reference}: {e}: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// bookworm-slim in the test registry, made by `scripts/base-images` if it is missing
/// (only this image: the toolchain is not needed here).
fn slim() -> Result<&'static Base, String> {
    static SLIM: OnceLock<Result<Base, String>> = OnceLock::new();
    registry_base(&SLIM, base_common::slim_base_image)
}

/// An image the support code pushes to the test registry, as a case's base: made once
/// per run in `cell`, with its layers' diff IDs as the engine has them.
fn registry_base(
    cell: &'static OnceLock<Result<Base, String>>,
    push: fn() -> String,
) -> Result<&'static Base, String> {
    cell.get_or_init(|| {
        let reference = push();
        let diff_ids = diff_ids_in_engine(&reference)?;
        Ok(Base {
            reference,
            diff_ids,
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The Elixir toolchain (`base-images/elixir-toolchain`), for cases that build a release.
fn elixir_toolchain() -> Result<&'static Base, String> {
    static ELIXIR: OnceLock<Result<Base, String>> = OnceLock::new();
    registry_base(&ELIXIR, || base_common::base_images().toolchain)
}

/// The arm64 busybox image (`support::busybox_arm64_in_registry`), for cases whose RUN
/// steps run under binfmt_misc emulation.
fn busybox_arm64() -> Result<&'static Base, String> {
    static BUSYBOX_ARM64: OnceLock<Result<Base, String>> = OnceLock::new();
    registry_base(&BUSYBOX_ARM64, base_common::busybox_arm64_in_registry)
}

/// The busybox index of linux/amd64 and linux/arm64 (`support::busybox_multi_in_registry`),
/// for cases built with `--platform`.
fn busybox_multi() -> Result<&'static Base, String> {
    static BUSYBOX_MULTI: OnceLock<Result<Base, String>> = OnceLock::new();
    registry_base(&BUSYBOX_MULTI, base_common::busybox_multi_in_registry)
}

fn busybox() -> Result<&'static Base, String> {
    static BUSYBOX: OnceLock<Result<Base, String>> = OnceLock::new();
    registry_base(&BUSYBOX, busybox_in_registry)
}

/// Where flattened base trees are kept between runs, keyed by their diff_ids.
fn base_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-base-trees")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Direct,
    Engine,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Direct => "direct",
            Variant::Engine => "engine",
        }
    }
}

/// Which executor imgbuild builds with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Executor {
    Native,
    Engine,
}

impl Executor {
    fn name(self) -> &'static str {
        match self {
            Executor::Native => "native",
            Executor::Engine => "engine",
        }
    }

    /// The executors to build with: `IMGBUILD_CONFORMANCE_EXECUTORS` (comma-separated), or
    /// both.
    fn selected() -> Vec<Executor> {
        let wanted = std::env::var("IMGBUILD_CONFORMANCE_EXECUTORS")
            .unwrap_or_else(|_| "native,engine".to_owned());
        let chosen: Vec<Executor> = [Executor::Native, Executor::Engine]
            .into_iter()
            .filter(|e| wanted.split(',').any(|w| w.trim() == e.name()))
            .collect();
        assert!(
            !chosen.is_empty(),
            "IMGBUILD_CONFORMANCE_EXECUTORS={wanted}: name native, engine or both"
        );
        chosen
    }
}

/// What one build gave.
enum Built {
    /// A Docker archive of the image.
    Image(PathBuf),
    /// The build failed: its exit code and the tail of its output.
    Failed { code: Option<i32>, log: String },
}

/// Everything one case needs to build, prepared in its own temporary directory.
struct Prepared {
    dir: tempfile::TempDir,
    context: PathBuf,
    case: CaseToml,
    variants: Vec<Variant>,
    bases: Vec<Vec<String>>,
    // Serves the case's `serve/` for `@HTTP@` until the case ends.
    _server: Option<static_http::StaticServer>,
    /// The case's ssh-agent (`ssh_agent = true`), stopped when the case ends.
    ssh_agent: Option<ssh_agent::SshAgent>,
}

impl Prepared {
    fn dockerfile(&self, variant: Variant) -> PathBuf {
        self.dir
            .path()
            .join(format!("Dockerfile.{}", variant.name()))
    }

    /// The tar a `stdin = "tar"` case sends for `variant`.
    fn stdin_tar(&self, variant: Variant, kind: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("stdin-{}.{kind}", variant.name()))
    }

    /// What names the Dockerfile and the context on the command line, and the file that
    /// goes to standard input: the same for both builders.
    fn source_args(&self, variant: Variant) -> (Vec<std::ffi::OsString>, Option<PathBuf>) {
        let dockerfile = self.dockerfile(variant);
        match self.case.stdin.as_deref() {
            None => {
                let args = vec!["-f".into(), dockerfile.into(), self.context.clone().into()];
                (args, None)
            }
            Some("dockerfile") => (vec!["-".into()], Some(dockerfile)),
            Some(kind) => {
                let name = dockerfile.file_name().unwrap().to_owned();
                let args = vec!["-f".into(), name, "-".into()];
                (args, Some(self.stdin_tar(variant, kind)))
            }
        }
    }

    /// For a `stdin = "tar"` case, makes each variant's tar: the context and, at its root,
    /// the variant's Dockerfile, modes, owners and links as `setup.sh` made them.
    fn make_stdin_tars(&self) -> Result<(), String> {
        let Some(kind) = self.case.stdin.as_deref().filter(|k| k.starts_with("tar")) else {
            return Ok(());
        };
        for &variant in &self.variants {
            let dockerfile = self.dockerfile(variant);
            let staged = self.dir.path().join(format!("stdin-{}", variant.name()));
            run_tool(Command::new("cp").arg("-a").arg(&self.context).arg(&staged))?;
            std::fs::copy(&dockerfile, staged.join(dockerfile.file_name().unwrap()))
                .map_err(|e| e.to_string())?;
            let compress = if kind == "tar.gz" { "-czf" } else { "-cf" };
            run_tool(
                Command::new("tar")
                    .arg("-C")
                    .arg(&staged)
                    .arg(compress)
                    .arg(self.stdin_tar(variant, kind))
                    .arg("."),
            )?;
        }
        Ok(())
    }
}

/// Runs a helper program of the harness (`cp`, `tar`), failing with its message.
fn run_tool(command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `command` with `stdin` (a file) as its standard input, when there is one, and the
/// case's ssh-agent (none otherwise: the caller's agent stays out of the case).
fn output_with_stdin(
    command: &mut Command,
    stdin: Option<&Path>,
    prepared: &Prepared,
) -> Result<std::process::Output, String> {
    match &prepared.ssh_agent {
        Some(agent) => command.env("SSH_AUTH_SOCK", agent.socket()),
        None => command.env_remove("SSH_AUTH_SOCK"),
    };
    if let Some(path) = stdin {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        command.stdin(file);
    }
    command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))
}

fn run_case(name: &str) -> Result<(), Failed> {
    let started = Instant::now();
    let prepared = prepare(name).map_err(|e| format!("case {name}: {e}"))?;
    let expect_fail = prepared.case.expect.as_deref() == Some("fail");
    let executors = Executor::selected();
    let (buildkit, imgbuild) = std::thread::scope(|scope| {
        let buildkit = scope.spawn(|| {
            prepared
                .variants
                .iter()
                .map(|&v| build_with_buildkit(name, &prepared, v))
                .collect::<Vec<_>>()
        });
        let imgbuild: Vec<Vec<_>> = prepared
            .variants
            .iter()
            .map(|&v| {
                executors
                    .iter()
                    .map(|&e| (e, build_with_imgbuild(&prepared, v, e)))
                    .collect()
            })
            .collect();
        (buildkit.join(), imgbuild)
    });
    let buildkit = buildkit.map_err(|_| format!("case {name}: the BuildKit thread panicked"))?;
    let mut problems = Vec::new();
    let mut observed = Vec::new();
    let mut built = Vec::new();
    for ((variant, bk), ibs) in prepared.variants.iter().zip(buildkit).zip(imgbuild) {
        let bk = bk.map_err(|e| format!("case {name}, variant {}: {e}", variant.name()))?;
        let bk_image = match (&bk, expect_fail) {
            (Built::Image(_), true) => {
                return Err(format!(
                    "case {name}, variant {}: case.toml says expect = \"fail\" but BuildKit \
                     built it; fix the case",
                    variant.name()
                )
                .into());
            }
            (Built::Failed { log, .. }, false) => {
                return Err(format!(
                    "case {name}, variant {}: BuildKit failed to build the case, so it checks \
                     nothing; fix the case (or say expect = \"fail\"). BuildKit's output \
                     ends:\n{log}",
                    variant.name()
                )
                .into());
            }
            (Built::Image(archive), false) => Some(read_image(archive, &prepared.bases)?),
            (Built::Failed { .. }, true) => None,
        };
        let mut per_executor = Vec::new();
        for (executor, ib) in ibs {
            let at = format!(
                "case {name}, variant {}, executor {}",
                variant.name(),
                executor.name()
            );
            let ib = ib.map_err(|e| format!("{at}: {e}"))?;
            match (ib, &bk_image) {
                (Built::Failed { code, log }, None) => {
                    if !matches!(code, Some(1 | 2)) || log.contains("panicked at") {
                        problems.push(format!(
                            "{at}: BuildKit fails this build, and imgbuild must fail with exit \
                             1 or 2 (no panic), but it exited {}; its output ends:\n{log}",
                            shown_code(code)
                        ));
                    }
                }
                (Built::Image(_), None) => problems.push(format!(
                    "{at}: BuildKit fails this build, but imgbuild built it"
                )),
                (Built::Failed { code, log }, Some(_)) => problems.push(format!(
                    "{at}: BuildKit built it, but imgbuild failed (exit {}); its output \
                     ends:\n{log}",
                    shown_code(code)
                )),
                (Built::Image(archive), Some(bk_image)) => {
                    let ib = read_image(&archive, &prepared.bases)?;
                    observed.push((*variant, executor, compare(bk_image, &ib)));
                    per_executor.push((executor, config_digest(&archive)?, ib));
                }
            }
        }
        // Both executors run the same plan with the same keys: the same image, to the digest.
        if let [
            (first, first_digest, first_image),
            (second, second_digest, second_image),
        ] = per_executor.as_slice()
        {
            let diffs = compare(first_image, second_image);
            if !diffs.is_empty() || first_digest != second_digest {
                problems.push(format!(
                    "case {name}, variant {}: the {} and {} executors give different images \
                     ({first_digest} and {second_digest}):\n{}",
                    variant.name(),
                    first.name(),
                    second.name(),
                    show_diffs(&diffs, first.name(), second.name())
                ));
            }
        }
        if let (Some(bk_image), Some((_, _, ib))) = (bk_image, per_executor.into_iter().next()) {
            built.push((*variant, bk_image, ib));
        }
    }
    // Deliberate differences explain what they match; one that matches nothing is stale.
    let differences: Vec<Difference> = load_differences()?
        .into_iter()
        .filter(|d| d.case == name)
        .collect();
    for (variant, executor, diffs) in observed {
        let listed: Vec<&Difference> = differences
            .iter()
            .filter(|d| d.variant.as_deref().is_none_or(|v| v == variant.name()))
            .collect();
        let mut used = vec![false; listed.len()];
        let unexplained: Vec<Diff> = diffs
            .into_iter()
            .filter(|diff| {
                let explained = listed.iter().position(|d| diff.is_listed(d));
                if let Some(i) = explained {
                    used[i] = true;
                }
                explained.is_none()
            })
            .collect();
        let at = format!(
            "case {name}, variant {}, executor {}",
            variant.name(),
            executor.name()
        );
        if !unexplained.is_empty() {
            problems.push(format!(
                "{at}: imgbuild differs from BuildKit:\n{}",
                show_diffs(&unexplained, "BuildKit", "imgbuild")
            ));
        }
        for (d, used) in listed.iter().zip(used) {
            if !used {
                problems.push(format!(
                    "{at}: differences.toml lists path {} field {} ({}), but imgbuild and \
                     BuildKit agree there now: remove the entry",
                    d.path, d.field, d.reason
                ));
            }
        }
    }
    if let [
        (Variant::Direct, bk_direct, direct),
        (Variant::Engine, bk_engine, engine),
    ] = built.as_slice()
    {
        // What the appended RUN changes in BuildKit's image (the mount points it leaves on
        // a base without them) it may change in imgbuild's too; nothing else.
        let expected = compare(bk_direct, bk_engine);
        let diffs: Vec<Diff> = compare(direct, engine)
            .into_iter()
            .filter(|d| !expected.contains(d))
            .collect();
        if !diffs.is_empty() {
            problems.push(format!(
                "case {name}: imgbuild's direct and engine results differ:\n{}",
                show_diffs(&diffs, "direct", "engine")
            ));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    match (&prepared.case.known_divergence, problems.is_empty()) {
        (None, true) => Ok(()),
        (None, false) => Err(problems.join("\n\n").into()),
        (Some(bug), false) => {
            println!(
                "case {name}: known divergence ({bug}), still observed ({seconds:.1}s):\n{}",
                problems.join("\n\n")
            );
            Ok(())
        }
        (Some(bug), true) => Err(format!(
            "case {name}: the known divergence \"{bug}\" is no longer observed: imgbuild \
             agrees with BuildKit now; remove known_divergence from its case.toml"
        )
        .into()),
    }
}

/// The config digest (the image ID) of a Docker archive: equal for equal images.
fn config_digest(archive: &Path) -> Result<String, String> {
    let file = std::fs::File::open(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    for entry in tar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        if entry.path_bytes().as_ref() != b"manifest.json" {
            continue;
        }
        let manifest: serde_json::Value =
            serde_json::from_reader(&mut entry).map_err(|e| format!("manifest.json: {e}"))?;
        return manifest[0]["Config"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{}: manifest.json names no Config", archive.display()));
    }
    Err(format!("{}: no manifest.json", archive.display()))
}

fn shown_code(code: Option<i32>) -> String {
    code.map_or_else(|| "by a signal".to_owned(), |c| c.to_string())
}

fn read_image(archive: &Path, bases: &[Vec<String>]) -> Result<Image, String> {
    image::read_docker_archive(archive, bases, &base_cache())
}

/// A case's `case.toml` and Dockerfile, checked for what the format requires.
fn load_case(name: &str) -> Result<(CaseToml, String), String> {
    let case_dir = cases_dir().join(name);
    let case: CaseToml = match std::fs::read_to_string(case_dir.join("case.toml")) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("case.toml: {e}"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CaseToml::default(),
        Err(e) => return Err(format!("case.toml: {e}")),
    };
    match case.expect.as_deref() {
        None | Some("fail") => {}
        Some(other) => return Err(format!("case.toml: expect = {other:?}: only \"fail\"")),
    }
    match case.stdin.as_deref() {
        None | Some("tar" | "tar.gz" | "dockerfile") => {}
        Some(other) => {
            return Err(format!(
                "case.toml: stdin = {other:?}: \"tar\", \"tar.gz\" or \"dockerfile\""
            ));
        }
    }
    let case_dir_has = |name: &str| case_dir.join(name).exists();
    if case.stdin.as_deref() == Some("dockerfile")
        && (case_dir_has("context") || case_dir_has("setup.sh"))
    {
        return Err("case.toml: stdin = \"dockerfile\" takes no context".to_owned());
    }
    if (case.engine_variant == Some(false) || case.expect.is_some()) && case.why.is_none() {
        return Err("case.toml: engine_variant = false and expect need `why`".to_owned());
    }
    let dockerfile = std::fs::read_to_string(case_dir.join("Dockerfile"))
        .map_err(|e| format!("Dockerfile: {e}"))?;
    if dockerfile
        .lines()
        .any(|l| l.trim_start().to_ascii_lowercase().starts_with("# syntax="))
    {
        return Err(
            "the Dockerfile has a `# syntax=` line: BuildKit would pull a front end".to_owned(),
        );
    }
    Ok((case, dockerfile))
}

/// Every case directory is well formed, checked without building anything.
fn check_cases() -> Result<(), String> {
    let problems: Vec<String> = case_names()
        .iter()
        .filter_map(|name| load_case(name).err().map(|e| format!("case {name}: {e}")))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Makes the case's build context, Dockerfiles and HTTP server in a fresh directory.
fn prepare(name: &str) -> Result<Prepared, String> {
    let case_dir = cases_dir().join(name);
    let (case, mut dockerfile) = load_case(name)?;
    let mut bases = Vec::new();
    for (marker, base) in [
        ("@SLIM@", slim as fn() -> _),
        ("@ELIXIR@", elixir_toolchain),
        ("@BUSYBOX@", busybox),
        ("@BUSYBOX_ARM64@", busybox_arm64),
        ("@BUSYBOX_MULTI@", busybox_multi),
    ] {
        if dockerfile.contains(marker) {
            let base = base()?;
            dockerfile = dockerfile.replace(marker, &base.reference);
            bases.push(base.diff_ids.clone());
        }
    }
    let dir = tempdir();
    let context = dir.path().join("context");
    std::fs::create_dir(&context).map_err(|e| format!("{}: {e}", context.display()))?;
    if case_dir.join("context").is_dir() {
        copy_as_git(&case_dir.join("context"), &context)?;
    }
    run_script(&case_dir.join("setup.sh"), &context)?;
    let server = if case_dir.join("serve").is_dir() {
        let served = dir.path().join("serve");
        std::fs::create_dir(&served).map_err(|e| format!("{}: {e}", served.display()))?;
        copy_as_git(&case_dir.join("serve"), &served)?;
        run_script(&case_dir.join("serve.sh"), &served)?;
        let server = static_http::StaticServer::start(&served);
        dockerfile = dockerfile.replace("@HTTP@", &server.url());
        Some(server)
    } else {
        None
    };
    if !dockerfile.ends_with('\n') {
        dockerfile.push('\n');
    }
    let mut variants = vec![Variant::Direct];
    // A target stage with a RUN already runs in the executor as written: appending
    // `RUN true` would build the same path again.
    if case.engine_variant.unwrap_or(true)
        && !target_stage_runs(&dockerfile, case.target.as_deref())
    {
        variants.push(Variant::Engine);
    }
    let ssh_agent = if case.ssh_agent {
        let agent_dir = dir.path().join("ssh-agent");
        std::fs::create_dir(&agent_dir).map_err(|e| e.to_string())?;
        Some(ssh_agent::SshAgent::start(&agent_dir)?)
    } else {
        None
    };
    let prepared = Prepared {
        dir,
        context,
        case,
        variants,
        bases,
        _server: server,
        ssh_agent,
    };
    for &variant in &prepared.variants {
        let text = match variant {
            Variant::Direct => dockerfile.clone(),
            Variant::Engine => format!("{dockerfile}RUN true\n"),
        };
        let path = prepared.dockerfile(variant);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        // The case's own ignore file goes beside each Dockerfile (outside the context), as
        // `Dockerfile.direct.dockerignore` for `-f Dockerfile.direct`.
        let ignore = case_dir.join("Dockerfile.dockerignore");
        if ignore.is_file() {
            let mut beside = path.into_os_string();
            beside.push(".dockerignore");
            std::fs::copy(&ignore, &beside).map_err(|e| format!("{}: {e}", ignore.display()))?;
        }
    }
    prepared.make_stdin_tars()?;
    Ok(prepared)
}

/// Whether the stage a case builds (`target`, else the last) has a RUN instruction. A line
/// scan is enough for the cases' Dockerfiles: instructions start their line, and heredoc
/// bodies are skipped.
fn target_stage_runs(dockerfile: &str, target: Option<&str>) -> bool {
    let mut stages: Vec<(Option<String>, bool)> = Vec::new();
    let mut heredoc_end: Option<String> = None;
    for line in dockerfile.lines() {
        if let Some(end) = &heredoc_end {
            if line.trim() == end {
                heredoc_end = None;
            }
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = words.first() else { continue };
        if let Some(word) = words.iter().find_map(|w| w.strip_prefix("<<")) {
            let word = word
                .trim_start_matches('-')
                .trim_matches(|c| c == '"' || c == '\'');
            if !word.is_empty() {
                heredoc_end = Some(word.to_owned());
            }
        }
        if first.eq_ignore_ascii_case("FROM") {
            let name = match words.as_slice() {
                [.., as_word, name] if as_word.eq_ignore_ascii_case("AS") => {
                    Some(name.to_ascii_lowercase())
                }
                _ => None,
            };
            stages.push((name, false));
        } else if first.eq_ignore_ascii_case("RUN")
            && let Some(stage) = stages.last_mut()
        {
            stage.1 = true;
        }
    }
    let target = target.map(str::to_ascii_lowercase);
    let stage = match target {
        Some(target) => stages
            .iter()
            .find(|(name, _)| name.as_ref() == Some(&target)),
        None => stages.last(),
    };
    stage.is_some_and(|&(_, runs)| runs)
}

/// Copies a case's tree as a git checkout has it: files 0644, or 0755 when executable,
/// directories 0755, symlinks as symlinks.
fn copy_as_git(from: &Path, to: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let error = |path: &Path, e: std::io::Error| format!("{}: {e}", path.display());
    for entry in std::fs::read_dir(from).map_err(|e| error(from, e))? {
        let entry = entry.map_err(|e| error(from, e))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let metadata = std::fs::symlink_metadata(&source).map_err(|e| error(&source, e))?;
        let mode = if metadata.is_symlink() {
            let link = std::fs::read_link(&source).map_err(|e| error(&source, e))?;
            std::os::unix::fs::symlink(link, &target).map_err(|e| error(&target, e))?;
            continue;
        } else if metadata.is_dir() {
            std::fs::create_dir(&target).map_err(|e| error(&target, e))?;
            copy_as_git(&source, &target)?;
            0o755
        } else {
            std::fs::copy(&source, &target).map_err(|e| error(&target, e))?;
            if metadata.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            }
        };
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
            .map_err(|e| error(&target, e))?;
    }
    Ok(())
}

/// Runs `script` (if it exists) with bash in `dir`, under umask 022 whatever the caller's.
fn run_script(script: &Path, dir: &Path) -> Result<(), String> {
    if !script.exists() {
        return Ok(());
    }
    let output = Command::new("bash")
        .args(["-c", "umask 022 && exec bash -e \"$0\""])
        .arg(script)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// `--target`, `--build-arg`, `--secret` (with `src=` made absolute) and the case's other
/// `flags`, the same for both builders.
fn build_flags(prepared: &Prepared) -> Vec<String> {
    let case = &prepared.case;
    let mut flags = Vec::new();
    if let Some(target) = &case.target {
        flags.extend(["--target".to_owned(), target.clone()]);
    }
    for arg in &case.build_args {
        flags.extend(["--build-arg".to_owned(), arg.clone()]);
    }
    for secret in &case.secrets {
        let spec: Vec<String> = secret
            .split(',')
            .map(|part| match part.strip_prefix("src=") {
                Some(src) => format!("src={}", prepared.context.join(src).display()),
                None => part.to_owned(),
            })
            .collect();
        flags.extend(["--secret".to_owned(), spec.join(",")]);
    }
    flags.extend(case.flags.iter().cloned());
    flags
}

fn tail(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(LOG_TAIL);
    lines[from..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `docker build` with BuildKit, `docker save` of the result, and `docker rmi`.
fn build_with_buildkit(name: &str, prepared: &Prepared, variant: Variant) -> Result<Built, String> {
    let tag = unique_name(&format!("conformance-{name}-{}", variant.name()));
    let (source, stdin) = prepared.source_args(variant);
    let output = output_with_stdin(
        Command::new(base_common::DOCKER_CLI)
            .args(["build", "--network", "host", "-t", &tag])
            .args(build_flags(prepared))
            .args(source)
            .env("DOCKER_HOST", &env().docker_host)
            .env("DOCKER_BUILDKIT", "1")
            .env("BUILDKIT_PROGRESS", "plain"),
        stdin.as_deref(),
        prepared,
    )?;
    if !output.status.success() {
        return Ok(Built::Failed {
            code: output.status.code(),
            log: tail(&[output.stdout, output.stderr].concat()),
        });
    }
    let archive = prepared
        .dir
        .path()
        .join(format!("buildkit-{}.tar", variant.name()));
    save_and_remove(&tag, &archive)?;
    Ok(Built::Image(archive))
}

/// `imgbuild build` as the trials run it: plain progress, the host network, `cache`.
fn imgbuild_build(cache: &Path) -> Command {
    let mut command = imgbuild();
    command
        .args([
            "build",
            "--progress",
            "plain",
            "--network",
            "host",
            "--cache-dir",
        ])
        .arg(cache);
    command
}

/// `docker save` of what BuildKit built under `tag` to `archive`, then `docker rmi`.
fn save_and_remove(tag: &str, archive: &Path) -> Result<(), String> {
    let save = docker([
        "save".as_ref(),
        "-o".as_ref(),
        archive.as_os_str(),
        tag.as_ref(),
    ]);
    let removed = docker(["rmi", tag]);
    if !save.status.success() {
        return Err(format!(
            "docker save {tag}: {}",
            String::from_utf8_lossy(&save.stderr)
        ));
    }
    if !removed.status.success() {
        return Err(format!(
            "docker rmi {tag}: {}",
            String::from_utf8_lossy(&removed.stderr)
        ));
    }
    Ok(())
}

/// imgbuild to a Docker archive, with the case's own cache directory (every variant and
/// executor shares it, as builds on one machine would).
fn build_with_imgbuild(
    prepared: &Prepared,
    variant: Variant,
    executor: Executor,
) -> Result<Built, String> {
    let archive = prepared.dir.path().join(format!(
        "imgbuild-{}-{}.tar",
        variant.name(),
        executor.name()
    ));
    let (source, stdin) = prepared.source_args(variant);
    let output = output_with_stdin(
        imgbuild()
            .args(["build", "--progress", "plain", "--network", "host"])
            .args(["--executor", executor.name()])
            .arg("--cache-dir")
            .arg(prepared.dir.path().join("imgbuild-cache"))
            .arg("--output")
            .arg(format!("type=docker,dest={}", archive.display()))
            .args(build_flags(prepared))
            .args(source),
        stdin.as_deref(),
        prepared,
    )?;
    if output.status.success() {
        Ok(Built::Image(archive))
    } else {
        Ok(Built::Failed {
            code: output.status.code(),
            log: tail(&output.stderr),
        })
    }
}

/// One difference between two images: a path (or `config`), a field and both values.
#[derive(Debug, PartialEq)]
struct Diff {
    path: String,
    field: &'static str,
    left: String,
    right: String,
}

impl Diff {
    fn is_listed(&self, d: &Difference) -> bool {
        d.field == self.field
            && (d.path == self.path || (self.path != "config" && glob_match(&d.path, &self.path)))
    }
}

fn show_diffs(diffs: &[Diff], left: &str, right: &str) -> String {
    let mut lines: Vec<String> = diffs
        .iter()
        .take(SHOWN_DIFFERENCES)
        .map(|d| {
            format!(
                "  {} {}: {left} {} | {right} {}",
                d.path, d.field, d.left, d.right
            )
        })
        .collect();
    if diffs.len() > SHOWN_DIFFERENCES {
        lines.push(format!(
            "  … and {} more differences",
            diffs.len() - SHOWN_DIFFERENCES
        ));
    }
    lines.join("\n")
}

/// Every difference between two images' files and run-time config.
fn compare(left: &Image, right: &Image) -> Vec<Diff> {
    let mut diffs = compare_trees(&left.tree, &right.tree);
    for field in CONFIG_FIELDS {
        let l = config_field(&left.config, field);
        let r = config_field(&right.config, field);
        if l != r {
            let show = |v: &Option<serde_json::Value>| {
                v.as_ref()
                    .map_or_else(|| "(absent)".to_owned(), |v| v.to_string())
            };
            diffs.push(Diff {
                path: "config".to_owned(),
                field,
                left: show(&l),
                right: show(&r),
            });
        }
    }
    diffs
}

/// A config field as docker reads it: absent, `null` and empty (`[]`, `{}`, `""`) are the
/// same. BuildKit writes its config with Go's `omitempty`, so it cannot tell them apart
/// either (v0.8 writes `"OnBuild": null`, `CMD []` leaves no `Cmd` at all), and the engine
/// treats them alike when it runs the image. In a Healthcheck, zero durations and retries
/// mean "the default", as omitted fields do.
fn config_field(config: &serde_json::Value, field: &str) -> Option<serde_json::Value> {
    let value = config.get("config")?.get(field)?.clone();
    normalise_config(value, field == "Healthcheck")
}

fn normalise_config(value: serde_json::Value, zero_is_absent: bool) -> Option<serde_json::Value> {
    use serde_json::Value;
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Number(n) if zero_is_absent && n.as_f64() == Some(0.0) => None,
        Value::Object(o) => {
            let o: serde_json::Map<String, Value> = o
                .into_iter()
                .filter_map(|(k, v)| {
                    // Only a Healthcheck's own fields drop zeroes; map keys (Labels,
                    // ExposedPorts, Volumes) are kept with their empty values.
                    if zero_is_absent {
                        normalise_config(v, true).map(|v| (k, v))
                    } else {
                        Some((k, v))
                    }
                })
                .collect();
            (!o.is_empty()).then_some(Value::Object(o))
        }
        other => Some(other),
    }
}

fn compare_trees(left: &Tree, right: &Tree) -> Vec<Diff> {
    let (left_links, right_links) = (left.link_groups(), right.link_groups());
    let paths: BTreeSet<&String> = left.paths().chain(right.paths()).collect();
    let mut diffs = Vec::new();
    for path in paths {
        let shown = format!("/{path}");
        let mut push = |field, l: String, r: String| {
            diffs.push(Diff {
                path: shown.clone(),
                field,
                left: l,
                right: r,
            });
        };
        let (l, r) = match (left.get(path), right.get(path)) {
            (Some(l), Some(r)) => (l, r),
            (l, r) => {
                let show = |e: Option<&image::Entry>| e.map_or("missing".to_owned(), describe);
                push("presence", show(l), show(r));
                continue;
            }
        };
        if l.kind != r.kind {
            push("type", describe(l), describe(r));
            continue;
        }
        if l.mode != r.mode {
            push("mode", format!("{:04o}", l.mode), format!("{:04o}", r.mode));
        }
        if (l.uid, l.gid) != (r.uid, r.gid) {
            push(
                "owner",
                format!("{}:{}", l.uid, l.gid),
                format!("{}:{}", r.uid, r.gid),
            );
        }
        // A different content shows its size; the size alone only when the hashes agree.
        if l.sha256 != r.sha256 {
            push("content", content(l), content(r));
        } else if l.size != r.size {
            push("size", l.size.to_string(), r.size.to_string());
        }
        if l.link != r.link {
            push(
                "link",
                format!("-> {}", l.link.as_deref().unwrap_or("")),
                format!("-> {}", r.link.as_deref().unwrap_or("")),
            );
        }
        let group = |links: &std::collections::HashMap<&str, String>| {
            links
                .get(path.as_str())
                .map_or_else(|| "no hard links".to_owned(), |g| format!("linked {g}"))
        };
        let (lg, rg) = (group(&left_links), group(&right_links));
        if lg != rg {
            push("hardlinks", lg, rg);
        }
    }
    diffs
}

fn describe(e: &image::Entry) -> String {
    let mut shown = format!("{} {:04o} {}:{}", e.kind, e.mode, e.uid, e.gid);
    if let Some(link) = &e.link {
        shown.push_str(&format!(" -> {link}"));
    }
    if e.kind == "file" {
        shown.push_str(&format!(" {}", content(e)));
    }
    shown
}

fn content(e: &image::Entry) -> String {
    match (&e.text, &e.sha256) {
        (Some(text), _) => format!("{text:?} ({} bytes)", e.size),
        (None, Some(sha)) => format!("{} bytes sha256:{}", e.size, &sha[..12]),
        (None, None) => "(none)".to_owned(),
    }
}

/// Glob match on paths: `**` matches anything, `*` and `?` anything but `/`.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn matches(p: &[u8], t: &[u8]) -> bool {
        match p {
            [] => t.is_empty(),
            [b'*', b'*', rest @ ..] => (0..=t.len()).any(|i| matches(rest, &t[i..])),
            [b'*', rest @ ..] => {
                let stop = t.iter().position(|&c| c == b'/').unwrap_or(t.len());
                (0..=stop).any(|i| matches(rest, &t[i..]))
            }
            [b'?', rest @ ..] => t.first().is_some_and(|&c| c != b'/') && matches(rest, &t[1..]),
            [c, rest @ ..] => t.first() == Some(c) && matches(rest, &t[1..]),
        }
    }
    matches(pattern.as_bytes(), text.as_bytes())
}

fn check_target_stage_runs() -> Result<(), String> {
    let cases = [
        ("FROM a\nCOPY x y\n", None, false),
        ("FROM a\nrun true\n", None, true),
        (
            "FROM a AS b\nRUN true\nFROM c\nCOPY --from=b / /\n",
            None,
            false,
        ),
        ("FROM a AS b\nRUN true\nFROM c\nCOPY x y\n", Some("B"), true),
        (
            "FROM a\nCOPY <<EOF /x\nRUN not an instruction\nEOF\n",
            None,
            false,
        ),
        (
            "FROM a\nCOPY <<-\"END\" /x\nRUN no\nEND\nRUN yes\n",
            None,
            true,
        ),
    ];
    for (dockerfile, target, expected) in cases {
        if target_stage_runs(dockerfile, target) != expected {
            return Err(format!(
                "target_stage_runs({dockerfile:?}, {target:?}) should be {expected}"
            ));
        }
    }
    Ok(())
}

fn check_glob_match() -> Result<(), String> {
    let cases = [
        ("/a/*.txt", "/a/b.txt", true),
        ("/a/*.txt", "/a/b/c.txt", false),
        ("/a/**", "/a/b/c.txt", true),
        ("/a/**/c.txt", "/a/b/d/c.txt", true),
        ("/a/?", "/a/b", true),
        ("/a/?", "/a/bc", false),
        ("/a/b", "/a/b/c", false),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(pattern, path, expected)| glob_match(pattern, path) != *expected)
        .map(|(pattern, path, expected)| format!("{pattern} on {path}: expected {expected}"))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}

/// The case server answers files with their length and mtime, 404s the rest, and serves a
/// bare repository to `git clone` over dumb HTTP (what `serve.sh` makes for ADD git cases).
fn check_static_http() -> Result<(), String> {
    let dir = tempdir();
    let root = dir.path();
    let sh = |script: &str| run_tool(Command::new("bash").args(["-ec", script]).current_dir(root));
    sh(
        "echo hello > hello.txt && touch -d '2021-03-04 05:06:07 UTC' hello.txt
        git init -q work && cd work && echo in-git > f && git add f
        git -c user.name=t -c user.email=t@t commit -qm one && cd ..
        git clone -q --bare work repo.git && git -C repo.git update-server-info",
    )?;
    let server = static_http::StaticServer::start(root);
    let get = |path: &str| -> Result<String, String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(server.url().trim_start_matches("http://"))
            .map_err(|e| format!("connect: {e}"))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| format!("send: {e}"))?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(|e| format!("read: {e}"))?;
        Ok(answer.to_ascii_lowercase())
    };
    let hello = get("/hello.txt")?;
    for expected in [
        "200 ok",
        "content-length: 6",
        "last-modified: thu, 04 mar 2021 05:06:07 gmt",
        "\r\n\r\nhello\n",
    ] {
        if !hello.contains(expected) {
            return Err(format!("GET /hello.txt lacks {expected:?}:\n{hello}"));
        }
    }
    for missing in ["/nothing", "/../hello.txt", "/work"] {
        let answer = get(missing)?;
        if !answer.starts_with("http/1.1 404") {
            return Err(format!("GET {missing} is not a 404:\n{answer}"));
        }
    }
    sh(&format!(
        "git clone -q {}/repo.git clone && test \"$(cat clone/f)\" = in-git",
        server.url()
    ))
}

/// A git repository as the build context, served over dumb HTTP: BuildKit and imgbuild
/// build `URL#main` and `URL#v1` into the same image (the repository's `.dockerignore` not
/// applied, no `.git`); imgbuild gives the same image for the local repository
/// (`PATH#main`, bare or a checkout), and checks out a subdirectory (`#main:sub`, which
/// BuildKit v0.8 cannot: "subdir not supported yet"; current BuildKit can).
fn check_git_context() -> Result<(), String> {
    let base = busybox()?;
    let dir = tempdir();
    let root = dir.path();
    let dockerfile = format!(
        "FROM {}\nCOPY . /ctx/\nRUN ls -A /ctx > /listing\n",
        base.reference
    );
    std::fs::create_dir_all(root.join("work/sub/bin")).map_err(|e| e.to_string())?;
    std::fs::write(root.join("work/Dockerfile"), &dockerfile).map_err(|e| e.to_string())?;
    std::fs::write(root.join("work/sub/Dockerfile"), &dockerfile).map_err(|e| e.to_string())?;
    run_tool(Command::new("bash").current_dir(root.join("work")).args([
        "-ec",
        "echo app > app.txt && echo top.txt > .dockerignore && echo ignored > top.txt
         echo sub > sub/app.txt && printf '#!/bin/sh\\n' > sub/bin/run.sh && chmod 755 sub/bin/run.sh
         ln -s app.txt link && git init -q -b main && git add -A
         git -c user.name=t -c user.email=t@t commit -qm one && git tag v1
         echo later > later.txt && git add -A && git -c user.name=t -c user.email=t@t commit -qm two
         cd .. && git clone -q --bare work repo.git && git -C repo.git update-server-info",
    ]))?;
    let server = static_http::StaticServer::start(root);
    let url = format!("{}/repo.git", server.url());
    let buildkit = |context: &str| -> Result<Image, String> {
        let tag = unique_name("conformance-git-context");
        let output = Command::new(base_common::DOCKER_CLI)
            .args(["build", "--network", "host", "-t", &tag, context])
            .env("DOCKER_HOST", &env().docker_host)
            .env("DOCKER_BUILDKIT", "1")
            .output()
            .map_err(|e| format!("cannot run docker build: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "BuildKit failed on {context}:\n{}",
                tail(&output.stderr)
            ));
        }
        let archive = root.join(format!("{tag}.tar"));
        save_and_remove(&tag, &archive)?;
        read_image(&archive, std::slice::from_ref(&base.diff_ids))
    };
    let imgbuild_built = |context: &str| -> Result<(Image, String), String> {
        let archive = root.join(format!("{}.tar", unique_name("imgbuild")));
        let output = imgbuild_build(&root.join("imgbuild-cache"))
            .arg("--output")
            .arg(format!("type=docker,dest={}", archive.display()))
            .arg(context)
            .output()
            .map_err(|e| format!("cannot run imgbuild: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "imgbuild failed on {context}:\n{}",
                tail(&output.stderr)
            ));
        }
        let image = read_image(&archive, std::slice::from_ref(&base.diff_ids))?;
        Ok((image, config_digest(&archive)?))
    };
    let mut problems = Vec::new();
    let mut digests = Vec::new();
    for reference in ["main", "v1"] {
        let context = format!("{url}#{reference}");
        let (ib, digest) = imgbuild_built(&context)?;
        let diffs = compare(&buildkit(&context)?, &ib);
        if !diffs.is_empty() {
            problems.push(format!(
                "{context}:\n{}",
                show_diffs(&diffs, "BuildKit", "imgbuild")
            ));
        }
        digests.push(digest);
    }
    if digests[0] == digests[1] {
        problems.push("#main and #v1 gave the same image: the ref was not followed".to_owned());
    }
    for local in [root.join("repo.git#main"), root.join("work#main")] {
        let (_, digest) = imgbuild_built(&local.to_string_lossy())?;
        if digest != digests[0] {
            problems.push(format!(
                "{}: {digest}, not the URL's {}",
                local.display(),
                digests[0]
            ));
        }
    }
    let (sub, _) = imgbuild_built(&format!("{url}#main:sub"))?;
    let listing = sub
        .tree
        .get("listing")
        .and_then(|e| e.text.clone())
        .unwrap_or_default();
    if listing != "Dockerfile\napp.txt\nbin\n" {
        problems.push(format!("#main:sub: the context held {listing:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Absent, `null` and empty config fields compare equal; anything else that differs shows.
fn check_config_compare() -> Result<(), String> {
    let image = |config: serde_json::Value| Image {
        config: serde_json::json!({ "config": config }),
        tree: Tree::default(),
    };
    let fields = |l: serde_json::Value, r: serde_json::Value| -> Vec<&'static str> {
        compare(&image(l), &image(r))
            .iter()
            .map(|d| d.field)
            .collect()
    };
    let same = fields(
        serde_json::json!({"OnBuild": null, "Cmd": [], "User": "", "Labels": {},
            "Healthcheck": {"Test": ["CMD", "x"], "Interval": 0}}),
        serde_json::json!({"Healthcheck": {"Test": ["CMD", "x"]}}),
    );
    if !same.is_empty() {
        return Err(format!("equal configs differ in {same:?}"));
    }
    let differ = fields(
        serde_json::json!({"Env": ["A=1", "B=2"], "Cmd": ["a"], "Volumes": {"/v": {}},
            "Healthcheck": {"Test": ["NONE"]}}),
        serde_json::json!({"Env": ["B=2", "A=1"], "Entrypoint": ["a"]}),
    );
    let expected = ["Env", "Cmd", "Entrypoint", "Volumes", "Healthcheck"];
    if differ != expected {
        return Err(format!(
            "differing fields {differ:?}, expected {expected:?}"
        ));
    }
    Ok(())
}

/// `--output type=local` and `type=tar` give the files BuildKit's local and tar exporters
/// give for the same build: the whole final root file system (what a RUN deleted from the
/// base absent), modes, symlinks and hard links; in the directory, files belong to the user
/// who ran the build and an existing directory is merged into (its other files kept, a file
/// replaced by a directory); in the tar, the layers' owners, and the same entries in the
/// same order. mtimes are not compared: imgbuild clamps them to the source date epoch.
fn check_filesystem_outputs() -> Result<(), String> {
    let base = &busybox()?.reference;
    let dir = tempdir();
    let context = dir.path().join("context");
    std::fs::create_dir(&context).map_err(|e| e.to_string())?;
    let dockerfile = format!(
        "FROM {base} AS builder\n\
         RUN mkdir -p /build && echo built > /build/artifact\n\
         FROM {base}\n\
         COPY --from=builder /build/artifact /app/artifact\n\
         RUN mkdir -p /data/emptydir && echo hello > /data/file && ln -s file /data/symlink \\\n\
          && ln /data/file /data/hardlink && echo s > /data/mode0750 && chmod 0750 /data/mode0750 \\\n\
          && echo owned > /data/owned && chown 1000:1000 /data/owned && rm /bin/ping /etc/group\n"
    );
    std::fs::write(context.join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
    // What the destination held before: kept, replaced, or a file where a directory goes.
    let prefill = |dest: &Path| -> Result<(), String> {
        for (path, content) in [
            ("keep/e", "e"),
            ("data/oldonly", "o"),
            ("data/file", "old"),
            ("app", "f"),
            ("linuxrc/x", "a directory where the image has a symlink"),
        ] {
            let path = dest.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| e.to_string())?;
            std::fs::write(&path, content).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    let out = |name: &str| dir.path().join(name);
    prefill(&out("bk-merged"))?;
    prefill(&out("ib-merged"))?;
    for output in [
        format!("type=local,dest={}", out("bk-merged").display()),
        format!("type=local,dest={}", out("bk-new").display()),
        format!("type=tar,dest={}", out("bk.tar").display()),
    ] {
        // BuildKit v0.8 takes one --output per build; the second and third are cached.
        let output = Command::new(base_common::DOCKER_CLI)
            .args(["build", "--network", "host", "-o", &output])
            .arg(&context)
            .env("DOCKER_HOST", &env().docker_host)
            .env("DOCKER_BUILDKIT", "1")
            .output()
            .map_err(|e| format!("cannot run docker build: {e}"))?;
        if !output.status.success() {
            return Err(format!("BuildKit failed:\n{}", tail(&output.stderr)));
        }
    }
    let output = imgbuild_build(&out("imgbuild-cache"))
        .arg("-o")
        .arg(out("ib-merged"))
        .arg("-o")
        .arg(format!("type=local,dest={}", out("ib-new").display()))
        .arg("-o")
        .arg(format!("type=tar,dest={}", out("ib.tar").display()))
        .arg(&context)
        .output()
        .map_err(|e| format!("cannot run imgbuild: {e}"))?;
    if !output.status.success() {
        return Err(format!("imgbuild failed:\n{}", tail(&output.stderr)));
    }
    let mut problems = Vec::new();
    for (bk, ib) in [("bk-merged", "ib-merged"), ("bk-new", "ib-new")] {
        let diffs = compare_trees(
            &image::Tree::from_dir(&out(bk))?,
            &image::Tree::from_dir(&out(ib))?,
        );
        if !diffs.is_empty() {
            problems.push(format!(
                "{bk} | {ib}:\n{}",
                show_diffs(&diffs, "BuildKit", "imgbuild")
            ));
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |name: &str| {
        std::fs::metadata(out(name))
            .map(|m| format!("{:04o}", m.permissions().mode() & 0o7777))
            .unwrap_or_else(|e| e.to_string())
    };
    if mode("bk-new") != mode("ib-new") {
        problems.push(format!(
            "a new directory's mode: BuildKit {} | imgbuild {}",
            mode("bk-new"),
            mode("ib-new")
        ));
    }
    let read_tar = |name: &str| std::fs::File::open(out(name)).map_err(|e| format!("{name}: {e}"));
    let diffs = compare_trees(
        &image::Tree::from_tar(read_tar("bk.tar")?)?,
        &image::Tree::from_tar(read_tar("ib.tar")?)?,
    );
    if !diffs.is_empty() {
        problems.push(format!(
            "the tars:\n{}",
            show_diffs(&diffs, "BuildKit", "imgbuild")
        ));
    }
    // The entries themselves, in order: name, type, owner names.
    let listing = |name: &str| -> Result<Vec<String>, String> {
        let mut archive = tar::Archive::new(read_tar(name)?);
        let mut names = Vec::new();
        for entry in archive.entries().map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            let header = entry.header();
            names.push(format!(
                "{} {:?} user={:?} group={:?}",
                String::from_utf8_lossy(&entry.path_bytes()),
                header.entry_type(),
                header.username().ok().flatten().unwrap_or_default(),
                header.groupname().ok().flatten().unwrap_or_default(),
            ));
        }
        Ok(names)
    };
    let (bk_list, ib_list) = (listing("bk.tar")?, listing("ib.tar")?);
    if bk_list != ib_list {
        let first = bk_list
            .iter()
            .zip(&ib_list)
            .position(|(b, i)| b != i)
            .unwrap_or(bk_list.len().min(ib_list.len()));
        problems.push(format!(
            "the tars' entries differ from entry {first}: BuildKit {:?} | imgbuild {:?} ({} and {} entries)",
            bk_list.get(first), ib_list.get(first), bk_list.len(), ib_list.len()
        ));
    }
    // `-q -o -`: the same tar on standard output, and nothing else there.
    let output = imgbuild()
        .args(["build", "-q", "--network", "host", "--cache-dir"])
        .arg(out("imgbuild-cache"))
        .args(["-o", "-"])
        .arg(&context)
        .output()
        .map_err(|e| format!("cannot run imgbuild: {e}"))?;
    let file = std::fs::read(out("ib.tar")).map_err(|e| e.to_string())?;
    if !output.status.success() || output.stdout != file {
        problems.push(format!(
            "`-q -o -` wrote {} bytes, and type=tar,dest=FILE {} (exit {:?}):\n{}",
            output.stdout.len(),
            file.len(),
            output.status.code(),
            tail(&output.stderr)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
