//! Progress on a terminal: one line per step with a spinner, elapsed time and the running
//! step's last output line; finished steps stay as `✔`/`CACHED` lines.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Reporter, VertexId};

pub struct TtyReporter {
    multi: MultiProgress,
    bars: Mutex<HashMap<VertexId, (ProgressBar, String)>>,
}

impl Default for TtyReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl TtyReporter {
    pub fn new() -> Self {
        TtyReporter {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn running_style() -> ProgressStyle {
        ProgressStyle::with_template("{spinner:.cyan} {prefix} {elapsed:>4} {wide_msg:.dim}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
    }

    fn finished(&self, id: VertexId, line: impl FnOnce(&str) -> String) {
        if let Ok(mut bars) = self.bars.lock()
            && let Some((bar, name)) = bars.remove(&id)
        {
            bar.finish_and_clear();
            let _ = self.multi.println(line(&name));
        }
    }
}

fn truncate(line: &str, max: usize) -> String {
    let line = line.trim_end();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        line.chars()
            .take(max.saturating_sub(1))
            .chain(['…'])
            .collect()
    }
}

impl Reporter for TtyReporter {
    fn started(&self, id: VertexId, name: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(Self::running_style());
        bar.set_prefix(truncate(name, 70));
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(id, (bar, name.to_owned()));
        }
    }

    fn cached(&self, _id: VertexId, name: &str) {
        let _ = self
            .multi
            .println(format!("  CACHED {}", truncate(name, 90)));
    }

    fn log(&self, id: VertexId, line: &str) {
        // A blank line would wipe the last useful one from the step's line.
        if line.trim().is_empty() {
            return;
        }
        if let Ok(bars) = self.bars.lock()
            && let Some((bar, _)) = bars.get(&id)
        {
            bar.set_message(truncate(line, 60));
        }
    }

    fn progress(&self, id: VertexId, done: u64, total: Option<u64>) {
        let text = match total {
            Some(t) => format!(
                "{} / {}",
                indicatif::HumanBytes(done),
                indicatif::HumanBytes(t)
            ),
            None => indicatif::HumanBytes(done).to_string(),
        };
        self.log(id, &text);
    }

    fn done(&self, id: VertexId, elapsed: Duration) {
        self.finished(id, |name| {
            format!("  ✔ {} {:.1}s", truncate(name, 90), elapsed.as_secs_f64())
        });
    }

    fn failed(&self, id: VertexId, elapsed: Duration) {
        self.finished(id, |name| {
            format!("  ✘ {} {:.1}s", truncate(name, 90), elapsed.as_secs_f64())
        });
    }

    fn warning(&self, message: &str) {
        let _ = self.multi.println(format!("WARNING: {message}"));
    }

    fn summary(&self, line: &str) {
        let _ = self.multi.println(line);
    }
}
