//! `--progress rawjson`: one JSON object per event on standard error, for programs (the CI
//! action reads it to write its job summary). Every object has `time` (RFC 3339, UTC) and
//! `event`; the other fields depend on it:
//!
//! ```text
//! {"time":…,"event":"started","vertex":7,"name":"[build 4/9] RUN mix deps.get"}
//! {"time":…,"event":"log","vertex":7,"line":"cache miss: mix.lock changed"}
//! {"time":…,"event":"cached","vertex":8,"name":"[build 5/9] RUN mix deps.compile"}
//! {"time":…,"event":"progress","vertex":9,"done":1024,"total":4096}
//! {"time":…,"event":"done","vertex":7,"seconds":1.25}       (also "failed")
//! {"time":…,"event":"warning","message":"…"}
//! {"time":…,"event":"summary","line":"…"}
//! {"time":…,"event":"outcome","digest":"sha256:…","image_id":"sha256:…","size":…,
//!  "layers":…,"cache_hits":…,"cache_misses":…,"seconds":…,"tags":[…]}
//! ```

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Outcome, Reporter, VertexId};

pub struct JsonReporter<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonReporter<W> {
    pub fn new(out: W) -> Self {
        JsonReporter {
            out: Mutex::new(out),
        }
    }

    /// The writer back, for tests.
    pub fn into_inner(self) -> Option<W> {
        self.out.into_inner().ok()
    }

    /// Writes one line; a reporter that cannot write (a closed pipe) keeps the build going.
    fn emit(&self, event: &str, fields: Value) {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut object = serde_json::Map::new();
        object.insert("time".into(), Value::String(time));
        object.insert("event".into(), Value::String(event.into()));
        if let Value::Object(fields) = fields {
            object.extend(fields);
        }
        let Ok(mut line) = serde_json::to_vec(&Value::Object(object)) else {
            return;
        };
        line.push(b'\n');
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(&line);
            let _ = out.flush();
        }
    }
}

impl<W: Write + Send> Reporter for JsonReporter<W> {
    fn started(&self, id: VertexId, name: &str) {
        self.emit("started", json!({"vertex": id, "name": name}));
    }

    fn cached(&self, id: VertexId, name: &str) {
        self.emit("cached", json!({"vertex": id, "name": name}));
    }

    fn log(&self, id: VertexId, line: &str) {
        let line = line.trim_end_matches(['\r', '\n']);
        self.emit("log", json!({"vertex": id, "line": line}));
    }

    fn progress(&self, id: VertexId, done: u64, total: Option<u64>) {
        self.emit(
            "progress",
            json!({"vertex": id, "done": done, "total": total}),
        );
    }

    fn done(&self, id: VertexId, elapsed: Duration) {
        self.emit(
            "done",
            json!({"vertex": id, "seconds": elapsed.as_secs_f64()}),
        );
    }

    fn failed(&self, id: VertexId, elapsed: Duration) {
        self.emit(
            "failed",
            json!({"vertex": id, "seconds": elapsed.as_secs_f64()}),
        );
    }

    fn warning(&self, message: &str) {
        self.emit("warning", json!({"message": message}));
    }

    fn summary(&self, line: &str) {
        self.emit("summary", json!({"line": line}));
    }

    fn outcome(&self, outcome: &Outcome) {
        self.emit(
            "outcome",
            serde_json::to_value(outcome).unwrap_or(Value::Null),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_per_event() {
        let r = JsonReporter::new(Vec::new());
        r.started(3, "[build 2/5] RUN echo \"hi\"");
        r.log(3, "cache miss: mix.lock changed\n");
        r.done(3, Duration::from_millis(1500));
        r.cached(4, "[build 3/5] COPY . .");
        r.warning("a warning");
        r.outcome(&Outcome {
            tags: vec!["app:1".into()],
            digest: "sha256:d".into(),
            image_id: "sha256:i".into(),
            size: 10,
            layers: 2,
            cache_hits: 1,
            cache_misses: 1,
            seconds: 2.5,
        });
        let out = String::from_utf8(r.into_inner().unwrap()).unwrap();
        let events: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 6);
        assert!(
            events
                .iter()
                .all(|e| e["time"].as_str().unwrap().ends_with('Z'))
        );
        assert_eq!(events[0]["event"], "started");
        assert_eq!(events[0]["name"], "[build 2/5] RUN echo \"hi\"");
        assert_eq!(events[1]["line"], "cache miss: mix.lock changed");
        assert_eq!(events[2]["seconds"], 1.5);
        assert_eq!(events[3]["event"], "cached");
        assert_eq!(events[3]["vertex"], 4);
        assert_eq!(events[4]["message"], "a warning");
        assert_eq!(events[5]["event"], "outcome");
        assert_eq!(events[5]["cache_hits"], 1);
        assert_eq!(events[5]["tags"][0], "app:1");
    }
}
