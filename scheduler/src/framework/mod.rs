//! The scheduling framework: status codes, cycle state, node snapshots and the extension points.

pub mod parallel;
pub mod resource;
pub mod runtime;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod};

pub use resource::Resource;
pub use runtime::Framework;

/// The highest score a Score plugin may give (after normalization).
pub const MAX_NODE_SCORE: i64 = 100;
/// The lowest score.
pub const MIN_NODE_SCORE: i64 = 0;

/// The outcome class of a plugin call, as upstream's `framework.Code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Code {
    /// The plugin is fine with the pod (or node).
    Success,
    /// An internal error; the pod is retried with backoff.
    Error,
    /// The pod does not fit, but preemption might help.
    Unschedulable,
    /// The pod does not fit and preemption cannot help.
    UnschedulableAndUnresolvable,
    /// A Permit plugin wants the pod to wait.
    Wait,
    /// The plugin has nothing to do for this pod (PreFilter/PreScore); its later points are skipped.
    Skip,
}

/// A plugin's verdict: a code, human-readable reasons and which plugin said it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// The outcome.
    pub code: Code,
    /// Reasons shown to users (`Insufficient cpu`, ...).
    pub reasons: Vec<String>,
    /// The plugin that returned this status, filled by the framework.
    pub plugin: Option<&'static str>,
}

impl Default for Status {
    fn default() -> Self {
        Self::success()
    }
}

impl Status {
    /// A success.
    pub fn success() -> Self {
        Self {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: None,
        }
    }

    /// A status with `code` and one reason.
    pub fn new(code: Code, reason: impl Into<String>) -> Self {
        Self {
            code,
            reasons: vec![reason.into()],
            plugin: None,
        }
    }

    /// `Unschedulable` with one reason.
    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Self::new(Code::Unschedulable, reason)
    }

    /// `UnschedulableAndUnresolvable` with one reason.
    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Self::new(Code::UnschedulableAndUnresolvable, reason)
    }

    /// `Error` with one reason.
    pub fn error(reason: impl Into<String>) -> Self {
        Self::new(Code::Error, reason)
    }

    /// `Skip`.
    pub fn skip() -> Self {
        Self {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin: None,
        }
    }

    /// Whether the code is `Success`.
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Whether the code is one of the two unschedulable codes.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }

    /// Sets the plugin name.
    pub fn with_plugin(mut self, plugin: &'static str) -> Self {
        self.plugin = Some(plugin);
        self
    }

    /// The reasons joined with `, `.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message())
    }
}

/// Per-cycle scratch space where PreFilter/PreScore plugins leave data for Filter/Score.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
    /// Plugins whose PreFilter returned Skip; their Filter is not called.
    pub skip_filter: std::collections::HashSet<&'static str>,
    /// Plugins whose PreScore returned Skip; their Score is not called.
    pub skip_score: std::collections::HashSet<&'static str>,
}

impl CycleState {
    /// Stores `value` under `key`, replacing what was there.
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    /// The value under `key` if it has type `T`.
    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|v| v.downcast_ref::<T>())
    }
}

/// A host port a pod uses: protocol, host IP (`0.0.0.0` when unset) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The host IP; `0.0.0.0` means every address.
    pub ip: String,
    /// The port number.
    pub port: i32,
}

/// What the scheduler knows about one node: the Node object, the pods on it (bound or assumed),
/// their summed requests and the host ports and images in use.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The node.
    pub node: Arc<Node>,
    /// Pods assigned to it, including assumed ones.
    pub pods: Vec<Arc<Pod>>,
    /// Sum of the pods' effective requests.
    pub requested: Resource,
    /// Like `requested` with upstream's defaults (100m cpu, 200Mi memory) for unset requests.
    pub non_zero_requested: Resource,
    /// The node's allocatable resources.
    pub allocatable: Resource,
    /// Host ports in use.
    pub used_ports: Vec<HostPort>,
    /// Image name (as in pod specs, normalized) -> size in bytes; shared between copies.
    pub image_sizes: Arc<BTreeMap<String, i64>>,
    /// The pods with any pod affinity or anti-affinity, as upstream's `PodsWithAffinity`, so
    /// InterPodAffinity need not look at every pod.
    pub pods_with_affinity: Vec<Arc<Pod>>,
    /// The pods with required anti-affinity (upstream's `PodsWithRequiredAntiAffinity`).
    pub pods_with_required_anti_affinity: Vec<Arc<Pod>>,
    /// Pods that are not terminating, grouped by namespace and identical labels: pods of one
    /// workload share their labels, so counting the pods a selector matches (topology
    /// spreading, once per node per cycle) looks at a few groups instead of every pod.
    pub label_groups: Vec<LabelGroup>,
}

/// Non-terminating pods of one namespace with identical labels on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelGroup {
    /// The pods' namespace.
    pub namespace: Option<String>,
    /// Their labels.
    pub labels: BTreeMap<String, String>,
    /// How many.
    pub count: usize,
}

fn label_group_of(pod: &Pod) -> Option<(&Option<String>, BTreeMap<String, String>)> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    Some((
        &pod.metadata.namespace,
        pod.metadata.labels.clone().unwrap_or_default(),
    ))
}

fn has_pod_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

fn has_required_anti_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|t| !t.is_empty())
}

impl NodeInfo {
    /// A NodeInfo for `node` with no pods.
    pub fn new(node: Arc<Node>) -> Self {
        let allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(Resource::from_list)
            .unwrap_or_default();
        let mut image_sizes = BTreeMap::new();
        for image in node
            .status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
        {
            for name in image.names.iter().flatten() {
                image_sizes.insert(normalize_image(name), image.size_bytes.unwrap_or_default());
            }
        }
        Self {
            node,
            pods: Vec::new(),
            requested: Resource::default(),
            non_zero_requested: Resource::default(),
            allocatable,
            used_ports: Vec::new(),
            image_sizes: Arc::new(image_sizes),
            pods_with_affinity: Vec::new(),
            pods_with_required_anti_affinity: Vec::new(),
            label_groups: Vec::new(),
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    /// The node's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    /// Adds a pod and its requests and ports.
    pub fn add_pod(&mut self, pod: Arc<Pod>) {
        let (req, non_zero) = resource::pod_requests(&pod);
        self.requested.add(&req);
        self.requested.allowed_pod_number += 1;
        self.non_zero_requested.add(&non_zero);
        self.non_zero_requested.allowed_pod_number += 1;
        self.used_ports.extend(host_ports(&pod));
        if has_pod_affinity(&pod) {
            self.pods_with_affinity.push(pod.clone());
        }
        if has_required_anti_affinity(&pod) {
            self.pods_with_required_anti_affinity.push(pod.clone());
        }
        if let Some((ns, labels)) = label_group_of(&pod) {
            match self
                .label_groups
                .iter_mut()
                .find(|g| g.namespace == *ns && g.labels == labels)
            {
                Some(g) => g.count += 1,
                None => self.label_groups.push(LabelGroup {
                    namespace: ns.clone(),
                    labels,
                    count: 1,
                }),
            }
        }
        self.pods.push(pod);
    }

    /// Removes the pod with `key` (`namespace/name`); returns whether it was there.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(idx) = self.pods.iter().position(|p| pod_key(p) == key) else {
            return false;
        };
        let pod = self.pods.swap_remove(idx);
        self.pods_with_affinity.retain(|p| !Arc::ptr_eq(p, &pod));
        self.pods_with_required_anti_affinity
            .retain(|p| !Arc::ptr_eq(p, &pod));
        if let Some((ns, labels)) = label_group_of(&pod) {
            if let Some(i) = self
                .label_groups
                .iter()
                .position(|g| g.namespace == *ns && g.labels == labels)
            {
                self.label_groups[i].count -= 1;
                if self.label_groups[i].count == 0 {
                    self.label_groups.swap_remove(i);
                }
            }
        }
        let (req, non_zero) = resource::pod_requests(&pod);
        self.requested.sub(&req);
        self.requested.allowed_pod_number -= 1;
        self.non_zero_requested.sub(&non_zero);
        self.non_zero_requested.allowed_pod_number -= 1;
        for port in host_ports(&pod) {
            if let Some(i) = self.used_ports.iter().position(|p| *p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        true
    }
}

/// `namespace/name` of a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The host ports a pod's containers ask for.
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            Some(HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".to_string()),
                port,
            })
        })
        .collect()
}

/// Adds the default registry and `:latest` tag as the container runtime would.
pub fn normalize_image(name: &str) -> String {
    let mut name = name.to_string();
    let last = name.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') && !name.contains('@') {
        name.push_str(":latest");
    }
    let first = name.split('/').next().unwrap_or_default();
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !has_registry {
        if name.contains('/') {
            name = format!("docker.io/{name}");
        } else {
            name = format!("docker.io/library/{name}");
        }
    }
    name
}

/// The set of nodes a cycle works on; taken from the cache at the start of each cycle.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every node, in a stable order.
    pub nodes: Vec<Arc<NodeInfo>>,
}

impl Snapshot {
    /// The node named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.nodes.iter().find(|n| n.name() == name)
    }
}

/// Node name -> the status the filters gave it.
pub type NodeStatusMap = BTreeMap<String, Status>;

/// The base of every plugin, with a way to reach each extension point it implements.
pub trait Plugin: Send + Sync {
    /// The plugin's name as in KubeSchedulerConfiguration.
    fn name(&self) -> &'static str;
    /// This plugin as a PreEnqueue plugin, if it is one.
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        None
    }
    /// This plugin as a QueueSort plugin, if it is one.
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        None
    }
    /// This plugin as a PreFilter plugin, if it is one.
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        None
    }
    /// This plugin as a Filter plugin, if it is one.
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        None
    }
    /// This plugin as a PostFilter plugin, if it is one.
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        None
    }
    /// This plugin as a PreScore plugin, if it is one.
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        None
    }
    /// This plugin as a Score plugin, if it is one.
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        None
    }
    /// This plugin as a Reserve plugin, if it is one.
    fn as_reserve(&self) -> Option<&dyn ReservePlugin> {
        None
    }
    /// This plugin as a PreBind plugin, if it is one.
    fn as_pre_bind(&self) -> Option<&dyn PreBindPlugin> {
        None
    }
    /// This plugin as a Bind plugin, if it is one.
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        None
    }
}

/// Decides whether a pod may enter the active queue at all (e.g. scheduling gates).
pub trait PreEnqueuePlugin: Plugin {
    /// Success lets the pod in; anything else parks it until it changes.
    fn pre_enqueue(&self, pod: &Pod) -> Status;
}

/// What the queue orders pods by: smaller keys pop first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueSortKey(pub std::cmp::Reverse<i32>, pub std::time::Instant);

/// Orders the active queue.
pub trait QueueSortPlugin: Plugin {
    /// The ordering key of a pod that entered the queue at `timestamp`.
    fn sort_key(&self, pod: &Pod, timestamp: std::time::Instant) -> QueueSortKey;
    /// Whether `a` pops before `b`.
    fn less(
        &self,
        a: &Pod,
        a_time: std::time::Instant,
        b: &Pod,
        b_time: std::time::Instant,
    ) -> bool {
        self.sort_key(a, a_time) < self.sort_key(b, b_time)
    }
}

/// Runs once per cycle before the filters; precomputes state or rejects the pod outright.
pub trait PreFilterPlugin: Plugin {
    /// Unschedulable rejects the pod for every node; Skip skips this plugin's Filter.
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status;
}

/// Whether a pod fits one node; pure over the snapshot.
pub trait FilterPlugin: Plugin {
    /// Success when the pod fits `node`.
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status;
}

/// The result of a PostFilter plugin: maybe a node nominated for the pod.
#[derive(Clone, Debug, Default)]
pub struct PostFilterResult {
    /// The node the pod should go to once victims are gone.
    pub nominated_node_name: Option<String>,
}

/// Runs when no node fits (preemption).
pub trait PostFilterPlugin: Plugin {
    /// Tries to make room; the status message is appended to the pod's FitError message.
    fn post_filter<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a Pod,
        statuses: &'a NodeStatusMap,
        snapshot: &'a Snapshot,
        framework: &'a Framework,
    ) -> BoxFuture<'a, (PostFilterResult, Status)>;
}

/// Runs once per cycle before scoring, over the feasible nodes.
pub trait PreScorePlugin: Plugin {
    /// Skip skips this plugin's Score.
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status;
}

/// Ranks feasible nodes.
pub trait ScorePlugin: Plugin {
    /// The raw score of `node`.
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<i64, Status>;
    /// Scales the raw scores (same order as the nodes) into 0..=100; the default keeps them.
    fn normalize(&self, _state: &CycleState, _pod: &Pod, _scores: &mut [i64]) -> Status {
        Status::success()
    }
}

/// Reserves (and releases) resources for a pod on its chosen node before binding.
pub trait ReservePlugin: Plugin {
    /// Reserves; a failure aborts the cycle.
    fn reserve(&self, state: &CycleState, pod: &Pod, node: &str) -> Status;
    /// Undoes `reserve`.
    fn unreserve(&self, state: &CycleState, pod: &Pod, node: &str);
}

/// Prepares the binding in the binding cycle, after Reserve and before Bind (e.g. binding the
/// pod's volumes); async because it may write to and wait on the apiserver.
pub trait PreBindPlugin: Plugin {
    /// A non-success status sends the pod back to the queue (its Reserve plugins are undone).
    fn pre_bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a Pod,
        node: &'a str,
    ) -> BoxFuture<'a, Status>;
}

/// Binds a pod to a node through the apiserver.
pub trait BindPlugin: Plugin {
    /// Skip hands the pod to the next Bind plugin.
    fn bind<'a>(&'a self, pod: &'a Pod, node: &'a str) -> BoxFuture<'a, Status>;
}

/// Sorts scores and reasons into the normalized 0..=100 range by scaling the maximum to 100;
/// `reverse` turns high raw values into low scores (as upstream's DefaultNormalizeScore).
pub fn default_normalize_score(max_priority: i64, reverse: bool, scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max_priority);
        }
        return;
    }
    for s in scores.iter_mut() {
        let mut v = max_priority * *s / max;
        if reverse {
            v = max_priority - v;
        }
        *s = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::helpers::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn label_groups_and_affinity_lists_follow_adds_and_removes() {
        let mut ni = NodeInfo::new(Arc::new(node("n", "4", "8Gi", json!({}), json!([]))));
        let web = |n: &str| Arc::new(pod(n, json!({"app": "web"}), json!({})));
        let anti = Arc::new(pod(
            "anti",
            json!({"app": "db"}),
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname",
                 "labelSelector": {"matchLabels": {"app": "db"}}}]}}}),
        ));
        let mut gone = pod("gone", json!({"app": "web"}), json!({}));
        gone.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        for p in [web("a"), web("b"), anti.clone(), Arc::new(gone)] {
            ni.add_pod(p);
        }
        let counts: Vec<usize> = ni.label_groups.iter().map(|g| g.count).collect();
        assert_eq!(counts, vec![2, 1], "terminating pods are not grouped");
        assert_eq!(ni.pods_with_affinity.len(), 1);
        assert_eq!(ni.pods_with_required_anti_affinity.len(), 1);
        assert!(ni.remove_pod("default/anti"));
        assert!(ni.remove_pod("default/a"));
        assert_eq!(ni.label_groups.len(), 1);
        assert_eq!(ni.label_groups[0].count, 1);
        assert!(ni.pods_with_affinity.is_empty());
        assert!(ni.pods_with_required_anti_affinity.is_empty());
    }
}
