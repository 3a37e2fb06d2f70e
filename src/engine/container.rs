//! Containers: run a command, put files in, take files out, commit, remove.

use std::path::PathBuf;

use bollard::models::{
    ChangeType, ContainerConfig, ContainerCreateBody, HostConfig, MountType, MountVolumeOptions,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CommitContainerOptionsBuilder,
    ContainerArchiveInfoOptionsBuilder, CreateContainerOptionsBuilder,
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::cleanup::{
    interrupted, next_container_name, wait_for_exit, wait_for_exit_if_interrupted,
};
use super::error::{Error, Result, api_or_not_found};
use super::image::ImageConfig;
use super::output::{LineSplitter, OutputLine, OutputStream};
use super::{Engine, Network};

/// What an uploaded entry may replace in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Whatever is there, as an archive extracts.
    Anything,
    /// Only an entry of the same kind: a directory with a non-directory, or the other way
    /// round, fails the upload, as BuildKit's copy fails.
    SameKind,
}

/// What to run, and in what: an image, a command and the process's surroundings. The
/// command runs as it is given (the image's entrypoint is not prepended).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSpec {
    /// Image id (`sha256:…`) or reference present in the engine.
    pub image: String,
    /// The command and its arguments; must not be empty.
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries; they override the image's variables of the same name, the
    /// image's others stay, except those named by a bare `KEY` entry, which are unset.
    pub env: Vec<String>,
    /// Absolute working directory, created when missing; empty means the image's.
    pub workdir: String,
    /// `user`, `uid`, `user:group` or `uid:gid`; empty means the image's.
    pub user: String,
    pub network: Network,
    /// Bytes fed to the command's stdin, which then sees end of file. `None`: stdin is
    /// empty.
    pub stdin: Option<Vec<u8>>,
    /// Mounted for the command only; nothing under them is committed.
    pub mounts: Vec<Mount>,
    /// Every capability and device, as `RUN --security=insecure` asks.
    pub privileged: bool,
    /// The build's `--add-host`, `--shm-size` and `--ulimit`.
    pub options: super::RunOptions,
}

impl RunSpec {
    pub fn new(
        image: impl Into<String>,
        argv: impl IntoIterator<Item = impl Into<String>>,
    ) -> RunSpec {
        RunSpec {
            image: image.into(),
            argv: argv.into_iter().map(Into::into).collect(),
            ..RunSpec::default()
        }
    }

    /// The command as a user would recognise it in a message.
    fn command_line(&self) -> String {
        self.argv.join(" ")
    }

    fn validate(&self) -> Result<()> {
        if self.image.is_empty() {
            return Err(Error::Invalid("no image to run in".into()));
        }
        if self.argv.is_empty() {
            return Err(Error::Invalid(format!(
                "no command to run in `{}`",
                self.image
            )));
        }
        if !self.workdir.is_empty() && !self.workdir.starts_with('/') {
            return Err(Error::Invalid(format!(
                "working directory `{}` is not an absolute path",
                self.workdir
            )));
        }
        for mount in &self.mounts {
            let target = mount.target();
            if !target.starts_with('/') {
                return Err(Error::Invalid(format!(
                    "mount target `{target}` is not an absolute path"
                )));
            }
        }
        Ok(())
    }

    fn create_body(&self) -> ContainerCreateBody {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let stdin = self.stdin.is_some();
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(self.argv.clone()),
            // An empty (not absent) entrypoint: the engine then runs argv as given.
            entrypoint: Some(Vec::new()),
            env: Some(self.env.clone()),
            working_dir: non_empty(&self.workdir),
            user: non_empty(&self.user),
            attach_stdin: Some(stdin),
            open_stdin: Some(stdin),
            stdin_once: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            host_config: Some(HostConfig {
                network_mode: match self.network {
                    Network::Default => None,
                    Network::Host => Some("host".into()),
                    Network::None => Some("none".into()),
                },
                mounts: Some(self.mounts.iter().filter_map(Mount::to_engine).collect())
                    .filter(|m: &Vec<_>| !m.is_empty()),
                tmpfs: Some(
                    self.mounts
                        .iter()
                        .filter_map(|m| Some((m.target().to_owned(), m.tmpfs_options()?)))
                        .collect(),
                )
                .filter(|t: &std::collections::HashMap<_, _>| !t.is_empty()),
                privileged: self.privileged.then_some(true),
                extra_hosts: Some(
                    self.options
                        .extra_hosts
                        .iter()
                        .map(super::ExtraHost::engine_form)
                        .collect(),
                )
                .filter(|h: &Vec<String>| !h.is_empty()),
                shm_size: self
                    .options
                    .shm_size
                    .map(|size| i64::try_from(size).unwrap_or(i64::MAX)),
                ulimits: Some(
                    self.options
                        .ulimits
                        .iter()
                        .map(|u| bollard::models::ResourcesUlimits {
                            name: Some(u.name.clone()),
                            soft: Some(u.soft),
                            hard: Some(u.hard),
                        })
                        .collect(),
                )
                .filter(|u: &Vec<_>| !u.is_empty()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        }
    }
}

/// Something mounted into a container for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A host path (the engine's host).
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// A named engine volume, created empty on first use and kept afterwards: it is never
    /// pre-filled from the image (cache mounts).
    Volume {
        name: String,
        target: String,
        read_only: bool,
    },
    /// An empty in-memory file system whose programs can run (BuildKit's tmpfs mounts are
    /// not `noexec`, the engine's default), at most `size` bytes when given.
    Tmpfs {
        target: String,
        size: Option<u64>,
        read_only: bool,
    },
}

impl Mount {
    fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. }
            | Mount::Volume { target, .. }
            | Mount::Tmpfs { target, .. } => target,
        }
    }

    /// The options of a tmpfs mount for `HostConfig.Tmpfs`: only that form takes `exec`
    /// (the Mounts API's tmpfs options have no flags before API 1.46). `exec` and `dev`
    /// undo Docker's `noexec,nodev` defaults: BuildKit's tmpfs is `nosuid` alone.
    fn tmpfs_options(&self) -> Option<String> {
        let Mount::Tmpfs {
            size, read_only, ..
        } = self
        else {
            return None;
        };
        let mut options = vec!["exec".to_owned(), "dev".to_owned()];
        if let Some(size) = size {
            options.push(format!("size={size}"));
        }
        if *read_only {
            options.push("ro".to_owned());
        }
        Some(options.join(","))
    }

    /// A bind or volume mount for the Mounts API (`None` for a tmpfs).
    fn to_engine(&self) -> Option<bollard::models::Mount> {
        let base = bollard::models::Mount {
            target: Some(self.target().to_owned()),
            ..Default::default()
        };
        Some(match self {
            Mount::Bind {
                source, read_only, ..
            } => bollard::models::Mount {
                typ: Some(MountType::BIND),
                source: Some(source.to_string_lossy().into_owned()),
                read_only: Some(*read_only),
                ..base
            },
            Mount::Volume {
                name, read_only, ..
            } => bollard::models::Mount {
                typ: Some(MountType::VOLUME),
                source: Some(name.clone()),
                read_only: Some(*read_only),
                volume_options: Some(MountVolumeOptions {
                    no_copy: Some(true),
                    ..Default::default()
                }),
                ..base
            },
            Mount::Tmpfs { .. } => return None,
        })
    }
}

/// A container in the engine. It stays there until [`Engine::remove`] (or
/// [`Engine::commit_and_remove`], [`Engine::remove_all`]) removes it: dropping the handle
/// does not.
#[must_use = "the container stays in the engine until Engine::remove removes it"]
#[derive(Debug, PartialEq, Eq)]
pub struct Container {
    id: String,
    name: String,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What a path in a container is ([`Engine::stat`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// The last component of the path.
    pub name: String,
    pub size: i64,
    /// The engine's (Go's) file mode: permission bits plus type bits.
    pub mode: u32,
    /// Where a symbolic link points; empty for anything else.
    pub link_target: String,
}

impl PathStat {
    const GO_MODE_DIR: u32 = 1 << 31;
    const GO_MODE_SYMLINK: u32 = 1 << 27;

    pub fn is_dir(&self) -> bool {
        self.mode & Self::GO_MODE_DIR != 0
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & Self::GO_MODE_SYMLINK != 0
    }

    /// The permission bits (`0o755`), with setuid, setgid and sticky left out.
    pub fn permissions(&self) -> u32 {
        self.mode & 0o777
    }
}

/// One path a container changed, relative to its image ([`Engine::changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified,
    Added,
    Deleted,
}

impl Engine {
    /// Creates a container (not started) for `spec`: for file transfers, or to be started by
    /// [`run`](Self::run)'s steps. Its name marks it as this process's (see `cleanup`).
    pub async fn create(&self, spec: &RunSpec) -> Result<Container> {
        spec.validate()?;
        let name = next_container_name();
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = self
            .docker
            .create_container(Some(options), spec.create_body())
            .await
            .map_err(api_or_not_found("create a container", || {
                format!("image `{}`", spec.image)
            }))?;
        self.live.insert(&created.id);
        let container = Container {
            id: created.id,
            name,
        };
        if interrupted() {
            // The signal handler may have looked for containers before this one existed.
            let _ = self.remove(container).await;
            match wait_for_exit().await {}
        }
        Ok(container)
    }

    /// Runs `spec.argv` to completion in a new container and passes each line it prints to
    /// `output`, in the order the lines arrive. On exit code 0 the container is returned,
    /// stopped, for [`commit`](Self::commit); the caller removes it. On any failure the
    /// container is removed here: a non-zero exit is [`Error::RunFailed`] with the code and
    /// the last lines of output; a command that cannot start is [`Error::StartFailed`].
    ///
    /// If this future is dropped midway, the container stays registered for
    /// [`remove_all`](Self::remove_all).
    pub async fn run(
        &self,
        spec: &RunSpec,
        output: &mut (dyn FnMut(OutputLine<'_>) + Send),
    ) -> Result<Container> {
        let container = self.create(spec).await?;
        match self.start_and_wait(&container, spec, output).await {
            Ok(()) => Ok(container),
            Err(err) => {
                // The run's own error matters more than a failed removal, which remove_all
                // retries at the end of the build.
                let _ = self.remove(container).await;
                Err(err)
            }
        }
    }

    async fn start_and_wait(
        &self,
        container: &Container,
        spec: &RunSpec,
        output: &mut (dyn FnMut(OutputLine<'_>) + Send),
    ) -> Result<()> {
        let id = container.id();
        let stdin = spec.stdin.as_deref();
        // Attached before the start, so no output is lost.
        let options = AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .stdin(stdin.is_some())
            .build();
        let attached = self
            .docker
            .attach_container(id, Some(options))
            .await
            .map_err(|err| Error::api(format!("attach to container {}", container.name), err))?;
        if let Err(err) = self.docker.start_container(id, None).await {
            wait_for_exit_if_interrupted().await;
            return Err(match err {
                bollard::errors::Error::DockerResponseServerError { message, .. } => {
                    Error::StartFailed {
                        command: spec.command_line(),
                        message,
                    }
                }
                err => Error::api(format!("start container {}", container.name), err),
            });
        }

        let mut input = attached.input;
        let feed_stdin = async {
            if let Some(data) = stdin {
                // A command that exits without reading all its input is not an error here;
                // its exit code tells.
                let _ = input.write_all(data).await;
                let _ = input.shutdown().await;
            }
        };
        let mut lines = LineSplitter::new(output);
        let mut chunks = attached.output;
        let read_output = async {
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(bollard::container::LogOutput::StdOut { message })
                    | Ok(bollard::container::LogOutput::Console { message }) => {
                        lines.push(OutputStream::Stdout, &message)
                    }
                    Ok(bollard::container::LogOutput::StdErr { message }) => {
                        lines.push(OutputStream::Stderr, &message)
                    }
                    Ok(bollard::container::LogOutput::StdIn { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(())
        };
        // Both at once: a command may print more than a pipe holds before it reads stdin.
        let ((), streamed) = tokio::join!(feed_stdin, read_output);
        let last_lines = lines.finish();
        wait_for_exit_if_interrupted().await;
        streamed.map_err(|err| {
            Error::api(format!("read the output of `{}`", spec.command_line()), err)
        })?;

        let exit_code = self.wait(container).await?;
        if exit_code != 0 {
            return Err(Error::RunFailed {
                command: spec.command_line(),
                exit_code,
                last_lines,
            });
        }
        Ok(())
    }

    /// The exit code of a container once it is not running.
    async fn wait(&self, container: &Container) -> Result<i64> {
        let mut responses = self.docker.wait_container(container.id(), None);
        let result = responses.next().await;
        wait_for_exit_if_interrupted().await;
        match result {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard turns a non-zero status into an error.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(err)) => Err(Error::api(
                format!("wait for container {}", container.name),
                err,
            )),
            None => Err(Error::Invalid(format!(
                "the engine closed the wait for container {} without an exit code",
                container.name
            ))),
        }
    }

    /// Extracts a tar archive into directory `dir` (which must exist) of a container that
    /// is not running. Entries keep the owners, modes and times of their tar headers.
    pub async fn upload(
        &self,
        container: &Container,
        dir: &str,
        tar: impl Into<Bytes>,
    ) -> Result<()> {
        let tar = tar.into();
        self.upload_stream(
            container,
            dir,
            futures_util::stream::iter([Ok(tar)]),
            Replace::Anything,
        )
        .await
    }

    /// [`upload`](Self::upload) from a stream, for archives too big to hold in memory.
    pub async fn upload_stream<S>(
        &self,
        container: &Container,
        dir: &str,
        tar: S,
        replace: Replace,
    ) -> Result<()>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        // No copyUIDGID: with it the engine would chown every entry to the container's user.
        let no_overwrite = match replace {
            Replace::Anything => "false",
            Replace::SameKind => "true",
        };
        let options = UploadToContainerOptionsBuilder::default()
            .path(dir)
            .no_overwrite_dir_non_dir(no_overwrite)
            .build();
        self.docker
            .upload_to_container(container.id(), Some(options), bollard::body_try_stream(tar))
            .await
            .map_err(api_or_not_found(
                format!(
                    "extract an archive into {dir} of container {}",
                    container.name
                ),
                || format!("directory {dir} in container {}", container.name),
            ))
    }

    /// A tar archive of `path` in a container: its entries are named from the path's last
    /// component (`/app/rel` gives `rel`, `rel/bin`, …). A missing path is
    /// [`Error::NotFound`] from the stream's first item.
    pub fn download(&self, container: &Container, path: &str) -> BoxStream<'static, Result<Bytes>> {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let name = container.name.clone();
        let path = path.to_owned();
        self.docker
            .download_from_container(container.id(), Some(options))
            .map_err(move |err| {
                api_or_not_found(format!("archive {path} of container {name}"), || {
                    format!("{path} in container {name}")
                })(err)
            })
            .boxed()
    }

    /// [`download`](Self::download) into `out`; returns the number of bytes written.
    pub async fn download_to(
        &self,
        container: &Container,
        path: &str,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<u64> {
        let mut archive = self.download(container, path);
        let mut written = 0u64;
        let write_failed = |source| Error::Io {
            operation: format!("write the archive of {path}"),
            source,
        };
        while let Some(chunk) = archive.next().await {
            let chunk = chunk?;
            out.write_all(&chunk).await.map_err(write_failed)?;
            written += chunk.len() as u64;
        }
        out.flush().await.map_err(write_failed)?;
        Ok(written)
    }

    /// Writes a tar archive of `path` in `image` to `out` (see [`download`](Self::download)),
    /// through a container that is created, never started, and always removed.
    pub async fn download_from_image(
        &self,
        image: &str,
        path: &str,
        out: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<u64> {
        // Never started, so the command is only there to satisfy the engine.
        let mut spec = RunSpec::new(image, ["imgbuild-never-started"]);
        spec.network = Network::None;
        let container = self.create(&spec).await?;
        let downloaded = self.download_to(&container, path, out).await;
        let removed = self.remove(container).await;
        let written = downloaded?;
        removed?;
        Ok(written)
    }

    /// What `path` is in a container (kind, mode, size, link target), without its content.
    pub async fn stat(&self, container: &Container, path: &str) -> Result<PathStat> {
        let options = ContainerArchiveInfoOptionsBuilder::default()
            .path(path)
            .build();
        let stat = self
            .docker
            .get_container_archive_info(container.id(), Some(options))
            .await
            .map_err(api_or_not_found(
                format!("stat {path} in container {}", container.name),
                || format!("{path} in container {}", container.name),
            ))?;
        Ok(PathStat {
            name: stat.name,
            size: stat.size,
            mode: stat.file_mode,
            link_target: stat.link_target,
        })
    }

    /// Commits a container's file system changes as a new image with `config`, and returns
    /// the image id (`sha256:…`).
    ///
    /// The engine fills what `config` leaves empty from the container's own config: `user`,
    /// `workdir`, `stop_signal`, and `cmd` (the container's argv) when neither `cmd` nor
    /// `entrypoint` is set; it appends the environment variables, ports and volumes only the
    /// container had. So set every field the image should have, and keep the exact config
    /// beside the image id rather than read it back: variables given to one command only
    /// (build arguments) stay in the committed image's `env`.
    pub async fn commit(&self, container: &Container, config: &ImageConfig) -> Result<String> {
        let options = CommitContainerOptionsBuilder::default()
            .container(container.id())
            .pause(false)
            .build();
        let body: ContainerConfig = config.to_engine();
        let committed =
            self.docker
                .commit_container(options, body)
                .await
                .map_err(api_or_not_found(
                    format!("commit container {}", container.name),
                    || format!("container {}", container.name),
                ))?;
        Ok(committed.id)
    }

    /// [`commit`](Self::commit), then [`remove`](Self::remove) whatever the commit's outcome.
    pub async fn commit_and_remove(
        &self,
        container: Container,
        config: &ImageConfig,
    ) -> Result<String> {
        let committed = self.commit(&container, config).await;
        let removed = self.remove(container).await;
        let image = committed?;
        removed?;
        Ok(image)
    }

    /// The paths a container added, changed or deleted relative to its image.
    pub async fn changes(&self, container: &Container) -> Result<Vec<Change>> {
        let changes = self
            .docker
            .container_changes(container.id())
            .await
            .map_err(api_or_not_found(
                format!("list the changes of container {}", container.name),
                || format!("container {}", container.name),
            ))?;
        Ok(changes
            .unwrap_or_default()
            .into_iter()
            .map(|change| Change {
                path: change.path,
                kind: match change.kind {
                    ChangeType::_0 => ChangeKind::Modified,
                    ChangeType::_1 => ChangeKind::Added,
                    ChangeType::_2 => ChangeKind::Deleted,
                },
            })
            .collect())
    }

    /// Removes a container (a running one is killed), with its anonymous volumes. A
    /// container already gone is not an error.
    pub async fn remove(&self, container: Container) -> Result<()> {
        self.remove_id(&container.id).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked_before_anything_is_sent() {
        let ok = RunSpec::new("img", ["true"]);
        assert!(ok.validate().is_ok());
        let message = |spec: RunSpec| spec.validate().err().map(|e| e.to_string());
        assert_eq!(
            message(RunSpec::new("img", Vec::<String>::new())).as_deref(),
            Some("no command to run in `img`")
        );
        assert_eq!(
            message(RunSpec::new("", ["true"])).as_deref(),
            Some("no image to run in")
        );
        let relative = RunSpec {
            workdir: "app".into(),
            ..ok.clone()
        };
        assert_eq!(
            message(relative).as_deref(),
            Some("working directory `app` is not an absolute path")
        );
        let mount = RunSpec {
            mounts: vec![Mount::Tmpfs {
                target: "tmp".into(),
                size: None,
                read_only: false,
            }],
            ..ok
        };
        assert_eq!(
            message(mount).as_deref(),
            Some("mount target `tmp` is not an absolute path")
        );
    }

    #[test]
    fn the_create_body_overrides_the_entrypoint_and_keeps_image_defaults_for_empty_fields() {
        let body = RunSpec::new("img", ["echo", "hi"]).create_body();
        assert_eq!(body.entrypoint, Some(vec![]));
        assert_eq!(body.cmd, Some(vec!["echo".to_owned(), "hi".to_owned()]));
        assert_eq!(body.user, None);
        assert_eq!(body.working_dir, None);
        assert_eq!(body.open_stdin, Some(false));
        let host = body.host_config.unwrap_or_default();
        assert_eq!(host.network_mode, None);
        assert_eq!(host.mounts, None);
        assert_eq!(host.tmpfs, None);
        assert_eq!(host.privileged, None);
        assert_eq!(host.extra_hosts, None);
        assert_eq!(host.shm_size, None, "the engine's default, 64 MiB");
        assert_eq!(host.ulimits, None);
    }

    #[test]
    fn the_build_s_run_options_reach_the_host_config() {
        let mut spec = RunSpec::new("img", ["true"]);
        spec.options = super::super::RunOptions {
            extra_hosts: vec![super::super::ExtraHost {
                name: "db".into(),
                ip: "10.0.0.2".parse().unwrap(),
            }],
            shm_size: Some(256 << 20),
            ulimits: vec![super::super::Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048,
            }],
            ..Default::default()
        };
        let host = spec.create_body().host_config.unwrap();
        assert_eq!(host.extra_hosts, Some(vec!["db:10.0.0.2".to_owned()]));
        assert_eq!(host.shm_size, Some(256 << 20));
        let ulimit = &host.ulimits.unwrap()[0];
        assert_eq!(
            (ulimit.name.as_deref(), ulimit.soft, ulimit.hard),
            (Some("nofile"), Some(1024), Some(2048))
        );
    }

    #[test]
    fn tmpfs_mounts_are_exec_and_privileged_is_asked_for() {
        let spec = RunSpec {
            mounts: vec![
                Mount::Tmpfs {
                    target: "/t".into(),
                    size: Some(1 << 20),
                    read_only: false,
                },
                Mount::Bind {
                    source: "/src".into(),
                    target: "/b".into(),
                    read_only: true,
                },
            ],
            privileged: true,
            ..RunSpec::new("img", ["true"])
        };
        let host = spec.create_body().host_config.unwrap_or_default();
        assert_eq!(host.privileged, Some(true));
        let tmpfs = host.tmpfs.unwrap_or_default();
        assert_eq!(
            tmpfs.get("/t").map(String::as_str),
            Some("exec,dev,size=1048576")
        );
        assert_eq!(host.mounts.map(|m| m.len()), Some(1));
    }

    #[test]
    fn go_file_modes_are_read() {
        let stat = |mode| PathStat {
            name: "x".into(),
            size: 0,
            mode,
            link_target: String::new(),
        };
        let dir = stat((1 << 31) | 0o755);
        assert!(dir.is_dir() && !dir.is_symlink());
        assert_eq!(dir.permissions(), 0o755);
        let link = stat((1 << 27) | 0o777);
        assert!(link.is_symlink() && !link.is_dir());
    }
}
