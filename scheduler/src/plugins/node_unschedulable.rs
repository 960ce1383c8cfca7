//! NodeUnschedulable: rejects cordoned nodes unless the pod tolerates the unschedulable taint.

use k8s_openapi::api::core::v1::{Pod, Taint};

use super::helpers::{tolerates, tolerations};
use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, Status};

/// The plugin's name.
pub const NAME: &str = "NodeUnschedulable";
/// The reason for a cordoned node.
pub const REASON: &str = "node(s) were unschedulable";

/// The Filter plugin.
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let cordoned = node
            .node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if !cordoned {
            return Status::success();
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if tolerations(pod).iter().any(|t| tolerates(t, &taint)) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
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
    fn cordoned_nodes_reject_pods_without_the_toleration() {
        let mut n = node("n", "1", "1Gi", json!({}), json!([]));
        n.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
        let ni = node_info(n, vec![]);
        let cases = [
            (
                "no toleration",
                json!({}),
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "tolerates",
                json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
                Code::Success,
            ),
        ];
        for (name, spec, code) in cases {
            let s =
                NodeUnschedulable.filter(&CycleState::default(), &pod("p", json!({}), spec), &ni);
            assert_eq!(s.code, code, "{name}");
        }
    }
}
