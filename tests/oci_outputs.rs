//! Image outputs checked by real tools: skopeo reads the OCI layout, the OCI tar and the
//! docker archive; umoci unpacks the layout. Reading back verifies every blob.

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use imgbuild::oci::layer::Ownership;
use imgbuild::oci::{
    AddOptions, BlobStore, Compression, DockerArchive, Healthcheck, Image, LayerBuilder,
    LayerOptions, OciDir, OciTar, Platform, Publish, append_layers, open_docker_archive,
    open_oci_layout, scratch, validate_image, write_oci_dir,
};
use serde_json::Value;

const EPOCH: i64 = 1_700_000_000;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn skopeo_inspect(transport_ref: &str) -> Value {
    serde_json::from_str(&run(Command::new("skopeo").args(["inspect", transport_ref]))).unwrap()
}

/// A base image on scratch: one layer with a small root file system, a config with the
/// fields Docker knows and imgbuild passes through.
fn base_image(work: &Path, compression: Compression) -> Arc<dyn Image> {
    let tree = work.join("base-tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::write(tree.join("etc/os-release"), "ID=test\n").unwrap();
    fs::write(tree.join("bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
    fs::hard_link(tree.join("bin/hello"), tree.join("bin/hi")).unwrap();
    symlink("hello", tree.join("bin/greet")).unwrap();
    let store = BlobStore::open(work.join("blobs")).unwrap();
    let mut b = LayerBuilder::new(store, LayerOptions::new(compression, EPOCH));
    b.add_dir(
        &tree,
        &AddOptions {
            chown: Some(Ownership::ROOT),
            ..Default::default()
        },
    )
    .unwrap();
    let layer = b.write().unwrap();

    let empty = scratch(&Platform::linux_amd64(), EPOCH).unwrap();
    let mut config = empty.config().unwrap();
    config.set_env(vec!["PATH=/bin".into()]);
    config.set_cmd(Some(vec!["/bin/hello".into()]));
    config.set_healthcheck(Some(Healthcheck {
        test: vec!["CMD".into(), "/bin/hello".into()],
        interval: 30_000_000_000,
        ..Default::default()
    }));
    config.push_history("COPY base-tree /", false).unwrap();
    config.push_history("CMD [\"/bin/hello\"]", true).unwrap();
    Arc::new(append_layers(empty, &[layer], config).unwrap())
}

/// The base plus one application layer.
fn app_image(work: &Path, base: Arc<dyn Image>) -> Arc<dyn Image> {
    let store = BlobStore::open(work.join("blobs")).unwrap();
    let mut b = LayerBuilder::new(store, LayerOptions::new(Compression::Gzip, EPOCH));
    b.add_bytes(
        "/app/main.sh",
        &b"echo app\n"[..],
        imgbuild::oci::layer::EntryMeta {
            mode: 0o755,
            owner: Ownership {
                uid: 1000,
                gid: 1000,
            },
        },
    )
    .unwrap();
    let layer = b.write().unwrap();
    let mut config = base.config().unwrap();
    config.set_working_dir(Some("/app".into()));
    config.set_user(Some("1000".into()));
    config.push_history("COPY main.sh /app/", false).unwrap();
    Arc::new(append_layers(base, &[layer], config).unwrap())
}

fn layer_digests(image: &dyn Image) -> Vec<String> {
    image
        .layers()
        .iter()
        .map(|l| l.digest().to_string())
        .collect()
}

#[test]
fn layout_dir_is_read_by_skopeo_and_unpacked_by_umoci() {
    let tmp = tempfile::tempdir().unwrap();
    let image = base_image(tmp.path(), Compression::Gzip);
    validate_image(&*image).unwrap();
    let dir = tmp.path().join("layout");
    let published = OciDir::new(&dir)
        .publish(&*image, &["app:1.0".to_string()])
        .unwrap();
    assert_eq!(published.digest, image.digest());

    let back = open_oci_layout(&dir, Some("app:1.0"), &Platform::linux_amd64()).unwrap();
    validate_image(&back).unwrap();
    assert_eq!(back.digest(), image.digest());

    let inspected = skopeo_inspect(&format!("oci:{}:app:1.0", dir.display()));
    assert_eq!(inspected["Digest"], image.digest().to_string());
    assert_eq!(inspected["Os"], "linux");
    assert_eq!(inspected["Architecture"], "amd64");
    let layers: Vec<String> = serde_json::from_value(inspected["Layers"].clone()).unwrap();
    assert_eq!(layers, layer_digests(&*image));
    // skopeo also picks the only image without a name.
    skopeo_inspect(&format!("oci:{}", dir.display()));

    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:app:1.0", dir.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/os-release")).unwrap(),
        "ID=test\n"
    );
    let hello = fs::metadata(rootfs.join("bin/hello")).unwrap();
    assert_eq!(
        fs::metadata(rootfs.join("bin/hi")).unwrap().ino(),
        hello.ino()
    );
    assert_eq!(
        fs::read_link(rootfs.join("bin/greet")).unwrap(),
        Path::new("hello")
    );
    let runtime: Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(runtime["process"]["args"][0], "/bin/hello");
}

#[test]
fn layout_tar_and_docker_archive_are_read_by_skopeo_and_by_imgbuild() {
    let tmp = tempfile::tempdir().unwrap();
    let image = app_image(tmp.path(), base_image(tmp.path(), Compression::Gzip));
    let tags = ["registry.local:5000/team/app:2".to_string()];

    let oci_tar = tmp.path().join("out/app-oci.tar");
    OciTar::new(&oci_tar).publish(&*image, &tags).unwrap();
    let inspected = skopeo_inspect(&format!("oci-archive:{}:{}", oci_tar.display(), tags[0]));
    assert_eq!(inspected["Digest"], image.digest().to_string());
    let back = open_oci_layout(&oci_tar, Some(&tags[0]), &Platform::linux_amd64()).unwrap();
    validate_image(&back).unwrap();
    assert_eq!(back.raw_manifest(), image.raw_manifest());

    let docker_tar = tmp.path().join("out/app-docker.tar");
    DockerArchive::new(&docker_tar)
        .publish(&*image, &tags)
        .unwrap();
    let inspected = skopeo_inspect(&format!("docker-archive:{}", docker_tar.display()));
    // skopeo describes docker-archive layers by their uncompressed digests.
    let layers: Vec<String> = serde_json::from_value(inspected["Layers"].clone()).unwrap();
    let diff_ids: Vec<String> = image
        .diff_ids()
        .unwrap()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(layers, diff_ids);
    let config: Value = serde_json::from_str(&run(Command::new("skopeo")
        .args(["inspect", "--config", "--raw"])
        .arg(format!("docker-archive:{}", docker_tar.display()))))
    .unwrap();
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert_eq!(
        config["config"]["Healthcheck"]["Interval"],
        30_000_000_000u64
    );
    let back = open_docker_archive(&docker_tar, Some(&tags[0])).unwrap();
    validate_image(&back).unwrap();
    assert_eq!(back.raw_config(), image.raw_config());
    assert_eq!(back.diff_ids().unwrap(), image.diff_ids().unwrap());

    // Same image, same archives, byte for byte.
    let again = tmp.path().join("out/again.tar");
    DockerArchive::new(&again).publish(&*image, &tags).unwrap();
    assert!(fs::read(&again).unwrap() == fs::read(&docker_tar).unwrap());
    // No temporary files are left beside the outputs.
    let mut names: Vec<String> = fs::read_dir(tmp.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["again.tar", "app-docker.tar", "app-oci.tar"]);
}

#[test]
fn zstd_layers_are_read_by_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let image = base_image(tmp.path(), Compression::Zstd);
    let dir = tmp.path().join("layout");
    write_oci_dir(&dir, &*image, &["z".to_string()]).unwrap();
    let inspected = skopeo_inspect(&format!("oci:{}:z", dir.display()));
    assert_eq!(inspected["Digest"], image.digest().to_string());
    // skopeo 1.9 shows no media types; decompressing the layers proves it reads zstd.
    let copy = tmp.path().join("copy");
    run(Command::new("skopeo")
        .args(["copy", "--dest-decompress"])
        .arg(format!("oci:{}:z", dir.display()))
        .arg(format!("dir:{}", copy.display())));
    let diff_id = image.diff_ids().unwrap()[0].clone();
    let plain = fs::read(copy.join(diff_id.digest())).unwrap();
    assert_eq!(imgbuild::oci::sha256_digest(&plain), diff_id);
    validate_image(&open_oci_layout(&dir, Some("z"), &Platform::linux_amd64()).unwrap()).unwrap();
}

#[test]
fn writing_into_an_existing_layout_adds_to_it_and_keeps_its_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base_image(tmp.path(), Compression::Gzip);
    let dir = tmp.path().join("layout");
    write_oci_dir(&dir, &*base, &["base".to_string()]).unwrap();
    let base_layer = dir
        .join("blobs/sha256")
        .join(base.layers()[0].digest().digest());
    let inode_before = fs::metadata(&base_layer).unwrap().ino();

    // The app is built on the base read back from the layout: its base blobs pass through.
    let source: Arc<dyn Image> =
        Arc::new(open_oci_layout(&dir, Some("base"), &Platform::linux_amd64()).unwrap());
    let app = app_image(tmp.path(), source);
    assert_eq!(&app.layers()[..1], base.layers());
    write_oci_dir(&dir, &*app, &["app".to_string()]).unwrap();

    assert_eq!(
        fs::metadata(&base_layer).unwrap().ino(),
        inode_before,
        "blob kept, not rewritten"
    );
    for (name, image) in [("base", &base), ("app", &app)] {
        let back = open_oci_layout(&dir, Some(name), &Platform::linux_amd64()).unwrap();
        validate_image(&back).unwrap();
        assert_eq!(back.digest(), image.digest());
        skopeo_inspect(&format!("oci:{}:{name}", dir.display()));
    }
    // Without a name the image is ambiguous, and the error says which names exist.
    let err = open_oci_layout(&dir, None, &Platform::linux_amd64())
        .err()
        .unwrap();
    assert!(err.to_string().contains("app, base"), "{err}");
    // Re-tagging replaces the entry of that name.
    write_oci_dir(&dir, &*app, &["base".to_string()]).unwrap();
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    assert!(
        manifests
            .iter()
            .all(|m| m["digest"] == app.digest().to_string())
    );
}

#[test]
fn a_corrupted_blob_is_detected_and_nothing_half_written_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let image = base_image(tmp.path(), Compression::Gzip);
    let dir = tmp.path().join("layout");
    write_oci_dir(&dir, &*image, &["t".to_string()]).unwrap();
    let layer = image.layers()[0].digest().clone();
    let blob = dir.join("blobs/sha256").join(layer.digest());
    let mut bytes = fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();

    let corrupt = open_oci_layout(&dir, Some("t"), &Platform::linux_amd64()).unwrap();
    let err = validate_image(&corrupt).unwrap_err().to_string();
    assert!(
        err.contains(&layer.to_string()) && err.contains("corrupt"),
        "{err}"
    );

    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let err = format!(
        "{:#}",
        OciTar::new(out.join("copy.tar"))
            .publish(&corrupt, &[])
            .unwrap_err()
    );
    assert!(err.contains(layer.digest()), "{err}");
    let err = format!(
        "{:#}",
        OciDir::new(out.join("copy"))
            .publish(&corrupt, &[])
            .unwrap_err()
    );
    assert!(err.contains(layer.digest()), "{err}");
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "no partial output");

    // A corrupted config is caught when the image is opened.
    let config = image.config_descriptor().digest().clone();
    fs::write(dir.join("blobs/sha256").join(config.digest()), b"{}").unwrap();
    let err = open_oci_layout(&dir, Some("t"), &Platform::linux_amd64())
        .err()
        .unwrap();
    assert!(err.to_string().contains(&config.to_string()), "{err}");
}
