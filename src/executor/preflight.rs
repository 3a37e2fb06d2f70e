//! The checks made before the first step runs, on every needed stage's dispatched steps:
//! everything imgbuild refuses, or the command line does not allow, is reported then,
//! naming the Dockerfile line. A build never runs some steps
//! and then stops at a feature it could have refused at the start.

use super::{Builder, mounts};
use crate::error::InputError;
use crate::frontend::instructions::MountKind;
use crate::frontend::stages::{Base, Source};
use crate::plan::dispatch::{RunStep, Step, StepKind};
use crate::request::Entitlement;

impl Builder {
    /// Checks the RUN steps of every needed stage (all dispatched by then); the first
    /// refusal is the error.
    pub(super) fn preflight(&self) -> anyhow::Result<()> {
        for &index in &self.graph.needed {
            let plan = self.plan(index)?;
            if let Some(run) = plan
                .steps
                .iter()
                .find(|step| matches!(step.kind, StepKind::Run(_)))
            {
                self.check_emulation(index, run)?;
            }
            for step in &plan.steps {
                if let StepKind::Run(run) = &step.kind {
                    self.check_run(index, step, run)?;
                }
            }
        }
        Ok(())
    }

    /// Whether the steps run on this machine: natively, or on an engine on a unix socket
    /// (the one this build connected, which `--engine-for` may have named).
    pub(super) fn steps_run_here(&self) -> bool {
        self.native.is_some()
            || self
                .engine
                .as_ref()
                .is_none_or(|engine| !engine.address().is_remote())
    }

    /// A stage whose image is for another architecture runs its RUN steps under this
    /// kernel's emulation (binfmt_misc), or not at all: never as this machine's programs.
    /// A remote engine's machine is its own business.
    fn check_emulation(&self, stage: usize, step: &Step) -> anyhow::Result<()> {
        if !self.steps_run_here() {
            return Ok(());
        }
        let Some((architecture, image)) = self.stage_architecture(stage) else {
            return Ok(());
        };
        let Err(why) = crate::runtime::emulation::can_run(&architecture) else {
            return Ok(());
        };
        Err(InputError::new(format!(
            "{}:{}: {}: the stage runs on the image {image}, built for {architecture}, and this machine ({}) cannot run its programs: {why}",
            self.graph.dockerfile.file,
            step.location.line,
            step.display,
            crate::runtime::emulation::host_architecture(),
        ))
        .with_hint(
            "install qemu-user-static, whose handlers Debian registers (in a container, mount binfmt_misc first), or run the stage on the build platform (FROM --platform=$BUILDPLATFORM) and cross-compile",
        )
        .into())
    }

    /// The architecture of the image a stage starts from (through the stages it is built
    /// on), and that image's name; `None` for `FROM scratch` or an image that says none.
    fn stage_architecture(&self, stage: usize) -> Option<(String, String)> {
        match &self.graph.stages[stage].base {
            Base::Image(name) => {
                let config = &self.pulled_image(name).ok()?.config;
                Some((config.architecture()?.to_owned(), name.clone()))
            }
            Base::Stage(base) => self.stage_architecture(*base),
            Base::Scratch => None,
        }
    }

    fn check_run(&self, stage: usize, step: &Step, run: &RunStep) -> anyhow::Result<()> {
        let at = format!("{}:{}", self.graph.dockerfile.file, step.location.line);
        let refuse = |message: String, hint: &str| -> anyhow::Result<()> {
            Err(InputError::new(format!("{at}: {message}"))
                .with_hint(hint)
                .into())
        };
        let allowed = |e| self.request.allow.contains(&e);
        if run.network.as_deref() == Some("host") && !allowed(Entitlement::NetworkHost) {
            return refuse(
                "RUN --network=host needs the network.host entitlement, which this build was not given".into(),
                "pass --allow network.host (or --network host), as with docker buildx build --allow network.host",
            );
        }
        if run.security.as_deref() == Some("insecure") && !allowed(Entitlement::SecurityInsecure) {
            return refuse(
                "RUN --security=insecure needs the security.insecure entitlement, which this build was not given".into(),
                "pass --allow security.insecure to run this step in a privileged container",
            );
        }
        for mount in &run.mounts {
            // The native executor mounts this machine's files itself.
            let local = self.steps_run_here();
            let ssh_id = mount.id.as_deref().unwrap_or(mounts::DEFAULT_SSH_ID);
            let ssh_given = self.request.ssh.contains_key(ssh_id);
            match mount.kind {
                MountKind::Ssh if mount.required && !ssh_given => {
                    return refuse(
                        format!("RUN --mount=type=ssh,required: no --ssh {ssh_id} was given"),
                        &format!(
                            "pass --ssh {ssh_id} to forward your ssh-agent ($SSH_AUTH_SOCK), or --ssh {ssh_id}=SOCKET"
                        ),
                    );
                }
                MountKind::Secret if mount.required => {
                    let id = mounts::secret_id(mount);
                    if !self.request.secrets.contains_key(&id) {
                        return refuse(
                            format!(
                                "RUN --mount=type=secret,id={id},required: no secret `{id}` was given"
                            ),
                            &format!("pass --secret id={id},src=FILE or --secret id={id},env=VAR"),
                        );
                    }
                }
                // A forwarded agent's socket, like the mounts' directories, is on this
                // machine; an ssh mount without --ssh is left out.
                MountKind::Cache | MountKind::Bind | MountKind::Secret | MountKind::Ssh
                    if !local && (mount.kind != MountKind::Ssh || ssh_given) =>
                {
                    return refuse(
                        format!(
                            "RUN --mount={}: the Docker engine is not on this machine (its address is not a unix socket), and the mount is a file of this machine",
                            kind_name(mount.kind)
                        ),
                        "build with --executor native (steps run here, the image goes to the engine), a local engine, or drop the mount",
                    );
                }
                _ => {}
            }
            let Some(from) = &mount.from else {
                if mount.kind == MountKind::Bind {
                    let source = mount.source.as_deref().unwrap_or(".");
                    if let Err(e) = mounts::context_path(self.context.root(), source) {
                        return refuse(
                            format!("RUN --mount=type=bind,source={source}: {e}"),
                            "bind mounts without from= show the build context; check the path and .dockerignore",
                        );
                    }
                    let rel = source.trim_start_matches("./").trim_matches('/');
                    if !matches!(rel, "" | ".") && self.context.excludes(rel) {
                        return refuse(
                            format!(
                                "RUN --mount=type=bind,source={source}: excluded by .dockerignore"
                            ),
                            "a bind mount shows the build context as .dockerignore leaves it, as COPY sees it; mount a path it keeps, or stop excluding it",
                        );
                    }
                }
                continue;
            };
            let source = self.graph.resolve_from(from);
            if let Source::Local(name) = source {
                return refuse(
                    format!(
                        "RUN --mount from={name}: a directory given by --build-context cannot be mounted yet"
                    ),
                    "COPY --from it into the stage first, or mount the build context (no from=)",
                );
            }
            if let Source::Stage(i) = source
                && i >= stage
            {
                return refuse(
                    format!("RUN --mount from={from}: the stage is defined after this one"),
                    "a RUN can mount only stages defined before its own",
                );
            }
        }
        Ok(())
    }
}

fn kind_name(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Bind => "type=bind",
        MountKind::Cache => "type=cache",
        MountKind::Tmpfs => "type=tmpfs",
        MountKind::Secret => "type=secret",
        MountKind::Ssh => "type=ssh",
    }
}
