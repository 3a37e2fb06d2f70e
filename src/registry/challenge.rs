//! `WWW-Authenticate` parsing (RFC 7235), a pure function so it can be fuzzed: a header may
//! hold several challenges (`Bearer realm="…",service="…", Basic realm="…"`), parameter
//! names and schemes are case-insensitive, values are tokens or quoted strings with `\`
//! escapes, and commas separate both parameters and challenges. Garbage is skipped, never
//! a panic.

/// One challenge: a scheme (lower-cased) and its parameters (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
    /// The `token68` form (`Negotiate abc==`), unused by registries but parsed.
    pub token68: Option<String>,
}

impl Challenge {
    /// The first parameter with this (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The parameters of a Bearer challenge that the token flow needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    /// Scopes the registry asked for, space-separated in the header.
    pub scopes: Vec<String>,
    /// `error="insufficient_scope"` and similar.
    pub error: Option<String>,
}

/// What a registry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    Basic { realm: Option<String> },
    Bearer(BearerChallenge),
}

/// Parses every challenge in a `WWW-Authenticate` header value.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut cursor = Cursor {
        bytes: header.as_bytes(),
        pos: 0,
    };
    let mut challenges = Vec::new();
    loop {
        cursor.skip(|b| is_space(b) || b == b',');
        if cursor.at_end() {
            return challenges;
        }
        let scheme = cursor.token();
        if scheme.is_empty() {
            cursor.pos += 1; // not a token character: skip it
            continue;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            ..Challenge::default()
        };
        cursor.skip(is_space);
        // token68: `Scheme abc+/=` followed by the end or a comma.
        let token68_start = cursor.pos;
        let token68 = cursor.take(|b| is_tchar(b) || b"+/".contains(&b));
        let padding = cursor.take(|b| b == b'=');
        cursor.skip(is_space);
        if !token68.is_empty() && (cursor.at_end() || cursor.peek() == Some(b',')) {
            // `name=` with nothing after it is an empty parameter, not a token68.
            if padding.is_empty() || padding.len() > 1 || token68.contains(['+', '/']) {
                challenge.token68 = Some(format!("{token68}{padding}"));
                challenges.push(challenge);
                continue;
            }
        }
        cursor.pos = token68_start;
        parse_params(&mut cursor, &mut challenge);
        challenges.push(challenge);
    }
}

/// Reads `name=value` pairs until the next challenge's scheme or the end.
fn parse_params(cursor: &mut Cursor<'_>, challenge: &mut Challenge) {
    loop {
        cursor.skip(|b| is_space(b) || b == b',');
        let start = cursor.pos;
        let name = cursor.token();
        if name.is_empty() {
            if cursor.at_end() {
                return;
            }
            cursor.pos += 1;
            continue;
        }
        cursor.skip(is_space);
        if cursor.peek() != Some(b'=') {
            // A token not followed by `=` starts the next challenge.
            cursor.pos = start;
            return;
        }
        cursor.pos += 1;
        cursor.skip(is_space);
        let value = if cursor.peek() == Some(b'"') {
            cursor.quoted_string()
        } else {
            // Leniently, anything up to a comma or space: servers send unquoted URLs.
            cursor.take(|b| b != b',' && !is_space(b))
        };
        challenge.params.push((name.to_ascii_lowercase(), value));
    }
}

/// The scheme imgbuild will answer, from all the challenges in a response: Bearer is
/// preferred to Basic; unknown schemes are ignored.
pub fn select_scheme(challenges: &[Challenge]) -> Option<AuthScheme> {
    let bearer = challenges
        .iter()
        .find(|c| c.scheme == "bearer")
        .and_then(|c| {
            let realm = c.param("realm").filter(|r| !r.is_empty())?;
            Some(AuthScheme::Bearer(BearerChallenge {
                realm: realm.to_owned(),
                service: c.param("service").map(str::to_owned),
                scopes: c
                    .param("scope")
                    .map(|s| s.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default(),
                error: c.param("error").map(str::to_owned),
            }))
        });
    bearer.or_else(|| {
        challenges
            .iter()
            .find(|c| c.scheme == "basic")
            .map(|c| AuthScheme::Basic {
                realm: c.param("realm").map(str::to_owned),
            })
    })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip(&mut self, pred: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
    }

    fn take(&mut self, pred: impl Fn(u8) -> bool) -> String {
        let start = self.pos;
        self.skip(pred);
        String::from_utf8_lossy(self.bytes.get(start..self.pos).unwrap_or_default()).into_owned()
    }

    fn token(&mut self) -> String {
        self.take(is_tchar)
    }

    /// A quoted string starting at `"`; an unterminated one runs to the end.
    fn quoted_string(&mut self) -> String {
        self.pos += 1;
        let mut value = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.pos += 1;
                    }
                }
                _ => value.push(b),
            }
        }
        String::from_utf8_lossy(&value).into_owned()
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn registry_bearer_challenge() {
        let header = r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push""#;
        let challenges = parse_www_authenticate(header);
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].scheme, "bearer");
        assert_eq!(
            params(&challenges[0]),
            vec![
                ("realm", "https://auth.example.com/token"),
                ("service", "registry.example.com"),
                ("scope", "repository:team/app:pull,push"),
            ]
        );
        let Some(AuthScheme::Bearer(bearer)) = select_scheme(&challenges) else {
            panic!("no bearer scheme in {challenges:?}");
        };
        assert_eq!(bearer.scopes, vec!["repository:team/app:pull,push"]);
    }

    #[test]
    fn several_challenges_case_and_spacing() {
        let header =
            "BASIC Realm = \"Registry Realm\" , bearer REALM=http://t/token, Negotiate abc+/==";
        let challenges = parse_www_authenticate(header);
        let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, vec!["basic", "bearer", "negotiate"]);
        assert_eq!(challenges[0].param("realm"), Some("Registry Realm"));
        assert_eq!(challenges[1].param("Realm"), Some("http://t/token"));
        assert_eq!(challenges[2].token68.as_deref(), Some("abc+/=="));
        // Bearer wins over Basic.
        assert!(matches!(
            select_scheme(&challenges),
            Some(AuthScheme::Bearer(_))
        ));
    }

    #[test]
    fn quoted_strings_with_escapes_and_commas() {
        let header = r#"Bearer realm="a\"b,c",error="insufficient_scope",scope="x y""#;
        let challenges = parse_www_authenticate(header);
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].param("realm"), Some(r#"a"b,c"#));
        let Some(AuthScheme::Bearer(bearer)) = select_scheme(&challenges) else {
            panic!("{challenges:?}");
        };
        assert_eq!(bearer.scopes, vec!["x", "y"]);
        assert_eq!(bearer.error.as_deref(), Some("insufficient_scope"));
    }

    #[test]
    fn basic_only_and_bearer_without_realm() {
        let basic = parse_www_authenticate(r#"Basic realm="Registry""#);
        assert_eq!(
            select_scheme(&basic),
            Some(AuthScheme::Basic {
                realm: Some("Registry".into())
            })
        );
        // A Bearer challenge without a realm cannot be answered.
        assert_eq!(
            select_scheme(&parse_www_authenticate("Bearer service=x")),
            None
        );
    }

    #[test]
    fn garbage_never_panics() {
        for header in [
            "",
            ",,,",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            "Bearer realm=\"x\\",
            "Bearer =x, ==, realm",
            "Bearer \u{e9}\u{e9}=\"\u{e9}\"",
            "\u{0}\u{1}Basic",
            "Bearer realm=x,,,, ,service=y",
        ] {
            let _ = select_scheme(&parse_www_authenticate(header));
        }
        let c = parse_www_authenticate("Bearer realm=x,,,, ,service=y");
        assert_eq!(c[0].param("service"), Some("y"));
        let unterminated = parse_www_authenticate("Bearer realm=\"http://x");
        assert_eq!(unterminated[0].param("realm"), Some("http://x"));
    }

    proptest::proptest! {
        #[test]
        fn any_header_parses_without_panicking(header in ".{0,200}") {
            let _ = select_scheme(&parse_www_authenticate(&header));
        }

        #[test]
        fn quoted_values_round_trip(value in "[ -~]{0,40}") {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            let header = format!("Bearer realm=\"{escaped}\",service=x");
            let challenges = parse_www_authenticate(&header);
            proptest::prop_assert_eq!(challenges.len(), 1);
            proptest::prop_assert_eq!(challenges[0].param("realm"), Some(value.as_str()));
            proptest::prop_assert_eq!(challenges[0].param("service"), Some("x"));
        }
    }
}
