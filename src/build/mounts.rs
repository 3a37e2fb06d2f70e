//! `RUN --mount`: what a RUN sees besides its image, never committed with it.
//!
//! * `type=cache`: a directory kept across builds under `<cache-dir>/mounts-v1/`, one per
//!   mount id (the target by default), as BuildKit keeps its cache mounts;
//! * `type=secret`: a `--secret` written to a private temporary file outside the cache
//!   dir, mounted read-only (or exported as an environment variable with `env=`) for that
//!   RUN only, and deleted when it ends;
//! * `type=bind` from the build context: the context path, read-only unless `rw`;
//! * `type=tmpfs`: an empty in-memory directory.
//!
//! The cache and bind mounts are host directories, so they need the engine to run on this
//! machine (a unix socket), as the test environment's does.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

use crate::engine::Mount as EngineMount;
use crate::engine::cleanup;
use crate::error::InputError;
use crate::frontend::instructions::{Mount, MountKind};
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

/// What must live as long as a RUN: secret files and cache-mount locks.
#[derive(Default)]
pub struct MountGuards {
    _secrets: Vec<tempfile::TempDir>,
    _locks: Vec<fs::File>,
}

/// A RUN's mounts for the engine, and its command wrapped when a secret goes into an
/// environment variable.
pub struct PreparedMounts {
    pub mounts: Vec<EngineMount>,
    /// Shell lines run before the command: `export VAR="$(cat FILE)"`.
    pub env_exports: Vec<String>,
    pub guards: MountGuards,
}

/// Inputs the mounts need from the build.
pub struct MountContext<'a> {
    pub cache_dir: &'a Path,
    pub context_root: &'a Path,
    pub secrets: &'a std::collections::BTreeMap<String, SecretSource>,
}

fn not_supported(what: &str) -> anyhow::Error {
    InputError::new(format!(
        "RUN --mount {what} is not supported by imgbuild yet"
    ))
    .into()
}

/// Whether the engine runs on this machine: host paths can only be mounted there.
fn engine_is_local() -> bool {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => host.starts_with("unix://"),
        _ => true,
    }
}

pub fn prepare(mounts: &[Mount], cx: &MountContext<'_>) -> anyhow::Result<PreparedMounts> {
    let mut out = PreparedMounts {
        mounts: Vec::new(),
        env_exports: Vec::new(),
        guards: MountGuards::default(),
    };
    for mount in mounts {
        match mount.kind {
            MountKind::Tmpfs => out.mounts.push(EngineMount::Tmpfs {
                target: target_of(mount)?,
            }),
            MountKind::Cache => {
                require_local("type=cache")?;
                if mount.from.is_some() || mount.source.is_some() {
                    return Err(not_supported("type=cache with from= or source="));
                }
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
                out.mounts.push(EngineMount::Bind {
                    source: dir,
                    target: target_of(mount)?,
                    read_only: mount.readonly,
                });
            }
            MountKind::Secret => {
                let id = mount
                    .id
                    .clone()
                    .or_else(|| {
                        mount
                            .target
                            .as_deref()
                            .and_then(|t| t.rsplit('/').next())
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
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
                require_local("type=secret")?;
                // Named after this process, so that when it is killed (no destructor runs)
                // the next build removes the copy.
                cleanup::run_on_interrupt_exit(remove_own_secrets);
                let prefix = format!(
                    "{SECRET_DIR_PREFIX}{}",
                    cleanup::owner_tag().unwrap_or_default()
                );
                let dir = tempfile::Builder::new()
                    .prefix(&prefix)
                    .tempdir()
                    .context("creating a private directory for a secret")?;
                fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))?;
                let file = dir.path().join("secret");
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
                match (&mount.env, &mount.target) {
                    (Some(var), None) => {
                        let inside = format!(
                            "/run/secrets/.imgbuild-env-{}",
                            hex::encode(Sha256::digest(id.as_bytes()))
                                .get(..16)
                                .unwrap_or_default()
                        );
                        out.env_exports
                            .push(format!("export {var}=\"$(cat '{inside}')\""));
                        out.mounts.push(EngineMount::Bind {
                            source: file,
                            target: inside,
                            read_only: true,
                        });
                    }
                    (env, target) => {
                        let target = target
                            .clone()
                            .unwrap_or_else(|| format!("/run/secrets/{id}"));
                        if let Some(var) = env {
                            out.env_exports
                                .push(format!("export {var}=\"$(cat '{target}')\""));
                        }
                        out.mounts.push(EngineMount::Bind {
                            source: file,
                            target,
                            read_only: true,
                        });
                    }
                }
                out.guards._secrets.push(dir);
            }
            MountKind::Bind => {
                if mount.from.is_some() {
                    return Err(not_supported("type=bind,from=…"));
                }
                require_local("type=bind")?;
                let source = context_path(cx.context_root, mount.source.as_deref().unwrap_or("."))?;
                out.mounts.push(EngineMount::Bind {
                    source,
                    target: target_of(mount)?,
                    read_only: mount.readonly,
                });
            }
            MountKind::Ssh => return Err(not_supported("type=ssh")),
        }
    }
    Ok(out)
}

fn require_local(what: &str) -> anyhow::Result<()> {
    if engine_is_local() {
        Ok(())
    } else {
        Err(InputError::new(format!("RUN --mount={what} needs the Docker engine on this machine (DOCKER_HOST is not a unix socket)")).into())
    }
}

fn target_of(mount: &Mount) -> anyhow::Result<String> {
    mount
        .target
        .clone()
        .ok_or_else(|| InputError::new("RUN --mount needs target=PATH").into())
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

/// A path of the build context for a bind mount; never outside the context.
fn context_path(root: &Path, source: &str) -> anyhow::Result<PathBuf> {
    let joined = root.join(source.trim_start_matches('/'));
    let resolved = fs::canonicalize(&joined)
        .map_err(|e| InputError::new(format!("RUN --mount=type=bind,source={source}: {e}")))?;
    if !resolved.starts_with(root) {
        return Err(InputError::new(format!(
            "RUN --mount=type=bind,source={source}: leaves the build context"
        ))
        .into());
    }
    Ok(resolved)
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
