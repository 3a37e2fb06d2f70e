//! A large context: 100,000 small files (`IMGBUILD_CONTEXT_FILES` sets another count)
//! select and digest completely and deterministically. Times go to stderr for a person
//! measuring (`/usr/bin/time -v` on this test binary gives the peak memory); they are not
//! asserted, since the machine is shared.

#[path = "context_fixture.rs"]
mod fixture;

use std::time::Instant;

use fixture::{Fixture, select};
use imgbuild::context::EntryKind;

const FILES_PER_DIR: usize = 1000;

#[test]
#[allow(clippy::print_stderr)]
fn a_hundred_thousand_files_select_and_digest() {
    let count: usize = std::env::var("IMGBUILD_CONTEXT_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // In memory when /dev/shm exists: 100,000 files created and removed on a shared
    // virtual disk take minutes, and the disk is not what this test measures.
    let f = Fixture::in_memory();
    // A realistic .dockerignore: every path is matched against it.
    f.file(".dockerignore", "**/*.tmp\n_build\n.git\n", 0o644);
    let made = Instant::now();
    let dirs = count.div_ceil(FILES_PER_DIR);
    for d in 0..dirs {
        let dir = f.path(&format!("src/d{d:04}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..FILES_PER_DIR.min(count - d * FILES_PER_DIR) {
            std::fs::write(dir.join(format!("f{i:04}.ex")), format!("file {d} {i}\n")).unwrap();
        }
    }
    eprintln!("made {count} files in {:.2?}", made.elapsed());

    let ctx = f.context();
    let started = Instant::now();
    let selection = select(&ctx, &["."], "/app/").unwrap();
    let selected = started.elapsed();
    let started = Instant::now();
    let digest = ctx.digest(&selection).unwrap();
    let digested = started.elapsed();
    eprintln!("select: {selected:.2?}, digest: {digested:.2?}");

    let files = selection
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File { .. }))
        .count();
    assert_eq!(files, count + 1, "every file and the .dockerignore");
    // /app, /app/src and one entry per directory.
    assert_eq!(selection.entries.len(), files + 2 + dirs);
    assert_eq!(digest.files.len(), files);
    assert!(digest.digest.starts_with("sha256:"));
}
