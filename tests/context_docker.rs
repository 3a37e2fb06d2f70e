//! Conformance with docker build itself: the same context and COPY steps built by the test
//! engine's BuildKit (`FROM scratch`, one layer per COPY), each layer compared with
//! `Context::select` — paths, types, modes, symlink and hard-link targets, file contents.
//! Also the failures: a missing source and one excluded by `.dockerignore` fail in both.

#[path = "context_fixture.rs"]
mod fixture;
mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Output};

use fixture::{Fixture, select};
use imgbuild::context::{EntryKind, Selection};
use sha2::{Digest, Sha256};
use support::{DOCKER_CLI, docker, docker_ok, env, unique_name};

/// COPY steps, each with its own destination so that one layer holds one step's files.
const STEPS: &[(&[&str], &str)] = &[
    (&["a.txt"], "/c01/"),
    (&["a.txt"], "/c02/renamed.txt"),
    (&["dir"], "/c03"),
    (&["."], "/c04/"),
    (&["*.txt"], "/c05/"),
    (&["nomatch*", "a.txt"], "/c06/"),
    (&["link-to-a"], "/c07/"),
    (&["link-to-dir"], "/c08"),
    (&["dir/*/f*"], "/c09/"),
    (&["a.txt", "dir/sub"], "/c10/"),
    (&["keep.log"], "/c11/"),
    (&["build"], "/c12/"),
    (&["d?r/sub/run.sh"], "/c13/run"),
    (&["nomatch*", "dir/nothing-*"], "/c14/"),
];

fn fixture() -> Fixture {
    let f = Fixture::new();
    f.file(
        ".dockerignore",
        "*.log\n!keep.log\nbuild\n!build/keep\n",
        0o644,
    )
    .file("a.txt", "a\n", 0o644)
    .file("b.txt", "b\n", 0o644)
    .file(".hidden.txt", "hidden\n", 0o644)
    .file("debug.log", "excluded\n", 0o644)
    .file("keep.log", "kept\n", 0o644)
    .file("build/out.o", "excluded\n", 0o644)
    .file("build/keep/k.txt", "re-included\n", 0o644)
    .file("dir/top.txt", "top\n", 0o644)
    .file("dir/sub/file.txt", "sub\n", 0o644)
    .file("dir/sub/run.sh", "#!/bin/sh\necho hi\n", 0o755)
    .file("dir/other/fx", "fx\n", 0o644)
    .dir("dir/empty", 0o755)
    .symlink("dir/rel-link", "../a.txt")
    .symlink("dir/abs-link", "/etc/passwd")
    .hardlink("dir/sub/hard.txt", "dir/sub/file.txt")
    .symlink("link-to-a", "a.txt")
    .symlink("link-to-dir", "dir/sub");
    // Directories as a umask of 022 leaves them, whatever this process's umask is.
    for dir in ["build", "build/keep", "dir", "dir/sub", "dir/other"] {
        f.dir(dir, 0o755);
    }
    f
}

/// What a layer (or a selection) holds at one path: `dir 755`, `file 644 sha256:…`,
/// `symlink 777 -> target`, `hardlink -> path`.
type Tree = BTreeMap<String, String>;

fn build(f: &Fixture, dockerfile: &str, tag: &str) -> Output {
    std::fs::write(f.outside().join("Dockerfile"), dockerfile).unwrap();
    Command::new(DOCKER_CLI)
        .env("DOCKER_HOST", &env().docker_host)
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", "--no-cache", "-q", "-t", tag, "-f"])
        .arg(f.outside().join("Dockerfile"))
        .arg(f.root())
        .output()
        .expect("run docker build")
}

fn copy_line(sources: &[&str], dest: &str) -> String {
    format!("COPY {} {dest}\n", sources.join(" "))
}

/// The layers of an image, in order, read from `docker save`.
fn layers(tag: &str, dir: &std::path::Path) -> Vec<Tree> {
    let archive = dir.join("image.tar");
    docker_ok(["save", "-o", archive.to_str().unwrap(), tag]);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut outer = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.insert(path, bytes);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer_tree(&files[layer.as_str().unwrap()]))
        .collect()
}

fn layer_tree(bytes: &[u8]) -> Tree {
    let mut tree = Tree::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = format!(
            "/{}",
            entry
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
        );
        let mode = entry.header().mode().unwrap() & 0o7777;
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let kind = entry.header().entry_type();
        let description = if kind.is_dir() {
            format!("dir {mode:o}")
        } else if kind.is_symlink() {
            format!("symlink {mode:o} -> {}", link.unwrap())
        } else if kind.is_hard_link() {
            format!("hardlink -> /{}", link.unwrap())
        } else {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            format!("file {mode:o} {}", hash(&content))
        };
        tree.insert(path, description);
    }
    tree
}

fn selection_tree(selection: &Selection) -> Tree {
    selection
        .entries
        .iter()
        .map(|e| {
            let description = match &e.kind {
                EntryKind::Dir => format!("dir {:o}", e.mode),
                EntryKind::File { .. } => {
                    format!(
                        "file {:o} {}",
                        e.mode,
                        hash(&std::fs::read(&e.source).unwrap())
                    )
                }
                // Copied as an empty file, as BuildKit does.
                EntryKind::Socket => format!("file {:o} {}", e.mode, hash(b"")),
                EntryKind::Symlink { target } => format!("symlink {:o} -> {target}", e.mode),
                EntryKind::Hardlink { target } => format!("hardlink -> {target}"),
                EntryKind::Archive => "archive".to_owned(),
            };
            (e.target.clone(), description)
        })
        .collect()
}

fn hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The directories above `dest` that BuildKit creates when missing (imgbuild leaves them
/// to the layer writer), so not part of a selection.
fn parents_of(dest: &str) -> Vec<String> {
    let clean = dest.trim_end_matches('/');
    let mut parents = Vec::new();
    let mut path = String::new();
    let components: Vec<&str> = clean.split('/').filter(|c| !c.is_empty()).collect();
    for component in components.iter().take(components.len().saturating_sub(1)) {
        path.push('/');
        path.push_str(component);
        parents.push(path.clone());
    }
    parents
}

#[test]
fn selections_match_what_docker_build_copies() {
    let f = fixture();
    let ctx = f.context();
    let mut dockerfile = String::from("FROM scratch\n");
    for (sources, dest) in STEPS {
        dockerfile.push_str(&copy_line(sources, dest));
    }
    let tag = unique_name("context-conformance");
    let output = build(&f, &dockerfile, &tag);
    assert!(
        output.status.success(),
        "docker build failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let layers = layers(&tag, &f.outside());
    docker(["rmi", "-f", &tag]);
    assert_eq!(layers.len(), STEPS.len(), "one layer per COPY");

    for ((sources, dest), mut layer) in STEPS.iter().zip(layers) {
        for parent in parents_of(dest) {
            layer.remove(&parent);
        }
        let selection = select(&ctx, sources, dest).unwrap();
        assert_eq!(
            selection_tree(&selection),
            layer,
            "COPY {} {dest}",
            sources.join(" ")
        );
    }
}

#[test]
fn missing_and_excluded_sources_fail_in_both() {
    let f = fixture();
    let ctx = f.context();
    for source in ["missing.txt", "debug.log", "build/out.o"] {
        let tag = unique_name("context-failure");
        let output = build(&f, &format!("FROM scratch\nCOPY {source} /x/\n"), &tag);
        assert!(
            !output.status.success(),
            "docker build copied {source}: the fixture is wrong"
        );
        docker(["rmi", "-f", &tag]);
        let error = select(&ctx, &[source], "/x/").unwrap_err();
        assert!(imgbuild::cli::is_input_error(&error), "{error:#}");
    }
}
