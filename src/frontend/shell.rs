//! Word expansion as BuildKit's shell lexer does it (`frontend/dockerfile/shell/lex.go`):
//! `$VAR`, `${VAR:-x}` and friends, quote removal, escapes.
//!
//! BuildKit expands the arguments of most instructions (`COPY`, `ENV`, `WORKDIR`, `FROM`…)
//! itself, with this small shell-like language, before anything runs. imgbuild must produce
//! the same strings, errors included, so this module follows lex.go's algorithm closely:
//!
//! * Outside quotes the escape token (`\`, or `` ` `` after `# escape=`) escapes any
//!   character; a trailing lone escape is dropped.
//! * `'…'` is literal; `"…"` expands `$` and lets the escape token escape only `"`, `$` and
//!   itself.
//! * `$NAME`, `${NAME}`; positional (`$1`, `${001}`) and special (`$@ $* $# $? $- $$ $! $0`)
//!   parameters, which are never set.
//! * `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?m}`, `${V?m}`, `${V#p}`, `${V##p}`,
//!   `${V%p}`, `${V%%p}`, `${V/p/r}`, `${V//p/r}`, where `w`, `m`, `p` and `r` are words that
//!   may themselves contain expansions.
//!
//! [`Lexer::process_words`] also splits the result into words, like a shell does, but only
//! on whitespace that came from unquoted text or unquoted expansions.
//!
//! Deliberate differences from BuildKit, none of which a working Dockerfile can notice:
//! `${` nested more than 100 deep is an error (instead of unbounded recursion); in
//! `process_words`, text before a `${V:-word}` stays in its word (the newest lex.go shares one
//! buffer between nesting levels and loses it); `${x` reports a missing `}` where BuildKit
//! prints `unsupported modifier (\u{fffd})`.
//!
//! No shell-expansion crate reproduces BuildKit's dialect (its error cases, its
//! `SkipUnsetEnv` output, its pattern rules), so the lexer is written here; patterns use the
//! `regex` crate, as BuildKit uses Go's `regexp`, for the same leftmost-first results in
//! linear time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

/// Where the lexer looks variables up.
///
/// Keys are compared exactly (Linux semantics: `$pwd` is not `$PWD`).
pub trait EnvGetter {
    fn get(&self, key: &str) -> Option<&str>;
}

impl EnvGetter for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl<S: BuildHasher> EnvGetter for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

/// A list of `(key, value)` pairs, as an image's `Env` is kept: the last entry for a key
/// wins, as in BuildKit's `BuildEnvs`.
impl EnvGetter for [(String, String)] {
    fn get(&self, key: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl EnvGetter for Vec<(String, String)> {
    fn get(&self, key: &str) -> Option<&str> {
        EnvGetter::get(self.as_slice(), key)
    }
}

/// An expansion that BuildKit rejects, e.g. `${}` or an unterminated quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellError {
    word: String,
    message: String,
}

impl ShellError {
    /// What is wrong, without the word: `syntax error: missing '}'`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The word that failed to expand, as written.
    pub fn word(&self) -> &str {
        &self.word
    }
}

impl fmt::Display for ShellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // BuildKit's wording: `failed to process "${x": syntax error: missing '}'`.
        write!(f, "failed to process {:?}: {}", self.word, self.message)
    }
}

impl std::error::Error for ShellError {}

/// Everything one expansion produces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word, quotes removed ([`Lexer::process_word`]).
    pub word: String,
    /// The expanded text split into words ([`Lexer::process_words`]).
    pub words: Vec<String>,
    /// Variables the word referenced that the environment has.
    pub matched: BTreeSet<String>,
    /// Variables the word referenced that the environment lacks.
    pub unmatched: BTreeSet<String>,
}

/// BuildKit's shell lexer (`shell.Lex`) with its options.
///
/// ```
/// use std::collections::BTreeMap;
/// use imgbuild::frontend::shell::Lexer;
///
/// let env = BTreeMap::from([("V".to_string(), "1.2".to_string())]);
/// let lexer = Lexer::new('\\');
/// assert_eq!(lexer.process_word("app-${V:-dev}.tar", &env).unwrap(), "app-1.2.tar");
/// assert_eq!(lexer.process_words("a 'b c' $V", &env).unwrap(), ["a", "b c", "1.2"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_process_quotes: bool,
    skip_unset_env: bool,
}

/// `${` nesting beyond this is refused, so that no input can exhaust the stack.
/// BuildKit has no limit, but no real Dockerfile nests more than a few levels.
const MAX_NESTING: usize = 100;

const MISSING_BRACE: &str = "syntax error: missing '}'";

impl Lexer {
    /// A lexer with `escape` as the escape token: `\`, or `` ` `` after `# escape=`.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// The escape token.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Keep the quote characters in the result (BuildKit's `RawQuotes`).
    pub fn raw_quotes(mut self, on: bool) -> Self {
        self.raw_quotes = on;
        self
    }

    /// Keep escape tokens in the result (BuildKit's `RawEscapes`).
    pub fn raw_escapes(mut self, on: bool) -> Self {
        self.raw_escapes = on;
        self
    }

    /// Treat quotes as ordinary characters (BuildKit's `SkipProcessQuotes`).
    pub fn skip_process_quotes(mut self, on: bool) -> Self {
        self.skip_process_quotes = on;
        self
    }

    /// Leave references to unset variables as written instead of expanding them to `""`
    /// (BuildKit's `SkipUnsetEnv`, used when dispatching instructions so that a stage's
    /// unknown variables reach the shell of a `RUN` untouched).
    pub fn skip_unset_env(mut self, on: bool) -> Self {
        self.skip_unset_env = on;
        self
    }

    /// Expands `word` into one string (BuildKit's `ProcessWord`).
    pub fn process_word(&self, word: &str, env: &dyn EnvGetter) -> Result<String, ShellError> {
        self.expand(word, env).map(|e| e.word)
    }

    /// Expands `word` and splits the result into words (BuildKit's `ProcessWords`).
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn EnvGetter,
    ) -> Result<Vec<String>, ShellError> {
        self.expand(word, env).map(|e| e.words)
    }

    /// Like [`process_word`](Self::process_word), also returning the names of the variables
    /// the word referenced that `env` has (BuildKit's `ProcessWordWithMatches`); this tells
    /// which build args a step depends on.
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn EnvGetter,
    ) -> Result<(String, BTreeSet<String>), ShellError> {
        self.expand(word, env).map(|e| (e.word, e.matched))
    }

    /// Expands `word`, returning every result at once.
    pub fn expand(&self, word: &str, env: &dyn EnvGetter) -> Result<Expansion, ShellError> {
        // Go's text/scanner, which BuildKit reads words with, skips a leading byte-order mark.
        let input = word.strip_prefix('\u{feff}').unwrap_or(word);
        let mut expander = Expander {
            lexer: self,
            env,
            rest: input,
            raw_escapes: self.raw_escapes,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match expander.word_until(None, self.raw_escapes) {
            Ok((word, words)) => Ok(Expansion {
                word,
                words,
                matched: expander.matched,
                unmatched: expander.unmatched,
            }),
            Err(message) => Err(ShellError {
                word: word.to_owned(),
                message,
            }),
        }
    }
}

/// The state of one expansion: the unread input and what was looked up.
struct Expander<'a> {
    lexer: &'a Lexer,
    env: &'a dyn EnvGetter,
    rest: &'a str,
    /// Whether escape tokens are kept; BuildKit switches this on inside patterns.
    raw_escapes: bool,
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

/// Collects the words of `ProcessWords`: whitespace from unquoted text splits words, text
/// from quotes or escapes never does.
#[derive(Default)]
struct Words {
    current: String,
    done: Vec<String>,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            self.split();
        } else {
            self.current.push(ch);
        }
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_char(&mut self, ch: char) {
        self.current.push(ch);
    }

    fn add_raw_str(&mut self, s: &str) {
        self.current.push_str(s);
    }

    fn split(&mut self) {
        if !self.current.is_empty() {
            self.done.push(std::mem::take(&mut self.current));
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.split();
        self.done
    }
}

type Step<T> = Result<T, String>;

impl<'a> Expander<'a> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let mut chars = self.rest.chars();
        let ch = chars.next();
        self.rest = chars.as_str();
        ch
    }

    fn lookup(&mut self, name: &str) -> Option<&'a str> {
        let value = self.env.get(name);
        let seen = if value.is_some() {
            &mut self.matched
        } else {
            &mut self.unmatched
        };
        if !seen.contains(name) {
            seen.insert(name.to_owned());
        }
        value
    }

    /// Reads a word up to `stop` (consumed) or the end of input (`stop == None`), with
    /// escape tokens kept or not (lex.go's `processStopOn`).
    fn word_until(&mut self, stop: Option<char>, raw_escapes: bool) -> Step<(String, Vec<String>)> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.word_until_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn word_until_inner(&mut self, stop: Option<char>) -> Step<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lexer.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    words.add_str(&value);
                }
                '\'' if quotes => {
                    let text = self.single_quoted()?;
                    result.push_str(&text);
                    words.add_raw_str(&text);
                }
                '"' if quotes => {
                    let text = self.double_quoted()?;
                    result.push_str(&text);
                    words.add_raw_str(&text);
                }
                _ => {
                    self.next();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escaped character, whatever it is; a trailing escape is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            // Callers turn this into a message about the construct left open.
            Some(stop) => Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )),
            None => Ok((result, words.finish())),
        }
    }

    fn single_quoted(&mut self) -> Step<String> {
        let mut text = String::new();
        self.next();
        if self.lexer.raw_quotes {
            text.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        text.push('\'');
                    }
                    return Ok(text);
                }
                Some(ch) => text.push(ch),
            }
        }
    }

    fn double_quoted(&mut self) -> Step<String> {
        let mut text = String::new();
        self.next();
        if self.lexer.raw_quotes {
            text.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        text.push('"');
                    }
                    return Ok(text);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    text.push_str(&value);
                }
                Some(_) => {
                    let Some(mut ch) = self.next() else { continue };
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            text.push(ch);
                        }
                        match self.peek() {
                            // The loop reports the missing closing quote.
                            None => continue,
                            // Only these can be escaped; before anything else the escape
                            // token stays (so `"\t"` is `\t`).
                            Some(next)
                                if next == '"' || next == '$' || next == self.lexer.escape =>
                            {
                                self.next();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    text.push(ch);
                }
            }
        }
    }

    /// Reads a name after `$` (lex.go's `processName`): a run of digits (a positional
    /// parameter), one special-parameter character, or letters, digits and `_`.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_go_digit(ch) {
                while let Some(digit) = self.peek().filter(|c| is_go_digit(*c)) {
                    self.next();
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && is_special_parameter(ch) {
                self.next();
                name.push(ch);
                return name;
            }
            if !is_go_letter(ch) && !is_go_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    /// Expands a `$…` (the `$` not yet consumed).
    fn dollar(&mut self) -> Step<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value.to_owned(),
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(MISSING_BRACE.into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        if self.depth >= MAX_NESTING {
            return Err(format!(
                "syntax error: more than {MAX_NESTING} nested ${{...}} expansions"
            ));
        }
        self.depth += 1;
        let result = self.braced();
        self.depth -= 1;
        result
    }

    /// Expands `${…` after the brace.
    fn braced(&mut self) -> Step<String> {
        let name = self.name();
        let Some(ch) = self.next() else {
            return Err(MISSING_BRACE.into());
        };
        match ch {
            '}' => Ok(match self.lookup(&name) {
                Some(value) => value.to_owned(),
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => self.modifier(&name, ch),
            '/' => self.substitution(&name),
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }

    /// `${NAME` followed by `:…`, `+`, `-`, `?`, `#` or `%`.
    fn modifier(&mut self, name: &str, first: char) -> Step<String> {
        let (null_is_unset, op) = if first == ':' {
            match self.next() {
                Some(op) => (true, op),
                None => return Err(MISSING_BRACE.into()),
            }
        } else {
            (false, first)
        };
        let written = if null_is_unset {
            format!(":{op}")
        } else {
            op.to_string()
        };
        let is_pattern = op == '#' || op == '%';
        if null_is_unset && is_pattern {
            return Err(format!("unsupported modifier ({written}) in substitution"));
        }
        // Patterns keep their escapes: `\*` is a literal star there.
        let word = self.word_until_brace(is_pattern)?;
        let value = self.lookup(name);
        if value.is_none() && self.lexer.skip_unset_env {
            // Before the modifier is checked, as BuildKit does: `${UNSET:=x}` stays as is.
            return Ok(format!("${{{name}{written}{word}}}"));
        }
        let empty = value.is_none_or(|v| null_is_unset && v.is_empty());
        match op {
            '-' => Ok(if empty {
                word
            } else {
                value.unwrap_or_default().to_owned()
            }),
            '+' => Ok(if empty { String::new() } else { word }),
            '?' => match value {
                None => Err(format!(
                    "{name}: {}",
                    non_empty_or(&word, "is not allowed to be unset")
                )),
                Some("") if null_is_unset => Err(format!(
                    "{name}: {}",
                    non_empty_or(&word, "is not allowed to be empty")
                )),
                Some(value) => Ok(value.to_owned()),
            },
            '#' | '%' => {
                // One `#`/`%` removes the shortest match, two the longest.
                let (greedy, pattern) = match word.strip_prefix(op) {
                    Some(pattern) => (true, pattern),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                let trimmed = if op == '#' {
                    trim_prefix(pattern, value, greedy)
                } else {
                    trim_suffix(pattern, value, greedy)
                };
                trimmed.map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))
            }
            _ => Err(format!("unsupported modifier ({written}) in substitution")),
        }
    }

    /// `${NAME/pattern/replacement}` and `${NAME//pattern/replacement}`, after the first `/`.
    fn substitution(&mut self, name: &str) -> Step<String> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.next();
        }
        let pattern = match self.word_until(Some('/'), true) {
            Ok((pattern, _)) => pattern,
            Err(_) if self.peek().is_none() => {
                return Err("syntax error: missing '/' in ${}".into());
            }
            Err(e) => return Err(e),
        };
        let replacement = self.word_until_brace(true)?;
        let value = self.lookup(name);
        if value.is_none() && self.lexer.skip_unset_env {
            // BuildKit writes a single `/` here even for `//`; imgbuild must produce the same
            // text for the same Dockerfile.
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        let regex = shell_pattern_regex(&pattern, true, false)
            .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
        let value = value.unwrap_or_default();
        if replace_all {
            return Ok(replace_all_like_go(&regex, value, &replacement));
        }
        Ok(match regex.find(value) {
            // The first match is replaced literally; only "replace all" expands `$0`.
            Some(m) => [
                value.get(..m.start()).unwrap_or_default(),
                &replacement,
                value.get(m.end()..).unwrap_or_default(),
            ]
            .concat(),
            None => value.to_owned(),
        })
    }

    /// A word up to the closing `}`, reporting a missing brace as such.
    fn word_until_brace(&mut self, raw_escapes: bool) -> Step<String> {
        match self.word_until(Some('}'), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(MISSING_BRACE.into()),
            Err(e) => Err(e),
        }
    }
}

fn non_empty_or<'s>(message: &'s str, default: &'s str) -> &'s str {
    if message.is_empty() { default } else { message }
}

fn is_special_parameter(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Go's `unicode.IsLetter` (general category L). Rust's `char::is_alphabetic` is a wider
/// property (it includes Nl and combining marks), so non-ASCII characters are checked
/// against the category itself; names decide what `$x…` reads, and must match BuildKit.
fn is_go_letter(ch: char) -> bool {
    static LETTER: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^\p{L}$").ok());
    if ch.is_ascii() {
        return ch.is_ascii_alphabetic();
    }
    match LETTER.as_ref() {
        Some(re) => re.is_match(ch.encode_utf8(&mut [0; 4])),
        None => ch.is_alphabetic(),
    }
}

/// Go's `unicode.IsDigit` (general category Nd); `char::is_numeric` also takes No and Nl.
fn is_go_digit(ch: char) -> bool {
    static DIGIT: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^\p{Nd}$").ok());
    if ch.is_ascii() {
        return ch.is_ascii_digit();
    }
    match DIGIT.as_ref() {
        Some(re) => re.is_match(ch.encode_utf8(&mut [0; 4])),
        None => ch.is_numeric(),
    }
}

/// Turns a shell pattern (`*`, `?`, `\*`, `\?`, `\\`; no bracket expressions, as in
/// BuildKit) into a regex. `\}` and `\/` are the pattern's own `}` and `/`, escaped only to
/// get through `${…}`.
fn shell_pattern_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, String> {
    let mut out = String::with_capacity(pattern.len() + 8);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => match chars.peek().copied() {
                Some('}' | '/') => {}
                Some(escaped @ ('*' | '?' | '\\')) => {
                    chars.next();
                    out.push_str(&regex::escape(escaped.encode_utf8(&mut [0; 4])));
                }
                Some(other) => return Err(format!("invalid escape '\\{other}'")),
                None => return Err("the pattern ends with an escape '\\'".into()),
            },
            literal => out.push_str(&regex::escape(literal.encode_utf8(&mut [0; 4]))),
        }
    }
    RegexBuilder::new(&out)
        .build()
        .map_err(|e| format!("cannot compile it: {e}"))
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let regex = shell_pattern_regex(pattern, greedy, true)?;
    Ok(match regex.find(value) {
        Some(m) => value.get(m.end()..).unwrap_or_default().to_owned(),
        None => value.to_owned(),
    })
}

/// The shortest or longest suffix match: a regex finds leftmost matches only, so both the
/// value and the pattern are reversed and the prefix trimmed (as BuildKit does).
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern, keeping each `\x` escape in front of its character: `a\*c` → `c\*a`.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut rest = chars.as_slice();
    while !rest.is_empty() {
        let width = if rest.len() > 1 && rest.first() == Some(&'\\') {
            2
        } else {
            1
        };
        let (unit, tail) = rest.split_at(width);
        units.push(unit);
        rest = tail;
    }
    units.iter().rev().flat_map(|unit| unit.iter()).collect()
}

/// Go's `Regexp.ReplaceAllString`: every non-overlapping match replaced, an empty match right
/// after a match skipped, and `$0`/`${0}` in the replacement standing for the match.
fn replace_all_like_go(regex: &Regex, src: &str, template: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut last_end = 0;
    let mut search = 0;
    while search <= src.len() {
        let Some(m) = regex.find_at(src, search) else {
            break;
        };
        out.push_str(src.get(last_end..m.start()).unwrap_or_default());
        if m.end() > last_end || m.start() == 0 {
            expand_go_template(&mut out, template, m.as_str());
        }
        last_end = m.end();
        // Always advance by at least one character.
        let width = src
            .get(search..)
            .and_then(|s| s.chars().next())
            .map_or(0, char::len_utf8);
        search = if search + width > m.end() {
            search + width
        } else if search + 1 > m.end() {
            search + 1
        } else {
            m.end()
        };
    }
    out.push_str(src.get(last_end..).unwrap_or_default());
    out
}

/// Go's `Regexp.Expand` for a regex without groups: `$$` is `$`, `$0`/`${0}` the match,
/// any other `$name`/`${name}` nothing, a malformed `$` itself.
fn expand_go_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let (braced, body) = match rest.strip_prefix('{') {
            Some(body) => (true, body),
            None => (false, rest),
        };
        let name_len = body
            .char_indices()
            .find(|&(_, c)| !(is_go_letter(c) || is_go_digit(c) || c == '_'))
            .map_or(body.len(), |(i, _)| i);
        let name = &body[..name_len];
        let after_name = &body[name_len..];
        let after = if braced {
            after_name.strip_prefix('}')
        } else {
            Some(after_name)
        };
        match after {
            Some(after) if !name.is_empty() => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            _ => out.push('$'),
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn word(input: &str, env: &BTreeMap<String, String>) -> Result<String, ShellError> {
        Lexer::new('\\').process_word(input, env)
    }

    /// Cases and expectations of BuildKit's `TestProcessWithMatches` (lex_test.go).
    #[test]
    fn modifiers_patterns_and_matches_as_buildkit() {
        struct Case {
            input: &'static str,
            env: &'static [(&'static str, &'static str)],
            expected: Option<&'static str>,
            matched: &'static [&'static str],
            unmatched: &'static [&'static str],
        }
        const FOO_BAR: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];
        #[rustfmt::skip]
        let cases = [
            Case { input: "x", env: &[("DUMMY", "dummy")], expected: Some("x"), matched: &[], unmatched: &[] },
            Case { input: "x ${UNUSED}", env: &[("DUMMY", "dummy")], expected: Some("x "), matched: &[], unmatched: &["UNUSED"] },
            Case { input: "x ${FOO}", env: &[("FOO", "y")], expected: Some("x y"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", env: FOO_BAR, expected: Some("xxx  ccc"), matched: &["FOO", "BAR"], unmatched: &["BAZ"] },
            Case { input: "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", env: FOO_BAR, expected: Some("xxx bbb ccc"), matched: &["FOO", "BAR"], unmatched: &["BAZ"] },
            Case { input: "${FOO:-}", env: FOO_BAR, expected: Some("xxx"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${FOO:-}", env: &[], expected: Some(""), matched: &[], unmatched: &["FOO"] },
            Case { input: "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", env: FOO_BAR, expected: Some("aaa bbb "), matched: &["FOO", "BAR"], unmatched: &["BAZ"] },
            Case { input: "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", env: FOO_BAR, expected: Some("aaa  "), matched: &["FOO", "BAR"], unmatched: &["BAZ"] },
            Case { input: "${FOO?aaa}", env: FOO_BAR, expected: Some("xxx"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${BAR?bbb}", env: FOO_BAR, expected: Some(""), matched: &["BAR"], unmatched: &[] },
            Case { input: "${BAZ?ccc}", env: FOO_BAR, expected: None, matched: &[], unmatched: &[] },
            Case { input: "${FOO:?aaa}", env: FOO_BAR, expected: Some("xxx"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${BAR:?bbb}", env: FOO_BAR, expected: None, matched: &[], unmatched: &[] },
            Case { input: "${BAZ:?ccc}", env: FOO_BAR, expected: None, matched: &[], unmatched: &[] },
            Case { input: "${BAZ:?}", env: FOO_BAR, expected: None, matched: &[], unmatched: &[] },
            Case { input: "${FOO=aaa}", env: FOO_BAR, expected: None, matched: &[], unmatched: &[] },
            Case { input: "${FOO=:aaa}", env: FOO_BAR, expected: None, matched: &[], unmatched: &[] },
            Case { input: "${FOO=}", env: &[], expected: None, matched: &[], unmatched: &[] },
            Case { input: r"${FOO#()[]{\}^$.\*\?|\\}", env: &[("FOO", r"()[]{}^$.*?|\x")], expected: Some("x"), matched: &["FOO"], unmatched: &[] },
            Case { input: r"${FOO%%\**}", env: &[("FOO", "xx**")], expected: Some("xx"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${FOO#*x*y}", env: &[("FOO", "xxyy")], expected: Some("y"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${FOO#*}", env: &[("FOO", "xxyy")], expected: Some("xxyy"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${FOO#$BAR}", env: &[("FOO", "xxyy"), ("BAR", "x")], expected: Some("xyy"), matched: &["FOO", "BAR"], unmatched: &[] },
            Case { input: "${FOO#$BAR}", env: &[("FOO", "xxyy"), ("BAR", "")], expected: Some("xxyy"), matched: &["FOO", "BAR"], unmatched: &[] },
            Case { input: "${FOO#}", env: &[("FOO", "xxyy")], expected: Some("xxyy"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${FOO##*x}", env: &[("FOO", "xxyy")], expected: Some("yy"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${FOO##}", env: &[("FOO", "xxyy")], expected: Some("xxyy"), matched: &["FOO"], unmatched: &[] },
            Case { input: r"${FOO#?\?}", env: &[("FOO", "???y")], expected: Some("?y"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${ABC:-.}${FOO%x}${ABC:-.}", env: &[("FOO", "xxyy")], expected: Some(".xxyy."), matched: &["FOO"], unmatched: &["ABC"] },
            Case { input: r"${FOO%%\**\*}", env: &[("FOO", "a***yy*")], expected: Some("a"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${FOO%}", env: &[("FOO", "xxyy")], expected: Some("xxyy"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${FOO%%$BAR}", env: &[("FOO", "xxyy"), ("BAR", "")], expected: Some("xxyy"), matched: &["FOO", "BAR"], unmatched: &[] },
            Case { input: "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", env: &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")], expected: Some("/foo.*/*.txt - /foo..*.txt"), matched: &["FOO", "NEEDLE"], unmatched: &[] },
            Case { input: "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", env: &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")], expected: Some("/tmp/bar.txt - /bar.txt"), matched: &["FOO", "NEEDLE"], unmatched: &[] },
            Case { input: "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}", env: &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("REPLACEMENT", "/")], expected: Some("/foo/b/c.txt - /foo/c.txt"), matched: &["FOO", "NEEDLE", "REPLACEMENT"], unmatched: &[] },
            Case { input: "${FOO/$NEEDLE/$REPLACEMENT}", env: &[("FOO", "http://google.de"), ("NEEDLE", "http://"), ("REPLACEMENT", "https://")], expected: Some("https://google.de"), matched: &["FOO", "NEEDLE", "REPLACEMENT"], unmatched: &[] },
            Case { input: r"${FOO//\//\/}", env: &[("FOO", "/tmp/foo.txt")], expected: Some(r"\/tmp\/foo.txt"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${FOO/$BAR/ww}", env: &[("FOO", "xxyy"), ("BAR", "")], expected: Some("wwxxyy"), matched: &["FOO", "BAR"], unmatched: &[] },
            Case { input: "${FOO//ww}", env: &[("FOO", "xxyy")], expected: None, matched: &[], unmatched: &[] },
            Case { input: "${FOO//}", env: &[("FOO", "xxyy")], expected: None, matched: &[], unmatched: &[] },
            Case { input: "${FOO///}", env: &[("FOO", "xxyy")], expected: Some("xxyy"), matched: &["FOO"], unmatched: &[] },
            Case { input: "${FOO///}", env: &[], expected: Some(""), matched: &[], unmatched: &["FOO"] },
        ];
        let lexer = Lexer::new('\\');
        let mut failures = Vec::new();
        for case in &cases {
            let env = env(case.env);
            match (lexer.expand(case.input, &env), case.expected) {
                (Ok(got), Some(expected)) => {
                    if got.word != expected
                        || got.matched != names(case.matched)
                        || got.unmatched != names(case.unmatched)
                    {
                        failures.push(format!("{:?}: got {got:?}, want {expected:?}", case.input));
                    }
                }
                (Err(_), None) => {}
                (got, expected) => {
                    failures.push(format!("{:?}: got {got:?}, want {expected:?}", case.input))
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn mandatory_variables_report_the_message() {
        let lexer = Lexer::new('\\');
        let set = env(&[("VAR", "plain"), ("ARG", "x")]);
        let empty = env(&[("VAR", ""), ("ARG", "x")]);
        let unset = env(&[("ARG", "x")]);
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";

        assert_eq!(lexer.process_word(no_empty, &set).unwrap(), "plain");
        let err = lexer.process_word(no_empty, &empty).unwrap_err();
        assert_eq!(err.message(), "VAR: message herex");
        let err = lexer.process_word(no_empty, &unset).unwrap_err();
        assert_eq!(err.message(), "VAR: message herex");

        assert_eq!(lexer.process_word(no_unset, &set).unwrap(), "plain");
        assert_eq!(lexer.process_word(no_unset, &empty).unwrap(), "");
        let err = lexer.process_word(no_unset, &unset).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"failed to process "${VAR?message here$ARG}": VAR: message herex"#
        );

        let err = lexer.process_word("${VAR:?}", &empty).unwrap_err();
        assert_eq!(err.message(), "VAR: is not allowed to be empty");
        let err = lexer.process_word("${VAR?}", &unset).unwrap_err();
        assert_eq!(err.message(), "VAR: is not allowed to be unset");
    }

    #[test]
    fn error_messages_name_the_problem() {
        let none = env(&[]);
        let cases = [
            ("${x", MISSING_BRACE),
            ("${", MISSING_BRACE),
            ("${x:-y", MISSING_BRACE),
            ("${x:", MISSING_BRACE),
            ("${}", "syntax error: bad substitution"),
            ("${:x}", "syntax error: bad substitution"),
            ("${{x}", "syntax error: bad substitution"),
            ("${x:=y}", "unsupported modifier (:=) in substitution"),
            ("${x=y}", "unsupported modifier (=) in substitution"),
            ("${x:#y}", "unsupported modifier (:#) in substitution"),
            ("${x:%y}", "unsupported modifier (:%) in substitution"),
            ("${x/y", "syntax error: missing '/' in ${}"),
            ("${x/y/z", MISSING_BRACE),
            (
                r"${x#\a}",
                r"invalid pattern (\a) in substitution: invalid escape '\a'",
            ),
            (
                "'abc",
                "unexpected end of statement while looking for matching single-quote",
            ),
            (
                "\"abc",
                "unexpected end of statement while looking for matching double-quote",
            ),
            ("${x:-${y:?oops}}", "y: oops"),
        ];
        for (input, message) in cases {
            match word(input, &none) {
                Err(e) => assert_eq!(e.message(), message, "input {input:?}"),
                Ok(got) => panic!("{input:?} expanded to {got:?}, want error {message:?}"),
            }
        }
    }

    #[test]
    fn patterns_reverse_and_escape_as_buildkit() {
        // TestReversePattern in lex_test.go.
        for (pattern, reversed) in [
            (r"a\*c", r"c\*a"),
            (r"\\\ab", r"b\a\\"),
            (r"ab\", r"\ba"),
            ("👽\\🚀🖖", "🖖\\🚀👽"),
            (r"\\b", r"b\\"),
        ] {
            assert_eq!(reverse_pattern(pattern), reversed, "pattern {pattern:?}");
        }
        // TestConvertShellPatternToRegex: these escapes are invalid.
        for invalid in [r"\", r"\x", r"\\\"] {
            assert!(
                shell_pattern_regex(invalid, true, true).is_err(),
                "{invalid:?}"
            );
        }
        let special = shell_pattern_regex(r"(()[]{\}^$.\*\?|\\", true, true).unwrap();
        assert!(special.is_match(r"(()[]{}^$.*?|\"));
        assert!(!special.is_match(r"(()[]{}^$.x?|\"));
    }

    #[test]
    fn suffix_and_prefix_trimming_shortest_and_longest() {
        let e = env(&[("F", "archive.tar.gz"), ("P", "/usr/local/bin/tool")]);
        assert_eq!(word("${F%.*}", &e).unwrap(), "archive.tar");
        assert_eq!(word("${F%%.*}", &e).unwrap(), "archive");
        assert_eq!(word("${F#*.}", &e).unwrap(), "tar.gz");
        assert_eq!(word("${F##*.}", &e).unwrap(), "gz");
        assert_eq!(word("${P##*/}", &e).unwrap(), "tool");
        assert_eq!(word("${P%/*}", &e).unwrap(), "/usr/local/bin");
        // `*` does not cross a newline, as Go's `.` does not.
        let nl = env(&[("N", "a\nb.c")]);
        assert_eq!(word("${N#*.}", &nl).unwrap(), "a\nb.c");
        // Quoted text inside a pattern keeps its escapes (RawEscapes inside patterns).
        let t = env(&[("T", r"\tail")]);
        assert_eq!(word(r#"${T#"\t"}"#, &t).unwrap(), "ail");
    }

    #[test]
    fn replace_all_follows_go_replace_all_string() {
        let e = env(&[("V", "xxyy"), ("W", "baaac")]);
        // The replacement is expanded first (`$0` is an unset special parameter); an escaped
        // `\$0` keeps its escape and reaches Go's template expansion, which only "replace
        // all" applies.
        assert_eq!(word("${V//x/$0}", &e).unwrap(), "yy");
        assert_eq!(word(r"${V//x/\$0}", &e).unwrap(), r"\x\xyy");
        assert_eq!(word(r"${V/x/\$0}", &e).unwrap(), r"\$0xyy");
        assert_eq!(word(r"${V//x/\$\$}", &e).unwrap(), r"\$\$\$\$yy");
        // An empty pattern matches between every character.
        assert_eq!(word("${V///-}", &e).unwrap(), "-x-x-y-y-");
        // `*` matches the whole value, then the empty match at its end is skipped, as Go does.
        assert_eq!(word("${V//*/X}", &e).unwrap(), "X");
        assert_eq!(word("${W//a*/X}", &e).unwrap(), "bX");
    }

    #[test]
    fn go_template_expansion() {
        let mut out = String::new();
        expand_go_template(&mut out, "$0-$$-${0}-$1-$00-${0x}-${x-$", "M");
        assert_eq!(out, "M-$-M----${x-$");
    }

    #[test]
    fn skip_unset_env_leaves_unknown_references_as_buildkit_writes_them() {
        let lexer = Lexer::new('\\').skip_unset_env(true);
        let e = env(&[("SET", "v")]);
        let cases = [
            ("$UNSET", "$UNSET"),
            ("${UNSET}", "${UNSET}"),
            ("${UNSET:-$SET}", "${UNSET:-v}"),
            ("${UNSET+x}", "${UNSET+x}"),
            ("${UNSET:?x}", "${UNSET:?x}"),
            ("${UNSET#x}", "${UNSET#x}"),
            ("${UNSET:=x}", "${UNSET:=x}"),
            ("${UNSET//a/b}", "${UNSET/a/b}"),
            ("${SET:-x}$SET", "vv"),
            ("'$UNSET'", "$UNSET"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                lexer.process_word(input, &e).unwrap(),
                expected,
                "{input:?}"
            );
        }
        // A set variable's modifier is still checked.
        assert!(lexer.process_word("${SET:=x}", &e).is_err());
    }

    #[test]
    fn raw_modes_keep_quotes_and_escapes() {
        let e = env(&[("A", "1")]);
        let raw_quotes = Lexer::new('\\').raw_quotes(true);
        assert_eq!(
            raw_quotes.process_word(r#"'x y'"$A""#, &e).unwrap(),
            r#"'x y'"1""#
        );
        let raw_escapes = Lexer::new('\\').raw_escapes(true);
        assert_eq!(
            raw_escapes.process_word(r"a\ b\$A", &e).unwrap(),
            r"a\ b\$A"
        );
        let no_quotes = Lexer::new('\\').skip_process_quotes(true);
        assert_eq!(
            no_quotes.process_word(r#"'$A' "x""#, &e).unwrap(),
            r#"'1' "x""#
        );
    }

    #[test]
    fn backtick_escape_token() {
        let e = env(&[("A", "1")]);
        let lexer = Lexer::new('`');
        assert_eq!(lexer.process_word(r"C:\dir\$A", &e).unwrap(), r"C:\dir\1");
        assert_eq!(lexer.process_word("`$A", &e).unwrap(), "$A");
        assert_eq!(lexer.process_word("\"a`\"b\"", &e).unwrap(), "a\"b");
        // `\` is an ordinary character with this escape token.
        assert_eq!(lexer.process_word(r#""a\"b"#, &e).unwrap(), r"a\b");
        assert_eq!(lexer.process_words("a` b c", &e).unwrap(), ["a b", "c"]);
    }

    #[test]
    fn words_split_only_unquoted_whitespace() {
        let e = env(&[("S", " a  b "), ("E", "")]);
        let lexer = Lexer::new('\\');
        assert_eq!(
            lexer.process_words("x$S\"$S\"y", &e).unwrap(),
            ["x", "a", "b", " a  b y"]
        );
        assert_eq!(lexer.process_words("a \"\" $E b", &e).unwrap(), ["a", "b"]);
        // The text before a `${…}` with a nested word stays in the same word. (BuildKit's
        // newest lex.go shares one buffer between nesting levels and drops the "ab"; that is
        // a bug, not a rule, and no Dockerfile relies on it.)
        assert_eq!(
            lexer.process_words("ab${X:-y z}c", &e).unwrap(),
            ["aby", "zc"]
        );
    }

    #[test]
    fn names_follow_go_unicode_categories() {
        let e = env(&[("é", "e"), ("x", "X"), ("안녕", "hi")]);
        assert_eq!(word("$é!", &e).unwrap(), "e!");
        assert_eq!(word("$안녕.", &e).unwrap(), "hi.");
        // '²' is a number (No) but not a digit (Nd): it ends the name.
        assert_eq!(word("$x²", &e).unwrap(), "X²");
        // 'Ⅻ' is alphabetic for Rust but not a letter for Go.
        assert_eq!(word("$xⅫ", &e).unwrap(), "XⅫ");
        // A leading byte-order mark is skipped, as Go's text/scanner does.
        assert_eq!(word("\u{feff}$x", &e).unwrap(), "X");
    }

    #[test]
    fn env_getters_agree() {
        let pairs = vec![
            ("K".to_string(), "old".to_string()),
            ("K".to_string(), "new".to_string()),
        ];
        let hash: HashMap<String, String> = pairs.iter().cloned().collect();
        let tree: BTreeMap<String, String> = pairs.iter().cloned().collect();
        let lexer = Lexer::new('\\');
        for getter in [&pairs as &dyn EnvGetter, &hash, &tree] {
            assert_eq!(lexer.process_word("$K", getter).unwrap(), "new");
        }
        let (word, matched) = lexer
            .process_word_with_matches("$K ${MISSING:-x}", &pairs)
            .unwrap();
        assert_eq!(word, "new x");
        assert_eq!(matched, names(&["K"]));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "${a:-".repeat(100_000);
        let err = word(&deep, &env(&[])).unwrap_err();
        assert!(err.message().contains("nested"), "{err}");
        let fine = format!("{}x{}", "${a:-".repeat(50), "}".repeat(50));
        assert_eq!(word(&fine, &env(&[])).unwrap(), "x");
    }

    #[test]
    fn long_inputs_expand_in_linear_time() {
        let e = env(&[("V", "ab"), ("L", &"ab".repeat(20_000))]);
        let input = "$V ".repeat(100_000);
        let start = std::time::Instant::now();
        let words = Lexer::new('\\').process_words(&input, &e).unwrap();
        assert_eq!(words.len(), 100_000);
        let pattern = format!("${{L//{}/x}}", "?".repeat(50));
        assert!(word(&pattern, &e).is_ok());
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
    }

    proptest! {
        #[test]
        fn never_panics(
            input in r#"[$\{\}:\-+?#%/*'"\\` a-zA-Z0-9_@!.\n]{0,64}"#,
            unicode in "\\PC{0,32}",
        ) {
            let e = env(&[("a", "x y"), ("b", ""), ("A", "/a/b*c")]);
            for lexer in [
                Lexer::new('\\'),
                Lexer::new('`').raw_quotes(true).skip_unset_env(true),
                Lexer::new('\\').raw_escapes(true).skip_process_quotes(true),
            ] {
                let _ = lexer.expand(&input, &e);
                let _ = lexer.expand(&unicode, &e);
            }
        }
    }
}
