//! The GitHub Action's build script (`scripts/action/run`) under a simulated GitHub
//! environment: `GITHUB_OUTPUT` and `GITHUB_STEP_SUMMARY` are files, the inputs are
//! `INPUT_*` variables as `action.yml` sets them, and the build runs for real against the
//! test engine and registry. What the script wrote is checked against the registry.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{env, imgbuild_bin, tempdir, unique_name};

/// One job of a simulated workflow: its own HOME (so an empty imgbuild cache), its own
/// output files.
struct Job {
    home: tempfile::TempDir,
    output: PathBuf,
    summary: PathBuf,
}

impl Job {
    fn new() -> Job {
        let home = tempdir();
        let output = home.path().join("github_output");
        let summary = home.path().join("github_step_summary");
        Job {
            home,
            output,
            summary,
        }
    }

    fn run(&self, inputs: &[(&str, &str)]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/action/run");
        let mut command = Command::new(script);
        command
            .env("IMGBUILD", imgbuild_bin())
            .env("DOCKER_HOST", &env().docker_host)
            .env("HOME", self.home.path())
            .env("RUNNER_TEMP", self.home.path())
            .env("GITHUB_OUTPUT", &self.output)
            .env("GITHUB_STEP_SUMMARY", &self.summary)
            .env("INPUT_NETWORK", "host")
            .env_remove("SOURCE_DATE_EPOCH");
        for (name, value) in inputs {
            command.env(format!("INPUT_{name}"), value);
        }
        command.output().expect("the action script runs")
    }

    /// `GITHUB_OUTPUT`'s `name=value` and `name<<DELIMITER` entries.
    fn outputs(&self) -> BTreeMap<String, String> {
        let text = fs::read_to_string(&self.output).unwrap_or_default();
        let mut outputs = BTreeMap::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if let Some((name, delimiter)) = line.split_once("<<") {
                let mut value = Vec::new();
                for l in lines.by_ref() {
                    if l == delimiter {
                        break;
                    }
                    value.push(l);
                }
                outputs.insert(name.to_owned(), value.join("\n"));
            } else if let Some((name, value)) = line.split_once('=') {
                outputs.insert(name.to_owned(), value.to_owned());
            }
        }
        outputs
    }

    fn summary(&self) -> String {
        fs::read_to_string(&self.summary).unwrap_or_default()
    }
}

fn registry_get(path: &str) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sSf", "-D", "-", "-H"])
        .arg("Accept: application/vnd.oci.image.manifest.v1+json")
        .arg(support::registry_url(path))
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {path}: {out:?}");
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| p + 4);
    (
        String::from_utf8_lossy(&out.stdout[..split]).into_owned(),
        out.stdout[split..].to_vec(),
    )
}

fn context_with(dockerfile: &str) -> tempfile::TempDir {
    let context = tempdir();
    fs::write(
        context.path().join("Dockerfile"),
        dockerfile.replace("BUSYBOX", &support::busybox_in_registry()),
    )
    .unwrap();
    fs::write(context.path().join("app.txt"), "version 1\n").unwrap();
    context
}

#[test]
fn the_action_pushes_and_reports_digest_metadata_and_cache() {
    let marker = unique_name("action");
    let context = context_with(&format!(
        "FROM BUSYBOX AS build\n\
         ARG GREETING\n\
         RUN echo \"$GREETING {marker}\" > /greeting\n\
         FROM BUSYBOX\n\
         COPY --from=build /greeting /greeting\n\
         COPY app.txt /app.txt\n"
    ));
    let repository = format!("imgbuild-test/{}", unique_name("action"));
    let tag = format!("{}/{repository}:1", env().registry);
    let cache_dir = tempdir();
    let cache = cache_dir.path().join("cache");
    let inputs = |cache_input: (&'static str, String)| {
        vec![
            ("CONTEXT", context.path().display().to_string()),
            (
                "TAGS",
                format!("{tag}, {}/{repository}:latest", env().registry),
            ),
            ("PUSH", "true".to_owned()),
            ("BUILD_ARGS", "GREETING=hello\n".to_owned()),
            (
                "LABELS",
                "org.example.team=ci\n  \norg.example.job=test".to_owned(),
            ),
            ("LABEL_FROM_GIT", "true".to_owned()),
            cache_input,
        ]
    };
    let run = |job: &Job, inputs: Vec<(&'static str, String)>| {
        let pairs: Vec<(&str, &str)> = inputs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = job.run(&pairs);
        assert!(
            out.status.success(),
            "the action failed ({}):\n{}\nsummary:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            job.summary()
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // First job: cold, exporting the cache to a directory (as with actions/cache).
    let first = Job::new();
    let log = run(
        &first,
        inputs((
            "CACHE_TO",
            format!("type=local,dest={},mode=max", cache.display()),
        )),
    );
    // The job log shows readable progress, not JSON.
    assert!(log.contains("CACHED") || log.contains("DONE"), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("{\"")), "{log}");

    let outputs = first.outputs();
    let (headers, body) = registry_get(&format!("v2/{repository}/manifests/1"));
    let pushed = headers
        .lines()
        .find_map(|l| l.strip_prefix("Docker-Content-Digest: "))
        .unwrap()
        .trim()
        .to_owned();
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(outputs["digest"], pushed);
    assert_eq!(outputs["imageid"], manifest["config"]["digest"]);
    let metadata: serde_json::Value = serde_json::from_str(&outputs["metadata"]).unwrap();
    assert_eq!(metadata["containerimage.digest"], pushed);
    assert_eq!(
        metadata["containerimage.config.digest"],
        manifest["config"]["digest"]
    );
    assert_eq!(
        metadata["image.name"],
        format!("{tag},{}/{repository}:latest", env().registry)
    );

    // The labels made it into the image; the context is no git checkout, so no git ones.
    let (_, config) = registry_get(&format!(
        "v2/{repository}/blobs/{}",
        manifest["config"]["digest"].as_str().unwrap()
    ));
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.example.team"], "ci");
    assert_eq!(labels["org.example.job"], "test");
    assert!(labels.get("org.opencontainers.image.revision").is_none());

    let summary = first.summary();
    for expected in [
        format!("### imgbuild: `{tag}`"),
        format!("| digest | `{pushed}` |"),
        format!("| image ID | `{}` |", outputs["imageid"]),
        "| cache | 0 of 3 steps cached, 3 run |".to_owned(),
        format!("| `[build 2/2] RUN echo \"hello {marker}\" > /greeting` | miss | "),
        "| no earlier build of this step |".to_owned(),
        "--label-from-git: no labels".to_owned(),
    ] {
        assert!(
            summary.contains(&expected),
            "{expected:?} not in:\n{summary}"
        );
    }
    assert!(summary.contains(" in 3 layers |"), "{summary}");
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("| time | ") && l.ends_with(" s |")),
        "{summary}"
    );
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("| size | ") && l.contains("iB in 3 layers")),
        "{summary}"
    );

    // Second job, fresh HOME, after a change to app.txt, in a git checkout: the RUN comes
    // from the cache, the summary says why the COPY ran, and the image has the git labels.
    fs::write(context.path().join("app.txt"), "version 2\n").unwrap();
    let revision = git_commit(context.path());
    let second = Job::new();
    run(
        &second,
        inputs(("CACHE_FROM", format!("type=local,src={}", cache.display()))),
    );
    let summary = second.summary();
    for expected in [
        "| cache | 2 of 3 steps cached, 1 run |",
        &format!("| `[build 2/2] RUN echo \"hello {marker}\" > /greeting` | hit | "),
        "| `[stage-1 2/3] COPY --from=build /greeting /greeting` | hit | ",
        "| `[stage-1 3/3] COPY app.txt /app.txt` | miss | ",
        "| app.txt changed |",
    ] {
        assert!(
            summary.contains(expected),
            "{expected:?} not in:\n{summary}"
        );
    }
    let digest = second.outputs()["digest"].clone();
    assert_ne!(digest, pushed);
    let (_, body) = registry_get(&format!("v2/{repository}/manifests/{digest}"));
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let (_, config) = registry_get(&format!(
        "v2/{repository}/blobs/{}",
        manifest["config"]["digest"].as_str().unwrap()
    ));
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.revision"], revision);
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/acme/app"
    );
    // The source date epoch (0 here), so the same commit gives the same digest.
    assert_eq!(
        labels["org.opencontainers.image.created"],
        "1970-01-01T00:00:00Z"
    );
    assert_eq!(labels["org.example.team"], "ci");
}

/// Makes `dir` a git checkout with one commit and an origin remote; returns the commit.
fn git_commit(dir: &Path) -> String {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "ci")
            .env("GIT_AUTHOR_EMAIL", "ci@example.com")
            .env("GIT_COMMITTER_NAME", "ci")
            .env("GIT_COMMITTER_EMAIL", "ci@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["remote", "add", "origin", "git@github.com:acme/app.git"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "build me"]);
    git(&["rev-parse", "HEAD"])
}

#[test]
fn a_failed_build_fails_the_step_and_says_which_step() {
    let context = context_with("FROM BUSYBOX\nRUN echo building && exit 3\n");
    let job = Job::new();
    let out = job.run(&[("CONTEXT", &context.path().display().to_string())]);
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("::error::imgbuild failed"), "{log}");
    // The error itself reaches the log as imgbuild printed it.
    assert!(log.contains("error: "), "{log}");
    let summary = job.summary();
    assert!(summary.contains("the build failed"), "{summary}");
    assert!(
        summary.contains("Failed step: `[2/2] RUN echo building && exit 3`"),
        "{summary}"
    );
    assert!(job.outputs().is_empty());
}

/// The install step with the `imgbuild` input: the given binary is used as it is, and a
/// path that is not an executable fails the step with a message. (Building imgbuild with
/// cargo, the step's other path, takes minutes of release build: not run here.)
#[test]
fn the_install_step_uses_the_given_binary() {
    let install = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/action/install");
    let job = Job::new();
    let run = |binary: &Path| {
        Command::new(&install)
            .env("HOME", job.home.path())
            .env("GITHUB_OUTPUT", &job.output)
            .env("INPUT_IMGBUILD", binary)
            .output()
            .expect("the install script runs")
    };
    let out = run(imgbuild_bin());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(job.outputs()["path"], imgbuild_bin().display().to_string());
    // It ran the binary: its version is in the log.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(env!("CARGO_PKG_VERSION")),
        "{out:?}"
    );

    let missing = job.home.path().join("no-such-imgbuild");
    let out = run(&missing);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "::error::imgbuild input: {} is not an executable",
            missing.display()
        )),
        "{out:?}"
    );
}
