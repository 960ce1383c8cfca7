//! podgc: deletes terminated pods beyond `--terminated-pod-gc-threshold` (oldest first), pods
//! bound to nodes that no longer exist (after a quarantine) and unscheduled pods being deleted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use super::is_status;
use super::util::is_terminal;
use crate::context::ControllerContext;
use crate::informers::Informer;

/// How often the collector runs, as upstream's gcCheckPeriod.
const PERIOD: Duration = Duration::from_secs(20);
/// How long a node must stay missing before its pods are deleted, as upstream.
const QUARANTINE: Duration = Duration::from_secs(40);

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let gc = PodGc {
        client: ctx.client.clone(),
        threshold: ctx.config.terminated_pod_gc_threshold,
        missing_since: HashMap::new(),
    };
    let shutdown = ctx.shutdown.clone();
    Ok(async move {
        tokio::select! {
            _ = gc.run(pods, nodes) => {}
            _ = shutdown.wait() => {}
        }
    }
    .boxed())
}

struct PodGc {
    client: kube::Client,
    threshold: i32,
    /// Nodes named by pods but absent from the cache, and since when.
    missing_since: HashMap<String, Instant>,
}

/// The terminated pods to delete so at most `threshold` remain, oldest first (0 keeps all).
pub fn over_threshold(pods: &[Arc<Pod>], threshold: i32) -> Vec<Arc<Pod>> {
    let Ok(threshold) = usize::try_from(threshold) else {
        return Vec::new();
    };
    if threshold == 0 {
        return Vec::new();
    }
    let mut terminated: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| is_terminal(p) && p.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    if terminated.len() <= threshold {
        return Vec::new();
    }
    terminated.sort_by_key(|p| {
        (
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.name_any(),
        )
    });
    let extra = terminated.len() - threshold;
    terminated.truncate(extra);
    terminated
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl PodGc {
    async fn run(mut self, pods: Informer<Pod>, nodes: Informer<Node>) {
        // Wait for both caches: an empty node cache would make every pod look orphaned.
        while !(pods.has_synced() && nodes.has_synced()) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        loop {
            let wait = self.pass(&pods.store(), &nodes.store()).await;
            tokio::time::sleep(wait).await;
        }
    }

    /// One collection; returns how long to sleep before the next.
    async fn pass(&mut self, pods: &Store<Pod>, nodes: &Store<Node>) -> Duration {
        let all = pods.state();
        for pod in over_threshold(&all, self.threshold) {
            self.delete(&pod, None).await;
        }

        // Orphaned pods: their node is missing from the cache for the whole quarantine and a
        // fresh read confirms it is gone.
        let mut missing: HashSet<String> = HashSet::new();
        for pod in &all {
            if let Some(n) = node_name(pod) {
                if nodes.get(&ObjectRef::new(n)).is_none() {
                    missing.insert(n.to_owned());
                }
            }
        }
        let now = Instant::now();
        self.missing_since.retain(|n, _| missing.contains(n));
        let mut next = PERIOD;
        let node_api: Api<Node> = Api::all(self.client.clone());
        let mut gone = HashSet::new();
        for n in &missing {
            let since = *self.missing_since.entry(n.clone()).or_insert(now);
            let remaining = QUARANTINE.saturating_sub(now - since);
            if !remaining.is_zero() {
                next = next.min(remaining);
                continue;
            }
            match node_api.get_opt(n).await {
                Ok(None) => {
                    gone.insert(n.clone());
                }
                Ok(Some(_)) => {
                    self.missing_since.remove(n);
                }
                Err(e) => tracing::debug!(node = %n, error = %e, "checking node failed"),
            }
        }
        for pod in &all {
            if node_name(pod).is_some_and(|n| gone.contains(n)) {
                self.delete(pod, Some("PodGC: node no longer exists")).await;
            }
        }

        // Unscheduled pods that are being deleted: no kubelet will ever finish them.
        for pod in &all {
            if node_name(pod).is_none()
                && pod.metadata.deletion_timestamp.is_some()
                && !is_terminal(pod)
            {
                self.delete(pod, Some("PodGC: unscheduled pod is terminating"))
                    .await;
            }
        }
        next.max(Duration::from_millis(100))
    }

    /// Deletes `pod`; with `reason`, first marks it Failed with a DisruptionTarget condition and
    /// deletes it at once, as upstream does for pods no kubelet will finish.
    async fn delete(&self, pod: &Pod, reason: Option<&str>) {
        let Some(ns) = pod.namespace() else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let name = pod.name_any();
        if let Some(message) = reason {
            if !is_terminal(pod) {
                let now = k8s_openapi::chrono::Utc::now()
                    .to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
                let patch = json!({"status": {
                    "phase": "Failed",
                    "conditions": [{
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "DeletionByPodGC",
                        "message": message,
                        "lastTransitionTime": now,
                    }],
                }});
                if let Err(e) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
                {
                    if !is_status(&e, 404) {
                        tracing::debug!(pod = %name, error = %e, "marking pod failed");
                    }
                }
            }
        }
        let params = DeleteParams {
            grace_period_seconds: reason.map(|_| 0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "garbage collected pod"),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
            Err(e) => tracing::warn!(pod = %name, error = %e, "deleting pod failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::chrono::DateTime;

    fn pod(name: &str, created: i64, phase: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: DateTime::from_timestamp(created, 0).map(Time),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn oldest_terminated_pods_beyond_the_threshold_go_first() {
        let pods = vec![
            pod("new-done", 300, "Succeeded"),
            pod("running", 50, "Running"),
            pod("old-failed", 100, "Failed"),
            pod("mid-done", 200, "Succeeded"),
        ];
        let names = |v: Vec<Arc<Pod>>| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(over_threshold(&pods, 1)), ["old-failed", "mid-done"]);
        assert!(over_threshold(&pods, 3).is_empty());
        assert!(over_threshold(&pods, 0).is_empty(), "0 disables");
    }
}
