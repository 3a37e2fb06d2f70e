//! `RUN --mount`: what a RUN sees besides its image, never committed with it.
//!
//! * `type=cache`: a directory kept across builds under `<cache-dir>/mounts-v1/`, one per
//!   mount id (the target by default), as BuildKit keeps its cache mounts;
//! * `type=secret`: a `--secret` written to a private temporary file outside the cache
//!   dir, mounted read-only (or exported as an environment variable with `env=`) for that
//!   RUN only, and deleted when it ends;
//! * `type=bind` from the build context: the context path, read-only unless `rw`; from a
//!   stage or image: a copy of its files ([`Builder::mount_sources`]);
//! * `type=tmpfs`: an empty in-memory directory.
//!
//! The cache and bind mounts are host directories, so they need the engine to run on this
//! machine (a unix socket), as the test environment's does.

use std::collections::HashMap;
use std::fs;
use std::io::{Seek as _, SeekFrom, Write};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

use super::Builder;
use crate::plan::dispatch::{CopyFrom, RunStep};

use crate::engine::Mount as EngineMount;
use crate::engine::RunSpec;
use crate::engine::cleanup;
use crate::error::InputError;
use crate::frontend::instructions::{Mount, MountKind, ram_bytes};
use crate::request::SecretSource;

/// Secret files are written to `$TMPDIR/imgbuild-secret-BOOT-PIDNS-PID-START-*/` (see
/// [`cleanup::owner_tag`]).
const SECRET_DIR_PREFIX: &str = "imgbuild-secret-";

/// Removes the secret directories of imgbuild processes that are gone without removing them
/// (killed with SIGKILL): a copy of a secret must not outlive its build. Returns how many.
pub fn remove_abandoned_secrets() -> usize {
    remove_secret_dirs(cleanup::tagged_owner_is_gone)
}

/// Removes this process's secret directories (the interrupt handler, before it exits).
fn remove_own_secrets() {
    if let Some(own) = cleanup::owner_tag() {
        remove_secret_dirs(|tag| tag.starts_with(&own));
    }
}

/// Removes the directories `imgbuild-secret-TAG` in the temporary directory, owned by this
/// user, whose TAG `select` picks.
fn remove_secret_dirs(select: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    let uid = rustix::process::geteuid().as_raw();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(tag) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SECRET_DIR_PREFIX))
        else {
            continue;
        };
        // Not followed: only a real directory of this user is one imgbuild made.
        let ours = entry
            .metadata()
            .is_ok_and(|m| m.is_dir() && std::os::unix::fs::MetadataExt::uid(&m) == uid);
        if ours && select(tag) && fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// What must live as long as a RUN: secret files, copies for `rw` mounts and cache-mount
/// locks.
#[derive(Default)]
pub struct MountGuards {
    // Relays first: they stop before their sockets' directories go.
    _relays: Vec<super::ssh_agent::AgentRelay>,
    _dirs: Vec<tempfile::TempDir>,
    _locks: Vec<fs::File>,
}

/// A RUN's mounts for the engine, and its command wrapped when a secret goes into an
/// environment variable.
pub struct PreparedMounts {
    pub mounts: Vec<EngineMount>,
    /// Shell lines run before the command: `export VAR="$(cat FILE)"`.
    pub env_exports: Vec<String>,
    /// Variables the mounts set (`SSH_AUTH_SOCK`), unless the RUN's own environment does.
    pub env: Vec<String>,
    pub guards: MountGuards,
}

/// Inputs the mounts need from the build.
pub struct MountContext<'a> {
    pub cache_dir: &'a Path,
    /// The build context, whose `.dockerignore` a bind mount of it honours.
    pub context: &'a crate::context::Context,
    pub secrets: &'a std::collections::BTreeMap<String, SecretSource>,
    /// `--ssh`: agent sockets by id.
    pub ssh: &'a std::collections::BTreeMap<String, PathBuf>,
    /// The files of `from=` bind mounts, by mount index ([`Builder::mount_sources`]).
    pub sources: &'a MountSources,
    /// Whether the engine that runs the step is on this machine (it can mount its files).
    pub engine_is_local: bool,
}

/// Host copies of what a RUN's mounts take `from=` a stage or image, by mount index; the
/// copies are deleted when this is dropped (after the RUN).
#[derive(Default)]
pub struct MountSources {
    paths: HashMap<usize, PathBuf>,
    _copies: Vec<tempfile::TempDir>,
    /// Stages the native executor mounted for `from=` bind mounts: what a `rw` mount
    /// writes lands in the view's own upper directory, dropped with it.
    _views: Vec<crate::cache::snapshot::MountedSnapshot>,
}

impl Builder {
    /// Copies what the RUN's `from=` bind mounts show (and what seeds a new `from=` cache
    /// mount) out of the engine onto this machine.
    ///
    /// Why a host copy: the engine can only mount a host path, a volume or a tmpfs (its API
    /// 1.41 has no image mounts and no volume subpaths, and a volume cannot be a single
    /// file), and a stage's image lives in the engine's storage, which is not ours to
    /// mount. The engine's archive of the source path is unpacked as it is (owners, modes,
    /// setuid bits, links; imgbuild runs as root where the engine is local, as for every
    /// host mount), so the RUN sees what BuildKit's bind mount shows; a `rw` mount writes
    /// into this throw-away copy, never into the stage, as in BuildKit. It costs a copy of
    /// the source path per RUN that runs (none when the step is cached), which is why
    /// `source=` narrowing what is mounted matters for large stages.
    pub(super) async fn mount_sources(&self, run: &RunStep) -> anyhow::Result<MountSources> {
        let mut out = MountSources::default();
        for (i, mount) in run.mounts.iter().enumerate() {
            let Some(from) = &mount.from else { continue };
            let seed_cache = match mount.kind {
                MountKind::Bind => None,
                MountKind::Cache => {
                    let dir = cache_mount_dir(&self.request.cache_dir, &cache_id(mount));
                    if dir.exists() {
                        continue;
                    }
                    Some(dir)
                }
                _ => continue,
            };
            let source = format!(
                "/{}",
                mount.source.as_deref().unwrap_or("").trim_matches('/')
            );
            let from_source = CopyFrom::named(&self.graph, from);
            let view = self.native_view(&from_source).await?;
            let native_path = match &view {
                Some(view) => {
                    let fs = super::stage_fs::RootFs::new(view.root());
                    let not_found = |why: String| {
                        InputError::new(format!("RUN --mount from={from},source={source}: {why}"))
                    };
                    let resolved = super::stage_fs::resolve(&fs, &source)
                        .await?
                        .map_err(|e| not_found(e.to_string()))?;
                    if resolved.node.is_none() {
                        return Err(not_found("not found in the source".to_owned()).into());
                    }
                    Some(view.root().join(resolved.path.trim_start_matches('/')))
                }
                None => None,
            };
            if let (None, Some(path)) = (&seed_cache, &native_path) {
                // A bind mount of the stage's own files, in place.
                out.paths.insert(i, path.clone());
                out._views.extend(view);
                continue;
            }
            let copy = tempfile::Builder::new()
                .prefix("run-mount-")
                .tempdir_in(&self.request.cache_dir)
                .context("creating a directory for a RUN --mount from=")?;
            let unpacked = match &native_path {
                Some(path) => unpack_tree(path, source == "/", copy.path()),
                None => {
                    let image = self.copy_source_image(&from_source).await?;
                    self.unpack_from_engine(&image, &source, copy.path()).await
                }
            };
            let path = unpacked.map_err(|e| {
                InputError::new(format!("RUN --mount from={from},source={source}: {e:#}"))
            })?;
            match seed_cache {
                Some(dir) => {
                    // A new cache starts with the source's files, as BuildKit's does.
                    if let Some(parent) = dir.parent() {
                        fs::create_dir_all(parent)?;
                    }
                    if !path.is_dir() {
                        return Err(InputError::new(format!(
                            "RUN --mount=type=cache,from={from},source={source}: not a directory"
                        ))
                        .into());
                    }
                    // Another build may have made it meanwhile; then that one is used.
                    let _ = fs::rename(&path, &dir);
                }
                None => {
                    out.paths.insert(i, path);
                    out._copies.push(copy);
                }
            }
        }
        Ok(out)
    }

    /// Unpacks `source` of engine image `image` into `into`; returns the unpacked directory
    /// (its contents) or file. The source is resolved in a container of the image through
    /// the `StageFs` seam, as the native executor resolves it in a snapshot: symlinks, the
    /// last one too, are followed inside the image, as BuildKit follows a mount's source
    /// (`source=/etc/localtime`).
    async fn unpack_from_engine(
        &self,
        image: &str,
        source: &str,
        into: &Path,
    ) -> anyhow::Result<PathBuf> {
        let engine = self.engine()?;
        let container = engine.create(&RunSpec::new(image, ["true"])).await?;
        let fs = super::stage_fs::ContainerFs {
            engine,
            container: &container,
        };
        let unpacked = unpack_from_container(&fs, source, into).await;
        let removed = engine.remove(container).await;
        let path = unpacked?;
        removed?;
        Ok(path)
    }
}

/// Unpacks `source` of the container behind `fs` into `into` (see
/// [`Builder::unpack_from_engine`]).
async fn unpack_from_container(
    fs: &super::stage_fs::ContainerFs<'_>,
    source: &str,
    into: &Path,
) -> anyhow::Result<PathBuf> {
    let resolved = super::stage_fs::resolve(fs, source)
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let is_dir = match resolved.node {
        None => anyhow::bail!("not found in the source"),
        Some(node) => node == super::image_fs::Node::Dir,
    };
    // `DIR/.` is the directory's contents; a file is asked for by its own name.
    let archived = match is_dir {
        true => format!("{}/.", resolved.path.trim_end_matches('/')),
        false => resolved.path,
    };
    let spool = tempfile::tempfile_in(into).context("creating a temporary file")?;
    let mut file = tokio::fs::File::from_std(spool);
    fs.engine
        .download_to(fs.container, &archived, &mut file)
        .await?;
    let spool = file.into_std().await;
    tokio::task::block_in_place(|| unpack_archive(spool, is_dir, source == "/", into))
}

/// Copies the tree at `path` (a mounted snapshot's, resolved) into `into`, as
/// [`Builder::unpack_from_engine`] unpacks an engine's archive; returns the copy.
fn unpack_tree(path: &Path, whole_image: bool, into: &Path) -> anyhow::Result<PathBuf> {
    let is_dir = fs::symlink_metadata(path)?.is_dir();
    let top = match is_dir {
        true => ".".to_owned(),
        false => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let mut spool = tempfile::tempfile_in(into).context("creating a temporary file")?;
    tokio::task::block_in_place(|| -> anyhow::Result<PathBuf> {
        super::stage_fs::archive_tree(path, &top, &mut std::io::BufWriter::new(&mut spool))?;
        unpack_archive(spool, is_dir, whole_image, into)
    })
}

/// Unpacks an archive of a mount's source (the directory's contents as `./…`, or a file by
/// its name) into `into/root`, with its owners and modes; returns the directory or file.
fn unpack_archive(
    mut spool: fs::File,
    is_dir: bool,
    whole_image: bool,
    into: &Path,
) -> anyhow::Result<PathBuf> {
    let root = into.join("root");
    fs::create_dir(&root)?;
    spool.seek(SeekFrom::Start(0))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(spool));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(rustix::process::geteuid().is_root());
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut top = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.into_owned();
        let relative: PathBuf = name
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        if relative.as_os_str().is_empty() {
            // The directory itself: the mount's root gets its owner and mode.
            let header = entry.header();
            fs::set_permissions(&root, fs::Permissions::from_mode(header.mode()? & 0o7777))?;
            if rustix::process::geteuid().is_root() {
                chown(
                    &root,
                    Some(header.uid()? as u32),
                    Some(header.gid()? as u32),
                )?;
            }
            continue;
        }
        // The engine adds it to every container; a stage's image has none.
        if whole_image && relative == Path::new(".dockerenv") {
            continue;
        }
        if !is_dir {
            if entry.header().entry_type().is_symlink() {
                anyhow::bail!("is a symlink; mount what it points to");
            }
            top.get_or_insert_with(|| root.join(&relative));
        }
        entry.unpack_in(&root)?;
    }
    Ok(match top {
        Some(file) => file,
        None => root,
    })
}

/// Whether the engine runs on this machine: host paths can only be mounted there.
pub fn prepare(mounts: &[Mount], cx: &MountContext<'_>) -> anyhow::Result<PreparedMounts> {
    let mut out = PreparedMounts {
        mounts: Vec::new(),
        env_exports: Vec::new(),
        env: Vec::new(),
        guards: MountGuards::default(),
    };
    let mut ssh_mounts = 0;
    let mut run_dirs = RunDirs::default();
    for (i, mount) in mounts.iter().enumerate() {
        match mount.kind {
            MountKind::Tmpfs => out.mounts.push(EngineMount::Tmpfs {
                target: target_of(mount)?,
                size: mount.size.as_deref().and_then(ram_bytes),
                read_only: mount.readonly,
            }),
            MountKind::Cache => {
                require_local("type=cache", cx)?;
                let dir = cache_mount_dir(cx.cache_dir, &cache_id(mount));
                let fresh = !dir.exists();
                fs::create_dir_all(&dir)
                    .with_context(|| format!("creating the cache mount {}", dir.display()))?;
                if fresh {
                    let mode = parse_octal(mount.mode.as_deref(), 0o755)?;
                    fs::set_permissions(&dir, fs::Permissions::from_mode(mode))?;
                    chown(
                        &dir,
                        parse_id(mount.uid.as_deref())?,
                        parse_id(mount.gid.as_deref())?,
                    )?;
                }
                if mount.sharing.as_deref() == Some("locked") {
                    // One RUN at a time uses a locked cache; others wait, as in BuildKit.
                    let lock = fs::File::create(dir.with_extension("lock"))?;
                    lock.lock().context("locking a cache mount")?;
                    out.guards._locks.push(lock);
                }
                // `source=` is a directory of the cache (of the seeded files with from=).
                let source = match mount.source.as_deref().map(|s| s.trim_matches('/')) {
                    Some(sub) if !sub.is_empty() && mount.from.is_some() => dir,
                    Some(sub) if !sub.is_empty() => {
                        // What earlier RUNs left in the cache decides this path: it is
                        // opened without following a symlink, and the directory opened is
                        // the one mounted, so a link there never binds the host's files
                        // (BuildKit's testCacheMountSourceEscape). (A RUN of another stage
                        // swapping a directory for a link between this and the mount could
                        // still race it; the native executor's runc will not mount a
                        // descriptor's path.)
                        let rel = context_relative(sub)?;
                        let refused = |why: String| {
                            anyhow::anyhow!("RUN --mount=type=cache,source={sub}: refused, {why}")
                        };
                        let opened = crate::cache::snapshot::open_dir_below(
                            &dir,
                            &rel.to_string_lossy(),
                            true,
                        )
                        .map_err(refused)?;
                        let path = fs::read_link(format!(
                            "/proc/self/fd/{}",
                            std::os::fd::AsRawFd::as_raw_fd(&opened)
                        ))?;
                        if !path.starts_with(fs::canonicalize(&dir)?) {
                            return Err(refused(format!(
                                "{} is outside the cache",
                                path.display()
                            )));
                        }
                        path
                    }
                    _ => dir,
                };
                out.mounts.push(EngineMount::Bind {
                    source,
                    target: target_of(mount)?,
                    read_only: mount.readonly,
                });
            }
            MountKind::Secret => {
                let id = secret_id(mount);
                let Some(value) = read_secret(&id, cx.secrets)? else {
                    if mount.required {
                        return Err(InputError::new(format!(
                            "RUN --mount=type=secret,id={id}: no secret `{id}` was given"
                        ))
                        .with_hint(format!(
                            "pass --secret id={id},src=FILE or --secret id={id},env=VAR"
                        ))
                        .into());
                    }
                    continue;
                };
                require_local("type=secret", cx)?;
                // `env=` alone: a file the exporting shell reads, where no target is.
                let inside = match (&mount.env, &mount.target) {
                    (Some(_), None) => format!(
                        "{SECRETS_DIR}/.imgbuild-env-{}",
                        hex::encode(Sha256::digest(id.as_bytes()))
                            .get(..16)
                            .unwrap_or_default()
                    ),
                    (_, None) => format!("{SECRETS_DIR}/{id}"),
                    (_, Some(target)) => target.clone(),
                };
                let file = run_dirs.place(&mut out, &inside, true, "a secret")?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&file)?;
                fs::set_permissions(&file, fs::Permissions::from_mode(0o600))?;
                f.write_all(&value)?;
                drop(f);
                fs::set_permissions(
                    &file,
                    fs::Permissions::from_mode(parse_octal(mount.mode.as_deref(), 0o400)?),
                )?;
                chown(
                    &file,
                    parse_id(mount.uid.as_deref())?,
                    parse_id(mount.gid.as_deref())?,
                )?;
                if let Some(var) = &mount.env {
                    out.env_exports
                        .push(format!("export {var}=\"$(cat '{inside}')\""));
                }
            }
            MountKind::Bind if mount.from.is_some() => {
                require_local("type=bind", cx)?;
                let source = cx.sources.paths.get(&i).cloned().ok_or_else(|| {
                    anyhow::anyhow!("the files of a RUN --mount from= were not prepared")
                })?;
                out.mounts.push(EngineMount::Bind {
                    source,
                    target: target_of(mount)?,
                    read_only: mount.readonly,
                });
            }
            MountKind::Bind => {
                require_local("type=bind", cx)?;
                let written = mount.source.as_deref().unwrap_or(".");
                let mut source = context_path(cx.context.root(), written).map_err(|e| {
                    InputError::new(format!("RUN --mount=type=bind,source={written}: {e}"))
                })?;
                if cx.context.filters() {
                    // BuildKit sends one context, `.dockerignore` applied, to COPY and to
                    // bind mounts alike: what it leaves out (`.env`, `.git`) a RUN never sees.
                    if let Some((view, path)) =
                        filtered_view(cx.context, written, &source, cx.cache_dir)?
                    {
                        source = path;
                        out.guards._dirs.push(view);
                    }
                }
                if !mount.readonly {
                    // What a `rw` bind mount writes is thrown away, as in BuildKit: the RUN
                    // gets a copy, never the user's checkout.
                    let copy = tempfile::Builder::new()
                        .prefix("run-mount-")
                        .tempdir_in(cx.cache_dir)
                        .context("creating a directory for a RUN --mount rw")?;
                    let to = copy.path().join("context");
                    let copied = std::process::Command::new("cp")
                        .arg("-a")
                        .arg("--")
                        .arg(&source)
                        .arg(&to)
                        .status()
                        .context("running cp for a RUN --mount rw")?;
                    if !copied.success() {
                        anyhow::bail!("copying {} for a RUN --mount rw failed", source.display());
                    }
                    source = to;
                    out.guards._dirs.push(copy);
                }
                out.mounts.push(EngineMount::Bind {
                    source,
                    target: target_of(mount)?,
                    read_only: mount.readonly,
                });
            }
            MountKind::Ssh => {
                let target = mount
                    .target
                    .clone()
                    .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_mounts}"));
                ssh_mounts += 1;
                // SSH_AUTH_SOCK names the first ssh mount's socket, as in BuildKit, even
                // when no agent is forwarded to it.
                if out.env.is_empty() {
                    out.env.push(format!("SSH_AUTH_SOCK={target}"));
                }
                let id = mount.id.as_deref().unwrap_or(DEFAULT_SSH_ID);
                let Some(agent) = cx.ssh.get(id) else {
                    // No --ssh for it: the mount is left out, as BuildKit leaves it out; a
                    // required one was refused before the build started.
                    continue;
                };
                require_local("type=ssh", cx)?;
                let socket =
                    run_dirs.place(&mut out, &target, mount.readonly, "an ssh agent socket")?;
                out.guards
                    ._relays
                    .push(super::ssh_agent::relay(agent, &socket)?);
                fs::set_permissions(
                    &socket,
                    fs::Permissions::from_mode(parse_octal(mount.mode.as_deref(), 0o600)?),
                )?;
                chown(
                    &socket,
                    parse_id(mount.uid.as_deref())?,
                    parse_id(mount.gid.as_deref())?,
                )?;
            }
        }
    }
    Ok(out)
}

/// Where secrets and agent sockets go when the mount names no target.
const SECRETS_DIR: &str = "/run/secrets";
const SSH_DIR: &str = "/run/buildkit";

/// Where one RUN's secrets and agent sockets go. Those under `/run/secrets` or
/// `/run/buildkit` (their default places) are files of a directory mounted whole
/// (read-only) there. A directory rather than one bind mount per file: the engine makes a
/// mount point in the container's layer for every bind mount, and commits it, so a file
/// mount would leave an empty file at `/run/secrets/ID` in the image; a directory mount
/// leaves the directory, which is what BuildKit leaves. (The image's own files there are
/// hidden during the RUN.) Elsewhere, each is the only file of a directory of its own,
/// bind-mounted at its target.
#[derive(Default)]
struct RunDirs {
    dirs: HashMap<&'static str, PathBuf>,
}

impl RunDirs {
    /// The host path (not yet created) of the file the RUN sees at `target`.
    fn place(
        &mut self,
        out: &mut PreparedMounts,
        target: &str,
        read_only: bool,
        what: &str,
    ) -> anyhow::Result<PathBuf> {
        for dir in [SECRETS_DIR, SSH_DIR] {
            if let Some(name) = target.strip_prefix(dir).and_then(|n| n.strip_prefix('/'))
                && name
                    .split('/')
                    .all(|c| !c.is_empty() && c != "." && c != "..")
            {
                return self.file(out, dir, name);
            }
        }
        let private = private_dir(what)?;
        let file = private.path().join("file");
        out.guards._dirs.push(private);
        out.mounts.push(EngineMount::Bind {
            source: file.clone(),
            target: target.to_owned(),
            read_only,
        });
        Ok(file)
    }

    /// The host path of `name` in the RUN's directory for `target`, made and mounted the
    /// first time.
    fn file(
        &mut self,
        out: &mut PreparedMounts,
        target: &'static str,
        name: &str,
    ) -> anyhow::Result<PathBuf> {
        let in_dir = |dir: &Path| -> anyhow::Result<PathBuf> {
            // An id with a `/` (`aws/creds`) is a file in a directory of its own there.
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            Ok(path)
        };
        if let Some(dir) = self.dirs.get(target) {
            return in_dir(dir);
        }
        let private = private_dir("the RUN's secrets")?;
        // Listable, as BuildKit's directory is; the files keep their own modes.
        let dir = private.path().join("d");
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        out.guards._dirs.push(private);
        out.mounts.push(EngineMount::Bind {
            source: dir.clone(),
            target: target.to_owned(),
            read_only: true,
        });
        let path = in_dir(&dir)?;
        self.dirs.insert(target, dir);
        Ok(path)
    }
}

/// The id of an ssh mount without `id=`, and of `--ssh` without one.
pub const DEFAULT_SSH_ID: &str = "default";

/// A directory only root can list, for what a RUN must see but nobody else (a secret's
/// copy, an agent socket). Named after this process, so that when it is killed (no
/// destructor runs) the next build removes it.
fn private_dir(what: &str) -> anyhow::Result<tempfile::TempDir> {
    cleanup::run_on_interrupt_exit(remove_own_secrets);
    let prefix = format!(
        "{SECRET_DIR_PREFIX}{}",
        cleanup::owner_tag().unwrap_or_default()
    );
    let dir = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir()
        .with_context(|| format!("creating a private directory for {what}"))?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))?;
    Ok(dir)
}

fn require_local(what: &str, cx: &MountContext<'_>) -> anyhow::Result<()> {
    if cx.engine_is_local {
        Ok(())
    } else {
        Err(InputError::new(format!("RUN --mount={what} needs the Docker engine on this machine (its address is not a unix socket)")).into())
    }
}

fn target_of(mount: &Mount) -> anyhow::Result<String> {
    mount
        .target
        .clone()
        .ok_or_else(|| InputError::new("RUN --mount needs target=PATH").into())
}

/// A secret mount's id: `id=`, else `source=`, else its target's file name, as BuildKit
/// derives it.
pub fn secret_id(mount: &Mount) -> String {
    mount
        .id
        .clone()
        .or_else(|| mount.source.clone())
        .or_else(|| {
            mount
                .target
                .as_deref()
                .and_then(|t| t.rsplit('/').next())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// A cache mount's id: `id=`, else its target, as BuildKit names cache mounts.
pub fn cache_id(mount: &Mount) -> String {
    mount
        .id
        .clone()
        .or_else(|| mount.target.clone())
        .unwrap_or_default()
}

/// `<cache-dir>/mounts-v1/<sha256 of the id>`: ids are user text, never a path.
pub fn cache_mount_dir(cache_dir: &Path, id: &str) -> PathBuf {
    cache_dir
        .join("mounts-v1")
        .join(hex::encode(Sha256::digest(id.as_bytes())))
}

fn read_secret(
    id: &str,
    secrets: &std::collections::BTreeMap<String, SecretSource>,
) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(match secrets.get(id) {
        None => None,
        Some(SecretSource::File(path)) => Some(fs::read(path).map_err(|e| {
            InputError::new(format!(
                "--secret id={id}: cannot read {}: {e}",
                path.display()
            ))
        })?),
        Some(SecretSource::Env(var)) => match std::env::var_os(var) {
            Some(v) => Some(std::os::unix::ffi::OsStringExt::into_vec(v)),
            None => {
                return Err(InputError::new(format!(
                    "--secret id={id}: the environment variable {var} is not set"
                ))
                .into());
            }
        },
    })
}

/// The part `written` of the build context (`host`, resolved) as `.dockerignore` leaves
/// it, in a new directory under `cache_dir`: files hard-linked where the file system
/// allows (else copied), directories and links made anew, so nothing is read or copied
/// but names. Returns the directory (removed when dropped) and the path to mount, or
/// `None` when `.dockerignore` leaves out nothing below the directory `host`, which is
/// then mounted as it is.
fn filtered_view(
    context: &crate::context::Context,
    written: &str,
    host: &Path,
    cache_dir: &Path,
) -> anyhow::Result<Option<(tempfile::TempDir, PathBuf)>> {
    use crate::context::{EntryKind, SelectOptions};
    let selection = context
        .select(
            &[written.to_owned()],
            "/m/",
            &SelectOptions::default(),
            &|_| true,
        )
        .map_err(|e| InputError::new(format!("RUN --mount=type=bind,source={written}: {e}")))?;
    if host.is_dir() && !selection.ignored {
        return Ok(None);
    }
    let view = tempfile::Builder::new()
        .prefix("run-mount-")
        .tempdir_in(cache_dir)
        .context("creating a directory for a RUN --mount of the build context")?;
    let root = view.path().join("context");
    let at = |target: &str| {
        let rel = target.strip_prefix("/m").unwrap_or(target);
        root.join(rel.trim_start_matches('/'))
    };
    fs::create_dir_all(&root).context("creating a view of the build context")?;
    for entry in &selection.entries {
        let path = at(&entry.target);
        let made = match &entry.kind {
            EntryKind::Dir => fs::create_dir_all(&path).and_then(|()| {
                fs::set_permissions(&path, fs::metadata(&entry.source)?.permissions())
            }),
            EntryKind::File { .. } => fs::hard_link(&entry.source, &path)
                .or_else(|_| fs::copy(&entry.source, &path).map(|_| ())),
            EntryKind::Symlink { target } => std::os::unix::fs::symlink(target, &path),
            EntryKind::Hardlink { target } => fs::hard_link(at(target), &path),
            EntryKind::Socket => fs::File::create(&path).map(|_| ()),
            // Never selected without ADD.
            EntryKind::Archive => Ok(()),
        };
        made.with_context(|| format!("making {} in a view of the build context", path.display()))?;
    }
    let path = if host.is_dir() {
        root
    } else {
        // Named as written, as the selection names it (a link is followed, not renamed).
        let name = Path::new(written.trim_end_matches('/'))
            .file_name()
            .unwrap_or_default();
        let path = root.join(name);
        if !path.exists() {
            return Err(InputError::new(format!(
                "RUN --mount=type=bind,source={written}: excluded by .dockerignore"
            ))
            .with_hint("mount a path the build context keeps, or stop excluding it")
            .into());
        }
        path
    };
    Ok(Some((view, path)))
}

/// A path of the build context for a bind mount; never outside the context. The error
/// says what is wrong with the path.
pub(super) fn context_path(root: &Path, source: &str) -> Result<PathBuf, String> {
    let joined = root.join(source.trim_start_matches('/'));
    let resolved = fs::canonicalize(&joined).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "not found in the build context".to_owned(),
        _ => format!("cannot read it in the build context: {e}"),
    })?;
    if !resolved.starts_with(root) {
        return Err("leaves the build context".into());
    }
    Ok(resolved)
}

/// A relative path with no `..`, for a directory inside a cache mount.
fn context_relative(sub: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(sub);
    if path.components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    }) {
        return Err(InputError::new(format!(
            "RUN --mount=type=cache,source={sub}: a path inside the cache, without `..`"
        ))
        .into());
    }
    Ok(path.to_owned())
}

fn parse_octal(value: Option<&str>, default: u32) -> anyhow::Result<u32> {
    match value {
        None => Ok(default),
        Some(v) => u32::from_str_radix(v, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                InputError::new(format!("RUN --mount mode={v}: expected an octal mode")).into()
            }),
    }
}

fn parse_id(value: Option<&str>) -> anyhow::Result<Option<u32>> {
    match value {
        None => Ok(Some(0)),
        Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
            InputError::new(format!("RUN --mount uid/gid `{v}`: expected a number")).into()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_mount_of_the_context_shows_what_dockerignore_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        fs::create_dir_all(ctx.join("src/more")).unwrap();
        for (path, text) in [
            ("src/main.rs", "main"),
            ("src/more/mod.rs", "mod"),
            ("src/main.rs.orig", "conflict"),
            (".env", "SECRET=1"),
            ("Cargo.toml", "[package]"),
            (".dockerignore", ".env\nsrc/**/*.orig\n"),
        ] {
            fs::write(ctx.join(path), text).unwrap();
        }
        let cache = dir.path().join("cache");
        fs::create_dir(&cache).unwrap();
        let context = crate::context::Context::open(&ctx).unwrap();
        assert!(context.filters());

        let view = |written: &str| {
            let host = context_path(context.root(), written).unwrap();
            filtered_view(&context, written, &host, &cache)
                .map(|made| made.expect("a view, not the directory itself"))
        };
        let (_kept, src) = view("src").unwrap();
        let mut names: Vec<String> = walk(&src);
        names.sort();
        assert_eq!(names, ["main.rs", "more", "more/mod.rs"]);
        assert_eq!(fs::read_to_string(src.join("main.rs")).unwrap(), "main");

        let (_kept, whole) = view(".").unwrap();
        assert!(!whole.join(".env").exists());
        assert!(whole.join("Cargo.toml").is_file());
        let (_kept, file) = view("Cargo.toml").unwrap();
        assert_eq!(fs::read_to_string(file).unwrap(), "[package]");
        let error = view(".env").unwrap_err().to_string();
        assert!(error.contains("excluded by .dockerignore"), "{error}");
        // Nothing below `src/more` is left out: it is mounted as it is, with no view.
        let more = context_path(context.root(), "src/more").unwrap();
        let views = || fs::read_dir(&cache).unwrap().count();
        let before = views();
        assert!(
            filtered_view(&context, "src/more", &more, &cache)
                .unwrap()
                .is_none()
        );
        assert_eq!(views(), before, "no view is made");
    }

    fn walk(root: &Path) -> Vec<String> {
        let mut names = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                names.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
        names
    }
}
