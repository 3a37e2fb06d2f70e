//! Putting a finished image where the user asked, after ko's split between making an
//! image and publishing it: [`sinks_for`] is the one place that turns `--output`/`--push`
//! into sinks; each [`Sink`] takes any [`Image`]. The OCI layout and archive sinks live in
//! [`crate::oci`]; the engine and registry sinks are here because they need the engine and
//! the registry client; the image's file system as a directory or tar (`type=local`,
//! `type=tar`) is in [`filesystem`]. [`Recorder`] writes `--iidfile` and `--metadata-file`
//! afterwards.

mod filesystem;

pub use filesystem::TarDest;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use oci_spec::image::Digest;

use crate::engine::Engine;
use crate::error::InputError;
use crate::oci::{self, DockerArchiveOptions, Image, Publish, Published};
use crate::progress::{Ids, Reporter};
use crate::registry::{self, Reference};

/// An image destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Engine,
    OciDir(PathBuf),
    OciTar(PathBuf),
    DockerTar(PathBuf),
    Registry,
    /// The image's file system as a directory (`type=local`).
    Local(PathBuf),
    /// The image's file system as a tar (`type=tar`).
    Tar(TarDest),
    /// Nowhere: the build fills the cache (`type=cacheonly`; what `imgbuild check` does).
    CacheOnly,
}

/// Where the result goes and how it is shown, shared by `build` and `base build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    pub tags: Vec<String>,
    /// Empty means the default: the engine when one is reachable.
    pub outputs: Vec<Output>,
    pub push: bool,
    pub compression: oci::Compression,
    pub source_date_epoch: i64,
    pub iidfile: Option<PathBuf>,
    pub metadata_file: Option<PathBuf>,
    pub registry: registry::RegistryOptions,
    pub platform: oci::Platform,
    /// Whether `--platform` named the platform (else it is this machine's): an image is
    /// then refused rather than labelled with a platform its base is not for.
    pub platform_asked: bool,
    pub progress: crate::progress::Mode,
    /// `--annotation`s for the image manifest.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// With `--platform` listing several platforms: an index over one image for each
    /// (`platform` and `annotations` are then the first's).
    pub multi_platform: Option<MultiPlatform>,
}

/// A build of several platforms: one image each, and an index over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiPlatform {
    /// Each platform, in the order asked, with its manifest's annotations.
    pub images: Vec<(oci::Platform, std::collections::BTreeMap<String, String>)>,
    /// `--annotation index:…`.
    pub index_annotations: std::collections::BTreeMap<String, String>,
}

impl PublishRequest {
    /// Whether an output writes to standard output (`-o -`), where `-q` then prints nothing.
    pub fn writes_stdout(&self) -> bool {
        self.outputs.contains(&Output::Tar(TarDest::Stdout))
    }

    /// The request for one platform's image of a multi-platform build (`image` indexes
    /// `multi_platform.images`): it builds that image and publishes nothing, since the
    /// index is published once all are built.
    pub fn for_platform(&self, image: usize) -> Option<PublishRequest> {
        let (platform, annotations) = self.multi_platform.as_ref()?.images.get(image)?.clone();
        Some(PublishRequest {
            platform,
            platform_asked: true,
            annotations,
            multi_platform: None,
            outputs: vec![Output::CacheOnly],
            push: false,
            iidfile: None,
            metadata_file: None,
            ..self.clone()
        })
    }

    /// Whether the image goes to the engine: asked for with `--output type=engine`, or the
    /// default when neither `--output` nor `--push` is given.
    pub fn to_engine(&self) -> bool {
        self.outputs.contains(&Output::Engine) || (self.outputs.is_empty() && !self.push)
    }

    /// Whether the image goes to the engine and nowhere else (see [`only_to_engine`]).
    pub fn only_to_engine(&self) -> bool {
        only_to_engine(&self.outputs, self.push)
    }

    /// The digest that names the built image in the summary, `--metadata-file` and the
    /// action's outputs: its manifest's, except for an image that only goes to the engine.
    /// The engine keeps no manifest, so that one is named by its image ID, as BuildKit's
    /// engine export names it (moby's `mobyexporter` sets `containerimage.digest` to it).
    pub fn names_image(&self, image: &dyn Image) -> Digest {
        name_of(image, self.only_to_engine())
    }
}

/// See [`PublishRequest::names_image`].
fn name_of(image: &dyn Image, only_to_engine: bool) -> Digest {
    match only_to_engine {
        true => image.config_descriptor().digest().clone(),
        false => image.digest(),
    }
}

/// Whether `outputs` (with `--push` or not) send the image to the engine and nowhere else.
pub fn only_to_engine(outputs: &[Output], push: bool) -> bool {
    !push && matches!(outputs, [] | [Output::Engine])
}

/// What a build publishes: one image, or a multi-platform build's index and its images.
#[derive(Clone)]
pub enum Product {
    Image(Arc<dyn Image>),
    Index(Arc<oci::PlatformIndex>),
}

/// Sends `product` to every sink in turn, each shown as a vertex of the progress display
/// (a push shows its own), then writes `--iidfile` and `--metadata-file`.
pub async fn publish_all(
    sinks: &[Sink],
    product: &Product,
    tags: &[String],
    recorder: &Recorder,
    reporter: &Arc<dyn Reporter>,
    ids: &Ids,
) -> anyhow::Result<()> {
    let mut pushed = None;
    for sink in sinks {
        let id = ids.next();
        let started = Instant::now();
        let is_registry = matches!(sink, Sink::Registry(_));
        if !is_registry {
            reporter.started(id, &format!("exporting to {}", sink.describe()));
        }
        let published = match product {
            Product::Image(image) => sink.publish(image.clone(), tags, reporter, ids).await,
            Product::Index(index) => sink.publish_index(index.clone(), tags, reporter, ids).await,
        };
        match published {
            Ok(p) if is_registry => pushed = Some(p.digest),
            Ok(p) => {
                reporter.log(id, &format!("{} {}", p.destination, p.digest));
                reporter.done(id, started.elapsed());
            }
            Err(e) => {
                if !is_registry {
                    reporter.failed(id, started.elapsed());
                }
                return Err(e);
            }
        }
    }
    match product {
        Product::Image(image) => recorder.record(image.as_ref(), tags, pushed.as_ref()),
        Product::Index(index) => recorder.record_index(index, tags, pushed.as_ref()),
    }
}

/// One destination of the image.
pub enum Sink {
    /// An OCI layout (dir or tar) or a docker archive: written by [`crate::oci`].
    File(Box<dyn Publish>),
    /// Loaded into the Docker engine, tagged with every `--tag`.
    Engine(EngineSink),
    /// Pushed to every `--tag`'s registry.
    Registry(RegistrySink),
}

/// What the caller provides for the sinks that need machinery.
pub struct SinkDeps {
    /// Connects to the engine when a sink needs it (`None` when no engine is wanted).
    pub engine: Option<Engine>,
    pub registry: Option<Arc<registry::Client>>,
    pub blobs: registry::BlobStore,
    /// Images the engine may already have, whose layers a load can leave out.
    pub engine_known_images: Vec<String>,
    /// Where a tar for standard output writes the image's file system first (the cache
    /// dir).
    pub scratch: PathBuf,
}

/// The sinks for a request. With no `--output`, the image goes to the engine, unless
/// `--push` was asked, in which case it only goes to the registry (as `docker buildx build
/// --push`). This is the only function that looks at output kinds.
pub fn sinks_for(request: &PublishRequest, deps: &SinkDeps) -> anyhow::Result<Vec<Sink>> {
    let mut sinks = Vec::new();
    let outputs: Vec<Output> = if request.outputs.is_empty() && request.to_engine() {
        vec![Output::Engine]
    } else {
        request.outputs.clone()
    };
    for output in outputs {
        sinks.push(match output {
            Output::OciDir(dir) => Sink::File(Box::new(oci::OciDir::new(dir))),
            Output::OciTar(file) => Sink::File(Box::new(oci::OciTar::new(file))),
            Output::DockerTar(file) => Sink::File(Box::new(oci::DockerArchive::new(file))),
            Output::Local(dir) => Sink::File(Box::new(filesystem::LocalDir::new(dir))),
            Output::Tar(dest) => Sink::File(Box::new(filesystem::RootfsTar::new(
                dest,
                deps.scratch.clone(),
            ))),
            Output::Engine => {
                let engine = deps.engine.clone().ok_or_else(|| {
                    InputError::new("the image would be loaded into the Docker engine, but none is reachable")
                        .with_hint("start one (or set DOCKER_HOST), or write the image elsewhere with --output type=oci,dest=DIR or --push")
                })?;
                Sink::Engine(EngineSink { engine, known_images: deps.engine_known_images.clone() })
            }
            Output::Registry | Output::CacheOnly => continue,
        });
    }
    if request.push {
        let client = deps
            .registry
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no registry client for --push"))?;
        let references = request
            .tags
            .iter()
            .map(|t| Reference::parse(t).map_err(|e| InputError::new(format!("--tag {t}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        sinks.push(Sink::Registry(RegistrySink {
            client,
            references,
            blobs: deps.blobs.clone(),
        }));
    }
    Ok(sinks)
}

impl Sink {
    /// Where this sink puts images, for messages.
    pub fn describe(&self) -> String {
        match self {
            Sink::File(_) => "file output".into(),
            Sink::Engine(_) => "engine".into(),
            Sink::Registry(r) => r.names(),
        }
    }

    /// Publishes a multi-platform `index` under `tags`: files and registries get the index
    /// and every image in it; the engine, which holds one platform per name, gets the
    /// host's image (or the first, when the index has none for the host).
    pub async fn publish_index(
        &self,
        index: Arc<oci::PlatformIndex>,
        tags: &[String],
        reporter: &Arc<dyn Reporter>,
        ids: &Ids,
    ) -> anyhow::Result<Published> {
        match self {
            Sink::File(sink) => {
                let tags = tags.to_vec();
                let sink: &dyn Publish = sink.as_ref();
                tokio::task::block_in_place(|| sink.publish_index(&index, &tags))
            }
            Sink::Engine(sink) => {
                let host = oci::Platform::host();
                let (platform, image) = index
                    .images()
                    .iter()
                    .find(|(p, _)| *p == host)
                    .or_else(|| index.images().first())
                    .ok_or_else(|| anyhow::anyhow!("the index lists no image"))?;
                let published = sink.publish(image.clone(), tags).await?;
                let which = match *platform == host {
                    true => format!("the {platform} image, this machine's platform"),
                    false => format!(
                        "the {platform} image: the index has none for this machine's {host}"
                    ),
                };
                Ok(Published {
                    destination: format!("{} ({which})", published.destination),
                    ..published
                })
            }
            Sink::Registry(sink) => sink.publish_index(&index, reporter, ids).await,
        }
    }

    /// Publishes `image` under `tags`.
    pub async fn publish(
        &self,
        image: Arc<dyn Image>,
        tags: &[String],
        reporter: &Arc<dyn Reporter>,
        ids: &Ids,
    ) -> anyhow::Result<Published> {
        match self {
            Sink::File(sink) => {
                // The OCI sinks are blocking (file I/O); keep them off the async workers.
                let tags = tags.to_vec();
                let sink: &dyn Publish = sink.as_ref();
                // Safety of the borrow: `block_in_place` runs on this thread.
                tokio::task::block_in_place(|| sink.publish(image.as_ref(), &tags))
            }
            Sink::Engine(sink) => sink.publish(image, tags).await,
            Sink::Registry(sink) => sink.publish(image, reporter, ids).await,
        }
    }
}

/// Loads images into the engine as a docker archive, leaving out layers it already has.
pub struct EngineSink {
    engine: Engine,
    known_images: Vec<String>,
}

impl EngineSink {
    async fn publish(&self, image: Arc<dyn Image>, tags: &[String]) -> anyhow::Result<Published> {
        let published = Published {
            digest: image.digest(),
            config_digest: image.config_descriptor().digest().clone(),
            destination: "engine".into(),
        };
        // The engine's image id is the config digest: the same id means the same config and
        // layers, so a rebuild that changed nothing only (re)applies the tags.
        let id = published.config_digest.to_string();
        if self.engine.find_image(&id).await.ok().flatten().is_some() {
            for tag in tags {
                self.engine
                    .tag(&id, &oci::with_default_tag(tag))
                    .await
                    .with_context(|| format!("tagging the image as {tag}"))?;
            }
            return Ok(published);
        }
        let omit = self.layers_the_engine_has(image.as_ref()).await;
        let total = image.layers().len();
        let sent = total.saturating_sub(omit.len());
        load_into_engine(&self.engine, image, tags, omit).await?;
        Ok(Published {
            destination: if sent == total {
                format!("engine (all {total} layers sent)")
            } else {
                format!("engine ({sent} of {total} layers sent; the engine had the others)")
            },
            ..published
        })
    }

    async fn layers_the_engine_has(&self, image: &dyn Image) -> HashSet<Digest> {
        layers_engine_has(&self.engine, &self.known_images, image).await
    }
}

/// Loads `image` into the engine as a docker archive, tagged `tags`, leaving out the layers
/// in `omit` (which the engine must hold: see [`layers_engine_has`]).
pub async fn load_into_engine(
    engine: &Engine,
    image: Arc<dyn Image>,
    tags: &[String],
    omit: HashSet<Digest>,
) -> anyhow::Result<()> {
    // A file, not a stream: the engine reads the whole archive before it looks at it, and
    // a file lets the archive be written on a blocking thread.
    let archive =
        tempfile::NamedTempFile::new().context("creating a temporary file for the engine load")?;
    let path = archive.path().to_path_buf();
    let tags = tags.to_vec();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        oci::write_docker_archive(
            &mut file,
            image.as_ref(),
            &tags,
            &DockerArchiveOptions { omit_layers: omit },
        )?;
        std::io::Write::flush(&mut file)?;
        Ok(())
    })
    .await
    .context("writing the docker archive for the engine")??;
    let file = tokio::fs::File::open(archive.path())
        .await
        .context("reading the docker archive back")?;
    engine
        .load_archive_from(file)
        .await
        .context("loading the image into the engine")?;
    Ok(())
}

/// The diff_ids of `image` the engine already holds: the longest common prefix with the
/// layers of one of the `known` images it has (Docker matches layers by chain, so only a
/// prefix counts). A docker archive may leave those out.
pub async fn layers_engine_has(
    engine: &Engine,
    known: &[String],
    image: &dyn Image,
) -> HashSet<Digest> {
    let Ok(wanted) = image.diff_ids() else {
        return HashSet::new();
    };
    let mut best: Vec<Digest> = Vec::new();
    for id in known {
        let Ok(Some(info)) = engine.find_image(id).await else {
            continue;
        };
        let common: Vec<Digest> = wanted
            .iter()
            .zip(&info.diff_ids)
            .take_while(|(a, b)| a.to_string() == **b)
            .map(|(a, _)| a.clone())
            .collect();
        if common.len() > best.len() {
            best = common;
        }
    }
    best.into_iter().collect()
}

/// Pushes to every reference (blobs first, manifest, then tags).
pub struct RegistrySink {
    client: Arc<registry::Client>,
    references: Vec<Reference>,
    blobs: registry::BlobStore,
}

impl RegistrySink {
    pub fn new(
        client: Arc<registry::Client>,
        references: Vec<Reference>,
        blobs: registry::BlobStore,
    ) -> RegistrySink {
        RegistrySink {
            client,
            references,
            blobs,
        }
    }

    async fn publish(
        &self,
        image: Arc<dyn Image>,
        reporter: &Arc<dyn Reporter>,
        ids: &Ids,
    ) -> anyhow::Result<Published> {
        let (progress, started) = self.start(reporter, ids);
        let pushed = self
            .client
            .push_with_report(image.as_ref(), &self.references, &self.blobs, &progress)
            .await;
        let report = Self::finish(&progress, started, pushed)?;
        Ok(Published {
            digest: report.digest.unwrap_or_else(|| image.digest()),
            config_digest: image.config_descriptor().digest().clone(),
            destination: self.names(),
        })
    }

    /// Pushes every image of `index` by digest, then the index under each tag.
    async fn publish_index(
        &self,
        index: &oci::PlatformIndex,
        reporter: &Arc<dyn Reporter>,
        ids: &Ids,
    ) -> anyhow::Result<Published> {
        let (progress, started) = self.start(reporter, ids);
        let pushed = self
            .client
            .push_index(index, &self.references, &self.blobs, &progress)
            .await;
        let report = Self::finish(&progress, started, pushed)?;
        Ok(Published {
            digest: report.digest.unwrap_or_else(|| index.digest()),
            config_digest: index.digest(),
            destination: self.names(),
        })
    }

    fn names(&self) -> String {
        self.references
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The push's vertex in the progress display.
    fn start(&self, reporter: &Arc<dyn Reporter>, ids: &Ids) -> (PushProgress, Instant) {
        let id = ids.next();
        reporter.started(id, &format!("pushing {}", self.names()));
        let progress = PushProgress {
            reporter: reporter.clone(),
            id,
        };
        (progress, Instant::now())
    }

    /// Ends the push's vertex with its blob counts.
    fn finish(
        progress: &PushProgress,
        started: Instant,
        pushed: Result<registry::PushReport, registry::Error>,
    ) -> anyhow::Result<registry::PushReport> {
        let (reporter, id) = (&progress.reporter, progress.id);
        match pushed {
            Ok(report) => {
                reporter.log(
                    id,
                    &format!(
                        "{} blobs uploaded ({}), {} mounted, {} already there",
                        report.uploaded,
                        indicatif::HumanBytes(report.bytes_uploaded),
                        report.mounted,
                        report.already_present
                    ),
                );
                reporter.done(id, started.elapsed());
                Ok(report)
            }
            Err(e) => {
                reporter.failed(id, started.elapsed());
                Err(e.into())
            }
        }
    }
}

/// Registry transfer events shown as log lines of the push vertex.
struct PushProgress {
    reporter: Arc<dyn Reporter>,
    id: usize,
}

impl registry::Progress for PushProgress {
    fn on_blob_done(&self, digest: &Digest, outcome: &registry::BlobOutcome) {
        let short = digest.digest().get(..12).unwrap_or_default();
        let what = match outcome {
            registry::BlobOutcome::Cached | registry::BlobOutcome::Downloaded => return,
            registry::BlobOutcome::AlreadyPresent => "already there".to_owned(),
            registry::BlobOutcome::Mounted { from } => format!("mounted from {from}"),
            registry::BlobOutcome::Uploaded => "uploaded".to_owned(),
        };
        self.reporter.log(self.id, &format!("blob {short}: {what}"));
    }

    fn on_retry(&self, request: &str, attempt: u32, delay: std::time::Duration, reason: &str) {
        self.reporter.log(
            self.id,
            &format!(
                "retrying {request} (attempt {attempt}, in {:.1}s): {reason}",
                delay.as_secs_f64()
            ),
        );
    }
}

/// Writes `--iidfile` and `--metadata-file` as docker build and BuildKit do.
pub struct Recorder {
    pub iidfile: Option<PathBuf>,
    pub metadata_file: Option<PathBuf>,
    /// The image goes to the engine and nowhere else: it has no manifest to name.
    pub only_to_engine: bool,
}

impl Recorder {
    /// What `request` asks to be recorded.
    pub fn for_request(request: &PublishRequest) -> Recorder {
        Recorder {
            iidfile: request.iidfile.clone(),
            metadata_file: request.metadata_file.clone(),
            only_to_engine: request.only_to_engine(),
        }
    }

    pub fn record(
        &self,
        image: &dyn Image,
        tags: &[String],
        pushed: Option<&Digest>,
    ) -> anyhow::Result<()> {
        let config = image.config_descriptor();
        if let Some(path) = &self.iidfile {
            write_atomically(path, config.digest().to_string().as_bytes())?;
        }
        let Some(path) = &self.metadata_file else {
            return Ok(());
        };
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            "containerimage.config.digest".into(),
            config.digest().to_string().into(),
        );
        let digest = pushed
            .cloned()
            .unwrap_or_else(|| name_of(image, self.only_to_engine));
        metadata.insert("containerimage.digest".into(), digest.to_string().into());
        // BuildKit's engine export writes no descriptor: the engine keeps no manifest.
        if !self.only_to_engine {
            // BuildKit annotates the descriptor with the config digest and the config's
            // creation time. (buildx also writes `buildx.build.ref`, the id of a build in a
            // buildx builder's history: imgbuild has no builder, so it has no such key.)
            let mut annotations = serde_json::Map::new();
            annotations.insert("config.digest".into(), config.digest().to_string().into());
            if let Some(created) = config_created(image.raw_config()) {
                annotations.insert("org.opencontainers.image.created".into(), created.into());
            }
            metadata.insert(
                "containerimage.descriptor".into(),
                serde_json::json!({
                    "annotations": annotations,
                    "mediaType": image.manifest_media_type(),
                    "digest": digest.to_string(),
                    "size": image.raw_manifest().len(),
                }),
            );
        }
        // As BuildKit, only when the image has names.
        if !tags.is_empty() {
            metadata.insert("image.name".into(), tags.join(",").into());
        }
        write_metadata(path, &metadata.into())
    }

    /// As [`Recorder::record`], for a multi-platform index: BuildKit writes the index's
    /// digest as the image ID and as `containerimage.digest`.
    pub fn record_index(
        &self,
        index: &oci::PlatformIndex,
        tags: &[String],
        pushed: Option<&Digest>,
    ) -> anyhow::Result<()> {
        let digest = pushed.cloned().unwrap_or_else(|| index.digest());
        if let Some(path) = &self.iidfile {
            write_atomically(path, digest.to_string().as_bytes())?;
        }
        if let Some(path) = &self.metadata_file {
            let mut metadata = serde_json::json!({
                "containerimage.digest": digest.to_string(),
                "containerimage.descriptor": {
                    "mediaType": index.media_type(),
                    "digest": digest.to_string(),
                    "size": index.raw().len(),
                },
            });
            if !tags.is_empty() {
                metadata["image.name"] = tags.join(",").into();
            }
            write_metadata(path, &metadata)?;
        }
        Ok(())
    }
}

/// Writes `--metadata-file` as BuildKit does: indented JSON and a newline.
fn write_metadata(path: &Path, metadata: &serde_json::Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(metadata)?;
    text.push(b'\n');
    write_atomically(path, &text)
}

/// The `created` time of an image config, as the config states it.
fn config_created(raw_config: &[u8]) -> Option<String> {
    let config: serde_json::Value = serde_json::from_slice(raw_config).ok()?;
    config.get("created")?.as_str().map(str::to_owned)
}

/// Writes a small file through a temporary name, so a reader never sees half of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut temp, bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_has_buildkits_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.json");
        let image = oci::scratch(&oci::Platform::linux_amd64(), 86400).unwrap();
        let recorder = Recorder {
            iidfile: None,
            metadata_file: Some(path.clone()),
            only_to_engine: false,
        };
        recorder
            .record(image.as_ref(), &["a:1".into(), "b:2".into()], None)
            .unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let config = image.config_descriptor().digest().to_string();
        let digest = image.digest().to_string();
        assert_eq!(written["containerimage.config.digest"], config.as_str());
        assert_eq!(written["containerimage.digest"], digest.as_str());
        assert_eq!(written["image.name"], "a:1,b:2");
        let descriptor = &written["containerimage.descriptor"];
        assert_eq!(descriptor["digest"], digest.as_str());
        assert_eq!(descriptor["mediaType"], image.manifest_media_type());
        assert_eq!(descriptor["size"], image.raw_manifest().len());
        assert_eq!(descriptor["annotations"]["config.digest"], config.as_str());
        assert_eq!(
            descriptor["annotations"]["org.opencontainers.image.created"],
            "1970-01-02T00:00:00Z"
        );
    }

    /// An image that only goes to the engine has no manifest there: it is named by its
    /// image ID, and no descriptor is written, as BuildKit's engine export does. With no
    /// tag, there is no `image.name`.
    #[test]
    fn metadata_of_an_image_only_for_the_engine_names_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.json");
        let image = oci::scratch(&oci::Platform::linux_amd64(), 86400).unwrap();
        let recorder = Recorder {
            iidfile: Some(dir.path().join("iid")),
            metadata_file: Some(path.clone()),
            only_to_engine: true,
        };
        recorder.record(image.as_ref(), &[], None).unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let id = image.config_descriptor().digest().to_string();
        assert_ne!(id, image.digest().to_string());
        assert_eq!(
            written,
            serde_json::json!({
                "containerimage.config.digest": id,
                "containerimage.digest": id,
            })
        );
        assert_eq!(std::fs::read_to_string(dir.path().join("iid")).unwrap(), id);
    }

    #[test]
    fn only_an_image_for_the_engine_alone_is_named_by_its_id() {
        let image = oci::scratch(&oci::Platform::linux_amd64(), 0).unwrap();
        let id = image.config_descriptor().digest().clone();
        let cases = [
            (vec![], false, true),
            (vec![Output::Engine], false, true),
            (vec![], true, false),
            (vec![Output::Engine], true, false),
            (
                vec![Output::Engine, Output::OciDir("out".into())],
                false,
                false,
            ),
            (vec![Output::OciDir("out".into())], false, false),
            (vec![Output::CacheOnly], false, false),
        ];
        for (outputs, push, by_id) in cases {
            let request = PublishRequest {
                tags: Vec::new(),
                outputs: outputs.clone(),
                push,
                compression: oci::Compression::Gzip,
                source_date_epoch: 0,
                iidfile: None,
                metadata_file: None,
                registry: registry::RegistryOptions::default(),
                platform: oci::Platform::linux_amd64(),
                platform_asked: false,
                progress: crate::progress::Mode::Plain,
                annotations: Default::default(),
                multi_platform: None,
            };
            let expected = match by_id {
                true => id.clone(),
                false => image.digest(),
            };
            assert_eq!(
                request.names_image(image.as_ref()),
                expected,
                "{outputs:?} push={push}"
            );
            assert_eq!(Recorder::for_request(&request).only_to_engine, by_id);
        }
    }
}
