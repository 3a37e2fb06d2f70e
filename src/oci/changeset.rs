//! A layer applied to a view of an image's file system kept as a map of paths, by the OCI
//! image spec's changeset rules: opaque directories and whiteouts delete what the layers
//! below put there, an entry that is not a directory hides a directory's tree where one
//! was, and parents a layer leaves out exist once it is extracted. Written once for the
//! readers that keep such views (`executor::ImageFs`, `check::libs::LinkView`), each with
//! its own record of a path.

/// A path-keyed view of a file system that layers are applied to.
pub trait PathTree {
    /// Whether `path` is in the view as a directory.
    fn holds_dir(&self, path: &str) -> bool;
    /// Whether `path` is in the view at all.
    fn holds(&self, path: &str) -> bool;
    /// Removes every path that starts with `prefix` (which ends in `/`), and `exact`.
    fn remove_where(&mut self, exact: Option<&str>, prefix: &str);
    /// Adds directory `dir`, which a layer left out above one of its entries.
    fn add_parent(&mut self, dir: &str);
}

/// Removes what a layer's opaque directories (`.wh..wh..opq`: everything below them) and
/// whiteouts (`.wh.NAME`: the path and its tree) hide, before its entries are added.
pub fn apply_deletions<T: PathTree>(tree: &mut T, opaque: &[String], whiteouts: &[String]) {
    for dir in opaque {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        tree.remove_where(None, &prefix);
    }
    for path in whiteouts {
        remove_tree(tree, path);
    }
}

/// Makes room for a layer's entry at `path`: an entry that is not a directory hides the
/// tree of a directory that was there (a walk over every path, so only when there was
/// one), and the parents the layer left out are added. The caller then adds the entry.
pub fn prepare_entry<T: PathTree>(tree: &mut T, path: &str, is_dir: bool) {
    if !is_dir && tree.holds_dir(path) {
        remove_tree(tree, path);
    }
    let mut parent = path;
    while let Some((dir, _)) = parent.rsplit_once('/').filter(|(d, _)| !d.is_empty()) {
        if tree.holds(dir) {
            break;
        }
        tree.add_parent(dir);
        parent = dir;
    }
}

fn remove_tree<T: PathTree>(tree: &mut T, path: &str) {
    tree.remove_where(Some(path), &format!("{path}/"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Paths with "dir" or "file".
    #[derive(Default)]
    struct Tree(BTreeMap<String, &'static str>);

    impl PathTree for Tree {
        fn holds_dir(&self, path: &str) -> bool {
            self.0.get(path) == Some(&"dir")
        }
        fn holds(&self, path: &str) -> bool {
            self.0.contains_key(path)
        }
        fn remove_where(&mut self, exact: Option<&str>, prefix: &str) {
            self.0
                .retain(|p, _| Some(p.as_str()) != exact && !p.starts_with(prefix));
        }
        fn add_parent(&mut self, dir: &str) {
            self.0.insert(dir.to_owned(), "dir");
        }
    }

    fn tree(paths: &[(&str, &'static str)]) -> Tree {
        Tree(paths.iter().map(|(p, k)| (p.to_string(), *k)).collect())
    }

    fn paths(tree: &Tree) -> Vec<&str> {
        tree.0.keys().map(String::as_str).collect()
    }

    #[test]
    fn opaque_directories_keep_themselves_and_whiteouts_take_their_tree() {
        let mut t = tree(&[
            ("/a", "dir"),
            ("/a/x", "file"),
            ("/ab", "file"),
            ("/b", "dir"),
            ("/b/y", "file"),
            ("/bc", "file"),
        ]);
        apply_deletions(&mut t, &["/a".into()], &["/b".into()]);
        assert_eq!(paths(&t), ["/a", "/ab", "/bc"]);
    }

    #[test]
    fn a_file_over_a_directory_hides_its_tree_and_missing_parents_are_made() {
        let mut t = tree(&[("/d", "dir"), ("/d/x", "file"), ("/f", "file")]);
        prepare_entry(&mut t, "/d", false);
        assert_eq!(paths(&t), ["/f"]);
        // Over a file nothing else goes; a directory over a directory keeps its tree.
        let mut t = tree(&[("/d", "dir"), ("/d/x", "file"), ("/dx", "file")]);
        prepare_entry(&mut t, "/dx", false);
        prepare_entry(&mut t, "/d", true);
        assert_eq!(paths(&t), ["/d", "/d/x", "/dx"]);
        prepare_entry(&mut t, "/n/e/w", false);
        assert_eq!(paths(&t), ["/d", "/d/x", "/dx", "/n", "/n/e"]);
    }
}
