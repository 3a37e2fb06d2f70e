//! The OCI runtime (`runc`, or `crun`) that runs a native build step's command on a root
//! file system the caller has mounted (an overlay snapshot). Nothing here knows about
//! Dockerfiles, snapshots or build requests: the caller says what to run, where, as whom.
//!
//! * [`find`] locates the runtime on `PATH`, with its version, or says in one line why
//!   there is none (the executor's `auto` mode prints it and falls back to the engine).
//! * [`RunSpec`] is what the process sees: argv, the exact environment, working directory,
//!   numeric [`User`] ([`User::resolve`] reads the root's `/etc/passwd` and `/etc/group`),
//!   hostname, [`Network`], extra [`Mount`]s, `/etc/hosts` and `/etc/resolv.conf`.
//!   `spec.rs` turns it into the bundle's `config.json` as BuildKit's runc executor does
//!   (its doc lists the few differences).
//! * [`Runtime::run`] writes the bundle into a directory of the caller's choosing, runs
//!   `runc --root STATE run --bundle BUNDLE ID`, streams stdout and stderr line by line to a
//!   callback, and reports a non-zero exit ([`Error::RunFailed`], the engine's wording) or
//!   the runtime's own failure ([`Error::StartFailed`]). Dropping the future kills and
//!   deletes the container.
//! * [`emulation`] says whether this kernel runs another architecture's programs (a
//!   registered `binfmt_misc` handler), for RUN steps of foreign images.
//! * [`Runtime::cleanup_stale`] deletes the containers that imgbuild processes killed
//!   outright left in a state dir: container ids carry the process that made them, as the
//!   engine's container names do (`imgbuild-BOOT-PIDNS-PID-START-N`).
//!
//! As in BuildKit's executor, a run also creates a missing working directory (owned by the
//! process's user, mode 0755; the engine's executor gets Docker's, owned by root) and, once the command is done, removes the empty files the
//! runtime created in the root as mount points for `/etc/hosts`, `/etc/resolv.conf` and
//! file mounts (BuildKit v0.8's rule; current BuildKit also removes the empty directories
//! it created for mounts). Directories made for `/dev`, `/proc`, `/sys` and directory
//! mounts stay, as they do in BuildKit's layers.
//!
//! ```no_run
//! # async fn example() -> imgbuild::runtime::Result<()> {
//! use std::path::Path;
//! use imgbuild::runtime::{self, RunSpec, User};
//!
//! let runc = runtime::find()?;
//! let state = Path::new("/var/cache/imgbuild/runc");
//! runc.cleanup_stale(state).await?;
//! let rootfs = Path::new("/var/cache/imgbuild/snapshots/12/merged");
//! let mut spec = RunSpec::new(rootfs, ["/bin/sh", "-c", "echo hi > /hi"]);
//! spec.env = vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()];
//! spec.user = User::resolve(rootfs, "app")?;
//! runc.run(state, Path::new("/tmp/bundle-12"), &spec, &mut |line| eprintln!("{}", line.text))
//!     .await?;
//! # Ok(())
//! # }
//! ```

pub mod emulation;
mod error;
mod etc;
mod root;
mod spec;
mod stale;
mod user;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::engine::{LineSplitter, OutputLine, OutputStream};

pub use error::{Error, Result};
pub use etc::{DEFAULT_HOSTNAME, hosts, resolv_conf};
pub use stale::Container;
pub use user::User;

/// The runtimes imgbuild can drive, in order of preference.
const RUNTIMES: [&str; 2] = ["runc", "crun"];

/// How long a cancelled run waits for the runtime process to die before deleting the
/// container.
const CANCEL_KILL_WAIT: Duration = Duration::from_secs(2);

/// An OCI runtime found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    program: PathBuf,
    name: String,
    version: String,
}

/// Finds `runc` (or else `crun`) on `PATH` and asks its version.
pub fn find() -> Result<Runtime> {
    find_in(std::env::var_os("PATH").as_deref())
}

/// [`find`] with the given search path (`None`: no `PATH` set).
pub fn find_in(path: Option<&OsStr>) -> Result<Runtime> {
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    for name in RUNTIMES {
        let Some(program) = dirs
            .iter()
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
        else {
            continue;
        };
        let version = version_of(&program)?;
        return Ok(Runtime {
            program,
            name: name.to_owned(),
            version,
        });
    }
    Err(Error::Unavailable(
        "no OCI runtime (runc or crun) on PATH".to_owned(),
    ))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The version `PROGRAM --version` prints on its first line (`runc version 1.1.5`).
fn version_of(program: &Path) -> Result<String> {
    let unavailable =
        |why: String| Error::Unavailable(format!("`{} --version` {why}", program.display()));
    let output = std::process::Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|err| unavailable(format!("cannot run: {err}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first = stdout.lines().next().unwrap_or("").trim();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(unavailable(format!(
            "failed ({}): {}",
            output.status,
            stderr.lines().next().unwrap_or("").trim()
        )));
    }
    match first.split_once(" version ") {
        Some((_, version)) if !version.trim().is_empty() => Ok(version.trim().to_owned()),
        _ => Err(unavailable(format!("printed no version: {first:?}"))),
    }
}

impl Runtime {
    /// The executable's path.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// `runc` or `crun`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// As the runtime reports it, e.g. `1.1.5+ds1`.
    pub fn version(&self) -> &str {
        &self.version
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.name,
            self.version,
            self.program.display()
        )
    }
}

/// The network a command sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// A namespace of its own with only the loopback interface, up.
    #[default]
    None,
    /// The host's namespace.
    Host,
}

/// Something mounted for the command only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A host file or directory (recursively, with what is mounted below it).
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// An empty in-memory file system whose programs can run (BuildKit's tmpfs mounts are
    /// neither `noexec` nor `nodev`), at most `size` bytes when given.
    Tmpfs {
        target: String,
        size: Option<u64>,
        read_only: bool,
    },
}

impl Mount {
    /// Where it appears in the container.
    pub fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. } | Mount::Tmpfs { target, .. } => target,
        }
    }
}

/// What to run, in what, and what the process sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The root file system, already mounted by the caller; absolute.
    pub rootfs: PathBuf,
    /// The command and its arguments; must not be empty. A name without `/` is looked up
    /// in the `PATH` of `env`.
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries, exactly the process's environment (the runtime adds `HOME`, from
    /// the user's passwd entry, only when it is missing).
    pub env: Vec<String>,
    /// Absolute working directory; created (owned by `user`, mode 0755) when missing.
    pub cwd: String,
    pub user: User,
    pub hostname: String,
    pub network: Network,
    pub mounts: Vec<Mount>,
    /// `/etc/hosts`; `None`: [`hosts`] of the hostname.
    pub hosts: Option<String>,
    /// `/etc/resolv.conf`; `None`: [`resolv_conf`] of the network.
    pub resolv_conf: Option<String>,
    /// Bytes fed to the command's stdin, which then sees end of file. `None`: stdin is
    /// `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// BuildKit's insecure mode (`RUN --security=insecure`): see `spec.rs`.
    pub privileged: bool,
    /// Bytes of `/dev/shm`; `None`: 64 MiB.
    pub shm_size: Option<u64>,
    /// Resource limits set for the process; the others are imgbuild's own, as BuildKit
    /// leaves them.
    pub ulimits: Vec<crate::engine::Ulimit>,
}

impl RunSpec {
    /// `argv` in `rootfs` as root in `/`, with no environment, no network but loopback and
    /// BuildKit's hostname.
    pub fn new(
        rootfs: impl Into<PathBuf>,
        argv: impl IntoIterator<Item = impl Into<String>>,
    ) -> RunSpec {
        RunSpec {
            rootfs: rootfs.into(),
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: "/".to_owned(),
            user: User::ROOT,
            hostname: DEFAULT_HOSTNAME.to_owned(),
            network: Network::None,
            mounts: Vec::new(),
            hosts: None,
            resolv_conf: None,
            stdin: None,
            privileged: false,
            shm_size: None,
            ulimits: Vec::new(),
        }
    }

    /// The command as a user would recognise it in a message.
    fn command_line(&self) -> String {
        self.argv.join(" ")
    }

    fn validate(&self) -> Result<()> {
        if self.argv.is_empty() {
            return Err(Error::Invalid(format!(
                "no command to run in {}",
                self.rootfs.display()
            )));
        }
        if !self.rootfs.is_absolute() {
            return Err(Error::Invalid(format!(
                "root file system `{}` is not an absolute path",
                self.rootfs.display()
            )));
        }
        if !self.cwd.starts_with('/') {
            return Err(Error::Invalid(format!(
                "working directory `{}` is not an absolute path",
                self.cwd
            )));
        }
        for mount in &self.mounts {
            if !mount.target().starts_with('/') {
                return Err(Error::Invalid(format!(
                    "mount target `{}` is not an absolute path",
                    mount.target()
                )));
            }
        }
        if self.env.iter().any(|e| !e.contains('=')) {
            return Err(Error::Invalid(format!(
                "environment entries must be KEY=VALUE: {:?}",
                self.env
            )));
        }
        Ok(())
    }
}

/// Files of the bundle directory.
const CONFIG_FILE: &str = "config.json";
const HOSTS_FILE: &str = "hosts";
const RESOLV_CONF_FILE: &str = "resolv.conf";
const LOG_FILE: &str = "runtime-log.json";

impl Runtime {
    /// Runs `spec` to its end as a new container whose state lives in `state_dir` (created
    /// when missing; keep one per cache dir so [`cleanup_stale`](Self::cleanup_stale) finds
    /// what a killed process left). The bundle (`config.json`, `hosts`, `resolv.conf`, the
    /// runtime's log) is written into `bundle`, created when missing, and left there for the
    /// caller to remove.
    ///
    /// Each line the command prints goes to `output` as it comes. A non-zero exit is
    /// [`Error::RunFailed`] with the code and the last lines; a command the runtime could
    /// not start (no such executable, a working directory that is a file) is
    /// [`Error::StartFailed`] with the runtime's message. Dropping the returned future
    /// kills and deletes the container (blocking the thread for a moment).
    pub async fn run(
        &self,
        state_dir: &Path,
        bundle: &Path,
        spec: &RunSpec,
        output: &mut (dyn FnMut(OutputLine<'_>) + Send),
    ) -> Result<()> {
        spec.validate()?;
        let bundle = absolute(bundle)?;
        let state_dir = absolute(state_dir)?;
        let command = spec.command_line();
        let io = |what: &str, path: &Path| {
            let operation = format!("{what} {}", path.display());
            move |source| Error::io(operation, source)
        };

        std::fs::create_dir_all(&bundle).map_err(io("create the bundle directory", &bundle))?;
        let hosts_path = bundle.join(HOSTS_FILE);
        let hosts = match &spec.hosts {
            Some(hosts) => hosts.clone(),
            None => etc::hosts(&spec.hostname),
        };
        std::fs::write(&hosts_path, hosts).map_err(io("write", &hosts_path))?;
        let resolv_path = bundle.join(RESOLV_CONF_FILE);
        let resolv = match &spec.resolv_conf {
            Some(conf) => conf.clone(),
            None => etc::resolv_conf(spec.network)
                .map_err(|source| Error::io("read the host's /etc/resolv.conf", source))?,
        };
        std::fs::write(&resolv_path, resolv).map_err(io("write", &resolv_path))?;
        let log_path = bundle.join(LOG_FILE);
        match std::fs::remove_file(&log_path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove the old", &log_path)(err));
            }
            _ => {}
        }

        let root = root::Root::open(&spec.rootfs)
            .map_err(io("open the root file system", &spec.rootfs))?;
        // Mount points the runtime will create as empty files (or directories).
        let stubs: Vec<&str> = ["/etc/hosts", "/etc/resolv.conf"]
            .into_iter()
            .chain(spec.mounts.iter().map(Mount::target))
            .filter(|target| !root.exists(target))
            .collect();
        root.create_dir_all(&spec.cwd, spec.user.uid, spec.user.gid)
            .map_err(|source| {
                Error::io(
                    format!(
                        "create the working directory {} in {}",
                        spec.cwd,
                        spec.rootfs.display()
                    ),
                    source,
                )
            })?;

        let id = crate::engine::cleanup::next_container_name();
        let config = spec::build(
            spec,
            &id,
            &spec::Host {
                hosts: &hosts_path,
                resolv_conf: &resolv_path,
                cgroup_namespace: spec::Host::has_cgroup_namespace(),
                capabilities: spec::Host::current_capabilities(),
            },
        )?;
        let config_path = bundle.join(CONFIG_FILE);
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|err| Error::Invalid(format!("cannot write the runtime spec: {err}")))?;
        std::fs::write(&config_path, json).map_err(io("write", &config_path))?;

        let mut child = tokio::process::Command::new(&self.program)
            .arg("--root")
            .arg(&state_dir)
            .arg("--log")
            .arg(&log_path)
            .args(["--log-format", "json", "run", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(if spec.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A Ctrl-C on the terminal is imgbuild's to handle, not the runtime's to forward.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::io(format!("run {}", self.program.display()), source))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let mut running = Running {
            child,
            program: self.program.clone(),
            state_dir: state_dir.clone(),
            id,
            finished: false,
        };

        let feed_stdin = async {
            if let (Some(mut pipe), Some(data)) = (stdin, spec.stdin.as_deref()) {
                // A command that exits without reading all its input is not an error here;
                // its exit code tells.
                let _ = pipe.write_all(data).await;
                let _ = pipe.shutdown().await;
            }
        };
        let mut lines = LineSplitter::new(output);
        let (((), streamed), status) = {
            let streaming = async { tokio::join!(feed_stdin, stream(stdout, stderr, &mut lines)) };
            let joined = streaming.await;
            (joined, running.child.wait().await)
        };
        running.finished = true;
        let last_lines = lines.finish();
        drop(running);

        for stub in stubs {
            // A leftover empty file is untidy, not wrong: the step's result stands.
            let _ = root.remove_empty_file(stub);
        }
        let status = status
            .map_err(|source| Error::io(format!("wait for {}", self.program.display()), source))?;
        streamed.map_err(|source| Error::io(format!("read the output of `{command}`"), source))?;

        match status.code() {
            Some(0) => Ok(()),
            Some(code) => match self.logged_errors(&log_path) {
                Some(message) => Err(Error::StartFailed { command, message }),
                None => Err(Error::RunFailed {
                    command,
                    exit_code: i64::from(code),
                    last_lines,
                }),
            },
            None => {
                use std::os::unix::process::ExitStatusExt;
                Err(Error::RuntimeKilled {
                    program: self.name.clone(),
                    command,
                    signal: status.signal().unwrap_or(0),
                })
            }
        }
    }

    /// The errors the runtime logged (it exits 1 with one when it could not start the
    /// command), without its `runc run failed: ` preamble; `None` when it logged none.
    fn logged_errors(&self, log: &Path) -> Option<String> {
        let text = std::fs::read_to_string(log).ok()?;
        let preamble = format!("{} run failed: ", self.name);
        let messages: Vec<String> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|entry| matches!(entry["level"].as_str(), Some("error" | "fatal")))
            .filter_map(|entry| entry["msg"].as_str().map(str::to_owned))
            .map(|msg| {
                msg.strip_prefix(&preamble)
                    .map(str::to_owned)
                    .unwrap_or(msg)
            })
            .collect();
        (!messages.is_empty()).then(|| messages.join("; "))
    }
}

/// Reads both pipes to their ends, feeding `lines`; the first read error is returned once
/// both are closed.
async fn stream(
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
    lines: &mut LineSplitter<'_>,
) -> std::io::Result<()> {
    let (Some(mut stdout), Some(mut stderr)) = (stdout, stderr) else {
        return Err(std::io::Error::other("the runtime's output is not piped"));
    };
    let mut out_buf = vec![0u8; 16 * 1024];
    let mut err_buf = vec![0u8; 16 * 1024];
    let (mut out_open, mut err_open) = (true, true);
    let mut first_error = None;
    while out_open || err_open {
        tokio::select! {
            read = stdout.read(&mut out_buf), if out_open => match read {
                Ok(0) => out_open = false,
                Ok(n) => lines.push(OutputStream::Stdout, &out_buf[..n]),
                Err(err) => {
                    out_open = false;
                    first_error.get_or_insert(err);
                }
            },
            read = stderr.read(&mut err_buf), if err_open => match read {
                Ok(0) => err_open = false,
                Ok(n) => lines.push(OutputStream::Stderr, &err_buf[..n]),
                Err(err) => {
                    err_open = false;
                    first_error.get_or_insert(err);
                }
            },
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path)
        .map_err(|source| Error::io(format!("make {} absolute", path.display()), source))
}

/// The runtime process of a run; until it has finished, dropping it kills the runtime and
/// deletes the container.
struct Running {
    child: tokio::process::Child,
    program: PathBuf,
    state_dir: PathBuf,
    id: String,
    finished: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // The runtime first, so it cannot be halfway through creating the container while
        // it is deleted; then the container, with whatever runs in it.
        let _ = self.child.start_kill();
        let deadline = Instant::now() + CANCEL_KILL_WAIT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = stale::delete_blocking(&self.program, &self.state_dir, &self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_reports_why_there_is_no_runtime() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_in(Some(empty.path().as_os_str())).unwrap_err();
        assert_eq!(err.to_string(), "no OCI runtime (runc or crun) on PATH");
        assert!(find_in(None).is_err());

        // Not executable: not a candidate.
        std::fs::write(empty.path().join("runc"), "").unwrap();
        assert!(matches!(
            find_in(Some(empty.path().as_os_str())),
            Err(Error::Unavailable(_))
        ));
    }

    #[test]
    fn a_runtime_that_prints_no_version_is_unavailable_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("runc");
        std::fs::write(&fake, "#!/bin/sh\necho broken >&2\nexit 3\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = find_in(Some(dir.path().as_os_str()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--version` failed"), "{err}");
        assert!(err.contains("broken"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");

        std::fs::write(&fake, "#!/bin/sh\necho 'crun version 1.8.1'\n").unwrap();
        let found = find_in(Some(dir.path().as_os_str())).unwrap();
        assert_eq!(found.version(), "1.8.1");
        assert_eq!(found.name(), "runc");
        assert_eq!(found.program(), fake);
    }

    #[test]
    fn runc_is_preferred_and_crun_found_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let crun = dir.path().join("crun");
        std::fs::write(&crun, "#!/bin/sh\necho 'crun version 1.8.1'\n").unwrap();
        std::fs::set_permissions(&crun, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = find_in(Some(dir.path().as_os_str())).unwrap();
        assert_eq!((found.name(), found.version()), ("crun", "1.8.1"));
    }

    #[test]
    fn specs_are_checked_before_anything_runs() {
        let bad = [
            RunSpec::new("/r", Vec::<String>::new()),
            RunSpec::new("relative", ["true"]),
            RunSpec {
                cwd: "src".into(),
                ..RunSpec::new("/r", ["true"])
            },
            RunSpec {
                mounts: vec![Mount::Tmpfs {
                    target: "tmp".into(),
                    size: None,
                    read_only: false,
                }],
                ..RunSpec::new("/r", ["true"])
            },
            RunSpec {
                env: vec!["JUSTNAME".into()],
                ..RunSpec::new("/r", ["true"])
            },
        ];
        for spec in bad {
            assert!(
                matches!(spec.validate(), Err(Error::Invalid(_))),
                "{spec:?}"
            );
        }
        assert!(RunSpec::new("/r", ["true"]).validate().is_ok());
    }
}
