//! Crash safety, the short version of `scripts/crash-test` for CI: `imgbuild` killed with
//! SIGKILL at points chosen by what it is doing (a RUN container exists, an output is
//! being staged, a blob is being uploaded, a cache blob is being written), against the
//! real engine and registry. After each kill the next build succeeds, nothing incomplete
//! looks complete, and the killed run's containers are reaped. A torn cache entry (a kill
//! cannot make one: entries are renamed into place, so it is made by hand) is ignored.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use imgbuild::cache::StepCache;
use sha2::Digest as _;

/// A context, a cache directory and an output directory, all temporary.
struct Project {
    ctx: tempfile::TempDir,
    cache: tempfile::TempDir,
    out: tempfile::TempDir,
}

impl Project {
    fn new(dockerfile: &str) -> Project {
        let project = Project {
            ctx: support::tempdir(),
            cache: support::tempdir(),
            out: support::tempdir(),
        };
        project.dockerfile(dockerfile);
        project
    }

    fn dockerfile(&self, text: &str) {
        let text = text.replace("BUSYBOX", &support::busybox_in_registry());
        fs::write(self.ctx.path().join("Dockerfile"), text).unwrap();
    }

    /// A file of `mib` MiB that does not compress (so writing its layer takes a while).
    fn random_file(&self, name: &str, mib: usize) {
        let mut bytes = vec![0u8; mib << 20];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (mib as u64);
        for chunk in bytes.chunks_mut(8) {
            // xorshift64: fast, and gzip finds nothing to squeeze.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        fs::write(self.ctx.path().join(name), bytes).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.out.path().join(name)
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut command = support::imgbuild();
        command
            .args(["build", "--progress", "plain", "--cache-dir"])
            .arg(self.cache.path())
            .args(extra)
            .arg(self.ctx.path())
            .env_remove("SOURCE_DATE_EPOCH");
        command
    }

    fn build(&self, extra: &[&str]) -> Output {
        self.command(extra).output().unwrap()
    }

    fn build_ok(&self, extra: &[&str]) -> String {
        let out = self.build(extra);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "imgbuild failed: {stderr}");
        stderr
    }

    /// Starts a build and SIGKILLs it as soon as `moment` holds (checked every millisecond),
    /// or fails the test if the build ends first. Returns the killed process's id.
    fn kill_when(&self, extra: &[&str], what: &str, moment: impl Fn(u32) -> bool) -> u32 {
        let child = self
            .command(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        kill_child_when(child, what, moment)
    }

    /// The engine images this project's builds recorded, so only they are removed.
    fn remove_engine_images(&self) {
        for record in records(self.cache.path()) {
            if let Some(image) = record["record"]["image"].as_str() {
                let _ = support::docker(["rmi", image]);
            }
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        self.remove_engine_images();
    }
}

fn kill_child_when(mut child: Child, what: &str, moment: impl Fn(u32) -> bool) -> u32 {
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if moment(pid) {
            child.kill().unwrap();
            child.wait().unwrap();
            return pid;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("imgbuild ended ({status}) before {what}:\n{stderr}");
        }
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The raw JSON of every step entry in a cache dir.
fn records(cache: &Path) -> Vec<serde_json::Value> {
    let Ok(dir) = fs::read_dir(cache.join("steps-v2/keys")) else {
        return Vec::new();
    };
    dir.filter_map(|e| fs::read(e.ok()?.path()).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect()
}

/// Every entry in the cache is intact (imgbuild's own reader accepts it) and every layer
/// it names is in the blob store.
fn assert_cache_consistent(cache: &Path) {
    let steps = StepCache::open(cache).unwrap();
    let keys = fs::read_dir(cache.join("steps-v2/keys")).unwrap();
    let mut count = 0;
    for entry in keys {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(hex) = name.strip_suffix(".json") else {
            continue; // a temporary file of an unfinished write
        };
        let record = steps
            .get(&format!("sha256:{hex}"))
            .unwrap_or_else(|| panic!("cache entry {name} is torn"));
        if let Some(layer) = record.layer {
            let blob = cache.join("blobs").join(layer.digest.replace(':', "/"));
            assert!(blob.is_file(), "entry {name} names a missing blob");
        }
        count += 1;
    }
    assert!(count > 0, "no cache entries at all");
}

#[test]
fn killed_in_a_run_step_leaves_containers_the_next_build_reaps() {
    for executor in ["engine", "native"] {
        killed_in_a_run_step(executor);
    }
}

/// SIGKILL in a RUN leaves its container (the engine's, or the OCI runtime's) and, natively,
/// the step's mount; the next build with the cache dir removes both.
fn killed_in_a_run_step(executor: &str) {
    let project = Project::new(
        "FROM BUSYBOX AS b\nRUN sleep 60\nFROM BUSYBOX\nCOPY --from=b /etc/passwd /h\n",
    );
    let layout = project.path("layout");
    let output = format!("type=oci,dest={}", layout.display());
    let iid = project.path("iid");
    let extra = [
        "--executor",
        executor,
        "--output",
        &output,
        "--iidfile",
        iid.to_str().unwrap(),
    ];
    let cache = project.cache.path().to_path_buf();
    let containers = |pid| support::containers_of_executor(executor, &cache, pid);
    let pid = project.kill_when(&extra, "the RUN container existed", |pid| {
        !containers(pid).is_empty()
    });
    assert_eq!(
        containers(pid).len(),
        1,
        "{executor}: SIGKILL leaves the RUN's container behind"
    );
    assert!(
        !layout.exists() && !iid.exists(),
        "{executor}: a killed build wrote outputs"
    );
    // The next build (another RUN) removes the killed run's container.
    project
        .dockerfile("FROM BUSYBOX AS b\nRUN echo ok > /ok\nFROM BUSYBOX\nCOPY --from=b /ok /ok\n");
    project.build_ok(&extra);
    match executor {
        "engine" => assert_reaped(pid),
        _ => assert_eq!(containers(pid), Vec::<String>::new(), "{executor}"),
    }
    assert_eq!(
        support::mounts_in(&cache),
        Vec::<String>::new(),
        "{executor}: mounts left in the cache dir"
    );
    assert!(layout.join("index.json").is_file() && iid.is_file());
    assert_cache_consistent(project.cache.path());
}

/// The containers of the killed process `pid` are gone, or going: a build of a parallel test
/// may have started removing them first, and then the next build leaves them to it.
fn assert_reaped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !support::containers_of(pid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the killed run's containers are still there: {:?}",
            support::containers_of(pid)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every blob an OCI layout's index reaches is present with its digest; returns the config
/// digest of its (only) image.
fn assert_layout_complete(layout: &Path) -> String {
    let blob = |digest: &str| {
        let bytes = fs::read(layout.join("blobs").join(digest.replace(':', "/")))
            .unwrap_or_else(|e| panic!("{}: blob {digest}: {e}", layout.display()));
        let actual = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        assert_eq!(
            actual,
            digest,
            "{}: a blob does not match",
            layout.display()
        );
        bytes
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        blob(layer["digest"].as_str().unwrap());
    }
    let config = manifest["config"]["digest"].as_str().unwrap();
    blob(config);
    config.to_owned()
}

#[test]
fn killed_while_writing_outputs_leaves_none_looking_complete() {
    let project = Project::new("FROM BUSYBOX\nCOPY big /big\n");
    project.random_file("big", 64);
    let layout = project.path("layout");
    let archive = project.path("image.tar");
    let iid = project.path("iid");
    let outputs = [
        format!("type=oci,dest={}", layout.display()),
        format!("type=docker,dest={}", archive.display()),
    ];
    let extra = [
        "--output",
        &outputs[0],
        "--output",
        &outputs[1],
        "--iidfile",
        iid.to_str().unwrap(),
    ];
    // The first build fills the cache: the killed ones below spend their time on outputs.
    project.build_ok(&extra);
    let expected_iid = fs::read_to_string(&iid).unwrap();
    let out_dir = project.out.path();
    // The layout is staged as `.imgbuild-layout-*`, the archive as `.imgbuild-*`.
    for (what, staged) in [
        (
            "the layout was being staged",
            staged_layout as fn(&str) -> bool,
        ),
        ("the archive was being written", staged_archive),
    ] {
        for path in [&layout, &archive, &iid] {
            let _ = fs::remove_dir_all(path);
            let _ = fs::remove_file(path);
        }
        let staged_now = || names(out_dir).iter().filter(|n| staged(n)).count();
        let before = staged_now();
        project.kill_when(&extra, what, |_| staged_now() > before);
        // Whatever is at an output's own path is complete: a layout and an archive are
        // renamed into place whole, the iidfile is written after them.
        if layout.exists() {
            assert_eq!(assert_layout_complete(&layout), expected_iid, "{what}");
        }
        assert!(!archive.exists(), "{what}: the archive is in place early");
        assert!(!iid.exists(), "{what}: the iidfile came before the outputs");
        project.build_ok(&extra);
        assert_eq!(fs::read_to_string(&iid).unwrap(), expected_iid);
        assert_eq!(assert_layout_complete(&layout), expected_iid);
        let listed = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", archive.display()))
            .output()
            .unwrap();
        assert!(
            listed.status.success(),
            "{}",
            String::from_utf8_lossy(&listed.stderr)
        );
    }
}

#[test]
fn killed_during_a_push_leaves_no_tag_and_the_next_push_completes() {
    let project = Project::new("FROM BUSYBOX\nCOPY big /big\n");
    project.random_file("big", 32);
    let env = support::env();
    let repository = support::unique_name("crash-push");
    let reference = format!("{}/imgbuild-test/{repository}:v1", env.registry);
    // The registry keeps an upload under `_uploads/` from its start to its commit: killed
    // then, blobs are on their way and the manifest is not.
    let uploads = env
        .state_dir
        .join("registry/storage/docker/registry/v2/repositories/imgbuild-test")
        .join(&repository)
        .join("_uploads");
    let extra = ["--push", "-t", &reference];
    project.kill_when(&extra, "a blob upload started", |_| {
        !names(&uploads).is_empty()
    });
    let inspect = |reference: &str| {
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap()
    };
    assert!(
        !inspect(&reference).status.success(),
        "the tag exists after a push killed mid-upload"
    );
    project.build_ok(&extra);
    // Pulled whole, every digest checked.
    let pulled = support::tempdir();
    let out = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("dir:{}", pulled.path().join("d").display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The registry is shared: the manifest goes (its blobs wait for garbage collection).
    let _ = Command::new("skopeo")
        .args(["delete", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output();
}

#[test]
fn killed_while_writing_the_cache_leaves_it_consistent() {
    let project = Project::new("FROM BUSYBOX\nCOPY a /a\nCOPY b /b\nCOPY c /c\n");
    for name in ["a", "b", "c"] {
        project.random_file(name, 16);
    }
    let keys = project.cache.path().join("steps-v2/keys");
    let entries = || {
        names(&keys)
            .into_iter()
            .filter(|n| n.ends_with(".json"))
            .count()
    };
    // After the first step's entry: the second step's layer is being written.
    project.kill_when(&[], "the first step was recorded", |_| entries() >= 1);
    assert!(entries() < 3, "the build finished before its kill");
    assert_cache_consistent(project.cache.path());
    let layout = project.path("layout");
    let output = format!("type=oci,dest={}", layout.display());
    let stderr = project.build_ok(&["--output", &output]);
    let (cached, total) = cached_steps(&stderr);
    assert!(
        cached >= 1 && total == 3,
        "the first step's entry was not used:\n{stderr}"
    );
    assert_layout_complete(&layout);
    assert_cache_consistent(project.cache.path());
}

#[test]
fn a_torn_cache_entry_is_ignored_and_the_step_runs_again() {
    let project = Project::new("FROM BUSYBOX\nCOPY a /a\nCOPY b /b\n");
    for name in ["a", "b"] {
        project.random_file(name, 1);
    }
    let iid = project.path("iid");
    let layout = project.path("layout");
    let output = format!("type=oci,dest={}", layout.display());
    let extra = ["--output", &output, "--iidfile", iid.to_str().unwrap()];
    project.build_ok(&extra);
    let first_iid = fs::read_to_string(&iid).unwrap();
    // Tear every entry: cut one short, change a byte of the other (its checksum no longer
    // matches).
    let keys = project.cache.path().join("steps-v2/keys");
    let mut paths: Vec<PathBuf> = names(&keys).into_iter().map(|n| keys.join(n)).collect();
    paths.sort();
    assert_eq!(paths.len(), 2, "one entry a COPY step");
    let bytes = fs::read(&paths[0]).unwrap();
    fs::write(&paths[0], &bytes[..bytes.len() / 2]).unwrap();
    let text = fs::read_to_string(&paths[1]).unwrap();
    let tampered = text.replacen("\"size\":", "\"size\":1", 1);
    assert_ne!(tampered, text);
    fs::write(&paths[1], tampered).unwrap();

    fs::remove_dir_all(&layout).unwrap();
    let stderr = project.build_ok(&extra);
    assert_eq!(
        cached_steps(&stderr),
        (0, 2),
        "a torn entry was used:\n{stderr}"
    );
    assert_eq!(stderr.matches("cache miss").count(), 2, "{stderr}");
    assert_eq!(fs::read_to_string(&iid).unwrap(), first_iid);
    assert_cache_consistent(project.cache.path());
    // Rewritten whole: the next build takes both.
    fs::remove_dir_all(&layout).unwrap();
    let stderr = project.build_ok(&extra);
    assert_eq!(cached_steps(&stderr), (2, 2), "{stderr}");
}

fn staged_layout(name: &str) -> bool {
    name.starts_with(".imgbuild-layout-")
}

fn staged_archive(name: &str) -> bool {
    name.starts_with(".imgbuild-") && !staged_layout(name)
}

/// `N of M steps cached` from a build's summary.
fn cached_steps(stderr: &str) -> (usize, usize) {
    let line = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("cache"))
        .unwrap_or_else(|| panic!("no cache summary in\n{stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        [n, "of", m, "steps", word, ..] if word.starts_with("cached") => {
            (n.parse().unwrap(), m.parse().unwrap())
        }
        _ => panic!("unexpected cache summary {line:?}"),
    }
}

/// The names in `dir` (none if it does not exist yet).
fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The secret directories (`$TMPDIR/imgbuild-secret-BOOT-PIDNS-PID-START-*`) of process `pid`.
fn secret_dirs_of(pid: u32) -> Vec<PathBuf> {
    let tmp = std::env::temp_dir();
    names(&tmp)
        .into_iter()
        .filter(|n| {
            n.strip_prefix("imgbuild-secret-")
                .is_some_and(|tag| tag.split('-').nth(2) == Some(pid.to_string().as_str()))
        })
        .map(|n| tmp.join(n))
        .collect()
}

#[test]
fn a_secret_copy_does_not_outlive_a_killed_or_interrupted_build() {
    for executor in ["engine", "native"] {
        secret_copy_does_not_outlive(executor);
    }
}

fn secret_copy_does_not_outlive(executor: &str) {
    let project = Project::new(
        "FROM BUSYBOX AS b\nRUN --mount=type=secret,id=tok sleep 60\n\
         FROM BUSYBOX\nCOPY --from=b /etc/passwd /h\n",
    );
    let secret = project.path("tok");
    fs::write(&secret, "hostile-crash-secret").unwrap();
    let extra = [
        "--executor",
        executor,
        "--secret",
        &format!("id=tok,src={}", secret.display()),
    ];
    let cache = project.cache.path().to_path_buf();
    let running = |pid| !support::containers_of_executor(executor, &cache, pid).is_empty();

    // SIGKILL runs nothing: the copy stays until the next build, which removes it.
    let killed = project.kill_when(&extra, "the RUN with the secret started", running);
    assert_eq!(
        secret_dirs_of(killed).len(),
        1,
        "no secret copy to clean up"
    );
    project.dockerfile("FROM BUSYBOX AS b\nRUN true\nFROM BUSYBOX\nCOPY --from=b /etc/passwd /h\n");
    project.build_ok(&["--executor", executor]);
    assert_eq!(secret_dirs_of(killed), Vec::<PathBuf>::new(), "{executor}");

    // SIGINT: the handler removes it before the process exits.
    project.dockerfile(
        "FROM BUSYBOX AS b\nRUN --mount=type=secret,id=tok sleep 61\n\
         FROM BUSYBOX\nCOPY --from=b /etc/passwd /h\n",
    );
    let mut child = project
        .command(&extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !running(pid) {
        assert!(Instant::now() < deadline, "the RUN never started");
        assert!(child.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(secret_dirs_of(pid).len(), 1);
    let raw = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    rustix::process::kill_process(raw, rustix::process::Signal::INT).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{executor}");
    assert_eq!(secret_dirs_of(pid), Vec::<PathBuf>::new(), "{executor}");
}
