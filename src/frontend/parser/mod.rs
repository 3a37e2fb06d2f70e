//! Dockerfile text → AST, following BuildKit's parser exactly
//! (`conformance/buildkit-parser/FORMAT.md` is the specification).
//!
//! Values are kept as bytes: a Dockerfile may hold invalid UTF-8, and BuildKit's dump
//! shows such bytes as they are. The typed-instruction layer decides what to accept.
//!
//! * [`lines`]: physical lines, the line-length limit, continuations, directives (§4).
//! * [`instruction`]: one logical line → keyword, flags and arguments (§5–§7).
//! * [`json`]: the JSON form of arguments, as Go's `encoding/json` decides it (§6.2).
//! * [`heredoc`]: `<<EOF` detection with the shell lexer's rules (§8).
//! * [`dump`]: BuildKit's `Node.Dump()` (§2–§3).
//! * [`text`]: Go's UTF-8, whitespace, lower-casing and quoting rules used by all of them.
//!
//! Parsing is linear in the input and never panics, whatever the bytes.

mod dump;
mod heredoc;
mod instruction;
mod json;
mod lines;
mod text;

use instruction::{Positions, parse_instruction};
use lines::{DirectiveParser, MAX_LINE_LEN, PhysicalLines, readable_part, trim_continuation};
use text::{leading_space_len, lossy, trim_newline, trim_space, trim_space_start};

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
    /// The logical line after continuation joining. For ONBUILD's nested instruction, its
    /// own text; empty for an ONBUILD nested in another ONBUILD (which BuildKit rejects
    /// later anyway), so that a long chain stays linear to parse.
    pub original: Vec<u8>,
    /// 1-based line where the instruction starts.
    pub start_line: usize,
    /// 1-based line where it ends (after continuations and heredocs).
    pub end_line: usize,
    /// 1-based column of the keyword (on `start_line`, unless the line began with a bare
    /// continuation).
    pub column: usize,
    /// Comment lines directly above the instruction, without the `#` and trimmed. As in
    /// BuildKit, blank lines do not separate them, an empty `#` line clears them, and parser
    /// directives are not comments.
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

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a Dockerfile. Never panics, whatever the bytes.
pub fn parse(input: &[u8]) -> Result<Ast, ParseError> {
    // BuildKit stops reading at the first line longer than its scanner's buffer, as if the
    // file ended there; errors in the lines before it still win.
    let (readable, too_long_line) = readable_part(input);
    let ast = Parser::default().parse(readable)?;
    match too_long_line {
        Some(line) => Err(ParseError {
            line,
            message: format!("dockerfile line greater than max allowed size of {MAX_LINE_LEN}"),
        }),
        None => Ok(ast),
    }
}

#[derive(Default)]
struct Parser {
    ast: Ast,
    directive_parser: DirectiveParser,
    comments: Vec<String>,
}

/// A logical line being assembled: its text and where each piece came from.
struct LogicalLine {
    text: Vec<u8>,
    /// `(offset in text, physical line, column of that offset)`.
    segments: Vec<(usize, usize, usize)>,
}

impl LogicalLine {
    fn push(&mut self, piece: &[u8], line: usize, column: usize) {
        self.segments.push((self.text.len(), line, column));
        self.text.extend_from_slice(piece);
    }
}

impl Parser {
    fn parse(mut self, input: &[u8]) -> Result<Ast, ParseError> {
        let mut lines = PhysicalLines::new(input);
        while let Some((number, raw)) = lines.next() {
            let raw = if number == 1 {
                raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
            } else {
                raw
            };
            let line = trim_newline(raw);
            let indent = leading_space_len(line);
            let trimmed = line.get(indent..).unwrap_or_default();
            let is_comment = trimmed.first() == Some(&b'#');
            if is_comment {
                self.note_comment(trimmed);
            }
            if self
                .directive_parser
                .check(trimmed, number, &mut self.ast.directives)?
            {
                // A directive is not a comment about the first instruction.
                self.comments.pop();
            }
            let escape = self.escape();
            let (first, mut ended) =
                trim_continuation(if is_comment { &[] } else { trimmed }, escape);
            if ended && first.is_empty() {
                continue;
            }

            let start_line = number;
            let mut end_line = number;
            let mut logical = LogicalLine {
                text: Vec::new(),
                segments: Vec::new(),
            };
            let indent_columns = text::go_chars(line.get(..indent).unwrap_or_default()).count();
            logical.push(first, number, 1 + indent_columns);
            let mut empty_continuation = false;
            while !ended {
                let Some((number, raw)) = lines.next() else {
                    break;
                };
                end_line = number;
                if trim_space_start(raw).first() == Some(&b'#') {
                    continue;
                }
                let line = trim_newline(raw);
                if trim_space_start(line).is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (piece, end) = trim_continuation(line, escape);
                ended = end;
                logical.push(piece, number, 1);
            }
            if empty_continuation {
                self.ast.warnings.push(Warning {
                    line: end_line,
                    message: format!("Empty continuation line found in: {}", lossy(&logical.text)),
                });
            }

            let positions = Positions {
                line: &logical.text,
                segments: &logical.segments,
            };
            let error = |message: String| ParseError {
                line: start_line,
                message,
            };
            let mut node =
                parse_instruction(&logical.text, 0, escape, &positions, 0).map_err(error)?;
            if can_contain_heredoc(&node) && logical.text.windows(2).any(|w| w == b"<<") {
                for word in heredoc::heredocs_in_line(&logical.text).map_err(error)? {
                    let mut body = Heredoc {
                        name: word.name,
                        content: Vec::new(),
                        expand: word.expand,
                        chomp: word.chomp,
                    };
                    loop {
                        let Some((number, raw)) = lines.next() else {
                            return Err(error("unterminated heredoc".into()));
                        };
                        end_line = number;
                        let mut candidate = trim_newline(raw);
                        if body.chomp {
                            let tabs = candidate.iter().take_while(|&&b| b == b'\t').count();
                            candidate = candidate.get(tabs..).unwrap_or_default();
                        }
                        if candidate == body.name.as_bytes() {
                            break;
                        }
                        body.content.extend_from_slice(raw);
                    }
                    node.heredocs.push(body);
                }
            }

            node.start_line = start_line;
            node.end_line = end_line;
            node.original = logical.text;
            node.comments = std::mem::take(&mut self.comments);
            let mut nested = node.next.as_deref_mut();
            while let Some(inner) = nested {
                inner.end_line = end_line;
                nested = inner.next.as_deref_mut();
            }
            self.ast.nodes.push(node);
        }
        if self.ast.nodes.is_empty() {
            return Err(ParseError {
                line: 0,
                message: "file with no instructions".into(),
            });
        }
        Ok(self.ast)
    }

    fn escape(&self) -> u8 {
        // The directive parser only ever sets `\` or `` ` ``.
        if self.ast.directives.escape == '`' {
            b'`'
        } else {
            b'\\'
        }
    }

    /// A top-level comment line (`trimmed` starts with `#`).
    fn note_comment(&mut self, trimmed: &[u8]) {
        let comment = trim_space(trimmed.get(1..).unwrap_or_default());
        if comment.is_empty() {
            self.comments.clear();
        } else {
            self.comments.push(lossy(comment));
        }
    }
}

/// RUN, COPY and ADD in shell form (also as ONBUILD's trigger) may announce heredocs.
fn can_contain_heredoc(node: &Node) -> bool {
    let node = match &node.next {
        Some(nested) if node.keyword == "onbuild" => nested,
        _ => node,
    };
    matches!(node.keyword.as_str(), "run" | "copy" | "add") && !node.json
}

#[cfg(test)]
mod tests;
