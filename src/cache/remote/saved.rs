//! Layers taken out of the engine for an export: the layers a build stage made exist only
//! in the engine, so `docker save` is read and the wanted layer tars are stored as gzip
//! blobs, exactly as the engine made them (mtimes and all).

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom};

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::StreamExt;

use super::store_gzip_blob;
use crate::cache::LayerRecord;
use crate::engine::Engine;
use crate::oci::{self, HashingWriter};

/// The layers with the given diff_ids, taken from `docker save` of `images` (the one with
/// the most layers first: it usually holds a whole stage) and stored in `store` as gzip
/// blobs exactly as the engine has them.
pub async fn layers_from_engine(
    engine: &Engine,
    wanted: &HashSet<String>,
    images: &[String],
    store: &oci::BlobStore,
) -> anyhow::Result<HashMap<String, LayerRecord>> {
    let mut candidates = Vec::new();
    let mut seen = HashSet::new();
    for image in images {
        if seen.insert(image.clone())
            && let Some(info) = engine.find_image(image).await?
        {
            candidates.push((image.clone(), info.diff_ids));
        }
    }
    candidates.sort_by_key(|(_, diff_ids)| std::cmp::Reverse(diff_ids.len()));
    let mut remaining = wanted.clone();
    let mut found = HashMap::new();
    for (image, diff_ids) in candidates {
        if !diff_ids.iter().any(|d| remaining.contains(d)) {
            continue;
        }
        let (sender, receiver) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
        let looking_for = remaining.clone();
        let store = store.clone();
        let worker = tokio::task::spawn_blocking(move || {
            extract_layers(ChannelReader::new(receiver), &looking_for, &store)
        });
        let mut stream = engine.save_image(&image);
        while let Some(chunk) = stream.next().await {
            let failed = chunk.is_err();
            let item = chunk.map_err(|e| io::Error::other(e.to_string()));
            // The worker stops reading once it has every layer it looks for.
            if sender.send(item).await.is_err() || failed {
                break;
            }
        }
        drop(sender);
        let extracted = worker
            .await?
            .with_context(|| format!("reading `docker save` of {image}"))?;
        for (diff_id, record) in extracted {
            remaining.remove(&diff_id);
            found.insert(diff_id, record);
        }
    }
    if !remaining.is_empty() {
        anyhow::bail!(
            "the engine's images do not hold the layers {}",
            remaining.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(found)
}

/// A docker save stream as a `Read`, fed chunk by chunk from the async side.
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(receiver: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            receiver,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        let chunk = self.current.split_to(n);
        buf.get_mut(..n)
            .ok_or_else(|| io::Error::other("short buffer"))?
            .copy_from_slice(&chunk);
        Ok(n)
    }
}

/// Reads a `docker save` archive and stores the layer tars whose digest is in `wanted`.
/// Layers are recognised by content (Engine 20.10 names them by v1 id, later engines by
/// digest), so each tar goes to a temporary file while it is hashed.
fn extract_layers(
    reader: impl Read,
    wanted: &HashSet<String>,
    store: &oci::BlobStore,
) -> anyhow::Result<HashMap<String, LayerRecord>> {
    let mut found = HashMap::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if !(name.ends_with("layer.tar") || name.starts_with("blobs/sha256/")) {
            continue;
        }
        let mut temp = tempfile::tempfile_in(store.root())?;
        let mut hashing = HashingWriter::new(&mut temp);
        io::copy(&mut entry, &mut hashing)?;
        let (_, diff_id, _) = hashing.finish();
        let diff_id = diff_id.to_string();
        if wanted.contains(&diff_id) && !found.contains_key(&diff_id) {
            temp.seek(SeekFrom::Start(0))?;
            let record = store_gzip_blob(store, io::BufReader::new(temp))?;
            found.insert(diff_id, record);
            if found.len() == wanted.len() {
                break;
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar like `docker save`'s: layer tars among other files.
    fn saved(layers: &[&[u8]]) -> Vec<u8> {
        let mut out = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            out.append_data(&mut header, name, data).unwrap();
        };
        add("manifest.json", b"[]");
        for (i, layer) in layers.iter().enumerate() {
            add(&format!("{i:064x}/json"), b"{}");
            add(&format!("{i:064x}/layer.tar"), layer);
        }
        out.into_inner().unwrap()
    }

    #[test]
    fn layers_are_found_by_content_and_stored_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let store = oci::BlobStore::open(dir.path()).unwrap();
        let (base, step) = (&b"base layer tar"[..], &b"step layer tar"[..]);
        let wanted: HashSet<String> = [oci::sha256_digest(step).to_string()].into();
        let found = extract_layers(&saved(&[base, step])[..], &wanted, &store).unwrap();
        assert_eq!(found.len(), 1);
        let record = &found[&oci::sha256_digest(step).to_string()];
        assert_eq!(record.diff_id, oci::sha256_digest(step).to_string());
        let blob = std::fs::read(store.path(&record.digest.parse().unwrap())).unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(tar, step);
    }

    #[test]
    fn a_channel_of_chunks_reads_as_one_stream() {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let feeder = std::thread::spawn(move || {
            for chunk in [&b"hello "[..], b"", b"channel"] {
                sender
                    .blocking_send(Ok(Bytes::copy_from_slice(chunk)))
                    .unwrap();
            }
        });
        let mut text = String::new();
        ChannelReader::new(receiver)
            .read_to_string(&mut text)
            .unwrap();
        feeder.join().unwrap();
        assert_eq!(text, "hello channel");
    }
}
