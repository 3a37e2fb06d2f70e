//! The file system of a stage as COPY, ADD and WORKDIR see it, whichever executor holds
//! it: a container of the engine ([`ContainerFs`]) or a mounted snapshot of the native
//! executor ([`RootFs`]). What a COPY writes is decided once, as a tar (`archive`), from
//! what these answer; only reading and writing the files differs.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use futures_util::StreamExt;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::image_fs::{self, Node, Resolution, ResolveError, Resolved};
use crate::engine::{self, Container};

/// What a step reads from and writes into a stage's file system.
pub(super) trait StageFs {
    /// What is at `path` (absolute; every directory above it is a real directory), not
    /// following a last symlink; `None` when nothing is.
    async fn node(&self, path: &str) -> anyhow::Result<Option<Node>>;

    /// A small file's text (`/etc/passwd`), `None` when missing, unreadable or large.
    async fn read_small_file(&self, path: &str) -> Option<String>;

    /// A tar of `path` (absolute, resolved) into `out`, as Docker's archive API gives it:
    /// entries named after the path's last component (`.` for the root), owners, modes,
    /// times and links as they are.
    async fn archive(&self, path: &str, out: &mut std::fs::File) -> anyhow::Result<()>;

    /// Extracts the tar in `tar` (read from its start) at the root, as Docker extracts an
    /// upload: through the file system's own symlinks, replacing as `replace` says.
    async fn extract(&self, tar: std::fs::File, replace: engine::Replace) -> anyhow::Result<()>;
}

/// `path` resolved through the symlinks of `fs` (see [`image_fs::resolve`]), asking about
/// each component once. The inner error is the user's (a file where a directory is
/// needed, a link loop).
pub(super) async fn resolve(
    fs: &impl StageFs,
    path: &str,
) -> anyhow::Result<Result<Resolved, ResolveError>> {
    let mut known: HashMap<String, Option<Node>> = HashMap::new();
    loop {
        let resolution = image_fs::resolve(path, true, &mut |p| known.get(p).cloned());
        let needed = match resolution {
            Ok(Resolution::Done(resolved)) => return Ok(Ok(resolved)),
            Ok(Resolution::Need(needed)) => needed,
            Err(e) => return Ok(Err(e)),
        };
        let node = fs.node(&needed).await?;
        known.insert(needed, node);
    }
}

/// The file system's `/etc/passwd` and `/etc/group`, for `--chown` and USER by name, read
/// through the symlinks they may be, resolved inside the root as BuildKit resolves them.
pub(super) async fn read_accounts(fs: &impl StageFs) -> (Option<String>, Option<String>) {
    (
        read_account_file(fs, "/etc/passwd").await,
        read_account_file(fs, "/etc/group").await,
    )
}

async fn read_account_file(fs: &impl StageFs, path: &str) -> Option<String> {
    let resolved = resolve(fs, path).await.ok()?.ok()?;
    fs.read_small_file(&resolved.path).await
}

/// A container of the engine (created, never started).
pub(super) struct ContainerFs<'a> {
    pub engine: &'a engine::Engine,
    pub container: &'a Container,
}

impl StageFs for ContainerFs<'_> {
    async fn node(&self, path: &str) -> anyhow::Result<Option<Node>> {
        // The engine's stat gives a link's target fully resolved, as an absolute path.
        Ok(match self.engine.stat(self.container, path).await {
            Ok(stat) if stat.is_symlink() => Some(Node::Symlink(stat.link_target)),
            Ok(stat) if stat.is_dir() => Some(Node::Dir),
            Ok(_) => Some(Node::Other),
            Err(engine::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        })
    }

    async fn read_small_file(&self, path: &str) -> Option<String> {
        let mut bytes = Vec::new();
        let mut stream = self.engine.download(self.container, path);
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.ok()?);
            // An image's own account files are small; a huge one is not read into memory.
            if bytes.len() as u64 > image_fs::ACCOUNT_FILE_LIMIT {
                return None;
            }
        }
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut entry = archive.entries().ok()?.next()?.ok()?;
        let mut text = String::new();
        entry.read_to_string(&mut text).ok()?;
        Some(text)
    }

    async fn archive(&self, path: &str, out: &mut std::fs::File) -> anyhow::Result<()> {
        let mut file = tokio::fs::File::from_std(out.try_clone()?);
        self.engine
            .download_to(self.container, path, &mut file)
            .await?;
        Ok(())
    }

    async fn extract(
        &self,
        mut tar: std::fs::File,
        replace: engine::Replace,
    ) -> anyhow::Result<()> {
        tar.seek(SeekFrom::Start(0))?;
        let stream =
            tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(tar), 1 << 20);
        self.engine
            .upload_stream(self.container, "/", stream, replace)
            .await?;
        Ok(())
    }
}

/// A root file system mounted on this machine: a native step's snapshot, or a stage read
/// by `COPY --from`. Every path resolves inside it (`openat2` with `RESOLVE_IN_ROOT`).
pub(super) struct RootFs {
    root: PathBuf,
}

impl RootFs {
    pub fn new(root: &Path) -> RootFs {
        RootFs {
            root: root.to_owned(),
        }
    }

    /// `path`'s parent, opened inside the root, and its last component.
    fn parent<'p>(&self, path: &'p str) -> io::Result<(OwnedFd, &'p str)> {
        let trimmed = path.trim_matches('/');
        let (parent, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
        let root = rustix::fs::open(
            &self.root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let dir = match parent {
            "" => root,
            parent => rustix::fs::openat2(
                &root,
                parent,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )?,
        };
        Ok((dir, name))
    }

    fn node_sync(&self, path: &str) -> io::Result<Option<Node>> {
        let (dir, name) = self.parent(path)?;
        if name.is_empty() {
            return Ok(Some(Node::Dir));
        }
        let stat = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => Node::Dir,
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&dir, name, Vec::new())?;
                Node::Symlink(String::from_utf8_lossy(target.as_bytes()).into_owned())
            }
            _ => Node::Other,
        }))
    }

    /// The host path of `path`, which must have no symlink on the way (a resolved path).
    fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

impl StageFs for RootFs {
    async fn node(&self, path: &str) -> anyhow::Result<Option<Node>> {
        self.node_sync(path)
            .with_context(|| format!("looking at {path} in the stage"))
    }

    async fn read_small_file(&self, path: &str) -> Option<String> {
        let (dir, name) = self.parent(path).ok()?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let mut text = String::new();
        std::fs::File::from(fd)
            .take(image_fs::ACCOUNT_FILE_LIMIT + 1)
            .read_to_string(&mut text)
            .ok()?;
        (text.len() as u64 <= image_fs::ACCOUNT_FILE_LIMIT).then_some(text)
    }

    async fn archive(&self, path: &str, out: &mut std::fs::File) -> anyhow::Result<()> {
        let source = self.host_path(path);
        let top = match path.trim_matches('/').rsplit('/').next() {
            Some("") | None => ".".to_owned(),
            Some(name) => name.to_owned(),
        };
        tokio::task::block_in_place(|| {
            let mut writer = io::BufWriter::with_capacity(1 << 20, &mut *out);
            archive_tree(&source, &top, &mut writer)?;
            writer.flush()
        })
        .with_context(|| format!("reading {path} of the stage"))
    }

    async fn extract(
        &self,
        mut tar: std::fs::File,
        replace: engine::Replace,
    ) -> anyhow::Result<()> {
        tar.seek(SeekFrom::Start(0))?;
        let reader = BufReader::with_capacity(1 << 20, tar);
        let same_kind = replace == engine::Replace::SameKind;
        tokio::task::block_in_place(|| {
            crate::cache::snapshot::extract_into_root(&self.root, reader, "of the step", same_kind)
        })?;
        Ok(())
    }
}

/// Writes the tree at `source` (not following symlinks) as a tar whose entries are named
/// `top/…`, as Docker's archive API names them: files that share an inode become hard
/// links to the first, and a file's `security.capability` is kept. Entries are sorted by
/// name, so the same tree gives the same tar.
///
/// Written here because the `tar` crate's `append_dir_all` neither links hard links nor
/// keeps capabilities, and sorts nothing.
pub(super) fn archive_tree(source: &Path, top: &str, out: &mut impl Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    builder.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut stack = vec![(source.to_owned(), PathBuf::from(top))];
    while let Some((path, name)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if !ft.is_dir() && meta.nlink() > 1 {
            match links.get(&(meta.dev(), meta.ino())) {
                Some(first) => {
                    let mut header = header_of(&meta, tar::EntryType::Link);
                    header.set_size(0);
                    builder.append_link(&mut header, &name, first)?;
                    continue;
                }
                None => {
                    links.insert((meta.dev(), meta.ino()), name.clone());
                }
            }
        }
        if ft.is_file()
            && let Ok(Some(cap)) = crate::cache::snapshot::xattr(&path, "security.capability")
        {
            builder.append_pax_extensions([("SCHILY.xattr.security.capability", &cap[..])])?;
        }
        if ft.is_dir() {
            let mut header = header_of(&meta, tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, &name, io::empty())?;
            let mut children: Vec<_> = std::fs::read_dir(&path)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?;
            // Popped in reverse: pushed so that names come out sorted.
            children.sort();
            for child in children.into_iter().rev() {
                stack.push((path.join(&child), name.join(&child)));
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path)?;
            let mut header = header_of(&meta, tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, &name, &target)?;
        } else if ft.is_file() {
            let mut header = header_of(&meta, tar::EntryType::Regular);
            header.set_size(meta.len());
            builder.append_data(&mut header, &name, std::fs::File::open(&path)?)?;
        } else {
            use std::os::unix::fs::FileTypeExt;
            let kind = match () {
                () if ft.is_char_device() => tar::EntryType::Char,
                () if ft.is_block_device() => tar::EntryType::Block,
                () if ft.is_fifo() => tar::EntryType::Fifo,
                // Sockets: Docker's archive leaves them out too.
                () => continue,
            };
            let mut header = header_of(&meta, kind);
            header.set_size(0);
            let rdev = meta.rdev();
            header.set_device_major(rustix::fs::major(rdev))?;
            header.set_device_minor(rustix::fs::minor(rdev))?;
            builder.append_data(&mut header, &name, io::empty())?;
        }
    }
    builder.into_inner()?.flush()
}

fn header_of(meta: &std::fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(u64::from(meta.uid()));
    header.set_gid(u64::from(meta.gid()));
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    header
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    /// Each entry of `tar`: its type and name.
    fn names_of(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = OsStr::from_bytes(&e.path_bytes())
                    .to_string_lossy()
                    .into_owned();
                format!("{:?} {name}", e.header().entry_type())
            })
            .collect()
    }

    #[test]
    fn a_tree_is_archived_sorted_with_hard_links_and_named_after_its_top() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("b")).unwrap();
        std::fs::write(app.join("b/z"), b"z").unwrap();
        std::fs::write(app.join("a"), b"a").unwrap();
        std::fs::hard_link(app.join("a"), app.join("c")).unwrap();
        std::os::unix::fs::symlink("../a", app.join("b/link")).unwrap();
        let mut tar = Vec::new();
        archive_tree(&app, "app", &mut tar).unwrap();
        assert_eq!(
            names_of(&tar),
            [
                "Directory app",
                "Regular app/a",
                "Directory app/b",
                "Symlink app/b/link",
                "Regular app/b/z",
                "Link app/c",
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_root_answers_inside_itself() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin", root.join("bin")).unwrap();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let fs = RootFs::new(root);
        assert_eq!(
            fs.node("/bin").await.unwrap(),
            Some(Node::Symlink("/usr/bin".into()))
        );
        assert_eq!(fs.node("/usr/bin").await.unwrap(), Some(Node::Dir));
        assert_eq!(fs.node("/nothing").await.unwrap(), None);
        let resolved = resolve(&fs, "/bin/x").await.unwrap().unwrap();
        assert_eq!(resolved.path, "/usr/bin/x");
        assert_eq!(resolved.node, None);
        let (passwd, group) = read_accounts(&fs).await;
        assert!(passwd.unwrap().starts_with("root:"));
        assert_eq!(group, None);
    }
}
