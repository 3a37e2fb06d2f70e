//! BuildKit's AST dump (`Node.Dump()`, FORMAT.md §2): one s-expression per instruction,
//! `(keyword ["--flag" …] "arg" …)`, each value quoted as Go's `strconv.Quote` does.

use super::text::quote_into;
use super::{Ast, Node};

impl Ast {
    /// BuildKit's `Node.Dump()` of every instruction, one line each, ending in `\n`.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push('(');
            node.dump_into(&mut out);
            out.push_str(")\n");
        }
        if out.is_empty() {
            // Go's `TrimSpace("") + "\n"`.
            out.push('\n');
        }
        out
    }
}

impl Node {
    /// This instruction as BuildKit dumps it, without the surrounding parentheses:
    /// `run ["--mount=a"] "make"`, `onbuild (run "x")`.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        self.dump_into(&mut out);
        out
    }

    fn dump_into(&self, out: &mut String) {
        // Go builds `keyword + " " + part…` and trims it: only an empty keyword (the empty
        // instruction, dumped as `""`) leaves a space to trim.
        out.push_str(&self.keyword);
        let mut separator = !self.keyword.is_empty();
        let mut space = |out: &mut String| {
            if separator {
                out.push(' ');
            }
            separator = true;
        };
        if !self.flags.is_empty() {
            space(out);
            out.push('[');
            for (i, flag) in self.flags.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                quote_into(out, flag);
            }
            out.push(']');
        }
        for arg in &self.args {
            space(out);
            quote_into(out, arg);
        }
        if let Some(next) = &self.next {
            space(out);
            out.push('(');
            next.dump_into(out);
            out.push(')');
        }
    }
}
