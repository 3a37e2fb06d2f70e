//! Collection of the blob store by size budget: the least recently used blobs go first
//! until the rest fit. "Used" is a blob's mtime, which every lookup that finds it and
//! every read of it move ([`oci::BlobStore::contains`], [`oci::BlobStore::open_file`]),
//! so the base layers every build reads stay and the layers of steps long replaced go.
//!
//! Nothing goes while another build may read it. Every open store holds a shared `flock`
//! on `blobs/in-use.lock` ([`InUse`]); collection converts its own to an exclusive one
//! without waiting, and when another process holds the store, skips (the next build that
//! ends alone collects). A build that opens the store meanwhile waits the few
//! milliseconds a collection takes. The lock dies with its process, so a killed build
//! never keeps the store from being collected.
//!
//! What a removed blob was for is found again as any cache finds a miss: a step whose
//! layer is gone runs again ("the step's layer is no longer in the blob store"), a base
//! image's blob is downloaded again.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use rustix::io::Errno;

use super::BlobStore;
use crate::registry::error::{Error, Result};

/// The lock file of the store, beside `sha256/`.
const LOCK_FILE: &str = "in-use.lock";

/// A shared lock on the store, held while a store (or a clone of it) is open.
#[derive(Debug)]
pub(super) struct InUse {
    file: File,
    path: PathBuf,
}

impl InUse {
    /// Takes the shared lock on the store in `dir`, waiting while a collection runs.
    pub(super) fn take(dir: &Path) -> Result<InUse> {
        let path = dir.join(LOCK_FILE);
        let store_err = |source| Error::StoreIo {
            path: path.clone(),
            source,
        };
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(store_err)?;
        rustix::fs::flock(&file, FlockOperation::LockShared).map_err(|e| store_err(e.into()))?;
        Ok(InUse { file, path })
    }
}

/// What [`BlobStore::collect`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    /// How many blobs were removed.
    pub removed: usize,
    /// Bytes (allocated on disk) freed.
    pub freed: u64,
    /// Bytes the remaining blobs take.
    pub kept: u64,
}

impl BlobStore {
    /// Removes the least recently used blobs until the rest take at most `budget` bytes.
    /// `None` when another process has the store open: nothing is removed then.
    pub fn collect(&self, budget: u64) -> Result<Option<Collected>> {
        let lock_err = |e: Errno| Error::StoreIo {
            path: self.in_use.path.clone(),
            source: e.into(),
        };
        let exclusive =
            rustix::fs::flock(&self.in_use.file, FlockOperation::NonBlockingLockExclusive);
        let collected = match exclusive {
            Ok(()) => Some(self.remove_beyond(budget)),
            Err(Errno::WOULDBLOCK) => None,
            Err(e) => return Err(lock_err(e)),
        };
        // Shared again (a failed conversion may have dropped the lock altogether).
        rustix::fs::flock(&self.in_use.file, FlockOperation::LockShared).map_err(lock_err)?;
        collected.transpose()
    }

    fn remove_beyond(&self, budget: u64) -> Result<Collected> {
        let mut blobs = self.blobs.list().map_err(super::from_oci)?;
        blobs.sort_by(|a, b| {
            a.used
                .cmp(&b.used)
                .then_with(|| a.digest.digest().cmp(b.digest.digest()))
        });
        let mut collected = Collected {
            kept: blobs.iter().map(|b| b.allocated).sum(),
            ..Collected::default()
        };
        for blob in &blobs {
            if collected.kept <= budget {
                break;
            }
            self.blobs.remove(&blob.digest).map_err(super::from_oci)?;
            // Where the blob came from is no use without it.
            let _ = fs::remove_file(self.sources.join(format!("{}.json", blob.digest.digest())));
            collected.removed += 1;
            collected.freed += blob.allocated;
            collected.kept -= blob.allocated;
        }
        Ok(collected)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, SystemTime};

    use super::*;

    /// A blob of `len` bytes last used `age` ago.
    fn blob(store: &BlobStore, fill: u8, len: usize, age: Duration) -> oci_spec::image::Digest {
        let bytes = vec![fill; len];
        let digest = store.blobs().put_bytes(&bytes).unwrap();
        File::options()
            .write(true)
            .open(store.blobs().path(&digest))
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
        digest
    }

    #[test]
    fn the_least_recently_used_go_until_the_rest_fit() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let hour = Duration::from_secs(3600);
        let oldest = blob(&store, b'a', 64 << 10, 3 * hour);
        let old = blob(&store, b'b', 64 << 10, 2 * hour);
        let recent = blob(&store, b'c', 64 << 10, hour);
        // Written long ago, but a build found it just now.
        let reused = blob(&store, b'd', 64 << 10, 4 * hour);
        assert!(store.contains(&reused));
        store
            .add_sources(
                &oldest,
                &[crate::registry::BlobSource {
                    registry: "r".into(),
                    repository: "x".into(),
                }],
            )
            .unwrap();
        // Not blobs: left alone whatever their age.
        fs::write(dir.path().join("blobs/sha256/.tmp-x"), [0; 100_000]).unwrap();
        fs::write(dir.path().join("blobs/.tmp-y"), [0; 100_000]).unwrap();

        let size = |d: &oci_spec::image::Digest| {
            fs::metadata(store.blobs().path(d)).unwrap().blocks() * 512
        };
        let sizes = [&oldest, &old, &recent, &reused].map(size);
        let all: u64 = sizes.iter().sum();
        let collected = store.collect(all - 1).unwrap().unwrap();
        assert_eq!(
            collected,
            Collected {
                removed: 1,
                freed: sizes[0],
                kept: all - sizes[0],
            }
        );
        assert!(!store.blobs().path(&oldest).exists());
        assert!(store.sources(&oldest).is_empty());
        let collected = store.collect(sizes[2] + sizes[3]).unwrap().unwrap();
        assert_eq!(collected.removed, 1);
        assert!(!store.blobs().path(&old).exists());
        assert!(store.contains(&recent) && store.contains(&reused));
        assert!(dir.path().join("blobs/sha256/.tmp-x").exists());
        assert!(dir.path().join("blobs/.tmp-y").exists());

        // A budget of nothing takes every blob.
        let collected = store.collect(0).unwrap().unwrap();
        assert_eq!((collected.removed, collected.kept), (2, 0));
    }

    /// Another process with the store open (here: another open of it, with a lock of its
    /// own) holds collection off; once it is gone, collection runs.
    #[test]
    fn nothing_goes_while_another_build_has_the_store_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let digest = blob(&store, b'a', 10, Duration::from_secs(3600));
        let other = BlobStore::open(dir.path()).unwrap();
        assert_eq!(store.collect(0).unwrap(), None);
        assert!(other.contains(&digest));
        drop(other);
        assert_eq!(store.collect(0).unwrap().map(|c| c.removed), Some(1));
        // The store is still held shared: another build opens it without waiting for ever,
        // and this one's collection waits for that one again.
        let other = BlobStore::open(dir.path()).unwrap();
        assert_eq!(store.collect(0).unwrap(), None);
        drop(other);
    }
}
