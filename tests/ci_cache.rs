//! The step cache between CI runners (`--cache-to` / `--cache-from`), for real: each
//! "runner" is an empty cache directory and a fresh copy of the sources, sharing only the
//! test registry (or an OCI layout directory) with the others, as fresh CI machines share
//! only the registry they push to. (They share the test engine too, which cannot be
//! helped here; a runner never uses another's engine images: its own cache directory is
//! empty, so every cached build-stage step is loaded from the imported cache's layers.)

mod base_common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use base_common::{BaseImages, base_images, docker_ok, env, imgbuild_bin, tempdir, unique_name};
use sha2::Digest as _;

fn bases() -> &'static BaseImages {
    static BASES: OnceLock<BaseImages> = OnceLock::new();
    BASES.get_or_init(base_images)
}

/// A CI runner: a fresh checkout of `sources` and an empty cache directory, building with
/// `executor` (`native` or `engine`).
struct Runner {
    checkout: tempfile::TempDir,
    cache: tempfile::TempDir,
    executor: &'static str,
}

impl Runner {
    fn new(sources: &Path, executor: &'static str) -> Runner {
        let checkout = tempdir();
        base_common::copy_checkout(sources, checkout.path());
        Runner {
            checkout,
            cache: tempdir(),
            executor,
        }
    }

    fn with_dockerfile(text: &str, executor: &'static str) -> Runner {
        let runner = Runner {
            checkout: tempdir(),
            cache: tempdir(),
            executor,
        };
        runner.write("Dockerfile", text);
        runner
    }

    fn path(&self) -> &Path {
        self.checkout.path()
    }

    fn write(&self, name: &str, text: &str) {
        fs::write(
            self.path().join(name),
            text.replace("BUSYBOX", &base_common::busybox_in_registry()),
        )
        .unwrap();
    }

    fn build(&self, args: &[&str]) -> Output {
        Command::new(imgbuild_bin())
            .args(["build", "--progress", "plain", "--network", "host"])
            .args(["--executor", self.executor])
            .arg("--cache-dir")
            .arg(self.cache.path().join("imgbuild"))
            .args(args)
            .arg(self.path())
            .env("DOCKER_HOST", &env().docker_host)
            .env("HOME", self.cache.path())
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .expect("imgbuild runs")
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

    /// A layout directory under the runner's cache dir, for `--output type=oci`.
    fn layout(&self, name: &str) -> String {
        format!("type=oci,dest={}", self.cache.path().join(name).display())
    }
}

/// The plain-progress result of each step whose name contains `needle`: `CACHED` or the
/// cache-miss reason.
fn step_results(stderr: &str, needle: &str) -> Vec<String> {
    let lines: Vec<&str> = stderr.lines().collect();
    let mut results = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((vertex, name)) = line.strip_prefix('#').and_then(|l| l.split_once(' ')) else {
            continue;
        };
        if !name.starts_with('[') || !name.contains(needle) {
            continue;
        }
        let next = lines.get(i + 1).copied().unwrap_or_default();
        if next == format!("#{vertex} CACHED") {
            results.push("CACHED".to_owned());
        } else if let Some(reason) = next.split_once(" cache miss: ").map(|(_, r)| r) {
            results.push(format!("miss: {reason}"));
        } else {
            results.push(format!("ran: {next}"));
        }
    }
    results
}

fn cache_ref(name: &str) -> String {
    format!(
        "{}/imgbuild-test/{}:cache",
        env().registry,
        unique_name(name)
    )
}

/// The index of a cache in an OCI layout written by `--cache-to type=local`, after
/// checking every layer against the digests the index gives it.
fn local_cache_index(dir: &Path) -> serde_json::Value {
    let read = |digest: &str| {
        fs::read(
            dir.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "imgbuild-cache")
        .expect("the layout names the cache imgbuild-cache");
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(entry["digest"].as_str().unwrap())).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.imgbuild.cache.index.v1+json"
    );
    let cache: serde_json::Value =
        serde_json::from_slice(&read(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let layers = cache["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["layer"])
        .chain(
            cache["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| &m["layer"]),
        )
        .filter(|l| !l.is_null());
    for layer in layers {
        let blob = read(layer["digest"].as_str().unwrap());
        assert_eq!(
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(&blob))),
            layer["digest"]
        );
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(&tar))),
            layer["diff_id"],
            "a layer's diff_id is not the digest of its tar"
        );
    }
    cache
}

/// The acceptance scenario of issue #7: runner A builds the showcase and exports its
/// cache to the registry; runner B, fresh, after a source-only change, gets the
/// dependency steps from that cache (the stamp the deps step wrote is runner A's) and the
/// same image digest as runner A for the same change. Each executor exports for the other
/// to import: a step cached by one is a hit for the other.
#[test]
fn a_fresh_native_runner_reuses_the_engine_runners_dependency_steps() {
    a_fresh_runner_reuses_the_dependency_steps_through_the_registry("engine", "native");
}

#[test]
fn a_fresh_engine_runner_reuses_the_native_runners_dependency_steps() {
    a_fresh_runner_reuses_the_dependency_steps_through_the_registry("native", "engine");
}

fn a_fresh_runner_reuses_the_dependency_steps_through_the_registry(
    exporter: &'static str,
    importer: &'static str,
) {
    let bases = bases();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/elixir-hello");
    let reference = cache_ref("elixir-cache");
    let build_args = [
        "--build-arg".to_owned(),
        format!("BUILDER_IMAGE={}", bases.toolchain),
        "--build-arg".to_owned(),
        format!("RUNNER_IMAGE={}", bases.slim),
    ];
    let args = |extra: &[&str]| -> Vec<String> {
        build_args
            .iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |runner: &Runner, extra: &[&str]| {
        let all = args(extra);
        runner.build_ok(&all.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let stamp = |runner: &Runner, extra: &[&str]| {
        let tag = unique_name("elixir-cache-build");
        let mut all = vec!["--target", "build", "-t", tag.as_str()];
        all.extend_from_slice(extra);
        run(runner, &all);
        let stamp = docker_ok(["run", "--rm", tag.as_str(), "cat", "/app/deps/.fetched-at"]);
        docker_ok(["rmi", tag.as_str()]);
        stamp
    };
    let cache_to = format!("type=registry,ref={reference},mode=max");
    let change_source = |runner: &Runner| {
        let file = runner.path().join("lib/hello/handler.ex");
        let text = fs::read_to_string(&file).unwrap();
        fs::write(&file, text.replace("\"ok\\n\"", "\"ok from CI\\n\"")).unwrap();
    };

    // Runner A: a cold build, exporting its cache.
    let a = Runner::new(&fixture, exporter);
    let first = run(&a, &["--output", &a.layout("out"), "--cache-to", &cache_to]);
    assert!(
        first.contains(&format!("exporting cache to {reference}")),
        "{first}"
    );
    let stamp_a = stamp(&a, &[]);

    // Runner B: fresh, after a source-only change, with runner A's cache.
    let b = Runner::new(&fixture, importer);
    change_source(&b);
    let cache_from = format!("type=registry,ref={reference}");
    let on_b = run(
        &b,
        &["--output", &b.layout("out"), "--cache-from", &cache_from],
    );
    for step in [
        "COPY mix.exs mix.lock",
        "RUN mix deps.get",
        "RUN mix deps.compile",
    ] {
        assert_eq!(step_results(&on_b, step), ["CACHED"], "{step}:\n{on_b}");
    }
    // The miss is explained against runner A's build.
    assert_eq!(
        step_results(&on_b, "COPY lib lib"),
        ["miss: lib/hello/handler.ex changed"],
        "{on_b}"
    );
    assert!(!on_b.contains("WARNING"), "{on_b}");
    assert_eq!(stamp(&b, &["--cache-from", &cache_from]), stamp_a);

    // Runner A builds the same change: the same image.
    change_source(&a);
    let on_a = run(&a, &["--output", &a.layout("out2")]);
    assert_eq!(
        base_common::summary_digest(&on_b),
        base_common::summary_digest(&on_a)
    );
    assert_ne!(
        base_common::summary_digest(&on_a),
        base_common::summary_digest(&first)
    );
}

/// A fresh runner restores `RUN --mount=type=cache` directories from a local cache
/// directory (as actions/cache keeps one), `mode=min` exports only the packaging steps, and
/// a rebuild from the cache alone needs no step to run; each executor importing what the
/// other exported.
#[test]
fn cache_mounts_and_layers_travel_from_the_native_executor_to_the_engine() {
    cache_mounts_and_layers_travel_through_a_local_directory("native", "engine");
}

#[test]
fn cache_mounts_and_layers_travel_from_the_engine_to_the_native_executor() {
    cache_mounts_and_layers_travel_through_a_local_directory("engine", "native");
}

fn cache_mounts_and_layers_travel_through_a_local_directory(
    exporter: &'static str,
    importer: &'static str,
) {
    let marker = unique_name("mounts");
    let dockerfile = format!(
        "FROM BUSYBOX AS build\n\
         ARG ROUND=1\n\
         RUN --mount=type=cache,id=stash-{marker},target=/stash \\\n\
             sh -c 'test -f /stash/first || echo \"$(date +%s%N) {marker}\" > /stash/first; \\\n\
                    cp /stash/first /first; echo \"round $ROUND\" > /round'\n\
         RUN mkdir -p /out && cp /first /round /out/\n\
         FROM BUSYBOX\n\
         COPY --from=build /out /out\n"
    );
    let a = Runner::with_dockerfile(&dockerfile, exporter);
    let exported = a.cache.path().join("exported");
    let minimal = a.cache.path().join("minimal");
    let tag_a = unique_name("mounts-a");
    let on_a = a.build_ok(&[
        "-t",
        &tag_a,
        "--cache-to",
        &format!("type=local,dest={},mode=max", exported.display()),
        "--cache-to",
        &format!("type=local,dest={}", minimal.display()),
    ]);
    let first_a = docker_ok(["run", "--rm", tag_a.as_str(), "cat", "/out/first"]);
    assert!(first_a.contains(&marker), "{first_a}\n{on_a}");

    let full = local_cache_index(&exported);
    let kinds = |index: &serde_json::Value| -> BTreeMap<String, usize> {
        let mut kinds = BTreeMap::new();
        for step in index["steps"].as_array().unwrap() {
            *kinds
                .entry(step["kind"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        kinds
    };
    assert_eq!(
        kinds(&full),
        [("engine".to_owned(), 2), ("package".to_owned(), 1)].into()
    );
    assert_eq!(full["mounts"].as_array().unwrap().len(), 1);
    let min = local_cache_index(&minimal);
    assert_eq!(kinds(&min), [("package".to_owned(), 1)].into());
    assert!(min["mounts"].as_array().unwrap().is_empty());

    // Runner B: another build argument, so the RUN misses; its cache mount comes back.
    let b = Runner::with_dockerfile(&dockerfile, importer);
    let tag_b = unique_name("mounts-b");
    let from = format!("type=local,src={}", exported.display());
    let on_b = b.build_ok(&[
        "-t",
        &tag_b,
        "--build-arg",
        "ROUND=2",
        "--cache-from",
        &from,
    ]);
    assert!(
        on_b.contains(&format!("cache mount stash-{marker} restored")),
        "{on_b}"
    );
    assert_eq!(
        docker_ok(["run", "--rm", tag_b.as_str(), "cat", "/out/first"]),
        first_a
    );
    assert_eq!(
        docker_ok(["run", "--rm", tag_b.as_str(), "cat", "/out/round"]),
        "round 2\n"
    );

    // Runner C: the same build as A, from the cache alone.
    let c = Runner::with_dockerfile(&dockerfile, importer);
    let on_c = c.build_ok(&["--output", &c.layout("out"), "--cache-from", &from]);
    assert!(on_c.contains("3 of 3 steps cached, 0 run"), "{on_c}");
    let on_a_again = a.build_ok(&["--output", &a.layout("out")]);
    assert_eq!(
        base_common::summary_digest(&on_c),
        base_common::summary_digest(&on_a_again)
    );
    docker_ok(["rmi", tag_a.as_str(), tag_b.as_str()]);
}

/// What the registry stores for a repository (`docker-registry`'s filesystem driver).
fn registry_blob(digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    env()
        .state_dir
        .join("registry/storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

fn http(method: &str, url: &str, accept: &str) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "-X", method, "-D", "-", "-H"])
        .arg(format!("Accept: {accept}"))
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {url}: {out:?}");
    let text = out.stdout;
    let split = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(text.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&text[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, text[split..].to_vec())
}

/// A cache that is gone, corrupted or not a cache at all: the build still succeeds, with a
/// warning saying why the cache was not used. (The engine exports and the native executor
/// imports; what an import checks is the same code for both executors.)
#[test]
fn a_missing_corrupt_or_foreign_cache_is_a_warning() {
    let marker = unique_name("corrupt");
    let dockerfile = format!(
        "FROM BUSYBOX AS build\n\
         RUN echo {marker} > /marker\n\
         FROM BUSYBOX\n\
         COPY --from=build /marker /marker\n"
    );
    let a = Runner::with_dockerfile(&dockerfile, "engine");
    let reference = cache_ref("corrupt");
    a.build_ok(&[
        "--output",
        &a.layout("out"),
        "--cache-to",
        &format!("type=registry,ref={reference},mode=max"),
    ]);
    let (repository, tag) = reference
        .split_once('/')
        .and_then(|(_, path)| path.rsplit_once(':'))
        .unwrap();
    let manifest_url = base_common::registry_url(&format!("v2/{repository}/manifests/{tag}"));
    let (status, headers, body) = http(
        "GET",
        &manifest_url,
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!(status, 200);
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let from = format!("type=registry,ref={reference}");
    let fresh = || Runner::with_dockerfile(&dockerfile, "native");

    // Intact: the RUN is a hit.
    let r = fresh();
    let intact = r.build_ok(&["--output", &r.layout("out"), "--cache-from", &from]);
    assert_eq!(step_results(&intact, "RUN echo"), ["CACHED"], "{intact}");

    // A corrupted layer (the RUN's, which only this test has): the step runs again.
    let layer = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .find(|d| {
            let mut tar = Vec::new();
            let blob = fs::read(registry_blob(d)).unwrap();
            flate2::read::GzDecoder::new(&blob[..])
                .read_to_end(&mut tar)
                .is_ok()
                && String::from_utf8_lossy(&tar).contains(&marker)
        })
        .expect("the cache holds the RUN's layer");
    let blob_path = registry_blob(&layer);
    let original = fs::read(&blob_path).unwrap();
    let mut damaged = original.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    fs::write(&blob_path, &damaged).unwrap();
    let r = fresh();
    let broken_layer = r.build_ok(&["--output", &r.layout("out"), "--cache-from", &from]);
    fs::write(&blob_path, &original).unwrap();
    assert!(
        broken_layer.contains("could not be fetched, so the step runs"),
        "{broken_layer}"
    );
    assert_eq!(step_results(&broken_layer, "RUN echo").len(), 1);
    assert!(step_results(&broken_layer, "RUN echo")[0].starts_with("miss"));

    // A corrupted index: the cache is not used.
    let index_path = registry_blob(manifest["config"]["digest"].as_str().unwrap());
    let index = fs::read(&index_path).unwrap();
    // Same length, other bytes: what a bad disk or a tampering proxy would serve.
    fs::write(&index_path, vec![b'x'; index.len()]).unwrap();
    let r = fresh();
    let broken_index = r.build_ok(&["--output", &r.layout("out"), "--cache-from", &from]);
    fs::write(&index_path, &index).unwrap();
    assert!(
        broken_index.contains(&format!("WARNING: the cache at {reference} is not used")),
        "{broken_index}"
    );

    // An image where a cache should be.
    let image_ref = format!(
        "{}/imgbuild-test/{}:x",
        env().registry,
        unique_name("not-a-cache")
    );
    r.build_ok(&["--output", "type=registry", "-t", &image_ref]);
    let foreign = r.build_ok(&[
        "--output",
        &r.layout("out2"),
        "--cache-from",
        &format!("type=registry,ref={image_ref}"),
    ]);
    assert!(
        foreign.contains(&format!("WARNING: the cache at {image_ref} is not used"))
            && foreign.contains("it is an image, not an imgbuild cache"),
        "{foreign}"
    );

    // Deleted from the registry.
    let digest = headers.get("docker-content-digest").unwrap();
    let (status, _, _) = http(
        "DELETE",
        &base_common::registry_url(&format!("v2/{repository}/manifests/{digest}")),
        "*/*",
    );
    assert_eq!(status, 202);
    let r = fresh();
    let deleted = r.build_ok(&["--output", &r.layout("out"), "--cache-from", &from]);
    assert!(
        deleted.contains(&format!("WARNING: the cache at {reference} is not used")),
        "{deleted}"
    );
    assert_eq!(step_results(&deleted, "RUN echo").len(), 1);

    // A local directory that is not a cache.
    let not_a_cache = tempdir();
    fs::write(not_a_cache.path().join("index.json"), "[]").unwrap();
    let local = r.build_ok(&[
        "--output",
        &r.layout("out3"),
        "--cache-from",
        &format!("type=local,src={}", not_a_cache.path().display()),
    ]);
    assert!(
        local.contains(&format!(
            "WARNING: the cache at {} is not used",
            not_a_cache.path().display()
        )),
        "{local}"
    );

    // A local cache whose index blob was damaged (a partly restored actions/cache).
    let exported = a.cache.path().join("local-cache");
    a.build_ok(&[
        "--output",
        &a.layout("out4"),
        "--cache-to",
        &format!("type=local,dest={},mode=max", exported.display()),
    ]);
    let index_digest = local_cache_index_digest(&exported);
    let index_blob = exported
        .join("blobs/sha256")
        .join(index_digest.trim_start_matches("sha256:"));
    let length = fs::metadata(&index_blob).unwrap().len() as usize;
    fs::write(&index_blob, vec![b'{'; length]).unwrap();
    let damaged = fresh().build_ok(&[
        "--output",
        &r.layout("out5"),
        "--cache-from",
        &format!("type=local,src={}", exported.display()),
    ]);
    assert!(
        damaged.contains(&format!(
            "WARNING: the cache at {} is not used",
            exported.display()
        )),
        "{damaged}"
    );
    assert!(
        step_results(&damaged, "RUN echo")[0].starts_with("miss"),
        "{damaged}"
    );
}

/// The digest of the cache index (the manifest's config) in a `type=local` cache.
fn local_cache_index_digest(dir: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "imgbuild-cache")
        .expect("the cache manifest is in index.json");
    let manifest_digest = manifest["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            dir.join("blobs/sha256")
                .join(manifest_digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    manifest["config"]["digest"].as_str().unwrap().to_owned()
}

/// COPY over files a step before copied the same way leaves a layer of files identical to
/// the ones below (BuildKit's conformance case `copy-overwrite`): each executor records
/// such a step its own way (an overlay upper directory, an engine diff), and a cache one
/// exported must give the other the image it would have built itself.
#[test]
fn copies_over_identical_files_give_the_same_image_from_the_other_executors_cache() {
    let marker = unique_name("overwrite");
    let dockerfile = format!(
        "FROM BUSYBOX\n\
         COPY sub /sub\n\
         COPY sub /sub\n\
         COPY files/foo.go /dest/foo.go\n\
         COPY files/foo.go /dest/foo.go\n\
         COPY files /dest\n\
         RUN echo {marker} > /replace.txt && chmod 0600 /replace.txt && chown 9:9 /replace.txt\n\
         COPY replace.txt /replace.txt\n"
    );
    let runner = |executor: &'static str| {
        let r = Runner::with_dockerfile(&dockerfile, executor);
        fs::create_dir_all(r.path().join("sub")).unwrap();
        fs::create_dir_all(r.path().join("files")).unwrap();
        r.write("sub/s.txt", "s\n");
        r.write("files/foo.go", "package foo\n");
        r.write("files/bar.go", "package bar\n");
        r.write("replace.txt", "new\n");
        r
    };
    // What each executor builds on its own: one image.
    let alone: Vec<String> = ["native", "engine"]
        .into_iter()
        .map(|executor| {
            let r = runner(executor);
            base_common::summary_digest(&r.build_ok(&["--output", &r.layout("out")]))
        })
        .collect();
    assert_eq!(
        alone[0], alone[1],
        "native and engine differ without a cache"
    );

    for (exporter, importer) in [("native", "engine"), ("engine", "native")] {
        let a = runner(exporter);
        let cache = a.cache.path().join("exported");
        a.build_ok(&[
            "--output",
            &a.layout("out"),
            "--cache-to",
            &format!("type=local,dest={},mode=max", cache.display()),
        ]);
        let b = runner(importer);
        let on_b = b.build_ok(&[
            "--output",
            &b.layout("out"),
            "--cache-from",
            &format!("type=local,src={}", cache.display()),
        ]);
        assert!(
            on_b.contains("7 of 7 steps cached, 0 run"),
            "{exporter} → {importer}: {on_b}"
        );
        assert_eq!(
            base_common::summary_digest(&on_b),
            alone[0],
            "{exporter} → {importer}: the imported steps give another image"
        );
    }
}

/// The layer digests of `image` (`REGISTRY/REPO:TAG`) in the test registry.
fn registry_layers(image: &str) -> Vec<String> {
    let (registry, rest) = image.split_once('/').unwrap();
    let (repository, tag) = rest.rsplit_once(':').unwrap();
    let (status, _, body) = http(
        "GET",
        &format!("http://{registry}/v2/{repository}/manifests/{tag}"),
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
    );
    assert_eq!(status, 200, "{image}");
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// The native executor pulls a build stage's base without its layers: they are downloaded
/// when the stage's first step that runs unpacks them (and kept in the blob store), and not
/// at all on a runner where every step of the stage comes from an imported cache. (With
/// `--pull`: the test engine may hold the image, which is then taken whole.)
#[test]
fn a_build_stages_base_layers_are_downloaded_only_to_be_unpacked() {
    let slim = base_common::slim_base_image();
    let layers = registry_layers(&slim);
    let dockerfile = format!(
        "FROM {slim} AS build\n\
         RUN echo {} > /out\n\
         FROM BUSYBOX\n\
         COPY --from=build /out /out\n",
        unique_name("deferred")
    );
    let stored = |runner: &Runner, digest: &str| {
        runner
            .cache
            .path()
            .join("imgbuild/blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
            .is_file()
    };

    let a = Runner::with_dockerfile(&dockerfile, "native");
    let exported = a.cache.path().join("exported");
    let on_a = a.build_ok(&[
        "--pull",
        "--output",
        &a.layout("out"),
        "--cache-to",
        &format!("type=local,dest={},mode=max", exported.display()),
    ]);
    assert!(on_a.contains("downloading and unpacking"), "{on_a}");
    for digest in &layers {
        assert!(stored(&a, digest), "{digest} was not kept:\n{on_a}");
    }

    let b = Runner::with_dockerfile(&dockerfile, "native");
    let on_b = b.build_ok(&[
        "--pull",
        "--output",
        &b.layout("out"),
        "--cache-from",
        &format!("type=local,src={}", exported.display()),
    ]);
    assert_eq!(step_results(&on_b, "RUN echo"), ["CACHED"], "{on_b}");
    assert!(!on_b.contains("unpacking"), "{on_b}");
    for digest in &layers {
        assert!(!stored(&b, digest), "{digest} was downloaded:\n{on_b}");
    }
    assert_eq!(
        base_common::summary_digest(&on_b),
        base_common::summary_digest(&on_a)
    );
}
