//! Lexical path handling: COPY sources relative to the context root, destinations in the
//! image, and the order of paths in a selection.

use std::cmp::Ordering;

/// A COPY source cleaned like BuildKit's `filepath.Join("/", src)`: `.` and empty
/// components dropped, `..` applied and stopping at the context root (`../x` is `x`, as
/// BuildKit reads it), a leading `/` meaning the context root. Returns the components
/// relative to the context root.
pub fn clean_source(src: &str) -> Vec<String> {
    let mut components: Vec<String> = Vec::new();
    for component in src.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                components.pop();
            }
            _ => components.push(component.to_owned()),
        }
    }
    components
}

/// Whether a `..` of `src` climbs above the context root, where [`clean_source`] keeps it:
/// worth a warning, since such a Dockerfile may expect a file outside the context (the
/// classic builder refused it: "forbidden path outside the build context").
pub fn climbs_above_root(src: &str) -> bool {
    let mut depth = 0usize;
    for component in src.split('/') {
        match component {
            "" | "." => {}
            ".." if depth == 0 => return true,
            ".." => depth -= 1,
            _ => depth += 1,
        }
    }
    false
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
        let c = |s: &str| clean_source(s).join("/");
        assert_eq!(c("mix.exs"), "mix.exs");
        assert_eq!(c("./lib/"), "lib");
        assert_eq!(c("/etc/passwd"), "etc/passwd");
        assert_eq!(c("a/../b"), "b");
        assert_eq!(c("."), "");
        assert_eq!(c("/"), "");
        // Above the root, `..` stays there, as BuildKit's `filepath.Join("/", src)`.
        for climbing in ["../x", "a/../../x", "/../x"] {
            assert_eq!(c(climbing), "x");
            assert!(climbs_above_root(climbing));
        }
        for inside in ["a/../x", "./x/..", "/x"] {
            assert!(!climbs_above_root(inside));
        }
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
