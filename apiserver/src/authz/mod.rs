//! Authorization: who may do what. A chain of authorizers (--authorization-mode) each
//! allowing, denying or having no opinion, as upstream's `authorizer.Authorizer`.

use crate::authn::UserInfo;

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
