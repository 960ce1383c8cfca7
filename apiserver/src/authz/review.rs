//! The access reviews of `authorization.k8s.io/v1`: SubjectAccessReview,
//! LocalSubjectAccessReview, SelfSubjectAccessReview and SelfSubjectRulesReview. Each takes the
//! request body and answers the same object with its `status` filled in, as upstream's
//! `pkg/registry/authorization`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::chain::AuthorizerChain;
use super::{Attributes, Decision};
use crate::authn::UserInfo;
use crate::error::{ApiError, FieldError};
use crate::source::ObjectSource;

/// The API group of the reviews.
pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";
const API_VERSION: &str = "authorization.k8s.io/v1";

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

/// Whether `metadata` is empty but for `allowed` keys; managedFields is always ignored, and
/// empty values (`creationTimestamp: null`) count as absent, as upstream's semantic equality.
fn metadata_empty_except(metadata: &Value, allowed: &[&str]) -> bool {
    metadata.as_object().is_none_or(|m| {
        m.iter().all(|(k, v)| {
            k == "managedFields" || allowed.contains(&k.as_str()) || is_empty_value(v)
        })
    })
}

fn present(v: &Value) -> Option<&Value> {
    (!v.is_null()).then_some(v)
}

/// The checks shared by every access review spec: exactly one of resourceAttributes and
/// nonResourceAttributes.
fn validate_attributes(spec: &Value, errors: &mut Vec<FieldError>) {
    let res = present(&spec["resourceAttributes"]);
    let non = present(&spec["nonResourceAttributes"]);
    match (res, non) {
        (Some(_), Some(non)) => errors.push(FieldError::invalid(
            "spec.nonResourceAttributes",
            non.clone(),
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => errors.push(FieldError::invalid(
            "spec.resourceAttributes",
            json!("null"),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
}

/// Upstream `ValidateSubjectAccessReviewSpec`.
fn validate_sar_spec(spec: &Value, errors: &mut Vec<FieldError>) {
    validate_attributes(spec, errors);
    let user = spec["user"].as_str().unwrap_or("");
    let no_groups = spec["groups"].as_array().is_none_or(|g| g.is_empty());
    if user.is_empty() && no_groups {
        errors.push(FieldError::invalid(
            "spec.user",
            json!(user),
            "at least one of user or group must be specified",
        ));
    }
}

fn invalid(kind: &str, errors: &[FieldError]) -> ApiError {
    ApiError::invalid(AUTHORIZATION_GROUP, kind, "", errors)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The user a SubjectAccessReview spec asks about.
fn spec_user(spec: &Value) -> UserInfo {
    let mut user = UserInfo::new(
        spec["user"].as_str().unwrap_or(""),
        strings(&spec["groups"]),
    );
    user.uid = spec["uid"].as_str().unwrap_or("").to_owned();
    user.extra = spec["extra"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), strings(v)))
                .collect::<BTreeMap<_, _>>()
        })
        .unwrap_or_default();
    user
}

/// Builds the request attributes from a spec's resourceAttributes or nonResourceAttributes
/// (upstream `ResourceAttributesFrom` / `NonResourceAttributesFrom`; an empty version means
/// every version, `*`) and decides them.
fn decide(
    spec: &Value,
    user: &UserInfo,
    chain: &AuthorizerChain,
    source: &dyn ObjectSource,
) -> Decision {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    if let Some(ra) = present(&spec["resourceAttributes"]) {
        let version = match s(&ra["version"]) {
            v if v.is_empty() => "*".to_owned(),
            v => v,
        };
        let (verb, ns, group, resource, sub, name) = (
            s(&ra["verb"]),
            s(&ra["namespace"]),
            s(&ra["group"]),
            s(&ra["resource"]),
            s(&ra["subresource"]),
            s(&ra["name"]),
        );
        let attrs = Attributes {
            user,
            verb: &verb,
            resource_request: true,
            namespace: &ns,
            api_group: &group,
            api_version: &version,
            resource: &resource,
            subresource: &sub,
            name: &name,
            path: "",
        };
        chain.authorize(&attrs, source)
    } else {
        let nra = &spec["nonResourceAttributes"];
        let (verb, path) = (s(&nra["verb"]), s(&nra["path"]));
        let attrs = Attributes {
            user,
            verb: &verb,
            resource_request: false,
            namespace: "",
            api_group: "",
            api_version: "",
            resource: "",
            subresource: "",
            name: "",
            path: &path,
        };
        chain.authorize(&attrs, source)
    }
}

/// The review as answered: the request object with apiVersion, kind and `status`.
fn answer(body: &Value, kind: &str, status: Value) -> Value {
    let mut out = match body {
        Value::Object(m) => Value::Object(m.clone()),
        _ => Value::Object(Map::new()),
    };
    out["apiVersion"] = json!(API_VERSION);
    out["kind"] = json!(kind);
    if !out["metadata"].is_object() {
        out["metadata"] = json!({});
    }
    out["status"] = status;
    out
}

/// `status` of an access review: `allowed`, and `denied`, `reason`, `evaluationError` when set.
fn access_status(decision: &Decision) -> Value {
    let (allowed, denied, reason) = match decision {
        Decision::Allow(r) => (true, false, r),
        Decision::Deny(r) => (false, true, r),
        Decision::NoOpinion(r) => (false, false, r),
    };
    let mut status = json!({"allowed": allowed});
    if denied {
        status["denied"] = json!(true);
    }
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    status
}

/// SubjectAccessReview: may `spec.user`/`spec.groups` do what the spec describes?
pub fn subject_access_review(
    body: &Value,
    chain: &AuthorizerChain,
    source: &dyn ObjectSource,
) -> Result<Value, ApiError> {
    const KIND: &str = "SubjectAccessReview";
    let spec = &body["spec"];
    let mut errors = Vec::new();
    validate_sar_spec(spec, &mut errors);
    if !metadata_empty_except(&body["metadata"], &[]) {
        errors.push(FieldError::invalid(
            "metadata",
            body["metadata"].clone(),
            "must be empty",
        ));
    }
    if !errors.is_empty() {
        return Err(invalid(KIND, &errors));
    }
    let user = spec_user(spec);
    let decision = decide(spec, &user, chain, source);
    Ok(answer(body, KIND, access_status(&decision)))
}

/// LocalSubjectAccessReview, created in `namespace` (the request path's): like a
/// SubjectAccessReview limited to that namespace and to resource attributes.
pub fn local_subject_access_review(
    body: &Value,
    namespace: &str,
    chain: &AuthorizerChain,
    source: &dyn ObjectSource,
) -> Result<Value, ApiError> {
    const KIND: &str = "LocalSubjectAccessReview";
    let mut body = body.clone();
    match body["metadata"]["namespace"].as_str().unwrap_or("") {
        "" => {
            if !body["metadata"].is_object() {
                body["metadata"] = json!({});
            }
            body["metadata"]["namespace"] = json!(namespace);
        }
        ns if ns != namespace => return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {}
    }
    let spec = &body["spec"];
    let mut errors = Vec::new();
    validate_sar_spec(spec, &mut errors);
    if !metadata_empty_except(&body["metadata"], &["namespace"]) {
        errors.push(FieldError::invalid(
            "metadata",
            body["metadata"].clone(),
            "must be empty except for namespace",
        ));
    }
    if let Some(ra) = present(&spec["resourceAttributes"]) {
        let ns = ra["namespace"].as_str().unwrap_or("");
        if ns != namespace {
            errors.push(FieldError::invalid(
                "spec.resourceAttributes.namespace",
                json!(ns),
                "must match metadata.namespace",
            ));
        }
    }
    if let Some(nra) = present(&spec["nonResourceAttributes"]) {
        errors.push(FieldError::invalid(
            "spec.nonResourceAttributes",
            nra.clone(),
            "disallowed on this kind of request",
        ));
    }
    if !errors.is_empty() {
        return Err(invalid(KIND, &errors));
    }
    if namespace.is_empty() {
        return Err(ApiError::bad_request(
            "namespace is required on this type: ",
        ));
    }
    let user = spec_user(spec);
    let decision = decide(spec, &user, chain, source);
    Ok(answer(&body, KIND, access_status(&decision)))
}

/// SelfSubjectAccessReview: may the requester do what the spec describes?
pub fn self_subject_access_review(
    body: &Value,
    requester: &UserInfo,
    chain: &AuthorizerChain,
    source: &dyn ObjectSource,
) -> Result<Value, ApiError> {
    const KIND: &str = "SelfSubjectAccessReview";
    let spec = &body["spec"];
    let mut errors = Vec::new();
    validate_attributes(spec, &mut errors);
    if !metadata_empty_except(&body["metadata"], &[]) {
        errors.push(FieldError::invalid(
            "metadata",
            body["metadata"].clone(),
            "must be empty",
        ));
    }
    if !errors.is_empty() {
        return Err(invalid(KIND, &errors));
    }
    let decision = decide(spec, requester, chain, source);
    Ok(answer(body, KIND, access_status(&decision)))
}

/// SelfSubjectRulesReview: what may the requester do in `spec.namespace`?
pub fn self_subject_rules_review(
    body: &Value,
    requester: &UserInfo,
    chain: &AuthorizerChain,
    source: &dyn ObjectSource,
) -> Result<Value, ApiError> {
    let namespace = body["spec"]["namespace"].as_str().unwrap_or("");
    if namespace.is_empty() {
        return Err(ApiError::bad_request("no namespace on request"));
    }
    let rules = chain.rules_for(requester, namespace, source);
    let mut status = json!({
        "resourceRules": rules.resource_rules.iter().map(|r| r.to_value()).collect::<Vec<_>>(),
        "nonResourceRules": rules.non_resource_rules.iter().map(|r| r.to_value()).collect::<Vec<_>>(),
        "incomplete": rules.incomplete,
    });
    if let Some(e) = rules.evaluation_error {
        status["evaluationError"] = json!(e);
    }
    Ok(answer(body, "SelfSubjectRulesReview", status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::rbac::RBAC_GROUP;
    use crate::source::MemorySource;

    fn chain() -> AuthorizerChain {
        AuthorizerChain::from_modes("Node,RBAC").unwrap()
    }

    fn source() -> MemorySource {
        let mut s = MemorySource::new();
        s.insert(
            RBAC_GROUP,
            "clusterroles",
            json!({"metadata":{"name":"pod-reader"},"rules":[{"verbs":["get","list"],"apiGroups":[""],"resources":["pods"]},
                                                              {"verbs":["get"],"nonResourceURLs":["/healthz"]}]}),
        );
        s.insert(
            RBAC_GROUP,
            "rolebindings",
            json!({"metadata":{"name":"readers","namespace":"team"},"roleRef":{"kind":"ClusterRole","name":"pod-reader"},
                   "subjects":[{"kind":"Group","name":"readers"}]}),
        );
        s
    }

    fn sar(user: &str, groups: &[&str], ra: Value) -> Value {
        json!({"apiVersion":API_VERSION,"kind":"SubjectAccessReview","metadata":{"creationTimestamp":null},
               "spec":{"user":user,"groups":groups,"resourceAttributes":ra}})
    }

    #[test]
    fn subject_access_review_answers_with_status() {
        let s = source();
        let out = subject_access_review(
            &sar(
                "bob",
                &["readers"],
                json!({"namespace":"team","verb":"list","resource":"pods"}),
            ),
            &chain(),
            &s,
        )
        .unwrap();
        assert_eq!(out["status"]["allowed"], true);
        assert_eq!(
            out["status"]["reason"],
            "RBAC: allowed by RoleBinding \"readers/team\" of ClusterRole \"pod-reader\" to Group \"readers\""
        );
        assert_eq!(out["spec"]["user"], "bob");
        let out = subject_access_review(
            &sar(
                "bob",
                &["readers"],
                json!({"namespace":"other","verb":"list","resource":"pods"}),
            ),
            &chain(),
            &s,
        )
        .unwrap();
        assert_eq!(out["status"], json!({"allowed": false}));
        let out = subject_access_review(
            &sar(
                "root",
                &["system:masters"],
                json!({"verb":"delete","resource":"nodes"}),
            ),
            &chain(),
            &s,
        )
        .unwrap();
        assert_eq!(out["status"], json!({"allowed": true}));
    }

    #[test]
    fn subject_access_review_validation_is_422() {
        let s = source();
        let body = json!({"kind":"SubjectAccessReview","spec":{"user":"bob"}});
        let err = subject_access_review(&body, &chain(), &s).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "SubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"
        );
        let body = json!({"spec":{"resourceAttributes":{"verb":"get"},"nonResourceAttributes":{"path":"/","verb":"get"}}});
        let err = subject_access_review(&body, &chain(), &s).unwrap_err();
        assert!(
            err.message
                .contains("spec.nonResourceAttributes: Invalid value"),
            "{}",
            err.message
        );
        assert!(err.message.contains(
            "spec.user: Invalid value: \"\": at least one of user or group must be specified"
        ));
        let body = json!({"metadata":{"name":"x"},"spec":{"user":"u","resourceAttributes":{"verb":"get"}}});
        let err = subject_access_review(&body, &chain(), &s).unwrap_err();
        assert!(
            err.message.contains("metadata: Invalid value"),
            "{}",
            err.message
        );
    }

    #[test]
    fn non_resource_reviews_use_the_path() {
        let s = source();
        let body = json!({"spec":{"groups":["readers"],"nonResourceAttributes":{"path":"/healthz","verb":"get"}}});
        // the RoleBinding does not apply to non-resource requests, which have no namespace
        let out = subject_access_review(&body, &chain(), &s).unwrap();
        assert_eq!(out["status"]["allowed"], false);
        let root = UserInfo::new("root", vec!["system:masters".into()]);
        let out = self_subject_access_review(&body, &root, &chain(), &s).unwrap();
        assert_eq!(out["kind"], "SelfSubjectAccessReview");
        assert_eq!(out["status"]["allowed"], true);
    }

    #[test]
    fn local_subject_access_review_checks_its_namespace() {
        let s = source();
        let body = json!({"spec":{"groups":["readers"],"resourceAttributes":{"namespace":"team","verb":"get","resource":"pods"}}});
        let out = local_subject_access_review(&body, "team", &chain(), &s).unwrap();
        assert_eq!(out["status"]["allowed"], true);
        assert_eq!(out["metadata"]["namespace"], "team");
        let err = local_subject_access_review(&body, "other", &chain(), &s).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(err.message.contains("spec.resourceAttributes.namespace: Invalid value: \"team\": must match metadata.namespace"));
        let mut wrong = body.clone();
        wrong["metadata"] = json!({"namespace":"elsewhere"});
        assert_eq!(
            local_subject_access_review(&wrong, "team", &chain(), &s)
                .unwrap_err()
                .code,
            400
        );
        let non = json!({"spec":{"user":"u","nonResourceAttributes":{"path":"/","verb":"get"}}});
        let err = local_subject_access_review(&non, "team", &chain(), &s).unwrap_err();
        assert!(err.message.contains("disallowed on this kind of request"));
    }

    #[test]
    fn self_subject_access_review_uses_the_requester() {
        let s = source();
        let bob = UserInfo::new("bob", vec!["readers".into()]);
        let body = json!({"apiVersion":API_VERSION,"kind":"SelfSubjectAccessReview",
                          "spec":{"resourceAttributes":{"namespace":"team","verb":"list","resource":"pods"}}});
        let out = self_subject_access_review(&body, &bob, &chain(), &s).unwrap();
        assert_eq!(out["status"]["allowed"], true);
        let eve = UserInfo::new("eve", vec![]);
        let out = self_subject_access_review(&body, &eve, &chain(), &s).unwrap();
        assert_eq!(out["status"], json!({"allowed": false}));
        let err = self_subject_access_review(&json!({"spec":{}}), &bob, &chain(), &s).unwrap_err();
        assert_eq!(err.code, 422);
    }

    #[test]
    fn self_subject_rules_review_lists_rules() {
        let s = source();
        let bob = UserInfo::new("bob", vec!["readers".into()]);
        let body = json!({"apiVersion":API_VERSION,"kind":"SelfSubjectRulesReview","spec":{"namespace":"team"}});
        let out = self_subject_rules_review(&body, &bob, &chain(), &s).unwrap();
        assert_eq!(
            out["status"],
            json!({
                "resourceRules":[{"verbs":["get","list"],"apiGroups":[""],"resources":["pods"]}],
                "nonResourceRules":[{"verbs":["get"],"nonResourceURLs":["/healthz"]}],
                "incomplete": false,
            })
        );
        let node = UserInfo::new("system:node:n1", vec!["system:nodes".into()]);
        let out = self_subject_rules_review(&body, &node, &chain(), &s).unwrap();
        assert_eq!(out["status"]["incomplete"], true);
        assert_eq!(
            out["status"]["evaluationError"],
            "node authorizer does not support user rule resolution"
        );
        let err = self_subject_rules_review(&json!({"spec":{}}), &bob, &chain(), &s).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "no namespace on request")
        );
    }

    #[test]
    fn deny_sets_denied() {
        let s = source();
        let chain = AuthorizerChain::from_modes("AlwaysDeny").unwrap();
        let out = subject_access_review(
            &sar("bob", &[], json!({"verb":"get","resource":"pods"})),
            &chain,
            &s,
        )
        .unwrap();
        assert_eq!(
            out["status"],
            json!({"allowed": false, "denied": true, "reason": "Everything is forbidden."})
        );
    }
}
