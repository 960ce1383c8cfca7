//! ReplicaSets: replicas 1, the pod template and an immutable selector.

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::apps::{check_selector, fresh_status, SelectorCheck};
use crate::registry::core::pod::{default_pod_template, nonnegative, validate_controller_template};
use crate::registry::validation::{
    child_mut, get, int_of, name_is_dns_subdomain, set_default, validate_immutable_field,
    validate_object_meta, validate_object_meta_update,
};
use crate::registry::Strategy;

fn validate_replica_set(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, Some(true), name_is_dns_subdomain);
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    errs.extend(nonnegative(int_of(spec, "replicas"), "spec.replicas"));
    errs.extend(nonnegative(
        int_of(spec, "minReadySeconds"),
        "spec.minReadySeconds",
    ));
    // Upstream's ReplicaSet message says "deployment" too.
    let (sel_errs, check) = check_selector(spec, "deployment", "invalid label selector");
    errs.extend(sel_errs);
    let template = get(spec, "template");
    match check {
        SelectorCheck::Missing => errs.extend(validate_controller_template(
            template,
            None,
            "spec.template",
            "ReplicaSet",
        )),
        SelectorCheck::Usable(sel) => errs.extend(validate_controller_template(
            template,
            Some(sel),
            "spec.template",
            "ReplicaSet",
        )),
        SelectorCheck::Unusable => {}
    }
    errs
}

/// `replicasets`.
pub struct ReplicaSetStrategy;

impl Strategy for ReplicaSetStrategy {
    fn default(&self, obj: &mut Value) {
        let spec = child_mut(obj, "spec");
        set_default(spec, "replicas", json!(1));
        default_pod_template(spec.get_mut("template"));
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        fresh_status(obj, json!({"replicas": 0}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_replica_set(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_replica_set(new));
        errs.extend(validate_immutable_field(
            new.pointer("/spec/selector"),
            old.pointer("/spec/selector"),
            "spec.selector",
        ));
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
    fn replica_sets_default_and_validate() {
        struct Case {
            name: &'static str,
            spec: Value,
            fields: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "valid",
                spec: json!({"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}),
                fields: vec![],
            },
            Case {
                name: "restart never",
                spec: json!({"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}),
                fields: vec!["spec.template.spec.restartPolicy"],
            },
            Case {
                name: "no template",
                spec: json!({"selector": {"matchLabels": {"a": "b"}}}),
                fields: vec!["spec.template"],
            },
        ];
        for c in cases {
            let mut rs = json!({"metadata": {"name": "r", "namespace": "d"}, "spec": c.spec});
            ReplicaSetStrategy.default(&mut rs);
            ReplicaSetStrategy.prepare_for_create(&mut rs);
            assert_eq!(rs["spec"]["replicas"], 1, "{}", c.name);
            let errs = ReplicaSetStrategy.validate(&rs);
            let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, c.fields, "{}", c.name);
        }
    }
}
