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

/// `--shm-size`: Docker's memory sizes, where every unit is binary (`256m` is 256 MiB,
/// `1g`, `1GB` and `1GiB` are all 1 GiB) and a plain number is bytes. Written here because
/// bytesize, which `--context-size-warning` uses, reads `m` and `MB` as decimal, which
/// would give a smaller `/dev/shm` than docker build does for the same flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemSize(pub u64);

impl FromStr for MemSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a size; give e.g. 256m, 1g or a number of bytes");
        let lower = text.trim().to_ascii_lowercase();
        let split = lower
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(lower.len());
        let (number, unit) = lower.split_at(split);
        let unit = unit.trim_start();
        let unit = unit.strip_suffix('b').unwrap_or(unit);
        let unit = unit.strip_suffix('i').unwrap_or(unit);
        let shift = match unit {
            "" => 0,
            "k" => 10,
            "m" => 20,
            "g" => 30,
            "t" => 40,
            "p" => 50,
            _ => return Err(bad()),
        };
        let number: f64 = number.parse().map_err(|_| bad())?;
        // Whole bytes, as Docker's RAMInBytes truncates `1.5k` to 1536.
        let bytes = (number * (1u64 << shift) as f64).trunc();
        if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(MemSize(bytes as u64))
    }
}

/// `--annotation [TYPE[PLATFORM]:]KEY=VALUE`, buildx's form: TYPE is `manifest` (the
/// default), `manifest-descriptor`, `index` or `index-descriptor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationSpec {
    pub kind: AnnotationKind,
    pub platform: Option<crate::oci::Platform>,
    pub key: String,
    pub value: String,
}

/// What an annotation is on, as buildx names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationKind {
    Manifest,
    ManifestDescriptor,
    Index,
    IndexDescriptor,
}

impl AnnotationKind {
    fn name(self) -> &'static str {
        match self {
            AnnotationKind::Manifest => "manifest",
            AnnotationKind::ManifestDescriptor => "manifest-descriptor",
            AnnotationKind::Index => "index",
            AnnotationKind::IndexDescriptor => "index-descriptor",
        }
    }
}

impl fmt::Display for AnnotationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AnnotationSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (key, value) = text
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
        let (kind, key) = match key.split_once(':') {
            Some((kind, key)) => (kind, key),
            None => ("manifest", key),
        };
        let (kind, platform) = match kind.split_once('[') {
            Some((kind, platform)) => {
                let platform = platform
                    .strip_suffix(']')
                    .ok_or_else(|| format!("`{text}`: `[` without `]`"))?
                    .parse()?;
                (kind, Some(platform))
            }
            None => (kind, None),
        };
        let kind = match kind {
            "manifest" => AnnotationKind::Manifest,
            "manifest-descriptor" => AnnotationKind::ManifestDescriptor,
            "index" => AnnotationKind::Index,
            "index-descriptor" => AnnotationKind::IndexDescriptor,
            other => {
                return Err(format!(
                    "`{text}`: `{other}` is not an annotation type (manifest, manifest-descriptor, index, index-descriptor)"
                ));
            }
        };
        if key.is_empty() {
            return Err(format!("`{text}`: the key is empty"));
        }
        Ok(AnnotationSpec {
            kind,
            platform,
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// `--add-host NAME:IP` (or `NAME=IP`; an IPv6 address may be in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddHost(pub crate::engine::ExtraHost);

impl FromStr for AddHost {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, ip) = text
            .split_once(['=', ':'])
            .filter(|(name, _)| !name.is_empty() && !name.contains(char::is_whitespace))
            .ok_or_else(|| format!("`{text}` is not NAME:IP (e.g. db.internal:10.0.0.2)"))?;
        if ip == "host-gateway" {
            return Err(format!(
                "`{text}`: host-gateway is not supported; give the address of the host"
            ));
        }
        let bare = ip.strip_prefix('[').and_then(|ip| ip.strip_suffix(']'));
        let ip = bare
            .unwrap_or(ip)
            .parse()
            .map_err(|_| format!("`{text}`: `{ip}` is not an IP address"))?;
        Ok(AddHost(crate::engine::ExtraHost {
            name: name.to_owned(),
            ip,
        }))
    }
}

/// `--ulimit NAME=SOFT[:HARD]`, Docker's form: HARD defaults to SOFT, `-1` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UlimitSpec(pub crate::engine::Ulimit);

impl FromStr for UlimitSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        use crate::engine::{ULIMIT_NAMES, Ulimit};
        let (name, limits) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` is not NAME=SOFT[:HARD] (e.g. nofile=1024:2048)"))?;
        if !ULIMIT_NAMES.contains(&name) {
            return Err(format!(
                "`{name}` is not a limit; one of {}",
                ULIMIT_NAMES.join(", ")
            ));
        }
        let number = |n: &str| {
            n.parse::<i64>().ok().filter(|&n| n >= -1).ok_or_else(|| {
                format!("`{text}`: `{n}` is not a limit (a number, -1 for unlimited)")
            })
        };
        let (soft, hard) = match limits.split_once(':') {
            Some((soft, hard)) => (number(soft)?, number(hard)?),
            None => (number(limits)?, number(limits)?),
        };
        if Ulimit::rlimit_value(soft) > Ulimit::rlimit_value(hard) {
            return Err(format!("`{text}`: the soft limit is above the hard one"));
        }
        Ok(UlimitSpec(Ulimit {
            name: name.to_owned(),
            soft,
            hard,
        }))
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
    /// The image's file system as a directory (`type=local,dest=DIR`, or just `DIR`).
    Local(PathBuf),
    /// The image's file system as a tar (`type=tar,dest=FILE`); `None`: standard output
    /// (`dest=-`, or just `-`).
    Tar(Option<PathBuf>),
    /// Build, fill the cache, send the image nowhere (BuildKit's `type=cacheonly`).
    CacheOnly,
}

impl FromStr for OutputSpec {
    type Err = String;

    /// BuildKit's syntax: comma-separated `key=value` pairs, `type` first or anywhere; as
    /// buildx, a bare path is `type=local,dest=PATH` and `-` is `type=tar,dest=-`.
    fn from_str(spec: &str) -> Result<Self, String> {
        if spec == "-" {
            return Ok(OutputSpec::Tar(None));
        }
        if !spec.is_empty() && !spec.contains('=') && !spec.contains(',') {
            return Ok(OutputSpec::Local(PathBuf::from(spec)));
        }
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
        let kind =
            kind.ok_or("missing type= (engine, oci, docker, registry, local, tar or cacheonly)")?;
        let dest = match dest {
            Some("") => return Err("dest= is empty".into()),
            Some("-") if kind == "tar" => return Ok(OutputSpec::Tar(None)),
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
            ("local", Some(d)) => Ok(OutputSpec::Local(d)),
            ("local", None) => Err("type=local needs dest=DIR".into()),
            ("tar", Some(d)) => Ok(OutputSpec::Tar(Some(d))),
            ("tar", None) => Err("type=tar needs dest=FILE, or dest=- for standard output".into()),
            ("cacheonly", None) => Ok(OutputSpec::CacheOnly),
            ("cacheonly", Some(_)) => Err("type=cacheonly takes no dest".into()),
            (other, _) => Err(format!(
                "unknown output type `{other}` (expected engine, oci, docker, registry, local, tar or cacheonly)"
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
            OutputSpec::Local(d) => write!(f, "type=local,dest={}", d.display()),
            OutputSpec::Tar(Some(d)) => write!(f, "type=tar,dest={}", d.display()),
            OutputSpec::Tar(None) => write!(f, "type=tar,dest=-"),
            OutputSpec::CacheOnly => write!(f, "type=cacheonly"),
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

/// `--cache-from`: `type=registry,ref=REF`, `type=local,src=DIR`, or a bare `REF` (a
/// registry cache, as buildx reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFromSpec(pub crate::cache::remote::CacheLocation);

/// `--cache-to`: `type=registry,ref=REF` or `type=local,dest=DIR`, with `mode=min|max`
/// and `ignore-error=true|false`; a bare `REF` is a registry cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheToSpec(pub crate::cache::remote::CacheExport);

/// The fields of a cache spec, checked against what the flag allows.
struct CacheFields<'a> {
    kind: &'a str,
    location: Option<(&'static str, &'a str)>,
    mode: Option<&'a str>,
    ignore_error: Option<&'a str>,
}

fn cache_fields<'a>(spec: &'a str, place: &'static str) -> Result<CacheFields<'a>, String> {
    if !spec.contains('=') {
        if spec.is_empty() {
            return Err("empty; expected e.g. type=registry,ref=REGISTRY/REPO:cache".into());
        }
        return Ok(CacheFields {
            kind: "registry",
            location: Some(("ref", spec)),
            mode: None,
            ignore_error: None,
        });
    }
    let mut fields = CacheFields {
        kind: "",
        location: None,
        mode: None,
        ignore_error: None,
    };
    for field in spec.split(',') {
        let (key, value) = field.split_once('=').ok_or_else(|| {
            format!("`{field}` is not key=value (expected e.g. type=registry,ref=REF)")
        })?;
        match key.trim() {
            "type" => fields.kind = value.trim(),
            k @ ("ref" | "src" | "dest") => {
                if value.is_empty() {
                    return Err(format!("{k}= is empty"));
                }
                let k = match k {
                    "ref" => "ref",
                    "src" => "src",
                    _ => "dest",
                };
                fields.location = Some((k, value));
            }
            "mode" => fields.mode = Some(value),
            "ignore-error" => fields.ignore_error = Some(value),
            // imgbuild's cache is always an OCI image manifest: what these ask for.
            "oci-mediatypes" | "image-manifest" if value == "true" => {}
            other => {
                return Err(format!(
                    "unknown or unsupported key `{other}` (known keys: type, ref, {place}, mode, ignore-error)"
                ));
            }
        }
    }
    Ok(fields)
}

fn cache_location(
    kind: &str,
    location: Option<(&'static str, &str)>,
    dir_key: &str,
) -> Result<crate::cache::remote::CacheLocation, String> {
    use crate::cache::remote::CacheLocation;
    match (kind, location) {
        ("registry", Some(("ref", reference))) => {
            crate::registry::Reference::parse(reference)
                .map_err(|e| format!("ref={reference}: {e}"))?;
            Ok(CacheLocation::Registry(reference.to_owned()))
        }
        ("registry", _) => Err("type=registry needs ref=REGISTRY/REPO:TAG".into()),
        ("local", Some((k, dir))) if k == dir_key => Ok(CacheLocation::Local(dir.into())),
        ("local", _) => Err(format!("type=local needs {dir_key}=DIR")),
        ("", _) => Err("missing type= (registry or local)".into()),
        ("gha" | "s3" | "azblob" | "inline", _) => Err(format!(
            "type={kind} is not supported; use type=registry, or type=local with your CI's cache (e.g. actions/cache)"
        )),
        (other, _) => Err(format!("unknown cache type `{other}` (registry or local)")),
    }
}

impl FromStr for CacheFromSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let fields = cache_fields(spec, "src")?;
        if fields.mode.is_some() {
            return Err("mode= belongs to --cache-to".into());
        }
        if matches!(fields.location, Some(("dest", _))) {
            return Err("dest= belongs to --cache-to; --cache-from reads src=DIR".into());
        }
        Ok(CacheFromSpec(cache_location(
            fields.kind,
            fields.location,
            "src",
        )?))
    }
}

impl FromStr for CacheToSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        use crate::cache::remote::{CacheExport, CacheMode};
        let fields = cache_fields(spec, "dest")?;
        if matches!(fields.location, Some(("src", _))) {
            return Err("src= belongs to --cache-from; --cache-to writes dest=DIR".into());
        }
        let mode = match fields.mode {
            None | Some("min") => CacheMode::Min,
            Some("max") => CacheMode::Max,
            Some(other) => return Err(format!("mode must be min or max, not `{other}`")),
        };
        let ignore_error = match fields.ignore_error {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(format!("ignore-error must be true or false, not `{other}`"));
            }
        };
        Ok(CacheToSpec(CacheExport {
            location: cache_location(fields.kind, fields.location, "dest")?,
            mode,
            ignore_error,
        }))
    }
}

/// `KEY=VALUE` with a non-empty key (`--label`); a bare `KEY` has the empty value, as the
/// docker CLI sends `--label KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl FromStr for KeyValue {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, value) = s.split_once('=').unwrap_or((s, ""));
        if key.is_empty() {
            return Err("expected KEY=VALUE or KEY".into());
        }
        Ok(KeyValue {
            key: key.to_owned(),
            value: value.to_owned(),
        })
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
        // buildx's short forms: a path is a directory of the file system, `-` a tar of it on
        // standard output.
        assert_eq!(ok("out"), OutputSpec::Local("out".into()));
        assert_eq!(ok("./a/b"), OutputSpec::Local("./a/b".into()));
        assert_eq!(ok("-"), OutputSpec::Tar(None));
        assert_eq!(ok("type=local,dest=d"), OutputSpec::Local("d".into()));
        assert_eq!(
            ok("type=tar,dest=f.tar"),
            OutputSpec::Tar(Some("f.tar".into()))
        );
        assert_eq!(ok("dest=-,type=tar"), OutputSpec::Tar(None));
        for spec in ["out", "-", "type=local,dest=d", "type=tar,dest=-"] {
            assert_eq!(ok(&ok(spec).to_string()), ok(spec), "{spec}");
        }
        for bad in [
            "",
            "type=oci",
            "type=local",
            "type=tar",
            "type=local,dest=-",
            "type=local,dest=",
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
    fn mem_sizes_are_docker_s_binary_units() {
        let size = |text: &str| text.parse::<MemSize>().map(|s| s.0);
        assert_eq!(size("256m"), Ok(256 << 20));
        for one_gib in ["1g", "1G", "1gb", "1GiB", "1 g", "1024m"] {
            assert_eq!(size(one_gib), Ok(1 << 30), "{one_gib}");
        }
        assert_eq!(size("65536"), Ok(65536));
        assert_eq!(size("1.5k"), Ok(1536));
        for bad in ["", "m", "-1m", "0", "12x", "1.2.3g", "1e9"] {
            assert!(size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn add_hosts() {
        let host = |text: &str| {
            text.parse::<AddHost>()
                .map(|h| (h.0.name, h.0.ip.to_string()))
        };
        let pair = |n: &str, ip: &str| Ok((n.to_owned(), ip.to_owned()));
        assert_eq!(
            host("db.internal:10.1.2.3"),
            pair("db.internal", "10.1.2.3")
        );
        assert_eq!(host("db=10.1.2.3"), pair("db", "10.1.2.3"));
        assert_eq!(host("v6:::1"), pair("v6", "::1"));
        assert_eq!(host("v6=[fd00::2]"), pair("v6", "fd00::2"));
        assert!(
            host("gw:host-gateway")
                .unwrap_err()
                .contains("host-gateway")
        );
        assert!(
            host("db:notanip")
                .unwrap_err()
                .contains("not an IP address")
        );
        for bad in ["db", ":10.0.0.1", "a b:10.0.0.1"] {
            assert!(host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ulimits() {
        let limit = |text: &str| {
            text.parse::<UlimitSpec>()
                .map(|u| (u.0.name, u.0.soft, u.0.hard))
        };
        assert_eq!(limit("nofile=1024:2048"), Ok(("nofile".into(), 1024, 2048)));
        assert_eq!(limit("nproc=512"), Ok(("nproc".into(), 512, 512)));
        assert_eq!(limit("core=-1"), Ok(("core".into(), -1, -1)));
        assert_eq!(limit("stack=1024:-1"), Ok(("stack".into(), 1024, -1)));
        assert!(
            limit("nofile=2048:1024")
                .unwrap_err()
                .contains("above the hard")
        );
        assert!(
            limit("nofile=-1:1024")
                .unwrap_err()
                .contains("above the hard")
        );
        assert!(limit("files=10").unwrap_err().contains("nofile"));
        for bad in ["nofile", "nofile=", "nofile=x", "nofile=-2", "nofile=1:2:3"] {
            assert!(limit(bad).is_err(), "{bad:?}");
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
    fn cache_specs() {
        use crate::cache::remote::{CacheExport, CacheLocation, CacheMode};
        let from = |s: &str| s.parse::<CacheFromSpec>().map(|c| c.0);
        let to = |s: &str| s.parse::<CacheToSpec>().map(|c| c.0);
        let registry = |r: &str| CacheLocation::Registry(r.into());
        assert_eq!(
            from("type=registry,ref=127.0.0.1:5000/app:cache"),
            Ok(registry("127.0.0.1:5000/app:cache"))
        );
        assert_eq!(
            from("ghcr.io/o/app:cache"),
            Ok(registry("ghcr.io/o/app:cache"))
        );
        assert_eq!(
            from("type=local,src=/tmp/c"),
            Ok(CacheLocation::Local("/tmp/c".into()))
        );
        assert_eq!(
            to("type=registry,ref=r/app:cache,mode=max,image-manifest=true"),
            Ok(CacheExport {
                location: registry("r/app:cache"),
                mode: CacheMode::Max,
                ignore_error: false
            })
        );
        assert_eq!(
            to("type=local,dest=/tmp/c,ignore-error=true"),
            Ok(CacheExport {
                location: CacheLocation::Local("/tmp/c".into()),
                mode: CacheMode::Min,
                ignore_error: true
            })
        );
        for bad in [
            "",
            "type=registry",
            "type=registry,ref=",
            "type=registry,ref=UPPER/Case",
            "type=local,dest=/x",
            "type=gha",
            "type=registry,ref=r/a,mode=max",
            "type=bogus,ref=r/a",
            "type=registry,ref=r/a,compression=zstd",
        ] {
            assert!(from(bad).is_err(), "--cache-from {bad:?} should be refused");
        }
        for bad in [
            "type=local,src=/x",
            "type=registry,ref=r/a,mode=all",
            "type=registry,ref=r/a,ignore-error=yes",
            "type=inline",
        ] {
            assert!(to(bad).is_err(), "--cache-to {bad:?} should be refused");
        }
        assert!(from("type=gha").unwrap_err().contains("type=local"));
    }

    #[test]
    fn key_values() {
        let kv: KeyValue = "a=b=c".parse().unwrap();
        assert_eq!((kv.key.as_str(), kv.value.as_str()), ("a", "b=c"));
        assert!("=x".parse::<KeyValue>().is_err());
        assert!("".parse::<KeyValue>().is_err());
        let bare: KeyValue = "x".parse().unwrap();
        assert_eq!((bare.key.as_str(), bare.value.as_str()), ("x", ""));
    }
}
