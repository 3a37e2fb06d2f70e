//! BuildKit's own parser test cases (conformance/buildkit-parser): every positive case must
//! dump byte for byte as its `result`, every negative case must be rejected.
//!
//! The data is found by `conformance_data::dir()`: `$IMGBUILD_CONFORMANCE_DIR` if set (as
//! scripts/test sets it), else `../shared/conformance/buildkit-parser` beside the crate.

mod conformance_data;

use std::path::{Path, PathBuf};

use imgbuild::frontend::parser::parse;

const POSITIVE_CASES: usize = 33;
const NEGATIVE_CASES: usize = 4;

/// The case directories under `dir/kind`, sorted by name.
fn cases(kind: &str) -> Vec<PathBuf> {
    let dir = conformance_data::dir().join(kind);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut cases: Vec<PathBuf> = entries
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path()
        })
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    cases
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn name(case: &Path) -> String {
    case.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Where two dumps first differ, readably.
fn first_difference(got: &str, want: &str) -> String {
    let got_lines: Vec<&str> = got.split('\n').collect();
    let want_lines: Vec<&str> = want.split('\n').collect();
    for i in 0..got_lines.len().max(want_lines.len()) {
        let (g, w) = (got_lines.get(i), want_lines.get(i));
        if g != w {
            return format!(
                "first difference at line {}:\n    got:  {}\n    want: {}",
                i + 1,
                g.map_or("<end of output>".to_string(), |l| format!("{l:?}")),
                w.map_or("<end of output>".to_string(), |l| format!("{l:?}")),
            );
        }
    }
    "outputs differ only in their final newline".into()
}

#[test]
fn positive_cases_dump_exactly_as_buildkit() {
    let cases = cases("positive");
    let mut failures = Vec::new();
    for case in &cases {
        let dockerfile = read(&case.join("Dockerfile"));
        let want = String::from_utf8(read(&case.join("result")))
            .unwrap_or_else(|e| panic!("{}/result is not UTF-8: {e}", case.display()));
        match parse(&dockerfile) {
            Ok(ast) => {
                let got = ast.dump();
                if got != want {
                    failures.push(format!("{}: {}", name(case), first_difference(&got, &want)));
                }
            }
            Err(e) => failures.push(format!("{}: rejected: {e}", name(case))),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} positive cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        cases.len(),
        POSITIVE_CASES,
        "expected {POSITIVE_CASES} positive cases; is a case missing or new?"
    );
}

#[test]
fn negative_cases_are_rejected() {
    let cases = cases("negative");
    let accepted: Vec<String> = cases
        .iter()
        .filter(|case| parse(&read(&case.join("Dockerfile"))).is_ok())
        .map(|case| name(case))
        .collect();
    assert!(accepted.is_empty(), "negative cases accepted: {accepted:?}");
    assert_eq!(
        cases.len(),
        NEGATIVE_CASES,
        "expected {NEGATIVE_CASES} negative cases; is a case missing or new?"
    );
}

#[test]
fn negative_cases_fail_with_buildkit_messages() {
    let dir = conformance_data::dir().join("negative");
    for (case, line, message) in [
        ("empty_dockerfile", 0, "file with no instructions"),
        ("only_comments", 0, "file with no instructions"),
        ("env_no_value", 3, "ENV must have two arguments"),
        (
            "shykes-nested-json",
            1,
            "when using JSON array syntax, arrays must be comprised of strings only",
        ),
    ] {
        let error = parse(&read(&dir.join(case).join("Dockerfile")))
            .expect_err("negative case must be rejected");
        assert_eq!(
            (error.line, error.message.as_str()),
            (line, message),
            "{case}"
        );
    }
}
