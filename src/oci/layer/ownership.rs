//! `COPY --chown` and `--chmod`: resolving `user:group` against the image's own
//! `/etc/passwd` and `/etc/group` (never the host's), and parsing octal modes.

/// Numeric owner written into layer entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ownership {
    pub uid: u64,
    pub gid: u64,
}

impl Ownership {
    pub const ROOT: Ownership = Ownership { uid: 0, gid: 0 };
}

/// Resolves a `--chown` value, or the `USER` a `WORKDIR` creates its directories for
/// (`user`, `user:group`, `uid`, `uid:gid`, names or numbers), against the contents of the
/// image's `/etc/passwd` and `/etc/group` (`None` when the image has no such file), as
/// BuildKit's `readUser` does.
///
/// A user given without a group also gives the group: a named user's primary group (the
/// gid field of its `/etc/passwd` line), a numeric uid the same number. A name the image
/// does not know (the empty one of `:group` too) is id 0, and a group it does not know
/// (or an empty one) leaves the user's primary group: nothing fails the build.
pub fn resolve_user(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Ownership {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary) = lookup(user, passwd).unwrap_or((0, 0));
    let gid = match grp {
        Some(g) => lookup(g, group).map_or(primary, |ids| ids.0),
        None => primary,
    };
    Ownership { uid, gid }
}

/// A number (given as both ids), or the id and the group id (fields 2 and 3 of a
/// `:`-separated line; a group line's field 3 is its member list, and unused) of the entry
/// named `name` in a passwd/group file; `None` when the file, the name or its id is missing.
fn lookup(name: &str, file: Option<&str>) -> Option<(u64, u64)> {
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return name.parse().ok().map(|id| (id, id));
    }
    let fields: Vec<&str> = file?
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))?;
    let id = |field: usize| fields.get(field).and_then(|id| id.trim().parse().ok());
    let first = id(2)?;
    // Only a passwd line's primary group is used; a group line has members there.
    Some((first, id(3).unwrap_or(first)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          app:x:1000:1001:App:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app\napp:x:1001:\n";

    #[test]
    fn names_resolve_against_the_image_files() {
        let o = resolve_user("app:staff", Some(PASSWD), Some(GROUP));
        assert_eq!(o, Ownership { uid: 1000, gid: 50 });
    }

    #[test]
    fn a_named_user_alone_gives_its_primary_group_like_buildkit() {
        let o = resolve_user("app", Some(PASSWD), Some(GROUP));
        assert_eq!(
            o,
            Ownership {
                uid: 1000,
                gid: 1001
            }
        );
        // A numeric uid alone is also the gid.
        let o = resolve_user("42", None, None);
        assert_eq!(o, Ownership { uid: 42, gid: 42 });
        // Debian's `_apt` (42, primary group nogroup).
        let debian = "_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n";
        let o = resolve_user("_apt", Some(debian), None);
        assert_eq!(
            o,
            Ownership {
                uid: 42,
                gid: 65534
            }
        );
    }

    #[test]
    fn workdir_users_unknown_to_the_image_are_root_like_buildkit() {
        let o = resolve_user("app:staff", Some(PASSWD), Some(GROUP));
        assert_eq!(o, Ownership { uid: 1000, gid: 50 });
        assert_eq!(
            resolve_user("app", Some(PASSWD), Some(GROUP)),
            Ownership {
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(resolve_user("ghost", Some(PASSWD), None), Ownership::ROOT);
        assert_eq!(
            resolve_user("app:ghosts", Some(PASSWD), Some(GROUP)),
            Ownership {
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(
            resolve_user("7:8", None, None),
            Ownership { uid: 7, gid: 8 }
        );
    }

    #[test]
    fn numbers_need_no_files() {
        let o = resolve_user("7:8", None, None);
        assert_eq!(o, Ownership { uid: 7, gid: 8 });
    }

    #[test]
    fn unknown_names_are_root_as_in_buildkit() {
        // BuildKit's readUser: a name the image does not know is id 0, a group it does not
        // know leaves the user's primary group.
        let owner = resolve_user;
        assert_eq!(owner("nobody2", Some(PASSWD), Some(GROUP)), Ownership::ROOT);
        let app = owner("app", Some(PASSWD), Some(GROUP));
        assert_eq!(owner("app:wheel", Some(PASSWD), Some(GROUP)), app);
        assert_eq!(owner("app", None, None), Ownership::ROOT);
        assert_eq!(
            owner("77:wheel", None, None),
            Ownership { uid: 77, gid: 77 }
        );
        // An empty name is one the image does not know (BuildKit's `--chown=:group`).
        assert_eq!(owner(":1", None, None), Ownership { uid: 0, gid: 1 });
        assert_eq!(
            owner(":staff", Some(PASSWD), Some(GROUP)),
            Ownership { uid: 0, gid: 50 }
        );
        assert_eq!(owner("1:", None, None), Ownership { uid: 1, gid: 1 });
        assert_eq!(owner(":", None, None), Ownership::ROOT);
    }
}
