//! Whether this machine's kernel can run another architecture's programs: through a
//! `binfmt_misc` handler, as Debian's `qemu-user-static` registers them (`qemu-aarch64`,
//! …). A RUN step of an image for another platform runs under that emulation, or is
//! refused before the build starts: it never runs as something else.

use std::path::Path;

/// Where the kernel shows its `binfmt_misc` handlers.
const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// This machine's architecture, in the OCI (Go) names images use: `amd64`, `arm64`, ….
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `Ok` when programs of `architecture` (an OCI name) run here: it is this machine's, or a
/// `binfmt_misc` handler for it is registered and enabled. `Err` says why not, in a line.
pub fn can_run(architecture: &str) -> Result<(), String> {
    can_run_in(Path::new(BINFMT_DIR), host_architecture(), architecture)
}

fn can_run_in(binfmt: &Path, host: &str, architecture: &str) -> Result<(), String> {
    if architecture == host || compatible(host, architecture) {
        return Ok(());
    }
    let Some(qemu) = qemu_name(architecture) else {
        return Err(format!(
            "imgbuild knows no emulator for the {architecture} architecture"
        ));
    };
    let status = std::fs::read_to_string(binfmt.join("status")).map_err(|_| {
        format!(
            "binfmt_misc is not mounted at {} (mount -t binfmt_misc binfmt_misc {})",
            binfmt.display(),
            binfmt.display()
        )
    })?;
    if status.trim() != "enabled" {
        return Err("binfmt_misc is disabled on this machine".to_owned());
    }
    let handler = binfmt.join(format!("qemu-{qemu}"));
    match std::fs::read_to_string(&handler) {
        Ok(text) if text.lines().next() == Some("enabled") => Ok(()),
        Ok(_) => Err(format!("the binfmt_misc handler qemu-{qemu} is disabled")),
        Err(_) => Err(format!(
            "no binfmt_misc handler for {qemu} is registered (no {})",
            handler.display()
        )),
    }
}

/// Architectures an x86-64 or arm64 kernel runs without emulation.
fn compatible(host: &str, architecture: &str) -> bool {
    matches!((host, architecture), ("amd64", "386") | ("arm64", "arm"))
}

/// qemu's name of an OCI architecture, as its binfmt handlers are named.
fn qemu_name(architecture: &str) -> Option<&'static str> {
    Some(match architecture {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "arm" => "arm",
        "386" => "i386",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64le" => "mips64el",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binfmt(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in entries {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn the_host_s_own_architecture_needs_nothing() {
        let none = binfmt(&[]);
        assert_eq!(can_run_in(none.path(), "amd64", "amd64"), Ok(()));
        assert_eq!(can_run_in(none.path(), "amd64", "386"), Ok(()));
    }

    #[test]
    fn a_foreign_architecture_needs_an_enabled_handler() {
        let registered = binfmt(&[
            ("status", "enabled\n"),
            (
                "qemu-aarch64",
                "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\n",
            ),
        ]);
        assert_eq!(can_run_in(registered.path(), "amd64", "arm64"), Ok(()));
        let err = can_run_in(registered.path(), "amd64", "s390x").unwrap_err();
        assert!(
            err.starts_with("no binfmt_misc handler for s390x is registered"),
            "{err}"
        );

        let disabled = binfmt(&[("status", "enabled\n"), ("qemu-aarch64", "disabled\n")]);
        let err = can_run_in(disabled.path(), "amd64", "arm64").unwrap_err();
        assert_eq!(err, "the binfmt_misc handler qemu-aarch64 is disabled");

        let unmounted = binfmt(&[]);
        let err = can_run_in(unmounted.path(), "amd64", "arm64").unwrap_err();
        assert!(err.starts_with("binfmt_misc is not mounted"), "{err}");

        let err = can_run_in(unmounted.path(), "amd64", "wasm").unwrap_err();
        assert!(
            err.contains("no emulator for the wasm architecture"),
            "{err}"
        );
    }
}
