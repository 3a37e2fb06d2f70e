//! AST → typed instructions, as BuildKit's `instructions` package does: one struct per
//! instruction with its flags parsed, arguments checked, and the location attached once.
//!
//! Nothing here expands variables: `$VAR`s stay as written and are expanded when a stage is
//! dispatched ([`crate::plan`]), where the stage's ARG and ENV values are known.

use std::time::Duration;

use super::Error;
use super::parser::{Ast, Node};

/// Where an instruction is in the Dockerfile (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    pub line: usize,
    pub end_line: usize,
    pub column: usize,
}

/// A typed Dockerfile: the ARGs before the first FROM, then the stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The file as the user named it, for error messages.
    pub file: String,
    /// The escape character from the `# escape=` directive.
    pub escape: char,
    /// The `# check=` directive's value (`skip=ID,…`), for [`crate::check::Skips`].
    pub check: Option<String>,
    /// ARG instructions before the first FROM (usable in FROM lines).
    pub meta_args: Vec<Command>,
    pub stages: Vec<Stage>,
}

/// One `FROM … [AS name]` and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages, for `COPY --from=0`.
    pub index: usize,
    /// The stage name, lower-cased (stage names are case-insensitive).
    pub name: Option<String>,
    /// The base image or stage name as written (may hold `$ARG`s).
    pub base: String,
    /// `FROM --platform=…` as written.
    pub platform: Option<String>,
    /// The FROM line as written, for progress and history.
    pub source: String,
    pub location: Location,
    pub commands: Vec<Command>,
}

impl Stage {
    /// `name` or `stage-N`, as BuildKit names stages in progress output.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// An instruction with its location and source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub instruction: Instruction,
    pub location: Location,
    /// The instruction as written (continuations joined), e.g. `COPY mix.exs mix.lock ./`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell(Vec<String>),
    Copy(Copy),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Arg(Vec<ArgDecl>),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// The trigger instruction's text, stored in the image config.
    Onbuild(String),
    Maintainer(String),
}

impl Instruction {
    /// The keyword in upper case, for messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Copy(c) if c.is_add => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Env(_) => "ENV",
            Instruction::Label(_) => "LABEL",
            Instruction::Arg(_) => "ARG",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// A `KEY=value` pair of ENV or LABEL, as written (quotes not yet removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `ARG NAME[=default]`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub key: String,
    pub default: Option<String>,
}

/// RUN/CMD/ENTRYPOINT arguments: a JSON array (exec form) or one shell string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandLine {
    pub args: Vec<String>,
    /// Shell form: run through the stage's SHELL (`/bin/sh -c` by default).
    pub prepend_shell: bool,
    /// Heredoc bodies (`RUN <<EOF`), run as docker build runs them.
    pub heredocs: Vec<InlineFile>,
}

/// A heredoc body used as a file or script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    /// The heredoc's terminator word (also the file name for COPY).
    pub name: String,
    pub data: String,
    /// `$VAR`s in the body are expanded (unquoted terminator).
    pub expand: bool,
    /// `<<-`: leading tabs are removed from each line.
    pub chomp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: CommandLine,
    pub mounts: Vec<Mount>,
    /// `--network=default|none|host`.
    pub network: Option<String>,
    /// `--security=sandbox|insecure`.
    pub security: Option<String>,
}

/// `RUN --mount=type=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    pub target: Option<String>,
    pub source: Option<String>,
    /// `from=`: a stage or image the bind/cache mount takes its files from.
    pub from: Option<String>,
    /// `id=` for cache and secret mounts.
    pub id: Option<String>,
    pub readonly: bool,
    /// `sharing=shared|private|locked` for cache mounts.
    pub sharing: Option<String>,
    /// `mode=`, `uid=`, `gid=` as written.
    pub mode: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    /// `required=` for secret and ssh mounts.
    pub required: bool,
    /// `env=` for secret mounts.
    pub env: Option<String>,
    /// `size=` for tmpfs mounts.
    pub size: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub is_add: bool,
    /// Source paths as written (globs, `$VAR`s not yet expanded).
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`).
    pub inline: Vec<InlineFile>,
    pub dest: String,
    /// `--from=` (COPY only): a stage name, a stage index or an image.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `--parents` (COPY).
    pub parents: bool,
    /// `--exclude=` patterns.
    pub exclude: Vec<String>,
    /// `--checksum=` (ADD).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD).
    pub keep_git_dir: bool,
    /// `--unpack=` (ADD).
    pub unpack: Option<bool>,
}

/// HEALTHCHECK; `test` is Docker's form: `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", cmd]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// Every instruction keyword, upper case, for "did you mean".
const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Turns a parsed Dockerfile into stages of typed instructions.
pub fn from_ast(file: &str, ast: &Ast) -> Result<Dockerfile, Error> {
    check_syntax_directive(file, ast)?;
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &ast.nodes {
        if node.keyword == "from" {
            let stage = parse_from(file, node, stages.len())?;
            stages.push(stage);
            continue;
        }
        let command = parse_command(file, node)?;
        match stages.last_mut() {
            Some(stage) => stage.commands.push(command),
            None if matches!(command.instruction, Instruction::Arg(_)) => meta_args.push(command),
            None => {
                return Err(error_at(
                    file,
                    node,
                    format!(
                        "{} before the first FROM: only ARG may come before FROM",
                        command.instruction.keyword()
                    ),
                )
                .with_hint("start the Dockerfile with `FROM image`"));
            }
        }
    }
    if stages.is_empty() {
        return Err(Error::new(
            file,
            "no FROM instruction: the Dockerfile has no stage to build",
        )
        .with_hint("start the Dockerfile with `FROM image`"));
    }
    check_unique_stage_names(file, &stages)?;
    Ok(Dockerfile {
        file: file.to_owned(),
        escape: ast.directives.escape,
        check: ast.directives.check.clone(),
        meta_args,
        stages,
    })
}

/// `# syntax=docker/dockerfile:1…` means the built-in frontend; imgbuild never pulls a
/// frontend image, so any other syntax is refused rather than silently ignored.
fn check_syntax_directive(file: &str, ast: &Ast) -> Result<(), Error> {
    let Some((syntax, line)) = &ast.directives.syntax else {
        return Ok(());
    };
    let name = syntax.split(['@']).next().unwrap_or_default();
    let repo = name.rsplit_once(':').map_or(
        name,
        |(repo, tag)| if tag.contains('/') { name } else { repo },
    );
    let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
    if matches!(repo, "docker/dockerfile" | "docker/dockerfile-upstream") {
        return Ok(());
    }
    Err(Error::new(file, format!("unsupported syntax `{syntax}`: imgbuild has a built-in Dockerfile frontend and never runs frontend images"))
        .at(*line, None)
        .with_hint("use `# syntax=docker/dockerfile:1` or remove the line"))
}

fn check_unique_stage_names(file: &str, stages: &[Stage]) -> Result<(), Error> {
    for (i, stage) in stages.iter().enumerate() {
        let Some(name) = &stage.name else { continue };
        if let Some(first) = stages[..i].iter().find(|s| s.name.as_ref() == Some(name)) {
            return Err(Error::new(
                file,
                format!(
                    "duplicate stage name `{name}`: already used by the stage on line {}",
                    first.location.line
                ),
            )
            .at(stage.location.line, Some(stage.location.column)));
        }
    }
    Ok(())
}

fn location(node: &Node) -> Location {
    Location {
        line: node.start_line,
        end_line: node.end_line.max(node.start_line),
        column: node.column.max(1),
    }
}

fn error_at(file: &str, node: &Node, message: impl Into<String>) -> Error {
    Error::new(file, message).at(node.start_line, Some(node.column.max(1)))
}

/// A Dockerfile value as text. Invalid UTF-8 is refused: a builder cannot know what
/// the bytes were meant to be, and passing them on silently changes commands.
fn text(file: &str, node: &Node, bytes: &[u8]) -> Result<String, Error> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        error_at(
            file,
            node,
            format!(
                "{} holds bytes that are not UTF-8",
                node.keyword.to_uppercase()
            ),
        )
        .with_hint("save the Dockerfile as UTF-8")
    })
}

fn texts(file: &str, node: &Node, items: &[Vec<u8>]) -> Result<Vec<String>, Error> {
    items.iter().map(|b| text(file, node, b)).collect()
}

fn parse_from(file: &str, node: &Node, index: usize) -> Result<Stage, Error> {
    let args = texts(file, node, &node.args)?;
    let mut flags = Flags::new(file, node)?;
    let platform = flags.string("platform");
    flags.finish()?;
    let name = match args.as_slice() {
        [_] => None,
        [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            let valid = lower.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && lower
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                return Err(error_at(
                    file,
                    node,
                    format!(
                        "invalid name for build stage: `{name}`: a name starts with a letter and holds only letters, digits, `-`, `_` and `.`"
                    ),
                ));
            }
            Some(lower)
        }
        [] => {
            return Err(error_at(
                file,
                node,
                "FROM requires the name of a base image or stage",
            ));
        }
        _ => {
            return Err(
                error_at(file, node, "FROM requires either one or three arguments")
                    .with_hint("write `FROM image` or `FROM image AS name`"),
            );
        }
    };
    Ok(Stage {
        index,
        name,
        base: args[0].clone(),
        platform,
        source: text(file, node, &node.original)?.trim().to_owned(),
        location: location(node),
        commands: Vec::new(),
    })
}

/// Parses one non-FROM node into a command.
pub fn parse_command(file: &str, node: &Node) -> Result<Command, Error> {
    let instruction = parse_instruction(file, node)?;
    Ok(Command {
        instruction,
        location: location(node),
        source: text(file, node, &node.original)?.trim().to_owned(),
    })
}

/// An ONBUILD trigger (from a base image's config, or an ONBUILD of the base stage), parsed
/// as the instruction it runs in the stage built on it, located at `at` (its FROM).
pub fn parse_trigger(file: &str, trigger: &str, at: Location) -> Result<Command, Error> {
    let located = |message: String| Error::new(file, message).at(at.line, Some(at.column));
    let ast = super::parser::parse(trigger.as_bytes()).map_err(|e| {
        located(format!(
            "ONBUILD trigger `{trigger}` of the base image: {}",
            e.message
        ))
    })?;
    let [node] = ast.nodes.as_slice() else {
        return Err(located(format!(
            "ONBUILD trigger `{trigger}` of the base image is not one instruction"
        )));
    };
    if matches!(node.keyword.as_str(), "from" | "onbuild" | "maintainer") {
        return Err(located(format!(
            "ONBUILD trigger `{trigger}`: {} is not allowed as a trigger",
            node.keyword.to_uppercase()
        )));
    }
    let mut command = parse_command(file, node)?;
    command.location = at;
    Ok(command)
}

fn parse_instruction(file: &str, node: &Node) -> Result<Instruction, Error> {
    let keyword = node.keyword.to_uppercase();
    let args = texts(file, node, &node.args)?;
    let mut flags = Flags::new(file, node)?;
    let need_one = |args: &[String]| -> Result<String, Error> {
        match args {
            [one] => Ok(one.clone()),
            _ => Err(error_at(
                file,
                node,
                format!("{keyword} requires exactly one argument"),
            )),
        }
    };
    let need_some = |args: &[String]| -> Result<(), Error> {
        if args.is_empty() {
            Err(error_at(
                file,
                node,
                format!("{keyword} requires at least one argument"),
            ))
        } else {
            Ok(())
        }
    };
    let instruction = match node.keyword.as_str() {
        "run" => {
            let mounts = flags.strings("mount");
            let network = flags.string("network");
            let security = flags.string("security");
            flags.finish()?;
            let mounts = mounts
                .iter()
                .map(|m| parse_mount(m).map_err(|e| error_at(file, node, e)))
                .collect::<Result<_, _>>()?;
            if let Some(n) = &network
                && !matches!(n.as_str(), "default" | "none" | "host")
            {
                return Err(error_at(
                    file,
                    node,
                    format!("RUN --network={n}: expected default, none or host"),
                ));
            }
            if let Some(s) = &security
                && !matches!(s.as_str(), "sandbox" | "insecure")
            {
                return Err(error_at(
                    file,
                    node,
                    format!("RUN --security={s}: expected sandbox or insecure"),
                ));
            }
            let command = command_line(file, node, args)?;
            if command.args.is_empty() && command.heredocs.is_empty() {
                return Err(error_at(file, node, "RUN requires a command"));
            }
            Instruction::Run(Run {
                command,
                mounts,
                network,
                security,
            })
        }
        "cmd" => {
            flags.finish()?;
            Instruction::Cmd(command_line(file, node, args)?)
        }
        "entrypoint" => {
            flags.finish()?;
            Instruction::Entrypoint(command_line(file, node, args)?)
        }
        "shell" => {
            flags.finish()?;
            need_some(&args)?;
            if !node.json {
                return Err(error_at(
                    file,
                    node,
                    "SHELL requires the arguments to be in JSON form",
                )
                .with_hint(r#"write e.g. SHELL ["/bin/bash", "-c"]"#));
            }
            Instruction::Shell(args)
        }
        "copy" | "add" => {
            let is_add = node.keyword == "add";
            let chown = flags.string("chown");
            let chmod = flags.string("chmod");
            let link = flags.boolean("link")?;
            let exclude = flags.strings("exclude");
            let (from, parents, checksum, keep_git_dir, unpack) = if is_add {
                let checksum = flags.string("checksum");
                let keep = flags.boolean("keep-git-dir")?;
                let unpack = flags.optional_boolean("unpack")?;
                (None, false, checksum, keep, unpack)
            } else {
                let from = flags.string("from");
                let parents = flags.boolean("parents")?;
                (from, parents, None, false, None)
            };
            flags.finish()?;
            if args.len() < 2 {
                return Err(error_at(
                    file,
                    node,
                    format!(
                        "{keyword} requires at least two arguments, but only {} was provided: the destination could not be determined",
                        if args.is_empty() { "none" } else { "one" }
                    ),
                ));
            }
            if let Some(from) = &from
                && from.is_empty()
            {
                return Err(error_at(
                    file,
                    node,
                    "COPY --from= is empty: name a stage, a stage index or an image",
                ));
            }
            let (dest, srcs) = args
                .split_last()
                .map(|(d, s)| (d.clone(), s.to_vec()))
                .unwrap_or_default();
            if heredoc_name(&dest).is_some() {
                return Err(error_at(
                    file,
                    node,
                    format!("{keyword} cannot accept a heredoc as a destination"),
                ));
            }
            let mut sources = Vec::new();
            let mut inline = Vec::new();
            for src in srcs {
                match heredoc_name(&src) {
                    Some(name) => {
                        let doc =
                            node.heredocs
                                .iter()
                                .find(|h| h.name == name)
                                .ok_or_else(|| {
                                    error_at(
                                        file,
                                        node,
                                        format!("{keyword}: no body for heredoc `{name}`"),
                                    )
                                })?;
                        inline.push(inline_file(file, node, doc)?);
                    }
                    None => sources.push(src),
                }
            }
            Instruction::Copy(Copy {
                is_add,
                sources,
                inline,
                dest,
                from,
                chown,
                chmod,
                link,
                parents,
                exclude,
                checksum,
                keep_git_dir,
                unpack,
            })
        }
        "env" | "label" => {
            flags.finish()?;
            let pairs = key_values(file, node, &keyword, &args)?;
            if node.keyword == "env" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "arg" => {
            flags.finish()?;
            need_some(&args)?;
            let decls = args
                .into_iter()
                .map(|arg| match arg.split_once('=') {
                    Some(("", _)) => Err(error_at(file, node, "ARG names can not be blank")),
                    Some((k, v)) => Ok(ArgDecl {
                        key: k.to_owned(),
                        default: Some(v.to_owned()),
                    }),
                    None => Ok(ArgDecl {
                        key: arg,
                        default: None,
                    }),
                })
                .collect::<Result<_, _>>()?;
            Instruction::Arg(decls)
        }
        "workdir" => {
            flags.finish()?;
            Instruction::Workdir(need_one(&args)?)
        }
        "user" => {
            flags.finish()?;
            Instruction::User(need_one(&args)?)
        }
        "maintainer" => {
            flags.finish()?;
            Instruction::Maintainer(need_one(&args)?)
        }
        "stopsignal" => {
            flags.finish()?;
            Instruction::StopSignal(need_one(&args)?)
        }
        "expose" => {
            flags.finish()?;
            need_some(&args)?;
            Instruction::Expose(args)
        }
        "volume" => {
            flags.finish()?;
            need_some(&args)?;
            let volumes: Vec<String> = args.iter().map(|v| v.trim().to_owned()).collect();
            if volumes.iter().any(String::is_empty) {
                return Err(error_at(
                    file,
                    node,
                    "VOLUME specified can not be an empty string",
                ));
            }
            Instruction::Volume(volumes)
        }
        "healthcheck" => Instruction::Healthcheck(parse_healthcheck(file, node, &mut flags, args)?),
        "onbuild" => {
            flags.finish()?;
            let Some(next) = &node.next else {
                return Err(error_at(
                    file,
                    node,
                    "ONBUILD requires at least one argument",
                ));
            };
            match next.keyword.as_str() {
                "onbuild" => {
                    return Err(error_at(
                        file,
                        node,
                        "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ));
                }
                "from" | "maintainer" => {
                    return Err(error_at(
                        file,
                        node,
                        format!(
                            "{} isn't allowed as an ONBUILD trigger",
                            next.keyword.to_uppercase()
                        ),
                    ));
                }
                _ => {}
            }
            // Check the trigger now, so a typo fails this build, not the next one.
            parse_instruction(file, next)?;
            let original = text(file, node, &node.original)?;
            let mut trigger = strip_keyword(original.trim_start(), "onbuild").to_owned();
            // The parser keeps an `ONBUILD RUN <<EOF` line's heredocs on the ONBUILD node,
            // as BuildKit's does; `parseOnBuild` appends them to the trigger.
            let heredocs = match node.heredocs.is_empty() {
                true => &next.heredocs,
                false => &node.heredocs,
            };
            for doc in heredocs {
                trigger.push('\n');
                trigger.push_str(&text(file, node, &doc.content)?);
                trigger.push_str(&doc.name);
            }
            Instruction::Onbuild(trigger)
        }
        _ => return Err(unknown_instruction(file, node)),
    };
    Ok(instruction)
}

/// `ONBUILD RUN x` → `RUN x`, keeping the rest as written.
fn strip_keyword<'a>(line: &'a str, keyword: &str) -> &'a str {
    match line.get(..keyword.len()) {
        Some(head) if head.eq_ignore_ascii_case(keyword) => line[keyword.len()..].trim_start(),
        _ => line,
    }
}

fn unknown_instruction(file: &str, node: &Node) -> Error {
    let written = if node.keyword_original.is_empty() {
        node.keyword.to_uppercase()
    } else {
        node.keyword_original.clone()
    };
    let upper = written.to_uppercase();
    let best = KEYWORDS
        .iter()
        .map(|k| (edit_distance(&upper, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min();
    let mut message = format!("unknown instruction: {written}");
    if let Some((_, keyword)) = best {
        message.push_str(&format!(" (did you mean {keyword}?)"));
    }
    error_at(file, node, message)
}

/// Levenshtein distance, for "did you mean" suggestions (short words only).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"` used as an argument: the heredoc's name.
fn heredoc_name(word: &str) -> Option<String> {
    let rest = word.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name = rest.trim_matches(|c| c == '"' || c == '\'');
    (!name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
    .then(|| name.to_owned())
}

fn inline_file(file: &str, node: &Node, doc: &super::parser::Heredoc) -> Result<InlineFile, Error> {
    Ok(InlineFile {
        name: doc.name.clone(),
        data: text(file, node, &doc.content)?,
        expand: doc.expand,
        chomp: doc.chomp,
    })
}

fn command_line(file: &str, node: &Node, args: Vec<String>) -> Result<CommandLine, Error> {
    let heredocs = node
        .heredocs
        .iter()
        .map(|h| inline_file(file, node, h))
        .collect::<Result<_, _>>()?;
    Ok(CommandLine {
        args,
        prepend_shell: !node.json,
        heredocs,
    })
}

fn key_values(
    file: &str,
    node: &Node,
    keyword: &str,
    args: &[String],
) -> Result<Vec<KeyValue>, Error> {
    if args.is_empty() {
        return Err(error_at(
            file,
            node,
            format!("{keyword} requires at least one argument"),
        ));
    }
    // The parser gives (key, value, separator) triples.
    if !args.len().is_multiple_of(3) {
        return Err(error_at(
            file,
            node,
            format!("bad input to {keyword}: too many arguments"),
        ));
    }
    args.chunks(3)
        .map(|kv| match kv {
            [key, _, _] if key.is_empty() => Err(error_at(
                file,
                node,
                format!("{keyword} names can not be blank"),
            )),
            [key, value, _] => Ok(KeyValue {
                key: key.clone(),
                value: value.clone(),
            }),
            _ => Err(error_at(file, node, format!("bad input to {keyword}"))),
        })
        .collect()
}

fn parse_healthcheck(
    file: &str,
    node: &Node,
    flags: &mut Flags,
    args: Vec<String>,
) -> Result<Healthcheck, Error> {
    let Some(kind) = args.first().map(|k| k.to_uppercase()) else {
        return Err(error_at(
            file,
            node,
            "HEALTHCHECK requires at least one argument",
        ));
    };
    let rest = args[1..].to_vec();
    if kind == "NONE" {
        if !rest.is_empty() {
            return Err(error_at(file, node, "HEALTHCHECK NONE takes no arguments"));
        }
        return Ok(Healthcheck {
            test: vec!["NONE".into()],
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        });
    }
    let interval = flags.string("interval");
    let timeout = flags.string("timeout");
    let start_period = flags.string("start-period");
    let start_interval = flags.string("start-interval");
    let retries = flags.string("retries");
    flags.finish()?;
    if kind != "CMD" {
        return Err(error_at(
            file,
            node,
            format!("unknown type `{kind}` in HEALTHCHECK (try CMD)"),
        ));
    }
    if rest.is_empty() {
        return Err(error_at(
            file,
            node,
            "missing command after HEALTHCHECK CMD",
        ));
    }
    let test = if node.json {
        std::iter::once("CMD".to_owned()).chain(rest).collect()
    } else {
        vec!["CMD-SHELL".to_owned(), rest.join(" ")]
    };
    let duration = |name: &str, v: Option<String>| -> Result<Option<Duration>, Error> {
        let Some(v) = v.filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let d = parse_go_duration(&v).ok_or_else(|| {
            error_at(
                file,
                node,
                format!("HEALTHCHECK --{name}={v}: not a duration (e.g. 30s, 1m30s)"),
            )
        })?;
        if d.is_zero() {
            return Ok(None);
        }
        if d < Duration::from_millis(1) {
            return Err(error_at(
                file,
                node,
                format!("HEALTHCHECK --{name} cannot be less than 1ms"),
            ));
        }
        Ok(Some(d))
    };
    let retries = match retries.filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(r.parse::<u32>().map_err(|_| {
            error_at(
                file,
                node,
                format!("HEALTHCHECK --retries={r}: expected a non-negative whole number"),
            )
        })?),
    };
    Ok(Healthcheck {
        test,
        interval: duration("interval", interval)?,
        timeout: duration("timeout", timeout)?,
        start_period: duration("start-period", start_period)?,
        start_interval: duration("start-interval", start_interval)?,
        retries,
    })
}

/// Go's `time.ParseDuration` syntax (`1h2m3.5s`, `300ms`), which HEALTHCHECK flags use.
/// Written by hand: duration crates accept other syntaxes (`1 hour`) that Docker refuses.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s;
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * nanos;
        rest = tail;
    }
    (total.is_finite() && total < 1e19).then(|| Duration::from_nanos(total as u64))
}

/// `RUN --mount=type=cache,target=/root/.cache,sharing=locked` → [`Mount`].
pub fn parse_mount(spec: &str) -> Result<Mount, String> {
    let mut mount = Mount {
        kind: MountKind::Bind,
        target: None,
        source: None,
        from: None,
        id: None,
        readonly: false,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        env: None,
        size: None,
    };
    let mut readonly = None;
    for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_lowercase(), Some(v.trim().to_owned())),
            None => (field.to_lowercase(), None),
        };
        let bool_value = |v: &Option<String>| -> Result<bool, String> {
            match v.as_deref().map(str::to_lowercase).as_deref() {
                None | Some("true") | Some("1") => Ok(true),
                Some("false") | Some("0") => Ok(false),
                Some(other) => Err(format!("--mount {key}={other}: expected true or false")),
            }
        };
        let need =
            |v: Option<String>| v.ok_or_else(|| format!("--mount {key} needs a value ({key}=…)"));
        match key.as_str() {
            "type" => {
                mount.kind = match need(value)?.as_str() {
                    "bind" => MountKind::Bind,
                    "cache" => MountKind::Cache,
                    "tmpfs" => MountKind::Tmpfs,
                    "secret" => MountKind::Secret,
                    "ssh" => MountKind::Ssh,
                    other => {
                        return Err(format!(
                            "--mount type={other}: expected bind, cache, tmpfs, secret or ssh"
                        ));
                    }
                }
            }
            "target" | "dst" | "destination" => mount.target = Some(need(value)?),
            "source" | "src" => mount.source = Some(need(value)?),
            "from" => mount.from = Some(need(value)?),
            "id" => mount.id = Some(need(value)?),
            "readonly" | "ro" => readonly = Some(bool_value(&value)?),
            "readwrite" | "rw" => readonly = Some(!bool_value(&value)?),
            "sharing" => {
                let v = need(value)?;
                if !matches!(v.as_str(), "shared" | "private" | "locked") {
                    return Err(format!(
                        "--mount sharing={v}: expected shared, private or locked"
                    ));
                }
                mount.sharing = Some(v);
            }
            "mode" => mount.mode = Some(need(value)?),
            "uid" => mount.uid = Some(need(value)?),
            "gid" => mount.gid = Some(need(value)?),
            "required" => mount.required = bool_value(&value)?,
            "env" => mount.env = Some(need(value)?),
            "size" => mount.size = Some(need(value)?),
            other => return Err(format!("--mount: unknown option `{other}`")),
        }
    }
    // Bind, secret and ssh mounts are read-only unless asked otherwise, as in BuildKit.
    mount.readonly = readonly.unwrap_or(!matches!(mount.kind, MountKind::Cache | MountKind::Tmpfs));
    check_mount_options(&mount)?;
    Ok(mount)
}

/// A tmpfs `size=` in bytes, read as BuildKit reads it (`units.RAMInBytes`): a number with
/// an optional binary unit, `k`/`kb`/`kib` … `p`, any case.
pub fn ram_bytes(size: &str) -> Option<u64> {
    let size = size.trim();
    let split = size
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(size.len());
    let (number, unit) = size.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let power = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return None,
    };
    let bytes = number * 1024f64.powi(power);
    (0.0..1.8e19).contains(&bytes).then_some(bytes as u64)
}

/// BuildKit's rules for which options a mount type takes, so a mistake is reported when the
/// Dockerfile is read (a bind or cache mount without `target=` is at the working directory).
fn check_mount_options(mount: &Mount) -> Result<(), String> {
    let kind = match mount.kind {
        MountKind::Bind => "bind",
        MountKind::Cache => "cache",
        MountKind::Tmpfs => "tmpfs",
        MountKind::Secret => "secret",
        MountKind::Ssh => "ssh",
    };
    let file_info = matches!(
        mount.kind,
        MountKind::Secret | MountKind::Ssh | MountKind::Cache
    );
    for (name, given) in [
        ("mode", &mount.mode),
        ("uid", &mount.uid),
        ("gid", &mount.gid),
    ] {
        if given.is_some() && !file_info {
            return Err(format!(
                "--mount {name}= is not allowed for type={kind} mounts"
            ));
        }
    }
    if let Some(mode) = &mount.mode
        && u32::from_str_radix(mode, 8).map_or(true, |m| m > 0o7777)
    {
        return Err(format!("--mount mode={mode}: expected an octal mode"));
    }
    for id in [&mount.uid, &mount.gid].into_iter().flatten() {
        if id.parse::<u32>().is_err() {
            return Err(format!("--mount uid/gid `{id}`: expected a number"));
        }
    }
    if mount.required && !matches!(mount.kind, MountKind::Secret | MountKind::Ssh) {
        return Err(format!(
            "--mount required is not allowed for type={kind} mounts"
        ));
    }
    if let Some(size) = &mount.size {
        if mount.kind != MountKind::Tmpfs {
            return Err(format!(
                "--mount size= is not allowed for type={kind} mounts"
            ));
        }
        if ram_bytes(size).is_none() {
            return Err(format!(
                "--mount size={size}: expected a size such as 64m or 1g"
            ));
        }
    }
    if mount.sharing.is_some() && mount.kind != MountKind::Cache {
        return Err(format!(
            "--mount sharing= is not allowed for type={kind} mounts"
        ));
    }
    if mount.env.is_some() && mount.kind != MountKind::Secret {
        return Err(format!(
            "--mount env= is not allowed for type={kind} mounts"
        ));
    }
    if mount.kind == MountKind::Secret {
        if mount.from.is_some() {
            return Err("--mount type=secret takes no from=".into());
        }
        if mount.source.is_some() && mount.id.is_some() {
            return Err("--mount type=secret: give source= or id=, not both".into());
        }
        if mount.id.is_none()
            && mount.source.is_none()
            && mount.target.is_none()
            && mount.env.is_none()
        {
            return Err("--mount type=secret needs id=NAME (or a target to derive it from)".into());
        }
    }
    if mount.kind == MountKind::Ssh && mount.source.is_some() {
        return Err("--mount type=ssh takes no source=".into());
    }
    Ok(())
}

/// BuildKit's `BFlags`: `--name=value` flags of one instruction, each declared before use,
/// so an unknown or repeated flag is an error naming it.
struct Flags<'a> {
    file: &'a str,
    node: &'a Node,
    given: Vec<(String, Option<String>)>,
    known: Vec<&'static str>,
    used: Vec<bool>,
}

impl<'a> Flags<'a> {
    fn new(file: &'a str, node: &'a Node) -> Result<Flags<'a>, Error> {
        let mut given = Vec::new();
        for raw in &node.flags {
            let flag = text(file, node, raw)?;
            let Some(body) = flag.strip_prefix("--") else {
                return Err(error_at(
                    file,
                    node,
                    format!("flag should start with --: {flag}"),
                ));
            };
            match body.split_once('=') {
                Some((name, value)) => given.push((name.to_owned(), Some(value.to_owned()))),
                None => given.push((body.to_owned(), None)),
            }
        }
        let used = vec![false; given.len()];
        Ok(Flags {
            file,
            node,
            given,
            known: Vec::new(),
            used,
        })
    }

    fn take(&mut self, name: &'static str) -> Vec<Option<String>> {
        self.known.push(name);
        let mut out = Vec::new();
        for (i, (n, v)) in self.given.iter().enumerate() {
            if n == name {
                self.used[i] = true;
                out.push(v.clone());
            }
        }
        out
    }

    fn error(&self, message: String) -> Error {
        error_at(self.file, self.node, message)
    }

    /// The value of a flag that takes a value; `None` when absent. Errors surface in `finish`.
    fn string(&mut self, name: &'static str) -> Option<String> {
        self.take(name).into_iter().last().flatten()
    }

    fn strings(&mut self, name: &'static str) -> Vec<String> {
        self.take(name).into_iter().flatten().collect()
    }

    fn optional_boolean(&mut self, name: &'static str) -> Result<Option<bool>, Error> {
        match self.take(name).last() {
            None => Ok(None),
            Some(None) => Ok(Some(true)),
            Some(Some(v)) => match v.to_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                "" => Err(self.error(format!("missing a value on flag: --{name}"))),
                _ => Err(self.error(format!(
                    "expecting a boolean value for flag --{name}, not: {v}"
                ))),
            },
        }
    }

    fn boolean(&mut self, name: &'static str) -> Result<bool, Error> {
        Ok(self.optional_boolean(name)?.unwrap_or(false))
    }

    /// Errors for unknown, repeated, or value-less flags.
    fn finish(&self) -> Result<(), Error> {
        let keyword = self.node.keyword.to_uppercase();
        let multi = ["mount", "exclude"];
        for (i, (name, value)) in self.given.iter().enumerate() {
            if !self.used[i] {
                let known = if self.known.is_empty() {
                    format!("{keyword} takes no flags")
                } else {
                    let list: Vec<String> = self.known.iter().map(|k| format!("--{k}")).collect();
                    format!("{keyword} accepts {}", list.join(", "))
                };
                return Err(self.error(format!("unknown flag: --{name} ({known})")));
            }
            let bool_flag = ["link", "parents", "keep-git-dir", "unpack"].contains(&name.as_str());
            if value.is_none() && !bool_flag {
                return Err(self.error(format!(
                    "missing a value on flag: --{name} (write --{name}=VALUE)"
                )));
            }
            if !multi.contains(&name.as_str()) && self.given[..i].iter().any(|(n, _)| n == name) {
                return Err(self.error(format!("duplicate flag specified: --{name}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s: &str| parse_go_duration(s);
        assert_eq!(d("30s"), Some(Duration::from_secs(30)));
        assert_eq!(d("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(d("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(d("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(d("0"), Some(Duration::ZERO));
        for bad in ["", "s", "10", "1x", "1m1", "-1s", ".s", "1e3s"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn mounts() {
        let m = parse_mount("type=cache,target=/root/.cache,sharing=locked,id=deps").unwrap();
        assert_eq!(m.kind, MountKind::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.id.as_deref(), Some("deps"));
        assert!(!m.readonly);
        let m = parse_mount("type=secret,id=token,env=TOKEN").unwrap();
        assert_eq!(m.kind, MountKind::Secret);
        assert_eq!(m.env.as_deref(), Some("TOKEN"));
        let m = parse_mount("target=/src,from=build,rw").unwrap();
        assert_eq!(m.kind, MountKind::Bind);
        assert!(!m.readonly);
        assert!(parse_mount("target=/src").unwrap().readonly);
        // Without target=, bind, cache and tmpfs mounts are at the working directory.
        assert_eq!(parse_mount("from=build").unwrap().target, None);
        assert!(parse_mount("type=secret,id=a,target=/s").unwrap().readonly);
        assert!(!parse_mount("type=tmpfs,target=/t").unwrap().readonly);
        for bad in [
            "type=nfs,target=/x",
            "type=cache,target=/x,sharing=maybe",
            "target=/x,colour=red",
            "type=secret",
            "type=bind,target=/x,mode=0700",
            "type=tmpfs,target=/x,uid=1",
            "type=cache,target=/x,uid=abc",
            "type=cache,target=/x,mode=999",
            "type=bind,target=/x,required",
            "type=cache,target=/x,size=1m",
            "type=bind,target=/x,sharing=locked",
            "type=secret,id=a,from=build",
            "type=secret,id=a,source=b",
            "type=ssh,source=x",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tmpfs_sizes() {
        assert_eq!(ram_bytes("1024"), Some(1024));
        assert_eq!(ram_bytes("64m"), Some(64 << 20));
        assert_eq!(ram_bytes("1GiB"), Some(1 << 30));
        assert_eq!(ram_bytes("2kb"), Some(2048));
        for bad in ["", "m", "12x", "-1"] {
            assert_eq!(ram_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("RUNN", "RUN"), 1);
        assert_eq!(edit_distance("COPPY", "COPY"), 1);
        assert_eq!(edit_distance("", "RUN"), 3);
        assert_eq!(edit_distance("buld", "build"), 1);
    }

    #[test]
    fn heredoc_names() {
        assert_eq!(heredoc_name("<<EOF").as_deref(), Some("EOF"));
        assert_eq!(heredoc_name("<<-\"END\"").as_deref(), Some("END"));
        assert_eq!(heredoc_name("<<"), None);
        assert_eq!(heredoc_name("file"), None);
    }
}

#[cfg(test)]
mod typed_tests {
    use super::*;
    use crate::frontend::parse_dockerfile;

    fn parse(text: &str) -> Result<Dockerfile, Error> {
        let ast = parse_dockerfile("Dockerfile", text.as_bytes())?;
        from_ast("Dockerfile", &ast)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn stages_and_commands() {
        let d = parse("ARG V=1\nFROM debian:$V AS Build\nWORKDIR /app\nCOPY --chown=nobody:root --from=x a b/\nFROM build\nCMD [\"a\"]\n").unwrap();
        assert_eq!(d.meta_args.len(), 1);
        assert_eq!(d.stages.len(), 2);
        assert_eq!(d.stages[0].name.as_deref(), Some("build"));
        assert_eq!(d.stages[0].base, "debian:$V");
        let Instruction::Copy(copy) = &d.stages[0].commands[1].instruction else {
            panic!()
        };
        assert_eq!(copy.from.as_deref(), Some("x"));
        assert_eq!(copy.chown.as_deref(), Some("nobody:root"));
        assert_eq!(
            (copy.sources.as_slice(), copy.dest.as_str()),
            (&["a".to_string()][..], "b/")
        );
        assert_eq!(d.stages[0].commands[1].location.line, 4);
        let Instruction::Cmd(cmd) = &d.stages[1].commands[0].instruction else {
            panic!()
        };
        assert!(!cmd.prepend_shell);
    }

    #[test]
    fn located_errors() {
        assert_eq!(
            err("FROM a\n\nRUNN make\n"),
            "Dockerfile:3:1: unknown instruction: RUNN (did you mean RUN?)"
        );
        assert_eq!(
            err("FROM a\n  copyy a b\n"),
            "Dockerfile:2:3: unknown instruction: copyy (did you mean COPY?)"
        );
        assert_eq!(
            err("FROM a\nFLURB x\n"),
            "Dockerfile:2:1: unknown instruction: FLURB"
        );
        assert_eq!(
            err("RUN make\nFROM a\n"),
            "Dockerfile:1:1: RUN before the first FROM: only ARG may come before FROM"
        );
        assert!(
            err("FROM a\nCOPY onlyone\n")
                .starts_with("Dockerfile:2:1: COPY requires at least two arguments")
        );
        assert!(err("FROM a\nCOPY --form=x a b\n").contains("unknown flag: --form (COPY accepts --chown, --chmod, --link, --exclude, --from, --parents)"));
        assert!(err("FROM a\nCOPY --from a b\n").contains("missing a value on flag: --from"));
        assert!(err("FROM a\nWORKDIR\n").contains("WORKDIR requires exactly one argument"));
        assert!(
            err("FROM a\nSHELL /bin/bash -c\n")
                .contains("SHELL requires the arguments to be in JSON form")
        );
        assert!(err("FROM a\nHEALTHCHECK --interval=soon CMD true\n").contains("not a duration"));
        assert!(err("FROM a\nONBUILD ONBUILD RUN x\n").contains("ONBUILD ONBUILD"));
        assert!(err("FROM a b c d\n").contains("FROM requires either one or three arguments"));
        assert!(err("FROM a AS 1x\n").contains("invalid name for build stage"));
        assert!(err("ARG X=1\n").contains("no FROM instruction"));
        assert!(
            err("# syntax=example.com/frontend:1\nFROM a\n")
                .starts_with("Dockerfile:1: unsupported syntax")
        );
        assert!(parse("# syntax=docker/dockerfile:1.7-labs\nFROM a\n").is_ok());
        assert!(parse("# syntax=docker.io/docker/dockerfile:1@sha256:abc\nFROM a\n").is_ok());
    }

    #[test]
    fn healthcheck_forms() {
        let d = parse("FROM a\nHEALTHCHECK --interval=30s --retries=3 CMD curl -f http://localhost/ || exit 1\nHEALTHCHECK NONE\nHEALTHCHECK CMD [\"true\"]\n").unwrap();
        let Instruction::Healthcheck(h) = &d.stages[0].commands[0].instruction else {
            panic!()
        };
        assert_eq!(h.test, ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]);
        assert_eq!(h.interval, Some(Duration::from_secs(30)));
        assert_eq!(h.retries, Some(3));
        let Instruction::Healthcheck(h) = &d.stages[0].commands[1].instruction else {
            panic!()
        };
        assert_eq!(h.test, ["NONE"]);
        let Instruction::Healthcheck(h) = &d.stages[0].commands[2].instruction else {
            panic!()
        };
        assert_eq!(h.test, ["CMD", "true"]);
    }

    #[test]
    fn onbuild_keeps_the_trigger_text() {
        let d = parse("FROM a\nONBUILD   COPY . /src\n").unwrap();
        assert_eq!(
            d.stages[0].commands[0].instruction,
            Instruction::Onbuild("COPY . /src".into())
        );
        // With its heredoc (BuildKit's testOnBuildHeredoc), which the trigger parses again.
        let d = parse("FROM a\nONBUILD RUN <<EOF\necho \"hello world\" >> /dest\nEOF\n").unwrap();
        let trigger = "RUN <<EOF\necho \"hello world\" >> /dest\nEOF";
        assert_eq!(
            d.stages[0].commands[0].instruction,
            Instruction::Onbuild(trigger.into())
        );
        let at = d.stages[0].commands[0].location;
        let Instruction::Run(run) = parse_trigger("Dockerfile", trigger, at)
            .unwrap()
            .instruction
        else {
            panic!("a RUN")
        };
        assert_eq!(
            run.command.heredocs[0].data,
            "echo \"hello world\" >> /dest\n"
        );
    }

    #[test]
    fn heredoc_sources_are_inline_files() {
        let d =
            parse("FROM a\nCOPY <<EOF /etc/motd\nhello\nEOF\nRUN <<EOF\necho hi\nEOF\n").unwrap();
        let Instruction::Copy(copy) = &d.stages[0].commands[0].instruction else {
            panic!()
        };
        assert!(copy.sources.is_empty());
        assert_eq!(copy.inline[0].data, "hello\n");
        assert_eq!(copy.dest, "/etc/motd");
        let Instruction::Run(run) = &d.stages[0].commands[1].instruction else {
            panic!()
        };
        assert_eq!(run.command.heredocs[0].data, "echo hi\n");
    }
}
