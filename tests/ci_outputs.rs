//! What imgbuild gives CI systems besides the image, for real (test engine, registry
//! busybox): `--progress rawjson` events and `--label-from-git` labels.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use support::{imgbuild, tempdir, unique_name};

/// A build context with its own (empty) cache directory.
struct Project {
    context: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Project {
    fn new(dockerfile: &str) -> Project {
        let context = tempdir();
        fs::write(
            context.path().join("Dockerfile"),
            dockerfile.replace("BUSYBOX", &support::busybox_in_registry()),
        )
        .unwrap();
        fs::write(context.path().join("app.txt"), "version 1\n").unwrap();
        Project {
            context,
            cache: tempdir(),
        }
    }

    fn build(&self, args: &[&str]) -> Output {
        imgbuild()
            .args(["build", "--network", "host", "--cache-dir"])
            .arg(self.cache.path().join("imgbuild"))
            .args(args)
            .arg(self.context.path())
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .expect("imgbuild runs")
    }

    fn build_ok(&self, args: &[&str]) -> String {
        let out = self.build(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "imgbuild failed:\n{stderr}");
        stderr
    }

    fn path(&self, name: &str) -> String {
        self.cache.path().join(name).display().to_string()
    }
}

/// Every line of `stderr` as a JSON object (panics on a line that is not one).
fn events(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nin:\n{stderr}"));
            assert!(event.is_object(), "not an object: {line}");
            assert!(event["event"].is_string(), "no event name: {line}");
            assert!(event["time"].is_string(), "no time: {line}");
            event
        })
        .collect()
}

fn named<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn single_outcome(events: &[serde_json::Value]) -> &serde_json::Value {
    let outcomes = named(events, "outcome");
    assert_eq!(outcomes.len(), 1, "{events:?}");
    outcomes[0]
}

/// The vertex of the step whose name contains `needle`, as a `started` or `cached` event
/// named it.
fn vertex_of(events: &[serde_json::Value], kind: &str, needle: &str) -> Option<u64> {
    named(events, kind)
        .into_iter()
        .find(|e| e["name"].as_str().is_some_and(|n| n.contains(needle)))
        .and_then(|e| e["vertex"].as_u64())
}

#[test]
fn rawjson_is_one_object_per_event_for_every_line() {
    let marker = unique_name("rawjson");
    let project = Project::new(&format!(
        "FROM BUSYBOX AS build\n\
         RUN echo {marker} > /marker\n\
         FROM BUSYBOX\n\
         COPY --from=build /marker /marker\n\
         COPY app.txt /app.txt\n"
    ));
    let missing_cache = project.path("no-cache-here");
    let metadata = project.path("metadata.json");
    let args = |layout: &str| {
        vec![
            "--progress".to_owned(),
            "rawjson".to_owned(),
            "--output".to_owned(),
            format!("type=oci,dest={}", project.path(layout)),
            "--metadata-file".to_owned(),
            metadata.clone(),
            "--cache-from".to_owned(),
            format!("type=local,src={missing_cache}"),
        ]
    };
    let run = |layout: &str| {
        let args = args(layout);
        project.build_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Cold: every step runs.
    let cold = events(&run("one"));
    let run_vertex = vertex_of(&cold, "started", "RUN echo").expect("the RUN started");
    let copy_vertex = vertex_of(&cold, "started", "COPY app.txt").expect("the COPY started");
    for vertex in [run_vertex, copy_vertex] {
        let done = named(&cold, "done")
            .into_iter()
            .find(|e| e["vertex"] == vertex)
            .unwrap_or_else(|| panic!("no done event for vertex {vertex}: {cold:?}"));
        assert!(done["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{done}");
        let reason = named(&cold, "log").into_iter().find(|e| {
            e["vertex"] == vertex
                && e["line"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("cache miss: "))
        });
        assert!(reason.is_some(), "no miss reason for vertex {vertex}");
    }
    // The RUN's output is a log line of its vertex.
    assert!(
        named(&cold, "log")
            .iter()
            .all(|e| e["vertex"].is_u64() && e["line"].is_string())
    );
    // The missing cache is a warning naming it.
    let warnings = named(&cold, "warning");
    assert!(
        warnings.iter().any(|w| w["message"]
            .as_str()
            .is_some_and(|m| m.contains(&missing_cache))),
        "{warnings:?}"
    );
    // One outcome, agreeing with --metadata-file.
    let outcome = single_outcome(&cold);
    let recorded: serde_json::Value =
        serde_json::from_slice(&fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(outcome["digest"], recorded["containerimage.digest"]);
    assert_eq!(
        outcome["image_id"],
        recorded["containerimage.config.digest"]
    );
    assert_eq!(outcome["cache_hits"], 0);
    assert_eq!(outcome["cache_misses"], 3);
    assert!(outcome["size"].as_u64().is_some_and(|s| s > 0));

    // After a change of app.txt: the RUN and the COPY --from are cached, the COPY says why
    // it ran.
    fs::write(project.context.path().join("app.txt"), "version 2\n").unwrap();
    let warm = events(&run("two"));
    assert!(vertex_of(&warm, "cached", "RUN echo").is_some(), "{warm:?}");
    assert!(
        vertex_of(&warm, "cached", "COPY --from=build").is_some(),
        "{warm:?}"
    );
    let copy_vertex = vertex_of(&warm, "started", "COPY app.txt").expect("the COPY ran");
    assert!(
        named(&warm, "log")
            .iter()
            .any(|e| { e["vertex"] == copy_vertex && e["line"] == "cache miss: app.txt changed" })
    );
    let outcome = single_outcome(&warm);
    assert_eq!(outcome["cache_hits"], 2);
    assert_eq!(outcome["cache_misses"], 1);
    assert_ne!(outcome["digest"], single_outcome(&cold)["digest"]);
}

/// Runs git in `dir`, as a CI checkout would have been made.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "ci")
        .env("GIT_AUTHOR_EMAIL", "ci@example.com")
        .env("GIT_COMMITTER_NAME", "ci")
        .env("GIT_COMMITTER_EMAIL", "ci@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The labels of the image in an OCI layout, as skopeo reads them.
fn labels(layout: &str) -> BTreeMap<String, String> {
    let out = Command::new("skopeo")
        .args(["inspect", &format!("oci:{layout}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {out:?}");
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    serde_json::from_value(inspected["Labels"].clone()).unwrap_or_default()
}

fn digest_of(layout: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", &format!("oci:{layout}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {out:?}");
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    inspected["Digest"].as_str().unwrap().to_owned()
}

#[test]
fn labels_from_git_name_the_commit_without_credentials_and_stay_reproducible() {
    let dockerfile = "FROM BUSYBOX\nCOPY app.txt /app.txt\n";
    let token = "ghp_secret0123456789";
    let checkout = |project: &Project| {
        let dir = project.context.path();
        git(dir, &["init", "-q"]);
        git(
            dir,
            &[
                "remote",
                "add",
                "origin",
                &format!("https://x-access-token:{token}@github.com/acme/app.git"),
            ],
        );
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-qm", "build me"]);
        git(dir, &["rev-parse", "HEAD"])
    };
    // Two runners with the same commit (same contents, author and dates).
    let a = Project::new(dockerfile);
    let b = Project::new(dockerfile);
    let revision = checkout(&a);
    assert_eq!(checkout(&b), revision);

    let build = |project: &Project, epoch: &str| {
        let layout = project.path(&format!("out-{epoch}"));
        let out = imgbuild()
            .args(["build", "--label-from-git", "--progress", "plain"])
            .arg("--cache-dir")
            .arg(project.cache.path().join("imgbuild"))
            .args(["--output", &format!("type=oci,dest={layout}")])
            .arg(project.context.path())
            .env("SOURCE_DATE_EPOCH", epoch)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains(token), "the token is shown:\n{stderr}");
        layout
    };
    let on_a = build(&a, "1767225600");
    let found = labels(&on_a);
    assert_eq!(found["org.opencontainers.image.revision"], revision);
    assert_eq!(
        found["org.opencontainers.image.source"],
        "https://github.com/acme/app"
    );
    assert_eq!(
        found["org.opencontainers.image.created"],
        "2026-01-01T00:00:00Z"
    );
    let config = fs::read_dir(Path::new(&on_a).join("blobs/sha256"))
        .unwrap()
        .map(|e| fs::read(e.unwrap().path()).unwrap())
        .find(|blob| String::from_utf8_lossy(blob).contains("org.opencontainers.image.source"))
        .expect("the config blob");
    assert!(!String::from_utf8_lossy(&config).contains(token));

    // The same commit on another runner: the same image.
    let on_b = build(&b, "1767225600");
    assert_eq!(digest_of(&on_b), digest_of(&on_a));

    // Another epoch: another created label, so another image.
    let later = build(&b, "1767225601");
    assert_eq!(
        labels(&later)["org.opencontainers.image.created"],
        "2026-01-01T00:00:01Z"
    );
    assert_ne!(digest_of(&later), digest_of(&on_a));
}
