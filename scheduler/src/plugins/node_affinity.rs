//! NodeAffinity: nodeSelector and required node affinity as a filter, preferred node affinity
//! as a score.

use k8s_openapi::api::core::v1::Pod;

use super::helpers::{node_selector_term_matches, pod_matches_node_selector_and_affinity};
use crate::framework::{
    default_normalize_score, CycleState, FilterPlugin, NodeInfo, Plugin, ScorePlugin, Status,
    MAX_NODE_SCORE,
};

/// The plugin's name.
pub const NAME: &str = "NodeAffinity";
/// The reason for a node the selector or affinity rejects.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// The Filter and Score plugin.
pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        if pod_matches_node_selector_and_affinity(pod, &node.node) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let preferred = pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        Ok(preferred
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0 && node_selector_term_matches(&node.node, &t.preference))
            .map(|t| i64::from(t.weight))
            .sum())
    }

    fn normalize(&self, _state: &CycleState, _pod: &Pod, scores: &mut [i64]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::helpers::testing::{node, node_info, pod};
    use serde_json::json;

    #[test]
    fn filter_honours_node_selector_and_required_affinity() {
        let ni = node_info(
            node(
                "a",
                "1",
                "1Gi",
                json!({"disk": "ssd", "gen": "5"}),
                json!([]),
            ),
            vec![],
        );
        let req = |exprs: serde_json::Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}});
        let cases = [
            ("no constraints", json!({}), Code::Success),
            (
                "selector matches",
                json!({"nodeSelector": {"disk": "ssd"}}),
                Code::Success,
            ),
            (
                "selector differs",
                json!({"nodeSelector": {"disk": "hdd"}}),
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "In",
                req(json!([{"key": "disk", "operator": "In", "values": ["ssd", "nvme"]}])),
                Code::Success,
            ),
            (
                "NotIn",
                req(json!([{"key": "disk", "operator": "NotIn", "values": ["ssd"]}])),
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "Gt",
                req(json!([{"key": "gen", "operator": "Gt", "values": ["4"]}])),
                Code::Success,
            ),
            (
                "DoesNotExist",
                req(json!([{"key": "gpu", "operator": "DoesNotExist"}])),
                Code::Success,
            ),
            (
                "matchFields",
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}}),
                Code::UnschedulableAndUnresolvable,
            ),
        ];
        for (name, spec, code) in cases {
            let s = NodeAffinity.filter(&CycleState::default(), &pod("p", json!({}), spec), &ni);
            assert_eq!(s.code, code, "{name}");
        }
    }

    #[test]
    fn score_sums_matching_preferred_weights() {
        let a = node_info(
            node("a", "1", "1Gi", json!({"zone": "x"}), json!([])),
            vec![],
        );
        let b = node_info(
            node("b", "1", "1Gi", json!({"zone": "y"}), json!([])),
            vec![],
        );
        let p = pod(
            "p",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["y"]}]}}]}}}),
        );
        let st = CycleState::default();
        let mut scores = vec![
            NodeAffinity.score(&st, &p, &a).expect("a"),
            NodeAffinity.score(&st, &p, &b).expect("b"),
        ];
        NodeAffinity.normalize(&st, &p, &mut scores);
        assert_eq!(scores, vec![0, 100]);
    }
}
