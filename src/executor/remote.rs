//! `ADD https://…` and `ADD git…` in a build: sources resolved before a stage's keys are
//! computed ([`crate::fetch`]), their part of the key, and their files written into a
//! COPY's tar by the same selection code as the context's (so destinations, `--chown`,
//! `--chmod` and `--exclude` behave alike), for the engine stage and the packaging stage.

use std::io::Write;
use std::time::Instant;

use anyhow::Context as _;

use super::Builder;
use super::archive::{TarOut, names_as_written, write_selection};
use crate::context::{Context, EntryKind};
use crate::fetch::{RemoteSource, Resolved};
use crate::plan::dispatch::{CopyStep, StagePlan, StepKind};

/// BuildKit's HTTP source writes the download 0600 (`--chmod` aside).
const DOWNLOAD_MODE: u32 = 0o600;

impl Builder {
    /// Resolves every remote source of a stage before its keys are computed: an HTTP file
    /// is downloaded (or revalidated), a git ref asked for its commit. A failure names the
    /// step (`Dockerfile:LINE`) and fails the build (exit 1): the Dockerfile is valid, the
    /// remote is not there or not what `--checksum` pins.
    pub(super) async fn resolve_remote_sources(&self, plan: &StagePlan) -> anyhow::Result<()> {
        for step in &plan.steps {
            let StepKind::Copy(copy) = &step.kind else {
                continue;
            };
            for source in &copy.remote {
                if self.fetcher.resolved(source).is_some() {
                    continue;
                }
                let id = self.ids.next();
                self.reporter.started(id, &source.display());
                let started = Instant::now();
                match self.fetcher.resolve(source).await {
                    Ok(_) => self.reporter.done(id, started.elapsed()),
                    Err(e) => {
                        self.reporter.failed(id, started.elapsed());
                        return Err(e.context(format!(
                            "{}:{}: {}",
                            self.graph.dockerfile.file, step.location.line, step.display
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn resolved(
        &self,
        source: &RemoteSource,
    ) -> anyhow::Result<std::sync::Arc<Resolved>> {
        self.fetcher
            .resolved(source)
            .ok_or_else(|| anyhow::anyhow!("{} was not resolved before its step", source.display()))
    }

    /// Writes the files of `copy`'s remote sources into `out`. `dest_is_dir` answers for
    /// the filesystem written into.
    pub(super) fn write_remote_sources<W: Write>(
        &self,
        out: &mut TarOut<W>,
        copy: &CopyStep,
        dest_is_dir: &dyn Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        let mut options = crate::plan::keys::select_options(copy)?;
        options.parents = false;
        for source in &copy.remote {
            match source {
                RemoteSource::Http(h) => {
                    let resolved = self.resolved(source)?;
                    let Resolved::File(file) = resolved.as_ref() else {
                        anyhow::bail!("{} did not resolve to a file", source.display());
                    };
                    // The download, under the name it gets, read like a context file.
                    let dir = tempfile::Builder::new()
                        .prefix(".tmp-add-")
                        .tempdir_in(self.oci_blobs.root())
                        .context("creating a directory for a download")?;
                    let named = dir.path().join(&h.filename);
                    if std::fs::hard_link(&file.path, &named).is_err() {
                        std::fs::copy(&file.path, &named)
                            .with_context(|| format!("copying {}", file.path.display()))?;
                    }
                    let context = Context::open_unfiltered(dir.path())?;
                    // Remote files are not unpacked unless `--unpack=true` asks.
                    options.is_add = copy.unpack == Some(true);
                    let mut selection = context.select(
                        std::slice::from_ref(&h.filename),
                        &copy.dest,
                        &options,
                        dest_is_dir,
                    )?;
                    // An octal --chmod gave the mode; a symbolic one changes 0600.
                    if !matches!(options.chmod, Some(crate::oci::layer::Chmod::Octal(_))) {
                        for entry in &mut selection.entries {
                            if matches!(entry.kind, EntryKind::File { .. }) {
                                entry.mode = DOWNLOAD_MODE;
                            }
                        }
                    }
                    // The file's mtime is `Last-Modified` (else 0), as in BuildKit; layers
                    // clamp it to the source date epoch.
                    let mtime = file.last_modified.unwrap_or(0).max(0) as u64;
                    let before = out.set_mtime(mtime);
                    let written = write_selection(out, &selection, dest_is_dir, &names_as_written);
                    out.set_mtime(before);
                    written?;
                }
                RemoteSource::Git(g) => {
                    let checkout = tokio::task::block_in_place(|| self.fetcher.checkout(g))?;
                    let context = Context::open_unfiltered(&checkout.root)?;
                    options.is_add = false;
                    let selection =
                        context.select(&[".".to_owned()], &copy.dest, &options, dest_is_dir)?;
                    write_selection(out, &selection, dest_is_dir, &names_as_written)?;
                }
            }
        }
        Ok(())
    }
}
