//! statefulset: runs pods with stable names and storage, creating, deleting and updating them in
//! ordinal order, and keeps the StatefulSet's revisions and status current.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::ResourceExt;

use super::history::{self, CONTROLLER_REVISION_HASH};
use super::util::{claim_pods, controller_ref, is_available, is_ready};
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// The label with the pod's own name, which a Service can select one pod by.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let sets = ctx.informers.get::<StatefulSet>();
    let pods = ctx.informers.get::<Pod>();
    let revisions = ctx.informers.get::<ControllerRevision>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        pods: pods.store(),
        revisions: revisions.store(),
    });
    let set_store = sets.store();
    let controller = Controller::for_shared_stream(sets.subscribe(), sets.store())
        .owns_shared_stream(pods.subscribe())
        .owns_shared_stream(revisions.subscribe())
        // An orphan pod wakes every StatefulSet whose selector matches it, to be adopted.
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| {
            super::util::orphan_claimants(&set_store, pod.as_ref(), |s: &StatefulSet| {
                s.spec.as_ref().map(|s| &s.selector)
            })
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(ctx.config.concurrency.statefulset));
    Ok(drain(
        "statefulset",
        controller.run(reconcile, error_policy, state),
    )
    .boxed())
}

/// The ordinal of a pod named `<set>-<ordinal>`.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A pod as the ordering decisions see it.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    pub ordinal: i32,
    /// The revision name in its `controller-revision-hash` label.
    pub revision: String,
    /// Running, Ready and available for minReadySeconds.
    pub healthy: bool,
    pub terminating: bool,
    pub failed: bool,
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the pod (and its claims) at the update revision, or else the current one.
    Create { ordinal: i32, at_update: bool },
    /// Delete the pod with this ordinal.
    Delete(i32),
}

/// What the set asks for.
#[derive(Debug, Clone)]
pub struct Want<'a> {
    pub replicas: i32,
    /// OrderedReady: one pod at a time, each waiting for its predecessor.
    pub monotonic: bool,
    /// `Some(partition)` under RollingUpdate, `None` under OnDelete.
    pub partition: Option<i32>,
    pub update_revision: &'a str,
}

/// Upstream's StatefulSet update step: create missing pods in ordinal order, delete condemned
/// ones from the highest ordinal, then replace outdated pods from the highest ordinal down to
/// the partition; OrderedReady waits for each pod to be healthy before the next.
pub fn plan(want: &Want<'_>, pods: &[Slot]) -> Vec<Step> {
    let by_ordinal: BTreeMap<i32, &Slot> = pods.iter().map(|p| (p.ordinal, p)).collect();
    let mut steps = Vec::new();
    let at_update = |ordinal: i32| want.partition.is_none_or(|p| ordinal >= p);
    for ordinal in 0..want.replicas.max(0) {
        match by_ordinal.get(&ordinal) {
            None => {
                steps.push(Step::Create {
                    ordinal,
                    at_update: at_update(ordinal),
                });
                if want.monotonic {
                    return steps;
                }
            }
            Some(p) if p.failed && !p.terminating => {
                // Recreated once it is gone.
                steps.push(Step::Delete(ordinal));
                if want.monotonic {
                    return steps;
                }
            }
            Some(p) if want.monotonic && (p.terminating || !p.healthy) => return steps,
            Some(_) => {}
        }
    }
    let mut condemned: Vec<&Slot> = pods.iter().filter(|p| p.ordinal >= want.replicas).collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(p.ordinal));
    let first_unhealthy = condemned.iter().find(|p| !p.healthy).map(|p| p.ordinal);
    for p in condemned {
        if p.terminating {
            if want.monotonic {
                return steps;
            }
            continue;
        }
        if want.monotonic && !p.healthy && first_unhealthy != Some(p.ordinal) {
            return steps;
        }
        steps.push(Step::Delete(p.ordinal));
        if want.monotonic {
            return steps;
        }
    }
    if !steps.is_empty() {
        return steps;
    }
    let Some(partition) = want.partition else {
        return steps;
    };
    for ordinal in (partition.max(0)..want.replicas).rev() {
        let Some(p) = by_ordinal.get(&ordinal) else {
            return steps;
        };
        if p.revision != want.update_revision && !p.terminating {
            steps.push(Step::Delete(ordinal));
            return steps;
        }
        if !p.healthy || p.terminating {
            return steps;
        }
    }
    steps
}

fn claim_name(claim: &PersistentVolumeClaim, set: &str, ordinal: i32) -> String {
    format!("{}-{set}-{ordinal}", claim.name_any())
}

/// The pod for `ordinal` from `template` at `revision`: stable name, hostname and subdomain,
/// identity labels and one claim per volumeClaimTemplate.
fn new_pod(
    set: &StatefulSet,
    template: PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> Result<Pod, Error> {
    let spec = set.spec.as_ref().ok_or(Error::MissingField("spec"))?;
    let set_name = set.name_any();
    let name = format!("{set_name}-{ordinal}");
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH.into(), revision.to_owned());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut pod_spec = template
        .spec
        .ok_or(Error::MissingField("spec.template.spec"))?;
    pod_spec.hostname = Some(name.clone());
    pod_spec.subdomain = spec.service_name.clone().filter(|s| !s.is_empty());
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    for claim in spec.volume_claim_templates.iter().flatten() {
        let volume = Volume {
            name: claim.name_any(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(claim, &set_name, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        };
        volumes.retain(|v| v.name != volume.name);
        volumes.push(volume);
    }
    if volumes.is_empty() {
        pod_spec.volumes = None;
    }
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: controller_ref(set).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    })
}

/// Creates the pod's claims that do not exist yet; they outlive the pod (upstream's default
/// Retain policy), so they carry no owner.
async fn create_claims(
    client: &kube::Client,
    set: &StatefulSet,
    ordinal: i32,
) -> Result<(), Error> {
    let Some(spec) = set.spec.as_ref() else {
        return Ok(());
    };
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    for template in spec.volume_claim_templates.iter().flatten() {
        let mut claim = template.clone();
        let mut labels = claim.metadata.labels.take().unwrap_or_default();
        labels.extend(selector_labels.clone());
        claim.metadata = ObjectMeta {
            name: Some(claim_name(template, &set.name_any(), ordinal)),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            annotations: claim.metadata.annotations.take(),
            ..ObjectMeta::default()
        };
        claim.status = None;
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn is_running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && is_ready(pod)
}

fn slot(pod: &Pod, ordinal: i32, min_ready: i32, now: DateTime<Utc>) -> Slot {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    Slot {
        ordinal,
        revision: pod
            .labels()
            .get(CONTROLLER_REVISION_HASH)
            .cloned()
            .unwrap_or_default(),
        healthy: is_running_and_ready(pod) && is_available(pod, min_ready, now),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        failed: matches!(phase, Some("Failed") | Some("Succeeded")),
    }
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = set
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = set.name_any();
    let uid = set.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let spec = set.spec.clone().ok_or(Error::MissingField("spec"))?;
    let now = Utc::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let old_status = set.status.clone().unwrap_or_default();

    let owner = history::Owner {
        namespace: &ns,
        name: &name,
        uid: &uid,
        owner_ref: controller_ref(set.as_ref()).ok_or(Error::MissingField("metadata.uid"))?,
        template: &spec.template,
        annotations: set.annotations().clone(),
        collision_count: old_status.collision_count,
    };
    let hist = history::sync(
        &ctx.client,
        &owner,
        history::claim(
            &ctx.client,
            &ctx.revisions,
            &ns,
            &owner.owner_ref,
            &spec.selector,
        )
        .await?,
    )
    .await?;
    let update_revision = hist.update.name_any();
    let current = old_status
        .current_revision
        .as_ref()
        .and_then(|c| hist.all.iter().find(|r| &r.name_any() == c))
        .unwrap_or(&hist.update)
        .clone();

    // Orphans named like members (`<set>-<ordinal>`) and matching the selector are adopted, as
    // upstream does after `kubectl delete statefulset --cascade=orphan` and a re-create.
    let in_ns = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()));
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owned = claim_pods(
        &pod_api,
        in_ns,
        &owner.owner_ref,
        false,
        &spec.selector,
        |p| ordinal_of(&name, &p.name_any()).is_some(),
    )
    .await?;
    let pods: Vec<(i32, Arc<Pod>)> = owned
        .into_iter()
        .filter_map(|p| ordinal_of(&name, &p.name_any()).map(|o| (o, p)))
        .collect();
    let slots: Vec<Slot> = pods
        .iter()
        .map(|(o, p)| slot(p, *o, min_ready, now))
        .collect();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let want = Want {
        replicas: spec.replicas.unwrap_or(1),
        monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
        partition: rolling.then(|| {
            strategy
                .rolling_update
                .as_ref()
                .and_then(|r| r.partition)
                .unwrap_or(0)
        }),
        update_revision: &update_revision,
    };
    let steps = plan(&want, &slots);

    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    for step in &steps {
        match *step {
            Step::Create { ordinal, at_update } => {
                let (template, revision) = if at_update {
                    (spec.template.clone(), update_revision.clone())
                } else {
                    let t =
                        history::template_from(&current).unwrap_or_else(|| spec.template.clone());
                    (t, current.name_any())
                };
                create_claims(&ctx.client, &set, ordinal).await?;
                let pod = new_pod(&set, template, &revision, ordinal)?;
                match api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        tracing::info!(statefulset = %format!("{ns}/{name}"), pod = %pod.name_any(), "created pod");
                        super::util::emit(
                            &ctx.client,
                            "statefulset-controller",
                            set.as_ref(),
                            "Normal",
                            "SuccessfulCreate",
                            format!(
                                "create Pod {} in StatefulSet {name} successful",
                                pod.name_any()
                            ),
                        );
                    }
                    Err(e) if is_status(&e, 409) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Step::Delete(ordinal) => {
                let Some((_, pod)) = pods.iter().find(|(o, _)| *o == ordinal) else {
                    continue;
                };
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: pod.uid(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&pod.name_any(), &params).await {
                    Ok(_) => {
                        tracing::info!(statefulset = %format!("{ns}/{name}"), pod = %pod.name_any(), "deleted pod")
                    }
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    let status = compute_status(
        &set,
        &pods,
        &current.name_any(),
        &update_revision,
        rolling,
        min_ready,
        now,
        hist.collision_count,
    );
    if steps.is_empty() {
        let mut in_use: HashSet<String> = slots.iter().map(|s| s.revision.clone()).collect();
        in_use.insert(update_revision.clone());
        in_use.extend(status.current_revision.clone());
        history::truncate(
            &ctx.client,
            &ns,
            &hist.all,
            &in_use,
            spec.revision_history_limit,
        )
        .await?;
    }
    if set.status.as_ref() != Some(&status) {
        let mut updated = set.as_ref().clone();
        updated.status = Some(status.clone());
        let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        match sets
            .replace_status(&name, &PostParams::default(), serde_json::to_vec(&updated)?)
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    if min_ready > 0 && status.ready_replicas.unwrap_or(0) > status.available_replicas.unwrap_or(0)
    {
        return Ok(crate::controllers::requeue_after(Duration::from_secs(
            u64::try_from(min_ready).unwrap_or(1),
        )));
    }
    Ok(crate::controllers::requeue_after(Duration::from_secs(60)))
}

#[allow(clippy::too_many_arguments)]
fn compute_status(
    set: &StatefulSet,
    pods: &[(i32, Arc<Pod>)],
    current_revision: &str,
    update_revision: &str,
    rolling: bool,
    min_ready: i32,
    now: DateTime<Utc>,
    collision_count: i32,
) -> StatefulSetStatus {
    let mut s = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        collision_count: Some(collision_count),
        current_revision: Some(current_revision.to_owned()),
        update_revision: Some(update_revision.to_owned()),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
        ..StatefulSetStatus::default()
    };
    let (mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0);
    for (_, pod) in pods {
        s.replicas += 1;
        if is_running_and_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if pod.metadata.deletion_timestamp.is_none() {
            let rev = pod
                .labels()
                .get(CONTROLLER_REVISION_HASH)
                .map(String::as_str);
            current += i32::from(rev == Some(current_revision));
            updated += i32::from(rev == Some(update_revision));
        }
    }
    // A finished rolling update makes the update revision current.
    if rolling && updated == s.replicas && ready == s.replicas {
        current = updated;
        s.current_revision = Some(update_revision.to_owned());
    }
    s.ready_replicas = Some(ready);
    s.available_replicas = Some(available);
    s.current_replicas = Some(current);
    s.updated_replicas = Some(updated);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(ordinal: i32, revision: &str) -> Slot {
        Slot {
            ordinal,
            revision: revision.into(),
            healthy: true,
            ..Slot::default()
        }
    }

    fn want(replicas: i32, monotonic: bool, partition: Option<i32>) -> Want<'static> {
        Want {
            replicas,
            monotonic,
            partition,
            update_revision: "new",
        }
    }

    #[test]
    fn ordinals_come_from_the_set_name_and_a_number() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webx-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web-1", "web-1-2"), Some(2));
    }

    #[test]
    fn ordered_ready_creates_one_pod_at_a_time_after_its_predecessor_is_healthy() {
        let w = want(3, true, Some(0));
        assert_eq!(
            plan(&w, &[]),
            [Step::Create {
                ordinal: 0,
                at_update: true
            }]
        );
        let unready = Slot {
            healthy: false,
            ..healthy(0, "new")
        };
        assert!(plan(&w, &[unready]).is_empty());
        assert_eq!(
            plan(&w, &[healthy(0, "new")]),
            [Step::Create {
                ordinal: 1,
                at_update: true
            }]
        );
    }

    #[test]
    fn parallel_creates_every_missing_pod_at_once() {
        let steps = plan(&want(3, false, Some(0)), &[]);
        assert_eq!(steps.len(), 3);
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal_first_and_waits_for_it() {
        let pods: Vec<Slot> = (0..3).map(|o| healthy(o, "new")).collect();
        assert_eq!(plan(&want(1, true, Some(0)), &pods), [Step::Delete(2)]);
        let mut pods = pods;
        pods[2].terminating = true;
        assert!(plan(&want(1, true, Some(0)), &pods).is_empty());
        assert_eq!(plan(&want(1, false, Some(0)), &pods), [Step::Delete(1)]);
    }

    #[test]
    fn rolling_update_goes_from_the_highest_ordinal_down_to_the_partition() {
        let mut pods: Vec<Slot> = (0..3).map(|o| healthy(o, "old")).collect();
        assert_eq!(plan(&want(3, true, Some(0)), &pods), [Step::Delete(2)]);
        pods[2] = healthy(2, "new");
        assert_eq!(plan(&want(3, true, Some(0)), &pods), [Step::Delete(1)]);
        // An unhealthy updated pod holds the update.
        pods[2].healthy = false;
        assert!(plan(&want(3, true, Some(0)), &pods).is_empty());
        pods[2].healthy = true;
        // The partition keeps lower ordinals at the old revision.
        assert!(plan(&want(3, true, Some(2)), &pods).is_empty());
        // OnDelete never replaces running pods.
        assert!(plan(&want(3, true, None), &pods).is_empty());
    }

    #[test]
    fn pods_below_the_partition_are_recreated_at_the_current_revision() {
        let pods = [healthy(0, "old")];
        // ordinal 1 < partition 2: current revision.
        assert_eq!(
            plan(&want(3, true, Some(2)), &pods),
            [Step::Create {
                ordinal: 1,
                at_update: false
            }]
        );
    }
}
