//! A content-addressed blob directory (`ROOT/sha256/HEX`), laid out like an OCI layout's
//! `blobs/`. Blobs are written under a temporary name and renamed into place once complete
//! and verified, so a blob path never holds a partial blob.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use oci_spec::image::{Descriptor, Digest};
use tempfile::NamedTempFile;

use super::digest::{HashingWriter, VerifyingReader, require_sha256};
use super::error::{Error, IoContext, Result};

/// Blobs are world-readable whatever the umask, as in every OCI layout.
const BLOB_MODE: u32 = 0o644;

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// A blob found by [`BlobStore::list`].
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub digest: Digest,
    /// When a lookup last found it (its mtime: see [`BlobStore::contains`]).
    pub used: SystemTime,
    /// The bytes it takes on disk.
    pub allocated: u64,
}

impl BlobStore {
    /// Opens (creating if needed) a blob store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let sha = root.join("sha256");
        fs::create_dir_all(&sha).with_path("creating blob directory", &sha)?;
        Ok(BlobStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join(digest.algorithm().as_ref())
            .join(digest.digest())
    }

    /// Whether the blob is here. One that is counts as used now: its mtime moves, so a
    /// collection by size budget, least recently used first, keeps what builds use
    /// (`registry::BlobStore::collect`).
    pub fn contains(&self, digest: &Digest) -> bool {
        let found = self.path(digest).is_file();
        if found {
            self.mark_used(digest);
        }
        found
    }

    /// Moves the blob's mtime to now, which collection reads as its last use.
    pub fn mark_used(&self, digest: &Digest) {
        // Only a hint for collection: a store on a read-only mount still serves.
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            self.path(digest),
            &used_now(),
            rustix::fs::AtFlags::empty(),
        );
    }

    /// Opens the blob for reading, as a use of it (see [`contains`](Self::contains)).
    pub fn open_file(&self, digest: &Digest) -> io::Result<File> {
        let file = File::open(self.path(digest))?;
        self.mark_used(digest);
        Ok(file)
    }

    /// Every blob in the store; temporary files and whatever is not a sha256 blob are left
    /// out. A blob removed while the store is read is not listed.
    pub fn list(&self) -> Result<Vec<StoredBlob>> {
        let dir = self.root.join("sha256");
        let mut blobs = Vec::new();
        for entry in fs::read_dir(&dir).with_path("listing the blobs in", &dir)? {
            let entry = entry.with_path("listing the blobs in", &dir)?;
            let name = entry.file_name();
            let Some(digest) = name
                .to_str()
                .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
            else {
                continue;
            };
            // Not followed: a symlink is nothing a store wrote.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_path("reading", &entry.path()),
            };
            if meta.is_file() {
                blobs.push(StoredBlob {
                    digest,
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    allocated: meta.blocks() * 512,
                });
            }
        }
        Ok(blobs)
    }

    /// Removes a blob; one already gone is not an error.
    pub fn remove(&self, digest: &Digest) -> Result<()> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).with_path("removing", &path),
            _ => Ok(()),
        }
    }

    /// A new temporary file beside the blobs (same file system, so renaming is atomic).
    pub fn temp_file(&self) -> Result<NamedTempFile> {
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.root)
            .with_path("creating a temporary file in", &self.root)
    }

    /// Moves a completely written temporary file into place as the blob `digest`.
    pub fn commit(&self, temp: NamedTempFile, digest: &Digest) -> Result<PathBuf> {
        let path = self.path(digest);
        if self.contains(digest) {
            // Same digest, same content: keep the blob that is already there.
            return Ok(path);
        }
        fs::set_permissions(temp.path(), fs::Permissions::from_mode(BLOB_MODE))
            .with_path("setting permissions of", temp.path())?;
        temp.persist(&path)
            .map_err(|e| e.error)
            .with_path("moving a blob into place at", &path)?;
        Ok(path)
    }

    /// Stores a blob from a reader, checking it against its descriptor on the way. A blob
    /// already present is kept and the reader is not read.
    pub fn put(&self, descriptor: &Descriptor, data: &mut dyn Read) -> Result<PathBuf> {
        let digest = descriptor.digest();
        require_sha256(digest, "a blob")?;
        if self.contains(digest) {
            return Ok(self.path(digest));
        }
        let temp = self.temp_file()?;
        let mut verified = VerifyingReader::new(data, digest.clone(), Some(descriptor.size()));
        let mut out = io::BufWriter::with_capacity(1 << 20, temp.as_file());
        io::copy(&mut verified, &mut out).context(|| format!("storing blob {digest}"))?;
        out.flush().context(|| format!("storing blob {digest}"))?;
        drop(out);
        self.commit(temp, digest)
    }

    /// Stores bytes (a config or manifest) under their sha256 digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let temp = self.temp_file()?;
        let mut w = HashingWriter::new(temp.as_file());
        w.write_all(bytes).with_path("writing", temp.path())?;
        let (_, digest, _) = w.finish();
        self.commit(temp, &digest)?;
        Ok(digest)
    }

    /// Opens a blob, verifying its digest (and size, when given) as it is read.
    pub fn open_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<VerifyingReader<io::BufReader<File>>> {
        require_sha256(digest, "a blob")?;
        let path = self.path(digest);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::invalid(format!(
                    "blob {digest} is missing from {}",
                    self.root.display()
                ))
            } else {
                Error::Io {
                    context: format!("opening blob {}", path.display()),
                    source: e,
                }
            }
        })?;
        Ok(VerifyingReader::new(
            io::BufReader::with_capacity(1 << 20, file),
            digest.clone(),
            size,
        ))
    }
}

/// The modification time set to now, the access time left alone.
fn used_now() -> rustix::fs::Timestamps {
    rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::sha256_digest;
    use oci_spec::image::{DescriptorBuilder, MediaType};

    #[test]
    fn put_then_read_back_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let digest = store.put_bytes(b"some config").unwrap();
        assert_eq!(digest, sha256_digest(b"some config"));
        let meta = fs::metadata(store.path(&digest)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, BLOB_MODE);

        let mut back = Vec::new();
        store
            .open_blob(&digest, Some(11))
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b"some config");

        fs::write(store.path(&digest), b"some CONFIG").unwrap();
        let err = store
            .open_blob(&digest, Some(11))
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains(digest.digest()), "{err}");
    }

    #[test]
    fn put_rejects_data_that_does_not_match_the_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let descriptor = DescriptorBuilder::default()
            .media_type(MediaType::ImageLayerGzip)
            .digest(sha256_digest(b"right"))
            .size(5u64)
            .build()
            .unwrap();
        let err = store.put(&descriptor, &mut &b"wrong"[..]).unwrap_err();
        assert!(format!("{err:#}").contains("storing blob"), "{err}");
        assert!(!store.contains(descriptor.digest()));
        // No temporary file is left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != "sha256")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn the_list_holds_blobs_only_and_opening_one_marks_it_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let kept = store.put_bytes(b"kept").unwrap();
        let gone = store.put_bytes(b"gone").unwrap();
        let _temp = store.temp_file().unwrap();
        fs::write(dir.path().join("sha256/not-a-digest"), b"x").unwrap();
        fs::create_dir(dir.path().join("sha256").join("a".repeat(64))).unwrap();
        let long_ago = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for digest in [&kept, &gone] {
            File::options()
                .write(true)
                .open(store.path(digest))
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }

        store.open_file(&kept).unwrap();
        store.remove(&gone).unwrap();
        store.remove(&gone).unwrap();

        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].digest, kept);
        assert!(listed[0].used > SystemTime::now() - std::time::Duration::from_secs(60));
        assert!(listed[0].allocated > 0);
        assert!(store.open_file(&gone).is_err());
    }
}
