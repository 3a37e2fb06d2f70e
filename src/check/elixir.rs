//! The checks of an image whose build runs `mix release`: the mistakes every Elixir
//! deployment guide warns about, found in the project's sources and the image's config.

use regex::Regex;

use super::{CheckId, Finding};
use crate::mix::{Endpoint, Project, line_of};
use crate::plan::dispatch::{ImageConfig, looks_secret};

/// The release image and where its Dockerfile can be changed.
pub struct Release<'a> {
    /// The Mix project at the context's root, if there is one.
    pub project: Option<&'a Project>,
    /// The final image's config.
    pub config: &'a ImageConfig,
    /// The Dockerfile's name, and lines in it: the final stage's FROM, its last USER and
    /// the last ENV that sets LANG or LC_ALL.
    pub dockerfile: &'a str,
    pub stage_line: usize,
    pub user_line: Option<usize>,
    pub locale_line: Option<usize>,
}

/// Every release check; `locales` are the compiled locales the image has (`C.utf8`,
/// `en_US.utf8`, as `/usr/lib/locale` and its archive name them).
pub fn check(release: &Release<'_>, locales: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some(project) = release.project {
        findings.extend(compile_time_secrets(project));
        findings.extend(random_cookie(project, release.config));
        findings.extend(phoenix_server_off(project, release));
    }
    findings.extend(runs_as_root(release));
    findings.extend(no_utf8_locale(release, locales));
    findings
}

/// The environment variables `config/config.exs` and `config/prod.exs` read: they run when
/// the release is compiled, so a secret read there is baked into the image.
fn compile_time_secrets(project: &Project) -> Vec<Finding> {
    let read = Regex::new(r#"System\.(?:get_env|fetch_env!?)\(\s*"([A-Za-z_][A-Za-z0-9_]*)""#)
        .expect("a valid pattern");
    let mut findings = Vec::new();
    for file in &project.compile_time_config {
        let Some(text) = project.source(file) else {
            continue;
        };
        for found in read.captures_iter(&text) {
            let Some(name) = found.get(1) else { continue };
            if !(looks_secret(name.as_str()) || name.as_str().ends_with("DATABASE_URL")) {
                continue;
            }
            findings.push(Finding {
                id: CheckId::CompileTimeSecret,
                file: project.display_path(file),
                line: Some(line_of(&text, name.start())),
                message: format!(
                    "{} is read when the release is compiled, so its value is baked into the image (and every build needs it); read it in config/runtime.exs, which runs when the release starts",
                    name.as_str()
                ),
            });
        }
    }
    findings
}

/// No `cookie:` in the release and no `RELEASE_COOKIE` in the image: `mix release` writes
/// a random cookie into `releases/COOKIE`.
fn random_cookie(project: &Project, config: &ImageConfig) -> Option<Finding> {
    if project.cookie_line.is_some() || config.get_env("RELEASE_COOKIE").is_some() {
        return None;
    }
    Some(Finding {
        id: CheckId::RandomReleaseCookie,
        file: project.display_path("mix.exs"),
        line: Some(project.release_line),
        message: format!(
            "the release `{}` sets no cookie, so `mix release` bakes a random one into releases/COOKIE: every node started from the image shares it, and no two builds give the same image; set `cookie:` in the release (a placeholder if the nodes never connect) and pass the real one as RELEASE_COOKIE when the container starts",
            project.release
        ),
    })
}

/// A Phoenix endpoint serves only with `server: true`, which Phoenix's generated
/// `runtime.exs` sets only when `PHX_SERVER` is set (its `bin/server` sets it).
fn phoenix_server_off(project: &Project, release: &Release<'_>) -> Option<Finding> {
    let Endpoint {
        module,
        file: endpoint_file,
        line: endpoint_line,
    } = project.endpoint()?;
    let config = release.config;
    if config.get_env("PHX_SERVER").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let starts_server = config
        .entrypoint
        .iter()
        .chain(config.cmd.iter())
        .flatten()
        .any(|arg| arg.ends_with("bin/server"));
    if starts_server {
        return None;
    }
    let server_true = Regex::new(r"\bserver:\s*true\b").expect("a valid pattern");
    let mut conditional = None;
    for file in ["config/runtime.exs", "config/prod.exs", "config/config.exs"] {
        let Some(text) = project.source(file) else {
            continue;
        };
        let Some(found) = server_true.find(&text) else {
            continue;
        };
        match text.find("PHX_SERVER") {
            // `server: true` whatever the environment.
            None => return None,
            Some(at) => {
                conditional = conditional.or(Some((file, line_of(&text, at.min(found.start())))))
            }
        }
    }
    let (file, line, why) = match conditional {
        Some((file, line)) => (
            project.display_path(file),
            line,
            format!(
                "{file} sets `server: true` only when PHX_SERVER is set, and the image sets no PHX_SERVER"
            ),
        ),
        None => (
            project.display_path(&endpoint_file),
            endpoint_line,
            "no configuration sets `server: true`".to_owned(),
        ),
    };
    Some(Finding {
        id: CheckId::PhoenixServerOff,
        file,
        line: Some(line),
        message: format!(
            "{module} serves only with `server: true`, and {why}: the release starts and listens on nothing; add `ENV PHX_SERVER=true` to the final stage of {} (line {}), or start the release with bin/server",
            release.dockerfile, release.stage_line
        ),
    })
}

fn runs_as_root(release: &Release<'_>) -> Option<Finding> {
    let user = release.config.user.split(':').next().unwrap_or_default();
    if !matches!(user, "" | "root" | "0") {
        return None;
    }
    Some(Finding {
        id: CheckId::RunsAsRoot,
        file: release.dockerfile.to_owned(),
        line: Some(release.user_line.unwrap_or(release.stage_line)),
        message: "the release runs as root, so a flaw in it has the container's every right; copy it with `--chown=nobody:root` and add `USER nobody` to the final stage".into(),
    })
}

/// `LC_ALL`, else `LANG`, must name a UTF-8 locale the image has.
fn no_utf8_locale(release: &Release<'_>, locales: &[String]) -> Option<Finding> {
    let config = release.config;
    let (variable, value) = ["LC_ALL", "LANG"]
        .into_iter()
        .find_map(|v| config.get_env(v).filter(|x| !x.is_empty()).map(|x| (v, x)))
        .unzip();
    let problem = match (variable, value) {
        (Some(variable), Some(value)) => {
            let (language, codeset) = value.split_once('.').unwrap_or((value, ""));
            let codeset = codeset.split('@').next().unwrap_or_default();
            let utf8 = matches!(codeset.to_ascii_lowercase().as_str(), "utf-8" | "utf8");
            if !utf8 {
                format!("{variable} is `{value}`, not a UTF-8 locale")
            } else if locale_exists(locales, language) {
                return None;
            } else {
                format!("{variable} is `{value}`, a locale the image does not have")
            }
        }
        _ => "neither LANG nor LC_ALL is set".to_owned(),
    };
    Some(Finding {
        id: CheckId::NoUtf8Locale,
        file: release.dockerfile.to_owned(),
        line: Some(release.locale_line.unwrap_or(release.stage_line)),
        message: format!(
            "{problem}: the Erlang VM warns at start and its IO is latin1; set `ENV LANG=C.UTF-8` in the final stage (Debian has that locale built in), or install and generate the locale you name"
        ),
    })
}

/// Whether glibc finds `LANGUAGE.UTF-8`: a compiled locale directory or a name in the
/// locale archive (glibc normalises the codeset to `utf8`).
fn locale_exists(locales: &[String], language: &str) -> bool {
    let names = [format!("{language}.utf8"), format!("{language}.UTF-8")];
    locales.iter().any(|locale| names.contains(locale))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIX: &str = "defmodule Shop.MixProject do\n  use Mix.Project\n\n  def project do\n    [\n      app: :shop,\n      releases: [shop: [include_executables_for: [:unix]]]\n    ]\n  end\nend\n";

    fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let project = Project::detect(dir.path()).unwrap().unwrap();
        (dir, project)
    }

    fn config(env: &[&str], user: &str, cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            env: env.iter().map(|e| (*e).to_owned()).collect(),
            user: user.to_owned(),
            cmd: Some(cmd.iter().map(|c| (*c).to_owned()).collect()),
            ..ImageConfig::default()
        }
    }

    fn run(project: Option<&Project>, config: &ImageConfig, locales: &[String]) -> Vec<Finding> {
        let release = Release {
            project,
            config,
            dockerfile: "Dockerfile",
            stage_line: 20,
            user_line: None,
            locale_line: None,
        };
        check(&release, locales)
    }

    /// A finding's file within the project (findings name it with the project's path).
    fn relative<'a>(p: &Project, file: &'a str) -> &'a str {
        let root = format!("{}/", p.root.display());
        file.strip_prefix(&root)
            .unwrap_or_else(|| panic!("{file} is not in {root}"))
    }

    fn ids(findings: &[Finding]) -> Vec<CheckId> {
        findings.iter().map(|f| f.id).collect()
    }

    fn clean_config() -> ImageConfig {
        config(&["LANG=C.UTF-8"], "nobody", &["/app/bin/shop", "start"])
    }

    fn c_utf8() -> Vec<String> {
        vec!["C.utf8".to_owned()]
    }

    #[test]
    fn a_clean_release_has_no_findings() {
        let (_dir, p) = project(&[
            (
                "mix.exs",
                &MIX.replace("[:unix]]", "[:unix], cookie: \"x\"]"),
            ),
            (
                "config/config.exs",
                "import Config\nconfig :shop, port: System.get_env(\"PORT\")\n",
            ),
            (
                "config/runtime.exs",
                "config :shop, key: System.fetch_env!(\"SECRET_KEY_BASE\")\n",
            ),
        ]);
        assert_eq!(run(Some(&p), &clean_config(), &c_utf8()), []);
    }

    #[test]
    fn compile_time_secrets_are_found_where_they_are_read() {
        let (_dir, p) = project(&[
            (
                "mix.exs",
                &MIX.replace("[:unix]]", "[:unix], cookie: \"x\"]"),
            ),
            (
                "config/config.exs",
                "import Config\n# System.get_env(\"OLD_TOKEN\")\nconfig :shop,\n  stripe: System.get_env(\"STRIPE_API_KEY\"),\n  port: System.get_env(\"PORT\")\n",
            ),
            (
                "config/prod.exs",
                "config :shop, Repo, url: System.fetch_env!(\"DATABASE_URL\")\n",
            ),
        ]);
        let found = run(Some(&p), &clean_config(), &c_utf8());
        let at: Vec<(&str, Option<usize>)> = found
            .iter()
            .map(|f| (relative(&p, &f.file), f.line))
            .collect();
        assert_eq!(
            at,
            [("config/config.exs", Some(4)), ("config/prod.exs", Some(1))]
        );
        assert!(found.iter().all(|f| f.id == CheckId::CompileTimeSecret));
        assert!(
            found[0]
                .message
                .starts_with("STRIPE_API_KEY is read when the release is compiled")
        );
    }

    #[test]
    fn no_cookie_is_found_at_the_release_unless_the_image_sets_one() {
        let (_dir, p) = project(&[("mix.exs", MIX)]);
        let found = run(Some(&p), &clean_config(), &c_utf8());
        assert_eq!(ids(&found), [CheckId::RandomReleaseCookie]);
        assert_eq!(
            (relative(&p, &found[0].file), found[0].line),
            ("mix.exs", Some(7))
        );
        let with_env = config(&["LANG=C.UTF-8", "RELEASE_COOKIE=c"], "nobody", &[]);
        assert_eq!(run(Some(&p), &with_env, &c_utf8()), []);
    }

    #[test]
    fn a_phoenix_endpoint_must_be_told_to_serve() {
        let mix = MIX.replace("[:unix]]", "[:unix], cookie: \"x\"]");
        let runtime = "import Config\n\nif System.get_env(\"PHX_SERVER\") do\n  config :shop, ShopWeb.Endpoint, server: true\nend\n";
        let (_dir, p) = project(&[
            ("mix.exs", &mix),
            (
                "config/config.exs",
                "import Config\nconfig :shop, ShopWeb.Endpoint, url: [host: \"localhost\"]\n",
            ),
            ("config/runtime.exs", runtime),
        ]);
        assert_eq!(
            p.endpoint(),
            Some(Endpoint {
                module: "ShopWeb.Endpoint".into(),
                file: "config/config.exs".into(),
                line: 2
            })
        );
        let found = run(Some(&p), &clean_config(), &c_utf8());
        assert_eq!(ids(&found), [CheckId::PhoenixServerOff]);
        assert_eq!(
            (relative(&p, &found[0].file), found[0].line),
            ("config/runtime.exs", Some(3))
        );
        assert!(
            found[0].message.contains("ENV PHX_SERVER=true"),
            "{}",
            found[0].message
        );

        let served = config(&["LANG=C.UTF-8", "PHX_SERVER=true"], "nobody", &[]);
        assert_eq!(run(Some(&p), &served, &c_utf8()), []);
        let bin_server = config(&["LANG=C.UTF-8"], "nobody", &["/app/bin/server"]);
        assert_eq!(run(Some(&p), &bin_server, &c_utf8()), []);

        let (_dir, always) = project(&[
            ("mix.exs", &mix),
            (
                "config/config.exs",
                "config :shop, ShopWeb.Endpoint, url: [host: \"localhost\"]\n",
            ),
            (
                "config/runtime.exs",
                "config :shop, ShopWeb.Endpoint, server: true\n",
            ),
        ]);
        assert_eq!(run(Some(&always), &clean_config(), &c_utf8()), []);
    }

    #[test]
    fn root_is_found_at_the_user_line_or_the_stage() {
        let view = c_utf8();
        for user in ["", "root", "0", "0:0", "root:root"] {
            let found = run(None, &config(&["LANG=C.UTF-8"], user, &[]), &view);
            assert_eq!(ids(&found), [CheckId::RunsAsRoot], "{user:?}");
            assert_eq!(found[0].line, Some(20));
        }
        for user in ["nobody", "1000", "nobody:root"] {
            assert_eq!(
                run(None, &config(&["LANG=C.UTF-8"], user, &[]), &view),
                [],
                "{user}"
            );
        }
        let cfg = config(&["LANG=C.UTF-8"], "root", &[]);
        let release = Release {
            project: None,
            config: &cfg,
            dockerfile: "Dockerfile",
            stage_line: 20,
            user_line: Some(25),
            locale_line: None,
        };
        assert_eq!(check(&release, &view)[0].line, Some(25));
    }

    #[test]
    fn the_locale_must_be_utf8_and_in_the_image() {
        let with = |env: &[&str], locales: &[String]| {
            let found = run(None, &config(env, "nobody", &[]), locales);
            found.into_iter().map(|f| f.message).collect::<Vec<_>>()
        };
        let c_utf8 = c_utf8();
        assert_eq!(with(&["LANG=C.UTF-8"], &c_utf8), Vec::<String>::new());
        assert_eq!(
            with(&["LC_ALL=C.utf8", "LANG=C"], &c_utf8),
            Vec::<String>::new()
        );
        let none = with(&[], &c_utf8);
        assert!(
            none[0].starts_with("neither LANG nor LC_ALL is set"),
            "{none:?}"
        );
        let latin = with(&["LANG=C"], &c_utf8);
        assert!(
            latin[0].starts_with("LANG is `C`, not a UTF-8 locale"),
            "{latin:?}"
        );
        let missing = with(&["LANG=en_US.UTF-8"], &c_utf8);
        assert!(
            missing[0].starts_with("LANG is `en_US.UTF-8`, a locale the image does not have"),
            "{missing:?}"
        );
        let generated = vec!["en_US.utf8".to_owned()];
        assert_eq!(
            with(&["LANG=en_US.UTF-8"], &generated),
            Vec::<String>::new()
        );
    }
}
