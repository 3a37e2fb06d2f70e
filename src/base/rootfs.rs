//! Making the root filesystem with Debian's own tools: debootstrap, then commands run
//! chrooted into it (apt-mark, locale-gen). Each runs in a private mount namespace
//! (`unshare --mount --propagation private`), so the `/proc`, `/sys` and `/dev` mounts they
//! make vanish when they exit, even when they are killed.
//!
//! The source date epoch comes from the `Date:` of the suite's `Release` file, so the same
//! Debian snapshot gives the same timestamps; it is exported as `SOURCE_DATE_EPOCH` to
//! every tool (shadow's last-change field honours it).

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};

use super::recipe::Recipe;
use crate::error::InputError;
use crate::oci::Platform;
use crate::progress::{Reporter, VertexId};

/// PATH inside the chroot and for the host tools.
const TOOL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Lines of a failed command's output kept for the error message.
const TAIL_LINES: usize = 25;

/// Checks what `imgbuild base build` needs of the host before anything long starts.
pub fn check_host(platform: &Platform) -> Result<(), InputError> {
    if !rustix::process::geteuid().is_root() {
        return Err(InputError::new(
            "imgbuild base build must run as root: debootstrap creates device nodes, changes \
             owners and chroots into the new root filesystem",
        )
        .with_hint("run it with sudo, or as root in CI"));
    }
    for (tool, package) in [
        ("debootstrap", "debootstrap"),
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
        ("chroot", "coreutils"),
        ("dpkg", "dpkg"),
    ] {
        if find_tool(tool).is_none() {
            return Err(InputError::new(format!("`{tool}` is not installed"))
                .with_hint(format!("apt-get install {package}")));
        }
    }
    let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    if !keyring.is_file() {
        return Err(InputError::new(format!(
            "{} is missing: debootstrap could not check the Debian archive's signatures",
            keyring.display()
        ))
        .with_hint("apt-get install debian-archive-keyring"));
    }
    if platform.os != "linux" {
        return Err(InputError::new(format!(
            "base images are Linux images; --platform {platform} cannot be built"
        )));
    }
    let host = host_architecture().map_err(|e| InputError::new(e.to_string()))?;
    if platform.variant.is_some() {
        return Err(InputError::new(format!(
            "--platform {platform}: base images are built for an architecture without a variant"
        )));
    }
    // Another architecture: debootstrap's second stage and the chrooted commands run that
    // architecture's programs, through the kernel's emulation.
    if platform.architecture != host
        && let Err(why) = crate::runtime::emulation::can_run(&platform.architecture)
    {
        return Err(InputError::new(format!(
            "this machine ({host}) cannot run {platform} programs, which debootstrap runs to make the root file system: {why}"
        ))
        .with_hint(format!(
            "install qemu-user-static (its binfmt_misc handlers), pass --platform linux/{host}, or build on such a machine"
        )));
    }
    Ok(())
}

/// debootstrap's arguments for `recipe` into `rootfs`, for the OCI `architecture` (another
/// than this machine's runs its second stage under binfmt emulation).
fn debootstrap_args(recipe: &Recipe, rootfs: &Path, architecture: &str) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--variant=minbase".into(),
        // Fail rather than install from an unverified archive.
        "--force-check-gpg".into(),
        format!("--arch={}", debian_architecture(architecture)),
    ];
    if recipe.components != ["main"] {
        args.push(format!("--components={}", recipe.components.join(",")));
    }
    if !recipe.packages.is_empty() {
        args.push(format!("--include={}", recipe.packages.join(",")));
    }
    args.push(recipe.suite.clone());
    args.push(rootfs.display().to_string());
    args.push(recipe.mirror.clone());
    args
}

/// Debian's name of an OCI architecture (most are the same).
fn debian_architecture(oci: &str) -> &str {
    match oci {
        "386" => "i386",
        "ppc64le" => "ppc64el",
        other => other,
    }
}

/// Debian's name of the host architecture (`amd64`, `arm64`, …), which is also OCI's.
fn host_architecture() -> anyhow::Result<String> {
    let output = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .context("running dpkg --print-architecture")?;
    if !output.status.success() {
        bail!("dpkg --print-architecture failed ({})", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn find_tool(name: &str) -> Option<PathBuf> {
    TOOL_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Runs commands, showing their output as log lines of one progress vertex.
pub struct Runner<'a> {
    pub reporter: &'a Arc<dyn Reporter>,
    pub id: VertexId,
    pub epoch: i64,
    /// The OCI architecture the root file system is for (`amd64`, `arm64`).
    pub architecture: &'a str,
}

impl Runner<'_> {
    /// debootstrap of the recipe's suite and packages into `rootfs`.
    pub fn debootstrap(&self, recipe: &Recipe, rootfs: &Path) -> anyhow::Result<()> {
        let mut command = self.private_mounts();
        command
            .arg("debootstrap")
            .args(debootstrap_args(recipe, rootfs, self.architecture));
        self.run("debootstrap", command).with_context(|| {
            format!(
                "debootstrap of {} from {} failed",
                recipe.suite, recipe.mirror
            )
        })
    }

    /// Runs `args` chrooted into `rootfs`, with `/proc` and `/dev` mounted for it alone.
    pub fn chroot<S: AsRef<OsStr>>(&self, rootfs: &Path, args: &[S]) -> anyhow::Result<()> {
        let shown = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = self.private_mounts();
        // $0 is the root filesystem, "$@" the command.
        command
            .args([
                "/bin/sh",
                "-c",
                r#"mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" "$@""#,
            ])
            .arg(rootfs)
            .args(args);
        self.run(&shown, command)
            .with_context(|| format!("`{shown}` in the new root filesystem failed"))
    }

    /// `unshare` into a private mount namespace, with a clean, fixed environment. `setpriv
    /// --pdeathsig` kills the tool if imgbuild dies, so no orphaned debootstrap keeps
    /// writing into a build directory that the next build sweeps away.
    fn private_mounts(&self) -> Command {
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--"])
            .args(["unshare", "--mount", "--propagation", "private", "--"])
            .env_clear()
            .env("PATH", TOOL_PATH)
            .env("HOME", "/root")
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("SOURCE_DATE_EPOCH", self.epoch.to_string());
        command
    }

    /// Runs a command, streaming its output lines to the reporter; fails with its last
    /// lines when it fails.
    fn run(&self, what: &str, mut command: Command) -> anyhow::Result<()> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let readers: Vec<Box<dyn Read + Send>> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        let status = std::thread::scope(|scope| {
            for reader in readers {
                let tail = tail.clone();
                scope.spawn(move || {
                    for line in BufReader::new(reader).split(b'\n').map_while(Result::ok) {
                        let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                        self.reporter.log(self.id, &line);
                        if let Ok(mut tail) = tail.lock() {
                            if tail.len() == TAIL_LINES {
                                tail.pop_front();
                            }
                            tail.push_back(line);
                        }
                    }
                });
            }
            child.wait()
        })
        .with_context(|| format!("waiting for {what}"))?;
        if status.success() {
            return Ok(());
        }
        let lines = tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        bail!("{what} failed ({status}); its last lines:\n{lines}")
    }
}

/// The `Date:` of `MIRROR/dists/SUITE/Release` as a Unix time: the epoch of a build from
/// the mirror as it is now.
pub async fn fetch_release_epoch(mirror: &str, suite: &str) -> anyhow::Result<i64> {
    let url = format!("{mirror}/dists/{suite}/Release");
    let client = crate::http::client_builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(120))
        .build()
        .context("creating an HTTP client")?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("fetching {url}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(InputError::new(format!(
            "{url} does not exist: is `{suite}` a suite of that mirror?"
        ))
        .into());
    }
    if !status.is_success() {
        bail!("fetching {url}: HTTP {status}");
    }
    let text = response
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    release_date(&text).ok_or_else(|| anyhow::anyhow!("{url} has no readable Date: field"))
}

/// The `Date:` of the `Release` (or `InRelease`) file debootstrap fetched, from the new
/// root filesystem's apt lists.
pub fn release_epoch_in(rootfs: &Path, suite: &str) -> anyhow::Result<i64> {
    let lists = rootfs.join("var/lib/apt/lists");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&lists)
        .with_context(|| format!("reading {}", lists.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.ends_with(&format!("_dists_{suite}_Release"))
                    || n.ends_with(&format!("_dists_{suite}_InRelease"))
            })
        })
        .collect();
    candidates.sort();
    for path in &candidates {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if let Some(epoch) = release_date(&text) {
            return Ok(epoch);
        }
    }
    bail!(
        "debootstrap left no Release file with a Date: for {suite} in {}",
        lists.display()
    )
}

/// Parses the `Date:` field of a Release file, e.g. `Sat, 11 Jul 2026 10:16:37 UTC`.
pub fn release_date(release: &str) -> Option<i64> {
    let value = release
        .lines()
        .find_map(|l| l.strip_prefix("Date:"))?
        .trim();
    // apt writes RFC 1123 dates in UTC; httpdate reads them with the zone spelt GMT.
    let (stamp, zone) = value.rsplit_once(' ')?;
    if !matches!(zone, "UTC" | "GMT" | "+0000") {
        return None;
    }
    let time = httpdate::parse_http_date(&format!("{stamp} GMT")).ok()?;
    let secs = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates() {
        let release = "Origin: Debian\nLabel: Debian\nSuite: stable\nCodename: bookworm\n\
                       Date: Sat, 11 Jul 2026 10:16:37 UTC\nAcquire-By-Hash: yes\n";
        assert_eq!(release_date(release), Some(1_783_764_997));
        let signed = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n\
                      Origin: Debian\nDate: Thu, 01 Jan 1970 00:01:00 UTC\n";
        assert_eq!(release_date(signed), Some(60));
        assert_eq!(release_date("Origin: Debian\n"), None);
        assert_eq!(release_date("Date: Sat, 11 Jul 2026 10:16:37 CEST\n"), None);
        assert_eq!(release_date("Date: yesterday\n"), None);
    }

    #[test]
    fn release_epoch_from_the_apt_lists() {
        let root = tempfile::tempdir().unwrap();
        let lists = root.path().join("var/lib/apt/lists");
        std::fs::create_dir_all(&lists).unwrap();
        std::fs::write(
            lists.join("deb.debian.org_debian_dists_bookworm_Release"),
            "Codename: bookworm\nDate: Thu, 01 Jan 1970 00:02:00 UTC\n",
        )
        .unwrap();
        std::fs::write(
            lists.join("deb.debian.org_debian_dists_bookworm-updates_Release"),
            "Date: Thu, 01 Jan 1970 00:05:00 UTC\n",
        )
        .unwrap();
        assert_eq!(release_epoch_in(root.path(), "bookworm").unwrap(), 120);
        let err = release_epoch_in(root.path(), "trixie").unwrap_err();
        assert!(err.to_string().contains("trixie"), "{err}");
    }

    #[test]
    fn debootstrap_is_told_the_architecture_in_debian_s_words() {
        let recipe = Recipe::parse(
            "r",
            Path::new("image.toml"),
            "[debian]\nsuite = \"bookworm\"\npackages = [\"locales\"]\n[image]\ntag = \"x/y:z\"\n",
        )
        .unwrap();
        let args = debootstrap_args(&recipe, Path::new("/r"), "arm64");
        assert_eq!(
            args,
            [
                "--variant=minbase",
                "--force-check-gpg",
                "--arch=arm64",
                "--include=locales",
                "bookworm",
                "/r",
                "http://deb.debian.org/debian"
            ]
        );
        assert!(
            debootstrap_args(&recipe, Path::new("/r"), "ppc64le")
                .contains(&"--arch=ppc64el".to_string())
        );
        assert!(
            debootstrap_args(&recipe, Path::new("/r"), "386").contains(&"--arch=i386".to_string())
        );
    }

    #[test]
    fn the_host_can_be_checked() {
        // The tests run as root on Debian with debootstrap (scripts/test-env installs it).
        let host = host_architecture().unwrap();
        let platform: Platform = format!("linux/{host}").parse().unwrap();
        check_host(&platform).unwrap();
        // Another architecture needs an emulator (arm64's is built in
        // tests/platform_emulation.rs); for this one imgbuild knows none.
        let err = check_host(&"linux/loong64".parse().unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .contains("imgbuild knows no emulator for the loong64 architecture"),
            "{err}"
        );
    }
}
