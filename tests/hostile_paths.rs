//! Path safety end to end, through `imgbuild build` against the real engine and registry:
//!
//! * COPY/ADD never read outside the build context (`..`, absolute paths, symlinks leading
//!   out, symlink loops): refused with an input error, and the bytes of a secret file next
//!   to the context appear nowhere in the output or the cache;
//! * hostile tars (ADD of a local archive, base layers) never write outside the image: not
//!   on the host, not outside the destination inside the image, and the packaging stage and
//!   build stages in the engine agree on what they accept;
//! * whiteouts and opaque directories of base layers stay honoured: no build resurrects
//!   what a base layer deleted (checked with umoci, which applies layers as a runtime does).

mod support;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::Digest as _;

/// A build context (`ctx/`) with a directory beside it (`outside/`), a cache directory and
/// an output directory, all temporary.
struct Project {
    root: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let root = support::tempdir();
        fs::create_dir(root.path().join("ctx")).unwrap();
        fs::create_dir(root.path().join("outside")).unwrap();
        Project {
            root,
            cache: support::tempdir(),
        }
    }

    fn ctx(&self) -> PathBuf {
        self.root.path().join("ctx")
    }

    fn outside(&self) -> PathBuf {
        self.root.path().join("outside")
    }

    fn out(&self) -> PathBuf {
        self.root.path().join("out")
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> &Project {
        let path = self.ctx().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
        self
    }

    fn symlink(&self, rel: &str, target: impl AsRef<Path>) -> &Project {
        let path = self.ctx().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
        self
    }

    /// Builds `dockerfile` (`BUSYBOX` replaced by the test registry's busybox) into an OCI
    /// layout at `out()`, tagged `test:1`; `out()` is removed first.
    fn build(&self, dockerfile: &str) -> Output {
        let dockerfile = dockerfile.replace("BUSYBOX", &support::busybox_in_registry());
        fs::write(self.ctx().join("Dockerfile"), dockerfile).unwrap();
        let _ = fs::remove_dir_all(self.out());
        Command::new(support::imgbuild_bin())
            .args([
                "build",
                "--progress",
                "plain",
                "-t",
                "test:1",
                "--cache-dir",
            ])
            .arg(self.cache.path())
            .arg("--output")
            .arg(format!("type=oci,dest={}", self.out().display()))
            .arg(self.ctx())
            .env("DOCKER_HOST", &support::env().docker_host)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .expect("imgbuild runs")
    }

    fn build_ok(&self, dockerfile: &str) {
        let out = self.build(dockerfile);
        assert!(
            out.status.success(),
            "imgbuild failed ({}) on\n{dockerfile}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Builds and expects exit status `code` with `needle` in the error.
    fn build_fails(&self, dockerfile: &str, code: i32, needle: &str) {
        let out = self.build(dockerfile);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "on\n{dockerfile}\n{stderr}");
        assert!(stderr.contains(needle), "no `{needle}` in\n{stderr}");
        assert!(!self.out().exists(), "a failed build wrote its output");
    }

    /// The engine images the builds of this project made (recorded in its step cache), so
    /// the test removes them and nothing else from the shared engine.
    fn remove_engine_images(&self) {
        let keys = self.cache.path().join("steps-v2/keys");
        let Ok(entries) = fs::read_dir(keys) else {
            return;
        };
        for entry in entries {
            let bytes = fs::read(entry.unwrap().path()).unwrap_or_default();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if let Some(image) = json["record"]["image"].as_str() {
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

/// The uncompressed layers of the image tagged `test:1` in an OCI layout.
fn layers(layout: &Path) -> Vec<Vec<u8>> {
    let blob =
        |digest: &str| fs::read(layout.join("blobs").join(digest.replace(':', "/"))).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| gunzip(&blob(layer["digest"].as_str().unwrap())))
        .collect()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return bytes.to_vec();
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// One entry of a layer as the tests compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    name: String,
    kind: char,
    link: String,
    data: String,
}

fn entries(tar_bytes: &[u8]) -> Vec<Seen> {
    let mut archive = tar::Archive::new(tar_bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut data = String::new();
            let _ = e.read_to_string(&mut data);
            Seen {
                name: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                kind: char::from(e.header().entry_type().as_byte()),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default(),
                data,
            }
        })
        .collect()
}

/// Entries of the last layer whose names start with `prefix`.
fn last_layer(project: &Project, prefix: &str) -> Vec<Seen> {
    let layers = layers(&project.out());
    entries(layers.last().unwrap())
        .into_iter()
        .filter(|e| e.name.starts_with(prefix))
        .collect()
}

/// Whether `needle` occurs in any file under `dir`, gzip blobs decompressed.
fn found_under(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let bytes = gunzip(&fs::read(e.path()).unwrap_or_default());
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .map(|e| e.path().to_path_buf())
        .collect()
}

#[test]
fn copy_never_reads_outside_the_context() {
    let project = Project::new();
    let marker = support::unique_name("SECRET");
    let secret = project.outside().join("secret");
    fs::write(&secret, &marker).unwrap();
    project
        .write("app.txt", b"inside")
        .symlink("secret-link", &secret)
        .symlink("up", "..")
        .symlink("loop", "loop")
        .symlink("a", "b")
        .symlink("b", "a")
        .symlink("conf/abs", &secret)
        .symlink("conf/rel", "../../outside/secret");
    let packaging = |copy: &str| format!("FROM BUSYBOX\n{copy}\n");
    for (dockerfile, needle) in [
        // `..` stops at the context's root (as BuildKit cleans it): the context has no
        // `outside/secret`, the file next to it is never read.
        (
            packaging("COPY ../outside/secret /x"),
            "no such file in the build context",
        ),
        (
            packaging(&format!("COPY {} /x", secret.display())),
            "no such file in the build context",
        ),
        // An absolute link resolves inside the context, as in BuildKit: the host's file
        // is never read, and the context has none at that path.
        (
            packaging("COPY secret-link /x"),
            "no such file in the build context",
        ),
        (
            packaging("ADD secret-link /x"),
            "no such file in the build context",
        ),
        (
            packaging("COPY secret-* /x/"),
            "no such file in the build context",
        ),
        (
            packaging("COPY up/outside/secret /x"),
            "outside the build context",
        ),
        (packaging("COPY loop /x"), "too many levels of symlinks"),
        (packaging("COPY a /x"), "too many levels of symlinks"),
        // The same selection in a build stage, whose files go to the engine.
        (
            "FROM BUSYBOX AS b\nCOPY secret-link /x\nRUN true\nFROM BUSYBOX\nCOPY --from=b /x /x\n"
                .to_owned(),
            "no such file in the build context",
        ),
    ] {
        project.build_fails(&dockerfile, 2, needle);
    }
    // Symlinks inside a copied directory are copied as links, in both kinds of stage; read
    // in a container they lead nowhere (the secret is not in the image).
    project.build_ok(
        "FROM BUSYBOX AS b\nCOPY conf /conf\nRUN cat /conf/abs /conf/rel > /read 2>&1; true\n\
         FROM BUSYBOX\nCOPY conf /conf\nCOPY --from=b /read /read\n",
    );
    let layers = layers(&project.out());
    let copied = entries(&layers[layers.len() - 2]);
    let links: Vec<(&str, &str)> = copied
        .iter()
        .filter(|e| e.kind == '2')
        .map(|e| (e.name.as_str(), e.link.as_str()))
        .collect();
    assert_eq!(
        links,
        [
            ("conf/abs", secret.to_str().unwrap()),
            ("conf/rel", "../../outside/secret")
        ]
    );
    let read = entries(layers.last().unwrap());
    assert!(
        read.iter()
            .any(|e| e.name == "read" && e.data.contains("No such file")),
        "{read:?}"
    );
    for dir in [project.out(), project.cache.path().to_path_buf()] {
        assert_eq!(
            found_under(&dir, marker.as_bytes()),
            Vec::<PathBuf>::new(),
            "the secret outside the context was read into {}",
            dir.display()
        );
    }
}

/// A tar entry made by hand: the tar crate refuses to write hostile names.
struct Raw<'a> {
    name: &'a str,
    kind: tar::EntryType,
    link: &'a str,
    data: &'a [u8],
    device: (u32, u32),
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name,
        kind: tar::EntryType::Regular,
        link: "",
        data,
        device: (0, 0),
    }
}

fn link<'a>(name: &'a str, kind: tar::EntryType, target: &'a str) -> Raw<'a> {
    Raw {
        name,
        kind,
        link: target,
        data: b"",
        device: (0, 0),
    }
}

fn node(name: &str, kind: tar::EntryType, device: (u32, u32)) -> Raw<'_> {
    Raw {
        name,
        kind,
        link: "",
        data: b"",
        device,
    }
}

/// A GNU tar of `entries`, names and link targets written as they are (up to 100 bytes).
fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            gnu.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        }
        h.set_entry_type(e.kind);
        h.set_mode(if e.kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(e.data.len() as u64);
        h.set_device_major(e.device.0).unwrap();
        h.set_device_minor(e.device.1).unwrap();
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// `ADD NAME /dst/` in the packaging stage, and the same in a build stage whose `/dst` the
/// final stage copies: both must give the same entries, or both refuse.
fn both_ways(name: &str) -> [String; 2] {
    [
        format!("FROM BUSYBOX\nADD {name} /dst/\n"),
        format!(
            "FROM BUSYBOX AS b\nADD {name} /dst/\nRUN true\nFROM BUSYBOX\nCOPY --from=b /dst /dst\n"
        ),
    ]
}

fn dst_entries(project: &Project) -> Vec<(String, char, String)> {
    last_layer(project, "dst/")
        .into_iter()
        .map(|e| (e.name, e.kind, e.data))
        .collect()
}

#[test]
fn hostile_add_archives_never_write_outside_their_destination() {
    let project = Project::new();
    let tag = support::unique_name("hostile");
    let host_path = |what: &str| PathBuf::from(format!("/tmp/{tag}-{what}"));
    let dotdot = format!("../../../../../../../../tmp/{tag}-dotdot");
    let absolute = format!("/tmp/{tag}-abs");
    let through = format!("link/{tag}-through");
    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Symlink};
    let archives: [(&str, Vec<Raw<'_>>); 7] = [
        (
            "dotdot.tar",
            vec![file("ok", b"ok"), file(&dotdot, b"escaped")],
        ),
        ("abs.tar", vec![file(&absolute, b"abs")]),
        (
            "through.tar",
            vec![link("link", Symlink, "/tmp"), file(&through, b"through")],
        ),
        ("hardlink.tar", vec![link("pw", Link, "/etc/passwd")]),
        (
            "hardlink-up.tar",
            vec![link("pw", Link, "../../../etc/passwd")],
        ),
        (
            "devices.tar",
            vec![
                node("null2", Char, (1, 3)),
                node("disk", Block, (8, 0)),
                node("fifo", Fifo, (0, 0)),
                file("ok", b"ok"),
            ],
        ),
        (
            "dups.tar",
            vec![
                file("dup", b"first"),
                file("dup", b"second"),
                node("d/", Directory, (0, 0)),
                file("d/x", b"x"),
                file("d", b"file now"),
            ],
        ),
    ];
    for (name, archive) in &archives {
        project.write(name, &raw_tar(archive));
    }
    let dst = |path: &str, kind: char, data: &str| (path.to_owned(), kind, data.to_owned());
    // A name climbing out stays at the destination's root, as BuildKit's unpacking,
    // chrooted there, keeps it (conformance case addtar-entry-escape).
    for dockerfile in both_ways("dotdot.tar") {
        project.build_ok(&dockerfile);
        assert_eq!(
            dst_entries(&project),
            [
                dst("dst/", '5', ""),
                dst("dst/ok", '0', "ok"),
                dst("dst/tmp/", '5', ""),
                dst(&format!("dst/tmp/{tag}-dotdot"), '0', "escaped"),
            ],
            "{dockerfile}"
        );
    }
    for dockerfile in both_ways("through.tar") {
        project.build_fails(&dockerfile, 2, "writes `link/");
    }
    // A hard link to a file the archive does not hold (`/dst/etc/passwd`, however its
    // target climbs): the packaging stage cannot write it, the engine finds no
    // /dst/etc/passwd in the container. Both fail.
    for dockerfile in both_ways("hardlink.tar")
        .into_iter()
        .chain(both_ways("hardlink-up.tar"))
    {
        let out = project.build(&dockerfile);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for dockerfile in both_ways("abs.tar") {
        project.build_ok(&dockerfile);
        assert_eq!(
            dst_entries(&project),
            [
                dst("dst/", '5', ""),
                dst("dst/tmp/", '5', ""),
                dst(&format!("dst/tmp/{tag}-abs"), '0', "abs"),
            ],
            "{dockerfile}"
        );
    }
    // Device nodes and FIFOs are made as the archive has them, as BuildKit's unpacking
    // makes them: in the image, never on the host (`/tmp` holds none of their names).
    for dockerfile in both_ways("devices.tar") {
        project.build_ok(&dockerfile);
        assert_eq!(
            dst_entries(&project),
            [
                dst("dst/", '5', ""),
                dst("dst/disk", '4', ""),
                dst("dst/fifo", '6', ""),
                dst("dst/null2", '3', ""),
                dst("dst/ok", '0', "ok"),
            ],
            "{dockerfile}"
        );
    }
    // Later entries replace earlier ones of the same name, a file replaces a directory.
    for dockerfile in both_ways("dups.tar") {
        project.build_ok(&dockerfile);
        assert_eq!(
            dst_entries(&project),
            [
                dst("dst/", '5', ""),
                dst("dst/d", '0', "file now"),
                dst("dst/dup", '0', "second"),
            ],
            "{dockerfile}"
        );
    }
    // Nothing landed on the host where an extraction that follows names would have put it.
    for what in ["dotdot", "abs", "through"] {
        assert!(
            !host_path(what).exists(),
            "{} exists",
            host_path(what).display()
        );
    }
    for dir in [project.ctx(), project.cache.path().to_path_buf()] {
        // The native executor's snapshots are the image's own files (`dst/…` inside a
        // step's tree), not something written where a name pointed.
        let snapshots = project.cache.path().join("snapshots-v1");
        let stray: Vec<_> = walkdir::WalkDir::new(&dir)
            .into_iter()
            .filter_entry(|e| e.path() != snapshots)
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(&tag))
            .map(|e| e.path().to_path_buf())
            .collect();
        assert_eq!(
            stray,
            Vec::<PathBuf>::new(),
            "entries named after the archive's names"
        );
    }
}

/// An image in the test registry: busybox with `extra` layers on top (gzip, made by hand),
/// pushed with skopeo. Returns its reference.
fn base_with_layers(name: &str, extra: &[Vec<u8>]) -> String {
    let work = support::tempdir();
    let layout = work.path().join("layout");
    let skopeo = |args: &[&str]| {
        let out = Command::new("skopeo").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}", support::busybox_in_registry()),
        &format!("oci:{}:base", layout.display()),
    ]);
    let blob_path = |digest: &str| layout.join("blobs").join(digest.replace(':', "/"));
    let put = |bytes: &[u8]| -> String {
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        fs::write(blob_path(&digest), bytes).unwrap();
        digest
    };
    let read_json = |digest: &str| -> serde_json::Value {
        serde_json::from_slice(&fs::read(blob_path(digest)).unwrap()).unwrap()
    };
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut manifest = read_json(index["manifests"][0]["digest"].as_str().unwrap());
    let mut config = read_json(manifest["config"]["digest"].as_str().unwrap());
    for layer in extra {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, layer).unwrap();
        let compressed = gz.finish().unwrap();
        let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(layer)));
        let digest = put(&compressed);
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .unwrap()
            .push(diff_id.into());
        config["history"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"created_by": "hand-made test layer"}));
        manifest["layers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": compressed.len(),
            }));
    }
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = put(&config_bytes).into();
    manifest["config"]["size"] = config_bytes.len().into();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = put(&manifest_bytes).into();
    index["manifests"][0]["size"] = manifest_bytes.len().into();
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let reference = format!(
        "{}/imgbuild-test/{name}:{}",
        support::env().registry,
        support::unique_name("t").replace('-', "")
    );
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:base", layout.display()),
        &format!("docker://{reference}"),
    ]);
    reference
}

/// The root filesystem of `test:1` in the project's output, unpacked by umoci.
fn unpacked(project: &Project) -> tempfile::TempDir {
    let bundle = support::tempdir();
    let dir = bundle.path().join("b");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:test:1", project.out().display()))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bundle
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn whiteouts_of_base_layers_stay_honoured() {
    use tar::EntryType::Directory;
    let lower = raw_tar(&[
        file("etc/imgbuild-gone", b"deleted by the next layer"),
        node("opaque/", Directory, (0, 0)),
        file("opaque/a", b"a"),
        node("opaque/sub/", Directory, (0, 0)),
        file("opaque/sub/b", b"b"),
        node("keep/", Directory, (0, 0)),
        file("keep/k", b"k"),
    ]);
    let upper = raw_tar(&[
        file("etc/.wh.imgbuild-gone", b""),
        node("opaque/", Directory, (0, 0)),
        file("opaque/.wh..wh..opq", b""),
        file("opaque/new", b"new"),
    ]);
    let base = base_with_layers("whiteout-base", &[lower, upper]);
    let project = Project::new();
    project.write("f", b"f");
    let rootfs = |bundle: &tempfile::TempDir| bundle.path().join("b/rootfs");

    // Packaging only: the base's layers are reused, the new ones go on top.
    project.build_ok(&format!(
        "FROM {base}\nCOPY f /opaque/\nWORKDIR /opaque/sub\nWORKDIR /etc/imgbuild-gone\n"
    ));
    let bundle = unpacked(&project);
    let root = rootfs(&bundle);
    assert_eq!(listing(&root.join("opaque")), ["f", "new", "sub"]);
    assert_eq!(listing(&root.join("opaque/sub")), Vec::<String>::new());
    assert!(
        root.join("etc/imgbuild-gone").is_dir(),
        "WORKDIR made a new directory"
    );
    assert_eq!(
        listing(&root.join("etc/imgbuild-gone")),
        Vec::<String>::new()
    );
    assert_eq!(fs::read_to_string(root.join("keep/k")).unwrap(), "k");

    // A RUN in the final stage sees the merged view, and its layer resurrects nothing.
    project.build_ok(&format!(
        "FROM {base}\nRUN ls -A /opaque > /opaque-list && ls -A /etc > /etc-list\n"
    ));
    let bundle = unpacked(&project);
    let root = rootfs(&bundle);
    assert_eq!(
        fs::read_to_string(root.join("opaque-list")).unwrap(),
        "new\n"
    );
    assert!(
        !fs::read_to_string(root.join("etc-list"))
            .unwrap()
            .contains("imgbuild-gone")
    );
    assert_eq!(listing(&root.join("opaque")), ["new"]);
    assert!(!root.join("etc/imgbuild-gone").exists());

    // A final stage on a build stage that deleted and remade a directory (the engine's diff
    // has whiteouts of its own), and COPY --from the stage and the base image.
    project.build_ok(&format!(
        "FROM {base} AS b\nRUN rm -rf /keep && mkdir /keep && echo fresh > /keep/fresh\n\
         FROM b\nCOPY f /f\nCOPY --from=b /opaque /o\nCOPY --from={base} /etc /e\n"
    ));
    let bundle = unpacked(&project);
    let root = rootfs(&bundle);
    assert_eq!(listing(&root.join("keep")), ["fresh"]);
    assert_eq!(listing(&root.join("opaque")), ["new"]);
    assert_eq!(listing(&root.join("o")), ["new"]);
    assert!(!root.join("etc/imgbuild-gone").exists());
    assert!(root.join("e/passwd").is_file() && !root.join("e/imgbuild-gone").exists());
}

#[test]
fn hostile_base_layers_are_read_without_writing_anywhere() {
    use tar::EntryType::{Char, Link, Symlink};
    let tag = support::unique_name("hostile-base");
    let dotdot = format!("../../../../../../../../tmp/{tag}-dotdot");
    let absolute = format!("/tmp/{tag}-abs");
    let through = format!("lnk/{tag}-through");
    let hostile = raw_tar(&[
        file(&dotdot, b"escaped"),
        file(&absolute, b"abs"),
        link("lnk", Symlink, "/tmp"),
        file(&through, b"through"),
        link("pw", Link, "/etc/passwd"),
        node("null2", Char, (1, 3)),
        // A hostile account file: `--chown` reads /etc/passwd from the base layers.
        file(
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\napp:x:1234:1234::/:/bin/sh\n",
        ),
    ]);
    let base = base_with_layers("hostile-base", std::slice::from_ref(&hostile));
    let project = Project::new();
    project.write("f", b"f");
    project.build_ok(&format!("FROM {base}\nCOPY --chown=app f /f\n"));
    // The base's layers are reused as they are (imgbuild rewrites none of them), and the
    // new layer is just the COPY, owned by the account the hostile layer defines.
    let layers = layers(&project.out());
    assert_eq!(layers[layers.len() - 2], hostile);
    let copied = entries(layers.last().unwrap());
    assert_eq!(copied.len(), 1, "{copied:?}");
    let mut archive = tar::Archive::new(&layers.last().unwrap()[..]);
    let entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.header().uid().unwrap(), 1234);
    for what in ["dotdot", "abs", "through"] {
        let path = PathBuf::from(format!("/tmp/{tag}-{what}"));
        assert!(!path.exists(), "{} exists", path.display());
    }
}
