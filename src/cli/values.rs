//! Flag values with structure, parsed once so a bad value is reported against its flag
//! (clap prints `invalid value 'X' for '--output <SPEC>': …` and exits 2).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A size in bytes, as `--context-size-warning` takes it: `500MB` (decimal units: kB, MB,
/// GB, TB), `2GiB` (binary units: KiB, MiB, GiB, TiB), or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        // bytesize reads a leading `-` as part of the number's text and fails obscurely.
        if trimmed.is_empty() || trimmed.starts_with('-') {
            return Err(format!(
                "`{text}` is not a size; give e.g. 500MB, 2GiB or a number of bytes"
            ));
        }
        trimmed
            .parse::<bytesize::ByteSize>()
            .map(|size| ByteSize(size.as_u64()))
            .map_err(|e| {
                format!("`{text}` is not a size ({e}); give e.g. 500MB, 2GiB or a number of bytes")
            })
    }
}

/// Where `--output` sends the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// Load into the Docker engine and apply every tag (`type=engine`, or buildx's
    /// `type=docker` without `dest`).
    Engine,
    /// An OCI image layout directory.
    OciDir(PathBuf),
    /// An OCI image layout as a tar file.
    OciTar(PathBuf),
    /// A `docker load` archive.
    DockerTar(PathBuf),
    /// Push every tag (same as `--push`).
    Registry,
}

impl FromStr for OutputSpec {
    type Err = String;

    /// BuildKit's syntax: comma-separated `key=value` pairs, `type` first or anywhere.
    fn from_str(spec: &str) -> Result<Self, String> {
        let mut kind = None;
        let mut dest = None;
        let mut tar = None;
        for field in spec.split(',') {
            let (key, value) = field.split_once('=').ok_or_else(|| {
                format!("`{field}` is not key=value (expected e.g. type=oci,dest=out)")
            })?;
            match key.trim() {
                "type" => kind = Some(value.trim()),
                "dest" => dest = Some(value),
                "tar" => {
                    tar = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(format!("tar must be true or false, not `{value}`")),
                    })
                }
                other => {
                    return Err(format!(
                        "unknown key `{other}` (known keys: type, dest, tar)"
                    ));
                }
            }
        }
        let kind = kind.ok_or("missing type= (engine, oci, docker or registry)")?;
        let dest = match dest {
            Some("") => return Err("dest= is empty".into()),
            Some("-") => {
                return Err("dest=- (standard output) is not supported; name a file".into());
            }
            Some(d) => Some(PathBuf::from(d)),
            None => None,
        };
        let is_tar = |d: &PathBuf| tar.unwrap_or_else(|| d.extension().is_some_and(|e| e == "tar"));
        match (kind, dest) {
            ("engine", None) | ("docker", None) => Ok(OutputSpec::Engine),
            ("engine", Some(_)) => Err("type=engine takes no dest".into()),
            ("registry", None) => Ok(OutputSpec::Registry),
            ("registry", Some(_)) => {
                Err("type=registry takes no dest; name the image with --tag".into())
            }
            ("docker", Some(d)) => Ok(OutputSpec::DockerTar(d)),
            ("oci", Some(d)) if is_tar(&d) => Ok(OutputSpec::OciTar(d)),
            ("oci", Some(d)) => Ok(OutputSpec::OciDir(d)),
            ("oci", None) => Err("type=oci needs dest=DIR or dest=FILE.tar".into()),
            (other, _) => Err(format!(
                "unknown output type `{other}` (expected engine, oci, docker or registry)"
            )),
        }
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputSpec::Engine => write!(f, "type=engine"),
            OutputSpec::OciDir(d) => write!(f, "type=oci,dest={},tar=false", d.display()),
            OutputSpec::OciTar(d) => write!(f, "type=oci,dest={},tar=true", d.display()),
            OutputSpec::DockerTar(d) => write!(f, "type=docker,dest={}", d.display()),
            OutputSpec::Registry => write!(f, "type=registry"),
        }
    }
}

/// `--registry-mirror HOST=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryMirror {
    pub host: String,
    pub url: String,
}

impl FromStr for RegistryMirror {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (host, url) = s
            .split_once('=')
            .ok_or("expected HOST=URL, e.g. docker.io=http://127.0.0.1:5000")?;
        if host.is_empty() || host.contains('/') {
            return Err(format!("`{host}` is not a registry host (e.g. docker.io)"));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(format!(
                "`{url}` must be an http:// or https:// URL with a host"
            ));
        }
        Ok(RegistryMirror {
            host: host.to_owned(),
            url: url.trim_end_matches('/').to_owned(),
        })
    }
}

/// `--secret id=ID[,src=FILE|,env=VAR]`, BuildKit's syntax (`type=file|env`,
/// `source=`/`src=` accepted too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub id: String,
    pub source: crate::request::SecretSource,
}

impl FromStr for SecretSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        use crate::request::SecretSource;
        let (mut id, mut file, mut env, mut kind) = (None, None, None, None);
        for field in s.split(',') {
            let (key, value) = field.split_once('=').ok_or_else(|| {
                format!("`{field}` is not key=value (expected id=ID,src=FILE or id=ID,env=VAR)")
            })?;
            match key.trim() {
                "id" => id = Some(value.to_owned()),
                "src" | "source" => file = Some(value.to_owned()),
                "env" => env = Some(value.to_owned()),
                "type" => kind = Some(value.to_owned()),
                other => {
                    return Err(format!(
                        "unknown key `{other}` (known keys: id, src, env, type)"
                    ));
                }
            }
        }
        let id = id.filter(|i| !i.is_empty()).ok_or("missing id=ID")?;
        let source = match (kind.as_deref(), file, env) {
            (_, Some(_), Some(_)) => return Err("give src= or env=, not both".into()),
            (Some("env"), Some(name), None) | (_, None, Some(name)) => SecretSource::Env(name),
            (None | Some("file"), Some(path), None) => SecretSource::File(path.into()),
            (Some("env"), None, None) | (None, None, None) => SecretSource::Env(id.clone()),
            (Some("file"), None, None) => SecretSource::File(id.clone().into()),
            (Some(other), _, _) => {
                return Err(format!("unknown secret type `{other}` (file or env)"));
            }
        };
        Ok(SecretSpec { id, source })
    }
}

/// `KEY=VALUE` with a non-empty key (`--label`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl FromStr for KeyValue {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok(KeyValue {
                key: key.to_owned(),
                value: value.to_owned(),
            }),
            _ => Err("expected KEY=VALUE".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_specs() {
        let ok = |s: &str| s.parse::<OutputSpec>().unwrap();
        assert_eq!(ok("type=engine"), OutputSpec::Engine);
        assert_eq!(ok("type=docker"), OutputSpec::Engine);
        assert_eq!(ok("type=registry"), OutputSpec::Registry);
        assert_eq!(ok("type=oci,dest=out"), OutputSpec::OciDir("out".into()));
        assert_eq!(
            ok("dest=out.tar,type=oci"),
            OutputSpec::OciTar("out.tar".into())
        );
        assert_eq!(
            ok("type=oci,dest=out,tar=true"),
            OutputSpec::OciTar("out".into())
        );
        assert_eq!(
            ok("type=oci,dest=x.tar,tar=false"),
            OutputSpec::OciDir("x.tar".into())
        );
        assert_eq!(
            ok("type=docker,dest=img.tar"),
            OutputSpec::DockerTar("img.tar".into())
        );
        for bad in [
            "",
            "oci",
            "type=oci",
            "type=tarball,dest=x",
            "type=oci,dest=",
            "type=oci,dest=-",
            "type=oci,dest=x,tar=maybe",
            "type=oci,dest=x,color=red",
            "type=engine,dest=x",
        ] {
            assert!(
                bad.parse::<OutputSpec>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn registry_mirrors() {
        let m: RegistryMirror = "docker.io=http://127.0.0.1:5000/".parse().unwrap();
        assert_eq!(m.host, "docker.io");
        assert_eq!(m.url, "http://127.0.0.1:5000");
        for bad in [
            "docker.io",
            "=http://x",
            "docker.io=127.0.0.1:5000",
            "docker.io=ftp://x",
            "a/b=http://x",
        ] {
            assert!(
                bad.parse::<RegistryMirror>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn secrets() {
        use crate::request::SecretSource;
        let s: SecretSpec = "id=npm,src=/run/npmrc".parse().unwrap();
        assert_eq!(
            (s.id.as_str(), s.source),
            ("npm", SecretSource::File("/run/npmrc".into()))
        );
        let s: SecretSpec = "id=token,env=GITHUB_TOKEN".parse().unwrap();
        assert_eq!(s.source, SecretSource::Env("GITHUB_TOKEN".into()));
        let s: SecretSpec = "id=TOKEN".parse().unwrap();
        assert_eq!(s.source, SecretSource::Env("TOKEN".into()));
        for bad in [
            "src=x",
            "id=",
            "id=a,src=x,env=Y",
            "id=a,colour=red",
            "id=a,type=ssh",
        ] {
            assert!(bad.parse::<SecretSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn key_values() {
        let kv: KeyValue = "a=b=c".parse().unwrap();
        assert_eq!((kv.key.as_str(), kv.value.as_str()), ("a", "b=c"));
        assert!("=x".parse::<KeyValue>().is_err());
        assert!("x".parse::<KeyValue>().is_err());
    }
}
