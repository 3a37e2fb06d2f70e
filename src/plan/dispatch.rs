//! Dispatch: a stage's instructions, in order, with ARG and ENV scoped as BuildKit scopes
//! them, expanded into concrete steps (RUN, COPY/ADD, WORKDIR's mkdir) and the image config
//! the stage ends with. Pure: no engine, no files, so every rule is a unit test.

use std::collections::{BTreeMap, BTreeSet};

use crate::frontend::Error;
use crate::frontend::dockerignore::DockerIgnore;
use crate::frontend::instructions::{
    ArgDecl, Command, CommandLine, Copy, Healthcheck, InlineFile, Instruction, Location, Mount,
    MountKind,
};
use crate::frontend::shell::{EnvGetter, Lexer};
use crate::frontend::stages::{BuildGraph, Source};

/// `PATH` of a Linux image that sets none, as Docker and BuildKit default it.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The comment BuildKit puts on history entries it writes; kept for tools that look for it.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// The parts of an image config a Dockerfile reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// `KEY=value`, in order.
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: String,
    pub user: String,
    pub shell: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub stop_signal: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    pub on_build: Vec<String>,
    pub author: Option<String>,
    /// Docker's `ArgsEscaped`, set by CMD as BuildKit sets it.
    pub args_escaped: bool,
}

impl ImageConfig {
    pub fn get_env(&self, key: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v)
        })
    }

    /// Sets or replaces `key`, keeping its position when it exists (as BuildKit's addEnv).
    pub fn set_env(&mut self, key: &str, value: &str) {
        crate::oci::set_env_entry(&mut self.env, format!("{key}={value}"));
    }
}

/// One history entry of the image config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub created_by: String,
    pub empty_layer: bool,
}

/// Where a COPY takes its files from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFrom {
    Context,
    Stage(usize),
    Image(String),
    /// A `--build-context NAME=DIR`, by name: read as a build context of its own.
    Local(String),
}

impl CopyFrom {
    /// What a `--from=NAME` (of COPY, or of a RUN mount) names: a stage, else an image.
    pub fn named(graph: &BuildGraph, name: &str) -> CopyFrom {
        match graph.resolve_from(name) {
            Source::Stage(i) => CopyFrom::Stage(i),
            Source::Image(image) => CopyFrom::Image(image),
            Source::Local(name) => CopyFrom::Local(name),
        }
    }
}

/// A step that changes the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    Run(RunStep),
    Copy(CopyStep),
    /// WORKDIR creates its directory (owned by the current USER), as BuildKit does.
    Mkdir {
        path: String,
        user: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStep {
    /// The process to run, the shell already prepended for the shell form.
    pub argv: Vec<String>,
    /// `KEY=value`: the image's ENV, then the ARGs in scope, as a RUN sees them.
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    /// `RUN --network=…`; `None` uses the build's `--network`.
    pub network: Option<String>,
    /// `RUN --security=…`; `insecure` runs privileged.
    pub security: Option<String>,
    pub mounts: Vec<Mount>,
    /// A heredoc script with a shebang, written to a file and executed, as docker build does.
    pub script: Option<InlineFile>,
    /// The ARGs in scope (with values), for the cache key and history.
    pub build_args: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStep {
    pub from: CopyFrom,
    /// Source paths or globs, expanded, as written otherwise.
    pub sources: Vec<String>,
    /// Heredoc sources, expanded when their terminator was unquoted.
    pub inline: Vec<InlineFile>,
    /// `ADD https://…` and `ADD git…` sources, written after the context's.
    pub remote: Vec<crate::fetch::RemoteSource>,
    /// Absolute destination; a trailing `/` means "into this directory".
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    pub is_add: bool,
    pub unpack: Option<bool>,
    pub checksum: Option<String>,
}

/// A filesystem step of a stage, located and named for progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub stage: usize,
    pub location: Location,
    /// What progress shows, e.g. `RUN mix deps.get --only prod` (ARGs expanded).
    pub display: String,
    /// Index of this step's entry in [`StagePlan::history`].
    pub history: usize,
    pub kind: StepKind,
    /// The image config as this step sees it: the instructions before it applied, none
    /// after it. An engine step is committed with it, never with the stage's final config.
    pub config: ImageConfig,
}

/// What a stage does, after dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePlan {
    pub stage: usize,
    /// The stage's name for progress (`build`, or `stage-1`).
    pub name: String,
    pub steps: Vec<Step>,
    /// The config the stage ends with.
    pub config: ImageConfig,
    /// The history entries this stage adds (after the base image's).
    pub history: Vec<History>,
    /// The ARGs in scope when the stage ends, with their values: a stage built on this one
    /// starts with them, as in BuildKit.
    pub args: Vec<(String, String)>,
    /// ENV and ARG names that look like secrets (what [`crate::check`] warns about).
    pub secret_names: Vec<SecretName>,
}

/// An ENV or ARG whose name looks like a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretName {
    /// `ENV` or `ARG`.
    pub keyword: &'static str,
    pub name: String,
    pub line: usize,
}

/// The variables an instruction sees: the image's ENV and the stage's ARGs, later
/// definitions replacing earlier ones in place.
#[derive(Debug, Clone, Default)]
struct Scope {
    vars: Vec<(String, String)>,
}

impl Scope {
    fn set(&mut self, key: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_owned(),
            None => self.vars.push((key.to_owned(), value.to_owned())),
        }
    }

    fn as_env(&self) -> Vec<String> {
        self.vars.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl EnvGetter for Scope {
    fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Names that look like they hold a secret (`*_KEY`, `*SECRET*`, `*PASSWORD*`, `*TOKEN*`).
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_uppercase();
    upper.ends_with("_KEY")
        || ["SECRET", "PASSWORD", "TOKEN"]
            .iter()
            .any(|w| upper.contains(w))
}

struct Dispatcher<'a> {
    graph: &'a BuildGraph,
    file: &'a str,
    lexer: Lexer,
    stage: usize,
    scope: Scope,
    config: ImageConfig,
    /// ARGs declared in this stage, with their values, in order.
    args: Vec<(String, String)>,
    cmd_set: bool,
    steps: Vec<Step>,
    history: Vec<History>,
    secret_names: Vec<SecretName>,
}

/// Dispatches stage `stage` of `graph` on top of `base`, the config of its base image or
/// stage, with `base_args` in scope: the ARGs a base stage ended with (none for an image).
pub fn dispatch_stage(
    graph: &BuildGraph,
    stage: usize,
    base: &ImageConfig,
    base_args: &[(String, String)],
) -> Result<StagePlan, Error> {
    let mut config = base.clone();
    if config.get_env("PATH").is_none() {
        config.set_env("PATH", DEFAULT_PATH);
    }
    let triggers = std::mem::take(&mut config.on_build);
    let mut scope = Scope::default();
    for kv in &config.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        scope.set(k, v);
    }
    for (k, v) in base_args {
        // An ENV of the base stage set after its ARG of the same name wins, as in the stage.
        if config.get_env(k).is_none() {
            scope.set(k, v);
        }
    }
    let file = graph.dockerfile.file.as_str();
    let mut d = Dispatcher {
        graph,
        file,
        lexer: Lexer::new(graph.dockerfile.escape),
        stage,
        scope,
        config,
        args: base_args.to_vec(),
        cmd_set: false,
        steps: Vec::new(),
        history: Vec::new(),
        secret_names: Vec::new(),
    };
    let stage_def = graph.stage(stage);
    // ONBUILD triggers of the base run first, located at the FROM line.
    for trigger in triggers {
        let command =
            crate::frontend::instructions::parse_trigger(file, &trigger, stage_def.location)?;
        d.check_trigger_sources(&trigger, &command)?;
        d.dispatch(&command)?;
    }
    for command in &stage_def.commands {
        d.dispatch(command)?;
    }
    Ok(StagePlan {
        stage,
        name: stage_def.display_name(),
        steps: d.steps,
        config: d.config,
        history: d.history,
        args: d.args,
        secret_names: d.secret_names,
    })
}

impl Dispatcher<'_> {
    /// What a base image's trigger copies or mounts from must be in the build graph
    /// ([`BuildGraph::add_base_image_triggers`], called once the image is pulled), or the
    /// step would find its source unbuilt.
    fn check_trigger_sources(&self, trigger: &str, command: &Command) -> Result<(), Error> {
        let resolved = &self.graph.stages[self.stage];
        for from in crate::frontend::stages::sources_of(command) {
            let known = match self.graph.resolve_from(from) {
                Source::Stage(i) => resolved.stage_deps.contains(&i),
                Source::Image(image) => resolved.image_sources.contains(&image),
                Source::Local(_) => true,
            };
            if !known {
                return Err(self.error(
                    command.location,
                    format!(
                        "the ONBUILD trigger `{trigger}` of the base image uses `{from}`, which \
                         the build graph did not take in (an imgbuild bug: the triggers of a \
                         base image are read when it is pulled)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn error(&self, at: Location, message: impl Into<String>) -> Error {
        Error::new(self.file, message).at(at.line, Some(at.column))
    }

    fn expand(&self, at: Location, word: &str) -> Result<String, Error> {
        self.lexer
            .process_word(word, &self.scope)
            .map_err(|e| self.error(at, e.to_string()))
    }

    fn expand_words(&self, at: Location, word: &str) -> Result<Vec<String>, Error> {
        self.lexer
            .process_words(word, &self.scope)
            .map_err(|e| self.error(at, e.to_string()))
    }

    fn record(&mut self, created_by: String, empty_layer: bool) -> usize {
        self.history.push(History {
            created_by,
            empty_layer,
        });
        self.history.len() - 1
    }

    fn push_step(
        &mut self,
        command: &Command,
        display: String,
        created_by: String,
        kind: StepKind,
    ) {
        let history = self.record(created_by, false);
        self.steps.push(Step {
            stage: self.stage,
            location: command.location,
            display,
            history,
            kind,
            config: self.config.clone(),
        });
    }

    fn note_secret(&mut self, keyword: &'static str, name: &str, at: Location) {
        if looks_secret(name) {
            self.secret_names.push(SecretName {
                keyword,
                name: name.to_owned(),
                line: at.line,
            });
        }
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn with_shell(&self, args: &[String]) -> Vec<String> {
        let mut argv = self.shell();
        argv.push(args.join(" "));
        argv
    }

    fn dispatch(&mut self, command: &Command) -> Result<(), Error> {
        let at = command.location;
        match &command.instruction {
            Instruction::Env(pairs) => {
                let mut message = String::from("ENV");
                // Every value of one ENV line is expanded with the variables from before
                // the line (`ENV A=2 B=$A` gives B the earlier A), as in BuildKit.
                let mut expanded = Vec::with_capacity(pairs.len());
                for pair in pairs {
                    let key = self.expand(at, &pair.key)?;
                    let value = self.expand(at, &pair.value)?;
                    if key.is_empty() {
                        return Err(self.error(at, "ENV names can not be blank"));
                    }
                    expanded.push((key, value));
                }
                for (key, value) in expanded {
                    self.note_secret("ENV", &key, at);
                    message.push_str(&format!(" {key}={value}"));
                    self.scope.set(&key, &value);
                    self.config.set_env(&key, &value);
                }
                self.record(message, true);
            }
            Instruction::Arg(decls) => self.dispatch_arg(decls, at)?,
            Instruction::Label(pairs) => {
                let mut message = String::from("LABEL");
                for pair in pairs {
                    let key = self.expand(at, &pair.key)?;
                    let value = self.expand(at, &pair.value)?;
                    message.push_str(&format!(" {key}={value}"));
                    self.config.labels.insert(key, value);
                }
                self.record(message, true);
            }
            Instruction::Maintainer(name) => {
                self.config.author = Some(name.clone());
                self.record(format!("MAINTAINER {name}"), true);
            }
            Instruction::Workdir(path) => {
                let path = self.expand(at, path)?;
                let dir = normalize_workdir(&self.config.working_dir, &path).ok_or_else(|| {
                    self.error(at, format!("WORKDIR {path}: not a usable directory"))
                })?;
                self.config.working_dir = dir.clone();
                let made = clean_path(&dir);
                if made == "/" {
                    self.record(format!("WORKDIR {dir}"), true);
                } else {
                    let user = self.config.user.clone();
                    self.push_step(
                        command,
                        format!("WORKDIR {dir}"),
                        format!("WORKDIR {dir}"),
                        StepKind::Mkdir { path: made, user },
                    );
                }
            }
            Instruction::User(user) => {
                let user = self.expand(at, user)?;
                if user.is_empty() {
                    return Err(self.error(at, "USER is empty after expanding variables"));
                }
                self.config.user = user.clone();
                self.record(format!("USER {user}"), true);
            }
            Instruction::Expose(ports) => {
                let mut all = BTreeSet::new();
                for word in ports {
                    for port in self.expand_words(at, word)? {
                        all.extend(
                            expand_port_spec(&port)
                                .map_err(|e| self.error(at, format!("EXPOSE {port}: {e}")))?,
                        );
                    }
                }
                let listed: Vec<String> = all.iter().map(|p| format!("{p}:{{}}")).collect();
                self.config.exposed_ports.extend(all);
                self.record(format!("EXPOSE map[{}]", listed.join(" ")), true);
            }
            Instruction::Volume(volumes) => {
                let mut expanded = Vec::new();
                for v in volumes {
                    let v = self.expand(at, v)?;
                    if v.is_empty() {
                        return Err(self.error(at, "VOLUME specified can not be an empty string"));
                    }
                    expanded.push(v);
                }
                self.record(format!("VOLUME [{}]", expanded.join(" ")), true);
                self.config.volumes.extend(expanded);
            }
            Instruction::StopSignal(signal) => {
                let signal = self.expand(at, signal)?;
                if !valid_signal(&signal) {
                    return Err(self.error(
                        at,
                        format!("STOPSIGNAL {signal}: not a signal (e.g. SIGTERM, SIGINT or 15)"),
                    ));
                }
                self.record(format!("STOPSIGNAL {signal}"), true);
                self.config.stop_signal = Some(signal);
            }
            Instruction::Shell(shell) => {
                self.record(format!("SHELL [{}]", shell.join(" ")), true);
                self.config.shell = Some(shell.clone());
            }
            Instruction::Cmd(line) => {
                let args = self.command_args(line);
                self.record(format!("CMD {}", go_quoted_list(&args)), true);
                self.config.cmd = Some(args);
                self.config.args_escaped = true;
                self.cmd_set = true;
            }
            Instruction::Entrypoint(line) => {
                let args = self.command_args(line);
                self.record(format!("ENTRYPOINT {}", go_quoted_list(&args)), true);
                self.config.entrypoint = if args.is_empty() && !line.prepend_shell {
                    None
                } else {
                    Some(args)
                };
                // An ENTRYPOINT drops an inherited CMD, unless this stage set one.
                if !self.cmd_set {
                    self.config.cmd = None;
                }
            }
            Instruction::Healthcheck(h) => {
                self.record(format!("HEALTHCHECK {}", go_quoted_list(&h.test)), true);
                self.config.healthcheck = Some(h.clone());
            }
            Instruction::Onbuild(trigger) => self.config.on_build.push(trigger.clone()),
            Instruction::Run(run) => self.dispatch_run(command, run)?,
            Instruction::Copy(copy) => self.dispatch_copy(command, copy)?,
        }
        Ok(())
    }

    /// CMD/ENTRYPOINT arguments: the exec form as written, the shell form through SHELL.
    fn command_args(&self, line: &CommandLine) -> Vec<String> {
        if line.prepend_shell && !line.args.is_empty() {
            self.with_shell(&line.args)
        } else {
            line.args.clone()
        }
    }

    fn dispatch_arg(&mut self, decls: &[ArgDecl], at: Location) -> Result<(), Error> {
        let mut parts = Vec::new();
        for decl in decls {
            self.note_secret("ARG", &decl.key, at);
            let from_build = self.graph.build_args.get(&decl.key).cloned();
            let value = match (&from_build, &decl.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => Some(self.expand(at, default)?),
                // A bare `ARG NAME` in a stage takes the global ARG's value.
                (None, None) => self.graph.global_args.get(&decl.key).cloned(),
            };
            match &value {
                Some(v) => {
                    parts.push(format!("{}={v}", decl.key));
                    self.scope.set(&decl.key, v);
                    match self.args.iter_mut().find(|(k, _)| *k == decl.key) {
                        Some(slot) => slot.1 = v.clone(),
                        None => self.args.push((decl.key.clone(), v.clone())),
                    }
                }
                None => parts.push(decl.key.clone()),
            }
        }
        self.record(format!("ARG {}", parts.join(" ")), true);
        Ok(())
    }

    fn dispatch_run(
        &mut self,
        command: &Command,
        run: &crate::frontend::instructions::Run,
    ) -> Result<(), Error> {
        let at = command.location;
        let line = &run.command;
        let mut script = None;
        let args: Vec<String> = match line.heredocs.as_slice() {
            [] => line.args.clone(),
            [doc] if line.args.len() == 1 && is_heredoc_marker(&line.args[0]) => {
                let data = if doc.chomp {
                    chomp(&doc.data)
                } else {
                    doc.data.clone()
                };
                if data.starts_with("#!") {
                    script = Some(InlineFile {
                        name: doc.name.clone(),
                        data,
                        expand: false,
                        chomp: false,
                    });
                    vec![format!("/dev/pipes/{}", doc.name)]
                } else {
                    vec![data]
                }
            }
            docs => {
                // `RUN python3 <<EOF` and friends: hand the whole text to the shell.
                let mut text = line.args.join(" ");
                for doc in docs {
                    text.push('\n');
                    text.push_str(&doc.data);
                    text.push_str(&doc.name);
                }
                vec![text]
            }
        };
        let argv = if line.prepend_shell && script.is_none() {
            self.with_shell(&args)
        } else {
            args
        };
        let mut mounts = Vec::new();
        for mount in &run.mounts {
            let mut m = mount.clone();
            for v in [&mut m.target, &mut m.source, &mut m.id]
                .into_iter()
                .flatten()
            {
                *v = self.expand(at, v)?;
            }
            // As BuildKit: a target is relative to the working directory (a bind or cache
            // mount without one is at the working directory itself), and never `/`.
            if m.kind == MountKind::Cache && m.id.is_none() {
                // BuildKit names a cache by its target as written, cleaned.
                let written = m.target.as_deref().unwrap_or_default();
                m.id = Some(match written.strip_prefix('/') {
                    Some(_) => clean_path(written),
                    None => match clean_path(written).trim_start_matches('/') {
                        "" => ".".to_owned(),
                        relative => relative.to_owned(),
                    },
                });
            }
            if !matches!(m.kind, MountKind::Secret | MountKind::Ssh) {
                let target = m.target.take().unwrap_or_default();
                let target = if target.starts_with('/') {
                    clean_path(&target)
                } else {
                    clean_path(&join_path(&self.config.working_dir, &target))
                };
                if target == "/" {
                    return Err(self.error(
                        at,
                        "RUN --mount: the target is `/`; mount somewhere below it (target=/mnt/…)",
                    ));
                }
                m.target = Some(target);
            }
            mounts.push(m);
        }
        let history = format!("RUN {} # buildkit", run_command_string(&argv, &self.args));
        let display = format!(
            "RUN {}",
            // As BuildKit names RUN steps: ARGs and ENV expanded, quotes and unknown
            // variables left as written for the shell.
            self.lexer
                .raw_quotes(true)
                .skip_unset_env(true)
                .process_word(&command_text(command), &self.scope)
                .unwrap_or_else(|_| command_text(command))
        );
        let step = RunStep {
            argv,
            env: self.scope.as_env(),
            workdir: if self.config.working_dir.is_empty() {
                "/".into()
            } else {
                self.config.working_dir.clone()
            },
            user: self.config.user.clone(),
            network: run.network.clone(),
            security: run.security.clone(),
            mounts,
            script,
            build_args: self.args.clone(),
        };
        self.push_step(command, display, history, StepKind::Run(step));
        Ok(())
    }

    fn dispatch_copy(&mut self, command: &Command, copy: &Copy) -> Result<(), Error> {
        let at = command.location;
        let keyword = if copy.is_add { "ADD" } else { "COPY" };
        let from = match &copy.from {
            None => CopyFrom::Context,
            Some(f) => CopyFrom::named(self.graph, f),
        };
        // Checked here, so that a bad pattern stops the build before its first step.
        if let Err(e) = DockerIgnore::parse(copy.exclude.join("\n").as_bytes()) {
            return Err(self
                .error(
                    at,
                    format!("{keyword} --exclude: {}", e.in_file("--exclude").message),
                )
                .with_hint(
                    "--exclude patterns use .dockerignore syntax: * ? [a-z] ** and ! to re-include",
                ));
        }
        // `--checksum=${DIGEST}` takes the build's variables, as BuildKit expands it.
        let checksum = copy
            .checksum
            .as_deref()
            .map(|c| self.expand(at, c))
            .transpose()?;
        let mut sources = Vec::with_capacity(copy.sources.len());
        let mut remote = Vec::new();
        let mut shown_sources = Vec::with_capacity(copy.sources.len());
        for src in &copy.sources {
            let src = self.expand(at, src)?;
            if !copy.is_add {
                if crate::fetch::RemoteSource::looks_remote(&src) {
                    return Err(self
                        .error(
                            at,
                            format!(
                                "COPY {}: source can't be a URL or git ref for COPY",
                                crate::fetch::redact_url(&src)
                            ),
                        )
                        .with_hint("use ADD for remote sources"));
                }
                shown_sources.push(src.clone());
                sources.push(src);
                continue;
            }
            match crate::fetch::RemoteSource::parse(&src, copy.keep_git_dir, checksum.as_deref()) {
                Ok(Some(r)) => {
                    shown_sources.push(r.display());
                    remote.push(r);
                }
                Ok(None) => {
                    shown_sources.push(src.clone());
                    sources.push(src);
                }
                Err(e) => {
                    return Err(
                        self.error(at, format!("ADD {}: {e}", crate::fetch::redact_url(&src)))
                    );
                }
            }
        }
        if checksum.is_some() {
            if sources.len() + remote.len() != 1 {
                return Err(self.error(at, "checksum can't be specified for multiple sources"));
            }
            if remote.is_empty() {
                return Err(self.error(at, "checksum requires HTTP(S) or Git sources"));
            }
        }
        let mut inline = Vec::with_capacity(copy.inline.len());
        for doc in &copy.inline {
            let mut data = if doc.chomp {
                chomp(&doc.data)
            } else {
                doc.data.clone()
            };
            if doc.expand {
                // Heredoc bodies keep their quotes: BuildKit expands them with
                // SkipProcessQuotes and the default escape token.
                data = Lexer::new('\\')
                    .skip_process_quotes(true)
                    .process_word(&data, &self.scope)
                    .map_err(|e| self.error(at, e.to_string()))?;
            }
            inline.push(InlineFile {
                name: doc.name.clone(),
                data,
                expand: doc.expand,
                chomp: doc.chomp,
            });
        }
        let dest_raw = self.expand(at, &copy.dest)?;
        let dest = dest_path(&self.config.working_dir, &dest_raw);
        let chown = copy
            .chown
            .as_deref()
            .map(|c| self.expand(at, c))
            .transpose()?
            .filter(|c| !c.is_empty());
        let chmod = copy
            .chmod
            .as_deref()
            .map(|c| self.expand(at, c))
            .transpose()?
            .filter(|c| !c.is_empty());
        if let Some(mode) = &chmod
            && let Err(e) = crate::oci::layer::Chmod::parse(mode)
        {
            let error = self.error(at, format!("{keyword}: {e}"));
            return Err(match e.hint() {
                Some(hint) => error.with_hint(hint.to_owned()),
                None => error,
            });
        }
        let mut created_by = String::from(keyword);
        // Current BuildKit's history names `--parents` first (v0.8 cannot parse it).
        if copy.parents {
            created_by.push_str(" --parents");
        }
        if let Some(f) = &copy.from {
            created_by.push_str(&format!(" --from={f}"));
        }
        if let Some(c) = &chown {
            created_by.push_str(&format!(" --chown={c}"));
        }
        if let Some(c) = &chmod {
            created_by.push_str(&format!(" --chmod={c}"));
        }
        for s in &shown_sources {
            created_by.push(' ');
            created_by.push_str(s);
        }
        for doc in &inline {
            created_by.push_str(&format!(" <<{}", doc.name));
        }
        created_by.push(' ');
        created_by.push_str(&dest_raw);
        // The progress line shows the patterns too, as BuildKit shows the instruction.
        let display = match copy.exclude.is_empty() {
            true => created_by.clone(),
            false => {
                let excludes: String = copy
                    .exclude
                    .iter()
                    .map(|p| format!(" --exclude={p}"))
                    .collect();
                created_by.replacen(keyword, &format!("{keyword}{excludes}"), 1)
            }
        };
        created_by.push_str(" # buildkit");
        let step = CopyStep {
            from,
            sources,
            inline,
            remote,
            dest,
            chown,
            chmod,
            link: copy.link,
            parents: copy.parents,
            exclude: copy.exclude.clone(),
            is_add: copy.is_add,
            unpack: copy.unpack,
            checksum,
        };
        self.push_step(command, display, created_by, StepKind::Copy(step));
        Ok(())
    }
}

/// The instruction's text after the keyword, for display.
fn command_text(command: &Command) -> String {
    let source = command.source.trim_start();
    let rest = source
        .split_once(char::is_whitespace)
        .map_or("", |(_, r)| r);
    rest.trim().to_owned()
}

fn is_heredoc_marker(arg: &str) -> bool {
    let Some(rest) = arg.strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name = rest.trim_matches(|c| c == '"' || c == '\'');
    !name.is_empty() && !name.contains(char::is_whitespace)
}

/// `<<-`: strips leading tabs from every line.
fn chomp(data: &str) -> String {
    data.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

/// BuildKit's history text for RUN: `|2 A=1 B=2 /bin/sh -c make` when ARGs are in scope.
fn run_command_string(argv: &[String], args: &[(String, String)]) -> String {
    let mut parts = Vec::new();
    if !args.is_empty() {
        parts.push(format!("|{}", args.len()));
        parts.extend(args.iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(argv.iter().cloned());
    parts.join(" ")
}

/// Go's `fmt.Sprintf("%q", []string{…})`: `["a" "b"]`.
fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// Lexically cleans an absolute path (`/a/./b/../c` → `/a/c`), like Go's `path.Clean`.
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn join_path(base: &str, rel: &str) -> String {
    let base = if base.is_empty() { "/" } else { base };
    clean_path(&format!("{base}/{rel}"))
}

/// The directories an OCI runtime's `MkdirAll` of the working directory `cwd` makes that
/// its clean path does not name: each lexical prefix a `..` steps out of (`/a/b` of
/// `/a/b/../c`), which must exist for the kernel to resolve the path. runc, under
/// BuildKit, leaves them in the image.
pub fn unclean_cwd_prefixes(cwd: &str) -> Vec<String> {
    let mut parts: Vec<&str> = Vec::new();
    let mut prefixes = Vec::new();
    for part in cwd.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if !parts.is_empty() {
                    prefixes.push(format!("/{}", parts.join("/")));
                }
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    prefixes
}

/// WORKDIR: relative paths are joined to the current one and cleaned; an absolute path
/// is kept as written (`/app/`, `/a/../b`), as BuildKit keeps it in the config and as the
/// RUN's working directory (`NormalizeWorkdir`). The directory made is the clean path.
fn normalize_workdir(current: &str, requested: &str) -> Option<String> {
    if requested.is_empty() {
        return None;
    }
    Some(if requested.starts_with('/') {
        requested.to_owned()
    } else {
        join_path(current, requested)
    })
}

/// A COPY destination made absolute against WORKDIR, keeping a trailing `/` (and making
/// `.` mean the directory itself), as BuildKit's `pathRelativeToWorkingDir`.
fn dest_path(workdir: &str, dest: &str) -> String {
    let dir_like = dest.ends_with('/') || dest == "." || dest.is_empty() || dest.ends_with("/.");
    let joined = if dest.starts_with('/') {
        clean_path(dest)
    } else {
        join_path(workdir, dest)
    };
    if dir_like && joined != "/" {
        format!("{joined}/")
    } else {
        joined
    }
}

/// `80`, `80/udp`, `8000-8002/tcp` → `80/tcp`, … (ranges expanded, as Docker does).
fn expand_port_spec(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("unknown protocol `{proto}` (tcp, udp or sctp)"));
    }
    let parse = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{p}` is not a port number"))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!("the range {start}-{end} is backwards"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Signal names Docker accepts (`SIGTERM`, `TERM`, `SIGRTMIN+3`) or numbers.
fn valid_signal(signal: &str) -> bool {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX",
    ];
    if let Ok(n) = signal.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let upper = signal.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let base = name.split(['+', '-']).next().unwrap_or(name);
    NAMES.contains(&base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_path("/../.."), "/");
        assert_eq!(dest_path("/app", "./"), "/app/");
        assert_eq!(dest_path("/app", "."), "/app/");
        assert_eq!(dest_path("/app", "lib"), "/app/lib");
        assert_eq!(dest_path("", "lib/"), "/lib/");
        assert_eq!(dest_path("/app", "/etc/x"), "/etc/x");
        assert_eq!(dest_path("/app", "/"), "/");
        assert_eq!(
            normalize_workdir("/app", "sub").as_deref(),
            Some("/app/sub")
        );
        assert_eq!(normalize_workdir("", "rel").as_deref(), Some("/rel"));
        assert_eq!(
            normalize_workdir("/app", "/x/../y/").as_deref(),
            Some("/x/../y/")
        );
        assert_eq!(normalize_workdir("/x/../y/", "z").as_deref(), Some("/y/z"));
        assert_eq!(unclean_cwd_prefixes("/a/b/../c/./d/"), ["/a/b"]);
        assert_eq!(
            unclean_cwd_prefixes("/a/b/../../c/x/.."),
            ["/a/b", "/a", "/c/x"]
        );
        assert_eq!(unclean_cwd_prefixes("/../a"), Vec::<String>::new());
        assert_eq!(unclean_cwd_prefixes("/app/"), Vec::<String>::new());
    }

    #[test]
    fn ports() {
        assert_eq!(expand_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(expand_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            expand_port_spec("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        for bad in ["x", "0", "80/icmp", "9-8", "70000"] {
            assert!(expand_port_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3"] {
            assert!(valid_signal(ok), "{ok}");
        }
        for bad in ["SIGNOPE", "0", "99", ""] {
            assert!(!valid_signal(bad), "{bad}");
        }
    }

    #[test]
    fn secrets() {
        for name in [
            "API_KEY",
            "SECRET_KEY_BASE",
            "db_password",
            "GITHUB_TOKEN",
            "MySecret",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["MIX_ENV", "PORT", "KEYBOARD", "LANG"] {
            assert!(!looks_secret(name), "{name}");
        }
    }

    #[test]
    fn history_strings() {
        assert_eq!(
            go_quoted_list(&["/app/bin/hello".into(), "start".into()]),
            r#"["/app/bin/hello" "start"]"#
        );
        assert_eq!(
            run_command_string(
                &["/bin/sh".into(), "-c".into(), "make".into()],
                &[("A".into(), "1".into())]
            ),
            "|1 A=1 /bin/sh -c make"
        );
        assert_eq!(chomp("\t\ta\n\tb\n"), "a\nb\n");
    }
}

#[cfg(test)]
mod dispatch_tests {
    use super::*;
    use crate::frontend::{instructions, parse_dockerfile, stages};
    use crate::oci::Platform;

    /// The build graph of `text` with `args`.
    fn graph_of(text: &str, args: &[(&str, &str)]) -> Result<BuildGraph, Error> {
        let ast = parse_dockerfile("Dockerfile", text.as_bytes())?;
        let dockerfile = instructions::from_ast("Dockerfile", &ast)?;
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        stages::resolve(dockerfile, &args, None, &Platform::linux_amd64())
    }

    fn plan_with(
        text: &str,
        args: &[(&str, &str)],
        stage: usize,
        base: &ImageConfig,
    ) -> Result<StagePlan, Error> {
        let mut graph = graph_of(text, args)?;
        // As the executor does once the base image is pulled.
        graph.add_base_image_triggers(stage, &base.on_build)?;
        dispatch_stage(&graph, stage, base, &[])
    }

    fn plan(text: &str) -> StagePlan {
        plan_with(text, &[], 0, &ImageConfig::default()).unwrap()
    }

    fn run(step: &Step) -> &RunStep {
        match &step.kind {
            StepKind::Run(r) => r,
            other => panic!("not a RUN: {other:?}"),
        }
    }

    fn copy(step: &Step) -> &CopyStep {
        match &step.kind {
            StepKind::Copy(c) => c,
            other => panic!("not a COPY: {other:?}"),
        }
    }

    #[test]
    fn elixir_build_stage() {
        let p = plan(
            "FROM elixir AS build\nWORKDIR /app\nENV MIX_ENV=prod\nCOPY mix.exs mix.lock ./\nRUN mix deps.get --only $MIX_ENV\nCOPY lib lib\n",
        );
        assert_eq!(p.name, "build");
        assert_eq!(p.steps.len(), 4);
        assert_eq!(
            p.steps[0].kind,
            StepKind::Mkdir {
                path: "/app".into(),
                user: String::new()
            }
        );
        let c = copy(&p.steps[1]);
        assert_eq!(
            (c.sources.clone(), c.dest.as_str()),
            (vec!["mix.exs".to_string(), "mix.lock".to_string()], "/app/")
        );
        let r = run(&p.steps[2]);
        assert_eq!(r.argv, ["/bin/sh", "-c", "mix deps.get --only $MIX_ENV"]);
        assert_eq!(r.workdir, "/app");
        assert!(r.env.contains(&"MIX_ENV=prod".to_string()));
        assert!(r.env.contains(&format!("PATH={DEFAULT_PATH}")));
        assert_eq!(p.steps[2].display, "RUN mix deps.get --only prod");
        assert_eq!(copy(&p.steps[3]).dest, "/app/lib");
        assert_eq!(p.config.working_dir, "/app");
        assert_eq!(p.config.get_env("MIX_ENV"), Some("prod"));
        let created: Vec<&str> = p.history.iter().map(|h| h.created_by.as_str()).collect();
        assert_eq!(created[0], "WORKDIR /app");
        assert_eq!(created[1], "ENV MIX_ENV=prod");
        assert_eq!(created[2], "COPY mix.exs mix.lock ./ # buildkit");
        assert_eq!(
            created[3],
            "RUN /bin/sh -c mix deps.get --only $MIX_ENV # buildkit"
        );
        assert!(p.history[1].empty_layer && !p.history[2].empty_layer);
    }

    #[test]
    fn each_step_sees_only_the_instructions_before_it() {
        // The final stage of `mix phx.gen.release --docker`: the RUN is root's, in /app,
        // without the ENV and USER that come after it.
        let p = plan(
            "FROM debian\nWORKDIR /app\nRUN chown nobody /app\nENV MIX_ENV=prod\nCOPY rel ./\nUSER nobody\nWORKDIR /app/bin\nCMD [\"/app/bin/server\"]\n",
        );
        let configs: Vec<(&str, &str, Option<&str>)> = p
            .steps
            .iter()
            .map(|s| {
                (
                    s.config.user.as_str(),
                    s.config.working_dir.as_str(),
                    s.config.get_env("MIX_ENV"),
                )
            })
            .collect();
        assert_eq!(
            configs,
            [
                ("", "/app", None),
                ("", "/app", None),
                ("", "/app", Some("prod")),
                ("nobody", "/app/bin", Some("prod")),
            ]
        );
        assert_eq!(run(&p.steps[1]).user, "");
        assert!(p.steps.iter().all(|s| s.config.cmd.is_none()));
        assert_eq!(p.config.user, "nobody");
        assert_eq!(p.config.cmd, Some(vec!["/app/bin/server".to_string()]));
    }

    #[test]
    fn a_stage_on_a_stage_keeps_its_args() {
        // BuildKit's child stage starts with its base stage's build args (and their env).
        let text =
            "FROM a AS base\nARG X=1\nARG Y=2\nENV Y=env\nRUN true\nFROM base\nRUN echo $X $Y\n";
        let base = plan_with(text, &[], 0, &ImageConfig::default()).unwrap();
        assert_eq!(
            base.args,
            [("X".into(), "1".into()), ("Y".into(), "2".into())]
        );
        let graph = graph_of(text, &[]).unwrap();
        let child = dispatch_stage(&graph, 1, &base.config, &base.args).unwrap();
        let r = run(&child.steps[0]);
        assert!(r.env.contains(&"X=1".to_string()), "{:?}", r.env);
        assert!(r.env.contains(&"Y=env".to_string()), "{:?}", r.env);
        assert_eq!(child.steps[0].display, "RUN echo 1 env");
        assert!(child.config.get_env("X").is_none());
    }

    #[test]
    fn args_scope_as_in_buildkit() {
        let text = "ARG V=global\nARG ONLY_GLOBAL=g\nFROM a\nARG V\nARG D=default-$V\nARG UNSET\nRUN echo $V $D $ONLY_GLOBAL\nENV V=env\nRUN true\n";
        let p = plan_with(text, &[], 0, &ImageConfig::default()).unwrap();
        let first = run(&p.steps[0]);
        assert!(first.env.contains(&"V=global".to_string()));
        assert!(first.env.contains(&"D=default-global".to_string()));
        assert!(
            !first
                .env
                .iter()
                .any(|e| e.starts_with("ONLY_GLOBAL=") || e.starts_with("UNSET="))
        );
        assert_eq!(
            first.build_args,
            [
                ("V".to_string(), "global".to_string()),
                ("D".to_string(), "default-global".to_string())
            ]
        );
        assert_eq!(
            p.history[3].created_by,
            "RUN |2 V=global D=default-global /bin/sh -c echo $V $D $ONLY_GLOBAL # buildkit"
        );
        // ENV replaces the ARG's value for later steps, and only ENV reaches the config.
        assert!(run(&p.steps[1]).env.contains(&"V=env".to_string()));
        assert_eq!(p.config.get_env("V"), Some("env"));
        assert_eq!(p.config.get_env("D"), None);
        // --build-arg wins over defaults.
        let p = plan_with(text, &[("D", "cli")], 0, &ImageConfig::default()).unwrap();
        assert!(run(&p.steps[0]).env.contains(&"D=cli".to_string()));
    }

    #[test]
    fn config_instructions() {
        let base = ImageConfig {
            cmd: Some(vec!["base".into()]),
            env: vec!["PATH=/bin".into()],
            ..Default::default()
        };
        let p = plan_with(
            "FROM a\nUSER nobody\nEXPOSE 4000 53/udp 8000-8001\nLABEL a=b \"c d\"=e\nENTRYPOINT [\"/x\"]\nSTOPSIGNAL SIGINT\nVOLUME /data\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo hi\n",
            &[],
            0,
            &base,
        )
        .unwrap();
        assert!(p.steps.is_empty());
        assert_eq!(p.config.user, "nobody");
        assert_eq!(
            p.config
                .exposed_ports
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["4000/tcp", "53/udp", "8000/tcp", "8001/tcp"]
        );
        assert_eq!(p.config.labels.get("c d").map(String::as_str), Some("e"));
        assert_eq!(
            p.config.entrypoint.as_deref(),
            Some(&["/x".to_string()][..])
        );
        assert_eq!(
            p.config.cmd.as_deref(),
            Some(&["/bin/bash".to_string(), "-c".into(), "echo hi".into()][..])
        );
        assert_eq!(p.config.get_env("PATH"), Some("/bin"));
        assert_eq!(p.config.stop_signal.as_deref(), Some("SIGINT"));
        // An ENTRYPOINT drops an inherited CMD.
        let p = plan_with("FROM a\nENTRYPOINT [\"/x\"]\n", &[], 0, &base).unwrap();
        assert_eq!(p.config.cmd, None);
    }

    #[test]
    fn run_heredocs() {
        let p = plan(
            "FROM a\nRUN <<EOF\necho one\necho two\nEOF\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\nRUN cat <<A > /f\nx\nA\n",
        );
        assert_eq!(
            run(&p.steps[0]).argv,
            ["/bin/sh", "-c", "echo one\necho two\n"]
        );
        let script = run(&p.steps[1]);
        assert_eq!(script.argv, ["/dev/pipes/EOF"]);
        assert_eq!(
            script.script.as_ref().map(|s| s.data.as_str()),
            Some("#!/usr/bin/env python3\nprint(1)\n")
        );
        assert_eq!(
            run(&p.steps[2]).argv,
            ["/bin/sh", "-c", "cat <<A > /f\nx\nA"]
        );
    }

    #[test]
    fn copy_heredoc_expands_unless_quoted() {
        let p = plan(
            "FROM a\nENV N=world\nCOPY <<EOF /hello\nhello \"$N\"\nEOF\nCOPY <<'EOF' /raw\n$N\nEOF\n",
        );
        assert_eq!(copy(&p.steps[0]).inline[0].data, "hello \"world\"\n");
        assert_eq!(copy(&p.steps[1]).inline[0].data, "$N\n");
    }

    #[test]
    fn onbuild_triggers_run_first_and_are_not_inherited() {
        let base = ImageConfig {
            on_build: vec!["RUN echo triggered".into()],
            ..Default::default()
        };
        let p = plan_with("FROM a\nRUN echo mine\nONBUILD RUN later\n", &[], 0, &base).unwrap();
        assert_eq!(run(&p.steps[0]).argv[2], "echo triggered");
        assert_eq!(run(&p.steps[1]).argv[2], "echo mine");
        assert_eq!(p.config.on_build, ["RUN later"]);
    }

    #[test]
    fn a_base_images_trigger_copies_from_a_stage_the_graph_took_in() {
        let base = ImageConfig {
            on_build: vec!["COPY --from=src /in /out".into()],
            ..Default::default()
        };
        let text = "FROM a AS src\nFROM b\n";
        let p = plan_with(text, &[], 1, &base).unwrap();
        assert_eq!(copy(&p.steps[0]).from, CopyFrom::Stage(0));
        // Dispatched without the graph knowing the trigger: refused before any step.
        let graph = graph_of(text, &[]).unwrap();
        let error = dispatch_stage(&graph, 1, &base, &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("the build graph did not take in"), "{error}");
    }

    #[test]
    fn dispatch_errors() {
        let err = |t: &str| {
            plan_with(t, &[], 0, &ImageConfig::default())
                .unwrap_err()
                .to_string()
        };
        assert!(err("FROM a\nCOPY https://example.com/x /x\n").contains("can't be a URL"));
        assert!(
            err("FROM a\nADD --checksum=sha256:abc https://example.com/x /x\n")
                .starts_with("Dockerfile:2:1: ADD https://example.com/x: `sha256:abc`")
        );
        assert!(err("FROM a\nADD --checksum=sha256:abc x /x\n").contains("requires HTTP(S)"));
        assert!(err("FROM a\nCOPY --chmod=999 a /a\n").contains("an octal mode is at most 7777"));
        assert!(
            err("FROM a\nCOPY --chmod=u+z a /a\n").contains("`--chmod=u+z` is not a file mode")
        );
        assert!(
            err("FROM a\nCOPY --from=s --exclude=[x a /a\n")
                .starts_with("Dockerfile:2:1: COPY --exclude: invalid pattern `[x`")
        );
        assert!(err("FROM a\nEXPOSE http\n").starts_with("Dockerfile:2:1: EXPOSE http"));
        assert!(err("FROM a\nSTOPSIGNAL SIGFOO\n").contains("not a signal"));
        assert!(err("FROM a\nENV X=${Y:?required}\n").contains("required"));
    }

    #[test]
    fn add_remote_sources() {
        let p = plan(
            "FROM a\nADD https://u:tok@example.com/f.tgz local /d/\nADD --keep-git-dir https://h/r.git#v1:sub /g\n",
        );
        let c = copy(&p.steps[0]);
        assert_eq!(c.sources, ["local"]);
        assert_eq!(c.remote.len(), 1);
        assert_eq!(
            p.history[0].created_by,
            "ADD https://example.com/f.tgz local /d/ # buildkit"
        );
        assert!(!p.steps[0].display.contains("tok"));
        let g = copy(&p.steps[1]);
        assert!(g.sources.is_empty());
        assert!(
            matches!(&g.remote[0], crate::fetch::RemoteSource::Git(s) if s.keep_git_dir && s.subdir == "sub")
        );
        // `--parents` is in the history, as current BuildKit writes it; `--exclude` only
        // in the progress line.
        let p = plan("FROM a\nCOPY --parents --exclude=*.md --chmod=644 a/./b /d/\n");
        assert_eq!(
            p.history[0].created_by,
            "COPY --parents --chmod=644 a/./b /d/ # buildkit"
        );
        assert_eq!(
            p.steps[0].display,
            "COPY --exclude=*.md --parents --chmod=644 a/./b /d/"
        );
    }

    #[test]
    fn secret_looking_names_are_noted() {
        let p = plan("FROM a\nARG API_TOKEN\nENV SECRET_KEY_BASE=x\nENV PORT=4000\n");
        let noted: Vec<_> = p
            .secret_names
            .iter()
            .map(|s| (s.keyword, s.name.as_str(), s.line))
            .collect();
        assert_eq!(
            noted,
            [("ARG", "API_TOKEN", 2), ("ENV", "SECRET_KEY_BASE", 3)]
        );
    }
}
