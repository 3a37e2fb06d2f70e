//! `ADD git…`: BuildKit's git source with the `git` command line. A ref is resolved with
//! `git ls-remote` (the key); the commit is fetched into a bare repository kept in the
//! cache dir per remote, and checked out into a temporary directory when the step runs,
//! with its submodules (each fetched the same way).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

use super::{Fetcher, GitSource, redact_url, scrub};

/// A source parsed from an `ADD` argument, before the instruction's flags are merged in.
pub(super) struct Parsed {
    pub source: GitSource,
    /// `?keep-git-dir=…` when the URL says it.
    pub keep_git_dir_query: Option<bool>,
}

/// BuildKit's `dfgitutil.ParseGitRef`, for ADD: `Ok(None)` when `src` is not a git source.
pub(super) fn parse(src: &str) -> Result<Option<Parsed>, String> {
    if src.starts_with("./") || src.starts_with("../") || src.starts_with("github.com/") {
        // `github.com/…` is a git source only for build contexts; ADD reads it as a path.
        return Ok(None);
    }
    let (without_fragment, fragment) = match src.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (src, None),
    };
    let (remote, query) = match without_fragment.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (without_fragment, None),
    };
    match scheme(src) {
        Some(scheme) => match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => {
                let path_start = remote
                    .get(scheme.len() + 3..)
                    .and_then(|rest| rest.find('/'))
                    .map_or(remote.len(), |i| i + scheme.len() + 3);
                if !remote[path_start..].ends_with(".git") {
                    return Ok(None);
                }
            }
            "git" | "ssh" => {}
            _ => return Ok(None),
        },
        None if is_scp_style(src) => {}
        None => return Ok(None),
    }
    with_fragment(remote, fragment, query).map(Some)
}

/// A git source of `remote` with the fragment (`ref:subdir`) and query of its URL.
pub(super) fn with_fragment(
    remote: &str,
    fragment: Option<&str>,
    query: Option<&str>,
) -> Result<Parsed, String> {
    let mut source = GitSource {
        remote: remote.to_owned(),
        reference: None,
        subdir: String::new(),
        keep_git_dir: false,
        checksum: None,
        submodules: true,
    };
    if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
        let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        source.reference = Some(reference.to_owned()).filter(|r| !r.is_empty());
        source.subdir = clean_subdir(subdir);
    }
    let mut keep_git_dir_query = None;
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        keep_git_dir_query = load_query(&mut source, query)?;
    }
    Ok(Parsed {
        source,
        keep_git_dir_query,
    })
}

/// `[a-zA-Z0-9]+` before `://`.
fn scheme(src: &str) -> Option<&str> {
    let (scheme, _) = src.split_once("://")?;
    (!scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(scheme)
}

/// `user@host:path` (git's scp-like syntax): user `[A-Za-z0-9-_]+`, host `[A-Za-z0-9-.]+`.
fn is_scp_style(src: &str) -> bool {
    let Some((user, rest)) = src.split_once('@') else {
        return false;
    };
    let Some((host, _)) = rest.split_once(':') else {
        return false;
    };
    !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `path.Join("/", subdir)` without the leading `/`.
fn clean_subdir(subdir: &str) -> String {
    crate::context::clean_dest(&format!("/{subdir}"))
        .trim_start_matches('/')
        .to_owned()
}

fn load_query(source: &mut GitSource, query: &str) -> Result<Option<bool>, String> {
    let mut seen = std::collections::BTreeSet::new();
    let (mut tag, mut branch, mut keep) = (None, None, None);
    let flag = |key: &str, value: &str| -> Result<bool, String> {
        match value {
            "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(format!("invalid {key} value: {value:?}")),
        }
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = super::http::percent_decode(value);
        if !seen.insert(key.to_owned()) {
            return Err(format!("query {key:?} has multiple values"));
        }
        if value.is_empty() && !matches!(key, "submodules" | "keep-git-dir" | "fetch-by-commit") {
            return Err(format!("query {key:?} has no value"));
        }
        match key {
            "ref" => {
                if let Some(r) = &source.reference
                    && *r != value
                {
                    return Err(format!("ref conflicts: {r:?} vs {value:?}"));
                }
                source.reference = Some(value);
            }
            "tag" => tag = Some(value),
            "branch" => branch = Some(value),
            "subdir" => {
                let value = clean_subdir(&value);
                if !source.subdir.is_empty() && source.subdir != value {
                    return Err(format!(
                        "subdir conflicts: {:?} vs {value:?}",
                        source.subdir
                    ));
                }
                source.subdir = value;
            }
            "checksum" | "commit" => source.checksum = Some(value),
            "keep-git-dir" => keep = Some(flag(key, &value)?),
            "submodules" => source.submodules = flag(key, &value)?,
            "fetch-by-commit" => {
                flag(key, &value)?;
            }
            "mtime" if matches!(value.as_str(), "checkout" | "commit") => {
                // imgbuild's mtimes are the source date epoch either way.
            }
            "mtime" => {
                return Err(format!(
                    "invalid mtime value: {value:?} (must be \"checkout\" or \"commit\")"
                ));
            }
            other => return Err(format!("unexpected query {other:?}")),
        }
    }
    for (name, prefix, value) in [
        ("tag", "refs/tags/", &tag),
        ("branch", "refs/heads/", &branch),
    ] {
        let Some(value) = value else { continue };
        if name == "branch" && tag.is_some() {
            return Err("branch conflicts with tag".into());
        }
        let full = if value.starts_with(prefix) {
            value.clone()
        } else {
            format!("{prefix}{value}")
        };
        if let Some(r) = &source.reference
            && *r != full
        {
            return Err(format!("ref conflicts: {r:?} vs {full:?}"));
        }
        source.reference = Some(full);
    }
    Ok(keep)
}

/// A full commit hash (SHA-1 or SHA-256).
fn is_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Runs git without a terminal prompt for credentials; its error (stderr) with every
/// credential of `remote` scrubbed.
fn git(args: &[&str], dir: Option<&Path>, remote: &str) -> anyhow::Result<String> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let output = cmd
        .output()
        .context("running `git` (install git to ADD from git repositories)")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = last[last.len().saturating_sub(3)..].join("; ");
        bail!("{}", scrub(&tail, remote));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The commit `source`'s ref names on the remote now, and the full ref it matched, as
/// BuildKit resolves it: a full commit hash as it is; a branch before a tag of the same
/// name; an annotated tag to its commit unless `.git` is kept.
pub(super) async fn resolve(
    _fetcher: &Fetcher,
    source: &GitSource,
) -> anyhow::Result<(String, Option<String>)> {
    let remote = source.remote.clone();
    let shown = redact_url(&remote);
    if let Some(r) = source.reference.as_deref().filter(|r| is_commit(r)) {
        check_checksum(source, r, "")?;
        return Ok((r.to_owned(), None));
    }
    let source = source.clone();
    tokio::task::block_in_place(move || {
        let reference = match &source.reference {
            Some(r) => r.clone(),
            None => default_branch(&remote)?,
        };
        let peeled = format!("{reference}^{{}}");
        let listing = git(
            &["ls-remote", "--", &remote, &reference, &peeled],
            None,
            &remote,
        )
        .with_context(|| format!("failed to fetch remote {shown}"))?;
        let bare = reference.trim_start_matches("refs/");
        let partial = format!("refs/{bare}");
        let head = format!("refs/heads/{}", reference.trim_start_matches("refs/heads/"));
        let tag = format!("refs/tags/{}", reference.trim_start_matches("refs/tags/"));
        let annotated = format!("{tag}^{{}}");
        let (mut exact, mut head_sha, mut tag_sha, mut peeled_sha) = (None, None, None, None);
        for line in listing.lines() {
            let Some((sha, name)) = line.split_once('\t') else {
                continue;
            };
            let slot = if name == head {
                &mut head_sha
            } else if name == tag {
                &mut tag_sha
            } else if name == annotated {
                &mut peeled_sha
            } else if name == partial {
                &mut exact
            } else {
                continue;
            };
            *slot = Some((sha.to_owned(), name.to_owned()));
        }
        let found = exact.or(head_sha);
        let from_branch = found.is_some();
        let (sha, name) = found.or(tag_sha).ok_or_else(|| {
            anyhow::anyhow!("repository {shown} does not contain ref {reference}")
        })?;
        let peeled_sha = if from_branch {
            String::new()
        } else {
            peeled_sha.map(|(s, _)| s).unwrap_or_default()
        };
        if !is_commit(&sha) {
            bail!("{shown}: invalid commit sha {sha:?}");
        }
        check_checksum(&source, &sha, &peeled_sha)?;
        // Without .git, an annotated tag is its commit (more keys shared).
        let commit = if !peeled_sha.is_empty() && !source.keep_git_dir {
            peeled_sha
        } else {
            sha
        };
        Ok((commit, Some(name)))
    })
}

fn check_checksum(source: &GitSource, sha: &str, peeled: &str) -> anyhow::Result<()> {
    if let Some(sum) = &source.checksum
        && !sha.starts_with(sum.as_str())
        && (peeled.is_empty() || !peeled.starts_with(sum.as_str()))
    {
        let got = if peeled.is_empty() {
            sha.to_owned()
        } else {
            format!("{sha} or {peeled}")
        };
        bail!(
            "{}: expected checksum to match {sum}, got {got}",
            redact_url(&source.remote)
        );
    }
    Ok(())
}

/// The branch the remote's HEAD points to.
fn default_branch(remote: &str) -> anyhow::Result<String> {
    let out = git(
        &["ls-remote", "--symref", "--", remote, "HEAD"],
        None,
        remote,
    )
    .with_context(|| format!("failed to fetch remote {}", redact_url(remote)))?;
    out.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("ref:")?;
            let (target, name) = rest.trim().split_once('\t')?;
            (name == "HEAD").then(|| target.trim().to_owned())
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "could not find the default branch of {}: name a ref (#branch)",
                redact_url(remote)
            )
        })
}

/// A checked-out tree in a temporary directory, removed when dropped.
pub struct Checkout {
    _dir: tempfile::TempDir,
    /// What is copied: the tree, or its subdirectory.
    pub root: PathBuf,
}

/// Serialises fetches into the shared bare repositories of this process.
static BARE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(super) fn checkout(
    fetcher: &Fetcher,
    source: &GitSource,
    commit: &str,
    full_ref: Option<&str>,
) -> anyhow::Result<Checkout> {
    let remote = source.remote.as_str();
    let shown = redact_url(remote);
    let git_root = fetcher.root.join("git");
    // Held to the end: the checkouts below use the bare repositories' index too.
    let _guard = BARE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let bare = fetch_commit(fetcher, remote, commit, full_ref)?;
    let bare_str = bare.to_string_lossy().into_owned();
    let keep = format!("refs/imgbuild/{commit}");
    let dir = tempfile::Builder::new()
        .prefix(".tmp-checkout-")
        .tempdir_in(&git_root)
        .context("creating a directory for a git checkout")?;
    let tree = dir.path().join("tree");
    let tree_str = tree.to_string_lossy().into_owned();
    std::fs::create_dir(&tree)?;
    let failed = || format!("failed to checkout remote {shown}");
    if source.keep_git_dir {
        // A repository of its own with only this commit, HEAD detached at it, its origin
        // the remote (credentials removed), as BuildKit leaves it.
        git(
            &["init", "-q", object_format_flag(commit), &tree_str],
            None,
            remote,
        )?;
        git(
            &["remote", "add", "origin", &format!("file://{bare_str}")],
            Some(&tree),
            remote,
        )?;
        let local = full_ref.unwrap_or("refs/imgbuild/checkout");
        git(
            &[
                "fetch",
                "-q",
                "-u",
                "--depth=1",
                "origin",
                &format!("{keep}:{local}"),
            ],
            Some(&tree),
            remote,
        )
        .with_context(failed)?;
        git(&["checkout", "-q", "FETCH_HEAD"], Some(&tree), remote).with_context(failed)?;
        git(
            &["remote", "set-url", "origin", &shown],
            Some(&tree),
            remote,
        )?;
        git(
            &["reflog", "expire", "--all", "--expire=now"],
            Some(&tree),
            remote,
        )?;
        let _ = std::fs::remove_file(tree.join(".git/FETCH_HEAD"));
        if full_ref.is_none() {
            git(
                &["update-ref", "-d", "refs/imgbuild/checkout"],
                Some(&tree),
                remote,
            )?;
        }
    } else {
        checkout_tree(&bare, commit, &tree, remote).with_context(failed)?;
    }
    if source.submodules {
        let kept = source.keep_git_dir.then_some(".git");
        update_submodules(fetcher, remote, &bare, commit, &tree, "", kept, 0)
            .with_context(|| format!("failed to update submodules for {shown}"))?;
    }
    let root = subdir_root(&tree, &source.subdir)?;
    Ok(Checkout { _dir: dir, root })
}

/// `--object-format=` of the repository `commit` is from, known by its hash's length as
/// BuildKit knows it: git cannot fetch SHA-256 objects into a SHA-1 repository.
fn object_format_flag(commit: &str) -> &'static str {
    if commit.len() == 64 {
        "--object-format=sha256"
    } else {
        "--object-format=sha1"
    }
}

/// The bare repository in the cache dir that keeps `remote`'s objects (one per remote, its
/// name the hash of the URL without credentials), after fetching `commit` into it unless it
/// has it; `refs/imgbuild/COMMIT` keeps the commit there. Call with [`BARE_LOCK`] held.
fn fetch_commit(
    fetcher: &Fetcher,
    remote: &str,
    commit: &str,
    full_ref: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let shown = redact_url(remote);
    let git_root = fetcher.root.join("git");
    std::fs::create_dir_all(&git_root)
        .with_context(|| format!("creating {}", git_root.display()))?;
    let bare = git_root.join(format!(
        "{}.git",
        hex::encode(Sha256::digest(shown.as_bytes()))
    ));
    let bare_str = bare.to_string_lossy().into_owned();
    let keep = format!("refs/imgbuild/{commit}");
    let format = object_format_flag(commit);
    if bare.join("HEAD").is_file() {
        // A repository made for the other object format (by an imgbuild that did not know
        // SHA-256, or a remote that changed format) cannot take these objects: start again.
        let has = git(&["rev-parse", "--show-object-format"], Some(&bare), remote)
            .map(|f| format!("--object-format={}", f.trim()));
        if has.is_ok_and(|has| has != format) {
            std::fs::remove_dir_all(&bare)
                .with_context(|| format!("removing {}", bare.display()))?;
        }
    }
    if !bare.join("HEAD").is_file() {
        git(&["init", "-q", "--bare", format, &bare_str], None, remote)?;
    }
    let has_commit = git(
        &["cat-file", "-e", &format!("{commit}^{{commit}}")],
        Some(&bare),
        remote,
    )
    .is_ok();
    if !has_commit {
        let want = full_ref.unwrap_or(commit);
        let refspec = format!("+{want}:{keep}");
        let shallow = git(
            &[
                "fetch",
                "-q",
                "--depth=1",
                "--no-tags",
                "--",
                remote,
                &refspec,
            ],
            Some(&bare),
            remote,
        );
        if let Err(e) = shallow {
            // Servers of the "dumb" HTTP protocol (static files) cannot serve shallow
            // fetches: fetch the whole history instead.
            if !e.to_string().contains("dumb http") {
                return Err(e.context(format!("failed to fetch remote {shown}")));
            }
            git(
                &["fetch", "-q", "--no-tags", "--", remote, &refspec],
                Some(&bare),
                remote,
            )
            .with_context(|| format!("failed to fetch remote {shown}"))?;
        }
        git(
            &["cat-file", "-e", &format!("{commit}^{{commit}}")],
            Some(&bare),
            remote,
        )
        .with_context(|| {
            format!("{shown}: the ref moved while building, commit {commit} is no longer there")
        })?;
    }
    git(&["update-ref", &keep, commit], Some(&bare), remote)?;
    Ok(bare)
}

/// Writes the tree of `commit` (in the bare repository `bare`) into the directory `work`.
fn checkout_tree(bare: &Path, commit: &str, work: &Path, remote: &str) -> anyhow::Result<()> {
    git(
        &[
            &format!("--git-dir={}", bare.display()),
            &format!("--work-tree={}", work.display()),
            "-c",
            "core.bare=false",
            "checkout",
            "-q",
            "--no-overlay",
            commit,
            "--",
            ".",
        ],
        Some(work),
        remote,
    )?;
    // The index git wrote into the bare repository is of no use to anyone.
    let _ = std::fs::remove_file(bare.join("index"));
    Ok(())
}

/// How deep submodules may nest: a repository that is its own submodule would never end.
const MAX_SUBMODULE_DEPTH: usize = 16;

/// Checks out the submodules of `commit` (whose objects are in `bare`, fetched from
/// `remote`) into `tree/work`, where its tree is, and theirs in turn: what BuildKit's
/// `git submodule update --init --recursive` does. Each submodule is fetched like any git
/// source, into its own bare repository in the cache dir, so credentials stay on command
/// lines and out of files. `kept` is the `.git` directory (relative to `tree`) of the
/// repository at `work` when `.git` is kept: each submodule then gets a repository of its
/// own in its `modules/NAME`, as `git submodule update` leaves it. The step's key needs
/// nothing more than the superproject's commit: each submodule's commit is in its tree.
#[allow(clippy::too_many_arguments)]
fn update_submodules(
    fetcher: &Fetcher,
    remote: &str,
    bare: &Path,
    commit: &str,
    tree: &Path,
    work: &str,
    kept: Option<&str>,
    depth: usize,
) -> anyhow::Result<()> {
    for sub in submodules(bare, commit, remote)? {
        if depth >= MAX_SUBMODULE_DEPTH {
            bail!(
                "submodule {:?} is nested more than {MAX_SUBMODULE_DEPTH} deep",
                sub.path
            );
        }
        let url = submodule_url(remote, &sub.url)
            .map_err(|e| anyhow::anyhow!("submodule {:?}: {e}", sub.path,))?;
        let shown = redact_url(&url);
        let sub_work = join_rel(work, &sub.path);
        // A gitlink is checked out as an empty directory; anything else (a symlink a
        // hostile tree put there) is refused.
        let dir = subdir_root(tree, &sub_work)?;
        let sub_bare = fetch_commit(fetcher, &url, &sub.commit, None)
            .with_context(|| format!("submodule {:?}", sub.path))?;
        let sub_kept = match kept {
            None => {
                checkout_tree(&sub_bare, &sub.commit, &dir, &url).with_context(|| {
                    format!("failed to checkout submodule {:?} from {shown}", sub.path)
                })?;
                None
            }
            Some(parent) => {
                let git_dir = join_rel(parent, &format!("modules/{}", sub.name));
                checkout_kept(&sub_bare, &sub, &url, tree, &sub_work, &git_dir)?;
                // What `git submodule init` writes in the superproject's config.
                let parent_dir = format!("--git-dir={}", tree.join(parent).display());
                let key = format!("submodule.{}", sub.name);
                for (name, value) in [("url", shown.as_str()), ("active", "true")] {
                    git(
                        &[&parent_dir, "config", &format!("{key}.{name}"), value],
                        Some(tree),
                        remote,
                    )?;
                }
                Some(git_dir)
            }
        };
        update_submodules(
            fetcher,
            &url,
            &sub_bare,
            &sub.commit,
            tree,
            &sub_work,
            sub_kept.as_deref(),
            depth + 1,
        )?;
    }
    Ok(())
}

/// A submodule of `--keep-git-dir`'s checkout: its repository in `tree/git_dir`, its files
/// in `tree/work` (with the `.git` file pointing to it), HEAD detached at its commit, origin
/// its URL without credentials.
fn checkout_kept(
    sub_bare: &Path,
    sub: &Submodule,
    url: &str,
    tree: &Path,
    work: &str,
    git_dir: &str,
) -> anyhow::Result<()> {
    let shown = redact_url(url);
    let dir = tree.join(git_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir_str = dir.to_string_lossy().into_owned();
    let work_dir = tree.join(work);
    let work_str = work_dir.to_string_lossy().into_owned();
    // Relative links both ways, as git writes them, so the copy works where it lands.
    std::fs::write(
        work_dir.join(".git"),
        format!("gitdir: {}{git_dir}\n", up(work)),
    )?;
    let with = |args: &[&str]| -> anyhow::Result<String> {
        let mut all = vec!["--git-dir", &dir_str, "--work-tree", &work_str];
        all.extend_from_slice(args);
        git(&all, Some(&work_dir), url)
    };
    with(&["init", "-q", object_format_flag(&sub.commit)])?;
    with(&["config", "core.bare", "false"])?;
    with(&["config", "core.worktree", &format!("{}{work}", up(git_dir))])?;
    with(&[
        "remote",
        "add",
        "origin",
        &format!("file://{}", sub_bare.display()),
    ])?;
    let failed = || format!("failed to checkout submodule {:?} from {shown}", sub.path);
    with(&[
        "fetch",
        "-q",
        "--depth=1",
        "origin",
        &format!("refs/imgbuild/{}", sub.commit),
    ])
    .with_context(failed)?;
    with(&["checkout", "-q", "--detach", "FETCH_HEAD"]).with_context(failed)?;
    with(&["remote", "set-url", "origin", &shown])?;
    with(&["reflog", "expire", "--all", "--expire=now"])?;
    let _ = std::fs::remove_file(dir.join("FETCH_HEAD"));
    Ok(())
}

/// `a/b` from `a` and `b` (`b` alone when `a` is empty).
fn join_rel(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}/{b}")
    }
}

/// `../` once per component of the relative path `rel`: from it back to where it starts.
fn up(rel: &str) -> String {
    "../".repeat(rel.split('/').filter(|c| !c.is_empty()).count())
}

/// A gitlink of a commit's tree with what `.gitmodules` says of it.
struct Submodule {
    name: String,
    path: String,
    commit: String,
    url: String,
}

/// The gitlinks of `commit`'s tree, each with its name and URL from the commit's
/// `.gitmodules`.
fn submodules(bare: &Path, commit: &str, remote: &str) -> anyhow::Result<Vec<Submodule>> {
    let listing = git(
        &["ls-tree", "-r", "-z", "--full-tree", commit],
        Some(bare),
        remote,
    )?;
    let links: Vec<(String, String)> = listing
        .split('\0')
        .filter_map(|entry| {
            let (meta, path) = entry.split_once('\t')?;
            let mut fields = meta.split(' ');
            let (mode, _, sha) = (fields.next()?, fields.next()?, fields.next()?);
            (mode == "160000").then(|| (path.to_owned(), sha.to_owned()))
        })
        .collect();
    if links.is_empty() {
        return Ok(Vec::new());
    }
    let config = git(
        &[
            "config",
            "-z",
            "--blob",
            &format!("{commit}:.gitmodules"),
            "--list",
        ],
        Some(bare),
        remote,
    )
    .context("reading .gitmodules")?;
    // `submodule.NAME.VAR`; NAME may hold dots.
    #[derive(Default)]
    struct Entry<'a> {
        path: Option<&'a str>,
        url: Option<&'a str>,
        update: Option<&'a str>,
    }
    let mut by_name: std::collections::BTreeMap<&str, Entry> = Default::default();
    for entry in config.split('\0') {
        let Some((key, value)) = entry.split_once('\n') else {
            continue;
        };
        let Some(rest) = key.strip_prefix("submodule.") else {
            continue;
        };
        let Some((name, var)) = rest.rsplit_once('.') else {
            continue;
        };
        let slot = by_name.entry(name).or_default();
        match var {
            "path" => slot.path = Some(value),
            "url" => slot.url = Some(value),
            "update" => slot.update = Some(value),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for (path, commit) in links {
        let entry = by_name
            .iter()
            .find(|(_, e)| e.path.map(|p| p.trim_end_matches('/')) == Some(path.as_str()));
        let Some((
            name,
            Entry {
                url: Some(url),
                update,
                ..
            },
        )) = entry
        else {
            bail!("no URL found for submodule path {path:?} in .gitmodules");
        };
        if *update == Some("none") {
            // `git submodule update` leaves these out (their directory empty).
            continue;
        }
        // git refuses such names too: the name is a path under `.git/modules`.
        if name.is_empty() || name.starts_with('/') || name.split(['/', '\\']).any(|c| c == "..") {
            bail!("submodule {path:?} has an invalid name {name:?} in .gitmodules");
        }
        found.push(Submodule {
            name: (*name).to_owned(),
            path,
            commit,
            url: (*url).to_owned(),
        });
    }
    Ok(found)
}

/// A submodule's URL from `.gitmodules`, one relative to its superproject (`../lib.git`)
/// resolved against the superproject's `remote` as git resolves it. Only network URLs
/// (http, https, git, ssh, `user@host:path`) are taken: git's own `submodule update`
/// refuses local ones (`protocol.file.allow=user`), which would copy the build machine's
/// repositories into the image.
fn submodule_url(remote: &str, url: &str) -> Result<String, String> {
    let resolved = if url.starts_with("./") || url.starts_with("../") {
        let mut base = remote.trim_end_matches('/').to_owned();
        // The part of `remote` that `../` may not remove: `scheme://host`, or `host:` of
        // the scp-like syntax.
        let floor = match base.find("://") {
            Some(i) => base[i + 3..].find('/').map_or(base.len(), |j| i + 3 + j),
            None => base.find(':').map_or(0, |i| i + 1),
        };
        let mut rest = url;
        loop {
            if let Some(r) = rest.strip_prefix("./") {
                rest = r;
            } else if let Some(r) = rest.strip_prefix("../") {
                rest = r;
                let cut = base[floor..].rfind('/').map_or(floor, |i| floor + i);
                if cut == floor && base.len() == floor {
                    return Err(format!(
                        "relative URL {url:?} leads above the root of {}",
                        redact_url(remote)
                    ));
                }
                base.truncate(cut);
            } else {
                break;
            }
        }
        let sep = if base.len() == floor && !base.contains("://") {
            ""
        } else {
            "/"
        };
        format!("{base}{sep}{rest}")
    } else {
        url.to_owned()
    };
    let network = match scheme(&resolved) {
        Some(s) => matches!(
            s.to_ascii_lowercase().as_str(),
            "http" | "https" | "git" | "ssh"
        ),
        None => is_scp_style(&resolved),
    };
    if !network || resolved.starts_with('-') {
        return Err(format!(
            "URL {:?} is not a network URL (http, https, git, ssh): git refuses local \
             submodules too",
            redact_url(&resolved)
        ));
    }
    Ok(resolved)
}

/// `tree/subdir`, refusing a subdir that is missing or passes through anything but
/// directories (a symlink could lead out of the checkout).
fn subdir_root(tree: &Path, subdir: &str) -> anyhow::Result<PathBuf> {
    let mut path = tree.to_path_buf();
    for part in subdir.split('/').filter(|p| !p.is_empty()) {
        path.push(part);
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|_| anyhow::anyhow!("invalid subdir {subdir}: {part} does not exist"))?;
        if !meta.is_dir() {
            bail!("git subpath {subdir:?} contains non-directory {part:?}");
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submodule_urls_resolve_against_the_remote_and_must_be_network_urls() {
        let url = |remote: &str, url: &str| submodule_url(remote, url);
        assert_eq!(
            url("https://u:t@host/org/app.git", "../lib.git").unwrap(),
            "https://u:t@host/org/lib.git"
        );
        assert_eq!(
            url("http://127.0.0.1:8080/.git", "../sub/.git").unwrap(),
            "http://127.0.0.1:8080/sub/.git"
        );
        assert_eq!(
            url("https://host/a/b/app.git/", "./../../c/./lib").unwrap(),
            "https://host/a/c/./lib"
        );
        assert_eq!(
            url("git@github.com:org/app.git", "../lib.git").unwrap(),
            "git@github.com:org/lib.git"
        );
        assert_eq!(
            url("git@github.com:app.git", "../lib.git").unwrap(),
            "git@github.com:lib.git"
        );
        assert_eq!(
            url("https://host/app.git", "ssh://git@other/lib.git").unwrap(),
            "ssh://git@other/lib.git"
        );
        // Not above the host, and never the build machine's own repositories; the
        // credentials stay out of the message.
        let above = url("https://u:t@host/app.git", "../../lib.git").unwrap_err();
        assert!(
            above.contains("above the root") && !above.contains("u:t"),
            "{above}"
        );
        for local in ["/srv/git/lib.git", "file:///srv/lib.git", "ext::sh -c id"] {
            let e = url("https://host/app.git", local).unwrap_err();
            assert!(e.contains("not a network URL"), "{local}: {e}");
        }
        assert!(url("/home/me/app", "../lib").is_err());
    }

    /// A SHA-256 repository is fetched into a repository of its format, also where an
    /// earlier imgbuild left a SHA-1 one for the same remote (its fetch then failed with
    /// `bad revision`).
    #[test]
    fn a_sha256_remote_gets_a_sha256_cache_repository() {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("remote");
        let remote = remote.to_str().unwrap();
        let run = |args: &[&str]| git(args, Some(dir.path()), remote).unwrap();
        run(&["init", "-q", "--object-format=sha256", remote]);
        std::fs::write(dir.path().join("remote/foo"), "foo\n").unwrap();
        run(&["-C", remote, "add", "foo"]);
        run(&[
            "-C",
            remote,
            "-c",
            "user.name=t",
            "-c",
            "user.email=t",
            "commit",
            "-q",
            "-m",
            "one",
        ]);
        let commit = run(&["-C", remote, "rev-parse", "HEAD"]).trim().to_owned();
        assert_eq!(commit.len(), 64);
        let blobs = crate::oci::BlobStore::open(dir.path().join("blobs")).unwrap();
        let fetcher = Fetcher::new(&dir.path().join("cache"), blobs).unwrap();
        let stale = fetcher.root.join("git").join(format!(
            "{}.git",
            hex::encode(Sha256::digest(remote.as_bytes()))
        ));
        run(&["init", "-q", "--bare", stale.to_str().unwrap()]);
        let bare = fetch_commit(&fetcher, remote, &commit, None).unwrap();
        assert_eq!(bare, stale);
        let format = git(&["rev-parse", "--show-object-format"], Some(&bare), remote).unwrap();
        assert_eq!(format.trim(), "sha256");
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        checkout_tree(&bare, &commit, &work, remote).unwrap();
        assert_eq!(std::fs::read_to_string(work.join("foo")).unwrap(), "foo\n");
    }

    #[test]
    fn relative_paths_for_kept_submodules() {
        assert_eq!(join_rel("", "sub"), "sub");
        assert_eq!(join_rel("a/b", "c"), "a/b/c");
        assert_eq!(up("a/b"), "../../");
        assert_eq!(up(".git/modules/lib"), "../../../");
    }

    #[test]
    fn the_object_format_is_known_by_the_hash_length() {
        assert_eq!(
            object_format_flag(&"a".repeat(64)),
            "--object-format=sha256"
        );
        assert_eq!(object_format_flag(&"a".repeat(40)), "--object-format=sha1");
    }
}
