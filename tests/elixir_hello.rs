//! The showcase, end to end: `fixtures/elixir-hello` (a Mix release served by OTP's
//! `:inets`) built by imgbuild on the base images of `base-images/`, run in the engine,
//! compared with what BuildKit builds from the same Dockerfile and bases, and rebuilt to
//! show what the lockfile-keyed step cache keeps.

mod base_common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use base_common::{
    BaseImages, base_images, docker, docker_ok, env, imgbuild_bin, serve_release, tempdir,
    unique_name,
};

fn bases() -> &'static BaseImages {
    static BASES: OnceLock<BaseImages> = OnceLock::new();
    BASES.get_or_init(base_images)
}

/// A copy of the fixture (a fresh clone, as far as imgbuild can tell) and a cache dir.
struct Checkout {
    dir: tempfile::TempDir,
    cache: PathBuf,
    _cache_dir: tempfile::TempDir,
}

impl Checkout {
    fn new() -> Checkout {
        let dir = tempdir();
        base_common::copy_checkout(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/elixir-hello"),
            dir.path(),
        );
        let cache_dir = tempdir();
        Checkout {
            cache: cache_dir.path().to_path_buf(),
            dir,
            _cache_dir: cache_dir,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn build(&self, args: &[&str]) -> Output {
        let bases = bases();
        Command::new(imgbuild_bin())
            .args([
                "build",
                "--progress",
                "plain",
                "--network",
                "host",
                "--cache-dir",
            ])
            .arg(&self.cache)
            .args(["--build-arg", &format!("BUILDER_IMAGE={}", bases.toolchain)])
            .args(["--build-arg", &format!("RUNNER_IMAGE={}", bases.slim)])
            .args(args)
            .arg(self.path())
            .env("DOCKER_HOST", &env().docker_host)
            .env("HOME", &self.cache)
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
}

#[test]
fn the_release_runs_as_nobody_with_nothing_but_the_release() {
    let checkout = Checkout::new();
    let tag = unique_name("elixir-hello");
    checkout.build_ok(&["-t", &tag]);

    let (body, uid) = serve_release(&tag, "/", &["HELLO_SECRET=not-baked-in"]);
    assert_eq!(body, "hello from elixir-hello\n");
    assert!(
        uid.split_whitespace().skip(1).all(|id| id == "65534"),
        "{uid}"
    );

    let out = docker([
        "run",
        "--rm",
        "-e",
        "HELLO_SECRET=x",
        tag.as_str(),
        "/app/bin/hello",
        "eval",
        "Hello.Release.migrate()",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "migrate: hello has no database; nothing to migrate\n"
    );

    // No toolchain, no sources, no deps/ in the image (config/runtime.exs travels inside
    // the release, read at start-up: that one is expected).
    let check = "for t in mix elixir erlc gcc git; do command -v $t; done; \
                 find / -xdev \\( -name '*.ex' -o -name '*.exs' -o -name mix.lock -o -name deps -o -name _build \\) \
                   ! -path '/app/releases/*/runtime.exs' -print; \
                 ls /app";
    let listing = docker_ok([
        "run",
        "--rm",
        "--user",
        "root",
        tag.as_str(),
        "sh",
        "-c",
        check,
    ]);
    assert_eq!(
        listing
            .lines()
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>(),
        ["bin", "erts-13.1.5", "lib", "releases"],
        "{listing}"
    );
    docker_ok(["rmi", tag.as_str()]);
}

/// Every file of an image as `docker export` gives it: type, mode, owner, size, content
/// digest and link target (mtimes left out).
fn filesystem(image: &str) -> BTreeMap<String, String> {
    let id = docker_ok(["create", image]).trim().to_owned();
    let out = docker(["export", id.as_str()]);
    docker_ok(["rm", id.as_str()]);
    assert!(out.status.success());
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(&out.stdout[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header().clone();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        use sha2::Digest;
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        let path = entry
            .path()
            .unwrap()
            .display()
            .to_string()
            .trim_end_matches('/')
            .to_owned();
        files.insert(
            path,
            format!(
                "{:?} {:o} {}:{} {} {} {link}",
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                content.len(),
                hex::encode(sha2::Sha256::digest(&content))
            ),
        );
    }
    files
}

fn config(image: &str) -> serde_json::Value {
    let json = docker_ok(["image", "inspect", image, "--format", "{{json .Config}}"]);
    serde_json::from_str(&json).unwrap()
}

#[test]
fn buildkit_builds_the_same_files_and_config() {
    let checkout = Checkout::new();
    let ours = unique_name("elixir-hello-imgbuild");
    checkout.build_ok(&["-t", &ours]);

    let theirs = unique_name("elixir-hello-buildkit");
    let bases = bases();
    let out = Command::new(base_common::DOCKER_CLI)
        .args(["build", "--network", "host", "-t", theirs.as_str()])
        .args(["--build-arg", &format!("BUILDER_IMAGE={}", bases.toolchain)])
        .args(["--build-arg", &format!("RUNNER_IMAGE={}", bases.slim)])
        .arg(checkout.path())
        .env("DOCKER_HOST", &env().docker_host)
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "BuildKit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (a, b) = (filesystem(&ours), filesystem(&theirs));
    let differences: Vec<String> = a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: imgbuild {:?}, BuildKit {:?}", a.get(k), b.get(k)))
        .collect();
    assert!(a.len() > 1000, "only {} files", a.len());
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );

    let (ca, cb) = (config(&ours), config(&theirs));
    for field in [
        "Env",
        "Cmd",
        "Entrypoint",
        "User",
        "WorkingDir",
        "ExposedPorts",
        "Labels",
        "Volumes",
    ] {
        assert_eq!(ca[field], cb[field], "{field}");
    }
    docker_ok(["rmi", ours.as_str(), theirs.as_str()]);
}

/// The time the deps step last fetched, as the build stage recorded it.
fn deps_stamp(checkout: &Checkout) -> String {
    let tag = unique_name("elixir-hello-build");
    checkout.build_ok(&["--target", "build", "-t", &tag]);
    let stamp = docker_ok(["run", "--rm", tag.as_str(), "cat", "/app/deps/.fetched-at"]);
    docker_ok(["rmi", tag.as_str()]);
    stamp
}

#[test]
fn the_step_cache_keeps_dependencies_until_the_lockfile_changes() {
    let checkout = Checkout::new();
    let layout = format!("type=oci,dest={}", checkout.cache.join("out").display());
    let first = checkout.build_ok(&["--output", &layout]);
    let stamp = deps_stamp(&checkout);

    // Nothing changed: every step cached, the same image (into the engine, its layers
    // are plain tars: the same config, another manifest).
    let again = checkout.build_ok(&[]);
    assert!(again.contains("12 of 12 steps cached, 0 run"), "{again}");
    assert_eq!(
        base_common::summary_image_id(&first),
        base_common::summary_image_id(&again)
    );

    // A source change: the dependency steps stay cached, the stamp with them.
    let file = checkout.path().join("lib/hello/handler.ex");
    let text = fs::read_to_string(&file).unwrap();
    fs::write(&file, text.replace("\"ok\\n\"", "\"still ok\\n\"")).unwrap();
    let source = checkout.build_ok(&[]);
    assert!(
        source.contains("cache miss: lib/hello/handler.ex changed"),
        "{source}"
    );
    assert!(!source.contains("mix.lock changed"), "{source}");
    assert_eq!(deps_stamp(&checkout), stamp);

    // A lockfile change: the deps step runs again and progress says why.
    let lock = checkout.path().join("mix.lock");
    fs::write(
        &lock,
        format!("{}# pinned again\n", fs::read_to_string(&lock).unwrap()),
    )
    .unwrap();
    let locked = checkout.build_ok(&[]);
    assert!(
        locked.contains("COPY mix.exs mix.lock ./\n#")
            || locked.contains("cache miss: mix.lock changed"),
        "{locked}"
    );
    assert!(locked.contains("cache miss: mix.lock changed"), "{locked}");
    assert_ne!(deps_stamp(&checkout), stamp);
}

#[test]
fn two_fresh_clones_give_the_same_digest() {
    let a = Checkout::new();
    let b = Checkout::new();
    // Other mtimes (and another umask's modes) in the second clone.
    for rel in [
        "mix.exs",
        "mix.lock",
        "lib/hello/handler.ex",
        "config/runtime.exs",
    ] {
        let path = b.path().join(rel);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(86_400 * 365 * 20))
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).unwrap();
    }
    let out = |c: &Checkout| format!("type=oci,dest={}", c.cache.join("out").display());
    let da = base_common::summary_digest(&a.build_ok(&["--output", &out(&a)]));
    let db = base_common::summary_digest(&b.build_ok(&["--output", &out(&b)]));
    assert_eq!(da, db);
}
