//! The stage graph: global ARGs evaluated with `--build-arg`s and the platform ARGs, FROM
//! lines expanded, bases and `COPY --from` / `RUN --mount from=` sources resolved to stages
//! or images, cycles refused, and `--target` pruning the stages it does not need.

use std::collections::{BTreeMap, BTreeSet};

use super::Error;
use super::instructions::{
    Command, Dockerfile, Instruction, Location, MountKind, Stage, edit_distance, parse_trigger,
};
use super::shell::Lexer;
use crate::oci::Platform;

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference, expanded (`debian:bookworm-slim`).
    Image(String),
}

/// Where a `COPY --from` or `RUN --mount from=` takes files from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stage(usize),
    /// A `--build-context NAME=DIR`: that directory, read as a build context.
    Local(String),
    Image(String),
}

/// A stage with its base and sources resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedStage {
    pub index: usize,
    pub base: Base,
    /// `FROM --platform=`, expanded and parsed.
    pub platform: Option<Platform>,
    /// Stages this stage needs (its base and every `--from`), without repeats.
    pub stage_deps: BTreeSet<usize>,
    /// Images named by `--from` (not stages), in order of first use.
    pub image_sources: Vec<String>,
}

/// A Dockerfile resolved for one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildGraph {
    pub dockerfile: Dockerfile,
    /// Global ARG values (platform ARGs, then the ARGs before the first FROM).
    pub global_args: BTreeMap<String, String>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    pub stages: Vec<ResolvedStage>,
    /// The stage being built (`--target`, else the last).
    pub target: usize,
    /// The stages the target needs, in dependency order (every stage after what it needs).
    pub needed: Vec<usize>,
    /// `--build-arg`s no ARG of a needed stage declares (docker build warns about these).
    pub unused_build_args: Vec<String>,
    /// `--build-context`s by name.
    pub named_contexts: BTreeMap<String, NamedContext>,
}

/// What a `--build-context NAME=…` gives for NAME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// `docker-image://REF`.
    Image(String),
    /// A directory, read as a build context (its own `.dockerignore` applies).
    Local(std::path::PathBuf),
}

impl BuildGraph {
    pub fn stage(&self, index: usize) -> &Stage {
        &self.dockerfile.stages[index]
    }

    /// Where the `--from` of a command points, if it has one that names a stage.
    pub fn resolve_from(&self, from: &str) -> Source {
        resolve_source(&self.dockerfile.stages, &self.named_contexts, from)
            .unwrap_or_else(|_| Source::Image(from.to_owned()))
    }
}

/// Build args every Dockerfile may use without declaring them globally; docker build does
/// not warn when they go unused.
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "SOURCE_DATE_EPOCH",
];

/// The automatic platform ARGs of BuildKit for a build on this machine for `target`.
pub fn platform_args(target: &Platform) -> BTreeMap<String, String> {
    let build = Platform::linux_amd64();
    let mut args = BTreeMap::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", &build)] {
        args.insert(format!("{prefix}PLATFORM"), p.to_string());
        args.insert(format!("{prefix}OS"), p.os.clone());
        args.insert(format!("{prefix}ARCH"), p.architecture.clone());
        args.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    args
}

/// Resolves `dockerfile` for a build of `target` (or the last stage).
pub fn resolve(
    dockerfile: Dockerfile,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
    platform: &Platform,
) -> Result<BuildGraph, Error> {
    resolve_with_contexts(dockerfile, build_args, target, platform, &BTreeMap::new())
}

/// A stage built on a `--build-context NAME=DIR` (`FROM NAME`) starts from the directory's
/// files, as in BuildKit: it becomes `FROM scratch` with `COPY --from=NAME . /` first.
/// (BuildKit's image has no history entry for that copy; its files are the same.)
fn build_on_local_contexts(
    dockerfile: &mut Dockerfile,
    lexer: &Lexer,
    global_args: &BTreeMap<String, String>,
    named_contexts: &BTreeMap<String, NamedContext>,
) {
    if !named_contexts
        .values()
        .any(|c| matches!(c, NamedContext::Local(_)))
    {
        return;
    }
    let names: Vec<Option<String>> = dockerfile.stages.iter().map(|s| s.name.clone()).collect();
    for stage in &mut dockerfile.stages {
        // A base that does not expand is reported where the stage is resolved.
        let Ok(base) = lexer.process_word(&stage.base, global_args) else {
            continue;
        };
        let lower = base.to_lowercase();
        let names_earlier_stage = names[..stage.index]
            .iter()
            .any(|n| n.as_deref() == Some(lower.as_str()));
        let local = match named_contexts.get(&lower) {
            Some(NamedContext::Local(_)) => Some(lower.clone()),
            _ if names_earlier_stage => None,
            _ => match named_context(named_contexts, &base) {
                Some(NamedContext::Local(_)) => Some(lower.clone()),
                _ => None,
            },
        };
        let Some(name) = local else { continue };
        stage.base = "scratch".to_owned();
        let copy = super::instructions::Copy {
            is_add: false,
            sources: vec![".".to_owned()],
            inline: Vec::new(),
            dest: "/".to_owned(),
            from: Some(name.clone()),
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            exclude: Vec::new(),
            checksum: None,
            keep_git_dir: false,
            unpack: None,
        };
        stage.commands.insert(
            0,
            Command {
                instruction: Instruction::Copy(copy),
                location: stage.location,
                source: format!("COPY --from={name} . /"),
            },
        );
    }
}

/// The `--build-context` for `name`, a FROM or `--from` that is no stage: by name as
/// written, else as the same image reference.
fn named_context<'a>(
    named: &'a BTreeMap<String, NamedContext>,
    name: &str,
) -> Option<&'a NamedContext> {
    if named.is_empty() {
        return None;
    }
    if let Some(context) = named.get(&name.to_lowercase()) {
        return Some(context);
    }
    let normal = |text: &str| {
        crate::registry::reference::Reference::parse(text)
            .ok()
            .map(|r| r.to_string())
    };
    let wanted = normal(name)?;
    named
        .iter()
        .find(|(key, _)| normal(key).as_deref() == Some(wanted.as_str()))
        .map(|(_, context)| context)
}

/// [`resolve`] with `--build-context`s, as BuildKit applies them: a stage named NAME is
/// replaced by the named context (its instructions are not built), and a FROM or `--from`
/// that names no stage but NAME (as written, or as the same image reference: `alpine` is
/// `docker.io/library/alpine:latest`) takes it. A stage built on a directory starts from its
/// files.
pub fn resolve_with_contexts(
    mut dockerfile: Dockerfile,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
    platform: &Platform,
    named_contexts: &BTreeMap<String, NamedContext>,
) -> Result<BuildGraph, Error> {
    for stage in &mut dockerfile.stages {
        let Some(context) = stage.name.as_deref().and_then(|n| named_contexts.get(n)) else {
            continue;
        };
        stage.commands.clear();
        stage.base = match context {
            NamedContext::Image(image) => image.clone(),
            // Never built (every use of it is a `--from`, which takes the directory).
            NamedContext::Local(_) => "scratch".to_owned(),
        };
    }
    let file = dockerfile.file.clone();
    let lexer = Lexer::new(dockerfile.escape);
    let target_index = find_target(&dockerfile, target)?;

    let mut global_args = platform_args(platform);
    // Current BuildKit's `defaultArgs`: `--target` as given (stage names are matched in
    // any case), else the last stage's name, else `default`. (v0.8 had no TARGETSTAGE.)
    let target_stage = match target {
        Some(given) => given.to_owned(),
        None => dockerfile.stages[target_index]
            .name
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
    };
    global_args.insert("TARGETSTAGE".into(), target_stage);
    for command in &dockerfile.meta_args {
        let Instruction::Arg(decls) = &command.instruction else {
            continue;
        };
        for decl in decls {
            let value = match (build_args.get(&decl.key), &decl.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => {
                    Some(lexer.process_word(default, &global_args).map_err(|e| {
                        located(&file, command.location, format!("ARG {}: {e}", decl.key))
                    })?)
                }
                (None, None) => None,
            };
            if let Some(value) = value {
                global_args.insert(decl.key.clone(), value);
            }
        }
    }

    build_on_local_contexts(&mut dockerfile, &lexer, &global_args, named_contexts);
    let stages = &dockerfile.stages;
    let mut resolved = Vec::with_capacity(stages.len());
    for stage in stages {
        resolved.push(resolve_stage(
            &file,
            stage,
            stages,
            &lexer,
            &global_args,
            named_contexts,
        )?);
    }
    check_order_and_cycles(&file, stages, &resolved)?;

    let needed = needed_stages(&resolved, target_index);
    let unused_build_args = unused_build_args(&dockerfile, &needed, build_args);

    Ok(BuildGraph {
        global_args,
        build_args: build_args.clone(),
        stages: resolved,
        target: target_index,
        needed,
        unused_build_args,
        dockerfile,
        named_contexts: named_contexts.clone(),
    })
}

/// The `--build-arg`s no ARG declares, before the first FROM or in a needed stage.
fn unused_build_args(
    dockerfile: &Dockerfile,
    needed: &[usize],
    build_args: &BTreeMap<String, String>,
) -> Vec<String> {
    let commands = needed
        .iter()
        .flat_map(|&i| &dockerfile.stages[i].commands)
        .chain(&dockerfile.meta_args);
    let mut declared: BTreeSet<&str> = BTreeSet::new();
    for command in commands {
        if let Instruction::Arg(decls) = &command.instruction {
            declared.extend(decls.iter().map(|d| d.key.as_str()));
        }
    }
    build_args
        .keys()
        .filter(|k| !declared.contains(k.as_str()) && !PREDEFINED_ARGS.contains(&k.as_str()))
        .cloned()
        .collect()
}

impl BuildGraph {
    /// Takes in the ONBUILD triggers of stage `index`'s base image, known once the image is
    /// pulled: the stages and images they copy or mount from become the stage's, and the
    /// stages they need are built too. Current BuildKit does so (`resolveStages` loops
    /// until triggers add nothing; its testOnBuildNewDeps); v0.8 dispatched only the
    /// stages reachable before and copied from the bare base of such a stage. Returns
    /// whether the build now needs a stage or image it did not.
    pub fn add_base_image_triggers(
        &mut self,
        index: usize,
        triggers: &[String],
    ) -> Result<bool, Error> {
        let file = &self.dockerfile.file;
        let stages = &self.dockerfile.stages;
        let at = stages[index].location;
        let mut stage_deps = self.stages[index].stage_deps.clone();
        let mut image_sources = self.stages[index].image_sources.clone();
        for trigger in triggers {
            let command = parse_trigger(file, trigger, at)?;
            add_sources(
                file,
                stages,
                &self.named_contexts,
                &command,
                &mut stage_deps,
                &mut image_sources,
            )?;
        }
        // As in BuildKit, a stage copies only from stages dispatched before it: with every
        // dependency earlier in the file, no cycle can form.
        if let Some(&dep) = stage_deps.iter().find(|&&dep| dep >= index) {
            let (here, there) = (stages[index].display_name(), stages[dep].display_name());
            let message = if dep == index {
                format!(
                    "circular dependency between stages: an ONBUILD trigger of the base image \
                     of `{here}` uses `{here}` itself"
                )
            } else {
                format!(
                    "an ONBUILD trigger of the base image of `{here}` copies from stage \
                     `{there}`, which is defined after it; define `{there}` first"
                )
            };
            return Err(located(file, at, message));
        }
        let resolved = &mut self.stages[index];
        let changed = stage_deps != resolved.stage_deps || image_sources != resolved.image_sources;
        resolved.stage_deps = stage_deps;
        resolved.image_sources = image_sources;
        self.needed = needed_stages(&self.stages, self.target);
        self.unused_build_args =
            unused_build_args(&self.dockerfile, &self.needed, &self.build_args);
        Ok(changed)
    }
}

fn located(file: &str, at: Location, message: impl Into<String>) -> Error {
    Error::new(file, message).at(at.line, Some(at.column))
}

/// How a `--build-context NAME=oci-layout://…` names its image: this prefix, the layout's
/// absolute path, and `:TAG` when one was given.
pub const OCI_LAYOUT_PREFIX: &str = "oci-layout://";

/// `NAME: why it is not an image reference`, for a name that does not parse as one.
fn check_reference(name: &str) -> Result<(), String> {
    if name.starts_with(OCI_LAYOUT_PREFIX) {
        return Ok(());
    }
    crate::registry::reference::Reference::parse(name)
        .map(|_| ())
        .map_err(|e| format!("{name}: {e}"))
}

fn stage_names(stages: &[Stage]) -> Vec<&str> {
    stages.iter().filter_map(|s| s.name.as_deref()).collect()
}

fn find_target(dockerfile: &Dockerfile, target: Option<&str>) -> Result<usize, Error> {
    let stages = &dockerfile.stages;
    let Some(target) = target else {
        return Ok(stages.len() - 1);
    };
    let wanted = target.to_lowercase();
    if let Some(stage) = stages
        .iter()
        .find(|s| s.name.as_deref() == Some(wanted.as_str()))
    {
        return Ok(stage.index);
    }
    let names = stage_names(stages);
    let mut message = format!("--target {target}: no stage named `{target}`");
    if let Some(near) = closest(&wanted, &names) {
        message.push_str(&format!(" (did you mean `{near}`?)"));
    }
    let hint = if names.is_empty() {
        "no stage has a name; name one with `FROM image AS name`".to_owned()
    } else {
        format!("stages are: {}", names.join(", "))
    };
    Err(Error::new(dockerfile.file.clone(), message).with_hint(hint))
}

fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2 && *d < c.len())
        .min()
        .map(|(_, c)| c)
}

fn resolve_stage(
    file: &str,
    stage: &Stage,
    stages: &[Stage],
    lexer: &Lexer,
    global_args: &BTreeMap<String, String>,
    named_contexts: &BTreeMap<String, NamedContext>,
) -> Result<ResolvedStage, Error> {
    let at = stage.location;
    let base_name = lexer
        .process_word(&stage.base, global_args)
        .map_err(|e| located(file, at, format!("FROM {}: {e}", stage.base)))?;
    if base_name.is_empty() {
        return Err(located(
            file,
            at,
            format!(
                "FROM {}: the base name is empty after expanding variables",
                stage.base
            ),
        )
        .with_hint("give the ARG a default before the first FROM, or pass --build-arg"));
    }
    // A base names an earlier stage, as in BuildKit; later stages are not visible to FROM.
    let lower = base_name.to_lowercase();
    // (A base that names a directory context was made `FROM scratch` + a COPY of it.)
    let base = if let Some(earlier) = stages[..stage.index]
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        Base::Stage(earlier.index)
    } else if lower == "scratch" {
        Base::Scratch
    } else if let Some(NamedContext::Image(image)) = named_context(named_contexts, &base_name) {
        Base::Image(image.clone())
    } else {
        // A name that is no image reference is the Dockerfile's error, found before any
        // engine or registry is asked (BuildKit: "failed to parse stage name").
        check_reference(&base_name).map_err(|e| located(file, at, format!("FROM {e}")))?;
        Base::Image(base_name)
    };
    let platform = match &stage.platform {
        None => None,
        Some(raw) => {
            let expanded = lexer
                .process_word(raw, global_args)
                .map_err(|e| located(file, at, format!("FROM --platform={raw}: {e}")))?;
            Some(
                expanded
                    .parse::<Platform>()
                    .map_err(|e| located(file, at, format!("FROM --platform={raw}: {e}")))?,
            )
        }
    };
    let mut stage_deps = BTreeSet::new();
    // The ONBUILD triggers of a base stage run first in this one, and may copy from stages
    // or images of their own (BuildKit's testOnBuildInheritedStageWithFrom).
    let mut triggers = Vec::new();
    if let Base::Stage(i) = base {
        stage_deps.insert(i);
        for command in &stages[i].commands {
            if let Instruction::Onbuild(trigger) = &command.instruction {
                triggers.push(parse_trigger(file, trigger, at)?);
            }
        }
    }
    let mut image_sources = Vec::new();
    for command in triggers.iter().chain(&stage.commands) {
        add_sources(
            file,
            stages,
            named_contexts,
            command,
            &mut stage_deps,
            &mut image_sources,
        )?;
    }
    Ok(ResolvedStage {
        index: stage.index,
        base,
        platform,
        stage_deps,
        image_sources,
    })
}

/// Adds the stages and images `command`'s `--from`s name to `stage_deps` and
/// `image_sources`.
fn add_sources(
    file: &str,
    stages: &[Stage],
    named_contexts: &BTreeMap<String, NamedContext>,
    command: &Command,
    stage_deps: &mut BTreeSet<usize>,
    image_sources: &mut Vec<String>,
) -> Result<(), Error> {
    for from in sources_of(command) {
        match resolve_source(stages, named_contexts, from)
            .map_err(|e| located(file, command.location, e))?
        {
            Source::Stage(i) => {
                stage_deps.insert(i);
            }
            Source::Local(_) => {}
            Source::Image(image) => {
                check_not_a_typo(file, command, &image, stages)?;
                check_reference(&image)
                    .map_err(|e| located(file, command.location, format!("--from={e}")))?;
                if !image_sources.contains(&image) {
                    image_sources.push(image);
                }
            }
        }
    }
    Ok(())
}

/// The `--from` values of a command: COPY's flag and RUN's mounts.
/// The `--from` values of a command: a COPY's, and its RUN's bind and cache mounts'.
pub fn sources_of(command: &Command) -> Vec<&str> {
    match &command.instruction {
        Instruction::Copy(copy) => copy.from.as_deref().into_iter().collect(),
        Instruction::Run(run) => run
            .mounts
            .iter()
            .filter(|m| matches!(m.kind, MountKind::Bind | MountKind::Cache))
            .filter_map(|m| m.from.as_deref())
            .collect(),
        _ => Vec::new(),
    }
}

/// A `--from` value: a stage index, a stage name (any stage, as BuildKit looks them up), or an
/// image. Variables are not expanded in `--from`, as in BuildKit.
fn resolve_source(
    stages: &[Stage],
    named_contexts: &BTreeMap<String, NamedContext>,
    from: &str,
) -> Result<Source, String> {
    if from.contains('$') {
        return Err(format!(
            "--from={from}: variables are not expanded in --from; define a stage with `FROM ${{ARG}} AS name` using a global ARG and copy from that"
        ));
    }
    if let Ok(index) = from.parse::<usize>() {
        return if index < stages.len() {
            Ok(Source::Stage(index))
        } else {
            Err(format!(
                "--from={from}: invalid stage index {index}; the Dockerfile has {} stages (0 to {})",
                stages.len(),
                stages.len() - 1
            ))
        };
    }
    let lower = from.to_lowercase();
    match stages
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        Some(stage) => Ok(match named_contexts.get(&lower) {
            Some(NamedContext::Local(_)) => Source::Local(lower),
            _ => Source::Stage(stage.index),
        }),
        None => Ok(match named_context(named_contexts, from) {
            Some(NamedContext::Image(image)) => Source::Image(image.clone()),
            Some(NamedContext::Local(_)) => Source::Local(from.to_lowercase()),
            None => Source::Image(from.to_owned()),
        }),
    }
}

/// `COPY --from=buld` where a stage `build` exists is almost surely a typo: say so now
/// instead of failing later on a registry lookup of an image called `buld`.
fn check_not_a_typo(
    file: &str,
    command: &Command,
    image: &str,
    stages: &[Stage],
) -> Result<(), Error> {
    let plain_word = !image.contains(['/', ':', '@', '.']);
    let names = stage_names(stages);
    if !plain_word || names.is_empty() {
        return Ok(());
    }
    let lower = image.to_lowercase();
    if let Some(near) = closest(&lower, &names) {
        return Err(located(
            file,
            command.location,
            format!(
                "{} --from={image}: no stage or image named `{image}` (did you mean `{near}`?)",
                command.instruction.keyword()
            ),
        )
        .with_hint(format!("stages are: {}", names.join(", "))));
    }
    Ok(())
}

/// A stage may only use stages defined before it (BuildKit dispatches in file order); a
/// reference to itself or a later stage is a cycle or an ordering error, reported as such.
fn check_order_and_cycles(
    file: &str,
    stages: &[Stage],
    resolved: &[ResolvedStage],
) -> Result<(), Error> {
    for stage in resolved {
        for &dep in &stage.stage_deps {
            if dep < stage.index {
                continue;
            }
            let here = &stages[stage.index];
            let there = &stages[dep];
            let command = here.commands.iter().find(|c| {
                sources_of(c)
                    .iter()
                    .any(|f| matches!(resolve_source(stages, &BTreeMap::new(), f), Ok(Source::Stage(i)) if i == dep))
            });
            let at = command.map_or(here.location, |c| c.location);
            let message = if dep == stage.index || reaches(resolved, dep, stage.index) {
                format!(
                    "circular dependency between stages: `{}` uses `{}`, which needs `{}`",
                    here.display_name(),
                    there.display_name(),
                    here.display_name()
                )
            } else {
                format!(
                    "stage `{}` copies from stage `{}`, which is defined after it; define `{}` first",
                    here.display_name(),
                    there.display_name(),
                    there.display_name()
                )
            };
            return Err(located(file, at, message));
        }
    }
    Ok(())
}

/// Whether stage `from` needs stage `to`, directly or not.
fn reaches(resolved: &[ResolvedStage], from: usize, to: usize) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(i) = stack.pop() {
        if i == to {
            return true;
        }
        if seen.insert(i) {
            stack.extend(resolved[i].stage_deps.iter().copied());
        }
    }
    false
}

/// The stages `target` needs, in file order (which is dependency order once
/// [`check_order_and_cycles`] has passed).
fn needed_stages(resolved: &[ResolvedStage], target: usize) -> Vec<usize> {
    let mut needed = BTreeSet::new();
    let mut stack = vec![target];
    while let Some(i) = stack.pop() {
        if needed.insert(i) {
            stack.extend(resolved[i].stage_deps.iter().copied());
        }
    }
    needed.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::{instructions, parse_dockerfile};

    fn graph_with(
        text: &str,
        args: &[(&str, &str)],
        target: Option<&str>,
    ) -> Result<BuildGraph, Error> {
        let ast = parse_dockerfile("Dockerfile", text.as_bytes())?;
        let dockerfile = instructions::from_ast("Dockerfile", &ast)?;
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(dockerfile, &args, target, &Platform::linux_amd64())
    }

    fn graph(text: &str) -> BuildGraph {
        graph_with(text, &[], None).unwrap()
    }

    fn error(text: &str, target: Option<&str>) -> String {
        let e = graph_with(text, &[], target).unwrap_err();
        match &e.hint {
            Some(h) => format!("{e} | hint: {h}"),
            None => e.to_string(),
        }
    }

    #[test]
    fn global_args_reach_from_lines() {
        let g = graph_with(
            "ARG BASE=debian\nARG TAG=bookworm\nFROM ${BASE}:${TAG}-slim AS app\n",
            &[("TAG", "trixie")],
            None,
        )
        .unwrap();
        assert_eq!(g.stages[0].base, Base::Image("debian:trixie-slim".into()));
        assert_eq!(
            g.global_args.get("BASE").map(String::as_str),
            Some("debian")
        );
        assert_eq!(
            g.global_args.get("TARGETARCH").map(String::as_str),
            Some("amd64")
        );
    }

    #[test]
    fn targetstage_is_the_target_as_given_or_the_last_stages_name_or_default() {
        let text = "FROM a AS Foo\nFROM b AS last\n";
        let stage = |text: &str, target: Option<&str>| {
            graph_with(text, &[], target).unwrap().global_args["TARGETSTAGE"].clone()
        };
        assert_eq!(stage(text, Some("FOO")), "FOO");
        assert_eq!(stage(text, None), "last");
        assert_eq!(stage("FROM a\n", None), "default");
    }

    #[test]
    fn platform_args_are_predefined() {
        let g = graph("FROM --platform=$BUILDPLATFORM busybox AS b\nFROM b\n");
        assert_eq!(g.stages[0].platform, Some(Platform::linux_amd64()));
        assert_eq!(g.stages[1].base, Base::Stage(0));
        assert_eq!(graph("FROM scratch\n").stages[0].base, Base::Scratch);
    }

    #[test]
    fn target_prunes_unneeded_stages() {
        let text = "FROM a AS deps\nFROM b AS unrelated\nFROM deps AS build\nCOPY --from=unrelated /x /x\nFROM c AS app\nCOPY --from=build /r /r\nFROM d AS test\n";
        let g = graph_with(text, &[], Some("app")).unwrap();
        assert_eq!(g.target, 3);
        assert_eq!(g.needed, [0, 1, 2, 3]);
        let g = graph_with(text, &[], Some("BUILD")).unwrap();
        assert_eq!(g.needed, [0, 1, 2]);
        assert_eq!(graph(text).needed, [4]);
    }

    #[test]
    fn from_sources_resolve_to_stages_indices_or_images() {
        let g = graph(
            "FROM a AS one\nFROM b\nCOPY --from=0 /a /a\nCOPY --from=ONE /b /b\nCOPY --from=nginx:1.25 /c /c\nRUN --mount=type=bind,from=one,target=/m true\n",
        );
        assert_eq!(g.stages[1].stage_deps, BTreeSet::from([0]));
        assert_eq!(g.stages[1].image_sources, ["nginx:1.25"]);
    }

    #[test]
    fn a_base_stages_onbuild_sources_are_needed_by_the_stage_built_on_it() {
        let g = graph(
            "FROM a AS src\nFROM b AS base\nONBUILD COPY --from=src /x /x\nONBUILD COPY --from=img:1 /y /y\nFROM base\n",
        );
        // The ONBUILD runs in the last stage, not in `base`.
        assert_eq!(g.stages[1].stage_deps, BTreeSet::new());
        assert_eq!(g.stages[2].stage_deps, BTreeSet::from([0, 1]));
        assert_eq!(g.stages[2].image_sources, ["img:1"]);
        assert_eq!(g.needed, [0, 1, 2]);
    }

    #[test]
    fn a_base_images_triggers_bring_in_the_stages_and_images_they_use() {
        let text = "FROM a AS input\nARG USED\nFROM b AS unused\nFROM c AS other\nFROM onbuild:1\n";
        let mut g = graph_with(text, &[("USED", "1")], None).unwrap();
        assert_eq!(g.needed, [3]);
        assert_eq!(g.unused_build_args, ["USED"]);
        let triggers = [
            "RUN --mount=type=bind,from=input,target=/in cat /in/x".to_owned(),
            "COPY --from=tools:2 /t /t".to_owned(),
        ];
        assert!(g.add_base_image_triggers(3, &triggers).unwrap());
        assert_eq!(g.stages[3].stage_deps, BTreeSet::from([0]));
        assert_eq!(g.stages[3].image_sources, ["tools:2"]);
        assert_eq!(g.needed, [0, 3]);
        assert_eq!(g.unused_build_args, Vec::<String>::new());
        // The same triggers again add nothing: the executor's loop ends.
        assert!(!g.add_base_image_triggers(3, &triggers).unwrap());
    }

    #[test]
    fn a_base_images_trigger_may_only_use_earlier_stages() {
        // As BuildKit's "needs to be defined before current stage" (testOutOfOrderStage).
        let mut g = graph("FROM onbuild:1 AS a\nFROM x AS b\nCOPY --from=a /x /x\n");
        let error = g
            .add_base_image_triggers(0, &["COPY --from=b /y /y".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("Dockerfile:1:1: an ONBUILD trigger of the base image of `a` copies from stage `b`, which is defined after it"),
            "{error}"
        );
        let error = g
            .add_base_image_triggers(0, &["COPY --from=a /y /y".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("circular dependency"), "{error}");
        let error = g
            .add_base_image_triggers(0, &["FROM x".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not allowed as a trigger"), "{error}");
    }

    #[test]
    fn errors_say_what_to_do() {
        let two = "FROM a AS build\nFROM b AS app\nCOPY --from=buld /x /x\n";
        assert_eq!(
            error(two, None),
            "Dockerfile:3:1: COPY --from=buld: no stage or image named `buld` (did you mean `build`?) | hint: stages are: build, app"
        );
        assert_eq!(
            error(two.replace("buld", "build").as_str(), Some("ap")),
            "Dockerfile: --target ap: no stage named `ap` (did you mean `app`?) | hint: stages are: build, app"
        );
        assert!(error("FROM a AS x\nCOPY --from=x /a /a\n", None).contains("circular dependency"));
        assert!(
            error(
                "FROM a AS x\nCOPY --from=y /a /a\nFROM b AS y\nCOPY --from=x /b /b\n",
                None
            )
            .contains("circular dependency")
        );
        assert!(
            error("FROM a AS x\nCOPY --from=y /a /a\nFROM b AS y\n", None)
                .contains("defined after it")
        );
        assert!(error("FROM a\nCOPY --from=5 /a /a\n", None).contains("invalid stage index 5"));
        assert!(
            error("FROM a\nCOPY --from=$X /a /a\n", None)
                .contains("variables are not expanded in --from")
        );
        assert!(error("ARG B\nFROM $B\n", None).contains("empty after expanding"));
        assert!(error("FROM a AS x\nFROM b AS X\n", None).contains("duplicate stage name"));
    }

    #[test]
    fn names_that_are_no_image_reference_are_located_errors() {
        let base = error("FROM a\0b\nRUN true\n", None);
        assert!(base.starts_with("Dockerfile:1:1: FROM a\0b: "), "{base}");
        let upper = error("FROM x\nFROM Debian:12\n", None);
        assert!(
            upper.starts_with("Dockerfile:2:1: FROM Debian:12: "),
            "{upper}"
        );
        let from = error("FROM a\nCOPY --from=bad@sha256:xyz /a /a\n", None);
        assert!(
            from.starts_with("Dockerfile:2:1: --from=bad@sha256:xyz: "),
            "{from}"
        );
        // Names that are references still resolve; stages are not references.
        graph("FROM a AS Build\nFROM build\nCOPY --from=localhost:5000/x/y:1 /a /a\n");
    }

    #[test]
    fn unused_build_args_are_reported() {
        let g = graph_with(
            "ARG USED\nFROM a\nARG IN_STAGE\n",
            &[
                ("USED", "1"),
                ("IN_STAGE", "2"),
                ("UNUSED", "3"),
                ("HTTP_PROXY", "p"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(g.unused_build_args, ["UNUSED"]);
    }
}
