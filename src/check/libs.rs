//! `MissingSharedLibrary`: every dynamically linked ELF executable and shared object in an
//! image finds its `DT_NEEDED` libraries, and the symbol versions it needs from them
//! (`GLIBC_2.34`), in the image's own file system, searched as `ld.so` searches: RPATH,
//! `LD_LIBRARY_PATH`, RUNPATH, `/etc/ld.so.conf`, then the default directories. This is the
//! mistake of building on one OS release and running on another, caught before the image
//! runs and dies with `error while loading shared libraries`.
//!
//! Each layer is read once: what it holds ([`LayerScan`]) is kept in the cache dir by the
//! layer's digest, so a build reads only the layers it wrote.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{CheckId, Finding};
use crate::oci::Image;
use crate::oci::changeset;
use crate::oci::layer::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::oci::rootpath::{Node as FsNode, Resolution, join, normalize, resolve, split};

/// ELF files larger than this are not read (nothing that is linked is this large).
const ELF_SIZE_LIMIT: u64 = 1 << 30;
/// Where glibc keeps compiled locales in one file.
const LOCALE_ARCHIVE: &str = "/usr/lib/locale/locale-archive";
/// A locale archive larger than this is not read for its names.
const LOCALE_ARCHIVE_LIMIT: u64 = 512 << 20;
/// The linker's configuration, whose text is kept.
const LD_SO_CONF: &str = "/etc/ld.so.conf";
/// Configuration files larger than this are not kept (nothing real is this large).
const TEXT_LIMIT: u64 = 64 << 10;

/// What the dynamic linker needs to know of one ELF file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElfInfo {
    /// Class and machine: a library of another architecture does not satisfy a need.
    pub is_64: bool,
    pub machine: u16,
    /// `PT_INTERP`: the dynamic linker an executable names.
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
    /// Symbol versions needed, by the library that must define them.
    pub version_needs: Vec<(String, Vec<String>)>,
    /// Symbol versions this file defines (what a library offers: `GLIBC_2.36`, …).
    pub version_defs: Vec<String>,
}

impl ElfInfo {
    /// Reads an ELF file's dynamic linking facts; `None` for what is not ELF, or not an
    /// executable or shared object (`.o` files, core dumps).
    pub fn parse(bytes: &[u8]) -> Option<ElfInfo> {
        // A layer's files are anyone's: a malformed one that trips a bug in the ELF parser
        // is a file the checks cannot read, never a failed build (`fuzz/` runs this).
        std::panic::catch_unwind(|| Self::parse_unguarded(bytes))
            .ok()
            .flatten()
    }

    fn parse_unguarded(bytes: &[u8]) -> Option<ElfInfo> {
        use goblin::elf::{Elf, header};
        let elf = Elf::parse(bytes).ok()?;
        if !matches!(elf.header.e_type, header::ET_EXEC | header::ET_DYN) {
            return None;
        }
        let split = |paths: &[&str]| -> Vec<String> {
            paths
                .iter()
                .flat_map(|p| p.split(':'))
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let name = |offset: usize| elf.dynstrtab.get_at(offset).map(str::to_owned);
        let mut version_needs = Vec::new();
        if let Some(verneed) = &elf.verneed {
            for need in verneed.iter() {
                let Some(file) = name(need.vn_file) else {
                    continue;
                };
                let versions = need.iter().filter_map(|aux| name(aux.vna_name)).collect();
                version_needs.push((file, versions));
            }
        }
        let mut version_defs = Vec::new();
        if let Some(verdef) = &elf.verdef {
            for def in verdef.iter() {
                // The base entry is the file's own name, not a version.
                if def.vd_flags & goblin::elf::symver::VER_FLG_BASE != 0 {
                    continue;
                }
                if let Some(first) = def.iter().next().and_then(|aux| name(aux.vda_name)) {
                    version_defs.push(first);
                }
            }
        }
        Some(ElfInfo {
            is_64: elf.is_64,
            machine: elf.header.e_machine,
            interpreter: elf.interpreter.map(str::to_owned),
            needed: elf.libraries.iter().map(|l| (*l).to_owned()).collect(),
            rpath: split(&elf.rpaths),
            runpath: split(&elf.runpaths),
            version_needs,
            version_defs,
        })
    }

    fn is_dynamic(&self) -> bool {
        self.interpreter.is_some() || !self.needed.is_empty()
    }
}

/// What one layer holds, as far as linking goes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LayerScan {
    /// Paths the layer's whiteouts hide below it.
    whiteouts: Vec<String>,
    /// Directories whose lower contents the layer hides (`.wh..wh..opq`).
    opaque: Vec<String>,
    /// Every other entry, in the layer's order.
    entries: Vec<(String, Entry)>,
    /// The names in `/usr/lib/locale/locale-archive`, when the layer writes it.
    archive_locales: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Entry {
    Dir,
    File(Option<Arc<ElfInfo>>),
    /// A small configuration file the linker reads (`/etc/ld.so.conf`, its includes).
    Text(String),
    Symlink(String),
    /// A hard link to an earlier path.
    Hardlink(String),
    Other,
}

impl LayerScan {
    /// Reads one uncompressed layer tar.
    pub fn read(reader: impl Read) -> anyhow::Result<LayerScan> {
        let mut scan = LayerScan::default();
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let Some(path) = normalize(&String::from_utf8_lossy(&entry.path_bytes())) else {
                continue;
            };
            let (dir, name) = split(&path);
            if name == OPAQUE_WHITEOUT {
                scan.opaque.push(dir.to_owned());
                continue;
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                scan.whiteouts.push(join(dir, hidden));
                continue;
            }
            let kind = entry.header().entry_type();
            let link = || {
                entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default()
            };
            let item = match kind {
                tar::EntryType::Directory => Entry::Dir,
                tar::EntryType::Symlink => Entry::Symlink(link()),
                tar::EntryType::Link => match normalize(&link()) {
                    Some(target) => Entry::Hardlink(target),
                    None => Entry::Other,
                },
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    if path == LOCALE_ARCHIVE && entry.size() <= LOCALE_ARCHIVE_LIMIT {
                        let mut data = Vec::new();
                        entry.read_to_end(&mut data)?;
                        scan.archive_locales = Some(locale_archive_names(&data));
                        Entry::File(None)
                    } else if path.starts_with(LD_SO_CONF) && entry.size() <= TEXT_LIMIT {
                        let mut text = String::new();
                        match entry.read_to_string(&mut text) {
                            Ok(_) => Entry::Text(text),
                            Err(_) => Entry::File(None),
                        }
                    } else {
                        Entry::File(read_elf(&mut entry)?.map(Arc::new))
                    }
                }
                _ => Entry::Other,
            };
            scan.entries.push((path, item));
        }
        Ok(scan)
    }

    /// [`Self::read`] of each layer of `image`, remembered in `cache_dir` by layer digest.
    pub fn of_image(image: &dyn Image, cache_dir: &Path) -> anyhow::Result<Vec<LayerScan>> {
        let dir = cache_dir.join("link-index-v1");
        let mut scans = Vec::new();
        for layer in image.layers() {
            let path = dir.join(format!("{}.json", layer.digest().digest()));
            if let Ok(bytes) = std::fs::read(&path)
                && let Ok(scan) = serde_json::from_slice::<LayerScan>(&bytes)
            {
                scans.push(scan);
                continue;
            }
            let blob = image
                .open_blob(layer.digest())
                .with_context(|| format!("reading layer {}", layer.digest()))?;
            let reader = crate::oci::manifest::uncompressed_layer(layer.media_type(), blob)?;
            let scan = LayerScan::read(reader)
                .with_context(|| format!("reading layer {}", layer.digest()))?;
            // The index only saves time: failing to store it costs a read next build.
            if std::fs::create_dir_all(&dir).is_ok()
                && let Ok(bytes) = serde_json::to_vec(&scan)
            {
                let _ = crate::publish::write_atomically(&path, &bytes);
            }
            scans.push(scan);
        }
        Ok(scans)
    }
}

/// Reads a regular file's contents if it is an ELF file (the magic first), and its facts.
fn read_elf(entry: &mut impl Read) -> anyhow::Result<Option<ElfInfo>> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match entry.read(&mut magic[got..])? {
            0 => return Ok(None),
            n => got += n,
        }
    }
    if &magic != b"\x7fELF" {
        return Ok(None);
    }
    let mut bytes = magic.to_vec();
    entry.take(ELF_SIZE_LIMIT).read_to_end(&mut bytes)?;
    Ok(ElfInfo::parse(&bytes))
}

/// The locale names in glibc's `locale-archive` (`en_US.utf8`, …): its header points at a
/// hash table whose used slots point at NUL-terminated names. glibc's format has no crate;
/// only the name table is read, every offset bounds-checked.
fn locale_archive_names(data: &[u8]) -> Vec<String> {
    const MAGIC: u32 = 0xde02_0109;
    let word = |at: usize| -> Option<u32> {
        let bytes = data.get(at..at.checked_add(4)?)?;
        Some(u32::from_ne_bytes(bytes.try_into().ok()?))
    };
    let mut names = Vec::new();
    if word(0) != Some(MAGIC) {
        return names;
    }
    let (Some(table), Some(size)) = (word(8), word(16)) else {
        return names;
    };
    for slot in 0..size as usize {
        // Each slot: hash value, name offset, record offset.
        let Some(at) = slot
            .checked_mul(12)
            .and_then(|o| o.checked_add(table as usize))
        else {
            break;
        };
        let (Some(_hash), Some(name_at)) = (word(at), word(at + 4)) else {
            break;
        };
        if name_at == 0 {
            continue;
        }
        let Some(rest) = data.get(name_at as usize..) else {
            continue;
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        names.push(String::from_utf8_lossy(&rest[..end]).into_owned());
    }
    names
}

/// An image's file system as the dynamic linker sees it: the layers merged, whiteouts
/// honoured.
#[derive(Debug, Default)]
pub struct LinkView {
    /// Path → entry, and the index of the layer that wrote it.
    nodes: HashMap<String, (Entry, usize)>,
    archive_locales: Vec<String>,
    /// The layer being merged (the one that adds the parents it leaves out).
    layer: usize,
}

impl changeset::PathTree for LinkView {
    fn holds_dir(&self, path: &str) -> bool {
        matches!(self.nodes.get(path), Some((Entry::Dir, _)))
    }

    fn holds(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    fn remove_where(&mut self, exact: Option<&str>, prefix: &str) {
        self.nodes
            .retain(|p, _| Some(p.as_str()) != exact && !p.starts_with(prefix));
    }

    fn add_parent(&mut self, dir: &str) {
        self.nodes.insert(dir.to_owned(), (Entry::Dir, self.layer));
    }
}

impl LinkView {
    pub fn merge(scans: &[LayerScan]) -> LinkView {
        let mut view = LinkView::default();
        for (index, scan) in scans.iter().enumerate() {
            changeset::apply_deletions(&mut view, &scan.opaque, &scan.whiteouts);
            view.layer = index;
            for (path, entry) in &scan.entries {
                let entry = match entry {
                    Entry::Hardlink(target) => match view.nodes.get(target) {
                        Some((entry @ (Entry::File(_) | Entry::Text(_)), _)) => entry.clone(),
                        _ => Entry::Other,
                    },
                    other => other.clone(),
                };
                changeset::prepare_entry(&mut view, path, matches!(entry, Entry::Dir));
                view.nodes.insert(path.clone(), (entry, index));
            }
            if let Some(names) = &scan.archive_locales {
                view.archive_locales = names.clone();
            }
        }
        if !matches!(view.nodes.get(LOCALE_ARCHIVE), Some((Entry::File(_), _))) {
            view.archive_locales.clear();
        }
        view
    }

    fn fs_node(&self, path: &str) -> Option<FsNode> {
        if path == "/" {
            return Some(FsNode::Dir);
        }
        self.nodes.get(path).map(|(entry, _)| match entry {
            Entry::Dir => FsNode::Dir,
            Entry::Symlink(target) => FsNode::Symlink(target.clone()),
            _ => FsNode::Other,
        })
    }

    /// The real path of `path` with every symlink followed, if something is there.
    pub fn real_path(&self, path: &str) -> Option<String> {
        match resolve(path, true, &mut |p| Some(self.fs_node(p))) {
            Ok(Resolution::Done(resolved)) if resolved.node.is_some() => Some(resolved.path),
            _ => None,
        }
    }

    /// Whether the image has a directory at `path` (symlinks followed).
    pub fn is_dir(&self, path: &str) -> bool {
        self.real_path(path)
            .is_some_and(|real| matches!(self.fs_node(&real), Some(FsNode::Dir)))
    }

    /// The compiled locales the image has, as glibc names them (`C.utf8`, `en_US.utf8`):
    /// the directories in `/usr/lib/locale` and the names in its locale archive.
    pub fn locales(&self) -> Vec<String> {
        let mut locales: Vec<String> = match self.real_path("/usr/lib/locale") {
            Some(dir) => self
                .children(&dir)
                .into_iter()
                .filter(|child| matches!(self.fs_node(child), Some(FsNode::Dir)))
                .filter_map(|child| child.rsplit('/').next().map(str::to_owned))
                .collect(),
            None => Vec::new(),
        };
        locales.extend(self.archive_locales.iter().cloned());
        locales
    }

    fn elf(&self, real: &str) -> Option<&Arc<ElfInfo>> {
        match self.nodes.get(real) {
            Some((Entry::File(Some(elf)), _)) => Some(elf),
            _ => None,
        }
    }

    /// The text of a kept configuration file at a real path.
    fn text(&self, real: &str) -> Option<&str> {
        match self.nodes.get(real) {
            Some((Entry::Text(text), _)) => Some(text),
            _ => None,
        }
    }

    /// The paths directly in directory `dir` (a real path), sorted.
    fn children(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut children: Vec<String> = self
            .nodes
            .keys()
            .filter(|p| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
            .cloned()
            .collect();
        children.sort();
        children
    }
}

#[cfg(test)]
impl LinkView {
    /// A view with just these directories, for the checks' tests.
    pub(crate) fn with_dirs(dirs: &[&str]) -> LinkView {
        let scan = LayerScan {
            entries: dirs.iter().map(|d| ((*d).to_owned(), Entry::Dir)).collect(),
            ..LayerScan::default()
        };
        LinkView::merge(&[scan])
    }
}

/// Where each layer came from, for saying where a broken file was built: the base image,
/// or the instruction that added it.
pub type LayerOrigins = Vec<String>;

/// Finds every dynamically linked ELF file in `view` whose libraries or symbol versions
/// are missing. `env` is the image's environment (for `LD_LIBRARY_PATH`); `origins` says
/// where each layer came from; findings point at `at` (the final stage's FROM line, where
/// the runtime image is chosen and its packages installed).
pub fn check(
    view: &LinkView,
    env: &[String],
    origins: &LayerOrigins,
    at: (&str, usize),
) -> Vec<Finding> {
    let ld_so_conf = ld_so_conf_dirs(view);
    let ld_library_path: Vec<String> = env
        .iter()
        .find_map(|e| e.strip_prefix("LD_LIBRARY_PATH="))
        .map(|v| {
            v.split(':')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    // library name → the files that need it (and the layer they came from).
    let mut missing: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
    // (file, library, version) that is not defined.
    let mut missing_versions: BTreeMap<(String, String), Vec<(String, usize)>> = BTreeMap::new();
    let mut paths: Vec<&String> = view.nodes.keys().collect();
    paths.sort();
    for path in paths {
        let Some((Entry::File(Some(elf)), layer)) = view.nodes.get(path) else {
            continue;
        };
        if !elf.is_dynamic() {
            continue;
        }
        if let Some(interpreter) = &elf.interpreter
            && view
                .real_path(interpreter)
                .and_then(|real| view.elf(&real).cloned())
                .is_none()
        {
            missing
                .entry(interpreter.clone())
                .or_default()
                .push((path.clone(), *layer));
        }
        let (origin, _) = split(path);
        let dirs = search_dirs(elf, origin, &ld_library_path, &ld_so_conf);
        let mut found: HashMap<&str, Arc<ElfInfo>> = HashMap::new();
        for needed in &elf.needed {
            match find_library(view, elf, needed, &dirs) {
                Some(library) => {
                    found.insert(needed, library);
                }
                None => missing
                    .entry(needed.clone())
                    .or_default()
                    .push((path.clone(), *layer)),
            }
        }
        for (library, versions) in &elf.version_needs {
            let Some(defined) = found.get(library.as_str()) else {
                continue;
            };
            for version in versions {
                if !defined.version_defs.contains(version) {
                    missing_versions
                        .entry((library.clone(), version.clone()))
                        .or_default()
                        .push((path.clone(), *layer));
                }
            }
        }
    }
    let mut findings = Vec::new();
    for (library, needers) in missing {
        findings.push(Finding {
            id: CheckId::MissingSharedLibrary,
            file: at.0.to_owned(),
            line: Some(at.1),
            message: format!(
                "{} needs {library}, which the image does not have{}: the program fails to start with `error while loading shared libraries`; build on the same OS release as the runtime image, or install the package that has {library} in the runtime stage",
                who(&needers),
                built_in(&needers, origins),
            ),
        });
    }
    for ((library, version), needers) in missing_versions {
        findings.push(Finding {
            id: CheckId::MissingSharedLibrary,
            file: at.0.to_owned(),
            line: Some(at.1),
            message: format!(
                "{} needs version {version} of {library}, which the image's {library} does not define{}: the program fails to start with `version `{version}' not found`; build on the same OS release as the runtime image (or an older one)",
                who(&needers),
                built_in(&needers, origins),
            ),
        });
    }
    findings
}

/// `/a/b` or `/a/b and 3 more files`.
fn who(needers: &[(String, usize)]) -> String {
    match needers {
        [] => String::new(),
        [(one, _)] => one.clone(),
        [(first, _), rest @ ..] => format!(
            "{first} (and {} more file{})",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        ),
    }
}

/// ` (added by …)`: where the first needing file came from.
fn built_in(needers: &[(String, usize)], origins: &LayerOrigins) -> String {
    needers
        .first()
        .and_then(|(_, layer)| origins.get(*layer))
        .map(|origin| format!(" ({origin})"))
        .unwrap_or_default()
}

/// ld.so's search order for one object's needs.
fn search_dirs(
    elf: &ElfInfo,
    origin: &str,
    ld_library_path: &[String],
    ld_so_conf: &[String],
) -> Vec<String> {
    let expand = |dir: &String| -> Option<String> {
        let lib = if elf.is_64 { "lib64" } else { "lib" };
        let dir = dir
            .replace("${ORIGIN}", origin)
            .replace("$ORIGIN", origin)
            .replace("${LIB}", lib)
            .replace("$LIB", lib);
        // $PLATFORM depends on the CPU: such directories are not searched here.
        (!dir.contains('$')).then_some(dir)
    };
    let mut dirs = Vec::new();
    if elf.runpath.is_empty() {
        dirs.extend(elf.rpath.iter().filter_map(expand));
    }
    dirs.extend(ld_library_path.iter().cloned());
    dirs.extend(elf.runpath.iter().filter_map(expand));
    dirs.extend(ld_so_conf.iter().cloned());
    if elf.is_64 {
        dirs.extend(["/lib64".into(), "/usr/lib64".into()]);
    }
    dirs.extend(["/lib".into(), "/usr/lib".into()]);
    dirs
}

fn find_library(
    view: &LinkView,
    needer: &ElfInfo,
    name: &str,
    dirs: &[String],
) -> Option<Arc<ElfInfo>> {
    let candidates: Vec<String> = if name.contains('/') {
        vec![name.to_owned()]
    } else {
        dirs.iter()
            .map(|dir| format!("{}/{name}", dir.trim_end_matches('/')))
            .collect()
    };
    candidates.iter().find_map(|candidate| {
        let real = view.real_path(candidate)?;
        let library = view.elf(&real)?;
        (library.is_64 == needer.is_64 && library.machine == needer.machine)
            .then(|| library.clone())
    })
}

/// The directories `/etc/ld.so.conf` lists, following `include` lines (globs in one
/// directory, as Debian's `include /etc/ld.so.conf.d/*.conf`).
fn ld_so_conf_dirs(view: &LinkView) -> Vec<String> {
    let mut dirs = Vec::new();
    let mut pending = vec![LD_SO_CONF.to_owned()];
    let mut seen = std::collections::HashSet::new();
    while let Some(file) = pending.pop() {
        if !seen.insert(file.clone()) || seen.len() > 64 {
            continue;
        }
        let Some(text) = view.real_path(&file).and_then(|real| view.text(&real)) else {
            continue;
        };
        let mut includes = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(pattern) = line.strip_prefix("include") {
                for pattern in pattern.split_whitespace() {
                    includes.extend(glob_files(view, pattern));
                }
            } else if !line.is_empty() {
                dirs.extend(
                    line.split([':', ',', ' ', '\t'])
                        .filter(|d| d.starts_with('/'))
                        .map(str::to_owned),
                );
            }
        }
        // Included files are read in order, before the lines after them would be: ld.so's
        // order matters only among duplicates, and these are directories.
        includes.reverse();
        pending.extend(includes);
    }
    dirs
}

/// The files matching `pattern`, whose last component may hold `*` (`/etc/ld.so.conf.d/*.conf`).
fn glob_files(view: &LinkView, pattern: &str) -> Vec<String> {
    let Some((dir, name)) = pattern.rsplit_once('/') else {
        return Vec::new();
    };
    if !name.contains('*') {
        return vec![pattern.to_owned()];
    }
    let Some(real_dir) = view.real_path(if dir.is_empty() { "/" } else { dir }) else {
        return Vec::new();
    };
    view.children(&real_dir)
        .into_iter()
        .filter(|child| {
            let base = child.rsplit('/').next().unwrap_or(child);
            wildcard_match(name, base)
        })
        .collect()
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte of the headers of a real executable, changed, and the file cut short:
    /// read or refused by the parser itself, without the panic guard (the fuzz target
    /// `elf_parse` goes further).
    #[test]
    fn damaged_elf_files_are_read_or_refused() {
        let program = std::fs::read("/usr/bin/true").unwrap();
        assert!(ElfInfo::parse_unguarded(&program).is_some());
        let mut damaged = program.clone();
        for at in 0..program.len().min(1024) {
            for value in [0x00, 0x7f, 0xff] {
                damaged[at] = value;
                let _ = ElfInfo::parse_unguarded(&damaged);
                damaged[at] = program[at];
            }
        }
        for len in (0..program.len()).step_by(97) {
            let _ = ElfInfo::parse_unguarded(&program[..len]);
        }
    }

    /// A real ELF file of this machine (Debian's, as in the images the tests build).
    fn host(path: &str) -> Vec<u8> {
        std::fs::read(std::fs::canonicalize(path).unwrap()).unwrap()
    }

    enum Item<'a> {
        Dir(&'a str),
        File(&'a str, Vec<u8>),
        Link(&'a str, &'a str),
    }

    fn layer(items: Vec<Item<'_>>) -> LayerScan {
        let mut b = tar::Builder::new(Vec::new());
        for item in items {
            let mut h = tar::Header::new_gnu();
            match item {
                Item::Dir(path) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
                Item::File(path, data) => {
                    h.set_size(data.len() as u64);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &data[..]).unwrap();
                }
                Item::Link(path, target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).unwrap();
                }
            }
        }
        LayerScan::read(&b.into_inner().unwrap()[..]).unwrap()
    }

    /// A merged-/usr Debian base: libc and the dynamic linker reached through the
    /// /lib64 and /lib symlinks and ld.so.conf.d, as bookworm lays them out.
    fn base() -> LayerScan {
        layer(vec![
            Item::Dir("usr/lib/x86_64-linux-gnu"),
            Item::Dir("usr/lib64"),
            Item::Link("lib", "usr/lib"),
            Item::Link("lib64", "usr/lib64"),
            Item::File(
                "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                host("/lib64/ld-linux-x86-64.so.2"),
            ),
            Item::Link(
                "usr/lib64/ld-linux-x86-64.so.2",
                "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            ),
            Item::File(
                "usr/lib/x86_64-linux-gnu/libc.so.6",
                host("/lib/x86_64-linux-gnu/libc.so.6"),
            ),
            Item::File(
                "etc/ld.so.conf",
                b"include /etc/ld.so.conf.d/*.conf\n".to_vec(),
            ),
            Item::File(
                "etc/ld.so.conf.d/x86_64-linux-gnu.conf",
                b"# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n".to_vec(),
            ),
            Item::File("usr/bin/true", host("/usr/bin/true")),
        ])
    }

    fn origins(n: usize) -> LayerOrigins {
        (0..n).map(|i| format!("layer {i}")).collect()
    }

    fn findings(scans: &[LayerScan]) -> Vec<Finding> {
        check(&LinkView::merge(scans), &[], &origins(scans.len()), AT)
    }

    const AT: (&str, usize) = ("Dockerfile", 9);

    #[test]
    fn reads_what_the_linker_needs_of_a_real_binary() {
        let ls = ElfInfo::parse(&host("/usr/bin/ls")).unwrap();
        assert!(ls.is_64);
        assert_eq!(
            ls.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert!(ls.needed.contains(&"libselinux.so.1".to_owned()), "{ls:?}");
        let (_, versions) = ls
            .version_needs
            .iter()
            .find(|(library, _)| library == "libc.so.6")
            .unwrap();
        assert!(!versions.is_empty());
        assert!(
            versions.iter().all(|v| v.starts_with("GLIBC_")),
            "{versions:?}"
        );
        let libc = ElfInfo::parse(&host("/lib/x86_64-linux-gnu/libc.so.6")).unwrap();
        assert!(
            libc.version_defs.contains(&"GLIBC_2.34".to_owned()),
            "{libc:?}"
        );
        assert!(!libc.version_defs.contains(&"libc.so.6".to_owned()));
        assert_eq!(ElfInfo::parse(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn a_complete_image_has_no_findings() {
        assert_eq!(findings(&[base()]), []);
    }

    #[test]
    fn a_missing_library_names_the_file_the_library_and_where_the_file_came_from() {
        let app = layer(vec![Item::File("app/bin/ls", host("/usr/bin/ls"))]);
        let found = findings(&[base(), app]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].id, CheckId::MissingSharedLibrary);
        assert!(
            found[0].message.starts_with(
                "/app/bin/ls needs libselinux.so.1, which the image does not have (layer 1)"
            ),
            "{}",
            found[0].message
        );

        // libselinux in turn needs libpcre2: a library's own needs are checked too.
        let selinux_only = layer(vec![Item::File(
            "usr/lib/x86_64-linux-gnu/libselinux.so.1",
            host("/lib/x86_64-linux-gnu/libselinux.so.1"),
        )]);
        let app = layer(vec![Item::File("app/bin/ls", host("/usr/bin/ls"))]);
        let found = findings(&[base(), selinux_only, app]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0]
                .message
                .starts_with("/usr/lib/x86_64-linux-gnu/libselinux.so.1 needs libpcre2-8.so.0"),
            "{}",
            found[0].message
        );

        // Added in a later layer, they are found (through /lib → usr/lib and ld.so.conf.d).
        let libs = layer(vec![
            Item::File(
                "usr/lib/x86_64-linux-gnu/libselinux.so.1",
                host("/lib/x86_64-linux-gnu/libselinux.so.1"),
            ),
            Item::File(
                "usr/lib/x86_64-linux-gnu/libpcre2-8.so.0",
                host("/lib/x86_64-linux-gnu/libpcre2-8.so.0"),
            ),
        ]);
        let app = layer(vec![Item::File("app/bin/ls", host("/usr/bin/ls"))]);
        assert_eq!(findings(&[base(), libs.clone(), app.clone()]), []);

        // A whiteout removes one again.
        let removed = layer(vec![Item::File(
            "usr/lib/x86_64-linux-gnu/.wh.libselinux.so.1",
            Vec::new(),
        )]);
        let found = findings(&[base(), libs, app, removed]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].message.contains("needs libselinux.so.1"),
            "{found:?}"
        );
    }

    #[test]
    fn rpath_with_origin_and_ld_library_path_are_searched() {
        // The release pattern: a NIF's RUNPATH of $ORIGIN/../lib. Our binary has no
        // RUNPATH, so LD_LIBRARY_PATH in the image's environment stands in for it here.
        let app = layer(vec![
            Item::File("opt/app/bin/ls", host("/usr/bin/ls")),
            Item::File(
                "opt/app/lib/libselinux.so.1",
                host("/lib/x86_64-linux-gnu/libselinux.so.1"),
            ),
            Item::File(
                "opt/app/lib/libpcre2-8.so.0",
                host("/lib/x86_64-linux-gnu/libpcre2-8.so.0"),
            ),
        ]);
        let view = LinkView::merge(&[base(), app]);
        // ls misses libselinux, and libselinux misses libpcre2 beside it.
        assert_eq!(check(&view, &[], &origins(2), AT).len(), 2);
        let env = ["LD_LIBRARY_PATH=/opt/app/lib".to_owned()];
        assert_eq!(check(&view, &env, &origins(2), AT), []);

        let mut elf = ElfInfo::parse(&host("/usr/bin/ls")).unwrap();
        elf.runpath = vec!["$ORIGIN/../lib".into()];
        let dirs = search_dirs(&elf, "/opt/app/bin", &[], &[]);
        assert_eq!(dirs[0], "/opt/app/bin/../lib");
        let found = find_library(&view, &elf, "libselinux.so.1", &dirs);
        assert!(found.is_some());
    }

    #[test]
    fn a_library_without_the_symbol_version_a_binary_needs_is_found() {
        // A libc.so.6 that defines no GLIBC_ versions: what an older runtime image's libc
        // is to a binary linked against a newer one.
        let old_libc = layer(vec![Item::File(
            "usr/lib/x86_64-linux-gnu/libc.so.6",
            host("/lib/x86_64-linux-gnu/libpcre2-8.so.0"),
        )]);
        let found = findings(&[base(), old_libc]);
        assert!(!found.is_empty());
        assert!(
            found.iter().any(
                |f| f.message.starts_with("/usr/bin/true needs version GLIBC_")
                    && f.message.contains(
                        "of libc.so.6, which the image's libc.so.6 does not define (layer 0)"
                    )
            ),
            "{found:#?}"
        );
    }

    #[test]
    fn a_missing_dynamic_linker_is_a_finding() {
        let base_without_linker = layer(vec![
            Item::Dir("usr/lib/x86_64-linux-gnu"),
            Item::File(
                "usr/lib/x86_64-linux-gnu/libc.so.6",
                host("/lib/x86_64-linux-gnu/libc.so.6"),
            ),
            Item::File("usr/bin/true", host("/usr/bin/true")),
        ]);
        let found = findings(&[base_without_linker]);
        assert!(
            found.iter().any(|f| f
                .message
                .contains("needs /lib64/ld-linux-x86-64.so.2, which the image does not have")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_file_over_a_directory_hides_what_was_below_it() {
        let lower = layer(vec![
            Item::Dir("opt/d"),
            Item::File("opt/d/x", b"x".to_vec()),
            Item::File("opt/f", b"1".to_vec()),
        ]);
        let upper = layer(vec![
            Item::File("opt/d", b"now a file".to_vec()),
            Item::File("opt/f", b"2".to_vec()),
        ]);
        let view = LinkView::merge(&[lower, upper]);
        assert_eq!(view.real_path("/opt/d").as_deref(), Some("/opt/d"));
        assert!(!view.is_dir("/opt/d"));
        assert_eq!(view.real_path("/opt/d/x"), None);
        assert_eq!(view.real_path("/opt/f").as_deref(), Some("/opt/f"));
    }

    #[test]
    fn locales_are_the_compiled_directories_and_the_archive_s_names() {
        let view = LinkView::with_dirs(&["/usr/lib/locale/C.utf8", "/usr/lib/locale/en_US.utf8"]);
        assert_eq!(view.locales(), ["C.utf8", "en_US.utf8"]);
        assert!(LinkView::with_dirs(&["/usr/lib"]).locales().is_empty());
    }

    #[test]
    fn wildcards_match_like_ld_so_conf_includes() {
        assert!(wildcard_match("*.conf", "libc.conf"));
        assert!(!wildcard_match("*.conf", "libc.conf.bak"));
        assert!(wildcard_match("a*b*c", "aXbYc"));
        assert!(!wildcard_match("a*a", "a"));
        assert!(wildcard_match("exact", "exact"));
    }

    #[test]
    fn locale_archive_names_are_read_and_junk_gives_none() {
        assert!(locale_archive_names(b"not an archive").is_empty());
        assert!(locale_archive_names(&[]).is_empty());
        // A header pointing past the end reads nothing rather than panicking.
        let mut junk = 0xde02_0109u32.to_ne_bytes().to_vec();
        junk.extend([0xff; 60]);
        assert!(locale_archive_names(&junk).is_empty());
    }
}
