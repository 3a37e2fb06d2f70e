//! Distribution API client: references, pull, push, auth, mirrors, retries, blob store.
//!
//! ```text
//! reference ─► Client::pull ─► index? pick platform ─► manifest ─► config + layers ─► BlobStore
//!                                                                        │
//!                                                               PulledImage: oci::Image
//! &dyn oci::Image ─► Client::push ─► HEAD / mount / upload each blob ─► manifest ─► tags
//! ```
//!
//! * [`reference`](mod@reference): Docker's reference grammar and normalisation.
//! * [`challenge`]: `WWW-Authenticate` parsing (pure, fuzzable).
//! * [`credentials`]: `config.json`, credential helpers, masked secrets.
//! * `transport`: TLS roots, timeouts, retries with backoff, safe request descriptions.
//! * `client`: endpoints (HTTPS, HTTP fallback for insecure hosts, mirrors), Basic and
//!   Bearer authentication, sessions.
//! * `pull`, `push`: the two operations; [`blob_store`]: the verified local store;
//!   `follow`: reading a blob while it downloads.
//! * [`progress`]: the trait the library reports through; it never prints.

mod artifact;
pub mod blob_store;
pub mod challenge;
mod client;
pub mod credentials;
mod error;
mod follow;
pub mod manifest;
pub mod progress;
mod pull;
mod push;
pub mod reference;
mod transport;

pub use artifact::FetchedManifest;
pub use blob_store::{BlobSource, BlobStore, Collected};
pub use client::{Client, RegistryOptions};
pub use credentials::{Auth, Credentials, Secret};
pub use error::{Error, Result, with_causes};
pub use follow::{BlobFollow, FollowEnd, FollowingReader};
pub use progress::{BlobOutcome, NoProgress, Progress};
pub use pull::{PullStats, PulledImage};
pub use push::PushReport;
pub use reference::Reference;
pub use transport::{ClientConfig, RetryPolicy};
