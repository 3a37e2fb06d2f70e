//! COPY never reads outside the build context: `..` stops at its root, absolute paths are
//! relative to it, symlinks that lead out (absolute, `..`, loops) are refused with an
//! error naming the path; symlinks inside
//! copied directories are copied as links, not followed.

#[path = "context_fixture.rs"]
mod fixture;

use fixture::{Fixture, error_text, select, summary};
use imgbuild::cli::is_input_error;

/// A fixture with a secret next to the context, where an escape would land.
fn with_secret_outside() -> Fixture {
    let f = Fixture::new();
    std::fs::write(f.outside().join("secret"), "outside").unwrap();
    std::fs::create_dir(f.outside().join("sibling")).unwrap();
    std::fs::write(f.outside().join("sibling/key"), "outside").unwrap();
    f.file("app.txt", "inside", 0o644);
    f
}

fn refused(f: &Fixture, source: &str) -> String {
    let error = select(&f.context(), &[source], "/x/").unwrap_err();
    assert!(is_input_error(&error), "{error:#}");
    error_text(&error)
}

/// `..` above the context's root stops there, as BuildKit cleans a source from the root:
/// the file outside is never read, a namesake inside is what is copied.
#[test]
fn dot_dot_above_the_root_stays_at_the_root() {
    let f = with_secret_outside();
    for source in ["../secret", "a/../../secret", "/../secret"] {
        assert_eq!(
            refused(&f, source),
            format!("COPY {source}: no such file in the build context (`secret` does not exist)")
        );
    }
    for source in ["../app.txt", "sub/../../app.txt", "/../app.txt"] {
        let copied = select(&f.context(), &[source], "/x").unwrap();
        assert_eq!(summary(&copied), ["/x file 644"], "{source}");
    }
    // `..` that stays inside is applied.
    let ok = select(&f.context(), &["sub/../app.txt"], "/x").unwrap();
    assert_eq!(summary(&ok), ["/x file 644"]);
}

#[test]
fn absolute_sources_are_relative_to_the_context_root() {
    let f = with_secret_outside();
    // There is no etc/passwd in the context: the host's is never read.
    assert_eq!(
        refused(&f, "/etc/passwd"),
        "COPY /etc/passwd: no such file in the build context (`etc` does not exist)"
    );
    f.file("etc/passwd", "context's own", 0o644);
    let selection = select(&f.context(), &["/etc/passwd"], "/x").unwrap();
    assert_eq!(
        selection.entries[0].source,
        f.root().canonicalize().unwrap().join("etc/passwd")
    );
}

#[test]
fn a_symlink_to_an_absolute_path_resolves_inside_the_context() {
    // As in BuildKit: the context is the root an absolute link is resolved against, so the
    // host's files are never read.
    let f = with_secret_outside();
    f.symlink("etc-link", "/etc")
        .symlink("passwd-link", "/etc/passwd");
    assert_eq!(
        refused(&f, "passwd-link"),
        "COPY passwd-link: no such file in the build context (`etc` does not exist)"
    );
    assert!(refused(&f, "etc-link/passwd").contains("`etc` does not exist"));
    f.file("etc/passwd", "context's own", 0o644);
    let own = f.root().canonicalize().unwrap().join("etc/passwd");
    for src in ["passwd-link", "etc-link/passwd"] {
        let selection = select(&f.context(), &[src], "/x").unwrap();
        assert_eq!(selection.entries[0].source, own, "{src}");
    }
    // One that names a file of the context by its absolute host path names another path
    // inside the context: the context may be anywhere on another machine.
    let absolute_inside = f.root().canonicalize().unwrap().join("app.txt");
    f.symlink("abs-inside", absolute_inside.to_str().unwrap());
    assert!(refused(&f, "abs-inside").contains("does not exist"));
}

#[test]
fn a_symlink_leading_above_the_root_is_refused() {
    let f = with_secret_outside();
    f.symlink("up", "..")
        .symlink("secret-link", "../secret")
        .symlink("deep/sneaky", "../../sibling/key")
        .symlink("deep/fine", "../app.txt");
    assert_eq!(
        refused(&f, "up"),
        "COPY up: the symlink `up` points to `..`, outside the build context"
    );
    assert!(refused(&f, "up/secret").contains("the symlink `up` points to `..`"));
    assert!(refused(&f, "secret-link").contains("the symlink `secret-link` points to `../secret`"));
    assert!(
        refused(&f, "deep/sneaky")
            .contains("the symlink `deep/sneaky` points to `../../sibling/key`")
    );
    // Wildcard matches are followed too, with the same limit.
    assert!(refused(&f, "secret-*").contains("`secret-link` points to `../secret`"));
    // A relative link that stays inside is followed.
    let ok = select(&f.context(), &["deep/fine"], "/x").unwrap();
    assert_eq!(
        ok.entries[0].source,
        f.root().canonicalize().unwrap().join("app.txt")
    );
}

#[test]
fn symlink_loops_are_refused() {
    let f = with_secret_outside();
    f.symlink("a", "b")
        .symlink("b", "a")
        .symlink("self", "self")
        .symlink("dir/loop", "../dir/loop");
    for source in ["a", "self", "dir/loop", "a/x"] {
        let text = refused(&f, source);
        assert!(
            text.contains("too many levels of symlinks"),
            "{source}: {text}"
        );
    }
}

#[test]
fn symlinks_inside_a_copied_directory_are_not_followed() {
    let f = with_secret_outside();
    f.symlink("conf/etc", "/etc")
        .symlink("conf/up", "..")
        .symlink("conf/secret", "../../secret")
        .symlink("conf/loop", "loop");
    let selection = select(&f.context(), &["conf"], "/conf").unwrap();
    assert_eq!(
        summary(&selection),
        [
            "/conf dir 755 implicit",
            "/conf/etc symlink -> /etc 777",
            "/conf/loop symlink -> loop 777",
            "/conf/secret symlink -> ../../secret 777",
            "/conf/up symlink -> .. 777",
        ]
    );
    // Only the links' own text goes into the digest, never what they point to.
    let digest = f.context().digest(&selection).unwrap();
    assert!(digest.files.is_empty(), "{:?}", digest.files);
}
