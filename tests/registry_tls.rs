//! A registry with htpasswd (Basic) auth over TLS, its certificate signed by a CA the test
//! makes with openssl and hands to the client through `SSL_CERT_FILE`.
//!
//! One test in this binary, on purpose: it sets `SSL_CERT_FILE` for the process, which is
//! only sound while no other test thread reads the environment.

mod registry_support;

use std::process::Command;

use imgbuild::registry::RegistryOptions;
use imgbuild::registry::blob_store::digest_of;
use imgbuild::registry::{BlobStore, Client, ClientConfig, Credentials, NoProgress, with_causes};
use registry_support::image::{TestImage, layer};
use registry_support::registry::{Auth, Options, TestRegistry};
use registry_support::tls::make_certs;
use registry_support::{reference, run, write_docker_config};

const USER: &str = "pusher";
const PASSWORD: &str = "s3cret-tls-password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_over_tls_with_a_ca_from_ssl_cert_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let certs = make_certs(dir.path());
    let registry = TestRegistry::start_with(Options {
        auth: Auth::Htpasswd(vec![(USER.into(), PASSWORD.into())]),
        tls: Some((certs.server_cert.clone(), certs.server_key.clone())),
    });
    let host = registry.host();
    let store = BlobStore::open(&dir.path().join("cache")).unwrap_or_else(|e| panic!("{e}"));
    let image = TestImage::oci("tls", vec![layer("tls", 300 << 10)]);
    let tag = reference(&format!("{host}/secure/app:1"));
    let good_config = dir.path().join("good");
    std::fs::create_dir_all(&good_config).unwrap_or_else(|e| panic!("{e}"));
    let good = write_docker_config(&good_config, &[(&host, USER, PASSWORD)]);

    // Without the CA the certificate is not trusted: TLS is really verified, even on the
    // loopback, and the plain-HTTP fallback does not hide the TLS error.
    let untrusted = Client::with_config(
        &RegistryOptions::default(),
        Credentials::from_config_file(&good).unwrap_or_else(|e| panic!("{e}")),
        ClientConfig::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let message = untrusted
        .push(&image, std::slice::from_ref(&tag), &store, &NoProgress)
        .await
        .err()
        .map(|e| with_causes(&e))
        .unwrap_or_default();
    assert!(
        message.contains(&format!("over HTTPS: GET https://{host}/v2/")),
        "{message}"
    );
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    assert!(
        message.contains(&format!("--insecure-registry {host}")),
        "{message}"
    );

    // --insecure-registry: TLS without verification.
    let insecure = Client::with_config(
        &RegistryOptions {
            insecure: vec![host.clone()],
            ..RegistryOptions::default()
        },
        Credentials::from_config_file(&good).unwrap_or_else(|e| panic!("{e}")),
        ClientConfig::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let insecure_image = TestImage::oci("tls-insecure", vec![layer("tls-insecure", 4 << 10)]);
    insecure
        .push(
            &insecure_image,
            &[reference(&format!("{host}/secure/insecure:1"))],
            &store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    assert_eq!(registry.tags("secure/insecure"), vec!["1"]);

    // SAFETY: the only test in this binary; no other thread reads the environment now.
    unsafe { std::env::set_var("SSL_CERT_FILE", &certs.ca_cert) };

    let client = Client::new(
        &RegistryOptions::default(),
        Credentials::from_config_file(&good).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let digest = client
        .push(&image, std::slice::from_ref(&tag), &store, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    assert_eq!(digest, image.digest());
    let served = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--creds", &format!("{USER}:{PASSWORD}")])
        .arg("--cert-dir")
        .arg(skopeo_cert_dir(
            &dir.path().join("skopeo-certs"),
            &certs.ca_cert,
        ))
        .arg(format!("docker://{host}/secure/app:1")));
    assert_eq!(digest_of(served.as_bytes()), digest);

    // Wrong password: a clear error, and the password is nowhere to be seen.
    let wrong_password = "wrong-tls-password-never-shown";
    let bad_config = dir.path().join("bad");
    std::fs::create_dir_all(&bad_config).unwrap_or_else(|e| panic!("{e}"));
    let bad = write_docker_config(&bad_config, &[(&host, USER, wrong_password)]);
    let credentials = Credentials::from_config_file(&bad).unwrap_or_else(|e| panic!("{e}"));
    let bad_client = Client::new(&RegistryOptions::default(), credentials.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    let other = TestImage::oci("tls-denied", vec![layer("tls-denied", 4 << 10)]);
    let err = bad_client
        .push(
            &other,
            &[reference(&format!("{host}/secure/denied:1"))],
            &store,
            &NoProgress,
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("a wrong password was accepted"));
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "authentication to {host} failed for scope `repository:secure/denied:pull,push`: \
             the registry rejected the password of user `{USER}`"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "credentials were looked for in `{}` (auths)",
            bad.display()
        )),
        "{message}"
    );
    for shown in [
        message.clone(),
        with_causes(&err),
        format!("{err:?}"),
        format!("{credentials:?}"),
        format!("{bad_client:?}"),
        format!("{:?}", credentials.lookup(&host)),
    ] {
        assert!(!shown.contains(wrong_password), "{shown}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
    assert!(registry.tags("secure/denied").is_empty());
}

/// A directory with `ca` as `ca.crt`: skopeo's --cert-dir layout.
fn skopeo_cert_dir(dir: &std::path::Path, ca: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(ca, dir.join("ca.crt")).unwrap_or_else(|e| panic!("{e}"));
    dir.to_owned()
}
