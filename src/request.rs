//! What the user asked for, free of clap: a build request, resolved once from the flags and
//! the environment (`SOURCE_DATE_EPOCH`, `XDG_CACHE_HOME`, `--build-arg KEY` from the
//! environment). Everything after the command line reads these types.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::engine::Network;
pub use crate::frontend::DockerfileSource;
pub use crate::publish::{Output, PublishRequest};
pub use crate::registry::RegistryOptions;

/// BuildKit's entitlements: what a RUN may do only when the command line allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entitlement {
    /// `RUN --network=host`.
    NetworkHost,
    /// `RUN --security=insecure`: a privileged container.
    SecurityInsecure,
}

/// `--executor`: what runs the build stages' steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutorChoice {
    /// Native when this machine can (root, an OCI runtime, overlay mounts in the cache
    /// dir), else the engine, saying why.
    #[default]
    Auto,
    /// The OCI runtime on overlay snapshots; an input error when this machine cannot.
    Native,
    /// The Docker engine, as before; nothing is probed.
    Engine,
}

/// Where a build secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// An environment variable of imgbuild's own process.
    Env(String),
}

// Where a secret comes from is not secret, but keep Debug output free of anything read.
impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "File({})", p.display()),
            SecretSource::Env(v) => write!(f, "Env({v})"),
        }
    }
}

/// A build, as `imgbuild build` was asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    pub context: PathBuf,
    /// Whether the context's ignore file (`.dockerignore`, `NAME.dockerignore`) applies:
    /// not to a tar on standard input, which docker build takes as it is (moby/moby#13919).
    pub dockerignore: bool,
    /// Whether COPY keeps the context files' owners: a tar on standard input, as BuildKit
    /// keeps them; else root (or `--chown`).
    pub context_owners: bool,
    pub dockerfile: DockerfileSource,
    /// `--build-context`s by (lower-cased) name.
    pub build_contexts: BTreeMap<String, crate::frontend::stages::NamedContext>,
    pub target: Option<String>,
    /// `--build-arg`s; a bare `KEY` took its value from the environment, and is left out
    /// when the environment has none (as docker build does).
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub network: Network,
    /// `--allow`: what RUN steps may ask for beyond the sandbox.
    pub allow: std::collections::BTreeSet<Entitlement>,
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (lower-cased names) whose steps run even when cached.
    pub no_cache_filter: std::collections::BTreeSet<String>,
    pub cache_dir: PathBuf,
    /// `--secret`s by id.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh`: agent sockets by id (`default` for a mount without `id=`).
    pub ssh: BTreeMap<String, PathBuf>,
    /// `--cache-from`, in order.
    pub cache_from: Vec<crate::cache::remote::CacheLocation>,
    /// `--cache-to`.
    pub cache_to: Vec<crate::cache::remote::CacheExport>,
    /// `--label-from-git`.
    pub label_from_git: bool,
    /// Warn when a COPY/ADD selects more than this many bytes of the context (`None`: never).
    pub context_size_warning: Option<u64>,
    /// `--executor`.
    pub executor: ExecutorChoice,
    /// The engine to use instead of the environment's (`DOCKER_HOST`, the docker context).
    pub engine: Option<crate::engine::EngineAddress>,
    /// `--engine-for PLATFORM=ENGINE`: the engine that runs a platform's steps.
    pub engine_for: BTreeMap<crate::oci::Platform, crate::engine::EngineAddress>,
    /// `--pull`: FROM images come from their registry even when the engine has them.
    pub pull: bool,
    /// `--add-host`, `--shm-size`, `--ulimit`: what every RUN gets.
    pub run_options: crate::engine::RunOptions,
    pub publish: PublishRequest,
}
