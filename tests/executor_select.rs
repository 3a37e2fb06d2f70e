//! Which executor runs a build, end to end: `auto` falls back to the engine with one line
//! when no OCI runtime is on `PATH` (runc hidden by an empty `PATH`), `native` then refuses
//! with exit 2, the native executor needs no engine for an OCI output, `imgbuild prune`
//! frees the snapshots and blobs a native build left (and the build after it gives the
//! same image), and a step the engine executor ran is a hit for the native one.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;

const DOCKERFILE: &str = "FROM BUSYBOX AS b\nRUN echo hi > /x\nFROM scratch\nCOPY --from=b /x /x\n";

fn context() -> tempfile::TempDir {
    let dir = support::tempdir();
    let dockerfile = DOCKERFILE.replace("BUSYBOX", &support::busybox_in_registry());
    fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    dir
}

fn build(context: &Path, cache: &Path, extra: &[&str], path: Option<&Path>) -> Output {
    let mut command = support::imgbuild();
    command
        .args(["build", "--progress", "plain", "--cache-dir"])
        .arg(cache)
        .args(extra)
        .arg(context);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn auto_without_a_runtime_runs_on_the_engine_and_says_why_once() {
    let context = context();
    let cache = support::tempdir();
    let empty = support::tempdir();
    let out = support::tempdir();
    let dest = format!("type=oci,dest={}", out.path().join("oci").display());
    let output = build(
        context.path(),
        cache.path(),
        &["--executor", "auto", "--output", &dest],
        Some(empty.path()),
    );
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let why: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("executor: engine ("))
        .collect();
    assert_eq!(why.len(), 1, "one fallback line: {err}");
    assert!(why[0].contains("no OCI runtime"), "{}", why[0]);
    assert!(
        err.contains("executor engine"),
        "the summary says so: {err}"
    );
}

#[test]
fn native_without_a_runtime_is_refused_before_anything_runs() {
    let context = context();
    let cache = support::tempdir();
    let empty = support::tempdir();
    let output = build(
        context.path(),
        cache.path(),
        &["--executor", "native"],
        Some(empty.path()),
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("--executor native cannot run here"), "{err}");
    assert!(err.contains("no OCI runtime"), "{err}");
    assert!(!err.contains("RUN echo"), "no step ran: {err}");
}

#[test]
fn native_needs_no_engine_for_an_oci_output_and_prune_frees_its_snapshots_and_blobs() {
    let context = context();
    let cache = support::tempdir();
    let out = support::tempdir();
    let dest = format!("type=oci,dest={}", out.path().join("oci").display());
    let build_to_oci = || {
        support::imgbuild()
            .args(["build", "--progress", "plain", "--executor", "native"])
            .arg("--cache-dir")
            .arg(cache.path())
            .args(["--output", &dest])
            .arg(context.path())
            // Nothing answers there: the build must not need it.
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap()
    };
    let output = build_to_oci();
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("executor native (runc"), "{err}");
    let snapshots = cache.path().join("snapshots-v1/committed");
    let count = || fs::read_dir(&snapshots).map_or(0, |d| d.count());
    assert!(count() >= 2, "the base layer and the RUN are kept");

    // A budget larger than the store frees nothing.
    let kept = support::imgbuild()
        .args(["prune", "--keep-storage", "100GB", "--cache-dir"])
        .arg(cache.path())
        .output()
        .unwrap();
    assert!(kept.status.success(), "{}", stderr(&kept));
    let before = count();
    assert!(before >= 2);
    let pruned = support::imgbuild()
        .args(["prune", "--cache-dir"])
        .arg(cache.path())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&pruned.stdout);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert!(printed.contains("Total reclaimed space"), "{printed}");
    assert_eq!(count(), 0, "{printed}");
    // The blobs go too: the base's and the build's layers.
    let blobs = cache.path().join("blobs/sha256");
    assert_eq!(fs::read_dir(&blobs).unwrap().count(), 0, "{printed}");
    assert!(printed.contains("Blobs: "), "{printed}");
    assert!(!printed.contains("in 0 blobs"), "{printed}");

    // The step records stay, and their layers are gone: the build runs again (the base
    // pulled again), and gives the same image.
    let again = stderr(&build_to_oci());
    assert_eq!(
        support::summary_digest(&again),
        support::summary_digest(&err),
        "{again}"
    );
    assert!(!again.contains(" 0 run"), "{again}");
}

/// A build stage whose RUN writes the time: run again, it would give another image.
const STAMPED: &str = "FROM BUSYBOX AS b\n\
                       RUN date +%s%N > /stamp\n\
                       RUN mkdir /out && cp /stamp /out/ && echo more > /out/more\n\
                       FROM BUSYBOX\n\
                       COPY --from=b /out /out\n";

/// Builds `STAMPED` with `executor` into the engine (so the native executor has an engine
/// to take an engine step's layer from); returns the output, and the count of steps run.
fn build_stamped(context: &Path, cache: &Path, executor: &str, tag: &str) -> (String, String) {
    let output = support::imgbuild()
        .args(["build", "--progress", "plain", "--network", "host"])
        .args(["--executor", executor, "-t", tag, "--cache-dir"])
        .arg(cache)
        .arg(context)
        .output()
        .unwrap();
    let err = stderr(&output);
    assert!(output.status.success(), "{executor}: {err}");
    let cached = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("cache "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    (err, cached)
}

/// Both executors run the same plan with the same keys: what the engine executor ran, the
/// native one finds in the same cache dir (the step's layer taken out of the engine into a
/// snapshot), and the image is the same. (The other way, the engine executor takes a
/// native step's layer once an export wrote it: tests/ci_cache.rs.)
#[test]
fn a_step_the_engine_executor_ran_is_a_hit_for_the_native_one() {
    let context = support::tempdir();
    fs::write(
        context.path().join("Dockerfile"),
        STAMPED.replace("BUSYBOX", &support::busybox_in_registry()),
    )
    .unwrap();
    let cache = support::tempdir();
    let tag = support::unique_name("cross-engine");
    let (ran, cached) = build_stamped(context.path(), cache.path(), "engine", &tag);
    assert_eq!(cached, "0 of 3 steps cached, 3 run", "{ran}");
    let (hit, cached) = build_stamped(context.path(), cache.path(), "native", &tag);
    assert_eq!(
        cached, "3 of 3 steps cached, 0 run",
        "engine then native: {hit}"
    );
    assert!(hit.contains("executor native"), "{hit}");
    assert_eq!(
        support::summary_digest(&hit),
        support::summary_digest(&ran),
        "engine then native"
    );
    support::docker_ok(["rmi", tag.as_str()]);
}
