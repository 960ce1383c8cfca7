//! NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory use stay balanced.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::resource::{pod_requests, Resource};
use crate::framework::{
    CycleState, NodeInfo, Plugin, PreScorePlugin, ScorePlugin, Snapshot, Status, MAX_NODE_SCORE,
};

/// The plugin's name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// The PreScore and Score plugin.
pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _nodes: &[Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        let (req, _) = pod_requests(pod);
        if req.milli_cpu == 0 && req.memory == 0 {
            Status::skip()
        } else {
            // Computed once per cycle, not once per node.
            state.write(STATE_KEY, req);
            Status::success()
        }
    }
}

const STATE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

/// The balance score for the given used fractions (each capped at 1).
pub fn balance_score(fractions: &[f64]) -> i64 {
    if fractions.len() < 2 {
        return MAX_NODE_SCORE;
    }
    let n = fractions.len() as f64;
    let mean = fractions.iter().sum::<f64>() / n;
    let variance = fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / n;
    ((1.0 - variance.sqrt()) * MAX_NODE_SCORE as f64) as i64
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let computed;
        let req = match state.read::<Resource>(STATE_KEY) {
            Some(r) => r,
            None => {
                computed = pod_requests(pod).0;
                &computed
            }
        };
        let mut fractions = Vec::with_capacity(2);
        for (requested, capacity) in [
            (
                node.requested.milli_cpu + req.milli_cpu,
                node.allocatable.milli_cpu,
            ),
            (node.requested.memory + req.memory, node.allocatable.memory),
        ] {
            if capacity > 0 {
                fractions.push((requested as f64 / capacity as f64).min(1.0));
            }
        }
        Ok(balance_score(&fractions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::helpers::testing::{node, node_info, pod_with_requests};
    use serde_json::json;

    #[test]
    fn balanced_nodes_score_higher() {
        let cases = [
            ("equal use", vec![0.5, 0.5], 100),
            ("skewed", vec![0.8, 0.2], 70),
            ("single", vec![0.3], 100),
        ];
        for (name, f, want) in cases {
            assert_eq!(balance_score(&f), want, "{name}");
        }
        let ni = node_info(node("a", "4", "4Gi", json!({}), json!([])), vec![]);
        let s = BalancedAllocation
            .score(
                &CycleState::default(),
                &pod_with_requests("p", "2", "2Gi"),
                &ni,
            )
            .expect("score");
        assert_eq!(s, 100);
    }
}
