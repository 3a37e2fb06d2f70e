//! The clap definitions of DESIGN.md's command-line contract. Only `cli` reads these types:
//! [`super::request::BuildRequest::from_args`] turns them into a request once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::values::{
    AddHost, AnnotationSpec, ByteSize, CacheFromSpec, CacheToSpec, KeyValue, MemSize, OutputSpec,
    RegistryMirror, SecretSpec, UlimitSpec,
};

/// Builds container images from multi-stage Dockerfiles, faster than `docker build`:
/// build stages run on runc and overlay snapshots (or in a Docker engine), the final image
/// is written directly as OCI layers.
#[derive(Debug, Parser)]
#[command(
    name = "imgbuild",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile, or a Mix project without one (the default:
    /// `imgbuild .` is `imgbuild build .`).
    Build(Box<BuildArgs>),
    /// Build what must be built, run every check (shared libraries, Elixir release
    /// mistakes, secret-looking ENV/ARG) and print the findings; exit 1 when there are any.
    /// The image goes nowhere unless --output, --load or --push says where.
    Check(Box<BuildArgs>),
    /// Write the Dockerfile `imgbuild .` builds a Mix project without one with, to own it.
    Init(InitArgs),
    /// Tools for looking inside imgbuild.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Base images made from Debian packages.
    #[command(subcommand)]
    Base(BaseCommand),
    /// Push an OCI layout or docker archive to a registry.
    Push(PushArgs),
    /// Remove the native executor's snapshots (unpacked layers, step results) and the blob
    /// store's blobs from the cache dir, least recently used first; what a running build
    /// uses stays.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The Mix project's directory (the one with mix.exs).
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,

    /// The image the release is built in [default: imgbuild.toml's builder-image, else
    /// hexpm/elixir for the project's versions].
    #[arg(long, value_name = "REF")]
    pub builder_image: Option<String>,

    /// The image the release runs on [default: imgbuild.toml's runner-image, else
    /// hexpm/erlang for the project's versions].
    #[arg(long, value_name = "REF")]
    pub runner_image: Option<String>,

    /// Replace an existing Dockerfile.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print BuildKit's AST dump of a Dockerfile.
    Parse {
        /// The Dockerfile to parse.
        dockerfile: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BaseCommand {
    /// Build a base image from a recipe directory under base-images/.
    Build(BaseBuildArgs),
}

#[derive(Debug, Args)]
pub struct BaseBuildArgs {
    /// The recipe directory, e.g. base-images/bookworm-slim.
    pub recipe: PathBuf,
    #[command(flatten)]
    pub publish: PublishArgs,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image to push: `oci:DIR[:TAG]` or `docker-archive:FILE`.
    pub source: String,
    /// Where to push it, e.g. `registry.example.com/team/app:1.2`.
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub display: DisplayArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Keep this much, e.g. `10GB` or `1.5GiB`, snapshots first, then blobs [default: 0,
    /// remove every snapshot and blob not in use].
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<ByteSize>,

    /// The cache dir to prune [default: $XDG_CACHE_HOME/imgbuild].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Where an image goes, shared by `build` and `base build`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Name and optionally tag the image (`name:tag`); repeatable.
    #[arg(short = 't', long = "tag", value_name = "REF")]
    pub tags: Vec<String>,

    /// Where to write the image: `type=engine`, `type=oci,dest=DIR|FILE.tar`,
    /// `type=docker,dest=FILE.tar`, `type=registry`; or its file system:
    /// `type=local,dest=DIR` (or just DIR), `type=tar,dest=FILE|-` (or just `-`); or
    /// nowhere: `type=cacheonly`; repeatable [default: the engine, unless --push is given]
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<OutputSpec>,

    /// Add an annotation to the image manifest: KEY=VALUE (or `manifest:KEY=VALUE`, as buildx
    /// takes it); repeatable.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<AnnotationSpec>,

    /// Push every --tag to its registry.
    #[arg(long)]
    pub push: bool,

    /// Load the image into the Docker engine (same as --output type=engine).
    #[arg(long)]
    pub load: bool,

    /// Layer compression for layers imgbuild writes [default: uncompressed when the image
    /// only goes to the engine and no --cache-to is given, else gzip].
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,

    /// Timestamp for every file and the image's `created`, in seconds since the epoch
    /// [default: $SOURCE_DATE_EPOCH, else 0].
    #[arg(long, value_name = "N")]
    pub source_date_epoch: Option<i64>,

    /// Write the image config digest to FILE, like `docker build --iidfile`.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,

    /// Write BuildKit-style JSON metadata (containerimage.digest, …) to FILE.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,

    #[command(flatten)]
    pub registry: RegistryArgs,

    #[command(flatten)]
    pub display: DisplayArgs,
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Pull images of HOST from URL first, e.g. `docker.io=http://127.0.0.1:5000`; repeatable.
    #[arg(long = "registry-mirror", value_name = "HOST=URL")]
    pub registry_mirrors: Vec<RegistryMirror>,

    /// Talk to HOST over plain HTTP or unverified TLS; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,

    /// Platform of the images to pull and build, e.g. linux/amd64; several,
    /// comma-separated, make one image each and an index over them.
    #[arg(long, value_name = "OS/ARCH[/VARIANT],…")]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct DisplayArgs {
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// Print only the image ID (the config digest, as `docker build -q`; same as
    /// --progress quiet).
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context directory; `-` reads it from standard input: a tar (plain, gzip,
    /// bzip2, xz or zstd) of the context, or a Dockerfile alone (with an empty context); a
    /// git URL (`https://host/repo.git#ref:dir`) or a local repository (`PATH#ref:dir`)
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context: PathBuf,

    /// The Dockerfile [default: CONTEXT/Dockerfile]; `-` reads it from standard input.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// Build up to this stage only.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// For a Mix project without a Dockerfile: the image the release is built in
    /// [default: imgbuild.toml's builder-image, else hexpm/elixir for the project's versions].
    #[arg(long, value_name = "REF")]
    pub builder_image: Option<String>,

    /// For a Mix project without a Dockerfile: the image the release runs on [default:
    /// imgbuild.toml's runner-image, else hexpm/erlang for the project's versions].
    #[arg(long, value_name = "REF")]
    pub runner_image: Option<String>,

    /// Set a build-time variable: KEY=VALUE, or KEY to take it from the environment;
    /// repeatable.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// Add a label to the image: KEY=VALUE (KEY alone: an empty value); repeatable.
    #[arg(long = "label", value_name = "KEY[=VALUE]")]
    pub labels: Vec<KeyValue>,

    /// Network for RUN steps.
    #[arg(long, value_enum, default_value_t = NetworkMode::Default)]
    pub network: NetworkMode,

    /// Allow what a RUN may ask for, as BuildKit's entitlements: `network.host` for
    /// `RUN --network=host`, `security.insecure` for `RUN --security=insecure`; repeatable.
    #[arg(long = "allow", value_enum, value_name = "ENTITLEMENT")]
    pub allow: Vec<Entitlement>,

    /// A named context: NAME=docker-image://REF, NAME=oci-layout://PATH[:TAG] or NAME=DIR
    /// replaces the stage NAME, and FROM NAME or --from=NAME naming no stage; repeatable.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,

    /// Add `IP NAME` to /etc/hosts in every RUN: `NAME:IP`; repeatable.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<AddHost>,

    /// Size of /dev/shm in every RUN, e.g. 256m or 1g [default: 64m].
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<MemSize>,

    /// A resource limit for every RUN: NAME=SOFT[:HARD], e.g. nofile=1024:2048 (-1:
    /// unlimited); repeatable.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<UlimitSpec>,

    /// Do not use the step cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Run the steps of these stages even when they are cached (the others may still come
    /// from the cache): stage names, repeatable or comma-separated.
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,

    /// Take FROM and `COPY --from` images from their registry, even when the Docker engine
    /// has an image under that name (which is used otherwise, as BuildKit uses it).
    #[arg(long)]
    pub pull: bool,

    /// Where the step cache and blob store live [default: $XDG_CACHE_HOME/imgbuild].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Use the step cache exported by another build (another CI runner): from a registry,
    /// `type=registry,ref=REF` (or just `REF`), or an OCI layout directory,
    /// `type=local,src=DIR`; repeatable, searched in order.
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<CacheFromSpec>,

    /// Export this build's step cache for other machines: `type=registry,ref=REF` or
    /// `type=local,dest=DIR`, plus `mode=min` (the final stage's steps, the default) or
    /// `mode=max` (every stage and the RUN cache mounts), `ignore-error=true`; repeatable.
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<CacheToSpec>,

    /// Label the image with its git checkout: org.opencontainers.image.source (the origin
    /// remote), .revision (the commit) and .created (the source date epoch).
    #[arg(long)]
    pub label_from_git: bool,

    /// A secret for `RUN --mount=type=secret,id=ID`: `id=ID,src=FILE` or `id=ID,env=VAR`
    /// (`id=ID` alone reads the environment variable ID); repeatable. Never stored in the
    /// image, the cache or the logs.
    #[arg(long = "secret", value_name = "id=ID[,src=FILE|,env=VAR]")]
    pub secrets: Vec<SecretSpec>,

    /// An SSH agent for `RUN --mount=type=ssh`: `default` (or `ID`) forwards
    /// $SSH_AUTH_SOCK, `ID=SOCKET` another agent's socket; repeatable.
    #[arg(long = "ssh", value_name = "ID[=SOCKET]")]
    pub ssh: Vec<String>,

    /// Warn before a COPY or ADD sends more than SIZE from the build context (the sum of
    /// its file sizes), e.g. `500MB` or `2GiB`; `0` turns the warning off.
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub context_size_warning: ByteSize,

    /// What runs the steps: `native` (an OCI runtime on overlay snapshots; needs root,
    /// runc or crun, and overlay mounts in the cache dir), `engine` (the Docker engine), or
    /// `auto`: native when this machine can, else the engine, saying why.
    #[arg(long, value_enum, default_value_t = Executor::Auto)]
    pub executor: Executor,

    /// Run one platform's steps on another Docker engine, e.g.
    /// `linux/arm64=ssh://builder@arm-host` or a docker context's name; repeatable.
    #[arg(long = "engine-for", value_name = "PLATFORM=ENGINE")]
    pub engine_for: Vec<String>,

    #[command(flatten)]
    pub publish: PublishArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Gzip,
    Zstd,
    Uncompressed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    Auto,
    Native,
    Engine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkMode {
    Default,
    Host,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Entitlement {
    #[value(name = "network.host")]
    NetworkHost,
    #[value(name = "security.insecure")]
    SecurityInsecure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// tty on a terminal, plain otherwise.
    Auto,
    Tty,
    Plain,
    /// Only the image ID.
    Quiet,
    /// One JSON object per event on standard error, for programs.
    Rawjson,
}

/// The subcommands, for deciding whether `imgbuild ARGS` means `imgbuild build ARGS`.
const SUBCOMMANDS: &[&str] = &[
    "build", "check", "init", "debug", "base", "push", "prune", "help",
];

/// `imgbuild .` and `imgbuild -t x .` mean `imgbuild build …`, as `docker build` users type
/// them. Top-level `--help`/`--version` keep their meaning.
pub fn with_default_subcommand(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    // A non-UTF-8 first argument can only be a context path.
    let first = args
        .get(1)
        .map(|a| a.to_str().unwrap_or("."))
        .unwrap_or(".");
    let top_level_flag = matches!(first, "-h" | "--help" | "-V" | "--version");
    if SUBCOMMANDS.contains(&first) || top_level_flag {
        return args;
    }
    let mut args = args.into_iter();
    let program = args.next().unwrap_or_else(|| "imgbuild".into());
    [program, "build".into()].into_iter().chain(args).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args = args.iter().map(Into::into).collect();
        Cli::try_parse_from(with_default_subcommand(args))
    }

    fn build(args: &[&str]) -> BuildArgs {
        match parse(args).unwrap().command {
            Command::Build(b) => *b,
            other => panic!("expected build, got {other:?}"),
        }
    }

    #[test]
    fn bare_context_means_build() {
        assert_eq!(build(&["imgbuild", "."]).context, PathBuf::from("."));
        assert_eq!(
            build(&["imgbuild", "build", "ctx"]).context,
            PathBuf::from("ctx")
        );
        assert_eq!(build(&["imgbuild"]).context, PathBuf::from("."));
        let b = build(&["imgbuild", "-t", "app:1", "-t", "app:latest", "ctx"]);
        assert_eq!(b.publish.tags, ["app:1", "app:latest"]);
        assert_eq!(b.context, PathBuf::from("ctx"));
    }

    #[test]
    fn context_named_like_a_subcommand_needs_build() {
        // `imgbuild debug` is the subcommand; a context called `debug` is `imgbuild build debug`.
        assert!(matches!(
            parse(&["imgbuild", "build", "debug"]).unwrap().command,
            Command::Build(_)
        ));
    }

    #[test]
    fn executor_defaults_to_auto() {
        assert_eq!(build(&["imgbuild", "."]).executor, Executor::Auto);
        let b = build(&["imgbuild", "--executor", "engine", "."]);
        assert_eq!(b.executor, Executor::Engine);
        let b = build(&["imgbuild", "build", "--executor=native", "."]);
        assert_eq!(b.executor, Executor::Native);
    }

    #[test]
    fn prune_takes_docker_s_sizes() {
        let prune = |args: &[&str]| match parse(args).unwrap().command {
            Command::Prune(p) => p,
            other => panic!("expected prune, got {other:?}"),
        };
        let p = prune(&["imgbuild", "prune"]);
        assert_eq!((p.keep_storage, p.cache_dir), (None, None));
        for (size, bytes) in [
            ("512MB", 512_000_000),
            ("10GB", 10_000_000_000),
            ("1.5GiB", 3 << 29),
            ("4096", 4096),
        ] {
            let p = prune(&["imgbuild", "prune", "--keep-storage", size]);
            assert_eq!(p.keep_storage, Some(ByteSize(bytes)), "{size}");
        }
        let p = prune(&["imgbuild", "prune", "--cache-dir", "/c"]);
        assert_eq!(p.cache_dir, Some(PathBuf::from("/c")));
        let err = parse(&["imgbuild", "prune", "--keep-storage", "lots"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--keep-storage"), "{err}");
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (vec!["imgbuild", "--network", "bridge2", "."], "--network"),
            (vec!["imgbuild", "--progress", "fancy", "."], "--progress"),
            (vec!["imgbuild", "--output", "type=nope", "."], "--output"),
            (
                vec!["imgbuild", "--source-date-epoch", "yesterday", "."],
                "--source-date-epoch",
            ),
            (
                vec!["imgbuild", "--registry-mirror", "docker.io", "."],
                "--registry-mirror",
            ),
            (
                vec!["imgbuild", "--compression", "lz4", "."],
                "--compression",
            ),
            (
                vec!["imgbuild", "--cache-to", "type=gha", "."],
                "--cache-to",
            ),
            (
                vec!["imgbuild", "--cache-from", "type=local,dest=x", "."],
                "--cache-from",
            ),
            (vec!["imgbuild", "--progress", "json", "."], "--progress"),
            (vec!["imgbuild", "--executor", "runc", "."], "--executor"),
        ] {
            let err = parse(&args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains(flag), "{args:?}: {err}");
        }
    }
}
