//! TaintNodesByCondition: new nodes start with the not-ready NoSchedule taint, so nothing is
//! scheduled to them before the node lifecycle controller has seen them become ready.

use serde_json::{json, Value};

use super::default_toleration_seconds::TAINT_NODE_NOT_READY;
use super::helpers::{arr_at, str_at};
use super::{Attributes, Operation, Plugin};
use crate::error::ApiError;

/// Upstream `TaintNodesByCondition`; needs no other objects.
pub struct TaintNodesByCondition;

impl Plugin for TaintNodesByCondition {
    fn name(&self) -> &'static str {
        "TaintNodesByCondition"
    }

    fn admit(&self, attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create
            || !attrs.is("", "nodes")
            || !attrs.subresource.is_empty()
        {
            return Ok(());
        }
        let Some(node) = attrs.object.as_deref_mut() else {
            return Ok(());
        };
        let present = arr_at(node, "/spec/taints").iter().any(|t| {
            str_at(t, "/key") == TAINT_NODE_NOT_READY && str_at(t, "/effect") == "NoSchedule"
        });
        if present {
            return Ok(());
        }
        let taint = json!({"key": TAINT_NODE_NOT_READY, "effect": "NoSchedule"});
        if !node["spec"].is_object() {
            node["spec"] = json!({});
        }
        match node["spec"].get_mut("taints").and_then(Value::as_array_mut) {
            Some(list) => list.push(taint),
            None => node["spec"]["taints"] = json!([taint]),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn create(node: Value) -> Value {
        let mut req = Req::new(Operation::Create, "", "nodes", "Node")
            .name("n")
            .object(node);
        req.plugin(&TaintNodesByCondition).unwrap();
        req.object.unwrap()
    }

    #[test]
    fn new_nodes_get_the_not_ready_taint() {
        let node = create(json!({"metadata": {"name": "n"}}));
        assert_eq!(
            node["spec"]["taints"],
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
        );
    }

    #[test]
    fn existing_taints_are_kept_and_not_duplicated() {
        let node = create(json!({"metadata": {"name": "n"}, "spec": {"taints": [
            {"key": "a", "value": "b", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
        ]}}));
        assert_eq!(node["spec"]["taints"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn updates_are_untouched() {
        let mut req = Req::new(Operation::Update, "", "nodes", "Node")
            .name("n")
            .object(json!({"metadata": {"name": "n"}}));
        req.plugin(&TaintNodesByCondition).unwrap();
        assert!(req.object.unwrap().get("spec").is_none());
    }
}
