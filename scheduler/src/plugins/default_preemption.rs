//! DefaultPreemption: when no node fits, evicts lower-priority pods from the node where the
//! fewest and least important victims make room, and nominates that node.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use super::priority_sort::pod_priority;
use crate::framework::runtime::{fit_error_message, Diagnosis};
use crate::framework::{
    pod_key, Code, CycleState, Framework, NodeInfo, NodeStatusMap, Plugin, PostFilterPlugin,
    PostFilterResult, Snapshot, Status,
};

/// The plugin's name.
pub const NAME: &str = "DefaultPreemption";
/// Per-node reason when the node's rejection cannot be fixed by evicting pods.
pub const REASON_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Per-node reason when even evicting every lower-priority pod does not help.
pub const REASON_NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// The PostFilter plugin; without a client it only computes (used in unit tests).
pub struct DefaultPreemption {
    client: Option<kube::Client>,
}

impl DefaultPreemption {
    /// A plugin evicting through `client`.
    pub fn new(client: Option<kube::Client>) -> Self {
        Self { client }
    }
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        Some(self)
    }
}

/// A node where preemption makes the pod fit, with the pods to evict.
#[derive(Debug)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// Pods to evict, most important first.
    pub victims: Vec<Arc<Pod>>,
}

fn fits(fw: &Framework, pod: &Pod, snapshot: &Snapshot, node: &NodeInfo) -> bool {
    let mut state = CycleState::default();
    if !fw.run_pre_filter(&mut state, pod, snapshot).is_success() {
        return false;
    }
    fw.run_filter(&state, pod, node).is_success()
}

fn with_node(snapshot: &Snapshot, node: &NodeInfo) -> Snapshot {
    Snapshot {
        nodes: snapshot
            .nodes
            .iter()
            .map(|n| {
                if n.name() == node.name() {
                    Arc::new(node.clone())
                } else {
                    n.clone()
                }
            })
            .collect(),
    }
}

/// Finds candidates and the per-node reasons for nodes that are not.
pub fn find_candidates(
    fw: &Framework,
    pod: &Pod,
    statuses: &NodeStatusMap,
    snapshot: &Snapshot,
) -> (Vec<Candidate>, NodeStatusMap) {
    let prio = pod_priority(pod);
    let mut candidates = Vec::new();
    let mut reasons = NodeStatusMap::new();
    for ni in &snapshot.nodes {
        let name = ni.name().to_string();
        if statuses
            .get(&name)
            .is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable)
        {
            reasons.insert(name, Status::unresolvable(REASON_NOT_HELPFUL));
            continue;
        }
        let mut trial = (**ni).clone();
        let mut lower: Vec<Arc<Pod>> = ni
            .pods
            .iter()
            .filter(|p| pod_priority(p) < prio)
            .cloned()
            .collect();
        for v in &lower {
            trial.remove_pod(&pod_key(v));
        }
        if lower.is_empty() || !fits(fw, pod, &with_node(snapshot, &trial), &trial) {
            reasons.insert(name, Status::unschedulable(REASON_NO_VICTIMS));
            continue;
        }
        // Reprieve as many victims as possible, most important first.
        lower.sort_by_key(|p| std::cmp::Reverse(pod_priority(p)));
        let mut victims = Vec::new();
        for v in lower {
            trial.add_pod(v.clone());
            if !fits(fw, pod, &with_node(snapshot, &trial), &trial) {
                trial.remove_pod(&pod_key(&v));
                victims.push(v);
            }
        }
        candidates.push(Candidate {
            node: name,
            victims,
        });
    }
    (candidates, reasons)
}

/// The best candidate: lowest highest-victim priority, then fewest victims.
pub fn select_candidate(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates.iter().min_by_key(|c| {
        (
            c.victims
                .iter()
                .map(|v| pod_priority(v))
                .max()
                .unwrap_or(i32::MIN),
            c.victims.len(),
        )
    })
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter<'a>(
        &'a self,
        _state: &'a CycleState,
        pod: &'a Pod,
        statuses: &'a NodeStatusMap,
        snapshot: &'a Snapshot,
        framework: &'a Framework,
    ) -> BoxFuture<'a, (PostFilterResult, Status)> {
        Box::pin(async move {
            let policy = pod
                .spec
                .as_ref()
                .and_then(|s| s.preemption_policy.as_deref());
            if policy == Some("Never") {
                return (
                    PostFilterResult::default(),
                    Status::unschedulable("not eligible due to preemptionPolicy=Never."),
                );
            }
            let (candidates, reasons) = find_candidates(framework, pod, statuses, snapshot);
            let Some(best) = select_candidate(&candidates) else {
                let diagnosis = Diagnosis {
                    node_statuses: reasons,
                    ..Default::default()
                };
                let msg = fit_error_message(snapshot.nodes.len(), &diagnosis);
                return (
                    PostFilterResult::default(),
                    Status::unschedulable(format!("preemption: {msg}")),
                );
            };
            if let Some(client) = self.client.as_ref() {
                for v in &best.victims {
                    let ns = v.metadata.namespace.as_deref().unwrap_or("default");
                    let name = v.metadata.name.as_deref().unwrap_or_default();
                    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                    tracing::info!(pod = %pod_key(pod), victim = %pod_key(v), node = %best.node, "preempting");
                    if let Err(e) = api.delete(name, &DeleteParams::default()).await {
                        return (
                            PostFilterResult::default(),
                            Status::error(format!("delete victim {ns}/{name}: {e}")),
                        );
                    }
                }
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                let patch = serde_json::json!({"status": {"nominatedNodeName": best.node}});
                if let Err(e) = api
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!(pod = %pod_key(pod), error = %e, "set nominatedNodeName");
                }
            }
            (
                PostFilterResult {
                    nominated_node_name: Some(best.node.clone()),
                },
                Status::success(),
            )
        })
    }
}
