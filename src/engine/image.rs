//! Images in the engine: look one up, load an archive, tag, remove.

use std::collections::BTreeMap;

use bollard::models::ContainerConfig;
use bollard::query_parameters::{
    ImportImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use bytes::Bytes;
use futures_util::TryStreamExt;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncRead;

use super::Engine;
use super::error::{Error, Result, api_or_not_found, is_not_found};

/// An image the engine has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image id: the digest of its config (`sha256:…`).
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// The digests of its uncompressed layers (`rootfs.diff_ids`), base first.
    pub diff_ids: Vec<String>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub config: ImageConfig,
}

/// The parts of an image's config that a build reads and writes. Lists that the engine keeps
/// as sets (ports, volumes) are sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// `None`: not set (inherited); `Some(vec![])`: set to nothing.
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// Empty: not set.
    pub workdir: String,
    /// Empty: not set (root).
    pub user: String,
    pub labels: BTreeMap<String, String>,
    /// `80/tcp`, `53/udp`.
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    /// Empty: not set.
    pub stop_signal: String,
    pub shell: Option<Vec<String>>,
    pub on_build: Vec<String>,
}

impl ImageConfig {
    pub(crate) fn to_engine(&self) -> ContainerConfig {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let non_empty_list = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
        ContainerConfig {
            env: Some(self.env.clone()),
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            working_dir: non_empty(&self.workdir),
            user: non_empty(&self.user),
            labels: (!self.labels.is_empty()).then(|| {
                self.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            exposed_ports: non_empty_list(&self.exposed_ports),
            volumes: non_empty_list(&self.volumes),
            stop_signal: non_empty(&self.stop_signal),
            shell: self.shell.clone(),
            on_build: non_empty_list(&self.on_build),
            ..ContainerConfig::default()
        }
    }

    fn from_engine(config: bollard::models::ImageConfig) -> ImageConfig {
        let sorted = |v: Option<Vec<String>>| {
            let mut v = v.unwrap_or_default();
            v.sort();
            v
        };
        ImageConfig {
            env: config.env.unwrap_or_default(),
            cmd: config.cmd,
            entrypoint: config.entrypoint,
            workdir: config.working_dir.unwrap_or_default(),
            user: config.user.unwrap_or_default(),
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            exposed_ports: sorted(config.exposed_ports),
            volumes: sorted(config.volumes),
            stop_signal: config.stop_signal.unwrap_or_default(),
            shell: config.shell,
            on_build: config.on_build.unwrap_or_default(),
        }
    }
}

impl Engine {
    /// The image with this id (`sha256:…`, or a unique prefix) or reference (`name:tag`), or
    /// `None` when the engine does not have it.
    pub async fn find_image(&self, id_or_reference: &str) -> Result<Option<ImageInfo>> {
        let image = match self.docker.inspect_image(id_or_reference).await {
            Ok(image) => image,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => {
                return Err(Error::api(format!("inspect image {id_or_reference}"), err));
            }
        };
        Ok(Some(ImageInfo {
            id: image.id.unwrap_or_default(),
            repo_tags: image.repo_tags.unwrap_or_default(),
            repo_digests: image.repo_digests.unwrap_or_default(),
            diff_ids: image
                .root_fs
                .and_then(|root_fs| root_fs.layers)
                .unwrap_or_default(),
            os: image.os.unwrap_or_default(),
            architecture: image.architecture.unwrap_or_default(),
            variant: image.variant.filter(|v| !v.is_empty()),
            config: image
                .config
                .map(ImageConfig::from_engine)
                .unwrap_or_default(),
        }))
    }

    /// Loads a `docker save` archive (`manifest.json` and its files) and returns what the
    /// engine reports loaded: the tags of `RepoTags`, or the image id (`sha256:…`) of an image
    /// without tags. Layers the engine already has may be left out of the archive (still
    /// listed in `manifest.json`); see [`find_image`](Self::find_image)'s `diff_ids`.
    pub async fn load_archive<S>(&self, archive: S) -> Result<Vec<String>>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut messages = self
            .docker
            .import_image(options, bollard::body_try_stream(archive), None)
            .boxed();
        let mut loaded = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(|err| Error::api("load an image archive", err))?;
            if let Some(image) = message.stream.as_deref().and_then(loaded_image) {
                loaded.push(image.to_owned());
            }
        }
        if loaded.is_empty() {
            return Err(Error::Invalid(
                "the engine loaded the archive but named no image it loaded".into(),
            ));
        }
        Ok(loaded)
    }

    /// [`load_archive`](Self::load_archive) from a reader (a file, a pipe).
    pub async fn load_archive_from(
        &self,
        reader: impl AsyncRead + Send + 'static,
    ) -> Result<Vec<String>> {
        self.load_archive(tokio_util::io::ReaderStream::new(reader))
            .await
    }

    /// The image as a `docker save` archive: `manifest.json`, the config and one
    /// uncompressed `layer.tar` per layer (the build takes the layers it made from there).
    pub fn save_image(
        &self,
        image: &str,
    ) -> futures_util::stream::BoxStream<'static, Result<Bytes>> {
        let image_name = image.to_owned();
        self.docker
            .export_image(image)
            .map_err(move |err| Error::api(format!("save image {image_name}"), err))
            .boxed()
    }

    /// Points `reference` (`name`, `name:tag`, `host:port/name:tag`) at `image`.
    pub async fn tag(&self, image: &str, reference: &str) -> Result<()> {
        let (repo, tag) = split_reference(reference)?;
        let options = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        self.docker
            .tag_image(image, Some(options))
            .await
            .map_err(api_or_not_found(
                format!("tag {image} as {reference}"),
                || format!("image {image}"),
            ))
    }

    /// Removes an image reference (a tag, or an id with no other tags); the layers go when
    /// nothing else uses them. Returns `false` when the engine did not have it.
    pub async fn remove_image(&self, id_or_reference: &str) -> Result<bool> {
        let options = RemoveImageOptionsBuilder::default().build();
        match self
            .docker
            .remove_image(id_or_reference, Some(options), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => Err(Error::api(format!("remove image {id_or_reference}"), err)),
        }
    }
}

/// The image named by one of the engine's load messages.
fn loaded_image(message: &str) -> Option<&str> {
    let message = message.trim();
    message
        .strip_prefix("Loaded image ID: ")
        .or_else(|| message.strip_prefix("Loaded image: "))
        .map(str::trim)
        .filter(|image| !image.is_empty())
}

/// `host:5000/name:tag` → (`host:5000/name`, `tag`); no tag means `latest`.
fn split_reference(reference: &str) -> Result<(&str, &str)> {
    let invalid = |why: &str| {
        Err(Error::Invalid(format!(
            "cannot tag as `{reference}`: {why}"
        )))
    };
    if reference.is_empty() {
        return invalid("empty reference");
    }
    if reference.contains('@') {
        return invalid("a digest reference cannot be a tag");
    }
    let name_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    let (repo, tag) = match reference[name_start..].rfind(':') {
        Some(colon) => {
            let colon = name_start + colon;
            (&reference[..colon], &reference[colon + 1..])
        }
        None => (reference, "latest"),
    };
    if repo.is_empty() || tag.is_empty() {
        return invalid("expected NAME[:TAG]");
    }
    Ok((repo, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag_not_the_registry_port() {
        let split = |r| split_reference(r).ok();
        assert_eq!(split("app"), Some(("app", "latest")));
        assert_eq!(split("app:1.2"), Some(("app", "1.2")));
        assert_eq!(
            split("host:5000/team/app"),
            Some(("host:5000/team/app", "latest"))
        );
        assert_eq!(split("host:5000/app:dev"), Some(("host:5000/app", "dev")));
        for bad in ["", "app:", ":tag", "app@sha256:abc"] {
            assert!(split_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn load_messages_name_tags_or_ids() {
        assert_eq!(loaded_image("Loaded image: app:1\n"), Some("app:1"));
        assert_eq!(
            loaded_image("Loaded image ID: sha256:abc\n"),
            Some("sha256:abc")
        );
        assert_eq!(loaded_image("Loading layer 1/2"), None);
    }

    #[test]
    fn config_round_trips_through_the_engine_types() {
        let config = ImageConfig {
            env: vec!["A=1".into()],
            cmd: Some(vec!["run".into()]),
            entrypoint: Some(vec![]),
            workdir: "/app".into(),
            user: "1000:1000".into(),
            labels: BTreeMap::from([("k".into(), "v".into())]),
            exposed_ports: vec!["53/udp".into(), "80/tcp".into()],
            volumes: vec!["/data".into()],
            stop_signal: "SIGINT".into(),
            shell: Some(vec!["/bin/bash".into(), "-c".into()]),
            on_build: vec!["RUN x".into()],
        };
        let json = serde_json::to_value(config.to_engine()).unwrap_or_default();
        let back: bollard::models::ImageConfig =
            serde_json::from_value(json).expect("engine config parses as an image config");
        assert_eq!(ImageConfig::from_engine(back), config);
    }
}
