//! Two builds of `base-images/bookworm-slim` from the same Debian snapshot give the same
//! image digest. Both builds run at once (each is mostly waiting on debootstrap's
//! downloads and dpkg), into OCI layouts; when the digests differ, the failure lists the
//! entries of the two layers that differ, which is where to start looking.
//!
//! Needs root and Debian's mirror (over plain HTTP), as `imgbuild base build` does.

mod base_common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use base_common::{docker_ok, env, imgbuild_bin, recipe, tempdir, unique_name};
use imgbuild::oci::{Image, Platform, open_oci_layout, validate_image};

/// One line per layer entry: header fields and a digest of the content.
fn layer_entries(image: &dyn Image) -> BTreeMap<String, String> {
    let layer = image
        .layers()
        .first()
        .expect("a base image has one layer")
        .clone();
    let blob = image.open_blob(layer.digest()).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
    let mut entries = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let h = entry.header().clone();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        let line = format!(
            "{:?} {:o} {}:{} mtime={} size={} link={link} sha256={}",
            h.entry_type(),
            h.mode().unwrap_or(0),
            h.uid().unwrap_or(0),
            h.gid().unwrap_or(0),
            h.mtime().unwrap_or(0),
            content.len(),
            imgbuild::oci::sha256_digest(&content).digest()
        );
        entries.insert(path, line);
    }
    entries
}

fn differences(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, line) in a {
        match b.get(path) {
            None => out.push(format!("only in the first: {path} {line}")),
            Some(other) if other != line => {
                out.push(format!("{path}:\n  first:  {line}\n  second: {other}"))
            }
            Some(_) => {}
        }
    }
    for (path, line) in b {
        if !a.contains_key(path) {
            out.push(format!("only in the second: {path} {line}"));
        }
    }
    out
}

#[test]
fn bookworm_slim_twice_gives_the_same_digest() {
    let slim = recipe("bookworm-slim");
    let dir = tempdir();
    let outputs: Vec<_> = ["first", "second"]
        .iter()
        .map(|name| dir.path().join(name))
        .collect();
    // The second build also goes to the engine, under a tag of this test, with an iidfile.
    let engine_tag = format!("{}:slim", unique_name("base"));
    let iidfile = dir.path().join("iid");
    let extra: [Vec<String>; 2] = [
        Vec::new(),
        vec![
            "--output".into(),
            "type=engine".into(),
            "-t".into(),
            engine_tag.clone(),
            "--iidfile".into(),
            iidfile.display().to_string(),
        ],
    ];
    let children: Vec<_> = outputs
        .iter()
        .zip(&extra)
        .map(|(out, extra)| {
            Command::new(imgbuild_bin())
                .args(["base", "build"])
                .arg(&slim)
                .arg("--output")
                .arg(format!("type=oci,dest={}", out.display()))
                .args(extra)
                .env("DOCKER_HOST", &env().docker_host)
                .args(["--progress", "plain"])
                .env_remove("SOURCE_DATE_EPOCH")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let digests: Vec<String> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "base build failed:\n{stderr}");
            String::from_utf8(output.stdout).unwrap().trim().to_owned()
        })
        .collect();

    let images: Vec<_> = outputs
        .iter()
        .map(|out| open_oci_layout(Path::new(out), None, &Platform::default()).unwrap())
        .collect();
    for (image, digest) in images.iter().zip(&digests) {
        validate_image(image).unwrap();
        assert_eq!(
            &image.digest().to_string(),
            digest,
            "stdout names the image"
        );
        assert_eq!(image.layers().len(), 1);
        // The epoch is the Release file's date, not 0.
        let config = image.config().unwrap();
        let created = config.created().unwrap_or_default().to_owned();
        assert!(created.as_str() > "2023", "created: {created}");
    }
    let config_digest = images[1].config_descriptor().digest().to_string();
    assert_eq!(std::fs::read_to_string(&iidfile).unwrap(), config_digest);
    let id = docker_ok([
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        engine_tag.as_str(),
    ]);
    docker_ok(["rmi", engine_tag.as_str()]);
    assert_eq!(
        id.trim(),
        config_digest,
        "the engine holds the image that was written"
    );

    if digests[0] != digests[1] {
        let diff = differences(&layer_entries(&images[0]), &layer_entries(&images[1]));
        panic!(
            "two builds of bookworm-slim differ: {} vs {}\nconfigs:\n{}\n{}\nlayer entries that differ ({}):\n{}",
            digests[0],
            digests[1],
            String::from_utf8_lossy(images[0].raw_config()),
            String::from_utf8_lossy(images[1].raw_config()),
            diff.len(),
            diff.join("\n")
        );
    }
}
