//! The single pass from tar bytes to a stored blob: the uncompressed stream is hashed
//! (diff_id), compressed on every core, and the compressed stream hashed and counted on
//! its way to the file. Nothing is buffered beyond the compressors' working blocks. An
//! uncompressed blob is the tar itself: hashed once, its digest is its diff_id.
//!
//! Both encoders give the same bytes whatever the number of threads: gzp cuts the input
//! into fixed 128 KiB blocks, each deflated with the previous block's last 32 KiB as
//! dictionary (as pigz does), and zstd's multi-threaded mode produces one output for any
//! worker count of at least one.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use gzp::ZWriter;
use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use oci_spec::image::Digest;

use super::super::Compression;
use super::super::digest::HashingWriter;

/// gzip level 6, the default of gzip, pigz and Go's compress/gzip.
const GZIP_LEVEL: u32 = 6;
/// zstd level 3, zstd's default.
const ZSTD_LEVEL: i32 = 3;
/// Bytes of input per zstd worker job.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

type Sink = HashingWriter<BufWriter<File>>;

/// Digests and sizes of a written layer blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BlobDigests {
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub digest: Digest,
    pub size: u64,
}

enum Encoder {
    Gzip(ParGzip),
    Zstd(zstd::stream::write::Encoder<'static, Sink>),
    Plain(BufWriter<File>),
}

/// gzp's encoder panics if finishing fails inside its `Drop`; this wrapper finishes it
/// first and ignores the outcome when a layer is abandoned half-way.
struct ParGzip(Option<ParCompress<'static, Gzip, Sink>>);

impl Drop for ParGzip {
    fn drop(&mut self) {
        if let Some(mut inner) = self.0.take() {
            let _ = inner.finish();
        }
    }
}

/// A writer of uncompressed tar bytes that produces a compressed blob file.
pub(super) struct BlobWriter {
    inner: HashingWriter<Encoder>,
}

impl BlobWriter {
    /// Compresses into `file` with `threads` compression threads (at least one).
    pub fn new(file: File, compression: Compression, threads: usize) -> io::Result<Self> {
        let file = BufWriter::with_capacity(1 << 20, file);
        let threads = threads.max(1);
        let encoder = match compression {
            Compression::Uncompressed => Encoder::Plain(file),
            Compression::Gzip => {
                let par = ParCompressBuilder::<Gzip>::new()
                    .num_threads(threads)
                    .map_err(io::Error::other)?
                    .compression_level(gzp::Compression::new(GZIP_LEVEL))
                    .from_writer(HashingWriter::new(file));
                Encoder::Gzip(ParGzip(Some(par)))
            }
            Compression::Zstd => {
                let mut enc =
                    zstd::stream::write::Encoder::new(HashingWriter::new(file), ZSTD_LEVEL)?;
                enc.multithread(u32::try_from(threads).unwrap_or(1))?;
                // zstd's default job for level 3 is 8 MiB per worker, plus buffers: tens of
                // MB. Fixed smaller jobs bound memory; being fixed, they keep the output the
                // same on every machine.
                enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                Encoder::Zstd(enc)
            }
        };
        Ok(BlobWriter {
            inner: HashingWriter::new(encoder),
        })
    }

    /// Ends the compressed stream and returns the digests; the file is complete on return.
    pub fn finish(self) -> io::Result<BlobDigests> {
        let (encoder, diff_id, uncompressed_size) = self.inner.finish();
        let sink = match encoder {
            Encoder::Gzip(mut par) => match par.0.take() {
                Some(mut inner) => inner.finish().map_err(io::Error::other)?,
                None => return Err(io::Error::other("gzip encoder already finished")),
            },
            Encoder::Zstd(enc) => enc.finish()?,
            Encoder::Plain(mut file) => {
                file.flush()?;
                return Ok(BlobDigests {
                    digest: diff_id.clone(),
                    size: uncompressed_size,
                    diff_id,
                    uncompressed_size,
                });
            }
        };
        let (mut file, digest, size) = sink.finish();
        file.flush()?;
        Ok(BlobDigests {
            diff_id,
            uncompressed_size,
            digest,
            size,
        })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    // Deliberately not forwarded: a flush would cut a gzp block early and change the bytes.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(ParGzip(Some(par))) => par.write(buf),
            Encoder::Gzip(ParGzip(None)) => Err(io::Error::other("gzip encoder already finished")),
            Encoder::Zstd(enc) => enc.write(buf),
            Encoder::Plain(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    /// Compressible but not trivial input, a few MB.
    fn sample() -> Vec<u8> {
        let mut state = 0x2545f491u32;
        (0..3_000_000)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                if i % 7 == 0 {
                    (state % 26) as u8 + b'a'
                } else {
                    b"layer bytes "[i % 12]
                }
            })
            .collect()
    }

    fn compress(data: &[u8], compression: Compression, threads: usize) -> (Vec<u8>, BlobDigests) {
        let mut file = tempfile::tempfile().unwrap();
        let mut w = BlobWriter::new(file.try_clone().unwrap(), compression, threads).unwrap();
        // Odd write sizes: block boundaries must not depend on them.
        for chunk in data.chunks(7919 * threads) {
            w.write_all(chunk).unwrap();
        }
        let digests = w.finish().unwrap();
        file.rewind().unwrap();
        let mut out = Vec::new();
        file.read_to_end(&mut out).unwrap();
        (out, digests)
    }

    #[test]
    fn output_does_not_depend_on_thread_count() {
        let data = sample();
        for compression in [Compression::Gzip, Compression::Zstd] {
            let (one, d1) = compress(&data, compression, 1);
            let (four, d4) = compress(&data, compression, 4);
            assert!(
                one == four,
                "{compression:?} output differs between 1 and 4 threads"
            );
            assert_eq!(d1, d4);
            assert_eq!(d1.size, one.len() as u64);
            assert_eq!(d1.digest, crate::oci::digest::sha256_digest(&one));
            assert_eq!(d1.diff_id, crate::oci::digest::sha256_digest(&data));
        }
    }

    #[test]
    fn an_uncompressed_blob_is_the_tar_and_its_digest_the_diff_id() {
        let data = sample();
        let (plain, digests) = compress(&data, Compression::Uncompressed, 2);
        assert!(plain == data);
        assert_eq!(digests.digest, digests.diff_id);
        assert_eq!(digests.diff_id, crate::oci::digest::sha256_digest(&data));
        assert_eq!(
            (digests.size, digests.uncompressed_size),
            (data.len() as u64, data.len() as u64)
        );
    }

    #[test]
    fn output_decompresses_to_the_input() {
        let data = sample();
        let (gz, _) = compress(&data, Compression::Gzip, 2);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
        let (zst, _) = compress(&data, Compression::Zstd, 2);
        assert!(zstd::decode_all(&zst[..]).unwrap() == data);
    }
}
