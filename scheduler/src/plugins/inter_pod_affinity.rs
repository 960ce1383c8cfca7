//! InterPodAffinity: required pod affinity and anti-affinity (the pod's own and existing pods'
//! anti-affinity) as a filter, preferred terms as a score.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};

use super::helpers::{label_selector_matches, pod_labels};
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PreFilterPlugin, PreScorePlugin, ScorePlugin,
    Snapshot, Status, MAX_NODE_SCORE,
};

/// The plugin's name.
pub const NAME: &str = "InterPodAffinity";
/// The pod's required affinity is not satisfied.
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// The pod's required anti-affinity is violated.
pub const REASON_ANTI: &str = "node(s) didn't match pod anti-affinity rules";
/// An existing pod's required anti-affinity is violated.
pub const REASON_EXISTING_ANTI: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
const FILTER_KEY: &str = "PreFilterInterPodAffinity";
const SCORE_KEY: &str = "PreScoreInterPodAffinity";

type Pair = (String, String);

/// Whether `term` (declared by a pod in `owner_ns`) selects `target`. A namespaceSelector
/// is honoured when empty (all namespaces); otherwise only `namespaces` and the owner's
/// namespace count (no namespace informer yet).
pub fn term_matches(term: &PodAffinityTerm, owner_ns: &str, target: &Pod) -> bool {
    let Some(selector) = term.label_selector.as_ref() else {
        return false;
    };
    let target_ns = target.metadata.namespace.as_deref().unwrap_or("default");
    let all_ns = term.namespace_selector.as_ref().is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    });
    let listed = term.namespaces.as_deref().unwrap_or_default();
    let ns_ok = all_ns
        || listed.iter().any(|n| n == target_ns)
        || ((listed.is_empty() || term.namespace_selector.is_some()) && owner_ns == target_ns);
    ns_ok && label_selector_matches(selector, pod_labels(target))
}

fn required_affinity(pod: &Pod) -> &[PodAffinityTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

fn required_anti(pod: &Pod) -> &[PodAffinityTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

fn ns(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

#[derive(Default)]
struct FilterState {
    existing_anti: HashMap<Pair, i64>,
    anti: HashMap<Pair, i64>,
    affinity: Vec<HashMap<Pair, i64>>,
    any_affinity_match: bool,
}

/// The PreFilter, Filter, PreScore and Score plugin.
pub struct InterPodAffinity;

impl Plugin for InterPodAffinity {
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

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status {
        let affinity = required_affinity(pod);
        let anti = required_anti(pod);
        let mut st = FilterState {
            affinity: vec![HashMap::new(); affinity.len()],
            ..Default::default()
        };
        // Without terms of its own, only existing pods with required anti-affinity matter.
        let own_terms = !affinity.is_empty() || !anti.is_empty();
        for ni in &snapshot.nodes {
            let labels = ni.labels();
            let existing_pods = if own_terms {
                &ni.pods
            } else {
                &ni.pods_with_required_anti_affinity
            };
            for existing in existing_pods {
                for term in required_anti(existing) {
                    if let Some(v) = labels.get(&term.topology_key) {
                        if term_matches(term, ns(existing), pod) {
                            *st.existing_anti
                                .entry((term.topology_key.clone(), v.clone()))
                                .or_default() += 1;
                        }
                    }
                }
                for term in anti {
                    if let Some(v) = labels.get(&term.topology_key) {
                        if term_matches(term, ns(pod), existing) {
                            *st.anti
                                .entry((term.topology_key.clone(), v.clone()))
                                .or_default() += 1;
                        }
                    }
                }
                if !affinity.is_empty()
                    && affinity.iter().all(|t| term_matches(t, ns(pod), existing))
                {
                    st.any_affinity_match = true;
                }
                for (i, term) in affinity.iter().enumerate() {
                    if let Some(v) = labels.get(&term.topology_key) {
                        if term_matches(term, ns(pod), existing) {
                            *st.affinity[i]
                                .entry((term.topology_key.clone(), v.clone()))
                                .or_default() += 1;
                        }
                    }
                }
            }
        }
        if st.existing_anti.is_empty() && anti.is_empty() && affinity.is_empty() {
            return Status::skip();
        }
        state.write(FILTER_KEY, st);
        Status::success()
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<FilterState>(FILTER_KEY) else {
            return Status::success();
        };
        let labels = node.labels();
        let hit = |m: &HashMap<Pair, i64>| {
            m.iter()
                .any(|((k, v), n)| *n > 0 && labels.get(k) == Some(v))
        };
        if hit(&st.existing_anti) {
            return Status::unschedulable(REASON_EXISTING_ANTI);
        }
        if hit(&st.anti) {
            return Status::unschedulable(REASON_ANTI);
        }
        let terms = required_affinity(pod);
        if !terms.is_empty() {
            let all_satisfied = terms.iter().zip(&st.affinity).all(|(t, m)| {
                labels.get(&t.topology_key).is_some_and(|v| {
                    m.get(&(t.topology_key.clone(), v.clone()))
                        .is_some_and(|n| *n > 0)
                })
            });
            if !all_satisfied {
                // The first pod of a group that selects itself may go anywhere with the keys.
                let self_ok = !st.any_affinity_match
                    && terms.iter().all(|t| term_matches(t, ns(pod), pod))
                    && terms.iter().all(|t| labels.contains_key(&t.topology_key));
                if !self_ok {
                    return Status::unresolvable(REASON_AFFINITY);
                }
            }
        }
        Status::success()
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let preferred: Vec<(i64, &PodAffinityTerm)> = affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .map(|w| (i64::from(w.weight), &w.pod_affinity_term))
            .chain(
                affinity
                    .and_then(|a| a.pod_anti_affinity.as_ref())
                    .and_then(|a| {
                        a.preferred_during_scheduling_ignored_during_execution
                            .as_ref()
                    })
                    .into_iter()
                    .flatten()
                    .map(|w| (-i64::from(w.weight), &w.pod_affinity_term)),
            )
            .collect();
        let mut scores: HashMap<Pair, i64> = HashMap::new();
        for ni in &snapshot.nodes {
            let labels = ni.labels();
            // Without preferred terms of its own, only existing pods with affinity matter.
            let existing_pods = if preferred.is_empty() {
                &ni.pods_with_affinity
            } else {
                &ni.pods
            };
            for existing in existing_pods {
                for (w, term) in &preferred {
                    if let Some(v) = labels.get(&term.topology_key) {
                        if term_matches(term, ns(pod), existing) {
                            *scores
                                .entry((term.topology_key.clone(), v.clone()))
                                .or_default() += w;
                        }
                    }
                }
                // Existing pods' preferred terms that select the incoming pod count too.
                let ea = existing.spec.as_ref().and_then(|s| s.affinity.as_ref());
                let theirs = ea
                    .and_then(|a| a.pod_affinity.as_ref())
                    .and_then(|a| {
                        a.preferred_during_scheduling_ignored_during_execution
                            .as_ref()
                    })
                    .into_iter()
                    .flatten()
                    .map(|w| (i64::from(w.weight), &w.pod_affinity_term))
                    .chain(
                        ea.and_then(|a| a.pod_anti_affinity.as_ref())
                            .and_then(|a| {
                                a.preferred_during_scheduling_ignored_during_execution
                                    .as_ref()
                            })
                            .into_iter()
                            .flatten()
                            .map(|w| (-i64::from(w.weight), &w.pod_affinity_term)),
                    );
                for (w, term) in theirs {
                    if let Some(v) = labels.get(&term.topology_key) {
                        if term_matches(term, ns(existing), pod) {
                            *scores
                                .entry((term.topology_key.clone(), v.clone()))
                                .or_default() += w;
                        }
                    }
                }
            }
        }
        if scores.is_empty() {
            return Status::skip();
        }
        state.write(SCORE_KEY, scores);
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Result<i64, Status> {
        let Some(scores) = state.read::<HashMap<Pair, i64>>(SCORE_KEY) else {
            return Ok(0);
        };
        let labels = node.labels();
        Ok(scores
            .iter()
            .filter(|((k, v), _)| labels.get(k) == Some(v))
            .map(|(_, s)| *s)
            .sum())
    }

    fn normalize(&self, _state: &CycleState, _pod: &Pod, scores: &mut [i64]) -> Status {
        let (Some(min), Some(max)) = (scores.iter().min().copied(), scores.iter().max().copied())
        else {
            return Status::success();
        };
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                MAX_NODE_SCORE * (*s - min) / diff
            } else {
                0
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::helpers::testing::{node, node_info, pod};
    use serde_json::json;

    fn snapshot() -> Snapshot {
        let anti_db = pod(
            "db",
            json!({"app": "db"}),
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "batch"}}}]}}}),
        );
        Snapshot {
            nodes: vec![
                Arc::new(node_info(
                    node("a", "4", "4Gi", json!({}), json!([])),
                    vec![pod("w", json!({"app": "web"}), json!({}))],
                )),
                Arc::new(node_info(
                    node("b", "4", "4Gi", json!({}), json!([])),
                    vec![anti_db],
                )),
                Arc::new(node_info(
                    node("c", "4", "4Gi", json!({}), json!([])),
                    vec![],
                )),
            ],
        }
    }

    fn run(p: &Pod) -> Vec<Code> {
        let snap = snapshot();
        let mut st = CycleState::default();
        if InterPodAffinity.pre_filter(&mut st, p, &snap).code == Code::Skip {
            return vec![Code::Success; 3];
        }
        snap.nodes
            .iter()
            .map(|n| InterPodAffinity.filter(&st, p, n).code)
            .collect()
    }

    #[test]
    fn required_terms_filter_nodes() {
        let term = |app: &str| json!([{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": app}}}]);
        let cases = [
            (
                "anti-affinity to web avoids a",
                pod(
                    "p",
                    json!({"app": "web"}),
                    json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("web")}}}),
                ),
                vec![Code::Unschedulable, Code::Success, Code::Success],
            ),
            (
                "affinity to web requires a",
                pod(
                    "p",
                    json!({}),
                    json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("web")}}}),
                ),
                vec![
                    Code::Success,
                    Code::UnschedulableAndUnresolvable,
                    Code::UnschedulableAndUnresolvable,
                ],
            ),
            (
                "existing anti-affinity of db rejects batch on b",
                pod("p", json!({"app": "batch"}), json!({})),
                vec![Code::Success, Code::Unschedulable, Code::Success],
            ),
            (
                "first pod of a self-affine group goes anywhere",
                pod(
                    "p",
                    json!({"app": "new"}),
                    json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("new")}}}),
                ),
                vec![Code::Success, Code::Success, Code::Success],
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(run(&p), want, "{name}");
        }
    }
}
