//! `docker load` of imgbuild's docker archives, against the test environment's engine
//! with `/usr/bin/docker`. Fails (never skips) when no engine can be started.

mod support;

use std::collections::HashSet;
use std::fs;
use std::sync::Arc;

use imgbuild::oci::layer::{EntryMeta, Ownership};
use imgbuild::oci::{
    BlobStore, Compression, DockerArchive, DockerArchiveOptions, Image, LayerBuilder, LayerOptions,
    Platform, Publish, append_layers, scratch, write_docker_archive,
};
use serde_json::Value;

fn docker(args: &[&str]) -> String {
    support::docker_ok(args)
}

/// The engine of the test environment (started by `scripts/test-env` if need be).
fn require_engine() {
    support::env();
}

fn image_with_files(
    store: &BlobStore,
    base: Arc<dyn Image>,
    files: &[(&str, &str)],
    compression: Compression,
) -> Arc<dyn Image> {
    let mut b = LayerBuilder::new(store.clone(), LayerOptions::new(compression, 1_700_000_000));
    for (path, content) in files {
        let meta = EntryMeta {
            mode: 0o644,
            owner: Ownership::ROOT,
        };
        b.add_bytes(path, content.as_bytes(), meta).unwrap();
    }
    let layer = b.write().unwrap();
    let mut config = base.config().unwrap();
    config.set_cmd(Some(vec!["/nothing-to-run".into()]));
    config.push_history("COPY files /", false).unwrap();
    Arc::new(append_layers(base, &[layer], config).unwrap())
}

/// Loads an archive and checks the engine's view of the image against ours.
fn load_and_check(archive: &std::path::Path, tag: &str, image: &dyn Image) {
    let loaded = docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains(tag), "{loaded}");
    let inspect: Value = serde_json::from_str(&docker(&["image", "inspect", tag])).unwrap();
    assert_eq!(
        inspect[0]["Id"],
        image.config_descriptor().digest().to_string()
    );
    let layers: Vec<String> =
        serde_json::from_value(inspect[0]["RootFS"]["Layers"].clone()).unwrap();
    let diff_ids: Vec<String> = image
        .diff_ids()
        .unwrap()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(layers, diff_ids);
}

/// The files of an image as the engine unpacked them (`docker create` + `docker export`).
fn exported_file(tag: &str, path: &str) -> String {
    let id = docker(&["create", tag]).trim().to_string();
    let out = support::docker(["export", id.as_str()]);
    docker(&["rm", &id]);
    let mut archive = tar::Archive::new(&out.stdout[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(path) {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
            return s;
        }
    }
    panic!("{path} not in the exported container of {tag}");
}

#[test]
fn docker_load_accepts_archives_with_gzip_and_zstd_layers_and_without_known_layers() {
    require_engine();
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let suffix = std::process::id();
    let base_tag = format!("imgbuild-oci-test/base:{suffix}");
    let app_tag = format!("imgbuild-oci-test/app:{suffix}");

    let empty = scratch(&Platform::linux_amd64(), 0).unwrap();
    let base = image_with_files(
        &store,
        empty,
        &[("/etc/base.txt", "base\n")],
        Compression::Gzip,
    );
    let base_archive = tmp.path().join("base.tar");
    DockerArchive::new(&base_archive)
        .publish(&*base, std::slice::from_ref(&base_tag))
        .unwrap();
    load_and_check(&base_archive, &base_tag, &*base);
    assert_eq!(exported_file(&base_tag, "etc/base.txt"), "base\n");

    // The app's archive leaves out the base layer the engine now has.
    let app = image_with_files(
        &store,
        base.clone(),
        &[("/app/app.txt", "app\n")],
        Compression::Zstd,
    );
    let options = DockerArchiveOptions {
        omit_layers: base.diff_ids().unwrap().into_iter().collect::<HashSet<_>>(),
    };
    let app_archive = tmp.path().join("app.tar");
    let mut out = fs::File::create(&app_archive).unwrap();
    write_docker_archive(&mut out, &*app, std::slice::from_ref(&app_tag), &options).unwrap();
    drop(out);
    let names: Vec<String> = tar::Archive::new(fs::File::open(&app_archive).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    let base_layer = base.layers()[0].digest().digest().to_string();
    // The zstd layer goes in decompressed (20.10 cannot load zstd), named by its diff_id.
    let app_layer = app.diff_ids().unwrap()[1].digest().to_string();
    assert!(!names.iter().any(|n| n.contains(&base_layer)), "{names:?}");
    assert!(names.iter().any(|n| n.contains(&app_layer)), "{names:?}");
    load_and_check(&app_archive, &app_tag, &*app);
    assert_eq!(exported_file(&app_tag, "app/app.txt"), "app\n");
    assert_eq!(exported_file(&app_tag, "etc/base.txt"), "base\n");

    docker(&["rmi", &app_tag, &base_tag]);
}
