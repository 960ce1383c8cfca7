//! RBAC escalation prevention on writes of roles and bindings (upstream
//! `pkg/registry/rbac/validation` and the policy-based role/binding storages): nobody may grant
//! permissions they do not hold, unless they may `escalate` the role or `bind` the role a
//! binding references.

use serde_json::{json, Value};

use super::chain::AuthorizerChain;
use super::rbac::{role_reference, RbacAuthorizer, RBAC_GROUP};
use super::rules::{covers, describe_missing, go_quote, go_quote_list, PolicyRule, ALL};
use super::Attributes;
use crate::authn::{UserInfo, SYSTEM_MASTERS};
use crate::error::{qualified, ApiError};
use crate::source::ObjectSource;

/// Whether the user's RBAC rules in `namespace` (cluster-wide rules included; "" for cluster
/// scope) cover `rules`. The error is upstream's `ConfirmNoEscalation` message.
pub fn confirm_no_escalation(
    user: &UserInfo,
    namespace: &str,
    rules: &[PolicyRule],
    source: &dyn ObjectSource,
) -> Result<(), String> {
    let (owner, errors) = RbacAuthorizer.rules_for(user, namespace, source);
    let (ok, missing) = covers(&owner, rules);
    if ok {
        return Ok(());
    }
    let mut msg = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&user.name),
        go_quote_list(&user.groups),
        describe_missing(missing)
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(msg)
}

fn forbidden(resource: &str, name: &str, why: &str) -> ApiError {
    ApiError::forbidden(format!(
        "{} {} is forbidden: {why}",
        qualified(RBAC_GROUP, resource),
        go_quote(name)
    ))
    .with_details(json!({"name": name, "group": RBAC_GROUP, "kind": resource}))
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

/// Whether an update changes nothing but owner references and finalizers (what the garbage
/// collector writes), which upstream lets through without escalation checks.
fn only_gc_fields_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in [
                "ownerReferences",
                "finalizers",
                "resourceVersion",
                "managedFields",
            ] {
                meta.remove(key);
            }
        }
        v
    };
    strip(new) == strip(old)
}

/// Checks a create (`old` is `None`) or update of a Role (`resource` "roles", in `namespace`)
/// or ClusterRole ("clusterroles", namespace ""). Allowed for system:masters, for users the
/// chain lets `escalate` the role (the name is the request path's: empty on create), and for
/// users whose RBAC rules cover the new rules; a ClusterRole with an aggregationRule (new or
/// changed) needs full cluster authority. Otherwise 403 Forbidden as upstream.
pub fn check_role_write(
    user: &UserInfo,
    resource: &str,
    namespace: &str,
    new: &Value,
    old: Option<&Value>,
    source: &dyn ObjectSource,
    chain: &AuthorizerChain,
) -> Result<(), ApiError> {
    if user.in_group(SYSTEM_MASTERS) {
        return Ok(());
    }
    let name = name_of(new);
    let path_name = if old.is_some() { name } else { "" };
    let escalate = Attributes {
        user,
        verb: "escalate",
        resource_request: true,
        namespace,
        api_group: RBAC_GROUP,
        api_version: "*",
        resource,
        subresource: "",
        name: path_name,
        path: "",
    };
    if chain.authorize(&escalate, source).is_allowed() {
        return Ok(());
    }
    if let Some(old) = old {
        if only_gc_fields_changed(new, old) {
            return Ok(());
        }
    }
    confirm_no_escalation(user, namespace, &PolicyRule::list_from(new), source)
        .map_err(|e| forbidden(resource, name, &e))?;
    let aggregation = new.get("aggregationRule").filter(|a| !a.is_null());
    let aggregation_changed = match old {
        None => aggregation.is_some(),
        Some(old) => aggregation.is_some() && old.get("aggregationRule") != aggregation,
    };
    if resource == "clusterroles" && aggregation_changed {
        let all = vec![ALL.to_owned()];
        let full_authority = [
            PolicyRule {
                verbs: all.clone(),
                api_groups: all.clone(),
                resources: all.clone(),
                ..PolicyRule::default()
            },
            PolicyRule {
                verbs: all.clone(),
                non_resource_urls: all,
                ..PolicyRule::default()
            },
        ];
        if confirm_no_escalation(user, "", &full_authority, source).is_err() {
            return Err(forbidden(
                resource,
                name,
                "must have cluster-admin privileges to use the aggregationRule",
            ));
        }
    }
    Ok(())
}

/// Checks a create or update of a RoleBinding ("rolebindings", in `namespace`) or
/// ClusterRoleBinding ("clusterrolebindings", namespace ""). Allowed for system:masters, for
/// users the chain lets `bind` the referenced role (checked in the binding's namespace), and
/// for users who hold every rule of the referenced role. A missing role is 404 NotFound.
pub fn check_binding_write(
    user: &UserInfo,
    resource: &str,
    namespace: &str,
    new: &Value,
    old: Option<&Value>,
    source: &dyn ObjectSource,
    chain: &AuthorizerChain,
) -> Result<(), ApiError> {
    if user.in_group(SYSTEM_MASTERS) {
        return Ok(());
    }
    if let Some(old) = old {
        if only_gc_fields_changed(new, old) {
            return Ok(());
        }
    }
    let role_ref = &new["roleRef"];
    let role_name = role_ref["name"].as_str().unwrap_or("");
    let role_resource = match role_ref["kind"].as_str().unwrap_or("") {
        "ClusterRole" => Some("clusterroles"),
        "Role" => Some("roles"),
        _ => None,
    };
    if let Some(role_resource) = role_resource {
        let attrs = Attributes {
            user,
            verb: "bind",
            resource_request: true,
            namespace,
            api_group: role_ref["apiGroup"].as_str().unwrap_or(""),
            api_version: "",
            resource: role_resource,
            subresource: "",
            name: role_name,
            path: "",
        };
        if chain.authorize(&attrs, source).is_allowed() {
            return Ok(());
        }
    }
    let role = role_reference(role_ref, namespace, source).map_err(|e| match role_resource {
        Some(r) => ApiError::not_found(RBAC_GROUP, r, role_name),
        None => forbidden(resource, name_of(new), &e),
    })?;
    confirm_no_escalation(user, namespace, &PolicyRule::list_from(&role), source)
        .map_err(|e| forbidden(resource, name_of(new), &e))
}

/// Runs the check that fits `resource` (roles, clusterroles, rolebindings,
/// clusterrolebindings of `rbac.authorization.k8s.io`); other resources pass.
pub fn check_write(
    user: &UserInfo,
    resource: &str,
    namespace: &str,
    new: &Value,
    old: Option<&Value>,
    source: &dyn ObjectSource,
    chain: &AuthorizerChain,
) -> Result<(), ApiError> {
    match resource {
        "roles" | "clusterroles" => {
            check_role_write(user, resource, namespace, new, old, source, chain)
        }
        "rolebindings" | "clusterrolebindings" => {
            check_binding_write(user, resource, namespace, new, old, source, chain)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemorySource;

    fn chain() -> AuthorizerChain {
        AuthorizerChain::from_modes("Node,RBAC").unwrap()
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
            "clusterroles",
            json!({"metadata":{"name":"secret-admin"},"rules":[{"verbs":["*"],"apiGroups":[""],"resources":["secrets"]}]}),
        );
        s.insert(
            RBAC_GROUP,
            "clusterroles",
            json!({"metadata":{"name":"binder"},"rules":[{"verbs":["bind"],"apiGroups":[RBAC_GROUP],"resources":["clusterroles"],"resourceNames":["secret-admin"]},
                                                          {"verbs":["escalate"],"apiGroups":[RBAC_GROUP],"resources":["roles"]}]}),
        );
        s.insert(
            RBAC_GROUP,
            "rolebindings",
            json!({"metadata":{"name":"alice-reads","namespace":"team"},"roleRef":{"kind":"ClusterRole","name":"pod-reader"},
                   "subjects":[{"kind":"User","name":"alice"}]}),
        );
        s.insert(
            RBAC_GROUP,
            "rolebindings",
            json!({"metadata":{"name":"carol-binds","namespace":"team"},"roleRef":{"kind":"ClusterRole","name":"binder"},
                   "subjects":[{"kind":"User","name":"carol"}]}),
        );
        s
    }

    fn role(ns: &str, rules: Value) -> Value {
        json!({"kind":"Role","metadata":{"name":"r","namespace":ns},"rules":rules})
    }

    fn binding(ns: &str, kind: &str, name: &str) -> Value {
        json!({"kind":"RoleBinding","metadata":{"name":"b","namespace":ns},
               "roleRef":{"apiGroup":RBAC_GROUP,"kind":kind,"name":name},"subjects":[{"kind":"User","name":"x"}]})
    }

    #[test]
    fn roles_within_held_rules_are_allowed() {
        let s = source();
        let alice = UserInfo::new("alice", vec!["system:authenticated".into()]);
        let r = role(
            "team",
            json!([{"verbs":["get"],"apiGroups":[""],"resources":["pods"]}]),
        );
        assert_eq!(
            check_write(&alice, "roles", "team", &r, None, &s, &chain()),
            Ok(())
        );
    }

    #[test]
    fn escalating_roles_are_forbidden_with_upstream_message() {
        let s = source();
        let alice = UserInfo::new("alice", vec!["system:authenticated".into()]);
        let r = role(
            "team",
            json!([{"verbs":["get","delete"],"apiGroups":[""],"resources":["pods","secrets"]}]),
        );
        let err = check_write(&alice, "roles", "team", &r, None, &s, &chain()).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}"
        );
        // not in another namespace either
        let r = role(
            "other",
            json!([{"verbs":["get"],"apiGroups":[""],"resources":["pods"]}]),
        );
        assert!(check_write(&alice, "roles", "other", &r, None, &s, &chain()).is_err());
    }

    #[test]
    fn escalate_permission_and_masters_bypass_the_check() {
        let s = source();
        let carol = UserInfo::new("carol", vec![]);
        let r = role(
            "team",
            json!([{"verbs":["*"],"apiGroups":["*"],"resources":["*"]}]),
        );
        assert_eq!(
            check_write(&carol, "roles", "team", &r, None, &s, &chain()),
            Ok(())
        );
        let root = UserInfo::new("root", vec![SYSTEM_MASTERS.into()]);
        assert_eq!(
            check_write(&root, "clusterroles", "", &r, None, &s, &chain()),
            Ok(())
        );
    }

    #[test]
    fn updates_that_only_touch_gc_fields_pass() {
        let s = source();
        let alice = UserInfo::new("alice", vec![]);
        let old = role(
            "team",
            json!([{"verbs":["*"],"apiGroups":["*"],"resources":["*"]}]),
        );
        let mut new = old.clone();
        new["metadata"]["finalizers"] = json!(["x"]);
        assert_eq!(
            check_write(&alice, "roles", "team", &new, Some(&old), &s, &chain()),
            Ok(())
        );
        new["metadata"]["labels"] = json!({"a":"b"});
        assert!(check_write(&alice, "roles", "team", &new, Some(&old), &s, &chain()).is_err());
    }

    #[test]
    fn aggregation_rule_needs_cluster_admin() {
        let s = source();
        let carol = UserInfo::new("carol", vec![]);
        let cr = json!({"kind":"ClusterRole","metadata":{"name":"agg"},"aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"a":"b"}}]}});
        let err = check_write(&carol, "clusterroles", "", &cr, None, &s, &chain()).unwrap_err();
        assert_eq!(
            err.message,
            "clusterroles.rbac.authorization.k8s.io \"agg\" is forbidden: must have cluster-admin privileges to use the aggregationRule"
        );
    }

    #[test]
    fn bindings_need_bind_permission_or_the_role_rules() {
        let s = source();
        let alice = UserInfo::new("alice", vec![]);
        assert_eq!(
            check_write(
                &alice,
                "rolebindings",
                "team",
                &binding("team", "ClusterRole", "pod-reader"),
                None,
                &s,
                &chain()
            ),
            Ok(())
        );
        let err = check_write(
            &alice,
            "rolebindings",
            "team",
            &binding("team", "ClusterRole", "secret-admin"),
            None,
            &s,
            &chain(),
        )
        .unwrap_err();
        assert_eq!(err.code, 403);
        assert!(err.message.starts_with(
            "rolebindings.rbac.authorization.k8s.io \"b\" is forbidden: user \"alice\" (groups=[]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"*\"]}"
        ), "{}", err.message);
        let carol = UserInfo::new("carol", vec![]);
        assert_eq!(
            check_write(
                &carol,
                "rolebindings",
                "team",
                &binding("team", "ClusterRole", "secret-admin"),
                None,
                &s,
                &chain()
            ),
            Ok(())
        );
        // bind is checked in the binding's namespace
        assert!(check_write(
            &carol,
            "rolebindings",
            "other",
            &binding("other", "ClusterRole", "secret-admin"),
            None,
            &s,
            &chain()
        )
        .is_err());
        let err = check_write(
            &alice,
            "rolebindings",
            "team",
            &binding("team", "Role", "missing"),
            None,
            &s,
            &chain(),
        )
        .unwrap_err();
        assert_eq!(err.code, 404);
        assert_eq!(
            err.message,
            "roles.rbac.authorization.k8s.io \"missing\" not found"
        );
    }

    #[test]
    fn other_resources_pass() {
        let s = source();
        let u = UserInfo::new("u", vec![]);
        assert_eq!(
            check_write(&u, "pods", "x", &json!({}), None, &s, &chain()),
            Ok(())
        );
    }
}
