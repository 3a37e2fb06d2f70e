//! RUN steps of an image for another architecture: an arm64 busybox (Debian's
//! busybox-static for arm64) on this amd64 machine. With qemu-user-static's binfmt_misc
//! handler registered (`scripts/test-env` registers it where the kernel lets it), the
//! step runs emulated and `uname -m` says `aarch64`, on both executors; without it the build
//! is refused before any step runs, naming the step, the image and the architecture. It
//! never runs as this machine's programs.

mod support;

use support::{
    arm64_emulation_registered, busybox_arm64_in_registry, busybox_in_registry, imgbuild, tempdir,
};

#[test]
fn an_arm64_run_step_runs_emulated_or_is_refused_before_the_build_starts() {
    let arm64 = busybox_arm64_in_registry();
    let context = tempdir();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM --platform=linux/arm64 {arm64} AS arm\nRUN uname -m > /machine\n\n\
             FROM {}\nCOPY --from=arm /machine /machine\n",
            busybox_in_registry()
        ),
    )
    .unwrap();
    for executor in ["native", "engine"] {
        let out_dir = tempdir();
        let dest = out_dir.path().join("fs");
        let out = imgbuild()
            .args([
                "build",
                "--progress",
                "plain",
                "--no-cache",
                "--executor",
                executor,
            ])
            .arg(format!("--output=type=local,dest={}", dest.display()))
            .arg("--cache-dir")
            .arg(out_dir.path().join("cache"))
            .arg(context.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if arm64_emulation_registered() {
            assert!(out.status.success(), "{executor}: {stderr}");
            let machine = std::fs::read_to_string(dest.join("machine")).unwrap();
            assert_eq!(machine, "aarch64\n", "{executor}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{executor}: {stderr}");
            assert!(
                stderr.contains(&format!(
                    "Dockerfile:2: RUN uname -m > /machine: the stage runs on the image {arm64}, built for arm64, and this machine (amd64) cannot run its programs"
                )),
                "{executor}: {stderr}"
            );
            assert!(!stderr.contains("#2 [arm 2/2]"), "a step ran: {stderr}");
            assert!(!dest.exists());
        }
    }
}
