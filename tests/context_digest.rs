//! The cache key of a COPY: identical for the same files whatever their mtimes, the umask
//! that made them or where the context lives; different when anything the image would
//! hold changes (content, name, exec bit, symlink target, mode by --chmod), and blind to
//! files the step does not copy.

#[path = "context_fixture.rs"]
mod fixture;

use fixture::{Fixture, select, select_with, set_mtime};
use imgbuild::context::{SelectOptions, SelectionDigest};

/// An Elixir-like project. `umask_like` decides the permission bits the checkout left:
/// 0o022 gives 0644/0755, 0o002 gives 0664/0775.
fn project(umask_like: u32, mtime: u64) -> Fixture {
    let file_mode = 0o666 & !umask_like;
    let exec_mode = 0o777 & !umask_like;
    let dir_mode = 0o777 & !umask_like;
    let f = Fixture::new();
    f.file("mix.exs", "defmodule App.MixProject do end\n", file_mode)
        .file(
            "mix.lock",
            "%{\"jason\": {:hex, :jason, \"1.4.1\"}}\n",
            file_mode,
        )
        .file("lib/app.ex", "defmodule App do end\n", file_mode)
        .file("lib/app/web.ex", "defmodule App.Web do end\n", file_mode)
        .file(
            "rel/overlays/bin/server",
            "#!/bin/sh\nexec app start\n",
            exec_mode,
        )
        .symlink("rel/overlays/bin/start", "server")
        .dir("lib", dir_mode)
        .dir("lib/app", dir_mode)
        .dir("rel", dir_mode)
        .dir("rel/overlays", dir_mode)
        .dir("rel/overlays/bin", dir_mode);
    for rel in [
        "mix.exs",
        "mix.lock",
        "lib/app.ex",
        "lib/app/web.ex",
        "rel/overlays/bin/server",
        "lib/app",
        "lib",
    ] {
        set_mtime(&f.path(rel), mtime);
    }
    f
}

fn digest_of(f: &Fixture, sources: &[&str], dest: &str) -> SelectionDigest {
    let ctx = f.context();
    let selection = select(&ctx, sources, dest).unwrap();
    ctx.digest(&selection).unwrap()
}

/// A change made to a fresh project.
type Change = Box<dyn Fn(&Fixture)>;

const STEPS: &[(&[&str], &str)] = &[
    (&["mix.exs", "mix.lock"], "/app/"),
    (&["."], "/app/"),
    (&["lib"], "/app/lib"),
    (&["rel"], "/app/rel"),
];

#[test]
fn mtimes_umask_and_location_do_not_change_the_digest() {
    let a = project(0o022, 1_600_000_000);
    let b = project(0o002, 1_700_000_000);
    for (sources, dest) in STEPS {
        let (da, db) = (digest_of(&a, sources, dest), digest_of(&b, sources, dest));
        assert_eq!(da, db, "COPY {sources:?} {dest}");
        assert!(da.digest.starts_with("sha256:") && da.digest.len() == 71);
    }
}

#[test]
fn the_lockfile_step_ignores_source_edits_and_sees_lockfile_changes() {
    let f = project(0o022, 1_600_000_000);
    let deps_step = digest_of(&f, &["mix.exs", "mix.lock"], "/app/");
    let whole = digest_of(&f, &["."], "/app/");

    f.file(
        "lib/app.ex",
        "defmodule App do def hello, do: :world end\n",
        0o644,
    );
    assert_eq!(digest_of(&f, &["mix.exs", "mix.lock"], "/app/"), deps_step);
    let after_edit = digest_of(&f, &["."], "/app/");
    assert_ne!(after_edit.digest, whole.digest);
    // The per-file digests say which file changed.
    let changed: Vec<&String> = after_edit
        .files
        .iter()
        .filter(|(path, hash)| whole.files.get(*path) != Some(hash))
        .map(|(path, _)| path)
        .collect();
    assert_eq!(changed, ["lib/app.ex"]);

    f.file(
        "mix.lock",
        "%{\"jason\": {:hex, :jason, \"1.4.2\"}}\n",
        0o644,
    );
    let after_lock = digest_of(&f, &["mix.exs", "mix.lock"], "/app/");
    assert_ne!(after_lock.digest, deps_step.digest);
    assert_ne!(after_lock.files["mix.lock"], deps_step.files["mix.lock"]);
    assert_eq!(after_lock.files["mix.exs"], deps_step.files["mix.exs"]);
}

#[test]
fn every_property_of_the_image_changes_the_digest() {
    let base = project(0o022, 1_600_000_000);
    let before = digest_of(&base, &["."], "/app/");

    let changes: Vec<(&str, Change)> = vec![
        (
            "content",
            Box::new(|f| {
                f.file(
                    "lib/app/web.ex",
                    "defmodule App.Web do :changed end\n",
                    0o644,
                );
            }),
        ),
        (
            "same size, other bytes",
            Box::new(|f| {
                f.file("lib/app/web.ex", "defmodule App.Wex do end\n", 0o644);
            }),
        ),
        (
            "a name",
            Box::new(|f| {
                std::fs::rename(f.path("lib/app/web.ex"), f.path("lib/app/www.ex")).unwrap();
            }),
        ),
        (
            "an exec bit",
            Box::new(|f| {
                f.file("lib/app.ex", "defmodule App do end\n", 0o744);
            }),
        ),
        (
            "a symlink target",
            Box::new(|f| {
                std::fs::remove_file(f.path("rel/overlays/bin/start")).unwrap();
                f.symlink("rel/overlays/bin/start", "./server");
            }),
        ),
        (
            "a file becoming a symlink",
            Box::new(|f| {
                std::fs::remove_file(f.path("lib/app.ex")).unwrap();
                f.symlink("lib/app.ex", "app/web.ex");
            }),
        ),
        (
            "an added file",
            Box::new(|f| {
                f.file("lib/new.ex", "", 0o644);
            }),
        ),
        (
            "an added empty directory",
            Box::new(|f| {
                f.dir("priv", 0o755);
            }),
        ),
    ];
    for (what, change) in changes {
        let f = project(0o022, 1_600_000_000);
        change(&f);
        assert_ne!(
            digest_of(&f, &["."], "/app/").digest,
            before.digest,
            "{what}"
        );
    }

    // The destination and --chmod are part of what the image holds.
    assert_ne!(digest_of(&base, &["."], "/srv/").digest, before.digest);
    let ctx = base.context();
    let chmod = SelectOptions {
        chmod: Some(imgbuild::oci::layer::Chmod::Octal(0o700)),
        ..SelectOptions::default()
    };
    let selection = select_with(&ctx, &["."], "/app/", &chmod).unwrap();
    assert_ne!(ctx.digest(&selection).unwrap().digest, before.digest);
}

#[test]
fn hard_links_and_archives_are_part_of_the_digest() {
    let f = Fixture::new();
    f.file("bin/a", "same bytes", 0o755)
        .file("bin/b", "same bytes", 0o755);
    let copies = digest_of(&f, &["bin"], "/bin/");
    std::fs::remove_file(f.path("bin/b")).unwrap();
    f.hardlink("bin/b", "bin/a");
    let linked = digest_of(&f, &["bin"], "/bin/");
    assert_ne!(
        copies.digest, linked.digest,
        "a hard link is not a copy in the layer"
    );
    assert_eq!(linked.files["bin/a"], linked.files["bin/b"]);

    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.set_cksum();
    builder.append_data(&mut header, "x", &b"x"[..]).unwrap();
    std::fs::write(f.path("v.tar"), builder.into_inner().unwrap()).unwrap();
    let ctx = f.context();
    let add = SelectOptions {
        is_add: true,
        ..SelectOptions::default()
    };
    let extracted = ctx
        .digest(&select_with(&ctx, &["v.tar"], "/v/", &add).unwrap())
        .unwrap();
    let copied = ctx
        .digest(&select(&ctx, &["v.tar"], "/v/").unwrap())
        .unwrap();
    assert_ne!(extracted.digest, copied.digest);
    assert_eq!(extracted.files["v.tar"], copied.files["v.tar"]);
}

#[test]
fn a_file_changed_after_selection_is_refused() {
    let f = Fixture::new();
    f.file("data.bin", "twelve bytes", 0o644);
    let ctx = f.context();
    let selection = select(&ctx, &["data.bin"], "/d").unwrap();
    f.file("data.bin", "now it is longer", 0o644);
    let error = ctx.digest(&selection).unwrap_err();
    assert!(
        format!("{error:#}")
            .contains("changed while imgbuild was reading the build context (12 bytes, then 16)"),
        "{error:#}"
    );
    // Replaced by a symlink (to a secret elsewhere): not followed.
    std::fs::remove_file(f.path("data.bin")).unwrap();
    std::fs::write(f.outside().join("secret"), "twelve bytes").unwrap();
    f.symlink("data.bin", f.outside().join("secret").to_str().unwrap());
    let error = ctx.digest(&selection).unwrap_err();
    assert!(format!("{error:#}").contains("reading `"), "{error:#}");
}

#[test]
fn many_files_hash_in_parallel_like_one() {
    // Above the threshold for threads: the result must not depend on scheduling.
    let f = Fixture::new();
    for i in 0..500 {
        f.file(
            &format!("many/{i:03}.txt"),
            &format!("file {i}\n").repeat(i % 7 + 1),
            0o644,
        );
    }
    let first = digest_of(&f, &["many"], "/m/");
    assert_eq!(first.files.len(), 500);
    for _ in 0..3 {
        assert_eq!(digest_of(&f, &["many"], "/m/"), first);
    }
}
