//! A build context on standard input, as `docker build -` takes one: a tar (plain, gzip,
//! bzip2, xz or zstd, recognised by its content as an ADD source is) is the context, its
//! own `.dockerignore` and Dockerfile included; anything else is the Dockerfile, with an
//! empty context.
//!
//! Standard input is first copied to a file in a private temporary directory (`TMPDIR`),
//! so it is read once, whatever its size, and the tar is unpacked beside it. Everything
//! after this reads an ordinary context directory, so the rest of the build (selection,
//! ignore files, cache keys, which never include the context's path) is the same.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{Error, is_tar_archive, open_archive};
use crate::error::InputError;

/// What standard input held, unpacked; the directory goes when this is dropped.
#[derive(Debug)]
pub struct StdinContext {
    dir: tempfile::TempDir,
    /// The Dockerfile when standard input was one (the context is then empty).
    dockerfile: Option<PathBuf>,
    /// The files have the tar's owners (unpacked as root), for COPY to keep.
    owners_kept: bool,
}

impl StdinContext {
    /// The context directory.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    /// The Dockerfile standard input held, when it held one rather than a tar.
    pub fn dockerfile(&self) -> Option<&Path> {
        self.dockerfile.as_deref()
    }

    /// Whether the files have the tar's owners, which COPY keeps as BuildKit does: only
    /// root can give them (otherwise they are the caller's, which mean nothing in an image).
    pub fn owners_kept(&self) -> bool {
        self.owners_kept
    }
}

/// Reads all of `input` into a new directory under `temp_parent` and unpacks it.
pub fn read(mut input: impl Read, temp_parent: &Path) -> Result<StdinContext, Error> {
    let dir = tempfile::Builder::new()
        .prefix("imgbuild-stdin-")
        .tempdir_in(temp_parent)
        .with_context(|| format!("creating a directory in {}", temp_parent.display()))?;
    let spool = dir.path().join("stdin");
    let mut file =
        std::fs::File::create(&spool).with_context(|| format!("creating {}", spool.display()))?;
    let size = std::io::copy(&mut input, &mut file).context("reading standard input")?;
    drop(file);
    if size == 0 {
        return Err(InputError::new("the build context `-` is empty: nothing came on standard input")
            .with_hint(
                "pipe a tar of the context (`tar -C DIR -c . | imgbuild -`) or a Dockerfile (`imgbuild - < Dockerfile`)",
            )
            .into());
    }
    let root = dir.path().join("context");
    std::fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
    if !is_tar_archive(&spool)? {
        let dockerfile = dir.path().join("Dockerfile");
        std::fs::rename(&spool, &dockerfile)
            .with_context(|| format!("moving {}", spool.display()))?;
        return Ok(StdinContext {
            dir,
            dockerfile: Some(dockerfile),
            owners_kept: false,
        });
    }
    let mut archive = tar::Archive::new(open_archive(&spool)?);
    // Modes as the tar has them (a script's 0755 survives `COPY`), not the process umask;
    // owners too, which BuildKit's COPY keeps from a tar context.
    let owners_kept = rustix::process::geteuid().is_root();
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(owners_kept);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    // tar's unpack refuses entries that would land outside `root`, through `..` or a
    // symlink the archive made earlier.
    archive.unpack(&root).map_err(|e| {
        InputError::new(format!("the tar on standard input cannot be unpacked: {e}"))
            .with_hint("send a tar of the context directory, e.g. `tar -C DIR -c . | imgbuild -`")
    })?;
    std::fs::remove_file(&spool).with_context(|| format!("removing {}", spool.display()))?;
    Ok(StdinContext {
        dir,
        dockerfile: None,
        owners_kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn context_tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, mode: u32, data: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(mode);
            header.set_uid(1234);
            header.set_gid(5678);
            header.set_cksum();
            builder.append_data(&mut header, name, data).unwrap();
        };
        add("Dockerfile", 0o644, b"FROM scratch\n");
        add("bin/run.sh", 0o755, b"#!/bin/sh\n");
        add("secret.key", 0o600, b"k");
        builder.into_inner().unwrap()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_tar_is_the_context_with_its_modes() {
        let temp = tempfile::tempdir().unwrap();
        let context = read(&context_tar()[..], temp.path()).unwrap();
        assert_eq!(context.dockerfile(), None);
        let root = context.root();
        assert_eq!(
            std::fs::read(root.join("Dockerfile")).unwrap(),
            b"FROM scratch\n"
        );
        assert_eq!(mode(&root.join("bin/run.sh")), 0o755);
        assert_eq!(mode(&root.join("secret.key")), 0o600);
        if context.owners_kept() {
            use std::os::unix::fs::MetadataExt;
            let owner = std::fs::metadata(root.join("bin/run.sh")).unwrap().uid();
            assert_eq!(owner, 1234, "the tar's owner, for COPY to keep");
        }
        assert!(
            !context.dir.path().join("stdin").exists(),
            "the copy is gone"
        );
        drop(context);
        assert_eq!(
            std::fs::read_dir(temp.path()).unwrap().count(),
            0,
            "nothing left"
        );
    }

    #[test]
    fn a_compressed_tar_is_the_context_too() {
        let temp = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&context_tar()).unwrap();
        let context = read(&gz.finish().unwrap()[..], temp.path()).unwrap();
        assert_eq!(mode(&context.root().join("bin/run.sh")), 0o755);
        let zst = zstd::encode_all(&context_tar()[..], 1).unwrap();
        let context = read(&zst[..], temp.path()).unwrap();
        assert!(context.root().join("secret.key").is_file());
    }

    #[test]
    fn anything_else_is_the_dockerfile_with_an_empty_context() {
        let temp = tempfile::tempdir().unwrap();
        let text = b"FROM busybox\nRUN echo hi\n";
        let context = read(&text[..], temp.path()).unwrap();
        assert_eq!(std::fs::read(context.dockerfile().unwrap()).unwrap(), text);
        assert_eq!(std::fs::read_dir(context.root()).unwrap().count(), 0);
    }

    #[test]
    fn empty_input_is_an_input_error() {
        let temp = tempfile::tempdir().unwrap();
        let err = read(&b""[..], temp.path()).unwrap_err();
        assert!(err.downcast_ref::<InputError>().is_some(), "{err:#}");
        assert!(format!("{err:#}").contains("nothing came on standard input"));
    }
}
