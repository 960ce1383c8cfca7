//! Built-in admission plugins with upstream names, order and messages, run as one chain.
//!
//! A request passes every enabled plugin's mutating half in upstream's fixed order, then every
//! validating half in the same order; the first error stops it. Plugins read other objects
//! through an [`ObjectSource`] (the watch caches), so what they see may lag the store.

mod default_storage_class;
mod default_toleration_seconds;
mod helpers;
mod limit_ranger;
mod namespace_lifecycle;
mod node_restriction;
mod pod_security;
mod priority;
mod resource_quota;
mod service_account;
mod storage_object_in_use_protection;
mod taint_nodes_by_condition;

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{json, Map, Value};

use crate::authn::UserInfo;
use crate::error::{qualified, ApiError};
use crate::source::ObjectSource;

pub use default_storage_class::DefaultStorageClass;
pub use default_toleration_seconds::DefaultTolerationSeconds;
pub use limit_ranger::LimitRanger;
pub use namespace_lifecycle::NamespaceLifecycle;
pub use node_restriction::NodeRestriction;
pub use pod_security::PodSecurity;
pub use priority::Priority;
pub use resource_quota::ResourceQuota;
pub use service_account::ServiceAccount;
pub use storage_object_in_use_protection::StorageObjectInUseProtection;
pub use taint_nodes_by_condition::TaintNodesByCondition;

/// The verb of an admission request, as upstream's `admission.Operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// POST, and PUT/apply creating an object.
    Create,
    /// PUT and PATCH of an existing object or subresource.
    Update,
    /// DELETE of one object (collections are admitted object by object).
    Delete,
    /// exec, attach, portforward and proxy.
    Connect,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        })
    }
}

/// Everything a plugin may look at for one request.
pub struct Attributes<'a> {
    pub operation: Operation,
    /// API group of the resource ("" for core).
    pub group: &'a str,
    /// API version the request was made in.
    pub version: &'a str,
    /// Plural resource name (`pods`).
    pub resource: &'a str,
    /// `status`, `eviction`, `token`, ... or "".
    pub subresource: &'a str,
    /// Kind of the object (`Pod`).
    pub kind: &'a str,
    /// "" for cluster-scoped resources; the namespace's own name for namespaces.
    pub namespace: &'a str,
    /// The name from the request; on create the caller passes the object's name ("" with only
    /// generateName).
    pub name: &'a str,
    /// The new object (after defaulting) for create and update; `None` for delete and connect.
    pub object: Option<&'a mut Value>,
    /// The stored object for update and delete.
    pub old_object: Option<&'a Value>,
    /// Who is asking (NodeRestriction looks for kubelets).
    pub user: &'a UserInfo,
    /// Whether the request is a dry run; the plugins have no side effects, so it changes
    /// nothing here.
    pub dry_run: bool,
    /// Stored objects the plugins consult (namespaces, limit ranges, service accounts, ...).
    pub source: &'a dyn ObjectSource,
}

impl Attributes<'_> {
    /// The new object, read-only.
    pub fn obj(&self) -> Option<&Value> {
        self.object.as_deref()
    }

    /// Whether the request is for `group`/`resource` (with any subresource).
    pub fn is(&self, group: &str, resource: &str) -> bool {
        self.group == group && self.resource == resource
    }

    /// The name upstream's `admission.NewForbidden` prints: the request name, else the
    /// object's name or generateName, else `Unknown`.
    pub fn display_name(&self) -> String {
        if !self.name.is_empty() {
            return self.name.to_string();
        }
        let meta = self.obj().map(|o| &o["metadata"]);
        for key in ["name", "generateName"] {
            if let Some(s) = meta.and_then(|m| m[key].as_str()).filter(|s| !s.is_empty()) {
                return s.to_string();
            }
        }
        "Unknown".to_string()
    }
}

/// One admission plugin: a mutating half, a validating half, or both.
pub trait Plugin: Send + Sync {
    /// The upstream plugin name (`NamespaceLifecycle`).
    fn name(&self) -> &'static str;

    /// The mutating half (upstream `Admit`); may change `attrs.object`.
    fn admit(&self, _attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
        Ok(())
    }

    /// The validating half (upstream `Validate`); may add warnings for the client.
    fn validate(
        &self,
        _attrs: &Attributes<'_>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Every admission plugin upstream v1.33 knows, in its fixed execution order
/// (`AllOrderedPlugins`).
pub const ALL_ORDERED_PLUGINS: &[&str] = &[
    "AlwaysAdmit",
    "NamespaceAutoProvision",
    "NamespaceLifecycle",
    "NamespaceExists",
    "LimitPodHardAntiAffinityTopology",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "TaintNodesByCondition",
    "AlwaysPullImages",
    "ImagePolicyWebhook",
    "PodSecurity",
    "PodNodeSelector",
    "Priority",
    "DefaultTolerationSeconds",
    "PodTolerationRestriction",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "OwnerReferencesPermissionEnforcement",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "DenyServiceExternalIPs",
    "PodTopologyLabels",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "AlwaysDeny",
];

/// The plugins upstream enables when `--enable-admission-plugins` does not name them.
pub const DEFAULT_ON_PLUGINS: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "DefaultStorageClass",
    "PersistentVolumeClaimResize",
    "DefaultTolerationSeconds",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "StorageObjectInUseProtection",
    "Priority",
    "TaintNodesByCondition",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "PodSecurity",
    "PodTopologyLabels",
    "MutatingAdmissionPolicy",
    "ValidatingAdmissionPolicy",
];

/// The plugins this apiserver implements, in execution order.
pub const IMPLEMENTED_PLUGINS: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "ResourceQuota",
];

/// Settings of plugins that upstream configures through legacy flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainOptions {
    /// `--default-not-ready-toleration-seconds` (300).
    pub default_not_ready_toleration_seconds: i64,
    /// `--default-unreachable-toleration-seconds` (300).
    pub default_unreachable_toleration_seconds: i64,
}

impl Default for ChainOptions {
    fn default() -> Self {
        Self {
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
        }
    }
}

/// The enabled plugins in upstream order.
pub struct Chain {
    plugins: Vec<Box<dyn Plugin>>,
}

impl Chain {
    /// `--enable-admission-plugins` / `--disable-admission-plugins` (upstream names, comma
    /// lists already split), with default plugin settings.
    pub fn from_flags(enable: &[String], disable: &[String]) -> Result<Chain, String> {
        Self::from_flags_with(enable, disable, ChainOptions::default())
    }

    /// As [`Chain::from_flags`], with the plugin settings taken from other flags.
    ///
    /// As upstream, the enabled set is the default-on set plus `enable` minus `disable`.
    /// Naming a plugin upstream does not know is an error in either flag; enabling a plugin
    /// upstream knows but this server does not implement is an error too, while disabling one
    /// is accepted (it is absent anyway). Default-on plugins that are not implemented are
    /// silently absent.
    pub fn from_flags_with(
        enable: &[String],
        disable: &[String],
        options: ChainOptions,
    ) -> Result<Chain, String> {
        let clean = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let enable = clean(enable);
        let disable = clean(disable);
        let mut errors = Vec::new();
        for (flag, names) in [
            ("enable-admission-plugins", &enable),
            ("disable-admission-plugins", &disable),
        ] {
            for name in names {
                if !ALL_ORDERED_PLUGINS.contains(&name.as_str()) {
                    errors.push(format!(
                        "{flag} plugin {name:?} is unknown; known plugins: {}",
                        ALL_ORDERED_PLUGINS.join(", ")
                    ));
                }
            }
        }
        for name in &enable {
            if ALL_ORDERED_PLUGINS.contains(&name.as_str())
                && !IMPLEMENTED_PLUGINS.contains(&name.as_str())
            {
                errors.push(format!(
                    "enable-admission-plugins plugin {name:?} is not implemented by this apiserver; implemented plugins: {}",
                    IMPLEMENTED_PLUGINS.join(", ")
                ));
            }
        }
        let overlap: BTreeSet<&String> = enable.iter().filter(|n| disable.contains(n)).collect();
        if !overlap.is_empty() {
            let list: Vec<&str> = overlap.iter().map(|s| s.as_str()).collect();
            errors.push(format!(
                "[{}] in enable-admission-plugins and disable-admission-plugins overlapped",
                list.join(" ")
            ));
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let wanted = |name: &str| {
            (DEFAULT_ON_PLUGINS.contains(&name) || enable.iter().any(|e| e == name))
                && !disable.iter().any(|d| d == name)
        };
        let plugins = ALL_ORDERED_PLUGINS
            .iter()
            .filter(|name| wanted(name))
            .filter_map(|name| new_plugin(name, &options))
            .collect();
        Ok(Chain { plugins })
    }

    /// A chain of exactly `plugins`, run in the given order (tests and embedders).
    pub fn from_plugins(plugins: Vec<Box<dyn Plugin>>) -> Chain {
        Chain { plugins }
    }

    /// Names of the enabled plugins in execution order.
    pub fn enabled(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.name()).collect()
    }

    /// Mutating phase then validating phase, in upstream's fixed plugin order. Returns the
    /// warnings for the client (PodSecurity warn mode) or the first error.
    pub fn admit(&self, attrs: &mut Attributes<'_>) -> Result<Vec<String>, ApiError> {
        self.mutate(attrs)?;
        self.validate(attrs)
    }

    /// The mutating phase alone (upstream runs it before the strategy's prepare and
    /// validate steps).
    pub fn mutate(&self, attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
        for plugin in &self.plugins {
            plugin.admit(attrs)?;
        }
        Ok(())
    }

    /// The validating phase alone (upstream runs it after the strategy's validation, just
    /// before the write). Returns the warnings for the client.
    pub fn validate(&self, attrs: &Attributes<'_>) -> Result<Vec<String>, ApiError> {
        let mut warnings = Vec::new();
        for plugin in &self.plugins {
            plugin.validate(attrs, &mut warnings)?;
        }
        Ok(warnings)
    }
}

fn new_plugin(name: &str, options: &ChainOptions) -> Option<Box<dyn Plugin>> {
    Some(match name {
        "NamespaceLifecycle" => Box::new(NamespaceLifecycle),
        "LimitRanger" => Box::new(LimitRanger),
        "ServiceAccount" => Box::new(ServiceAccount::new()),
        "NodeRestriction" => Box::new(NodeRestriction),
        "TaintNodesByCondition" => Box::new(TaintNodesByCondition),
        "PodSecurity" => Box::new(PodSecurity),
        "Priority" => Box::new(Priority),
        "DefaultTolerationSeconds" => Box::new(DefaultTolerationSeconds::new(
            options.default_not_ready_toleration_seconds,
            options.default_unreachable_toleration_seconds,
        )),
        "DefaultStorageClass" => Box::new(DefaultStorageClass),
        "StorageObjectInUseProtection" => Box::new(StorageObjectInUseProtection),
        "ResourceQuota" => Box::new(ResourceQuota),
        _ => return None,
    })
}

/// Upstream's `apierrors.NewForbidden(resource, name, err)` for `attrs`, through
/// `admission.NewForbidden`: `pods "x" is forbidden: <reason>`.
pub(crate) fn forbidden(attrs: &Attributes<'_>, reason: impl fmt::Display) -> ApiError {
    forbidden_named(attrs.group, attrs.resource, &attrs.display_name(), reason)
}

/// `apierrors.NewForbidden` with an explicit name ("" prints `pods is forbidden: ...`).
pub(crate) fn forbidden_named(
    group: &str,
    resource: &str,
    name: &str,
    reason: impl fmt::Display,
) -> ApiError {
    let gr = qualified(group, resource);
    let message = if name.is_empty() {
        format!("{gr} is forbidden: {reason}")
    } else {
        format!("{gr} \"{name}\" is forbidden: {reason}")
    };
    let mut details = Map::new();
    if !name.is_empty() {
        details.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        details.insert("group".into(), json!(group));
    }
    details.insert("kind".into(), json!(resource));
    ApiError::forbidden(message).with_details(Value::Object(details))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Shared fixtures for the plugin tests.
    use super::*;
    use crate::source::MemorySource;

    /// A request built field by field, then run through one plugin or a chain.
    pub struct Req {
        pub operation: Operation,
        pub group: String,
        pub resource: String,
        pub subresource: String,
        pub kind: String,
        pub namespace: String,
        pub name: String,
        pub object: Option<Value>,
        pub old_object: Option<Value>,
        pub user: UserInfo,
        pub source: MemorySource,
    }

    impl Req {
        pub fn new(operation: Operation, group: &str, resource: &str, kind: &str) -> Self {
            Self {
                operation,
                group: group.into(),
                resource: resource.into(),
                subresource: String::new(),
                kind: kind.into(),
                namespace: String::new(),
                name: String::new(),
                object: None,
                old_object: None,
                user: UserInfo::new("admin", vec!["system:masters".into()]),
                source: MemorySource::new(),
            }
        }

        pub fn create_pod(ns: &str, pod: Value) -> Self {
            let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
            Self::new(Operation::Create, "", "pods", "Pod")
                .ns(ns)
                .name(&name)
                .object(pod)
        }

        pub fn ns(mut self, ns: &str) -> Self {
            self.namespace = ns.into();
            self
        }
        pub fn name(mut self, name: &str) -> Self {
            self.name = name.into();
            self
        }
        pub fn sub(mut self, sub: &str) -> Self {
            self.subresource = sub.into();
            self
        }
        pub fn object(mut self, obj: Value) -> Self {
            self.object = Some(obj);
            self
        }
        pub fn old(mut self, obj: Value) -> Self {
            self.old_object = Some(obj);
            self
        }
        pub fn user(mut self, user: UserInfo) -> Self {
            self.user = user;
            self
        }
        pub fn with(mut self, group: &str, resource: &str, obj: Value) -> Self {
            self.source.insert(group, resource, obj);
            self
        }

        /// Runs `f` on the attributes borrowed from this request.
        pub fn run<T>(&mut self, f: impl FnOnce(&mut Attributes<'_>) -> T) -> T {
            let mut attrs = Attributes {
                operation: self.operation,
                group: &self.group,
                version: "v1",
                resource: &self.resource,
                subresource: &self.subresource,
                kind: &self.kind,
                namespace: &self.namespace,
                name: &self.name,
                object: self.object.as_mut(),
                old_object: self.old_object.as_ref(),
                user: &self.user,
                dry_run: false,
                source: &self.source,
            };
            f(&mut attrs)
        }

        /// Both halves of one plugin; returns the warnings.
        pub fn plugin(&mut self, p: &dyn Plugin) -> Result<Vec<String>, ApiError> {
            self.run(|a| {
                p.admit(a)?;
                let mut w = Vec::new();
                p.validate(a, &mut w)?;
                Ok(w)
            })
        }
    }

    pub fn namespace(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}})
    }

    pub fn pod(name: &str, containers: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": containers}
        })
    }

    pub fn node_user(node: &str) -> UserInfo {
        UserInfo::new(
            format!("system:node:{node}"),
            vec!["system:nodes".into(), "system:authenticated".into()],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn empty_flags_enable_the_implemented_default_plugins_in_upstream_order() {
        let chain = Chain::from_flags(&[], &[]).unwrap();
        assert_eq!(
            chain.enabled(),
            vec![
                "NamespaceLifecycle",
                "LimitRanger",
                "ServiceAccount",
                "TaintNodesByCondition",
                "PodSecurity",
                "Priority",
                "DefaultTolerationSeconds",
                "DefaultStorageClass",
                "StorageObjectInUseProtection",
                "ResourceQuota",
            ]
        );
    }

    #[test]
    fn enable_adds_to_the_defaults_and_keeps_upstream_order() {
        let chain = Chain::from_flags(&s(&["NodeRestriction"]), &[]).unwrap();
        let enabled = chain.enabled();
        assert_eq!(
            enabled[2..5],
            ["ServiceAccount", "NodeRestriction", "TaintNodesByCondition"]
        );
        assert_eq!(enabled.len(), 11);
    }

    #[test]
    fn disable_removes_default_plugins() {
        let chain = Chain::from_flags(
            &[],
            &s(&["ResourceQuota", "PodSecurity", "MutatingAdmissionWebhook"]),
        )
        .unwrap();
        assert!(!chain.enabled().contains(&"ResourceQuota"));
        assert!(!chain.enabled().contains(&"PodSecurity"));
    }

    #[test]
    fn unknown_or_unimplemented_plugins_are_rejected() {
        let err = Chain::from_flags(&s(&["Bogus"]), &[]).err().unwrap();
        assert!(
            err.contains("enable-admission-plugins plugin \"Bogus\" is unknown"),
            "{err}"
        );
        assert!(err.contains("NamespaceLifecycle"), "{err}");
        let err = Chain::from_flags(&s(&["AlwaysPullImages"]), &[])
            .err()
            .unwrap();
        assert!(err.contains("not implemented"), "{err}");
        let err = Chain::from_flags(&[], &s(&["Nope"])).err().unwrap();
        assert!(
            err.contains("disable-admission-plugins plugin \"Nope\" is unknown"),
            "{err}"
        );
    }

    #[test]
    fn overlapping_flags_are_rejected() {
        let err = Chain::from_flags(&s(&["NodeRestriction"]), &s(&["NodeRestriction"]))
            .err()
            .unwrap();
        assert!(err.contains("[NodeRestriction] in enable-admission-plugins and disable-admission-plugins overlapped"));
    }

    #[test]
    fn forbidden_names_the_resource_and_object() {
        let mut req = Req::create_pod("ns", pod("", json!([])));
        req.object.as_mut().unwrap()["metadata"]["generateName"] = json!("web-");
        let err = req.run(|a| forbidden(a, "nope"));
        assert_eq!(err.code, 403);
        assert_eq!(err.message, "pods \"web-\" is forbidden: nope");
        assert_eq!(err.details.as_ref().unwrap()["kind"], "pods");
        let err = forbidden_named("apps", "deployments", "", "x");
        assert_eq!(err.message, "deployments.apps is forbidden: x");
    }

    #[test]
    fn chain_runs_mutations_before_validations() {
        let mut req = Req::create_pod("default", pod("p", json!([{"name": "c", "image": "i"}])))
            .with("", "namespaces", namespace("default"))
            .with(
                "",
                "serviceaccounts",
                json!({"metadata": {"name": "default", "namespace": "default"}}),
            );
        let chain = Chain::from_flags(&[], &[]).unwrap();
        let warnings = req.run(|a| chain.admit(a)).unwrap();
        assert!(warnings.is_empty());
        let pod = req.object.unwrap();
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["priority"], 0);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }
}
