//! Checks of a built image and of the sources it was built from, reported like a linter:
//! an ID, the file and line where the mistake can be fixed, and one sentence on what to do.
//!
//! * [`libs`]: every dynamically linked ELF file finds its libraries (and their symbol
//!   versions) in the image's own file system, for any language;
//! * [`elixir`]: the classic `mix release` mistakes (compile-time secrets, a random
//!   cookie, a Phoenix endpoint that serves nothing) and the release image's user and locale.
//!
//! Every build prints the findings as warnings; `imgbuild check` prints them and fails when
//! any is left. A Dockerfile silences a check with BuildKit's `# check=skip=ID[,ID…]`
//! directive (`skip=all` silences every one).

pub mod elixir;
pub mod libs;

use std::fmt;
use std::path::Path;

use crate::oci::Image;
use crate::plan::dispatch::{ImageConfig, SecretName};

/// What a check found: one mistake, where to fix it, and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    pub id: CheckId,
    /// The file to change (`config/config.exs`, `Dockerfile`).
    pub file: String,
    pub line: Option<usize>,
    /// What is wrong and what to do, in a sentence or two.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: ", self.file)?,
            None => write!(f, "{}: ", self.file)?,
        }
        write!(f, "{} [{}]", self.message, self.id)
    }
}

/// The checks, by the IDs `# check=skip=` takes. BuildKit's own name is kept for the one
/// it has (`SecretsUsedInArgOrEnv`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum CheckId {
    /// A dynamically linked ELF file needs a library (or a symbol version of one) that the
    /// image lacks.
    MissingSharedLibrary,
    /// A secret-looking environment variable is read at compile time.
    CompileTimeSecret,
    /// No release cookie is set, so `mix release` bakes a random one in.
    RandomReleaseCookie,
    /// The release image runs as root.
    RunsAsRoot,
    /// The release image has no UTF-8 locale.
    NoUtf8Locale,
    /// A Phoenix endpoint that is never told to serve.
    PhoenixServerOff,
    /// An ENV or ARG whose name looks like a secret.
    SecretsUsedInArgOrEnv,
}

impl CheckId {
    pub const ALL: [CheckId; 7] = [
        CheckId::MissingSharedLibrary,
        CheckId::CompileTimeSecret,
        CheckId::RandomReleaseCookie,
        CheckId::RunsAsRoot,
        CheckId::NoUtf8Locale,
        CheckId::PhoenixServerOff,
        CheckId::SecretsUsedInArgOrEnv,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CheckId::MissingSharedLibrary => "MissingSharedLibrary",
            CheckId::CompileTimeSecret => "CompileTimeSecret",
            CheckId::RandomReleaseCookie => "RandomReleaseCookie",
            CheckId::RunsAsRoot => "RunsAsRoot",
            CheckId::NoUtf8Locale => "NoUtf8Locale",
            CheckId::PhoenixServerOff => "PhoenixServerOff",
            CheckId::SecretsUsedInArgOrEnv => "SecretsUsedInArgOrEnv",
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The checks a Dockerfile's `# check=` directive turns off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skips {
    all: bool,
    ids: Vec<String>,
}

impl Skips {
    /// Reads BuildKit's directive value, `skip=ID1,ID2;error=true` (`skip=all` for every
    /// check). Only `skip` means anything here; other keys are BuildKit's and are ignored,
    /// as are IDs of BuildKit's own rules, which imgbuild does not run.
    pub fn parse(directive: Option<&str>) -> Skips {
        let mut skips = Skips::default();
        let Some(directive) = directive else {
            return skips;
        };
        for part in directive.split(';') {
            let Some((key, value)) = part.split_once('=') else {
                continue;
            };
            if !key.trim().eq_ignore_ascii_case("skip") {
                continue;
            }
            for id in value.split(',').map(str::trim).filter(|id| !id.is_empty()) {
                if id.eq_ignore_ascii_case("all") {
                    skips.all = true;
                } else {
                    skips.ids.push(id.to_owned());
                }
            }
        }
        skips
    }

    pub fn skips(&self, id: CheckId) -> bool {
        self.all || self.ids.iter().any(|skipped| skipped == id.name())
    }

    /// `findings` without the skipped ones.
    pub fn filter(&self, findings: Vec<Finding>) -> Vec<Finding> {
        findings
            .into_iter()
            .filter(|finding| !self.skips(finding.id))
            .collect()
    }
}

/// A finished build, as the checks read it.
pub struct Subject<'a> {
    pub image: &'a dyn Image,
    /// The final image's config.
    pub config: &'a ImageConfig,
    /// Where each of the image's layers came from (`libs::LayerOrigins`).
    pub origins: libs::LayerOrigins,
    /// The Dockerfile's name, for findings in it, and the line of the final stage's FROM.
    pub dockerfile: &'a str,
    pub stage_line: usize,
    /// Secret-looking ENV and ARG names of the stages built.
    pub secret_names: Vec<SecretName>,
    /// Set when a stage built runs `mix release`.
    pub release: Option<elixir::Release<'a>>,
    pub skips: Skips,
}

/// What the checks read of an image's files. Reading every layer's index and resolving
/// every library costs tens of milliseconds, as much as a whole cached rebuild: the facts
/// are kept in the cache dir, keyed by the image digest and everything the messages name.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct ImageFacts {
    /// What `MissingSharedLibrary` finds (before skips).
    libraries: Vec<Finding>,
    /// The image's compiled locales (`libs::LinkView::locales`).
    locales: Vec<String>,
}

impl ImageFacts {
    fn of(subject: &Subject<'_>, cache_dir: &Path) -> anyhow::Result<ImageFacts> {
        use sha2::{Digest as _, Sha256};
        let mut key = Sha256::new();
        let digest = subject.image.digest();
        for part in [
            "check-facts-v1",
            digest.as_ref(),
            subject.dockerfile,
            &subject.stage_line.to_string(),
        ]
        .into_iter()
        .chain(subject.origins.iter().map(String::as_str))
        .chain(subject.config.env.iter().map(String::as_str))
        {
            key.update(part.as_bytes());
            key.update([0]);
        }
        let dir = cache_dir.join("check-facts-v1");
        let path = dir.join(format!("{}.json", hex::encode(key.finalize())));
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(facts) = serde_json::from_slice::<ImageFacts>(&bytes)
        {
            return Ok(facts);
        }
        let view = libs::LinkView::merge(&libs::LayerScan::of_image(subject.image, cache_dir)?);
        let facts = ImageFacts {
            libraries: libs::check(
                &view,
                &subject.config.env,
                &subject.origins,
                (subject.dockerfile, subject.stage_line),
            ),
            locales: view.locales(),
        };
        // Only time is lost when it cannot be kept.
        if std::fs::create_dir_all(&dir).is_ok()
            && let Ok(bytes) = serde_json::to_vec(&facts)
        {
            let _ = crate::publish::write_atomically(&path, &bytes);
        }
        Ok(facts)
    }
}

/// Runs every check not skipped; `cache_dir` keeps what was read of each layer.
pub fn run(subject: &Subject<'_>, cache_dir: &Path) -> anyhow::Result<Vec<Finding>> {
    let skips = &subject.skips;
    let mut findings: Vec<Finding> = subject
        .secret_names
        .iter()
        .map(|secret| Finding {
            id: CheckId::SecretsUsedInArgOrEnv,
            file: subject.dockerfile.to_owned(),
            line: Some(secret.line),
            message: format!(
                "{} {}: the name looks like a secret, and {} values are baked into the image where anyone who pulls it can read them; read secrets at start-up instead (config/runtime.exs with System.get_env in an Elixir release) or use RUN --mount=type=secret",
                secret.keyword, secret.name, secret.keyword
            ),
        })
        .collect();
    let reads_files = !skips.skips(CheckId::MissingSharedLibrary)
        || (subject.release.is_some() && !skips.skips(CheckId::NoUtf8Locale));
    let facts = match reads_files {
        true => ImageFacts::of(subject, cache_dir)?,
        false => ImageFacts::default(),
    };
    findings.extend(facts.libraries);
    if let Some(release) = &subject.release {
        findings.extend(elixir::check(release, &facts.locales));
    }
    Ok(skips.filter(findings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_directive_takes_ids_all_and_buildkit_s_other_keys() {
        let skips = Skips::parse(Some("skip=RunsAsRoot, NoUtf8Locale;error=true"));
        assert!(skips.skips(CheckId::RunsAsRoot));
        assert!(skips.skips(CheckId::NoUtf8Locale));
        assert!(!skips.skips(CheckId::MissingSharedLibrary));

        let skips = Skips::parse(Some("skip=all"));
        assert!(CheckId::ALL.iter().all(|&id| skips.skips(id)));

        let skips = Skips::parse(Some("error=true;skip=JSONArgsRecommended"));
        assert!(!CheckId::ALL.iter().any(|&id| skips.skips(id)));

        let skips = Skips::parse(None);
        assert!(!skips.skips(CheckId::RunsAsRoot));
    }

    #[test]
    fn a_finding_reads_like_a_linter_line() {
        let finding = Finding {
            id: CheckId::RunsAsRoot,
            file: "Dockerfile".into(),
            line: Some(12),
            message: "the image runs as root; add `USER nobody`".into(),
        };
        assert_eq!(
            finding.to_string(),
            "Dockerfile:12: the image runs as root; add `USER nobody` [RunsAsRoot]"
        );
    }
}
