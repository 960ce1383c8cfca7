//! ResourceQuota: a create (or a usage-changing update) is refused when it would take a
//! namespace's usage over any matching quota's `spec.hard`.
//!
//! Usage is counted from the objects the [`ObjectSource`](crate::source::ObjectSource) holds
//! rather than from `status.used`, which the controller-manager maintains later. Like the
//! cache itself this lags the store, and nothing reserves usage between admission and the
//! write, so concurrent creates can both pass and together exceed a quota.

use std::collections::BTreeSet;

use serde_json::Value;

use super::helpers::{
    add_into, all_containers, arr_at, pod_aggregate, resource_list, str_at, ResourceList,
};
use super::{forbidden, Attributes, Operation, Plugin};
use crate::error::ApiError;
use crate::registry::quantity::{self, Quantity};

/// Requests that are never counted: virtual resources that are not stored.
const IGNORED_RESOURCES: &[(&str, &str)] = &[
    ("", "bindings"),
    ("", "componentstatuses"),
    ("", "events"),
    ("", "namespaces"),
    ("authentication.k8s.io", "tokenreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "localsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
];

/// Quota resources a pod can consume besides prefixed and extended ones.
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// Quota resources that, when limited, every container must request explicitly.
const VALIDATION_SET: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

const SERVICE_RESOURCES: &[&str] = &[
    "count/services",
    "services",
    "services.loadbalancers",
    "services.nodeports",
];

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// Upstream `ResourceQuota`, reading `resourcequotas` and the requested resource's objects in
/// the namespace.
pub struct ResourceQuota;

/// One scope a quota is restricted to (from `spec.scopes` or `spec.scopeSelector`).
struct Scope {
    name: String,
    operator: String,
    values: Vec<String>,
}

fn scopes_of(quota: &Value) -> Vec<Scope> {
    let mut out: Vec<Scope> = arr_at(quota, "/spec/scopes")
        .iter()
        .filter_map(Value::as_str)
        .map(|s| Scope {
            name: s.to_string(),
            operator: "Exists".into(),
            values: Vec::new(),
        })
        .collect();
    for e in arr_at(quota, "/spec/scopeSelector/matchExpressions") {
        out.push(Scope {
            name: str_at(e, "/scopeName").to_string(),
            operator: str_at(e, "/operator").to_string(),
            values: arr_at(e, "/values")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        });
    }
    out
}

/// How usage of one kind of object is measured, as upstream's quota evaluators.
enum Evaluator {
    Pods,
    Services,
    Claims,
    /// Object count (`count/<resource>[.<group>]`), plus the legacy name for a few core
    /// resources (`configmaps`, `secrets`, ...).
    Count {
        name: String,
        legacy: Option<&'static str>,
    },
}

fn one() -> Quantity {
    Quantity {
        nanos: 1_000_000_000,
        format: quantity::Format::DecimalSI,
    }
}

fn count(n: i128) -> Quantity {
    Quantity {
        nanos: n * 1_000_000_000,
        format: quantity::Format::DecimalSI,
    }
}

impl Evaluator {
    fn for_resource(group: &str, resource: &str) -> Self {
        match (group, resource) {
            ("", "pods") => Self::Pods,
            ("", "services") => Self::Services,
            ("", "persistentvolumeclaims") => Self::Claims,
            _ => Self::Count {
                name: if group.is_empty() {
                    format!("count/{resource}")
                } else {
                    format!("count/{resource}.{group}")
                },
                legacy: match (group, resource) {
                    ("", "configmaps") => Some("configmaps"),
                    ("", "secrets") => Some("secrets"),
                    ("", "replicationcontrollers") => Some("replicationcontrollers"),
                    ("", "resourcequotas") => Some("resourcequotas"),
                    _ => None,
                },
            },
        }
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        match self {
            Self::Pods => match (attrs.subresource, attrs.operation) {
                ("", Operation::Create) | ("resize", Operation::Update) => true,
                // Adding activeDeadlineSeconds moves a pod between the Terminating scopes.
                ("", Operation::Update) => match (attrs.obj(), attrs.old_object) {
                    (Some(new), Some(old)) => is_terminating(new) != is_terminating(old),
                    _ => false,
                },
                _ => false,
            },
            Self::Services | Self::Claims => {
                attrs.subresource.is_empty()
                    && matches!(attrs.operation, Operation::Create | Operation::Update)
            }
            Self::Count { .. } => {
                attrs.subresource.is_empty() && attrs.operation == Operation::Create
            }
        }
    }

    fn matching_resources(&self, names: &[String]) -> Vec<String> {
        names
            .iter()
            .filter(|n| match self {
                Self::Pods => {
                    POD_RESOURCES.contains(&n.as_str())
                        || n.starts_with("hugepages-")
                        || n.starts_with("requests.hugepages-")
                        || (n.starts_with("requests.") && !is_native(n))
                }
                Self::Services => SERVICE_RESOURCES.contains(&n.as_str()),
                Self::Claims => {
                    matches!(
                        n.as_str(),
                        "count/persistentvolumeclaims"
                            | "persistentvolumeclaims"
                            | "requests.storage"
                    ) || n.ends_with(&format!("{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"))
                        || n.ends_with(&format!("{STORAGE_CLASS_SUFFIX}requests.storage"))
                }
                Self::Count { name, legacy } => *n == name || Some(n.as_str()) == *legacy,
            })
            .cloned()
            .collect()
    }

    /// Only pods can be in a scope; a scoped quota never matches other objects.
    fn matches_scope(&self, scope: &Scope, obj: &Value) -> bool {
        match self {
            Self::Pods => pod_matches_scope(scope, obj),
            _ => false,
        }
    }

    fn usage(&self, obj: &Value) -> ResourceList {
        let mut out = ResourceList::new();
        match self {
            Self::Pods => return pod_usage(obj),
            Self::Services => {
                out.insert("count/services".into(), one());
                out.insert("services".into(), one());
                let ports = arr_at(obj, "/spec/ports");
                let (node_ports, lbs) = match str_at(obj, "/spec/type") {
                    "NodePort" => (ports.len(), 0),
                    "LoadBalancer" => {
                        let allocate = obj
                            .pointer("/spec/allocateLoadBalancerNodePorts")
                            .and_then(Value::as_bool)
                            .unwrap_or(true);
                        let n = if allocate {
                            ports.len()
                        } else {
                            ports
                                .iter()
                                .filter(|p| p["nodePort"].as_i64().unwrap_or(0) != 0)
                                .count()
                        };
                        (n, 1)
                    }
                    _ => (0, 0),
                };
                out.insert("services.nodeports".into(), count(node_ports as i128));
                out.insert("services.loadbalancers".into(), count(lbs));
            }
            Self::Claims => {
                out.insert("count/persistentvolumeclaims".into(), one());
                out.insert("persistentvolumeclaims".into(), one());
                let class = claim_class(obj);
                if !class.is_empty() {
                    out.insert(
                        format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                        one(),
                    );
                }
                if let Some(storage) =
                    quantity::lookup(obj.pointer("/spec/resources/requests"), "storage")
                {
                    // Storage is charged in whole bytes.
                    let per_unit = 1_000_000_000;
                    let rounded = Quantity {
                        nanos: storage.nanos.div_euclid(per_unit) * per_unit
                            + if storage.nanos.rem_euclid(per_unit) != 0 {
                                per_unit
                            } else {
                                0
                            },
                        format: storage.format,
                    };
                    out.insert("requests.storage".into(), rounded);
                    if !class.is_empty() {
                        out.insert(
                            format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                            rounded,
                        );
                    }
                }
            }
            Self::Count { name, legacy } => {
                out.insert(name.clone(), one());
                if let Some(l) = legacy {
                    out.insert((*l).to_string(), one());
                }
            }
        }
        out
    }

    /// Quotas on cpu or memory oblige every container to state them (kept by upstream for
    /// backward compatibility).
    fn constraints(&self, required: &[String], obj: &Value) -> Result<(), String> {
        if !matches!(self, Self::Pods) {
            return Ok(());
        }
        let required: BTreeSet<&str> = required
            .iter()
            .map(String::as_str)
            .filter(|r| VALIDATION_SET.contains(r))
            .collect();
        let mut missing: std::collections::BTreeMap<&str, BTreeSet<String>> = Default::default();
        let spec = &obj["spec"];
        for c in arr_at(spec, "/containers")
            .iter()
            .chain(arr_at(spec, "/initContainers"))
        {
            let usage = compute_usage(
                &resource_list(c.pointer("/resources/requests")),
                &resource_list(c.pointer("/resources/limits")),
            );
            for r in &required {
                if !usage.contains_key(*r) {
                    missing
                        .entry(r)
                        .or_default()
                        .insert(str_at(c, "/name").to_string());
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = missing
            .iter()
            .map(|(r, names)| {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                format!("{r} for: {}", names.join(","))
            })
            .collect();
        Err(format!("must specify {}", parts.join("; ")))
    }
}

/// Upstream `IsNativeResource`: unprefixed names and names in a kubernetes.io domain.
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn claim_class(pvc: &Value) -> &str {
    if let Some(c) = pvc
        .pointer("/metadata/annotations")
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .and_then(Value::as_str)
    {
        return c;
    }
    str_at(pvc, "/spec/storageClassName")
}

fn is_terminating(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s >= 0)
}

/// BestEffort QoS: no container requests or limits any cpu or memory.
fn is_best_effort(pod: &Value) -> bool {
    !all_containers(&pod["spec"]).any(|c| {
        ["requests", "limits"].iter().any(|which| {
            resource_list(c.pointer(&format!("/resources/{which}")))
                .iter()
                .any(|(k, q)| (k == "cpu" || k == "memory") && q.nanos > 0)
        })
    })
}

fn uses_cross_namespace_affinity(pod: &Value) -> bool {
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let base = format!("/spec/affinity/{kind}");
        let required = arr_at(
            pod,
            &format!("{base}/requiredDuringSchedulingIgnoredDuringExecution"),
        );
        let preferred = arr_at(
            pod,
            &format!("{base}/preferredDuringSchedulingIgnoredDuringExecution"),
        )
        .iter()
        .map(|w| &w["podAffinityTerm"]);
        required.iter().chain(preferred).any(|t| {
            !arr_at(t, "/namespaces").is_empty()
                || t.get("namespaceSelector").is_some_and(|s| !s.is_null())
        })
    })
}

fn pod_matches_scope(scope: &Scope, pod: &Value) -> bool {
    match scope.name.as_str() {
        "Terminating" => is_terminating(pod),
        "NotTerminating" => !is_terminating(pod),
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "PriorityClass" => {
            let class = str_at(pod, "/spec/priorityClassName");
            match scope.operator.as_str() {
                "Exists" => !class.is_empty(),
                "In" => scope.values.iter().any(|v| v == class),
                "NotIn" => !scope.values.iter().any(|v| v == class),
                // The class is always present as a (possibly empty) label value upstream.
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        _ => false,
    }
}

/// Upstream `podComputeUsageHelper`: the quota names a set of requests and limits consume.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), one());
    for (res, plain) in [("cpu", true), ("memory", true), ("ephemeral-storage", true)] {
        if let Some(q) = requests.get(res) {
            if plain {
                out.insert(res.into(), *q);
            }
            out.insert(format!("requests.{res}"), *q);
        }
        if let Some(q) = limits.get(res) {
            out.insert(format!("limits.{res}"), *q);
        }
    }
    for (res, q) in requests {
        if res.starts_with("hugepages-") {
            out.insert(res.clone(), *q);
            out.insert(format!("requests.{res}"), *q);
        } else if !is_native(res) && !res.starts_with("requests.") {
            out.insert(format!("requests.{res}"), *q);
        }
    }
    out
}

/// Upstream `PodUsageFunc`: object count always, compute resources unless the pod finished.
fn pod_usage(pod: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("count/pods".into(), one());
    if matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        return out;
    }
    let spec = &pod["spec"];
    let overhead = resource_list(spec.get("overhead"));
    let mut requests = pod_aggregate(spec, "requests");
    add_into(&mut requests, &overhead);
    let mut limits = pod_aggregate(spec, "limits");
    for (k, q) in &overhead {
        if let Some(l) = limits.get_mut(k) {
            *l = l.add(q);
        }
    }
    add_into(&mut out, &compute_usage(&requests, &limits));
    out
}

fn mask(list: &ResourceList, keys: &BTreeSet<String>) -> ResourceList {
    list.iter()
        .filter(|(k, _)| keys.contains(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={}", v.canonical()))
        .collect::<Vec<_>>()
        .join(",")
}

fn hard_of(quota: &Value) -> ResourceList {
    let spec_hard = resource_list(quota.pointer("/spec/hard"));
    if spec_hard.is_empty() {
        resource_list(quota.pointer("/status/hard"))
    } else {
        spec_hard
    }
}

impl Plugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    fn validate(
        &self,
        attrs: &Attributes<'_>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if attrs.namespace.is_empty()
            || !matches!(attrs.operation, Operation::Create | Operation::Update)
            || IGNORED_RESOURCES.contains(&(attrs.group, attrs.resource))
            || !(attrs.subresource.is_empty()
                || (attrs.is("", "pods") && attrs.subresource == "resize"))
        {
            return Ok(());
        }
        let Some(obj) = attrs.obj() else {
            return Ok(());
        };
        let mut quotas: Vec<_> = attrs.source.list("", "resourcequotas", attrs.namespace);
        if quotas.is_empty() {
            return Ok(());
        }
        quotas.sort_by(|a, b| str_at(a, "/metadata/name").cmp(str_at(b, "/metadata/name")));
        let eval = Evaluator::for_resource(attrs.group, attrs.resource);
        if !eval.handles(attrs) {
            return Ok(());
        }

        let mut interesting = Vec::new();
        for quota in &quotas {
            let hard = hard_of(quota);
            let names: Vec<String> = hard.keys().cloned().collect();
            let restricted = eval.matching_resources(&names);
            let scopes = scopes_of(quota);
            if restricted.is_empty() || !scopes.iter().all(|s| eval.matches_scope(s, obj)) {
                continue;
            }
            if let Err(why) = eval.constraints(&restricted, obj) {
                return Err(forbidden(
                    attrs,
                    format_args!("failed quota: {}: {why}", str_at(quota, "/metadata/name")),
                ));
            }
            interesting.push((quota, hard, scopes));
        }

        let mut delta = eval.usage(obj);
        let negative: Vec<&str> = delta
            .iter()
            .filter(|(_, q)| q.nanos < 0)
            .map(|(k, _)| k.as_str())
            .collect();
        if !negative.is_empty() {
            return Err(forbidden(
                attrs,
                format_args!(
                    "quota usage is negative for resource(s): {}",
                    negative.join(",")
                ),
            ));
        }
        if attrs.operation == Operation::Update {
            if let Some(old) = attrs.old_object {
                let prev = eval.usage(old);
                let pods = matches!(eval, Evaluator::Pods);
                for (k, q) in delta.iter_mut() {
                    let before = prev.get(k).map(|p| p.nanos).unwrap_or(0);
                    let diff = q.nanos - before;
                    // Pods may shrink (in-place resize); other usage never goes negative.
                    q.nanos = if pods { diff } else { diff.max(0) };
                }
            }
        }
        delta.retain(|_, q| q.nanos != 0);
        if delta.is_empty() || interesting.is_empty() {
            return Ok(());
        }

        let existing = attrs
            .source
            .list(attrs.group, attrs.resource, attrs.namespace);
        for (quota, hard, scopes) in interesting {
            let hard_keys: BTreeSet<String> = hard.keys().cloned().collect();
            let mut used = ResourceList::new();
            for o in existing
                .iter()
                .filter(|o| scopes.iter().all(|s| eval.matches_scope(s, o)))
            {
                add_into(&mut used, &mask(&eval.usage(o), &hard_keys));
            }
            let requested = mask(&delta, &hard_keys);
            let exceeded: BTreeSet<String> = requested
                .iter()
                .filter(|(k, q)| {
                    let now = used.get(*k).map(|u| u.nanos).unwrap_or(0);
                    hard.get(*k).is_some_and(|h| now + q.nanos > h.nanos)
                })
                .map(|(k, _)| k.clone())
                .collect();
            if !exceeded.is_empty() {
                let mut used_masked = mask(&used, &exceeded);
                for k in &exceeded {
                    used_masked.entry(k.clone()).or_insert_with(|| count(0));
                }
                return Err(forbidden(
                    attrs,
                    format_args!(
                        "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                        str_at(quota, "/metadata/name"),
                        pretty(&mask(&requested, &exceeded)),
                        pretty(&used_masked),
                        pretty(&mask(&hard, &exceeded)),
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    fn quota(name: &str, hard: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"hard": hard}})
    }

    fn existing_pod(name: &str, cpu: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}, "limits": {"cpu": cpu, "memory": "1Gi"}}}
        ]}, "status": {"phase": "Running"}})
    }

    fn new_pod(cpu: Option<&str>) -> Value {
        let res = match cpu {
            Some(c) => {
                json!({"requests": {"cpu": c, "memory": "1Gi"}, "limits": {"cpu": c, "memory": "1Gi"}})
            }
            None => json!({}),
        };
        pod("p", json!([{"name": "c", "resources": res}]))
    }

    #[test]
    fn pod_count_over_the_limit_is_refused_with_upstream_wording() {
        let mut req = Req::create_pod("ns", new_pod(Some("100m")))
            .with("", "resourcequotas", quota("q", json!({"pods": "2"})))
            .with("", "pods", existing_pod("a", "100m"))
            .with("", "pods", existing_pod("b", "100m"));
        assert_eq!(
            req.plugin(&ResourceQuota).unwrap_err().message,
            "pods \"p\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
    }

    #[test]
    fn finished_pods_do_not_count() {
        let mut done = existing_pod("b", "100m");
        done["status"]["phase"] = json!("Succeeded");
        let mut req = Req::create_pod("ns", new_pod(Some("100m")))
            .with("", "resourcequotas", quota("q", json!({"pods": "2"})))
            .with("", "pods", existing_pod("a", "100m"))
            .with("", "pods", done);
        assert!(req.plugin(&ResourceQuota).is_ok());
    }

    #[test]
    fn cpu_requests_are_summed_against_the_hard_limit() {
        let mut req = Req::create_pod("ns", new_pod(Some("600m")))
            .with(
                "",
                "resourcequotas",
                quota(
                    "compute",
                    json!({"requests.cpu": "1", "limits.memory": "10Gi"}),
                ),
            )
            .with("", "pods", existing_pod("a", "500m"));
        assert_eq!(
            req.plugin(&ResourceQuota).unwrap_err().message,
            "pods \"p\" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"
        );
        let mut req = Req::create_pod("ns", new_pod(Some("500m")))
            .with(
                "",
                "resourcequotas",
                quota("compute", json!({"requests.cpu": "1"})),
            )
            .with("", "pods", existing_pod("a", "500m"));
        assert!(req.plugin(&ResourceQuota).is_ok());
    }

    #[test]
    fn quotas_on_cpu_require_every_container_to_request_it() {
        let mut req = Req::create_pod("ns", new_pod(None)).with(
            "",
            "resourcequotas",
            quota(
                "compute",
                json!({"requests.cpu": "1", "limits.memory": "1Gi"}),
            ),
        );
        assert_eq!(
            req.plugin(&ResourceQuota).unwrap_err().message,
            "pods \"p\" is forbidden: failed quota: compute: must specify limits.memory for: c; requests.cpu for: c"
        );
    }

    #[test]
    fn scoped_quotas_only_match_pods_in_scope() {
        let mut q = quota("be", json!({"pods": "0"}));
        q["spec"]["scopes"] = json!(["BestEffort"]);
        let mut req =
            Req::create_pod("ns", new_pod(Some("100m"))).with("", "resourcequotas", q.clone());
        assert!(req.plugin(&ResourceQuota).is_ok());
        let mut req = Req::create_pod("ns", new_pod(None)).with("", "resourcequotas", q);
        assert_eq!(
            req.plugin(&ResourceQuota).unwrap_err().message,
            "pods \"p\" is forbidden: exceeded quota: be, requested: pods=1, used: pods=0, limited: pods=0"
        );
    }

    #[test]
    fn services_count_node_ports_and_load_balancers() {
        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}});
        let mut req = Req::new(Operation::Create, "", "services", "Service")
            .ns("ns")
            .name("s")
            .object(svc)
            .with(
                "",
                "resourcequotas",
                quota(
                    "q",
                    json!({"services.nodeports": "1", "services.loadbalancers": "5"}),
                ),
            );
        assert_eq!(
            req.plugin(&ResourceQuota).unwrap_err().message,
            "services \"s\" is forbidden: exceeded quota: q, requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1"
        );
    }

    #[test]
    fn object_counts_apply_to_any_resource() {
        let cm = |n: &str| json!({"metadata": {"name": n, "namespace": "ns"}});
        let mut req = Req::new(Operation::Create, "", "configmaps", "ConfigMap")
            .ns("ns")
            .name("c2")
            .object(cm("c2"))
            .with("", "resourcequotas", quota("q", json!({"configmaps": "1"})))
            .with("", "configmaps", cm("c1"));
        assert_eq!(
            req.plugin(&ResourceQuota).unwrap_err().message,
            "configmaps \"c2\" is forbidden: exceeded quota: q, requested: configmaps=1, used: configmaps=1, limited: configmaps=1"
        );
        let d = |n: &str| json!({"metadata": {"name": n, "namespace": "ns"}});
        let mut req = Req::new(Operation::Create, "apps", "deployments", "Deployment")
            .ns("ns")
            .name("d2")
            .object(d("d2"))
            .with(
                "",
                "resourcequotas",
                quota("q", json!({"count/deployments.apps": "1"})),
            )
            .with("apps", "deployments", d("d1"));
        assert!(req
            .plugin(&ResourceQuota)
            .unwrap_err()
            .message
            .contains("count/deployments.apps=1"));
    }

    #[test]
    fn claims_count_storage_per_class() {
        let pvc = json!({"metadata": {"name": "c"}, "spec": {"storageClassName": "fast",
            "resources": {"requests": {"storage": "5Gi"}}}});
        let mut req = Req::new(
            Operation::Create,
            "",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
        )
        .ns("ns")
        .name("c")
        .object(pvc)
        .with(
            "",
            "resourcequotas",
            quota(
                "q",
                json!({"fast.storageclass.storage.k8s.io/requests.storage": "4Gi"}),
            ),
        );
        assert_eq!(
            req.plugin(&ResourceQuota).unwrap_err().message,
            "persistentvolumeclaims \"c\" is forbidden: exceeded quota: q, requested: fast.storageclass.storage.k8s.io/requests.storage=5Gi, used: fast.storageclass.storage.k8s.io/requests.storage=0, limited: fast.storageclass.storage.k8s.io/requests.storage=4Gi"
        );
    }

    #[test]
    fn updates_that_do_not_change_usage_pass() {
        let cm = json!({"metadata": {"name": "c1", "namespace": "ns", "resourceVersion": "1"}});
        let mut req = Req::new(Operation::Update, "", "configmaps", "ConfigMap")
            .ns("ns")
            .name("c1")
            .object(cm.clone())
            .old(cm.clone())
            .with("", "resourcequotas", quota("q", json!({"configmaps": "1"})))
            .with("", "configmaps", cm);
        assert!(req.plugin(&ResourceQuota).is_ok());
    }
}
