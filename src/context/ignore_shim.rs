//! TODO(merge): use frontend::dockerignore — a minimal stand-in with the same API
//! (`DockerIgnore::{parse, is_excluded, can_skip_dir}`, `PatternError::in_file`) so
//! this module builds before the real matcher lands on this branch. At merge, delete this
//! file and import `crate::frontend::dockerignore::{DockerIgnore, PatternError}` in mod.rs.
//!
//! It covers what the tests here use: anchored patterns, `*`/`?`/`[…]` per component, `**`
//! as whole components, a matching directory excluding what is below it, `!` exceptions
//! (last match wins), and a walk that never skips a directory while any `!` exists.

use super::glob::Glob;

#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<(bool, Vec<Option<Glob>>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    line: usize,
    pattern: String,
    message: String,
}

impl PatternError {
    pub fn in_file(&self, file: &str) -> crate::frontend::Error {
        crate::frontend::Error::new(
            file,
            format!("invalid pattern `{}`: {}", self.pattern, self.message),
        )
        .at(self.line, None)
    }
}

impl DockerIgnore {
    pub fn parse(contents: &[u8]) -> Result<DockerIgnore, PatternError> {
        let text = String::from_utf8_lossy(contents);
        let mut patterns = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let line = line.trim();
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let mut components = Vec::new();
            for component in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
                if component == "**" {
                    components.push(None);
                    continue;
                }
                let glob = Glob::new(component).map_err(|message| PatternError {
                    line: index + 1,
                    pattern: line.to_owned(),
                    message,
                })?;
                components.push(Some(glob));
            }
            patterns.push((exception, components));
        }
        Ok(DockerIgnore { patterns })
    }

    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path: Vec<&str> = rel_path.split('/').filter(|c| !c.is_empty()).collect();
        let mut excluded = false;
        for (exception, pattern) in &self.patterns {
            // A pattern that matches the path or one of its parent directories.
            if (1..=path.len()).any(|n| matches(pattern, &path[..n])) {
                excluded = !exception;
            }
        }
        excluded
    }

    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        self.patterns.iter().all(|(exception, _)| !exception) && self.is_excluded(rel_dir)
    }
}

fn matches(pattern: &[Option<Glob>], path: &[&str]) -> bool {
    match (pattern.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((None, rest)), _) => {
            matches(rest, path) || path.split_first().is_some_and(|(_, p)| matches(pattern, p))
        }
        (Some((Some(glob), rest)), Some((name, p))) => glob.matches(name) && matches(rest, p),
        _ => false,
    }
}
