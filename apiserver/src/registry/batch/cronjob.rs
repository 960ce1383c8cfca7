//! CronJobs: v1 defaults, schedule and time zone checks, the job template.

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::batch::cron::{parse_standard, time_zone_exists};
use crate::registry::batch::job::{default_job_spec, validate_job_spec_fields};
use crate::registry::core::pod::nonnegative;
use crate::registry::validation::{
    bool_of, child_mut, get, int_of, name_is_dns_subdomain, set_default, str_of,
    validate_annotations, validate_labels, validate_object_meta, validate_object_meta_update,
};
use crate::registry::Strategy;

const POLICIES: &[&str] = &["Allow", "Forbid", "Replace"];

fn validate_time_zone(tz: &Value) -> Vec<FieldError> {
    let path = "spec.timeZone";
    let Some(name) = tz.as_str() else {
        return Vec::new();
    };
    if name.is_empty() {
        return vec![FieldError::invalid(
            path,
            tz.clone(),
            "timeZone must be nil or non-empty string",
        )];
    }
    let part_ok = |p: &str| {
        !(p == "." || p == ".." || p.starts_with('-'))
            && (1..=14).contains(&p.len())
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".-_+".contains(&c))
    };
    if !name.split('/').all(part_ok) {
        return vec![FieldError::invalid(
            path,
            tz.clone(),
            format!("unknown time zone {name}"),
        )];
    }
    let mut errs = Vec::new();
    if name.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid(
            path,
            tz.clone(),
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    } else if !time_zone_exists(name) {
        errs.push(FieldError::invalid(
            path,
            tz.clone(),
            format!("unknown time zone {name}"),
        ));
    }
    errs
}

fn validate_spec(spec: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let schedule = str_of(spec, "schedule");
    if schedule.is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    } else {
        if let Err(e) = parse_standard(schedule) {
            errs.push(FieldError::invalid("spec.schedule", json!(schedule), e));
        }
        let allow_tz = old.is_some_and(|o| str_of(o, "schedule").contains("TZ"));
        if schedule.contains("TZ") {
            if !allow_tz {
                errs.push(FieldError::invalid(
                    "spec.schedule",
                    json!(schedule),
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            } else if get(spec, "timeZone").is_some() {
                errs.push(FieldError::invalid(
                    "spec.schedule",
                    json!(schedule),
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                ));
            }
        }
    }
    errs.extend(nonnegative(
        int_of(spec, "startingDeadlineSeconds"),
        "spec.startingDeadlineSeconds",
    ));
    let tz_changed = old.is_none_or(|o| o.get("timeZone") != spec.get("timeZone"));
    if let Some(tz) = get(spec, "timeZone").filter(|_| tz_changed) {
        errs.extend(validate_time_zone(tz));
    }
    match str_of(spec, "concurrencyPolicy") {
        "" => errs.push(FieldError::required("spec.concurrencyPolicy", "")),
        p if !POLICIES.contains(&p) => errs.push(FieldError::not_supported(
            "spec.concurrencyPolicy",
            json!(p),
            POLICIES,
        )),
        _ => {}
    }
    let empty = json!({});
    let template = spec.get("jobTemplate").unwrap_or(&empty);
    let tmeta = template.get("metadata").unwrap_or(&empty);
    errs.extend(validate_labels(
        tmeta.get("labels"),
        "spec.jobTemplate.metadata.labels",
    ));
    errs.extend(validate_annotations(
        tmeta.get("annotations"),
        "spec.jobTemplate.metadata.annotations",
    ));
    let jspec = template.get("spec").unwrap_or(&empty);
    errs.extend(validate_job_spec_fields(jspec, "spec.jobTemplate.spec"));
    if let Some(sel) = get(jspec, "selector") {
        errs.push(FieldError::invalid(
            "spec.jobTemplate.spec.selector",
            sel.clone(),
            "`selector` will be auto-generated",
        ));
    }
    if bool_of(jspec, "manualSelector") {
        errs.push(FieldError::not_supported(
            "spec.jobTemplate.spec.manualSelector",
            json!(true),
            &["nil", "false"],
        ));
    }
    for f in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        errs.extend(nonnegative(int_of(spec, f), &format!("spec.{f}")));
    }
    errs
}

/// `cronjobs`.
pub struct CronJobStrategy;

impl Strategy for CronJobStrategy {
    fn default(&self, obj: &mut Value) {
        let spec = child_mut(obj, "spec");
        set_default(spec, "concurrencyPolicy", json!("Allow"));
        set_default(spec, "suspend", json!(false));
        set_default(spec, "successfulJobsHistoryLimit", json!(3));
        set_default(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(js) = spec.get_mut("jobTemplate").and_then(|t| t.get_mut("spec")) {
            default_job_spec(js, false);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta(obj, Some(true), name_is_dns_subdomain);
        let empty = json!({});
        errs.extend(validate_spec(obj.get("spec").unwrap_or(&empty), None));
        let name = crate::object::name(obj);
        // The controller appends an 11-character suffix to job names (63 - 11 = 52).
        if name.len() > 52 {
            errs.push(FieldError::invalid(
                "metadata.name",
                json!(name),
                "must be no more than 52 characters",
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_object_meta(new, Some(true), name_is_dns_subdomain));
        let empty = json!({});
        errs.extend(validate_spec(
            new.get("spec").unwrap_or(&empty),
            old.get("spec"),
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

    fn cronjob(spec: Value) -> Value {
        let mut c = json!({"metadata": {"name": "hello", "namespace": "default"}, "spec": spec});
        CronJobStrategy.default(&mut c);
        CronJobStrategy.prepare_for_create(&mut c);
        c
    }

    fn job_template() -> Value {
        json!({"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    #[test]
    fn cronjobs_get_v1_defaults_without_job_defaults() {
        let c = cronjob(json!({"schedule": "*/1 * * * *", "jobTemplate": job_template()}));
        let s = &c["spec"];
        assert_eq!(s["concurrencyPolicy"], "Allow");
        assert_eq!(s["suspend"], false);
        assert_eq!(s["successfulJobsHistoryLimit"], 3);
        assert_eq!(s["failedJobsHistoryLimit"], 1);
        assert!(s["jobTemplate"]["spec"].get("backoffLimit").is_none());
        assert_eq!(
            s["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirst"
        );
        assert!(
            CronJobStrategy.validate(&c).is_empty(),
            "{:?}",
            CronJobStrategy.validate(&c)
        );
    }

    #[test]
    fn cronjob_validation_mirrors_upstream() {
        struct Case {
            name: &'static str,
            spec: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "no schedule", spec: json!({"jobTemplate": job_template()}), want: vec!["spec.schedule: Required value"] },
            Case { name: "bad schedule", spec: json!({"schedule": "* * *", "jobTemplate": job_template()}),
                want: vec!["spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: [* * *]"] },
            Case { name: "descriptor", spec: json!({"schedule": "@daily", "jobTemplate": job_template()}), want: vec![] },
            Case { name: "tz in schedule", spec: json!({"schedule": "CRON_TZ=UTC 0 * * * *", "jobTemplate": job_template()}),
                want: vec!["spec.schedule: Invalid value: \"CRON_TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"] },
            Case { name: "bad policy", spec: json!({"schedule": "@daily", "concurrencyPolicy": "Sometimes", "jobTemplate": job_template()}),
                want: vec!["spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\""] },
            Case { name: "local time zone", spec: json!({"schedule": "@daily", "timeZone": "Local", "jobTemplate": job_template()}),
                want: vec!["spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"] },
            Case { name: "always restarting job", spec: json!({"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}}),
                want: vec!["spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""] },
        ];
        for c in cases {
            let got: Vec<String> = CronJobStrategy
                .validate(&cronjob(c.spec))
                .iter()
                .map(FieldError::message)
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn long_names_are_rejected_on_create() {
        let mut c = cronjob(json!({"schedule": "@daily", "jobTemplate": job_template()}));
        c["metadata"]["name"] = json!("a".repeat(53));
        let errs = CronJobStrategy.validate(&c);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].detail, "must be no more than 52 characters");
    }
}
