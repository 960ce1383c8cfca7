//! PodTopologySpread: `topologySpreadConstraints` (DoNotSchedule as a filter, ScheduleAnyway as a
//! score) and upstream's default system constraints for pods that a controller owns.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::helpers::{label_selector_matches, pod_labels, pod_matches_node_selector_and_affinity};
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PreFilterPlugin, PreScorePlugin, ScorePlugin,
    Snapshot, Status, MAX_NODE_SCORE,
};

/// The plugin's name.
pub const NAME: &str = "PodTopologySpread";
/// The reason for a node where the skew would be too large.
pub const REASON_SKEW: &str = "node(s) didn't match pod topology spread constraints";
/// The reason for a node without a constraint's topology label.
pub const REASON_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
const FILTER_KEY: &str = "PreFilterPodTopologySpread";
const SCORE_KEY: &str = "PreScorePodTopologySpread";

/// One constraint with its selector resolved.
#[derive(Clone, Debug)]
pub struct Constraint {
    /// maxSkew.
    pub max_skew: i64,
    /// topologyKey.
    pub topology_key: String,
    /// labelSelector merged with matchLabelKeys.
    pub selector: LabelSelector,
    /// minDomains (DoNotSchedule only).
    pub min_domains: Option<i64>,
}

/// The pod's constraints with `when` (`DoNotSchedule` / `ScheduleAnyway`); for ScheduleAnyway,
/// upstream's system defaults (hostname skew 3, zone skew 5) when the pod has none at all and a
/// controller owns it. The defaults select the pod's siblings by its labels (upstream derives the
/// selector from the Services and controllers selecting the pod).
pub fn constraints(pod: &Pod, when: &str) -> Vec<Constraint> {
    let all = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default();
    if all.is_empty() {
        let owned = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true));
        if when != "ScheduleAnyway" || !owned || pod_labels(pod).is_empty() {
            return Vec::new();
        }
        let selector = LabelSelector {
            match_labels: Some(pod_labels(pod).clone()),
            match_expressions: None,
        };
        return [
            ("kubernetes.io/hostname", 3),
            ("topology.kubernetes.io/zone", 5),
        ]
        .into_iter()
        .map(|(key, skew)| Constraint {
            max_skew: skew,
            topology_key: key.to_string(),
            selector: selector.clone(),
            min_domains: None,
        })
        .collect();
    }
    all.iter()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| {
            let mut selector = c.label_selector.clone().unwrap_or_default();
            for key in c.match_label_keys.iter().flatten() {
                if let Some(v) = pod_labels(pod).get(key) {
                    selector
                        .match_expressions
                        .get_or_insert_with(Vec::new)
                        .push(LabelSelectorRequirement {
                            key: key.clone(),
                            operator: "In".into(),
                            values: Some(vec![v.clone()]),
                        });
                }
            }
            Constraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                selector,
                min_domains: c.min_domains.map(i64::from),
            }
        })
        .collect()
}

/// The well-known hostname label; each node is its own domain.
const HOSTNAME: &str = "kubernetes.io/hostname";

/// Non-terminating pods on `node` in the pod's namespace that `c`'s selector matches.
fn count_on_node(pod: &Pod, node: &NodeInfo, c: &Constraint) -> usize {
    node.label_groups
        .iter()
        .filter(|g| {
            g.namespace == pod.metadata.namespace && label_selector_matches(&c.selector, &g.labels)
        })
        .map(|g| g.count)
        .sum()
}

/// Per constraint: topology value -> matching pods, over nodes the pod could go to.
fn domain_counts(
    pod: &Pod,
    cs: &[Constraint],
    nodes: &[Arc<NodeInfo>],
) -> Vec<BTreeMap<String, i64>> {
    let mut out = vec![BTreeMap::new(); cs.len()];
    for ni in nodes {
        if !pod_matches_node_selector_and_affinity(pod, &ni.node) {
            continue;
        }
        if !cs.iter().all(|c| ni.labels().contains_key(&c.topology_key)) {
            continue;
        }
        for (i, c) in cs.iter().enumerate() {
            let value = ni.labels()[&c.topology_key].clone();
            let n = count_on_node(pod, ni, c) as i64;
            *out[i].entry(value).or_default() += n;
        }
    }
    out
}

struct FilterState {
    constraints: Vec<Constraint>,
    counts: Vec<BTreeMap<String, i64>>,
}

struct ScoreState {
    constraints: Vec<Constraint>,
    counts: Vec<BTreeMap<String, i64>>,
    weights: Vec<f64>,
}

/// The PreFilter, Filter, PreScore and Score plugin.
pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status {
        let cs = constraints(pod, "DoNotSchedule");
        if cs.is_empty() {
            return Status::skip();
        }
        let counts = domain_counts(pod, &cs, &snapshot.nodes);
        state.write(
            FILTER_KEY,
            FilterState {
                constraints: cs,
                counts,
            },
        );
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<FilterState>(FILTER_KEY) else {
            return Status::success();
        };
        for (c, counts) in st.constraints.iter().zip(&st.counts) {
            let Some(value) = node.labels().get(&c.topology_key) else {
                return Status::unresolvable(REASON_LABEL);
            };
            let mut min = counts.values().copied().min().unwrap_or(0);
            if c.min_domains.is_some_and(|m| (counts.len() as i64) < m) {
                min = 0;
            }
            let self_match = i64::from(label_selector_matches(&c.selector, pod_labels(pod)));
            let skew = counts.get(value).copied().unwrap_or(0) + self_match - min;
            if skew > c.max_skew {
                return Status::unschedulable(REASON_SKEW);
            }
        }
        Status::success()
    }
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let mut cs = constraints(pod, "ScheduleAnyway");
        // System defaults only apply to keys some node has.
        cs.retain(|c| {
            snapshot
                .nodes
                .iter()
                .any(|n| n.labels().contains_key(&c.topology_key))
        });
        if cs.is_empty() {
            return Status::skip();
        }
        // Pods are counted over all nodes; domains (for the weights) over the feasible ones.
        let mut counts = vec![BTreeMap::new(); cs.len()];
        // Hostname domains are single nodes: as upstream, Score counts those on the node it
        // scores instead of PreScore counting every node's pods.
        let by_domain = cs.iter().any(|c| c.topology_key != HOSTNAME);
        for ni in snapshot.nodes.iter().filter(|_| by_domain) {
            if !pod_matches_node_selector_and_affinity(pod, &ni.node) {
                continue;
            }
            for (i, c) in cs.iter().enumerate() {
                if c.topology_key == HOSTNAME {
                    continue;
                }
                if let Some(v) = ni.labels().get(&c.topology_key) {
                    let n = count_on_node(pod, ni, c) as i64;
                    *counts[i].entry(v.clone()).or_default() += n;
                }
            }
        }
        let weights = cs
            .iter()
            .map(|c| {
                let domains: std::collections::HashSet<&String> = nodes
                    .iter()
                    .filter_map(|n| n.labels().get(&c.topology_key))
                    .collect();
                ((domains.len() + 2) as f64).ln()
            })
            .collect();
        state.write(
            SCORE_KEY,
            ScoreState {
                constraints: cs,
                counts,
                weights,
            },
        );
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let Some(st) = state.read::<ScoreState>(SCORE_KEY) else {
            return Ok(0);
        };
        let mut score = 0.0;
        for ((c, counts), w) in st.constraints.iter().zip(&st.counts).zip(&st.weights) {
            let Some(v) = node.labels().get(&c.topology_key) else {
                // Marked to be scored 0 by normalize.
                return Ok(-1);
            };
            let cnt = if c.topology_key == HOSTNAME {
                count_on_node(pod, node, c) as f64
            } else {
                counts.get(v).copied().unwrap_or(0) as f64
            };
            score += cnt * w + (c.max_skew - 1) as f64;
        }
        Ok(score.round() as i64)
    }

    fn normalize(&self, _state: &CycleState, _pod: &Pod, scores: &mut [i64]) -> Status {
        let valid: Vec<i64> = scores.iter().copied().filter(|s| *s >= 0).collect();
        let (Some(min), Some(max)) = (valid.iter().min().copied(), valid.iter().max().copied())
        else {
            return Status::success();
        };
        for s in scores.iter_mut() {
            *s = if *s < 0 {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
        Status::success()
    }
}

/// Pods per topology value of `key` that match `selector` (for tests and debugging).
pub fn count_by_domain(
    nodes: &[Arc<NodeInfo>],
    key: &str,
    selector: &LabelSelector,
) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for n in nodes {
        if let Some(v) = n.labels().get(key) {
            *m.entry(v.clone()).or_default() += n
                .pods
                .iter()
                .filter(|p| label_selector_matches(selector, pod_labels(p)))
                .count();
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::helpers::testing::{node, node_info, pod};
    use serde_json::json;

    fn spread_pod(name: &str, when: &str) -> Pod {
        pod(
            name,
            json!({"app": "web"}),
            json!({"topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}}]}),
        )
    }

    fn snapshot() -> Snapshot {
        let web = |n: &str| pod(n, json!({"app": "web"}), json!({}));
        Snapshot {
            nodes: vec![
                Arc::new(node_info(
                    node("a", "4", "4Gi", json!({"zone": "x"}), json!([])),
                    vec![web("w1"), web("w2")],
                )),
                Arc::new(node_info(
                    node("b", "4", "4Gi", json!({"zone": "y"}), json!([])),
                    vec![web("w3")],
                )),
                Arc::new(node_info(
                    node("c", "4", "4Gi", json!({}), json!([])),
                    vec![],
                )),
            ],
        }
    }

    #[test]
    fn do_not_schedule_limits_skew() {
        let snap = snapshot();
        let p = spread_pod("p", "DoNotSchedule");
        let mut st = CycleState::default();
        assert!(PodTopologySpread
            .pre_filter(&mut st, &p, &snap)
            .is_success());
        let cases = [
            ("zone x would be 3 vs 1", 0, Code::Unschedulable),
            ("zone y evens out", 1, Code::Success),
            ("no zone label", 2, Code::UnschedulableAndUnresolvable),
        ];
        for (name, idx, code) in cases {
            assert_eq!(
                PodTopologySpread.filter(&st, &p, &snap.nodes[idx]).code,
                code,
                "{name}"
            );
        }
        assert_eq!(
            count_by_domain(&snap.nodes, "zone", &LabelSelector::default())["x"],
            2
        );
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let snap = snapshot();
        let p = spread_pod("p", "ScheduleAnyway");
        let mut st = CycleState::default();
        assert!(PodTopologySpread
            .pre_score(&mut st, &p, &snap.nodes, &snap)
            .is_success());
        let mut scores: Vec<i64> = snap
            .nodes
            .iter()
            .map(|n| PodTopologySpread.score(&st, &p, n).expect("score"))
            .collect();
        PodTopologySpread.normalize(&st, &p, &mut scores);
        assert!(scores[1] > scores[0], "{scores:?}");
        assert_eq!(scores[2], 0);
    }

    #[test]
    fn pods_without_constraints_or_owner_skip() {
        let mut st = CycleState::default();
        let p = pod("p", json!({"app": "web"}), json!({}));
        assert_eq!(
            PodTopologySpread.pre_filter(&mut st, &p, &snapshot()).code,
            Code::Skip
        );
        assert!(constraints(&p, "ScheduleAnyway").is_empty());
    }
}
