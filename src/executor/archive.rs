//! Tar streams of COPY steps: the files a COPY puts into the filesystem, as a tar the
//! engine extracts into a container (build stages) or the layer writer reads (packaging
//! stage). Two sources: a selection from the build context, and the archive the engine
//! hands out of another stage's image (`COPY --from`).
//!
//! Written by hand over the `tar` crate because the renaming rules are COPY's own
//! (a directory's contents go into the destination; a file lands at or inside it), and
//! because names from another image are untrusted: entries that would leave the
//! destination (`..`, absolute names, links pointing up) are refused, never written.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use anyhow::{Context as _, bail};

use super::image_fs::{Node, Resolved};
use crate::context::{Entry, EntryKind, PathFilter, Selection};
use crate::error::InputError;
use crate::oci::layer::{Chmod, Ownership};
use crate::plan::dispatch::CopyStep;

/// Owners and modes a COPY sets (`--chown`, `--chmod`); `None` keeps the source's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub owner: Option<Ownership>,
    pub chmod: Option<Chmod>,
    /// mtime written into every entry.
    pub mtime: u64,
}

/// A tar writer with the header fields a COPY sets.
pub struct TarOut<W: Write> {
    builder: tar::Builder<W>,
    overrides: Overrides,
    /// The COPY's destination as written and where it really is in the image (its
    /// symlinks followed): paths under the first are written under the second.
    redirect: Option<(String, String)>,
}

/// Where a COPY writes: its destination resolved through the image's symlinks, as BuildKit
/// resolves it (`COPY x /bin/x` on a merged-/usr image writes `/usr/bin/x`; `COPY tz
/// /etc/localtime` writes the file the link points to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyDest {
    /// The destination as written, cleaned (no trailing `/` but for the root).
    pub written: String,
    /// `written` with every symlink followed.
    pub real: String,
    /// `real` is an existing directory.
    pub is_dir: bool,
    /// The directories the COPY creates above what it copies (BuildKit's `MkdirAll` of the
    /// destination's parent, or of the destination itself when written with a trailing
    /// `/`), top down.
    pub creates: Vec<String>,
}

impl CopyDest {
    /// `dest` as a COPY writes it (a trailing `/` means a directory), resolved to `resolved`.
    pub fn new(dest: &str, resolved: Resolved) -> CopyDest {
        let mut creates = resolved.missing;
        if !dest.ends_with('/') {
            // The destination itself is made by what is copied: a file, or a directory
            // whose entry the writers add.
            creates.pop();
        }
        CopyDest {
            written: crate::context::clean_dest(dest),
            is_dir: resolved.node == Some(Node::Dir),
            real: resolved.path,
            creates,
        }
    }

    /// The directories the COPY creates, 0755 (or `--chmod`) and owned by `--chown` or root,
    /// as BuildKit creates them; then paths under the destination are written under its
    /// real path.
    pub fn start<W: Write>(&self, out: &mut TarOut<W>) -> io::Result<()> {
        for dir in &self.creates {
            out.created_dir(dir, Ownership::ROOT)?;
        }
        if self.written != self.real {
            out.redirect = Some((self.written.clone(), self.real.clone()));
        }
        Ok(())
    }
}

/// Whether a COPY from the context writes anything: wildcards that matched nothing copy
/// nothing, and BuildKit then creates no destination either.
pub fn copies_anything(copy: &CopyStep, selection: Option<&Selection>) -> bool {
    !copy.inline.is_empty()
        || !copy.remote.is_empty()
        || selection.is_some_and(|s| !s.entries.is_empty())
}

impl<W: Write> TarOut<W> {
    pub fn new(out: W, overrides: Overrides) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        TarOut {
            builder,
            overrides,
            redirect: None,
        }
    }

    /// The tar name of image path `path`: relative, redirected through the destination's
    /// symlinks.
    fn name(&self, path: &str) -> String {
        if let Some((from, to)) = &self.redirect {
            let rest = if from == "/" {
                Some(path)
            } else {
                path.strip_prefix(from.as_str())
                    .filter(|r| r.is_empty() || r.starts_with('/'))
            };
            if let Some(rest) = rest {
                return relative(&format!("{}/{}", to.trim_end_matches('/'), rest)).to_owned();
            }
        }
        relative(path).to_owned()
    }

    /// A header with `mode` as it is (`--chmod` already applied, or not to be).
    fn header(&self, kind: tar::EntryType, mode: u32, owner: Ownership, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode & 0o7777);
        let owner = self.overrides.owner.unwrap_or(owner);
        h.set_uid(owner.uid);
        h.set_gid(owner.gid);
        h.set_mtime(self.overrides.mtime);
        h.set_size(size);
        h
    }

    /// `mode` as `--chmod` changes it.
    fn changed(&self, mode: u32, is_dir: bool) -> u32 {
        match &self.overrides.chmod {
            Some(chmod) => chmod.apply(mode, is_dir),
            None => mode,
        }
    }

    /// A directory copied with mode `mode`.
    pub fn dir(&mut self, path: &str, mode: u32, owner: Ownership) -> io::Result<()> {
        let mut h = self.header(
            tar::EntryType::Directory,
            self.changed(mode, true),
            owner,
            0,
        );
        self.builder
            .append_data(&mut h, self.name(path), io::empty())
    }

    /// A directory the step creates on its way (a destination's missing parents, WORKDIR):
    /// 0755, or an octal `--chmod`'s mode, as fsutil's `MkdirAll` makes it.
    pub fn created_dir(&mut self, path: &str, owner: Ownership) -> io::Result<()> {
        let mode = self
            .overrides
            .chmod
            .as_ref()
            .map_or(0o755, Chmod::created_dir_mode);
        let mut h = self.header(tar::EntryType::Directory, mode, owner, 0);
        self.builder
            .append_data(&mut h, self.name(path), io::empty())
    }

    pub fn file(
        &mut self,
        path: &str,
        mode: u32,
        owner: Ownership,
        size: u64,
        data: impl Read,
    ) -> io::Result<()> {
        let mut h = self.header(
            tar::EntryType::Regular,
            self.changed(mode, false),
            owner,
            size,
        );
        self.builder.append_data(&mut h, self.name(path), data)
    }

    pub fn symlink(&mut self, path: &str, target: &str, owner: Ownership) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, owner, 0);
        self.builder.append_link(&mut h, self.name(path), target)
    }

    /// A hard link to `target`. Its header carries the target's `mode` and owner: the
    /// engine's extraction applies a link's header to the inode it shares.
    pub fn hardlink(
        &mut self,
        path: &str,
        target: &str,
        mode: u32,
        owner: Ownership,
    ) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Link, self.changed(mode, false), owner, 0);
        let target = self.name(target);
        self.builder.append_link(&mut h, self.name(path), target)
    }

    /// A device node or a FIFO (`kind`: `Char`, `Block` or `Fifo`), with its device
    /// numbers: BuildKit's copy makes them again (fsutil's `copyDevice`), and so does its
    /// unpacking of an ADDed archive.
    pub fn special(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        owner: Ownership,
        (major, minor): (u32, u32),
    ) -> io::Result<()> {
        let mut h = self.header(kind, self.changed(mode, false), owner, 0);
        h.set_device_major(major)?;
        h.set_device_minor(minor)?;
        self.builder
            .append_data(&mut h, self.name(path), io::empty())
    }

    /// Sets the mtime of the entries written next (an `ADD` download's `Last-Modified`),
    /// returning the one before.
    pub fn set_mtime(&mut self, mtime: u64) -> u64 {
        std::mem::replace(&mut self.overrides.mtime, mtime)
    }

    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

/// Writes the heredoc files of `COPY <<EOF DEST` (owned by root, mode 0644): into DEST
/// when it ends in `/` or is an existing directory, else as DEST itself.
pub fn write_inline_files<W: Write>(
    out: &mut TarOut<W>,
    copy: &CopyStep,
    dest_exists: bool,
) -> io::Result<()> {
    let dest = copy.dest.trim_end_matches('/');
    for doc in &copy.inline {
        let target = if copy.dest.ends_with('/') || dest_exists {
            format!("{dest}/{}", doc.name)
        } else {
            dest.to_owned()
        };
        out.file(
            &target,
            0o644,
            Ownership::ROOT,
            doc.data.len() as u64,
            doc.data.as_bytes(),
        )?;
    }
    Ok(())
}

/// Tar names are relative: `/app/x` → `app/x`.
fn relative(path: &str) -> &str {
    let p = path.trim_start_matches('/');
    if p.is_empty() { "." } else { p }
}

/// Writes a context selection. Files of the context belong to root unless `--chown`
/// says otherwise, as in docker build. The destination directory itself is written only
/// when it does not exist yet (`dest_exists`), so an existing one keeps its owner and
/// mode — unless `--chmod` asks for a mode.
/// Where a directory of the image really is, its symlinks followed within the root
/// (`/var/run` is `/run` on Debian); `None` keeps the path as it is.
pub type RealDir<'a> = &'a dyn Fn(&str) -> Option<String>;

/// For a tar that is extracted by something that follows the image's symlinks itself (a
/// build stage's container or snapshot): names stay as written.
pub fn names_as_written(_: &str) -> Option<String> {
    None
}

/// Writes what `selection` copies into `out`. The entries of an archive it extracts (ADD)
/// go where the image's symlinks lead (`real_dir`), as BuildKit's unpacking follows them;
/// other entries keep their names, and a directory of theirs that is a symlink in the
/// image is refused later, as BuildKit's copy refuses it.
pub fn write_selection<W: Write>(
    out: &mut TarOut<W>,
    selection: &Selection,
    dest_exists: &dyn Fn(&str) -> bool,
    real_dir: RealDir<'_>,
) -> anyhow::Result<()> {
    for entry in &selection.entries {
        write_entry(out, entry, dest_exists, real_dir)
            .with_context(|| format!("adding {}", entry.source.display()))?;
    }
    Ok(())
}

fn write_entry<W: Write>(
    out: &mut TarOut<W>,
    entry: &Entry,
    dest_exists: &dyn Fn(&str) -> bool,
    real_dir: RealDir<'_>,
) -> anyhow::Result<()> {
    let root = match entry.owner {
        Some((uid, gid)) => Ownership { uid, gid },
        None => Ownership::ROOT,
    };
    match &entry.kind {
        EntryKind::Dir => {
            // An existing destination keeps its owner and mode, `--chmod` or not: fsutil's
            // copy overwrites the metadata of directories below it only.
            if entry.implicit && dest_exists(&entry.target) {
                return Ok(());
            }
            if entry.implicit {
                out.created_dir(&entry.target, root)?;
            } else {
                out.dir(&entry.target, entry.mode, root)?;
            }
        }
        EntryKind::File { size, .. } => {
            let file = crate::context::open_no_follow(&entry.source)?;
            // The file may change while we read it; the header promised `size` bytes.
            let data = file.take(*size).chain(io::repeat(0).take(*size));
            out.file(&entry.target, entry.mode, root, *size, data.take(*size))?;
        }
        EntryKind::Socket => out.file(&entry.target, entry.mode, root, 0, io::empty())?,
        EntryKind::Symlink { target } => out.symlink(&entry.target, target, root)?,
        EntryKind::Hardlink { target } => out.hardlink(&entry.target, target, entry.mode, root)?,
        EntryKind::Archive => {
            let reader = crate::context::open_archive(&entry.source)?;
            extract_archive_into(out, reader, &entry.target, real_dir)?;
        }
    }
    Ok(())
}

/// Copies the entries of an archive (ADD) under `dest`, keeping their owners and modes
/// (unless overridden) and refusing names that would leave `dest`. Names and hard-link
/// targets are relative to `dest` (a leading `/` too, as docker build reads them), and
/// land where the image's symlinks above them lead (`real_dir`); device nodes and FIFOs
/// are left out.
fn extract_archive_into<W: Write>(
    out: &mut TarOut<W>,
    reader: impl Read,
    dest: &str,
    real_dir: RealDir<'_>,
) -> anyhow::Result<()> {
    // Only the parent is followed: an entry replaces a symlink at its own name, as an
    // unpacking does (BuildKit's testDockerfileAddArchiveThroughAbsoluteSymlink).
    let in_image = |path: String| match path.rsplit_once('/') {
        Some((parent, name)) if !name.is_empty() => {
            match real_dir(if parent.is_empty() { "/" } else { parent }) {
                Some(real) => join(&real, name),
                None => path,
            }
        }
        _ => path,
    };
    let mut archive = tar::Archive::new(reader);
    let mut symlinks = SymlinksMade::default();
    for entry in archive.entries()? {
        let entry = entry?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = clean_relative(&name);
        if rel.is_empty() {
            // The destination itself, which the unpacking does not replace.
            continue;
        }
        symlinks.check(&rel, entry.header().entry_type())?;
        let target = in_image(join(dest, &rel));
        let link_target = |link: &str| match clean_relative(link) {
            rel if !rel.is_empty() => Ok(in_image(join(dest, &rel))),
            _ => Err(InputError::new(format!(
                "the archive has a hard link `{name}` to `{link}`, the destination `{dest}` itself"
            ))
            .with_hint(ARCHIVE_HINT)
            .into()),
        };
        copy_entry(out, entry, &target, &link_target)?;
    }
    Ok(())
}

const ARCHIVE_HINT: &str = "ADD extracts an archive only below its destination; \
     rebuild the archive with relative names that stay inside it";

/// The symlinks a tar stream has made so far, so that no later entry is written through
/// one. docker build follows such a link inside the image (`link -> /etc` then `link/x`
/// writes `/etc/x`); imgbuild refuses the archive instead: the packaging stage writes
/// layers without a file system to resolve links in, and build stages and the packaging
/// stage must agree.
#[derive(Default)]
struct SymlinksMade {
    paths: HashSet<String>,
}

impl SymlinksMade {
    /// Records entry `rel` (relative, clean) of type `kind`, refusing it when one of its
    /// parents is a symlink of the same stream.
    fn check(&mut self, rel: &str, kind: tar::EntryType) -> anyhow::Result<()> {
        if !self.paths.is_empty() {
            for (end, _) in rel.match_indices('/') {
                let parent = rel.get(..end).unwrap_or_default();
                if self.paths.contains(parent) {
                    return Err(InputError::new(format!(
                        "the archive writes `{rel}` through the symlink `{parent}` it made"
                    ))
                    .with_hint(format!(
                        "imgbuild does not write through links in archives: make `{parent}` a \
                         directory in the archive, or put the files where the link points"
                    ))
                    .into());
                }
            }
        }
        if kind == tar::EntryType::Symlink {
            self.paths.insert(rel.to_owned());
        } else {
            // A later entry of the same name replaces the link.
            self.paths.remove(rel);
        }
        Ok(())
    }
}

/// How `COPY --from=STAGE SRC DEST` renames what the engine's archive of SRC holds: the
/// archive's entries are named after SRC's last component (`hello/bin/x`).
#[derive(Debug, Clone)]
pub struct CopyFromPlan {
    /// SRC's last component, the first component of every archive entry.
    pub top: String,
    /// SRC is a directory: its contents go into `dest`; else SRC goes to `dest`.
    pub source_is_dir: bool,
    /// Where the top entry lands (absolute).
    pub dest: String,
    /// `dest` already exists as a directory: keep its metadata (no entry for it).
    pub dest_exists: bool,
    /// SRC's absolute path in the source.
    pub source: String,
    /// What the source image lacks that its container's archive shows.
    pub absent: Absent,
}

/// What an engine container of a `COPY --from` source shows that the source may lack,
/// from Docker's init layer: left out of a copy, as BuildKit copies only what the source
/// has. A snapshot (`Absent::default()`) shows nothing of the kind.
#[derive(Debug, Clone, Default)]
pub struct Absent {
    /// The source is read through an engine container.
    pub container: bool,
    /// Mount points (`/dev`, `/proc`, `/sys`) the source certainly lacks: everything below
    /// them is the engine's.
    pub mount_points: Vec<&'static str>,
    /// Directories the source may lack (`/etc`, and mount points a COPY may have made):
    /// each is copied only once something below it that is not the engine's is, or when
    /// it is not the engine's plain 0755 root directory. An image's own empty one cannot
    /// be told apart from the engine's, and is left out.
    pub maybe: Vec<&'static str>,
}

/// The directories Docker's init layer makes in every container, and the names it makes
/// directly below each: empty placeholders the engine mounts over (`/etc/hosts`,
/// `/dev/console`, `/.dockerenv`), `/etc/mtab` (a link to `/proc/mounts`), mount points.
const ENGINE_DIRS: [(&str, &[&str]); 7] = [
    ("/", &[".dockerenv"]),
    ("/etc", &["hosts", "hostname", "resolv.conf", "mtab"]),
    ("/dev", &["console", "pts", "shm"]),
    ("/dev/pts", &[]),
    ("/dev/shm", &[]),
    ("/proc", &[]),
    ("/sys", &[]),
];

/// Whether the absolute `path` is `top` or below it.
pub(super) fn is_under(path: &str, top: &str) -> bool {
    top == "/" || path == top || is_below(path, top)
}

impl Absent {
    /// Whether what a wildcard matched at `path` (absolute) is the engine's alone: a mount
    /// point the source lacks or what is below one, or a directory it may lack that holds
    /// nothing but what the engine makes there (`names`: the names directly below it).
    pub fn is_engines<'n>(&self, path: &str, mut names: impl Iterator<Item = &'n str>) -> bool {
        if !self.container {
            return false;
        }
        if self.mount_points.iter().any(|p| is_under(path, p)) {
            return true;
        }
        let engines = ENGINE_DIRS.iter().find(|(dir, _)| *dir == path);
        match engines {
            Some((dir, made)) if self.maybe.contains(dir) || dir.starts_with("/dev/") => {
                names.all(|name| made.contains(&name))
            }
            _ => false,
        }
    }

    /// Whether directory `path` (its header `header`) is held back until something below
    /// it is copied: one the source may lack, shown as the engine makes it.
    fn holds(&self, path: &str, header: &tar::Header) -> bool {
        let engine_made = header.mode().ok().map(|m| m & 0o7777) == Some(0o755)
            && header.uid().ok() == Some(0)
            && header.gid().ok() == Some(0);
        // `/dev/pts` and `/dev/shm` are in every container, whatever the image has.
        let maybe = self.maybe.contains(&path) || matches!(path, "/dev/pts" | "/dev/shm");
        self.container && maybe && engine_made
    }
}

impl CopyFromPlan {
    /// Whether the archive entry for source path `path` is the engine's, not the image's:
    /// Docker's init layer, which every container shows (mount points the image lacks,
    /// what `/dev/pts` and `/dev/shm` hold, and empty 0755 `/.dockerenv`, `/dev/console`,
    /// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, `/etc/mtab -> /proc/mounts`).
    /// BuildKit copies only what the image has. An image's own file at one of those paths
    /// is hidden by the engine's and so is not copied either.
    fn is_engine_placeholder(&self, path: &str, header: &tar::Header) -> bool {
        if !self.absent.container {
            return false;
        }
        if self.absent.mount_points.iter().any(|p| is_under(path, p))
            || is_below(path, "/dev/pts")
            || is_below(path, "/dev/shm")
        {
            return true;
        }
        let (dir, name) = match path.rsplit_once('/') {
            Some(("", name)) => ("/", name),
            Some(split) => split,
            None => return false,
        };
        let engine_made = ENGINE_DIRS
            .iter()
            .any(|(made_in, names)| *made_in == dir && names.contains(&name));
        let kind = header.entry_type();
        engine_made
            && match name {
                "mtab" => {
                    kind.is_symlink()
                        && header.link_name_bytes().as_deref() == Some(&b"/proc/mounts"[..])
                }
                _ => {
                    kind.is_file()
                        && header.size().ok() == Some(0)
                        && header.mode().ok().map(|m| m & 0o7777) == Some(0o755)
                }
            }
    }
}

/// Rewrites the engine's archive of a `COPY --from` source into entries under the COPY's
/// destination.
pub fn write_copy_from<W: Write>(
    out: &mut TarOut<W>,
    reader: impl Read,
    plan: &CopyFromPlan,
    filter: PathFilter<'_>,
) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(reader);
    let mut symlinks = SymlinksMade::default();
    // Directories left out so far (`PathFilter::hides`, the engine's `/etc`), written once
    // something below them is: parents first, as the archive lists them.
    let mut held: Vec<HeldDir> = Vec::new();
    // Directories nothing below which is copied (`PathFilter::skips_dir`), and the files
    // the filter left out, at which no hard link may point.
    let mut pruned: Vec<String> = Vec::new();
    let mut hidden: HashSet<String> = HashSet::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        // The engine's or our own archive of one path: every name is below its top.
        let rel = clean_relative(&name);
        let Some(rest) = strip_top(&rel, &plan.top) else {
            bail!(
                "the stage's archive has an entry `{name}` outside `{}`",
                plan.top
            );
        };
        let source = match rest.as_str() {
            "" => plan.source.clone(),
            rest => join(&plan.source, rest),
        };
        if plan.is_engine_placeholder(&source, entry.header()) {
            continue;
        }
        // The source itself is never filtered, as fsutil filters only what is below it.
        if !rest.is_empty() {
            if pruned.iter().any(|dir| is_below(&rest, dir)) {
                continue;
            }
            let header = entry.header();
            let is_dir = header.entry_type().is_dir();
            if is_dir && filter.skips_dir(&rest) {
                pruned.push(rest);
                continue;
            }
            held.retain(|dir| is_below(&rest, &dir.rest));
            let engines = is_dir && plan.absent.holds(&source, header);
            if filter.hides(&rest) || engines {
                if is_dir {
                    held.push(HeldDir {
                        target: join(&plan.dest, &rest),
                        mode: header.mode().unwrap_or(0o755),
                        owner: Ownership {
                            uid: header.uid().unwrap_or(0),
                            gid: header.gid().unwrap_or(0),
                        },
                        rest,
                    });
                } else {
                    hidden.insert(rest);
                }
                continue;
            }
            for dir in held.drain(..) {
                out.dir(&dir.target, dir.mode, dir.owner)?;
            }
        }
        // An existing destination keeps its owner and mode (see `write_entry`).
        if rest.is_empty() && plan.dest_exists && plan.source_is_dir {
            continue;
        }
        symlinks.check(&rel, entry.header().entry_type())?;
        let target = if rest.is_empty() {
            plan.dest.clone()
        } else {
            join(&plan.dest, &rest)
        };
        if rest.is_empty() && plan.source_is_dir {
            // The destination directory is created, not copied: 0755 and root (or
            // --chown, --chmod), as BuildKit's MkdirAll makes it.
            out.created_dir(&target, Ownership::ROOT)?;
            continue;
        }
        // Hard-link targets are archive names too: renamed like the entries.
        let link_target = |link: &str| match strip_top(&clean_relative(link), &plan.top) {
            Some(rest) if rest.is_empty() => Ok(plan.dest.clone()),
            Some(rest) if hidden.contains(&rest) => Err(InputError::new(format!(
                "hard link `{target}` points at `{link}`, which --exclude or --parents \
                 leaves out"
            ))
            .with_hint("copy both names of the file, or neither")
            .into()),
            Some(rest) => Ok(join(&plan.dest, &rest)),
            None => Err(anyhow::anyhow!(
                "hard link `{target}` points at `{link}`, outside what is copied"
            )),
        };
        copy_entry(out, entry, &target, &link_target)?;
    }
    Ok(())
}

/// A directory a copy left out until something below it is copied.
struct HeldDir {
    /// Its path below the copied source.
    rest: String,
    target: String,
    mode: u32,
    owner: Ownership,
}

/// Whether `path` is below the directory `dir` (both relative, or both absolute).
fn is_below(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// `top` or `top/rest` → `rest` (`""` for the top itself).
fn strip_top(rel: &str, top: &str) -> Option<String> {
    // The image root's archive: every entry is below it.
    if top == "." {
        return Some(rel.trim_end_matches('/').to_owned());
    }
    if rel == top {
        return Some(String::new());
    }
    rel.strip_prefix(top)
        .and_then(|r| r.strip_prefix('/'))
        .map(|r| r.trim_end_matches('/').to_owned())
}

/// Writes one entry at `target`; `link_target` maps a hard link's target (an archive name)
/// to its path in the image.
fn copy_entry<W: Write, R: Read>(
    out: &mut TarOut<W>,
    mut entry: tar::Entry<'_, R>,
    target: &str,
    link_target: &dyn Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let header = entry.header().clone();
    let mode = header.mode().unwrap_or(0o644);
    let owner = Ownership {
        uid: header.uid().unwrap_or(0),
        gid: header.gid().unwrap_or(0),
    };
    let link_name = |entry: &tar::Entry<'_, R>| {
        entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default()
    };
    match header.entry_type() {
        tar::EntryType::Directory => out.dir(target, mode, owner)?,
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let size = entry.size();
            out.file(target, mode, owner, size, &mut entry)?;
        }
        tar::EntryType::Symlink => out.symlink(target, &link_name(&entry), owner)?,
        tar::EntryType::Link => {
            let linked = link_target(&link_name(&entry))?;
            out.hardlink(target, &linked, mode, owner)?;
        }
        kind @ (tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo) => {
            let device = (
                header.device_major().ok().flatten().unwrap_or(0),
                header.device_minor().ok().flatten().unwrap_or(0),
            );
            out.special(target, kind, mode, owner, device)?;
        }
        // Other kinds (GNU long-name continuations are read by the tar crate, sparse files
        // and the like are not made by image tools) are not copied.
        _ => {}
    }
    Ok(())
}

/// A tar entry name made relative and clean, as if it were unpacked in a root of its own:
/// a `..` at that root stays there, as BuildKit's unpacking, chrooted into the
/// destination, keeps it (`../../up.txt` is `up.txt`, `a/b/../g` is `a/g`).
pub fn clean_relative(name: &str) -> String {
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn join(dir: &str, rel: &str) -> String {
    if rel.is_empty() {
        return dir.to_owned();
    }
    format!("{}/{}", dir.trim_end_matches('/'), rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o750);
            h.set_uid(7);
            h.set_gid(8);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, name, link).unwrap();
                }
                _ => {
                    h.set_size(link.len() as u64);
                    b.append_data(&mut h, name, link.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn names(tar: &[u8]) -> Vec<(String, u64, u32, String)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().uid().unwrap(),
                    e.header().mode().unwrap(),
                    link,
                )
            })
            .collect()
    }

    #[test]
    fn copy_from_renames_a_directory_into_dest() {
        use tar::EntryType::*;
        let input = archive(&[
            ("hello/", Directory, ""),
            ("hello/bin/", Directory, ""),
            ("hello/bin/x", Regular, "x"),
            ("hello/y", Link, "hello/bin/x"),
            ("hello/l", Symlink, "bin/x"),
        ]);
        let mut out = TarOut::new(
            Vec::new(),
            Overrides {
                owner: Some(Ownership { uid: 65534, gid: 0 }),
                chmod: None,
                mtime: 0,
            },
        );
        let plan = CopyFromPlan {
            top: "hello".into(),
            source_is_dir: true,
            dest: "/app".into(),
            dest_exists: true,
            source: "/src".into(),
            absent: Absent::default(),
        };
        write_copy_from(&mut out, &input[..], &plan, PathFilter::default()).unwrap();
        let got = names(&out.finish().unwrap());
        assert_eq!(
            got,
            [
                ("app/bin".to_string(), 65534, 0o750, String::new()),
                ("app/bin/x".into(), 65534, 0o750, String::new()),
                // A hard link carries its file's mode: the engine applies it to the shared inode.
                ("app/y".into(), 65534, 0o750, "app/bin/x".into()),
                ("app/l".into(), 65534, 0o777, "bin/x".into()),
            ]
        );
    }

    #[test]
    fn copy_from_a_file_and_hostile_names() {
        use tar::EntryType::*;
        let input = archive(&[("tool", Regular, "bin")]);
        let mut out = TarOut::new(Vec::new(), Overrides::default());
        let plan = CopyFromPlan {
            top: "tool".into(),
            source_is_dir: false,
            dest: "/usr/bin/tool".into(),
            dest_exists: false,
            source: "/src".into(),
            absent: Absent::default(),
        };
        write_copy_from(&mut out, &input[..], &plan, PathFilter::default()).unwrap();
        assert_eq!(names(&out.finish().unwrap())[0].0, "usr/bin/tool");

        // The tar crate refuses to write `..` names, so build the hostile header by hand.
        let mut raw = Vec::new();
        {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..11].copy_from_slice(b"tool/../../");
            h.set_entry_type(Regular);
            h.set_size(0);
            h.set_cksum();
            raw.extend_from_slice(h.as_bytes());
            raw.extend_from_slice(&[0u8; 1024]);
        }
        let mut out = TarOut::new(Vec::new(), Overrides::default());
        let plan = CopyFromPlan {
            top: "tool".into(),
            source_is_dir: true,
            dest: "/x".into(),
            dest_exists: false,
            source: "/src".into(),
            absent: Absent::default(),
        };
        assert!(write_copy_from(&mut out, &raw[..], &plan, PathFilter::default()).is_err());
        assert_eq!(clean_relative("a/../../b"), "b");
        assert_eq!(clean_relative("a/b/../g"), "a/g");
        assert_eq!(clean_relative("/abs/./x/"), "abs/x");
    }

    /// A container of a stage from scratch shows the engine's `/etc` (for its placeholders)
    /// and mount points: a directory the stage may lack is copied only when the stage has
    /// something below it or it is not the engine's plain 0755 root directory; what
    /// `/dev/pts` holds is always the engine's, but not `/dev/pts` of another mode. A
    /// snapshot's archive is copied as it is.
    #[test]
    fn copy_from_leaves_out_what_only_the_engine_made() {
        use tar::EntryType::*;
        // (name, kind, mode): owned by root, as Docker's init layer makes them.
        let archive = |entries: &[(&str, tar::EntryType, u32)]| {
            let mut b = tar::Builder::new(Vec::new());
            for (name, kind, mode) in entries {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(*kind);
                h.set_mode(*mode);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(0);
                match kind {
                    Symlink => b.append_link(&mut h, name, "/proc/mounts").unwrap(),
                    _ => b.append_data(&mut h, name, &[][..]).unwrap(),
                }
            }
            b.into_inner().unwrap()
        };
        let copied = |entries: &[(&str, tar::EntryType, u32)], absent: Absent| {
            let mut out = TarOut::new(Vec::new(), Overrides::default());
            let plan = CopyFromPlan {
                top: ".".into(),
                source_is_dir: true,
                dest: "/b".into(),
                dest_exists: false,
                source: "/".into(),
                absent,
            };
            write_copy_from(
                &mut out,
                &archive(entries)[..],
                &plan,
                PathFilter::default(),
            )
            .unwrap();
            names(&out.finish().unwrap())
                .into_iter()
                .map(|(name, ..)| name)
                .collect::<Vec<_>>()
        };
        let scratch = || Absent {
            container: true,
            mount_points: vec!["/proc", "/sys"],
            maybe: vec!["/etc", "/dev"],
        };
        let engines = [
            ("./", Directory, 0o755),
            ("./dev/", Directory, 0o755),
            ("./dev/console", Regular, 0o755),
            ("./dev/pts/", Directory, 0o755),
            ("./dev/shm/", Directory, 0o755),
            ("./etc/", Directory, 0o755),
            ("./etc/hosts", Regular, 0o755),
            ("./etc/mtab", Symlink, 0o777),
            ("./f", Regular, 0o644),
            ("./proc/", Directory, 0o755),
            ("./sys/", Directory, 0o755),
        ];
        assert_eq!(copied(&engines, scratch()), ["b", "b/f"]);
        // An image that has `/etc` and `/dev` keeps them, even empty.
        let has_etc = Absent {
            maybe: Vec::new(),
            ..scratch()
        };
        assert_eq!(copied(&engines, has_etc), ["b", "b/dev", "b/etc", "b/f"]);
        // What the stage has below them, or of another mode, is its own.
        let owned = [
            ("./", Directory, 0o755),
            ("./dev/", Directory, 0o755),
            ("./dev/README", Regular, 0o644),
            ("./dev/pts/", Directory, 0o700),
            ("./etc/", Directory, 0o755),
            ("./etc/passwd", Regular, 0o644),
        ];
        assert_eq!(
            copied(&owned, scratch()),
            [
                "b",
                "b/dev",
                "b/dev/README",
                "b/dev/pts",
                "b/etc",
                "b/etc/passwd"
            ]
        );
        // A snapshot has no engine's entries: everything is the stage's.
        assert_eq!(
            copied(&engines, Absent::default()),
            [
                "b",
                "b/dev",
                "b/dev/console",
                "b/dev/pts",
                "b/dev/shm",
                "b/etc",
                "b/etc/hosts",
                "b/etc/mtab",
                "b/f",
                "b/proc",
                "b/sys"
            ]
        );
    }

    /// `--exclude` below a copied directory: what it names is left out, a directory it
    /// names comes only before something re-included below it, and a hard link to a file
    /// left out is refused rather than written dangling.
    #[test]
    fn copy_from_applies_the_filter_below_the_source() {
        use tar::EntryType::*;
        let copied = |entries: &[(&str, tar::EntryType, &str)], patterns: &[u8]| {
            let exclude = crate::frontend::dockerignore::DockerIgnore::parse(patterns).unwrap();
            let filter = PathFilter {
                exclude: Some(&exclude),
                include: None,
            };
            let mut out = TarOut::new(Vec::new(), Overrides::default());
            let plan = CopyFromPlan {
                top: "src".into(),
                source_is_dir: true,
                dest: "/d".into(),
                dest_exists: false,
                source: "/src".into(),
                absent: Absent::default(),
            };
            write_copy_from(&mut out, &archive(entries)[..], &plan, filter)?;
            let names = names(&out.finish()?);
            anyhow::Ok(names.into_iter().map(|(n, ..)| n).collect::<Vec<_>>())
        };
        let tree = [
            ("src/", Directory, ""),
            ("src/a/", Directory, ""),
            ("src/a/b/", Directory, ""),
            ("src/a/b/drop", Regular, "x"),
            ("src/a/b/keep", Regular, "k"),
            ("src/a/c/", Directory, ""),
            ("src/a/c/d", Regular, "d"),
            ("src/e", Regular, "e"),
        ];
        assert_eq!(
            copied(&tree, b"a\n!a/b/keep\n").unwrap(),
            ["d", "d/a", "d/a/b", "d/a/b/keep", "d/e"]
        );
        assert_eq!(copied(&tree, b"a\n").unwrap(), ["d", "d/e"]);
        assert_eq!(
            copied(&tree, b"**/drop\n").unwrap(),
            ["d", "d/a", "d/a/b", "d/a/b/keep", "d/a/c", "d/a/c/d", "d/e"]
        );
        let mut linked = tree.to_vec();
        linked.push(("src/l", Link, "src/a/b/drop"));
        let error = copied(&linked, b"**/drop\n").unwrap_err().to_string();
        assert!(
            error.contains("which --exclude or --parents leaves out"),
            "{error}"
        );
    }

    fn add_archive(entries: &[(&str, tar::EntryType, &str)]) -> anyhow::Result<Vec<u8>> {
        add_archive_onto(entries, &names_as_written)
    }

    fn add_archive_onto(
        entries: &[(&str, tar::EntryType, &str)],
        real_dir: RealDir<'_>,
    ) -> anyhow::Result<Vec<u8>> {
        let input = archive(entries);
        let mut out = TarOut::new(Vec::new(), Overrides::default());
        extract_archive_into(&mut out, &input[..], "/dst", real_dir)?;
        Ok(out.finish()?)
    }

    /// `(name, link target)` of each entry that [`names`] lists.
    fn name_and_link(entries: &[(String, u64, u32, String)]) -> Vec<(&str, &str)> {
        entries
            .iter()
            .map(|(name, _, _, link)| (name.as_str(), link.as_str()))
            .collect()
    }

    #[test]
    fn add_archive_entries_land_where_the_images_links_above_them_lead() {
        use tar::EntryType::*;
        // The image has `/dst/var/run -> /run`, as Debian has `/var/run`.
        let real_dir = |dir: &str| {
            dir.strip_prefix("/dst/var/run")
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                .map(|rest| format!("/run{rest}"))
        };
        let got = names(
            &add_archive_onto(
                &[
                    ("var/run/act/", Directory, ""),
                    ("var/run/act/HEAD", Regular, "ref"),
                    ("opt/head-link", Link, "var/run/act/HEAD"),
                    ("var/run", Directory, ""),
                ],
                &real_dir,
            )
            .unwrap(),
        );
        let links = name_and_link(&got);
        assert_eq!(
            links,
            [
                ("run/act", ""),
                ("run/act/HEAD", ""),
                ("dst/opt/head-link", "run/act/HEAD"),
                // An entry at the link's own name replaces it, as an unpacking does.
                ("dst/var/run", ""),
            ]
        );
    }

    #[test]
    fn add_archive_links_are_relative_to_the_destination() {
        use tar::EntryType::*;
        let got = names(
            &add_archive(&[
                ("a/file", Regular, "data"),
                ("b/link", Link, "a/file"),
                ("abs", Link, "/a/file"),
                ("sym", Symlink, "/etc/passwd"),
            ])
            .unwrap(),
        );
        let links = name_and_link(&got);
        assert_eq!(
            links,
            [
                ("dst/a/file", ""),
                ("dst/b/link", "dst/a/file"),
                ("dst/abs", "dst/a/file"),
                // A symlink is stored as it is: it is resolved in the image, never here.
                ("dst/sym", "/etc/passwd"),
            ]
        );
        // A target above the destination stays at its root, as a chrooted unpacking
        // keeps it: below the destination, never above it.
        let up = add_archive(&[("pw", Link, "../../etc/passwd")]).unwrap();
        assert_eq!(name_and_link(&names(&up)), [("dst/pw", "dst/etc/passwd")]);
    }

    #[test]
    fn add_archive_never_writes_through_its_own_symlinks() {
        use tar::EntryType::*;
        let error = add_archive(&[("link", Symlink, "/etc"), ("link/x", Regular, "x")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("writes `link/x` through the symlink `link`"),
            "{error}"
        );
        let error = add_archive(&[
            ("d/", Directory, ""),
            ("d/up", Symlink, ".."),
            ("d/up/deep/x", Regular, "x"),
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("through the symlink `d/up`"), "{error}");
        // A link replaced by a directory of the same name is no longer a link.
        let got = names(
            &add_archive(&[
                ("link", Symlink, "/etc"),
                ("link/", Directory, ""),
                ("link/x", Regular, "x"),
                ("dev", Char, ""),
            ])
            .unwrap(),
        );
        let paths: Vec<&str> = got.iter().map(|(name, ..)| name.as_str()).collect();
        // A device node is unpacked as itself, as BuildKit's unpacking makes it.
        assert_eq!(paths, ["dst/link", "dst/link", "dst/link/x", "dst/dev"]);
    }
}
