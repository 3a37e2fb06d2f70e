//! Runs one command the way a native build's RUN step does, through `imgbuild::runtime`: a
//! bundle in a temporary directory, `runc --root STATE_DIR run`, output streamed; then
//! prints how long it took.
//!
//! ```text
//! cargo run --example runc_run -- STATE_DIR ROOTFS COMMAND [ARG…]
//! ```
//!
//! ROOTFS is used as it is (no overlay): what the command writes stays there. Output lines
//! go to stdout as they arrive; the timing goes to stderr. `tests/runtime_runc.rs` kills
//! this program with SIGKILL mid-run to prove the next `cleanup_stale` deletes its
//! container.

// A command-line program: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use imgbuild::runtime::{self, RunSpec};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [state_dir, rootfs, argv @ ..] = args.as_slice() else {
        eprintln!("usage: runc_run STATE_DIR ROOTFS COMMAND [ARG…]");
        return ExitCode::from(2);
    };
    if argv.is_empty() {
        eprintln!("usage: runc_run STATE_DIR ROOTFS COMMAND [ARG…]");
        return ExitCode::from(2);
    }
    match run(Path::new(state_dir), Path::new(rootfs), argv).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    state_dir: &Path,
    rootfs: &Path,
    argv: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let runc = runtime::find()?;
    let bundle = tempfile::tempdir()?;
    let mut spec = RunSpec::new(std::path::absolute(rootfs)?, argv);
    spec.env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
    let started = Instant::now();
    let result = runc
        .run(state_dir, bundle.path(), &spec, &mut |line| {
            println!("{}", line.text)
        })
        .await;
    eprintln!("timing: {runc} run {} ms", started.elapsed().as_millis());
    Ok(result?)
}
