//! NodeName: a pod with `spec.nodeName` fits only that node.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, Status};

/// The plugin's name.
pub const NAME: &str = "NodeName";
/// The reason for another node.
pub const REASON: &str = "node(s) didn't match the requested node name";

/// The Filter plugin.
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(name) if !name.is_empty() && name != node.name() => Status::unresolvable(REASON),
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::helpers::testing::{node, node_info, pod};
    use serde_json::json;

    #[test]
    fn only_the_named_node_fits() {
        let ni = node_info(node("a", "1", "1Gi", json!({}), json!([])), vec![]);
        let cases = [
            ("unset", json!({}), Code::Success),
            ("same", json!({"nodeName": "a"}), Code::Success),
            (
                "other",
                json!({"nodeName": "b"}),
                Code::UnschedulableAndUnresolvable,
            ),
        ];
        for (name, spec, code) in cases {
            assert_eq!(
                NodeName
                    .filter(&CycleState::default(), &pod("p", json!({}), spec), &ni)
                    .code,
                code,
                "{name}"
            );
        }
    }
}
