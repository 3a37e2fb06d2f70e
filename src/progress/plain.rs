//! BuildKit's plain progress, for logs and CI: every event a numbered line.
//!
//! ```text
//! #7 [build 4/9] RUN mix deps.get --only prod
//! #7 0.312 All dependencies are up to date
//! #7 DONE 1.2s
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Reporter, VertexId};

pub struct PlainReporter<W: Write + Send> {
    state: Mutex<State<W>>,
}

struct State<W> {
    out: W,
    started: HashMap<VertexId, Instant>,
}

impl<W: Write + Send> PlainReporter<W> {
    pub fn new(out: W) -> Self {
        PlainReporter {
            state: Mutex::new(State {
                out,
                started: HashMap::new(),
            }),
        }
    }

    /// Writes a line; a reporter that cannot write (a closed pipe) keeps the build going.
    fn with(&self, f: impl FnOnce(&mut State<W>) -> std::io::Result<()>) {
        if let Ok(mut state) = self.state.lock() {
            let _ = f(&mut state);
            let _ = state.out.flush();
        }
    }

    /// The writer back, for tests.
    pub fn into_inner(self) -> Option<W> {
        self.state.into_inner().ok().map(|s| s.out)
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl<W: Write + Send> Reporter for PlainReporter<W> {
    fn started(&self, id: VertexId, name: &str) {
        self.with(|s| {
            s.started.insert(id, Instant::now());
            writeln!(s.out, "\n#{id} {name}")
        });
    }

    fn cached(&self, id: VertexId, name: &str) {
        self.with(|s| writeln!(s.out, "\n#{id} {name}\n#{id} CACHED"));
    }

    fn log(&self, id: VertexId, line: &str) {
        self.with(|s| {
            let elapsed = s
                .started
                .get(&id)
                .map(|t| t.elapsed().as_secs_f64())
                .unwrap_or(0.0);
            writeln!(
                s.out,
                "#{id} {elapsed:.3} {}",
                line.trim_end_matches(['\r', '\n'])
            )
        });
    }

    fn done(&self, id: VertexId, elapsed: Duration) {
        self.with(|s| writeln!(s.out, "#{id} DONE {}", seconds(elapsed)));
    }

    fn failed(&self, id: VertexId, elapsed: Duration) {
        self.with(|s| writeln!(s.out, "#{id} ERROR after {}", seconds(elapsed)));
    }

    fn warning(&self, message: &str) {
        self.with(|s| writeln!(s.out, "WARNING: {message}"));
    }

    fn summary(&self, line: &str) {
        self.with(|s| writeln!(s.out, "{line}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_lines() {
        let r = PlainReporter::new(Vec::new());
        r.started(1, "[build 1/3] FROM debian");
        r.log(1, "resolved sha256:abc\n");
        r.done(1, Duration::from_millis(1234));
        r.cached(2, "[build 2/3] WORKDIR /app");
        r.warning("build-arg FOO was not consumed");
        let out = String::from_utf8(r.into_inner().unwrap()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "#1 [build 1/3] FROM debian");
        assert!(
            lines[2].starts_with("#1 0.0") && lines[2].ends_with(" resolved sha256:abc"),
            "{}",
            lines[2]
        );
        assert_eq!(lines[3], "#1 DONE 1.2s");
        assert_eq!(
            &lines[5..],
            [
                "#2 [build 2/3] WORKDIR /app",
                "#2 CACHED",
                "WARNING: build-arg FOO was not consumed"
            ]
        );
    }
}
