//! `.dockerignore` with Docker's matching rules (moby/patternmatcher, as BuildKit's context
//! transfer in tonistiigi/fsutil applies them).
//!
//! Docker's rules are not gitignore's, so neither the `ignore` crate nor `globset` fits:
//! patterns are anchored at the context root (`foo` is not `a/foo`), `*` never crosses `/`,
//! `**` has Docker's own prefix/suffix shortcuts (`**foo` matches `xfoo`), a `!` pattern can
//! take back a file below an excluded directory, and the walk skips directories with
//! Docker's exact rule. The matcher is therefore written here: each pattern becomes an exact,
//! prefix, suffix or regex test exactly where patternmatcher makes that choice, and the regex
//! crate runs the rest in linear time.
//!
//! Where Docker's translation of a pattern to a Go regex is accidental, this follows
//! `filepath.Match`'s documented meaning instead: `\d` (or any `\` + letter) is the letter,
//! not a regex class; `[*]` and `[?]` are classes of that character; `^` outside a class is a
//! literal. A reversed range such as `[z-a]`, which makes Docker's build fail when it walks
//! the context, is refused when the file is parsed.

use std::fmt;

use regex::{Regex, RegexBuilder};

/// The patterns of a `.dockerignore` file.
///
/// * Lines starting with `#` (in the first column) are comments; blank lines are skipped;
///   each pattern is trimmed, cleaned like a path (`a/./b/../c` is `a/c`, a trailing `/` is
///   dropped) and a leading `/` removed: every pattern is relative to the context root.
/// * Syntax of Go's `filepath.Match`: `*` and `?` do not match `/`; `[a-z]`, `[^a-z]`
///   (`[!a]` is a class of `!` and `a`, as in Docker); `\` escapes. `**` matches any number
///   of directories, and `**` at the start or end of a pattern matches any text.
/// * A pattern that matches a directory excludes everything below it. `!pattern`
///   re-includes, even below an excluded directory, and the last pattern that matches wins.
///
/// Walking a context: skip a whole directory when [`can_skip_dir`](Self::can_skip_dir)
/// says so (files below it are then excluded even where [`is_excluded`](Self::is_excluded)
/// alone would keep them, as in Docker); otherwise leave out what `is_excluded` says, and
/// still send an excluded directory when something below it is sent. Docker also sends the
/// Dockerfile and the `.dockerignore` file even when they are excluded: that is the caller's
/// business.
///
/// Where BuildKit and the classic builder disagree (a pattern repeated after a `!`), this
/// follows BuildKit, which evaluates each directory with its parent's results.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
    /// Whether any `!` pattern exists.
    has_exceptions: bool,
    /// Whether every `!` pattern is a plain path (once a trailing `/*` or `/**` is
    /// removed): only then may a walk skip an excluded directory.
    only_prefix_exceptions: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern, without its `!`.
    text: String,
    exception: bool,
    test: Test,
}

/// How patternmatcher tests a pattern: the shortcuts change results (`**foo` is a suffix
/// test and matches `xfoo`), so they are kept exactly.
#[derive(Debug, Clone)]
enum Test {
    Exact,
    /// The pattern ends with `**` and has no wildcard before it.
    Prefix,
    /// The pattern starts with `**` and has no wildcard after it.
    Suffix,
    Regex(Regex),
}

/// A `.dockerignore` line that is not a valid pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    line: usize,
    pattern: String,
    message: String,
}

impl PatternError {
    /// The 1-based line of the `.dockerignore` file.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The pattern as written on that line (trimmed).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error located in the file the user named, e.g. `.dockerignore:3: …`.
    pub fn in_file(&self, file: &str) -> super::Error {
        super::Error::new(file, self.to_string_without_line())
            .at(self.line, None)
            .with_hint("patterns use Go's filepath.Match syntax: * ? [a-z] [^a-z] and \\ to escape")
    }

    fn to_string_without_line(&self) -> String {
        format!("invalid pattern `{}`: {}", self.pattern, self.message)
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.to_string_without_line())
    }
}

impl std::error::Error for PatternError {}

impl DockerIgnore {
    /// No patterns: nothing is excluded.
    pub fn empty() -> DockerIgnore {
        DockerIgnore::default()
    }

    /// Parses the contents of a `.dockerignore` file.
    ///
    /// Lines are read as Docker reads them (a UTF-8 byte-order mark and `\r` line ends are
    /// accepted; bytes that are not UTF-8 become U+FFFD, which no real path contains).
    pub fn parse(contents: &[u8]) -> Result<DockerIgnore, PatternError> {
        let mut ignore = DockerIgnore {
            only_prefix_exceptions: true,
            ..DockerIgnore::default()
        };
        for (index, raw) in lines(contents).enumerate() {
            let raw = if index == 0 {
                raw.strip_prefix(b"\xef\xbb\xbf").unwrap_or(raw)
            } else {
                raw
            };
            let line = String::from_utf8_lossy(raw);
            let Some(pattern) = read_line(&line) else {
                continue;
            };
            let error = |message: String| PatternError {
                line: index + 1,
                pattern: line.trim().to_owned(),
                message,
            };
            let pattern = Pattern::new(&pattern).map_err(error)?;
            if pattern.exception {
                ignore.has_exceptions = true;
                if without_trailing_glob(&pattern.text).contains(['*', '[', ']', '?', '^', '\\']) {
                    ignore.only_prefix_exceptions = false;
                }
            }
            ignore.patterns.push(pattern);
        }
        Ok(ignore)
    }

    /// Whether the file has no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel_path` (slash-separated, relative to the context root) is left out of
    /// the context. The root itself is never excluded.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path = clean(rel_path.trim_start_matches('/'));
        if path == "." || self.patterns.is_empty() {
            return false;
        }
        // Each directory is evaluated with its parent's per-pattern results, as BuildKit's
        // walk does (patternmatcher's MatchesUsingParentResults).
        let mut parent: Option<Vec<bool>> = None;
        let mut excluded = false;
        let ends = path
            .match_indices('/')
            .map(|(i, _)| i)
            .chain(std::iter::once(path.len()));
        for end in ends {
            let prefix = path.get(..end).unwrap_or(&path);
            let (matched, results) = self.evaluate(prefix, parent.as_deref());
            excluded = matched;
            parent = Some(results);
        }
        excluded
    }

    /// Whether a walk can skip the directory `rel_dir` and everything below it: the
    /// directory is excluded and no `!` pattern names a path inside it. This is Docker's
    /// rule, not a proof: a walk that skips here leaves out what Docker leaves out.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.only_prefix_exceptions || !self.is_excluded(rel_dir) {
            return false;
        }
        if !self.has_exceptions {
            return true;
        }
        let dir = clean(rel_dir.trim_start_matches('/'));
        let dir_slash = format!("{dir}/");
        !self
            .patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| format!("{}/", without_trailing_glob(&p.text)).starts_with(&dir_slash))
    }

    /// One path's result and per-pattern matches, given its parent directory's matches.
    fn evaluate(&self, path: &str, parent: Option<&[bool]>) -> (bool, Vec<bool>) {
        let mut excluded = false;
        let mut results = vec![false; self.patterns.len()];
        for (i, pattern) in self.patterns.iter().enumerate() {
            let mut matched = parent.and_then(|p| p.get(i).copied()).unwrap_or(false);
            if !matched {
                // A pattern that cannot change the outcome is not evaluated, and so not
                // recorded for the children either (BuildKit's behaviour).
                if pattern.exception != excluded {
                    continue;
                }
                matched = pattern.matches(path);
            }
            if let Some(slot) = results.get_mut(i) {
                *slot = matched;
            }
            if matched {
                excluded = !pattern.exception;
            }
        }
        (excluded, results)
    }
}

/// Lines as Go's `bufio.ScanLines` yields them: split at `\n`, a trailing `\r` dropped, no
/// empty line after a final `\n`.
fn lines(contents: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = contents.strip_suffix(b"\n").unwrap_or(contents);
    let pieces = (!contents.is_empty()).then(|| body.split(|b| *b == b'\n'));
    pieces
        .into_iter()
        .flatten()
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// A line as docker's `ignorefile.ReadAll` turns it into a pattern, or `None` for comments
/// and blank lines.
fn read_line(line: &str) -> Option<String> {
    if line.starts_with('#') {
        return None;
    }
    let pattern = line.trim();
    if pattern.is_empty() {
        return None;
    }
    let (exception, pattern) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, pattern),
    };
    let mut cleaned = if pattern.is_empty() {
        String::new()
    } else {
        clean(pattern)
    };
    if cleaned.len() > 1 && cleaned.starts_with('/') {
        cleaned.remove(0);
    }
    Some(if exception {
        format!("!{cleaned}")
    } else {
        cleaned
    })
}

impl Pattern {
    /// A pattern as patternmatcher's `New` takes it: cleaned again, `!` split off, checked
    /// with `filepath.Match`'s syntax, then compiled.
    fn new(line_pattern: &str) -> Result<Pattern, String> {
        let cleaned = clean(line_pattern.trim());
        let (exception, text) = match cleaned.strip_prefix('!') {
            Some("") => {
                return Err(
                    "`!` alone names nothing: write the path to re-include after it".into(),
                );
            }
            Some(rest) => (true, rest.to_owned()),
            None => (false, cleaned),
        };
        let test = compile(&text)?;
        Ok(Pattern {
            text,
            exception,
            test,
        })
    }

    fn matches(&self, path: &str) -> bool {
        match &self.test {
            Test::Exact => path == self.text,
            Test::Prefix => {
                let prefix = self.text.strip_suffix("**").unwrap_or(&self.text);
                path.starts_with(prefix)
            }
            Test::Suffix => {
                let suffix = self.text.strip_prefix("**").unwrap_or(&self.text);
                // `**/foo` also matches `foo` itself.
                path.ends_with(suffix) || suffix.strip_prefix('/') == Some(path)
            }
            Test::Regex(regex) => regex.is_match(path),
        }
    }
}

/// Chooses the test for a pattern and builds its regex, following patternmatcher's
/// `compile`: the first wildcard makes it a regex, except `**` at the end of an otherwise
/// literal pattern (a prefix test) and `**` at its start (a suffix test, kept only if
/// nothing after it is a wildcard).
fn compile(pattern: &str) -> Result<Test, String> {
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut kind = Kind::Exact;
    let mut regex = String::from("^");
    let mut chars = pattern.chars().peekable();
    let mut first = true;
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_some() {
                    // Any number of directories, including none.
                    regex.push_str("(?:.*/)?");
                    kind = Kind::Regex;
                } else if kind == Kind::Exact {
                    kind = Kind::Prefix;
                } else {
                    regex.push_str(".*");
                    kind = Kind::Regex;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                regex.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                regex.push_str("[^/]");
                kind = Kind::Regex;
            }
            '\\' => {
                let escaped = chars
                    .next()
                    .ok_or("it ends with `\\`, which escapes nothing")?;
                push_literal(&mut regex, escaped);
                kind = Kind::Regex;
            }
            '[' => {
                push_class(&mut regex, &mut chars)?;
                kind = Kind::Regex;
            }
            ']' => {
                regex.push_str(r"\]");
                kind = Kind::Regex;
            }
            literal => push_literal(&mut regex, literal),
        }
        first = false;
    }
    Ok(match kind {
        Kind::Exact => Test::Exact,
        Kind::Prefix => Test::Prefix,
        Kind::Suffix => Test::Suffix,
        Kind::Regex => {
            regex.push('$');
            let regex = RegexBuilder::new(&regex)
                .build()
                .map_err(|e| format!("it is too complex to match ({e})"))?;
            Test::Regex(regex)
        }
    })
}

fn push_literal(regex: &mut String, ch: char) {
    regex.push_str(&regex::escape(ch.encode_utf8(&mut [0; 4])));
}

/// A `[...]` class after its `[`, with `filepath.Match`'s syntax and errors: an optional
/// `^`, then at least one character or range (`\` escapes), then `]`.
fn push_class(
    regex: &mut String,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<(), String> {
    const UNCLOSED: &str = "a character class `[` is not closed with `]`";
    regex.push('[');
    if chars.peek() == Some(&'^') {
        chars.next();
        regex.push('^');
    }
    let mut ranges = 0;
    loop {
        if ranges > 0 && chars.peek() == Some(&']') {
            chars.next();
            regex.push(']');
            return Ok(());
        }
        let low = class_char(chars)?;
        let high = if chars.peek() == Some(&'-') {
            chars.next();
            class_char(chars)?
        } else {
            low
        };
        if chars.peek().is_none() {
            return Err(UNCLOSED.into());
        }
        if high < low {
            // Go's filepath.Match accepts this, but Docker's regex then fails the build.
            return Err(format!("the range `{low}-{high}` is reversed"));
        }
        push_literal(regex, low);
        if high != low {
            regex.push('-');
            push_literal(regex, high);
        }
        ranges += 1;
    }
}

/// One character of a class (Go's `getEsc`).
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, String> {
    match chars.next() {
        None => Err("a character class `[` is not closed with `]`".into()),
        Some(c @ ('-' | ']')) => Err(format!(
            "`{c}` must be escaped as `\\{c}` at that place in a character class"
        )),
        Some('\\') => chars
            .next()
            .ok_or_else(|| "a character class ends with `\\`".to_owned()),
        Some(c) => Ok(c),
    }
}

/// fsutil's `patternWithoutTrailingGlob`: `a/**` and `a/*` both name the directory `a`.
fn without_trailing_glob(pattern: &str) -> &str {
    let pattern = pattern.strip_suffix("/**").unwrap_or(pattern);
    pattern.strip_suffix("/*").unwrap_or(pattern)
}

/// Go's `filepath.Clean` for slash-separated paths: no empty or `.` elements, `..` applied
/// where it can be, `.` for an empty result.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ignore(lines: &[&str]) -> DockerIgnore {
        DockerIgnore::parse(lines.join("\n").as_bytes())
            .unwrap_or_else(|e| panic!("{lines:?}: {e}"))
    }

    /// (patterns, path, excluded by Docker). Comments name where gitignore would differ.
    #[rustfmt::skip]
    const CASES: &[(&[&str], &str, bool)] = &[
        // Patterns are anchored at the root; gitignore matches `foo` at any depth.
        (&["foo"], "foo", true),
        (&["foo"], "a/foo", false),
        (&["foo"], "foo/bar", true),
        (&["foo"], "foobar", false),
        // `*` does not cross `/`; gitignore's `*.go` excludes cmd/main.go too.
        (&["*.go"], "main.go", true),
        (&["*.go"], "cmd/main.go", false),
        (&["*/*.go"], "cmd/main.go", true),
        (&["*/*.go"], "a/cmd/main.go", false),
        // `*` matches every top-level entry, and so everything below it.
        (&["*"], "a/b/c", true),
        (&["?.txt"], "a.txt", true),
        (&["?.txt"], "ab.txt", false),
        (&["a?b"], "a/b", false),
        // `**`: any number of directories.
        (&["**/foo"], "foo", true),
        (&["**/foo"], "a/b/foo", true),
        (&["**/foo"], "a/xfoo", false),
        (&["**/foo"], "a/foo/x", true),
        (&["a/**/b"], "a/b", true),
        (&["a/**/b"], "a/x/y/b", true),
        (&["a/**/b"], "a/xb", false),
        (&["**/*.md"], "docs/x/readme.md", true),
        (&["**/*.md"], "readme.md", true),
        // Docker's shortcuts: a leading `**` followed by text is a suffix test, a
        // trailing `**` after text a prefix test.
        (&["**foo"], "a/xfoo", true),
        (&["foo**"], "foobar/baz", true),
        (&["foo/**"], "foo", false),
        (&["foo/**"], "foo/x", true),
        (&["**"], "anything/at/all", true),
        // `!` re-includes, even below an excluded directory (gitignore cannot).
        (&["a", "!a/keep"], "a/x", true),
        (&["a", "!a/keep"], "a/keep", false),
        (&["a", "!a/keep"], "a/keep/deep", false),
        (&["*.md", "!README.md"], "README.md", false),
        (&["*.md", "!README.md"], "CHANGES.md", true),
        // The last matching pattern wins.
        (&["*.md", "!README.md", "README.md"], "README.md", true),
        (&["!a", "a"], "a", true),
        (&["a", "!a"], "a/b", false),
        // A trailing `/` is cleaned away: it matches files too (gitignore: directories only).
        (&["foo/"], "foo", true),
        (&["foo/"], "foo/bar", true),
        // A leading `/`, `.` and `..` are cleaned.
        (&["/foo"], "foo", true),
        (&["./a/../b"], "b", true),
        (&["a/./b/"], "a/b", true),
        // Classes, ranges, negation; `[!a]` is a class of `!` and `a` for Docker.
        (&["[a-c].txt"], "b.txt", true),
        (&["[a-c].txt"], "d.txt", false),
        (&["[^a].txt"], "b.txt", true),
        (&["[^a].txt"], "a.txt", false),
        (&["[!a].txt"], "!.txt", true),
        (&["[!a].txt"], "b.txt", false),
        (&["[\\]].txt"], "].txt", true),
        // `\` escapes a wildcard.
        (&["\\*.txt"], "*.txt", true),
        (&["\\*.txt"], "a.txt", false),
        // Regex characters are literal.
        (&["a.(b)+$"], "a.(b)+$", true),
        (&["a.*"], "aXb", false),
        (&["a.*"], "a.b", true),
        // Comments only in the first column; `#` after a space starts a pattern.
        (&["# foo", "bar"], "# foo", false),
        (&[" # foo"], "# foo", true),
        // BuildKit evaluates directories with their parent's results: the repeated `a`,
        // skipped at `a` because `a` is already excluded, never applies below it. (The
        // classic builder excludes a/b here.)
        (&["a", "!a/b", "a"], "a/b", false),
    ];

    #[test]
    fn docker_semantics_table() {
        let mut failures = Vec::new();
        for (patterns, path, excluded) in CASES {
            let got = ignore(patterns).is_excluded(path);
            if got != *excluded {
                failures.push(format!(
                    "{patterns:?} on {path:?}: got {got}, want {excluded}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn paths_are_cleaned_and_the_root_is_never_excluded() {
        let all = ignore(&["*"]);
        assert!(!all.is_excluded("."));
        assert!(!all.is_excluded(""));
        assert!(!all.is_excluded("/"));
        assert!(all.is_excluded("./a"));
        assert!(all.is_excluded("/a//b/"));
        assert!(!DockerIgnore::empty().is_excluded("a"));
    }

    #[test]
    fn can_skip_dir_follows_dockers_walk_rule() {
        // No exceptions: any excluded directory.
        let plain = ignore(&["node_modules", "*.log"]);
        assert!(plain.can_skip_dir("node_modules"));
        assert!(!plain.can_skip_dir("src"));
        // An exception inside the directory keeps the walk going.
        let keep = ignore(&["vendor", "!vendor/keep.txt"]);
        assert!(!keep.can_skip_dir("vendor"));
        assert!(keep.is_excluded("vendor"));
        let other = ignore(&["vendor", "!src/x"]);
        assert!(other.can_skip_dir("vendor"));
        // `!dir/**` and `!dir/*` name the directory itself.
        assert!(!ignore(&["a", "!a/b/**"]).can_skip_dir("a"));
        assert!(!ignore(&["a", "!a/*"]).can_skip_dir("a"));
        // A wildcard in an exception: nothing can be skipped.
        let wild = ignore(&["a", "!*/keep"]);
        assert!(!wild.can_skip_dir("a"));
        assert!(!wild.is_excluded("a/keep"));
        // Not excluded: never skipped.
        assert!(!ignore(&["a/b"]).can_skip_dir("a"));
    }

    #[test]
    fn docker_skips_below_a_doubly_globbed_exception() {
        // fsutil trims `/**` and then `/*` from `a/*/**`, finds no wildcard in `a`, and so
        // skips `a/x`, whose `a/x/y` the pattern alone would take back.
        let quirk = ignore(&["*", "!a/*/**"]);
        assert!(!quirk.is_excluded("a/x/y"));
        assert!(quirk.can_skip_dir("a/x"));
        assert!(!quirk.can_skip_dir("a"));
    }

    #[test]
    fn parsing_reads_lines_as_docker_does() {
        let parsed =
            DockerIgnore::parse(b"\xef\xbb\xbf# comment\r\n\r\n  spaced  \r\n! /abs/path\n")
                .unwrap();
        let texts: Vec<(&str, bool)> = parsed
            .patterns
            .iter()
            .map(|p| (p.text.as_str(), p.exception))
            .collect();
        assert_eq!(texts, [("spaced", false), ("abs/path", true)]);
        assert!(DockerIgnore::parse(b"").unwrap().is_empty());
        assert!(DockerIgnore::parse(b"\n\n# only\n").unwrap().is_empty());
        // The byte-order mark is removed from the first line only.
        let bom_second = DockerIgnore::parse(b"a\n\xef\xbb\xbfb").unwrap();
        assert!(bom_second.is_excluded("\u{feff}b"));
    }

    #[test]
    fn invalid_patterns_are_errors_with_their_line() {
        let cases: &[(&str, usize)] = &[
            ("ok\n[abc", 2),
            ("a\nb\n!", 3),
            ("! ", 1),
            ("x\\", 1),
            ("[]", 1),
            ("[^]", 1),
            ("[a-]", 1),
            ("[-a]", 1),
            ("[a", 1),
            ("[a\\", 1),
            ("[z-a]", 1),
            ("*/[", 1),
        ];
        for (contents, line) in cases {
            match DockerIgnore::parse(contents.as_bytes()) {
                Err(e) => assert_eq!(e.line(), *line, "{contents:?}: {e}"),
                Ok(_) => panic!("{contents:?} parsed, want an error on line {line}"),
            }
        }
        let e = DockerIgnore::parse(b"ok\n  [abc  ").unwrap_err();
        assert_eq!(e.pattern(), "[abc");
        assert_eq!(
            e.to_string(),
            "line 2: invalid pattern `[abc`: a character class `[` is not closed with `]`"
        );
        let located = e.in_file(".dockerignore");
        assert_eq!(
            located.to_string(),
            ".dockerignore:2: invalid pattern `[abc`: a character class `[` is not closed with `]`"
        );
        // Valid edge cases of filepath.Match syntax.
        for ok in ["[[]", "[\\]]", "[a-a]", "a]", "[*]x", "[^\\-]"] {
            assert!(DockerIgnore::parse(ok.as_bytes()).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn clean_matches_go() {
        for (path, cleaned) in [
            ("", "."),
            (".", "."),
            ("a/", "a"),
            ("a//b", "a/b"),
            ("./a/./b/", "a/b"),
            ("a/../..", ".."),
            ("../a/../../b", "../../b"),
            ("/../a", "/a"),
            ("/", "/"),
            ("//a", "/a"),
        ] {
            assert_eq!(clean(path), cleaned, "{path:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(contents in proptest::collection::vec(any::<u8>(), 0..200), path in "\\PC{0,40}") {
            if let Ok(ignore) = DockerIgnore::parse(&contents) {
                let _ = ignore.is_excluded(&path);
                let _ = ignore.can_skip_dir(&path);
            }
        }

        #[test]
        fn never_panics_on_pattern_like_text(
            patterns in proptest::collection::vec(r"!?[a-c*?\[\]\^\\/.!-]{0,12}", 0..6),
            path in "[a-c*?./]{0,16}",
        ) {
            if let Ok(ignore) = DockerIgnore::parse(patterns.join("\n").as_bytes()) {
                let _ = ignore.is_excluded(&path);
                let _ = ignore.can_skip_dir(&path);
            }
        }

        /// A walk that skips where `can_skip_dir` says only leaves out excluded paths.
        /// (Docker strips both `/**` and then `/*` before its prefix test, so `!a/*/**`
        /// counts as naming `a` and its walk skips `a/x` although the pattern takes back
        /// `a/x/y`: see `docker_skips_below_a_doubly_globbed_exception`. The exceptions
        /// generated here have at most one trailing glob.)
        #[test]
        fn skipped_directories_hold_only_excluded_paths(
            patterns in proptest::collection::vec(prop_oneof![
                r"(a|b|ab|\*|\*\*|\?|\[ab\])(/(a|b|ab|\*|\*\*|\?|\[ab\])){0,2}",
                r"!(a|b|ab)(/(a|b|ab)){0,2}(/\*|/\*\*)?",
                r"!(a|b|\*|\?)(/(a|b|\*|\?)){0,2}",
            ], 1..5),
            path in "(a|b|ab)(/(a|b|ab)){0,3}",
        ) {
            let ignore = ignore(&patterns.iter().map(String::as_str).collect::<Vec<_>>());
            let parts: Vec<&str> = path.split('/').collect();
            for depth in 1..parts.len() {
                let dir = parts[..depth].join("/");
                if ignore.can_skip_dir(&dir) {
                    prop_assert!(ignore.is_excluded(&path), "{patterns:?}: {dir} skipped, {path} kept");
                }
            }
        }
    }
}
