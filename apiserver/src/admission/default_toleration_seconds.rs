//! DefaultTolerationSeconds: pods tolerate not-ready and unreachable nodes for a bounded time
//! unless they say otherwise.

use serde_json::{json, Value};

use super::helpers::{arr_at, str_at};
use super::{Attributes, Operation, Plugin};
use crate::error::ApiError;

/// Taint the node lifecycle controller puts on nodes whose Ready condition is False.
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint the node lifecycle controller puts on nodes whose Ready condition is Unknown.
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Upstream `DefaultTolerationSeconds`; needs no other objects.
pub struct DefaultTolerationSeconds {
    not_ready_seconds: i64,
    unreachable_seconds: i64,
}

impl DefaultTolerationSeconds {
    /// `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`.
    pub fn new(not_ready_seconds: i64, unreachable_seconds: i64) -> Self {
        Self {
            not_ready_seconds,
            unreachable_seconds,
        }
    }
}

/// Whether a toleration already covers `key:NoExecute` (empty key or effect match all).
fn tolerates(tolerations: &[Value], key: &str) -> bool {
    tolerations.iter().any(|t| {
        let k = str_at(t, "/key");
        let effect = str_at(t, "/effect");
        (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
    })
}

impl Plugin for DefaultTolerationSeconds {
    fn name(&self) -> &'static str {
        "DefaultTolerationSeconds"
    }

    fn admit(&self, attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
        if !attrs.is("", "pods")
            || !attrs.subresource.is_empty()
            || !matches!(attrs.operation, Operation::Create | Operation::Update)
        {
            return Ok(());
        }
        let Some(pod) = attrs.object.as_deref_mut() else {
            return Ok(());
        };
        let existing = arr_at(pod, "/spec/tolerations");
        let mut add = Vec::new();
        for (key, seconds) in [
            (TAINT_NODE_NOT_READY, self.not_ready_seconds),
            (TAINT_NODE_UNREACHABLE, self.unreachable_seconds),
        ] {
            if !tolerates(existing, key) {
                add.push(json!({
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": seconds,
                }));
            }
        }
        if add.is_empty() {
            return Ok(());
        }
        if !pod["spec"].is_object() {
            pod["spec"] = json!({});
        }
        match pod["spec"]
            .get_mut("tolerations")
            .and_then(Value::as_array_mut)
        {
            Some(list) => list.extend(add),
            None => pod["spec"]["tolerations"] = Value::Array(add),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn run(tolerations: Value) -> Value {
        let mut p = pod("p", json!([{"name": "c"}]));
        p["spec"]["tolerations"] = tolerations;
        let mut req = Req::create_pod("ns", p);
        req.plugin(&DefaultTolerationSeconds::new(300, 120))
            .unwrap();
        req.object.unwrap()["spec"]["tolerations"].clone()
    }

    #[test]
    fn both_tolerations_are_added_with_the_configured_seconds() {
        assert_eq!(
            run(Value::Null),
            json!([
                {"key": TAINT_NODE_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 120}
            ])
        );
    }

    #[test]
    fn existing_tolerations_are_kept_and_not_duplicated() {
        let t = run(
            json!([{"key": TAINT_NODE_NOT_READY, "operator": "Exists", "effect": "NoExecute"}]),
        );
        assert_eq!(t.as_array().unwrap().len(), 2);
        assert_eq!(t[1]["key"], TAINT_NODE_UNREACHABLE);
        // a wildcard toleration covers both
        let t = run(json!([{"operator": "Exists"}]));
        assert_eq!(t.as_array().unwrap().len(), 1);
        // a NoSchedule toleration does not
        let t = run(
            json!([{"key": TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}]),
        );
        assert_eq!(t.as_array().unwrap().len(), 3);
    }

    #[test]
    fn subresources_are_ignored() {
        let mut req = Req::create_pod("ns", pod("p", json!([]))).sub("status");
        req.plugin(&DefaultTolerationSeconds::new(300, 300))
            .unwrap();
        assert!(req.object.unwrap()["spec"].get("tolerations").is_none());
    }
}
