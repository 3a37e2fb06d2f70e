//! What `--cache-to` exports: the journal of the steps a build used (ran, or found in a
//! cache), and the index made from it for one destination.

use std::collections::HashSet;

use super::{CacheIndex, CacheMode, CachedMount, CachedStep, StepKind, redact};
use crate::cache::{KeyInputs, LayerRecord};

/// A step a build used (ran or found in a cache), as `--cache-to` exports it.
#[derive(Debug, Clone)]
pub struct UsedStep {
    pub key: String,
    pub inputs: KeyInputs,
    pub position: String,
    pub kind: StepKind,
    /// A step of the stage that makes the image (all that `mode=min` exports).
    pub target: bool,
    pub result: UsedResult,
    /// The ids of the cache mounts a RUN used.
    pub mounts: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum UsedResult {
    /// The step's layer is a blob in the blob store (`None`: it changed no file).
    Layer(Option<LayerRecord>),
    /// A build-stage step whose layer is only in the engine: `diff_id` of the top layer of
    /// `image` (`None`: the step added no layer).
    Engine {
        image: String,
        diff_id: Option<String>,
    },
    /// A build-stage step the native executor ran or found: its layer is the upper
    /// directory of the snapshot kept under its key, written out when an export needs it.
    Snapshot,
}

/// Each cache mount the journal names, with the key of the last step that used it.
pub fn last_mount_uses(used: &[UsedStep]) -> Vec<(String, String)> {
    let mut last_use: Vec<(String, String)> = Vec::new();
    for step in used {
        for id in &step.mounts {
            last_use.retain(|(m, _)| m != id);
            last_use.push((id.clone(), step.key.clone()));
        }
    }
    last_use
}

/// The index a destination with `mode` gets: the steps the mode covers (each step's inputs
/// [`redact`]ed), the position of each, and with `mode=max` the cache mounts. Every step
/// must have its layer in the blob store by then.
pub fn index_of(
    used: &[UsedStep],
    mode: CacheMode,
    mounts: &[CachedMount],
) -> anyhow::Result<CacheIndex> {
    let mut index = CacheIndex::new();
    let mut seen = HashSet::new();
    for step in used {
        if mode == CacheMode::Min && !step.target {
            continue;
        }
        let UsedResult::Layer(layer) = &step.result else {
            anyhow::bail!("step {} has no layer to export", step.key);
        };
        if seen.insert((step.key.clone(), step.kind)) {
            index.steps.push(CachedStep {
                key: step.key.clone(),
                kind: step.kind,
                inputs: redact(&step.inputs),
                layer: layer.clone(),
            });
        }
        index
            .positions
            .insert(step.position.clone(), step.key.clone());
    }
    if mode == CacheMode::Max {
        index.mounts = mounts.to_vec();
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(key: &str, target: bool, result: UsedResult, mounts: &[&str]) -> UsedStep {
        UsedStep {
            key: key.into(),
            inputs: KeyInputs {
                instruction: format!("RUN {key}"),
                ..KeyInputs::default()
            },
            position: format!("position of {key}"),
            kind: StepKind::Engine,
            target,
            result,
            mounts: mounts.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn layer(digest: &str) -> LayerRecord {
        LayerRecord {
            digest: digest.into(),
            diff_id: digest.into(),
            size: 1,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }

    #[test]
    fn min_exports_the_target_stage_and_max_everything_once() {
        let journal = [
            used("a", false, UsedResult::Layer(Some(layer("sha256:1"))), &[]),
            used("b", true, UsedResult::Layer(None), &[]),
            // The same step used twice (two stages built alike) is exported once.
            used("b", true, UsedResult::Layer(None), &[]),
        ];
        let mount = CachedMount {
            id: "/root/.cache".into(),
            step: "a".into(),
            layer: layer("sha256:2"),
        };
        let min = index_of(&journal, CacheMode::Min, std::slice::from_ref(&mount)).unwrap();
        let keys = |index: &CacheIndex| {
            index
                .steps
                .iter()
                .map(|s| s.key.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&min), ["b"]);
        assert!(min.mounts.is_empty());
        let max = index_of(&journal, CacheMode::Max, std::slice::from_ref(&mount)).unwrap();
        assert_eq!(keys(&max), ["a", "b"]);
        assert_eq!(max.mounts, [mount]);
        assert_eq!(max.positions["position of a"], "a");
        assert_ne!(
            max.steps[0].inputs.instruction, "RUN a",
            "inputs are redacted"
        );
    }

    #[test]
    fn a_step_still_in_the_engine_cannot_be_exported() {
        let journal = [used(
            "a",
            true,
            UsedResult::Engine {
                image: "sha256:image".into(),
                diff_id: Some("sha256:d".into()),
            },
            &[],
        )];
        let err = index_of(&journal, CacheMode::Min, &[]).unwrap_err();
        assert!(err.to_string().contains("no layer to export"), "{err}");
    }

    #[test]
    fn a_mount_belongs_to_the_last_step_that_used_it() {
        let result = || UsedResult::Layer(None);
        let journal = [
            used("a", false, result(), &["m1", "m2"]),
            used("b", false, result(), &["m1"]),
        ];
        assert_eq!(
            last_mount_uses(&journal),
            [("m2".into(), "a".into()), ("m1".into(), "b".into())]
        );
    }
}
