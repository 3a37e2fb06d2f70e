//! Go's text primitives, as BuildKit's grammar is defined in terms of them: UTF-8 decoding
//! where each invalid byte reads as U+FFFD, `unicode.IsSpace`, `strings.TrimSpace`,
//! `strings.ToLower` and `strconv.Quote`.
//!
//! Written by hand because Rust's own versions differ exactly where BuildKit's output is
//! observable: `String::from_utf8_lossy` replaces a truncated sequence with one U+FFFD where
//! Go yields one per byte, `str::to_lowercase` maps `İ` to two characters, and `{:?}`
//! escapes differently from `strconv.Quote`.

use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// One character as Go's `utf8.DecodeRune` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GoChar {
    Valid(char),
    /// A byte that does not start a valid UTF-8 sequence; Go reads it as U+FFFD of width 1.
    Invalid(u8),
}

impl GoChar {
    /// The character Go's `range` loop sees.
    pub(super) fn char(self) -> char {
        match self {
            GoChar::Valid(c) => c,
            GoChar::Invalid(_) => char::REPLACEMENT_CHARACTER,
        }
    }
}

/// Decodes the first character of `bytes` as Go does, with its width in bytes.
pub(super) fn decode(bytes: &[u8]) -> Option<(GoChar, usize)> {
    let first = *bytes.first()?;
    if first.is_ascii() {
        return Some((GoChar::Valid(char::from(first)), 1));
    }
    let window = bytes.get(..bytes.len().min(4)).unwrap_or(bytes);
    let valid = match std::str::from_utf8(window) {
        Ok(s) => s,
        Err(e) => window
            .get(..e.valid_up_to())
            .and_then(|prefix| std::str::from_utf8(prefix).ok())
            .unwrap_or(""),
    };
    match valid.chars().next() {
        Some(c) => Some((GoChar::Valid(c), c.len_utf8())),
        None => Some((GoChar::Invalid(first), 1)),
    }
}

/// Decodes the last character of `bytes` as Go's `utf8.DecodeLastRune` does.
pub(super) fn decode_last(bytes: &[u8]) -> Option<(GoChar, usize)> {
    let last = *bytes.last()?;
    if last.is_ascii() {
        return Some((GoChar::Valid(char::from(last)), 1));
    }
    let end = bytes.len();
    let start = (end.saturating_sub(4)..end)
        .rev()
        .find(|&i| bytes.get(i).is_some_and(|b| b & 0xC0 != 0x80))
        .unwrap_or(end - 1);
    match bytes.get(start..).and_then(decode) {
        Some((GoChar::Valid(c), width)) if start + width == end => Some((GoChar::Valid(c), width)),
        _ => Some((GoChar::Invalid(last), 1)),
    }
}

/// Iterates over `bytes` as Go's `for _, r := range s` does, with byte offsets.
pub(super) fn go_chars(bytes: &[u8]) -> impl Iterator<Item = (usize, GoChar, usize)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let (c, width) = decode(bytes.get(pos..)?)?;
        let at = pos;
        pos += width;
        Some((at, c, width))
    })
}

/// Go's `unicode.IsSpace` ("U-space" in FORMAT.md).
pub(super) fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// `unicode.IsSpace(rune(b))` applied to one byte ("B-space"): 0x85 and 0xA0 count even
/// inside a UTF-8 sequence.
pub(super) fn is_byte_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ' | 0x85 | 0xA0)
}

/// Go regexp `[\t\v\f\r ]` ("R-space"): what separates an instruction from its arguments.
pub(super) fn is_token_space(b: u8) -> bool {
    matches!(b, b'\t' | 0x0B | 0x0C | b'\r' | b' ')
}

/// Go regexp `\s` ("S-space"): no `\v`.
pub(super) fn is_regex_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0C' | '\r' | ' ')
}

/// `bytes.TrimLeftFunc(s, unicode.IsSpace)`.
pub(super) fn trim_space_start(mut s: &[u8]) -> &[u8] {
    while let Some((c, width)) = decode(s) {
        if !is_space(c.char()) || matches!(c, GoChar::Invalid(_)) {
            break;
        }
        s = s.get(width..).unwrap_or_default();
    }
    s
}

/// `bytes.TrimRightFunc(s, unicode.IsSpace)`.
pub(super) fn trim_space_end(mut s: &[u8]) -> &[u8] {
    while let Some((GoChar::Valid(c), width)) = decode_last(s) {
        if !is_space(c) {
            break;
        }
        s = s.get(..s.len() - width).unwrap_or_default();
    }
    s
}

/// `strings.TrimSpace`.
pub(super) fn trim_space(s: &[u8]) -> &[u8] {
    trim_space_end(trim_space_start(s))
}

/// Offset of the first character that is not U-space (`s.len()` when there is none).
pub(super) fn leading_space_len(s: &[u8]) -> usize {
    s.len() - trim_space_start(s).len()
}

/// `bytes.TrimRight(s, "\r\n")`.
pub(super) fn trim_newline(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|&b| b != b'\r' && b != b'\n')
        .map_or(0, |i| i + 1);
    s.get(..end).unwrap_or_default()
}

/// Go's `strings.ToLower`: simple one-to-one case mapping, invalid bytes become U+FFFD.
pub(super) fn to_lower(s: &[u8]) -> String {
    go_chars(s)
        .map(|(_, c, _)| match c {
            // Rust's full mapping gives "i\u{307}"; Go's simple mapping gives "i".
            GoChar::Valid(c) => c.to_lowercase().next().unwrap_or(c),
            GoChar::Invalid(_) => char::REPLACEMENT_CHARACTER,
        })
        .collect()
}

/// `string(bytes)` shown to a person: invalid bytes become U+FFFD the way Go decodes them.
pub(super) fn lossy(s: &[u8]) -> String {
    go_chars(s).map(|(_, c, _)| c.char()).collect()
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and U+0020.
pub(super) fn is_print(c: char) -> bool {
    c == ' '
        || matches!(
            c.general_category_group(),
            GeneralCategoryGroup::Letter
                | GeneralCategoryGroup::Mark
                | GeneralCategoryGroup::Number
                | GeneralCategoryGroup::Punctuation
                | GeneralCategoryGroup::Symbol
        )
}

/// Go's `unicode.IsLetter` (category L).
pub(super) fn is_letter(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Letter
}

/// Go's `unicode.IsDigit` (category Nd).
pub(super) fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || c.general_category() == GeneralCategory::DecimalNumber
}

/// Appends Go's `strconv.Quote(s)` to `out`.
pub(super) fn quote_into(out: &mut String, s: &[u8]) {
    out.push('"');
    for (_, c, _) in go_chars(s) {
        let c = match c {
            GoChar::Invalid(b) => {
                push_hex(out, "\\x", u32::from(b), 2);
                continue;
            }
            GoChar::Valid(c) => c,
        };
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_print(c) => out.push(c),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0C' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0B' => out.push_str("\\v"),
            c if c < ' ' || c == '\x7F' => push_hex(out, "\\x", u32::from(c), 2),
            c if u32::from(c) <= 0xFFFF => push_hex(out, "\\u", u32::from(c), 4),
            c => push_hex(out, "\\U", u32::from(c), 8),
        }
    }
    out.push('"');
}

/// Go's `strconv.Quote(s)`.
pub(super) fn quote(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quote_into(&mut out, s);
    out
}

fn push_hex(out: &mut String, prefix: &str, value: u32, digits: usize) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(out, "{prefix}{value:0digits$x}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_reads_each_invalid_byte_as_one_replacement() {
        // A truncated 3-byte sequence: Go yields one U+FFFD per byte, unlike from_utf8_lossy.
        let chars: Vec<GoChar> = go_chars(b"\xE2\x82A").map(|(_, c, _)| c).collect();
        assert_eq!(
            chars,
            vec![
                GoChar::Invalid(0xE2),
                GoChar::Invalid(0x82),
                GoChar::Valid('A')
            ]
        );
        // Surrogates encoded in UTF-8 are invalid, byte by byte.
        assert_eq!(go_chars(b"\xED\xA0\x80").count(), 3);
        assert_eq!(lossy("é\u{FFFD}".as_bytes()), "é\u{FFFD}");
        assert_eq!(lossy(b"a\xFFb"), "a\u{FFFD}b");
    }

    #[test]
    fn decoding_the_last_character() {
        assert_eq!(decode_last("aé".as_bytes()), Some((GoChar::Valid('é'), 2)));
        assert_eq!(decode_last(b"a\xC3"), Some((GoChar::Invalid(0xC3), 1)));
        assert_eq!(
            decode_last(b"\x80\x80\x80\x80\x80"),
            Some((GoChar::Invalid(0x80), 1))
        );
        assert_eq!(decode_last(b""), None);
    }

    #[test]
    fn trim_space_uses_unicode_spaces_but_not_invalid_bytes() {
        assert_eq!(trim_space(" \u{85}\u{3000}x\u{A0}\t".as_bytes()), b"x");
        // A lone 0x85 byte is invalid UTF-8, not NEL.
        assert_eq!(trim_space(b"\x85x\x85"), b"\x85x\x85");
        assert_eq!(trim_space(b"   "), b"");
        assert_eq!(trim_newline(b"x\r\r\n\n"), b"x");
        assert_eq!(trim_newline(b"\r\n"), b"");
    }

    #[test]
    fn lower_case_is_go_simple_mapping() {
        assert_eq!(to_lower("ONBUİLD".as_bytes()), "onbuild");
        assert_eq!(to_lower("HEALTHCHEC\u{212A}".as_bytes()), "healthcheck");
        assert_eq!(to_lower(b"\xFFFOO"), "\u{FFFD}foo");
        assert_eq!(to_lower("ΣΑΣ".as_bytes()), "σασ");
    }

    #[test]
    fn quote_matches_go_strconv_quote() {
        assert_eq!(quote(b"plain"), r#""plain""#);
        assert_eq!(quote(br#"a"b\c'd"#), r#""a\"b\\c'd""#);
        assert_eq!(quote(b"\x07\x08\x0C\n\r\t\x0B"), r#""\a\b\f\n\r\t\v""#);
        assert_eq!(quote(b"a\x01b\x7Fc\x00d"), r#""a\x01b\x7fc\x00d""#);
        assert_eq!(quote(b"\xFF\xC3 ok"), r#""\xff\xc3 ok""#);
        assert_eq!(
            quote("é ♥ ☃ 😀 \u{FFFD} 中".as_bytes()),
            "\"é ♥ ☃ 😀 \u{FFFD} 中\""
        );
        assert_eq!(
            quote("\u{A0}\u{AD}\u{200B}\u{3000}\u{FEFF}\u{2028}".as_bytes()),
            r#""\u00a0\u00ad\u200b\u3000\ufeff\u2028""#
        );
        // Private use and unassigned code points above the BMP.
        assert_eq!(
            quote("\u{F0000}\u{E0001}".as_bytes()),
            r#""\U000f0000\U000e0001""#
        );
        assert_eq!(quote("\u{10FFFF}".as_bytes()), r#""\U0010ffff""#);
    }

    #[test]
    fn printable_follows_unicode_17_categories() {
        assert!(is_print('a') && is_print('\u{0301}') && is_print('٣') && is_print('€'));
        assert!(!is_print('\u{A0}') && !is_print('\u{2028}') && !is_print('\u{E000}'));
        // U+0897 ARABIC PEPET was added in Unicode 16, U+20C1 SAUDI RIYAL SIGN in Unicode 17.
        assert!(is_print('\u{0897}'));
        assert!(is_print('\u{20C1}'));
        assert_eq!(unicode_properties::UNICODE_VERSION, (17, 0, 0));
    }

    #[test]
    fn space_classes() {
        assert!(is_byte_space(0x85) && is_byte_space(0xA0) && is_byte_space(b'\x0B'));
        assert!(!is_token_space(0x85) && is_token_space(0x0B) && !is_token_space(b'\n'));
        assert!(is_regex_space('\n') && !is_regex_space('\x0B'));
        for c in ['\u{1680}', '\u{2000}', '\u{200A}', '\u{202F}', '\u{205F}'] {
            assert!(is_space(c));
        }
        assert!(!is_space('\u{200B}') && !is_space('\u{FEFF}') && !is_space('\u{1C}'));
    }
}
