//! Files in and out of containers against the real test engine: a tar uploaded into a
//! created container and committed keeps its owners, modes and links; archives downloaded
//! from images hold what the image has; missing paths are `NotFound`.

mod engine_common;
mod support;

use std::io::Read;

use engine_common::{RemoveImageOnDrop, busybox, engine, stdout_of};
use imgbuild::engine::{ChangeKind, Engine, Error, ImageConfig, RunSpec};

const APP_SCRIPT: &str = "#!/bin/sh\necho app ran\n";

/// A tar with a directory, an executable owned by a user the image does not know, and a
/// symbolic link, all with explicit owners, modes and times.
fn app_archive() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let header = |path: &str, kind, mode, uid, gid, size| {
        let mut header = tar::Header::new_gnu();
        header.set_path(path).expect("path");
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_size(size);
        header.set_mtime(1_000_000_000);
        header
    };
    let mut dir = header("app/", tar::EntryType::Directory, 0o750, 1000, 1000, 0);
    dir.set_cksum();
    builder.append(&dir, &[][..]).expect("dir");
    let script = APP_SCRIPT.as_bytes();
    let mut file = header(
        "app/run.sh",
        tar::EntryType::Regular,
        0o755,
        1234,
        5678,
        script.len() as u64,
    );
    file.set_cksum();
    builder.append(&file, script).expect("file");
    let mut link = header("app/link", tar::EntryType::Symlink, 0o777, 0, 0, 0);
    link.set_link_name("run.sh").expect("link name");
    link.set_cksum();
    builder.append(&link, &[][..]).expect("link");
    builder.into_inner().expect("finish tar")
}

/// An image made of the busybox image plus [`app_archive`] in `/`, committed from a
/// container whose user is `nobody` (owners must still come from the tar).
async fn image_with_app(engine: &Engine) -> String {
    let mut spec = RunSpec::new(busybox(), ["never-started"]);
    spec.user = "nobody".into();
    let container = engine.create(&spec).await.expect("create");
    engine
        .upload(&container, "/", app_archive())
        .await
        .expect("upload");
    let changes = engine.changes(&container).await.expect("changes");
    assert!(
        changes
            .iter()
            .any(|c| c.path == "/app/run.sh" && c.kind == ChangeKind::Added),
        "{changes:?}"
    );
    engine
        .commit_and_remove(container, &ImageConfig::default())
        .await
        .expect("commit")
}

#[tokio::test]
async fn an_uploaded_tar_keeps_owners_modes_and_links_through_a_commit() {
    let engine = engine().await;
    let image = image_with_app(&engine).await;
    let _cleanup = RemoveImageOnDrop(image.clone());

    let mut spec = RunSpec::new(
        image.as_str(),
        [
            "sh",
            "-c",
            "stat -c '%n %u:%g %a %Y' /app /app/run.sh; readlink /app/link; /app/link",
        ],
    );
    // The committed image took `nobody` from the container; root may read everything.
    spec.user = "0".into();
    assert_eq!(
        stdout_of(&engine, &spec).await,
        [
            "/app 1000:1000 750 1000000000",
            "/app/run.sh 1234:5678 755 1000000000",
            "run.sh",
            "app ran",
        ]
    );
    engine.remove_image(&image).await.expect("remove image");
}

#[tokio::test]
async fn a_downloaded_path_is_a_tar_named_from_its_last_component() {
    let engine = engine().await;
    let image = image_with_app(&engine).await;
    let _cleanup = RemoveImageOnDrop(image.clone());

    let mut archive = Vec::new();
    let written = engine
        .download_from_image(&image, "/app", &mut archive)
        .await
        .expect("download");
    assert_eq!(written, archive.len() as u64);

    let mut entries: Vec<(String, u32, u64, u64, String, String)> = Vec::new();
    let mut tar = tar::Archive::new(archive.as_slice());
    for entry in tar.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let header = entry.header();
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let mode = header.mode().expect("mode");
        let uid = header.uid().expect("uid");
        let gid = header.gid().expect("gid");
        let link = entry
            .link_name()
            .expect("link name")
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut content = String::new();
        entry.read_to_string(&mut content).expect("content");
        entries.push((path, mode & 0o7777, uid, gid, link, content));
    }
    entries.sort();
    let expected = [
        ("app/", 0o750, 1000, 1000, "", ""),
        ("app/link", 0o777, 0, 0, "run.sh", ""),
        ("app/run.sh", 0o755, 1234, 5678, "", APP_SCRIPT),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(p, m, u, g, l, c)| (p.to_string(), *m, *u, *g, l.to_string(), c.to_string()))
        .collect();
    assert_eq!(entries, expected);

    // The container the download went through is gone.
    let left = support::docker_ok(["ps", "-a", "-q", "--filter", &format!("ancestor={image}")]);
    assert_eq!(left.trim(), "");
    engine.remove_image(&image).await.expect("remove image");
}

#[tokio::test]
async fn stat_tells_directories_files_and_links_apart() {
    let engine = engine().await;
    let image = image_with_app(&engine).await;
    let _cleanup = RemoveImageOnDrop(image.clone());
    let container = engine
        .create(&RunSpec::new(image.as_str(), ["never-started"]))
        .await
        .expect("create");

    let dir = engine.stat(&container, "/app").await.expect("stat dir");
    let file = engine
        .stat(&container, "/app/run.sh")
        .await
        .expect("stat file");
    let link = engine
        .stat(&container, "/app/link")
        .await
        .expect("stat link");
    let missing = engine.stat(&container, "/app/nothing").await;
    engine.remove(container).await.expect("remove");
    engine.remove_image(&image).await.expect("remove image");

    assert!(dir.is_dir() && !dir.is_symlink());
    assert_eq!((dir.name.as_str(), dir.permissions()), ("app", 0o750));
    assert!(!file.is_dir() && !file.is_symlink());
    assert_eq!(
        (file.size, file.permissions()),
        (APP_SCRIPT.len() as i64, 0o755)
    );
    assert!(link.is_symlink());
    assert_eq!(link.link_target, "/app/run.sh");
    assert!(
        matches!(&missing, Err(Error::NotFound { what }) if what.contains("/app/nothing")),
        "{missing:?}"
    );
}

#[tokio::test]
async fn missing_paths_and_directories_are_not_found() {
    let engine = engine().await;
    let container = engine
        .create(&RunSpec::new(busybox(), ["never-started"]))
        .await
        .expect("create");

    let mut sink = Vec::new();
    let download = engine
        .download_to(&container, "/no/such/path", &mut sink)
        .await;
    let upload = engine
        .upload(&container, "/no/such/dir", app_archive())
        .await;
    engine.remove(container).await.expect("remove");

    assert!(
        matches!(&download, Err(Error::NotFound { what }) if what.starts_with("/no/such/path in container imgbuild-")),
        "{download:?}"
    );
    assert!(sink.is_empty());
    assert!(
        matches!(&upload, Err(Error::NotFound { what }) if what.starts_with("directory /no/such/dir")),
        "{upload:?}"
    );
}
