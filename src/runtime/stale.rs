//! Containers left in a state dir: those of imgbuild processes killed outright (SIGKILL,
//! a crash, a machine suspended mid-build) are deleted by the next process that looks.
//!
//! A container's id says which process made it, as the engine's container names do
//! (`imgbuild-BOOT-PIDNS-PID-START-N`, see [`crate::engine::cleanup`]): a process that
//! has certainly exited (same boot and pid namespace, and its pid gone or reused) owns
//! nothing any more. Containers of live processes, and of processes that cannot be checked,
//! stay.

use std::path::Path;
use std::process::Stdio;

use serde::Deserialize;

use super::Runtime;
use super::error::{Error, Result};
use crate::engine::cleanup::{NAME_PREFIX, owner_tag, tagged_owner_is_gone};

/// A container as `runc list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Container {
    pub id: String,
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
    /// Its init process on the host (0 once stopped).
    #[serde(default)]
    pub pid: i64,
}

impl Runtime {
    /// Every container in `state_dir`, in any state (none when the dir does not exist).
    pub async fn list(&self, state_dir: &Path) -> Result<Vec<Container>> {
        // runc and crun keep each container's state in a directory of its own under
        // `--root`: an empty root holds none, and the fork/exec of the runtime (a good
        // share of a build that runs nothing) is skipped.
        let holds_any = match std::fs::read_dir(state_dir) {
            Ok(mut entries) => entries.next().is_some(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(_) => true,
        };
        if !holds_any {
            return Ok(Vec::new());
        }
        let command = format!(
            "{} --root {} list --format json",
            self.program.display(),
            state_dir.display()
        );
        let output = tokio::process::Command::new(&self.program)
            .arg("--root")
            .arg(state_dir)
            .args(["list", "--format", "json"])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| Error::io(format!("run `{command}`"), source))?;
        if !output.status.success() {
            return Err(Error::Command {
                command,
                message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        // runc prints `null` for an empty list.
        let listed: Option<Vec<Container>> =
            serde_json::from_slice(&output.stdout).map_err(|err| Error::Command {
                command,
                message: format!("unexpected output: {err}"),
            })?;
        Ok(listed.unwrap_or_default())
    }

    /// Deletes the containers in `state_dir` whose imgbuild process no longer exists, killing
    /// what still runs in them. Returns how many it deleted; a failure to delete one does
    /// not stop the others (the first is returned).
    pub async fn cleanup_stale(&self, state_dir: &Path) -> Result<usize> {
        let stale = container_ids(state_dir).into_iter().filter(|id| {
            id.strip_prefix(NAME_PREFIX)
                .is_some_and(tagged_owner_is_gone)
        });
        self.delete_all(state_dir, stale).await
    }

    /// Deletes every container of this process in `state_dir`: for an interrupt handler,
    /// which exits the process without running the destructors that would.
    pub async fn remove_process_containers(&self, state_dir: &Path) -> Result<usize> {
        let Some(tag) = owner_tag() else {
            return Ok(0);
        };
        let prefix = format!("{NAME_PREFIX}{tag}");
        let ours = container_ids(state_dir)
            .into_iter()
            .filter(|id| id.starts_with(&prefix));
        self.delete_all(state_dir, ours).await
    }

    /// `delete --force` each id (a running container is killed first; one already gone
    /// counts as deleted).
    async fn delete_all(
        &self,
        state_dir: &Path,
        ids: impl Iterator<Item = String>,
    ) -> Result<usize> {
        let mut deleted = 0;
        let mut first_error = None;
        for id in ids {
            let program = self.program.clone();
            let state_dir = state_dir.to_owned();
            let result =
                tokio::task::spawn_blocking(move || delete_blocking(&program, &state_dir, &id))
                    .await
                    .map_err(|err| Error::io("delete a container", std::io::Error::other(err)))
                    .and_then(|r| r);
            match result {
                Ok(()) => deleted += 1,
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(deleted),
        }
    }
}

/// `PROGRAM --root STATE delete --force ID`, waiting for it; synchronous, so that a `Drop`
/// can call it. A container that is already gone is no error.
/// The ids of the containers in `state_dir`, read from the directory itself: runc and crun
/// keep each container's state in a directory named by its id. Not `runc list`, which
/// fails outright when another process deletes a container while it lists (builds sharing
/// a cache dir do that all the time).
fn container_ids(state_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}

pub(super) fn delete_blocking(program: &Path, state_dir: &Path, id: &str) -> Result<()> {
    let command = format!(
        "{} --root {} delete --force {id}",
        program.display(),
        state_dir.display()
    );
    let output = std::process::Command::new(program)
        .arg("--root")
        .arg(state_dir)
        .args(["delete", "--force", id])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::io(format!("run `{command}`"), source))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || stderr.contains("does not exist") {
        return Ok(());
    }
    Err(Error::Command {
        command,
        message: stderr.trim().to_owned(),
    })
}
