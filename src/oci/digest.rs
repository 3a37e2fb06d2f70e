//! sha256 digests: computed while data streams through a writer, and verified while a blob
//! is read, so no blob is ever read twice to be checked.

use std::io::{self, Read, Write};
use std::str::FromStr;

use oci_spec::image::{Digest, DigestAlgorithm, Sha256Digest};
use sha2::{Digest as _, Sha256};

use super::error::{Error, Result};

/// The sha256 digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    digest_of(Sha256::new_with_prefix(bytes))
}

/// The digest a finished hasher stands for.
pub(crate) fn digest_of(hasher: Sha256) -> Digest {
    let hex = hex::encode(hasher.finalize());
    // A sha256 output is always 64 lowercase hex digits, which is all `Sha256Digest` checks.
    let digest = Sha256Digest::from_str(&hex).expect("sha256 output is a valid sha256 digest");
    digest.into()
}

/// Checks that a digest is one imgbuild can verify (sha256), naming `what` if not.
pub(crate) fn require_sha256(digest: &Digest, what: &str) -> Result<()> {
    if *digest.algorithm() == DigestAlgorithm::Sha256 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} has digest {digest}, but imgbuild only verifies sha256 digests"
        )))
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, still being written through.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer, the digest and the number of bytes written.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, digest_of(self.hasher), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or(buf);
        self.hasher.update(written);
        self.written += written.len() as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// The inner reader, the digest and the number of bytes read so far.
    pub fn finish(self) -> (R, Digest, u64) {
        (self.inner, digest_of(self.hasher), self.read)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or(buf));
        self.read += n as u64;
        Ok(n)
    }
}

/// A reader that checks, at the end of the data, that it had the expected digest and size.
/// A mismatch is an `InvalidData` error wrapping [`Error::CorruptBlob`], so it names the blob
/// wherever it surfaces.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    expected: Digest,
    expected_size: Option<u64>,
    verified: bool,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: Option<u64>) -> Self {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
            expected,
            expected_size,
            verified: false,
        }
    }

    fn corrupt(&self, problem: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            Error::CorruptBlob {
                digest: self.expected.to_string(),
                problem,
            },
        )
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.verified || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(buf.get(..n).unwrap_or(buf));
            self.read += n as u64;
            if let Some(size) = self.expected_size.filter(|size| self.read > *size) {
                return Err(self.corrupt(format!("it is longer than the {size} bytes expected")));
            }
            return Ok(n);
        }
        if let Some(size) = self.expected_size.filter(|size| self.read != *size) {
            return Err(self.corrupt(format!("it has {} bytes, {size} expected", self.read)));
        }
        let actual = digest_of(std::mem::take(&mut self.hasher));
        if actual != self.expected {
            return Err(self.corrupt(format!("its content has digest {actual}")));
        }
        self.verified = true;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        // sha256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_digest(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn verifying_reader_accepts_matching_content() {
        let mut out = Vec::new();
        let mut r = VerifyingReader::new(&b"hello"[..], sha256_digest(b"hello"), Some(5));
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello");
    }

    #[test]
    fn verifying_reader_names_the_blob_on_mismatch() {
        let expected = sha256_digest(b"hello");
        let mut r = VerifyingReader::new(&b"hellO"[..], expected.clone(), Some(5));
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains(&expected.to_string()), "{err}");
    }

    #[test]
    fn verifying_reader_rejects_wrong_size() {
        let mut r = VerifyingReader::new(&b"hello"[..], sha256_digest(b"hello"), Some(4));
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("longer than the 4 bytes"), "{err}");
    }

    #[test]
    fn hashing_writer_counts_and_hashes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (inner, digest, n) = w.finish();
        assert_eq!((inner.as_slice(), n), (&b"abc"[..], 3));
        assert_eq!(digest, sha256_digest(b"abc"));
    }
}
