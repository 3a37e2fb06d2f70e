//! Between the config a Dockerfile manipulates ([`plan::dispatch::ImageConfig`]), the
//! image config document ([`oci::ImageConfig`], which keeps fields imgbuild does not model)
//! and what a commit in the engine takes ([`engine::ImageConfig`]).

use crate::engine;
use crate::frontend::instructions::Healthcheck;
use crate::oci;
use crate::plan::dispatch::{HISTORY_COMMENT, History, ImageConfig};

/// The Dockerfile's view of an image config document.
pub fn from_oci(config: &oci::ImageConfig) -> ImageConfig {
    ImageConfig {
        env: config.env(),
        cmd: config.cmd(),
        entrypoint: config.entrypoint(),
        working_dir: config.working_dir().unwrap_or_default(),
        user: config.user().unwrap_or_default(),
        shell: config.shell(),
        labels: config.labels(),
        exposed_ports: config.exposed_ports().into_iter().collect(),
        volumes: config.volumes().into_iter().collect(),
        stop_signal: config.stop_signal(),
        healthcheck: config.healthcheck().map(|h| Healthcheck {
            test: h.test,
            interval: nanos(h.interval),
            timeout: nanos(h.timeout),
            start_period: nanos(h.start_period),
            start_interval: nanos(h.start_interval),
            retries: u32::try_from(h.retries).ok().filter(|r| *r > 0),
        }),
        on_build: config.on_build(),
        author: config
            .as_json()
            .get("author")
            .and_then(|a| a.as_str())
            .map(str::to_owned),
        args_escaped: false,
    }
}

fn nanos(n: i64) -> Option<std::time::Duration> {
    u64::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .map(std::time::Duration::from_nanos)
}

fn to_nanos(d: Option<std::time::Duration>) -> i64 {
    d.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Writes the Dockerfile's view into a config document (the base image's, so fields
/// imgbuild does not model survive), with the stage's history entries appended.
pub fn apply_to_oci(
    config: &ImageConfig,
    history: &[History],
    doc: &mut oci::ImageConfig,
) -> anyhow::Result<()> {
    doc.set_env(config.env.clone());
    doc.set_cmd(config.cmd.clone());
    doc.set_entrypoint(config.entrypoint.clone());
    doc.set_working_dir(Some(config.working_dir.clone()).filter(|w| !w.is_empty()));
    doc.set_user(Some(config.user.clone()).filter(|u| !u.is_empty()));
    doc.set_shell(config.shell.clone());
    for (k, v) in &config.labels {
        doc.set_label(k, v);
    }
    for port in &config.exposed_ports {
        doc.add_exposed_port(port);
    }
    for volume in &config.volumes {
        doc.add_volume(volume);
    }
    doc.set_stop_signal(config.stop_signal.clone());
    doc.set_healthcheck(config.healthcheck.as_ref().map(|h| oci::Healthcheck {
        test: h.test.clone(),
        interval: to_nanos(h.interval),
        timeout: to_nanos(h.timeout),
        start_period: to_nanos(h.start_period),
        start_interval: to_nanos(h.start_interval),
        retries: h.retries.map_or(0, i64::from),
    }));
    doc.set_on_build(config.on_build.clone());
    if let Some(author) = &config.author {
        doc.set_author(author);
    }
    if config.args_escaped {
        doc.set_args_escaped(true);
    }
    for entry in history {
        doc.push_history_with_comment(&entry.created_by, entry.empty_layer, HISTORY_COMMENT)?;
    }
    Ok(())
}

/// What a step's engine image carries: the ENV, USER and WORKDIR of the config as that step
/// sees it. Nothing else: the image a build makes gets its config from the plan, and a
/// VOLUME in an engine image would make the engine discard what later RUN steps write
/// there, which BuildKit keeps.
pub fn to_engine(config: &ImageConfig) -> engine::ImageConfig {
    engine::ImageConfig {
        env: config.env.clone(),
        workdir: config.working_dir.clone(),
        user: config.user.clone(),
        ..engine::ImageConfig::default()
    }
}
