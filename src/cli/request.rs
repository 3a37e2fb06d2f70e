//! Flags + environment → request, once, with every conflict and bad value reported as an
//! input error naming the flag.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::error::InputError;
use crate::publish::{MultiPlatform, TarDest};
use crate::request::{
    BuildRequest, DockerfileSource, Entitlement, ExecutorChoice, Output, PublishRequest,
    RegistryOptions,
};
use crate::{engine, oci, progress};

use super::args::{self, BuildArgs, DisplayArgs, PublishArgs, RegistryArgs};
use super::values::OutputSpec;

/// Reads the environment; a function so tests can give a fake one.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The real process environment.
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// With the context `-`, reads standard input into a temporary context (see
/// [`crate::context::stdin`]) and points `args` at it: the context directory, and the
/// Dockerfile, which `-f` names inside the tar, or which standard input was.
pub fn take_stdin_context(
    args: &mut BuildArgs,
    stdin: impl std::io::Read,
) -> anyhow::Result<Option<crate::context::stdin::StdinContext>> {
    if args.context.as_os_str() != "-" {
        return Ok(None);
    }
    if args.file.as_ref().is_some_and(|f| f.as_os_str() == "-") {
        return Err(InputError::new(
            "`-f -` with the context `-`: standard input can hold the context or the Dockerfile, not both",
        )
        .into());
    }
    let context = crate::context::stdin::read(stdin, &std::env::temp_dir())?;
    let root = context.root();
    args.file = match (context.dockerfile(), args.file.take()) {
        (Some(dockerfile), None) => Some(dockerfile.to_owned()),
        (Some(_), Some(file)) => {
            return Err(InputError::new(format!(
                "-f {}: standard input held a Dockerfile too, not a tar of the context",
                file.display()
            ))
            .with_hint("drop -f, or send a tar of the context that holds the Dockerfile")
            .into());
        }
        (None, Some(file)) => Some(inside(&root, &file)),
        (None, None) => None,
    };
    args.context = root;
    Ok(Some(context))
}

/// `-f FILE` in a context imgbuild made (a tar's, a git checkout's), as docker build reads
/// it there: `/x` is the context's `x`, and `..` stops at its root.
fn inside(root: &Path, file: &Path) -> PathBuf {
    let cleaned = crate::context::clean_dest(&file.to_string_lossy());
    root.join(cleaned.trim_start_matches('/'))
}

/// `--build-context NAME=VALUE`: `docker-image://REF` or a directory, by name. The other
/// forms BuildKit takes (`oci-layout://`, URLs) are refused by name rather than misread.
fn named_contexts(
    specs: &[String],
) -> Result<BTreeMap<String, crate::frontend::stages::NamedContext>, InputError> {
    use crate::frontend::stages::NamedContext;
    let mut contexts = BTreeMap::new();
    for spec in specs {
        let Some((name, value)) = spec
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        else {
            return Err(InputError::new(format!(
                "--build-context {spec}: expected NAME=docker-image://REF"
            )));
        };
        let context = if let Some(image) = value.strip_prefix("docker-image://") {
            crate::registry::reference::Reference::parse(image)
                .map_err(|e| InputError::new(format!("--build-context {spec}: {e}")))?;
            NamedContext::Image(image.to_owned())
        } else if let Some(layout) = value.strip_prefix(crate::frontend::stages::OCI_LAYOUT_PREFIX)
        {
            NamedContext::Image(oci_layout_image(spec, layout)?)
        } else if value.contains("://")
            || crate::fetch::GitSource::context(value)
                .ok()
                .flatten()
                .is_some()
        {
            return Err(InputError::new(format!(
                "--build-context {spec}: docker-image://, oci-layout:// and directories are supported, not a URL"
            ))
            .with_hint("clone or download it, and give the directory"));
        } else {
            let dir = std::path::Path::new(value);
            if !dir.is_dir() {
                return Err(InputError::new(format!(
                    "--build-context {spec}: {value} is not a directory"
                )));
            }
            NamedContext::Local(dir.to_owned())
        };
        // Stage names are case-insensitive, so the name a stage would match is lower-case.
        contexts.insert(name.to_lowercase(), context);
    }
    Ok(contexts)
}

/// `oci-layout://PATH[:TAG]` as the image name the build uses for it: the layout's
/// absolute path (checked to be a layout) and the tag, which names the image in the
/// layout's index (`org.opencontainers.image.ref.name`; without one, the only image).
fn oci_layout_image(spec: &str, layout: &str) -> Result<String, InputError> {
    if layout.contains('@') {
        return Err(InputError::new(format!(
            "--build-context {spec}: an oci-layout:// image by digest is not supported yet"
        ))
        .with_hint("name it by its tag: oci-layout://PATH:TAG"));
    }
    let (path, tag) = oci::split_layout_tag(layout);
    let dir = std::fs::canonicalize(path)
        .ok()
        .filter(|dir| dir.join("oci-layout").is_file())
        .ok_or_else(|| {
            InputError::new(format!(
                "--build-context {spec}: {path} is not an OCI image layout (a directory with an oci-layout file)"
            ))
        })?;
    let mut name = format!(
        "{}{}",
        crate::frontend::stages::OCI_LAYOUT_PREFIX,
        dir.display()
    );
    if let Some(tag) = tag {
        name.push(':');
        name.push_str(tag);
    }
    Ok(name)
}

/// `--ssh ID[=SOCKET]`: each agent's socket, checked to be one, so a mistake is reported
/// before the build starts rather than inside a RUN. Key files (BuildKit's
/// `--ssh ID=KEY`) are refused: imgbuild forwards agents, it does not run one.
fn ssh_agents(specs: &[String], env: Env<'_>) -> Result<BTreeMap<String, PathBuf>, InputError> {
    use std::os::unix::fs::FileTypeExt;
    let mut agents = BTreeMap::new();
    for spec in specs {
        let (id, socket) = match spec.split_once('=') {
            Some((id, socket)) => (id, PathBuf::from(socket)),
            None => {
                let socket = env("SSH_AUTH_SOCK")
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        InputError::new(format!("--ssh {spec}: SSH_AUTH_SOCK is not set"))
                            .with_hint(
                                "start ssh-agent and ssh-add your key, or give --ssh ID=SOCKET",
                            )
                    })?;
                (spec.as_str(), PathBuf::from(socket))
            }
        };
        if id.is_empty() || id.contains(',') {
            return Err(InputError::new(format!(
                "--ssh {spec}: `{id}` is not an id (give default, or the id= of the mount)"
            )));
        }
        let is_socket = std::fs::metadata(&socket).is_ok_and(|m| m.file_type().is_socket());
        if !is_socket {
            return Err(InputError::new(format!(
                "--ssh {spec}: {} is not an SSH agent socket",
                socket.display()
            ))
            .with_hint(
                "give an ssh-agent's socket; for a key file, load it with `ssh-add KEY` and pass --ssh default",
            ));
        }
        agents.insert(id.to_owned(), socket);
    }
    Ok(agents)
}

/// With a git CONTEXT (a git URL, or `PATH#ref[:dir]` of a local repository), checks the
/// commit out into a temporary directory in the cache dir, as BuildKit checks a git context
/// out, and points `args` at it; `-f` names a file inside it. The repository's objects are
/// kept in the cache dir (`fetch-v1/`), as for `ADD git…`.
pub fn take_git_context(
    args: &mut BuildArgs,
    env: Env<'_>,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Option<crate::fetch::Checkout>> {
    use crate::fetch::{Fetcher, GitSource, RemoteSource, redact_url};
    let Some(text) = args.context.to_str() else {
        return Ok(None);
    };
    let Some(source) = GitSource::context(text)
        .map_err(|e| InputError::new(format!("the build context {}: {e}", redact_url(text))))?
    else {
        return Ok(None);
    };
    if args.file.as_ref().is_some_and(|f| f.as_os_str() == "-") {
        // A Dockerfile on standard input with a git context: as docker build takes it.
        return Err(InputError::new(format!(
            "-f - with the git context {}: not supported yet",
            redact_url(text)
        ))
        .with_hint("commit the Dockerfile to the repository and name it with -f")
        .into());
    }
    let cache_dir = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => default_cache_dir(env)?,
    };
    let blobs = crate::registry::BlobStore::open(&cache_dir)?;
    let fetcher = Fetcher::new(&cache_dir, blobs.blobs().clone())?;
    let remote = RemoteSource::Git(source.clone());
    runtime.block_on(fetcher.resolve(&remote))?;
    let checkout = fetcher.checkout(&source)?;
    args.file = args.file.take().map(|file| inside(&checkout.root, &file));
    args.context = checkout.root.clone();
    Ok(Some(checkout))
}

/// `-f`, else CONTEXT/Dockerfile, else, for a Mix project without one, the release
/// Dockerfile imgbuild writes for it (`--builder-image` and `--runner-image` pick its
/// images, and mean nothing otherwise).
fn dockerfile_source(args: &BuildArgs) -> Result<DockerfileSource, InputError> {
    let images = (args.builder_image.as_deref(), args.runner_image.as_deref());
    let generated = match &args.file {
        Some(p) if p.as_os_str() == "-" => return Ok(DockerfileSource::Stdin),
        Some(p) => {
            if images != (None, None) {
                return Err(images_without_project("-f names a Dockerfile"));
            }
            return Ok(DockerfileSource::Path(p.clone()));
        }
        None => crate::mix::dockerfile::for_context(&args.context, images.0, images.1)?,
    };
    match generated {
        Some(generated) if generated.needs_network && args.network == args::NetworkMode::None => {
            Err(
                InputError::new(format!("--network none: {}", generated.notes.join("; ")))
                    .with_hint("build with the default network or --network host"),
            )
        }
        Some(generated) => Ok(DockerfileSource::Generated {
            name: crate::mix::dockerfile::GENERATED_NAME.to_owned(),
            text: generated.text,
            notes: generated.notes,
        }),
        None if images != (None, None) => Err(images_without_project(
            "the context has a Dockerfile, or no mix.exs",
        )),
        None => Ok(DockerfileSource::Path(args.context.join("Dockerfile"))),
    }
}

fn images_without_project(why: &str) -> InputError {
    InputError::new(format!(
        "--builder-image and --runner-image are for a Mix project without a Dockerfile, and {why}"
    ))
    .with_hint("name the images in the Dockerfile's FROM lines (or in build args it declares)")
}

impl BuildRequest {
    pub fn from_args(args: BuildArgs, env: Env<'_>) -> Result<BuildRequest, InputError> {
        let dockerfile = dockerfile_source(&args)?;
        let mut build_args = BTreeMap::new();
        for arg in &args.build_args {
            match arg.split_once('=') {
                Some(("", _)) => {
                    return Err(InputError::new(format!(
                        "--build-arg `{arg}`: the name before `=` is empty"
                    )));
                }
                Some((key, value)) => {
                    build_args.insert(key.to_owned(), value.to_owned());
                }
                None if arg.is_empty() => {
                    return Err(InputError::new("--build-arg needs KEY=VALUE or KEY"));
                }
                None => {
                    if let Some(value) = env(arg) {
                        build_args.insert(arg.clone(), value);
                    }
                }
            }
        }
        let labels = args
            .labels
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        if let Some(target) = &args.target
            && target.is_empty()
        {
            return Err(InputError::new("--target is empty; name a stage"));
        }
        let cache_dir = match args.cache_dir {
            Some(dir) => dir,
            None => default_cache_dir(env)?,
        };
        let exports_cache = !args.cache_to.is_empty();
        let publish = PublishRequest::from_args(args.publish, exports_cache, env)?;
        let proxy_env = engine::proxy_env(&build_args);
        Ok(BuildRequest {
            context: args.context,
            dockerignore: true,
            context_owners: false,
            build_contexts: named_contexts(&args.build_contexts)?,
            dockerfile,
            target: args.target,
            build_args,
            labels,
            network: match args.network {
                args::NetworkMode::Default => engine::Network::Default,
                args::NetworkMode::Host => engine::Network::Host,
                args::NetworkMode::None => engine::Network::None,
            },
            allow: args
                .allow
                .iter()
                .map(|e| match e {
                    args::Entitlement::NetworkHost => Entitlement::NetworkHost,
                    args::Entitlement::SecurityInsecure => Entitlement::SecurityInsecure,
                })
                // `docker build --network host` grants the host network to every RUN.
                .chain(
                    (args.network == args::NetworkMode::Host).then_some(Entitlement::NetworkHost),
                )
                .collect(),
            no_cache: args.no_cache,
            // Stage names are case-insensitive, as the front end keeps them lower-cased.
            no_cache_filter: args
                .no_cache_filter
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
            cache_dir,
            secrets: args.secrets.into_iter().map(|s| (s.id, s.source)).collect(),
            ssh: ssh_agents(&args.ssh, env)?,
            cache_from: args.cache_from.into_iter().map(|c| c.0).collect(),
            cache_to: args.cache_to.into_iter().map(|c| c.0).collect(),
            label_from_git: args.label_from_git,
            context_size_warning: Some(args.context_size_warning.0).filter(|&n| n > 0),
            executor: match args.executor {
                args::Executor::Auto => ExecutorChoice::Auto,
                args::Executor::Native => ExecutorChoice::Native,
                args::Executor::Engine => ExecutorChoice::Engine,
            },
            engine: None,
            engine_for: engines_for(&args.engine_for, &publish, env)?,
            pull: args.pull,
            run_options: engine::RunOptions {
                extra_hosts: args.add_hosts.into_iter().map(|h| h.0).collect(),
                shm_size: args.shm_size.map(|s| s.0),
                ulimits: {
                    // A later --ulimit of the same resource replaces an earlier one.
                    let mut ulimits: Vec<engine::Ulimit> = Vec::new();
                    for spec in args.ulimits {
                        ulimits.retain(|u| u.name != spec.0.name);
                        ulimits.push(spec.0);
                    }
                    ulimits
                },
                proxy_env,
            },
            publish,
        })
    }
}

/// `--engine-for PLATFORM=ENGINE`: each names a platform the build is for, once.
fn engines_for(
    specs: &[String],
    publish: &PublishRequest,
    env: Env<'_>,
) -> Result<BTreeMap<oci::Platform, engine::EngineAddress>, InputError> {
    let mut engines = BTreeMap::new();
    let platforms: Vec<&oci::Platform> = match &publish.multi_platform {
        Some(multi) => multi.images.iter().map(|(p, _)| p).collect(),
        None if specs.is_empty() => return Ok(engines),
        None => {
            return Err(InputError::new(format!(
                "--engine-for {}: it picks an engine for one platform of a multi-platform build, and this build is for {} alone",
                engine::mask_credentials(&specs[0]),
                publish.platform
            ))
            .with_hint("build on that engine with DOCKER_HOST or DOCKER_CONTEXT, or list more platforms with --platform"));
        }
    };
    for spec in specs {
        // An address may hold a password (`tcp://user:secret@host`): never shown.
        let at = format!("--engine-for {}", engine::mask_credentials(spec));
        let (platform, engine) = spec.split_once('=').ok_or_else(|| {
            InputError::new(format!("{at}: expected PLATFORM=ENGINE"))
                .with_hint("e.g. --engine-for linux/arm64=ssh://builder@arm-host")
        })?;
        let platform = platform
            .trim()
            .parse::<oci::Platform>()
            .map_err(|e| InputError::new(format!("{at}: {e}")))?;
        if !platforms.contains(&&platform) {
            return Err(
                InputError::new(format!("{at}: the build is not for {platform}")).with_hint(
                    format!("add it to --platform, e.g. --platform linux/amd64,{platform}"),
                ),
            );
        }
        let address = engine::EngineAddress::named(engine.trim(), &|key| env(key))
            .map_err(|e| InputError::new(format!("{at}: {e}")))?;
        if engines.insert(platform.clone(), address).is_some() {
            return Err(InputError::new(format!(
                "{at}: {platform} is given an engine twice"
            )));
        }
    }
    Ok(engines)
}

/// The `--annotation`s of the manifest for `platform` (those without a platform, and those
/// for it). Descriptor annotations are not supported yet. Index annotations need an index:
/// BuildKit refuses them for a single-platform image too.
fn manifest_annotations(
    specs: &[super::values::AnnotationSpec],
    platform: &oci::Platform,
    multi_platform: bool,
) -> Result<BTreeMap<String, String>, InputError> {
    use super::values::AnnotationKind;
    let mut annotations = BTreeMap::new();
    for spec in specs {
        let at = format!("--annotation {}:{}", spec.kind, spec.key);
        if !multi_platform && let Some(other) = spec.platform.as_ref().filter(|p| *p != platform) {
            return Err(InputError::new(format!(
                "{at}: this build is for {platform}, not {other}"
            )));
        }
        match spec.kind {
            AnnotationKind::Manifest => {
                if spec.platform.as_ref().is_none_or(|p| p == platform) {
                    annotations.insert(spec.key.clone(), spec.value.clone());
                }
            }
            AnnotationKind::Index if multi_platform => {}
            AnnotationKind::Index | AnnotationKind::IndexDescriptor => {
                return Err(InputError::new(format!(
                    "{at}: a single-platform image has no index (BuildKit refuses index annotations for one platform too)"
                ))
                .with_hint("annotate the manifest: drop the `index:` prefix"));
            }
            AnnotationKind::ManifestDescriptor => {
                return Err(InputError::new(format!(
                    "{at}: manifest-descriptor annotations are not supported yet"
                ))
                .with_hint(
                    "annotate the manifest itself: drop the `manifest-descriptor:` prefix",
                ));
            }
        }
    }
    Ok(annotations)
}

/// `--platform`: one platform, or a comma-separated list of distinct ones.
fn requested_platforms(list: Option<&str>) -> Result<Vec<oci::Platform>, InputError> {
    let Some(list) = list else {
        return Ok(vec![oci::Platform::default()]);
    };
    let mut platforms: Vec<oci::Platform> = Vec::new();
    for item in list.split(',').map(str::trim) {
        let platform = item
            .parse::<oci::Platform>()
            .map_err(|e| InputError::new(format!("--platform: {e}")))?;
        if platforms.contains(&platform) {
            return Err(InputError::new(format!(
                "--platform {list}: {platform} is listed twice"
            )));
        }
        platforms.push(platform);
    }
    Ok(platforms)
}

/// The multi-platform part of a request for `platforms` (two or more): each platform's
/// manifest annotations, the index's, and outputs that can hold an index.
fn multi_platform(
    platforms: &[oci::Platform],
    specs: &[super::values::AnnotationSpec],
    outputs: &[Output],
) -> Result<MultiPlatform, InputError> {
    use super::values::AnnotationKind;
    let list = platforms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    for spec in specs {
        if let Some(p) = spec.platform.as_ref().filter(|p| !platforms.contains(p)) {
            return Err(InputError::new(format!(
                "--annotation {}:{}: this build is for {list}, not {p}",
                spec.kind, spec.key
            )));
        }
    }
    for output in outputs {
        let refused = match output {
            Output::DockerTar(_) => Some((
                "type=docker",
                "a docker archive holds one platform's image (BuildKit's docker exporter refuses several too)",
            )),
            Output::Tar(_) => Some(("type=tar", "imgbuild writes one file system per tar")),
            _ => None,
        };
        if let Some((kind, why)) = refused {
            return Err(InputError::new(format!(
                "--output {kind} with --platform {list}: {why}"
            ))
            .with_hint("write the index with --output type=oci,dest=DIR (or push it), or build one platform with --platform"));
        }
    }
    let images = platforms
        .iter()
        .map(|p| Ok((p.clone(), manifest_annotations(specs, p, true)?)))
        .collect::<Result<Vec<_>, InputError>>()?;
    let index_annotations = specs
        .iter()
        .filter(|s| s.kind == AnnotationKind::Index)
        .map(|s| (s.key.clone(), s.value.clone()))
        .collect();
    Ok(MultiPlatform {
        images,
        index_annotations,
    })
}

impl PublishRequest {
    /// `exports_cache`: the build exports a cache (`--cache-to`), whose layers are gzip.
    pub fn from_args(
        args: PublishArgs,
        exports_cache: bool,
        env: Env<'_>,
    ) -> Result<PublishRequest, InputError> {
        let mut outputs = Vec::new();
        let mut push = args.push;
        let load = args.load.then_some(OutputSpec::Engine);
        for spec in args.outputs.into_iter().chain(load) {
            let output = match spec {
                OutputSpec::Engine => Output::Engine,
                OutputSpec::OciDir(d) => Output::OciDir(d),
                OutputSpec::OciTar(d) => Output::OciTar(d),
                OutputSpec::DockerTar(d) => Output::DockerTar(d),
                OutputSpec::Local(d) => Output::Local(d),
                OutputSpec::CacheOnly => Output::CacheOnly,
                OutputSpec::Tar(Some(d)) => Output::Tar(TarDest::File(d)),
                OutputSpec::Tar(None) => {
                    if std::io::stdout().is_terminal() {
                        return Err(InputError::new(
                            "--output type=tar,dest=- would write a tar to the terminal",
                        )
                        .with_hint("redirect standard output to a file, or give dest=FILE"));
                    }
                    Output::Tar(TarDest::Stdout)
                }
                OutputSpec::Registry => {
                    push = true;
                    continue;
                }
            };
            if !outputs.contains(&output) {
                outputs.push(output);
            }
        }
        if push && args.tags.is_empty() {
            return Err(
                InputError::new("--push needs at least one --tag naming where to push")
                    .with_hint("add e.g. `-t registry.example.com/team/app:1.0`"),
            );
        }
        for tag in &args.tags {
            check_tag(tag)?;
        }
        let source_date_epoch = match args.source_date_epoch {
            Some(n) => check_epoch(n, "--source-date-epoch")?,
            None => match env("SOURCE_DATE_EPOCH").filter(|v| !v.is_empty()) {
                Some(v) => {
                    let n = v.trim().parse::<i64>().map_err(|_| {
                        InputError::new(format!(
                            "SOURCE_DATE_EPOCH=`{v}` is not a number of seconds since 1970"
                        ))
                    })?;
                    check_epoch(n, "SOURCE_DATE_EPOCH")?
                }
                None => 0,
            },
        };
        let platforms = requested_platforms(args.registry.platform.as_deref())?;
        let platform = platforms[0].clone();
        let multi_platform = match platforms.len() {
            1 => None,
            _ => Some(multi_platform(&platforms, &args.annotations, &outputs)?),
        };
        let annotations = match &multi_platform {
            Some(multi) => multi.images[0].1.clone(),
            None => manifest_annotations(&args.annotations, &platform, false)?,
        };
        let compression = match args.compression {
            Some(args::Compression::Gzip) => oci::Compression::Gzip,
            Some(args::Compression::Zstd) => oci::Compression::Zstd,
            Some(args::Compression::Uncompressed) => oci::Compression::Uncompressed,
            // The engine keeps layers unpacked and never sees a compressed blob's digest
            // (an image's id comes from the uncompressed ones), so compressing what only
            // goes there is time for nothing; BuildKit's engine export does not compress
            // either. An exported cache's layers are gzip.
            None if crate::publish::only_to_engine(&outputs, push) && !exports_cache => {
                oci::Compression::Uncompressed
            }
            None => oci::Compression::Gzip,
        };
        Ok(PublishRequest {
            platform_asked: args.registry.platform.is_some(),
            multi_platform,
            annotations,
            tags: args.tags,
            outputs,
            push,
            compression,
            source_date_epoch,
            iidfile: args.iidfile,
            metadata_file: args.metadata_file,
            registry: RegistryOptions::from_args(&args.registry),
            platform,
            progress: progress_mode(&args.display),
        })
    }
}

impl RegistryOptions {
    pub fn from_args(args: &RegistryArgs) -> RegistryOptions {
        RegistryOptions {
            mirrors: args
                .registry_mirrors
                .iter()
                .map(|m| (m.host.clone(), m.url.clone()))
                .collect(),
            insecure: args.insecure_registries.clone(),
        }
    }
}

/// A `--tag` is checked before anything runs, by the rules the engine and registries apply
/// (docker build refuses `My/App` at once, too): a name with an optional tag, no digest.
fn check_tag(tag: &str) -> Result<(), InputError> {
    let reference = crate::registry::Reference::parse(tag).map_err(|e| {
        let hint = e.hint().map(str::to_owned);
        let err = InputError::new(format!("--tag: {e}"));
        match hint {
            Some(hint) => err.with_hint(hint),
            None => err,
        }
    })?;
    if reference.digest().is_some() {
        return Err(InputError::new(format!(
            "--tag `{tag}` names a digest; a tag is `name` or `name:tag`, and the digest is \
             the image's own (see --metadata-file)"
        )));
    }
    Ok(())
}

/// `auto` becomes tty on a terminal and plain elsewhere (CI logs), as BuildKit does.
pub fn progress_mode(display: &DisplayArgs) -> progress::Mode {
    if display.quiet {
        return progress::Mode::Quiet;
    }
    match display.progress {
        args::ProgressMode::Tty => progress::Mode::Tty,
        args::ProgressMode::Plain => progress::Mode::Plain,
        args::ProgressMode::Quiet => progress::Mode::Quiet,
        args::ProgressMode::Rawjson => progress::Mode::RawJson,
        args::ProgressMode::Auto if std::io::stderr().is_terminal() => progress::Mode::Tty,
        args::ProgressMode::Auto => progress::Mode::Plain,
    }
}

/// Timestamps before 1970 or past what a tar header holds (11 octal digits) are refused.
fn check_epoch(n: i64, name: &str) -> Result<i64, InputError> {
    const MAX_TAR_MTIME: i64 = 0o777_7777_7777;
    if (0..=MAX_TAR_MTIME).contains(&n) {
        Ok(n)
    } else {
        Err(InputError::new(format!(
            "{name}={n} is out of range (0 to {MAX_TAR_MTIME})"
        )))
    }
}

/// `$XDG_CACHE_HOME/imgbuild`, else `$HOME/.cache/imgbuild`.
pub(crate) fn default_cache_dir(env: Env<'_>) -> Result<PathBuf, InputError> {
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
        return Ok(Path::new(&xdg).join("imgbuild"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(Path::new(&home).join(".cache").join("imgbuild"));
    }
    Err(
        InputError::new("no cache directory: neither XDG_CACHE_HOME nor HOME is set")
            .with_hint("pass --cache-dir DIR"),
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Command, with_default_subcommand};

    fn request(args: &[&str], env: &[(&str, &str)]) -> Result<BuildRequest, InputError> {
        let build = build_args(args);
        let env = |k: &str| {
            env.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        };
        BuildRequest::from_args(build, &env)
    }

    fn build_args(args: &[&str]) -> BuildArgs {
        let argv = std::iter::once("imgbuild")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        let cli = Cli::try_parse_from(with_default_subcommand(argv)).unwrap();
        let Command::Build(build) = cli.command else {
            panic!("not a build")
        };
        *build
    }

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, text) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_cksum();
            builder
                .append_data(&mut header, name, text.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_context_on_stdin_names_its_dockerfile_inside_the_tar() {
        let tar = tar_of(&[("Dockerfile", "FROM a\n"), ("sub/Other", "FROM b\n")]);
        let mut args = build_args(&["-"]);
        let context = take_stdin_context(&mut args, &tar[..]).unwrap().unwrap();
        assert_eq!(args.context, context.root());
        assert_eq!(args.file, None, "CONTEXT/Dockerfile, as for a directory");
        // As docker build reads -f with a tar: inside it, `/` its root, `..` stopping there.
        for file in [
            "sub/Other",
            "/sub/Other",
            "../sub/Other",
            "./sub/../sub/Other",
        ] {
            let mut args = build_args(&["-f", file, "-"]);
            let context = take_stdin_context(&mut args, &tar[..]).unwrap().unwrap();
            assert_eq!(
                args.file,
                Some(context.root().join("sub/Other")),
                "-f {file}"
            );
        }
    }

    #[test]
    fn a_dockerfile_on_stdin_is_the_dockerfile() {
        let mut args = build_args(&["-"]);
        let context = take_stdin_context(&mut args, &b"FROM a\n"[..])
            .unwrap()
            .unwrap();
        assert_eq!(args.file.as_deref(), context.dockerfile());
        assert_eq!(std::fs::read_dir(&args.context).unwrap().count(), 0);

        let mut args = build_args(&["-f", "Dockerfile", "-"]);
        let err = take_stdin_context(&mut args, &b"FROM a\n"[..]).unwrap_err();
        assert!(format!("{err:#}").contains("standard input held a Dockerfile too"));
        let mut args = build_args(&["-f", "-", "-"]);
        let err = take_stdin_context(&mut args, &b"FROM a\n"[..]).unwrap_err();
        assert!(err.downcast_ref::<InputError>().is_some());
        assert!(format!("{err:#}").contains("not both"), "{err:#}");
        // Not `-`: standard input is not read.
        let mut args = build_args(&["ctx"]);
        assert!(
            take_stdin_context(&mut args, &b"unread"[..])
                .unwrap()
                .is_none()
        );
        assert_eq!(args.context, PathBuf::from("ctx"));
    }

    #[test]
    fn ssh_agents_are_sockets_checked_before_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let socket_text = socket.display().to_string();
        let home = ("HOME", "/home/u");
        let r = request(
            &["--ssh", "default", "ctx"],
            &[home, ("SSH_AUTH_SOCK", &socket_text)],
        )
        .unwrap();
        assert_eq!(r.ssh.get("default"), Some(&socket));
        let spec = format!("git={socket_text}");
        let r = request(&["--ssh", &spec, "ctx"], &[home]).unwrap();
        assert_eq!(r.ssh.get("git"), Some(&socket));

        let err = request(&["--ssh", "default", "ctx"], &[home]).unwrap_err();
        assert!(
            err.to_string().contains("SSH_AUTH_SOCK is not set"),
            "{err}"
        );
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "not a socket").unwrap();
        let spec = format!("default={}", key.display());
        let err = request(&["--ssh", &spec, "ctx"], &[home]).unwrap_err();
        assert!(
            err.to_string().contains("is not an SSH agent socket"),
            "{err}"
        );
    }

    #[test]
    fn defaults() {
        let r = request(&["ctx"], &[("HOME", "/home/u")]).unwrap();
        assert_eq!(
            r.dockerfile,
            DockerfileSource::Path("ctx/Dockerfile".into())
        );
        assert_eq!(r.cache_dir, PathBuf::from("/home/u/.cache/imgbuild"));
        assert_eq!(r.publish.source_date_epoch, 0);
        assert_eq!(r.publish.platform, oci::Platform::linux_amd64());
        assert!(r.publish.outputs.is_empty());
        assert!(!r.publish.push);
        assert_eq!(r.executor, ExecutorChoice::Auto);
    }

    #[test]
    fn layers_only_the_engine_gets_are_not_compressed_unless_asked() {
        use oci::Compression::*;
        let home = [("HOME", "/home/u")];
        for (args, want) in [
            (&["ctx"][..], Uncompressed),
            (&["--load", "ctx"], Uncompressed),
            (&["-o", "type=engine", "ctx"], Uncompressed),
            (&["--compression", "gzip", "ctx"], Gzip),
            (&["--compression", "zstd", "--load", "ctx"], Zstd),
            (&["--push", "-t", "r.example/a", "ctx"], Gzip),
            (&["--load", "--push", "-t", "r.example/a", "ctx"], Gzip),
            (&["-o", "type=engine", "-o", "type=oci,dest=x", "ctx"], Gzip),
            (&["-o", "type=oci,dest=x", "ctx"], Gzip),
            (&["-o", "type=cacheonly", "ctx"], Gzip),
            (
                &["--cache-from", "type=registry,ref=r.example/c", "ctx"],
                Uncompressed,
            ),
            (
                &["--cache-to", "type=registry,ref=r.example/c", "ctx"],
                Gzip,
            ),
            (
                &[
                    "-o",
                    "type=oci,dest=x",
                    "--compression",
                    "uncompressed",
                    "ctx",
                ],
                Uncompressed,
            ),
        ] {
            let r = request(args, &home).unwrap();
            assert_eq!(r.publish.compression, want, "{args:?}");
        }
    }

    #[test]
    fn executor_choices() {
        for (flag, choice) in [
            ("auto", ExecutorChoice::Auto),
            ("native", ExecutorChoice::Native),
            ("engine", ExecutorChoice::Engine),
        ] {
            let r = request(&["--executor", flag, "."], &[("HOME", "/h")]).unwrap();
            assert_eq!(r.executor, choice, "{flag}");
        }
    }

    #[test]
    fn context_size_warning_sizes() {
        let limit = |args: &[&str]| {
            request(args, &[("HOME", "/h")])
                .unwrap()
                .context_size_warning
        };
        assert_eq!(limit(&["."]), Some(1 << 30));
        assert_eq!(
            limit(&["--context-size-warning", "500MB", "."]),
            Some(500_000_000)
        );
        assert_eq!(
            limit(&["--context-size-warning", "2GiB", "."]),
            Some(2 << 30)
        );
        assert_eq!(limit(&["--context-size-warning", "4096", "."]), Some(4096));
        assert_eq!(limit(&["--context-size-warning", "0", "."]), None);
        let argv = ["imgbuild", "build", "--context-size-warning", "lots", "."];
        let error = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(
            error.contains("`lots` is not a size") && error.contains("2GiB"),
            "{error}"
        );
    }

    #[test]
    fn environment_fills_in() {
        let env = [
            ("XDG_CACHE_HOME", "/xdg"),
            ("SOURCE_DATE_EPOCH", "1700000000"),
            ("FROM_ENV", "v"),
        ];
        let r = request(
            &[
                "--build-arg",
                "FROM_ENV",
                "--build-arg",
                "UNSET",
                "--build-arg",
                "A=b=c",
                ".",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(r.cache_dir, PathBuf::from("/xdg/imgbuild"));
        assert_eq!(r.publish.source_date_epoch, 1_700_000_000);
        let args: Vec<_> = r
            .build_args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(args, ["A=b=c", "FROM_ENV=v"]);
        // The flag wins over the environment.
        let r = request(&["--source-date-epoch", "5", "."], &env).unwrap();
        assert_eq!(r.publish.source_date_epoch, 5);
    }

    #[test]
    fn conflicts_and_bad_values() {
        let home = [("HOME", "/h")];
        for (args, env, needle) in [
            (vec!["--push", "."], &home[..], "--push needs"),
            (
                vec!["--output", "type=registry", "."],
                &home[..],
                "--push needs",
            ),
            (vec!["--build-arg", "=x", "."], &home[..], "--build-arg"),
            (
                vec!["--source-date-epoch=-1", "."],
                &home[..],
                "--source-date-epoch",
            ),
            (
                vec!["."],
                &[("HOME", "/h"), ("SOURCE_DATE_EPOCH", "soon")][..],
                "SOURCE_DATE_EPOCH",
            ),
            (vec!["--platform", "amd64", "."], &home[..], "--platform"),
            (vec!["."], &[][..], "cache directory"),
            (vec!["-t", "a b", "."], &home[..], "--tag"),
            (vec!["-t", "", "."], &home[..], "--tag"),
            (
                vec!["-t", "My/App:latest", "."],
                &home[..],
                "must be lowercase",
            ),
            (vec!["-t", "app:-1", "."], &home[..], "--tag"),
            (vec!["-t", "app:v1", "-t", "app:", "."], &home[..], "--tag"),
            (
                vec!["-t", &format!("app@sha256:{}", "a".repeat(64)), "."],
                &home[..],
                "names a digest",
            ),
        ] {
            let err = request(&args, env).unwrap_err();
            assert!(err.to_string().contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn outputs_resolve() {
        let r = request(
            &[
                "-t",
                "r/a",
                "-o",
                "type=oci,dest=o",
                "-o",
                "type=registry",
                "-o",
                "type=oci,dest=o",
                "-f",
                "-",
                ".",
            ],
            &[("HOME", "/h")],
        )
        .unwrap();
        assert_eq!(r.publish.outputs, [Output::OciDir("o".into())]);
        assert!(r.publish.push);
        assert_eq!(r.dockerfile, DockerfileSource::Stdin);

        // `--load` is `--output type=engine`, also beside --push or another output.
        let r = request(&["--load", "--push", "-t", "r/a", "."], &[("HOME", "/h")]).unwrap();
        assert_eq!(r.publish.outputs, [Output::Engine]);
        assert!(r.publish.to_engine() && r.publish.push);
        let r = request(
            &["-o", "type=oci,dest=o", "--load", "-o", "type=engine", "."],
            &[("HOME", "/h")],
        )
        .unwrap();
        assert_eq!(
            r.publish.outputs,
            [Output::OciDir("o".into()), Output::Engine]
        );
        let r = request(&["--push", "-t", "r/a", "."], &[("HOME", "/h")]).unwrap();
        assert!(!r.publish.to_engine());
    }

    #[test]
    fn a_mix_project_without_a_dockerfile_is_built_with_the_dockerfile_imgbuild_writes() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().to_str().unwrap();
        std::fs::write(
            dir.path().join("mix.exs"),
            "defmodule A.MixProject do\n  def project do\n    [app: :shop, aliases: [\"assets.deploy\": [\"esbuild default --minify\"]]]\n  end\nend\n",
        )
        .unwrap();
        let images = ["--builder-image", "b:1", "--runner-image", "r:1"];
        let mut args = images.to_vec();
        args.push(ctx);
        let r = request(&args, &[("HOME", "/h")]).unwrap();
        let DockerfileSource::Generated { text, notes, .. } = &r.dockerfile else {
            panic!("not generated: {:?}", r.dockerfile)
        };
        assert!(text.contains("FROM b:1 AS build"), "{text}");
        assert!(notes[0].contains("esbuild"), "{notes:?}");

        // Its asset tools download: --network none is refused before anything runs.
        let mut args = images.to_vec();
        args.extend(["--network", "none", ctx]);
        let err = request(&args, &[("HOME", "/h")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--network none: mix.exs: `mix assets.deploy` runs esbuild"),
            "{err}"
        );

        // With a Dockerfile of its own, the images flags mean nothing and are refused.
        std::fs::write(dir.path().join("Dockerfile"), "FROM x\n").unwrap();
        let mut args = images.to_vec();
        args.push(ctx);
        let err = request(&args, &[("HOME", "/h")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("are for a Mix project without a Dockerfile"),
            "{err}"
        );
        let r = request(&[ctx], &[("HOME", "/h")]).unwrap();
        assert_eq!(
            r.dockerfile,
            DockerfileSource::Path(dir.path().join("Dockerfile"))
        );
    }

    #[test]
    fn several_platforms_make_a_multi_platform_request() {
        let r = request(
            &[
                "--platform",
                "linux/amd64, linux/arm64",
                "--annotation",
                "index:org.example.index=i",
                "--annotation",
                "manifest[linux/arm64]:org.example.arm=a",
                "--annotation",
                "org.example.all=x",
                "-o",
                "type=oci,dest=out",
                ".",
            ],
            &[("HOME", "/h")],
        )
        .unwrap();
        let multi = r.publish.multi_platform.as_ref().unwrap();
        let amd64 = oci::Platform::linux_amd64();
        let arm64: oci::Platform = "linux/arm64".parse().unwrap();
        let all = ("org.example.all".to_string(), "x".to_string());
        let arm = ("org.example.arm".to_string(), "a".to_string());
        assert_eq!(
            multi.images,
            vec![
                (amd64.clone(), BTreeMap::from([all.clone()])),
                (arm64.clone(), BTreeMap::from([all, arm])),
            ]
        );
        assert_eq!(
            multi.index_annotations,
            BTreeMap::from([("org.example.index".to_string(), "i".to_string())])
        );
        assert!(r.publish.platform_asked);
        // Each platform's own request builds one image and publishes nothing.
        let second = r.publish.for_platform(1).unwrap();
        assert_eq!(second.platform, arm64);
        assert_eq!(second.outputs, vec![Output::CacheOnly]);
        assert!(second.multi_platform.is_none() && !second.push);
    }

    #[test]
    fn several_platforms_are_refused_where_one_image_must_go() {
        let cases: [(&[&str], &str); 6] = [
            (
                &[
                    "--platform",
                    "linux/amd64,linux/arm64",
                    "-o",
                    "type=docker,dest=a.tar",
                    ".",
                ],
                "--output type=docker with --platform linux/amd64,linux/arm64: a docker archive holds one platform's image",
            ),
            (
                &[
                    "--platform",
                    "linux/amd64,linux/arm64",
                    "-o",
                    "type=tar,dest=a.tar",
                    ".",
                ],
                "--output type=tar with --platform linux/amd64,linux/arm64",
            ),
            (
                &["--platform", "linux/amd64,linux/amd64", "."],
                "--platform linux/amd64,linux/amd64: linux/amd64 is listed twice",
            ),
            (
                &[
                    "--platform",
                    "linux/amd64,linux/arm64",
                    "--annotation",
                    "manifest[linux/s390x]:a=b",
                    ".",
                ],
                "--annotation manifest:a: this build is for linux/amd64,linux/arm64, not linux/s390x",
            ),
            (
                &[
                    "--platform",
                    "linux/amd64,linux/s390x",
                    "--engine-for",
                    "linux/arm64=unix:///x.sock",
                    ".",
                ],
                "--engine-for linux/arm64=unix:///x.sock: the build is not for linux/arm64",
            ),
            (
                &[
                    "--platform",
                    "linux/arm64",
                    "--engine-for",
                    "linux/arm64=unix:///x.sock",
                    ".",
                ],
                "--engine-for linux/arm64=unix:///x.sock: it picks an engine for one platform of a multi-platform build, and this build is for linux/arm64 alone",
            ),
        ];
        for (args, expected) in cases {
            let err = request(args, &[("HOME", "/h")]).unwrap_err();
            assert!(err.to_string().starts_with(expected), "{args:?}: {err}");
        }
    }

    #[test]
    fn engine_for_never_shows_a_password() {
        let err = request(
            &[
                "--platform",
                "linux/amd64,linux/arm64",
                "--engine-for",
                "linux/s390x=tcp://me:hunter2@host:2375",
                ".",
            ],
            &[("HOME", "/h")],
        )
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(
            err.to_string().contains("the build is not for linux/s390x"),
            "{err}"
        );
    }

    #[test]
    fn engine_for_names_an_address_or_a_docker_context() {
        let r = request(
            &[
                "--platform",
                "linux/amd64,linux/arm64",
                "--engine-for",
                "linux/arm64=ssh://builder@arm-host:2222",
                ".",
            ],
            &[("HOME", "/h")],
        )
        .unwrap();
        let arm64: oci::Platform = "linux/arm64".parse().unwrap();
        assert_eq!(
            r.engine_for[&arm64].to_string(),
            engine::EngineAddress::parse(Some("ssh://builder@arm-host:2222"))
                .unwrap()
                .to_string()
        );
        let err = request(
            &[
                "--platform",
                "linux/amd64,linux/arm64",
                "--engine-for",
                "linux/arm64=nosuch",
                ".",
            ],
            &[("HOME", "/h")],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--engine-for linux/arm64=nosuch: docker context nosuch"),
            "{err}"
        );
    }
}
