//! Authorization: who may do what. A chain of authorizers (--authorization-mode) each
//! allowing, denying or having no opinion, as upstream's `authorizer.Authorizer`.

pub mod bootstrap_policy;
pub mod chain;
pub mod escalation;
pub mod node;
pub mod rbac;
pub mod review;
pub mod rules;

use serde_json::Value;

use crate::authn::UserInfo;
use crate::error::ApiError;
use crate::http::request::RequestInfo;
use crate::server::ApiServer;

/// What a request wants to do, as upstream's `authorizer.Attributes`.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    /// Resource verbs (get, list, watch, create, update, patch, delete, deletecollection, and
    /// special verbs such as bind, escalate, impersonate, use, approve, sign) or, for
    /// non-resource requests, the lower-case HTTP method (get, post, put, ...).
    pub verb: &'a str,
    /// true for /api/... and /apis/... resource paths; false for /healthz, /metrics, ...
    pub resource_request: bool,
    pub namespace: &'a str,
    pub api_group: &'a str,
    pub api_version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    /// The request path, for non-resource requests.
    pub path: &'a str,
}

/// One authorizer's answer; the string is the reason (shown in SubjectAccessReview status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    Deny(String),
    NoOpinion(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// RBAC's escalation checks on writes of roles and bindings: a user may only grant what they
/// hold, or what they may `escalate`/`bind`. Other resources pass.
pub fn check_rbac_write(
    api: &ApiServer,
    user: &UserInfo,
    info: &RequestInfo,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if info.group != "rbac.authorization.k8s.io" || !info.subresource.is_empty() {
        return Ok(());
    }
    escalation::check_write(
        user,
        &info.resource,
        &info.namespace,
        new,
        old,
        &api.catalog,
        &api.authz,
    )
}
