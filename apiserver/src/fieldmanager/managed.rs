//! `metadata.managedFields` entries: decoding, manager identity, capping and encoding.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::fieldpath::Set;
use crate::object::parse_rfc3339;

/// How a manager last wrote its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// What tells managers apart. An applier keeps one entry whatever version it applies at,
/// so its identity leaves the apiVersion out; updaters keep one entry per version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// Empty for appliers.
    pub api_version: String,
    /// Empty for the main resource.
    pub subresource: String,
}

impl ManagerId {
    pub fn new(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> Self {
        // Upstream records requests that name no manager as "unknown".
        let manager = if manager.is_empty() {
            "unknown"
        } else {
            manager
        };
        Self {
            manager: manager.to_string(),
            operation,
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => api_version.to_string(),
            },
            subresource: subresource.to_string(),
        }
    }

    /// The manager as conflict messages name it: `"kubectl" with subresource "status" using v1`.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// The fields one manager owns, at the version it wrote them, and when it last changed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub set: Set,
    pub api_version: String,
    pub time: Option<String>,
}

/// All managers of an object.
pub type Managed = BTreeMap<ManagerId, Owned>;

/// Upstream keeps at most this many update entries; older ones are merged into buckets.
pub const MAX_UPDATE_MANAGERS: usize = 10;
/// The manager name of those buckets.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// Decodes `metadata.managedFields` with upstream's checks.
pub fn decode(entries: &Value) -> Result<Managed, String> {
    let Value::Array(entries) = entries else {
        return Err("managedFields must be a list".into());
    };
    let mut managed = Managed::new();
    for (i, entry) in entries.iter().enumerate() {
        let Value::Object(e) = entry else {
            return Err(format!("managed fields entry {i} must be an object"));
        };
        let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        let api_version = text("apiVersion");
        if api_version.is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match text("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => {
                return Err(format!(
                    "invalid fieldsType {other:?} in managed fields entry {i}"
                ))
            }
        }
        let set = match e.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(v) => {
                Set::from_fields_v1(v).map_err(|err| format!("error decoding set: {err}"))?
            }
        };
        let id = ManagerId {
            manager: text("manager").to_string(),
            operation,
            api_version: match operation {
                Operation::Apply => String::new(),
                Operation::Update => api_version.to_string(),
            },
            subresource: text("subresource").to_string(),
        };
        let time = e.get("time").and_then(Value::as_str).map(str::to_string);
        managed.insert(
            id,
            Owned {
                set,
                api_version: api_version.to_string(),
                time,
            },
        );
    }
    Ok(managed)
}

/// True when a request asks to clear managedFields: an empty list or a single empty entry.
pub fn is_reset(requested: Option<&Value>) -> bool {
    match requested {
        Some(Value::Array(entries)) => match entries.as_slice() {
            [] => true,
            [only] => only.as_object().is_some_and(Map::is_empty),
            _ => false,
        },
        _ => false,
    }
}

fn seconds(time: Option<&String>) -> i64 {
    time.and_then(|t| parse_rfc3339(t)).unwrap_or(0)
}

/// Encodes the entries in upstream's order (operation, time, manager, apiVersion,
/// subresource), or None when no manager is left.
pub fn encode(managed: &Managed) -> Option<Value> {
    if managed.is_empty() {
        return None;
    }
    let mut entries: Vec<(&ManagerId, &Owned)> = managed.iter().collect();
    entries.sort_by(|(a, ao), (b, bo)| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| seconds(ao.time.as_ref()).cmp(&seconds(bo.time.as_ref())))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| ao.api_version.cmp(&bo.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let list = entries
        .into_iter()
        .map(|(id, owned)| {
            let mut e = Map::new();
            if !id.manager.is_empty() {
                e.insert("manager".into(), json!(id.manager));
            }
            e.insert("operation".into(), json!(id.operation.as_str()));
            e.insert("apiVersion".into(), json!(owned.api_version));
            if let Some(t) = &owned.time {
                e.insert("time".into(), json!(t));
            }
            e.insert("fieldsType".into(), json!("FieldsV1"));
            e.insert("fieldsV1".into(), owned.set.to_fields_v1());
            if !id.subresource.is_empty() {
                e.insert("subresource".into(), json!(id.subresource));
            }
            Value::Object(e)
        })
        .collect();
    Some(Value::Array(list))
}

/// Keeps at most `max` update entries: the oldest are merged, per apiVersion, into an
/// `ancient-changes` entry, so objects written by many controllers stay small.
pub fn cap_update_managers(managed: &mut Managed, max: usize) {
    let mut updaters: Vec<ManagerId> = managed
        .keys()
        .filter(|id| id.operation == Operation::Update)
        .cloned()
        .collect();
    if updaters.len() <= max {
        return;
    }
    updaters.sort_by(|a, b| {
        let (ta, tb) = (managed[a].time.as_ref(), managed[b].time.as_ref());
        seconds(ta).cmp(&seconds(tb)).then_with(|| a.cmp(b))
    });
    let mut remaining = updaters.len();
    let mut first_by_version: BTreeMap<String, ManagerId> = BTreeMap::new();
    for id in updaters {
        if remaining <= max {
            break;
        }
        let Some(owned) = managed.get(&id).cloned() else {
            continue;
        };
        let version = owned.api_version.clone();
        let bucket = ManagerId::new(ANCIENT_CHANGES, Operation::Update, &version, "");
        // The first old entry of a version becomes the bucket only once a second one joins it.
        let Some(first) = first_by_version.get(&version).cloned() else {
            first_by_version.insert(version, id);
            continue;
        };
        if !managed.contains_key(&bucket) {
            if let Some(moved) = managed.remove(&first) {
                managed.insert(bucket.clone(), moved);
            }
        }
        if let Some(b) = managed.get_mut(&bucket) {
            b.set = owned.set.union(&b.set);
            b.time = owned.time.clone();
        }
        if id != bucket {
            managed.remove(&id);
        }
        remaining -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::fieldpath::PathElement;
    use super::*;

    #[test]
    fn decode_rejects_entries_upstream_rejects() {
        assert!(decode(&json!([{}])).is_err());
        assert!(decode(&json!([{"operation": "Apply", "apiVersion": "v1"}])).is_err());
        assert!(decode(
            &json!([{"operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}])
        )
        .is_err());
        let ok = decode(&json!([{"manager": "m", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:a": {}}}]))
            .expect("valid entry");
        assert_eq!(ok.len(), 1);
    }

    #[test]
    fn an_empty_list_or_one_empty_entry_resets() {
        assert!(is_reset(Some(&json!([]))));
        assert!(is_reset(Some(&json!([{}]))));
        assert!(!is_reset(None));
        assert!(!is_reset(Some(&json!([{}, {}]))));
    }

    #[test]
    fn encode_puts_appliers_first_then_oldest() {
        let mut set = Set::new();
        set.insert(&[PathElement::Field("a".into())]);
        let owned = |t: &str, v: &str| Owned {
            set: set.clone(),
            api_version: v.into(),
            time: Some(t.into()),
        };
        let mut m = Managed::new();
        m.insert(
            ManagerId::new("z", Operation::Update, "v1", ""),
            owned("2024-01-01T00:00:00Z", "v1"),
        );
        m.insert(
            ManagerId::new("y", Operation::Update, "v1", ""),
            owned("2024-01-02T00:00:00Z", "v1"),
        );
        m.insert(
            ManagerId::new("x", Operation::Apply, "v1", ""),
            owned("2024-01-03T00:00:00Z", "v1"),
        );
        let out = encode(&m).expect("non-empty");
        let names: Vec<&str> = out
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert_eq!(names, vec!["x", "z", "y"]);
        assert_eq!(decode(&out).expect("round trip"), m);
    }

    #[test]
    fn more_than_ten_updaters_fold_the_oldest_into_ancient_changes() {
        let mut m = Managed::new();
        for i in 0..12 {
            let mut set = Set::new();
            set.insert(&[PathElement::Field(format!("f{i}"))]);
            m.insert(
                ManagerId::new(&format!("m{i:02}"), Operation::Update, "v1", ""),
                Owned {
                    set,
                    api_version: "v1".into(),
                    time: Some(format!("2024-01-01T00:00:{i:02}Z")),
                },
            );
        }
        cap_update_managers(&mut m, MAX_UPDATE_MANAGERS);
        assert_eq!(m.len(), 10);
        let bucket = &m[&ManagerId::new(ANCIENT_CHANGES, Operation::Update, "v1", "")];
        assert_eq!(bucket.set.paths().len(), 3);
        assert!(!m.contains_key(&ManagerId::new("m00", Operation::Update, "v1", "")));
        assert!(m.contains_key(&ManagerId::new("m03", Operation::Update, "v1", "")));
    }
}
