//! Reads an image from a Docker archive (`docker save`, imgbuild's `type=docker` output)
//! and flattens its layers into one file tree, the way a container's root filesystem sees
//! them: layers applied in order, `.wh.NAME` whiteouts and `.wh..wh..opq` opaque
//! directories removing what lower layers had, hard links sharing their target's inode.
//!
//! The base layers (a prefix of the image's diff_ids that a known base image has) are
//! flattened once per machine and kept on disk, keyed by their diff_ids, so a case reads
//! only the layers its build added.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One path of a flattened image. mtimes are left out on purpose: they are not compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `file`, `dir`, `symlink`, `char`, `block` or `fifo` (a hard link is a `file`).
    pub kind: String,
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Content length of a file; 0 for everything else.
    pub size: u64,
    /// sha256 of a file's content, hex.
    pub sha256: Option<String>,
    /// A symlink's target.
    pub link: Option<String>,
    /// A file's content when it is short text, only to show in a diff (the hash compares).
    pub text: Option<String>,
}

/// A path's entry and inode; paths that share an inode are hard links of each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Node {
    entry: Entry,
    ino: u64,
}

/// A flattened root filesystem: path (relative, no leading `/`; the root itself is left
/// out) to entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    next_ino: u64,
}

/// An image read from a Docker archive.
#[derive(Debug)]
pub struct Image {
    /// The image config (`config`, `rootfs`, `history`…).
    pub config: serde_json::Value,
    pub tree: Tree,
}

impl Tree {
    /// The tree of one tar (a flattened file system, `--output type=tar`).
    pub fn from_tar(tar: impl Read) -> Result<Tree, String> {
        let mut tree = Tree::default();
        tree.apply(tar)?;
        Ok(tree)
    }

    /// The tree under a directory (`--output type=local`), its own root left out.
    pub fn from_dir(root: &Path) -> Result<Tree, String> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut tree = Tree::default();
        let mut inodes: HashMap<(u64, u64), u64> = HashMap::new();
        let mut pending = vec![String::new()];
        while let Some(dir) = pending.pop() {
            let entries = std::fs::read_dir(root.join(&dir))
                .map_err(|e| format!("{}: {e}", root.join(&dir).display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("{dir}: {e}"))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                let full = root.join(&path);
                let meta = std::fs::symlink_metadata(&full).map_err(|e| format!("{path}: {e}"))?;
                let t = meta.file_type();
                let kind = match () {
                    _ if t.is_dir() => "dir",
                    _ if t.is_file() => "file",
                    _ if t.is_symlink() => "symlink",
                    _ if t.is_char_device() => "char",
                    _ if t.is_block_device() => "block",
                    _ if t.is_fifo() => "fifo",
                    _ => return Err(format!("{path}: a socket")),
                };
                let (mut size, mut sha256, mut text, mut link) = (0, None, None, None);
                if kind == "file" {
                    let content = std::fs::read(&full).map_err(|e| format!("{path}: {e}"))?;
                    size = content.len() as u64;
                    sha256 = Some(hex::encode(Sha256::digest(&content)));
                    if content.len() <= 400 {
                        text = String::from_utf8(content).ok();
                    }
                } else if kind == "symlink" {
                    let target = std::fs::read_link(&full).map_err(|e| format!("{path}: {e}"))?;
                    link = Some(target.to_string_lossy().into_owned());
                } else if kind == "dir" {
                    pending.push(path.clone());
                }
                let next = tree.next_ino;
                let ino = *inodes.entry((meta.dev(), meta.ino())).or_insert(next);
                if ino == next {
                    tree.next_ino += 1;
                }
                let entry = Entry {
                    kind: kind.to_owned(),
                    mode: meta.mode() & 0o7777,
                    uid: u64::from(meta.uid()),
                    gid: u64::from(meta.gid()),
                    size,
                    sha256,
                    link,
                    text,
                };
                tree.nodes.insert(path, Node { entry, ino });
            }
        }
        Ok(tree)
    }

    pub fn paths(&self) -> impl Iterator<Item = &String> {
        self.nodes.keys()
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.nodes.get(path).map(|n| &n.entry)
    }

    /// The hard-link group of every path whose inode has another path, shown as its
    /// sorted paths (`/a, /b`): the same text on both sides of a comparison.
    pub fn link_groups(&self) -> HashMap<&str, String> {
        let mut by_ino: HashMap<u64, Vec<&str>> = HashMap::new();
        for (path, node) in &self.nodes {
            by_ino.entry(node.ino).or_default().push(path);
        }
        let mut groups = HashMap::new();
        for mut paths in by_ino.into_values().filter(|p| p.len() > 1) {
            paths.sort_unstable();
            let shown = paths
                .iter()
                .map(|p| format!("/{p}"))
                .collect::<Vec<_>>()
                .join(", ");
            for path in paths {
                groups.insert(path, shown.clone());
            }
        }
        groups
    }

    /// Removes `path`'s descendants (not `path`).
    fn remove_below(&mut self, path: &str) {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let below: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p.clone())
            .collect();
        for p in below {
            self.nodes.remove(&p);
        }
    }

    fn remove(&mut self, path: &str) {
        self.nodes.remove(path);
        self.remove_below(path);
    }

    /// Applies one layer (an uncompressed tar stream).
    fn apply(&mut self, layer: impl Read) -> Result<(), String> {
        let members = read_members(layer)?;
        // Whiteouts and opaque markers remove what the layers below have, whatever their
        // order in this layer's tar.
        for member in &members {
            match member {
                Member::Whiteout(path) => self.remove(path),
                Member::Opaque(dir) => self.remove_below(dir),
                Member::Add { .. } | Member::HardLink { .. } => {}
            }
        }
        for member in members {
            match member {
                Member::Whiteout(_) | Member::Opaque(_) => {}
                Member::Add { path, entry } => {
                    let keeps_children = entry.kind == "dir"
                        && self.nodes.get(&path).is_some_and(|n| n.entry.kind == "dir");
                    if !keeps_children {
                        self.remove(&path);
                    }
                    let ino = self.next_ino;
                    self.next_ino += 1;
                    self.nodes.insert(path, Node { entry, ino });
                }
                Member::HardLink { path, target } => {
                    let node = self.nodes.get(&target).cloned().ok_or_else(|| {
                        format!("hard link {path} to {target}, which no layer has")
                    })?;
                    self.remove(&path);
                    self.nodes.insert(path, node);
                }
            }
        }
        Ok(())
    }
}

enum Member {
    Whiteout(String),
    Opaque(String),
    Add { path: String, entry: Entry },
    HardLink { path: String, target: String },
}

/// A layer path as the tree keys it: no `./`, no leading or trailing `/`.
fn normalise(path: &Path) -> String {
    path.to_string_lossy()
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn read_members(layer: impl Read) -> Result<Vec<Member>, String> {
    let mut archive = tar::Archive::new(layer);
    let mut members = Vec::new();
    for entry in archive.entries().map_err(|e| format!("layer tar: {e}"))? {
        let mut entry = entry.map_err(|e| format!("layer tar entry: {e}"))?;
        let path = normalise(&entry.path().map_err(|e| format!("tar path: {e}"))?);
        if path.is_empty() {
            continue;
        }
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (dir.to_owned(), name.to_owned()),
            None => (String::new(), path.clone()),
        };
        if name == ".wh..wh..opq" {
            members.push(Member::Opaque(dir));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let hidden = if dir.is_empty() {
                hidden.to_owned()
            } else {
                format!("{dir}/{hidden}")
            };
            members.push(Member::Whiteout(hidden));
            continue;
        }
        let header = entry.header();
        let link = entry
            .link_name()
            .map_err(|e| format!("{path}: link name: {e}"))?
            .map(|l| l.to_string_lossy().into_owned());
        let kind = match header.entry_type() {
            tar::EntryType::Link => {
                let target = normalise(Path::new(&link.unwrap_or_default()));
                members.push(Member::HardLink { path, target });
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "block",
            tar::EntryType::Fifo => "fifo",
            other => return Err(format!("{path}: unexpected tar entry type {other:?}")),
        };
        let mode = header.mode().map_err(|e| format!("{path}: mode: {e}"))? & 0o7777;
        let uid = header.uid().map_err(|e| format!("{path}: uid: {e}"))?;
        let gid = header.gid().map_err(|e| format!("{path}: gid: {e}"))?;
        let (mut size, mut sha256, mut text) = (0, None, None);
        if kind == "file" {
            let mut content = Vec::new();
            entry
                .read_to_end(&mut content)
                .map_err(|e| format!("{path}: content: {e}"))?;
            size = content.len() as u64;
            sha256 = Some(hex::encode(Sha256::digest(&content)));
            if content.len() <= 400 {
                text = String::from_utf8(content).ok();
            }
        }
        let link = (kind == "symlink").then_some(link).flatten();
        members.push(Member::Add {
            path,
            entry: Entry {
                kind: kind.to_owned(),
                mode,
                uid,
                gid,
                size,
                sha256,
                link,
                text,
            },
        });
    }
    Ok(members)
}

/// Part of a kept base tree's name: change it when what the flattener records changes.
const TREE_FORMAT: &str = "tree-v2";

/// Where a member's data lies in the archive file.
struct Span {
    offset: u64,
    size: u64,
}

/// Reads the image of a Docker archive. `bases` are the diff_id lists of base images whose
/// flattened trees may be kept in `base_cache`.
pub fn read_docker_archive(
    archive: &Path,
    bases: &[Vec<String>],
    base_cache: &Path,
) -> Result<Image, String> {
    let shown = archive.display();
    let file = File::open(archive).map_err(|e| format!("{shown}: {e}"))?;
    let mut tar = tar::Archive::new(file);
    let mut spans = HashMap::new();
    for entry in tar
        .entries_with_seek()
        .map_err(|e| format!("{shown}: {e}"))?
    {
        let entry = entry.map_err(|e| format!("{shown}: {e}"))?;
        let name = normalise(&entry.path().map_err(|e| format!("{shown}: {e}"))?);
        let span = Span {
            offset: entry.raw_file_position(),
            size: entry.size(),
        };
        spans.insert(name, span);
    }
    let member = |name: &str| -> Result<std::io::Take<File>, String> {
        let span = spans
            .get(&normalise(Path::new(name)))
            .ok_or_else(|| format!("{shown} has no {name}"))?;
        let mut file = File::open(archive).map_err(|e| format!("{shown}: {e}"))?;
        file.seek(SeekFrom::Start(span.offset))
            .map_err(|e| format!("{shown}: {e}"))?;
        Ok(file.take(span.size))
    };
    let manifest: serde_json::Value = serde_json::from_reader(member("manifest.json")?)
        .map_err(|e| format!("{shown}: manifest.json: {e}"))?;
    let manifest = manifest
        .get(0)
        .ok_or_else(|| format!("{shown}: manifest.json lists no image"))?;
    let config_name = manifest["Config"]
        .as_str()
        .ok_or_else(|| format!("{shown}: manifest.json has no Config"))?;
    let config: serde_json::Value = serde_json::from_reader(member(config_name)?)
        .map_err(|e| format!("{shown}: {config_name}: {e}"))?;
    let layers: Vec<&str> = manifest["Layers"]
        .as_array()
        .map(|l| l.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != layers.len() {
        return Err(format!(
            "{shown}: {} layers but {} diff_ids",
            layers.len(),
            diff_ids.len()
        ));
    }
    let apply = |tree: &mut Tree, index: usize| -> Result<(), String> {
        let layer = decompressed(member(layers[index])?)
            .map_err(|e| format!("{shown}: layer {}: {e}", layers[index]))?;
        tree.apply(layer)
            .map_err(|e| format!("{shown}: layer {}: {e}", layers[index]))
    };
    // The longest known base this image starts with.
    let base_len = bases
        .iter()
        .filter(|base| !base.is_empty() && diff_ids.starts_with(base))
        .map(Vec::len)
        .max()
        .unwrap_or(0);
    let mut tree = if base_len > 0 {
        let cached = base_cache.join(format!(
            "{TREE_FORMAT}-{}.json",
            hex::encode(Sha256::digest(diff_ids[..base_len].join("\n")))
        ));
        match load_tree(&cached) {
            Some(tree) => tree,
            None => {
                let mut tree = Tree::default();
                for index in 0..base_len {
                    apply(&mut tree, index)?;
                }
                store_tree(&cached, &tree)?;
                tree
            }
        }
    } else {
        Tree::default()
    };
    for index in base_len..layers.len() {
        apply(&mut tree, index)?;
    }
    Ok(Image { config, tree })
}

/// A layer blob as an uncompressed tar stream: gzip, zstd or plain, by its magic bytes.
fn decompressed(blob: impl Read + 'static) -> std::io::Result<Box<dyn Read>> {
    let mut reader = BufReader::new(blob);
    let head = reader.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::Decoder::with_buffer(reader)?)
    } else {
        Box::new(reader)
    })
}

fn load_tree(path: &Path) -> Option<Tree> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes the tree under a temporary name and renames it, so parallel trials never read a
/// half-written file.
fn store_tree(path: &Path, tree: &Tree) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let temporary: PathBuf = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let bytes = serde_json::to_vec(tree).map_err(|e| format!("base tree: {e}"))?;
    std::fs::write(&temporary, bytes).map_err(|e| format!("{}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The flattener's own tests run as trials of the harness (it has no libtest `#[test]`).
pub type SelfTest = fn() -> Result<(), String>;

/// The flattener's own tests, by name.
pub fn self_tests() -> Vec<(&'static str, SelfTest)> {
    vec![
        ("whiteout", self_test_whiteout),
        ("opaque-dir", self_test_opaque),
        ("hard-links", self_test_hard_links),
        ("file-replaces-dir", self_test_file_replaces_dir),
    ]
}

/// A layer tar: (path, kind, mode, uid, content or link target).
fn layer(members: &[(&str, tar::EntryType, u32, u64, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for &(path, kind, mode, uid, data) in members {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(uid);
        let body: &[u8] = if kind == tar::EntryType::Regular {
            data.as_bytes()
        } else {
            if kind.is_hard_link() || kind.is_symlink() {
                header.set_link_name(data).unwrap_or_default();
            }
            &[]
        };
        header.set_size(body.len() as u64);
        builder
            .append_data(&mut header, path, body)
            .unwrap_or_else(|e| panic!("test layer {path}: {e}"));
    }
    builder
        .into_inner()
        .unwrap_or_else(|e| panic!("test layer: {e}"))
}

fn flattened(layers: &[Vec<u8>]) -> Result<Tree, String> {
    let mut tree = Tree::default();
    for layer in layers {
        tree.apply(layer.as_slice())?;
    }
    Ok(tree)
}

fn expect_paths(tree: &Tree, expected: &[&str]) -> Result<(), String> {
    let paths: Vec<&str> = tree.paths().map(String::as_str).collect();
    if paths == expected {
        Ok(())
    } else {
        Err(format!("paths {paths:?}, expected {expected:?}"))
    }
}

use tar::EntryType::{Directory as D, Link as L, Regular as F};

fn self_test_whiteout() -> Result<(), String> {
    let tree = flattened(&[
        layer(&[
            ("a/", D, 0o755, 0, ""),
            ("a/x", F, 0o644, 0, "x"),
            ("a/y", F, 0o644, 0, "y"),
        ]),
        layer(&[("a/.wh.x", F, 0o644, 0, "")]),
    ])?;
    expect_paths(&tree, &["a", "a/y"])
}

fn self_test_opaque() -> Result<(), String> {
    let tree = flattened(&[
        layer(&[
            ("a/", D, 0o755, 0, ""),
            ("a/x", F, 0o644, 0, "x"),
            ("a/d/", D, 0o755, 0, ""),
        ]),
        // The marker after the layer's own entry: it hides only the lower layers' files.
        layer(&[
            ("a/", D, 0o700, 7, ""),
            ("a/z", F, 0o644, 0, "z"),
            ("a/.wh..wh..opq", F, 0o644, 0, ""),
        ]),
    ])?;
    expect_paths(&tree, &["a", "a/z"])?;
    match tree.get("a") {
        Some(e) if e.mode == 0o700 && e.uid == 7 => Ok(()),
        other => Err(format!("a is {other:?}, expected mode 0700 owner 7")),
    }
}

fn self_test_hard_links() -> Result<(), String> {
    let tree = flattened(&[
        layer(&[
            ("f", F, 0o4755, 5, "data"),
            ("g", L, 0, 0, "f"),
            ("h", F, 0o644, 0, "data"),
        ]),
        // A link to a lower layer's file, and a later replacement that leaves the group.
        layer(&[("k", L, 0, 0, "./f")]),
        layer(&[("g", F, 0o644, 0, "new")]),
    ])?;
    let groups = tree.link_groups();
    let group = |p: &str| groups.get(p).cloned().unwrap_or_default();
    if group("f") != "/f, /k"
        || group("k") != "/f, /k"
        || groups.contains_key("g")
        || groups.contains_key("h")
    {
        return Err(format!("hard-link groups {groups:?}, expected /f, /k only"));
    }
    match tree.get("k") {
        Some(e) if e.mode == 0o4755 && e.uid == 5 && e.size == 4 => Ok(()),
        other => Err(format!(
            "k is {other:?}, expected f's mode 4755, owner 5, size 4"
        )),
    }
}

fn self_test_file_replaces_dir() -> Result<(), String> {
    let tree = flattened(&[
        layer(&[("a/", D, 0o755, 0, ""), ("a/x", F, 0o644, 0, "x")]),
        layer(&[("a", F, 0o644, 0, "now a file")]),
    ])?;
    expect_paths(&tree, &["a"])
}
