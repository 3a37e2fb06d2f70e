//! An image's file system as a plain directory tree, for `--output type=local` and
//! `type=tar`: its layers applied bottom first to one directory (see [`apply::Target::Tree`]),
//! each checked against its diff ID.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use oci_spec::image::Digest;
use rustix::fs::{Mode, OFlags};

use super::apply::{self, TreeState};
use super::decode;
use super::error::{IoContext, Result};

/// A directory receiving an image's layers.
pub struct ImageTree {
    root: OwnedFd,
    state: TreeState,
}

/// The owners the layers gave a finished tree's paths; its files themselves belong to the
/// caller (as BuildKit's local export gives them).
#[derive(Debug, Default)]
pub struct TreeOwners(BTreeMap<Vec<u8>, (u32, u32)>);

impl TreeOwners {
    /// `(uid, gid)` of `rel` (relative to the tree's root, no `./`); root's for a parent
    /// no layer listed.
    pub fn get(&self, rel: &[u8]) -> (u32, u32) {
        self.0.get(rel).copied().unwrap_or((0, 0))
    }
}

impl ImageTree {
    /// Starts a tree in `root`, an empty directory.
    pub fn new(root: &Path) -> Result<ImageTree> {
        let root = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_path("opening", root)?;
        Ok(ImageTree {
            root,
            state: TreeState::default(),
        })
    }

    /// Applies the next layer (bottom first): its blob as stored, which must decode to
    /// `diff_id`.
    pub fn add_layer(
        &mut self,
        blob: impl Read + Send,
        encoding: crate::oci::Compression,
        diff_id: &Digest,
    ) -> Result<()> {
        let layer = diff_id.to_string();
        let state = &mut self.state;
        decode::unpack_blob(blob, encoding, &layer, |tar| {
            apply::apply_to_tree(self.root.as_fd(), tar, &layer, state)
        })?;
        Ok(())
    }

    /// Dates the directories, now that nothing more is written into them.
    pub fn finish(self) -> Result<TreeOwners> {
        self.state.set_dir_times(self.root.as_fd())?;
        Ok(TreeOwners(self.state.owners))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use tar::EntryType;

    use super::*;
    use crate::cache::snapshot::testutil::{TestEntry, TestTar, diff_id, require_root};

    /// The layers applied to a fresh directory `tmp/tree`.
    fn tree(layers: &[Vec<u8>]) -> (tempfile::TempDir, TreeOwners) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        fs::create_dir(&root).unwrap();
        let mut tree = ImageTree::new(&root).unwrap();
        for layer in layers {
            tree.add_layer(
                &layer[..],
                crate::oci::Compression::Uncompressed,
                &diff_id(layer),
            )
            .unwrap();
        }
        (tmp, tree.finish().unwrap())
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn whiteouts_remove_what_lower_layers_wrote_and_nothing_of_their_own() {
        require_root();
        let base = TestTar::new()
            .dir("etc/")
            .file("etc/group", b"root:x:0:\n")
            .file("etc/passwd", b"root\n")
            .dir("opt/")
            .file("opt/old", b"old")
            .dir("opt/sub/")
            .file("opt/sub/deep", b"deep")
            .dir("var/")
            .file("var/gone", b"x")
            .finish();
        let top = TestTar::new()
            .dir("etc/")
            .whiteout("etc/.wh.group")
            // This layer's own file at a whited-out name stays (the whiteout hides lower
            // layers only), whichever comes first.
            .file("etc/passwd", b"new\n")
            .whiteout("etc/.wh.passwd")
            .dir("opt/")
            .file("opt/new", b"new")
            .whiteout("opt/.wh..wh..opq")
            .whiteout("var/.wh.gone")
            .whiteout("nowhere/.wh.x")
            .finish();
        let (tmp, _) = tree(&[base, top]);
        let root = tmp.path().join("tree");
        assert_eq!(names(&root.join("etc")), ["passwd"]);
        assert_eq!(fs::read(root.join("etc/passwd")).unwrap(), b"new\n");
        assert_eq!(names(&root.join("opt")), ["new"]);
        assert!(names(&root.join("var")).is_empty());
        assert!(!root.join("nowhere").exists());
    }

    #[test]
    fn files_are_the_callers_and_the_layers_owners_are_recorded() {
        require_root();
        let base = TestTar::new()
            .add(TestEntry {
                uid: 1000,
                gid: 1001,
                mode: 0o4750,
                mtime: 1_234_567,
                data: b"x",
                ..TestEntry::new("app/run", EntryType::Regular)
            })
            .add(TestEntry {
                mtime: 7_654_321,
                ..TestEntry::new("app/", EntryType::Directory)
            })
            .finish();
        // A later layer writes into `app/` without listing it, and links to a lower file.
        let top = TestTar::new()
            .file("app/more", b"y")
            .hardlink("app/link", "app/run")
            .finish();
        let (tmp, owners) = tree(&[base, top]);
        let root = tmp.path().join("tree");
        let run = fs::metadata(root.join("app/run")).unwrap();
        assert_eq!((run.uid(), run.gid()), (0, 0));
        assert_eq!(run.permissions().mode() & 0o7777, 0o4750);
        assert_eq!(run.mtime(), 1_234_567);
        assert_eq!(run.nlink(), 2);
        assert_eq!(owners.get(b"app/run"), (1000, 1001));
        assert_eq!(owners.get(b"app/more"), (0, 0));
        // The directory keeps its own date although a later layer wrote into it.
        assert_eq!(fs::metadata(root.join("app")).unwrap().mtime(), 7_654_321);
    }

    #[test]
    fn a_layer_that_is_not_its_diff_id_is_refused() {
        require_root();
        let tmp = tempfile::tempdir().unwrap();
        let layer = TestTar::new().file("a", b"a").finish();
        let other = TestTar::new().file("b", b"b").finish();
        let mut tree = ImageTree::new(tmp.path()).unwrap();
        let err = tree
            .add_layer(
                &layer[..],
                crate::oci::Compression::Uncompressed,
                &diff_id(&other),
            )
            .err()
            .unwrap();
        assert!(err.to_string().contains("diff"), "{err}");
    }
}
