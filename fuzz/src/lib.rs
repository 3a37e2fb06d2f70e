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
        let mut configs: BTreeMap<usize, ImageConfig> = BTreeMap::new();
        for &index in &graph.needed {
            let resolved = &graph.stages[index];
            assert_eq!(resolved.index, index, "stages out of order");
            let base = match resolved.base {
                Base::Stage(earlier) => match configs.get(&earlier) {
                    Some(config) => config.clone(),
                    None => panic!("stage {index} needs stage {earlier}, not dispatched before"),
                },
                Base::Scratch | Base::Image(_) => ImageConfig::default(),
            };
            match dispatch_stage(&graph, index, &base) {
                Ok(plan) => {
                    configs.insert(index, plan.config);
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
