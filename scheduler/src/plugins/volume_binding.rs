//! VolumeBinding: a pod's PersistentVolumeClaims must exist and be usable, bound volumes' node
//! affinity must match the node, and WaitForFirstConsumer claims need an available matching
//! volume on the node (or a class whose provisioner can serve the node). Reserve assumes the
//! chosen volumes so no other pod takes them; PreBind writes the volumes' claimRefs (and the
//! selected node on claims to provision) and waits until the PersistentVolume controller has
//! bound every claim; Unreserve forgets the assumptions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use kube::api::{Api, ObjectMeta, PostParams};

use super::helpers::{label_selector_matches, node_selector_term_matches};
use crate::framework::resource::parse_value;
use crate::framework::{
    pod_key, CycleState, FilterPlugin, NodeInfo, Plugin, PreBindPlugin, PreFilterPlugin,
    ReservePlugin, Snapshot, Status,
};
use crate::volumes::VolumeStore;

/// The plugin's name.
pub const NAME: &str = "VolumeBinding";
/// Bound volumes whose node affinity rejects the node.
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// No available volume for a WaitForFirstConsumer claim on the node.
pub const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
/// A bound claim's volume does not exist.
pub const REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// PreFilter's rejection for unbound Immediate claims.
pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

const STATE_KEY: &str = NAME;
const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const ANN_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// The provisioner of classes whose volumes are only ever created by hand.
const NOT_SUPPORTED_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// How often PreBind looks at the caches while waiting for the bindings.
const BIND_POLL: Duration = Duration::from_secs(1);

/// `VolumeBindingArgs` of the scheduler configuration.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeBindingArgs {
    /// How long PreBind waits for the claims to be bound (upstream default 600).
    pub bind_timeout_seconds: i64,
}

impl Default for VolumeBindingArgs {
    fn default() -> Self {
        Self {
            bind_timeout_seconds: 600,
        }
    }
}

/// The volumes a pod gets on its node: claims bound to chosen volumes, claims to provision.
#[derive(Clone, Default)]
struct PodVolumes {
    /// (volume, claim) pairs whose claimRef PreBind writes.
    bindings: Vec<(Arc<PersistentVolume>, Arc<PersistentVolumeClaim>)>,
    /// Claims PreBind marks with the selected node for a provisioner.
    provisions: Vec<Arc<PersistentVolumeClaim>>,
    /// The node's labels, for the provisioned volumes' node affinity.
    node: Option<Arc<Node>>,
}

/// The PreFilter, Filter, Reserve and PreBind plugin.
pub struct VolumeBinding {
    store: Arc<VolumeStore>,
    client: Option<kube::Client>,
    bind_timeout: Duration,
    /// What Reserve chose, per pod key, for PreBind.
    reserved: Mutex<HashMap<String, PodVolumes>>,
}

impl VolumeBinding {
    /// The plugin over the scheduler's volume caches, without an apiserver (unit tests).
    pub fn new(store: Arc<VolumeStore>) -> Self {
        Self {
            store,
            client: None,
            bind_timeout: Duration::from_secs(600),
            reserved: Mutex::new(HashMap::new()),
        }
    }

    /// The plugin with its args, writing bindings through `client`.
    pub fn with_args(
        store: Arc<VolumeStore>,
        client: Option<kube::Client>,
        args: VolumeBindingArgs,
    ) -> Result<Self, String> {
        if args.bind_timeout_seconds < 0 {
            return Err(format!(
                "bindTimeoutSeconds: Invalid value: {}: invalid BindTimeoutSeconds, should not \
                 be a negative value",
                args.bind_timeout_seconds
            ));
        }
        Ok(Self {
            client,
            bind_timeout: Duration::from_secs(args.bind_timeout_seconds.unsigned_abs()),
            ..Self::new(store)
        })
    }

    fn reserved(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodVolumes>> {
        self.reserved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What PreFilter found, so that Filter works on one consistent view.
#[derive(Default)]
struct StateData {
    /// Bound claims: claim name and its volume (None: the volume does not exist).
    bound: Vec<(String, Option<Arc<PersistentVolume>>)>,
    /// Unbound WaitForFirstConsumer claims, smallest request first.
    delayed: Vec<Arc<PersistentVolumeClaim>>,
    /// Every volume, when there are delayed claims.
    volumes: Vec<Arc<PersistentVolume>>,
    /// The cycle's nodes, when there are delayed claims (Reserve sees only the node's name).
    nodes: Vec<Arc<NodeInfo>>,
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_reserve(&self) -> Option<&dyn ReservePlugin> {
        Some(self)
    }
    fn as_pre_bind(&self) -> Option<&dyn PreBindPlugin> {
        Some(self)
    }
}

/// The claim class: the beta annotation, else `spec.storageClassName`.
fn claim_class(c: &PersistentVolumeClaim) -> String {
    annotation(&c.metadata, ANN_STORAGE_CLASS)
        .or_else(|| c.spec.as_ref().and_then(|s| s.storage_class_name.clone()))
        .unwrap_or_default()
}

fn volume_class(v: &PersistentVolume) -> String {
    annotation(&v.metadata, ANN_STORAGE_CLASS)
        .or_else(|| v.spec.as_ref().and_then(|s| s.storage_class_name.clone()))
        .unwrap_or_default()
}

fn annotation(meta: &ObjectMeta, key: &str) -> Option<String> {
    meta.annotations.as_ref().and_then(|a| a.get(key)).cloned()
}

fn request_of(c: &PersistentVolumeClaim) -> i64 {
    c.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| parse_value(&q.0))
        .unwrap_or(0)
}

fn capacity_of(v: &PersistentVolume) -> i64 {
    v.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| parse_value(&q.0))
        .unwrap_or(0)
}

/// Whether the claim's class binds on first consumer; errors as upstream's IsDelayBindingMode.
fn is_delay_binding(c: &PersistentVolumeClaim, store: &VolumeStore) -> Result<bool, String> {
    let class = claim_class(c);
    if class.is_empty() {
        return Ok(false);
    }
    let Some(sc) = store.class(&class) else {
        return Ok(false);
    };
    match sc.volume_binding_mode.as_deref() {
        None => Err(format!(
            "VolumeBindingMode not set for StorageClass {class:?}"
        )),
        Some(mode) => Ok(mode == "WaitForFirstConsumer"),
    }
}

/// Whether the volume's required node affinity admits a node with these labels (upstream
/// checks labels only).
fn volume_fits_node(v: &PersistentVolume, labels: &Node) -> bool {
    let Some(required) = v
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|t| node_selector_term_matches(labels, t))
}

fn bound_to(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name == c.metadata.name
        && r.namespace == c.metadata.namespace
        && (r.uid.as_deref().unwrap_or_default().is_empty() || r.uid == c.metadata.uid)
}

fn access_modes_ok(c: &PersistentVolumeClaim, v: &PersistentVolume) -> bool {
    let have: HashSet<&str> = v
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_ref())
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    c.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_ref())
        .into_iter()
        .flatten()
        .all(|m| have.contains(m.as_str()))
}

fn volume_mode_mismatch(c: &PersistentVolumeClaim, v: &PersistentVolume) -> bool {
    let cm = c.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let vm = v.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    cm.unwrap_or("Filesystem") != vm.unwrap_or("Filesystem")
}

/// Upstream's FindMatchingVolume on the scheduler path: a volume pre-bound to the claim, else
/// the smallest Available one of the claim's class that fits the request, selector, access
/// modes and node.
fn find_matching_volume(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    node: &Node,
    excluded: &HashSet<String>,
) -> Option<Arc<PersistentVolume>> {
    let requested = request_of(claim);
    let class = claim_class(claim);
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let empty = BTreeMap::new();
    let mut best: Option<(i64, &Arc<PersistentVolume>)> = None;
    for v in volumes {
        let name = v.metadata.name.clone().unwrap_or_default();
        if excluded.contains(&name) {
            continue;
        }
        let claimed = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some();
        if claimed && !bound_to(v, claim) {
            continue;
        }
        let capacity = capacity_of(v);
        if capacity < requested
            || volume_mode_mismatch(claim, v)
            || v.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let fits = volume_fits_node(v, node);
        if bound_to(v, claim) {
            return fits.then(|| v.clone());
        }
        if v.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Available") {
            continue;
        }
        if selector.is_some_and(|s| {
            !label_selector_matches(s, v.metadata.labels.as_ref().unwrap_or(&empty))
        }) {
            continue;
        }
        if volume_class(v) != class || !fits || !access_modes_ok(claim, v) {
            continue;
        }
        if best.is_none_or(|(q, _)| q > capacity) {
            best = Some((capacity, v));
        }
    }
    best.map(|(_, v)| v.clone())
}

/// The claims of `pod`'s volumes: `(claim name, ephemeral)`.
fn claim_names(pod: &Pod) -> Vec<(String, bool)> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            if let Some(c) = v.persistent_volume_claim.as_ref() {
                Some((c.claim_name.clone(), false))
            } else if v.ephemeral.is_some() {
                Some((format!("{pod_name}-{}", v.name), true))
            } else {
                None
            }
        })
        .collect()
}

impl VolumeBinding {
    /// Upstream's podHasPVCs and GetPodVolumeClaims: `Ok(None)` when the pod uses no claims.
    fn pod_claims(&self, pod: &Pod) -> Result<Option<StateData>, Status> {
        let names = claim_names(pod);
        if names.is_empty() {
            return Ok(None);
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        let mut claims = Vec::new();
        for (name, ephemeral) in &names {
            let Some(pvc) = self.store.claim(ns, name) else {
                return Err(Status::unresolvable(if *ephemeral {
                    format!(
                        "waiting for ephemeral volume controller to create the \
                         persistentvolumeclaim {name:?}"
                    )
                } else {
                    format!("persistentvolumeclaim {name:?} not found")
                }));
            };
            let volume_name = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .unwrap_or_default();
            if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
                return Err(Status::unresolvable(format!(
                    "persistentvolumeclaim {name:?} bound to non-existent persistentvolume \
                     {volume_name:?}"
                )));
            }
            if pvc.metadata.deletion_timestamp.is_some() {
                return Err(Status::unresolvable(format!(
                    "persistentvolumeclaim {name:?} is being deleted"
                )));
            }
            if *ephemeral {
                let owned = pvc.metadata.owner_references.iter().flatten().any(|r| {
                    r.controller == Some(true) && Some(&r.uid) == pod.metadata.uid.as_ref()
                });
                if !owned {
                    return Err(Status::unresolvable(format!(
                        "PVC {ns}/{name} was not created for pod {ns}/{pod_name} (pod is not owner)"
                    )));
                }
            }
            claims.push((name.clone(), pvc, volume_name));
        }
        let mut data = StateData::default();
        let mut immediate = false;
        for (name, pvc, volume_name) in claims {
            let bound = !volume_name.is_empty()
                && pvc
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(ANN_BIND_COMPLETED));
            if bound {
                data.bound.push((name, self.store.volume(&volume_name)));
                continue;
            }
            let delay = is_delay_binding(&pvc, &self.store).map_err(Status::error)?;
            if delay && volume_name.is_empty() {
                data.delayed.push(pvc);
            } else {
                // Pre-bound claims count as unbound immediate ones, as upstream.
                immediate = true;
            }
        }
        if immediate {
            return Err(Status::unresolvable(REASON_UNBOUND_IMMEDIATE));
        }
        if !data.delayed.is_empty() {
            data.delayed.sort_by_key(|c| request_of(c));
            data.volumes = self.store.volumes();
        }
        Ok(Some(data))
    }

    /// Upstream's FindPodVolumes for the delayed claims on one node: each claim already given
    /// to this node by the scheduler is provisioned; the others take the smallest matching
    /// volume (never one twice), else are provisioned if their class can serve the node.
    fn pod_volumes(
        &self,
        delayed: &[Arc<PersistentVolumeClaim>],
        volumes: &[Arc<PersistentVolume>],
        node: &Node,
        node_name: &str,
    ) -> Option<PodVolumes> {
        let mut out = PodVolumes::default();
        let mut chosen = HashSet::new();
        for claim in delayed {
            if let Some(selected) = annotation(&claim.metadata, ANN_SELECTED_NODE) {
                if selected != node_name || !self.can_provision(claim, node) {
                    return None;
                }
                out.provisions.push(claim.clone());
                continue;
            }
            match find_matching_volume(claim, volumes, node, &chosen) {
                Some(pv) => {
                    chosen.insert(pv.metadata.name.clone().unwrap_or_default());
                    out.bindings.push((pv, claim.clone()));
                }
                None if self.can_provision(claim, node) => out.provisions.push(claim.clone()),
                None => return None,
            }
        }
        Some(out)
    }

    /// Upstream's checkVolumeProvisions for one claim: its class has a real provisioner whose
    /// allowed topologies include the node.
    fn can_provision(&self, claim: &PersistentVolumeClaim, node: &Node) -> bool {
        let Some(class) = self.store.class(&claim_class(claim)) else {
            return false;
        };
        if class.provisioner.is_empty() || class.provisioner == NOT_SUPPORTED_PROVISIONER {
            return false;
        }
        let empty = BTreeMap::new();
        let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
        let terms = class.allowed_topologies.as_deref().unwrap_or_default();
        terms.is_empty()
            || terms.iter().any(|t| {
                t.match_label_expressions
                    .iter()
                    .flatten()
                    .all(|r| labels.get(&r.key).is_some_and(|v| r.values.contains(v)))
            })
    }

    /// Upstream's BindPodVolumes: write the claimRefs and selected nodes, then wait until the
    /// PersistentVolume controller has bound every claim.
    async fn bind_pod_volumes(&self, node: &str, chosen: &PodVolumes) -> Result<(), String> {
        let client = self
            .client
            .clone()
            .ok_or_else(|| "no apiserver client".to_string())?;
        let mut written: HashMap<String, String> = HashMap::new();
        for (pv, claim) in &chosen.bindings {
            let name = pv.metadata.name.clone().unwrap_or_default();
            let current = self.store.volume(&name).unwrap_or_else(|| pv.clone());
            let claim_now = self
                .store
                .claim(
                    claim.metadata.namespace.as_deref().unwrap_or_default(),
                    claim.metadata.name.as_deref().unwrap_or_default(),
                )
                .unwrap_or_else(|| claim.clone());
            if bound_to(&current, &claim_now)
                && current
                    .spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .is_some_and(|r| r.uid == claim_now.metadata.uid)
            {
                continue;
            }
            let mut next = current.as_ref().clone();
            if !bound_to(&current, &claim_now) {
                next.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(ANN_BOUND_BY_CONTROLLER.to_string(), "yes".to_string());
            }
            next.spec.get_or_insert_with(Default::default).claim_ref =
                Some(claim_ref_to(&claim_now));
            let api: Api<PersistentVolume> = Api::all(client.clone());
            let updated = api
                .replace(&name, &PostParams::default(), &next)
                .await
                .map_err(|e| api_message(&e))?;
            written.insert(
                format!("pv/{name}"),
                updated.metadata.resource_version.unwrap_or_default(),
            );
        }
        for claim in &chosen.provisions {
            let ns = claim.metadata.namespace.clone().unwrap_or_default();
            let name = claim.metadata.name.clone().unwrap_or_default();
            let current = self
                .store
                .claim(&ns, &name)
                .unwrap_or_else(|| claim.clone());
            if annotation(&current.metadata, ANN_SELECTED_NODE).as_deref() == Some(node) {
                continue;
            }
            let mut next = current.as_ref().clone();
            next.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(ANN_SELECTED_NODE.to_string(), node.to_string());
            let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
            let updated = api
                .replace(&name, &PostParams::default(), &next)
                .await
                .map_err(|e| api_message(&e))?;
            written.insert(
                format!("pvc/{ns}/{name}"),
                updated.metadata.resource_version.unwrap_or_default(),
            );
        }
        let deadline = Instant::now() + self.bind_timeout;
        loop {
            match self.check_bindings(node, chosen, &written) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(format!("binding volumes: {e}")),
            }
            if Instant::now() >= deadline {
                return Err("binding volumes: context deadline exceeded".into());
            }
            tokio::time::sleep(BIND_POLL.min(deadline.saturating_duration_since(Instant::now())))
                .await;
        }
    }

    /// Upstream's checkBindings over the informer caches: `Ok(false)` while the controller (or a
    /// provisioner) is still working, an error when the binding was undone.
    fn check_bindings(
        &self,
        node: &str,
        chosen: &PodVolumes,
        written: &HashMap<String, String>,
    ) -> Result<bool, String> {
        let older = |key: &str, rv: Option<&String>| {
            let want = written.get(key).and_then(|w| w.parse::<u64>().ok());
            let have = rv.and_then(|r| r.parse::<u64>().ok());
            matches!((want, have), (Some(w), Some(h)) if h < w)
        };
        for (pv, claim) in &chosen.bindings {
            let name = pv.metadata.name.clone().unwrap_or_default();
            let ns = claim.metadata.namespace.clone().unwrap_or_default();
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            let Some(pv) = self.store.volume(&name) else {
                return Err(format!(
                    "failed to check binding: persistentvolume {name:?} not found"
                ));
            };
            let Some(pvc) = self.store.claim(&ns, &claim_name) else {
                return Err(format!(
                    "failed to check binding: persistentvolumeclaim \"{ns}/{claim_name}\" not found"
                ));
            };
            if older(&format!("pv/{name}"), pv.metadata.resource_version.as_ref()) {
                return Ok(false);
            }
            let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
            if claim_ref.is_none_or(|r| r.uid.as_deref().unwrap_or_default().is_empty()) {
                return Err(format!("ClaimRef got reset for pv {name:?}"));
            }
            if !fully_bound(&pvc) {
                return Ok(false);
            }
        }
        for claim in &chosen.provisions {
            let ns = claim.metadata.namespace.clone().unwrap_or_default();
            let name = claim.metadata.name.clone().unwrap_or_default();
            let Some(pvc) = self.store.claim(&ns, &name) else {
                return Err(format!(
                    "failed to check provisioning pvc: persistentvolumeclaim \"{ns}/{name}\" not found"
                ));
            };
            if older(
                &format!("pvc/{ns}/{name}"),
                pvc.metadata.resource_version.as_ref(),
            ) {
                return Ok(false);
            }
            if annotation(&pvc.metadata, ANN_SELECTED_NODE).as_deref() != Some(node) {
                // A provisioner that gives up removes the annotation to ask for another node.
                return Err(format!("provisioning failed for PVC {name:?}"));
            }
            let volume = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .unwrap_or_default();
            if !volume.is_empty() {
                let Some(pv) = self.store.volume(&volume) else {
                    return Ok(false);
                };
                if let Some(n) = chosen.node.as_ref() {
                    if !volume_fits_node(&pv, n) {
                        return Err(format!(
                            "pv {volume:?} node affinity doesn't match node {node:?}: no matching \
                             NodeSelectorTerms"
                        ));
                    }
                }
            }
            if !fully_bound(&pvc) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// A bound claim: it names its volume and the binding completed.
fn fully_bound(c: &PersistentVolumeClaim) -> bool {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty())
        && c.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANN_BIND_COMPLETED))
}

/// The claimRef a volume gets for `c`, as upstream's GetBindVolumeToClaim.
fn claim_ref_to(c: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: c.metadata.name.clone(),
        namespace: c.metadata.namespace.clone(),
        uid: c.metadata.uid.clone(),
        resource_version: c.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// A node carrying only `labels`: upstream matches volume node affinity against labels only.
fn labels_only(node: &NodeInfo) -> Node {
    Node {
        metadata: ObjectMeta {
            labels: node.node.metadata.labels.clone(),
            ..Default::default()
        },
        ..Default::default()
    }
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status {
        match self.pod_claims(pod) {
            Ok(None) => Status::skip(),
            Ok(Some(mut data)) => {
                if !data.delayed.is_empty() {
                    data.nodes = snapshot.nodes.clone();
                }
                state.write(STATE_KEY, data);
                Status::success()
            }
            Err(s) => s,
        }
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let Some(data) = state.read::<StateData>(STATE_KEY) else {
            return Status::error(format!("reading {STATE_KEY:?} from cycleState: not found"));
        };
        let labels = labels_only(node);
        let mut reasons = Vec::new();
        let mut bound_satisfied = true;
        let mut bound_found = true;
        for (_, pv) in &data.bound {
            match pv {
                None => {
                    bound_found = false;
                    break;
                }
                Some(pv) if !volume_fits_node(pv, &labels) => {
                    bound_satisfied = false;
                    break;
                }
                Some(_) => {}
            }
        }
        if !bound_satisfied {
            reasons.push(REASON_NODE_CONFLICT.to_string());
        }
        if !bound_found {
            reasons.push(REASON_PV_NOT_EXIST.to_string());
        }
        if !data.delayed.is_empty()
            && self
                .pod_volumes(&data.delayed, &data.volumes, &labels, node.name())
                .is_none()
        {
            reasons.push(REASON_BIND_CONFLICT.to_string());
        }
        if reasons.is_empty() {
            Status::success()
        } else {
            Status {
                code: crate::framework::Code::UnschedulableAndUnresolvable,
                reasons,
                plugin: None,
            }
        }
    }
}

impl ReservePlugin for VolumeBinding {
    /// Upstream's AssumePodVolumes: choose the node's volumes again on the freshest caches
    /// (earlier pods' assumptions included) and assume them.
    fn reserve(&self, state: &CycleState, pod: &Pod, node: &str) -> Status {
        let Some(data) = state.read::<StateData>(STATE_KEY) else {
            return Status::success();
        };
        if data.delayed.is_empty() {
            return Status::success();
        }
        let Some(info) = data.nodes.iter().find(|n| n.name() == node) else {
            return Status::error(format!("node {node:?} not found"));
        };
        let labels = Arc::new(labels_only(info));
        let Some(mut chosen) =
            self.pod_volumes(&data.delayed, &self.store.volumes(), &labels, node)
        else {
            return Status::unschedulable(REASON_BIND_CONFLICT);
        };
        chosen.node = Some(labels);
        let key = pod_key(pod);
        for (pv, claim) in &chosen.bindings {
            if !bound_to(pv, claim) {
                self.store.assume_claim_ref(
                    pv.metadata.name.as_deref().unwrap_or_default(),
                    &key,
                    claim_ref_to(claim),
                );
            }
        }
        self.reserved().insert(key, chosen);
        Status::success()
    }

    /// Upstream's RevertAssumedPodVolumes.
    fn unreserve(&self, _state: &CycleState, pod: &Pod, _node: &str) {
        let key = pod_key(pod);
        self.reserved().remove(&key);
        self.store.forget_assumed(&key);
    }
}

impl PreBindPlugin for VolumeBinding {
    fn pre_bind<'a>(
        &'a self,
        _state: &'a CycleState,
        pod: &'a Pod,
        node: &'a str,
    ) -> BoxFuture<'a, Status> {
        Box::pin(async move {
            let key = pod_key(pod);
            let Some(chosen) = self.reserved().get(&key).cloned() else {
                return Status::success();
            };
            if chosen.bindings.is_empty() && chosen.provisions.is_empty() {
                return Status::success();
            }
            match self.bind_pod_volumes(node, &chosen).await {
                Ok(()) => {
                    self.reserved().remove(&key);
                    self.store.forget_assumed(&key);
                    tracing::info!(pod = %key, node, "volumes bound");
                    Status::success()
                }
                Err(e) => Status::error(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::helpers::testing::{node, node_info, pod};
    use serde_json::{json, Value};

    fn claim(name: &str, extra: Value) -> PersistentVolumeClaim {
        let mut c = json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}});
        merge(&mut c, extra);
        serde_json::from_value(c).expect("pvc")
    }

    fn bound_claim(name: &str, pv: &str) -> PersistentVolumeClaim {
        claim(
            name,
            json!({"metadata": {"annotations": {ANN_BIND_COMPLETED: "yes"}},
                   "spec": {"volumeName": pv}, "status": {"phase": "Bound"}}),
        )
    }

    fn volume(name: &str, extra: Value) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                     "hostPath": {"path": "/tmp"}},
            "status": {"phase": "Available"}});
        merge(&mut v, extra);
        serde_json::from_value(v).expect("pv")
    }

    fn on_host(host: &str) -> Value {
        json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}}}})
    }

    fn class(name: &str, mode: &str) -> k8s_openapi::api::storage::v1::StorageClass {
        serde_json::from_value(json!({"metadata": {"name": name},
            "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": mode}))
        .expect("class")
    }

    fn merge(base: &mut Value, extra: Value) {
        match (base, extra) {
            (Value::Object(b), Value::Object(e)) => {
                for (k, v) in e {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, e) => *b = e,
        }
    }

    fn pod_with_claims(claims: &[&str]) -> Pod {
        let volumes: Vec<Value> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        pod("p", json!({}), json!({"volumes": volumes}))
    }

    fn run(store: VolumeStore, p: &Pod, hosts: &[&str]) -> (Status, Vec<Status>) {
        let plugin = VolumeBinding::new(Arc::new(store));
        let mut state = CycleState::default();
        let pre = plugin.pre_filter(&mut state, p, &Snapshot::default());
        if !pre.is_success() {
            return (pre, Vec::new());
        }
        let filters = hosts
            .iter()
            .map(|h| {
                let ni = node_info(node(h, "1", "1Gi", json!({}), json!([])), vec![]);
                plugin.filter(&state, p, &ni)
            })
            .collect();
        (pre, filters)
    }

    #[test]
    fn pre_filter_skips_pods_without_claims_and_rejects_unusable_claims() {
        let (s, _) = run(VolumeStore::default(), &pod("p", json!({}), json!({})), &[]);
        assert_eq!(s.code, Code::Skip);
        let emptydir = pod(
            "p",
            json!({}),
            json!({"volumes": [{"name": "v", "emptyDir": {}}]}),
        );
        assert_eq!(
            run(VolumeStore::default(), &emptydir, &[]).0.code,
            Code::Skip
        );

        let (s, _) = run(VolumeStore::default(), &pod_with_claims(&["x"]), &[]);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.message(), r#"persistentvolumeclaim "x" not found"#);

        let store = VolumeStore::default();
        store.upsert_claim(claim(
            "x",
            json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["f"]}}),
        ));
        let (s, _) = run(store, &pod_with_claims(&["x"]), &[]);
        assert_eq!(s.message(), r#"persistentvolumeclaim "x" is being deleted"#);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);

        let ephemeral = pod(
            "p",
            json!({}),
            json!({"volumes": [{"name": "data", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}),
        );
        let (s, _) = run(VolumeStore::default(), &ephemeral, &[]);
        assert_eq!(
            s.message(),
            r#"waiting for ephemeral volume controller to create the persistentvolumeclaim "p-data""#
        );
        let store = VolumeStore::default();
        store.upsert_claim(claim("p-data", json!({})));
        let (s, _) = run(store, &ephemeral, &[]);
        assert_eq!(
            s.message(),
            "PVC default/p-data was not created for pod default/p (pod is not owner)"
        );
    }

    #[test]
    fn unbound_immediate_claims_are_rejected_in_pre_filter() {
        let cases = [
            ("no class", json!({}), None),
            (
                "class not found",
                json!({"spec": {"storageClassName": "gone"}}),
                None,
            ),
            (
                "Immediate class",
                json!({"spec": {"storageClassName": "fast"}}),
                Some("Immediate"),
            ),
            (
                "pre-bound WaitForFirstConsumer",
                json!({"spec": {"storageClassName": "fast", "volumeName": "pv"}}),
                Some("WaitForFirstConsumer"),
            ),
        ];
        for (name, extra, mode) in cases {
            let store = VolumeStore::default();
            store.upsert_claim(claim("x", extra));
            if let Some(mode) = mode {
                store.upsert_class(class("fast", mode));
            }
            let (s, _) = run(store, &pod_with_claims(&["x"]), &[]);
            assert_eq!(s.code, Code::UnschedulableAndUnresolvable, "{name}");
            assert_eq!(s.message(), REASON_UNBOUND_IMMEDIATE, "{name}");
        }
    }

    #[test]
    fn bound_volumes_node_affinity_picks_the_node() {
        let store = VolumeStore::default();
        store.upsert_claim(bound_claim("x", "pv-b"));
        store.upsert_volume(volume("pv-b", on_host("b")));
        let (pre, f) = run(store, &pod_with_claims(&["x"]), &["a", "b"]);
        assert!(pre.is_success(), "{pre}");
        assert_eq!(f[0].code, Code::UnschedulableAndUnresolvable);
        assert_eq!(f[0].message(), REASON_NODE_CONFLICT);
        assert!(f[1].is_success(), "{}", f[1]);

        // Without node affinity every node fits; a missing volume fits none.
        let store = VolumeStore::default();
        store.upsert_claim(bound_claim("x", "pv"));
        store.upsert_claim(bound_claim("y", "missing"));
        store.upsert_volume(volume("pv", json!({})));
        let (_, f) = run(store, &pod_with_claims(&["x"]), &["a"]);
        assert!(f[0].is_success());
        let store = VolumeStore::default();
        store.upsert_claim(bound_claim("y", "missing"));
        let (_, f) = run(store, &pod_with_claims(&["y"]), &["a"]);
        assert_eq!(f[0].message(), REASON_PV_NOT_EXIST);
    }

    #[test]
    fn wait_for_first_consumer_claims_need_an_available_matching_volume_on_the_node() {
        let wffc = json!({"spec": {"storageClassName": "local"}});
        let store = || {
            let s = VolumeStore::default();
            s.upsert_class(class("local", "WaitForFirstConsumer"));
            s.upsert_claim(claim("x", wffc.clone()));
            s
        };
        let local = |host: &str, extra: Value| {
            let mut v = on_host(host);
            merge(&mut v, json!({"spec": {"storageClassName": "local"}}));
            merge(&mut v, extra);
            v
        };
        let cases = [
            ("matches on b", local("b", json!({})), [false, true]),
            (
                "too small",
                local("b", json!({"spec": {"capacity": {"storage": "512Mi"}}})),
                [false, false],
            ),
            (
                "other class",
                local("b", json!({"spec": {"storageClassName": "other"}})),
                [false, false],
            ),
            (
                "not Available",
                local("b", json!({"status": {"phase": "Released"}})),
                [false, false],
            ),
            (
                "access modes missing",
                local("b", json!({"spec": {"accessModes": ["ReadOnlyMany"]}})),
                [false, false],
            ),
            (
                "claimed by another",
                local(
                    "b",
                    json!({"spec": {"claimRef": {"namespace": "default", "name": "other"}}}),
                ),
                [false, false],
            ),
            (
                "no node affinity",
                json!({"spec": {"storageClassName": "local"}}),
                [true, true],
            ),
        ];
        for (name, pv, want) in cases {
            let s = store();
            s.upsert_volume(volume("pv", pv));
            let (pre, f) = run(s, &pod_with_claims(&["x"]), &["a", "b"]);
            assert!(pre.is_success(), "{name}: {pre}");
            for (status, want) in f.iter().zip(want) {
                assert_eq!(status.is_success(), want, "{name}: {status}");
                if !want {
                    assert_eq!(status.message(), REASON_BIND_CONFLICT, "{name}");
                    assert_eq!(status.code, Code::UnschedulableAndUnresolvable);
                }
            }
        }

        // Two claims cannot share one volume.
        let s = store();
        s.upsert_claim(claim("y", wffc.clone()));
        s.upsert_volume(volume("pv", local("b", json!({}))));
        let (_, f) = run(s, &pod_with_claims(&["x", "y"]), &["b"]);
        assert_eq!(f[0].message(), REASON_BIND_CONFLICT);
    }

    #[test]
    fn reserve_assumes_volumes_so_the_next_pod_takes_another_and_unreserve_forgets() {
        let store = Arc::new(VolumeStore::default());
        store.upsert_class(class("local", "WaitForFirstConsumer"));
        let local = |host: &str| {
            let mut v = on_host(host);
            merge(&mut v, json!({"spec": {"storageClassName": "local"}}));
            v
        };
        store.upsert_volume(volume("pv-1", local("a")));
        let mut big = local("a");
        merge(&mut big, json!({"spec": {"capacity": {"storage": "2Gi"}}}));
        store.upsert_volume(volume("pv-2", big));
        let mut claim_x = claim("x", json!({"spec": {"storageClassName": "local"}}));
        claim_x.metadata.uid = Some("uid-x".into());
        store.upsert_claim(claim_x);
        store.upsert_claim(claim("y", json!({"spec": {"storageClassName": "local"}})));
        let plugin = VolumeBinding::new(store.clone());
        let snapshot = Snapshot {
            nodes: vec![Arc::new(node_info(
                node("a", "1", "1Gi", json!({}), json!([])),
                vec![],
            ))],
        };
        let cycle = |claim: &str, name: &str| {
            let mut p = pod_with_claims(&[claim]);
            p.metadata.name = Some(name.into());
            let mut state = CycleState::default();
            assert!(plugin.pre_filter(&mut state, &p, &snapshot).is_success());
            (p, state)
        };

        let (p1, s1) = cycle("x", "p1");
        assert!(plugin.reserve(&s1, &p1, "a").is_success());
        let chosen = plugin
            .reserved()
            .get("default/p1")
            .cloned()
            .expect("reserved");
        let names: Vec<_> = chosen
            .bindings
            .iter()
            .map(|(pv, _)| pv.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["pv-1"], "the smallest fit");
        let assumed = store
            .volumes()
            .into_iter()
            .find(|v| v.metadata.name.as_deref() == Some("pv-1"))
            .expect("pv-1");
        let r = assumed
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.clone())
            .expect("claimRef");
        assert_eq!(
            (r.name.as_deref(), r.uid.as_deref()),
            (Some("x"), Some("uid-x"))
        );

        // The next pod's claim sees pv-1 taken and gets pv-2.
        let (p2, s2) = cycle("y", "p2");
        assert!(plugin.reserve(&s2, &p2, "a").is_success());
        let chosen = plugin
            .reserved()
            .get("default/p2")
            .cloned()
            .expect("reserved");
        assert_eq!(chosen.bindings[0].0.metadata.name.as_deref(), Some("pv-2"));

        // Unreserve gives pv-1 back.
        plugin.unreserve(&s1, &p1, "a");
        assert!(plugin.reserved().get("default/p1").is_none());
        let freed = store
            .volumes()
            .into_iter()
            .find(|v| v.metadata.name.as_deref() == Some("pv-1"))
            .expect("pv-1");
        assert!(freed
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_none());
    }

    #[test]
    fn claims_without_a_volume_need_a_provisioner_that_serves_the_node() {
        let run_with = |provisioner: &str, topologies: Value, selected: Option<&str>| {
            let store = VolumeStore::default();
            let c: k8s_openapi::api::storage::v1::StorageClass = serde_json::from_value(json!({
                "metadata": {"name": "dyn"}, "provisioner": provisioner,
                "volumeBindingMode": "WaitForFirstConsumer", "allowedTopologies": topologies}))
            .expect("class");
            store.upsert_class(c);
            let mut extra = json!({"spec": {"storageClassName": "dyn"}});
            if let Some(n) = selected {
                extra["metadata"] = json!({"annotations": {ANN_SELECTED_NODE: n}});
            }
            store.upsert_claim(claim("x", extra));
            let (_, f) = run(store, &pod_with_claims(&["x"]), &["a", "b"]);
            f.iter().map(Status::is_success).collect::<Vec<_>>()
        };
        assert_eq!(run_with("csi.example.com", json!([]), None), [true, true]);
        assert_eq!(
            run_with(NOT_SUPPORTED_PROVISIONER, json!([]), None),
            [false, false]
        );
        let only_b = json!([{"matchLabelExpressions": [
            {"key": "kubernetes.io/hostname", "values": ["b"]}]}]);
        assert_eq!(run_with("csi.example.com", only_b, None), [false, true]);
        assert_eq!(
            run_with("csi.example.com", json!([]), Some("a")),
            [true, false],
            "a claim already given to a node stays there"
        );
    }

    #[test]
    fn negative_bind_timeouts_are_rejected() {
        let args = VolumeBindingArgs {
            bind_timeout_seconds: -1,
        };
        let err = VolumeBinding::with_args(Arc::default(), None, args)
            .err()
            .unwrap_or_default();
        assert!(err.contains("should not be a negative value"), "{err}");
    }
}
