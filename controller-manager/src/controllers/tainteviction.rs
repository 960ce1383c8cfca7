//! taint-eviction: deletes pods from nodes with NoExecute taints they do not tolerate, at once or
//! when their tolerationSeconds (counted from the taint's timeAdded) run out.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, TimeDelta, Utc};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::ResourceExt;

use super::is_status;
use super::nodeutil::{record_event, tolerates, NO_EXECUTE};
use crate::context::ControllerContext;

/// The events' source component, as upstream.
const COMPONENT: &str = "taint-eviction-controller";
/// How long the loop sleeps with nothing scheduled (a resync).
const RESYNC: Duration = Duration::from_secs(5);

/// When a pod on a node with `taints` (all NoExecute) must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every taint is tolerated forever.
    Stay,
    /// At this time (now or in the past means at once).
    EvictAt(DateTime<Utc>),
}

/// Decides a pod's fate: an untolerated taint evicts at once; otherwise the earliest
/// timeAdded + tolerationSeconds over the taints (the shortest matching toleration per taint).
/// `first_seen` stands in for a taint's missing timeAdded.
pub fn verdict(
    taints: &[Taint],
    tolerations: &[Toleration],
    first_seen: impl Fn(&Taint) -> DateTime<Utc>,
    now: DateTime<Utc>,
) -> Verdict {
    let mut earliest: Option<DateTime<Utc>> = None;
    for taint in taints {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Verdict::EvictAt(now);
        }
        let Some(seconds) = matching.iter().filter_map(|t| t.toleration_seconds).min() else {
            continue;
        };
        let since = taint
            .time_added
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(|| first_seen(taint));
        let at = since + TimeDelta::seconds(seconds.max(0));
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest.map_or(Verdict::Stay, Verdict::EvictAt)
}

struct Evictor {
    client: kube::Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    /// When a taint without timeAdded was first seen, by (node, key, value).
    first_seen: HashMap<(String, String, String), DateTime<Utc>>,
    /// Pods with a future eviction time, by uid (for the cancel event).
    pending: HashMap<String, (ObjectReference, DateTime<Utc>)>,
    /// Pods already deleted by us, by uid.
    evicted: HashSet<String>,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let nodes = ctx.informers.get::<Node>();
    let pods = ctx.informers.get::<Pod>();
    let mut evictor = Evictor {
        client: ctx.client.clone(),
        nodes: nodes.store(),
        pods: pods.store(),
        first_seen: HashMap::new(),
        pending: HashMap::new(),
        evicted: HashSet::new(),
    };
    let node_changes = nodes.subscribe().map(|_| ());
    let pod_changes = pods.subscribe().map(|_| ());
    let shutdown = ctx.shutdown.clone();
    Ok(async move {
        let mut changes = futures::stream::select(node_changes, pod_changes).boxed();
        let mut next = tokio::time::Instant::now() + RESYNC;
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = changes.next() => {
                    // Coalesce a burst of changes into one pass.
                    while let Some(Some(())) = changes.next().now_or_never() {}
                }
                _ = tokio::time::sleep_until(next) => {}
            }
            if !(nodes.has_synced() && pods.has_synced()) {
                next = tokio::time::Instant::now() + Duration::from_millis(200);
                continue;
            }
            let wait = evictor.pass().await;
            next = tokio::time::Instant::now() + wait;
        }
    }
    .boxed())
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        api_version: Some("v1".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

impl Evictor {
    /// Evicts what is due; returns how long until the next scheduled eviction (capped).
    async fn pass(&mut self) -> Duration {
        let now = Utc::now();
        let tainted: HashMap<String, Vec<Taint>> = self
            .nodes
            .state()
            .iter()
            .filter_map(|n| {
                let taints: Vec<Taint> = n
                    .spec
                    .as_ref()?
                    .taints
                    .iter()
                    .flatten()
                    .filter(|t| t.effect == NO_EXECUTE)
                    .cloned()
                    .collect();
                (!taints.is_empty()).then(|| (n.name_any(), taints))
            })
            .collect();
        self.first_seen.retain(|(node, key, value), _| {
            tainted.get(node).is_some_and(|ts| {
                ts.iter()
                    .any(|t| &t.key == key && t.value.as_deref().unwrap_or("") == value)
            })
        });
        for (node, taints) in &tainted {
            for t in taints.iter().filter(|t| t.time_added.is_none()) {
                self.first_seen
                    .entry((
                        node.clone(),
                        t.key.clone(),
                        t.value.clone().unwrap_or_default(),
                    ))
                    .or_insert(now);
            }
        }

        let mut due = Vec::new();
        let mut scheduled: HashMap<String, (ObjectReference, DateTime<Utc>)> = HashMap::new();
        let mut live = HashSet::new();
        for pod in self.pods.state() {
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            live.insert(uid.clone());
            if pod.metadata.deletion_timestamp.is_some() || self.evicted.contains(&uid) {
                continue;
            }
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let Some(taints) = tainted.get(&node) else {
                continue;
            };
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            let first_seen = |t: &Taint| {
                self.first_seen
                    .get(&(
                        node.clone(),
                        t.key.clone(),
                        t.value.clone().unwrap_or_default(),
                    ))
                    .copied()
                    .unwrap_or(now)
            };
            match verdict(taints, &tolerations, first_seen, now) {
                Verdict::Stay => {}
                Verdict::EvictAt(at) if at <= now => due.push(pod.clone()),
                Verdict::EvictAt(at) => {
                    scheduled.insert(uid, (pod_ref(&pod), at));
                }
            }
        }
        self.evicted.retain(|uid| live.contains(uid));

        // Pending evictions whose pod is neither due nor still scheduled were cancelled (the taint
        // went away or the pod now tolerates it).
        let due_uids: HashSet<&str> = due
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        let cancelled: Vec<ObjectReference> = self
            .pending
            .iter()
            .filter(|(uid, _)| {
                !scheduled.contains_key(*uid)
                    && !due_uids.contains(uid.as_str())
                    && live.contains(*uid)
            })
            .map(|(_, (r, _))| r.clone())
            .collect();
        for r in cancelled {
            let name = format!(
                "{}/{}",
                r.namespace.as_deref().unwrap_or(""),
                r.name.as_deref().unwrap_or("")
            );
            record_event(
                &self.client,
                COMPONENT,
                r,
                "Normal",
                "TaintManagerEviction",
                format!("Cancelling deletion of Pod {name}"),
            )
            .await;
        }

        for pod in due {
            if self.evict(&pod).await {
                if let Some(uid) = pod.metadata.uid.clone() {
                    self.evicted.insert(uid);
                }
            }
        }
        let next = scheduled.values().map(|(_, at)| *at).min();
        self.pending = scheduled;
        match next {
            Some(at) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(RESYNC)
                .max(Duration::from_millis(50)),
            None => RESYNC,
        }
    }

    /// Records the event, sets DisruptionTarget and deletes the pod; whether it is gone or going.
    async fn evict(&self, pod: &Pod) -> bool {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        tracing::info!(pod = %format!("{ns}/{name}"), "deleting pod for a NoExecute taint");
        record_event(
            &self.client,
            COMPONENT,
            pod_ref(pod),
            "Normal",
            "TaintManagerEviction",
            format!("Marking for deletion Pod {ns}/{name}"),
        )
        .await;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": Time(Utc::now()),
        }]}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => return true,
            Err(e) => {
                tracing::debug!(pod = %name, error = %e, "failed to set DisruptionTarget");
                return false;
            }
        }
        let dp = DeleteParams {
            preconditions: pod
                .metadata
                .uid
                .clone()
                .map(|uid| kube::api::Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => true,
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => true,
            Err(e) => {
                tracing::debug!(pod = %name, error = %e, "failed to delete pod");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::nodeutil::{TAINT_NOT_READY, TAINT_UNREACHABLE};

    fn taint(key: &str, added: Option<DateTime<Utc>>) -> Taint {
        Taint {
            key: key.into(),
            value: None,
            effect: NO_EXECUTE.into(),
            time_added: added.map(Time),
        }
    }

    fn tol(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(NO_EXECUTE.into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn toleration_seconds_count_from_time_added() {
        let now = Utc::now();
        let added = now - TimeDelta::seconds(10);
        let seen = |_: &Taint| now;
        let unreachable = [taint(TAINT_UNREACHABLE, Some(added))];
        let cases = [
            ("no toleration", vec![], Verdict::EvictAt(now)),
            (
                "tolerates forever",
                vec![tol(TAINT_UNREACHABLE, None)],
                Verdict::Stay,
            ),
            (
                "tolerates 30s",
                vec![tol(TAINT_UNREACHABLE, Some(30))],
                Verdict::EvictAt(added + TimeDelta::seconds(30)),
            ),
            (
                "shortest matching toleration wins",
                vec![
                    tol(TAINT_UNREACHABLE, None),
                    tol(TAINT_UNREACHABLE, Some(5)),
                ],
                Verdict::EvictAt(added + TimeDelta::seconds(5)),
            ),
            (
                "negative seconds mean at once",
                vec![tol(TAINT_UNREACHABLE, Some(-1))],
                Verdict::EvictAt(added),
            ),
            (
                "other key does not help",
                vec![tol(TAINT_NOT_READY, None)],
                Verdict::EvictAt(now),
            ),
        ];
        for (name, tolerations, want) in cases {
            assert_eq!(
                verdict(&unreachable, &tolerations, seen, now),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn earliest_taint_decides_and_missing_time_added_uses_first_seen() {
        let now = Utc::now();
        let first = now - TimeDelta::seconds(3);
        let taints = [
            taint(TAINT_UNREACHABLE, None),
            taint(TAINT_NOT_READY, Some(now)),
        ];
        let tolerations = [
            tol(TAINT_UNREACHABLE, Some(10)),
            tol(TAINT_NOT_READY, Some(60)),
        ];
        assert_eq!(
            verdict(&taints, &tolerations, |_| first, now),
            Verdict::EvictAt(first + TimeDelta::seconds(10))
        );
        // One untolerated taint is enough to go at once.
        let tolerations = [tol(TAINT_UNREACHABLE, None)];
        assert_eq!(
            verdict(&taints, &tolerations, |_| first, now),
            Verdict::EvictAt(now)
        );
    }
}
