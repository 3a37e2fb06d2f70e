//! The user a command runs as: `USER` (`name`, `uid`, `name:group`, `uid:gid`) resolved
//! against the root file system's own `/etc/passwd` and `/etc/group`, as BuildKit's
//! executor resolves it (its `GetUser`, over moby/sys/user's `GetExecUser`).
//!
//! This is not [`crate::oci::layer::resolve_user`]: that one is BuildKit's rule for file
//! owners (`COPY --chown`, `WORKDIR`), where a name the image does not know is root. A
//! process instead fails to start on an unknown name, and gets the supplementary groups
//! that list its user as a member.

use std::path::Path;

use super::error::{Error, Result};
use super::root::Root;

/// Numeric identity of a container process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups. The primary group is added to them when the process starts
    /// (as BuildKit does), so it need not be listed.
    pub additional_gids: Vec<u32>,
}

/// BuildKit reads at most this much of `/etc/passwd` and `/etc/group`.
const MAX_ACCOUNT_FILE_BYTES: u64 = 10 << 20;

/// moby/sys/user accepts ids up to this (for 32-bit systems).
const MAX_ID: i64 = (1 << 31) - 1;

impl User {
    /// Root: what an empty `USER` means.
    pub const ROOT: User = User {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
    };

    /// Resolves `spec` (a `USER` value; empty means root) against `rootfs`'s
    /// `/etc/passwd` and `/etc/group`, read inside the root (their symlinks cannot leave
    /// it). An unknown name fails with Docker's and BuildKit's message, e.g. `unable to
    /// find user app: no matching entries in passwd file`.
    pub fn resolve(rootfs: &Path, spec: &str) -> Result<User> {
        let root = Root::open(rootfs).map_err(|source| {
            Error::io(
                format!("open the root file system {}", rootfs.display()),
                source,
            )
        })?;
        let read = |path: &str| -> Result<Option<String>> {
            let bytes = root
                .read_small_file(path, MAX_ACCOUNT_FILE_BYTES)
                .map_err(|source| {
                    Error::io(format!("read {path} in {}", root.path().display()), source)
                })?;
            Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
        };
        // BuildKit's fast path: two numbers need no files.
        if let Some((uid, gid)) = numeric_pair(spec) {
            return Ok(User {
                uid,
                gid,
                additional_gids: Vec::new(),
            });
        }
        let passwd = read("/etc/passwd")?;
        let group = read("/etc/group")?;
        resolve_in(spec, passwd.as_deref(), group.as_deref()).map_err(Error::User)
    }
}

/// BuildKit's `GetUser` over the files' contents (`None`: no such file).
fn resolve_in(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<User, String> {
    if spec.is_empty() {
        // The default user never fails: root, with root's groups when the files say so.
        return Ok(exec_user("0", passwd, group).unwrap_or(User::ROOT));
    }
    if let Some((uid, gid)) = numeric_pair(spec) {
        return Ok(User {
            uid,
            gid,
            additional_gids: Vec::new(),
        });
    }
    exec_user(spec, passwd, group)
}

/// `uid:gid` with both parts numbers (or `root`): BuildKit's `ParseUIDGID`.
fn numeric_pair(spec: &str) -> Option<(u32, u32)> {
    let (user, group) = spec.split_once(':')?;
    let id = |s: &str| match s {
        "root" => Some(0),
        s if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    };
    Some((id(user)?, id(group)?))
}

/// A `USER` part as moby/sys/user reads it: `Ok(None)` for a name, the id for a number,
/// an error for a number out of range.
fn numeric(part: &str) -> Result<Option<u32>, String> {
    let range = || format!("uids and gids must be in range 0-{MAX_ID}");
    match part.parse::<i64>() {
        Ok(id) if (0..=MAX_ID).contains(&id) => Ok(u32::try_from(id).ok()),
        Ok(_) => Err(range()),
        Err(err) => match err.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                Err(range())
            }
            _ => Ok(None),
        },
    }
}

/// moby/sys/user's `GetExecUser` with no defaults.
fn exec_user(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<User, String> {
    let mut parts = spec.split(':');
    let user_arg = parts.next().unwrap_or("");
    let group_arg = parts.next().unwrap_or("");
    let uid_arg = numeric(user_arg)?;
    let gid_arg = numeric(group_arg)?;

    let mut user = User::ROOT;
    let matched = passwd.and_then(|passwd| {
        passwd_entries(passwd).find(|entry| match (user_arg, uid_arg) {
            ("", _) => entry.uid == 0,
            (_, Some(uid)) => entry.uid == i64::from(uid),
            (name, None) => entry.name == name,
        })
    });
    let matched_name = match &matched {
        Some(entry) => {
            user.uid = id_of(entry.uid, user_arg)?;
            user.gid = id_of(entry.gid, user_arg)?;
            entry.name
        }
        None if !user_arg.is_empty() => {
            let Some(uid) = uid_arg else {
                return Err(format!(
                    "unable to find user {user_arg}: no matching entries in passwd file"
                ));
            };
            user.uid = uid;
            ""
        }
        None => "",
    };

    if group_arg.is_empty() && matched_name.is_empty() {
        return Ok(user);
    }
    let groups: Vec<GroupEntry<'_>> = group
        .map(|group| {
            group_entries(group)
                .filter(|entry| match (group_arg, gid_arg) {
                    ("", _) => entry.members.contains(&matched_name),
                    (_, Some(gid)) => entry.gid == i64::from(gid),
                    (name, None) => entry.name == name,
                })
                .collect()
        })
        .unwrap_or_default();
    if !group_arg.is_empty() {
        user.gid = match (groups.first(), gid_arg) {
            (Some(entry), _) => id_of(entry.gid, group_arg)?,
            (None, Some(gid)) => gid,
            (None, None) => {
                return Err(format!(
                    "unable to find group {group_arg}: no matching entries in group file"
                ));
            }
        };
    } else {
        user.additional_gids = groups
            .iter()
            .map(|entry| id_of(entry.gid, matched_name))
            .collect::<Result<_, _>>()?;
    }
    Ok(user)
}

/// An id read from a file, as the process's id.
fn id_of(id: i64, name: &str) -> Result<u32, String> {
    u32::try_from(id)
        .ok()
        .filter(|id| i64::from(*id) <= MAX_ID)
        .ok_or_else(|| format!("the id {id} of {name} is out of range 0-{MAX_ID}"))
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: i64,
    gid: i64,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: i64,
    members: Vec<&'a str>,
}

/// A number field; moby/sys/user reads a malformed one as 0.
fn number(field: Option<&str>) -> i64 {
    field.and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// `name:password:uid:gid:…` lines (blank lines skipped; moby/sys/user knows no comments
/// in passwd files).
fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut fields = line.split(':');
            let name = fields.next().unwrap_or("");
            let _password = fields.next();
            PasswdEntry {
                name,
                uid: number(fields.next()),
                gid: number(fields.next()),
            }
        })
}

/// `name:password:gid:member,member` lines (blank lines and `#` comments skipped).
fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let mut fields = line.split(':');
            let name = fields.next().unwrap_or("");
            let _password = fields.next();
            let gid = number(fields.next());
            let members = fields
                .next()
                .filter(|list| !list.is_empty())
                .map(|list| list.split(',').collect())
                .unwrap_or_default();
            GroupEntry { name, gid, members }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          app:x:1000:1001:App:/home/app:/bin/sh\n\
                          \n\
                          svc:x:999:999::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\n\
                         # a comment\n\
                         staff:x:50:app,svc\n\
                         app:x:1001:\n\
                         audio:x:29:app\n\
                         wheel:x:10:root\n";

    fn user(uid: u32, gid: u32, additional_gids: &[u32]) -> User {
        User {
            uid,
            gid,
            additional_gids: additional_gids.to_vec(),
        }
    }

    fn resolve(spec: &str) -> Result<User, String> {
        resolve_in(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn a_name_gets_its_primary_group_and_the_groups_listing_it() {
        assert_eq!(resolve("app").unwrap(), user(1000, 1001, &[50, 29]));
        // A uid with a passwd entry is that entry: groups found by its name.
        assert_eq!(resolve("1000").unwrap(), user(1000, 1001, &[50, 29]));
        assert_eq!(resolve("svc").unwrap(), user(999, 999, &[50]));
    }

    #[test]
    fn an_explicit_group_replaces_the_primary_one_and_drops_the_others() {
        assert_eq!(resolve("app:staff").unwrap(), user(1000, 50, &[]));
        assert_eq!(resolve("app:29").unwrap(), user(1000, 29, &[]));
        // A gid no group has is taken as it is.
        assert_eq!(resolve("app:4242").unwrap(), user(1000, 4242, &[]));
    }

    #[test]
    fn numbers_need_no_entry() {
        assert_eq!(resolve("4242").unwrap(), user(4242, 0, &[]));
        assert_eq!(resolve("7:8").unwrap(), user(7, 8, &[]));
        assert_eq!(resolve_in("7:8", None, None).unwrap(), user(7, 8, &[]));
        assert_eq!(resolve_in("7", None, None).unwrap(), user(7, 0, &[]));
        assert_eq!(resolve("root:root").unwrap(), user(0, 0, &[]));
    }

    #[test]
    fn root_by_default_with_its_listed_groups() {
        assert_eq!(resolve("").unwrap(), user(0, 0, &[10]));
        assert_eq!(resolve("root").unwrap(), user(0, 0, &[10]));
        assert_eq!(resolve_in("", None, None).unwrap(), User::ROOT);
    }

    #[test]
    fn unknown_names_fail_as_docker_and_buildkit_say() {
        assert_eq!(
            resolve("nosuchuser").unwrap_err(),
            "unable to find user nosuchuser: no matching entries in passwd file"
        );
        assert_eq!(
            resolve("app:nosuchgroup").unwrap_err(),
            "unable to find group nosuchgroup: no matching entries in group file"
        );
        assert_eq!(
            resolve_in("app", None, None).unwrap_err(),
            "unable to find user app: no matching entries in passwd file"
        );
        assert!(
            resolve("99999999999").unwrap_err().contains("range"),
            "out of range"
        );
        assert!(resolve("-1").unwrap_err().contains("range"));
    }

    #[test]
    fn files_are_read_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "app:x:1:1::/:/bin/sh\n").unwrap();
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir(rootfs.path().join("etc")).unwrap();
        // A hostile image's link to a host file finds nothing.
        std::os::unix::fs::symlink(
            outside.path().join("passwd"),
            rootfs.path().join("etc/passwd"),
        )
        .unwrap();
        let err = User::resolve(rootfs.path(), "app").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user app: no matching entries in passwd file"
        );

        std::fs::remove_file(rootfs.path().join("etc/passwd")).unwrap();
        std::fs::write(rootfs.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(rootfs.path().join("etc/group"), GROUP).unwrap();
        assert_eq!(
            User::resolve(rootfs.path(), "app").unwrap(),
            user(1000, 1001, &[50, 29])
        );
    }
}
