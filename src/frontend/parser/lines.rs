//! From bytes to logical lines (FORMAT.md §4): physical lines and BuildKit's line-length
//! limit, line continuations, and the parser directives at the top of the file.

use super::text::{is_regex_space, lossy, trim_space_start};
use super::{Directives, ParseError};

/// `bufio.MaxScanTokenSize - 1`, the number BuildKit's error message names.
pub(super) const MAX_LINE_LEN: usize = 65535;

/// The part of `input` BuildKit's line scanner reads before it meets a line longer than its
/// buffer, and the 1-based number of that line. A line may hold 65536 bytes with its `\n`;
/// a last line without one at most 65535.
pub(super) fn readable_part(input: &[u8]) -> (&[u8], Option<usize>) {
    let mut start = 0;
    let mut number = 1;
    while let Some(rest) = input.get(start..).filter(|rest| !rest.is_empty()) {
        let (len, limit) = match rest.iter().position(|&b| b == b'\n') {
            Some(newline) => (newline + 1, MAX_LINE_LEN + 1),
            None => (rest.len(), MAX_LINE_LEN),
        };
        if len > limit {
            return (input.get(..start).unwrap_or_default(), Some(number));
        }
        start += len;
        number += 1;
    }
    (input, None)
}

/// Physical lines with their 1-based numbers, each with its `\n` when it has one.
pub(super) struct PhysicalLines<'a> {
    rest: &'a [u8],
    number: usize,
}

impl<'a> PhysicalLines<'a> {
    pub(super) fn new(input: &'a [u8]) -> Self {
        PhysicalLines {
            rest: input,
            number: 0,
        }
    }
}

impl<'a> Iterator for PhysicalLines<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let len = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.rest.len(), |newline| newline + 1);
        let (line, rest) = self.rest.split_at(len);
        self.rest = rest;
        self.number += 1;
        Some((self.number, line))
    }
}

/// BuildKit's `([^E])E[ \t]*$|^E[ \t]*$` → `$1`: a line ending in the escape character
/// (blanks after it allowed) continues, unless that escape is itself escaped. Returns the
/// line without it and whether the logical line ends here.
pub(super) fn trim_continuation(line: &[u8], escape: u8) -> (&[u8], bool) {
    let kept = line
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    let Some(without_escape) = line.get(..kept).and_then(|s| s.strip_suffix(&[escape])) else {
        return (line, true);
    };
    if without_escape.last() == Some(&escape) {
        return (line, true);
    }
    (without_escape, false)
}

/// The directive state machine: directives are read only until the first line that is not
/// one (FORMAT.md §4.1).
#[derive(Default)]
pub(super) struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
}

impl DirectiveParser {
    /// Looks at a left-trimmed line; returns whether it was a directive.
    pub(super) fn check(
        &mut self,
        line: &[u8],
        number: usize,
        directives: &mut Directives,
    ) -> Result<bool, ParseError> {
        if self.done {
            return Ok(false);
        }
        let Some((key, value)) = line.strip_prefix(b"#").and_then(|comment| {
            // `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` on the text after `#` and spaces.
            directive(trim_space_start(comment))
        }) else {
            self.done = true;
            return Ok(false);
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        let error = |message: String| ParseError {
            line: number,
            message,
        };
        if self.seen.contains(&key) {
            return Err(error(format!(
                "only one {key} parser directive can be used"
            )));
        }
        let value = lossy(value);
        match key.as_str() {
            "escape" => match value.as_str() {
                "\\" | "`" => directives.escape = value.chars().next().unwrap_or('\\'),
                _ => {
                    return Err(error(format!(
                        "invalid escape token '{value}' does not match ` or \\"
                    )));
                }
            },
            "syntax" => directives.syntax = Some((value, number)),
            _ => directives.check = Some(value),
        }
        self.seen.push(key);
        Ok(true)
    }
}

/// Matches `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` (Go RE2 semantics, `\s` without `\v`).
fn directive(text: &[u8]) -> Option<(String, &[u8])> {
    if !text.first()?.is_ascii_alphabetic() {
        return None;
    }
    let key_len = text
        .iter()
        .position(|b| !b.is_ascii_alphanumeric())
        .unwrap_or(text.len());
    let after_key = text.get(key_len..)?;
    let spaces = after_key
        .iter()
        .take_while(|&&b| is_regex_space(char::from(b)))
        .count();
    let after_equals = after_key.get(spaces..)?.strip_prefix(b"=")?;
    let start = after_equals
        .iter()
        .position(|&b| !is_regex_space(char::from(b)));
    let value = match start {
        Some(start) => {
            let end = after_equals
                .iter()
                .rposition(|&b| !is_regex_space(char::from(b)))
                .map_or(start, |i| i + 1);
            after_equals.get(start..end)?
        }
        // Only spaces after `=`: the lazy `(.+?)` still takes the last one.
        None => after_equals.get(after_equals.len().checked_sub(1)?..)?,
    };
    let key = String::from_utf8_lossy(text.get(..key_len)?).into_owned();
    Some((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_limit_is_bufio_scanner_buffer() {
        let line = |len: usize, newline: bool| {
            let mut v = vec![b'a'; len];
            if newline {
                v.push(b'\n');
            }
            v
        };
        let ok = [
            line(10, true),
            line(MAX_LINE_LEN, true),
            line(MAX_LINE_LEN, false),
        ]
        .concat();
        assert_eq!(readable_part(&ok), (&ok[..], None));
        let long = [line(10, true), line(MAX_LINE_LEN + 1, true), line(3, true)].concat();
        assert_eq!(readable_part(&long), (&long[..11], Some(2)));
        let long_last = [line(10, true), line(MAX_LINE_LEN + 1, false)].concat();
        assert_eq!(readable_part(&long_last), (&long_last[..11], Some(2)));
        assert_eq!(readable_part(b""), (&b""[..], None));
    }

    #[test]
    fn physical_lines_keep_their_newline() {
        let lines: Vec<_> = PhysicalLines::new(b"a\r\n\nb").collect();
        assert_eq!(lines, vec![(1, &b"a\r\n"[..]), (2, b"\n"), (3, b"b")]);
        assert_eq!(PhysicalLines::new(b"").count(), 0);
    }

    #[test]
    fn continuation_rules() {
        let t = |s: &str| {
            let (rest, end) = trim_continuation(s.as_bytes(), b'\\');
            (String::from_utf8_lossy(rest).into_owned(), end)
        };
        assert_eq!(t("foo \\"), ("foo ".into(), false));
        assert_eq!(t("foo \\ \t "), ("foo ".into(), false));
        assert_eq!(t("foo \\\\"), ("foo \\\\".into(), true));
        assert_eq!(t("foo \\\\\\"), ("foo \\\\\\".into(), true));
        assert_eq!(t("\\"), ("".into(), false));
        assert_eq!(t("\\  "), ("".into(), false));
        assert_eq!(t("foo \\\r"), ("foo \\\r".into(), true));
        assert_eq!(t("foo \\\x0C"), ("foo \\\x0C".into(), true));
        assert_eq!(t(""), ("".into(), true));
        assert_eq!(trim_continuation(b"a`", b'`'), (&b"a"[..], false));
        assert_eq!(trim_continuation(b"a\\", b'`'), (&b"a\\"[..], true));
    }

    #[test]
    fn directive_syntax() {
        let d = |s: &str| {
            directive(s.as_bytes()).map(|(k, v)| (k, String::from_utf8_lossy(v).into_owned()))
        };
        assert_eq!(d("escape=`"), Some(("escape".into(), "`".into())));
        assert_eq!(d("escape = ` \t"), Some(("escape".into(), "`".into())));
        assert_eq!(
            d("Syntax=docker/dockerfile:1 x "),
            Some(("Syntax".into(), "docker/dockerfile:1 x".into()))
        );
        assert_eq!(d("escape=  "), Some(("escape".into(), " ".into())));
        assert_eq!(d("escape=\x0B"), Some(("escape".into(), "\x0B".into())));
        assert_eq!(d("escape="), None);
        assert_eq!(d("1escape=`"), None);
        assert_eq!(d("esc ape=`"), None);
        assert_eq!(d("!/bin/sh"), None);
    }

    #[test]
    fn directive_state_machine() {
        let mut parser = DirectiveParser::default();
        let mut directives = Directives::default();
        assert!(parser.check(b"# syntax=a/b", 1, &mut directives).unwrap());
        assert!(
            parser
                .check(b"#CHECK = skip=all", 2, &mut directives)
                .unwrap()
        );
        assert!(parser.check(b"# escape=`", 3, &mut directives).unwrap());
        assert_eq!(
            parser
                .check(b"# escape=\\", 4, &mut directives)
                .unwrap_err(),
            ParseError {
                line: 4,
                message: "only one escape parser directive can be used".into()
            }
        );
        assert_eq!(directives.syntax, Some(("a/b".into(), 1)));
        assert_eq!(directives.check.as_deref(), Some("skip=all"));
        assert_eq!(directives.escape, '`');

        let mut parser = DirectiveParser::default();
        assert_eq!(
            parser
                .check(b"# escape=x", 1, &mut directives)
                .unwrap_err()
                .message,
            "invalid escape token 'x' does not match ` or \\"
        );
        let mut parser = DirectiveParser::default();
        assert!(!parser.check(b"# foo=bar", 1, &mut directives).unwrap());
        assert!(!parser.check(b"# escape=`", 2, &mut directives).unwrap());
        let mut parser = DirectiveParser::default();
        assert!(!parser.check(b"", 1, &mut directives).unwrap());
        assert!(!parser.check(b"# escape=`", 2, &mut directives).unwrap());
    }
}
