//! The base images (`base-images/`) built by `scripts/base-images` with this build's
//! imgbuild, pushed to the test registry and run in the real engine: the runtime image
//! has its locale and libraries, the toolchain runs mix, and `fixtures/elixir-hello`
//! builds as a release in the toolchain and runs on the runtime image.
//!
//! Needs root (debootstrap), the engine and the registry; the images are built once per
//! machine and kept in the registry, so later runs only check them.

mod base_common;

use base_common::{base_images, docker_ok, recipe, repo, run_in, tempdir};
use serde_json::Value;

fn config_of(image: &str) -> Value {
    let inspect: Value = serde_json::from_str(&docker_ok(["image", "inspect", image])).unwrap();
    inspect[0]["Config"].clone()
}

#[test]
fn runtime_image_has_its_locale_libraries_and_owners() {
    let images = base_images();
    let locales = run_in(&images.slim, &[], &["locale", "-a"]);
    assert!(
        locales.lines().any(|l| l == "en_US.utf8"),
        "locale -a: {locales}"
    );
    let out = run_in(
        &images.slim,
        &[],
        &[
            "bash",
            "-c",
            "echo \"$LANG|$LANGUAGE|$LC_ALL\"; openssl version >/dev/null && echo openssl; \
             test -e /usr/lib/x86_64-linux-gnu/libstdc++.so.6 && echo libstdc++; \
             test -e /usr/lib/x86_64-linux-gnu/libncurses.so.6 && echo ncurses; \
             test -s /etc/ssl/certs/ca-certificates.crt && echo certs; \
             stat -c '%G %a' /var/mail /etc/shadow; \
             test -f /usr/share/doc/bash/copyright && echo copyright; \
             find /usr/share/man /usr/share/locale -mindepth 1 -not -name locale.alias | wc -l; \
             find /var/lib/apt/lists /var/cache/apt /var/log -type f | wc -l",
        ],
    );
    assert_eq!(
        out,
        "en_US.UTF-8|en_US:en|en_US.UTF-8\nopenssl\nlibstdc++\nncurses\ncerts\n\
         mail 2775\nshadow 640\ncopyright\n0\n0\n",
        "inside the runtime image"
    );
    // A locale-aware program sees the UTF-8 locale, not C.
    let charmap = run_in(&images.slim, &[], &["locale", "charmap"]);
    assert_eq!(charmap.trim(), "UTF-8");

    let config = config_of(&images.slim);
    let labels = &config["Labels"];
    let text = std::fs::read(recipe("bookworm-slim").join("image.toml")).unwrap();
    assert_eq!(
        labels["org.imgbuild.recipe.sha256"],
        imgbuild::oci::sha256_digest(&text).digest()
    );
    assert_eq!(config["Cmd"], serde_json::json!(["bash"]));
    let env: Vec<String> = serde_json::from_value(config["Env"].clone()).unwrap();
    assert!(env[0].starts_with("PATH=/usr/local/sbin:"), "{env:?}");
}

#[test]
fn toolchain_runs_mix_gcc_and_git() {
    let images = base_images();
    let out = run_in(
        &images.toolchain,
        &[],
        &[
            "sh",
            "-c",
            "mix --version && gcc --version && git --version && locale -a",
        ],
    );
    assert!(out.contains("Mix 1.14"), "{out}");
    assert!(out.contains("Erlang/OTP 25"), "{out}");
    assert!(out.contains("gcc (Debian 12"), "{out}");
    assert!(out.contains("git version 2."), "{out}");
    assert!(out.lines().any(|l| l == "en_US.utf8"), "{out}");
}

#[test]
fn elixir_fixture_is_released_in_the_toolchain_and_runs_on_the_runtime() {
    let images = base_images();
    let fixture = repo().join("fixtures/elixir-hello");
    let out = tempdir();
    let src_mount = format!("{}:/src:ro", fixture.display());
    let out_mount = format!("{}:/out", out.path().display());
    // No network: a release of a project without hex dependencies needs none.
    let log = run_in(
        &images.toolchain,
        &["-v", &src_mount, "-v", &out_mount, "-e", "MIX_ENV=prod"],
        &[
            "sh",
            "-c",
            "cp -r /src /app && cd /app && mix deps.get && mix release && \
             cp -r _build/prod/rel/hello /out/",
        ],
    );
    assert!(
        out.path().join("hello/bin/hello").is_file(),
        "no release was written; mix said:\n{log}"
    );
    let release = format!("{}:/app", out.path().join("hello").display());
    let said = run_in(
        &images.slim,
        &["-v", &release, "-e", "HELLO_SECRET=test"],
        &[
            "/app/bin/hello",
            "eval",
            // File names are UTF-8 only when the VM started in a UTF-8 locale.
            r#"IO.puts("hello from #{System.version()} on #{:erlang.system_info(:otp_release)}, #{:file.native_name_encoding()}")"#,
        ],
    );
    assert_eq!(said.trim(), "hello from 1.14.0 on 25, utf8");
}
