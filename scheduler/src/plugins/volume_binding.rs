//! VolumeBinding: a pod's PersistentVolumeClaims must exist and be usable, bound volumes' node
//! affinity must match the node, and WaitForFirstConsumer claims need an available matching
//! volume on the node. There is no dynamic provisioner, so nothing is provisioned; and with no
//! PersistentVolume controller to finish a binding, the plugin does not bind volumes
//! (upstream's Reserve/PreBind): a pod whose WaitForFirstConsumer claims have a matching
//! volume is placed, and the claims are left for whoever binds them.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::ObjectMeta;

use super::helpers::{label_selector_matches, node_selector_term_matches};
use crate::framework::resource::parse_value;
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PreFilterPlugin, Snapshot, Status,
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
const ANN_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// The PreFilter and Filter plugin.
pub struct VolumeBinding {
    store: Arc<VolumeStore>,
}

impl VolumeBinding {
    /// The plugin over the scheduler's volume caches.
    pub fn new(store: Arc<VolumeStore>) -> Self {
        Self { store }
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
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _snapshot: &Snapshot) -> Status {
        match self.pod_claims(pod) {
            Ok(None) => Status::skip(),
            Ok(Some(data)) => {
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
        // Upstream matches volume node affinity against the node's labels only.
        let labels = Node {
            metadata: ObjectMeta {
                labels: node.node.metadata.labels.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
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
        let mut chosen = HashSet::new();
        for claim in &data.delayed {
            match find_matching_volume(claim, &data.volumes, &labels, &chosen) {
                Some(pv) => {
                    chosen.insert(pv.metadata.name.clone().unwrap_or_default());
                }
                None => {
                    // No provisioner exists, so an unmatched claim cannot be satisfied here.
                    reasons.push(REASON_BIND_CONFLICT.to_string());
                    break;
                }
            }
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
}
