//! The image configuration (`application/vnd.oci.image.config.v1+json`, which Docker reads
//! too). It is kept as a JSON document so fields imgbuild does not model (Docker's
//! `Healthcheck`, `OnBuild`, `Shell`, `container_config`, anything newer) survive a round
//! trip through a base image; typed accessors read and write the fields it does model.

use std::collections::BTreeMap;

use oci_spec::image::{Digest, History, HistoryBuilder};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Platform;
use super::error::{Error, Result};
use super::json::canonical_json;

/// Docker's `HEALTHCHECK`, as stored in `config.Healthcheck` (durations in nanoseconds,
/// zero meaning "inherit").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    doc: Map<String, Value>,
}

/// RFC 3339 time of a Unix timestamp, as `created` fields hold it.
pub fn rfc3339(epoch: i64) -> Result<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch)
        .map_err(|e| Error::invalid(format!("source date epoch {epoch} is out of range: {e}")))?;
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::invalid(format!("formatting time {epoch}: {e}")))
}

impl ImageConfig {
    /// An empty config for `FROM scratch`: no layers, no history, created at `epoch`.
    pub fn new(platform: &Platform, epoch: i64) -> Result<Self> {
        let mut config = ImageConfig { doc: Map::new() };
        config.set_platform(platform);
        config.set_created(epoch)?;
        config
            .doc
            .insert("config".into(), Value::Object(Map::new()));
        config.set_diff_ids(&[]);
        config
            .doc
            .insert("history".into(), Value::Array(Vec::new()));
        Ok(config)
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(doc)) => Ok(ImageConfig { doc }),
            Ok(_) => Err(Error::invalid("image config is not a JSON object")),
            Err(e) => Err(Error::invalid(format!(
                "image config is not valid JSON: {e}"
            ))),
        }
    }

    /// The config as written: sorted keys, no whitespace, so equal configs are equal bytes.
    pub fn to_json(&self) -> Vec<u8> {
        canonical_json(&Value::Object(self.doc.clone()))
    }

    /// The whole document, including fields imgbuild does not model.
    pub fn as_json(&self) -> &Map<String, Value> {
        &self.doc
    }

    pub fn created(&self) -> Option<&str> {
        self.doc.get("created").and_then(Value::as_str)
    }

    pub fn set_created(&mut self, epoch: i64) -> Result<()> {
        self.doc
            .insert("created".into(), Value::String(rfc3339(epoch)?));
        Ok(())
    }

    pub fn os(&self) -> Option<&str> {
        self.doc.get("os").and_then(Value::as_str)
    }

    pub fn architecture(&self) -> Option<&str> {
        self.doc.get("architecture").and_then(Value::as_str)
    }

    pub fn set_platform(&mut self, platform: &Platform) {
        self.doc.insert("os".into(), platform.os.clone().into());
        self.doc
            .insert("architecture".into(), platform.architecture.clone().into());
        match &platform.variant {
            Some(v) => self.doc.insert("variant".into(), v.clone().into()),
            None => self.doc.remove("variant"),
        };
    }

    /// `rootfs.diff_ids`: the uncompressed digest of every layer, bottom first.
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        let rootfs = self
            .doc
            .get("rootfs")
            .ok_or_else(|| Error::invalid("image config has no rootfs"))?;
        if rootfs.get("type").and_then(Value::as_str) != Some("layers") {
            return Err(Error::invalid(
                "image config's rootfs.type is not \"layers\"",
            ));
        }
        match rootfs.get("diff_ids") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(ids) => serde_json::from_value(ids.clone())
                .map_err(|e| Error::invalid(format!("image config's rootfs.diff_ids: {e}"))),
        }
    }

    pub fn set_diff_ids(&mut self, diff_ids: &[Digest]) {
        let ids = diff_ids
            .iter()
            .map(|d| Value::String(d.to_string()))
            .collect();
        let mut rootfs = Map::new();
        rootfs.insert("type".into(), "layers".into());
        rootfs.insert("diff_ids".into(), Value::Array(ids));
        self.doc.insert("rootfs".into(), Value::Object(rootfs));
    }

    pub fn history(&self) -> Result<Vec<History>> {
        match self.doc.get("history") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(h) => serde_json::from_value(h.clone())
                .map_err(|e| Error::invalid(format!("image config's history: {e}"))),
        }
    }

    /// Appends a history entry for one instruction, dated like the config. `empty_layer`
    /// marks instructions that made no layer (ENV, CMD, …).
    pub fn push_history(&mut self, created_by: &str, empty_layer: bool) -> Result<()> {
        self.push_history_entry(created_by, empty_layer, None)
    }

    /// [`Self::push_history`] with a comment (BuildKit marks its entries
    /// `buildkit.dockerfile.v0`).
    pub fn push_history_with_comment(
        &mut self,
        created_by: &str,
        empty_layer: bool,
        comment: &str,
    ) -> Result<()> {
        self.push_history_entry(created_by, empty_layer, Some(comment))
    }

    fn push_history_entry(
        &mut self,
        created_by: &str,
        empty_layer: bool,
        comment: Option<&str>,
    ) -> Result<()> {
        let mut builder = HistoryBuilder::default().created_by(created_by.to_string());
        if let Some(comment) = comment {
            builder = builder.comment(comment.to_string());
        }
        if let Some(created) = self.created() {
            builder = builder.created(created.to_string());
        }
        if empty_layer {
            builder = builder.empty_layer(true);
        }
        let entry: History = builder
            .build()
            .map_err(|e| Error::invalid(format!("building a history entry: {e}")))?;
        let value = serde_json::to_value(entry)
            .map_err(|e| Error::invalid(format!("serialising a history entry: {e}")))?;
        match self.doc.get_mut("history") {
            Some(Value::Array(list)) => list.push(value),
            _ => {
                self.doc.insert("history".into(), Value::Array(vec![value]));
            }
        }
        Ok(())
    }

    /// The top-level `author` (MAINTAINER).
    pub fn set_author(&mut self, author: &str) {
        self.doc
            .insert("author".into(), Value::String(author.to_string()));
    }

    // ---- the runtime config (`config` object), with Docker's field names ----

    /// Docker's `ArgsEscaped`, which BuildKit sets with a shell-form CMD.
    pub fn set_args_escaped(&mut self, escaped: bool) {
        self.set("ArgsEscaped", Some(escaped).filter(|e| *e));
    }

    pub fn env(&self) -> Vec<String> {
        self.get("Env").unwrap_or_default()
    }

    pub fn set_env(&mut self, env: Vec<String>) {
        self.set("Env", Some(env));
    }

    /// Sets one variable as `ENV` does: replaces it in place or appends it.
    pub fn set_env_var(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        set_env_entry(&mut env, format!("{key}={value}"));
        self.set_env(env);
    }

    pub fn cmd(&self) -> Option<Vec<String>> {
        self.get("Cmd")
    }

    pub fn set_cmd(&mut self, cmd: Option<Vec<String>>) {
        self.set("Cmd", cmd);
    }

    pub fn entrypoint(&self) -> Option<Vec<String>> {
        self.get("Entrypoint")
    }

    pub fn set_entrypoint(&mut self, entrypoint: Option<Vec<String>>) {
        self.set("Entrypoint", entrypoint);
    }

    pub fn working_dir(&self) -> Option<String> {
        self.get::<String>("WorkingDir").filter(|s| !s.is_empty())
    }

    pub fn set_working_dir(&mut self, dir: Option<String>) {
        self.set("WorkingDir", dir);
    }

    pub fn user(&self) -> Option<String> {
        self.get::<String>("User").filter(|s| !s.is_empty())
    }

    pub fn set_user(&mut self, user: Option<String>) {
        self.set("User", user);
    }

    /// `ExposedPorts` keys, e.g. `80/tcp`.
    pub fn exposed_ports(&self) -> Vec<String> {
        self.get_set("ExposedPorts")
    }

    pub fn add_exposed_port(&mut self, port: &str) {
        self.add_to_set("ExposedPorts", port);
    }

    pub fn volumes(&self) -> Vec<String> {
        self.get_set("Volumes")
    }

    pub fn add_volume(&mut self, path: &str) {
        self.add_to_set("Volumes", path);
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        self.get("Labels").unwrap_or_default()
    }

    pub fn set_label(&mut self, key: &str, value: &str) {
        let mut labels = self.labels();
        labels.insert(key.to_string(), value.to_string());
        self.set("Labels", Some(labels));
    }

    pub fn stop_signal(&self) -> Option<String> {
        self.get("StopSignal")
    }

    pub fn set_stop_signal(&mut self, signal: Option<String>) {
        self.set("StopSignal", signal);
    }

    pub fn healthcheck(&self) -> Option<Healthcheck> {
        self.get("Healthcheck")
    }

    pub fn set_healthcheck(&mut self, healthcheck: Option<Healthcheck>) {
        self.set("Healthcheck", healthcheck);
    }

    pub fn on_build(&self) -> Vec<String> {
        self.get("OnBuild").unwrap_or_default()
    }

    pub fn set_on_build(&mut self, triggers: Vec<String>) {
        self.set("OnBuild", Some(triggers).filter(|t| !t.is_empty()));
    }

    pub fn shell(&self) -> Option<Vec<String>> {
        self.get("Shell")
    }

    pub fn set_shell(&mut self, shell: Option<Vec<String>>) {
        self.set("Shell", shell);
    }

    fn runtime(&self) -> Option<&Map<String, Value>> {
        self.doc.get("config").and_then(Value::as_object)
    }

    /// Runs `f` on the runtime config object, creating it if absent or malformed.
    fn with_runtime<R>(&mut self, f: impl FnOnce(&mut Map<String, Value>) -> R) -> R {
        let mut runtime = match self.doc.remove("config") {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let result = f(&mut runtime);
        self.doc.insert("config".into(), Value::Object(runtime));
        result
    }

    /// A runtime field, `None` when absent, null, or not of the expected shape.
    fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let value = self.runtime()?.get(key)?;
        serde_json::from_value(value.clone()).ok()
    }

    fn set<T: Serialize>(&mut self, key: &str, value: Option<T>) {
        let value = value.and_then(|v| serde_json::to_value(v).ok());
        self.with_runtime(|runtime| match value {
            Some(v) => runtime.insert(key.to_string(), v),
            None => runtime.remove(key),
        });
    }

    fn get_set(&self, key: &str) -> Vec<String> {
        self.runtime()
            .and_then(|r| r.get(key))
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn add_to_set(&mut self, key: &str, item: &str) {
        self.with_runtime(|runtime| {
            let mut set = match runtime.remove(key) {
                Some(Value::Object(set)) => set,
                _ => Map::new(),
            };
            set.insert(item.to_string(), Value::Object(Map::new()));
            runtime.insert(key.to_string(), Value::Object(set));
        });
    }
}

/// Sets `entry` (`KEY=VALUE`) in an environment list as `ENV` (BuildKit's `addEnv`) does:
/// it replaces the variable of its name in place, or is appended.
pub fn set_env_entry(env: &mut Vec<String>, entry: String) {
    fn name(e: &str) -> &str {
        e.split_once('=').map_or(e, |(k, _)| k)
    }
    match env.iter().position(|e| name(e) == name(&entry)) {
        Some(at) => env[at] = entry,
        None => env.push(entry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_env_entry_replaces_its_variable_in_place_or_is_appended() {
        let mut env = vec!["PATH=/bin".to_owned(), "HTTP_PROXY=from-env".to_owned()];
        for var in ["HTTP_PROXY=hp", "http_proxy=hp"] {
            set_env_entry(&mut env, var.to_owned());
        }
        assert_eq!(env, ["PATH=/bin", "HTTP_PROXY=hp", "http_proxy=hp"]);
        set_env_entry(&mut env, "BARE".to_owned());
        set_env_entry(&mut env, "BARE=set".to_owned());
        assert_eq!(env.last().map(String::as_str), Some("BARE=set"));
        assert_eq!(env.len(), 4);
    }

    const DOCKER_CONFIG: &str = r#"{"architecture":"amd64","config":{"Env":["PATH=/usr/bin","A=1"],"Cmd":["bash"],"Healthcheck":{"Test":["CMD","true"],"Interval":30000000000},"OnBuild":["RUN x"],"ArgsEscaped":true,"Image":"sha256:abc"},"container_config":{"Hostname":"x"},"created":"2024-01-01T00:00:00Z","docker_version":"20.10.0","history":[{"created":"2024-01-01T00:00:00Z","created_by":"/bin/sh -c #(nop) ADD file:x in / "}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"]}}"#;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let mut c = ImageConfig::from_json(DOCKER_CONFIG.as_bytes()).unwrap();
        let before: Value = serde_json::from_str(DOCKER_CONFIG).unwrap();
        let after: Value = serde_json::from_slice(&c.to_json()).unwrap();
        assert_eq!(before, after);

        c.set_env_var("A", "2");
        c.set_env_var("B", "3");
        c.set_cmd(Some(vec!["run".into()]));
        let after: Value = serde_json::from_slice(&c.to_json()).unwrap();
        assert_eq!(after["config"]["ArgsEscaped"], true);
        assert_eq!(after["config"]["OnBuild"][0], "RUN x");
        assert_eq!(after["container_config"]["Hostname"], "x");
        assert_eq!(after["docker_version"], "20.10.0");
        assert_eq!(c.env(), ["PATH=/usr/bin", "A=2", "B=3"]);
        assert_eq!(c.healthcheck().unwrap().interval, 30_000_000_000);
    }

    #[test]
    fn serialisation_is_canonical() {
        let mut a = ImageConfig::new(&Platform::linux_amd64(), 0).unwrap();
        a.set_label("z", "1");
        a.set_label("a", "2");
        a.add_exposed_port("80/tcp");
        a.set_user(Some("app".into()));
        let mut b = ImageConfig::new(&Platform::linux_amd64(), 0).unwrap();
        b.set_user(Some("app".into()));
        b.add_exposed_port("80/tcp");
        b.set_label("a", "2");
        b.set_label("z", "1");
        assert_eq!(a.to_json(), b.to_json());
        let text = String::from_utf8(a.to_json()).unwrap();
        assert!(text.starts_with(r#"{"architecture":"amd64","config":{"ExposedPorts":{"80/tcp":{}},"Labels":{"a":"2","z":"1"},"User":"app"},"created":"1970-01-01T00:00:00Z","#), "{text}");
        assert!(!text.contains(' '));
    }

    #[test]
    fn history_and_diff_ids() {
        let mut c = ImageConfig::new(&Platform::linux_amd64(), 1_700_000_000).unwrap();
        c.push_history("COPY . /app", false).unwrap();
        c.push_history("CMD [\"app\"]", true).unwrap();
        let h = c.history().unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].created().as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(h[1].empty_layer(), Some(true));
        let d = crate::oci::sha256_digest(b"x");
        c.set_diff_ids(std::slice::from_ref(&d));
        assert_eq!(c.diff_ids().unwrap(), [d]);
    }

    #[test]
    fn malformed_configs_are_errors() {
        assert!(ImageConfig::from_json(b"[1]").is_err());
        assert!(ImageConfig::from_json(b"{").is_err());
        let c = ImageConfig::from_json(br#"{"rootfs":{"type":"foo"}}"#).unwrap();
        assert!(c.diff_ids().is_err());
    }
}
