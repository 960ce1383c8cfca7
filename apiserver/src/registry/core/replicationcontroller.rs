//! ReplicationControllers: selector from template labels, replicas 1, the pod template.

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::core::pod::{default_pod_template, nonnegative, validate_controller_template};
use crate::registry::validation::{
    child_mut, get, int_of, name_is_dns_subdomain, obj_of, set_default, set_field, validate_labels,
    validate_object_meta, validate_object_meta_update,
};
use crate::registry::Strategy;

fn validate_rc(rc: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(rc, Some(true), name_is_dns_subdomain);
    let empty = json!({});
    let spec = rc.get("spec").unwrap_or(&empty);
    errs.extend(nonnegative(
        int_of(spec, "minReadySeconds"),
        "spec.minReadySeconds",
    ));
    let selector = get(spec, "selector");
    if obj_of(spec, "selector").is_none_or(|s| s.is_empty()) {
        errs.push(FieldError::required("spec.selector", ""));
    } else {
        errs.extend(validate_labels(selector, "spec.selector"));
    }
    errs.extend(nonnegative(int_of(spec, "replicas"), "spec.replicas"));
    let sel = selector.cloned().unwrap_or(json!({}));
    errs.extend(validate_controller_template(
        get(spec, "template"),
        Some(&sel),
        "spec.template",
        "ReplicationController",
    ));
    errs
}

/// `replicationcontrollers`.
pub struct ReplicationControllerStrategy;

impl Strategy for ReplicationControllerStrategy {
    fn default(&self, obj: &mut Value) {
        let labels = obj
            .pointer("/spec/template/metadata/labels")
            .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
            .cloned();
        let spec = child_mut(obj, "spec");
        if let Some(l) = &labels {
            if obj_of(spec, "selector").is_none_or(|s| s.is_empty()) {
                spec["selector"] = l.clone();
            }
        }
        set_default(spec, "replicas", json!(1));
        default_pod_template(spec.get_mut("template"));
        if let Some(l) = labels {
            let meta = child_mut(obj, "metadata");
            if obj_of(meta, "labels").is_none_or(|m| m.is_empty()) {
                meta["labels"] = l;
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        set_field(obj, "status", json!({"replicas": 0}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_rc(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_rc(new));
        errs
    }

    fn tracks_generation(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_and_labels_come_from_the_template() {
        let mut rc = json!({"metadata": {"name": "r", "namespace": "d"}, "spec": {"template": {
            "metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        ReplicationControllerStrategy.default(&mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "a"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "a"}));
        assert_eq!(rc["spec"]["replicas"], 1);
        assert!(ReplicationControllerStrategy.validate(&rc).is_empty());
    }

    #[test]
    fn mismatched_selectors_are_rejected() {
        let mut rc = json!({"metadata": {"name": "r", "namespace": "d"}, "spec": {"selector": {"app": "b"}, "template": {
            "metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        ReplicationControllerStrategy.default(&mut rc);
        let errs = ReplicationControllerStrategy.validate(&rc);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.template.metadata.labels");
    }
}
