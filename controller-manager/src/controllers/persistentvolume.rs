//! persistentvolume-binder: binds PersistentVolumeClaims to the smallest matching
//! PersistentVolume (honouring pre-bound pairs both ways), completes the bindings the scheduler
//! starts for WaitForFirstConsumer claims, marks claims whose volume vanished Lost, and
//! releases and reclaims volumes whose claim is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::resourcequota::parse_quantity;
use super::util::{emit, selector_matches};
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// The events' source component, as upstream.
const COMPONENT: &str = "persistentvolume-controller";

/// On claims: the binding has been set up once (its value does not matter).
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On volumes and claims: the controller (not the user) made the binding.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On claims: the node the scheduler chose for a WaitForFirstConsumer claim.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// On claims: the provisioner expected to create the volume.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta form of [`ANN_STORAGE_PROVISIONER`], still written for older provisioners.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// On volumes: the plugin or provisioner that created the volume.
const ANN_DYNAMICALLY_PROVISIONED: &str = "pv.kubernetes.io/provisioned-by";
/// On volumes: migrated to a CSI driver, whose provisioner reclaims it.
const ANN_MIGRATED_TO: &str = "pv.kubernetes.io/migrated-to";
/// The beta storage-class annotation, which wins over `storageClassName`.
const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// StorageClass annotations that make a class the default.
const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const ANN_BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";

struct Ctx {
    client: kube::Client,
    volumes: Store<PersistentVolume>,
    claims: Store<PersistentVolumeClaim>,
    classes: Store<StorageClass>,
    pods: Store<Pod>,
    sync_period: Duration,
}

/// Builds the controller: a claim loop and a volume loop over shared caches, as upstream's two
/// work queues, each resynced every --pvclaimbinder-sync-period.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let volumes = ctx.informers.get::<PersistentVolume>();
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let classes = ctx.informers.get::<StorageClass>();
    let pods = ctx.informers.get::<Pod>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        volumes: volumes.store(),
        claims: claims.store(),
        classes: classes.store(),
        pods: pods.store(),
        sync_period: ctx.config.pvclaimbinder_sync_period,
    });
    let claim_store = claims.store();
    let class_store = classes.store();
    let claim_loop = Controller::for_shared_stream(claims.subscribe(), claims.store())
        .watches_shared_stream(volumes.subscribe(), move |pv: Arc<PersistentVolume>| {
            claims_to_wake(&claim_store, &class_store, &pv)
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(1));
    let volume_store = volumes.store();
    let volume_loop = Controller::for_shared_stream(volumes.subscribe(), volumes.store())
        .watches_shared_stream(
            claims.subscribe(),
            move |pvc: Arc<PersistentVolumeClaim>| volumes_to_wake(&volume_store, &pvc),
        )
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(1));
    let claims_run = drain(
        "persistentvolume-binder",
        claim_loop.run(reconcile_claim, error_policy, state.clone()),
    );
    let volumes_run = drain(
        "persistentvolume-binder",
        volume_loop.run(reconcile_volume, error_policy, state),
    );
    Ok(async move {
        futures::join!(claims_run, volumes_run);
    }
    .boxed())
}

/// The claims a volume change concerns: its claimRef, claims asking for it by name, and, when it
/// becomes Available, every claim still waiting for a volume that binds immediately (so a new
/// volume binds at once instead of at the next resync; WaitForFirstConsumer claims wait for
/// the scheduler anyway).
fn claims_to_wake(
    claims: &Store<PersistentVolumeClaim>,
    classes: &Store<StorageClass>,
    pv: &PersistentVolume,
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let name = pv.name_any();
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let mut out: Vec<ObjectRef<PersistentVolumeClaim>> = claim_ref
        .and_then(|r| Some(ObjectRef::new(r.name.as_deref()?).within(r.namespace.as_deref()?)))
        .into_iter()
        .collect();
    let available = claim_ref.is_none() && phase(pv) == "Available";
    for c in claims.state() {
        let wanted = volume_name(&c) == name;
        let waiting = available
            && !has_annotation(&c.metadata, ANN_BIND_COMPLETED)
            && volume_name(&c).is_empty()
            && is_delay_binding(&c, |n| classes.get(&ObjectRef::new(n))) == Ok(false);
        if wanted || waiting {
            out.push(ObjectRef::from_obj(c.as_ref()));
        }
    }
    out
}

/// The volumes a claim change concerns: the one it names and those whose claimRef points at it.
fn volumes_to_wake(
    volumes: &Store<PersistentVolume>,
    pvc: &PersistentVolumeClaim,
) -> Vec<ObjectRef<PersistentVolume>> {
    let mut out = Vec::new();
    let wanted = volume_name(pvc);
    if !wanted.is_empty() {
        out.push(ObjectRef::new(&wanted));
    }
    for v in volumes.state() {
        let r = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if r.is_some_and(|r| r.name == pvc.metadata.name && r.namespace == pvc.metadata.namespace)
            && v.name_any() != wanted
        {
            out.push(ObjectRef::from_obj(v.as_ref()));
        }
    }
    out
}

fn has_annotation(meta: &kube::api::ObjectMeta, key: &str) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn set_annotation(meta: &mut kube::api::ObjectMeta, key: &str, value: &str) {
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), value.to_owned());
}

fn volume_name(c: &PersistentVolumeClaim) -> String {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default()
}

fn claim_key(c: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        c.metadata.namespace.as_deref().unwrap_or_default(),
        c.name_any()
    )
}

/// Upstream's GetPersistentVolumeClaimClass: the beta annotation, else `storageClassName`.
pub fn claim_class(c: &PersistentVolumeClaim) -> String {
    annotation(&c.metadata, ANN_BETA_STORAGE_CLASS)
        .map(str::to_owned)
        .or_else(|| c.spec.as_ref().and_then(|s| s.storage_class_name.clone()))
        .unwrap_or_default()
}

/// Upstream's GetPersistentVolumeClass.
pub fn volume_class(v: &PersistentVolume) -> String {
    annotation(&v.metadata, ANN_BETA_STORAGE_CLASS)
        .map(str::to_owned)
        .or_else(|| v.spec.as_ref().and_then(|s| s.storage_class_name.clone()))
        .unwrap_or_default()
}

fn storage(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> i128 {
    map.and_then(|m| m.get("storage"))
        .and_then(|q| parse_quantity(&q.0))
        .map(|a| a.milli)
        .unwrap_or(0)
}

fn requested(c: &PersistentVolumeClaim) -> i128 {
    storage(
        c.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
}

fn capacity(v: &PersistentVolume) -> i128 {
    storage(v.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

fn volume_modes(v: &PersistentVolume) -> BTreeSet<String> {
    v.spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn claim_modes(c: &PersistentVolumeClaim) -> BTreeSet<String> {
    c.spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn claim_ref(v: &PersistentVolume) -> Option<&ObjectReference> {
    v.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
}

/// Upstream's IsVolumeBoundToClaim: the claimRef names the claim, with its uid or none.
pub fn is_bound_to(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = claim_ref(v) else {
        return false;
    };
    r.name == c.metadata.name
        && r.namespace == c.metadata.namespace
        && (r.uid.as_deref().unwrap_or_default().is_empty() || r.uid == c.metadata.uid)
}

fn volume_mode_mismatch(c: &PersistentVolumeClaim, v: &PersistentVolume) -> bool {
    let cm = c.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let vm = v.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    cm.unwrap_or("Filesystem") != vm.unwrap_or("Filesystem")
}

/// Upstream's FindMatchingVolume on the controller path (no node): a volume pre-bound to the
/// claim wins; otherwise the smallest Available one of the claim's class and selector. Claims
/// that wait for their first consumer only take pre-bound volumes here.
fn find_matching_volume(
    claim: &PersistentVolumeClaim,
    volumes: &[&Arc<PersistentVolume>],
    delay_binding: bool,
) -> Option<Arc<PersistentVolume>> {
    let want = requested(claim);
    let class = claim_class(claim);
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let empty = BTreeMap::new();
    let mut best: Option<(i128, &Arc<PersistentVolume>)> = None;
    for v in volumes {
        if claim_ref(v).is_some() && !is_bound_to(v, claim) {
            continue;
        }
        let have = capacity(v);
        if have < want || volume_mode_mismatch(claim, v) || v.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if is_bound_to(v, claim) {
            return Some((*v).clone());
        }
        if delay_binding {
            continue;
        }
        if phase(v) != "Available" {
            continue;
        }
        if selector
            .is_some_and(|s| !selector_matches(s, v.metadata.labels.as_ref().unwrap_or(&empty)))
        {
            continue;
        }
        if volume_class(v) != class {
            continue;
        }
        if best.is_none_or(|(q, _)| q > have) {
            best = Some((have, v));
        }
    }
    best.map(|(_, v)| v.clone())
}

/// Upstream's findBestMatchForClaim: volumes are grouped by their set of access modes; the sets
/// holding every mode the claim asks for are tried fewest modes first, so an exact match beats a
/// smaller volume with extra modes.
pub fn find_best_match(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    delay_binding: bool,
) -> Option<Arc<PersistentVolume>> {
    let wanted = claim_modes(claim);
    let mut groups: BTreeMap<(usize, Vec<String>), Vec<&Arc<PersistentVolume>>> = BTreeMap::new();
    for v in volumes {
        let modes = volume_modes(v);
        if wanted.is_subset(&modes) {
            groups
                .entry((modes.len(), modes.into_iter().collect()))
                .or_default()
                .push(v);
        }
    }
    groups
        .values()
        .find_map(|vs| find_matching_volume(claim, vs, delay_binding))
}

/// Upstream's checkVolumeSatisfyClaim, for claims that name their volume.
pub fn check_volume_satisfy_claim(
    v: &PersistentVolume,
    c: &PersistentVolumeClaim,
) -> Result<(), String> {
    if v.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "the volume is marked for deletion {:?}",
            v.name_any()
        ));
    }
    if capacity(v) < requested(c) {
        return Err("requested PV is too small".into());
    }
    if volume_class(v) != claim_class(c) {
        return Err("storageClassName does not match".into());
    }
    if volume_mode_mismatch(c, v) {
        return Err("incompatible volumeMode".into());
    }
    if !claim_modes(c).is_subset(&volume_modes(v)) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// Upstream's IsDelayBindingMode: whether the claim's class waits for the first consumer.
pub fn is_delay_binding(
    c: &PersistentVolumeClaim,
    class: impl Fn(&str) -> Option<Arc<StorageClass>>,
) -> Result<bool, String> {
    let name = claim_class(c);
    if name.is_empty() {
        return Ok(false);
    }
    let Some(sc) = class(&name) else {
        return Ok(false);
    };
    match sc.volume_binding_mode.as_deref() {
        None => Err(format!(
            "VolumeBindingMode not set for StorageClass {name:?}"
        )),
        Some(mode) => Ok(mode == "WaitForFirstConsumer"),
    }
}

/// How a released volume with reclaim policy Delete goes away.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleter {
    /// An external provisioner created it and deletes it: wait.
    External,
    /// The in-tree hostPath deleter: remove the directory, then the PersistentVolume.
    HostPath(String),
    /// No deleter: the volume is marked Failed with this message.
    None(String),
}

/// Upstream's findDeletablePlugin over the plugins kube-controller-manager carries (hostPath
/// can delete, nfs cannot, everything else has no controller-side plugin).
pub fn deleter_for(v: &PersistentVolume) -> Deleter {
    let name = v.name_any();
    if let Some(by) = annotation(&v.metadata, ANN_DYNAMICALLY_PROVISIONED).filter(|p| !p.is_empty())
    {
        if !by.starts_with("kubernetes.io/") {
            return Deleter::External;
        }
        if by != "kubernetes.io/host-path" {
            return Deleter::None(format!("no volume plugin matched name: {by}"));
        }
    }
    let spec = v.spec.clone().unwrap_or_default();
    if let Some(hp) = spec.host_path {
        // Upstream's hostPath deleter only removes directories under /tmp.
        return if host_path_deletable(&hp.path) {
            Deleter::HostPath(hp.path)
        } else {
            Deleter::None(format!(
                "host_path deleter only supports /tmp/.+ but received provided {}",
                hp.path
            ))
        };
    }
    let why = if spec.nfs.is_some() {
        "no deletable volume plugin matched"
    } else {
        "no volume plugin matched"
    };
    Deleter::None(format!(
        "error getting deleter volume plugin for volume {name:?}: {why}"
    ))
}

/// The unanchored `/tmp/.+` match of upstream's hostPath deleter.
fn host_path_deletable(path: &str) -> bool {
    path.match_indices("/tmp/")
        .any(|(i, m)| path.len() > i + m.len())
}

/// The default StorageClass: the newest one annotated as default (upstream's GetDefaultClass).
fn default_class(classes: &Store<StorageClass>) -> Option<Arc<StorageClass>> {
    classes
        .state()
        .into_iter()
        .filter(|c| {
            [ANN_DEFAULT_CLASS, ANN_BETA_DEFAULT_CLASS]
                .iter()
                .any(|k| annotation(&c.metadata, k) == Some("true"))
        })
        .max_by(|a, b| {
            a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .then_with(|| b.name_any().cmp(&a.name_any()))
        })
}

impl Ctx {
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get(&ObjectRef::new(name))
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(&ObjectRef::new(name))
    }

    fn pv_api(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    fn pvc_api(&self, c: &PersistentVolumeClaim) -> Api<PersistentVolumeClaim> {
        Api::namespaced(
            self.client.clone(),
            c.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    /// Sets the volume's phase (and message) unless it already has that phase.
    async fn update_volume_phase(
        &self,
        v: &PersistentVolume,
        to: &str,
        message: &str,
    ) -> Result<PersistentVolume, Error> {
        if phase(v) == to {
            return Ok(v.clone());
        }
        let mut next = v.clone();
        let status = next
            .status
            .get_or_insert_with(PersistentVolumeStatus::default);
        status.phase = Some(to.to_owned());
        status.message = (!message.is_empty()).then(|| message.to_owned());
        let updated = self
            .pv_api()
            .replace_status(
                &v.name_any(),
                &PostParams::default(),
                serde_json::to_vec(&next)?,
            )
            .await?;
        tracing::info!(volume = %v.name_any(), phase = to, "volume entered phase");
        Ok(updated)
    }

    /// [`Self::update_volume_phase`] plus an event, only on a real change.
    async fn update_volume_phase_with_event(
        &self,
        v: &PersistentVolume,
        to: &str,
        type_: &'static str,
        reason: &'static str,
        message: String,
    ) -> Result<PersistentVolume, Error> {
        if phase(v) == to {
            return Ok(v.clone());
        }
        let updated = self.update_volume_phase(v, to, &message).await?;
        emit(&self.client, COMPONENT, &updated, type_, reason, message);
        Ok(updated)
    }

    /// Upstream's updateClaimStatus: phase, and access modes and capacity from the volume (the
    /// capacity only when the claim becomes Bound).
    async fn update_claim_status(
        &self,
        c: &PersistentVolumeClaim,
        to: &str,
        volume: Option<&PersistentVolume>,
    ) -> Result<PersistentVolumeClaim, Error> {
        let mut next = c.clone();
        let old = c.status.clone().unwrap_or_default();
        let status = next
            .status
            .get_or_insert_with(PersistentVolumeClaimStatus::default);
        let mut dirty = false;
        if old.phase.as_deref() != Some(to) {
            status.phase = Some(to.to_owned());
            dirty = true;
        }
        match volume {
            None => {
                if status.access_modes.take().is_some() {
                    dirty = true;
                }
                if status.capacity.take().is_some() {
                    dirty = true;
                }
            }
            Some(v) => {
                let spec = v.spec.clone().unwrap_or_default();
                if old.access_modes != spec.access_modes {
                    status.access_modes = spec.access_modes.clone();
                    dirty = true;
                }
                if old.phase.as_deref() != Some(to) {
                    let Some(cap) = spec.capacity.as_ref().and_then(|c| c.get("storage")) else {
                        return Err(Error::Other(format!(
                            "PersistentVolume {:?} is without a storage capacity",
                            v.name_any()
                        )));
                    };
                    let have = old.capacity.as_ref().and_then(|c| c.get("storage"));
                    if have.and_then(|q| parse_quantity(&q.0)) != parse_quantity(&cap.0) {
                        status.capacity = spec.capacity.clone();
                        dirty = true;
                    }
                }
            }
        }
        if !dirty {
            return Ok(c.clone());
        }
        let updated = self
            .pvc_api(c)
            .replace_status(
                &c.name_any(),
                &PostParams::default(),
                serde_json::to_vec(&next)?,
            )
            .await?;
        Ok(updated)
    }

    /// [`Self::update_claim_status`] plus an event, only when the phase changes.
    async fn update_claim_status_with_event(
        &self,
        c: &PersistentVolumeClaim,
        to: &str,
        type_: &'static str,
        reason: &'static str,
        message: &str,
    ) -> Result<(), Error> {
        if claim_phase(c) == to {
            return Ok(());
        }
        let updated = self.update_claim_status(c, to, None).await?;
        emit(
            &self.client,
            COMPONENT,
            &updated,
            type_,
            reason,
            message.to_owned(),
        );
        Ok(())
    }

    /// Upstream's bind: claimRef on the volume, volume Bound, volumeName and annotations on the
    /// claim, claim Bound. Each step is skipped when already done; a conflict is retried by the
    /// next sync, which finishes the binding.
    async fn bind(&self, v: &PersistentVolume, c: &PersistentVolumeClaim) -> Result<(), Error> {
        let mut volume = v.clone();
        let mut dirty = false;
        let by_controller = !is_bound_to(v, c);
        let current = claim_ref(v);
        if current.is_none_or(|r| {
            r.name != c.metadata.name
                || r.namespace != c.metadata.namespace
                || r.uid != c.metadata.uid
        }) {
            volume.spec.get_or_insert_with(Default::default).claim_ref = Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                name: c.metadata.name.clone(),
                namespace: c.metadata.namespace.clone(),
                uid: c.metadata.uid.clone(),
                resource_version: c.metadata.resource_version.clone(),
                ..ObjectReference::default()
            });
            dirty = true;
        }
        if by_controller && !has_annotation(&volume.metadata, ANN_BOUND_BY_CONTROLLER) {
            set_annotation(&mut volume.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            dirty = true;
        }
        if dirty {
            volume = self
                .pv_api()
                .replace(&v.name_any(), &PostParams::default(), &volume)
                .await?;
        }
        let volume = self.update_volume_phase(&volume, "Bound", "").await?;

        let mut claim = c.clone();
        let mut dirty = false;
        let pv_name = volume.name_any();
        if volume_name(c) != pv_name {
            claim.spec.get_or_insert_with(Default::default).volume_name = Some(pv_name.clone());
            if !has_annotation(&claim.metadata, ANN_BOUND_BY_CONTROLLER) {
                set_annotation(&mut claim.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            }
            dirty = true;
        }
        if !has_annotation(&claim.metadata, ANN_BIND_COMPLETED) {
            set_annotation(&mut claim.metadata, ANN_BIND_COMPLETED, "yes");
            dirty = true;
        }
        if dirty {
            claim = self
                .pvc_api(c)
                .replace(&c.name_any(), &PostParams::default(), &claim)
                .await?;
        }
        self.update_claim_status(&claim, "Bound", Some(&volume))
            .await?;
        tracing::info!(claim = %claim_key(c), volume = %pv_name, "bound claim to volume");
        Ok(())
    }

    /// Upstream's unbindVolume: drop a controller-made claimRef, or only the uid of a
    /// user-made one, and make the volume Available again.
    async fn unbind_volume(&self, v: &PersistentVolume) -> Result<(), Error> {
        let mut next = v.clone();
        if has_annotation(&v.metadata, ANN_BOUND_BY_CONTROLLER) {
            if let Some(spec) = next.spec.as_mut() {
                spec.claim_ref = None;
            }
            if let Some(a) = next.metadata.annotations.as_mut() {
                a.remove(ANN_BOUND_BY_CONTROLLER);
            }
        } else if let Some(r) = next.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
            r.uid = None;
        }
        let updated = self
            .pv_api()
            .replace(&v.name_any(), &PostParams::default(), &next)
            .await?;
        self.update_volume_phase(&updated, "Available", "").await?;
        Ok(())
    }
}

async fn reconcile_claim(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Ctx>,
) -> Result<Action, Error> {
    if has_annotation(&claim.metadata, ANN_BIND_COMPLETED) {
        sync_bound_claim(&claim, &ctx).await?;
    } else {
        sync_unbound_claim(&claim, &ctx).await?;
    }
    Ok(Action::requeue(ctx.sync_period))
}

async fn sync_unbound_claim(claim: &PersistentVolumeClaim, ctx: &Ctx) -> Result<(), Error> {
    let wanted = volume_name(claim);
    if wanted.is_empty() {
        let delay = is_delay_binding(claim, |n| ctx.class(n)).map_err(Error::Other)?;
        let volumes = ctx.volumes.state();
        if let Some(v) = find_best_match(claim, &volumes, delay) {
            return ctx.bind(&v, claim).await;
        }
        if claim_class(claim).is_empty()
            && !has_annotation(&claim.metadata, ANN_BETA_STORAGE_CLASS)
            && claim
                .spec
                .as_ref()
                .is_some_and(|s| s.storage_class_name.is_none())
        {
            // Retroactive default class: a claim that never chose a class gets the default.
            if let Some(class) = default_class(&ctx.classes) {
                let mut next = claim.clone();
                next.spec
                    .get_or_insert_with(Default::default)
                    .storage_class_name = Some(class.name_any());
                ctx.pvc_api(claim)
                    .replace(&claim.name_any(), &PostParams::default(), &next)
                    .await?;
                return Ok(());
            }
        }
        if delay && !has_annotation(&claim.metadata, ANN_SELECTED_NODE) {
            emit_for_unbound_delay_binding_claim(claim, ctx);
        } else if !claim_class(claim).is_empty() {
            return provision_claim(claim, ctx).await;
        } else {
            emit(
                &ctx.client,
                COMPONENT,
                claim,
                "Normal",
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set".into(),
            );
        }
        ctx.update_claim_status(claim, "Pending", None).await?;
        return Ok(());
    }
    let Some(v) = ctx.volume(&wanted) else {
        // The claim asks for a volume that does not exist (yet): retried at the next sync.
        ctx.update_claim_status(claim, "Pending", None).await?;
        return Ok(());
    };
    if claim_ref(&v).is_none() {
        if let Err(why) = check_volume_satisfy_claim(&v, claim) {
            emit(
                &ctx.client,
                COMPONENT,
                claim,
                "Warning",
                "VolumeMismatch",
                format!("Cannot bind to requested volume {wanted:?}: {why}"),
            );
            ctx.update_claim_status(claim, "Pending", None).await?;
            return Ok(());
        }
        return ctx.bind(&v, claim).await;
    }
    if is_bound_to(&v, claim) {
        return ctx.bind(&v, claim).await;
    }
    emit(
        &ctx.client,
        COMPONENT,
        claim,
        "Warning",
        "FailedBinding",
        format!("volume {wanted:?} already bound to a different claim."),
    );
    if has_annotation(&claim.metadata, ANN_BOUND_BY_CONTROLLER) {
        let other = claim_ref(&v)
            .map(|r| {
                format!(
                    "{}/{}",
                    r.namespace.as_deref().unwrap_or_default(),
                    r.name.as_deref().unwrap_or_default()
                )
            })
            .unwrap_or_default();
        return Err(Error::Other(format!(
            "invalid binding of claim {:?} to volume {wanted:?}: volume already claimed by {other:?}",
            claim_key(claim)
        )));
    }
    ctx.update_claim_status(claim, "Pending", None).await?;
    Ok(())
}

/// Upstream's emitEventForUnboundDelayBindingClaim: WaitForFirstConsumer, or WaitForPodScheduled
/// naming the unscheduled pods that use the claim.
fn emit_for_unbound_delay_binding_claim(claim: &PersistentVolumeClaim, ctx: &Ctx) {
    let name = claim.name_any();
    let ns = claim.metadata.namespace.clone();
    let mut pods: Vec<String> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| p.metadata.namespace == ns)
        .filter(|p| {
            p.spec
                .as_ref()
                .is_some_and(|s| s.node_name.as_deref().unwrap_or_default().is_empty())
        })
        .filter(|p| {
            let pod_name = p.name_any();
            p.spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .into_iter()
                .flatten()
                .any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == name)
                        || (v.ephemeral.is_some() && format!("{pod_name}-{}", v.name) == name)
                })
        })
        .map(|p| p.name_any())
        .collect();
    pods.sort();
    let (reason, message) = match pods.as_slice() {
        [] => (
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".to_owned(),
        ),
        [one] => (
            "WaitForPodScheduled",
            format!("waiting for pod {one} to be scheduled"),
        ),
        many => (
            "WaitForPodScheduled",
            format!("waiting for pods {} to be scheduled", many.join(",")),
        ),
    };
    emit(&ctx.client, COMPONENT, claim, "Normal", reason, message);
}

/// Upstream's provisionClaim without in-tree provisioners: an external provisioner is asked for
/// by annotating the claim; an unknown `kubernetes.io/` provisioner (including
/// `kubernetes.io/no-provisioner`) or a missing class fails with upstream's message.
async fn provision_claim(claim: &PersistentVolumeClaim, ctx: &Ctx) -> Result<(), Error> {
    let class_name = claim_class(claim);
    let Some(class) = ctx.class(&class_name) else {
        emit(
            &ctx.client,
            COMPONENT,
            claim,
            "Warning",
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io {class_name:?} not found"),
        );
        return Ok(());
    };
    let provisioner = class.provisioner.clone();
    if provisioner.starts_with("kubernetes.io/") {
        emit(
            &ctx.client,
            COMPONENT,
            claim,
            "Warning",
            "ProvisioningFailed",
            format!("no volume plugin matched name: {provisioner}"),
        );
        return Ok(());
    }
    let set = |k| annotation(&claim.metadata, k) == Some(provisioner.as_str());
    let mut current = claim.clone();
    if !set(ANN_STORAGE_PROVISIONER) || !set(ANN_BETA_STORAGE_PROVISIONER) {
        let mut next = claim.clone();
        set_annotation(&mut next.metadata, ANN_STORAGE_PROVISIONER, &provisioner);
        set_annotation(
            &mut next.metadata,
            ANN_BETA_STORAGE_PROVISIONER,
            &provisioner,
        );
        match ctx
            .pvc_api(claim)
            .replace(&claim.name_any(), &PostParams::default(), &next)
            .await
        {
            Ok(updated) => current = updated,
            Err(e) => {
                emit(
                    &ctx.client,
                    COMPONENT,
                    claim,
                    "Warning",
                    "ProvisioningFailed",
                    format!("Error saving claim: {}", super::util::api_message(&e)),
                );
                return Err(e.into());
            }
        }
    }
    emit(
        &ctx.client,
        COMPONENT,
        &current,
        "Normal",
        "ExternalProvisioning",
        format!(
            "Waiting for a volume to be created either by the external provisioner \
             '{provisioner}' or manually by the system administrator. If volume creation is \
             delayed, please verify that the provisioner is running and correctly registered."
        ),
    );
    ctx.update_claim_status(&current, "Pending", None).await?;
    Ok(())
}

async fn sync_bound_claim(claim: &PersistentVolumeClaim, ctx: &Ctx) -> Result<(), Error> {
    let wanted = volume_name(claim);
    if wanted.is_empty() {
        return ctx
            .update_claim_status_with_event(
                claim,
                "Lost",
                "Warning",
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            )
            .await;
    }
    let Some(v) = ctx.volume(&wanted) else {
        return ctx
            .update_claim_status_with_event(
                claim,
                "Lost",
                "Warning",
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
            .await;
    };
    match claim_ref(&v) {
        None => ctx.bind(&v, claim).await,
        Some(r) if r.uid == claim.metadata.uid => ctx.bind(&v, claim).await,
        Some(_) => {
            ctx.update_claim_status_with_event(
                claim,
                "Lost",
                "Warning",
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )
            .await
        }
    }
}

async fn reconcile_volume(volume: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    sync_volume(&volume, &ctx).await?;
    Ok(Action::requeue(ctx.sync_period))
}

/// The claim a volume's claimRef names, from the cache or, when the cache lacks it or holds
/// another uid, from the apiserver (a claim the scheduler or a provisioner just used may not be
/// cached yet, and reclaiming a volume by mistake loses data).
async fn referenced_claim(
    v: &PersistentVolume,
    ctx: &Ctx,
) -> Result<Option<PersistentVolumeClaim>, Error> {
    let Some(r) = claim_ref(v) else {
        return Ok(None);
    };
    let (Some(ns), Some(name)) = (r.namespace.as_deref(), r.name.as_deref()) else {
        return Ok(None);
    };
    let cached = ctx.claims.get(&ObjectRef::new(name).within(ns));
    if let Some(c) = cached.as_ref().filter(|c| c.metadata.uid == r.uid) {
        return Ok(Some(c.as_ref().clone()));
    }
    let skip_lookup = cached.is_none() && matches!(phase(v), "Released" | "Failed");
    if skip_lookup {
        return Ok(None);
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let fresh = api.get_opt(name).await?;
    Ok(fresh.filter(|c| c.metadata.uid == r.uid))
}

async fn sync_volume(v: &PersistentVolume, ctx: &Ctx) -> Result<(), Error> {
    let Some(r) = claim_ref(v) else {
        ctx.update_volume_phase(v, "Available", "").await?;
        return Ok(());
    };
    if r.uid.as_deref().unwrap_or_default().is_empty() {
        // Pre-bound by the user to a claim that has not bound yet: the claim sync binds it.
        ctx.update_volume_phase(v, "Available", "").await?;
        return Ok(());
    }
    let Some(claim) = referenced_claim(v, ctx).await? else {
        let mut v = v.clone();
        if !matches!(phase(&v), "Released" | "Failed") {
            tracing::info!(volume = %v.name_any(), "claim is gone; releasing volume");
            v = ctx.update_volume_phase(&v, "Released", "").await?;
        }
        return reclaim_volume(&v, ctx).await;
    };
    let claimed = volume_name(&claim);
    if claimed.is_empty() {
        if volume_mode_mismatch(&claim, v) {
            emit(
                &ctx.client,
                COMPONENT,
                v,
                "Warning",
                "VolumeMismatch",
                format!(
                    "Cannot bind PersistentVolume to requested PersistentVolumeClaim {:?} due to \
                     incompatible volumeMode.",
                    claim.name_any()
                ),
            );
            emit(
                &ctx.client,
                COMPONENT,
                &claim,
                "Warning",
                "VolumeMismatch",
                format!(
                    "Cannot bind PersistentVolume {:?} to requested PersistentVolumeClaim due to \
                     incompatible volumeMode.",
                    v.name_any()
                ),
            );
        }
        // The claim sync finishes the binding; its loop is woken by this volume's events.
        return Ok(());
    }
    if claimed == v.name_any() {
        ctx.update_volume_phase(v, "Bound", "").await?;
        return Ok(());
    }
    // The claim is bound to another volume.
    if has_annotation(&v.metadata, ANN_DYNAMICALLY_PROVISIONED) && reclaim_policy(v) == "Delete" {
        let mut v = v.clone();
        if !matches!(phase(&v), "Released" | "Failed") {
            v = ctx.update_volume_phase(&v, "Released", "").await?;
        }
        return reclaim_volume(&v, ctx).await;
    }
    ctx.unbind_volume(v).await
}

fn reclaim_policy(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain")
}

/// Upstream's reclaimVolume: Retain keeps the volume Released; Delete removes it through its
/// deleter (or marks it Failed when there is none); Recycle needs a recycler this controller
/// does not have.
async fn reclaim_volume(v: &PersistentVolume, ctx: &Ctx) -> Result<(), Error> {
    if annotation(&v.metadata, ANN_MIGRATED_TO).is_some_and(|m| !m.is_empty()) {
        return Ok(());
    }
    match reclaim_policy(v) {
        "Retain" => Ok(()),
        "Recycle" => {
            ctx.update_volume_phase_with_event(
                v,
                "Failed",
                "Warning",
                "VolumeFailedRecycle",
                "No recycler plugin found for the volume!".into(),
            )
            .await?;
            Ok(())
        }
        "Delete" => delete_volume(v, ctx).await,
        _ => {
            ctx.update_volume_phase_with_event(
                v,
                "Failed",
                "Warning",
                "VolumeUnknownReclaimPolicy",
                "Volume has unrecognized PersistentVolumeReclaimPolicy".into(),
            )
            .await?;
            Ok(())
        }
    }
}

/// Upstream's deleteVolumeOperation on a fresh copy of the volume.
async fn delete_volume(v: &PersistentVolume, ctx: &Ctx) -> Result<(), Error> {
    let Some(fresh) = ctx.pv_api().get_opt(&v.name_any()).await? else {
        return Ok(());
    };
    if fresh.metadata.deletion_timestamp.is_some()
        || phase(&fresh) != "Released" && phase(&fresh) != "Failed"
    {
        return Ok(());
    }
    // Still released: the claim is gone (or another one with the same name replaced it).
    if referenced_claim(&fresh, ctx).await?.is_some() {
        return Ok(());
    }
    match deleter_for(&fresh) {
        Deleter::External => Ok(()),
        Deleter::None(message) => {
            ctx.update_volume_phase_with_event(
                &fresh,
                "Failed",
                "Warning",
                "VolumeFailedDelete",
                message,
            )
            .await?;
            Ok(())
        }
        Deleter::HostPath(path) => {
            if let Err(e) = remove_host_path(&path).await {
                ctx.update_volume_phase_with_event(
                    &fresh,
                    "Failed",
                    "Warning",
                    "VolumeFailedDelete",
                    e.to_string(),
                )
                .await?;
                return Ok(());
            }
            match ctx
                .pv_api()
                .delete(&fresh.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {
                    tracing::info!(volume = %fresh.name_any(), "deleted released volume");
                    Ok(())
                }
                Err(e) if is_status(&e, 404) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Removes a hostPath volume's directory (or file), as Go's os.RemoveAll: absent is fine.
async fn remove_host_path(path: &str) -> std::io::Result<()> {
    let result = match tokio::fs::symlink_metadata(path).await {
        Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(path).await,
        Ok(_) => tokio::fs::remove_file(path).await,
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

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

    fn claim(extra: Value) -> PersistentVolumeClaim {
        let mut c = json!({"metadata": {"name": "c", "namespace": "ns", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}});
        merge(&mut c, extra);
        serde_json::from_value(c).expect("pvc")
    }

    fn volume(name: &str, size: &str, extra: Value) -> Arc<PersistentVolume> {
        let mut v = json!({"metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": size},
                     "hostPath": {"path": "/data"}},
            "status": {"phase": "Available"}});
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).expect("pv"))
    }

    fn best(
        c: &PersistentVolumeClaim,
        vs: &[Arc<PersistentVolume>],
        delay: bool,
    ) -> Option<String> {
        find_best_match(c, vs, delay).map(|v| v.name_any())
    }

    #[test]
    fn the_smallest_matching_available_volume_wins() {
        let vols = [
            volume("big", "10Gi", json!({})),
            volume("small", "2Gi", json!({})),
            volume("tiny", "512Mi", json!({})),
            volume("released", "1Gi", json!({"status": {"phase": "Released"}})),
            volume(
                "classy",
                "1Gi",
                json!({"spec": {"storageClassName": "fast"}}),
            ),
            volume("block", "1Gi", json!({"spec": {"volumeMode": "Block"}})),
            volume(
                "taken",
                "1Gi",
                json!({"spec": {"claimRef": {"namespace": "ns", "name": "other"}}}),
            ),
        ];
        assert_eq!(
            best(&claim(json!({})), &vols, false).as_deref(),
            Some("small")
        );
        let fast = claim(json!({"spec": {"storageClassName": "fast"}}));
        assert_eq!(best(&fast, &vols, false).as_deref(), Some("classy"));
        // Waiting for the first consumer: only pre-bound volumes.
        assert_eq!(best(&claim(json!({})), &vols, true), None);
        let labelled = claim(json!({"spec": {"selector": {"matchLabels": {"tier": "gold"}}}}));
        assert_eq!(best(&labelled, &vols, false), None);
        let gold = volume(
            "gold",
            "20Gi",
            json!({"metadata": {"labels": {"tier": "gold"}}}),
        );
        assert_eq!(best(&labelled, &[gold], false).as_deref(), Some("gold"));
    }

    #[test]
    fn exact_access_modes_beat_smaller_volumes_with_extra_modes() {
        let vols = [
            volume(
                "rwo-rox",
                "1Gi",
                json!({"spec": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}}),
            ),
            volume("rwo", "5Gi", json!({})),
            volume(
                "rox",
                "1Gi",
                json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
            ),
        ];
        assert_eq!(
            best(&claim(json!({})), &vols, false).as_deref(),
            Some("rwo")
        );
        let both = claim(json!({"spec": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}}));
        assert_eq!(best(&both, &vols, false).as_deref(), Some("rwo-rox"));
    }

    #[test]
    fn volumes_pre_bound_to_the_claim_win_even_when_waiting_or_not_available() {
        let vols = [
            volume("small", "1Gi", json!({})),
            volume(
                "mine",
                "8Gi",
                json!({"spec": {"claimRef": {"namespace": "ns", "name": "c"}},
                       "status": {"phase": "Pending"}}),
            ),
            volume(
                "old-uid",
                "1Gi",
                json!({"spec": {"claimRef": {"namespace": "ns", "name": "c", "uid": "u0"}}}),
            ),
        ];
        assert_eq!(
            best(&claim(json!({})), &vols, false).as_deref(),
            Some("mine")
        );
        assert_eq!(
            best(&claim(json!({})), &vols, true).as_deref(),
            Some("mine")
        );
    }

    #[test]
    fn requested_volumes_must_satisfy_the_claim() {
        let c = claim(json!({}));
        let cases = [
            ("fits", volume("v", "1Gi", json!({})), Ok(())),
            (
                "small",
                volume("v", "1Mi", json!({})),
                Err("requested PV is too small"),
            ),
            (
                "class",
                volume("v", "1Gi", json!({"spec": {"storageClassName": "x"}})),
                Err("storageClassName does not match"),
            ),
            (
                "mode",
                volume("v", "1Gi", json!({"spec": {"volumeMode": "Block"}})),
                Err("incompatible volumeMode"),
            ),
            (
                "access",
                volume(
                    "v",
                    "1Gi",
                    json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
                ),
                Err("incompatible accessMode"),
            ),
        ];
        for (name, v, want) in cases {
            assert_eq!(
                check_volume_satisfy_claim(&v, &c),
                want.map_err(str::to_owned),
                "{name}"
            );
        }
    }

    #[test]
    fn delay_binding_follows_the_class_mode() {
        let class = |mode: Option<&str>| {
            let mut c = json!({"metadata": {"name": "local"}, "provisioner": "p"});
            if let Some(m) = mode {
                c["volumeBindingMode"] = json!(m);
            }
            Arc::new(serde_json::from_value::<StorageClass>(c).expect("class"))
        };
        let local = claim(json!({"spec": {"storageClassName": "local"}}));
        let wffc = class(Some("WaitForFirstConsumer"));
        assert_eq!(is_delay_binding(&local, |_| Some(wffc.clone())), Ok(true));
        let imm = class(Some("Immediate"));
        assert_eq!(is_delay_binding(&local, |_| Some(imm.clone())), Ok(false));
        assert_eq!(is_delay_binding(&local, |_| None), Ok(false));
        assert_eq!(
            is_delay_binding(&claim(json!({})), |_| Some(wffc.clone())),
            Ok(false)
        );
        let unset = class(None);
        assert_eq!(
            is_delay_binding(&local, |_| Some(unset.clone())),
            Err(r#"VolumeBindingMode not set for StorageClass "local""#.to_owned())
        );
    }

    #[test]
    fn deleters_follow_upstreams_controller_plugins() {
        let v = |extra: Value| {
            let mut v = json!({"metadata": {"name": "pv"}, "spec": {}});
            merge(&mut v, extra);
            serde_json::from_value::<PersistentVolume>(v).expect("pv")
        };
        let cases = [
            (
                "hostPath under /tmp",
                v(json!({"spec": {"hostPath": {"path": "/tmp/data"}}})),
                Deleter::HostPath("/tmp/data".into()),
            ),
            (
                "hostPath elsewhere",
                v(json!({"spec": {"hostPath": {"path": "/data"}}})),
                Deleter::None(
                    "host_path deleter only supports /tmp/.+ but received provided /data".into(),
                ),
            ),
            (
                "bare /tmp/",
                v(json!({"spec": {"hostPath": {"path": "/tmp/"}}})),
                Deleter::None(
                    "host_path deleter only supports /tmp/.+ but received provided /tmp/".into(),
                ),
            ),
            (
                "local",
                v(json!({"spec": {"local": {"path": "/mnt/disk"}}})),
                Deleter::None(
                    r#"error getting deleter volume plugin for volume "pv": no volume plugin matched"#
                        .into(),
                ),
            ),
            (
                "nfs",
                v(json!({"spec": {"nfs": {"server": "s", "path": "/x"}}})),
                Deleter::None(
                    r#"error getting deleter volume plugin for volume "pv": no deletable volume plugin matched"#
                        .into(),
                ),
            ),
            (
                "external provisioner",
                v(json!({"metadata": {"annotations": {ANN_DYNAMICALLY_PROVISIONED: "ebs.csi.aws.com"}},
                         "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "h"}}})),
                Deleter::External,
            ),
        ];
        for (name, pv, want) in cases {
            assert_eq!(deleter_for(&pv), want, "{name}");
        }
    }
}
