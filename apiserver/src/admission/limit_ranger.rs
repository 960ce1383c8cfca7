//! LimitRanger: container defaults from LimitRange objects, then their min/max/ratio checks for
//! containers, whole pods and claims.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::helpers::{
    aggregate, arr_at, milli, pod_aggregate, resource_list, str_at, ResourceList,
};
use super::{forbidden, Attributes, Operation, Plugin};
use crate::error::ApiError;
use crate::registry::quantity::Quantity;

const LIMIT_RANGER_ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// Upstream `LimitRanger`, reading `limitranges` of the request's namespace.
pub struct LimitRanger;

/// What kind of object a request concerns, if the plugin handles it.
#[derive(PartialEq)]
enum Target {
    Pod,
    Claim,
}

fn target(attrs: &Attributes<'_>) -> Option<Target> {
    if !attrs.group.is_empty() || !matches!(attrs.operation, Operation::Create | Operation::Update)
    {
        return None;
    }
    match (attrs.resource, attrs.subresource, attrs.operation) {
        // In-place resize changes container resources of a running pod.
        ("pods", "resize", Operation::Update) => Some(Target::Pod),
        // Containers cannot change on a plain update, so only creates need checking.
        ("pods", "", Operation::Create) => Some(Target::Pod),
        ("persistentvolumeclaims", "", _) => Some(Target::Claim),
        _ => None,
    }
}

/// The LimitRanges of the namespace, with the item defaulting upstream applies to stored ones.
fn limit_ranges(attrs: &Attributes<'_>) -> Vec<Value> {
    let mut ranges: Vec<Value> = attrs
        .source
        .list("", "limitranges", attrs.namespace)
        .iter()
        .map(|lr| {
            let mut lr = (**lr).clone();
            if let Some(items) = lr.pointer_mut("/spec/limits").and_then(Value::as_array_mut) {
                items.iter_mut().for_each(default_item);
            }
            lr
        })
        .collect();
    ranges.sort_by(|a, b| str_at(a, "/metadata/name").cmp(str_at(b, "/metadata/name")));
    ranges
}

/// Upstream's `SetDefaults_LimitRangeItem` for Container items: default limit from max,
/// default request from the default limit, then from min.
fn default_item(item: &mut Value) {
    if str_at(item, "/type") != "Container" {
        return;
    }
    let Some(obj) = item.as_object_mut() else {
        return;
    };
    let get = |obj: &Map<String, Value>, key: &str| -> Map<String, Value> {
        obj.get(key)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let max = get(obj, "max");
    let min = get(obj, "min");
    let mut default = get(obj, "default");
    for (k, v) in &max {
        default.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let mut default_request = get(obj, "defaultRequest");
    for (k, v) in default.iter().chain(min.iter()) {
        default_request
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    if !default.is_empty() {
        obj.insert("default".into(), Value::Object(default));
    }
    if !default_request.is_empty() {
        obj.insert("defaultRequest".into(), Value::Object(default_request));
    }
}

fn items<'a>(lr: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> {
    arr_at(lr, "/spec/limits")
        .iter()
        .filter(move |i| str_at(i, "/type") == kind)
}

impl Plugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    fn admit(&self, attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
        if target(attrs) != Some(Target::Pod) || attrs.subresource == "resize" || deleting(attrs) {
            return Ok(());
        }
        let ranges = limit_ranges(attrs);
        let Some(pod) = attrs.object.as_deref_mut() else {
            return Ok(());
        };
        for lr in &ranges {
            let mut requests = Map::new();
            let mut limits = Map::new();
            for item in items(lr, "Container") {
                if let Some(m) = item["defaultRequest"].as_object() {
                    requests.extend(m.clone());
                }
                if let Some(m) = item["default"].as_object() {
                    limits.extend(m.clone());
                }
            }
            merge_pod_defaults(pod, &requests, &limits);
        }
        Ok(())
    }

    fn validate(
        &self,
        attrs: &Attributes<'_>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let Some(target) = target(attrs) else {
            return Ok(());
        };
        if deleting(attrs) {
            return Ok(());
        }
        let Some(obj) = attrs.obj() else {
            return Ok(());
        };
        for lr in limit_ranges(attrs) {
            let errs = match target {
                Target::Pod => validate_pod(&lr, obj),
                Target::Claim => validate_claim(&lr, obj),
            };
            if !errs.is_empty() {
                return Err(forbidden(attrs, aggregate(&errs)));
            }
        }
        Ok(())
    }
}

/// Objects already marked for deletion are left alone.
fn deleting(attrs: &Attributes<'_>) -> bool {
    attrs
        .old_object
        .and_then(|o| o.pointer("/metadata/deletionTimestamp"))
        .is_some_and(|t| !t.is_null())
}

/// Fills missing container requests and limits and records what was set in the annotation.
fn merge_pod_defaults(pod: &mut Value, requests: &Map<String, Value>, limits: &Map<String, Value>) {
    let mut notes: Vec<String> = Vec::new();
    for (list, label) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(containers) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in containers.iter_mut() {
            let name = str_at(c, "/name").to_string();
            let set_limits = fill(c, "limits", limits);
            let set_requests = fill(c, "requests", requests);
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {label} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!(
                    "{} limit for {label} {name}",
                    set_limits.join(", ")
                ));
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[LIMIT_RANGER_ANNOTATION] =
        json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
}

/// Adds the defaults missing from `resources.<which>`; returns the names set, sorted.
fn fill(container: &mut Value, which: &str, defaults: &Map<String, Value>) -> Vec<String> {
    let Some(c) = container.as_object_mut() else {
        return Vec::new();
    };
    let resources = c.entry("resources").or_insert_with(|| json!({}));
    if !resources.is_object() {
        *resources = json!({});
    }
    let list = &mut resources[which];
    if !list.is_object() {
        *list = json!({});
    }
    let mut set = Vec::new();
    if let Some(m) = list.as_object_mut() {
        for (k, v) in defaults {
            if !m.contains_key(k) {
                m.insert(k.clone(), v.clone());
                set.push(k.clone());
            }
        }
    }
    set.sort();
    set
}

/// Upstream's comparison: milli-values, which is what `requestLimitEnforcedValues` picks for
/// all realistic sizes.
fn min_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let e = enforced.canonical();
    let Some(req) = requests.get(name) else {
        return Some(format!(
            "minimum {name} usage per {kind} is {e}.  No request is specified"
        ));
    };
    if milli(req) < milli(enforced) {
        return Some(format!(
            "minimum {name} usage per {kind} is {e}, but request is {}",
            req.canonical()
        ));
    }
    match limits.get(name) {
        Some(lim) if milli(lim) < milli(enforced) => Some(format!(
            "minimum {name} usage per {kind} is {e}, but limit is {}",
            lim.canonical()
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let e = enforced.canonical();
    let Some(lim) = limits.get(name) else {
        return Some(format!(
            "maximum {name} usage per {kind} is {e}.  No limit is specified"
        ));
    };
    if milli(lim) > milli(enforced) {
        return Some(format!(
            "maximum {name} usage per {kind} is {e}, but limit is {}",
            lim.canonical()
        ));
    }
    match requests.get(name) {
        Some(req) if milli(req) > milli(enforced) => Some(format!(
            "maximum {name} usage per {kind} is {e}, but request is {}",
            req.canonical()
        )),
        _ => None,
    }
}

/// The claim form of the max check: only the request counts.
fn max_request_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
) -> Option<String> {
    let e = enforced.canonical();
    let Some(req) = requests.get(name) else {
        return Some(format!(
            "maximum {name} usage per {kind} is {e}.  No request is specified"
        ));
    };
    (milli(req) > milli(enforced)).then(|| {
        format!(
            "maximum {name} usage per {kind} is {e}, but request is {}",
            req.canonical()
        )
    })
}

fn ratio_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let e = enforced.canonical();
    let req = requests.get(name).map(milli).unwrap_or(0);
    if req == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {e}, but no request is specified or request is 0"
        ));
    }
    let lim = limits.get(name).map(milli).unwrap_or(0);
    if lim == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {e}, but no limit is specified or limit is 0"
        ));
    }
    let observed = lim as f64 / req as f64;
    (observed * 1000.0 > milli(enforced) as f64).then(|| {
        format!("{name} max limit to request ratio per {kind} is {e}, but provided ratio is {observed:.6}")
    })
}

fn quantities(item: &Value, key: &str) -> BTreeMap<String, Quantity> {
    resource_list(item.get(key))
}

/// All min/max/ratio checks of one item against one set of requests and limits.
fn check_item(
    item: &Value,
    kind: &str,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Vec<String> {
    let mut errs = Vec::new();
    for (name, q) in quantities(item, "min") {
        errs.extend(min_constraint(kind, &name, &q, requests, limits));
    }
    for (name, q) in quantities(item, "max") {
        errs.extend(max_constraint(kind, &name, &q, requests, limits));
    }
    for (name, q) in quantities(item, "maxLimitRequestRatio") {
        errs.extend(ratio_constraint(kind, &name, &q, requests, limits));
    }
    errs
}

fn validate_pod(lr: &Value, pod: &Value) -> Vec<String> {
    let spec = &pod["spec"];
    let mut errs = Vec::new();
    for item in arr_at(lr, "/spec/limits") {
        match str_at(item, "/type") {
            "Container" => {
                for c in arr_at(spec, "/containers")
                    .iter()
                    .chain(arr_at(spec, "/initContainers"))
                {
                    let requests = resource_list(c.pointer("/resources/requests"));
                    let limits = resource_list(c.pointer("/resources/limits"));
                    errs.extend(check_item(item, "Container", &requests, &limits));
                }
            }
            "Pod" => {
                let requests = pod_aggregate(spec, "requests");
                let limits = pod_aggregate(spec, "limits");
                errs.extend(check_item(item, "Pod", &requests, &limits));
            }
            _ => {}
        }
    }
    errs
}

fn validate_claim(lr: &Value, pvc: &Value) -> Vec<String> {
    let requests = resource_list(pvc.pointer("/spec/resources/requests"));
    let mut errs = Vec::new();
    for item in items(lr, "PersistentVolumeClaim") {
        for (name, q) in quantities(item, "min") {
            errs.extend(min_constraint(
                "PersistentVolumeClaim",
                &name,
                &q,
                &requests,
                &ResourceList::new(),
            ));
        }
        for (name, q) in quantities(item, "max") {
            errs.extend(max_request_constraint(
                "PersistentVolumeClaim",
                &name,
                &q,
                &requests,
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn limit_range(limits: Value) -> Value {
        json!({"metadata": {"name": "lr", "namespace": "ns"}, "spec": {"limits": limits}})
    }

    fn run(pod_v: Value, limits: Value) -> (Result<Vec<String>, ApiError>, Value) {
        let mut req = Req::create_pod("ns", pod_v).with("", "limitranges", limit_range(limits));
        let r = req.plugin(&LimitRanger);
        (r, req.object.unwrap())
    }

    #[test]
    fn defaults_fill_missing_requests_and_limits_and_annotate() {
        let (r, pod) = run(
            pod(
                "p",
                json!([{"name": "c"}, {"name": "d", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}]),
            ),
            json!([{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
                    "defaultRequest": {"cpu": "100m"}}]),
        );
        r.unwrap();
        let c = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(c["limits"]["cpu"], "500m");
        assert_eq!(c["limits"]["memory"], "128Mi");
        assert_eq!(c["requests"]["cpu"], "100m");
        // memory request defaults to the memory default limit, as LimitRange defaulting does
        assert_eq!(c["requests"]["memory"], "128Mi");
        let d = &pod["spec"]["containers"][1]["resources"];
        assert_eq!(d["limits"]["cpu"], "1");
        assert_eq!(
            pod["metadata"]["annotations"][LIMIT_RANGER_ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c; memory request for container d; memory limit for container d"
        );
    }

    #[test]
    fn minimum_violations_are_forbidden_with_upstream_wording() {
        let (r, _) = run(
            pod(
                "p",
                json!([{"name": "c", "resources": {"requests": {"cpu": "50m"}}}]),
            ),
            json!([{"type": "Container", "min": {"cpu": "100m"}}]),
        );
        let err = r.unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"p\" is forbidden: minimum cpu usage per Container is 100m, but request is 50m"
        );
    }

    #[test]
    fn maximum_and_ratio_violations_are_aggregated() {
        let (r, _) = run(
            pod(
                "p",
                json!([{"name": "c", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "2"}}}]),
            ),
            json!([{"type": "Container", "max": {"cpu": "1"}, "maxLimitRequestRatio": {"cpu": "4"}}]),
        );
        assert_eq!(
            r.unwrap_err().message,
            "pods \"p\" is forbidden: [maximum cpu usage per Container is 1, but limit is 2, cpu max limit to request ratio per Container is 4, but provided ratio is 20.000000]"
        );
    }

    #[test]
    fn pod_limits_apply_to_the_sum_of_containers() {
        let (r, _) = run(
            pod(
                "p",
                json!([
                    {"name": "a", "resources": {"requests": {"memory": "600Mi"}, "limits": {"memory": "600Mi"}}},
                    {"name": "b", "resources": {"requests": {"memory": "600Mi"}, "limits": {"memory": "600Mi"}}}
                ]),
            ),
            json!([{"type": "Pod", "max": {"memory": "1Gi"}}]),
        );
        assert_eq!(
            r.unwrap_err().message,
            "pods \"p\" is forbidden: maximum memory usage per Pod is 1Gi, but limit is 1200Mi"
        );
    }

    #[test]
    fn claims_are_checked_against_storage_min_and_max() {
        let pvc = |size: &str| json!({"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": size}}}});
        let lr = limit_range(json!([{"type": "PersistentVolumeClaim",
            "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]));
        let mut req = Req::new(
            Operation::Create,
            "",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
        )
        .ns("ns")
        .name("c")
        .object(pvc("20Gi"))
        .with("", "limitranges", lr.clone());
        assert_eq!(
            req.plugin(&LimitRanger).unwrap_err().message,
            "persistentvolumeclaims \"c\" is forbidden: maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"
        );
        let mut req = Req::new(
            Operation::Create,
            "",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
        )
        .ns("ns")
        .name("c")
        .object(pvc("5Gi"))
        .with("", "limitranges", lr);
        assert!(req.plugin(&LimitRanger).is_ok());
    }

    #[test]
    fn pod_updates_and_other_namespaces_are_untouched() {
        let mut req = Req::new(Operation::Update, "", "pods", "Pod")
            .ns("ns")
            .name("p")
            .object(pod("p", json!([{"name": "c"}])))
            .with(
                "",
                "limitranges",
                limit_range(json!([{"type": "Container", "min": {"cpu": "1"}}])),
            );
        assert!(req.plugin(&LimitRanger).is_ok());
        let (r, pod) = run(pod("p", json!([{"name": "c"}])), json!([]));
        r.unwrap();
        assert!(pod["metadata"].get("annotations").is_none());
    }
}
