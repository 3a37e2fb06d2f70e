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

/// Whether a failure is the user's input being wrong (exit 2) rather than a build failure.
pub fn is_input_error(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| cause.is::<InputError>() || cause.is::<crate::frontend::Error>())
}

/// The first hint found in the chain, if any.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<InputError>() {
            return e.hint().map(str::to_owned);
        }
        if let Some(e) = cause.downcast_ref::<crate::frontend::Error>() {
            return e.hint.clone();
        }
        if let Some(e) = cause.downcast_ref::<crate::engine::Error>() {
            return e.hint().map(str::to_owned);
        }
        None
    })
}

/// Exit status for an error.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if is_input_error(err) {
        EXIT_INPUT
    } else {
        EXIT_FAILURE
    }
}
