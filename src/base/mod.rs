//! Base images without Docker Hub: `imgbuild base build base-images/NAME`.
//!
//! ```text
//! image.toml ─► Recipe ─► debootstrap ─► apt-mark, locale-gen ─► minimise, slim, strip ─► one layer + config
//!  (recipe)               (rootfs)       (chrooted)              (slim)                    (oci::LayerBuilder)
//! ```
//!
//! * [`recipe`]: the recipe format and its checks.
//! * `rootfs`: debootstrap and chrooted commands in private mount namespaces; the epoch
//!   from the suite's `Release` file.
//! * `slim`: Debian's container-image configuration, the slim variant, and the removal of
//!   what differs between builds.
//! * `workdir`: the build directory under the cache directory, deleted safely.
//!
//! The same recipe and the same Debian snapshot give the same image digest: every
//! timestamp is clamped to the `Date:` of the suite's `Release` file (or
//! `--source-date-epoch`), and the layer writer normalises everything else.

pub mod recipe;
mod rootfs;
mod slim;
mod workdir;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};

pub use recipe::{BUILDER_LABEL, RECIPE_LABEL, Recipe};
pub use rootfs::{check_host, fetch_release_epoch};

use crate::oci::{
    self, AddOptions, Compression, Image, ImageConfig, LayerBuilder, LayerOptions, Platform,
    layer::Walk,
};
use crate::progress::{Ids, Reporter};
use workdir::WorkDir;

/// The sources of this module, hashed into [`BUILDER_LABEL`] so that a change to how base
/// images are made is seen as a change of the image (`scripts/base-images` rebuilds).
/// Sorted by file name, as the script hashes them; a test checks the list is complete.
const BUILDER_SOURCES: &[(&str, &str)] = &[
    ("mod.rs", include_str!("mod.rs")),
    ("recipe.rs", include_str!("recipe.rs")),
    ("rootfs.rs", include_str!("rootfs.rs")),
    ("slim.rs", include_str!("slim.rs")),
    ("workdir.rs", include_str!("workdir.rs")),
];

/// sha256 (hex) of the concatenated sources of this module: what
/// `cat src/base/*.rs | sha256sum` prints.
pub fn builder_sha256() -> String {
    let all: String = BUILDER_SOURCES.iter().map(|(_, text)| *text).collect();
    oci::sha256_digest(all.as_bytes()).digest().to_owned()
}

/// How to build, beyond the recipe.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The build directory goes under `CACHE/base-build/`.
    pub cache_dir: PathBuf,
    /// Timestamps of files and of the image.
    pub epoch: i64,
    /// `epoch` is the `Date:` of the suite's Release file as fetched before the build: the
    /// build checks that debootstrap saw the same file (the mirror may publish a new one
    /// in between).
    pub epoch_from_release: bool,
    pub compression: Compression,
    pub platform: Platform,
}

/// A built base image; its layer blob lives in the build directory until
/// [`BaseImage::remove`] (or drop).
pub struct BaseImage {
    pub image: Arc<dyn Image>,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    workdir: WorkDir,
}

impl BaseImage {
    /// Deletes the build directory (the layer blob) once the image is published.
    pub fn remove(self) -> anyhow::Result<()> {
        self.workdir.remove()
    }
}

/// Builds the image of `recipe`. Needs root (see [`check_host`]); blocks for minutes.
pub fn build(
    recipe: &Recipe,
    options: &BuildOptions,
    reporter: &Arc<dyn Reporter>,
    ids: &Ids,
) -> anyhow::Result<BaseImage> {
    let workdir = WorkDir::create(&options.cache_dir, &recipe.name)?;
    let result = build_in(&workdir, recipe, options, reporter, ids);
    // The root filesystem goes whatever happened (the layer blob is kept for publishing).
    let cleanup = workdir.remove_rootfs();
    let (layer, config) = match (result, cleanup) {
        (Ok(built), Ok(())) => built,
        (Err(e), _) => {
            // A failure to clean up is dropped: the build's own error is the one to report.
            let _ = workdir.remove();
            return Err(e);
        }
        (Ok(_), Err(e)) => return Err(e),
    };
    let base = oci::scratch(&options.platform, options.epoch)?;
    let compressed_size = layer.descriptor.size();
    let uncompressed_size = layer.uncompressed_size;
    let image = oci::append_layers(base, std::slice::from_ref(&layer), config)?;
    Ok(BaseImage {
        image: Arc::new(image),
        compressed_size,
        uncompressed_size,
        workdir,
    })
}

/// The steps, each shown as one progress vertex.
fn build_in(
    workdir: &WorkDir,
    recipe: &Recipe,
    options: &BuildOptions,
    reporter: &Arc<dyn Reporter>,
    ids: &Ids,
) -> anyhow::Result<(oci::WrittenLayer, ImageConfig)> {
    let rootfs = workdir.rootfs();
    let step = |n: usize, name: &str| {
        let id = ids.next();
        reporter.started(id, &format!("[base {} {n}/4] {name}", recipe.name));
        (id, Instant::now())
    };
    let finish = |(id, started): (usize, Instant), result: anyhow::Result<()>| {
        match &result {
            Ok(()) => reporter.done(id, started.elapsed()),
            Err(_) => reporter.failed(id, started.elapsed()),
        }
        result
    };

    let vertex = step(1, &recipe.describe());
    let runner = rootfs::Runner {
        reporter,
        id: vertex.0,
        epoch: options.epoch,
        architecture: &options.platform.architecture,
    };
    let result = runner.debootstrap(recipe, &rootfs).and_then(|()| {
        let found = rootfs::release_epoch_in(&rootfs, &recipe.suite)?;
        if options.epoch_from_release && found != options.epoch {
            bail!(
                "the mirror published a new {} Release while this build ran (dated {} \
                 before, {} now); run the build again",
                recipe.suite,
                oci::rfc3339(options.epoch)?,
                oci::rfc3339(found)?
            );
        }
        reporter.log(
            vertex.0,
            &format!("{} Release dated {}", recipe.suite, oci::rfc3339(found)?),
        );
        Ok(())
    });
    finish(vertex, result)?;

    let vertex = step(
        2,
        "configure: apt-mark, locales, container apt/dpkg settings",
    );
    let runner = rootfs::Runner {
        reporter,
        id: vertex.0,
        epoch: options.epoch,
        architecture: &options.platform.architecture,
    };
    let result = (|| {
        // As in Debian's images: every package is automatically installed except the
        // recipe's, so `apt-get autoremove` can tell what a user may remove.
        runner.chroot(&rootfs, &["apt-mark", "auto", ".*"])?;
        if !recipe.packages.is_empty() {
            let mut args = vec!["apt-mark".to_owned(), "manual".to_owned()];
            args.extend(recipe.packages.iter().cloned());
            runner.chroot(&rootfs, &args)?;
        }
        if !recipe.locales.is_empty() {
            slim::enable_locales(&rootfs, &recipe.path, &recipe.locales)?;
            runner.chroot(&rootfs, &["locale-gen"])?;
        }
        slim::write_minimizing_config(&rootfs)
    })();
    finish(vertex, result)?;

    let what = if recipe.strip_docs {
        "strip: docs, man pages, translations, logs, caches, host files"
    } else {
        "strip: logs, caches, host files"
    };
    let vertex = step(3, what);
    let result = (|| {
        if recipe.strip_docs {
            slim::slimify(&rootfs)?;
        }
        slim::strip_volatile(&rootfs, options.epoch)
    })();
    finish(vertex, result)?;

    let vertex = step(4, "write the layer");
    let id = vertex.0;
    let mut written = None;
    let result = (|| {
        let store = oci::BlobStore::open(workdir.blobs())?;
        let layer_options = LayerOptions::new(options.compression, options.epoch);
        let mut builder = LayerBuilder::new(store, layer_options);
        let add = AddOptions {
            dest: "/".into(),
            exact_modes: true,
            ..AddOptions::default()
        };
        builder
            .add_dir_filtered(&rootfs, &add, |rel, _| {
                // The engine mounts its own /dev, /proc and /sys: their directories stay,
                // their contents (device nodes debootstrap made) do not.
                let mut parts = rel.components();
                let top = parts.next().map(|c| c.as_os_str());
                let below = parts.next().is_some();
                match top {
                    Some(t) if below && (t == "dev" || t == "proc" || t == "sys") => Walk::Prune,
                    _ => Walk::Include,
                }
            })
            .context("reading the root filesystem")?;
        let entries = builder.len();
        let layer = builder.write().context("writing the layer")?;
        reporter.log(
            id,
            &format!(
                "{entries} entries, {} ({} uncompressed), {}",
                indicatif::HumanBytes(layer.descriptor.size()),
                indicatif::HumanBytes(layer.uncompressed_size),
                layer.descriptor.digest()
            ),
        );
        written = Some(layer);
        Ok(())
    })();
    finish(vertex, result)?;
    let layer = written.context("the layer step wrote no layer")?;
    Ok((layer, image_config(recipe, options)?))
}

/// The config: the recipe's env (PATH first), cmd, user, workdir and labels, the recipe
/// and builder hashes, and one history entry describing the recipe.
fn image_config(recipe: &Recipe, options: &BuildOptions) -> anyhow::Result<ImageConfig> {
    let mut config = ImageConfig::new(&options.platform, options.epoch)?;
    config.set_env(recipe.env.iter().map(|(k, v)| format!("{k}={v}")).collect());
    config.set_cmd(recipe.cmd.clone());
    config.set_user(recipe.user.clone());
    config.set_working_dir(recipe.workdir.clone());
    for (key, value) in &recipe.labels {
        config.set_label(key, value);
    }
    config.set_label(RECIPE_LABEL, &recipe.sha256);
    config.set_label(BUILDER_LABEL, &builder_sha256());
    config.push_history(
        &format!("imgbuild base build {}: {}", recipe.name, recipe.describe()),
        false,
    )?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sources_list_every_file_of_the_module() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/base");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".rs"))
            .collect();
        names.sort();
        let listed: Vec<&str> = BUILDER_SOURCES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, listed);
        for (name, text) in BUILDER_SOURCES {
            assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), *text);
        }
    }

    #[test]
    fn the_config_carries_the_recipe() {
        let recipe = Recipe::parse(
            "t",
            std::path::Path::new("image.toml"),
            "[debian]\nsuite = \"bookworm\"\n[image]\ntag = \"a/b:c\"\n\
             env = { LANG = \"C.UTF-8\" }\ncmd = [\"bash\"]\nworkdir = \"/app\"\n",
        )
        .unwrap();
        let options = BuildOptions {
            cache_dir: PathBuf::from("/nonexistent"),
            epoch: 1_700_000_000,
            epoch_from_release: true,
            compression: Compression::Gzip,
            platform: Platform::linux_amd64(),
        };
        let config = image_config(&recipe, &options).unwrap();
        assert_eq!(
            config.env()[0],
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        );
        assert_eq!(config.env()[1], "LANG=C.UTF-8");
        assert_eq!(config.cmd(), Some(vec!["bash".to_owned()]));
        assert_eq!(config.working_dir().as_deref(), Some("/app"));
        assert_eq!(config.labels().get(RECIPE_LABEL), Some(&recipe.sha256));
        assert_eq!(config.labels().get(BUILDER_LABEL), Some(&builder_sha256()));
        assert_eq!(config.created(), Some("2023-11-14T22:13:20Z"));
        let history = config.history().unwrap();
        assert_eq!(history.len(), 1);
        assert!(
            history[0]
                .created_by()
                .as_deref()
                .is_some_and(|c| c.contains("debootstrap --variant=minbase bookworm"))
        );
    }
}
