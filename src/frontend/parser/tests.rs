//! Whole-file behaviour of the parser: FORMAT.md's rules end to end.

use super::*;

fn dump(input: &str) -> String {
    dump_bytes(input.as_bytes())
}

fn dump_bytes(input: &[u8]) -> String {
    match parse(input) {
        Ok(ast) => ast.dump(),
        Err(e) => panic!("parse failed: {e}"),
    }
}

/// The dump of `FROM a` followed by `rest`, without the `(from "a")` line.
fn after_from(rest: &[u8]) -> String {
    let mut input = b"FROM a\n".to_vec();
    input.extend_from_slice(rest);
    let dump = dump_bytes(&input);
    dump.strip_prefix("(from \"a\")\n")
        .unwrap_or_else(|| panic!("dump does not start with FROM: {dump}"))
        .to_string()
}

fn error(input: &[u8]) -> ParseError {
    match parse(input) {
        Ok(ast) => panic!("parse succeeded: {}", ast.dump()),
        Err(e) => e,
    }
}

fn at(line: usize, message: &str) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

#[test]
fn degenerate_cases_of_format_section_9() {
    let cases: &[(&[u8], &str)] = &[
        (b"FOO bar baz", "(foo \"\")\n"),
        (b"foo", "(foo \"\")\n"),
        (
            b"RUN\nCMD\nENV\nARG\nCOPY\nHEALTHCHECK\nENTRYPOINT\nVOLUME\nUSER\nEXPOSE\nONBUILD",
            "(run)\n(cmd)\n(env)\n(arg)\n(copy)\n(healthcheck)\n(entrypoint)\n(volume)\n(user)\n(expose)\n(onbuild)\n",
        ),
        (b"\\", "(\"\")\n"),
        (b"CMD [1e999]", "(cmd \"[1e999]\")\n"),
        (b"CMD [\"a\",]", "(cmd \"[\\\"a\\\",]\")\n"),
        (
            b"CMD [\"a\"] [\"b\"]",
            "(cmd \"[\\\"a\\\"] [\\\"b\\\"]\")\n",
        ),
        (
            br#"CMD ["\ud800x", "\u00e9", "\u200b"]"#,
            "(cmd \"\u{FFFD}x\" \"é\" \"\\u200b\")\n",
        ),
        (
            "COPY --chown=é a b".as_bytes(),
            "(copy [\"--chown=Ã©\"] \"a\" \"b\")\n",
        ),
        (
            "COPY --from=voilà x y".as_bytes(),
            "(copy [\"--from=voilÃ\"] \"x\" \"y\")\n",
        ),
        (
            br#"COPY --a='b c' --c="d\" e" x y"#,
            "(copy [\"--a=b c\" \"--c=d\\\" e\"] \"x\" \"y\")\n",
        ),
        (
            b"FROM --platform=$BUILDPLATFORM a AS b",
            "(from [\"--platform=$BUILDPLATFORM\"] \"a\" \"AS\" \"b\")\n",
        ),
        (
            b"RUN a\x01b\x7Fc\x00d\tz",
            "(run \"a\\x01b\\x7fc\\x00d\\tz\")\n",
        ),
        (
            "RUN echo \u{A0} \u{3000} \u{AD} 😀".as_bytes(),
            "(run \"echo \\u00a0 \\u3000 \\u00ad 😀\")\n",
        ),
        (b"RUN \xFF\xC3 ok", "(run \"\\xff\\xc3 ok\")\n"),
        (b"ENV k=\xFF", "(env \"k\" \"\u{FFFD}\" \"=\")\n"),
        (b"ENV k \xFF", "(env \"k\" \"\\xff\" \"\")\n"),
        (b"\xFFFOO x", "(\u{FFFD}foo \"\")\n"),
        (
            b"RUN a \\\\\\\nRUN b",
            "(run \"a \\\\\\\\\\\\\")\n(run \"b\")\n",
        ),
        (b"RUN a \\\r\n  b\r\n", "(run \"a   b\")\n"),
        ("ONBUİLD RUN x".as_bytes(), "(onbuild (run \"x\"))\n"),
    ];
    for (rest, want) in cases {
        assert_eq!(after_from(rest), *want, "{}", String::from_utf8_lossy(rest));
    }
    assert_eq!(
        dump("# escape=`\nFROM a\nENV a=b` c d=\"x`\"y\"\n"),
        "(from \"a\")\n(env \"a\" \"b` c\" \"=\" \"d\" \"\\\"x`\\\"y\\\"\" \"=\")\n"
    );
}

#[test]
fn onbuild_examples_of_format_section_7() {
    let cases = [
        (
            "ONBUILD RUN [\"echo\", \"test\"]",
            "(onbuild (run \"echo\" \"test\"))\n",
        ),
        ("ONBUILD RUN echo test", "(onbuild (run \"echo test\"))\n"),
        ("ONBUILD COPY . /", "(onbuild (copy \".\" \"/\"))\n"),
        ("ONBUILD --foo RUN x", "(onbuild [\"--foo\"] (run \"x\"))\n"),
        (
            "ONBUILD ONBUILD RUN --mount=a y",
            "(onbuild (onbuild (run [\"--mount=a\"] \"y\")))\n",
        ),
        ("ONBUILD", "(onbuild)\n"),
    ];
    for (line, want) in cases {
        assert_eq!(after_from(line.as_bytes()), want, "{line}");
    }
}

#[test]
fn node_dump_is_one_instruction_without_parentheses() {
    let ast = parse(b"ONBUILD RUN --mount=a x").unwrap();
    assert_eq!(ast.nodes[0].dump(), "onbuild (run [\"--mount=a\"] \"x\")");
    assert_eq!(Ast::default().dump(), "\n");
}

#[test]
fn continuations() {
    assert_eq!(
        after_from(b"RUN a \\\n  b \\\n\tc"),
        "(run \"a   b \\tc\")\n"
    );
    // Comments and empty lines inside a continuation are dropped; it stays open.
    assert_eq!(
        after_from(b"RUN a \\\n# comment\n\n  \t\nb\nRUN c"),
        "(run \"a b\")\n(run \"c\")\n"
    );
    // Continuation open at end of file.
    assert_eq!(after_from(b"RUN a \\"), "(run \"a\")\n");
    assert_eq!(after_from(b"RUN a \\\n"), "(run \"a\")\n");
    // A comment's trailing escape does not continue it.
    assert_eq!(after_from(b"# x \\\nRUN a"), "(run \"a\")\n");
    // Every trailing `\r` belongs to the line ending; a `\r` before a blank does not.
    assert_eq!(after_from(b"RUN a \\\r\r\nRUN b"), "(run \"a RUN b\")\n");
    assert_eq!(
        after_from(b"RUN a \\\r \nRUN b"),
        "(run \"a \\\\\")\n(run \"b\")\n"
    );
}

#[test]
fn empty_continuation_lines_warn() {
    let ast = parse(b"FROM a\nRUN a \\\n\nb\nRUN c").unwrap();
    assert_eq!(
        ast.warnings,
        vec![Warning {
            line: 4,
            message: "Empty continuation line found in: RUN a b".into()
        }]
    );
    assert!(parse(b"FROM a\nRUN a \\\nb").unwrap().warnings.is_empty());
}

#[test]
fn directives_are_read_at_the_top_only() {
    let ast = parse(
        b"\xEF\xBB\xBF# syntax=docker/dockerfile:1\n  #check=skip=all\n# escape=`\nRUN a `\n  b",
    )
    .unwrap();
    assert_eq!(
        ast.directives.syntax,
        Some(("docker/dockerfile:1".into(), 1))
    );
    assert_eq!(ast.directives.check.as_deref(), Some("skip=all"));
    assert_eq!(ast.directives.escape, '`');
    assert_eq!(ast.dump(), "(run \"a   b\")\n");

    // After a blank line, a comment or an instruction, `# escape=` is a comment.
    for input in [
        "\n# escape=`\nRUN a `\nb",
        "# hi\n# escape=`\nRUN a `\nb",
        "FROM x\n# escape=`\nRUN a `\nb",
    ] {
        let ast = parse(input.as_bytes()).unwrap();
        assert_eq!(ast.directives.escape, '\\', "{input:?}");
        assert!(
            ast.dump().ends_with("(run \"a `\")\n(b \"\")\n"),
            "{input:?}"
        );
    }

    assert_eq!(
        error(b"# escape=`\n# escape=\\\nFROM a"),
        at(2, "only one escape parser directive can be used")
    );
    assert_eq!(
        error(b"# syntax=a\n# SYNTAX=b\nFROM a"),
        at(2, "only one syntax parser directive can be used")
    );
    assert_eq!(
        error(b"# escape=x\nFROM a"),
        at(1, "invalid escape token 'x' does not match ` or \\")
    );
    assert_eq!(error(b"# syntax=x\n"), at(0, "file with no instructions"));
}

#[test]
fn heredoc_bodies_are_consumed_raw() {
    let input =
        b"FROM a\nRUN <<EOF\necho hi \\\n# not a comment\nFROM not-an-instruction\nEOF\nRUN b\n";
    let ast = parse(input).unwrap();
    assert_eq!(ast.dump(), "(from \"a\")\n(run \"<<EOF\")\n(run \"b\")\n");
    let run = &ast.nodes[1];
    assert_eq!(
        run.heredocs,
        vec![Heredoc {
            name: "EOF".into(),
            content: b"echo hi \\\n# not a comment\nFROM not-an-instruction\n".to_vec(),
            expand: true,
            chomp: false,
        }]
    );
    assert_eq!((run.start_line, run.end_line), (2, 6));
    assert_eq!((ast.nodes[2].start_line, ast.nodes[2].end_line), (7, 7));
}

#[test]
fn several_heredocs_on_one_line_are_read_in_order() {
    let ast = parse(b"COPY <<A <<-\"B\" /d\nY\nB\nA\n\tX\n\t\tB\nRUN x").unwrap();
    assert_eq!(
        ast.dump(),
        "(copy \"<<A\" \"<<-\\\"B\\\"\" \"/d\")\n(run \"x\")\n"
    );
    let copy = &ast.nodes[0];
    let bodies: Vec<_> = copy
        .heredocs
        .iter()
        .map(|h| (h.name.as_str(), h.content.as_slice(), h.expand, h.chomp))
        .collect();
    assert_eq!(
        bodies,
        vec![
            ("A", &b"Y\nB\n"[..], true, false),
            ("B", &b"\tX\n"[..], false, true)
        ]
    );
    assert_eq!(copy.end_line, 6);
}

#[test]
fn heredoc_terminators_match_exactly() {
    // A trailing space does not end `<<EOF`; CRLF line endings do; leading tabs only
    // with `<<-`.
    let ast = parse(b"RUN <<EOF\nEOF \n\tEOF\nEOF\r\nRUN <<-X\n  X\n\t\tX\n").unwrap();
    assert_eq!(ast.nodes.len(), 2);
    assert_eq!(ast.nodes[0].heredocs[0].content, b"EOF \n\tEOF\n");
    assert_eq!(ast.nodes[1].heredocs[0].content, b"  X\n");
    // Names are lexed: quotes and escapes removed, variables kept.
    let ast = parse(b"RUN <<'E O' <<$V <<a\\b cat\nE O\n$V\nab\n").unwrap();
    let names: Vec<_> = ast.nodes[0]
        .heredocs
        .iter()
        .map(|h| (h.name.as_str(), h.expand))
        .collect();
    assert_eq!(names, vec![("E O", false), ("$V", true), ("ab", true)]);
    // Whitespace after `<<`.
    let ast = parse(b"RUN cat <<  EOF > /f\nx\nEOF\n").unwrap();
    assert_eq!(ast.nodes[0].heredocs[0].name, "EOF");
}

#[test]
fn heredocs_only_for_run_copy_add_in_shell_form() {
    // Not heredocs: the following lines are instructions.
    for line in [
        "RUN [\"<<EOF\"]",
        "USER <<EOF",
        "ONBUILD ONBUILD RUN <<EOF",
        "RUN echo '<<EOF'",
        "RUN \"<<EOF",
        "RUN <<<EOF",
        "RUN <<EOF${X:-y}",
    ] {
        let input = format!("{line}\nEOF\n");
        let ast = parse(input.as_bytes()).unwrap();
        assert_eq!(ast.nodes.len(), 2, "{line}");
        assert!(ast.nodes[0].heredocs.is_empty(), "{line}");
    }
    for line in [
        "add <<EOF /x",
        "ONBUILD RUN <<EOF",
        "RUN --mount=type=cache,target=/x <<EOF",
    ] {
        let input = format!("{line}\nbody\nEOF\n");
        let ast = parse(input.as_bytes()).unwrap();
        assert_eq!(ast.nodes.len(), 1, "{line}");
        assert_eq!(ast.nodes[0].heredocs[0].content, b"body\n", "{line}");
    }
}

#[test]
fn unterminated_heredocs_are_errors() {
    assert_eq!(
        error(b"FROM a\nRUN <<EOF\nbody\nEOF \n"),
        at(2, "unterminated heredoc")
    );
    assert_eq!(
        error(b"FROM a\nCOPY <<A <<B /\nA\n"),
        at(2, "unterminated heredoc")
    );
}

#[test]
fn line_length_limit() {
    let long = |len: usize| vec![b'x'; len];
    let message = "dockerfile line greater than max allowed size of 65535";

    let mut ok = b"FROM a\nRUN ".to_vec();
    ok.extend(long(65535 - 4));
    ok.push(b'\n');
    ok.extend(b"RUN ");
    ok.extend(long(65535 - 4));
    assert!(parse(&ok).is_ok());

    let mut too_long = b"FROM a\nRUN ".to_vec();
    too_long.extend(long(65536 - 4));
    too_long.extend(b"\nRUN b\n");
    assert_eq!(error(&too_long), at(2, message));

    // Without a newline the last line may hold one byte less.
    let mut last = b"FROM a\nRUN ".to_vec();
    last.extend(long(65535 - 4 + 1));
    assert_eq!(error(&last), at(2, message));

    // The BOM counts on the first line.
    let mut bom = b"\xEF\xBB\xBFFROM ".to_vec();
    bom.extend(long(65535 - 5 - 3 + 1));
    bom.push(b'\n');
    assert_eq!(error(&bom), at(0, "file with no instructions"));

    // Errors before the long line win; no instruction before it is the empty-file error.
    let mut env = b"FROM a\nENV x\n".to_vec();
    env.extend(long(70_000));
    assert_eq!(error(&env), at(2, "ENV must have two arguments"));
    assert_eq!(error(&long(1_000_000)), at(0, "file with no instructions"));
    // Reading stops there, even inside a heredoc or a continuation.
    let mut heredoc = b"RUN <<EOF\n".to_vec();
    heredoc.extend(long(70_000));
    heredoc.extend(b"\nEOF\n");
    assert_eq!(error(&heredoc), at(1, "unterminated heredoc"));
    let mut continued = b"RUN a \\\n".to_vec();
    continued.extend(long(70_000));
    assert_eq!(error(&continued), at(2, message));
}

#[test]
fn errors_carry_the_instruction_line() {
    assert_eq!(error(b""), at(0, "file with no instructions"));
    assert_eq!(
        error(b"# only\n\n   \n"),
        at(0, "file with no instructions")
    );
    assert_eq!(
        error(b"FROM a\n\nENV \\\n  x\n"),
        at(3, "ENV must have two arguments")
    );
    assert_eq!(
        error(b"FROM a\nLABEL a=b c"),
        at(
            2,
            "Syntax error - can't find = in \"c\". Must be of the form: name=value"
        )
    );
    assert_eq!(
        error(b"FROM a\nHEALTHCHECK CMD [1]"),
        at(
            2,
            "when using JSON array syntax, arrays must be comprised of strings only"
        )
    );
    assert_eq!(
        error(b"ONBUILD CMD [[\"a\"]]"),
        at(
            1,
            "when using JSON array syntax, arrays must be comprised of strings only"
        )
    );
}

#[test]
fn positions_of_instructions() {
    let ast = parse(b"\xEF\xBB\xBF  FROM a\n\n\t RUN b \\\n  c\nRUN <<EOF\nx\nEOF\n\\\n  COPY x y\nONBUILD  RUN z").unwrap();
    let spans: Vec<_> = ast
        .nodes
        .iter()
        .map(|n| (n.keyword.as_str(), n.start_line, n.end_line, n.column))
        .collect();
    assert_eq!(
        spans,
        vec![
            ("from", 1, 1, 3),
            ("run", 3, 4, 3),
            ("run", 5, 7, 1),
            ("copy", 8, 9, 3),
            ("onbuild", 10, 10, 1),
        ]
    );
    let nested = ast.nodes[4].next.as_deref().expect("nested");
    assert_eq!(
        (nested.start_line, nested.end_line, nested.column),
        (10, 10, 10)
    );
    assert_eq!(ast.nodes[1].original, b"RUN b   c");
    assert_eq!(ast.nodes[1].keyword_original, "RUN");
}

#[test]
fn comments_attach_to_the_next_instruction() {
    let ast = parse(b"# syntax=x\n# about a\n\n  # more\nFROM a\n# stale\n#\n# about b\nRUN b \\\n# inside\n  c\nRUN d").unwrap();
    let comments: Vec<_> = ast.nodes.iter().map(|n| n.comments.clone()).collect();
    assert_eq!(
        comments,
        vec![
            vec!["about a".to_string(), "more".to_string()],
            vec!["about b".to_string()],
            vec![],
        ]
    );
}
