//! Events of both groups (one storage, core/v1 shape) and the conversion between the shapes.

use serde_json::{json, Map, Value};

use crate::error::FieldError;
use crate::registry::validation::{
    get, int_of, invalid_each, is_dns1123_subdomain, name_is_dns_subdomain, str_of,
    validate_immutable_field, validate_object_meta, validate_object_meta_update,
    validate_path_segment_name, validate_qualified_name,
};
use crate::registry::Strategy;

/// (events.k8s.io/v1 field, core/v1 field) pairs that only differ in name.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(ev: &Value, to_core: bool) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(m) = ev.as_object() {
        for (k, v) in m {
            let renamed = RENAMED.iter().find_map(|(v1, core)| {
                if to_core {
                    (k == v1).then_some(*core)
                } else {
                    (k == core).then_some(*v1)
                }
            });
            out.insert(renamed.unwrap_or(k).to_string(), v.clone());
        }
    }
    out
}

/// Fields core/v1 always prints (Go structs and non-omitempty fields).
fn fill_core_fields(out: &mut Map<String, Value>) {
    for (k, v) in [
        ("involvedObject", json!({})),
        ("source", json!({})),
        ("reportingComponent", json!("")),
        ("reportingInstance", json!("")),
        ("firstTimestamp", Value::Null),
        ("lastTimestamp", Value::Null),
        ("eventTime", Value::Null),
    ] {
        out.entry(k).or_insert(v);
    }
    out.entry("metadata").or_insert_with(|| json!({}));
}

/// An events.k8s.io/v1 Event in the core/v1 shape (regarding -> involvedObject, note ->
/// message, reportingController -> reportingComponent, deprecated* -> source/timestamps/count).
pub fn events_v1_to_core(ev: &Value) -> Value {
    let mut out = rename(ev, true);
    fill_core_fields(&mut out);
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// A core/v1 Event in the events.k8s.io/v1 shape.
pub fn core_to_events_v1(ev: &Value) -> Value {
    let mut out = rename(ev, false);
    out.entry("eventTime").or_insert(Value::Null);
    out.entry("regarding").or_insert_with(|| json!({}));
    out.entry("deprecatedSource").or_insert_with(|| json!({}));
    // Zero values that events.k8s.io/v1 omits.
    for f in [
        "reportingController",
        "reportingInstance",
        "note",
        "action",
        "reason",
        "type",
    ] {
        if out.get(f).and_then(Value::as_str) == Some("") {
            out.remove(f);
        }
    }
    for f in ["deprecatedFirstTimestamp", "deprecatedLastTimestamp"] {
        if out.get(f).is_some_and(Value::is_null) {
            out.remove(f);
        }
    }
    if out.get("deprecatedCount").and_then(Value::as_i64) == Some(0) {
        out.remove("deprecatedCount");
    }
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

const LENGTH_LIMIT: usize = 128;
const NOTE_LENGTH_LIMIT: usize = 1024;

fn set(ev: &Value, f: &str) -> bool {
    get(ev, f).is_some_and(|v| v.as_str() != Some(""))
}

/// Upstream's `legacyValidateEvent` on a core-shaped event. `controller_field` names the
/// reporting controller as the client's API version does.
fn legacy_validate(ev: &Value, controller_field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let namespace = crate::object::namespace(ev);
    let empty = json!({});
    let involved = ev.get("involvedObject").unwrap_or(&empty);
    let involved_ns = str_of(involved, "namespace");
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            json!(involved_ns),
            "does not match event.namespace",
        )
    };
    if !set(ev, "eventTime") {
        if involved_ns.is_empty() {
            if !namespace.is_empty() && namespace != "default" {
                errs.push(mismatch());
            }
        } else if namespace != involved_ns {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(mismatch());
        }
        let controller = str_of(ev, "reportingComponent");
        if controller.is_empty() {
            errs.push(FieldError::required(controller_field, ""));
        }
        errs.extend(validate_qualified_name(controller, controller_field));
        for (f, limit) in [
            ("reportingInstance", LENGTH_LIMIT),
            ("action", LENGTH_LIMIT),
            ("reason", LENGTH_LIMIT),
        ] {
            let v = str_of(ev, f);
            if v.is_empty() {
                errs.push(FieldError::required(f, ""));
            }
            if v.len() > limit {
                errs.push(FieldError::invalid(
                    f,
                    json!(""),
                    format!("can have at most {limit} characters"),
                ));
            }
        }
        if str_of(ev, "message").len() > NOTE_LENGTH_LIMIT {
            errs.push(FieldError::invalid(
                "message",
                json!(""),
                format!("can have at most {NOTE_LENGTH_LIMIT} characters"),
            ));
        }
    }
    errs.extend(invalid_each(
        "namespace",
        namespace,
        is_dns1123_subdomain(namespace),
    ));
    errs
}

fn validate_series(ev: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(s) = get(ev, "series") {
        if int_of(s, "count").unwrap_or(0) < 2 {
            errs.push(FieldError::invalid(
                "series.count",
                json!(""),
                "should be at least 2",
            ));
        }
        if !set(s, "lastObservedTime") {
            errs.push(FieldError::required("series.lastObservedTime", ""));
        }
    }
    errs
}

/// Strict rules for events created through events.k8s.io/v1 (checked on the core shape).
fn strict_validate(ev: &Value) -> Vec<FieldError> {
    let mut errs = legacy_validate(ev, "reportingController");
    errs.extend(validate_object_meta(ev, Some(true), name_is_dns_subdomain));
    errs.extend(validate_series(ev));
    if !set(ev, "eventTime") {
        errs.push(FieldError::required("eventTime", ""));
    }
    let ty = str_of(ev, "type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            json!(""),
            format!("has invalid value: {ty}"),
        ));
    }
    for f in ["firstTimestamp", "lastTimestamp"] {
        if set(ev, f) {
            errs.push(FieldError::invalid(f, json!(""), "needs to be unset"));
        }
    }
    if int_of(ev, "count").unwrap_or(0) != 0 {
        errs.push(FieldError::invalid("count", json!(""), "needs to be unset"));
    }
    let source = ev.get("source");
    if source.is_some_and(|s| set(s, "component") || set(s, "host")) {
        errs.push(FieldError::invalid(
            "source",
            json!(""),
            "needs to be unset",
        ));
    }
    errs
}

fn meta_path_segment(ev: &Value) -> Vec<FieldError> {
    validate_object_meta(ev, Some(true), validate_path_segment_name)
}

/// core/v1 `events`: lenient, as upstream keeps it for old clients.
pub struct EventStrategy;

impl Strategy for EventStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            fill_core_fields(m);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = legacy_validate(obj, "reportingComponent");
        errs.extend(meta_path_segment(obj));
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(self.validate(new));
        errs
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }
}

/// events.k8s.io/v1 `events`: objects arrive in the events.k8s.io shape and are checked
/// with upstream's strict rules on their core form.
pub struct EventsV1Strategy;

impl Strategy for EventsV1Strategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        strict_validate(&events_v1_to_core(obj))
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let (n, o) = (events_v1_to_core(new), events_v1_to_core(old));
        let mut errs = legacy_validate(&n, "reportingController");
        errs.extend(meta_path_segment(&n));
        errs.extend(validate_object_meta_update(&n, &o));
        if n.get("series") != o.get("series") {
            errs.extend(validate_series(&n));
        }
        for (core, path) in [
            ("involvedObject", "involvedObject"),
            ("reason", "reason"),
            ("message", "note"),
            ("source", "source"),
            ("firstTimestamp", "firstTimestamp"),
            ("lastTimestamp", "lastTimestamp"),
            ("count", "count"),
            ("type", "type"),
            ("eventTime", "eventTime"),
            ("action", "action"),
            ("related", "related"),
            ("reportingComponent", "reportingController"),
            ("reportingInstance", "reportingInstance"),
        ] {
            errs.extend(validate_immutable_field(n.get(core), o.get(core), path));
        }
        errs
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_event() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": "default"},
            "eventTime": "2024-01-01T00:00:00.000000Z",
            "reportingController": "example.com/ctl", "reportingInstance": "ctl-1",
            "action": "Sync", "reason": "Synced", "type": "Normal", "note": "done",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
        })
    }

    #[test]
    fn conversion_renames_fields_both_ways() {
        let core = events_v1_to_core(&v1_event());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "done");
        assert_eq!(core["reportingComponent"], "example.com/ctl");
        assert_eq!(core["source"], json!({}));
        assert!(core.get("note").is_none());
        let back = core_to_events_v1(&core);
        assert_eq!(back["regarding"], v1_event()["regarding"]);
        assert_eq!(back["note"], "done");
        assert_eq!(back["reportingController"], "example.com/ctl");
        assert_eq!(back["apiVersion"], "events.k8s.io/v1");
        assert!(back.get("involvedObject").is_none());
    }

    #[test]
    fn kubelet_style_core_events_convert_to_deprecated_fields() {
        let core = json!({"metadata": {"name": "x", "namespace": "default"}, "involvedObject": {"kind": "Pod"},
            "source": {"component": "kubelet", "host": "n1"}, "count": 3, "firstTimestamp": "2024-01-01T00:00:00Z",
            "message": "Pulled", "reason": "Pulled", "type": "Normal", "reportingComponent": "", "reportingInstance": ""});
        let v1 = core_to_events_v1(&core);
        assert_eq!(v1["deprecatedSource"]["component"], "kubelet");
        assert_eq!(v1["deprecatedCount"], 3);
        assert_eq!(v1["deprecatedFirstTimestamp"], "2024-01-01T00:00:00Z");
        assert_eq!(v1["eventTime"], Value::Null);
        assert!(v1.get("reportingController").is_none());
    }

    #[test]
    fn events_v1_are_validated_strictly() {
        struct Case {
            name: &'static str,
            change: fn(&mut Value),
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "valid", change: |_| {}, want: vec![] },
            Case { name: "no event time", change: |e| { e.as_object_mut().map(|m| m.remove("eventTime")); },
                want: vec!["eventTime: Required value"] },
            Case { name: "bad type", change: |e| e["type"] = json!("Info"), want: vec!["type: Invalid value: \"\": has invalid value: Info"] },
            Case { name: "missing controller", change: |e| { e.as_object_mut().map(|m| m.remove("reportingController")); },
                want: vec!["reportingController: Required value", "reportingController: Invalid value: \"\": name part must be non-empty",
                    "reportingController: Invalid value: \"\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"] },
            Case { name: "deprecated count", change: |e| e["deprecatedCount"] = json!(2), want: vec!["count: Invalid value: \"\": needs to be unset"] },
        ];
        for c in cases {
            let mut e = v1_event();
            (c.change)(&mut e);
            let got: Vec<String> = EventsV1Strategy
                .validate(&e)
                .iter()
                .map(FieldError::message)
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn core_events_only_check_namespaces() {
        struct Case {
            name: &'static str,
            event: Value,
            errors: usize,
        }
        let cases = [
            Case {
                name: "matching",
                event: json!({"metadata": {"name": "a.b", "namespace": "ns"}, "involvedObject": {"namespace": "ns"}}),
                errors: 0,
            },
            Case {
                name: "cluster object in default",
                event: json!({"metadata": {"name": "a", "namespace": "default"}, "involvedObject": {"kind": "Node"}}),
                errors: 0,
            },
            Case {
                name: "mismatch",
                event: json!({"metadata": {"name": "a", "namespace": "ns"}, "involvedObject": {"namespace": "other"}}),
                errors: 1,
            },
            Case {
                name: "slash in name",
                event: json!({"metadata": {"name": "a/b", "namespace": "default"}}),
                errors: 1,
            },
        ];
        for c in cases {
            let mut e = c.event;
            EventStrategy.default(&mut e);
            assert_eq!(
                EventStrategy.validate(&e).len(),
                c.errors,
                "{}: {:?}",
                c.name,
                EventStrategy.validate(&e)
            );
        }
    }

    #[test]
    fn events_v1_updates_keep_the_note() {
        let old = v1_event();
        let mut new = old.clone();
        new["note"] = json!("changed");
        let got: Vec<String> = EventsV1Strategy
            .validate_update(&new, &old)
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(
            got,
            vec!["note: Invalid value: \"changed\": field is immutable"]
        );
    }
}
