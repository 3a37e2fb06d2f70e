//! Manifests and blobs one at a time, for artifacts that are not pulled whole: the build
//! cache (`--cache-from type=registry`) fetches its manifest and index up front and each
//! layer only when a step needs it. Always the registry itself, never a mirror: caches are
//! written to the registry they are read from.

use oci_spec::image::{Descriptor, Digest};

use super::blob_store::BlobStore;
use super::client::Client;
use super::error::{Error, Result};
use super::follow::BlobFollow;
use super::manifest::Kind;
use super::progress::Progress;
use super::pull::{fetch_blob, fetch_manifest};
use super::reference::Reference;

/// An image manifest as the registry holds it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub bytes: Vec<u8>,
    pub media_type: String,
}

impl Client {
    /// The image manifest `reference` names (by tag or digest), stored in `store` and
    /// verified; its blobs are not fetched. An index is refused: artifacts are single
    /// manifests.
    pub async fn fetch_image_manifest(
        &self,
        reference: &Reference,
        store: &BlobStore,
        progress: &dyn Progress,
    ) -> Result<FetchedManifest> {
        let endpoint = self
            .registry_endpoint(reference.registry(), progress)
            .await?;
        let scopes = vec![format!("repository:{}:pull", reference.repository())];
        let session = self.session(endpoint, reference.repository(), scopes, progress);
        let digest = self.resolve(&session, reference, store).await?;
        let fetched = fetch_manifest(&session, reference, &digest, store).await?;
        match fetched.kind {
            Kind::Image { media_type } => Ok(FetchedManifest {
                digest,
                bytes: fetched.bytes,
                media_type,
            }),
            Kind::Index { media_type } => Err(Error::Manifest {
                reference: reference.to_string(),
                message: format!("is an index ({media_type}), not a single manifest"),
            }),
        }
    }

    /// Fetches one blob of `reference`'s repository into `store` (verified against the
    /// descriptor) unless the store has it. Returns whether it was downloaded.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        store: &BlobStore,
        progress: &dyn Progress,
    ) -> Result<bool> {
        let endpoint = self
            .registry_endpoint(reference.registry(), progress)
            .await?;
        let scopes = vec![format!("repository:{}:pull", reference.repository())];
        let session = self.session(endpoint, reference.repository(), scopes, progress);
        Ok(fetch_blob(&session, descriptor, store, None)
            .await?
            .is_some())
    }

    /// [`Self::fetch_blob`], readable while it downloads: `follow` is told of each write
    /// and of the end (see [`BlobFollow`]).
    pub async fn fetch_blob_followed(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        store: &BlobStore,
        progress: &dyn Progress,
        follow: &BlobFollow,
    ) -> Result<()> {
        let endpoint = self
            .registry_endpoint(reference.registry(), progress)
            .await?;
        let scopes = vec![format!("repository:{}:pull", reference.repository())];
        let session = self.session(endpoint, reference.repository(), scopes, progress);
        fetch_blob(&session, descriptor, store, Some(follow)).await?;
        Ok(())
    }
}
