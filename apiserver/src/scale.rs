//! The `scale` subresource (autoscaling/v1 Scale) of the built-in workloads and of custom resources.

use serde_json::{json, Map, Value};

use crate::error::{ApiError, FieldError};
use crate::object;
use crate::resources::ResourceInfo;

/// Where a custom resource keeps its replica counts and selector, as `.spec.replicas`-style
/// paths from the CRD's `subresources.scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

impl ScalePaths {
    /// From a CRD version's `subresources.scale` (`specReplicasPath`, `statusReplicasPath`,
    /// `labelSelectorPath`).
    pub fn from_crd(scale: &Value) -> Option<Self> {
        let path = |k: &str| scale.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Self {
            spec_replicas: path("specReplicasPath")?,
            status_replicas: path("statusReplicasPath")?,
            label_selector: path("labelSelectorPath").filter(|p| !p.is_empty()),
        })
    }
}

/// Whose replica counts a Scale reads and writes.
enum Target<'a> {
    /// Deployments, replica sets and stateful sets: `spec.selector` is a LabelSelector.
    Workload,
    /// Replication controllers: `spec.selector` is a plain label map.
    ReplicationController,
    Custom(&'a ScalePaths),
}

fn target<'a>(info: &ResourceInfo, paths: Option<&'a ScalePaths>) -> Result<Target<'a>, ApiError> {
    if let Some(p) = paths {
        return Ok(Target::Custom(p));
    }
    match (info.group.as_str(), info.resource.as_str()) {
        ("apps", "deployments" | "replicasets" | "statefulsets") => Ok(Target::Workload),
        ("", "replicationcontrollers") => Ok(Target::ReplicationController),
        // Upstream has no route for it, so a client sees the router's 404.
        _ => Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

/// The Scale of `obj`. Errors are 500s: the stored object holds a replica count or selector
/// of the wrong type, which the client cannot fix through this subresource.
pub fn to_scale(
    info: &ResourceInfo,
    obj: &Value,
    paths: Option<&ScalePaths>,
) -> Result<Value, ApiError> {
    let target = target(info, paths)?;
    let (spec, status, selector) = match target {
        Target::Workload | Target::ReplicationController => {
            // Defaulting fills spec.replicas with 1 on these kinds, so absent means 1.
            let spec = object::path(obj, "spec.replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let status = object::path(obj, "status.replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let sel = obj.get("spec").and_then(|s| s.get("selector"));
            let selector = if matches!(target, Target::ReplicationController) {
                set_selector_string(sel)
            } else {
                label_selector_string(sel).map_err(ApiError::internal)?
            };
            (spec, status, selector)
        }
        Target::Custom(p) => {
            let int = |path: &str| nested_int(obj, path).map_err(ApiError::internal);
            let spec = int(&p.spec_replicas)?.unwrap_or(0);
            let status = int(&p.status_replicas)?.unwrap_or(0);
            let selector = match &p.label_selector {
                Some(path) => nested_string(obj, path)
                    .map_err(ApiError::internal)?
                    .unwrap_or_default(),
                None => String::new(),
            };
            (spec, status, selector)
        }
    };
    let mut meta = Map::new();
    for field in ["name", "namespace", "uid", "resourceVersion"] {
        if let Some(v) = object::meta_str(obj, field).filter(|v| !v.is_empty()) {
            meta.insert(field.into(), json!(v));
        }
    }
    // ObjectMeta's zero time still marshals, as null.
    meta.insert(
        "creationTimestamp".into(),
        obj.pointer("/metadata/creationTimestamp")
            .cloned()
            .unwrap_or(Value::Null),
    );
    // replicas are int32 upstream; spec.replicas and selector are omitempty there.
    let mut spec_obj = Map::new();
    if spec != 0 {
        spec_obj.insert("replicas".into(), json!(spec as i32));
    }
    let mut status_obj = Map::new();
    status_obj.insert("replicas".into(), json!(status as i32));
    if !selector.is_empty() {
        status_obj.insert("selector".into(), json!(selector));
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": spec_obj,
        "status": status_obj,
    }))
}

/// Writes `scale.spec.replicas` into `obj`.
///
/// Errors, as upstream answers them:
/// - 400 BadRequest when `spec.replicas` is not an int32 (upstream fails decoding the Scale);
/// - 422 Invalid for a negative count: `Scale.autoscaling "web" is invalid: spec.replicas: ...`
///   for built-ins, and the custom resource's own kind and path for CRs, since upstream
///   catches it there in the custom resource's validation;
/// - 409 Conflict ([`ApiError::stale`]) when `scale.metadata.resourceVersion` is set and is not
///   `obj`'s, which upstream reports from the storage precondition;
/// - 404 for a resource without a scale subresource, 500 when the replica path of a custom
///   resource runs through a non-object.
pub fn apply_scale(
    info: &ResourceInfo,
    obj: &mut Value,
    scale: &Value,
    paths: Option<&ScalePaths>,
) -> Result<(), ApiError> {
    let target = target(info, paths)?;
    let replicas = requested_replicas(scale)?;
    let name = object::name(obj).to_string();
    let wanted_rv = object::resource_version(scale);
    let stale = !wanted_rv.is_empty() && wanted_rv != object::resource_version(obj);
    match target {
        Target::Workload | Target::ReplicationController => {
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    &name,
                    &[FieldError::invalid(
                        "spec.replicas",
                        json!(replicas),
                        "must be greater than or equal to 0",
                    )],
                ));
            }
            if stale {
                return Err(ApiError::stale(&info.group, &info.resource, &name));
            }
            set_nested(obj, ".spec.replicas", json!(replicas))
        }
        Target::Custom(p) => {
            if stale {
                return Err(ApiError::stale(&info.group, &info.resource, &name));
            }
            if replicas < 0 {
                return Err(ApiError::invalid(
                    &info.group,
                    &info.kind,
                    &name,
                    &[FieldError::invalid(
                        p.spec_replicas.clone(),
                        json!(replicas),
                        "should be a non-negative integer",
                    )],
                ));
            }
            set_nested(obj, &p.spec_replicas, json!(replicas))
        }
    }
}

/// `spec.replicas` of a Scale body, which upstream decodes into an int32 (absent is 0).
fn requested_replicas(scale: &Value) -> Result<i64, ApiError> {
    let Some(v) = scale.get("spec").and_then(|s| s.get("replicas")) else {
        return Ok(0);
    };
    let what = match v {
        Value::Null => return Ok(0),
        Value::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(i) => return Ok(i64::from(i)),
            None => format!("number {n}"),
        },
        Value::String(_) => "string".into(),
        Value::Bool(_) => "bool".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    };
    Err(ApiError::bad_request(format!(
        "Scale in version \"v1\" cannot be handled as a Scale: json: cannot unmarshal {what} into Go struct field ScaleSpec.spec.replicas of type int32"
    )))
}

/// Go's `%T` of a decoded JSON value, for accessor errors worded as upstream's.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value at a `.a.b` path as `unstructured.NestedFieldNoCopy` finds it: absent is
/// `Ok(None)`, passing through a non-object is an error.
fn nested<'a>(obj: &'a Value, dotted: &str) -> Result<Option<&'a Value>, String> {
    let fields: Vec<&str> = dotted.trim_start_matches('.').split('.').collect();
    let mut cur = obj;
    for (i, f) in fields.iter().enumerate() {
        match cur {
            Value::Object(m) => match m.get(*f) {
                Some(next) => cur = next,
                None => return Ok(None),
            },
            other => {
                return Err(format!(
                    ".{} accessor error: {} is of the type {}, expected map[string]interface{{}}",
                    fields[..=i].join("."),
                    go_value(other),
                    go_type(other)
                ))
            }
        }
    }
    Ok(Some(cur))
}

/// `unstructured.NestedInt64` at a `.a.b` path, with its error text.
pub(crate) fn nested_int(obj: &Value, dotted: &str) -> Result<Option<i64>, String> {
    match nested(obj, dotted)? {
        None => Ok(None),
        Some(v) => v.as_i64().filter(|_| !v.is_f64()).map(Some).ok_or_else(|| {
            format!(
                "{dotted} accessor error: {} is of the type {}, expected int64",
                go_value(v),
                go_type(v)
            )
        }),
    }
}

/// `unstructured.NestedString` at a `.a.b` path, with its error text.
pub(crate) fn nested_string(obj: &Value, dotted: &str) -> Result<Option<String>, String> {
    match nested(obj, dotted)? {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!(
            "{dotted} accessor error: {} is of the type {}, expected string",
            go_value(v),
            go_type(v)
        )),
    }
}

/// `unstructured.SetNestedField`: creates missing objects on the way.
fn set_nested(obj: &mut Value, dotted: &str, value: Value) -> Result<(), ApiError> {
    let fields: Vec<&str> = dotted.trim_start_matches('.').split('.').collect();
    let Some((last, parents)) = fields.split_last() else {
        return Err(ApiError::internal("empty replicas path"));
    };
    let mut cur = obj;
    for f in parents {
        let Value::Object(m) = cur else {
            return Err(ApiError::internal(format!(
                "value cannot be set because {} is not a map[string]interface{{}}",
                go_value(cur)
            )));
        };
        cur = m
            .entry(f.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.to_string(), value);
            Ok(())
        }
        other => Err(ApiError::internal(format!(
            "value cannot be set because {} is not a map[string]interface{{}}",
            go_value(other)
        ))),
    }
}

/// One requirement of a selector, ready to print.
struct Requirement {
    key: String,
    text: String,
}

/// A `metav1.LabelSelector` as `labels.Selector.String()` prints it: requirements sorted by
/// key, `a=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`; values sorted. No selector and the
/// empty selector both print as the empty string.
pub fn label_selector_string(sel: Option<&Value>) -> Result<String, String> {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return Ok(String::new());
    };
    let mut reqs = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push(Requirement {
                key: k.clone(),
                text: format!("{k}={}", v.as_str().unwrap_or("")),
            });
        }
    }
    for expr in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
        let op = expr.get("operator").and_then(Value::as_str).unwrap_or("");
        let mut values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let text = match op {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(format!("{op:?} is not a valid label selector operator")),
        };
        reqs.push(Requirement {
            key: key.to_string(),
            text,
        });
    }
    reqs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(reqs
        .into_iter()
        .map(|r| r.text)
        .collect::<Vec<_>>()
        .join(","))
}

/// A plain label map (a replication controller's selector) as `labels.SelectorFromSet` prints it.
pub fn set_selector_string(sel: Option<&Value>) -> String {
    let Some(m) = sel.and_then(Value::as_object) else {
        return String::new();
    };
    // serde_json's map iterates in key order, which is the order upstream prints.
    m.iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin;

    fn info(group: &str, resource: &str) -> ResourceInfo {
        builtin()
            .into_iter()
            .find(|r| r.group == group && r.resource == resource)
            .expect("built-in resource")
    }

    fn custom_info() -> ResourceInfo {
        ResourceInfo {
            group: "example.com".into(),
            version: "v1".into(),
            resource: "widgets".into(),
            singular: "widget".into(),
            kind: "Widget".into(),
            list_kind: "WidgetList".into(),
            namespaced: true,
            short_names: vec![],
            categories: vec![],
            verbs: vec![],
            subresources: vec![],
            storage_prefix: "/registry/example.com/widgets".into(),
            custom: true,
        }
    }

    fn paths() -> ScalePaths {
        ScalePaths {
            spec_replicas: ".spec.size".into(),
            status_replicas: ".status.size".into(),
            label_selector: Some(".status.selector".into()),
        }
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "42",
                         "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"app": "web"}},
            "spec": {"replicas": 3, "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}]
            }},
            "status": {"replicas": 2}
        })
    }

    #[test]
    fn a_deployment_scale_carries_counts_selector_and_identity() {
        let s = to_scale(&info("apps", "deployments"), &deployment(), None).expect("scale");
        assert_eq!(
            s,
            json!({
                "kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "42",
                             "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"replicas": 3},
                "status": {"replicas": 2, "selector": "app=web,tier in (edge,front)"}
            })
        );
    }

    #[test]
    fn applying_a_scale_sets_spec_replicas() {
        let mut d = deployment();
        let scale =
            json!({"metadata": {"name": "web", "resourceVersion": "42"}, "spec": {"replicas": 5}});
        apply_scale(&info("apps", "deployments"), &mut d, &scale, None).expect("applied");
        assert_eq!(d["spec"]["replicas"], 5);
    }

    #[test]
    fn negative_replicas_are_invalid_with_upstream_wording() {
        let mut d = deployment();
        let scale = json!({"spec": {"replicas": -1}});
        let err =
            apply_scale(&info("apps", "deployments"), &mut d, &scale, None).expect_err("invalid");
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(d["spec"]["replicas"], 3);
    }

    #[test]
    fn a_stale_resource_version_is_a_conflict() {
        let mut d = deployment();
        let scale = json!({"metadata": {"resourceVersion": "41"}, "spec": {"replicas": 1}});
        let err =
            apply_scale(&info("apps", "deployments"), &mut d, &scale, None).expect_err("stale");
        assert_eq!((err.code, err.reason), (409, "Conflict"));
        assert!(err
            .message
            .starts_with("Operation cannot be fulfilled on deployments.apps \"web\""));
    }

    #[test]
    fn non_integer_replicas_are_a_bad_request() {
        let mut d = deployment();
        let err = apply_scale(
            &info("apps", "deployments"),
            &mut d,
            &json!({"spec": {"replicas": "3"}}),
            None,
        )
        .expect_err("bad");
        assert_eq!(err.code, 400);
    }

    #[test]
    fn replication_controllers_print_their_label_map() {
        let rc = json!({"metadata": {"name": "rc"}, "spec": {"replicas": 0, "selector": {"b": "2", "a": "1"}}});
        let s = to_scale(&info("", "replicationcontrollers"), &rc, None).expect("scale");
        assert_eq!(s["status"], json!({"replicas": 0, "selector": "a=1,b=2"}));
        // Zero replicas are omitted, as upstream's omitempty does.
        assert_eq!(s["spec"], json!({}));
    }

    #[test]
    fn resources_without_scale_are_not_found() {
        let err = to_scale(&info("", "pods"), &json!({}), None).expect_err("no scale");
        assert_eq!(err.code, 404);
    }

    #[test]
    fn custom_resources_scale_through_their_declared_paths() {
        let cr = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default", "resourceVersion": "7"},
            "spec": {"size": 4}, "status": {"size": 1, "selector": "app=w"}
        });
        let s = to_scale(&custom_info(), &cr, Some(&paths())).expect("scale");
        assert_eq!(s["spec"], json!({"replicas": 4}));
        assert_eq!(s["status"], json!({"replicas": 1, "selector": "app=w"}));

        let mut fresh = json!({"metadata": {"name": "w", "resourceVersion": "7"}});
        let s = to_scale(&custom_info(), &fresh, Some(&paths())).expect("scale of an empty object");
        assert_eq!(s["status"], json!({"replicas": 0}));
        apply_scale(
            &custom_info(),
            &mut fresh,
            &json!({"spec": {"replicas": 2}}),
            Some(&paths()),
        )
        .expect("applied");
        assert_eq!(fresh["spec"], json!({"size": 2}));
    }

    #[test]
    fn custom_resources_report_bad_counts_in_their_own_terms() {
        let mut cr = json!({"metadata": {"name": "w"}, "spec": {"size": 1}});
        let err = apply_scale(
            &custom_info(),
            &mut cr,
            &json!({"spec": {"replicas": -2}}),
            Some(&paths()),
        )
        .expect_err("invalid");
        assert_eq!(
            err.message,
            "Widget.example.com \"w\" is invalid: .spec.size: Invalid value: -2: should be a non-negative integer"
        );
        let broken = json!({"metadata": {"name": "w"}, "spec": {"size": "three"}});
        let err = to_scale(&custom_info(), &broken, Some(&paths())).expect_err("wrong type");
        assert_eq!(err.code, 500);
        assert!(err
            .message
            .ends_with(".spec.size accessor error: three is of the type string, expected int64"));
    }

    #[test]
    fn selectors_print_like_labels_selector_string() {
        let sel = json!({"matchExpressions": [
            {"key": "z", "operator": "Exists"},
            {"key": "b", "operator": "DoesNotExist"},
            {"key": "a", "operator": "NotIn", "values": ["y", "x"]}
        ]});
        assert_eq!(
            label_selector_string(Some(&sel)).expect("valid"),
            "a notin (x,y),!b,z"
        );
        assert_eq!(label_selector_string(Some(&json!({}))).expect("valid"), "");
        assert!(label_selector_string(Some(
            &json!({"matchExpressions": [{"key": "a", "operator": "Near"}]})
        ))
        .is_err());
    }
}
