//! Where the engine is: `DOCKER_HOST`, else the default socket, as the docker CLI does
//! (without its contexts).

use std::fmt;

use super::error::{Error, Result};

/// The socket the docker CLI uses when `DOCKER_HOST` is unset.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The port a plain-TCP engine listens on when `tcp://HOST` names none.
const DEFAULT_TCP_PORT: u16 = 2375;

/// A validated engine address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineAddress {
    /// What bollard connects to (`unix:///…` or `tcp://host:port`).
    host: String,
    /// Whether it came from `DOCKER_HOST` (for messages).
    from_env: bool,
}

impl EngineAddress {
    /// The address from the process environment.
    pub fn from_env() -> Result<EngineAddress> {
        let docker_host = std::env::var("DOCKER_HOST").ok();
        let tls_verify = std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
        EngineAddress::parse(docker_host.as_deref(), tls_verify)
    }

    /// Validates a `DOCKER_HOST` value; `None` or empty means the default socket.
    pub fn parse(docker_host: Option<&str>, tls_verify: bool) -> Result<EngineAddress> {
        let Some(value) = docker_host.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(EngineAddress {
                host: DEFAULT_HOST.to_owned(),
                from_env: false,
            });
        };
        let unsupported = |reason: &str| Error::UnsupportedHost {
            value: mask_credentials(value),
            reason: reason.to_owned(),
        };
        let host = if let Some(path) = value.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(unsupported("a unix socket needs an absolute path"));
            }
            value.to_owned()
        } else if let Some(authority) = value
            .strip_prefix("tcp://")
            .or_else(|| value.strip_prefix("http://"))
        {
            if tls_verify {
                return Err(unsupported(
                    "DOCKER_TLS_VERIFY is set, and imgbuild cannot talk TLS to an engine yet",
                ));
            }
            let authority = authority.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(unsupported("expected tcp://HOST:PORT"));
            }
            if has_port(authority) {
                format!("tcp://{authority}")
            } else {
                format!("tcp://{authority}:{DEFAULT_TCP_PORT}")
            }
        } else {
            let scheme = value.split_once("://").map_or("", |(scheme, _)| scheme);
            return Err(unsupported(&if scheme.is_empty() {
                "no scheme; imgbuild supports unix:// and tcp://".to_owned()
            } else {
                format!(
                    "the {scheme}:// scheme is not supported; imgbuild supports unix:// and tcp://"
                )
            }));
        };
        Ok(EngineAddress {
            host,
            from_env: true,
        })
    }

    /// What to hand bollard.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The socket path, for a unix address.
    pub fn socket_path(&self) -> Option<&str> {
        self.host.strip_prefix("unix://")
    }

    pub fn from_env_var(&self) -> bool {
        self.from_env
    }
}

impl fmt::Display for EngineAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = if self.from_env {
            "from DOCKER_HOST"
        } else {
            "the default; DOCKER_HOST is unset"
        };
        write!(f, "{} ({origin})", mask_credentials(&self.host))
    }
}

/// `tcp://user:secret@host` → `tcp://***@host`.
pub(crate) fn mask_credentials(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => address.to_owned(),
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

    fn host(value: Option<&str>) -> String {
        match EngineAddress::parse(value, false) {
            Ok(address) => address.host,
            Err(err) => panic!("{value:?} rejected: {err}"),
        }
    }

    fn rejection(value: &str, tls: bool) -> String {
        match EngineAddress::parse(Some(value), tls) {
            Ok(address) => panic!("{value} accepted as {address}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn unset_or_empty_means_the_default_socket() {
        assert_eq!(host(None), DEFAULT_HOST);
        assert_eq!(host(Some("")), DEFAULT_HOST);
        assert_eq!(host(Some("  ")), DEFAULT_HOST);
        let default = EngineAddress::parse(None, false).map(|a| a.to_string());
        assert_eq!(
            default.ok().as_deref(),
            Some("unix:///var/run/docker.sock (the default; DOCKER_HOST is unset)")
        );
    }

    #[test]
    fn unix_and_tcp_are_accepted_and_tcp_gets_the_default_port() {
        assert_eq!(host(Some("unix:///run/d.sock")), "unix:///run/d.sock");
        assert_eq!(host(Some("tcp://10.0.0.1:2375")), "tcp://10.0.0.1:2375");
        assert_eq!(host(Some("tcp://engine")), "tcp://engine:2375");
        assert_eq!(host(Some("tcp://engine/")), "tcp://engine:2375");
        assert_eq!(host(Some("http://engine:80")), "tcp://engine:80");
        assert_eq!(host(Some("tcp://[::1]")), "tcp://[::1]:2375");
        assert_eq!(host(Some("tcp://[::1]:99")), "tcp://[::1]:99");
    }

    #[test]
    fn other_schemes_and_tls_are_rejected_with_the_reason() {
        assert_eq!(
            rejection("ssh://me@box", false),
            "DOCKER_HOST=ssh://***@box: the ssh:// scheme is not supported; imgbuild supports \
             unix:// and tcp://"
        );
        assert!(rejection("/var/run/docker.sock", false).contains("no scheme"));
        assert!(rejection("unix://relative.sock", false).contains("absolute path"));
        assert!(rejection("tcp://", false).contains("tcp://HOST:PORT"));
        assert!(rejection("tcp://h:2376", true).contains("DOCKER_TLS_VERIFY"));
    }

    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(
            mask_credentials("tcp://user:s3cret@host:2375"),
            "tcp://***@host:2375"
        );
        assert_eq!(mask_credentials("unix:///a@b/sock"), "unix:///a@b/sock");
        let shown = EngineAddress::parse(Some("tcp://u:p@h:1"), false)
            .map(|a| a.to_string())
            .unwrap_or_default();
        assert_eq!(shown, "tcp://***@h:1 (from DOCKER_HOST)");
        assert!(!rejection("tcp://u:pw@h:1", true).contains("pw"));
    }
}
