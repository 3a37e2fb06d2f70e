//! No container outlives imgbuild, against the real test engine: a real run in another
//! process (`examples/engine_run.rs`, built by these tests through cargo) is interrupted with
//! SIGINT or SIGTERM and must remove its container and exit 130/143; one killed with SIGKILL
//! leaves its container, which the next `reap_leftovers` removes while the containers of live
//! processes stay. `remove_all` removes what an engine handle still has.

mod engine_common;
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use engine_common::{busybox, container_exists, containers_with, engine};
use imgbuild::engine::RunSpec;
use rustix::process::{Pid, Signal, kill_process};
use support::unique_name;

/// `target/…/examples/engine_run`, built now: `cargo test --test engine_cleanup` alone does
/// not build examples, and a stale binary would test old code.
fn example_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--example", "engine_run", "--message-format=json"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        let output = cargo
            .output()
            .expect("run cargo build --example engine_run");
        assert!(
            output.status.success(),
            "cargo build --example engine_run failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|message| message["target"]["name"] == "engine_run")
            .find_map(|message| message["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported the engine_run executable")
    })
}

/// A run of `sh -c 'echo ready; sleep 600' MARKER` in a child process, once its command
/// printed `ready` (so its container exists and runs).
struct RunningChild {
    child: Child,
    marker: String,
}

impl RunningChild {
    fn start(prefix: &str) -> RunningChild {
        let marker = unique_name(prefix);
        let mut child = Command::new(example_binary())
            .args([
                busybox().as_str(),
                "sh",
                "-c",
                "echo ready; exec sleep 600",
                &marker,
            ])
            .env("DOCKER_HOST", &support::env().docker_host)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn engine_run");
        let pid = child.id();
        // A child that never prints `ready` must not hang the test.
        let watchdog = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(120));
            pid
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut first_line = String::new();
        BufReader::new(stdout)
            .read_line(&mut first_line)
            .expect("read the child's stdout");
        if first_line.trim() != "ready" {
            let _ = child.kill();
            let output = child.wait_with_output().expect("child output");
            panic!(
                "engine_run printed {first_line:?} instead of `ready`; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        drop(watchdog);
        RunningChild { child, marker }
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(Pid::from_raw)
            .expect("child pid");
        kill_process(pid, signal).expect("signal the child");
    }

    /// Waits (at most 60 s) for the child to exit; returns its exit code and stderr.
    fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("engine_run did not exit within 60 s of the signal");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = self.child.wait_with_output().expect("child output");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

fn interrupted_run_leaves_nothing(signal: Signal, expected_exit: i32) {
    let child = RunningChild::start("interrupt");
    let marker = child.marker.clone();
    assert_eq!(
        containers_with(&marker).len(),
        1,
        "the run's container runs"
    );

    child.signal(signal);
    let (code, stderr) = child.wait();

    assert_eq!(code, Some(expected_exit), "stderr:\n{stderr}");
    assert_eq!(containers_with(&marker), Vec::<String>::new());
}

#[test]
fn sigint_removes_the_running_container_and_exits_130() {
    interrupted_run_leaves_nothing(Signal::INT, 130);
}

#[test]
fn sigterm_removes_the_running_container_and_exits_143() {
    interrupted_run_leaves_nothing(Signal::TERM, 143);
}

#[tokio::test]
async fn a_killed_run_leaves_a_container_that_the_next_reap_removes_but_live_ones_stay() {
    let engine = engine().await;
    let live = RunningChild::start("reap-live");
    let mut killed = RunningChild::start("reap-killed");
    killed.child.kill().expect("SIGKILL");
    killed.child.wait().expect("reap the child process");
    let leftover = containers_with(&killed.marker);
    assert_eq!(leftover.len(), 1, "SIGKILL leaves the container behind");

    engine.reap_leftovers().await.expect("reap");

    // Not `reaped == 1`: a test in another process may reap the same leftover first. Only
    // `reap_leftovers` removes containers of dead processes, so either way it did.
    assert!(!container_exists(&leftover[0]), "the leftover is gone");
    assert_eq!(
        containers_with(&live.marker).len(),
        1,
        "a live process's container stays"
    );
    live.signal(Signal::TERM);
    let (code, stderr) = live.wait();
    assert_eq!(code, Some(143), "stderr:\n{stderr}");
}

#[tokio::test]
async fn remove_all_removes_what_a_handle_created_and_did_not_remove() {
    let engine = engine().await;
    let other_handle = engine.clone();
    let spec = RunSpec::new(busybox(), ["never-started"]);
    let first = engine.create(&spec).await.expect("create");
    let second = other_handle.create(&spec).await.expect("create");
    let removed_before = engine.create(&spec).await.expect("create");
    let names = [first.name().to_owned(), second.name().to_owned()];
    engine.remove(removed_before).await.expect("remove");
    // Dropped without removal, as an error path would.
    drop((first, second));

    assert_eq!(engine.remove_all().await.expect("remove all"), 2);
    for name in &names {
        assert!(!container_exists(name), "{name} is gone");
    }
    assert_eq!(engine.remove_all().await.expect("nothing left"), 0);
}
