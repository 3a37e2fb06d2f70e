//! One function per subcommand: turn the parsed flags into a request and hand it to the
//! library.

use std::io::Write;

use anyhow::Context;

use super::args::{BaseCommand, Cli, Command, DebugCommand};
use super::request::process_env;
use crate::error::InputError;
use crate::frontend;
use crate::request::BuildRequest;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Build(args) => build(BuildRequest::from_args(*args, &process_env)?),
        Command::Debug(DebugCommand::Parse { dockerfile }) => debug_parse(&dockerfile),
        Command::Base(BaseCommand::Build(_)) => Err(not_yet("imgbuild base build")),
        Command::Push(_) => Err(not_yet("imgbuild push")),
    }
}

fn not_yet(what: &str) -> anyhow::Error {
    InputError::new(format!(
        "{what} is not yet supported in this version of imgbuild"
    ))
    .into()
}

fn debug_parse(path: &std::path::Path) -> anyhow::Result<()> {
    let bytes = frontend::read_dockerfile(path)?;
    let ast = frontend::parse_dockerfile(&path.display().to_string(), &bytes)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(ast.dump().as_bytes())
        .context("writing the dump")?;
    stdout.flush().context("writing the dump")?;
    Ok(())
}

fn build(request: BuildRequest) -> anyhow::Result<()> {
    let _graph = frontend::load(&request)?;
    Err(not_yet("building images"))
}
