//! `ADD https://…` and `ADD git…` end to end: imgbuild against a real HTTP server on
//! 127.0.0.1 (a small static file server with `ETag`, `Last-Modified` and `304`s, below)
//! and a real git repository served over HTTP (git's "dumb" protocol: static files after
//! `git update-server-info`), with the real engine and registry of the test environment.

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Serves the files of a directory over HTTP/1.0, one request per connection.
struct Server {
    port: u16,
    not_modified: Arc<AtomicUsize>,
}

impl Server {
    fn start(root: PathBuf) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let not_modified = Arc::new(AtomicUsize::new(0));
        let counter = not_modified.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let root = root.clone();
                let counter = counter.clone();
                std::thread::spawn(move || serve(stream, &root, &counter));
            }
        });
        Server { port, not_modified }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

fn serve(stream: std::net::TcpStream, root: &Path, not_modified: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut if_none_match = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("if-none-match")
        {
            if_none_match = Some(v.trim().to_owned());
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    let mut out = stream;
    let file = root.join(path);
    let Ok(body) = fs::read(&file)
        .map_err(|_| ())
        .and_then(|b| if path.contains("..") { Err(()) } else { Ok(b) })
    else {
        let _ = out.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let etag = format!(
        "\"{}\"",
        body.len() as u64 * 31 + body.iter().map(|&b| b as u64).sum::<u64>()
    );
    if if_none_match.as_deref() == Some(etag.as_str()) {
        not_modified.fetch_add(1, Ordering::SeqCst);
        let _ = write!(out, "HTTP/1.0 304 Not Modified\r\nETag: {etag}\r\n\r\n");
        return;
    }
    let _ = write!(
        out,
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nLast-Modified: Thu, 04 Mar 2021 05:06:07 GMT\r\n\r\n",
        body.len()
    );
    let _ = out.write_all(&body);
}

struct Project {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Project {
    fn new(dockerfile: &str) -> Project {
        let dir = support::tempdir();
        let dockerfile = dockerfile.replace("BUSYBOX", &support::busybox_in_registry());
        fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
        Project {
            dir,
            cache: support::tempdir(),
        }
    }

    fn build(&self) -> Output {
        Command::new(support::imgbuild_bin())
            .args(["build", "--progress", "plain", "--cache-dir"])
            .arg(self.cache.path())
            .arg("--output")
            .arg(format!(
                "type=oci,dest={}",
                self.dir.path().join("out").display()
            ))
            .arg(self.dir.path())
            .env("DOCKER_HOST", &support::env().docker_host)
            .env("HOME", self.cache.path())
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .expect("imgbuild runs")
    }

    fn build_ok(&self) -> String {
        let out = self.build();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "build failed:\n{stderr}");
        stderr
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

#[test]
fn download_is_0600_with_its_last_modified_and_keyed_on_content() {
    let served = support::tempdir();
    fs::write(served.path().join("hello.txt"), "hello\n").unwrap();
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o640);
    header.set_cksum();
    archive
        .append_data(&mut header, "inner.txt", &b"inner\n"[..])
        .unwrap();
    fs::write(served.path().join("a.tar"), archive.into_inner().unwrap()).unwrap();
    let server = Server::start(served.path().to_owned());
    // A tar stays a file unless `--unpack=true` asks.
    let project = Project::new(&format!(
        "FROM BUSYBOX\nADD {hello} /d/\nADD {tar} /kept/\nADD --unpack=true {tar} /unpacked/\n\
         RUN ls -ln --full-time /d/hello.txt && cat /d/hello.txt && test -f /kept/a.tar && ls -ln /unpacked/inner.txt\n",
        hello = server.url("hello.txt"),
        tar = server.url("a.tar"),
    ));
    let first = project.build_ok();
    assert!(
        first.contains("-rw-------    1 0        0                6 2021-03-04 05:06:07"),
        "{first}"
    );
    // Unchanged: revalidated with its ETag (a 304), every step cached.
    let second = project.build_ok();
    assert!(
        first.contains("-rw-r-----    1 0        0                6"),
        "{first}"
    );
    assert!(second.contains("4 of 4 steps cached"), "{second}");
    assert_eq!(server.not_modified.load(Ordering::SeqCst), 2);
    // Changed content: the ADD misses and says which source changed.
    fs::write(served.path().join("hello.txt"), "hello again\n").unwrap();
    let third = project.build_ok();
    let miss = third
        .lines()
        .find(|l| l.contains("cache miss") && l.contains(&server.url("hello.txt")))
        .unwrap_or_else(|| panic!("no miss naming the URL:\n{third}"));
    assert!(miss.contains("changed"), "{miss}");
    assert!(third.contains("hello again"), "{third}");
}

#[test]
fn checksum_mismatch_and_missing_files_fail_located() {
    let served = support::tempdir();
    fs::write(served.path().join("f"), "data\n").unwrap();
    let server = Server::start(served.path().to_owned());
    let good = "sha256:6667b2d1aab6a00caa5aee5af8ad9f1465e567abf1c209d15727d57b3e8f6e5f";
    let bad = format!("sha256:{}", "0".repeat(64));
    let project = Project::new(&format!(
        "FROM BUSYBOX\nADD --checksum={good} {} /f\n",
        server.url("f")
    ));
    project.build_ok();
    // Pinned by its checksum, the stored copy is used without asking the server (it is gone).
    fs::remove_file(served.path().join("f")).unwrap();
    let again = project.build_ok();
    assert!(again.contains("1 of 1 steps cached"), "{again}");
    fs::write(served.path().join("f"), "data\n").unwrap();
    let cases = [
        (
            format!(
                "FROM BUSYBOX\nADD --checksum={bad} {} /f\n",
                server.url("f")
            ),
            "digest mismatch",
        ),
        (
            format!(
                "FROM BUSYBOX\nADD http://user:s3cret@127.0.0.1:{}/missing /f\n",
                server.port
            ),
            "invalid response status 404",
        ),
        (
            "FROM BUSYBOX\nADD http://127.0.0.1:9/unreachable /f\n".to_owned(),
            "failed to fetch http://127.0.0.1:9/unreachable",
        ),
    ];
    for (dockerfile, expected) in cases {
        let out = Project::new(&dockerfile).build();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(stderr.contains("Dockerfile:2"), "{stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
    // A malformed checksum is the Dockerfile's mistake: exit 2, before anything runs.
    let out = Project::new(&format!(
        "FROM BUSYBOX\nADD --checksum=sha256:abc {} /f\n",
        server.url("f")
    ))
    .build();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn git_repository_over_http() {
    let work = support::tempdir();
    let repo = work.path().join("work");
    fs::create_dir_all(repo.join("sub/deep")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    fs::write(repo.join("top.txt"), "one\n").unwrap();
    fs::write(repo.join("sub/s.txt"), "s\n").unwrap();
    fs::write(repo.join("sub/deep/d.txt"), "d\n").unwrap();
    fs::write(repo.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("top.txt", repo.join("link")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(repo.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "one"]);
    git(&repo, &["tag", "v1"]);
    fs::write(repo.join("top.txt"), "two\n").unwrap();
    git(&repo, &["commit", "-qam", "two"]);
    let served = work.path().join("served");
    fs::create_dir_all(&served).unwrap();
    git(
        work.path(),
        &["clone", "-q", "--bare", "work", "served/repo.git"],
    );
    git(&served.join("repo.git"), &["update-server-info"]);
    let server = Server::start(served);
    let url = server.url("repo.git");
    let project = Project::new(&format!(
        "FROM BUSYBOX\nADD {url}#v1 /g/\nADD --chown=7:8 {url}#main:sub /s\nADD --keep-git-dir {url}#v1 /k\n\
         RUN ls -lnR /g /s && cat /g/top.txt /s/s.txt && test ! -e /g/.git && git_head=$(cat /k/.git/HEAD) && echo head=$git_head\n"
    ));
    let out = project.build_ok();
    for expected in [
        "-rwxr-xr-x    1 0        0               10",
        "lrwxrwxrwx    1 0        0                7",
        "-rw-r--r--    1 7        8                2",
        " one\n",
        "head=",
    ] {
        assert!(out.contains(expected), "{expected:?} in:\n{out}");
    }
    assert!(!out.contains("/s/sub"), "{out}");
    let again = project.build_ok();
    assert!(again.contains("4 of 4 steps cached"), "{again}");
}
