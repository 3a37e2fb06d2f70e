//! One function per subcommand: turn the parsed flags into a request and hand it to the
//! library.

use std::io::Write;

use anyhow::Context;

use super::args::{
    BaseBuildArgs, BaseCommand, BuildArgs, Cli, Command, DebugCommand, InitArgs, PruneArgs,
    PushArgs,
};
use super::request::{
    default_cache_dir, process_env, progress_mode, take_git_context, take_stdin_context,
};
use crate::error::InputError;
use crate::request::{BuildRequest, Output, PublishRequest, RegistryOptions};
use crate::{base, frontend, oci, progress, registry};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Build(args) => build_command(args, Purpose::Build),
        Command::Check(args) => build_command(args, Purpose::Check),
        Command::Init(args) => init(args),
        Command::Debug(DebugCommand::Parse { dockerfile }) => debug_parse(&dockerfile),
        Command::Base(BaseCommand::Build(args)) => base_build(args),
        Command::Push(args) => push(args),
        Command::Prune(args) => prune(args),
    }
}

/// Why `build_command` builds: for the image, or for `imgbuild check`'s findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Build,
    Check,
}

fn build_command(mut args: Box<BuildArgs>, purpose: Purpose) -> anyhow::Result<()> {
    let runtime = runtime()?;
    // Kept until the build is done: the contexts they made live in them.
    let stdin_context = take_stdin_context(&mut args, std::io::stdin().lock())?;
    let git_context = take_git_context(&mut args, &process_env, &runtime)?;
    let mut request = BuildRequest::from_args(*args, &process_env)?;
    // docker build applies no ignore file to a tar or a git repository: they are the
    // context as their sender made it (moby/moby#13919).
    request.dockerignore = stdin_context.is_none() && git_context.is_none();
    request.context_owners = stdin_context.as_ref().is_some_and(|c| c.owners_kept());
    let publish = &mut request.publish;
    if purpose == Purpose::Check && publish.outputs.is_empty() && !publish.push {
        publish.outputs = vec![Output::CacheOnly];
    }
    let findings = build(request, &runtime, purpose)?;
    if purpose == Purpose::Check {
        let mut stdout = std::io::stdout().lock();
        for finding in &findings {
            writeln!(stdout, "{finding}").context("writing the findings")?;
        }
        if !findings.is_empty() {
            let n = findings.len();
            return Err(anyhow::anyhow!(
                "{n} finding{} (silence one with `# check=skip=ID` at the top of the Dockerfile)",
                if n == 1 { "" } else { "s" }
            ));
        }
    }
    Ok(())
}

/// `imgbuild init`: writes the Dockerfile `imgbuild .` builds a Mix project with.
fn init(args: InitArgs) -> anyhow::Result<()> {
    use crate::mix::{Project, dockerfile};
    let project = Project::detect(&args.dir)?.ok_or_else(|| {
        InputError::new(format!(
            "{} has no mix.exs: imgbuild init writes the Dockerfile of a Mix project's release",
            args.dir.display()
        ))
    })?;
    let path = args.dir.join("Dockerfile");
    if path.exists() && !args.force {
        return Err(InputError::new(format!("{} exists", path.display()))
            .with_hint("pass --force to replace it")
            .into());
    }
    let images = dockerfile::Images::choose(
        &project,
        args.builder_image.as_deref(),
        args.runner_image.as_deref(),
    )?;
    let generated = dockerfile::generate(&project, &images);
    crate::publish::write_atomically(&path, generated.text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    let mut stderr = std::io::stderr().lock();
    for note in &generated.notes {
        let _ = writeln!(stderr, "note: {note}");
    }
    let _ = writeln!(
        stderr,
        "wrote {} for the release `{}`; `imgbuild {}` builds the same image from it",
        path.display(),
        project.release,
        args.dir.display()
    );
    Ok(())
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

/// Runs a build and shows its outcome; returns what the checks found (a build shows them
/// as warnings, `imgbuild check` prints them itself).
fn build(
    request: BuildRequest,
    runtime: &tokio::runtime::Runtime,
    purpose: Purpose,
) -> anyhow::Result<Vec<crate::check::Finding>> {
    let mode = request.publish.progress;
    let reporter = progress::reporter(mode);
    let tags = request.publish.tags.clone();
    let stdout_taken = request.publish.writes_stdout();
    let result = runtime.block_on(crate::executor::build(request, reporter.clone()))?;
    if purpose == Purpose::Build {
        for finding in &result.findings {
            reporter.warning(&finding.to_string());
        }
    }
    let mut stdout = std::io::stdout().lock();
    if mode == progress::Mode::Quiet {
        // `-o -` wrote the tar there: an ID after it would corrupt it; `check` prints
        // findings there instead.
        if stdout_taken || purpose == Purpose::Check {
            return Ok(result.findings);
        }
        // The image ID, as `docker build -q` prints it: `docker run $(imgbuild -q .)` works.
        writeln!(stdout, "{}", result.config_digest).context("writing the image ID")?;
        return Ok(result.findings);
    }
    reporter.outcome(&progress::Outcome {
        tags: tags.clone(),
        digest: result.digest.clone(),
        image_id: result.config_digest.clone(),
        size: result.size,
        layers: result.layers,
        cache_hits: result.cache_hits,
        cache_misses: result.cache_misses,
        seconds: result.elapsed.as_secs_f64(),
    });
    let name = if tags.is_empty() {
        "(untagged)".to_owned()
    } else {
        tags.join(", ")
    };
    let total = result.cache_hits + result.cache_misses;
    reporter.summary(&format!(
        "\nbuilt {name}\n  digest   {}\n  image id {}\n  size     {} in {} layers\n  time     {:.1}s\n  cache    {} of {} steps cached, {} run\n  executor {}",
        result.digest,
        result.config_digest,
        indicatif::HumanBytes(result.size),
        result.layers,
        result.elapsed.as_secs_f64(),
        result.cache_hits,
        total,
        result.cache_misses,
        result.executor,
    ));
    Ok(result.findings)
}

/// `imgbuild prune`: removes the snapshot store's least recently used snapshots until the
/// rest fit in `--keep-storage` (default 0: every snapshot no running build uses), after
/// the leftovers of killed builds, then the blob store's least recently used blobs until
/// they fit in what the snapshots left of it (none while a build has the store open);
/// prints what went, in `docker builder prune`'s words.
fn prune(args: PruneArgs) -> anyhow::Result<()> {
    let cache_dir = match args.cache_dir {
        Some(dir) => dir,
        None => default_cache_dir(&process_env)?,
    };
    let budget = args.keep_storage.map_or(0, |size| size.0);
    let store = crate::cache::snapshot::SnapshotStore::open(&cache_dir)
        .with_context(|| format!("opening the snapshot store in {}", cache_dir.display()))?;
    let recovered = store
        .recover()
        .context("removing what killed builds left in the snapshot store")?;
    let pruned = store
        .prune(budget)
        .with_context(|| format!("pruning {}", store.root().display()))?;
    let blobs = registry::BlobStore::open(&cache_dir)?;
    let collected = blobs
        .collect(budget.saturating_sub(pruned.kept))
        .with_context(|| format!("pruning {}", blobs.blobs().root().display()))?;
    let mut stdout = std::io::stdout().lock();
    write!(
        stdout,
        "{}",
        prune_report(&pruned, collected.as_ref(), recovered.removed.len())
    )
    .context("writing the report")?;
    Ok(())
}

/// What `imgbuild prune` prints; `collected` is `None` when a build had the blob store open.
fn prune_report(
    pruned: &crate::cache::snapshot::Pruned,
    collected: Option<&registry::Collected>,
    abandoned: usize,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if !pruned.removed.is_empty() {
        out.push_str("Deleted snapshots:\n");
        for name in &pruned.removed {
            let _ = writeln!(out, "{name}");
        }
        out.push('\n');
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let _ = writeln!(
        out,
        "Total reclaimed space: {} in {} snapshot{}; {} kept",
        indicatif::HumanBytes(pruned.freed),
        pruned.removed.len(),
        plural(pruned.removed.len()),
        indicatif::HumanBytes(pruned.kept),
    );
    if !pruned.in_use.is_empty() {
        let n = pruned.in_use.len();
        let _ = writeln!(
            out,
            "{n} snapshot{} in use by a running build kept",
            plural(n)
        );
    }
    match collected {
        Some(blobs) => {
            let _ = writeln!(
                out,
                "Blobs: {} reclaimed in {} blob{}; {} kept",
                indicatif::HumanBytes(blobs.freed),
                blobs.removed,
                plural(blobs.removed),
                indicatif::HumanBytes(blobs.kept),
            );
        }
        None => out.push_str("Blobs: all kept, a running build has the blob store open\n"),
    }
    if abandoned > 0 {
        let _ = writeln!(
            out,
            "{abandoned} director{} left by killed builds removed",
            if abandoned == 1 { "y" } else { "ies" }
        );
    }
    out
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

/// `imgbuild base build base-images/NAME`: a base image from Debian packages, published
/// like a build's result; prints the image's manifest digest on stdout.
fn base_build(args: BaseBuildArgs) -> anyhow::Result<()> {
    let recipe = base::Recipe::load(&args.recipe)?;
    // Without --source-date-epoch or $SOURCE_DATE_EPOCH, the suite's Release date is the
    // epoch, so that the same Debian snapshot gives the same image.
    let explicit_epoch = args.publish.source_date_epoch.is_some()
        || process_env("SOURCE_DATE_EPOCH").is_some_and(|v| !v.is_empty());
    let mut request = PublishRequest::from_args(args.publish, false, &process_env)?;
    // The recipe's tag names the image in the engine or files; a push needs an explicit
    // --tag (the recipe's would mean Docker Hub).
    if request.tags.is_empty() && !request.push {
        request.tags.push(recipe.tag.clone());
    }
    let cache_dir = default_cache_dir(&process_env)?;
    if request.multi_platform.is_some() {
        return Err(InputError::new(
            "imgbuild base build makes one platform's image: give --platform one platform",
        )
        .into());
    }
    base::check_host(&request.platform)?;
    let reporter = progress::reporter(request.progress);
    let started = std::time::Instant::now();
    let digest = runtime()?.block_on(async {
        let registry = if request.push {
            let credentials = registry::Credentials::from_environment()?;
            Some(std::sync::Arc::new(registry::Client::new(
                &request.registry,
                credentials,
            )?))
        } else {
            None
        };
        let deps = crate::publish::SinkDeps {
            // Only an engine output needs it; sinks_for says so when it is missing.
            engine: crate::engine::Engine::connect().await.ok(),
            registry,
            blobs: registry::BlobStore::open(&cache_dir)?,
            engine_known_images: Vec::new(),
            scratch: cache_dir.clone(),
        };
        // Before the build: a wrong output or tag fails in a second, not after minutes.
        let sinks = crate::publish::sinks_for(&request, &deps)?;
        let epoch = if explicit_epoch {
            request.source_date_epoch
        } else {
            base::fetch_release_epoch(&recipe.mirror, &recipe.suite).await?
        };
        let options = base::BuildOptions {
            cache_dir: cache_dir.clone(),
            epoch,
            epoch_from_release: !explicit_epoch,
            compression: request.compression,
            platform: request.platform.clone(),
        };
        let ids = progress::Ids::default();
        let built =
            tokio::task::block_in_place(|| base::build(&recipe, &options, &reporter, &ids))?;
        let mut pushed = None;
        for sink in &sinks {
            let published = sink
                .publish(built.image.clone(), &request.tags, &reporter, &ids)
                .await
                .with_context(|| format!("publishing to {}", sink.describe()))?;
            if matches!(sink, crate::publish::Sink::Registry(_)) {
                pushed = Some(published.digest);
            }
        }
        let recorder = crate::publish::Recorder::for_request(&request);
        recorder.record(built.image.as_ref(), &request.tags, pushed.as_ref())?;
        let digest = request.names_image(built.image.as_ref());
        reporter.summary(&format!(
            "{} {digest}: {} compressed, {} uncompressed, built in {:.0?}",
            request.tags.join(", "),
            indicatif::HumanBytes(built.compressed_size),
            indicatif::HumanBytes(built.uncompressed_size),
            started.elapsed()
        ));
        built.remove()?;
        anyhow::Ok(digest)
    })?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{digest}").context("writing the digest")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::snapshot::Pruned;

    #[test]
    fn prune_says_what_it_freed_and_kept() {
        let pruned = Pruned {
            removed: vec!["step-aa".into(), "layer-bb".into()],
            freed: 3 << 29,
            kept: 1 << 20,
            in_use: vec!["step-cc".into()],
        };
        let collected = registry::Collected {
            removed: 1,
            freed: 12 << 20,
            kept: 2 << 30,
        };
        assert_eq!(
            prune_report(&pruned, Some(&collected), 1),
            "Deleted snapshots:\nstep-aa\nlayer-bb\n\n\
             Total reclaimed space: 1.50 GiB in 2 snapshots; 1.00 MiB kept\n\
             1 snapshot in use by a running build kept\n\
             Blobs: 12.00 MiB reclaimed in 1 blob; 2.00 GiB kept\n\
             1 directory left by killed builds removed\n"
        );
        assert_eq!(
            prune_report(&Pruned::default(), None, 0),
            "Total reclaimed space: 0 B in 0 snapshots; 0 B kept\n\
             Blobs: all kept, a running build has the blob store open\n"
        );
    }
}
