//! Dockerfile text → AST, following BuildKit's parser exactly
//! (`conformance/buildkit-parser/FORMAT.md` is the specification).
//!
//! Values are kept as bytes: a Dockerfile may hold invalid UTF-8, and BuildKit's dump
//! shows such bytes as they are. The typed-instruction layer decides what to accept.

/// One instruction of the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// The keyword, lower-cased as BuildKit does (`run`, `copy`, an unknown `runn`).
    pub keyword: String,
    /// The keyword as written (`RUN`, `Run`), for error messages.
    pub keyword_original: String,
    /// `--flag=value` words, unquoted as BuildKit's flag extraction does.
    pub flags: Vec<Vec<u8>>,
    /// The arguments as BuildKit's per-instruction rule splits them (ENV/LABEL: key, value,
    /// separator triples).
    pub args: Vec<Vec<u8>>,
    /// ONBUILD's nested instruction.
    pub next: Option<Box<Node>>,
    /// The arguments came from a JSON array (`CMD ["a", "b"]`).
    pub json: bool,
    /// Heredoc bodies attached to this instruction, in order.
    pub heredocs: Vec<Heredoc>,
    /// The logical line after continuation joining.
    pub original: Vec<u8>,
    /// 1-based line where the instruction starts.
    pub start_line: usize,
    /// 1-based line where it ends (after continuations and heredocs).
    pub end_line: usize,
    /// 1-based column of the keyword.
    pub column: usize,
    /// Comment lines directly above the instruction, without the `#`.
    pub comments: Vec<String>,
}

/// A heredoc body (`<<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heredoc {
    /// The terminator word, e.g. `EOF`.
    pub name: String,
    /// The body, each line with its `\n`.
    pub content: Vec<u8>,
    /// Whether `$VAR`s in the body are expanded (the name was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body.
    pub chomp: bool,
}

/// Parser directives from the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=…` and its 1-based line.
    pub syntax: Option<(String, usize)>,
    /// `# escape=…`: `\` or `` ` ``.
    pub escape: char,
    /// `# check=…`.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// Something the parser accepts but a person should hear about (BuildKit prints these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ast {
    pub nodes: Vec<Node>,
    pub directives: Directives,
    pub warnings: Vec<Warning>,
}

/// Why the parser rejected a file. `line` is 1-based, 0 when the error has no line
/// (an empty file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses a Dockerfile. Never panics, whatever the bytes.
pub fn parse(_input: &[u8]) -> Result<Ast, ParseError> {
    Err(ParseError {
        line: 0,
        message: "the Dockerfile parser is not written yet".into(),
    })
}

impl Ast {
    /// BuildKit's `Node.Dump()` of every instruction, one line each, ending in `\n`.
    pub fn dump(&self) -> String {
        String::new()
    }
}
