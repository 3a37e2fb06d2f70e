//! Error classes shared by every module.
//!
//! Modules return their own error types (or `anyhow::Error` with context). What the
//! binary needs to know is only the class of a failure, which decides the exit status:
//! 2 when the user's input is wrong (a flag, a Dockerfile, a missing context file),
//! 1 when a build or the machinery behind it failed.

use std::fmt;

/// Exit status for a failure caused by the user's input.
pub const EXIT_INPUT: u8 = 2;
/// Exit status for a build or runtime failure.
pub const EXIT_FAILURE: u8 = 1;

/// An error in what the user gave us: exits 2.
///
/// Any error in an `anyhow` chain that is (or wraps) an `InputError` makes the whole
/// failure an input error, so deep code can mark the cause without the top level knowing
/// every module's types.
#[derive(Debug)]
pub struct InputError {
    message: String,
    hint: Option<String>,
}

impl InputError {
    pub fn new(message: impl Into<String>) -> Self {
        InputError {
            message: message.into(),
            hint: None,
        }
    }

    /// A short suggestion printed after the error as `hint: …`.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InputError {}

/// What an error type tells the top level beyond its message: whether the user's input is
/// at fault, and what to do about it. `error` knows no other module's types: each module
/// implements this for its own, and the top level lists them ([`Find`]).
pub trait Hint: std::error::Error + 'static {
    /// A short suggestion printed after the error as `hint: …`.
    fn hint(&self) -> Option<&str>;
    /// Whether the user's input is at fault (exit 2) rather than the build (exit 1).
    fn is_input(&self) -> bool;
}

impl Hint for InputError {
    fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    fn is_input(&self) -> bool {
        true
    }
}

/// Finds one error type's [`Hint`] in a cause of an error chain: [`find::<T>`](find).
pub type Find = for<'a> fn(&'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Hint>;

/// The [`Find`] of the error type `T`.
pub fn find<'a, T: Hint>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Hint> {
    cause.downcast_ref::<T>().map(|e| e as &dyn Hint)
}

/// The first cause of `err` that is an [`InputError`] or one of `types`, as a [`Hint`].
fn hints<'a>(err: &'a anyhow::Error, types: &'a [Find]) -> impl Iterator<Item = &'a dyn Hint> {
    err.chain().filter_map(move |cause| {
        find::<InputError>(cause).or_else(|| types.iter().find_map(|find| find(cause)))
    })
}

/// Whether a failure is the user's input being wrong (exit 2) rather than a build failure:
/// some cause is an [`InputError`], or one of `types` that says so.
pub fn is_input_error(err: &anyhow::Error, types: &[Find]) -> bool {
    hints(err, types).any(|h| h.is_input())
}

/// The first hint found in the chain, if any.
pub fn hint(err: &anyhow::Error, types: &[Find]) -> Option<String> {
    hints(err, types).find_map(|h| h.hint().map(str::to_owned))
}

/// Exit status for an error.
pub fn exit_code(err: &anyhow::Error, types: &[Find]) -> u8 {
    if is_input_error(err, types) {
        EXIT_INPUT
    } else {
        EXIT_FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module's own error type, as the top level lists it.
    #[derive(Debug)]
    struct Outage;

    impl fmt::Display for Outage {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the service is down")
        }
    }

    impl std::error::Error for Outage {}

    impl Hint for Outage {
        fn hint(&self) -> Option<&str> {
            Some("try again later")
        }

        fn is_input(&self) -> bool {
            false
        }
    }

    const TYPES: &[Find] = &[find::<Outage>];

    #[test]
    fn input_errors_are_found_anywhere_in_the_chain() {
        let err = anyhow::Error::new(InputError::new("no such file").with_hint("check the path"))
            .context("reading the context");
        assert!(is_input_error(&err, &[]));
        assert_eq!(exit_code(&err, &[]), EXIT_INPUT);
        assert_eq!(hint(&err, &[]).as_deref(), Some("check the path"));
    }

    #[test]
    fn other_types_say_what_they_are_only_when_listed() {
        let err = anyhow::Error::new(Outage).context("pulling");
        assert_eq!(hint(&err, &[]), None);
        assert_eq!(hint(&err, TYPES).as_deref(), Some("try again later"));
        assert!(!is_input_error(&err, TYPES));
        assert_eq!(exit_code(&err, TYPES), EXIT_FAILURE);
    }

    #[test]
    fn a_listed_type_can_make_a_failure_the_users_fault() {
        #[derive(Debug)]
        struct BadSpec;
        impl fmt::Display for BadSpec {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bad spec")
            }
        }
        impl std::error::Error for BadSpec {}
        impl Hint for BadSpec {
            fn hint(&self) -> Option<&str> {
                None
            }
            fn is_input(&self) -> bool {
                true
            }
        }
        let err = anyhow::Error::new(BadSpec).context("building");
        assert!(!is_input_error(&err, TYPES));
        assert!(is_input_error(&err, &[find::<BadSpec>, find::<Outage>]));
        assert_eq!(hint(&err, &[find::<BadSpec>, find::<Outage>]), None);
    }
}
