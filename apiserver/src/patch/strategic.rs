//! Kubernetes strategic merge patch: a merge patch whose lists merge by key per the schema, with `$` directives.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::{go_kind, json_equal, PatchError};
use crate::typed::{ListType, SchemaNode};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

type Object = Map<String, Value>;

/// Applies a strategic merge patch to `doc` as `strategicpatch.StrategicMergePatch` does.
///
/// `schema` describes `doc`'s type; fields it does not know (or `None` for the whole
/// object) merge like a JSON merge patch, lists replaced whole, while `$patch` on maps,
/// `$retainKeys`, `$setElementOrder/` and `$deleteFromPrimitiveList/` still apply. No
/// directive key is left in the result.
pub fn strategic_merge_patch<S: SchemaNode>(
    doc: &Value,
    patch: &Value,
    schema: Option<&S>,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Invalid(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            go_kind(patch)
        )));
    };
    let original = match doc {
        Value::Object(m) => m.clone(),
        Value::Null => Object::new(),
        _ => return Err(PatchError::Invalid("invalid JSON document".into())),
    };
    merge_map(original, patch.clone(), schema).map(Value::Object)
}

/// How a list field merges.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListStrategy {
    /// Item by item: maps by the merge key, scalars as an ordered set when there is no key.
    Merge(Option<String>),
    /// The patch list replaces the original.
    Replace,
}

/// The patch strategy of a field other than `retainKeys` (which the patch itself carries
/// as `$retainKeys`), or an error when several remain, as upstream refuses.
fn field_strategy<S: SchemaNode>(field: Option<&S>) -> Result<Option<String>, PatchError> {
    let Some(field) = field else {
        return Ok(None);
    };
    let all = field.patch_strategies();
    let mut rest = all
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty() && *s != "retainKeys");
    match (rest.next(), rest.next()) {
        (first, None) => Ok(first.map(str::to_string)),
        _ => Err(PatchError::Directive(format!(
            "unexpected patch strategy: {all:?}"
        ))),
    }
}

/// The list strategy from `x-kubernetes-patch-strategy` and merge key; without a declared
/// strategy, the list type decides (a one-key map or a set merges, anything else replaces).
fn list_strategy<S: SchemaNode>(field: Option<&S>) -> Result<ListStrategy, PatchError> {
    let Some(node) = field else {
        return Ok(ListStrategy::Replace);
    };
    let single_map_key = || match node.list_type() {
        Some(ListType::Map(keys)) if keys.len() == 1 => keys.into_iter().next(),
        _ => None,
    };
    Ok(match field_strategy(field)?.as_deref() {
        Some("merge") => ListStrategy::Merge(node.patch_merge_key().or_else(single_map_key)),
        Some(_) => ListStrategy::Replace,
        None => match node.list_type() {
            Some(ListType::Set) => ListStrategy::Merge(None),
            Some(ListType::Map(_)) => match single_map_key() {
                Some(key) => ListStrategy::Merge(Some(key)),
                None => ListStrategy::Replace,
            },
            Some(ListType::Atomic) | None => ListStrategy::Replace,
        },
    })
}

/// The schema of a property, or of a map value when the node is a map.
fn child<S: SchemaNode>(schema: Option<&S>, name: &str) -> Option<S> {
    schema.and_then(|s| s.field(name).or_else(|| s.items()))
}

fn items<S: SchemaNode>(field: Option<&S>) -> Option<S> {
    field.and_then(SchemaNode::items)
}

fn unknown_patch_type(directive: &Value, map: &Object) -> PatchError {
    let shown = directive
        .as_str()
        .map_or_else(|| directive.to_string(), str::to_string);
    PatchError::Directive(format!(
        "unknown patch type: {shown} in map: {}",
        Value::Object(map.clone())
    ))
}

fn no_merge_key(map: &Object, key: &str) -> PatchError {
    PatchError::Directive(format!(
        "map: {} does not contain declared merge key: {key}",
        Value::Object(map.clone())
    ))
}

/// `suffix` of `$prefix/suffix`, or the bad-format error upstream gives for that prefix.
fn directive_target<'a>(key: &'a str, prefix: &str) -> Result<&'a str, PatchError> {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| {
            PatchError::Invalid(if prefix == SET_ELEMENT_ORDER {
                "invalid patch format of setElementOrder list".into()
            } else {
                "invalid patch format of primitive list".into()
            })
        })
}

/// Merges `patch` into `original`, both maps at the position `schema` describes.
fn merge_map<S: SchemaNode>(
    mut original: Object,
    mut patch: Object,
    schema: Option<&S>,
) -> Result<Object, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            // The rest of the patch map is the new value; it may still carry directives.
            Some("replace") => return merge_map(Object::new(), patch, schema),
            // Upstream leaves an emptied map, not an absent one.
            Some("delete") => return Ok(Object::new()),
            // The documented default, accepted where upstream would refuse it.
            Some("merge") => {}
            _ => return Err(unknown_patch_type(&directive, &patch)),
        }
    }
    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, schema)?;

    for (key, patch_value) in patch {
        let (key, delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            (
                directive_target(&key, DELETE_FROM_PRIMITIVE_LIST)?.to_string(),
                true,
            )
        } else {
            (key, false)
        };
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let field = child(schema, &key);
        let Some(slot) = original.get_mut(&key) else {
            if !delete_list {
                if let Some(v) = materialize(patch_value, field.as_ref())? {
                    original.insert(key, v);
                }
            }
            continue;
        };
        let current = std::mem::take(slot);
        let merged = match (current, patch_value) {
            (Value::Array(cur), Value::Array(p)) => Some(Value::Array(merge_list_field(
                cur,
                p,
                field.as_ref(),
                delete_list,
                &key,
            )?)),
            // Deletion lists only ever touch lists.
            (cur, _) if delete_list => Some(cur),
            (Value::Object(cur), Value::Object(p)) => {
                if field_strategy(field.as_ref())?.as_deref() == Some("replace") {
                    Some(Value::Object(merge_map(Object::new(), p, field.as_ref())?))
                } else {
                    Some(Value::Object(merge_map(cur, p, field.as_ref())?))
                }
            }
            (_, p) => materialize(p, field.as_ref())?,
        };
        match merged {
            Some(v) => {
                if let Some(slot) = original.get_mut(&key) {
                    *slot = v;
                }
            }
            None => {
                original.remove(&key);
            }
        }
    }
    Ok(original)
}

/// The value a patch value takes where the original has nothing: nulls and deleted maps
/// vanish, list items carrying `$patch` are dropped, nested directives are applied.
fn materialize<S: SchemaNode>(
    value: Value,
    schema: Option<&S>,
) -> Result<Option<Value>, PatchError> {
    Ok(match value {
        Value::Null => None,
        Value::Object(m) => {
            if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                None
            } else {
                Some(Value::Object(merge_map(Object::new(), m, schema)?))
            }
        }
        Value::Array(list) => Some(Value::Array(materialize_list(
            list,
            items(schema).as_ref(),
        )?)),
        scalar => Some(scalar),
    })
}

fn materialize_list<S: SchemaNode>(
    list: Vec<Value>,
    item: Option<&S>,
) -> Result<Vec<Value>, PatchError> {
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        match v {
            Value::Object(m) if m.contains_key(DIRECTIVE) => {}
            // A null item is data (an array element), not a deletion.
            Value::Null => out.push(Value::Null),
            v => out.extend(materialize(v, item)?),
        }
    }
    Ok(out)
}

/// `$retainKeys`: drops keys of `original` not listed; every key the patch sets must be listed.
fn apply_retain_keys(original: &mut Object, patch: &mut Object) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || PatchError::Invalid("invalid patch format of retainKeys".into());
    let Value::Array(retain) = retain else {
        return Err(bad());
    };
    let kept = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        let directive =
            k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER);
        if !v.is_null() && !directive && !kept(k) {
            return Err(bad());
        }
    }
    original.retain(|k, _| kept(k));
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's patch list (if any) and orders the result
/// as the directive lists, keeping server-only items near their old neighbours.
fn apply_set_element_order<S: SchemaNode>(
    original: &mut Object,
    patch: &mut Object,
    schema: Option<&S>,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive_key in keys {
        let order = patch
            .remove(&directive_key)
            .expect("key was collected from this map");
        let name = directive_target(&directive_key, SET_ELEMENT_ORDER)?.to_string();
        let bad_format =
            || PatchError::Invalid("invalid patch format of setElementOrder list".into());
        let Value::Array(order) = order else {
            return Err(bad_format());
        };
        let field = child(schema, &name);
        let strategy = list_strategy(field.as_ref())?;
        let merge_key = match &strategy {
            ListStrategy::Merge(key) => key.clone(),
            ListStrategy::Replace => field.as_ref().and_then(SchemaNode::patch_merge_key),
        };
        let key = merge_key.as_deref();
        // Taken out and put back below; on error the whole result is discarded anyway.
        let current = match original.remove(&name) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(other) => {
                return Err(PatchError::Directive(format!(
                    "expected a list for {name}, but received a {}",
                    go_kind(&other)
                )))
            }
        };
        let patch_list = match patch.remove(&name) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(other) => {
                return Err(PatchError::Directive(format!(
                    "expected a list for {name}, but received a {}",
                    go_kind(&other)
                )))
            }
        };
        if let Some(list) = &patch_list {
            check_order_matches(list, &order, key)?;
        }
        let server_order = Positions::of(current.as_deref().unwrap_or_default(), key);
        let merged = match (current, patch_list) {
            (Some(cur), None) => cur,
            (None, Some(p)) => materialize_list(p, items(field.as_ref()).as_ref())?,
            (Some(cur), Some(p)) => merge_list_field(cur, p, field.as_ref(), false, &name)?,
            (None, None) => continue,
        };
        let order_ids = Positions::of(&order, key);
        let (in_order, server_only) = order_ids.partition(merged, key);
        let ordered = normalize_order(in_order, server_only, &order_ids, &server_order, key);
        original.insert(name, Value::Array(ordered));
    }
    Ok(())
}

/// Upstream's check that the patch list's items appear in `$setElementOrder` in the same
/// relative order (deletions and other directive items aside).
fn check_order_matches(
    list: &[Value],
    order: &[Value],
    key: Option<&str>,
) -> Result<(), PatchError> {
    // Without a merge key, objects would be compared whole and never line up (upstream
    // cannot compare them either); only keyed or scalar lists are checked.
    let unkeyed_objects = key.is_none() && list.iter().any(Value::is_object);
    if list.is_empty() || order.is_empty() || unkeyed_objects {
        return Ok(());
    }
    let items: Vec<&Value> = list
        .iter()
        .filter(|v| !v.as_object().is_some_and(|m| m.contains_key(DIRECTIVE)))
        .collect();
    let id = |v: &Value| -> Result<Value, PatchError> {
        match (key, v) {
            (Some(k), Value::Object(m)) => m.get(k).cloned().ok_or_else(|| no_merge_key(m, k)),
            _ => Ok(v.clone()),
        }
    };
    let mut next = 0;
    for o in order {
        if next == items.len() {
            break;
        }
        if json_equal(&id(items[next])?, &id(o)?) {
            next += 1;
        }
    }
    if next < items.len() {
        return Err(PatchError::Directive(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            Value::Array(list.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

/// Merges two lists of a field according to its strategy; deletion lists always subtract.
fn merge_list_field<S: SchemaNode>(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: Option<&S>,
    delete_list: bool,
    name: &str,
) -> Result<Vec<Value>, PatchError> {
    let item = items(field);
    if delete_list {
        check_element_kinds(&original, &patch)?;
        let doomed: HashSet<String> = patch.iter().map(canonical).collect();
        return Ok(original
            .into_iter()
            .filter(|v| !doomed.contains(&canonical(v)))
            .collect());
    }
    match list_strategy(field)? {
        ListStrategy::Merge(key) => {
            merge_list(original, patch, item.as_ref(), key.as_deref(), name)
        }
        ListStrategy::Replace => materialize_list(patch, item.as_ref()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// The one element kind of both lists; lists of lists and mixed kinds cannot merge.
fn check_element_kinds(a: &[Value], b: &[Value]) -> Result<Option<Kind>, PatchError> {
    let mut seen = None;
    for v in a.iter().chain(b) {
        let kind = match v {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Object(_) => Kind::Object,
            Value::Array(_) => {
                return Err(PatchError::Unprocessable(
                    "lists of lists are not supported".into(),
                ))
            }
        };
        match seen {
            None => seen = Some(kind),
            Some(k) if k != kind => {
                return Err(PatchError::Directive(format!(
                    "list element types are not identical: {} and {}",
                    Value::Array(a.to_vec()),
                    Value::Array(b.to_vec())
                )))
            }
            Some(_) => {}
        }
    }
    Ok(seen)
}

/// Merges a list with the merge strategy: scalars as an ordered set, maps by `key`.
fn merge_list<S: SchemaNode>(
    original: Vec<Value>,
    patch: Vec<Value>,
    item: Option<&S>,
    key: Option<&str>,
    name: &str,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if check_element_kinds(&original, &patch)? != Some(Kind::Object) {
        let server_order = Positions::of(&original, None);
        let patch_order = Positions::of(&patch, None);
        let mut seen = HashSet::new();
        let merged: Vec<Value> = original
            .into_iter()
            .chain(patch)
            .filter(|v| seen.insert(canonical(v)))
            .collect();
        let (in_patch, server_only) = patch_order.partition(merged, None);
        return Ok(normalize_order(
            in_patch,
            server_only,
            &patch_order,
            &server_order,
            None,
        ));
    }
    let Some(key) = key else {
        return Err(PatchError::Directive(format!(
            "cannot merge lists without merge key for {name}"
        )));
    };

    // Directive items first: deletions by key, or a replace marker that swaps the list.
    let mut rest = Vec::with_capacity(patch.len());
    let mut doomed = HashSet::new();
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = v else {
            unreachable!("element kinds were checked to be objects")
        };
        match m.get(DIRECTIVE) {
            None => rest.push(m),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let target = m.get(key).ok_or_else(|| no_merge_key(&m, key))?;
                    doomed.insert(canonical(target));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(PatchError::Directive(
                        "merging lists cannot yet be specified in the patch".into(),
                    ))
                }
                _ => return Err(unknown_patch_type(d, &m)),
            },
        }
    }
    if replace {
        return materialize_list(rest.into_iter().map(Value::Object).collect(), item);
    }

    let mut merged = original;
    if !doomed.is_empty() {
        merged.retain(|o| !o.get(key).is_some_and(|v| doomed.contains(&canonical(v))));
    }
    let server_order = Positions::of(&merged, Some(key));
    let patch_order = Positions::from_ids(rest.iter().filter_map(|m| m.get(key)));
    // Where each key value sits in `merged`: a patch item merges into the first item with
    // its key, and a second patch item with a new key merges into the first one's addition.
    let mut at = Positions::of(&merged, Some(key));
    for m in rest {
        let target = canonical(m.get(key).ok_or_else(|| no_merge_key(&m, key))?);
        match at.0.get(&target) {
            Some(&i) => {
                let Value::Object(cur) = std::mem::take(&mut merged[i]) else {
                    unreachable!("positions only index objects carrying the merge key")
                };
                merged[i] = Value::Object(merge_map(cur, m, item)?);
            }
            None => {
                if let Some(v) = materialize(Value::Object(m), item)? {
                    at.0.insert(target, merged.len());
                    merged.push(v);
                }
            }
        }
    }
    let (in_patch, server_only) = patch_order.partition(merged, Some(key));
    Ok(normalize_order(
        in_patch,
        server_only,
        &patch_order,
        &server_order,
        Some(key),
    ))
}

/// What identifies a list item: its merge key value, or the item itself for scalars.
fn identity<'a>(item: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match (key, item) {
        (Some(k), Value::Object(m)) => m.get(k),
        _ => Some(item),
    }
}

/// A canonical text for an identity, so lookups hash; numbers compare by value as
/// [`json_equal`] does.
fn canonical(v: &Value) -> String {
    match v {
        Value::String(s) => format!("s{s}"),
        Value::Number(n) => match n.as_f64() {
            // Adding zero turns -0 into 0, which compare equal.
            Some(f) => format!("n{}", f + 0.0),
            None => format!("n{n}"),
        },
        other => format!("j{other}"),
    }
}

/// Where each identity first occurs in a list, hashed so long lists merge in linear time.
struct Positions(HashMap<String, usize>);

impl Positions {
    fn of(list: &[Value], key: Option<&str>) -> Self {
        Self::from_ids(list.iter().filter_map(|v| identity(v, key)))
    }

    fn from_ids<'a>(ids: impl Iterator<Item = &'a Value>) -> Self {
        let mut map = HashMap::new();
        for (i, id) in ids.enumerate() {
            map.entry(canonical(id)).or_insert(i);
        }
        Self(map)
    }

    fn get(&self, item: &Value, key: Option<&str>) -> Option<usize> {
        self.0.get(&canonical(identity(item, key)?)).copied()
    }

    /// Splits `list` into the items found here and the rest, each keeping its order.
    fn partition(&self, list: Vec<Value>, key: Option<&str>) -> (Vec<Value>, Vec<Value>) {
        list.into_iter().partition(|v| self.get(v, key).is_some())
    }
}

/// Orders patch items by the patch's order and server-only items by the server's, then
/// interleaves them: a server-only item goes before a patch item only when the server
/// list had it first. Upstream's ordering, so new items without `$setElementOrder` land
/// in front of the first server-only item they are not known to follow.
fn normalize_order(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &Positions,
    server_order: &Positions,
    key: Option<&str>,
) -> Vec<Value> {
    let rank = |order: &Positions, v: &Value| order.get(v, key).unwrap_or(usize::MAX);
    patch_items.sort_by_cached_key(|v| rank(patch_order, v));
    server_only.sort_by_cached_key(|v| rank(server_order, v));

    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (server_order.get(l, key), server_order.get(r, key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed::Untyped;
    use serde_json::json;

    /// A predicate over the error a case expects.
    type Check = fn(&PatchError) -> bool;

    /// A schema tree written as JSON: `fields`, `items`, `mergeKey`, `strategy`
    /// (comma-separated) and `listType` (`atomic`, `set`, or a list of map keys).
    #[derive(Debug, Clone)]
    struct TestSchema(Value);

    impl SchemaNode for TestSchema {
        fn field(&self, name: &str) -> Option<Self> {
            self.0.get("fields")?.get(name).cloned().map(TestSchema)
        }
        fn items(&self) -> Option<Self> {
            self.0.get("items").cloned().map(TestSchema)
        }
        fn list_type(&self) -> Option<ListType> {
            match self.0.get("listType")? {
                Value::String(s) if s == "atomic" => Some(ListType::Atomic),
                Value::String(s) if s == "set" => Some(ListType::Set),
                Value::Array(keys) => Some(ListType::Map(
                    keys.iter()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .collect(),
                )),
                _ => None,
            }
        }
        fn patch_merge_key(&self) -> Option<String> {
            self.0.get("mergeKey")?.as_str().map(str::to_string)
        }
        fn patch_strategies(&self) -> Vec<String> {
            self.0
                .get("strategy")
                .and_then(Value::as_str)
                .map(|s| s.split(',').map(str::to_string).collect())
                .unwrap_or_default()
        }
        fn map_type(&self) -> Option<String> {
            None
        }
    }

    fn by_name(items: Value) -> Value {
        json!({"strategy": "merge", "mergeKey": "name", "items": items})
    }

    fn pod_spec_schema() -> Value {
        let container = json!({"fields": {
            "env": by_name(json!({})),
            "ports": {"strategy": "merge", "mergeKey": "containerPort", "listType": ["containerPort", "protocol"]},
            "volumeMounts": {"strategy": "merge", "mergeKey": "mountPath"},
            "args": {"listType": "atomic"},
        }});
        json!({"fields": {
            "containers": by_name(container.clone()),
            "initContainers": by_name(container),
            "volumes": {"strategy": "merge,retainKeys", "mergeKey": "name", "items": {}},
            "tolerations": {"listType": "atomic"},
        }})
    }

    fn deployment_schema() -> TestSchema {
        let meta = json!({"fields": {"finalizers": {"strategy": "merge"}}});
        TestSchema(json!({"fields": {
            "metadata": meta.clone(),
            "spec": {"fields": {
                "strategy": {"strategy": "retainKeys"},
                "template": {"fields": {"metadata": meta, "spec": pod_spec_schema()}},
            }},
        }}))
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "finalizers": ["a", "b", "c"], "annotations": {"team": "x"}},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "app", "image": "nginx:1", "args": ["-v"],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                        {"name": "sidecar", "image": "envoy:1"}
                    ]}
                }
            }
        })
    }

    fn smp(doc: &Value, patch: Value) -> Value {
        strategic_merge_patch(doc, &patch, Some(&deployment_schema()))
            .unwrap_or_else(|e| panic!("patch {patch} failed: {e}"))
    }

    fn containers(doc: &Value) -> &Value {
        &doc["spec"]["template"]["spec"]["containers"]
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .map(|l| l.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn kubectl_set_image_changes_only_that_image_and_keeps_the_order() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [{"image": "nginx:2", "name": "app"}]
            }}}}),
        );
        let mut want = deployment();
        want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert_eq!(out, want);
    }

    #[test]
    fn kubectl_set_image_on_the_second_container_keeps_the_first_in_front() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [{"image": "envoy:2", "name": "sidecar"}]
            }}}}),
        );
        assert_eq!(names(containers(&out)), ["app", "sidecar"]);
        assert_eq!(containers(&out)[1]["image"], "envoy:2");
        assert_eq!(containers(&out)[0]["env"][1]["value"], "2");
    }

    #[test]
    fn kubectl_rollout_restart_adds_an_annotation_beside_existing_ones() {
        let mut doc = deployment();
        doc["spec"]["template"]["metadata"]["annotations"] = json!({"keep": "me"});
        let out = smp(
            &doc,
            json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"
            }}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["metadata"]["annotations"],
            json!({"keep": "me", "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"})
        );
        assert_eq!(containers(&out), containers(&deployment()));
    }

    #[test]
    fn kubectl_cordon_sets_unschedulable_on_an_untyped_node() {
        let node =
            json!({"kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDR": "10.0.0.0/24"}});
        let out = strategic_merge_patch::<Untyped>(
            &node,
            &json!({"spec": {"unschedulable": true}}),
            None,
        )
        .expect("cordon applies");
        assert_eq!(
            out["spec"],
            json!({"podCIDR": "10.0.0.0/24", "unschedulable": true})
        );
        let uncordon =
            strategic_merge_patch::<Untyped>(&out, &json!({"spec": {"unschedulable": null}}), None)
                .expect("uncordon applies");
        assert_eq!(uncordon, node);
    }

    #[test]
    fn client_side_apply_removes_a_container_with_a_delete_directive() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [{"$patch": "delete", "name": "sidecar"}]
            }}}}),
        );
        assert_eq!(names(containers(&out)), ["app"]);
        assert_eq!(containers(&out)[0], containers(&deployment())[0]);
    }

    #[test]
    fn env_merges_by_name() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "app",
                "env": [
                    {"name": "B", "value": "two"},
                    {"name": "A", "$patch": "delete"},
                    {"name": "C", "value": "3"}
                ]
            }]}}}}),
        );
        // New items without $setElementOrder go before the server-only items they are not
        // known to follow, as upstream orders them.
        assert_eq!(
            containers(&out)[0]["env"],
            json!([{"name": "B", "value": "two"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(names(containers(&out)), ["app", "sidecar"]);
    }

    #[test]
    fn retain_keys_drops_the_fields_not_listed() {
        let out = smp(
            &deployment(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

        let out = smp(
            &deployment(),
            json!({"spec": {"strategy": {"$retainKeys": ["type", "rollingUpdate"], "rollingUpdate": {"maxSurge": 1}}}}),
        );
        assert_eq!(
            out["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}})
        );
    }

    #[test]
    fn retain_keys_must_list_every_key_the_patch_sets() {
        let err = strategic_merge_patch(
            &deployment(),
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}}),
            Some(&deployment_schema()),
        )
        .expect_err("rollingUpdate is not retained");
        assert_eq!(
            err,
            PatchError::Invalid("invalid patch format of retainKeys".into())
        );
        assert_eq!(err.code(), 400);
    }

    #[test]
    fn delete_from_primitive_list_removes_finalizers() {
        let out = smp(
            &deployment(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
        assert!(out["metadata"]
            .get("$deleteFromPrimitiveList/finalizers")
            .is_none());
    }

    #[test]
    fn delete_from_primitive_list_never_creates_the_list() {
        let mut doc = deployment();
        doc["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("finalizers");
        let out = smp(
            &doc,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(out, doc);
    }

    #[test]
    fn primitive_merge_lists_are_ordered_sets() {
        let cases = [
            (
                "adds new values in front",
                json!(["d"]),
                json!(["d", "a", "b", "c"]),
            ),
            (
                "keeps a value once",
                json!(["b", "c"]),
                json!(["a", "b", "c"]),
            ),
            (
                "puts a server-only value before the patch values it preceded",
                json!(["c", "a"]),
                json!(["b", "c", "a"]),
            ),
            (
                "an empty patch changes nothing",
                json!([]),
                json!(["a", "b", "c"]),
            ),
        ];
        for (name, patch, want) in cases {
            let out = smp(&deployment(), json!({"metadata": {"finalizers": patch}}));
            assert_eq!(out["metadata"]["finalizers"], want, "{name}");
        }
    }

    #[test]
    fn set_element_order_reorders_primitives_and_keeps_server_only_values() {
        let out = smp(
            &deployment(),
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "x", "a"], "finalizers": ["x"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c", "x", "a"]));
    }

    #[test]
    fn set_element_order_must_agree_with_the_patch_list() {
        let err = strategic_merge_patch(
            &deployment(),
            &json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [{"name": "sidecar", "image": "e"}, {"name": "app", "image": "n"}]
            }}}}),
            Some(&deployment_schema()),
        )
        .expect_err("order disagrees");
        assert!(matches!(err, PatchError::Directive(m) if m.contains("doesn't match")));
    }

    #[test]
    fn set_element_order_can_move_items_of_a_merged_list() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "new"}, {"name": "app"}],
                "containers": [{"name": "new", "image": "busybox"}]
            }}}}),
        );
        assert_eq!(names(containers(&out)), ["sidecar", "new", "app"]);
    }

    #[test]
    fn a_replace_item_replaces_the_whole_list() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"$patch": "replace"},
                {"name": "only", "image": "busybox"}
            ]}}}}),
        );
        assert_eq!(
            containers(&out),
            &json!([{"name": "only", "image": "busybox"}])
        );
    }

    #[test]
    fn map_directives_replace_or_empty_the_map() {
        let out = smp(
            &deployment(),
            json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let out = smp(
            &deployment(),
            json!({"metadata": {"annotations": {"$patch": "delete"}}}),
        );
        assert_eq!(out["metadata"]["annotations"], json!({}));
        let out = smp(
            &deployment(),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
        );
        assert!(out["metadata"].get("labels").is_none());
    }

    #[test]
    fn lists_without_a_merge_strategy_are_replaced() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "args": ["-q"]}]}}}}),
        );
        assert_eq!(containers(&out)[0]["args"], json!(["-q"]));
    }

    #[test]
    fn list_types_decide_when_no_strategy_is_declared() {
        let schema = TestSchema(json!({"fields": {
            "set": {"listType": "set"},
            "atomic": {"listType": "atomic"},
            "map": {"listType": ["id"]},
            "map2": {"listType": ["id", "kind"]},
        }}));
        let doc = json!({
            "set": [1, 2], "atomic": [1, 2],
            "map": [{"id": 1, "v": "a"}], "map2": [{"id": 1, "kind": "k"}]
        });
        let patch = json!({
            "set": [3], "atomic": [3],
            "map": [{"id": 1, "w": "b"}], "map2": [{"id": 2, "kind": "k"}]
        });
        let out = strategic_merge_patch(&doc, &patch, Some(&schema)).expect("patch applies");
        assert_eq!(
            out,
            json!({
                "set": [3, 1, 2], "atomic": [3],
                "map": [{"id": 1, "v": "a", "w": "b"}], "map2": [{"id": 2, "kind": "k"}]
            })
        );
    }

    #[test]
    fn untyped_objects_merge_maps_and_replace_lists() {
        let doc = json!({"spec": {"items": [1, 2], "nested": {"a": 1, "b": 2}}});
        let patch = json!({"spec": {"items": [3], "nested": {"b": null, "c": {"$patch": "replace", "d": 4}}}});
        let out = strategic_merge_patch::<Untyped>(&doc, &patch, None).expect("patch applies");
        assert_eq!(
            out,
            json!({"spec": {"items": [3], "nested": {"a": 1, "c": {"d": 4}}}})
        );
    }

    #[test]
    fn directives_never_leak_into_new_subtrees() {
        let out = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {
                "initContainers": [
                    {"name": "init", "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X", "value": "1"}],
                     "volumeMounts": [{"$patch": "replace"}, {"mountPath": "/data", "name": "d"}]},
                    {"name": "gone", "$patch": "delete"}
                ],
                "volumes": [{"name": "d", "$retainKeys": ["name", "emptyDir"], "emptyDir": {"medium": null}}]
            }}}}),
        );
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(
            spec["initContainers"],
            json!([{"name": "init", "env": [{"name": "X", "value": "1"}], "volumeMounts": [{"mountPath": "/data", "name": "d"}]}])
        );
        assert_eq!(spec["volumes"], json!([{"name": "d", "emptyDir": {}}]));
        assert!(!out.to_string().contains('$'));
    }

    #[test]
    fn null_deletes_and_scalars_replace() {
        let out = smp(
            &deployment(),
            json!({"spec": {"replicas": 5, "strategy": null}, "metadata": {"annotations": {"team": null}}}),
        );
        assert_eq!(out["spec"]["replicas"], 5);
        assert!(out["spec"].get("strategy").is_none());
        assert_eq!(out["metadata"]["annotations"], json!({}));
    }

    #[test]
    fn malformed_patches_are_refused() {
        let cases: [(&str, Value, Check); 6] = [
            (
                "a patch that is not an object",
                json!([1]),
                |e| matches!(e, PatchError::Invalid(m) if m.contains("cannot unmarshal array")),
            ),
            (
                "an unknown $patch value",
                json!({"spec": {"$patch": "explode"}}),
                |e| matches!(e, PatchError::Directive(m) if m.starts_with("unknown patch type: explode")),
            ),
            (
                "a merge-list item without its merge key",
                json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
                |e| matches!(e, PatchError::Directive(m) if m.contains("does not contain declared merge key: name")),
            ),
            (
                "a $patch merge list item",
                json!({"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}}),
                |e| matches!(e, PatchError::Directive(m) if m.contains("cannot yet be specified")),
            ),
            (
                "a list of lists in a merge list",
                json!({"metadata": {"finalizers": [["a"]]}}),
                |e| matches!(e, PatchError::Unprocessable(m) if m == "lists of lists are not supported"),
            ),
            (
                "a bad deletion list key",
                json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}),
                |e| matches!(e, PatchError::Invalid(m) if m == "invalid patch format of primitive list"),
            ),
        ];
        for (name, patch, check) in cases {
            match strategic_merge_patch(&deployment(), &patch, Some(&deployment_schema())) {
                Err(e) => assert!(check(&e), "{name}: unexpected error {e:?}"),
                Ok(v) => panic!("{name}: expected an error, got {v}"),
            }
        }
    }

    #[test]
    fn upstream_ordering_examples_hold() {
        let schema = TestSchema(json!({"fields": {
            "mergingList": by_name(json!({})),
            "mergingIntList": {"strategy": "merge"},
        }}));
        let cases = [
            (
                "new items land where $setElementOrder puts them",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 4}, {"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}]
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 4, "value": 4},
                    {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": 3}
                ]}),
            ),
            (
                "server-only items stay behind the item they followed",
                json!({"mergingList": [
                    {"name": 1}, {"name": 2}, {"name": 7}, {"name": 9}, {"name": 8}, {"name": 3}, {"name": 4}
                ]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}]}),
                json!({"mergingList": [
                    {"name": 2}, {"name": 1}, {"name": 7}, {"name": 9}, {"name": 8}, {"name": 4}, {"name": 3}
                ]}),
            ),
            (
                "duplicates keep their relative order",
                json!({"mergingList": [
                    {"name": 1}, {"name": 2, "value": "dup1"}, {"name": 3}, {"name": 2, "value": "dup2"}, {"name": 4}
                ]}),
                json!({"$setElementOrder/mergingList": [
                    {"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}, {"name": 2}
                ]}),
                json!({"mergingList": [
                    {"name": 2, "value": "dup1"}, {"name": 2, "value": "dup2"}, {"name": 1}, {"name": 4}, {"name": 3}
                ]}),
            ),
            (
                "an added scalar goes before a server-only one",
                json!({"mergingIntList": [1, 2, 4]}),
                json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3]}),
                json!({"mergingIntList": [1, 2, 3, 4]}),
            ),
            (
                "a deleted scalar leaves server-only ones",
                json!({"mergingIntList": [1, 2, 3, 3, 4]}),
                json!({"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": [1, 2, 4]}),
            ),
            (
                "order entries missing from the list are not added",
                json!({"mergingIntList": [1, 3]}),
                json!({"$setElementOrder/mergingIntList": [3, 2, 1]}),
                json!({"mergingIntList": [3, 1]}),
            ),
            (
                "merge keys compare numbers by value",
                json!({"mergingList": [{"name": 80, "a": 1}]}),
                json!({"mergingList": [{"name": 80.0, "b": 2}]}),
                json!({"mergingList": [{"name": 80.0, "a": 1, "b": 2}]}),
            ),
        ];
        for (name, doc, patch, want) in cases {
            let out = strategic_merge_patch(&doc, &patch, Some(&schema))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(out, want, "{name}");
        }
    }

    #[test]
    fn long_lists_merge_in_linear_time() {
        let n = 50_000;
        let doc = json!({"metadata": {"finalizers": (0..n).map(|i| format!("f{i}")).collect::<Vec<_>>()}});
        let patch = json!({"metadata": {
            "finalizers": (n / 2..n + n / 2).map(|i| format!("f{i}")).collect::<Vec<_>>(),
            "$deleteFromPrimitiveList/finalizers": ["f0"]
        }});
        let started = std::time::Instant::now();
        let out = smp(&doc, patch);
        assert_eq!(
            out["metadata"]["finalizers"].as_array().map(Vec::len),
            Some(n + n / 2 - 1)
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn set_element_order_without_a_schema_reorders_nothing_and_strips_itself() {
        let doc = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "x"}]
        }});
        let out = strategic_merge_patch::<Untyped>(&doc, &patch, None).expect("patch applies");
        assert_eq!(
            out,
            json!({"spec": {"containers": [{"name": "a", "image": "x"}]}})
        );
    }

    #[test]
    fn the_original_document_is_left_untouched() {
        let doc = deployment();
        let _ = smp(
            &doc,
            json!({"spec": {"replicas": 9, "template": {"spec": {"containers": [{"name": "app", "$patch": "delete"}]}}}}),
        );
        assert_eq!(doc, deployment());
    }
}
