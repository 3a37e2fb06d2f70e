//! Remote sources of `ADD`: `ADD https://…` (a file downloaded over HTTP) and `ADD git…`
//! (a tree checked out of a git repository), as current BuildKit reads them.
//!
//! * [`RemoteSource::parse`] tells a remote source from a path of the context, with
//!   BuildKit's rules: `http(s)://` URLs whose path ends in `.git`, `git://`, `ssh://` and
//!   `user@host:path` are git; other `http(s)://` URLs are files. Pure, for dispatch.
//! * [`Fetcher`] resolves them before a stage's keys are computed, as BuildKit resolves
//!   a source to compute its cache key: an HTTP file is downloaded (or revalidated with its
//!   `ETag`: a `304` reuses the stored copy) and keyed on its content; a git ref is resolved
//!   with `git ls-remote` and keyed on its commit, and checked out only when the step runs.
//!
//! Credentials in URLs (`https://user:token@host/…`) reach only the HTTP client and the git
//! command line: every message, history entry, cache input and `Debug` output shows the URL
//! with them removed ([`redact_url`]).

mod git;
mod http;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use git::Checkout;

/// A remote source of `ADD`.
#[derive(Clone, PartialEq, Eq)]
pub enum RemoteSource {
    Http(HttpSource),
    Git(GitSource),
}

/// `ADD https://host/path/file DEST`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpSource {
    /// As written, credentials included.
    pub url: String,
    /// The name the file gets in a directory destination: the URL path's last component
    /// (percent-decoded), or `__unnamed__`, as BuildKit's Dockerfile front end names it
    /// (it never uses `Content-Disposition`).
    pub filename: String,
    /// `--checksum=sha256:…` (or sha384/sha512): the download must match.
    pub checksum: Option<Checksum>,
}

/// `ADD https://host/repo.git#ref:subdir DEST` and the other git forms.
#[derive(Clone, PartialEq, Eq)]
pub struct GitSource {
    /// The URL git is given (without fragment and query), credentials included.
    pub remote: String,
    /// A branch, tag, full ref or commit; `None` for the remote's default branch.
    pub reference: Option<String>,
    /// A directory of the repository whose contents are copied (clean, relative; empty for
    /// the whole tree).
    pub subdir: String,
    /// `--keep-git-dir` or `?keep-git-dir=`: the `.git` directory is copied too.
    pub keep_git_dir: bool,
    /// `--checksum=` or `?checksum=`: a prefix of the commit (or annotated tag) the ref must
    /// resolve to.
    pub checksum: Option<String>,
    /// `?submodules=false` skips submodules.
    pub submodules: bool,
}

/// A pinned digest for an HTTP source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    /// Lower-case hex.
    pub hex: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl Checksum {
    /// `sha256:<64 hex>`, `sha384:<96 hex>` or `sha512:<128 hex>`, as BuildKit's
    /// `digest.Parse` accepts them.
    pub fn parse(text: &str) -> Result<Checksum, String> {
        let (algo, hex) = text
            .split_once(':')
            .ok_or_else(|| format!("`{text}` is not a digest: expected sha256:<hex>"))?;
        let (algorithm, len) = match algo {
            "sha256" => (Algorithm::Sha256, 64),
            "sha384" => (Algorithm::Sha384, 96),
            "sha512" => (Algorithm::Sha512, 128),
            other => {
                return Err(format!(
                    "unsupported digest algorithm `{other}` (sha256, sha384 or sha512)"
                ));
            }
        };
        if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "`{text}` is not a valid {algo} digest ({len} lower-case hex digits)"
            ));
        }
        Ok(Checksum {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algo = match self.algorithm {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        };
        write!(f, "{algo}:{}", self.hex)
    }
}

impl GitSource {
    /// A build context in git, as `docker build` takes one: a git URL
    /// (`https://host/repo.git#ref:dir`, `git://…`, `ssh://…`, `user@host:repo`), or a
    /// local repository with a fragment, `PATH#ref[:dir]` (bare, or a checkout with `.git`).
    /// `Ok(None)`: `context` is neither (a directory, even one whose name has a `#`, is a
    /// directory). The `.git` directory is left out unless `?keep-git-dir=1` says otherwise.
    pub fn context(context: &str) -> Result<Option<GitSource>, String> {
        if std::path::Path::new(context).exists() {
            return Ok(None);
        }
        if let Some(parsed) = git::parse(context)? {
            let mut source = parsed.source;
            source.keep_git_dir = parsed.keep_git_dir_query.unwrap_or(false);
            return Ok(Some(source));
        }
        let Some((path, fragment)) = context.split_once('#') else {
            return Ok(None);
        };
        let path = std::path::Path::new(path);
        let is_repository = path.join("HEAD").is_file() || path.join(".git").exists();
        if !path.is_dir() || !is_repository {
            return Ok(None);
        }
        let absolute =
            std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (fragment, query) = match fragment.split_once('?') {
            Some((f, q)) => (f, Some(q)),
            None => (fragment, None),
        };
        let parsed = git::with_fragment(&absolute.to_string_lossy(), Some(fragment), query)?;
        let mut source = parsed.source;
        source.keep_git_dir = parsed.keep_git_dir_query.unwrap_or(false);
        Ok(Some(source))
    }
}

impl RemoteSource {
    /// Reads an expanded `ADD` source: `Ok(None)` when it is a path of the build context,
    /// `Err` (a message for the user) when it is a remote source written wrong.
    /// `keep_git_dir` and `checksum` are the instruction's flags.
    pub fn parse(
        src: &str,
        keep_git_dir: bool,
        checksum: Option<&str>,
    ) -> Result<Option<RemoteSource>, String> {
        if let Some(git) = git::parse(src)? {
            let mut git = git;
            if let Some(keep) = git.keep_git_dir_query {
                if keep_git_dir && !keep {
                    return Err("inconsistent keep-git-dir configuration".into());
                }
                git.source.keep_git_dir = keep;
            } else {
                git.source.keep_git_dir = keep_git_dir;
            }
            if let Some(flag) = checksum {
                if let Some(query) = &git.source.checksum
                    && query != flag
                {
                    return Err(format!("checksum mismatch {query:?} != {flag:?}"));
                }
                git.source.checksum = Some(flag.to_owned());
            }
            if let Some(sum) = &git.source.checksum
                && (sum.is_empty() || !sum.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(format!(
                    "checksum `{sum}` of a git source must be (a prefix of) a commit hash"
                ));
            }
            return Ok(Some(RemoteSource::Git(git.source)));
        }
        if src.starts_with("http://") || src.starts_with("https://") {
            let checksum = checksum.map(Checksum::parse).transpose()?;
            return Ok(Some(RemoteSource::Http(HttpSource {
                url: src.to_owned(),
                filename: http::filename(src),
                checksum,
            })));
        }
        Ok(None)
    }

    /// Whether `src` would be a remote source for `ADD` (to refuse it in `COPY`).
    pub fn looks_remote(src: &str) -> bool {
        src.starts_with("http://")
            || src.starts_with("https://")
            || matches!(git::parse(src), Ok(Some(_)) | Err(_))
    }

    /// The source as messages and history show it: credentials removed.
    pub fn display(&self) -> String {
        match self {
            RemoteSource::Http(h) => redact_url(&h.url),
            RemoteSource::Git(g) => {
                let mut s = redact_url(&g.remote);
                if g.reference.is_some() || !g.subdir.is_empty() {
                    s.push('#');
                    s.push_str(g.reference.as_deref().unwrap_or_default());
                    if !g.subdir.is_empty() {
                        s.push(':');
                        s.push_str(&g.subdir);
                    }
                }
                s
            }
        }
    }

    /// What identifies the source for the fetcher's memo: everything that changes what is
    /// fetched or checked.
    fn memo_key(&self) -> String {
        match self {
            RemoteSource::Http(h) => format!(
                "http\0{}\0{}",
                h.url,
                h.checksum
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            RemoteSource::Git(g) => format!(
                "git\0{}\0{}\0{}",
                g.remote,
                g.reference.as_deref().unwrap_or_default(),
                g.checksum.as_deref().unwrap_or_default()
            ),
        }
    }
}

impl std::fmt::Debug for RemoteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials, even in a panic message or a `{:?}` cache input.
        // What a git source checks out besides the commit is part of the step's key:
        // `.git`, and the submodules unless `?submodules=false` (BuildKit's key has both).
        let kind = match self {
            RemoteSource::Http(_) => "Http",
            RemoteSource::Git(g) => match (g.keep_git_dir, g.submodules) {
                (true, true) => "GitKeepDir",
                (false, true) => "Git",
                (true, false) => "GitKeepDirNoSubmodules",
                (false, false) => "GitNoSubmodules",
            },
        };
        write!(f, "{kind}({})", self.display())
    }
}

/// `scheme://user:password@host/…` → `scheme://host/…`; `user@host:path` (scp-style git)
/// is left alone (a user name is no secret); anything else as it is.
pub fn redact_url(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://{}{tail}", &authority[at + 1..]),
        None => text.to_owned(),
    }
}

/// Replaces every occurrence of `url` (with credentials) in `message` by its redacted form
/// (git and HTTP libraries may echo the URL they were given).
fn scrub(message: &str, url: &str) -> String {
    let redacted = redact_url(url);
    if redacted == url {
        return message.to_owned();
    }
    let mut out = message.replace(url, &redacted);
    // The credentials alone, e.g. in "Authentication failed for user:pass".
    if let Some((_, rest)) = url.split_once("://")
        && let Some(at) = rest.find('@')
    {
        let userinfo = &rest[..at];
        if !userinfo.is_empty() {
            out = out.replace(userinfo, "***");
        }
    }
    out
}

/// What a remote source resolved to: what its step's key is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A downloaded file, stored in the blob store.
    File(FetchedFile),
    /// A git commit, checked out when the step runs ([`Fetcher::checkout`]).
    Commit {
        /// The full commit hash the ref resolved to.
        commit: String,
        /// The ref as the remote names it (`refs/heads/main`), for `--keep-git-dir`.
        full_ref: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    /// The stored content.
    pub path: PathBuf,
    /// `sha256:…` of the content.
    pub digest: String,
    pub size: u64,
    /// `Last-Modified`, as seconds since the epoch: the file's mtime (BuildKit's), else 0.
    pub last_modified: Option<i64>,
}

impl Resolved {
    /// The source's part of its step's cache key: BuildKit keys an HTTP file on its name,
    /// content and `Last-Modified`, a git source on its commit.
    pub fn key(&self) -> String {
        match self {
            Resolved::File(f) => format!(
                "{} last-modified={}",
                f.digest,
                f.last_modified.map(|t| t.to_string()).unwrap_or_default()
            ),
            Resolved::Commit { commit, .. } => format!("commit {commit}"),
        }
    }
}

/// Resolves and fetches remote sources, once per build each; downloads and git objects are
/// kept in the cache dir (`fetch-v1/`) across builds.
pub struct Fetcher {
    root: PathBuf,
    blobs: crate::oci::BlobStore,
    client: reqwest::Client,
    memo: Mutex<HashMap<String, Arc<Resolved>>>,
}

impl Fetcher {
    pub fn new(cache_dir: &std::path::Path, blobs: crate::oci::BlobStore) -> anyhow::Result<Self> {
        let client = crate::http::client_builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Fetcher {
            root: cache_dir.join("fetch-v1"),
            blobs,
            client,
            memo: Mutex::new(HashMap::new()),
        })
    }

    /// Resolves `source` (downloading an HTTP file, asking the git remote for the commit),
    /// once per build.
    pub async fn resolve(&self, source: &RemoteSource) -> anyhow::Result<Arc<Resolved>> {
        let key = source.memo_key();
        if let Some(found) = self.memo_lock().get(&key) {
            return Ok(found.clone());
        }
        let resolved = Arc::new(match source {
            RemoteSource::Http(h) => Resolved::File(http::fetch(self, h).await?),
            RemoteSource::Git(g) => {
                let (commit, full_ref) = git::resolve(self, g).await?;
                Resolved::Commit { commit, full_ref }
            }
        });
        self.memo_lock().insert(key, resolved.clone());
        Ok(resolved)
    }

    /// What `source` resolved to earlier in this build.
    pub fn resolved(&self, source: &RemoteSource) -> Option<Arc<Resolved>> {
        self.memo_lock().get(&source.memo_key()).cloned()
    }

    /// Checks the commit `source` resolved to out into a new temporary directory (under
    /// the cache dir), with `.git` only for `--keep-git-dir`, the subdirectory's contents
    /// only for `#ref:subdir`. Blocking: runs git.
    pub fn checkout(&self, source: &GitSource) -> anyhow::Result<Checkout> {
        let resolved = self.resolved(&RemoteSource::Git(source.clone()));
        let Some(Resolved::Commit { commit, full_ref }) = resolved.as_deref() else {
            anyhow::bail!(
                "{} was not resolved before its step ran",
                redact_url(&source.remote)
            );
        };
        git::checkout(self, source, commit, full_ref.as_deref())
    }

    fn memo_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Resolved>>> {
        self.memo.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Option<RemoteSource> {
        RemoteSource::parse(src, false, None).unwrap()
    }

    #[test]
    fn git_contexts_are_urls_and_local_repositories_with_a_fragment() {
        let context = |text: &str| GitSource::context(text).unwrap();
        let url = context("https://example.com/team/app.git#v1.2:deploy").unwrap();
        assert_eq!(url.remote, "https://example.com/team/app.git");
        assert_eq!(url.reference.as_deref(), Some("v1.2"));
        assert_eq!(url.subdir, "deploy");
        assert!(!url.keep_git_dir);
        assert!(context("git@github.com:team/app.git").is_some());
        assert!(context("https://example.com/not-git/").is_none());

        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("app.git");
        std::fs::create_dir(&repo).unwrap();
        let with_fragment = format!("{}#main:sub", repo.display());
        assert!(context(&with_fragment).is_none(), "not a repository yet");
        std::fs::write(repo.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let local = context(&with_fragment).unwrap();
        assert_eq!(local.remote, repo.canonicalize().unwrap().to_string_lossy());
        assert_eq!(
            (local.reference.as_deref(), local.subdir.as_str()),
            (Some("main"), "sub")
        );
        // Without a fragment, or when the whole text is a directory, it is a directory.
        assert!(context(&repo.display().to_string()).is_none());
        let odd = dir.path().join("dir#with-hash");
        std::fs::create_dir(&odd).unwrap();
        assert!(context(&odd.display().to_string()).is_none());
    }

    #[test]
    fn http_sources_and_their_names() {
        let Some(RemoteSource::Http(h)) = parse("https://example.com/dl/tool-1.0.tar.gz?x=1#f")
        else {
            panic!("not http")
        };
        assert_eq!(h.filename, "tool-1.0.tar.gz");
        for (url, name) in [
            ("http://example.com", "__unnamed__"),
            ("http://example.com/", "__unnamed__"),
            ("http://example.com/dir/", "dir"),
            ("http://example.com/a%20b", "a b"),
        ] {
            let Some(RemoteSource::Http(h)) = parse(url) else {
                panic!("{url}")
            };
            assert_eq!(h.filename, name, "{url}");
        }
        assert_eq!(parse("dir/file"), None);
        assert_eq!(parse("github.com/foo/bar"), None);
        assert_eq!(parse("ftp://example.com/x"), None);
    }

    #[test]
    fn git_sources() {
        let Some(RemoteSource::Git(g)) = parse("https://example.com/org/repo.git#v1.2:sub/../dir")
        else {
            panic!("not git")
        };
        assert_eq!(g.remote, "https://example.com/org/repo.git");
        assert_eq!(g.reference.as_deref(), Some("v1.2"));
        assert_eq!(g.subdir, "dir");
        assert!(!g.keep_git_dir && g.submodules);
        let Some(RemoteSource::Git(g)) = parse("git@github.com:moby/buildkit.git#main") else {
            panic!("scp-style")
        };
        assert_eq!(g.remote, "git@github.com:moby/buildkit.git");
        assert_eq!(g.reference.as_deref(), Some("main"));
        let Some(RemoteSource::Git(g)) =
            parse("https://h/r.git?tag=v2&subdir=docs&keep-git-dir=true")
        else {
            panic!("query form")
        };
        assert_eq!(g.reference.as_deref(), Some("refs/tags/v2"));
        assert_eq!(g.subdir, "docs");
        assert!(g.keep_git_dir);
        assert!(matches!(parse("git://h/r"), Some(RemoteSource::Git(_))));
        assert!(matches!(parse("ssh://git@h/r"), Some(RemoteSource::Git(_))));
        // An https URL is git only when its path ends in .git.
        assert!(matches!(
            parse("https://h/r.git.tar"),
            Some(RemoteSource::Http(_))
        ));
        // `?submodules=false` checks out another tree: the step's key input differs.
        let with = parse("https://h/r.git#v1").unwrap();
        let without = parse("https://h/r.git?submodules=false#v1").unwrap();
        assert_eq!(format!("{with:?}"), "Git(https://h/r.git#v1)");
        assert_eq!(
            format!("{without:?}"),
            "GitNoSubmodules(https://h/r.git#v1)"
        );
        for bad in ["https://h/r.git?nope=1", "https://h/r.git?tag=a&branch=b"] {
            assert!(RemoteSource::parse(bad, false, None).is_err(), "{bad}");
        }
        assert!(RemoteSource::parse("https://h/r.git", false, Some("xyz")).is_err());
        assert!(RemoteSource::parse("https://h/r.git?keep-git-dir=false", true, None).is_err());
    }

    #[test]
    fn checksums() {
        let hex = "a".repeat(64);
        assert_eq!(
            Checksum::parse(&format!("sha256:{hex}"))
                .unwrap()
                .to_string(),
            format!("sha256:{hex}")
        );
        for bad in [
            "abc",
            "sha256:abc",
            "md5:abc",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(Checksum::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_never_shown() {
        assert_eq!(
            redact_url("https://user:s3cret@example.com/x?y#z"),
            "https://example.com/x?y#z"
        );
        assert_eq!(
            redact_url("https://example.com/a@b"),
            "https://example.com/a@b"
        );
        assert_eq!(
            redact_url("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        let src = parse("https://u:tok@example.com/r.git#main:d").unwrap();
        assert_eq!(src.display(), "https://example.com/r.git#main:d");
        assert!(!format!("{src:?}").contains("tok"));
        assert_eq!(
            scrub(
                "fatal: unable to access 'https://u:tok@h/r.git/': u:tok denied",
                "https://u:tok@h/r.git"
            ),
            "fatal: unable to access 'https://h/r.git/': *** denied"
        );
    }
}
