//! Schema-aware walks over JSON objects: field sets, comparison, apply merge and removal.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldpath::{path_string, PathElement, Set};
use crate::typed::{ListType, SchemaNode};

/// How the items of a list are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListKind {
    /// Owned and replaced as a whole.
    Atomic,
    /// Scalars identified by their value.
    Set,
    /// Objects identified by the values of these fields.
    Map(Vec<String>),
}

/// Lists follow `x-kubernetes-list-type` when declared, else the strategic-merge-patch tags
/// the way upstream's OpenAPI-to-schema conversion reads them; without a schema they are atomic.
fn list_kind<S: SchemaNode>(schema: Option<&S>) -> ListKind {
    let Some(s) = schema else {
        return ListKind::Atomic;
    };
    match s.list_type() {
        Some(ListType::Atomic) => ListKind::Atomic,
        Some(ListType::Set) => ListKind::Set,
        Some(ListType::Map(keys)) if keys.is_empty() => ListKind::Set,
        Some(ListType::Map(keys)) => ListKind::Map(keys),
        None => {
            let strategies = s.patch_strategies();
            match s.patch_merge_key() {
                Some(key) if !strategies.iter().any(|x| x == "replace") => ListKind::Map(vec![key]),
                _ if strategies.iter().any(|x| x == "merge") => ListKind::Set,
                _ => ListKind::Atomic,
            }
        }
    }
}

fn map_is_atomic<S: SchemaNode>(schema: Option<&S>) -> bool {
    schema.and_then(SchemaNode::map_type).as_deref() == Some("atomic")
}

/// The schema of an object's field, and whether it is a declared ("named") field rather than
/// a key of a free-form map. Without a schema every field counts as declared, so objects
/// behave like structs.
fn field_schema<S: SchemaNode>(schema: Option<&S>, name: &str) -> (Option<S>, bool) {
    match schema {
        None => (None, true),
        Some(s) => match s.field(name) {
            Some(f) => (Some(f), true),
            None => (s.items(), false),
        },
    }
}

fn item_schema<S: SchemaNode>(schema: Option<&S>) -> Option<S> {
    schema.and_then(SchemaNode::items)
}

/// The path element naming a list item. Key fields an item lacks are left out of its key:
/// the schema trait carries no defaults to fill them in.
fn item_element(item: &Value, kind: &ListKind) -> PathElement {
    match (kind, item) {
        (ListKind::Map(keys), Value::Object(m)) => {
            let fields: Vec<(&str, &Value)> = keys
                .iter()
                .filter_map(|k| m.get(k).map(|v| (k.as_str(), v)))
                .collect();
            PathElement::key(&fields)
        }
        _ => PathElement::value(item),
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The fields a value sets: its leaves, list items, atomic values, and empty or null fields.
/// Declared fields holding non-empty objects are not members themselves, as in upstream.
pub fn to_field_set<S: SchemaNode>(value: &Value, schema: Option<&S>) -> Set {
    let mut set = Set::new();
    field_set_at(&mut Vec::new(), value, schema, &mut set);
    set
}

fn field_set_at<S: SchemaNode>(
    path: &mut Vec<PathElement>,
    value: &Value,
    schema: Option<&S>,
    set: &mut Set,
) {
    match value {
        Value::Object(m) if !map_is_atomic(schema) => {
            for (k, v) in m {
                let (child, named) = field_schema(schema, k);
                path.push(PathElement::Field(k.clone()));
                field_set_at(path, v, child.as_ref(), set);
                if v.is_null() || v.as_object().is_some_and(Map::is_empty) || !named {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let kind = list_kind(schema);
            if kind == ListKind::Atomic {
                set.insert(path);
                return;
            }
            let child = item_schema(schema);
            let elements: Vec<PathElement> = items.iter().map(|i| item_element(i, &kind)).collect();
            let mut seen = BTreeSet::new();
            let duplicates: BTreeSet<&PathElement> =
                elements.iter().filter(|pe| !seen.insert(*pe)).collect();
            for (item, pe) in items.iter().zip(&elements) {
                path.push(pe.clone());
                // Duplicated items are owned whole: nothing tells their fields apart.
                if !duplicates.contains(pe) {
                    field_set_at(path, item, child.as_ref(), set);
                }
                set.insert(path);
                path.pop();
            }
        }
        _ => set.insert(path),
    }
}

/// The first duplicate item of an associative list or set in `value`, as upstream words it.
pub fn find_duplicate<S: SchemaNode>(value: &Value, schema: Option<&S>) -> Option<String> {
    duplicate_at(&mut Vec::new(), value, schema)
}

fn duplicate_at<S: SchemaNode>(
    path: &mut Vec<PathElement>,
    value: &Value,
    schema: Option<&S>,
) -> Option<String> {
    match value {
        Value::Object(m) if !map_is_atomic(schema) => m.iter().find_map(|(k, v)| {
            let (child, _) = field_schema(schema, k);
            path.push(PathElement::Field(k.clone()));
            let found = duplicate_at(path, v, child.as_ref());
            path.pop();
            found
        }),
        Value::Array(items) => {
            let kind = list_kind(schema);
            if kind == ListKind::Atomic {
                return None;
            }
            let child = item_schema(schema);
            let mut seen = BTreeSet::new();
            items.iter().find_map(|item| {
                let pe = item_element(item, &kind);
                if !seen.insert(pe.clone()) {
                    return Some(format!(
                        "{}: duplicate entries for key {pe}",
                        path_string(path)
                    ));
                }
                path.push(pe);
                let found = duplicate_at(path, item, child.as_ref());
                path.pop();
                found
            })
        }
        _ => None,
    }
}

/// What changed between two versions of an object, as field sets.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

/// Compares `old` to `new`. Leaves are added, removed or modified; objects and list items
/// that appear or disappear are also recorded themselves, which is where FieldsV1 `"."`
/// entries come from.
pub fn compare<S: SchemaNode>(
    old: Option<&Value>,
    new: Option<&Value>,
    schema: Option<&S>,
) -> Comparison {
    let mut out = Comparison::default();
    compare_at(&mut Vec::new(), old, new, schema, &mut out);
    out
}

/// The shape both sides of a comparison share, or Leaf when they differ or are atomic.
enum Shape {
    Map,
    List(ListKind),
    Leaf,
}

fn shape<S: SchemaNode>(lhs: Option<&Value>, rhs: Option<&Value>, schema: Option<&S>) -> Shape {
    let sides = [lhs, rhs];
    let present = || sides.iter().flatten().filter(|v| !v.is_null());
    // Two empty or missing containers are compared as leaves so `{}` and `[]` stay distinct
    // from an absent field.
    if present().all(|v| is_empty_container(v)) {
        return Shape::Leaf;
    }
    if present().all(|v| v.is_object()) {
        if map_is_atomic(schema) {
            return Shape::Leaf;
        }
        return Shape::Map;
    }
    if present().all(|v| v.is_array()) {
        return match list_kind(schema) {
            ListKind::Atomic => Shape::Leaf,
            kind => Shape::List(kind),
        };
    }
    Shape::Leaf
}

fn compare_at<S: SchemaNode>(
    path: &mut Vec<PathElement>,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    schema: Option<&S>,
    out: &mut Comparison,
) {
    // Equal values record nothing at any depth; most of an updated object is unchanged, and
    // walking it would resolve the schema of every field.
    if let (Some(l), Some(r)) = (lhs, rhs) {
        if l == r {
            return;
        }
    }
    match shape(lhs, rhs, schema) {
        Shape::Leaf => {
            match (lhs, rhs) {
                (None, Some(_)) => out.added.insert(path),
                (Some(_), None) => out.removed.insert(path),
                (Some(l), Some(r)) if l != r => out.modified.insert(path),
                _ => {}
            }
            return;
        }
        Shape::Map => {
            let empty = Map::new();
            let lm = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let rm = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let keys: BTreeSet<&String> = lm.keys().chain(rm.keys()).collect();
            for k in keys {
                let (l, r) = (lm.get(k), rm.get(k));
                path.push(PathElement::Field(k.clone()));
                // Scalars are leaves whatever their schema says, so theirs is not looked up.
                let container =
                    |v: Option<&Value>| v.is_some_and(|v| v.is_object() || v.is_array());
                if container(l) || container(r) {
                    let (child, _) = field_schema(schema, k);
                    compare_at(path, l, r, child.as_ref(), out);
                } else {
                    compare_at::<S>(path, l, r, None, out);
                }
                path.pop();
            }
        }
        Shape::List(kind) => {
            let child = item_schema(schema);
            let index = |v: Option<&Value>| -> Vec<(PathElement, Value)> {
                v.and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .map(|i| (item_element(i, &kind), i.clone()))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (litems, ritems) = (index(lhs), index(rhs));
            // First occurrence wins when the live object holds duplicates.
            let mut lmap: BTreeMap<&PathElement, &Value> = BTreeMap::new();
            for (pe, v) in &litems {
                lmap.entry(pe).or_insert(v);
            }
            let mut rmap: BTreeMap<&PathElement, &Value> = BTreeMap::new();
            for (pe, v) in &ritems {
                rmap.entry(pe).or_insert(v);
            }
            let keys: BTreeSet<&PathElement> = lmap.keys().chain(rmap.keys()).copied().collect();
            for pe in keys {
                path.push(pe.clone());
                compare_at(
                    path,
                    lmap.get(pe).copied(),
                    rmap.get(pe).copied(),
                    child.as_ref(),
                    out,
                );
                path.pop();
            }
        }
    }
    match (lhs, rhs) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        _ => {}
    }
}

/// Merges an applied configuration into the live object: the configuration's values win,
/// objects merge field by field, associative lists and sets merge by item, atomic values
/// are replaced. A field the configuration sets to null is removed, as a typed object
/// would drop it.
pub fn merge<S: SchemaNode>(live: &Value, config: &Value, schema: Option<&S>) -> Value {
    merge_at(Some(live), config, schema).unwrap_or(Value::Null)
}

fn merge_at<S: SchemaNode>(lhs: Option<&Value>, rhs: &Value, schema: Option<&S>) -> Option<Value> {
    match rhs {
        Value::Null => None,
        Value::Object(rm) if !map_is_atomic(schema) => {
            let mut out = lhs.and_then(Value::as_object).cloned().unwrap_or_default();
            for (k, rv) in rm {
                let (child, _) = field_schema(schema, k);
                match merge_at(out.get(k), rv, child.as_ref()) {
                    Some(v) => out.insert(k.clone(), v),
                    None => out.remove(k),
                };
            }
            Some(Value::Object(out))
        }
        Value::Array(ritems) => match list_kind(schema) {
            ListKind::Atomic => Some(rhs.clone()),
            kind => {
                let litems = lhs
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let child = item_schema(schema);
                Some(Value::Array(merge_list(
                    litems,
                    ritems,
                    &kind,
                    child.as_ref(),
                )))
            }
        },
        _ => Some(rhs.clone()),
    }
}

/// Merges list items by identity, keeping upstream's order: configuration items in the
/// configuration's order, live-only items where they sat relative to the shared ones.
fn merge_list<S: SchemaNode>(
    lhs: &[Value],
    rhs: &[Value],
    kind: &ListKind,
    schema: Option<&S>,
) -> Vec<Value> {
    let lpes: Vec<PathElement> = lhs.iter().map(|i| item_element(i, kind)).collect();
    let rpes: Vec<PathElement> = rhs.iter().map(|i| item_element(i, kind)).collect();
    let mut lmap: BTreeMap<&PathElement, &Value> = BTreeMap::new();
    for (pe, v) in lpes.iter().zip(lhs) {
        lmap.entry(pe).or_insert(v);
    }
    let in_rhs: BTreeSet<&PathElement> = rpes.iter().collect();
    let mut shared = rpes.iter().filter(|pe| lmap.contains_key(pe));
    let mut next_shared = shared.next();
    let mut merged_rhs: BTreeSet<&PathElement> = BTreeSet::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let merge_item = |pe: &PathElement, r: &Value| {
        let l = lmap.get(pe).copied();
        merge_at(l, r, schema).unwrap_or_else(|| r.clone())
    };
    let (mut li, mut ri) = (0, 0);
    while li < lpes.len() || ri < rpes.len() {
        if li < lpes.len() && ri < rpes.len() {
            if lpes[li] == rpes[ri] {
                merged_rhs.insert(&rpes[ri]);
                out.push(merge_item(&rpes[ri], &rhs[ri]));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            // A shared item out of the configuration's order waits for its turn there.
            if in_rhs.contains(&lpes[li]) && next_shared.is_some_and(|n| *n != lpes[li]) {
                li += 1;
                continue;
            }
        }
        if li < lpes.len() {
            if !in_rhs.contains(&lpes[li]) {
                out.push(lhs[li].clone());
                li += 1;
                continue;
            }
            if merged_rhs.contains(&lpes[li]) {
                li += 1;
                continue;
            }
        }
        if ri < rpes.len() {
            let pe = &rpes[ri];
            merged_rhs.insert(pe);
            out.push(merge_item(pe, &rhs[ri]));
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    out
}

/// Adds as members the declared fields that are parents of paths in the set, so that
/// removing a set's paths also removes the struct fields that only held them.
pub fn ensure_named_fields_are_members<S: SchemaNode>(set: &Set, schema: Option<&S>) -> Set {
    let mut out = Set::new();
    ensure_at(&mut Vec::new(), set, schema, &mut out);
    out
}

fn ensure_at<S: SchemaNode>(
    path: &mut Vec<PathElement>,
    set: &Set,
    schema: Option<&S>,
    out: &mut Set,
) {
    for pe in set.members() {
        path.push(pe.clone());
        out.insert(path);
        path.pop();
    }
    for (pe, child_set) in set.children() {
        let child = match pe {
            PathElement::Field(name) => {
                let (child, named) = field_schema(schema, name);
                if named {
                    path.push(pe.clone());
                    out.insert(path);
                    path.pop();
                }
                child
            }
            _ => item_schema(schema),
        };
        path.push(pe.clone());
        ensure_at(path, child_set, child.as_ref(), out);
        path.pop();
    }
}

/// The value without the paths in `set`. A member removes the whole field or item; an
/// object or list emptied by removals is removed too, as upstream leaves it null.
pub fn remove_items<S: SchemaNode>(value: &Value, set: &Set, schema: Option<&S>) -> Value {
    match value {
        Value::Object(m) if !map_is_atomic(schema) => {
            let mut out = Map::new();
            for (k, v) in m {
                let pe = PathElement::Field(k.clone());
                if set.has_member(&pe) {
                    continue;
                }
                match set.child(&pe) {
                    Some(below) => {
                        let (child, _) = field_schema(schema, k);
                        let kept = remove_items(v, below, child.as_ref());
                        if !is_empty_container(v) && is_empty_container(&kept) {
                            continue;
                        }
                        out.insert(k.clone(), kept);
                    }
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let kind = list_kind(schema);
            if kind == ListKind::Atomic {
                return value.clone();
            }
            let child = item_schema(schema);
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let pe = item_element(item, &kind);
                if set.has_member(&pe) {
                    continue;
                }
                match set.child(&pe) {
                    Some(below) => {
                        let kept = remove_items(item, below, child.as_ref());
                        if !is_empty_container(item) && is_empty_container(&kept) {
                            continue;
                        }
                        out.push(kept);
                    }
                    None => out.push(item.clone()),
                }
            }
            Value::Array(out)
        }
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed::Untyped;
    use serde_json::json;

    /// A schema with `items` keyed by `name`, `tags` a set, `sel` an atomic map.
    #[derive(Clone)]
    enum T {
        Obj(Vec<(&'static str, T)>),
        Keyed(Box<T>),
        MergeKeyed(Box<T>),
        Set,
        AtomicMap,
        Scalar,
    }

    impl SchemaNode for T {
        fn field(&self, name: &str) -> Option<Self> {
            match self {
                T::Obj(fields) => fields
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, t)| t.clone()),
                _ => None,
            }
        }
        fn items(&self) -> Option<Self> {
            match self {
                T::Keyed(item) | T::MergeKeyed(item) => Some((**item).clone()),
                T::Set => Some(T::Scalar),
                _ => None,
            }
        }
        fn list_type(&self) -> Option<ListType> {
            match self {
                T::Keyed(_) => Some(ListType::Map(vec!["name".into()])),
                T::Set => Some(ListType::Set),
                _ => None,
            }
        }
        fn patch_merge_key(&self) -> Option<String> {
            matches!(self, T::MergeKeyed(_)).then(|| "name".into())
        }
        fn patch_strategies(&self) -> Vec<String> {
            match self {
                T::MergeKeyed(_) => vec!["merge".into()],
                _ => Vec::new(),
            }
        }
        fn map_type(&self) -> Option<String> {
            matches!(self, T::AtomicMap).then(|| "atomic".into())
        }
    }

    fn schema() -> T {
        T::Obj(vec![
            (
                "items",
                T::Keyed(Box::new(T::Obj(vec![
                    ("name", T::Scalar),
                    ("v", T::Scalar),
                ]))),
            ),
            ("tags", T::Set),
            ("sel", T::AtomicMap),
            ("n", T::Scalar),
            (
                "env",
                T::MergeKeyed(Box::new(T::Obj(vec![
                    ("name", T::Scalar),
                    ("value", T::Scalar),
                ]))),
            ),
        ])
    }

    fn fields(v: &Value) -> Value {
        to_field_set(v, Some(&schema())).to_fields_v1()
    }

    #[test]
    fn field_sets_key_list_items_and_own_atomic_values_whole() {
        let obj = json!({"items": [{"name": "a", "v": 1}], "tags": ["x"], "sel": {"a": "b"}, "n": 1, "e": {}});
        assert_eq!(
            fields(&obj),
            json!({
                "f:items": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}, "f:v": {}}},
                "f:tags": {"v:\"x\"": {}},
                "f:sel": {},
                "f:n": {},
                "f:e": {}
            })
        );
    }

    #[test]
    fn untyped_lists_are_atomic_and_objects_granular() {
        let set = to_field_set(&json!({"a": {"b": 1}, "l": [1, 2]}), None::<&Untyped>);
        assert_eq!(set.to_fields_v1(), json!({"f:a": {"f:b": {}}, "f:l": {}}));
    }

    #[test]
    fn compare_marks_new_objects_and_changed_leaves() {
        let old = json!({"n": 1, "items": [{"name": "a", "v": 1}]});
        let new = json!({"n": 2, "items": [{"name": "a", "v": 1}, {"name": "b"}], "m": {"x": 1}});
        let c = compare(Some(&old), Some(&new), Some(&schema()));
        assert_eq!(c.modified.to_fields_v1(), json!({"f:n": {}}));
        assert_eq!(
            c.added.to_fields_v1(),
            json!({"f:items": {"k:{\"name\":\"b\"}": {".": {}, "f:name": {}}}, "f:m": {".": {}, "f:x": {}}})
        );
        assert!(c.removed.is_empty());
    }

    #[test]
    fn merge_combines_keyed_items_and_replaces_atomic_values() {
        let live = json!({"items": [{"name": "a", "v": 1}, {"name": "b", "v": 2}], "tags": ["x"], "sel": {"a": "1"}, "n": 1});
        let cfg = json!({"items": [{"name": "b", "v": 3}, {"name": "c"}], "tags": ["y"], "sel": {"b": "2"}, "n": null});
        let out = merge(&live, &cfg, Some(&schema()));
        assert_eq!(
            out,
            json!({
                "items": [{"name": "a", "v": 1}, {"name": "b", "v": 3}, {"name": "c"}],
                "tags": ["x", "y"],
                "sel": {"b": "2"}
            })
        );
    }

    #[test]
    fn merge_follows_the_configuration_order_for_shared_items() {
        let kind = ListKind::Set;
        let out = merge_list(
            &[json!("a"), json!("b"), json!("c")],
            &[json!("c"), json!("a")],
            &kind,
            None::<&Untyped>,
        );
        assert_eq!(out, vec![json!("b"), json!("c"), json!("a")]);
    }

    #[test]
    fn remove_items_drops_members_and_emptied_parents() {
        let obj = json!({"items": [{"name": "a", "v": 1}, {"name": "b"}], "m": {"x": 1}, "n": 1});
        let mut set = Set::new();
        set.insert(&[
            PathElement::Field("items".into()),
            PathElement::key(&[("name", &json!("b"))]),
        ]);
        set.insert(&[
            PathElement::Field("m".into()),
            PathElement::Field("x".into()),
        ]);
        let out = remove_items(&obj, &set, Some(&schema()));
        assert_eq!(out, json!({"items": [{"name": "a", "v": 1}], "n": 1}));
    }

    #[test]
    fn duplicates_in_a_keyed_list_are_reported_with_their_path() {
        let obj = json!({"items": [{"name": "a"}, {"name": "a"}]});
        assert_eq!(
            find_duplicate(&obj, Some(&schema())).as_deref(),
            Some(".items: duplicate entries for key [name=\"a\"]")
        );
        let kind = ListKind::Map(vec!["name".into()]);
        let pe = item_element(&json!({"name": "a", "x": 1}), &kind);
        assert_eq!(pe.to_fields_key(), "k:{\"name\":\"a\"}");
    }

    #[test]
    fn a_patch_merge_key_makes_a_list_associative() {
        let live = json!({"env": [{"name": "A", "value": "1"}]});
        let cfg = json!({"env": [{"name": "B", "value": "2"}]});
        let out = merge(&live, &cfg, Some(&schema()));
        assert_eq!(
            out["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(
            fields(&cfg),
            json!({"f:env": {"k:{\"name\":\"B\"}": {".": {}, "f:name": {}, "f:value": {}}}})
        );
    }
}
