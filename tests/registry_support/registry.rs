//! A real `docker-registry` (Debian's distribution 2.8) on its own free port, with its
//! storage in a temp dir; killed when the guard drops.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// How the registry authenticates.
pub enum Auth {
    None,
    /// htpasswd (bcrypt) users.
    Htpasswd(Vec<(String, String)>),
    /// Bearer tokens from a token server: realm URL, service, issuer, PEM bundle path.
    Token {
        realm: String,
        service: String,
        issuer: String,
        root_cert_bundle: PathBuf,
    },
}

pub struct Options {
    pub auth: Auth,
    /// Certificate and key (PEM paths) to serve TLS with.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auth: Auth::None,
            tls: None,
        }
    }
}

pub struct TestRegistry {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl TestRegistry {
    pub fn start() -> TestRegistry {
        TestRegistry::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((cert, key)) = &options.tls {
            let _ = write!(
                config,
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }
        match &options.auth {
            Auth::None => {}
            Auth::Htpasswd(users) => {
                let htpasswd = dir.path().join("htpasswd");
                let mut lines = String::new();
                for (user, password) in users {
                    lines.push_str(&super::run(
                        Command::new("htpasswd").args(["-Bbn", user, password]),
                    ));
                }
                std::fs::write(&htpasswd, lines.trim_end().to_owned() + "\n")
                    .unwrap_or_else(|e| panic!("{e}"));
                let _ = write!(
                    config,
                    "auth:\n  htpasswd:\n    realm: imgbuild-test\n    path: {}\n",
                    htpasswd.display()
                );
            }
            Auth::Token {
                realm,
                service,
                issuer,
                root_cert_bundle,
            } => {
                let _ = write!(
                    config,
                    "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    \
                     issuer: {issuer}\n    rootcertbundle: {}\n",
                    root_cert_bundle.display()
                );
            }
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::File::create(dir.path().join("registry.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start docker-registry (apt-get install docker-registry): {e}")
            });
        let registry = TestRegistry { port, dir, child };
        registry.wait_until_listening();
        registry
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not listen on {} within 20 s; log:\n{}",
            self.port,
            self.log()
        );
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Whether the registry's storage holds a blob (any repository).
    pub fn has_blob(&self, hex: &str) -> bool {
        let prefix = hex.get(..2).unwrap_or_default();
        blob_path(&self.storage(), prefix, hex).is_file()
    }

    /// The tags of a repository, read from storage.
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let dir = self
            .storage()
            .join("docker/registry/v2/repositories")
            .join(repository)
            .join("_manifests/tags");
        let mut tags: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }
}

fn blob_path(storage: &Path, prefix: &str, hex: &str) -> PathBuf {
    storage
        .join("docker/registry/v2/blobs/sha256")
        .join(prefix)
        .join(hex)
        .join("data")
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
