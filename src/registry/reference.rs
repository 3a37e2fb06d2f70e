//! Image references, parsed and normalised as Docker does (`distribution/reference`'s
//! grammar and `ParseNormalizedNamed`): `debian:bookworm-slim` is
//! `docker.io/library/debian:bookworm-slim`.
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component ( "/" path-component )*
//! domain     := host [ ":" port ]        host: DNS name, IPv4, or "[" IPv6 "]"
//! path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! ```
//!
//! The first component is a domain when it contains `.` or `:`, is `localhost`, or has an
//! upper-case letter (path components cannot); otherwise the image is on Docker Hub, and a
//! single-component Hub name lives under `library/`.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Digest;

use crate::error::InputError;

/// Docker Hub, as references name it.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API is served from.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A normalised image reference: registry, repository, and a tag and/or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference as `docker pull` does; a reference with neither tag nor digest
    /// gets the tag `latest`.
    pub fn parse(input: &str) -> Result<Reference, InputError> {
        parse(input).map_err(|problem| {
            InputError::new(format!(
                "`{input}` is not a valid image reference: {problem}"
            ))
            .with_hint(
                "references look like `debian:bookworm-slim`, `registry.example.com:5000/team/app:1.0` \
                 or `name@sha256:<64 hex digits>`",
            )
        })
    }

    /// The registry as the reference names it: `docker.io`, `localhost:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry: `library/debian`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            // `parse` always sets one of them; constructors keep that true.
            (None, None) => "latest".to_owned(),
        }
    }

    /// The same image pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, InputError> {
        check_tag(tag).map_err(|problem| InputError::new(format!("`{tag}`: {problem}")))?;
        Ok(Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host (and port) to speak the registry API to: Docker Hub's API lives on another
    /// host than the one references name.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }
}

/// The host serving the registry API for a registry named in a reference.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API_HOST
    } else {
        registry
    }
}

impl FromStr for Reference {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn parse(input: &str) -> Result<Reference, String> {
    if input.is_empty() {
        return Err("it is empty".into());
    }
    if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(
            "a 64-character hexadecimal string is an image ID, not a repository name".into(),
        );
    }
    let (rest, digest) = match input.split_once('@') {
        Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
        None => (input, None),
    };
    // The tag separator is the last `:` after the last `/` (earlier ones are a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let tag = &rest[last_slash + i + 1..];
            check_tag(tag)?;
            (&rest[..last_slash + i], Some(tag.to_owned()))
        }
        None => (rest, None),
    };
    let (registry, repository) = split_domain(name)?;
    if registry.len() + 1 + repository.len() > NAME_MAX {
        return Err(format!("the name is longer than {NAME_MAX} characters"));
    }
    let tag = match (&tag, &digest) {
        (None, None) => Some("latest".to_owned()),
        _ => tag,
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

fn split_domain(name: &str) -> Result<(String, String), String> {
    if name.is_empty() {
        return Err("the repository name is missing".into());
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            check_domain(first)?;
            (first.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    check_path(&path)?;
    let domain = if domain == "index.docker.io" {
        DOCKER_HUB.to_owned()
    } else {
        domain
    };
    let path = if domain == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    Ok((domain, path))
}

fn check_domain(domain: &str) -> Result<(), String> {
    let bad = || format!("`{domain}` is not a valid registry host");
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        match after {
            "" => (None, None),
            _ => (None, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        };
        if !host.split('.').all(component_ok) {
            return Err(bad());
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("`{domain}` has an invalid port"));
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository name `{path}` must be lowercase"));
    }
    for component in path.split('/') {
        if !path_component_ok(component) {
            return Err(if component.is_empty() {
                format!("repository name `{path}` has an empty path component")
            } else {
                format!(
                    "`{component}` in `{path}` is not a valid path component \
                     (lowercase letters and digits, separated by `.`, `_`, `__` or dashes)"
                )
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*`
fn path_component_ok(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[sep_start..i];
        let separator_ok =
            matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !separator_ok {
            return false;
        }
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.as_bytes().first() {
        None => Err("the tag after `:` is empty".into()),
        Some(_) if tag.len() > TAG_MAX => Err(format!(
            "the tag is {} characters long; at most {TAG_MAX} are allowed",
            tag.len()
        )),
        Some(&first) if !word(first) => Err(format!(
            "tag `{tag}` must start with a letter, a digit or `_`"
        )),
        Some(_) if !tag.bytes().all(|b| word(b) || b == b'.' || b == b'-') => Err(format!(
            "tag `{tag}` may only contain letters, digits, `_`, `.` and `-`"
        )),
        Some(_) => Ok(()),
    }
}

fn parse_digest(digest: &str) -> Result<Digest, String> {
    let parsed = Digest::from_str(digest).map_err(|e| format!("digest `{digest}`: {e}"))?;
    // distribution requires at least 32 hex characters for any algorithm.
    if parsed.digest().len() < 32 {
        return Err(format!("digest `{digest}` is too short"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn ok(input: &str) -> Reference {
        match Reference::parse(input) {
            Ok(r) => r,
            Err(e) => panic!("{input}: {e}"),
        }
    }

    fn err(input: &str) -> String {
        match Reference::parse(input) {
            Ok(r) => panic!("{input} parsed as {r}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        let r = ok("debian:bookworm-slim");
        assert_eq!(r.to_string(), "docker.io/library/debian:bookworm-slim");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(ok("debian").to_string(), "docker.io/library/debian:latest");
        assert_eq!(ok("user/app").to_string(), "docker.io/user/app:latest");
        assert_eq!(
            ok("index.docker.io/debian").to_string(),
            "docker.io/library/debian:latest"
        );
        assert_eq!(
            ok("docker.io/library/debian:12").repository(),
            "library/debian"
        );
    }

    #[test]
    fn domains_ports_and_localhost() {
        let r = ok("registry.example.com:5000/team/app:1.2");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("registry.example.com:5000", "team/app", Some("1.2"))
        );
        assert_eq!(ok("localhost/app").registry(), "localhost");
        assert_eq!(ok("localhost:5000/app").registry(), "localhost:5000");
        assert_eq!(ok("127.0.0.1:5000/a/b/c").repository(), "a/b/c");
        assert_eq!(ok("[::1]:5000/app").registry(), "[::1]:5000");
        // No dot, colon or `localhost`: a Hub namespace, not a host.
        assert_eq!(ok("myhost/app").registry(), "docker.io");
        // An upper-case first component can only be a host.
        assert_eq!(ok("MyHost/app").registry(), "MyHost");
        // A port with no tag: the colon before the last slash is not a tag separator.
        assert_eq!(ok("localhost:5000/app").tag(), Some("latest"));
    }

    #[test]
    fn digests() {
        let r = ok(&format!("127.0.0.1:5000/app@sha256:{HEX}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        let both = ok(&format!("app:1.0@sha256:{HEX}"));
        assert_eq!(both.tag(), Some("1.0"));
        assert_eq!(both.manifest_reference(), format!("sha256:{HEX}"));
        assert_eq!(
            both.to_string(),
            format!("docker.io/library/app:1.0@sha256:{HEX}")
        );
        assert!(err("app@sha256:abc").contains("digest"));
        assert!(err(&format!("app@sha256:{}", HEX.to_uppercase())).contains("digest"));
        assert!(err("app@").contains("digest"));
    }

    #[test]
    fn repository_names_must_be_lowercase() {
        let message = err("Debian:12");
        assert!(message.contains("must be lowercase"), "{message}");
        assert!(err("example.com/Team/app").contains("must be lowercase"));
    }

    #[test]
    fn path_component_separators() {
        ok("ns/a.b_c__d-e---f");
        for bad in [
            "ns/a..b", "a___b", "-a", "a-", "a/", "a//b", "a_.b", "a:b:c",
        ] {
            err(bad);
        }
    }

    #[test]
    fn tags() {
        let longest = "t".repeat(128);
        assert_eq!(ok(&format!("app:{longest}")).tag(), Some(longest.as_str()));
        assert!(err(&format!("app:{}", "t".repeat(129))).contains("at most 128"));
        assert!(err("app:.hidden").contains("must start"));
        assert!(err("app:").contains("empty"));
        assert!(err("app:a+b").contains("may only contain"));
        assert_eq!(ok("app:_x.y-Z").tag(), Some("_x.y-Z"));
    }

    #[test]
    fn other_bad_references() {
        assert!(err("").contains("empty"));
        assert!(err(HEX).contains("image ID"));
        err("exa mple.com/app");
        err("-bad.com/app");
        err("host.com:/app");
        err("host.com:50a/app");
        err("[::1/app");
        err("[zz]:5000/app");
        assert!(err(&format!("{}/{}", "a".repeat(200), "b".repeat(60))).contains("255"));
        let message = err("bad name");
        assert!(message.starts_with("`bad name` is not a valid image reference"));
    }

    #[test]
    fn with_tag_and_with_digest() {
        let r = ok("app:1");
        assert_eq!(
            r.with_tag("2").map(|r| r.to_string()).ok(),
            Some("docker.io/library/app:2".into())
        );
        assert!(r.with_tag("bad tag").is_err());
        let digest: Digest = format!("sha256:{HEX}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.with_digest(digest).manifest_reference(),
            format!("sha256:{HEX}")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_input_parses_or_errors_without_panicking(input in "\\PC{0,80}") {
            let _ = Reference::parse(&input);
        }

        #[test]
        fn parsed_references_print_as_they_parse(input in "([a-z0-9]{1,8}(\\.[a-z]{2,5})?(:[0-9]{2,5})?/)?[a-z0-9]{1,10}(/[a-z0-9]{1,10}){0,2}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,20})?") {
            if let Ok(parsed) = Reference::parse(&input) {
                let again = Reference::parse(&parsed.to_string());
                proptest::prop_assert_eq!(again.ok(), Some(parsed));
            }
        }
    }
}
