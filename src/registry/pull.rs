//! Pull: resolve a reference to a manifest (through an index for the wanted platform),
//! fetch config and layers into the blob store, concurrently and verified, and hand back an
//! [`Image`] whose manifest bytes are exactly the registry's.

use std::io::{self, Read};
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream;
use oci_spec::image::{Descriptor, Digest, ImageManifest, MediaType};
use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};

use super::blob_store::{BlobSource, BlobStore, digest_of};
use super::client::{
    Client, DOCKER_CONTENT_DIGEST, Endpoint, Retry, Session, blocking, header_text,
};
use super::error::{Error, Result};
use super::follow::BlobFollow;
use super::manifest::{self, Kind};
use super::progress::{BlobOutcome, Progress};
use super::reference::Reference;
use super::transport::{describe, status_error};
use crate::oci::{Image, Platform};

/// A pulled image: manifest and config in memory, blobs in the store.
#[derive(Debug, Clone)]
pub struct PulledImage {
    reference: Reference,
    resolved: Digest,
    manifest_digest: Digest,
    raw_manifest: Vec<u8>,
    media_type: String,
    manifest: ImageManifest,
    raw_config: Vec<u8>,
    store: BlobStore,
    stats: PullStats,
}

/// What a pull transferred.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullStats {
    pub blobs_downloaded: usize,
    pub bytes_downloaded: u64,
    pub blobs_cached: usize,
}

impl PulledImage {
    /// The reference as asked for.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The digest the reference resolved to (an index's, for a multi-platform image):
    /// `reference.with_digest(resolved)` pulls the same thing again.
    pub fn resolved_digest(&self) -> &Digest {
        &self.resolved
    }

    /// The digest of the platform's image manifest.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    pub fn stats(&self) -> PullStats {
        self.stats
    }

    /// The image whose manifest `manifest_digest` the store holds with its config and
    /// every layer (an image taken from the engine, or pulled by an earlier build); `None`
    /// when any of them is missing. `reference` names it in messages.
    pub fn from_store(
        reference: &Reference,
        manifest_digest: &Digest,
        store: &BlobStore,
    ) -> Result<Option<PulledImage>> {
        let Some(raw_manifest) = store.read_verified(manifest_digest)? else {
            return Ok(None);
        };
        let what = format!("{reference} ({manifest_digest})");
        let parsed = crate::oci::manifest::parse_manifest(&raw_manifest, &what)
            .map_err(|e| Error::Client(e.to_string()))?;
        let Some(raw_config) = store.read_verified(parsed.config().digest())? else {
            return Ok(None);
        };
        if !parsed.layers().iter().all(|l| store.contains(l.digest())) {
            return Ok(None);
        }
        let media_type = parsed
            .media_type()
            .as_ref()
            .map_or_else(|| MediaType::ImageManifest.to_string(), ToString::to_string);
        Ok(Some(PulledImage {
            reference: reference.clone(),
            resolved: manifest_digest.clone(),
            manifest_digest: manifest_digest.clone(),
            raw_manifest,
            media_type,
            manifest: parsed,
            raw_config,
            store: store.clone(),
            stats: PullStats::default(),
        }))
    }
}

impl Image for PulledImage {
    fn raw_manifest(&self) -> &[u8] {
        &self.raw_manifest
    }

    fn manifest_media_type(&self) -> &str {
        &self.media_type
    }

    fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }

    fn raw_config(&self) -> &[u8] {
        &self.raw_config
    }

    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        let known = self.manifest.config().digest() == digest
            || self.manifest.layers().iter().any(|l| l.digest() == digest);
        if !known {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{digest} is not a blob of {}", self.reference),
            ));
        }
        Ok(Box::new(self.store.open_blob(digest)?))
    }
}

/// What [`Client::pull_same_image`] expects of the registry.
#[derive(Clone, Copy)]
struct Expect<'a> {
    config: &'a Digest,
    within: std::time::Duration,
}

/// What a pull fetches, and of which image.
#[derive(Clone, Copy)]
struct Fetch<'a> {
    expect: Option<Expect<'a>>,
    /// The layers too, not only the manifest and config.
    layers: bool,
}

impl Fetch<'_> {
    const WHOLE: Fetch<'static> = Fetch {
        expect: None,
        layers: true,
    };
    const WITHOUT_LAYERS: Fetch<'static> = Fetch {
        expect: None,
        layers: false,
    };
}

/// `step`, given up after `expect.within` when there is an expectation.
async fn within<T>(
    expect: Option<Expect<'_>>,
    step: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match expect {
        None => step.await,
        Some(expect) => tokio::time::timeout(expect.within, step)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Client(format!(
                    "no answer within {:?}",
                    expect.within
                )))
            }),
    }
}

impl Client {
    /// Pulls `reference` for `platform` into `store`. Blobs already in the store are not
    /// fetched; a tag is resolved once per client. Mirrors of the registry are tried first.
    pub async fn pull(
        &self,
        reference: &Reference,
        platform: &Platform,
        store: &BlobStore,
        progress: &dyn Progress,
    ) -> Result<PulledImage> {
        let fetch = Fetch::WHOLE;
        self.pull_expecting(reference, platform, store, progress, fetch)
            .await
    }

    /// [`pull`](Self::pull) of the manifest and config only: the layers are left to be
    /// fetched when something needs them ([`Self::fetch_blob`], from the registry itself:
    /// not for a registry with a mirror, see [`Self::has_mirror`]). The image's
    /// `open_blob` fails for a layer not fetched yet.
    pub async fn pull_deferring_layers(
        &self,
        reference: &Reference,
        platform: &Platform,
        store: &BlobStore,
        progress: &dyn Progress,
    ) -> Result<PulledImage> {
        let fetch = Fetch::WITHOUT_LAYERS;
        self.pull_expecting(reference, platform, store, progress, fetch)
            .await
    }

    /// [`pull`](Self::pull) of the image whose config digest is `config` (the one a Docker
    /// engine holds under `reference`): fails without fetching a layer when the registry's
    /// image is another, or when the registry takes longer than `within` to tell (it is
    /// unreachable, as Docker Hub is offline).
    pub async fn pull_same_image(
        &self,
        reference: &Reference,
        platform: &Platform,
        store: &BlobStore,
        progress: &dyn Progress,
        config: &Digest,
        within: std::time::Duration,
    ) -> Result<PulledImage> {
        let expect = Expect { config, within };
        self.pull_expecting(
            reference,
            platform,
            store,
            progress,
            Fetch {
                expect: Some(expect),
                layers: true,
            },
        )
        .await
    }

    async fn pull_expecting(
        &self,
        reference: &Reference,
        platform: &Platform,
        store: &BlobStore,
        progress: &dyn Progress,
        fetch: Fetch<'_>,
    ) -> Result<PulledImage> {
        let mut failures = Vec::new();
        for target in self.pull_targets(reference.registry()) {
            let endpoint = within(fetch.expect, self.pull_endpoint(&target, progress)).await;
            let attempt = match endpoint {
                Ok(endpoint) => {
                    self.pull_from(endpoint, reference, platform, store, progress, fetch)
                        .await
                }
                Err(e) => Err(e),
            };
            match attempt {
                Ok(image) => return Ok(image),
                Err(e) => failures.push((target.to_string(), e)),
            }
        }
        Err(match failures.len() {
            1 => failures.remove(0).1,
            _ => Error::AllEndpointsFailed {
                what: format!("cannot pull {reference}"),
                attempts: failures,
            },
        })
    }

    async fn pull_from(
        &self,
        endpoint: Arc<Endpoint>,
        reference: &Reference,
        platform: &Platform,
        store: &BlobStore,
        progress: &dyn Progress,
        fetch: Fetch<'_>,
    ) -> Result<PulledImage> {
        let scopes = vec![format!("repository:{}:pull", reference.repository())];
        let session = self.session(endpoint, reference.repository(), scopes, progress);
        let (resolved, manifest_digest, raw_manifest, media_type) = within(
            fetch.expect,
            self.resolve_platform_manifest(&session, reference, platform, store),
        )
        .await?;
        let manifest = manifest::parse_image(&raw_manifest).map_err(|message| Error::Manifest {
            reference: reference.to_string(),
            message,
        })?;
        if let Some(expect) = fetch.expect
            && manifest.config().digest() != expect.config
        {
            return Err(Error::Manifest {
                reference: reference.to_string(),
                message: format!(
                    "is another image (config {}) than {}",
                    manifest.config().digest(),
                    expect.config
                ),
            });
        }
        self.fetch_image_blobs(
            &session,
            reference,
            store,
            (resolved, manifest_digest, raw_manifest, media_type),
            manifest,
            fetch.layers,
        )
        .await
    }

    /// The reference's image manifest for `platform` (through an index), stored in `store`:
    /// (the digest the reference resolved to, the manifest's digest, bytes and media type).
    async fn resolve_platform_manifest(
        &self,
        session: &Session<'_>,
        reference: &Reference,
        platform: &Platform,
        store: &BlobStore,
    ) -> Result<(Digest, Digest, Vec<u8>, String)> {
        let resolved = self.resolve(session, reference, store).await?;
        let top = fetch_manifest(session, reference, &resolved, store).await?;
        let (manifest_digest, raw_manifest, media_type) = match top.kind {
            Kind::Image { media_type } => (resolved.clone(), top.bytes, media_type),
            Kind::Index { .. } => {
                let child =
                    manifest::select_platform(&top.bytes, platform).map_err(|e| match e {
                        manifest::SelectError::Invalid(message) => Error::Manifest {
                            reference: reference.to_string(),
                            message,
                        },
                        manifest::SelectError::NoMatch(available) => Error::NoMatchingPlatform {
                            reference: reference.to_string(),
                            wanted: platform.to_string(),
                            available,
                        },
                    })?;
                let fetched = fetch_manifest(session, reference, &child, store).await?;
                match fetched.kind {
                    Kind::Image { media_type } => (child, fetched.bytes, media_type),
                    Kind::Index { .. } => {
                        return Err(Error::Manifest {
                            reference: reference.to_string(),
                            message: format!("{child} for {platform} is an index, not an image"),
                        });
                    }
                }
            }
        };
        Ok((resolved, manifest_digest, raw_manifest, media_type))
    }

    /// Fetches the config and (with `layers`) the layers of a resolved manifest,
    /// concurrently and verified.
    async fn fetch_image_blobs(
        &self,
        session: &Session<'_>,
        reference: &Reference,
        store: &BlobStore,
        (resolved, manifest_digest, raw_manifest, media_type): (Digest, Digest, Vec<u8>, String),
        manifest: ImageManifest,
        layers: bool,
    ) -> Result<PulledImage> {
        let mut blobs: Vec<&Descriptor> = vec![manifest.config()];
        let layers = match layers {
            true => manifest.layers().as_slice(),
            false => &[],
        };
        for layer in layers {
            if !blobs.iter().any(|b| b.digest() == layer.digest()) {
                blobs.push(layer);
            }
        }
        // The futures are made up front: a stream over a borrowing closure would make the
        // whole pull future not `Send`.
        let fetches: Vec<_> = blobs
            .iter()
            .map(|descriptor| fetch_blob(session, descriptor, store, None))
            .collect();
        let results: Vec<Result<Option<u64>>> = stream::iter(fetches)
            .buffer_unordered(self.config.max_concurrent_downloads.max(1))
            .collect()
            .await;
        let mut stats = PullStats::default();
        for result in results {
            match result? {
                Some(bytes) => {
                    stats.blobs_downloaded += 1;
                    stats.bytes_downloaded += bytes;
                }
                None => stats.blobs_cached += 1,
            }
        }

        // Remember where the blobs live, so pushes to this registry can mount them.
        let mut sources = vec![BlobSource {
            registry: reference.registry().to_owned(),
            repository: reference.repository().to_owned(),
        }];
        if session.endpoint.host != reference.registry() {
            sources.push(BlobSource {
                registry: session.endpoint.host.clone(),
                repository: reference.repository().to_owned(),
            });
        }
        for descriptor in &blobs {
            // Best effort: a lost record only costs a mount later.
            let _ = store.add_sources(descriptor.digest(), &sources);
        }

        let config_digest = manifest.config().digest().clone();
        let raw_config = store.read_verified(&config_digest)?.ok_or_else(|| {
            Error::Client(format!(
                "config {config_digest} vanished from the blob store during the pull"
            ))
        })?;
        Ok(PulledImage {
            reference: reference.clone(),
            resolved,
            manifest_digest,
            raw_manifest,
            media_type,
            manifest,
            raw_config,
            store: store.clone(),
            stats,
        })
    }

    /// The digest a reference stands for: its own digest, a tag resolved earlier by this
    /// client, or a HEAD request (the manifest is then fetched by digest).
    pub(super) async fn resolve(
        &self,
        session: &Session<'_>,
        reference: &Reference,
        store: &BlobStore,
    ) -> Result<Digest> {
        if let Some(digest) = reference.digest() {
            return Ok(digest.clone());
        }
        let key = format!("{}:{}", reference.name(), reference.manifest_reference());
        if let Some(digest) = self
            .resolved_tags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(digest.clone());
        }
        let url = session.url(&format!("manifests/{}", reference.manifest_reference()))?;
        let accept = |r: reqwest::RequestBuilder| r.header(ACCEPT, manifest::ACCEPT);
        let response = session
            .send(Method::HEAD, &url, &accept, Retry::Yes)
            .await?;
        let digest = match response.status() {
            s if s.is_success() => header_text(&response, DOCKER_CONTENT_DIGEST)
                .parse::<Digest>()
                .ok(),
            StatusCode::NOT_FOUND => {
                return Err(Error::Manifest {
                    reference: reference.to_string(),
                    message: format!(
                        "no such image on {} (manifest unknown)",
                        session.endpoint.host
                    ),
                });
            }
            _ => return Err(status_error(&describe(&Method::HEAD, &url), response).await),
        };
        let digest = match digest {
            Some(digest) => digest,
            // No digest header (some registries): fetch by tag and hash what came.
            None => {
                let response = session.send(Method::GET, &url, &accept, Retry::Yes).await?;
                if !response.status().is_success() {
                    return Err(status_error(&describe(&Method::GET, &url), response).await);
                }
                let bytes = response.bytes().await.map_err(|e| Error::Transport {
                    request: describe(&Method::GET, &url),
                    attempts: 1,
                    source: e.without_url(),
                })?;
                let digest = digest_of(&bytes);
                store.put_bytes(&digest, &bytes, &format!("manifest of {reference}"))?;
                digest
            }
        };
        session.progress.on_resolved(reference, &digest);
        self.resolved_tags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, digest.clone());
        Ok(digest)
    }
}

pub(super) struct FetchedManifest {
    pub(super) bytes: Vec<u8>,
    pub(super) kind: Kind,
}

/// A manifest by digest, from the store or the registry (then verified and stored).
pub(super) async fn fetch_manifest(
    session: &Session<'_>,
    reference: &Reference,
    digest: &Digest,
    store: &BlobStore,
) -> Result<FetchedManifest> {
    let classify = |bytes: &[u8], content_type: Option<&str>| {
        manifest::classify(bytes, content_type).map_err(|message| Error::Manifest {
            reference: format!("{reference} ({digest})"),
            message,
        })
    };
    if let Some(bytes) = store.read_verified(digest)? {
        let kind = classify(&bytes, None)?;
        return Ok(FetchedManifest { bytes, kind });
    }
    let url = session.url(&format!("manifests/{digest}"))?;
    let accept = |r: reqwest::RequestBuilder| r.header(ACCEPT, manifest::ACCEPT);
    let response = session.send(Method::GET, &url, &accept, Retry::Yes).await?;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(Error::Manifest {
            reference: reference.to_string(),
            message: format!("manifest {digest} is not on {}", session.endpoint.host),
        });
    }
    if !response.status().is_success() {
        return Err(status_error(&describe(&Method::GET, &url), response).await);
    }
    let content_type = header_text(&response, reqwest::header::CONTENT_TYPE);
    let bytes = response.bytes().await.map_err(|e| Error::Transport {
        request: describe(&Method::GET, &url),
        attempts: 1,
        source: e.without_url(),
    })?;
    // Classify before storing: the stored bytes must classify the same without headers.
    let kind = classify(&bytes, Some(&content_type))?;
    if classify(&bytes, None).is_err() {
        return Err(Error::Manifest {
            reference: reference.to_string(),
            message: "the manifest has no mediaType field and an ambiguous shape".into(),
        });
    }
    store.put_bytes(digest, &bytes, &format!("manifest {digest} of {reference}"))?;
    Ok(FetchedManifest {
        bytes: bytes.to_vec(),
        kind,
    })
}

/// Fetches one blob into the store unless it is there; `Some(bytes)` when downloaded.
/// A broken transfer is started again (bounded); a digest mismatch is final.
pub(super) async fn fetch_blob(
    session: &Session<'_>,
    descriptor: &Descriptor,
    store: &BlobStore,
    follow: Option<&BlobFollow>,
) -> Result<Option<u64>> {
    let digest = descriptor.digest();
    let size = descriptor.size();
    let progress = session.progress;
    progress.on_blob_start(digest, size);
    if store.contains(digest) {
        if let Some(follow) = follow {
            // Stored meanwhile (by another build): followed from the store.
            let stored = store.open_blob(digest).map_err(|source| Error::StoreIo {
                path: store.path(digest).unwrap_or_default(),
                source,
            })?;
            follow.attempt(stored);
            follow.advance(size);
        }
        progress.on_blob_done(digest, &BlobOutcome::Cached);
        return Ok(None);
    }
    let what = format!("download of blob {digest}");
    session
        .client
        .transport
        .retry
        .run(&what, progress, || {
            download(session, descriptor, store, follow)
        })
        .await?;
    progress.on_blob_done(digest, &BlobOutcome::Downloaded);
    Ok(Some(size))
}

async fn download(
    session: &Session<'_>,
    descriptor: &Descriptor,
    store: &BlobStore,
    follow: Option<&BlobFollow>,
) -> Result<()> {
    let digest = descriptor.digest();
    let url = session.url(&format!("blobs/{digest}"))?;
    let request = describe(&Method::GET, &url);
    let response = session.send(Method::GET, &url, &|r| r, Retry::Yes).await?;
    if !response.status().is_success() {
        return Err(status_error(&request, response).await);
    }
    let what = format!("blob {digest} from {}", session.endpoint.host);
    let mut writer = store.writer(digest, Some(descriptor.size()), &what)?;
    if let Some(follow) = follow {
        let handle = writer.follow_handle().map_err(|source| Error::StoreIo {
            path: store.path(digest).unwrap_or_default(),
            source,
        })?;
        follow.attempt(handle);
    }
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::Transport {
            request: request.clone(),
            attempts: 1,
            source: e.without_url(),
        })?;
        blocking(|| writer.write(&chunk))?;
        if let Some(follow) = follow {
            follow.advance(writer.written());
        }
        session
            .progress
            .on_blob_progress(digest, chunk.len() as u64);
    }
    blocking(|| writer.commit())
}
