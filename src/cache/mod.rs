//! The content-addressed step cache.
//!
//! A step's key is a SHA-256 over its *named* inputs ([`KeyInputs`]): the key of the step
//! before it (or the base image digest), the instruction as expanded, the variables it can
//! see, and for COPY/ADD the digest of every file it copies. Nothing else: no mtimes, no
//! paths of the checkout, no umask. So `COPY mix.exs mix.lock ./` + `RUN mix deps.get` is
//! keyed on the lockfile alone and survives source edits and fresh clones.
//!
//! Entries live under `<cache-dir>/steps-v2/`, one JSON file a key, written to a temporary
//! name and renamed, with a checksum so a torn or corrupted entry is detected and ignored
//! (the step re-runs). The inputs are stored with each entry and, per step position, the
//! inputs of the last build, so a miss can say *which* input changed.
//! The directory name carries the format version: a format change is a rename, not a
//! migration.

pub mod remote;
pub mod snapshot;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The directory of this cache format under the cache dir. It is part of every key, so a
/// new version also leaves imported caches of the old one unused. v2: engine steps run and
/// are committed with the config as of their step (v1 committed the stage's final config,
/// so a RUN saw a later USER or ENV).
pub const LAYOUT: &str = "steps-v2";

/// Everything a step's result depends on, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeyInputs {
    /// The previous step's key, or the base image's digest for the first step.
    pub parent: String,
    /// The instruction as expanded, e.g. `RUN /bin/sh -c mix deps.get --only prod`.
    pub instruction: String,
    /// Variables the step sees (a RUN's ENV and ARGs), by name.
    pub env: BTreeMap<String, String>,
    /// For COPY/ADD: context-relative path → content digest of every file copied.
    pub files: BTreeMap<String, String>,
    /// Other named inputs: user, workdir, network, `--chown`, the digest of a COPY --from
    /// source, …
    pub other: BTreeMap<String, String>,
}

impl KeyInputs {
    /// The cache key: SHA-256 over a canonical encoding of the inputs and the format version.
    pub fn key(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(LAYOUT.as_bytes());
        hasher.update([0]);
        // serde_json writes struct fields in declaration order and BTreeMaps sorted: canonical.
        let encoded = serde_json::to_vec(self).unwrap_or_default();
        hasher.update(&encoded);
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }
}

/// A layer a cached step produced, stored in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the compressed blob.
    pub digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
}

impl LayerRecord {
    /// How the blob is compressed, as its media type says; `None` for a type that is not a
    /// layer's.
    pub fn compression(&self) -> Option<crate::oci::Compression> {
        let media_type = oci_spec::image::MediaType::from(self.media_type.as_str());
        crate::oci::manifest::layer_encoding(&media_type)
    }
}

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub key: String,
    pub inputs: KeyInputs,
    /// The engine image committed after the step (build stages), if any.
    pub image: Option<String>,
    /// The layer the step added: for steps imgbuild writes itself, that layer; for
    /// build-stage steps (`image` set), the engine's own diff once a `--cache-to` export
    /// took it out of the engine. `None` when the step left the filesystem unchanged or its
    /// result lives only in the engine.
    pub layer: Option<LayerRecord>,
    /// For steps run in the engine: whether the commit added a layer (Docker drops empty
    /// diffs). `None` in entries that did not record it.
    #[serde(default)]
    pub adds_layer: Option<bool>,
    /// For steps the native executor ran: the snapshot it left (`cache::snapshot`).
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// The on-disk envelope: the record and a checksum of its encoding.
#[derive(Serialize, Deserialize)]
struct Envelope {
    sha256: String,
    record: serde_json::Value,
}

/// The step cache in a cache directory.
#[derive(Debug, Clone)]
pub struct StepCache {
    root: PathBuf,
}

impl StepCache {
    /// Opens (creating) the cache under `cache_dir`.
    pub fn open(cache_dir: &Path) -> io::Result<StepCache> {
        let root = cache_dir.join(LAYOUT);
        fs::create_dir_all(root.join("keys"))?;
        fs::create_dir_all(root.join("last"))?;
        Ok(StepCache { root })
    }

    fn key_path(&self, key: &str) -> Option<PathBuf> {
        let hex = key.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.root.join("keys").join(format!("{hex}.json")))
    }

    /// The record for `key`, if present and intact. A torn or corrupted entry counts as a
    /// miss (and is removed), never as an error.
    pub fn get(&self, key: &str) -> Option<StepRecord> {
        let path = self.key_path(key)?;
        let record: StepRecord = read_checked(&path)?;
        if record.key != key || record.inputs.key() != key {
            let _ = fs::remove_file(&path);
            return None;
        }
        Some(record)
    }

    /// Stores a record atomically.
    pub fn put(&self, record: &StepRecord) -> io::Result<()> {
        let path = self
            .key_path(&record.key)
            .ok_or_else(|| io::Error::other("malformed cache key"))?;
        write_checked(&path, record)
    }

    /// The inputs of the last build of the step at `identity` (see [`step_identity`]).
    pub fn last_inputs(&self, identity: &str) -> Option<KeyInputs> {
        read_checked(&self.root.join("last").join(format!("{identity}.json")))
    }

    /// Remembers `inputs` as the last build of the step at `identity`. A cache hit finds
    /// them there already: nothing is written (a synced write per step was most of a
    /// no-op rebuild).
    pub fn set_last_inputs(&self, identity: &str, inputs: &KeyInputs) -> io::Result<()> {
        if self.last_inputs(identity).as_ref() == Some(inputs) {
            return Ok(());
        }
        write_checked(
            &self.root.join("last").join(format!("{identity}.json")),
            inputs,
        )
    }
}

/// Names a step's position for miss explanations: the same Dockerfile in the same context,
/// the same stage, the same step number.
pub fn step_identity(context: &Path, dockerfile: &str, stage: &str, step: usize) -> String {
    let mut hasher = Sha256::new();
    for part in [
        context.to_string_lossy().as_ref(),
        dockerfile,
        stage,
        &step.to_string(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

fn read_checked<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = fs::read(path).ok()?;
    let envelope: Envelope = serde_json::from_slice(&bytes).ok()?;
    let encoded = serde_json::to_vec(&envelope.record).ok()?;
    if hex::encode(Sha256::digest(&encoded)) != envelope.sha256 {
        return None;
    }
    serde_json::from_value(envelope.record).ok()
}

/// Writes JSON with a checksum to a temporary file in the same directory, syncs it, and
/// renames it into place, so a reader sees the old entry or the new one, never half.
fn write_checked<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let record = serde_json::to_value(value).map_err(io::Error::other)?;
    let encoded = serde_json::to_vec(&record).map_err(io::Error::other)?;
    let envelope = Envelope {
        sha256: hex::encode(Sha256::digest(&encoded)),
        record,
    };
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("cache path has no parent"))?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut temp, &envelope).map_err(io::Error::other)?;
    temp.flush()?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// How long a temporary file in the cache dir stays untouched before a build takes it for
/// abandoned: its writer touches it with every write, and none pauses for that long.
pub const ABANDONED_TEMP_AGE: Duration = Duration::from_secs(60 * 60);

/// The directories of a cache dir where imgbuild writes through temporaries: `.tmp*` files
/// (blobs, step records, downloads), and the whole `.tmp-add-*` and `.tmp-checkout-*`
/// directories where ADD of a URL or git repository downloads and checks out.
const TEMP_DIRS: [&str; 6] = [
    "blobs",
    "blob-sources/sha256",
    "steps-v2/keys",
    "steps-v2/last",
    "fetch-v1/http",
    "fetch-v1/git",
];

/// Whether a cache entry is one of imgbuild's temporaries (see [`TEMP_DIRS`]).
fn is_temp(name: &str, meta: &fs::Metadata) -> bool {
    match meta.is_dir() {
        true => name.starts_with(".tmp-add-") || name.starts_with(".tmp-checkout-"),
        false => name.starts_with(".tmp") && meta.is_file(),
    }
}

/// Removes the temporary files (`.tmp*`) that processes killed mid-write left in
/// `cache_dir` (SIGKILL runs no destructor, and a blob being written can be large) once
/// they are `older_than` untouched. Returns how many it removed; a file it cannot remove is
/// left (another build may be removing it too).
pub fn remove_abandoned_temp_files(cache_dir: &Path, older_than: Duration) -> usize {
    let now = SystemTime::now();
    let mut removed = 0;
    for dir in TEMP_DIRS {
        let Ok(entries) = fs::read_dir(cache_dir.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            // Not followed: a symlink is nothing imgbuild wrote.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !is_temp(&entry.file_name().to_string_lossy(), &meta) {
                continue;
            }
            let untouched = meta
                .modified()
                .ok()
                .and_then(|modified| now.duration_since(modified).ok());
            let removed_now = untouched.is_some_and(|age| age >= older_than)
                && match meta.is_dir() {
                    true => fs::remove_dir_all(entry.path()).is_ok(),
                    false => fs::remove_file(entry.path()).is_ok(),
                };
            removed += usize::from(removed_now);
        }
    }
    removed
}

/// Why a step missed the cache, against the last build of the same step: the first input
/// that differs, named the way a user thinks of it (`mix.lock changed`).
pub fn explain_miss(last: Option<&KeyInputs>, now: &KeyInputs) -> String {
    let Some(last) = last else {
        return "no earlier build of this step".to_owned();
    };
    if last.instruction != now.instruction {
        return "the instruction changed".to_owned();
    }
    let files = changed_names(&last.files, &now.files);
    if !files.is_empty() {
        return describe_changes(&files, &last.files, &now.files);
    }
    let env = changed_names(&last.env, &now.env);
    if !env.is_empty() {
        return format!("{} changed", list(&env));
    }
    let other = changed_names(&last.other, &now.other);
    if !other.is_empty() {
        return format!("{} changed", list(&other));
    }
    if last.parent != now.parent {
        return "an earlier step changed".to_owned();
    }
    if last == now {
        "the cache entry was missing (removed, corrupted or never stored)".to_owned()
    } else {
        "the cache format changed".to_owned()
    }
}

fn changed_names(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .cloned()
        .collect()
}

fn describe_changes(
    names: &[String],
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> String {
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for name in names {
        match (before.contains_key(name), after.contains_key(name)) {
            (false, true) => added.push(name.clone()),
            (true, false) => removed.push(name.clone()),
            _ => changed.push(name.clone()),
        }
    }
    let mut parts = Vec::new();
    if !changed.is_empty() {
        parts.push(format!("{} changed", list(&changed)));
    }
    if !added.is_empty() {
        parts.push(format!("{} added", list(&added)));
    }
    if !removed.is_empty() {
        parts.push(format!("{} removed", list(&removed)));
    }
    parts.join(", ")
}

/// `a`, `a and b`, `a, b and 3 more`.
fn list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} more", rest.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            parent: "sha256:base".into(),
            instruction: "COPY mix.exs mix.lock ./".into(),
            files: [
                ("mix.exs".into(), "sha256:1".into()),
                ("mix.lock".into(), "sha256:2".into()),
            ]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn keys_follow_inputs_only() {
        let a = inputs();
        assert_eq!(a.key(), inputs().key());
        let mut b = inputs();
        b.files.insert("mix.lock".into(), "sha256:3".into());
        assert_ne!(a.key(), b.key());
        let mut c = inputs();
        c.other.insert("user".into(), "nobody".into());
        assert_ne!(a.key(), c.key());
    }

    #[test]
    fn misses_name_the_input() {
        let a = inputs();
        assert_eq!(explain_miss(None, &a), "no earlier build of this step");
        let mut b = a.clone();
        b.files.insert("mix.lock".into(), "sha256:new".into());
        assert_eq!(explain_miss(Some(&a), &b), "mix.lock changed");
        b.files.insert("lib/new.ex".into(), "sha256:n".into());
        b.files.remove("mix.exs");
        assert_eq!(
            explain_miss(Some(&a), &b),
            "mix.lock changed, lib/new.ex added, mix.exs removed"
        );
        let mut c = a.clone();
        c.env.insert("MIX_ENV".into(), "prod".into());
        assert_eq!(explain_miss(Some(&a), &c), "MIX_ENV changed");
        let mut d = a.clone();
        d.parent = "sha256:other".into();
        assert_eq!(explain_miss(Some(&a), &d), "an earlier step changed");
        let mut e = a.clone();
        e.instruction = "COPY . .".into();
        assert_eq!(explain_miss(Some(&a), &e), "the instruction changed");
        assert!(explain_miss(Some(&a), &a).contains("missing"));
    }

    #[test]
    fn abandoned_add_directories_go() {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("fetch-v1/git/.tmp-checkout-x/tree");
        fs::create_dir_all(&checkout).unwrap();
        fs::write(checkout.join("f"), "x").unwrap();
        fs::create_dir_all(dir.path().join("fetch-v1/git/0123.git")).unwrap();
        assert_eq!(remove_abandoned_temp_files(dir.path(), Duration::ZERO), 1);
        assert!(!dir.path().join("fetch-v1/git/.tmp-checkout-x").exists());
        assert!(dir.path().join("fetch-v1/git/0123.git").is_dir());
    }

    #[test]
    fn abandoned_temp_files_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StepCache::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        let old = SystemTime::now() - ABANDONED_TEMP_AGE - Duration::from_secs(1);
        let write = |rel: &str, modified: SystemTime| {
            let path = dir.path().join(rel);
            fs::write(&path, b"x").unwrap();
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(modified)
                .unwrap();
            path
        };
        let abandoned = [
            write("blobs/.tmp-abandoned", old),
            write("steps-v2/keys/.tmpABCDEF", old),
        ];
        let kept = [
            write("blobs/.tmp-being-written", SystemTime::now()),
            write("blobs/sha256/.tmp-not-a-temp-dir", old),
            write("blobs/notes", old),
        ];
        fs::create_dir(dir.path().join("steps-v2/last/.tmpdir")).unwrap();
        let record = StepRecord {
            key: inputs().key(),
            inputs: inputs(),
            image: None,
            layer: None,
            adds_layer: None,
            snapshot: None,
        };
        cache.put(&record).unwrap();

        assert_eq!(
            remove_abandoned_temp_files(dir.path(), ABANDONED_TEMP_AGE),
            2
        );
        assert!(abandoned.iter().all(|p| !p.exists()));
        assert!(kept.iter().all(|p| p.exists()));
        assert!(dir.path().join("steps-v2/last/.tmpdir").is_dir());
        assert_eq!(cache.get(&record.key), Some(record));
        // A missing cache dir is nothing to clean.
        assert_eq!(
            remove_abandoned_temp_files(&dir.path().join("nope"), Duration::ZERO),
            0
        );
    }

    #[test]
    fn entries_round_trip_and_torn_entries_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StepCache::open(dir.path()).unwrap();
        let inputs = inputs();
        let record = StepRecord {
            key: inputs.key(),
            inputs: inputs.clone(),
            image: Some("sha256:img".into()),
            layer: None,
            adds_layer: Some(true),
            snapshot: None,
        };
        assert_eq!(cache.get(&record.key), None);
        cache.put(&record).unwrap();
        assert_eq!(cache.get(&record.key), Some(record.clone()));

        // Torn write: the file is cut short.
        let path = cache.key_path(&record.key).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(cache.get(&record.key), None);

        // Bit flip inside the record: the checksum catches it.
        cache.put(&record).unwrap();
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("sha256:img", "sha256:imh");
        fs::write(&path, text).unwrap();
        assert_eq!(cache.get(&record.key), None);

        // Keys that are not digests never touch the file system.
        assert_eq!(cache.get("../../etc/passwd"), None);

        let id = step_identity(Path::new("/ctx"), "Dockerfile", "build", 3);
        assert_eq!(cache.last_inputs(&id), None);
        cache.set_last_inputs(&id, &inputs).unwrap();
        assert_eq!(cache.last_inputs(&id), Some(inputs));
    }
}
