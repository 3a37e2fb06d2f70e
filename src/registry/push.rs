//! Push: every blob the registry lacks (HEAD first; mounted from another repository of the
//! same registry when one is known to hold it; uploaded in one PUT when small, in PATCH
//! chunks when large; several at once), then the manifest by digest, then the tags. A tag
//! is only written once the manifest is accepted, and the registry accepts a manifest only
//! when it has all its blobs: a tag never points at an incomplete image, and a push run
//! again after an interruption uploads only what is missing.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use oci_spec::image::{Descriptor, Digest};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

use super::blob_store::{BlobSource, BlobStore, digest_of};
use super::client::{Client, DOCKER_CONTENT_DIGEST, Retry, Session, blocking, header_text};
use super::error::{Error, Result};
use super::progress::{BlobOutcome, Progress};
use super::reference::Reference;
use super::transport::{describe, status_error};
use crate::error::InputError;
use crate::oci::Image;

/// A manifest or index as it is put: its bytes, media type and digest.
struct Manifest<'a> {
    raw: &'a [u8],
    media_type: &'a str,
    digest: &'a Digest,
}

/// The references of `tags` grouped by repository, in the order given (later repositories
/// of one registry mount from earlier ones). A reference by digest must name `digest`.
fn by_repository<'t>(
    tags: &'t [Reference],
    digest: &Digest,
) -> Result<Vec<(&'t str, &'t str, Vec<&'t Reference>)>> {
    if tags.is_empty() {
        return Err(InputError::new("nothing to push to: no image reference given").into());
    }
    let mut repositories: Vec<(&str, &str, Vec<&Reference>)> = Vec::new();
    for tag in tags {
        if let Some(wanted) = tag.digest()
            && wanted != digest
        {
            return Err(InputError::new(format!(
                "cannot push to `{tag}`: the image's digest is {digest}"
            ))
            .into());
        }
        match repositories
            .iter_mut()
            .find(|(r, p, _)| *r == tag.registry() && *p == tag.repository())
        {
            Some((_, _, refs)) => refs.push(tag),
            None => repositories.push((tag.registry(), tag.repository(), vec![tag])),
        }
    }
    Ok(repositories)
}

/// Puts `manifest` by digest, then under each reference's tag.
async fn put_tagged(
    session: &Session<'_>,
    manifest: &Manifest<'_>,
    refs: &[&Reference],
) -> Result<()> {
    put_manifest(session, manifest, manifest.digest.as_ref()).await?;
    for tag in refs {
        if let Some(name) = tag.tag() {
            put_manifest(session, manifest, name).await?;
        }
    }
    Ok(())
}

/// What a push did, per blob outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    pub digest: Option<Digest>,
    pub uploaded: usize,
    pub bytes_uploaded: u64,
    pub mounted: usize,
    pub already_present: usize,
}

impl Client {
    /// Pushes `image` under every reference in `tags` (each may name another repository or
    /// registry) and returns the manifest digest. `store` says which repositories already
    /// hold which blobs (for mounts) and learns where this push put them.
    pub async fn push(
        &self,
        image: &dyn Image,
        tags: &[Reference],
        store: &BlobStore,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let report = self.push_with_report(image, tags, store, progress).await?;
        report
            .digest
            .ok_or_else(|| Error::Client("the push returned no digest".into()))
    }

    /// As [`Client::push`], with counts of what was uploaded, mounted or already there.
    pub async fn push_with_report(
        &self,
        image: &dyn Image,
        tags: &[Reference],
        store: &BlobStore,
        progress: &dyn Progress,
    ) -> Result<PushReport> {
        let digest = digest_of(image.raw_manifest());
        let manifest = Manifest {
            raw: image.raw_manifest(),
            media_type: image.manifest_media_type(),
            digest: &digest,
        };
        let mut report = PushReport {
            digest: Some(digest.clone()),
            ..PushReport::default()
        };
        for (registry, repository, refs) in by_repository(tags, &digest)? {
            let session = self
                .push_blobs(image, registry, repository, store, progress, &mut report)
                .await?;
            put_tagged(&session, &manifest, &refs).await?;
        }
        Ok(report)
    }

    /// Pushes every image of a multi-platform `index` by digest, then the index under every
    /// reference in `tags`: a tag never names an index whose images are not all there.
    pub async fn push_index(
        &self,
        index: &crate::oci::PlatformIndex,
        tags: &[Reference],
        store: &BlobStore,
        progress: &dyn Progress,
    ) -> Result<PushReport> {
        let digest = index.digest();
        let manifest = Manifest {
            raw: index.raw(),
            media_type: index.media_type(),
            digest: &digest,
        };
        let mut report = PushReport {
            digest: Some(digest.clone()),
            ..PushReport::default()
        };
        for (registry, repository, refs) in by_repository(tags, &digest)? {
            let mut session = None;
            for (_, image) in index.images() {
                let pushed = self
                    .push_blobs(
                        image.as_ref(),
                        registry,
                        repository,
                        store,
                        progress,
                        &mut report,
                    )
                    .await?;
                let image_digest = image.digest();
                let own = Manifest {
                    raw: image.raw_manifest(),
                    media_type: image.manifest_media_type(),
                    digest: &image_digest,
                };
                put_manifest(&pushed, &own, image_digest.as_ref()).await?;
                session = Some(pushed);
            }
            let session =
                session.ok_or_else(|| Error::Client("the index lists no image".into()))?;
            put_tagged(&session, &manifest, &refs).await?;
        }
        Ok(report)
    }

    /// Pushes the config and layers of `image` that `repository` lacks, and returns the
    /// session the manifest then goes up in.
    async fn push_blobs<'a>(
        &'a self,
        image: &dyn Image,
        registry: &str,
        repository: &str,
        store: &BlobStore,
        progress: &'a dyn Progress,
        report: &mut PushReport,
    ) -> Result<Session<'a>> {
        let manifest = image.manifest();
        let mut blobs: Vec<&Descriptor> = vec![manifest.config()];
        for layer in manifest.layers() {
            if !blobs.iter().any(|b| b.digest() == layer.digest()) {
                blobs.push(layer);
            }
        }
        // A mount source per blob: another repository of this registry known to hold it.
        let mut mount_from: BTreeMap<String, String> = BTreeMap::new();
        for blob in &blobs {
            if let Some(source) = store
                .sources(blob.digest())
                .into_iter()
                .find(|s| s.registry == registry && s.repository != repository)
            {
                mount_from.insert(blob.digest().to_string(), source.repository);
            }
        }
        let mut scopes = vec![format!("repository:{repository}:pull,push")];
        for source in mount_from.values() {
            let scope = format!("repository:{source}:pull");
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        let endpoint = self.registry_endpoint(registry, progress).await?;
        let session = self.session(endpoint, repository, scopes, progress);

        let outcomes = Mutex::new(Vec::new());
        // The futures are made up front: a stream over a borrowing closure would make the
        // whole push future not `Send`.
        let uploads: Vec<_> = blobs
            .iter()
            .map(|blob| {
                let from = mount_from.get(blob.digest().as_ref()).cloned();
                push_blob_recorded(&session, image, blob, from, &outcomes)
            })
            .collect();
        let results: Vec<Result<()>> = stream::iter(uploads)
            .buffer_unordered(self.config.max_concurrent_uploads.max(1))
            .collect()
            .await;
        for (size, outcome) in outcomes.into_inner().unwrap_or_else(|p| p.into_inner()) {
            match outcome {
                BlobOutcome::Uploaded => {
                    report.uploaded += 1;
                    report.bytes_uploaded += size;
                }
                BlobOutcome::Mounted { .. } => report.mounted += 1,
                _ => report.already_present += 1,
            }
        }
        // Every blob must be there before the manifest goes up.
        results.into_iter().collect::<Result<Vec<()>>>()?;

        let here = [BlobSource {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
        }];
        for blob in &blobs {
            let _ = store.add_sources(blob.digest(), &here);
        }
        Ok(session)
    }
}

async fn put_manifest(
    session: &Session<'_>,
    manifest: &Manifest<'_>,
    reference: &str,
) -> Result<()> {
    let digest = manifest.digest;
    let url = session.url(&format!("manifests/{reference}"))?;
    let body = Bytes::copy_from_slice(manifest.raw);
    let media_type = manifest.media_type.to_owned();
    let customize = move |r: reqwest::RequestBuilder| {
        r.header(CONTENT_TYPE, media_type.clone())
            .body(body.clone())
    };
    let response = session
        .send(Method::PUT, &url, &customize, Retry::Yes)
        .await?;
    if !response.status().is_success() {
        return Err(status_error(&describe(&Method::PUT, &url), response).await);
    }
    let returned = header_text(&response, DOCKER_CONTENT_DIGEST);
    if !returned.is_empty() && returned != digest.to_string() {
        return Err(Error::Client(format!(
            "{} stored the manifest as {returned}, not {digest}",
            session.endpoint.host
        )));
    }
    Ok(())
}

async fn push_blob_recorded(
    session: &Session<'_>,
    image: &dyn Image,
    blob: &Descriptor,
    mount_from: Option<String>,
    outcomes: &Mutex<Vec<(u64, BlobOutcome)>>,
) -> Result<()> {
    let outcome = push_blob(session, image, blob, mount_from.as_deref()).await?;
    outcomes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((blob.size(), outcome));
    Ok(())
}

/// Makes one blob present in the session's repository, restarting the transfer on
/// transient failures (bounded).
async fn push_blob(
    session: &Session<'_>,
    image: &dyn Image,
    blob: &Descriptor,
    mount_from: Option<&str>,
) -> Result<BlobOutcome> {
    let digest = blob.digest();
    let progress = session.progress;
    progress.on_blob_start(digest, blob.size());
    let what = format!("upload of blob {digest}");
    let outcome = session
        .client
        .transport
        .retry
        .run(&what, progress, || {
            push_blob_once(session, image, blob, mount_from)
        })
        .await?;
    progress.on_blob_done(digest, &outcome);
    Ok(outcome)
}

async fn push_blob_once(
    session: &Session<'_>,
    image: &dyn Image,
    blob: &Descriptor,
    mount_from: Option<&str>,
) -> Result<BlobOutcome> {
    let digest = blob.digest();
    let blob_url = session.url(&format!("blobs/{digest}"))?;
    let head = session
        .send(Method::HEAD, &blob_url, &|r| r, Retry::Yes)
        .await?;
    match head.status() {
        s if s.is_success() => return Ok(BlobOutcome::AlreadyPresent),
        StatusCode::NOT_FOUND => {}
        _ => return Err(status_error(&describe(&Method::HEAD, &blob_url), head).await),
    }

    // Opened before any upload session starts, so a local failure leaves none behind.
    let what = format!("blob {digest} of the image");
    let mut reader = blocking(|| image.open_blob(digest))
        .map_err(|e| Error::io(format!("opening {what}"), e))?;

    let mut start = session.url("blobs/uploads/")?;
    if let Some(from) = mount_from {
        start
            .query_pairs_mut()
            .append_pair("mount", digest.as_ref())
            .append_pair("from", from);
    }
    let response = session
        .send(
            Method::POST,
            &start,
            &|r| r.header(CONTENT_LENGTH, 0),
            Retry::Yes,
        )
        .await?;
    match (response.status(), mount_from) {
        (StatusCode::CREATED, Some(from)) => {
            return Ok(BlobOutcome::Mounted {
                from: from.to_owned(),
            });
        }
        // 202: no mount (or none asked for); an upload session is open.
        (StatusCode::ACCEPTED, _) => {}
        _ => return Err(status_error(&describe(&Method::POST, &start), response).await),
    }
    let location = session.location(&response)?;

    let size = blob.size();
    let config = &session.client.config;
    let mut hasher = Sha256::new();
    let mut sent: u64 = 0;
    let mut location = location;
    let final_body = if size <= config.monolithic_upload_max {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        blocking(|| reader.read_to_end(&mut bytes))
            .map_err(|e| Error::io(format!("reading {what}"), e))?;
        hasher.update(&bytes);
        sent = bytes.len() as u64;
        Bytes::from(bytes)
    } else {
        loop {
            let chunk = blocking(|| read_chunk(&mut reader, config.chunk_size))
                .map_err(|e| Error::io(format!("reading {what}"), e))?;
            if chunk.is_empty() {
                break;
            }
            hasher.update(&chunk);
            let len = chunk.len() as u64;
            let range = format!("{}-{}", sent, sent + len - 1);
            let body = Bytes::from(chunk);
            let customize = move |r: reqwest::RequestBuilder| {
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .header("Content-Range", range.clone())
                    .header(CONTENT_LENGTH, len)
                    .body(body.clone())
            };
            let response = session
                .send(Method::PATCH, &location, &customize, Retry::No)
                .await?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(status_error(&describe(&Method::PATCH, &location), response).await);
            }
            location = session.location(&response)?;
            sent += len;
            session.progress.on_blob_progress(digest, len);
        }
        Bytes::new()
    };
    // Check before committing: the registry would refuse a wrong blob too, but this error
    // says which side is wrong.
    if sent != size {
        return Err(Error::SizeMismatch {
            what,
            expected: size,
            actual: sent,
        });
    }
    let actual = hex::encode(hasher.finalize());
    if actual != digest.digest() {
        return Err(Error::DigestMismatch {
            what,
            expected: digest.clone(),
            actual: format!("sha256:{actual}"),
        });
    }
    location
        .query_pairs_mut()
        .append_pair("digest", digest.as_ref());
    let monolithic = !final_body.is_empty();
    let body_len = final_body.len();
    let customize = move |r: reqwest::RequestBuilder| {
        r.header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, body_len)
            .body(final_body.clone())
    };
    let response = session
        .send(Method::PUT, &location, &customize, Retry::No)
        .await?;
    if response.status() != StatusCode::CREATED {
        return Err(status_error(&describe(&Method::PUT, &location), response).await);
    }
    if monolithic {
        session.progress.on_blob_progress(digest, size);
    }
    Ok(BlobOutcome::Uploaded)
}

/// Up to `size` bytes (fewer only at the end).
fn read_chunk(reader: &mut dyn Read, size: usize) -> std::io::Result<Vec<u8>> {
    let mut chunk = Vec::with_capacity(size);
    reader.take(size as u64).read_to_end(&mut chunk)?;
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_full_until_the_end() {
        let data: Vec<u8> = (0..10u8).collect();
        let mut reader: &[u8] = &data;
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            read_chunk(&mut reader, 4)
                .ok()
                .filter(|c| !c.is_empty())
                .map(|c| c.len())
        })
        .collect();
        assert_eq!(sizes, vec![4, 4, 2]);
    }
}
