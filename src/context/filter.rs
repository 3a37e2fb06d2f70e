//! What `--exclude` and the pattern of `--parents` let through of the paths below one
//! copied source, as BuildKit's file backend (fsutil's copy with include and exclude
//! patterns) decides it. One set of rules for a walk of the build context and for the
//! archive of a stage or image that `COPY --from` reads.
//!
//! Paths are relative to the copied source, `/`-separated; the source itself (`""`) is
//! never filtered, as fsutil never filters the top of a copy.

use super::glob::Glob;
use crate::frontend::dockerignore::DockerIgnore;

/// A `--parents` pattern: matched with `.dockerignore` rules (a path is included when it or
/// a directory above it matches), plus its components to prune directories that cannot
/// lead to a match.
#[derive(Debug)]
pub struct Include {
    matcher: DockerIgnore,
    /// One per component of the pattern; `None` for `**`.
    components: Vec<Option<Glob>>,
}

impl Include {
    /// The pattern of `COPY --parents BASE/./PATTERN` (cleaned components, not empty). The
    /// error is the reason alone, for the caller to name the instruction.
    pub fn new(components: &[String]) -> Result<Include, String> {
        let globs = components
            .iter()
            .map(|c| {
                if c == "**" {
                    Ok(None)
                } else {
                    Glob::new(c).map(Some)
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| format!("invalid wildcard: {reason}"))?;
        let text = components.join("/");
        let matcher = DockerIgnore::parse(text.as_bytes())
            .map_err(|e| e.in_file(&text).message.to_string())?;
        Ok(Include {
            matcher,
            components: globs,
        })
    }

    fn includes(&self, rel: &str) -> bool {
        self.matcher.is_excluded(rel)
    }

    /// Whether a path below directory `rel` may match: its components match the
    /// pattern's first ones, or meet a `**`.
    fn may_match_below(&self, rel: &str) -> bool {
        let mut pattern = self.components.iter();
        for name in rel.split('/') {
            match pattern.next() {
                None => return false,
                Some(None) => return true,
                Some(Some(glob)) if glob.matches(name) => {}
                Some(Some(_)) => return false,
            }
        }
        pattern.next().is_some()
    }
}

/// The `--exclude` patterns and the `--parents` pattern of one copied source.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathFilter<'a> {
    pub exclude: Option<&'a DockerIgnore>,
    pub include: Option<&'a Include>,
}

impl PathFilter<'_> {
    /// Whether a copy lets everything through.
    pub fn is_empty(&self) -> bool {
        self.exclude.is_none() && self.include.is_none()
    }

    /// Whether nothing below directory `rel` (nor the directory) can be copied, so a walk
    /// need not enter it.
    pub fn skips_dir(&self, rel: &str) -> bool {
        self.exclude.is_some_and(|e| e.can_skip_dir(rel))
            || self
                .include
                .is_some_and(|i| !i.includes(rel) && !i.may_match_below(rel))
    }

    /// Whether `rel` itself is left out. A directory left out still comes, with its own
    /// metadata, before the first thing below it that is copied (a re-included file, a
    /// match of `--parents`).
    pub fn hides(&self, rel: &str) -> bool {
        self.exclude.is_some_and(|e| e.is_excluded(rel))
            || self.include.is_some_and(|i| !i.includes(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn include(pattern: &str) -> Include {
        let components: Vec<String> = pattern.split('/').map(str::to_owned).collect();
        Include::new(&components).unwrap()
    }

    #[test]
    fn parents_pattern_keeps_matches_and_the_directories_to_them() {
        let include = include("c*/**/e");
        let filter = PathFilter {
            exclude: None,
            include: Some(&include),
        };
        // On the way to a match: entered, but not copied unless something below is.
        assert!(!filter.skips_dir("c2") && filter.hides("c2"));
        assert!(!filter.skips_dir("c2/d") && filter.hides("c2/d"));
        // A match, and everything below it.
        assert!(!filter.hides("c2/d/e") && !filter.hides("c2/d/e/f"));
        // Off the pattern from its first component.
        assert!(filter.skips_dir("b") && filter.hides("b"));
    }

    #[test]
    fn exclude_hides_and_prunes_unless_a_pattern_reincludes() {
        let exclude = DockerIgnore::parse(b"*.png\nbuild\n").unwrap();
        let filter = PathFilter {
            exclude: Some(&exclude),
            include: None,
        };
        assert!(filter.hides("a.png") && !filter.hides("a.txt"));
        assert!(filter.skips_dir("build"));
        let reincluded = DockerIgnore::parse(b"build\n!build/keep\n").unwrap();
        let filter = PathFilter {
            exclude: Some(&reincluded),
            include: None,
        };
        assert!(!filter.skips_dir("build") && filter.hides("build"));
        assert!(!filter.hides("build/keep"));
        assert!(PathFilter::default().is_empty() && !filter.is_empty());
    }

    #[test]
    fn a_bad_pattern_is_refused() {
        assert!(Include::new(&["[a".to_owned()]).is_err());
    }
}
