//! The `/etc/hosts` and `/etc/resolv.conf` a container sees when the caller gives none:
//! what BuildKit's executor writes (`executor/oci/hosts.go`, `resolvconf.go`).

use std::path::Path;

use super::Network;

/// BuildKit's hostname for build containers.
pub const DEFAULT_HOSTNAME: &str = "buildkitsandbox";

/// The resolver configuration of the host.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// What a network namespace of its own gets when the host has only local resolvers, which
/// it cannot reach (Docker's and BuildKit's defaults: Google's public DNS).
const FALLBACK_NAMESERVERS: [&str; 4] = [
    "8.8.8.8",
    "8.8.4.4",
    "2001:4860:4860::8888",
    "2001:4860:4860::8844",
];

/// BuildKit's `/etc/hosts`: localhost, with the hostname on the IPv4 line.
pub fn hosts(hostname: &str) -> String {
    let hostname = if hostname.is_empty() {
        DEFAULT_HOSTNAME
    } else {
        hostname
    };
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// The host's `/etc/resolv.conf` as the network sees it: as it is for the host's network;
/// for a namespace of its own, without the loopback nameservers it cannot reach (Google's
/// instead when none is left), as BuildKit does. A host without the file gives an empty one
/// (host) or the fallback (own namespace).
pub fn resolv_conf(network: Network) -> std::io::Result<String> {
    resolv_conf_from(Path::new(HOST_RESOLV_CONF), network)
}

fn resolv_conf_from(path: &Path, network: Network) -> std::io::Result<String> {
    let host = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err),
    };
    Ok(match network {
        Network::Host => host,
        Network::None => without_local_nameservers(&host),
    })
}

fn without_local_nameservers(conf: &str) -> String {
    let mut out = String::new();
    let mut nameservers = 0;
    for line in conf.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let local = words
                .next()
                .and_then(|addr| addr.parse::<std::net::IpAddr>().ok())
                .is_some_and(|addr| addr.is_loopback());
            if local {
                continue;
            }
            nameservers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if nameservers == 0 {
        for server in FALLBACK_NAMESERVERS {
            out.push_str(&format!("nameserver {server}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_localhost_and_the_hostname() {
        assert_eq!(
            hosts("box"),
            "127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        );
        assert!(hosts("").starts_with("127.0.0.1\tlocalhost buildkitsandbox\n"));
    }

    #[test]
    fn own_namespaces_lose_local_resolvers() {
        let conf = "search example.org\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n\
                    nameserver ::1\noptions edns0\n";
        assert_eq!(
            without_local_nameservers(conf),
            "search example.org\nnameserver 10.0.0.2\noptions edns0\n"
        );
        let only_local = without_local_nameservers("nameserver 127.0.0.1\n");
        assert_eq!(
            only_local,
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\nnameserver 2001:4860:4860::8888\n\
             nameserver 2001:4860:4860::8844\n"
        );
    }

    #[test]
    fn the_host_network_gets_the_host_file_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 127.0.0.53\n").unwrap();
        assert_eq!(
            resolv_conf_from(&path, Network::Host).unwrap(),
            "nameserver 127.0.0.53\n"
        );
        assert!(
            resolv_conf_from(&path, Network::None)
                .unwrap()
                .starts_with("nameserver 8.8.8.8\n")
        );
        let missing = dir.path().join("missing");
        assert_eq!(resolv_conf_from(&missing, Network::Host).unwrap(), "");
    }
}
