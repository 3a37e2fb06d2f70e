//! Fuzz harnesses: one function per target, each taking the raw input bytes.
//!
//! Every function runs the input through the code that reads untrusted data in imgbuild
//! and panics only when a property that must hold for any input fails (the library itself
//! must never panic). The fuzz targets in `fuzz_targets/` call these, and the main crate's
//! `tests/fuzz_regressions.rs` includes this file by path to replay saved crash inputs
//! through the same code.

use std::collections::BTreeMap;
use std::io::Read;

use imgbuild::frontend::dockerignore::DockerIgnore;
use imgbuild::frontend::parser::Ast;
use imgbuild::frontend::shell::Lexer;
use imgbuild::frontend::stages::{self, Base};
use imgbuild::frontend::{Error, instructions};
use imgbuild::oci::Platform;
use imgbuild::plan::dispatch::{ImageConfig, dispatch_stage};
use imgbuild::registry::challenge::{parse_www_authenticate, select_scheme};
use imgbuild::registry::manifest;
use imgbuild::registry::reference::Reference;

/// Inputs past this size only slow the fuzzer down: every parser here is linear, and the
/// regression tests for huge inputs live beside the code.
const MAX_INPUT: usize = 64 * 1024;

/// Linux's limit on a path's length: no walked path is longer.
const PATH_MAX: usize = 4096;

/// How much a decompressed archive may grow to: a zip bomb must not read as an OOM.
const MAX_DECOMPRESSED: u64 = 16 * 1024 * 1024;

/// The Dockerfile front end, as `frontend::load` chains it, then the dispatch of every
/// stage the build needs, each on the config its base stage ended with.
pub fn dockerfile_parse(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(ast) = imgbuild::frontend::parse_dockerfile("Dockerfile", data) else {
        return;
    };
    check_ast(data, &ast);
    let dockerfile = match instructions::from_ast("Dockerfile", &ast) {
        Ok(dockerfile) => dockerfile,
        Err(e) => return check_error(&e),
    };
    let build_args = BTreeMap::from([
        ("VERSION".to_owned(), "1.2.3".to_owned()),
        ("HTTP_PROXY".to_owned(), "http://proxy:3128".to_owned()),
    ]);
    // The last stage, and (chosen by the input) a named one as `--target`.
    let names: Vec<String> = dockerfile
        .stages
        .iter()
        .filter_map(|s| s.name.clone())
        .collect();
    let mut targets = vec![None];
    if let Some(name) = names.get(data.len() % names.len().max(1)) {
        targets.push(Some(name.to_uppercase()));
    }
    for target in targets {
        let graph = match stages::resolve(
            dockerfile.clone(),
            &build_args,
            target.as_deref(),
            &Platform::linux_amd64(),
        ) {
            Ok(graph) => graph,
            Err(e) => {
                check_error(&e);
                continue;
            }
        };
        assert!(graph.needed.contains(&graph.target), "target not needed");
        let mut configs: BTreeMap<usize, (ImageConfig, Vec<(String, String)>)> = BTreeMap::new();
        for &index in &graph.needed {
            let resolved = &graph.stages[index];
            assert_eq!(resolved.index, index, "stages out of order");
            let (base, base_args) = match resolved.base {
                Base::Stage(earlier) => match configs.get(&earlier) {
                    Some(config) => config.clone(),
                    None => panic!("stage {index} needs stage {earlier}, not dispatched before"),
                },
                Base::Scratch | Base::Image(_) => (ImageConfig::default(), Vec::new()),
            };
            match dispatch_stage(&graph, index, &base, &base_args) {
                Ok(plan) => {
                    configs.insert(index, (plan.config, plan.args));
                }
                Err(e) => {
                    check_error(&e);
                    break;
                }
            }
        }
    }
}

/// What holds of any accepted Dockerfile (as `tests/parser_hostile.rs` states it).
fn check_ast(input: &[u8], ast: &Ast) {
    let dump = ast.dump();
    assert!(!ast.nodes.is_empty(), "an accepted file has instructions");
    assert!(dump.ends_with('\n'), "dump without final newline: {dump:?}");
    let lines = dump.trim_end_matches('\n').split('\n').count();
    assert_eq!(lines, ast.nodes.len(), "one dump line per instruction");
    let physical_lines = input.split(|&b| b == b'\n').count();
    let mut previous_end = 0;
    for node in &ast.nodes {
        assert!(node.start_line > previous_end, "instructions overlap");
        assert!(node.start_line <= node.end_line && node.end_line <= physical_lines);
        assert!(node.column >= 1);
        previous_end = node.end_line;
    }
}

/// A front-end error must say something and locate itself in the file.
fn check_error(e: &Error) {
    assert!(!e.message.is_empty(), "an error without a message: {e:?}");
    assert!(!e.file.is_empty());
    let _ = e.to_string();
}

/// The variables word expansion sees: the conformance tests' (`tests/conformance_shell.rs`),
/// and values with spaces and shell syntax.
fn word_env() -> Vec<(String, String)> {
    [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
        ("A", "a"),
        ("SPACED", " x  y\tz "),
        ("SYNTAX", "$A ${B} 'q' \"d\" \\"),
        ("GLOB", "*.tar.gz"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Word expansion. The first byte picks the options (one bit each, and the escape token);
/// the rest is the word.
pub fn word_expansion(data: &[u8]) {
    let Some((&options, word)) = data.split_first() else {
        return;
    };
    if word.len() > MAX_INPUT {
        return;
    }
    let word = String::from_utf8_lossy(word);
    let escape = if options & 0x20 == 0 { '\\' } else { '`' };
    let lexer = Lexer::new(escape)
        .raw_quotes(options & 0x01 != 0)
        .raw_escapes(options & 0x02 != 0)
        .skip_process_quotes(options & 0x04 != 0)
        .skip_unset_env(options & 0x08 != 0);
    let env = word_env();
    let single = lexer.process_word(&word, &env);
    let split = lexer.process_words(&word, &env);
    let with_matches = lexer.process_word_with_matches(&word, &env);
    // The three entry points share one expansion: they agree on success and failure.
    match (&single, &split, &with_matches) {
        (Ok(single), Ok(_), Ok((same, _))) => assert_eq!(single, same),
        (Err(a), Err(b), Err(c)) => {
            assert_eq!(a, b);
            assert_eq!(a, c);
            assert!(!a.message().is_empty());
            let _ = a.to_string();
        }
        _ => panic!("process_word {single:?}, process_words {split:?} disagree"),
    }
    if let Ok((_, matched)) = &with_matches {
        for name in matched {
            assert!(env.iter().any(|(k, _)| k == name), "matched unknown {name}");
        }
    }
    // Leaving unset variables as written changes nothing when every variable is set.
    if let Ok(expansion) = lexer.skip_unset_env(false).expand(&word, &env)
        && expansion.unmatched.is_empty()
    {
        match lexer.skip_unset_env(true).expand(&word, &env) {
            Ok(skipping) => {
                assert_eq!(
                    skipping.word, expansion.word,
                    "skip_unset_env changed the word"
                );
                assert_eq!(
                    skipping.words, expansion.words,
                    "skip_unset_env changed the words"
                );
            }
            Err(e) => panic!("only with skip_unset_env: {e}"),
        }
    }
}

/// `.dockerignore`: the first line with a NUL byte splits patterns (before) from paths
/// (after, one a line); without one, the patterns' own lines are the paths too.
pub fn dockerignore(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let (patterns, paths) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let ignore = match DockerIgnore::parse(patterns) {
        Ok(ignore) => ignore,
        Err(e) => {
            assert!(e.line() >= 1 && !e.message().is_empty());
            let _ = e.in_file(".dockerignore").to_string();
            return;
        }
    };
    assert!(
        !ignore.is_excluded("") && !ignore.is_excluded("."),
        "root excluded"
    );
    for path in String::from_utf8_lossy(paths).split('\n') {
        // Matching is quadratic in a path's depth (each ancestor is evaluated, as BuildKit
        // does); paths come from walking a directory, so no longer than Linux's PATH_MAX.
        if path.len() > PATH_MAX {
            continue;
        }
        let excluded = ignore.is_excluded(path);
        if ignore.can_skip_dir(path) {
            assert!(excluded, "can skip `{path}`, which is not excluded");
        }
    }
}

/// Image references, and the round trips any parsed reference must survive.
pub fn reference(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = match Reference::parse(input) {
        Ok(parsed) => parsed,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(parsed.tag().is_some() || parsed.digest().is_some());
    assert!(!parsed.registry().is_empty() && !parsed.repository().is_empty());
    assert!(!parsed.api_host().is_empty());
    // What imgbuild prints can be given back to it and means the same image.
    let shown = parsed.to_string();
    match Reference::parse(&shown) {
        Ok(again) => assert_eq!(again, parsed, "`{input}` → `{shown}` parses differently"),
        Err(e) => panic!("`{input}` → `{shown}`, which does not parse: {e}"),
    }
    assert_eq!(
        parsed.name(),
        format!("{}/{}", parsed.registry(), parsed.repository())
    );
    let reference = parsed.manifest_reference();
    match (parsed.digest(), parsed.tag()) {
        (Some(digest), _) => assert_eq!(reference, digest.to_string()),
        (None, Some(tag)) => assert_eq!(reference, tag),
        (None, None) => unreachable!(),
    }
    if let Some(tag) = parsed.tag()
        && let Ok(retagged) = parsed.with_tag(tag)
    {
        assert_eq!(retagged.tag(), Some(tag));
        assert_eq!(Reference::parse(&retagged.to_string()).ok(), Some(retagged));
    }
    if let Some(digest) = parsed.digest() {
        let pinned = parsed.with_digest(digest.clone());
        assert_eq!(pinned, parsed);
    }
}

/// `WWW-Authenticate` headers, as the client reads a 401's.
pub fn www_authenticate(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    // reqwest's `HeaderValue::to_str` gives the client only visible ASCII; the parser takes
    // any `str`, so any UTF-8 is tried.
    let header = String::from_utf8_lossy(data);
    let challenges = parse_www_authenticate(&header);
    for challenge in &challenges {
        assert!(!challenge.scheme.is_empty(), "a challenge without a scheme");
        assert_eq!(challenge.scheme, challenge.scheme.to_ascii_lowercase());
        for (name, _) in &challenge.params {
            assert!(!name.is_empty());
            assert!(challenge.param(name).is_some());
        }
    }
    if let Some(imgbuild::registry::challenge::AuthScheme::Bearer(bearer)) =
        select_scheme(&challenges)
    {
        assert!(
            !bearer.realm.is_empty(),
            "a Bearer challenge without a realm"
        );
    }
}

/// Manifests, indexes and image configs as the registry client and OCI readers parse
/// them from bytes.
pub fn manifest_json(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    // The client trusts the registry's Content-Type only when the document has no
    // mediaType: try it with none and with each kind's.
    let content_types = [
        None,
        Some(manifest::OCI_INDEX),
        Some(manifest::OCI_MANIFEST),
        Some("application/json; charset=utf-8"),
    ];
    for content_type in content_types {
        match manifest::classify(data, content_type) {
            Ok(manifest::Kind::Index { media_type } | manifest::Kind::Image { media_type }) => {
                assert!(!media_type.is_empty());
            }
            Err(message) => assert!(!message.is_empty()),
        }
    }
    if let Ok(image) = manifest::parse_image(data) {
        // Serialising what was read and reading it again gives the same manifest.
        if let Ok(json) = serde_json::to_vec(&image) {
            let again = manifest::parse_image(&json);
            assert_eq!(again.as_ref().ok(), Some(&image), "manifest round trip");
        }
    }
    for platform in [
        "linux/amd64",
        "linux/arm64/v8",
        "linux/arm/v7",
        "windows/amd64",
    ] {
        let Ok(wanted) = platform.parse::<Platform>() else {
            panic!("{platform} is a platform");
        };
        match manifest::select_platform(data, &wanted) {
            Ok(digest) => assert!(!digest.digest().is_empty()),
            Err(e) => {
                let _ = format!("{e:?}");
            }
        }
    }
    let _ = oci_spec::image::ImageManifest::from_reader(data);
    let _ = oci_spec::image::ImageIndex::from_reader(data);
    let _ = oci_spec::image::ImageConfiguration::from_reader(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<oci_spec::image::Digest>();
        let _ = text.parse::<Platform>();
    }
}

/// Layer and `ADD` archives: BuildKit's archive detection through the context's `ADD`
/// selection (and its digest), then the tar stream read entry by entry as a layer reader
/// does, decompressed by its magic bytes.
pub fn tar_reader(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    add_archive_selection(data);
    let Ok(decompressed) = decompress(data) else {
        return;
    };
    read_tar(&decompressed);
}

fn add_archive_selection(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    if std::fs::write(dir.path().join("layer.tar"), data).is_err() {
        return;
    }
    let context = match imgbuild::context::Context::open(dir.path()) {
        Ok(context) => context,
        Err(e) => panic!("opening a temporary context: {e:#}"),
    };
    let opts = imgbuild::context::SelectOptions {
        is_add: true,
        ..Default::default()
    };
    let selection = match context.select(&["layer.tar".to_owned()], "/dst/", &opts, &|_| false) {
        Ok(selection) => selection,
        // An I/O failure here (xz missing) is an error, not a panic; nothing more to check.
        Err(_) => return,
    };
    assert!(
        !selection.entries.is_empty(),
        "ADD of one file selects nothing"
    );
    let _ = context.digest(&selection);
}

/// The stream inside the compression the magic bytes name, at most `MAX_DECOMPRESSED`.
fn decompress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let reader: Box<dyn Read + '_> = if data.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(data))
    } else if data.starts_with(b"BZh") {
        Box::new(bzip2::read::MultiBzDecoder::new(data))
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::new(data)?)
    } else {
        Box::new(data)
    };
    let mut out = Vec::new();
    reader.take(MAX_DECOMPRESSED).read_to_end(&mut out)?;
    Ok(out)
}

/// Every header field a layer writer or extractor looks at, and every entry's content.
fn read_tar(stream: &[u8]) {
    let mut archive = tar::Archive::new(stream);
    let Ok(entries) = archive.entries() else {
        return;
    };
    for entry in entries {
        let Ok(mut entry) = entry else { return };
        let header = entry.header();
        let _ = header.entry_type();
        let _ = (header.mode(), header.uid(), header.gid(), header.mtime());
        let _ = (header.username(), header.groupname(), header.size());
        let _ = (header.device_major(), header.device_minor());
        let _ = header.as_ustar().is_some() || header.as_gnu().is_some();
        let _ = entry.path().map(|p| p.components().count());
        let _ = entry.link_name();
        let _ = entry.size();
        if let Ok(Some(extensions)) = entry.pax_extensions() {
            for extension in extensions {
                let Ok(extension) = extension else { break };
                let _ = (extension.key(), extension.value());
            }
        }
        if std::io::copy(&mut entry, &mut std::io::sink()).is_err() {
            return;
        }
    }
}

/// The layer writer fed a tar stream, as it takes an engine's archive download or a
/// container diff. The first byte picks the options (compression, `--chown`, `--chmod`,
/// destination); the rest is the stream. A written layer must read back as a tar whose
/// digests are the ones the writer reported.
pub fn layer_from_tar(data: &[u8]) {
    use imgbuild::oci::layer::Ownership;
    use imgbuild::oci::{AddOptions, BlobStore, Compression, LayerBuilder, LayerOptions};

    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    if stream.len() > MAX_INPUT {
        return;
    }
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let store = match BlobStore::open(dir.path()) {
        Ok(store) => store,
        Err(e) => panic!("opening a blob store in a temporary directory: {e}"),
    };
    let compression = if flags & 0x01 == 0 {
        Compression::Gzip
    } else {
        Compression::Zstd
    };
    let mut options = LayerOptions::new(compression, 0);
    options.threads = 1;
    let add = AddOptions {
        dest: if flags & 0x02 == 0 { "" } else { "/app/" }.to_owned(),
        chown: (flags & 0x04 != 0).then_some(Ownership {
            uid: 1000,
            gid: 1000,
        }),
        chmod: (flags & 0x08 != 0).then_some(imgbuild::oci::layer::Chmod::Octal(0o640)),
        exact_modes: false,
        numeric_owners: flags & 0x10 != 0,
    };
    let mut builder = LayerBuilder::new(store, options);
    if builder.add_tar(stream, &add).is_err() {
        return;
    }
    let layer = match builder.write() {
        Ok(layer) => layer,
        // Writing into a temporary directory can only fail on an input problem, which
        // `add_tar` has already accepted: that is a bug.
        Err(e) => panic!("add_tar accepted the stream, write failed: {e}"),
    };
    let blob = match std::fs::read(&layer.path) {
        Ok(blob) => blob,
        Err(e) => panic!("reading the written layer: {e}"),
    };
    assert_eq!(
        imgbuild::oci::sha256_digest(&blob),
        *layer.descriptor.digest()
    );
    assert_eq!(blob.len() as u64, layer.descriptor.size());
    let tar = match decompress(&blob) {
        Ok(tar) => tar,
        Err(e) => panic!("the written layer does not decompress: {e}"),
    };
    assert_eq!(imgbuild::oci::sha256_digest(&tar), layer.diff_id);
    assert_eq!(tar.len() as u64, layer.uncompressed_size);
    let mut archive = tar::Archive::new(tar.as_slice());
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => panic!("the written layer is no tar: {e}"),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => panic!("the written layer has a bad entry: {e}"),
        };
        let path = entry.path_bytes().into_owned();
        let text = String::from_utf8_lossy(&path);
        assert!(
            !path.starts_with(b"/") && !text.split('/').any(|c| c == ".."),
            "the written layer has an entry outside its root: {text}"
        );
    }
}

/// OCI layouts and docker archives as `imgbuild push oci-archive:…|oci:…|docker-archive:…`
/// opens them (tar and extracted directory), then every blob read and checked by
/// `validate_image`.
///
/// The input is a list of files, each starting with a line `=== NAME`; a file named
/// `blob` is stored at `blobs/sha256/<its digest>`. In names and contents, `@N`, `%N` and
/// `#N` stand for the digest (`sha256:…`), its hex and the size of the N-th blob, so the
/// fuzzer can write consistent documents without computing digests, and `$OUTSIDE` for
/// the absolute path of a directory beside the image (holding `layer.tar.gz` and
/// `config.json`) that no image may read from. An input that does not start with `===`
/// is the archive itself.
pub fn image_archive(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let outside = dir.path().join("outside");
    let forbidden = match plant_outside_files(&outside) {
        Ok(forbidden) => forbidden,
        Err(e) => panic!("writing the files outside the image: {e}"),
    };
    let tar_path = dir.path().join("image.tar");
    let dir_path = dir.path().join("image");
    let mut paths = vec![tar_path.clone()];
    if data.starts_with(b"=== ") {
        let files = files_from_list(data, &outside.display().to_string());
        if std::fs::write(&tar_path, tar_of(&files)).is_err() {
            return;
        }
        if write_tree(&dir_path, &files).is_ok() {
            paths.push(dir_path);
        }
    } else if std::fs::write(&tar_path, data).is_err() {
        return;
    }
    let platform = Platform::linux_amd64();
    for path in &paths {
        for reference in [None, Some("app:latest")] {
            if let Ok(image) = imgbuild::oci::open_oci_layout(path, reference, &platform) {
                check_image(&image, &forbidden);
            }
            if let Ok(image) = imgbuild::oci::open_docker_archive(path, reference) {
                check_image(&image, &forbidden);
            }
        }
    }
}

/// Writes the files an image must never read, and returns their contents.
fn plant_outside_files(outside: &std::path::Path) -> std::io::Result<Vec<Vec<u8>>> {
    use std::io::Write;
    std::fs::create_dir_all(outside)?;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(b"a file outside the image")?;
    let layer = gzip.finish()?;
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    std::fs::write(outside.join("layer.tar.gz"), &layer)?;
    std::fs::write(outside.join("config.json"), config)?;
    Ok(vec![layer, config.to_vec()])
}

fn check_image(image: &dyn imgbuild::oci::Image, forbidden: &[Vec<u8>]) {
    let _ = imgbuild::oci::validate_image(image);
    let _ = image.config().map(|c| (c.env(), c.cmd(), c.on_build()));
    let _ = image.diff_ids();
    assert!(
        !forbidden.iter().any(|f| f == image.raw_config()),
        "the image's config was read from outside the image"
    );
    for layer in image.layers() {
        if let Ok(blob) = image.open_blob(layer.digest()) {
            let mut content = Vec::new();
            let _ = blob.take(MAX_DECOMPRESSED).read_to_end(&mut content);
            assert!(
                !forbidden.contains(&content),
                "layer {} was read from outside the image",
                layer.digest()
            );
        }
    }
}

/// Writes the extracted (directory) form of an `image_archive` input at `root`.
pub fn image_tree_from_files(
    data: &[u8],
    root: &std::path::Path,
    outside: &str,
) -> std::io::Result<()> {
    write_tree(root, &files_from_list(data, outside))
}

/// The extracted form: each file at its name under `root` (names that would leave it are
/// left out, as an extracting tool would refuse them).
fn write_tree(root: &std::path::Path, files: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    std::fs::create_dir_all(root)?;
    for (name, content) in files {
        let relative = std::path::Path::new(name);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            continue;
        }
        let path = root.join(relative);
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&path, content);
    }
    Ok(())
}

/// Builds the tar described by `image_archive`'s file-list format (with `$OUTSIDE`
/// pointing nowhere useful).
pub fn archive_from_files(data: &[u8]) -> Vec<u8> {
    tar_of(&files_from_list(data, "/nonexistent"))
}

/// The files of `image_archive`'s file-list format, tokens replaced.
fn files_from_list(data: &[u8], outside: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut blobs: Vec<(String, usize)> = Vec::new();
    for chunk in split_sections(data) {
        let (name, content) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], &chunk[i + 1..]),
            None => (chunk, &[][..]),
        };
        let name = substitute(name, &blobs, outside);
        let content = substitute(content, &blobs, outside);
        let name = String::from_utf8_lossy(&name).into_owned();
        if name == "blob" {
            let digest = imgbuild::oci::sha256_digest(&content);
            blobs.push((digest.digest().to_string(), content.len()));
            files.push((format!("blobs/sha256/{}", digest.digest()), content));
        } else {
            files.push((name, content));
        }
    }
    files
}

fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // Names the tar crate refuses (`..`, absolute) are left out, as no writer makes them.
        let _ = builder.append_data(&mut header, name, content.as_slice());
    }
    builder.into_inner().unwrap_or_default()
}

/// The sections of the file-list format: after each `=== ` at the start of a line.
fn split_sections(data: &[u8]) -> Vec<&[u8]> {
    let mut sections = Vec::new();
    let mut rest = data.strip_prefix(b"=== ").unwrap_or(data);
    loop {
        match rest.windows(5).position(|w| w == b"\n=== ") {
            Some(i) => {
                sections.push(&rest[..i]);
                rest = &rest[i + 5..];
            }
            None => {
                sections.push(rest);
                return sections;
            }
        }
    }
}

/// Replaces `@N`, `%N` and `#N` by the N-th blob's digest, hex and size (N one digit,
/// blobs defined so far only), and `$OUTSIDE` by `outside`.
fn substitute(text: &[u8], blobs: &[(String, usize)], outside: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(b"$OUTSIDE") {
            out.extend_from_slice(outside.as_bytes());
            i += b"$OUTSIDE".len();
            continue;
        }
        let blob = text
            .get(i + 1)
            .filter(|d| d.is_ascii_digit())
            .and_then(|d| blobs.get(usize::from(d - b'0')));
        match (text[i], blob) {
            (b'@', Some((hex, _))) => out.extend_from_slice(format!("sha256:{hex}").as_bytes()),
            (b'%', Some((hex, _))) => out.extend_from_slice(hex.as_bytes()),
            (b'#', Some((_, size))) => out.extend_from_slice(size.to_string().as_bytes()),
            (byte, _) => {
                out.push(byte);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    out
}

/// What the checks read of every file in an image that starts like an ELF file: a file
/// from a layer is anyone's, so no input may panic, and what is read must survive the
/// per-layer index's round trip.
pub fn elf_parse(data: &[u8]) {
    use imgbuild::check::libs::ElfInfo;
    let Some(info) = ElfInfo::parse(data) else {
        return;
    };
    let text = match serde_json::to_vec(&info) {
        Ok(text) => text,
        Err(e) => panic!("an ElfInfo does not serialise: {e}"),
    };
    match serde_json::from_slice::<ElfInfo>(&text) {
        Ok(again) => assert_eq!(again, info),
        Err(e) => panic!("an ElfInfo does not read back: {e}"),
    }
}
