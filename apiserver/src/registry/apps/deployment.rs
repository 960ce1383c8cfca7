//! Deployments: v1 defaults, rolling-update rules and an immutable selector.

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::apps::{
    check_selector, fresh_status, int_or_percent_value, not_more_than_100_percent,
    validate_int_or_percent, SelectorCheck,
};
use crate::registry::core::pod::{default_pod_template, nonnegative, validate_controller_template};
use crate::registry::validation::{
    child_mut, get, int_of, name_is_dns_subdomain, semantic_eq, set_default, set_default_str,
    str_of, validate_immutable_field, validate_object_meta, validate_object_meta_update,
};
use crate::registry::Strategy;

/// `SetDefaults_Deployment`.
pub fn default_deployment(obj: &mut Value) {
    let spec = child_mut(obj, "spec");
    set_default(spec, "replicas", json!(1));
    let strategy = child_mut(spec, "strategy");
    set_default_str(strategy, "type", "RollingUpdate");
    if str_of(strategy, "type") == "RollingUpdate" {
        let ru = child_mut(strategy, "rollingUpdate");
        set_default(ru, "maxUnavailable", json!("25%"));
        set_default(ru, "maxSurge", json!("25%"));
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    default_pod_template(spec.get_mut("template"));
}

fn validate_strategy(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = json!({});
    let strategy = spec.get("strategy").unwrap_or(&empty);
    match str_of(strategy, "type") {
        "Recreate" => {
            if get(strategy, "rollingUpdate").is_some() {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match get(strategy, "rollingUpdate") {
            None => errs.push(FieldError::required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let (mu, ms) = (get(ru, "maxUnavailable"), get(ru, "maxSurge"));
                let p = "spec.strategy.rollingUpdate";
                errs.extend(validate_int_or_percent(mu, &format!("{p}.maxUnavailable")));
                errs.extend(validate_int_or_percent(ms, &format!("{p}.maxSurge")));
                if int_or_percent_value(mu) == 0 && int_or_percent_value(ms) == 0 {
                    errs.push(FieldError::invalid(
                        format!("{p}.maxUnavailable"),
                        mu.cloned().unwrap_or(json!(0)),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                errs.extend(not_more_than_100_percent(
                    mu,
                    &format!("{p}.maxUnavailable"),
                ));
            }
        },
        _ => errs.push(FieldError::not_supported(
            "spec.strategy",
            strategy.clone(),
            &["Recreate", "RollingUpdate"],
        )),
    }
    errs
}

/// Upstream's `ValidateDeployment`.
pub fn validate_deployment(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, Some(true), name_is_dns_subdomain);
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    errs.extend(nonnegative(int_of(spec, "replicas"), "spec.replicas"));
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
    errs.extend(validate_strategy(spec));
    let min_ready = int_of(spec, "minReadySeconds");
    errs.extend(nonnegative(min_ready, "spec.minReadySeconds"));
    errs.extend(nonnegative(
        int_of(spec, "revisionHistoryLimit"),
        "spec.revisionHistoryLimit",
    ));
    if let Some(pds) = int_of(spec, "progressDeadlineSeconds") {
        errs.extend(nonnegative(Some(pds), "spec.progressDeadlineSeconds"));
        if pds <= min_ready.unwrap_or(0) {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                json!(pds),
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// `deployments`.
pub struct DeploymentStrategy;

impl Strategy for DeploymentStrategy {
    fn default(&self, obj: &mut Value) {
        default_deployment(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        fresh_status(obj, json!({}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_deployment(obj)
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // Upstream also bumps generation for annotation changes, since annotations are copied
        // to ReplicaSets. Spec changes are bumped by the store.
        let annotations = |v: &Value| v.pointer("/metadata/annotations").cloned();
        if semantic_eq(new.get("spec"), old.get("spec"))
            && !semantic_eq(annotations(new).as_ref(), annotations(old).as_ref())
        {
            let gen = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            child_mut(new, "metadata")["generation"] = json!(gen + 1);
        }
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_deployment(new));
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

    fn deployment(spec: Value) -> Value {
        let mut d = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec});
        DeploymentStrategy.default(&mut d);
        DeploymentStrategy.prepare_for_create(&mut d);
        d
    }

    fn template(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}})
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn deployments_get_v1_defaults() {
        let d = deployment(
            json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
        );
        let s = &d["spec"];
        assert_eq!(s["replicas"], 1);
        assert_eq!(
            s["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(s["revisionHistoryLimit"], 10);
        assert_eq!(s["progressDeadlineSeconds"], 600);
        assert_eq!(s["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            s["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        assert_eq!(d["status"], json!({}));
        assert!(
            DeploymentStrategy.validate(&d).is_empty(),
            "{:?}",
            DeploymentStrategy.validate(&d)
        );
        assert!(DeploymentStrategy.tracks_generation());
    }

    #[test]
    fn deployment_validation_mirrors_upstream() {
        struct Case {
            name: &'static str,
            spec: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "selector mismatch", spec: json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "db"}))}),
                want: vec!["spec.template.metadata.labels: Invalid value: {\"app\":\"db\"}: `selector` does not match template `labels`"] },
            Case { name: "no selector", spec: json!({"template": template(json!({"app": "db"}))}),
                want: vec!["spec.selector: Required value", "spec.template.metadata.labels: Invalid value: {\"app\":\"db\"}: `selector` does not match template `labels`"] },
            Case { name: "negative replicas", spec: json!({"replicas": -1, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
                want: vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"] },
            Case { name: "both zero", spec: json!({"strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
                want: vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"] },
            Case { name: "recreate with rolling update", spec: json!({"strategy": {"type": "Recreate", "rollingUpdate": {}}, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
                want: vec!["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"] },
            Case { name: "deadline below min ready", spec: json!({"minReadySeconds": 700, "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}),
                want: vec!["spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"] },
            Case { name: "missing image", spec: json!({"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}),
                want: vec!["spec.template.spec.containers[0].image: Required value"] },
        ];
        for c in cases {
            assert_eq!(
                messages(&DeploymentStrategy.validate(&deployment(c.spec))),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn deployment_selectors_are_immutable() {
        let old = deployment(
            json!({"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web", "v": "2"}))}),
        );
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "v": "2"}});
        assert_eq!(
            messages(&DeploymentStrategy.validate_update(&new, &old)),
            vec!["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"2\"}}: field is immutable"]
        );
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert!(DeploymentStrategy.validate_update(&scaled, &old).is_empty());
    }
}
