//! The authorizer chain of `--authorization-mode`: members of `system:masters` first, then the
//! configured authorizers in order; the first to allow or deny decides (upstream's union
//! authorizer behind the privileged-group authorizer).

use std::fmt;

use super::node::{node_identity, FieldRequirement, NodeAuthorizer};
use super::rbac::{aggregate_errors, RbacAuthorizer};
use super::rules::{go_quote, go_quote_list, split_rules, NonResourceRule, ResourceRule, ALL};
use super::{Attributes, Decision};
use crate::authn::{UserInfo, SYSTEM_MASTERS};
use crate::source::ObjectSource;

/// The reason AlwaysDeny gives.
pub const ALWAYS_DENY_REASON: &str = "Everything is forbidden.";
/// The error the Node authorizer gives when asked to list a node's rules.
pub const NODE_RULES_ERROR: &str = "node authorizer does not support user rule resolution";

/// One `--authorization-mode` entry this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// The Node authorizer, for kubelets.
    Node,
    /// Role-based access control.
    Rbac,
    /// Allows every request.
    AlwaysAllow,
    /// Denies every request (but those of system:masters).
    AlwaysDeny,
}

impl AuthorizationMode {
    /// The flag spelling (`RBAC`, `Node`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node => "Node",
            Self::Rbac => "RBAC",
            Self::AlwaysAllow => "AlwaysAllow",
            Self::AlwaysDeny => "AlwaysDeny",
        }
    }
}

impl fmt::Display for AuthorizationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an `--authorization-mode` value was rejected; messages as upstream's flag validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    /// No mode was given.
    #[error("at least one authorization-mode must be passed")]
    Empty,
    /// A name that is no upstream mode.
    #[error("authorization-mode {} is not a valid mode", go_quote(.0))]
    Invalid(String),
    /// An upstream mode this server does not implement (ABAC, Webhook).
    #[error("authorization-mode {} is not supported by this server", go_quote(.0))]
    Unsupported(String),
    /// A mode listed twice; holds the whole list.
    #[error("authorization-mode {} has mode specified more than once", go_quote_list(.0))]
    Duplicate(Vec<String>),
}

/// Parses a comma-separated `--authorization-mode` value (`Node,RBAC`).
pub fn parse_modes(value: &str) -> Result<Vec<AuthorizationMode>, ModeError> {
    let names: Vec<String> = value.split(',').map(|s| s.trim().to_owned()).collect();
    if names.len() == 1 && names[0].is_empty() {
        return Err(ModeError::Empty);
    }
    let mut modes = Vec::with_capacity(names.len());
    for name in &names {
        let mode = match name.as_str() {
            "Node" => AuthorizationMode::Node,
            "RBAC" => AuthorizationMode::Rbac,
            "AlwaysAllow" => AuthorizationMode::AlwaysAllow,
            "AlwaysDeny" => AuthorizationMode::AlwaysDeny,
            "ABAC" | "Webhook" => return Err(ModeError::Unsupported(name.clone())),
            _ => return Err(ModeError::Invalid(name.clone())),
        };
        if modes.contains(&mode) {
            return Err(ModeError::Duplicate(names.clone()));
        }
        modes.push(mode);
    }
    Ok(modes)
}

/// What SelfSubjectRulesReview reports: the rules of every authorizer that can list them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectRules {
    /// Rules on API resources.
    pub resource_rules: Vec<ResourceRule>,
    /// Rules on non-resource paths.
    pub non_resource_rules: Vec<NonResourceRule>,
    /// True when some authorizer cannot enumerate what it allows (the Node authorizer for
    /// nodes), so the lists may be short.
    pub incomplete: bool,
    /// Errors met listing the rules (missing roles, the Node authorizer's refusal).
    pub evaluation_error: Option<String>,
}

/// The configured authorizers.
#[derive(Debug, Clone)]
pub struct AuthorizerChain {
    modes: Vec<AuthorizationMode>,
    node: NodeAuthorizer,
    rbac: RbacAuthorizer,
}

impl AuthorizerChain {
    /// The server's default `--authorization-mode`.
    pub const DEFAULT_MODES: &'static str = "Node,RBAC";

    /// The chain for a comma-separated `--authorization-mode` value.
    pub fn from_modes(value: &str) -> Result<Self, ModeError> {
        Ok(Self::new(parse_modes(value)?))
    }

    /// The chain for already-parsed modes.
    pub fn new(modes: Vec<AuthorizationMode>) -> Self {
        Self {
            modes,
            node: NodeAuthorizer::new(),
            rbac: RbacAuthorizer,
        }
    }

    /// Turns the Node authorizer's `AuthorizeNodeWithSelectors` behaviour on (default) or off.
    pub fn with_node_selectors(mut self, on: bool) -> Self {
        self.node = self.node.with_selectors(on);
        self
    }

    /// The configured modes, in evaluation order.
    pub fn modes(&self) -> &[AuthorizationMode] {
        &self.modes
    }

    /// Decides a request that carries no field selector (see
    /// [`Self::authorize_with_field_selector`]). `Allow` and `Deny` come from the authorizer
    /// that decided; when none did, `NoOpinion` carries their reasons joined by newlines, and
    /// the request must be refused.
    pub fn authorize(&self, attrs: &Attributes<'_>, source: &dyn ObjectSource) -> Decision {
        self.authorize_with_field_selector(attrs, &[], source)
    }

    /// Decides a request; `field_selector` is the parsed `fieldSelector` of a list/watch
    /// (kubelets list and watch their pods with `spec.nodeName=<node>`, which the Node
    /// authorizer requires).
    pub fn authorize_with_field_selector(
        &self,
        attrs: &Attributes<'_>,
        field_selector: &[FieldRequirement],
        source: &dyn ObjectSource,
    ) -> Decision {
        if attrs.user.in_group(SYSTEM_MASTERS) {
            return Decision::Allow(String::new());
        }
        let mut reasons: Vec<String> = Vec::new();
        for mode in &self.modes {
            let decision = match mode {
                AuthorizationMode::Node => self.node.authorize(attrs, field_selector, source),
                AuthorizationMode::Rbac => self.rbac.authorize(attrs, source),
                AuthorizationMode::AlwaysAllow => Decision::Allow(String::new()),
                AuthorizationMode::AlwaysDeny => Decision::Deny(ALWAYS_DENY_REASON.into()),
            };
            match decision {
                Decision::NoOpinion(reason) => {
                    if !reason.is_empty() {
                        reasons.push(reason);
                    }
                }
                decided => return decided,
            }
        }
        Decision::NoOpinion(reasons.join("\n"))
    }

    /// The rules the user holds in `namespace` (cluster-wide ones included), for
    /// SelfSubjectRulesReview, merged over the configured authorizers as upstream.
    pub fn rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
        source: &dyn ObjectSource,
    ) -> SubjectRules {
        let mut out = SubjectRules::default();
        let mut errors = Vec::new();
        for mode in &self.modes {
            match mode {
                AuthorizationMode::Node => {
                    if node_identity(user).is_some() {
                        out.incomplete = true;
                        errors.push(NODE_RULES_ERROR.to_owned());
                    }
                }
                AuthorizationMode::Rbac => {
                    let (rules, errs) = self.rbac.rules_for(user, namespace, source);
                    let (res, non) = split_rules(&rules);
                    out.resource_rules.extend(res);
                    out.non_resource_rules.extend(non);
                    errors.extend(errs);
                }
                AuthorizationMode::AlwaysAllow => {
                    let all = vec![ALL.to_owned()];
                    out.resource_rules.push(ResourceRule {
                        verbs: all.clone(),
                        api_groups: all.clone(),
                        resources: all.clone(),
                        resource_names: vec![],
                    });
                    out.non_resource_rules.push(NonResourceRule {
                        verbs: all.clone(),
                        non_resource_urls: all,
                    });
                }
                AuthorizationMode::AlwaysDeny => {}
            }
        }
        if !errors.is_empty() {
            out.evaluation_error = Some(aggregate_errors(&errors));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::authz::node::parse_field_selector;
    use crate::authz::rbac::RBAC_GROUP;
    use crate::source::MemorySource;

    fn attrs<'a>(u: &'a UserInfo, verb: &'a str, resource: &'a str, ns: &'a str) -> Attributes<'a> {
        Attributes {
            user: u,
            verb,
            resource_request: true,
            namespace: ns,
            api_group: "",
            api_version: "v1",
            resource,
            subresource: "",
            name: "",
            path: "",
        }
    }

    fn source() -> MemorySource {
        let mut s = MemorySource::new();
        s.insert(
            RBAC_GROUP,
            "clusterroles",
            json!({"metadata":{"name":"r"},"rules":[{"verbs":["list"],"apiGroups":[""],"resources":["pods"]},
                                                     {"verbs":["get"],"nonResourceURLs":["/healthz"]}]}),
        );
        s.insert(
            RBAC_GROUP,
            "clusterrolebindings",
            json!({"metadata":{"name":"b"},"roleRef":{"kind":"ClusterRole","name":"r"},
                   "subjects":[{"kind":"User","name":"bob"},{"kind":"Group","name":"system:nodes"}]}),
        );
        s
    }

    #[test]
    fn modes_parse_as_upstream_validates_them() {
        assert_eq!(
            parse_modes("Node,RBAC"),
            Ok(vec![AuthorizationMode::Node, AuthorizationMode::Rbac])
        );
        assert_eq!(parse_modes(""), Err(ModeError::Empty));
        assert_eq!(
            parse_modes("rbac").map_err(|e| e.to_string()),
            Err("authorization-mode \"rbac\" is not a valid mode".into())
        );
        assert_eq!(
            parse_modes("RBAC,RBAC").map_err(|e| e.to_string()),
            Err("authorization-mode [\"RBAC\" \"RBAC\"] has mode specified more than once".into())
        );
        assert!(matches!(
            parse_modes("Webhook"),
            Err(ModeError::Unsupported(_))
        ));
        assert_eq!(
            AuthorizerChain::from_modes(AuthorizerChain::DEFAULT_MODES).map(|c| c.modes().len()),
            Ok(2)
        );
    }

    #[test]
    fn system_masters_are_allowed_even_under_always_deny() {
        let s = source();
        let chain = AuthorizerChain::from_modes("AlwaysDeny").unwrap();
        let root = UserInfo::new("root", vec![SYSTEM_MASTERS.into()]);
        assert!(chain
            .authorize(&attrs(&root, "delete", "nodes", ""), &s)
            .is_allowed());
        let bob = UserInfo::new("bob", vec![]);
        assert_eq!(
            chain.authorize(&attrs(&bob, "list", "pods", ""), &s),
            Decision::Deny(ALWAYS_DENY_REASON.into())
        );
    }

    #[test]
    fn first_decision_wins_and_no_opinions_collect_reasons() {
        let s = source();
        let bob = UserInfo::new("bob", vec![]);
        let chain = AuthorizerChain::from_modes("RBAC,AlwaysDeny").unwrap();
        assert!(chain
            .authorize(&attrs(&bob, "list", "pods", ""), &s)
            .is_allowed());
        assert!(matches!(
            chain.authorize(&attrs(&bob, "get", "pods", ""), &s),
            Decision::Deny(_)
        ));
        let chain = AuthorizerChain::from_modes("RBAC,AlwaysAllow").unwrap();
        assert!(chain
            .authorize(&attrs(&bob, "get", "pods", ""), &s)
            .is_allowed());
        let chain = AuthorizerChain::from_modes("Node,RBAC").unwrap();
        let node = UserInfo::new("system:node:n1", vec!["system:nodes".into()]);
        assert_eq!(
            chain.authorize(&attrs(&node, "list", "secrets", "x"), &s),
            Decision::NoOpinion("No Object name found".into())
        );
        // the Node authorizer refuses an unscoped pod list, RBAC (system:nodes bound) allows it
        assert!(chain
            .authorize(&attrs(&node, "list", "pods", ""), &s)
            .is_allowed());
        let fs = parse_field_selector("spec.nodeName=n1");
        assert_eq!(
            chain.authorize_with_field_selector(&attrs(&node, "list", "pods", ""), &fs, &s),
            Decision::Allow(String::new())
        );
    }

    #[test]
    fn rules_for_merges_authorizers_and_marks_nodes_incomplete() {
        let s = source();
        let chain = AuthorizerChain::from_modes("Node,RBAC").unwrap();
        let bob = UserInfo::new("bob", vec![]);
        let r = chain.rules_for(&bob, "default", &s);
        assert_eq!(r.resource_rules.len(), 1);
        assert_eq!(r.non_resource_rules.len(), 1);
        assert!(!r.incomplete);
        assert_eq!(r.evaluation_error, None);
        let node = UserInfo::new("system:node:n1", vec!["system:nodes".into()]);
        let r = chain.rules_for(&node, "default", &s);
        assert!(r.incomplete);
        assert_eq!(r.evaluation_error.as_deref(), Some(NODE_RULES_ERROR));
        assert_eq!(r.resource_rules.len(), 1);
        let r = AuthorizerChain::from_modes("AlwaysAllow")
            .unwrap()
            .rules_for(&bob, "", &s);
        assert_eq!(r.resource_rules[0].resources, vec!["*".to_string()]);
    }
}
