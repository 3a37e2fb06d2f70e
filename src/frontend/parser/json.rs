//! The JSON form of `RUN ["a", "b"]`, decided the way BuildKit's `json.Unmarshal` into
//! `[]interface{}` decides it (FORMAT.md §6.2).
//!
//! Written by hand rather than with serde_json because Go's decoder differs where the
//! outcome is visible: lone surrogate escapes and invalid UTF-8 become U+FFFD instead of
//! errors, nesting may go 10000 deep, and a number that overflows float64 anywhere turns the
//! whole text back into shell form.

use super::text::{GoChar, decode};

/// What the arguments of a JSON-capable instruction turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum JsonArgs {
    /// Not JSON as far as BuildKit is concerned: parse the text in shell form.
    NotJson,
    /// A JSON array of strings, decoded.
    Strings(Vec<Vec<u8>>),
    /// Valid JSON holding something else than strings: a fatal error in BuildKit.
    NotStrings,
}

/// Go's `encoding/json` scanner limit (`maxNestingDepth`).
const MAX_DEPTH: usize = 10_000;

/// Parses `text` (which starts with `[`) as one JSON document.
pub(super) fn parse_array(text: &[u8]) -> JsonArgs {
    let mut scanner = Scanner {
        text,
        pos: 0,
        strings: Vec::new(),
        non_string: false,
        overflow: false,
    };
    match scanner.document() {
        Some(()) if scanner.overflow => JsonArgs::NotJson,
        Some(()) if scanner.non_string => JsonArgs::NotStrings,
        Some(()) => JsonArgs::Strings(scanner.strings),
        None => JsonArgs::NotJson,
    }
}

struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    /// The decoded strings that are direct elements of the outer array.
    strings: Vec<Vec<u8>>,
    /// Some direct element of the outer array is not a string.
    non_string: bool,
    /// Some number anywhere overflows float64 (Go then fails with a type error).
    overflow: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Want {
    /// Just after `[`: a value or `]`.
    FirstElement,
    Value,
    /// Just after `{`: a key or `}`.
    FirstKey,
    Key,
    Colon,
    AfterValue,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Validates the whole text; `None` on any syntax error. Iterative, so any depth of
    /// nesting costs no stack.
    fn document(&mut self) -> Option<()> {
        // `true` for an object, `false` for an array.
        let mut stack: Vec<bool> = Vec::new();
        let mut want = Want::Value;
        loop {
            self.skip_whitespace();
            match want {
                Want::FirstElement | Want::Value => {
                    if want == Want::FirstElement && self.peek() == Some(b']') {
                        self.pos += 1;
                        stack.pop();
                        want = Want::AfterValue;
                        continue;
                    }
                    let direct_element = stack.len() == 1 && stack.first() == Some(&false);
                    match self.peek()? {
                        open @ (b'[' | b'{') => {
                            self.pos += 1;
                            stack.push(open == b'{');
                            if stack.len() > MAX_DEPTH {
                                return None;
                            }
                            self.non_string |= direct_element;
                            want = if open == b'{' {
                                Want::FirstKey
                            } else {
                                Want::FirstElement
                            };
                            continue;
                        }
                        b'"' => {
                            let decoded = self.string(direct_element)?;
                            if direct_element {
                                self.strings.push(decoded);
                            }
                        }
                        b'-' | b'0'..=b'9' => {
                            self.number()?;
                            self.non_string |= direct_element;
                        }
                        _ => {
                            self.literal()?;
                            self.non_string |= direct_element;
                        }
                    }
                    want = Want::AfterValue;
                }
                Want::FirstKey | Want::Key => {
                    if want == Want::FirstKey && self.peek() == Some(b'}') {
                        self.pos += 1;
                        stack.pop();
                        want = Want::AfterValue;
                        continue;
                    }
                    if self.peek()? != b'"' {
                        return None;
                    }
                    self.string(false)?;
                    want = Want::Colon;
                }
                Want::Colon => {
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.pos += 1;
                    want = Want::Value;
                }
                Want::AfterValue => {
                    let Some(&is_object) = stack.last() else {
                        // The outer array is closed: only whitespace may follow.
                        return (self.pos == self.text.len()).then_some(());
                    };
                    match (self.peek()?, is_object) {
                        (b',', true) => want = Want::Key,
                        (b',', false) => want = Want::Value,
                        (b']', false) | (b'}', true) => {
                            stack.pop();
                        }
                        _ => return None,
                    }
                    self.pos += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> Option<()> {
        let rest = self.text.get(self.pos..)?;
        let word: &[u8] = [&b"true"[..], b"false", b"null"]
            .into_iter()
            .find(|word| rest.starts_with(word))?;
        self.pos += word.len();
        Some(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, noting float64 overflow.
    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        let text = std::str::from_utf8(self.text.get(start..self.pos)?).ok()?;
        // Go's ParseFloat fails only on overflow (±Inf); underflow quietly gives 0.
        if !matches!(text.parse::<f64>(), Ok(value) if value.is_finite()) {
            self.overflow = true;
        }
        Some(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }

    /// Scans a string starting at `"`; decodes it when `decode_it` (else returns empty).
    fn string(&mut self, decode_it: bool) -> Option<Vec<u8>> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            match b {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                0x00..=0x1F => return None,
                b'\\' => {
                    let escaped = *self.text.get(self.pos + 1)?;
                    self.pos += 2;
                    let c = match escaped {
                        b'"' | b'\\' | b'/' => char::from(escaped),
                        b'b' => '\x08',
                        b'f' => '\x0C',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    if decode_it {
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                }
                _ => {
                    let (c, width) = decode(self.text.get(self.pos..)?)?;
                    if decode_it {
                        match c {
                            GoChar::Valid(_) => {
                                out.extend_from_slice(self.text.get(self.pos..self.pos + width)?)
                            }
                            GoChar::Invalid(_) => out.extend_from_slice("\u{FFFD}".as_bytes()),
                        }
                    }
                    self.pos += width;
                }
            }
        }
    }

    /// After `\u`: four hex digits, and a second `\uXXXX` when they make a surrogate pair.
    /// A lone surrogate becomes U+FFFD, as Go's decoder does.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4(self.pos)?;
        self.pos += 4;
        if !(0xD800..0xE000).contains(&first) {
            return char::from_u32(first);
        }
        let second = match self.text.get(self.pos..self.pos + 2) {
            Some(b"\\u") => self.hex4(self.pos + 2),
            _ => None,
        };
        match second {
            Some(second)
                if (0xD800..0xDC00).contains(&first) && (0xDC00..0xE000).contains(&second) =>
            {
                self.pos += 6;
                char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
            }
            _ => Some(char::REPLACEMENT_CHARACTER),
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.text.get(at..at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(text, 16).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::JsonArgs::*;
    use super::*;

    fn strings(items: &[&str]) -> JsonArgs {
        Strings(items.iter().map(|s| s.as_bytes().to_vec()).collect())
    }

    #[test]
    fn arrays_of_strings_are_decoded() {
        assert_eq!(parse_array(b"[]"), strings(&[]));
        assert_eq!(parse_array(b"[\"\"]"), strings(&[""]));
        assert_eq!(parse_array(b"[ \"a\",\t\"b\" ]\r\n"), strings(&["a", "b"]));
        assert_eq!(
            parse_array(br#"["\" \\ \/ \b \f \n \r \t \u0000 \u00e9"]"#),
            strings(&["\" \\ / \x08 \x0C \n \r \t \0 é"])
        );
        assert_eq!(parse_array("[\"♥\"]".as_bytes()), strings(&["♥"]));
    }

    #[test]
    fn surrogates_and_invalid_bytes_become_replacement_characters() {
        assert_eq!(
            parse_array(br#"["\ud83d\ude00", "\ud800x", "\udc00\ud800"]"#),
            strings(&["😀", "\u{FFFD}x", "\u{FFFD}\u{FFFD}"])
        );
        assert_eq!(parse_array(b"[\"a\xFFb\"]"), strings(&["a\u{FFFD}b"]));
    }

    #[test]
    fn syntax_errors_mean_shell_form() {
        for text in [
            &b"[\"a\",]"[..],
            b"[\"a\"] [\"b\"]",
            b"['a']",
            b"[\"a\"",
            b"[\"a",
            b"[",
            b"[\"a\tb\"]",
            b"[\"\\x\"]",
            b"[NaN]",
            b"[01]",
            b"[1.]",
            b"[-]",
            b"[1e]",
            b"[\"\\u12\"]",
            b"[\"a\"\x0B]",
            b"[{\"a\" 1}]",
            b"[{1:2}]",
            b"[tru]",
        ] {
            assert_eq!(
                parse_array(text),
                NotJson,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn other_values_are_an_error_unless_a_number_overflows() {
        for text in [
            &b"[1]"[..],
            b"[\"a\", 1]",
            b"[true]",
            b"[null]",
            b"[[\"a\"]]",
            b"[{}]",
            b"[{\"a\": [1, {\"b\": null}]}]",
            b"[-0.5e-999]",
        ] {
            assert_eq!(
                parse_array(text),
                NotStrings,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        // Go's decoder reports the overflow instead, and BuildKit falls back to shell form.
        assert_eq!(parse_array(b"[1e999]"), NotJson);
        assert_eq!(parse_array(b"[\"a\", [1, -1E400]]"), NotJson);
        assert_eq!(parse_array(b"[1.7976931348623157e308]"), NotStrings);
    }

    #[test]
    fn nesting_is_limited_like_go() {
        let nested = |depth: usize| {
            let mut text = "[".repeat(depth).into_bytes();
            text.extend("]".repeat(depth).bytes());
            text
        };
        assert_eq!(parse_array(&nested(10_000)), NotStrings);
        assert_eq!(parse_array(&nested(10_001)), NotJson);
        assert_eq!(parse_array(&nested(1_000_000)), NotJson);
    }
}
