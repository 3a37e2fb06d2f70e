//! What `Context::select` picks for COPY/ADD: targets, wildcards, `.dockerignore`, modes,
//! symlinks, hard links, special files, `--exclude`, `--parents`, ADD archives. Each test
//! builds its own context in a temporary directory.

#[path = "context_fixture.rs"]
mod fixture;

use std::os::unix::net::UnixListener;

use fixture::{Fixture, error_text, select, select_with, summary, targets};
use imgbuild::cli::is_input_error;
use imgbuild::context::{Context, EntryKind, SelectOptions};

fn sources(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_file_goes_to_dest_or_into_a_directory_dest() {
    let f = Fixture::new();
    f.file("mix.lock", "lock", 0o644);
    let ctx = f.context();

    assert_eq!(
        summary(&select(&ctx, &["mix.lock"], "/app/deps.lock").unwrap()),
        ["/app/deps.lock file 644"]
    );
    assert_eq!(
        summary(&select(&ctx, &["mix.lock"], "/app/").unwrap()),
        ["/app dir 755 implicit", "/app/mix.lock file 644"]
    );
    // A destination without `/` that is a directory in the image.
    let into_existing = ctx
        .select(
            &sources(&["mix.lock"]),
            "/app",
            &SelectOptions::default(),
            &|p| p == "/app",
        )
        .unwrap();
    assert_eq!(targets(&into_existing), ["/app", "/app/mix.lock"]);
    // `./x` and `/x` name the same context file.
    for spelling in ["./mix.lock", "/mix.lock", "a/../mix.lock"] {
        let selection = select(&ctx, &[spelling], "/x").unwrap();
        assert_eq!(
            selection.entries[0].source,
            f.root().canonicalize().unwrap().join("mix.lock")
        );
    }
}

#[test]
fn a_directory_copies_its_contents_and_dot_is_the_whole_context() {
    let f = Fixture::new();
    f.file("lib/app.ex", "app", 0o644)
        .file("lib/web/router.ex", "router", 0o644)
        .dir("lib/empty", 0o755)
        .file("Dockerfile", "FROM scratch", 0o644)
        .file("mix.exs", "exs", 0o644);
    let ctx = f.context();

    assert_eq!(
        summary(&select(&ctx, &["lib"], "/app").unwrap()),
        [
            "/app dir 755 implicit",
            "/app/app.ex file 644",
            "/app/empty dir 755",
            "/app/web dir 755",
            "/app/web/router.ex file 644",
        ]
    );
    assert_eq!(
        targets(&select(&ctx, &["."], "/src/").unwrap()),
        [
            "/src",
            "/src/Dockerfile",
            "/src/lib",
            "/src/lib/app.ex",
            "/src/lib/empty",
            "/src/lib/web",
            "/src/lib/web/router.ex",
            "/src/mix.exs",
        ]
    );
    // Into the image root: the root itself is never an entry.
    assert_eq!(
        targets(&select(&ctx, &["lib/web"], "/").unwrap()),
        ["/router.ex"]
    );
}

#[test]
fn several_sources_later_ones_win_and_a_file_cannot_replace_a_directory() {
    let f = Fixture::new();
    f.file("a/x", "from a", 0o644)
        .file("b/x", "from b", 0o755)
        .file("c/x/inner", "dir", 0o644);
    let ctx = f.context();

    let selection = select(&ctx, &["a", "b"], "/d/").unwrap();
    assert_eq!(
        summary(&selection),
        ["/d dir 755 implicit", "/d/x file 755"]
    );
    assert!(selection.entries[1].source.ends_with("b/x"));

    let error = select(&ctx, &["a", "c"], "/d/").unwrap_err();
    assert!(is_input_error(&error));
    assert!(
        error_text(&error).contains("`/d/x` would be both a directory and a file"),
        "{error:#}"
    );
}

#[test]
fn wildcards_match_per_component_like_go() {
    let f = Fixture::new();
    f.file("mix.exs", "", 0o644)
        .file("mix.lock", "", 0o644)
        .file("mix", "", 0o644)
        .file(".hidden.txt", "", 0o644)
        .file("a.txt", "", 0o644)
        .file("b.txt", "", 0o644)
        .file("apps/one/mix.exs", "", 0o644)
        .file("apps/two/mix.exs", "", 0o644)
        .file("apps/two/nested/mix.exs", "", 0o644)
        .file("config/dev.exs", "", 0o644);
    let ctx = f.context();

    assert_eq!(
        targets(&select(&ctx, &["mix.*"], "/app/").unwrap()),
        ["/app", "/app/mix.exs", "/app/mix.lock"]
    );
    assert_eq!(
        targets(&select(&ctx, &["*.txt"], "/t/").unwrap()),
        ["/t", "/t/.hidden.txt", "/t/a.txt", "/t/b.txt"],
        "Go's * matches a leading dot"
    );
    assert_eq!(
        targets(&select(&ctx, &["[ab].txt", "?.txt"], "/t/").unwrap()),
        ["/t", "/t/a.txt", "/t/b.txt"]
    );
    // A wildcard per component; `*` never crosses `/`.
    assert_eq!(
        targets(&select(&ctx, &["apps/*/mix.exs"], "/m/").unwrap()),
        ["/m", "/m/mix.exs"],
        "two matches with the same name: the later wins"
    );
    let selection = select(&ctx, &["apps/*/mix.exs"], "/m/").unwrap();
    assert!(selection.entries[1].source.ends_with("apps/two/mix.exs"));
    // A matched directory copies its contents, like a named one.
    assert_eq!(
        targets(&select(&ctx, &["conf*"], "/c/").unwrap()),
        ["/c", "/c/dev.exs"]
    );
    // One match may go to a file destination.
    assert_eq!(
        targets(&select(&ctx, &["config/*.exs"], "/dev.exs").unwrap()),
        ["/dev.exs"]
    );
}

#[test]
fn a_wildcard_may_match_nothing_even_for_every_source() {
    let f = Fixture::new();
    f.file("present.txt", "", 0o644).dir("fixtures", 0o755);
    let ctx = f.context();

    // BuildKit: an empty wildcard copies nothing; the others still copy.
    assert_eq!(
        targets(&select(&ctx, &["requirements.*", "present.txt"], "/app/").unwrap()),
        ["/app", "/app/present.txt"]
    );
    // Every source empty: nothing at all, not even the destination directory.
    let selection = select(&ctx, &["requirements.*", "fixtures/*.sh"], "/app/").unwrap();
    assert!(selection.entries.is_empty(), "{:?}", summary(&selection));

    // But the directory before the wildcard must exist, as in BuildKit.
    let error = select(&ctx, &["folder/b/*"], "/app/").unwrap_err();
    assert!(is_input_error(&error));
    let text = error_text(&error);
    assert!(text.contains("COPY folder/b/*: the directory `folder/b` before the wildcard is not in the build context"), "{text}");
    assert!(
        imgbuild::cli::hint(&error)
            .unwrap()
            .contains("`[f]older/b/*`")
    );
    assert!(
        select(&ctx, &["[f]older/b/*"], "/app/")
            .unwrap()
            .entries
            .is_empty()
    );
    let error = select(&ctx, &["fixtures/sub/*.sh"], "/app/").unwrap_err();
    assert!(
        imgbuild::cli::hint(&error)
            .unwrap()
            .contains("`fixtures/[s]ub/*.sh`")
    );
}

#[test]
fn several_matches_onto_a_file_destination_are_copied_in_turn() {
    // BuildKit copies each match (or source) onto the same path, the last one winning
    // (conformance cases copy-multi-src-file-dest and glob-nomatch-with-other).
    let f = Fixture::new();
    f.file("a.txt", "", 0o644).file("b.txt", "", 0o644);
    let ctx = f.context();
    for srcs in [&["*.txt"][..], &["a.txt", "nomatch*", "b.txt"]] {
        let selection = select(&ctx, srcs, "/notes").unwrap();
        assert_eq!(targets(&selection), ["/notes"], "{srcs:?}");
        assert!(selection.entries[0].source.ends_with("b.txt"), "{srcs:?}");
    }
    assert_eq!(
        targets(&select(&ctx, &["nomatch*", "b.txt"], "/notes").unwrap()),
        ["/notes"],
        "one match: copied as the destination file"
    );
    // An existing directory in the image is a directory destination too.
    let ok = ctx
        .select(
            &sources(&["*.txt"]),
            "/notes",
            &SelectOptions::default(),
            &|p| p == "/notes",
        )
        .unwrap();
    assert_eq!(targets(&ok), ["/notes", "/notes/a.txt", "/notes/b.txt"]);
}

#[test]
fn a_missing_source_is_an_input_error_naming_it() {
    let f = Fixture::new();
    f.file("mix.exs", "", 0o644).file("lib/app.ex", "", 0o644);
    let ctx = f.context();

    let error = select(&ctx, &["mix.exs", "mix.lock"], "/app/").unwrap_err();
    assert!(is_input_error(&error));
    assert_eq!(
        error_text(&error),
        "COPY mix.lock: no such file in the build context"
    );
    assert!(
        imgbuild::cli::hint(&error)
            .unwrap()
            .contains("relative to the build context")
    );

    let error = select(&ctx, &["deps/x/mix.lock"], "/app/").unwrap_err();
    assert_eq!(
        error_text(&error),
        "COPY deps/x/mix.lock: no such file in the build context (`deps` does not exist)"
    );
    let error = select(&ctx, &["mix.exs/x"], "/app/").unwrap_err();
    assert_eq!(
        error_text(&error),
        "COPY mix.exs/x: `mix.exs` is not a directory"
    );

    let add = SelectOptions {
        is_add: true,
        ..SelectOptions::default()
    };
    let error = select_with(&ctx, &["missing.tar"], "/x/", &add).unwrap_err();
    assert_eq!(
        error_text(&error),
        "ADD missing.tar: no such file in the build context"
    );
}

#[test]
fn dockerignore_hides_paths_and_bang_reincludes() {
    let f = Fixture::new();
    f.file(
        ".dockerignore",
        "# build output\n_build\n*.log\n!keep.log\ndeps/\n!deps/kept/\nDockerfile\n",
        0o644,
    )
    .file("Dockerfile", "FROM scratch", 0o644)
    .file("mix.exs", "", 0o644)
    .file("debug.log", "", 0o644)
    .file("keep.log", "", 0o644)
    .file("_build/prod/app.beam", "", 0o644)
    .file("deps/dropped/x.ex", "", 0o644)
    .file("deps/kept/y.ex", "", 0o644);
    let ctx = f.context();

    // The excluded directory `deps` holds a re-included one: it is there, with only that.
    assert_eq!(
        targets(&select(&ctx, &["."], "/app/").unwrap()),
        [
            "/app",
            "/app/.dockerignore",
            "/app/deps",
            "/app/deps/kept",
            "/app/deps/kept/y.ex",
            "/app/keep.log",
            "/app/mix.exs",
        ]
    );
    assert_eq!(
        targets(&select(&ctx, &["*.log"], "/logs/").unwrap()),
        ["/logs", "/logs/keep.log"]
    );
    assert_eq!(
        targets(&select(&ctx, &["deps"], "/deps/").unwrap()),
        ["/deps", "/deps/kept", "/deps/kept/y.ex"]
    );

    // Naming an excluded file says so, with the line that excludes it.
    let error = select(&ctx, &["debug.log"], "/x").unwrap_err();
    assert!(is_input_error(&error));
    assert_eq!(
        error_text(&error),
        "COPY debug.log: the file exists but is excluded by .dockerignore line 3 (`*.log`)"
    );
    assert_eq!(
        imgbuild::cli::hint(&error).as_deref(),
        Some("remove that pattern or add `!debug.log` to .dockerignore")
    );
    // Docker sends an excluded Dockerfile for the build, but COPY cannot see it.
    let error = select(&ctx, &["Dockerfile"], "/x").unwrap_err();
    assert!(
        error_text(&error).contains("excluded by .dockerignore line 7 (`Dockerfile`)"),
        "{error:#}"
    );
    let error = select(&ctx, &["_build/prod/app.beam"], "/x").unwrap_err();
    assert!(
        error_text(&error).contains("excluded by .dockerignore line 2 (`_build`)"),
        "{error:#}"
    );
    let error = select(&ctx, &["deps/dropped"], "/x/").unwrap_err();
    assert!(error_text(&error).contains("line 5 (`deps/`)"), "{error:#}");
}

#[test]
fn an_ignore_file_beside_the_dockerfile_replaces_the_context_s() {
    let f = Fixture::new();
    f.file(".dockerignore", "*.log\n", 0o644)
        .file("a.log", "", 0o644)
        .file("secret.env", "", 0o644)
        .file("build/app.Dockerfile", "FROM scratch", 0o644)
        .file("build/app.Dockerfile.dockerignore", "secret.env\n", 0o644)
        .file("Dockerfile", "FROM scratch", 0o644)
        .file("Dockerfile.dockerignore", "a.log\nsecret.env\n", 0o644);
    let everything = |ctx: &Context| targets(&select(ctx, &["."], "/c/").unwrap());

    // `-f build/app.Dockerfile`: its own file only, not merged with `.dockerignore`.
    let ctx = Context::open_for(&f.root(), Some(&f.root().join("build/app.Dockerfile"))).unwrap();
    let seen = everything(&ctx);
    assert!(seen.contains(&"/c/a.log".to_owned()), "{seen:?}");
    assert!(!seen.contains(&"/c/secret.env".to_owned()), "{seen:?}");
    let error = select(&ctx, &["secret.env"], "/x").unwrap_err();
    let named = format!(
        "{}",
        f.root().join("build/app.Dockerfile.dockerignore").display()
    );
    assert!(
        error_text(&error).contains(&format!("excluded by {named} line 1 (`secret.env`)")),
        "{error:#}"
    );

    // The default Dockerfile's own file too.
    let ctx = Context::open_for(&f.root(), Some(&f.root().join("Dockerfile"))).unwrap();
    let seen = everything(&ctx);
    assert!(!seen.contains(&"/c/a.log".to_owned()), "{seen:?}");
    assert!(!seen.contains(&"/c/secret.env".to_owned()), "{seen:?}");

    // A Dockerfile without one (or from standard input): the context's `.dockerignore`.
    f.file("other.Dockerfile", "FROM scratch", 0o644);
    for dockerfile in [Some(f.root().join("other.Dockerfile")), None] {
        let ctx = Context::open_for(&f.root(), dockerfile.as_deref()).unwrap();
        let seen = everything(&ctx);
        assert!(!seen.contains(&"/c/a.log".to_owned()), "{seen:?}");
        assert!(seen.contains(&"/c/secret.env".to_owned()), "{seen:?}");
    }

    // A bad line is located in the file that has it.
    f.file("build/app.Dockerfile.dockerignore", "[bad\n", 0o644);
    let error =
        Context::open_for(&f.root(), Some(&f.root().join("build/app.Dockerfile"))).unwrap_err();
    assert!(is_input_error(&error));
    assert!(
        error_text(&error).starts_with(&format!("{named}:1: ")),
        "{error:#}"
    );
}

#[test]
fn a_bad_dockerignore_line_is_located() {
    let f = Fixture::new();
    f.file(".dockerignore", "ok\n\n[unclosed\n", 0o644);
    let error = Context::open(&f.root()).unwrap_err();
    assert!(is_input_error(&error));
    let text = error_text(&error);
    assert!(text.starts_with(".dockerignore:3: "), "{text}");
    assert!(text.contains("[unclosed"), "{text}");

    let missing = Context::open(&f.outside().join("nope")).unwrap_err();
    assert!(is_input_error(&missing));
    assert!(error_text(&missing).contains("cannot be opened: no such file or directory"));
}

#[test]
fn modes_are_normalised_and_chmod_overrides_files_and_directories() {
    let f = Fixture::new();
    f.file("src/secret", "", 0o600)
        .file("src/group-writable", "", 0o664)
        .file("src/script", "", 0o700)
        .file("src/tool", "", 0o775)
        .dir("src/private", 0o700)
        .symlink("src/link", "tool");
    let ctx = f.context();

    assert_eq!(
        summary(&select(&ctx, &["src"], "/s").unwrap()),
        [
            "/s dir 755 implicit",
            "/s/group-writable file 644",
            "/s/link symlink -> tool 777",
            "/s/private dir 755",
            "/s/script file 755",
            "/s/secret file 644",
            "/s/tool file 755",
        ]
    );
    let chmod = SelectOptions {
        chmod: Some(imgbuild::oci::layer::Chmod::Octal(0o640)),
        ..SelectOptions::default()
    };
    assert_eq!(
        summary(&select_with(&ctx, &["src"], "/s", &chmod).unwrap()),
        [
            "/s dir 640 implicit",
            "/s/group-writable file 640",
            "/s/link symlink -> tool 777",
            "/s/private dir 640",
            "/s/script file 640",
            "/s/secret file 640",
            "/s/tool file 640",
        ]
    );
    let selection = select(&ctx, &["src/script"], "/x").unwrap();
    assert_eq!(
        selection.entries[0].kind,
        EntryKind::File {
            size: 0,
            executable: true
        }
    );
}

#[test]
fn symlinks_inside_directories_are_copied_and_named_ones_followed() {
    let f = Fixture::new();
    f.file("real/data.txt", "data", 0o644)
        .file("real/sub/deep.txt", "deep", 0o644)
        .symlink("real/abs", "/etc/passwd")
        .symlink("real/up", "../../outside")
        .symlink("to-file", "real/data.txt")
        .symlink("to-dir", "real/sub")
        .symlink("chain", "to-file")
        .symlink("links/rel", "../real");
    let ctx = f.context();
    let root = f.root().canonicalize().unwrap();

    // Inside a copied directory: symlinks stay symlinks, whatever they point to.
    assert_eq!(
        summary(&select(&ctx, &["real"], "/r").unwrap()),
        [
            "/r dir 755 implicit",
            "/r/abs symlink -> /etc/passwd 777",
            "/r/data.txt file 644",
            "/r/sub dir 755",
            "/r/sub/deep.txt file 644",
            "/r/up symlink -> ../../outside 777",
        ]
    );
    // Named as a source: followed, keeping the name written.
    let selection = select(&ctx, &["to-file", "chain"], "/f/").unwrap();
    assert_eq!(
        summary(&selection),
        [
            "/f dir 755 implicit",
            "/f/chain file 644",
            "/f/to-file file 644"
        ]
    );
    assert_eq!(selection.entries[1].source, root.join("real/data.txt"));
    assert_eq!(
        targets(&select(&ctx, &["to-dir"], "/d").unwrap()),
        ["/d", "/d/deep.txt"]
    );
    // A symlink on the path, and a wildcard match that is a symlink.
    let selection = select(&ctx, &["links/rel/data.txt"], "/x").unwrap();
    assert_eq!(selection.entries[0].source, root.join("real/data.txt"));
    let selection = select(&ctx, &["to-f*"], "/w/").unwrap();
    assert_eq!(
        summary(&selection),
        ["/w dir 755 implicit", "/w/to-file file 644"]
    );
}

#[test]
fn hard_links_within_a_source_are_kept() {
    let f = Fixture::new();
    f.file("bin/tool", "#!/bin/sh", 0o755)
        .hardlink("bin/tool-alias", "bin/tool")
        .file("other", "", 0o644);
    let ctx = f.context();

    assert_eq!(
        summary(&select(&ctx, &["bin"], "/usr/bin/").unwrap()),
        [
            "/usr/bin dir 755 implicit",
            "/usr/bin/tool file 755",
            "/usr/bin/tool-alias hardlink -> /usr/bin/tool 755",
        ]
    );
    // Separate sources are separate copies, as in BuildKit.
    assert_eq!(
        summary(&select(&ctx, &["bin/tool", "bin/tool-alias"], "/x/").unwrap()),
        [
            "/x dir 755 implicit",
            "/x/tool file 755",
            "/x/tool-alias file 755"
        ]
    );
}

#[test]
fn sockets_are_empty_files_and_fifos_are_skipped_with_a_warning() {
    let f = Fixture::new();
    f.file("run/ok.txt", "", 0o644);
    let _listener = UnixListener::bind(f.path("run/app.sock")).unwrap();
    let _named = UnixListener::bind(f.path("alone.sock")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(f.path("run/pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let ctx = f.context();

    // As BuildKit's context transfer turns them (testCopySocket); the digest never opens one.
    let selection = select(&ctx, &["run"], "/run/").unwrap();
    assert_eq!(
        summary(&selection),
        [
            "/run dir 755 implicit",
            "/run/app.sock socket 755",
            "/run/ok.txt file 644"
        ]
    );
    ctx.digest(&selection).unwrap();
    let warnings: Vec<String> = selection.skipped.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        warnings,
        ["skipped `run/pipe`: a FIFO cannot be copied into an image"]
    );
    let named = select(&ctx, &["alone.sock"], "/x").unwrap();
    assert_eq!(summary(&named), ["/x socket 755"]);
}

#[test]
fn exclude_flag_applies_relative_to_each_source() {
    let f = Fixture::new();
    f.file("docs/guide.md", "", 0o644)
        .file("docs/api/index.md", "", 0o644)
        .file("docs/api/keep.md", "", 0o644)
        .file("docs/logo.png", "", 0o644)
        .file("home.txt", "", 0o644)
        .file("home.md", "", 0o644)
        .file("homepage.rs", "", 0o644);
    let ctx = f.context();
    let opts = |patterns: &[&str]| SelectOptions {
        exclude: patterns.iter().map(|s| s.to_string()).collect(),
        ..SelectOptions::default()
    };

    assert_eq!(
        targets(&select_with(&ctx, &["docs"], "/d/", &opts(&["*.md"])).unwrap()),
        [
            "/d",
            "/d/api",
            "/d/api/index.md",
            "/d/api/keep.md",
            "/d/logo.png"
        ],
        "`*.md` is relative to the copied directory and does not cross `/`"
    );
    assert_eq!(
        targets(&select_with(&ctx, &["docs"], "/d/", &opts(&["**/*.md", "!api/keep.md"])).unwrap()),
        ["/d", "/d/api", "/d/api/keep.md", "/d/logo.png"]
    );
    // Docker's example: everything starting with "hom" but the .txt and .md files.
    assert_eq!(
        targets(&select_with(&ctx, &["hom*"], "/mydir/", &opts(&["*.txt", "*.md"])).unwrap()),
        ["/mydir", "/mydir/homepage.rs"]
    );
    // A directory the wildcard matches is copied, its contents filtered, even when the
    // patterns name it too (testExcludedFilesOnCopy: `--exclude=* dir* /6` gives `/6`).
    assert_eq!(
        targets(&select_with(&ctx, &["doc*"], "/d", &opts(&["*"])).unwrap()),
        ["/d"]
    );
    let error = select_with(&ctx, &["docs"], "/d/", &opts(&["[bad"])).unwrap_err();
    assert!(is_input_error(&error));
    assert!(
        error_text(&error).starts_with("COPY --exclude: invalid pattern `[bad`"),
        "{error:#}"
    );
}

#[test]
fn parents_keep_the_source_paths() {
    let f = Fixture::new();
    f.file("x/a.txt", "x", 0o644)
        .file("y/a.txt", "y", 0o644)
        .file("y/b.txt", "", 0o644)
        .file("base/sub/deep/f", "", 0o644)
        .file("base/other", "", 0o644)
        .dir("x/private", 0o700);
    let ctx = f.context();
    let parents = SelectOptions {
        parents: true,
        ..SelectOptions::default()
    };

    assert_eq!(
        summary(&select_with(&ctx, &["./x/a.txt", "./y/a.txt"], "/parents/", &parents).unwrap()),
        [
            "/parents dir 755 implicit",
            "/parents/x dir 755",
            "/parents/x/a.txt file 644",
            "/parents/y dir 755",
            "/parents/y/a.txt file 644",
        ]
    );
    assert_eq!(
        targets(&select_with(&ctx, &["*/a.txt"], "/p/", &parents).unwrap()),
        ["/p", "/p/x", "/p/x/a.txt", "/p/y", "/p/y/a.txt"]
    );
    // `/./` pivots: only the part after it is kept.
    assert_eq!(
        targets(&select_with(&ctx, &["base/./sub/deep"], "/p/", &parents).unwrap()),
        ["/p", "/p/sub", "/p/sub/deep", "/p/sub/deep/f"]
    );
    assert_eq!(
        targets(&select_with(&ctx, &["y"], "/p/", &parents).unwrap()),
        ["/p", "/p/y", "/p/y/a.txt", "/p/y/b.txt"]
    );
    let error = select_with(&ctx, &["x/nope.txt"], "/p/", &parents).unwrap_err();
    assert!(is_input_error(&error));
    assert!(
        error_text(&error).contains("COPY x/nope.txt: no such file in the build context"),
        "{error:#}"
    );
}

#[test]
fn add_extracts_local_tar_archives_and_copies_other_files() {
    let f = Fixture::new();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "inside.txt", &b"hi"[..])
        .unwrap();
    let tar_bytes = builder.into_inner().unwrap();
    std::fs::write(f.path("vendor.tar"), &tar_bytes).unwrap();
    std::fs::write(f.path("vendor-renamed.bin"), &tar_bytes).unwrap();
    f.file("notes.txt", "not an archive", 0o644)
        .symlink("current.tar", "vendor.tar");
    let ctx = f.context();
    let add = SelectOptions {
        is_add: true,
        ..SelectOptions::default()
    };

    assert_eq!(
        summary(&select_with(&ctx, &["vendor.tar"], "/opt/vendor", &add).unwrap()),
        ["/opt/vendor archive 755"],
        "extracted into the destination, trailing slash or not"
    );
    assert_eq!(
        summary(
            &select_with(
                &ctx,
                &["vendor-renamed.bin", "notes.txt", "current.tar"],
                "/opt/",
                &add
            )
            .unwrap()
        ),
        [
            "/opt dir 755 implicit",
            "/opt archive 755",
            "/opt archive 755",
            "/opt/notes.txt file 644"
        ],
    );
    // COPY never extracts.
    assert_eq!(
        summary(&select(&ctx, &["vendor.tar"], "/opt/").unwrap()),
        ["/opt dir 755 implicit", "/opt/vendor.tar file 644"]
    );
}

#[test]
fn entries_are_sorted_parents_first() {
    let f = Fixture::new();
    f.file("t/a-b", "", 0o644)
        .file("t/a/b", "", 0o644)
        .file("t/a/c/d", "", 0o644)
        .file("t/0", "", 0o644);
    let ctx = f.context();
    assert_eq!(
        targets(&select(&ctx, &["t"], "/t").unwrap()),
        [
            "/t", "/t/0", "/t/a", "/t/a/b", "/t/a/c", "/t/a/c/d", "/t/a-b"
        ]
    );
}

#[test]
fn deep_trees_are_walked_without_recursion() {
    let f = Fixture::new();
    // Far deeper than a recursive walk with a large frame could take on a test thread.
    let mut rel = String::from("deep");
    for _ in 0..300 {
        rel.push_str("/d");
    }
    f.file(&format!("{rel}/leaf"), "leaf", 0o644);
    let ctx = f.context();
    let selection = select(&ctx, &["deep"], "/x").unwrap();
    assert_eq!(selection.entries.len(), 302);
    assert!(
        selection
            .entries
            .last()
            .unwrap()
            .target
            .ends_with("/d/leaf")
    );
}

#[test]
fn names_that_are_not_utf8_are_refused_not_dropped() {
    use std::os::unix::ffi::OsStrExt;
    let f = Fixture::new();
    f.file("d/ok.txt", "", 0o644);
    let bad = std::ffi::OsStr::from_bytes(b"bad\xff.txt");
    std::fs::write(f.path("d").join(bad), "").unwrap();
    let ctx = f.context();
    for source in ["d", "d/*.txt"] {
        let error = select(&ctx, &[source], "/x/").unwrap_err();
        assert!(is_input_error(&error));
        assert_eq!(
            error_text(&error),
            "`d/bad\u{fffd}.txt` in the build context has a name that is not UTF-8"
        );
    }
    assert_eq!(
        targets(&select(&ctx, &["d/ok*"], "/x/").unwrap()),
        ["/x", "/x/ok.txt"]
    );
}
