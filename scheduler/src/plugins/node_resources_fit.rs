//! NodeResourcesFit: requests (init containers and overhead included) against allocatable, and
//! the LeastAllocated / MostAllocated / RequestedToCapacityRatio scoring strategies.

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

use crate::framework::resource::pod_requests;
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PreFilterPlugin, Resource, ScorePlugin, Snapshot,
    Status, MAX_NODE_SCORE,
};

/// The plugin's name.
pub const NAME: &str = "NodeResourcesFit";
const STATE_KEY: &str = "PreFilterNodeResourcesFit";

/// One resource and its weight in a scoring strategy.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ResourceSpec {
    /// Resource name (`cpu`, `memory`, extended resources).
    pub name: String,
    /// Weight (default 1).
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

/// A point of the RequestedToCapacityRatio shape: utilization (0..100) -> score (0..10).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct UtilizationShapePoint {
    /// Utilization percentage.
    pub utilization: i64,
    /// Score at that utilization, 0..10.
    pub score: i64,
}

/// `requestedToCapacityRatio` of the scoring strategy.
#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
pub struct RequestedToCapacityRatioParam {
    /// The piecewise linear shape.
    #[serde(default)]
    pub shape: Vec<UtilizationShapePoint>,
}

/// `scoringStrategy` of NodeResourcesFitArgs.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScoringStrategy {
    /// LeastAllocated (default), MostAllocated or RequestedToCapacityRatio.
    #[serde(rename = "type", default = "least")]
    pub kind: String,
    /// Resources scored and their weights (default cpu and memory, weight 1).
    #[serde(default = "default_resources")]
    pub resources: Vec<ResourceSpec>,
    /// The shape for RequestedToCapacityRatio.
    #[serde(default)]
    pub requested_to_capacity_ratio: Option<RequestedToCapacityRatioParam>,
}

fn least() -> String {
    "LeastAllocated".to_string()
}

fn default_resources() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: "cpu".into(),
            weight: 1,
        },
        ResourceSpec {
            name: "memory".into(),
            weight: 1,
        },
    ]
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        Self {
            kind: least(),
            resources: default_resources(),
            requested_to_capacity_ratio: None,
        }
    }
}

/// NodeResourcesFitArgs (kubescheduler.config.k8s.io/v1).
#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeResourcesFitArgs {
    /// Resources the filter does not check.
    #[serde(default)]
    pub ignored_resources: Vec<String>,
    /// How nodes are scored.
    #[serde(default)]
    pub scoring_strategy: ScoringStrategy,
}

/// The PreFilter, Filter and Score plugin.
pub struct NodeResourcesFit {
    args: NodeResourcesFitArgs,
}

impl NodeResourcesFit {
    /// A plugin with `args`; unknown strategy types are rejected.
    pub fn new(args: NodeResourcesFitArgs) -> Result<Self, String> {
        match args.scoring_strategy.kind.as_str() {
            "LeastAllocated" | "MostAllocated" => {}
            "RequestedToCapacityRatio" => {
                let shape = args
                    .scoring_strategy
                    .requested_to_capacity_ratio
                    .as_ref()
                    .map(|r| r.shape.len())
                    .unwrap_or(0);
                if shape == 0 {
                    return Err("requestedToCapacityRatio.shape must not be empty".into());
                }
            }
            other => return Err(format!("scoring strategy {other} is not supported")),
        }
        Ok(Self { args })
    }
}

struct PreFilterState {
    requests: Resource,
    non_zero: Resource,
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl PreFilterPlugin for NodeResourcesFit {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _snapshot: &Snapshot) -> Status {
        let (requests, non_zero) = pod_requests(pod);
        state.write(STATE_KEY, PreFilterState { requests, non_zero });
        Status::success()
    }
}

/// The reasons `requests` does not fit on `node`, in upstream's words.
pub fn insufficient_resources(
    requests: &Resource,
    node: &NodeInfo,
    ignored: &[String],
) -> Vec<String> {
    let mut reasons = Vec::new();
    if node.requested.allowed_pod_number + 1 > node.allocatable.allowed_pod_number {
        reasons.push("Too many pods".to_string());
    }
    let checks = [
        (
            "cpu",
            requests.milli_cpu,
            node.allocatable.milli_cpu,
            node.requested.milli_cpu,
        ),
        (
            "memory",
            requests.memory,
            node.allocatable.memory,
            node.requested.memory,
        ),
        (
            "ephemeral-storage",
            requests.ephemeral_storage,
            node.allocatable.ephemeral_storage,
            node.requested.ephemeral_storage,
        ),
    ];
    for (name, want, alloc, used) in checks {
        if want > 0 && want > alloc - used {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    for (name, want) in &requests.scalar {
        if *want == 0 || ignored.contains(name) {
            continue;
        }
        let alloc = node.allocatable.scalar.get(name).copied().unwrap_or(0);
        let used = node.requested.scalar.get(name).copied().unwrap_or(0);
        if *want > alloc - used {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let computed;
        let requests = match state.read::<PreFilterState>(STATE_KEY) {
            Some(s) => &s.requests,
            None => {
                computed = pod_requests(pod).0;
                &computed
            }
        };
        let reasons = insufficient_resources(requests, node, &self.args.ignored_resources);
        if reasons.is_empty() {
            Status::success()
        } else {
            Status {
                code: crate::framework::Code::Unschedulable,
                reasons,
                plugin: None,
            }
        }
    }
}

/// Linear interpolation on the shape (scores scaled from 0..10 to 0..100).
fn shape_score(shape: &[UtilizationShapePoint], utilization: i64) -> i64 {
    let scaled: Vec<(i64, i64)> = shape
        .iter()
        .map(|p| (p.utilization, p.score * MAX_NODE_SCORE / 10))
        .collect();
    let Some(first) = scaled.first() else {
        return 0;
    };
    if utilization <= first.0 {
        return first.1;
    }
    for w in scaled.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if utilization <= x1 {
            if x1 == x0 {
                return y1;
            }
            return y0 + (y1 - y0) * (utilization - x0) / (x1 - x0);
        }
    }
    scaled.last().map(|p| p.1).unwrap_or(0)
}

impl NodeResourcesFit {
    fn resource_score(&self, requested: i64, capacity: i64) -> i64 {
        match self.args.scoring_strategy.kind.as_str() {
            "MostAllocated" => {
                if capacity == 0 {
                    0
                } else {
                    requested.min(capacity) * MAX_NODE_SCORE / capacity
                }
            }
            "RequestedToCapacityRatio" => {
                let shape = self
                    .args
                    .scoring_strategy
                    .requested_to_capacity_ratio
                    .as_ref()
                    .map(|r| r.shape.as_slice())
                    .unwrap_or_default();
                if capacity == 0 || requested > capacity {
                    return shape_score(shape, 100);
                }
                shape_score(shape, requested * 100 / capacity)
            }
            _ => {
                if capacity == 0 || requested > capacity {
                    0
                } else {
                    (capacity - requested) * MAX_NODE_SCORE / capacity
                }
            }
        }
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let computed;
        let pod_req = match state.read::<PreFilterState>(STATE_KEY) {
            Some(s) => &s.non_zero,
            None => {
                computed = pod_requests(pod).1;
                &computed
            }
        };
        let (mut total, mut weights) = (0i64, 0i64);
        for r in &self.args.scoring_strategy.resources {
            let capacity = node.allocatable.get(&r.name);
            let requested = node.non_zero_requested.get(&r.name) + pod_req.get(&r.name);
            if capacity == 0 && !matches!(r.name.as_str(), "cpu" | "memory") {
                // Extended resources the node does not have do not count, as upstream.
                continue;
            }
            total += self.resource_score(requested, capacity) * r.weight;
            weights += r.weight;
        }
        Ok(if weights == 0 { 0 } else { total / weights })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::helpers::testing::{node, node_info, pod_with_requests};
    use serde_json::json;

    fn plugin(kind: &str) -> NodeResourcesFit {
        let args: NodeResourcesFitArgs = serde_json::from_value(json!({"scoringStrategy": {"type": kind,
            "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]}}}))
            .expect("args");
        NodeResourcesFit::new(args).expect("plugin")
    }

    #[test]
    fn filter_compares_requests_with_free_allocatable() {
        let ni = node_info(
            node("a", "2", "4Gi", json!({}), json!([])),
            vec![pod_with_requests("x", "1500m", "1Gi")],
        );
        let cases = [
            (
                "fits",
                pod_with_requests("p", "500m", "1Gi"),
                Code::Success,
                vec![],
            ),
            (
                "cpu",
                pod_with_requests("p", "600m", "1Gi"),
                Code::Unschedulable,
                vec!["Insufficient cpu"],
            ),
            (
                "both",
                pod_with_requests("p", "1", "8Gi"),
                Code::Unschedulable,
                vec!["Insufficient cpu", "Insufficient memory"],
            ),
        ];
        let p = plugin("LeastAllocated");
        for (name, pod, code, reasons) in cases {
            let mut st = CycleState::default();
            p.pre_filter(&mut st, &pod, &Snapshot::default());
            let s = p.filter(&st, &pod, &ni);
            assert_eq!(s.code, code, "{name}");
            assert_eq!(s.reasons, reasons, "{name}");
        }
    }

    #[test]
    fn filter_counts_pods() {
        let mut n = node("a", "2", "4Gi", json!({}), json!([]));
        n.status
            .as_mut()
            .and_then(|s| s.allocatable.as_mut())
            .map(|a| {
                a.insert(
                    "pods".into(),
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
                )
            });
        let ni = node_info(n, vec![pod_with_requests("x", "1m", "1")]);
        let s = plugin("LeastAllocated").filter(
            &CycleState::default(),
            &pod_with_requests("p", "1m", "1"),
            &ni,
        );
        assert_eq!(s.reasons, vec!["Too many pods"]);
    }

    #[test]
    fn strategies_score_as_upstream() {
        // 4 cpu / 8Gi node with 1 cpu / 2Gi used; pod asks 1 cpu / 2Gi -> 50% used.
        let ni = node_info(
            node("a", "4", "8Gi", json!({}), json!([])),
            vec![pod_with_requests("x", "1", "2Gi")],
        );
        let pod = pod_with_requests("p", "1", "2Gi");
        let st = CycleState::default();
        let cases = [
            ("LeastAllocated", 50),
            ("MostAllocated", 50),
            ("RequestedToCapacityRatio", 50),
        ];
        for (kind, want) in cases {
            assert_eq!(
                plugin(kind).score(&st, &pod, &ni).expect("score"),
                want,
                "{kind}"
            );
        }
        let pod = pod_with_requests("p", "2", "4Gi"); // 75%
        assert_eq!(
            plugin("LeastAllocated")
                .score(&st, &pod, &ni)
                .expect("score"),
            25
        );
        assert_eq!(
            plugin("MostAllocated")
                .score(&st, &pod, &ni)
                .expect("score"),
            75
        );
        assert!(NodeResourcesFit::new(NodeResourcesFitArgs {
            scoring_strategy: ScoringStrategy {
                kind: "Nope".into(),
                ..Default::default()
            },
            ..Default::default()
        })
        .is_err());
    }
}
