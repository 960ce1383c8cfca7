//! The pods bound to this node: a watch on them, one worker per pod, and orphan cleanup.

pub mod backoff;
pub mod hooks;
pub mod resources;
pub mod service_env;
pub mod sidecars;
pub mod spec;
pub mod status;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use component_base::Shutdown;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::pod::worker::{kill_pod, Shared, Worker};
use crate::static_pods::{self, Mirrors, StaticPods};

/// Grace given to containers of pods the apiserver no longer knows.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);
/// How often the runtime is scanned for sandboxes of unknown pods.
const ORPHAN_SCAN: Duration = Duration::from_secs(2);

struct WorkerHandle {
    tx: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

/// Runs until `shutdown`: keeps one worker per pod with spec.nodeName == node and per static
/// pod, publishes the mirror pods the apiserver holds, and removes sandboxes whose pods are gone.
/// Running containers are left alone on shutdown, so a restarted kubelet adopts them.
pub async fn run(
    shared: Arc<Shared>,
    node_name: String,
    mut statics: watch::Receiver<StaticPods>,
    mirrors_tx: watch::Sender<Mirrors>,
    shutdown: Shutdown,
) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut known: HashSet<String> = HashSet::new();
    let mut relisting: Option<HashSet<String>> = None;
    let mut synced = false;
    // Mirror pods by (namespace, name); they get no worker of their own.
    let mut mirrors: HashMap<(String, String), Pod> = HashMap::new();
    let mut relisted_mirrors: HashMap<(String, String), Pod> = HashMap::new();
    let mut static_uids: HashSet<String> = HashSet::new();
    let mut statics_open = true;
    let mirrors_rx = mirrors_tx.subscribe();
    sync_statics(
        &shared,
        &mut workers,
        &mut static_uids,
        &statics.borrow_and_update().clone(),
        &mirrors_rx,
    );
    tokio::spawn(shared.pleg.clone().run(shutdown.clone()));
    let orphans_in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut scan = tokio::time::interval(ORPHAN_SCAN);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            event = events.next() => match event {
                None => break,
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch failed; retrying"),
                Some(Ok(Event::Init)) => {
                    relisting = Some(HashSet::new());
                    relisted_mirrors.clear();
                }
                Some(Ok(Event::InitApply(pod))) if static_pods::is_mirror(&pod) => {
                    relisted_mirrors.insert(mirror_key(&pod), pod);
                }
                Some(Ok(Event::InitApply(pod))) => {
                    if let Some(set) = relisting.as_mut() {
                        set.extend(pod.metadata.uid.clone());
                    }
                    upsert(&shared, &mut workers, &mut known, pod);
                }
                Some(Ok(Event::InitDone)) => {
                    let current = relisting.take().unwrap_or_default();
                    for uid in known.difference(&current).cloned().collect::<Vec<_>>() {
                        gone(&mut workers, &mut known, &uid);
                    }
                    mirrors = std::mem::take(&mut relisted_mirrors);
                    mirrors_tx.send_replace(Some(Arc::new(mirrors.clone())));
                    synced = true;
                }
                Some(Ok(Event::Apply(pod))) if static_pods::is_mirror(&pod) => {
                    mirrors.insert(mirror_key(&pod), pod);
                    mirrors_tx.send_replace(Some(Arc::new(mirrors.clone())));
                }
                Some(Ok(Event::Apply(pod))) => upsert(&shared, &mut workers, &mut known, pod),
                Some(Ok(Event::Delete(pod))) if static_pods::is_mirror(&pod) => {
                    let key = mirror_key(&pod);
                    if mirrors.get(&key).and_then(|m| m.metadata.uid.as_ref()) == pod.metadata.uid.as_ref() {
                        mirrors.remove(&key);
                        mirrors_tx.send_replace(Some(Arc::new(mirrors.clone())));
                    }
                }
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(uid) = pod.metadata.uid.as_deref() {
                        gone(&mut workers, &mut known, uid);
                    }
                }
            },
            changed = statics.changed(), if statics_open => match changed {
                Ok(()) => {
                    let current = statics.borrow_and_update().clone();
                    sync_statics(&shared, &mut workers, &mut static_uids, &current, &mirrors_rx);
                }
                Err(_) => statics_open = false,
            },
            _ = scan.tick() => {
                workers.retain(|_, w| !w.task.is_finished());
                // A manifest restored while its pod was still stopping gets a new worker.
                let current = statics.borrow().clone();
                sync_statics(&shared, &mut workers, &mut static_uids, &current, &mirrors_rx);
                if synced {
                    let mut keep = known.clone();
                    keep.extend(static_uids.iter().cloned());
                    remove_orphans(&shared, &workers, &keep, &orphans_in_flight).await;
                }
            }
        }
    }
    for (_, w) in workers {
        w.task.abort();
    }
}

fn mirror_key(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// Starts workers for new static pods and stops those whose manifest went away (or changed,
/// which gives the pod a new UID), with their grace period.
fn sync_statics(
    shared: &Arc<Shared>,
    workers: &mut HashMap<String, WorkerHandle>,
    static_uids: &mut HashSet<String>,
    current: &StaticPods,
    mirrors: &watch::Receiver<Mirrors>,
) {
    for uid in static_uids.iter() {
        if current.contains_key(uid) {
            continue;
        }
        if let Some(w) = workers.get(uid) {
            let mut pod = w.tx.borrow().clone();
            if let Some(pod) = pod.as_mut() {
                let grace = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30);
                pod.metadata.deletion_grace_period_seconds = Some(grace);
                pod.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::chrono::Utc::now(),
                    ));
            }
            w.tx.send_replace(pod);
        }
    }
    static_uids.retain(|uid| current.contains_key(uid));
    for (uid, pod) in current {
        static_uids.insert(uid.clone());
        if let Some(w) = workers.get(uid).filter(|w| !w.task.is_finished()) {
            w.tx.send_replace(Some(pod.clone()));
            continue;
        }
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let worker = Worker::new_static(shared.clone(), pod.clone(), mirrors.clone());
        let task = tokio::spawn(worker.run(rx));
        workers.insert(uid.clone(), WorkerHandle { tx, task });
    }
}

fn upsert(
    shared: &Arc<Shared>,
    workers: &mut HashMap<String, WorkerHandle>,
    known: &mut HashSet<String>,
    pod: Pod,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    known.insert(uid.clone());
    if let Some(w) = workers.get(&uid).filter(|w| !w.task.is_finished()) {
        w.tx.send_replace(Some(pod));
        return;
    }
    tracing::debug!(
        target: "kubelet::timeline",
        pod = %pod.metadata.name.as_deref().unwrap_or_default(),
        "pod seen; starting its worker"
    );
    let (tx, rx) = watch::channel(Some(pod.clone()));
    let task = tokio::spawn(Worker::new(shared.clone(), pod).run(rx));
    workers.insert(uid, WorkerHandle { tx, task });
}

fn gone(workers: &mut HashMap<String, WorkerHandle>, known: &mut HashSet<String>, uid: &str) {
    known.remove(uid);
    if let Some(w) = workers.get(uid) {
        w.tx.send_replace(None);
    }
}

/// Kills sandboxes (and their containers) of pods that neither the apiserver nor a worker knows.
async fn remove_orphans(
    shared: &Arc<Shared>,
    workers: &HashMap<String, WorkerHandle>,
    known: &HashSet<String>,
    in_flight: &Arc<Mutex<HashSet<String>>>,
) {
    // The last relist's view: sandboxes are only made by workers, which `workers` lists.
    let Some(with_sandbox) = shared.pleg.pods_with_sandboxes() else {
        return;
    };
    let orphans: HashSet<String> = with_sandbox
        .iter()
        .filter(|uid| !known.contains(*uid) && !workers.contains_key(*uid))
        .cloned()
        .collect();
    // Directories (volumes) of pods that are gone and have nothing left in the runtime, e.g.
    // deleted while the kubelet was down.
    let pods_dir = shared.node.root_dir.join("pods");
    for entry in std::fs::read_dir(&pods_dir).into_iter().flatten().flatten() {
        let uid = entry.file_name().to_string_lossy().into_owned();
        if !known.contains(&uid) && !workers.contains_key(&uid) && !with_sandbox.contains(&uid) {
            tracing::info!(pod_uid = %uid, "removing the directory of an orphaned pod");
            crate::volumes::teardown(&shared.node.root_dir, &uid);
        }
    }
    for uid in orphans {
        if !in_flight
            .lock()
            .expect("orphan set lock")
            .insert(uid.clone())
        {
            continue;
        }
        let runtime = shared.runtime.clone();
        let cgroup_root = shared.node.cgroup_root.clone();
        let root_dir = shared.node.root_dir.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            tracing::info!(pod_uid = %uid, "removing orphaned pod");
            match kill_pod(&runtime, &uid, ORPHAN_GRACE, &cgroup_root).await {
                Ok(()) => crate::volumes::teardown(&root_dir, &uid),
                Err(e) => tracing::warn!(pod_uid = %uid, error = %e, "remove orphaned pod"),
            }
            in_flight.lock().expect("orphan set lock").remove(&uid);
        });
    }
}
