//! NamespaceLifecycle: no new content in missing or terminating namespaces, and the system
//! namespaces cannot be deleted.

use serde_json::json;

use super::helpers::str_at;
use super::{forbidden, Attributes, Operation, Plugin};
use crate::error::ApiError;

/// Namespaces that may never be deleted (upstream's immortal namespaces).
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// Resources answered in any namespace, because a NotFound would leak which namespaces exist.
const ACCESS_REVIEW_RESOURCES: &[(&str, &str)] =
    &[("authorization.k8s.io", "localsubjectaccessreviews")];

/// Upstream `NamespaceLifecycle` (a mutating-phase plugin).
pub struct NamespaceLifecycle;

impl Plugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    fn admit(&self, attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
        let is_namespace = attrs.is("", "namespaces");
        if attrs.operation == Operation::Delete
            && is_namespace
            && IMMORTAL_NAMESPACES.contains(&attrs.name)
        {
            return Err(forbidden(attrs, "this namespace may not be deleted"));
        }
        if is_namespace || attrs.namespace.is_empty() {
            return Ok(());
        }
        if !matches!(attrs.operation, Operation::Create | Operation::Update) {
            return Ok(());
        }
        if ACCESS_REVIEW_RESOURCES.contains(&(attrs.group, attrs.resource)) {
            return Ok(());
        }
        let Some(ns) = attrs.source.get("", "namespaces", "", attrs.namespace) else {
            return Err(ApiError::not_found("", "namespaces", attrs.namespace));
        };
        if attrs.operation != Operation::Create {
            return Ok(());
        }
        let terminating = str_at(&ns, "/status/phase") == "Terminating"
            || ns
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|t| !t.is_null());
        if !terminating {
            return Ok(());
        }
        let mut err = forbidden(
            attrs,
            format_args!(
                "unable to create new content in namespace {} because it is being terminated",
                attrs.namespace
            ),
        );
        if let Some(details) = err.details.as_mut() {
            details["causes"] = json!([{
                "reason": "NamespaceTerminating",
                "message": format!("namespace {} is being terminated", attrs.namespace),
                "field": "metadata.namespace",
            }]);
        }
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn terminating(name: &str) -> serde_json::Value {
        json!({"metadata": {"name": name, "deletionTimestamp": "2024-01-01T00:00:00Z"},
               "status": {"phase": "Terminating"}})
    }

    #[test]
    fn create_in_missing_namespace_is_not_found() {
        let mut req = Req::create_pod("gone", pod("p", json!([])));
        let err = req.plugin(&NamespaceLifecycle).unwrap_err();
        assert_eq!(err.code, 404);
        assert_eq!(err.message, "namespaces \"gone\" not found");
    }

    #[test]
    fn create_in_terminating_namespace_is_forbidden_with_a_cause() {
        let mut req =
            Req::create_pod("old", pod("p", json!([]))).with("", "namespaces", terminating("old"));
        let err = req.plugin(&NamespaceLifecycle).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"p\" is forbidden: unable to create new content in namespace old because it is being terminated"
        );
        let d = err.details.unwrap();
        assert_eq!(d["causes"][0]["reason"], "NamespaceTerminating");
        assert_eq!(d["causes"][0]["field"], "metadata.namespace");
    }

    #[test]
    fn updates_and_deletes_in_terminating_namespaces_are_allowed() {
        let mut req = Req::new(Operation::Update, "", "pods", "Pod")
            .ns("old")
            .name("p")
            .object(pod("p", json!([])))
            .with("", "namespaces", terminating("old"));
        assert!(req.plugin(&NamespaceLifecycle).is_ok());
        let mut req = Req::new(Operation::Delete, "", "pods", "Pod")
            .ns("gone")
            .name("p");
        assert!(req.plugin(&NamespaceLifecycle).is_ok());
    }

    #[test]
    fn immortal_namespaces_cannot_be_deleted() {
        for ns in IMMORTAL_NAMESPACES {
            let mut req = Req::new(Operation::Delete, "", "namespaces", "Namespace")
                .ns(ns)
                .name(ns);
            let err = req.plugin(&NamespaceLifecycle).unwrap_err();
            assert_eq!(
                err.message,
                format!("namespaces \"{ns}\" is forbidden: this namespace may not be deleted")
            );
        }
        let mut req = Req::new(Operation::Delete, "", "namespaces", "Namespace")
            .ns("team")
            .name("team");
        assert!(req.plugin(&NamespaceLifecycle).is_ok());
    }

    #[test]
    fn cluster_scoped_resources_and_access_reviews_are_exempt() {
        let mut req = Req::new(Operation::Create, "", "nodes", "Node")
            .name("n")
            .object(json!({"metadata": {"name": "n"}}));
        assert!(req.plugin(&NamespaceLifecycle).is_ok());
        let mut req = Req::new(
            Operation::Create,
            "authorization.k8s.io",
            "localsubjectaccessreviews",
            "LocalSubjectAccessReview",
        )
        .ns("missing")
        .object(json!({"metadata": {}}));
        assert!(req.plugin(&NamespaceLifecycle).is_ok());
    }

    #[test]
    fn create_in_active_namespace_is_allowed() {
        let mut req =
            Req::create_pod("ok", pod("p", json!([]))).with("", "namespaces", namespace("ok"));
        assert!(req.plugin(&NamespaceLifecycle).is_ok());
    }
}
