//! FROM images the Docker engine holds, used as BuildKit on the docker driver uses them:
//! when the engine has the reference (and `--pull` was not given), its image is the one the
//! build uses, even when no registry has it (a base built a minute ago, `docker tag`ged).
//!
//! The image's blobs still have to be in the blob store (the native executor unpacks them,
//! the packaging stage writes them out). Three ways, cheapest first:
//! 1. the store already holds that image (same config digest, which is the engine's image
//!    ID): remembered from an earlier build in `engine-images-v1/<id>`;
//! 2. the reference's registry has the same image: it is pulled as any FROM image, its
//!    compressed layers kept as the registry has them;
//! 3. otherwise `docker save` once, its uncompressed layers stored as they are.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use futures_util::TryStreamExt;
use oci_spec::image::Digest;
use tokio::io::AsyncWriteExt;

use crate::engine::{Engine, ImageInfo};
use crate::oci::{self, Image};
use crate::registry::{self, PulledImage, Reference};

/// The cache dir's record of engine images already in the blob store.
const INDEX_DIR: &str = "engine-images-v1";

/// How long the registry may take to say which image it has under the reference before
/// the engine's is taken out of the engine instead (an unreachable registry is retried for
/// longer than that).
pub(super) const REGISTRY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// The engine's image for `reference` on `platform`, when the engine has one under that
/// exact name (an image ID prefix never counts, nor another platform's image).
pub(super) async fn lookup(
    engine: &Engine,
    reference: &Reference,
    platform: &oci::Platform,
) -> Option<ImageInfo> {
    let info = engine
        .find_image(&reference.to_string())
        .await
        .ok()
        .flatten()?;
    let wanted = reference.to_string();
    let named = info
        .repo_tags
        .iter()
        .chain(&info.repo_digests)
        .filter_map(|name| Reference::parse(name).ok())
        .any(|name| name.to_string() == wanted);
    let same_platform = info.os == platform.os && info.architecture == platform.architecture;
    (named && same_platform).then_some(info)
}

fn index_path(cache_dir: &Path, id: &Digest) -> PathBuf {
    cache_dir.join(INDEX_DIR).join(id.digest())
}

/// The image with config digest `id` as an earlier build stored it, if every blob is there.
pub(super) fn remembered(
    cache_dir: &Path,
    blobs: &registry::BlobStore,
    reference: &Reference,
    id: &Digest,
) -> anyhow::Result<Option<PulledImage>> {
    let Ok(text) = std::fs::read_to_string(index_path(cache_dir, id)) else {
        return Ok(None);
    };
    let Ok(manifest) = text.trim().parse::<Digest>() else {
        return Ok(None);
    };
    let image = PulledImage::from_store(reference, &manifest, blobs)?;
    Ok(image.filter(|image| image.config_descriptor().digest() == id))
}

/// Records that the blob store holds the image with config digest `id` as `manifest`.
pub(super) fn remember(cache_dir: &Path, id: &Digest, manifest: &Digest) -> anyhow::Result<()> {
    let path = index_path(cache_dir, id);
    let dir = path.parent().unwrap_or(cache_dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Written whole under another name, then renamed: a reader never sees half of it.
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    std::io::Write::write_all(&mut temp, manifest.to_string().as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    temp.persist(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Puts an image's blobs (those the store lacks), config and manifest into the blob store,
/// so it is read as a pulled image is; returns the manifest's digest. Blocking.
pub(super) fn store_image(
    blobs: &registry::BlobStore,
    image: &dyn oci::Image,
) -> anyhow::Result<Digest> {
    let store = blobs.blobs();
    for layer in image.layers() {
        if !store.contains(layer.digest()) {
            let mut blob = image.open_blob(layer.digest())?;
            store.put(layer, &mut blob)?;
        }
    }
    store.put_bytes(image.raw_config())?;
    Ok(store.put_bytes(image.raw_manifest())?)
}

/// Takes the engine's image `id` into the blob store through `docker save` (its layers
/// uncompressed, as the engine gives them) and remembers it.
pub(super) async fn import(
    engine: &Engine,
    cache_dir: &Path,
    blobs: &registry::BlobStore,
    reference: &Reference,
    id: &Digest,
) -> anyhow::Result<PulledImage> {
    let scratch = tempfile::Builder::new()
        .prefix(".imgbuild-engine-image-")
        .tempdir_in(cache_dir)
        .with_context(|| format!("creating a scratch directory in {}", cache_dir.display()))?;
    let archive = scratch.path().join("image.tar");
    let mut file = tokio::fs::File::create(&archive)
        .await
        .with_context(|| format!("creating {}", archive.display()))?;
    let mut saved = engine.save_image(id.as_ref());
    while let Some(chunk) = saved.try_next().await? {
        file.write_all(&chunk)
            .await
            .with_context(|| format!("writing {}", archive.display()))?;
    }
    file.flush().await?;
    drop(file);
    let manifest = tokio::task::block_in_place(|| -> anyhow::Result<Digest> {
        let image = oci::open_docker_archive(&archive, None)?;
        anyhow::ensure!(
            image.config_descriptor().digest() == id,
            "docker save of {id} gave the image {}",
            image.config_descriptor().digest()
        );
        store_image(blobs, &image)
    })
    .with_context(|| format!("taking {reference} out of the engine (docker save)"))?;
    remember(cache_dir, id, &manifest)?;
    PulledImage::from_store(reference, &manifest, blobs)?
        .with_context(|| format!("{reference}: the blob store lost what docker save gave"))
}
