//! What happens to the root filesystem between debootstrap and the layer, as Debian's
//! official images do it (debuerreotype's minimizing-config, slimify and fixup, re-done
//! here): the apt and dpkg configuration of a container image, the "slim" removal of
//! documentation, and the removal of everything that would make two builds of the same
//! Debian snapshot differ (logs, caches, host files, backups).
//!
//! Everything here is plain file work on a directory, so it is tested on temporary trees.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use regex::Regex;

use crate::error::InputError;

/// Directories whose contents dpkg is told not to install in slim images (and which are
/// emptied now), with the paths kept inside them. dpkg matches with `fnmatch` without
/// `FNM_PATHNAME`: `*` also matches `/`.
const SLIM_EXCLUDES: &[&str] = &[
    "/usr/share/doc/*",
    "/usr/share/groff/*",
    "/usr/share/info/*",
    "/usr/share/linda/*",
    "/usr/share/lintian/overrides/*",
    "/usr/share/locale/*",
    "/usr/share/man/*",
];
const SLIM_INCLUDES: &[&str] = &[
    // The licence of every package stays, as in Debian's slim images.
    "/usr/share/doc/*/copyright",
    "/usr/share/locale/locale.alias",
    "/usr/share/locale/all_languages",
    "/usr/share/locale/languages",
    "/usr/share/locale/currency/*",
    "/usr/share/locale/l10n/*",
];

/// Configuration files every container image gets, as in Debian's official images.
const MINIMIZING_CONFIG: &[(&str, &str, u32)] = &[
    (
        "usr/sbin/policy-rc.d",
        "#!/bin/sh\n\
         # Written by imgbuild: package installs in a container must not start services\n\
         # (there is no init system to run them).\n\
         exit 101\n",
        0o755,
    ),
    (
        "etc/dpkg/dpkg.cfg.d/docker-apt-speedup",
        "# Written by imgbuild: an image build does not survive a power loss anyway, so\n\
         # dpkg need not sync after unpacking each package.\n\
         force-unsafe-io\n",
        0o644,
    ),
    (
        "etc/apt/apt.conf.d/docker-clean",
        "// Written by imgbuild: downloaded packages and apt's binary caches would only\n\
         // make every layer that installs packages bigger.\n\
         DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\n\
         APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\n\
         Dir::Cache::pkgcache \"\";\n\
         Dir::Cache::srcpkgcache \"\";\n",
        0o644,
    ),
    (
        "etc/apt/apt.conf.d/docker-gzip-indexes",
        "// Written by imgbuild: keep package lists compressed on disk (a fraction of the\n\
         // size in a layer that runs apt-get update).\n\
         Acquire::GzipIndexes \"true\";\n",
        0o644,
    ),
    (
        "etc/apt/apt.conf.d/docker-no-languages",
        "// Written by imgbuild: no translated package descriptions.\n\
         Acquire::Languages \"none\";\n",
        0o644,
    ),
    (
        "etc/apt/apt.conf.d/docker-autoremove-suggests",
        "// Written by imgbuild: `apt-get purge --auto-remove` removes what it installed,\n\
         // even when another package merely suggests it.\n\
         Apt::AutoRemove::SuggestsImportant \"false\";\n",
        0o644,
    ),
];

/// Writes the apt and dpkg configuration of a container image.
pub fn write_minimizing_config(rootfs: &Path) -> anyhow::Result<()> {
    for (path, content, mode) in MINIMIZING_CONFIG {
        write_file(&rootfs.join(path), content.as_bytes(), *mode)?;
    }
    Ok(())
}

/// Tells dpkg to leave documentation, man pages and translations out of future installs,
/// and removes those already installed (keeping copyright files).
pub fn slimify(rootfs: &Path) -> anyhow::Result<()> {
    let mut config = String::from(
        "# Written by imgbuild: the \"slim\" variant of a Debian image leaves out files\n\
         # that are rarely needed in containers, and this keeps them out.\n",
    );
    for pattern in SLIM_EXCLUDES {
        config.push_str(&format!("path-exclude {pattern}\n"));
    }
    for pattern in SLIM_INCLUDES {
        config.push_str(&format!("path-include {pattern}\n"));
    }
    write_file(
        &rootfs.join("etc/dpkg/dpkg.cfg.d/docker"),
        config.as_bytes(),
        0o644,
    )?;

    let includes: Vec<Regex> = SLIM_INCLUDES.iter().map(|p| fnmatch_regex(p)).collect();
    for pattern in SLIM_EXCLUDES {
        let dir = pattern.trim_end_matches("/*");
        let host_dir = rootfs.join(dir.trim_start_matches('/'));
        if !host_dir.is_dir() {
            continue;
        }
        remove_files_not_matching(rootfs, &host_dir, &includes)
            .with_context(|| format!("slimming {dir}"))?;
        remove_empty_and_dangling(rootfs, &host_dir).with_context(|| format!("slimming {dir}"))?;
    }
    Ok(())
}

/// dpkg's path patterns as a regex: `*` matches anything, `/` included.
fn fnmatch_regex(pattern: &str) -> Regex {
    let body = pattern
        .split('*')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(".*");
    // Escaped literals joined by `.*` always form a valid regex.
    Regex::new(&format!("^{body}$")).unwrap_or_else(|_| unreachable!("escaped pattern"))
}

/// The path of `path` inside the image (`/usr/share/...`).
fn image_path(rootfs: &Path, path: &Path) -> String {
    format!(
        "/{}",
        path.strip_prefix(rootfs).unwrap_or(path).to_string_lossy()
    )
}

/// Deletes the files below `dir` that no include pattern keeps. Symlinks stay for now: the
/// next pass deletes those left dangling.
fn remove_files_not_matching(rootfs: &Path, dir: &Path, includes: &[Regex]) -> io::Result<()> {
    for entry in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false) {
        let entry = entry.map_err(io::Error::other)?;
        if entry.file_type().is_dir() || entry.file_type().is_symlink() {
            continue;
        }
        let inside = image_path(rootfs, entry.path());
        if !includes.iter().any(|re| re.is_match(&inside)) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Repeatedly deletes empty directories and dangling symlinks below `dir` (deleting one
/// can make another empty or dangling), as dpkg would have left none of them.
fn remove_empty_and_dangling(rootfs: &Path, dir: &Path) -> io::Result<()> {
    loop {
        let mut removed = 0;
        for entry in walkdir::WalkDir::new(dir)
            .min_depth(1)
            .contents_first(true)
            .follow_links(false)
        {
            let entry = entry.map_err(io::Error::other)?;
            let path = entry.path();
            if entry.file_type().is_dir() {
                if fs::read_dir(path)?.next().is_none() {
                    fs::remove_dir(path)?;
                    removed += 1;
                }
            } else if entry.file_type().is_symlink() && !symlink_resolves(rootfs, path)? {
                fs::remove_file(path)?;
                removed += 1;
            }
        }
        if removed == 0 {
            return Ok(());
        }
    }
}

/// Whether a symlink of the image points at something, following the whole chain as the
/// kernel would inside the image: absolute targets and `..` resolve inside `rootfs`, never
/// on the host (`/etc/alternatives/awk.1.gz`, `/bin` → `usr/bin`). A loop counts as dangling.
fn symlink_resolves(rootfs: &Path, link: &Path) -> io::Result<bool> {
    use std::path::Component;
    const MAX_HOPS: usize = 40;
    let inside = link.strip_prefix(rootfs).unwrap_or(link);
    // Components still to walk, last first; and where the walk is, inside the image.
    let mut pending: Vec<std::ffi::OsString> = inside
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    let mut at = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            at.pop();
            continue;
        }
        if part == "." {
            continue;
        }
        let candidate = rootfs.join(&at).join(&part);
        let meta = match fs::symlink_metadata(&candidate) {
            Ok(m) => m,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if !meta.file_type().is_symlink() {
            at.push(&part);
            continue;
        }
        hops += 1;
        if hops > MAX_HOPS {
            return Ok(false);
        }
        let target = fs::read_link(&candidate)?;
        if target.is_absolute() {
            at = PathBuf::new();
        }
        for c in target.components().rev() {
            match c {
                Component::Normal(n) => pending.push(n.to_os_string()),
                Component::ParentDir => pending.push("..".into()),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
    }
    Ok(true)
}

/// Uncomments (or adds) each locale's line in `/etc/locale.gen`, taking its charset from
/// the suite's `/usr/share/i18n/SUPPORTED`; `locale-gen` then builds them.
pub fn enable_locales(rootfs: &Path, recipe_path: &Path, locales: &[String]) -> anyhow::Result<()> {
    let supported_path = rootfs.join("usr/share/i18n/SUPPORTED");
    let supported = fs::read_to_string(&supported_path).with_context(|| {
        format!(
            "reading {} (is the `locales` package installed?)",
            supported_path.display()
        )
    })?;
    let locale_gen = rootfs.join("etc/locale.gen");
    let mut text = fs::read_to_string(&locale_gen).unwrap_or_default();
    for locale in locales {
        let Some(line) = supported
            .lines()
            .find(|l| l.split_whitespace().next() == Some(locale.as_str()))
        else {
            return Err(InputError::new(format!(
                "{}: locale `{locale}` is not one the suite supports (see /usr/share/i18n/SUPPORTED)",
                recipe_path.display()
            ))
            .into());
        };
        let line = line.trim();
        let commented = format!("# {line}\n");
        if text.lines().any(|l| l.trim() == line) {
            continue;
        }
        if text.contains(&commented) {
            text = text.replacen(&commented, &format!("{line}\n"), 1);
        } else {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(line);
            text.push('\n');
        }
    }
    write_file(&locale_gen, text.as_bytes(), 0o644)
}

/// Removes what makes a root filesystem differ between two builds of the same packages, or
/// what no container needs: apt lists and caches, logs, machine ids, backup files, Python
/// bytecode, the host's network files; and clamps shadow's last-change days to the epoch.
pub fn strip_volatile(rootfs: &Path, epoch: i64) -> anyhow::Result<()> {
    // apt recreates these directories' contents (`partial/` included) when it needs them.
    for dir in ["var/lib/apt/lists", "var/cache/apt"] {
        empty_dir(&rootfs.join(dir))?;
    }
    // Logs of this build: timestamps, and nothing a user of the image needs.
    remove_files_below(&rootfs.join("var/log"))?;
    for file in [
        // ldconfig's cache of file stats (mtimes, inodes of this build).
        "var/cache/ldconfig/aux-cache",
        "var/lib/dbus/machine-id",
        // Host kernel versions, written by apt's kernel hook.
        "etc/apt/apt.conf.d/01autoremove-kernels",
        "run/mount/utab",
    ] {
        remove_if_present(&rootfs.join(file))?;
    }
    // Backups dpkg and debconf keep of their databases before each change.
    for dir in ["var/cache/debconf", "var/lib/dpkg"] {
        for entry in read_dir_sorted(&rootfs.join(dir))? {
            if entry.to_string_lossy().ends_with("-old") {
                remove_if_present(&entry)?;
            }
        }
    }
    // The engine mounts its own; debootstrap copied the host's. machine-id stays, empty,
    // as systemd wants it to be in images.
    for file in [
        "etc/resolv.conf",
        "etc/hostname",
        "etc/hosts",
        "etc/machine-id",
    ] {
        let path = rootfs.join(file);
        if fs::symlink_metadata(&path).is_ok() {
            remove_if_present(&path)?;
            write_file(&path, b"", 0o644)?;
        }
    }
    remove_python_bytecode(rootfs)?;
    let days = epoch.div_euclid(86_400);
    for file in ["etc/shadow", "etc/shadow-"] {
        clamp_shadow_last_change(&rootfs.join(file), days)?;
    }
    Ok(())
}

/// `*.pyc` files and `__pycache__` directories: compiled at install time, with timestamps.
fn remove_python_bytecode(rootfs: &Path) -> anyhow::Result<()> {
    let skip = ["dev", "proc", "sys"].map(|d| rootfs.join(d));
    let mut walk = walkdir::WalkDir::new(rootfs)
        .follow_links(false)
        .into_iter();
    let mut doomed: Vec<(PathBuf, bool)> = Vec::new();
    while let Some(entry) = walk.next() {
        let entry = entry.with_context(|| format!("walking {}", rootfs.display()))?;
        let path = entry.path();
        let is_dir = entry.file_type().is_dir();
        if is_dir && skip.iter().any(|s| s == path) {
            walk.skip_current_dir();
            continue;
        }
        let name = entry.file_name().to_string_lossy();
        if is_dir && name == "__pycache__" {
            doomed.push((path.to_path_buf(), true));
            walk.skip_current_dir();
        } else if !is_dir && name.ends_with(".pyc") {
            doomed.push((path.to_path_buf(), false));
        }
    }
    for (path, is_dir) in doomed {
        if is_dir {
            super::workdir::remove_safely(&path)?;
        } else {
            remove_if_present(&path)?;
        }
    }
    Ok(())
}

/// Field 3 of `/etc/shadow` (days since 1970 of the last password change) is the day of
/// the build unless the tools honoured SOURCE_DATE_EPOCH; cap it at the epoch's day.
fn clamp_shadow_last_change(path: &Path, days: i64) -> anyhow::Result<()> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(());
    };
    let clamped: String = text
        .lines()
        .map(|line| {
            let mut fields: Vec<String> = line.split(':').map(str::to_owned).collect();
            if let Some(field) = fields.get_mut(2)
                && field.parse::<i64>().is_ok_and(|d| d > days)
            {
                *field = days.to_string();
            }
            fields.join(":") + "\n"
        })
        .collect();
    if clamped != text {
        // Written in place: the file keeps its mode (0640) and group (shadow).
        fs::write(path, clamped).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn read_dir_sorted(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()
            .with_context(|| format!("reading {}", dir.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    entries.sort();
    Ok(entries)
}

/// Deletes everything inside `dir`, keeping `dir`.
fn empty_dir(dir: &Path) -> anyhow::Result<()> {
    for entry in read_dir_sorted(dir)? {
        super::workdir::remove_safely(&entry)?;
    }
    Ok(())
}

/// Deletes every file below `dir`, keeping the directories (packages own them).
fn remove_files_below(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false) {
        let entry = entry.with_context(|| format!("walking {}", dir.display()))?;
        if !entry.file_type().is_dir() {
            remove_if_present(entry.path())?;
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting {}", path.display())),
    }
}

/// Writes a file with an exact mode (not the umask's), creating its directory.
fn write_file(path: &Path, content: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for f in files {
            let path = root.path().join(f);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, f).unwrap();
        }
        root
    }

    fn exists(root: &Path, p: &str) -> bool {
        fs::symlink_metadata(root.join(p)).is_ok()
    }

    #[test]
    fn slim_keeps_copyrights_and_drops_docs() {
        let root = tree(&[
            "usr/share/doc/bash/copyright",
            "usr/share/doc/bash/changelog.Debian.gz",
            "usr/share/doc/bash/examples/x.sh",
            "usr/share/man/man1/bash.1.gz",
            "usr/share/locale/de/LC_MESSAGES/bash.mo",
            "usr/share/locale/locale.alias",
            "usr/share/info/bash.info.gz",
            "usr/share/bash-completion/x",
        ]);
        let r = root.path();
        // A symlinked doc directory (as packages ship them) whose target is removed.
        fs::create_dir_all(r.join("usr/share/doc/libfoo")).unwrap();
        std::os::unix::fs::symlink("/usr/share/doc/gone", r.join("usr/share/doc/libbar")).unwrap();
        std::os::unix::fs::symlink("bash", r.join("usr/share/doc/bash-alias")).unwrap();
        // Man pages reached through update-alternatives: dangling at the end of the chain,
        // and a chain that ends in a kept file through the merged-/usr link /bin.
        fs::create_dir_all(r.join("etc/alternatives")).unwrap();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        fs::write(r.join("usr/bin/mawk"), "").unwrap();
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        std::os::unix::fs::symlink(
            "/usr/share/man/man1/mawk.1.gz",
            r.join("etc/alternatives/awk.1.gz"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/etc/alternatives/awk.1.gz",
            r.join("usr/share/man/man1/awk.1.gz"),
        )
        .unwrap();
        std::os::unix::fs::symlink("../../../../bin/mawk", r.join("usr/share/man/man1/keep"))
            .unwrap();
        std::os::unix::fs::symlink("loop", r.join("usr/share/man/man1/loop")).unwrap();
        slimify(r).unwrap();
        assert!(!exists(r, "usr/share/man/man1/awk.1.gz"));
        assert!(exists(r, "usr/share/man/man1/keep"));
        assert!(!exists(r, "usr/share/man/man1/loop"));
        assert!(
            exists(r, "etc/alternatives/awk.1.gz"),
            "only the slimmed directories change"
        );
        assert!(exists(r, "usr/share/doc/bash/copyright"));
        assert!(!exists(r, "usr/share/doc/bash/changelog.Debian.gz"));
        assert!(!exists(r, "usr/share/doc/bash/examples"));
        assert!(!exists(r, "usr/share/doc/libfoo"));
        assert!(!exists(r, "usr/share/doc/libbar"));
        assert!(
            exists(r, "usr/share/doc/bash-alias"),
            "a link to a kept directory stays"
        );
        assert!(!exists(r, "usr/share/man/man1/bash.1.gz"));
        assert!(
            exists(r, "usr/share/man"),
            "the excluded directory itself stays"
        );
        assert!(!exists(r, "usr/share/locale/de"));
        assert!(exists(r, "usr/share/locale/locale.alias"));
        assert!(!exists(r, "usr/share/info/bash.info.gz"));
        assert!(exists(r, "usr/share/bash-completion/x"));
        let config = fs::read_to_string(r.join("etc/dpkg/dpkg.cfg.d/docker")).unwrap();
        assert!(
            config.contains("path-exclude /usr/share/doc/*\n"),
            "{config}"
        );
        assert!(
            config.contains("path-include /usr/share/doc/*/copyright\n"),
            "{config}"
        );
    }

    #[test]
    fn fnmatch_star_crosses_slashes() {
        let re = fnmatch_regex("/usr/share/doc/*/copyright");
        assert!(re.is_match("/usr/share/doc/a/copyright"));
        assert!(re.is_match("/usr/share/doc/a/b/copyright"));
        assert!(!re.is_match("/usr/share/doc/a/copyright.txt"));
        assert!(fnmatch_regex("/a.b/*").is_match("/a.b/x"));
        assert!(!fnmatch_regex("/a.b/*").is_match("/aXb/x"));
    }

    #[test]
    fn volatile_files_go() {
        let root = tree(&[
            "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_Release",
            "var/lib/apt/lists/partial/x",
            "var/cache/apt/archives/bash.deb",
            "var/log/dpkg.log",
            "var/log/apt/term.log",
            "var/cache/ldconfig/aux-cache",
            "var/cache/debconf/config.dat",
            "var/cache/debconf/config.dat-old",
            "var/lib/dpkg/status",
            "var/lib/dpkg/status-old",
            "etc/resolv.conf",
            "etc/hostname",
            "usr/lib/python3/dist-packages/x/__pycache__/y.cpython-311.pyc",
            "usr/lib/python3/dist-packages/x/z.pyc",
            "usr/lib/python3/dist-packages/x/z.py",
        ]);
        let r = root.path();
        // 2026-07-11 is day 20645; one user changed later, one earlier.
        fs::write(
            r.join("etc/shadow"),
            "root:*:20783:0:99999:7:::\nold:*:19000:0:99999:7:::\n",
        )
        .unwrap();
        fs::set_permissions(r.join("etc/shadow"), fs::Permissions::from_mode(0o640)).unwrap();
        strip_volatile(r, 1_783_764_997).unwrap();
        assert!(exists(r, "var/lib/apt/lists"));
        assert_eq!(
            fs::read_dir(r.join("var/lib/apt/lists")).unwrap().count(),
            0
        );
        assert_eq!(fs::read_dir(r.join("var/cache/apt")).unwrap().count(), 0);
        assert!(!exists(r, "var/log/dpkg.log"));
        assert!(exists(r, "var/log/apt"));
        assert!(!exists(r, "var/log/apt/term.log"));
        assert!(!exists(r, "var/cache/ldconfig/aux-cache"));
        assert!(exists(r, "var/cache/debconf/config.dat"));
        assert!(!exists(r, "var/cache/debconf/config.dat-old"));
        assert!(exists(r, "var/lib/dpkg/status"));
        assert!(!exists(r, "var/lib/dpkg/status-old"));
        assert_eq!(fs::read(r.join("etc/resolv.conf")).unwrap(), b"");
        assert_eq!(fs::read(r.join("etc/hostname")).unwrap(), b"");
        assert!(
            !exists(r, "etc/hosts"),
            "not created when debootstrap made none"
        );
        assert!(!exists(r, "usr/lib/python3/dist-packages/x/__pycache__"));
        assert!(!exists(r, "usr/lib/python3/dist-packages/x/z.pyc"));
        assert!(exists(r, "usr/lib/python3/dist-packages/x/z.py"));
        assert_eq!(
            fs::read_to_string(r.join("etc/shadow")).unwrap(),
            "root:*:20645:0:99999:7:::\nold:*:19000:0:99999:7:::\n"
        );
        let mode = fs::metadata(r.join("etc/shadow"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn locales_are_enabled_from_supported() {
        let root = tree(&[]);
        let r = root.path();
        fs::create_dir_all(r.join("usr/share/i18n")).unwrap();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::write(
            r.join("usr/share/i18n/SUPPORTED"),
            "de_DE.UTF-8 UTF-8\nen_US ISO-8859-1\nen_US.UTF-8 UTF-8\n",
        )
        .unwrap();
        fs::write(
            r.join("etc/locale.gen"),
            "# header\n# en_US ISO-8859-1\n# en_US.UTF-8 UTF-8\n",
        )
        .unwrap();
        let recipe = Path::new("image.toml");
        enable_locales(r, recipe, &["en_US.UTF-8".into(), "de_DE.UTF-8".into()]).unwrap();
        assert_eq!(
            fs::read_to_string(r.join("etc/locale.gen")).unwrap(),
            "# header\n# en_US ISO-8859-1\nen_US.UTF-8 UTF-8\nde_DE.UTF-8 UTF-8\n"
        );
        // Twice gives the same file.
        enable_locales(r, recipe, &["en_US.UTF-8".into()]).unwrap();
        assert!(
            fs::read_to_string(r.join("etc/locale.gen"))
                .unwrap()
                .ends_with("en_US.UTF-8 UTF-8\nde_DE.UTF-8 UTF-8\n")
        );
        let err = enable_locales(r, recipe, &["xx_XX.UTF-8".into()]).unwrap_err();
        assert!(crate::error::is_input_error(&err, &[]), "{err}");
        assert!(err.to_string().contains("xx_XX.UTF-8"), "{err}");
    }

    #[test]
    fn minimizing_config_has_exact_modes() {
        let root = tree(&[]);
        write_minimizing_config(root.path()).unwrap();
        let policy = fs::metadata(root.path().join("usr/sbin/policy-rc.d")).unwrap();
        assert_eq!(policy.permissions().mode() & 0o7777, 0o755);
        let clean = root.path().join("etc/apt/apt.conf.d/docker-clean");
        assert_eq!(
            fs::metadata(&clean).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        assert!(
            fs::read_to_string(clean)
                .unwrap()
                .contains("Dir::Cache::pkgcache \"\";")
        );
    }
}
