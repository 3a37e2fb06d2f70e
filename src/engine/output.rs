//! A running command's output: raw chunks of stdout and stderr turned into lines for the
//! caller, with the last few kept for the error message of a failed command.

use std::collections::VecDeque;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// One line a command printed, without its line ending. The lines of one stream keep their
/// order; between stdout and stderr the engine keeps none (they are separate pipes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLine<'a> {
    pub stream: OutputStream,
    /// The line, decoded as UTF-8 (invalid bytes become U+FFFD).
    pub text: &'a str,
}

/// How many lines a failed command's error shows.
pub const TAIL_LINES: usize = 20;

/// A line longer than this is passed on in pieces, so output without newlines (a progress
/// bar, binary junk) cannot grow the buffer without bound.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Lines in the error message are cut to this many characters.
const MAX_TAIL_LINE_CHARS: usize = 500;

/// Splits the chunks of both streams into lines, calls `sink` for each, and keeps the last
/// [`TAIL_LINES`].
pub(crate) struct LineSplitter<'s> {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    tail: VecDeque<String>,
    sink: &'s mut (dyn FnMut(OutputLine<'_>) + Send),
}

impl<'s> LineSplitter<'s> {
    pub(crate) fn new(sink: &'s mut (dyn FnMut(OutputLine<'_>) + Send)) -> Self {
        LineSplitter {
            stdout: Vec::new(),
            stderr: Vec::new(),
            tail: VecDeque::with_capacity(TAIL_LINES),
            sink,
        }
    }

    /// Takes a chunk of one stream; complete lines are emitted at once, a partial last line
    /// waits for the rest (or for [`finish`](Self::finish)).
    pub(crate) fn push(&mut self, stream: OutputStream, chunk: &[u8]) {
        let buffer = match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        buffer.extend_from_slice(chunk);
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(newline) = buffer[start..].iter().position(|&b| b == b'\n') {
            lines.push(buffer[start..start + newline].to_vec());
            start += newline + 1;
        }
        while buffer.len() - start > MAX_LINE_BYTES {
            lines.push(buffer[start..start + MAX_LINE_BYTES].to_vec());
            start += MAX_LINE_BYTES;
        }
        buffer.drain(..start);
        for line in lines {
            self.emit(stream, &line);
        }
    }

    /// Emits the partial last lines and returns the tail, oldest first.
    pub(crate) fn finish(mut self) -> Vec<String> {
        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
            let rest = match stream {
                OutputStream::Stdout => std::mem::take(&mut self.stdout),
                OutputStream::Stderr => std::mem::take(&mut self.stderr),
            };
            if !rest.is_empty() {
                self.emit(stream, &rest);
            }
        }
        self.tail.into()
    }

    fn emit(&mut self, stream: OutputStream, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line);
        (self.sink)(OutputLine {
            stream,
            text: &text,
        });
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(shorten(&text));
    }
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_TAIL_LINE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[(OutputStream, &[u8])]) -> (Vec<(OutputStream, String)>, Vec<String>) {
        let mut seen = Vec::new();
        let mut sink = |line: OutputLine<'_>| seen.push((line.stream, line.text.to_owned()));
        let mut splitter = LineSplitter::new(&mut sink);
        for (stream, chunk) in chunks {
            splitter.push(*stream, chunk);
        }
        let tail = splitter.finish();
        (seen, tail)
    }

    use OutputStream::{Stderr, Stdout};

    #[test]
    fn lines_are_split_across_chunks_and_the_partial_last_line_is_kept() {
        let (seen, tail) = split(&[
            (Stdout, b"hel"),
            (Stdout, b"lo\nwor"),
            (Stderr, b"oops\r\n"),
            (Stdout, b"ld\n\nno newline"),
        ]);
        let expected = [
            (Stdout, "hello"),
            (Stderr, "oops"),
            (Stdout, "world"),
            (Stdout, ""),
            (Stdout, "no newline"),
        ];
        let expected: Vec<_> = expected.iter().map(|(s, t)| (*s, t.to_string())).collect();
        assert_eq!(seen, expected);
        assert_eq!(tail, ["hello", "oops", "world", "", "no newline"]);
    }

    #[test]
    fn a_partial_line_of_one_stream_does_not_swallow_the_other() {
        let (seen, _) = split(&[(Stdout, b"progress 1"), (Stderr, b"warn\n")]);
        assert_eq!(
            seen,
            [
                (Stderr, "warn".to_owned()),
                (Stdout, "progress 1".to_owned())
            ]
        );
    }

    #[test]
    fn only_the_last_lines_are_kept_for_the_error() {
        let output: String = (1..=50).map(|n| format!("line {n}\n")).collect();
        let (seen, tail) = split(&[(Stdout, output.as_bytes())]);
        assert_eq!(seen.len(), 50);
        let expected: Vec<String> = (31..=50).map(|n| format!("line {n}")).collect();
        assert_eq!(tail, expected);
    }

    #[test]
    fn endless_lines_are_cut_and_invalid_utf8_is_replaced() {
        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        let (seen, tail) = split(&[(Stdout, &long), (Stdout, b"\xff\n")]);
        let lengths: Vec<usize> = seen.iter().map(|(_, t)| t.len()).collect();
        assert_eq!(
            lengths,
            [MAX_LINE_BYTES, MAX_LINE_BYTES, 10 + "\u{fffd}".len()]
        );
        assert!(seen[2].1.ends_with('\u{fffd}'));
        assert_eq!(tail[0].chars().count(), MAX_TAIL_LINE_CHARS + 1);
    }
}
