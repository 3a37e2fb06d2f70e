//! Canonical JSON for everything imgbuild writes (configs, manifests, indexes, archive
//! metadata): object keys sorted, no whitespace. oci-spec keeps annotations in a
//! `HashMap`, whose order changes from run to run; this makes the bytes stable anyway.

use serde::Serialize;
use serde_json::Value;

/// Serialises `value` with sorted keys and no whitespace.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising our own types and oci-spec's cannot fail: they hold only strings,
    // numbers, lists and maps with string keys.
    let mut value = serde_json::to_value(value).unwrap_or(Value::Null);
    sort_keys(&mut value);
    serde_json::to_vec(&value).unwrap_or_default()
}

fn sort_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, mut v) in entries {
                sort_keys(&mut v);
                map.insert(key, v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keys_are_sorted_at_every_level() {
        let mut m = HashMap::new();
        for k in ["b", "a", "c", "e", "d"] {
            m.insert(k, vec![HashMap::from([("y", 1), ("x", 2)])]);
        }
        let out = String::from_utf8(canonical_json(&m)).unwrap();
        assert_eq!(
            out,
            r#"{"a":[{"x":2,"y":1}],"b":[{"x":2,"y":1}],"c":[{"x":2,"y":1}],"d":[{"x":2,"y":1}],"e":[{"x":2,"y":1}]}"#
        );
    }
}
