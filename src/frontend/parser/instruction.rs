//! One logical line → one [`Node`]: keyword, flags, and the arguments as each instruction's
//! rule splits them (FORMAT.md §5–§7).

use super::Node;
use super::json::{JsonArgs, parse_array};
use super::text::{
    go_chars, is_byte_space, is_space, is_token_space, leading_space_len, lossy, quote, to_lower,
    trim_space, trim_space_start,
};

/// How deep `ONBUILD ONBUILD …` may nest. BuildKit's parser has no limit, but its next stage
/// rejects any chaining; the limit keeps the recursive [`Node`] cheap to drop, clone and
/// dump, whatever the input.
pub(super) const MAX_ONBUILD_DEPTH: usize = 64;

pub(super) const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

/// Where each byte of a logical line came from, for line and column numbers.
pub(super) struct Positions<'a> {
    pub(super) line: &'a [u8],
    /// `(offset in line, physical line, column of that offset)`, in order.
    pub(super) segments: &'a [(usize, usize, usize)],
}

impl Positions<'_> {
    /// 1-based physical line and column of `offset` in the logical line.
    pub(super) fn at(&self, offset: usize) -> (usize, usize) {
        let index = self
            .segments
            .partition_point(|&(start, _, _)| start <= offset);
        let Some(&(start, line, column)) = index.checked_sub(1).and_then(|i| self.segments.get(i))
        else {
            return (0, 0);
        };
        let before = self.line.get(start..offset).unwrap_or_default();
        (line, column + go_chars(before).count())
    }
}

/// Parses the logical line `line`, which starts at `offset` of the whole logical line.
pub(super) fn parse_instruction(
    line: &[u8],
    offset: usize,
    escape: u8,
    positions: &Positions,
    depth: usize,
) -> Result<Node, String> {
    let start = leading_space_len(line);
    let text = trim_space(line);
    let name_len = text
        .iter()
        .position(|&b| is_token_space(b))
        .unwrap_or(text.len());
    let name = text.get(..name_len).unwrap_or_default();
    let mut flags = Vec::new();
    let mut args: &[u8] = &[];
    let mut args_offset = offset + start + text.len();
    if name_len < text.len() {
        let spaces = text
            .get(name_len..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| is_token_space(b))
            .count();
        let remainder_at = name_len + spaces;
        let remainder = text.get(remainder_at..).unwrap_or_default();
        let (rest_at, extracted) = extract_flags(remainder, escape);
        flags = extracted;
        let rest = remainder.get(rest_at..).unwrap_or_default();
        args_offset = offset + start + remainder_at + rest_at + leading_space_len(rest);
        args = trim_space(rest);
    }

    let keyword = to_lower(name);
    let (start_line, column) = positions.at(offset + start);
    let mut node = Node {
        keyword_original: lossy(name),
        flags,
        start_line,
        column,
        ..Node::default()
    };
    match keyword.as_str() {
        "from" | "expose" => node.args = split_on_token_space(args),
        "add" | "copy" | "volume" => {
            json_or(args, &mut node, split_on_token_space)?;
        }
        "run" | "cmd" | "entrypoint" | "shell" => {
            if !args.is_empty() {
                json_or(args, &mut node, |args| vec![args.to_vec()])?;
            }
        }
        "healthcheck" => healthcheck(args, &mut node)?,
        "env" => node.args = key_values(args, "ENV", escape)?,
        "label" => node.args = key_values(args, "LABEL", escape)?,
        "arg" => node.args = parse_words(args, escape),
        "maintainer" | "user" | "workdir" | "stopsignal" => {
            if !args.is_empty() {
                node.args = vec![args.to_vec()];
            }
        }
        "onbuild" => {
            if !args.is_empty() {
                if depth >= MAX_ONBUILD_DEPTH {
                    return Err(format!(
                        "ONBUILD nested more than {MAX_ONBUILD_DEPTH} levels deep; chaining \
                         ONBUILD via `ONBUILD ONBUILD` isn't allowed"
                    ));
                }
                let mut nested =
                    parse_instruction(args, args_offset, escape, positions, depth + 1)?;
                // Copying the text at every level would make `ONBUILD ONBUILD …` quadratic;
                // only the trigger of a plain ONBUILD keeps its own text.
                if depth == 0 {
                    nested.original = args.to_vec();
                }
                node.next = Some(Box::new(nested));
            }
        }
        // Unknown instructions are BuildKit's next stage's business: one empty argument.
        _ => node.args = vec![Vec::new()],
    }
    node.keyword = keyword;
    Ok(node)
}

/// JSON array of strings → its elements; other JSON → error; not JSON → `shell_form`.
fn json_or(
    args: &[u8],
    node: &mut Node,
    shell_form: impl FnOnce(&[u8]) -> Vec<Vec<u8>>,
) -> Result<(), String> {
    let json_text = trim_space_start(args);
    if json_text.first() == Some(&b'[') {
        match parse_array(json_text) {
            JsonArgs::Strings(strings) => {
                node.args.extend(strings);
                node.json = true;
                return Ok(());
            }
            JsonArgs::NotStrings => return Err(NOT_STRING_ARRAY.into()),
            JsonArgs::NotJson => {}
        }
    }
    node.args.extend(shell_form(args));
    Ok(())
}

/// `args` split on runs of `[\t\v\f\r ]`; nothing when empty.
fn split_on_token_space(args: &[u8]) -> Vec<Vec<u8>> {
    args.split(|&b| is_token_space(b))
        .filter(|word| !word.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// `HEALTHCHECK TYPE cmd…`: the type is cut byte by byte at the first B-space byte.
fn healthcheck(args: &[u8], node: &mut Node) -> Result<(), String> {
    let type_len = args
        .iter()
        .position(|&b| is_byte_space(b))
        .unwrap_or(args.len());
    if type_len == 0 {
        return Ok(());
    }
    let spaces = args
        .get(type_len..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&b| is_byte_space(b))
        .count();
    node.args
        .push(args.get(..type_len).unwrap_or_default().to_vec());
    let command = args.get(type_len + spaces..).unwrap_or_default();
    if !command.is_empty() {
        json_or(command, node, |command| vec![command.to_vec()])?;
    }
    Ok(())
}

/// ENV and LABEL: `key value` (legacy) or `key=value …`, as (key, value, separator) triples.
fn key_values(args: &[u8], instruction: &str, escape: u8) -> Result<Vec<Vec<u8>>, String> {
    let words = parse_words(args, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains(&b'=') {
        let Some(key_len) = args.iter().position(|&b| is_token_space(b)) else {
            return Err(format!("{instruction} must have two arguments"));
        };
        let spaces = args
            .get(key_len..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| is_token_space(b))
            .count();
        return Ok(vec![
            args.get(..key_len).unwrap_or_default().to_vec(),
            args.get(key_len + spaces..).unwrap_or_default().to_vec(),
            Vec::new(),
        ]);
    }
    let mut triples = Vec::with_capacity(words.len() * 3);
    for word in words {
        let Some(equals) = word.iter().position(|&b| b == b'=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                quote(&word)
            ));
        };
        triples.push(word.get(..equals).unwrap_or_default().to_vec());
        triples.push(word.get(equals + 1..).unwrap_or_default().to_vec());
        triples.push(b"=".to_vec());
    }
    Ok(triples)
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// BuildKit's `extractBuilderFlags`: leading `--flag` words, unquoted and unescaped, read
/// byte by byte (each byte becomes the code point of the same value, so `é` turns into
/// `Ã©`, and bytes 0x85 and 0xA0 separate words). Returns where the rest of the line starts.
pub(super) fn extract_flags(s: &[u8], escape: u8) -> (usize, Vec<Vec<u8>>) {
    let mut flags = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut blank_ok = false;
    let mut quote = 0u8;
    let mut pos = 0;
    loop {
        let current = s.get(pos).copied();
        if phase == Phase::Spaces {
            let Some(c) = current else {
                return (s.len(), flags);
            };
            if is_byte_space(c) {
                pos += 1;
                continue;
            }
            if c != b'-' || s.get(pos + 1) != Some(&b'-') {
                return (pos, flags);
            }
            phase = Phase::Word;
        }
        let Some(mut c) = current else {
            if word != "--" && (blank_ok || !word.is_empty()) {
                flags.push(word.into_bytes());
            }
            return (s.len(), flags);
        };
        pos += 1;
        if phase == Phase::Word {
            if is_byte_space(c) {
                if word == "--" {
                    return (pos - 1, flags);
                }
                if blank_ok || !word.is_empty() {
                    flags.push(std::mem::take(&mut word).into_bytes());
                }
                blank_ok = false;
                phase = Phase::Spaces;
                continue;
            }
            if c == b'\'' || c == b'"' {
                quote = c;
                blank_ok = true;
                phase = Phase::Quote;
                continue;
            }
        } else if c == quote {
            phase = Phase::Word;
            continue;
        }
        if c == escape {
            match s.get(pos) {
                None => {
                    // A trailing escape is dropped (and closes an open quote).
                    phase = Phase::Word;
                    continue;
                }
                Some(&next) => {
                    c = next;
                    pos += 1;
                }
            }
        }
        word.push(char::from(c));
    }
}

/// BuildKit's `parseWords` (ENV, LABEL, ARG): splits on unquoted, unescaped whitespace and
/// keeps every quote and escape character.
pub(super) fn parse_words(s: &[u8], escape: u8) -> Vec<Vec<u8>> {
    let escape = char::from(escape);
    let chars: Vec<char> = go_chars(s).map(|(_, c, _)| c.char()).collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut blank_ok = false;
    let mut quote = '\0';
    let mut pos = 0;
    loop {
        let current = chars.get(pos).copied();
        if phase == Phase::Spaces {
            match current {
                None => break,
                Some(c) if is_space(c) => {
                    pos += 1;
                    continue;
                }
                Some(_) => phase = Phase::Word,
            }
        }
        let Some(mut c) = current else {
            if blank_ok || !word.is_empty() {
                words.push(word.into_bytes());
            }
            break;
        };
        pos += 1;
        let is_last = pos == chars.len();
        if phase == Phase::Word {
            if is_space(c) {
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word).into_bytes());
                }
                blank_ok = false;
                phase = Phase::Spaces;
                continue;
            }
            if c == '\'' || c == '"' {
                quote = c;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if c == escape {
                if is_last {
                    continue;
                }
                word.push(c);
                c = chars.get(pos).copied().unwrap_or(c);
                pos += 1;
            }
            word.push(c);
            continue;
        }
        if c == quote {
            phase = Phase::Word;
        }
        if c == escape && quote != '\'' {
            if is_last {
                phase = Phase::Word;
                continue;
            }
            word.push(c);
            c = chars.get(pos).copied().unwrap_or(c);
            pos += 1;
        }
        word.push(c);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(line: &str) -> Result<Node, String> {
        node_with_escape(line, b'\\')
    }

    fn node_with_escape(line: &str, escape: u8) -> Result<Node, String> {
        let segments = [(0, 1, 1)];
        let positions = Positions {
            line: line.as_bytes(),
            segments: &segments,
        };
        parse_instruction(line.as_bytes(), 0, escape, &positions, 0)
    }

    fn strings(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn flags_of(s: &str) -> (String, Vec<Vec<u8>>) {
        let (at, flags) = extract_flags(s.as_bytes(), b'\\');
        (s[at..].to_string(), flags)
    }

    #[test]
    fn flags_are_unquoted_and_stop_at_the_first_other_word() {
        assert_eq!(
            flags_of("--a='b c' --c=\"d\\\" e\" x y"),
            ("x y".into(), strings(&["--a=b c", "--c=d\" e"]))
        );
        assert_eq!(
            flags_of("--doit=true -- foo"),
            (" foo".into(), strings(&["--doit=true"]))
        );
        assert_eq!(flags_of("-- foo"), (" foo".into(), strings(&[])));
        assert_eq!(flags_of("-x --y"), ("-x --y".into(), strings(&[])));
        assert_eq!(flags_of("--help"), ("".into(), strings(&["--help"])));
        assert_eq!(flags_of("--a=b\\"), ("".into(), strings(&["--a=b"])));
        assert_eq!(flags_of("--a='b\\'c'"), ("".into(), strings(&["--a=b'c"])));
        assert_eq!(flags_of("--a='' x"), ("x".into(), strings(&["--a="])));
        assert_eq!(flags_of("--\"\" x"), (" x".into(), strings(&[])));
        // Byte by byte: é is two Latin-1 characters, and 0xA0 (in à) separates words.
        assert_eq!(
            flags_of("--chown=é a"),
            ("a".into(), strings(&["--chown=Ã©"]))
        );
        assert_eq!(
            flags_of("--from=voilà x"),
            ("x".into(), strings(&["--from=voilÃ"]))
        );
        // The escape directive applies to flags too.
        let (at, flags) = extract_flags(b"--a=b`c\\d x", b'`');
        assert_eq!((at, flags), (10, strings(&["--a=bc\\d"])));
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        let words = |s: &str| parse_words(s.as_bytes(), b'\\');
        assert_eq!(words("a b\tc"), strings(&["a", "b", "c"]));
        assert_eq!(
            words("a=\"b c\" d='e f'"),
            strings(&["a=\"b c\"", "d='e f'"])
        );
        assert_eq!(words("a\\ b c"), strings(&["a\\ b", "c"]));
        assert_eq!(words("'a\\' b'"), strings(&["'a\\'", "b'"]));
        assert_eq!(words("\"a\\\" b\""), strings(&["\"a\\\" b\""]));
        assert_eq!(words("\"\""), strings(&["\"\""]));
        assert_eq!(words("'open quote"), strings(&["'open quote"]));
        assert_eq!(words("trailing\\"), strings(&["trailing"]));
        assert_eq!(words("\"trailing\\"), strings(&["\"trailing"]));
        assert_eq!(words("a\u{3000}b"), strings(&["a", "b"]));
        assert_eq!(parse_words(b"k=\xFF", b'\\'), strings(&["k=\u{FFFD}"]));
        assert_eq!(
            parse_words(b"a=b` c d=\"x`\"y\"", b'`'),
            strings(&["a=b` c", "d=\"x`\"y\""])
        );
    }

    #[test]
    fn keyword_flags_and_arguments() {
        let n = node("  Copy --from=a \"a b\" c ").unwrap();
        assert_eq!(
            (n.keyword.as_str(), n.keyword_original.as_str()),
            ("copy", "Copy")
        );
        assert_eq!(n.flags, strings(&["--from=a"]));
        assert_eq!(n.args, strings(&["\"a", "b\"", "c"]));
        assert_eq!((n.start_line, n.column), (1, 3));
        assert!(!n.json);

        let n = node("RUN [\"a\", \"b\"]").unwrap();
        assert_eq!((n.args.clone(), n.json), (strings(&["a", "b"]), true));
        assert_eq!(node("CMD []").unwrap().args, strings(&[]));
        assert_eq!(node("CMD [1e999]").unwrap().args, strings(&["[1e999]"]));
        assert_eq!(node("CMD [1]").unwrap_err(), NOT_STRING_ARRAY);
        assert_eq!(node("VOLUME [\"/a\"]").unwrap().args, strings(&["/a"]));
        assert_eq!(node("VOLUME /a /b").unwrap().args, strings(&["/a", "/b"]));
        assert_eq!(
            node("FROM a AS b").unwrap().args,
            strings(&["a", "AS", "b"])
        );
        assert_eq!(node("FROM").unwrap().args, strings(&[]));
        assert_eq!(node("USER  a b ").unwrap().args, strings(&["a b"]));
        assert_eq!(
            node("ARG a=1 \"b c\"").unwrap().args,
            strings(&["a=1", "\"b c\""])
        );
        assert_eq!(node("FOO bar baz").unwrap().args, strings(&[""]));
        assert_eq!(node("").unwrap().args, strings(&[""]));
        assert_eq!(node("FROM\u{A0}x").unwrap().keyword, "from\u{A0}x");
    }

    #[test]
    fn env_and_label() {
        assert_eq!(node("ENV a b c").unwrap().args, strings(&["a", "b c", ""]));
        assert_eq!(
            node("ENV a=1 b=\"2 3\" c=").unwrap().args,
            strings(&["a", "1", "=", "b", "\"2 3\"", "=", "c", "", "="])
        );
        assert_eq!(
            node("ENV a\\ b c").unwrap().args,
            strings(&["a\\", "b c", ""])
        );
        assert_eq!(node("ENV").unwrap().args, strings(&[]));
        assert_eq!(node("ENV a").unwrap_err(), "ENV must have two arguments");
        assert_eq!(
            node("label a").unwrap_err(),
            "LABEL must have two arguments"
        );
        assert_eq!(
            node("ENV a\u{85}b").unwrap_err(),
            "ENV must have two arguments"
        );
        assert_eq!(
            node("ENV a=1 b").unwrap_err(),
            "Syntax error - can't find = in \"b\". Must be of the form: name=value"
        );
        assert_eq!(
            node_with_escape("ENV a=b` c d=\"x`\"y\"", b'`')
                .unwrap()
                .args,
            strings(&["a", "b` c", "=", "d", "\"x`\"y\"", "="])
        );
    }

    #[test]
    fn healthcheck_type_and_command() {
        assert_eq!(node("HEALTHCHECK").unwrap().args, strings(&[]));
        assert_eq!(node("HEALTHCHECK NONE").unwrap().args, strings(&["NONE"]));
        let n = node("HEALTHCHECK --timeout=3s CMD [\"foo\"]").unwrap();
        assert_eq!(
            (n.flags, n.args, n.json),
            (strings(&["--timeout=3s"]), strings(&["CMD", "foo"]), true)
        );
        assert_eq!(
            node("HEALTHCHECK CONNECT TCP 7000").unwrap().args,
            strings(&["CONNECT", "TCP 7000"])
        );
        assert_eq!(node("HEALTHCHECK CMD [1]").unwrap_err(), NOT_STRING_ARRAY);
        // After `--`, an invalid 0xA0 byte comes first: the type would be empty, so there
        // are no arguments. (Flag extraction skips such bytes when there is no `--`.)
        let segments = [(0, 1, 1)];
        let line = b"HEALTHCHECK -- \xA0CMD x";
        let positions = Positions {
            line,
            segments: &segments,
        };
        assert_eq!(
            parse_instruction(line, 0, b'\\', &positions, 0)
                .unwrap()
                .args,
            strings(&[])
        );
    }

    #[test]
    fn onbuild_nests_one_instruction() {
        let n = node("ONBUILD --foo RUN [\"a\"]").unwrap();
        assert_eq!(
            (n.keyword.as_str(), n.flags.clone(), n.args.len()),
            ("onbuild", strings(&["--foo"]), 0)
        );
        let nested = n.next.expect("nested instruction");
        assert_eq!((nested.keyword.as_str(), nested.json), ("run", true));
        assert_eq!(nested.original, b"RUN [\"a\"]");
        assert_eq!(nested.column, 15);
        assert_eq!(node("ONBUILD").unwrap().next, None);
        assert_eq!(
            node("ONBUILD ENV a").unwrap_err(),
            "ENV must have two arguments"
        );

        let chain = format!("{}RUN x", "ONBUILD ".repeat(MAX_ONBUILD_DEPTH));
        let n = node(&chain).unwrap();
        let mut depth = 0;
        let mut current = &n;
        while let Some(next) = &current.next {
            depth += 1;
            current = next;
        }
        assert_eq!(
            (depth, current.keyword.as_str()),
            (MAX_ONBUILD_DEPTH, "run")
        );
        let too_deep = format!("{}RUN x", "ONBUILD ".repeat(MAX_ONBUILD_DEPTH + 1));
        assert!(
            node(&too_deep)
                .unwrap_err()
                .contains("ONBUILD nested more than")
        );
    }

    #[test]
    fn positions_across_continuation_segments() {
        let line = "RUN a   b";
        let segments = [(0, 3, 2), (5, 4, 1), (5, 5, 3)];
        let positions = Positions {
            line: line.as_bytes(),
            segments: &segments,
        };
        assert_eq!(positions.at(0), (3, 2));
        assert_eq!(positions.at(4), (3, 6));
        assert_eq!(positions.at(5), (5, 3));
        assert_eq!(positions.at(8), (5, 6));
    }
}
