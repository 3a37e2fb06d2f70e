//! Support for the registry client's integration tests (`mod registry_support;`): a real
//! `docker-registry` per test (own port, own temp dir, killed on drop), small test images
//! behind the `Image` trait, a counting and fault-injecting HTTP proxy, a JWT token server,
//! and a self-signed CA made with openssl.

#![allow(dead_code)]

pub mod image;
pub mod proxy;
pub mod registry;
pub mod tls;
pub mod token;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
        .port()
}

/// Runs a command, panicking with its output when it fails.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes a Docker `config.json` with these `auths` entries (`registry → (user, password)`).
pub fn write_docker_config(dir: &Path, entries: &[(&str, &str, &str)]) -> std::path::PathBuf {
    use base64::Engine;
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(registry, user, password)| {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            ((*registry).to_owned(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::json!({ "auths": auths }).to_string())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Client tuning for tests: quick retries, and small upload thresholds so chunked uploads
/// happen with small images.
pub fn test_config() -> imgbuild::registry::ClientConfig {
    imgbuild::registry::ClientConfig {
        retry: imgbuild::registry::RetryPolicy {
            max_attempts: 4,
            initial_backoff: std::time::Duration::from_millis(50),
            max_backoff: std::time::Duration::from_millis(200),
            max_retry_after: std::time::Duration::from_secs(5),
        },
        monolithic_upload_max: 256 << 10,
        chunk_size: 128 << 10,
        extra_ca_file: None,
        ..imgbuild::registry::ClientConfig::default()
    }
}

/// An anonymous client with the test tuning.
pub fn client(options: &imgbuild::registry::RegistryOptions) -> imgbuild::registry::Client {
    imgbuild::registry::Client::with_config(
        options,
        imgbuild::registry::Credentials::anonymous(),
        test_config(),
    )
    .unwrap_or_else(|e| panic!("client: {e}"))
}

pub fn reference(s: &str) -> imgbuild::registry::Reference {
    imgbuild::registry::Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// `skopeo inspect --raw`: the manifest bytes the registry serves for a reference.
pub fn skopeo_raw_manifest(reference: &str, extra: &[&str]) -> Vec<u8> {
    let output = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run skopeo (apt-get install skopeo): {e}"));
    assert!(
        output.status.success(),
        "skopeo inspect {reference} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
