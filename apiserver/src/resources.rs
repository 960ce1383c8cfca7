//! What the server serves: one [`ResourceInfo`] per resource (built in or from a CRD), the
//! facts routing, discovery, storage and tables all read.

use std::sync::Arc;

/// Verbs of a resource in discovery, in upstream's order.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A subresource (`status`, `scale`, `binding`, ...) and what it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subresource {
    pub name: String,
    /// Kind served on it (`Pod` for status, `Scale` for scale, `Binding`, `Eviction`, ...).
    pub kind: String,
    /// Group and version of `kind` when it differs from the parent (`policy/v1` Eviction,
    /// `autoscaling/v1` Scale).
    pub group: String,
    pub version: String,
    pub verbs: Vec<String>,
}

/// One resource: a (group, version, plural) triple and how it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    /// Plural, lower case: `pods`, `deployments`.
    pub resource: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    pub subresources: Vec<Subresource>,
    /// Key prefix in the store, without the trailing slash: `/registry/pods`,
    /// `/registry/example.com/widgets` for custom resources.
    pub storage_prefix: String,
    /// Served from a CustomResourceDefinition.
    pub custom: bool,
}

impl ResourceInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
    pub fn has_status(&self) -> bool {
        self.subresource("status").is_some()
    }
}

/// Shared handle on a resource description.
pub type Resource = Arc<ResourceInfo>;

struct Def {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    all: bool,
    verbs: &'static [&'static str],
    subs: &'static [&'static str],
}

const NS: bool = true;
const CLUSTER: bool = false;
const CRUD: &[&str] = ALL_VERBS;
const NO_COLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const CREATE_ONLY: &[&str] = &["create"];

macro_rules! def {
    ($g:expr, $v:expr, $r:expr, $k:expr, $ns:expr, [$($s:expr),*], $all:expr, $verbs:expr, [$($sub:expr),*]) => {
        Def { group: $g, version: $v, resource: $r, kind: $k, namespaced: $ns, short: &[$($s),*], all: $all, verbs: $verbs, subs: &[$($sub),*] }
    };
}

const BUILTIN: &[Def] = &[
    def!(
        "",
        "v1",
        "bindings",
        "Binding",
        NS,
        [],
        false,
        CREATE_ONLY,
        []
    ),
    def!(
        "",
        "v1",
        "componentstatuses",
        "ComponentStatus",
        CLUSTER,
        ["cs"],
        false,
        &["get", "list"],
        []
    ),
    def!(
        "",
        "v1",
        "configmaps",
        "ConfigMap",
        NS,
        ["cm"],
        false,
        CRUD,
        []
    ),
    def!(
        "",
        "v1",
        "endpoints",
        "Endpoints",
        NS,
        ["ep"],
        false,
        CRUD,
        []
    ),
    def!("", "v1", "events", "Event", NS, ["ev"], false, CRUD, []),
    def!(
        "",
        "v1",
        "limitranges",
        "LimitRange",
        NS,
        ["limits"],
        false,
        CRUD,
        []
    ),
    def!(
        "",
        "v1",
        "namespaces",
        "Namespace",
        CLUSTER,
        ["ns"],
        false,
        NO_COLLECTION,
        ["status", "finalize"]
    ),
    def!(
        "",
        "v1",
        "nodes",
        "Node",
        CLUSTER,
        ["no"],
        false,
        CRUD,
        ["status", "proxy"]
    ),
    def!(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        NS,
        ["pvc"],
        true,
        CRUD,
        ["status"]
    ),
    def!(
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        CLUSTER,
        ["pv"],
        false,
        CRUD,
        ["status"]
    ),
    def!(
        "",
        "v1",
        "pods",
        "Pod",
        NS,
        ["po"],
        true,
        CRUD,
        [
            "attach",
            "binding",
            "ephemeralcontainers",
            "eviction",
            "exec",
            "log",
            "portforward",
            "proxy",
            "resize",
            "status"
        ]
    ),
    def!(
        "",
        "v1",
        "podtemplates",
        "PodTemplate",
        NS,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "",
        "v1",
        "replicationcontrollers",
        "ReplicationController",
        NS,
        ["rc"],
        true,
        CRUD,
        ["scale", "status"]
    ),
    def!(
        "",
        "v1",
        "resourcequotas",
        "ResourceQuota",
        NS,
        ["quota"],
        false,
        CRUD,
        ["status"]
    ),
    def!("", "v1", "secrets", "Secret", NS, [], false, CRUD, []),
    def!(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        NS,
        ["sa"],
        false,
        CRUD,
        ["token"]
    ),
    def!(
        "",
        "v1",
        "services",
        "Service",
        NS,
        ["svc"],
        true,
        NO_COLLECTION,
        ["proxy", "status"]
    ),
    def!(
        "apps",
        "v1",
        "controllerrevisions",
        "ControllerRevision",
        NS,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        NS,
        ["ds"],
        true,
        CRUD,
        ["status"]
    ),
    def!(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        NS,
        ["deploy"],
        true,
        CRUD,
        ["scale", "status"]
    ),
    def!(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        NS,
        ["rs"],
        true,
        CRUD,
        ["scale", "status"]
    ),
    def!(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        NS,
        ["sts"],
        true,
        CRUD,
        ["scale", "status"]
    ),
    def!(
        "batch",
        "v1",
        "cronjobs",
        "CronJob",
        NS,
        ["cj"],
        true,
        CRUD,
        ["status"]
    ),
    def!("batch", "v1", "jobs", "Job", NS, [], true, CRUD, ["status"]),
    def!(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        NS,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        NS,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        NS,
        ["ev"],
        false,
        CRUD,
        []
    ),
    def!(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        NS,
        ["pdb"],
        false,
        CRUD,
        ["status"]
    ),
    def!(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "PriorityClass",
        CLUSTER,
        ["pc"],
        false,
        CRUD,
        []
    ),
    def!(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        NS,
        ["hpa"],
        true,
        CRUD,
        ["status"]
    ),
    def!(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        NS,
        ["ing"],
        false,
        CRUD,
        ["status"]
    ),
    def!(
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "IngressClass",
        CLUSTER,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        NS,
        ["netpol"],
        false,
        CRUD,
        []
    ),
    def!(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        CLUSTER,
        ["sc"],
        false,
        CRUD,
        []
    ),
    def!(
        "storage.k8s.io",
        "v1",
        "csidrivers",
        "CSIDriver",
        CLUSTER,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "storage.k8s.io",
        "v1",
        "csinodes",
        "CSINode",
        CLUSTER,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "storage.k8s.io",
        "v1",
        "volumeattachments",
        "VolumeAttachment",
        CLUSTER,
        [],
        false,
        CRUD,
        ["status"]
    ),
    def!(
        "storage.k8s.io",
        "v1",
        "csistoragecapacities",
        "CSIStorageCapacity",
        NS,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        CLUSTER,
        [],
        false,
        CREATE_ONLY,
        []
    ),
    def!(
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "TokenReview",
        CLUSTER,
        [],
        false,
        CREATE_ONLY,
        []
    ),
    def!(
        "authorization.k8s.io",
        "v1",
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        NS,
        [],
        false,
        CREATE_ONLY,
        []
    ),
    def!(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        CLUSTER,
        [],
        false,
        CREATE_ONLY,
        []
    ),
    def!(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        CLUSTER,
        [],
        false,
        CREATE_ONLY,
        []
    ),
    def!(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
        CLUSTER,
        [],
        false,
        CREATE_ONLY,
        []
    ),
    def!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        CLUSTER,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        CLUSTER,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        NS,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        NS,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        CLUSTER,
        ["csr"],
        false,
        CRUD,
        ["approval", "status"]
    ),
    def!(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        CLUSTER,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        CLUSTER,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        CLUSTER,
        [],
        false,
        CRUD,
        ["status"]
    ),
    def!(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        CLUSTER,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "node.k8s.io",
        "v1",
        "runtimeclasses",
        "RuntimeClass",
        CLUSTER,
        [],
        false,
        CRUD,
        []
    ),
    def!(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        CLUSTER,
        ["crd", "crds"],
        false,
        CRUD,
        ["status"]
    ),
];

fn subresource(parent: &Def, name: &str) -> Subresource {
    let (kind, group, version, verbs): (&str, &str, &str, &[&str]) = match name {
        "status" => (
            parent.kind,
            parent.group,
            parent.version,
            &["get", "patch", "update"],
        ),
        "scale" => ("Scale", "autoscaling", "v1", &["get", "patch", "update"]),
        "binding" => ("Binding", "", "v1", &["create"]),
        "eviction" => ("Eviction", "policy", "v1", &["create"]),
        "ephemeralcontainers" | "resize" => ("Pod", "", "v1", &["get", "patch", "update"]),
        "finalize" => ("Namespace", "", "v1", &["update"]),
        "approval" => (
            parent.kind,
            parent.group,
            parent.version,
            &["get", "patch", "update"],
        ),
        "token" => ("TokenRequest", "authentication.k8s.io", "v1", &["create"]),
        "log" => ("Pod", "", "v1", &["get"]),
        "exec" | "attach" => ("PodExecOptions", "", "v1", &["create", "get"]),
        "portforward" => ("PodPortForwardOptions", "", "v1", &["create", "get"]),
        _ => (
            if parent.kind == "Node" {
                "NodeProxyOptions"
            } else if parent.kind == "Service" {
                "ServiceProxyOptions"
            } else {
                "PodProxyOptions"
            },
            "",
            "v1",
            &["create", "delete", "get", "patch", "update"],
        ),
    };
    Subresource {
        name: name.to_string(),
        kind: kind.to_string(),
        group: group.to_string(),
        version: version.to_string(),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
    }
}

/// Every built-in resource.
pub fn builtin() -> Vec<ResourceInfo> {
    BUILTIN
        .iter()
        .map(|d| ResourceInfo {
            group: d.group.into(),
            version: d.version.into(),
            resource: d.resource.into(),
            singular: d.kind.to_lowercase(),
            kind: d.kind.into(),
            list_kind: format!("{}List", d.kind),
            namespaced: d.namespaced,
            short_names: d.short.iter().map(|s| s.to_string()).collect(),
            categories: if d.all { vec!["all".into()] } else { vec![] },
            verbs: d.verbs.iter().map(|s| s.to_string()).collect(),
            subresources: d.subs.iter().map(|s| subresource(d, s)).collect(),
            storage_prefix: storage_prefix(d.group, d.resource),
            custom: false,
        })
        .collect()
}

/// Where a built-in resource lives in the store. Events of both groups share one prefix, as
/// upstream stores them as one resource.
fn storage_prefix(group: &str, resource: &str) -> String {
    match (group, resource) {
        ("events.k8s.io", "events") => "/registry/events".into(),
        _ => format!("/registry/{resource}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_carry_eviction_as_policy_v1() {
        let all = builtin();
        let pods = all.iter().find(|r| r.resource == "pods").expect("pods");
        let ev = pods.subresource("eviction").expect("eviction");
        assert_eq!((ev.group.as_str(), ev.version.as_str()), ("policy", "v1"));
        assert!(pods.short_names.contains(&"po".to_string()));
        assert_eq!(pods.categories, vec!["all".to_string()]);
    }
}
