//! RFC 6902 JSON patch (`application/json-patch+json`) with upstream's limits and messages.

use serde_json::{Map, Value};

use super::{go_kind, json_equal, PatchError, MAX_JSON_PATCH_OPERATIONS};

/// Applies the operations of `patch` in order to a copy of `doc`; on any error the whole
/// patch fails and nothing is returned, so a patch applies atomically.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = patch else {
        return Err(PatchError::Invalid(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            go_kind(patch)
        )));
    };
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            count: ops.len(),
            max: MAX_JSON_PATCH_OPERATIONS,
        });
    }
    // Decode every operation before applying any, as upstream decodes the patch first.
    let ops = ops
        .iter()
        .map(|op| match op {
            Value::Object(op) => Ok(op),
            other => Err(PatchError::Invalid(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
                go_kind(other)
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut doc = doc.clone();
    for op in ops {
        apply(&mut doc, op)?;
    }
    Ok(doc)
}

fn apply(doc: &mut Value, op: &Map<String, Value>) -> Result<(), PatchError> {
    let kind = op.get("op").and_then(Value::as_str).unwrap_or("unknown");
    match kind {
        "add" => {
            let path = member(op, kind, "path")?;
            let value = value(op, kind)?;
            add(doc, kind, path, value)
        }
        "remove" => {
            let path = member(op, kind, "path")?;
            remove(doc, kind, path).map(drop)
        }
        "replace" => {
            let path = member(op, kind, "path")?;
            let value = value(op, kind)?;
            let target = pointer(kind, path)?;
            let slot = locate_mut(doc, &target).map_err(|e| {
                PatchError::PathNotFound(format!(
                    "replace operation does not apply: doc is missing key: {path}: {e}"
                ))
            })?;
            *slot = value;
            Ok(())
        }
        "move" => {
            let from = member(op, kind, "from")?;
            let path = member(op, kind, "path")?;
            if from == path {
                // Moving a value onto itself is a no-op, but it must exist.
                return get(doc, kind, from).map(drop);
            }
            if path.starts_with(from) && path.as_bytes().get(from.len()) == Some(&b'/') {
                return Err(PatchError::Unprocessable(format!(
                    "move operation does not apply: from {from:?} is a proper prefix of path {path:?}"
                )));
            }
            let value = remove(doc, kind, from)?;
            add(doc, kind, path, value)
        }
        "copy" => {
            let from = member(op, kind, "from")?;
            let path = member(op, kind, "path")?;
            let value = get(doc, kind, from)?.clone();
            add(doc, kind, path, value)
        }
        "test" => {
            let path = member(op, kind, "path")?;
            let want = value(op, kind)?;
            let target = pointer(kind, path)?;
            let failed =
                || PatchError::TestFailed(format!("testing value {path} failed: test failed"));
            match locate(doc, &target) {
                Ok(got) if json_equal(got, &want) => Ok(()),
                Ok(_) => Err(failed()),
                // A missing key compares unequal; a missing parent is a missing path.
                Err(Missing::Key) => Err(failed()),
                Err(e) => Err(PatchError::PathNotFound(format!(
                    "test operation does not apply: is missing path: {path}: {e}"
                ))),
            }
        }
        other => Err(PatchError::Unprocessable(format!(
            "Unexpected kind: {other}"
        ))),
    }
}

/// A string member (`path`, `from`) of an operation.
fn member<'a>(op: &'a Map<String, Value>, kind: &str, name: &str) -> Result<&'a str, PatchError> {
    op.get(name).and_then(Value::as_str).ok_or_else(|| {
        PatchError::Unprocessable(format!(
            "{kind} operation failed to decode {name}: operation missing {name} field: missing value"
        ))
    })
}

/// The `value` member, which RFC 6902 requires for add, replace and test (`null` counts).
fn value(op: &Map<String, Value>, kind: &str) -> Result<Value, PatchError> {
    op.get("value").cloned().ok_or_else(|| {
        PatchError::Unprocessable(format!(
            "{kind} operation failed to decode value: operation, missing value field: missing value"
        ))
    })
}

/// The reference tokens of an RFC 6901 JSON pointer, with `~1` and `~0` unescaped.
fn pointer(kind: &str, path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let invalid = || {
        PatchError::Unprocessable(format!(
            "{kind} operation failed to decode path: invalid JSON pointer {path:?}"
        ))
    };
    let rest = path.strip_prefix('/').ok_or_else(invalid)?;
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                match c {
                    '~' => match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(invalid()),
                    },
                    c => out.push(c),
                }
            }
            Ok(out)
        })
        .collect()
}

/// Why a pointer did not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// A parent along the way is absent or a scalar.
    Path,
    /// The last object key is absent.
    Key,
    /// An array index that is malformed or out of range.
    Index,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Path | Self::Key => "missing value",
            Self::Index => "invalid index referenced",
        })
    }
}

/// An array index token: decimal without leading zeros, or negative counting from the end
/// (upstream's json-patch accepts negative indices). `extra` is 1 when inserting, because
/// an insert may target one past the last element.
fn index(token: &str, len: usize, extra: usize) -> Result<usize, Missing> {
    let (negative, digits) = match token.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, token),
    };
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return Err(Missing::Index);
    }
    let n: usize = digits.parse().map_err(|_| Missing::Index)?;
    let bound = len + extra;
    let idx = if negative {
        bound
            .checked_sub(n)
            .filter(|_| n > 0)
            .ok_or(Missing::Index)?
    } else {
        n
    };
    if idx < bound {
        Ok(idx)
    } else {
        Err(Missing::Index)
    }
}

fn locate<'a>(doc: &'a Value, tokens: &[String]) -> Result<&'a Value, Missing> {
    let mut cur = doc;
    for (i, token) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        cur = match cur {
            Value::Object(m) => match m.get(token) {
                Some(v) => v,
                None if last => return Err(Missing::Key),
                None => return Err(Missing::Path),
            },
            Value::Array(a) => &a[index(token, a.len(), 0)?],
            _ => return Err(Missing::Path),
        };
    }
    Ok(cur)
}

fn locate_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, Missing> {
    let mut cur = doc;
    for (i, token) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        cur = match cur {
            Value::Object(m) => match m.get_mut(token) {
                Some(v) => v,
                None if last => return Err(Missing::Key),
                None => return Err(Missing::Path),
            },
            Value::Array(a) => {
                let i = index(token, a.len(), 0)?;
                &mut a[i]
            }
            _ => return Err(Missing::Path),
        };
    }
    Ok(cur)
}

fn get<'a>(doc: &'a Value, kind: &str, from: &str) -> Result<&'a Value, PatchError> {
    let tokens = pointer(kind, from)?;
    locate(doc, &tokens).map_err(|e| {
        PatchError::PathNotFound(format!(
            "{kind} operation does not apply: doc is missing from path: {from}: {e}"
        ))
    })
}

fn add(doc: &mut Value, kind: &str, path: &str, value: Value) -> Result<(), PatchError> {
    let mut tokens = pointer(kind, path)?;
    let Some(last) = tokens.pop() else {
        *doc = value;
        return Ok(());
    };
    let missing = |e: Missing| {
        PatchError::PathNotFound(format!(
            "{kind} operation does not apply: doc is missing path: \"{path}\": {e}"
        ))
    };
    match locate_mut(doc, &tokens).map_err(missing)? {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                index(&last, a.len(), 1).map_err(|e| {
                    PatchError::PathNotFound(format!(
                        "error in {kind} for path: '{path}': Unable to access invalid index: {last}: {e}"
                    ))
                })?
            };
            a.insert(i, value);
            Ok(())
        }
        _ => Err(missing(Missing::Path)),
    }
}

fn remove(doc: &mut Value, kind: &str, path: &str) -> Result<Value, PatchError> {
    let mut tokens = pointer(kind, path)?;
    let missing = |e: Missing| {
        PatchError::PathNotFound(format!(
            "{kind} operation does not apply: doc is missing path: \"{path}\": {e}"
        ))
    };
    let Some(last) = tokens.pop() else {
        // The root has no parent to remove it from.
        return Err(missing(Missing::Path));
    };
    match locate_mut(doc, &tokens).map_err(missing)? {
        Value::Object(m) => m.remove(&last).ok_or_else(|| {
            PatchError::PathNotFound(format!(
                "error in {kind} for path: '{path}': Unable to remove nonexistent key: {last}: missing value"
            ))
        }),
        Value::Array(a) => {
            let i = index(&last, a.len(), 0).map_err(|e| {
                PatchError::PathNotFound(format!(
                    "error in {kind} for path: '{path}': Unable to access invalid index: {last}: {e}"
                ))
            })?;
            Ok(a.remove(i))
        }
        _ => Err(missing(Missing::Path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A predicate over the error a case expects.
    type Check = fn(&PatchError) -> bool;

    fn doc() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web", "a/b": "x", "m~n": "y"}},
            "spec": {"replicas": 1, "containers": [{"name": "app"}, {"name": "sidecar"}]}
        })
    }

    #[test]
    fn operations_apply_as_rfc_6902_describes() {
        let cases = [
            (
                "add sets a new key",
                json!([{"op": "add", "path": "/spec/paused", "value": true}]),
                json!({"paused": true}),
                "/spec",
            ),
            (
                "add replaces an existing key",
                json!([{"op": "add", "path": "/spec/replicas", "value": 3}]),
                json!(3),
                "/spec/replicas",
            ),
            (
                "add inserts before an index",
                json!([{"op": "add", "path": "/spec/containers/1", "value": {"name": "mid"}}]),
                json!(["app", "mid", "sidecar"]),
                "names",
            ),
            (
                "dash appends to an array",
                json!([{"op": "add", "path": "/spec/containers/-", "value": {"name": "last"}}]),
                json!(["app", "sidecar", "last"]),
                "names",
            ),
            (
                "add may target one past the end",
                json!([{"op": "add", "path": "/spec/containers/2", "value": {"name": "end"}}]),
                json!(["app", "sidecar", "end"]),
                "names",
            ),
            (
                "remove deletes an array item",
                json!([{"op": "remove", "path": "/spec/containers/0"}]),
                json!(["sidecar"]),
                "names",
            ),
            (
                "replace swaps a value",
                json!([{"op": "replace", "path": "/spec/containers/1/name", "value": "log"}]),
                json!(["app", "log"]),
                "names",
            ),
            (
                "move relocates a value",
                json!([{"op": "move", "from": "/spec/containers/0", "path": "/spec/containers/-"}]),
                json!(["sidecar", "app"]),
                "names",
            ),
            (
                "copy duplicates a value",
                json!([{"op": "copy", "from": "/spec/containers/1", "path": "/spec/containers/0"}]),
                json!(["sidecar", "app", "sidecar"]),
                "names",
            ),
            (
                "tilde one escapes a slash",
                json!([{"op": "replace", "path": "/metadata/labels/a~1b", "value": "z"}]),
                json!("z"),
                "/metadata/labels/a~1b",
            ),
            (
                "tilde zero escapes a tilde",
                json!([{"op": "remove", "path": "/metadata/labels/m~0n"}]),
                json!({"app": "web", "a/b": "x"}),
                "/metadata/labels",
            ),
            (
                "negative index counts from the end like upstream",
                json!([{"op": "remove", "path": "/spec/containers/-1"}]),
                json!(["app"]),
                "names",
            ),
            (
                "test passes before a change",
                json!([
                    {"op": "test", "path": "/spec/replicas", "value": 1.0},
                    {"op": "replace", "path": "/spec/replicas", "value": 5}
                ]),
                json!(5),
                "/spec/replicas",
            ),
            (
                "move onto itself changes nothing",
                json!([{"op": "move", "from": "/spec/replicas", "path": "/spec/replicas"}]),
                json!(1),
                "/spec/replicas",
            ),
        ];
        for (name, patch, want, at) in cases {
            let out = json_patch(&doc(), &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = if at == "names" {
                json!(out["spec"]["containers"]
                    .as_array()
                    .expect("containers")
                    .iter()
                    .map(|c| c["name"].clone())
                    .collect::<Vec<_>>())
            } else if at == "/spec" {
                json!({"paused": out["spec"]["paused"]})
            } else {
                out.pointer(at).cloned().unwrap_or(Value::Null)
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn failing_operations_are_reported_with_their_kind() {
        let cases: [(&str, Value, Check); 12] = [
            (
                "remove of a missing key",
                json!([{"op": "remove", "path": "/spec/missing"}]),
                |e| matches!(e, PatchError::PathNotFound(_)),
            ),
            (
                "replace of a missing key",
                json!([{"op": "replace", "path": "/spec/missing", "value": 1}]),
                |e| matches!(e, PatchError::PathNotFound(_)),
            ),
            (
                "add under a missing parent",
                json!([{"op": "add", "path": "/status/phase", "value": "Running"}]),
                |e| matches!(e, PatchError::PathNotFound(_)),
            ),
            (
                "add past the end of an array",
                json!([{"op": "add", "path": "/spec/containers/3", "value": {}}]),
                |e| matches!(e, PatchError::PathNotFound(_)),
            ),
            (
                "index with a leading zero",
                json!([{"op": "remove", "path": "/spec/containers/01"}]),
                |e| matches!(e, PatchError::PathNotFound(_)),
            ),
            (
                "dash outside add",
                json!([{"op": "replace", "path": "/spec/containers/-", "value": {}}]),
                |e| matches!(e, PatchError::PathNotFound(_)),
            ),
            (
                "test of a different value",
                json!([{"op": "test", "path": "/spec/replicas", "value": 2}]),
                |e| matches!(e, PatchError::TestFailed(m) if m == "testing value /spec/replicas failed: test failed"),
            ),
            (
                "unknown operation",
                json!([{"op": "merge", "path": "/spec"}]),
                |e| matches!(e, PatchError::Unprocessable(m) if m == "Unexpected kind: merge"),
            ),
            (
                "add without a value",
                json!([{"op": "add", "path": "/spec/x"}]),
                |e| matches!(e, PatchError::Unprocessable(_)),
            ),
            (
                "pointer without a leading slash",
                json!([{"op": "add", "path": "spec", "value": 1}]),
                |e| matches!(e, PatchError::Unprocessable(_)),
            ),
            (
                "move into its own child",
                json!([{"op": "move", "from": "/spec", "path": "/spec/inner"}]),
                |e| matches!(e, PatchError::Unprocessable(_)),
            ),
            (
                "patch that is not an array",
                json!({"op": "add"}),
                |e| matches!(e, PatchError::Invalid(m) if m.contains("cannot unmarshal object")),
            ),
        ];
        for (name, patch, check) in cases {
            match json_patch(&doc(), &patch) {
                Err(e) => assert!(check(&e), "{name}: unexpected error {e:?}"),
                Ok(v) => panic!("{name}: expected an error, got {v}"),
            }
        }
    }

    #[test]
    fn a_failed_patch_applies_none_of_its_operations() {
        let original = doc();
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 9},
            {"op": "test", "path": "/metadata/name", "value": "other"}
        ]);
        assert!(matches!(
            json_patch(&original, &patch),
            Err(PatchError::TestFailed(_))
        ));
        assert_eq!(original, doc());
    }

    #[test]
    fn more_than_ten_thousand_operations_are_too_many() {
        let op = json!({"op": "test", "path": "/metadata/name", "value": "web"});
        let at_limit = Value::Array(vec![op.clone(); MAX_JSON_PATCH_OPERATIONS]);
        assert!(json_patch(&doc(), &at_limit).is_ok());
        let over = Value::Array(vec![op; MAX_JSON_PATCH_OPERATIONS + 1]);
        assert_eq!(
            json_patch(&doc(), &over),
            Err(PatchError::TooManyOperations {
                count: 10_001,
                max: 10_000
            })
        );
    }

    #[test]
    fn the_empty_pointer_addresses_the_whole_document() {
        let out = json_patch(
            &doc(),
            &json!([
                {"op": "test", "path": "", "value": doc()},
                {"op": "replace", "path": "", "value": {"kind": "Pod"}}
            ]),
        )
        .expect("root replace applies");
        assert_eq!(out, json!({"kind": "Pod"}));
        assert!(matches!(
            json_patch(&doc(), &json!([{"op": "remove", "path": ""}])),
            Err(PatchError::PathNotFound(_))
        ));
    }

    #[test]
    fn test_of_null_matches_an_explicit_null_only() {
        let d = json!({"a": null});
        assert!(json_patch(&d, &json!([{"op": "test", "path": "/a", "value": null}])).is_ok());
        assert!(matches!(
            json_patch(&d, &json!([{"op": "test", "path": "/b", "value": null}])),
            Err(PatchError::TestFailed(_))
        ));
    }
}
