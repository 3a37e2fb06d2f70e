//! The parser against hostile input: random bytes, random mixtures of Dockerfile tokens,
//! and huge or deeply nested files. It must never panic, must stay linear, and whenever it
//! accepts a file its dump must be one well-formed line per instruction.

use imgbuild::frontend::parser::{Ast, parse};
use proptest::prelude::*;

/// Checks what must hold of any successful parse.
fn check_ast(input: &[u8], ast: &Ast) {
    let dump = ast.dump();
    assert!(
        dump.ends_with('\n'),
        "dump does not end in a newline: {dump:?}"
    );
    let lines: Vec<&str> = dump.trim_end_matches('\n').split('\n').collect();
    assert!(!ast.nodes.is_empty(), "an accepted file has instructions");
    assert_eq!(
        lines.len(),
        ast.nodes.len(),
        "one dump line per instruction: {dump:?}"
    );
    for line in lines {
        assert!(
            line.starts_with('(') && line.ends_with(')'),
            "malformed dump line {line:?}"
        );
    }
    let physical_lines = input.split(|&b| b == b'\n').count();
    let mut previous_end = 0;
    for node in &ast.nodes {
        assert!(
            node.start_line > previous_end,
            "instructions overlap: {node:?}"
        );
        assert!(node.start_line <= node.end_line && node.end_line <= physical_lines);
        assert!(node.column >= 1);
        previous_end = node.end_line;
    }
}

fn parse_and_check(input: &[u8]) {
    if let Ok(ast) = parse(input) {
        check_ast(input, &ast);
    }
}

const TOKENS: &[&[u8]] = &[
    b"FROM",
    b"RUN",
    b"COPY",
    b"ADD",
    b"ONBUILD",
    b"ENV",
    b"LABEL",
    b"ARG",
    b"HEALTHCHECK",
    b"CMD",
    b"SHELL",
    b"VOLUME",
    b"EXPOSE",
    b"USER",
    b"run",
    b"OnBuild",
    b"FOO",
    b" ",
    b" ",
    b"\t",
    b"\\",
    b"`",
    b"<<EOF",
    b"<<-EOF",
    b"<<'EOF'",
    b"<<\"EOF\"",
    b"<< EOF",
    b"EOF",
    b"\tEOF",
    b"'",
    b"\"",
    b"[",
    b"]",
    b",",
    b"#",
    b"# escape=`",
    b"# syntax=x",
    b"#check=a",
    b"--",
    b"--mount=type=cache",
    b"=",
    b"$",
    b"${",
    b"}",
    b":-",
    b"//",
    b"\n",
    b"\n",
    b"\n",
    b"\r\n",
    b"\r",
    b"\xEF\xBB\xBF",
    b"\x85",
    b"\xA0",
    b"\xC2\x85",
    b"\xC2\xA0",
    b"\xFF",
    b"\xC3",
    b"\x00",
    b"\x0B",
    b"\x0C",
    b"a",
    b"b c",
    b"1e999",
    b"1",
    b"null",
    b"{}",
    b"\\u00e9",
    b"\\ud800",
    b"\xE3\x80\x80",
    "é".as_bytes(),
    "İ".as_bytes(),
    b"CMD\n",
];

/// Tokens mostly separated by spaces, sometimes glued together or split by newlines.
fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    let separator = prop::sample::select(vec![&b" "[..], b" ", b" ", b"", b"\n"]);
    prop::collection::vec((prop::sample::select(TOKENS), separator), 0..160).prop_map(|tokens| {
        tokens
            .into_iter()
            .flat_map(|(token, separator)| [token, separator])
            .collect::<Vec<_>>()
            .concat()
    })
}

/// JSON-form instructions with strings, other values, broken syntax.
fn json_like() -> impl Strategy<Value = Vec<u8>> {
    let keyword = prop::sample::select(vec![
        &b"RUN"[..],
        b"CMD",
        b"COPY",
        b"VOLUME",
        b"HEALTHCHECK CMD",
        b"ONBUILD RUN",
        b"SHELL",
    ]);
    let element = prop::sample::select(vec![
        &b"\"a\""[..],
        b"\"b c\"",
        b"\"\\u00e9\"",
        b"\"\\ud800\"",
        b"\"\\\"\"",
        b"\"<<EOF\"",
        b"1",
        b"1e999",
        b"-0.5",
        b"null",
        b"true",
        b"[]",
        b"{}",
        b"{\"k\": [1]}",
        b"'x'",
        b"\"\xFF\"",
        b"\"\t\"",
        b"",
    ]);
    let separator = prop::sample::select(vec![&b","[..], b", ", b" ", b",,"]);
    let ending = prop::sample::select(vec![&b"]"[..], b"]", b" ]\t", b"", b"] x", b"]]"]);
    let instruction = (
        keyword,
        prop::collection::vec((element, separator), 0..6),
        ending,
    )
        .prop_map(|(keyword, elements, ending)| {
            let mut line = keyword.to_vec();
            line.extend(b" [");
            for (i, (element, separator)) in elements.iter().enumerate() {
                if i > 0 {
                    line.extend(*separator);
                }
                line.extend(*element);
            }
            line.extend(ending);
            line.push(b'\n');
            line
        });
    prop::collection::vec(instruction, 1..6).prop_map(|lines| lines.concat())
}

/// Heredoc instructions, bodies and terminators, sometimes mismatched.
fn heredoc_like() -> impl Strategy<Value = Vec<u8>> {
    let opener = prop::sample::select(vec![
        &b"RUN <<EOF"[..],
        b"RUN <<-EOF",
        b"COPY <<EOF /f",
        b"ADD <<'EOF' <<\"X\" /d",
        b"RUN cat <<  EOF",
        b"ONBUILD RUN <<EOF",
        b"RUN 3<<EOF",
        b"RUN <<E\\ F",
        b"RUN <<${X}",
        b"RUN <<EOF \\",
        b"RUN [\"<<EOF\"]",
        b"USER <<EOF",
    ]);
    let body = prop::sample::select(vec![
        &b"EOF"[..],
        b"\tEOF",
        b"EOF ",
        b"X",
        b"E F",
        b"${X}",
        b"echo hi",
        b"# comment",
        b"FROM x",
        b"\\",
        b"",
        b"\xFF",
        b"EOF\r",
    ]);
    let block = (opener, prop::collection::vec(body, 0..6)).prop_map(|(opener, body)| {
        let mut text = opener.to_vec();
        for line in body {
            text.push(b'\n');
            text.extend(line);
        }
        text.push(b'\n');
        text
    });
    prop::collection::vec(block, 1..5).prop_map(|blocks| blocks.concat())
}

/// Lines that look like a Dockerfile: a keyword, then a token soup.
fn dockerfile_like() -> impl Strategy<Value = Vec<u8>> {
    let line = (prop::sample::select(&TOKENS[..17]), token_soup()).prop_map(|(keyword, rest)| {
        let mut line = keyword.to_vec();
        line.push(b' ');
        line.extend(rest);
        line.push(b'\n');
        line
    });
    prop::collection::vec(line, 1..12).prop_map(|lines| lines.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..2048)) {
        parse_and_check(&input);
    }

    #[test]
    fn token_soup_never_panics(input in token_soup()) {
        parse_and_check(&input);
    }

    #[test]
    fn dockerfile_like_text_never_panics(input in dockerfile_like()) {
        parse_and_check(&input);
    }

    #[test]
    fn json_forms_never_panic(input in json_like()) {
        parse_and_check(&input);
    }

    #[test]
    fn heredocs_never_panic(input in heredoc_like()) {
        parse_and_check(&input);
    }
}

/// Parses `input` and checks the result. No time bound is asserted (tests are not
/// benchmarks), but quadratic behaviour on these sizes would take hours, so a regression
/// shows as a hung test rather than a pass.
fn timed(what: &str, input: &[u8]) -> Result<Ast, imgbuild::frontend::parser::ParseError> {
    let _ = what;
    let result = parse(input);
    if let Ok(ast) = &result {
        check_ast(input, ast);
    }
    result
}

#[test]
fn ten_megabyte_file() {
    let block = b"# comment\nRUN apt-get update && \\\n    apt-get install -y curl \\\n\n    && rm -rf /var/lib/apt\nENV A=1 B=\"two words\" C='x'\nCOPY --from=build [\"a\", \"b\"] /c/\nRUN <<EOF\necho $HOME\nEOF\n";
    let input = block.repeat(10 * 1024 * 1024 / block.len() + 1);
    let ast = timed("10 MB file", &input).expect("accepted");
    assert_eq!(ast.nodes.len(), 4 * (10 * 1024 * 1024 / block.len() + 1));
}

#[test]
fn ten_megabytes_of_junk() {
    // Deterministic pseudo-random bytes (xorshift), newline-rich so lines stay short.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let input: Vec<u8> = (0..10 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let byte = (state >> 24) as u8;
            if byte < 8 { b'\n' } else { byte }
        })
        .collect();
    let _ = timed("10 MB of junk", &input);
}

#[test]
fn one_megabyte_line_is_the_line_limit() {
    let mut input = b"FROM a\nRUN ".to_vec();
    input.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    let error = timed("1 MB line", &input).expect_err("too long");
    assert_eq!(
        (error.line, error.message.as_str()),
        (2, "dockerfile line greater than max allowed size of 65535")
    );
}

#[test]
fn hundred_thousand_continuation_lines() {
    let mut input = b"FROM a\nRUN echo \\\n".to_vec();
    for _ in 0..100_000 {
        input.extend(b"  word \\\n");
    }
    input.extend(b"  end\n");
    let ast = timed("100k continuations", &input).expect("accepted");
    assert_eq!(ast.nodes.len(), 2);
    assert_eq!(ast.nodes[1].end_line, 100_003);
    assert!(ast.nodes[1].args[0].ends_with(b"word   end"));

    // The same with empty continuation lines between them: one warning, not 100k.
    let mut input = b"RUN echo \\\n".to_vec();
    for _ in 0..100_000 {
        input.extend(b"\n \\\n");
    }
    input.extend(b"end\n");
    let ast = timed("100k empty continuations", &input).expect("accepted");
    assert_eq!(ast.warnings.len(), 1);
}

#[test]
fn deep_nesting_costs_no_stack() {
    // JSON nested a million deep (over continuation lines), ${…} and quotes nested on a
    // heredoc line, ONBUILD chained far past the parser's limit.
    let mut json = b"CMD ".to_vec();
    for _ in 0..1000 {
        json.extend("[".repeat(1000).bytes());
        json.extend(b"\\\n");
    }
    json.extend(b"\n");
    let ast = timed("deep JSON", &json).expect("too deep for Go's decoder: shell form");
    assert!(!ast.nodes[0].json);

    let mut heredoc_line = b"RUN cat <<EOF ".to_vec();
    for _ in 0..100 {
        heredoc_line.extend("${a:-\"".repeat(1000).bytes());
        heredoc_line.extend(b"\\\n");
    }
    for _ in 0..100 {
        heredoc_line.extend("\"}".repeat(1000).bytes());
        heredoc_line.extend(b"\\\n");
    }
    heredoc_line.truncate(heredoc_line.len() - 2);
    heredoc_line.extend(b"\nbody\nEOF\n");
    let ast = timed("deep ${…} on a heredoc line", &heredoc_line).expect("accepted");
    assert_eq!(ast.nodes[0].heredocs[0].content, b"body\n");

    let onbuild = format!("{}\\\n", "ONBUILD ".repeat(1000))
        .repeat(100)
        .into_bytes();
    let error = timed("ONBUILD chain", &onbuild).expect_err("too deep");
    assert!(
        error.message.contains("ONBUILD nested more than"),
        "{}",
        error.message
    );

    let quotes = format!("ENV a=\"{}\"\n", "'\\\"".repeat(20_000)).into_bytes();
    let _ = timed("quotes in ENV", &quotes);
}

#[test]
fn weird_heredocs() {
    // Many heredocs on one line, each with its own body.
    let mut input = b"COPY".to_vec();
    for i in 0..5_000 {
        input.extend(format!(" <<H{i}").bytes());
    }
    input.extend(b" /dest\n");
    for i in 0..5_000 {
        input.extend(format!("body {i}\nH{i}\n").bytes());
    }
    let ast = timed("5000 heredocs", &input).expect("accepted");
    assert_eq!(ast.nodes[0].heredocs.len(), 5_000);

    // Unterminated, with a huge body.
    let mut input = b"RUN <<EOF\n".to_vec();
    input.extend(b"not the end\n".repeat(200_000));
    let error = timed("unterminated heredoc", &input).expect_err("unterminated");
    assert_eq!(
        (error.line, error.message.as_str()),
        (1, "unterminated heredoc")
    );

    // `<<` followed by a sea of blanks, a chomped terminator behind many tabs, names made of
    // quotes and escapes, invalid UTF-8 in the name.
    let mut input = b"RUN <<".to_vec();
    input.extend(b" \t".repeat(30_000));
    input.extend(b"E\n\tbody\n");
    input.extend(b"E\nRUN <<-\"a b\"\\'c <<\xFF\n");
    input.extend(b"\t".repeat(50_000));
    input.extend(b"a b'c\n\xFF\n\xEF\xBF\xBD\n");
    let ast = timed("strange heredoc names", &input).expect("accepted");
    let heredocs: Vec<_> = ast
        .nodes
        .iter()
        .flat_map(|node| &node.heredocs)
        .map(|h| (h.name.as_str(), h.content.as_slice(), h.expand, h.chomp))
        .collect();
    assert_eq!(
        heredocs,
        vec![
            ("E", &b"\tbody\n"[..], true, false),
            ("a b'c", &b""[..], false, true),
            ("\u{FFFD}", &b"\xFF\n"[..], true, false),
        ]
    );

    // Heredoc markers everywhere, terminators nowhere.
    let input = b"RUN <<A <<B <<C\n".repeat(20_000);
    let _ = timed("heredoc markers only", &input);
}
