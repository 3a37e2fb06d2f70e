//! Heredoc detection (FORMAT.md §8).
//!
//! BuildKit finds heredocs by running its shell lexer over the whole instruction line (raw
//! quotes, raw escapes, unset variables kept literally), then lexing each `<<WORD` again to
//! get the terminator. This module reproduces the part of that lexer the parser depends on,
//! quirks included: a `${name<op>…}` wipes the part of the word before it (the Go lexer
//! shares one word buffer between nesting levels), `${a//x/y}` comes back as `${a/x/y}`, a
//! leading U+FEFF is skipped. Variable expansion proper belongs to `frontend::shell`.
//!
//! The Go lexer recurses for `${a:-${b:-…}}` and quotes inside them; this one keeps an
//! explicit stack and one output buffer, so hostile nesting costs neither stack nor
//! quadratic copying.

use super::text::{go_chars, is_digit, is_letter, is_regex_space, is_space, quote};

/// A heredoc announced on an instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HeredocWord {
    pub(super) name: String,
    pub(super) expand: bool,
    pub(super) chomp: bool,
}

/// The heredocs of an instruction line, left to right. An error is fatal for the parse; a
/// line the lexer cannot read (an unterminated quote) simply has no heredocs.
pub(super) fn heredocs_in_line(line: &[u8]) -> Result<Vec<HeredocWord>, String> {
    let chars: Vec<char> = go_chars(line).map(|(_, c, _)| c.char()).collect();
    let Ok(words) = Lexer::new(&chars, LINE).words() else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for word in words {
        if let Some(heredoc) = heredoc_from_word(&word)? {
            found.push(heredoc);
        }
    }
    Ok(found)
}

/// Matches `^[0-9]*<<(-?)\s*([^<]*)$` and lexes the rest into the terminator name.
fn heredoc_from_word(word: &str) -> Result<Option<HeredocWord>, String> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(is_regex_space);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let chars: Vec<char> = rest.chars().collect();
    let failed =
        |message: String| format!("failed to process {}: {message}", quote(rest.as_bytes()));
    let names = Lexer::new(&chars, NAME).words().map_err(failed)?;
    let [name] = names.as_slice() else {
        return Ok(None);
    };
    // Lexed again keeping the quotes: if quotes disappear, part of the name was quoted and
    // the body is not expanded.
    let raw = Lexer::new(&chars, NAME_KEEPING_QUOTES)
        .words()
        .map_err(failed)?;
    let [raw] = raw.as_slice() else {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    };
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    Ok(Some(HeredocWord {
        name: name.clone(),
        expand: quotes(name) == quotes(raw),
        chomp,
    }))
}

#[derive(Clone, Copy)]
struct Mode {
    raw_quotes: bool,
    raw_escapes: bool,
}

/// How the whole instruction line is split into words.
const LINE: Mode = Mode {
    raw_quotes: true,
    raw_escapes: true,
};
/// How a heredoc word becomes its name.
const NAME: Mode = Mode {
    raw_quotes: false,
    raw_escapes: false,
};
const NAME_KEEPING_QUOTES: Mode = Mode {
    raw_quotes: true,
    raw_escapes: false,
};

/// The heredoc lexer always escapes with `\`, whatever `# escape=` says.
const ESCAPE: char = '\\';

enum Frame {
    /// The word of `${name<op>word}` (or a `${name/pattern/…}` part), ending at `stop`.
    Word {
        stop: char,
        saved_raw_escapes: bool,
    },
    DoubleQuote,
    /// `${name/pattern` is done: the replacement follows.
    Replacement,
    /// Emit the `}` of a `${…}` once its word is done.
    CloseBrace,
}

struct Lexer<'a> {
    chars: &'a [char],
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
    /// Text produced by the `$…` or quoted part being processed.
    out: String,
}

#[derive(Default)]
struct Words {
    words: Vec<String>,
    current: String,
    /// `current` ends in `<<` and spaces, tabs or `\r`: more of those stay in the word, so
    /// that `<<  EOF` is one word (BuildKit accepts whitespace before a heredoc name).
    after_heredoc_marker: bool,
}

impl Words {
    /// An unquoted, unescaped character: whitespace ends the word.
    fn add_char(&mut self, c: char) {
        if matches!(c, ' ' | '\t' | '\r')
            && (self.after_heredoc_marker || self.current.ends_with("<<"))
        {
            self.current.push(c);
            self.after_heredoc_marker = true;
        } else if !is_space(c) {
            self.push(c);
        } else if !self.current.is_empty() {
            self.words.push(std::mem::take(&mut self.current));
            self.after_heredoc_marker = false;
        }
    }

    /// A character that belongs to the word whatever it is.
    fn push(&mut self, c: char) {
        self.current.push(c);
        self.after_heredoc_marker = false;
    }

    fn push_str(&mut self, s: &str) {
        self.current.push_str(s);
        self.after_heredoc_marker &= s.is_empty();
    }

    fn clear(&mut self) {
        self.current.clear();
        self.after_heredoc_marker = false;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.words.push(self.current);
        }
        self.words
    }
}

impl<'a> Lexer<'a> {
    fn new(chars: &'a [char], mode: Mode) -> Self {
        // Go's text/scanner skips a byte order mark at the start.
        let pos = usize::from(chars.first() == Some(&'\u{FEFF}'));
        Lexer {
            chars,
            pos,
            raw_quotes: mode.raw_quotes,
            raw_escapes: mode.raw_escapes,
            out: String::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// `ProcessWords` with an empty environment.
    fn words(mut self) -> Result<Vec<String>, String> {
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            match c {
                '$' | '"' => {
                    self.out.clear();
                    let wiped = self.run(c == '"')?;
                    if wiped {
                        words.clear();
                    }
                    if c == '$' {
                        // Expansions are split on whitespace, quoted text is not.
                        self.out.chars().for_each(|c| words.add_char(c));
                    } else {
                        words.push_str(&self.out);
                    }
                }
                '\'' => {
                    self.out.clear();
                    self.single_quote()?;
                    words.push_str(&self.out);
                }
                ESCAPE => {
                    self.pos += 1;
                    if self.raw_escapes {
                        words.push(ESCAPE);
                    }
                    match self.next() {
                        Some(escaped) => words.push(escaped),
                        None => break,
                    }
                }
                _ => {
                    self.pos += 1;
                    words.add_char(c);
                }
            }
        }
        Ok(words.finish())
    }

    fn single_quote(&mut self) -> Result<(), String> {
        self.pos += 1;
        if self.raw_quotes {
            self.out.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.raw_quotes {
                        self.out.push('\'');
                    }
                    return Ok(());
                }
                Some(c) => self.out.push(c),
            }
        }
    }

    /// Processes one `$…` or `"…"` (with everything nested in it) into `self.out`.
    /// Returns whether a nested `${…}` word was lexed, which wipes the current word.
    fn run(&mut self, double_quote: bool) -> Result<bool, String> {
        let mut stack = Vec::new();
        let mut wiped = false;
        if double_quote {
            self.open_double_quote(&mut stack);
        } else {
            self.dollar(&mut stack, &mut wiped)?;
        }
        while let Some(frame) = stack.last() {
            let result = match *frame {
                Frame::CloseBrace => {
                    self.out.push('}');
                    stack.pop();
                    Ok(())
                }
                Frame::Replacement => {
                    self.out.push('/');
                    stack.pop();
                    stack.push(Frame::CloseBrace);
                    self.open_word('}', true, &mut stack, &mut wiped);
                    Ok(())
                }
                Frame::Word {
                    stop,
                    saved_raw_escapes,
                } => self.word_step(stop, saved_raw_escapes, &mut stack, &mut wiped),
                Frame::DoubleQuote => self.double_quote_step(&mut stack, &mut wiped),
            };
            if let Err(message) = result {
                return Err(self.at_end_message(&stack, message));
            }
        }
        Ok(wiped)
    }

    /// An error at the end of the text inside `${…}` is reported as the missing `}` (or
    /// `/`) of the outermost one, as the Go lexer's unwinding does.
    fn at_end_message(&self, stack: &[Frame], message: String) -> String {
        if self.peek().is_some() {
            return message;
        }
        match stack.iter().find_map(|frame| match frame {
            Frame::Word { stop, .. } => Some(*stop),
            _ => None,
        }) {
            Some('/') => "syntax error: missing '/' in ${}".into(),
            Some(_) => "syntax error: missing '}'".into(),
            None => message,
        }
    }

    fn open_double_quote(&mut self, stack: &mut Vec<Frame>) {
        self.pos += 1;
        if self.raw_quotes {
            self.out.push('"');
        }
        stack.push(Frame::DoubleQuote);
    }

    fn open_word(
        &mut self,
        stop: char,
        raw_escapes: bool,
        stack: &mut Vec<Frame>,
        wiped: &mut bool,
    ) {
        *wiped = true;
        stack.push(Frame::Word {
            stop,
            saved_raw_escapes: self.raw_escapes,
        });
        self.raw_escapes = raw_escapes;
    }

    fn word_step(
        &mut self,
        stop: char,
        saved_raw_escapes: bool,
        stack: &mut Vec<Frame>,
        wiped: &mut bool,
    ) -> Result<(), String> {
        match self.peek() {
            None => Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )),
            Some(c) if c == stop => {
                self.pos += 1;
                self.raw_escapes = saved_raw_escapes;
                stack.pop();
                Ok(())
            }
            Some('$') => self.dollar(stack, wiped),
            Some('\'') => self.single_quote(),
            Some('"') => {
                self.open_double_quote(stack);
                Ok(())
            }
            Some(c) => {
                self.pos += 1;
                let mut c = c;
                if c == ESCAPE {
                    if self.raw_escapes {
                        self.out.push(ESCAPE);
                    }
                    c = self.next().ok_or_else(|| {
                        format!("unexpected end of statement while looking for matching {stop}")
                    })?;
                }
                self.out.push(c);
                Ok(())
            }
        }
    }

    fn double_quote_step(
        &mut self,
        stack: &mut Vec<Frame>,
        wiped: &mut bool,
    ) -> Result<(), String> {
        match self.peek() {
            None => {
                Err("unexpected end of statement while looking for matching double-quote".into())
            }
            Some('"') => {
                self.pos += 1;
                if self.raw_quotes {
                    self.out.push('"');
                }
                stack.pop();
                Ok(())
            }
            Some('$') => self.dollar(stack, wiped),
            Some(c) => {
                self.pos += 1;
                let mut c = c;
                if c == ESCAPE {
                    if self.raw_escapes {
                        self.out.push(ESCAPE);
                    }
                    match self.peek() {
                        // The dangling escape is dropped; the missing quote fails next.
                        None => return Ok(()),
                        Some('"' | '$' | ESCAPE) => c = self.next().unwrap_or(c),
                        Some(_) => {}
                    }
                }
                self.out.push(c);
                Ok(())
            }
        }
    }

    /// `$name`, `${name}`, `${name<op>word}`, `${name/pattern/replacement}`; every variable
    /// is unset, so each is written back as it was read.
    fn dollar(&mut self, stack: &mut Vec<Frame>, wiped: &mut bool) -> Result<(), String> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            self.out.push('$');
            self.out.push_str(&name);
            return Ok(());
        }
        self.pos += 1;
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        self.out.push_str("${");
        self.out.push_str(&name);
        match self.next() {
            Some('}') => self.out.push('}'),
            Some(':') => {
                let modifier = self.next().unwrap_or(char::REPLACEMENT_CHARACTER);
                if matches!(modifier, '#' | '%') {
                    return Err(format!(
                        "unsupported modifier (:{modifier}) in substitution"
                    ));
                }
                self.out.push(':');
                self.out.push(modifier);
                stack.push(Frame::CloseBrace);
                self.open_word('}', false, stack, wiped);
            }
            Some(op @ ('+' | '-' | '?' | '#' | '%')) => {
                self.out.push(op);
                stack.push(Frame::CloseBrace);
                self.open_word('}', matches!(op, '#' | '%'), stack, wiped);
            }
            Some('/') => {
                // `${a//x/y}` (replace all) is written back with one slash, as Go does.
                if self.peek() == Some('/') {
                    self.pos += 1;
                }
                self.out.push('/');
                stack.push(Frame::Replacement);
                self.open_word('/', true, stack, wiped);
            }
            other => {
                let op = other.unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(format!("unsupported modifier ({op}) in substitution"));
            }
        }
        Ok(())
    }

    /// A variable name: a run of digits, one special parameter, or letters, digits and `_`.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && is_digit(c) {
                while let Some(digit) = self.peek().filter(|&c| is_digit(c)) {
                    name.push(digit);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return c.to_string();
            }
            if !is_letter(c) && !is_digit(c) && c != '_' {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_words(line: &str) -> Result<Vec<String>, String> {
        let chars: Vec<char> = line.chars().collect();
        Lexer::new(&chars, LINE).words()
    }

    fn name_words(word: &str) -> Result<Vec<String>, String> {
        let chars: Vec<char> = word.chars().collect();
        Lexer::new(&chars, NAME).words()
    }

    fn heredoc(name: &str, expand: bool, chomp: bool) -> HeredocWord {
        HeredocWord {
            name: name.into(),
            expand,
            chomp,
        }
    }

    fn found(line: &str) -> Vec<HeredocWord> {
        heredocs_in_line(line.as_bytes()).expect("no fatal error")
    }

    #[test]
    fn line_words_keep_quotes_escapes_and_variables() {
        assert_eq!(
            line_words("RUN  a'b c'\"d e\"\\ f $X ${Y} << \t\rEOF <<\x0BX <<- Y").unwrap(),
            vec![
                "RUN",
                "a'b c'\"d e\"\\ f",
                "$X",
                "${Y}",
                "<< \t\rEOF",
                "<<",
                "X",
                "<<-",
                "Y"
            ]
        );
        assert_eq!(
            line_words("a\u{3000}b\u{85}c").unwrap(),
            vec!["a", "b", "c"]
        );
        assert!(line_words("RUN 'open").is_err());
        assert!(line_words("RUN \"open").is_err());
        assert!(line_words("RUN ${}").is_err());
        assert!(line_words("RUN ${:x}").is_err());
        assert!(line_words("RUN ${a").is_err());
        assert!(line_words("RUN ${a!}").is_err());
        assert!(line_words("RUN ${a:#x}").is_err());
        // Every variable is unset, so the checks of `${a:=b}` are skipped, as in Go.
        assert_eq!(line_words("${a:=b}").unwrap(), vec!["${a:=b}"]);
        assert_eq!(line_words("\u{FEFF}x").unwrap(), vec!["x"]);
    }

    #[test]
    fn substitutions_are_written_back_and_wipe_the_word_before_them() {
        assert_eq!(line_words("<<EOF${X:-y}").unwrap(), vec!["${X:-y}"]);
        assert_eq!(line_words("a${b}c").unwrap(), vec!["a${b}c"]);
        assert_eq!(line_words("x${a//p/r}").unwrap(), vec!["${a/p/r}"]);
        assert_eq!(line_words("${a:-x y}").unwrap(), vec!["${a:-x", "y}"]);
        assert_eq!(line_words("\"${a:-x y}\"").unwrap(), vec!["\"${a:-x y}\""]);
        assert_eq!(
            line_words("${a:-${b:-'q'}\"${c#x}\"}").unwrap(),
            vec!["${a:-${b:-'q'}\"${c#x}\"}"]
        );
        assert_eq!(
            line_words("$1x $# $$ $").unwrap(),
            vec!["$1x", "$#", "$$", "$"]
        );
    }

    #[test]
    fn names_lose_quotes_and_escapes() {
        assert_eq!(name_words("'EOF'").unwrap(), vec!["EOF"]);
        assert_eq!(name_words(r#""a b""#).unwrap(), vec!["a b"]);
        assert_eq!(name_words(r"a\ b").unwrap(), vec!["a b"]);
        assert_eq!(name_words("e'o'f").unwrap(), vec!["eof"]);
        assert_eq!(name_words("$EOF").unwrap(), vec!["$EOF"]);
        assert_eq!(name_words(r#""\t\$""#).unwrap(), vec!["\\t$"]);
        assert_eq!(name_words("''").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn heredoc_words() {
        assert_eq!(found("RUN <<EOF"), vec![heredoc("EOF", true, false)]);
        assert_eq!(found("RUN <<-EOF"), vec![heredoc("EOF", true, true)]);
        assert_eq!(found("RUN 3<<EOF"), vec![heredoc("EOF", true, false)]);
        assert_eq!(found("RUN << EOF"), vec![heredoc("EOF", true, false)]);
        assert_eq!(found("RUN <<'EOF'"), vec![heredoc("EOF", false, false)]);
        assert_eq!(found(r#"RUN <<"EOF""#), vec![heredoc("EOF", false, false)]);
        assert_eq!(found(r#"RUN <<"a b""#), vec![heredoc("a b", false, false)]);
        assert_eq!(found("RUN <<e'o'f"), vec![heredoc("eof", false, false)]);
        assert_eq!(found(r"RUN <<a\ b"), vec![heredoc("a b", true, false)]);
        assert_eq!(found("RUN <<$EOF"), vec![heredoc("$EOF", true, false)]);
        assert_eq!(found("RUN <<\\EOF"), vec![heredoc("EOF", true, false)]);
        assert_eq!(
            found("COPY <<A <<-\"B\" /d"),
            vec![heredoc("A", true, false), heredoc("B", false, true)]
        );
    }

    #[test]
    fn words_that_are_not_heredocs() {
        for line in [
            "RUN <<",
            "RUN <<-",
            "RUN <<<EOF",
            "RUN a<<EOF",
            "RUN <<EOF${X:-y}",
            "RUN <<''",
            "RUN 'unterminated <<EOF",
            "RUN echo '<<EOF'",
            "RUN <<EOF'",
            "RUN x<<EOF",
        ] {
            assert_eq!(found(line), vec![], "{line}");
        }
        // `<< -EOF` is a heredoc named `-EOF`.
        assert_eq!(found("RUN << -EOF"), vec![heredoc("-EOF", true, false)]);
    }

    #[test]
    fn a_heredoc_name_that_cannot_be_lexed_is_fatal() {
        // The line lexer rejects such words first; Go's ParseHeredoc tests these directly.
        for word in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\"", "<<${"] {
            let error = heredoc_from_word(word).expect_err(word);
            assert!(error.starts_with("failed to process "), "{error}");
        }
        assert_eq!(
            heredoc_from_word("<<-'EOF").unwrap_err(),
            "failed to process \"'EOF\": unexpected end of statement while looking for \
             matching single-quote"
        );
    }

    #[test]
    fn hostile_nesting_is_linear_and_stackless() {
        let depth = 200_000;
        let mut line = "RUN <<EOF ".to_string();
        line.push_str(&"${a:-\"".repeat(depth));
        line.push_str(&"\"}".repeat(depth));
        assert_eq!(found(&line), vec![heredoc("EOF", true, false)]);
        line.push_str("${");
        assert_eq!(found(&line), vec![]);
    }
}
