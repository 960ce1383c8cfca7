//! The scheduling queue: an active heap ordered by the QueueSort plugin, a backoff set
//! (1 s doubling to 10 s), an unschedulable set moved back by cluster events, and gated pods.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;

use crate::framework::{pod_key, Framework, QueueSortKey};

/// First backoff after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Backoff cap.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often even without events.
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// A pod waiting in (or popped from) the queue.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    /// The latest pod object.
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: String,
    /// When the pod entered the queue (ordering tiebreak).
    pub timestamp: Instant,
    /// Scheduling attempts so far.
    pub attempts: u32,
    /// When the last attempt failed.
    pub last_failure: Option<Instant>,
    /// Plugins that rejected the pod in its last attempt.
    pub unschedulable_plugins: Vec<&'static str>,
    /// The move counter when the pod was popped.
    move_seq_at_pop: u64,
}

/// Where a pod is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Where {
    /// Ready to be popped.
    Active,
    /// Waiting for its backoff to end.
    Backoff,
    /// Waiting for a cluster event.
    Unschedulable,
    /// Rejected by a PreEnqueue plugin.
    Gated,
    /// Being scheduled.
    InFlight,
}

#[derive(Default)]
struct Inner {
    pods: HashMap<String, (QueuedPod, Where)>,
    active: BTreeMap<(QueueSortKey, u64), String>,
    active_keys: HashMap<String, (QueueSortKey, u64)>,
    seq: u64,
    move_seq: u64,
    closed: bool,
}

/// The queue, shared by the informers (producers) and the scheduling loop (consumer).
pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    profiles: Arc<HashMap<String, Arc<Framework>>>,
}

fn backoff_for(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(8);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

impl QueuedPod {
    /// When the pod's backoff ends.
    pub fn backoff_until(&self) -> Option<Instant> {
        self.last_failure.map(|t| t + backoff_for(self.attempts))
    }
}

impl SchedulingQueue {
    /// An empty queue for the given profiles (by scheduler name).
    pub fn new(profiles: Arc<HashMap<String, Arc<Framework>>>) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            profiles,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing leaves the maps half-updated across a panic, so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn profile(&self, pod: &Pod) -> Option<&Arc<Framework>> {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(crate::config::DEFAULT_SCHEDULER_NAME);
        self.profiles.get(name)
    }

    fn sort_key(&self, qp: &QueuedPod) -> QueueSortKey {
        self.profile(&qp.pod)
            .and_then(|fw| fw.queue_sort())
            .and_then(|p| p.as_queue_sort().map(|q| q.sort_key(&qp.pod, qp.timestamp)))
            .unwrap_or(QueueSortKey(std::cmp::Reverse(0), qp.timestamp))
    }

    fn remove_active(inner: &mut Inner, key: &str) {
        if let Some(k) = inner.active_keys.remove(key) {
            inner.active.remove(&k);
        }
    }

    /// Places `qp` in the active queue unless a PreEnqueue plugin gates it.
    fn enqueue(&self, inner: &mut Inner, qp: QueuedPod) {
        let gated = self
            .profile(&qp.pod)
            .is_some_and(|fw| !fw.run_pre_enqueue(&qp.pod).is_success());
        Self::remove_active(inner, &qp.key);
        if gated {
            inner.pods.insert(qp.key.clone(), (qp, Where::Gated));
            return;
        }
        let k = (self.sort_key(&qp), inner.seq);
        inner.seq += 1;
        inner.active.insert(k.clone(), qp.key.clone());
        inner.active_keys.insert(qp.key.clone(), k);
        inner.pods.insert(qp.key.clone(), (qp, Where::Active));
        self.notify.notify_one();
    }

    /// Adds a new pending pod or updates a known one.
    pub fn add_or_update(&self, pod: Arc<Pod>) {
        let key = pod_key(&pod);
        let mut inner = self.lock();
        match inner.pods.get(&key).cloned() {
            None => {
                let qp = QueuedPod {
                    pod,
                    key,
                    timestamp: Instant::now(),
                    attempts: 0,
                    last_failure: None,
                    unschedulable_plugins: Vec::new(),
                    move_seq_at_pop: 0,
                };
                self.enqueue(&mut inner, qp);
            }
            Some((mut qp, place)) => {
                let changed =
                    qp.pod.spec != pod.spec || qp.pod.metadata.labels != pod.metadata.labels;
                qp.pod = pod;
                match place {
                    Where::InFlight | Where::Backoff => {
                        inner.pods.insert(key, (qp, place));
                    }
                    Where::Active => {
                        // Priority may have changed; re-sort.
                        self.enqueue(&mut inner, qp);
                    }
                    Where::Unschedulable | Where::Gated => {
                        if changed {
                            self.requeue_after_event(&mut inner, qp);
                        } else {
                            inner.pods.insert(key, (qp, place));
                        }
                    }
                }
            }
        }
    }

    /// Forgets a pod (deleted or bound).
    pub fn delete(&self, key: &str) {
        let mut inner = self.lock();
        Self::remove_active(&mut inner, key);
        inner.pods.remove(key);
    }

    /// Waits for and removes the next pod; `None` once closed.
    pub async fn pop(&self) -> Option<QueuedPod> {
        loop {
            let notified = self.notify.notified();
            {
                let mut inner = self.lock();
                if inner.closed {
                    return None;
                }
                if let Some((k, key)) = inner.active.pop_first() {
                    let _ = k;
                    inner.active_keys.remove(&key);
                    let move_seq = inner.move_seq;
                    if let Some((qp, place)) = inner.pods.get_mut(&key) {
                        qp.attempts += 1;
                        qp.move_seq_at_pop = move_seq;
                        *place = Where::InFlight;
                        return Some(qp.clone());
                    }
                    continue;
                }
            }
            notified.await;
        }
    }

    /// Stops `pop`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }

    /// Marks an in-flight pod as scheduled.
    pub fn done(&self, key: &str) {
        let mut inner = self.lock();
        if matches!(inner.pods.get(key), Some((_, Where::InFlight))) {
            inner.pods.remove(key);
        }
    }

    /// Returns a pod whose attempt failed: to backoff on errors or when the cluster changed
    /// during the attempt, else to the unschedulable set.
    pub fn requeue_failed(&self, qp: &QueuedPod, plugins: Vec<&'static str>, error: bool) {
        let mut inner = self.lock();
        let Some((current, Where::InFlight)) = inner.pods.get(&qp.key).cloned() else {
            return; // deleted (or bound) meanwhile
        };
        let mut next = current;
        next.last_failure = Some(Instant::now());
        next.unschedulable_plugins = plugins;
        let moved = inner.move_seq > qp.move_seq_at_pop;
        let place = if error || moved {
            Where::Backoff
        } else {
            Where::Unschedulable
        };
        inner.pods.insert(qp.key.clone(), (next, place));
    }

    fn requeue_after_event(&self, inner: &mut Inner, qp: QueuedPod) {
        let key = qp.key.clone();
        if qp.backoff_until().is_some_and(|t| t > Instant::now()) {
            inner.pods.insert(key, (qp, Where::Backoff));
        } else {
            self.enqueue(inner, qp);
        }
    }

    /// Moves unschedulable pods for which `relevant` holds back to active (or backoff) after a
    /// cluster event; in-flight pods will go to backoff when they fail.
    pub fn move_unschedulable(&self, relevant: impl Fn(&QueuedPod) -> bool) {
        let mut inner = self.lock();
        inner.move_seq += 1;
        let moving: Vec<QueuedPod> = inner
            .pods
            .values()
            .filter(|(qp, w)| *w == Where::Unschedulable && relevant(qp))
            .map(|(qp, _)| qp.clone())
            .collect();
        for qp in moving {
            self.requeue_after_event(&mut inner, qp);
        }
    }

    /// Moves pods whose backoff ended to active and flushes long-unschedulable pods; call
    /// periodically.
    pub fn flush(&self) {
        let now = Instant::now();
        let mut inner = self.lock();
        let due: Vec<QueuedPod> = inner
            .pods
            .values()
            .filter(|(qp, w)| match w {
                Where::Backoff => qp.backoff_until().is_none_or(|t| t <= now),
                Where::Unschedulable => qp
                    .last_failure
                    .is_some_and(|t| now.duration_since(t) >= MAX_IN_UNSCHEDULABLE),
                _ => false,
            })
            .map(|(qp, _)| qp.clone())
            .collect();
        for qp in due {
            self.enqueue(&mut inner, qp);
        }
    }

    /// Pods per place, for `scheduler_pending_pods`.
    pub fn counts(&self) -> HashMap<Where, usize> {
        let inner = self.lock();
        let mut m = HashMap::new();
        for (_, w) in inner.pods.values() {
            *m.entry(*w).or_default() += 1;
        }
        m
    }

    /// Where the pod with `key` is.
    pub fn place(&self, key: &str) -> Option<Where> {
        self.lock().pods.get(key).map(|(_, w)| *w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Plugin;
    use crate::plugins::helpers::testing::pod;
    use serde_json::json;

    fn queue() -> SchedulingQueue {
        let fw = Framework {
            scheduler_name: "default-scheduler".into(),
            percentage_of_nodes_to_score: None,
            pre_enqueue: vec![
                Arc::new(crate::plugins::scheduling_gates::SchedulingGates) as Arc<dyn Plugin>
            ],
            queue_sort: vec![
                Arc::new(crate::plugins::priority_sort::PrioritySort) as Arc<dyn Plugin>
            ],
            pre_filter: vec![],
            filter: vec![],
            post_filter: vec![],
            pre_score: vec![],
            score: vec![],
            reserve: vec![],
            pre_bind: vec![],
            bind: vec![],
        };
        let mut m = HashMap::new();
        m.insert("default-scheduler".to_string(), Arc::new(fw));
        SchedulingQueue::new(Arc::new(m))
    }

    #[tokio::test]
    async fn pops_by_priority_then_age_and_parks_gated_pods() {
        let q = queue();
        q.add_or_update(Arc::new(pod("low", json!({}), json!({"priority": 1}))));
        q.add_or_update(Arc::new(pod("high", json!({}), json!({"priority": 100}))));
        q.add_or_update(Arc::new(pod("low2", json!({}), json!({"priority": 1}))));
        q.add_or_update(Arc::new(pod(
            "gated",
            json!({}),
            json!({"schedulingGates": [{"name": "g"}]}),
        )));
        let order: Vec<String> = [q.pop().await, q.pop().await, q.pop().await]
            .into_iter()
            .flatten()
            .map(|p| p.key)
            .collect();
        assert_eq!(order, ["default/high", "default/low", "default/low2"]);
        assert_eq!(q.place("default/gated"), Some(Where::Gated));
        // Removing the gate lets it in.
        q.add_or_update(Arc::new(pod("gated", json!({}), json!({}))));
        assert_eq!(q.place("default/gated"), Some(Where::Active));
    }

    #[tokio::test]
    async fn unschedulable_pods_move_on_events_and_respect_backoff() {
        let q = queue();
        q.add_or_update(Arc::new(pod("p", json!({}), json!({}))));
        let qp = q.pop().await.expect("pod");
        q.requeue_failed(&qp, vec!["NodeResourcesFit"], false);
        assert_eq!(q.place("default/p"), Some(Where::Unschedulable));
        q.move_unschedulable(|_| true);
        // Still within its 1s backoff.
        assert_eq!(q.place("default/p"), Some(Where::Backoff));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        q.flush();
        assert_eq!(q.place("default/p"), Some(Where::Active));
        // A move during the attempt sends the pod to backoff, not unschedulable.
        let qp = q.pop().await.expect("pod");
        q.move_unschedulable(|_| true);
        q.requeue_failed(&qp, vec![], false);
        assert_eq!(q.place("default/p"), Some(Where::Backoff));
        assert_eq!(backoff_for(1), Duration::from_secs(1));
        assert_eq!(backoff_for(3), Duration::from_secs(4));
        assert_eq!(backoff_for(10), MAX_BACKOFF);
    }
}
