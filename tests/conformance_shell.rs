//! BuildKit's own shell-lexer test data (`envVarTest`, `wordsTest`), run with the harness
//! rules of `conformance/buildkit-parser/shell/FORMAT.md`.
//!
//! The data is `shell/` of `conformance_data::dir()`: `$IMGBUILD_CONFORMANCE_DIR` if set (as
//! scripts/test sets it), else `../shared/conformance/buildkit-parser` beside the crate. A
//! missing directory fails.

mod conformance_data;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use imgbuild::frontend::shell::Lexer;

/// Unix lines of envVarTest (226 `A` + 2 `U`) and test lines of wordsTest, per FORMAT.md.
const ENV_VAR_UNIX_LINES: usize = 228;
const ENV_VAR_WINDOWS_LINES: usize = 2;
const WORDS_LINES: usize = 24;

fn data_dir() -> PathBuf {
    conformance_data::dir().join("shell")
}

fn read(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn env_var_test_unix_lines() {
    let dir = data_dir();
    let text = read(&dir, "envVarTest");
    let env: BTreeMap<String, String> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lexer = Lexer::new('\\');

    let mut unix = 0;
    let mut windows = 0;
    let mut failures = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        if raw.starts_with('#') {
            continue;
        }
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [platform, source, expected] = fields[..] else {
            panic!("envVarTest:{number}: not PLATFORM|SOURCE|EXPECTED: {raw:?}");
        };
        match platform {
            "A" | "U" => unix += 1,
            "W" => {
                windows += 1;
                continue;
            }
            other => panic!("envVarTest:{number}: unknown platform {other:?}"),
        }
        let got = lexer.process_word(source, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(word), expected) => expected != "error" && word == expected,
            (Err(_), _) => false,
        };
        if !ok {
            failures.push(format!(
                "envVarTest:{number}: {source:?}: got {got:?}, want {expected:?}"
            ));
        }
    }

    assert_eq!(
        unix, ENV_VAR_UNIX_LINES,
        "number of A and U lines in envVarTest"
    );
    assert_eq!(
        windows, ENV_VAR_WINDOWS_LINES,
        "number of W lines in envVarTest"
    );
    assert!(
        failures.is_empty(),
        "{} of {unix} lines fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn words_test_lines() {
    let dir = data_dir();
    let text = read(&dir, "wordsTest");
    let lexer = Lexer::new('\\');
    // Entries accumulate; the last one for a key wins.
    let mut env: Vec<(String, String)> = Vec::new();

    let mut tests = 0;
    let mut failures = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(entry) = line.strip_prefix("ENV ") {
            let entry = entry.trim_start_matches(' ');
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            env.push((key.to_string(), value.to_string()));
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        let [input, expected] = parts[..] else {
            panic!("wordsTest:{number}: not INPUT|EXPECTED: {line:?}");
        };
        tests += 1;
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        let got = match lexer.process_words(input, &env) {
            Ok(words) => words,
            Err(_) => vec!["error".to_string()],
        };
        if got != expected {
            failures.push(format!(
                "wordsTest:{number}: {input:?}: got {got:?}, want {expected:?}"
            ));
        }
    }

    assert_eq!(tests, WORDS_LINES, "number of test lines in wordsTest");
    assert!(
        failures.is_empty(),
        "{} of {tests} lines fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
