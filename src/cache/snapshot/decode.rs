//! A layer blob as a stream of tar bytes: decompression by media type, and the SHA-256 of
//! what comes out (the diff ID), computed while the tar is unpacked.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerEncoding {
    Uncompressed,
    Gzip,
    Zstd,
}

impl LayerEncoding {
    /// The encoding of an OCI or Docker layer media type (`…tar`, `…tar+gzip`,
    /// `…tar.gzip`, `…tar+zstd`, their non-distributable variants); `None` for others.
    pub fn from_media_type(media_type: &str) -> Option<LayerEncoding> {
        let layer = media_type.starts_with("application/vnd.oci.image.layer.")
            || media_type.starts_with("application/vnd.docker.image.rootfs.");
        if !layer {
            return None;
        }
        if media_type.ends_with("tar+gzip") || media_type.ends_with("tar.gzip") {
            Some(LayerEncoding::Gzip)
        } else if media_type.ends_with("tar+zstd") {
            Some(LayerEncoding::Zstd)
        } else if media_type.ends_with(".tar") {
            Some(LayerEncoding::Uncompressed)
        } else {
            None
        }
    }

    /// A reader of the uncompressed tar. Concatenated gzip members and zstd frames are
    /// read as one stream, so the end of the output is the end of the blob.
    pub(super) fn decoder<'a>(self, blob: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        let blob = io::BufReader::with_capacity(1 << 16, blob);
        Ok(match self {
            LayerEncoding::Uncompressed => Box::new(blob),
            LayerEncoding::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(blob)),
            LayerEncoding::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(blob)?),
        })
    }
}

/// Hashes and counts everything read through it.
pub(super) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Reads what is left (tar's zero padding after the end marker), then returns the
    /// `sha256:…` digest and length of the whole stream.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.len,
        ))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = buf.get(..n).unwrap_or_default();
        self.hasher.update(read);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn media_types() {
        use LayerEncoding::*;
        for (mt, want) in [
            ("application/vnd.oci.image.layer.v1.tar", Some(Uncompressed)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Gzip),
            ),
            ("application/vnd.oci.image.layer.v1.tar+bzip2", None),
            ("application/vnd.oci.image.config.v1+json", None),
        ] {
            assert_eq!(LayerEncoding::from_media_type(mt), want, "{mt}");
        }
    }

    fn digest_of(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    #[test]
    fn every_encoding_yields_the_tar_and_its_digest() {
        let tar: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar[..50_000]).unwrap();
        let mut gzip = gz.finish().unwrap();
        // A second member, as parallel gzip writers produce.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar[50_000..]).unwrap();
        gzip.extend(gz.finish().unwrap());
        let zstd = zstd::encode_all(&tar[..], 3).unwrap();
        for (encoding, blob) in [
            (LayerEncoding::Uncompressed, tar.clone()),
            (LayerEncoding::Gzip, gzip),
            (LayerEncoding::Zstd, zstd),
        ] {
            let mut reader = Hashing::new(encoding.decoder(&blob[..]).unwrap());
            let mut first = vec![0; 1000];
            reader.read_exact(&mut first).unwrap();
            assert_eq!(first, tar[..1000], "{encoding:?}");
            let (digest, len) = reader.finish().unwrap();
            assert_eq!(digest, digest_of(&tar), "{encoding:?}");
            assert_eq!(len, tar.len() as u64);
        }
    }

    #[test]
    fn a_corrupt_blob_is_an_error() {
        let mut reader = Hashing::new(LayerEncoding::Gzip.decoder(&b"not gzip"[..]).unwrap());
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).is_err());
    }
}
