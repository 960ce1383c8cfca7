//! One profile's plugin chain: runs each extension point in order and builds FitError messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::{
    Code, CycleState, NodeInfo, NodeStatusMap, Plugin, PostFilterResult, Snapshot, Status,
};

/// A profile: its scheduler name and the enabled plugins of every extension point.
pub struct Framework {
    /// The `schedulerName` pods pick this profile with.
    pub scheduler_name: String,
    /// Percentage of nodes to score (`None`: adaptive as upstream).
    pub percentage_of_nodes_to_score: Option<i32>,
    pub(crate) pre_enqueue: Vec<Arc<dyn Plugin>>,
    pub(crate) queue_sort: Vec<Arc<dyn Plugin>>,
    pub(crate) pre_filter: Vec<Arc<dyn Plugin>>,
    pub(crate) filter: Vec<Arc<dyn Plugin>>,
    pub(crate) post_filter: Vec<Arc<dyn Plugin>>,
    pub(crate) pre_score: Vec<Arc<dyn Plugin>>,
    pub(crate) score: Vec<(Arc<dyn Plugin>, i64)>,
    pub(crate) reserve: Vec<Arc<dyn Plugin>>,
    pub(crate) pre_bind: Vec<Arc<dyn Plugin>>,
    pub(crate) bind: Vec<Arc<dyn Plugin>>,
}

/// Why a pod fits no node: the per-node statuses and what PreFilter/PostFilter said.
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    /// Node -> the status of the first filter that rejected it.
    pub node_statuses: NodeStatusMap,
    /// The message of a PreFilter plugin that rejected the pod for all nodes.
    pub pre_filter_msg: Option<String>,
    /// The message of the PostFilter plugins.
    pub post_filter_msg: Option<String>,
    /// Plugins that rejected the pod.
    pub unschedulable_plugins: Vec<&'static str>,
}

/// Upstream's FitError message: `0/N nodes are available: <sorted reason counts>.` followed by
/// the PostFilter message.
pub fn fit_error_message(num_all_nodes: usize, diagnosis: &Diagnosis) -> String {
    let mut msg = format!("0/{num_all_nodes} nodes are available:");
    if let Some(pre) = diagnosis.pre_filter_msg.as_ref() {
        msg.push_str(&format!(" {pre}."));
    } else {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for status in diagnosis.node_statuses.values() {
            for reason in &status.reasons {
                *counts.entry(reason.as_str()).or_default() += 1;
            }
        }
        let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        if !parts.is_empty() {
            msg.push_str(&format!(" {}.", parts.join(", ")));
        }
    }
    if let Some(post) = diagnosis.post_filter_msg.as_ref() {
        msg.push_str(&format!(" {post}."));
    }
    msg
}

impl Framework {
    /// Runs the PreEnqueue plugins; the first non-success status is returned.
    pub fn run_pre_enqueue(&self, pod: &Pod) -> Status {
        for p in &self.pre_enqueue {
            if let Some(pe) = p.as_pre_enqueue() {
                let s = pe.pre_enqueue(pod);
                if !s.is_success() {
                    return s.with_plugin(p.name());
                }
            }
        }
        Status::success()
    }

    /// The profile's QueueSort plugin.
    pub fn queue_sort(&self) -> Option<&Arc<dyn Plugin>> {
        self.queue_sort.first()
    }

    /// Runs the PreFilter plugins; a rejection holds for every node.
    pub fn run_pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status {
        for p in &self.pre_filter {
            let Some(pf) = p.as_pre_filter() else {
                continue;
            };
            let s = pf.pre_filter(state, pod, snapshot);
            match s.code {
                Code::Success => {}
                Code::Skip => {
                    state.skip_filter.insert(p.name());
                }
                _ => return s.with_plugin(p.name()),
            }
        }
        Status::success()
    }

    /// Runs every Filter plugin on `node`; the first rejection wins.
    pub fn run_filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        for p in &self.filter {
            if state.skip_filter.contains(p.name()) {
                continue;
            }
            let Some(f) = p.as_filter() else {
                continue;
            };
            let s = f.filter(state, pod, node);
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Whether any PostFilter plugin is enabled.
    pub fn has_post_filter(&self) -> bool {
        !self.post_filter.is_empty()
    }

    /// Runs PostFilter plugins until one succeeds.
    pub async fn run_post_filter(
        &self,
        state: &CycleState,
        pod: &Pod,
        statuses: &NodeStatusMap,
        snapshot: &Snapshot,
    ) -> (PostFilterResult, Status) {
        let mut last = Status::unschedulable("no PostFilter plugin");
        let mut messages = Vec::new();
        for p in &self.post_filter {
            let Some(pf) = p.as_post_filter() else {
                continue;
            };
            let (result, status) = pf.post_filter(state, pod, statuses, snapshot, self).await;
            if status.is_success() {
                return (result, status);
            }
            messages.push(status.message());
            last = status.with_plugin(p.name());
        }
        if !messages.is_empty() {
            last.reasons = vec![messages.join(" ")];
        }
        (PostFilterResult::default(), last)
    }

    /// Runs the PreScore plugins.
    pub fn run_pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        for p in &self.pre_score {
            let Some(ps) = p.as_pre_score() else {
                continue;
            };
            let s = ps.pre_score(state, pod, nodes, snapshot);
            match s.code {
                Code::Success => {}
                Code::Skip => {
                    state.skip_score.insert(p.name());
                }
                _ => return s.with_plugin(p.name()),
            }
        }
        Status::success()
    }

    /// Scores `nodes`: per plugin raw scores, normalized, times the weight, summed per node.
    /// Also returns the weighted per-plugin scores for debugging.
    pub fn run_score(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let plugins: Vec<(&dyn super::ScorePlugin, &'static str, i64)> = self
            .score
            .iter()
            .filter(|(p, _)| !state.skip_score.contains(p.name()))
            .filter_map(|(p, w)| Some((p.as_score()?, p.name(), *w)))
            .collect();
        // Every plugin's raw score per node, nodes spread over workers as upstream.
        let raw = super::parallel::map_until(nodes.len(), |i| {
            Some(
                plugins
                    .iter()
                    .map(|(sp, _, _)| sp.score(state, pod, &nodes[i]))
                    .collect::<Vec<_>>(),
            )
        });
        let mut totals = vec![0i64; nodes.len()];
        for (j, (sp, name, weight)) in plugins.iter().enumerate() {
            let mut scores = Vec::with_capacity(nodes.len());
            for per_node in &raw {
                let score = per_node
                    .as_ref()
                    .and_then(|r| r.get(j))
                    .cloned()
                    .unwrap_or(Ok(0));
                scores.push(score.map_err(|s| s.with_plugin(name))?);
            }
            let s = sp.normalize(state, pod, &mut scores);
            if !s.is_success() {
                return Err(s.with_plugin(name));
            }
            for (t, s) in totals.iter_mut().zip(scores) {
                *t += s.clamp(super::MIN_NODE_SCORE, super::MAX_NODE_SCORE) * weight;
            }
        }
        Ok(totals)
    }

    /// Runs Reserve plugins; on failure, unreserves those already run.
    pub fn run_reserve(&self, state: &CycleState, pod: &Pod, node: &str) -> Status {
        for (i, p) in self.reserve.iter().enumerate() {
            let Some(r) = p.as_reserve() else {
                continue;
            };
            let s = r.reserve(state, pod, node);
            if !s.is_success() {
                for q in self.reserve[..i].iter().rev() {
                    if let Some(r) = q.as_reserve() {
                        r.unreserve(state, pod, node);
                    }
                }
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// Runs Unreserve of every Reserve plugin, in reverse order.
    pub fn run_unreserve(&self, state: &CycleState, pod: &Pod, node: &str) {
        for p in self.reserve.iter().rev() {
            if let Some(r) = p.as_reserve() {
                r.unreserve(state, pod, node);
            }
        }
    }

    /// Runs the PreBind plugins in order; the first failure stops the binding cycle. Errors read
    /// as upstream's `running PreBind plugin "<name>": <error>`.
    pub async fn run_pre_bind(&self, state: &CycleState, pod: &Pod, node: &str) -> Status {
        for p in &self.pre_bind {
            let Some(pb) = p.as_pre_bind() else {
                continue;
            };
            let s = pb.pre_bind(state, pod, node).await;
            match s.code {
                Code::Success | Code::Skip => {}
                Code::Error => {
                    return Status::error(format!(
                        "running PreBind plugin {:?}: {}",
                        p.name(),
                        s.message()
                    ))
                    .with_plugin(p.name())
                }
                _ => return s.with_plugin(p.name()),
            }
        }
        Status::success()
    }

    /// Runs Bind plugins until one does not skip.
    pub async fn run_bind(&self, pod: &Pod, node: &str) -> Status {
        for p in &self.bind {
            let Some(b) = p.as_bind() else {
                continue;
            };
            let s = b.bind(pod, node).await;
            if s.code != Code::Skip {
                return s.with_plugin(p.name());
            }
        }
        Status::error("no bind plugin bound the pod")
    }

    /// Names of the plugins per extension point, for logs.
    pub fn describe(&self) -> String {
        let names =
            |v: &[Arc<dyn Plugin>]| v.iter().map(|p| p.name()).collect::<Vec<_>>().join(",");
        format!(
            "filter=[{}] score=[{}] postFilter=[{}] preBind=[{}] bind=[{}]",
            names(&self.filter),
            self.score
                .iter()
                .map(|(p, w)| format!("{}:{w}", p.name()))
                .collect::<Vec<_>>()
                .join(","),
            names(&self.post_filter),
            names(&self.pre_bind),
            names(&self.bind)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_message_counts_and_sorts_reasons_as_upstream() {
        let mut d = Diagnosis::default();
        d.node_statuses
            .insert("a".into(), Status::unschedulable("Insufficient cpu"));
        d.node_statuses.insert(
            "b".into(),
            Status::unresolvable("node(s) had untolerated taint {k: v}"),
        );
        d.node_statuses.insert(
            "c".into(),
            Status::unresolvable("node(s) had untolerated taint {k: v}"),
        );
        d.post_filter_msg = Some(
            "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
                .into(),
        );
        assert_eq!(
            fit_error_message(3, &d),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
        );
    }

    struct FixedPreBind(&'static str, Status);

    impl Plugin for FixedPreBind {
        fn name(&self) -> &'static str {
            self.0
        }
        fn as_pre_bind(&self) -> Option<&dyn super::super::PreBindPlugin> {
            Some(self)
        }
    }

    impl super::super::PreBindPlugin for FixedPreBind {
        fn pre_bind<'a>(
            &'a self,
            _state: &'a CycleState,
            _pod: &'a Pod,
            _node: &'a str,
        ) -> futures::future::BoxFuture<'a, Status> {
            Box::pin(async move { self.1.clone() })
        }
    }

    fn framework(pre_bind: Vec<Arc<dyn Plugin>>) -> Framework {
        Framework {
            scheduler_name: "default-scheduler".into(),
            percentage_of_nodes_to_score: None,
            pre_enqueue: vec![],
            queue_sort: vec![],
            pre_filter: vec![],
            filter: vec![],
            post_filter: vec![],
            pre_score: vec![],
            score: vec![],
            reserve: vec![],
            pre_bind,
            bind: vec![],
        }
    }

    #[tokio::test]
    async fn pre_bind_runs_in_order_and_wraps_errors_as_upstream() {
        let pod = Pod::default();
        let state = CycleState::default();
        let ok = framework(vec![
            Arc::new(FixedPreBind("A", Status::skip())),
            Arc::new(FixedPreBind("B", Status::success())),
        ]);
        assert!(ok.run_pre_bind(&state, &pod, "n").await.is_success());
        let failing = framework(vec![
            Arc::new(FixedPreBind("A", Status::success())),
            Arc::new(FixedPreBind(
                "VolumeBinding",
                Status::error("binding volumes: context deadline exceeded"),
            )),
            Arc::new(FixedPreBind("C", Status::error("never reached"))),
        ]);
        let s = failing.run_pre_bind(&state, &pod, "n").await;
        assert_eq!(s.code, Code::Error);
        assert_eq!(s.plugin, Some("VolumeBinding"));
        assert_eq!(
            s.message(),
            "running PreBind plugin \"VolumeBinding\": binding volumes: context deadline exceeded"
        );
    }
}
