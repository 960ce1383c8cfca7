//! RFC 7386 JSON merge patch (`application/merge-patch+json`).

use serde_json::{Map, Value};

/// Applies `patch` to `doc`: objects merge key by key, `null` deletes, anything else replaces.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let mut out = doc.clone();
    apply(&mut out, patch);
    out
}

fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("target made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            apply(target.entry(key.as_str()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_the_rfc_7386_examples() {
        let cases = [
            (
                "changes a value",
                json!({"a": "b"}),
                json!({"a": "c"}),
                json!({"a": "c"}),
            ),
            (
                "adds a key",
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (
                "null deletes a key",
                json!({"a": "b"}),
                json!({"a": null}),
                json!({}),
            ),
            (
                "null deletes only its key",
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (
                "array replaces array",
                json!({"a": ["b"]}),
                json!({"a": "c"}),
                json!({"a": "c"}),
            ),
            (
                "value replaces array",
                json!({"a": "c"}),
                json!({"a": ["b"]}),
                json!({"a": ["b"]}),
            ),
            (
                "nested objects merge",
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                "arrays are replaced whole",
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                "array patch replaces document",
                json!(["a", "b"]),
                json!(["c", "d"]),
                json!(["c", "d"]),
            ),
            (
                "object patch replaces array document",
                json!(["a"]),
                json!({"a": "b"}),
                json!({"a": "b"}),
            ),
            (
                "scalar patch replaces object",
                json!({"a": "foo"}),
                json!("bar"),
                json!("bar"),
            ),
            (
                "null value in patch on absent key",
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                "null patch returns null",
                json!("string"),
                json!(null),
                json!(null),
            ),
            (
                "nulls inside a new object are dropped",
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (name, doc, patch, want) in cases {
            assert_eq!(merge_patch(&doc, &patch), want, "{name}");
        }
    }

    #[test]
    fn merge_patch_leaves_the_original_untouched() {
        let doc = json!({"metadata": {"labels": {"app": "web"}}});
        let out = merge_patch(
            &doc,
            &json!({"metadata": {"labels": {"app": null, "tier": "fe"}}}),
        );
        assert_eq!(out, json!({"metadata": {"labels": {"tier": "fe"}}}));
        assert_eq!(doc, json!({"metadata": {"labels": {"app": "web"}}}));
    }
}
