//! Priority: pods get `spec.priority` and `spec.preemptionPolicy` from their PriorityClass (or
//! the global default), and at most one PriorityClass may be the global default.

use serde_json::{json, Value};

use super::helpers::str_at;
use super::{forbidden, Attributes, Operation, Plugin};
use crate::error::ApiError;

const GROUP: &str = "scheduling.k8s.io";
const RESOURCE: &str = "priorityclasses";
const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";

/// Upstream `Priority`, reading `scheduling.k8s.io/priorityclasses`.
pub struct Priority;

/// The built-in classes the apiserver creates at start, for the window before they are in
/// the cache.
fn system_class_value(name: &str) -> Option<i64> {
    match name {
        "system-node-critical" => Some(2_000_001_000),
        "system-cluster-critical" => Some(2_000_000_000),
        _ => None,
    }
}

/// The global default class; if a race left several, the one with the lowest value.
fn default_class(attrs: &Attributes<'_>) -> Option<Value> {
    attrs
        .source
        .list(GROUP, RESOURCE, "")
        .into_iter()
        .filter(|pc| pc["globalDefault"].as_bool() == Some(true))
        .min_by_key(|pc| pc["value"].as_i64().unwrap_or(0))
        .map(|pc| (*pc).clone())
}

fn policy_of(pc: &Value) -> String {
    match str_at(pc, "/preemptionPolicy") {
        "" => PREEMPT_LOWER_PRIORITY.to_string(),
        p => p.to_string(),
    }
}

impl Plugin for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }

    fn admit(&self, attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
        if !attrs.is("", "pods") || !attrs.subresource.is_empty() {
            return Ok(());
        }
        match attrs.operation {
            Operation::Update => {
                // Priority was resolved on create; keep it if the update dropped it.
                let old_spec = attrs.old_object.map(|o| o["spec"].clone());
                if let (Some(pod), Some(old_spec)) = (attrs.object.as_deref_mut(), old_spec) {
                    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
                        for key in ["priority", "preemptionPolicy"] {
                            let missing = spec.get(key).is_none_or(Value::is_null);
                            if missing && !old_spec[key].is_null() {
                                spec.insert(key.into(), old_spec[key].clone());
                            }
                        }
                    }
                }
                Ok(())
            }
            Operation::Create => self.admit_create(attrs),
            _ => Ok(()),
        }
    }

    fn validate(
        &self,
        attrs: &Attributes<'_>,
        _warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if !attrs.is(GROUP, RESOURCE)
            || !attrs.subresource.is_empty()
            || !matches!(attrs.operation, Operation::Create | Operation::Update)
        {
            return Ok(());
        }
        let Some(pc) = attrs.obj() else {
            return Ok(());
        };
        if pc["globalDefault"].as_bool() != Some(true) {
            return Ok(());
        }
        let Some(current) = default_class(attrs) else {
            return Ok(());
        };
        let current_name = str_at(&current, "/metadata/name");
        if attrs.operation == Operation::Create || current_name != str_at(pc, "/metadata/name") {
            return Err(forbidden(
                attrs,
                format_args!(
                    "PriorityClass {current_name} is already marked as default. Only one default can exist"
                ),
            ));
        }
        Ok(())
    }
}

impl Priority {
    fn admit_create(&self, attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
        let Some(pod) = attrs.obj() else {
            return Ok(());
        };
        let class_name = str_at(pod, "/spec/priorityClassName").to_string();
        let (class_name, priority, policy) = if class_name.is_empty() {
            match default_class(attrs) {
                Some(pc) => (
                    str_at(&pc, "/metadata/name").to_string(),
                    pc["value"].as_i64().unwrap_or(0),
                    policy_of(&pc),
                ),
                None => (String::new(), 0, PREEMPT_LOWER_PRIORITY.to_string()),
            }
        } else {
            match attrs.source.get(GROUP, RESOURCE, "", &class_name) {
                Some(pc) => (
                    class_name,
                    pc["value"].as_i64().unwrap_or(0),
                    policy_of(&pc),
                ),
                None => match system_class_value(&class_name) {
                    Some(v) => (class_name, v, PREEMPT_LOWER_PRIORITY.to_string()),
                    None => {
                        return Err(forbidden(
                            attrs,
                            format_args!("no PriorityClass with name {class_name} was found"),
                        ))
                    }
                },
            }
        };
        if let Some(given) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
            if given != priority {
                return Err(forbidden(
                    attrs,
                    format_args!(
                        "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
                    ),
                ));
            }
        }
        let given_policy = str_at(pod, "/spec/preemptionPolicy");
        if !given_policy.is_empty() && given_policy != policy {
            return Err(forbidden(
                attrs,
                format_args!(
                    "the string value of PreemptionPolicy ({given_policy}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                ),
            ));
        }
        let Some(pod) = attrs.object.as_deref_mut() else {
            return Ok(());
        };
        if !pod["spec"].is_object() {
            pod["spec"] = json!({});
        }
        if !class_name.is_empty() {
            pod["spec"]["priorityClassName"] = json!(class_name);
        }
        pod["spec"]["priority"] = json!(priority);
        pod["spec"]["preemptionPolicy"] = json!(policy);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn class(name: &str, value: i64, default: bool) -> Value {
        json!({"metadata": {"name": name}, "value": value, "globalDefault": default})
    }

    fn create(spec_extra: Value, classes: &[Value]) -> (Result<Vec<String>, ApiError>, Value) {
        let mut p = pod("p", json!([{"name": "c"}]));
        if let (Some(s), Some(e)) = (p["spec"].as_object_mut(), spec_extra.as_object()) {
            s.extend(e.clone());
        }
        let mut req = Req::create_pod("ns", p);
        for c in classes {
            req = req.with(GROUP, RESOURCE, c.clone());
        }
        let r = req.plugin(&Priority);
        (r, req.object.unwrap())
    }

    #[test]
    fn class_value_and_policy_are_copied_to_the_pod() {
        let mut high = class("high", 1000, false);
        high["preemptionPolicy"] = json!("Never");
        let (r, p) = create(json!({"priorityClassName": "high"}), &[high]);
        r.unwrap();
        assert_eq!(p["spec"]["priority"], 1000);
        assert_eq!(p["spec"]["preemptionPolicy"], "Never");
    }

    #[test]
    fn unknown_class_is_forbidden() {
        let (r, _) = create(json!({"priorityClassName": "nope"}), &[]);
        assert_eq!(
            r.unwrap_err().message,
            "pods \"p\" is forbidden: no PriorityClass with name nope was found"
        );
    }

    #[test]
    fn pods_without_a_class_get_the_global_default_or_zero() {
        let (r, p) = create(
            json!({}),
            &[class("dflt", 7, true), class("other", 9, false)],
        );
        r.unwrap();
        assert_eq!(p["spec"]["priority"], 7);
        assert_eq!(p["spec"]["priorityClassName"], "dflt");
        let (r, p) = create(json!({}), &[]);
        r.unwrap();
        assert_eq!(p["spec"]["priority"], 0);
        assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        assert!(p["spec"].get("priorityClassName").is_none());
    }

    #[test]
    fn a_mismatching_priority_in_the_spec_is_forbidden() {
        let (r, _) = create(
            json!({"priorityClassName": "high", "priority": 5}),
            &[class("high", 1000, false)],
        );
        assert_eq!(
            r.unwrap_err().message,
            "pods \"p\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
        );
        let (r, _) = create(
            json!({"priorityClassName": "high", "priority": 1000}),
            &[class("high", 1000, false)],
        );
        r.unwrap();
    }

    #[test]
    fn system_classes_resolve_in_any_namespace() {
        let (r, p) = create(json!({"priorityClassName": "system-node-critical"}), &[]);
        r.unwrap();
        assert_eq!(p["spec"]["priority"], 2_000_001_000);
    }

    #[test]
    fn updates_keep_the_resolved_priority() {
        let mut req = Req::new(Operation::Update, "", "pods", "Pod")
            .ns("ns")
            .name("p")
            .object(pod("p", json!([])))
            .old(json!({"spec": {"priority": 10, "preemptionPolicy": "Never"}}));
        req.plugin(&Priority).unwrap();
        let p = req.object.unwrap();
        assert_eq!(p["spec"]["priority"], 10);
        assert_eq!(p["spec"]["preemptionPolicy"], "Never");
    }

    #[test]
    fn only_one_global_default_class_may_exist() {
        let mut req = Req::new(Operation::Create, GROUP, RESOURCE, "PriorityClass")
            .name("second")
            .object(class("second", 1, true))
            .with(GROUP, RESOURCE, class("first", 1, true));
        assert_eq!(
            req.plugin(&Priority).unwrap_err().message,
            "priorityclasses.scheduling.k8s.io \"second\" is forbidden: PriorityClass first is already marked as default. Only one default can exist"
        );
        let mut req = Req::new(Operation::Update, GROUP, RESOURCE, "PriorityClass")
            .name("first")
            .object(class("first", 2, true))
            .with(GROUP, RESOURCE, class("first", 1, true));
        assert!(req.plugin(&Priority).is_ok());
    }
}
