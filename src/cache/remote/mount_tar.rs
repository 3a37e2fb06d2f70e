//! `RUN --mount=type=cache` directories as cache layers: a snapshot is a tar of the
//! directory's contents (owners, modes and mtimes kept: tools such as Mix and Cargo decide
//! what to rebuild by them), restored into the empty directory of a fresh machine.

use std::io::{self, Read};
use std::path::Path;

use anyhow::Context as _;
use oci_spec::image::Digest;

use super::blob::GzipBlobWriter;
use super::{CachedMount, RemoteCache};
use crate::cache::LayerRecord;
use crate::oci;
use crate::registry;

/// The contents of `dir` as a gzip layer in `store`, entries in name order (the same
/// contents give the same blob). Sockets, fifos and devices are left out.
pub fn snapshot_mount(dir: &Path, store: &oci::BlobStore) -> oci::Result<LayerRecord> {
    let context = |what: String| {
        move |e: io::Error| oci::Error::Io {
            context: what,
            source: e,
        }
    };
    let mut writer = GzipBlobWriter::new(store)?;
    {
        let mut tar = tar::Builder::new(&mut writer);
        tar.follow_symlinks(false);
        tar.mode(tar::HeaderMode::Complete);
        for entry in walkdir::WalkDir::new(dir)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| oci::Error::Io {
                context: format!("reading the cache mount {}", dir.display()),
                source: e.into(),
            })?;
            let kind = entry.file_type();
            if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
                continue;
            }
            let name = entry.path().strip_prefix(dir).unwrap_or(entry.path());
            tar.append_path_with_name(entry.path(), name)
                .map_err(context(format!("archiving {}", entry.path().display())))?;
        }
        tar.finish()
            .map_err(context(format!("archiving {}", dir.display())))?;
    }
    writer.finish()
}

/// Unpacks a snapshot (a gzip tar) into `dir`, which exists; paths that would leave it are
/// refused by the tar reader.
pub fn restore_mount(snapshot: impl Read, dir: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(snapshot));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.unpack(dir)
}

/// Whether `dir` is empty or absent: a cache mount that a snapshot may fill.
pub fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
}

impl RemoteCache {
    /// Fills the cache mount directory `dir` from the snapshot `mount`: fetched, unpacked
    /// beside `dir` and its entries moved in, so a failure leaves the directory empty
    /// rather than half filled.
    pub async fn restore_mount_into(
        &self,
        mount: &CachedMount,
        dir: &Path,
        client: &registry::Client,
        store: &registry::BlobStore,
    ) -> anyhow::Result<()> {
        self.fetch(&mount.layer.digest, client, store).await?;
        let digest: Digest = mount.layer.digest.parse()?;
        let blob = store
            .open_blob(&digest)
            .with_context(|| format!("opening the cache mount's blob {digest}"))?;
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let parent = dir.parent().context("a cache mount has no parent")?;
            let staging = tempfile::Builder::new()
                .prefix(".restore-")
                .tempdir_in(parent)?;
            restore_mount(blob, staging.path())?;
            for entry in std::fs::read_dir(staging.path())? {
                let entry = entry?;
                std::fs::rename(entry.path(), dir.join(entry.file_name()))?;
            }
            Ok(())
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn a_snapshot_restores_contents_modes_links_and_mtimes() {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("mount");
        fs::create_dir_all(mount.join("deps/plug/ebin")).unwrap();
        fs::write(mount.join("deps/plug/ebin/plug.beam"), b"beam").unwrap();
        fs::set_permissions(
            mount.join("deps/plug/ebin/plug.beam"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        symlink("plug", mount.join("deps/current")).unwrap();
        let stamp = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        fs::File::options()
            .write(true)
            .open(mount.join("deps/plug/ebin/plug.beam"))
            .unwrap()
            .set_modified(stamp)
            .unwrap();

        let store = oci::BlobStore::open(dir.path().join("blobs")).unwrap();
        let record = snapshot_mount(&mount, &store).unwrap();
        assert_eq!(snapshot_mount(&mount, &store).unwrap(), record);

        let fresh = dir.path().join("fresh");
        fs::create_dir(&fresh).unwrap();
        let digest = record.digest.parse().unwrap();
        restore_mount(fs::File::open(store.path(&digest)).unwrap(), &fresh).unwrap();
        let beam = fresh.join("deps/plug/ebin/plug.beam");
        assert_eq!(fs::read(&beam).unwrap(), b"beam");
        let meta = fs::metadata(&beam).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.modified().unwrap(), stamp);
        assert_eq!(
            fs::read_link(fresh.join("deps/current")).unwrap(),
            Path::new("plug")
        );
    }

    #[test]
    fn snapshots_cannot_write_outside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = oci::BlobStore::open(dir.path().join("blobs")).unwrap();
        let mut writer = GzipBlobWriter::new(&store).unwrap();
        {
            let mut tar = tar::Builder::new(&mut writer);
            let mut header = tar::Header::new_gnu();
            header.set_size(4);
            header.set_mode(0o644);
            // `set_path` refuses `..`; write the name bytes directly, as a hostile tar would.
            header.as_old_mut().name[..12].copy_from_slice(b"../escaped.t");
            header.set_cksum();
            tar.append(&header, &b"evil"[..]).unwrap();
            tar.finish().unwrap();
        }
        let record = writer.finish().unwrap();
        let target = dir.path().join("target");
        fs::create_dir(&target).unwrap();
        let digest = record.digest.parse().unwrap();
        let _ = restore_mount(fs::File::open(store.path(&digest)).unwrap(), &target);
        assert!(!dir.path().join("escaped.t").exists());
    }
}
