//! The executor's side of `--cache-from` and `--cache-to` ([`crate::cache::remote`]): the
//! journal of the steps a build used, cache mounts restored on a fresh machine before a
//! RUN that uses them runs, and the export, which takes the layers of the steps that ran
//! here out of the engine (or writes the native executor's snapshots as layers) and
//! snapshots the cache mounts.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::{Builder, lock, mounts};
use crate::cache::remote::{
    self, CacheExport, CacheMode, CachedMount, UsedResult, UsedStep, is_empty_dir,
};
use crate::frontend::instructions::MountKind;
use crate::plan::dispatch::{self, RunStep, Step};
use crate::progress::VertexId;

/// The steps a build used and its cache mounts, ready to be written to a cache.
pub(super) struct PreparedExport {
    pub used: Vec<UsedStep>,
    pub mounts: Vec<CachedMount>,
}

impl PreparedExport {
    /// Adds what another platform's build used: a step or cache mount both used is kept once.
    pub fn merge(&mut self, other: PreparedExport) {
        for step in other.used {
            if !self.used.iter().any(|s| s.key == step.key) {
                self.used.push(step);
            }
        }
        for mount in other.mounts {
            if !self.mounts.iter().any(|m| m.id == mount.id) {
                self.mounts.push(mount);
            }
        }
    }
}

/// The ids of the cache mounts of a RUN step.
pub(super) fn cache_mount_ids(step: &Step) -> Vec<String> {
    match &step.kind {
        dispatch::StepKind::Run(run) => run_cache_mount_ids(run),
        _ => Vec::new(),
    }
}

fn run_cache_mount_ids(run: &RunStep) -> Vec<String> {
    run.mounts
        .iter()
        .filter(|m| m.kind == MountKind::Cache)
        .map(mounts::cache_id)
        .collect()
}

impl Builder {
    pub(super) fn record_use(&self, step: UsedStep) {
        if !self.request.cache_to.is_empty() {
            lock(&self.journal).push(step);
        }
    }

    /// Fills the empty cache mounts of `run` from the imported caches, once per mount.
    pub(super) async fn restore_cache_mounts(&self, id: VertexId, run: &RunStep) {
        if self.remote.is_empty() || self.request.no_cache {
            return;
        }
        let mut restored = self.restored_mounts.lock().await;
        for mount_id in run_cache_mount_ids(run) {
            if !restored.insert(mount_id.clone()) {
                continue;
            }
            let Some((mount, source)) = self.remote.mount(&mount_id) else {
                continue;
            };
            let dir = mounts::cache_mount_dir(&self.request.cache_dir, &mount_id);
            if !is_empty_dir(&dir) {
                continue;
            }
            match self
                .remote
                .restore_mount_into(mount, &dir, &self.registry, &self.registry_blobs)
                .await
            {
                Ok(()) => {
                    let from = self
                        .remote
                        .sources
                        .get(source)
                        .map(|s| s.location.to_string())
                        .unwrap_or_default();
                    self.reporter
                        .log(id, &format!("cache mount {mount_id} restored from {from}"));
                }
                Err(e) => self.reporter.warning(&format!(
                    "the cache mount `{mount_id}` could not be restored from the imported cache: {e:#}"
                )),
            }
        }
    }

    /// `--cache-to`: each destination gets the steps its mode covers. A failed export
    /// fails the build unless it says `ignore-error=true`.
    pub(super) async fn export_caches(&self) -> anyhow::Result<()> {
        match self.prepare_journal().await? {
            Some(prepared) => self.export_prepared(&prepared).await,
            None => Ok(()),
        }
    }

    /// The steps this build used, their layers taken out of the engine or the snapshots
    /// of the build that ran them (`None`: no `--cache-to`, or nothing to export when
    /// every destination ignores errors).
    pub(super) async fn prepare_journal(&self) -> anyhow::Result<Option<PreparedExport>> {
        let exports = &self.request.cache_to;
        if exports.is_empty() {
            return Ok(None);
        }
        let mut used = std::mem::take(&mut *lock(&self.journal));
        let max = exports.iter().any(|e| e.mode == CacheMode::Max);
        match self.prepare_export(&mut used, max).await {
            Ok(mounts) => Ok(Some(PreparedExport { used, mounts })),
            Err(e) if exports.iter().all(|e| e.ignore_error) => {
                self.reporter
                    .warning(&format!("the build cache was not exported: {e:#}"));
                Ok(None)
            }
            Err(e) => Err(e.context("preparing the build cache for export")),
        }
    }

    /// Writes `prepared` to every `--cache-to` destination.
    pub(super) async fn export_prepared(&self, prepared: &PreparedExport) -> anyhow::Result<()> {
        for export in &self.request.cache_to {
            let id = self.ids.next();
            let mode = match export.mode {
                CacheMode::Min => "min",
                CacheMode::Max => "max",
            };
            self.reporter.started(
                id,
                &format!("exporting cache to {} (mode={mode})", export.location),
            );
            let started = Instant::now();
            match self
                .export_one(export, &prepared.used, &prepared.mounts, id)
                .await
            {
                Ok(()) => self.reporter.done(id, started.elapsed()),
                Err(e) => {
                    self.reporter.failed(id, started.elapsed());
                    let e = e.context(format!("exporting the build cache to {}", export.location));
                    if !export.ignore_error {
                        return Err(e);
                    }
                    self.reporter.warning(&format!("{e:#}"));
                }
            }
        }
        Ok(())
    }

    /// Takes the layers of the steps that ran here out of the engine (and remembers them
    /// in the local cache, so the next export skips that), and snapshots the cache mounts
    /// (`mode=max`).
    async fn prepare_export(
        &self,
        used: &mut [UsedStep],
        max: bool,
    ) -> anyhow::Result<Vec<CachedMount>> {
        let mut wanted: HashSet<String> = HashSet::new();
        let mut images: Vec<String> = Vec::new();
        let mut snapshots = 0;
        for step in used.iter_mut() {
            match &step.result {
                UsedResult::Engine { diff_id: None, .. } => step.result = UsedResult::Layer(None),
                UsedResult::Engine {
                    image,
                    diff_id: Some(d),
                } if max || step.target => {
                    wanted.insert(d.clone());
                    images.push(image.clone());
                }
                UsedResult::Snapshot if max || step.target => snapshots += 1,
                _ => {}
            }
        }
        let mount_ids = match max {
            true => remote::last_mount_uses(used),
            false => Vec::new(),
        };
        if wanted.is_empty() && snapshots == 0 && mount_ids.is_empty() {
            return Ok(Vec::new());
        }
        let id = self.ids.next();
        self.reporter
            .started(id, "[internal] preparing the build cache for export");
        let started = Instant::now();
        let result = async {
            let layers = if wanted.is_empty() {
                HashMap::new()
            } else {
                self.reporter.log(
                    id,
                    &format!("taking {} layer(s) out of the engine", wanted.len()),
                );
                remote::layers_from_engine(self.engine()?, &wanted, &images, &self.oci_blobs)
                    .await?
            };
            for step in used.iter_mut() {
                if let UsedResult::Engine {
                    diff_id: Some(d), ..
                } = &step.result
                    && let Some(record) = layers.get(d)
                {
                    if let Some(mut local) = self.cache.get(&step.key) {
                        local.layer = Some(record.clone());
                        let _ = self.cache.put(&local);
                    }
                    step.result = UsedResult::Layer(Some(record.clone()));
                }
            }
            if snapshots > 0 {
                self.reporter.log(
                    id,
                    &format!("the layers of {snapshots} step(s) of the native executor"),
                );
            }
            if snapshots > 0 {
                let store = &self.native()?.store;
                for step in used.iter_mut() {
                    if matches!(step.result, UsedResult::Snapshot) && (max || step.target) {
                        step.result =
                            UsedResult::Layer(self.snapshot_step_layer(store, &step.key)?);
                    }
                }
            }
            let mut mounts = Vec::new();
            for (mount_id, step) in mount_ids {
                let dir = mounts::cache_mount_dir(&self.request.cache_dir, &mount_id);
                if !is_empty_dir(&dir) {
                    let store = self.oci_blobs.clone();
                    let layer =
                        tokio::task::spawn_blocking(move || remote::snapshot_mount(&dir, &store))
                            .await??;
                    self.reporter.log(
                        id,
                        &format!(
                            "cache mount {mount_id}: {}",
                            indicatif::HumanBytes(layer.size)
                        ),
                    );
                    mounts.push(CachedMount {
                        id: mount_id,
                        step,
                        layer,
                    });
                } else if let Some((imported, _)) = self.remote.mount(&mount_id) {
                    // Not used here (its steps were cached): passed on as it came.
                    mounts.push(imported.clone());
                }
            }
            anyhow::Ok(mounts)
        }
        .await;
        match &result {
            Ok(_) => self.reporter.done(id, started.elapsed()),
            Err(_) => self.reporter.failed(id, started.elapsed()),
        }
        result
    }

    async fn export_one(
        &self,
        export: &CacheExport,
        used: &[UsedStep],
        mounts: &[CachedMount],
        id: VertexId,
    ) -> anyhow::Result<()> {
        let index = remote::index_of(used, export.mode, mounts)?;
        let report = self
            .remote
            .export_index(
                &index,
                &export.location,
                &self.registry,
                &self.registry_blobs,
            )
            .await?;
        self.reporter.log(
            id,
            &format!(
                "{} steps, {} cache mounts; {} blobs written ({}), {} already there; manifest {}",
                index.steps.len(),
                index.mounts.len(),
                report.uploaded,
                indicatif::HumanBytes(report.bytes_uploaded),
                report.already_there,
                report.digest
            ),
        );
        Ok(())
    }
}
