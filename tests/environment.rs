//! Proves the environment every other integration test relies on: the engine
//! runs containers (CLI and API), the registry takes pushes and deletes, and
//! `scripts/test-env` starts from nothing, is idempotent and stops only what
//! it started.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use support::{
    TestEnv, docker, docker_ok, env, free_port, parse_exports, registry_url, unique_name,
};

#[test]
fn engine_runs_a_container_on_the_host_network() {
    let output = docker_ok([
        "run",
        "--rm",
        "--network",
        "host",
        &env().busybox_image,
        "echo",
        "hello",
    ]);
    assert_eq!(output, "hello\n");
}

#[tokio::test]
async fn engine_api_answers_through_bollard() {
    let engine = Docker::connect_with_host(&env().docker_host)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", env().docker_host));

    // Two independent clients (bollard, Debian's CLI) must see the same daemon.
    let version = engine.version().await.expect("GET /version");
    let cli_version = docker_ok(["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(version.version.as_deref(), Some(cli_version.trim()));

    let name = unique_name("bollard");
    let body = ContainerCreateBody {
        image: Some(env().busybox_image.clone()),
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            "echo from-bollard; exit 3".into(),
        ]),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = engine
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .expect("create container");
    engine
        .start_container(&created.id, None)
        .await
        .expect("start container");

    let waited: Vec<_> = engine.wait_container(&created.id, None).collect().await;
    let exit_code = match waited.as_slice() {
        [Err(bollard::errors::Error::DockerContainerWaitError { code, .. })] => *code,
        [Ok(response)] => response.status_code,
        other => panic!("unexpected wait result: {other:?}"),
    };

    let logs: Vec<_> = engine
        .logs(
            &created.id,
            Some(LogsOptionsBuilder::default().stdout(true).build()),
        )
        .collect()
        .await;
    let logs: String = logs
        .into_iter()
        .map(|chunk| chunk.expect("container logs").to_string())
        .collect();

    engine
        .remove_container(
            &created.id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .expect("remove container");
    let gone = docker(["container", "inspect", &name]);

    assert_eq!(exit_code, 3);
    assert_eq!(logs, "from-bollard\n");
    assert!(
        !gone.status.success(),
        "container {name} still exists after remove"
    );
}

#[tokio::test]
async fn registry_answers_the_distribution_api() {
    let response = imgbuild::http::client_builder()
        .build()
        .unwrap()
        .get(registry_url("/v2/"))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let api_version = response.headers().get("Docker-Distribution-Api-Version");
    assert_eq!(
        api_version.and_then(|v| v.to_str().ok()),
        Some("registry/2.0")
    );
}

/// The engine pushes to the registry over plain HTTP, skopeo reads the same
/// manifest back, and deletes are enabled (tests clean up what they push).
#[tokio::test]
async fn registry_takes_a_push_from_the_engine_and_a_delete() {
    let repository = unique_name("push");
    let reference = format!("{}/{repository}:latest", env().registry);
    docker_ok(["tag", &env().busybox_image, &reference]);
    docker_ok(["push", &reference]);
    let repo_digests = docker_ok([
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &reference,
    ]);
    docker_ok(["rmi", &reference]);

    let manifest_url = registry_url(&format!("/v2/{repository}/manifests/latest"));
    let client = imgbuild::http::client_builder().build().unwrap();
    let head = client
        .head(&manifest_url)
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .expect("HEAD manifest");
    assert_eq!(head.status(), reqwest::StatusCode::OK);
    let digest = head
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .expect("Docker-Content-Digest header")
        .to_owned();
    assert!(
        repo_digests.contains(&format!("{repository}@{digest}")),
        "the engine recorded {repo_digests} after pushing, the registry serves {digest}"
    );

    let skopeo = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("run skopeo");
    assert!(
        skopeo.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&skopeo.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&skopeo.stdout).trim(), digest);

    let delete_url = registry_url(&format!("/v2/{repository}/manifests/{digest}"));
    let deleted = client
        .delete(&delete_url)
        .send()
        .await
        .expect("DELETE manifest");
    assert_eq!(deleted.status(), reqwest::StatusCode::ACCEPTED);
    let after = client
        .head(&manifest_url)
        .send()
        .await
        .expect("HEAD manifest after delete");
    assert_eq!(after.status(), reqwest::StatusCode::NOT_FOUND);
}

#[test]
fn second_test_env_call_is_fast_and_prints_the_same_exports() {
    let expected = env();
    let started = Instant::now();
    let exports = support::run_test_env_script();
    let elapsed = started.elapsed();

    assert!(
        elapsed < Duration::from_secs(5),
        "a call with everything up took {elapsed:?}"
    );
    assert_eq!(
        TestEnv::from_vars(|name| exports.get(name).cloned()).as_ref(),
        Some(expected)
    );
    assert_eq!(exports.get("DOCKER_HOST"), Some(&expected.docker_host));
}

/// The cold path CI takes, in a state dir and registry port of its own (its
/// own dockerd beside the shared one): start, start again, stop. Its daemons
/// must not hold the script's stdout open, or `output()` would never return.
#[test]
fn test_env_starts_from_nothing_and_stops_only_what_it_started() {
    let state = support::tempdir();
    let state_dir = state.path().join("env");
    let port = free_port();
    let run = |arg: &str| run_script_isolated(&state_dir, port, arg);

    let started = Instant::now();
    let first = run("start");
    let cold = started.elapsed();
    let first = exports_of(&first);
    let second = exports_of(&run("start"));
    assert_eq!(first, second, "a second call must print the same exports");

    let own_socket = format!("unix://{}/docker.sock", state_dir.display());
    let engine = first
        .get("IMGBUILD_TEST_DOCKER_HOST")
        .cloned()
        .unwrap_or_default();
    // A system engine that answers is used rather than starting a private one.
    let system_engine = Path::new("/var/run/docker.sock").exists() && engine != own_socket;
    if !system_engine {
        assert_eq!(engine, own_socket, "started in {cold:?}");
    }
    assert_eq!(
        first.get("IMGBUILD_TEST_REGISTRY"),
        Some(&format!("127.0.0.1:{port}"))
    );
    let image = first
        .get("IMGBUILD_TEST_BUSYBOX_IMAGE")
        .cloned()
        .unwrap_or_default();
    let inspect = docker_at(&engine, ["image", "inspect", &image]);
    assert!(inspect.status.success(), "{image} missing in {engine}");

    let stop = run("stop");
    assert!(
        stop.status.success(),
        "stop failed: {}",
        String::from_utf8_lossy(&stop.stderr)
    );

    let registry_down = std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
    assert!(
        registry_down,
        "the private registry still listens on {port} after stop"
    );
    if !system_engine {
        let version = docker_at(&engine, ["version", "--format", "{{.Server.Version}}"]);
        assert!(
            !version.status.success(),
            "the private engine still answers after stop"
        );
    }
    // The shared environment is untouched.
    docker_ok(["image", "inspect", &env().busybox_image]);
}

#[test]
fn export_lines_parse_into_keys_and_values() {
    let exports = parse_exports(
        "export DOCKER_HOST=unix:///s/docker.sock\nexport IMGBUILD_TEST_REGISTRY=127.0.0.1:5000\n",
    )
    .expect("valid exports");
    assert_eq!(
        exports.get("DOCKER_HOST").map(String::as_str),
        Some("unix:///s/docker.sock")
    );
    assert_eq!(
        exports.get("IMGBUILD_TEST_REGISTRY").map(String::as_str),
        Some("127.0.0.1:5000")
    );
    assert_eq!(exports.len(), 2);
}

#[test]
fn export_parsing_rejects_other_lines() {
    assert!(parse_exports("test-env: starting dockerd\n").is_err());
    assert!(parse_exports("export =value\n").is_err());
    assert!(parse_exports("export NOVALUE\n").is_err());
}

fn run_script_isolated(state_dir: &Path, registry_port: u16, arg: &str) -> Output {
    let mut command = Command::new(support::test_env_script());
    command
        .arg(arg)
        .env("IMGBUILD_TEST_ENV_DIR", state_dir)
        .env("IMGBUILD_TEST_REGISTRY_PORT", registry_port.to_string())
        // Otherwise the script would reuse the shared engine.
        .env_remove("DOCKER_HOST");
    command.output().expect("run scripts/test-env")
}

fn exports_of(output: &Output) -> HashMap<String, String> {
    assert!(
        output.status.success(),
        "scripts/test-env failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_exports(&String::from_utf8_lossy(&output.stdout)).expect("export lines")
}

fn docker_at<const N: usize>(host: &str, args: [&str; N]) -> Output {
    Command::new(support::DOCKER_CLI)
        .args(args)
        .env("DOCKER_HOST", host)
        .output()
        .expect("run docker")
}
