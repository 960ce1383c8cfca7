//! node-lifecycle: marks nodes whose kubelet stopped heartbeating (Lease and Ready condition)
//! Unknown, keeps the condition taints on nodes, and taints not-ready nodes NoExecute per zone at a
//! limited rate (none at all while every zone is fully disrupted).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::ResourceExt;

use super::nodeutil::{
    node_ref, record_event, NO_EXECUTE, NO_SCHEDULE, TAINT_DISK_PRESSURE, TAINT_MEMORY_PRESSURE,
    TAINT_NETWORK_UNAVAILABLE, TAINT_NOT_READY, TAINT_PID_PRESSURE, TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
};
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;
use crate::options::Config;

/// The events' source component, as upstream.
const COMPONENT: &str = "node-controller";
/// Where kubelets keep their heartbeat Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Conditions set to Unknown when the kubelet goes silent.
const MONITORED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// How a zone's nodes are doing, as upstream's `ZoneState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    /// Few nodes not ready.
    Normal,
    /// More than the threshold (and more than 2) not ready.
    PartialDisruption,
    /// No node ready.
    FullDisruption,
}

/// The state of a zone whose nodes' readiness is `ready`.
pub fn zone_state(ready: &[bool], unhealthy_threshold: f32) -> ZoneState {
    let ready_count = ready.iter().filter(|r| **r).count();
    let not_ready = ready.len() - ready_count;
    if ready_count == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f32 / ready.len() as f32 >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Nodes per second a zone may taint NoExecute in `state`.
pub fn zone_rate(state: ZoneState, zone_size: usize, config: &Config) -> f32 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => config.node_eviction_rate,
        ZoneState::PartialDisruption => {
            if zone_size as i64 > i64::from(config.large_cluster_size_threshold) {
                config.secondary_node_eviction_rate
            } else {
                0.0
            }
        }
    }
}

/// A token bucket with burst 1 that starts full, like upstream's zone limiters.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f32,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` tokens per second (0 rejects everything).
    pub fn new(rate: f32, now: Instant) -> Self {
        Self {
            rate,
            tokens: 1.0,
            last: now,
        }
    }

    /// Takes a token if one is there.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(self.rate)).min(1.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Sets the monitored conditions Unknown because the kubelet went silent; returns whether
/// anything changed.
pub fn mark_conditions_unknown(conditions: &mut Vec<NodeCondition>, now: DateTime<Utc>) -> bool {
    let mut changed = false;
    for type_ in MONITORED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: None,
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed
}

/// The node's Ready condition status ("Unknown" when it has none).
pub fn ready_status(node: &Node) -> &str {
    condition(node, "Ready")
        .map(|c| c.status.as_str())
        .unwrap_or("Unknown")
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// The NoSchedule taint keys the node's conditions and spec call for.
pub fn condition_taint_keys(node: &Node) -> Vec<&'static str> {
    let mut keys = Vec::new();
    for c in node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        let key = match (c.type_.as_str(), c.status.as_str()) {
            ("Ready", "False") => TAINT_NOT_READY,
            ("Ready", "Unknown") => TAINT_UNREACHABLE,
            ("MemoryPressure", "True") => TAINT_MEMORY_PRESSURE,
            ("DiskPressure", "True") => TAINT_DISK_PRESSURE,
            ("PIDPressure", "True") => TAINT_PID_PRESSURE,
            ("NetworkUnavailable", "True") => TAINT_NETWORK_UNAVAILABLE,
            _ => continue,
        };
        keys.push(key);
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        keys.push(TAINT_UNSCHEDULABLE);
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The NoExecute taint a node in this Ready state should carry.
pub fn no_execute_taint_key(ready: &str) -> Option<&'static str> {
    match ready {
        "True" => None,
        "False" => Some(TAINT_NOT_READY),
        _ => Some(TAINT_UNREACHABLE),
    }
}

/// `taints` with the controller-owned ones of `effect` among `owned` replaced by `wanted`; taints
/// that stay keep their timeAdded, new NoExecute taints get `now`. `None` when nothing changes.
pub fn replace_taints(
    taints: &[Taint],
    effect: &str,
    owned: &[&str],
    wanted: &[&str],
    now: DateTime<Utc>,
) -> Option<Vec<Taint>> {
    let is_owned = |t: &Taint| t.effect == effect && owned.contains(&t.key.as_str());
    let mut kept: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for t in taints {
        if is_owned(t) {
            // Drop unwanted ones and duplicates of a wanted one.
            if !wanted.contains(&t.key.as_str()) || kept.contains(&t.key.as_str()) {
                continue;
            }
            kept.push(t.key.as_str());
        }
        out.push(t.clone());
    }
    for key in wanted {
        if !kept.contains(key) {
            out.push(Taint {
                key: (*key).to_owned(),
                value: None,
                effect: effect.to_owned(),
                time_added: (effect == NO_EXECUTE).then_some(Time(now)),
            });
        }
    }
    (out != taints).then_some(out)
}

/// The zone a node is in, from its topology labels.
pub fn zone_key(node: &Node) -> String {
    let labels = node.labels();
    let get = |stable: &str, beta: &str| {
        labels
            .get(stable)
            .or_else(|| labels.get(beta))
            .cloned()
            .unwrap_or_default()
    };
    let region = get(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = get(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    format!("{region}:\0:{zone}")
}

/// What the monitor remembers of one node between passes.
struct Health {
    /// The last Ready heartbeat and Lease renewTime seen, and when (our clock) either changed.
    heartbeat: Option<Time>,
    renew: Option<DateTime<Utc>>,
    probed: Instant,
    /// Ready status at the previous pass, and how many passes in a row it was not True.
    last_ready: String,
    not_ready_passes: u32,
}

struct Monitor {
    client: kube::Client,
    config: Arc<Config>,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    health: HashMap<String, Health>,
    limiters: HashMap<String, (ZoneState, TokenBucket)>,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let nodes = ctx.informers.get::<Node>();
    let leases = ctx.informers.get::<Lease>();
    let pods = ctx.informers.get::<Pod>();
    let monitor = Monitor {
        client: ctx.client.clone(),
        config: ctx.config.clone(),
        nodes: nodes.store(),
        leases: leases.store(),
        pods: pods.store(),
        health: HashMap::new(),
        limiters: HashMap::new(),
    };
    let synced = {
        let (n, l, p) = (nodes.clone(), leases.clone(), pods.clone());
        move || n.has_synced() && l.has_synced() && p.has_synced()
    };
    let shutdown = ctx.shutdown.clone();
    let monitor_loop = async move {
        let mut monitor = monitor;
        let mut tick = tokio::time::interval(monitor.config.node_monitor_period.max(MIN_PERIOD));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => {}
            }
            if synced() {
                monitor.pass().await;
            }
        }
    };
    let taint_ctx = Arc::new(TaintCtx {
        client: ctx.client.clone(),
    });
    let no_schedule = Controller::for_shared_stream(nodes.subscribe(), nodes.store())
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .run(reconcile_no_schedule, error_policy, taint_ctx);
    Ok(async move {
        tokio::join!(monitor_loop, drain("node-lifecycle", no_schedule));
    }
    .boxed())
}

/// A floor for --node-monitor-period so a 0 cannot spin.
const MIN_PERIOD: Duration = Duration::from_millis(100);

struct TaintCtx {
    client: kube::Client,
}

/// Keeps the NoSchedule taints in line with the node's conditions and spec.unschedulable.
async fn reconcile_no_schedule(node: Arc<Node>, ctx: Arc<TaintCtx>) -> Result<Action, Error> {
    if node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let owned = [
        TAINT_NOT_READY,
        TAINT_UNREACHABLE,
        TAINT_MEMORY_PRESSURE,
        TAINT_DISK_PRESSURE,
        TAINT_PID_PRESSURE,
        TAINT_NETWORK_UNAVAILABLE,
        TAINT_UNSCHEDULABLE,
    ];
    let wanted = condition_taint_keys(&node);
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let Some(taints) = replace_taints(&current, NO_SCHEDULE, &owned, &wanted, Utc::now()) else {
        return Ok(Action::await_change());
    };
    match update_taints(&ctx.client, &node, taints).await {
        Ok(()) => Ok(Action::await_change()),
        Err(e) if is_status(&e, 409) || is_status(&e, 404) => Ok(
            crate::controllers::requeue_after(Duration::from_millis(200)),
        ),
        Err(e) => Err(e.into()),
    }
}

/// Writes `taints` to the node with its cached resourceVersion as precondition.
async fn update_taints(
    client: &kube::Client,
    node: &Node,
    taints: Vec<Taint>,
) -> Result<(), kube::Error> {
    let mut updated = node.clone();
    updated.spec.get_or_insert_with(Default::default).taints =
        (!taints.is_empty()).then_some(taints);
    let api: Api<Node> = Api::all(client.clone());
    api.replace(&node.name_any(), &PostParams::default(), &updated)
        .await
        .map(|_| ())
}

impl Monitor {
    async fn pass(&mut self) {
        let now = Instant::now();
        let wall = Utc::now();
        let leases: HashMap<String, Option<DateTime<Utc>>> = self
            .leases
            .state()
            .into_iter()
            .filter(|l| l.namespace().as_deref() == Some(LEASE_NAMESPACE))
            .map(|l| {
                let renew = l
                    .spec
                    .as_ref()
                    .and_then(|s| s.renew_time.as_ref())
                    .map(|t| t.0);
                (l.name_any(), renew)
            })
            .collect();
        let mut nodes: Vec<Node> = self.nodes.state().iter().map(|n| (**n).clone()).collect();
        nodes.sort_by_key(|n| n.name_any());
        self.health
            .retain(|name, _| nodes.iter().any(|n| &n.name_any() == name));

        for node in nodes.iter_mut() {
            self.check_health(
                node,
                leases.get(&node.name_any()).copied().flatten(),
                now,
                wall,
            )
            .await;
        }

        // Zone states from what the nodes look like now.
        let mut zones: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate() {
            zones.entry(zone_key(node)).or_default().push(i);
        }
        let mut states = BTreeMap::new();
        for (zone, members) in &zones {
            let ready: Vec<bool> = members
                .iter()
                .map(|i| ready_status(&nodes[*i]) == "True")
                .collect();
            states.insert(
                zone.clone(),
                zone_state(&ready, self.config.unhealthy_zone_threshold),
            );
        }
        let all_fully_disrupted =
            !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
        self.limiters.retain(|zone, _| zones.contains_key(zone));
        for (zone, state) in &states {
            let size = zones[zone].len();
            let rate = if all_fully_disrupted {
                0.0
            } else {
                zone_rate(*state, size, &self.config)
            };
            match self.limiters.get_mut(zone) {
                Some((s, bucket)) if *s == *state && bucket.rate == rate => {}
                _ => {
                    if let Some((old, _)) = self.limiters.get(zone) {
                        tracing::info!(zone = %zone.replace('\0', ""), from = ?old, to = ?state, "zone state changed");
                    }
                    self.limiters
                        .insert(zone.clone(), (*state, TokenBucket::new(rate, now)));
                }
            }
        }

        let mut pods_by_node: Option<HashMap<String, Vec<Arc<Pod>>>> = None;
        for node in &nodes {
            let zone = zone_key(node);
            self.reconcile_no_execute(node, &zone, all_fully_disrupted, now, wall)
                .await;
            if ready_status(node) != "True" {
                let by_node = pods_by_node.get_or_insert_with(|| {
                    let mut map: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
                    for pod in self.pods.state() {
                        if let Some(n) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                            map.entry(n).or_default().push(pod);
                        }
                    }
                    map
                });
                let pods = by_node.remove(&node.name_any()).unwrap_or_default();
                self.mark_pods_not_ready(&pods, wall).await;
            }
        }
    }

    /// Marks the node Unknown if neither its Lease nor its Ready heartbeat moved within the grace
    /// period; `node` is updated in place to what was written.
    async fn check_health(
        &mut self,
        node: &mut Node,
        renew: Option<DateTime<Utc>>,
        now: Instant,
        wall: DateTime<Utc>,
    ) {
        let name = node.name_any();
        let heartbeat = condition(node, "Ready").and_then(|c| c.last_heartbeat_time.clone());
        let has_ready = condition(node, "Ready").is_some();
        let status = ready_status(node).to_owned();
        let health = self.health.entry(name.clone()).or_insert_with(|| Health {
            heartbeat: heartbeat.clone(),
            renew,
            probed: now,
            last_ready: status.clone(),
            not_ready_passes: 0,
        });
        if health.heartbeat != heartbeat || health.renew != renew {
            health.heartbeat = heartbeat;
            health.renew = renew;
            health.probed = now;
        }
        let grace = if has_ready {
            self.config.node_monitor_grace_period
        } else {
            self.config.node_startup_grace_period
        };
        if now.saturating_duration_since(health.probed) > grace {
            let mut updated = node.clone();
            let conditions = updated
                .status
                .get_or_insert_with(Default::default)
                .conditions
                .get_or_insert_with(Vec::new);
            if mark_conditions_unknown(conditions, wall) {
                let api: Api<Node> = Api::all(self.client.clone());
                let body = serde_json::to_vec(&updated).unwrap_or_default();
                match api
                    .replace_status(&name, &PostParams::default(), body)
                    .await
                {
                    Ok(written) => {
                        tracing::info!(node = %name, "kubelet stopped posting node status; marked Unknown");
                        *node = written;
                    }
                    Err(e) => {
                        tracing::debug!(node = %name, error = %e, "failed to mark node Unknown")
                    }
                }
            }
        }
        let status = ready_status(node).to_owned();
        let health = self.health.get_mut(&name).expect("inserted above");
        if status != "True" {
            health.not_ready_passes = health.not_ready_passes.saturating_add(1);
        } else {
            health.not_ready_passes = 0;
        }
        if health.last_ready == "True" && status != "True" {
            record_event(
                &self.client,
                COMPONENT,
                node_ref(&name),
                "Normal",
                "NodeNotReady",
                format!("Node {name} status is now: NodeNotReady"),
            )
            .await;
        }
        health.last_ready = status;
    }

    /// Puts on, swaps or takes off the unreachable/not-ready NoExecute taint.
    async fn reconcile_no_execute(
        &mut self,
        node: &Node,
        zone: &str,
        all_fully_disrupted: bool,
        now: Instant,
        wall: DateTime<Utc>,
    ) {
        if condition(node, "Ready").is_none() {
            // Never posted status and still within its startup grace period: leave it alone.
            return;
        }
        let name = node.name_any();
        let owned = [TAINT_UNREACHABLE, TAINT_NOT_READY];
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let has_any = current
            .iter()
            .any(|t| t.effect == NO_EXECUTE && owned.contains(&t.key.as_str()));
        let wanted = if all_fully_disrupted {
            // No mass eviction when every zone lost all its nodes at once: the fault is more
            // likely on our side (network, control plane) than on every node.
            None
        } else {
            no_execute_taint_key(ready_status(node))
        };
        let wanted: Vec<&str> = wanted.into_iter().collect();
        if !wanted.is_empty() && !has_any {
            // A new taint needs the node to be seen not ready twice in a row (so nodes failing
            // together are counted together by the zone state) and a token from its zone.
            let confirmed = self
                .health
                .get(&name)
                .is_some_and(|h| h.not_ready_passes >= 2);
            if !confirmed {
                return;
            }
            let Some((_, bucket)) = self.limiters.get_mut(zone) else {
                return;
            };
            if !bucket.try_acquire(now) {
                return;
            }
        }
        let Some(taints) = replace_taints(&current, NO_EXECUTE, &owned, &wanted, wall) else {
            return;
        };
        match update_taints(&self.client, node, taints).await {
            Ok(()) => tracing::info!(node = %name, taints = ?wanted, "updated NoExecute taints"),
            Err(e) => {
                tracing::debug!(node = %name, error = %e, "failed to update NoExecute taints")
            }
        }
    }

    /// Sets Ready=False on the pods of a node that is not ready, as upstream's MarkPodsNotReady.
    async fn mark_pods_not_ready(&self, pods: &[Arc<Pod>], wall: DateTime<Utc>) {
        for pod in pods {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            if ready.is_none_or(|c| c.status != "True") {
                continue;
            }
            let Some(ns) = pod.namespace() else { continue };
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let patch = serde_json::json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": Time(wall)}
            ]}});
            if let Err(e) = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(patch),
                )
                .await
            {
                tracing::debug!(pod = %pod.name_any(), error = %e, "failed to mark pod not ready");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["kube-controller-manager"];
        all.extend(args);
        crate::Options::try_parse_from(all)
            .expect("flags parse")
            .into_config()
            .expect("valid")
    }

    #[test]
    fn flag_defaults_match_upstream_v1_33() {
        let c = config(&[]);
        assert_eq!(c.node_monitor_grace_period, Duration::from_secs(50));
        assert_eq!(c.node_monitor_period, Duration::from_secs(5));
        assert_eq!(c.node_startup_grace_period, Duration::from_secs(60));
        assert_eq!(
            (c.node_eviction_rate, c.secondary_node_eviction_rate),
            (0.1, 0.01)
        );
        assert_eq!(c.unhealthy_zone_threshold, 0.55);
        assert_eq!(c.large_cluster_size_threshold, 50);
    }

    #[test]
    fn zone_state_follows_upstream_thresholds() {
        let cases: [(&str, &[bool], ZoneState); 6] = [
            ("all ready", &[true, true, true], ZoneState::Normal),
            ("one of three down", &[true, true, false], ZoneState::Normal),
            ("all down", &[false, false], ZoneState::FullDisruption),
            (
                "two of three down is not enough (needs more than 2)",
                &[true, false, false],
                ZoneState::Normal,
            ),
            (
                "three of four down",
                &[true, false, false, false],
                ZoneState::PartialDisruption,
            ),
            (
                "three of six is under 0.55",
                &[true, true, true, false, false, false],
                ZoneState::Normal,
            ),
        ];
        for (name, ready, want) in cases {
            assert_eq!(zone_state(ready, 0.55), want, "{name}");
        }
    }

    #[test]
    fn partial_disruption_slows_only_large_zones() {
        let c = config(&[]);
        assert_eq!(zone_rate(ZoneState::Normal, 3, &c), 0.1);
        assert_eq!(zone_rate(ZoneState::FullDisruption, 3, &c), 0.1);
        assert_eq!(zone_rate(ZoneState::PartialDisruption, 50, &c), 0.0);
        assert_eq!(zone_rate(ZoneState::PartialDisruption, 51, &c), 0.01);
    }

    #[test]
    fn token_bucket_allows_one_then_paces() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.5, t0);
        assert!(b.try_acquire(t0));
        assert!(!b.try_acquire(t0 + Duration::from_secs(1)));
        assert!(b.try_acquire(t0 + Duration::from_secs(2)));
        let mut zero = TokenBucket::new(0.0, t0);
        assert!(!zero.try_acquire(t0));
    }

    #[test]
    fn silent_kubelet_turns_conditions_unknown_once() {
        let now = Utc::now();
        let mut conditions = vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..NodeCondition::default()
        }];
        assert!(mark_conditions_unknown(&mut conditions, now));
        let ready = conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        let mem = conditions
            .iter()
            .find(|c| c.type_ == "MemoryPressure")
            .expect("added");
        assert_eq!(mem.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert!(!mark_conditions_unknown(&mut conditions, now));
    }

    #[test]
    fn taints_are_swapped_keeping_foreign_ones_and_time_added() {
        let now = Utc::now();
        let foreign = Taint {
            key: "example.com/x".into(),
            value: None,
            effect: NO_EXECUTE.into(),
            time_added: None,
        };
        let owned = [TAINT_UNREACHABLE, TAINT_NOT_READY];
        let added = replace_taints(
            std::slice::from_ref(&foreign),
            NO_EXECUTE,
            &owned,
            &[TAINT_UNREACHABLE],
            now,
        )
        .expect("changed");
        assert_eq!(added.len(), 2);
        assert_eq!(added[1].key, TAINT_UNREACHABLE);
        assert_eq!(added[1].time_added, Some(Time(now)));
        assert!(replace_taints(&added, NO_EXECUTE, &owned, &[TAINT_UNREACHABLE], now).is_none());
        let removed = replace_taints(&added, NO_EXECUTE, &owned, &[], now).expect("changed");
        assert_eq!(removed, vec![foreign]);
    }

    #[test]
    fn condition_taints_follow_conditions_and_cordon() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "spec": {"unschedulable": true},
            "status": {"conditions": [
                {"type": "Ready", "status": "Unknown"},
                {"type": "DiskPressure", "status": "True"},
                {"type": "MemoryPressure", "status": "False"},
            ]},
        }))
        .expect("node");
        assert_eq!(
            condition_taint_keys(&node),
            vec![TAINT_DISK_PRESSURE, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE]
        );
        assert_eq!(no_execute_taint_key("Unknown"), Some(TAINT_UNREACHABLE));
        assert_eq!(no_execute_taint_key("False"), Some(TAINT_NOT_READY));
        assert_eq!(no_execute_taint_key("True"), None);
    }
}
