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

/// One entry as it is written: its tar name and, for the second and later members of a
/// hard-link group, the name of the member that carries the data.
pub(super) struct Ordered {
    pub name: Vec<u8>,
    pub entry: Entry,
    pub link_to: Option<Vec<u8>>,
}

#[derive(Default)]
pub(super) struct EntryMap {
    entries: BTreeMap<Vec<u8>, Entry>,
    next_link_group: u64,
}

impl EntryMap {
    pub fn new_link_group(&mut self) -> u64 {
        self.next_link_group += 1;
        self.next_link_group
    }

    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn get_mut(&mut self, path: &[u8]) -> Option<&mut Entry> {
        self.entries.get_mut(path)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Puts `entry` at `path` (non-empty, normalised), replacing what was there. A directory
    /// keeps what is below it; anything else removes it.
    pub fn insert(&mut self, path: Vec<u8>, entry: Entry) {
        if !entry.is_dir() {
            self.remove_below(&path);
        }
        self.entries.insert(path, entry);
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
        if path.is_empty() || self.entries.get(path).is_some_and(Entry::is_dir) {
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

    fn remove_below(&mut self, path: &[u8]) {
        let mut prefix = path.to_vec();
        prefix.push(b'/');
        let below: Vec<Vec<u8>> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            self.entries.remove(&k);
        }
    }

    /// All entries in the order they are written: sorted by tar name (directories end in
    /// `/`), so parents come before children, except that an opaque whiteout comes right after
    /// its directory, before its siblings, as the OCI spec asks. Missing parent directories
    /// are added first with `parent_meta`.
    pub fn into_ordered(mut self, parent_meta: &Meta) -> Vec<Ordered> {
        let paths: Vec<Vec<u8>> = self.entries.keys().cloned().collect();
        for path in &paths {
            self.ensure_parents(path, parent_meta);
        }
        let mut keyed: Vec<(Vec<u8>, Vec<u8>, Entry)> = self
            .entries
            .into_iter()
            .map(|(path, entry)| {
                let mut name = path;
                if entry.is_dir() {
                    name.push(b'/');
                }
                (sort_key(&name), name, entry)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));

        let mut link_holders: HashMap<u64, Vec<u8>> = HashMap::new();
        keyed
            .into_iter()
            .map(|(_, name, entry)| {
                let link_to = match &entry.kind {
                    Kind::File {
                        link_group: Some(group),
                        ..
                    } => match link_holders.get(group) {
                        Some(holder) => Some(holder.clone()),
                        None => {
                            link_holders.insert(*group, name.clone());
                            None
                        }
                    },
                    _ => None,
                };
                Ordered {
                    name,
                    entry,
                    link_to,
                }
            })
            .collect()
    }
}

/// The order key of a tar name: the name itself, except that `DIR/.wh..wh..opq` sorts as
/// `DIR/` followed by a NUL byte, i.e. before any sibling.
fn sort_key(name: &[u8]) -> Vec<u8> {
    let (dir, base) = match name.iter().rposition(|&b| b == b'/') {
        Some(pos) => (
            name.get(..=pos).unwrap_or_default(),
            name.get(pos + 1..).unwrap_or_default(),
        ),
        None => (&[][..], name),
    };
    if base == OPAQUE_WHITEOUT.as_bytes() {
        let mut key = dir.to_vec();
        key.push(0);
        key
    } else {
        name.to_vec()
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
        map.into_ordered(&Meta::synthetic(0o755, 0, 0))
            .into_iter()
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
        map.insert(b"d/.wh..wh..opq".to_vec(), file());
        map.insert(b"d/.wh.gone".to_vec(), file());
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
        let ordered = map.into_ordered(&Meta::synthetic(0o755, 0, 0));
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
        let ordered = map.into_ordered(&Meta::synthetic(0o755, 0, 0));
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
