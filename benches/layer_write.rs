//! Writes one layer from a directory tree, for `scripts/bench-layer` (which compares it
//! with `tar | pigz` and measures peak memory). Not a timed test: run it by hand.
//!
//! Usage: layer_write SRC_DIR BLOB_DIR gzip|zstd
//! Prints one line: `compression seconds input_bytes output_bytes digest diff_id`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use imgbuild::oci::{AddOptions, BlobStore, Compression, LayerBuilder, LayerOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [src, blobs, compression] = args.as_slice() else {
        // `cargo bench` runs every bench target without arguments: nothing to do.
        #[allow(clippy::print_stderr)]
        {
            eprintln!("usage: layer_write SRC_DIR BLOB_DIR gzip|zstd (see scripts/bench-layer)");
        }
        return ExitCode::SUCCESS;
    };
    let compression = match compression.as_str() {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        other => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("unknown compression {other}");
            }
            return ExitCode::from(2);
        }
    };
    let result = (|| -> anyhow::Result<String> {
        let store = BlobStore::open(PathBuf::from(blobs))?;
        let start = Instant::now();
        let mut builder = LayerBuilder::new(store, LayerOptions::new(compression, 0));
        builder.add_dir(&PathBuf::from(src), &AddOptions::default())?;
        let layer = builder.write()?;
        let seconds = start.elapsed().as_secs_f64();
        Ok(format!(
            "{} {seconds:.3} {} {} {} {}",
            args[2],
            layer.uncompressed_size,
            layer.descriptor.size(),
            layer.descriptor.digest(),
            layer.diff_id
        ))
    })();
    #[allow(clippy::print_stdout, clippy::print_stderr)]
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
