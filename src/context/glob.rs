//! Go's `filepath.Match` for one path component, as BuildKit resolves COPY wildcards.
//!
//! Written here because no crate has Go's exact syntax: `glob` and `globset` treat `**`,
//! `[!…]` and `\` differently, and a COPY that matches other files than `docker build`
//! would make a different image.
//!
//! * `*` any run of characters, `?` one character (components hold no `/`);
//! * `[a-z0-9]`, `[^a-z]` (only `^` negates: `[!a]` is a class of `!` and `a`);
//! * `\c` is the character `c`, also inside a class;
//! * a malformed pattern (`[abc`, `[]`, `[z-a]`'s missing bound, trailing `\`) is an error
//!   for the whole pattern, whether or not a name would have reached the bad part.

/// Whether a path component contains wildcard characters (an escaped one does not count),
/// as BuildKit's `containsWildcards`.
pub fn has_wildcards(component: &str) -> bool {
    let mut chars = component.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// A parsed component pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Parses a pattern; the error says what is malformed.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            i += 1;
            match c {
                '*' => {
                    // Consecutive stars mean one star.
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::Any),
                '\\' => {
                    let escaped = chars
                        .get(i)
                        .ok_or_else(|| "a trailing `\\` escapes nothing".to_owned())?;
                    i += 1;
                    tokens.push(Token::Literal(*escaped));
                }
                '[' => {
                    let (token, next) = parse_class(&chars, i)?;
                    tokens.push(token);
                    i = next;
                }
                _ => tokens.push(Token::Literal(c)),
            }
        }
        Ok(Glob { tokens })
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // Iterative matching with one backtrack point per star: linear in practice and
        // never recursive, whatever the pattern.
        let (mut t, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.tokens.get(t) {
                Some(Token::Star) => {
                    star = Some((t, n));
                    t += 1;
                    continue;
                }
                Some(token) if token.matches_char(name[n]) => {
                    t += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((star_t, star_n)) => {
                    t = star_t + 1;
                    n = star_n + 1;
                    star = Some((star_t, star_n + 1));
                }
                None => return false,
            }
        }
        self.tokens[t.min(self.tokens.len())..]
            .iter()
            .all(|token| *token == Token::Star)
    }
}

impl Token {
    fn matches_char(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::Any => true,
            Token::Star => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
            }
        }
    }
}

/// Parses a class after its `[`; returns the token and the index after its `]`.
fn parse_class(chars: &[char], mut i: usize) -> Result<(Token, usize), String> {
    let unclosed = || "a `[` is never closed by `]`".to_owned();
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match chars.get(i) {
            None => return Err(unclosed()),
            Some(']') if !ranges.is_empty() => {
                return Ok((Token::Class { negated, ranges }, i + 1));
            }
            _ => {}
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1)?;
            hi = h;
            i = next;
        }
        if hi < lo {
            return Err(format!("the range `{lo}-{hi}` is backwards"));
        }
        ranges.push((lo, hi));
    }
}

/// One character of a class (Go's `getEsc`): `-` and `]` must be escaped.
fn class_char(chars: &[char], i: usize) -> Result<(char, usize), String> {
    match chars.get(i) {
        None => Err("a `[` is never closed by `]`".to_owned()),
        Some('-') | Some(']') => {
            Err("`-` or `]` in a `[…]` class must be escaped with `\\`".to_owned())
        }
        Some('\\') => chars
            .get(i + 1)
            .map(|c| (*c, i + 2))
            .ok_or_else(|| "a trailing `\\` escapes nothing".to_owned()),
        Some(c) => Ok((*c, i + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).unwrap().matches(name)
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(m("*", "anything.txt"));
        assert!(m("*", ".hidden"), "Go's * matches a leading dot");
        assert!(m("*", ""));
        assert!(m("mix.*", "mix.exs"));
        assert!(m("mix.*", "mix.lock"));
        assert!(!m("mix.*", "mix"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("a**", "abc"), "** is * in Go's Match");
        assert!(m("?at", "cat"));
        assert!(!m("?at", "at"));
        assert!(m("*.tar.gz", "x.tar.gz"));
        assert!(!m("*.tar.gz", "x.tar.gzz"));
    }

    #[test]
    fn classes() {
        assert!(m("[abc]", "b"));
        assert!(!m("[abc]", "d"));
        assert!(m("[a-c]x", "bx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(!m("[^a-c]x", "ax"));
        assert!(m("[!a]", "!"), "only ^ negates, as in Go");
        assert!(!m("[!a]", "b"));
        assert!(m("[\\]]", "]"));
        assert!(m("[\\-]", "-"));
        assert!(m("[é-ü]", "ö"));
    }

    #[test]
    fn escapes() {
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("\\[x]", "[x]"));
        assert!(!has_wildcards("a\\*b"));
        assert!(has_wildcards("a*b"));
        assert!(has_wildcards("[ab]"));
        assert!(!has_wildcards("plain.txt"));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for bad in ["[abc", "[]", "x[", "a\\", "[-a]", "[a-]", "[z-a]", "[^]"] {
            assert!(Glob::new(bad).is_err(), "{bad} should be rejected");
        }
    }
}
