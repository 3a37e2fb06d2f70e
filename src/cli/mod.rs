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
            ExitCode::from(error::exit_code(&err))
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
    if let Some(hint) = error::hint(err) {
        let _ = writeln!(stderr, "\nhint: {hint}");
    }
}
