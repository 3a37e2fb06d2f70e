//! scripts/conformance-data, the way a lone clone gets BuildKit's parser and shell data:
//! a download from a local HTTP server laid out like raw.githubusercontent.com (the files
//! come from the data the other conformance tests read), the sha256 check that refuses a
//! wrong file, the cache that a second call reuses without the network, and the order of
//! the sources (IMGBUILD_CONFORMANCE_DIR, then ../shared, then the download).

mod conformance_data;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One line of `scripts/conformance-data --list`.
struct Entry {
    upstream: String,
    local: String,
}

/// The pinned commit (from the manifest) and the files, as the script lists them.
fn manifest() -> (String, Vec<Entry>) {
    let text = fs::read_to_string(repo().join("scripts/conformance-data.sha256")).unwrap();
    let commit = text
        .lines()
        .find_map(|l| l.strip_prefix("commit "))
        .expect("a commit line in the manifest")
        .to_owned();
    let out = Command::new(repo().join("scripts/conformance-data"))
        .arg("--list")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: Vec<Entry> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let [_, upstream, local] = fields[..] else {
                panic!("--list line {line:?}")
            };
            Entry {
                upstream: upstream.into(),
                local: local.into(),
            }
        })
        .collect();
    // 33 positive cases with two files, 4 negative, 2 shell files, LICENSE.
    assert_eq!(entries.len(), 33 * 2 + 4 + 2 + 1);
    (commit, entries)
}

/// A GET-only HTTP server on 127.0.0.1 for the files under `root`, recording the paths
/// asked for. It lives as long as the test process.
struct Server {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(root: PathBuf) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &root, &seen);
            }
        });
        Server { url, requests }
    }

    /// The paths asked for since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

fn serve(stream: TcpStream, root: &Path, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = request.split(' ').nth(1).unwrap_or("").to_owned();
    seen.lock().unwrap().push(path.clone());
    let file = root.join(path.trim_start_matches('/'));
    let (status, body) = match fs::read(&file) {
        Ok(body) if !path.contains("..") => ("200 OK", body),
        _ => ("404 Not Found", b"not found\n".to_vec()),
    };
    let mut stream = &stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(&body);
}

/// A directory laid out like raw.githubusercontent.com: moby/buildkit/COMMIT/PATH, with
/// the files of the data the conformance tests read.
fn served_tree(commit: &str, entries: &[Entry]) -> tempfile::TempDir {
    let source = conformance_data::dir();
    let root = tempfile::tempdir().unwrap();
    for entry in entries {
        let dest = root
            .path()
            .join("moby/buildkit")
            .join(commit)
            .join(&entry.upstream);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(source.join(&entry.local), &dest).unwrap();
    }
    root
}

fn upstream_url_path(commit: &str, entry: &Entry) -> String {
    format!("/moby/buildkit/{commit}/{}", entry.upstream)
}

/// Runs `script` with the cache under `cache` and the server as the base URL.
fn run(script: &Path, args: &[&str], cache: &Path, server: &Server) -> Output {
    Command::new(script)
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .env("IMGBUILD_CONFORMANCE_URL", &server.url)
        .env_remove("IMGBUILD_CONFORMANCE_DIR")
        .output()
        .unwrap()
}

fn script() -> PathBuf {
    repo().join("scripts/conformance-data")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stdout of a successful run (the data directory) and its single stderr line.
fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "scripts/conformance-data failed ({}):\n{stderr}",
        out.status
    );
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
    (stdout.trim_end().to_owned(), stderr)
}

#[test]
fn a_download_is_checked_cached_and_reused_without_the_network() {
    let (commit, entries) = manifest();
    let tree = served_tree(&commit, &entries);
    let server = Server::start(tree.path().to_path_buf());
    let cache = tempfile::tempdir().unwrap();
    let want_dir = cache.path().join("imgbuild/conformance").join(&commit);

    let (dir, said) = ok(&run(&script(), &["--fetch"], cache.path(), &server));
    assert_eq!(dir, want_dir.display().to_string());
    assert!(
        said.contains(&format!(
            "downloaded from {}/moby/buildkit/{commit} into the cache {dir} (73 files, sha256 checked)",
            server.url
        )),
        "{said}"
    );
    let asked: BTreeSet<String> = server.take().into_iter().collect();
    let want: BTreeSet<String> = entries
        .iter()
        .map(|e| upstream_url_path(&commit, e))
        .collect();
    assert_eq!(asked, want);
    let source = conformance_data::dir();
    for entry in &entries {
        assert_eq!(
            fs::read(want_dir.join(&entry.local)).unwrap(),
            fs::read(source.join(&entry.local)).unwrap(),
            "{}",
            entry.local
        );
    }

    // Again: the cache, checked, and not one request.
    let (again, said) = ok(&run(&script(), &["--fetch"], cache.path(), &server));
    assert_eq!(again, dir);
    assert!(
        said.contains(&format!("from the cache {dir} (73 files, sha256 checked)")),
        "{said}"
    );
    assert_eq!(server.take(), Vec::<String>::new());

    // An altered cached file: said, and fetched again.
    let altered = want_dir.join("shell/wordsTest");
    let original = fs::read(&altered).unwrap();
    fs::write(&altered, b"hello|hello\n").unwrap();
    let out = run(&script(), &["--fetch"], cache.path(), &server);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the cache {dir} is incomplete or altered (shell/wordsTest: sha256 "
        )) && stderr.contains("fetching it again")
            && stderr.contains("downloaded from"),
        "{stderr}"
    );
    assert_eq!(server.take().len(), entries.len());
    assert_eq!(fs::read(&altered).unwrap(), original);
}

/// Nothing but the lock file in the cache root: no data dir, no leftover download.
fn assert_nothing_cached(cache: &Path) {
    let root = cache.join("imgbuild/conformance");
    let names: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [".lock"], "in {}", root.display());
}

#[test]
fn a_download_with_a_wrong_file_is_refused() {
    let (commit, entries) = manifest();
    let tree = served_tree(&commit, &entries);
    // One byte changed, the length kept.
    let file = tree
        .path()
        .join("moby/buildkit")
        .join(&commit)
        .join("frontend/dockerfile/shell/envVarTest");
    let mut bytes = fs::read(&file).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    fs::write(&file, bytes).unwrap();
    let server = Server::start(tree.path().to_path_buf());
    let cache = tempfile::tempdir().unwrap();

    let out = run(&script(), &["--fetch"], cache.path(), &server);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains(&format!(
            "error: refusing the download from {}/moby/buildkit/{commit}: shell/envVarTest: sha256 ",
            server.url
        )) && stderr.contains("nothing was cached"),
        "{stderr}"
    );
    assert_nothing_cached(cache.path());
}

#[test]
fn a_file_the_server_lacks_is_an_error_naming_it() {
    let (commit, entries) = manifest();
    let tree = served_tree(&commit, &entries);
    let lacking = entries
        .iter()
        .find(|e| e.local == "negative/env_no_value/Dockerfile")
        .unwrap();
    fs::remove_file(
        tree.path()
            .join("moby/buildkit")
            .join(&commit)
            .join(&lacking.upstream),
    )
    .unwrap();
    let server = Server::start(tree.path().to_path_buf());
    let cache = tempfile::tempdir().unwrap();

    let out = run(&script(), &["--fetch"], cache.path(), &server);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: could not download {}{} (curl exit 22",
            server.url,
            upstream_url_path(&commit, lacking)
        )) && stderr.contains("set IMGBUILD_CONFORMANCE_DIR"),
        "{stderr}"
    );
    assert_nothing_cached(cache.path());
}

#[test]
fn the_variable_then_the_shared_copy_then_the_download() {
    let (commit, entries) = manifest();
    let tree = served_tree(&commit, &entries);
    let server = Server::start(tree.path().to_path_buf());
    let cache = tempfile::tempdir().unwrap();

    // A lone clone: the script and its manifest, nothing beside it.
    let top = tempfile::tempdir().unwrap();
    let clone = top.path().join("clone");
    fs::create_dir_all(clone.join("scripts")).unwrap();
    for name in ["conformance-data", "conformance-data.sha256"] {
        fs::copy(
            repo().join("scripts").join(name),
            clone.join("scripts").join(name),
        )
        .unwrap();
    }
    let cloned_script = clone.join("scripts/conformance-data");

    let (dir, said) = ok(&run(&cloned_script, &[], cache.path(), &server));
    assert_eq!(
        dir,
        cache
            .path()
            .join("imgbuild/conformance")
            .join(&commit)
            .display()
            .to_string()
    );
    assert!(said.contains("downloaded from"), "{said}");
    assert_eq!(server.take().len(), entries.len());

    // ../shared beside the clone: used as it is, no request.
    let shared = top.path().join("shared/conformance/buildkit-parser");
    fs::create_dir_all(&shared).unwrap();
    let (dir, said) = ok(&run(&cloned_script, &[], cache.path(), &server));
    assert_eq!(dir, shared.display().to_string());
    assert_eq!(
        said,
        format!(
            "conformance data: {} (the shared copy beside this checkout, used as it is)\n",
            shared.display()
        )
    );

    // The variable wins over both.
    let out = Command::new(&cloned_script)
        .env("XDG_CACHE_HOME", cache.path())
        .env("IMGBUILD_CONFORMANCE_URL", &server.url)
        .env("IMGBUILD_CONFORMANCE_DIR", "/elsewhere/data")
        .output()
        .unwrap();
    let (dir, said) = ok(&out);
    assert_eq!(dir, "/elsewhere/data");
    assert!(said.contains("from IMGBUILD_CONFORMANCE_DIR"), "{said}");
    assert_eq!(server.take(), Vec::<String>::new());
}
