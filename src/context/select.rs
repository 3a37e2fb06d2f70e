//! Selecting what a COPY copies: sources resolved in the context (symlinks followed only
//! inside it), wildcards expanded, directories walked without recursion, `.dockerignore`
//! and `--exclude` applied, targets computed as BuildKit's file backend (fsutil's copy)
//! computes them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use anyhow::Context as _;

use super::filter::{Include, PathFilter};
use super::glob::{Glob, has_wildcards};
use super::path::{clean_dest, clean_source, compare, join};
use super::{
    Context, Entry, EntryKind, Error, SelectOptions, Selection, Skipped, archive, io_reason, lstat,
};
use crate::frontend::dockerignore::DockerIgnore;

/// Linux's limit on symlinks followed while resolving one path.
const MAX_SYMLINKS: usize = 40;

/// Whether `.dockerignore` leaves `rel_path` out of the context: an ancestor directory the
/// walk skips, or the path itself excluded. An excluded directory can still hold
/// re-included files; callers check that where it matters.
pub(super) fn ignored(ignore: &DockerIgnore, rel_path: &str) -> bool {
    let mut end = 0;
    while let Some(offset) = rel_path.get(end..).and_then(|rest| rest.find('/')) {
        end += offset;
        if ignore.can_skip_dir(rel_path.get(..end).unwrap_or(rel_path)) {
            return true;
        }
        end += 1;
    }
    ignore.is_excluded(rel_path)
}

pub(super) struct Selector<'a> {
    ctx: &'a Context,
    opts: &'a SelectOptions,
    keyword: &'static str,
    /// `--exclude`, relative to each source.
    exclude: Option<DockerIgnore>,
    /// Entries in the order the copies happen; sorted and deduplicated at the end.
    candidates: Vec<Candidate>,
    skipped: Vec<Skipped>,
    /// Whether `.dockerignore` hid something a walk came to (see [`Selection::ignored`]).
    ignored: bool,
    /// Counts top-level matches: hard links are kept only within one (as in fsutil, whose
    /// copier is per source).
    source_index: usize,
}

struct Candidate {
    entry: Entry,
    /// (source index, device, inode) of a regular file with other hard links.
    link: Option<(usize, u64, u64)>,
}

/// A source path resolved in the context.
struct Resolved {
    /// The real path relative to the context root, symlinks resolved.
    rel: String,
    meta: Metadata,
}

/// How a path failed to resolve inside the context.
enum ResolveError {
    NotFound(String),
    NotADirectory(String),
    Excluded(String),
    /// A symlink (path, target) that leads out of the context.
    Escapes(String, String),
    Loop(String),
    NotUtf8(String),
    Io(Error),
}

/// What a directory walk copies: the filters of one source.
struct Walk<'w> {
    /// The directory whose contents are copied, relative to the context root.
    root_rel: String,
    /// Where its contents go in the image.
    target: String,
    /// `--parents`: only paths (relative to `root_rel`) this pattern matches, and the
    /// directories leading to them.
    include: Option<&'w Include>,
}

/// A directory on the walk's stack.
struct Frame {
    ctx_rel: String,
    src_rel: String,
    target: String,
    /// Remaining names, in reverse order so `pop` yields them sorted.
    names: Vec<OsString>,
    /// The directory's own entry, until something below it is copied (an excluded
    /// directory appears only when it holds re-included files).
    pending: Option<Candidate>,
}

impl<'a> Selector<'a> {
    pub(super) fn new(ctx: &'a Context, opts: &'a SelectOptions) -> Result<Selector<'a>, Error> {
        let keyword = if opts.is_add { "ADD" } else { "COPY" };
        let exclude = if opts.exclude.is_empty() {
            None
        } else {
            let joined = opts.exclude.join("\n");
            Some(DockerIgnore::parse(joined.as_bytes()).map_err(|e| {
                let located = e.in_file("--exclude");
                ctx.context_error(
                    format!("{keyword} --exclude: {}", located.message),
                    "--exclude patterns use .dockerignore syntax: * ? [a-z] ** and ! to re-include",
                )
            })?)
        };
        Ok(Selector {
            ctx,
            opts,
            keyword,
            exclude,
            candidates: Vec::new(),
            skipped: Vec::new(),
            ignored: false,
            source_index: 0,
        })
    }

    pub(super) fn run(
        mut self,
        sources: &[String],
        dest: &str,
        dest_is_dir: &dyn Fn(&str) -> bool,
    ) -> Result<Selection, Error> {
        let dest_clean = clean_dest(dest);
        let into_dir = dest.ends_with('/') || dest_clean == "/" || dest_is_dir(&dest_clean);
        for src in sources {
            if self.opts.parents {
                self.add_parents_source(src, &dest_clean)?;
            } else {
                self.add_source(src, &dest_clean, into_dir)?;
            }
        }
        // Several sources onto a path without `/` are copied onto it in turn, the last
        // winning, as BuildKit copies each match with the same destination.
        self.finish()
    }

    // ----- sources -------------------------------------------------------------------

    fn add_source(&mut self, src: &str, dest_clean: &str, into_dir: bool) -> Result<(), Error> {
        let components = clean_source(src);
        let Some(first_wildcard) = components.iter().position(|c| has_wildcards(c)) else {
            let resolved = self
                .resolve(&components, true)
                .map_err(|e| self.resolve_error(src, e))?;
            self.check_visible(src, &resolved)?;
            let name = components.last().cloned().unwrap_or_default();
            return self.add_match(&resolved, &name, dest_clean, into_dir);
        };
        let (base, pattern) = components.split_at(first_wildcard);
        let globs = pattern
            .iter()
            .map(|c| Glob::new(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| {
                self.ctx.context_error(
                    format!("{} {src}: invalid wildcard: {reason}", self.keyword),
                    "wildcards follow Go's filepath.Match: * ? [a-z] [^a-z], and \\ escapes",
                )
            })?;
        // BuildKit lists the directory before the wildcard, so it must exist even when
        // the wildcard may match nothing.
        let base_resolved = match self.resolve(base, true) {
            Ok(resolved) => resolved,
            Err(ResolveError::NotFound(missing) | ResolveError::Excluded(missing)) => {
                return Err(self.missing_wildcard_base(src, base, pattern, &missing));
            }
            Err(e) => return Err(self.resolve_error(src, e)),
        };
        let matches = self.expand(&base_resolved, &globs)?;
        for (matched, relative) in matches {
            let written = join(&base.join("/"), &relative);
            let resolved = self
                .follow(matched, &written)
                .map_err(|e| self.resolve_error(src, e))?;
            // A directory the wildcard matches is copied, its contents filtered: BuildKit
            // applies `--exclude` below each match (testExcludedFilesOnCopy: `--exclude=*
            // dir* /6` leaves an empty `/6`). A file it matches is left out, as BuildKit's
            // documentation has it (`COPY --exclude=*.txt hom* /mydir/`); BuildKit itself
            // copies it, moby/buildkit#5489.
            let excluded = || {
                self.exclude
                    .as_ref()
                    .is_some_and(|exclude| exclude.is_excluded(&relative))
            };
            if !resolved.meta.is_dir() && excluded() {
                continue;
            }
            let name = relative.rsplit('/').next().unwrap_or(&relative).to_owned();
            self.add_match(&resolved, &name, dest_clean, into_dir)?;
        }
        Ok(())
    }

    /// One resolved source (or wildcard match) copied to `dest`.
    fn add_match(
        &mut self,
        resolved: &Resolved,
        name: &str,
        dest: &str,
        into_dir: bool,
    ) -> Result<(), Error> {
        self.source_index += 1;
        let file_type = resolved.meta.file_type();
        let source = self.ctx.root.join(&resolved.rel);
        if file_type.is_dir() {
            self.push_dest_dir(dest);
            let walk = Walk {
                root_rel: resolved.rel.clone(),
                target: dest.to_owned(),
                include: None,
            };
            return self.walk(&walk);
        }
        if file_type.is_file() && self.opts.is_add && archive::is_tar_archive(&source)? {
            self.candidates.push(Candidate {
                entry: Entry {
                    source,
                    target: dest.to_owned(),
                    kind: EntryKind::Archive,
                    mode: self.dir_mode(),
                    implicit: false,
                    owner: None,
                },
                link: None,
            });
            return Ok(());
        }
        if file_type.is_file() || file_type.is_socket() {
            let target = if into_dir {
                self.push_dest_dir(dest);
                join(dest, name)
            } else {
                dest.to_owned()
            };
            let candidate = if file_type.is_socket() {
                self.socket_candidate(source, target, &resolved.meta)
            } else {
                self.file_candidate(source, target, &resolved.meta)
            };
            self.candidates.push(candidate);
            return Ok(());
        }
        self.skip(&resolved.rel, &resolved.meta);
        Ok(())
    }

    /// `COPY --parents [BASE/./]PATTERN DEST`: BuildKit copies BASE's contents that the
    /// pattern includes, keeping their paths below BASE, with the directories between.
    fn add_parents_source(&mut self, src: &str, dest: &str) -> Result<(), Error> {
        let (base, pattern) = src.split_once("/./").unwrap_or(("", src));
        let base_components = clean_source(base);
        let pattern_components = clean_source(pattern);
        let base_resolved = self
            .resolve(&base_components, true)
            .map_err(|e| self.resolve_error(src, e))?;
        self.check_visible(src, &base_resolved)?;
        if !base_resolved.meta.is_dir() {
            return Err(self.ctx.context_error(
                format!(
                    "{} --parents {src}: `{}` is not a directory",
                    self.keyword, base_resolved.rel
                ),
                "the part before `/./` names the directory whose subpaths are kept",
            ));
        }
        if pattern_components.is_empty() {
            self.source_index += 1;
            self.push_dest_dir(dest);
            let walk = Walk {
                root_rel: base_resolved.rel.clone(),
                target: dest.to_owned(),
                include: None,
            };
            return self.walk(&walk);
        }
        let pattern_text = pattern_components.join("/");
        let wildcard = pattern_components.iter().any(|c| has_wildcards(c));
        if !wildcard {
            // BuildKit's RequiredPaths: a path without wildcards must exist, and below the
            // pivot it is taken as it is in the context (symlinks are not followed).
            let required = join(&base_resolved.rel, &pattern_text);
            let meta = std::fs::symlink_metadata(self.ctx.root.join(&required)).ok();
            let missing = meta.is_none()
                || (1..pattern_components.len()).any(|n| {
                    let ancestor = join(
                        &base_resolved.rel,
                        &pattern_components.get(..n).unwrap_or_default().join("/"),
                    );
                    !std::fs::symlink_metadata(self.ctx.root.join(ancestor))
                        .is_ok_and(|m| m.is_dir())
                });
            if missing {
                return Err(self.not_found(src, &required));
            }
            if let Some(meta) = meta {
                let resolved = Resolved {
                    rel: required.clone(),
                    meta,
                };
                self.check_visible(src, &resolved)?;
            }
        }
        let include = Include::new(&pattern_components).map_err(|reason| {
            self.ctx.context_error(
                format!("{} --parents {src}: {reason}", self.keyword),
                "wildcards follow Go's filepath.Match: * ? [a-z] [^a-z], ** for any directories",
            )
        })?;
        self.source_index += 1;
        self.push_dest_dir(dest);
        let walk = Walk {
            root_rel: base_resolved.rel.clone(),
            target: dest.to_owned(),
            include: Some(&include),
        };
        self.walk(&walk)
    }

    // ----- resolving -----------------------------------------------------------------

    /// Resolves context-relative components, following symlinks (the last one only when
    /// `follow_last`) and refusing any that leads outside the context.
    fn resolve(&self, components: &[String], follow_last: bool) -> Result<Resolved, ResolveError> {
        let mut current: Vec<String> = Vec::new();
        let mut pending: std::collections::VecDeque<String> = components.iter().cloned().collect();
        let mut followed = 0;
        // The symlink whose target is being resolved, to name it when `..` escapes.
        let mut via: Option<(String, String)> = None;
        let mut meta = lstat(&self.ctx.root).map_err(ResolveError::Io)?;
        while let Some(component) = pending.pop_front() {
            match component.as_str() {
                "" | "." => continue,
                ".." => {
                    if current.pop().is_none() {
                        let (link, target) = via.clone().unwrap_or_default();
                        return Err(ResolveError::Escapes(link, target));
                    }
                    meta =
                        lstat(&self.ctx.root.join(current.join("/"))).map_err(ResolveError::Io)?;
                    continue;
                }
                _ => {}
            }
            current.push(component);
            let rel = current.join("/");
            let path = self.ctx.root.join(&rel);
            meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(ResolveError::NotFound(rel));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                    return Err(ResolveError::NotADirectory(rel));
                }
                Err(e) => {
                    return Err(ResolveError::Io(
                        anyhow::Error::new(e).context(format!("reading `{}`", path.display())),
                    ));
                }
            };
            let last = pending.is_empty();
            if meta.file_type().is_symlink() && (follow_last || !last) {
                if ignored(&self.ctx.ignore, &rel) {
                    return Err(ResolveError::Excluded(rel));
                }
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(ResolveError::Loop(rel));
                }
                let target = std::fs::read_link(&path)
                    .with_context(|| format!("reading the symlink `{}`", path.display()))
                    .map_err(ResolveError::Io)?;
                let target = target
                    .to_str()
                    .ok_or_else(|| ResolveError::NotUtf8(rel.clone()))?
                    .to_owned();
                current.pop();
                if target.starts_with('/') {
                    // BuildKit resolves an absolute link inside the context, as if the
                    // context were the root.
                    current.clear();
                }
                for part in target.rsplit('/') {
                    pending.push_front(part.to_owned());
                }
                via = Some((rel, target));
                continue;
            }
            if !last && !meta.is_dir() {
                return Err(ResolveError::NotADirectory(rel));
            }
        }
        Ok(Resolved {
            rel: current.join("/"),
            meta,
        })
    }

    /// Follows a wildcard match that is a symlink (BuildKit follows each match).
    fn follow(&self, matched: Resolved, written: &str) -> Result<Resolved, ResolveError> {
        if !matched.meta.file_type().is_symlink() {
            return Ok(matched);
        }
        let components: Vec<String> = matched.rel.split('/').map(str::to_owned).collect();
        let resolved = self.resolve(&components, true).map_err(|e| match e {
            ResolveError::NotFound(_) => ResolveError::NotFound(written.to_owned()),
            e => e,
        })?;
        if self.invisible(&resolved)? {
            return Err(ResolveError::Excluded(resolved.rel));
        }
        Ok(resolved)
    }

    /// Whether a resolved path does not exist for COPY: excluded by `.dockerignore`, and
    /// for a directory, nothing inside it re-included.
    fn invisible(&self, resolved: &Resolved) -> Result<bool, ResolveError> {
        if resolved.rel.is_empty() || !ignored(&self.ctx.ignore, &resolved.rel) {
            return Ok(false);
        }
        if !resolved.meta.is_dir() {
            return Ok(true);
        }
        Ok(!self
            .has_visible_descendant(&resolved.rel)
            .map_err(ResolveError::Io)?)
    }

    fn check_visible(&self, src: &str, resolved: &Resolved) -> Result<(), Error> {
        match self.invisible(resolved) {
            Ok(false) => Ok(()),
            Ok(true) => Err(self.resolve_error(src, ResolveError::Excluded(resolved.rel.clone()))),
            Err(e) => Err(self.resolve_error(src, e)),
        }
    }

    /// Whether anything below an excluded directory is re-included (then the directory is
    /// in the context, holding only that).
    fn has_visible_descendant(&self, dir_rel: &str) -> Result<bool, Error> {
        let mut stack = vec![dir_rel.to_owned()];
        while let Some(dir) = stack.pop() {
            if self.ctx.ignore.can_skip_dir(&dir) {
                continue;
            }
            for name in read_dir_sorted(&self.ctx.root.join(&dir))? {
                let Some(name) = name.to_str() else { continue };
                let rel = join(&dir, name);
                let meta = lstat(&self.ctx.root.join(&rel))?;
                if !self.ctx.ignore.is_excluded(&rel) {
                    return Ok(true);
                }
                if meta.is_dir() {
                    stack.push(rel);
                }
            }
        }
        Ok(false)
    }

    /// Expands wildcard components below a resolved directory, as BuildKit's
    /// `resolveWildcards` (a walk matching each component, not entering symlinks).
    /// Returns the matches (not followed) with their path relative to the base.
    fn expand(&self, base: &Resolved, globs: &[Glob]) -> Result<Vec<(Resolved, String)>, Error> {
        let mut frontier = Vec::new();
        if base.meta.is_dir() {
            frontier.push((base.rel.clone(), String::new()));
        }
        let mut matches = Vec::new();
        for (level, glob) in globs.iter().enumerate() {
            let last = level + 1 == globs.len();
            let mut next = Vec::new();
            for (dir, relative) in frontier {
                for name in read_dir_sorted(&self.ctx.root.join(&dir))? {
                    if !glob.matches(&name.to_string_lossy()) {
                        continue;
                    }
                    let name = name_str(&dir, &name)?;
                    let name = name.as_str();
                    let rel = join(&dir, name);
                    let meta = lstat(&self.ctx.root.join(&rel))?;
                    let resolved = Resolved { rel, meta };
                    let hidden = self.invisible(&resolved).map_err(|e| match e {
                        ResolveError::Io(e) => e,
                        _ => anyhow::anyhow!("checking `{}` against .dockerignore", resolved.rel),
                    })?;
                    if hidden {
                        continue;
                    }
                    let relative = join(&relative, name);
                    if last {
                        matches.push((resolved, relative));
                    } else if resolved.meta.is_dir() {
                        next.push((resolved.rel, relative));
                    }
                }
            }
            frontier = next;
        }
        Ok(matches)
    }

    // ----- walking -------------------------------------------------------------------

    /// Copies the contents of a directory (iteratively: depth never grows the call stack).
    fn walk(&mut self, walk: &Walk<'_>) -> Result<(), Error> {
        let names = read_dir_sorted(&self.ctx.root.join(&walk.root_rel))?;
        let mut stack = vec![Frame {
            ctx_rel: walk.root_rel.clone(),
            src_rel: String::new(),
            target: walk.target.clone(),
            names: names.into_iter().rev().collect(),
            pending: None,
        }];
        while let Some(frame) = stack.last_mut() {
            let Some(name) = frame.names.pop() else {
                stack.pop();
                continue;
            };
            let name = name_str(&frame.ctx_rel, &name)?;
            let ctx_rel = join(&frame.ctx_rel, &name);
            let src_rel = join(&frame.src_rel, &name);
            let target = join(&frame.target, &name);
            let source = self.ctx.root.join(&ctx_rel);
            let meta = lstat(&source)?;
            let filter = PathFilter {
                exclude: self.exclude.as_ref(),
                include: walk.include,
            };
            if meta.is_dir() {
                let by_dockerignore = self.ctx.ignore.can_skip_dir(&ctx_rel);
                self.ignored |= by_dockerignore;
                if by_dockerignore || filter.skips_dir(&src_rel) {
                    continue;
                }
                let by_dockerignore = self.ctx.ignore.is_excluded(&ctx_rel);
                self.ignored |= by_dockerignore;
                let hidden = by_dockerignore || filter.hides(&src_rel);
                let entry = Candidate {
                    entry: Entry {
                        source,
                        target: target.clone(),
                        kind: EntryKind::Dir,
                        mode: self.dir_mode(),
                        implicit: false,
                        owner: None,
                    },
                    link: None,
                };
                let names = read_dir_sorted(&self.ctx.root.join(&ctx_rel))?;
                let pending = if hidden {
                    Some(entry)
                } else {
                    flush_pending(&mut stack, &mut self.candidates);
                    self.candidates.push(entry);
                    None
                };
                stack.push(Frame {
                    ctx_rel,
                    src_rel,
                    target,
                    names: names.into_iter().rev().collect(),
                    pending,
                });
                continue;
            }
            let by_dockerignore = self.ctx.ignore.is_excluded(&ctx_rel);
            self.ignored |= by_dockerignore;
            let hidden = by_dockerignore || filter.hides(&src_rel);
            if hidden {
                continue;
            }
            let file_type = meta.file_type();
            let candidate = if file_type.is_file() {
                self.file_candidate(source, target, &meta)
            } else if file_type.is_socket() {
                self.socket_candidate(source, target, &meta)
            } else if file_type.is_symlink() {
                let link = std::fs::read_link(&source)
                    .with_context(|| format!("reading the symlink `{}`", source.display()))?;
                let link = link.to_str().ok_or_else(|| not_utf8(&ctx_rel))?.to_owned();
                Candidate {
                    entry: Entry {
                        source,
                        target,
                        kind: EntryKind::Symlink { target: link },
                        mode: 0o777,
                        implicit: false,
                        owner: None,
                    },
                    link: None,
                }
            } else {
                self.skip(&ctx_rel, &meta);
                continue;
            };
            flush_pending(&mut stack, &mut self.candidates);
            self.candidates.push(candidate);
        }
        Ok(())
    }

    // ----- entries -------------------------------------------------------------------

    fn dir_mode(&self) -> u32 {
        self.octal_chmod().unwrap_or(0o755)
    }

    fn octal_chmod(&self) -> Option<u32> {
        match self.opts.chmod {
            Some(crate::oci::layer::Chmod::Octal(mode)) => Some(mode),
            _ => None,
        }
    }

    /// The destination directory the copy creates (never the image root).
    fn push_dest_dir(&mut self, dest: &str) {
        if dest == "/" {
            return;
        }
        self.candidates.push(Candidate {
            entry: Entry {
                source: self.ctx.root.clone(),
                target: dest.to_owned(),
                kind: EntryKind::Dir,
                mode: self.dir_mode(),
                implicit: true,
                owner: None,
            },
            link: None,
        });
    }

    fn file_candidate(&self, source: PathBuf, target: String, meta: &Metadata) -> Candidate {
        let executable = meta.mode() & 0o111 != 0;
        let normal = if executable { 0o755 } else { 0o644 };
        Candidate {
            entry: Entry {
                source,
                target,
                kind: EntryKind::File {
                    size: meta.len(),
                    executable,
                },
                mode: self.octal_chmod().unwrap_or(normal),
                implicit: false,
                owner: None,
            },
            link: (meta.nlink() > 1).then(|| (self.source_index, meta.dev(), meta.ino())),
        }
    }

    /// A socket becomes an empty file with the mode a file of its bits would get.
    fn socket_candidate(&self, source: PathBuf, target: String, meta: &Metadata) -> Candidate {
        let mut candidate = self.file_candidate(source, target, meta);
        candidate.entry.kind = EntryKind::Socket;
        candidate.link = None;
        candidate
    }

    fn skip(&mut self, rel: &str, meta: &Metadata) {
        let file_type = meta.file_type();
        let kind = if file_type.is_fifo() {
            "FIFO"
        } else if file_type.is_char_device() {
            "character device"
        } else {
            "block device"
        };
        self.skipped.push(Skipped {
            path: rel.to_owned(),
            kind,
        });
    }

    /// Sorts by target, keeps the last copy of each path (directories merge), refuses a
    /// file and a directory at one path, and turns repeated inodes into hard links.
    fn finish(self) -> Result<Selection, Error> {
        let mut candidates = self.candidates;
        // Stable: entries for one target stay in copy order.
        candidates.sort_by(|a, b| {
            compare(&a.entry.target, &b.entry.target).then(archive_last(a).cmp(&archive_last(b)))
        });
        // In place (a large context must not need a second list): `later` is dropped
        // after its data moves into `earlier` when it wins.
        let mut conflict: Option<String> = None;
        candidates.dedup_by(|later, earlier| {
            let archive = matches!(later.entry.kind, EntryKind::Archive)
                || matches!(earlier.entry.kind, EntryKind::Archive);
            if later.entry.target != earlier.entry.target || archive {
                return false;
            }
            let earlier_dir = earlier.entry.kind == EntryKind::Dir;
            let later_dir = later.entry.kind == EntryKind::Dir;
            if earlier_dir != later_dir {
                conflict.get_or_insert_with(|| later.entry.target.clone());
                return false;
            }
            // A copied directory takes over the implicit one; otherwise the later wins.
            if !(later_dir && later.entry.implicit && !earlier.entry.implicit) {
                std::mem::swap(later, earlier);
            }
            true
        });
        if let Some(target) = conflict {
            return Err(self.ctx.context_error(
                format!(
                    "{}: `{target}` would be both a directory and a file: two sources write there",
                    self.keyword
                ),
                "copy the sources in separate steps or to different destinations",
            ));
        }
        let mut first_of_inode: HashMap<(usize, u64, u64), String> = HashMap::new();
        let mut entries: Vec<Entry> = candidates
            .into_iter()
            .map(|candidate| {
                let mut entry = candidate.entry;
                if let Some(key) = candidate.link {
                    match first_of_inode.get(&key) {
                        Some(first) => {
                            entry.kind = EntryKind::Hardlink {
                                target: first.clone(),
                            }
                        }
                        None => {
                            first_of_inode.insert(key, entry.target.clone());
                        }
                    }
                }
                entry
            })
            .collect();
        if self.ctx.keep_owners {
            for entry in entries.iter_mut().filter(|e| !e.implicit) {
                let meta = std::fs::symlink_metadata(&entry.source)
                    .with_context(|| format!("reading `{}`", entry.source.display()))?;
                entry.owner = Some((u64::from(meta.uid()), u64::from(meta.gid())));
            }
        }
        Ok(Selection {
            entries,
            skipped: self.skipped,
            ignored: self.ignored,
        })
    }

    // ----- errors --------------------------------------------------------------------

    fn not_found(&self, src: &str, rel: &str) -> Error {
        let shown = if rel == src.trim_start_matches("./").trim_start_matches('/') {
            String::new()
        } else {
            format!(" (`{rel}` does not exist)")
        };
        self.ctx.context_error(
            format!(
                "{} {src}: no such file in the build context{shown}",
                self.keyword
            ),
            format!(
                "paths in {} are relative to the build context, {}",
                self.keyword,
                self.ctx.root.display()
            ),
        )
    }

    fn missing_wildcard_base(
        &self,
        src: &str,
        base: &[String],
        pattern: &[String],
        missing: &str,
    ) -> Error {
        self.ctx.context_error(
            format!(
                "{} {src}: the directory `{}` before the wildcard is not in the build context",
                self.keyword,
                base.join("/")
            ),
            format!(
                "a wildcard may match nothing, but the directory before it must exist; \
                 to make it optional, put a wildcard in it too (e.g. `{}`)",
                optional_hint(base, pattern, missing.split('/').count())
            ),
        )
    }

    fn resolve_error(&self, src: &str, error: ResolveError) -> Error {
        let keyword = self.keyword;
        match error {
            ResolveError::NotFound(rel) => self.not_found(src, &rel),
            ResolveError::NotADirectory(rel) => self.ctx.context_error(
                format!("{keyword} {src}: `{rel}` is not a directory"),
                "check the path: a file stands where a directory is expected",
            ),
            ResolveError::Excluded(rel) => {
                let ignore_name = &self.ctx.ignore_name;
                let why = match self.ctx.excluding_line(&rel) {
                    Some((line, pattern)) => {
                        format!("excluded by {ignore_name} line {line} (`{pattern}`)")
                    }
                    None => format!("excluded by {ignore_name}"),
                };
                let subject = if rel == src.trim_start_matches("./").trim_start_matches('/') {
                    String::new()
                } else {
                    format!(" (`{rel}`)")
                };
                self.ctx.context_error(
                    format!("{keyword} {src}: the file exists but is {why}{subject}"),
                    format!("remove that pattern or add `!{rel}` to {ignore_name}"),
                )
            }
            ResolveError::Escapes(link, target) => self.ctx.context_error(
                format!(
                    "{keyword} {src}: the symlink `{link}` points to `{target}`, outside the build context"
                ),
                "COPY follows symlinks only within the build context; copy the file itself into the context",
            ),
            ResolveError::Loop(rel) => self.ctx.context_error(
                format!("{keyword} {src}: too many levels of symlinks at `{rel}` (a symlink loop?)"),
                "fix the symlink so that it leads to a file or directory",
            ),
            ResolveError::NotUtf8(rel) => not_utf8(&rel),
            ResolveError::Io(e) => e,
        }
    }
}

/// Emits the entries of excluded directories on the stack once something below them is
/// copied, parents first.
fn flush_pending(stack: &mut [Frame], candidates: &mut Vec<Candidate>) {
    for frame in stack.iter_mut() {
        if let Some(entry) = frame.pending.take() {
            candidates.push(entry);
        }
    }
}

fn archive_last(candidate: &Candidate) -> bool {
    matches!(candidate.entry.kind, EntryKind::Archive)
}

/// A directory's names in byte order, as Go's `os.ReadDir`. The handle is closed before
/// returning, so a deep walk holds no open directories.
fn read_dir_sorted(dir: &std::path::Path) -> Result<Vec<OsString>, Error> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| {
        anyhow::anyhow!(
            "reading the directory `{}`: {}",
            dir.display(),
            io_reason(&e)
        )
    })? {
        let entry = entry.with_context(|| format!("reading the directory `{}`", dir.display()))?;
        names.push(entry.file_name());
    }
    names.sort();
    Ok(names)
}

fn name_str(dir: &str, name: &OsString) -> Result<String, Error> {
    name.to_str()
        .map(str::to_owned)
        .ok_or_else(|| not_utf8(&join(dir, &name.to_string_lossy())))
}

fn not_utf8(rel: &str) -> Error {
    crate::error::InputError::new(format!(
        "`{rel}` in the build context has a name that is not UTF-8"
    ))
    .with_hint("rename it, or exclude it in .dockerignore")
    .into()
}

/// `folder/b/*` → `folder/[b]/*`: the first missing directory (the `depth`-th component)
/// made a pattern, so the wildcard's base exists.
fn optional_hint(base: &[String], pattern: &[String], depth: usize) -> String {
    let mut parts: Vec<String> = base.to_vec();
    let index = depth.clamp(1, parts.len().max(1)) - 1;
    if let Some(missing) = parts.get_mut(index)
        && let Some(first) = missing.chars().next()
    {
        *missing = format!(
            "[{first}]{}",
            missing.get(first.len_utf8()..).unwrap_or_default()
        );
    }
    parts.extend(pattern.iter().cloned());
    parts.join("/")
}
