//! The command line: clap definitions ([`args`]), structured flag values ([`values`]),
//! flags → request ([`request`]), and the top-level error printing and exit status.
//! Nothing outside this module reads clap types.

pub mod args;
pub mod request;
pub mod values;

mod commands;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::error;

/// The error types that say more than their message: whether the input is at fault (exit
/// 2) and a hint. [`error::InputError`] is always looked for.
pub const ERROR_TYPES: &[error::Find] = &[
    error::find::<crate::frontend::Error>,
    error::find::<crate::engine::Error>,
];

/// Whether `err` is the user's input being wrong (exit 2), as the command line decides it.
pub fn is_input_error(err: &anyhow::Error) -> bool {
    error::is_input_error(err, ERROR_TYPES)
}

/// The hint printed after `err`, as the command line finds it.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    error::hint(err, ERROR_TYPES)
}

/// Runs imgbuild with the process's arguments and returns its exit status.
pub fn main() -> ExitCode {
    let argv = args::with_default_subcommand(std::env::args_os().collect());
    let cli = match args::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = err.print();
            return ExitCode::from(err.exit_code().clamp(0, 255) as u8);
        }
    };
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::from(error::exit_code(&err, ERROR_TYPES))
        }
    }
}

/// Prints an error as `error: …`, its causes as `Caused by: …`, and a `hint: …`.
/// A broken pipe on stdout (`imgbuild debug parse x | head`) is not worth a message.
fn report(err: &anyhow::Error) {
    if err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {err}");
    for cause in err.chain().skip(1) {
        let _ = writeln!(stderr, "  Caused by: {cause}");
    }
    if let Some(hint) = hint(err) {
        let _ = writeln!(stderr, "\nhint: {hint}");
    }
}
