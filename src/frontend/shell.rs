//! Word expansion as BuildKit's shell lexer does it (`frontend/dockerfile/shell/lex.go`):
//! `$VAR`, `${VAR:-x}` and friends, quote removal, escapes.

// TEMPORARY stub so the stage graph compiles before the lexer lands (replaced on merge).
use std::collections::{BTreeMap, BTreeSet};

pub trait EnvGetter {
    fn get(&self, key: &str) -> Option<&str>;
}

impl EnvGetter for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellError {
    pub message: String,
}

impl std::fmt::Display for ShellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ShellError {}

pub struct Lexer {
    _escape: char,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer { _escape: escape }
    }
    pub fn process_word(&self, word: &str, _env: &dyn EnvGetter) -> Result<String, ShellError> {
        Ok(word.to_owned())
    }
    pub fn process_words(
        &self,
        word: &str,
        _env: &dyn EnvGetter,
    ) -> Result<Vec<String>, ShellError> {
        Ok(word.split_whitespace().map(str::to_owned).collect())
    }
    pub fn process_word_raw(&self, word: &str, _env: &dyn EnvGetter) -> Result<String, ShellError> {
        Ok(word.to_owned())
    }
    pub fn process_word_with_matches(
        &self,
        word: &str,
        _env: &dyn EnvGetter,
    ) -> Result<(String, BTreeSet<String>), ShellError> {
        Ok((word.to_owned(), BTreeSet::new()))
    }
}
