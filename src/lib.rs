//! imgbuild builds container images from multi-stage Dockerfiles.
//!
//! The crate follows the pipeline of `DESIGN.md`:
//!
//! ```text
//! context dir ──► frontend ──► plan ──► executor ──► image ──► sink
//!  (mix: a Dockerfile                          └──► check: findings
//!   for a Mix project)
//! ```
//!
//! * [`mix`]: a Mix project without a Dockerfile → the release Dockerfile it builds with.
//! * [`frontend`]: Dockerfile text → AST (BuildKit's grammar) → typed instructions → stages.
//! * [`plan`]: which stages and steps run, and their cache keys.
//! * [`executor`]: runs the plan: pulls FROM images, runs build stages, writes the packaging
//!   stage, publishes the image.
//! * [`engine`]: the Docker engine through bollard (build stages only).
//! * [`runtime`]: the OCI runtime (runc) that runs native build steps on a mounted root.
//! * [`oci`]: deterministic layers, config, manifest, layout and archive I/O.
//! * [`registry`]: the distribution API client (pull, push, auth).
//! * [`cache`]: the content-addressed step cache.
//! * [`check`]: checks of the built image and its sources (shared libraries, Elixir
//!   release mistakes), reported as findings.
//! * [`progress`]: reporting, rendered by the binary.
//! * [`base`]: base images from Debian packages (debootstrap), no Docker Hub.
//! * [`cli`]: command-line flags turned into requests; nothing else reads clap types.

pub mod base;
pub mod cache;
pub mod check;
pub mod cli;
pub mod context;
pub mod engine;
pub mod error;
pub mod executor;
pub mod fetch;
pub mod frontend;
pub mod http;
pub mod mix;
pub mod oci;
pub mod plan;
pub mod progress;
pub mod publish;
pub mod registry;
pub mod request;
pub mod runtime;
