//! The GitHub Action's build script (`scripts/action/run`) under a simulated GitHub
//! environment: `GITHUB_OUTPUT` and `GITHUB_STEP_SUMMARY` are files, the inputs are
//! `INPUT_*` variables as `action.yml` sets them, and the build runs for real against the
//! test engine and registry. What the script wrote is checked against the registry.

#[path = "support/ssh_agent.rs"]
mod ssh_agent;
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
        self.command(inputs)
            .output()
            .expect("the action script runs")
    }

    /// The action script with these inputs, for a test to add to before it runs.
    fn command(&self, inputs: &[(&str, &str)]) -> Command {
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
        command
    }

    /// Everything the step showed or wrote: its log, its outputs and its summary.
    fn everything_shown(&self, out: &Output) -> String {
        format!(
            "{}{}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(&self.output).unwrap_or_default(),
            self.summary()
        )
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
        .arg("Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
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

/// What `repository:tag` names in the test registry: the digest the registry gives it
/// (`Docker-Content-Digest`) and the manifest or index itself.
fn tagged_manifest(repository: &str, tag: &str) -> (String, serde_json::Value) {
    let (headers, body) = registry_get(&format!("v2/{repository}/manifests/{tag}"));
    let digest = headers
        .lines()
        .find_map(|l| l.strip_prefix("Docker-Content-Digest: "))
        .unwrap()
        .trim()
        .to_owned();
    (digest, serde_json::from_slice(&body).unwrap())
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
    let (pushed, manifest) = tagged_manifest(&repository, "1");
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

/// build-push-action's secret inputs: `secrets` (KEY=value, and a quoted value over several
/// lines with `""` for a quote), `secret-files` and `secret-envs` reach `RUN
/// --mount=type=secret` with their exact values, and no value appears in the log, the
/// outputs or the summary. `load`, `pull` and `sbom`/`provenance: false` are taken too.
#[test]
fn secrets_reach_the_build_and_their_values_appear_in_no_output() {
    use sha2::{Digest, Sha256};
    let marker = unique_name("secret");
    let token = format!("tok-{marker}-a=b");
    let pem_lines = [
        "-----BEGIN TEST KEY-----".to_owned(),
        format!("pem-{marker}-\"quoted\""),
        "-----END TEST KEY-----".to_owned(),
    ];
    let pem = pem_lines.join("\n");
    let file_value = format!("file-{marker}");
    let env_value = format!("env-{marker}");
    let secret_dir = tempdir();
    let secret_file = secret_dir.path().join("file-secret");
    fs::write(&secret_file, &file_value).unwrap();

    let context = context_with(
        "FROM BUSYBOX\n\
         RUN --mount=type=secret,id=token --mount=type=secret,id=pem \\\n\
             --mount=type=secret,id=from_file --mount=type=secret,id=from_env \\\n\
             cd /run/secrets && sha256sum token pem from_file from_env > /sums\n",
    );
    let tag = format!("imgbuild-test/{}:1", unique_name("action-secrets"));
    let secrets = format!("token={token}\n\"pem={}\"\n", pem.replace('"', "\"\""));
    let job = Job::new();
    let out = job
        .command(&[
            ("CONTEXT", &context.path().display().to_string()),
            ("TAGS", &tag),
            ("LOAD", "true"),
            ("PULL", "true"),
            ("SBOM", "false"),
            ("PROVENANCE", "false"),
            ("SECRETS", &secrets),
            (
                "SECRET_FILES",
                &format!("from_file={}", secret_file.display()),
            ),
            ("SECRET_ENVS", "from_env=ACTION_TEST_SECRET"),
        ])
        .env("ACTION_TEST_SECRET", &env_value)
        .output()
        .unwrap();
    let shown = job.everything_shown(&out);
    assert!(out.status.success(), "{shown}");
    for value in [&token, &file_value, &env_value, &marker]
        .into_iter()
        .chain(&pem_lines)
    {
        assert!(
            !shown.contains(value.as_str()),
            "{value:?} shown in:\n{shown}"
        );
    }
    let log = String::from_utf8_lossy(&out.stderr);
    let command_line = log
        .lines()
        .find(|l| l.starts_with("imgbuild build "))
        .unwrap();
    for flag in [
        "--load",
        "--pull",
        "--secret id=token,src=",
        "--secret id=pem,src=",
    ] {
        assert!(command_line.contains(flag), "{flag} not in {command_line}");
    }
    // The step's private files are gone with it.
    let left: Vec<_> = fs::read_dir(job.home.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("imgbuild-action.")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // The loaded image ran the step with each secret's exact value.
    let sums = support::docker_ok(["run", "--rm", tag.as_str(), "cat", "/sums"]);
    let sha = |value: &str| hex::encode(Sha256::digest(value.as_bytes()));
    let expected = format!(
        "{}  token\n{}  pem\n{}  from_file\n{}  from_env\n",
        sha(&token),
        sha(&pem),
        sha(&file_value),
        sha(&env_value)
    );
    assert_eq!(sums, expected);
    support::docker_ok(["rmi", tag.as_str()]);
}

/// Inputs imgbuild cannot honour yet and malformed secrets fail the step with a message naming the input, before anything is built, and
/// never show a secret's value.
#[test]
fn unsupported_inputs_and_bad_secrets_fail_the_step_before_building() {
    let context = context_with("FROM BUSYBOX\nRUN echo never-built\n");
    let context = context.path().display().to_string();
    let hidden = unique_name("hidden");
    let no_equals = format!("{hidden}-no-equals");
    let unclosed = format!("\"key={hidden}-unclosed\nmore");
    let cases: Vec<(&str, &str, String)> = vec![
        ("SBOM", "true", "the sbom input is not supported".into()),
        (
            "PROVENANCE",
            "mode=max",
            "the provenance input is not supported".into(),
        ),
        (
            "SECRETS",
            &no_equals,
            "secrets: an entry is not KEY=value".into(),
        ),
        (
            "SECRETS",
            &unclosed,
            "secrets: a quoted entry has no closing quote".into(),
        ),
        (
            "SECRET_FILES",
            "bad,id=/tmp/x",
            "secret-files: `bad,id` is not a secret ID".into(),
        ),
        (
            "CALL",
            "outline",
            "call: imgbuild can build or check".into(),
        ),
    ];
    for (input, value, message) in cases {
        let job = Job::new();
        let out = job.run(&[("CONTEXT", &context), (input, value)]);
        let shown = job.everything_shown(&out);
        assert_eq!(out.status.code(), Some(2), "{input}={value}: {shown}");
        assert!(shown.contains("::error::"), "{input}: {shown}");
        assert!(
            shown.contains(&message),
            "{input}: {message:?} not in {shown}"
        );
        assert!(
            !shown.contains("imgbuild build "),
            "{input}: it built: {shown}"
        );
        assert!(
            !shown.contains(&hidden),
            "{input}: the value shown: {shown}"
        );
    }
}

/// `call: check` runs the checks: each finding an error annotation and a summary line, and
/// the step fails; a Dockerfile that skips the check passes.
#[test]
fn call_check_fails_the_step_with_the_findings_as_annotations() {
    let context = context_with("FROM BUSYBOX\nARG DEPLOY_TOKEN\nRUN true\n");
    let dir = context.path().display().to_string();
    let job = Job::new();
    let out = job.run(&[("CONTEXT", &dir), ("CALL", "check")]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let finding = format!(
        "::error::{}:2: ARG DEPLOY_TOKEN: the name looks like a secret",
        context.path().join("Dockerfile").display()
    );
    assert!(log.contains(&finding), "{finding:?} not in {log}");
    assert!(log.contains("[SecretsUsedInArgOrEnv]"), "{log}");
    let summary = job.summary();
    assert!(summary.contains("**Findings**"), "{summary}");
    assert!(summary.contains("ARG DEPLOY_TOKEN"), "{summary}");

    let dockerfile = context.path().join("Dockerfile");
    let text = fs::read_to_string(&dockerfile).unwrap();
    fs::write(
        &dockerfile,
        format!("# check=skip=SecretsUsedInArgOrEnv\n{text}"),
    )
    .unwrap();
    let job = Job::new();
    let out = job.run(&[("CONTEXT", &dir), ("CALL", "check")]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("::error::"), "{log}");
}

/// The install step's cache key is the hash of the source the binary is built from: the
/// same source gives the same key, and any change to it a new one.
#[test]
fn the_binary_s_cache_key_follows_the_action_s_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("scripts/action/source-key");
    let key_of = |dir: &Path| {
        let out = Command::new(&script)
            .env("GITHUB_ACTION_PATH", dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let key = text.strip_prefix("key=").unwrap().trim_end().to_owned();
        assert!(
            key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
            "{text}"
        );
        key
    };
    let copy = tempdir();
    for file in ["Cargo.toml", "Cargo.lock"] {
        fs::copy(root.join(file), copy.path().join(file)).unwrap();
    }
    let status = Command::new("cp")
        .arg("-r")
        .arg(root.join("src"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let original = key_of(root);
    assert_eq!(key_of(copy.path()), original);
    // Files beside the source (tests, docs) are not part of the binary.
    fs::write(copy.path().join("NOTES.md"), "not built\n").unwrap();
    assert_eq!(key_of(copy.path()), original);
    let main = copy.path().join("src/main.rs");
    let mut text = fs::read_to_string(&main).unwrap();
    text.push_str("// changed\n");
    fs::write(&main, text).unwrap();
    assert_ne!(key_of(copy.path()), original);
}

/// Every input `action.yml` declares reaches the build step as its `INPUT_*` variable (but
/// `imgbuild`, which the install step takes, and the ignored `github-token`), and the build
/// script reads each of those variables: an input cannot be declared and then dropped.
#[test]
fn every_declared_input_reaches_the_build_script() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let action = fs::read_to_string(root.join("action.yml")).unwrap();
    let script = fs::read_to_string(root.join("scripts/action/run")).unwrap();
    let inputs_block = action
        .split_once("\ninputs:\n")
        .and_then(|(_, rest)| rest.split_once("\noutputs:\n"))
        .map(|(block, _)| block)
        .expect("action.yml has inputs: then outputs:");
    let inputs: Vec<&str> = inputs_block
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.strip_suffix(':'))
        .filter(|name| !name.starts_with(' '))
        .collect();
    assert!(inputs.len() > 30, "{inputs:?}");
    for name in inputs {
        if name == "imgbuild" || name == "github-token" {
            continue;
        }
        let variable = format!("INPUT_{}", name.to_uppercase().replace('-', "_"));
        let mapping = format!("{variable}: ${{{{ inputs.{name} }}}}");
        assert!(action.contains(&mapping), "action.yml lacks `{mapping}`");
        assert!(
            script.contains(&format!("${{{variable}:-"))
                || script.contains(&format!("{}:{name}", &variable["INPUT_".len()..])),
            "scripts/action/run never reads {variable}"
        );
    }
}

/// The other inputs of build-push-action, as it gives them, reach the build: `add-hosts`,
/// `shm-size`, `ulimit` and `ssh` every RUN; `build-contexts` the names; `no-cache-filters`
/// the stages; `annotations` the manifest written by `outputs`, beside `load`.
#[test]
fn run_option_and_context_inputs_reach_the_build() {
    let context = context_with(
        "FROM base AS fetch
         RUN echo fetched > /fetched
         FROM base
         COPY --from=fetch /fetched /fetched
         RUN --mount=type=ssh grep -wE 'db|cache' /etc/hosts > /hosts && df -k /dev/shm | tail -n 1 > /shm \\\n\
          && ulimit -n > /nofile && ulimit -Hn >> /nofile && test -S \"$SSH_AUTH_SOCK\" && echo agent > /ssh\n",
    );
    let agent_dir = tempdir();
    // The agent holds a key; the RUN only checks that the socket is forwarded.
    let agent = ssh_agent::SshAgent::start(agent_dir.path()).unwrap();
    let tag = format!("imgbuild-test/{}:1", unique_name("action-run-options"));
    let layout = agent_dir.path().join("layout");
    let job = Job::new();
    let out = job
        .command(&[
            ("CONTEXT", &context.path().display().to_string()),
            ("TAGS", &tag),
            ("LOAD", "true"),
            ("OUTPUTS", &format!("type=oci,dest={}", layout.display())),
            (
                "ANNOTATIONS",
                "org.opencontainers.image.description=from the action\n",
            ),
            (
                "BUILD_CONTEXTS",
                &format!("base=docker-image://{}", support::busybox_in_registry()),
            ),
            ("NO_CACHE_FILTERS", "fetch"),
            ("ADD_HOSTS", "db:10.0.0.2,cache:10.0.0.3"),
            ("SHM_SIZE", "128m"),
            ("ULIMIT", "nofile=1000:2000\n"),
            ("SSH", "default"),
        ])
        .env("SSH_AUTH_SOCK", agent.socket())
        .output()
        .unwrap();
    drop(agent);
    let shown = job.everything_shown(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("cache miss: --no-cache-filter fetch"),
        "{shown}"
    );
    let read = |path: &str| support::docker_ok(["run", "--rm", tag.as_str(), "cat", path]);
    assert_eq!(read("/hosts"), "10.0.0.2\tdb\n10.0.0.3\tcache\n");
    assert!(read("/shm").contains(" 131072 "), "{}", read("/shm"));
    assert_eq!(read("/nofile"), "1000\n2000\n");
    assert_eq!(read("/ssh"), "agent\n");
    assert_eq!(read("/fetched"), "fetched\n");
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}", layout.display()))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.description"],
        "from the action"
    );
    support::docker_ok(["rmi", tag.as_str()]);
}

/// `platforms` with two platforms pushes one index: the step's digest and imageid are the
/// index's, as build-push-action reports them for a multi-platform build.
#[test]
fn the_platforms_input_pushes_one_index() {
    let context = tempdir();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {}\nCOPY app.txt /app.txt\n",
            support::busybox_multi_in_registry()
        ),
    )
    .unwrap();
    std::fs::write(context.path().join("app.txt"), "app\n").unwrap();
    let repository = format!("imgbuild-test/{}", unique_name("action-multi"));
    let tag = format!("{}/{repository}:1", env().registry);
    let job = Job::new();
    let context = context.path().display().to_string();
    let out = job.run(&[
        ("CONTEXT", &context),
        ("TAGS", &tag),
        ("PUSH", "true"),
        ("PLATFORMS", "linux/amd64,\nlinux/arm64"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (pushed, index) = tagged_manifest(&repository, "1");
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let architectures: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(architectures, ["amd64", "arm64"]);
    let outputs = job.outputs();
    assert_eq!(outputs["digest"], pushed);
    assert_eq!(outputs["imageid"], pushed);
}
