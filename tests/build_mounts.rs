//! `RUN --mount`: build secrets that reach only their RUN, and cache mounts kept across
//! builds, against the real engine.

mod support;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

fn imgbuild(context: &Path, cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(support::imgbuild_bin());
    cmd.args(["build", "--progress", "plain", "--cache-dir"])
        .arg(cache)
        .args(args)
        .arg(context)
        .env("DOCKER_HOST", &support::env().docker_host)
        .env("HOME", cache);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("imgbuild runs")
}

fn write_dockerfile(dir: &Path, text: &str) {
    fs::write(
        dir.join("Dockerfile"),
        text.replace("BUSYBOX", &support::busybox_in_registry()),
    )
    .unwrap();
}

/// Every file under `dir`, and decompressed when it is a gzip or zstd stream.
fn contents_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else if path.is_file() {
                let raw = fs::read(&path).unwrap();
                let mut plain = Vec::new();
                if raw.starts_with(&[0x1f, 0x8b]) {
                    flate2::read::MultiGzDecoder::new(&raw[..])
                        .read_to_end(&mut plain)
                        .unwrap();
                } else if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                    zstd::stream::read::Decoder::new(&raw[..])
                        .unwrap()
                        .read_to_end(&mut plain)
                        .unwrap();
                }
                out.push((path.display().to_string(), raw));
                if !plain.is_empty() {
                    out.push((format!("{} (decompressed)", path.display()), plain));
                }
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secrets_reach_their_run_and_nothing_else() {
    const SECRET: &str = "s3cr3t-VALUE-7f1c9e2d";
    let context = support::tempdir();
    let cache = support::tempdir();
    let secret_file = cache.path().join("token.txt");
    fs::write(&secret_file, SECRET).unwrap();
    // The Dockerfile compares a hash, so the secret itself is nowhere but in the file given.
    let md5 = "eceab5a508837beb5946537ba1b77aa0";
    write_dockerfile(
        context.path(),
        &"FROM BUSYBOX AS build\n\
         RUN --mount=type=secret,id=token test \"$(md5sum < /run/secrets/token)\" = \"MD5  -\" && echo file-ok > /ok\n\
         RUN --mount=type=secret,id=envtoken,env=TOKEN test \"$(printf %s \"$TOKEN\" | md5sum)\" = \"MD5  -\" && echo env-ok > /ok2\n\
         RUN --mount=type=secret,id=aws/creds test \"$(md5sum < /run/secrets/aws/creds)\" = \"MD5  -\" && echo nested-ok > /ok3\n\
         RUN --mount=type=secret,id=token --mount=type=secret,id=token,target=/run/secrets/renamed \
             cmp /run/secrets/token /run/secrets/renamed && echo renamed-ok > /ok4\n\
         FROM BUSYBOX\n\
         COPY --from=build /ok /ok2 /ok3 /ok4 /\n\
         RUN --mount=type=secret,id=token,target=/tmp/t wc -c < /tmp/t > /length\n"
            .replace("MD5", md5),
    );
    let layout = cache.path().join("image");
    let out = imgbuild(
        context.path(),
        &cache.path().join("cache"),
        &[
            "--secret",
            &format!("id=token,src={}", secret_file.display()),
            "--secret",
            "id=envtoken,env=MY_TOKEN",
            "--secret",
            &format!("id=aws/creds,src={}", secret_file.display()),
            "--output",
            &format!("type=oci,dest={}", layout.display()),
        ],
        &[("MY_TOKEN", SECRET)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains(SECRET),
        "the secret is in the build output:\n{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET));

    // The RUNs saw it (the files they wrote are in the image)...
    let blobs = contents_under(&layout);
    let all: Vec<u8> = blobs.iter().flat_map(|(_, b)| b.clone()).collect();
    assert!(
        contains(&all, b"file-ok")
            && contains(&all, b"env-ok")
            && contains(&all, b"nested-ok")
            && contains(&all, b"renamed-ok"),
        "the RUNs did not see the secret"
    );
    assert!(
        contains(&all, b"21\n"),
        "the final stage's RUN did not see the secret"
    );
    // ...and no blob of the image, no history entry and nothing in the cache dir holds it.
    for (name, bytes) in blobs
        .iter()
        .chain(contents_under(&cache.path().join("cache")).iter())
    {
        assert!(
            !contains(bytes, SECRET.as_bytes()),
            "the secret is in {name}"
        );
    }
}

#[test]
fn a_missing_required_secret_is_an_input_error() {
    let context = support::tempdir();
    let cache = support::tempdir();
    write_dockerfile(
        context.path(),
        "FROM BUSYBOX\nRUN --mount=type=secret,id=nope,required=true true\n",
    );
    let out = imgbuild(
        context.path(),
        cache.path(),
        &["--output", "type=oci,dest=/tmp/never-written"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no secret `nope` was given") && stderr.contains("--secret id=nope"),
        "{stderr}"
    );
}

#[test]
fn cache_mounts_are_kept_across_builds() {
    let context = support::tempdir();
    let cache = support::tempdir();
    write_dockerfile(
        context.path(),
        "FROM BUSYBOX AS build\nRUN --mount=type=cache,target=/root/.cache echo run >> /root/.cache/runs && wc -l < /root/.cache/runs > /count\nFROM BUSYBOX\nCOPY --from=build /count /count\nCMD [\"cat\", \"/count\"]\n",
    );
    let tag = support::unique_name("cache-mount");
    for expected in ["1\n", "2\n"] {
        // --no-cache re-runs the step; the cache mount keeps what the last run left.
        let out = imgbuild(
            context.path(),
            cache.path(),
            &["--no-cache", "-t", &tag],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let count = support::docker_ok(["run", "--rm", tag.as_str()]);
        assert_eq!(count.trim_start(), expected);
    }
    // What the mount held is not in the image.
    let ls = support::docker(["run", "--rm", tag.as_str(), "ls", "/root/.cache/runs"]);
    assert!(!ls.status.success());
    assert!(cache.path().join("mounts-v1").is_dir());
    support::docker_ok(["rmi", tag.as_str()]);
}

/// Whether the cache mount `id` of the marker stage holds `ran`: the marker RUN ran.
fn marker_ran(cache: &Path, id: &str) -> bool {
    use sha2::Digest as _;
    let dir = cache
        .join("mounts-v1")
        .join(hex::encode(sha2::Sha256::digest(id.as_bytes())));
    dir.join("ran").exists()
}

#[test]
fn refusals_come_before_the_first_step_runs() {
    // Each Dockerfile's first stage would leave a marker in a cache mount; a later stage
    // asks for something refused. The refusal names the line, says what to do, exits 2,
    // and the marker is never written.
    let refused = [
        (
            "RUN --network=host true",
            "needs the network.host entitlement",
            "--allow network.host",
        ),
        (
            "RUN --security=insecure true",
            "needs the security.insecure entitlement",
            "--allow security.insecure",
        ),
        (
            "RUN --mount=type=ssh,required=true true",
            "no --ssh default was given",
            "pass --ssh default",
        ),
        (
            "RUN --mount=type=secret,id=absent,required=true true",
            "no secret `absent` was given",
            "--secret id=absent",
        ),
        (
            "RUN --mount=type=bind,source=not-here,target=/m true",
            "source=not-here: not found in the build context",
            ".dockerignore",
        ),
        (
            "RUN --mount=type=bind,source=.env,target=/m true",
            "source=.env: excluded by .dockerignore",
            "stop excluding it",
        ),
    ];
    for (run, message, hint) in refused {
        let context = support::tempdir();
        let cache = support::tempdir();
        write_dockerfile(
            context.path(),
            &format!(
                "FROM BUSYBOX AS first\nRUN --mount=type=cache,target=/m,id=marker touch /m/ran && touch /first\n\
                 FROM BUSYBOX\nCOPY --from=first /first /first\n{run}\n"
            ),
        );
        std::fs::write(context.path().join(".env"), "SECRET=1\n").unwrap();
        std::fs::write(context.path().join(".dockerignore"), ".env\n").unwrap();
        let out = imgbuild(
            context.path(),
            cache.path(),
            &["--output", "type=oci,dest=/tmp/never-written"],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{run}: {stderr}");
        assert!(stderr.contains("Dockerfile:5: "), "{run}: {stderr}");
        assert!(stderr.contains(message), "{run}: {stderr}");
        assert!(stderr.contains(hint), "{run}: {stderr}");
        assert!(
            !marker_ran(cache.path(), "marker"),
            "{run}: the first stage ran"
        );
    }
    // The marker does show a run: without the refused line, the first stage leaves it.
    let context = support::tempdir();
    let cache = support::tempdir();
    write_dockerfile(
        context.path(),
        "FROM BUSYBOX AS first\nRUN --mount=type=cache,target=/m,id=marker touch /m/ran && touch /first\n\
         FROM BUSYBOX\nCOPY --from=first /first /first\n",
    );
    let oci = cache.path().join("image");
    let dest = format!("type=oci,dest={}", oci.display());
    let out = imgbuild(context.path(), cache.path(), &["--output", &dest], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker_ran(cache.path(), "marker"));
}

#[test]
fn the_host_network_needs_its_entitlement_and_default_is_the_builds_network() {
    let context = support::tempdir();
    let cache = support::tempdir();
    // With --network none, a RUN's `default` network is none (lo only); `host` is the
    // host's (granted by --allow). (`--security=insecure` asks the engine for a privileged
    // container, which the test engine cannot start: engine::container's unit test covers
    // the request.)
    write_dockerfile(
        context.path(),
        "FROM BUSYBOX\n\
         RUN --network=default ls /sys/class/net > /default-net\n\
         RUN ls /sys/class/net > /build-net\n\
         RUN --network=host ls /sys/class/net | wc -l > /host-net\n",
    );
    let tag = support::unique_name("entitlements");
    let out = imgbuild(
        context.path(),
        cache.path(),
        &["--network", "none", "--allow", "network.host", "-t", &tag],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cat = |path: &str| support::docker_ok(["run", "--rm", tag.as_str(), "cat", path]);
    assert_eq!(cat("/default-net").trim(), "lo");
    assert_eq!(cat("/build-net").trim(), "lo");
    let host_interfaces: usize = cat("/host-net").trim().parse().unwrap();
    assert!(host_interfaces > 1, "the host network has more than lo");
    support::docker_ok(["rmi", tag.as_str()]);
}

#[test]
fn shebang_heredocs_and_tmpfs_mounts_can_run_programs() {
    let context = support::tempdir();
    let cache = support::tempdir();
    // The script file and a tmpfs mount are not noexec (exit 126 before), also for a user
    // other than root.
    write_dockerfile(
        context.path(),
        "FROM BUSYBOX\n\
         RUN mkdir /out && chmod 777 /out\n\
         USER 65534\n\
         RUN <<EOF\n#!/bin/sh\necho \"script as $(id -u)\" > /out/script\nEOF\n\
         RUN --mount=type=tmpfs,target=/t printf '#!/bin/sh\\necho tmpfs-ran\\n' > /t/s && chmod +x /t/s && /t/s > /out/tmpfs\n",
    );
    let tag = support::unique_name("heredoc-exec");
    let out = imgbuild(context.path(), cache.path(), &["-t", &tag], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cat = |path: &str| support::docker_ok(["run", "--rm", tag.as_str(), "cat", path]);
    assert_eq!(cat("/out/script").trim(), "script as 65534");
    assert_eq!(cat("/out/tmpfs").trim(), "tmpfs-ran");
    support::docker_ok(["rmi", tag.as_str()]);
}

#[test]
fn bind_mounts_from_stages_show_their_files_and_a_missing_source_says_so() {
    let context = support::tempdir();
    let cache = support::tempdir();
    write_dockerfile(
        context.path(),
        "FROM BUSYBOX AS src\n\
         RUN mkdir -p /data && echo one > /data/a && chown 7:9 /data/a && chmod 640 /data/a\n\
         FROM BUSYBOX\n\
         WORKDIR /w\n\
         RUN --mount=from=src,source=/data stat -c '%u:%g %a' a > /stat && cat a > /a\n",
    );
    let tag = support::unique_name("bind-from");
    let out = imgbuild(context.path(), cache.path(), &["-t", &tag], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cat = |path: &str| support::docker_ok(["run", "--rm", tag.as_str(), "cat", path]);
    assert_eq!(cat("/stat").trim(), "7:9 640");
    assert_eq!(cat("/a").trim(), "one");
    support::docker_ok(["rmi", tag.as_str()]);

    write_dockerfile(
        context.path(),
        "FROM BUSYBOX AS src\nRUN true\nFROM BUSYBOX\nRUN --mount=from=src,source=/nope,target=/m ls /m\n",
    );
    let out = imgbuild(
        context.path(),
        cache.path(),
        &["--output", "type=oci,dest=/tmp/never-written"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Dockerfile:4")
            && stderr.contains("RUN --mount from=src,source=/nope: not found"),
        "{stderr}"
    );
    assert!(!stderr.contains("COPY"), "{stderr}");
}
