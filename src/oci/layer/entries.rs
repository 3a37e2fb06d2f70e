//! The entries of a layer before it is written: a map from normalised path to what goes
//! there, with overlay semantics (a later entry replaces an earlier one at the same path),
//! and the canonical order they are written in.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};

/// Normalised metadata of one entry (before the mtime is clamped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Meta {
    /// Permission and special bits (`0o7777`), never the file type.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Names carried over from a tar stream made inside the image; empty otherwise, so
    /// host user names never leak into a layer.
    pub uname: String,
    pub gname: String,
    pub mtime: i64,
}

impl Meta {
    /// Metadata of an entry imgbuild makes up: a parent directory, a whiteout.
    pub fn synthetic(mode: u32, uid: u64, gid: u64) -> Self {
        Meta {
            mode,
            uid,
            gid,
            uname: String::new(),
            gname: String::new(),
            // Clamped to the source date epoch when written.
            mtime: i64::MAX,
        }
    }
}

/// Where a regular file's content comes from.
#[derive(Debug, Clone)]
pub(super) enum Data {
    /// A file on disk, read when the layer is written.
    Disk(PathBuf),
    /// A file of the `n`th directory tree added: its path on disk is the tree's root joined
    /// with the entry's path below the tree's destination (kept this way, a layer of a
    /// million files does not hold a million host paths).
    Tree(u32),
    /// Bytes at this offset of the builder's spool file (content of a tar stream).
    Spool(u64),
    Bytes(Arc<[u8]>),
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// A regular file. Entries sharing a `link_group` are hard links to each other: the first
    /// in write order carries the data, the others are written as links to it.
    File {
        data: Data,
        size: u64,
        link_group: Option<u64>,
    },
    Dir,
    Symlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    /// `.wh.NAME` or `.wh..wh..opq`: an empty file that hides lower-layer content.
    Whiteout,
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub kind: Kind,
    pub meta: Meta,
    /// Extended attributes (e.g. `security.capability`) from tar streams.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir)
    }
}

/// A directory tree added to a layer.
pub(super) struct SourceTree {
    pub root: PathBuf,
    /// Where the tree lands in the layer (normalised, empty for the root).
    pub dest: Vec<u8>,
}

/// Where file contents come from when the layer is written.
#[derive(Default)]
pub(super) struct Sources {
    pub spool: Option<std::fs::File>,
    pub trees: Vec<SourceTree>,
}

impl Sources {
    /// The host path of a [`Data::Tree`] entry named `name` in the layer.
    pub fn tree_path(&self, tree: u32, name: &[u8]) -> Option<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let tree = self.trees.get(usize::try_from(tree).ok()?)?;
        let rel = if tree.dest.is_empty() {
            name
        } else {
            name.strip_prefix(tree.dest.as_slice())?
                .strip_prefix(b"/")?
        };
        Some(tree.root.join(std::ffi::OsStr::from_bytes(rel)))
    }
}

/// One entry as it is written: its tar name and, for the second and later members of a
/// hard-link group, the name of the member that carries the data.
pub(super) struct Ordered {
    pub name: Vec<u8>,
    pub entry: Entry,
    pub link_to: Option<Vec<u8>>,
}

/// Entries keyed by their place in the written layer, so the map's own order is the write
/// order and writing needs no second copy of the entries (a layer of a million files keeps
/// one). The key is the tar name (directories end in `/`), except that an opaque whiteout
/// `DIR/.wh..wh..opq` is keyed `DIR/` + NUL: right after its directory, before any
/// sibling, as the OCI spec asks. Parents always sort before their children.
#[derive(Default)]
pub(super) struct EntryMap {
    entries: BTreeMap<Vec<u8>, Entry>,
    next_link_group: u64,
}

fn dir_key(path: &[u8]) -> Vec<u8> {
    let mut key = path.to_vec();
    key.push(b'/');
    key
}

/// The key of an entry at `path` (normalised, no trailing `/`).
fn key_of(path: &[u8], entry: &Entry) -> Vec<u8> {
    if entry.is_dir() {
        return dir_key(path);
    }
    if matches!(entry.kind, Kind::Whiteout)
        && let Some(dir) = path.strip_suffix(OPAQUE_WHITEOUT.as_bytes())
        && (dir.is_empty() || dir.ends_with(b"/"))
    {
        let mut key = dir.to_vec();
        key.push(0);
        return key;
    }
    path.to_vec()
}

/// The tar name of a key (undoing the opaque whiteout's NUL).
fn name_of(mut key: Vec<u8>) -> Vec<u8> {
    if key.last() == Some(&0) {
        key.pop();
        key.extend_from_slice(OPAQUE_WHITEOUT.as_bytes());
    }
    key
}

impl EntryMap {
    pub fn new_link_group(&mut self) -> u64 {
        self.next_link_group += 1;
        self.next_link_group
    }

    /// The non-directory entry at `path`.
    pub fn get_file(&self, path: &[u8]) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn get_file_mut(&mut self, path: &[u8]) -> Option<&mut Entry> {
        self.entries.get_mut(path)
    }

    /// The entry at `path`, a directory or not.
    pub fn get_mut(&mut self, path: &[u8]) -> Option<&mut Entry> {
        if self.entries.contains_key(path) {
            return self.entries.get_mut(path);
        }
        self.entries.get_mut(&dir_key(path))
    }

    fn is_dir(&self, path: &[u8]) -> bool {
        self.entries.contains_key(&dir_key(path))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Puts `entry` at `path` (non-empty, normalised), replacing what was there. A directory
    /// keeps what is below it; anything else removes it.
    pub fn insert(&mut self, path: Vec<u8>, entry: Entry) {
        if entry.is_dir() {
            self.entries.remove(&path);
        } else {
            // The directory at `path` (if any) and everything below it.
            let prefix = dir_key(&path);
            let below: Vec<Vec<u8>> = self
                .entries
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone())
                .collect();
            for k in below {
                self.entries.remove(&k);
            }
            self.entries.remove(&path);
        }
        let key = key_of(&path, &entry);
        self.entries.insert(key, entry);
    }

    /// Makes sure every ancestor of `path` is a directory, adding missing ones with `meta`.
    /// Existing directories keep their own metadata; a non-directory in the way is replaced,
    /// as a later layer in an overlay would.
    pub fn ensure_parents(&mut self, path: &[u8], meta: &Meta) {
        let mut end = 0;
        while let Some(pos) = path
            .get(end..)
            .and_then(|rest| rest.iter().position(|&b| b == b'/'))
        {
            let parent = path.get(..end + pos).unwrap_or_default();
            self.ensure_dir(parent, meta);
            end += pos + 1;
        }
    }

    /// Makes sure `path` itself is a directory (see [`Self::ensure_parents`]).
    pub fn ensure_dir(&mut self, path: &[u8], meta: &Meta) {
        if path.is_empty() || self.is_dir(path) {
            return;
        }
        self.insert(
            path.to_vec(),
            Entry {
                kind: Kind::Dir,
                meta: meta.clone(),
                xattrs: Vec::new(),
            },
        );
    }

    /// All entries in write order (see [`EntryMap`]), consumed as they are written. Missing
    /// parent directories are added first with `parent_meta`.
    pub fn into_write_order(mut self, parent_meta: &Meta) -> WriteOrder {
        // Missing parents are rare (every source adds its own); collect only those.
        let mut missing: Vec<Vec<u8>> = Vec::new();
        for key in self.entries.keys() {
            let name = key.strip_suffix(b"/").unwrap_or(key);
            let mut end = name.len();
            while let Some(pos) = name
                .get(..end)
                .and_then(|p| p.iter().rposition(|&b| b == b'/'))
            {
                let parent = name.get(..pos).unwrap_or_default();
                if self.entries.contains_key(&dir_key(parent)) {
                    break;
                }
                missing.push(parent.to_vec());
                end = pos;
            }
        }
        for path in missing {
            self.ensure_dir(&path, parent_meta);
        }
        WriteOrder {
            entries: self.entries.into_iter(),
            link_holders: HashMap::new(),
        }
    }
}

pub(super) struct WriteOrder {
    entries: std::collections::btree_map::IntoIter<Vec<u8>, Entry>,
    link_holders: HashMap<u64, Vec<u8>>,
}

impl Iterator for WriteOrder {
    type Item = Ordered;

    fn next(&mut self) -> Option<Ordered> {
        let (key, entry) = self.entries.next()?;
        let name = name_of(key);
        let mut link_to = None;
        if let Kind::File {
            link_group: Some(group),
            ..
        } = &entry.kind
        {
            match self.link_holders.get(group) {
                Some(holder) => link_to = Some(holder.clone()),
                None => {
                    self.link_holders.insert(*group, name.clone());
                }
            }
        }
        Some(Ordered {
            name,
            entry,
            link_to,
        })
    }
}

/// Whether a base name is a whiteout (`.wh.NAME` or the opaque marker).
pub(super) fn is_whiteout_name(base: &[u8]) -> bool {
    base.starts_with(WHITEOUT_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Entry {
        Entry {
            kind: Kind::File {
                data: Data::Bytes(Arc::from(&b""[..])),
                size: 0,
                link_group: None,
            },
            meta: Meta::synthetic(0o644, 0, 0),
            xattrs: Vec::new(),
        }
    }

    fn dir() -> Entry {
        Entry {
            kind: Kind::Dir,
            meta: Meta::synthetic(0o755, 0, 0),
            xattrs: Vec::new(),
        }
    }

    fn names(map: EntryMap) -> Vec<String> {
        map.into_write_order(&Meta::synthetic(0o755, 0, 0))
            .map(|o| String::from_utf8(o.name).unwrap())
            .collect()
    }

    #[test]
    fn parents_come_first_and_missing_ones_are_added() {
        let mut map = EntryMap::default();
        map.insert(b"a/b/c".to_vec(), file());
        map.insert(b"a.txt".to_vec(), file());
        map.insert(b"a-c".to_vec(), file());
        assert_eq!(names(map), ["a-c", "a.txt", "a/", "a/b/", "a/b/c"]);
    }

    #[test]
    fn opaque_whiteout_comes_before_its_siblings() {
        let mut map = EntryMap::default();
        map.insert(b"d".to_vec(), dir());
        map.insert(b"d/-x".to_vec(), file());
        let whiteout = || Entry {
            kind: Kind::Whiteout,
            ..file()
        };
        map.insert(b"d/.wh..wh..opq".to_vec(), whiteout());
        map.insert(b"d/.wh.gone".to_vec(), whiteout());
        assert_eq!(names(map), ["d/", "d/.wh..wh..opq", "d/-x", "d/.wh.gone"]);
    }

    #[test]
    fn a_file_replacing_a_directory_removes_its_children() {
        let mut map = EntryMap::default();
        map.insert(b"d".to_vec(), dir());
        map.insert(b"d/x".to_vec(), file());
        map.insert(b"dx".to_vec(), file());
        map.insert(b"d".to_vec(), file());
        assert_eq!(names(map), ["d", "dx"]);
    }

    #[test]
    fn a_directory_replacing_a_directory_keeps_its_children() {
        let mut map = EntryMap::default();
        map.insert(b"d".to_vec(), dir());
        map.insert(b"d/x".to_vec(), file());
        let mut d = dir();
        d.meta.mode = 0o700;
        map.insert(b"d".to_vec(), d);
        let ordered: Vec<_> = map
            .into_write_order(&Meta::synthetic(0o755, 0, 0))
            .collect();
        assert_eq!(ordered.len(), 2);
        assert_eq!(ordered[0].entry.meta.mode, 0o700);
    }

    #[test]
    fn first_member_of_a_link_group_carries_the_data() {
        let mut map = EntryMap::default();
        let group = map.new_link_group();
        for name in ["z", "b", "m"] {
            let mut e = file();
            if let Kind::File { link_group, .. } = &mut e.kind {
                *link_group = Some(group);
            }
            map.insert(name.as_bytes().to_vec(), e);
        }
        let ordered: Vec<_> = map
            .into_write_order(&Meta::synthetic(0o755, 0, 0))
            .collect();
        let links: Vec<_> = ordered
            .iter()
            .map(|o| (o.name.clone(), o.link_to.clone()))
            .collect();
        assert_eq!(
            links,
            [
                (b"b".to_vec(), None),
                (b"m".to_vec(), Some(b"b".to_vec())),
                (b"z".to_vec(), Some(b"b".to_vec())),
            ]
        );
    }
}
