//! Engines beyond a local socket, for real: a second dockerd listening on TCP with TLS
//! (certificates made by openssl for the test run), and the test engine reached over ssh
//! (Debian's sshd on localhost with key authentication; the far side runs
//! `docker system dial-stdio`, as with the docker CLI). Builds land in those engines; a
//! wrong certificate, a refused key and an engine that goes away fail with a clear error.

#[path = "support/ssh_agent.rs"]
mod ssh_agent;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ssh_agent::SshAgent;
use support::{busybox_in_registry, docker, env, free_port, imgbuild_bin, tempdir, unique_name};

/// Runs a command that must succeed; its stdout.
fn run_ok(command: &mut Command) -> String {
    let out = command.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A certificate authority and certificates it signed, made with the openssl CLI.
struct Authority {
    dir: PathBuf,
}

impl Authority {
    fn new(dir: &Path, name: &str) -> Authority {
        std::fs::create_dir_all(dir).unwrap();
        let authority = Authority {
            dir: dir.to_owned(),
        };
        authority.key("ca-key.pem");
        run_ok(
            Command::new("openssl")
                .current_dir(dir)
                .args([
                    "req",
                    "-new",
                    "-x509",
                    "-days",
                    "2",
                    "-key",
                    "ca-key.pem",
                    "-out",
                    "ca.pem",
                    "-subj",
                ])
                .arg(format!("/CN={name}")),
        );
        authority
    }

    fn key(&self, file: &str) {
        run_ok(Command::new("openssl").current_dir(&self.dir).args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            file,
        ]));
    }

    /// `NAME-cert.pem` and `NAME-key.pem` for 127.0.0.1, for a server or a client.
    fn issue(&self, name: &str, usage: &str) {
        let key = format!("{name}-key.pem");
        self.key(&key);
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        run_ok(Command::new("openssl").current_dir(&self.dir).args([
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            "/CN=127.0.0.1",
            "-out",
            &format!("{name}.csr"),
        ]));
        run_ok(Command::new("openssl").current_dir(&self.dir).args([
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &format!("{name}-cert.pem"),
        ]));
    }

    /// A directory as `DOCKER_CERT_PATH` wants it: `ca.pem`, `cert.pem`, `key.pem`.
    fn client_dir(&self, to: &Path) -> PathBuf {
        self.issue("client", "clientAuth");
        std::fs::create_dir_all(to).unwrap();
        for (from, name) in [
            ("ca.pem", "ca.pem"),
            ("client-cert.pem", "cert.pem"),
            ("client-key.pem", "key.pem"),
        ] {
            std::fs::copy(self.dir.join(from), to.join(name)).unwrap();
        }
        to.to_owned()
    }
}

/// A dockerd of the test's own, on `tcp://127.0.0.1:PORT` with `--tlsverify`.
struct TlsEngine {
    dir: tempfile::TempDir,
    port: u16,
    daemon: Option<Child>,
    /// Client certificates the engine's CA signed, and ones another CA signed.
    client: PathBuf,
    wrong_client: PathBuf,
}

impl TlsEngine {
    fn start() -> TlsEngine {
        let dir = tempdir();
        let ca = Authority::new(&dir.path().join("ca"), "imgbuild-test-ca");
        ca.issue("server", "serverAuth");
        let client = ca.client_dir(&dir.path().join("client"));
        let other = Authority::new(&dir.path().join("other-ca"), "another-ca");
        let wrong_client = other.client_dir(&dir.path().join("wrong-client"));
        let port = free_port();
        let root = dir.path();
        let log = std::fs::File::create(root.join("dockerd.log")).unwrap();
        let daemon = Command::new("/usr/sbin/dockerd")
            .arg("--host")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--tlsverify")
            .arg("--tlscacert")
            .arg(root.join("ca/ca.pem"))
            .arg("--tlscert")
            .arg(root.join("ca/server-cert.pem"))
            .arg("--tlskey")
            .arg(root.join("ca/server-key.pem"))
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .args([
                "--storage-driver",
                "overlay2",
                "--bridge",
                "none",
                "--iptables=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        let engine = TlsEngine {
            dir,
            port,
            daemon: Some(daemon),
            client,
            wrong_client,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "the TLS engine did not answer within 60 s:\n{}",
                std::fs::read_to_string(engine.dir.path().join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        engine
    }

    fn host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The docker CLI against this engine.
    fn docker(&self, args: &[&str]) -> Output {
        Command::new(support::DOCKER_CLI)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", &self.client)
            .args(args)
            .output()
            .expect("docker runs")
    }

    /// [`build_command`] with this engine as DOCKER_HOST and `certs` as its client
    /// certificates.
    fn build(&self, certs: &Path, cache: &Path, context: &Path, args: &[&str]) -> Command {
        let mut command = build_command(cache, context, args);
        command
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", certs);
        command
    }

    /// A docker context `name` for this engine with its client certificates, made by the
    /// docker CLI itself in the configuration dir `config`.
    fn create_context(&self, config: &Path, name: &str) {
        let client = &self.client;
        let created = Command::new(support::DOCKER_CLI)
            .env("DOCKER_CONFIG", config)
            .env_remove("DOCKER_HOST")
            .args(["context", "create", name, "--docker"])
            .arg(format!(
                "host={},ca={},cert={},key={}",
                self.host(),
                client.join("ca.pem").display(),
                client.join("cert.pem").display(),
                client.join("key.pem").display()
            ))
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stderr)
        );
    }

    /// Stops the daemon (SIGKILL: what an engine that goes away looks like).
    fn kill(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }
}

impl Drop for TlsEngine {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            // SIGTERM: dockerd stops its containers and containerd.
            let _ = Command::new("kill").arg(daemon.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        // What dockerd and its containers leave mounted under their roots.
        let root = self.dir.path().display().to_string();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for point in points {
                let _ = Command::new("umount").args(["-l", point]).status();
            }
        }
        // Anything still running there (a shim of a SIGKILLed daemon) goes too.
        let _ = Command::new("pkill")
            .args(["-f", &format!("{root}/exec")])
            .status();
    }
}

/// `imgbuild build --progress plain --network host ARGS --cache-dir CACHE CONTEXT`, with
/// none of this process's engine settings: each test says which engine it builds on.
fn build_command(cache: &Path, context: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(imgbuild_bin());
    command
        .args(["build", "--progress", "plain", "--network", "host"])
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .arg(context);
    for setting in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
    ] {
        command.env_remove(setting);
    }
    command
}

/// A context whose Dockerfile builds on the test busybox image.
fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("Dockerfile"),
        dockerfile.replace("BUSYBOX", &busybox_in_registry()),
    )
    .unwrap();
    dir
}

#[test]
fn a_build_runs_on_a_tls_engine_and_a_wrong_certificate_is_refused() {
    env();
    let engine = TlsEngine::start();
    let context = context("FROM BUSYBOX\nRUN echo built on the remote engine > /where\n");
    let cache = tempdir();
    let tag = unique_name("tls-engine").to_lowercase();
    let out = engine
        .build(&engine.client, cache.path(), context.path(), &["-t", &tag])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // auto runs the steps on the remote engine, and says so.
    let note = format!(
        "executor: engine (the engine at {} (from DOCKER_HOST, TLS) is remote: the steps run there)",
        engine.host()
    );
    assert!(stderr.contains(&note), "{note:?} not in {stderr}");
    let shown = engine.docker(&["run", "--rm", &tag, "cat", "/where"]);
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout),
        "built on the remote engine\n",
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    // It is that engine's image, not the test engine's.
    assert!(!docker(["image", "inspect", tag.as_str()]).status.success());

    // The same engine as a docker context, made by the docker CLI itself, picked by
    // DOCKER_CONTEXT with DOCKER_HOST unset.
    let config = tempdir();
    engine.create_context(config.path(), "tls-test");
    let context_tag = unique_name("tls-context").to_lowercase();
    let out = build_command(cache.path(), context.path(), &["-t", &context_tag])
        .env("DOCKER_CONFIG", config.path())
        .env("DOCKER_CONTEXT", "tls-test")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} (docker context tls-test, TLS) is remote",
            engine.host()
        )),
        "{stderr}"
    );
    assert!(
        engine
            .docker(&["image", "inspect", &context_tag])
            .status
            .success(),
        "the image is not in the context's engine"
    );

    // Client certificates another CA signed: refused, clearly, and nothing is built there.
    let images_before = engine.docker(&["images", "-q"]).stdout;
    let other_tag = unique_name("tls-wrong").to_lowercase();
    let out = engine
        .build(
            &engine.wrong_client,
            cache.path(),
            context.path(),
            &["--no-cache", "-t", &other_tag],
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach the Docker engine at {}",
            engine.host()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(engine.docker(&["images", "-q"]).stdout, images_before);
}

#[test]
fn an_engine_that_goes_away_mid_build_fails_it_and_leaves_no_output() {
    env();
    let mut engine = TlsEngine::start();
    let context = context("FROM BUSYBOX\nRUN echo started && sleep 60\n");
    let cache = tempdir();
    let out_dir = tempdir();
    let layout = out_dir.path().join("image");
    let mut child = engine
        .build(
            &engine.client,
            cache.path(),
            context.path(),
            &[&format!("--output=type=oci,dest={}", layout.display())],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Until the RUN's container runs on that engine.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = engine.docker(&["ps", "-q"]).stdout;
        if !running.is_empty() {
            break;
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let out = wait_for_exit(&mut child);
            panic!(
                "the RUN never started on the engine:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    engine.kill();
    let out = wait_for_exit(&mut child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("RUN echo started && sleep 60 failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!layout.exists(), "an output was written");
}

/// Waits up to two minutes for `child` (killing it then), and collects its stderr.
fn wait_for_exit(child: &mut Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("imgbuild did not stop within two minutes after the engine went away");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_end(&mut stderr);
    }
    Output {
        status: child.wait().unwrap(),
        stdout: Vec::new(),
        stderr,
    }
}

/// Debian's sshd on 127.0.0.1:PORT, taking keys from its own authorized_keys, whose
/// `environment=` points the far side's docker CLI at the test engine.
struct SshServer {
    dir: tempfile::TempDir,
    port: u16,
    daemon: Child,
}

impl SshServer {
    fn start(authorized: &[&Path]) -> SshServer {
        let dir = tempdir();
        let root = dir.path();
        // One host key per machine, so ~/.ssh/known_hosts (where ssh adds it) stays true
        // for every port a later run picks.
        let host_key = Path::new(&env().state_dir).join("ssh_host_ed25519_key");
        if !host_key.exists() {
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(&host_key),
            );
        }
        let mut keys = String::new();
        for key in authorized {
            let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
            keys.push_str(&format!(
                "environment=\"DOCKER_HOST={}\" {public}",
                env().docker_host
            ));
        }
        std::fs::write(root.join("authorized_keys"), keys).unwrap();
        let port = free_port();
        std::fs::write(
            root.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitUserEnvironment yes\nStrictModes no\nUsePAM no\n",
                host_key.display(),
                root.join("sshd.pid").display(),
                root.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(root.join("sshd.log")).unwrap();
        let daemon = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(root.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        // The client side, as a user's ~/.ssh would have it, without touching the real one:
        // `ssh` first on PATH runs the real one with a config that knows this host's key.
        let host_public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        std::fs::write(
            root.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_public}"),
        )
        .unwrap();
        std::fs::write(
            root.join("ssh_config"),
            format!(
                "Host *\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n",
                root.join("known_hosts").display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let wrapper = root.join("bin/ssh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
                root.join("ssh_config").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let server = SshServer { dir, port, daemon };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// PATH with the test's `ssh` first.
    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

#[test]
fn a_build_runs_over_ssh_and_a_refused_key_fails_clearly() {
    env();
    // Two agents, each with a key of its own; sshd takes only the first one's.
    let (allowed_dir, refused_dir) = (tempdir(), tempdir());
    let allowed = SshAgent::start(allowed_dir.path()).unwrap();
    let refused = SshAgent::start(refused_dir.path()).unwrap();
    let server = SshServer::start(&[&allowed_dir.path().join("key")]);
    let context = context("FROM BUSYBOX\nRUN echo built over ssh > /where\n");
    let cache = tempdir();
    let host = format!("ssh://root@127.0.0.1:{}", server.port);
    let build = |agent: &SshAgent, tag: &str| -> Output {
        build_command(cache.path(), context.path(), &["-t", tag])
            .env("DOCKER_HOST", &host)
            .env("SSH_AUTH_SOCK", agent.socket())
            .env("PATH", server.path())
            .output()
            .unwrap()
    };

    let tag = unique_name("ssh-engine").to_lowercase();
    let out = build(&allowed, &tag);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\nsshd:\n{}", server.log());
    assert!(
        stderr.contains(&format!(
            "the engine at {host} (from DOCKER_HOST) is remote"
        )),
        "{stderr}"
    );
    // The far side's engine is the test engine: the image is there.
    let shown = docker(["run", "--rm", tag.as_str(), "cat", "/where"]);
    assert_eq!(String::from_utf8_lossy(&shown.stdout), "built over ssh\n");
    docker(["rmi", tag.as_str()]);

    let other = unique_name("ssh-refused").to_lowercase();
    let out = build(&refused, &other);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach the Docker engine at {host}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !docker(["image", "inspect", other.as_str()])
            .status
            .success()
    );
}

/// `--engine-for`: with two platforms, the arm64 platform's steps run on a second engine
/// (named by a docker context, the TLS engine) and the amd64 platform's on the test
/// engine; one registry cache holds both platforms' steps, and a build with a fresh local
/// cache takes every step from it.
#[test]
fn a_two_platform_build_runs_each_platform_on_its_own_engine() {
    let test_engine = env().docker_host.clone();
    let arm_engine = TlsEngine::start();
    let config = tempdir();
    arm_engine.create_context(config.path(), "arm-builder");
    let context = tempdir();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN uname -m > /machine\n",
            support::busybox_multi_in_registry()
        ),
    )
    .unwrap();
    let cache_ref = format!("{}/{}:cache", env().registry, unique_name("engines"));
    let build = |cache: &Path, dest: &Path, extra: &[&str]| {
        let output = format!("--output=type=local,dest={}", dest.display());
        let mut args = vec![
            "--executor",
            "engine",
            "--platform",
            "linux/amd64,linux/arm64",
            "--engine-for",
            "linux/arm64=arm-builder",
            output.as_str(),
        ];
        args.extend_from_slice(extra);
        let out = build_command(cache, context.path(), &args)
            .env("DOCKER_HOST", &test_engine)
            .env("DOCKER_CONFIG", config.path())
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let out_dir = tempdir();
    let first = out_dir.path().join("first");
    let cache = tempdir();
    let (status, stderr) = build(
        cache.path(),
        &first,
        &[
            "--cache-to",
            &format!("type=registry,ref={cache_ref},mode=max"),
        ],
    );
    if !support::arm64_emulation_registered() {
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("cannot run its programs"), "{stderr}");
        return;
    }
    assert!(status.success(), "{stderr}");
    let machine = |dir: &Path, platform: &str| {
        std::fs::read_to_string(dir.join(platform).join("machine")).unwrap()
    };
    assert_eq!(machine(&first, "linux_amd64"), "x86_64\n");
    assert_eq!(machine(&first, "linux_arm64"), "aarch64\n");
    // The arm64 steps ran on the arm engine: its only images are the arm64 base and the
    // step's result.
    let ids = arm_engine.docker(&["images", "-aq"]);
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(!ids.is_empty(), "nothing was built on the arm engine");
    for id in &ids {
        let arch = arm_engine.docker(&["image", "inspect", "--format", "{{.Architecture}}", id]);
        assert_eq!(
            String::from_utf8_lossy(&arch.stdout).trim(),
            "arm64",
            "{id}"
        );
    }

    // A fresh machine: both platforms' steps come from the one registry cache.
    let second = out_dir.path().join("second");
    let fresh = tempdir();
    let (status, stderr) = build(
        fresh.path(),
        &second,
        &["--cache-from", &format!("type=registry,ref={cache_ref}")],
    );
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("2 of 2 steps cached, 0 run"), "{stderr}");
    assert_eq!(machine(&second, "linux_arm64"), "aarch64\n");

    // A mount of this machine's files cannot reach the arm engine: refused before any
    // step of either platform runs (the test engine, on a unix socket, could take it).
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN --mount=type=cache,target=/cache uname -m > /machine\n",
            support::busybox_multi_in_registry()
        ),
    )
    .unwrap();
    let (status, stderr) = build(cache.path(), &out_dir.path().join("third"), &[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("RUN --mount=type=cache: the Docker engine is not on this machine"),
        "{stderr}"
    );
    assert!(!stderr.contains("] RUN --mount"), "a step ran: {stderr}");
}
