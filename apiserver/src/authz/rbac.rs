//! The RBAC authorizer: (Cluster)RoleBindings whose subjects match the user grant the rules of
//! the (Cluster)Role they reference, as upstream's `plugin/pkg/auth/authorizer/rbac` and the
//! rule resolver of `pkg/registry/rbac/validation`.

use std::sync::Arc;

use serde_json::Value;

use super::rules::{self, go_quote, PolicyRule};
use super::{Attributes, Decision};
use crate::authn::UserInfo;
use crate::source::ObjectSource;

/// The API group of RBAC objects.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// Prefix of service-account user names: `system:serviceaccount:<namespace>:<name>`.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Whether `username` is the service account `namespace`/`name`, without building the string.
pub fn matches_service_account(namespace: &str, name: &str, username: &str) -> bool {
    username
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.strip_prefix(namespace))
        .and_then(|rest| rest.strip_prefix(':'))
        == Some(name)
}

/// Whether one binding subject names the user (upstream `appliesToUser`). ServiceAccount
/// subjects without a namespace take `binding_namespace` (empty for ClusterRoleBindings, where
/// such a subject matches nobody).
pub fn applies_to_user(user: &UserInfo, subject: &Value, binding_namespace: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or("");
    match subject["kind"].as_str().unwrap_or("") {
        "User" => user.name == name,
        "Group" => user.in_group(name),
        "ServiceAccount" => {
            let ns = match subject["namespace"].as_str() {
                Some(ns) if !ns.is_empty() => ns,
                _ => binding_namespace,
            };
            !ns.is_empty() && matches_service_account(ns, name, &user.name)
        }
        _ => false,
    }
}

/// Index of the first subject of `binding` that applies to the user.
fn applies_to(user: &UserInfo, binding: &Value, binding_namespace: &str) -> Option<usize> {
    binding["subjects"]
        .as_array()?
        .iter()
        .position(|s| applies_to_user(user, s, binding_namespace))
}

/// Where a rule came from, for the reason of an allow (upstream's binding describers).
#[derive(Debug, Clone, Copy)]
pub struct RuleSource<'a> {
    /// The ClusterRoleBinding or RoleBinding.
    pub binding: &'a Value,
    /// The subject that matched the user.
    pub subject: &'a Value,
    /// The binding's namespace; empty for a ClusterRoleBinding.
    pub namespace: &'a str,
}

impl RuleSource<'_> {
    /// `ClusterRoleBinding "x" of ClusterRole "y" to User "z"` or
    /// `RoleBinding "x/ns" of Role "y" to ServiceAccount "sa/ns"`.
    pub fn describe(&self) -> String {
        let b = self.binding;
        let name = b["metadata"]["name"].as_str().unwrap_or("");
        let role_kind = b["roleRef"]["kind"].as_str().unwrap_or("");
        let role_name = b["roleRef"]["name"].as_str().unwrap_or("");
        let subject = describe_subject(self.subject, self.namespace);
        let role_name = go_quote(role_name);
        if self.namespace.is_empty() {
            format!(
                "ClusterRoleBinding {} of {role_kind} {role_name} to {subject}",
                go_quote(name)
            )
        } else {
            let qualified = go_quote(&format!("{name}/{}", self.namespace));
            format!("RoleBinding {qualified} of {role_kind} {role_name} to {subject}")
        }
    }
}

fn describe_subject(subject: &Value, binding_namespace: &str) -> String {
    let kind = subject["kind"].as_str().unwrap_or("");
    let name = subject["name"].as_str().unwrap_or("");
    if kind == "ServiceAccount" {
        let ns = match subject["namespace"].as_str() {
            Some(ns) if !ns.is_empty() => ns,
            _ => binding_namespace,
        };
        format!("{kind} {}", go_quote(&format!("{name}/{ns}")))
    } else {
        format!("{kind} {}", go_quote(name))
    }
}

/// The role a binding's `roleRef` names: a Role in `binding_namespace` or a ClusterRole
/// (upstream `GetRoleReferenceRules`); the error reads as upstream's lister NotFound.
pub fn role_reference(
    role_ref: &Value,
    binding_namespace: &str,
    source: &dyn ObjectSource,
) -> Result<Arc<Value>, String> {
    let name = role_ref["name"].as_str().unwrap_or("");
    match role_ref["kind"].as_str().unwrap_or("") {
        "Role" => source
            .get(RBAC_GROUP, "roles", binding_namespace, name)
            .ok_or_else(|| format!("role.{RBAC_GROUP} {} not found", go_quote(name))),
        "ClusterRole" => source
            .get(RBAC_GROUP, "clusterroles", "", name)
            .ok_or_else(|| format!("clusterrole.{RBAC_GROUP} {} not found", go_quote(name))),
        other => Err(format!(
            "unsupported role reference kind: {}",
            go_quote(other)
        )),
    }
}

/// Joins errors as upstream's `utilerrors.NewAggregate(...).Error()`: one error alone, several
/// (deduplicated) in brackets.
pub fn aggregate_errors(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [one] => one.clone(),
        many => {
            let mut seen: Vec<&str> = Vec::new();
            for e in many {
                if !seen.contains(&e.as_str()) {
                    seen.push(e);
                }
            }
            if seen.len() == 1 {
                seen[0].to_owned()
            } else {
                format!("[{}]", seen.join(", "))
            }
        }
    }
}

/// What a visitor wants next.
enum Visit {
    Continue,
    Stop,
}

/// Calls `visit` with every rule granted to the user by ClusterRoleBindings and, when
/// `namespace` is not empty, by RoleBindings in it; `error` for roles that cannot be resolved.
fn visit_rules_for(
    user: &UserInfo,
    namespace: &str,
    source: &dyn ObjectSource,
    visit: &mut dyn FnMut(&RuleSource<'_>, &Value) -> Visit,
    error: &mut dyn FnMut(String),
) {
    let scopes: [(&str, &str); 2] = [("clusterrolebindings", ""), ("rolebindings", namespace)];
    for (resource, ns) in scopes {
        if resource == "rolebindings" && namespace.is_empty() {
            break;
        }
        for binding in source.list(RBAC_GROUP, resource, ns) {
            let Some(index) = applies_to(user, &binding, ns) else {
                continue;
            };
            let role = match role_reference(&binding["roleRef"], ns, source) {
                Ok(role) => role,
                Err(e) => {
                    error(e);
                    continue;
                }
            };
            let rs = RuleSource {
                binding: &binding,
                subject: &binding["subjects"][index],
                namespace: ns,
            };
            for rule in role["rules"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                if let Visit::Stop = visit(&rs, rule) {
                    return;
                }
            }
        }
    }
}

/// The RBAC authorizer. It keeps no state: bindings and roles are read from the
/// [`ObjectSource`] on each request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RbacAuthorizer;

impl RbacAuthorizer {
    /// Allows the request when a rule granted to the user matches it; otherwise no opinion,
    /// with the errors met on the way (missing roles) as the reason.
    pub fn authorize(&self, attrs: &Attributes<'_>, source: &dyn ObjectSource) -> Decision {
        let mut allowed_by = None;
        let mut errors = Vec::new();
        visit_rules_for(
            attrs.user,
            attrs.namespace,
            source,
            &mut |rs, rule| {
                if rules::rule_allows(attrs, rule) {
                    allowed_by = Some(rs.describe());
                    Visit::Stop
                } else {
                    Visit::Continue
                }
            },
            &mut |e| errors.push(e),
        );
        match allowed_by {
            Some(by) => Decision::Allow(format!("RBAC: allowed by {by}")),
            None if errors.is_empty() => Decision::NoOpinion(String::new()),
            None => Decision::NoOpinion(format!("RBAC: {}", aggregate_errors(&errors))),
        }
    }

    /// Every rule granted to the user in `namespace` (cluster-wide rules included), and the
    /// errors met resolving roles (upstream resolver `RulesFor`).
    pub fn rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
        source: &dyn ObjectSource,
    ) -> (Vec<PolicyRule>, Vec<String>) {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        visit_rules_for(
            user,
            namespace,
            source,
            &mut |_, rule| {
                out.push(PolicyRule::from_value(rule));
                Visit::Continue
            },
            &mut |e| errors.push(e),
        );
        (out, errors)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::source::MemorySource;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo::new(name, groups.iter().map(|g| g.to_string()).collect())
    }

    fn attrs<'a>(u: &'a UserInfo, verb: &'a str, ns: &'a str, resource: &'a str) -> Attributes<'a> {
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
            json!({"metadata":{"name":"pod-reader"},"rules":[{"verbs":["get","list"],"apiGroups":[""],"resources":["pods"]}]}),
        );
        s.insert(
            RBAC_GROUP,
            "roles",
            json!({"metadata":{"name":"secret-reader","namespace":"team"},"rules":[{"verbs":["get"],"apiGroups":[""],"resources":["secrets"]}]}),
        );
        s.insert(
            RBAC_GROUP,
            "clusterrolebindings",
            json!({"metadata":{"name":"readers"},"roleRef":{"apiGroup":RBAC_GROUP,"kind":"ClusterRole","name":"pod-reader"},
                   "subjects":[{"kind":"Group","apiGroup":RBAC_GROUP,"name":"readers"}]}),
        );
        s.insert(
            RBAC_GROUP,
            "rolebindings",
            json!({"metadata":{"name":"sa-secrets","namespace":"team"},"roleRef":{"apiGroup":RBAC_GROUP,"kind":"Role","name":"secret-reader"},
                   "subjects":[{"kind":"ServiceAccount","name":"builder"}]}),
        );
        s.insert(
            RBAC_GROUP,
            "rolebindings",
            json!({"metadata":{"name":"alice-pods","namespace":"team"},"roleRef":{"apiGroup":RBAC_GROUP,"kind":"ClusterRole","name":"pod-reader"},
                   "subjects":[{"kind":"User","apiGroup":RBAC_GROUP,"name":"alice"}]}),
        );
        s
    }

    #[test]
    fn cluster_role_binding_allows_with_upstream_reason() {
        let s = source();
        let u = user("bob", &["readers"]);
        assert_eq!(
            RbacAuthorizer.authorize(&attrs(&u, "list", "", "pods"), &s),
            Decision::Allow(
                "RBAC: allowed by ClusterRoleBinding \"readers\" of ClusterRole \"pod-reader\" to Group \"readers\"".into()
            )
        );
        assert!(!RbacAuthorizer
            .authorize(&attrs(&u, "delete", "x", "pods"), &s)
            .is_allowed());
    }

    #[test]
    fn role_binding_to_a_cluster_role_is_scoped_to_its_namespace() {
        let s = source();
        let u = user("alice", &[]);
        assert_eq!(
            RbacAuthorizer.authorize(&attrs(&u, "get", "team", "pods"), &s),
            Decision::Allow(
                "RBAC: allowed by RoleBinding \"alice-pods/team\" of ClusterRole \"pod-reader\" to User \"alice\"".into()
            )
        );
        assert!(!RbacAuthorizer
            .authorize(&attrs(&u, "get", "other", "pods"), &s)
            .is_allowed());
        // cluster-scoped requests never match a RoleBinding
        assert!(!RbacAuthorizer
            .authorize(&attrs(&u, "get", "", "pods"), &s)
            .is_allowed());
    }

    #[test]
    fn service_account_subject_defaults_to_the_binding_namespace() {
        let s = source();
        let sa = user("system:serviceaccount:team:builder", &[]);
        assert_eq!(
            RbacAuthorizer.authorize(&attrs(&sa, "get", "team", "secrets"), &s),
            Decision::Allow(
                "RBAC: allowed by RoleBinding \"sa-secrets/team\" of Role \"secret-reader\" to ServiceAccount \"builder/team\"".into()
            )
        );
        let other = user("system:serviceaccount:other:builder", &[]);
        assert!(!RbacAuthorizer
            .authorize(&attrs(&other, "get", "team", "secrets"), &s)
            .is_allowed());
        assert!(matches_service_account(
            "a",
            "b",
            "system:serviceaccount:a:b"
        ));
        assert!(!matches_service_account(
            "a",
            "b",
            "system:serviceaccount:a:bc"
        ));
        assert!(!matches_service_account(
            "a",
            "b",
            "system:serviceaccount:ab:"
        ));
    }

    #[test]
    fn missing_role_is_reported_as_the_reason() {
        let mut s = source();
        s.insert(
            RBAC_GROUP,
            "clusterrolebindings",
            json!({"metadata":{"name":"dangling"},"roleRef":{"apiGroup":RBAC_GROUP,"kind":"ClusterRole","name":"gone"},
                   "subjects":[{"kind":"User","name":"carol"}]}),
        );
        let u = user("carol", &[]);
        assert_eq!(
            RbacAuthorizer.authorize(&attrs(&u, "get", "", "pods"), &s),
            Decision::NoOpinion(
                "RBAC: clusterrole.rbac.authorization.k8s.io \"gone\" not found".into()
            )
        );
        let (rules, errors) = RbacAuthorizer.rules_for(&u, "", &s);
        assert!(rules.is_empty());
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn rules_for_includes_cluster_and_namespace_rules() {
        let s = source();
        let u = user("system:serviceaccount:team:builder", &["readers"]);
        let (rules, errors) = RbacAuthorizer.rules_for(&u, "team", &s);
        assert!(errors.is_empty());
        assert_eq!(rules.len(), 2);
        assert_eq!(RbacAuthorizer.rules_for(&u, "", &s).0.len(), 1);
    }

    #[test]
    fn aggregate_errors_deduplicates() {
        assert_eq!(aggregate_errors(&["a".into(), "a".into()]), "a");
        assert_eq!(aggregate_errors(&["a".into(), "b".into()]), "[a, b]");
    }
}
