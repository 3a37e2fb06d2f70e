//! The digest of a selection: a canonical, versioned serialisation of its entries hashed
//! with SHA-256, file contents streamed through SHA-256 on several threads.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use super::archive::open_no_follow;
use super::{EntryKind, Error, Selection, SelectionDigest};

/// Bump when the serialisation changes, so old cache keys can never collide with new ones.
const FORMAT: &[u8] = b"imgbuild.context.selection.v1\n";
/// Below this many files, threads cost more than they save.
const PARALLEL_FROM: usize = 64;
const BUFFER: usize = 256 * 1024;

pub(super) fn digest(root: &Path, selection: &Selection) -> Result<SelectionDigest, Error> {
    // Regular files and archives are read; everything else is described by its entry.
    let jobs: Vec<(usize, &Path, Option<u64>)> = selection
        .entries
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| match entry.kind {
            EntryKind::File { size, .. } => Some((index, entry.source.as_path(), Some(size))),
            EntryKind::Archive => Some((index, entry.source.as_path(), None)),
            _ => None,
        })
        .collect();
    let hashes = hash_all(&jobs)?;
    let mut by_entry: Vec<Option<[u8; 32]>> = vec![None; selection.entries.len()];
    for ((index, _, _), hash) in jobs.iter().zip(&hashes) {
        if let Some(slot) = by_entry.get_mut(*index) {
            *slot = Some(*hash);
        }
    }

    let mut hasher = Sha256::new();
    hasher.update(FORMAT);
    let mut files = BTreeMap::new();
    // Hard links name an earlier entry: their source file has its content.
    let mut by_target: HashMap<&str, [u8; 32]> = HashMap::new();
    for (entry, content) in selection.entries.iter().zip(&by_entry) {
        field(&mut hasher, entry.target.as_bytes());
        let (tag, payload): (&[u8], Vec<u8>) = match (&entry.kind, content) {
            (EntryKind::Dir, _) => (b"dir", Vec::new()),
            (EntryKind::File { .. }, Some(hash)) => (b"file", hash.to_vec()),
            (EntryKind::Archive, Some(hash)) => (b"archive", hash.to_vec()),
            (EntryKind::Symlink { target }, _) => (b"symlink", target.as_bytes().to_vec()),
            (EntryKind::Hardlink { target }, _) => (b"hardlink", target.as_bytes().to_vec()),
            (EntryKind::File { .. } | EntryKind::Archive, None) => {
                anyhow::bail!("internal error: `{}` was not hashed", entry.target)
            }
        };
        field(&mut hasher, tag);
        field(&mut hasher, &entry.mode.to_be_bytes());
        field(&mut hasher, &[u8::from(entry.implicit)]);
        field(&mut hasher, &payload);
        let content = match &entry.kind {
            EntryKind::Hardlink { target } => by_target.get(target.as_str()).copied(),
            _ => *content,
        };
        if let Some(hash) = content {
            by_target.insert(&entry.target, hash);
            files.insert(
                relative(root, &entry.source),
                format!("sha256:{}", hex::encode(hash)),
            );
        }
    }
    Ok(SelectionDigest {
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        files,
    })
}

/// A length-prefixed field: no two different entry lists serialise to the same bytes.
fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

fn relative(root: &Path, source: &Path) -> String {
    source
        .strip_prefix(root)
        .unwrap_or(source)
        .to_string_lossy()
        .into_owned()
}

/// Hashes every job, on up to four threads pulling from a shared counter (small files
/// cost a syscall each, large ones SHA-256 time: both spread well). Results come back in
/// job order; the first error in job order wins, so failures are deterministic.
fn hash_all(jobs: &[(usize, &Path, Option<u64>)]) -> Result<Vec<[u8; 32]>, Error> {
    let threads = if jobs.len() < PARALLEL_FROM {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
    };
    let next = AtomicUsize::new(0);
    let work = || {
        let mut buffer = vec![0u8; BUFFER];
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((_, path, size)) = jobs.get(i) else {
                break;
            };
            done.push((i, hash_file(path, *size, &mut buffer)));
        }
        done
    };
    let mut results: Vec<(usize, Result<[u8; 32], Error>)> = if threads == 1 {
        work()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            let mut all = Vec::with_capacity(jobs.len());
            for handle in handles {
                match handle.join() {
                    Ok(done) => all.extend(done),
                    Err(_) => all.push((0, Err(anyhow::anyhow!("a hashing thread panicked")))),
                }
            }
            all
        })
    };
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, hash)| hash).collect()
}

/// Streams one file through SHA-256, refusing one that changed type or size since it was
/// selected (the layer writer reads it again: the key must describe what it writes).
fn hash_file(path: &Path, size: Option<u64>, buffer: &mut [u8]) -> Result<[u8; 32], Error> {
    let shown = || PathBuf::from(path).display().to_string();
    let mut file = open_no_follow(path).with_context(|| format!("reading `{}`", shown()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading `{}`", shown()))?;
    if !meta.is_file() {
        anyhow::bail!(
            "`{}` changed while imgbuild was reading the build context: it is no longer a regular file",
            shown()
        );
    }
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    loop {
        let n = match file.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading `{}`", shown()))),
        };
        hasher.update(buffer.get(..n).unwrap_or_default());
        total += n as u64;
    }
    if let Some(expected) = size
        && expected != total
    {
        anyhow::bail!(
            "`{}` changed while imgbuild was reading the build context ({expected} bytes, then {total})",
            shown()
        );
    }
    Ok(hasher.finalize().into())
}
