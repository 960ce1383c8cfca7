//! Jobs: v1 defaults, the generated selector and controller-uid labels, and update rules.

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::core::pod::{
    default_pod_template, nonnegative, template_matches, validate_pod_template_spec,
};
use crate::registry::validation::{
    bool_of, child_mut, get, int_of, is_dns1123_label, name_is_dns_subdomain, obj_of, remove,
    semantic_eq, set_default, str_of, validate_immutable_field, validate_label_selector,
    validate_object_meta, validate_object_meta_update,
};
use crate::registry::Strategy;

pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
const MAX_PARALLELISM_FOR_INDEXED: i64 = 100_000;

/// `SetDefaults_Job` for a job spec. `is_job` adds what only Job objects get.
pub fn default_job_spec(spec: &mut Value, is_job: bool) {
    if !spec.is_object() {
        return;
    }
    if is_job {
        if get(spec, "completions").is_none() && get(spec, "parallelism").is_none() {
            spec["completions"] = json!(1);
            spec["parallelism"] = json!(1);
        }
        set_default(spec, "parallelism", json!(1));
        let backoff = if get(spec, "backoffLimitPerIndex").is_some() {
            i64::from(i32::MAX)
        } else {
            6
        };
        set_default(spec, "backoffLimit", json!(backoff));
        set_default(spec, "completionMode", json!("NonIndexed"));
        set_default(spec, "suspend", json!(false));
        set_default(spec, "manualSelector", json!(false));
        let replacement = if get(spec, "podFailurePolicy").is_some() {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        set_default(spec, "podReplacementPolicy", json!(replacement));
        if let Some(rules) = spec
            .pointer_mut("/podFailurePolicy/rules")
            .and_then(Value::as_array_mut)
        {
            for rule in rules {
                crate::registry::validation::each_mut(rule, "onPodConditions", |c| {
                    set_default(c, "status", json!("True"));
                });
            }
        }
    }
    default_pod_template(spec.get_mut("template"));
}

/// `generateSelector`: pod labels naming the job and its uid, and a selector on the uid.
fn generate_selector(job: &mut Value) {
    let name = crate::object::name(job).to_string();
    let uid = crate::object::meta_str(job, "uid")
        .unwrap_or("")
        .to_string();
    let spec = child_mut(job, "spec");
    let template = child_mut(spec, "template");
    let meta = child_mut(template, "metadata");
    let labels = child_mut(meta, "labels");
    for (k, v) in [
        (LEGACY_JOB_NAME_LABEL, &name),
        (JOB_NAME_LABEL, &name),
        (LEGACY_CONTROLLER_UID_LABEL, &uid),
        (CONTROLLER_UID_LABEL, &uid),
    ] {
        set_default(labels, k, json!(v));
    }
    let selector = child_mut(spec, "selector");
    let match_labels = child_mut(selector, "matchLabels");
    set_default(match_labels, CONTROLLER_UID_LABEL, json!(uid));
}

fn validate_has_label(labels: Option<&Value>, key: &str, expected: &str) -> Vec<FieldError> {
    let path = format!("spec.template.metadata.labels[{key}]");
    match labels.and_then(|l| l.get(key)).and_then(Value::as_str) {
        None => vec![FieldError::required(path, expected)],
        Some(v) if v != expected => vec![FieldError::invalid(
            path,
            labels.cloned().unwrap_or(Value::Null),
            format!("must be '{expected}'"),
        )],
        _ => Vec::new(),
    }
}

/// Upstream's `validateGeneratedSelector`.
fn validate_generated_selector(job: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = json!({});
    let spec = job.get("spec").unwrap_or(&empty);
    let labels = spec
        .pointer("/template/metadata/labels")
        .filter(|l| !l.is_null());
    if bool_of(spec, "manualSelector") || labels.is_none() {
        return errs;
    }
    let Some(selector) = get(spec, "selector") else {
        return errs;
    };
    let uid = crate::object::meta_str(job, "uid").unwrap_or("");
    let name = crate::object::name(job);
    if uid.is_empty() {
        errs.push(FieldError::required("metadata.uid", ""));
    }
    errs.extend(validate_has_label(labels, LEGACY_CONTROLLER_UID_LABEL, uid));
    errs.extend(validate_has_label(labels, LEGACY_JOB_NAME_LABEL, name));
    errs.extend(validate_has_label(labels, CONTROLLER_UID_LABEL, uid));
    errs.extend(validate_has_label(labels, JOB_NAME_LABEL, name));
    let expected = json!({CONTROLLER_UID_LABEL: uid});
    if !validate_label_selector(Some(selector), "spec.selector").is_empty()
        || !crate::registry::validation::selector_matches(selector, Some(&expected))
    {
        errs.push(FieldError::invalid(
            "spec.selector",
            selector.clone(),
            "`selector` not auto-generated",
        ));
    }
    errs
}

/// Upstream's `validateJobSpec` at `path` (`spec`, or a CronJob's `spec.jobTemplate.spec`).
pub fn validate_job_spec_fields(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        errs.extend(nonnegative(int_of(spec, f), &format!("{path}.{f}")));
    }
    if let Some(mode) = get(spec, "completionMode").and_then(Value::as_str) {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(
                format!("{path}.completionMode"),
                json!(mode),
                &["NonIndexed", "Indexed"],
            ));
        }
        if mode == "Indexed" {
            if get(spec, "completions").is_none() {
                errs.push(FieldError::required(
                    format!("{path}.completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) =
                int_of(spec, "parallelism").filter(|p| *p > MAX_PARALLELISM_FOR_INDEXED)
            {
                errs.push(FieldError::invalid(
                    format!("{path}.parallelism"),
                    json!(p),
                    format!("must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED} when completion mode is Indexed"),
                ));
            }
        }
    }
    let has_failure_policy = get(spec, "podFailurePolicy").is_some();
    if let Some(r) = get(spec, "podReplacementPolicy").and_then(Value::as_str) {
        let p = format!("{path}.podReplacementPolicy");
        if has_failure_policy {
            if r != "Failed" {
                errs.push(FieldError::not_supported(p, json!(r), &["Failed"]));
            }
        } else if r != "Failed" && r != "TerminatingOrFailed" {
            errs.push(FieldError::not_supported(
                p,
                json!(r),
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let template_path = format!("{path}.template");
    let empty = json!({});
    let template = spec.get("template").unwrap_or(&empty);
    errs.extend(validate_pod_template_spec(Some(template), &template_path));
    let restart = template
        .get("spec")
        .map(|s| str_of(s, "restartPolicy"))
        .unwrap_or("");
    let rp = format!("{template_path}.spec.restartPolicy");
    if restart == "Always" || restart.is_empty() {
        errs.push(FieldError::required(
            rp,
            "valid values: \"OnFailure\", \"Never\"",
        ));
    } else if restart != "OnFailure" && restart != "Never" {
        errs.push(FieldError::not_supported(
            rp,
            json!(restart),
            &["OnFailure", "Never"],
        ));
    } else if has_failure_policy && restart != "Never" {
        errs.push(FieldError::invalid(
            rp,
            json!(restart),
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
    errs
}

/// Upstream's `ValidateJobSpec`: the fields, a required selector matching the template.
fn validate_job_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = validate_job_spec_fields(spec, "spec");
    let selector = get(spec, "selector");
    match selector {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(s) => errs.extend(validate_label_selector(Some(s), "spec.selector")),
    }
    let labels = spec.pointer("/template/metadata/labels");
    let usable = selector.is_none_or(|s| validate_label_selector(Some(s), "").is_empty());
    if usable && !selector.is_some_and(|s| template_matches(s, labels)) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            labels.cloned().unwrap_or(Value::Null),
            "`selector` does not match template `labels`",
        ));
    }
    errs
}

fn validate_job(job: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(job, Some(true), name_is_dns_subdomain);
    errs.extend(validate_generated_selector(job));
    let empty = json!({});
    let spec = job.get("spec").unwrap_or(&empty);
    errs.extend(validate_job_spec(spec));
    let indexed = str_of(spec, "completionMode") == "Indexed";
    if let Some(c) = int_of(spec, "completions").filter(|c| indexed && *c > 0) {
        let name = crate::object::name(job);
        let hostname = format!("{name}-{}", c - 1);
        if !is_dns1123_label(&hostname).is_empty() {
            errs.push(FieldError::invalid(
                "metadata.name",
                json!(name),
                format!("will not able to create pod with invalid DNS label: {hostname}"),
            ));
        }
    }
    errs
}

/// Template changes allowed while a job is suspended and never started: scheduling
/// directives, labels and annotations.
fn template_for_comparison(
    template: Option<&Value>,
    other: Option<&Value>,
    mutable: bool,
) -> Value {
    let mut t = template.cloned().unwrap_or(json!({}));
    if !mutable {
        return t;
    }
    let other = other.cloned().unwrap_or(json!({}));
    for (parent, field) in [
        ("spec", "nodeSelector"),
        ("spec", "tolerations"),
        ("spec", "schedulingGates"),
        ("metadata", "labels"),
        ("metadata", "annotations"),
    ] {
        let value = other.get(parent).and_then(|p| p.get(field)).cloned();
        let p = child_mut(&mut t, parent);
        match value {
            Some(v) => p[field] = v,
            None => remove(p, field),
        }
    }
    if let Some(aff) = other.pointer("/spec/affinity/nodeAffinity").cloned() {
        child_mut(
            child_mut(child_mut(&mut t, "spec"), "affinity"),
            "nodeAffinity",
        )
        .clone_from(&aff);
    } else if let Some(a) = t.pointer_mut("/spec/affinity") {
        remove(a, "nodeAffinity");
    }
    t
}

/// `jobs`.
pub struct JobStrategy;

impl Strategy for JobStrategy {
    fn default(&self, obj: &mut Value) {
        let spec = child_mut(obj, "spec");
        default_job_spec(spec, true);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let manual = obj
            .pointer("/spec/manualSelector")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let has_uid = crate::object::meta_str(obj, "uid").is_some_and(|u| !u.is_empty());
        if !manual && has_uid {
            generate_selector(obj);
        }
        // Upstream's read path copies the template labels onto an unlabelled job.
        let labels = obj.pointer("/spec/template/metadata/labels").cloned();
        if let Some(l) = labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) {
            let meta = child_mut(obj, "metadata");
            if obj_of(meta, "labels").is_none_or(|m| m.is_empty()) {
                meta["labels"] = l;
            }
        }
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_job(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_object_meta(new, Some(true), name_is_dns_subdomain));
        let empty = json!({});
        let (ns, os) = (
            new.get("spec").unwrap_or(&empty),
            old.get("spec").unwrap_or(&empty),
        );
        errs.extend(validate_job_spec(ns));
        let indexed = str_of(ns, "completionMode") == "Indexed";
        if indexed {
            if !semantic_eq(ns.get("completions"), os.get("completions"))
                && get(ns, "completions").is_some()
                && int_of(ns, "completions") != int_of(ns, "parallelism")
            {
                errs.push(FieldError::invalid(
                    "spec.completions",
                    ns["completions"].clone(),
                    "can only be modified in tandem with spec.parallelism",
                ));
            }
        } else {
            errs.extend(validate_immutable_field(
                ns.get("completions"),
                os.get("completions"),
                "spec.completions",
            ));
        }
        errs.extend(validate_immutable_field(
            ns.get("selector"),
            os.get("selector"),
            "spec.selector",
        ));
        let never_started = old.pointer("/status/startTime").is_none_or(Value::is_null);
        let mutable = bool_of(os, "suspend") && never_started;
        let new_t = ns.get("template");
        let old_t = template_for_comparison(os.get("template"), new_t, mutable);
        errs.extend(validate_immutable_field(
            new_t,
            Some(&old_t),
            "spec.template",
        ));
        for f in [
            "completionMode",
            "podFailurePolicy",
            "backoffLimitPerIndex",
            "managedBy",
            "successPolicy",
        ] {
            errs.extend(validate_immutable_field(
                ns.get(f),
                os.get(f),
                &format!("spec.{f}"),
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

    fn job(spec: Value) -> Value {
        let mut j =
            json!({"metadata": {"name": "pi", "namespace": "default", "uid": "u-1"}, "spec": spec});
        JobStrategy.default(&mut j);
        JobStrategy.prepare_for_create(&mut j);
        j
    }

    fn template(restart: &str) -> Value {
        json!({"spec": {"restartPolicy": restart, "containers": [{"name": "pi", "image": "perl"}]}})
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn jobs_get_defaults_and_a_generated_selector() {
        let j = job(json!({"template": template("Never")}));
        let s = &j["spec"];
        assert_eq!(s["completions"], 1);
        assert_eq!(s["parallelism"], 1);
        assert_eq!(s["backoffLimit"], 6);
        assert_eq!(s["completionMode"], "NonIndexed");
        assert_eq!(s["suspend"], false);
        assert_eq!(s["manualSelector"], false);
        assert_eq!(s["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            s["selector"],
            json!({"matchLabels": {CONTROLLER_UID_LABEL: "u-1"}})
        );
        let labels = json!({CONTROLLER_UID_LABEL: "u-1", JOB_NAME_LABEL: "pi", LEGACY_CONTROLLER_UID_LABEL: "u-1", LEGACY_JOB_NAME_LABEL: "pi"});
        assert_eq!(s["template"]["metadata"]["labels"], labels);
        assert_eq!(j["metadata"]["labels"], labels);
        assert_eq!(j["status"], json!({}));
        assert!(
            JobStrategy.validate(&j).is_empty(),
            "{:?}",
            JobStrategy.validate(&j)
        );
    }

    #[test]
    fn only_parallelism_defaults_when_completions_are_set() {
        let j = job(json!({"completions": 5, "template": template("Never")}));
        assert_eq!(j["spec"]["completions"], 5);
        assert_eq!(j["spec"]["parallelism"], 1);
        let j = job(json!({"parallelism": 3, "template": template("Never")}));
        assert!(j["spec"].get("completions").is_none());
    }

    #[test]
    fn job_validation_mirrors_upstream() {
        struct Case {
            name: &'static str,
            spec: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "default restart policy", spec: json!({"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}),
                want: vec!["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""] },
            Case { name: "negative backoff", spec: json!({"backoffLimit": -1, "template": template("OnFailure")}),
                want: vec!["spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"] },
            Case { name: "indexed without completions", spec: json!({"completionMode": "Indexed", "parallelism": 2, "template": template("Never")}),
                want: vec!["spec.completions: Required value: when completion mode is Indexed"] },
            Case { name: "foreign selector", spec: json!({"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}}, "spec": template("Never")["spec"].clone()}}),
                want: vec!["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"x\",\"batch.kubernetes.io/controller-uid\":\"u-1\"}}: `selector` not auto-generated"] },
        ];
        for c in cases {
            assert_eq!(
                messages(&JobStrategy.validate(&job(c.spec))),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn manual_selectors_must_match_the_template() {
        let j = job(
            json!({"manualSelector": true, "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "y"}}, "spec": template("Never")["spec"].clone()}}),
        );
        assert_eq!(
            messages(&JobStrategy.validate(&j)),
            vec!["spec.template.metadata.labels: Invalid value: {\"app\":\"y\"}: `selector` does not match template `labels`"]
        );
    }

    #[test]
    fn job_templates_are_immutable_unless_suspended() {
        let old = job(json!({"template": template("Never")}));
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("ruby");
        let errs = JobStrategy.validate_update(&new, &old);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.template");
        let mut suspended = job(json!({"suspend": true, "template": template("Never")}));
        suspended["status"] = json!({});
        let mut moved = suspended.clone();
        moved["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a"});
        assert!(JobStrategy.validate_update(&moved, &suspended).is_empty());
        let mut more = old.clone();
        more["spec"]["completions"] = json!(3);
        assert_eq!(
            JobStrategy.validate_update(&more, &old)[0].field,
            "spec.completions"
        );
    }
}
