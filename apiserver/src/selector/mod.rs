//! Label and field selectors, and which fields each resource lets clients select on.

pub mod fields;
pub mod labels;

use serde_json::Value;

pub use fields::{FieldOp, FieldRequirement, FieldSelector};
pub use labels::{LabelSelector, Operator, Requirement};

use crate::object;

const META: &[&str] = &["metadata.name", "metadata.namespace"];

const POD: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
    // Old v1 clients send spec.host for spec.nodeName.
    "spec.host",
];

const CORE_EVENT: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

const EVENTS_V1_EVENT: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "type",
];

/// Node and Namespace accept no `metadata.namespace`: upstream's conversions for them omit it.
const NODE: &[&str] = &["metadata.name", "spec.unschedulable"];
const NAMESPACE: &[&str] = &["metadata.name", "status.phase"];
const SECRET: &[&str] = &["metadata.name", "metadata.namespace", "type"];
const SERVICE: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.clusterIP",
    "spec.type",
];
const REPLICATION_CONTROLLER: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];
const JOB: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];

/// The field labels a built-in resource accepts in `fieldSelector`, as upstream's field label
/// conversion functions list them. Resources without one accept only the two metadata fields.
pub fn supported_fields(group: &str, resource: &str) -> &'static [&'static str] {
    match (group, resource) {
        ("", "pods") => POD,
        ("", "nodes") => NODE,
        ("", "namespaces") => NAMESPACE,
        ("", "secrets") => SECRET,
        ("", "services") => SERVICE,
        ("", "replicationcontrollers") => REPLICATION_CONTROLLER,
        ("", "events") => CORE_EVENT,
        ("events.k8s.io", "events") => EVENTS_V1_EVENT,
        ("batch", "jobs") => JOB,
        _ => META,
    }
}

/// Checks every field of the selector against what the resource supports, with the message
/// upstream answers (as a 400 BadRequest). Resources that are not built in are custom
/// resources: `metadata.name`, `metadata.namespace` and the CRD's `selectableFields` (`extra`).
pub fn validate_fields(
    group: &str,
    resource: &str,
    sel: &FieldSelector,
    extra: &[&str],
) -> Result<(), String> {
    let builtin = builtin_resources()
        .iter()
        .any(|(g, r)| g == group && r == resource);
    for r in sel.requirements() {
        let label = r.field.as_str();
        if !builtin {
            if META.contains(&label) || extra.contains(&label) {
                continue;
            }
            return Err(format!("field label not supported: {label}"));
        }
        if supported_fields(group, resource).contains(&label) {
            continue;
        }
        return Err(match (group, resource) {
            ("batch", "jobs") => format!("field label \"{label}\" not supported for batchv1.Job"),
            ("", "pods" | "nodes" | "namespaces" | "secrets" | "services" | "replicationcontrollers" | "events")
            | ("events.k8s.io", "events") => format!("field label not supported: {label}"),
            _ => format!(
                "\"{label}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
            ),
        });
    }
    Ok(())
}

/// The value a field selector compares for `field` of `obj`: missing values are `""` and
/// booleans `"true"`/`"false"`, as upstream's selectable field sets hold them. Unknown fields of
/// built-ins answer None; custom resources read any dotted path (their `selectableFields`).
pub fn field_value(group: &str, resource: &str, obj: &Value, field: &str) -> Option<String> {
    let text = |path: &str| object::path_str(obj, path).unwrap_or_default();
    let int = |path: &str| {
        object::path(obj, path)
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string()
    };
    let flag = |path: &str| {
        object::path(obj, path)
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string()
    };
    match field {
        "metadata.name" => return Some(object::name(obj).to_string()),
        "metadata.namespace" => return Some(object::namespace(obj).to_string()),
        _ => {}
    }
    let v = match (group, resource, field) {
        ("", "pods", "spec.nodeName" | "spec.host") => text("spec.nodeName"),
        (
            "",
            "pods",
            "spec.restartPolicy"
            | "spec.schedulerName"
            | "spec.serviceAccountName"
            | "status.phase",
        )
        | ("", "pods", "status.nominatedNodeName") => text(field),
        ("", "pods", "spec.hostNetwork") => flag("spec.hostNetwork"),
        ("", "pods", "status.podIP") => first_pod_ip(obj),
        // Upstream accepts the label but keeps no value for it, so it compares as empty.
        ("", "pods", "status.podIPs") => String::new(),
        ("", "nodes", "spec.unschedulable") => flag(field),
        ("", "namespaces", "status.phase") => text(field),
        ("", "secrets", "type") => text(field),
        ("", "services", "spec.clusterIP" | "spec.type") => text(field),
        ("", "replicationcontrollers", "status.replicas") => int(field),
        ("batch", "jobs", "status.successful") => int("status.succeeded"),
        ("", "events", _) | ("events.k8s.io", "events", _) => return event_field(obj, field),
        _ if is_builtin_group(group) => return None,
        _ => return object::path_str(obj, field),
    };
    Some(v)
}

/// Whether `obj` of the resource satisfies the field selector.
pub fn matches_fields(group: &str, resource: &str, obj: &Value, sel: &FieldSelector) -> bool {
    sel.matches(|f| field_value(group, resource, obj, f))
}

fn first_pod_ip(obj: &Value) -> String {
    object::path(obj, "status.podIPs")
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .and_then(|ip| ip.get("ip"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| object::path_str(obj, "status.podIP"))
        .unwrap_or_default()
}

/// Events are one resource served in two shapes (core/v1 and events.k8s.io/v1); either
/// shape's field names select on either shape of stored object.
fn event_field(obj: &Value, field: &str) -> Option<String> {
    let first = |paths: &[&str]| {
        paths
            .iter()
            .find_map(|p| object::path_str(obj, p).filter(|s| !s.is_empty()))
            .unwrap_or_default()
    };
    if let Some(sub) = field
        .strip_prefix("involvedObject.")
        .or_else(|| field.strip_prefix("regarding."))
    {
        if ![
            "kind",
            "namespace",
            "name",
            "uid",
            "apiVersion",
            "resourceVersion",
            "fieldPath",
        ]
        .contains(&sub)
        {
            return None;
        }
        return Some(first(&[
            &format!("involvedObject.{sub}"),
            &format!("regarding.{sub}"),
        ]));
    }
    Some(match field {
        "reason" => first(&["reason"]),
        "type" => first(&["type"]),
        "reportingComponent" | "reportingController" => {
            first(&["reportingComponent", "reportingController"])
        }
        "source" => first(&[
            "source.component",
            "deprecatedSource.component",
            "reportingComponent",
            "reportingController",
        ]),
        _ => return None,
    })
}

/// Groups whose resources are compiled in; anything else is served from a CRD.
fn is_builtin_group(group: &str) -> bool {
    builtin_resources().iter().any(|(g, _)| g == group)
}

/// (group, resource) of every built-in, computed once: selection runs per listed object.
fn builtin_resources() -> &'static [(String, String)] {
    static CELL: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        crate::resources::builtin()
            .into_iter()
            .map(|r| (r.group, r.resource))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unsupported_fields_are_refused_with_upstream_wording() {
        let cases = [
            ("", "pods", "spec.foo", Err("field label not supported: spec.foo")),
            ("", "pods", "spec.nodeName", Ok(())),
            ("", "pods", "spec.host", Ok(())),
            ("", "nodes", "metadata.namespace", Err("field label not supported: metadata.namespace")),
            ("", "nodes", "spec.unschedulable", Ok(())),
            ("", "events", "involvedObject.uid", Ok(())),
            ("events.k8s.io", "events", "regarding.name", Ok(())),
            ("events.k8s.io", "events", "involvedObject.name", Err("field label not supported: involvedObject.name")),
            ("batch", "jobs", "status.active", Err("field label \"status.active\" not supported for batchv1.Job")),
            (
                "",
                "configmaps",
                "data.x",
                Err("\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""),
            ),
            (
                "apps",
                "replicasets",
                "status.replicas",
                Err("\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""),
            ),
            ("example.com", "widgets", "spec.color", Ok(())),
            ("example.com", "widgets", "spec.size", Err("field label not supported: spec.size")),
            ("example.com", "widgets", "metadata.namespace", Ok(())),
        ];
        for (group, resource, field, want) in cases {
            let sel = FieldSelector::parse(&format!("{field}=x")).expect("parse");
            let got = validate_fields(group, resource, &sel, &["spec.color"]);
            assert_eq!(
                got,
                want.map_err(str::to_string),
                "{group}/{resource} {field}"
            );
        }
    }

    #[test]
    fn pod_fields_read_like_upstream() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.1"}]},
        });
        let cases = [
            ("metadata.name", Some("p")),
            ("metadata.namespace", Some("ns")),
            ("spec.nodeName", Some("n1")),
            ("spec.host", Some("n1")),
            ("spec.hostNetwork", Some("false")),
            ("spec.schedulerName", Some("")),
            ("status.podIP", Some("10.0.0.1")),
            ("status.phase", Some("Running")),
            ("spec.containers", None),
        ];
        for (field, want) in cases {
            assert_eq!(
                field_value("", "pods", &pod, field).as_deref(),
                want,
                "{field}"
            );
        }
    }

    #[test]
    fn events_select_on_either_shape() {
        let core = json!({"involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "kubelet"}, "reason": "Started"});
        let v1 = json!({"regarding": {"kind": "Pod", "name": "p"}, "reportingController": "kubelet", "reason": "Started"});
        for obj in [&core, &v1] {
            for (group, field, want) in [
                ("", "involvedObject.name", "p"),
                ("events.k8s.io", "regarding.kind", "Pod"),
                ("", "source", "kubelet"),
                ("", "reason", "Started"),
                ("", "type", ""),
            ] {
                assert_eq!(
                    field_value(group, "events", obj, field).as_deref(),
                    Some(want),
                    "{field}"
                );
            }
        }
    }

    #[test]
    fn selectors_match_objects_through_their_field_values() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        let cases = [
            ("spec.unschedulable=true", true),
            ("spec.unschedulable!=true", false),
            ("metadata.name=n1,spec.unschedulable==true", true),
            ("metadata.name=n2", false),
        ];
        for (s, want) in cases {
            let sel = FieldSelector::parse(s).expect("parse");
            assert_eq!(matches_fields("", "nodes", &node, &sel), want, "{s}");
        }
        let job = json!({"status": {"succeeded": 3}});
        assert_eq!(
            field_value("batch", "jobs", &job, "status.successful").as_deref(),
            Some("3")
        );
        let widget = json!({"spec": {"color": "red", "size": 2}});
        assert_eq!(
            field_value("example.com", "widgets", &widget, "spec.size").as_deref(),
            Some("2")
        );
    }
}
