//! `COPY --from=STAGE|IMAGE`: what a copy takes from a stage's or image's file system, read
//! through the `StageFs` seam (a container of its engine image, or a mounted snapshot), as
//! BuildKit's file backend copies it: wildcards expanded in the source, `--exclude`, and
//! `--parents` with its `/./` pivot.

use std::io::{Seek, SeekFrom, Write};

use anyhow::Context as _;

use super::archive::{Absent, CopyDest, CopyFromPlan, TarOut, write_copy_from};
use super::image_fs::Node;
use super::stage_fs::{self, StageFs};
use crate::context::{Glob, Include, PathFilter, clean_dest, has_wildcards};
use crate::error::InputError;
use crate::frontend::dockerignore::DockerIgnore;
use crate::plan::dispatch::CopyStep;

/// Where a `COPY --from` source goes: `dest` as the COPY names it, whether it is a
/// directory already, where the source's archive is kept while it is rewritten, and what
/// of the source is left out.
#[derive(Clone, Copy)]
struct CopyFromTarget<'a> {
    dest: &'a str,
    dest_exists: bool,
    temp_dir: &'a std::path::Path,
    absent: &'a Absent,
    filter: PathFilter<'a>,
}

/// Adds the `sources` of a stage's or image's file system `source` to `out`, as
/// `COPY --from=… sources… dest` places them: wildcards expanded in the source, as
/// BuildKit expands them (one that matches nothing copies nothing), `--exclude` applied
/// below each source, `--parents` as [`copy_parents`]. `absent`: what an engine container
/// shows that the image lacks (Docker's init layer), left out. Returns whether anything
/// matched; nothing is written, not even the destination's parents, when nothing did.
pub(super) async fn copy_from_sources<W: Write>(
    source: &impl StageFs,
    absent: &Absent,
    copy: &CopyStep,
    dest: &CopyDest,
    temp_dir: &std::path::Path,
    out: &mut TarOut<W>,
) -> anyhow::Result<bool> {
    let exclude = exclude_patterns(copy)?;
    let target = CopyFromTarget {
        dest: &copy.dest,
        dest_exists: dest.is_dir,
        temp_dir,
        absent,
        filter: PathFilter {
            exclude: exclude.as_ref(),
            include: None,
        },
    };
    if copy.parents {
        return copy_parents(source, copy, dest, &target, out).await;
    }
    let mut sources = Vec::new();
    for src in &copy.sources {
        let absolute = clean_dest(&format!("/{src}"));
        if !absolute.split('/').any(has_wildcards) {
            sources.push(absolute);
            continue;
        }
        for (path, relative) in expand_wildcard(source, src, &absolute, &target).await? {
            // As from the context (`context::select`): a directory the wildcard matches is
            // copied with `--exclude` applied below it, a file it matches may be left out.
            if exclude.as_ref().is_some_and(|e| e.is_excluded(&relative))
                && !is_dir(source, &path).await?
            {
                continue;
            }
            sources.push(path);
        }
    }
    if sources.is_empty() {
        return Ok(false);
    }
    dest.start(out)?;
    // Several matches are copied onto the destination in turn, as BuildKit copies each:
    // once a directory's contents are there, it is a directory for the matches after it.
    let mut dest_exists = dest.is_dir;
    for src in &sources {
        let target = CopyFromTarget {
            dest_exists,
            ..target
        };
        dest_exists |= copy_from_source(source, src, &target, out).await?;
    }
    Ok(true)
}

/// `COPY --from=… --parents [BASE/./]PATTERN… DEST`: BuildKit copies what PATTERN includes
/// of BASE's contents (the root's, without a `/./`) into DEST, keeping their paths below
/// BASE, with the directories between; BASE may have wildcards. A PATTERN without
/// wildcards must exist (dockerfile2llb's `RequiredPaths`); one with wildcards may match
/// nothing, and DEST is still made.
async fn copy_parents<W: Write>(
    source: &impl StageFs,
    copy: &CopyStep,
    dest: &CopyDest,
    target: &CopyFromTarget<'_>,
    out: &mut TarOut<W>,
) -> anyhow::Result<bool> {
    let mut copies = Vec::new();
    for src in &copy.sources {
        // The first `/./` is the pivot, as BuildKit cuts it; later ones are cleaned away.
        let (base, pattern) = src.split_once("/./").unwrap_or(("/", src));
        let base = clean_dest(&format!("/{base}"));
        let pattern = clean_dest(&format!("/{pattern}"));
        let components: Vec<String> = pattern
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        let include = match components.is_empty() {
            true => None,
            false => Some(Include::new(&components).map_err(|reason| {
                InputError::new(format!("COPY --from --parents {src}: {reason}")).with_hint(
                    "wildcards follow Go's filepath.Match: * ? [a-z] [^a-z], ** for any directories",
                )
            })?),
        };
        let wildcard_base = base.split('/').any(has_wildcards);
        if !wildcard_base && !components.iter().any(|c| has_wildcards(c)) {
            let required = clean_dest(&format!("{base}/{pattern}"));
            if !exists(source, &required).await? {
                return Err(InputError::new(format!(
                    "COPY --from --parents: `{required}` not found in the source"
                ))
                .with_hint("check the path in the stage or image copied from")
                .into());
            }
        }
        let bases = match wildcard_base {
            true => expand_wildcard(source, src, &base, target)
                .await?
                .into_iter()
                .map(|(path, _)| path)
                .collect(),
            false => vec![base],
        };
        copies.push((bases, include));
    }
    if copies.iter().all(|(bases, _)| bases.is_empty()) {
        return Ok(false);
    }
    dest.start(out)?;
    let mut dest_exists = dest.is_dir;
    for (bases, include) in &copies {
        for base in bases {
            let target = CopyFromTarget {
                dest_exists,
                filter: PathFilter {
                    include: include.as_ref(),
                    ..target.filter
                },
                ..*target
            };
            dest_exists |= copy_from_source(source, base, &target, out).await?;
        }
    }
    Ok(true)
}

/// The `--exclude` patterns of `copy`, checked when the plan was made.
fn exclude_patterns(copy: &CopyStep) -> anyhow::Result<Option<DockerIgnore>> {
    if copy.exclude.is_empty() {
        return Ok(None);
    }
    let patterns = copy.exclude.join("\n");
    DockerIgnore::parse(patterns.as_bytes())
        .map(Some)
        .map_err(|e| InputError::new(format!("COPY --exclude: {e}")).into())
}

/// Whether something is at `path` of `source`, its symlinks followed.
async fn exists(source: &impl StageFs, path: &str) -> anyhow::Result<bool> {
    Ok(stage_fs::resolve(source, path)
        .await?
        .is_ok_and(|resolved| resolved.node.is_some()))
}

/// Whether `path` of `source` is a directory, its symlinks followed.
async fn is_dir(source: &impl StageFs, path: &str) -> anyhow::Result<bool> {
    Ok(stage_fs::resolve(source, path)
        .await?
        .is_ok_and(|resolved| resolved.node == Some(Node::Dir)))
}

/// The paths of `source` that the wildcard source `src` (cleaned: `absolute`) matches,
/// sorted, each with its path below the directory before the first wildcard: BuildKit's
/// `resolveWildcards`, each component after the first wildcard matched with Go's
/// `filepath.Match` against the names below the directory before it. What only an engine
/// container of the source shows is no match (`target.absent`).
async fn expand_wildcard(
    source: &impl StageFs,
    src: &str,
    absolute: &str,
    target: &CopyFromTarget<'_>,
) -> anyhow::Result<Vec<(String, String)>> {
    let CopyFromTarget {
        temp_dir, absent, ..
    } = *target;
    let components: Vec<&str> = absolute.split('/').filter(|c| !c.is_empty()).collect();
    let first = components
        .iter()
        .position(|c| has_wildcards(c))
        .unwrap_or(components.len());
    let (base, pattern) = components.split_at(first);
    let globs = pattern
        .iter()
        .map(|c| Glob::new(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| {
            InputError::new(format!("COPY --from {src}: invalid wildcard: {reason}"))
                .with_hint("wildcards follow Go's filepath.Match: * ? [a-z] [^a-z], and \\ escapes")
        })?;
    let base = format!("/{}", base.join("/"));
    let resolved = stage_fs::resolve(source, &base)
        .await?
        .map_err(|e| InputError::new(format!("COPY --from {src}: {e}")))?;
    if resolved.node != Some(Node::Dir) {
        // BuildKit walks the directory before the wildcard: nothing there, no match.
        return Ok(Vec::new());
    }
    let mut spool = tempfile::tempfile_in(temp_dir)
        .context("creating a temporary file for a COPY --from listing")?;
    source.archive(&resolved.path, &mut spool).await?;
    spool.seek(SeekFrom::Start(0))?;
    let names = tokio::task::block_in_place(|| archive_names(spool))?;
    let mut matches = Vec::new();
    for (name, utf8) in &names {
        // The archive names its entries after the directory (`base/…`), or after `.` for
        // the root, which the clean name leaves out.
        let rest = match resolved.path.as_str() {
            "/" if !name.is_empty() => name.as_str(),
            "/" => continue,
            _ => match name.split_once('/') {
                Some((_, rest)) => rest,
                None => continue,
            },
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() != globs.len() || !parts.iter().zip(&globs).all(|(p, g)| g.matches(p)) {
            continue;
        }
        let path = crate::context::clean_dest(&format!("{base}/{rest}"));
        if !utf8 {
            // Paths are strings here: such a name could not be found again to be copied.
            return Err(InputError::new(format!(
                "COPY --from {src}: `{path}` in the source has a name that is not UTF-8, \
                 which imgbuild cannot copy by a wildcard"
            ))
            .with_hint("copy the directory that holds it instead, or rename it in the stage")
            .into());
        }
        let etc_names = names.iter().filter_map(|(n, _)| {
            n.strip_prefix("etc/")
                .filter(|n| !n.contains('/'))
                .filter(|_| resolved.path == "/")
        });
        if absent.is_engines(&path, etc_names) {
            continue;
        }
        matches.push((path, rest.to_owned()));
    }
    matches.sort();
    matches.dedup();
    Ok(matches)
}

/// The clean names of a tar's entries, each with whether it is UTF-8 (else shown lossily).
fn archive_names(file: std::fs::File) -> anyhow::Result<Vec<(String, bool)>> {
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    let mut names = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let bytes = entry.path_bytes();
        let utf8 = std::str::from_utf8(&bytes).is_ok();
        let name = super::archive::clean_relative(&String::from_utf8_lossy(&bytes));
        names.push((name, utf8));
    }
    Ok(names)
}

/// Adds `src` (absolute, clean) of `source` to `out`, renamed as `COPY src dest` places
/// it. Returns whether `src` is a directory (so the destination is one now).
async fn copy_from_source<W: Write>(
    source: &impl StageFs,
    src: &str,
    target: &CopyFromTarget<'_>,
    out: &mut TarOut<W>,
) -> anyhow::Result<bool> {
    let CopyFromTarget {
        dest,
        dest_exists,
        temp_dir,
        absent,
        filter,
    } = *target;
    // The source's symlinks are followed, the last one too, as BuildKit follows them.
    let resolved = stage_fs::resolve(source, src)
        .await?
        .map_err(|e| InputError::new(format!("COPY --from {src}: {e}")))?;
    let Some(node) = resolved.node else {
        return Err(
            InputError::new(format!("COPY --from: `{src}` not found in the source"))
                .with_hint("check the path in the stage or image copied from")
                .into(),
        );
    };
    let path = resolved.path;
    // The root's archive names its entries after `.`.
    let top = match path.rsplit('/').next().unwrap_or_default() {
        "" => ".".to_owned(),
        name => name.to_owned(),
    };
    let source_is_dir = node == Node::Dir;
    let dest_clean = crate::context::clean_dest(dest);
    let target = if source_is_dir {
        dest_clean
    } else if dest.ends_with('/') || dest_exists {
        // Named as the source is named, not as the link it may be points.
        let name = src.rsplit('/').next().unwrap_or_default();
        format!("{}/{}", dest_clean.trim_end_matches('/'), name)
    } else {
        dest_clean
    };
    let plan = CopyFromPlan {
        top,
        source_is_dir,
        dest: target,
        dest_exists: source_is_dir && dest_exists,
        source: path.clone(),
        absent: absent.clone(),
    };
    // The archive goes through a temporary file, not memory: it may be gigabytes.
    let mut spool =
        tempfile::tempfile_in(temp_dir).context("creating a temporary file for a COPY --from")?;
    source.archive(&path, &mut spool).await?;
    spool.seek(SeekFrom::Start(0))?;
    let reader = std::io::BufReader::with_capacity(1 << 20, spool);
    tokio::task::block_in_place(|| write_copy_from(out, reader, &plan, filter))?;
    Ok(source_is_dir)
}
