//! Engine-dependent: images imgbuild pushes are pulled by a real Docker engine (Debian's
//! `/usr/bin/docker` against the test environment's engine), which must see the digest
//! imgbuild returned. Kept in its own file because it needs the test environment's engine.

mod registry_support;
mod support;

use std::process::Output;

use imgbuild::registry::RegistryOptions;
use imgbuild::registry::{BlobStore, NoProgress, with_causes};
use registry_support::image::{TestImage, layer};
use registry_support::registry::TestRegistry;
use registry_support::{client, reference};

fn docker(args: &[&str]) -> Output {
    support::docker(args)
}

/// Removes the pulled image from the engine, even when the test fails.
struct Pulled(String);

impl Drop for Pulled {
    fn drop(&mut self) {
        let _ = docker(&["image", "rm", "--force", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_pulls_pushed_images_under_the_returned_digest() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = BlobStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let client = client(&RegistryOptions::default());
    let images = [
        (
            "engine/oci",
            TestImage::oci(
                "engine-oci",
                vec![layer("eo1", 300 << 10), layer("eo2", 4 << 10)],
            ),
        ),
        (
            "engine/docker",
            TestImage::docker("engine-docker", vec![layer("ed1", 20 << 10)]),
        ),
    ];
    for (name, image) in &images {
        let tag = format!("{}/{name}:1", registry.host());
        let digest = client
            .push(image, &[reference(&tag)], &store, &NoProgress)
            .await
            .unwrap_or_else(|e| panic!("{}", with_causes(&e)));
        let _cleanup = Pulled(tag.clone());
        let pull = docker(&["pull", &tag]);
        assert!(
            pull.status.success(),
            "docker pull {tag}: {}{}",
            String::from_utf8_lossy(&pull.stdout),
            String::from_utf8_lossy(&pull.stderr)
        );
        let inspect = docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &tag,
        ]);
        let repo_digests = String::from_utf8_lossy(&inspect.stdout).into_owned();
        assert!(
            repo_digests.contains(&format!("{}/{name}@{digest}", registry.host())),
            "{repo_digests}"
        );
        // The engine unpacked the layers: its diff IDs are the config's.
        let inspect = docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            &tag,
        ]);
        let layers = String::from_utf8_lossy(&inspect.stdout).into_owned();
        for l in &image.layers {
            assert!(layers.contains(&l.diff_id), "{layers}");
        }
    }
}
