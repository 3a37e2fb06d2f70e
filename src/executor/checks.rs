//! What the checks ([`crate::check`]) need of a finished build, gathered from the plan
//! while the builder is at hand, then run on a blocking thread beside the publish.

use std::path::PathBuf;
use std::sync::Arc;

use super::Builder;
use crate::check::{self, Finding, Skips};
use crate::frontend::instructions::Instruction;
use crate::frontend::stages::Base;
use crate::mix::Project;
use crate::oci::Image;
use crate::plan::dispatch::{CopyFrom, ImageConfig, SecretName, StepKind};

/// Everything the checks read, owned, so they can run while the image is published.
pub struct CheckInputs {
    config: ImageConfig,
    origins: Vec<String>,
    dockerfile: String,
    stage_line: usize,
    secret_names: Vec<SecretName>,
    /// The release's lines and project, when a stage built runs `mix release`.
    release: Option<ReleaseInputs>,
    skips: Skips,
    cache_dir: PathBuf,
}

struct ReleaseInputs {
    project: Option<Project>,
    user_line: Option<usize>,
    locale_line: Option<usize>,
}

impl CheckInputs {
    pub(super) fn gather(builder: &Builder, image: &dyn Image) -> anyhow::Result<CheckInputs> {
        let graph = &builder.graph;
        let target = graph.target;
        let plan = builder.plan(target)?;
        let mut secret_names = Vec::new();
        let mut runs_release = false;
        for &index in &graph.needed {
            let stage_plan = builder.plan(index)?;
            secret_names.extend(stage_plan.secret_names.iter().cloned());
            runs_release |= stage_plan.steps.iter().any(|step| {
                matches!(&step.kind, StepKind::Run(run) if run.argv.iter().any(|arg| arg.contains("mix release")))
            });
        }
        let file = &graph.dockerfile.file;
        let dockerfile = file.strip_prefix("./").unwrap_or(file).to_owned();
        let stage = graph.stage(target);
        let release = match runs_release {
            false => None,
            true => Some(ReleaseInputs {
                project: Project::detect(&builder.request.context).ok().flatten(),
                user_line: stage
                    .commands
                    .iter()
                    .rfind(|c| matches!(c.instruction, Instruction::User(_)))
                    .map(|c| c.location.line),
                locale_line: stage
                    .commands
                    .iter()
                    .rfind(|c| matches!(&c.instruction, Instruction::Env(pairs) if pairs.iter().any(|kv| kv.key == "LANG" || kv.key == "LC_ALL")))
                    .map(|c| c.location.line),
            }),
        };
        Ok(CheckInputs {
            origins: layer_origins(builder, image)?,
            config: plan.config,
            dockerfile,
            stage_line: stage.location.line,
            secret_names,
            release,
            skips: Skips::parse(graph.dockerfile.check.as_deref()),
            cache_dir: builder.request.cache_dir.clone(),
        })
    }

    pub fn run(self, image: Arc<dyn Image>) -> anyhow::Result<Vec<Finding>> {
        let release = self.release.as_ref().map(|r| check::elixir::Release {
            project: r.project.as_ref(),
            config: &self.config,
            dockerfile: &self.dockerfile,
            stage_line: self.stage_line,
            user_line: r.user_line,
            locale_line: r.locale_line,
        });
        let subject = check::Subject {
            image: &*image,
            config: &self.config,
            origins: self.origins.clone(),
            dockerfile: &self.dockerfile,
            stage_line: self.stage_line,
            secret_names: self.secret_names.clone(),
            release,
            skips: self.skips.clone(),
        };
        check::run(&subject, &self.cache_dir)
    }
}

/// Where each layer of the final image came from: its base, or the step that wrote it.
fn layer_origins(builder: &Builder, image: &dyn Image) -> anyhow::Result<Vec<String>> {
    let graph = &builder.graph;
    let plan = builder.plan(graph.target)?;
    let base_of = |index: usize| match &graph.stages[index].base {
        Base::Image(name) => format!("the image {name}"),
        Base::Stage(i) => format!("stage {}", graph.stage(*i).display_name()),
        Base::Scratch => "scratch".to_owned(),
    };
    let written: Vec<String> = plan
        .steps
        .iter()
        .filter(|step| {
            plan.history
                .get(step.history)
                .is_some_and(|h| !h.empty_layer)
        })
        .map(|step| {
            let mut origin = format!("added by `{}` on line {}", step.display, step.location.line);
            if let StepKind::Copy(copy) = &step.kind
                && let CopyFrom::Stage(from) = copy.from
            {
                origin.push_str(&format!(", built on {}", base_of(from)));
            }
            origin
        })
        .collect();
    let base_layers = image.layers().len().saturating_sub(written.len());
    let base = format!("from {}", base_of(graph.target));
    Ok(std::iter::repeat_n(base, base_layers)
        .chain(written)
        .collect())
}
