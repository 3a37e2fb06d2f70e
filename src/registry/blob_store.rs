//! The local content-addressed blob store, shared by every build: `<cache>/blobs/sha256/<hex>`.
//!
//! The blobs themselves are an [`oci::BlobStore`] (the one the build writes its layers to):
//! a blob is written to a temporary file beside them and renamed into place only after its
//! digest (and size, when known) checked out, so a reader never sees a partial or wrong
//! blob, and concurrent builds fetching the same blob both end with the same file. Blobs are
//! immutable; manifests and configs are kept here too (they are content-addressed as well).
//!
//! Beside the blobs, `<cache>/blob-sources/sha256/<hex>.json` records which repositories of
//! which registries are known to hold each blob, so a push can mount a base layer from the
//! repository it was pulled from instead of uploading it.
//!
//! The store is a cache: [`BlobStore::collect`] removes the least recently used blobs beyond a size
//! budget, never while another build has the store open.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Digest, DigestAlgorithm};
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use crate::oci;

mod collect;

pub use collect::Collected;

/// Where a blob is known to exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobSource {
    /// The registry as references name it (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    pub repository: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SourcesFile {
    sources: Vec<BlobSource>,
}

/// A directory of verified blobs and where they came from. Cheap to clone (two paths and
/// the shared lock that keeps collection off while it is open: [`BlobStore::collect`]).
#[derive(Debug, Clone)]
pub struct BlobStore {
    blobs: oci::BlobStore,
    sources: PathBuf,
    in_use: std::sync::Arc<collect::InUse>,
}

impl BlobStore {
    /// Opens (creating) the store under a cache directory.
    pub fn open(cache_dir: &Path) -> Result<BlobStore> {
        let blobs = oci::BlobStore::open(cache_dir.join("blobs")).map_err(from_oci)?;
        let sources = cache_dir.join("blob-sources").join("sha256");
        fs::create_dir_all(&sources).map_err(|source| Error::StoreIo {
            path: sources.clone(),
            source,
        })?;
        let in_use = std::sync::Arc::new(collect::InUse::take(blobs.root())?);
        Ok(BlobStore {
            blobs,
            sources,
            in_use,
        })
    }

    /// The blobs themselves, for code that writes layers into the same store.
    pub fn blobs(&self) -> &oci::BlobStore {
        &self.blobs
    }

    /// The path a blob has (or would have) in the store.
    pub fn path(&self, digest: &Digest) -> Result<PathBuf> {
        sha256_hex(digest)?;
        Ok(self.blobs.path(digest))
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        sha256_hex(digest).is_ok() && self.blobs.contains(digest)
    }

    /// Opens a stored blob, as a use of it. Blobs were verified when written and are never
    /// modified.
    pub fn open_blob(&self, digest: &Digest) -> io::Result<File> {
        sha256_hex(digest)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.blobs.open_file(digest)
    }

    /// Reads a small blob (manifest, config) and checks its digest again; a blob that no
    /// longer matches (disk corruption, tampering) is removed and reported missing.
    pub fn read_verified(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.path(digest)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::StoreIo { path, source }),
        };
        if digest_of(&bytes).digest() == digest.digest() {
            self.blobs.mark_used(digest);
            Ok(Some(bytes))
        } else {
            let _ = fs::remove_file(&path);
            Ok(None)
        }
    }

    /// Stores bytes under their digest after checking it.
    pub fn put_bytes(&self, digest: &Digest, bytes: &[u8], what: &str) -> Result<()> {
        let mut writer = self.writer(digest, Some(bytes.len() as u64), what)?;
        writer.write(bytes)?;
        writer.commit()
    }

    /// A writer for a blob; nothing is visible in the store until [`BlobWriter::commit`]
    /// succeeds. Dropping it uncommitted removes the temporary file.
    pub fn writer(&self, digest: &Digest, size: Option<u64>, what: &str) -> Result<BlobWriter> {
        sha256_hex(digest)?;
        let temp = self.blobs.temp_file().map_err(from_oci)?;
        Ok(BlobWriter {
            out: oci::HashingWriter::new(temp),
            blobs: self.blobs.clone(),
            written: 0,
            expected: digest.clone(),
            size,
            what: what.to_owned(),
        })
    }

    /// The repositories known to hold a blob.
    pub fn sources(&self, digest: &Digest) -> Vec<BlobSource> {
        let Ok(hex) = sha256_hex(digest) else {
            return Vec::new();
        };
        fs::read(self.sources.join(format!("{hex}.json")))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<SourcesFile>(&bytes).ok())
            .map(|file| file.sources)
            .unwrap_or_default()
    }

    /// Records that repositories hold a blob. Best effort by design: a lost record only
    /// costs a mount, so concurrent writers may overwrite each other.
    pub fn add_sources(&self, digest: &Digest, new: &[BlobSource]) -> Result<()> {
        let hex = sha256_hex(digest)?;
        let mut file = SourcesFile {
            sources: self.sources(digest),
        };
        let before = file.sources.len();
        for source in new {
            if !file.sources.contains(source) {
                file.sources.push(source.clone());
            }
        }
        if file.sources.len() == before {
            return Ok(());
        }
        let path = self.sources.join(format!("{hex}.json"));
        let store_err = |source| Error::StoreIo {
            path: path.clone(),
            source,
        };
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.sources)
            .map_err(store_err)?;
        let json = serde_json::to_vec(&file).map_err(|e| store_err(e.into()))?;
        temp.write_all(&json).map_err(store_err)?;
        temp.persist(&path).map_err(|e| store_err(e.error))?;
        Ok(())
    }
}

/// A blob being written: hashed as it goes, renamed into place on a successful commit.
pub struct BlobWriter {
    out: oci::HashingWriter<tempfile::NamedTempFile>,
    blobs: oci::BlobStore,
    /// Counted here too: the size is checked before each write, not only at the end.
    written: u64,
    expected: Digest,
    size: Option<u64>,
    what: String,
}

impl BlobWriter {
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.written += bytes.len() as u64;
        if let Some(size) = self.size
            && self.written > size
        {
            return Err(Error::SizeMismatch {
                what: self.what.clone(),
                expected: size,
                actual: self.written,
            });
        }
        self.out.write_all(bytes).map_err(|source| Error::StoreIo {
            path: self.blobs.root().to_owned(),
            source,
        })
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// A handle on the temporary file, for a reader that follows the writes
    /// ([`super::follow::BlobFollow`]).
    pub fn follow_handle(&self) -> io::Result<File> {
        self.out.get_ref().as_file().try_clone()
    }

    /// Checks size and digest, then moves the blob into place. On a mismatch the
    /// temporary file is removed and nothing is kept.
    pub fn commit(self) -> Result<()> {
        if let Some(size) = self.size
            && self.written != size
        {
            return Err(Error::SizeMismatch {
                what: self.what,
                expected: size,
                actual: self.written,
            });
        }
        let (temp, actual, _) = self.out.finish();
        if actual.digest() != self.expected.digest() {
            return Err(Error::DigestMismatch {
                what: self.what,
                expected: self.expected,
                actual: actual.to_string(),
            });
        }
        self.blobs.commit(temp, &self.expected).map_err(from_oci)?;
        Ok(())
    }
}

/// The hex of a sha256 digest; other algorithms are refused (the store and the registry
/// client hash with sha256 only).
pub fn sha256_hex(digest: &Digest) -> Result<&str> {
    match digest.algorithm() {
        DigestAlgorithm::Sha256 => Ok(digest.digest()),
        other => Err(Error::Client(format!(
            "digest `{digest}` uses {other}; imgbuild only handles sha256 digests"
        ))),
    }
}

/// `sha256:<hex>` of some bytes.
pub fn digest_of(bytes: &[u8]) -> Digest {
    oci::sha256_digest(bytes)
}

/// The oci store's I/O errors keep their context (operation and path).
fn from_oci(err: oci::Error) -> Error {
    match err {
        oci::Error::Io { context, source } => Error::Io { context, source },
        other => Error::Client(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = BlobStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        (dir, store)
    }

    fn temp_files(store: &BlobStore) -> usize {
        fs::read_dir(store.blobs.root())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                    .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn verified_blobs_are_kept_under_their_digest() {
        let (dir, store) = store();
        let digest = digest_of(b"hello");
        store
            .put_bytes(&digest, b"hello", "test blob")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            dir.path()
                .join("blobs/sha256")
                .join(digest.digest())
                .is_file()
        );
        assert_eq!(
            store.read_verified(&digest).ok().flatten().as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(temp_files(&store), 0);
    }

    #[test]
    fn the_build_and_the_registry_share_one_blob_directory() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, store) = store();
        let oci_store =
            oci::BlobStore::open(dir.path().join("blobs")).unwrap_or_else(|e| panic!("{e}"));
        let pulled = digest_of(b"pulled layer");
        store
            .put_bytes(&pulled, b"pulled layer", "layer")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(oci_store.contains(&pulled));
        let built = oci_store
            .put_bytes(b"built config")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(store.contains(&built));
        // Written by the same code, so with the same mode (world-readable, as in a layout).
        let mode = |digest: &Digest| {
            fs::metadata(oci_store.path(digest)).map(|m| m.permissions().mode() & 0o777)
        };
        assert_eq!(mode(&pulled).ok(), Some(0o644));
        assert_eq!(mode(&pulled).ok(), mode(&built).ok());
    }

    #[test]
    fn a_wrong_digest_or_size_is_an_error_and_nothing_is_kept() {
        let (_dir, store) = store();
        let digest = digest_of(b"hello");
        let err = store.put_bytes(&digest, b"jello", "layer x");
        assert!(matches!(err, Err(Error::DigestMismatch { .. })), "{err:?}");
        assert!(!store.contains(&digest));
        assert_eq!(temp_files(&store), 0);

        let mut writer = store
            .writer(&digest, Some(3), "layer y")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            writer.write(b"hello"),
            Err(Error::SizeMismatch { .. })
        ));
        drop(writer);
        assert!(!store.contains(&digest));
        assert_eq!(temp_files(&store), 0);
    }

    #[test]
    fn corrupted_small_blobs_are_dropped_on_read() {
        let (_dir, store) = store();
        let digest = digest_of(b"manifest");
        store
            .put_bytes(&digest, b"manifest", "m")
            .unwrap_or_else(|e| panic!("{e}"));
        let path = store.path(&digest).unwrap_or_else(|e| panic!("{e}"));
        fs::write(&path, b"tampered").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.read_verified(&digest).ok(), Some(None));
        assert!(!path.exists());
    }

    #[test]
    fn sources_accumulate_without_duplicates() {
        let (_dir, store) = store();
        let digest = digest_of(b"layer");
        let a = BlobSource {
            registry: "r:5000".into(),
            repository: "base".into(),
        };
        let b = BlobSource {
            registry: "r:5000".into(),
            repository: "app".into(),
        };
        assert!(store.sources(&digest).is_empty());
        for batch in [vec![a.clone()], vec![a.clone(), b.clone()], vec![b.clone()]] {
            store
                .add_sources(&digest, &batch)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(store.sources(&digest), vec![a, b]);
    }

    #[test]
    fn only_sha256_is_accepted() {
        let (_dir, store) = store();
        let digest: Digest = format!("sha512:{}", "a".repeat(128))
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(store.path(&digest).is_err());
        assert!(!store.contains(&digest));
    }
}
