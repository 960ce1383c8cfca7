//! The pod lifecycle event generator (upstream's generic PLEG): one relist of the runtime per
//! node and period, diffed against the previous one, refreshes a per-pod cache of the runtime's
//! state and wakes the workers of the pods that changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use component_base::Shutdown;
use prometheus::{Gauge, Histogram, HistogramOpts};
use tokio::sync::Notify;

use crate::cri::{api, CriError, Runtime};
use crate::pod::spec::POD_UID_LABEL;

/// Upstream's relist period.
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);

/// What happened to one container (or sandbox) of a pod between two relists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventType {
    ContainerStarted,
    ContainerDied,
    ContainerRemoved,
    ContainerChanged,
}

/// One lifecycle event: the pod, what happened and to which container or sandbox ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodLifecycleEvent {
    pub pod_uid: String,
    pub kind: EventType,
    pub id: String,
}

/// A container's (or sandbox's) state as the relist compares it; `Created` counts as unknown,
/// as upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelistState {
    Running,
    Exited,
    Unknown,
}

/// One relist: per pod UID, the state of each of its sandboxes and containers by ID.
pub type Snapshot = BTreeMap<String, BTreeMap<String, RelistState>>;

fn container_state(state: i32) -> RelistState {
    match api::ContainerState::try_from(state) {
        Ok(api::ContainerState::ContainerRunning) => RelistState::Running,
        Ok(api::ContainerState::ContainerExited) => RelistState::Exited,
        _ => RelistState::Unknown,
    }
}

fn sandbox_state(state: i32) -> RelistState {
    match api::PodSandboxState::try_from(state) {
        Ok(api::PodSandboxState::SandboxReady) => RelistState::Running,
        Ok(api::PodSandboxState::SandboxNotready) => RelistState::Exited,
        Err(_) => RelistState::Unknown,
    }
}

/// Groups what the runtime listed by the pod UID label; objects without one are not ours.
pub fn snapshot(sandboxes: &[api::PodSandbox], containers: &[api::Container]) -> Snapshot {
    let mut out = Snapshot::new();
    for s in sandboxes {
        if let Some(uid) = s.labels.get(POD_UID_LABEL) {
            out.entry(uid.clone())
                .or_default()
                .insert(s.id.clone(), sandbox_state(s.state));
        }
    }
    for c in containers {
        if let Some(uid) = c.labels.get(POD_UID_LABEL) {
            out.entry(uid.clone())
                .or_default()
                .insert(c.id.clone(), container_state(c.state));
        }
    }
    out
}

/// The events between two relists, ordered by pod, container ID and type.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<PodLifecycleEvent> {
    let empty = BTreeMap::new();
    let uids: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut events = Vec::new();
    for uid in uids {
        let before = old.get(uid).unwrap_or(&empty);
        let after = new.get(uid).unwrap_or(&empty);
        let ids: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        for id in ids {
            let event = |kind| PodLifecycleEvent {
                pod_uid: uid.clone(),
                kind,
                id: id.clone(),
            };
            match (before.get(id), after.get(id)) {
                (a, b) if a == b => {}
                (_, Some(RelistState::Running)) => events.push(event(EventType::ContainerStarted)),
                (_, Some(RelistState::Exited)) => events.push(event(EventType::ContainerDied)),
                (_, Some(RelistState::Unknown)) => events.push(event(EventType::ContainerChanged)),
                // Gone: a death not reported before is reported with the removal.
                (Some(RelistState::Exited), None) => {
                    events.push(event(EventType::ContainerRemoved))
                }
                (Some(_), None) => {
                    events.push(event(EventType::ContainerDied));
                    events.push(event(EventType::ContainerRemoved));
                }
                (None, None) => {}
            }
        }
    }
    events
}

/// What the runtime holds for one pod, as of one relist.
#[derive(Debug, Default)]
pub struct PodRecord {
    pub sandboxes: Vec<api::PodSandbox>,
    pub containers: Vec<api::ContainerStatus>,
    /// The IP of each ready sandbox, by sandbox ID.
    pub ips: HashMap<String, String>,
}

/// A pod's cached runtime state and the instant the relist that produced it started: every
/// runtime change made before `at` is in it.
#[derive(Debug, Clone)]
pub struct Observation {
    pub at: Instant,
    pub record: Arc<PodRecord>,
}

#[derive(Default)]
struct Inner {
    /// When the last successful relist started.
    relisted_at: Option<Instant>,
    /// Pods the runtime holds something for, with the start of the relist that inspected them.
    records: HashMap<String, (Instant, Arc<PodRecord>)>,
    /// One wake-up per pod worker.
    workers: HashMap<String, Arc<Notify>>,
}

/// The node's relist loop and the per-pod cache it keeps.
pub struct Pleg {
    runtime: Runtime,
    inner: Mutex<Inner>,
    relist_duration: Histogram,
    relist_interval: Histogram,
    last_seen: Gauge,
}

/// A worker's registration: notified when its pod changed in the runtime; unregisters on drop.
pub struct Subscription {
    pleg: Arc<Pleg>,
    uid: String,
    notify: Arc<Notify>,
}

impl Subscription {
    /// Completes when a relist saw the pod change since the last call.
    pub async fn changed(&self) {
        self.notify.notified().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.pleg.lock();
        if inner
            .workers
            .get(&self.uid)
            .is_some_and(|n| Arc::ptr_eq(n, &self.notify))
        {
            inner.workers.remove(&self.uid);
        }
    }
}

impl Pleg {
    pub fn new(runtime: Runtime) -> Self {
        let histogram = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help))
                .expect("static metric names are valid")
        };
        Self {
            runtime,
            inner: Mutex::default(),
            relist_duration: histogram(
                "kubelet_pleg_relist_duration_seconds",
                "[ALPHA] Duration in seconds for relisting pods in PLEG.",
            ),
            relist_interval: histogram(
                "kubelet_pleg_relist_interval_seconds",
                "[ALPHA] Interval in seconds between relisting in PLEG.",
            ),
            last_seen: Gauge::new(
                "kubelet_pleg_last_seen_seconds",
                "[ALPHA] Timestamp in seconds when PLEG was last seen active.",
            )
            .expect("static metric names are valid"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The lock guards plain maps updated in one step; a panic elsewhere leaves them whole.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the worker of pod `uid`.
    pub fn subscribe(self: &Arc<Self>, uid: &str) -> Subscription {
        let notify = Arc::new(Notify::new());
        self.lock().workers.insert(uid.to_string(), notify.clone());
        Subscription {
            pleg: self.clone(),
            uid: uid.to_string(),
            notify,
        }
    }

    /// Pod `uid`'s state as of the last relist; `None` before the first one.
    pub fn observe(&self, uid: &str) -> Option<Observation> {
        let inner = self.lock();
        let relisted_at = inner.relisted_at?;
        Some(match inner.records.get(uid) {
            Some((at, record)) => Observation {
                at: *at,
                record: record.clone(),
            },
            None => Observation {
                at: relisted_at,
                record: Arc::default(),
            },
        })
    }

    /// The UIDs of the pods that had a sandbox at the last relist; `None` before the first one.
    pub fn pods_with_sandboxes(&self) -> Option<std::collections::HashSet<String>> {
        let inner = self.lock();
        inner.relisted_at?;
        Some(
            inner
                .records
                .iter()
                .filter(|(_, (_, r))| !r.sandboxes.is_empty())
                .map(|(uid, _)| uid.clone())
                .collect(),
        )
    }

    /// How many relists ran (successful or not).
    pub fn relists(&self) -> u64 {
        self.relist_duration.get_sample_count()
    }

    /// The relist metrics, for the kubelet's /metrics.
    pub fn metrics(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.relist_duration.clone()),
            Box::new(self.relist_interval.clone()),
            Box::new(self.last_seen.clone()),
        ]
    }

    /// Relists every [`RELIST_PERIOD`] until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(RELIST_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listing = Snapshot::new();
        let mut last_start: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = ticker.tick() => {}
            }
            let start = Instant::now();
            if let Some(last) = last_start {
                self.relist_interval
                    .observe(start.duration_since(last).as_secs_f64());
            }
            last_start = Some(start);
            self.relist(&mut listing, start).await;
            self.relist_duration.observe(start.elapsed().as_secs_f64());
        }
    }

    /// Lists the node's sandboxes and containers once, re-inspects the pods that changed and
    /// wakes their workers.
    async fn relist(&self, listing: &mut Snapshot, start: Instant) {
        let listed = futures::future::try_join(
            self.runtime.list_pod_sandbox(None),
            self.runtime.list_containers(None),
        )
        .await;
        let (sandboxes, containers) = match listed {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "PLEG relist failed");
                return;
            }
        };
        let seen = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_seen.set(seen.as_secs_f64());
        let mut new = snapshot(&sandboxes, &containers);
        let events = diff(listing, &new);
        let changed: BTreeSet<String> = events.iter().map(|e| e.pod_uid.clone()).collect();
        if !events.is_empty() {
            tracing::debug!(events = events.len(), pods = changed.len(), "PLEG events");
        }
        let previous: HashMap<String, Arc<PodRecord>> = {
            let inner = self.lock();
            changed
                .iter()
                .filter_map(|uid| Some((uid.clone(), inner.records.get(uid)?.1.clone())))
                .collect()
        };
        let inspections = changed
            .iter()
            .filter(|uid| new.contains_key(*uid))
            .map(|uid| {
                let previous = previous.get(uid).cloned();
                let before = listing.get(uid);
                let after = &new[uid];
                let sandboxes: Vec<api::PodSandbox> = sandboxes
                    .iter()
                    .filter(|s| s.labels.get(POD_UID_LABEL) == Some(uid))
                    .cloned()
                    .collect();
                async move {
                    let record = self.inspect(sandboxes, before, after, previous).await;
                    (uid.clone(), record)
                }
            });
        let inspected = futures::future::join_all(inspections).await;
        let mut updates: Vec<(String, Option<Arc<PodRecord>>)> = changed
            .iter()
            .filter(|uid| !new.contains_key(*uid))
            .map(|uid| (uid.clone(), None))
            .collect();
        let mut failed = BTreeSet::new();
        for (uid, record) in inspected {
            match record {
                Ok(r) => updates.push((uid, Some(Arc::new(r)))),
                Err(e) => {
                    failed.insert(uid.clone());
                    // As upstream: the pod is inspected again at the next relist.
                    tracing::warn!(pod_uid = %uid, error = %e, "PLEG: inspect pod");
                    match listing.get(&uid) {
                        Some(old) => new.insert(uid, old.clone()),
                        None => new.remove(&uid),
                    };
                }
            }
        }
        let wake: Vec<Arc<Notify>> = {
            let mut inner = self.lock();
            inner.relisted_at = Some(start);
            for (uid, record) in &updates {
                match record {
                    Some(r) => inner.records.insert(uid.clone(), (start, r.clone())),
                    None => inner.records.remove(uid),
                };
            }
            // Pods whose listing did not change are as the runtime had them at `start`.
            for (uid, (at, _)) in inner.records.iter_mut() {
                if !failed.contains(uid) && new.get(uid) == listing.get(uid) {
                    *at = start;
                }
            }
            updates
                .iter()
                .filter_map(|(uid, _)| inner.workers.get(uid).cloned())
                .collect()
        };
        *listing = new;
        for notify in wake {
            notify.notify_one();
        }
    }

    /// The full state of one pod whose listing changed: container statuses are fetched for
    /// new and changed containers only, IPs for new ready sandboxes only.
    async fn inspect(
        &self,
        sandboxes: Vec<api::PodSandbox>,
        before: Option<&BTreeMap<String, RelistState>>,
        after: &BTreeMap<String, RelistState>,
        previous: Option<Arc<PodRecord>>,
    ) -> Result<PodRecord, CriError> {
        let unchanged = |id: &str| before.and_then(|b| b.get(id)) == after.get(id);
        let mut containers = Vec::new();
        for id in after.keys() {
            if sandboxes.iter().any(|s| &s.id == id) {
                continue;
            }
            let cached = previous
                .as_ref()
                .filter(|_| unchanged(id))
                .and_then(|p| p.containers.iter().find(|c| &c.id == id));
            match cached {
                Some(c) => containers.push(c.clone()),
                None => match self.runtime.container_status(id).await {
                    Ok(s) => containers.push(s),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                },
            }
        }
        let mut ips = HashMap::new();
        for s in sandboxes
            .iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
        {
            let cached = previous.as_ref().and_then(|p| p.ips.get(&s.id));
            let ip = match cached {
                Some(ip) => ip.clone(),
                None => match self.runtime.pod_sandbox_status(&s.id).await {
                    Ok(status) => status.network.map(|n| n.ip).unwrap_or_default(),
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e),
                },
            };
            ips.insert(s.id.clone(), ip);
        }
        Ok(PodRecord {
            sandboxes,
            containers,
            ips,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventType::*;
    use RelistState::*;

    fn snap(pods: &[(&str, &[(&str, RelistState)])]) -> Snapshot {
        pods.iter()
            .map(|(uid, cs)| {
                (
                    uid.to_string(),
                    cs.iter().map(|(id, s)| (id.to_string(), *s)).collect(),
                )
            })
            .collect()
    }

    fn ev(uid: &str, kind: EventType, id: &str) -> PodLifecycleEvent {
        PodLifecycleEvent {
            pod_uid: uid.into(),
            kind,
            id: id.into(),
        }
    }

    #[test]
    fn diff_reports_each_transition_as_upstream() {
        struct Case {
            name: &'static str,
            old: Snapshot,
            new: Snapshot,
            want: Vec<PodLifecycleEvent>,
        }
        let cases = [
            Case {
                name: "nothing changed",
                old: snap(&[("p", &[("s", Running), ("c", Running)])]),
                new: snap(&[("p", &[("s", Running), ("c", Running)])]),
                want: vec![],
            },
            Case {
                name: "new pod: sandbox and container started",
                old: snap(&[]),
                new: snap(&[("p", &[("s", Running), ("c", Running)])]),
                want: vec![
                    ev("p", ContainerStarted, "c"),
                    ev("p", ContainerStarted, "s"),
                ],
            },
            Case {
                name: "created container is a change, then a start",
                old: snap(&[("p", &[("c", Unknown)])]),
                new: snap(&[("p", &[("c", Running)])]),
                want: vec![ev("p", ContainerStarted, "c")],
            },
            Case {
                name: "created container first seen",
                old: snap(&[("p", &[("s", Running)])]),
                new: snap(&[("p", &[("s", Running), ("c", Unknown)])]),
                want: vec![ev("p", ContainerChanged, "c")],
            },
            Case {
                name: "container exited",
                old: snap(&[("p", &[("c", Running)])]),
                new: snap(&[("p", &[("c", Exited)])]),
                want: vec![ev("p", ContainerDied, "c")],
            },
            Case {
                name: "exited container removed",
                old: snap(&[("p", &[("s", Running), ("c", Exited)])]),
                new: snap(&[("p", &[("s", Running)])]),
                want: vec![ev("p", ContainerRemoved, "c")],
            },
            Case {
                name: "running container gone between relists: died and removed",
                old: snap(&[("p", &[("s", Running), ("c", Running)])]),
                new: snap(&[("p", &[("s", Running)])]),
                want: vec![ev("p", ContainerDied, "c"), ev("p", ContainerRemoved, "c")],
            },
            Case {
                name: "sandbox not ready counts as died",
                old: snap(&[("p", &[("s", Running)])]),
                new: snap(&[("p", &[("s", Exited)])]),
                want: vec![ev("p", ContainerDied, "s")],
            },
            Case {
                name: "whole pod gone",
                old: snap(&[("p", &[("s", Exited), ("c", Exited)])]),
                new: snap(&[]),
                want: vec![
                    ev("p", ContainerRemoved, "c"),
                    ev("p", ContainerRemoved, "s"),
                ],
            },
            Case {
                name: "restart: old instance exited, new one started",
                old: snap(&[("p", &[("c1", Running)])]),
                new: snap(&[("p", &[("c1", Exited), ("c2", Running)])]),
                want: vec![
                    ev("p", ContainerDied, "c1"),
                    ev("p", ContainerStarted, "c2"),
                ],
            },
            Case {
                name: "only the changed pod has events",
                old: snap(&[("a", &[("a1", Running)]), ("b", &[("b1", Running)])]),
                new: snap(&[("a", &[("a1", Running)]), ("b", &[("b1", Exited)])]),
                want: vec![ev("b", ContainerDied, "b1")],
            },
        ];
        for case in cases {
            assert_eq!(diff(&case.old, &case.new), case.want, "{}", case.name);
        }
    }

    #[test]
    fn snapshot_groups_by_pod_uid_label_and_maps_states() {
        let labels = |uid: &str| HashMap::from([(POD_UID_LABEL.to_string(), uid.to_string())]);
        let sandboxes = vec![
            api::PodSandbox {
                id: "s1".into(),
                state: api::PodSandboxState::SandboxReady as i32,
                labels: labels("u1"),
                ..Default::default()
            },
            api::PodSandbox {
                id: "s2".into(),
                state: api::PodSandboxState::SandboxNotready as i32,
                labels: labels("u2"),
                ..Default::default()
            },
            api::PodSandbox {
                id: "foreign".into(),
                ..Default::default()
            },
        ];
        let containers = vec![
            api::Container {
                id: "c1".into(),
                state: api::ContainerState::ContainerCreated as i32,
                labels: labels("u1"),
                ..Default::default()
            },
            api::Container {
                id: "c2".into(),
                state: api::ContainerState::ContainerExited as i32,
                labels: labels("u2"),
                ..Default::default()
            },
        ];
        assert_eq!(
            snapshot(&sandboxes, &containers),
            snap(&[
                ("u1", &[("s1", Running), ("c1", Unknown)]),
                ("u2", &[("s2", Exited), ("c2", Exited)]),
            ])
        );
    }
}
