//! The Kubernetes extensions upstream's Go struct tags and markers put on the definitions.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// One tagged field, as upstream's `types.go` declares it: (definition as `<package>.v1.<Type>`,
/// JSON field name or empty for the type itself, patch strategy, patch merge key, list type,
/// list map keys joined by commas, map type). Read from the k8s.io/api, apimachinery and
/// apiextensions-apiserver sources; fields the v1.33 types lack are skipped when applied.
type Tag = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

#[rustfmt::skip]
const TAGS: &[Tag] = &[
    ("admissionregistration.v1.Rule", "apiGroups", "", "", "atomic", "", ""),
    ("admissionregistration.v1.Rule", "apiVersions", "", "", "atomic", "", ""),
    ("admissionregistration.v1.Rule", "resources", "", "", "atomic", "", ""),
    ("admissionregistration.v1.ValidatingAdmissionPolicyStatus", "conditions", "", "", "map", "type", ""),
    ("admissionregistration.v1.TypeChecking", "expressionWarnings", "", "", "atomic", "", ""),
    ("admissionregistration.v1.ValidatingAdmissionPolicySpec", "validations", "", "", "atomic", "", ""),
    ("admissionregistration.v1.ValidatingAdmissionPolicySpec", "auditAnnotations", "", "", "atomic", "", ""),
    ("admissionregistration.v1.ValidatingAdmissionPolicySpec", "matchConditions", "merge", "name", "map", "name", ""),
    ("admissionregistration.v1.ValidatingAdmissionPolicySpec", "variables", "merge", "name", "map", "name", ""),
    ("admissionregistration.v1.ValidatingAdmissionPolicyBindingSpec", "validationActions", "", "", "set", "", ""),
    ("admissionregistration.v1.MatchResources", "resourceRules", "", "", "atomic", "", ""),
    ("admissionregistration.v1.MatchResources", "excludeResourceRules", "", "", "atomic", "", ""),
    ("admissionregistration.v1.NamedRuleWithOperations", "resourceNames", "", "", "atomic", "", ""),
    ("admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks", "merge", "name", "map", "name", ""),
    ("admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", "merge", "name", "map", "name", ""),
    ("admissionregistration.v1.ValidatingWebhook", "rules", "", "", "atomic", "", ""),
    ("admissionregistration.v1.ValidatingWebhook", "admissionReviewVersions", "", "", "atomic", "", ""),
    ("admissionregistration.v1.ValidatingWebhook", "matchConditions", "merge", "name", "map", "name", ""),
    ("admissionregistration.v1.MutatingWebhook", "rules", "", "", "atomic", "", ""),
    ("admissionregistration.v1.MutatingWebhook", "admissionReviewVersions", "", "", "atomic", "", ""),
    ("admissionregistration.v1.MutatingWebhook", "matchConditions", "merge", "name", "map", "name", ""),
    ("admissionregistration.v1.MutatingAdmissionPolicySpec", "variables", "", "", "atomic", "", ""),
    ("admissionregistration.v1.MutatingAdmissionPolicySpec", "mutations", "", "", "atomic", "", ""),
    ("admissionregistration.v1.MutatingAdmissionPolicySpec", "matchConditions", "merge", "name", "map", "name", ""),
    ("admissionregistration.v1.RuleWithOperations", "operations", "", "", "atomic", "", ""),
    ("apps.v1.StatefulSetSpec", "volumeClaimTemplates", "", "", "atomic", "", ""),
    ("apps.v1.StatefulSetStatus", "conditions", "merge", "type", "map", "type", ""),
    ("apps.v1.DeploymentSpec", "strategy", "retainKeys", "", "", "", ""),
    ("apps.v1.DeploymentStatus", "conditions", "merge", "type", "map", "type", ""),
    ("apps.v1.DaemonSetStatus", "conditions", "merge", "type", "map", "type", ""),
    ("apps.v1.ReplicaSetStatus", "conditions", "merge", "type", "map", "type", ""),
    ("authentication.v1.TokenReviewSpec", "audiences", "", "", "atomic", "", ""),
    ("authentication.v1.TokenReviewStatus", "audiences", "", "", "atomic", "", ""),
    ("authentication.v1.UserInfo", "groups", "", "", "atomic", "", ""),
    ("authentication.v1.TokenRequestSpec", "audiences", "", "", "atomic", "", ""),
    ("authorization.v1.LabelSelectorAttributes", "requirements", "", "", "atomic", "", ""),
    ("authorization.v1.FieldSelectorAttributes", "requirements", "", "", "atomic", "", ""),
    ("authorization.v1.SubjectAccessReviewSpec", "groups", "", "", "atomic", "", ""),
    ("authorization.v1.SubjectRulesReviewStatus", "resourceRules", "", "", "atomic", "", ""),
    ("authorization.v1.SubjectRulesReviewStatus", "nonResourceRules", "", "", "atomic", "", ""),
    ("authorization.v1.ResourceRule", "verbs", "", "", "atomic", "", ""),
    ("authorization.v1.ResourceRule", "apiGroups", "", "", "atomic", "", ""),
    ("authorization.v1.ResourceRule", "resources", "", "", "atomic", "", ""),
    ("authorization.v1.ResourceRule", "resourceNames", "", "", "atomic", "", ""),
    ("authorization.v1.NonResourceRule", "verbs", "", "", "atomic", "", ""),
    ("authorization.v1.NonResourceRule", "nonResourceURLs", "", "", "atomic", "", ""),
    ("batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", "", "", "set", "", ""),
    ("batch.v1.PodFailurePolicyRule", "onPodConditions", "", "", "atomic", "", ""),
    ("batch.v1.PodFailurePolicy", "rules", "", "", "atomic", "", ""),
    ("batch.v1.SuccessPolicy", "rules", "", "", "atomic", "", ""),
    ("batch.v1.JobSchedulingConfiguration", "resourceClaims", "merge", "name", "map", "name", ""),
    ("batch.v1.JobStatus", "conditions", "merge", "type", "atomic", "", ""),
    ("batch.v1.UncountedTerminatedPods", "succeeded", "", "", "set", "", ""),
    ("batch.v1.UncountedTerminatedPods", "failed", "", "", "set", "", ""),
    ("batch.v1.CronJobStatus", "active", "", "", "atomic", "", ""),
    ("certificates.v1.CertificateSigningRequestSpec", "usages", "", "", "atomic", "", ""),
    ("certificates.v1.CertificateSigningRequestSpec", "groups", "", "", "atomic", "", ""),
    ("certificates.v1.CertificateSigningRequestStatus", "conditions", "", "", "map", "type", ""),
    ("certificates.v1.PodCertificateRequestStatus", "conditions", "merge", "type", "map", "type", ""),
    ("core.v1.PersistentVolumeSpec", "accessModes", "", "", "atomic", "", ""),
    ("core.v1.PersistentVolumeSpec", "mountOptions", "", "", "atomic", "", ""),
    ("core.v1.PersistentVolumeClaimSpec", "accessModes", "", "", "atomic", "", ""),
    ("core.v1.VolumeHealthStatus", "healthConditions", "merge", "status", "map", "status,reason", ""),
    ("core.v1.PodVolumeHealth", "healthConditions", "merge", "status", "map", "status,reason", ""),
    ("core.v1.PersistentVolumeClaimStatus", "accessModes", "", "", "atomic", "", ""),
    ("core.v1.PersistentVolumeClaimStatus", "conditions", "merge", "type", "map", "type", ""),
    ("core.v1.PersistentVolumeClaimStatus", "allocatedResourceStatuses", "", "", "", "", "granular"),
    ("core.v1.RBDVolumeSource", "monitors", "", "", "atomic", "", ""),
    ("core.v1.RBDPersistentVolumeSource", "monitors", "", "", "atomic", "", ""),
    ("core.v1.CephFSVolumeSource", "monitors", "", "", "atomic", "", ""),
    ("core.v1.CephFSPersistentVolumeSource", "monitors", "", "", "atomic", "", ""),
    ("core.v1.SecretVolumeSource", "items", "", "", "atomic", "", ""),
    ("core.v1.SecretProjection", "items", "", "", "atomic", "", ""),
    ("core.v1.ISCSIVolumeSource", "portals", "", "", "atomic", "", ""),
    ("core.v1.ISCSIPersistentVolumeSource", "portals", "", "", "atomic", "", ""),
    ("core.v1.FCVolumeSource", "targetWWNs", "", "", "atomic", "", ""),
    ("core.v1.FCVolumeSource", "wwids", "", "", "atomic", "", ""),
    ("core.v1.ConfigMapVolumeSource", "items", "", "", "atomic", "", ""),
    ("core.v1.ConfigMapProjection", "items", "", "", "atomic", "", ""),
    ("core.v1.ProjectedVolumeSource", "sources", "", "", "atomic", "", ""),
    ("core.v1.VolumeMount", "bindMountOptions", "", "", "set", "", ""),
    ("core.v1.HTTPGetAction", "httpHeaders", "", "", "atomic", "", ""),
    ("core.v1.ExecAction", "command", "", "", "atomic", "", ""),
    ("core.v1.Capabilities", "add", "", "", "atomic", "", ""),
    ("core.v1.Capabilities", "drop", "", "", "atomic", "", ""),
    ("core.v1.ResourceRequirements", "claims", "", "", "map", "name", ""),
    ("core.v1.Container", "command", "", "", "atomic", "", ""),
    ("core.v1.Container", "args", "", "", "atomic", "", ""),
    ("core.v1.Container", "ports", "merge", "containerPort", "map", "containerPort,protocol", ""),
    ("core.v1.Container", "envFrom", "", "", "atomic", "", ""),
    ("core.v1.Container", "env", "merge", "name", "map", "name", ""),
    ("core.v1.Container", "resizePolicy", "", "", "atomic", "", ""),
    ("core.v1.Container", "restartPolicyRules", "", "", "atomic", "", ""),
    ("core.v1.Container", "volumeMounts", "merge", "mountPath", "map", "mountPath", ""),
    ("core.v1.Container", "volumeDevices", "merge", "devicePath", "map", "devicePath", ""),
    ("core.v1.ContainerStatus", "volumeMounts", "merge", "mountPath", "map", "mountPath", ""),
    ("core.v1.ContainerStatus", "allocatedResourcesStatus", "merge", "name", "map", "name", ""),
    ("core.v1.ResourceStatus", "resources", "", "", "map", "resourceID", ""),
    ("core.v1.LinuxContainerUser", "supplementalGroups", "", "", "atomic", "", ""),
    ("core.v1.ContainerRestartRuleOnExitCodes", "values", "", "", "set", "", ""),
    ("core.v1.NodeSelector", "nodeSelectorTerms", "", "", "atomic", "", ""),
    ("core.v1.NodeSelectorTerm", "matchExpressions", "", "", "atomic", "", ""),
    ("core.v1.NodeSelectorTerm", "matchFields", "", "", "atomic", "", ""),
    ("core.v1.NodeSelectorRequirement", "values", "", "", "atomic", "", ""),
    ("core.v1.TopologySelectorTerm", "matchLabelExpressions", "", "", "atomic", "", ""),
    ("core.v1.TopologySelectorLabelRequirement", "values", "", "", "atomic", "", ""),
    ("core.v1.PodAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", "", ""),
    ("core.v1.PodAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", "", ""),
    ("core.v1.PodAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", "", ""),
    ("core.v1.PodAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", "", ""),
    ("core.v1.PodAffinityTerm", "namespaces", "", "", "atomic", "", ""),
    ("core.v1.PodAffinityTerm", "matchLabelKeys", "", "", "atomic", "", ""),
    ("core.v1.PodAffinityTerm", "mismatchLabelKeys", "", "", "atomic", "", ""),
    ("core.v1.NodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", "", ""),
    ("core.v1.PodSpec", "volumes", "merge,retainKeys", "name", "map", "name", ""),
    ("core.v1.PodSpec", "initContainers", "merge", "name", "map", "name", ""),
    ("core.v1.PodSpec", "containers", "merge", "name", "map", "name", ""),
    ("core.v1.PodSpec", "ephemeralContainers", "merge", "name", "map", "name", ""),
    ("core.v1.PodSpec", "nodeSelector", "", "", "", "", "atomic"),
    ("core.v1.PodSpec", "imagePullSecrets", "merge", "name", "map", "name", ""),
    ("core.v1.PodSpec", "tolerations", "", "", "atomic", "", ""),
    ("core.v1.PodSpec", "hostAliases", "merge", "ip", "map", "ip", ""),
    ("core.v1.PodSpec", "readinessGates", "", "", "atomic", "", ""),
    ("core.v1.PodSpec", "topologySpreadConstraints", "merge", "topologyKey", "map", "topologyKey,whenUnsatisfiable", ""),
    ("core.v1.PodSpec", "schedulingGates", "merge", "name", "map", "name", ""),
    ("core.v1.PodSpec", "resourceClaims", "merge,retainKeys", "name", "map", "name", ""),
    ("core.v1.PodSpec", "evictionResponders", "merge", "name", "map", "name", ""),
    ("core.v1.PodExtendedResourceClaimStatus", "requestMappings", "", "", "atomic", "", ""),
    ("core.v1.TopologySpreadConstraint", "matchLabelKeys", "", "", "atomic", "", ""),
    ("core.v1.HostAlias", "hostnames", "", "", "atomic", "", ""),
    ("core.v1.PodSecurityContext", "supplementalGroups", "", "", "atomic", "", ""),
    ("core.v1.PodSecurityContext", "sysctls", "", "", "atomic", "", ""),
    ("core.v1.PodDNSConfig", "nameservers", "", "", "atomic", "", ""),
    ("core.v1.PodDNSConfig", "searches", "", "", "atomic", "", ""),
    ("core.v1.PodDNSConfig", "options", "", "", "atomic", "", ""),
    ("core.v1.EphemeralContainerCommon", "command", "", "", "atomic", "", ""),
    ("core.v1.EphemeralContainerCommon", "args", "", "", "atomic", "", ""),
    ("core.v1.EphemeralContainerCommon", "ports", "merge", "containerPort", "map", "containerPort,protocol", ""),
    ("core.v1.EphemeralContainerCommon", "envFrom", "", "", "atomic", "", ""),
    ("core.v1.EphemeralContainerCommon", "env", "merge", "name", "map", "name", ""),
    ("core.v1.EphemeralContainerCommon", "resizePolicy", "", "", "atomic", "", ""),
    ("core.v1.EphemeralContainerCommon", "restartPolicyRules", "", "", "atomic", "", ""),
    ("core.v1.EphemeralContainerCommon", "volumeMounts", "merge", "mountPath", "map", "mountPath", ""),
    ("core.v1.EphemeralContainerCommon", "volumeDevices", "merge", "devicePath", "map", "devicePath", ""),
    ("core.v1.PodStatus", "conditions", "merge", "type", "map", "type", ""),
    ("core.v1.PodStatus", "hostIPs", "merge", "ip", "atomic", "", ""),
    ("core.v1.PodStatus", "podIPs", "merge", "ip", "map", "ip", ""),
    ("core.v1.PodStatus", "initContainerStatuses", "", "", "atomic", "", ""),
    ("core.v1.PodStatus", "containerStatuses", "", "", "atomic", "", ""),
    ("core.v1.PodStatus", "ephemeralContainerStatuses", "", "", "atomic", "", ""),
    ("core.v1.PodStatus", "resourceClaimStatuses", "merge,retainKeys", "name", "map", "name", ""),
    ("core.v1.PodStatus", "nodeAllocatableResourceClaimStatuses", "merge", "resourceClaimName", "map", "resourceClaimName", ""),
    ("core.v1.PodStatus", "volumeHealth", "", "", "map", "name", ""),
    ("core.v1.ReplicationControllerSpec", "selector", "", "", "", "", "atomic"),
    ("core.v1.ReplicationControllerStatus", "conditions", "merge", "type", "map", "type", ""),
    ("core.v1.ServiceStatus", "conditions", "merge", "type", "map", "type", ""),
    ("core.v1.LoadBalancerStatus", "ingress", "", "", "atomic", "", ""),
    ("core.v1.LoadBalancerIngress", "ports", "", "", "atomic", "", ""),
    ("core.v1.ServiceSpec", "ports", "merge", "port", "map", "port,protocol", ""),
    ("core.v1.ServiceSpec", "selector", "", "", "", "", "atomic"),
    ("core.v1.ServiceSpec", "clusterIPs", "", "", "atomic", "", ""),
    ("core.v1.ServiceSpec", "externalIPs", "", "", "atomic", "", ""),
    ("core.v1.ServiceSpec", "loadBalancerSourceRanges", "", "", "atomic", "", ""),
    ("core.v1.ServiceSpec", "ipFamilies", "", "", "atomic", "", ""),
    ("core.v1.ServiceAccount", "secrets", "merge", "name", "map", "name", ""),
    ("core.v1.ServiceAccount", "imagePullSecrets", "", "", "atomic", "", ""),
    ("core.v1.Endpoints", "subsets", "", "", "atomic", "", ""),
    ("core.v1.EndpointSubset", "addresses", "", "", "atomic", "", ""),
    ("core.v1.EndpointSubset", "notReadyAddresses", "", "", "atomic", "", ""),
    ("core.v1.EndpointSubset", "ports", "", "", "atomic", "", ""),
    ("core.v1.NodeSpec", "podCIDRs", "merge", "", "set", "", ""),
    ("core.v1.NodeSpec", "taints", "", "", "atomic", "", ""),
    ("core.v1.NodePodPreemptionPolicy", "disableResizePreemption", "", "", "set", "", ""),
    ("core.v1.NodeStatus", "conditions", "merge", "type", "map", "type", ""),
    ("core.v1.NodeStatus", "addresses", "merge", "type", "map", "type", ""),
    ("core.v1.NodeStatus", "images", "", "", "atomic", "", ""),
    ("core.v1.NodeStatus", "volumesInUse", "", "", "atomic", "", ""),
    ("core.v1.NodeStatus", "volumesAttached", "", "", "atomic", "", ""),
    ("core.v1.NodeStatus", "runtimeHandlers", "", "", "atomic", "", ""),
    ("core.v1.NodeStatus", "declaredFeatures", "", "", "atomic", "", ""),
    ("core.v1.AvoidPods", "preferAvoidPods", "", "", "atomic", "", ""),
    ("core.v1.ContainerImage", "names", "", "", "atomic", "", ""),
    ("core.v1.NamespaceSpec", "finalizers", "", "", "atomic", "", ""),
    ("core.v1.NamespaceStatus", "conditions", "merge", "type", "map", "type", ""),
    ("core.v1.PodExecOptions", "command", "", "", "atomic", "", ""),
    ("core.v1.PodPortForwardOptions", "ports", "", "", "atomic", "", ""),
    ("core.v1.LimitRangeSpec", "limits", "", "", "atomic", "", ""),
    ("core.v1.ResourceQuotaSpec", "scopes", "", "", "atomic", "", ""),
    ("core.v1.ScopeSelector", "matchExpressions", "", "", "atomic", "", ""),
    ("core.v1.ScopedResourceSelectorRequirement", "values", "", "", "atomic", "", ""),
    ("core.v1.ComponentStatus", "conditions", "merge", "type", "map", "type", ""),
    ("core.v1.DownwardAPIVolumeSource", "items", "", "", "atomic", "", ""),
    ("core.v1.DownwardAPIProjection", "items", "", "", "atomic", "", ""),
    ("core.v1.NodeAllocatableResourceClaimStatus", "containers", "", "", "set", "", ""),
    ("core.v1.NodeAllocatableResourceClaimStatus", "mapping", "merge", "name", "map", "name", ""),
    ("core.v1.NodeAllocatableResourceClaimStatus", "overhead", "merge", "name", "map", "name", ""),
    ("discovery.v1.EndpointSlice", "endpoints", "", "", "atomic", "", ""),
    ("discovery.v1.EndpointSlice", "ports", "", "", "atomic", "", ""),
    ("discovery.v1.Endpoint", "addresses", "", "", "set", "", ""),
    ("discovery.v1.EndpointHints", "forZones", "", "", "atomic", "", ""),
    ("discovery.v1.EndpointHints", "forNodes", "", "", "atomic", "", ""),
    ("flowcontrol.v1.FlowSchemaSpec", "rules", "", "", "atomic", "", ""),
    ("flowcontrol.v1.PolicyRulesWithSubjects", "subjects", "", "", "atomic", "", ""),
    ("flowcontrol.v1.PolicyRulesWithSubjects", "resourceRules", "", "", "atomic", "", ""),
    ("flowcontrol.v1.PolicyRulesWithSubjects", "nonResourceRules", "", "", "atomic", "", ""),
    ("flowcontrol.v1.ResourcePolicyRule", "verbs", "", "", "set", "", ""),
    ("flowcontrol.v1.ResourcePolicyRule", "apiGroups", "", "", "set", "", ""),
    ("flowcontrol.v1.ResourcePolicyRule", "resources", "", "", "set", "", ""),
    ("flowcontrol.v1.ResourcePolicyRule", "namespaces", "", "", "set", "", ""),
    ("flowcontrol.v1.NonResourcePolicyRule", "verbs", "", "", "set", "", ""),
    ("flowcontrol.v1.NonResourcePolicyRule", "nonResourceURLs", "", "", "set", "", ""),
    ("flowcontrol.v1.FlowSchemaStatus", "conditions", "merge", "type", "map", "type", ""),
    ("flowcontrol.v1.PriorityLevelConfigurationStatus", "conditions", "merge", "type", "map", "type", ""),
    ("networking.v1.NetworkPolicySpec", "ingress", "", "", "atomic", "", ""),
    ("networking.v1.NetworkPolicySpec", "egress", "", "", "atomic", "", ""),
    ("networking.v1.NetworkPolicySpec", "policyTypes", "", "", "atomic", "", ""),
    ("networking.v1.NetworkPolicyIngressRule", "ports", "", "", "atomic", "", ""),
    ("networking.v1.NetworkPolicyIngressRule", "from", "", "", "atomic", "", ""),
    ("networking.v1.NetworkPolicyEgressRule", "ports", "", "", "atomic", "", ""),
    ("networking.v1.NetworkPolicyEgressRule", "to", "", "", "atomic", "", ""),
    ("networking.v1.IPBlock", "except", "", "", "atomic", "", ""),
    ("networking.v1.IngressSpec", "tls", "", "", "atomic", "", ""),
    ("networking.v1.IngressSpec", "rules", "", "", "atomic", "", ""),
    ("networking.v1.IngressTLS", "hosts", "", "", "atomic", "", ""),
    ("networking.v1.IngressLoadBalancerStatus", "ingress", "", "", "atomic", "", ""),
    ("networking.v1.IngressLoadBalancerIngress", "ports", "", "", "atomic", "", ""),
    ("networking.v1.HTTPIngressRuleValue", "paths", "", "", "atomic", "", ""),
    ("networking.v1.ServiceCIDRSpec", "cidrs", "", "", "atomic", "", ""),
    ("networking.v1.ServiceCIDRStatus", "conditions", "merge", "type", "map", "type", ""),
    ("node.v1.Scheduling", "nodeSelector", "", "", "", "", "atomic"),
    ("node.v1.Scheduling", "tolerations", "", "", "atomic", "", ""),
    ("policy.v1.PodDisruptionBudgetSpec", "selector", "replace", "", "", "", ""),
    ("policy.v1.PodDisruptionBudgetStatus", "conditions", "merge", "type", "map", "type", ""),
    ("rbac.v1.PolicyRule", "verbs", "", "", "atomic", "", ""),
    ("rbac.v1.PolicyRule", "apiGroups", "", "", "atomic", "", ""),
    ("rbac.v1.PolicyRule", "resources", "", "", "atomic", "", ""),
    ("rbac.v1.PolicyRule", "resourceNames", "", "", "atomic", "", ""),
    ("rbac.v1.PolicyRule", "nonResourceURLs", "", "", "atomic", "", ""),
    ("rbac.v1.Role", "rules", "", "", "atomic", "", ""),
    ("rbac.v1.RoleBinding", "subjects", "", "", "atomic", "", ""),
    ("rbac.v1.ClusterRole", "rules", "", "", "atomic", "", ""),
    ("rbac.v1.AggregationRule", "clusterRoleSelectors", "", "", "atomic", "", ""),
    ("rbac.v1.ClusterRoleBinding", "subjects", "", "", "atomic", "", ""),
    ("storage.v1.StorageClass", "mountOptions", "", "", "atomic", "", ""),
    ("storage.v1.StorageClass", "allowedTopologies", "", "", "atomic", "", ""),
    ("storage.v1.CSIDriverSpec", "volumeLifecycleModes", "", "", "set", "", ""),
    ("storage.v1.CSIDriverSpec", "tokenRequests", "", "", "atomic", "", ""),
    ("storage.v1.CSINodeSpec", "drivers", "merge", "name", "map", "name", ""),
    ("storage.v1.CSINodeDriver", "topologyKeys", "", "", "atomic", "", ""),
    ("storage.v1.StorageHealth", "healthConditions", "", "", "atomic", "", ""),
    ("storage.v1.CSINodeStatus", "storageHealth", "merge", "name", "map", "name", ""),
    ("meta.v1.ObjectMeta", "ownerReferences", "merge", "uid", "map", "uid", ""),
    ("meta.v1.ObjectMeta", "finalizers", "merge", "", "set", "", ""),
    ("meta.v1.ObjectMeta", "managedFields", "", "", "atomic", "", ""),
    ("meta.v1.DeleteOptions", "dryRun", "", "", "atomic", "", ""),
    ("meta.v1.CreateOptions", "dryRun", "", "", "atomic", "", ""),
    ("meta.v1.PatchOptions", "dryRun", "", "", "atomic", "", ""),
    ("meta.v1.ApplyOptions", "dryRun", "", "", "atomic", "", ""),
    ("meta.v1.UpdateOptions", "dryRun", "", "", "atomic", "", ""),
    ("meta.v1.StatusDetails", "causes", "", "", "atomic", "", ""),
    ("meta.v1.APIVersions", "versions", "", "", "atomic", "", ""),
    ("meta.v1.APIVersions", "serverAddressByClientCIDRs", "", "", "atomic", "", ""),
    ("meta.v1.APIGroupList", "groups", "", "", "atomic", "", ""),
    ("meta.v1.APIGroup", "versions", "", "", "atomic", "", ""),
    ("meta.v1.APIGroup", "serverAddressByClientCIDRs", "", "", "atomic", "", ""),
    ("meta.v1.APIResource", "shortNames", "", "", "atomic", "", ""),
    ("meta.v1.APIResource", "categories", "", "", "atomic", "", ""),
    ("meta.v1.APIResourceList", "resources", "", "", "atomic", "", ""),
    ("meta.v1.RootPaths", "paths", "", "", "atomic", "", ""),
    ("meta.v1.LabelSelector", "matchExpressions", "", "", "atomic", "", ""),
    ("meta.v1.LabelSelectorRequirement", "values", "", "", "atomic", "", ""),
    ("meta.v1.FieldSelectorRequirement", "values", "", "", "atomic", "", ""),
    ("meta.v1.Table", "columnDefinitions", "", "", "atomic", "", ""),
    ("meta.v1.Table", "rows", "", "", "atomic", "", ""),
    ("meta.v1.TableRow", "cells", "", "", "atomic", "", ""),
    ("meta.v1.TableRow", "conditions", "", "", "atomic", "", ""),
    ("apiextensions.v1.CustomResourceDefinitionSpec", "versions", "", "", "atomic", "", ""),
    ("apiextensions.v1.WebhookConversion", "conversionReviewVersions", "", "", "atomic", "", ""),
    ("apiextensions.v1.CustomResourceDefinitionVersion", "additionalPrinterColumns", "", "", "atomic", "", ""),
    ("apiextensions.v1.CustomResourceDefinitionVersion", "selectableFields", "", "", "atomic", "", ""),
    ("apiextensions.v1.CustomResourceDefinitionNames", "shortNames", "", "", "atomic", "", ""),
    ("apiextensions.v1.CustomResourceDefinitionNames", "categories", "", "", "atomic", "", ""),
    ("apiextensions.v1.CustomResourceDefinitionStatus", "conditions", "", "", "map", "type", ""),
    ("apiextensions.v1.CustomResourceDefinitionStatus", "storedVersions", "", "", "atomic", "", ""),
    ("apiextensions.v1.ConversionRequest", "objects", "", "", "atomic", "", ""),
    ("apiextensions.v1.ConversionResponse", "convertedObjects", "", "", "atomic", "", ""),
    ("apiextensions.v1.JSONSchemaProps", "enum", "", "", "atomic", "", ""),
    ("apiextensions.v1.JSONSchemaProps", "required", "", "", "atomic", "", ""),
    ("apiextensions.v1.JSONSchemaProps", "allOf", "", "", "atomic", "", ""),
    ("apiextensions.v1.JSONSchemaProps", "oneOf", "", "", "atomic", "", ""),
    ("apiextensions.v1.JSONSchemaProps", "anyOf", "", "", "atomic", "", ""),
    ("apiextensions.v1.JSONSchemaProps", "x-kubernetes-list-map-keys", "", "", "atomic", "", ""),
    ("apiextensions.v1.JSONSchemaProps", "x-kubernetes-validations", "merge", "rule", "map", "rule", ""),
    ("admissionregistration.v1.ParamKind", "", "", "", "", "", "atomic"),
    ("admissionregistration.v1.Variable", "", "", "", "", "", "atomic"),
    ("admissionregistration.v1.ParamRef", "", "", "", "", "", "atomic"),
    ("admissionregistration.v1.MatchResources", "", "", "", "", "", "atomic"),
    ("admissionregistration.v1.NamedRuleWithOperations", "", "", "", "", "", "atomic"),
    ("autoscaling.v1.CrossVersionObjectReference", "", "", "", "", "", "atomic"),
    ("core.v1.SecretReference", "", "", "", "", "", "atomic"),
    ("core.v1.FileKeySelector", "", "", "", "", "", "atomic"),
    ("core.v1.ObjectFieldSelector", "", "", "", "", "", "atomic"),
    ("core.v1.ResourceFieldSelector", "", "", "", "", "", "atomic"),
    ("core.v1.ConfigMapKeySelector", "", "", "", "", "", "atomic"),
    ("core.v1.SecretKeySelector", "", "", "", "", "", "atomic"),
    ("core.v1.NodeSelector", "", "", "", "", "", "atomic"),
    ("core.v1.NodeSelectorTerm", "", "", "", "", "", "atomic"),
    ("core.v1.TopologySelectorTerm", "", "", "", "", "", "atomic"),
    ("core.v1.EvictionResponder", "", "", "", "", "", "atomic"),
    ("core.v1.EndpointAddress", "", "", "", "", "", "atomic"),
    ("core.v1.EndpointPort", "", "", "", "", "", "atomic"),
    ("core.v1.ObjectReference", "", "", "", "", "", "atomic"),
    ("core.v1.LocalObjectReference", "", "", "", "", "", "atomic"),
    ("core.v1.TypedLocalObjectReference", "", "", "", "", "", "atomic"),
    ("core.v1.ScopeSelector", "", "", "", "", "", "atomic"),
    ("discovery.v1.EndpointPort", "", "", "", "", "", "atomic"),
    ("networking.v1.ServiceBackendPort", "", "", "", "", "", "atomic"),
    ("rbac.v1.Subject", "", "", "", "", "", "atomic"),
    ("rbac.v1.RoleRef", "", "", "", "", "", "atomic"),
    ("meta.v1.OwnerReference", "", "", "", "", "", "atomic"),
    ("meta.v1.LabelSelector", "", "", "", "", "", "atomic"),
];

/// The definition name of a table entry's `<package>.v1.<Type>`.
fn definition_name(short: &str) -> String {
    match short.split_once('.') {
        Some(("meta", rest)) => format!("io.k8s.apimachinery.pkg.apis.meta.{rest}"),
        Some(("apiextensions", rest)) => {
            format!("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{rest}")
        }
        _ => format!("io.k8s.api.{short}"),
    }
}

/// Go structs embedded with `json:",inline"`, whose tagged fields appear in the embedding
/// types' definitions instead of their own.
const INLINED: &[(&str, &[&str])] = &[
    (
        "core.v1.EphemeralContainerCommon",
        &["core.v1.EphemeralContainer"],
    ),
    (
        "admissionregistration.v1.Rule",
        &[
            "admissionregistration.v1.RuleWithOperations",
            "admissionregistration.v1.NamedRuleWithOperations",
        ],
    ),
    (
        "admissionregistration.v1.RuleWithOperations",
        &["admissionregistration.v1.NamedRuleWithOperations"],
    ),
];

/// Sets the extensions of every tagged field present in `defs`.
pub(super) fn apply(defs: &mut BTreeMap<String, Value>) {
    for &(short, field, strategy, merge_key, list_type, map_keys, map_type) in TAGS {
        let embedders = INLINED
            .iter()
            .filter(|(inner, _)| !field.is_empty() && *inner == short)
            .flat_map(|(_, outer)| outer.iter().copied());
        for owner in std::iter::once(short).chain(embedders) {
            let Some(def) = defs.get_mut(&definition_name(owner)) else {
                continue;
            };
            let target = if field.is_empty() {
                Some(def)
            } else {
                def.get_mut("properties").and_then(|p| p.get_mut(field))
            };
            let Some(Value::Object(schema)) = target else {
                continue;
            };
            let mut set = |key: &str, value: Value| {
                schema.insert(key.to_string(), value);
            };
            if !strategy.is_empty() {
                set("x-kubernetes-patch-strategy", json!(strategy));
            }
            if !merge_key.is_empty() {
                set("x-kubernetes-patch-merge-key", json!(merge_key));
            }
            if !list_type.is_empty() {
                set("x-kubernetes-list-type", json!(list_type));
            }
            if !map_keys.is_empty() {
                set(
                    "x-kubernetes-list-map-keys",
                    json!(map_keys.split(',').collect::<Vec<_>>()),
                );
            }
            if !map_type.is_empty() {
                set("x-kubernetes-map-type", json!(map_type));
            }
            // A reference that just gained siblings must be wrapped, or OpenAPI 3 ignores them.
            if schema.len() > 1 {
                if let Some(r) = schema.remove("$ref") {
                    schema.insert("allOf".into(), json!([{ "$ref": r }]));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_expand_to_upstream_definition_names() {
        assert_eq!(
            definition_name("core.v1.PodSpec"),
            "io.k8s.api.core.v1.PodSpec"
        );
        assert_eq!(
            definition_name("meta.v1.ObjectMeta"),
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
    }

    #[test]
    fn tags_land_on_properties_and_wrap_bare_references() {
        let mut defs = BTreeMap::new();
        defs.insert(
            "io.k8s.api.apps.v1.DeploymentSpec".to_string(),
            json!({"properties": {"strategy": {"$ref": "#/components/schemas/S"}}}),
        );
        apply(&mut defs);
        let strategy = &defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert_eq!(strategy["allOf"][0]["$ref"], "#/components/schemas/S");
    }

    #[test]
    fn inlined_struct_tags_land_on_the_embedding_definition() {
        let mut defs = BTreeMap::new();
        defs.insert(
            "io.k8s.api.core.v1.EphemeralContainer".to_string(),
            json!({"properties": {"env": {"type": "array"}}}),
        );
        apply(&mut defs);
        let env = &defs["io.k8s.api.core.v1.EphemeralContainer"]["properties"]["env"];
        assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
    }
}
