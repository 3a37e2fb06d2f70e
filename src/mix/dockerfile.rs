//! The zero-config build of a Mix project: the Dockerfile of the standard release pattern,
//! written for the project's files. `imgbuild .` parses it like any Dockerfile (there is no
//! second build path), and `imgbuild init` writes the same text to `Dockerfile`, so
//! building that file gives the same image.

use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use super::Project;
use crate::error::InputError;

/// What messages call the Dockerfile imgbuild writes for a project.
pub const GENERATED_NAME: &str = "Dockerfile (generated; `imgbuild init` writes it)";

/// The project file that picks the images: `builder-image` and `runner-image`.
pub const CONFIG_FILE: &str = "imgbuild.toml";

/// The build stage's toolchain and the runtime stage's base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    pub builder: String,
    pub runner: String,
}

/// `imgbuild.toml` at the project root.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigFile {
    builder_image: Option<String>,
    runner_image: Option<String>,
}

/// The Debian snapshot of the default images: hexpm builds each Elixir/OTP pair on dated
/// Debian images, and a tag names the date.
const DEBIAN: &str = "bookworm-20231009-slim";

/// Known Elixir/OTP pairs by Elixir minor version, for a `mix.exs` requirement without a
/// `.tool-versions`: the last patch release of each with the OTP Phoenix's generator paired
/// it with.
const KNOWN: &[(&str, &str, &str)] =
    &[("1.14", "1.14.5", "25.3.2.8"), ("1.15", "1.15.7", "26.1.2")];

impl Images {
    /// The images for `project`: the flags first, then `imgbuild.toml`, then hexpm's
    /// images for the versions `.tool-versions` (or `mix.exs`'s `elixir:`) asks for.
    pub fn choose(
        project: &Project,
        builder_flag: Option<&str>,
        runner_flag: Option<&str>,
    ) -> Result<Images, InputError> {
        let file = read_config(&project.root)?;
        let builder = builder_flag.map(str::to_owned).or(file.builder_image);
        let runner = runner_flag.map(str::to_owned).or(file.runner_image);
        if let (Some(builder), Some(runner)) = (&builder, &runner) {
            return Ok(Images {
                builder: builder.clone(),
                runner: runner.clone(),
            });
        }
        let (elixir, erlang) = default_versions(project)?;
        Ok(Images {
            builder: builder.unwrap_or_else(|| {
                format!("hexpm/elixir:{elixir}-erlang-{erlang}-debian-{DEBIAN}")
            }),
            // hexpm's Erlang image: the run-time libraries of ERTS (OpenSSL, ncurses,
            // libstdc++) on the same Debian as the builder, and nothing else.
            runner: runner.unwrap_or_else(|| format!("hexpm/erlang:{erlang}-debian-{DEBIAN}")),
        })
    }
}

fn read_config(root: &Path) -> Result<ConfigFile, InputError> {
    let path = root.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(e) => return Err(InputError::new(format!("reading {}: {e}", path.display()))),
    };
    toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|span| super::line_of(&text, span.start));
        let at = line.map(|l| format!(":{l}")).unwrap_or_default();
        InputError::new(format!("{}{at}: {}", path.display(), e.message()))
            .with_hint("imgbuild.toml takes builder-image = \"REF\" and runner-image = \"REF\"")
    })
}

/// The Elixir and OTP versions of the default images.
fn default_versions(project: &Project) -> Result<(String, String), InputError> {
    let tools = &project.tool_versions;
    if let (Some(elixir), Some(erlang)) = (&tools.elixir, &tools.erlang) {
        return Ok((elixir.clone(), erlang.clone()));
    }
    let minor = project.elixir_requirement.as_deref().and_then(|req| {
        regex::Regex::new(r"(\d+\.\d+)")
            .expect("a valid pattern")
            .captures(req)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_owned())
    });
    let known = minor
        .as_deref()
        .and_then(|minor| KNOWN.iter().find(|(m, _, _)| *m == minor));
    match known {
        Some((_, elixir, erlang)) => Ok(((*elixir).to_owned(), (*erlang).to_owned())),
        None => Err(InputError::new(format!(
            "no default images for the Mix project `{}`: {}",
            project.app,
            match &project.elixir_requirement {
                Some(req) => format!("it asks for Elixir `{req}`, and imgbuild knows default images for Elixir {} only", KNOWN.iter().map(|(m, _, _)| *m).collect::<Vec<_>>().join(" and ")),
                None => "mix.exs has no `elixir:` requirement and there is no .tool-versions".to_owned(),
            }
        ))
        .with_hint(
            "give --builder-image and --runner-image (or builder-image and runner-image in imgbuild.toml), or pin `elixir` and `erlang` in .tool-versions",
        )),
    }
}

/// What generating the Dockerfile noticed that the user should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub text: String,
    pub notes: Vec<String>,
    /// Whether a step downloads tools (`mix assets.deploy` running esbuild, tailwind…).
    pub needs_network: bool,
}

/// The zero-config Dockerfile for the project at `context`, if it is a Mix project with no
/// Dockerfile of its own: what `imgbuild .` builds there.
pub fn for_context(
    context: &Path,
    builder_flag: Option<&str>,
    runner_flag: Option<&str>,
) -> Result<Option<Generated>, InputError> {
    if context.join("Dockerfile").exists() {
        return Ok(None);
    }
    let Some(project) = Project::detect(context)? else {
        return Ok(None);
    };
    let images = Images::choose(&project, builder_flag, runner_flag)?;
    Ok(Some(generate(&project, &images)))
}

/// The Dockerfile of the standard release pattern for `project`.
pub fn generate(project: &Project, images: &Images) -> Generated {
    let mut notes = Vec::new();
    let mut needs_network = false;
    let mut d = String::new();
    let name = &project.release;
    let _ = writeln!(
        d,
        "# The release image of the Mix project `{}`, as `imgbuild .` builds it without a\n\
         # Dockerfile (`imgbuild init` wrote this file; building it gives the same image).\n\
         \n\
         # The build stage: dependencies first, keyed on mix.exs and mix.lock only, so a change\n\
         # to the code never fetches or compiles them again.\n\
         FROM {} AS build\n\
         WORKDIR /app\n\
         ENV MIX_ENV=prod",
        project.app, images.builder
    );
    if hex_dependencies(project) {
        let _ = writeln!(
            d,
            "# Hex and rebar3 fetch the dependencies.\nRUN mix local.hex --force && mix local.rebar --force"
        );
    }
    let lock = if project.has_lock { " mix.lock" } else { "" };
    let _ = writeln!(
        d,
        "COPY mix.exs{lock} ./\nRUN mix deps.get --only $MIX_ENV\nRUN mkdir config"
    );
    if !project.compile_time_config.is_empty() {
        let _ = writeln!(
            d,
            "# Compile-time configuration: a change here compiles the dependencies again.\nCOPY {} config/",
            project.compile_time_config.join(" ")
        );
    }
    let _ = writeln!(d, "RUN mix deps.compile\n");
    if project.has_priv {
        let _ = writeln!(d, "COPY priv priv");
    }
    let _ = writeln!(d, "COPY lib lib");
    if let Some(steps) = &project.assets_deploy {
        if project.has_assets {
            let _ = writeln!(d, "COPY assets assets");
        }
        let _ = writeln!(d, "RUN mix assets.deploy");
        let downloads: Vec<&str> = ["esbuild", "tailwind", "npm", "yarn"]
            .into_iter()
            .filter(|tool| {
                steps.iter().any(|step| {
                    step.split_whitespace().next() == Some(tool)
                        || step.contains(&format!("{tool} "))
                })
            })
            .collect();
        needs_network = !downloads.is_empty();
        if needs_network {
            notes.push(format!(
                "mix.exs: `mix assets.deploy` runs {}, which download{} on first use: the build needs network access (the default network, or --network host), and fails in `RUN mix assets.deploy` without it",
                downloads.join(" and "),
                if downloads.len() == 1 { "s its binary" } else { " their binaries" }
            ));
        }
    }
    let _ = writeln!(d, "RUN mix compile\n");
    if project.has_runtime_config {
        let _ = writeln!(
            d,
            "# Read when the release starts, so editing it compiles nothing.\nCOPY config/runtime.exs config/"
        );
    }
    if project.has_rel {
        let _ = writeln!(d, "COPY rel rel");
    }
    let _ = writeln!(d, "RUN mix release\n");
    let phoenix = project.endpoint().is_some();
    let _ = writeln!(
        d,
        "# The runtime stage: the release alone, on a slim image, as an unprivileged user, with a\n\
         # UTF-8 locale (the VM's IO is latin1 without one).\n\
         FROM {}\n\
         WORKDIR /app\n\
         ENV LANG=C.UTF-8 LC_ALL=C.UTF-8 MIX_ENV=prod{}\n\
         COPY --from=build --chown=nobody:root /app/_build/prod/rel/{name} ./\n\
         USER nobody\n\
         CMD [\"/app/bin/{name}\", \"start\"]",
        images.runner,
        // Phoenix's generated runtime.exs serves only when PHX_SERVER is set.
        if phoenix { " PHX_SERVER=true" } else { "" },
    );
    Generated {
        text: d,
        notes,
        needs_network,
    }
}

/// Whether `mix.lock` names any package (an empty lock needs no Hex, and Hex cannot be
/// installed without the network).
fn hex_dependencies(project: &Project) -> bool {
    std::fs::read_to_string(project.root.join("mix.lock"))
        .is_ok_and(|lock| lock.contains(":hex") || lock.contains(":git"))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    const MIX: &str = "defmodule A.MixProject do\n  def project do\n    [app: :shop, elixir: \"~> 1.15\"]\n  end\nend\n";

    fn images() -> Images {
        Images {
            builder: "b:1".into(),
            runner: "r:1".into(),
        }
    }

    #[test]
    fn the_dockerfile_copies_what_the_project_has() {
        let (_dir, p) = project(&[
            ("mix.exs", MIX),
            ("mix.lock", "%{}\n"),
            ("config/config.exs", ""),
            ("config/prod.exs", ""),
            ("config/runtime.exs", ""),
            ("lib/shop.ex", ""),
        ]);
        let generated = generate(&p, &images());
        let d = &generated.text;
        assert!(d.contains("FROM b:1 AS build\n"), "{d}");
        assert!(d.contains("COPY mix.exs mix.lock ./\n"), "{d}");
        assert!(
            d.contains("COPY config/config.exs config/prod.exs config/\n"),
            "{d}"
        );
        assert!(d.contains("COPY config/runtime.exs config/\n"), "{d}");
        assert!(
            !d.contains("COPY priv") && !d.contains("COPY rel") && !d.contains("local.hex"),
            "{d}"
        );
        assert!(d.contains("COPY --from=build --chown=nobody:root /app/_build/prod/rel/shop ./\nUSER nobody\nCMD [\"/app/bin/shop\", \"start\"]"), "{d}");
        assert!(!d.contains("PHX_SERVER"), "{d}");
        assert!(generated.notes.is_empty());
        // Dependencies come before the code, runtime configuration after it.
        let at = |s: &str| d.find(s).unwrap();
        assert!(at("RUN mix deps.get") < at("COPY lib lib"));
        assert!(at("RUN mix compile") < at("COPY config/runtime.exs"));
        // It is a Dockerfile the front end takes.
        let ast = crate::frontend::parse_dockerfile("Dockerfile", d.as_bytes()).unwrap();
        crate::frontend::instructions::from_ast("Dockerfile", &ast).unwrap();
    }

    #[test]
    fn phoenix_gets_its_assets_built_served_and_a_note_on_the_network() {
        let mix = "defmodule A.MixProject do\n  def project do\n    [app: :shop, aliases: [\"assets.deploy\": [\"tailwind default --minify\", \"esbuild default --minify\", \"phx.digest\"]]]\n  end\nend\n";
        let (_dir, p) = project(&[
            ("mix.exs", mix),
            (
                "mix.lock",
                "%{\n  \"jason\": {:hex, :jason, \"1.4.1\"},\n}\n",
            ),
            (
                "config/config.exs",
                "config :shop, ShopWeb.Endpoint, url: [host: \"localhost\"]\n",
            ),
            ("assets/app.css", ""),
        ]);
        let generated = generate(&p, &images());
        let d = &generated.text;
        assert!(
            d.contains("RUN mix local.hex --force && mix local.rebar --force\n"),
            "{d}"
        );
        assert!(
            d.contains("COPY assets assets\nRUN mix assets.deploy\nRUN mix compile"),
            "{d}"
        );
        assert!(d.contains("PHX_SERVER=true"), "{d}");
        assert_eq!(generated.notes.len(), 1);
        assert!(generated.needs_network);
        assert!(
            generated.notes[0].contains("esbuild and tailwind"),
            "{:?}",
            generated.notes
        );
    }

    #[test]
    fn images_come_from_flags_then_the_file_then_the_versions() {
        let (dir, p) = project(&[("mix.exs", MIX)]);
        let chosen = Images::choose(&p, None, None).unwrap();
        assert_eq!(
            chosen,
            Images {
                builder: "hexpm/elixir:1.15.7-erlang-26.1.2-debian-bookworm-20231009-slim".into(),
                runner: "hexpm/erlang:26.1.2-debian-bookworm-20231009-slim".into(),
            }
        );
        std::fs::write(
            dir.path().join(".tool-versions"),
            "elixir 1.16.1-otp-26\nerlang 26.2.2\n",
        )
        .unwrap();
        let p = Project::detect(dir.path()).unwrap().unwrap();
        let chosen = Images::choose(&p, None, None).unwrap();
        assert_eq!(
            chosen.builder,
            "hexpm/elixir:1.16.1-erlang-26.2.2-debian-bookworm-20231009-slim"
        );
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "builder-image = \"b:2\"\nrunner-image = \"r:2\"\n",
        )
        .unwrap();
        let chosen = Images::choose(&p, None, None).unwrap();
        assert_eq!(
            (chosen.builder.as_str(), chosen.runner.as_str()),
            ("b:2", "r:2")
        );
        let chosen = Images::choose(&p, Some("b:3"), None).unwrap();
        assert_eq!(
            (chosen.builder.as_str(), chosen.runner.as_str()),
            ("b:3", "r:2")
        );
    }

    #[test]
    fn unknown_versions_and_bad_config_files_are_input_errors() {
        let (dir, p) = project(&[(
            "mix.exs",
            "defmodule A.MixProject do\n  def project do\n    [app: :a, elixir: \"~> 1.99\"]\n  end\nend\n",
        )]);
        let err = Images::choose(&p, None, None).unwrap_err();
        assert!(err.to_string().contains("Elixir `~> 1.99`"), "{err}");
        assert!(Images::choose(&p, Some("b"), Some("r")).is_ok());
        std::fs::write(dir.path().join(CONFIG_FILE), "\nbuilder_image = \"x\"\n").unwrap();
        let err = Images::choose(&p, None, None).unwrap_err();
        assert!(err.to_string().contains("imgbuild.toml:2"), "{err}");
    }
}
