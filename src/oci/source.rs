//! Files of an image on disk, read in place: a directory, or a tar archive indexed once
//! (entry name → offset and size) so blobs are read straight out of it without extracting.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::{Error, IoContext, Result};

/// Read access to the files of an OCI layout or docker archive, by relative path.
pub(crate) trait FileSource: Send + Sync {
    /// Opens a file; `Ok(None)` if there is no such file.
    fn open(&self, path: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>>;

    /// What to call this source in messages.
    fn describe(&self) -> String;

    /// Reads a whole (small) file, or errors naming it.
    fn read_all(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        let (reader, size) = self
            .open(path)
            .context(|| format!("opening {path} in {}", self.describe()))?
            .ok_or_else(|| Error::invalid(format!("{} has no {path}", self.describe())))?;
        if size > limit {
            return Err(Error::invalid(format!(
                "{path} in {} is {size} bytes, more than the {limit} allowed for it",
                self.describe()
            )));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        reader
            .take(limit)
            .read_to_end(&mut bytes)
            .context(|| format!("reading {path} in {}", self.describe()))?;
        Ok(bytes)
    }
}

pub(crate) struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub fn new(root: &Path) -> Self {
        DirSource {
            root: root.to_path_buf(),
        }
    }
}

impl FileSource for DirSource {
    fn open(&self, path: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        // Only files inside the root: `..` climbs out, and joining an absolute path would
        // replace the root (a manifest.json naming `/etc/…` as a layer).
        if path.starts_with('/') || path.split('/').any(|c| c == "..") {
            return Ok(None);
        }
        match File::open(self.root.join(path)) {
            Ok(file) => {
                let size = file.metadata()?.len();
                Ok(Some((
                    Box::new(BufReader::with_capacity(1 << 20, file)),
                    size,
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

#[derive(Debug, Clone)]
enum TarItem {
    Data { offset: u64, size: u64 },
    Link(String),
}

/// A tar file indexed by entry name.
pub(crate) struct TarSource {
    path: PathBuf,
    items: HashMap<String, TarItem>,
}

impl TarSource {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_path("opening", path)?;
        let mut archive = tar::Archive::new(BufReader::new(file));
        let mut items = HashMap::new();
        let bad = |e: io::Error| Error::Io {
            context: format!("reading tar archive {}", path.display()),
            source: e,
        };
        for entry in archive.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
            let ty = entry.header().entry_type();
            let item = if ty.is_file() || ty == tar::EntryType::Continuous {
                TarItem::Data {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }
            } else if ty.is_symlink() || ty.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default();
                let target = if ty.is_symlink() && !target.starts_with('/') {
                    // Relative to the link's directory.
                    match name.rsplit_once('/') {
                        Some((dir, _)) => clean(&format!("{dir}/{target}")),
                        None => clean(&target),
                    }
                } else {
                    clean(&target)
                };
                TarItem::Link(target)
            } else {
                continue;
            };
            items.insert(name, item);
        }
        Ok(TarSource {
            path: path.to_path_buf(),
            items,
        })
    }

    fn resolve(&self, path: &str) -> Option<(u64, u64)> {
        let mut name = clean(path);
        // Links may chain; a loop ends after a few hops.
        for _ in 0..16 {
            match self.items.get(&name)? {
                TarItem::Data { offset, size } => return Some((*offset, *size)),
                TarItem::Link(target) => name = target.clone(),
            }
        }
        None
    }
}

impl FileSource for TarSource {
    fn open(&self, path: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let Some((offset, size)) = self.resolve(path) else {
            return Ok(None);
        };
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Some((
            Box::new(BufReader::with_capacity(1 << 20, file).take(size)),
            size,
        )))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// `./a//b/../c` → `a/c`.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Opens a directory or a tar file.
pub(crate) fn open_source(path: &Path) -> Result<Box<dyn FileSource>> {
    let meta = std::fs::metadata(path).with_path("opening", path)?;
    if meta.is_dir() {
        Ok(Box::new(DirSource::new(path)))
    } else {
        Ok(Box::new(TarSource::open(path)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_source_never_reads_outside_its_root() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, "outside").unwrap();
        let root = outside.path().join("archive");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("manifest.json"), "[]").unwrap();
        let source = DirSource::new(&root);
        assert!(source.open("manifest.json").unwrap().is_some());
        // Names a docker archive's manifest.json could give for its config or layers.
        for name in [secret.to_str().unwrap(), "../secret", "x/../../secret"] {
            assert!(source.open(name).unwrap().is_none(), "{name} was opened");
        }
        let error = source.read_all(secret.to_str().unwrap(), 100).unwrap_err();
        assert!(error.to_string().contains("has no"), "{error}");
    }
}
