//! DaemonSets: v1 defaults, update strategy rules and the template generation annotation.

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::apps::{
    fresh_status, int_or_percent_value, not_more_than_100_percent, validate_int_or_percent,
};
use crate::registry::core::pod::{
    default_pod_template, nonnegative, template_matches, validate_pod_template_spec,
};
use crate::registry::validation::{
    child_mut, get, int_of, name_is_dns_subdomain, selector_is_empty, semantic_eq, set_default,
    set_default_str, str_of, validate_immutable_field, validate_label_selector,
    validate_object_meta, validate_object_meta_update,
};
use crate::registry::Strategy;

/// The v1 form of the internal `templateGeneration`.
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

fn validate_update_strategy(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = json!({});
    let us = spec.get("updateStrategy").unwrap_or(&empty);
    match str_of(us, "type") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(ru) = get(us, "rollingUpdate") else {
                errs.push(FieldError::required(
                    "spec.updateStrategy.rollingUpdate",
                    "",
                ));
                return errs;
            };
            let p = "spec.updateStrategy.rollingUpdate";
            let (mu, ms) = (get(ru, "maxUnavailable"), get(ru, "maxSurge"));
            errs.extend(validate_int_or_percent(mu, &format!("{p}.maxUnavailable")));
            errs.extend(validate_int_or_percent(ms, &format!("{p}.maxSurge")));
            errs.extend(not_more_than_100_percent(
                mu,
                &format!("{p}.maxUnavailable"),
            ));
            errs.extend(not_more_than_100_percent(ms, &format!("{p}.maxSurge")));
            let (has_unavailable, has_surge) =
                (int_or_percent_value(mu) != 0, int_or_percent_value(ms) != 0);
            if has_unavailable && has_surge {
                errs.push(FieldError::invalid(
                    format!("{p}.maxSurge"),
                    ms.cloned().unwrap_or(Value::Null),
                    "may not be set when maxUnavailable is non-zero",
                ));
            } else if !has_unavailable && !has_surge {
                errs.push(FieldError::required(
                    format!("{p}.maxUnavailable"),
                    "cannot be 0 when maxSurge is 0",
                ));
            }
        }
        _ => errs.push(FieldError::not_supported(
            "spec.updateStrategy",
            us.clone(),
            &["RollingUpdate", "OnDelete"],
        )),
    }
    errs
}

fn validate_daemon_set(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, Some(true), name_is_dns_subdomain);
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let selector = get(spec, "selector");
    let sel_errs = validate_label_selector(selector, "spec.selector");
    let usable = sel_errs.is_empty();
    errs.extend(sel_errs);
    let template = get(spec, "template");
    let labels = template.and_then(|t| t.pointer("/metadata/labels"));
    // A missing selector selects nothing, so it never matches the template.
    if usable && !selector.is_some_and(|s| template_matches(s, labels)) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            labels.cloned().unwrap_or(Value::Null),
            "`selector` does not match template `labels`",
        ));
    }
    if let Some(s) = selector.filter(|s| selector_is_empty(s)) {
        errs.push(FieldError::invalid(
            "spec.selector",
            s.clone(),
            "empty selector is invalid for daemonset",
        ));
    }
    errs.extend(validate_pod_template_spec(
        Some(template.unwrap_or(&empty)),
        "spec.template",
    ));
    let tspec = template.and_then(|t| t.get("spec")).unwrap_or(&empty);
    let restart = str_of(tspec, "restartPolicy");
    if restart != "Always" {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            json!(restart),
            &["Always"],
        ));
    }
    if let Some(ads) = get(tspec, "activeDeadlineSeconds") {
        errs.push(FieldError::invalid(
            "spec.template.spec.activeDeadlineSeconds",
            ads.clone(),
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    errs.extend(nonnegative(
        int_of(spec, "minReadySeconds"),
        "spec.minReadySeconds",
    ));
    errs.extend(validate_update_strategy(spec));
    errs.extend(nonnegative(
        int_of(spec, "revisionHistoryLimit"),
        "spec.revisionHistoryLimit",
    ));
    errs
}

fn set_template_generation(obj: &mut Value, generation: i64) {
    let meta = child_mut(obj, "metadata");
    child_mut(meta, "annotations")[TEMPLATE_GENERATION] = json!(generation.to_string());
}

fn template_generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(TEMPLATE_GENERATION))
        .and_then(Value::as_str)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// `daemonsets`.
pub struct DaemonSetStrategy;

impl Strategy for DaemonSetStrategy {
    fn default(&self, obj: &mut Value) {
        let spec = child_mut(obj, "spec");
        let us = child_mut(spec, "updateStrategy");
        set_default_str(us, "type", "RollingUpdate");
        if str_of(us, "type") == "RollingUpdate" {
            let ru = child_mut(us, "rollingUpdate");
            set_default(ru, "maxUnavailable", json!(1));
            set_default(ru, "maxSurge", json!(0));
        }
        set_default(spec, "revisionHistoryLimit", json!(10));
        default_pod_template(spec.get_mut("template"));
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let generation = template_generation(obj).max(1);
        set_template_generation(obj, generation);
        fresh_status(
            obj,
            json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0}),
        );
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_daemon_set(obj)
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // The template generation counts template changes only.
        let mut generation = template_generation(old);
        if !semantic_eq(new.pointer("/spec/template"), old.pointer("/spec/template")) {
            generation += 1;
        }
        if generation > 0 {
            set_template_generation(new, generation);
        }
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_daemon_set(new));
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

    fn ds(spec: Value) -> Value {
        let mut d =
            json!({"metadata": {"name": "agent", "namespace": "kube-system"}, "spec": spec});
        DaemonSetStrategy.default(&mut d);
        DaemonSetStrategy.prepare_for_create(&mut d);
        d
    }

    fn base() -> Value {
        json!({"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}})
    }

    #[test]
    fn daemon_sets_get_v1_defaults() {
        let d = ds(base());
        assert_eq!(
            d["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["metadata"]["annotations"][TEMPLATE_GENERATION], "1");
        assert!(
            DaemonSetStrategy.validate(&d).is_empty(),
            "{:?}",
            DaemonSetStrategy.validate(&d)
        );
    }

    #[test]
    fn daemon_set_validation_mirrors_upstream() {
        struct Case {
            name: &'static str,
            change: fn(&mut Value),
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "no selector", change: |s| { s.as_object_mut().map(|m| m.remove("selector")); },
                want: vec!["spec.template.metadata.labels: Invalid value: {\"app\":\"agent\"}: `selector` does not match template `labels`"] },
            Case { name: "both surge and unavailable", change: |s| s["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}),
                want: vec!["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"] },
            Case { name: "neither", change: |s| s["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}),
                want: vec!["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"] },
        ];
        for c in cases {
            let mut spec = base();
            (c.change)(&mut spec);
            let got: Vec<String> = DaemonSetStrategy
                .validate(&ds(spec))
                .iter()
                .map(FieldError::message)
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn template_changes_bump_the_template_generation() {
        let old = ds(base());
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("y");
        DaemonSetStrategy.prepare_for_update(&mut new, &old);
        assert_eq!(new["metadata"]["annotations"][TEMPLATE_GENERATION], "2");
        let mut same = old.clone();
        same["spec"]["minReadySeconds"] = json!(5);
        DaemonSetStrategy.prepare_for_update(&mut same, &old);
        assert_eq!(same["metadata"]["annotations"][TEMPLATE_GENERATION], "1");
    }
}
