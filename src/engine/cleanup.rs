//! Every container imgbuild makes is removed: by the code that made it (explicitly, since
//! `Drop` cannot wait for the engine), by [`Engine::remove_all`] at the end of a build, by the
//! signal handler of [`Engine::exit_on_interrupt`], and, when the process was killed outright,
//! by the next run's [`Engine::reap_leftovers`].
//!
//! To make that last step possible each container's *name* says which process made it:
//! `imgbuild-BOOT-PIDNS-PID-START-SEQ` (boot id, pid namespace, pid, process start time, a
//! counter). Names rather than labels, because the engine's commit copies every container
//! label into the committed image's config.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::Engine;
use super::error::{Error, Result, is_not_found};

/// Every container name imgbuild gives starts with this.
pub(crate) const NAME_PREFIX: &str = "imgbuild-";

/// How long the signal handler spends removing containers before it exits anyway.
const INTERRUPT_CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Set by [`Engine::exit_on_interrupt`]'s handler once SIGINT/SIGTERM arrived.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether [`Engine::exit_on_interrupt`]'s handler is removing containers to exit.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// For an operation that notices the interruption (its container killed under it): the
/// handler exits the process once the containers are gone, so the operation waits for that.
/// Returning an error instead would let the caller finish first, with the wrong exit status
/// and before the removal is done.
pub(crate) async fn wait_for_exit() -> std::convert::Infallible {
    std::future::pending().await
}

pub(crate) async fn wait_for_exit_if_interrupted() {
    if interrupted() {
        match wait_for_exit().await {}
    }
}

/// Which process made a container, as far as another process can check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// The first 12 hex digits of the kernel's boot id.
    boot: String,
    /// The inode of the pid namespace, so a pid is only compared within its namespace.
    pid_ns: u64,
    pid: u32,
    /// Start time of the process in clock ticks after boot: guards against a reused pid.
    start: u64,
}

impl Owner {
    /// This process, or `None` where `/proc` does not tell (then its containers are never
    /// reaped by other processes, only removed by this one).
    fn current() -> Option<&'static Owner> {
        static CURRENT: OnceLock<Option<Owner>> = OnceLock::new();
        CURRENT
            .get_or_init(|| {
                let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
                let boot: String = boot.trim().chars().filter(|c| *c != '-').take(12).collect();
                let pid_ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
                let pid_ns = parse_pid_ns(pid_ns.to_str()?)?;
                let start = start_time(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
                let owner = Owner {
                    boot,
                    pid_ns,
                    pid: std::process::id(),
                    start,
                };
                owner.valid().then_some(owner)
            })
            .as_ref()
    }

    fn valid(&self) -> bool {
        self.boot.len() == 12 && self.boot.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// `imgbuild-BOOT-PIDNS-PID-START-`: the name of each of its containers starts so.
    fn name_prefix(&self) -> String {
        format!(
            "{NAME_PREFIX}{}-{}-{}-{}-",
            self.boot, self.pid_ns, self.pid, self.start
        )
    }

    /// The owner encoded in a container name (with or without the engine's leading `/`).
    fn from_name(name: &str) -> Option<Owner> {
        let rest = name.trim_start_matches('/').strip_prefix(NAME_PREFIX)?;
        let mut fields = rest.split('-');
        let owner = Owner::from_fields(&mut fields)?;
        let _sequence: u64 = fields.next()?.parse().ok()?;
        fields.next().is_none().then_some(owner)
    }

    /// `BOOT-PIDNS-PID-START` from the first four of `fields`.
    fn from_fields<'a>(fields: &mut impl Iterator<Item = &'a str>) -> Option<Owner> {
        let owner = Owner {
            boot: fields.next()?.to_owned(),
            pid_ns: fields.next()?.parse().ok()?,
            pid: fields.next()?.parse().ok()?,
            start: fields.next()?.parse().ok()?,
        };
        owner.valid().then_some(owner)
    }

    /// Whether this owner has certainly exited, judged by the process `me`. Only a process of
    /// the same boot and pid namespace can tell; anything uncertain counts as alive.
    fn is_gone(&self, me: &Owner) -> bool {
        if self.boot != me.boot || self.pid_ns != me.pid_ns {
            return false;
        }
        if self == me {
            return false;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            // Another process now has the pid when its start time differs.
            Ok(stat) => start_time(&stat).is_some_and(|start| start != self.start),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                // /proc may hide other users' processes (hidepid); kill(pid, 0) does not.
                let Some(pid) = i32::try_from(self.pid)
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                else {
                    return false;
                };
                rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
            }
            Err(_) => false,
        }
    }
}

/// `pid:[4026531836]` → 4026531836.
fn parse_pid_ns(link: &str) -> Option<u64> {
    link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// Field 22 (`starttime`) of `/proc/PID/stat`. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its last `)`.
fn start_time(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// `BOOT-PIDNS-PID-START-` of this process, for what else it leaves on the host while it
/// runs (secret files): named with it, they are removed by the next run once this process
/// is gone, like its containers. `None` where `/proc` does not tell.
pub(crate) fn owner_tag() -> Option<String> {
    Owner::current().map(|owner| {
        owner
            .name_prefix()
            .trim_start_matches(NAME_PREFIX)
            .to_owned()
    })
}

/// Whether the process named by a tag of [`owner_tag`]'s form at the start of `tagged` has
/// certainly exited; `false` for anything that does not parse or cannot be checked.
pub(crate) fn tagged_owner_is_gone(tagged: &str) -> bool {
    let Some(me) = Owner::current() else {
        return false;
    };
    Owner::from_fields(&mut tagged.split('-')).is_some_and(|owner| owner.is_gone(me))
}

/// Cleanups the interrupt handler runs before the process exits (`exit` runs no
/// destructors): removing files that must not outlive the build.
static EXIT_CLEANUPS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Has [`Engine::exit_on_interrupt`]'s handler run `cleanup` before it exits the process.
pub(crate) fn run_on_interrupt_exit(cleanup: fn()) {
    let mut cleanups = EXIT_CLEANUPS.lock().unwrap_or_else(PoisonError::into_inner);
    if !cleanups.contains(&cleanup) {
        cleanups.push(cleanup);
    }
}

/// The whole-process interrupt policy of [`Engine::exit_on_interrupt`], with `remove` doing
/// the removal (the engine's containers, the OCI runtime's, or both): on SIGINT or SIGTERM
/// it runs (at most 30 s; a second signal cuts it short), then the registered exit
/// cleanups, then the process exits with 130 or 143.
pub fn exit_on_interrupt_with(
    remove: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    let mut interrupts = Interrupts::install()?;
    Ok(tokio::spawn(async move {
        let first = interrupts.recv().await;
        INTERRUPTED.store(true, Ordering::SeqCst);
        tokio::select! {
            _ = tokio::time::timeout(INTERRUPT_CLEANUP_TIMEOUT, remove) => {}
            _ = interrupts.recv() => {}
        }
        let cleanups = EXIT_CLEANUPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for cleanup in cleanups {
            cleanup();
        }
        std::process::exit(first.exit_code());
    }))
}

/// A fresh container name for this process.
pub(crate) fn next_container_name() -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    match Owner::current() {
        Some(owner) => format!("{}{sequence}", owner.name_prefix()),
        // Not parseable as an owner, so never reaped by another process.
        None => format!(
            "{NAME_PREFIX}unknown-{}-{}-{sequence}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ),
    }
}

/// The containers one [`Engine`] (and its clones) made and has not removed yet.
#[derive(Debug, Default)]
pub(crate) struct LiveContainers {
    ids: Mutex<BTreeSet<String>>,
}

impl LiveContainers {
    pub(crate) fn insert(&self, id: &str) {
        self.lock().insert(id.to_owned());
    }

    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn snapshot(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // A panic elsewhere must not stop the cleanup; the set stays consistent.
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A signal that ends the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGINT (Ctrl-C).
    Int,
    /// SIGTERM.
    Term,
}

impl Interrupt {
    /// 128 + the signal number, as shells report a process killed by it.
    pub fn exit_code(self) -> i32 {
        match self {
            Interrupt::Int => 130,
            Interrupt::Term => 143,
        }
    }
}

/// SIGINT and SIGTERM handlers. Once installed, the signals no longer terminate the process:
/// the holder decides what happens.
pub struct Interrupts {
    int: Signal,
    term: Signal,
}

impl Interrupts {
    /// Installs the handlers now (so no signal between this call and the first
    /// [`recv`](Self::recv) is lost). Needs a tokio runtime.
    pub fn install() -> Result<Interrupts> {
        let install = |kind| {
            signal(kind).map_err(|source| Error::Io {
                operation: "install a handler for SIGINT and SIGTERM".into(),
                source,
            })
        };
        Ok(Interrupts {
            int: install(SignalKind::interrupt())?,
            term: install(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) -> Interrupt {
        tokio::select! {
            _ = self.int.recv() => Interrupt::Int,
            _ = self.term.recv() => Interrupt::Term,
        }
    }
}

impl Engine {
    /// Removes a container by id: forced (a running one is killed) and with its anonymous
    /// volumes. Returns `false` when it was already gone.
    pub(crate) async fn remove_id(&self, id: &str) -> Result<bool> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let removed = match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => true,
            Err(err) if is_not_found(&err) => false,
            // Someone else (the signal handler, a reaping process) is removing it already.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => false,
            Err(err) => return Err(Error::api(format!("remove container {id}"), err)),
        };
        self.live.forget(id);
        Ok(removed)
    }

    /// Removes every container this engine handle (or a clone of it) created and has not
    /// removed yet. Call it when a build ends, however it ends. Returns how many it removed.
    pub async fn remove_all(&self) -> Result<usize> {
        self.remove_ids(self.live.snapshot()).await
    }

    /// Removes every container of this *process* (all engine handles), found by name in the
    /// engine, and those registered here. For the signal handler: it also catches containers
    /// whose creation was still under way when the signal came.
    pub async fn remove_process_containers(&self) -> Result<usize> {
        let mut ids = self.live.snapshot();
        if let Some(me) = Owner::current() {
            let prefix = me.name_prefix();
            for (id, name) in self.list_imgbuild_containers().await? {
                if name.starts_with(&prefix) && !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        self.remove_ids(ids).await
    }

    /// Removes the containers left behind by imgbuild processes that no longer exist (killed
    /// with SIGKILL, crashed, machine suspended mid-build). Containers of live processes, and
    /// of processes this one cannot check (another machine, another pid namespace), stay.
    /// Returns how many it removed.
    pub async fn reap_leftovers(&self) -> Result<usize> {
        let Some(me) = Owner::current() else {
            return Ok(0);
        };
        let orphans = self
            .list_imgbuild_containers()
            .await?
            .into_iter()
            .filter(|(_, name)| Owner::from_name(name).is_some_and(|owner| owner.is_gone(me)))
            .map(|(id, _)| id)
            .collect();
        self.remove_ids(orphans).await
    }

    /// Installs SIGINT/SIGTERM handlers that remove this process's containers, then exit the
    /// process with 130 (SIGINT) or 143 (SIGTERM). A second signal during the removal exits
    /// at once; the removal gives up after 30 s. Engine operations under way that notice the
    /// interruption never complete: the process exits first. Needs a tokio runtime whose
    /// other tasks keep running (the default multi-thread one).
    ///
    /// This is the whole-process policy for the binary; a caller that wants another policy
    /// builds it from [`Interrupts`] and [`remove_process_containers`](Self::remove_process_containers).
    pub fn exit_on_interrupt(&self) -> Result<tokio::task::JoinHandle<()>> {
        let engine = self.clone();
        exit_on_interrupt_with(async move {
            let _ = engine.remove_process_containers().await;
        })
    }

    /// Removes each id, carrying on past failures; the first failure is returned.
    async fn remove_ids(&self, ids: Vec<String>) -> Result<usize> {
        let mut removed = 0;
        let mut first_error = None;
        for id in ids {
            match self.remove_id(&id).await {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(removed),
        }
    }

    /// `(id, name)` of every container, in any state, whose name imgbuild gave.
    async fn list_imgbuild_containers(&self) -> Result<Vec<(String, String)>> {
        let filters = HashMap::from([("name", vec![NAME_PREFIX])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|err| Error::api("list containers", err))?;
        // The name filter matches anywhere in the name; only our prefix counts.
        Ok(containers
            .into_iter()
            .filter_map(|container| {
                let id = container.id?;
                let name = container
                    .names?
                    .into_iter()
                    .map(|name| name.trim_start_matches('/').to_owned())
                    .find(|name| name.starts_with(NAME_PREFIX))?;
                Some((id, name))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_identified_and_its_names_parse_back() {
        let me = Owner::current().expect("/proc describes this process on Linux");
        assert_eq!(me.pid, std::process::id());
        let name = next_container_name();
        assert!(name.starts_with(&me.name_prefix()), "{name}");
        assert_eq!(Owner::from_name(&name).as_ref(), Some(me));
        assert_eq!(Owner::from_name(&format!("/{name}")).as_ref(), Some(me));
        assert!(!me.is_gone(me));
    }

    #[test]
    fn names_imgbuild_did_not_give_have_no_owner() {
        for name in [
            "imgbuild-unknown-12-345-0",
            "imgbuild-0123456789ab-1-2-3",
            "imgbuild-0123456789ab-1-2-3-4-5",
            "imgbuild-zzzzzzzzzzzz-1-2-3-4",
            "other-0123456789ab-1-2-3-4",
        ] {
            assert_eq!(Owner::from_name(name), None, "{name}");
        }
        assert!(Owner::from_name("imgbuild-0123456789ab-1-2-3-4").is_some());
    }

    #[test]
    fn a_dead_or_reused_pid_is_gone_but_other_namespaces_are_not_judged() {
        let me = Owner::current().expect("/proc describes this process on Linux");
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let dead_pid = child.id();
        child.wait().expect("wait for true");

        let dead = Owner {
            pid: dead_pid,
            ..me.clone()
        };
        assert!(dead.is_gone(me));
        let reused = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(reused.is_gone(me), "same pid, other start time");
        let elsewhere = Owner {
            pid_ns: me.pid_ns + 1,
            ..dead.clone()
        };
        assert!(!elsewhere.is_gone(me));
        let other_boot = Owner {
            boot: "ffffffffffff".into(),
            ..dead
        };
        assert!(!other_boot.is_gone(me));
    }

    #[test]
    fn proc_stat_start_time_survives_odd_command_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 \
                    1000 100";
        assert_eq!(start_time(stat), Some(987654));
        assert_eq!(start_time("garbage"), None);
        assert_eq!(parse_pid_ns("pid:[4026531836]"), Some(4026531836));
        assert_eq!(parse_pid_ns("net:[1]"), None);
    }

    #[test]
    fn interrupts_exit_like_a_shell_reports_them() {
        assert_eq!(Interrupt::Int.exit_code(), 130);
        assert_eq!(Interrupt::Term.exit_code(), 143);
    }
}
