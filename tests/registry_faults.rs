//! Faults injected by a proxy in front of a real `docker-registry`: each push or pull ends
//! in success after retries or in a clear error, and never leaves a tag pointing at an
//! incomplete image.

mod registry_support;

use std::time::{Duration, Instant};

use imgbuild::oci::{Image, Platform};
use imgbuild::registry::RegistryOptions;
use imgbuild::registry::{BlobStore, Error, NoProgress, with_causes};
use registry_support::image::{TestImage, layer};
use registry_support::proxy::{Action, Proxy};
use registry_support::registry::TestRegistry;
use registry_support::{client, reference, skopeo_raw_manifest};

fn new_store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = BlobStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, store)
}

fn temp_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                .count()
        })
        .unwrap_or(0)
}

/// A registry with a proxy, and an image pushed to `team/app:1` through the proxy.
async fn pushed(image: &TestImage) -> (TestRegistry, Proxy) {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_dir, store) = new_store();
    client(&RegistryOptions::default())
        .push(
            image,
            &[reference(&format!("{}/team/app:1", proxy.host()))],
            &store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    proxy.clear();
    (registry, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_survives_500s_and_dropped_connections_on_every_kind_of_request() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_dir, store) = new_store();
    let image = TestImage::oci(
        "faults",
        vec![layer("chunked", 600 << 10), layer("small", 20 << 10)],
    );
    let big = image.layer_digests()[0].clone();
    proxy.add_fault("HEAD", "/blobs/sha256:", Action::Status(500, None), 2);
    proxy.add_fault("POST", "/blobs/uploads/", Action::Status(503, None), 1);
    // The third chunk of the big layer: the connection drops before any answer.
    proxy.add_fault("PATCH", "/blobs/uploads/", Action::Drop, 1);
    proxy.add_fault("PUT", big.digest(), Action::Status(500, None), 1);
    proxy.add_fault("PUT", "/manifests/sha256:", Action::Status(502, None), 1);
    let digest = client(&RegistryOptions::default())
        .push(
            &image,
            &[reference(&format!("{}/team/app:1", proxy.host()))],
            &store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("push with faults: {}", with_causes(&e)));
    assert_eq!(digest, image.digest());
    assert!(
        proxy.pending_faults().is_empty(),
        "{:?}",
        proxy.pending_faults()
    );
    let served = skopeo_raw_manifest(&format!("{}/team/app:1", registry.host()), &[]);
    assert_eq!(served, imgbuild::oci::Image::raw_manifest(&image));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_the_time_the_registry_asks_for() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_dir, store) = new_store();
    let image = TestImage::oci("429", vec![layer("l", 4 << 10)]);
    proxy.add_fault("HEAD", "/blobs/sha256:", Action::Status(429, Some(1)), 1);
    let started = Instant::now();
    client(&RegistryOptions::default())
        .push(
            &image,
            &[reference(&format!("{}/team/app:1", proxy.host()))],
            &store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // A wait longer than the client accepts fails at once, saying so.
    proxy.add_fault(
        "HEAD",
        "/blobs/sha256:",
        Action::Status(429, Some(3600)),
        10,
    );
    let other = TestImage::oci("429-long", vec![layer("l2", 4 << 10)]);
    let started = Instant::now();
    let message = client(&RegistryOptions::default())
        .push(
            &other,
            &[reference(&format!("{}/team/other:1", proxy.host()))],
            &store,
            &NoProgress,
        )
        .await
        .err()
        .map(|e| with_causes(&e))
        .unwrap_or_default();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(message.contains("asked to retry after 3600s"), "{message}");
    assert!(registry.tags("team/other").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_server_errors_fail_clearly_and_write_no_tag() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_dir, store) = new_store();
    let image = TestImage::oci("broken", vec![layer("a", 8 << 10), layer("b", 300 << 10)]);
    let b = image.layer_digests()[1].clone();
    proxy.add_fault("PATCH", "/blobs/uploads/", Action::Status(500, None), 1000);
    let err = client(&RegistryOptions::default())
        .push(
            &image,
            &[reference(&format!("{}/team/app:1", proxy.host()))],
            &store,
            &NoProgress,
        )
        .await
        .err();
    let message = err.as_ref().map(|e| with_causes(e)).unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "upload of blob {b} failed 4 times; giving up: PATCH http://"
        )) && message.contains("answered 500: UNAVAILABLE: injected by the test proxy"),
        "{message}"
    );
    // Bounded: the policy's four attempts at the blob, one PATCH each.
    assert_eq!(proxy.count("PATCH", "/blobs/uploads/"), 4);
    assert_eq!(proxy.count("PUT", "/manifests/"), 0);
    assert!(registry.tags("team/app").is_empty());
    assert!(!registry.has_blob(b.digest()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_push_run_again_uploads_only_what_is_missing() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_dir, store) = new_store();
    let image = TestImage::oci(
        "resume",
        vec![
            layer("r1", 100 << 10),
            layer("r2", 100 << 10),
            layer("r3", 100 << 10),
        ],
    );
    let stuck = image.layer_digests()[2].clone();
    // Every attempt to finish r3 loses its connection.
    proxy.add_fault("PUT", stuck.digest(), Action::Drop, 1000);
    let tag = reference(&format!("{}/team/app:1", proxy.host()));
    let client = client(&RegistryOptions::default());
    let message = client
        .push(&image, std::slice::from_ref(&tag), &store, &NoProgress)
        .await
        .err()
        .map(|e| with_causes(&e))
        .unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "upload of blob {stuck} failed 4 times; giving up: PUT http://"
        )),
        "{message}"
    );
    assert!(
        registry.tags("team/app").is_empty(),
        "no tag before every blob is in"
    );
    assert!(!registry.has_blob(stuck.digest()));

    // Run again without the fault: only r3 goes up.
    let proxy2 = Proxy::start(registry.port).await;
    let tag2 = reference(&format!("{}/team/app:1", proxy2.host()));
    let report = client
        .push_with_report(&image, std::slice::from_ref(&tag2), &store, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    assert_eq!(
        (report.uploaded, report.already_present),
        (1, 3),
        "{report:?}"
    );
    assert_eq!(proxy2.count("PUT", "/blobs/uploads/"), 1);
    assert_eq!(registry.tags("team/app"), vec!["1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_mid_blob_is_retried_on_pull() {
    let image = TestImage::oci("reset", vec![layer("reset", 200 << 10)]);
    let (_registry, proxy) = pushed(&image).await;
    let digest = image.layer_digests()[0].clone();
    proxy.add_fault(
        "GET",
        digest.digest(),
        Action::CutResponseAfter(50 << 10),
        2,
    );
    let (dir, store) = new_store();
    let pulled = client(&RegistryOptions::default())
        .pull(
            &reference(&format!("{}/team/app:1", proxy.host())),
            &Platform::default(),
            &store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    assert_eq!(pulled.manifest_digest(), &image.digest());
    assert_eq!(proxy.count("GET", digest.digest()), 3);
    assert!(store.contains(&digest));
    assert_eq!(temp_files(dir.path()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_does_not_match_its_digest_is_refused_and_not_kept() {
    let image = TestImage::oci("corrupt", vec![layer("corrupt", 64 << 10)]);
    let (_registry, proxy) = pushed(&image).await;
    let digest = image.layer_digests()[0].clone();
    proxy.add_fault("GET", digest.digest(), Action::CorruptResponse, 1);
    let (dir, store) = new_store();
    let err = client(&RegistryOptions::default())
        .pull(
            &reference(&format!("{}/team/app:1", proxy.host())),
            &Platform::default(),
            &store,
            &NoProgress,
        )
        .await
        .err();
    assert!(matches!(err, Some(Error::DigestMismatch { .. })), "{err:?}");
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "blob {digest} from {} does not match its digest",
            proxy.host()
        )) && message.ends_with("it was not kept"),
        "{message}"
    );
    assert!(!store.contains(&digest));
    assert_eq!(temp_files(dir.path()), 0);
    // Not retried: a wrong blob is not a transient failure.
    assert_eq!(proxy.count("GET", digest.digest()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_whose_blob_is_corrupt_is_not_pushed_and_not_tagged() {
    let registry = TestRegistry::start();
    let (_dir, store) = new_store();
    for size in [8 << 10, 400 << 10] {
        let mut image = TestImage::oci("bad", vec![layer(&format!("bad{size}"), size)]);
        let digest = image.layer_digests()[0].clone();
        image.corrupt_blob(&digest);
        let message = client(&RegistryOptions::default())
            .push(
                &image,
                &[reference(&format!("{}/team/bad:1", registry.host()))],
                &store,
                &NoProgress,
            )
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.starts_with(&format!(
                "blob {digest} of the image does not match its digest"
            )),
            "{message}"
        );
        assert!(registry.tags("team/bad").is_empty());
        assert!(!registry.has_blob(digest.digest()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_image_blob_fails_at_once_and_writes_no_tag() {
    struct Missing(TestImage);
    impl imgbuild::oci::Image for Missing {
        fn raw_manifest(&self) -> &[u8] {
            self.0.raw_manifest()
        }
        fn manifest_media_type(&self) -> &str {
            self.0.manifest_media_type()
        }
        fn manifest(&self) -> &oci_spec::image::ImageManifest {
            self.0.manifest()
        }
        fn raw_config(&self) -> &[u8] {
            self.0.raw_config()
        }
        fn open_blob(
            &self,
            digest: &oci_spec::image::Digest,
        ) -> std::io::Result<Box<dyn std::io::Read + Send>> {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{digest}: no such file"),
            ))
        }
    }
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_dir, store) = new_store();
    let image = Missing(TestImage::oci("missing", vec![layer("missing", 4 << 10)]));
    let message = client(&RegistryOptions::default())
        .push(
            &image,
            &[reference(&format!("{}/team/missing:1", proxy.host()))],
            &store,
            &NoProgress,
        )
        .await
        .err()
        .map(|e| with_causes(&e))
        .unwrap_or_default();
    assert!(message.starts_with("opening blob sha256:"), "{message}");
    assert!(message.ends_with("no such file"), "{message}");
    // Not retried, and no upload session was started for it.
    assert_eq!(proxy.count("HEAD", "/blobs/sha256:"), 2);
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 0);
    assert!(registry.tags("team/missing").is_empty());
}

/// Reads a followed download to its end on a thread of its own (the reader blocks), while
/// the download runs as a task: what the native executor's unpack does with a base layer.
async fn follow_download(
    proxy: &Proxy,
    image: &TestImage,
    store: &BlobStore,
) -> (Result<(), Error>, std::io::Result<Vec<u8>>) {
    let follow = imgbuild::registry::BlobFollow::new();
    let mut reader = follow.reader();
    let reading = tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut all).map(|_| all)
    });
    let descriptor = image.manifest().layers()[0].clone();
    let end = follow.ender();
    let fetched = client(&RegistryOptions::default())
        .fetch_blob_followed(
            &reference(&format!("{}/team/app:1", proxy.host())),
            &descriptor,
            store,
            &NoProgress,
            &follow,
        )
        .await;
    end.finish(fetched.as_ref().map(|_| ()).map_err(|e| with_causes(e)));
    (fetched, reading.await.unwrap_or_else(|e| panic!("{e}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_deferring_layers_stores_the_config_and_no_layer() {
    let image = TestImage::oci("deferred", vec![layer("deferred", 64 << 10)]);
    let (_registry, proxy) = pushed(&image).await;
    let (_dir, store) = new_store();
    let pulled = client(&RegistryOptions::default())
        .pull_deferring_layers(
            &reference(&format!("{}/team/app:1", proxy.host())),
            &Platform::default(),
            &store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    assert_eq!(pulled.manifest_digest(), &image.digest());
    assert!(store.contains(image.manifest().config().digest()));
    let layer = &image.layer_digests()[0];
    assert!(!store.contains(layer));
    assert_eq!(proxy.count("GET", layer.digest()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_download_is_read_whole_through_a_reset_and_stored() {
    let image = TestImage::oci("followed", vec![layer("followed", 600 << 10)]);
    let (_registry, proxy) = pushed(&image).await;
    let digest = image.layer_digests()[0].clone();
    // The reader has read part of the first attempt when the connection drops; the retry
    // starts over and the reader goes on from where it was.
    proxy.add_fault(
        "GET",
        digest.digest(),
        Action::CutResponseAfter(300 << 10),
        1,
    );
    let (dir, store) = new_store();
    let (fetched, read) = follow_download(&proxy, &image, &store).await;
    fetched.unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    assert_eq!(
        read.unwrap_or_else(|e| panic!("{e}")),
        image.blob(&digest).unwrap_or_default()
    );
    assert_eq!(proxy.count("GET", digest.digest()), 2);
    assert!(store.contains(&digest));
    assert_eq!(temp_files(dir.path()), 0);

    // Stored already (another build downloaded it): read from the store, not downloaded.
    let (fetched, read) = follow_download(&proxy, &image, &store).await;
    fetched.unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    assert_eq!(
        read.unwrap_or_else(|e| panic!("{e}")),
        image.blob(&digest).unwrap_or_default()
    );
    assert_eq!(proxy.count("GET", digest.digest()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_download_of_a_corrupt_blob_fails_its_reader_and_keeps_nothing() {
    let image = TestImage::oci(
        "corrupt-followed",
        vec![layer("corrupt-followed", 64 << 10)],
    );
    let (_registry, proxy) = pushed(&image).await;
    let digest = image.layer_digests()[0].clone();
    proxy.add_fault("GET", digest.digest(), Action::CorruptResponse, 1);
    let (dir, store) = new_store();
    let (fetched, read) = follow_download(&proxy, &image, &store).await;
    assert!(
        matches!(fetched, Err(Error::DigestMismatch { .. })),
        "{fetched:?}"
    );
    let err = read.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(!store.contains(&digest));
    assert_eq!(temp_files(dir.path()), 0);
}
