//! Registry credentials from Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `auths` entries (`auth` base64 `user:password`, or
//! `username`/`password`, or `identitytoken`), `credHelpers` per registry and `credsStore`
//! for the rest, both through `docker-credential-<name> get`.
//!
//! Written here rather than with the `docker_credential` crate because imgbuild needs what
//! it does not give: secrets that never print (its types derive `Debug` with the password
//! in clear), Docker's key normalisation (`https://host/v1/` and `host` are one entry), and
//! errors that say where credentials were looked for.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

use super::reference::DOCKER_HUB;

/// The key Docker stores Docker Hub credentials under.
const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// A secret string: its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Basic {
        username: String,
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken`, or a helper's `<token>` user), exchanged at
    /// the token endpoint.
    IdentityToken(Secret),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"****")
                .finish(),
            Auth::IdentityToken(_) => f.write_str("IdentityToken(****)"),
        }
    }
}

/// Where credentials come from. Cheap to clone; helpers run on each `lookup`.
#[derive(Clone, Default)]
pub struct Credentials {
    /// The config file read (or looked for), for error messages.
    config_path: Option<PathBuf>,
    config_found: bool,
    config: DockerConfig,
    /// Credentials given in code, before any file (tests, `--username`-like flags).
    explicit: BTreeMap<String, Auth>,
    /// A directory searched for `docker-credential-*` before `PATH`.
    helper_dir: Option<PathBuf>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("config", &self.config_path)
            .field("registries", &self.config.auths.keys().collect::<Vec<_>>())
            .field("explicit", &self.explicit.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Clone, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthEntry(****)")
    }
}

/// A credentials problem: a config file that cannot be read, or a helper that failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read the Docker config `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the Docker config `{path}` is not valid JSON: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the `auth` entry for `{registry}` in `{path}` is not base64 `user:password`")]
    BadAuthEntry { registry: String, path: PathBuf },
    #[error("credential helper `{helper}` failed for `{registry}`: {message}")]
    Helper {
        helper: String,
        registry: String,
        message: String,
    },
}

impl Credentials {
    /// No credentials at all: every registry is spoken to anonymously.
    pub fn anonymous() -> Credentials {
        Credentials::default()
    }

    /// Docker's config from the environment: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`. A missing file means anonymous access.
    pub fn from_environment() -> Result<Credentials, CredentialsError> {
        Credentials::from_env(|key| std::env::var_os(key))
    }

    /// As [`Credentials::from_environment`], with the environment given (for tests).
    pub fn from_env(
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Credentials, CredentialsError> {
        let dir = match (env("DOCKER_CONFIG"), env("HOME")) {
            (Some(dir), _) if !dir.is_empty() => PathBuf::from(dir),
            (_, Some(home)) if !home.is_empty() => PathBuf::from(home).join(".docker"),
            _ => return Ok(Credentials::anonymous()),
        };
        Credentials::from_config_file(&dir.join("config.json"))
    }

    /// A given `config.json`; a missing file means anonymous access.
    pub fn from_config_file(path: &Path) -> Result<Credentials, CredentialsError> {
        let (config, found) = match std::fs::read(path) {
            Ok(bytes) => {
                let config: DockerConfig =
                    serde_json::from_slice(&bytes).map_err(|e| CredentialsError::Parse {
                        path: path.to_owned(),
                        // serde's message names the line and column, never the value.
                        message: e.to_string(),
                    })?;
                (config, true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (DockerConfig::default(), false),
            Err(source) => {
                return Err(CredentialsError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Ok(Credentials {
            config_path: Some(path.to_owned()),
            config_found: found,
            config,
            explicit: BTreeMap::new(),
            helper_dir: None,
        })
    }

    /// Adds credentials for one registry (as references name it, e.g. `docker.io`), taking
    /// precedence over the config file.
    pub fn with(mut self, registry: &str, auth: Auth) -> Credentials {
        self.explicit.insert(registry.to_owned(), auth);
        self
    }

    /// Looks for `docker-credential-*` helpers in `dir` before `PATH`.
    pub fn with_helper_dir(mut self, dir: &Path) -> Credentials {
        self.helper_dir = Some(dir.to_owned());
        self
    }

    /// Where credentials were looked for, for error messages.
    pub fn describe_sources(&self) -> String {
        let mut places = Vec::new();
        if !self.explicit.is_empty() {
            places.push("credentials given on the command line".to_owned());
        }
        match (&self.config_path, self.config_found) {
            (Some(path), true) => {
                let mut what = vec!["auths"];
                if !self.config.cred_helpers.is_empty() {
                    what.push("credHelpers");
                }
                if self.config.creds_store.is_some() {
                    what.push("credsStore");
                }
                places.push(format!("`{}` ({})", path.display(), what.join(", ")));
            }
            (Some(path), false) => places.push(format!("`{}` (not found)", path.display())),
            (None, _) => places.push("no Docker config ($DOCKER_CONFIG and $HOME unset)".into()),
        }
        places.join(" and ")
    }

    /// Credentials for a registry (`docker.io`, `host:port`), or `None` for anonymous
    /// access. May run a credential helper, so call it off the async executor.
    pub fn lookup(&self, registry: &str) -> Result<Option<Auth>, CredentialsError> {
        if let Some(auth) = self.explicit.get(registry) {
            return Ok(Some(auth.clone()));
        }
        let server = if registry == DOCKER_HUB {
            DOCKER_HUB_CONFIG_KEY
        } else {
            registry
        };
        if let Some(helper) = self.config.cred_helpers.get(server).or_else(|| {
            self.config
                .cred_helpers
                .iter()
                .find(|(key, _)| normalize_key(key) == normalize_key(server))
                .map(|(_, helper)| helper)
        }) {
            return self.run_helper(helper, server, registry);
        }
        if let Some(store) = &self.config.creds_store
            && !store.is_empty()
        {
            // The store knows the registry or not; fall back to `auths` when it does not,
            // as Docker does for entries written before the store was configured.
            if let Some(auth) = self.run_helper(store, server, registry)? {
                return Ok(Some(auth));
            }
        }
        let entry = self.config.auths.get(server).or_else(|| {
            self.config
                .auths
                .iter()
                .find(|(key, _)| normalize_key(key) == normalize_key(server))
                .map(|(_, entry)| entry)
        });
        match entry {
            Some(entry) => self.decode_entry(registry, entry),
            None => Ok(None),
        }
    }

    fn run_helper(
        &self,
        helper: &str,
        server: &str,
        registry: &str,
    ) -> Result<Option<Auth>, CredentialsError> {
        let name = format!("docker-credential-{helper}");
        let program = match &self.helper_dir {
            Some(dir) if dir.join(&name).is_file() => dir.join(&name),
            _ => PathBuf::from(&name),
        };
        run_helper(&name, &program, server, registry)
    }

    fn decode_entry(
        &self,
        registry: &str,
        entry: &AuthEntry,
    ) -> Result<Option<Auth>, CredentialsError> {
        if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Auth::IdentityToken(Secret::new(token))));
        }
        if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let bad = || CredentialsError::BadAuthEntry {
                registry: registry.to_owned(),
                path: self.config_path.clone().unwrap_or_default(),
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Auth::Basic {
                username: username.to_owned(),
                password: Secret::new(password),
            }));
        }
        match (&entry.username, &entry.password) {
            (Some(username), Some(password)) if !username.is_empty() => Ok(Some(Auth::Basic {
                username: username.clone(),
                password: Secret::new(password.clone()),
            })),
            _ => Ok(None),
        }
    }
}

/// `https://host/v1/`, `http://host` and `host` name the same registry (Docker's
/// `ConvertToHostname`).
fn normalize_key(key: &str) -> &str {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    without_scheme.split('/').next().unwrap_or(without_scheme)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperResponse {
    username: String,
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the server on stdin.
fn run_helper(
    name: &str,
    program: &Path,
    server: &str,
    registry: &str,
) -> Result<Option<Auth>, CredentialsError> {
    let fail = |message: String| CredentialsError::Helper {
        helper: name.to_owned(),
        registry: registry.to_owned(),
        message,
    };
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it ({e}); is it installed and on PATH?")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail(format!("cannot write to it: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot read its answer: {e}")))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout);
        // The helper protocol's "not found" answer.
        if said.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = format!("{} {}", said.trim(), stderr.trim());
        return Err(fail(format!("{} ({})", message.trim(), output.status)));
    }
    // Never echo the answer: it holds the secret.
    let response: HelperResponse = serde_json::from_slice(&output.stdout)
        .map_err(|_| fail("its answer is not the helper protocol's JSON".into()))?;
    if response.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if response.username == "<token>" {
        Auth::IdentityToken(Secret::new(response.secret))
    } else {
        Auth::Basic {
            username: response.username,
            password: Secret::new(response.secret),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn write_config(dir: &Path, json: &str) -> PathBuf {
        let path = dir.join("config.json");
        std::fs::write(&path, json).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    fn basic(user: &str, password: &str) -> Option<Auth> {
        Some(Auth::Basic {
            username: user.into(),
            password: Secret::new(password),
        })
    }

    #[test]
    fn auths_entries_in_every_form() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let path = write_config(
            dir.path(),
            &format!(
                r#"{{"auths": {{
                    "https://index.docker.io/v1/": {{"auth": "{encoded}"}},
                    "https://registry.example.com/v1/": {{"username": "bob", "password": "pw"}},
                    "localhost:5000": {{"identitytoken": "refresh-me"}},
                    "empty.example.com": {{}}
                }}}}"#
            ),
        );
        let creds = Credentials::from_config_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            creds.lookup("docker.io").ok(),
            Some(basic("alice", "s3cr:et"))
        );
        assert_eq!(
            creds.lookup("registry.example.com").ok(),
            Some(basic("bob", "pw"))
        );
        assert_eq!(
            creds.lookup("localhost:5000").ok(),
            Some(Some(Auth::IdentityToken(Secret::new("refresh-me"))))
        );
        assert_eq!(creds.lookup("empty.example.com").ok(), Some(None));
        assert_eq!(creds.lookup("other.example.com").ok(), Some(None));
        // Explicit credentials win.
        let creds = creds.with("docker.io", Auth::IdentityToken(Secret::new("t")));
        assert!(matches!(
            creds.lookup("docker.io"),
            Ok(Some(Auth::IdentityToken(_)))
        ));
    }

    #[test]
    fn secrets_never_print() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = write_config(
            dir.path(),
            r#"{"auths": {"r.example.com": {"username": "u", "password": "hunter2"}}}"#,
        );
        let creds = Credentials::from_config_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let auth = creds.lookup("r.example.com").ok().flatten();
        for shown in [
            format!("{creds:?}"),
            format!("{auth:?}"),
            format!("{:?}", creds.config),
            format!("{}", Secret::new("hunter2")),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = write_config(dir.path(), r#"{"auths": {"h": {"auth": "!!notbase64"}}}"#);
        let creds = Credentials::from_config_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let message = creds
            .lookup("h")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("`auth` entry for `h`"), "{message}");
        assert!(!message.contains("notbase64"));

        let path = write_config(dir.path(), "{ not json");
        let message = Credentials::from_config_file(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("is not valid JSON"), "{message}");
    }

    #[test]
    fn environment_picks_docker_config_then_home() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write_config(
            dir.path(),
            r#"{"auths": {"h": {"username": "u", "password": "p"}}}"#,
        );
        let dir_os: OsString = dir.path().into();
        let from_docker_config = Credentials::from_env(|k| match k {
            "DOCKER_CONFIG" => Some(dir_os.clone()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_docker_config.lookup("h").ok(), Some(basic("u", "p")));

        let from_home = Credentials::from_env(|k| match k {
            "HOME" => Some(dir_os.clone()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            from_home
                .describe_sources()
                .contains(".docker/config.json` (not found)")
        );
        assert_eq!(from_home.lookup("h").ok(), Some(None));
    }

    #[test]
    fn credential_helpers_and_stores_are_run() {
        // A real executable speaking the helper protocol: a shell script.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let helper = dir.path().join("docker-credential-imgbuildtest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\ncase \"$server\" in\n\
             helped.example.com) echo '{\"ServerURL\":\"x\",\"Username\":\"hu\",\"Secret\":\"hs\"}';;\n\
             https://index.docker.io/v1/) echo '{\"ServerURL\":\"x\",\"Username\":\"<token>\",\"Secret\":\"ts\"}';;\n\
             broken.example.com) echo 'boom' >&2; exit 3;;\n\
             *) echo 'credentials not found in native keychain'; exit 1;;\nesac\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let path = write_config(
            dir.path(),
            r#"{"credsStore": "imgbuildtest",
                "credHelpers": {"missing.example.com": "nonexistent-helper"},
                "auths": {"fallback.example.com": {"username": "fu", "password": "fp"}}}"#,
        );
        let creds = Credentials::from_config_file(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_helper_dir(dir.path());
        assert_eq!(
            creds.lookup("helped.example.com").ok(),
            Some(basic("hu", "hs"))
        );
        assert_eq!(
            creds.lookup("docker.io").ok(),
            Some(Some(Auth::IdentityToken(Secret::new("ts"))))
        );
        // Not in the store: `auths` is the fallback, then anonymous.
        assert_eq!(
            creds.lookup("fallback.example.com").ok(),
            Some(basic("fu", "fp"))
        );
        assert_eq!(creds.lookup("nobody.example.com").ok(), Some(None));
        let broken = creds
            .lookup("broken.example.com")
            .err()
            .map(|e| e.to_string());
        assert!(
            broken.as_deref().is_some_and(|m| m.contains("docker-credential-imgbuildtest") && m.contains("boom")),
            "{broken:?}"
        );
        let missing = creds
            .lookup("missing.example.com")
            .err()
            .map(|e| e.to_string());
        assert!(
            missing
                .as_deref()
                .is_some_and(|m| m.contains("is it installed")),
            "{missing:?}"
        );
        assert!(creds.describe_sources().contains("credsStore"));
    }
}
