//! Push and pull against a real `docker-registry`, checked with skopeo and through a
//! counting proxy. Each test starts its own registry on a free port.

mod registry_support;

use std::process::Command;

use imgbuild::oci::{Image, Platform};
use imgbuild::registry::RegistryOptions;
use imgbuild::registry::blob_store::digest_of;
use imgbuild::registry::{BlobStore, NoProgress};
use registry_support::image::{TestImage, layer};
use registry_support::proxy::Proxy;
use registry_support::registry::TestRegistry;
use registry_support::{client, reference, run, skopeo_raw_manifest};

fn new_store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = BlobStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_images_read_back_with_skopeo_under_the_returned_digest() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_dir, store) = new_store();
    let client = client(&RegistryOptions::default());
    // A large layer goes up in PATCH chunks, the small ones in one PUT.
    let oci = TestImage::oci(
        "oci",
        vec![layer("big", 700 << 10), layer("small", 10 << 10)],
    );
    let docker = TestImage::docker("docker", vec![layer("d1", 20 << 10)]);
    for (image, name) in [(&oci, "test/oci"), (&docker, "test/docker")] {
        let tag = format!("{}/{name}:v1", registry.host());
        let digest = client
            .push(
                image,
                &[
                    reference(&format!("{}/{name}:v1", proxy.host())),
                    reference(&format!("{}/{name}:v2", proxy.host())),
                ],
                &store,
                &NoProgress,
            )
            .await
            .unwrap_or_else(|e| panic!("push {tag}: {e}"));
        assert_eq!(digest, image.digest());
        let served = skopeo_raw_manifest(&tag, &[]);
        assert_eq!(
            digest_of(&served),
            digest,
            "skopeo sees another manifest for {tag}"
        );
        assert_eq!(registry.tags(name), vec!["v1", "v2"]);

        // skopeo copies every blob and checks its digest on the way.
        let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        run(Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false", "--preserve-digests"])
            .arg(format!("docker://{tag}"))
            .arg(format!("dir:{}", out.path().display())));
        let copied =
            std::fs::read(out.path().join("manifest.json")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(digest_of(&copied), digest);
        for blob in image.blob_digests() {
            let bytes = std::fs::read(out.path().join(blob.digest()))
                .unwrap_or_else(|e| panic!("{blob}: {e}"));
            assert_eq!(Some(bytes.as_slice()), image.blob(&blob));
        }
    }
    // 700 KiB in 128 KiB chunks: six PATCHes, then one PUT to finish; the small blobs (two
    // configs and two layers) go up in one PUT each.
    assert_eq!(proxy.count("PATCH", "/v2/test/oci/blobs/uploads/"), 6);
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_equals_the_push_and_a_second_pull_fetches_nothing() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_push_dir, push_store) = new_store();
    let image = TestImage::oci("pull", vec![layer("p1", 300 << 10), layer("p2", 5 << 10)]);
    let tag = reference(&format!("{}/team/pulled:1", proxy.host()));
    client(&RegistryOptions::default())
        .push(&image, std::slice::from_ref(&tag), &push_store, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("push: {e}"));

    let (pull_dir, pull_store) = new_store();
    let puller = client(&RegistryOptions::default());
    proxy.clear();
    let pulled = puller
        .pull(&tag, &Platform::default(), &pull_store, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("pull: {e}"));
    assert_eq!(pulled.raw_manifest(), image.raw_manifest());
    assert_eq!(pulled.manifest_digest(), &image.digest());
    assert_eq!(pulled.resolved_digest(), &image.digest());
    assert_eq!(pulled.raw_config(), image.raw_config());
    assert_eq!(pulled.manifest_media_type(), image.manifest_media_type());
    for blob in image.blob_digests() {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut pulled.open_blob(&blob).unwrap_or_else(|e| panic!("{e}")),
            &mut bytes,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Some(bytes.as_slice()), image.blob(&blob));
        assert!(
            pull_dir
                .path()
                .join("blobs/sha256")
                .join(blob.digest())
                .is_file()
        );
    }
    assert_eq!(
        proxy.count("GET", "/blobs/sha256:"),
        3,
        "{:#?}",
        proxy.requests()
    );
    assert_eq!(pulled.stats().blobs_downloaded, 3);

    // The same client: the tag was resolved, everything is stored: no request at all.
    proxy.clear();
    let again = puller
        .pull(&tag, &Platform::default(), &pull_store, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("second pull: {e}"));
    assert_eq!(again.raw_manifest(), image.raw_manifest());
    assert!(proxy.requests().is_empty(), "{:#?}", proxy.requests());

    // A new client (a new build) resolves the tag again, with one HEAD, and fetches nothing.
    proxy.clear();
    let fresh = client(&RegistryOptions::default());
    let third = fresh
        .pull(&tag, &Platform::default(), &pull_store, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("third pull: {e}"));
    assert_eq!(third.stats().blobs_downloaded, 0);
    assert_eq!(third.stats().blobs_cached, 3);
    let requests: Vec<String> = proxy
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        requests,
        vec![
            "GET /v2/".to_owned(),
            "HEAD /v2/team/pulled/manifests/1".to_owned()
        ]
    );

    // A digest reference is used as is: no tag resolution, nothing fetched.
    proxy.clear();
    let pinned = reference(&format!("{}/team/pulled@{}", proxy.host(), image.digest()));
    let by_digest = client(&RegistryOptions::default())
        .pull(&pinned, &Platform::default(), &pull_store, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("pull by digest: {e}"));
    assert_eq!(by_digest.manifest_digest(), &image.digest());
    assert_eq!(proxy.count("HEAD", "/manifests/"), 0);
    assert_eq!(proxy.count("GET", "/blobs/"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushing_the_same_image_twice_uploads_no_blob() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_dir, store) = new_store();
    let image = TestImage::oci("twice", vec![layer("t1", 400 << 10), layer("t2", 30 << 10)]);
    let tag = reference(&format!("{}/team/twice:1", proxy.host()));
    let client = client(&RegistryOptions::default());
    let first = client
        .push_with_report(&image, std::slice::from_ref(&tag), &store, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.uploaded, 3);
    assert!(proxy.bytes_up() >= image.total_size());

    proxy.clear();
    let second = client
        .push_with_report(&image, std::slice::from_ref(&tag), &store, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (second.uploaded, second.mounted, second.already_present),
        (0, 0, 3)
    );
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 0);
    assert_eq!(proxy.count("PATCH", "/blobs/uploads/"), 0);
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 0);
    assert_eq!(proxy.count("HEAD", "/blobs/sha256:"), 3);
    // Only the manifest goes up again: once by digest, once for the tag.
    assert_eq!(proxy.bytes_up(), 2 * image.raw_manifest().len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_repository_mounts_the_shared_base_layers() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_dir, store) = new_store();
    let base = vec![layer("base1", 200 << 10), layer("base2", 50 << 10)];
    let first = TestImage::oci(
        "first",
        [base.clone(), vec![layer("first-app", 8 << 10)]].concat(),
    );
    let second = TestImage::oci(
        "second",
        [base.clone(), vec![layer("second-app", 9 << 10)]].concat(),
    );
    let client = client(&RegistryOptions::default());
    client
        .push(
            &first,
            &[reference(&format!("{}/team/first:1", proxy.host()))],
            &store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    proxy.clear();
    let report = client
        .push_with_report(
            &second,
            &[reference(&format!("{}/team/second:1", proxy.host()))],
            &store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.mounted, report.uploaded), (2, 2), "{report:?}");
    let mounts: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("mount="))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert!(
        mounts.iter().all(|m| m.contains("from=team%2Ffirst")),
        "{mounts:?}"
    );
    // The base layers' bytes did not go up again.
    let base_bytes: u64 = base.iter().map(|l| l.compressed.len() as u64).sum();
    assert!(
        proxy.bytes_up() < second.total_size() - base_bytes + 4096,
        "{}",
        proxy.bytes_up()
    );
    let served = skopeo_raw_manifest(&format!("{}/team/second:1", registry.host()), &[]);
    assert_eq!(digest_of(&served), second.digest());

    // A base that came from a pull is mounted from the repository it was pulled from.
    let (_dir2, pull_store) = new_store();
    let base_image = TestImage::oci("base", base.clone());
    client
        .push(
            &base_image,
            &[reference(&format!("{}/library/base:1", proxy.host()))],
            &store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let fresh = registry_support::client(&RegistryOptions::default());
    fresh
        .pull(
            &reference(&format!("{}/library/base:1", proxy.host())),
            &Platform::default(),
            &pull_store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    proxy.clear();
    let third = TestImage::oci("third", [base, vec![layer("third-app", 7 << 10)]].concat());
    let report = fresh
        .push_with_report(
            &third,
            &[reference(&format!("{}/team/third:1", proxy.host()))],
            &pull_store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.mounted, 2, "{report:?}");
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.path.contains("from=library%2Fbase")),
        "{:#?}",
        proxy.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_and_manifest_lists_resolve_to_the_platform_asked_for() {
    let registry = TestRegistry::start();
    let (_dir, store) = new_store();
    let client = client(&RegistryOptions::default());
    let amd64 = TestImage::docker("amd64", vec![layer("amd64", 4 << 10)]);
    let arm64 = TestImage::docker("arm64", vec![layer("arm64", 4 << 10)]);
    let repo = format!("{}/multi/app", registry.host());
    for image in [&amd64, &arm64] {
        client
            .push(
                image,
                &[reference(&format!("{repo}@{}", image.digest()))],
                &store,
                &NoProgress,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (media_type, tag) in [
        (
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "list",
        ),
        ("application/vnd.oci.image.index.v1+json", "index"),
    ] {
        let entry = |image: &TestImage, arch: &str, variant: Option<&str>| {
            let mut platform = serde_json::json!({"os": "linux", "architecture": arch});
            if let Some(v) = variant {
                platform["variant"] = v.into();
            }
            serde_json::json!({
                "mediaType": image.manifest_media_type(),
                "digest": image.digest().to_string(),
                "size": image.raw_manifest().len(),
                "platform": platform,
            })
        };
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [entry(&arm64, "arm64", Some("v8")), entry(&amd64, "amd64", None)],
        })
        .to_string();
        let response = imgbuild::http::client_builder()
            .build()
            .unwrap()
            .put(format!(
                "http://{}/v2/multi/app/manifests/{tag}",
                registry.host()
            ))
            .header("Content-Type", media_type)
            .body(index.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            response.status(),
            201,
            "{}",
            response.text().await.unwrap_or_default()
        );

        let r = reference(&format!("{repo}:{tag}"));
        let fresh = registry_support::client(&RegistryOptions::default());
        let pulled = fresh
            .pull(&r, &Platform::default(), &store, &NoProgress)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pulled.manifest_digest(), &amd64.digest());
        assert_eq!(pulled.resolved_digest(), &digest_of(index.as_bytes()));
        let arm: Platform = "linux/arm64".parse().unwrap_or_else(|e| panic!("{e}"));
        let pulled = fresh
            .pull(&r, &arm, &store, &NoProgress)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pulled.manifest_digest(), &arm64.digest());
        assert_eq!(pulled.raw_config(), arm64.raw_config());

        let s390x: Platform = "linux/s390x".parse().unwrap_or_else(|e| panic!("{e}"));
        let message = fresh
            .pull(&r, &s390x, &store, &NoProgress)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("no image for platform linux/s390x")
                && message.contains("linux/arm64/v8, linux/amd64"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_are_tried_first_and_failures_name_every_endpoint() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_dir, store) = new_store();
    let image = TestImage::oci("mirrored", vec![layer("m1", 6 << 10)]);
    client(&RegistryOptions::default())
        .push(
            &image,
            &[reference(&format!(
                "{}/library/mirrored:1",
                registry.host()
            ))],
            &store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // A registry nobody listens on, mirrored by the proxy in front of the real one.
    let closed = registry_support::free_port();
    let upstream = format!("127.0.0.1:{closed}");
    let options = RegistryOptions {
        mirrors: [(upstream.clone(), format!("http://{}", proxy.host()))].into(),
        ..RegistryOptions::default()
    };
    let (_dir2, pull_store) = new_store();
    let pulled = client(&options)
        .pull(
            &reference(&format!("{upstream}/library/mirrored:1")),
            &Platform::default(),
            &pull_store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("pull through the mirror: {e}"));
    assert_eq!(pulled.manifest_digest(), &image.digest());
    assert!(proxy.count("GET", "/v2/library/mirrored/blobs/") >= 2);
    // The blobs are known to live in the mirror's repository too, for later mounts.
    let sources = pull_store.sources(&image.layer_digests()[0]);
    assert!(
        sources.iter().any(|s| s.registry == proxy.host()),
        "{sources:?}"
    );
    assert!(
        sources.iter().any(|s| s.registry == upstream),
        "{sources:?}"
    );

    // Missing on the mirror: the upstream is tried, and the error names both.
    let message = client(&options)
        .pull(
            &reference(&format!("{upstream}/library/absent:1")),
            &Platform::default(),
            &pull_store,
            &NoProgress,
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("mirror http://{}: ", proxy.host()))
            && message.contains("no such image on"),
        "{message}"
    );
    assert!(
        message.contains(&format!("then {upstream}: cannot reach {upstream}")),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_images_and_registries_give_clear_errors() {
    let registry = TestRegistry::start();
    let (_dir, store) = new_store();
    let client = client(&RegistryOptions::default());
    let message = client
        .pull(
            &reference(&format!("{}/no/such:tag", registry.host())),
            &Platform::default(),
            &store,
            &NoProgress,
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        message,
        format!(
            "{}/no/such:tag: no such image on {} (manifest unknown)",
            registry.host(),
            registry.host()
        )
    );

    let closed = registry_support::free_port();
    let message = client
        .pull(
            &reference(&format!("127.0.0.1:{closed}/x:1")),
            &Platform::default(),
            &store,
            &NoProgress,
        )
        .await
        .err()
        .map(|e| imgbuild::registry::with_causes(&e))
        .unwrap_or_default();
    assert!(
        message.contains(&format!(
            "GET http://127.0.0.1:{closed}/v2/ failed after 4 attempt(s)"
        )),
        "{message}"
    );
    assert!(
        message.contains("https://"),
        "HTTPS is tried first: {message}"
    );
}

/// Records what the library reports.
#[derive(Default)]
struct Recorder {
    events: std::sync::Mutex<Vec<String>>,
    bytes: std::sync::atomic::AtomicU64,
    retries: std::sync::atomic::AtomicUsize,
}

impl imgbuild::registry::Progress for Recorder {
    fn on_resolved(
        &self,
        reference: &imgbuild::registry::Reference,
        digest: &oci_spec::image::Digest,
    ) {
        self.push(format!("resolved {reference} {digest}"));
    }
    fn on_blob_start(&self, digest: &oci_spec::image::Digest, size: u64) {
        self.push(format!("start {digest} {size}"));
    }
    fn on_blob_progress(&self, _digest: &oci_spec::image::Digest, bytes: u64) {
        self.bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
    }
    fn on_blob_done(
        &self,
        digest: &oci_spec::image::Digest,
        outcome: &imgbuild::registry::BlobOutcome,
    ) {
        self.push(format!("done {digest} {outcome:?}"));
    }
}

impl Recorder {
    fn push(&self, event: String) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }
    fn take(&self) -> (Vec<String>, u64) {
        let mut events =
            std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()));
        events.sort();
        (
            events,
            self.bytes.swap(0, std::sync::atomic::Ordering::SeqCst),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_reported_for_every_blob_and_the_resolved_tag() {
    let registry = TestRegistry::start();
    let (_dir, store) = new_store();
    let image = TestImage::oci(
        "progress",
        vec![layer("pr1", 300 << 10), layer("pr2", 3 << 10)],
    );
    let tag = reference(&format!("{}/team/progress:1", registry.host()));
    let recorder = Recorder::default();
    let client = client(&RegistryOptions::default());
    // Pull and push futures can be spawned onto a runtime.
    let push = client.push(&image, std::slice::from_ref(&tag), &store, &recorder);
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    assert_send(push).await.unwrap_or_else(|e| panic!("{e}"));
    let (events, bytes) = recorder.take();
    let mut expected: Vec<String> = image
        .blob_digests()
        .iter()
        .flat_map(|d| {
            let size = image.blob(d).map_or(0, <[u8]>::len);
            [format!("start {d} {size}"), format!("done {d} Uploaded")]
        })
        .collect();
    expected.sort();
    assert_eq!(events, expected);
    assert_eq!(bytes, image.total_size());

    let (_dir2, pull_store) = new_store();
    let platform = Platform::default();
    let pull = client.pull(&tag, &platform, &pull_store, &recorder);
    assert_send(pull).await.unwrap_or_else(|e| panic!("{e}"));
    let (events, bytes) = recorder.take();
    let mut expected: Vec<String> = image
        .blob_digests()
        .iter()
        .flat_map(|d| {
            let size = image.blob(d).map_or(0, <[u8]>::len);
            [format!("start {d} {size}"), format!("done {d} Downloaded")]
        })
        .collect();
    expected.push(format!("resolved {tag} {}", image.digest()));
    expected.sort();
    assert_eq!(events, expected);
    assert_eq!(bytes, image.total_size());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_hub_references_are_pulled_from_their_mirror_without_contacting_docker_hub() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_dir, store) = new_store();
    let image = TestImage::docker("hub", vec![layer("hub", 8 << 10)]);
    client(&RegistryOptions::default())
        .push(
            &image,
            &[reference(&format!(
                "{}/library/debian:bookworm-slim",
                registry.host()
            ))],
            &store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let options = RegistryOptions {
        mirrors: [("docker.io".to_owned(), format!("http://{}", proxy.host()))].into(),
        ..RegistryOptions::default()
    };
    let recorder = Recorder::default();
    let (_dir2, pull_store) = new_store();
    let pulled = client(&options)
        .pull(
            &reference("debian:bookworm-slim"),
            &Platform::default(),
            &pull_store,
            &recorder,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pulled.manifest_digest(), &image.digest());
    assert_eq!(
        pulled.reference().to_string(),
        "docker.io/library/debian:bookworm-slim"
    );
    assert_eq!(
        proxy.count("HEAD", "/v2/library/debian/manifests/bookworm-slim"),
        1
    );
    // Nothing was retried: Docker Hub (unreachable here) was never tried.
    assert_eq!(
        recorder.retries.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let sources = pull_store.sources(&image.layer_digests()[0]);
    assert!(
        sources
            .iter()
            .any(|s| s.registry == "docker.io" && s.repository == "library/debian"),
        "{sources:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_run_concurrently_up_to_the_configured_bound() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port).await;
    let (_dir, store) = new_store();
    let layers = (0..6)
        .map(|i| layer(&format!("conc{i}"), 16 << 10))
        .collect();
    let image = TestImage::oci("concurrency", layers);
    let config = imgbuild::registry::ClientConfig {
        max_concurrent_uploads: 3,
        max_concurrent_downloads: 2,
        ..registry_support::test_config()
    };
    let tag = reference(&format!("{}/team/conc:1", proxy.host()));
    let client = |config: &imgbuild::registry::ClientConfig| {
        imgbuild::registry::Client::with_config(
            &RegistryOptions::default(),
            imgbuild::registry::Credentials::anonymous(),
            config.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    proxy.add_fault(
        "HEAD",
        "/blobs/sha256:",
        registry_support::proxy::Action::Delay(200),
        100,
    );
    client(&config)
        .push(&image, std::slice::from_ref(&tag), &store, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(proxy.max_in_flight(), 3);

    proxy.clear();
    proxy.add_fault(
        "GET",
        "/blobs/sha256:",
        registry_support::proxy::Action::Delay(200),
        100,
    );
    let (_dir2, pull_store) = new_store();
    client(&config)
        .pull(&tag, &Platform::default(), &pull_store, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(proxy.max_in_flight(), 2);
}
