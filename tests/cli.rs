//! The command line as users meet it: exit status, error text, and no panic whatever the
//! input (binary junk, huge files, invalid UTF-8, a directory given as the Dockerfile).

mod support;

use std::path::Path;
use std::process::{Command, Output};

fn imgbuild(args: &[&str], dir: &Path) -> Output {
    Command::new(support::imgbuild_bin())
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("imgbuild runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit 2, an `error:` line, and none of the signs of a panic.
fn assert_input_error(out: &Output, what: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
    assert!(stderr.starts_with("error: "), "{what}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{what}: {stderr}"
    );
    stderr
}

#[test]
fn debug_parse_prints_buildkits_dump() {
    let dir = support::tempdir();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM a AS b\nRUN [\"x\", \"y\"]\nENV k=v\n",
    )
    .unwrap();
    let out = imgbuild(&["debug", "parse", "Dockerfile"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "(from \"a\" \"AS\" \"b\")\n(run \"x\" \"y\")\n(env \"k\" \"v\" \"=\")\n"
    );
}

#[test]
fn hostile_dockerfiles_are_input_errors_not_panics() {
    let dir = support::tempdir();
    let mut junk = Vec::new();
    let mut x: u32 = 12345;
    for _ in 0..200_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        junk.push((x >> 16) as u8);
    }
    let mut big = Vec::new();
    while big.len() < 10 * 1024 * 1024 {
        big.extend_from_slice(b"RUN echo \xff\xfe invalid utf-8 \\\n  and a continuation\n");
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("junk", junk),
        ("nul bytes", b"FROM a\0b\nRUN \0\0\0\n".to_vec()),
        ("invalid utf-8 only", b"\xff\xfe\xfd\n\x80\n".to_vec()),
        ("ten megabytes without FROM", big),
        (
            "one long line",
            [b"FROM a\nRUN ".as_slice(), &vec![b'x'; 200_000]].concat(),
        ),
        (
            "unterminated heredoc",
            b"FROM a\nRUN <<EOF\necho\n".to_vec(),
        ),
        (
            "invalid utf-8 in a RUN",
            b"FROM a\nRUN echo \xff\n".to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let file = dir.path().join("Dockerfile");
        std::fs::write(&file, &bytes).unwrap();
        // `debug parse` accepts what BuildKit accepts (invalid UTF-8 included); whatever it
        // refuses must be a clean input error.
        let out = imgbuild(&["debug", "parse", "Dockerfile"], dir.path());
        if out.status.code() != Some(0) {
            assert_input_error(&out, what);
        }
        // A build refuses all of these before touching an engine.
        let out = imgbuild(&["build", "--progress", "plain", "."], dir.path());
        assert_input_error(&out, what);
    }
}

#[test]
fn missing_and_directory_dockerfiles_say_what_to_do() {
    let dir = support::tempdir();
    let out = imgbuild(&["."], dir.path());
    let stderr = assert_input_error(&out, "missing Dockerfile");
    assert!(
        stderr.contains("./Dockerfile: cannot read the Dockerfile: no such file"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");

    std::fs::create_dir(dir.path().join("Dockerfile")).unwrap();
    let out = imgbuild(&["debug", "parse", "Dockerfile"], dir.path());
    let stderr = assert_input_error(&out, "directory");
    assert!(
        stderr.contains("Dockerfile: is a directory, not a Dockerfile"),
        "{stderr}"
    );
}

#[test]
fn dockerfile_errors_are_located() {
    let dir = support::tempdir();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM a AS build\nRUN make\n\nRUNN make\n",
    )
    .unwrap();
    let out = imgbuild(&["."], dir.path());
    let stderr = assert_input_error(&out, "unknown instruction");
    assert!(
        stderr
            .starts_with("error: ./Dockerfile:4:1: unknown instruction: RUNN (did you mean RUN?)"),
        "{stderr}"
    );

    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM a AS build\nFROM b AS app\nCOPY --from=buld /x /x\n",
    )
    .unwrap();
    let out = imgbuild(&["."], dir.path());
    let stderr = assert_input_error(&out, "typo in --from");
    assert!(stderr.contains("./Dockerfile:3:1: COPY --from=buld: no stage or image named `buld` (did you mean `build`?)"), "{stderr}");
    assert!(stderr.contains("hint: stages are: build, app"), "{stderr}");

    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\nCOPY --from=one /y /y\n",
    )
    .unwrap();
    let out = imgbuild(&["."], dir.path());
    let stderr = assert_input_error(&out, "cycle");
    assert!(
        stderr.contains("circular dependency between stages"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_name_the_flag() {
    let dir = support::tempdir();
    for (args, flag) in [
        (vec!["--output", "type=tarball", "."], "--output"),
        (vec!["--network", "bridge", "."], "--network"),
        (vec!["--progress", "fancy", "."], "--progress"),
        (vec!["--push", "."], "--push"),
    ] {
        let out = imgbuild(&args, dir.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

/// docker build refuses `-t My/App` before it builds anything; so does imgbuild (it used to
/// build the whole image and fail at the engine load).
#[test]
fn a_bad_tag_is_refused_before_anything_runs() {
    let dir = support::tempdir();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch-not-pulled\nRUN true\n",
    )
    .unwrap();
    for (tag, why) in [
        ("My/App:latest", "must be lowercase"),
        ("app:bad tag", "--tag"),
        ("app::1", "--tag"),
    ] {
        let out = imgbuild(
            &["--progress", "plain", "-t", "app:ok", "-t", tag, "."],
            dir.path(),
        );
        let stderr = assert_input_error(&out, tag);
        assert!(stderr.contains(why), "{tag}: {stderr}");
        assert!(stderr.contains(tag), "{tag}: {stderr}");
        // No step started: the plain progress shows none, and the FROM was not pulled.
        assert!(!stderr.contains("#1 "), "{tag}: {stderr}");
        assert!(!stderr.contains("scratch-not-pulled"), "{tag}: {stderr}");
    }
}

const USAGE_BEGIN: &str =
    "<!-- usage: generated from `imgbuild -h` and `imgbuild build -h` by scripts/readme-usage -->";
const USAGE_END: &str = "<!-- end of usage -->";

/// README's Usage block is the help output itself, so the two cannot drift. With
/// `IMGBUILD_UPDATE_README=1` (`scripts/readme-usage`) the test writes the block instead.
#[test]
fn readme_usage_is_the_help_output() {
    let dir = support::tempdir();
    let help = |args: &[&str]| {
        let out = Command::new(support::imgbuild_bin())
            .args(args)
            .env_remove("COLUMNS")
            .current_dir(dir.path())
            .output()
            .expect("imgbuild runs");
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let mut block = format!("{USAGE_BEGIN}\n\n```text\n");
    for args in [&["-h"][..], &["build", "-h"]] {
        block.push_str(&format!("$ imgbuild {}\n{}", args.join(" "), help(args)));
    }
    block.push_str(&format!("```\n\n{USAGE_END}"));

    let readme_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (start, end) = match (readme.find(USAGE_BEGIN), readme.find(USAGE_END)) {
        (Some(start), Some(end)) if start < end => (start, end + USAGE_END.len()),
        _ => panic!("README.md has no `{USAGE_BEGIN}` … `{USAGE_END}` block"),
    };
    if std::env::var_os("IMGBUILD_UPDATE_README").is_some() {
        let updated = format!("{}{block}{}", &readme[..start], &readme[end..]);
        std::fs::write(&readme_path, updated).unwrap();
        return;
    }
    assert!(
        readme[start..end] == block,
        "README.md's Usage block is not the help output; run scripts/readme-usage"
    );
}
