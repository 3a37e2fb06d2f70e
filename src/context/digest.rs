//! The digest of a selection: a canonical, versioned serialisation of its entries hashed
//! with SHA-256, file contents streamed through SHA-256 on several threads.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use super::archive::open_no_follow;
use super::path::compare;
use super::{Entry, EntryKind, Error, Selection, SelectionDigest};

/// Bump when the serialisation changes, so old cache keys can never collide with new ones.
const FORMAT: &[u8] = b"imgbuild.context.selection.v1\n";
/// Below this many bytes to hash, threads cost more than they save (see `hash_contents`).
const PARALLEL_FROM_BYTES: u64 = 64 << 20;
/// Entries claimed at a time by a hashing thread.
const CHUNK: usize = 32;
const BUFFER: usize = 256 * 1024;

type Hash = [u8; 32];

/// What one hashing thread did: hashes by entry index, and the error that stopped it.
struct Outcome {
    done: Vec<(usize, Hash)>,
    failure: Option<(usize, Error)>,
}

pub(super) fn digest(root: &Path, selection: &Selection) -> Result<SelectionDigest, Error> {
    let entries = &selection.entries;
    let contents = hash_contents(entries)?;
    let mut hasher = Sha256::new();
    hasher.update(FORMAT);
    let mut files = BTreeMap::new();
    for (entry, content) in entries.iter().zip(&contents) {
        field(&mut hasher, entry.target.as_bytes());
        let (tag, payload): (&[u8], &[u8]) = match (&entry.kind, content) {
            (EntryKind::Dir, _) => (b"dir", b""),
            (EntryKind::Socket, _) => (b"socket", b""),
            (EntryKind::File { .. }, Some(hash)) => (b"file", hash),
            (EntryKind::Archive, Some(hash)) => (b"archive", hash),
            (EntryKind::Symlink { target }, _) => (b"symlink", target.as_bytes()),
            (EntryKind::Hardlink { target }, _) => (b"hardlink", target.as_bytes()),
            (EntryKind::File { .. } | EntryKind::Archive, None) => {
                anyhow::bail!("internal error: `{}` was not hashed", entry.target)
            }
        };
        field(&mut hasher, tag);
        field(&mut hasher, &entry.mode.to_be_bytes());
        field(&mut hasher, &[u8::from(entry.implicit)]);
        // Only a context that keeps owners has them: other keys are as they were.
        if let Some((uid, gid)) = entry.owner {
            field(&mut hasher, format!("owner {uid}:{gid}").as_bytes());
        }
        field(&mut hasher, payload);
        // A hard link's source file has the content of the entry it names.
        let content = match &entry.kind {
            EntryKind::Hardlink { target } => entries
                .binary_search_by(|e| compare(&e.target, target))
                .ok()
                .and_then(|i| contents.get(i).copied().flatten()),
            _ => *content,
        };
        if let Some(hash) = content {
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

/// What is read of an entry: a regular file (whose size must not have changed) or an
/// archive.
fn to_read(entry: &Entry) -> Option<Option<u64>> {
    match entry.kind {
        EntryKind::File { size, .. } => Some(Some(size)),
        EntryKind::Archive => Some(None),
        _ => None,
    }
}

/// The content hash of every file and archive entry (`None` for the others). On failure
/// the error of the first entry that failed is returned, so failures are deterministic.
///
/// Threads pull chunks of entries from a shared counter, but only when there are many
/// bytes to hash. Measured here (debug build, files in tmpfs, 2 cores shared with other
/// builds at load 5–8): 100,000 small files hash in 0.75–0.85 s on one thread and
/// 1.0–1.1 s on two (the cost is syscalls, which contend); 800 MiB go at 1.0 GB/s on one
/// thread and 1.1–2.1 GB/s on two (SHA-256 time splits across cores).
fn hash_contents(entries: &[Entry]) -> Result<Vec<Option<Hash>>, Error> {
    let bytes: u64 = entries
        .iter()
        .map(|e| match e.kind {
            EntryKind::File { size, .. } => size,
            _ => 0,
        })
        .sum();
    let threads = if bytes < PARALLEL_FROM_BYTES {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
    };
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || {
        let mut buffer = vec![0u8; BUFFER];
        let mut done: Vec<(usize, Hash)> = Vec::new();
        let mut failure: Option<(usize, Error)> = None;
        'claim: while !failed.load(Ordering::Relaxed) {
            let start = next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= entries.len() {
                break;
            }
            for i in start..(start + CHUNK).min(entries.len()) {
                let Some(entry) = entries.get(i) else { break };
                let Some(size) = to_read(entry) else { continue };
                match hash_file(&entry.source, size, &mut buffer) {
                    Ok(hash) => done.push((i, hash)),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        failure = Some((i, e));
                        break 'claim;
                    }
                }
            }
        }
        Outcome { done, failure }
    };
    let outcomes: Vec<Outcome> = if threads == 1 {
        vec![work()]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| Outcome {
                        done: Vec::new(),
                        failure: Some((0, anyhow::anyhow!("a hashing thread panicked"))),
                    })
                })
                .collect()
        })
    };
    let mut contents: Vec<Option<Hash>> = vec![None; entries.len()];
    let mut first_failure: Option<(usize, Error)> = None;
    for Outcome { done, failure } in outcomes {
        for (i, hash) in done {
            if let Some(slot) = contents.get_mut(i) {
                *slot = Some(hash);
            }
        }
        if let Some((i, e)) = failure
            && first_failure.as_ref().is_none_or(|(first, _)| i < *first)
        {
            first_failure = Some((i, e));
        }
    }
    match first_failure {
        Some((_, e)) => Err(e),
        None => Ok(contents),
    }
}

/// Streams one file through SHA-256, refusing one that changed type or size since it was
/// selected (the layer writer reads it again: the key must describe what it writes).
fn hash_file(path: &Path, size: Option<u64>, buffer: &mut [u8]) -> Result<Hash, Error> {
    let shown = || path.display().to_string();
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
