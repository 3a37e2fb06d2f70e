//! Lexical path handling: COPY sources relative to the context root, destinations in the
//! image, and the order of paths in a selection.

use std::cmp::Ordering;

/// A COPY source cleaned like BuildKit's `filepath.Join("/", src)`: `.` and empty
/// components dropped, `..` applied, a leading `/` meaning the context root. Returns the
/// components relative to the context root, or `None` when `..` climbs above the root.
///
/// BuildKit silently turns `../x` into `x`; the classic builder refused it ("forbidden path
/// outside the build context"). imgbuild refuses it too: a Dockerfile that names a file
/// outside the context almost always expects that file, not a namesake inside.
pub fn clean_source(src: &str) -> Option<Vec<String>> {
    let mut components: Vec<String> = Vec::new();
    for component in src.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                components.pop()?;
            }
            _ => components.push(component.to_owned()),
        }
    }
    Some(components)
}

/// A destination in the image: absolute, cleaned (`..` stops at `/`), without a trailing
/// `/` except for the root itself.
pub fn clean_dest(dest: &str) -> String {
    let mut components: Vec<&str> = Vec::new();
    for component in dest.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                components.pop();
            }
            _ => components.push(component),
        }
    }
    format!("/{}", components.join("/"))
}

/// `dir` + `/` + `name`, for slash-separated paths where `dir` may be empty (the context
/// root) or `/` (the image root).
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else if name.is_empty() {
        dir.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Compares slash-separated paths component by component, so a directory sorts right
/// before its contents (`/a`, `/a/b`, `/a-b`) and every parent before its children.
pub fn compare(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_relative_to_the_context_root() {
        let c = |s: &str| clean_source(s).map(|v| v.join("/"));
        assert_eq!(c("mix.exs").as_deref(), Some("mix.exs"));
        assert_eq!(c("./lib/").as_deref(), Some("lib"));
        assert_eq!(c("/etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(c("a/../b").as_deref(), Some("b"));
        assert_eq!(c(".").as_deref(), Some(""));
        assert_eq!(c("/").as_deref(), Some(""));
        assert_eq!(c("../x"), None);
        assert_eq!(c("a/../../x"), None);
        assert_eq!(c("/../x"), None);
    }

    #[test]
    fn destinations_are_absolute_and_clean() {
        assert_eq!(clean_dest("/app/"), "/app");
        assert_eq!(clean_dest("/"), "/");
        assert_eq!(clean_dest("/a/./b/../c"), "/a/c");
        assert_eq!(clean_dest("/../x"), "/x");
        assert_eq!(clean_dest("rel"), "/rel");
    }

    #[test]
    fn parents_sort_before_children() {
        let mut paths = vec!["/a-b", "/a/b", "/a", "/", "/a/b/c", "/0"];
        paths.sort_by(|a, b| compare(a, b));
        assert_eq!(paths, ["/", "/0", "/a", "/a/b", "/a/b/c", "/a-b"]);
        assert_eq!(join("", "x"), "x");
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("/a", "x"), "/a/x");
    }
}
