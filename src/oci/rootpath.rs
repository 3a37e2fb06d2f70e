//! Paths inside an image's root file system, resolved as the kernel resolves them in a
//! container: symlinks followed (absolute targets and `..` kept inside the root), the
//! directories that are missing on the way. Used by the build (COPY, WORKDIR) and by the
//! checks (the dynamic linker's view of an image), each with its own record of what a
//! path is.

/// A path as [`resolve`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    /// A symlink and its target as stored (relative, or absolute in the image).
    Symlink(String),
    /// A file, device, FIFO…
    Other,
}

/// A path resolved inside the image's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The real absolute path: no component of it is a symlink (but the last, when it was
    /// not followed).
    pub path: String,
    /// What is at `path`; `None` when it does not exist.
    pub node: Option<Node>,
    /// The directories on the way that do not exist, top down, ending with `path` itself
    /// when it does not exist: what `mkdir -p` would create.
    pub missing: Vec<String>,
}

impl Resolved {
    /// What `WORKDIR path` creates, resolved here: the missing directories, none when the
    /// directory is there; an error when something else is in the way.
    pub fn workdir_creates(self, path: &str) -> Result<Vec<String>, crate::error::InputError> {
        if !self.missing.is_empty() {
            return Ok(self.missing);
        }
        match self.node {
            Some(Node::Dir) => Ok(Vec::new()),
            _ => Err(crate::error::InputError::new(format!(
                "WORKDIR {path}: `{}` exists in the image and is not a directory",
                self.path
            ))),
        }
    }
}

/// Why a path cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// A component that is not a directory has more components after it.
    NotADirectory(String),
    /// More than 40 symlinks.
    Loop(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::NotADirectory(p) => {
                write!(f, "`{p}` in the image is not a directory")
            }
            ResolveError::Loop(p) => write!(f, "too many levels of symbolic links at `{p}`"),
        }
    }
}

impl std::error::Error for ResolveError {}

/// Where [`resolve`] got to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Done(Resolved),
    /// `probe` does not know this path yet: look it up and resolve again.
    Need(String),
}

/// Linux's limit on the symlinks followed while resolving one path.
const MAX_SYMLINKS: usize = 40;

/// Resolves an absolute path through symlinks the way the kernel does inside a container
/// (or BuildKit's `RootPath`): absolute link targets and `..` stay inside the root, every
/// component is followed, the last one only when `follow_last`. `probe` tells what a path
/// is (`Some(None)`: nothing there; `None`: not known yet, see [`Resolution::Need`]); it
/// is asked only about paths whose parents are real directories.
pub fn resolve(
    path: &str,
    follow_last: bool,
    probe: &mut dyn FnMut(&str) -> Option<Option<Node>>,
) -> Result<Resolution, ResolveError> {
    let mut pending: std::collections::VecDeque<String> =
        path.split('/').map(str::to_owned).collect();
    let mut real: Vec<String> = Vec::new();
    // Index in `real` of the first component that does not exist.
    let mut missing_from: Option<usize> = None;
    let mut node = Some(Node::Dir);
    let mut followed = 0;
    while let Some(component) = pending.pop_front() {
        match component.as_str() {
            "" | "." => continue,
            ".." => {
                real.pop();
                if missing_from.is_some_and(|m| m >= real.len()) {
                    missing_from = None;
                }
                node = Some(Node::Dir);
                continue;
            }
            _ => {}
        }
        real.push(component);
        if missing_from.is_some() {
            node = None;
            continue;
        }
        let current = format!("/{}", real.join("/"));
        let Some(found) = probe(&current) else {
            return Ok(Resolution::Need(current));
        };
        let last = pending.iter().all(|c| c.is_empty() || c == ".");
        match found {
            None => {
                missing_from = Some(real.len() - 1);
                node = None;
            }
            Some(Node::Symlink(target)) if follow_last || !last => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(ResolveError::Loop(current));
                }
                real.pop();
                if target.starts_with('/') {
                    real.clear();
                }
                for part in target.rsplit('/') {
                    pending.push_front(part.to_owned());
                }
                node = Some(Node::Dir);
            }
            Some(Node::Other) if !last => return Err(ResolveError::NotADirectory(current)),
            found => node = found,
        }
    }
    let missing = match missing_from {
        Some(from) => (from..real.len())
            .map(|n| format!("/{}", real.get(..=n).unwrap_or_default().join("/")))
            .collect(),
        None => Vec::new(),
    };
    Ok(Resolution::Done(Resolved {
        path: format!("/{}", real.join("/")),
        node,
        missing,
    }))
}

/// A layer entry's name as an absolute path: `./usr/bin/` → `/usr/bin`; `..` components
/// make a name unusable (`None`).
pub fn normalize(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// `/usr/bin/env` → (`/usr/bin`, `env`); `/env` → (`/`, `env`).
pub fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => ("/", path),
    }
}

/// The inverse of [`split`].
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}
