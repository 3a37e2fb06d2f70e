//! Where the engine is, as the docker CLI finds it: `DOCKER_HOST` (with
//! `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`), else the docker context `DOCKER_CONTEXT`
//! or `~/.docker/config.json`'s `currentContext` names, else the default socket.
//! Addresses are `unix://`, `tcp://` (plain, or TLS with client certificates) and
//! `ssh://[user@]host[:port]` (through the engine host's `docker system dial-stdio`).

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{Error, Result};

/// The socket the docker CLI uses when `DOCKER_HOST` is unset.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The port a plain-TCP engine listens on when `tcp://HOST` names none.
const DEFAULT_TCP_PORT: u16 = 2375;
/// The port of a TLS engine (`dockerd --tlsverify`).
const DEFAULT_TLS_PORT: u16 = 2376;

/// The client certificate, key and CA an engine with `--tlsverify` is reached with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// `ca.pem`, `cert.pem` and `key.pem` in `dir`, as the docker CLI names them; every one
    /// must be there.
    fn in_dir(dir: &Path, origin: &str) -> Result<TlsFiles> {
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        for file in [&files.ca, &files.cert, &files.key] {
            if !file.is_file() {
                return Err(Error::UnsupportedHost {
                    value: origin.to_owned(),
                    reason: format!("TLS is on, and {} is missing", file.display()),
                });
            }
        }
        Ok(files)
    }
}

/// Where an address came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Default,
    DockerHost,
    Context(String),
}

/// A validated engine address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineAddress {
    /// What bollard connects to (`unix:///…`, `tcp://host:port`, `ssh://user@host`).
    host: String,
    /// Client certificates for a `tcp://` engine that verifies them.
    tls: Option<TlsFiles>,
    origin: Origin,
}

/// Reads the environment; a function so tests can give a fake one.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl EngineAddress {
    /// The address from the process environment and the docker CLI's configuration.
    pub fn from_env() -> Result<EngineAddress> {
        EngineAddress::resolve(&|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
    }

    /// `DOCKER_HOST` (TLS per `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`), else the current
    /// docker context, else the default socket: the docker CLI's order.
    pub fn resolve(env: Env<'_>) -> Result<EngineAddress> {
        let config_dir = env("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|home| Path::new(&home).join(".docker")));
        if let Some(value) = env("DOCKER_HOST") {
            let tls = match env("DOCKER_TLS_VERIFY") {
                Some(_) => {
                    let dir = env("DOCKER_CERT_PATH")
                        .map(PathBuf::from)
                        .or_else(|| config_dir.clone())
                        .ok_or_else(|| Error::UnsupportedHost {
                            value: format!("DOCKER_HOST={}", mask_credentials(&value)),
                            reason: "DOCKER_TLS_VERIFY is set, and neither DOCKER_CERT_PATH nor HOME says where the certificates are".into(),
                        })?;
                    Some(TlsFiles::in_dir(
                        &dir,
                        &format!("DOCKER_HOST={}", mask_credentials(&value)),
                    )?)
                }
                None => None,
            };
            return EngineAddress::parse_with(Some(&value), tls, Origin::DockerHost);
        }
        let context = env("DOCKER_CONTEXT").or_else(|| {
            let config = std::fs::read(config_dir.as_ref()?.join("config.json")).ok()?;
            let config: serde_json::Value = serde_json::from_slice(&config).ok()?;
            config["currentContext"].as_str().map(str::to_owned)
        });
        match (context, config_dir) {
            (Some(name), Some(dir)) if name != "default" => EngineAddress::of_context(&dir, &name),
            (Some(name), None) if name != "default" => Err(Error::UnsupportedHost {
                value: format!("docker context {name}"),
                reason: "neither DOCKER_CONFIG nor HOME says where the docker contexts are".into(),
            }),
            _ => EngineAddress::parse_with(None, None, Origin::Default),
        }
    }

    /// An engine named on the command line (`--engine-for`): an address (`unix://`,
    /// `tcp://` without TLS, `ssh://`) or the name of a docker context (which is how an
    /// engine with TLS certificates is named).
    pub fn named(value: &str, env: Env<'_>) -> Result<EngineAddress> {
        if value.contains("://") {
            return EngineAddress::parse(Some(value));
        }
        let dir = env("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|home| Path::new(&home).join(".docker")))
            .ok_or_else(|| Error::UnsupportedHost {
                value: format!("docker context {value}"),
                reason: "neither DOCKER_CONFIG nor HOME says where the docker contexts are".into(),
            })?;
        EngineAddress::of_context(&dir, value)
    }

    /// The docker endpoint of context `name` in the docker CLI's configuration `dir`:
    /// `contexts/meta/<sha256 of the name>/meta.json`, and TLS files beside it under
    /// `contexts/tls/<sha256>/docker/`.
    fn of_context(dir: &Path, name: &str) -> Result<EngineAddress> {
        let id = hex::encode(Sha256::digest(name.as_bytes()));
        let meta_path = dir.join("contexts/meta").join(&id).join("meta.json");
        let failed = |reason: String| Error::UnsupportedHost {
            value: format!("docker context {name}"),
            reason,
        };
        let meta = std::fs::read(&meta_path).map_err(|e| {
            failed(format!(
                "{} cannot be read ({e}); `docker context ls` lists the contexts",
                meta_path.display()
            ))
        })?;
        let meta: serde_json::Value = serde_json::from_slice(&meta)
            .map_err(|e| failed(format!("{}: {e}", meta_path.display())))?;
        let endpoint = &meta["Endpoints"]["docker"];
        let host = endpoint["Host"]
            .as_str()
            .ok_or_else(|| failed(format!("{} has no docker endpoint", meta_path.display())))?;
        let tls_dir = dir.join("contexts/tls").join(&id).join("docker");
        let tls = match tls_dir.is_dir() && host.starts_with("tcp://") {
            true if endpoint["SkipTLSVerify"].as_bool() == Some(true) => {
                return Err(failed(
                    "it skips TLS verification, which imgbuild does not do".into(),
                ));
            }
            true => Some(TlsFiles::in_dir(
                &tls_dir,
                &format!("docker context {name}"),
            )?),
            false => None,
        };
        EngineAddress::parse_with(Some(host), tls, Origin::Context(name.to_owned()))
    }

    /// Validates a `DOCKER_HOST` value, without TLS; `None` or empty means the default
    /// socket.
    pub fn parse(docker_host: Option<&str>) -> Result<EngineAddress> {
        let origin = match docker_host.map(str::trim).filter(|v| !v.is_empty()) {
            Some(_) => Origin::DockerHost,
            None => Origin::Default,
        };
        EngineAddress::parse_with(docker_host, None, origin)
    }

    fn parse_with(
        docker_host: Option<&str>,
        tls: Option<TlsFiles>,
        origin: Origin,
    ) -> Result<EngineAddress> {
        let Some(value) = docker_host.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(EngineAddress {
                host: DEFAULT_HOST.to_owned(),
                tls: None,
                origin: Origin::Default,
            });
        };
        let unsupported = |reason: &str| Error::UnsupportedHost {
            value: match &origin {
                Origin::Context(name) => {
                    format!("docker context {name} ({})", mask_credentials(value))
                }
                _ => format!("DOCKER_HOST={}", mask_credentials(value)),
            },
            reason: reason.to_owned(),
        };
        let (host, tls) = if let Some(path) = value.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(unsupported("a unix socket needs an absolute path"));
            }
            (value.to_owned(), None)
        } else if let Some(authority) = value
            .strip_prefix("tcp://")
            .or_else(|| value.strip_prefix("http://"))
            .or_else(|| value.strip_prefix("https://"))
        {
            let authority = authority.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(unsupported("expected tcp://HOST:PORT"));
            }
            if value.starts_with("https://") && tls.is_none() {
                return Err(unsupported(
                    "https:// needs client certificates: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH",
                ));
            }
            let port = if tls.is_some() {
                DEFAULT_TLS_PORT
            } else {
                DEFAULT_TCP_PORT
            };
            let host = match has_port(authority) {
                true => format!("tcp://{authority}"),
                false => format!("tcp://{authority}:{port}"),
            };
            (host, tls)
        } else if let Some(destination) = value.strip_prefix("ssh://") {
            let destination = destination.trim_end_matches('/');
            if destination.is_empty() || destination.contains('/') {
                return Err(unsupported("expected ssh://[USER@]HOST[:PORT]"));
            }
            (format!("ssh://{destination}"), None)
        } else {
            let scheme = value.split_once("://").map_or("", |(scheme, _)| scheme);
            return Err(unsupported(&if scheme.is_empty() {
                "no scheme; imgbuild supports unix://, tcp:// and ssh://".to_owned()
            } else {
                format!(
                    "the {scheme}:// scheme is not supported; imgbuild supports unix://, tcp:// and ssh://"
                )
            }));
        };
        Ok(EngineAddress { host, tls, origin })
    }

    /// What to hand bollard.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The client certificates of a TLS engine.
    pub(crate) fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Whether the engine is reached over ssh.
    pub(crate) fn is_ssh(&self) -> bool {
        self.host.starts_with("ssh://")
    }

    /// The socket path, for a unix address.
    pub fn socket_path(&self) -> Option<&str> {
        self.host.strip_prefix("unix://")
    }

    /// Whether the engine runs on another machine, as far as imgbuild can tell: anything
    /// but a unix socket. Its file system is not this one's.
    pub fn is_remote(&self) -> bool {
        self.socket_path().is_none()
    }

    pub fn from_env_var(&self) -> bool {
        self.origin == Origin::DockerHost
    }
}

impl fmt::Display for EngineAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = if self.tls.is_some() { ", TLS" } else { "" };
        match &self.origin {
            Origin::Default => write!(f, "{} (the default; DOCKER_HOST is unset)", self.host),
            Origin::DockerHost => {
                write!(
                    f,
                    "{} (from DOCKER_HOST{tls})",
                    mask_credentials(&self.host)
                )
            }
            Origin::Context(name) => write!(
                f,
                "{} (docker context {name}{tls})",
                mask_credentials(&self.host)
            ),
        }
    }
}

/// `tcp://user:secret@host` → `tcp://***@host`; a user alone (`ssh://me@host`) is shown.
pub(crate) fn mask_credentials(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if rest[..at].contains(':') => format!("{scheme}://***{}", &rest[at..]),
        _ => address.to_owned(),
    }
}

/// Whether `host[:port]` (or `[v6]:port`) names a port.
fn has_port(authority: &str) -> bool {
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    authority[host_end..].contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn host(value: Option<&str>) -> String {
        match EngineAddress::parse(value) {
            Ok(address) => address.host,
            Err(err) => panic!("{value:?} rejected: {err}"),
        }
    }

    fn rejection(value: &str) -> String {
        match EngineAddress::parse(Some(value)) {
            Ok(address) => panic!("{value} accepted as {address}"),
            Err(err) => err.to_string(),
        }
    }

    fn resolve(vars: &[(&str, String)]) -> Result<EngineAddress> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        EngineAddress::resolve(&|key| vars.get(key).cloned())
    }

    fn tls_dir(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.join(file), "pem").unwrap();
        }
    }

    #[test]
    fn unset_or_empty_means_the_default_socket() {
        assert_eq!(host(None), DEFAULT_HOST);
        assert_eq!(host(Some("")), DEFAULT_HOST);
        assert_eq!(host(Some("  ")), DEFAULT_HOST);
        let default = EngineAddress::parse(None).map(|a| a.to_string());
        assert_eq!(
            default.ok().as_deref(),
            Some("unix:///var/run/docker.sock (the default; DOCKER_HOST is unset)")
        );
    }

    #[test]
    fn unix_tcp_and_ssh_are_accepted_and_tcp_gets_the_default_port() {
        assert_eq!(host(Some("unix:///run/d.sock")), "unix:///run/d.sock");
        assert_eq!(host(Some("tcp://10.0.0.1:2375")), "tcp://10.0.0.1:2375");
        assert_eq!(host(Some("tcp://engine")), "tcp://engine:2375");
        assert_eq!(host(Some("tcp://engine/")), "tcp://engine:2375");
        assert_eq!(host(Some("http://engine:80")), "tcp://engine:80");
        assert_eq!(host(Some("tcp://[::1]")), "tcp://[::1]:2375");
        assert_eq!(host(Some("tcp://[::1]:99")), "tcp://[::1]:99");
        assert_eq!(host(Some("ssh://me@box")), "ssh://me@box");
        assert_eq!(host(Some("ssh://me@box:2222/")), "ssh://me@box:2222");
        assert!(EngineAddress::parse(Some("ssh://box")).unwrap().is_remote());
        assert!(!EngineAddress::parse(None).unwrap().is_remote());
    }

    #[test]
    fn other_schemes_are_rejected_with_the_reason() {
        assert_eq!(
            rejection("npipe:////./pipe/docker_engine"),
            "DOCKER_HOST=npipe:////./pipe/docker_engine: the npipe:// scheme is not supported; \
             imgbuild supports unix://, tcp:// and ssh://"
        );
        assert!(rejection("/var/run/docker.sock").contains("no scheme"));
        assert!(rejection("unix://relative.sock").contains("absolute path"));
        assert!(rejection("tcp://").contains("tcp://HOST:PORT"));
        assert!(rejection("ssh://").contains("ssh://[USER@]HOST[:PORT]"));
        assert!(rejection("https://h").contains("DOCKER_TLS_VERIFY"));
    }

    #[test]
    fn docker_tls_verify_takes_the_certificates_from_docker_cert_path() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        tls_dir(&certs);
        let address = resolve(&[
            ("DOCKER_HOST", "tcp://engine".into()),
            ("DOCKER_TLS_VERIFY", "1".into()),
            ("DOCKER_CERT_PATH", certs.display().to_string()),
        ])
        .unwrap();
        assert_eq!(address.host, "tcp://engine:2376");
        assert_eq!(address.tls().unwrap().ca, certs.join("ca.pem"));
        assert_eq!(
            address.to_string(),
            "tcp://engine:2376 (from DOCKER_HOST, TLS)"
        );

        // Without DOCKER_CERT_PATH: ~/.docker, as the docker CLI looks.
        tls_dir(&dir.path().join(".docker"));
        let address = resolve(&[
            ("DOCKER_HOST", "tcp://engine:9999".into()),
            ("DOCKER_TLS_VERIFY", "1".into()),
            ("HOME", dir.path().display().to_string()),
        ])
        .unwrap();
        assert_eq!(
            address.tls().unwrap().key,
            dir.path().join(".docker/key.pem")
        );

        std::fs::remove_file(certs.join("key.pem")).unwrap();
        let err = resolve(&[
            ("DOCKER_HOST", "tcp://engine".into()),
            ("DOCKER_TLS_VERIFY", "1".into()),
            ("DOCKER_CERT_PATH", certs.display().to_string()),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("key.pem is missing"), "{err}");
    }

    /// A docker context as `docker context create NAME --docker host=…` stores it.
    fn context(config: &Path, name: &str, host: &str, tls: bool) {
        let id = hex::encode(Sha256::digest(name.as_bytes()));
        let meta = config.join("contexts/meta").join(&id);
        std::fs::create_dir_all(&meta).unwrap();
        let json = serde_json::json!({
            "Name": name,
            "Metadata": {},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}},
        });
        std::fs::write(meta.join("meta.json"), json.to_string()).unwrap();
        if tls {
            tls_dir(&config.join("contexts/tls").join(&id).join("docker"));
        }
    }

    #[test]
    fn the_current_docker_context_is_used_unless_docker_host_is_set() {
        let home = tempfile::tempdir().unwrap();
        let config = home.path().join(".docker");
        context(&config, "builder", "ssh://ci@build-box", false);
        context(&config, "secure", "tcp://10.0.0.9:2376", true);
        std::fs::write(
            config.join("config.json"),
            r#"{"currentContext": "builder"}"#,
        )
        .unwrap();
        let home_var = ("HOME", home.path().display().to_string());

        let address = resolve(std::slice::from_ref(&home_var)).unwrap();
        assert_eq!(address.host, "ssh://ci@build-box");
        assert_eq!(
            address.to_string(),
            "ssh://ci@build-box (docker context builder)"
        );

        // DOCKER_CONTEXT picks another; its TLS files come with it.
        let address = resolve(&[home_var.clone(), ("DOCKER_CONTEXT", "secure".into())]).unwrap();
        assert_eq!(address.host, "tcp://10.0.0.9:2376");
        assert!(address.tls().is_some());

        // DOCKER_HOST wins over both, as in the docker CLI; `default` is DOCKER_HOST's.
        let address = resolve(&[
            home_var.clone(),
            ("DOCKER_CONTEXT", "secure".into()),
            ("DOCKER_HOST", "unix:///run/x.sock".into()),
        ])
        .unwrap();
        assert_eq!(address.host, "unix:///run/x.sock");
        let address = resolve(&[home_var.clone(), ("DOCKER_CONTEXT", "default".into())]).unwrap();
        assert_eq!(address.host, DEFAULT_HOST);

        // DOCKER_CONFIG moves the configuration.
        let address = resolve(&[("DOCKER_CONFIG", config.display().to_string())]).unwrap();
        assert_eq!(address.host, "ssh://ci@build-box");

        let err = resolve(&[home_var, ("DOCKER_CONTEXT", "nope".into())])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("docker context nope: "), "{err}");
        assert!(err.contains("docker context ls"), "{err}");
    }

    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(
            mask_credentials("tcp://user:s3cret@host:2375"),
            "tcp://***@host:2375"
        );
        assert_eq!(mask_credentials("ssh://me@host"), "ssh://me@host");
        assert_eq!(mask_credentials("unix:///a@b/sock"), "unix:///a@b/sock");
        let shown = EngineAddress::parse(Some("tcp://u:p@h:1"))
            .map(|a| a.to_string())
            .unwrap_or_default();
        assert_eq!(shown, "tcp://***@h:1 (from DOCKER_HOST)");
        assert!(!rejection("tcp://u:pw@h:1/x").contains("pw"));
    }
}
