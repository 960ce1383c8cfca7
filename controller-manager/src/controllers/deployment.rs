//! deployment: rolls ReplicaSets forward (RollingUpdate with maxSurge/maxUnavailable, or
//! Recreate), keeps revision annotations and history, and reports Progressing/Available.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::chrono::Utc;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::util::{
    apply_claim, claim_of, controller_of, controller_ref, is_gone_or_changed, is_terminal, Claim,
};
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// Revision of a Deployment/ReplicaSet.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had (after rollbacks).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// replicas + maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Label that ties pods to one template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

struct Ctx {
    client: kube::Client,
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let deployments = ctx.informers.get::<Deployment>();
    let sets = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        sets: sets.store(),
        pods: pods.store(),
    });
    let rs_store = sets.store();
    let deploy_store = deployments.store();
    let controller = Controller::for_shared_stream(deployments.subscribe(), deployments.store())
        .owns_shared_stream(sets.subscribe())
        // An orphan ReplicaSet wakes every Deployment whose selector matches it, to be adopted.
        .watches_shared_stream(sets.subscribe(), move |rs: Arc<ReplicaSet>| {
            super::util::orphan_claimants(&deploy_store, rs.as_ref(), |d: &Deployment| {
                d.spec.as_ref().map(|s| &s.selector)
            })
        })
        // Recreate waits for old pods to go: map pod -> ReplicaSet -> Deployment.
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| {
            let owner = controller_of(pod.as_ref())?;
            let ns = pod.namespace()?;
            let rs =
                rs_store.get(&kube::runtime::reflector::ObjectRef::new(&owner.name).within(&ns))?;
            let dep = controller_of(rs.as_ref())?;
            (dep.kind == "Deployment")
                .then(|| kube::runtime::reflector::ObjectRef::new(&dep.name).within(&ns))
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(ctx.config.concurrency.deployment));
    Ok(drain("deployment", controller.run(reconcile, error_policy, state)).boxed())
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// (replicas, ready, available) of a ReplicaSet's status. A status older than the ReplicaSet's
/// spec (its controller has not seen a scale yet) vouches for no ready or available pods: a
/// stale "6 available" from before a scale to zero must not complete the next rollout.
fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    let current = s.observed_generation.unwrap_or(0) >= rs.metadata.generation.unwrap_or(0);
    if !current {
        return (s.replicas, 0, 0);
    }
    (
        s.replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Resolves an int-or-percent against `total`, rounding up or down.
pub fn resolve(
    value: Option<&IntOrString>,
    default_percent: i32,
    total: i32,
    round_up: bool,
) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct = s
                .trim_end_matches('%')
                .parse::<i32>()
                .unwrap_or(default_percent);
            percent(pct, total, round_up)
        }
        None => percent(default_percent, total, round_up),
    }
}

fn percent(pct: i32, total: i32, round_up: bool) -> i32 {
    let product = i64::from(pct) * i64::from(total);
    let v = if round_up {
        (product + 99) / 100
    } else {
        product / 100
    };
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// (maxSurge, maxUnavailable) as upstream: surge rounds up, unavailable down, never both zero.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let strategy = spec.strategy.unwrap_or_default();
    if strategy.type_.as_deref() == Some("Recreate") {
        return (0, 0);
    }
    let ru = strategy.rolling_update.unwrap_or_default();
    let surge = resolve(ru.max_surge.as_ref(), 25, desired, true);
    let mut unavailable = resolve(ru.max_unavailable.as_ref(), 25, desired, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(desired))
}

/// The template without the pod-template-hash label, for comparing templates.
fn normalized(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
        if labels.is_empty() {
            if let Some(m) = t.metadata.as_mut() {
                m.labels = None;
            }
        }
    }
    if t.metadata
        .as_ref()
        .is_some_and(|m| *m == ObjectMeta::default())
    {
        t.metadata = None;
    }
    serde_json::to_value(t).unwrap_or_default()
}

/// A short, stable, DNS-safe hash of the template and collision count.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hasher = Sha256::new();
    hasher.update(normalized(template).to_string().as_bytes());
    if let Some(c) = collision_count {
        hasher.update(c.to_le_bytes());
    }
    let digest = hasher.finalize();
    let n = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
    n.to_string()
        .bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

struct Sets {
    new: Option<ReplicaSet>,
    old: Vec<ReplicaSet>,
}

impl Sets {
    fn all(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.new.iter().chain(self.old.iter())
    }
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = Time(Utc::now());
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Sets `c` in `conditions`, keeping lastTransitionTime when the status did not change.
fn set_condition(conditions: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition) {
    if let Some(existing) = conditions.iter_mut().find(|e| e.type_ == c.type_) {
        if existing.status == c.status && existing.reason == c.reason {
            // Same state: keep times unless the message changed.
            if existing.message != c.message {
                existing.message = c.message;
                existing.last_update_time = c.last_update_time;
            }
            return;
        }
        if existing.status == c.status {
            c.last_transition_time = existing.last_transition_time.clone();
        }
        *existing = c;
    } else {
        conditions.push(c);
    }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = d
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = d.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let spec = d.spec.clone().ok_or(Error::MissingField("spec"))?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let owner_ref = controller_ref(d.as_ref()).ok_or(Error::MissingField("metadata.uid"))?;
    let deleting = d.metadata.deletion_timestamp.is_some();
    let mut owned: Vec<ReplicaSet> = Vec::new();
    for rs in ctx
        .sets
        .state()
        .into_iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()))
    {
        match claim_of(&uid, deleting, &spec.selector, rs.as_ref()) {
            // Matching orphan ReplicaSets (e.g. left by --cascade=orphan) are adopted.
            Some(claim) => match apply_claim(&rs_api, rs.as_ref(), &owner_ref, claim).await {
                Ok(updated) => {
                    tracing::info!(deployment = %d.name_any(), replicaset = %rs.name_any(), ?claim, "claimed replica set");
                    if claim == Claim::Adopt {
                        owned.push(updated);
                    }
                }
                Err(e) if is_gone_or_changed(&e) => {}
                Err(e) => return Err(e.into()),
            },
            None => {
                if controller_of(rs.as_ref()).is_some_and(|r| r.uid == uid) {
                    owned.push((*rs).clone());
                }
            }
        }
    }
    owned.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));

    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let want = normalized(&spec.template);
    let (new, old): (Vec<ReplicaSet>, Vec<ReplicaSet>) = owned.into_iter().partition(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .map(normalized)
            == Some(want.clone())
    });
    // With several equal templates (should not happen), the oldest wins.
    let mut new_iter = new.into_iter();
    let mut sets = Sets {
        new: new_iter.next(),
        old: old.into_iter().chain(new_iter).collect(),
    };
    let desired = spec.replicas.unwrap_or(1);
    let (surge, max_unavailable) = surge_and_unavailable(&d);
    let paused = spec.paused.unwrap_or(false);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let max_old_revision = sets.old.iter().map(revision).max().unwrap_or(0);
    let new_revision = max_old_revision + 1;

    // Keep the new ReplicaSet's revision the newest (a rollback reuses an old ReplicaSet).
    if let Some(new) = sets.new.as_mut() {
        if revision(new) < new_revision && !paused {
            let old_rev = revision(new);
            let mut annotations = serde_json::Map::new();
            annotations.insert(REVISION.into(), json!(new_revision.to_string()));
            if old_rev > 0 {
                let mut history: Vec<String> = new
                    .annotations()
                    .get(REVISION_HISTORY)
                    .map(|h| h.split(',').map(str::to_owned).collect())
                    .unwrap_or_default();
                history.push(old_rev.to_string());
                annotations.insert(REVISION_HISTORY.into(), json!(history.join(",")));
            }
            let patch = json!({"metadata": {"annotations": annotations}});
            *new = rs_api
                .patch(
                    &new.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
    }

    let mut changed = false;
    let scaling_event = sets.all().filter(|rs| replicas(rs) > 0).any(|rs| {
        rs.annotations()
            .get(DESIRED_REPLICAS)
            .and_then(|v| v.parse::<i32>().ok())
            != Some(desired)
    });
    if paused || (scaling_event && sets.new.is_some()) {
        changed |= scale_proportionally(&rs_api, &mut sets, desired, surge).await?;
    } else if recreate {
        changed |= rollout_recreate(&d, &ctx, &rs_api, &mut sets, desired, new_revision).await?;
    } else {
        changed |= rollout_rolling(
            &d,
            &rs_api,
            &mut sets,
            desired,
            surge,
            max_unavailable,
            new_revision,
        )
        .await?;
    }

    // Cleanup old revisions once the rollout is done (or while paused, as upstream).
    let complete = sets.new.as_ref().is_some_and(|n| {
        let (r, _, a) = status_of(n);
        replicas(n) == desired && r == desired && a == desired
    }) && sets
        .old
        .iter()
        .all(|rs| replicas(rs) == 0 && status_of(rs).0 == 0);
    if complete || paused {
        cleanup(&rs_api, &sets, spec.revision_history_limit.unwrap_or(10)).await?;
    }

    // The Deployment's own revision annotation follows the new ReplicaSet.
    if let Some(new) = &sets.new {
        let rev = revision(new).to_string();
        if d.annotations().get(REVISION) != Some(&rev) {
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            // PUT, not PATCH: upstream's deployment-controller role may only update.
            let mut updated = (*d).clone();
            updated
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(REVISION.to_owned(), rev);
            api.replace(&d.name_any(), &PostParams::default(), &updated)
                .await?;
        }
    }

    let requeue = sync_status(
        &d,
        &ctx,
        &sets,
        desired,
        max_unavailable,
        paused,
        complete,
        changed,
    )
    .await?;
    Ok(requeue)
}

async fn scale(
    api: &Api<ReplicaSet>,
    rs: &mut ReplicaSet,
    to: i32,
    desired: i32,
    surge: i32,
) -> Result<bool, Error> {
    let annotated = rs.annotations().get(DESIRED_REPLICAS) == Some(&desired.to_string())
        && rs.annotations().get(MAX_REPLICAS) == Some(&(desired + surge).to_string());
    if replicas(rs) == to && annotated {
        return Ok(false);
    }
    let patch = json!({
        "metadata": {"annotations": {
            DESIRED_REPLICAS: desired.to_string(),
            MAX_REPLICAS: (desired + surge).to_string(),
        }},
        "spec": {"replicas": to},
    });
    let from = replicas(rs);
    tracing::info!(replicaset = %rs.name_any(), from, to, "scaling replica set");
    *rs = api
        .patch(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    if from != to {
        scaled_event(api, rs, from, to);
    }
    Ok(true)
}

/// Upstream's ScalingReplicaSet event on the Deployment owning `rs` (seen in `kubectl describe
/// deployment`), recorded in the background.
fn scaled_event(api: &Api<ReplicaSet>, rs: &ReplicaSet, from: i32, to: i32) {
    let Some(owner) = controller_of(rs) else {
        return;
    };
    let object = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(owner.api_version.clone()),
        kind: Some(owner.kind.clone()),
        name: Some(owner.name.clone()),
        namespace: rs.namespace(),
        uid: Some(owner.uid.clone()),
        ..Default::default()
    };
    let direction = if to > from { "up" } else { "down" };
    let message = format!(
        "Scaled {direction} replica set {} from {from} to {to}",
        rs.name_any()
    );
    super::util::emit_ref(
        &api.clone().into_client(),
        "deployment-controller",
        object,
        "Normal",
        "ScalingReplicaSet",
        message,
    );
}

async fn create_new(
    d: &Deployment,
    api: &Api<ReplicaSet>,
    sets: &mut Sets,
    initial: i32,
    desired: i32,
    surge: i32,
    new_revision: i64,
) -> Result<(), Error> {
    let spec = d.spec.clone().ok_or(Error::MissingField("spec"))?;
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision);
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut annotations: BTreeMap<String, String> = d
        .annotations()
        .iter()
        .filter(|(k, _)| {
            k.as_str() != REVISION
                && k.as_str() != "kubectl.kubernetes.io/last-applied-configuration"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(REVISION.into(), new_revision.to_string());
    annotations.insert(DESIRED_REPLICAS.into(), desired.to_string());
    annotations.insert(MAX_REPLICAS.into(), (desired + surge).to_string());
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.name_any())),
            namespace: d.namespace(),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            annotations: Some(annotations),
            owner_references: controller_ref(d).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(initial),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    match api.create(&PostParams::default(), &rs).await {
        Ok(created) => {
            tracing::info!(deployment = %d.name_any(), replicaset = %created.name_any(), replicas = initial, "created new replica set");
            if initial > 0 {
                scaled_event(api, &created, 0, initial);
            }
            sets.new = Some(created);
            Ok(())
        }
        Err(e) if is_status(&e, 409) => {
            // Either our cache lags, or another template hashed to this name: bump the
            // collision count so the next sync picks a different name.
            let existing = api.get(&rs.name_any()).await?;
            let same = existing
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .map(normalized)
                == Some(normalized(&spec.template));
            let ours = controller_of(&existing).map(|r| r.uid.clone()) == d.uid();
            if same && ours {
                sets.new = Some(existing);
                return Ok(());
            }
            let dapi: Api<Deployment> = Api::namespaced(
                api.clone().into_client(),
                &d.namespace().unwrap_or_default(),
            );
            let mut updated = d.clone();
            updated
                .status
                .get_or_insert_with(Default::default)
                .collision_count = Some(collision.unwrap_or(0) + 1);
            dapi.replace_status(
                &d.name_any(),
                &PostParams::default(),
                serde_json::to_vec(&updated)?,
            )
            .await?;
            Err(Error::Other(format!(
                "hash collision for replica set {}",
                rs.name_any()
            )))
        }
        Err(e) => Err(e.into()),
    }
}

async fn rollout_rolling(
    d: &Deployment,
    api: &Api<ReplicaSet>,
    sets: &mut Sets,
    desired: i32,
    surge: i32,
    max_unavailable: i32,
    new_revision: i64,
) -> Result<bool, Error> {
    let total: i32 = sets.all().map(replicas).sum();
    let max_total = desired + surge;
    // Scale up the new ReplicaSet within maxSurge.
    let new_target = |new_replicas: i32, total: i32| -> i32 {
        if new_replicas >= desired {
            return desired;
        }
        if total >= max_total {
            return new_replicas;
        }
        new_replicas + (max_total - total).min(desired - new_replicas)
    };
    match sets.new.as_mut() {
        None => {
            let initial = new_target(0, total);
            create_new(d, api, sets, initial, desired, surge, new_revision).await?;
            return Ok(true);
        }
        Some(new) => {
            let target = new_target(replicas(new), total);
            if target != replicas(new) {
                return scale(api, new, target, desired, surge).await;
            }
            scale(api, new, target, desired, surge).await?;
        }
    }

    // Scale down old ReplicaSets within maxUnavailable.
    let old_total: i32 = sets.old.iter().map(replicas).sum();
    if old_total == 0 {
        return Ok(false);
    }
    let all_total: i32 = sets.all().map(replicas).sum();
    let min_available = desired - max_unavailable;
    let new_unavailable = sets
        .new
        .as_ref()
        .map(|n| replicas(n) - status_of(n).2)
        .unwrap_or(0);
    let max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Ok(false);
    }
    let mut budget = max_scaled_down;
    let mut changed = false;
    // First old replicas that are not available anyway.
    for rs in sets.old.iter_mut() {
        if budget <= 0 {
            break;
        }
        let unhealthy = replicas(rs) - status_of(rs).2;
        if unhealthy <= 0 {
            continue;
        }
        let down = unhealthy.min(budget);
        let to = replicas(rs) - down;
        changed |= scale(api, rs, to, desired, surge).await?;
        budget -= down;
    }
    // Then available ones, as long as availability stays at or above minAvailable.
    let available: i32 = sets.all().map(|rs| status_of(rs).2).sum();
    let mut allowed = (available - min_available).min(budget);
    for rs in sets.old.iter_mut() {
        if allowed <= 0 {
            break;
        }
        let r = replicas(rs);
        if r == 0 {
            continue;
        }
        let down = r.min(allowed);
        changed |= scale(api, rs, r - down, desired, surge).await?;
        allowed -= down;
    }
    Ok(changed)
}

async fn rollout_recreate(
    d: &Deployment,
    ctx: &Ctx,
    api: &Api<ReplicaSet>,
    sets: &mut Sets,
    desired: i32,
    new_revision: i64,
) -> Result<bool, Error> {
    let mut changed = false;
    for rs in sets.old.iter_mut() {
        changed |= scale(api, rs, 0, desired, 0).await?;
    }
    if changed {
        return Ok(true);
    }
    let old_uids: Vec<String> = sets.old.iter().filter_map(|rs| rs.uid()).collect();
    let old_pods_running = ctx.pods.state().iter().any(|p| {
        controller_of(p.as_ref()).is_some_and(|r| old_uids.contains(&r.uid)) && !is_terminal(p)
    });
    if old_pods_running {
        return Ok(false);
    }
    match sets.new.as_mut() {
        None => {
            create_new(d, api, sets, desired, desired, 0, new_revision).await?;
            Ok(true)
        }
        Some(new) => scale(api, new, desired, desired, 0).await,
    }
}

/// Scales active ReplicaSets to a new `desired` (a scaling event, or a paused Deployment),
/// spreading the difference in proportion to their sizes.
async fn scale_proportionally(
    api: &Api<ReplicaSet>,
    sets: &mut Sets,
    desired: i32,
    surge: i32,
) -> Result<bool, Error> {
    let active: Vec<usize> = (0..sets.old.len())
        .filter(|&i| replicas(&sets.old[i]) > 0)
        .collect();
    let mut changed = false;
    if let Some(new) = sets.new.as_mut() {
        if active.is_empty() {
            return scale(api, new, desired, desired, surge).await;
        }
    } else if active.len() == 1 {
        let rs = &mut sets.old[active[0]];
        return scale(api, rs, desired, desired, surge).await;
    }
    let all_total: i32 = sets.all().map(replicas).sum();
    let allowed = desired + surge;
    let to_add = allowed - all_total;
    if to_add == 0 || all_total == 0 {
        return Ok(false);
    }
    let mut targets: Vec<(i32, i32)> = Vec::new(); // (current, target) for new then olds
    let mut assigned = 0;
    let mut all: Vec<&mut ReplicaSet> = sets.new.iter_mut().chain(sets.old.iter_mut()).collect();
    for rs in all.iter() {
        let r = replicas(rs);
        let share = if r == 0 {
            0
        } else {
            i32::try_from(i64::from(r) * i64::from(to_add) / i64::from(all_total)).unwrap_or(0)
        };
        assigned += share;
        targets.push((r, r + share));
    }
    // Leftover to the largest (new first).
    if let Some(first) = targets.iter_mut().find(|(r, _)| *r > 0) {
        first.1 = (first.1 + to_add - assigned).max(0);
    }
    for (rs, (_, target)) in all.iter_mut().zip(targets) {
        changed |= scale(api, rs, target.max(0), desired, surge).await?;
    }
    Ok(changed)
}

async fn cleanup(api: &Api<ReplicaSet>, sets: &Sets, limit: i32) -> Result<(), Error> {
    let mut candidates: Vec<&ReplicaSet> = sets
        .old
        .iter()
        .filter(|rs| {
            replicas(rs) == 0 && status_of(rs).0 == 0 && rs.metadata.deletion_timestamp.is_none()
        })
        .collect();
    let limit = usize::try_from(limit).unwrap_or(0);
    if candidates.len() <= limit {
        return Ok(());
    }
    candidates.sort_by_key(|rs| revision(rs));
    let extra = candidates.len() - limit;
    for rs in candidates.into_iter().take(extra) {
        tracing::info!(replicaset = %rs.name_any(), "deleting old replica set beyond revisionHistoryLimit");
        match api
            .delete(&rs.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn sync_status(
    d: &Deployment,
    ctx: &Ctx,
    sets: &Sets,
    desired: i32,
    max_unavailable: i32,
    paused: bool,
    complete: bool,
    _changed: bool,
) -> Result<Action, Error> {
    let old = d.status.clone().unwrap_or_default();
    let spec_total: i32 = sets.all().map(replicas).sum();
    let actual: i32 = sets.all().map(|rs| status_of(rs).0).sum();
    let ready: i32 = sets.all().map(|rs| status_of(rs).1).sum();
    let available: i32 = sets.all().map(|rs| status_of(rs).2).sum();
    let updated = sets.new.as_ref().map(|n| status_of(n).0).unwrap_or(0);
    let mut conditions = old.conditions.clone().unwrap_or_default();
    if available >= desired - max_unavailable {
        set_condition(
            &mut conditions,
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set_condition(
            &mut conditions,
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }
    let new_name = sets.new.as_ref().map(|n| n.name_any()).unwrap_or_default();
    let progressing = conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .cloned();
    let deadline = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    let mut requeue = None;
    if paused {
        set_condition(
            &mut conditions,
            condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
            ),
        );
    } else if complete {
        set_condition(
            &mut conditions,
            condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            ),
        );
    } else {
        let progressed = updated > old.updated_replicas.unwrap_or(0)
            || ready > old.ready_replicas.unwrap_or(0)
            || available > old.available_replicas.unwrap_or(0)
            || actual != old.replicas.unwrap_or(0)
            || progressing.as_ref().is_none_or(|c| {
                matches!(
                    c.reason.as_deref(),
                    Some("DeploymentPaused") | Some("NewReplicaSetAvailable")
                ) || !c
                    .message
                    .as_deref()
                    .unwrap_or("")
                    .contains(&format!("\"{new_name}\""))
            });
        if progressed && !new_name.is_empty() {
            let mut c = condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{new_name}\" is progressing."),
            );
            if let Some(existing) = conditions.iter_mut().find(|e| e.type_ == "Progressing") {
                if existing.status == "True" {
                    c.last_transition_time = existing.last_transition_time.clone();
                }
                *existing = c;
            } else {
                conditions.push(c);
            }
        } else if let Some(p) = &progressing {
            let since = p
                .last_update_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or_else(Utc::now);
            let elapsed = (Utc::now() - since).num_seconds();
            if p.status == "True" && elapsed > i64::from(deadline) {
                set_condition(
                    &mut conditions,
                    condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                    ),
                );
            } else if p.status == "True" {
                let left = u64::try_from(i64::from(deadline) - elapsed + 1).unwrap_or(1);
                requeue = Some(Duration::from_secs(left));
            }
        }
    }
    let status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(actual),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((spec_total.max(desired) - available).max(0)),
        conditions: Some(conditions),
        collision_count: old.collision_count,
        terminating_replicas: None,
    };
    let same = |a: &DeploymentStatus, b: &DeploymentStatus| {
        let strip = |s: &DeploymentStatus| {
            let mut s = s.clone();
            for c in s.conditions.iter_mut().flatten() {
                c.last_update_time = None;
                c.last_transition_time = None;
            }
            serde_json::to_value(s).unwrap_or_default()
        };
        strip(a) == strip(b)
    };
    if !same(&old, &status) {
        let api: Api<Deployment> =
            Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
        let mut updated = d.clone();
        updated.status = Some(status);
        match api
            .replace_status(
                &d.name_any(),
                &PostParams::default(),
                serde_json::to_vec(&updated)?,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(match requeue {
        Some(after) => crate::controllers::requeue_after(after),
        None => crate::controllers::requeue_after(Duration::from_secs(60)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

    fn deployment(
        replicas: i32,
        surge: Option<IntOrString>,
        unavailable: Option<IntOrString>,
    ) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: surge,
                        max_unavailable: unavailable,
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    #[test]
    fn surge_rounds_up_and_unavailable_rounds_down() {
        let cases = [
            ("defaults of 25% on 10", deployment(10, None, None), (3, 2)),
            (
                "ints",
                deployment(4, Some(IntOrString::Int(1)), Some(IntOrString::Int(0))),
                (1, 0),
            ),
            (
                "both zero makes unavailable one",
                deployment(3, Some(IntOrString::Int(0)), Some(IntOrString::Int(0))),
                (0, 1),
            ),
            (
                "percent strings",
                deployment(
                    3,
                    Some(IntOrString::String("50%".into())),
                    Some(IntOrString::String("50%".into())),
                ),
                (2, 1),
            ),
        ];
        for (name, d, want) in cases {
            assert_eq!(surge_and_unavailable(&d), want, "{name}");
        }
    }

    #[test]
    fn template_hash_ignores_the_hash_label_and_changes_with_collisions() {
        let mut t = PodTemplateSpec::default();
        let a = template_hash(&t, None);
        t.metadata = Some(ObjectMeta {
            labels: Some(BTreeMap::from([(POD_TEMPLATE_HASH.to_owned(), a.clone())])),
            ..ObjectMeta::default()
        });
        assert_eq!(template_hash(&t, None), a);
        assert_ne!(template_hash(&t, Some(1)), a);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
