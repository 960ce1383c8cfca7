//! The default RBAC policy of upstream v1.33 (`bootstrappolicy`, with v1.33's default feature
//! gates) as JSON objects, the aggregation that fills admin/edit/view, and the reconciliation
//! the apiserver runs at start-up (`pkg/registry/rbac/reconciliation`).

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::rbac::RBAC_GROUP;
use super::rules::PolicyRule;

/// Label put on every default object.
pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
/// Annotation that, set to "false", stops reconciliation from touching an object.
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// The `apiVersion` of RBAC objects.
pub const RBAC_API_VERSION: &str = "rbac.authorization.k8s.io/v1";

const CORE: &str = "";
const APPS: &str = "apps";
const AUTHENTICATION: &str = "authentication.k8s.io";
const AUTHORIZATION: &str = "authorization.k8s.io";
const AUTOSCALING: &str = "autoscaling";
const BATCH: &str = "batch";
const CERTIFICATES: &str = "certificates.k8s.io";
const COORDINATION: &str = "coordination.k8s.io";
const DISCOVERY: &str = "discovery.k8s.io";
const EXTENSIONS: &str = "extensions";
const POLICY: &str = "policy";
const STORAGE: &str = "storage.k8s.io";
const NETWORKING: &str = "networking.k8s.io";
const EVENTS: &str = "events.k8s.io";
const ADMISSION_REGISTRATION: &str = "admissionregistration.k8s.io";
const NODE: &str = "node.k8s.io";

const READ: &[&str] = &["get", "list", "watch"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_UPDATE: &[&str] = &["get", "list", "watch", "update", "patch"];

const KUBE_SYSTEM: &str = "kube-system";
const KUBE_PUBLIC: &str = "kube-public";
const CONTROLLER_PREFIX: &str = "system:controller:";

/// Sorted and deduplicated, as upstream's rule builder stores lists.
fn sorted(list: &[&str]) -> Vec<String> {
    list.iter()
        .map(|s| s.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": sorted(verbs), "apiGroups": sorted(groups), "resources": sorted(resources)})
}

fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Value {
    json!({
        "verbs": sorted(verbs),
        "apiGroups": sorted(groups),
        "resources": sorted(resources),
        "resourceNames": sorted(names),
    })
}

fn urls(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": sorted(verbs), "nonResourceURLs": sorted(urls)})
}

fn events_rule() -> Value {
    rule(&["create", "update", "patch"], &[CORE, EVENTS], &["events"])
}

fn default_metadata(name: &str, namespace: Option<&str>, extra_labels: &[(&str, &str)]) -> Value {
    let mut labels = Map::new();
    labels.insert(BOOTSTRAPPING_LABEL.into(), json!("rbac-defaults"));
    for (k, v) in extra_labels {
        labels.insert((*k).into(), json!(v));
    }
    let mut meta = json!({
        "name": name,
        "labels": labels,
        "annotations": {AUTOUPDATE_ANNOTATION: "true"},
    });
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    meta
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": RBAC_API_VERSION,
        "kind": "ClusterRole",
        "metadata": default_metadata(name, None, &[]),
        "rules": rules,
    })
}

/// A ClusterRole filled by aggregation from roles labelled `aggregate_from`.
fn aggregated_role(name: &str, labels: &[(&str, &str)], aggregate_from: &str) -> Value {
    json!({
        "apiVersion": RBAC_API_VERSION,
        "kind": "ClusterRole",
        "metadata": default_metadata(name, None, labels),
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {aggregate_from: "true"}}]},
        "rules": [],
    })
}

fn labelled_role(name: &str, label: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": RBAC_API_VERSION,
        "kind": "ClusterRole",
        "metadata": default_metadata(name, None, &[(label, "true")]),
        "rules": rules,
    })
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "apiGroup": RBAC_GROUP, "name": name})
}

fn group(name: &str) -> Value {
    json!({"kind": "Group", "apiGroup": RBAC_GROUP, "name": name})
}

fn service_account(namespace: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "namespace": namespace, "name": name})
}

fn cluster_binding(role: &str, subjects: Vec<Value>) -> Value {
    let mut b = json!({
        "apiVersion": RBAC_API_VERSION,
        "kind": "ClusterRoleBinding",
        "metadata": default_metadata(role, None, &[]),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
    });
    if !subjects.is_empty() {
        b["subjects"] = Value::Array(subjects);
    }
    b
}

fn namespaced_role(namespace: &str, name: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": RBAC_API_VERSION,
        "kind": "Role",
        "metadata": default_metadata(name, Some(namespace), &[]),
        "rules": rules,
    })
}

fn role_binding(namespace: &str, name: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": RBAC_API_VERSION,
        "kind": "RoleBinding",
        "metadata": default_metadata(name, Some(namespace), &[]),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": role},
        "subjects": subjects,
    })
}

fn node_rule_values() -> Vec<Value> {
    vec![
        // API access checks; these creates do not mutate.
        rule(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
        rule(
            &["create"],
            &[AUTHORIZATION],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        // Service environment variables.
        rule(READ, &[CORE], &["services"]),
        // Nodes register and update themselves (NodeRestriction limits them to their own).
        rule(&["create", "get", "list", "watch"], &[CORE], &["nodes"]),
        rule(&["update", "patch"], &[CORE], &["nodes/status"]),
        rule(&["update", "patch"], &[CORE], &["nodes"]),
        rule(&["create", "update", "patch"], &[CORE], &["events"]),
        // The Node authorizer narrows pod reads to pods bound to the node.
        rule(READ, &[CORE], &["pods"]),
        // Mirror pods, pod status and evictions (NodeRestriction limits them to own pods).
        rule(&["create", "delete"], &[CORE], &["pods"]),
        rule(&["update", "patch"], &[CORE], &["pods/status"]),
        rule(&["create"], &[CORE], &["pods/eviction"]),
        // Secrets, config maps and volumes of bound pods (narrowed by the Node authorizer).
        rule(
            &["get", "list", "watch"],
            &[CORE],
            &["secrets", "configmaps"],
        ),
        rule(
            &["get"],
            &[CORE],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(&["get"], &[CORE], &["endpoints"]),
        // Kubelet client certificate rotation.
        rule(
            &["create", "get", "list", "watch"],
            &[CERTIFICATES],
            &["certificatesigningrequests"],
        ),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &[COORDINATION],
            &["leases"],
        ),
        rule(&["get"], &[STORAGE], &["volumeattachments"]),
        rule(&["create"], &[CORE], &["serviceaccounts/token"]),
        rule(
            &["get", "update", "patch"],
            &[CORE],
            &["persistentvolumeclaims/status"],
        ),
        rule(&["get", "watch", "list"], &[STORAGE], &["csidrivers"]),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &[STORAGE],
            &["csinodes"],
        ),
        rule(&["get", "list", "watch"], &[NODE], &["runtimeclasses"]),
    ]
}

/// Upstream's `NodeRules()` (the `system:node` role), evaluated by the Node authorizer for
/// requests it does not narrow itself.
pub fn node_rules() -> Vec<PolicyRule> {
    node_rule_values()
        .iter()
        .map(PolicyRule::from_value)
        .collect()
}

fn policy_cluster_roles() -> Vec<Value> {
    vec![
        cluster_role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        cluster_role(
            "system:discovery",
            vec![urls(
                &["get"],
                &[
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/version",
                    "/version/",
                    "/openapi",
                    "/openapi/*",
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                ],
            )],
        ),
        cluster_role(
            "system:monitoring",
            vec![urls(
                &["get"],
                &[
                    "/metrics",
                    "/metrics/slis",
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/livez/*",
                    "/readyz/*",
                    "/healthz/*",
                ],
            )],
        ),
        cluster_role(
            "system:basic-user",
            vec![
                rule(
                    &["create"],
                    &[AUTHORIZATION],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(&["create"], &[AUTHENTICATION], &["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![urls(
                &["get"],
                &["/livez", "/readyz", "/healthz", "/version", "/version/"],
            )],
        ),
        aggregated_role("admin", &[], "rbac.authorization.k8s.io/aggregate-to-admin"),
        aggregated_role(
            "edit",
            &[("rbac.authorization.k8s.io/aggregate-to-admin", "true")],
            "rbac.authorization.k8s.io/aggregate-to-edit",
        ),
        aggregated_role(
            "view",
            &[("rbac.authorization.k8s.io/aggregate-to-edit", "true")],
            "rbac.authorization.k8s.io/aggregate-to-view",
        ),
        labelled_role(
            "system:aggregate-to-admin",
            "rbac.authorization.k8s.io/aggregate-to-admin",
            vec![
                rule(
                    &["create"],
                    &[AUTHORIZATION],
                    &["localsubjectaccessreviews"],
                ),
                rule(READ_WRITE, &[RBAC_GROUP], &["roles", "rolebindings"]),
            ],
        ),
        labelled_role(
            "system:aggregate-to-edit",
            "rbac.authorization.k8s.io/aggregate-to-edit",
            aggregate_to_edit_rules(),
        ),
        labelled_role(
            "system:aggregate-to-view",
            "rbac.authorization.k8s.io/aggregate-to-view",
            aggregate_to_view_rules(),
        ),
        cluster_role(
            "system:heapster",
            vec![
                rule(READ, &[CORE], &["events", "pods", "nodes", "namespaces"]),
                rule(READ, &[EXTENSIONS], &["deployments"]),
            ],
        ),
        cluster_role("system:node", node_rule_values()),
        cluster_role(
            "system:node-problem-detector",
            vec![
                rule(&["get"], &[CORE], &["nodes"]),
                rule(&["patch"], &[CORE], &["nodes/status"]),
                events_rule(),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            vec![rule(
                &["create", "get", "list", "watch"],
                &[CERTIFICATES],
                &["certificatesigningrequests"],
            )],
        ),
        cluster_role(
            "system:auth-delegator",
            vec![
                rule(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
                rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
            ],
        ),
        cluster_role(
            "system:kube-aggregator",
            vec![rule(READ, &[CORE], &["services", "endpoints"])],
        ),
        cluster_role(
            "system:kube-controller-manager",
            vec![
                events_rule(),
                rule(&["create"], &[COORDINATION], &["leases"]),
                named(
                    &["get", "update"],
                    &[COORDINATION],
                    &["leases"],
                    &["kube-controller-manager"],
                ),
                rule(&["create"], &[CORE], &["secrets", "serviceaccounts"]),
                rule(&["delete"], &[CORE], &["secrets"]),
                rule(
                    &["get"],
                    &[CORE],
                    &["namespaces", "secrets", "serviceaccounts", "configmaps"],
                ),
                rule(&["update"], &[CORE], &["secrets", "serviceaccounts"]),
                rule(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
                rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
                rule(&["list", "watch"], &["*"], &["*"]),
                rule(&["create"], &[CORE], &["serviceaccounts/token"]),
            ],
        ),
        cluster_role(
            "system:kube-dns",
            vec![rule(
                &["list", "watch"],
                &[CORE],
                &["endpoints", "services"],
            )],
        ),
        cluster_role(
            "system:persistent-volume-provisioner",
            vec![
                rule(
                    &["get", "list", "watch", "create", "delete"],
                    &[CORE],
                    &["persistentvolumes"],
                ),
                rule(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                rule(READ, &[STORAGE], &["storageclasses"]),
                rule(&["watch"], &[CORE], &["events"]),
                events_rule(),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(
                &["create"],
                &[CERTIFICATES],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(
                &["create"],
                &[CERTIFICATES],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
        cluster_role(
            "system:volume-scheduler",
            vec![
                rule(READ_UPDATE, &[CORE], &["persistentvolumes"]),
                rule(READ, &[STORAGE], &["storageclasses"]),
                rule(READ_UPDATE, &[CORE], &["persistentvolumeclaims"]),
            ],
        ),
        approver("legacy-unknown-approver", "kubernetes.io/legacy-unknown"),
        approver("kubelet-serving-approver", "kubernetes.io/kubelet-serving"),
        approver(
            "kube-apiserver-client-approver",
            "kubernetes.io/kube-apiserver-client",
        ),
        approver(
            "kube-apiserver-client-kubelet-approver",
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
        // Trailing-slash forms too, for clients generated from older OpenAPI documents.
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![urls(
                &["get"],
                &[
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
            )],
        ),
        cluster_role(
            "system:kubelet-api-admin",
            vec![
                rule(&["get", "list", "watch"], &[CORE], &["nodes"]),
                rule(&["proxy"], &[CORE], &["nodes"]),
                rule(
                    &["*"],
                    &[CORE],
                    &["nodes/proxy", "nodes/metrics", "nodes/stats", "nodes/log"],
                ),
                // KubeletFineGrainedAuthz is beta and on by default in v1.33.
                rule(
                    &["*"],
                    &[CORE],
                    &["nodes/pods", "nodes/healthz", "nodes/configz"],
                ),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            vec![
                rule(&["list", "watch"], &[CORE], &["services", "endpoints"]),
                rule(&["get", "list", "watch"], &[CORE], &["nodes"]),
                events_rule(),
                // MultiCIDRServiceAllocator is GA in v1.33.
                rule(&["list", "watch"], &[NETWORKING], &["servicecidrs"]),
                rule(&["list", "watch"], &[DISCOVERY], &["endpointslices"]),
            ],
        ),
        cluster_role("system:kube-scheduler", kube_scheduler_rules()),
    ]
}

fn approver(suffix: &str, signer: &str) -> Value {
    cluster_role(
        &format!("system:certificates.k8s.io:{suffix}"),
        vec![named(
            &["approve"],
            &[CERTIFICATES],
            &["signers"],
            &[signer],
        )],
    )
}

fn aggregate_to_edit_rules() -> Vec<Value> {
    vec![
        // Read on escalating resources.
        rule(
            READ,
            &[CORE],
            &[
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
                "secrets",
                "services/proxy",
            ],
        ),
        rule(&["impersonate"], &[CORE], &["serviceaccounts"]),
        rule(
            WRITE,
            &[CORE],
            &[
                "pods",
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
            ],
        ),
        rule(&["create"], &[CORE], &["pods/eviction"]),
        rule(
            WRITE,
            &[CORE],
            &[
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ],
        ),
        rule(&["create"], &[CORE], &["serviceaccounts/token"]),
        rule(
            WRITE,
            &[APPS],
            &[
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "replicasets",
                "replicasets/scale",
            ],
        ),
        rule(WRITE, &[AUTOSCALING], &["horizontalpodautoscalers"]),
        rule(WRITE, &[BATCH], &["jobs", "cronjobs"]),
        rule(
            WRITE,
            &[EXTENSIONS],
            &[
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "ingresses",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        rule(WRITE, &[POLICY], &["poddisruptionbudgets"]),
        rule(WRITE, &[NETWORKING], &["networkpolicies", "ingresses"]),
        rule(READ_WRITE, &[COORDINATION], &["leases"]),
    ]
}

fn aggregate_to_view_rules() -> Vec<Value> {
    vec![
        rule(
            READ,
            &[CORE],
            &[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ],
        ),
        rule(
            READ,
            &[CORE],
            &[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ],
        ),
        // Reading namespaces at namespace scope reads *this* namespace.
        rule(READ, &[CORE], &["namespaces"]),
        rule(READ, &[DISCOVERY], &["endpointslices"]),
        rule(
            READ,
            &[APPS],
            &[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/status",
                "statefulsets/scale",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/status",
                "deployments/scale",
                "replicasets",
                "replicasets/status",
                "replicasets/scale",
            ],
        ),
        rule(
            READ,
            &[AUTOSCALING],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &[BATCH],
            &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
        ),
        rule(
            READ,
            &[EXTENSIONS],
            &[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        rule(
            READ,
            &[POLICY],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            READ,
            &[NETWORKING],
            &["networkpolicies", "ingresses", "ingresses/status"],
        ),
    ]
}

fn kube_scheduler_rules() -> Vec<Value> {
    vec![
        events_rule(),
        // Leader election.
        rule(&["create"], &[COORDINATION], &["leases"]),
        named(
            &["get", "update", "list", "watch"],
            &[COORDINATION],
            &["leases"],
            &["kube-scheduler"],
        ),
        rule(READ_WRITE, &[COORDINATION], &["leasecandidates"]),
        // Fundamental resources.
        rule(READ, &[CORE], &["nodes"]),
        rule(&["get", "list", "watch", "delete"], &[CORE], &["pods"]),
        rule(&["create"], &[CORE], &["pods/binding", "bindings"]),
        rule(&["patch", "update"], &[CORE], &["pods/status"]),
        // Things that select pods.
        rule(READ, &[CORE], &["services", "replicationcontrollers"]),
        rule(READ, &[APPS, EXTENSIONS], &["replicasets"]),
        rule(READ, &[APPS], &["statefulsets"]),
        // Things that pods use or that apply to them.
        rule(READ, &[POLICY], &["poddisruptionbudgets"]),
        rule(
            READ,
            &[CORE],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(&["create"], &[AUTHENTICATION], &["tokenreviews"]),
        rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
        // Volume limits.
        rule(READ, &[STORAGE], &["csinodes"]),
        rule(
            &["get", "list", "watch"],
            &[STORAGE],
            &["volumeattachments"],
        ),
        // namespaceSelector in pod affinity.
        rule(READ, &[CORE], &["namespaces"]),
        rule(READ, &[STORAGE], &["csidrivers"]),
        rule(READ, &[STORAGE], &["csistoragecapacities"]),
    ]
}

/// The per-controller roles of the kube-controller-manager (`system:controller:<name>`), each
/// bound to the service account `kube-system/<name>`.
fn controller_roles() -> Vec<(&'static str, Vec<Value>)> {
    let ev = events_rule;
    let rw_revisions = &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    vec![
        (
            "attachdetach-controller",
            vec![
                rule(
                    &["list", "watch"],
                    &[CORE],
                    &["persistentvolumes", "persistentvolumeclaims"],
                ),
                rule(&["get", "list", "watch"], &[CORE], &["nodes"]),
                rule(&["patch", "update"], &[CORE], &["nodes/status"]),
                rule(&["list", "watch"], &[CORE], &["pods"]),
                ev(),
                rule(
                    &["get", "create", "delete", "list", "watch"],
                    &[STORAGE],
                    &["volumeattachments"],
                ),
                rule(&["get", "watch", "list"], &[STORAGE], &["csidrivers"]),
                rule(&["get", "watch", "list"], &[STORAGE], &["csinodes"]),
            ],
        ),
        (
            "certificate-controller",
            vec![
                rule(
                    &["get", "list", "watch", "delete"],
                    &[CERTIFICATES],
                    &["certificatesigningrequests"],
                ),
                rule(
                    &["update"],
                    &[CERTIFICATES],
                    &[
                        "certificatesigningrequests/status",
                        "certificatesigningrequests/approval",
                    ],
                ),
                named(
                    &["approve"],
                    &[CERTIFICATES],
                    &["signers"],
                    &["kubernetes.io/kube-apiserver-client-kubelet"],
                ),
                named(
                    &["sign"],
                    &[CERTIFICATES],
                    &["signers"],
                    &[
                        "kubernetes.io/legacy-unknown",
                        "kubernetes.io/kube-apiserver-client",
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                    ],
                ),
                rule(&["create"], &[AUTHORIZATION], &["subjectaccessreviews"]),
                ev(),
            ],
        ),
        (
            "clusterrole-aggregation-controller",
            // Must be able to write any rule into a ClusterRole.
            vec![rule(
                &["escalate", "get", "list", "watch", "update", "patch"],
                &[RBAC_GROUP],
                &["clusterroles"],
            )],
        ),
        (
            "cronjob-controller",
            vec![
                rule(&["get", "list", "watch", "update"], &[BATCH], &["cronjobs"]),
                rule(
                    &[
                        "get", "list", "watch", "create", "update", "delete", "patch",
                    ],
                    &[BATCH],
                    &["jobs"],
                ),
                rule(&["update"], &[BATCH], &["cronjobs/status"]),
                rule(&["update"], &[BATCH], &["cronjobs/finalizers"]),
                rule(&["list", "watch", "delete"], &[CORE], &["pods"]),
                ev(),
            ],
        ),
        (
            "daemon-set-controller",
            vec![
                rule(READ, &[EXTENSIONS, APPS], &["daemonsets"]),
                rule(&["update"], &[EXTENSIONS, APPS], &["daemonsets/status"]),
                rule(&["update"], &[EXTENSIONS, APPS], &["daemonsets/finalizers"]),
                rule(&["list", "watch"], &[CORE], &["nodes"]),
                rule(
                    &["list", "watch", "create", "delete", "patch"],
                    &[CORE],
                    &["pods"],
                ),
                rule(&["create"], &[CORE], &["pods/binding"]),
                rule(rw_revisions, &[APPS], &["controllerrevisions"]),
                ev(),
            ],
        ),
        (
            "deployment-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &[EXTENSIONS, APPS],
                    &["deployments"],
                ),
                rule(&["update"], &[EXTENSIONS, APPS], &["deployments/status"]),
                rule(
                    &["update"],
                    &[EXTENSIONS, APPS],
                    &["deployments/finalizers"],
                ),
                rule(
                    &[
                        "get", "list", "watch", "create", "update", "patch", "delete",
                    ],
                    &[APPS, EXTENSIONS],
                    &["replicasets"],
                ),
                rule(&["get", "list", "watch", "update"], &[CORE], &["pods"]),
                ev(),
            ],
        ),
        (
            "disruption-controller",
            vec![
                rule(READ, &[EXTENSIONS, APPS], &["deployments"]),
                rule(READ, &[APPS, EXTENSIONS], &["replicasets"]),
                rule(READ, &[CORE], &["replicationcontrollers"]),
                rule(READ, &[POLICY], &["poddisruptionbudgets"]),
                rule(READ, &[APPS], &["statefulsets"]),
                rule(&["update"], &[POLICY], &["poddisruptionbudgets/status"]),
                rule(&["patch", "update"], &[CORE], &["pods/status"]),
                rule(&["get"], &["*"], &["*/scale"]),
                ev(),
            ],
        ),
        (
            "endpoint-controller",
            vec![
                rule(READ, &[CORE], &["services", "pods"]),
                rule(
                    &["get", "list", "watch", "create", "update", "delete"],
                    &[CORE],
                    &["endpoints"],
                ),
                rule(&["create"], &[CORE], &["endpoints/restricted"]),
                ev(),
            ],
        ),
        (
            "endpointslice-controller",
            vec![
                rule(READ, &[CORE], &["services", "pods", "nodes"]),
                // Owner references with blockOwnerDeletion need the service's finalizers.
                rule(&["update"], &[CORE], &["services/finalizers"]),
                rule(
                    &["get", "list", "watch", "create", "update", "delete"],
                    &[DISCOVERY],
                    &["endpointslices"],
                ),
                ev(),
            ],
        ),
        (
            "endpointslicemirroring-controller",
            vec![
                rule(READ, &[CORE], &["services", "endpoints"]),
                rule(&["update"], &[CORE], &["services/finalizers"]),
                rule(&["update"], &[CORE], &["endpoints/finalizers"]),
                rule(
                    &["get", "list", "watch", "create", "update", "delete"],
                    &[DISCOVERY],
                    &["endpointslices"],
                ),
                ev(),
            ],
        ),
        (
            "ephemeral-volume-controller",
            vec![
                rule(READ, &[CORE], &["pods"]),
                rule(&["update"], &[CORE], &["pods/finalizers"]),
                rule(
                    &["get", "list", "watch", "create"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                ev(),
            ],
        ),
        (
            "expand-controller",
            vec![
                rule(READ_UPDATE, &[CORE], &["persistentvolumes"]),
                rule(
                    &["update", "patch"],
                    &[CORE],
                    &["persistentvolumeclaims/status"],
                ),
                rule(READ, &[CORE], &["persistentvolumeclaims"]),
                ev(),
                rule(&["get"], &[CORE], &["services"]),
            ],
        ),
        (
            "generic-garbage-collector",
            vec![
                rule(
                    &["get", "list", "watch", "patch", "update", "delete"],
                    &["*"],
                    &["*"],
                ),
                ev(),
            ],
        ),
        (
            "horizontal-pod-autoscaler",
            vec![
                rule(READ, &[AUTOSCALING], &["horizontalpodautoscalers"]),
                rule(
                    &["update"],
                    &[AUTOSCALING],
                    &["horizontalpodautoscalers/status"],
                ),
                rule(&["get", "update"], &["*"], &["*/scale"]),
                rule(&["list", "watch"], &[CORE], &["pods"]),
                // Resource, custom and external metrics.
                rule(&["list", "watch"], &["metrics.k8s.io"], &["pods"]),
                rule(READ, &["custom.metrics.k8s.io"], &["*"]),
                rule(READ, &["external.metrics.k8s.io"], &["*"]),
                ev(),
            ],
        ),
        (
            "job-controller",
            vec![
                rule(READ_UPDATE, &[BATCH], &["jobs"]),
                rule(&["update"], &[BATCH], &["jobs/status"]),
                rule(&["update"], &[BATCH], &["jobs/finalizers"]),
                rule(
                    &["list", "watch", "create", "delete", "patch"],
                    &[CORE],
                    &["pods"],
                ),
                ev(),
            ],
        ),
        (
            "legacy-service-account-token-cleaner",
            vec![
                named(
                    &["get"],
                    &[CORE],
                    &["configmaps"],
                    &["kube-apiserver-legacy-service-account-token-tracking"],
                ),
                rule(&["delete", "patch"], &[CORE], &["secrets"]),
            ],
        ),
        (
            "namespace-controller",
            vec![
                rule(
                    &["get", "list", "watch", "delete"],
                    &[CORE],
                    &["namespaces"],
                ),
                rule(
                    &["update"],
                    &[CORE],
                    &["namespaces/finalize", "namespaces/status"],
                ),
                rule(
                    &["get", "list", "watch", "delete", "deletecollection"],
                    &["*"],
                    &["*"],
                ),
            ],
        ),
        (
            "node-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update", "delete", "patch"],
                    &[CORE],
                    &["nodes"],
                ),
                rule(&["patch", "update"], &[CORE], &["nodes/status"]),
                // Marking and deleting pods of lost nodes.
                rule(&["patch", "update"], &[CORE], &["pods/status"]),
                rule(&["get", "list", "watch", "delete"], &[CORE], &["pods"]),
                ev(),
            ],
        ),
        (
            "persistent-volume-binder",
            vec![
                rule(
                    &["get", "list", "watch", "update", "create", "delete"],
                    &[CORE],
                    &["persistentvolumes"],
                ),
                rule(&["update"], &[CORE], &["persistentvolumes/status"]),
                rule(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                rule(&["update"], &[CORE], &["persistentvolumeclaims/status"]),
                rule(
                    &["list", "watch", "get", "create", "delete"],
                    &[CORE],
                    &["pods"],
                ),
                rule(READ, &[STORAGE], &["storageclasses"]),
                rule(&["list", "watch"], &[CORE], &["nodes"]),
                ev(),
                // Watching provisioning events.
                rule(&["watch"], &[CORE], &["events"]),
                rule(&["get"], &[CORE], &["services"]),
            ],
        ),
        (
            "pod-garbage-collector",
            vec![
                rule(&["list", "watch", "delete"], &[CORE], &["pods"]),
                rule(&["get", "list", "watch"], &[CORE], &["nodes"]),
                rule(&["patch"], &[CORE], &["pods/status"]),
            ],
        ),
        (
            "pv-protection-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["persistentvolumes"],
                ),
                ev(),
            ],
        ),
        (
            "pvc-protection-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                rule(READ, &[CORE], &["pods"]),
                ev(),
            ],
        ),
        (
            "replicaset-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &[APPS, EXTENSIONS],
                    &["replicasets"],
                ),
                rule(&["update"], &[APPS, EXTENSIONS], &["replicasets/status"]),
                rule(
                    &["update"],
                    &[APPS, EXTENSIONS],
                    &["replicasets/finalizers"],
                ),
                rule(
                    &["list", "watch", "patch", "create", "delete"],
                    &[CORE],
                    &["pods"],
                ),
                ev(),
            ],
        ),
        (
            "replication-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["replicationcontrollers"],
                ),
                rule(&["update"], &[CORE], &["replicationcontrollers/status"]),
                rule(&["update"], &[CORE], &["replicationcontrollers/finalizers"]),
                rule(
                    &["list", "watch", "patch", "create", "delete"],
                    &[CORE],
                    &["pods"],
                ),
                ev(),
            ],
        ),
        (
            "resourcequota-controller",
            vec![
                // Quota usage of every resource.
                rule(&["list", "watch"], &["*"], &["*"]),
                rule(&["update"], &[CORE], &["resourcequotas/status"]),
                ev(),
            ],
        ),
        (
            "root-ca-cert-publisher",
            vec![rule(&["create", "update"], &[CORE], &["configmaps"]), ev()],
        ),
        (
            "route-controller",
            vec![
                rule(&["list", "watch"], &[CORE], &["nodes"]),
                rule(&["patch"], &[CORE], &["nodes/status"]),
                ev(),
            ],
        ),
        (
            "selinux-warning-controller",
            vec![
                ev(),
                rule(READ, &[CORE], &["persistentvolumes"]),
                rule(READ, &[CORE], &["persistentvolumeclaims"]),
                rule(READ, &[CORE], &["pods"]),
                rule(READ, &[STORAGE], &["csidrivers"]),
            ],
        ),
        (
            "service-account-controller",
            vec![rule(&["create"], &[CORE], &["serviceaccounts"]), ev()],
        ),
        (
            "service-cidrs-controller",
            vec![
                rule(READ_UPDATE, &[NETWORKING], &["servicecidrs"]),
                rule(
                    &["patch", "update"],
                    &[NETWORKING],
                    &["servicecidrs/finalizers"],
                ),
                rule(
                    &["patch", "update"],
                    &[NETWORKING],
                    &["servicecidrs/status"],
                ),
                rule(READ, &[NETWORKING], &["ipaddresses"]),
                ev(),
            ],
        ),
        (
            "service-controller",
            vec![
                rule(READ, &[CORE], &["services"]),
                rule(&["patch", "update"], &[CORE], &["services/status"]),
                rule(&["list", "watch"], &[CORE], &["nodes"]),
                ev(),
            ],
        ),
        (
            // The taint-based evictions, split from node-lifecycle since v1.29.
            "taint-eviction-controller",
            vec![
                rule(&["patch"], &[CORE], &["pods/status"]),
                rule(&["list", "get", "delete"], &[CORE], &["pods"]),
                ev(),
            ],
        ),
        (
            "statefulset-controller",
            vec![
                rule(&["list", "watch"], &[CORE], &["pods"]),
                rule(READ, &[APPS], &["statefulsets"]),
                rule(&["update"], &[APPS], &["statefulsets/status"]),
                rule(&["update"], &[APPS], &["statefulsets/finalizers"]),
                rule(
                    &["get", "create", "delete", "update", "patch"],
                    &[CORE],
                    &["pods"],
                ),
                rule(rw_revisions, &[APPS], &["controllerrevisions"]),
                rule(
                    &["get", "create", "list", "watch"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                ev(),
                // PVC retention (StatefulSetAutoDeletePVC).
                rule(&["update", "delete"], &[CORE], &["persistentvolumeclaims"]),
                rule(&["update"], &[CORE], &["pods/finalizers"]),
            ],
        ),
        (
            "ttl-after-finished-controller",
            vec![
                rule(&["get", "list", "watch", "delete"], &[BATCH], &["jobs"]),
                ev(),
            ],
        ),
        (
            "ttl-controller",
            vec![
                rule(&["update", "patch", "list", "watch"], &[CORE], &["nodes"]),
                ev(),
            ],
        ),
        (
            "validatingadmissionpolicy-status-controller",
            vec![
                rule(
                    READ,
                    &[ADMISSION_REGISTRATION],
                    &["validatingadmissionpolicies"],
                ),
                rule(
                    &["get", "patch", "update"],
                    &[ADMISSION_REGISTRATION],
                    &["validatingadmissionpolicies/status"],
                ),
                ev(),
            ],
        ),
    ]
}

fn policy_cluster_role_bindings() -> Vec<Value> {
    vec![
        cluster_binding("cluster-admin", vec![group("system:masters")]),
        cluster_binding("system:monitoring", vec![group("system:monitoring")]),
        cluster_binding("system:discovery", vec![group("system:authenticated")]),
        cluster_binding("system:basic-user", vec![group("system:authenticated")]),
        cluster_binding(
            "system:public-info-viewer",
            vec![
                group("system:authenticated"),
                group("system:unauthenticated"),
            ],
        ),
        cluster_binding("system:node-proxier", vec![user("system:kube-proxy")]),
        cluster_binding(
            "system:kube-controller-manager",
            vec![user("system:kube-controller-manager")],
        ),
        cluster_binding(
            "system:kube-dns",
            vec![service_account(KUBE_SYSTEM, "kube-dns")],
        ),
        cluster_binding("system:kube-scheduler", vec![user("system:kube-scheduler")]),
        cluster_binding(
            "system:volume-scheduler",
            vec![user("system:kube-scheduler")],
        ),
        // Kept without subjects since the Node authorizer replaced it, so that reconciliation
        // with subject removal can empty old clusters' bindings.
        cluster_binding("system:node", vec![]),
        cluster_binding(
            "system:service-account-issuer-discovery",
            vec![group("system:serviceaccounts")],
        ),
    ]
}

/// kubeadm's binding of cluster-admin to the `kubeadm:cluster-admins` group (what its
/// admin.conf user belongs to). kubeadm creates it plainly, without the bootstrapping label.
pub fn kubeadm_cluster_admins_binding() -> Value {
    json!({
        "apiVersion": RBAC_API_VERSION,
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubeadm:cluster-admins"},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [group("kubeadm:cluster-admins")],
    })
}

fn namespace_roles() -> Vec<Value> {
    let leader_locking = || {
        vec![
            rule(
                &["create", "get", "list", "update", "watch"],
                &[COORDINATION],
                &["leases"],
            ),
            rule(
                &["create", "get", "list", "update", "watch"],
                &[COORDINATION],
                &["leasecandidates"],
            ),
        ]
    };
    vec![
        namespaced_role(
            KUBE_PUBLIC,
            "system:controller:bootstrap-signer",
            vec![
                rule(READ, &[CORE], &["configmaps"]),
                named(&["update"], &[CORE], &["configmaps"], &["cluster-info"]),
                events_rule(),
            ],
        ),
        namespaced_role(
            KUBE_SYSTEM,
            "extension-apiserver-authentication-reader",
            vec![named(
                READ,
                &[CORE],
                &["configmaps"],
                &["extension-apiserver-authentication"],
            )],
        ),
        namespaced_role(
            KUBE_SYSTEM,
            "system::leader-locking-kube-controller-manager",
            leader_locking(),
        ),
        namespaced_role(
            KUBE_SYSTEM,
            "system::leader-locking-kube-scheduler",
            leader_locking(),
        ),
        namespaced_role(
            KUBE_SYSTEM,
            "system:controller:bootstrap-signer",
            vec![rule(READ, &[CORE], &["secrets"])],
        ),
        namespaced_role(
            KUBE_SYSTEM,
            "system:controller:cloud-provider",
            vec![rule(
                &["create", "get", "list", "watch"],
                &[CORE],
                &["configmaps"],
            )],
        ),
        namespaced_role(
            KUBE_SYSTEM,
            "system:controller:token-cleaner",
            vec![
                rule(&["get", "list", "watch", "delete"], &[CORE], &["secrets"]),
                events_rule(),
            ],
        ),
    ]
}

fn namespace_role_bindings() -> Vec<Value> {
    let same = |ns: &str, name: &str, subjects| role_binding(ns, name, name, subjects);
    vec![
        same(
            KUBE_PUBLIC,
            "system:controller:bootstrap-signer",
            vec![service_account(KUBE_SYSTEM, "bootstrap-signer")],
        ),
        role_binding(
            KUBE_SYSTEM,
            "system::extension-apiserver-authentication-reader",
            "extension-apiserver-authentication-reader",
            vec![
                user("system:kube-controller-manager"),
                user("system:kube-scheduler"),
            ],
        ),
        same(
            KUBE_SYSTEM,
            "system::leader-locking-kube-controller-manager",
            vec![
                user("system:kube-controller-manager"),
                service_account(KUBE_SYSTEM, "kube-controller-manager"),
                service_account(KUBE_SYSTEM, "leader-election-controller"),
            ],
        ),
        same(
            KUBE_SYSTEM,
            "system::leader-locking-kube-scheduler",
            vec![
                user("system:kube-scheduler"),
                service_account(KUBE_SYSTEM, "kube-scheduler"),
            ],
        ),
        same(
            KUBE_SYSTEM,
            "system:controller:bootstrap-signer",
            vec![service_account(KUBE_SYSTEM, "bootstrap-signer")],
        ),
        same(
            KUBE_SYSTEM,
            "system:controller:cloud-provider",
            vec![service_account(KUBE_SYSTEM, "cloud-provider")],
        ),
        same(
            KUBE_SYSTEM,
            "system:controller:token-cleaner",
            vec![service_account(KUBE_SYSTEM, "token-cleaner")],
        ),
    ]
}

/// The default policy objects, in the order the apiserver writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultPolicy {
    /// ClusterRoles, controller roles included.
    pub cluster_roles: Vec<Value>,
    /// ClusterRoleBindings, controller bindings and kubeadm's included.
    pub cluster_role_bindings: Vec<Value>,
    /// Roles in kube-system and kube-public.
    pub roles: Vec<Value>,
    /// RoleBindings in kube-system and kube-public.
    pub role_bindings: Vec<Value>,
}

impl DefaultPolicy {
    /// Every object, cluster roles first, then their bindings, roles and role bindings.
    pub fn all(&self) -> impl Iterator<Item = &Value> {
        self.cluster_roles
            .iter()
            .chain(&self.cluster_role_bindings)
            .chain(&self.roles)
            .chain(&self.role_bindings)
    }
}

/// Upstream v1.33's default ClusterRoles (policy and controller roles), ClusterRoleBindings
/// (including kubeadm's `kubeadm:cluster-admins`), Roles and RoleBindings. admin, edit and view
/// carry their aggregationRule and already hold the aggregated rules, so they grant access
/// before any aggregation controller runs.
pub fn default_policy() -> DefaultPolicy {
    let mut cluster_roles = policy_cluster_roles();
    let mut cluster_role_bindings = policy_cluster_role_bindings();
    for (name, rules) in controller_roles() {
        let full = format!("{CONTROLLER_PREFIX}{name}");
        cluster_roles.push(cluster_role(&full, rules));
        cluster_role_bindings.push(cluster_binding(
            &full,
            vec![service_account(KUBE_SYSTEM, name)],
        ));
    }
    cluster_role_bindings.push(kubeadm_cluster_admins_binding());
    aggregate_cluster_roles(&mut cluster_roles);
    DefaultPolicy {
        cluster_roles,
        cluster_role_bindings,
        roles: namespace_roles(),
        role_bindings: namespace_role_bindings(),
    }
}

/// Whether `labels` (a JSON object) satisfy a label selector with `matchLabels` and
/// `matchExpressions` (In, NotIn, Exists, DoesNotExist).
pub fn selector_matches(selector: &Value, labels: &Value) -> bool {
    if let Some(ml) = selector["matchLabels"].as_object() {
        if !ml.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let exprs = selector["matchExpressions"].as_array();
    exprs.map(|a| a.as_slice()).unwrap_or(&[]).iter().all(|e| {
        let key = e["key"].as_str().unwrap_or("");
        let value = labels.get(key).and_then(Value::as_str);
        let in_values = |v: &str| {
            e["values"]
                .as_array()
                .is_some_and(|vs| vs.iter().any(|x| x.as_str() == Some(v)))
        };
        match e["operator"].as_str().unwrap_or("") {
            "In" => value.is_some_and(in_values),
            "NotIn" => !value.is_some_and(in_values),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

/// The rules an aggregated ClusterRole gets from the roles its selectors pick, as upstream's
/// clusterrole-aggregation controller computes them: roles sorted by name, each rule once.
pub fn aggregated_rules(role: &Value, all: &[Value]) -> Option<Vec<Value>> {
    let selectors = role["aggregationRule"]["clusterRoleSelectors"].as_array()?;
    let own_name = role["metadata"]["name"].as_str().unwrap_or("");
    let mut out: Vec<Value> = Vec::new();
    let mut seen: Vec<PolicyRule> = Vec::new();
    for selector in selectors {
        let mut picked: Vec<&Value> = all
            .iter()
            .filter(|r| r["metadata"]["name"].as_str().unwrap_or("") != own_name)
            .filter(|r| selector_matches(selector, &r["metadata"]["labels"]))
            .collect();
        picked.sort_by_key(|r| r["metadata"]["name"].as_str().unwrap_or("").to_owned());
        for r in picked {
            for rule in r["rules"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let parsed = PolicyRule::from_value(rule);
                if !seen.contains(&parsed) {
                    seen.push(parsed);
                    out.push(rule.clone());
                }
            }
        }
    }
    Some(out)
}

/// Fills the rules of every aggregated role in `roles` until nothing changes (admin takes
/// edit's rules once edit has view's).
pub fn aggregate_cluster_roles(roles: &mut [Value]) {
    for _ in 0..=roles.len() {
        let mut changed = false;
        for i in 0..roles.len() {
            let Some(rules) = aggregated_rules(&roles[i], roles) else {
                continue;
            };
            let rules = Value::Array(rules);
            if roles[i]["rules"] != rules {
                roles[i]["rules"] = rules;
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// What reconciliation asks the caller to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Reconciled {
    /// The object does not exist: create it.
    Create(Value),
    /// Update the stored object to this (it keeps the stored metadata, resourceVersion
    /// included).
    Update(Value),
    /// A binding whose roleRef differs: delete the stored one and create this.
    Recreate(Value),
}

fn is_protected(existing: &Value) -> bool {
    existing["metadata"]["annotations"][AUTOUPDATE_ANNOTATION].as_str() == Some("false")
}

/// `merge(expected, existing)`: the union, with the stored values winning.
fn merge_map(existing: &Value, expected: &Value) -> Value {
    let mut out = expected.as_object().cloned().unwrap_or_default();
    if let Some(e) = existing.as_object() {
        for (k, v) in e {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// Adds expected labels and annotations to the result; true when that changed anything.
fn merge_metadata(result: &mut Value, existing: &Value, expected: &Value) -> bool {
    let mut changed = false;
    for key in ["annotations", "labels"] {
        let merged = merge_map(&existing["metadata"][key], &expected["metadata"][key]);
        let before = existing["metadata"]
            .get(key)
            .cloned()
            .unwrap_or(Value::Null);
        let empty = merged.as_object().is_some_and(|m| m.is_empty());
        if merged != before && !(empty && before.is_null()) {
            result["metadata"][key] = merged;
            changed = true;
        }
    }
    changed
}

fn reconcile_role(expected: &Value, existing: &Value) -> Option<Value> {
    let mut result = existing.clone();
    let mut changed = merge_metadata(&mut result, existing, expected);
    let existing_rules = PolicyRule::list_from(existing);
    // Aggregated roles get their rules from the aggregation controller; the rules filled in
    // at creation are not re-added to a stored aggregated role.
    let expected_rules = if expected.get("aggregationRule").is_some() {
        Vec::new()
    } else {
        PolicyRule::list_from(expected)
    };
    let (_, missing) = super::rules::covers(&existing_rules, &expected_rules);
    if !missing.is_empty() {
        let rules = result["rules"].as_array().cloned().unwrap_or_default();
        let mut rules = rules;
        rules.extend(missing.iter().map(PolicyRule::to_value));
        result["rules"] = Value::Array(rules);
        changed = true;
    }
    let want_sel = expected["aggregationRule"]["clusterRoleSelectors"].as_array();
    let have_sel = existing["aggregationRule"]["clusterRoleSelectors"].as_array();
    match (want_sel, existing.get("aggregationRule")) {
        (None, Some(_)) if expected.get("aggregationRule").is_none() => {
            // Not expected to be aggregated at all: drop the stored aggregation.
            if let Some(m) = result.as_object_mut() {
                m.remove("aggregationRule");
            }
            changed = true;
        }
        (Some(want), _) => {
            let have = have_sel.cloned().unwrap_or_default();
            let missing: Vec<Value> = want.iter().filter(|s| !have.contains(s)).cloned().collect();
            if !missing.is_empty() {
                let mut all = have;
                all.extend(missing);
                result["aggregationRule"] = json!({"clusterRoleSelectors": all});
                changed = true;
            }
        }
        _ => {}
    }
    changed.then_some(result)
}

fn reconcile_binding(expected: &Value, existing: &Value) -> Option<Reconciled> {
    if expected["roleRef"] != existing["roleRef"] {
        return Some(Reconciled::Recreate(expected.clone()));
    }
    let mut result = existing.clone();
    let mut changed = merge_metadata(&mut result, existing, expected);
    let have = existing["subjects"].as_array().cloned().unwrap_or_default();
    let missing: Vec<Value> = expected["subjects"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter(|s| !have.contains(s))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let mut all = have;
        all.extend(missing);
        result["subjects"] = Value::Array(all);
        changed = true;
    }
    changed.then_some(Reconciled::Update(result))
}

/// Start-up reconciliation of one default object against the stored one, as upstream's
/// (union mode: nothing is ever removed): create it if missing; leave it alone if annotated
/// `rbac.authorization.kubernetes.io/autoupdate: "false"`; otherwise add missing labels,
/// annotations, rules, aggregation selectors or subjects. A binding whose roleRef differs is
/// recreated. `None` when nothing needs writing.
pub fn reconcile(expected: &Value, existing: Option<&Value>) -> Option<Reconciled> {
    let Some(existing) = existing else {
        return Some(Reconciled::Create(expected.clone()));
    };
    if is_protected(existing) {
        return None;
    }
    match expected["kind"].as_str().unwrap_or("") {
        "ClusterRole" | "Role" => reconcile_role(expected, existing).map(Reconciled::Update),
        "ClusterRoleBinding" | "RoleBinding" => reconcile_binding(expected, existing),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::UserInfo;
    use crate::authz::rbac::RbacAuthorizer;
    use crate::authz::Attributes;
    use crate::source::MemorySource;

    fn find<'a>(list: &'a [Value], name: &str) -> &'a Value {
        list.iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    fn load(policy: &DefaultPolicy) -> MemorySource {
        let mut s = MemorySource::new();
        for o in policy.all() {
            let resource = match o["kind"].as_str().unwrap() {
                "ClusterRole" => "clusterroles",
                "ClusterRoleBinding" => "clusterrolebindings",
                "Role" => "roles",
                _ => "rolebindings",
            };
            s.insert(RBAC_GROUP, resource, o.clone());
        }
        s
    }

    fn can(
        s: &MemorySource,
        user: &UserInfo,
        verb: &str,
        group: &str,
        resource: &str,
        ns: &str,
    ) -> bool {
        let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let a = Attributes {
            user,
            verb,
            resource_request: true,
            namespace: ns,
            api_group: group,
            api_version: "v1",
            resource,
            subresource: sub,
            name: "",
            path: "",
        };
        RbacAuthorizer.authorize(&a, s).is_allowed()
    }

    #[test]
    fn every_required_role_and_binding_exists_with_default_metadata() {
        let p = default_policy();
        let names = [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:aggregate-to-admin",
            "system:aggregate-to-edit",
            "system:aggregate-to-view",
            "system:basic-user",
            "system:discovery",
            "system:public-info-viewer",
            "system:monitoring",
            "system:node",
            "system:node-proxier",
            "system:node-bootstrapper",
            "system:kube-scheduler",
            "system:volume-scheduler",
            "system:kube-controller-manager",
            "system:kube-dns",
            "system:auth-delegator",
            "system:heapster",
            "system:persistent-volume-provisioner",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            "system:certificates.k8s.io:kubelet-serving-approver",
            "system:certificates.k8s.io:legacy-unknown-approver",
        ];
        for n in names {
            let r = find(&p.cluster_roles, n);
            assert_eq!(
                r["metadata"]["labels"][BOOTSTRAPPING_LABEL], "rbac-defaults",
                "{n}"
            );
            assert_eq!(
                r["metadata"]["annotations"][AUTOUPDATE_ANNOTATION], "true",
                "{n}"
            );
        }
        let controllers = [
            "attachdetach-controller",
            "certificate-controller",
            "clusterrole-aggregation-controller",
            "cronjob-controller",
            "daemon-set-controller",
            "deployment-controller",
            "disruption-controller",
            "endpoint-controller",
            "endpointslice-controller",
            "endpointslicemirroring-controller",
            "ephemeral-volume-controller",
            "expand-controller",
            "generic-garbage-collector",
            "horizontal-pod-autoscaler",
            "job-controller",
            "namespace-controller",
            "node-controller",
            "persistent-volume-binder",
            "pod-garbage-collector",
            "pv-protection-controller",
            "pvc-protection-controller",
            "replicaset-controller",
            "replication-controller",
            "resourcequota-controller",
            "root-ca-cert-publisher",
            "route-controller",
            "service-account-controller",
            "service-controller",
            "statefulset-controller",
            "taint-eviction-controller",
            "ttl-after-finished-controller",
            "ttl-controller",
            "validatingadmissionpolicy-status-controller",
            "legacy-service-account-token-cleaner",
            "selinux-warning-controller",
            "service-cidrs-controller",
        ];
        for c in controllers {
            let name = format!("system:controller:{c}");
            find(&p.cluster_roles, &name);
            let b = find(&p.cluster_role_bindings, &name);
            assert_eq!(
                b["subjects"][0],
                json!({"kind":"ServiceAccount","namespace":"kube-system","name":c})
            );
        }
        assert_eq!(p.cluster_roles.len(), 31 + controllers.len());
        assert!(find(&p.cluster_role_bindings, "system:node")
            .get("subjects")
            .is_none());
        assert_eq!(
            find(&p.cluster_role_bindings, "kubeadm:cluster-admins")["roleRef"]["name"],
            "cluster-admin"
        );
        assert_eq!(p.roles.len(), 7);
        assert_eq!(p.role_bindings.len(), 7);
        assert_eq!(
            find(&p.roles, "system:controller:bootstrap-signer")["metadata"]["namespace"],
            "kube-public"
        );
    }

    #[test]
    fn rule_lists_are_sorted_as_upstream_stores_them() {
        let p = default_policy();
        let basic = find(&p.cluster_roles, "system:basic-user");
        assert_eq!(
            basic["rules"][0]["resources"],
            json!(["selfsubjectaccessreviews", "selfsubjectrulesreviews"])
        );
        let node = find(&p.cluster_roles, "system:node");
        assert_eq!(
            node["rules"][3]["verbs"],
            json!(["create", "get", "list", "watch"])
        );
    }

    #[test]
    fn aggregated_roles_are_prefilled_in_upstream_order() {
        let p = default_policy();
        let view = find(&p.cluster_roles, "view");
        let agg_view = find(&p.cluster_roles, "system:aggregate-to-view");
        assert_eq!(view["rules"], agg_view["rules"]);
        let edit = find(&p.cluster_roles, "edit");
        let edit_rules = edit["rules"].as_array().unwrap();
        let n_edit = find(&p.cluster_roles, "system:aggregate-to-edit")["rules"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(
            edit_rules.len(),
            n_edit + agg_view["rules"].as_array().unwrap().len()
        );
        // system:aggregate-to-edit sorts before view
        assert_eq!(
            edit_rules[0],
            find(&p.cluster_roles, "system:aggregate-to-edit")["rules"][0]
        );
        let admin = find(&p.cluster_roles, "admin");
        assert_eq!(
            admin["rules"].as_array().unwrap().len(),
            edit_rules.len() + 2
        );
        assert_eq!(
            admin["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
                ["rbac.authorization.k8s.io/aggregate-to-admin"],
            "true"
        );
    }

    #[test]
    fn default_bindings_grant_what_upstream_grants() {
        let p = default_policy();
        let s = load(&p);
        let master = UserInfo::new("root", vec!["system:masters".into()]);
        assert!(can(&s, &master, "delete", "apps", "deployments", "x"));
        let anyone = UserInfo::new("jane", vec!["system:authenticated".into()]);
        assert!(can(
            &s,
            &anyone,
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            ""
        ));
        assert!(!can(&s, &anyone, "list", "", "pods", "default"));
        let sched = UserInfo::new("system:kube-scheduler", vec![]);
        assert!(can(&s, &sched, "create", "", "pods/binding", "default"));
        assert!(can(&s, &sched, "update", "", "persistentvolumes", ""));
        let kcm = UserInfo::new("system:kube-controller-manager", vec![]);
        assert!(can(&s, &kcm, "watch", "apps", "deployments", ""));
        assert!(can(
            &s,
            &kcm,
            "get",
            "coordination.k8s.io",
            "leases",
            "kube-system"
        ));
        let proxy = UserInfo::new("system:kube-proxy", vec![]);
        assert!(can(
            &s,
            &proxy,
            "watch",
            "discovery.k8s.io",
            "endpointslices",
            ""
        ));
        let gc = UserInfo::new(
            "system:serviceaccount:kube-system:generic-garbage-collector",
            vec![],
        );
        assert!(can(&s, &gc, "delete", "apps", "replicasets", "default"));
        let kubeadm = UserInfo::new("kubernetes-admin", vec!["kubeadm:cluster-admins".into()]);
        assert!(can(
            &s,
            &kubeadm,
            "create",
            "rbac.authorization.k8s.io",
            "clusterroles",
            ""
        ));
    }

    #[test]
    fn edit_grants_aggregated_rules_through_a_role_binding() {
        let p = default_policy();
        let mut s = load(&p);
        s.insert(
            RBAC_GROUP,
            "rolebindings",
            json!({"metadata":{"name":"dev","namespace":"team"},"roleRef":{"apiGroup":RBAC_GROUP,"kind":"ClusterRole","name":"edit"},
                   "subjects":[{"kind":"User","name":"dev"}]}),
        );
        let dev = UserInfo::new("dev", vec![]);
        assert!(can(&s, &dev, "create", "apps", "deployments", "team"));
        assert!(can(&s, &dev, "get", "", "pods/log", "team"));
        assert!(!can(
            &s,
            &dev,
            "create",
            "rbac.authorization.k8s.io",
            "roles",
            "team"
        ));
        assert!(!can(&s, &dev, "create", "apps", "deployments", "other"));
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = json!({"a":"1","b":"2"});
        assert!(selector_matches(&json!({"matchLabels":{"a":"1"}}), &labels));
        assert!(!selector_matches(
            &json!({"matchLabels":{"a":"2"}}),
            &labels
        ));
        assert!(selector_matches(
            &json!({"matchExpressions":[{"key":"b","operator":"In","values":["2","3"]}]}),
            &labels
        ));
        assert!(selector_matches(
            &json!({"matchExpressions":[{"key":"c","operator":"DoesNotExist"}]}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchExpressions":[{"key":"a","operator":"NotIn","values":["1"]}]}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchLabels":{"a":"1"}}),
            &Value::Null
        ));
    }

    #[test]
    fn reconcile_creates_missing_and_leaves_current_objects_alone() {
        let p = default_policy();
        let view = find(&p.cluster_roles, "system:aggregate-to-view");
        assert_eq!(
            reconcile(view, None),
            Some(Reconciled::Create(view.clone()))
        );
        assert_eq!(reconcile(view, Some(view)), None);
        for o in p.all() {
            assert_eq!(reconcile(o, Some(o)), None, "{}", o["metadata"]["name"]);
        }
    }

    #[test]
    fn reconcile_adds_missing_rules_labels_and_keeps_extras() {
        let p = default_policy();
        let expected = find(&p.cluster_roles, "system:basic-user");
        let mut stored = expected.clone();
        stored["metadata"]["resourceVersion"] = json!("7");
        stored["metadata"]["labels"] = json!({"team":"x"});
        stored["rules"] = json!([{"verbs":["get"],"apiGroups":[""],"resources":["pods"]}]);
        let Some(Reconciled::Update(out)) = reconcile(expected, Some(&stored)) else {
            panic!("expected an update");
        };
        assert_eq!(out["metadata"]["resourceVersion"], "7");
        assert_eq!(
            out["metadata"]["labels"],
            json!({"team":"x",BOOTSTRAPPING_LABEL:"rbac-defaults"})
        );
        let rules = out["rules"].as_array().unwrap();
        assert_eq!(rules[0]["resources"], json!(["pods"]));
        // the missing rules are added broken down
        assert_eq!(rules.len(), 1 + 3);
        // a second pass is stable
        assert_eq!(reconcile(expected, Some(&out)), None);
    }

    #[test]
    fn reconcile_respects_autoupdate_false() {
        let p = default_policy();
        let expected = find(&p.cluster_roles, "system:discovery");
        let mut stored = expected.clone();
        stored["metadata"]["annotations"][AUTOUPDATE_ANNOTATION] = json!("false");
        stored["rules"] = json!([]);
        assert_eq!(reconcile(expected, Some(&stored)), None);
    }

    #[test]
    fn reconcile_does_not_refill_aggregated_roles() {
        let p = default_policy();
        let expected = find(&p.cluster_roles, "admin");
        let mut stored = expected.clone();
        stored["rules"] = json!([]);
        assert_eq!(reconcile(expected, Some(&stored)), None);
        let mut no_selectors = stored.clone();
        no_selectors["aggregationRule"] = json!({"clusterRoleSelectors": []});
        let Some(Reconciled::Update(out)) = reconcile(expected, Some(&no_selectors)) else {
            panic!("expected an update");
        };
        assert_eq!(out["aggregationRule"], expected["aggregationRule"]);
    }

    #[test]
    fn reconcile_bindings_add_subjects_or_recreate_on_role_change() {
        let p = default_policy();
        let expected = find(&p.cluster_role_bindings, "system:public-info-viewer");
        let mut stored = expected.clone();
        stored["subjects"] = json!([{"kind":"User","apiGroup":RBAC_GROUP,"name":"extra"}]);
        let Some(Reconciled::Update(out)) = reconcile(expected, Some(&stored)) else {
            panic!("expected an update");
        };
        assert_eq!(out["subjects"].as_array().unwrap().len(), 3);
        let mut other_role = expected.clone();
        other_role["roleRef"]["name"] = json!("view");
        assert_eq!(
            reconcile(expected, Some(&other_role)),
            Some(Reconciled::Recreate(expected.clone()))
        );
    }
}
