//! `base-images/NAME/image.toml`: what goes into a base image and how it is configured.
//!
//! ```toml
//! [debian]
//! suite = "bookworm"
//! variant = "minbase"                       # the only variant supported
//! mirror = "http://deb.debian.org/debian"   # the default
//! components = ["main"]                     # the default
//! packages = ["locales", "ca-certificates"]
//! locales = ["en_US.UTF-8"]                 # generated with locale-gen
//! strip_docs = true                         # like Debian's slim images
//!
//! [image]
//! tag = "imgbuild/bookworm-slim:bookworm"   # used when no --tag is given
//! env = { LANG = "en_US.UTF-8" }            # PATH is added unless set here
//! cmd = ["bash"]
//! user = "root"
//! workdir = "/"
//! labels = { "org.opencontainers.image.title" = "…" }
//! ```
//!
//! Every mistake is an input error naming `image.toml:LINE`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::error::InputError;
use crate::registry::Reference;

/// The file name of a recipe inside its directory.
pub const RECIPE_FILE: &str = "image.toml";

/// Labels imgbuild sets itself; a recipe may not set them.
pub const RECIPE_LABEL: &str = "org.imgbuild.recipe.sha256";
pub const BUILDER_LABEL: &str = "org.imgbuild.base.builder.sha256";

/// The default Debian mirror; the machines imgbuild runs on reach it over plain HTTP.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// A checked recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The recipe directory's name, e.g. `bookworm-slim`.
    pub name: String,
    /// Path of `image.toml`, for messages.
    pub path: PathBuf,
    /// sha256 (hex) of the `image.toml` bytes: the same as `sha256sum image.toml`.
    pub sha256: String,
    pub suite: String,
    pub mirror: String,
    pub components: Vec<String>,
    pub packages: Vec<String>,
    pub locales: Vec<String>,
    pub strip_docs: bool,
    /// The tag used when none is given on the command line.
    pub tag: String,
    /// In the order written into the config: PATH first, then the recipe's, sorted.
    pub env: Vec<(String, String)>,
    pub cmd: Option<Vec<String>>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// PATH of Debian's official images, unless the recipe sets one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    debian: Spanned<RawDebian>,
    image: Spanned<RawImage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDebian {
    suite: Spanned<String>,
    variant: Option<Spanned<String>>,
    mirror: Option<Spanned<String>>,
    components: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    packages: Vec<Spanned<String>>,
    #[serde(default)]
    locales: Vec<Spanned<String>>,
    #[serde(default)]
    strip_docs: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    tag: Spanned<String>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    cmd: Option<Spanned<Vec<String>>>,
    user: Option<Spanned<String>>,
    workdir: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
}

static SUITE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9.-]*$").unwrap());
static COMPONENT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9/-]*$").unwrap());
// Debian policy 5.6.1: lower case letters, digits, `+`, `-`, `.`; at least two characters.
static PACKAGE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9+.-]+$").unwrap());
// language[_territory][.codeset][@modifier], as glibc names locales.
static LOCALE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-zA-Z]{1,8}(_[A-Za-z0-9]{2,3})?(\.[A-Za-z0-9-]+)?(@[A-Za-z0-9]+)?$").unwrap()
});
static ENV_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").unwrap());

impl Recipe {
    /// Reads and checks `DIR/image.toml` (a path to `image.toml` itself is accepted too).
    pub fn load(path: &Path) -> Result<Recipe, InputError> {
        let (dir, file) = if path.is_dir() {
            (path.to_path_buf(), path.join(RECIPE_FILE))
        } else if path.file_name().is_some_and(|n| n == RECIPE_FILE) {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (dir, path.to_path_buf())
        } else {
            return Err(
                InputError::new(format!("{} is not a recipe directory", path.display())).with_hint(
                    "pass a directory holding an image.toml, e.g. base-images/bookworm-slim",
                ),
            );
        };
        let bytes = std::fs::read(&file).map_err(|e| {
            InputError::new(format!("cannot read {}: {e}", file.display()))
                .with_hint("a recipe is a directory with an image.toml; see base-images/README.md")
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| InputError::new(format!("{} is not UTF-8 text", file.display())))?;
        let name = std::fs::canonicalize(&dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "base".to_owned());
        Recipe::parse(&name, &file, &text)
    }

    /// Checks the text of a recipe; `file` is only used in messages.
    pub fn parse(name: &str, file: &Path, text: &str) -> Result<Recipe, InputError> {
        let at = |span: Range<usize>, message: String| {
            InputError::new(format!(
                "{}:{}: {message}",
                file.display(),
                line_of(text, span.start)
            ))
        };
        let raw: RawRecipe = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            InputError::new(format!(
                "{}:{line}: {}",
                file.display(),
                e.message().trim_end()
            ))
            .with_hint("see base-images/README.md for the recipe format")
        })?;
        let debian = raw.debian.into_inner();
        let image = raw.image.into_inner();

        let suite = checked(
            &debian.suite,
            &SUITE,
            "suite",
            "a Debian suite such as `bookworm`",
        )
        .map_err(|m| at(debian.suite.span(), m))?;
        if let Some(variant) = &debian.variant
            && variant.get_ref() != "minbase"
        {
            return Err(at(
                variant.span(),
                format!(
                    "variant `{}` is not supported; only `minbase` is",
                    variant.get_ref()
                ),
            ));
        }
        let mirror = match &debian.mirror {
            None => DEFAULT_MIRROR.to_owned(),
            Some(m) => {
                let url = m.get_ref().trim_end_matches('/');
                let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
                let host_ok = url
                    .split_once("://")
                    .is_some_and(|(_, rest)| !rest.is_empty());
                if !scheme_ok || !host_ok || url.chars().any(|c| c.is_whitespace()) {
                    return Err(at(
                        m.span(),
                        format!("mirror `{}` is not an http:// or https:// URL", m.get_ref()),
                    ));
                }
                url.to_owned()
            }
        };
        let components = match &debian.components {
            None => vec!["main".to_owned()],
            Some(list) => {
                let list = unique_checked(list, &COMPONENT, "component", "e.g. `main`", &at)?;
                if list.is_empty() {
                    return Err(at(
                        debian.suite.span(),
                        "components is empty; name at least `main`".into(),
                    ));
                }
                list
            }
        };
        let packages = unique_checked(
            &debian.packages,
            &PACKAGE,
            "package",
            "a Debian package name",
            &at,
        )?;
        let locales = unique_checked(
            &debian.locales,
            &LOCALE,
            "locale",
            "a glibc locale such as `en_US.UTF-8`",
            &at,
        )?;
        if let Some(first) = debian.locales.first()
            && !packages
                .iter()
                .any(|p| p == "locales" || p == "locales-all")
        {
            return Err(at(
                first.span(),
                "locales are listed but the `locales` package is not; add it to packages".into(),
            ));
        }

        let tag = image.tag.get_ref().clone();
        Reference::parse(&tag).map_err(|e| at(image.tag.span(), format!("tag `{tag}`: {e}")))?;

        let mut env = Vec::new();
        if !image.env.contains_key("PATH") {
            env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
        }
        for (key, value) in &image.env {
            if !ENV_NAME.is_match(key) {
                return Err(at(
                    value.span(),
                    format!("`{key}` is not an environment variable name"),
                ));
            }
            if value.get_ref().contains('\0') {
                return Err(at(value.span(), format!("env {key} contains a NUL byte")));
            }
            env.push((key.clone(), value.get_ref().clone()));
        }
        let cmd = match &image.cmd {
            None => None,
            Some(cmd) if cmd.get_ref().is_empty() => {
                return Err(at(
                    cmd.span(),
                    "cmd is empty; leave it out or name a program".into(),
                ));
            }
            Some(cmd) => Some(cmd.get_ref().clone()),
        };
        let user = non_empty(&image.user, "user").map_err(|(s, m)| at(s, m))?;
        let workdir = non_empty(&image.workdir, "workdir").map_err(|(s, m)| at(s, m))?;
        if let (Some(dir), Some(span)) = (&workdir, image.workdir.as_ref().map(Spanned::span))
            && !dir.starts_with('/')
        {
            return Err(at(span, format!("workdir `{dir}` is not an absolute path")));
        }
        let mut labels = BTreeMap::new();
        for (key, value) in &image.labels {
            if key.is_empty() {
                return Err(at(value.span(), "a label name is empty".into()));
            }
            if key == RECIPE_LABEL || key == BUILDER_LABEL {
                return Err(at(
                    value.span(),
                    format!("label `{key}` is set by imgbuild itself"),
                ));
            }
            labels.insert(key.clone(), value.get_ref().clone());
        }

        Ok(Recipe {
            name: name.to_owned(),
            path: file.to_path_buf(),
            sha256: crate::oci::sha256_digest(text.as_bytes())
                .digest()
                .to_owned(),
            suite,
            mirror,
            components,
            packages,
            locales,
            strip_docs: debian.strip_docs,
            tag,
            env,
            cmd,
            user,
            workdir,
            labels,
        })
    }

    /// The debootstrap command line this recipe stands for, for the image's history.
    pub fn describe(&self) -> String {
        let mut words = vec!["debootstrap --variant=minbase".to_owned()];
        if self.components != ["main"] {
            words.push(format!("--components={}", self.components.join(",")));
        }
        if !self.packages.is_empty() {
            words.push(format!("--include={}", self.packages.join(",")));
        }
        words.push(self.suite.clone());
        words.push(self.mirror.clone());
        let mut text = words.join(" ");
        if !self.locales.is_empty() {
            text.push_str(&format!("; locale-gen {}", self.locales.join(" ")));
        }
        if self.strip_docs {
            text.push_str("; slim (no docs, man pages, translations)");
        }
        text
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()
        .get(..end)
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
        + 1
}

fn checked(
    value: &Spanned<String>,
    re: &Regex,
    what: &str,
    expected: &str,
) -> Result<String, String> {
    let v = value.get_ref();
    if re.is_match(v) {
        Ok(v.clone())
    } else {
        Err(format!("`{v}` is not a valid {what} (expected {expected})"))
    }
}

fn unique_checked(
    list: &[Spanned<String>],
    re: &Regex,
    what: &str,
    expected: &str,
    at: &dyn Fn(Range<usize>, String) -> InputError,
) -> Result<Vec<String>, InputError> {
    let mut out: Vec<String> = Vec::new();
    for item in list {
        let v = checked(item, re, what, expected).map_err(|m| at(item.span(), m))?;
        if out.contains(&v) {
            return Err(at(item.span(), format!("{what} `{v}` is listed twice")));
        }
        out.push(v);
    }
    Ok(out)
}

fn non_empty(
    value: &Option<Spanned<String>>,
    what: &str,
) -> Result<Option<String>, (Range<usize>, String)> {
    match value {
        None => Ok(None),
        Some(v) if v.get_ref().trim().is_empty() => {
            Err((v.span(), format!("{what} is empty; leave it out instead")))
        }
        Some(v) => Ok(Some(v.get_ref().clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[debian]
suite = "bookworm"
variant = "minbase"
packages = ["locales", "ca-certificates"]
locales = ["en_US.UTF-8"]
strip_docs = true

[image]
tag = "imgbuild/test:bookworm"
env = { LANG = "en_US.UTF-8", LC_ALL = "en_US.UTF-8" }
cmd = ["bash"]
labels = { "org.example" = "x" }
"#;

    fn parse(text: &str) -> Result<Recipe, InputError> {
        Recipe::parse("test", Path::new("base-images/test/image.toml"), text)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_recipe_with_defaults() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.suite, "bookworm");
        assert_eq!(r.mirror, DEFAULT_MIRROR);
        assert_eq!(r.components, ["main"]);
        assert_eq!(r.packages, ["locales", "ca-certificates"]);
        assert!(r.strip_docs);
        assert_eq!(r.env.first().map(|(k, _)| k.as_str()), Some("PATH"));
        assert_eq!(
            r.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["PATH", "LANG", "LC_ALL"]
        );
        assert_eq!(r.cmd, Some(vec!["bash".to_owned()]));
        assert_eq!(
            r.sha256,
            crate::oci::sha256_digest(GOOD.as_bytes()).digest()
        );
        assert_eq!(
            r.describe(),
            "debootstrap --variant=minbase --include=locales,ca-certificates bookworm \
             http://deb.debian.org/debian; locale-gen en_US.UTF-8; slim (no docs, man pages, translations)"
        );
    }

    #[test]
    fn syntax_errors_and_unknown_fields_name_the_line() {
        let e = error("[debian]\nsuite = \"bookworm\"\npackges = []\n[image]\ntag = \"a/b:c\"\n");
        assert!(e.starts_with("base-images/test/image.toml:3: "), "{e}");
        assert!(e.contains("packges"), "{e}");
        let e = error("[debian]\nsuite = bookworm\n");
        assert!(e.starts_with("base-images/test/image.toml:2: "), "{e}");
        let e = error("[debian]\nsuite = \"bookworm\"\n");
        assert!(e.contains("image"), "{e}");
    }

    #[test]
    fn bad_values_name_their_line() {
        for (from, to, line, needle) in [
            ("suite = \"bookworm\"", "suite = \"Bookworm!\"", 3, "suite"),
            (
                "variant = \"minbase\"",
                "variant = \"buildd\"",
                4,
                "only `minbase`",
            ),
            ("\"ca-certificates\"]", "\"CA\"]", 5, "package"),
            ("\"ca-certificates\"]", "\"locales\"]", 5, "listed twice"),
            ("[\"en_US.UTF-8\"]", "[\"en US\"]", 6, "locale"),
            (
                "tag = \"imgbuild/test:bookworm\"",
                "tag = \"Bad Tag\"",
                10,
                "tag",
            ),
            ("cmd = [\"bash\"]", "cmd = []", 12, "cmd is empty"),
            ("LC_ALL = ", "\"LC ALL\" = ", 11, "environment variable"),
            (
                "\"org.example\"",
                "\"org.imgbuild.recipe.sha256\"",
                13,
                "set by imgbuild",
            ),
        ] {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "{from}");
            let e = error(&text);
            assert!(
                e.starts_with(&format!("base-images/test/image.toml:{line}: ")),
                "{from}: {e}"
            );
            assert!(e.contains(needle), "{from}: {e}");
        }
    }

    #[test]
    fn locales_need_the_locales_package() {
        let e = error(&GOOD.replace(
            "[\"locales\", \"ca-certificates\"]",
            "[\"ca-certificates\"]",
        ));
        assert!(e.contains(":6: "), "{e}");
        assert!(e.contains("`locales` package"), "{e}");
    }

    #[test]
    fn mirror_must_be_http() {
        let text = GOOD.replace("variant = \"minbase\"", "mirror = \"ftp://x/debian\"");
        let e = error(&text);
        assert!(e.contains(":4: ") && e.contains("not an http"), "{e}");
        let text = GOOD.replace(
            "variant = \"minbase\"",
            "mirror = \"http://m.example/debian/\"",
        );
        assert_eq!(parse(&text).unwrap().mirror, "http://m.example/debian");
    }

    #[test]
    fn load_reports_a_missing_recipe() {
        let dir = tempfile::tempdir().unwrap();
        let e = Recipe::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("image.toml"), "{e}");
        let e = Recipe::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a recipe directory"), "{e}");
    }

    #[test]
    fn the_shipped_recipes_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("base-images");
        for name in ["bookworm-slim", "elixir-toolchain"] {
            let r = Recipe::load(&root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(r.name, name);
            assert!(r.locales.iter().any(|l| l == "en_US.UTF-8"), "{name}");
        }
    }
}
