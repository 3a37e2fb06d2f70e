//! What the packaging stage needs to know of the filesystem it writes onto: the type,
//! mode and owner of each path (so a COPY into an existing directory keeps that
//! directory's metadata, and `COPY file /dir` lands inside `/dir`), and the image's own
//! `/etc/passwd` and `/etc/group` (for `--chown`). Built by reading the base image's layers
//! once, whiteouts honoured, then kept up to date with the layers the build adds.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::oci::Image;
use crate::oci::changeset;
use crate::oci::layer::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::oci::manifest::uncompressed_layer;
pub use crate::oci::rootpath::{Node, Resolution, ResolveError, Resolved, resolve};
use crate::oci::rootpath::{join, normalize, split};

/// Files whose contents are kept while scanning (small, and needed for `--chown`).
const KEPT_FILES: &[&str] = &["/etc/passwd", "/etc/group"];
/// Kept files larger than this (a hostile or broken image) are not held in memory; `--chown`
/// by name then fails as if the file were missing.
pub(crate) const ACCOUNT_FILE_LIMIT: u64 = 16 << 20;

/// An image's file system being read by [`ImageFs::read_ahead`].
pub struct ReadAhead {
    /// The manifest digest of the image being read.
    digest: String,
    thread: std::thread::JoinHandle<anyhow::Result<ImageFs>>,
}

impl ReadAhead {
    /// Whether this reads `image`.
    pub fn reads(&self, image: &dyn Image) -> bool {
        self.digest == image.digest().to_string()
    }

    /// Waits for the read to end.
    pub fn wait(self) -> anyhow::Result<ImageFs> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("reading the image's file system ended in a panic"))?
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// Type, permission bits and owner of a path in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileMeta {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

/// The merged view of an image's layers.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct ImageFs {
    entries: HashMap<String, FileMeta>,
    files: HashMap<String, Vec<u8>>,
    /// Symlink targets, as stored: writes go through the image's links, as in a container.
    links: HashMap<String, String>,
    /// Where the kept files' symlinks lead (`/etc/passwd -> /data/passwd`): kept too.
    #[serde(default)]
    kept_targets: Vec<String>,
}

impl changeset::PathTree for ImageFs {
    fn holds_dir(&self, path: &str) -> bool {
        self.entries.get(path).is_some_and(|m| m.kind == Kind::Dir)
    }

    fn holds(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    fn remove_where(&mut self, exact: Option<&str>, prefix: &str) {
        let kept = |p: &String| Some(p.as_str()) != exact && !p.starts_with(prefix);
        self.entries.retain(|p, _| kept(p));
        self.files.retain(|p, _| kept(p));
        self.links.retain(|p, _| kept(p));
    }

    fn add_parent(&mut self, dir: &str) {
        self.entries.insert(
            dir.to_owned(),
            FileMeta {
                kind: Kind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
        );
    }
}

impl ImageFs {
    /// Reads every layer of `image`, bottom to top. Blobs are verified as they are read.
    pub fn of_image(image: &dyn Image) -> anyhow::Result<ImageFs> {
        let fs = Self::read_layers(image, Vec::new())?;
        // A kept file that is a symlink (`/etc/passwd -> /data/accounts/passwd`): which
        // file it leads to is known only now, so the layers are read again for it.
        let targets: Vec<String> = KEPT_FILES
            .iter()
            .filter(|kept| !fs.files.contains_key(**kept))
            .filter_map(|kept| fs.resolve(kept, true).ok())
            .filter(|resolved| resolved.node == Some(Node::Other))
            .map(|resolved| resolved.path)
            .collect();
        match targets.is_empty() {
            true => Ok(fs),
            false => Self::read_layers(image, targets),
        }
    }

    fn read_layers(image: &dyn Image, kept_targets: Vec<String>) -> anyhow::Result<ImageFs> {
        let mut fs = ImageFs {
            kept_targets,
            ..ImageFs::default()
        };
        for layer in image.layers() {
            let blob = image
                .open_blob(layer.digest())
                .with_context(|| format!("reading layer {}", layer.digest()))?;
            let reader = uncompressed_layer(layer.media_type(), blob)?;
            fs.apply_layer(reader)
                .with_context(|| format!("reading layer {}", layer.digest()))?;
        }
        Ok(fs)
    }

    /// [`Self::of_image`], remembered per image in `cache_dir` (an image's file system
    /// never changes for a digest, and reading every layer of a base costs seconds).
    pub fn of_image_cached(
        image: &dyn Image,
        cache_dir: &std::path::Path,
    ) -> anyhow::Result<ImageFs> {
        // v2: symlink targets are kept. v3: what kept files' symlinks lead to is kept.
        let dir = cache_dir.join("fs-index-v3");
        let path = dir.join(format!("{}.json", image.digest().digest()));
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(fs) = serde_json::from_slice::<ImageFs>(&bytes)
        {
            return Ok(fs);
        }
        let fs = ImageFs::of_image(image)?;
        // The index is an optimisation: failing to store it only costs time next build.
        if std::fs::create_dir_all(&dir).is_ok()
            && let Ok(bytes) = serde_json::to_vec(&fs)
        {
            let _ = crate::publish::write_atomically(&path, &bytes);
        }
        Ok(fs)
    }

    /// Starts [`Self::of_image_cached`] on a thread of its own, for a step that will need
    /// it later: in a cold build of the Elixir showcase, reading the runner base (37 MiB
    /// compressed) took 0.5 s after the last build step; read while the build stage's
    /// commands run, it is ready when the packaging stage starts.
    pub fn read_ahead(image: Arc<dyn Image>, cache_dir: PathBuf) -> ReadAhead {
        let digest = image.digest().to_string();
        let thread =
            std::thread::spawn(move || ImageFs::of_image_cached(image.as_ref(), &cache_dir));
        ReadAhead { digest, thread }
    }

    /// Applies one uncompressed layer: its whiteouts hide lower paths, its entries replace
    /// them.
    pub fn apply_layer(&mut self, reader: impl Read) -> anyhow::Result<()> {
        let mut archive = tar::Archive::new(reader);
        let mut added: Vec<(String, FileMeta)> = Vec::new();
        let mut hidden: Vec<String> = Vec::new();
        let mut opaque: Vec<String> = Vec::new();
        let mut contents: Vec<(String, Vec<u8>)> = Vec::new();
        let mut links: Vec<(String, String)> = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = entry.path_bytes().into_owned();
            let Some(path) = normalize(&String::from_utf8_lossy(&raw)) else {
                continue;
            };
            let (dir, name) = split(&path);
            if name == OPAQUE_WHITEOUT {
                opaque.push(dir.to_owned());
                continue;
            }
            if let Some(hidden_name) = name.strip_prefix(WHITEOUT_PREFIX) {
                hidden.push(join(dir, hidden_name));
                continue;
            }
            let header = entry.header();
            let kind = match header.entry_type() {
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Link => {
                    Kind::File
                }
                tar::EntryType::Symlink => Kind::Symlink,
                _ => Kind::Other,
            };
            let meta = FileMeta {
                kind,
                mode: header.mode().unwrap_or(0o644) & 0o7777,
                uid: header.uid().unwrap_or(0),
                gid: header.gid().unwrap_or(0),
            };
            if (KEPT_FILES.contains(&path.as_str()) || self.kept_targets.contains(&path))
                && header.entry_type() == tar::EntryType::Regular
                && entry.size() <= ACCOUNT_FILE_LIMIT
            {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                contents.push((path.clone(), data));
            }
            if kind == Kind::Symlink
                && let Some(target) = entry.link_name_bytes()
            {
                links.push((path.clone(), String::from_utf8_lossy(&target).into_owned()));
            }
            added.push((path, meta));
        }
        changeset::apply_deletions(self, &opaque, &hidden);
        for (path, meta) in added {
            changeset::prepare_entry(self, &path, meta.kind == Kind::Dir);
            self.files.remove(&path);
            self.links.remove(&path);
            self.entries.insert(path, meta);
        }
        for (path, data) in contents {
            self.files.insert(path, data);
        }
        self.links.extend(links);
        Ok(())
    }

    /// Metadata of an absolute path, `None` if the image does not have it.
    pub fn stat(&self, path: &str) -> Option<FileMeta> {
        if path == "/" {
            return Some(self.entries.get("/").copied().unwrap_or(FileMeta {
                kind: Kind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
            }));
        }
        self.entries.get(path.trim_end_matches('/')).copied()
    }

    pub fn is_dir(&self, path: &str) -> bool {
        self.stat(path).is_some_and(|m| m.kind == Kind::Dir)
    }

    /// What [`resolve`] needs to know of one path (no parent of it is a symlink).
    pub fn node(&self, path: &str) -> Option<Node> {
        let meta = self.stat(path)?;
        Some(match meta.kind {
            Kind::Dir => Node::Dir,
            Kind::Symlink => Node::Symlink(self.links.get(path).cloned().unwrap_or_default()),
            Kind::File | Kind::Other => Node::Other,
        })
    }

    /// `path` resolved through the image's symlinks, as a process in a container sees it.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<Resolved, ResolveError> {
        match resolve(path, follow_last, &mut |p| Some(self.node(p))) {
            Ok(Resolution::Done(resolved)) => Ok(resolved),
            Ok(Resolution::Need(_)) => unreachable_need(),
            Err(e) => Err(e),
        }
    }

    /// Whether `path` is a directory once its symlinks are followed.
    pub fn is_dir_followed(&self, path: &str) -> bool {
        self.resolve(path, true)
            .is_ok_and(|r| r.node == Some(Node::Dir))
    }

    /// Where directory `path` really is, its symlinks followed within the root (missing
    /// directories below it included); `None` when something else than a directory is
    /// there, or the path cannot be resolved.
    pub fn real_dir(&self, path: &str) -> Option<String> {
        self.resolve(path, true)
            .ok()
            .filter(|r| matches!(r.node, None | Some(Node::Dir)))
            .map(|r| r.path)
    }

    /// `/etc/passwd` or `/etc/group` as text, if the image has them, through the symlink
    /// either may be.
    pub fn text_file(&self, path: &str) -> Option<String> {
        let data = match self.files.get(path) {
            Some(data) => data,
            None => self.files.get(&self.resolve(path, true).ok()?.path)?,
        };
        Some(String::from_utf8_lossy(data).into_owned())
    }

    /// Records what a layer the build wrote adds, without reading it back.
    pub fn record(&mut self, path: &str, meta: FileMeta) {
        if let Some(path) = normalize(path) {
            self.entries.insert(path, meta);
        }
    }

    /// Records the contents of a kept file the build wrote.
    pub fn record_contents(&mut self, path: &str, data: Vec<u8>) {
        if let Some(path) = normalize(path)
            && KEPT_FILES.contains(&path.as_str())
        {
            self.files.insert(path, data);
        }
    }
}

/// [`ImageFs`] knows every path, so its probe never asks for more.
fn unreachable_need() -> Result<Resolved, ResolveError> {
    Err(ResolveError::Loop(
        "(internal: a path the image's index lacks)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, tar::EntryType, u64, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, uid, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_uid(*uid);
            h.set_gid(*uid);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_read_ahead_gives_the_images_file_system_and_is_remembered() {
        use crate::oci::{self, Compression, LayerBuilder, LayerOptions, Platform};
        let dir = tempfile::tempdir().unwrap();
        let store = oci::BlobStore::open(dir.path().join("blobs")).unwrap();
        let mut builder = LayerBuilder::new(store, LayerOptions::new(Compression::Gzip, 0));
        let meta = crate::oci::layer::EntryMeta {
            mode: 0o644,
            owner: crate::oci::layer::Ownership::ROOT,
        };
        builder
            .add_bytes("/etc/passwd", &b"root:x:0:0::/root:/bin/sh\n"[..], meta)
            .unwrap();
        let base = oci::scratch(&Platform::linux_amd64(), 0).unwrap();
        let config = base.config().unwrap();
        let image: Arc<dyn Image> =
            Arc::new(oci::append_layers(base, &[builder.write().unwrap()], config).unwrap());
        let other = oci::scratch(&Platform::linux_amd64(), 0).unwrap();

        let cache = dir.path().join("cache");
        let reading = ImageFs::read_ahead(image.clone(), cache.clone());
        assert!(reading.reads(image.as_ref()));
        assert!(!reading.reads(other.as_ref()));
        let fs = reading.wait().unwrap();
        assert_eq!(fs.stat("/etc/passwd").map(|m| m.kind), Some(Kind::File));
        assert_eq!(
            fs.text_file("/etc/passwd").as_deref(),
            Some("root:x:0:0::/root:/bin/sh\n")
        );
        // Stored for the next build, as `of_image_cached` stores it.
        assert_eq!(
            std::fs::read_dir(cache.join("fs-index-v3"))
                .unwrap()
                .count(),
            1
        );
    }

    /// `/etc/passwd` and `/etc/group` as symlinks, made in a later layer than the files
    /// they lead to: their contents are read through the links, as BuildKit reads them.
    #[test]
    fn account_files_are_read_through_their_symlinks() {
        use crate::oci::{self, Compression, LayerBuilder, LayerOptions, Platform};
        let dir = tempfile::tempdir().unwrap();
        let store = oci::BlobStore::open(dir.path().join("blobs")).unwrap();
        let meta = crate::oci::layer::EntryMeta {
            mode: 0o644,
            owner: crate::oci::layer::Ownership::ROOT,
        };
        let mut files = LayerBuilder::new(store.clone(), LayerOptions::new(Compression::Gzip, 0));
        files
            .add_bytes(
                "/data/accounts/passwd",
                &b"app:x:4321:8765::/:/bin/sh\n"[..],
                meta,
            )
            .unwrap();
        files
            .add_bytes("/data/accounts/group", &b"appgrp:x:8765:\n"[..], meta)
            .unwrap();
        let mut links = LayerBuilder::new(store, LayerOptions::new(Compression::Gzip, 0));
        let root = crate::oci::layer::Ownership::ROOT;
        links
            .add_symlink("/etc/passwd", "/data/accounts/passwd", root)
            .unwrap();
        links
            .add_symlink("/etc/group", "../data/accounts/group", root)
            .unwrap();
        let base = oci::scratch(&Platform::linux_amd64(), 0).unwrap();
        let config = base.config().unwrap();
        let layers = [files.write().unwrap(), links.write().unwrap()];
        let image = oci::append_layers(base, &layers, config).unwrap();
        let fs = ImageFs::of_image(&image).unwrap();
        assert_eq!(
            fs.text_file("/etc/passwd").as_deref(),
            Some("app:x:4321:8765::/:/bin/sh\n")
        );
        assert_eq!(
            fs.text_file("/etc/group").as_deref(),
            Some("appgrp:x:8765:\n")
        );
    }

    #[test]
    fn a_file_over_a_directory_hides_what_was_below_it_and_a_file_over_a_file_nothing_else() {
        use tar::EntryType::{Directory as D, Regular as F};
        let mut fs = ImageFs::default();
        fs.apply_layer(&layer(&[("d/", D, 0, b""), ("d/x", F, 0, b"x"), ("f", F, 0, b"1")])[..])
            .unwrap();
        fs.apply_layer(&layer(&[("d", F, 0, b"now a file"), ("f", F, 0, b"2")])[..])
            .unwrap();
        assert_eq!(fs.stat("/d").map(|m| m.kind), Some(Kind::File));
        assert_eq!(fs.stat("/d/x"), None);
        assert_eq!(fs.stat("/f").map(|m| m.kind), Some(Kind::File));
    }

    #[test]
    fn layers_merge_with_whiteouts() {
        use tar::EntryType::{Directory as D, Regular as F};
        let mut fs = ImageFs::default();
        fs.apply_layer(
            &layer(&[
                ("etc/", D, 0, b""),
                ("etc/passwd", F, 0, b"root:x:0:0::/root:/bin/sh\n"),
                ("app/", D, 65534, b""),
                ("app/old", F, 0, b"x"),
                ("tmp/a/b", F, 0, b""),
            ])[..],
        )
        .unwrap();
        assert!(fs.is_dir("/app"));
        assert_eq!(fs.stat("/app").map(|m| m.uid), Some(65534));
        assert!(fs.text_file("/etc/passwd").unwrap().starts_with("root:"));
        fs.apply_layer(
            &layer(&[
                ("app/.wh..wh..opq", F, 0, b""),
                ("app/new", F, 0, b""),
                ("tmp/.wh.a", F, 0, b""),
            ])[..],
        )
        .unwrap();
        assert!(fs.stat("/app/old").is_none());
        assert!(fs.stat("/app/new").is_some());
        assert!(fs.is_dir("/app"), "an opaque whiteout keeps its directory");
        assert!(fs.stat("/tmp/a").is_none() && fs.stat("/tmp/a/b").is_none());
        fs.apply_layer(&layer(&[("etc/.wh.passwd", F, 0, b"")])[..])
            .unwrap();
        assert_eq!(fs.text_file("/etc/passwd"), None);
        assert!(fs.is_dir("/"));
    }

    fn debian() -> ImageFs {
        use tar::EntryType::{Directory as D, Regular as F};
        let mut fs = ImageFs::default();
        fs.apply_layer(
            &layer(&[
                ("usr/", D, 0, b""),
                ("usr/bin/", D, 0, b""),
                ("usr/lib/", D, 0, b""),
                ("usr/share/zoneinfo/Etc/UTC", F, 0, b""),
                ("etc/", D, 0, b""),
                ("etc/hosts", F, 0, b""),
            ])[..],
        )
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (name, target) in [
            ("bin", "usr/bin"),
            ("lib", "/usr/lib"),
            ("lib64", "lib"),
            ("etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
            ("loop", "loop"),
            ("up", "../../../usr"),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        }
        fs.apply_layer(&b.into_inner().unwrap()[..]).unwrap();
        fs
    }

    #[test]
    fn paths_resolve_through_the_images_symlinks() {
        let fs = debian();
        let r = fs.resolve("/bin/x", true).unwrap();
        assert_eq!((r.path.as_str(), r.node), ("/usr/bin/x", None));
        assert_eq!(r.missing, ["/usr/bin/x"]);
        // Absolute targets stay in the root; chains of links are followed.
        let r = fs.resolve("/lib64/a/b/", true).unwrap();
        assert_eq!(r.path, "/usr/lib/a/b");
        assert_eq!(r.missing, ["/usr/lib/a", "/usr/lib/a/b"]);
        assert!(fs.is_dir_followed("/bin") && !fs.is_dir("/bin"));
        let r = fs.resolve("/etc/localtime", true).unwrap();
        assert_eq!(r.path, "/usr/share/zoneinfo/Etc/UTC");
        assert_eq!(r.node, Some(Node::Other));
        let r = fs.resolve("/etc/localtime", false).unwrap();
        assert_eq!(
            r.node,
            Some(Node::Symlink("/usr/share/zoneinfo/Etc/UTC".into()))
        );
        // `..` never leaves the root.
        assert_eq!(fs.resolve("/up/bin", true).unwrap().path, "/usr/bin");
        assert_eq!(fs.resolve("/", true).unwrap().node, Some(Node::Dir));
        assert!(matches!(
            fs.resolve("/etc/hosts/x", true),
            Err(ResolveError::NotADirectory(p)) if p == "/etc/hosts"
        ));
        assert!(matches!(
            fs.resolve("/loop/x", true),
            Err(ResolveError::Loop(_))
        ));
    }

    #[test]
    fn resolving_asks_for_what_it_does_not_know() {
        let mut asked = Vec::new();
        let got = resolve("/bin/x", true, &mut |p| {
            asked.push(p.to_owned());
            match p {
                "/bin" => Some(Some(Node::Symlink("/usr/bin".into()))),
                "/usr" | "/usr/bin" => Some(Some(Node::Dir)),
                _ => None,
            }
        })
        .unwrap();
        assert_eq!(got, Resolution::Need("/usr/bin/x".into()));
        assert_eq!(asked, ["/bin", "/usr", "/usr/bin", "/usr/bin/x"]);
    }
}
