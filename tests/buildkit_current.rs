//! Behaviours BuildKit v0.8 cannot parse (heredocs, `COPY --parents/--exclude/--link`,
//! `ADD --checksum/--unpack`, `RUN --network/--security`, tmpfs `size=`), ported from
//! current BuildKit's own integration tests (moby/buildkit `frontend/dockerfile/*_test.go`). Each test names the BuildKit test it
//! comes from; its expectations are that test's assertions. Every build runs on both
//! executors, each with its own cache directory, and where it gives an image both give the
//! same digest. BuildKit's tests read the result through its local exporter; these use
//! `--output type=local` the same way.

#[path = "support/static_http.rs"]
mod static_http;
mod support;

use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXECUTORS: [&str; 2] = ["native", "engine"];

/// A build context in a temp dir, and a work dir for its caches and outputs.
struct Project {
    dir: tempfile::TempDir,
    work: tempfile::TempDir,
    /// `-f` when the Dockerfile is kept outside the context, as BuildKit's tests keep it
    /// when they give the context as a local mount of its own.
    dockerfile: Option<PathBuf>,
    builds: Cell<usize>,
}

impl Project {
    fn new(dockerfile: &str) -> Project {
        let project = Project::empty();
        project.file("Dockerfile", with_busybox(dockerfile));
        project
    }

    /// A context without the Dockerfile, which is read from the work dir (`-f`).
    fn with_dockerfile_outside(dockerfile: &str) -> Project {
        let mut project = Project::empty();
        let path = project.work.path().join("Dockerfile");
        fs::write(&path, with_busybox(dockerfile)).unwrap();
        project.dockerfile = Some(path);
        project
    }

    fn empty() -> Project {
        Project {
            dir: support::tempdir(),
            work: support::tempdir(),
            dockerfile: None,
            builds: Cell::new(0),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str, content: impl AsRef<[u8]>) -> &Project {
        let path = self.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        self
    }

    fn mode(&self, name: &str, mode: u32) -> &Project {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(self.path().join(name), fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    fn symlink(&self, target: &str, name: &str) -> &Project {
        std::os::unix::fs::symlink(target, self.path().join(name)).unwrap();
        self
    }

    /// A build with `context` (a directory or a git URL) instead of the project's.
    fn build_context(&self, executor: &str, args: &[&str], context: &str) -> Output {
        let cache = self.work.path().join(format!("cache-{executor}"));
        fs::create_dir_all(&cache).unwrap();
        let mut cmd = Command::new(support::imgbuild_bin());
        cmd.args(["build", "--progress", "plain", "--executor", executor])
            .arg("--cache-dir")
            .arg(&cache);
        if let Some(dockerfile) = &self.dockerfile {
            cmd.arg("-f").arg(dockerfile);
        }
        cmd.args(args)
            .arg(context)
            .env("DOCKER_HOST", &support::env().docker_host)
            .env("HOME", &cache)
            .env_remove("SOURCE_DATE_EPOCH");
        cmd.output().expect("imgbuild runs")
    }

    /// Builds on both executors with `--output type=local`; the two output directories,
    /// after checking that the builds succeed and give one digest.
    fn build_local(&self, args: &[&str]) -> Vec<PathBuf> {
        let context = self.path().to_str().unwrap().to_owned();
        self.build_local_context(args, &context)
    }

    fn build_local_context(&self, args: &[&str], context: &str) -> Vec<PathBuf> {
        let mut outputs = Vec::new();
        let mut digests = Vec::new();
        for executor in EXECUTORS {
            let n = self.builds.get();
            self.builds.set(n + 1);
            let dest = self.work.path().join(format!("out-{n}-{executor}"));
            let output = format!("type=local,dest={}", dest.display());
            let mut all = vec!["--output", output.as_str()];
            all.extend_from_slice(args);
            let out = self.build_context(executor, &all, context);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{executor}: imgbuild failed ({}):\n{stderr}",
                out.status
            );
            digests.push(support::summary_digest(&stderr));
            outputs.push(dest);
        }
        assert_eq!(digests[0], digests[1], "both executors give one image");
        outputs
    }

    /// Builds on both executors with `--output type=local` without comparing digests: for
    /// images that are not reproducible in BuildKit either (a kept `.git` holds an index with
    /// the checkout's stat times).
    fn build_local_unchecked(&self, args: &[&str]) -> Vec<PathBuf> {
        let context = self.path().to_str().unwrap().to_owned();
        EXECUTORS
            .iter()
            .map(|executor| self.build_local_on(executor, args, &context))
            .collect()
    }

    /// One build on `executor` with `--output type=local`, which must succeed; the output.
    fn build_local_on(&self, executor: &str, args: &[&str], context: &str) -> PathBuf {
        let n = self.builds.get();
        self.builds.set(n + 1);
        let dest = self.work.path().join(format!("out-{n}-{executor}"));
        let output = format!("type=local,dest={}", dest.display());
        let mut all = vec!["--output", output.as_str()];
        all.extend_from_slice(args);
        let out = self.build_context(executor, &all, context);
        assert!(
            out.status.success(),
            "{executor}: imgbuild failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        dest
    }

    /// Builds on both executors, which must fail; their standard errors.
    fn build_fails(&self, args: &[&str]) -> Vec<String> {
        let context = self.path().to_str().unwrap().to_owned();
        self.build_fails_context(args, &context)
    }

    fn build_fails_context(&self, args: &[&str], context: &str) -> Vec<String> {
        EXECUTORS
            .iter()
            .map(|executor| self.build_fails_on(executor, args, context))
            .collect()
    }

    /// One build on `executor`, which must fail; its standard error.
    fn build_fails_on(&self, executor: &str, args: &[&str], context: &str) -> String {
        let dest = self.work.path().join(format!("never-{executor}"));
        let output = format!("type=local,dest={}", dest.display());
        let mut all = vec!["--output", output.as_str()];
        all.extend_from_slice(args);
        let out = self.build_context(executor, &all, context);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "{executor}: the build succeeded:\n{stderr}"
        );
        stderr
    }
}

fn with_busybox(dockerfile: &str) -> String {
    dockerfile.replace("BUSYBOX", &support::busybox_in_registry())
}

/// The content of `name` under an output directory.
fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

/// Asserts each `(name, content)` under every output directory.
fn assert_files(outputs: &[PathBuf], expected: &[(&str, &str)]) {
    for dir in outputs {
        for (name, content) in expected {
            assert_eq!(&read(dir, name), content, "{name} in {}", dir.display());
        }
    }
}

/// A TCP server on 127.0.0.1 that writes `response` to each connection and closes it
/// (BuildKit's `echoserver.NewTestServer`); its port.
fn echo_server(response: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

/// testCopyHeredoc: `COPY <<EOF` writes a file named by the destination, two heredocs into
/// a directory are named after their words, and `--chmod` (777, 0644) and `--chown` apply.
/// The test busybox has no `adduser`: the user is written to /etc/passwd and /etc/group.
#[test]
fn copy_heredoc_files_with_chmod_and_chown() {
    let project = Project::new(
        r#"
FROM BUSYBOX AS build

RUN echo "user:x:1000:1000::/home/user:/bin/sh" >> /etc/passwd && echo "user:x:1000:" >> /etc/group
WORKDIR /dest

COPY <<EOF single
single file
EOF

COPY <<EOF <<EOF2 double/
first file
EOF
second file
EOF2

RUN mkdir -p /permfiles
COPY --chmod=777 <<EOF /permfiles/all
dummy content
EOF
COPY --chmod=0644 <<EOF /permfiles/rw
dummy content
EOF
COPY --chown=user:user <<EOF /permfiles/owned
dummy content
EOF
RUN stat -c "%04a" /permfiles/all >> perms && \
	stat -c "%04a" /permfiles/rw >> perms && \
	stat -c "%U:%G" /permfiles/owned >> perms

FROM scratch
COPY --from=build /dest /
"#,
    );
    let outputs = project.build_local(&[]);
    assert_files(
        &outputs,
        &[
            ("single", "single file\n"),
            ("double/EOF", "first file\n"),
            ("double/EOF2", "second file\n"),
            ("perms", "0777\n0644\nuser:user\n"),
        ],
    );
}

/// testCopyHeredocSpecialSymbols: a `COPY <<EOF` body keeps quotes; an unquoted heredoc
/// takes `\` as an escape (`\` alone goes, `\\` is `\`, `\$` is `$`), a quoted one
/// (`<<"EOF"`) keeps the body as written.
#[test]
fn copy_heredoc_escapes_only_when_unquoted() {
    let project = Project::new(
        r#"
FROM scratch

COPY <<EOF quotefile
"quotes in file"
EOF

COPY <<EOF slashfile1
\
EOF
COPY <<EOF slashfile2
\\
EOF
COPY <<EOF slashfile3
\$
EOF

COPY <<"EOF" rawslashfile1
\
EOF
COPY <<"EOF" rawslashfile2
\\
EOF
COPY <<"EOF" rawslashfile3
\$
EOF
"#,
    );
    let outputs = project.build_local(&[]);
    assert_files(
        &outputs,
        &[
            ("quotefile", "\"quotes in file\"\n"),
            ("slashfile1", "\n"),
            ("slashfile2", "\\\n"),
            ("slashfile3", "$\n"),
            ("rawslashfile1", "\\\n"),
            ("rawslashfile2", "\\\\\n"),
            ("rawslashfile3", "\\$\n"),
        ],
    );
}

/// testRunBasicHeredoc, testRunFakeHeredoc and testRunShebangHeredoc: a `RUN <<EOF` body is
/// a script for the shell (`i am` then `root`); with `SHELL ["/usr/bin/awk"]` it is an awk
/// program; a body starting with `#!/usr/bin/awk -f` runs with awk, also under `<<-EOF`, which
/// strips the leading tabs first. (The test busybox has awk at /usr/bin/awk, not /bin/awk.)
#[test]
fn run_heredoc_runs_with_the_shell_or_its_shebang() {
    let basic = Project::new(
        r#"
FROM BUSYBOX AS build

RUN <<EOF
echo "i am" >> /dest
whoami >> /dest
EOF

FROM scratch
COPY --from=build /dest /dest
"#,
    );
    assert_files(&basic.build_local(&[]), &[("dest", "i am\nroot\n")]);

    let shell = Project::new(
        r#"
FROM BUSYBOX AS build

SHELL ["/usr/bin/awk"]
RUN <<EOF
BEGIN {
	print "foo" > "/dest"
}
EOF

FROM scratch
COPY --from=build /dest /dest
"#,
    );
    assert_files(&shell.build_local(&[]), &[("dest", "foo\n")]);

    let shebang = Project::new(
        "
FROM BUSYBOX AS build

WORKDIR /dest

RUN <<EOF
#!/usr/bin/awk -f
BEGIN {
\tprint \"hello\" >> \"./out1\"
\tprint \"world\" >> \"./out1\"
}
EOF

RUN <<-EOF
\t#!/usr/bin/awk -f
\tBEGIN {
\t\tprint \"hello\" >> \"./out2\"
\t\tprint \"world\" >> \"./out2\"
\t}
EOF

FROM scratch
COPY --from=build /dest /
",
    );
    assert_files(
        &shebang.build_local(&[]),
        &[("out1", "hello\nworld\n"), ("out2", "hello\nworld\n")],
    );
}

/// testRunComplexHeredoc: heredocs piped through commands on continued lines, and
/// heredocs on other file descriptors (`3<<IN1 4<<IN2`) next to the script's own.
#[test]
fn run_heredocs_in_pipes_and_on_other_descriptors() {
    let project = Project::new(
        "
FROM BUSYBOX AS build

WORKDIR /dest

RUN cat <<EOF1 | tr '[:upper:]' '[:lower:]' > ./out1; \\
\tcat <<EOF2 | tr '[:lower:]' '[:upper:]' > ./out2
hello WORLD
EOF1
HELLO world
EOF2

RUN <<EOF 3<<IN1 4<<IN2 awk -f -
BEGIN {
\twhile ((getline line < \"/proc/self/fd/3\") > 0)
\t\tprint tolower(line) > \"./fd3\"
\twhile ((getline line < \"/proc/self/fd/4\") > 0)
\t\tprint toupper(line) > \"./fd4\"
}
EOF
hello WORLD
IN1
HELLO world
IN2

FROM scratch
COPY --from=build /dest /
",
    );
    assert_files(
        &project.build_local(&[]),
        &[
            ("out1", "hello world\n"),
            ("out2", "HELLO WORLD\n"),
            ("fd3", "hello world\n"),
            ("fd4", "HELLO WORLD\n"),
        ],
    );
}

/// testHeredocIndent: `<<EOF` keeps leading tabs and `<<-EOF` removes them, in COPY and in
/// RUN (a shell script, a shebang script, and a heredoc fed to a command).
#[test]
fn heredoc_dash_strips_leading_tabs() {
    let project = Project::new(
        "
FROM BUSYBOX AS build

COPY <<EOF /dest/foo-copy
\tfoo
EOF

COPY <<-EOF /dest/bar-copy
\tbar
EOF

RUN <<EOF
echo \"
\tfoo\" > /dest/foo-run
EOF

RUN <<-EOF
echo \"
\tbar\" > /dest/bar-run
EOF

RUN <<EOF
#!/bin/sh
echo \"
\tfoo\" > /dest/foo2-run
EOF

RUN <<-EOF
#!/bin/sh
echo \"
\tbar\" > /dest/bar2-run
EOF

RUN <<EOF sh > /dest/foo3-run
echo \"
\tfoo\"
EOF

RUN <<-EOF sh > /dest/bar3-run
echo \"
\tbar\"
EOF

FROM scratch
COPY --from=build /dest /
",
    );
    assert_files(
        &project.build_local(&[]),
        &[
            ("foo-copy", "\tfoo\n"),
            ("foo-run", "\n\tfoo\n"),
            ("foo2-run", "\n\tfoo\n"),
            ("foo3-run", "\n\tfoo\n"),
            ("bar-copy", "bar\n"),
            ("bar-run", "\nbar\n"),
            ("bar2-run", "\nbar\n"),
            ("bar3-run", "\nbar\n"),
        ],
    );
}

/// testHeredocVarSubstitution: an unquoted COPY heredoc expands build args (quotes in the
/// body stay), a quoted one (`<<'EOF'`, `<<"EOF"`) does not; a RUN heredoc is left to the
/// shell, which sees the ARG in its environment and its own assignments.
#[test]
fn heredoc_expands_args_only_when_unquoted() {
    let project = Project::new(
        r#"
FROM BUSYBOX as build

ARG name=world

COPY <<EOF /dest/c1
Hello ${name}!
EOF
COPY <<'EOF' /dest/c2
Hello ${name}!
EOF
COPY <<"EOF" /dest/c3
Hello ${name}!
EOF

COPY <<EOF /dest/q1
Hello '${name}'!
EOF
COPY <<EOF /dest/q2
Hello "${name}"!
EOF
COPY <<'EOF' /dest/qsingle1
Hello '${name}'!
EOF
COPY <<'EOF' /dest/qsingle2
Hello "${name}"!
EOF
COPY <<"EOF" /dest/qdouble1
Hello '${name}'!
EOF
COPY <<"EOF" /dest/qdouble2
Hello "${name}"!
EOF

RUN <<EOF
greeting="Hello"
echo "${greeting} ${name}!" > /dest/r1
EOF
RUN <<EOF
name="new world"
echo "Hello ${name}!" > /dest/r2
EOF

FROM scratch
COPY --from=build /dest /
"#,
    );
    assert_files(
        &project.build_local(&[]),
        &[
            ("c1", "Hello world!\n"),
            ("c2", "Hello ${name}!\n"),
            ("c3", "Hello ${name}!\n"),
            ("q1", "Hello 'world'!\n"),
            ("q2", "Hello \"world\"!\n"),
            ("qsingle1", "Hello '${name}'!\n"),
            ("qsingle2", "Hello \"${name}\"!\n"),
            ("qdouble1", "Hello '${name}'!\n"),
            ("qdouble2", "Hello \"${name}\"!\n"),
            ("r1", "Hello world!\n"),
            ("r2", "Hello new world!\n"),
        ],
    );
}

/// testCopyParents: `COPY --parents` keeps the source's path under the destination, for a
/// file and for a wildcard, also into a relative destination under WORKDIR.
#[test]
fn copy_parents_keeps_the_context_paths() {
    let project = Project::new(
        "
FROM scratch
COPY --parents foo1/foo2/bar /

WORKDIR /test
COPY --parents foo1/foo2/ba* .
",
    );
    project
        .file("foo1/foo2/bar", "testing")
        .file("foo1/foo2/baz", "testing2")
        .mode("foo1/foo2/bar", 0o600)
        .mode("foo1/foo2/baz", 0o600)
        .mode("foo1/foo2", 0o700)
        .mode("foo1", 0o700);
    assert_files(
        &project.build_local(&[]),
        &[
            ("foo1/foo2/bar", "testing"),
            ("test/foo1/foo2/bar", "testing"),
            ("test/foo1/foo2/baz", "testing2"),
        ],
    );
}

/// The Dockerfile of testExcludedFilesOnCopy: `--exclude` patterns of COPY and ADD,
/// relative to each source, with `.`, a directory and wildcard sources; `from` is empty
/// (the context) or `--from=base ` (its git half, with `add` = COPY).
fn excluded_files_dockerfile(from: &str, add: &str) -> String {
    format!(
        "
# ignore all the image files
FROM scratch as builder1
COPY {from}--exclude=*/*.png --exclude=*/*.jpeg . /1

# ignore all document files
FROM scratch as builder2
COPY {from}--exclude=*/*.pdf --exclude=*/*.txt . /2

# ignore all mp3 files
FROM scratch as builder3
{add} {from}--exclude=*.mp3 dir3/ /3/

# Ignore everything, keeping only .mpeg files, using src as a wildcard.
FROM scratch as builder4
COPY {from}--exclude=*.mp3 --exclude=*.jpeg --exclude=*.png --exclude=*.pdf --exclude=*.txt dir* /4/

# Ignore everything, keeping only txt files.
FROM scratch as builder5
{add} {from}--exclude=*.mp* --exclude=*.jpeg --exclude=*.png --exclude=*.pdf dir* /5

# Exclude all files.
FROM scratch as builder6
{add} {from}--exclude=* dir* /6

FROM scratch
COPY --from=builder1 / /builder1
COPY --from=builder2 / /builder2
COPY --from=builder3 / /builder3
COPY --from=builder4 / /builder4
COPY --from=builder5 / /builder5
COPY --from=builder6 / /builder6
"
    )
}

/// testExcludedFilesOnCopy's checks of one output: which files are there (symlinks by their
/// target, dangling or not), and that `ADD --exclude=* dir* /6` leaves an empty `/6`.
fn assert_excluded_files(output: &Path) {
    let cases: &[(&str, Option<&str>)] = &[
        ("builder1/1/dir1/file-101.png", None),
        ("builder1/1/dir1/file-102.txt", Some("3")),
        ("builder1/1/dir1/file-103.jpeg", None),
        ("builder1/1/dir2/file-201.pdf", Some("6")),
        ("builder1/1/dir2/file-202.jpeg", None),
        ("builder1/1/dir2/file-203.png", None),
        ("builder1/1/dir3/file-301.mp3", Some("9")),
        ("builder1/1/dir3/file-302.mpeg", Some("10")),
        ("builder1/1/dir4/file-401.txt", Some("11")),
        ("builder1/1/dir4/file-402.txt", Some("file-401.txt")),
        ("builder1/1/dir4/file-403.txt", Some("file-404.txt")),
        ("builder2/2/dir1/file-101.png", Some("2")),
        ("builder2/2/dir1/file-102.txt", None),
        ("builder2/2/dir1/file-103.jpeg", Some("4")),
        ("builder2/2/dir2/file-201.pdf", None),
        ("builder2/2/dir2/file-202.jpeg", Some("7")),
        ("builder2/2/dir2/file-203.png", Some("8")),
        ("builder2/2/dir3/file-301.mp3", Some("9")),
        ("builder2/2/dir3/file-302.mpeg", Some("10")),
        ("builder2/2/dir4/file-401.txt", None),
        ("builder2/2/dir4/file-402.txt", None),
        ("builder2/2/dir4/file-403.txt", None),
        ("builder3/3/file-301.mp3", None),
        ("builder3/3/file-302.mpeg", Some("10")),
        ("builder4/4/file-101.png", None),
        ("builder4/4/file-102.txt", None),
        ("builder4/4/file-103.jpeg", None),
        ("builder4/4/file-201.pdf", None),
        ("builder4/4/file-202.jpeg", None),
        ("builder4/4/file-203.png", None),
        ("builder4/4/file-301.mp3", None),
        ("builder4/4/file-302.mpeg", Some("10")),
        ("builder4/4/dir4/file-401.txt", None),
        ("builder4/4/dir4/file-402.txt", None),
        ("builder4/4/dir4/file-403.txt", None),
        ("builder5/5/file-101.png", None),
        ("builder5/5/file-102.txt", Some("3")),
        ("builder5/5/file-103.jpeg", None),
        ("builder5/5/file-201.pdf", None),
        ("builder5/5/file-202.jpeg", None),
        ("builder5/5/file-203.png", None),
        ("builder5/5/file-301.mp3", None),
        ("builder5/5/file-302.mpeg", None),
        ("builder5/5/file-401.txt", Some("11")),
        ("builder5/5/file-402.txt", Some("file-401.txt")),
        ("builder5/5/file-403.txt", Some("file-404.txt")),
    ];
    for (name, expected) in cases {
        let path = output.join(name);
        let metadata = fs::symlink_metadata(&path);
        match expected {
            None => assert!(metadata.is_err(), "{name} should not exist"),
            Some(content) => {
                let metadata = metadata.unwrap_or_else(|e| panic!("{name} should exist: {e}"));
                let got = if metadata.file_type().is_symlink() {
                    fs::read_link(&path).unwrap().to_str().unwrap().to_owned()
                } else {
                    fs::read_to_string(&path).unwrap()
                };
                assert_eq!(&got, content, "{name}");
            }
        }
    }
    let six = fs::read_dir(output.join("builder6/6"))
        .expect("`builder6/6` should exist")
        .count();
    assert_eq!(six, 0, "`builder6/6` should be empty");
}

/// The source tree of testExcludedFilesOnCopy, in `root`.
fn excluded_files_tree(project: &Project) {
    for (name, content) in [
        ("dir1/file-101.png", "2"),
        ("dir1/file-102.txt", "3"),
        ("dir1/file-103.jpeg", "4"),
        ("dir2/file-201.pdf", "6"),
        ("dir2/file-202.jpeg", "7"),
        ("dir2/file-203.png", "8"),
        ("dir3/file-301.mp3", "9"),
        ("dir3/file-302.mpeg", "10"),
        ("dir4/file-401.txt", "11"),
    ] {
        project.file(name, content).mode(name, 0o600);
    }
    project
        .symlink("file-401.txt", "dir4/file-402.txt")
        .symlink("file-404.txt", "dir4/file-403.txt");
    for dir in ["dir1", "dir2", "dir3", "dir4"] {
        project.mode(dir, 0o777);
    }
}

/// testExcludedFilesOnCopy, from a plain context directory (the Dockerfile kept outside
/// it, as BuildKit's test gives it), exported through the final stage's
/// `COPY --from=builderN / /builderN`: the engine executor must not copy the `/etc` it
/// makes in a container of a scratch stage.
#[test]
fn copy_and_add_exclude_patterns() {
    let project = Project::with_dockerfile_outside(&excluded_files_dockerfile("", "ADD"));
    excluded_files_tree(&project);
    for output in project.build_local(&[]) {
        assert_excluded_files(&output);
        for n in 1..=6 {
            let etc = output.join(format!("builder{n}/etc"));
            assert!(!etc.exists(), "{} should not exist", etc.display());
        }
    }
}

/// testAddChecksum: `ADD --checksum` of a URL with its digest passes; a digest that does not match, an algorithm other than sha256/sha384/sha512 (md5,
/// unknown), a digest without its algorithm, and a checksum on a context file all fail; a
/// checksum and URL from ENV variables are expanded (DigestFromEnv).
#[test]
fn add_checksum_forms() {
    let served = support::tempdir();
    fs::write(served.path().join("foo"), "content1").unwrap();
    let server = static_http::StaticServer::start(served.path());
    let url = format!("{}/foo", server.url());
    // sha256 of "content1", and of nothing; the context file's below is of "local file".
    let sum = "sha256:d0b425e00e15a0d36b9b361f02bab63563aed6cb4665083905386c55d5b679fa";
    let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    let valid = Project::new(&format!(
        "FROM scratch\nADD --checksum={sum} {url} /tmp/foo\n"
    ));
    assert_files(&valid.build_local(&[]), &[("tmp/foo", "content1")]);
    let from_env = Project::new(&format!(
        "FROM scratch\nENV DIGEST={sum}\nENV LINK={url}\nADD --checksum=${{DIGEST}} ${{LINK}} /tmp/foo\n"
    ));
    assert_files(&from_env.build_local(&[]), &[("tmp/foo", "content1")]);

    let encoded = sum.trim_start_matches("sha256:");
    for checksum in [
        empty.to_owned(),
        "md5:7e55db001d319a94b0b713529a756623".to_owned(),
        format!("unknown:{encoded}"),
        encoded.to_owned(),
    ] {
        Project::new(&format!(
            "FROM scratch\nADD --checksum={checksum} {url} /tmp/foo\n"
        ))
        .build_fails(&[]);
    }
    let local = Project::new(&format!(
        "FROM scratch\nADD --checksum=sha256:{} foo /tmp/foo\n",
        "f924f9de03dcbb7d617555ef2b4fdd500a63a55420b403d73636298e66483cc3"
    ));
    local.file("foo", "local file");
    local.build_fails(&[]);
}

/// A tar with one file, `foo` (`content0`, 0644), plain and gzipped.
fn foo_archives() -> (Vec<u8>, Vec<u8>) {
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(8);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    archive
        .append_data(&mut header, "foo", &b"content0"[..])
        .unwrap();
    let plain = archive.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    (plain, gz.finish().unwrap())
}

/// testDockerfileAddArchive: ADD extracts a context tar, plain or gzipped, but not with
/// `--unpack=false` (the archive is copied as is, nothing extracted); COPY never extracts;
/// ADD of a URL does not extract unless `--unpack=true`, and keeps the archive under the
/// name given (moby/buildkit#386).
#[test]
fn add_archives_and_unpack() {
    let (plain, gzipped) = foo_archives();
    let served = support::tempdir();
    fs::write(served.path().join("t.tar.gz"), &gzipped).unwrap();
    let server = static_http::StaticServer::start(served.path());
    let url = format!("{}/t.tar.gz", server.url());
    // The outputs live in the project's work dir: the project is returned with them.
    let with = |dockerfile: &str| {
        let project = Project::new(dockerfile);
        project
            .file("t.tar", &plain)
            .file("t.tar.gz", &gzipped)
            .mode("t.tar", 0o600)
            .mode("t.tar.gz", 0o600);
        let outputs = project.build_local(&[]);
        (project, outputs)
    };
    for dockerfile in [
        "FROM scratch\nADD t.tar /\n",
        "FROM scratch\nADD t.tar.gz /\n",
    ] {
        assert_files(&with(dockerfile).1, &[("foo", "content0")]);
    }
    let read_bytes = |dir: &Path, name: &str| fs::read(dir.join(name)).unwrap();
    let (_project, outputs) = with("\tFROM scratch\n\tADD --unpack=false t.tar.gz /\n\t");
    for dir in outputs {
        assert!(!dir.join("foo").exists(), "nothing extracted");
        assert_eq!(read_bytes(&dir, "t.tar.gz"), gzipped);
    }
    let (_project, outputs) = with("FROM scratch\nCOPY t.tar.gz /\n");
    for dir in outputs {
        assert_eq!(read_bytes(&dir, "t.tar.gz"), gzipped);
    }
    let (_project, outputs) = with(&format!("FROM scratch\nADD {url} /\n"));
    for dir in outputs {
        assert_eq!(read_bytes(&dir, "t.tar.gz"), gzipped);
    }
    assert_files(
        &with(&format!("FROM scratch\nADD --unpack=true {url} /dest/\n")).1,
        &[("dest/foo", "content0")],
    );
    let (_project, outputs) = with(&format!("FROM scratch\nADD {url} /newname.tar.gz\n"));
    for dir in outputs {
        assert_eq!(read_bytes(&dir, "newname.tar.gz"), gzipped);
    }
}

/// testCopyLinkDotDestDir and testCopyLinkEmptyDestDir: `COPY --link` to `.` and to an
/// empty destination (an ENV that is empty) copies into WORKDIR.
#[test]
fn copy_link_into_the_workdir() {
    for dest in [
        "COPY --link testfile .",
        "ENV empty=\"\"\nCOPY --link testfile $empty",
    ] {
        let project = Project::new(&format!(
            "
FROM BUSYBOX
WORKDIR /var/www
{dest}
RUN [ \"$(cat testfile)\" == \"contents0\" ]
"
        ));
        project
            .file("testfile", "contents0")
            .mode("testfile", 0o600);
        project.build_local(&[]);
    }
}

/// testRunSecurityDefault and testRunSecuritySandbox: a RUN, without `--security` (also when
/// `security.insecure` is allowed) or with `--security=sandbox`, has the default bounding
/// capability set, `00000000a80425fb`.
#[test]
fn run_security_default_and_sandbox_have_the_default_capabilities() {
    let check = r#"[ "$(cat /proc/self/status | grep CapBnd)" == "CapBnd:	00000000a80425fb" ]"#;
    let default = Project::new(&format!("\nFROM BUSYBOX\nRUN {check}\n"));
    default.build_local(&["--allow", "security.insecure"]);
    let sandbox = Project::new(&format!("\nFROM BUSYBOX\nRUN --security=sandbox {check}\n"));
    sandbox.build_local(&[]);
}

/// testRunNoNetwork and testRunGlobalNetwork: `RUN --network=none` has no eth0; with
/// `--network host` for the build, a plain RUN reaches a server on the host's 127.0.0.1 and
/// `RUN --network=none` does not. (testRunNoNetwork's `RUN ip link show eth0` in the default
/// network is left out, as BuildKit leaves it out when rootless: this engine has no bridge
/// network. testRunHostNetwork is in notes/current-divergences: the native executor's
/// default network reaches the host's 127.0.0.1.)
#[test]
fn run_network_modes() {
    let port = echo_server("foo");
    let no_network = Project::new("\nFROM BUSYBOX\nRUN --network=none ! ip link show eth0\n");
    no_network.build_local(&[]);
    let global = Project::new(&format!(
        "\nFROM BUSYBOX\nRUN nc 127.0.0.1 {port} | grep foo\nRUN --network=none ! nc -z 127.0.0.1 {port}\n"
    ));
    global.build_local(&["--allow", "network.host", "--network", "host"]);
}

/// testMountTmpfsSize: a tmpfs mount with `size=128m` is mounted with `size=131072k`. The
/// mount's whole option list is kept in the image, so both executors must agree on it:
/// BuildKit's tmpfs is `nosuid` and `size=` alone (`solver/llbsolver/mounts/mount.go`), not
/// Docker's `nodev,noexec`.
#[test]
fn tmpfs_mount_size() {
    let project = Project::new(
        "
FROM BUSYBOX AS base
RUN --mount=type=tmpfs,target=/dev/shm,size=128m mount | grep ' /dev/shm ' | sed 's/.*(//; s/)//' > /tmpfssize
FROM scratch
COPY --from=base /tmpfssize /
",
    );
    for dir in project.build_local(&[]) {
        let options = read(&dir, "tmpfssize");
        let options: Vec<&str> = options.trim().split(',').collect();
        assert!(options.contains(&"size=131072k"), "{options:?}");
        assert!(options.contains(&"nosuid"), "{options:?}");
        assert!(
            !options.contains(&"nodev") && !options.contains(&"noexec"),
            "{options:?}"
        );
    }
}

/// testCacheMountSourceEscape: a cache mount's `source=` that resolves through a symlink
/// the cache holds (made by an earlier RUN) to outside the cache (`/etc`) fails the
/// build; it must never bind the host's `/etc` into the RUN.
#[test]
fn a_cache_mount_source_cannot_leave_the_cache() {
    let id = support::unique_name("sourceescape");
    let project = Project::new(&format!(
        "FROM BUSYBOX AS init\n\
         RUN --mount=type=cache,id={id},target=/cache mkdir -p /cache/sel && echo benign > /cache/sel/benign.txt\n\
         FROM init AS link\n\
         RUN --mount=type=cache,id={id},target=/cache rm -rf /cache/sel && ln -s /etc /cache/sel\n\
         FROM link AS victim\n\
         RUN --mount=type=cache,id={id},source=sel,target=/victim cat /victim/hostname > /hostname\n\
         FROM scratch\n\
         COPY --from=victim /hostname /hostname\n"
    ));
    for stderr in project.build_fails(&["--no-cache"]) {
        assert!(
            stderr.contains("RUN --mount=type=cache,source=sel: refused"),
            "{stderr}"
        );
    }
}

/// A cache mount's `source=` names a directory of the cache, made when missing, and kept
/// for the next RUN with the same id (testMountRWCache's cache, narrowed by `source=`).
#[test]
fn a_cache_mount_source_is_a_directory_of_the_cache() {
    let id = support::unique_name("cachesource");
    let project = Project::new(&format!(
        "FROM BUSYBOX AS build\n\
         RUN --mount=type=cache,id={id},source=a/b,target=/c echo kept > /c/file\n\
         RUN --mount=type=cache,id={id},target=/whole mkdir /out && cat /whole/a/b/file > /out/seen\n\
         FROM scratch\n\
         COPY --from=build /out/seen /seen\n"
    ));
    for out in project.build_local(&["--no-cache"]) {
        assert_eq!(read(&out, "seen"), "kept\n");
    }
}

/// testCopyRelativeParents: `COPY --from=STAGE --parents` with a `/./` pivot (what follows
/// the first one is kept), a trailing `/.`, a relative source, two pivots, wildcards before
/// and after a pivot, `**`, and two sources. The RUN checks of each target are BuildKit's,
/// on busybox instead of alpine; one build of a last stage copying from every target runs
/// them all, on each executor, with one digest.
#[test]
fn copy_parents_from_a_stage_with_pivots_and_wildcards() {
    let project = Project::new(
        r#"
FROM BUSYBOX AS base
WORKDIR /test
RUN <<eot
	set -ex
	mkdir -p a/b/c/d/e
	mkdir -p a/b2/c/d/e
	mkdir -p a/b/c2/d/e
	mkdir -p a/b/c2/d/e2
	touch a/b/c/d/foo
	touch a/b/c/d/e/bay
	touch a/b2/c/d/e/bar
	touch a/b/c2/d/e/baz
	touch a/b/c2/d/e2/baz
eot

FROM BUSYBOX AS middle
COPY --from=base --parents /test/a/b/./c/d /out/
RUN <<eot
	set -ex
	[ -d /out/c/d/e ]
	[ -f /out/c/d/foo ]
	[ ! -d /out/a ]
	[ ! -d /out/e ]
eot

FROM BUSYBOX AS end
COPY --from=base --parents /test/a/b/c/d/. /out/
RUN <<eot
	set -ex
	[ -d /out/test/a/b/c/d/e ]
	[ -f /out/test/a/b/c/d/foo ]
eot

FROM BUSYBOX AS start
COPY --from=base --parents ./test/a/b/c/d /out/
RUN <<eot
	set -ex
	[ -d /out/test/a/b/c/d/e ]
	[ -f /out/test/a/b/c/d/foo ]
eot

FROM BUSYBOX AS double
COPY --from=base --parents /test/a/./b/./c /out/
RUN <<eot
	set -ex
	[ -d /out/b/c/d/e ]
	[ -f /out/b/c/d/foo ]
eot

FROM BUSYBOX AS wildcard
COPY --from=base --parents /test/a/./*/c /out/
RUN <<eot
	set -ex
	[ -d /out/b/c/d/e ]
	[ -f /out/b2/c/d/e/bar ]
eot

FROM BUSYBOX AS doublewildcard
COPY --from=base --parents /test/a/b*/./c/**/e /out/
RUN <<eot
	set -ex
	[ -d /out/c/d/e ]
	[ -f /out/c/d/e/bay ] # via b
	[ -f /out/c/d/e/bar ] # via b2
eot

FROM BUSYBOX AS doubleinputs
COPY --from=base --parents /test/a/b/c*/./d/**/baz /test/a/b*/./c/**/bar /out/
RUN <<eot
	set -ex
	[ -f /out/d/e/baz ]
	[ ! -f /out/d/e/bay ]
	[ -f /out/d/e2/baz ]
	[ -f /out/c/d/e/bar ] # via b2
eot

FROM scratch
COPY --from=middle /out /middle
COPY --from=end /out /end
COPY --from=start /out /start
COPY --from=double /out /double
COPY --from=wildcard /out /wildcard
COPY --from=doublewildcard /out /doublewildcard
COPY --from=doubleinputs /out /doubleinputs
"#,
    );
    for out in project.build_local(&[]) {
        // What the RUN checks cannot see: the directories between keep the stage's.
        assert!(out.join("middle/c/d/e").is_dir());
        assert!(!out.join("doubleinputs/d/e/bay").exists());
    }
}

/// testCopyParentsMissingDirectory: `--parents` from a stage copies the whole path (or what
/// follows a pivot); a wildcard matching nothing copies nothing, before or after a pivot,
/// and the build goes on; a missing file fails, naming it (`"/test/nonexistent-file": not
/// found`), before the stage's RUN.
#[test]
fn copy_parents_of_missing_paths() {
    let base = r#"
FROM BUSYBOX AS base
WORKDIR /test
RUN <<eot
	set -ex
	mkdir -p a/b/c/d/e
	touch a/b/c/d/foo
	touch a/b/c/d/e/bay
eot
"#;
    let project = Project::new(&format!(
        r#"{base}
FROM BUSYBOX AS normal
COPY --from=base --parents /test/a/b/c/d /out/
RUN <<eot
	set -ex
	[ -d /out/test/a/b/c/d/e ]
	[ -f /out/test/a/b/c/d/e/bay ]
	[ ! -d /out/e ]
	[ ! -d /out/a ]
eot

FROM BUSYBOX AS withpivot
COPY --from=base --parents /test/a/b/./c/d /out/
RUN <<eot
	set -ex
	[ -d /out/c/d/e ]
	[ -f /out/c/d/foo ]
	[ ! -d /out/a ]
	[ ! -d /out/e ]
eot

FROM BUSYBOX AS wildcard-nonexistent
COPY --from=base --parents /test/a/b2*/c /out/
RUN <<eot
	set -ex
	[ -d /out ]
	[ ! -d /out/a ]
eot

FROM BUSYBOX AS wildcard-afterpivot
COPY --from=base --parents /test/a/b/./c2* /out/
RUN <<eot
	set -ex
	[ -d /out ]
	[ ! -d /out/a ]
	[ ! -d /out/c* ]
eot

FROM scratch
COPY --from=normal /out /normal
COPY --from=withpivot /out /withpivot
COPY --from=wildcard-nonexistent /out /wildcard-nonexistent
COPY --from=wildcard-afterpivot /out /wildcard-afterpivot
"#
    ));
    project.build_local(&[]);
    let missing = Project::new(&format!(
        "{base}\nFROM BUSYBOX\nCOPY --from=base --parents /test/nonexistent-file /out/\n\
         RUN echo never\n"
    ));
    for stderr in missing.build_fails(&[]) {
        assert!(
            stderr.contains("/test/nonexistent-file") && stderr.contains("not found"),
            "{stderr}"
        );
        assert!(!stderr.contains("never"), "{stderr}");
    }
}

/// testExcludedFilesOnCopy's second half: the same `--exclude` patterns applied to
/// `COPY --from=base`, where `base` holds the test's tree (BuildKit's test puts it there
/// with an ADD of a git repository; here with a COPY of the context).
#[test]
fn copy_exclude_from_a_stage() {
    let dockerfile = format!(
        "FROM scratch AS base\nCOPY . /\n{}",
        excluded_files_dockerfile("--from=base ", "COPY")
    );
    let project = Project::with_dockerfile_outside(&dockerfile);
    excluded_files_tree(&project);
    for output in project.build_local(&[]) {
        assert_excluded_files(&output);
    }
}

/// testOnBuildHeredoc: an `ONBUILD RUN <<EOF` of a pushed base image runs, heredoc and all,
/// in the build of an image FROM it (the trigger keeps its heredoc in the config).
#[test]
fn an_onbuild_run_heredoc_runs_in_the_child_build() {
    let base =
        Project::new("\nFROM BUSYBOX\nONBUILD RUN <<EOF\necho \"hello world\" >> /dest\nEOF\n");
    let target = format!(
        "{}/{}:base",
        support::env().registry,
        support::unique_name("testonbuildheredoc")
    );
    let out = base.build_context(
        "native",
        &["--push", "-t", &target],
        base.path().to_str().unwrap(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let child = Project::new(&format!(
        "\nFROM {target} AS base\nFROM scratch\nCOPY --from=base /dest /dest\n"
    ));
    assert_files(&child.build_local(&[]), &[("dest", "hello world\n")]);
}

/// Runs each command with `sh -c` in `dir`, as BuildKit's tests' `runShell` does, with no
/// global or system git configuration.
fn run_shell(dir: &Path, commands: &[&str]) {
    for command in commands {
        let out = Command::new("sh")
            .args(["-c", command])
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {out:?}");
    }
}

/// `git rev-parse REV` in `dir`.
fn git_rev_parse(dir: &Path, rev: &str) -> String {
    let out = Command::new("git")
        .args(["rev-parse", rev])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `git status -s` (submodules included) of an exported checkout: empty when it is clean.
fn git_status(dir: &Path) -> String {
    let out = Command::new("git")
        .args(["-c", "safe.directory=*", "status", "-s"])
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {out:?}", dir.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository in `dir` with commits tagged v0.0.1, v0.0.2, v0.0.3, each writing `foo of
/// TAG` to `foo`, ready to serve over dumb HTTP (testAddGit's); `format` is git's object
/// format.
fn tagged_repo(dir: &Path, format: &str) {
    let mut commands = vec![
        format!("git init --object-format={format}"),
        "git config --local user.email test".to_owned(),
        "git config --local user.name test".to_owned(),
    ];
    for tag in ["v0.0.1", "v0.0.2", "v0.0.3"] {
        commands.push(format!("echo foo of {tag} >foo"));
        commands.push("git add foo".to_owned());
        commands.push(format!("git commit -m {tag}"));
        commands.push(format!("git tag {tag}"));
    }
    commands.push("git update-server-info".to_owned());
    let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
    run_shell(dir, &commands);
}

/// testAddGitSHA1 and testAddGitSHA256 (testAddGit), for a repository in each object format:
/// ADD by tag; with `--keep-git-dir --chown --checksum=COMMIT` through ARGs (the files owned
/// by 4242:8484 and the checkout clean: BuildKit's `git status -s` in the image, here on the
/// exported tree); `--checksum` without `--keep-git-dir` leaves no `.git`; a ref given by
/// its full commit; a checksum of another commit fails with `expected checksum to match`.
/// BuildKit's four successful Dockerfiles are one here (one build per executor), and its
/// checksum that is not hex (`foobar`, a parse error before anything is fetched) is left to
/// the unit tests.
#[test]
fn add_git_with_checksum_keep_git_dir_and_chown() {
    for format in ["sha1", "sha256"] {
        let repo = support::tempdir();
        tagged_repo(repo.path(), format);
        let v2 = git_rev_parse(repo.path(), "v0.0.2");
        let v3 = git_rev_parse(repo.path(), "v0.0.3");
        assert_eq!(v3.len(), if format == "sha1" { 40 } else { 64 });
        let server = static_http::StaticServer::start(repo.path());
        let url = server.url();

        let project = Project::new(&format!(
            r#"
FROM BUSYBOX

# Basic case
ADD {url}/.git#v0.0.1 /x

# Complicated case
ARG REPO="{url}/.git"
ARG TAG="v0.0.2"
ADD --keep-git-dir=true --chown=4242:8484 --checksum={v2} ${{REPO}}#${{TAG}} /buildkit-chowned
USER 4242
RUN cd /buildkit-chowned && \
  [ "$(cat foo)" = "foo of v0.0.2" ] && \
  [ "$(stat -c %u foo)" = "4242" ] && \
  [ "$(stat -c %g foo)" = "8484" ]
USER root

ADD --checksum={v3} ${{REPO}}#v0.0.3 /nogitdir
ADD --keep-git-dir --checksum={v2} ${{REPO}}#${{TAG}} /gitdir
ARG COMMIT="{v3}"
ADD --keep-git-dir=true --checksum={v3} ${{REPO}}#${{COMMIT}} /commitdir
RUN [ "$(cat /x/foo)" = "foo of v0.0.1" ] && \
  [ "$(cat /nogitdir/foo)" = "foo of v0.0.3" ] && [ ! -d /nogitdir/.git ] && \
  [ "$(cat /gitdir/foo)" = "foo of v0.0.2" ] && [ -d /gitdir/.git ] && \
  [ "$(cat /commitdir/foo)" = "foo of v0.0.3" ] && [ -d /commitdir/.git ]
"#
        ));
        for dir in project.build_local_unchecked(&[]) {
            assert_eq!(git_status(&dir.join("buildkit-chowned")), "", "{format}");
        }

        let mismatch = Project::new(&format!(
            "\n\tFROM BUSYBOX\n\tARG REPO=\"{url}/.git\"\n\tARG TAG=\"v0.0.3\"\n\tADD --checksum={v2} ${{REPO}}#${{TAG}} /faildir\n\t"
        ));
        for stderr in mismatch.build_fails(&[]) {
            assert!(stderr.contains("expected checksum to match"), "{stderr}");
        }
    }
}

/// testGitQueryString's repository: branches `base`, `feature` (with `sub/`) and `master`,
/// tags v0.0.1, v0.0.2, latest, and the submodule `submod` (`file` = `123`); the server and
/// the two commits. BuildKit serves the submodule from a server of its own under an absolute
/// URL; here the same server serves it and `.gitmodules` names it relative to the
/// superproject (`../subrepo/.git`), and it has a submodule of its own, `nested` (`file` =
/// `456`, `../../nestedrepo/.git`), so that resolving relative URLs and recursing are tested
/// too. BuildKit's message `repository does not contain ref` is matched as `does not contain
/// ref`: imgbuild puts the URL after `repository`.
struct QueryRepo {
    server: static_http::StaticServer,
    v2: String,
    latest: String,
    dir: tempfile::TempDir,
}

fn query_repo() -> QueryRepo {
    let git_dir = support::tempdir();
    let served = |name: &str, content: &str| {
        let dir = git_dir.path().join(name);
        fs::create_dir(&dir).unwrap();
        run_shell(
            &dir,
            &[
                "git init",
                "git config --local user.email test",
                "git config --local user.name test",
                &format!("echo {content} >file"),
                "git add file",
                "git commit -m initial",
            ],
        );
        dir
    };
    served("nestedrepo", "456");
    let subrepo = served("subrepo", "123");
    // Added from the local copy, then named by the URL it is served at, relative to the
    // served superproject (`URL/.git`).
    run_shell(
        &subrepo,
        &[
            "git -c protocol.file.allow=always submodule add ../nestedrepo nested",
            "git config -f .gitmodules submodule.nested.url ../../nestedrepo/.git",
            "git add .gitmodules nested",
            "git commit -m nested",
            "git update-server-info",
        ],
    );
    run_shell(
        &git_dir.path().join("nestedrepo"),
        &["git update-server-info"],
    );
    run_shell(
        git_dir.path(),
        &[
            "git init",
            "git config --local user.email test",
            "git config --local user.name test",
            "echo base >foo",
        ],
    );
    fs::write(
        git_dir.path().join("Dockerfile"),
        "
FROM scratch AS withgit
COPY .git/HEAD out

FROM scratch as withsubmod
COPY submod/file out

FROM scratch
COPY foo out
",
    )
    .unwrap();
    run_shell(
        git_dir.path(),
        &[
            "git -c protocol.file.allow=always submodule add ./subrepo submod",
            "git config -f .gitmodules submodule.submod.url ../subrepo/.git",
            "git add .gitmodules Dockerfile foo submod",
            "git commit -m initial",
            "git tag v0.0.1",
            "git branch base",
            "echo feature >foo",
            "mkdir sub",
            "echo subfeature >sub/foo",
            "cp Dockerfile sub/",
            "git add foo sub",
            "git commit -m feature",
            "git branch feature",
            "git checkout -B master base",
            "echo v0.0.2 >foo",
            "git add foo",
            "git commit -m v0.0.2",
            "git tag v0.0.2",
            "echo latest >foo",
            "git add foo",
            "git commit -m latest",
            "git tag latest",
            "git update-server-info",
        ],
    );
    let v2 = git_rev_parse(git_dir.path(), "v0.0.2");
    let latest = git_rev_parse(git_dir.path(), "latest");
    assert_ne!(v2, latest);
    let server = static_http::StaticServer::start(git_dir.path());
    QueryRepo {
        server,
        v2,
        latest,
        dir: git_dir,
    }
}

/// `(name, url suffix, target, Ok(out) or Err(message))`.
type QueryCase = (
    &'static str,
    String,
    &'static str,
    Result<String, &'static str>,
);

/// testGitQueryString's cases.
fn query_cases(repo: &QueryRepo) -> Vec<QueryCase> {
    let (v2, latest) = (&repo.v2, &repo.latest);
    let ok = |s: &str| Ok(format!("{s}\n"));
    vec![
        (
            "tag with invalid commit",
            format!("?tag=v0.0.2&commit={latest}"),
            "",
            Err("expected checksum to match"),
        ),
        ("old style ref", "#v0.0.2".into(), "", ok("v0.0.2")),
        ("querystring ref", "?ref=base".into(), "", ok("base")),
        ("querystring branch", "?branch=base".into(), "", ok("base")),
        (
            "querystring invalid branch",
            "?branch=invalid".into(),
            "",
            Err("does not contain ref"),
        ),
        (
            "tag as branch",
            "?branch=v0.0.2".into(),
            "",
            Err("does not contain ref"),
        ),
        (
            "allowed mixed refs",
            "?tag=v0.0.2#refs/tags/v0.0.2".into(),
            "",
            ok("v0.0.2"),
        ),
        (
            "v2 by commit",
            format!("?commit={latest}"),
            "",
            ok("latest"),
        ),
        (
            "v2 by commit (wrong short)",
            format!("?commit={}", &v2[..8]),
            "",
            Err("expected checksum to match"),
        ),
        (
            "v2 by commit (short)",
            format!("?commit={}", &latest[..8]),
            "",
            ok("latest"),
        ),
        ("v2 ref by commit", format!("?ref={v2}"), "", ok("v0.0.2")),
        (
            "v2 ref by commit (short)",
            format!("?ref={}", &v2[..8]),
            "",
            Err("does not contain ref"),
        ),
        (
            "tag with commit",
            format!("?tag=v0.0.2&commit={v2}"),
            "",
            ok("v0.0.2"),
        ),
        (
            "commit with commit",
            format!("?ref={v2}&commit={v2}"),
            "",
            ok("v0.0.2"),
        ),
        (
            "latest with commit",
            format!("?commit={latest}"),
            "",
            ok("latest"),
        ),
        (
            "mismatch refs",
            "?tag=v0.0.2#refs/heads/master".into(),
            "",
            Err("ref conflicts"),
        ),
        ("sub old-style", "#feature:sub".into(), "", ok("subfeature")),
        (
            "sub query",
            "?subdir=sub&ref=feature".into(),
            "",
            ok("subfeature"),
        ),
        (
            "withgit",
            "?keep-git-dir=true".into(),
            "withgit",
            ok(latest),
        ),
        (
            "withgitandtag",
            "?tag=v0.0.2&keep-git-dir=true".into(),
            "withgit",
            ok(v2),
        ),
        (
            "withgit-default",
            String::new(),
            "withgit",
            Err(".git/HEAD"),
        ),
        (
            "withgit-valueless",
            "?keep-git-dir&submodules".into(),
            "withgit",
            ok(latest),
        ),
        (
            "withgit-forbidden",
            "?keep-git-dir=false".into(),
            "withgit",
            Err(".git/HEAD"),
        ),
        ("withsubmod", String::new(), "withsubmod", ok("123")),
        (
            "withsubmodset",
            "?submodules=true".into(),
            "withsubmod",
            ok("123"),
        ),
        (
            "withsubmodempty",
            "?submodules".into(),
            "withsubmod",
            ok("123"),
        ),
        (
            "withoutsubmod",
            "?submodules=false".into(),
            "withsubmod",
            Err("submod/file"),
        ),
    ]
}

/// testGitQueryString, its `add_` half: `ADD URL /repo/` of a repository with the URL's
/// query (`ref`, `branch`, `tag`, `commit` full or short, `subdir`, `keep-git-dir`,
/// `submodules`) or fragment, each case's content or error as BuildKit's test has it.
/// BuildKit builds each case on its own, copying the file it checks out of the ADD's stage;
/// here the cases that succeed are the ADDs of one stage (one build per executor) and the
/// file is read from its output, and each failing case is a build of its own on the native
/// executor (they fail resolving the ref, or in a `COPY --from` of a missing file, which
/// other tests check on both executors). BuildKit's `".git/HEAD": not found` and
/// `"submod/file": not found` are matched by the path alone: imgbuild words a missing COPY
/// source its own way. Also, of the same checkouts: the nested submodule
/// (`submod/nested/file`), no `.git` in submodules without `--keep-git-dir`, and with it
/// each submodule a repository of its own under `.git/modules`, the whole checkout clean
/// for `git status`.
#[test]
fn add_git_query_string() {
    let repo = query_repo();
    let mut dockerfile = String::from("FROM scratch\n");
    let mut expected = Vec::new();
    for (i, (name, suffix, target, outcome)) in query_cases(&repo).into_iter().enumerate() {
        let url = format!("{}/.git{suffix}", repo.server.url());
        match outcome {
            Ok(content) => {
                dockerfile.push_str(&format!("ADD {url} /{i}/\n"));
                let file = match target {
                    "withgit" => ".git/HEAD",
                    "withsubmod" => "submod/file",
                    _ => "foo",
                };
                expected.push((name, format!("{i}/{file}"), content));
            }
            Err(message) => {
                let project = Project::new(&format!(
                    "
FROM scratch AS main
ADD {url} /repo/

FROM scratch as withsubmod
COPY --from=main /repo/submod/file /repo/foo

FROM scratch AS withgit
COPY --from=main /repo/.git/HEAD /repo/foo

FROM main
"
                ));
                let mut args = Vec::new();
                if !target.is_empty() {
                    args.extend(["--target", target]);
                }
                let context = project.path().to_str().unwrap();
                let stderr = project.build_fails_on("native", &args, context);
                assert!(stderr.contains(message), "{name}: {stderr}");
            }
        }
    }
    // The trees of the cases `withsubmod` (no query) and `withgit` (`?keep-git-dir=true`).
    let tree_of = |case: &str| {
        let (_, path, _) = expected.iter().find(|(name, ..)| *name == case).unwrap();
        path.split('/').next().unwrap().to_owned()
    };
    let (plain, kept) = (tree_of("withsubmod"), tree_of("withgit"));
    let project = Project::new(&dockerfile);
    for dir in project.build_local_unchecked(&[]) {
        for (name, path, content) in &expected {
            assert_eq!(&read(&dir, path), content, "{name}");
        }
        for tree in [&plain, &kept] {
            assert_eq!(read(&dir, &format!("{tree}/submod/nested/file")), "456\n");
        }
        assert!(!dir.join(&plain).join("submod/.git").exists());
        assert!(!dir.join(&plain).join("submod/nested/.git").exists());
        let kept = dir.join(&kept);
        assert!(kept.join(".git/modules/submod/modules/nested").is_dir());
        assert_eq!(git_status(&kept), "");
        assert_eq!(
            git_rev_parse(&kept.join("submod/nested"), "HEAD"),
            git_rev_parse(&repo.dir.path().join("nestedrepo"), "HEAD")
        );
    }
}

/// testGitQueryString, its `context_` half: the same URLs as the build context, the
/// repository's own Dockerfile (or `sub/`'s) building `out`. The context is fetched and
/// checked out before any executor runs, by the same code as ADD's: each case is built on
/// the native executor only.
#[test]
fn git_context_query_string() {
    let repo = query_repo();
    let project = Project::empty();
    for (name, suffix, target, expected) in query_cases(&repo) {
        let url = format!("{}/.git{suffix}", repo.server.url());
        let mut args = Vec::new();
        if !target.is_empty() {
            args.extend(["--target", target]);
        }
        match expected {
            Ok(content) => {
                let dir = project.build_local_on("native", &args, &url);
                assert_eq!(read(&dir, "out"), content, "{name}");
            }
            Err(message) => {
                let stderr = project.build_fails_on("native", &args, &url);
                assert!(stderr.contains(message), "{name}: {stderr}");
            }
        }
    }
}
