//! Which executor runs a build's steps: `--executor native` (an OCI runtime on overlay
//! snapshots), `engine` (the Docker engine), or `auto`, native when this machine can run it.
//!
//! Native needs three things, probed once per build in this order, the cheapest first:
//! root (overlay mounts and runc's namespaces), an OCI runtime on `PATH`
//! ([`crate::runtime::find`]), and overlay mounts whose upper directories live in the cache
//! dir's snapshot store (one tiny overlay is mounted there and unmounted; a cache dir that
//! is itself on overlayfs, as in docker-in-docker, fails this). `auto` without one of them
//! runs on the engine and says why in one line; `native` without one is an input error.
//!
//! Also here: what the native executor keeps on disk between builds
//! ([`DEFAULT_SNAPSHOT_BUDGET`], [`prune_after_build`]).

use std::path::Path;

use crate::cache::snapshot::{Pruned, SnapshotStore};
use crate::error::InputError;
use crate::progress::Reporter;
use crate::request::ExecutorChoice;
use crate::runtime::Runtime;

/// How much disk the snapshot store may keep after a native build: the least recently used
/// snapshots beyond it are removed at the end of the build ([`prune_after_build`]). 10 GiB
/// holds a few toolchain images and their dependency steps; `imgbuild prune` frees more.
pub(crate) const DEFAULT_SNAPSHOT_BUDGET: u64 = 10 << 30;

/// Which executor runs a build's stages, and why (for the summary and the fallback line).
/// `R` is the runtime found; tests put something simpler there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selected<R = Runtime> {
    Native {
        runtime: R,
    },
    /// `fallback`: why `auto` did not pick native, in one line; `None` when the engine was
    /// asked for.
    Engine {
        fallback: Option<String>,
    },
}

/// What ran a finished build's steps, as its summary shows it: `native (runc 1.1.12)` or
/// `engine`; for a multi-platform build whose platforms ran on different executors
/// (`--engine-for`), each platform's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorUsed {
    Native { runtime: String, version: String },
    Engine,
    PerPlatform(Vec<(crate::oci::Platform, ExecutorUsed)>),
}

impl ExecutorUsed {
    /// One executor when every platform's build used the same one.
    pub fn of_platforms(used: Vec<(crate::oci::Platform, ExecutorUsed)>) -> ExecutorUsed {
        match used.split_first() {
            Some(((_, first), rest)) if rest.iter().all(|(_, e)| e == first) => first.clone(),
            _ => ExecutorUsed::PerPlatform(used),
        }
    }
}

impl std::fmt::Display for ExecutorUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecutorUsed::Native { runtime, version } => write!(f, "native ({runtime} {version})"),
            ExecutorUsed::Engine => f.write_str("engine"),
            ExecutorUsed::PerPlatform(used) => {
                let each: Vec<String> = used.iter().map(|(p, e)| format!("{e} for {p}")).collect();
                f.write_str(&each.join(", "))
            }
        }
    }
}

/// Decides the executor for `choice`, probing this machine (nothing for `engine`).
pub(crate) fn select(choice: ExecutorChoice, cache_dir: &Path) -> Result<Selected, InputError> {
    decide(choice, &Host { cache_dir })
}

/// [`select`], with `auto`'s fallback said through `reporter` in one plain line.
pub(crate) fn select_reported(
    choice: ExecutorChoice,
    cache_dir: &Path,
    reporter: &dyn Reporter,
) -> Result<Selected, InputError> {
    let selected = select(choice, cache_dir)?;
    report_fallback(&selected, reporter);
    Ok(selected)
}

fn report_fallback<R>(selected: &Selected<R>, reporter: &dyn Reporter) {
    if let Selected::Engine {
        fallback: Some(why),
    } = selected
    {
        reporter.note(&format!("executor: engine ({why})"));
    }
}

/// What native execution needs, each asked at most once and only when the ones before
/// it held. The errors are one line each, saying what is missing.
trait Probes {
    type Runtime;
    /// The engine's address when it is on another machine (`tcp://…`, `ssh://…`): `auto`
    /// then runs the steps there, as `docker build` would.
    fn remote_engine(&self) -> Option<String>;
    fn euid(&self) -> u32;
    fn runtime(&self) -> Result<Self::Runtime, String>;
    fn overlay(&self) -> Result<(), String>;
}

fn decide<P: Probes>(
    choice: ExecutorChoice,
    probes: &P,
) -> Result<Selected<P::Runtime>, InputError> {
    let native = || -> Result<P::Runtime, String> {
        let uid = probes.euid();
        if uid != 0 {
            return Err(format!("native needs root; running as uid {uid}"));
        }
        let runtime = probes.runtime()?;
        probes.overlay()?;
        Ok(runtime)
    };
    match choice {
        ExecutorChoice::Engine => Ok(Selected::Engine { fallback: None }),
        ExecutorChoice::Auto => Ok(match probes.remote_engine() {
            Some(address) => Selected::Engine {
                fallback: Some(format!(
                    "the engine at {address} is remote: the steps run there"
                )),
            },
            None => match native() {
                Ok(runtime) => Selected::Native { runtime },
                Err(why) => Selected::Engine {
                    fallback: Some(why),
                },
            },
        }),
        ExecutorChoice::Native => native()
            .map(|runtime| Selected::Native { runtime })
            .map_err(|why| {
                InputError::new(format!("--executor native cannot run here: {why}")).with_hint(
                    "use `--executor engine`, or `--executor auto` to use native where it can run",
                )
            }),
    }
}

/// The real machine.
struct Host<'a> {
    cache_dir: &'a Path,
}

impl Probes for Host<'_> {
    type Runtime = Runtime;

    fn remote_engine(&self) -> Option<String> {
        crate::engine::EngineAddress::from_env()
            .ok()
            .filter(|address| address.is_remote())
            .map(|address| address.to_string())
    }

    fn euid(&self) -> u32 {
        rustix::process::geteuid().as_raw()
    }

    fn runtime(&self) -> Result<Runtime, String> {
        crate::runtime::find().map_err(|e| one_line(&e))
    }

    fn overlay(&self) -> Result<(), String> {
        let listed = std::fs::read_to_string("/proc/filesystems")
            .map_err(|e| format!("cannot read /proc/filesystems: {e}"))?;
        if !lists_overlay(&listed) {
            return Err("the kernel has no overlay file system (not in /proc/filesystems)".into());
        }
        probe_overlay(self.cache_dir).map_err(|e| {
            format!(
                "cannot mount an overlay in {}: {}",
                self.cache_dir.display(),
                one_line(&e)
            )
        })
    }
}

/// Whether `/proc/filesystems` (`nodev\toverlay` lines) lists overlay.
fn lists_overlay(proc_filesystems: &str) -> bool {
    proc_filesystems
        .lines()
        .any(|line| line.split_whitespace().last() == Some("overlay"))
}

/// Mounts an empty overlay in the snapshot store and unmounts it: what every native step
/// does, on the file system that will hold its upper directory.
fn probe_overlay(cache_dir: &Path) -> crate::cache::snapshot::Result<()> {
    let store = SnapshotStore::open(cache_dir)?;
    let active = store.prepare(&[])?;
    // The probe writes nothing worth keeping: a volatile mount's unmount skips syncing the
    // whole file system, which a build has just filled with dirty pages. Kernels before
    // 5.10 refuse `volatile`, and get the plain mount (whose error is the one to report).
    let mounted = match active.mount_volatile(&active.rootfs()) {
        Ok(mounted) => mounted,
        Err(_) => active.mount(&active.rootfs())?,
    };
    mounted.unmount()
    // `active` is dropped uncommitted: its directories are deleted.
}

/// An error and its causes on one line (`a: b: c`).
fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// Removes the least recently used snapshots of `cache_dir`'s store beyond `budget` bytes
/// (see [`SnapshotStore::prune`]); the native executor calls it at the end of a build with
/// [`DEFAULT_SNAPSHOT_BUDGET`].
pub(crate) fn prune_after_build(
    cache_dir: &Path,
    budget: u64,
) -> crate::cache::snapshot::Result<Pruned> {
    SnapshotStore::open(cache_dir)?.prune(budget)
}

impl super::Builder {
    /// What ran this build's steps, for its summary.
    pub(crate) fn executor_used(&self) -> ExecutorUsed {
        match &self.native {
            Some(native) => ExecutorUsed::Native {
                runtime: native.runtime().name().to_owned(),
                version: native.runtime().version().to_owned(),
            },
            None => ExecutorUsed::Engine,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// Probe results, and which probes were asked.
    struct Fake {
        remote: Option<&'static str>,
        euid: u32,
        runtime: Result<&'static str, &'static str>,
        overlay: Result<(), &'static str>,
        asked: Cell<Vec<&'static str>>,
    }

    impl Fake {
        fn able() -> Fake {
            Fake {
                remote: None,
                euid: 0,
                runtime: Ok("runc 1.1.12"),
                overlay: Ok(()),
                asked: Cell::new(Vec::new()),
            }
        }

        fn ask(&self, what: &'static str) {
            let mut asked = self.asked.take();
            asked.push(what);
            self.asked.set(asked);
        }

        fn asked(&self) -> Vec<&'static str> {
            self.asked.take()
        }
    }

    impl Probes for Fake {
        type Runtime = &'static str;

        fn remote_engine(&self) -> Option<String> {
            self.ask("remote");
            self.remote.map(str::to_owned)
        }

        fn euid(&self) -> u32 {
            self.ask("euid");
            self.euid
        }

        fn runtime(&self) -> Result<&'static str, String> {
            self.ask("runtime");
            self.runtime.map_err(str::to_owned)
        }

        fn overlay(&self) -> Result<(), String> {
            self.ask("overlay");
            self.overlay.map_err(str::to_owned)
        }
    }

    fn require_root() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts overlays and needs root; run it as root, as CI does"
        );
    }

    const NO_RUNC: &str = "no OCI runtime (runc or crun) on PATH";
    const NO_OVERLAY: &str = "cannot mount an overlay in /c: wrong fs type";

    #[test]
    fn engine_probes_nothing() {
        let fake = Fake {
            euid: 1000,
            ..Fake::able()
        };
        let selected = decide(ExecutorChoice::Engine, &fake).unwrap();
        assert_eq!(selected, Selected::Engine { fallback: None });
        assert!(fake.asked().is_empty());
    }

    #[test]
    fn auto_is_native_when_everything_holds() {
        let fake = Fake::able();
        let selected = decide(ExecutorChoice::Auto, &fake).unwrap();
        assert_eq!(
            selected,
            Selected::Native {
                runtime: "runc 1.1.12"
            }
        );
        assert_eq!(fake.asked(), ["remote", "euid", "runtime", "overlay"]);
        let selected = decide(ExecutorChoice::Native, &fake).unwrap();
        assert!(matches!(selected, Selected::Native { .. }));
    }

    #[test]
    fn auto_runs_on_a_remote_engine_and_native_can_still_be_asked_for() {
        let fake = Fake {
            remote: Some("tcp://build-box:2376 (from DOCKER_HOST, TLS)"),
            ..Fake::able()
        };
        let selected = decide(ExecutorChoice::Auto, &fake).unwrap();
        assert_eq!(
            selected,
            Selected::Engine {
                fallback: Some(
                    "the engine at tcp://build-box:2376 (from DOCKER_HOST, TLS) is remote: the steps run there".into()
                )
            }
        );
        assert_eq!(fake.asked(), ["remote"]);
        let selected = decide(ExecutorChoice::Native, &fake).unwrap();
        assert!(matches!(selected, Selected::Native { .. }));
    }

    #[test]
    fn auto_falls_back_saying_the_first_thing_missing() {
        for (fake, why, asked) in [
            (
                Fake {
                    euid: 1000,
                    runtime: Err(NO_RUNC),
                    ..Fake::able()
                },
                "native needs root; running as uid 1000",
                &["remote", "euid"][..],
            ),
            (
                Fake {
                    runtime: Err(NO_RUNC),
                    overlay: Err(NO_OVERLAY),
                    ..Fake::able()
                },
                NO_RUNC,
                &["remote", "euid", "runtime"][..],
            ),
            (
                Fake {
                    overlay: Err(NO_OVERLAY),
                    ..Fake::able()
                },
                NO_OVERLAY,
                &["remote", "euid", "runtime", "overlay"][..],
            ),
        ] {
            let selected = decide(ExecutorChoice::Auto, &fake).unwrap();
            assert_eq!(
                selected,
                Selected::Engine {
                    fallback: Some(why.to_owned())
                }
            );
            assert_eq!(fake.asked(), asked);
        }
    }

    #[test]
    fn native_when_unavailable_is_an_input_error_with_the_reason() {
        let fake = Fake {
            runtime: Err(NO_RUNC),
            ..Fake::able()
        };
        let err = decide(ExecutorChoice::Native, &fake).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("--executor native cannot run here: {NO_RUNC}")
        );
        let hint = err.hint().unwrap();
        assert!(
            hint.contains("--executor engine") && hint.contains("--executor auto"),
            "{hint}"
        );
        let anyhow_err = anyhow::Error::new(err);
        assert!(crate::cli::is_input_error(&anyhow_err));
    }

    #[test]
    fn the_fallback_is_one_plain_line() {
        #[derive(Default)]
        struct Lines(std::sync::Mutex<Vec<String>>);
        impl Reporter for Lines {
            fn warning(&self, message: &str) {
                self.0.lock().unwrap().push(format!("WARNING: {message}"));
            }
            fn summary(&self, line: &str) {
                self.0.lock().unwrap().push(line.to_owned());
            }
        }
        let lines = Lines::default();
        let tmp = tempfile::tempdir().unwrap();
        let selected = select_reported(ExecutorChoice::Engine, tmp.path(), &lines).unwrap();
        assert_eq!(selected, Selected::Engine { fallback: None });
        assert!(lines.0.lock().unwrap().is_empty());
        // `auto`'s fallback: said once, plainly.
        let fallback: Selected<()> = Selected::Engine {
            fallback: Some(NO_RUNC.to_owned()),
        };
        report_fallback(&fallback, &lines);
        assert_eq!(
            *lines.0.lock().unwrap(),
            [format!("executor: engine ({NO_RUNC})")]
        );
        // `engine` probes nothing: not even the snapshot store is made.
        assert!(!tmp.path().join(crate::cache::snapshot::LAYOUT).exists());
    }

    #[test]
    fn overlay_is_read_from_proc_filesystems() {
        assert!(lists_overlay("nodev\tsysfs\n\text4\nnodev\toverlay\n"));
        assert!(!lists_overlay("nodev\tsysfs\n\text4\nnodev\toverlayfs_x\n"));
        assert!(!lists_overlay(""));
    }

    #[test]
    fn the_host_probe_mounts_in_the_store_and_leaves_nothing() {
        require_root();
        let tmp = tempfile::tempdir().unwrap();
        Host {
            cache_dir: tmp.path(),
        }
        .overlay()
        .unwrap();
        let active = tmp
            .path()
            .join(crate::cache::snapshot::LAYOUT)
            .join("active");
        assert_eq!(std::fs::read_dir(&active).unwrap().count(), 0);
    }

    #[test]
    fn executor_used_reads_as_the_summary_shows_it() {
        let native = ExecutorUsed::Native {
            runtime: "runc".into(),
            version: "1.1.12".into(),
        };
        assert_eq!(native.to_string(), "native (runc 1.1.12)");
        assert_eq!(ExecutorUsed::Engine.to_string(), "engine");
        let (amd64, arm64): (crate::oci::Platform, crate::oci::Platform) = (
            "linux/amd64".parse().unwrap(),
            "linux/arm64".parse().unwrap(),
        );
        let same = ExecutorUsed::of_platforms(vec![
            (amd64.clone(), ExecutorUsed::Engine),
            (arm64.clone(), ExecutorUsed::Engine),
        ]);
        assert_eq!(same, ExecutorUsed::Engine);
        let mixed =
            ExecutorUsed::of_platforms(vec![(amd64, native), (arm64, ExecutorUsed::Engine)]);
        assert_eq!(
            mixed.to_string(),
            "native (runc 1.1.12) for linux/amd64, engine for linux/arm64"
        );
    }

    #[test]
    fn prune_after_build_keeps_the_budget() {
        require_root();
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(tmp.path()).unwrap();
        for key in ["a", "b"] {
            let active = store.prepare(&[]).unwrap();
            std::fs::write(active.upper().join("data"), vec![1u8; 256 << 10]).unwrap();
            store.commit(active, key).unwrap();
        }
        let pruned = prune_after_build(tmp.path(), DEFAULT_SNAPSHOT_BUDGET).unwrap();
        assert!(pruned.removed.is_empty(), "{pruned:?}");
        assert!(pruned.kept >= 512 << 10, "{pruned:?}");
        let pruned = prune_after_build(tmp.path(), 0).unwrap();
        assert_eq!(pruned.removed.len(), 2, "{pruned:?}");
        assert_eq!(pruned.kept, 0);
        assert!(store.step("a").unwrap().is_none());
    }
}
