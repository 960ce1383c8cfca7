//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`): the `k8s\0`
//! envelope around runtime.Unknown, decoded into JSON for the kinds kubectl sends as
//! protobuf (its typed `create` commands, DeleteOptions, Eviction).
//!
//! Field numbers and JSON names follow upstream's `generated.proto` and `types.go`. Go marshals
//! every non-pointer scalar to protobuf, set or not, while its JSON drops `omitempty` zero values:
//! `Str`, `Int0` and `Bool0` mark such fields (their zero value is dropped), `StrK`, `Int` and
//! `Bool` fields (pointers, or without `omitempty`) keep theirs.

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// How a field is encoded and what JSON it becomes.
#[derive(Clone, Copy)]
enum Ty {
    /// A non-pointer `omitempty` string: empty means unset.
    Str,
    /// A string kept even when empty (`*string`, or no `omitempty`).
    StrK,
    /// bytes -> base64 string.
    Bytes,
    /// An integer kept even when zero (a pointer, or no `omitempty`).
    Int,
    /// A non-pointer `omitempty` integer: zero means unset.
    Int0,
    /// A bool kept even when false (a pointer, or no `omitempty`).
    Bool,
    /// A non-pointer `omitempty` bool: false means unset.
    Bool0,
    Msg(&'static str),
    /// An embedded (`json:",inline"`) message: its fields land in the parent object.
    Inline(&'static str),
    /// resource.Quantity (`string` = 1) -> its string.
    Quantity,
    /// intstr.IntOrString (type = 1, intVal = 2, strVal = 3) -> a number or a string.
    IntOrString,
    /// metav1.Time -> RFC 3339.
    Time,
    /// map<string,string>.
    MapStr,
    /// map<string,bytes>.
    MapBytes,
    /// map<string,M>, M a message, "Quantity" or "Time".
    MapMsg(&'static str),
}

/// (field number, JSON name, type, repeated).
type Field = (u32, &'static str, Ty, bool);

fn fields(message: &str) -> Option<&'static [Field]> {
    use Ty::*;
    Some(match message {
        "ObjectMeta" => &[
            (1, "name", Str, false),
            (2, "generateName", Str, false),
            (3, "namespace", Str, false),
            (5, "uid", Str, false),
            (6, "resourceVersion", Str, false),
            (7, "generation", Int0, false),
            (8, "creationTimestamp", Time, false),
            (9, "deletionTimestamp", Time, false),
            (10, "deletionGracePeriodSeconds", Int, false),
            (11, "labels", MapStr, false),
            (12, "annotations", MapStr, false),
            (13, "ownerReferences", Msg("OwnerReference"), true),
            (14, "finalizers", Str, true),
        ],
        "OwnerReference" => &[
            (1, "kind", Str, false),
            (3, "name", Str, false),
            (4, "uid", Str, false),
            (5, "apiVersion", Str, false),
            (6, "controller", Bool, false),
            (7, "blockOwnerDeletion", Bool, false),
        ],
        "Namespace" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("NamespaceSpec"), false),
            (3, "status", Msg("NamespaceStatus"), false),
        ],
        "NamespaceSpec" => &[(1, "finalizers", Str, true)],
        "NamespaceStatus" => &[
            (1, "phase", Str, false),
            (2, "conditions", Msg("NamespaceCondition"), true),
        ],
        "NamespaceCondition" => &[
            (1, "type", StrK, false),
            (2, "status", StrK, false),
            (4, "lastTransitionTime", Time, false),
            (5, "reason", Str, false),
            (6, "message", Str, false),
        ],
        "ConfigMap" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "data", MapStr, false),
            (3, "binaryData", MapBytes, false),
            (4, "immutable", Bool, false),
        ],
        "Secret" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "data", MapBytes, false),
            (3, "type", Str, false),
            (4, "stringData", MapStr, false),
            (5, "immutable", Bool, false),
        ],
        "ServiceAccount" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "secrets", Msg("ObjectReference"), true),
            (3, "imagePullSecrets", Msg("LocalObjectReference"), true),
            (4, "automountServiceAccountToken", Bool, false),
        ],
        "ObjectReference" => &[
            (1, "kind", Str, false),
            (2, "namespace", Str, false),
            (3, "name", Str, false),
            (4, "uid", Str, false),
            (5, "apiVersion", Str, false),
            (6, "resourceVersion", Str, false),
            (7, "fieldPath", Str, false),
        ],
        "LocalObjectReference" => &[(1, "name", Str, false)],
        "DeleteOptions" => &[
            (1, "gracePeriodSeconds", Int, false),
            (2, "preconditions", Msg("Preconditions"), false),
            (3, "orphanDependents", Bool, false),
            (4, "propagationPolicy", Str, false),
            (5, "dryRun", Str, true),
        ],
        "Preconditions" => &[(1, "uid", Str, false), (2, "resourceVersion", Str, false)],
        "Eviction" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "deleteOptions", Msg("DeleteOptions"), false),
        ],
        "Unknown" => &[
            (1, "typeMeta", Msg("TypeMeta"), false),
            (2, "raw", Bytes, false),
            (3, "contentEncoding", Str, false),
            (4, "contentType", Str, false),
        ],
        "TypeMeta" => &[(1, "apiVersion", Str, false), (2, "kind", Str, false)],
        // rbac.authorization.k8s.io/v1 (kubectl create role/rolebinding/clusterrole...).
        "Role" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "rules", Msg("PolicyRule"), true),
        ],
        "ClusterRole" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "rules", Msg("PolicyRule"), true),
            (3, "aggregationRule", Msg("AggregationRule"), false),
        ],
        "PolicyRule" => &[
            (1, "verbs", Str, true),
            (2, "apiGroups", Str, true),
            (3, "resources", Str, true),
            (4, "resourceNames", Str, true),
            (5, "nonResourceURLs", Str, true),
        ],
        "AggregationRule" => &[(1, "clusterRoleSelectors", Msg("LabelSelector"), true)],
        "LabelSelector" => &[
            (1, "matchLabels", MapStr, false),
            (2, "matchExpressions", Msg("LabelSelectorRequirement"), true),
        ],
        "LabelSelectorRequirement" => &[
            (1, "key", Str, false),
            (2, "operator", Str, false),
            (3, "values", Str, true),
        ],
        "RoleBinding" | "ClusterRoleBinding" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "subjects", Msg("Subject"), true),
            (3, "roleRef", Msg("RoleRef"), false),
        ],
        "Subject" => &[
            (1, "kind", Str, false),
            (2, "apiGroup", Str, false),
            (3, "name", Str, false),
            (4, "namespace", Str, false),
        ],
        "RoleRef" => &[
            (1, "apiGroup", Str, false),
            (2, "kind", Str, false),
            (3, "name", Str, false),
        ],
        // authorization.k8s.io/v1 (kubectl auth can-i).
        "SelfSubjectAccessReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("SelfSubjectAccessReviewSpec"), false),
        ],
        "SelfSubjectAccessReviewSpec" => &[
            (1, "resourceAttributes", Msg("ResourceAttributes"), false),
            (
                2,
                "nonResourceAttributes",
                Msg("NonResourceAttributes"),
                false,
            ),
        ],
        "SubjectAccessReview" | "LocalSubjectAccessReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("SubjectAccessReviewSpec"), false),
        ],
        "SubjectAccessReviewSpec" => &[
            (1, "resourceAttributes", Msg("ResourceAttributes"), false),
            (
                2,
                "nonResourceAttributes",
                Msg("NonResourceAttributes"),
                false,
            ),
            (3, "user", Str, false),
            (4, "groups", Str, true),
            (6, "uid", Str, false),
        ],
        "ResourceAttributes" => &[
            (1, "namespace", Str, false),
            (2, "verb", Str, false),
            (3, "group", Str, false),
            (4, "version", Str, false),
            (5, "resource", Str, false),
            (6, "subresource", Str, false),
            (7, "name", Str, false),
        ],
        "NonResourceAttributes" => &[(1, "path", Str, false), (2, "verb", Str, false)],
        "SelfSubjectRulesReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("SelfSubjectRulesReviewSpec"), false),
        ],
        "SelfSubjectRulesReviewSpec" => &[(1, "namespace", Str, false)],
        // authentication.k8s.io/v1 (kubectl create token, kubectl auth whoami).
        "TokenRequest" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("TokenRequestSpec"), false),
        ],
        "TokenRequestSpec" => &[
            (1, "audiences", Str, true),
            (3, "boundObjectRef", Msg("BoundObjectReference"), false),
            (4, "expirationSeconds", Int, false),
        ],
        "BoundObjectReference" => &[
            (1, "kind", Str, false),
            (2, "apiVersion", Str, false),
            (3, "name", Str, false),
            (4, "uid", Str, false),
        ],
        "TokenReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("TokenReviewSpec"), false),
        ],
        "TokenReviewSpec" => &[(1, "token", Str, false), (2, "audiences", Str, true)],
        "SelfSubjectReview" => &[(1, "metadata", Msg("ObjectMeta"), false)],
        // core/v1 Pod and everything a pod template reaches (kubectl create deployment/job/cronjob).
        "Pod" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("PodSpec"), false),
            (3, "status", Msg("PodStatus"), false),
        ],
        "PodTemplateSpec" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("PodSpec"), false),
        ],
        "PodSpec" => &[
            (1, "volumes", Msg("Volume"), true),
            (20, "initContainers", Msg("Container"), true),
            (2, "containers", Msg("Container"), true),
            (34, "ephemeralContainers", Msg("EphemeralContainer"), true),
            (3, "restartPolicy", Str, false),
            (4, "terminationGracePeriodSeconds", Int, false),
            (5, "activeDeadlineSeconds", Int, false),
            (6, "dnsPolicy", Str, false),
            (7, "nodeSelector", MapStr, false),
            (8, "serviceAccountName", Str, false),
            (9, "serviceAccount", Str, false),
            (21, "automountServiceAccountToken", Bool, false),
            (10, "nodeName", Str, false),
            (11, "hostNetwork", Bool0, false),
            (12, "hostPID", Bool0, false),
            (13, "hostIPC", Bool0, false),
            (27, "shareProcessNamespace", Bool, false),
            (14, "securityContext", Msg("PodSecurityContext"), false),
            (15, "imagePullSecrets", Msg("LocalObjectReference"), true),
            (16, "hostname", Str, false),
            (17, "subdomain", Str, false),
            (18, "affinity", Msg("Affinity"), false),
            (19, "schedulerName", Str, false),
            (22, "tolerations", Msg("Toleration"), true),
            (23, "hostAliases", Msg("HostAlias"), true),
            (24, "priorityClassName", Str, false),
            (25, "priority", Int, false),
            (26, "dnsConfig", Msg("PodDNSConfig"), false),
            (28, "readinessGates", Msg("PodReadinessGate"), true),
            (29, "runtimeClassName", StrK, false),
            (30, "enableServiceLinks", Bool, false),
            (31, "preemptionPolicy", StrK, false),
            (32, "overhead", MapMsg("Quantity"), false),
            (
                33,
                "topologySpreadConstraints",
                Msg("TopologySpreadConstraint"),
                true,
            ),
            (35, "setHostnameAsFQDN", Bool, false),
            (36, "os", Msg("PodOS"), false),
            (37, "hostUsers", Bool, false),
            (38, "schedulingGates", Msg("PodSchedulingGate"), true),
            (39, "resourceClaims", Msg("PodResourceClaim"), true),
            (40, "resources", Msg("ResourceRequirements"), false),
            (41, "hostnameOverride", StrK, false),
            (43, "schedulingGroup", Msg("PodSchedulingGroup"), false),
            (44, "evictionResponders", Msg("EvictionResponder"), true),
        ],
        "PodStatus" => &[
            (17, "observedGeneration", Int0, false),
            (1, "phase", Str, false),
            (2, "conditions", Msg("PodCondition"), true),
            (3, "message", Str, false),
            (4, "reason", Str, false),
            (11, "nominatedNodeName", Str, false),
            (5, "hostIP", Str, false),
            (16, "hostIPs", Msg("HostIP"), true),
            (6, "podIP", Str, false),
            (12, "podIPs", Msg("PodIP"), true),
            (7, "startTime", Time, false),
            (9, "qosClass", Str, false),
            (14, "resize", Str, false),
            (19, "allocatedResources", MapMsg("Quantity"), false),
            (20, "resources", Msg("ResourceRequirements"), false),
        ],
        "PodCondition" => &[
            (1, "type", StrK, false),
            (7, "observedGeneration", Int0, false),
            (2, "status", StrK, false),
            (3, "lastProbeTime", Time, false),
            (4, "lastTransitionTime", Time, false),
            (5, "reason", Str, false),
            (6, "message", Str, false),
        ],
        "HostIP" => &[(1, "ip", StrK, false)],
        "PodIP" => &[(1, "ip", StrK, false)],
        "Container" => &[
            (1, "name", StrK, false),
            (2, "image", Str, false),
            (3, "command", Str, true),
            (4, "args", Str, true),
            (5, "workingDir", Str, false),
            (6, "ports", Msg("ContainerPort"), true),
            (19, "envFrom", Msg("EnvFromSource"), true),
            (7, "env", Msg("EnvVar"), true),
            (8, "resources", Msg("ResourceRequirements"), false),
            (23, "resizePolicy", Msg("ContainerResizePolicy"), true),
            (24, "restartPolicy", StrK, false),
            (25, "restartPolicyRules", Msg("ContainerRestartRule"), true),
            (9, "volumeMounts", Msg("VolumeMount"), true),
            (21, "volumeDevices", Msg("VolumeDevice"), true),
            (10, "livenessProbe", Msg("Probe"), false),
            (11, "readinessProbe", Msg("Probe"), false),
            (22, "startupProbe", Msg("Probe"), false),
            (12, "lifecycle", Msg("Lifecycle"), false),
            (13, "terminationMessagePath", Str, false),
            (20, "terminationMessagePolicy", Str, false),
            (14, "imagePullPolicy", Str, false),
            (15, "securityContext", Msg("SecurityContext"), false),
            (16, "stdin", Bool0, false),
            (17, "stdinOnce", Bool0, false),
            (18, "tty", Bool0, false),
        ],
        "EphemeralContainer" => &[
            (1, "", Inline("EphemeralContainerCommon"), false),
            (2, "targetContainerName", Str, false),
        ],
        "EphemeralContainerCommon" => &[
            (1, "name", StrK, false),
            (2, "image", Str, false),
            (3, "command", Str, true),
            (4, "args", Str, true),
            (5, "workingDir", Str, false),
            (6, "ports", Msg("ContainerPort"), true),
            (19, "envFrom", Msg("EnvFromSource"), true),
            (7, "env", Msg("EnvVar"), true),
            (8, "resources", Msg("ResourceRequirements"), false),
            (23, "resizePolicy", Msg("ContainerResizePolicy"), true),
            (24, "restartPolicy", StrK, false),
            (25, "restartPolicyRules", Msg("ContainerRestartRule"), true),
            (9, "volumeMounts", Msg("VolumeMount"), true),
            (21, "volumeDevices", Msg("VolumeDevice"), true),
            (10, "livenessProbe", Msg("Probe"), false),
            (11, "readinessProbe", Msg("Probe"), false),
            (22, "startupProbe", Msg("Probe"), false),
            (12, "lifecycle", Msg("Lifecycle"), false),
            (13, "terminationMessagePath", Str, false),
            (20, "terminationMessagePolicy", Str, false),
            (14, "imagePullPolicy", Str, false),
            (15, "securityContext", Msg("SecurityContext"), false),
            (16, "stdin", Bool0, false),
            (17, "stdinOnce", Bool0, false),
            (18, "tty", Bool0, false),
        ],
        "ContainerPort" => &[
            (1, "name", Str, false),
            (2, "hostPort", Int0, false),
            (3, "containerPort", Int, false),
            (4, "protocol", Str, false),
            (5, "hostIP", Str, false),
        ],
        "EnvFromSource" => &[
            (1, "prefix", Str, false),
            (2, "configMapRef", Msg("ConfigMapEnvSource"), false),
            (3, "secretRef", Msg("SecretEnvSource"), false),
        ],
        "ConfigMapEnvSource" => &[
            (1, "", Inline("LocalObjectReference"), false),
            (2, "optional", Bool, false),
        ],
        "SecretEnvSource" => &[
            (1, "", Inline("LocalObjectReference"), false),
            (2, "optional", Bool, false),
        ],
        "EnvVar" => &[
            (1, "name", StrK, false),
            (2, "value", Str, false),
            (3, "valueFrom", Msg("EnvVarSource"), false),
        ],
        "EnvVarSource" => &[
            (1, "fieldRef", Msg("ObjectFieldSelector"), false),
            (2, "resourceFieldRef", Msg("ResourceFieldSelector"), false),
            (3, "configMapKeyRef", Msg("ConfigMapKeySelector"), false),
            (4, "secretKeyRef", Msg("SecretKeySelector"), false),
            (5, "fileKeyRef", Msg("FileKeySelector"), false),
        ],
        "ObjectFieldSelector" => &[(1, "apiVersion", Str, false), (2, "fieldPath", StrK, false)],
        "ResourceFieldSelector" => &[
            (1, "containerName", Str, false),
            (2, "resource", StrK, false),
            (3, "divisor", Quantity, false),
        ],
        "ConfigMapKeySelector" => &[
            (1, "", Inline("LocalObjectReference"), false),
            (2, "key", StrK, false),
            (3, "optional", Bool, false),
        ],
        "SecretKeySelector" => &[
            (1, "", Inline("LocalObjectReference"), false),
            (2, "key", StrK, false),
            (3, "optional", Bool, false),
        ],
        "FileKeySelector" => &[
            (1, "volumeName", StrK, false),
            (2, "path", StrK, false),
            (3, "key", StrK, false),
            (4, "optional", Bool, false),
        ],
        "ResourceRequirements" => &[
            (1, "limits", MapMsg("Quantity"), false),
            (2, "requests", MapMsg("Quantity"), false),
            (3, "claims", Msg("ResourceClaim"), true),
        ],
        "ResourceClaim" => &[(1, "name", StrK, false), (2, "request", Str, false)],
        "ContainerResizePolicy" => &[
            (1, "resourceName", StrK, false),
            (2, "restartPolicy", StrK, false),
        ],
        "ContainerRestartRule" => &[
            (1, "action", Str, false),
            (
                2,
                "exitCodes",
                Msg("ContainerRestartRuleOnExitCodes"),
                false,
            ),
        ],
        "ContainerRestartRuleOnExitCodes" => {
            &[(1, "operator", Str, false), (2, "values", Int, true)]
        }
        "VolumeMount" => &[
            (1, "name", StrK, false),
            (2, "readOnly", Bool0, false),
            (7, "recursiveReadOnly", StrK, false),
            (3, "mountPath", StrK, false),
            (4, "subPath", Str, false),
            (5, "mountPropagation", StrK, false),
            (6, "subPathExpr", Str, false),
            (8, "bindMountOptions", Str, true),
        ],
        "VolumeDevice" => &[(1, "name", StrK, false), (2, "devicePath", StrK, false)],
        "Probe" => &[
            (1, "", Inline("ProbeHandler"), false),
            (2, "initialDelaySeconds", Int0, false),
            (3, "timeoutSeconds", Int0, false),
            (4, "periodSeconds", Int0, false),
            (5, "successThreshold", Int0, false),
            (6, "failureThreshold", Int0, false),
            (7, "terminationGracePeriodSeconds", Int, false),
        ],
        "ProbeHandler" => &[
            (1, "exec", Msg("ExecAction"), false),
            (2, "httpGet", Msg("HTTPGetAction"), false),
            (3, "tcpSocket", Msg("TCPSocketAction"), false),
            (4, "grpc", Msg("GRPCAction"), false),
        ],
        "LifecycleHandler" => &[
            (1, "exec", Msg("ExecAction"), false),
            (2, "httpGet", Msg("HTTPGetAction"), false),
            (3, "tcpSocket", Msg("TCPSocketAction"), false),
            (4, "sleep", Msg("SleepAction"), false),
        ],
        "ExecAction" => &[(1, "command", Str, true)],
        "HTTPGetAction" => &[
            (1, "path", Str, false),
            (2, "port", IntOrString, false),
            (3, "host", Str, false),
            (4, "scheme", Str, false),
            (5, "httpHeaders", Msg("HTTPHeader"), true),
            (6, "protocol", StrK, false),
        ],
        "HTTPHeader" => &[(1, "name", StrK, false), (2, "value", StrK, false)],
        "TCPSocketAction" => &[(1, "port", IntOrString, false), (2, "host", Str, false)],
        "GRPCAction" => &[
            (1, "port", Int, false),
            (2, "service", StrK, false),
            (3, "mode", StrK, false),
        ],
        "SleepAction" => &[(1, "seconds", Int, false)],
        "Lifecycle" => &[
            (1, "postStart", Msg("LifecycleHandler"), false),
            (2, "preStop", Msg("LifecycleHandler"), false),
            (3, "stopSignal", StrK, false),
        ],
        "SecurityContext" => &[
            (1, "capabilities", Msg("Capabilities"), false),
            (2, "privileged", Bool, false),
            (3, "seLinuxOptions", Msg("SELinuxOptions"), false),
            (
                10,
                "windowsOptions",
                Msg("WindowsSecurityContextOptions"),
                false,
            ),
            (4, "runAsUser", Int, false),
            (8, "runAsGroup", Int, false),
            (5, "runAsNonRoot", Bool, false),
            (6, "readOnlyRootFilesystem", Bool, false),
            (7, "allowPrivilegeEscalation", Bool, false),
            (9, "procMount", StrK, false),
            (11, "seccompProfile", Msg("SeccompProfile"), false),
            (12, "appArmorProfile", Msg("AppArmorProfile"), false),
        ],
        "Capabilities" => &[(1, "add", Str, true), (2, "drop", Str, true)],
        "SELinuxOptions" => &[
            (1, "user", Str, false),
            (2, "role", Str, false),
            (3, "type", Str, false),
            (4, "level", Str, false),
        ],
        "WindowsSecurityContextOptions" => &[
            (1, "gmsaCredentialSpecName", StrK, false),
            (2, "gmsaCredentialSpec", StrK, false),
            (3, "runAsUserName", StrK, false),
            (4, "hostProcess", Bool, false),
        ],
        "SeccompProfile" => &[
            (1, "type", StrK, false),
            (2, "localhostProfile", StrK, false),
        ],
        "AppArmorProfile" => &[
            (1, "type", StrK, false),
            (2, "localhostProfile", StrK, false),
        ],
        "PodSecurityContext" => &[
            (1, "seLinuxOptions", Msg("SELinuxOptions"), false),
            (
                8,
                "windowsOptions",
                Msg("WindowsSecurityContextOptions"),
                false,
            ),
            (2, "runAsUser", Int, false),
            (6, "runAsGroup", Int, false),
            (3, "runAsNonRoot", Bool, false),
            (4, "supplementalGroups", Int, true),
            (12, "supplementalGroupsPolicy", StrK, false),
            (5, "fsGroup", Int, false),
            (7, "sysctls", Msg("Sysctl"), true),
            (9, "fsGroupChangePolicy", StrK, false),
            (10, "seccompProfile", Msg("SeccompProfile"), false),
            (11, "appArmorProfile", Msg("AppArmorProfile"), false),
            (13, "seLinuxChangePolicy", StrK, false),
        ],
        "Sysctl" => &[(1, "name", StrK, false), (2, "value", StrK, false)],
        "Affinity" => &[
            (1, "nodeAffinity", Msg("NodeAffinity"), false),
            (2, "podAffinity", Msg("PodAffinity"), false),
            (3, "podAntiAffinity", Msg("PodAntiAffinity"), false),
        ],
        "NodeAffinity" => &[
            (
                1,
                "requiredDuringSchedulingIgnoredDuringExecution",
                Msg("NodeSelector"),
                false,
            ),
            (
                2,
                "preferredDuringSchedulingIgnoredDuringExecution",
                Msg("PreferredSchedulingTerm"),
                true,
            ),
        ],
        "NodeSelector" => &[(1, "nodeSelectorTerms", Msg("NodeSelectorTerm"), true)],
        "NodeSelectorTerm" => &[
            (1, "matchExpressions", Msg("NodeSelectorRequirement"), true),
            (2, "matchFields", Msg("NodeSelectorRequirement"), true),
        ],
        "NodeSelectorRequirement" => &[
            (1, "key", StrK, false),
            (2, "operator", StrK, false),
            (3, "values", Str, true),
        ],
        "PreferredSchedulingTerm" => &[
            (1, "weight", Int, false),
            (2, "preference", Msg("NodeSelectorTerm"), false),
        ],
        "PodAffinity" => &[
            (
                1,
                "requiredDuringSchedulingIgnoredDuringExecution",
                Msg("PodAffinityTerm"),
                true,
            ),
            (
                2,
                "preferredDuringSchedulingIgnoredDuringExecution",
                Msg("WeightedPodAffinityTerm"),
                true,
            ),
        ],
        "PodAntiAffinity" => &[
            (
                1,
                "requiredDuringSchedulingIgnoredDuringExecution",
                Msg("PodAffinityTerm"),
                true,
            ),
            (
                2,
                "preferredDuringSchedulingIgnoredDuringExecution",
                Msg("WeightedPodAffinityTerm"),
                true,
            ),
        ],
        "PodAffinityTerm" => &[
            (1, "labelSelector", Msg("LabelSelector"), false),
            (2, "namespaces", Str, true),
            (3, "topologyKey", StrK, false),
            (4, "namespaceSelector", Msg("LabelSelector"), false),
            (5, "matchLabelKeys", Str, true),
            (6, "mismatchLabelKeys", Str, true),
        ],
        "WeightedPodAffinityTerm" => &[
            (1, "weight", Int, false),
            (2, "podAffinityTerm", Msg("PodAffinityTerm"), false),
        ],
        "Toleration" => &[
            (1, "key", Str, false),
            (2, "operator", Str, false),
            (3, "value", Str, false),
            (4, "effect", Str, false),
            (5, "tolerationSeconds", Int, false),
        ],
        "HostAlias" => &[(1, "ip", StrK, false), (2, "hostnames", Str, true)],
        "PodDNSConfig" => &[
            (1, "nameservers", Str, true),
            (2, "searches", Str, true),
            (3, "options", Msg("PodDNSConfigOption"), true),
        ],
        "PodDNSConfigOption" => &[(1, "name", Str, false), (2, "value", StrK, false)],
        "PodReadinessGate" => &[(1, "conditionType", StrK, false)],
        "TopologySpreadConstraint" => &[
            (1, "maxSkew", Int, false),
            (2, "topologyKey", StrK, false),
            (3, "whenUnsatisfiable", StrK, false),
            (4, "labelSelector", Msg("LabelSelector"), false),
            (5, "minDomains", Int, false),
            (6, "nodeAffinityPolicy", StrK, false),
            (7, "nodeTaintsPolicy", StrK, false),
            (8, "matchLabelKeys", Str, true),
        ],
        "PodOS" => &[(1, "name", StrK, false)],
        "PodSchedulingGate" => &[(1, "name", StrK, false)],
        "PodResourceClaim" => &[
            (1, "name", StrK, false),
            (3, "resourceClaimName", StrK, false),
            (4, "resourceClaimTemplateName", StrK, false),
        ],
        "PodSchedulingGroup" => &[(1, "podGroupName", StrK, false)],
        "EvictionResponder" => &[(1, "name", StrK, false), (2, "priority", Int, false)],
        // core/v1 volumes (the in-tree cloud and deprecated sources are not decoded).
        "Volume" => &[
            (1, "name", StrK, false),
            (2, "", Inline("VolumeSource"), false),
        ],
        "VolumeSource" => &[
            (1, "hostPath", Msg("HostPathVolumeSource"), false),
            (2, "emptyDir", Msg("EmptyDirVolumeSource"), false),
            (6, "secret", Msg("SecretVolumeSource"), false),
            (7, "nfs", Msg("NFSVolumeSource"), false),
            (
                10,
                "persistentVolumeClaim",
                Msg("PersistentVolumeClaimVolumeSource"),
                false,
            ),
            (16, "downwardAPI", Msg("DownwardAPIVolumeSource"), false),
            (19, "configMap", Msg("ConfigMapVolumeSource"), false),
            (26, "projected", Msg("ProjectedVolumeSource"), false),
            (28, "csi", Msg("CSIVolumeSource"), false),
            (29, "ephemeral", Msg("EphemeralVolumeSource"), false),
            (30, "image", Msg("ImageVolumeSource"), false),
        ],
        "HostPathVolumeSource" => &[(1, "path", StrK, false), (2, "type", StrK, false)],
        "EmptyDirVolumeSource" => &[
            (1, "medium", Str, false),
            (2, "sizeLimit", Quantity, false),
            (3, "mode", Int, false),
        ],
        "SecretVolumeSource" => &[
            (1, "secretName", Str, false),
            (2, "items", Msg("KeyToPath"), true),
            (3, "defaultMode", Int, false),
            (4, "optional", Bool, false),
            (5, "defaultUser", Int, false),
        ],
        "NFSVolumeSource" => &[
            (1, "server", StrK, false),
            (2, "path", StrK, false),
            (3, "readOnly", Bool0, false),
        ],
        "PersistentVolumeClaimVolumeSource" => {
            &[(1, "claimName", StrK, false), (2, "readOnly", Bool0, false)]
        }
        "DownwardAPIVolumeSource" => &[
            (1, "items", Msg("DownwardAPIVolumeFile"), true),
            (2, "defaultMode", Int, false),
            (3, "defaultUser", Int, false),
        ],
        "DownwardAPIVolumeFile" => &[
            (1, "path", StrK, false),
            (2, "fieldRef", Msg("ObjectFieldSelector"), false),
            (3, "resourceFieldRef", Msg("ResourceFieldSelector"), false),
            (4, "mode", Int, false),
            (5, "user", Int, false),
        ],
        "ConfigMapVolumeSource" => &[
            (1, "", Inline("LocalObjectReference"), false),
            (2, "items", Msg("KeyToPath"), true),
            (3, "defaultMode", Int, false),
            (4, "optional", Bool, false),
            (5, "defaultUser", Int, false),
        ],
        "KeyToPath" => &[
            (1, "key", StrK, false),
            (2, "path", StrK, false),
            (3, "mode", Int, false),
            (4, "user", Int, false),
        ],
        "ProjectedVolumeSource" => &[
            (1, "sources", Msg("VolumeProjection"), true),
            (2, "defaultMode", Int, false),
            (3, "defaultUser", Int, false),
        ],
        "VolumeProjection" => &[
            (1, "secret", Msg("SecretProjection"), false),
            (2, "downwardAPI", Msg("DownwardAPIProjection"), false),
            (3, "configMap", Msg("ConfigMapProjection"), false),
            (
                4,
                "serviceAccountToken",
                Msg("ServiceAccountTokenProjection"),
                false,
            ),
            (
                5,
                "clusterTrustBundle",
                Msg("ClusterTrustBundleProjection"),
                false,
            ),
            (6, "podCertificate", Msg("PodCertificateProjection"), false),
        ],
        "SecretProjection" => &[
            (1, "", Inline("LocalObjectReference"), false),
            (2, "items", Msg("KeyToPath"), true),
            (4, "optional", Bool, false),
        ],
        "DownwardAPIProjection" => &[(1, "items", Msg("DownwardAPIVolumeFile"), true)],
        "ConfigMapProjection" => &[
            (1, "", Inline("LocalObjectReference"), false),
            (2, "items", Msg("KeyToPath"), true),
            (4, "optional", Bool, false),
        ],
        "ServiceAccountTokenProjection" => &[
            (1, "audience", Str, false),
            (2, "expirationSeconds", Int, false),
            (3, "path", StrK, false),
            (4, "user", Int, false),
        ],
        "ClusterTrustBundleProjection" => &[
            (1, "name", StrK, false),
            (2, "signerName", StrK, false),
            (3, "labelSelector", Msg("LabelSelector"), false),
            (5, "optional", Bool, false),
            (4, "path", StrK, false),
            (6, "user", Int, false),
        ],
        "PodCertificateProjection" => &[
            (1, "signerName", Str, false),
            (2, "keyType", Str, false),
            (3, "maxExpirationSeconds", Int, false),
            (4, "credentialBundlePath", Str, false),
            (5, "keyPath", Str, false),
            (6, "certificateChainPath", Str, false),
            (7, "userAnnotations", MapStr, false),
            (8, "user", Int, false),
        ],
        "CSIVolumeSource" => &[
            (1, "driver", StrK, false),
            (2, "readOnly", Bool, false),
            (3, "fsType", StrK, false),
            (4, "volumeAttributes", MapStr, false),
            (
                5,
                "nodePublishSecretRef",
                Msg("LocalObjectReference"),
                false,
            ),
        ],
        "EphemeralVolumeSource" => &[(
            1,
            "volumeClaimTemplate",
            Msg("PersistentVolumeClaimTemplate"),
            false,
        )],
        "PersistentVolumeClaimTemplate" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("PersistentVolumeClaimSpec"), false),
        ],
        "PersistentVolumeClaimSpec" => &[
            (1, "accessModes", Str, true),
            (4, "selector", Msg("LabelSelector"), false),
            (2, "resources", Msg("VolumeResourceRequirements"), false),
            (3, "volumeName", Str, false),
            (5, "storageClassName", StrK, false),
            (6, "volumeMode", StrK, false),
            (7, "dataSource", Msg("TypedLocalObjectReference"), false),
            (8, "dataSourceRef", Msg("TypedObjectReference"), false),
            (9, "volumeAttributesClassName", StrK, false),
        ],
        "VolumeResourceRequirements" => &[
            (1, "limits", MapMsg("Quantity"), false),
            (2, "requests", MapMsg("Quantity"), false),
        ],
        "TypedLocalObjectReference" => &[
            (1, "apiGroup", StrK, false),
            (2, "kind", StrK, false),
            (3, "name", StrK, false),
        ],
        "TypedObjectReference" => &[
            (1, "apiGroup", StrK, false),
            (2, "kind", StrK, false),
            (3, "name", StrK, false),
            (4, "namespace", StrK, false),
        ],
        "ImageVolumeSource" => &[(1, "reference", Str, false), (2, "pullPolicy", Str, false)],
        // apps/v1 (kubectl create deployment).
        "Deployment" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("DeploymentSpec"), false),
            (3, "status", Msg("DeploymentStatus"), false),
        ],
        "DeploymentSpec" => &[
            (1, "replicas", Int, false),
            (2, "selector", Msg("LabelSelector"), false),
            (3, "template", Msg("PodTemplateSpec"), false),
            (4, "strategy", Msg("DeploymentStrategy"), false),
            (5, "minReadySeconds", Int0, false),
            (6, "revisionHistoryLimit", Int, false),
            (7, "paused", Bool0, false),
            (9, "progressDeadlineSeconds", Int, false),
        ],
        "DeploymentStrategy" => &[
            (1, "type", Str, false),
            (2, "rollingUpdate", Msg("RollingUpdateDeployment"), false),
        ],
        "RollingUpdateDeployment" => &[
            (1, "maxUnavailable", IntOrString, false),
            (2, "maxSurge", IntOrString, false),
        ],
        "DeploymentStatus" => &[
            (1, "observedGeneration", Int0, false),
            (2, "replicas", Int0, false),
            (3, "updatedReplicas", Int0, false),
            (7, "readyReplicas", Int0, false),
            (4, "availableReplicas", Int0, false),
            (5, "unavailableReplicas", Int0, false),
            (9, "terminatingReplicas", Int, false),
            (6, "conditions", Msg("DeploymentCondition"), true),
            (8, "collisionCount", Int, false),
        ],
        "DeploymentCondition" => &[
            (1, "type", StrK, false),
            (2, "status", StrK, false),
            (6, "lastUpdateTime", Time, false),
            (7, "lastTransitionTime", Time, false),
            (4, "reason", Str, false),
            (5, "message", Str, false),
        ],
        // batch/v1 (kubectl create job/cronjob).
        "Job" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("JobSpec"), false),
            (3, "status", Msg("JobStatus"), false),
        ],
        "JobSpec" => &[
            (1, "parallelism", Int, false),
            (2, "completions", Int, false),
            (3, "activeDeadlineSeconds", Int, false),
            (11, "podFailurePolicy", Msg("PodFailurePolicy"), false),
            (16, "successPolicy", Msg("SuccessPolicy"), false),
            (7, "backoffLimit", Int, false),
            (12, "backoffLimitPerIndex", Int, false),
            (13, "maxFailedIndexes", Int, false),
            (4, "selector", Msg("LabelSelector"), false),
            (5, "manualSelector", Bool, false),
            (6, "template", Msg("PodTemplateSpec"), false),
            (8, "ttlSecondsAfterFinished", Int, false),
            (9, "completionMode", StrK, false),
            (10, "suspend", Bool, false),
            (14, "podReplacementPolicy", StrK, false),
            (15, "managedBy", StrK, false),
        ],
        "PodFailurePolicy" => &[(1, "rules", Msg("PodFailurePolicyRule"), true)],
        "PodFailurePolicyRule" => &[
            (1, "action", StrK, false),
            (
                2,
                "onExitCodes",
                Msg("PodFailurePolicyOnExitCodesRequirement"),
                false,
            ),
            (
                3,
                "onPodConditions",
                Msg("PodFailurePolicyOnPodConditionsPattern"),
                true,
            ),
        ],
        "PodFailurePolicyOnExitCodesRequirement" => &[
            (1, "containerName", StrK, false),
            (2, "operator", StrK, false),
            (3, "values", Int, true),
        ],
        "PodFailurePolicyOnPodConditionsPattern" => {
            &[(1, "type", StrK, false), (2, "status", StrK, false)]
        }
        "SuccessPolicy" => &[(1, "rules", Msg("SuccessPolicyRule"), true)],
        "SuccessPolicyRule" => &[
            (1, "succeededIndexes", StrK, false),
            (2, "succeededCount", Int, false),
        ],
        "JobStatus" => &[
            (1, "conditions", Msg("JobCondition"), true),
            (2, "startTime", Time, false),
            (3, "completionTime", Time, false),
            (4, "active", Int0, false),
            (5, "succeeded", Int0, false),
            (6, "failed", Int0, false),
            (11, "terminating", Int, false),
            (7, "completedIndexes", Str, false),
            (10, "failedIndexes", StrK, false),
            (
                8,
                "uncountedTerminatedPods",
                Msg("UncountedTerminatedPods"),
                false,
            ),
            (9, "ready", Int, false),
        ],
        "JobCondition" => &[
            (1, "type", StrK, false),
            (2, "status", StrK, false),
            (3, "lastProbeTime", Time, false),
            (4, "lastTransitionTime", Time, false),
            (5, "reason", Str, false),
            (6, "message", Str, false),
        ],
        "UncountedTerminatedPods" => &[(1, "succeeded", Str, true), (2, "failed", Str, true)],
        "CronJob" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("CronJobSpec"), false),
            (3, "status", Msg("CronJobStatus"), false),
        ],
        "CronJobSpec" => &[
            (1, "schedule", StrK, false),
            (8, "timeZone", StrK, false),
            (2, "startingDeadlineSeconds", Int, false),
            (3, "concurrencyPolicy", Str, false),
            (4, "suspend", Bool, false),
            (5, "jobTemplate", Msg("JobTemplateSpec"), false),
            (6, "successfulJobsHistoryLimit", Int, false),
            (7, "failedJobsHistoryLimit", Int, false),
        ],
        "JobTemplateSpec" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("JobSpec"), false),
        ],
        "CronJobStatus" => &[
            (1, "active", Msg("ObjectReference"), true),
            (4, "lastScheduleTime", Time, false),
            (5, "lastSuccessfulTime", Time, false),
        ],
        // core/v1 Service (kubectl create service).
        "Service" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("ServiceSpec"), false),
            (3, "status", Msg("ServiceStatus"), false),
        ],
        "ServiceSpec" => &[
            (1, "ports", Msg("ServicePort"), true),
            (2, "selector", MapStr, false),
            (3, "clusterIP", Str, false),
            (18, "clusterIPs", Str, true),
            (4, "type", Str, false),
            (5, "externalIPs", Str, true),
            (7, "sessionAffinity", Str, false),
            (8, "loadBalancerIP", Str, false),
            (9, "loadBalancerSourceRanges", Str, true),
            (10, "externalName", Str, false),
            (11, "externalTrafficPolicy", Str, false),
            (12, "healthCheckNodePort", Int0, false),
            (13, "publishNotReadyAddresses", Bool0, false),
            (
                14,
                "sessionAffinityConfig",
                Msg("SessionAffinityConfig"),
                false,
            ),
            (19, "ipFamilies", Str, true),
            (17, "ipFamilyPolicy", StrK, false),
            (20, "allocateLoadBalancerNodePorts", Bool, false),
            (21, "loadBalancerClass", StrK, false),
            (22, "internalTrafficPolicy", StrK, false),
            (23, "trafficDistribution", StrK, false),
        ],
        "ServicePort" => &[
            (1, "name", Str, false),
            (2, "protocol", Str, false),
            (6, "appProtocol", StrK, false),
            (3, "port", Int, false),
            (4, "targetPort", IntOrString, false),
            (5, "nodePort", Int0, false),
        ],
        "SessionAffinityConfig" => &[(1, "clientIP", Msg("ClientIPConfig"), false)],
        "ClientIPConfig" => &[(1, "timeoutSeconds", Int, false)],
        "ServiceStatus" => &[
            (1, "loadBalancer", Msg("LoadBalancerStatus"), false),
            (2, "conditions", Msg("Condition"), true),
        ],
        "LoadBalancerStatus" => &[(1, "ingress", Msg("LoadBalancerIngress"), true)],
        "LoadBalancerIngress" => &[
            (1, "ip", Str, false),
            (2, "hostname", Str, false),
            (3, "ipMode", StrK, false),
            (4, "ports", Msg("PortStatus"), true),
        ],
        "PortStatus" => &[
            (1, "port", Int, false),
            (2, "protocol", StrK, false),
            (3, "error", StrK, false),
        ],
        // meta/v1 Condition, used by several statuses.
        "Condition" => &[
            (1, "type", StrK, false),
            (2, "status", StrK, false),
            (3, "observedGeneration", Int0, false),
            (4, "lastTransitionTime", Time, false),
            (5, "reason", StrK, false),
            (6, "message", StrK, false),
        ],
        // policy/v1 (kubectl create poddisruptionbudget).
        "PodDisruptionBudget" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("PodDisruptionBudgetSpec"), false),
            (3, "status", Msg("PodDisruptionBudgetStatus"), false),
        ],
        "PodDisruptionBudgetSpec" => &[
            (1, "minAvailable", IntOrString, false),
            (2, "selector", Msg("LabelSelector"), false),
            (3, "maxUnavailable", IntOrString, false),
            (4, "unhealthyPodEvictionPolicy", StrK, false),
        ],
        "PodDisruptionBudgetStatus" => &[
            (1, "observedGeneration", Int0, false),
            (2, "disruptedPods", MapMsg("Time"), false),
            (3, "disruptionsAllowed", Int, false),
            (4, "currentHealthy", Int, false),
            (5, "desiredHealthy", Int, false),
            (6, "expectedPods", Int, false),
            (7, "conditions", Msg("Condition"), true),
        ],
        // certificates.k8s.io/v1 (kubectl certificate approve|deny). spec.extra (6) is not
        // decoded: the approval and status subresources never take it from the body.
        "CertificateSigningRequest" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("CertificateSigningRequestSpec"), false),
            (3, "status", Msg("CertificateSigningRequestStatus"), false),
        ],
        "CertificateSigningRequestSpec" => &[
            (1, "request", Bytes, false),
            (2, "username", Str, false),
            (3, "uid", Str, false),
            (4, "groups", Str, true),
            (5, "usages", Str, true),
            (7, "signerName", Str, false),
            (8, "expirationSeconds", Int, false),
        ],
        "CertificateSigningRequestStatus" => &[
            (
                1,
                "conditions",
                Msg("CertificateSigningRequestCondition"),
                true,
            ),
            (2, "certificate", Bytes, false),
        ],
        "CertificateSigningRequestCondition" => &[
            (1, "type", StrK, false),
            (6, "status", StrK, false),
            (2, "reason", Str, false),
            (3, "message", Str, false),
            (5, "lastUpdateTime", Time, false),
            (4, "lastTransitionTime", Time, false),
        ],
        // scheduling.k8s.io/v1 (kubectl create priorityclass).
        "PriorityClass" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "value", Int, false),
            (3, "globalDefault", Bool0, false),
            (4, "description", Str, false),
            (5, "preemptionPolicy", StrK, false),
        ],
        // core/v1 ResourceQuota (kubectl create quota).
        "ResourceQuota" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("ResourceQuotaSpec"), false),
            (3, "status", Msg("ResourceQuotaStatus"), false),
        ],
        "ResourceQuotaSpec" => &[
            (1, "hard", MapMsg("Quantity"), false),
            (2, "scopes", Str, true),
            (3, "scopeSelector", Msg("ScopeSelector"), false),
        ],
        "ScopeSelector" => &[(
            1,
            "matchExpressions",
            Msg("ScopedResourceSelectorRequirement"),
            true,
        )],
        "ScopedResourceSelectorRequirement" => &[
            (1, "scopeName", StrK, false),
            (2, "operator", StrK, false),
            (3, "values", Str, true),
        ],
        "ResourceQuotaStatus" => &[
            (1, "hard", MapMsg("Quantity"), false),
            (2, "used", MapMsg("Quantity"), false),
        ],
        // networking.k8s.io/v1 (kubectl create ingress).
        "Ingress" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("IngressSpec"), false),
            (3, "status", Msg("IngressStatus"), false),
        ],
        "IngressSpec" => &[
            (4, "ingressClassName", StrK, false),
            (1, "defaultBackend", Msg("IngressBackend"), false),
            (2, "tls", Msg("IngressTLS"), true),
            (3, "rules", Msg("IngressRule"), true),
        ],
        "IngressBackend" => &[
            (4, "service", Msg("IngressServiceBackend"), false),
            (3, "resource", Msg("TypedLocalObjectReference"), false),
        ],
        "IngressServiceBackend" => &[
            (1, "name", StrK, false),
            (2, "port", Msg("ServiceBackendPort"), false),
        ],
        "ServiceBackendPort" => &[(1, "name", Str, false), (2, "number", Int0, false)],
        "IngressTLS" => &[(1, "hosts", Str, true), (2, "secretName", Str, false)],
        "IngressRule" => &[
            (1, "host", Str, false),
            (2, "", Inline("IngressRuleValue"), false),
        ],
        "IngressRuleValue" => &[(1, "http", Msg("HTTPIngressRuleValue"), false)],
        "HTTPIngressRuleValue" => &[(1, "paths", Msg("HTTPIngressPath"), true)],
        "HTTPIngressPath" => &[
            (1, "path", Str, false),
            (3, "pathType", StrK, false),
            (2, "backend", Msg("IngressBackend"), false),
        ],
        "IngressStatus" => &[(1, "loadBalancer", Msg("IngressLoadBalancerStatus"), false)],
        "IngressLoadBalancerStatus" => &[(1, "ingress", Msg("IngressLoadBalancerIngress"), true)],
        "IngressLoadBalancerIngress" => &[
            (1, "ip", Str, false),
            (2, "hostname", Str, false),
            (4, "ports", Msg("IngressPortStatus"), true),
        ],
        "IngressPortStatus" => &[
            (1, "port", Int, false),
            (2, "protocol", StrK, false),
            (3, "error", StrK, false),
        ],
        _ => return None,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad(msg: &str) -> ApiError {
    ApiError::bad_request(format!("unable to decode protobuf body: {msg}"))
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let len = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| bad("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn skip(&mut self, wire: u64) -> Result<(), ApiError> {
        match wire {
            0 => {
                self.varint()?;
            }
            1 => self.pos += 8,
            2 => {
                self.bytes()?;
            }
            5 => self.pos += 4,
            _ => return Err(bad("unsupported wire type")),
        }
        if self.pos > self.buf.len() {
            return Err(bad("truncated field"));
        }
        Ok(())
    }
}

fn text(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("invalid UTF-8"))
}

/// A map entry message: key = 1, value = 2.
fn map_entry(b: &[u8], value_bytes: bool) -> Result<(String, Value), ApiError> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while r.pos < r.buf.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => k = text(r.bytes()?)?,
            (2, 2) => {
                let raw = r.bytes()?;
                v = if value_bytes {
                    json!(base64::engine::general_purpose::STANDARD.encode(raw))
                } else {
                    json!(text(raw)?)
                };
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok((k, v))
}

fn time(b: &[u8]) -> Result<Value, ApiError> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut secs = 0i64;
    while r.pos < r.buf.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 0) => secs = r.varint()? as i64,
            (_, w) => r.skip(w)?,
        }
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    Ok(json!(crate::object::format_rfc3339(t)))
}

/// A map entry message whose value (2) is the message `name`.
fn map_msg_entry(b: &[u8], name: &str, depth: usize) -> Result<(String, Value), ApiError> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), None);
    while r.pos < r.buf.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => k = text(r.bytes()?)?,
            (2, 2) => v = Some(embedded(name, r.bytes()?, depth)?),
            (_, w) => r.skip(w)?,
        }
    }
    let v = match v {
        Some(v) => v,
        None => embedded(name, &[], depth)?,
    };
    Ok((k, v))
}

/// A message value, including the ones JSON renders as scalars.
fn embedded(name: &str, b: &[u8], depth: usize) -> Result<Value, ApiError> {
    match name {
        "Quantity" => quantity(b),
        "Time" => time(b),
        _ => message(name, b, depth + 1),
    }
}

fn quantity(b: &[u8]) -> Result<Value, ApiError> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut q = "0".to_string();
    while r.pos < r.buf.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => q = text(r.bytes()?)?,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(json!(q))
}

fn int_or_string(b: &[u8]) -> Result<Value, ApiError> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut kind, mut int, mut string) = (0u64, 0i64, String::new());
    while r.pos < r.buf.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 0) => kind = r.varint()?,
            (2, 0) => int = i64::from(r.varint()? as i32),
            (3, 2) => string = text(r.bytes()?)?,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(if kind == 0 { json!(int) } else { json!(string) })
}

fn message(name: &str, b: &[u8], depth: usize) -> Result<Value, ApiError> {
    if depth > 32 {
        return Err(bad("nested too deeply"));
    }
    let table = fields(name).ok_or_else(|| bad(&format!("{name} is not supported")))?;
    let mut out = Map::new();
    let mut r = Reader { buf: b, pos: 0 };
    while r.pos < r.buf.len() {
        let tag = r.varint()?;
        let (num, wire) = (tag >> 3, tag & 7);
        let Some(&(_, json_name, ty, repeated)) = table.iter().find(|f| u64::from(f.0) == num)
        else {
            r.skip(wire)?;
            continue;
        };
        let value = match (ty, wire) {
            (Ty::Int | Ty::Int0, 0) => json!(r.varint()? as i64),
            (Ty::Int, 2) if repeated => {
                // A packed repeated integer.
                let mut packed = Reader {
                    buf: r.bytes()?,
                    pos: 0,
                };
                let mut values = Vec::new();
                while packed.pos < packed.buf.len() {
                    values.push(json!(packed.varint()? as i64));
                }
                let list = out.entry(json_name).or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.extend(values);
                }
                continue;
            }
            (Ty::Bool | Ty::Bool0, 0) => json!(r.varint()? != 0),
            (Ty::Str | Ty::StrK, 2) => json!(text(r.bytes()?)?),
            (Ty::Quantity, 2) => quantity(r.bytes()?)?,
            (Ty::IntOrString, 2) => int_or_string(r.bytes()?)?,
            (Ty::Inline(m), 2) => {
                if let Value::Object(fields) = message(m, r.bytes()?, depth + 1)? {
                    out.extend(fields);
                }
                continue;
            }
            (Ty::MapMsg(m), 2) => {
                let (k, v) = map_msg_entry(r.bytes()?, m, depth)?;
                let m = out.entry(json_name).or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
            (Ty::Bytes, 2) => json!(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
            (Ty::Time, 2) => time(r.bytes()?)?,
            (Ty::Msg(m), 2) => message(m, r.bytes()?, depth + 1)?,
            (Ty::MapStr | Ty::MapBytes, 2) => {
                let (k, v) = map_entry(r.bytes()?, matches!(ty, Ty::MapBytes))?;
                let m = out.entry(json_name).or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
            (_, w) => {
                r.skip(w)?;
                continue;
            }
        };
        // Go marshals every non-pointer field, set or not: an empty string, the zero time
        // and a zero `omitempty` number or bool mean "unset" in JSON, where they would be omitted.
        let unset = match (&value, ty) {
            (Value::String(s), Ty::Str) => s.is_empty() && !repeated,
            (_, Ty::Time) => value == json!(crate::object::format_rfc3339(std::time::UNIX_EPOCH)),
            (Value::Number(n), Ty::Int0) => n.as_i64() == Some(0) && !repeated,
            (Value::Bool(b), Ty::Bool0) => !b && !repeated,
            _ => false,
        };
        if unset {
            continue;
        }
        if repeated {
            let list = out.entry(json_name).or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(value);
            }
        } else {
            out.insert(json_name.to_string(), value);
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a `k8s\0`-enveloped body into the JSON object it carries.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let inner = body
        .strip_prefix(b"k8s\x00")
        .ok_or_else(|| bad("missing the k8s protobuf envelope"))?;
    let unknown = message("Unknown", inner, 0)?;
    let kind = unknown["typeMeta"]["kind"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let api_version = unknown["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let raw = unknown["raw"]
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default();
    if fields(&kind).is_none() || kind == "Unknown" || kind == "TypeMeta" {
        return Err(ApiError::unsupported_media_type(&format!(
            "application/vnd.kubernetes.protobuf (kind {kind})"
        )));
    }
    let mut obj = message(&kind, &raw, 0)?;
    if let Some(m) = obj.as_object_mut() {
        m.insert("kind".into(), json!(kind));
        if !api_version.is_empty() {
            m.insert("apiVersion".into(), json!(api_version));
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((num << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn a_namespace_in_the_envelope_decodes_to_json() {
        let meta = field(1, b"team-a");
        let ns = field(1, &meta);
        let type_meta = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let unknown = [field(1, &type_meta), field(2, &ns)].concat();
        let body = [b"k8s\x00".as_slice(), &unknown].concat();
        let obj = decode(&body).expect("decodes");
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        );
    }

    #[test]
    fn secret_data_stays_base64_and_truncation_is_an_error() {
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let secret = [field(1, &field(1, b"s")), field(2, &entry)].concat();
        let obj = message("Secret", &secret, 0).expect("decodes");
        assert_eq!(obj["data"]["k"], "dg==");
        assert_eq!(decode(b"k8s\x00\x0a\xff").map_err(|e| e.code), Err(400));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// Decodes each captured body and compares it with the JSON kubectl prints for the same
    /// command under `--dry-run=client -o json` (less `creationTimestamp: null`, which the
    /// decoder drops like every zero time).
    fn assert_kubectl(cases: &[(&str, &str, &str)]) {
        for (command, body, expected) in cases {
            let got = decode(&hex(body)).unwrap_or_else(|e| panic!("{command}: {}", e.code));
            let expected: Value = serde_json::from_str(expected).expect("expected JSON");
            assert_eq!(got, expected, "{command}");
        }
    }

    // The fixtures below are request bodies stock kubectl v1.32.5 POSTed to a capturing server.

    #[test]
    fn kubectl_create_deployment_bodies_decode_as_their_json() {
        assert_kubectl(&[
        (
            "kubectl create deployment web --image=busybox --replicas=6",
            concat!(
                "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412af010a1f0a0377656212001a0022002a",
                "003200380042005a0a0a036170701203776562127e0806120c0a0a0a0361707012037765621a640a1c0a0012",
                "001a0022002a003200380042005a0a0a036170701203776562124412260a0762757379626f78120762757379",
                "626f782a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01",
                "009a0100c2010022020a00280038001a0c0800100018002000280038001a002200",
            ),
            r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","labels":{
                "app":"web"}},"spec":{"replicas":6,"selector":{"matchLabels":{"app":"web"}},
                "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{
                "name":"busybox","image":"busybox","resources":{}}]}},"strategy":{}},"status":{}}"#,
        ),
        (
            "kubectl create deployment d2 --image=busybox --image=nginx --port=80",
            concat!(
                "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412dd010a1d0a02643212001a0022002a00",
                "3200380042005a090a036170701202643212ad010801120b0a090a03617070120264321a93010a1b0a001200",
                "1a0022002a003200380042005a090a0361707012026432127412320a0762757379626f78120762757379626f",
                "782a00320a0a001000185022002a0042006a007200800100880100900100a2010012220a056e67696e781205",
                "6e67696e782a0042006a007200800100880100900100a201001a00320042004a005200580060006800820100",
                "8a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200",
            ),
            r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"d2","labels":{
                "app":"d2"}},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"d2"}},
                "template":{"metadata":{"labels":{"app":"d2"}},"spec":{"containers":[{
                "name":"busybox","image":"busybox","ports":[{"containerPort":80}],"resources":{}},
                {"name":"nginx","image":"nginx","resources":{}}]}},"strategy":{}},"status":{}}"#,
        ),
        (
            "kubectl create deployment d3 --image=nginx --replicas=0",
            concat!(
                "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412a7010a1d0a02643312001a0022002a00",
                "3200380042005a090a036170701202643312780800120b0a090a03617070120264331a5f0a1b0a0012001a00",
                "22002a003200380042005a090a0361707012026433124012220a056e67696e7812056e67696e782a0042006a",
                "007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022",
                "020a00280038001a0c0800100018002000280038001a002200",
            ),
            r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"d3","labels":{
                "app":"d3"}},"spec":{"replicas":0,"selector":{"matchLabels":{"app":"d3"}},
                "template":{"metadata":{"labels":{"app":"d3"}},"spec":{"containers":[{
                "name":"nginx","image":"nginx","resources":{}}]}},"strategy":{}},"status":{}}"#,
        ),
        ]);
    }

    #[test]
    fn kubectl_create_service_bodies_decode_as_their_json() {
        assert_kubectl(&[
        (
            "kubectl create service clusterip s1 --tcp=80:8080 --tcp=443",
            concat!(
                "6b3873000a0d0a0276311207536572766963651280010a1d0a02733112001a0022002a003200380042005a09",
                "0a0361707012027331125b0a1b0a0738302d38303830120354435018502207080010903f1a0028000a180a03",
                "343433120354435018bb032207080010bb031a00280012090a03617070120273311a002209436c7573746572",
                "49503a00420052005a00600068001a020a001a002200",
            ),
            r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"s1","labels":{"app":"s1"}},
                "spec":{"ports":[{"name":"80-8080","protocol":"TCP","port":80,"targetPort":8080},
                {"name":"443","protocol":"TCP","port":443,"targetPort":443}],"selector":{
                "app":"s1"},"type":"ClusterIP"},"status":{"loadBalancer":{}}}"#,
        ),
        (
            "kubectl create service nodeport s2 --tcp=80:http --node-port=30080",
            concat!(
                "6b3873000a0d0a027631120753657276696365126a0a1d0a02733212001a0022002a003200380042005a090a",
                "036170701202733212450a200a0738302d6874747012035443501850220a080110001a04687474702880eb01",
                "12090a03617070120273321a0022084e6f6465506f72743a00420052005a00600068001a020a001a002200",
            ),
            r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"s2","labels":{"app":"s2"}},
                "spec":{"ports":[{"name":"80-http","protocol":"TCP","port":80,
                "targetPort":"http","nodePort":30080}],"selector":{"app":"s2"},"type":"NodePort"},
                "status":{"loadBalancer":{}}}"#,
        ),
        (
            "kubectl create service loadbalancer s3 --tcp=5678:8080",
            concat!(
                "6b3873000a0d0a027631120753657276696365126c0a1d0a02733312001a0022002a003200380042005a090a",
                "036170701202733312470a1e0a09353637382d38303830120354435018ae2c2207080010903f1a0028001209",
                "0a03617070120273331a00220c4c6f616442616c616e6365723a00420052005a00600068001a020a001a0022",
                "00",
            ),
            r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"s3","labels":{"app":"s3"}},
                "spec":{"ports":[{"name":"5678-8080","protocol":"TCP","port":5678,
                "targetPort":8080}],"selector":{"app":"s3"},"type":"LoadBalancer"},"status":{
                "loadBalancer":{}}}"#,
        ),
        (
            "kubectl create service externalname s4 --external-name=example.com",
            concat!(
                "6b3873000a0d0a02763112075365727669636512570a1d0a02733412001a0022002a003200380042005a090a",
                "0361707012027334123212090a03617070120273341a00220c45787465726e616c4e616d653a004200520b65",
                "78616d706c652e636f6d5a00600068001a020a001a002200",
            ),
            r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"s4","labels":{"app":"s4"}},
                "spec":{"selector":{"app":"s4"},"type":"ExternalName",
                "externalName":"example.com"},"status":{"loadBalancer":{}}}"#,
        ),
        (
            "kubectl create service clusterip s5 --clusterip=None",
            concat!(
                "6b3873000a0d0a027631120753657276696365124d0a1d0a02733512001a0022002a003200380042005a090a",
                "0361707012027335122812090a03617070120273351a044e6f6e652209436c757374657249503a0042005200",
                "5a00600068001a020a001a002200",
            ),
            r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"s5","labels":{"app":"s5"}},
                "spec":{"selector":{"app":"s5"},"clusterIP":"None","type":"ClusterIP"},
                "status":{"loadBalancer":{}}}"#,
        ),
        ]);
    }

    #[test]
    fn kubectl_create_cronjob_and_job_bodies_decode_as_their_json() {
        assert_kubectl(&[
        (
            "kubectl create cronjob cj1 --image=busybox --schedule='*/5 * * * *' --restart=OnFailure -- date",
            concat!(
                "6b3873000a130a0862617463682f7631120743726f6e4a6f6212a7010a130a03636a3112001a0022002a0032",
                "0038004200128d010a0b2a2f35202a202a202a202a1a002a7c0a130a03636a3112001a0022002a0032003800",
                "4200126532630a100a0012001a0022002a00320038004200124f12280a03636a31120762757379626f781a04",
                "646174652a0042006a007200800100880100900100a201001a094f6e4661696c757265320042004a00520058",
                "00600068008201008a01009a0100c201001a001a002200",
            ),
            r#"{"kind":"CronJob","apiVersion":"batch/v1","metadata":{"name":"cj1"},"spec":{
                "schedule":"*/5 * * * *","jobTemplate":{"metadata":{"name":"cj1"},"spec":{
                "template":{"metadata":{},"spec":{"containers":[{"name":"cj1","image":"busybox",
                "command":["date"],"resources":{}}],"restartPolicy":"OnFailure"}}}}},"status":{}}"#,
        ),
        (
            "kubectl create job j1 --image=busybox -- sh -c 'echo hi'",
            concat!(
                "6b3873000a0f0a0862617463682f763112034a6f62128b010a120a026a3112001a0022002a00320038004200",
                "126b32690a100a0012001a0022002a00320038004200125512320a026a31120762757379626f781a0273681a",
                "022d631a076563686f2068692a0042006a007200800100880100900100a201001a054e65766572320042004a",
                "0052005800600068008201008a01009a0100c201001a082000280030003a001a002200",
            ),
            r#"{"kind":"Job","apiVersion":"batch/v1","metadata":{"name":"j1"},"spec":{
                "template":{"metadata":{},"spec":{"containers":[{"name":"j1","image":"busybox",
                "command":["sh","-c","echo hi"],"resources":{}}],"restartPolicy":"Never"}}},
                "status":{}}"#,
        ),
        ]);
    }

    #[test]
    fn kubectl_create_quota_body_decodes_as_its_json() {
        assert_kubectl(&[
        (
            "kubectl create quota q1 --hard=cpu=1,memory=1G,pods=2,services=3,requests.storage=2Gi --scopes=BestEffort,NotTerminating",
            concat!(
                "6b3873000a130a027631120d5265736f7572636551756f74611289010a120a02713112001a0022002a003200",
                "3800420012710a0a0a0363707512030a01310a0e0a066d656d6f727912040a0231470a0b0a04706f64731203",
                "0a01320a190a1072657175657374732e73746f7261676512050a033247690a0f0a0873657276696365731203",
                "0a0133120a426573744566666f7274120e4e6f745465726d696e6174696e671a001a002200",
            ),
            r#"{"kind":"ResourceQuota","apiVersion":"v1","metadata":{"name":"q1"},"spec":{
                "hard":{"cpu":"1","memory":"1G","pods":"2","requests.storage":"2Gi",
                "services":"3"},"scopes":["BestEffort","NotTerminating"]},"status":{}}"#,
        ),
        ]);
    }

    #[test]
    fn kubectl_create_pdb_priorityclass_and_ingress_bodies_decode_as_their_json() {
        assert_kubectl(&[
        (
            "kubectl create poddisruptionbudget pdb1 --selector=app=web --min-available=50%",
            concat!(
                "6b3873000a200a09706f6c6963792f76311213506f6444697372757074696f6e427564676574123d0a140a04",
                "7064623112001a0022002a0032003800420012190a09080110001a03353025120c0a0a0a0361707012037765",
                "621a0a080018002000280030001a002200",
            ),
            r#"{"kind":"PodDisruptionBudget","apiVersion":"policy/v1","metadata":{"name":"pdb1"},
                "spec":{"minAvailable":"50%","selector":{"matchLabels":{"app":"web"}}},
                "status":{"disruptionsAllowed":0,"currentHealthy":0,"desiredHealthy":0,
                "expectedPods":0}}"#,
        ),
        (
            "kubectl create poddisruptionbudget pdb2 --selector=app=web --max-unavailable=1",
            concat!(
                "6b3873000a200a09706f6c6963792f76311213506f6444697372757074696f6e427564676574123a0a140a04",
                "7064623212001a0022002a003200380042001216120c0a0a0a0361707012037765621a06080010011a001a0a",
                "080018002000280030001a002200",
            ),
            r#"{"kind":"PodDisruptionBudget","apiVersion":"policy/v1","metadata":{"name":"pdb2"},
                "spec":{"selector":{"matchLabels":{"app":"web"}},"maxUnavailable":1},"status":{
                "disruptionsAllowed":0,"currentHealthy":0,"desiredHealthy":0,"expectedPods":0}}"#,
        ),
        (
            "kubectl create priorityclass pc1 --value=1000 --description=high --global-default=false --preemption-policy=Never",
            concat!(
                "6b3873000a250a147363686564756c696e672e6b38732e696f2f7631120d5072696f72697479436c61737312",
                "270a130a0370633112001a0022002a0032003800420010e80718002204686967682a054e657665721a002200",
            ),
            r#"{"kind":"PriorityClass","apiVersion":"scheduling.k8s.io/v1","metadata":{
                "name":"pc1"},"value":1000,"description":"high","preemptionPolicy":"Never"}"#,
        ),
        (
            "kubectl create priorityclass pc0 --value=0",
            concat!(
                "6b3873000a250a147363686564756c696e672e6b38732e696f2f7631120d5072696f72697479436c61737312",
                "310a130a0370633012001a0022002a003200380042001000180022002a14507265656d70744c6f7765725072",
                "696f726974791a002200",
            ),
            r#"{"kind":"PriorityClass","apiVersion":"scheduling.k8s.io/v1","metadata":{
                "name":"pc0"},"value":0,"preemptionPolicy":"PreemptLowerPriority"}"#,
        ),
        (
            "kubectl create ingress i1 --class=default --rule=foo.com/=svc:8080 --rule=bar.com/admin*=svc2:http,tls=my-cert --default-backend=defsvc:http",
            concat!(
                "6b3873000a1f0a146e6574776f726b696e672e6b38732e696f2f76311207496e677265737312ae010a120a02",
                "693112001a0022002a003200380042001293010a1422120a0664656673766312080a0468747470100012120a",
                "076261722e636f6d12076d792d636572741a290a07666f6f2e636f6d121e0a1c0a1a0a012f120e220c0a0373",
                "766312050a0010903f1a0545786163741a330a076261722e636f6d12280a260a240a062f61646d696e121222",
                "100a047376633212080a046874747010001a06507265666978220764656661756c741a020a001a002200",
            ),
            r#"{"kind":"Ingress","apiVersion":"networking.k8s.io/v1","metadata":{"name":"i1"},
                "spec":{"ingressClassName":"default","defaultBackend":{"service":{
                "name":"defsvc","port":{"name":"http"}}},"tls":[{"hosts":["bar.com"],
                "secretName":"my-cert"}],"rules":[{"host":"foo.com","http":{"paths":[{"path":"/",
                "pathType":"Exact","backend":{"service":{"name":"svc","port":{"number":8080}}}}]}},
                {"host":"bar.com","http":{"paths":[{"path":"/admin","pathType":"Prefix",
                "backend":{"service":{"name":"svc2","port":{"name":"http"}}}}]}}]},"status":{
                "loadBalancer":{}}}"#,
        ),
        ]);
    }

    /// `kubectl create job --from=cronjob/rich`, the CronJob served with a pod template that sets
    /// most PodSpec fields: probes, resources, env sources, many volume kinds, affinity...
    #[test]
    fn kubectl_create_job_from_a_rich_cronjob_decodes_every_pod_field() {
        assert_kubectl(&[
        (
            "kubectl create job richjob --from=cronjob/rich",
            concat!(
                "6b3873000a0f0a0862617463682f763112034a6f62129c130a9e010a07726963686a6f6212001a0022002a00",
                "3200380042005a0d0a04746965721205626174636862060a0161120162622b0a2163726f6e6a6f622e6b7562",
                "65726e657465732e696f2f696e7374616e746961746512066d616e75616c6a410a0743726f6e4a6f621a0472",
                "696368222431313131313131312d323232322d333333332d343434342d3535353535353535353535352a0862",
                "617463682f7631300112ee110802100418d80432fa100a1d0a0012001a0022002a003200380042005a0b0a03",
                "61707012047269636812d8100a0d0a056361636865120412020a000a190a036d656d121212100a064d656d6f",
                "727912060a0436344d690a270a0363666712209a011d0a040a02636d12100a016112086170702e636f6e6618",
                "800218a40320000a100a03736563120932070a0373656318000a140a026870120e0a0c0a082f7661722f6c6f",
                "6712000a1e0a0368703212170a150a0b2f72756e2f782e736f636b1206536f636b65740a110a03707663120a",
                "52080a046461746110010a200a036e667312193a170a096e66732e6c6f63616c12082f6578706f7274731800",
                "0a4d0a046461706912458201420a1d0a066c6162656c7312130a00120f6d657461646174612e6c6162656c73",
                "0a210a036370751a1a0a046d61696e120c72657175657374732e6370751a040a02316d0aac010a0470726f6a",
                "12a301d2019f010a11220f0a0361706910901c1a05746f6b656e0a281a260a120a106b7562652d726f6f742d",
                "63612e63727412100a0663612e637274120663612e6372740a0a0a080a040a02733220010a2912270a250a09",
                "6e616d65737061636512180a02763112126d657461646174612e6e616d6573706163650a262a241212657861",
                "6d706c652e636f6d2f7369676e65721a00220a62756e646c652e70656d280110a4030a360a03637369122fe2",
                "012c0a0f6373692e6578616d706c652e636f6d100122090a0473697a651201312a0c0a0a6373692d73656372",
                "65740a5d0a036570681256ea01530a510a1a0a0012001a0022002a003200380042005a080a01741203657068",
                "12330a0d5265616457726974654f6e6365121212100a0773746f7261676512050a033147691a002a00320a46",
                "696c6573797374656d0a100a03626c6b120952070a03626c6b10000a270a03696d671220f2011d0a0d717561",
                "792e696f2f782f793a31120c49664e6f7450726573656e7412f5050a046d61696e120a6e67696e783a312e32",
                "371a056e67696e7822022d67220b6461656d6f6e206f66663b2a042f73727632110a04687474701000185022",
                "035443502a0032150a0010fb41180022035544502a07302e302e302e303a0a0a05504c41494e1201763a090a",
                "05454d50545912003a1f0a044e4f444512001a150a130a027631120d737065632e6e6f64654e616d653a270a",
                "034d454d12001a1e121c0a046d61696e120d6c696d6974732e6d656d6f72791a050a03314d693a160a03434d",
                "4b12001a0d1a0b0a040a02636d12016b18003a150a02534b12001a0d220b0a050a037365631202707742760a",
                "0d0a0363707512060a043530306d0a110a066d656d6f727912070a053132384d690a150a0e6e76696469612e",
                "636f6d2f67707512030a0131120d0a0363707512060a043130306d121a0a11657068656d6572616c2d73746f",
                "7261676512050a0331476912100a066d656d6f727912060a0436344d694a150a05636163686510001a062f63",
                "61636865220032004a230a0363666710011a082f6574632f63666722086170702e636f6e662a044e6f6e6532",
                "0052370a2912270a082f6865616c74687a120a080110001a04687474701a002204485454502a070a03582d41",
                "12001000180020052800300338005a190a0d1a0b0a07080010903f1a00120010001802200028013000621b0a",
                "130a110a0273680a022d630a076563686f2075701204220208056a142f6465762f7465726d696e6174696f6e",
                "2d6c6f677206416c776179737a470a100a094e45545f41444d494e1203414c4c100020e907300138004a0744",
                "656661756c7452111a0d436f6e7461696e6572557365722000620e0a094c6f63616c686f7374120170800101",
                "8801009001009a010f0a03434d5f12080a040a02636d10019a010b0a001a070a050a03736563a2011546616c",
                "6c6261636b546f4c6f67734f6e4572726f72aa01100a03626c6b12092f6465762f78766461b201130a072205",
                "08824712001000180020002800301eba01120a03637075120b4e6f7452657175697265641a054e6576657220",
                "00281e3217436c7573746572466972737457697468486f73744e65743a0b0a046469736b1203737364420672",
                "756e6e65724a00520058016000680072640a140a0012001a00220c73303a633132332c633435361000180020",
                "012002200328d00f30e8073a1a0a126e65742e636f72652e736f6d6178636f6e6e1204313032344a0e4f6e52",
                "6f6f744d69736d6174636852100a0e52756e74696d6544656661756c747a090a077265676372656482010168",
                "8a0103737562920198010a380a140a120a100a047a6f6e651202496e1a01611a01621220080a121c121a0a0d",
                "6d657461646174612e6e616d6512054e6f74496e1a026e31122a0a280a0b0a090a0361707012026462120178",
                "1a166b756265726e657465732e696f2f686f73746e616d651a30122e0864122a0a0f120d0a03617070120645",
                "78697374731a047a6f6e652a11706f642d74656d706c6174652d686173689a011164656661756c742d736368",
                "6564756c6572a2013a0a04696e6974120762757379626f781a0273681a022d631a04747275652a0042006a00",
                "7200800100880100900100a20100c20106416c77617973a80100b2011a0a016b1205457175616c1a01762209",
                "4e6f457865637574652800b2010e0a0012064578697374731a002200ba01200a0831302e302e302e31120966",
                "6f6f2e6c6f63616c12096261722e6c6f63616cc2010468696768c801fbffffffffffffffff01d201290a0731",
                "2e312e312e3112097376632e6c6f63616c1a0a0a056e646f74731201321a070a0565646e7330d80100e20113",
                "0a116578616d706c652e636f6d2f7265616479ea0100f00100fa01054e6576657282020d0a0363707512060a",
                "043235306d8a022f080112047a6f6e651a0d446f4e6f745363686564756c65220d0a0b0a0361707012047269",
                "636828023205486f6e6f72980200a202070a056c696e7578a80201b202060a0467617465380040004a07496e",
                "646578656450005a410a1b0a074661696c4a6f6212100a046d61696e1202496e18011802182a0a220a064967",
                "6e6f72651a180a1044697372757074696f6e5461726765741204547275656001680272064661696c65648201",
                "090a070a03302d3210011a082000280030003a001a002200",
            ),
            r#"{"kind":"Job","apiVersion":"batch/v1","metadata":{"name":"richjob","labels":{
                "tier":"batch"},"annotations":{"a":"b",
                "cronjob.kubernetes.io/instantiate":"manual"},"ownerReferences":[{
                "apiVersion":"batch/v1","kind":"CronJob","name":"rich",
                "uid":"11111111-2222-3333-4444-555555555555","controller":true}]},"spec":{
                "parallelism":2,"completions":4,"activeDeadlineSeconds":600,"podFailurePolicy":{
                "rules":[{"action":"FailJob","onExitCodes":{"containerName":"main",
                "operator":"In","values":[1,2,42]}},{"action":"Ignore","onPodConditions":[{
                "type":"DisruptionTarget","status":"True"}]}]},"successPolicy":{"rules":[{
                "succeededIndexes":"0-2","succeededCount":1}]},"backoffLimit":0,
                "backoffLimitPerIndex":1,"maxFailedIndexes":2,"template":{"metadata":{"labels":{
                "app":"rich"}},"spec":{"volumes":[{"name":"cache","emptyDir":{}},{"name":"mem",
                "emptyDir":{"medium":"Memory","sizeLimit":"64Mi"}},{"name":"cfg","configMap":{
                "name":"cm","items":[{"key":"a","path":"app.conf","mode":256}],"defaultMode":420,
                "optional":false}},{"name":"sec","secret":{"secretName":"sec","defaultMode":0}},
                {"name":"hp","hostPath":{"path":"/var/log","type":""}},{"name":"hp2",
                "hostPath":{"path":"/run/x.sock","type":"Socket"}},{"name":"pvc",
                "persistentVolumeClaim":{"claimName":"data","readOnly":true}},{"name":"nfs",
                "nfs":{"server":"nfs.local","path":"/exports"}},{"name":"dapi","downwardAPI":{
                "items":[{"path":"labels","fieldRef":{"fieldPath":"metadata.labels"}},{
                "path":"cpu","resourceFieldRef":{"containerName":"main",
                "resource":"requests.cpu","divisor":"1m"}}]}},{"name":"proj","projected":{
                "sources":[{"serviceAccountToken":{"audience":"api","expirationSeconds":3600,
                "path":"token"}},{"configMap":{"name":"kube-root-ca.crt","items":[{
                "key":"ca.crt","path":"ca.crt"}]}},{"secret":{"name":"s2","optional":true}},{
                "downwardAPI":{"items":[{"path":"namespace","fieldRef":{"apiVersion":"v1",
                "fieldPath":"metadata.namespace"}}]}},{"clusterTrustBundle":{
                "signerName":"example.com/signer","labelSelector":{},"optional":true,
                "path":"bundle.pem"}}],"defaultMode":420}},{"name":"csi","csi":{
                "driver":"csi.example.com","readOnly":true,"volumeAttributes":{"size":"1"},
                "nodePublishSecretRef":{"name":"csi-secret"}}},{"name":"eph","ephemeral":{
                "volumeClaimTemplate":{"metadata":{"labels":{"t":"eph"}},"spec":{"accessModes":[
                "ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}},
                "storageClassName":"","volumeMode":"Filesystem"}}}},{"name":"blk",
                "persistentVolumeClaim":{"claimName":"blk"}},{"name":"img","image":{
                "reference":"quay.io/x/y:1","pullPolicy":"IfNotPresent"}}],"initContainers":[{
                "name":"init","image":"busybox","command":["sh","-c","true"],"resources":{},
                "restartPolicy":"Always"}],"containers":[{"name":"main","image":"nginx:1.27",
                "command":["nginx"],"args":["-g","daemon off;"],"workingDir":"/srv","ports":[{
                "name":"http","containerPort":80,"protocol":"TCP"},{"hostPort":8443,
                "containerPort":0,"protocol":"UDP","hostIP":"0.0.0.0"}],"envFrom":[{
                "prefix":"CM_","configMapRef":{"name":"cm","optional":true}},{"secretRef":{
                "name":"sec"}}],"env":[{"name":"PLAIN","value":"v"},{"name":"EMPTY"},{
                "name":"NODE","valueFrom":{"fieldRef":{"apiVersion":"v1",
                "fieldPath":"spec.nodeName"}}},{"name":"MEM","valueFrom":{"resourceFieldRef":{
                "containerName":"main","resource":"limits.memory","divisor":"1Mi"}}},{
                "name":"CMK","valueFrom":{"configMapKeyRef":{"name":"cm","key":"k",
                "optional":false}}},{"name":"SK","valueFrom":{"secretKeyRef":{"name":"sec",
                "key":"pw"}}}],"resources":{"limits":{"cpu":"500m","memory":"128Mi",
                "nvidia.com/gpu":"1"},"requests":{"cpu":"100m","ephemeral-storage":"1Gi",
                "memory":"64Mi"}},"resizePolicy":[{"resourceName":"cpu",
                "restartPolicy":"NotRequired"}],"volumeMounts":[{"name":"cache",
                "mountPath":"/cache"},{"name":"cfg","readOnly":true,"mountPath":"/etc/cfg",
                "subPath":"app.conf","mountPropagation":"None"}],"volumeDevices":[{"name":"blk",
                "devicePath":"/dev/xvda"}],"livenessProbe":{"httpGet":{"path":"/healthz",
                "port":"http","scheme":"HTTP","httpHeaders":[{"name":"X-A","value":""}]},
                "periodSeconds":5,"failureThreshold":3,"terminationGracePeriodSeconds":0},
                "readinessProbe":{"tcpSocket":{"port":8080},"timeoutSeconds":2,
                "successThreshold":1},"startupProbe":{"grpc":{"port":9090,"service":""},
                "failureThreshold":30},"lifecycle":{"postStart":{"exec":{"command":["sh","-c",
                "echo up"]}},"preStop":{"sleep":{"seconds":5}}},
                "terminationMessagePath":"/dev/termination-log",
                "terminationMessagePolicy":"FallbackToLogsOnError","imagePullPolicy":"Always",
                "securityContext":{"capabilities":{"add":["NET_ADMIN"],"drop":["ALL"]},
                "privileged":false,"windowsOptions":{"runAsUserName":"ContainerUser",
                "hostProcess":false},"runAsUser":1001,"readOnlyRootFilesystem":true,
                "allowPrivilegeEscalation":false,"procMount":"Default","appArmorProfile":{
                "type":"Localhost","localhostProfile":"p"}},"stdin":true}],
                "restartPolicy":"Never","terminationGracePeriodSeconds":0,
                "activeDeadlineSeconds":30,"dnsPolicy":"ClusterFirstWithHostNet",
                "nodeSelector":{"disk":"ssd"},"serviceAccountName":"runner",
                "automountServiceAccountToken":false,"hostNetwork":true,
                "shareProcessNamespace":false,"securityContext":{"seLinuxOptions":{
                "level":"s0:c123,c456"},"runAsUser":0,"runAsGroup":1000,"runAsNonRoot":false,
                "supplementalGroups":[1,2,3],"fsGroup":2000,"sysctls":[{
                "name":"net.core.somaxconn","value":"1024"}],
                "fsGroupChangePolicy":"OnRootMismatch","seccompProfile":{"type":"RuntimeDefault"}},
                "imagePullSecrets":[{"name":"regcred"}],"hostname":"h","subdomain":"sub",
                "affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{
                "nodeSelectorTerms":[{"matchExpressions":[{"key":"zone","operator":"In",
                "values":["a","b"]}]}]},"preferredDuringSchedulingIgnoredDuringExecution":[{
                "weight":10,"preference":{"matchFields":[{"key":"metadata.name",
                "operator":"NotIn","values":["n1"]}]}}]},"podAffinity":{
                "requiredDuringSchedulingIgnoredDuringExecution":[{"labelSelector":{
                "matchLabels":{"app":"db"}},"namespaces":["x"],
                "topologyKey":"kubernetes.io/hostname"}]},"podAntiAffinity":{
                "preferredDuringSchedulingIgnoredDuringExecution":[{"weight":100,
                "podAffinityTerm":{"labelSelector":{"matchExpressions":[{"key":"app",
                "operator":"Exists"}]},"topologyKey":"zone","matchLabelKeys":[
                "pod-template-hash"]}}]}},"schedulerName":"default-scheduler","tolerations":[{
                "key":"k","operator":"Equal","value":"v","effect":"NoExecute",
                "tolerationSeconds":0},{"operator":"Exists"}],"hostAliases":[{"ip":"10.0.0.1",
                "hostnames":["foo.local","bar.local"]}],"priorityClassName":"high","priority":-5,
                "dnsConfig":{"nameservers":["1.1.1.1"],"searches":["svc.local"],"options":[{
                "name":"ndots","value":"2"},{"name":"edns0"}]},"readinessGates":[{
                "conditionType":"example.com/ready"}],"runtimeClassName":"",
                "enableServiceLinks":false,"preemptionPolicy":"Never","overhead":{"cpu":"250m"},
                "topologySpreadConstraints":[{"maxSkew":1,"topologyKey":"zone",
                "whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"app":"rich"}},
                "minDomains":2,"nodeAffinityPolicy":"Honor"}],"setHostnameAsFQDN":false,"os":{
                "name":"linux"},"hostUsers":true,"schedulingGates":[{"name":"gate"}]}},
                "ttlSecondsAfterFinished":0,"completionMode":"Indexed","suspend":false,
                "podReplacementPolicy":"Failed"},"status":{}}"#,
        ),
        ]);
    }

    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }

    /// A length-delimited field.
    fn ld(num: u32, payload: &[u8]) -> Vec<u8> {
        [
            varint(u64::from(num << 3 | 2)),
            varint(payload.len() as u64),
            payload.to_vec(),
        ]
        .concat()
    }

    fn st(num: u32, s: &str) -> Vec<u8> {
        ld(num, s.as_bytes())
    }

    /// A varint field (negative numbers sign-extended to ten bytes, as Go writes int32s).
    fn vi(num: u32, v: i64) -> Vec<u8> {
        [varint(u64::from(num << 3)), varint(v as u64)].concat()
    }

    /// A map<string, Quantity> entry.
    fn qty(num: u32, key: &str, q: &str) -> Vec<u8> {
        ld(num, &[st(1, key), ld(2, &st(1, q))].concat())
    }

    fn int_or_str(num: u32, int: Option<i64>, s: &str) -> Vec<u8> {
        let kind = i64::from(int.is_none());
        ld(
            num,
            &[vi(1, kind), vi(2, int.unwrap_or(0)), st(3, s)].concat(),
        )
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [st(1, api_version), st(2, kind)].concat();
        let unknown = [ld(1, &type_meta), ld(2, raw), st(3, ""), st(4, "")].concat();
        [b"k8s\x00".as_slice(), &unknown].concat()
    }

    /// ObjectMeta as Go writes it: every string, generation 0 and the zero creation time.
    fn meta(name: &str) -> Vec<u8> {
        [
            st(1, name),
            st(2, ""),
            st(3, "ns"),
            st(5, ""),
            st(6, ""),
            vi(7, 0),
            ld(8, &[]),
            ld(11, &[st(1, "app"), st(2, name)].concat()),
        ]
        .concat()
    }

    #[test]
    fn a_pod_with_probes_resources_env_and_volumes_decodes_as_its_json() {
        let http_get = [
            st(1, "/healthz"),
            int_or_str(2, None, "http"),
            st(3, ""),
            st(4, "HTTP"),
        ]
        .concat();
        let probe = |handler: Vec<u8>, initial: i64| {
            [
                ld(1, &handler),
                vi(2, initial),
                vi(3, 1),
                vi(4, 10),
                vi(5, 1),
                vi(6, 3),
            ]
            .concat()
        };
        let container = [
            st(1, "app"),
            st(2, "nginx"),
            st(3, "nginx"),
            st(4, "-g"),
            st(4, "daemon off;"),
            st(5, ""),
            ld(
                6,
                &[st(1, ""), vi(2, 0), vi(3, 80), st(4, "TCP"), st(5, "")].concat(),
            ),
            ld(7, &[st(1, "A"), st(2, "1")].concat()),
            ld(
                7,
                &[
                    st(1, "NODE"),
                    st(2, ""),
                    ld(3, &ld(1, &[st(1, "v1"), st(2, "spec.nodeName")].concat())),
                ]
                .concat(),
            ),
            ld(
                7,
                &[
                    st(1, "PW"),
                    st(2, ""),
                    ld(
                        3,
                        &ld(4, &[ld(1, &st(1, "sec")), st(2, "pw"), vi(3, 0)].concat()),
                    ),
                ]
                .concat(),
            ),
            ld(
                8,
                &[
                    qty(1, "cpu", "500m"),
                    qty(1, "memory", "128Mi"),
                    qty(2, "cpu", "100m"),
                ]
                .concat(),
            ),
            ld(
                9,
                &[
                    st(1, "cfg"),
                    vi(2, 1),
                    st(3, "/etc/cfg"),
                    st(4, ""),
                    st(6, ""),
                ]
                .concat(),
            ),
            ld(
                9,
                &[
                    st(1, "cache"),
                    vi(2, 0),
                    st(3, "/cache"),
                    st(4, ""),
                    st(6, ""),
                ]
                .concat(),
            ),
            ld(10, &probe(ld(2, &http_get), 0)),
            ld(
                11,
                &probe(
                    ld(3, &[int_or_str(1, Some(8080), ""), st(2, "")].concat()),
                    5,
                ),
            ),
            ld(
                22,
                &probe(ld(1, &[st(1, "cat"), st(1, "/ready")].concat()), 0),
            ),
            ld(12, &ld(2, &ld(4, &vi(1, 5)))),
            st(13, "/dev/termination-log"),
            st(20, "File"),
            st(14, "IfNotPresent"),
            ld(15, &[vi(4, 0), vi(7, 0)].concat()),
            vi(16, 0),
            vi(17, 0),
            vi(18, 0),
        ]
        .concat();
        let volumes = [
            ld(
                1,
                &[
                    st(1, "cache"),
                    ld(2, &ld(2, &[st(1, ""), ld(2, &st(1, "64Mi"))].concat())),
                ]
                .concat(),
            ),
            ld(
                1,
                &[
                    st(1, "cfg"),
                    ld(
                        2,
                        &ld(
                            19,
                            &[
                                ld(1, &st(1, "cm")),
                                ld(2, &[st(1, "a"), st(2, "a.conf")].concat()),
                                vi(3, 420),
                            ]
                            .concat(),
                        ),
                    ),
                ]
                .concat(),
            ),
            ld(
                1,
                &[
                    st(1, "tok"),
                    ld(
                        2,
                        &ld(
                            26,
                            &[
                                ld(
                                    1,
                                    &ld(4, &[st(1, ""), vi(2, 3600), st(3, "token")].concat()),
                                ),
                                vi(2, 420),
                            ]
                            .concat(),
                        ),
                    ),
                ]
                .concat(),
            ),
            ld(
                1,
                &[
                    st(1, "host"),
                    ld(2, &ld(1, &[st(1, "/var/log"), st(2, "")].concat())),
                ]
                .concat(),
            ),
        ]
        .concat();
        let spec = [
            volumes,
            ld(2, &container),
            st(3, "Always"),
            vi(4, 0),
            st(6, "ClusterFirst"),
            st(8, ""),
            st(9, ""),
            st(10, ""),
            vi(11, 0),
            vi(12, 0),
            vi(13, 0),
            ld(14, &[vi(2, 1000), vi(5, 2000), vi(4, 1), vi(4, 2)].concat()),
            st(16, ""),
            st(17, ""),
            st(19, ""),
            ld(
                22,
                &[
                    st(1, "k"),
                    st(2, "Exists"),
                    st(3, ""),
                    st(4, "NoExecute"),
                    vi(5, 0),
                ]
                .concat(),
            ),
            st(24, ""),
            vi(25, -5),
            vi(30, 0),
        ]
        .concat();
        let pod = [ld(1, &meta("p")), ld(2, &spec), ld(3, &[])].concat();
        let obj = decode(&envelope("v1", "Pod", &pod)).expect("decodes");
        let probe_json = |handler: Value, initial: Option<i64>| {
            let mut p = json!({
                "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                "failureThreshold": 3,
            });
            if let (Some(p), Value::Object(h)) = (p.as_object_mut(), handler) {
                p.extend(h);
                if let Some(i) = initial {
                    p.insert("initialDelaySeconds".into(), json!(i));
                }
            }
            p
        };
        let expected = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "p"}},
            "spec": {
                "volumes": [
                    {"name": "cache", "emptyDir": {"sizeLimit": "64Mi"}},
                    {"name": "cfg", "configMap": {
                        "name": "cm", "items": [{"key": "a", "path": "a.conf"}], "defaultMode": 420,
                    }},
                    {"name": "tok", "projected": {
                        "sources": [{"serviceAccountToken": {
                            "expirationSeconds": 3600, "path": "token",
                        }}],
                        "defaultMode": 420,
                    }},
                    {"name": "host", "hostPath": {"path": "/var/log", "type": ""}},
                ],
                "containers": [{
                    "name": "app",
                    "image": "nginx",
                    "command": ["nginx"],
                    "args": ["-g", "daemon off;"],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [
                        {"name": "A", "value": "1"},
                        {"name": "NODE", "valueFrom": {
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"},
                        }},
                        {"name": "PW", "valueFrom": {
                            "secretKeyRef": {"name": "sec", "key": "pw", "optional": false},
                        }},
                    ],
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                        "requests": {"cpu": "100m"},
                    },
                    "volumeMounts": [
                        {"name": "cfg", "readOnly": true, "mountPath": "/etc/cfg"},
                        {"name": "cache", "mountPath": "/cache"},
                    ],
                    "livenessProbe": probe_json(
                        json!({"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}}),
                        None,
                    ),
                    "readinessProbe": probe_json(json!({"tcpSocket": {"port": 8080}}), Some(5)),
                    "startupProbe": probe_json(json!({"exec": {"command": ["cat", "/ready"]}}), None),
                    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                    "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": false},
                }],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 0,
                "dnsPolicy": "ClusterFirst",
                "securityContext": {"runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [1, 2]},
                "tolerations": [{
                    "key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0,
                }],
                "priority": -5,
                "enableServiceLinks": false,
            },
            "status": {},
        });
        assert_eq!(obj, expected);
    }

    #[test]
    fn pointer_zeros_packed_ints_and_time_maps_decode() {
        // A Deployment scaled to zero keeps `replicas: 0`; the rolling update's IntOrStrings
        // come out as a number and a string.
        let rolling = [int_or_str(1, Some(0), ""), int_or_str(2, None, "25%")].concat();
        let spec = [
            vi(1, 0),
            ld(2, &[]),
            ld(4, &[st(1, "RollingUpdate"), ld(2, &rolling)].concat()),
            vi(5, 0),
            vi(7, 0),
        ]
        .concat();
        let status = [vi(1, 0), vi(2, 0), vi(3, 0), vi(4, 0), vi(5, 0), vi(7, 0)].concat();
        let deployment = [ld(1, &meta("d")), ld(2, &spec), ld(3, &status)].concat();
        let obj = message("Deployment", &deployment, 0).expect("decodes");
        assert_eq!(
            obj,
            json!({
                "metadata": {"name": "d", "namespace": "ns", "labels": {"app": "d"}},
                "spec": {
                    "replicas": 0,
                    "selector": {},
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
                    },
                },
                "status": {},
            })
        );

        // Exit codes may come packed or one per field.
        let packed = [varint(1), varint(2), varint(42)].concat();
        let on_exit = [st(1, "main"), st(2, "In"), ld(3, &packed), vi(3, 7)].concat();
        let rule = [st(1, "FailJob"), ld(2, &on_exit)].concat();
        let obj = message("PodFailurePolicy", &ld(1, &rule), 0).expect("decodes");
        assert_eq!(
            obj,
            json!({"rules": [{"action": "FailJob", "onExitCodes": {
                "containerName": "main", "operator": "In", "values": [1, 2, 42, 7],
            }}]})
        );

        // A PodDisruptionBudget status: map<string, Time> and non-omitempty zero counters.
        let disrupted = ld(2, &[st(1, "web-1"), ld(2, &vi(1, 1_700_000_000))].concat());
        let status = [vi(1, 3), disrupted, vi(3, 0), vi(4, 2), vi(5, 2), vi(6, 0)].concat();
        let obj = message("PodDisruptionBudgetStatus", &status, 0).expect("decodes");
        assert_eq!(
            obj,
            json!({
                "observedGeneration": 3,
                "disruptedPods": {"web-1": "2023-11-14T22:13:20Z"},
                "disruptionsAllowed": 0,
                "currentHealthy": 2,
                "desiredHealthy": 2,
                "expectedPods": 0,
            })
        );
    }

    /// Every message a table names has a table of its own.
    #[test]
    fn every_referenced_message_has_a_table() {
        let mut todo = vec![
            "Pod",
            "PodTemplateSpec",
            "Deployment",
            "Job",
            "CronJob",
            "Service",
            "PodDisruptionBudget",
            "PriorityClass",
            "ResourceQuota",
            "CertificateSigningRequest",
            "Ingress",
            "Namespace",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Eviction",
            "Role",
            "ClusterRole",
            "RoleBinding",
            "SelfSubjectAccessReview",
            "SubjectAccessReview",
            "SelfSubjectRulesReview",
            "TokenRequest",
            "TokenReview",
            "SelfSubjectReview",
        ];
        let mut seen = std::collections::HashSet::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name) {
                continue;
            }
            let table = fields(name).unwrap_or_else(|| panic!("no table for {name}"));
            for &(_, _, ty, _) in table {
                match ty {
                    Ty::Msg(m) | Ty::Inline(m) => todo.push(m),
                    Ty::MapMsg(m) if m != "Quantity" && m != "Time" => todo.push(m),
                    _ => {}
                }
            }
        }
        assert!(seen.len() > 150, "{}", seen.len());
    }
}
