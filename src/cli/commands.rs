//! One function per subcommand: turn the parsed flags into a request and hand it to the
//! library.

use std::io::Write;

use anyhow::Context;

use super::args::{BaseCommand, Cli, Command, DebugCommand, PushArgs};
use super::request::{default_cache_dir, process_env, progress_mode};
use crate::error::InputError;
use crate::request::{BuildRequest, RegistryOptions};
use crate::{frontend, oci, progress, registry};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Build(args) => build(BuildRequest::from_args(*args, &process_env)?),
        Command::Debug(DebugCommand::Parse { dockerfile }) => debug_parse(&dockerfile),
        Command::Base(BaseCommand::Build(_)) => Err(not_yet("imgbuild base build")),
        Command::Push(args) => push(args),
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

/// The async runtime for commands that talk to an engine or a registry.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `imgbuild push SRC REF`: an OCI layout or docker archive to a registry; prints the
/// pushed manifest digest on stdout.
fn push(args: PushArgs) -> anyhow::Result<()> {
    let options = RegistryOptions::from_args(&args.registry);
    let platform = match &args.registry.platform {
        Some(p) => p
            .parse::<oci::Platform>()
            .map_err(|e| InputError::new(format!("--platform: {e}")))?,
        None => oci::Platform::default(),
    };
    let reference = registry::Reference::parse(&args.reference)?;
    let mode = progress_mode(&args.display);
    let reporter = progress::reporter(mode);
    let cache_dir = default_cache_dir(&process_env)?;
    let image = oci::open_image(&args.source, &platform)?;
    let digest = runtime()?.block_on(async {
        let credentials = registry::Credentials::from_environment()?;
        let client = std::sync::Arc::new(registry::Client::new(&options, credentials)?);
        let blobs = registry::BlobStore::open(&cache_dir)?;
        let sink = crate::publish::Sink::Registry(crate::publish::RegistrySink::new(
            client,
            vec![reference],
            blobs,
        ));
        let ids = progress::Ids::default();
        sink.publish(image, &[], &reporter, &ids).await
    })?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", digest.digest).context("writing the digest")?;
    Ok(())
}
