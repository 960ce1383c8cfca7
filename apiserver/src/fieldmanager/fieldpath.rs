//! Field paths and field sets as structured-merge-diff keeps them, and their FieldsV1 encoding.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path into an object. The variant order is structured-merge-diff's sort order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// `f:<name>`: a field of an object.
    Field(String),
    /// `k:<json>`: an item of an associative list, by the compact JSON object of its key fields.
    Key(String),
    /// `v:<json>`: an item of a set, by its compact JSON value.
    Value(String),
    /// `i:<n>`: a list item by position.
    Index(usize),
}

impl PathElement {
    /// A key element from (field, value) pairs; they are sorted so equal keys compare equal.
    pub fn key(fields: &[(&str, &Value)]) -> Self {
        let mut sorted = fields.to_vec();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let body: Vec<String> = sorted
            .iter()
            .map(|(name, v)| format!("{}:{}", json_string(name), canonical_json(v)))
            .collect();
        Self::Key(format!("{{{}}}", body.join(",")))
    }

    /// A set element for a scalar item.
    pub fn value(v: &Value) -> Self {
        Self::Value(canonical_json(v))
    }

    /// The FieldsV1 key of this element (`f:name`, `k:{...}`, `v:...`, `i:0`).
    pub fn to_fields_key(&self) -> String {
        match self {
            Self::Field(name) => format!("f:{name}"),
            Self::Key(json) => format!("k:{json}"),
            Self::Value(json) => format!("v:{json}"),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key; JSON bodies are re-encoded so they compare with computed ones.
    pub fn from_fields_key(key: &str) -> Result<Self, String> {
        let (prefix, body) = key
            .split_once(':')
            .ok_or_else(|| format!("invalid path element {key:?}: missing type prefix"))?;
        let parse_json = || {
            serde_json::from_str::<Value>(body)
                .map_err(|e| format!("invalid path element {key:?}: {e}"))
        };
        match prefix {
            "f" => Ok(Self::Field(body.to_string())),
            "k" => match parse_json()? {
                Value::Object(m) => {
                    let fields: Vec<(&str, &Value)> =
                        m.iter().map(|(k, v)| (k.as_str(), v)).collect();
                    Ok(Self::key(&fields))
                }
                _ => Err(format!(
                    "invalid path element {key:?}: key is not an object"
                )),
            },
            "v" => Ok(Self::value(&parse_json()?)),
            "i" => body
                .parse()
                .map(Self::Index)
                .map_err(|e| format!("invalid path element {key:?}: {e}")),
            _ => Err(format!(
                "invalid path element {key:?}: unknown type {prefix:?}"
            )),
        }
    }
}

/// Printed as upstream prints paths in conflicts: `.spec`, `[name="nginx"]`, `[="a"]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => write!(f, ".{name}"),
            Self::Key(json) => match serde_json::from_str::<Value>(json) {
                Ok(Value::Object(m)) => {
                    let parts: Vec<String> = m
                        .iter()
                        .map(|(k, v)| format!("{k}={}", go_value_string(v)))
                        .collect();
                    write!(f, "[{}]", parts.join(","))
                }
                _ => write!(f, "[{json}]"),
            },
            Self::Value(json) => match serde_json::from_str::<Value>(json) {
                Ok(v) => write!(f, "[={}]", go_value_string(&v)),
                Err(_) => write!(f, "[={json}]"),
            },
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A whole path printed as upstream does: `.spec.containers[name="app"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// Values the way structured-merge-diff's `value.ToString` prints them.
fn go_value_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => json_string(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_value_string).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", go_value_string(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// Compact JSON with object keys sorted, so equal values always encode to the same text
/// whatever order the map keeps its keys in.
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let body: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", json_string(k), canonical_json(&m[k.as_str()])))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => {
            let body: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", body.join(","))
        }
        other => other.to_string(),
    }
}

/// A set of field paths, kept as a tree. `members` are the paths that end at this node;
/// `children` hold paths that continue. Empty children are never kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds a path; the empty path names the root, which a set cannot hold.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    /// The paths below `pe`, without the `pe` prefix.
    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    pub fn members(&self) -> impl Iterator<Item = &PathElement> {
        self.members.iter()
    }

    pub fn children(&self) -> impl Iterator<Item = (&PathElement, &Set)> {
        self.children.iter()
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// `self.union(other)` in place: the cost follows `other`, not `self`.
    pub fn merge(&mut self, other: &Set) {
        self.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            match self.children.get_mut(pe) {
                Some(mine) => mine.merge(child),
                None => {
                    self.children.insert(pe.clone(), child.clone());
                }
            }
        }
    }

    /// `self.difference(other)` in place: the cost follows `other`, not `self`, so removing a
    /// write's few changed fields from a large manager entry does not rebuild the entry.
    pub fn subtract(&mut self, other: &Set) {
        for pe in &other.members {
            self.members.remove(pe);
        }
        for (pe, theirs) in &other.children {
            if let Some(mine) = self.children.get_mut(pe) {
                mine.subtract(theirs);
                if mine.is_empty() {
                    self.children.remove(pe);
                }
            }
        }
    }

    /// Paths of `self` not in `other`, member by member: removing a path does not remove
    /// the paths below it.
    pub fn difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                let rest = match other.children.get(pe) {
                    Some(theirs) => child.difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (pe.clone(), rest))
            })
            .collect();
        Set { members, children }
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                let both = child.intersection(other.children.get(pe)?);
                (!both.is_empty()).then(|| (pe.clone(), both))
            })
            .collect();
        Set { members, children }
    }

    /// Every path, in structured-merge-diff's iteration order: a node's members, then its
    /// children depth first.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        for pe in &self.members {
            let mut p = prefix.clone();
            p.push(pe.clone());
            out.push(p);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The FieldsV1 JSON of the set: `{"f:spec":{"f:replicas":{}}}`; a node that is itself a
    /// member and also has children carries `".":{}`.
    pub fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        for pe in &self.members {
            if !self.children.contains_key(pe) {
                out.insert(pe.to_fields_key(), Value::Object(Map::new()));
            }
        }
        for (pe, child) in &self.children {
            let mut node = match child.to_fields_v1() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if self.members.contains(pe) {
                node.insert(".".into(), Value::Object(Map::new()));
            }
            out.insert(pe.to_fields_key(), Value::Object(node));
        }
        Value::Object(out)
    }

    /// Parses FieldsV1 JSON.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let Value::Object(m) = v else {
            return Err("fieldsV1 must be an object".into());
        };
        let mut set = Set::new();
        for (key, body) in m {
            if key == "." {
                continue;
            }
            let pe = PathElement::from_fields_key(key)?;
            let Value::Object(inner) = body else {
                return Err(format!("value of {key:?} must be an object"));
            };
            if inner.is_empty() || inner.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let child = Set::from_fields_v1(body)?;
            if !child.is_empty() {
                set.children.insert(pe, child);
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    #[test]
    fn merge_and_subtract_in_place_equal_union_and_difference() {
        let sets: Vec<Set> = [
            json!({}),
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:nodeName": {}}}),
            json!({"f:spec": {"f:nodeName": {}, "f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:image": {}}}}}),
            json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {".": {}}}),
            json!({"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:image": {}, "f:name": {}}}}}),
        ]
        .iter()
        .map(|v| Set::from_fields_v1(v).expect("valid fieldsV1"))
        .collect();
        for a in &sets {
            for b in &sets {
                let mut merged = a.clone();
                merged.merge(b);
                assert_eq!(merged, a.union(b));
                let mut rest = a.clone();
                rest.subtract(b);
                assert_eq!(rest, a.difference(b));
                assert!(rest.children().all(|(_, c)| !c.is_empty()));
            }
        }
    }

    #[test]
    fn fields_v1_round_trips_with_dot_for_members_that_have_children() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}},
            "f:finalizers": {"v:\"a\"": {}}
        });
        let set = Set::from_fields_v1(&v).expect("valid fieldsV1");
        assert!(set.has(&[f("metadata"), f("labels")]));
        assert!(!set.has(&[f("metadata")]));
        let nginx = PathElement::key(&[("name", &json!("nginx"))]);
        assert!(set.has(&[f("spec"), f("containers"), nginx.clone(), f("image")]));
        assert!(set.has(&[f("spec"), f("containers"), nginx]));
        assert_eq!(set.to_fields_v1(), v);
    }

    #[test]
    fn keys_are_sorted_so_field_order_does_not_matter() {
        let a = PathElement::key(&[("protocol", &json!("TCP")), ("containerPort", &json!(80))]);
        let b = PathElement::from_fields_key("k:{\"protocol\":\"TCP\",\"containerPort\":80}")
            .expect("valid key");
        assert_eq!(a, b);
        assert_eq!(
            a.to_fields_key(),
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}"
        );
        assert_eq!(a.to_string(), "[containerPort=80,protocol=\"TCP\"]");
    }

    #[test]
    fn paths_print_like_upstream() {
        let p = vec![
            f("spec"),
            f("containers"),
            PathElement::key(&[("name", &json!("app"))]),
            f("image"),
        ];
        assert_eq!(path_string(&p), ".spec.containers[name=\"app\"].image");
        assert_eq!(
            path_string(&[f("x"), PathElement::value(&json!("a"))]),
            ".x[=\"a\"]"
        );
    }

    #[test]
    fn difference_removes_members_but_keeps_paths_below_them() {
        let mut a = Set::new();
        a.insert(&[f("spec")]);
        a.insert(&[f("spec"), f("replicas")]);
        let mut b = Set::new();
        b.insert(&[f("spec")]);
        let d = a.difference(&b);
        assert!(!d.has(&[f("spec")]));
        assert!(d.has(&[f("spec"), f("replicas")]));
        assert!(a.difference(&a).is_empty());
        assert_eq!(a.intersection(&b), b);
    }

    #[test]
    fn invalid_fields_v1_is_rejected() {
        assert!(Set::from_fields_v1(&json!({"x:foo": {}})).is_err());
        assert!(Set::from_fields_v1(&json!({"f:foo": 1})).is_err());
        assert!(Set::from_fields_v1(&json!([])).is_err());
    }
}
