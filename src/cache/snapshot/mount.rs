//! Overlay mounts of any depth.
//!
//! mount(2) takes its options in one page, so a `lowerdir=a:b:…` of 200 snapshot paths
//! does not fit. The new mount API does: `fsopen("overlay")`, then one
//! `fsconfig("lowerdir+", path)` per lower directory (Linux 6.8+; each path at most 255
//! bytes), `fsmount` and `move_mount`. Kernels without `lowerdir+` get mount(2) when the
//! options fit in a page, and a clear error when they do not.
//!
//! Options: `index=off` (lower directories are shared by many mounts at once),
//! `metacopy=off` (a chown must copy the whole file up: an upper directory becomes a
//! layer on its own) and `redirect_dir=off` (a renamed lower directory is copied, not
//! recorded as a redirect a layer cannot express).
//!
//! A mount whose writes are thrown away can be `volatile` (Linux 5.10+): overlayfs then
//! skips the `syncfs` of the whole upper file system that every unmount otherwise does,
//! which costs tens of milliseconds right after a build has written a lot.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use super::error::{Error, Result};

/// overlayfs stacks at most this many lower directories (`OVL_MAX_STACK`).
pub(super) const MAX_LOWERS: usize = 500;
/// The longest string `fsconfig` takes (`strndup_user(value, 256)`, NUL included).
const FSCONFIG_MAX: usize = 255;
/// mount(2) copies one page of options; 4 KiB on every page size imgbuild runs on.
const MOUNT_DATA_MAX: usize = 4095;

const FEATURE_OPTIONS: [(&str, &str); 3] = [
    ("index", "off"),
    ("metacopy", "off"),
    ("redirect_dir", "off"),
];

/// What to mount: lower directories topmost first (overlay's order), one upper directory
/// and its work directory on the same file system.
pub(super) struct Overlay<'a> {
    pub lowers_top_first: Vec<&'a Path>,
    pub upper: &'a Path,
    pub work: &'a Path,
    /// Skip syncing the upper file system on unmount (`volatile`).
    pub volatile: bool,
}

/// Which kernel interface to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    /// The new mount API, else mount(2).
    Auto,
    /// mount(2) only (what older kernels get; tests use it to check that path).
    #[cfg_attr(not(test), allow(dead_code))]
    Legacy,
}

/// Mounts `overlay` at `target` (an existing directory).
pub(super) fn mount(overlay: &Overlay<'_>, target: &Path, api: Api) -> Result<()> {
    let n = overlay.lowers_top_first.len();
    if n == 0 {
        return Err(Error::Invalid(
            "an overlay mount needs at least one lower directory".into(),
        ));
    }
    if n > MAX_LOWERS {
        return Err(Error::Mount(format!(
            "mounting at {}: overlayfs stacks at most {MAX_LOWERS} lower directories, and \
             this snapshot has {n}; squash the stage (fewer RUN/COPY steps)",
            target.display()
        )));
    }
    let why_legacy = match api {
        Api::Legacy => "mount(2) was asked for".to_string(),
        Api::Auto => match mount_new_api(overlay, target) {
            Ok(()) => return Ok(()),
            Err(NewApi::Failed(e)) => return Err(e),
            Err(NewApi::Unsupported(why)) => why,
        },
    };
    mount_legacy(overlay, target, &why_legacy)
}

enum NewApi {
    /// The kernel lacks what is needed: try mount(2).
    Unsupported(String),
    Failed(Error),
}

fn mount_new_api(overlay: &Overlay<'_>, target: &Path) -> Result<(), NewApi> {
    let failed = |what: &str, e: Errno, fs: Option<&OwnedFd>| {
        let log = fs.map(kernel_log).unwrap_or_default();
        NewApi::Failed(Error::Mount(format!(
            "mounting an overlay at {}: {what}: {}{log}",
            target.display(),
            io::Error::from(e)
        )))
    };
    let paths = overlay
        .lowers_top_first
        .iter()
        .chain([&overlay.upper, &overlay.work]);
    if let Some(long) = paths
        .map(|p| p.as_os_str().as_bytes())
        .find(|p| p.len() > FSCONFIG_MAX)
    {
        return Err(NewApi::Unsupported(format!(
            "`{}` is longer than the {FSCONFIG_MAX} bytes fsconfig takes (use a shorter \
             cache directory)",
            String::from_utf8_lossy(long)
        )));
    }
    let fs = match rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fs) => fs,
        Err(Errno::NOSYS) => {
            return Err(NewApi::Unsupported(
                "the kernel has no new mount API (fsopen)".into(),
            ));
        }
        Err(e) => return Err(failed("fsopen(\"overlay\")", e, None)),
    };
    for (i, lower) in overlay.lowers_top_first.iter().enumerate() {
        match rustix::mount::fsconfig_set_string(&fs, "lowerdir+", *lower) {
            Ok(()) => {}
            // An unknown parameter on the first try: a kernel before 6.8.
            Err(Errno::INVAL) if i == 0 && kernel_log(&fs).contains("lowerdir+") => {
                return Err(NewApi::Unsupported(
                    "the kernel's overlayfs has no `lowerdir+` (Linux 6.8 or later)".into(),
                ));
            }
            Err(e) => {
                let what = format!("lower directory {}", lower.display());
                return Err(failed(&what, e, Some(&fs)));
            }
        }
    }
    let set = |key: &str, value: &OsStr| {
        rustix::mount::fsconfig_set_string(&fs, key, value)
            .map_err(|e| failed(&format!("option {key}"), e, Some(&fs)))
    };
    set("upperdir", overlay.upper.as_os_str())?;
    set("workdir", overlay.work.as_os_str())?;
    for (key, value) in FEATURE_OPTIONS {
        set(key, OsStr::new(value))?;
    }
    if overlay.volatile {
        rustix::mount::fsconfig_set_flag(&fs, "volatile")
            .map_err(|e| failed("option volatile", e, Some(&fs)))?;
    }
    rustix::mount::fsconfig_set_string(&fs, "source", "imgbuild")
        .map_err(|e| failed("option source", e, Some(&fs)))?;
    rustix::mount::fsconfig_create(&fs).map_err(|e| failed("creating it", e, Some(&fs)))?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(|e| failed("fsmount", e, Some(&fs)))?;
    rustix::mount::move_mount(
        mnt.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| failed("attaching it (move_mount)", e, None))
}

/// The messages the kernel left on an fs context (`e overlay: …`), as `" (…; …)"`.
fn kernel_log(fs: &OwnedFd) -> String {
    let mut messages = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = rustix::io::read(fs, &mut buf) {
        let Some(message) = buf.get(..n).filter(|m| !m.is_empty()) else {
            break;
        };
        let message = String::from_utf8_lossy(message);
        let message = message.trim_end();
        messages.push(message.get(2..).unwrap_or(message).to_string());
    }
    match messages.is_empty() {
        true => String::new(),
        false => format!(" ({})", messages.join("; ")),
    }
}

fn mount_legacy(overlay: &Overlay<'_>, target: &Path, why: &str) -> Result<()> {
    let lowerdir: Vec<String> = overlay.lowers_top_first.iter().map(|p| escape(p)).collect();
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        escape(overlay.upper),
        escape(overlay.work)
    );
    for (key, value) in FEATURE_OPTIONS {
        data.push_str(&format!(",{key}={value}"));
    }
    if overlay.volatile {
        data.push_str(",volatile");
    }
    if data.len() > MOUNT_DATA_MAX {
        return Err(Error::Mount(format!(
            "mounting an overlay of {} lower directories at {}: mount(2) takes at most \
             {MOUNT_DATA_MAX} bytes of options and these need {}; the new mount API has \
             no such limit, but {why}",
            overlay.lowers_top_first.len(),
            target.display(),
            data.len()
        )));
    }
    let data = std::ffi::CString::new(data)
        .map_err(|_| Error::Invalid("a NUL byte in an overlay path".into()))?;
    rustix::mount::mount("imgbuild", target, "overlay", MountFlags::empty(), &*data).map_err(|e| {
        Error::Mount(format!(
            "mounting an overlay at {} with mount(2) ({why}): {}",
            target.display(),
            io::Error::from(e)
        ))
    })
}

/// A path in mount(2) overlay options: `\`, `,` and `:` escaped.
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Unmounts `target`, waiting a little while processes that used it finish exiting.
pub(super) fn unmount(target: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match rustix::mount::unmount(target, UnmountFlags::NOFOLLOW) {
            Ok(()) => return Ok(()),
            Err(Errno::BUSY) if tries < 40 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(e) => {
                return Err(Error::Io {
                    context: format!("unmounting {}", target.display()),
                    source: e.into(),
                });
            }
        }
    }
}

/// Detaches whatever is mounted at `target` (and below), for clean-up paths.
pub(super) fn detach(target: &Path) -> io::Result<()> {
    Ok(rustix::mount::unmount(
        target,
        UnmountFlags::DETACH | UnmountFlags::NOFOLLOW,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_options_escape_separators() {
        assert_eq!(escape(Path::new("/a:b,c\\d")), "/a\\:b\\,c\\\\d");
    }
}
