//! Runs one command the way a build's RUN step does, through `imgbuild::engine`: create,
//! attach, start, stream the output, wait, commit, remove; then removes the committed image
//! again and prints how long each part took.
//!
//! ```text
//! DOCKER_HOST=unix:///… cargo run --example engine_run -- IMAGE COMMAND [ARG…]
//! ```
//!
//! Output lines go to stdout as they arrive; the image id and timings go to stderr. SIGINT
//! and SIGTERM remove the container and exit 130/143. `tests/engine_cleanup.rs` interrupts
//! and kills this program mid-run to prove its containers never stay behind.

// A command-line program: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::time::Instant;

use imgbuild::engine::{Engine, ImageConfig, RunSpec};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((image, argv)) = args.split_first().filter(|(_, argv)| !argv.is_empty()) else {
        eprintln!("usage: engine_run IMAGE COMMAND [ARG…]");
        return ExitCode::from(2);
    };
    match run(image, argv).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            if let Some(hint) = err.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(image: &str, argv: &[String]) -> imgbuild::engine::Result<()> {
    let engine = Engine::connect().await?;
    let _interrupts = engine.exit_on_interrupt()?;

    let spec = RunSpec::new(image, argv);
    let started = Instant::now();
    let container = engine
        .run(&spec, &mut |line| println!("{}", line.text))
        .await?;
    let ran = started.elapsed();

    let started = Instant::now();
    let committed = engine.commit(&container, &ImageConfig::default()).await;
    let commit_time = started.elapsed();
    let started = Instant::now();
    engine.remove(container).await?;
    let remove_time = started.elapsed();
    let image_id = committed?;
    engine.remove_image(&image_id).await?;

    eprintln!("committed {image_id} (removed again)");
    eprintln!(
        "timing: run (create, attach, start, wait) {} ms, commit {} ms, remove {} ms",
        ran.as_millis(),
        commit_time.as_millis(),
        remove_time.as_millis()
    );
    Ok(())
}
