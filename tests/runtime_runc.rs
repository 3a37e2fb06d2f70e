//! `imgbuild::runtime` against the real runc, as root, on a root file system made of the
//! static busybox (`/bin/busybox` and its applets) with its own `/etc/passwd` and
//! `/etc/group`. Without root or runc these tests fail, saying which is missing.
//!
//! Each test has its own runc state dir, so `list`-based checks see only its containers.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use imgbuild::engine::OutputStream;
use imgbuild::runtime::{self, Error, Mount, Network, RunSpec, Runtime, User};
use tempfile::TempDir;

const BUSYBOX: &str = "/bin/busybox";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      app:x:1000:1001:App:/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\n\
                     staff:x:50:app\n\
                     app:x:1001:\n\
                     audio:x:29:app\n";

/// The runtime, once root and runc are known to be there; otherwise the test fails here.
fn runc() -> &'static Runtime {
    static RUNC: OnceLock<Runtime> = OnceLock::new();
    RUNC.get_or_init(|| {
        assert!(
            rustix::process::geteuid().is_root(),
            "these tests run containers with runc and need root; run them as root"
        );
        let runc = runtime::find().unwrap_or_else(|err| {
            panic!("these tests need runc on PATH (Debian's runc package): {err}")
        });
        assert!(
            Path::new(BUSYBOX).is_file(),
            "these tests need a static busybox at {BUSYBOX} (Debian's busybox-static)"
        );
        runc
    })
}

/// A busybox root file system, a runc state dir and a bundle dir, all temporary.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        runc();
        let dir = tempfile::tempdir().expect("temp dir");
        let rootfs = dir.path().join("rootfs");
        make_busybox_root(&rootfs);
        Fixture { dir }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    /// A spec for `argv` in this root, with a `PATH`.
    fn spec<S: Into<String>>(&self, argv: impl IntoIterator<Item = S>) -> RunSpec {
        let mut spec = RunSpec::new(self.rootfs(), argv);
        spec.env = vec!["PATH=/bin".into()];
        spec
    }

    /// Runs `spec`; the result and every line printed, with its stream.
    async fn run(&self, spec: &RunSpec) -> (Result<(), Error>, Vec<(OutputStream, String)>) {
        let mut lines = Vec::new();
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            runc().run(&self.state_dir(), &self.bundle(), spec, &mut |line| {
                lines.push((line.stream, line.text.to_owned()))
            }),
        )
        .await
        .expect("the run ends within 60 s");
        (result, lines)
    }

    /// Runs `spec`, which must succeed; its stdout lines.
    async fn stdout(&self, spec: &RunSpec) -> Vec<String> {
        let (result, lines) = self.run(spec).await;
        result.unwrap_or_else(|err| panic!("{:?} failed: {err}\noutput: {lines:?}", spec.argv));
        lines
            .into_iter()
            .filter(|(stream, _)| *stream == OutputStream::Stdout)
            .map(|(_, text)| text)
            .collect()
    }

    async fn containers(&self) -> Vec<String> {
        runc()
            .list(&self.state_dir())
            .await
            .expect("runc list")
            .into_iter()
            .map(|c| c.id)
            .collect()
    }
}

fn make_busybox_root(rootfs: &Path) {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    let applets = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "busybox" && !applet.contains('/') {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    std::fs::write(rootfs.join("etc/passwd"), PASSWD).unwrap();
    std::fs::write(rootfs.join("etc/group"), GROUP).unwrap();
}

fn status_field<'a>(status: &'a [String], field: &str) -> Vec<&'a str> {
    status
        .iter()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status:?}"))
        .split_whitespace()
        .collect()
}

#[tokio::test]
async fn argv_env_cwd_and_user_are_the_step_s() {
    let f = Fixture::new();
    std::fs::create_dir(f.rootfs().join("work")).unwrap();
    let mut spec = f.spec(["env"]);
    spec.env = vec![
        "PATH=/bin".into(),
        "GREETING=hello world".into(),
        "EMPTY=".into(),
    ];
    spec.cwd = "/work".into();
    spec.user = User::resolve(&f.rootfs(), "app").expect("resolve app");
    assert_eq!(
        spec.user,
        User {
            uid: 1000,
            gid: 1001,
            additional_gids: vec![50, 29]
        }
    );

    let env: BTreeSet<String> = f.stdout(&spec).await.into_iter().collect();
    // Exactly the list, and HOME, which runc adds from the passwd entry when missing.
    let expected: BTreeSet<String> = [
        "PATH=/bin",
        "GREETING=hello world",
        "EMPTY=",
        "HOME=/home/app",
    ]
    .map(String::from)
    .into();
    assert_eq!(env, expected);

    spec.argv = vec!["pwd".into()];
    assert_eq!(f.stdout(&spec).await, ["/work"]);

    spec.argv = vec!["cat".into(), "/proc/self/status".into()];
    let status = f.stdout(&spec).await;
    assert_eq!(status_field(&status, "Uid"), ["1000"; 4]);
    assert_eq!(status_field(&status, "Gid"), ["1001"; 4]);
    let groups: BTreeSet<&str> = status_field(&status, "Groups").into_iter().collect();
    assert_eq!(groups, BTreeSet::from(["29", "50", "1001"]));
    // No capabilities for a user that is not root (nothing ambient).
    assert_eq!(status_field(&status, "CapEff"), ["0000000000000000"]);

    // Arguments reach the program one by one, unsplit.
    spec.argv = ["sh", "-c", "printf '[%s]' \"$@\"", "sh", "a b", "", "c"]
        .map(String::from)
        .to_vec();
    assert_eq!(f.stdout(&spec).await, ["[a b][][c]"]);
}

#[tokio::test]
async fn root_gets_docker_s_default_capabilities_and_privileged_all_of_imgbuild_s() {
    let f = Fixture::new();
    let mut spec = f.spec(["cat", "/proc/self/status"]);
    let status = f.stdout(&spec).await;
    // CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE,
    // NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP: bits 0,1,3-8,10,13,18,27,29,31.
    assert_eq!(status_field(&status, "CapEff"), ["00000000a80425fb"]);
    assert_eq!(status_field(&status, "CapBnd"), ["00000000a80425fb"]);
    assert_eq!(status_field(&status, "NoNewPrivs"), ["0"]);

    // Privileged: every capability imgbuild has (as BuildKit's insecure mode gives what
    // buildkitd has), which is more than the default.
    spec.privileged = true;
    let status = f.stdout(&spec).await;
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let ours: Vec<String> = ours.lines().map(String::from).collect();
    assert_eq!(
        status_field(&status, "CapEff"),
        status_field(&ours, "CapEff")
    );
    assert_eq!(
        status_field(&status, "CapBnd"),
        status_field(&ours, "CapBnd")
    );
    assert!(status_field(&status, "CapEff")[0] > "00000000a80425fb");
}

#[tokio::test]
async fn the_container_has_proc_dev_and_a_read_only_sys() {
    let f = Fixture::new();
    let spec = f.spec([
        "sh",
        "-c",
        "ls /dev; echo x > /dev/null && echo null-ok; head -c 4 /dev/urandom | wc -c; \
         touch /sys/x 2>/dev/null || echo sys-ro; test -e /proc/self/status && echo proc-ok; \
         cat /proc/kcore 2>/dev/null | wc -c",
    ]);
    let out = f.stdout(&spec).await;
    for device in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue",
    ] {
        assert!(out.contains(&device.to_owned()), "/dev/{device} in {out:?}");
    }
    for line in ["null-ok", "4", "sys-ro", "proc-ok"] {
        assert!(out.contains(&line.to_owned()), "{line} in {out:?}");
    }
    // Masked: reads as empty.
    assert_eq!(out.last().map(String::as_str), Some("0"), "{out:?}");
    // runc made the mount points in the root, and they stay (as in BuildKit's layers).
    for dir in ["dev", "proc", "sys"] {
        assert!(f.rootfs().join(dir).is_dir(), "/{dir}");
    }
}

#[tokio::test]
async fn a_non_zero_exit_is_reported_with_its_code_and_last_lines() {
    let f = Fixture::new();
    let spec = f.spec(["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let (result, lines) = f.run(&spec).await;
    assert!(
        lines.contains(&(OutputStream::Stdout, "out".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(OutputStream::Stderr, "err".into())),
        "{lines:?}"
    );
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), Some(3), "{err}");
    let Error::RunFailed { last_lines, .. } = &err else {
        panic!("not a RunFailed: {err:?}");
    };
    let mut sorted = last_lines.clone();
    sorted.sort();
    assert_eq!(sorted, ["err", "out"]);
    assert!(
        err.to_string()
            .starts_with("`sh -c echo out; echo err >&2; exit 3` failed with exit code 3"),
        "{err}"
    );

    assert_eq!(
        f.containers().await,
        Vec::<String>::new(),
        "runc deleted them"
    );
}

#[tokio::test]
async fn output_streams_while_the_command_runs() {
    let f = Fixture::new();
    let signal = f.dir.path().join("signal");
    std::fs::create_dir(&signal).unwrap();
    let mut spec = f.spec([
        "sh",
        "-c",
        "echo first; while [ ! -e /signal/go ]; do sleep 0.05; done; echo second",
    ]);
    spec.mounts = vec![Mount::Bind {
        source: signal.clone(),
        target: "/signal".into(),
        read_only: false,
    }];
    let mut seen = Vec::new();
    // The command only finishes once the first line has reached us.
    tokio::time::timeout(
        Duration::from_secs(30),
        runc().run(&f.state_dir(), &f.bundle(), &spec, &mut |line| {
            if line.text == "first" {
                std::fs::write(signal.join("go"), "").unwrap();
            }
            seen.push(line.text.to_owned());
        }),
    )
    .await
    .expect("the first line arrived before the command ended")
    .unwrap();
    assert_eq!(seen, ["first", "second"]);
}

#[tokio::test]
async fn stdin_is_fed_then_closed() {
    let f = Fixture::new();
    let mut spec = f.spec(["sh", "-c", "cat; echo end"]);
    spec.stdin = Some(b"line one\nline two\n".to_vec());
    assert_eq!(f.stdout(&spec).await, ["line one", "line two", "end"]);
    // Without stdin: end of file at once.
    spec.stdin = None;
    assert_eq!(f.stdout(&spec).await, ["end"]);
}

#[tokio::test]
async fn what_runc_cannot_start_is_reported_with_its_message() {
    let f = Fixture::new();
    let (result, _) = f.run(&f.spec(["no-such-program"])).await;
    match result.unwrap_err() {
        Error::StartFailed { command, message } => {
            assert_eq!(command, "no-such-program");
            assert!(message.contains("executable file not found"), "{message}");
            assert!(!message.starts_with("runc run failed"), "{message}");
        }
        err => panic!("not a StartFailed: {err:?}"),
    }

    std::fs::write(f.rootfs().join("afile"), "x").unwrap();
    let mut spec = f.spec(["true"]);
    spec.cwd = "/afile".into();
    match f.run(&spec).await.0.unwrap_err() {
        Error::StartFailed { message, .. } => {
            assert!(message.contains("not a directory"), "{message}")
        }
        err => panic!("not a StartFailed: {err:?}"),
    }
    assert_eq!(f.containers().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_working_directory_is_created_for_the_user_as_buildkit_does() {
    let f = Fixture::new();
    let mut spec = f.spec(["sh", "-c", "pwd; touch mine"]);
    spec.cwd = "/srv/app/src".into();
    spec.user = User::resolve(&f.rootfs(), "app").unwrap();
    assert_eq!(f.stdout(&spec).await, ["/srv/app/src"]);
    for dir in ["srv", "srv/app", "srv/app/src"] {
        let meta = std::fs::metadata(f.rootfs().join(dir)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1000, 1001), "/{dir}");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "/{dir}");
    }
    assert!(f.rootfs().join("srv/app/src/mine").is_file());
}

#[tokio::test]
async fn network_none_has_only_loopback_up_and_host_sees_the_host_s() {
    let f = Fixture::new();
    let spec = f.spec(["sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags"]);
    assert_eq!(spec.network, Network::None);
    // IFF_UP | IFF_LOOPBACK.
    assert_eq!(f.stdout(&spec).await, ["lo", "0x9"]);

    let mut host = f.spec(["ls", "/sys/class/net"]);
    host.network = Network::Host;
    let inside: BTreeSet<String> = f.stdout(&host).await.into_iter().collect();
    let outside: BTreeSet<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(inside, outside);
    assert!(
        inside.len() > 1,
        "the host has more than loopback: {inside:?}"
    );
}

#[tokio::test]
async fn hosts_resolv_conf_and_hostname_and_their_stubs_are_removed() {
    let f = Fixture::new();
    let mut spec = f.spec([
        "sh",
        "-c",
        "hostname; cat /etc/hosts; echo --; cat /etc/resolv.conf; echo x >> /etc/hosts || echo hosts-ro",
    ]);
    spec.hostname = "box".into();
    spec.resolv_conf = Some("nameserver 192.0.2.53\n".into());
    let out = f.stdout(&spec).await;
    assert_eq!(
        out,
        [
            "box",
            "127.0.0.1\tlocalhost box",
            "::1\tlocalhost ip6-localhost ip6-loopback",
            "--",
            "nameserver 192.0.2.53",
            "hosts-ro"
        ]
    );
    // The root had neither file: the empty mount points runc made are gone again.
    assert!(!f.rootfs().join("etc/hosts").exists());
    assert!(!f.rootfs().join("etc/resolv.conf").exists());

    // An image's own files are only covered, never touched.
    std::fs::write(f.rootfs().join("etc/hosts"), "image's hosts\n").unwrap();
    let mut host = f.spec(["cat", "/etc/hosts", "/etc/resolv.conf"]);
    host.network = Network::Host;
    host.hosts = Some("10.1.2.3 custom\n".into());
    let mut expected = vec!["10.1.2.3 custom".to_owned()];
    expected.extend(
        std::fs::read_to_string("/etc/resolv.conf")
            .unwrap_or_default()
            .lines()
            .map(String::from),
    );
    assert_eq!(f.stdout(&host).await, expected, "the host's resolv.conf");
    assert_eq!(
        std::fs::read_to_string(f.rootfs().join("etc/hosts")).unwrap(),
        "image's hosts\n"
    );
}

#[tokio::test]
async fn tmpfs_runs_programs_and_read_only_binds_refuse_writes() {
    let f = Fixture::new();
    let host_dir = f.dir.path().join("shared");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("given"), "from the host\n").unwrap();
    let mut spec = f.spec([
        "sh",
        "-c",
        "printf '#!/bin/sh\\necho ran from tmpfs\\n' > /scratch/x && chmod +x /scratch/x \
         && /scratch/x; cat /ro/given; echo changed > /ro/given || echo ro-refused; \
         echo written > /rw/new",
    ]);
    spec.mounts = vec![
        Mount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
            read_only: false,
        },
        Mount::Bind {
            source: host_dir.clone(),
            target: "/ro".into(),
            read_only: true,
        },
        Mount::Bind {
            source: host_dir.clone(),
            target: "/rw".into(),
            read_only: false,
        },
    ];
    assert_eq!(
        f.stdout(&spec).await,
        ["ran from tmpfs", "from the host", "ro-refused"]
    );
    assert_eq!(
        std::fs::read_to_string(host_dir.join("given")).unwrap(),
        "from the host\n"
    );
    assert_eq!(
        std::fs::read_to_string(host_dir.join("new")).unwrap(),
        "written\n"
    );
    // Nothing of the tmpfs reached the root; its mount point (a directory) stays.
    assert_eq!(
        std::fs::read_dir(f.rootfs().join("scratch"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn an_overlay_root_keeps_the_command_s_changes_in_its_upper_directory() {
    let f = Fixture::new();
    let dirs = f.dir.path();
    for dir in ["upper", "work", "merged"] {
        std::fs::create_dir(dirs.join(dir)).unwrap();
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        f.rootfs().display(),
        dirs.join("upper").display(),
        dirs.join("work").display()
    );
    rustix::mount::mount(
        "overlay",
        dirs.join("merged"),
        "overlay",
        rustix::mount::MountFlags::empty(),
        Some(std::ffi::CString::new(options).unwrap().as_c_str()),
    )
    .expect("mount overlay");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
    let _unmount = Unmount(dirs.join("merged"));

    let mut spec = f.spec(["sh", "-c", "echo made > /made && rm /bin/true"]);
    spec.rootfs = dirs.join("merged");
    f.stdout(&spec).await;

    assert_eq!(
        std::fs::read_to_string(dirs.join("upper/made")).unwrap(),
        "made\n"
    );
    assert!(
        f.rootfs().join("bin/true").exists(),
        "the lower layer is untouched"
    );
    assert!(!dirs.join("merged/bin/true").exists());
    assert!(
        !dirs.join("upper/etc/hosts").exists(),
        "no mount-point stub left"
    );
}

#[tokio::test]
async fn dropping_a_run_kills_and_deletes_its_container() {
    let f = Fixture::new();
    let spec = f.spec(["sh", "-c", "echo started; exec sleep 600"]);
    let started = Mutex::new(false);
    let mut output = |line: imgbuild::engine::OutputLine<'_>| {
        if line.text == "started" {
            *started.lock().unwrap() = true;
        }
    };
    // Boxed, so that `drop` below drops the future itself.
    let (state_dir, bundle) = (f.state_dir(), f.bundle());
    let mut run = Box::pin(runc().run(&state_dir, &bundle, &spec, &mut output));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !*started.lock().unwrap() {
        assert!(Instant::now() < deadline, "the command did not start");
        tokio::select! {
            result = &mut run => panic!("the run ended: {result:?}"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    assert_eq!(f.containers().await.len(), 1, "the container runs");

    drop(run);

    assert_eq!(f.containers().await, Vec::<String>::new());
}

/// `target/…/examples/runc_run`, built now: `cargo test --test runtime_runc` alone does not
/// build examples, and a stale binary would test old code.
fn example_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--example", "runc_run", "--message-format=json"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        let output = cargo.output().expect("run cargo build --example runc_run");
        assert!(
            output.status.success(),
            "cargo build --example runc_run failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|message| message["target"]["name"] == "runc_run")
            .find_map(|message| message["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported the runc_run executable")
    })
}

/// `runc_run` running `sh -c 'echo ready; exec sleep 600'` in the fixture's root and state
/// dir, once it printed `ready` (so its container runs).
fn start_child(f: &Fixture) -> std::process::Child {
    let mut child = Command::new(example_binary())
        .arg(f.state_dir())
        .arg(f.rootfs())
        .args(["sh", "-c", "echo ready; exec sleep 600"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn runc_run");
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut first_line)
        .expect("read the child's stdout");
    if first_line.trim() != "ready" {
        let _ = child.kill();
        let output = child.wait_with_output().expect("child output");
        panic!(
            "runc_run printed {first_line:?} instead of `ready`; stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    child
}

#[tokio::test]
async fn cleanup_stale_deletes_what_a_killed_process_left_and_keeps_live_ones() {
    let f = Fixture::new();
    let mut live = start_child(&f);
    let mut killed = start_child(&f);
    let both = f.containers().await;
    assert_eq!(both.len(), 2, "{both:?}");
    let killed_id = both
        .iter()
        .find(|id| id.contains(&format!("-{}-", killed.id())))
        .expect("a container id carries its process's pid")
        .clone();

    killed.kill().expect("SIGKILL");
    killed.wait().expect("reap the killed process");
    // Its runc (a process group of its own) and container outlive it.
    let left = runc().list(&f.state_dir()).await.unwrap();
    let leftover = left
        .iter()
        .find(|c| c.id == killed_id)
        .expect("left behind");
    assert_eq!(leftover.status, "running");
    let container_pid = leftover.pid;

    let deleted = runc().cleanup_stale(&f.state_dir()).await.expect("cleanup");

    assert_eq!(deleted, 1);
    let remaining = f.containers().await;
    assert_eq!(remaining.len(), 1, "{remaining:?}");
    assert_ne!(
        remaining[0], killed_id,
        "the live process's container stays"
    );
    // Its process is gone (once its parent, the orphaned runc, has reaped it).
    let pid = rustix::process::Pid::from_raw(i32::try_from(container_pid).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rustix::process::test_kill_process(pid) != Err(rustix::io::Errno::SRCH) {
        assert!(
            Instant::now() < deadline,
            "the leftover's process {pid:?} still exists"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(runc().cleanup_stale(&f.state_dir()).await.unwrap(), 0);

    live.kill().expect("SIGKILL");
    live.wait().unwrap();
    assert_eq!(runc().cleanup_stale(&f.state_dir()).await.unwrap(), 1);
    assert_eq!(f.containers().await, Vec::<String>::new());
}
