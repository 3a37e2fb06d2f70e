//! The Bearer token flow against a real `docker-registry` in `auth: token` mode, with a
//! token server from the test suite (RS256 JWTs signed by openssl, trusted by the registry
//! through its rootcertbundle).

mod registry_support;

use imgbuild::oci::Platform;
use imgbuild::registry::RegistryOptions;
use imgbuild::registry::{BlobStore, Client, Credentials, NoProgress, with_causes};
use registry_support::image::{TestImage, layer};
use registry_support::proxy::Proxy;
use registry_support::registry::{Auth, Options, TestRegistry};
use registry_support::token::{ISSUER, SERVICE, TokenServer};
use registry_support::{reference, test_config, write_docker_config};

const USER: &str = "builder";
const PASSWORD: &str = "token-flow-password-1";
const REFRESH_TOKEN: &str = "identity-refresh-token-1";

struct Setup {
    tokens: TokenServer,
    registry: TestRegistry,
    proxy: Proxy,
    dir: tempfile::TempDir,
    store: BlobStore,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tokens =
        TokenServer::start(dir.path(), &[(USER, PASSWORD)], &[(REFRESH_TOKEN, USER)]).await;
    let registry = TestRegistry::start_with(Options {
        auth: Auth::Token {
            realm: tokens.realm(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            root_cert_bundle: tokens.cert.clone(),
        },
        tls: None,
    });
    let proxy = Proxy::start(registry.port).await;
    let store = BlobStore::open(&dir.path().join("cache")).unwrap_or_else(|e| panic!("{e}"));
    Setup {
        tokens,
        registry,
        proxy,
        dir,
        store,
    }
}

fn client_with(credentials: Credentials) -> Client {
    Client::with_config(&RegistryOptions::default(), credentials, test_config())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn config_credentials(setup: &Setup, password: &str) -> Credentials {
    let config_dir = tempfile::tempdir_in(setup.dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .keep();
    std::fs::create_dir_all(&config_dir).unwrap_or_else(|e| panic!("{e}"));
    let path = write_docker_config(&config_dir, &[(&setup.proxy.host(), USER, password)]);
    Credentials::from_config_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_with_tokens_from_config_json_credentials() {
    let setup = setup().await;
    let client = client_with(config_credentials(&setup, PASSWORD));
    let base = vec![layer("tok-base", 150 << 10)];
    let first = TestImage::oci(
        "tok1",
        [base.clone(), vec![layer("tok-a", 4 << 10)]].concat(),
    );
    let tag = reference(&format!("{}/team/base:1", setup.proxy.host()));
    let digest = client
        .push(
            &first,
            std::slice::from_ref(&tag),
            &setup.store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    assert_eq!(digest, first.digest());
    // One token for the whole push, with push and pull on the repository, fetched with
    // the user's credentials; every registry request after it carried it.
    let requests = setup.tokens.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].scopes, vec!["repository:team/base:pull,push"]);
    assert_eq!(requests[0].user.as_deref(), Some(USER));
    assert_eq!(setup.registry.tags("team/base"), vec!["1"]);

    // A second repository: the token also asks for pull on the repository mounted from.
    let second = TestImage::oci("tok2", [base, vec![layer("tok-b", 4 << 10)]].concat());
    let report = client
        .push_with_report(
            &second,
            &[reference(&format!("{}/team/app:1", setup.proxy.host()))],
            &setup.store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    assert_eq!(report.mounted, 1, "{report:?}");
    let last = setup
        .tokens
        .requests()
        .pop()
        .map(|r| r.scopes)
        .unwrap_or_default();
    assert_eq!(
        last,
        vec!["repository:team/app:pull,push", "repository:team/base:pull"]
    );

    // Pull it back into another store with a fresh client: a pull-only token.
    let pull_store =
        BlobStore::open(&setup.dir.path().join("cache2")).unwrap_or_else(|e| panic!("{e}"));
    let pulled = client_with(config_credentials(&setup, PASSWORD))
        .pull(&tag, &Platform::default(), &pull_store, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    assert_eq!(pulled.manifest_digest(), &first.digest());
    let last = setup
        .tokens
        .requests()
        .pop()
        .map(|r| r.scopes)
        .unwrap_or_default();
    assert_eq!(last, vec!["repository:team/base:pull"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_with_insufficient_scope_gets_a_fresh_token() {
    let setup = setup().await;
    let client = client_with(config_credentials(&setup, PASSWORD));
    // The first token grants only pull: the registry refuses the upload with 401.
    setup.tokens.make_next_tokens_stingy(1);
    let image = TestImage::oci("stingy", vec![layer("stingy", 4 << 10)]);
    client
        .push(
            &image,
            &[reference(&format!("{}/team/app:1", setup.proxy.host()))],
            &setup.store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    assert_eq!(
        setup.tokens.requests().len(),
        2,
        "{:?}",
        setup.tokens.requests()
    );
    assert!(
        setup
            .proxy
            .requests()
            .iter()
            .any(|r| r.status == 401 && r.method != "GET")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_tokens_use_the_oauth2_refresh_grant() {
    let setup = setup().await;
    let config_dir = setup.dir.path().join("identity");
    std::fs::create_dir_all(&config_dir).unwrap_or_else(|e| panic!("{e}"));
    let path = config_dir.join("config.json");
    std::fs::write(
        &path,
        serde_json::json!({"auths": {setup.proxy.host(): {"identitytoken": REFRESH_TOKEN}}})
            .to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let client =
        client_with(Credentials::from_config_file(&path).unwrap_or_else(|e| panic!("{e}")));
    let image = TestImage::oci("identity", vec![layer("identity", 4 << 10)]);
    client
        .push(
            &image,
            &[reference(&format!("{}/team/app:1", setup.proxy.host()))],
            &setup.store,
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", with_causes(&e)));
    let requests = setup.tokens.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].user.as_deref()),
        ("POST", Some(USER))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_name_registry_scope_and_sources_and_never_the_password() {
    let setup = setup().await;
    let image = TestImage::oci("denied", vec![layer("denied", 4 << 10)]);
    let tag = reference(&format!("{}/team/app:1", setup.proxy.host()));

    // Wrong password: the token service refuses it.
    let wrong = "wrong-password-do-not-print";
    let credentials = config_credentials(&setup, wrong);
    let err = client_with(credentials.clone())
        .push(
            &image,
            std::slice::from_ref(&tag),
            &setup.store,
            &NoProgress,
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("a wrong password was accepted"));
    let shown = format!("{}\n{err:?}\n{credentials:?}", with_causes(&err));
    assert!(!shown.contains(wrong), "{shown}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "authentication to {} failed for scope `repository:team/app:pull,push`: \
             the token service {} refused the credentials of user `{USER}` (401 Unauthorized)",
            setup.proxy.host(),
            setup.tokens.realm()
        )),
        "{message}"
    );
    assert!(
        message.contains("credentials were looked for in `"),
        "{message}"
    );
    assert!(message.contains("config.json` (auths)"), "{message}");

    // No credentials: the anonymous token grants nothing, the registry refuses.
    let err = client_with(Credentials::anonymous())
        .push(
            &image,
            std::slice::from_ref(&tag),
            &setup.store,
            &NoProgress,
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with(&format!(
            "authentication to {} failed for scope `repository:team/app:pull,push`: \
             the registry requires credentials and none were found",
            setup.proxy.host()
        )),
        "{err}"
    );
    assert!(err.contains("no Docker config"), "{err}");
    assert!(setup.registry.tags("team/app").is_empty());
}
