//! Shared by the integration tests (`mod support;`): the real test environment
//! (Docker engine, registry, busybox image) started by `scripts/test-env`, and
//! small helpers to drive it.
//!
//! A test that needs the environment calls [`env()`]; if the environment
//! cannot be started the test fails with the script's error, it never skips.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Debian's Docker client. A newer client may sit earlier in PATH
/// (`/usr/local/bin/docker`); the tests always use Debian's, like the engine.
pub const DOCKER_CLI: &str = "/usr/bin/docker";

/// What `scripts/test-env` exports; the variable names are its contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestEnv {
    /// `DOCKER_HOST` value of the engine, e.g. `unix:///var/tmp/imgbuild-test-env/docker.sock`.
    pub docker_host: String,
    /// Registry address without scheme, e.g. `127.0.0.1:5000` (plain HTTP).
    pub registry: String,
    /// A tiny image present in the engine: busybox with its applets.
    pub busybox_image: String,
    /// The environment's state dir (daemon logs, registry storage).
    pub state_dir: PathBuf,
}

const VAR_DOCKER_HOST: &str = "IMGBUILD_TEST_DOCKER_HOST";
const VAR_REGISTRY: &str = "IMGBUILD_TEST_REGISTRY";
const VAR_BUSYBOX_IMAGE: &str = "IMGBUILD_TEST_BUSYBOX_IMAGE";
const VAR_STATE_DIR: &str = "IMGBUILD_TEST_ENV_DIR";

impl TestEnv {
    /// Builds the environment from variables looked up by `get`; `None` if any is missing.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Option<TestEnv> {
        Some(TestEnv {
            docker_host: get(VAR_DOCKER_HOST)?,
            registry: get(VAR_REGISTRY)?,
            busybox_image: get(VAR_BUSYBOX_IMAGE)?,
            state_dir: PathBuf::from(get(VAR_STATE_DIR)?),
        })
    }

    /// The path of the engine's unix socket, if it is reached through one.
    pub fn docker_socket(&self) -> Option<&Path> {
        self.docker_host.strip_prefix("unix://").map(Path::new)
    }
}

/// The test environment, started once per test process. When `scripts/test`
/// (or `eval "$(scripts/test-env)"`) already exported the `IMGBUILD_TEST_*`
/// variables they are used as they are; otherwise `scripts/test-env` runs,
/// which is cheap when everything is already up and safe to run from several
/// test processes at once (it takes a lock).
pub fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        TestEnv::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(start_environment)
    })
}

/// Path of `scripts/test-env` in this checkout.
pub fn test_env_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-env")
}

/// Runs `scripts/test-env` and returns its exports; panics with its stderr on failure.
pub fn run_test_env_script() -> HashMap<String, String> {
    let script = test_env_script();
    let output = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}), so the test environment is not available:\n{stderr}",
        script.display(),
        output.status,
    );
    let stdout = String::from_utf8(output.stdout)
        .unwrap_or_else(|e| panic!("{} printed non-UTF-8 exports: {e}", script.display()));
    parse_exports(&stdout).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            script.display()
        )
    })
}

fn start_environment() -> TestEnv {
    let exports = run_test_env_script();
    TestEnv::from_vars(|name| exports.get(name).cloned()).unwrap_or_else(|| {
        panic!(
            "{} did not export all of {VAR_DOCKER_HOST}, {VAR_REGISTRY}, {VAR_BUSYBOX_IMAGE}, \
             {VAR_STATE_DIR}; it printed: {exports:?}",
            test_env_script().display()
        )
    })
}

/// Parses the `export KEY=VALUE` lines `scripts/test-env` prints. Its values
/// are never quoted (the script refuses paths that would need quoting), so
/// any other line is an error rather than something to guess about.
pub fn parse_exports(stdout: &str) -> Result<HashMap<String, String>, String> {
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.strip_prefix("export ")
                .and_then(|assignment| assignment.split_once('='))
                .filter(|(key, _)| !key.is_empty())
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .ok_or_else(|| format!("not an `export KEY=VALUE` line: {line:?}"))
        })
        .collect()
}

/// Path of the `imgbuild` binary cargo built for these tests.
pub fn imgbuild_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_imgbuild"))
}

/// An `imgbuild` command aimed at the test engine (`DOCKER_HOST` set).
pub fn imgbuild() -> Command {
    let mut command = Command::new(imgbuild_bin());
    command.env("DOCKER_HOST", &env().docker_host);
    command
}

/// Runs Debian's `docker` client against the test engine.
pub fn docker<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(DOCKER_CLI)
        .args(args)
        .env("DOCKER_HOST", &env().docker_host)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {DOCKER_CLI}: {e}"))
}

/// Runs `docker` and returns its stdout; panics with its stderr if it fails.
pub fn docker_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let output = docker(&args);
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert!(
        output.status.success(),
        "docker {} failed ({}):\n{}",
        shown.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `http://REGISTRY/PATH` for the test registry (plain HTTP on 127.0.0.1).
pub fn registry_url(path: &str) -> String {
    format!("http://{}/{}", env().registry, path.trim_start_matches('/'))
}

/// A name no other test, parallel test process or earlier run uses (the
/// registry keeps what earlier runs pushed), for repositories, tags and
/// containers: `imgbuild-test-PREFIX-SECONDS-PID-N`.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!(
        "imgbuild-test-{prefix}-{seconds}-{}-{n}",
        std::process::id()
    )
}

/// The `digest` line of a build's summary on standard error: the manifest's digest.
pub fn summary_digest(stderr: &str) -> String {
    summary_line(stderr, "digest")
}

/// The `image id` line of a build's summary: the config's digest, which does not depend on
/// how the layers are compressed (an image only for the engine has plain tar layers).
pub fn summary_image_id(stderr: &str) -> String {
    summary_line(stderr, "image id")
}

fn summary_line(stderr: &str, name: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix(name).map(|d| d.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {name} in:\n{stderr}"))
}

/// Copies a project tree as a fresh clone would have it: without the `_build` and `deps`
/// directories a local `mix` run may have left.
pub fn copy_checkout(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if matches!(entry.file_name().to_str(), Some("_build" | "deps")) {
                continue;
            }
            std::fs::create_dir_all(&target).unwrap();
            copy_checkout(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imgbuild-test-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
}

/// The busybox test image, pushed once to the test registry, as a FROM line names it:
/// `127.0.0.1:5000/imgbuild-test/busybox:latest`.
pub fn busybox_in_registry() -> String {
    static REF: OnceLock<String> = OnceLock::new();
    REF.get_or_init(|| {
        let env = env();
        let reference = format!("{}/imgbuild-test/busybox:latest", env.registry);
        docker_ok(["tag", env.busybox_image.as_str(), reference.as_str()]);
        docker_ok(["push", reference.as_str()]);
        reference
    })
    .clone()
}

/// The OCI runtime's containers of imgbuild process `pid` in the cache dir `cache`.
pub fn runtime_containers_of(cache: &Path, pid: u32) -> Vec<String> {
    let out = Command::new("runc")
        .arg("--root")
        .arg(cache.join("runc-v1"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|id| id.split('-').nth(3) == Some(pid.to_string().as_str()))
        .map(str::to_owned)
        .collect()
}

/// The containers of imgbuild process `pid` for `executor`: the engine's, or the OCI
/// runtime's in the cache dir `cache`.
pub fn containers_of_executor(executor: &str, cache: &Path, pid: u32) -> Vec<String> {
    match executor {
        "engine" => containers_of(pid),
        _ => runtime_containers_of(cache, pid),
    }
}

/// Whether anything is mounted in `dir` (a build's cache dir, after clean-up).
pub fn mounts_in(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_owned)
        .collect()
}

/// Containers of the imgbuild process `pid` that still exist (its containers are named
/// `imgbuild-BOOT-PIDNS-PID-START-N`).
pub fn containers_of(pid: u32) -> Vec<String> {
    let names = docker_ok(["ps", "-a", "--format", "{{.Names}}"]);
    names
        .lines()
        .filter(|n| {
            n.starts_with("imgbuild-") && n.split('-').nth(3) == Some(pid.to_string().as_str())
        })
        .map(str::to_owned)
        .collect()
}

/// A port nothing listens on right now (the kernel picks it).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// GET `path` from a server in `container` on `port`, retried until it answers or 60 s
/// pass; then the container's logs are shown and it is removed.
pub fn http_get(port: u16, path: &str, container: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "2"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl runs");
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        if std::time::Instant::now() > deadline {
            let logs = docker(["logs", container]);
            docker(["rm", "-f", container]);
            panic!(
                "no HTTP answer on port {port}: {}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// An arm64 busybox image in the test registry (Debian's busybox-static for arm64, laid out
/// as the amd64 test image is), as a FROM line names it; pushed once per test run by
/// imgbuild itself (`FROM scratch`, `--platform linux/arm64`). The package is downloaded
/// once per machine into the test environment's directory.
pub fn busybox_arm64_in_registry() -> String {
    static REF: OnceLock<String> = OnceLock::new();
    REF.get_or_init(|| {
        let env = env();
        let deb = env.state_dir.join("busybox-static-arm64.deb");
        if !deb.exists() {
            // The arm64 build of the version installed here: its pool address is the
            // amd64 one's with the architecture changed.
            let uris = Command::new("apt-get")
                .args(["download", "--print-uris", "busybox-static"])
                .output()
                .expect("apt-get runs");
            let listing = String::from_utf8_lossy(&uris.stdout);
            let url = listing
                .split('\'')
                .find(|part| part.ends_with("_amd64.deb"))
                .unwrap_or_else(|| panic!("no busybox-static address in {listing}"))
                .replace("_amd64.deb", "_arm64.deb");
            let partial = deb.with_extension("partial");
            let status = Command::new("curl")
                .args(["-fsSL", "--retry", "3", "-o"])
                .arg(&partial)
                .arg(&url)
                .status()
                .expect("curl runs");
            assert!(status.success(), "cannot download {url}");
            std::fs::rename(&partial, &deb).unwrap();
        }
        let work = tempdir();
        let unpacked = work.path().join("deb");
        let status = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&unpacked)
            .status()
            .expect("dpkg-deb runs");
        assert!(status.success(), "dpkg-deb -x {} failed", deb.display());
        let rootfs = work.path().join("rootfs");
        for dir in ["bin", "etc", "root", "tmp"] {
            std::fs::create_dir_all(rootfs.join(dir)).unwrap();
        }
        std::fs::copy(unpacked.join("bin/busybox"), rootfs.join("bin/busybox")).unwrap();
        // The applets of this machine's busybox, the same version.
        let applets = Command::new("/bin/busybox")
            .arg("--list-full")
            .output()
            .expect("busybox runs");
        for applet in String::from_utf8_lossy(&applets.stdout).lines() {
            if applet == "bin/busybox" || applet.is_empty() {
                continue;
            }
            let link = rootfs.join(applet);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            let _ = std::os::unix::fs::symlink("/bin/busybox", &link);
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        let context = work.path().join("context");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            "FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD [\"sh\"]\n",
        )
        .unwrap();
        std::fs::rename(&rootfs, context.join("rootfs")).unwrap();
        let reference = format!("{}/imgbuild-test/busybox-arm64:latest", env.registry);
        push_with_imgbuild(&context, "linux/arm64", &reference, &work.path().join("cache"));
        reference
    })
    .clone()
}

/// Builds `context` for `platforms` with imgbuild and pushes it as `reference`.
fn push_with_imgbuild(context: &Path, platforms: &str, reference: &str, cache: &Path) {
    let out = imgbuild()
        .args(["build", "--progress", "plain", "--platform", platforms])
        .args(["--push", "-t", reference, "--cache-dir"])
        .arg(cache)
        .arg(context)
        .output()
        .expect("imgbuild runs");
    assert!(
        out.status.success(),
        "pushing {reference} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A busybox index for linux/amd64 and linux/arm64 in the test registry (the two busybox
/// test images), as a FROM line names it; pushed once per test run by imgbuild itself,
/// with a stage per platform picked by `TARGETARCH`.
pub fn busybox_multi_in_registry() -> String {
    static REF: OnceLock<String> = OnceLock::new();
    REF.get_or_init(|| {
        let (amd64, arm64) = (busybox_in_registry(), busybox_arm64_in_registry());
        let work = tempdir();
        std::fs::write(
            work.path().join("Dockerfile"),
            format!(
                "FROM {amd64} AS base-amd64\nFROM {arm64} AS base-arm64\nFROM base-${{TARGETARCH}}\n"
            ),
        )
        .unwrap();
        let reference = format!("{}/imgbuild-test/busybox-multi:latest", env().registry);
        let cache = work.path().join("cache");
        push_with_imgbuild(work.path(), "linux/amd64,linux/arm64", &reference, &cache);
        reference
    })
    .clone()
}

/// Whether this machine's kernel runs arm64 programs (qemu's binfmt_misc handler, which
/// `scripts/test-env` registers where it can): the files imgbuild reads too.
pub fn arm64_emulation_registered() -> bool {
    std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64")
        .is_ok_and(|text| text.lines().next() == Some("enabled"))
        && std::fs::read_to_string("/proc/sys/fs/binfmt_misc/status")
            .is_ok_and(|text| text.trim() == "enabled")
}
