//! Images against the real test engine: connect and ping, look up, commit with a config,
//! tag and remove, and load `docker save` archives (whole, and without the layers the
//! engine already has).

mod engine_common;
mod support;

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;
use engine_common::{RemoveImageOnDrop, busybox, engine, inspect_image, stdout_of};
use imgbuild::engine::{Engine, Error, ImageConfig, RunSpec};
use support::{docker_ok, unique_name};

#[tokio::test]
async fn ping_reports_what_the_docker_cli_reports() {
    let engine = engine().await;
    let info = engine.ping().await.expect("ping");
    let cli = docker_ok([
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.Os}} {{.Server.Arch}}",
    ]);
    assert_eq!(
        format!(
            "{} {} {} {}",
            info.version, info.api_version, info.os, info.arch
        ),
        cli.trim()
    );
}

#[tokio::test]
async fn find_image_reads_id_layers_and_config_or_says_none() {
    let engine = engine().await;
    let image = engine
        .find_image(&busybox())
        .await
        .expect("inspect")
        .expect("the busybox image is present");

    assert_eq!(image.id, inspect_image(&busybox(), "{{.Id}}"));
    assert_eq!(
        serde_json::to_string(&image.diff_ids).expect("json"),
        inspect_image(&busybox(), "{{json .RootFS.Layers}}")
    );
    assert_eq!(
        serde_json::to_string(&image.config.env).expect("json"),
        inspect_image(&busybox(), "{{json .Config.Env}}")
    );
    assert_eq!(
        serde_json::to_string(&image.config.cmd).expect("json"),
        inspect_image(&busybox(), "{{json .Config.Cmd}}")
    );
    assert!(
        image.repo_tags.contains(&busybox()),
        "{:?}",
        image.repo_tags
    );
    assert_eq!(
        (image.os.as_str(), image.architecture.as_str()),
        (
            inspect_image(&busybox(), "{{.Os}}").as_str(),
            inspect_image(&busybox(), "{{.Architecture}}").as_str()
        )
    );

    // By id too (tags aside: other tests tag this image meanwhile).
    let by_id = engine
        .find_image(&image.id)
        .await
        .expect("inspect by id")
        .expect("found by id");
    assert_eq!(
        (&by_id.id, &by_id.diff_ids, &by_id.config),
        (&image.id, &image.diff_ids, &image.config)
    );

    let missing = format!("imgbuild-test/{}:missing", unique_name("none"));
    assert_eq!(engine.find_image(&missing).await.expect("inspect"), None);
}

fn full_config() -> ImageConfig {
    ImageConfig {
        env: vec![
            "PATH=/app/bin:/usr/bin:/bin".into(),
            "APP_MODE=production".into(),
        ],
        cmd: Some(vec!["serve".into(), "--port=8080".into()]),
        entrypoint: Some(vec!["/app/bin/start".into()]),
        workdir: "/app".into(),
        user: "1000:1000".into(),
        labels: BTreeMap::from([("org.opencontainers.image.title".into(), "demo".into())]),
        exposed_ports: vec!["53/udp".into(), "8080/tcp".into()],
        volumes: vec!["/data".into()],
        stop_signal: "SIGINT".into(),
        shell: Some(vec!["/bin/sh".into(), "-ec".into()]),
        on_build: vec!["RUN echo child".into()],
    }
}

/// A container like a RUN step's: its own user, workdir and a variable only it has.
async fn run_step(engine: &Engine) -> imgbuild::engine::Container {
    let mut spec = RunSpec::new(busybox(), ["sh", "-c", "echo built > /tmp/built"]);
    spec.user = "nobody".into();
    spec.workdir = "/work".into();
    spec.env = vec!["BUILD_ARG=only-for-this-step".into()];
    engine
        .run(&spec, &mut |_| {})
        .await
        .expect("the step succeeds")
}

#[tokio::test]
async fn a_commit_carries_the_config_it_is_given() {
    let engine = engine().await;
    let container = run_step(&engine).await;
    let config = full_config();
    let image = engine
        .commit_and_remove(container, &config)
        .await
        .expect("commit");
    let _cleanup = RemoveImageOnDrop(image.clone());

    let inspect = |format| inspect_image(&image, format);
    assert_eq!(
        inspect("{{json .Config.Cmd}}"),
        r#"["serve","--port=8080"]"#
    );
    assert_eq!(
        inspect("{{json .Config.Entrypoint}}"),
        r#"["/app/bin/start"]"#
    );
    assert_eq!(
        inspect("{{.Config.WorkingDir}} {{.Config.User}}"),
        "/app 1000:1000"
    );
    // Only the given labels: imgbuild marks its containers by name, not by label, because
    // the engine copies container labels into the committed image.
    assert_eq!(
        inspect("{{json .Config.Labels}}"),
        r#"{"org.opencontainers.image.title":"demo"}"#
    );
    assert_eq!(
        inspect("{{json .Config.ExposedPorts}}"),
        r#"{"53/udp":{},"8080/tcp":{}}"#
    );
    assert_eq!(inspect("{{json .Config.Volumes}}"), r#"{"/data":{}}"#);
    assert_eq!(inspect("{{.Config.StopSignal}}"), "SIGINT");
    assert_eq!(inspect("{{json .Config.Shell}}"), r#"["/bin/sh","-ec"]"#);
    assert_eq!(inspect("{{json .Config.OnBuild}}"), r#"["RUN echo child"]"#);
    // The engine appends the variable only the container had (documented on commit).
    assert_eq!(
        inspect("{{json .Config.Env}}"),
        r#"["PATH=/app/bin:/usr/bin:/bin","APP_MODE=production","BUILD_ARG=only-for-this-step"]"#
    );

    // find_image reads back the same config.
    let found = engine
        .find_image(&image)
        .await
        .expect("inspect")
        .expect("committed image");
    let mut expected = config;
    expected.env.push("BUILD_ARG=only-for-this-step".into());
    assert_eq!(found.config, expected);
    let base = engine
        .find_image(&busybox())
        .await
        .expect("inspect")
        .expect("busybox");
    assert_eq!(found.diff_ids.len(), base.diff_ids.len() + 1);
    assert_eq!(found.diff_ids[..base.diff_ids.len()], base.diff_ids[..]);

    engine.remove_image(&image).await.expect("remove image");
}

#[tokio::test]
async fn a_commit_fills_what_the_config_leaves_empty_from_the_container() {
    let engine = engine().await;
    let container = run_step(&engine).await;
    let image = engine
        .commit_and_remove(container, &ImageConfig::default())
        .await
        .expect("commit");
    let _cleanup = RemoveImageOnDrop(image.clone());
    let found = engine
        .find_image(&image)
        .await
        .expect("inspect")
        .expect("committed image");
    engine.remove_image(&image).await.expect("remove image");

    assert_eq!(
        found.config.cmd,
        Some(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "echo built > /tmp/built".to_owned()
        ])
    );
    assert_eq!(found.config.user, "nobody");
    assert_eq!(found.config.workdir, "/work");
    assert!(
        found
            .config
            .env
            .contains(&"BUILD_ARG=only-for-this-step".to_owned())
    );
}

#[tokio::test]
async fn tag_points_a_reference_at_an_image_and_remove_image_takes_it_away() {
    let engine = engine().await;
    let reference = format!("127.0.0.1:5000/{}:v1", unique_name("tag"));
    engine.tag(&busybox(), &reference).await.expect("tag");
    let _cleanup = RemoveImageOnDrop(reference.clone());
    assert_eq!(
        inspect_image(&reference, "{{.Id}}"),
        inspect_image(&busybox(), "{{.Id}}")
    );

    assert!(engine.remove_image(&reference).await.expect("remove"));
    assert!(
        !support::docker(["image", "inspect", &reference])
            .status
            .success()
    );
    assert!(!engine.remove_image(&reference).await.expect("remove again"));
    // The image itself stays under its other tag.
    assert!(
        engine
            .find_image(&busybox())
            .await
            .expect("inspect")
            .is_some()
    );

    let digest = engine.tag(&busybox(), "app@sha256:0000").await;
    assert!(matches!(digest, Err(Error::Invalid(_))), "{digest:?}");
    let missing = engine
        .tag(&format!("{}:missing", unique_name("none")), &reference)
        .await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
}

/// An image the engine has under `reference` only (busybox plus a file of its own), saved
/// with `docker save` and then removed from the engine. Returns the archive and its id.
async fn saved_and_removed(engine: &Engine, reference: &str) -> (Vec<u8>, String) {
    let container = engine
        .run(
            &RunSpec::new(busybox(), ["sh", "-c", "echo loaded > /marker"]),
            &mut |_| {},
        )
        .await
        .expect("run");
    let id = engine
        .commit_and_remove(container, &ImageConfig::default())
        .await
        .expect("commit");
    engine.tag(&id, reference).await.expect("tag");
    let dir = support::tempdir();
    let archive = dir.path().join("image.tar");
    docker_ok(["save", "-o", &archive.to_string_lossy(), reference]);
    assert!(engine.remove_image(reference).await.expect("remove"));
    assert_eq!(engine.find_image(&id).await.expect("inspect"), None);
    (std::fs::read(&archive).expect("read archive"), id)
}

async fn check_loaded(engine: &Engine, loaded: Vec<String>, reference: &str, id: &str) {
    assert_eq!(loaded, [reference]);
    let image = engine
        .find_image(reference)
        .await
        .expect("inspect")
        .expect("loaded");
    assert_eq!(image.id, id);
    let spec = RunSpec::new(reference, ["cat", "/marker"]);
    assert_eq!(stdout_of(engine, &spec).await, ["loaded"]);
    assert!(engine.remove_image(reference).await.expect("remove"));
}

#[tokio::test]
async fn a_saved_archive_loads_back_from_a_reader() {
    let engine = engine().await;
    let reference = format!("imgbuild-test/{}:v1", unique_name("load"));
    let (archive, id) = saved_and_removed(&engine, &reference).await;
    let _cleanup = RemoveImageOnDrop(reference.clone());
    let dir = support::tempdir();
    let path = dir.path().join("image.tar");
    std::fs::write(&path, &archive).expect("write archive");

    let file = tokio::fs::File::open(&path).await.expect("open archive");
    let loaded = engine.load_archive_from(file).await.expect("load");
    check_loaded(&engine, loaded, &reference, &id).await;
}

/// The engine has the base layer, so the archive may leave its `layer.tar` out while
/// `manifest.json` still lists it: what the packaging stage sends to save the copy.
#[tokio::test]
async fn an_archive_without_the_layers_the_engine_has_loads() {
    let engine = engine().await;
    let reference = format!("imgbuild-test/{}:v1", unique_name("load-partial"));
    let (archive, id) = saved_and_removed(&engine, &reference).await;
    let _cleanup = RemoveImageOnDrop(reference.clone());

    let manifest: serde_json::Value = {
        let mut tar = tar::Archive::new(archive.as_slice());
        let mut entries = tar.entries().expect("entries");
        let mut manifest = entries
            .find(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().is_ok_and(|p| p.as_os_str() == "manifest.json"))
            })
            .expect("manifest.json")
            .expect("entry");
        let mut text = String::new();
        manifest.read_to_string(&mut text).expect("read manifest");
        serde_json::from_str(&text).expect("manifest json")
    };
    let layers = manifest[0]["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), 2, "busybox's layer and the marker layer");
    let base_layer = layers[0].as_str().expect("layer path").to_owned();

    let mut without_base = tar::Builder::new(Vec::new());
    let mut tar = tar::Archive::new(archive.as_slice());
    let mut left_out = 0;
    for entry in tar.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path").to_string_lossy() == base_layer {
            left_out += 1;
            continue;
        }
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read entry");
        without_base
            .append(&header, data.as_slice())
            .expect("append");
    }
    assert_eq!(left_out, 1);
    let smaller = without_base.into_inner().expect("finish tar");
    assert!(smaller.len() < archive.len());

    let chunks: Vec<std::io::Result<Bytes>> = smaller
        .chunks(64 * 1024)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let loaded = engine
        .load_archive(futures_util::stream::iter(chunks))
        .await
        .expect("load without the base layer");
    check_loaded(&engine, loaded, &reference, &id).await;
}

#[tokio::test]
async fn an_archive_the_engine_cannot_read_is_an_api_error() {
    let engine = engine().await;
    let garbage = futures_util::stream::iter([Ok(Bytes::from_static(b"not a tar archive"))]);
    let err = engine
        .load_archive(garbage)
        .await
        .expect_err("garbage is refused");
    assert!(
        matches!(&err, Error::Api { operation, .. } if operation == "load an image archive"),
        "{err:?}"
    );
}
