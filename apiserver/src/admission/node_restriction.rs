//! NodeRestriction: a kubelet (`system:node:<name>` in `system:nodes`) may only write its own
//! Node, Lease and CSINode, mirror pods bound to itself, and status of its own pods.

use std::collections::BTreeSet;

use serde_json::Value;

use super::helpers::{
    arr_at, is_mirror_pod, references_configmaps, references_secrets, str_at, MIRROR_POD_ANNOTATION,
};
use super::{forbidden, Attributes, Operation, Plugin};
use crate::error::ApiError;

const NODE_USER_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
const NODE_RESTRICTION_LABEL_DOMAIN: &str = "node-restriction.kubernetes.io";

/// Labels a kubelet may set on its Node (upstream `kubeletapis.IsKubeletLabel`).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];
/// Label domains a kubelet may use freely.
const KUBELET_LABEL_DOMAINS: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

/// Upstream `NodeRestriction` (off by default; kubeadm enables it). Reads `pods` and `nodes`.
pub struct NodeRestriction;

/// Upstream's `NodeIdentity`: `Some(name)` for node users (name may be empty).
fn node_identity<'a>(attrs: &Attributes<'a>) -> Option<&'a str> {
    let name = attrs.user.name.strip_prefix(NODE_USER_PREFIX)?;
    attrs.user.in_group(NODES_GROUP).then_some(name)
}

impl Plugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    fn admit(&self, attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
        if !matches!(
            attrs.operation,
            Operation::Create | Operation::Update | Operation::Delete
        ) {
            return Ok(());
        }
        let Some(node) = node_identity(attrs) else {
            return Ok(());
        };
        if node.is_empty() {
            return Err(forbidden(
                attrs,
                format_args!("could not determine node from user {:?}", attrs.user.name),
            ));
        }
        match (attrs.group, attrs.resource) {
            ("", "pods") => match attrs.subresource {
                "" => admit_pod(node, attrs),
                "status" => admit_pod_status(node, attrs),
                "eviction" => admit_pod_eviction(node, attrs),
                other => Err(forbidden(
                    attrs,
                    format_args!(
                        "unexpected pod subresource {other:?}, only 'status' and 'eviction' are allowed"
                    ),
                )),
            },
            ("", "nodes") => admit_node(node, attrs),
            ("", "persistentvolumeclaims") => match attrs.subresource {
                "status" => admit_pvc_status(node, attrs),
                _ => Err(forbidden(attrs, "may only update PVC status")),
            },
            ("", "serviceaccounts") => admit_service_account(node, attrs),
            ("coordination.k8s.io", "leases") => admit_lease(node, attrs),
            ("storage.k8s.io", "csinodes") => admit_csi_node(node, attrs),
            ("resource.k8s.io", "resourceslices") => admit_resource_slice(node, attrs),
            _ => Ok(()),
        }
    }
}

fn admit_pod(node: &str, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    match attrs.operation {
        Operation::Create => admit_pod_create(node, attrs),
        Operation::Delete => {
            let existing = match attrs.old_object {
                Some(old) => old.clone(),
                None => match attrs.source.get("", "pods", attrs.namespace, attrs.name) {
                    Some(pod) => (*pod).clone(),
                    None => return Err(ApiError::not_found("", "pods", attrs.name)),
                },
            };
            if str_at(&existing, "/spec/nodeName") != node {
                return Err(forbidden(
                    attrs,
                    format_args!(
                        "node {node:?} can only delete pods with spec.nodeName set to itself"
                    ),
                ));
            }
            Ok(())
        }
        op => {
            let op = op.to_string();
            Err(forbidden(
                attrs,
                format_args!(
                    "unexpected operation {op:?}, node {node:?} can only create and delete mirror pods"
                ),
            ))
        }
    }
}

fn admit_pod_create(node: &str, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    let Some(pod) = attrs.obj() else {
        return Err(forbidden(attrs, "unexpected type <nil>"));
    };
    if !is_mirror_pod(pod) {
        return Err(forbidden(
            attrs,
            format_args!(
                "pod does not have {MIRROR_POD_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
            ),
        ));
    }
    if str_at(pod, "/spec/nodeName") != node {
        return Err(forbidden(
            attrs,
            format_args!("node {node:?} can only create pods with spec.nodeName set to itself"),
        ));
    }
    let owners = arr_at(pod, "/metadata/ownerReferences");
    match owners {
        [] => {
            return Err(forbidden(
                attrs,
                format_args!(
                    "node {node:?} can only create pods with an owner reference set to itself"
                ),
            ))
        }
        [owner] => {
            if str_at(owner, "/apiVersion") != "v1"
                || str_at(owner, "/kind") != "Node"
                || str_at(owner, "/name") != node
            {
                return Err(forbidden(
                    attrs,
                    format_args!(
                        "node {node:?} can only create pods with an owner reference set to itself"
                    ),
                ));
            }
            if owner["controller"].as_bool() != Some(true) {
                return Err(forbidden(
                    attrs,
                    format_args!(
                        "node {node:?} can only create pods with a controller owner reference set to itself"
                    ),
                ));
            }
            if owner["blockOwnerDeletion"].as_bool() == Some(true) {
                return Err(forbidden(
                    attrs,
                    format_args!(
                        "node {node:?} must not set blockOwnerDeletion on an owner reference"
                    ),
                ));
            }
            let Some(node_obj) = attrs.source.get("", "nodes", "", node) else {
                return Err(ApiError::not_found("", "nodes", node));
            };
            let (want, got) = (str_at(owner, "/uid"), str_at(&node_obj, "/metadata/uid"));
            if want != got {
                return Err(forbidden(
                    attrs,
                    format_args!("node {node} UID mismatch: expected {want} got {got}"),
                ));
            }
        }
        _ => {
            return Err(forbidden(
                attrs,
                format_args!(
                    "node {node:?} can only create pods with a single owner reference set to itself"
                ),
            ))
        }
    }
    let spec = &pod["spec"];
    let account = match str_at(spec, "/serviceAccountName") {
        "" => str_at(spec, "/serviceAccount"),
        a => a,
    };
    if !account.is_empty() {
        return Err(forbidden(
            attrs,
            format_args!("node {node:?} can not create pods that reference a service account"),
        ));
    }
    if references_secrets(pod) {
        return Err(forbidden(
            attrs,
            format_args!("node {node:?} can not create pods that reference secrets"),
        ));
    }
    if references_configmaps(pod) {
        return Err(forbidden(
            attrs,
            format_args!("node {node:?} can not create pods that reference configmaps"),
        ));
    }
    let volumes = arr_at(spec, "/volumes");
    let trust_bundles = volumes.iter().any(|v| {
        arr_at(v, "/projected/sources")
            .iter()
            .any(|s| s.get("clusterTrustBundle").is_some_and(|b| !b.is_null()))
    });
    if trust_bundles {
        return Err(forbidden(
            attrs,
            format_args!("node {node:?} can not create pods that reference clustertrustbundles"),
        ));
    }
    if volumes
        .iter()
        .any(|v| v.get("persistentVolumeClaim").is_some_and(|c| !c.is_null()))
    {
        return Err(forbidden(
            attrs,
            format_args!("node {node:?} can not create pods that reference persistentvolumeclaims"),
        ));
    }
    Ok(())
}

fn admit_pod_status(node: &str, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    if attrs.operation != Operation::Update {
        return Err(forbidden(
            attrs,
            format_args!("unexpected operation {:?}", attrs.operation.to_string()),
        ));
    }
    let old = attrs.old_object.cloned().unwrap_or_default();
    if str_at(&old, "/spec/nodeName") != node {
        return Err(forbidden(
            attrs,
            format_args!(
                "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
            ),
        ));
    }
    let new = attrs.obj().cloned().unwrap_or_default();
    let labels = |v: &Value| {
        v.pointer("/metadata/labels")
            .filter(|l| !l.is_null())
            .cloned()
    };
    let as_map = |l: Option<Value>| l.and_then(|l| l.as_object().cloned()).unwrap_or_default();
    if as_map(labels(&old)) != as_map(labels(&new)) {
        return Err(forbidden(
            attrs,
            format_args!("node {node:?} cannot update labels through pod status"),
        ));
    }
    let claims = |v: &Value| -> Vec<(String, String)> {
        arr_at(v, "/status/resourceClaimStatuses")
            .iter()
            .map(|s| {
                (
                    str_at(s, "/name").to_string(),
                    str_at(s, "/resourceClaimName").to_string(),
                )
            })
            .collect()
    };
    if claims(&old) != claims(&new) {
        return Err(forbidden(
            attrs,
            format_args!("node {node:?} cannot update resource claim statues"),
        ));
    }
    Ok(())
}

fn admit_pod_eviction(node: &str, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    if attrs.operation != Operation::Create {
        return Err(forbidden(
            attrs,
            format_args!("unexpected operation {}", attrs.operation),
        ));
    }
    let pod_name = if attrs.name.is_empty() {
        attrs
            .obj()
            .map(|e| str_at(e, "/metadata/name"))
            .unwrap_or("")
    } else {
        attrs.name
    };
    if pod_name.is_empty() {
        return Err(forbidden(
            attrs,
            "could not determine pod from request data",
        ));
    }
    let Some(existing) = attrs.source.get("", "pods", attrs.namespace, pod_name) else {
        return Err(ApiError::not_found("", "pods", pod_name));
    };
    if str_at(&existing, "/spec/nodeName") != node {
        return Err(forbidden(
            attrs,
            format_args!("node {node} can only evict pods with spec.nodeName set to itself"),
        ));
    }
    Ok(())
}

fn admit_pvc_status(node: &str, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    if attrs.operation != Operation::Update {
        return Err(forbidden(
            attrs,
            format_args!("unexpected operation {:?}", attrs.operation.to_string()),
        ));
    }
    // Everything but status capacity, conditions and allocations (and bookkeeping metadata)
    // must be unchanged.
    let strip = |v: Option<&Value>| -> Value {
        let mut v = v.cloned().unwrap_or_default();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        if let Some(status) = v.get_mut("status").and_then(Value::as_object_mut) {
            for key in [
                "capacity",
                "conditions",
                "allocatedResources",
                "allocatedResourceStatuses",
            ] {
                status.remove(key);
            }
        }
        v
    };
    if strip(attrs.old_object) != strip(attrs.obj()) {
        return Err(forbidden(
            attrs,
            format_args!(
                "node {node:?} is not allowed to update fields other than status.quantity and status.conditions"
            ),
        ));
    }
    Ok(())
}

fn label_domain(key: &str) -> &str {
    key.split_once('/').map(|(d, _)| d).unwrap_or("")
}

fn in_domain(domain: &str, parent: &str) -> bool {
    domain == parent || domain.ends_with(&format!(".{parent}"))
}

fn is_kubelet_label(key: &str) -> bool {
    KUBELET_LABELS.contains(&key)
        || KUBELET_LABEL_DOMAINS
            .iter()
            .any(|d| in_domain(label_domain(key), d))
}

/// Labels a node may not add, remove or change: node-restriction ones, and kubernetes.io /
/// k8s.io ones outside the kubelet's own set.
fn forbidden_labels(new: &Value, old: Option<&Value>) -> Vec<String> {
    let empty = serde_json::Map::new();
    let labels = |v: Option<&Value>| {
        v.and_then(|v| v.pointer("/metadata/labels"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_else(|| empty.clone())
    };
    let (a, b) = (labels(Some(new)), labels(old));
    let modified: BTreeSet<&String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .chain(b.iter().filter(|(k, v)| a.get(*k) != Some(*v)))
        .map(|(k, _)| k)
        .collect();
    modified
        .into_iter()
        .filter(|k| {
            let domain = label_domain(k);
            let kubernetes = in_domain(domain, "kubernetes.io") || in_domain(domain, "k8s.io");
            in_domain(domain, NODE_RESTRICTION_LABEL_DOMAIN) || (kubernetes && !is_kubelet_label(k))
        })
        .cloned()
        .collect()
}

fn admit_node(node: &str, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    let requested = if attrs.name.is_empty() && attrs.operation == Operation::Create {
        attrs
            .obj()
            .map(|n| str_at(n, "/metadata/name"))
            .unwrap_or("")
    } else {
        attrs.name
    };
    if requested != node {
        return Err(forbidden(
            attrs,
            format_args!("node {node:?} is not allowed to modify node {requested:?}"),
        ));
    }
    let Some(obj) = attrs.obj() else {
        return Ok(());
    };
    let config_source = |v: &Value| {
        v.pointer("/spec/configSource")
            .filter(|c| !c.is_null())
            .cloned()
    };
    match attrs.operation {
        Operation::Create => {
            if config_source(obj).is_some() {
                return Err(forbidden(
                    attrs,
                    format_args!(
                        "node {node:?} is not allowed to create pods with a non-nil configSource"
                    ),
                ));
            }
            let bad = forbidden_labels(obj, None);
            if !bad.is_empty() {
                return Err(forbidden(
                    attrs,
                    format_args!(
                        "node {node:?} is not allowed to set the following labels: {}",
                        bad.join(", ")
                    ),
                ));
            }
        }
        Operation::Update => {
            let old = attrs.old_object.cloned().unwrap_or_default();
            if let Some(cs) = config_source(obj) {
                if Some(cs) != config_source(&old) {
                    return Err(forbidden(
                        attrs,
                        format_args!(
                            "node {node:?} is not allowed to update configSource to a new non-nil configSource"
                        ),
                    ));
                }
            }
            let taints = |v: &Value| arr_at(v, "/spec/taints").to_vec();
            if taints(obj) != taints(&old) {
                return Err(forbidden(
                    attrs,
                    format_args!("node {node:?} is not allowed to modify taints"),
                ));
            }
            let bad = forbidden_labels(obj, Some(&old));
            if !bad.is_empty() {
                return Err(forbidden(
                    attrs,
                    format_args!("is not allowed to modify labels: {}", bad.join(", ")),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

fn admit_service_account(node: &str, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    if attrs.operation != Operation::Create || attrs.subresource != "token" {
        return Ok(());
    }
    let tr = attrs.obj().cloned().unwrap_or_default();
    let r = tr
        .pointer("/spec/boundObjectRef")
        .cloned()
        .unwrap_or_default();
    if r.is_null()
        || str_at(&r, "/apiVersion") != "v1"
        || str_at(&r, "/kind") != "Pod"
        || str_at(&r, "/name").is_empty()
    {
        return Err(forbidden(attrs, "node requested token not bound to a pod"));
    }
    let uid = str_at(&r, "/uid");
    if uid.is_empty() {
        return Err(forbidden(
            attrs,
            "node requested token with a pod binding without a uid",
        ));
    }
    let pod_name = str_at(&r, "/name");
    let Some(pod) = attrs.source.get("", "pods", attrs.namespace, pod_name) else {
        return Err(ApiError::not_found("", "pods", pod_name));
    };
    if uid != str_at(&pod, "/metadata/uid") {
        return Err(forbidden(
            attrs,
            format_args!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    if str_at(&pod, "/spec/nodeName") != node {
        return Err(forbidden(
            attrs,
            "node requested token bound to a pod scheduled on a different node",
        ));
    }
    Ok(())
}

/// The object name on create (the request has none yet), else the request name.
fn target_name<'a>(attrs: &'a Attributes<'_>) -> &'a str {
    if attrs.operation == Operation::Create {
        attrs
            .obj()
            .map(|o| str_at(o, "/metadata/name"))
            .unwrap_or("")
    } else {
        attrs.name
    }
}

fn admit_lease(node: &str, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    if attrs.namespace != NODE_LEASE_NAMESPACE {
        return Err(forbidden(
            attrs,
            format_args!("can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"),
        ));
    }
    if target_name(attrs) != node {
        return Err(forbidden(
            attrs,
            "can only access node lease with the same name as the requesting node",
        ));
    }
    Ok(())
}

fn admit_csi_node(node: &str, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    if target_name(attrs) != node {
        return Err(forbidden(
            attrs,
            "can only access CSINode with the same name as the requesting node",
        ));
    }
    Ok(())
}

fn admit_resource_slice(node: &str, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    let (obj, verb) = match attrs.operation {
        Operation::Create => (attrs.obj(), "create"),
        Operation::Delete => (attrs.old_object, "delete"),
        _ => return Ok(()),
    };
    let slice_node = obj.map(|s| str_at(s, "/spec/nodeName")).unwrap_or("");
    if slice_node != node {
        return Err(forbidden(
            attrs,
            format_args!(
                "can only {verb} ResourceSlice with the same NodeName as the requesting node"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    fn node_obj(name: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "uid": format!("uid-{name}"), "labels": labels},
               "spec": {"taints": taints}})
    }

    fn mirror(node: &str, spec_extra: Value) -> Value {
        let mut spec = json!({"nodeName": node, "containers": [{"name": "c", "image": "i"}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), spec_extra.as_object()) {
            s.extend(e.clone());
        }
        json!({"metadata": {"name": format!("etcd-{node}"),
            "annotations": {"kubernetes.io/config.mirror": "hash"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node,
                "uid": format!("uid-{node}"), "controller": true}]},
            "spec": spec})
    }

    fn create_pod_as(node: &str, pod: Value) -> Result<Vec<String>, ApiError> {
        Req::create_pod("kube-system", pod)
            .user(node_user(node))
            .with("", "nodes", node_obj("a", json!({}), json!([])))
            .plugin(&NodeRestriction)
    }

    #[test]
    fn non_node_users_are_not_restricted() {
        let mut req = Req::new(Operation::Update, "", "nodes", "Node")
            .name("b")
            .object(node_obj(
                "b",
                json!({}),
                json!([{"key": "x", "effect": "NoSchedule"}]),
            ))
            .old(node_obj("b", json!({}), json!([])));
        assert!(req.plugin(&NodeRestriction).is_ok());
    }

    #[test]
    fn a_node_may_only_modify_its_own_node() {
        let mut req = Req::new(Operation::Update, "", "nodes", "Node")
            .name("b")
            .user(node_user("a"))
            .object(node_obj("b", json!({}), json!([])))
            .old(node_obj("b", json!({}), json!([])));
        assert_eq!(
            req.plugin(&NodeRestriction).unwrap_err().message,
            "nodes \"b\" is forbidden: node \"a\" is not allowed to modify node \"b\""
        );
    }

    #[test]
    fn a_node_may_not_change_its_taints() {
        let mut req = Req::new(Operation::Update, "", "nodes", "Node")
            .name("a")
            .user(node_user("a"))
            .object(node_obj("a", json!({}), json!([])))
            .old(node_obj(
                "a",
                json!({}),
                json!([{"key": "x", "effect": "NoSchedule"}]),
            ));
        assert_eq!(
            req.plugin(&NodeRestriction).unwrap_err().message,
            "nodes \"a\" is forbidden: node \"a\" is not allowed to modify taints"
        );
    }

    #[test]
    fn restricted_labels_are_refused_and_kubelet_labels_allowed() {
        let create = |labels: Value| {
            Req::new(Operation::Create, "", "nodes", "Node")
                .name("a")
                .user(node_user("a"))
                .object(node_obj("a", labels, json!([])))
                .plugin(&NodeRestriction)
        };
        assert!(create(json!({"kubernetes.io/hostname": "a", "node.kubernetes.io/exclude-from-external-load-balancers": "",
            "example.com/x": "y", "kubernetes.io/os": "linux"})).is_ok());
        assert_eq!(
            create(json!({"node-restriction.kubernetes.io/pool": "x", "node-role.kubernetes.io/control-plane": ""}))
                .unwrap_err()
                .message,
            "nodes \"a\" is forbidden: node \"a\" is not allowed to set the following labels: node-restriction.kubernetes.io/pool, node-role.kubernetes.io/control-plane"
        );
        let mut req = Req::new(Operation::Update, "", "nodes", "Node")
            .name("a")
            .user(node_user("a"))
            .object(node_obj("a", json!({"foo.k8s.io/x": "2"}), json!([])))
            .old(node_obj("a", json!({"foo.k8s.io/x": "1"}), json!([])));
        assert_eq!(
            req.plugin(&NodeRestriction).unwrap_err().message,
            "nodes \"a\" is forbidden: is not allowed to modify labels: foo.k8s.io/x"
        );
    }

    #[test]
    fn nodes_may_create_only_clean_mirror_pods_bound_to_themselves() {
        assert!(create_pod_as("a", mirror("a", json!({}))).is_ok());
        let mut plain = mirror("a", json!({}));
        plain["metadata"]["annotations"] = json!({});
        assert_eq!(
            create_pod_as("a", plain).unwrap_err().message,
            "pods \"etcd-a\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"a\" can only create mirror pods"
        );
        assert_eq!(
            create_pod_as("a", mirror("b", json!({}))).unwrap_err().message,
            "pods \"etcd-b\" is forbidden: node \"a\" can only create pods with spec.nodeName set to itself"
        );
        assert_eq!(
            create_pod_as("a", mirror("a", json!({"serviceAccountName": "x"}))).unwrap_err().message,
            "pods \"etcd-a\" is forbidden: node \"a\" can not create pods that reference a service account"
        );
        assert_eq!(
            create_pod_as("a", mirror("a", json!({"volumes": [{"name": "v", "configMap": {"name": "c"}}]})))
                .unwrap_err()
                .message,
            "pods \"etcd-a\" is forbidden: node \"a\" can not create pods that reference configmaps"
        );
        let mut wrong_uid = mirror("a", json!({}));
        wrong_uid["metadata"]["ownerReferences"][0]["uid"] = json!("other");
        assert_eq!(
            create_pod_as("a", wrong_uid).unwrap_err().message,
            "pods \"etcd-a\" is forbidden: node a UID mismatch: expected other got uid-a"
        );
    }

    #[test]
    fn nodes_may_delete_and_update_status_only_of_their_pods() {
        let bound =
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "b"}});
        let mut req = Req::new(Operation::Delete, "", "pods", "Pod")
            .ns("ns")
            .name("p")
            .user(node_user("a"))
            .with("", "pods", bound.clone());
        assert_eq!(
            req.plugin(&NodeRestriction).unwrap_err().message,
            "pods \"p\" is forbidden: node \"a\" can only delete pods with spec.nodeName set to itself"
        );
        let mut req = Req::new(Operation::Update, "", "pods", "Pod")
            .sub("status")
            .ns("ns")
            .name("p")
            .user(node_user("a"))
            .object(bound.clone())
            .old(bound.clone());
        assert_eq!(
            req.plugin(&NodeRestriction).unwrap_err().message,
            "pods \"p\" is forbidden: node \"a\" can only update pod status for pods with spec.nodeName set to itself"
        );
        let mut req = Req::new(Operation::Update, "", "pods", "Pod")
            .sub("status")
            .ns("ns")
            .name("p")
            .user(node_user("b"))
            .object(bound.clone())
            .old(bound);
        assert!(req.plugin(&NodeRestriction).is_ok());
    }

    #[test]
    fn leases_must_be_the_nodes_own_in_kube_node_lease() {
        let lease = |ns: &str, name: &str| {
            Req::new(Operation::Create, "coordination.k8s.io", "leases", "Lease")
                .ns(ns)
                .user(node_user("a"))
                .object(json!({"metadata": {"name": name}}))
                .plugin(&NodeRestriction)
        };
        assert!(lease("kube-node-lease", "a").is_ok());
        assert_eq!(
            lease("kube-node-lease", "b").unwrap_err().message,
            "leases.coordination.k8s.io \"b\" is forbidden: can only access node lease with the same name as the requesting node"
        );
        assert_eq!(
            lease("default", "a").unwrap_err().message,
            "leases.coordination.k8s.io \"a\" is forbidden: can only access leases in the \"kube-node-lease\" system namespace"
        );
    }

    #[test]
    fn token_requests_must_be_bound_to_a_pod_on_the_node() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {"nodeName": "a"}});
        let token = |node: &str, uid: &str| {
            Req::new(Operation::Create, "", "serviceaccounts", "TokenRequest")
                .sub("token")
                .ns("ns")
                .name("default")
                .user(node_user(node))
                .object(json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": uid}}}))
                .with("", "pods", pod.clone())
                .plugin(&NodeRestriction)
        };
        assert!(token("a", "u1").is_ok());
        assert_eq!(
            token("b", "u1").unwrap_err().message,
            "serviceaccounts \"default\" is forbidden: node requested token bound to a pod scheduled on a different node"
        );
        assert!(token("a", "u2")
            .unwrap_err()
            .message
            .contains("does not match the UID in record"));
    }
}
