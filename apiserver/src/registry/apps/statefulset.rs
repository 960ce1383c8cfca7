//! StatefulSets: v1 defaults, update strategy and claim retention rules, mutable-field limits.

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::apps::{check_selector, fresh_status, SelectorCheck};
use crate::registry::core::pod::{default_pod_template, nonnegative, template_matches};
use crate::registry::core::volume::default_pvc_spec;
use crate::registry::validation::{
    child_mut, each_mut, get, int_of, name_is_dns_subdomain, remove, semantic_eq, set_default,
    set_default_str, str_of, validate_annotations, validate_labels, validate_object_meta,
    validate_object_meta_update,
};
use crate::registry::Strategy;

/// `SetDefaults_StatefulSet`, including the claim templates' PVC defaults.
pub fn default_stateful_set(obj: &mut Value) {
    let spec = child_mut(obj, "spec");
    set_default_str(spec, "podManagementPolicy", "OrderedReady");
    let us = child_mut(spec, "updateStrategy");
    if str_of(us, "type").is_empty() {
        us["type"] = json!("RollingUpdate");
        set_default(us, "rollingUpdate", json!({}));
    }
    if str_of(us, "type") == "RollingUpdate" {
        if let Some(ru) = us.get_mut("rollingUpdate").filter(|r| r.is_object()) {
            set_default(ru, "partition", json!(0));
        }
    }
    let retention = child_mut(spec, "persistentVolumeClaimRetentionPolicy");
    set_default_str(retention, "whenDeleted", "Retain");
    set_default_str(retention, "whenScaled", "Retain");
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    default_pod_template(spec.get_mut("template"));
    each_mut(spec, "volumeClaimTemplates", |t| {
        if let Some(s) = t.get_mut("spec") {
            default_pvc_spec(s);
        }
        let status = child_mut(t, "status");
        set_default_str(status, "phase", "Pending");
    });
}

fn validate_stateful_set(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, Some(true), name_is_dns_subdomain);
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    match str_of(spec, "podManagementPolicy") {
        "" => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            json!(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let us = spec.get("updateStrategy").unwrap_or(&empty);
    match str_of(us, "type") {
        "" => errs.push(FieldError::required("spec.updateStrategy", "")),
        "OnDelete" => {
            if let Some(ru) = get(us, "rollingUpdate") {
                errs.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    ru.clone(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = get(us, "rollingUpdate") {
                errs.extend(nonnegative(
                    int_of(ru, "partition"),
                    "spec.updateStrategy.rollingUpdate.partition",
                ));
            }
        }
        _ => errs.push(FieldError::invalid(
            "spec.updateStrategy",
            us.clone(),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(r) = get(spec, "persistentVolumeClaimRetentionPolicy") {
        for f in ["whenDeleted", "whenScaled"] {
            let v = str_of(r, f);
            if v != "Retain" && v != "Delete" {
                errs.push(FieldError::not_supported(
                    format!("spec.persistentVolumeClaimRetentionPolicy.{f}"),
                    json!(v),
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    errs.extend(nonnegative(int_of(spec, "replicas"), "spec.replicas"));
    errs.extend(nonnegative(
        int_of(spec, "minReadySeconds"),
        "spec.minReadySeconds",
    ));
    if let Some(o) = get(spec, "ordinals") {
        errs.extend(nonnegative(int_of(o, "start"), "spec.ordinals.start"));
    }
    let (sel_errs, check) = check_selector(spec, "statefulset", "");
    errs.extend(sel_errs);
    // Upstream checks only the template's labels and annotations here: its volumes may name
    // claim templates, which a plain pod spec check would reject.
    let template = get(spec, "template");
    let labels = template.and_then(|t| t.pointer("/metadata/labels"));
    let selector = match check {
        SelectorCheck::Missing => None,
        SelectorCheck::Usable(s) => Some(s),
        SelectorCheck::Unusable => Some(&empty),
    };
    match template {
        None => errs.push(FieldError::required("spec.template", "")),
        Some(t) => {
            if !selector.is_some_and(|s| template_matches(s, labels)) {
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    labels.cloned().unwrap_or(Value::Null),
                    "`selector` does not match template `labels`",
                ));
            }
            errs.extend(validate_labels(labels, "spec.template.labels"));
            errs.extend(validate_annotations(
                t.pointer("/metadata/annotations"),
                "spec.template.annotations",
            ));
        }
    }
    let tspec = template.and_then(|t| t.get("spec")).unwrap_or(&empty);
    let restart = str_of(tspec, "restartPolicy");
    if restart != "Always" {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            json!(restart),
            &["Always"],
        ));
    }
    if get(tspec, "activeDeadlineSeconds").is_some() {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    errs
}

/// `statefulsets`.
pub struct StatefulSetStrategy;

impl Strategy for StatefulSetStrategy {
    fn default(&self, obj: &mut Value) {
        default_stateful_set(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        fresh_status(obj, json!({"replicas": 0, "availableReplicas": 0}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_stateful_set(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_stateful_set(new));
        let strip = |v: &Value| {
            let mut s = v.get("spec").cloned().unwrap_or(json!({}));
            for f in [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ] {
                remove(&mut s, f);
            }
            s
        };
        if !semantic_eq(Some(&strip(new)), Some(&strip(old))) {
            errs.push(FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
        errs
    }

    fn tracks_generation(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(spec: Value) -> Value {
        let mut s = json!({"metadata": {"name": "db", "namespace": "default"}, "spec": spec});
        StatefulSetStrategy.default(&mut s);
        StatefulSetStrategy.prepare_for_create(&mut s);
        s
    }

    fn base() -> Value {
        json!({"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]})
    }

    #[test]
    fn stateful_sets_get_v1_defaults() {
        let s = sts(base());
        let spec = &s["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["status"]["phase"],
            "Pending"
        );
        assert!(
            StatefulSetStrategy.validate(&s).is_empty(),
            "{:?}",
            StatefulSetStrategy.validate(&s)
        );
    }

    #[test]
    fn stateful_set_validation_mirrors_upstream() {
        struct Case {
            name: &'static str,
            change: fn(&mut Value),
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "bad policy", change: |s| s["podManagementPolicy"] = json!("Random"),
                want: vec!["spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'"] },
            Case { name: "on delete with rolling update", change: |s| s["updateStrategy"] = json!({"type": "OnDelete", "rollingUpdate": {"partition": 1}}),
                want: vec!["spec.updateStrategy.rollingUpdate: Invalid value: {\"partition\":1}: only allowed for updateStrategy 'RollingUpdate'"] },
            Case { name: "labels mismatch", change: |s| s["selector"] = json!({"matchLabels": {"app": "other"}}),
                want: vec!["spec.template.metadata.labels: Invalid value: {\"app\":\"db\"}: `selector` does not match template `labels`"] },
            Case { name: "empty selector", change: |s| s["selector"] = json!({}),
                want: vec!["spec.selector: Invalid value: {}: empty selector is invalid for statefulset"] },
        ];
        for c in cases {
            let mut spec = base();
            (c.change)(&mut spec);
            let got: Vec<String> = StatefulSetStrategy
                .validate(&sts(spec))
                .iter()
                .map(FieldError::message)
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn only_some_stateful_set_fields_may_change() {
        let old = sts(base());
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(3);
        scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("y");
        assert!(StatefulSetStrategy
            .validate_update(&scaled, &old)
            .is_empty());
        let mut grown = old.clone();
        grown["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] =
            json!("2Gi");
        let errs = StatefulSetStrategy.validate_update(&grown, &old);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec");
    }
}
