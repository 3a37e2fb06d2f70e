//! The Docker engine through bollard: containers, commits, archives, image load.
//! Nothing here knows about Dockerfiles.

/// The network RUN steps see (`--network`, `RUN --network=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The engine's default network for containers.
    #[default]
    Default,
    Host,
    None,
}
