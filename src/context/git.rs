//! The git checkout a build context lives in, for `--label-from-git`: the OCI labels that
//! say where an image's source is (`org.opencontainers.image.source`), which commit
//! (`.revision`) and when (`.created`, the build's source date epoch, so the same commit
//! built twice gives the same labels and the same digest).
//!
//! Read with the `git` command: it knows worktrees, submodules and every ref format.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub const SOURCE: &str = "org.opencontainers.image.source";
pub const REVISION: &str = "org.opencontainers.image.revision";
pub const CREATED: &str = "org.opencontainers.image.created";

/// The labels for the checkout `dir` is in, built at `epoch`; `Err` says why there are none
/// (not a checkout, no commit, no git).
pub fn labels(dir: &Path, epoch: i64) -> Result<BTreeMap<String, String>, String> {
    let revision = git(dir, &["rev-parse", "--verify", "HEAD^{commit}"])?;
    let mut labels = BTreeMap::new();
    labels.insert(REVISION.to_owned(), revision);
    if let Some(url) = git(dir, &["config", "--get", "remote.origin.url"])
        .ok()
        .and_then(|u| public_url(&u))
    {
        labels.insert(SOURCE.to_owned(), url);
    }
    let created = crate::oci::rfc3339(epoch).map_err(|e| e.to_string())?;
    labels.insert(CREATED.to_owned(), created);
    Ok(labels)
}

/// Runs git in `dir` and returns its trimmed output. A checkout owned by another user (a
/// CI runner's, inside a container) is trusted for this read-only query.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new("git")
        .arg("-c")
        .arg("safe.directory=*")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr.lines().next().unwrap_or("").trim();
        return Err(if reason.is_empty() {
            format!("git {} failed ({})", args.join(" "), output.status)
        } else {
            reason.trim_start_matches("fatal: ").to_owned()
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A remote URL as a public web address: `git@host:owner/repo.git` and
/// `ssh://git@host/owner/repo` become `https://host/owner/repo`; user names and passwords
/// (tokens some CI systems put in the URL) are dropped. Local paths are not an address.
pub fn public_url(remote: &str) -> Option<String> {
    let remote = remote.trim();
    let url = if let Some((user_host, path)) = remote
        .split_once(':')
        .filter(|(head, path)| !head.contains('/') && !path.starts_with("//"))
    {
        // scp-like syntax: [user@]host:path
        let host = user_host.rsplit('@').next().unwrap_or(user_host);
        reqwest::Url::parse(&format!("https://{host}/{}", path.trim_start_matches('/'))).ok()?
    } else {
        let mut url = reqwest::Url::parse(remote).ok()?;
        match url.scheme() {
            "https" | "http" => {}
            "ssh" | "git" | "git+ssh" | "ssh+git" => {
                let rebuilt = format!("https://{}{}", url.host_str()?, url.path());
                url = reqwest::Url::parse(&rebuilt).ok()?;
            }
            _ => return None,
        }
        url.set_username("").ok()?;
        url.set_password(None).ok()?;
        url.set_query(None);
        url.set_fragment(None);
        url
    };
    let text = url.to_string();
    let text = text.trim_end_matches('/');
    Some(text.strip_suffix(".git").unwrap_or(text).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_become_public_addresses() {
        for (remote, expected) in [
            (
                "git@github.com:acme/app.git",
                Some("https://github.com/acme/app"),
            ),
            (
                "ssh://git@gitlab.com:22/acme/app.git",
                Some("https://gitlab.com/acme/app"),
            ),
            (
                "https://x-access-token:ghs_secret@github.com/acme/app.git",
                Some("https://github.com/acme/app"),
            ),
            (
                "https://github.com/acme/app",
                Some("https://github.com/acme/app"),
            ),
            ("/srv/git/app.git", None),
            ("file:///srv/git/app.git", None),
        ] {
            assert_eq!(public_url(remote).as_deref(), expected, "{remote}");
        }
    }

    #[test]
    fn labels_of_a_checkout_and_of_a_plain_directory() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.com")
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        assert!(labels(dir.path(), 0).is_err());
        run(&["init", "-q"]);
        // A repository without a commit has no revision yet.
        assert!(labels(dir.path(), 0).is_err());
        std::fs::write(dir.path().join("f"), "x").unwrap();
        run(&["add", "f"]);
        run(&["commit", "-qm", "one"]);
        let head = run(&["rev-parse", "HEAD"]);
        let found = labels(dir.path(), 1_700_000_000).unwrap();
        assert_eq!(found.get(REVISION), Some(&head));
        assert_eq!(found.get(SOURCE), None);
        assert_eq!(
            found.get(CREATED).map(String::as_str),
            Some("2023-11-14T22:13:20Z")
        );
        run(&["remote", "add", "origin", "git@github.com:acme/app.git"]);
        // From a subdirectory of the checkout too.
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let found = labels(&dir.path().join("sub"), 0).unwrap();
        assert_eq!(
            found.get(SOURCE).map(String::as_str),
            Some("https://github.com/acme/app")
        );
    }
}
