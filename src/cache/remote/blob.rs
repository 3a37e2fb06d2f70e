//! Cache layers as blobs: an uncompressed tar stream in, a gzip blob in the blob store out,
//! with both digests.

use std::io::{self, Read, Write};

use oci_spec::image::MediaType;

use crate::cache::LayerRecord;
use crate::oci::{self, HashingWriter};

impl From<&oci::WrittenLayer> for LayerRecord {
    fn from(layer: &oci::WrittenLayer) -> LayerRecord {
        LayerRecord {
            digest: layer.descriptor.digest().to_string(),
            diff_id: layer.diff_id.to_string(),
            size: layer.descriptor.size(),
            media_type: layer.descriptor.media_type().to_string(),
        }
    }
}

/// gzip level for cache layers: they are written on every export and read once per
/// runner, so speed counts more than the last few percent of size (level 1 is about three
/// times faster than 6 and 10–15 % larger). The same input gives the same bytes, so an
/// unchanged layer has the same digest and is not uploaded again.
const GZIP_LEVEL: u32 = 1;

/// Compresses the tar `reader` yields into `store`; returns its record (diff_id = digest of
/// the tar as read).
pub fn store_gzip_blob(store: &oci::BlobStore, mut reader: impl Read) -> oci::Result<LayerRecord> {
    let mut writer = GzipBlobWriter::new(store)?;
    io::copy(&mut reader, &mut writer).map_err(io_context)?;
    writer.finish()
}

fn io_context(e: io::Error) -> oci::Error {
    oci::Error::Io {
        context: "writing a cache layer".into(),
        source: e,
    }
}

/// A writer of tar bytes that becomes a gzip blob in the store on [`finish`](Self::finish);
/// dropped unfinished, it leaves nothing behind.
pub struct GzipBlobWriter {
    store: oci::BlobStore,
    temp: tempfile::NamedTempFile,
    tar: HashingWriter<flate2::write::GzEncoder<HashingWriter<io::BufWriter<std::fs::File>>>>,
}

impl GzipBlobWriter {
    pub fn new(store: &oci::BlobStore) -> oci::Result<GzipBlobWriter> {
        let temp = store.temp_file()?;
        let file = temp.as_file().try_clone().map_err(io_context)?;
        let compressed = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file));
        let encoder =
            flate2::write::GzEncoder::new(compressed, flate2::Compression::new(GZIP_LEVEL));
        Ok(GzipBlobWriter {
            store: store.clone(),
            temp,
            tar: HashingWriter::new(encoder),
        })
    }

    pub fn finish(self) -> oci::Result<LayerRecord> {
        let (encoder, diff_id, _) = self.tar.finish();
        let compressed = encoder.finish().map_err(io_context)?;
        let (mut out, digest, size) = compressed.finish();
        out.flush().map_err(io_context)?;
        drop(out);
        self.store.commit(self.temp, &digest)?;
        Ok(LayerRecord {
            digest: digest.to_string(),
            diff_id: diff_id.to_string(),
            size,
            media_type: MediaType::ImageLayerGzip.to_string(),
        })
    }
}

impl Write for GzipBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tar.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tar.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_describe_the_blob_and_the_tar() {
        let dir = tempfile::tempdir().unwrap();
        let store = oci::BlobStore::open(dir.path()).unwrap();
        let tar = vec![7u8; 100_000];
        let record = store_gzip_blob(&store, &tar[..]).unwrap();
        assert_eq!(record.diff_id, oci::sha256_digest(&tar).to_string());
        let digest = record.digest.parse().unwrap();
        let blob = std::fs::read(store.path(&digest)).unwrap();
        assert_eq!(blob.len() as u64, record.size);
        assert_eq!(oci::sha256_digest(&blob), digest);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, tar);
        // Deterministic: the same tar, the same blob.
        assert_eq!(store_gzip_blob(&store, &tar[..]).unwrap(), record);
    }
}
