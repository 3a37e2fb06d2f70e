//! The Docker engine through bollard: containers, commits, archives, image load.
//! Nothing here knows about Dockerfiles.
//!
//! [`Engine`] is a narrow seam: only the calls a build makes, speaking imgbuild's types
//! ([`RunSpec`], [`Container`], [`ImageConfig`], [`ImageInfo`]). A RUN step is
//! [`Engine::run`] then [`Engine::commit_and_remove`]; a COPY is [`Engine::create`],
//! [`Engine::upload`], [`Engine::commit_and_remove`]; the packaging stage reads files with
//! [`Engine::download_from_image`] and hands the result back with [`Engine::load_archive`].
//!
//! Containers never outlive a build: see [`cleanup`] for the four ways they are removed.
//!
//! ```no_run
//! # async fn example() -> imgbuild::engine::Result<()> {
//! use imgbuild::engine::{Engine, ImageConfig, RunSpec};
//!
//! let engine = Engine::connect().await?;
//! let _signals = engine.exit_on_interrupt()?;
//! let spec = RunSpec::new("debian:bookworm", ["/bin/sh", "-c", "echo hi > /hi"]);
//! let container = engine.run(&spec, &mut |line| eprintln!("{}", line.text)).await?;
//! let image_id = engine.commit_and_remove(container, &ImageConfig::default()).await?;
//! # let _ = image_id;
//! engine.remove_all().await?;
//! # Ok(())
//! # }
//! ```

mod address;
pub mod cleanup;
mod container;
mod error;
mod image;
mod output;
mod run_options;
mod ssh;

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;

pub(crate) use address::mask_credentials;
pub use address::{DEFAULT_HOST, EngineAddress};
pub use cleanup::{Interrupt, Interrupts};
pub use container::{Change, ChangeKind, Container, Mount, PathStat, Replace, RunSpec};
pub use error::{Error, Result};
// Shared with the native runtime (`crate::runtime`), which streams and reports the same way.
pub(crate) use error::RunFailedMessage;
pub use image::{ImageConfig, ImageInfo};
pub(crate) use output::LineSplitter;
pub use output::{OutputLine, OutputStream, TAIL_LINES};
pub use run_options::{DEFAULT_SHM_SIZE, ExtraHost, RunOptions, ULIMIT_NAMES, Ulimit, proxy_env};

use cleanup::LiveContainers;

/// The network RUN steps see (`--network`, `RUN --network=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The engine's default network for containers.
    #[default]
    Default,
    Host,
    None,
}

/// The oldest engine API imgbuild was tested with (Docker 20.10).
const MIN_API_VERSION: (u32, u32) = (1, 41);

/// How long [`Engine::connect`] waits for the engine's first answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// bollard's limit for an answer to start, which a commit or upload of a large layer needs
/// minutes for. Waits for a container and streamed output are not limited by it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// A connection to a Docker engine. Clones share the connection and the set of live
/// containers ([`Engine::remove_all`]).
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    address: EngineAddress,
    live: Arc<LiveContainers>,
}

// By hand: bollard's `Docker` shows its address unmasked.
impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("address", &self.address.to_string())
            .finish_non_exhaustive()
    }
}

/// What the engine says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// The engine's version, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// The newest API version it speaks, e.g. `1.41`.
    pub api_version: String,
    pub os: String,
    pub arch: String,
    pub kernel_version: String,
}

impl Engine {
    /// Connects to the engine at `DOCKER_HOST` (`unix://…`, `tcp://…`), else
    /// `/var/run/docker.sock`, and checks that it answers.
    pub async fn connect() -> Result<Engine> {
        Engine::connect_to(EngineAddress::from_env()?).await
    }

    /// Connects to the engine at `address` and checks that it answers.
    pub async fn connect_to(address: EngineAddress) -> Result<Engine> {
        Engine::connect_within(address, CONNECT_TIMEOUT).await
    }

    async fn connect_within(address: EngineAddress, timeout: Duration) -> Result<Engine> {
        let docker = client(&address)
            .map_err(|err| unreachable(&address, &err))?
            .with_timeout(REQUEST_TIMEOUT);
        let engine = Engine {
            docker,
            address,
            live: Arc::default(),
        };
        let info = match tokio::time::timeout(timeout, engine.ping()).await {
            Ok(Ok(info)) => info,
            Ok(Err(Error::Api { source, .. })) => {
                return Err(unreachable(&engine.address, &source));
            }
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                return Err(Error::EngineUnreachable {
                    place: engine.address.to_string(),
                    reason: format!("no answer within {timeout:?}"),
                    hint: "something accepts connections there but does not answer like a \
                           Docker engine; check that dockerd is healthy (`docker info`)"
                        .into(),
                });
            }
        };
        if parse_api_version(&info.api_version).is_none_or(|v| v < MIN_API_VERSION) {
            return Err(Error::EngineTooOld {
                place: engine.address.to_string(),
                api_version: info.api_version,
            });
        }
        Ok(engine)
    }

    /// Where this engine is (credentials masked when shown).
    pub fn address(&self) -> &EngineAddress {
        &self.address
    }

    /// Asks the engine for its version.
    pub async fn ping(&self) -> Result<EngineInfo> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|err| Error::api("report its version", err))?;
        Ok(EngineInfo {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            os: version.os.unwrap_or_default(),
            arch: version.arch.unwrap_or_default(),
            kernel_version: version.kernel_version.unwrap_or_default(),
        })
    }
}

/// A bollard client for `address`: a unix socket or plain TCP, TLS with the client
/// certificates, or ssh.
fn client(address: &EngineAddress) -> std::result::Result<Docker, bollard::errors::Error> {
    let timeout = REQUEST_TIMEOUT.as_secs();
    let version = bollard::API_DEFAULT_VERSION;
    match address.tls() {
        Some(tls) => Docker::connect_with_ssl(
            address.host(),
            &tls.key,
            &tls.cert,
            &tls.ca,
            timeout,
            version,
        ),
        None if address.is_ssh() => ssh::client(address.host(), timeout),
        None => Docker::connect_with_host(address.host()),
    }
}

/// `1.41` → (1, 41).
fn parse_api_version(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Why nothing answered, and what to do, from the first I/O error in the chain.
fn unreachable(address: &EngineAddress, err: &bollard::errors::Error) -> Error {
    let start_it = "start the Docker engine (`sudo systemctl start docker`, or `sudo dockerd &`), \
                    or set DOCKER_HOST to an engine that runs (rootless Docker: \
                    DOCKER_HOST=unix://$XDG_RUNTIME_DIR/docker.sock)";
    let io_kind = io_error_kind(err);
    let (reason, hint) = match (err, io_kind) {
        (bollard::errors::Error::SocketNotFoundError(path), _) => {
            (format!("there is no socket at {path}"), start_it.to_owned())
        }
        (_, Some(std::io::ErrorKind::NotFound)) => {
            ("there is no socket there".into(), start_it.to_owned())
        }
        (_, Some(std::io::ErrorKind::ConnectionRefused)) => (
            "nothing accepts connections there".into(),
            start_it.to_owned(),
        ),
        (_, Some(std::io::ErrorKind::PermissionDenied)) => (
            "permission denied".into(),
            match address.socket_path() {
                Some(path) => format!(
                    "run imgbuild as a user who may use {path}: a member of its group \
                     (usually `docker`: `sudo usermod -aG docker $USER`, then log in again), or root"
                ),
                None => "check that this user may connect to the engine".to_owned(),
            },
        ),
        _ => (
            crate::engine::address::mask_credentials(&innermost(err)),
            start_it.to_owned(),
        ),
    };
    // A remote engine is not started from here: say what to check instead.
    let hint = match (address.is_remote(), address.tls().is_some()) {
        (false, _) => hint,
        (true, true) => "check that the engine runs there with --tlsverify and that DOCKER_CERT_PATH holds a client certificate (cert.pem, key.pem) its CA (ca.pem) signed".to_owned(),
        (true, false) if address.is_ssh() => format!(
            "check that `{}` works from this machine without a prompt: the host in ~/.ssh/known_hosts, the key in ssh-agent or ~/.ssh/config",
            ssh::check_command(address.host())
        ),
        (true, false) => "check that the engine runs there and listens on that address".to_owned(),
    };
    Error::EngineUnreachable {
        place: address.to_string(),
        reason,
        hint,
    }
}

/// The deepest cause's message: what the transport said (ssh's error, TLS's reason), not
/// bollard's or hyper's wrappers of it.
fn innermost(err: &bollard::errors::Error) -> String {
    let mut current: &(dyn std::error::Error + 'static) = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

fn io_error_kind(err: &bollard::errors::Error) -> Option<std::io::ErrorKind> {
    // Transparent, so the chain below would skip it.
    if let bollard::errors::Error::IOError { err } = err {
        return Some(err.kind());
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cause = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(value: &str) -> EngineAddress {
        EngineAddress::parse(Some(value)).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    #[tokio::test]
    async fn a_missing_socket_is_unreachable_with_a_hint_to_start_the_engine() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("docker.sock");
        let address = address(&format!("unix://{}", socket.display()));
        let err = Engine::connect_to(address)
            .await
            .expect_err("no engine listens there");
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!(
                "cannot reach the Docker engine at unix://{} (from DOCKER_HOST): there is no socket",
                socket.display()
            )),
            "{shown}"
        );
        assert!(
            err.hint()
                .is_some_and(|h| h.contains("start the Docker engine"))
        );
    }

    #[tokio::test]
    async fn a_socket_nobody_accepts_on_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("docker.sock");
        // Bound, then closed: the file stays, nothing listens.
        drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
        let err = Engine::connect_to(address(&format!("unix://{}", socket.display())))
            .await
            .expect_err("nothing listens");
        assert!(
            err.to_string()
                .ends_with("nothing accepts connections there"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_silent_listener_times_out_instead_of_hanging() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("docker.sock");
        let _listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let address = address(&format!("unix://{}", socket.display()));
        let err = Engine::connect_within(address, Duration::from_millis(300))
            .await
            .expect_err("nothing answers");
        assert!(err.to_string().ends_with("no answer within 300ms"), "{err}");
        assert!(err.hint().is_some_and(|h| h.contains("docker info")));
    }

    #[test]
    fn permission_denied_says_how_to_get_access() {
        let err = bollard::errors::Error::from(std::io::Error::from(
            std::io::ErrorKind::PermissionDenied,
        ));
        let err = unreachable(&address("unix:///var/run/docker.sock"), &err);
        assert!(err.to_string().ends_with(": permission denied"), "{err}");
        assert!(
            err.hint()
                .is_some_and(|h| h.contains("who may use /var/run/docker.sock")),
            "{err:?}"
        );
    }

    #[test]
    fn api_versions_compare_numerically() {
        assert_eq!(parse_api_version("1.41"), Some((1, 41)));
        assert!(parse_api_version("1.9").is_some_and(|v| v < MIN_API_VERSION));
        assert!(parse_api_version("1.100").is_some_and(|v| v > MIN_API_VERSION));
        assert_eq!(parse_api_version("x"), None);
    }
}
