//! One worker per pod: drives the runtime toward the pod's spec and reports its status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::Utc;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::watch;

use crate::cri::{api, CriError, Runtime};
use crate::events::{Recorder, Type};
use crate::pod::backoff::Backoff;
use crate::pod::spec::{self, NodeContext, POD_UID_LABEL};
use crate::pod::status::{self, is_exited, is_running, Observed, Waiting};
use crate::pod::{hooks, service_env, sidecars};
use crate::probes::{self, Prober};
use crate::static_pods::{self, Mirrors};
use crate::volumes::{self, PodVolumes};

/// How often a worker whose pod is in flux (starting, backing off, probed, failing) re-examines
/// it without being told of a change. Settled pods wait for a relist event, a pod update or
/// --sync-frequency.
pub const RESYNC: Duration = Duration::from_secs(1);

/// What every worker shares.
pub struct Shared {
    pub runtime: Runtime,
    pub client: kube::Client,
    pub node: NodeContext,
    /// Prefix of container IDs in pod status (the CRI runtime name, e.g. `containerd`).
    pub runtime_name: String,
    pub events: Recorder,
    /// Evictions the eviction manager asked for, carried out by the pods' workers.
    pub evictions: Arc<crate::eviction::State>,
    /// The node's relist: the runtime's state per pod, and wake-ups when it changes.
    pub pleg: Arc<crate::pleg::Pleg>,
}

/// Why a sync step failed; logged, and the next resync tries again.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Cri(#[from] CriError),
    #[error("apiserver: {0}")]
    Api(#[from] kube::Error),
}

/// The runtime's view of one pod.
#[derive(Debug, Default)]
struct RuntimeState {
    sandboxes: Vec<api::PodSandbox>,
    /// Instances per container name, newest first.
    containers: HashMap<String, Vec<api::ContainerStatus>>,
    /// Known IPs of ready sandboxes by sandbox ID (from the relist; others are asked for).
    ips: HashMap<String, String>,
}

impl RuntimeState {
    fn from_record(record: &crate::pleg::PodRecord) -> Self {
        Self {
            sandboxes: record.sandboxes.clone(),
            containers: by_name(record.containers.iter().cloned()),
            ips: record.ips.clone(),
        }
    }

    fn ready_sandbox(&self) -> Option<&api::PodSandbox> {
        self.sandboxes
            .iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
            .max_by_key(|s| s.created_at)
    }

    fn latest(&self, name: &str) -> Option<&api::ContainerStatus> {
        self.containers.get(name).and_then(|v| v.first())
    }

    fn next_sandbox_attempt(&self) -> u32 {
        self.sandboxes
            .iter()
            .filter_map(|s| s.metadata.as_ref().map(|m| m.attempt + 1))
            .max()
            .unwrap_or(0)
    }
}

/// Reads the sandboxes and containers labelled with `uid`.
async fn runtime_state(runtime: &Runtime, uid: &str) -> Result<RuntimeState, CriError> {
    let labels: HashMap<String, String> = [(POD_UID_LABEL.to_string(), uid.to_string())].into();
    let sandboxes = runtime
        .list_pod_sandbox(Some(api::PodSandboxFilter {
            label_selector: labels.clone(),
            ..Default::default()
        }))
        .await?;
    let listed = runtime
        .list_containers(Some(api::ContainerFilter {
            label_selector: labels,
            ..Default::default()
        }))
        .await?;
    let mut statuses = Vec::with_capacity(listed.len());
    for c in listed {
        match runtime.container_status(&c.id).await {
            Ok(s) => statuses.push(s),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(RuntimeState {
        sandboxes,
        containers: by_name(statuses),
        ips: HashMap::new(),
    })
}

/// Container instances by container name, newest first.
fn by_name(
    statuses: impl IntoIterator<Item = api::ContainerStatus>,
) -> HashMap<String, Vec<api::ContainerStatus>> {
    let mut containers: HashMap<String, Vec<api::ContainerStatus>> = HashMap::new();
    for status in statuses {
        let name = status
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        containers.entry(name).or_default().push(status);
    }
    for list in containers.values_mut() {
        list.sort_by_key(|c| {
            std::cmp::Reverse((c.metadata.as_ref().map_or(0, |m| m.attempt), c.created_at))
        });
    }
    containers
}

/// Stops and removes everything the runtime holds for pod `uid`, giving containers `grace`.
pub async fn kill_pod(
    runtime: &Runtime,
    uid: &str,
    grace: Duration,
    cgroup_root: &str,
) -> Result<(), CriError> {
    let state = runtime_state(runtime, uid).await?;
    let stops = state
        .containers
        .values()
        .flatten()
        .filter(|c| is_running(c))
        .map(|c| runtime.stop_container(&c.id, grace));
    for result in futures::future::join_all(stops).await {
        match result {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
    }
    for c in state.containers.values().flatten() {
        ignore_not_found(runtime.remove_container(&c.id).await)?;
    }
    for s in &state.sandboxes {
        ignore_not_found(runtime.stop_pod_sandbox(&s.id).await)?;
        ignore_not_found(runtime.remove_pod_sandbox(&s.id).await)?;
    }
    crate::pod::resources::remove_pod_cgroups(cgroup_root, uid);
    Ok(())
}

fn ignore_not_found(r: Result<(), CriError>) -> Result<(), CriError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// What a sync decided about the worker's future.
enum Next {
    Continue,
    Done,
}

pub struct Worker {
    shared: Arc<Shared>,
    uid: String,
    pod: Pod,
    backoff: Backoff,
    /// Image pull back-off by image, and when each image's last pull failed with what error.
    pull_backoff: Backoff,
    pull_failed: HashMap<String, (SystemTime, String)>,
    waiting: HashMap<String, Waiting>,
    last_status: Option<serde_json::Value>,
    start_time: Option<Time>,
    /// The pod object is gone from the apiserver (deleted without us, or force-deleted).
    gone: bool,
    /// For static pods: the mirror pods in the apiserver, where status is reported.
    mirrors: Option<watch::Receiver<Mirrors>>,
    /// The status last patched onto a mirror pod, by the mirror's UID.
    mirror_status: Option<(String, serde_json::Value)>,
    volumes: PodVolumes,
    prober: Prober,
    /// The preStop hooks ran for this pod's deletion.
    pre_stop_done: bool,
    /// Every volume has been set up once (containers may start).
    volumes_ready: bool,
    /// The eviction manager evicted this pod: it is terminal, whatever the watch says yet.
    evicted: bool,
    /// When this worker last changed (or may have changed) the runtime: relists that started
    /// earlier do not show it, so the runtime is asked directly until a newer one.
    dirty_at: Instant,
    /// The current sync changed the runtime.
    busy: bool,
    /// When the worker was made, for the debug timeline of the pod's start (target
    /// `kubelet::timeline`).
    born: Instant,
}

impl Worker {
    pub fn new(shared: Arc<Shared>, pod: Pod) -> Self {
        let volumes = PodVolumes::new(shared.node.sync_frequency);
        let start_time = pod.status.as_ref().and_then(|s| s.start_time.clone());
        Self {
            shared,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            pod,
            backoff: Backoff::default(),
            pull_backoff: Backoff::default(),
            pull_failed: HashMap::new(),
            waiting: HashMap::new(),
            last_status: None,
            start_time,
            gone: false,
            mirrors: None,
            mirror_status: None,
            volumes,
            prober: Prober::default(),
            pre_stop_done: false,
            volumes_ready: false,
            evicted: false,
            // A new worker may follow one that just tore the pod down.
            dirty_at: Instant::now(),
            busy: false,
            born: Instant::now(),
        }
    }

    /// A worker for a static pod: it never deletes pod objects and reports status to the pod's
    /// mirror pod (when there is one in `mirrors`).
    pub fn new_static(shared: Arc<Shared>, pod: Pod, mirrors: watch::Receiver<Mirrors>) -> Self {
        let mut worker = Self::new(shared, pod);
        worker.mirrors = Some(mirrors);
        worker
    }

    /// Syncs on every change of `rx`, every relist that saw the pod change in the runtime, every
    /// eviction request and mirror pod change, and after [`Worker::resync_after`], until the
    /// pod is gone and torn down.
    pub async fn run(mut self, mut rx: watch::Receiver<Option<Pod>>) {
        let pod_ref = format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
            self.pod.metadata.name.as_deref().unwrap_or_default()
        );
        let relisted = self.shared.pleg.subscribe(&self.uid);
        let mut evictions = self.shared.evictions.subscribe();
        let mut mirrors = self.mirrors.clone();
        loop {
            match rx.borrow_and_update().clone() {
                // A static pod's status exists only here (its mirror pod holds a copy).
                Some(pod) if self.mirrors.is_some() => {
                    let status = self.pod.status.take();
                    self.pod = pod;
                    self.pod.status = status;
                }
                Some(pod) => self.pod = pod,
                None => self.gone = true,
            }
            self.busy = false;
            self.mark("sync start");
            let failed = match self.sync().await {
                Ok(Next::Done) => {
                    tracing::info!(pod = %pod_ref, "pod torn down");
                    return;
                }
                Ok(Next::Continue) => false,
                Err(e) => {
                    tracing::warn!(pod = %pod_ref, error = %e, "sync failed");
                    true
                }
            };
            let delay = self.resync_after(failed);
            self.mark("sync done");
            let woken = tokio::select! {
                changed = rx.changed() => if changed.is_err() { return } else { "pod update" },
                _ = relisted.changed() => "relist",
                Ok(()) = evictions.changed() => "eviction",
                Ok(()) = mirror_changed(&mut mirrors) => "mirror",
                _ = tokio::time::sleep(delay) => "resync",
            };
            self.mark(format_args!("woken by {woken}"));
        }
    }

    /// How long the worker may wait for a wake-up before it looks again: [`RESYNC`] while the
    /// pod is in flux, so that back-offs, probes and retries keep their timing; else the
    /// periodic sync (--sync-frequency, as upstream's resync interval).
    fn resync_after(&self, failed: bool) -> Duration {
        let phase = self.pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let probed = spec_containers(&self.pod).iter().any(|c| {
            c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some()
        });
        let in_flux = failed
            || self.busy
            || !self.waiting.is_empty()
            || !self.volumes_ready
            || matches!(phase, None | Some("Pending"))
            || (probed && !matches!(phase, Some("Succeeded" | "Failed")));
        if in_flux {
            RESYNC
        } else {
            self.shared.node.sync_frequency.max(RESYNC)
        }
    }

    /// One step of the pod's timeline, in ms since its worker was made: at debug level under
    /// target `kubelet::timeline`.
    fn mark(&self, step: impl std::fmt::Display) {
        tracing::debug!(
            target: "kubelet::timeline",
            pod = %self.pod.metadata.name.as_deref().unwrap_or_default(),
            ms = self.born.elapsed().as_millis() as u64,
            "{step}"
        );
    }

    /// Notes that the runtime was (or may have been) changed just now.
    fn touched(&mut self) {
        self.busy = true;
        self.dirty_at = Instant::now();
    }

    /// The pod's runtime state: the relist's copy when it is newer than this worker's last
    /// change, else straight from the runtime.
    async fn observe(&self) -> Result<RuntimeState, CriError> {
        if let Some(seen) = self.shared.pleg.observe(&self.uid) {
            if seen.at > self.dirty_at {
                self.mark("observed (relist)");
                return Ok(RuntimeState::from_record(&seen.record));
            }
        }
        let state = runtime_state(&self.shared.runtime, &self.uid).await;
        self.mark("observed (runtime)");
        state
    }

    fn grace_period(&self) -> Duration {
        let m = &self.pod.metadata;
        let secs = m.deletion_grace_period_seconds.or_else(|| {
            self.pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        });
        Duration::from_secs(secs.unwrap_or(30).max(0) as u64)
    }

    async fn sync(&mut self) -> Result<Next, SyncError> {
        let runtime = self.shared.runtime.clone();
        if self.gone || self.pod.metadata.deletion_timestamp.is_some() {
            let grace = if self.gone && self.pod.metadata.deletion_timestamp.is_none() {
                Duration::ZERO
            } else {
                self.grace_period()
            };
            let grace = if grace.is_zero() || self.pre_stop_done {
                grace
            } else {
                self.pre_stop_done = true;
                if let Ok(state) = runtime_state(&runtime, &self.uid).await {
                    for c in spec_containers(&self.pod) {
                        if state.latest(&c.name).is_some_and(is_running) {
                            self.shared.events.pod(
                                &self.pod,
                                Some(&c.name),
                                Type::Normal,
                                "Killing",
                                format!("Stopping container {}", c.name),
                            );
                        }
                    }
                }
                self.run_pre_stop_hooks(grace).await
            };
            let grace = self.stop_sidecars_last(grace).await?;
            kill_pod(&runtime, &self.uid, grace, &self.shared.node.cgroup_root).await?;
            if self.mirrors.is_none() {
                crate::log_archive::archive_pod(&spec::pod_log_dir(
                    &self.shared.node.pod_logs_dir,
                    &self.pod,
                ));
            }
            crate::volumes::teardown(&self.shared.node.root_dir, &self.uid);
            if !self.gone && self.mirrors.is_none() {
                self.delete_pod_object().await?;
            }
            return Ok(Next::Done);
        }
        if self.mirrors.is_none() {
            if let Some(message) = self.shared.evictions.take(&self.uid) {
                self.touched();
                return self.evict(message).await;
            }
        }
        let mut state = self.observe().await?;
        let phase = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        if matches!(phase, "Succeeded" | "Failed") || self.evicted {
            // Terminal pods keep their status; only the runtime's resources go.
            let stopping = state.containers.values().flatten().any(is_running)
                || state.ready_sandbox().is_some();
            if stopping {
                self.touched();
            }
            self.stop_terminal(&state).await?;
            return Ok(Next::Continue);
        }
        let acted = self.act(&state).await;
        if !matches!(acted, Ok(false)) {
            self.touched();
        }
        if acted? {
            state = runtime_state(&runtime, &self.uid).await?;
            self.mark("re-read after acting");
        }
        let probed = self.probe(&state).await;
        if !matches!(probed, Ok(false)) {
            self.touched();
        }
        if probed? {
            state = runtime_state(&runtime, &self.uid).await?;
        }
        if self.gc_old_instances(&state).await {
            self.touched();
        }
        self.report(&state).await?;
        Ok(Next::Continue)
    }

    /// Runs due probes; kills containers whose liveness or startup probe failed. Returns
    /// whether it killed any.
    async fn probe(&mut self, state: &RuntimeState) -> Result<bool, SyncError> {
        let containers = spec_containers(&self.pod);
        let running: Vec<probes::Running> = containers
            .iter()
            .filter_map(|c| {
                let latest = state.latest(&c.name).filter(|l| is_running(l))?;
                Some(probes::Running {
                    name: c.name.clone(),
                    id: latest.id.clone(),
                    started: SystemTime::UNIX_EPOCH
                        + Duration::from_nanos(latest.started_at.max(0) as u64),
                })
            })
            .collect();
        if running.is_empty()
            || containers.iter().all(|c| {
                c.liveness_probe.is_none()
                    && c.readiness_probe.is_none()
                    && c.startup_probe.is_none()
            })
        {
            return Ok(false);
        }
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let pod_ip: String = match state.ready_sandbox() {
            _ if host_network => self.shared.node.node_ip.to_string(),
            Some(s) => self.sandbox_ip(state, &s.id).await,
            None => return Ok(false),
        };
        let tick = self
            .prober
            .tick(&self.shared.runtime, &containers, &running, &pod_ip)
            .await;
        for failure in &tick.failures {
            self.shared.events.pod(
                &self.pod,
                Some(&failure.name),
                Type::Warning,
                "Unhealthy",
                format!("{} probe failed: {}", failure.kind.name(), failure.message),
            );
        }
        let kills = tick.kills;
        for kill in &kills {
            tracing::info!(pod_uid = %self.uid, container = %kill.name, "{}", kill.message);
            self.shared.events.pod(
                &self.pod,
                Some(&kill.name),
                Type::Normal,
                "Killing",
                kill.message.clone(),
            );
            let mut grace = self.grace_period();
            if let Some(c) = containers.iter().find(|c| c.name == kill.name) {
                grace = hooks::pre_stop(&self.shared.runtime, c, &kill.id, &pod_ip, grace).await;
            }
            ignore_not_found(self.shared.runtime.stop_container(&kill.id, grace).await)?;
        }
        Ok(!kills.is_empty())
    }

    async fn stop_terminal(&self, state: &RuntimeState) -> Result<(), CriError> {
        let runtime = &self.shared.runtime;
        for c in state
            .containers
            .values()
            .flatten()
            .filter(|c| is_running(c))
        {
            ignore_not_found(runtime.stop_container(&c.id, self.grace_period()).await)?;
        }
        for s in state
            .sandboxes
            .iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
        {
            ignore_not_found(runtime.stop_pod_sandbox(&s.id).await)?;
        }
        Ok(())
    }

    async fn delete_pod_object(&self) -> Result<(), kube::Error> {
        let m = &self.pod.metadata;
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            m.namespace.as_deref().unwrap_or("default"),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api
            .delete(m.name.as_deref().unwrap_or_default(), &params)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One step toward the spec: a sandbox, then init containers in order, then containers.
    /// Returns whether anything was changed in the runtime.
    async fn act(&mut self, state: &RuntimeState) -> Result<bool, SyncError> {
        let runtime = self.shared.runtime.clone();
        if self.volumes.needs_sync() {
            let client = self.shared.client.clone();
            match self
                .volumes
                .sync(&client, &self.shared.node.root_dir, &self.pod)
                .await
            {
                Ok(()) => {
                    self.volumes_ready = true;
                    self.mark("volumes ready");
                }
                Err(e) => {
                    // Upstream's FailedMount: containers wait in ContainerCreating.
                    tracing::warn!(pod_uid = %self.uid, error = %format!("{e:#}"), "MountVolume failed");
                    self.shared.events.pod(
                        &self.pod,
                        None,
                        Type::Warning,
                        "FailedMount",
                        format!("MountVolume.SetUp failed: {e}"),
                    );
                    if !self.volumes_ready {
                        return Ok(false);
                    }
                }
            }
        }
        let sandbox_config;
        let sandbox_id = match state.ready_sandbox() {
            Some(s) => {
                let attempt = s.metadata.as_ref().map_or(0, |m| m.attempt);
                sandbox_config = spec::sandbox_config(&self.pod, attempt, &self.shared.node);
                s.id.clone()
            }
            None => {
                // A new sandbox means new containers: the old ones lost their network.
                for c in state
                    .containers
                    .values()
                    .flatten()
                    .filter(|c| is_running(c))
                {
                    ignore_not_found(runtime.stop_container(&c.id, self.grace_period()).await)?;
                }
                for s in &state.sandboxes {
                    ignore_not_found(runtime.stop_pod_sandbox(&s.id).await)?;
                }
                let attempt = state.next_sandbox_attempt();
                sandbox_config = spec::sandbox_config(&self.pod, attempt, &self.shared.node);
                if self.start_time.is_none() {
                    self.start_time = Some(Time(Utc::now()));
                }
                if let Err(e) = tokio::fs::create_dir_all(&sandbox_config.log_directory).await {
                    tracing::warn!(dir = %sandbox_config.log_directory, error = %e, "create pod log directory");
                }
                self.mark("RunPodSandbox sent");
                let id = runtime.run_pod_sandbox(sandbox_config.clone()).await?;
                self.mark("RunPodSandbox done");
                for s in &state.sandboxes {
                    ignore_not_found(runtime.remove_pod_sandbox(&s.id).await)?;
                }
                tracing::info!(pod_uid = %self.uid, sandbox = %id, attempt, "started pod sandbox");
                id
            }
        };
        if self.start_time.is_none() {
            self.start_time = Some(Time(Utc::now()));
        }
        let sandbox_is_new = state.ready_sandbox().map(|s| s.id.as_str()) != Some(&sandbox_id);
        let pod_ip = if sandbox_is_new {
            let ip = runtime
                .pod_sandbox_status(&sandbox_id)
                .await?
                .network
                .map(|n| n.ip)
                .unwrap_or_default();
            self.mark("PodSandboxStatus done");
            ip
        } else {
            self.sandbox_ip(state, &sandbox_id).await
        };
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let ctx = StartCtx {
            sandbox_id: &sandbox_id,
            sandbox_config: &sandbox_config,
            pod_ip: &pod_ip,
        };
        // Containers of an earlier sandbox do not count once a new one runs.
        let current = |name: &str| {
            state
                .latest(name)
                .filter(|c| !sandbox_is_new || !is_running(c))
                .cloned()
        };

        // Once a main container has run in this sandbox the pod is initialized: init
        // containers are not run again and sidecars restart on their own, without blocking.
        let initialized = !sandbox_is_new
            && spec
                .containers
                .iter()
                .any(|c| state.latest(&c.name).is_some());
        // Main containers that exited and will not restart: then sidecars stop too.
        let mains_done = initialized
            && spec.containers.iter().all(|c| {
                state.latest(&c.name).is_some_and(|l| {
                    is_exited(l)
                        && match policy.as_str() {
                            "Never" => true,
                            "OnFailure" => l.exit_code == 0,
                            _ => false,
                        }
                })
            });
        let mut changed = false;
        for c in spec.init_containers.iter().flatten() {
            let latest = if sandbox_is_new {
                None
            } else {
                current(&c.name)
            };
            if sidecars::is_sidecar(c) {
                match latest {
                    Some(l) if is_running(&l) && mains_done => {
                        ignore_not_found(runtime.stop_container(&l.id, self.grace_period()).await)?;
                        changed = true;
                    }
                    _ if mains_done => {}
                    None if initialized => changed |= self.start(c, 0, &ctx).await?,
                    None => return self.start(c, 0, &ctx).await,
                    // The next init container waits until the sidecar has started.
                    Some(l) if is_running(&l) => {
                        self.waiting.remove(&c.name);
                        if !initialized && !self.prober.started(c) {
                            return Ok(false);
                        }
                    }
                    Some(l) if is_exited(&l) && initialized => {
                        changed |= self.restart_with_backoff(c, &l, &ctx).await?
                    }
                    Some(l) if is_exited(&l) => {
                        return self.restart_with_backoff(c, &l, &ctx).await
                    }
                    Some(l) => {
                        ignore_not_found(runtime.remove_container(&l.id).await)?;
                        return self.start(c, attempt_of(&l) + 1, &ctx).await;
                    }
                }
                continue;
            }
            if initialized {
                continue;
            }
            match latest {
                None => return self.start(c, 0, &ctx).await,
                Some(l) if is_running(&l) => return Ok(false),
                Some(l) if is_exited(&l) && l.exit_code == 0 => continue,
                Some(l) if is_exited(&l) => {
                    if policy == "Never" {
                        return Ok(false);
                    }
                    return self.restart_with_backoff(c, &l, &ctx).await;
                }
                Some(l) => {
                    ignore_not_found(runtime.remove_container(&l.id).await)?;
                    return self.start(c, attempt_of(&l) + 1, &ctx).await;
                }
            }
        }

        for c in &spec.containers {
            let latest = if sandbox_is_new {
                state.latest(&c.name).cloned().map(|mut l| {
                    // Force a restart in the new sandbox, counting the old instance.
                    l.state = api::ContainerState::ContainerExited as i32;
                    l
                })
            } else {
                current(&c.name)
            };
            changed |= match latest {
                None => self.start(c, 0, &ctx).await?,
                Some(l) if is_running(&l) => {
                    self.waiting.remove(&c.name);
                    false
                }
                Some(l) if is_exited(&l) => {
                    let restart = match policy.as_str() {
                        "Never" => false,
                        "OnFailure" => l.exit_code != 0,
                        _ => true,
                    };
                    if restart {
                        self.restart_with_backoff(c, &l, &ctx).await?
                    } else {
                        self.waiting.remove(&c.name);
                        false
                    }
                }
                Some(l) => {
                    // Created but never started (e.g. the kubelet died in between).
                    ignore_not_found(runtime.remove_container(&l.id).await)?;
                    self.start(c, attempt_of(&l) + 1, &ctx).await?
                }
            };
        }
        Ok(changed || sandbox_is_new)
    }

    async fn sandbox_ip(&self, state: &RuntimeState, id: &str) -> String {
        if let Some(ip) = state.ips.get(id) {
            return ip.clone();
        }
        match self.shared.runtime.pod_sandbox_status(id).await {
            Ok(s) => s.network.map(|n| n.ip).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn restart_with_backoff(
        &mut self,
        c: &Container,
        last: &api::ContainerStatus,
        ctx: &StartCtx<'_>,
    ) -> Result<bool, SyncError> {
        let finished =
            SystemTime::UNIX_EPOCH + Duration::from_nanos(last.finished_at.max(0) as u64);
        let now = SystemTime::now();
        if let Some(remaining) = self.backoff.remaining(&c.name, finished, now) {
            let delay = self.backoff.delay(&c.name).unwrap_or(remaining);
            let m = &self.pod.metadata;
            self.shared.events.pod(
                &self.pod,
                Some(&c.name),
                Type::Warning,
                "BackOff",
                format!(
                    "Back-off restarting failed container {} in pod {}_{}({})",
                    c.name,
                    m.name.as_deref().unwrap_or_default(),
                    m.namespace.as_deref().unwrap_or_default(),
                    self.uid
                ),
            );
            self.waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {} restarting failed container={} pod={}_{}({})",
                        go_duration(delay),
                        c.name,
                        m.name.as_deref().unwrap_or_default(),
                        m.namespace.as_deref().unwrap_or_default(),
                        self.uid
                    ),
                },
            );
            return Ok(false);
        }
        self.backoff.next(&c.name, now);
        self.start(c, attempt_of(last) + 1, ctx).await
    }

    /// Pulls if needed, creates and starts one container instance; failures become waiting
    /// reasons as upstream names them.
    async fn start(
        &mut self,
        c: &Container,
        attempt: u32,
        ctx: &StartCtx<'_>,
    ) -> Result<bool, SyncError> {
        let runtime = self.shared.runtime.clone();
        let image = match self.ensure_image(c, ctx.sandbox_config).await {
            Ok(image) => image,
            Err(waiting) => {
                let reason = if waiting.reason == "ErrImagePull" {
                    "Failed"
                } else {
                    waiting.reason.as_str()
                };
                // ensure_image recorded the back-off's own event.
                if waiting.reason != "ImagePullBackOff" {
                    self.shared.events.pod(
                        &self.pod,
                        Some(&c.name),
                        Type::Warning,
                        reason,
                        waiting.message.clone(),
                    );
                }
                self.waiting.insert(c.name.clone(), waiting);
                return Ok(false);
            }
        };
        self.mark("image checked");
        let sources = self.env_sources(c).await?;
        let host_ip = self.shared.node.node_ip.to_string();
        let env = match spec::build_env(&self.pod, c, &sources, ctx.pod_ip, &host_ip) {
            Ok(mut env) => {
                for (k, v) in self.service_env().await? {
                    if !env.iter().any(|(name, _)| *name == k) {
                        env.push((k, v));
                    }
                }
                self.mark("environment built");
                env
            }
            Err(e) => {
                self.create_failed(c, "CreateContainerConfigError", e);
                return Ok(false);
            }
        };
        let env_map: HashMap<String, String> = env.iter().cloned().collect();
        let mounts = match volumes::container_mounts(c, &self.volumes.mounted, &env_map) {
            Ok(m) => m,
            Err(e) => {
                self.create_failed(c, "CreateContainerConfigError", e);
                return Ok(false);
            }
        };
        let mut config =
            spec::container_config(&self.pod, c, attempt, env, &image, &self.shared.node);
        config.mounts = mounts;
        let log_dir = std::path::Path::new(&ctx.sandbox_config.log_directory).join(&c.name);
        if let Err(e) = tokio::fs::create_dir_all(&log_dir).await {
            tracing::warn!(dir = %log_dir.display(), error = %e, "create container log directory");
        }
        self.mark("CreateContainer sent");
        let id = match runtime
            .create_container(ctx.sandbox_id, config, ctx.sandbox_config.clone())
            .await
        {
            Ok(id) => id,
            Err(e) => {
                self.create_failed(c, "CreateContainerError", e);
                return Ok(false);
            }
        };
        self.shared.events.pod(
            &self.pod,
            Some(&c.name),
            Type::Normal,
            "Created",
            format!("Created container {}", c.name),
        );
        self.mark("StartContainer sent");
        let started = runtime.start_container(&id).await;
        self.mark("StartContainer done");
        if let Err(e) = started {
            self.shared.events.pod(
                &self.pod,
                Some(&c.name),
                Type::Warning,
                "Failed",
                format!("Error: {e}"),
            );
            self.waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: "RunContainerError".into(),
                    message: e.to_string(),
                },
            );
            return Ok(true);
        }
        tracing::info!(pod_uid = %self.uid, container = %c.name, id = %id, attempt, "started container");
        self.shared.events.pod(
            &self.pod,
            Some(&c.name),
            Type::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
        self.waiting.remove(&c.name);
        if let Some(handler) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let pod_ip = self.probe_ip(ctx.pod_ip);
            let limit = Duration::from_secs(120);
            if let Err(message) = hooks::run(&runtime, handler, c, &id, &pod_ip, limit).await {
                let m = &self.pod.metadata;
                let message = format!(
                    "PostStartHook failed for Container {:?} in Pod \"{}_{}({})\": {message}",
                    c.name,
                    m.name.as_deref().unwrap_or_default(),
                    m.namespace.as_deref().unwrap_or_default(),
                    self.uid
                );
                tracing::warn!(pod_uid = %self.uid, container = %c.name, %message, "FailedPostStartHook");
                self.shared.events.pod(
                    &self.pod,
                    Some(&c.name),
                    Type::Warning,
                    "FailedPostStartHook",
                    message.clone(),
                );
                ignore_not_found(runtime.stop_container(&id, self.grace_period()).await)?;
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "PostStartHookError".into(),
                        message,
                    },
                );
            }
        }
        Ok(true)
    }

    /// Where probes and hooks reach the pod: the node's IP for host-network pods.
    /// A container that could not be created: upstream's `Failed` event ("Error: ...") and the
    /// waiting reason the status reports until the next attempt.
    fn create_failed(&mut self, c: &Container, reason: &str, e: impl std::fmt::Display) {
        self.shared.events.pod(
            &self.pod,
            Some(&c.name),
            Type::Warning,
            "Failed",
            format!("Error: {e}"),
        );
        self.waiting.insert(
            c.name.clone(),
            Waiting {
                reason: reason.into(),
                message: e.to_string(),
            },
        );
    }

    fn probe_ip(&self, sandbox_ip: &str) -> String {
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        if host_network {
            self.shared.node.node_ip.to_string()
        } else {
            sandbox_ip.to_string()
        }
    }

    /// For a pod with sidecars: stops the main containers together, then the sidecars one at
    /// a time in reverse order, all within `grace`; returns the grace left.
    async fn stop_sidecars_last(&self, grace: Duration) -> Result<Duration, CriError> {
        let (main, side) = sidecars::stop_order(&self.pod);
        if side.is_empty() {
            return Ok(grace);
        }
        let runtime = &self.shared.runtime;
        let deadline = tokio::time::Instant::now() + grace;
        let state = runtime_state(runtime, &self.uid).await?;
        let running = |name: &String| {
            state
                .latest(name)
                .filter(|c| is_running(c))
                .map(|c| c.id.clone())
        };
        let stops = main
            .iter()
            .filter_map(running)
            .map(|id| async move { runtime.stop_container(&id, grace).await });
        for r in futures::future::join_all(stops).await {
            ignore_not_found(r)?;
        }
        tracing::info!(pod_uid = %self.uid, sidecars = ?side, "stopping sidecars after the main containers");
        for id in side.iter().filter_map(running) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            ignore_not_found(runtime.stop_container(&id, left).await)?;
        }
        Ok(deadline.saturating_duration_since(tokio::time::Instant::now()))
    }

    /// Runs the preStop hooks of the running containers concurrently within `grace`; returns
    /// the grace left for stopping them.
    async fn run_pre_stop_hooks(&self, grace: Duration) -> Duration {
        let containers = spec_containers(&self.pod);
        if containers.iter().all(|c| {
            c.lifecycle
                .as_ref()
                .and_then(|l| l.pre_stop.as_ref())
                .is_none()
        }) {
            return grace;
        }
        let runtime = &self.shared.runtime;
        let Ok(state) = runtime_state(runtime, &self.uid).await else {
            return grace;
        };
        let sandbox_ip = match state.ready_sandbox() {
            Some(s) => self.sandbox_ip(&state, &s.id).await,
            None => String::new(),
        };
        let pod_ip = self.probe_ip(&sandbox_ip);
        let hooks = containers.iter().filter_map(|c| {
            let id = state.latest(&c.name).filter(|l| is_running(l))?.id.clone();
            let pod_ip = pod_ip.clone();
            Some(async move { hooks::pre_stop(runtime, c, &id, &pod_ip, grace).await })
        });
        futures::future::join_all(hooks)
            .await
            .into_iter()
            .min()
            .unwrap_or(grace)
    }

    /// Applies the pull policy; returns the image to create the container from.
    async fn ensure_image(
        &mut self,
        c: &Container,
        sandbox_config: &api::PodSandboxConfig,
    ) -> Result<String, Waiting> {
        let image = c.image.clone().unwrap_or_default();
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(&image).to_string());
        let runtime = &self.shared.runtime;
        let present = match runtime.image_status(&image).await {
            Ok(status) => status.is_some(),
            Err(e) => {
                return Err(Waiting {
                    reason: "ImageInspectError".into(),
                    message: format!("Failed to inspect image {image:?}: {e}"),
                })
            }
        };
        let events = &self.shared.events;
        if present && policy != "Always" {
            events.pod(
                &self.pod,
                Some(&c.name),
                Type::Normal,
                "Pulled",
                format!("Container image {image:?} already present on machine"),
            );
            return Ok(image);
        }
        if policy == "Never" {
            return Err(Waiting {
                reason: "ErrImageNeverPull".into(),
                message: format!(
                    "Container image {image:?} is not present with pull policy of Never"
                ),
            });
        }
        // A failed pull is retried after a back-off (10 s doubling to 5 min), as upstream.
        let now = SystemTime::now();
        if let Some((failed_at, error)) = self.pull_failed.get(&image) {
            if self
                .pull_backoff
                .remaining(&image, *failed_at, now)
                .is_some()
            {
                events.pod(
                    &self.pod,
                    Some(&c.name),
                    Type::Normal,
                    "BackOff",
                    format!("Back-off pulling image {image:?}"),
                );
                return Err(Waiting {
                    reason: "ImagePullBackOff".into(),
                    message: format!("Back-off pulling image {image:?}: ErrImagePull: {error}"),
                });
            }
        }
        events.pod(
            &self.pod,
            Some(&c.name),
            Type::Normal,
            "Pulling",
            format!("Pulling image {image:?}"),
        );
        let keyring = self.pull_keyring().await;
        let creds = keyring.lookup(&image);
        // As upstream: anonymously when no credential matches, else each in turn until one
        // pulls; the errors of all attempts are reported.
        let attempts: Vec<Option<api::AuthConfig>> = if creds.is_empty() {
            vec![None]
        } else {
            creds.iter().map(|(_, c)| Some(c.to_cri())).collect()
        };
        let mut result = Err(Vec::new());
        for auth in attempts {
            match runtime
                .pull_image(&image, auth, Some(sandbox_config.clone()))
                .await
            {
                Ok(r) => {
                    result = Ok(r);
                    break;
                }
                Err(e) => {
                    if let Err(errs) = result.as_mut() {
                        errs.push(e.to_string());
                    }
                }
            }
        }
        let result = result.map_err(|errs| errs.join(", "));
        match &result {
            Ok(_) => {
                self.pull_failed.remove(&image);
            }
            Err(e) => {
                self.pull_backoff.next(&image, now);
                self.pull_failed.insert(image.clone(), (now, e.clone()));
            }
        }
        let events = &self.shared.events;
        match result {
            Ok(_) => {
                events.pod(
                    &self.pod,
                    Some(&c.name),
                    Type::Normal,
                    "Pulled",
                    format!("Successfully pulled image {image:?}"),
                );
                Ok(image)
            }
            Err(e) => Err(Waiting {
                reason: "ErrImagePull".into(),
                message: e,
            }),
        }
    }

    /// The credentials of the pod's imagePullSecrets; unreadable ones are reported with
    /// upstream's FailedToRetrieveImagePullSecret event and skipped.
    async fn pull_keyring(&self) -> crate::credentials::Keyring {
        let mut keyring = crate::credentials::Keyring::default();
        let names: Vec<String> = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .into_iter()
            .flatten()
            .map(|r| r.name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return keyring;
        }
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Secret> = Api::namespaced(self.shared.client.clone(), namespace);
        let mut missing = Vec::new();
        for name in names {
            match api.get(&name).await {
                Ok(secret) => {
                    let data: std::collections::BTreeMap<String, Vec<u8>> = secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    if let Err(e) = keyring.add_secret_data(&data) {
                        tracing::warn!(pod_uid = %self.uid, secret = %name, error = %e, "image pull secret");
                        missing.push(name);
                    }
                }
                Err(e) => {
                    tracing::warn!(pod_uid = %self.uid, secret = %name, error = %e, "image pull secret");
                    missing.push(name);
                }
            }
        }
        if !missing.is_empty() {
            self.shared.events.pod(
                &self.pod,
                None,
                Type::Warning,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    missing.join(", ")
                ),
            );
        }
        keyring
    }

    /// The service variables; static pods get none while the apiserver is unreachable.
    async fn service_env(&self) -> Result<Vec<(String, String)>, SyncError> {
        let ns = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let links = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let client = self.shared.client.clone();
        // One round trip: the `kubernetes` Service and the namespace's Services are asked for
        // at once (in `default` the list has both). In a burst of pod starts every round trip
        // waits behind the others.
        let default: Api<Service> = Api::namespaced(client.clone(), "default");
        let fetched = if links && ns == "default" {
            default.list(&Default::default()).await.map(|l| l.items)
        } else if links {
            let api: Api<Service> = Api::namespaced(client.clone(), ns);
            futures::future::try_join(default.get_opt("kubernetes"), api.list(&Default::default()))
                .await
                .map(|(kubernetes, list)| kubernetes.into_iter().chain(list.items).collect())
        } else {
            default
                .get_opt("kubernetes")
                .await
                .map(|k| k.into_iter().collect())
        };
        let services: Vec<Service> = match fetched {
            Ok(services) => services,
            Err(e) if self.mirrors.is_some() => {
                tracing::debug!(error = %e, "no service variables for a static pod");
                return Ok(Vec::new());
            }
            Err(e) => return Err(e.into()),
        };
        let visible = service_env::visible(&services, ns, links);
        Ok(service_env::service_env(&visible))
    }

    async fn env_sources(&self, c: &Container) -> Result<spec::EnvSources, SyncError> {
        let (cms, secrets) = spec::env_references(c);
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let client = self.shared.client.clone();
        let mut sources = spec::EnvSources::default();
        let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        for name in cms {
            let data = cm_api
                .get_opt(&name)
                .await?
                .map(|cm| cm.data.unwrap_or_default());
            sources.config_maps.insert(name, data);
        }
        let secret_api: Api<Secret> = Api::namespaced(client, namespace);
        for name in secrets {
            let data = secret_api.get_opt(&name).await?.map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect()
            });
            sources.secrets.insert(name, data);
        }
        Ok(sources)
    }

    /// Keeps the newest two instances of each container (current and previous) and removes
    /// older exited ones; returns whether there were any.
    async fn gc_old_instances(&self, state: &RuntimeState) -> bool {
        let mut removed = false;
        for list in state.containers.values() {
            for old in list.iter().skip(2).filter(|c| !is_running(c)) {
                removed = true;
                if let Err(e) = self.shared.runtime.remove_container(&old.id).await {
                    tracing::debug!(id = %old.id, error = %e, "remove old container");
                }
            }
        }
        removed
    }

    /// Stops the pod's containers (hard eviction: 1s grace, as upstream) and reports it
    /// Failed with reason Evicted, the manager's message, an Evicted event and a
    /// DisruptionTarget condition.
    async fn evict(&mut self, message: String) -> Result<Next, SyncError> {
        let runtime = self.shared.runtime.clone();
        self.evicted = true;
        self.shared
            .events
            .pod(&self.pod, None, Type::Warning, "Evicted", message.clone());
        let state = runtime_state(&runtime, &self.uid).await?;
        for c in state
            .containers
            .values()
            .flatten()
            .filter(|c| is_running(c))
        {
            ignore_not_found(runtime.stop_container(&c.id, Duration::from_secs(1)).await)?;
        }
        let state = runtime_state(&runtime, &self.uid).await?;
        let mut status = self.compute_status(&state).await;
        let now = Time(Utc::now());
        status.phase = Some("Failed".into());
        status.reason = Some("Evicted".into());
        status.message = Some(message.clone());
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(k8s_openapi::api::core::v1::PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("TerminationByKubelet".into()),
            message: Some(message),
            last_transition_time: Some(now),
            ..Default::default()
        });
        let value = serde_json::to_value(&status).unwrap_or_default();
        let m = &self.pod.metadata;
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            m.namespace.as_deref().unwrap_or("default"),
        );
        let patch = serde_json::json!({"metadata": {"uid": self.uid}, "status": value});
        match api
            .patch_status(
                m.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        self.last_status = Some(value);
        self.pod.status = Some(status);
        self.stop_terminal(&state).await?;
        Ok(Next::Continue)
    }

    /// The status the runtime's state amounts to.
    async fn compute_status(&self, state: &RuntimeState) -> k8s_openapi::api::core::v1::PodStatus {
        let sandbox = state.ready_sandbox();
        let pod_ip = match sandbox {
            Some(s) => Some(self.sandbox_ip(state, &s.id).await),
            None => None,
        };
        let observed = Observed {
            sandbox_ready: sandbox.is_some(),
            pod_ip,
            instances: state.containers.clone(),
            waiting: self.waiting.clone(),
            runtime_name: self.shared.runtime_name.clone(),
            unready: spec_containers(&self.pod)
                .iter()
                .filter(|c| !self.prober.ready(c))
                .map(|c| c.name.clone())
                .collect(),
            not_started: spec_containers(&self.pod)
                .iter()
                .filter(|c| !self.prober.started(c))
                .map(|c| c.name.clone())
                .collect(),
        };
        let now = Time(Utc::now());
        let start = self.start_time.clone().unwrap_or_else(|| now.clone());
        status::pod_status(
            &self.pod,
            &observed,
            &self.shared.node.node_ip.to_string(),
            &start,
            &now,
        )
    }

    /// Computes the status and patches pods/status when it changed.
    async fn report(&mut self, state: &RuntimeState) -> Result<(), SyncError> {
        let sandbox = state.ready_sandbox();
        let pod_ip = match sandbox {
            Some(s) => Some(self.sandbox_ip(state, &s.id).await),
            None => None,
        };
        let observed = Observed {
            sandbox_ready: sandbox.is_some(),
            pod_ip,
            instances: state.containers.clone(),
            waiting: self.waiting.clone(),
            runtime_name: self.shared.runtime_name.clone(),
            unready: spec_containers(&self.pod)
                .iter()
                .filter(|c| !self.prober.ready(c))
                .map(|c| c.name.clone())
                .collect(),
            not_started: spec_containers(&self.pod)
                .iter()
                .filter(|c| !self.prober.started(c))
                .map(|c| c.name.clone())
                .collect(),
        };
        let now = Time(Utc::now());
        let start = self.start_time.clone().unwrap_or_else(|| now.clone());
        let status = status::pod_status(
            &self.pod,
            &observed,
            &self.shared.node.node_ip.to_string(),
            &start,
            &now,
        );
        let value = serde_json::to_value(&status).unwrap_or_default();
        if self.mirrors.is_some() {
            self.pod.status = Some(status);
            return self.report_to_mirror(value).await;
        }
        let current = self
            .pod
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok());
        // The last patch is remembered so that fields the apiserver normalizes differently do
        // not cause a patch every resync.
        if self.last_status.as_ref() == Some(&value) || current.as_ref() == Some(&value) {
            self.last_status = Some(value);
            return Ok(());
        }
        let m = &self.pod.metadata;
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            m.namespace.as_deref().unwrap_or("default"),
        );
        let patch = serde_json::json!({
            "metadata": {"uid": self.uid},
            "status": value,
        });
        self.mark(format_args!(
            "status patch sent ({})",
            status.phase.as_deref().unwrap_or_default()
        ));
        let patched = api
            .patch_status(
                m.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
        self.mark("status patch answered");
        match patched {
            Ok(pod) => {
                self.pod.status = pod.status;
                self.last_status = Some(value);
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Worker {
    /// Patches the static pod's status onto its current mirror pod (the one of this manifest
    /// version that is not being deleted); without one, the status stays local.
    async fn report_to_mirror(&mut self, value: serde_json::Value) -> Result<(), SyncError> {
        let Some(mirrors) = self.mirrors.as_ref().and_then(|rx| rx.borrow().clone()) else {
            return Ok(());
        };
        let m = &self.pod.metadata;
        let key = (
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
        );
        let Some(mirror) = mirrors.get(&key) else {
            return Ok(());
        };
        if mirror.metadata.deletion_timestamp.is_some()
            || static_pods::mirror_hash(mirror) != static_pods::config_hash(&self.pod)
        {
            return Ok(());
        }
        let mirror_uid = mirror.metadata.uid.clone().unwrap_or_default();
        let last = Some((mirror_uid.clone(), value.clone()));
        if self.mirror_status == last {
            return Ok(());
        }
        let current = mirror
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok());
        if current.as_ref() == Some(&value) {
            self.mirror_status = last;
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &key.0);
        let patch = serde_json::json!({
            "metadata": {"uid": mirror_uid},
            "status": value,
        });
        match api
            .patch_status(&key.1, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.mirror_status = last;
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A change of the mirror pods, for static pods' workers; never for the others.
async fn mirror_changed(
    mirrors: &mut Option<watch::Receiver<Mirrors>>,
) -> Result<(), watch::error::RecvError> {
    match mirrors {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

struct StartCtx<'a> {
    sandbox_id: &'a str,
    sandbox_config: &'a api::PodSandboxConfig,
    pod_ip: &'a str,
}

/// The long-running containers: sidecars (probed, hooked and killed like main containers)
/// and the main containers.
fn spec_containers(pod: &Pod) -> Vec<Container> {
    let mut all = sidecars::sidecars(pod);
    all.extend(
        pod.spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default(),
    );
    all
}

fn attempt_of(c: &api::ContainerStatus) -> u32 {
    c.metadata.as_ref().map_or(0, |m| m.attempt)
}

/// The apiserver defaults the policy; this covers objects that somehow lack it.
fn default_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent"
    } else if !last.contains(':') || last.ends_with(":latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// A Go-style duration (`10s`, `5m0s`) for back-off messages.
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_like_the_apiserver() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(default_pull_policy("kube-test/busybox:1.0"), "IfNotPresent");
        assert_eq!(default_pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn back_off_messages_use_go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
    }
}
