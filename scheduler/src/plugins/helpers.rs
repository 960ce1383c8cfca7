//! Matching helpers shared by plugins: tolerations, label and node selectors.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `toleration` tolerates `taint`, as upstream's `ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// The pod's tolerations.
pub fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// The node's taints.
pub fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// The first taint with one of `effects` that no toleration tolerates.
pub fn first_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn requirement_matches(
    labels: &BTreeMap<String, String>,
    key: &str,
    operator: &str,
    values: &[String],
) -> bool {
    let value = labels.get(key);
    match operator {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn node_requirement_matches(
    labels: &BTreeMap<String, String>,
    r: &NodeSelectorRequirement,
) -> bool {
    requirement_matches(
        labels,
        &r.key,
        &r.operator,
        r.values.as_deref().unwrap_or_default(),
    )
}

/// Whether a node selector term matches: its expressions (labels) and fields (`metadata.name`)
/// all hold; an empty term matches nothing, as upstream.
pub fn node_selector_term_matches(node: &Node, term: &NodeSelectorTerm) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let mut field_labels = BTreeMap::new();
    if let Some(name) = node.metadata.name.clone() {
        field_labels.insert("metadata.name".to_string(), name);
    }
    exprs.iter().all(|r| node_requirement_matches(labels, r))
        && fields
            .iter()
            .all(|r| node_requirement_matches(&field_labels, r))
}

/// Whether `selector` matches `labels`; an empty selector matches everything.
pub fn label_selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|e| {
            requirement_matches(
                labels,
                &e.key,
                &e.operator,
                e.values.as_deref().unwrap_or_default(),
            )
        })
}

/// A pod's labels (empty when unset).
pub fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

/// Whether the pod's nodeSelector and required node affinity accept `node`.
pub fn pod_matches_node_selector_and_affinity(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(sel) = spec.node_selector.as_ref() {
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(r) => r
            .node_selector_terms
            .iter()
            .any(|t| node_selector_term_matches(node, t)),
        None => true,
    }
}

#[cfg(test)]
pub mod testing {
    //! Fake objects for plugin tests.
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{json, Value};

    use crate::framework::NodeInfo;

    /// A node with `cpu`, `memory` and 110 pods allocatable, labels and taints.
    pub fn node(name: &str, cpu: &str, memory: &str, labels: Value, taints: Value) -> Node {
        let mut labels = labels;
        if let Some(m) = labels.as_object_mut() {
            m.entry("kubernetes.io/hostname").or_insert(json!(name));
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}},
        }))
        .expect("node")
    }

    /// A pod from a spec fragment.
    pub fn pod(name: &str, labels: Value, spec: Value) -> Pod {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": spec,
        }))
        .expect("pod")
    }

    /// A pod requesting cpu and memory.
    pub fn pod_with_requests(name: &str, cpu: &str, memory: &str) -> Pod {
        pod(
            name,
            json!({}),
            json!({"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}),
        )
    }

    /// A NodeInfo with pods on it.
    pub fn node_info(node: Node, pods: Vec<Pod>) -> NodeInfo {
        let mut ni = NodeInfo::new(Arc::new(node));
        for mut p in pods {
            if let Some(spec) = p.spec.as_mut() {
                spec.node_name = Some(ni.name().to_string());
            }
            ni.add_pod(Arc::new(p));
        }
        ni
    }
}
