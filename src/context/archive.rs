//! Whether an `ADD` source is a tar archive to extract, decided as BuildKit's
//! `isArchivePath`: a regular file that, once decompressed (gzip, bzip2, xz, zstd or none),
//! starts with a valid tar header. The name does not matter; an empty tar is not an
//! archive (it is copied as a file).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context as _;

use super::Error;

const GZIP: &[u8] = &[0x1f, 0x8b];
const BZIP2: &[u8] = b"BZh";
const XZ: &[u8] = &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const BLOCK: usize = 512;

/// Opens a context file without following a symlink put in its place since selection.
pub fn open_no_follow(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

pub fn is_tar_archive(path: &Path) -> Result<bool, Error> {
    let file = open_no_follow(path).with_context(|| format!("reading `{}`", path.display()))?;
    let mut reader = BufReader::new(file);
    let magic = reader
        .fill_buf()
        .with_context(|| format!("reading `{}`", path.display()))?
        .to_vec();
    let mut head = Vec::with_capacity(2 * BLOCK);
    // A decompression error means "not an archive", as in BuildKit.
    let read = if magic.starts_with(GZIP) {
        read_head(flate2::read::MultiGzDecoder::new(reader), &mut head)
    } else if magic.starts_with(BZIP2) {
        read_head(bzip2::read::MultiBzDecoder::new(reader), &mut head)
    } else if magic.starts_with(ZSTD) {
        match zstd::stream::read::Decoder::with_buffer(reader) {
            Ok(decoder) => read_head(decoder, &mut head),
            Err(_) => return Ok(false),
        }
    } else if magic.starts_with(XZ) {
        // BuildKit runs `xz -d` too: no pure-Rust xz decoder is as widely used.
        return xz_head(path, &mut head).map(|()| looks_like_tar(&head));
    } else {
        read_head(reader, &mut head)
    };
    Ok(read.is_ok() && looks_like_tar(&head))
}

/// Opens an archive (an ADD source, a context on standard input), decompressing gzip,
/// bzip2, xz or zstd by their magic bytes (xz through the `xz` program, as BuildKit does).
pub fn open_archive(path: &Path) -> Result<Box<dyn Read + Send>, Error> {
    let opening = || format!("opening `{}`", path.display());
    let mut reader = BufReader::new(open_no_follow(path).with_context(opening)?);
    let magic = reader.fill_buf().with_context(opening)?;
    Ok(if magic.starts_with(GZIP) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if magic.starts_with(BZIP2) {
        Box::new(bzip2::read::MultiBzDecoder::new(reader))
    } else if magic.starts_with(ZSTD) {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader).with_context(opening)?)
    } else if magic.starts_with(XZ) {
        let child = Command::new("xz")
            .args(["-dc", "--"])
            .arg(path)
            .stdout(Stdio::piped())
            .spawn()
            .context("running `xz -dc` to extract an .xz archive (install xz-utils)")?;
        Box::new(child.stdout.context("no output from xz")?)
    } else {
        Box::new(reader)
    })
}

/// Reads up to two tar blocks.
fn read_head(reader: impl Read, head: &mut Vec<u8>) -> std::io::Result<()> {
    reader.take(2 * BLOCK as u64).read_to_end(head).map(|_| ())
}

fn xz_head(path: &Path, head: &mut Vec<u8>) -> Result<(), Error> {
    let file = open_no_follow(path).with_context(|| format!("reading `{}`", path.display()))?;
    let mut child = Command::new("xz")
        .args(["-d", "-c", "-q"])
        .stdin(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "`{}` is xz-compressed and checking it needs the `xz` command (apt-get install xz-utils)",
                path.display()
            )
        })?;
    if let Some(stdout) = child.stdout.take() {
        // An error here is a corrupt stream: not an archive.
        let _ = read_head(stdout, head);
    }
    // Only the first blocks matter: stop xz rather than decompress the rest.
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

/// Whether the first block is a tar header Go's `archive/tar` accepts: not all zeros, and
/// its checksum (unsigned or signed, as Go checks) matches.
fn looks_like_tar(head: &[u8]) -> bool {
    let Some(block) = head.get(..BLOCK) else {
        return false;
    };
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let Some(recorded) = block.get(148..156).and_then(parse_octal) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, byte) in block.iter().enumerate() {
        let byte = if (148..156).contains(&i) { b' ' } else { *byte };
        unsigned += i64::from(byte);
        signed += i64::from(byte as i8);
    }
    recorded == unsigned || recorded == signed
}

fn parse_octal(field: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    i64::from_str_radix(text, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_bytes() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "hello.txt", &b"hello"[..])
            .unwrap();
        builder.into_inner().unwrap()
    }

    fn check(name: &str, bytes: &[u8]) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        is_tar_archive(&path).unwrap()
    }

    #[test]
    fn plain_and_compressed_tars_are_archives() {
        let tar = tar_bytes();
        assert!(check("a.bin", &tar), "the name does not matter");

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        assert!(check("a.tgz", &gz.finish().unwrap()));

        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&tar).unwrap();
        assert!(check("a.tar.bz2", &bz.finish().unwrap()));

        assert!(check("a.tar.zst", &zstd::encode_all(&tar[..], 3).unwrap()));

        let xz = Command::new("xz")
            .args(["-z", "-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(&tar)?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(check("a.tar.xz", &xz.stdout));
    }

    #[test]
    fn other_files_are_not_archives() {
        assert!(!check("notes.tar", b"just some text, not a tar header"));
        assert!(
            !check("empty.tar", &[0u8; 1024]),
            "an empty tar is copied as a file"
        );
        assert!(!check("zero", b""));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"compressed text, not a tar").unwrap();
        assert!(!check("text.gz", &gz.finish().unwrap()));
        let mut corrupt = tar_bytes();
        corrupt[0] ^= 0x55;
        assert!(
            !check("corrupt.tar", &corrupt),
            "a bad checksum is not a tar"
        );
    }
}
