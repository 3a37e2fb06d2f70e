//! A layer blob as a stream of tar bytes: decompressed as its [`Compression`] says, and the SHA-256 of
//! what comes out (the diff ID), computed on a thread of its own while the tar is unpacked.

use std::io::{self, Read};
use std::sync::mpsc;

use oci_spec::image::Digest;

use super::error::{Error, Result};
use crate::oci::{Compression, HashingReader};

/// Unpacks a layer blob: `apply` reads the tar on this thread while a second thread
/// decompresses and hashes it, and the tar must then have the digest `diff_id`.
///
/// Decompressing and hashing cost about as much CPU as writing the files does (in the
/// kernel): unpacking the 455 MiB toolchain image on one thread, each was about half of
/// the samples. One after the other, as `tar -xz` does, a layer takes their sum; side by
/// side on two cores, about the larger of the two.
pub(super) fn unpack_blob<T>(
    blob: impl Read + Send,
    encoding: Compression,
    diff_id: &str,
    apply: impl FnOnce(&mut ReadAhead) -> Result<T>,
) -> Result<T> {
    let read_err = |source| Error::Io {
        context: format!("reading layer {diff_id}"),
        source,
    };
    std::thread::scope(|scope| {
        let (mut tar, feeder) = read_ahead();
        let decoding = scope.spawn(move || -> io::Result<Digest> {
            let mut hashing = HashingReader::new(encoding.decoder(blob)?);
            feeder.feed(&mut hashing);
            Ok(hashing.finish().1)
        });
        let applied = apply(&mut tar).and_then(|applied| {
            // What follows tar's end marker (its zero padding) is part of the diff ID too.
            io::copy(&mut tar, &mut io::sink()).map_err(read_err)?;
            Ok(applied)
        });
        // Gone, the reader stops a decoder that is still feeding it (after an error).
        drop(tar);
        let decoded = decoding
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the thread decoding it panicked")));
        let applied = applied?;
        // The reader saw the end of the stream, so the decoder read the whole blob.
        let actual = decoded.map_err(read_err)?.to_string();
        if actual != diff_id {
            return Err(Error::DiffIdMismatch {
                expected: diff_id.to_owned(),
                actual,
            });
        }
        Ok(applied)
    })
}

/// Bytes moved from the decoding thread to the applying one per hand-over; [`DEPTH`] of
/// them may wait.
const CHUNK: usize = 256 << 10;
const DEPTH: usize = 8;

/// A pipe between two threads in memory: [`Feeder::feed`] reads a stream in chunks on one
/// thread, [`ReadAhead`] gives them back in order on another. Written here because std's
/// `io::pipe` copies every byte through the kernel twice, and no widely used crate offers a
/// thread-to-thread `Read`.
fn read_ahead() -> (ReadAhead, Feeder) {
    let (chunks_tx, chunks) = mpsc::sync_channel(DEPTH);
    let (spent, spent_rx) = mpsc::sync_channel(DEPTH + 1);
    (
        ReadAhead {
            chunks,
            spent,
            current: Vec::new(),
            at: 0,
        },
        Feeder {
            chunks: chunks_tx,
            spent: spent_rx,
        },
    )
}

/// The reading end: the stream's bytes, an error where the stream failed, and its end once
/// the feeder has read all of it.
pub(super) struct ReadAhead {
    chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
    /// Chunks read, back to the feeder to be filled again.
    spent: mpsc::SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.chunks.recv() {
                Ok(Ok(next)) => {
                    let spent = std::mem::replace(&mut self.current, next);
                    self.at = 0;
                    let _ = self.spent.try_send(spent);
                }
                Ok(Err(e)) => return Err(e),
                // The feeder is done: it sent an error before stopping, if it failed.
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let left = &self.current[self.at..];
        let n = buf.len().min(left.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.at += n;
        Ok(n)
    }
}

/// The feeding end.
struct Feeder {
    chunks: mpsc::SyncSender<io::Result<Vec<u8>>>,
    spent: mpsc::Receiver<Vec<u8>>,
}

impl Feeder {
    /// Reads `from` to its end, or until it fails (the error goes to the reader), or until
    /// the reader is dropped.
    fn feed(self, from: &mut impl Read) {
        loop {
            let mut chunk = self.spent.try_recv().unwrap_or_default();
            chunk.resize(CHUNK, 0);
            let filled = match fill(from, &mut chunk) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) => {
                    let _ = self.chunks.send(Err(e));
                    return;
                }
            };
            chunk.truncate(filled);
            if self.chunks.send(Ok(chunk)).is_err() {
                return;
            }
        }
    }
}

/// Reads into `buf` until it is full or the stream ends; how much was read.
fn fill(from: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match from.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};
    use std::io::Write;

    fn digest_of(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    /// Bytes with no period that lines up with [`CHUNK`], several chunks long.
    fn stream(len: usize) -> Vec<u8> {
        (0..len as u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn every_encoding_yields_the_tar_and_its_digest() {
        let tar = stream(3 * CHUNK + 12_345);
        let half = tar.len() / 2;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar[..half]).unwrap();
        let mut gzip = gz.finish().unwrap();
        // A second member, as parallel gzip writers produce.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar[half..]).unwrap();
        gzip.extend(gz.finish().unwrap());
        let zstd = zstd::encode_all(&tar[..], 3).unwrap();
        for (encoding, blob) in [
            (Compression::Uncompressed, tar.clone()),
            (Compression::Gzip, gzip),
            (Compression::Zstd, zstd),
        ] {
            // Read in odd sizes, so reads straddle the chunks handed over.
            let read = unpack_blob(&blob[..], encoding, &digest_of(&tar), |r| {
                let mut out = Vec::new();
                let mut buf = vec![0; 7_919];
                loop {
                    let n = r.read(&mut buf).unwrap();
                    if n == 0 {
                        return Ok(out);
                    }
                    out.extend_from_slice(&buf[..n]);
                }
            })
            .unwrap();
            assert!(
                read == tar,
                "{encoding:?}: the bytes read differ from the tar"
            );
        }
    }

    #[test]
    fn what_the_applier_leaves_unread_still_counts_towards_the_diff_id() {
        let tar = stream(2 * CHUNK);
        let first = unpack_blob(&tar[..], Compression::Uncompressed, &digest_of(&tar), |r| {
            let mut first = vec![0; 1000];
            r.read_exact(&mut first).unwrap();
            Ok(first)
        })
        .unwrap();
        assert_eq!(first, tar[..1000]);

        let other = digest_of(b"another layer");
        let err = unpack_blob(&tar[..], Compression::Uncompressed, &other, |_| Ok(())).unwrap_err();
        match err {
            Error::DiffIdMismatch { expected, actual } => {
                assert_eq!(expected, other);
                assert_eq!(actual, digest_of(&tar));
            }
            e => panic!("expected a diff ID mismatch, got {e}"),
        }
    }

    #[test]
    fn a_corrupt_blob_is_an_error_for_the_reader() {
        let err = unpack_blob(&b"not gzip"[..], Compression::Gzip, "sha256:00", |r| {
            let mut out = Vec::new();
            r.read_to_end(&mut out).map_err(|source| Error::Io {
                context: "applying".into(),
                source,
            })
        })
        .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn an_applier_that_fails_stops_the_decoder() {
        // Far more than the chunks that may wait: a decoder that did not stop would block
        // for ever on a full channel, and this test would hang.
        let tar = stream((DEPTH + 4) * CHUNK);
        let err = unpack_blob(&tar[..], Compression::Uncompressed, &digest_of(&tar), |r| {
            let mut first = [0; 10];
            r.read_exact(&mut first).unwrap();
            Err::<(), _>(Error::Invalid("refused".into()))
        })
        .unwrap_err();
        assert!(
            matches!(err, Error::Invalid(ref m) if m == "refused"),
            "{err}"
        );
    }
}
