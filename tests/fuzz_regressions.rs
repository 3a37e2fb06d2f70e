//! Inputs the fuzzers (`scripts/fuzz`, `fuzz/`) found, replayed through the same harness
//! functions the fuzz targets run, plus the committed seed corpora: a normal test run then
//! catches a regression without libFuzzer.
//!
//! A case is a file `tests/fuzz_regressions/<target>/<case>`; the case's own test below
//! states what the library must answer for it.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

/// A fuzz target's harness: panics when the input breaks a property.
type Harness = fn(&[u8]);

const TARGETS: &[(&str, Harness)] = &[
    ("dockerfile_parse", harness::dockerfile_parse),
    ("word_expansion", harness::word_expansion),
    ("dockerignore", harness::dockerignore),
    ("reference", harness::reference),
    ("www_authenticate", harness::www_authenticate),
    ("manifest_json", harness::manifest_json),
    ("tar_reader", harness::tar_reader),
    ("layer_from_tar", harness::layer_from_tar),
    ("image_archive", harness::image_archive),
    ("elf_parse", harness::elf_parse),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("listing a corpus").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn case(target: &str, name: &str) -> Vec<u8> {
    let path = repo()
        .join("tests/fuzz_regressions")
        .join(target)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs every file of `<dir>/<target>/` through its target's harness; returns how many.
fn replay(dir: &Path) -> usize {
    let mut count = 0;
    for (target, run) in TARGETS {
        for file in files(&dir.join(target)) {
            let data = std::fs::read(&file).expect("reading a corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} panics", file.display());
            count += 1;
        }
    }
    count
}

#[test]
fn every_seed_passes_its_harness() {
    let count = replay(&repo().join("fuzz/seeds"));
    assert!(count >= TARGETS.len(), "only {count} seeds found");
}

#[test]
fn every_regression_case_passes_its_harness() {
    let dir = repo().join("tests/fuzz_regressions");
    let count = replay(&dir);
    // Every case directory belongs to a target (a typo would skip its cases silently).
    for entry in std::fs::read_dir(&dir).expect("listing the cases") {
        let name = entry.expect("listing the cases").file_name();
        let name = name.to_string_lossy();
        assert!(
            TARGETS.iter().any(|(t, _)| *t == name),
            "tests/fuzz_regressions/{name} is no fuzz target"
        );
    }
    assert!(count > 0, "no regression case found");
}

/// The image_archive seeds are complete images: the fuzzer starts from inputs that reach
/// `validate_image`, not from ones rejected at the first file.
#[test]
fn image_archive_seeds_open_and_validate() {
    let platform = imgbuild::oci::Platform::linux_amd64();
    let seeds = files(&repo().join("fuzz/seeds/image_archive"));
    assert!(seeds.len() >= 4);
    for seed in seeds {
        let data = std::fs::read(&seed).expect("reading a seed");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("image.tar");
        std::fs::write(&path, harness::archive_from_files(&data)).expect("writing the archive");
        let name = seed.file_name().unwrap_or_default().to_string_lossy();
        let opened: Box<dyn imgbuild::oci::Image> = if name.starts_with("oci-layout") {
            Box::new(
                imgbuild::oci::open_oci_layout(&path, None, &platform)
                    .unwrap_or_else(|e| panic!("{name}: {e}")),
            )
        } else {
            let reference = name.ends_with("legacy").then_some("app:latest");
            Box::new(
                imgbuild::oci::open_docker_archive(&path, reference)
                    .unwrap_or_else(|e| panic!("{name}: {e}")),
            )
        };
        imgbuild::oci::validate_image(opened.as_ref()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// An extracted docker archive whose manifest.json names an absolute path, as a layer or
/// as the config: found by `image_archive`. `DirSource` joined the path to the root, which
/// replaces the root, so any host file could become a layer of a pushed image.
#[test]
fn docker_archive_directory_never_reads_absolute_paths() {
    for (name, what) in [
        ("absolute-layer-path", "layer.tar.gz"),
        ("absolute-config-path", "config.json"),
    ] {
        let data = case("image_archive", name);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).expect("creating the outside directory");
        std::fs::write(outside.join("layer.tar.gz"), b"\x1f\x8b not really").expect("writing");
        std::fs::write(outside.join("config.json"), b"{}").expect("writing");
        let root = dir.path().join("image");
        harness::image_tree_from_files(&data, &root, &outside.display().to_string())
            .expect("writing the archive directory");
        let error = match imgbuild::oci::open_docker_archive(&root, None) {
            Ok(_) => panic!("{name}: the archive opened"),
            Err(e) => e.to_string(),
        };
        let expected = format!("has no {}/{what}", outside.display());
        assert!(error.contains(&expected), "{name}: {error}");
    }
}
