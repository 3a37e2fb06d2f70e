//! What every RUN of a build gets from the command line beyond its own instruction:
//! `--add-host`, `--shm-size` and `--ulimit`, as docker build takes them, and the proxy
//! build args. Both executors apply them. The first three are part of each RUN's cache
//! key, as BuildKit's exec op holds them; the proxies are not, as BuildKit leaves its
//! exec op's `ProxyEnv` out of the key (a build behind another proxy is the same build).

use std::net::IpAddr;

/// `/dev/shm` when `--shm-size` is not given: 64 MiB, as in BuildKit and Docker.
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// The names `--ulimit` takes (Docker's list), each an `RLIMIT_` resource.
pub const ULIMIT_NAMES: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// `--add-host`s in command-line order: lines of `/etc/hosts` after the defaults.
    pub extra_hosts: Vec<ExtraHost>,
    /// `--shm-size` in bytes; `None`: [`DEFAULT_SHM_SIZE`].
    pub shm_size: Option<u64>,
    /// `--ulimit`s; a resource without one keeps what the executor's process has.
    pub ulimits: Vec<Ulimit>,
    /// The proxy build args as every RUN's environment gets them (see [`proxy_env`]).
    pub proxy_env: Vec<String>,
}

/// The proxies BuildKit takes from build args, whichever the case of their names.
const PROXY_ARGS: [&str; 5] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// What every RUN's environment gets from the proxy build args (`--build-arg
/// http_proxy=…`), declared by an ARG or not, as BuildKit gives them: each proxy under
/// both its upper- and lower-case name, when not empty. Of two args of one proxy
/// (`HTTP_PROXY` and `http_proxy`), the one later in byte order wins, as BuildKit reads
/// them sorted. They never reach the image's config.
pub fn proxy_env(build_args: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut env = Vec::new();
    for proxy in PROXY_ARGS {
        // A BTreeMap iterates in byte order: the last match is BuildKit's.
        let value = build_args
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(proxy))
            .map(|(_, value)| value)
            .next_back();
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            env.push(format!("{proxy}={value}"));
            env.push(format!("{}={value}", proxy.to_ascii_lowercase()));
        }
    }
    env
}

/// `--add-host NAME:IP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    pub name: String,
    pub ip: IpAddr,
}

/// `--ulimit NAME=SOFT[:HARD]`; `-1` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// One of [`ULIMIT_NAMES`].
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

impl Ulimit {
    /// The OCI runtime spec's name of the resource: `RLIMIT_NOFILE` for `nofile`.
    pub fn rlimit_type(&self) -> String {
        format!("RLIMIT_{}", self.name.to_ascii_uppercase())
    }

    /// The kernel's value of a limit: `-1` is `RLIM_INFINITY`.
    pub fn rlimit_value(limit: i64) -> u64 {
        u64::try_from(limit).unwrap_or(u64::MAX)
    }
}

impl ExtraHost {
    /// The line this host adds to `/etc/hosts`, as BuildKit writes it.
    pub fn hosts_line(&self) -> String {
        format!("{}\t{}\n", self.ip, self.name)
    }

    /// Docker's `HostConfig.ExtraHosts` form, `NAME:IP`.
    pub fn engine_form(&self) -> String {
        format!("{}:{}", self.name, self.ip)
    }
}

impl RunOptions {
    /// What these options add to a RUN's cache key: nothing for the defaults, so the keys
    /// of builds that give none stay what they were.
    pub fn key_entries(&self) -> Vec<(String, String)> {
        let mut entries = Vec::new();
        if !self.extra_hosts.is_empty() {
            let hosts: Vec<String> = self
                .extra_hosts
                .iter()
                .map(ExtraHost::engine_form)
                .collect();
            entries.push(("add-host".to_owned(), hosts.join(",")));
        }
        if let Some(size) = self.shm_size {
            entries.push(("shm-size".to_owned(), size.to_string()));
        }
        if !self.ulimits.is_empty() {
            let limits: Vec<String> = self
                .ulimits
                .iter()
                .map(|u| format!("{}={}:{}", u.name, u.soft, u.hard))
                .collect();
            entries.push(("ulimit".to_owned(), limits.join(",")));
        }
        entries
    }

    /// The `/etc/hosts` lines of the `--add-host`s.
    pub fn hosts_lines(&self) -> String {
        self.extra_hosts.iter().map(ExtraHost::hosts_line).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_add_nothing_to_a_key() {
        assert!(RunOptions::default().key_entries().is_empty());
        let options = RunOptions {
            extra_hosts: vec![ExtraHost {
                name: "db".into(),
                ip: "10.0.0.2".parse().unwrap(),
            }],
            shm_size: Some(1 << 28),
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048,
            }],
            proxy_env: vec!["HTTP_PROXY=http://proxy:3128".into()],
        };
        assert_eq!(
            options.key_entries(),
            [
                ("add-host".to_owned(), "db:10.0.0.2".to_owned()),
                ("shm-size".to_owned(), "268435456".to_owned()),
                ("ulimit".to_owned(), "nofile=1024:2048".to_owned()),
            ]
        );
        assert_eq!(options.hosts_lines(), "10.0.0.2\tdb\n");
        assert_eq!(options.ulimits[0].rlimit_type(), "RLIMIT_NOFILE");
        assert_eq!(Ulimit::rlimit_value(-1), u64::MAX);
    }

    #[test]
    fn proxy_args_reach_every_run_in_both_cases_and_never_the_key() {
        let args: std::collections::BTreeMap<String, String> = [
            ("http_proxy", "hp"),
            ("HTTPS_PROXY", "upper"),
            ("https_proxy", "lower"),
            ("NO_PROXY", "np"),
            ("ftp_proxy", ""),
            ("FOO", "bar"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            proxy_env(&args),
            [
                "HTTP_PROXY=hp",
                "http_proxy=hp",
                // Both given: the lower-case one sorts last, and wins, as in BuildKit.
                "HTTPS_PROXY=lower",
                "https_proxy=lower",
                "NO_PROXY=np",
                "no_proxy=np",
            ]
        );
        let options = RunOptions {
            proxy_env: proxy_env(&args),
            ..RunOptions::default()
        };
        assert!(options.key_entries().is_empty());
    }
}
