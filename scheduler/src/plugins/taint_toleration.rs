//! TaintToleration: filters out nodes with untolerated NoSchedule/NoExecute taints and prefers
//! nodes with fewer untolerated PreferNoSchedule taints.

use k8s_openapi::api::core::v1::Pod;

use super::helpers::{first_untolerated, taints, tolerates, tolerations};
use crate::framework::{
    default_normalize_score, CycleState, FilterPlugin, NodeInfo, Plugin, ScorePlugin, Status,
    MAX_NODE_SCORE,
};

/// The plugin's name.
pub const NAME: &str = "TaintToleration";

/// The Filter and Score plugin.
pub struct TaintToleration;

impl Plugin for TaintToleration {
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

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        match first_untolerated(
            taints(&node.node),
            tolerations(pod),
            &["NoSchedule", "NoExecute"],
        ) {
            None => Status::success(),
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        // Only tolerations that could apply to PreferNoSchedule count, as upstream.
        let tols: Vec<_> = tolerations(pod)
            .iter()
            .filter(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
            })
            .collect();
        let n = taints(&node.node)
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| !tols.iter().any(|tol| tolerates(tol, t)))
            .count();
        Ok(n as i64)
    }

    fn normalize(&self, _state: &CycleState, _pod: &Pod, scores: &mut [i64]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
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
    fn filter_rejects_untolerated_taints_with_upstream_reason() {
        let ni = node_info(
            node(
                "a",
                "1",
                "1Gi",
                json!({}),
                json!([{"key": "k", "value": "v", "effect": "NoSchedule"}]),
            ),
            vec![],
        );
        let cases = [
            (
                "no toleration",
                json!({}),
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "equal",
                json!({"tolerations": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}),
                Code::Success,
            ),
            (
                "exists any",
                json!({"tolerations": [{"operator": "Exists"}]}),
                Code::Success,
            ),
            (
                "wrong value",
                json!({"tolerations": [{"key": "k", "value": "x"}]}),
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "wrong effect",
                json!({"tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute"}]}),
                Code::UnschedulableAndUnresolvable,
            ),
        ];
        for (name, spec, code) in cases {
            let s = TaintToleration.filter(&CycleState::default(), &pod("p", json!({}), spec), &ni);
            assert_eq!(s.code, code, "{name}");
            if code != Code::Success {
                assert_eq!(s.message(), "node(s) had untolerated taint {k: v}");
            }
        }
    }

    #[test]
    fn score_prefers_fewer_prefer_no_schedule_taints() {
        let clean = node_info(node("a", "1", "1Gi", json!({}), json!([])), vec![]);
        let tainted = node_info(
            node(
                "b",
                "1",
                "1Gi",
                json!({}),
                json!([{"key": "k", "effect": "PreferNoSchedule"}]),
            ),
            vec![],
        );
        let p = pod("p", json!({}), json!({}));
        let st = CycleState::default();
        let mut scores = vec![
            TaintToleration.score(&st, &p, &clean).expect("score"),
            TaintToleration.score(&st, &p, &tainted).expect("score"),
        ];
        TaintToleration.normalize(&st, &p, &mut scores);
        assert_eq!(scores, vec![100, 0]);
    }
}
