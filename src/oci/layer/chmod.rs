//! `--chmod` values: an octal mode, or chmod(1)'s symbolic form (`+x`, `u+x,go-w`,
//! `a=rX`, `go=u-w`), as current BuildKit takes them (Dockerfile 1.14: fsutil's copy with
//! `ModeStr`, which applies BSD `setmode` semantics with no umask).
//!
//! Written by hand: the crates that parse symbolic modes (uucore's, file-mode) follow GNU
//! chmod or their own rules, and these must be the ones BuildKit applies, quirks included
//! (`s` and `t` ignored for `o` alone, `X` ignored after `-`, `=` keeping the sticky bit
//! unless `t` is named).

use crate::error::InputError;

const SETUID: u32 = 0o4000;
const SETGID: u32 = 0o2000;
const STICKY: u32 = 0o1000;
const USER: u32 = 0o700;
const GROUP: u32 = 0o070;
const OTHER: u32 = 0o007;
const READ: u32 = 0o444;
const WRITE: u32 = 0o222;
const EXECUTE: u32 = 0o111;
/// Every bit `a` names (the sticky bit only with `t`).
const STANDARD: u32 = SETUID | SETGID | USER | GROUP | OTHER;
/// Every bit, for a clause that names nobody (the umask is 0).
const ALL: u32 = STANDARD | STICKY;

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// Replaces the permission bits (special bits included) of what is copied.
    Octal(u32),
    /// Changes each copied entry's own bits, in order.
    Symbolic(Vec<Action>),
}

/// One step of a symbolic mode, applied to the bits the steps before left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Clear(u32),
    Set(u32),
    /// `X`: set when the entry is a directory or had an execute bit before any step.
    SetIfExecutable(u32),
    /// `g=u`, `o+g`, `o-u`: the class `from`'s current bits, added to (`+`), taken from
    /// (`-`) or made (`=`) the bits of each class of `to` (`USER`, `GROUP`, `OTHER`
    /// masks), within `bits`.
    Copy {
        from: u32,
        to: u32,
        bits: u32,
        op: u8,
    },
}

impl Chmod {
    /// Parses a `--chmod` value; a value that starts with a digit must be an octal mode
    /// of at most 0o7777, as BuildKit's `strconv.ParseUint(…, 8, 32)`.
    pub fn parse(spec: &str) -> Result<Chmod, InputError> {
        if spec.starts_with(|c: char| c.is_ascii_digit()) {
            return match u32::from_str_radix(spec, 8) {
                Ok(mode) if mode <= 0o7777 => Ok(Chmod::Octal(mode)),
                _ => Err(InputError::new(format!(
                    "`--chmod={spec}` is not a file mode: an octal mode is at most 7777"
                ))
                .with_hint(
                    "write the mode in octal (--chmod=755) or symbolically (--chmod=u+x,go-w)",
                )),
            };
        }
        parse_symbolic(spec).map(Chmod::Symbolic).ok_or_else(|| {
            InputError::new(format!("`--chmod={spec}` is not a file mode")).with_hint(
                "write the mode in octal (--chmod=755) or symbolically (--chmod=u+x,go-w, a=rX)",
            )
        })
    }

    /// The permission bits (0o7777) an entry of `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let original = mode & 0o7777;
        let actions = match self {
            Chmod::Octal(mode) => return *mode,
            Chmod::Symbolic(actions) => actions,
        };
        let mut mode = original;
        for action in actions {
            match *action {
                Action::Clear(bits) => mode &= !bits,
                Action::Set(bits) => mode |= bits,
                Action::SetIfExecutable(bits) => {
                    if is_dir || original & EXECUTE != 0 {
                        mode |= bits;
                    }
                }
                Action::Copy { from, to, bits, op } => {
                    let shift = |class: u32| match class {
                        USER => 6,
                        GROUP => 3,
                        _ => 0,
                    };
                    let value = (mode & from) >> shift(from);
                    let cleared = if op == b'=' { 0o7 } else { value };
                    for class in [USER, GROUP, OTHER].into_iter().filter(|c| to & c != 0) {
                        if op != b'+' {
                            mode &= !((cleared << shift(class)) & bits);
                        }
                        if op != b'-' {
                            mode |= (value << shift(class)) & bits;
                        }
                    }
                }
            }
        }
        mode
    }

    /// The mode of a directory the copy creates on the way to its destination: the octal
    /// mode, or 0755 (fsutil's default) for a symbolic one.
    pub fn created_dir_mode(&self) -> u32 {
        match self {
            Chmod::Octal(mode) => *mode,
            Chmod::Symbolic(_) => 0o755,
        }
    }
}

/// `[ugoa]*` then one or more `[-+=]` each followed by `[rwxXst]*` or one of `ugo`, clauses
/// separated by `,`; `None` for anything else.
fn parse_symbolic(spec: &str) -> Option<Vec<Action>> {
    let mut actions = Vec::new();
    let mut rest = spec.as_bytes();
    loop {
        let mut who = 0;
        loop {
            who |= match rest.first()? {
                b'a' => STANDARD,
                b'u' => SETUID | USER,
                b'g' => SETGID | GROUP,
                b'o' => OTHER,
                _ => break,
            };
            rest = &rest[1..];
        }
        loop {
            let (&op, after) = rest.split_first()?;
            if !matches!(op, b'+' | b'-' | b'=') {
                return None;
            }
            rest = after;
            rest = operation(op, who, rest, &mut actions);
            match rest.first() {
                None => return Some(actions),
                Some(b',') => {
                    rest = &rest[1..];
                    break;
                }
                // Another operation for the same people (`u+r-w`).
                Some(_) => {}
            }
        }
    }
}

/// The permissions after operator `op` for `who`; returns what is left of the text.
fn operation<'a>(op: u8, who: u32, mut rest: &'a [u8], actions: &mut Vec<Action>) -> &'a [u8] {
    let mut who = who & !STICKY;
    let mut perm = 0;
    let mut executable_if = 0;
    let mut assigned = false;
    while let Some(&c) = rest.first() {
        match c {
            b'r' => perm |= READ,
            b'w' => perm |= WRITE,
            b'x' => perm |= EXECUTE,
            b'X' if op != b'-' => executable_if = EXECUTE,
            b'X' => {}
            // Set-id and sticky bits mean nothing for "other" alone.
            b's' if who == 0 || who & !OTHER != 0 => perm |= SETUID | SETGID,
            b't' if who == 0 || who & !OTHER != 0 => {
                who |= STICKY;
                perm |= STICKY;
            }
            b's' | b't' => {}
            b'u' | b'g' | b'o' => {
                if perm != 0 {
                    push(op, who, perm, actions);
                    perm = 0;
                }
                assigned |= op == b'=';
                if executable_if != 0 {
                    actions.push(Action::SetIfExecutable(masked(who, executable_if)));
                    executable_if = 0;
                }
                let from = match c {
                    b'u' => USER,
                    b'g' => GROUP,
                    _ => OTHER,
                };
                let to = if who == 0 { USER | GROUP | OTHER } else { who };
                actions.push(Action::Copy {
                    from,
                    to,
                    bits: if who == 0 { ALL } else { u32::MAX },
                    op,
                });
            }
            _ => break,
        }
        rest = &rest[1..];
    }
    if perm != 0 || (op == b'=' && !assigned) {
        push(op, who, perm, actions);
    }
    if executable_if != 0 {
        actions.push(Action::SetIfExecutable(masked(who, executable_if)));
    }
    rest
}

/// The bits of `perm` that `who` (nobody named: everybody) may change.
fn masked(who: u32, perm: u32) -> u32 {
    if who == 0 { ALL & perm } else { who & perm }
}

fn push(op: u8, who: u32, perm: u32, actions: &mut Vec<Action>) {
    match op {
        b'+' => actions.push(Action::Set(masked(who, perm))),
        b'-' => actions.push(Action::Clear(masked(who, perm))),
        _ => {
            // `=`: what `who` names is cleared first (`a` without `t` keeps the sticky bit).
            actions.push(Action::Clear(if who == 0 { STANDARD } else { who }));
            actions.push(Action::Set(masked(who, perm)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(spec: &str, mode: u32, is_dir: bool) -> u32 {
        Chmod::parse(spec)
            .unwrap_or_else(|e| panic!("{spec}: {e}"))
            .apply(mode, is_dir)
    }

    /// fsutil's TestCopyModeTextFormat, the cases BuildKit's COPY applies: a file 0644, an
    /// executable 0755, directories 0750 and 0700.
    #[test]
    fn symbolic_modes_change_each_entry_as_buildkit_does() {
        let cases = [
            ("go-w", [0o644, 0o755, 0o750, 0o700]),
            ("u+x", [0o744, 0o755, 0o750, 0o700]),
            ("g-rwx", [0o604, 0o705, 0o700, 0o700]),
            ("o+r", [0o644, 0o755, 0o754, 0o704]),
            ("a-x", [0o644, 0o644, 0o640, 0o600]),
            ("o-rwx,g+x", [0o650, 0o750, 0o750, 0o710]),
            ("a+X", [0o644, 0o755, 0o751, 0o711]),
            ("u=rwX,go=rX", [0o644, 0o755, 0o755, 0o755]),
            ("u=rX,go=r", [0o444, 0o544, 0o544, 0o544]),
            ("u-x,u+w", [0o644, 0o655, 0o650, 0o600]),
            ("u+x,o+x", [0o745, 0o755, 0o751, 0o701]),
            ("g+rw,o+rw", [0o666, 0o777, 0o776, 0o766]),
            ("a=r", [0o444, 0o444, 0o444, 0o444]),
            ("u=rwx,g=,o=", [0o700, 0o700, 0o700, 0o700]),
            ("o-rwx", [0o640, 0o750, 0o750, 0o700]),
            ("g-r,a+x", [0o715, 0o715, 0o711, 0o711]),
            ("u+rw,g+r,o-x,o+w", [0o646, 0o756, 0o752, 0o742]),
        ];
        for (spec, [file, executable, dir, restricted]) in cases {
            let got = [
                apply(spec, 0o644, false),
                apply(spec, 0o755, false),
                apply(spec, 0o750, true),
                apply(spec, 0o700, true),
            ];
            let octal = got.map(|m| format!("{m:o}"));
            assert_eq!(
                got,
                [file, executable, dir, restricted],
                "{spec}: {octal:?}"
            );
        }
    }

    /// chmod(1)'s own examples and the set-id and sticky rules of BSD `setmode`.
    #[test]
    fn copies_set_id_and_sticky_bits() {
        assert_eq!(apply("+x", 0o644, false), 0o755);
        assert_eq!(apply("go=u-w", 0o770, false), 0o755);
        assert_eq!(apply("go=u-w", 0o370, false), 0o311);
        assert_eq!(apply("u=rwx,go=u-w", 0, false), 0o755);
        assert_eq!(apply("go=", 0o777, false), 0o700);
        assert_eq!(apply("=rw,+X", 0o766, false), 0o777);
        assert_eq!(apply("u+s", 0o755, false), 0o4755);
        assert_eq!(apply("g+s", 0o755, true), 0o2755);
        assert_eq!(apply("+t", 0o755, true), 0o1755);
        // Set-id and sticky mean nothing for "other" alone.
        assert_eq!(apply("o+s", 0o755, false), 0o755);
        assert_eq!(apply("o+t", 0o755, false), 0o755);
        // `=` keeps the sticky bit unless it names it; `-X` changes nothing.
        assert_eq!(apply("a=r", 0o1777, true), 0o1444);
        assert_eq!(apply("-X", 0o777, false), 0o777);
        assert_eq!(apply("u+r-w", 0o200, false), 0o400);
        assert_eq!(apply("o-u", 0o457, false), 0o453);
        assert_eq!(apply("g+o", 0o401, false), 0o411);
    }

    proptest::proptest! {
        /// Any text is a mode or a refusal, and a mode gives permission bits only.
        #[test]
        fn any_text_parses_or_is_refused(spec in "[ugoa+=,rwxXst0-9-]{0,12}", mode in 0u32..0o10000, is_dir: bool) {
            if let Ok(chmod) = Chmod::parse(&spec) {
                proptest::prop_assert!(chmod.apply(mode, is_dir) <= 0o7777);
            }
        }
    }

    #[test]
    fn octal_modes_replace_the_bits_and_bad_values_are_refused() {
        assert_eq!(Chmod::parse("755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(Chmod::parse("04755").unwrap(), Chmod::Octal(0o4755));
        assert_eq!(Chmod::parse("0").unwrap().apply(0o755, true), 0);
        assert_eq!(Chmod::parse("u+x").unwrap().created_dir_mode(), 0o755);
        assert_eq!(Chmod::parse("700").unwrap().created_dir_mode(), 0o700);
        for bad in [
            "", "8", "999", "77777", "u", "u+z", "u+x,", "x", "uu", "+x,", "0u+x", " u+x",
        ] {
            let error = Chmod::parse(bad).map(|_| ()).unwrap_err().to_string();
            assert!(error.contains("is not a file mode"), "{bad}: {error}");
        }
        // `-1` is neither: refused as symbolic text; a lone operator changes nothing.
        assert!(Chmod::parse("-1").is_err());
        assert_eq!(apply("-", 0o640, false), 0o640);
    }
}
