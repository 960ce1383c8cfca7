//! The Node authorizer: kubelets (`system:node:<name>` in `system:nodes`) may read only the
//! secrets, config maps, volumes and service-account tokens of pods bound to their node, as
//! upstream's `plugin/pkg/auth/authorizer/node` (v1.33). Upstream keeps a graph fed by
//! informers; here the relationships are computed on demand from the [`ObjectSource`], which
//! answers the same question ("is there a path from this object to the node?").

use std::sync::Arc;

use serde_json::Value;

use super::bootstrap_policy::node_rules;
use super::rules::{go_quote, rules_allow, PolicyRule};
use super::{Attributes, Decision};
use crate::authn::UserInfo;
use crate::source::ObjectSource;

/// Group every kubelet belongs to.
pub const NODES_GROUP: &str = "system:nodes";
/// Prefix of kubelet user names.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Namespace of node heartbeat leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The operator of one field-selector requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

/// One requirement of a field selector (`spec.nodeName=node-1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path, such as `spec.nodeName`.
    pub field: String,
    /// How the field is compared.
    pub op: FieldOp,
    /// The value compared with.
    pub value: String,
}

/// Parses a `fieldSelector` query parameter into its requirements; malformed terms are
/// skipped (the list handler rejects them before authorization matters).
pub fn parse_field_selector(selector: &str) -> Vec<FieldRequirement> {
    selector
        .split(',')
        .filter_map(|term| {
            let term = term.trim();
            let (field, op, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, FieldOp::NotEquals, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, FieldOp::Equals, v)
            } else {
                let (f, v) = term.split_once('=')?;
                (f, FieldOp::Equals, v)
            };
            Some(FieldRequirement {
                field: field.trim().to_owned(),
                op,
                value: value.trim().to_owned(),
            })
        })
        .collect()
}

fn selects(reqs: &[FieldRequirement], field: &str, value: &str) -> bool {
    reqs.iter()
        .any(|r| r.field == field && r.op == FieldOp::Equals && r.value == value)
}

/// The node a user acts for: `Some("")` for a member of `system:nodes` whose name has the
/// prefix but no node name, `None` for anyone who is not a node (upstream `NodeIdentity`).
pub fn node_identity(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    user.in_group(NODES_GROUP).then_some(name)
}

fn allow() -> Decision {
    Decision::Allow(String::new())
}

fn no(reason: impl Into<String>) -> Decision {
    Decision::NoOpinion(reason.into())
}

fn no_relationship(node: &str) -> Decision {
    no(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn all_containers(spec: &Value) -> impl Iterator<Item = &Value> {
    array(&spec["initContainers"])
        .iter()
        .chain(array(&spec["containers"]))
        .chain(array(&spec["ephemeralContainers"]))
}

/// Calls `f` with every secret name a pod references (upstream `VisitPodSecretNames`).
fn pod_secret_names(pod: &Value, f: &mut dyn FnMut(&str) -> bool) -> bool {
    let spec = &pod["spec"];
    for s in array(&spec["imagePullSecrets"]) {
        if f(str_at(s, "name")) {
            return true;
        }
    }
    for c in all_containers(spec) {
        for e in array(&c["envFrom"]) {
            if e["secretRef"].is_object() && f(str_at(&e["secretRef"], "name")) {
                return true;
            }
        }
        for e in array(&c["env"]) {
            let r = &e["valueFrom"]["secretKeyRef"];
            if r.is_object() && f(str_at(r, "name")) {
                return true;
            }
        }
    }
    for v in array(&spec["volumes"]) {
        let refs = [
            &v["azureFile"]["secretName"],
            &v["cephfs"]["secretRef"]["name"],
            &v["cinder"]["secretRef"]["name"],
            &v["flexVolume"]["secretRef"]["name"],
            &v["rbd"]["secretRef"]["name"],
            &v["secret"]["secretName"],
            &v["scaleIO"]["secretRef"]["name"],
            &v["iscsi"]["secretRef"]["name"],
            &v["storageos"]["secretRef"]["name"],
            &v["csi"]["nodePublishSecretRef"]["name"],
        ];
        for r in refs {
            if let Some(name) = r.as_str() {
                if f(name) {
                    return true;
                }
            }
        }
        for source in array(&v["projected"]["sources"]) {
            if let Some(name) = source["secret"]["name"].as_str() {
                if f(name) {
                    return true;
                }
            }
        }
    }
    false
}

/// Whether a pod references the config map (upstream `VisitPodConfigmapNames`).
fn pod_uses_configmap(pod: &Value, name: &str) -> bool {
    let spec = &pod["spec"];
    for c in all_containers(spec) {
        if array(&c["envFrom"])
            .iter()
            .any(|e| e["configMapRef"]["name"].as_str() == Some(name))
        {
            return true;
        }
        if array(&c["env"])
            .iter()
            .any(|e| e["valueFrom"]["configMapKeyRef"]["name"].as_str() == Some(name))
        {
            return true;
        }
    }
    array(&spec["volumes"]).iter().any(|v| {
        v["configMap"]["name"].as_str() == Some(name)
            || array(&v["projected"]["sources"])
                .iter()
                .any(|s| s["configMap"]["name"].as_str() == Some(name))
    })
}

/// Whether a pod uses the claim, directly or through a generic ephemeral volume
/// (`<pod>-<volume>`).
fn pod_uses_pvc(pod: &Value, claim: &str) -> bool {
    let pod_name = str_at(&pod["metadata"], "name");
    array(&pod["spec"]["volumes"]).iter().any(|v| {
        v["persistentVolumeClaim"]["claimName"].as_str() == Some(claim)
            || (v["ephemeral"].is_object()
                && claim
                    .strip_prefix(pod_name)
                    .and_then(|rest| rest.strip_prefix('-'))
                    == Some(str_at(v, "name")))
    })
}

fn pod_uses_resource_claim(pod: &Value, claim: &str) -> bool {
    array(&pod["status"]["resourceClaimStatuses"])
        .iter()
        .any(|s| s["resourceClaimName"].as_str() == Some(claim))
}

/// Calls `f` with the (namespace, name) of every secret a persistent volume references
/// (upstream `VisitPVSecretNames`); namespaces default to the claim's.
fn pv_secret_refs(pv: &Value, f: &mut dyn FnMut(&str, &str) -> bool) -> bool {
    let spec = &pv["spec"];
    let claim_ns = spec["claimRef"]["namespace"].as_str().unwrap_or("default");
    let pick = |ns: &Value| match ns.as_str() {
        Some(ns) if !ns.is_empty() => ns.to_owned(),
        _ => claim_ns.to_owned(),
    };
    let mut refs: Vec<(String, &str)> = Vec::new();
    if let Some(name) = spec["azureFile"]["secretName"].as_str() {
        refs.push((pick(&spec["azureFile"]["secretNamespace"]), name));
    }
    for source in [
        "cephfs",
        "cinder",
        "flexVolume",
        "rbd",
        "scaleIO",
        "iscsi",
        "storageos",
    ] {
        let r = &spec[source]["secretRef"];
        if let Some(name) = r["name"].as_str() {
            refs.push((pick(&r["namespace"]), name));
        }
    }
    for key in [
        "controllerPublishSecretRef",
        "nodeStageSecretRef",
        "nodePublishSecretRef",
        "controllerExpandSecretRef",
        "nodeExpandSecretRef",
    ] {
        let r = &spec["csi"][key];
        if let Some(name) = r["name"].as_str() {
            refs.push((pick(&r["namespace"]), name));
        }
    }
    refs.iter().any(|(ns, name)| f(ns, name))
}

/// The Node authorizer. Requests of users that are not nodes get no opinion.
#[derive(Debug, Clone)]
pub struct NodeAuthorizer {
    rules: Vec<PolicyRule>,
    selectors: bool,
}

impl Default for NodeAuthorizer {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeAuthorizer {
    /// The authorizer with upstream's node rules and `AuthorizeNodeWithSelectors` on (the v1.33
    /// default): nodes read only their own Node, and list/watch pods only with a
    /// `spec.nodeName=<node>` field selector.
    pub fn new() -> Self {
        Self {
            rules: node_rules(),
            selectors: true,
        }
    }

    /// Turns `AuthorizeNodeWithSelectors` off: node and pod requests are then judged by the
    /// node rules alone (any node may read every Node and Pod).
    pub fn with_selectors(mut self, on: bool) -> Self {
        self.selectors = on;
        self
    }

    /// Decides a request; `field_selector` holds the list/watch field selector, if any.
    pub fn authorize(
        &self,
        attrs: &Attributes<'_>,
        field_selector: &[FieldRequirement],
        source: &dyn ObjectSource,
    ) -> Decision {
        let Some(node) = node_identity(attrs.user) else {
            return no("");
        };
        if node.is_empty() {
            return no(format!(
                "unknown node for user {}",
                go_quote(&attrs.user.name)
            ));
        }
        if attrs.resource_request {
            match (attrs.api_group, attrs.resource) {
                ("", "secrets") => return self.read_namespaced(node, attrs, source, Kind::Secret),
                ("", "configmaps") => {
                    return self.read_namespaced(node, attrs, source, Kind::ConfigMap)
                }
                ("", "persistentvolumeclaims") => {
                    if attrs.subresource == "status" {
                        return self.status_update(node, attrs, source);
                    }
                    return self.get_related(node, attrs, source, Kind::Pvc);
                }
                ("", "persistentvolumes") => {
                    return self.get_related(node, attrs, source, Kind::Pv)
                }
                ("resource.k8s.io", "resourceclaims") => {
                    return self.get_related(node, attrs, source, Kind::ResourceClaim)
                }
                ("storage.k8s.io", "volumeattachments") => {
                    return self.get_related(node, attrs, source, Kind::VolumeAttachment)
                }
                ("", "serviceaccounts") => return self.create_token(node, attrs, source),
                ("coordination.k8s.io", "leases") => return lease(node, attrs),
                ("storage.k8s.io", "csinodes") => return csi_node(node, attrs),
                ("resource.k8s.io", "resourceslices") => {
                    return self.resource_slice(node, attrs, field_selector, source)
                }
                ("", "nodes") if self.selectors => return node_object(node, attrs),
                ("", "pods") if self.selectors => {
                    return self.pod(node, attrs, field_selector, source)
                }
                _ => {}
            }
        }
        if rules_allow(attrs, &self.rules) {
            allow()
        } else {
            no("")
        }
    }

    /// get/list/watch of a single secret or config map related to the node.
    fn read_namespaced(
        &self,
        node: &str,
        attrs: &Attributes<'_>,
        source: &dyn ObjectSource,
        kind: Kind,
    ) -> Decision {
        if !matches!(attrs.verb, "get" | "list" | "watch") {
            return no("can only read resources of this type");
        }
        if !attrs.subresource.is_empty() {
            return no("cannot read subresource");
        }
        if attrs.namespace.is_empty() {
            return no("can only read namespaced object of this type");
        }
        self.related(node, attrs, source, kind)
    }

    /// get of a single object related to the node.
    fn get_related(
        &self,
        node: &str,
        attrs: &Attributes<'_>,
        source: &dyn ObjectSource,
        kind: Kind,
    ) -> Decision {
        if attrs.verb != "get" {
            return no("can only get individual resources of this type");
        }
        if !attrs.subresource.is_empty() {
            return no("cannot get subresource");
        }
        self.related(node, attrs, source, kind)
    }

    /// update/patch of the status of a claim used by a pod on the node; other verbs get no
    /// opinion, as upstream (its message names get too, though get is not let through).
    fn status_update(
        &self,
        node: &str,
        attrs: &Attributes<'_>,
        source: &dyn ObjectSource,
    ) -> Decision {
        if !matches!(attrs.verb, "update" | "patch") {
            return no("can only get/update/patch this type");
        }
        self.related(node, attrs, source, Kind::Pvc)
    }

    fn related(
        &self,
        node: &str,
        attrs: &Attributes<'_>,
        source: &dyn ObjectSource,
        kind: Kind,
    ) -> Decision {
        if attrs.name.is_empty() {
            return no("No Object name found");
        }
        if has_path(node, kind, attrs.namespace, attrs.name, source) {
            allow()
        } else {
            no_relationship(node)
        }
    }

    fn create_token(
        &self,
        node: &str,
        attrs: &Attributes<'_>,
        source: &dyn ObjectSource,
    ) -> Decision {
        if attrs.verb != "create" || attrs.name.is_empty() {
            return no("can only create tokens for individual service accounts");
        }
        if attrs.subresource != "token" {
            return no("can only create token subresource of serviceaccount");
        }
        if has_path(
            node,
            Kind::ServiceAccount,
            attrs.namespace,
            attrs.name,
            source,
        ) {
            allow()
        } else {
            no_relationship(node)
        }
    }

    fn resource_slice(
        &self,
        node: &str,
        attrs: &Attributes<'_>,
        field_selector: &[FieldRequirement],
        source: &dyn ObjectSource,
    ) -> Decision {
        if !attrs.subresource.is_empty() {
            return no("cannot authorize ResourceSlice subresources");
        }
        match attrs.verb {
            // NodeRestriction checks the new object's nodeName.
            "create" => allow(),
            "get" | "update" | "patch" | "delete" => {
                self.related(node, attrs, source, Kind::ResourceSlice)
            }
            "watch" | "list" | "deletecollection" => {
                if !self.selectors || selects(field_selector, "spec.nodeName", node) {
                    allow()
                } else {
                    no("can only list/watch/deletecollection resourceslices with nodeName field selector")
                }
            }
            _ => no("only the following verbs are allowed for a ResourceSlice: get, watch, list, create, update, patch, delete, deletecollection"),
        }
    }

    fn pod(
        &self,
        node: &str,
        attrs: &Attributes<'_>,
        field_selector: &[FieldRequirement],
        source: &dyn ObjectSource,
    ) -> Decision {
        match (attrs.subresource, attrs.verb) {
            ("", "get") => self.get_related(node, attrs, source, Kind::Pod),
            ("", "list" | "watch") => {
                if selects(field_selector, "spec.nodeName", node) {
                    allow()
                } else if !attrs.name.is_empty() {
                    self.related(node, attrs, source, Kind::Pod)
                } else {
                    no("can only list/watch pods with spec.nodeName field selector")
                }
            }
            // Mirror pods, pod status and evictions; NodeRestriction limits them to own pods.
            ("", "create" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => {
                allow()
            }
            _ => no(""),
        }
    }
}

fn lease(node: &str, attrs: &Attributes<'_>) -> Decision {
    if !matches!(attrs.verb, "get" | "create" | "update" | "patch" | "delete") {
        return no("can only get, create, update, patch, or delete a node lease");
    }
    if attrs.namespace != NODE_LEASE_NAMESPACE {
        return no(format!(
            "can only access leases in the {} system namespace",
            go_quote(NODE_LEASE_NAMESPACE)
        ));
    }
    // The name is unknown on create; NodeRestriction checks it then.
    if attrs.verb != "create" && attrs.name != node {
        return no("can only access node lease with the same name as the requesting node");
    }
    allow()
}

fn csi_node(node: &str, attrs: &Attributes<'_>) -> Decision {
    if !matches!(attrs.verb, "get" | "create" | "update" | "patch" | "delete") {
        return no("can only get, create, update, patch, or delete a CSINode");
    }
    if !attrs.subresource.is_empty() {
        return no("cannot authorize CSINode subresources");
    }
    if attrs.verb != "create" && attrs.name != node {
        return no("can only access CSINode with the same name as the requesting node");
    }
    allow()
}

fn node_object(node: &str, attrs: &Attributes<'_>) -> Decision {
    match (attrs.subresource, attrs.verb) {
        // NodeRestriction limits writes to the node's own object.
        ("", "create" | "update" | "patch") | ("status", "update" | "patch") => allow(),
        // By name, so a kubelet can read its Node before registering it.
        ("", "get" | "list" | "watch") => {
            if attrs.name == node {
                allow()
            } else if attrs.name.is_empty() {
                no(format!(
                    "node '{node}' cannot read all nodes, only its own Node object"
                ))
            } else {
                no(format!(
                    "node '{node}' cannot read '{}', only its own Node object",
                    attrs.name
                ))
            }
        }
        _ => no(""),
    }
}

/// The kinds of objects the authorizer relates to nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secret,
    ConfigMap,
    Pvc,
    Pv,
    ServiceAccount,
    Pod,
    ResourceClaim,
    ResourceSlice,
    VolumeAttachment,
}

fn pods_on_node(
    namespace: &str,
    node: &str,
    source: &dyn ObjectSource,
) -> impl Iterator<Item = Arc<Value>> {
    let node = node.to_owned();
    source
        .list("", "pods", namespace)
        .into_iter()
        .filter(move |p| p["spec"]["nodeName"].as_str() == Some(node.as_str()))
}

/// Whether a pod on the node uses the claim `namespace`/`claim`.
fn claim_on_node(namespace: &str, claim: &str, node: &str, source: &dyn ObjectSource) -> bool {
    pods_on_node(namespace, node, source).any(|p| pod_uses_pvc(&p, claim))
}

/// Whether the persistent volume is bound (by its claimRef) to a claim used on the node.
fn pv_on_node(pv: &Value, node: &str, source: &dyn ObjectSource) -> bool {
    let claim = &pv["spec"]["claimRef"];
    match (claim["namespace"].as_str(), claim["name"].as_str()) {
        (Some(ns), Some(name)) if !ns.is_empty() && !name.is_empty() => {
            claim_on_node(ns, name, node, source)
        }
        _ => false,
    }
}

/// Whether the object reaches the node: node <- pod <- secret/configmap/pvc/serviceaccount/
/// resourceclaim, node <- pod <- pvc <- pv (<- secret), node <- volumeattachment,
/// node <- resourceslice.
fn has_path(
    node: &str,
    kind: Kind,
    namespace: &str,
    name: &str,
    source: &dyn ObjectSource,
) -> bool {
    match kind {
        Kind::Secret => {
            pods_on_node(namespace, node, source).any(|p| pod_secret_names(&p, &mut |s| s == name))
                || source.list("", "persistentvolumes", "").iter().any(|pv| {
                    pv_secret_refs(pv, &mut |ns, s| ns == namespace && s == name)
                        && pv_on_node(pv, node, source)
                })
        }
        Kind::ConfigMap => {
            pods_on_node(namespace, node, source).any(|p| pod_uses_configmap(&p, name))
        }
        Kind::Pvc => claim_on_node(namespace, name, node, source),
        Kind::Pv => source
            .get("", "persistentvolumes", "", name)
            .is_some_and(|pv| pv_on_node(&pv, node, source)),
        Kind::ServiceAccount => pods_on_node(namespace, node, source)
            .any(|p| p["spec"]["serviceAccountName"].as_str() == Some(name)),
        Kind::Pod => source
            .get("", "pods", namespace, name)
            .is_some_and(|p| p["spec"]["nodeName"].as_str() == Some(node)),
        Kind::ResourceClaim => {
            pods_on_node(namespace, node, source).any(|p| pod_uses_resource_claim(&p, name))
        }
        Kind::ResourceSlice => source
            .get("resource.k8s.io", "resourceslices", "", name)
            .is_some_and(|s| s["spec"]["nodeName"].as_str() == Some(node)),
        Kind::VolumeAttachment => source
            .get("storage.k8s.io", "volumeattachments", "", name)
            .is_some_and(|va| va["spec"]["nodeName"].as_str() == Some(node)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::source::MemorySource;

    fn node_user(name: &str) -> UserInfo {
        UserInfo::new(
            format!("system:node:{name}"),
            vec![NODES_GROUP.into(), "system:authenticated".into()],
        )
    }

    struct Req<'a> {
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        sub: &'a str,
        ns: &'a str,
        name: &'a str,
    }

    fn req<'a>(verb: &'a str, resource: &'a str, ns: &'a str, name: &'a str) -> Req<'a> {
        Req {
            verb,
            group: "",
            resource,
            sub: "",
            ns,
            name,
        }
    }

    fn decide(u: &UserInfo, r: &Req<'_>, fs: &str, s: &MemorySource) -> Decision {
        let a = Attributes {
            user: u,
            verb: r.verb,
            resource_request: true,
            namespace: r.ns,
            api_group: r.group,
            api_version: "v1",
            resource: r.resource,
            subresource: r.sub,
            name: r.name,
            path: "",
        };
        NodeAuthorizer::new().authorize(&a, &parse_field_selector(fs), s)
    }

    fn cluster() -> MemorySource {
        let mut s = MemorySource::new();
        s.insert(
            "",
            "pods",
            json!({"metadata":{"name":"web","namespace":"app"},"spec":{
                "nodeName":"n1","serviceAccountName":"web-sa",
                "imagePullSecrets":[{"name":"pull"}],
                "initContainers":[{"name":"i","envFrom":[{"configMapRef":{"name":"init-cm"}}]}],
                "containers":[{"name":"c","env":[{"name":"X","valueFrom":{"secretKeyRef":{"name":"env-secret","key":"k"}}}]}],
                "ephemeralContainers":[{"name":"dbg","envFrom":[{"secretRef":{"name":"debug-secret"}}]}],
                "volumes":[
                    {"name":"data","persistentVolumeClaim":{"claimName":"data"}},
                    {"name":"scratch","ephemeral":{"volumeClaimTemplate":{}}},
                    {"name":"cfg","configMap":{"name":"cfg"}},
                    {"name":"proj","projected":{"sources":[{"secret":{"name":"proj-secret"}},{"configMap":{"name":"proj-cm"}}]}},
                    {"name":"csi","csi":{"driver":"d","nodePublishSecretRef":{"name":"csi-secret"}}}
                ]}}),
        );
        s.insert(
            "",
            "pods",
            json!({"metadata":{"name":"other","namespace":"app"},"spec":{"nodeName":"n2",
                "volumes":[{"name":"s","secret":{"secretName":"n2-secret"}}]}}),
        );
        s.insert(
            "",
            "persistentvolumes",
            json!({"metadata":{"name":"pv-data"},"spec":{"claimRef":{"namespace":"app","name":"data"},
                "csi":{"driver":"d","nodeStageSecretRef":{"name":"stage","namespace":"storage"}}}}),
        );
        s.insert(
            "",
            "persistentvolumes",
            json!({"metadata":{"name":"pv-unbound"},"spec":{}}),
        );
        s.insert(
            "storage.k8s.io",
            "volumeattachments",
            json!({"metadata":{"name":"va1"},"spec":{"nodeName":"n1"}}),
        );
        s
    }

    #[test]
    fn non_nodes_get_no_opinion_and_nameless_nodes_are_unknown() {
        let s = cluster();
        let u = UserInfo::new("alice", vec![]);
        assert_eq!(
            decide(&u, &req("get", "secrets", "app", "pull"), "", &s),
            no("")
        );
        let impostor = UserInfo::new("system:node:n1", vec![]);
        assert_eq!(
            decide(&impostor, &req("get", "secrets", "app", "pull"), "", &s),
            no("")
        );
        let nameless = UserInfo::new("system:node:", vec![NODES_GROUP.into()]);
        assert_eq!(
            decide(&nameless, &req("get", "nodes", "", "x"), "", &s),
            no("unknown node for user \"system:node:\"")
        );
    }

    #[test]
    fn node_reads_secrets_and_configmaps_of_its_pods_only() {
        let s = cluster();
        let n1 = node_user("n1");
        for secret in [
            "pull",
            "env-secret",
            "debug-secret",
            "proj-secret",
            "csi-secret",
        ] {
            assert_eq!(
                decide(&n1, &req("get", "secrets", "app", secret), "", &s),
                allow(),
                "{secret}"
            );
        }
        for cm in ["init-cm", "cfg", "proj-cm"] {
            assert_eq!(
                decide(&n1, &req("watch", "configmaps", "app", cm), "", &s),
                allow(),
                "{cm}"
            );
        }
        assert_eq!(
            decide(&n1, &req("get", "secrets", "app", "n2-secret"), "", &s),
            no("no relationship found between node 'n1' and this object")
        );
        assert_eq!(
            decide(&n1, &req("list", "secrets", "app", ""), "", &s),
            no("No Object name found")
        );
        assert_eq!(
            decide(&n1, &req("update", "secrets", "app", "pull"), "", &s),
            no("can only read resources of this type")
        );
        assert_eq!(
            decide(&n1, &req("get", "secrets", "", "pull"), "", &s),
            no("can only read namespaced object of this type")
        );
        // a secret referenced by the bound PV of a claim used on the node
        assert_eq!(
            decide(&n1, &req("get", "secrets", "storage", "stage"), "", &s),
            allow()
        );
        assert!(!decide(
            &node_user("n2"),
            &req("get", "secrets", "storage", "stage"),
            "",
            &s
        )
        .is_allowed());
    }

    #[test]
    fn node_gets_claims_volumes_and_attachments_of_its_pods() {
        let s = cluster();
        let n1 = node_user("n1");
        assert_eq!(
            decide(
                &n1,
                &req("get", "persistentvolumeclaims", "app", "data"),
                "",
                &s
            ),
            allow()
        );
        assert_eq!(
            decide(
                &n1,
                &req("get", "persistentvolumeclaims", "app", "web-scratch"),
                "",
                &s
            ),
            allow()
        );
        assert_eq!(
            decide(
                &n1,
                &req("list", "persistentvolumeclaims", "app", ""),
                "",
                &s
            ),
            no("can only get individual resources of this type")
        );
        assert_eq!(
            decide(&n1, &req("get", "persistentvolumes", "", "pv-data"), "", &s),
            allow()
        );
        assert!(!decide(
            &n1,
            &req("get", "persistentvolumes", "", "pv-unbound"),
            "",
            &s
        )
        .is_allowed());
        let mut status = req("patch", "persistentvolumeclaims", "app", "data");
        status.sub = "status";
        assert_eq!(decide(&n1, &status, "", &s), allow());
        status.verb = "delete";
        assert_eq!(
            decide(&n1, &status, "", &s),
            no("can only get/update/patch this type")
        );
        let mut va = req("get", "volumeattachments", "", "va1");
        va.group = "storage.k8s.io";
        assert_eq!(decide(&n1, &va, "", &s), allow());
        assert!(!decide(&node_user("n2"), &va, "", &s).is_allowed());
    }

    #[test]
    fn node_creates_tokens_only_for_service_accounts_of_its_pods() {
        let s = cluster();
        let n1 = node_user("n1");
        let mut r = req("create", "serviceaccounts", "app", "web-sa");
        r.sub = "token";
        assert_eq!(decide(&n1, &r, "", &s), allow());
        r.name = "other-sa";
        assert_eq!(decide(&n1, &r, "", &s), no_relationship("n1"));
        r.sub = "";
        r.name = "web-sa";
        assert_eq!(
            decide(&n1, &r, "", &s),
            no("can only create token subresource of serviceaccount")
        );
        assert_eq!(
            decide(&n1, &req("get", "serviceaccounts", "app", "web-sa"), "", &s),
            no("can only create tokens for individual service accounts")
        );
    }

    #[test]
    fn leases_and_csinodes_are_limited_to_the_node_name() {
        let s = cluster();
        let n1 = node_user("n1");
        let mut l = req("update", "leases", NODE_LEASE_NAMESPACE, "n1");
        l.group = "coordination.k8s.io";
        assert_eq!(decide(&n1, &l, "", &s), allow());
        l.name = "n2";
        assert!(!decide(&n1, &l, "", &s).is_allowed());
        l.verb = "create";
        l.name = "";
        assert_eq!(decide(&n1, &l, "", &s), allow());
        l.ns = "default";
        assert_eq!(
            decide(&n1, &l, "", &s),
            no("can only access leases in the \"kube-node-lease\" system namespace")
        );
        let mut c = req("patch", "csinodes", "", "n1");
        c.group = "storage.k8s.io";
        assert_eq!(decide(&n1, &c, "", &s), allow());
        c.name = "n2";
        assert!(!decide(&n1, &c, "", &s).is_allowed());
    }

    #[test]
    fn pods_and_nodes_follow_authorize_node_with_selectors() {
        let s = cluster();
        let n1 = node_user("n1");
        assert_eq!(
            decide(&n1, &req("list", "pods", "", ""), "spec.nodeName=n1", &s),
            allow()
        );
        assert_eq!(
            decide(&n1, &req("watch", "pods", "", ""), "spec.nodeName=n2", &s),
            no("can only list/watch pods with spec.nodeName field selector")
        );
        assert_eq!(
            decide(&n1, &req("get", "pods", "app", "web"), "", &s),
            allow()
        );
        assert_eq!(
            decide(&n1, &req("get", "pods", "app", "other"), "", &s),
            no_relationship("n1")
        );
        assert_eq!(
            decide(&n1, &req("create", "pods", "app", ""), "", &s),
            allow()
        );
        let mut st = req("patch", "pods", "app", "web");
        st.sub = "status";
        assert_eq!(decide(&n1, &st, "", &s), allow());
        assert_eq!(decide(&n1, &req("get", "nodes", "", "n1"), "", &s), allow());
        assert_eq!(
            decide(&n1, &req("list", "nodes", "", ""), "", &s),
            no("node 'n1' cannot read all nodes, only its own Node object")
        );
        assert_eq!(
            decide(&n1, &req("get", "nodes", "", "n2"), "", &s),
            no("node 'n1' cannot read 'n2', only its own Node object")
        );
        let mut ns = req("patch", "nodes", "", "n1");
        ns.sub = "status";
        assert_eq!(decide(&n1, &ns, "", &s), allow());
        // without selectors the node rules decide
        let a = Attributes {
            user: &n1,
            verb: "list",
            resource_request: true,
            namespace: "",
            api_group: "",
            api_version: "v1",
            resource: "pods",
            subresource: "",
            name: "",
            path: "",
        };
        assert_eq!(
            NodeAuthorizer::new()
                .with_selectors(false)
                .authorize(&a, &[], &s),
            allow()
        );
    }

    #[test]
    fn other_requests_use_the_node_rules() {
        let s = cluster();
        let n1 = node_user("n1");
        assert_eq!(
            decide(&n1, &req("create", "events", "app", ""), "", &s),
            allow()
        );
        let mut csr = req("create", "certificatesigningrequests", "", "");
        csr.group = "certificates.k8s.io";
        assert_eq!(decide(&n1, &csr, "", &s), allow());
        assert_eq!(
            decide(&n1, &req("list", "services", "", ""), "", &s),
            allow()
        );
        assert_eq!(
            decide(&n1, &req("delete", "services", "app", "x"), "", &s),
            no("")
        );
        let mut deploy = req("list", "deployments", "", "");
        deploy.group = "apps";
        assert_eq!(decide(&n1, &deploy, "", &s), no(""));
    }

    #[test]
    fn field_selectors_parse() {
        assert_eq!(
            parse_field_selector("spec.nodeName==n1, metadata.name!=x,bad"),
            vec![
                FieldRequirement {
                    field: "spec.nodeName".into(),
                    op: FieldOp::Equals,
                    value: "n1".into()
                },
                FieldRequirement {
                    field: "metadata.name".into(),
                    op: FieldOp::NotEquals,
                    value: "x".into()
                },
            ]
        );
    }
}
