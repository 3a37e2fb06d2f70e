//! The bundle's `config.json`: what a RUN step's process sees, built with oci-spec's
//! runtime types.
//!
//! It follows BuildKit's runc executor (`executor/oci/spec*.go` over containerd's default
//! Unix spec), which is also what `docker build` gives:
//!
//! * `/proc`, a tmpfs `/dev` with `null`, `zero`, `full`, `random`, `urandom` and `tty`,
//!   `/dev/pts`, `/dev/shm`, `/dev/mqueue`, `/sys` read-only, the cgroup file system
//!   read-only; no `/run` tmpfs (BuildKit removes it: moby/buildkit#429).
//! * `/etc/hosts` and `/etc/resolv.conf` bind-mounted read-only from the bundle.
//! * New mount, pid, ipc and uts namespaces, a network namespace unless the host's is
//!   asked for (runc brings its loopback up), a cgroup namespace on cgroup v2 hosts.
//! * Docker's default capabilities (bounding, effective, permitted), `noNewPrivileges`
//!   off, Docker's masked and read-only paths, device access denied but for the devices
//!   above and terminals.
//! * No rlimits: BuildKit resets containerd's `RLIMIT_NOFILE` of 1024, so the process
//!   inherits the limits of the runtime, i.e. of imgbuild (as it inherits buildkitd's).
//! * `privileged` (`RUN --security=insecure`) is BuildKit's insecure mode: every
//!   capability in every set, no masked or read-only paths, every device allowed, `/sys`
//!   and the cgroup file system writable, and BuildKit's extra devices (fuse, tun, kvm,
//!   loop…) where the host has them.
//!
//! Deliberate differences from BuildKit: no seccomp profile (BuildKit applies Docker's
//! default one where seccomp is enabled), no AppArmor profile and no SELinux labels; the
//! cgroup is `/imgbuild/<id>` (BuildKit's is `/buildkit/<id>`); no OOM score adjustment.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDevice,
    LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    MountBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};

use super::error::{Error, Result};
use super::{Mount as RunMount, Network, RunSpec};

/// Docker's (and containerd's) default capability set.
const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability Linux has, in the order of their numbers (0 to 40), for privileged
/// processes.
const ALL_CAPABILITIES: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// Hidden from the process (Docker's and containerd's list).
const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// Read-only for the process (Docker's and containerd's list).
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `(path, major, minor)` of the character devices every container has.
const STANDARD_DEVICES: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// What BuildKit's insecure mode adds, besides the loop devices.
const PRIVILEGED_DEVICES: [&str; 6] = [
    "/dev/kmsg",
    "/dev/cuse",
    "/dev/fuse",
    "/dev/kvm",
    "/dev/net/tun",
    "/dev/loop-control",
];

/// Where the files of the bundle are, and facts about the host the spec depends on.
pub(crate) struct Host<'a> {
    /// The `/etc/hosts` to bind-mount.
    pub hosts: &'a Path,
    /// The `/etc/resolv.conf` to bind-mount.
    pub resolv_conf: &'a Path,
    /// Whether the host has cgroup v2 with cgroup namespaces (BuildKit's test).
    pub cgroup_namespace: bool,
    /// The effective capabilities of imgbuild itself (bit N: capability N), the most a
    /// privileged process can be given.
    pub capabilities: u64,
}

impl Host<'_> {
    /// BuildKit's check: the kernel has cgroup namespaces and `/sys/fs/cgroup` is v2.
    pub(crate) fn has_cgroup_namespace() -> bool {
        Path::new("/proc/self/ns/cgroup").exists()
            && Path::new("/sys/fs/cgroup/cgroup.subtree_control").exists()
    }

    /// `CapEff` of this process (as BuildKit's insecure mode takes the capabilities it has);
    /// every bit when `/proc` does not say.
    pub(crate) fn current_capabilities() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
                u64::from_str_radix(hex.trim(), 16).ok()
            })
            .unwrap_or(u64::MAX)
    }
}

/// The runtime spec for running `run` as container `id`. `run.rootfs` must be absolute.
pub(crate) fn build(run: &RunSpec, id: &str, host: &Host<'_>) -> Result<Spec> {
    let invalid = |err: oci_spec::OciSpecError| {
        Error::Invalid(format!("cannot describe the container for runc: {err}"))
    };
    let capabilities: Capabilities = if run.privileged {
        // Only what imgbuild has: runc fails to start a process with more.
        ALL_CAPABILITIES
            .into_iter()
            .enumerate()
            .filter(|(bit, _)| host.capabilities & (1 << bit) != 0)
            .map(|(_, cap)| cap)
            .collect()
    } else {
        DEFAULT_CAPABILITIES.into_iter().collect()
    };
    let mut capability_sets = LinuxCapabilitiesBuilder::default()
        .bounding(capabilities.clone())
        .effective(capabilities.clone())
        .permitted(capabilities.clone());
    if run.privileged {
        capability_sets = capability_sets
            .inheritable(capabilities.clone())
            .ambient(capabilities);
    }

    let mut additional_gids = vec![run.user.gid];
    for gid in &run.user.additional_gids {
        if !additional_gids.contains(gid) {
            additional_gids.push(*gid);
        }
    }
    let user = UserBuilder::default()
        .uid(run.user.uid)
        .gid(run.user.gid)
        .additional_gids(additional_gids)
        .build()
        .map_err(invalid)?;

    let mut capability_sets = capability_sets.build().map_err(invalid)?;
    if !run.privileged {
        // The builder starts from oci-spec's defaults, whose ambient set would give a
        // non-root process capabilities Docker never gives it.
        capability_sets.set_inheritable(None);
        capability_sets.set_ambient(None);
    }
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(run.argv.clone())
        .env(run.env.clone())
        .cwd(&run.cwd)
        .capabilities(capability_sets)
        .no_new_privileges(false)
        .build()
        .map_err(invalid)?;
    // The builder starts from runc's example process (RLIMIT_NOFILE 1024): only the
    // `--ulimit`s are set, as BuildKit sets no others.
    process.set_rlimits(Some(rlimits(&run.ulimits)?).filter(|r: &Vec<_>| !r.is_empty()));
    process.set_apparmor_profile(None);
    process.set_selinux_label(None);
    process.set_oom_score_adj(None);

    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid)?,
        namespace(LinuxNamespaceType::Ipc)?,
        namespace(LinuxNamespaceType::Uts)?,
        namespace(LinuxNamespaceType::Mount)?,
    ];
    if run.network == Network::None {
        namespaces.push(namespace(LinuxNamespaceType::Network)?);
    }
    if host.cgroup_namespace {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup)?);
    }

    let mut devices = STANDARD_DEVICES
        .iter()
        .map(|(path, major, minor)| {
            device(path, LinuxDeviceType::C, *major, *minor, 0o666).map_err(invalid)
        })
        .collect::<Result<Vec<_>>>()?;
    let device_rules = if run.privileged {
        devices.extend(privileged_host_devices().map_err(invalid)?);
        vec![
            rule(true, Some(LinuxDeviceType::C), None, None)?,
            rule(true, Some(LinuxDeviceType::B), None, None)?,
        ]
    } else {
        let mut rules = vec![rule(false, None, None, None)?];
        rules.extend(devices.iter().map(LinuxDeviceCgroup::from));
        // Terminals: /dev/pts/* and /dev/ptmx.
        rules.push(rule(true, Some(LinuxDeviceType::C), Some(136), None)?);
        rules.push(rule(true, Some(LinuxDeviceType::C), Some(5), Some(2))?);
        rules
    };

    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let (masked, readonly) = if run.privileged {
        (Vec::new(), Vec::new())
    } else {
        (strings(&MASKED_PATHS), strings(&READONLY_PATHS))
    };
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .devices(devices)
        .resources(
            LinuxResourcesBuilder::default()
                .devices(device_rules)
                .build()
                .map_err(invalid)?,
        )
        .cgroups_path(format!("/imgbuild/{id}"))
        .masked_paths(masked)
        .readonly_paths(readonly)
        .build()
        .map_err(invalid)?;

    let root = RootBuilder::default()
        .path(&run.rootfs)
        .readonly(false)
        .build()
        .map_err(invalid)?;

    let mut spec = SpecBuilder::default()
        .version(oci_spec::runtime::VERSION)
        .root(root)
        .mounts(mounts(run, host)?)
        .process(process)
        .hostname(run.hostname.clone())
        .linux(linux)
        .build()
        .map_err(invalid)?;
    spec.set_annotations(None);
    Ok(spec)
}

fn namespace(typ: LinuxNamespaceType) -> Result<LinuxNamespace> {
    LinuxNamespaceBuilder::default()
        .typ(typ)
        .build()
        .map_err(|err| Error::Invalid(format!("namespace {typ}: {err}")))
}

fn device(
    path: &str,
    typ: LinuxDeviceType,
    major: i64,
    minor: i64,
    mode: u32,
) -> std::result::Result<LinuxDevice, oci_spec::OciSpecError> {
    LinuxDeviceBuilder::default()
        .path(path)
        .typ(typ)
        .major(major)
        .minor(minor)
        .file_mode(mode)
        .uid(0u32)
        .gid(0u32)
        .build()
}

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
) -> Result<LinuxDeviceCgroup> {
    let mut builder = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access("rwm");
    if let Some(typ) = typ {
        builder = builder.typ(typ);
    }
    if let Some(major) = major {
        builder = builder.major(major);
    }
    if let Some(minor) = minor {
        builder = builder.minor(minor);
    }
    builder
        .build()
        .map_err(|err| Error::Invalid(format!("device rule: {err}")))
}

/// BuildKit's extra devices of insecure mode that exist on this host, and its loop
/// devices, with the host's numbers and modes.
fn privileged_host_devices() -> std::result::Result<Vec<LinuxDevice>, oci_spec::OciSpecError> {
    let mut paths: Vec<String> = PRIVILEGED_DEVICES.iter().map(|p| (*p).to_owned()).collect();
    if let Ok(entries) = std::fs::read_dir("/dev") {
        let mut loops: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| {
                name.strip_prefix("loop")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|name| format!("/dev/{name}"))
            .collect();
        loops.sort();
        paths.extend(loops);
    }
    let mut devices = Vec::new();
    for path in paths {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let typ = if meta.file_type().is_char_device() {
            LinuxDeviceType::C
        } else if meta.file_type().is_block_device() {
            LinuxDeviceType::B
        } else {
            continue;
        };
        let rdev = meta.rdev();
        devices.push(device(
            &path,
            typ,
            i64::from(rustix::fs::major(rdev)),
            i64::from(rustix::fs::minor(rdev)),
            meta.permissions().mode() & 0o7777,
        )?);
    }
    Ok(devices)
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()
        .map_err(|err| Error::Invalid(format!("mount at {destination}: {err}")))
}

/// The process's `--ulimit`s.
fn rlimits(ulimits: &[crate::engine::Ulimit]) -> Result<Vec<PosixRlimit>> {
    ulimits
        .iter()
        .map(|u| {
            let kind = u.rlimit_type();
            PosixRlimitBuilder::default()
                .typ(
                    kind.parse::<PosixRlimitType>()
                        .map_err(|_| Error::Invalid(format!("unknown resource limit {kind}")))?,
                )
                .soft(crate::engine::Ulimit::rlimit_value(u.soft))
                .hard(crate::engine::Ulimit::rlimit_value(u.hard))
                .build()
                .map_err(|err| Error::Invalid(format!("--ulimit {}: {err}", u.name)))
        })
        .collect()
}

/// The file systems every container has, `/etc/hosts` and `/etc/resolv.conf`, then the
/// caller's mounts; a later mount at the same destination replaces an earlier one in place
/// (BuildKit's `dedupMounts`).
fn mounts(run: &RunSpec, host: &Host<'_>) -> Result<Vec<Mount>> {
    let sys: &[&str] = if run.privileged {
        &["nosuid", "noexec", "nodev"]
    } else {
        &["nosuid", "noexec", "nodev", "ro"]
    };
    let hosts = host.hosts.to_string_lossy();
    let resolv_conf = host.resolv_conf.to_string_lossy();
    let etc_options = ["nosuid", "noexec", "nodev", "rbind", "ro"];
    let shm_size = match run.shm_size {
        None => "size=65536k".to_owned(),
        Some(bytes) => format!("size={bytes}"),
    };
    let mut all = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount("/sys", "sysfs", "sysfs", sys)?,
        mount("/etc/resolv.conf", "bind", &resolv_conf, &etc_options)?,
        mount("/etc/hosts", "bind", &hosts, &etc_options)?,
        mount("/sys/fs/cgroup", "cgroup", "cgroup", sys)?,
    ];
    for extra in &run.mounts {
        let m = match extra {
            RunMount::Bind {
                source,
                target,
                read_only,
            } => {
                let mut options = vec!["rbind"];
                if *read_only {
                    options.push("ro");
                }
                mount(target, "bind", &source.to_string_lossy(), &options)?
            }
            RunMount::Tmpfs {
                target,
                size,
                read_only,
            } => {
                // Neither noexec nor nodev: BuildKit's tmpfs mounts run programs.
                let size = size.map(|s| format!("size={s}"));
                let mut options = vec!["nosuid"];
                if *read_only {
                    options.push("ro");
                }
                if let Some(size) = &size {
                    options.push(size);
                }
                mount(target, "tmpfs", "tmpfs", &options)?
            }
        };
        match all
            .iter()
            .position(|existing| existing.destination() == m.destination())
        {
            Some(at) => all[at] = m,
            None => all.push(m),
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::User;
    use super::*;

    fn host() -> Host<'static> {
        Host {
            hosts: Path::new("/bundle/hosts"),
            resolv_conf: Path::new("/bundle/resolv.conf"),
            cgroup_namespace: false,
            capabilities: u64::MAX,
        }
    }

    fn json(run: &RunSpec) -> serde_json::Value {
        serde_json::to_value(build(run, "imgbuild-test-1", &host()).unwrap()).unwrap()
    }

    fn strings(value: &serde_json::Value) -> Vec<String> {
        let mut list: Vec<String> = value
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {value}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        list.sort();
        list
    }

    fn destinations(spec: &serde_json::Value) -> Vec<String> {
        spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap().to_owned())
            .collect()
    }

    fn run_spec() -> RunSpec {
        let mut run = RunSpec::new("/snapshots/7/merged", ["/bin/sh", "-c", "make"]);
        run.env = vec!["PATH=/bin".into(), "A=1".into()];
        run.cwd = "/src".into();
        run.user = User {
            uid: 1000,
            gid: 1001,
            additional_gids: vec![50, 1001],
        };
        run
    }

    #[test]
    fn the_process_is_exactly_the_step_s() {
        let spec = json(&run_spec());
        let process = &spec["process"];
        assert_eq!(
            process["args"],
            serde_json::json!(["/bin/sh", "-c", "make"])
        );
        assert_eq!(process["env"], serde_json::json!(["PATH=/bin", "A=1"]));
        assert_eq!(process["cwd"], "/src");
        assert_eq!(process["user"]["uid"], 1000);
        assert_eq!(process["user"]["gid"], 1001);
        // The primary group first, as BuildKit adds it, and no duplicates.
        assert_eq!(
            process["user"]["additionalGids"],
            serde_json::json!([1001, 50])
        );
        assert_eq!(process["terminal"], false);
        assert_eq!(process["noNewPrivileges"], false);
        // Inherited, as BuildKit's are; runc's example would set 1024.
        assert!(process.get("rlimits").is_none(), "{process}");
        assert!(process.get("apparmorProfile").is_none(), "{process}");
        assert_eq!(spec["root"]["path"], "/snapshots/7/merged");
        assert_eq!(spec["root"]["readonly"], false);
        assert_eq!(spec["hostname"], "buildkitsandbox");
        assert!(spec.get("annotations").is_none());
    }

    #[test]
    fn ulimits_and_shm_size_are_the_build_s() {
        let default = json(&run_spec());
        let shm_options = |spec: &serde_json::Value| {
            spec["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["destination"] == "/dev/shm")
                .map(|m| m["options"].clone())
                .unwrap()
        };
        assert!(
            shm_options(&default)
                .as_array()
                .unwrap()
                .contains(&"size=65536k".into())
        );
        let mut run = run_spec();
        run.shm_size = Some(256 << 20);
        run.ulimits = vec![crate::engine::Ulimit {
            name: "nofile".into(),
            soft: 1024,
            hard: -1,
        }];
        let spec = json(&run);
        assert!(
            shm_options(&spec)
                .as_array()
                .unwrap()
                .contains(&"size=268435456".into())
        );
        assert_eq!(
            spec["process"]["rlimits"],
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": u64::MAX}])
        );
    }

    #[test]
    fn docker_s_capabilities_and_isolation() {
        let spec = json(&run_spec());
        let caps = &spec["process"]["capabilities"];
        let expected: Vec<String> = {
            let mut names: Vec<String> = [
                "CAP_AUDIT_WRITE",
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_KILL",
                "CAP_MKNOD",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW",
                "CAP_SETFCAP",
                "CAP_SETGID",
                "CAP_SETPCAP",
                "CAP_SETUID",
                "CAP_SYS_CHROOT",
            ]
            .map(String::from)
            .to_vec();
            names.sort();
            names
        };
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(strings(&caps[set]), expected, "{set}");
        }
        assert!(caps.get("ambient").is_none() && caps.get("inheritable").is_none());

        let linux = &spec["linux"];
        let namespaces: Vec<&str> = linux["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(namespaces, ["pid", "ipc", "uts", "mount", "network"]);
        assert!(strings(&linux["maskedPaths"]).contains(&"/proc/kcore".to_owned()));
        assert!(strings(&linux["readonlyPaths"]).contains(&"/proc/sys".to_owned()));
        assert!(linux.get("seccomp").is_none());
        assert_eq!(linux["cgroupsPath"], "/imgbuild/imgbuild-test-1");
        let rules = linux["resources"]["devices"].as_array().unwrap();
        assert_eq!(
            rules[0],
            serde_json::json!({"allow": false, "access": "rwm"})
        );
        let devices: Vec<&str> = linux["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            devices,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty"
            ]
        );
    }

    #[test]
    fn mounts_follow_buildkit_and_later_ones_replace_earlier() {
        let mut run = run_spec();
        run.mounts = vec![
            RunMount::Tmpfs {
                target: "/tmp".into(),
                size: Some(1 << 20),
                read_only: false,
            },
            RunMount::Bind {
                source: PathBuf::from("/cache/go"),
                target: "/root/go".into(),
                read_only: true,
            },
            RunMount::Bind {
                source: PathBuf::from("/my/hosts"),
                target: "/etc/hosts".into(),
                read_only: true,
            },
        ];
        let spec = json(&run);
        assert_eq!(
            destinations(&spec),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/etc/resolv.conf",
                "/etc/hosts",
                "/sys/fs/cgroup",
                "/tmp",
                "/root/go"
            ]
        );
        let mounts = spec["mounts"].as_array().unwrap();
        let at = |dest: &str| mounts.iter().find(|m| m["destination"] == dest).unwrap();
        assert_eq!(at("/etc/hosts")["source"], "/my/hosts");
        assert_eq!(at("/etc/resolv.conf")["source"], "/bundle/resolv.conf");
        assert_eq!(
            at("/tmp")["options"],
            serde_json::json!(["nosuid", "size=1048576"]),
            "exec and dev allowed, as BuildKit's tmpfs"
        );
        assert_eq!(
            at("/root/go")["options"],
            serde_json::json!(["rbind", "ro"])
        );
        assert!(strings(&at("/sys")["options"]).contains(&"ro".to_owned()));
        assert!(!destinations(&spec).contains(&"/run".to_owned()));
    }

    #[test]
    fn host_network_keeps_the_host_namespace() {
        let mut run = run_spec();
        run.network = Network::Host;
        let spec = build(
            &run,
            "x",
            &Host {
                cgroup_namespace: true,
                ..host()
            },
        )
        .unwrap();
        let namespaces: Vec<LinuxNamespaceType> = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert!(!namespaces.contains(&LinuxNamespaceType::Network));
        assert!(namespaces.contains(&LinuxNamespaceType::Cgroup));
        assert!(
            namespaces.contains(&LinuxNamespaceType::Uts),
            "own hostname"
        );
    }

    #[test]
    fn privileged_is_buildkit_s_insecure_mode() {
        let mut run = run_spec();
        run.privileged = true;
        let spec = json(&run);
        let caps = &spec["process"]["capabilities"];
        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            let names = strings(&caps[set]);
            assert_eq!(names.len(), 41, "{set}");
            assert!(names.contains(&"CAP_SYS_ADMIN".to_owned()), "{set}");
        }
        // No more than imgbuild has: here, all but CAP_SYS_RESOURCE (24).
        let limited = build(
            &run,
            "x",
            &Host {
                capabilities: ((1 << 41) - 1) & !(1 << 24),
                ..host()
            },
        )
        .unwrap();
        let caps = limited
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        let bounding = caps.bounding().as_ref().unwrap();
        assert_eq!(bounding.len(), 40);
        assert!(!bounding.contains(&Capability::SysResource));
        assert_eq!(spec["linux"]["maskedPaths"], serde_json::json!([]));
        assert_eq!(spec["linux"]["readonlyPaths"], serde_json::json!([]));
        let mounts = spec["mounts"].as_array().unwrap();
        let sys = mounts.iter().find(|m| m["destination"] == "/sys").unwrap();
        assert!(!strings(&sys["options"]).contains(&"ro".to_owned()));
        let rules = spec["linux"]["resources"]["devices"].as_array().unwrap();
        assert!(rules.iter().all(|r| r["allow"] == true), "{rules:?}");
    }
}
