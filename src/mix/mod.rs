//! Mix projects: what imgbuild reads of one (the app and release names, which files exist,
//! the Phoenix asset alias, the versions asked for), for the zero-config build
//! ([`dockerfile`]) and the release checks ([`crate::check::elixir`]).
//!
//! `mix.exs` is Elixir code, and nothing but Elixir can evaluate it. imgbuild reads the
//! few keyword entries it needs with patterns, comments stripped, as the lines a
//! `mix new` / `mix phx.new` project writes them; anything cleverer (names computed by
//! functions) is not understood, and the flags (`--release`-less ones: `--builder-image`,
//! an `imgbuild.toml`) or `imgbuild init`'s Dockerfile are the way out.

pub mod dockerfile;

use std::path::{Path, PathBuf};

use regex::Regex;

use crate::error::InputError;

/// A Mix project at the root of a build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub root: PathBuf,
    /// `app: :NAME` in `project/0`.
    pub app: String,
    /// The release `mix release` builds: the first of `releases:`, else the app.
    pub release: String,
    /// `mix.exs`, comments blanked out (lines and columns kept).
    pub mix_exs: String,
    /// `cookie:` in the release's options: its line.
    pub cookie_line: Option<usize>,
    /// The line of `releases:`, or of `def project`, where a cookie would go.
    pub release_line: usize,
    /// `elixir: "~> 1.15"`.
    pub elixir_requirement: Option<String>,
    /// The steps of the `"assets.deploy"` alias, when the project has one (Phoenix's).
    pub assets_deploy: Option<Vec<String>>,
    /// The files and directories the release build copies, those that exist.
    pub has_lock: bool,
    pub has_priv: bool,
    pub has_assets: bool,
    pub has_rel: bool,
    pub has_runtime_config: bool,
    /// Compile-time configuration files that exist: `config/config.exs`, `config/prod.exs`.
    pub compile_time_config: Vec<String>,
    /// `.tool-versions`' `elixir` and `erlang` versions.
    pub tool_versions: ToolVersions,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolVersions {
    /// `1.15.7` (an `-otp-26` suffix removed).
    pub elixir: Option<String>,
    pub erlang: Option<String>,
}

impl Project {
    /// The Mix project at `root`: `None` when there is no `mix.exs`, an input error when it
    /// cannot be read or names no app.
    pub fn detect(root: &Path) -> Result<Option<Project>, InputError> {
        let mix_path = root.join("mix.exs");
        if !mix_path.is_file() {
            return Ok(None);
        }
        let raw = std::fs::read_to_string(&mix_path)
            .map_err(|e| InputError::new(format!("reading {}: {e}", mix_path.display())))?;
        let mix_exs = strip_comments(&raw);
        let first = |pattern: &str| -> Option<(String, usize)> {
            let re = Regex::new(pattern).expect("a valid pattern");
            re.captures(&mix_exs).and_then(|c| {
                let m = c.get(1)?;
                Some((m.as_str().to_owned(), line_of(&mix_exs, m.start())))
            })
        };
        let Some((app, _)) = first(r"\bapp:\s*:([a-z_][a-zA-Z0-9_]*)") else {
            return Err(InputError::new(format!(
                "{}: no `app: :name` in the project: imgbuild cannot tell what to release",
                mix_path.display()
            ))
            .with_hint("write a Dockerfile for it (`imgbuild init` writes one to start from)"));
        };
        let releases = first(r"\breleases:\s*\[\s*([a-z_][a-zA-Z0-9_]*):");
        let releases_at = mix_exs.find("releases:");
        let cookie_line = releases_at.and_then(|at| {
            mix_exs[at..]
                .find("cookie:")
                .map(|offset| line_of(&mix_exs, at + offset))
        });
        let release_line = match releases_at {
            Some(at) => line_of(&mix_exs, at),
            None => mix_exs
                .find("def project")
                .map_or(1, |at| line_of(&mix_exs, at)),
        };
        let assets_deploy = Regex::new(r#""assets\.deploy"\s*:\s*\[([^\]]*)\]"#)
            .expect("a valid pattern")
            .captures(&mix_exs)
            .and_then(|c| c.get(1))
            .map(|steps| {
                Regex::new(r#""((?:[^"\\]|\\.)*)""#)
                    .expect("a valid pattern")
                    .captures_iter(steps.as_str())
                    .filter_map(|c| c.get(1).map(|m| m.as_str().to_owned()))
                    .collect()
            });
        let exists = |path: &str| root.join(path).exists();
        Ok(Some(Project {
            root: root.to_owned(),
            release: releases.map_or_else(|| app.clone(), |(name, _)| name),
            app,
            cookie_line,
            release_line,
            elixir_requirement: first(r#"\belixir:\s*"([^"]+)""#).map(|(r, _)| r),
            assets_deploy,
            has_lock: exists("mix.lock"),
            has_priv: root.join("priv").is_dir(),
            has_assets: root.join("assets").is_dir(),
            has_rel: root.join("rel").is_dir(),
            has_runtime_config: exists("config/runtime.exs"),
            compile_time_config: ["config/config.exs", "config/prod.exs"]
                .into_iter()
                .filter(|p| exists(p))
                .map(str::to_owned)
                .collect(),
            tool_versions: ToolVersions::read(&root.join(".tool-versions")),
            mix_exs,
        }))
    }

    /// A project file as messages name it: the project's path as the user gave it, joined
    /// with the file (`config/config.exs` in the current directory, `app/mix.exs`
    /// elsewhere).
    pub fn display_path(&self, file: &str) -> String {
        let joined = self.root.join(file);
        let shown = joined.to_string_lossy();
        shown.strip_prefix("./").unwrap_or(&shown).to_owned()
    }

    /// The Phoenix endpoint the project configures, if any: what makes it a Phoenix
    /// project here (its `phoenix` dependency may be any name an umbrella gives it).
    pub fn endpoint(&self) -> Option<Endpoint> {
        let pattern = Regex::new(
            r"\bconfig\s*\(?\s*:[a-z_][a-zA-Z0-9_]*\s*,\s*([A-Z][A-Za-z0-9_.]*\.Endpoint)\b",
        )
        .expect("a valid pattern");
        ["config/config.exs", "config/prod.exs", "config/runtime.exs"]
            .into_iter()
            .find_map(|file| {
                let text = self.source(file)?;
                let found = pattern.captures(&text)?.get(1)?;
                Some(Endpoint {
                    module: found.as_str().to_owned(),
                    file: file.to_owned(),
                    line: line_of(&text, found.start()),
                })
            })
    }

    /// A project file's text with comments blanked out (`None` when it cannot be read).
    pub fn source(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path))
            .ok()
            .map(|text| strip_comments(&text))
    }
}

/// A Phoenix endpoint a project configures (`config :app, AppWeb.Endpoint, …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `AppWeb.Endpoint`.
    pub module: String,
    /// The configuration file that names it, and the line.
    pub file: String,
    pub line: usize,
}

impl ToolVersions {
    /// asdf's `.tool-versions`: `elixir 1.15.7-otp-26`, `erlang 26.2.1`.
    fn read(path: &Path) -> ToolVersions {
        let mut versions = ToolVersions::default();
        let Ok(text) = std::fs::read_to_string(path) else {
            return versions;
        };
        for line in text.lines() {
            let mut words = line.split('#').next().unwrap_or("").split_whitespace();
            match (words.next(), words.next()) {
                (Some("elixir"), Some(v)) => {
                    versions.elixir = Some(v.split("-otp-").next().unwrap_or(v).to_owned())
                }
                (Some("erlang"), Some(v)) => versions.erlang = Some(v.to_owned()),
                _ => {}
            }
        }
        versions
    }
}

/// 1-based line number of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Elixir source with every `#` comment replaced by spaces, so offsets, lines and columns
/// stay those of the file. A `#` inside a string (`"#{x}"`) or a charlist is not a comment.
pub fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    for line in source.split_inclusive('\n') {
        let mut quote: Option<char> = None;
        let mut escaped = false;
        let mut cut = None;
        for (at, c) in line.char_indices() {
            match quote {
                Some(q) => {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == q {
                        quote = None;
                    }
                }
                None if c == '"' || c == '\'' => quote = Some(c),
                // `?#` is the character literal for `#`.
                None if c == '#' && !line[..at].ends_with('?') => {
                    cut = Some(at);
                    break;
                }
                None => {}
            }
        }
        match cut {
            Some(at) => {
                out.push_str(&line[..at]);
                let rest = &line[at..];
                let newline = rest.ends_with('\n');
                out.extend(std::iter::repeat_n(' ', rest.trim_end_matches('\n').len()));
                if newline {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, Option<Project>) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let found = Project::detect(dir.path()).unwrap();
        (dir, found)
    }

    const MIX: &str = r#"defmodule Shop.MixProject do
  use Mix.Project

  def project do
    [
      app: :shop,
      version: "0.1.0",
      elixir: "~> 1.14",
      # releases: [old: []],
      releases: [
        shop_web: [cookie: "fixed"]
      ],
      aliases: aliases()
    ]
  end

  defp aliases do
    ["assets.deploy": ["esbuild default --minify", "phx.digest"]]
  end
end
"#;

    #[test]
    fn reads_names_versions_and_the_asset_alias() {
        let (_dir, found) = project(&[
            ("mix.exs", MIX),
            ("mix.lock", "%{}\n"),
            ("config/config.exs", "import Config\n"),
            ("config/runtime.exs", "import Config\n"),
            ("priv/static/robots.txt", ""),
            (
                ".tool-versions",
                "elixir 1.15.7-otp-26\nerlang 26.2.1 # pinned\n",
            ),
        ]);
        let p = found.unwrap();
        assert_eq!(p.app, "shop");
        // The commented-out `releases:` line is not read.
        assert_eq!(p.release, "shop_web");
        assert_eq!((p.release_line, p.cookie_line), (10, Some(11)));
        assert_eq!(p.elixir_requirement.as_deref(), Some("~> 1.14"));
        assert_eq!(
            p.assets_deploy.unwrap(),
            ["esbuild default --minify", "phx.digest"]
        );
        assert!(p.has_lock && p.has_priv && p.has_runtime_config);
        assert!(!p.has_assets && !p.has_rel);
        assert_eq!(p.compile_time_config, ["config/config.exs"]);
        assert_eq!(p.tool_versions.elixir.as_deref(), Some("1.15.7"));
        assert_eq!(p.tool_versions.erlang.as_deref(), Some("26.2.1"));
    }

    #[test]
    fn without_releases_the_app_is_released_and_no_cookie_is_found() {
        let (_dir, found) = project(&[(
            "mix.exs",
            "defmodule A.MixProject do\n  def project do\n    [app: :a_b, version: \"1.0.0\"] # cookie: \"x\"\n  end\nend\n",
        )]);
        let p = found.unwrap();
        assert_eq!((p.app.as_str(), p.release.as_str()), ("a_b", "a_b"));
        assert_eq!((p.cookie_line, p.release_line), (None, 2));
        assert_eq!(p.assets_deploy, None);
    }

    #[test]
    fn no_mix_exs_is_no_project_and_no_app_is_an_input_error() {
        assert_eq!(project(&[("README", "")]).1, None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mix.exs"), "defmodule X do\nend\n").unwrap();
        let err = Project::detect(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no `app: :name`"), "{err}");
    }

    #[test]
    fn line_of_counts_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }

    #[test]
    fn comments_are_blanked_but_strings_keep_their_hashes() {
        let text = "a = \"#{b}\" # note\n?# # c\nx # y";
        let stripped = strip_comments(text);
        assert_eq!(stripped, "a = \"#{b}\"       \n?#    \nx    ");
        assert_eq!(stripped.len(), text.len());
    }
}
