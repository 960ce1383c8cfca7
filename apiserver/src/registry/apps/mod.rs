//! Strategies of the `apps` group, and the selector and rolling-update rules they share.

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::validation::{
    get, is_valid_percent, selector_is_empty, validate_label_selector, NEGATIVE_ERROR,
};

pub mod controllerrevision;
pub mod daemonset;
pub mod deployment;
pub mod replicaset;
pub mod statefulset;

/// What a workload's `spec.selector` allows for checking the pod template against it.
pub enum SelectorCheck<'a> {
    /// No selector: nothing matches, so the template labels are reported too.
    Missing,
    /// Could not be turned into a selector: the template is not checked.
    Unusable,
    Usable(&'a Value),
}

/// Upstream's selector checks of Deployments, ReplicaSets and StatefulSets: required,
/// well-formed and not empty (`empty selector is invalid for <kind>`).
pub fn check_selector<'a>(
    spec: &'a Value,
    kind: &str,
    unusable_detail: &str,
) -> (Vec<FieldError>, SelectorCheck<'a>) {
    let Some(sel) = get(spec, "selector") else {
        return (
            vec![FieldError::required("spec.selector", "")],
            SelectorCheck::Missing,
        );
    };
    let mut errs = validate_label_selector(Some(sel), "spec.selector");
    let usable = errs.is_empty();
    if selector_is_empty(sel) {
        errs.push(FieldError::invalid(
            "spec.selector",
            sel.clone(),
            format!("empty selector is invalid for {kind}"),
        ));
    }
    if usable {
        (errs, SelectorCheck::Usable(sel))
    } else {
        errs.push(FieldError::invalid(
            "spec.selector",
            sel.clone(),
            unusable_detail,
        ));
        (errs, SelectorCheck::Unusable)
    }
}

/// Upstream's `ValidatePositiveIntOrPercent`.
pub fn validate_int_or_percent(v: Option<&Value>, path: &str) -> Vec<FieldError> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => is_valid_percent(s)
            .into_iter()
            .map(|m| FieldError::invalid(path, json!(s), m))
            .collect(),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) if i < 0 => vec![FieldError::invalid(path, json!(i), NEGATIVE_ERROR)],
            Some(_) => Vec::new(),
            None => vec![FieldError::invalid(
                path,
                v.cloned().unwrap_or(Value::Null),
                "must be an integer or percentage (e.g '5%')",
            )],
        },
        Some(other) => vec![FieldError::invalid(
            path,
            other.clone(),
            "must be an integer or percentage (e.g '5%')",
        )],
    }
}

fn percent(v: &Value) -> Option<i64> {
    v.as_str()?.strip_suffix('%')?.parse().ok()
}

/// Upstream's `IsNotMoreThan100Percent`.
pub fn not_more_than_100_percent(v: Option<&Value>, path: &str) -> Vec<FieldError> {
    match v.and_then(percent) {
        Some(p) if p > 100 => vec![FieldError::invalid(
            path,
            v.cloned().unwrap_or(Value::Null),
            "must not be greater than 100%",
        )],
        _ => Vec::new(),
    }
}

/// The number of an int-or-percent (`25%` is 25), as upstream's `getIntOrPercentValue`.
pub fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => percent(&json!(s)).or_else(|| s.parse().ok()).unwrap_or(0),
        _ => 0,
    }
}

/// Empty `status` on create, with the counters a workload's status always prints.
pub fn fresh_status(obj: &mut Value, status: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent_values_are_checked() {
        struct Case {
            name: &'static str,
            value: Value,
            errors: usize,
            number: i64,
        }
        let cases = [
            Case {
                name: "percent",
                value: json!("25%"),
                errors: 0,
                number: 25,
            },
            Case {
                name: "int",
                value: json!(3),
                errors: 0,
                number: 3,
            },
            Case {
                name: "negative",
                value: json!(-1),
                errors: 1,
                number: -1,
            },
            Case {
                name: "word",
                value: json!("half"),
                errors: 1,
                number: 0,
            },
            Case {
                name: "over 100",
                value: json!("150%"),
                errors: 1,
                number: 150,
            },
        ];
        for c in cases {
            let mut errs = validate_int_or_percent(Some(&c.value), "p");
            errs.extend(not_more_than_100_percent(Some(&c.value), "p"));
            assert_eq!(errs.len(), c.errors, "{}", c.name);
            assert_eq!(int_or_percent_value(Some(&c.value)), c.number, "{}", c.name);
        }
    }

    #[test]
    fn selectors_are_required_and_not_empty() {
        struct Case {
            name: &'static str,
            spec: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "present",
                spec: json!({"selector": {"matchLabels": {"a": "b"}}}),
                want: vec![],
            },
            Case {
                name: "missing",
                spec: json!({}),
                want: vec!["spec.selector: Required value"],
            },
            Case {
                name: "empty",
                spec: json!({"selector": {}}),
                want: vec![
                    "spec.selector: Invalid value: {}: empty selector is invalid for deployment",
                ],
            },
        ];
        for c in cases {
            let (errs, _) = check_selector(&c.spec, "deployment", "invalid label selector");
            let got: Vec<String> = errs.iter().map(FieldError::message).collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }
}
