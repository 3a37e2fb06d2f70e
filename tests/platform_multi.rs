//! `--platform linux/amd64,linux/arm64`: one image per platform and an OCI index over them.
//!
//! The cross-compiling fixture (`fixtures/go-cross`: Debian's Go on the build platform,
//! `GOARCH=$TARGETARCH`) gives an index whose arm64 image holds an arm64 program and whose
//! amd64 image an amd64 one, read back through skopeo from the layout and the registry.
//! The index is the same from both executors and from fresh caches. A RUN step of an
//! arm64 image runs emulated where binfmt has qemu; a base without a platform asked for
//! is refused before anything runs.

mod base_common;

use std::path::Path;
use std::process::{Command, Output};

use base_common::{
    arm64_emulation_registered, busybox_in_registry, busybox_multi_in_registry, docker, docker_ok,
    env, go_toolchain_image, imgbuild, repo, summary_digest, tempdir, unique_name,
};

const PLATFORMS: &str = "linux/amd64,linux/arm64";

/// ELF `e_machine` values.
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

fn elf_machine(binary: &[u8]) -> u16 {
    assert_eq!(binary.get(..4), Some(&b"\x7fELF"[..]), "not an ELF file");
    u16::from_le_bytes([binary[18], binary[19]])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Builds the go-cross fixture for both platforms with `executor` and a fresh cache.
fn build_go_cross(executor: &str, extra: &[&str]) -> Output {
    let cache = tempdir();
    let go_image = format!("GO_IMAGE={}", go_toolchain_image());
    let mut args = vec!["--executor", executor, "--build-arg", &go_image];
    args.extend_from_slice(extra);
    build_for(
        PLATFORMS,
        &repo().join("fixtures/go-cross"),
        cache.path(),
        &args,
    )
}

/// `imgbuild build --progress plain --platform PLATFORMS ARGS --cache-dir CACHE CONTEXT`.
fn build_for(platforms: &str, context: &Path, cache: &Path, args: &[&str]) -> Output {
    imgbuild()
        .args(["build", "--progress", "plain", "--platform", platforms])
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .arg(context)
        .output()
        .expect("imgbuild runs")
}

/// The program of the fixture's image for `arch` in `source` (a skopeo transport), read
/// through skopeo: index → that platform's manifest → its layer.
fn program_for(source: &str, arch: &str, extra: &[&str]) -> Vec<u8> {
    let dir = tempdir();
    let copy = dir.path().join("copy");
    let dest = format!("dir:{}", copy.display());
    let mut args = vec!["copy", "--override-arch", arch];
    args.extend_from_slice(extra);
    args.extend([source, dest.as_str()]);
    skopeo(&args);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("manifest.json")).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let blob = layers[0]["digest"].as_str().unwrap();
    let blob = copy.join(blob.trim_start_matches("sha256:"));
    let out = Command::new("tar")
        .arg("-xzOf")
        .arg(&blob)
        .arg("hello")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Checks the index in `source` (raw, as skopeo reads it) and returns its manifests' digests.
fn check_index(raw: &str) -> Vec<String> {
    let index: serde_json::Value = serde_json::from_str(raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    let platforms: Vec<String> = manifests
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    manifests
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_cross_compiled_program_gives_an_index_with_each_platforms_binary_on_both_executors() {
    let mut digests = Vec::new();
    for executor in ["native", "engine"] {
        let out_dir = tempdir();
        let layout = out_dir.path().join("layout");
        let out = build_go_cross(
            executor,
            &[
                "-t",
                "go-cross:test",
                &format!("--output=type=oci,dest={}", layout.display()),
            ],
        );
        let err = stderr(&out);
        assert!(out.status.success(), "{executor}: {err}");
        // Neither platform emulates: the build stage runs on the build platform, and the
        // packaging stage runs nothing.
        assert!(
            err.contains("[linux/arm64 build 4/4] RUN CGO_ENABLED=0 GOOS=linux GOARCH=arm64"),
            "{err}"
        );
        let digest = summary_digest(&err);
        let source = format!("oci:{}:go-cross:test", layout.display());
        let raw = skopeo(&["inspect", "--raw", &source]);
        assert_eq!(
            digest,
            format!("sha256:{}", sha256_hex(raw.as_bytes())),
            "the summary's digest is the index's"
        );
        check_index(&raw);
        assert_eq!(
            elf_machine(&program_for(&source, "amd64", &[])),
            EM_X86_64,
            "{executor}"
        );
        assert_eq!(
            elf_machine(&program_for(&source, "arm64", &[])),
            EM_AARCH64,
            "{executor}"
        );
        // skopeo copies the whole index, checking every blob against its digest.
        let copy = out_dir.path().join("copy");
        skopeo(&[
            "copy",
            "--all",
            &source,
            &format!("oci:{}:copy", copy.display()),
        ]);
        digests.push(digest);
    }
    assert_eq!(
        digests[0], digests[1],
        "both executors, each with an empty cache, give the same index"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn the_index_is_pushed_as_one_reference_and_the_engine_gets_this_machines_image() {
    let name = unique_name("multi");
    let reference = format!("{}/{name}:1", env().registry);
    let out_dir = tempdir();
    let iidfile = out_dir.path().join("iid");
    let local = out_dir.path().join("local");
    let archive = out_dir.path().join("index.tar");
    let out = build_go_cross(
        "native",
        &[
            "--push",
            "--load",
            "-t",
            &reference,
            &format!("--output=type=local,dest={}", local.display()),
            &format!("--output=type=oci,dest={}", archive.display()),
            &format!("--iidfile={}", iidfile.display()),
        ],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("the linux/amd64 image, this machine's platform"),
        "{err}"
    );
    let source = format!("docker://{reference}");
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &source]);
    let manifests = check_index(&raw);
    let index_digest = format!("sha256:{}", sha256_hex(raw.as_bytes()));
    assert_eq!(std::fs::read_to_string(&iidfile).unwrap(), index_digest);
    assert_eq!(summary_digest(&err), index_digest);
    // The OCI archive holds the same index.
    let archived = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}:{reference}", archive.display()),
    ]);
    assert_eq!(archived, raw);
    for (arch, machine) in [("amd64", EM_X86_64), ("arm64", EM_AARCH64)] {
        let inspected: serde_json::Value = serde_json::from_str(&skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            arch,
            &source,
        ]))
        .unwrap();
        assert_eq!(inspected["Architecture"], arch);
        let program = program_for(&source, arch, &["--src-tls-verify=false"]);
        assert_eq!(elf_machine(&program), machine, "{arch}");
        // type=local writes a directory per platform, as BuildKit does.
        let written = std::fs::read(local.join(format!("linux_{arch}/hello"))).unwrap();
        assert_eq!(written, program, "{arch}");
    }
    // The engine holds one image per name: this machine's, which runs.
    let id = docker_ok(["image", "inspect", "--format", "{{.Id}}", &reference]);
    let amd64_config: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--override-arch",
        "amd64",
        "--raw",
        &format!("docker://{}/{name}@{}", env().registry, manifests[0]),
    ]))
    .unwrap();
    assert_eq!(id.trim(), amd64_config["config"]["digest"]);
    let ran = docker_ok(["run", "--rm", "--network", "none", &reference]);
    assert_eq!(ran, "hello from linux/amd64\n");
    docker(["rmi", &reference]);
}

#[test]
fn each_platforms_run_steps_run_on_that_platform() {
    let base = busybox_multi_in_registry();
    let context = tempdir();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {base}\nRUN uname -m > /machine\n"),
    )
    .unwrap();
    for executor in ["native", "engine"] {
        let out_dir = tempdir();
        let dest = out_dir.path().join("fs");
        let output = format!("--output=type=local,dest={}", dest.display());
        let out = build_for(
            PLATFORMS,
            context.path(),
            &out_dir.path().join("cache"),
            &["--executor", executor, &output],
        );
        let err = stderr(&out);
        if arm64_emulation_registered() {
            assert!(out.status.success(), "{executor}: {err}");
            let machine = |p: &str| std::fs::read_to_string(dest.join(p).join("machine")).unwrap();
            assert_eq!(machine("linux_amd64"), "x86_64\n", "{executor}");
            assert_eq!(machine("linux_arm64"), "aarch64\n", "{executor}");
        } else {
            // Refused before the amd64 image's steps run, too.
            assert_eq!(out.status.code(), Some(2), "{executor}: {err}");
            assert!(err.contains("cannot run its programs"), "{executor}: {err}");
            assert!(!err.contains("RUN uname -m > /machine\n#"), "{err}");
            assert!(!dest.exists());
        }
    }
}

/// The second platform's build fails after the first's succeeded: exit 1, the failed step
/// named with its platform, and no output written (nothing is published until every
/// platform is built).
#[test]
fn a_failure_on_one_platform_publishes_nothing() {
    let context = tempdir();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {}\nARG TARGETARCH\nRUN test \"$TARGETARCH\" != arm64\n",
            busybox_multi_in_registry()
        ),
    )
    .unwrap();
    let out_dir = tempdir();
    let dest = out_dir.path().join("layout");
    let output = format!("--output=type=oci,dest={}", dest.display());
    let out = build_for(
        PLATFORMS,
        context.path(),
        &out_dir.path().join("cache"),
        &[&output],
    );
    let err = stderr(&out);
    assert!(!dest.exists(), "an output was written: {err}");
    if !arm64_emulation_registered() {
        // Refused before the amd64 image's steps run (each_platforms_run_steps_… too).
        assert_eq!(out.status.code(), Some(2), "{err}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{err}");
    // The amd64 image was built, then arm64's step failed.
    assert!(
        err.contains("[linux/amd64 2/2] RUN test \"amd64\" != arm64"),
        "{err}"
    );
    assert!(
        err.contains("error: building the linux/arm64 image\n  Caused by: "),
        "{err}"
    );
    assert!(
        err.contains("Dockerfile:3: [2/2] RUN test \"arm64\" != arm64 failed"),
        "{err}"
    );
}

#[test]
fn a_base_without_a_platform_asked_for_is_refused_before_any_step_runs() {
    let context = tempdir();
    let single = busybox_in_registry();
    let multi = busybox_multi_in_registry();
    let cases = [
        // A single-platform amd64 image: its files would be labelled arm64.
        (
            single.clone(),
            PLATFORMS,
            format!(
                "Dockerfile:1: {single} has no image for linux/arm64: it is a single-platform image for linux/amd64"
            ),
        ),
        // An index without the platform.
        (
            multi.clone(),
            "linux/amd64,linux/s390x",
            format!(
                "{multi} has no image for platform linux/s390x (it has: linux/amd64, linux/arm64)"
            ),
        ),
    ];
    for (base, platforms, expected) in cases {
        std::fs::write(
            context.path().join("Dockerfile"),
            format!("FROM {base}\nRUN echo ran > /ran\n"),
        )
        .unwrap();
        let out_dir = tempdir();
        let dest = out_dir.path().join("layout");
        let output = format!("--output=type=oci,dest={}", dest.display());
        let out = build_for(
            platforms,
            context.path(),
            &out_dir.path().join("cache"),
            &[&output],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&expected), "{err}");
        assert!(!err.contains("RUN echo ran"), "a step ran: {err}");
        assert!(!Path::new(&dest).exists());
    }
}
