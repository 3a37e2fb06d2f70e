//! `imgbuild build` end to end, against the real engine and registry of the test
//! environment: build stages in the engine, the packaging stage written directly, the step
//! cache and its miss reasons, outputs, failures and interrupts.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A build context in a temp dir, with its own cache dir.
struct Project {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Project {
    fn new(dockerfile: &str, files: &[(&str, &str)]) -> Project {
        let dir = support::tempdir();
        let dockerfile = dockerfile.replace("BUSYBOX", &support::busybox_in_registry());
        fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
        for (name, content) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        Project {
            dir,
            cache: support::tempdir(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut all = vec!["--progress", "plain"];
        all.extend_from_slice(args);
        self.command_as_given(&all)
    }

    fn command_as_given(&self, args: &[&str]) -> Command {
        self.command_with_cache(self.cache.path(), args)
    }

    /// A build of this project with another project's cache dir.
    fn command_with_cache(&self, cache: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(support::imgbuild_bin());
        cmd.args(["build", "--cache-dir"])
            .arg(cache)
            .args(args)
            .arg(self.path())
            .env("DOCKER_HOST", &support::env().docker_host)
            .env("HOME", cache)
            .env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    fn build(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("imgbuild runs")
    }

    fn build_ok(&self, args: &[&str]) -> String {
        let out = self.build(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "imgbuild failed ({}):\n{stderr}",
            out.status
        );
        stderr
    }
}

/// The manifest digest from the build summary.
const TWO_STAGES: &str = "\
FROM BUSYBOX AS build
WORKDIR /src
COPY deps.lock ./
RUN date +%s%N > /deps-stamp && cat deps.lock > /deps
COPY lib lib
RUN cat /deps lib/* > /out.txt

FROM BUSYBOX
WORKDIR /app
COPY --from=build /out.txt ./
COPY --from=build /deps-stamp ./
CMD [\"cat\", \"/app/out.txt\"]
";

fn two_stages() -> Project {
    Project::new(
        TWO_STAGES,
        &[("deps.lock", "dep 1\n"), ("lib/a.txt", "source a\n")],
    )
}

fn run_image(tag: &str, args: &[&str]) -> String {
    let mut all = vec!["run", "--rm", "--network", "none", tag];
    all.extend_from_slice(args);
    support::docker_ok(all)
}

/// `docker build` with BuildKit on `dir`, tagged `tag`, with `extra` flags; its output.
fn buildkit(dir: &Path, tag: &str, extra: &[&str]) -> Output {
    Command::new(support::DOCKER_CLI)
        .args(["build", "--network", "host", "-t", tag])
        .args(extra)
        .arg(dir)
        .env("DOCKER_HOST", &support::env().docker_host)
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .expect("docker build runs")
}

/// FROM and `COPY --from` an image only the engine has (a name no registry knows, or a
/// registry name under which the registry holds another image) use the engine's image, as
/// BuildKit does on the same engine; `--pull` takes the registry's, and fails where
/// BuildKit's `--pull` fails. A second build finds the image in its blob store.
#[test]
fn an_image_the_engine_holds_is_the_one_from_names() {
    let busybox = support::busybox_in_registry();
    // Only the engine has this one: the busybox image under a Docker Hub name.
    let local = format!("{}:1", support::unique_name("local-only"));
    support::docker_ok(["tag", busybox.as_str(), local.as_str()]);
    // A registry name whose registry image is another: the engine has busybox under it.
    let other = Project::new(
        "FROM BUSYBOX\nCOPY marker /marker\n",
        &[("marker", "registry's\n")],
    );
    let shadowed = format!(
        "{}/{}:1",
        support::env().registry,
        support::unique_name("shadowed")
    );
    other.build_ok(&["--push", "-t", &shadowed]);
    support::docker_ok(["tag", busybox.as_str(), shadowed.as_str()]);

    let dockerfile = format!(
        "FROM {local}\nRUN echo from-local > /f && ls /marker > /marker-seen 2>&1 || true\n\
         COPY --from={shadowed} / /shadowed/\nCMD [\"sh\", \"-c\", \"cat /f /marker-seen; ls /shadowed/marker 2>&1 || true\"]\n"
    );
    let project = Project::new(&dockerfile, &[]);
    let bk_tag = support::unique_name("engine-held-buildkit");
    let out = buildkit(project.path(), &bk_tag, &[]);
    assert!(
        out.status.success(),
        "BuildKit failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = run_image(&bk_tag, &[]);
    assert!(expected.starts_with("from-local\n"), "{expected}");
    assert!(
        expected.contains("/shadowed/marker: No such file"),
        "{expected}"
    );

    for executor in ["native", "engine"] {
        let tag = support::unique_name(&format!("engine-held-{executor}"));
        let stderr = project.build_ok(&["--executor", executor, "-t", &tag]);
        assert!(stderr.contains("the engine has docker.io/"), "{stderr}");
        assert_eq!(run_image(&tag, &[]), expected, "{executor}");
        support::docker_ok(["rmi", tag.as_str()]);
    }
    // The second build (same cache dir) takes the image from the blob store: no docker save.
    let stderr = project.build_ok(&["--no-cache", "-t", &bk_tag]);
    assert!(!stderr.contains("docker save"), "{stderr}");

    // --pull: the registry's or nothing, for BuildKit and imgbuild alike.
    let out = buildkit(project.path(), &bk_tag, &["--pull"]);
    assert!(
        !out.status.success(),
        "BuildKit --pull should fail on {local}"
    );
    let out = project.build(&["--pull", "-t", &bk_tag]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for tag in [&bk_tag, &local, &shadowed] {
        support::docker_ok(["rmi", tag.as_str()]);
    }
}

/// A base the engine lacks goes into it while the build stage runs: the final load sends
/// only the layer built on it, and the base leaves no image of its own behind.
#[test]
fn a_base_the_engine_lacks_is_loaded_during_the_build_and_not_left_behind() {
    // A base only the registry has: busybox (which the engine holds) and a layer of its own.
    let marker = support::unique_name("marker");
    let base = Project::new(
        "FROM BUSYBOX\nCOPY marker /marker\n",
        &[("marker", &format!("{marker}\n"))],
    );
    let base_ref = format!(
        "{}/{}:latest",
        support::env().registry,
        support::unique_name("base")
    );
    let pushed = base.build_ok(&["--push", "-t", &base_ref]);
    let base_id = pushed
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("image id")
                .map(|id| id.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no image id in:\n{pushed}"));
    for executor in ["engine", "native"] {
        let project = Project::new(
            &format!(
                "FROM BUSYBOX AS build\nRUN echo {executor} > /out\nFROM {base_ref}\nCOPY --from=build /out /out\n"
            ),
            &[],
        );
        let tag = support::unique_name("preload");
        let out = project.build_ok(&["--executor", executor, "-t", &tag]);
        assert!(
            out.contains("engine (1 of 3 layers sent; the engine had the others)"),
            "{executor}: {out}"
        );
        assert_eq!(
            run_image(&tag, &["cat", "/marker", "/out"]),
            format!("{marker}\n{executor}\n")
        );
        let inspected = support::docker(["image", "inspect", base_id.as_str()]);
        assert!(
            !inspected.status.success(),
            "{executor}: the base is left in the engine as an image of its own"
        );
    }
}

#[test]
fn build_run_rebuild_and_explain_misses() {
    let project = two_stages();
    let tag = support::unique_name("two-stages");
    let first = project.build_ok(&["-t", &tag]);
    assert_eq!(run_image(&tag, &[]), "dep 1\nsource a\n");
    let stamp = run_image(&tag, &["cat", "/app/deps-stamp"]);

    // Nothing changed: every step is cached and the digest is the same.
    let second = project.build_ok(&["-t", &tag]);
    assert_eq!(
        support::summary_digest(&first),
        support::summary_digest(&second)
    );
    assert!(second.contains("8 of 8 steps cached, 0 run"), "{second}");

    // A source change re-runs only what follows `COPY lib lib`: the deps step keeps its stamp.
    fs::write(project.path().join("lib/a.txt"), "source b\n").unwrap();
    let third = project.build_ok(&["-t", &tag]);
    assert!(third.contains("cache miss: lib/a.txt changed"), "{third}");
    // The engine has the previous image under the tag: only the layers from the changed
    // `COPY --from=build /out.txt` on (that one and the stamp's after it) are sent again.
    assert!(third.contains("engine (2 of "), "{third}");
    assert_eq!(run_image(&tag, &[]), "dep 1\nsource b\n");
    assert_eq!(run_image(&tag, &["cat", "/app/deps-stamp"]), stamp);

    // A lockfile change re-runs the deps step, and says why.
    fs::write(project.path().join("deps.lock"), "dep 2\n").unwrap();
    let fourth = project.build_ok(&["-t", &tag]);
    assert!(
        fourth.contains("COPY deps.lock ./\n#") || fourth.contains("COPY deps.lock ./"),
        "{fourth}"
    );
    assert!(fourth.contains("cache miss: deps.lock changed"), "{fourth}");
    assert_ne!(run_image(&tag, &["cat", "/app/deps-stamp"]), stamp);
    support::docker_ok(["rmi", tag.as_str()]);
}

/// An image that only goes to the engine gets plain tar layers: the engine stores layers
/// unpacked, and its image id comes from the uncompressed digests, so it is the id the
/// same build written as an OCI layout (gzip layers) has. Builds with other outputs still
/// find every step in the cache: a recorded layer is compressed again as they write
/// layers, which gives the blob a run of the step would. The summary and `--metadata-file`
/// name the engine's image by its id, as BuildKit's engine export does.
#[test]
fn an_image_only_for_the_engine_has_plain_layers_and_the_same_id() {
    let dockerfile = TWO_STAGES.replace("COPY --from=build /deps-stamp ./\n", "");
    let project = Project::new(
        &dockerfile,
        &[("deps.lock", "dep 1\n"), ("lib/a.txt", "source a\n")],
    );
    let tag = support::unique_name("plain-layers");
    let metadata = project.cache.path().join("metadata.json");
    let to_engine = project.build_ok(&["-t", &tag, "--metadata-file", metadata.to_str().unwrap()]);
    assert_eq!(run_image(&tag, &[]), "dep 1\nsource a\n");
    let engine_id = support::docker_ok(["image", "inspect", "--format", "{{.Id}}", &tag]);
    let engine_id = engine_id.trim();
    assert_eq!(support::summary_image_id(&to_engine), engine_id);

    let json = |path: &Path| -> serde_json::Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    };
    // The engine keeps no manifest: the image is named by its ID, as BuildKit's engine
    // export names it, and no descriptor is recorded.
    assert_eq!(support::summary_digest(&to_engine), engine_id);
    assert_eq!(
        json(&metadata),
        serde_json::json!({
            "containerimage.config.digest": engine_id,
            "containerimage.digest": engine_id,
            "image.name": tag,
        })
    );
    // The layers of the image in an OCI layout, by media type.
    let layer_types = |layout: &Path| -> (String, Vec<String>) {
        let blob = |digest: &serde_json::Value| {
            let digest = digest.as_str().unwrap().trim_start_matches("sha256:");
            layout.join("blobs/sha256").join(digest)
        };
        let index = json(&layout.join("index.json"));
        let manifest = json(&blob(&index["manifests"][0]["digest"]));
        let types = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap().to_owned())
            .collect();
        (
            manifest["config"]["digest"].as_str().unwrap().to_owned(),
            types,
        )
    };

    let gzip = project.cache.path().join("gzip");
    let to_gzip = project.build_ok(&["--output", &format!("type=oci,dest={}", gzip.display())]);
    assert!(to_gzip.contains("7 of 7 steps cached, 0 run"), "{to_gzip}");
    assert_eq!(
        support::summary_digest(&to_gzip),
        json(&gzip.join("index.json"))["manifests"][0]["digest"]
    );
    let (config, types) = layer_types(&gzip);
    assert_eq!(config, engine_id);
    assert!(types.iter().all(|m| m.ends_with("gzip")), "{types:?}");

    // The layers the engine got, in a layout: the base's as they are, imgbuild's own
    // (WORKDIR /app and the COPY --from) as plain tars. A manifest of its own names it.
    let plain = project.cache.path().join("plain");
    let to_plain = project.build_ok(&[
        "--compression",
        "uncompressed",
        "--output",
        &format!("type=oci,dest={}", plain.display()),
    ]);
    assert!(
        to_plain.contains("7 of 7 steps cached, 0 run"),
        "{to_plain}"
    );
    assert_ne!(
        support::summary_digest(&to_plain),
        support::summary_digest(&to_gzip)
    );
    let (config, types) = layer_types(&plain);
    assert_eq!(config, engine_id);
    let (base, own) = types.split_at(types.len() - 2);
    assert!(
        base.iter().all(|m| m.ends_with("gzip"))
            && own
                .iter()
                .all(|m| m == "application/vnd.oci.image.layer.v1.tar"),
        "{types:?}"
    );
    support::docker_ok(["rmi", tag.as_str()]);
}

#[test]
fn fresh_clones_with_other_mtimes_give_the_same_digest() {
    let a = two_stages();
    let b = two_stages();
    // Different mtimes and modes from another umask must not matter.
    for entry in ["deps.lock", "lib/a.txt"] {
        let path = b.path().join(entry);
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).unwrap();
    }
    let oci_a = a.cache.path().join("out");
    let oci_b = b.cache.path().join("out");
    let da = support::summary_digest(
        &a.build_ok(&["--output", &format!("type=oci,dest={}", oci_a.display())]),
    );
    let db = support::summary_digest(
        &b.build_ok(&["--output", &format!("type=oci,dest={}", oci_b.display())]),
    );
    // The build stage stamps the time, but only what the final stage copies counts: the
    // stamp differs, so compare an image without it.
    assert_ne!(da, "");
    let without_stamp = TWO_STAGES.replace("COPY --from=build /deps-stamp ./\n", "");
    let c = Project::new(
        &without_stamp,
        &[("deps.lock", "dep 1\n"), ("lib/a.txt", "source a\n")],
    );
    let d = Project::new(
        &without_stamp,
        &[("deps.lock", "dep 1\n"), ("lib/a.txt", "source a\n")],
    );
    let path = d.path().join("lib/a.txt");
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    let dc = support::summary_digest(&c.build_ok(&[
        "--output",
        &format!("type=oci,dest={}", c.cache.path().join("o").display()),
    ]));
    let dd = support::summary_digest(&d.build_ok(&[
        "--output",
        &format!("type=oci,dest={}", d.cache.path().join("o").display()),
    ]));
    assert_eq!(dc, dd);
    let _ = db;
}

#[test]
fn outputs_push_and_records() {
    let project = Project::new(
        "FROM BUSYBOX\nWORKDIR /app\nCOPY hello.txt ./\nENV GREETING=hi\nEXPOSE 4000\nUSER nobody\nCMD [\"cat\", \"hello.txt\"]\n",
        &[("hello.txt", "hello\n")],
    );
    let out = project.cache.path();
    let registry = &support::env().registry;
    let tag = format!(
        "{registry}/imgbuild-test/outputs:{}",
        support::unique_name("t").replace('-', "")
    );
    let oci_dir = out.join("layout");
    let oci_tar = out.join("layout.tar");
    let docker_tar = out.join("docker.tar");
    let iid = out.join("iid");
    let meta = out.join("meta.json");
    let stderr = project.build_ok(&[
        "-t",
        &tag,
        "--push",
        "--output",
        &format!("type=oci,dest={}", oci_dir.display()),
        "--output",
        &format!("type=oci,dest={}", oci_tar.display()),
        "--output",
        &format!("type=docker,dest={}", docker_tar.display()),
        "--iidfile",
        iid.to_str().unwrap(),
        "--metadata-file",
        meta.to_str().unwrap(),
    ]);
    let digest = support::summary_digest(&stderr);
    let skopeo = |what: &str| {
        let out = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", what])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(
        skopeo(&format!("docker://{tag}"))["Digest"],
        digest.as_str()
    );
    assert_eq!(
        skopeo(&format!("oci:{}", oci_dir.display()))["Digest"],
        digest.as_str()
    );
    assert_eq!(
        skopeo(&format!("oci-archive:{}", oci_tar.display()))["Digest"],
        digest.as_str()
    );
    let inspected = skopeo(&format!("docker-archive:{}", docker_tar.display()));
    assert_eq!(
        inspected["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| *e == "GREETING=hi")
            .count(),
        1
    );

    let metadata: serde_json::Value = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
    assert_eq!(metadata["containerimage.digest"], digest.as_str());
    let iid = fs::read_to_string(&iid).unwrap();
    assert_eq!(metadata["containerimage.config.digest"], iid.as_str());
    assert_eq!(metadata["image.name"], tag.as_str());

    // The pushed image runs, as the user the Dockerfile names.
    support::docker_ok(["pull", tag.as_str()]);
    assert_eq!(run_image(&tag, &[]), "hello\n");
    assert_eq!(run_image(&tag, &["id", "-un"]), "nobody\n");
    support::docker_ok(["rmi", tag.as_str()]);
}

/// `sha256:` and 64 lowercase hex digits, then a newline: what `docker build -q` prints.
fn is_image_id_line(stdout: &str) -> bool {
    stdout.strip_prefix("sha256:").is_some_and(|rest| {
        rest.len() == 65
            && rest.ends_with('\n')
            && rest[..64]
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// `-q` prints the image ID as BuildKit's `docker build -q` does, so that `docker run
/// $(imgbuild -q .)` runs the image; the same ID is in `--iidfile`. A failure prints
/// nothing on standard output.
#[test]
fn quiet_prints_the_image_id_as_buildkit_does() {
    let project = Project::new(
        "FROM BUSYBOX\nCOPY x /x\nCMD [\"cat\", \"/x\"]\n",
        &[("x", "quiet\n")],
    );
    let out = project
        .command_as_given(&[
            "--progress",
            "quiet",
            "--output",
            "type=oci,dest=/dev/null/never",
        ])
        .output()
        .unwrap();
    // An unwritable output is a failure, reported on stderr only.
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());

    let iidfile = project.cache.path().join("iid");
    let tag = support::unique_name("quiet");
    let out = project
        .command_as_given(&["-q", "-t", &tag, "--iidfile", iidfile.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(is_image_id_line(&stdout), "{stdout:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout.trim();
    assert_eq!(fs::read_to_string(&iidfile).unwrap(), id);
    let inspected = support::docker_ok(["image", "inspect", "--format", "{{.Id}}", &tag]);
    assert_eq!(inspected.trim(), id);
    assert_eq!(run_image(id, &[]), "quiet\n");

    // BuildKit prints the same kind of line: its image's ID, which runs.
    let buildkit = support::unique_name("quiet-buildkit");
    let output = Command::new(support::DOCKER_CLI)
        .args(["build", "--network", "host", "-q", "-t", &buildkit])
        .arg(project.path())
        .env("DOCKER_HOST", &support::env().docker_host)
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .expect("docker build runs");
    assert!(
        output.status.success(),
        "BuildKit failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let buildkit_stdout = String::from_utf8(output.stdout).unwrap();
    assert!(is_image_id_line(&buildkit_stdout), "{buildkit_stdout:?}");
    let buildkit_id = support::docker_ok(["image", "inspect", "--format", "{{.Id}}", &buildkit]);
    assert_eq!(buildkit_stdout.trim(), buildkit_id.trim());
    assert_eq!(run_image(buildkit_stdout.trim(), &[]), "quiet\n");
    for tag in [&tag, &buildkit] {
        support::docker_ok(["rmi", tag.as_str()]);
    }
}

#[test]
fn a_failing_run_exits_1_with_the_step_and_its_output() {
    let project = Project::new(
        "FROM BUSYBOX AS build\nRUN echo first line && echo boom >&2 && exit 3\nFROM BUSYBOX\nCOPY --from=build /x /x\n",
        &[],
    );
    let child = project
        .command(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: ") && stderr.contains("Dockerfile:2"),
        "{stderr}"
    );
    assert!(stderr.contains("RUN echo first line"), "{stderr}");
    assert!(
        stderr.contains("exit code 3") || stderr.contains("exited with 3"),
        "{stderr}"
    );
    assert!(stderr.contains("boom"), "{stderr}");
    assert_eq!(support::containers_of(pid), Vec::<String>::new());
}

#[test]
fn a_dockerfile_error_exits_2_with_its_location() {
    let project = Project::new(
        "FROM BUSYBOX\nCOPY --from=nowhere-stage /a /a\nRUN true\nRUNN x\n",
        &[],
    );
    let out = project.build(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Dockerfile:4:1: unknown instruction: RUNN (did you mean RUN?)"),
        "{stderr}"
    );
}

/// A COPY source missing from the context names the Dockerfile line, in a build stage (the
/// engine) and in the packaging stage.
#[test]
fn a_missing_context_file_is_reported_at_its_line() {
    for text in [
        "FROM BUSYBOX AS build\nRUN true\nCOPY missing.txt /m\nRUN true\nFROM BUSYBOX\nCOPY --from=build /m /m\n",
        "FROM BUSYBOX\nCOPY here.txt /h\nCOPY missing.txt /m\n",
    ] {
        let project = Project::new(text, &[("here.txt", "h\n")]);
        let out = project.build(&[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("Dockerfile:3"), "{stderr}");
        assert!(stderr.contains("COPY missing.txt"), "{stderr}");
    }
}

#[test]
fn a_run_after_copy_from_in_the_final_stage() {
    let project = Project::new(
        "FROM BUSYBOX AS build\nRUN echo made > /made\nFROM BUSYBOX\nCOPY --from=build /made /made\nRUN cat /made /made > /twice && rm /bin/vi\nRUN true\nCMD [\"cat\", \"/twice\"]\n",
        &[],
    );
    let tag = support::unique_name("run-after-copy");
    let first = project.build_ok(&["-t", &tag]);
    assert_eq!(run_image(&tag, &[]), "made\nmade\n");
    // The deleted file is a whiteout in the RUN's layer.
    let ls = support::docker(["run", "--rm", tag.as_str(), "ls", "/bin/vi"]);
    assert!(!ls.status.success());
    let second = project.build_ok(&["-t", &tag]);
    assert_eq!(
        support::summary_digest(&first),
        support::summary_digest(&second)
    );
    support::docker_ok(["rmi", tag.as_str()]);
}

#[test]
fn an_interrupted_build_leaves_no_container() {
    for executor in ["engine", "native"] {
        interrupted_build_leaves_nothing(executor);
    }
}

/// Ctrl-C in a RUN: the build exits 130, its containers (the engine's, or the OCI
/// runtime's in the cache dir) are gone, and the next build with the same cache dir works
/// and leaves no mount there.
fn interrupted_build_leaves_nothing(executor: &str) {
    let project = Project::new(
        "FROM BUSYBOX AS build\nRUN echo started && sleep 60\nFROM BUSYBOX\nCOPY --from=build /x /x\n",
        &[],
    );
    let mut child = project
        .command(&["--executor", executor])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let containers = || support::containers_of_executor(executor, project.cache.path(), pid);
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers().is_empty() || (executor == "engine" && !running(pid)) {
        assert!(
            Instant::now() < deadline,
            "{executor}: the RUN never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{executor}");
    assert_eq!(containers(), Vec::<String>::new(), "{executor}");
    // The next build works.
    let fixed = Project::new(
        "FROM BUSYBOX AS build\nRUN echo ok > /x\nFROM BUSYBOX\nCOPY --from=build /x /x\n",
        &[],
    );
    let out = fixed
        .command_with_cache(project.cache.path(), &["--executor", executor])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{executor}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        support::mounts_in(project.cache.path()),
        Vec::<String>::new(),
        "{executor}: a mount is left in the cache dir"
    );
}

/// Whether a container of `pid` is running.
fn running(pid: u32) -> bool {
    let names = support::docker_ok(["ps", "--format", "{{.Names}}"]);
    names.lines().any(|n| {
        n.starts_with("imgbuild-") && n.split('-').nth(3) == Some(pid.to_string().as_str())
    })
}

#[test]
fn a_final_stage_built_on_a_build_stage() {
    let project = Project::new(
        "FROM BUSYBOX AS base\nRUN echo base > /base\nWORKDIR /data\nWORKDIR /\nRUN true\nFROM base\nCOPY x /x\nCMD [\"cat\", \"/base\", \"/x\"]\n",
        &[("x", "x\n")],
    );
    let tag = support::unique_name("on-stage");
    let first = project.build_ok(&["-t", &tag]);
    assert_eq!(run_image(&tag, &[]), "base\nx\n");
    assert_eq!(run_image(&tag, &["ls", "-d", "/data"]), "/data\n");
    let second = project.build_ok(&["-t", &tag]);
    assert_eq!(
        support::summary_digest(&first),
        support::summary_digest(&second)
    );
    support::docker_ok(["rmi", tag.as_str()]);
}

/// An ONBUILD of a base stage that copies from another stage: that stage is built first,
/// as current BuildKit builds it (testOnBuildInheritedStageWithFrom; v0.8 here cannot).
#[test]
fn an_onbuild_trigger_of_a_base_stage_copies_from_its_own_stage() {
    let project = Project::new(
        "FROM BUSYBOX AS src\nRUN mkdir -p /in && echo -n 12 > /in/file\n\
         FROM BUSYBOX AS base\nONBUILD COPY --from=src /in/file /out/foo\n\
         FROM base AS mid\nRUN cp /out/foo /out/bar\n\
         FROM BUSYBOX\nCOPY --from=mid /out/bar /\nCMD [\"cat\", \"/bar\"]\n",
        &[],
    );
    let mut digests = Vec::new();
    for executor in ["native", "engine"] {
        let tag = support::unique_name(&format!("onbuild-from-{executor}"));
        let out = project.build_ok(&["--executor", executor, "-t", &tag]);
        assert_eq!(run_image(&tag, &[]), "12", "{executor}: {out}");
        digests.push(support::summary_digest(&out));
        support::docker_ok(["rmi", tag.as_str()]);
    }
    assert_eq!(digests[0], digests[1], "both executors give one image");
}

/// A base image's ONBUILD triggers may use a stage or an image nothing else in the build
/// names: current BuildKit builds and pulls those too (testOnBuildNewDeps, which this
/// follows). BuildKit v0.8 here does not: it dispatches only the stages reachable before
/// the triggers are read, and copies from the bare base of such a stage.
#[test]
fn a_base_images_onbuild_triggers_bring_in_stages_and_images_nothing_else_names() {
    let push = |dockerfile: &str, name: &str| {
        let reference = format!(
            "{}/{}:latest",
            support::env().registry,
            support::unique_name(name)
        );
        Project::new(dockerfile, &[]).build_ok(&["--push", "-t", &reference]);
        reference
    };
    // A trigger copying from an image, and one whose RUN mounts a stage of the child.
    let copies = push(
        "FROM BUSYBOX\nONBUILD COPY --from=BUSYBOX /bin/busybox /out/busybox-copy\n",
        "onbuild-image",
    );
    let mounts = push(
        "FROM BUSYBOX\nONBUILD RUN --mount=type=bind,target=/in,from=inputstage \
         mkdir -p /out && cat /in/foo > /out/bar && wc -c < /in/out/busybox-copy > /out/bar2\n",
        "onbuild-mount",
    );
    let project = Project::new(
        &format!(
            "FROM {copies} AS inputstage\nRUN echo -n foo > /foo\n\
             FROM BUSYBOX AS unused\nRUN false\n\
             FROM {mounts} AS base\nRUN echo -n bar3 > /out/bar3\n\
             FROM BUSYBOX\nCOPY --from=base /out /out\nCMD [\"cat\", \"/out/bar\", \"/out/bar3\"]\n"
        ),
        &[],
    );
    let size = run_image(
        &support::busybox_in_registry(),
        &["sh", "-c", "wc -c < /bin/busybox"],
    );
    let mut digests = Vec::new();
    for executor in ["native", "engine"] {
        let tag = support::unique_name(&format!("onbuild-deps-{executor}"));
        let out = project.build_ok(&["--executor", executor, "-t", &tag]);
        assert_eq!(run_image(&tag, &[]), "foobar3", "{executor}: {out}");
        assert_eq!(
            run_image(&tag, &["cat", "/out/bar2"]),
            size,
            "{executor}: the trigger's COPY --from an image ran in inputstage"
        );
        digests.push(support::summary_digest(&out));
        support::docker_ok(["rmi", tag.as_str()]);
    }
    assert_eq!(digests[0], digests[1], "both executors give one image");
}

/// A stage that a base image's trigger brings in takes its FROM image for its own
/// `--platform`, even when the build pulled that name for another platform before it read
/// the triggers for a stage's FROM (the pull of each round is keyed on the platforms of the
/// rounds before).
#[test]
fn a_trigger_brings_in_a_stage_of_another_platform_than_an_image_pulled_before() {
    let multi = support::busybox_multi_in_registry();
    let base = format!(
        "{}/{}:latest",
        support::env().registry,
        support::unique_name("onbuild-platform")
    );
    Project::new(
        "FROM BUSYBOX\nONBUILD COPY --from=armstage /bin/busybox /arm-busybox\n",
        &[],
    )
    .build_ok(&["--push", "-t", &base]);
    let project = Project::new(
        &format!(
            "FROM --platform=linux/arm64 {multi} AS armstage\n\
             FROM {multi} AS amdstage\n\
             FROM {base}\n\
             COPY --from=amdstage /bin/busybox /amd-busybox\n"
        ),
        &[],
    );
    // An ELF header's e_machine: x86-64 and AArch64.
    let machine = |path: &Path| {
        let bytes = fs::read(path).unwrap();
        u16::from_le_bytes([bytes[18], bytes[19]])
    };
    for executor in ["native", "engine"] {
        let dest = project.path().join(format!("out-{executor}"));
        let output = format!("type=local,dest={}", dest.display());
        project.build_ok(&["--executor", executor, "--output", &output]);
        assert_eq!(machine(&dest.join("amd-busybox")), 0x3e, "{executor}");
        assert_eq!(machine(&dest.join("arm-busybox")), 0xb7, "{executor}");
    }
}

/// A symbolic `--chmod` changes each copied entry's own mode, as current BuildKit applies
/// it (Dockerfile 1.14: fsutil's copy with `ModeStr`; fsutil's TestCopyModeTextFormat).
/// BuildKit v0.8 here ignores a non-octal `--chmod`, so the modes are asserted, and the
/// conformance case `copy-chmod-symbolic` checks everything else against it.
#[test]
fn a_symbolic_chmod_changes_each_copied_entrys_mode() {
    let dockerfile = "FROM BUSYBOX AS build\n\
         RUN mkdir -p /m/tree/sub && cd /m/tree && echo a > plain && chmod 0644 plain \
         && echo b > tool && chmod 0755 tool && chmod 0750 sub && echo c > sub/f && chmod 0640 sub/f\n\
         FROM BUSYBOX\n\
         COPY --chmod=+x notes.txt /bin-x/\n\
         COPY --chmod=go-w,u+x app/ /app/\n\
         COPY --chmod=a=rX --from=build /m/tree /tree/\n\
         COPY --chmod=u=rwX,go=rX --from=build /m/tree /tree2\n\
         COPY --chmod=g+s,o-rwx --from=build /m/tree/tool /deep/new/dirs/tool\n";
    let paths = [
        "/bin-x",
        "/bin-x/notes.txt",
        "/app",
        "/app/sub",
        "/app/sub/inner.txt",
        "/tree",
        "/tree/plain",
        "/tree/tool",
        "/tree/sub",
        "/tree/sub/f",
        "/tree2",
        "/tree2/plain",
        "/tree2/tool",
        "/tree2/sub",
        "/tree2/sub/f",
        "/deep/new",
        "/deep/new/dirs/tool",
    ];
    let expected = [
        "755 /bin-x",
        "755 /bin-x/notes.txt",
        "755 /app",
        "755 /app/sub",
        "744 /app/sub/inner.txt",
        "755 /tree",
        "444 /tree/plain",
        "555 /tree/tool",
        "555 /tree/sub",
        "444 /tree/sub/f",
        "755 /tree2",
        "644 /tree2/plain",
        "755 /tree2/tool",
        "755 /tree2/sub",
        "644 /tree2/sub/f",
        "755 /deep/new",
        "2750 /deep/new/dirs/tool",
    ];
    let mut stat = vec!["stat", "-c", "%a %n"];
    stat.extend(paths);
    for executor in ["native", "engine"] {
        // As written (the packaging stage writes the layers) and with a RUN after (the
        // executor copies).
        for run in ["", "RUN true\n"] {
            let variant = Project::new(
                &format!("{dockerfile}{run}"),
                &[("notes.txt", "notes\n"), ("app/sub/inner.txt", "inner\n")],
            );
            let tag = support::unique_name(&format!("chmod-symbolic-{executor}"));
            let out = variant.build_ok(&["--executor", executor, "-t", &tag]);
            let modes = run_image(&tag, &stat);
            assert_eq!(
                modes.lines().collect::<Vec<_>>(),
                expected,
                "{executor}, {run:?}: {out}"
            );
            support::docker_ok(["rmi", tag.as_str()]);
        }
    }
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let project = Project::new(
        "FROM BUSYBOX AS a\nRUN date +%s > /start && sleep 3 && date +%s > /end\n\
         FROM BUSYBOX AS b\nRUN date +%s > /start && sleep 3 && date +%s > /end\n\
         FROM BUSYBOX\nCOPY --from=a /start /a-start\nCOPY --from=a /end /a-end\nCOPY --from=b /start /b-start\nCOPY --from=b /end /b-end\n",
        &[],
    );
    let tag = support::unique_name("parallel");
    project.build_ok(&["-t", &tag]);
    let read = |f: &str| run_image(&tag, &["cat", f]).trim().parse::<u128>().unwrap();
    let (a0, a1, b0, b1) = (
        read("/a-start"),
        read("/a-end"),
        read("/b-start"),
        read("/b-end"),
    );
    // Two RUNs that each sleep 3 s overlap only if the stages ran concurrently.
    assert!(
        a0 < b1 && b0 < a1,
        "stage a ran {a0}..{a1}, stage b {b0}..{b1}: one after the other"
    );
    support::docker_ok(["rmi", tag.as_str()]);
}

#[test]
fn copy_heredocs_in_a_build_stage_and_the_packaging_stage() {
    let project = Project::new(
        "\
FROM BUSYBOX AS build
COPY <<EOF /etc/greeting
hello from the build stage
EOF
RUN cat /etc/greeting > /out.txt

FROM BUSYBOX
WORKDIR /app
COPY --from=build /out.txt ./
COPY <<EOF /app/
from the packaging stage
EOF
COPY <<EOF <<OTHER /docs/
one
EOF
two
OTHER
",
        &[],
    );
    let tag = support::unique_name("heredocs");
    project.build_ok(&["-t", &tag]);
    assert_eq!(
        run_image(&tag, &["cat", "/app/out.txt"]),
        "hello from the build stage\n"
    );
    assert_eq!(
        run_image(&tag, &["cat", "/app/EOF"]),
        "from the packaging stage\n"
    );
    assert_eq!(
        run_image(&tag, &["cat", "/docs/EOF", "/docs/OTHER"]),
        "one\ntwo\n"
    );
    assert_eq!(
        run_image(&tag, &["stat", "-c", "%a %u", "/app/EOF"]),
        "644 0\n"
    );
    support::docker_ok(["rmi", tag.as_str()]);
}

/// The step cache is keyed on what a step reads, not on the instructions around it, so the
/// engine image a step starts from may come from another Dockerfile's build. What the step
/// sees must not depend on that: the second Dockerfile gives the same image after the first
/// filled the cache as from an empty one, and sees what BuildKit's RUN sees.
#[test]
fn a_cache_filled_by_another_dockerfile_changes_nothing() {
    let fills = Project::new(
        "FROM BUSYBOX\nENV LEAK=from-the-other-dockerfile\nUSER 1234:1234\nCOPY f.txt /f.txt\nRUN true\n",
        &[("f.txt", "shared\n")],
    );
    let reads_text = "FROM BUSYBOX AS build\nCOPY f.txt /f.txt\nRUN echo \"user=$(id -u):$(id -g) pwd=$(pwd) leak=[$LEAK]\" > /seen\nFROM build\nRUN echo \"child user=$(id -u) leak=[$LEAK]\" >> /seen\nCMD [\"cat\", \"/seen\"]\n";
    let reads = Project::new(reads_text, &[("f.txt", "shared\n")]);

    let alone = support::unique_name("reads-alone");
    let alone_digest = support::summary_digest(&reads.build_ok(&["-t", &alone]));

    fills.build_ok(&[]);
    let after = support::unique_name("reads-after");
    let out = reads
        .command_with_cache(fills.cache.path(), &["--progress", "plain", "-t", &after])
        .output()
        .expect("imgbuild runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "imgbuild failed:\n{stderr}");
    assert!(
        stderr.contains("CACHED") || stderr.contains("cached"),
        "the COPY should come from the other Dockerfile's build:\n{stderr}"
    );
    assert_eq!(support::summary_digest(&stderr), alone_digest);

    let buildkit = support::unique_name("reads-buildkit");
    let output = Command::new(support::DOCKER_CLI)
        .args(["build", "--network", "host", "-q", "-t", &buildkit])
        .arg(reads.path())
        .env("DOCKER_HOST", &support::env().docker_host)
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .expect("docker build runs");
    assert!(
        output.status.success(),
        "BuildKit failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = run_image(&buildkit, &[]);
    assert_eq!(expected, "user=0:0 pwd=/ leak=[]\nchild user=0 leak=[]\n");
    assert_eq!(run_image(&alone, &[]), expected);
    assert_eq!(run_image(&after, &[]), expected);
    for tag in [&alone, &after, &buildkit] {
        support::docker_ok(["rmi", tag.as_str()]);
    }
}

/// `--no-cache-filter STAGE` runs that stage's steps although they are cached, on both
/// executors; the stages before it stay cached, and the stages built on it run again with
/// what it gave this time. (BuildKit v0.8 has no such flag to compare with.)
#[test]
fn no_cache_filter_runs_the_named_stage_again() {
    for executor in ["native", "engine"] {
        let project = Project::new(
            "FROM BUSYBOX AS deps\n\
             RUN echo deps > /deps\n\
             FROM BUSYBOX AS Fetch\n\
             COPY --from=deps /deps /deps\n\
             RUN --mount=type=cache,target=/c,id=runs echo run >> /c/runs && wc -l < /c/runs > /runs\n\
             FROM BUSYBOX\n\
             COPY --from=fetch /runs /runs\n",
            &[],
        );
        let tag = support::unique_name("no-cache-filter");
        let build = |extra: &[&str]| {
            let mut args = vec!["--executor", executor, "-t", &tag];
            args.extend_from_slice(extra);
            project.build_ok(&args)
        };
        build(&[]);
        assert_eq!(run_image(&tag, &["cat", "/runs"]).trim(), "1");

        // Stage names are case-insensitive; an unknown one is a warning.
        let filtered = build(&["--no-cache-filter", "FETCH,nosuch"]);
        assert_eq!(run_image(&tag, &["cat", "/runs"]).trim(), "2", "{executor}");
        assert!(
            filtered.contains("cache miss: --no-cache-filter fetch"),
            "{filtered}"
        );
        assert!(
            filtered.contains("--no-cache-filter nosuch: the Dockerfile has no stage"),
            "{filtered}"
        );
        assert!(
            filtered.contains("RUN echo deps > /deps\n#3 CACHED"),
            "{filtered}"
        );
        assert!(
            filtered.contains("cache miss: the stage or image it copies from changed"),
            "{filtered}"
        );

        // Without the filter, everything comes from the cache again.
        let again = build(&[]);
        assert!(again.contains(" 0 run"), "{executor}: {again}");
        support::docker_ok(["rmi", tag.as_str()]);
    }
}

/// `--annotation` puts the annotations into the manifest that is pushed and written (as
/// BuildKit ≥ 0.12 does; v0.8 has no such flag), the same inputs giving the same digest;
/// index annotations and another platform's are refused before anything runs.
#[test]
fn annotations_are_in_the_pushed_and_written_manifest() {
    let project = Project::new("FROM BUSYBOX\nLABEL app=demo\n", &[]);
    let registry = &support::env().registry;
    let tag = format!(
        "{registry}/imgbuild-test/annotated:{}",
        support::unique_name("t").replace('-', "")
    );
    let raw = |what: &str| -> serde_json::Value {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", what])
            .output()
            .unwrap();
        assert!(out.status.success(), "{what}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let layout = |n: usize| project.cache.path().join(format!("layout-{n}"));
    let annotations = [
        "--annotation",
        "org.opencontainers.image.description=demo app",
        "--annotation",
        "manifest[linux/amd64]:com.example.team=ci",
    ];
    let mut digests = Vec::new();
    for n in 0..2 {
        let output = format!("type=oci,dest={}", layout(n).display());
        let mut args = vec!["-t", tag.as_str(), "--push", "--output", output.as_str()];
        args.extend_from_slice(&annotations);
        digests.push(support::summary_digest(&project.build_ok(&args)));
    }
    assert_eq!(digests[0], digests[1], "the same inputs, the same digest");
    for manifest in [
        raw(&format!("docker://{tag}")),
        raw(&format!("oci:{}", layout(0).display())),
    ] {
        assert_eq!(
            manifest["annotations"],
            serde_json::json!({
                "org.opencontainers.image.description": "demo app",
                "com.example.team": "ci",
            }),
            "{manifest}"
        );
    }

    for (annotation, message) in [
        ("index:a=b", "a single-platform image has no index"),
        (
            "manifest[linux/arm64]:a=b",
            "this build is for linux/amd64, not linux/arm64",
        ),
        ("nokey", "is not KEY=VALUE"),
    ] {
        let out = project.build(&["--annotation", annotation, "-o", "/tmp/never-written"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{annotation}: {stderr}");
        assert!(stderr.contains(message), "{annotation}: {stderr}");
        assert!(
            !stderr.contains("FROM"),
            "{annotation}: it started: {stderr}"
        );
    }
}

/// `--build-context NAME=docker-image://REF`, as BuildKit ≥ 0.10 applies it (v0.8 has no
/// such flag): a stage named NAME is replaced by the image (its RUN never runs), and a FROM
/// or `--from` naming no stage takes the image, matched as the same reference (`nosuch`
/// is `docker.io/library/nosuch:latest`). Forms not supported yet and a missing directory are
/// refused before anything runs.
#[test]
fn build_contexts_replace_stages_and_image_names() {
    let registry = &support::env().registry;
    let made = Project::new(
        "FROM BUSYBOX\nRUN echo from-context > /tools && echo marked > /marker\n",
        &[],
    );
    let image = format!(
        "{registry}/imgbuild-test/named-context:{}",
        support::unique_name("t").replace('-', "")
    );
    made.build_ok(&["-t", &image, "--push"]);

    let project = Project::new(
        "FROM BUSYBOX AS tools\n\
         RUN echo built-here > /tools\n\
         FROM nosuch:latest\n\
         COPY --from=tools /tools /tools\n\
         COPY --from=extra /marker /marker\n",
        &[],
    );
    let tag = support::unique_name("named-context");
    let with_image = |name: &str| format!("{name}=docker-image://{image}");
    let stderr = project.build_ok(&[
        "-t",
        &tag,
        "--build-context",
        &with_image("tools"),
        "--build-context",
        &with_image("EXTRA"),
        "--build-context",
        &format!(
            "docker.io/library/nosuch=docker-image://{}",
            support::busybox_in_registry()
        ),
    ]);
    assert!(!stderr.contains("RUN echo built-here"), "{stderr}");
    assert_eq!(
        run_image(&tag, &["cat", "/tools", "/marker"]),
        "from-context\nmarked\n"
    );
    support::docker_ok(["rmi", tag.as_str()]);

    for (spec, message) in [
        (
            "shared=https://example.com/context.tar.gz",
            "docker-image://, oci-layout:// and directories are supported, not a URL",
        ),
        (
            "shared=/nonexistent/imgbuild-dir",
            "/nonexistent/imgbuild-dir is not a directory",
        ),
        (
            "tools=docker-image://Not A Ref",
            "--build-context tools=docker-image://Not A Ref",
        ),
        ("=docker-image://x", "expected NAME=docker-image://REF"),
    ] {
        let out = project.build(&["--build-context", spec]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(message), "{spec}: {stderr}");
    }
}

/// `--build-context NAME=DIR` (BuildKit ≥ 0.10; v0.8 has no such flag): COPY --from=NAME
/// reads the directory as a build context of its own (its `.dockerignore` applies), in a
/// build stage on both executors and in the packaging stage; a stage named NAME is replaced
/// by it; a stage built on it starts from its files.
#[test]
fn a_directory_build_context_is_copied_from() {
    let shared = support::tempdir();
    fs::create_dir_all(shared.path().join("lib")).unwrap();
    fs::write(shared.path().join("lib/a.txt"), "a\n").unwrap();
    fs::write(shared.path().join("lib/b.txt"), "b\n").unwrap();
    fs::write(shared.path().join("secret.txt"), "left out\n").unwrap();
    fs::write(shared.path().join(".dockerignore"), "secret.txt\n").unwrap();
    let assets = support::tempdir();
    fs::write(assets.path().join("app.css"), "body {}\n").unwrap();
    let project = Project::new(
        "FROM BUSYBOX AS assets\n\
         RUN echo never > /never\n\
         FROM BUSYBOX AS build\n\
         COPY --from=shared lib/ /lib-shared/\n\
         RUN ls /lib-shared > /listing\n\
         FROM BUSYBOX\n\
         COPY --from=build /listing /listing\n\
         COPY --from=assets app.css /static/\n\
         COPY --from=Shared . /shared/\n",
        &[],
    );
    let shared_arg = format!("shared={}", shared.path().display());
    let assets_arg = format!("assets={}", assets.path().display());
    for executor in ["native", "engine"] {
        let tag = support::unique_name("local-context");
        let stderr = project.build_ok(&[
            "--executor",
            executor,
            "-t",
            &tag,
            "--build-context",
            &shared_arg,
            "--build-context",
            &assets_arg,
        ]);
        assert!(!stderr.contains("echo never"), "{stderr}");
        let listing = run_image(
            &tag,
            &[
                "sh",
                "-c",
                "cat /listing /static/app.css; ls -A /shared /shared/lib",
            ],
        );
        assert_eq!(
            listing,
            "a.txt\nb.txt\nbody {}\n/shared:\n.dockerignore\nlib\n\n/shared/lib:\na.txt\nb.txt\n",
            "{executor}"
        );
        support::docker_ok(["rmi", tag.as_str()]);
    }

    // A stage built on the directory starts from its files (FROM scratch, then them), and
    // RUN --mount from= it is refused before anything runs.
    let from_dir = Project::new("FROM shared\n", &[]);
    let tree = from_dir.cache.path().join("tree");
    let output = format!("type=local,dest={}", tree.display());
    from_dir.build_ok(&["--build-context", &shared_arg, "--output", &output]);
    let mut files: Vec<String> = walkdir(&tree);
    files.sort();
    assert_eq!(files, [".dockerignore", "lib", "lib/a.txt", "lib/b.txt"]);
    let mounted = Project::new(
        "FROM BUSYBOX\nRUN --mount=from=shared,target=/s ls /s\n",
        &[],
    );
    let out = mounted.build(&["--build-context", &shared_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be mounted yet"), "{stderr}");
}

/// The paths under `root`, relative, directories included.
fn walkdir(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            found.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                pending.push(path);
            }
        }
    }
    found
}

/// `--build-context NAME=oci-layout://PATH[:TAG]`: an image of a local OCI layout as FROM
/// and `--from`, on both executors (TAG names it as buildx does, `v1`, or as skopeo and
/// imgbuild name it, `app:v1`); a directory that is no layout and a digest are refused.
#[test]
fn an_oci_layout_build_context_is_an_image() {
    let made = Project::new("FROM BUSYBOX\nRUN echo in-layout > /from-layout\n", &[]);
    let layout = made.cache.path().join("layout");
    made.build_ok(&[
        "-t",
        "app:v1",
        "--output",
        &format!("type=oci,dest={}", layout.display()),
    ]);
    let project = Project::new(
        "FROM tools AS t\nFROM base\nCOPY --from=t /from-layout /copied\nRUN cat /copied /from-layout > /both\n",
        &[],
    );
    let base = format!("base=oci-layout://{}:v1", layout.display());
    let tools = format!("tools=oci-layout://{}", layout.display());
    for executor in ["native", "engine"] {
        let tag = support::unique_name("oci-layout-context");
        project.build_ok(&[
            "--executor",
            executor,
            "-t",
            &tag,
            "--build-context",
            &base,
            "--build-context",
            &tools,
        ]);
        assert_eq!(
            run_image(&tag, &["cat", "/both"]),
            "in-layout\nin-layout\n",
            "{executor}"
        );
        support::docker_ok(["rmi", tag.as_str()]);
    }
    for (spec, message) in [
        (
            format!("base=oci-layout://{}", made.path().display()),
            "is not an OCI image layout",
        ),
        (
            format!("base=oci-layout://{}@sha256:00", layout.display()),
            "by digest is not supported yet",
        ),
    ] {
        let out = project.build(&["--build-context", &spec]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(message), "{spec}: {stderr}");
    }
}
