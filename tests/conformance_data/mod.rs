//! Where BuildKit's parser and shell-lexer test data is (`mod conformance_data;`), for
//! tests/conformance_parser.rs and tests/conformance_shell.rs: `$IMGBUILD_CONFORMANCE_DIR`
//! (scripts/test sets it from scripts/conformance-data), else
//! `../shared/conformance/buildkit-parser` beside the crate. A directory without the data
//! fails the test that asks, saying how to get it: no test is skipped for it.

use std::path::{Path, PathBuf};

/// The files a data directory must have; the cases under positive/ and negative/ are
/// counted by the tests themselves.
const REQUIRED: [&str; 4] = [
    "positive",
    "negative",
    "shell/envVarTest",
    "shell/wordsTest",
];

/// The data directory: positive/, negative/ and shell/ as scripts/conformance-data lays
/// them out. Panics with how to get the data when it is not there.
pub fn dir() -> PathBuf {
    let (dir, from) = match std::env::var_os("IMGBUILD_CONFORMANCE_DIR") {
        Some(dir) => (PathBuf::from(dir), "IMGBUILD_CONFORMANCE_DIR"),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/buildkit-parser"),
            "the default, as IMGBUILD_CONFORMANCE_DIR is not set",
        ),
    };
    let missing: Vec<&str> = REQUIRED
        .into_iter()
        .filter(|rel| !dir.join(rel).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "BuildKit's conformance data is not at {} ({from}): no {}. scripts/test gets it \
         itself; to run this test alone, first \
         `export IMGBUILD_CONFORMANCE_DIR=\"$(scripts/conformance-data)\"` (from \
         ../shared/conformance/buildkit-parser when there, else downloaded from \
         github.com/moby/buildkit at the commit in scripts/conformance-data.sha256, sha256 \
         checked, and cached)",
        dir.display(),
        missing.join(", ")
    );
    dir
}
