//! The Dockerfile front end: text → AST → typed instructions → stages.
//!
//! * [`parser`]: BuildKit's grammar, byte for byte (directives, continuations, JSON and
//!   shell forms, flags, heredocs), producing [`parser::Node`]s and BuildKit's AST dump.
//! * [`shell`]: word expansion as BuildKit's shell lexer does it.
//! * [`dockerignore`]: `.dockerignore` with Docker's matching rules.

pub mod dockerignore;
pub mod instructions;
pub mod parser;
pub mod shell;
pub mod stages;

use std::fmt;

/// An error in a Dockerfile or the build context, located where the user can fix it.
///
/// Displayed as `Dockerfile:12:5: unknown instruction: RUNN`, like a compiler error, and
/// always classified as an input error (exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The file as the user named it (`Dockerfile`, `app/Dockerfile.prod`, `.dockerignore`).
    pub file: String,
    /// 1-based line, when the error has one.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    pub message: String,
    /// What to do about it, printed as `hint: …`.
    pub hint: Option<String>,
}

impl Error {
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> Self {
        Error {
            file: file.into(),
            line: None,
            column: None,
            message: message.into(),
            hint: None,
        }
    }

    pub fn at(mut self, line: usize, column: Option<usize>) -> Self {
        self.line = Some(line);
        self.column = column;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl crate::error::Hint for Error {
    fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    fn is_input(&self) -> bool {
        true
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Error {}

/// Reads a Dockerfile, with errors that say what is wrong with the path.
pub fn read_dockerfile(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    let name = path.display().to_string();
    if path.is_dir() {
        return Err(Error::new(name, "is a directory, not a Dockerfile")
            .with_hint("name the file with -f, e.g. -f DIR/Dockerfile"));
    }
    std::fs::read(path).map_err(|e| {
        let error = Error::new(
            name,
            format!("cannot read the Dockerfile: {}", io_reason(&e)),
        );
        if e.kind() == std::io::ErrorKind::NotFound {
            error.with_hint("imgbuild looks for CONTEXT/Dockerfile; name another file with -f")
        } else {
            error
        }
    })
}

/// Parses a Dockerfile's bytes, locating errors in `file` (the name the user gave).
pub fn parse_dockerfile(file: &str, bytes: &[u8]) -> Result<parser::Ast, Error> {
    parser::parse(bytes).map_err(|e| {
        let error = Error::new(file, e.message);
        if e.line > 0 {
            error.at(e.line, None)
        } else {
            error
        }
    })
}

/// An I/O error's reason without Rust's "(os error 2)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Where to find the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    Path(std::path::PathBuf),
    /// `-f -`.
    Stdin,
    /// Written by imgbuild: the zero-config build of a Mix project ([`crate::mix`]), with
    /// what the user should know about it.
    Generated {
        name: String,
        text: String,
        notes: Vec<String>,
    },
}

/// Reads, parses and resolves a Dockerfile: the stage graph for `target` (the last stage
/// when `None`), with the build's ARGs and platform.
pub fn load(
    dockerfile: &DockerfileSource,
    build_args: &std::collections::BTreeMap<String, String>,
    target: Option<&str>,
    platform: &crate::oci::Platform,
    named_contexts: &std::collections::BTreeMap<String, stages::NamedContext>,
) -> anyhow::Result<stages::BuildGraph> {
    use anyhow::Context;
    use std::io::Read;

    let (name, bytes) = match dockerfile {
        DockerfileSource::Path(path) => (path.display().to_string(), read_dockerfile(path)?),
        DockerfileSource::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the Dockerfile from standard input")?;
            ("<stdin>".to_owned(), bytes)
        }
        DockerfileSource::Generated { name, text, .. } => (name.clone(), text.clone().into_bytes()),
    };
    let ast = parse_dockerfile(&name, &bytes)?;
    let dockerfile = instructions::from_ast(&name, &ast)?;
    Ok(stages::resolve_with_contexts(
        dockerfile,
        build_args,
        target,
        platform,
        named_contexts,
    )?)
}
