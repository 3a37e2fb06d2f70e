//! `Engine::run` against the real test engine: output streaming, exit codes, the process's
//! surroundings (env, workdir, user, network, stdin, mounts), and that the containers of
//! failed runs are gone.

mod engine_common;
mod support;

use engine_common::{
    RemoveImageOnDrop, busybox, containers_with, engine, inspect_image, run_collecting, script,
    stdout_of,
};
use imgbuild::engine::{Error, ImageConfig, Mount, Network, OutputStream, RunSpec, TAIL_LINES};
use support::unique_name;

#[tokio::test]
async fn output_lines_of_both_streams_arrive_and_the_container_is_kept_for_commit() {
    let engine = engine().await;
    let spec = RunSpec::new(
        busybox(),
        [
            "sh",
            "-c",
            "echo out1; echo err1 >&2; echo out2; printf 'no newline'",
        ],
    );
    let (result, lines) = run_collecting(&engine, &spec).await;
    let container = result.expect("the command succeeds");

    let of = |wanted: OutputStream| -> Vec<&str> {
        lines
            .iter()
            .filter(|(stream, _)| *stream == wanted)
            .map(|(_, text)| text.as_str())
            .collect()
    };
    assert_eq!(of(OutputStream::Stdout), ["out1", "out2", "no newline"]);
    assert_eq!(of(OutputStream::Stderr), ["err1"]);

    let state = support::docker_ok([
        "container",
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        container.name(),
    ]);
    assert_eq!(state.trim(), "exited 0");
    let name = container.name().to_owned();
    engine.remove(container).await.expect("remove");
    assert!(!engine_common::container_exists(&name));
}

#[tokio::test]
async fn a_failing_command_reports_its_exit_code_and_last_lines_and_leaves_no_container() {
    let engine = engine().await;
    let marker = unique_name("fails");
    let spec = script(
        &busybox(),
        "for i in $(seq 1 30); do echo line $i; done; exit 7",
        &marker,
    );
    let (result, lines) = run_collecting(&engine, &spec).await;

    let Err(Error::RunFailed {
        command,
        exit_code,
        last_lines,
    }) = result
    else {
        panic!("expected RunFailed, got {result:?}");
    };
    assert_eq!(exit_code, 7);
    assert!(command.starts_with("sh -c for i in"), "{command}");
    assert_eq!(lines.len(), 30, "every line is streamed, not only the tail");
    let expected: Vec<String> = (11..=30).map(|n| format!("line {n}")).collect();
    assert_eq!(last_lines.len(), TAIL_LINES);
    assert_eq!(last_lines, expected);
    assert_eq!(containers_with(&marker), Vec::<String>::new());
}

#[tokio::test]
async fn the_tail_of_a_failure_holds_stderr_lines_too() {
    let engine = engine().await;
    let spec = RunSpec::new(busybox(), ["sh", "-c", "echo 'cannot build' >&2; exit 3"]);
    let (result, lines) = run_collecting(&engine, &spec).await;
    match result {
        Err(Error::RunFailed {
            exit_code,
            last_lines,
            ..
        }) => {
            assert_eq!(exit_code, 3);
            assert_eq!(last_lines, ["cannot build"]);
        }
        other => panic!("expected RunFailed, got {other:?}"),
    }
    assert_eq!(lines, [(OutputStream::Stderr, "cannot build".to_owned())]);
}

#[tokio::test]
async fn a_command_that_cannot_start_is_named_and_leaves_no_container() {
    let engine = engine().await;
    let missing = format!("/{}", unique_name("no-such-binary"));
    let spec = RunSpec::new(busybox(), [missing.as_str(), "arg"]);
    let (result, lines) = run_collecting(&engine, &spec).await;
    match result {
        Err(Error::StartFailed { command, message }) => {
            assert_eq!(command, format!("{missing} arg"));
            assert!(message.contains(&missing), "{message}");
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert!(lines.is_empty());
    assert_eq!(containers_with(&missing), Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_image_is_not_found() {
    let engine = engine().await;
    let image = format!("imgbuild-test/{}:missing", unique_name("none"));
    let (result, _) = run_collecting(&engine, &RunSpec::new(image.as_str(), ["true"])).await;
    match result {
        Err(Error::NotFound { what }) => assert_eq!(what, format!("image `{image}`")),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn env_workdir_and_user_are_honoured_and_the_image_env_stays() {
    let engine = engine().await;
    let image_path = inspect_image(&busybox(), "{{range .Config.Env}}{{println .}}{{end}}")
        .lines()
        .find(|entry| entry.starts_with("PATH="))
        .map(str::to_owned)
        .expect("the busybox image sets PATH");
    let mut spec = RunSpec::new(
        busybox(),
        [
            "sh",
            "-c",
            "echo \"$GREETING\"; pwd; id -u; id -g; echo \"PATH=$PATH\"",
        ],
    );
    spec.env = vec!["GREETING=hello world".into()];
    spec.workdir = "/made/by/the/engine".into();
    spec.user = "nobody".into();

    let lines = stdout_of(&engine, &spec).await;
    assert_eq!(
        lines,
        [
            "hello world",
            "/made/by/the/engine",
            "65534",
            "65534",
            image_path.as_str()
        ]
    );

    spec.user = "1234:5678".into();
    spec.argv = vec!["sh".into(), "-c".into(), "id -u; id -g".into()];
    assert_eq!(stdout_of(&engine, &spec).await, ["1234", "5678"]);
}

#[tokio::test]
async fn stdin_is_fed_whole_and_then_closed() {
    let engine = engine().await;
    let mut spec = RunSpec::new(busybox(), ["sh"]);
    spec.stdin = Some(b"echo from the script\nexit 0\n".to_vec());
    assert_eq!(stdout_of(&engine, &spec).await, ["from the script"]);

    // More than a pipe holds, from a command that also writes while reading.
    let data: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut spec = RunSpec::new(busybox(), ["sh", "-c", "tee /dev/stderr | wc -c"]);
    spec.stdin = Some(data.clone());
    let (result, lines) = run_collecting(&engine, &spec).await;
    engine
        .remove(result.expect("wc succeeds"))
        .await
        .expect("remove");
    let stdout: Vec<&str> = lines
        .iter()
        .filter(|(stream, _)| *stream == OutputStream::Stdout)
        .map(|(_, text)| text.as_str())
        .collect();
    assert_eq!(stdout, [data.len().to_string()]);
}

#[tokio::test]
async fn the_network_modes_give_the_host_network_or_only_loopback() {
    let engine = engine().await;
    let mut host_interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    host_interfaces.sort();
    assert!(
        host_interfaces.len() > 1,
        "the host has only {host_interfaces:?}"
    );

    let interfaces = |network| {
        let mut spec = RunSpec::new(busybox(), ["ls", "-1", "/sys/class/net"]);
        spec.network = network;
        spec
    };
    assert_eq!(
        stdout_of(&engine, &interfaces(Network::Host)).await,
        host_interfaces
    );
    assert_eq!(stdout_of(&engine, &interfaces(Network::None)).await, ["lo"]);
    // The test engine runs with `--bridge none`: its default network is loopback only.
    assert_eq!(
        stdout_of(&engine, &interfaces(Network::Default)).await,
        ["lo"]
    );
}

#[tokio::test]
async fn mounts_are_seen_by_the_command_and_never_committed() {
    let engine = engine().await;
    let host_dir = support::tempdir();
    std::fs::write(host_dir.path().join("input.txt"), "from the host\n").expect("write");
    let volume = unique_name("cache");
    let mounts = vec![
        Mount::Bind {
            source: host_dir.path().to_owned(),
            target: "/src".into(),
            read_only: true,
        },
        Mount::Volume {
            name: volume.clone(),
            target: "/cache".into(),
            read_only: false,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size: None,
            read_only: false,
        },
    ];
    let mut first = RunSpec::new(
        busybox(),
        [
            "sh",
            "-c",
            "cat /src/input.txt; touch /src/x 2>/dev/null || echo read-only; \
             echo kept > /cache/value; echo gone > /scratch/tmp; echo layer > /in-layer",
        ],
    );
    first.mounts = mounts.clone();
    let (result, lines) = run_collecting(&engine, &first).await;
    let container = result.expect("first run");
    let stdout: Vec<&str> = lines.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(stdout, ["from the host", "read-only"]);
    let image = engine
        .commit_and_remove(container, &ImageConfig::default())
        .await
        .expect("commit");
    let _cleanup = RemoveImageOnDrop(image.clone());

    // The volume kept its content; the committed layer has the file written outside mounts
    // and nothing written inside them.
    let mut second = RunSpec::new(
        image.as_str(),
        [
            "sh",
            "-c",
            "cat /cache/value /in-layer; echo \"scratch:$(ls -A /scratch) src:$(ls -A /src)\"",
        ],
    );
    second.mounts = vec![mounts[1].clone()];
    assert_eq!(
        stdout_of(&engine, &second).await,
        ["kept", "layer", "scratch: src:"]
    );
    let unmounted = RunSpec::new(
        image.as_str(),
        ["sh", "-c", "echo \"cache:$(ls -A /cache)\""],
    );
    assert_eq!(stdout_of(&engine, &unmounted).await, ["cache:"]);

    engine.remove_image(&image).await.expect("remove image");
    support::docker_ok(["volume", "rm", &volume]);
}

#[tokio::test]
async fn an_image_entrypoint_is_not_prepended_to_the_command() {
    let engine = engine().await;
    let container = engine
        .create(&RunSpec::new(busybox(), ["true"]))
        .await
        .expect("create");
    let config = ImageConfig {
        entrypoint: Some(vec!["/bin/false".into()]),
        ..ImageConfig::default()
    };
    let image = engine
        .commit_and_remove(container, &config)
        .await
        .expect("commit");
    let _cleanup = RemoveImageOnDrop(image.clone());
    assert_eq!(
        inspect_image(&image, "{{json .Config.Entrypoint}}"),
        r#"["/bin/false"]"#
    );

    let spec = RunSpec::new(image.as_str(), ["echo", "ran as given"]);
    assert_eq!(stdout_of(&engine, &spec).await, ["ran as given"]);
    engine.remove_image(&image).await.expect("remove image");
}
