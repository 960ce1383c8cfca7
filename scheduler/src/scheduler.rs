//! The scheduler proper: informers feeding the cache and queue, and the scheduling loop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event as WatchEvent};
use serde_json::json;
use tracing::Instrument;

use crate::cache::Cache;
use crate::framework::runtime::{fit_error_message, Diagnosis};
use crate::framework::{pod_key, CycleState, Framework, NodeInfo, Snapshot, Status};
use crate::metrics::Metrics;
use crate::queue::{QueuedPod, SchedulingQueue, Where};

/// Below this many nodes every node is checked (upstream's minFeasibleNodesToFind).
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;

/// Per pending pod: its message and node -> plugin -> reason, for `/debug/pending`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PendingDiagnosis {
    /// The FitError message set on the pod.
    pub message: String,
    /// Node -> plugin -> reason, for every node some filter rejected.
    pub nodes: BTreeMap<String, BTreeMap<String, String>>,
}

/// The running scheduler's shared state.
pub struct Scheduler {
    client: kube::Client,
    profiles: Arc<HashMap<String, Arc<Framework>>>,
    /// The queue.
    pub queue: Arc<SchedulingQueue>,
    /// The cache.
    pub cache: Arc<Cache>,
    metrics: Metrics,
    pending: Mutex<HashMap<String, PendingDiagnosis>>,
    next_start: AtomicUsize,
    nodes_synced: AtomicBool,
    pods_synced: AtomicBool,
    volumes: Arc<crate::volumes::VolumeStore>,
    events: tokio::sync::mpsc::Sender<Event>,
    events_rx: Mutex<Option<tokio::sync::mpsc::Receiver<Event>>>,
}

/// Events waiting to be written; beyond this, new events are dropped (upstream's broadcaster
/// queues 1,000 and drops when full, so a burst of bindings never waits on events).
const MAX_QUEUED_EVENTS: usize = 1000;

/// How many nodes to filter before scoring, as upstream's numFeasibleNodesToFind.
pub fn num_feasible_nodes_to_find(percentage: Option<i32>, all: usize) -> usize {
    let pct = percentage.unwrap_or(0);
    if all < MIN_FEASIBLE_NODES_TO_FIND || pct >= 100 {
        return all;
    }
    let pct = if pct <= 0 {
        (50 - (all as i64) / 125).max(5)
    } else {
        i64::from(pct)
    };
    ((all as i64 * pct / 100) as usize).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// RFC 3339 UTC timestamp of now (seconds precision, or micro when `micro`).
pub fn now_rfc3339(micro: bool) -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if micro {
        format!(
            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z",
            d.subsec_micros()
        )
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    }
}

fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(crate::config::DEFAULT_SCHEDULER_NAME)
}

fn is_assigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

enum Outcome {
    Scheduled(String),
    Unschedulable {
        message: String,
        plugins: Vec<&'static str>,
        diagnosis: PendingDiagnosis,
    },
    Error(String),
}

impl Scheduler {
    /// A scheduler over `profiles` talking to the apiserver through `client`.
    pub fn new(
        client: kube::Client,
        frameworks: Vec<Arc<Framework>>,
        metrics: Metrics,
        volumes: Arc<crate::volumes::VolumeStore>,
    ) -> Arc<Self> {
        let profiles: Arc<HashMap<String, Arc<Framework>>> = Arc::new(
            frameworks
                .into_iter()
                .map(|f| (f.scheduler_name.clone(), f))
                .collect(),
        );
        let (events, events_rx) = tokio::sync::mpsc::channel(MAX_QUEUED_EVENTS);
        Arc::new(Self {
            events,
            events_rx: Mutex::new(Some(events_rx)),
            client,
            queue: Arc::new(SchedulingQueue::new(profiles.clone())),
            profiles,
            cache: Arc::new(Cache::default()),
            metrics,
            pending: Mutex::new(HashMap::new()),
            next_start: AtomicUsize::new(0),
            nodes_synced: AtomicBool::new(false),
            pods_synced: AtomicBool::new(false),
            volumes,
        })
    }

    /// Whether every informer has listed once.
    pub fn synced(&self) -> bool {
        self.nodes_synced.load(Ordering::Relaxed)
            && self.pods_synced.load(Ordering::Relaxed)
            && self.volumes.synced()
    }

    /// Runs the PVC, PV and StorageClass informers; an add or update moves pods that
    /// VolumeBinding rejected back to the active queue (upstream's queueing hints for it).
    pub async fn run_volume_informers(self: Arc<Self>) {
        let this = self.clone();
        let on_change = Arc::new(move || {
            this.queue.move_unschedulable(|qp| {
                qp.unschedulable_plugins
                    .contains(&crate::plugins::volume_binding::NAME)
            })
        });
        self.volumes
            .clone()
            .run_informers(self.client.clone(), on_change)
            .await;
    }

    /// The per-node reasons recorded for a pending pod.
    pub fn pending_diagnosis(&self, key: &str) -> Option<PendingDiagnosis> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn responsible_for(&self, pod: &Pod) -> bool {
        self.profiles.contains_key(scheduler_name(pod))
    }

    fn on_node(&self, node: Node) {
        self.cache.upsert_node(Arc::new(node));
        self.queue.move_unschedulable(|_| true);
    }

    fn on_node_delete(&self, name: &str) {
        self.cache.remove_node(name);
    }

    fn on_pod(&self, pod: Pod) {
        let key = pod_key(&pod);
        if is_assigned(&pod) {
            self.queue.delete(&key);
            self.forget_pending(&key);
            if is_terminal(&pod) {
                self.cache.remove_pod(&key);
                self.queue.move_unschedulable(|_| true);
                return;
            }
            let new = !self.cache.has_pod(&key);
            self.cache.upsert_pod(Arc::new(pod));
            if new {
                // A new pod can only help pods waiting for affinity or spread.
                self.queue.move_unschedulable(|qp| {
                    qp.unschedulable_plugins.iter().any(|p| {
                        *p == crate::plugins::inter_pod_affinity::NAME
                            || *p == crate::plugins::pod_topology_spread::NAME
                    })
                });
            }
        } else if pod.metadata.deletion_timestamp.is_some() || is_terminal(&pod) {
            self.queue.delete(&key);
            self.forget_pending(&key);
        } else if self.responsible_for(&pod) {
            self.queue.add_or_update(Arc::new(pod));
        }
    }

    fn on_pod_delete(&self, key: &str) {
        self.queue.delete(key);
        self.forget_pending(key);
        if self.cache.has_pod(key) {
            self.cache.remove_pod(key);
            self.queue.move_unschedulable(|_| true);
        }
    }

    fn forget_pending(&self, key: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Runs the node informer until the stream ends.
    pub async fn run_node_informer(self: Arc<Self>) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        let mut relist: Option<HashSet<String>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(WatchEvent::Apply(n)) => self.on_node(n),
                Ok(WatchEvent::Delete(n)) => {
                    self.on_node_delete(n.metadata.name.as_deref().unwrap_or_default())
                }
                Ok(WatchEvent::Init) => relist = Some(HashSet::new()),
                Ok(WatchEvent::InitApply(n)) => {
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(n.metadata.name.clone().unwrap_or_default());
                    }
                    self.on_node(n);
                }
                Ok(WatchEvent::InitDone) => {
                    if let Some(seen) = relist.take() {
                        for name in self.cache.node_names() {
                            if !seen.contains(&name) {
                                self.on_node_delete(&name);
                            }
                        }
                    }
                    self.nodes_synced.store(true, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "node watch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Runs the pod informer until the stream ends.
    pub async fn run_pod_informer(self: Arc<Self>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        // Only keys are kept (for deletions missed across a relist); the objects live in the
        // queue and the cache.
        let mut relist: Option<HashSet<String>> = None;
        let mut known: HashSet<String> = HashSet::new();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(WatchEvent::Apply(p)) => {
                    known.insert(pod_key(&p));
                    self.on_pod(p);
                }
                Ok(WatchEvent::Delete(p)) => {
                    let key = pod_key(&p);
                    known.remove(&key);
                    self.on_pod_delete(&key);
                }
                Ok(WatchEvent::Init) => relist = Some(HashSet::new()),
                Ok(WatchEvent::InitApply(p)) => {
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(pod_key(&p));
                    }
                    self.on_pod(p);
                }
                Ok(WatchEvent::InitDone) => {
                    if let Some(seen) = relist.take() {
                        for key in &known {
                            if !seen.contains(key) {
                                self.on_pod_delete(key);
                            }
                        }
                        known = seen;
                    }
                    self.pods_synced.store(true, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pod watch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Moves backed-off pods and refreshes the pending-pods gauge: every 200 ms while pods
    /// back off, every second (upstream's period) otherwise, so an idle scheduler rarely wakes.
    pub async fn run_flusher(self: Arc<Self>) {
        loop {
            self.queue.flush();
            let counts = self.queue.counts();
            let backing_off = counts.get(&Where::Backoff).copied().unwrap_or(0) > 0;
            for (label, place) in [
                ("active", Where::Active),
                ("backoff", Where::Backoff),
                ("unschedulable", Where::Unschedulable),
                ("gated", Where::Gated),
            ] {
                self.metrics
                    .pending_pods
                    .with_label_values(&[label])
                    .set(counts.get(&place).copied().unwrap_or(0) as i64);
            }
            let period = if backing_off { 200 } else { 1000 };
            tokio::time::sleep(Duration::from_millis(period)).await;
        }
    }

    /// Pops and schedules pods until the queue closes or `stop` triggers (shutdown, or the
    /// lease was lost).
    pub async fn run_loop(self: Arc<Self>, stop: component_base::Shutdown) {
        let work = async {
            while !self.synced() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tracing::info!("caches synced; scheduling");
            while let Some(qp) = self.queue.pop().await {
                let span = tracing::info_span!("scheduling_cycle", pod = %qp.key);
                self.clone().schedule_one(qp).instrument(span).await;
            }
        };
        tokio::select! {
            _ = work => {}
            _ = stop.wait() => {}
        }
    }

    fn filter_nodes(
        &self,
        fw: &Framework,
        state: &CycleState,
        pod: &Pod,
        snapshot: &Snapshot,
        diagnosis: &mut Diagnosis,
    ) -> Vec<Arc<NodeInfo>> {
        let all = snapshot.nodes.len();
        let want = num_feasible_nodes_to_find(fw.percentage_of_nodes_to_score, all);
        let start = self.next_start.load(Ordering::Relaxed) % all.max(1);
        // Nodes are filtered in parallel from a rotating start; workers stop claiming nodes
        // once enough feasible ones were found (upstream's numFeasibleNodesToFind).
        let found = AtomicUsize::new(0);
        let results = crate::framework::parallel::map_until(all, |i| {
            if found.load(Ordering::Relaxed) >= want {
                return None;
            }
            let ni = &snapshot.nodes[(start + i) % all];
            let s = fw.run_filter(state, pod, ni);
            if s.is_success() {
                found.fetch_add(1, Ordering::Relaxed);
            }
            Some((ni, s))
        });
        let mut feasible = Vec::new();
        let mut processed = 0;
        for (ni, s) in results.into_iter().flatten() {
            if feasible.len() >= want {
                break;
            }
            processed += 1;
            if s.is_success() {
                feasible.push(ni.clone());
            } else {
                if let Some(p) = s.plugin {
                    if !diagnosis.unschedulable_plugins.contains(&p) {
                        diagnosis.unschedulable_plugins.push(p);
                    }
                }
                diagnosis.node_statuses.insert(ni.name().to_string(), s);
            }
        }
        self.next_start
            .store((start + processed) % all.max(1), Ordering::Relaxed);
        feasible
    }

    /// Every filter's verdict on every node, for the debug endpoint.
    fn full_diagnosis(
        fw: &Framework,
        state: &CycleState,
        pod: &Pod,
        snapshot: &Snapshot,
        pre_filter: Option<&Status>,
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for ni in &snapshot.nodes {
            let mut per = BTreeMap::new();
            if let Some(s) = pre_filter {
                per.insert(s.plugin.unwrap_or("PreFilter").to_string(), s.message());
            } else {
                for p in &fw.filter {
                    if state.skip_filter.contains(p.name()) {
                        continue;
                    }
                    if let Some(f) = p.as_filter() {
                        let s = f.filter(state, pod, ni);
                        if !s.is_success() {
                            per.insert(p.name().to_string(), s.message());
                        }
                    }
                }
            }
            if !per.is_empty() {
                out.insert(ni.name().to_string(), per);
            }
        }
        out
    }

    async fn schedule_pod(
        &self,
        fw: &Framework,
        pod: &Pod,
        snapshot: &Snapshot,
        state: &mut CycleState,
    ) -> Outcome {
        if snapshot.nodes.is_empty() {
            return Outcome::Unschedulable {
                message: "no nodes available to schedule pods".into(),
                plugins: Vec::new(),
                diagnosis: PendingDiagnosis {
                    message: "no nodes available to schedule pods".into(),
                    nodes: BTreeMap::new(),
                },
            };
        }
        let mut diagnosis = Diagnosis::default();
        let pre = fw.run_pre_filter(state, pod, snapshot);
        let feasible = if pre.is_success() {
            self.filter_nodes(fw, state, pod, snapshot, &mut diagnosis)
        } else if pre.is_rejected() {
            diagnosis.pre_filter_msg = Some(pre.message());
            diagnosis.unschedulable_plugins.extend(pre.plugin);
            for ni in &snapshot.nodes {
                diagnosis
                    .node_statuses
                    .insert(ni.name().to_string(), pre.clone());
            }
            Vec::new()
        } else {
            return Outcome::Error(format!("running PreFilter: {pre}"));
        };
        if feasible.is_empty() {
            if fw.has_post_filter() {
                self.metrics.preemption_attempts.inc();
                let (result, s) = fw
                    .run_post_filter(state, pod, &diagnosis.node_statuses, snapshot)
                    .await;
                if s.is_success() {
                    tracing::info!(nominated = ?result.nominated_node_name, "preemption made room");
                } else if s.code == crate::framework::Code::Error {
                    return Outcome::Error(format!("running PostFilter: {s}"));
                } else if !s.message().is_empty() {
                    diagnosis.post_filter_msg = Some(s.message());
                }
            }
            let message = fit_error_message(snapshot.nodes.len(), &diagnosis);
            let nodes = Self::full_diagnosis(
                fw,
                state,
                pod,
                snapshot,
                (!pre.is_success()).then_some(&pre),
            );
            return Outcome::Unschedulable {
                plugins: diagnosis.unschedulable_plugins.clone(),
                diagnosis: PendingDiagnosis {
                    message: message.clone(),
                    nodes,
                },
                message,
            };
        }
        if feasible.len() == 1 {
            return Outcome::Scheduled(feasible[0].name().to_string());
        }
        let s = fw.run_pre_score(state, pod, &feasible, snapshot);
        if !s.is_success() {
            return Outcome::Error(format!("running PreScore: {s}"));
        }
        let scores = match fw.run_score(state, pod, &feasible) {
            Ok(s) => s,
            Err(s) => return Outcome::Error(format!("running Score: {s}")),
        };
        Outcome::Scheduled(select_host(&feasible, &scores))
    }

    async fn schedule_one(self: Arc<Self>, qp: QueuedPod) {
        let pod = qp.pod.clone();
        let Some(fw) = self.profiles.get(scheduler_name(&pod)).cloned() else {
            self.queue.done(&qp.key);
            return;
        };
        let start = Instant::now();
        let snapshot = self.cache.snapshot();
        let profile = fw.scheduler_name.clone();
        // The cycle's state (what PreFilter and Filter found) carries on into Reserve and the
        // binding cycle, as upstream.
        let mut state = CycleState::default();
        match self.schedule_pod(&fw, &pod, &snapshot, &mut state).await {
            Outcome::Scheduled(node) => {
                self.cache.assume(&pod, &node);
                let r = fw.run_reserve(&state, &pod, &node);
                if !r.is_success() {
                    self.cache.forget(&qp.key);
                    self.fail(&qp, &profile, start, format!("running Reserve: {r}"), true);
                    return;
                }
                self.forget_pending(&qp.key);
                let this = self.clone();
                tokio::spawn(
                    async move {
                        let s = fw.run_pre_bind(&state, &pod, &node).await;
                        if !s.is_success() {
                            fw.run_unreserve(&state, &pod, &node);
                            this.cache.forget(&qp.key);
                            this.fail(&qp, &profile, start, s.message(), true);
                            return;
                        }
                        let s = fw.run_bind(&pod, &node).await;
                        if s.is_success() {
                            tracing::info!(node = %node, "bound");
                            this.queue.done(&qp.key);
                            this.observe("scheduled", &profile, start);
                            let msg = format!("Successfully assigned {} to {node}", qp.key);
                            this.record_event(&pod, "Normal", "Scheduled", &msg);
                        } else {
                            fw.run_unreserve(&state, &pod, &node);
                            this.cache.forget(&qp.key);
                            this.fail(&qp, &profile, start, format!("binding rejected: {s}"), true);
                        }
                    }
                    .in_current_span(),
                );
            }
            Outcome::Unschedulable {
                message,
                plugins,
                diagnosis,
            } => {
                tracing::info!(reason = %message, "unschedulable");
                self.observe("unschedulable", &profile, start);
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(qp.key.clone(), diagnosis);
                self.queue.requeue_failed(&qp, plugins, false);
                let this = self.clone();
                tokio::spawn(async move {
                    this.set_unschedulable(&pod, &message).await;
                    this.record_event(&pod, "Warning", "FailedScheduling", &message);
                });
            }
            Outcome::Error(e) => self.fail(&qp, &profile, start, e, true),
        }
    }

    fn fail(
        self: &Arc<Self>,
        qp: &QueuedPod,
        profile: &str,
        start: Instant,
        err: String,
        error: bool,
    ) {
        tracing::warn!(error = %err, "scheduling attempt failed");
        self.observe("error", profile, start);
        self.queue.requeue_failed(qp, Vec::new(), error);
        self.record_event(&qp.pod, "Warning", "FailedScheduling", &err);
    }

    fn observe(&self, result: &str, profile: &str, start: Instant) {
        self.metrics
            .schedule_attempts
            .with_label_values(&[result, profile])
            .inc();
        self.metrics
            .attempt_duration
            .with_label_values(&[result, profile])
            .observe(start.elapsed().as_secs_f64());
    }

    async fn set_unschedulable(&self, pod: &Pod, message: &str) {
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        if current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message)
        }) {
            return;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": now_rfc3339(false),
        }]}});
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            tracing::warn!(error = %e, "failed to set PodScheduled=False");
        }
    }

    /// Writes queued events one at a time, as upstream's event sink, until the queue closes.
    pub async fn run_event_sink(self: Arc<Self>) {
        let Some(mut rx) = self
            .events_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        while let Some(event) = rx.recv().await {
            let ns = event.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::warn!(error = %e, "failed to record event");
            }
        }
    }

    /// Queues an event about `pod`; drops it when the queue is full.
    fn record_event(&self, pod: &Pod, type_: &str, reason: &str, message: &str) {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let now = now_rfc3339(false);
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": ns},
            "involvedObject": {
                "apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name,
                "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version,
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": "default-scheduler"},
            "reportingComponent": "default-scheduler",
            "reportingInstance": "kube-scheduler",
            "action": "Scheduling",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": now_rfc3339(true),
            "count": 1,
        });
        let event: Event = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "failed to build event");
                return;
            }
        };
        if self.events.try_send(event).is_err() {
            tracing::debug!(reason, "event queue full; dropping event");
        }
    }
}

/// The node with the highest total score; ties broken at random as upstream.
pub fn select_host(nodes: &[Arc<NodeInfo>], scores: &[i64]) -> String {
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos() as u64
        | 1;
    let mut best: Option<(i64, usize)> = None;
    let mut ties = 0u64;
    for (i, s) in scores.iter().enumerate() {
        match best {
            Some((b, _)) if *s < b => {}
            Some((b, _)) if *s == b => {
                ties += 1;
                // xorshift reservoir sampling
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if seed % ties == 0 {
                    best = Some((b, i));
                }
            }
            _ => {
                best = Some((*s, i));
                ties = 1;
            }
        }
    }
    best.map(|(_, i)| nodes[i].name().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feasible_node_count_follows_upstream() {
        let cases = [
            ("small cluster", None, 50, 50),
            ("adaptive 1000", None, 1000, 420),
            ("adaptive 5000", None, 5000, 500),
            ("explicit 100%", Some(100), 5000, 5000),
            ("floor of 100", Some(1), 1000, 100),
        ];
        for (name, pct, all, want) in cases {
            assert_eq!(num_feasible_nodes_to_find(pct, all), want, "{name}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339(false);
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
